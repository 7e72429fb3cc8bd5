// ckpt-demo-trainer: a 2-rank "training job" on a synthetic sharded model
// that checkpoints through ckpt-server every few steps. It resumes from the
// latest committed checkpoint when one exists, can crash on purpose
// (--crash-at), and with --verify checks that its final state equals an
// uninterrupted run computed in memory.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace ckpt::demo {
namespace {

constexpr int64_t kRowsPerRank = 256;
constexpr int64_t kCols = 1024;

// One rank's slice of the model: two row-sharded weight matrices with their
// momentum buffers, plus a bias replicated on every rank (stored once).
struct RankState {
  int32_t rank = 0;
  int64_t step = 0;  // last completed step
  std::vector<float> w1, m1, w2, m2, bias;

  explicit RankState(int32_t r) : rank(r) {
    const size_t n = kRowsPerRank * kCols;
    w1.resize(n);
    w2.resize(n);
    m1.assign(n, 0.0f);
    m2.assign(n, 0.0f);
    bias.assign(kCols, 0.0f);
    for (size_t i = 0; i < n; ++i) {
      const double global = static_cast<double>(rank * n + i);
      w1[i] = static_cast<float>(std::sin(global * 1e-3));
      w2[i] = static_cast<float>(std::cos(global * 7e-4));
    }
  }

  // A deterministic momentum-SGD step on a synthetic gradient.
  void Train(int64_t s) {
    const size_t n = w1.size();
    for (size_t i = 0; i < n; ++i) {
      const float g1 = 0.01f * w1[i] - 0.001f * std::sin(0.1f * s + 1e-3f * i);
      const float g2 = 0.02f * w2[i] + 0.001f * std::cos(0.05f * s);
      m1[i] = 0.9f * m1[i] + g1;
      m2[i] = 0.9f * m2[i] + g2;
      w1[i] -= 0.1f * m1[i];
      w2[i] -= 0.1f * m2[i];
    }
    for (int64_t c = 0; c < kCols; ++c) bias[c] += 0.001f * std::sin(0.01f * s);
    step = s;
  }

  float Loss() const {
    double sum = 0;
    for (float v : w1) sum += static_cast<double>(v) * v;
    return static_cast<float>(sum / w1.size());
  }

  std::vector<std::pair<std::string, std::vector<float>*>> Sharded() {
    return {{"layer1.weight", &w1},
            {"layer1.momentum", &m1},
            {"layer2.weight", &w2},
            {"layer2.momentum", &m2}};
  }

  std::vector<client::TensorData> Tensors(int32_t world_size) {
    // This rank's block of a tensor split by rows, or a whole one.
    auto tensor = [](std::string name, DType dtype,
                     std::vector<int64_t> global_shape, Box box,
                     const void* data, size_t bytes) {
      client::TensorData out;
      out.name = std::move(name);
      out.dtype = dtype;
      out.global_shape = std::move(global_shape);
      out.box = std::move(box);
      out.bytes = absl::string_view(static_cast<const char*>(data), bytes);
      return out;
    };
    std::vector<client::TensorData> tensors;
    for (auto& [name, values] : Sharded()) {
      tensors.push_back(
          tensor(name, DType::kFloat32, {kRowsPerRank * world_size, kCols},
                 Box{{kRowsPerRank * rank, 0}, {kRowsPerRank, kCols}},
                 values->data(), values->size() * sizeof(float)));
    }
    tensors.push_back(tensor("bias", DType::kFloat32, {kCols},
                             Box{{0}, {kCols}}, bias.data(),
                             bias.size() * sizeof(float)));
    tensors.push_back(
        tensor("step", DType::kInt64, {}, Box{{}, {}}, &step, sizeof(step)));
    return tensors;
  }

  absl::Status Load(const std::vector<client::RestoredTensor>& restored) {
    for (const auto& tensor : restored) {
      void* dest = nullptr;
      size_t size = 0;
      if (tensor.entry.name == "bias") {
        dest = bias.data();
        size = bias.size() * sizeof(float);
      } else if (tensor.entry.name == "step") {
        dest = &step;
        size = sizeof(step);
      } else {
        for (auto& [name, values] : Sharded()) {
          if (name == tensor.entry.name) {
            dest = values->data();
            size = values->size() * sizeof(float);
          }
        }
      }
      if (dest == nullptr || size != tensor.bytes.size()) {
        return absl::DataLossError(absl::StrCat(
            "checkpoint tensor '", tensor.entry.name, "' does not fit"));
      }
      std::memcpy(dest, tensor.bytes.data(), size);
    }
    return absl::OkStatus();
  }

  std::string Digest() {
    std::string all;
    for (auto& tensor : Tensors(1)) {
      all.append(tensor.bytes.data(), tensor.bytes.size());
    }
    return Sha256(all).ShortHex();
  }
};

struct Flags {
  std::string server;
  std::string job = "demo/mlp";
  int64_t steps = 40;
  int64_t save_every = 5;
  int64_t crash_at = -1;
  int32_t world_size = 2;
  bool verify = false;
};

// Runs fn(rank) on one thread per rank and returns the first error.
template <typename Fn>
absl::Status ForEachRank(int32_t world_size, Fn fn) {
  std::vector<absl::Status> results(world_size);
  std::vector<std::thread> threads;
  threads.reserve(results.size());
  for (int32_t r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] { results[r] = fn(r); });
  }
  for (auto& t : threads) t.join();
  for (auto& status : results) CKPT_RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

