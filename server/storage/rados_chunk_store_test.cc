// RadosChunkStore against a real single-host Ceph cluster (ckpt_ceph_test):
// what the conformance suite cannot show. The used mark and the guarded
// delete (also raced), corruption and foreign objects planted with the raw
// librados API, a cephx user limited to the pool, two servers on one pool,
// and the throughput figures of the report (printed, not asserted).
#include "server/storage/rados_chunk_store.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/chunking.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/keys.h"
#include "server/storage/rados_io.h"
#include "tests/testing/ceph_env.h"
#include "tests/testing/store_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::IdOf;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

std::unique_ptr<RadosCluster> Connect(const RadosOptions& options) {
  auto cluster = RadosCluster::Connect(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? std::move(cluster).value() : nullptr;
}

class RadosChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = Connect(testing::CephOptionsFromEnv());
    ASSERT_NE(cluster_, nullptr);
    // Each test its own namespaces, so listings see only its objects.
    options_.namespace_prefix = absl::StrCat(
        "test-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        "/chunks/");
    store_ =
        std::make_unique<RadosChunkStore>(cluster_.get(), &clock_, options_);
  }

  // The raw context of `tenant`'s chunk namespace, for planting and peeking.
  librados::IoCtx Raw(absl::string_view tenant) {
    return IoCtxIn(*cluster_, absl::StrCat(options_.namespace_prefix, tenant));
  }
  std::string Xattr(absl::string_view tenant, const ChunkId& id,
                    const char* name) {
    librados::bufferlist value;
    const int rc = Raw(tenant).getxattr(id.ToHex(), name, value);
    EXPECT_GE(rc, 0) << name;
    return value.to_str();
  }
  static std::string UsedMark(absl::Time t) {
    return absl::StrFormat("%020d", absl::ToUnixMicros(t));
  }
  bool Exists(absl::string_view tenant, const ChunkId& id) {
    uint64_t size = 0;
    time_t mtime = 0;
    const int rc = Raw(tenant).stat(id.ToHex(), &size, &mtime);
    EXPECT_TRUE(rc == 0 || rc == -ENOENT) << rc;
    return rc == 0;
  }
  absl::Status ReadVerified(absl::string_view tenant, const ChunkId& id) {
    return store_->ReadVerified(
        tenant, id, [](absl::string_view) { return absl::OkStatus(); });
  }

  // Another server's store: its own connection and clock, same namespaces.
  RadosChunkStore* SecondServer(Clock* clock) {
    second_cluster_ = Connect(testing::CephOptionsFromEnv());
    if (second_cluster_ == nullptr) return nullptr;
    second_ = std::make_unique<RadosChunkStore>(second_cluster_.get(), clock,
                                                options_);
    return second_.get();
  }

  // `n` small distinct chunks and their ids.
  struct Chunks {
    std::vector<std::string> payloads;
    std::vector<ChunkId> ids;
  };
  static Chunks MakeChunks(absl::string_view label, int n) {
    Chunks chunks;
    for (int i = 0; i < n; ++i) {
      chunks.payloads.push_back(absl::StrCat(label, " ", i));
      chunks.ids.push_back(IdOf(chunks.payloads.back()));
    }
    return chunks;
  }

  FakeClock clock_{kT0};
  RadosChunkStoreOptions options_;
  std::unique_ptr<RadosCluster> cluster_;
  std::unique_ptr<RadosChunkStore> store_;
  std::unique_ptr<RadosCluster> second_cluster_;
  std::unique_ptr<RadosChunkStore> second_;
};

TEST_F(RadosChunkStoreTest, LaysOutOneObjectPerChunkWithSumAndUsedMark) {
  const std::string bytes = "chunk bytes";
  ASSERT_TRUE(*store_->Put("acme", IdOf(bytes), bytes));
  librados::bufferlist stored;
  ASSERT_EQ(Raw("acme").read(IdOf(bytes).ToHex(), stored, 0, 0),
            static_cast<int>(bytes.size()));
  EXPECT_EQ(stored.to_str(), bytes);
  EXPECT_EQ(Xattr("acme", IdOf(bytes), "ckpt.sum"),
            EncodeChunkChecksum(ComputeChunkChecksum(bytes)));
  EXPECT_EQ(Xattr("acme", IdOf(bytes), "ckpt.used"), UsedMark(kT0));
  EXPECT_TRUE(store_->IsShared());
  EXPECT_TRUE(store_->Sync().ok());
}

