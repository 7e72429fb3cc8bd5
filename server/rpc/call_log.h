// CallLog: the one place every call of ckpt.v1.CheckpointService passes when
// it ends, whatever its kind (unary or streaming) and wherever it failed
// (refused by auth, by a check, while draining, or by the service). It is a
// gRPC server interceptor: it times each call, reports it to the metrics
// (Metrics::RpcFinished, and the stream gauges), and logs every call that
// ends with a status other than OK as one line:
//   event=rpc_failed code=NOT_FOUND method=GetManifest tenant=... job=...
//   principal=... peer=... millis=... msg="..."
// The handlers tell it what only they know (the principal once
// authenticated, the job named) through NoteCaller / NoteJob.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "absl/strings/string_view.h"
#include "server/observability/metrics.h"

namespace ckpt::server {

// Records who the call's principal is (after authentication) for its log
// line. No-op for a call that the CallLog does not watch.
void NoteCaller(const grpc::ServerContextBase& context,
                absl::string_view principal);
// Records the job the call names (as given by the client, checked or not).
void NoteJob(const grpc::ServerContextBase& context, absl::string_view job);

// The interceptor factory to register with the ServerBuilder. `metrics`
// must outlive every call (the server); null counts nothing.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeCallLogFactory(Metrics* metrics);

}  // namespace ckpt::server
