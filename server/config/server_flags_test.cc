#include "server/config/server_flags.h"

#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;

// The settings `args` (without the program name) give.
absl::StatusOr<ServerSettings> Resolve(std::vector<std::string> args) {
  CLI::App app{"test"};
  ServerFlags flags(&app);
  std::vector<const char*> argv = {"ckpt-server"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return flags.Resolve();
}

std::string WriteConfig(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ServerFlagsTest, NoFlagsGiveTheDefaults) {
  absl::StatusOr<ServerSettings> settings = Resolve({});
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(*settings, ServerSettings());
}

TEST(ServerFlagsTest, ParsesEachTypeAndBothBooleanForms) {
  absl::StatusOr<ServerSettings> settings = Resolve(
      {"--data-dir", "/d", "--max-lease-seconds", "7200", "--gc-interval",
       "0.25", "--direct-io=true", "--shared-memory-reads", "false",
       "--insecure-allow-unauthenticated", "--shutdown-grace-seconds", "3"});
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->data_dir, "/d");
  EXPECT_EQ(settings->max_lease_seconds, 7200);
  EXPECT_EQ(settings->gc_interval_seconds, 0.25);
  EXPECT_TRUE(settings->direct_io);
  EXPECT_FALSE(settings->shared_memory_reads);
  EXPECT_TRUE(settings->insecure_allow_unauthenticated);
  EXPECT_EQ(settings->shutdown_grace_seconds, 3);
}

// One verify call's threads: a small default, and a cap well below the
// cores-times-16-MiB a shared server could not spare.
TEST(ServerFlagsTest, VerifyThreadsDefaultToFewAndAreCapped) {
  EXPECT_EQ(ServerSettings().verify_threads, 0);
  absl::StatusOr<ServerSettings> settings = Resolve({"--verify-threads", "64"});
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->verify_threads, 64);
  EXPECT_EQ(Resolve({"--verify-threads", "65"}).status().message(),
            "--verify-threads: '65' is out of range: must be from 0 to 64");
  EXPECT_EQ(Resolve({"--verify-threads", "-1"}).status().message(),
            "--verify-threads: '-1' is out of range: must be from 0 to 64");
  CLI::App app{"test"};
  ServerFlags flags(&app);
  EXPECT_THAT(app.help(), HasSubstr("0: half the machine's cores, at least 1 "
                                    "and at most 4"));
}

TEST(ServerFlagsTest, RefusesBadValuesNamingTheFlag) {
  EXPECT_EQ(Resolve({"--chunk-hold-seconds", "-1"}).status().message(),
            "--chunk-hold-seconds: '-1' is out of range: must be from 0 to "
            "315360000");
  EXPECT_EQ(Resolve({"--direct-io=yes please"}).status().message(),
            "--direct-io: 'yes please' is not true or false");
  EXPECT_EQ(Resolve({"--shutdown-grace-seconds", "ten"}).status().message(),
            "--shutdown-grace-seconds: 'ten' is not a number of seconds");
  // CLI11 itself refuses a flag given twice.
  EXPECT_THROW(Resolve({"--listen", "a:1", "--listen", "b:2"}),
               CLI::ParseError);
}

TEST(ServerFlagsTest, FlagsOverrideTheConfigFile) {
  const std::string config =
      WriteConfig("override.yaml",
                  "listen: 10.0.0.1:7070\nshutdown_grace_seconds: 20\n"
                  "direct_io: false\n");
  absl::StatusOr<ServerSettings> settings = Resolve(
      {"--config", config, "--listen", "127.0.0.1:0", "--direct-io=true"});
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->listen, "127.0.0.1:0");       // the flag
  EXPECT_TRUE(settings->direct_io);                 // the flag
  EXPECT_EQ(settings->shutdown_grace_seconds, 20);  // the file
  EXPECT_EQ(settings->max_lease_seconds, 3600);     // the default
}

TEST(ServerFlagsTest, ABadConfigFileIsNamedWithLineAndKey) {
  const std::string config =
      WriteConfig("bad.yaml", "listen: a:1\nshutdown_grace_seconds: -3\n");
  EXPECT_EQ(Resolve({"--config", config}).status().message(),
            absl::StrCat(config,
                         ":2: shutdown_grace_seconds: '-3' is out of range: "
                         "must be from 0 to 3600"));
}

TEST(ServerFlagsTest, ByteSizeSettingsReadUnitsInPowersOf1024) {
  // A kBytes row parses through the same function for a flag and a file.
  const ServerSetting row{"test_bytes",
                          "--test-bytes",
                          SettingType::kBytes,
                          &ServerSettings::chunk_hold_seconds,
                          "0",
                          0,
                          1e15,
                          "test"};
  ServerSettings settings;
  ASSERT_TRUE(ParseServerSetting(row, "64GiB", &settings).ok());
  EXPECT_EQ(settings.chunk_hold_seconds, int64_t{64} << 30);
  ASSERT_TRUE(ParseServerSetting(row, "2M", &settings).ok());
  EXPECT_EQ(settings.chunk_hold_seconds, 2 << 20);
  EXPECT_THAT(ParseServerSetting(row, "2MB", &settings).message(),
              HasSubstr("unknown unit 'MB'"));
  EXPECT_THAT(ParseServerSetting(row, "1P", &settings).message(),
              HasSubstr("out of range"));
  EXPECT_EQ(FormatServerSetting(row, settings), "2MiB");
}

TEST(ServerFlagsTest, HelpNamesEveryFlagWithItsConfigKey) {
  CLI::App app{"test"};
  ServerFlags flags(&app);
  const std::string help = app.help();
  EXPECT_THAT(help, HasSubstr("--config"));
  for (const ServerSetting& setting : ServerSettingTable()) {
    EXPECT_THAT(help, HasSubstr(setting.flag));
    EXPECT_THAT(help, HasSubstr(absl::StrCat("Config key: ", setting.key)));
    EXPECT_NE(std::string(setting.help), "") << setting.key;
  }
}

TEST(ServerFlagsTest, TheOperatorGuideNamesEveryKeyAndFlag) {
  std::ifstream in(CKPT_SOURCE_DIR "/docs/operations.md");
  const std::string guide((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  ASSERT_THAT(guide, HasSubstr("## Configuration"));
  for (const ServerSetting& setting : ServerSettingTable()) {
    EXPECT_THAT(guide, HasSubstr(absl::StrCat("`", setting.key, "`")))
        << "docs/operations.md, Configuration: document " << setting.key;
    EXPECT_THAT(guide, HasSubstr(setting.flag))
        << "docs/operations.md, Configuration: document " << setting.flag;
  }
}

TEST(ServerFlagsTest, EveryKeyAndFlagIsUniqueAndEveryDefaultParses) {
  std::set<std::string> keys, flags;
  for (const ServerSetting& setting : ServerSettingTable()) {
    EXPECT_TRUE(keys.insert(setting.key).second) << setting.key;
    EXPECT_TRUE(flags.insert(setting.flag).second) << setting.flag;
    ServerSettings settings;
    EXPECT_TRUE(
        ParseServerSetting(setting, setting.default_value, &settings).ok())
        << setting.key;
  }
}

}  // namespace
}  // namespace ckpt::server