absl::Status Run(const Flags& flags) {
  CKPT_ASSIGN_OR_RETURN(
      auto client, client::Client::Connect(
                       flags.server, {.connect_timeout = absl::Seconds(10)}));
  std::vector<RankState> ranks;
  ranks.reserve(static_cast<size_t>(flags.world_size));  // 1..64 (--world-size)
  for (int32_t r = 0; r < flags.world_size; ++r) ranks.emplace_back(r);

  int64_t first_step = 1;
  absl::StatusOr<Checkpoint> latest =
      client->GetManifest(flags.job, std::nullopt);
  if (latest.ok()) {
    CKPT_RETURN_IF_ERROR(ForEachRank(flags.world_size, [&](int32_t r) {
      CKPT_ASSIGN_OR_RETURN(
          auto restored,
          client->RestoreShard(flags.job, latest->record.step, r));
      return ranks[r].Load(restored);
    }));
    first_step = ranks[0].step + 1;
    std::cout << "restored step " << ranks[0].step << " from checkpoint "
              << flags.job << "@" << latest->record.step << " (state "
              << ranks[0].Digest() << ")" << std::endl;
  } else if (absl::IsNotFound(latest.status())) {
    std::cout << "no checkpoint of " << flags.job << " yet: starting fresh"
              << std::endl;
  } else {
    return latest.status();
  }

  for (int64_t s = first_step; s <= flags.steps; ++s) {
    for (auto& rank : ranks) rank.Train(s);
    if (s == flags.crash_at) {
      std::cout << "step " << s << ": simulated crash (no cleanup)"
                << std::endl;
      std::_Exit(3);
    }
    if (s % flags.save_every != 0 && s != flags.steps) continue;
    CheckpointMetadata meta;
    meta.metrics["loss"] = ranks[0].Loss();
    meta.writer_time = absl::Now();
    std::vector<client::SaveResult> saved(flags.world_size);
    CKPT_RETURN_IF_ERROR(ForEachRank(flags.world_size, [&](int32_t r) {
      client::SaveOptions options;
      options.rank = r;
      options.world_size = flags.world_size;
      options.metadata = meta;
      auto tensors = ranks[r].Tensors(flags.world_size);
      CKPT_ASSIGN_OR_RETURN(saved[r],
                            client->SaveShard(flags.job, s, tensors, options));
      return absl::OkStatus();
    }));
    uint64_t logical = 0, sent = 0;
    for (const auto& result : saved) {
      logical += result.logical_bytes;
      sent += result.bytes_sent;
    }
    std::cout << "step " << s << ": loss " << meta.metrics["loss"]
              << ", saved checkpoint (" << logical << " bytes, " << sent
              << " sent)" << std::endl;
  }

  if (flags.verify) {
    std::vector<RankState> reference;
    for (int32_t r = 0; r < flags.world_size; ++r) {
      reference.emplace_back(r);
      for (int64_t s = 1; s <= flags.steps; ++s) reference[r].Train(s);
    }
    for (int32_t r = 0; r < flags.world_size; ++r) {
      if (ranks[r].Digest() != reference[r].Digest()) {
        return absl::InternalError(absl::StrCat(
            "rank ", r, " ends in state ", ranks[r].Digest(),
            " but an uninterrupted run ends in ", reference[r].Digest()));
      }
    }
    std::cout << "final state identical to an uninterrupted run (rank 0 "
              << ranks[0].Digest() << ", rank 1 "
              << (flags.world_size > 1 ? ranks[1].Digest() : "-") << ")"
              << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::demo

int main(int argc, char** argv) {
  ckpt::demo::Flags flags;
  const char* env_server = std::getenv("CKPT_SERVER");
  flags.server = env_server != nullptr ? env_server : "127.0.0.1:7070";
  CLI::App app{
      "A 2-rank synthetic training job that checkpoints through ckpt-server "
      "and resumes from the latest committed checkpoint."};
  app.add_option("--server", flags.server,
                 "ckpt-server address HOST:PORT (default: $CKPT_SERVER or "
                 "127.0.0.1:7070)");
  app.add_option("--job", flags.job, "job name, tenant/name")
      ->capture_default_str();
  app.add_option("--steps", flags.steps, "train until this step")
      ->capture_default_str();
  app.add_option("--save-every", flags.save_every,
                 "checkpoint every N steps (and at the last step)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--crash-at", flags.crash_at,
                 "exit abruptly right after training this step (simulates a "
                 "failure)");
  app.add_option("--world-size", flags.world_size, "ranks, one thread each")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_flag("--verify", flags.verify,
               "check that the final state equals an uninterrupted run");
  CLI11_PARSE(app, argc, argv);
  absl::Status status = ckpt::demo::Run(flags);
  if (!status.ok()) {
    std::cerr << "ckpt-demo-trainer: " << status << std::endl;
    return 1;
  }
  return 0;
}
