// What export and import refuse, against the real ckpt-server and CLI:
// safetensors files whose headers lie (each lie the issue lists, and a
// name twice, an index pointing outside DIR, a symbolic link, a dtype ckpt
// lacks, a ckpt_checkpoint.json that disagrees with the files) are refused
// naming the file and the field, and nothing is stored: no job, no
// checkpoint, pending or not, no event. An export never overwrites a file
// and leaves nothing when refused. `--format torch` runs the Python
// package with the token in its environment, never on its command line.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/portable_test_util.h"
#include "tests/testing/safetensors_bytes.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

std::string File(const std::string& header, const std::string& data) {
  return SafetensorsBytes(header, data);
}

std::string Good(const std::string& name = "a") {
  return File(
      R"({")" + name + R"(":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
      "abcd");
}

struct BadDirectory {
  std::string what;
  std::vector<std::pair<std::string, std::string>> files;  // name, bytes
  std::vector<std::string> expected;                       // in the error
};

std::vector<BadDirectory> BadDirectories() {
  std::string past_the_file = File(R"({"a":1})", std::string(13, ' '));
  past_the_file[0] = static_cast<char>(0xe8);  // 1000
  past_the_file[1] = 3;
  return {
      {"offsets out of range",
       {{"model.safetensors",
         File(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
              "abcd")}},
       {"model.safetensors", "tensor 'w'", "field \"data_offsets\"",
        "reach past the data section's 4 bytes"}},
      {"overlapping",
       {{"model.safetensors",
         File(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
              R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
              "abcd")}},
       {"model.safetensors", "tensor 'b'", "\"data_offsets\" [2, 4)",
        "overlaps tensor 'a'"}},
      {"dtype and byte count disagree",
       {{"model.safetensors",
         File(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
              std::string(20, 'x'))}},
       {"model.safetensors", "tensor 'a'", "field \"data_offsets\"",
        "hold 20 bytes, but dtype F32 and shape [2, 3] take 24"}},
      {"header longer than the file",
       {{"model.safetensors", past_the_file}},
       {"model.safetensors", "header length 1000", "longer than the 20 bytes"}},
      {"a name not UTF-8",
       {{"model.safetensors", File("{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[4],"
                                   "\"data_offsets\":[0,4]}}",
                                   "abcd")}},
       {"model.safetensors", "header", "not valid UTF-8", "'w\\xff'"}},
      {"a name twice",
       {{"model.safetensors",
         File(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
              R"("a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
              "abcd")}},
       {"model.safetensors", "header", "key 'a' twice"}},
      {"a dtype ckpt lacks",
       {{"model.safetensors",
         File(R"({"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}})",
              "abcd")}},
       {"model.safetensors", "tensor 'a'", "field \"dtype\"", "'U16'",
        "not reinterpreted"}},
      {"a good file beside a bad one",
       {{"a.safetensors", Good("a")},
        {"b.safetensors",
         File(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
              "abcd")}},
       {"b.safetensors", "bytes [2, 4)", "belong to no tensor"}},
      {"an index pointing outside DIR",
       {{"model.safetensors.index.json",
         R"({"weight_map":{"a":"../outside.safetensors"}})"}},
       {"model.safetensors.index.json", "field \"weight_map\"", "tensor 'a'",
        "'../outside.safetensors' is not a plain file name"}},
      {"an index mapping a tensor its file lacks",
       {{"model.safetensors.index.json",
         R"({"weight_map":{"a":"x.safetensors","zz":"x.safetensors"}})"},
        {"x.safetensors", Good("a")}},
       {"model.safetensors.index.json", "maps tensor 'zz'",
        "does not hold it"}},
      {"an index with a key twice",
       {{"model.safetensors.index.json",
         R"({"weight_map":{"a":"x.safetensors","a":"x.safetensors"}})"},
        {"x.safetensors", Good("a")}},
       {"model.safetensors.index.json", "key 'a' twice"}},
      {"a tensor in two files",
       {{"a.safetensors", Good("a")}, {"b.safetensors", Good("a")}},
       {"tensor 'a' is in both", "a.safetensors", "b.safetensors"}},
      {"no safetensors file",
       {{"notes.txt", "hello"}},
       {"holds no .safetensors file"}},
      // A careless user: a torch export is read by the Python package.
      {"a torch export",
       {{"checkpoint.pt", "PK"}, {"ckpt_checkpoint.json", "{}"}},
       {"holds no .safetensors file", "checkpoint.pt",
        "python3 -m ckpt import"}},
  };
}

