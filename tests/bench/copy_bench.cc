// ckpt-bench-copy: copying a job between two ckpt-servers on this machine
// (`ckpt copy`, through Client::Copy as the CLI runs it) against the way
// there is without it, in the same run.
//
// Workload, per size S of --sizes-mib: a float32 table of S MiB (rows of
// 4 KiB) saved on server A as step 1 in full, then steps 2..5 as row
// deltas (Check-N-Run), each on the step before with --delta-fraction of
// the rows changed (scattered, uniformly). A's tenant then stores the
// job's unique bytes. Each round, on fresh, empty target servers:
//   copy     Client::Copy of the 5 checkpoints from A to B: only chunks B
//            lacks cross, deltas stay deltas
//   get+put  per step, RestoreShard from A (its delta chain applied) and
//            SaveShard of the whole table into C: what a user does with
//            `ckpt get` and `ckpt put`, through the library. A restore
//            gives whole tensors, so every checkpoint is saved in full
//            (and a 1% row change touches every 4 MiB chunk, so chunk
//            dedup saves nothing)
// and reports the wall time (median and spread over --rounds), the chunk
// bytes sent, the bytes the target stores, and sent / A's unique bytes
// (goal: the copy at most 1.05). The two take turns at going first.
// After each copy, B's step 5 (whose restore applies every delta) is
// compared byte for byte with the table.
//
// Optionally (--restic auto, the default, runs it when `restic` is on
// PATH; it is not a dependency of ckpt), the same five table states as a
// file, backed up into a restic repository once, and each round `restic
// copy` of the five snapshots into a fresh repository: its time and the
// bytes it wrote (the new repository's size).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::bench {
namespace {

constexpr char kJob[] = "bench/copy";
constexpr int64_t kCols = 1024;  // float32: 4 KiB rows
constexpr int64_t kSteps = 5;

struct Flags {
  std::vector<int64_t> sizes_mib = {1024, 256};
  double delta_fraction = 0.01;
  int rounds = 3;
  std::string restic = "auto";  // auto, on, off
  std::string dir;
  bool json = false;
};

// One approach's figures in one round.
struct Measure {
  double seconds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_stored = 0;  // by the target
};

// A server on a fresh data directory and a client of it.
struct Server {
  std::unique_ptr<testing::TempDir> dir;
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::Client> client;
};

absl::StatusOr<Server> StartServer(const std::string& base,
                                   const std::string& name) {
  Server server;
  CKPT_ASSIGN_OR_RETURN(server.dir,
                        testing::TempDir::Create(base + "/" + name));
  CKPT_ASSIGN_OR_RETURN(server.process, testing::ServerProcess::Start(
                                            server.dir->path() + "/db"));
  CKPT_ASSIGN_OR_RETURN(
      server.client,
      client::Client::Connect(server.process->address(),
                              {.connect_timeout = absl::Seconds(30)}));
  return server;
}

absl::StatusOr<uint64_t> StoredBytes(client::Client& client) {
  CKPT_ASSIGN_OR_RETURN(Stats stats, client.GetStats(""));
  return stats.stored_bytes;
}

client::TensorData TableTensor(const std::vector<float>& table) {
  client::TensorData tensor;
  tensor.name = "embedding.weight";
  tensor.dtype = DType::kFloat32;
  const int64_t rows = static_cast<int64_t>(table.size()) / kCols;
  tensor.global_shape = {rows, kCols};
  tensor.box = Box{{0, 0}, {rows, kCols}};
  tensor.bytes = absl::string_view(reinterpret_cast<const char*>(table.data()),
                                   table.size() * sizeof(float));
  return tensor;
}

// `count` distinct rows of `rows`, ascending, uniformly at random.
std::vector<uint64_t> RandomRows(uint64_t rows, uint64_t count,
                                 std::mt19937_64& random) {
  std::vector<uint64_t> all(rows);
  for (uint64_t i = 0; i < rows; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), random);
  all.resize(count);
  std::sort(all.begin(), all.end());
  return all;
}

// restic, when used: its binary runs with the password in the environment.
bool ResticAvailable() {
  return std::system("restic version >/dev/null 2>&1") == 0;
}

absl::Status Restic(const std::string& args) {
  const std::string command = absl::StrCat(
      "RESTIC_PASSWORD=bench RESTIC_FROM_PASSWORD=bench restic --quiet ", args,
      " >/dev/null");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("restic failed: ", command));
  }
  return absl::OkStatus();
}

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t bytes = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(path)) {
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  return bytes;
}

// The job on A, and (with restic) the same states in a restic repository.
struct Source {
  Server server;
  std::vector<float> final_table;  // the table at step 5
  uint64_t unique_bytes = 0;       // what A stores for the job
  uint64_t logical_bytes = 0;      // over the 5 checkpoints
  std::string restic_repo;         // empty: no restic
  uint64_t restic_repo_bytes = 0;
};

