// The strict safetensors reader and the writer (client/portable/
// safetensors.h): every lie a header can tell is refused naming the file
// and the field, and what the writer lays out reads back exactly. The
// files here are built by hand, not by the writer, so that the reader is
// tested against the format rather than against itself.
#include "client/portable/safetensors.h"

#include <time.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/portable/strict_json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/safetensors_bytes.h"

namespace ckpt::client::portable {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kFile[] = "model.safetensors";

std::string File(const std::string& header, const std::string& data = "") {
  return ::ckpt::testing::SafetensorsBytes(header, data);
}

absl::Status Parse(const std::string& header, const std::string& data = "") {
  return ParseSafetensors(File(header, data), kFile).status();
}

// The message of a refused parse (empty, and a failure, if accepted).
std::string Refusal(const std::string& header, const std::string& data = "") {
  const absl::Status status = Parse(header, data);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  return std::string(status.message());
}

TEST(SafetensorsReadTest, ReadsAHandWrittenFile) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]},)"
      R"("a":{"dtype":"I16","shape":[1,3],"data_offsets":[0,6]},)"
      R"("empty":{"dtype":"F32","shape":[0,4],"data_offsets":[10,10]}}   )";
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensors(File(header, "0123456789"), kFile);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->data_offset, 8 + header.size());
  EXPECT_EQ(parsed->data_bytes, 10u);
  ASSERT_EQ(parsed->tensors.size(), 3u);
  EXPECT_EQ(parsed->tensors[0].name, "a");
  EXPECT_EQ(parsed->tensors[0].dtype, DType::kInt16);
  EXPECT_EQ(parsed->tensors[0].shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(parsed->tensors[1].name, "b");
  EXPECT_EQ(parsed->tensors[1].dtype, DType::kBFloat16);
  EXPECT_EQ(parsed->tensors[1].begin, 6u);
  EXPECT_EQ(parsed->tensors[1].end, 10u);
  EXPECT_EQ(parsed->tensors[2].name, "empty");
  EXPECT_EQ(parsed->metadata.at("format"), "pt");
}

TEST(SafetensorsReadTest, MapsEveryDTypeAndRefusesForeignOnes) {
  const std::map<std::string, DType> known = {
      {"BOOL", DType::kBool},   {"U8", DType::kUint8},
      {"I8", DType::kInt8},     {"I16", DType::kInt16},
      {"I32", DType::kInt32},   {"I64", DType::kInt64},
      {"F16", DType::kFloat16}, {"BF16", DType::kBFloat16},
      {"F32", DType::kFloat32}, {"F64", DType::kFloat64}};
  for (const auto& [name, dtype] : known) {
    const size_t bytes = DTypeSize(dtype) * 3;
    absl::StatusOr<SafetensorsHeader> parsed =
        ParseSafetensors(File(R"({"t":{"dtype":")" + name +
                                  R"(","shape":[3],"data_offsets":[0,)" +
                                  std::to_string(bytes) + "]}}",
                              std::string(bytes, 'x')),
                         kFile);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
    EXPECT_EQ(parsed->tensors[0].dtype, dtype) << name;
  }
  for (const std::string foreign :
       {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "C64", "f32", ""}) {
    EXPECT_THAT(
        Refusal(R"({"t":{"dtype":")" + foreign +
                    R"(","shape":[1],"data_offsets":[0,2]}})",
                "xx"),
        AllOf(HasSubstr(kFile), HasSubstr("tensor 't'"),
              HasSubstr("field \"dtype\""), HasSubstr("'" + foreign + "'"),
              HasSubstr("not reinterpreted")));
  }
}