TEST_F(PortableTest, RefusesLyingFilesNamingFileAndFieldAndStoresNothing) {
  // A valid file just outside each DIR, for the index to point at.
  WriteFile(Dir("outside.safetensors"), Good("a"));
  const std::vector<BadDirectory> cases = BadDirectories();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].what);
    const std::string dir = Dir(absl::StrCat("bad", i));
    std::filesystem::create_directory(dir);
    for (const auto& [name, bytes] : cases[i].files) {
      WriteFile(dir + "/" + name, bytes);
    }
    const std::string job = absl::StrCat("it/bad", i);
    CommandResult run = Ckpt(absl::StrCat("import ", dir, " ", job, " 1"));
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_THAT(run.err, HasSubstr("INVALID_ARGUMENT"));
    for (const std::string& part : cases[i].expected) {
      EXPECT_THAT(run.err, HasSubstr(part));
    }
    ExpectNothingStored(job);
  }
}

TEST_F(PortableTest, RefusesASymbolicLinkOutOfTheDirectory) {
  WriteFile(Dir("outside.safetensors"), Good("a"));
  const std::string dir = Dir("linked");
  std::filesystem::create_directory(dir);
  std::filesystem::create_symlink("../outside.safetensors",
                                  dir + "/model.safetensors");
  CommandResult run = Ckpt("import " + dir + " it/linked 1");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("model.safetensors' is a symbolic link"));
  ExpectNothingStored("it/linked");
}

TEST_F(PortableTest, RefusesACheckpointJsonThatDisagreesWithTheFiles) {
  const std::string bytes = PatternBytes(64, 3);
  Save("it/src", 1, {WholeTensor("w", DType::kFloat32, {4, 4}, bytes)});
  const std::string out = Dir("export");
  ASSERT_EQ(Ckpt("export it/src 1 " + out).exit_code, 0);
  const std::string path = out + "/ckpt_checkpoint.json";
  nlohmann::json described = nlohmann::json::parse(ReadWholeFile(path));
  described["tensors"]["w"]["dtype"] = "int32";
  WriteFile(path, described.dump());
  CommandResult run = Ckpt("import " + out + " it/lied 1");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("ckpt_checkpoint.json: tensor 'w'"));
  EXPECT_THAT(run.err, HasSubstr("described as int32 [4, 4]"));
  EXPECT_THAT(run.err, HasSubstr("holds it as float32 [4, 4]"));
  ExpectNothingStored("it/lied");

  described["tensors"]["w"]["dtype"] = "float32";
  described["metadata"]["metrics"]["loss"] = "low";
  WriteFile(path, described.dump());
  run = Ckpt("import " + out + " it/lied 1");
  EXPECT_THAT(run.err, HasSubstr("field \"metadata\" metric 'loss'"));
  ExpectNothingStored("it/lied");

  // A rank export of rank 0 of 1 whose box is half of its global shape:
  // the commit would refuse it once begun, so it is refused before.
  described["metadata"]["metrics"] = nlohmann::json::object();
  described["export"] = {{"full", false}, {"rank", 0}, {"world_size", 1}};
  described["tensors"]["w"]["global_shape"] = {8, 4};
  WriteFile(path, described.dump());
  run = Ckpt("import " + out + " it/lied 1");
  EXPECT_THAT(run.err, HasSubstr("field \"box\" is part of its global"));
  ExpectNothingStored("it/lied");
}

TEST_F(PortableTest, RefusesAFifoWithoutWaitingForAWriter) {
  const std::string dir = Dir("fifo");
  std::filesystem::create_directory(dir);
  ASSERT_EQ(::mkfifo((dir + "/model.safetensors").c_str(), 0600), 0);
  CommandResult run = Ckpt("import " + dir + " it/fifo 1");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("model.safetensors' is not a regular file"));
  ExpectNothingStored("it/fifo");
}

