#include "server/observability/prometheus_metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/metrics_scrape.h"

namespace ckpt::server {
namespace {

using ::ckpt::testing::Sample;
using ::ckpt::testing::Scrape;

PrometheusOptions ListeningOn(const std::string& address) {
  PrometheusOptions options;
  options.listen_address = address;
  return options;
}

std::unique_ptr<PrometheusMetrics> StartOnAnyPort() {
  auto metrics = PrometheusMetrics::Start(ListeningOn("127.0.0.1:0"));
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? *std::move(metrics) : nullptr;
}

TEST(PrometheusMetricsTest, FoldsTenantsPastTheLimitIntoOther) {
  auto metrics = StartOnAnyPort();
  ASSERT_NE(metrics, nullptr);
  ASSERT_GT(metrics->port(), 0);
  for (size_t i = 0; i < kMaxTenantLabels + 5; ++i) {
    metrics->ChunkReceived(absl::StrCat("t", i), 10, true);
  }
  // Names that are no tenant never become labels.
  metrics->ChunkReceived("bad tenant\"}", 7, true);
  metrics->ChunkReceived("", 7, true);
  const std::string text = Scrape(metrics->port());
  size_t series = 0;
  for (size_t at = text.find("ckpt_received_bytes_total{");
       at != std::string::npos;
       at = text.find("ckpt_received_bytes_total{", at + 1)) {
    ++series;
  }
  EXPECT_EQ(series, kMaxTenantLabels + 1);
  EXPECT_EQ(Sample(text, "ckpt_received_bytes_total", {"tenant=\"t0\""}), 10);
  EXPECT_EQ(Sample(text, "ckpt_received_bytes_total", {"tenant=\"(other)\""}),
            5 * 10 + 7 + 7);
  EXPECT_EQ(text.find("bad tenant"), std::string::npos);
  // A tenant seen before the limit keeps its label.
  metrics->ChunkReceived("t1", 5, false);
  EXPECT_EQ(Sample(Scrape(metrics->port()), "ckpt_deduplicated_bytes_total",
                   {"tenant=\"t1\""}),
            5);
}

TEST(PrometheusMetricsTest, CountsChunkBytesSentByTenant) {
  auto metrics = StartOnAnyPort();
  ASSERT_NE(metrics, nullptr);
  EXPECT_EQ(Sample(Scrape(metrics->port()), "ckpt_sent_bytes_total"), -1);
  metrics->ChunkSent("alice", 100);
  metrics->ChunkSent("alice", 28);
  metrics->ChunkSent("bob", 7);
  const std::string text = Scrape(metrics->port());
  EXPECT_EQ(Sample(text, "ckpt_sent_bytes_total", {"tenant=\"alice\""}), 128);
  EXPECT_EQ(Sample(text, "ckpt_sent_bytes_total", {"tenant=\"bob\""}), 7);
}

TEST(PrometheusMetricsTest, CountsQuotaRefusalsByTenantAndLimit) {
  auto metrics = StartOnAnyPort();
  ASSERT_NE(metrics, nullptr);
  metrics->QuotaRefused("alice", "max_stored_bytes");
  metrics->QuotaRefused("alice", "max_stored_bytes");
  metrics->QuotaRefused("bob", "max_upload_streams");
  const std::string text = Scrape(metrics->port());
  EXPECT_EQ(Sample(text, "ckpt_quota_refusals_total",
                   {"tenant=\"alice\"", "limit=\"max_stored_bytes\""}),
            2);
  EXPECT_EQ(Sample(text, "ckpt_quota_refusals_total",
                   {"tenant=\"bob\"", "limit=\"max_upload_streams\""}),
            1);
}

TEST(PrometheusMetricsTest, StopServingClosesThePortAndCountingGoesOn) {
  auto metrics = StartOnAnyPort();
  ASSERT_NE(metrics, nullptr);
  const int port = metrics->port();
  EXPECT_FALSE(Scrape(port).empty());
  metrics->StopServing();
  EXPECT_TRUE(Scrape(port).empty());
  metrics->LeasesExpired(2);  // no crash once stopped
  metrics->StopServing();     // idempotent
}

TEST(PrometheusMetricsTest, AnOccupiedAddressIsUnavailableNamingIt) {
  auto first = StartOnAnyPort();
  ASSERT_NE(first, nullptr);
  const std::string address = absl::StrCat("127.0.0.1:", first->port());
  auto second = PrometheusMetrics::Start(ListeningOn(address));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(address), std::string::npos);
}

}  // namespace
}  // namespace ckpt::server