TEST(SafetensorsReadTest, RefusesAHeaderLengthPastTheFileBeforeReadingIt) {
  // The length says 1000 bytes; 20 follow.
  std::string file = File(R"({"a":1})");
  file[0] = static_cast<char>(0xe8);
  file[1] = 3;
  file.resize(28, ' ');
  EXPECT_THAT(ParseSafetensors(file, kFile).status().message(),
              AllOf(HasSubstr(kFile), HasSubstr("header length 1000"),
                    HasSubstr("longer than the 20 bytes")));
  // A length of 2^64 - 1 does not wrap around.
  std::string huge(8, static_cast<char>(0xff));
  huge += "{}";
  EXPECT_THAT(ParseSafetensors(huge, kFile).status().message(),
              HasSubstr("header length 18446744073709551615"));
  EXPECT_THAT(ParseSafetensors("1234567", kFile).status().message(),
              AllOf(HasSubstr(kFile), HasSubstr("7 bytes, shorter than")));
}

TEST(SafetensorsReadTest, RefusesAHeaderLongerThanTheCap) {
  const uint64_t length = kMaxSafetensorsHeaderBytes + 1;
  std::string prefix;
  uint64_t value = length;
  for (int i = 0; i < 8; ++i) {
    prefix.push_back(static_cast<char>(value & 0xff));
    value >>= 8;
  }
  // Only the prefix and the size are looked at.
  absl::StatusOr<uint64_t> read =
      ReadSafetensorsHeaderLength(prefix, 8 + length, kFile);
  EXPECT_THAT(read.status().message(),
              AllOf(HasSubstr(kFile), HasSubstr("past the limit")));
}

TEST(SafetensorsReadTest, RefusesTextThatIsNotUtf8NamingTheString) {
  EXPECT_THAT(Refusal("{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[1],"
                      "\"data_offsets\":[0,1]}}",
                      "x"),
              AllOf(HasSubstr(kFile), HasSubstr("header"),
                    HasSubstr("byte 3 is not valid UTF-8"),
                    HasSubstr("in the string 'w\\xff'")));
  // Overlong forms and surrogates are not UTF-8 either.
  EXPECT_THAT(Refusal("{\"\xc0\xaf\":1}"), HasSubstr("not valid UTF-8"));
  EXPECT_THAT(Refusal("{\"\xed\xa0\x80\":1}"), HasSubstr("not valid UTF-8"));
  // Nor an escaped lone surrogate, which JSON itself refuses.
  EXPECT_THAT(Refusal(R"({"\ud800":1})"), HasSubstr("not valid JSON"));
}

TEST(SafetensorsReadTest, RefusesMalformedJson) {
  EXPECT_THAT(Refusal(R"({"a":)"),
              AllOf(HasSubstr(kFile), HasSubstr("header: not valid JSON"),
                    HasSubstr("line 1")));
  EXPECT_THAT(Refusal(R"( {})"), HasSubstr("does not begin with '{'"));
  EXPECT_THAT(Refusal(""), HasSubstr("does not begin with '{'"));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[[[1]]],)"
                      R"("data_offsets":[0,1]}})",
                      "x"),
              HasSubstr("deeper than 3 levels"));
}

TEST(SafetensorsReadTest, RefusesDuplicateNamesAndFields) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                      "xy"),
              AllOf(HasSubstr(kFile), HasSubstr("key 'a' twice")));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],)"
                      R"("data_offsets":[0,1]}})",
                      "x"),
              HasSubstr("key 'dtype' twice"));
}

TEST(SafetensorsReadTest, RefusesMissingUnknownAndMistypedFields) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[1]}})"),
              AllOf(HasSubstr("tensor 'a'"),
                    HasSubstr("field \"data_offsets\" is missing")));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],)"
                      R"("extra":1}})",
                      "x"),
              HasSubstr("unknown field 'extra'"));
  EXPECT_THAT(Refusal(R"({"a":[1]})"), HasSubstr("is not an object"));
  EXPECT_THAT(
      Refusal(R"({"a":{"dtype":8,"shape":[1],"data_offsets":[0,1]}})", "x"),
      HasSubstr("field \"dtype\" is not a string"));
  EXPECT_THAT(
      Refusal(R"({"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}})", "x"),
      HasSubstr("field \"shape\" is not an array"));
  EXPECT_THAT(
      Refusal(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"),
      HasSubstr("field \"data_offsets\" is [0]"));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[1],)"
                      R"("data_offsets":[0,1.0]}})",
                      "x"),
              HasSubstr("not two non-negative integers"));
  EXPECT_THAT(Refusal(R"({"__metadata__":[1]})"),
              HasSubstr("field \"__metadata__\" is not an object"));
  EXPECT_THAT(Refusal(R"({"__metadata__":{"k":1}})"),
              AllOf(HasSubstr("\"__metadata__\""), HasSubstr("key 'k'")));
}