TEST_F(PortableTest, ExportNeverOverwritesAndLeavesNothingWhenRefused) {
  Save("it/src", 1, {Uint8Tensor("w", PatternBytes(100, 1))});
  const std::string dir = Dir("taken");
  std::filesystem::create_directory(dir);
  WriteFile(dir + "/model.safetensors", "keep");
  CommandResult run = Ckpt("export it/src 1 " + dir);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(run.err, HasSubstr("taken/model.safetensors' exists"));
  EXPECT_EQ(ReadWholeFile(dir + "/model.safetensors"), "keep");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
  auto events = client_->ListEvents("it/src");
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 1u);  // the commit: no restore recorded

  // Unknown step: nothing created.
  run = Ckpt("export it/src 7 " + Dir("new/nested"));
  EXPECT_THAT(run.err, HasSubstr("NOT_FOUND"));
  EXPECT_FALSE(std::filesystem::exists(Dir("new")));

  // Other files in DIR are left alone.
  const std::string notes = Dir("notes");
  std::filesystem::create_directory(notes);
  WriteFile(notes + "/README", "mine");
  ASSERT_EQ(Ckpt("export it/src 1 " + notes).exit_code, 0);
  EXPECT_EQ(ReadWholeFile(notes + "/README"), "mine");
  EXPECT_TRUE(std::filesystem::exists(notes + "/model.safetensors"));
}

TEST_F(PortableTest, TorchFormatRunsThePythonPackageWithTheTokenInItsEnv) {
  // A stand-in interpreter that records its arguments and environment.
  const std::string fake = Dir("fake-python");
  WriteFile(fake, absl::StrCat("#!/bin/sh\nprintf '%s\\n' \"$@\" > ",
                               Dir("args"), "\nenv > ", Dir("env"), "\n"));
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  WriteFile(Dir("token"), "s3cret-token-value\n");
  CommandResult run = Ckpt(
      absl::StrCat("--token-file ", Dir("token"),
                   " --tls-server-name ckpt.example --json export it/x latest ",
                   Dir("pt"), " --format torch --rank 1 --world-size 2"),
      "CKPT_PYTHON=" + fake);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string args = ReadWholeFile(Dir("args"));
  const std::string env = ReadWholeFile(Dir("env"));
  EXPECT_THAT(args, HasSubstr(absl::StrCat(
                        "\nexport\nit/x\nlatest\n", Dir("pt"),
                        "\n--format\ntorch\n--server\n", server_->address(),
                        "\n--rank\n1\n--world-size\n2\n--json\n")));
  EXPECT_THAT(args, HasSubstr("runpy.run_module(\"ckpt\""));
  EXPECT_THAT(args, ::testing::Not(HasSubstr("s3cret")));
  EXPECT_THAT(env, HasSubstr("\nCKPT_TOKEN=s3cret-token-value\n"));
  EXPECT_THAT(env, HasSubstr("\nCKPT_TLS_SERVER_NAME=ckpt.example\n"));

  run = Ckpt("export it/x 1 " + Dir("pt") + " --format torch",
             "CKPT_PYTHON=" + Dir("no-such-python"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(run.err, HasSubstr("could not be run"));
  EXPECT_THAT(run.err, HasSubstr("set CKPT_PYTHON"));

  std::filesystem::create_directory(Dir("empty-path"));
  run = Ckpt("export it/x 1 " + Dir("pt") + " --format torch",
             absl::StrCat("CKPT_PYTHON=/usr/bin/python3 PYTHONNOUSERSITE=1 ",
                          "PYTHONPATH=", Dir("empty-path")));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("has no package named ckpt"));
  EXPECT_THAT(run.err, HasSubstr("PYTHONPATH"));

  run =
      Ckpt("export it/x 1 " + Dir("pt") + " --format torch --max-file-size 1G");
  EXPECT_THAT(run.err, HasSubstr("does not apply to --format torch"));
}

TEST_F(PortableTest, HelpDescribesEveryFlag) {
  CommandResult help = Ckpt("export --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--format", "safetensors", "torch", "--rank", "--world-size", "--full",
        "--max-file-size", "torch.chunk", "CKPT_PYTHON", "CKPT_TOKEN"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
  help = Ckpt("import --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--rank", "--world-size", "--metric", "--tag",
        "model.safetensors.index.json", "ckpt_checkpoint.json"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace ckpt::testing
