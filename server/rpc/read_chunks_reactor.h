// ReadChunksReactor: the server side of the ReadChunks server stream. Each
// chunk is read and verified by the service on the request executor, never
// on a gRPC callback thread.
//
// Internal to server/rpc (GrpcCheckpointService::ReadChunks creates it).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/chunk_id.h"
#include "server/observability/metrics.h"
#include "server/rpc/call_counter.h"
#include "server/rpc/executor.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server {

// Pipeline over two response buffers: while chunk i is being written, chunk
// i+1 is read and verified into the other buffer. One task at a time holds
// the "preparing" role (Pump, on the executor); a prepared chunk that finds
// a write in flight waits in `ready_` for OnWriteDone to start it and
// submit the next Pump. A Pump prepares one chunk, then submits the next
// Pump behind whatever else is queued, so one stream never holds a thread
// for longer than one chunk's read and verify. mu_ is
// never held across a service call, a gRPC operation or Submit.
//
// Lifetime (callback API): owned by gRPC from creation until OnDone, which
// deletes it. Finish is called exactly once, when nothing is being prepared
// or written (MaybeFinishLocked); nothing touches `this` after it.
class ReadChunksReactor final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // `calls` has counted this call in; it is counted out in OnDone. A non-OK
  // `ids` (a refused request) finishes the call with that status. All
  // pointers outlive the call.
  ReadChunksReactor(grpc::CallbackServerContext* context,
                    CheckpointService* service, Executor* executor,
                    CallCounter* calls, Metrics* metrics, std::string job,
                    absl::StatusOr<std::vector<ChunkId>> ids);

  // Called once by the handler right after construction.
  void Start();

  void OnWriteDone(bool ok) override;
  // Pump polls IsCancelled(); a cancelled write fails, which OnWriteDone
  // handles.
  void OnCancel() override {}
  void OnDone() override;

 private:
  // Runs with the preparing role: prepares chunks until one waits for the
  // write slot, all are prepared, or an error occurs.
  void Pump();
  // Hands the preparing role (held by the caller) to a Pump on the executor.
  void SubmitPump();
  // Finishes when nothing is in flight and either an error occurred or every
  // chunk has been written. Sets finished_; the caller calls Finish.
  std::optional<grpc::Status> MaybeFinishLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads and verifies chunk `id` into `answer` (EncodeChunkAnswer).
  absl::Status Prepare(const ChunkId& id, grpc::ByteBuffer* answer);

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  Executor* const executor_;
  CallCounter* const calls_;
  Metrics* const metrics_;  // counts each chunk sent
  const std::string job_;
  std::vector<ChunkId> ids_;  // fixed after construction

  // buffers_[i % 2] holds chunk i; the protocol above keeps the preparer
  // and gRPC off the same buffer.
  grpc::ByteBuffer buffers_[2];

  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;  // next chunk to prepare
  int ready_ ABSL_GUARDED_BY(mu_) = -1;   // prepared buffer awaiting a write
  bool preparing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