TEST(SafetensorsReadTest, RefusesBadShapes) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[-1],)"
                      R"("data_offsets":[0,0]}})"),
              AllOf(HasSubstr("tensor 'a'"), HasSubstr("field \"shape\""),
                    HasSubstr("dimension 0 = -1")));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[1.5],)"
                      R"("data_offsets":[0,0]}})"),
              HasSubstr("dimension 0 = 1.5"));
  // A dimension past ckpt's limit, even of an empty tensor.
  EXPECT_THAT(
      Refusal(R"({"a":{"dtype":"U8","shape":[0,281474976710657],)"
              R"("data_offsets":[0,0]}})"),
      AllOf(HasSubstr("dimension 1 = 281474976710657"), HasSubstr("limit")));
}

TEST(SafetensorsReadTest, RefusesOffsetsOutOfRange) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[4],)"
                      R"("data_offsets":[0,4]}})",
                      "xy"),
              AllOf(HasSubstr(kFile), HasSubstr("tensor 'a'"),
                    HasSubstr("field \"data_offsets\" [0, 4) reach past the "
                              "data section's 2 bytes")));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[0],)"
                      R"("data_offsets":[2,1]}})",
                      "xy"),
              HasSubstr("[2, 1) end before they begin"));
}

TEST(SafetensorsReadTest, RefusesADTypeAndByteCountThatDisagree) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"F32","shape":[2,3],)"
                      R"("data_offsets":[0,20]}})",
                      std::string(20, 'x')),
              AllOf(HasSubstr("tensor 'a'"), HasSubstr("\"data_offsets\""),
                    HasSubstr("hold 20 bytes, but dtype F32 and shape [2, 3] "
                              "take 24")));
  // A product that would overflow 64 bits is not wrapped into agreement.
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"F64","shape":[281474976710656,)"
                      R"(281474976710656,256],"data_offsets":[0,0]}})"),
              HasSubstr("take more than 2^62"));
}

TEST(SafetensorsReadTest, RefusesOverlapsGapsAndTrailingBytes) {
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                      "abcd"),
              AllOf(HasSubstr(kFile), HasSubstr("tensor 'b'"),
                    HasSubstr("[2, 4) overlaps tensor 'a'")));
  // An empty tensor inside another one overlaps it too, as the official
  // reader rules.
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})",
                      "abcd"),
              HasSubstr("overlaps"));
  EXPECT_THAT(
      Refusal(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
              R"("b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
              "abcd"),
      AllOf(HasSubstr("bytes [2, 3)"), HasSubstr("belong to no tensor")));
  EXPECT_THAT(Refusal(R"({"a":{"dtype":"U8","shape":[2],)"
                      R"("data_offsets":[0,2]}})",
                      "abcd"),
              HasSubstr("bytes [2, 4) at the end"));
  EXPECT_THAT(Refusal("{}", "ab"), HasSubstr("bytes [0, 2)"));
}

TEST(SafetensorsReadTest, RefusesNamesCkptCannotHold) {
  EXPECT_THAT(Refusal(R"({"":{"dtype":"U8","shape":[1],)"
                      R"("data_offsets":[0,1]}})",
                      "x"),
              AllOf(HasSubstr(kFile), HasSubstr("empty name")));
  const std::string long_name(kMaxTensorNameBytes + 1, 'n');
  EXPECT_THAT(Refusal(R"({")" + long_name +
                          R"(":{"dtype":"U8","shape":[1],)"
                          R"("data_offsets":[0,1]}})",
                      "x"),
              HasSubstr("longer than ckpt's 1024-byte limit"));
}

