#include "server/config/config_file.h"

#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;

absl::Status Apply(const std::string& text, ServerSettings* settings) {
  return ApplyConfigText(text, "test.yaml", settings);
}

// The error for `text`, which must be refused.
std::string Refusal(const std::string& text) {
  ServerSettings settings;
  absl::Status status = Apply(text, &settings);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
  return std::string(status.message());
}

TEST(ServerConfigTest, AnEmptyFileKeepsTheDefaults) {
  ServerSettings settings;
  ASSERT_TRUE(Apply("", &settings).ok());
  ASSERT_TRUE(Apply("# only a comment\n", &settings).ok());
  EXPECT_EQ(settings, ServerSettings());
  EXPECT_EQ(settings.listen, "127.0.0.1:7070");
  EXPECT_EQ(settings.shutdown_grace_seconds, 10);
  EXPECT_FALSE(settings.direct_io);
}

TEST(ServerConfigTest, AppliesEachTypeAndKeepsWhatItDoesNotName) {
  ServerSettings settings;
  ASSERT_TRUE(Apply("data_dir: /var/lib/ckpt\n"
                    "listen: \"0.0.0.0:7070\"\n"
                    "direct_io: true\n"
                    "max_lease_seconds: 7200\n"
                    "gc_interval_seconds: 0.5\n"
                    "shutdown_grace_seconds: 30\n",
                    &settings)
                  .ok());
  EXPECT_EQ(settings.data_dir, "/var/lib/ckpt");
  EXPECT_EQ(settings.listen, "0.0.0.0:7070");
  EXPECT_TRUE(settings.direct_io);
  EXPECT_EQ(settings.max_lease_seconds, 7200);
  EXPECT_EQ(settings.gc_interval_seconds, 0.5);
  EXPECT_EQ(settings.shutdown_grace_seconds, 30);
  EXPECT_EQ(settings.default_lease_seconds, 1800);  // not named: default
}

TEST(ServerConfigTest, PrintedConfigLoadsBackToTheSameSettings) {
  ServerSettings defaults;
  ServerSettings loaded;
  loaded.listen = "garbage";
  ASSERT_TRUE(Apply(ConfigYaml(defaults), &loaded).ok())
      << ConfigYaml(defaults);
  EXPECT_EQ(loaded, defaults);

  ServerSettings odd;
  odd.data_dir = "/data/with \"quotes\", \\back\\slashes, # and: colons";
  odd.listen = "[::1]:0";
  odd.auth_tokens = " leading space\ttab\nnewline \x01 ünïcødé";
  odd.tls_cert = "yes";  // a string that YAML 1.1 would read as a bool
  odd.tls_key = "123";
  odd.insecure_allow_unauthenticated = true;
  odd.shared_memory_reads = false;
  odd.gc_interval_seconds = 0.1 + 0.2;  // needs all its digits
  odd.lease_check_interval_seconds = 1e-3;
  odd.chunk_hold_seconds = 0;
  odd.request_threads = 4096;
  odd.shutdown_grace_seconds = 2.5;
  odd.quota_max_stored_bytes = int64_t{3} << 40;
  odd.quota_max_upload_streams = 7;
  const std::string yaml = ConfigYaml(odd);
  ServerSettings back;
  ASSERT_TRUE(Apply(yaml, &back).ok()) << yaml;
  EXPECT_EQ(back, odd) << yaml;
  // Every key of the table is in it (a dotted key as its last part, nested).
  for (const ServerSetting& setting : ServerSettingTable()) {
    absl::string_view key = setting.key;
    key = key.substr(key.rfind('.') + 1);
    EXPECT_THAT(yaml, HasSubstr(absl::StrCat(key, ": ")));
  }
  EXPECT_THAT(yaml, HasSubstr("quotas:\n  defaults:\n    max_stored_bytes: "
                              "3TiB\n    max_upload_streams: 7\n"));
}

