#include "tests/reliability/history.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ckpt::reliability {
namespace {

using nlohmann::json;

constexpr std::pair<OpKind, const char*> kOpNames[] = {
    {OpKind::kSave, "save"},     {OpKind::kPrune, "prune"},
    {OpKind::kDelete, "delete"}, {OpKind::kGc, "gc"},
    {OpKind::kCopy, "copy"},
};
constexpr std::pair<RecordType, const char*> kTypeNames[] = {
    {RecordType::kInvoke, "invoke"},   {RecordType::kOk, "ok"},
    {RecordType::kFail, "fail"},       {RecordType::kUnknown, "unknown"},
    {RecordType::kObserve, "observe"},
};

template <typename E, size_t N>
absl::StatusOr<E> ParseName(const std::pair<E, const char*> (&names)[N],
                            const std::string& text) {
  for (const auto& [value, name] : names) {
    if (text == name) return value;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown name '", text, "'"));
}

json ObservationToJson(const Observation& observation) {
  json jobs = json::object();
  for (const auto& [name, job] : observation.jobs) {
    json committed = json::object();
    for (const auto& [step, checkpoint] : job.committed) {
      json restored = json::object();
      for (const auto& [rank, hashes] : checkpoint.restored) {
        restored[std::to_string(rank)] = hashes;
      }
      json errors = json::object();
      for (const auto& [rank, error] : checkpoint.restore_errors) {
        errors[std::to_string(rank)] = error;
      }
      committed[std::to_string(step)] = {
          {"world_size", checkpoint.world_size},
          {"committed_ranks", checkpoint.committed_ranks},
          {"restored", restored},
          {"restore_errors", errors}};
    }
    jobs[name] = {{"committed", committed},
                  {"removed_by_events", job.removed_by_events}};
  }
  return {
      {"cycle", observation.cycle},
      {"jobs", jobs},
      {"gc_missing_chunks", observation.gc_missing_chunks},
      {"verify_damaged_chunks", observation.verify_damaged_chunks},
      {"verify_damaged_checkpoints", observation.verify_damaged_checkpoints},
      {"errors", observation.errors}};
}

// Keys of the history's maps are decimal numbers (JSON keys are strings).
template <typename T>
T NumberKey(const std::string& key) {
  return static_cast<T>(std::stoll(key));
}

Observation ObservationFromJson(const json& in) {
  Observation observation;
  observation.cycle = in.at("cycle").get<int64_t>();
  for (const auto& [name, job_json] : in.at("jobs").items()) {
    ObservedJob& job = observation.jobs[name];
    for (const auto& [step, cp_json] : job_json.at("committed").items()) {
      ObservedCheckpoint& checkpoint = job.committed[NumberKey<int64_t>(step)];
      checkpoint.world_size = cp_json.at("world_size").get<int32_t>();
      checkpoint.committed_ranks =
          cp_json.at("committed_ranks").get<std::vector<int32_t>>();
      for (const auto& [rank, hashes] : cp_json.at("restored").items()) {
        checkpoint.restored[NumberKey<int32_t>(rank)] =
            hashes.get<TensorHashes>();
      }
      for (const auto& [rank, error] : cp_json.at("restore_errors").items()) {
        checkpoint.restore_errors[NumberKey<int32_t>(rank)] =
            error.get<std::string>();
      }
    }
    job.removed_by_events =
        job_json.at("removed_by_events").get<std::vector<int64_t>>();
  }
  observation.gc_missing_chunks = in.at("gc_missing_chunks").get<uint64_t>();
  observation.verify_damaged_chunks =
      in.at("verify_damaged_chunks").get<uint64_t>();
  observation.verify_damaged_checkpoints =
      in.at("verify_damaged_checkpoints").get<uint64_t>();
  observation.errors = in.at("errors").get<std::vector<std::string>>();
  return observation;
}

}  // namespace

const char* OpKindName(OpKind kind) {
  for (const auto& [value, name] : kOpNames) {
    if (value == kind) return name;
  }
  return "?";
}

const char* RecordTypeName(RecordType type) {
  for (const auto& [value, name] : kTypeNames) {
    if (value == type) return name;
  }
  return "?";
}

std::string RecordToJson(const Record& record) {
  json out = {{"type", RecordTypeName(record.type)}, {"t_us", record.time_us}};
  switch (record.type) {
    case RecordType::kObserve:
      out["observation"] = ObservationToJson(record.observation);
      break;
    case RecordType::kInvoke:
      out["op_id"] = record.op_id;
      out["op"] = OpKindName(record.op);
      out["job"] = record.job;
      out["step"] = record.step;
      out["rank"] = record.rank;
      out["world_size"] = record.world_size;
      out["sent"] = record.sent;
      out["source_job"] = record.source_job;
      out["max_to_keep"] = record.max_to_keep;
      break;
    case RecordType::kOk:
    case RecordType::kFail:
    case RecordType::kUnknown:
      out["op_id"] = record.op_id;
      out["status"] = record.status;
      out["checkpoint_committed"] = record.checkpoint_committed;
      out["removed_steps"] = record.removed_steps;
      out["gc_missing_chunks"] = record.gc_missing_chunks;
      break;
  }
  return out.dump();
}

absl::StatusOr<Record> RecordFromJson(const std::string& line) {
  json in = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded() || !in.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  // nlohmann reports a missing or mistyped field by throwing; a history is
  // input from outside, so that becomes a status here and goes no further.
  try {
    Record record;
    absl::StatusOr<RecordType> type =
        ParseName(kTypeNames, in.at("type").get<std::string>());
    if (!type.ok()) return type.status();
    record.type = *type;
    record.time_us = in.at("t_us").get<int64_t>();
    if (record.type == RecordType::kObserve) {
      record.observation = ObservationFromJson(in.at("observation"));
      return record;
    }
    record.op_id = in.at("op_id").get<uint64_t>();
    if (record.type == RecordType::kInvoke) {
      absl::StatusOr<OpKind> op =
          ParseName(kOpNames, in.at("op").get<std::string>());
      if (!op.ok()) return op.status();
      record.op = *op;
      record.job = in.at("job").get<std::string>();
      record.step = in.at("step").get<int64_t>();
      record.rank = in.at("rank").get<int32_t>();
      record.world_size = in.at("world_size").get<int32_t>();
      record.sent = in.at("sent").get<TensorHashes>();
      record.source_job = in.at("source_job").get<std::string>();
      record.max_to_keep = in.at("max_to_keep").get<int32_t>();
      return record;
    }
    record.status = in.at("status").get<std::string>();
    record.checkpoint_committed = in.at("checkpoint_committed").get<bool>();
    record.removed_steps = in.at("removed_steps").get<std::vector<int64_t>>();
    record.gc_missing_chunks = in.at("gc_missing_chunks").get<uint64_t>();
    return record;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {  // std::stoll on a bad key
    return absl::InvalidArgumentError(e.what());
  }
}

absl::StatusOr<std::vector<Record>> ReadHistory(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<Record> records;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    absl::StatusOr<Record> record = RecordFromJson(line);
    if (!record.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": ", record.status().message()));
    }
    records.push_back(*std::move(record));
  }
  return records;
}