TEST(SafetensorsReadTest, RestoresComplexTensorsListedInTheMetadata) {
  const std::string header =
      R"({"__metadata__":{"ckpt.complex":"[\"z\",\"w\"]"},)"
      R"("z":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},)"
      R"("w":{"dtype":"F64","shape":[2],"data_offsets":[24,40]},)"
      R"("r":{"dtype":"F32","shape":[2],"data_offsets":[40,48]}})";
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensors(File(header, std::string(48, 'x')), kFile);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors[0].dtype, DType::kComplex64);
  EXPECT_EQ(parsed->tensors[0].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(parsed->tensors[1].dtype, DType::kComplex128);
  EXPECT_EQ(parsed->tensors[1].shape, (std::vector<int64_t>{}));
  EXPECT_EQ(parsed->tensors[2].dtype, DType::kFloat32);

  auto with_list = [](const std::string& list, const std::string& shape) {
    return R"({"__metadata__":{"ckpt.complex":")" + list +
           R"("},"z":{"dtype":"F32","shape":)" + shape +
           R"(,"data_offsets":[0,24]}})";
  };
  const std::string data(24, 'x');
  EXPECT_THAT(Refusal(with_list(R"([\"q\"])", "[3,2]"), data),
              AllOf(HasSubstr("\"ckpt.complex\""),
                    HasSubstr("'q', which is no tensor")));
  EXPECT_THAT(Refusal(with_list(R"([\"z\",\"z\"])", "[3,2]"), data),
              HasSubstr("'z' twice"));
  EXPECT_THAT(Refusal(with_list(R"([\"z\"])", "[2,3]"), data),
              HasSubstr("last dimension of 2"));
  EXPECT_THAT(Refusal(with_list(R"({})", "[3,2]"), data),
              HasSubstr("not a JSON array"));
  EXPECT_THAT(Refusal(with_list(R"([1])", "[3,2]"), data),
              HasSubstr("not a tensor name"));
}

TEST(SafetensorsWriteTest, LaysOutAlignedContiguousTensorsThatReadBack) {
  const std::vector<SafetensorsSpec> specs = {
      {"embed/weight", DType::kBFloat16, {3, 5}},
      {"z", DType::kComplex128, {2}},
      {"flag", DType::kBool, {}},
      {"none", DType::kFloat32, {0}},
      {"é", DType::kInt64, {1}}};
  absl::StatusOr<SafetensorsLayout> layout =
      LayOutSafetensors(specs, {{"format", "pt"}});
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->prefix.size() % 8, 0u);
  EXPECT_EQ(layout->offsets,
            (std::vector<uint64_t>{
                layout->prefix.size(), layout->prefix.size() + 30,
                layout->prefix.size() + 62, layout->prefix.size() + 63,
                layout->prefix.size() + 63}));
  EXPECT_EQ(layout->file_bytes, layout->prefix.size() + 71);
  std::string file = layout->prefix;
  file.resize(layout->file_bytes, 'x');
  absl::StatusOr<SafetensorsHeader> parsed = ParseSafetensors(file, kFile);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->tensors.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    // Same order: the empty one sorts after `flag` at offset 63.
    EXPECT_EQ(parsed->tensors[i].name, specs[i].name);
    EXPECT_EQ(parsed->tensors[i].dtype, specs[i].dtype);
    EXPECT_EQ(parsed->tensors[i].shape, specs[i].shape);
    EXPECT_EQ(parsed->data_offset + parsed->tensors[i].begin,
              layout->offsets[i]);
  }
  EXPECT_EQ(parsed->metadata.at("format"), "pt");
  EXPECT_EQ(parsed->metadata.at(kComplexMetadataKey), R"(["z"])");
}