TEST(ServerConfigTest, RefusesUnknownKeysWithFileLineAndKey) {
  EXPECT_EQ(Refusal("listen: 127.0.0.1:0\nlisten_adress: x\n"),
            "test.yaml:2: listen_adress: unknown key (`ckpt-server "
            "--print-config` lists every key)");
  EXPECT_THAT(Refusal("tls:\n  cert: a\n"),
              HasSubstr("test.yaml:1: tls: unknown key"));
}

TEST(ServerConfigTest, RefusesWrongTypes) {
  EXPECT_EQ(Refusal("direct_io: maybe\n"),
            "test.yaml:1: direct_io: 'maybe' is not true or false");
  EXPECT_EQ(Refusal("\nmax_lease_seconds: \"7200\"\n"),
            "test.yaml:2: max_lease_seconds: wrong type: a quoted string "
            "where a whole number is expected");
  EXPECT_EQ(Refusal("max_lease_seconds: 1.5\n"),
            "test.yaml:1: max_lease_seconds: '1.5' is not a whole number");
  EXPECT_EQ(Refusal("gc_interval_seconds: soon\n"),
            "test.yaml:1: gc_interval_seconds: 'soon' is not a number of "
            "seconds");
  EXPECT_EQ(Refusal("gc_interval_seconds: .nan\n"),
            "test.yaml:1: gc_interval_seconds: '.nan' is not a number of "
            "seconds");
  EXPECT_THAT(Refusal("listen:\n  - a\n  - b\n"),
              HasSubstr("test.yaml:1: listen: wrong type: a list where a "
                        "string is expected"));
  EXPECT_EQ(Refusal("listen: {host: a}\n"),
            "test.yaml:1: listen: wrong type: a map where a string is "
            "expected");
  EXPECT_THAT(Refusal("data_dir:\n"),
              HasSubstr("test.yaml:1: data_dir: no value"));
  EXPECT_THAT(Refusal("- listen\n"),
              HasSubstr("test.yaml:1: the file must be a map of settings"));
  EXPECT_THAT(Refusal("just text\n"),
              HasSubstr("the file must be a map of settings"));
}

TEST(ServerConfigTest, RefusesNegativeAndOutOfRangeNumbers) {
  EXPECT_EQ(Refusal("chunk_hold_seconds: -1\n"),
            "test.yaml:1: chunk_hold_seconds: '-1' is out of range: must be "
            "from 0 to 315360000");
  EXPECT_EQ(Refusal("shutdown_grace_seconds: -0.5\n"),
            "test.yaml:1: shutdown_grace_seconds: '-0.5' is out of range: "
            "must be from 0 to 3600");
  EXPECT_THAT(Refusal("default_lease_seconds: 0\n"),
              HasSubstr("'0' is out of range: must be from 1 to"));
  EXPECT_THAT(Refusal("max_lease_seconds: 99999999999999999999999\n"),
              HasSubstr("out of range"));
  EXPECT_THAT(Refusal("maintenance_threads: 100000\n"),
              HasSubstr("out of range: must be from 1 to 256"));
  EXPECT_THAT(Refusal("gc_interval_seconds: 1e300\n"),
              HasSubstr("out of range"));
}

TEST(ServerConfigTest, RefusesDuplicateKeysNamingTheFirst) {
  EXPECT_EQ(Refusal("listen: a:1\ndirect_io: true\nlisten: b:2\n"),
            "test.yaml:3: listen: duplicate key (first given on line 1)");
}

TEST(ServerConfigTest, RefusesAnchorsAliasesMergeKeysAndTags) {
  EXPECT_THAT(Refusal("data_dir: &d /x\ntls_cert: *d\n"),
              HasSubstr("test.yaml:1: YAML anchors (&name) are not allowed"));
  EXPECT_THAT(Refusal("listen: *nothing\n"), HasSubstr("test.yaml:1:"));
  EXPECT_THAT(Refusal("<<: {listen: a}\n"),
              HasSubstr("test.yaml:1: <<: YAML merge keys are not allowed"));
  EXPECT_THAT(Refusal("max_lease_seconds: !!int 5\n"),
              HasSubstr("test.yaml:1: YAML tags (tag:yaml.org,2002:int) are "
                        "not allowed"));
}