absl::StatusOr<Source> MakeSource(const Flags& flags, const std::string& base,
                                  int64_t size_mib, bool restic) {
  Source source;
  CKPT_ASSIGN_OR_RETURN(source.server, StartServer(base, "ckpt-copy-source"));
  const uint64_t rows =
      (static_cast<uint64_t>(size_mib) << 20) / (kCols * sizeof(float));
  std::vector<float> table(rows * kCols);
  Fill(table, 7);
  std::mt19937_64 random(11);
  const std::string restic_dir = source.server.dir->path() + "/restic";
  if (restic) {
    source.restic_repo = restic_dir + "/repo";
    std::filesystem::create_directories(restic_dir + "/state");
    CKPT_RETURN_IF_ERROR(Restic("init -r " + source.restic_repo));
  }
  for (int64_t step = 1; step <= kSteps; ++step) {
    client::TensorData tensor = TableTensor(table);
    std::vector<uint64_t> changed;
    if (step > 1) {
      changed = RandomRows(
          rows, static_cast<uint64_t>(flags.delta_fraction * rows), random);
      std::vector<float> fresh(kCols);
      for (uint64_t row : changed) {
        Fill(fresh, random());
        std::memcpy(table.data() + row * kCols, fresh.data(),
                    kCols * sizeof(float));
      }
      tensor.delta_base_step = step - 1;
      tensor.delta_rows = changed;
    }
    CKPT_ASSIGN_OR_RETURN(
        client::SaveResult saved,
        source.server.client->SaveShard(kJob, step, {tensor}, {}));
    source.logical_bytes += saved.logical_bytes;
    if (restic) {
      std::ofstream(restic_dir + "/state/table.bin", std::ios::binary)
          .write(tensor.bytes.data(),
                 static_cast<std::streamsize>(tensor.bytes.size()));
      CKPT_RETURN_IF_ERROR(Restic(absl::StrCat(
          "-r ", source.restic_repo, " backup ", restic_dir, "/state")));
    }
  }
  if (restic) {
    std::filesystem::remove_all(restic_dir + "/state");
    source.restic_repo_bytes = DirectoryBytes(source.restic_repo);
  }
  CKPT_ASSIGN_OR_RETURN(source.unique_bytes,
                        StoredBytes(*source.server.client));
  source.final_table = std::move(table);
  return source;
}

absl::StatusOr<Measure> RunCopy(Source& source, const std::string& base) {
  CKPT_ASSIGN_OR_RETURN(Server target, StartServer(base, "ckpt-copy-target"));
  client::CopyRequest request;
  request.job = kJob;
  request.source_label = source.server.process->address();
  request.target_label = target.process->address();
  const absl::Time start = absl::Now();
  CKPT_ASSIGN_OR_RETURN(
      client::CopyReport report,
      client::Client::Copy(*source.server.client, *target.client, request));
  Measure measure;
  measure.seconds = Seconds(start);
  measure.bytes_sent = report.bytes_sent;
  CKPT_ASSIGN_OR_RETURN(measure.bytes_stored, StoredBytes(*target.client));
  // Untimed: the newest step, every delta applied, is the table.
  CKPT_ASSIGN_OR_RETURN(std::vector<client::RestoredTensor> restored,
                        target.client->RestoreShard(kJob, kSteps, 0));
  const client::TensorData want = TableTensor(source.final_table);
  if (restored.size() != 1 || restored[0].bytes.size() != want.bytes.size() ||
      std::memcmp(restored[0].bytes.data(), want.bytes.data(),
                  want.bytes.size()) != 0) {
    return absl::InternalError("the copy's step 5 differs from the table");
  }
  return measure;
}

absl::StatusOr<Measure> RunGetPut(Source& source, const std::string& base) {
  CKPT_ASSIGN_OR_RETURN(Server target, StartServer(base, "ckpt-getput-target"));
  Measure measure;
  const absl::Time start = absl::Now();
  for (int64_t step = 1; step <= kSteps; ++step) {
    CKPT_ASSIGN_OR_RETURN(std::vector<client::RestoredTensor> restored,
                          source.server.client->RestoreShard(kJob, step, 0));
    std::vector<client::TensorData> tensors;
    for (const client::RestoredTensor& t : restored) {
      client::TensorData tensor;
      tensor.name = t.entry.name;
      tensor.dtype = t.entry.dtype;
      tensor.global_shape = t.entry.global_shape;
      tensor.box = t.entry.box;
      tensor.bytes = absl::string_view(t.bytes.data(), t.bytes.size());
      tensors.push_back(std::move(tensor));
    }
    CKPT_ASSIGN_OR_RETURN(client::SaveResult saved,
                          target.client->SaveShard(kJob, step, tensors, {}));
    measure.bytes_sent += saved.bytes_sent;
  }
  measure.seconds = Seconds(start);
  CKPT_ASSIGN_OR_RETURN(measure.bytes_stored, StoredBytes(*target.client));
  return measure;
}

