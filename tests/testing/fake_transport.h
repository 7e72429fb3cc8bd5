// FakeTransport: an in-memory client::Transport for tests of the client
// library without a server (the save pipeline, the restore plan, the
// Client facade). Chunks and checkpoints live in maps; calls are counted so
// that tests can assert what was sent and fetched; a few failures can be
// injected (chunks lost before a commit, refused commits, wrong answers to
// reads, a server that cannot write shared memory).
//
// It keeps the server's chunk rules (an upload's bytes must match their
// hash; a commit needs every referenced chunk stored) but not its manifest
// rules: it commits a delta whatever its base, and deletes a checkpoint
// whatever depends on it, so tests can build the damaged states a restore
// must report. It records BeginOptions::pin and copied_from on the pending
// record and fills base_steps at commit. One namespace of chunks for all
// jobs. The administrative
// calls (stats, retention, pins, prune, GC, verify, events) answer
// UNIMPLEMENTED. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "client/transport.h"
#include "common/chunk_id.h"
#include "common/manifest.h"
#include "common/unique_fd.h"

namespace ckpt::testing {

class FakeTransport : public client::Transport {
 public:
  FakeTransport() = default;
  FakeTransport(const FakeTransport&) = delete;
  FakeTransport& operator=(const FakeTransport&) = delete;

  // --- Fault injection ---

  // The next CommitShard first forgets every stored chunk, as a server that
  // restarted before making its uploads durable does (and so refuses that
  // commit with FAILED_PRECONDITION if the shard references any chunk).
  void LoseChunksAtNextCommit();
  // The next `times` CommitShard calls are refused with `status`, whatever
  // is stored.
  void RefuseCommits(absl::Status status, int times = 1);
  // Reads answer chunk `id` with `data`, claiming it is `answered_id`,
  // instead of the stored bytes (ReadChunks); ReadChunksIntoFile refuses it
  // with DATA_LOSS, as a server verifying what it writes does.
  void AnswerWith(const ChunkId& id, const ChunkId& answered_id,
                  std::string data);
  // ReadChunksIntoFile returns `status` (e.g. UNIMPLEMENTED) without
  // writing anything.
  void FailReadsIntoFile(absl::Status status);
  // RegisterSharedFile returns `status` (e.g. FAILED_PRECONDITION) without
  // registering anything.
  void FailSharedFileRegistrations(absl::Status status);
  // ReportRestore returns `status` (e.g. UNIMPLEMENTED, as an older server
  // does) without recording anything.
  void FailRestoreReports(absl::Status status);
  // ReportCopy returns `status` (e.g. UNIMPLEMENTED, as an older source
  // server does) without recording anything.
  void FailCopyReports(absl::Status status);

  // --- Inspection ---

  bool HasChunk(const ChunkId& id) const;
  size_t stored_chunks() const;
  // Chunks added to upload streams, in all, and of `id`.
  uint64_t chunks_uploaded() const;
  int UploadsOf(const ChunkId& id) const;
  // Every id FindMissingChunks was asked about, in order, over all calls.
  std::vector<ChunkId> asked_missing() const;
  int begin_calls() const;
  int commit_calls() const;
  // GetManifest calls that asked for `step` (by number, not "latest").
  int ManifestFetches(int64_t step) const;
  // The restoring_rank of every GetManifest call that named one.
  std::vector<int32_t> restoring_ranks() const;
  // Every restore ReportRestore recorded, in order.
  struct ReportedRestore {
    std::string job;
    int64_t step = 0;
    int32_t rank = 0;
    friend bool operator==(const ReportedRestore&,
                           const ReportedRestore&) = default;
  };
  std::vector<ReportedRestore> reported_restores() const;
  // Every copy ReportCopy recorded, in order.
  struct ReportedCopy {
    std::string job;
    int64_t step = 0;
    CopyPeer destination;
    friend bool operator==(const ReportedCopy&, const ReportedCopy&) = default;
  };
  std::vector<ReportedCopy> reported_copies() const;
  // Times chunk `id` was read, by ReadChunks or ReadChunksIntoFile.
  int ReadsOf(const ChunkId& id) const;
  // Times each chunk was read, by ReadChunks or ReadChunksIntoFile.
  absl::flat_hash_map<ChunkId, int> read_counts() const;
  // ReadChunks calls, and the number of sinks in each.
  std::vector<size_t> read_calls() const;
  // Every sink ReadChunks was asked for (its destinations too), in order.
  std::vector<client::ChunkSink> sinks_read() const;
  // Forgets the reads counted so far (read_counts, read_calls, sinks_read,
  // into_file_calls), so that a test measures one restore at a time.
  void ClearReads();
  // ReadChunksIntoFile calls that wrote (refused ones not counted).
  int into_file_calls() const;
  // RegisterSharedFile calls that registered, and files registered now.
  int registrations() const;
  size_t registered_files() const;

  // --- client::Transport ---