TEST_F(RadosChunkStoreTest, GuardedDeleteSparesChunksUsedAtOrAfterCutoff) {
  const ChunkId id = IdOf("guarded");
  ASSERT_TRUE(*store_->Put("acme", id, "guarded"));  // used at kT0
  for (absl::Time cutoff : {kT0 - absl::Seconds(1), kT0}) {
    auto deleted = store_->DeleteIfUnusedSince("acme", id, cutoff);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    EXPECT_FALSE(*deleted);
  }
  // A second Put of a present chunk is a use.
  clock_.Advance(absl::Seconds(10));
  EXPECT_FALSE(*store_->Put("acme", id, "guarded"));
  EXPECT_EQ(Xattr("acme", id, "ckpt.used"), UsedMark(kT0 + absl::Seconds(10)));
  EXPECT_FALSE(
      *store_->DeleteIfUnusedSince("acme", id, kT0 + absl::Seconds(5)));
  // So is MarkUsed.
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(*store_->MarkUsed("acme", {id}), ::testing::ElementsAre(true));
  EXPECT_EQ(Xattr("acme", id, "ckpt.used"), UsedMark(kT0 + absl::Seconds(20)));
  EXPECT_FALSE(
      *store_->DeleteIfUnusedSince("acme", id, kT0 + absl::Seconds(20)));
  EXPECT_TRUE(*store_->DeleteIfUnusedSince(
      "acme", id, kT0 + absl::Seconds(20) + absl::Microseconds(1)));
  EXPECT_FALSE(Exists("acme", id));
  // Gone: neither deleted again nor brought back by a mark.
  EXPECT_FALSE(
      *store_->DeleteIfUnusedSince("acme", id, absl::InfiniteFuture()));
  EXPECT_THAT(*store_->MarkUsed("acme", {id}), ::testing::ElementsAre(false));
  EXPECT_FALSE(Exists("acme", id));
}

TEST_F(RadosChunkStoreTest, MissingOrGarbledUsedMarkCountsAsNeverUsed) {
  for (const char* mark : {"", "not a number"}) {
    SCOPED_TRACE(mark);
    const std::string bytes = absl::StrCat("marked ", mark);
    ASSERT_TRUE(*store_->Put("acme", IdOf(bytes), bytes));
    librados::IoCtx raw = Raw("acme");
    if (*mark == '\0') {
      ASSERT_EQ(raw.rmxattr(IdOf(bytes).ToHex(), "ckpt.used"), 0);
    } else {
      librados::bufferlist value;
      value.append(mark);
      ASSERT_EQ(raw.setxattr(IdOf(bytes).ToHex(), "ckpt.used", value), 0);
    }
    EXPECT_TRUE(*store_->DeleteIfUnusedSince(
        "acme", IdOf(bytes), absl::UnixEpoch() + absl::Microseconds(1)));
  }
}

