// PortableTest: the fixture of the export/import integration tests
// (portable_test.cc, portable_refusal_test.cc): a real ckpt-server, the
// real `ckpt` CLI, and safetensors_tool.py, an independent reader and
// writer (json and numpy only).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {

inline std::string Sha(absl::string_view bytes) {
  return Sha256(bytes).ToHex();
}

inline void WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class PortableTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(StartServer());
  }

  std::string Dir(const std::string& name) const {
    return dir_->path() + "/" + name;
  }

  // `safetensors_tool.py COMMAND DIR`'s JSON (null, and a failure, when
  // it fails).
  nlohmann::json Tool(const std::string& command, const std::string& dir) {
    const std::string out = Dir("tool.out");
    const std::string line =
        absl::StrCat("/usr/bin/python3 ", CKPT_SAFETENSORS_TOOL, " ", command,
                     " ", dir, " >", out);
    const int status = std::system(line.c_str());
    EXPECT_EQ(status, 0) << line;
    if (status != 0) return nullptr;
    return nlohmann::json::parse(ReadWholeFile(out), nullptr, false);
  }

  client::SaveResult Save(const std::string& job, int64_t step,
                          const std::vector<client::TensorData>& tensors,
                          int32_t rank = 0, int32_t world_size = 1,
                          CheckpointMetadata metadata = {}) {
    client::SaveOptions options;
    options.rank = rank;
    options.world_size = world_size;
    options.metadata = std::move(metadata);
    auto saved = client_->SaveShard(job, step, tensors, options);
    EXPECT_TRUE(saved.ok()) << saved.status();
    return saved.ok() ? *saved : client::SaveResult{};
  }

  // A refused import stored nothing: no job, no checkpoint (pending or
  // not), no event.
  void ExpectNothingStored(const std::string& job) {
    auto jobs = client_->ListJobs();
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    for (const JobSummary& summary : *jobs) {
      EXPECT_NE(summary.job.name, job) << "the refused import made the job";
    }
    auto listed = client_->ListCheckpoints(job, /*include_uncommitted=*/true);
    EXPECT_TRUE(!listed.ok() || listed->empty())
        << listed->size() << " checkpoint(s) stored";
    auto events = client_->ListEvents(job);
    EXPECT_TRUE(!events.ok() || events->empty())
        << events->size() << " event(s) recorded";
  }
};

}  // namespace ckpt::testing