absl::StatusOr<Measure> RunResticCopy(const Source& source,
                                      const std::string& base) {
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-copy-restic"));
  const std::string repo = dir->path() + "/repo";
  // Same chunker parameters, as `restic copy` needs to deduplicate.
  CKPT_RETURN_IF_ERROR(Restic(
      absl::StrCat("init -r ", repo, " --copy-chunker-params --from-repo ",
                   source.restic_repo)));
  const uint64_t empty = DirectoryBytes(repo);
  Measure measure;
  const absl::Time start = absl::Now();
  CKPT_RETURN_IF_ERROR(Restic(
      absl::StrCat("-r ", repo, " copy --from-repo ", source.restic_repo)));
  measure.seconds = Seconds(start);
  measure.bytes_stored = DirectoryBytes(repo) - empty;
  measure.bytes_sent = measure.bytes_stored;  // a local copy writes its packs
  return measure;
}

std::string Mib(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

absl::StatusOr<nlohmann::json> RunSize(const Flags& flags,
                                       const std::string& base,
                                       int64_t size_mib, bool restic) {
  CKPT_ASSIGN_OR_RETURN(Source source,
                        MakeSource(flags, base, size_mib, restic));
  std::vector<std::string> names = {"copy", "get+put"};
  if (restic) names.push_back("restic-copy");
  std::vector<std::vector<Measure>> measures(names.size());
  for (int round = 0; round < flags.rounds; ++round) {
    for (size_t k = 0; k < names.size(); ++k) {
      const size_t a = (k + round) % names.size();  // take turns going first
      absl::StatusOr<Measure> measure = a == 0   ? RunCopy(source, base)
                                        : a == 1 ? RunGetPut(source, base)
                                                 : RunResticCopy(source, base);
      CKPT_RETURN_IF_ERROR(measure.status());
      measures[a].push_back(*measure);
    }
  }
  nlohmann::json result = {{"size_mib", size_mib},
                           {"checkpoints", kSteps},
                           {"delta_fraction", flags.delta_fraction},
                           {"logical_bytes", source.logical_bytes},
                           {"unique_bytes", source.unique_bytes},
                           {"rounds", flags.rounds}};
  if (restic) result["restic_source_repo_bytes"] = source.restic_repo_bytes;
  std::cout << "\n"
            << size_mib << " MiB table, " << kSteps << " checkpoints (1 full + "
            << kSteps - 1 << " deltas of " << flags.delta_fraction * 100
            << "% rows): " << Mib(source.logical_bytes) << " logical, A stores "
            << Mib(source.unique_bytes) << " unique\n";
  if (restic) {
    std::cout << "restic repository of the same 5 states: "
              << Mib(source.restic_repo_bytes) << "\n";
  }
  std::cout << absl::StrFormat("%-12s %-22s %-13s %-13s %s\n", "approach",
                               "time (median, spread)", "sent", "target stores",
                               "sent / unique");
  for (size_t a = 0; a < names.size(); ++a) {
    std::vector<double> seconds;
    for (const Measure& m : measures[a]) seconds.push_back(m.seconds);
    const Measure& last = measures[a].back();
    const double ratio = static_cast<double>(last.bytes_sent) /
                         static_cast<double>(source.unique_bytes);
    std::cout << absl::StrFormat(
        "%-12s %-22s %-13s %-13s %.3f\n", names[a],
        absl::StrFormat("%.2fs (%s)", Median(seconds), Spread(seconds)),
        Mib(last.bytes_sent), Mib(last.bytes_stored), ratio);
    result["approaches"][names[a]] = {
        {"median_seconds", Median(seconds)},
        {"min_seconds", *std::min_element(seconds.begin(), seconds.end())},
        {"max_seconds", *std::max_element(seconds.begin(), seconds.end())},
        {"bytes_sent", last.bytes_sent},
        {"bytes_stored_by_target", last.bytes_stored},
        {"sent_over_unique", ratio}};
  }
  return result;
}

absl::Status Run(const Flags& flags) {
  bool restic = flags.restic == "on";
  if (flags.restic == "auto") restic = ResticAvailable();
  if (restic && !ResticAvailable()) {
    return absl::FailedPreconditionError("--restic on, but no restic on PATH");
  }
  if (!restic) std::cout << "restic copy: skipped (--restic off or absent)\n";
  const std::string base = BenchBaseDir(flags.dir);
  nlohmann::json all = nlohmann::json::array();
  for (int64_t size : flags.sizes_mib) {
    CKPT_ASSIGN_OR_RETURN(nlohmann::json result,
                          RunSize(flags, base, size, restic));
    all.push_back(result);
  }
  if (flags.json) std::cout << all.dump(2) << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{"ckpt copy between two servers against get + re-put"};
  app.add_option("--sizes-mib", flags.sizes_mib,
                 "full checkpoint sizes to run, MiB")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--delta-fraction", flags.delta_fraction,
                 "fraction of rows each delta changes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--restic", flags.restic,
                 "also time `restic copy` of the same states: auto (when "
                 "restic is on PATH), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "where the servers' data go (default: $TMPDIR, else /var/tmp)");
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-copy", ckpt::bench::Run(flags));
}