TEST_F(RadosChunkStoreTest, MarkUsedRacingGuardedDeleteNeverLosesAMarkedChunk) {
  // Two servers: one put the chunks long ago (its clock says kT0), the other
  // marks them now while garbage collection deletes what was unused since
  // `cutoff`. Per chunk exactly one must win: marked (and kept) or deleted
  // (and reported absent to the marker).
  FakeClock now(kT0 + absl::Hours(1));
  RadosChunkStore* marker = SecondServer(&now);
  ASSERT_NE(marker, nullptr);
  const absl::Time cutoff = now.Now();
  constexpr int kChunks = 200;
  constexpr int kRounds = 10;
  constexpr int kMarkSlice = 8;
  const auto [payloads, ids] = MakeChunks("raced chunk", kChunks);
  int kept_total = 0;
  int deleted_total = 0;
  for (int round = 0; round < kRounds; ++round) {
    // (Re)store every chunk as used at kT0: all collectable again.
    for (int i = 0; i < kChunks; ++i) {
      ASSERT_TRUE(store_->Put("acme", ids[i], payloads[i]).ok());
    }
    std::vector<int> marked(kChunks, -1);   // 1 present, 0 absent
    std::vector<int> deleted(kChunks, -1);  // 1 deleted, 0 spared
    std::atomic<bool> go{false};
    // Marks run from the last chunk down, deletes from the first up: they
    // cross somewhere in the middle, differently each round.
    std::thread marking([&] {
      while (!go.load()) {
      }
      for (int end = kChunks; end > 0; end -= kMarkSlice) {
        const int begin = std::max(0, end - kMarkSlice);
        auto present = marker->MarkUsed(
            "acme", absl::MakeConstSpan(ids).subspan(begin, end - begin));
        if (!present.ok()) {
          ADD_FAILURE() << present.status();
          return;
        }
        for (int i = begin; i < end; ++i) marked[i] = (*present)[i - begin];
      }
    });
    go = true;
    for (int i = 0; i < kChunks; ++i) {
      auto result = store_->DeleteIfUnusedSince("acme", ids[i], cutoff);
      EXPECT_TRUE(result.ok()) << result.status();  // no ASSERT: join first
      deleted[i] = result.ok() && *result;
    }
    marking.join();
    for (int i = 0; i < kChunks; ++i) {
      ASSERT_NE(marked[i], -1);
      EXPECT_NE(marked[i], deleted[i]) << "chunk " << i << " round " << round;
      EXPECT_EQ(Exists("acme", ids[i]), marked[i] == 1)
          << "chunk " << i << " round " << round;
      kept_total += marked[i];
      deleted_total += deleted[i];
    }
  }
  // Both outcomes happened, so the two really overlapped.
  EXPECT_GT(kept_total, 0);
  EXPECT_GT(deleted_total, 0);
  std::printf("race: %d chunks kept by a mark, %d deleted first, %d rounds\n",
              kept_total, deleted_total, kRounds);
}

TEST_F(RadosChunkStoreTest, PutRacingGuardedDeleteLeavesEveryPutChunkStored) {
  // A Put that returns (new or not) has recorded a use at its time, so a
  // collection with a cutoff at or before it cannot remove the chunk after
  // it: the delete either came first (and the Put stored the chunk again)
  // or is refused. Half the chunks are present (marked long ago) when the
  // race starts, so the "already present, mark it" path races too.
  FakeClock now(kT0 + absl::Hours(1));
  RadosChunkStore* saver = SecondServer(&now);
  ASSERT_NE(saver, nullptr);
  const absl::Time cutoff = now.Now();
  constexpr int kChunks = 200;
  const auto [payloads, ids] = MakeChunks("put race", kChunks);
  int deleted_total = 0;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < kChunks; ++i) {
      if (i % 2 == 0) {
        ASSERT_TRUE(store_->Put("acme", ids[i], payloads[i]).ok());
      } else {
        ASSERT_TRUE(store_->Delete("acme", ids[i]).ok());
      }
    }
    std::vector<int> put_ok(kChunks, 0);
    std::thread saving([&] {
      for (int i = kChunks - 1; i >= 0; --i) {
        auto put = saver->Put("acme", ids[i], payloads[i]);
        EXPECT_TRUE(put.ok()) << put.status();
        put_ok[i] = put.ok();
      }
    });
    for (int i = 0; i < kChunks; ++i) {
      auto deleted = store_->DeleteIfUnusedSince("acme", ids[i], cutoff);
      EXPECT_TRUE(deleted.ok()) << deleted.status();
      deleted_total += deleted.ok() && *deleted;
    }
    saving.join();
    for (int i = 0; i < kChunks; ++i) {
      if (put_ok[i] == 1) {
        EXPECT_TRUE(Exists("acme", ids[i])) << i << " round " << round;
      }
    }
  }
  EXPECT_GT(deleted_total, 0);  // the delete did run into the puts
}