TEST(SafetensorsWriteTest, RefusesWhatTheReaderWouldRefuse) {
  auto refusal = [](std::vector<SafetensorsSpec> specs,
                    std::map<std::string, std::string> metadata = {}) {
    absl::StatusOr<SafetensorsLayout> layout =
        LayOutSafetensors(specs, metadata);
    EXPECT_TRUE(absl::IsInvalidArgument(layout.status())) << layout.status();
    return std::string(layout.status().message());
  };
  EXPECT_THAT(refusal({{"a", DType::kUint8, {1}}, {"a", DType::kUint8, {1}}}),
              HasSubstr("two tensors of one file"));
  EXPECT_THAT(refusal({{"__metadata__", DType::kUint8, {1}}}),
              HasSubstr("metadata key"));
  EXPECT_THAT(refusal({{"", DType::kUint8, {1}}}), HasSubstr("empty name"));
  EXPECT_THAT(refusal({{"a\xff", DType::kUint8, {1}}}), HasSubstr("not UTF-8"));
  EXPECT_THAT(refusal({{"a", DType::kUint8, {-1}}}), HasSubstr("outside [0, "));
  EXPECT_THAT(refusal({{"a", DType::kFloat64, {1 << 30, 1 << 30, 1 << 30}}}),
              HasSubstr("cannot be written"));
  EXPECT_THAT(refusal({}, {{kComplexMetadataKey, "[]"}}),
              HasSubstr("ckpt's own"));
}

// A header of many tensors parses in linear time: nlohmann's parse with a
// callback rescans an object's members at the end of each member object
// (quadratic: a 200,000-tensor header took minutes), which an export of a
// large state writes and a hostile file can use to hang an import.
// CPU time of this thread: unlike wall time it does not grow when other
// processes share the cores (CI under load took 33 s of wall time for well
// under a second of work), so the bound only catches a quadratic algorithm.
absl::Duration ThreadCpuTime() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return absl::DurationFromTimespec(now);
}

TEST(SafetensorsReadTest, ParsesAHeaderOfManyTensorsInLinearTime) {
  constexpr int kTensors = 200'000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i) {
    if (i > 0) header += ",";
    header += absl::StrCat("\"t", i,
                           "\":{\"dtype\":\"U8\",\"shape\":[0],"
                           "\"data_offsets\":[0,0]}");
  }
  header += "}";
  const absl::Duration start = ThreadCpuTime();
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensors(File(header), kFile);
  const absl::Duration took = ThreadCpuTime() - start;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.size(), static_cast<size_t>(kTensors));
  // Linear: well under a second of CPU (seconds under a sanitizer);
  // quadratic: minutes.
  EXPECT_LT(took, absl::Seconds(30));
}

// The writer too: ordered_json's operator[] searches the members it holds,
// so a header built with it is quadratic in the number of tensors.
TEST(SafetensorsWriteTest, LaysOutManyTensorsInLinearTime) {
  constexpr int kTensors = 200'000;
  std::vector<SafetensorsSpec> specs;
  for (int i = 0; i < kTensors; ++i) {
    specs.push_back({absl::StrCat("t", i), DType::kUint8, {0}});
  }
  const absl::Duration start = ThreadCpuTime();
  absl::StatusOr<SafetensorsLayout> layout = LayOutSafetensors(specs, {});
  const absl::Duration took = ThreadCpuTime() - start;
  ASSERT_TRUE(layout.ok()) << layout.status();
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensors(layout->prefix, kFile);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.size(), static_cast<size_t>(kTensors));
  EXPECT_LT(took, absl::Seconds(30));
}

TEST(StrictJsonTest, FindsTheFirstByteThatIsNotUtf8) {
  EXPECT_EQ(FindInvalidUtf8("plain"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);            // a lone continuation
  EXPECT_EQ(FindInvalidUtf8("a\xc3"), 2u);             // cut short
  EXPECT_EQ(FindInvalidUtf8("\xe0\x80\x80"), 1u);      // overlong
  EXPECT_EQ(FindInvalidUtf8("\xed\xbf\xbf"), 1u);      // a surrogate
  EXPECT_EQ(FindInvalidUtf8("\xf4\x90\x80\x80"), 1u);  // past U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("\xfe"), 0u);
}

}  // namespace
}  // namespace ckpt::client::portable
