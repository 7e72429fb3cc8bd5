#include "server/rpc/call_log.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/manifest.h"
#include "common/quote.h"

namespace ckpt::server {
namespace {

constexpr absl::string_view kServicePrefix = "/ckpt.v1.CheckpointService/";
// Longest principal, job or tenant, and status message, in a log line.
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxMessageBytes = 512;

// rpc_failed warnings let through a second; the rest are counted, and the
// count goes out (event rpc_failed_held_back) before the next line let
// through. A client can make every call it opens fail (a flood of streams
// reset at once runs to ~100,000 a second), and a line for each would fill
// the log's disk. Errors (the server's own faults) are never held back;
// the metrics count every call.
constexpr int kWarningsPerSecond = 100;

class WarningBudget {
 public:
  static WarningBudget& Get() {
    static WarningBudget budget;
    return budget;
  }
  // The lines held back since the last one let through, or nullopt when
  // this one is held back too.
  std::optional<uint64_t> Take(absl::Time now) {
    absl::MutexLock lock(&mu_);
    const int64_t second = absl::ToUnixSeconds(now);
    if (second != second_) {
      second_ = second;
      used_ = 0;
    }
    if (used_ >= kWarningsPerSecond) {
      ++held_back_;
      return std::nullopt;
    }
    ++used_;
    return std::exchange(held_back_, 0);
  }

 private:
  absl::Mutex mu_;
  int64_t second_ ABSL_GUARDED_BY(mu_) = 0;
  int used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t held_back_ ABSL_GUARDED_BY(mu_) = 0;
};

// What the handlers noted about a call in flight.
struct CallNote {
  std::string principal;
  std::string job;
};

// The notes of the calls in flight, by their context. A call is in it from
// its interceptor's creation to the interceptor's destruction (with the
// context), so a note never outlives its call.
class CallNotes {
 public:
  static CallNotes& Get() {
    static CallNotes notes;
    return notes;
  }
  void Open(const void* context) {
    absl::MutexLock lock(&mu_);
    notes_.try_emplace(context);
  }
  CallNote Close(const void* context) {
    absl::MutexLock lock(&mu_);
    auto it = notes_.find(context);
    if (it == notes_.end()) return {};
    CallNote note = std::move(it->second);
    notes_.erase(it);
    return note;
  }
  CallNote Peek(const void* context) {
    absl::MutexLock lock(&mu_);
    auto it = notes_.find(context);
    return it == notes_.end() ? CallNote{} : it->second;
  }
  void SetPrincipal(const void* context, absl::string_view principal) {
    absl::MutexLock lock(&mu_);
    auto it = notes_.find(context);
    if (it != notes_.end()) {
      it->second.principal =
          TruncateUtf8(std::string(principal), kMaxNameBytes);
    }
  }
  void SetJob(const void* context, absl::string_view job) {
    absl::MutexLock lock(&mu_);
    auto it = notes_.find(context);
    if (it != notes_.end() && it->second.job.empty()) {
      it->second.job = TruncateUtf8(std::string(job), kMaxNameBytes);
    }
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<const void*, CallNote> notes_ ABSL_GUARDED_BY(mu_);
};

// The streaming methods, counted while open.
std::optional<StreamKind> StreamOf(absl::string_view method) {
  if (method == "PutChunks") return StreamKind::kUpload;
  if (method == "ReadChunks") return StreamKind::kDownload;
  if (method == "VerifyCheckpoints") return StreamKind::kVerify;
  return std::nullopt;
}

absl::string_view OrDash(absl::string_view text) {
  return text.empty() ? absl::string_view("-") : text;
}

// One call: created when gRPC matches it to a method, destroyed with its
// context after the call has ended.
class CallLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallLogInterceptor(grpc::ServerContextBase* context, absl::string_view method,
                     Metrics* metrics)
      : context_(context),
        method_(method),
        metrics_(metrics),
        start_(absl::Now()),
        stream_(StreamOf(method)) {
    CallNotes::Get().Open(context_);
    if (metrics_ != nullptr && stream_.has_value()) {
      metrics_->StreamOpened(*stream_);
    }
  }

  ~CallLogInterceptor() override {
    CallNote note = CallNotes::Get().Close(context_);
    // Every reactor finishes its call, so a status is normally seen; a call
    // gRPC ended without one (the client went away first) counts as
    // cancelled.
    if (!finished_) {
      Finished(grpc::Status(grpc::StatusCode::CANCELLED,
                            "the call ended before the server answered"),
               note);
    }
    if (metrics_ != nullptr && stream_.has_value()) {
      metrics_->StreamClosed(*stream_);
    }
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS) &&
        !finished_) {
      finished_ = true;
      Finished(methods->GetSendStatus(), CallNotes::Get().Peek(context_));
    }
    methods->Proceed();
  }

 private:
  void Finished(const grpc::Status& status, const CallNote& note) {
    finished_ = true;
    const absl::Duration latency = absl::Now() - start_;
    const auto code = static_cast<absl::StatusCode>(status.error_code());
    if (metrics_ != nullptr) metrics_->RpcFinished(method_, code, latency);
    if (status.ok()) {
      CKPT_EVENT(Debug, "rpc", {"method", method_}, {"code", "OK"},
                 {"principal", OrDash(note.principal)},
                 {"millis", absl::ToInt64Milliseconds(latency)});
      return;
    }
    const bool server_fault = code == absl::StatusCode::kInternal ||
                              code == absl::StatusCode::kDataLoss ||
                              code == absl::StatusCode::kUnknown;
    const LogLevel level = server_fault ? LogLevel::kError : LogLevel::kWarning;
    if (!LogEnabled(level)) return;
    if (!server_fault) {
      const std::optional<uint64_t> held_back =
          WarningBudget::Get().Take(absl::Now());
      if (!held_back.has_value()) return;
      if (*held_back != 0) {
        LogEvent(LogLevel::kWarning, "rpc_failed_held_back",
                 {{"count", *held_back}, {"per_second", kWarningsPerSecond}});
      }
    }
    LogEvent(level, "rpc_failed",
             {{"code", absl::StatusCodeToString(code)},
              {"method", method_},
              {"tenant", note.job.empty() ? "-" : TenantOf(note.job)},
              {"job", OrDash(note.job)},
              {"principal", OrDash(note.principal)},
              {"peer", context_->peer()},
              {"millis", absl::ToInt64Milliseconds(latency)},
              {"msg", TruncateUtf8(status.error_message(), kMaxMessageBytes)}});
  }

  grpc::ServerContextBase* const context_;
  const std::string method_;
  Metrics* const metrics_;
  const absl::Time start_;
  const std::optional<StreamKind> stream_;
  bool finished_ = false;  // gRPC runs a call's hooks one at a time
};

class CallLogFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallLogFactory(Metrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    absl::string_view method = info->method() ? info->method() : "";
    // Health checks and reflection are not ours to count or log.
    if (!absl::ConsumePrefix(&method, kServicePrefix)) return nullptr;
    // Owned by gRPC (ServerRpcInfo keeps it in a unique_ptr).
    return new CallLogInterceptor(info->server_context(), method, metrics_);
  }

 private:
  Metrics* const metrics_;
};

}  // namespace

void NoteCaller(const grpc::ServerContextBase& context,
                absl::string_view principal) {
  CallNotes::Get().SetPrincipal(&context, principal);
}

void NoteJob(const grpc::ServerContextBase& context, absl::string_view job) {
  CallNotes::Get().SetJob(&context, job);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeCallLogFactory(Metrics* metrics) {
  return std::make_unique<CallLogFactory>(metrics);
}

}  // namespace ckpt::server