absl::StatusOr<std::unique_ptr<HistoryRecorder>> HistoryRecorder::Create(
    const std::string& path) {
  std::ofstream out;
  if (!path.empty()) {
    out.open(path, std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return std::make_unique<HistoryRecorder>(std::move(out));
}

uint64_t HistoryRecorder::Invoke(Record invoke) {
  absl::MutexLock lock(&mu_);
  invoke.type = RecordType::kInvoke;
  invoke.op_id = next_op_id_++;
  const uint64_t id = invoke.op_id;
  Append(std::move(invoke));
  return id;
}

void HistoryRecorder::End(uint64_t op_id, Record end) {
  absl::MutexLock lock(&mu_);
  end.op_id = op_id;
  Append(std::move(end));
}

void HistoryRecorder::Observe(Observation observation) {
  absl::MutexLock lock(&mu_);
  Record record;
  record.type = RecordType::kObserve;
  record.observation = std::move(observation);
  Append(std::move(record));
}

std::vector<Record> HistoryRecorder::records() const {
  absl::MutexLock lock(&mu_);
  return records_;
}

void HistoryRecorder::Append(Record record) {
  record.time_us = absl::ToInt64Microseconds(absl::Now() - start_);
  if (out_.is_open()) {
    out_ << RecordToJson(record) << '\n';
    out_.flush();
  }
  records_.push_back(std::move(record));
}

bool OutcomeUnknown(const absl::Status& status) {
  switch (status.code()) {
    // Refusals: the server (or the client, before sending) decided the call
    // does nothing.
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kResourceExhausted:
      return false;
    default:  // UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ABORTED, ...
      return true;
  }
}

}  // namespace ckpt::reliability