TEST_F(RadosChunkStoreTest, ReadVerifiedReportsCorruptBytesNamingTheChunk) {
  const std::string bytes(64 << 10, 'b');
  const ChunkId id = IdOf(bytes);
  ASSERT_TRUE(*store_->Put("acme", id, bytes));
  ASSERT_TRUE(ReadVerified("acme", id).ok());
  librados::bufferlist flipped;
  flipped.append("X");
  ASSERT_EQ(Raw("acme").write(id.ToHex(), flipped, 1, 1000), 0);
  bool consumed = false;
  absl::Status status =
      store_->ReadVerified("acme", id, [&](absl::string_view) {
        consumed = true;
        return absl::OkStatus();
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(id.ShortHex()));
  EXPECT_THAT(status.message(), HasSubstr("acme"));
  EXPECT_FALSE(consumed);
  // Get hands over the stored bytes unverified.
  auto got = store_->Get("acme", id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[1000], 'X');
}

TEST_F(RadosChunkStoreTest, ReadVerifiedReportsWrongMalformedOrMissingSums) {
  const std::string bytes = "summed chunk";
  const ChunkId id = IdOf(bytes);
  ASSERT_TRUE(*store_->Put("acme", id, bytes));
  librados::IoCtx raw = Raw("acme");
  const std::string wrong = EncodeChunkChecksum(ComputeChunkChecksum("other"));
  for (const std::string& sum : {wrong, std::string("abc")}) {
    librados::bufferlist value;
    value.append(sum);
    ASSERT_EQ(raw.setxattr(id.ToHex(), "ckpt.sum", value), 0);
    absl::Status status = ReadVerified("acme", id);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(status.message(), HasSubstr(id.ShortHex()));
  }
  ASSERT_EQ(raw.rmxattr(id.ToHex(), "ckpt.sum"), 0);
  absl::Status status = ReadVerified("acme", id);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("ckpt.sum is missing"));
  EXPECT_THAT(status.message(), HasSubstr(id.ShortHex()));
}

TEST_F(RadosChunkStoreTest, ForEachReportsForeignObjectsInChunkNamespaces) {
  ASSERT_TRUE(*store_->Put("acme", IdOf("real"), "real"));
  // Other data in the pool (the metadata's namespace, the default one) is
  // not a chunk namespace: ignored.
  librados::bufferlist junk;
  junk.append("junk");
  ASSERT_EQ(IoCtxIn(*cluster_, "meta").write_full("job-record", junk), 0);
  junk.append("junk");
  ASSERT_EQ(IoCtxIn(*cluster_, "").write_full("stray", junk), 0);
  auto usage = store_->GetUsage("");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->chunk_count, 1u);

  const std::string upper = absl::AsciiStrToUpper(IdOf("x").ToHex());
  for (const std::string& name : {std::string("README"), upper}) {
    SCOPED_TRACE(name);
    junk.append("junk");
    ASSERT_EQ(Raw("acme").write_full(name, junk), 0);
    for (absl::string_view tenant : {"acme", ""}) {
      absl::Status status =
          store_->ForEach(tenant, [](absl::string_view, const ChunkId&,
                                     uint64_t) { return absl::OkStatus(); });
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
      EXPECT_THAT(status.message(), HasSubstr(name));
      EXPECT_EQ(store_->GetUsage(tenant).status().code(),
                absl::StatusCode::kDataLoss);
    }
    ASSERT_EQ(Raw("acme").remove(name), 0);
  }
}

TEST_F(RadosChunkStoreTest, PutRefusesChunksPastTheLimitAndStoresOneAtIt) {
  const std::string largest(kMaxChunkBytes, 'm');
  const std::string too_large(kMaxChunkBytes + 1, 'm');
  auto refused = store_->Put("acme", IdOf(too_large), too_large);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr(IdOf(too_large).ShortHex()));
  EXPECT_FALSE(Exists("acme", IdOf(too_large)));
  ASSERT_TRUE(*store_->Put("acme", IdOf(largest), largest));
  EXPECT_TRUE(ReadVerified("acme", IdOf(largest)).ok());
  ASSERT_TRUE(store_->Delete("acme", IdOf(largest)).ok());
}