TEST(ServerConfigTest, RefusesABillionLaughsAtOnce) {
  std::string bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    absl::StrAppend(&bomb, std::string(1, c), ": &", std::string(1, c), " [*",
                    std::string(1, c - 1), ",*", std::string(1, c - 1), ",*",
                    std::string(1, c - 1), ",*", std::string(1, c - 1), "]\n");
  }
  const absl::Time start = absl::Now();
  EXPECT_THAT(Refusal(bomb), HasSubstr("test.yaml:1: YAML anchors"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(ServerConfigTest, RefusesDeepNestingAndManyDocuments) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "{a: ";
  EXPECT_THAT(Refusal(deep), HasSubstr("test.yaml:1: "));
  std::string deep_lists(100000, '[');
  EXPECT_THAT(Refusal(deep_lists), HasSubstr("test.yaml:1: "));
  std::string deep_maps;
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&deep_maps, std::string(2 * i, ' '), "k", i, ":\n");
  }
  EXPECT_THAT(Refusal(deep_maps), HasSubstr("nested deeper than 8 levels"));
  EXPECT_THAT(Refusal("listen: a\n---\nlisten: b\n"),
              HasSubstr("test.yaml:2: more than one YAML document"));
}

TEST(ServerConfigTest, RefusesBrokenYamlWithItsLine) {
  EXPECT_THAT(Refusal("listen: a\ndata_dir: [unclosed\n"),
              HasSubstr("test.yaml:3: not valid YAML"));
  EXPECT_THAT(Refusal("a: b: c\n"), HasSubstr("test.yaml:1: not valid YAML"));
}

TEST(ServerConfigTest, ReadsOnlySmallRegularFiles) {
  ServerSettings settings;
  absl::Status missing = ApplyConfigFile("/nonexistent/ckpt.yaml", &settings);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(),
              HasSubstr("--config /nonexistent/ckpt.yaml: no such file"));
  EXPECT_THAT(ApplyConfigFile("/tmp", &settings).message(),
              HasSubstr("is a directory"));
  const std::string path = ::testing::TempDir() + "/big.yaml";
  {
    std::ofstream out(path);
    out << "# " << std::string(kMaxConfigBytes, 'x') << "\n";
  }
  EXPECT_THAT(ApplyConfigFile(path, &settings).message(),
              HasSubstr("larger than"));
}

TEST(ServerConfigTest, TheExampleConfigLoads) {
  ServerSettings settings;
  absl::Status status =
      ApplyConfigFile(CKPT_SOURCE_DIR "/deploy/ckpt-server.yaml", &settings);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(settings.data_dir, "/var/lib/ckpt-server");
  EXPECT_EQ(settings.listen, "0.0.0.0:7070");
  EXPECT_EQ(settings.auth_tokens, "/etc/ckpt-server/tokens");
}

TEST(ServerConfigTest, TheExampleConfigsCommentedQuotasLoadOnceUncommented) {
  std::ifstream in(CKPT_SOURCE_DIR "/deploy/ckpt-server.yaml");
  std::string yaml;
  bool in_quotas = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "# quotas:") in_quotas = true;
    if (in_quotas && absl::StartsWith(line, "# "))
      yaml += line.substr(2) + "\n";
  }
  ServerSettings settings;
  absl::Status status = Apply(yaml, &settings);
  ASSERT_TRUE(status.ok()) << status << "\n" << yaml;
  EXPECT_EQ(settings.quota_max_stored_bytes, int64_t{1} << 40);
  EXPECT_EQ(settings.quota_tenants["research"].max_stored_bytes,
            int64_t{10} << 40);
  EXPECT_EQ(settings.quota_tenants["research"].max_upload_streams,
            std::nullopt);
  EXPECT_EQ(settings.quota_tenants["interns"].max_upload_streams, 8);
}

