// Per-call limits of the gRPC edge. Kept free of gRPC types so server.h can
// expose them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace ckpt::server {

// Unary calls waiting for a request thread past which new ones are refused
// at once with RESOURCE_EXHAUSTED (each waiting call holds its gRPC call,
// a few KB). Far above what ranks saving at once queue; reached only by a
// flood, such as streams reset as soon as they are opened.
inline constexpr size_t kMaxQueuedCalls = 4096;

struct StreamLimits {
  // Chunk bytes one PutChunks stream may carry before it is refused with
  // RESOURCE_EXHAUSTED naming this limit. Bounds what one misbehaving client
  // can push through a single call. Flag --max-upload-stream-bytes.
  // Default: 64 GiB.
  uint64_t max_upload_stream_bytes = uint64_t{64} << 30;
  // The bytes of upload messages the server holds at once over all PutChunks
  // streams (server/rpc/upload_memory_budget.h): a stream reserves its
  // largest message so far (4 MiB at least) before reading the next
  // one, and waits without reading while the budget is spent, so its client
  // is held back by flow control. A message larger than its reservation is
  // still read (it is in the transport already), so hostile clients can pass
  // the budget by at most one message per stream reading at that moment.
  // Positive. Flag --upload-buffer-bytes. Default: 256 MiB.
  uint64_t upload_buffer_bytes = uint64_t{256} << 20;
  // A PutChunks stream on which the client sends nothing for this long
  // (while the server waits for its next message, not while it works on
  // one) is ended with DEADLINE_EXCEEDED and its buffers are freed, so that
  // stalled clients cannot pin memory and threads forever. Flag
  // --upload-idle-timeout-seconds. Default: 120 s.
  absl::Duration upload_idle_timeout = absl::Seconds(120);
  // Hashes one ReadChunks or FindMissingChunks request may name; larger
  // requests are INVALID_ARGUMENT. Default: 100000 (3.2 MB of hashes).
  size_t max_request_hashes = 100000;
  // Whether clients on this host may restore through shared memory: the
  // server opens its shared-memory socket (server/rpc/shared_file_socket.h)
  // and ReadChunksIntoFile writes into the memfds clients pass there. Off:
  // no socket, GetSharedFileEndpoint and ReadChunksIntoFile answer
  // FAILED_PRECONDITION, and clients stream instead. Default: true.
  bool shared_file_reads = true;
  // How often a VerifyCheckpoints stream gets a heartbeat message while the
  // verify waits for a maintenance thread (behind a collection) or works
  // without progress to report: clients end a stream silent for their
  // stall bound (2 minutes by default), so this must stay well under it.
  // Positive; absl::InfiniteDuration() sends none. Default: 10 s.
  absl::Duration verify_heartbeat_interval = absl::Seconds(10);
  // The bound on tasks waiting for a thread of an executor (request or
  // maintenance): a new unary call that finds this many waiting in its
  // executor's queue is refused at once with RESOURCE_EXHAUSTED ("the
  // server is overloaded"), without being queued. Streams are never refused
  // by it, but their queued steps count. At least 1. No flag: tests lower it
  // to fill the queue with a few calls. Default: kMaxQueuedCalls.
  size_t max_queued_calls = kMaxQueuedCalls;
};

}  // namespace ckpt::server