  absl::StatusOr<client::BeginReply> BeginCheckpoint(
      absl::string_view job, int64_t step,
      const client::BeginOptions& options) override;
  absl::StatusOr<absl::flat_hash_set<ChunkId>> FindMissingChunks(
      absl::string_view job, absl::Span<const ChunkId> ids) override;
  std::unique_ptr<client::ChunkUploadStream> OpenUpload(absl::string_view job,
                                                        int64_t step) override;
  absl::StatusOr<client::CommitResult> CommitShard(
      absl::string_view job, int64_t step, int32_t world_size,
      const ShardManifest& shard) override;
  absl::StatusOr<Checkpoint> GetManifest(
      absl::string_view job, std::optional<int64_t> step,
      std::optional<int32_t> restoring_rank) override;
  // NOT_FOUND unless (job, step) is committed.
  absl::Status ReportRestore(absl::string_view job, int64_t step,
                             int32_t rank) override;
  // NOT_FOUND unless (job, step) is committed.
  absl::Status ReportCopy(absl::string_view job, int64_t step,
                          const CopyPeer& destination) override;
  absl::StatusOr<std::vector<JobSummary>> ListJobs() override;
  absl::StatusOr<std::vector<client::CheckpointUsage>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted,
      bool with_unique_bytes) override;
  absl::Status ReadChunks(
      absl::string_view job, absl::Span<const client::ChunkSink> sinks,
      const std::function<void(uint64_t)>& on_chunk) override;
  // Keeps a duplicate of `memfd` until the registration is destroyed.
  absl::StatusOr<std::unique_ptr<client::SharedFileRegistration>>
  RegisterSharedFile(int memfd) override;
  // Writes into the file registered under `file_handle` (FAILED_PRECONDITION
  // for any other handle).
  absl::Status ReadChunksIntoFile(
      absl::string_view job, absl::string_view file_handle,
      absl::Span<const client::ChunkPlacement> chunks) override;
  absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                               absl::string_view reason) override;
  // Deletes a committed or aborted checkpoint even when other checkpoints'
  // deltas are based on it.
  absl::Status DeleteCheckpoint(absl::string_view job, int64_t step,
                                bool force) override;
  absl::StatusOr<Stats> GetStats(absl::string_view job) override;
  absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy,
      std::vector<std::string>* warnings) override;
  absl::StatusOr<client::PolicyInfo> GetRetentionPolicy(
      absl::string_view job) override;
  absl::Status SetTenantDefaultPolicy(absl::string_view tenant,
                                      const RetentionPolicy& policy) override;
  absl::StatusOr<client::PolicyInfo> GetTenantDefaultPolicy(
      absl::string_view tenant) override;
  absl::Status ClearRetentionPolicy(absl::string_view name,
                                    bool tenant_default) override;
  absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                 int64_t step,
                                                 bool pinned) override;
  absl::StatusOr<CheckpointRecord> SetCheckpointTags(
      absl::string_view job, int64_t step,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove) override;
  absl::StatusOr<std::vector<RetentionDecision>> PruneCheckpoints(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run, std::vector<std::string>* warnings) override;
  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options) override;
  absl::StatusOr<VerifyReport> VerifyCheckpoints(
      const VerifyOptions& options,
      const client::VerifyProgressFn& progress) override;
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   int limit) override;

 private:
  class UploadStream;
  class Registration;
  struct Answer {
    ChunkId id;
    std::string data;
  };

  // Stores an uploaded chunk. INVALID_ARGUMENT when `data` is not `id`'s.
  absl::Status Store(const ChunkId& id, absl::string_view data);
  // NOT_FOUND unless (job, step) is committed.
  absl::Status CheckCommitted(absl::string_view job, int64_t step) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a read of `id` answers; NOT_FOUND when it is not stored.
  absl::StatusOr<Answer> AnswerFor(const ChunkId& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<ChunkId, std::string> chunks_ ABSL_GUARDED_BY(mu_);
  // job -> step -> checkpoint (pending and committed).
  std::map<std::string, std::map<int64_t, Checkpoint>, std::less<>> checkpoints_
      ABSL_GUARDED_BY(mu_);

  bool lose_chunks_at_next_commit_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status commit_refusal_ ABSL_GUARDED_BY(mu_);
  int commit_refusals_left_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<ChunkId, Answer> answers_ ABSL_GUARDED_BY(mu_);
  absl::Status into_file_failure_ ABSL_GUARDED_BY(mu_);
  absl::Status registration_failure_ ABSL_GUARDED_BY(mu_);
  absl::Status report_failure_ ABSL_GUARDED_BY(mu_);
  absl::Status copy_report_failure_ ABSL_GUARDED_BY(mu_);
  std::vector<ReportedRestore> reported_restores_ ABSL_GUARDED_BY(mu_);
  std::vector<ReportedCopy> reported_copies_ ABSL_GUARDED_BY(mu_);
  // handle -> the registered file's duplicate descriptor.
  absl::flat_hash_map<std::string, UniqueFd> registered_ ABSL_GUARDED_BY(mu_);
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;

  absl::flat_hash_map<ChunkId, int> uploads_ ABSL_GUARDED_BY(mu_);
  uint64_t chunks_uploaded_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<ChunkId> asked_missing_ ABSL_GUARDED_BY(mu_);
  int begin_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int commit_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, int> manifest_fetches_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> restoring_ranks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ChunkId, int> reads_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> read_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<client::ChunkSink> sinks_read_ ABSL_GUARDED_BY(mu_);
  int into_file_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ckpt::testing