TEST(ServerConfigTest, ReadsPerTenantQuotas) {
  ServerSettings settings;
  absl::Status status = Apply(
      "quotas:\n"
      "  defaults:\n"
      "    max_stored_bytes: 1T\n"
      "  tenants:\n"
      "    research: {max_stored_bytes: 10GiB, max_upload_streams: 4}\n"
      "    batch.jobs-2:\n"
      "      max_upload_streams: 0\n"
      "    \"null\": {}\n",
      &settings);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(settings.quota_max_stored_bytes, int64_t{1} << 40);
  ASSERT_EQ(settings.quota_tenants.size(), 3u);
  EXPECT_EQ(settings.quota_tenants["research"].max_stored_bytes,
            int64_t{10} << 30);
  EXPECT_EQ(settings.quota_tenants["research"].max_upload_streams, 4);
  EXPECT_EQ(settings.quota_tenants["batch.jobs-2"].max_stored_bytes,
            std::nullopt);
  EXPECT_EQ(settings.quota_tenants["batch.jobs-2"].max_upload_streams, 0);
  EXPECT_EQ(settings.quota_tenants["null"], TenantQuotaSetting());

  // Printed and read back: the same settings, tenants included.
  const std::string yaml = ConfigYaml(settings);
  EXPECT_THAT(yaml, HasSubstr("  tenants:\n    \"batch.jobs-2\": "
                              "{max_upload_streams: 0}\n"));
  EXPECT_THAT(yaml, HasSubstr("\"research\": {max_stored_bytes: 10GiB, "
                              "max_upload_streams: 4}"));
  ServerSettings loaded;
  status = Apply(yaml, &loaded);
  ASSERT_TRUE(status.ok()) << status << "\n" << yaml;
  EXPECT_EQ(loaded, settings);
  // No tenants prints as an empty map, which reads back as none.
  EXPECT_THAT(ConfigYaml(ServerSettings()), HasSubstr("  tenants: {}\n"));
  ServerSettings none;
  ASSERT_TRUE(Apply(ConfigYaml(ServerSettings()), &none).ok());
  EXPECT_EQ(none, ServerSettings());
}