TEST_F(RadosChunkStoreTest, PoolLimitedCephxUserCanUseTheStore) {
  auto temp = ckpt::testing::TempDir::Create("ckpt_rados_user");
  ASSERT_TRUE(temp.ok()) << temp.status();
  // Creates client.NAME with CAPS through the admin connection; returns the
  // options to connect as it.
  const auto make_user = [&](const std::string& name, const std::string& caps) {
    const std::string command = absl::StrCat(
        R"({"prefix":"auth get-or-create","entity":"client.)", name,
        R"(","caps":["mon","allow r","osd",")", caps, R"("]})");
    librados::bufferlist in;
    librados::bufferlist out;
    std::string status;
    const int rc =
        cluster_->handles().rados.mon_command(command, in, &out, &status);
    EXPECT_EQ(rc, 0) << status;
    RadosOptions options = testing::CephOptionsFromEnv();
    options.user = name;
    options.keyring = absl::StrCat((*temp)->path(), "/", name, ".keyring");
    std::ofstream(options.keyring) << out.to_str();
    return options;
  };
  const std::string pool = cluster_->options().pool;
  const std::string suffix = absl::StrCat(getpid());
  auto limited = Connect(make_user(absl::StrCat("chunks-", suffix),
                                   absl::StrCat("allow rwx pool=", pool)));
  ASSERT_NE(limited, nullptr);
  RadosChunkStore store(limited.get(), &clock_, options_);
  const std::string bytes = "written by a limited user";
  const ChunkId id = IdOf(bytes);
  ASSERT_TRUE(*store.Put("acme", id, bytes));
  EXPECT_TRUE(store
                  .ReadVerified("acme", id,
                                [&](absl::string_view read) {
                                  EXPECT_EQ(read, bytes);
                                  return absl::OkStatus();
                                })
                  .ok());
  EXPECT_THAT(*store.MarkUsed("acme", {id}), ::testing::ElementsAre(true));
  auto usage = store.GetUsage("");  // lists every namespace
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->chunk_count, 1u);
  EXPECT_TRUE(*store.DeleteIfUnusedSince("acme", id, absl::InfiniteFuture()));

  // A user of another pool is refused, with the chunk named.
  auto outsider = Connect(make_user(absl::StrCat("outsider-", suffix),
                                    "allow rwx pool=some-other-pool"));
  ASSERT_NE(outsider, nullptr);
  RadosChunkStore refused(outsider.get(), &clock_, options_);
  auto put = refused.Put("acme", id, bytes);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kPermissionDenied)
      << put.status();
  EXPECT_THAT(put.status().message(), HasSubstr(id.ShortHex()));
}

TEST_F(RadosChunkStoreTest, TwoServersShareChunksAndAgreeWhichPutWasNew) {
  RadosChunkStore* second = SecondServer(&clock_);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second_cluster_->ClientName(), cluster_->ClientName());
  constexpr int kChunks = 50;
  const auto [payloads, ids] = MakeChunks("shared", kChunks);
  std::vector<std::atomic<int>> news(kChunks);
  const auto put_all = [&](RadosChunkStore* store) {
    for (int i = 0; i < kChunks; ++i) {
      auto put = store->Put("acme", ids[i], payloads[i]);
      if (!put.ok()) {
        ADD_FAILURE() << put.status();
      } else if (*put) {
        ++news[i];
      }
    }
  };
  std::thread first_server(put_all, store_.get());
  std::thread second_server(put_all, second);
  first_server.join();
  second_server.join();
  for (int i = 0; i < kChunks; ++i) EXPECT_EQ(news[i].load(), 1) << i;
  // Each sees all of them, whoever stored them.
  for (RadosChunkStore* store : {store_.get(), second}) {
    auto usage = store->GetUsage("acme");
    ASSERT_TRUE(usage.ok()) << usage.status();
    EXPECT_EQ(usage->chunk_count, static_cast<uint64_t>(kChunks));
    auto got = store->Get("acme", ids[7]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, payloads[7]);
  }
  ASSERT_TRUE(second->Delete("acme", ids[7]).ok());
  EXPECT_EQ(store_->Get("acme", ids[7]).status().code(),
            absl::StatusCode::kNotFound);
}