TEST(ServerConfigTest, RefusesBadPerTenantQuotasWithLineAndKey) {
  EXPECT_THAT(
      Refusal("quotas:\n  tenants:\n    a: {max_bytes: 1G}\n"),
      HasSubstr("test.yaml:3: quotas.tenants.a.max_bytes: unknown key"));
  EXPECT_THAT(
      Refusal("quotas:\n  tenants:\n    a:\n"
              "      max_stored_bytes: 1GB\n"),
      HasSubstr("test.yaml:4: quotas.tenants.a.max_stored_bytes: '1GB'"));
  EXPECT_THAT(Refusal("quotas:\n  tenants:\n    a: {max_stored_bytes: -1}\n"),
              HasSubstr("test.yaml:3: quotas.tenants.a.max_stored_bytes: "));
  EXPECT_THAT(
      Refusal("quotas:\n  tenants:\n    a: {max_upload_streams: 2000000000}\n"),
      HasSubstr("quotas.tenants.a.max_upload_streams: '2000000000' is out of "
                "range"));
  EXPECT_THAT(
      Refusal("quotas:\n  tenants:\n    a: {max_upload_streams: \"4\"}\n"),
      HasSubstr("quotas.tenants.a.max_upload_streams: wrong type: a quoted "
                "string"));
  EXPECT_THAT(
      Refusal("quotas:\n  tenants:\n    a: {max_upload_streams: [4]}\n"),
      HasSubstr("quotas.tenants.a.max_upload_streams: wrong type: a list"));
  EXPECT_THAT(Refusal("quotas:\n  tenants:\n    a: 5\n"),
              HasSubstr("test.yaml:3: quotas.tenants.a: expected a map"));
  EXPECT_THAT(Refusal("quotas:\n  tenants: [a]\n"),
              HasSubstr("test.yaml:2: quotas.tenants: expected a map"));
  EXPECT_THAT(Refusal("quotas:\n  tenants:\n    a: {max_upload_streams: 1}\n"
                      "    a: {max_upload_streams: 2}\n"),
              HasSubstr("test.yaml:4: quotas.tenants.a: duplicate key (first "
                        "given on line 3)"));
  EXPECT_THAT(Refusal("quotas:\n  tenants:\n    a:\n"
                      "      max_upload_streams: 1\n"
                      "      max_upload_streams: 2\n"),
              HasSubstr("test.yaml:5: quotas.tenants.a.max_upload_streams: "
                        "duplicate key (first given on line 4)"));
  EXPECT_THAT(Refusal("quotas:\n  tenants: {}\n  tenants: {}\n"),
              HasSubstr("test.yaml:3: quotas.tenants: duplicate key"));
  for (const char* name :
       {"\"a/b\"", "\"\"", "\"a b\"", "\"t\\u00e9\"",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    EXPECT_THAT(Refusal(absl::StrCat("quotas:\n  tenants:\n    ", name,
                                     ": {max_upload_streams: 1}\n")),
                HasSubstr("invalid tenant name"))
        << name;
  }
}

// The value a byte-size setting gets from `text` (the grammar itself is
// tested in common/byte_size_test.cc).
absl::StatusOr<int64_t> StoredBytesQuotaOf(absl::string_view text) {
  const ServerSetting* row =
      FindServerSetting("quotas.defaults.max_stored_bytes");
  if (row == nullptr) return absl::NotFoundError("no quota row");
  ServerSettings settings;
  if (absl::Status status = ParseServerSetting(*row, text, &settings);
      !status.ok()) {
    return status;
  }
  return settings.quota_max_stored_bytes;
}

TEST(ServerConfigTest, ByteSizesArePowersOf1024) {
  EXPECT_EQ(*StoredBytesQuotaOf("0"), 0);
  EXPECT_EQ(*StoredBytesQuotaOf("1000"), 1000);
  for (const char* text : {"64G", "64Gi", "64GiB", "64g", "64gib"}) {
    EXPECT_EQ(*StoredBytesQuotaOf(text), int64_t{64} << 30) << text;
  }
  EXPECT_EQ(*StoredBytesQuotaOf("1T"), int64_t{1} << 40);
  EXPECT_EQ(*StoredBytesQuotaOf("3KiB"), 3072);
  EXPECT_EQ(*StoredBytesQuotaOf("7000P"), int64_t{7000} << 50);
  for (const char* text :
       {"", "-1", "1.5G", "1GB", "1 GiB", "GiB", "1X", "8000P", "8192P",
        "16384P", "99999999999999999999", "0x10"}) {
    EXPECT_EQ(StoredBytesQuotaOf(text).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
  EXPECT_THAT(StoredBytesQuotaOf("8000P").status().message(),
              HasSubstr("'8000P' is out of range: must be from 0 to "));
  EXPECT_THAT(StoredBytesQuotaOf("16384P").status().message(),
              HasSubstr("'16384P' is too large"));
  // What --print-config writes reads back to the same value.
  const ServerSetting& row =
      *FindServerSetting("quotas.defaults.max_stored_bytes");
  for (int64_t value : {int64_t{0}, int64_t{1}, int64_t{1024}, int64_t{3} << 40,
                        (int64_t{1} << 62) + 1}) {
    ServerSettings settings;
    settings.quota_max_stored_bytes = value;
    EXPECT_EQ(*StoredBytesQuotaOf(FormatServerSetting(row, settings)), value);
  }
  ServerSettings settings;
  settings.quota_max_stored_bytes = int64_t{64} << 30;
  EXPECT_EQ(FormatServerSetting(row, settings), "64GiB");
}

}  // namespace
}  // namespace ckpt::server