// The figures of the report. Asserts only that every byte came back.
TEST_F(RadosChunkStoreTest, MeasuresPutGetOf4MiBChunksAndMarkUsedOf1000) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 8;
  constexpr size_t kChunkBytes = size_t{4} << 20;
  std::vector<std::string> payloads;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    std::string bytes(kChunkBytes, static_cast<char>(i));
    std::memcpy(bytes.data(), &i, sizeof(i));
    payloads.push_back(std::move(bytes));
  }
  // Hashed before the clock starts: SHA-256 runs at ~1.6 GiB/s per core.
  std::vector<ChunkId> chunk_ids;
  for (const std::string& bytes : payloads) chunk_ids.push_back(IdOf(bytes));
  const auto in_threads = [&](auto op) {
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) op(i);
      });
    }
    for (std::thread& thread : threads) thread.join();
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    return payloads.size() * kChunkBytes / seconds / (1 << 20);
  };
  const double put_mib_s = in_threads([&](int i) {
    auto put = store_->Put("acme", chunk_ids[i], payloads[i]);
    EXPECT_TRUE(put.ok() && *put) << put.status();
  });
  const double get_mib_s = in_threads([&](int i) {
    absl::Status status = store_->ReadVerified(
        "acme", chunk_ids[i], [&](absl::string_view bytes) {
          EXPECT_TRUE(bytes == payloads[i]) << i;
          return absl::OkStatus();
        });
    EXPECT_TRUE(status.ok()) << status;
  });
  // The baseline of the same run: plain write_full and read of the same
  // bytes with librados, no checksum, no xattrs.
  const double raw_put_mib_s = in_threads([&](int i) {
    librados::bufferlist bl;
    bl.append(payloads[i]);
    EXPECT_EQ(Raw("baseline").write_full(absl::StrCat(i), bl), 0);
  });
  const double raw_get_mib_s = in_threads([&](int i) {
    librados::bufferlist bl;
    EXPECT_EQ(Raw("baseline").read(absl::StrCat(i), bl, 0, 0),
              static_cast<int>(kChunkBytes));
  });
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    ASSERT_TRUE(store_->Delete("acme", chunk_ids[i]).ok());
    ASSERT_EQ(Raw("baseline").remove(absl::StrCat(i)), 0);
  }

  // MarkUsed of 1000 ids, every other one present.
  std::vector<ChunkId> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string bytes = absl::StrCat("mark ", i);
    if (i % 2 == 0) {
      ASSERT_TRUE(*store_->Put("acme", IdOf(bytes), bytes));
    }
    ids.push_back(IdOf(bytes));
  }
  const absl::Time start = absl::Now();
  auto present = store_->MarkUsed("acme", ids);
  const absl::Duration mark_time = absl::Now() - start;
  ASSERT_TRUE(present.ok()) << present.status();
  for (int i = 0; i < 1000; ++i) EXPECT_EQ((*present)[i], i % 2 == 0) << i;
  std::printf(
      "rados chunks: put %.0f MiB/s, verified get %.0f MiB/s (raw librados "
      "write_full %.0f, read %.0f MiB/s) with %d threads, %d x 4 MiB; "
      "MarkUsed of 1000 ids (500 present) %.1f ms\n",
      put_mib_s, get_mib_s, raw_put_mib_s, raw_get_mib_s, kThreads,
      kThreads * kPerThread, absl::ToDoubleMilliseconds(mark_time));
}

}  // namespace
}  // namespace ckpt::server
