// libsync/metrics.h: the Prometheus text exposition format 0.0.4, byte for
// byte (HELP/TYPE lines, escaping, series order, histogram buckets), and
// thread-safe updates.
#include "libsync/metrics.h"

#include <limits>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace eventstream::metrics {
namespace {

TEST(MetricsTest, GoldenExposition) {
  Registry r;
  auto* captured = r.AddCounter("es_captured_total", "Entries captured.",
                                {"doctype", "update_type"});
  captured->WithLabels({"Note", "Create"}).Inc(3);
  captured->WithLabels({"Customer", "Update"}).Inc();
  captured->WithLabels({"Note", "Create"}).Inc(2);

  auto* up = r.AddGauge("es_up", "1 when up.\nSecond line with a \\ backslash.");
  up->WithLabels({}).Set(1);

  auto* escaped = r.AddGauge("es_escaped", "Label escaping.", {"v"});
  escaped->WithLabels({"a \"quoted\"\nline \\ end"}).Set(-2.5);

  auto* latency = r.AddHistogram("es_latency_seconds", "Latency.", {"consumer"},
                                 {0.125, 0.5, 1});
  Histogram& h = latency->WithLabels({"branch"});
  h.Observe(0.0625);
  h.Observe(0.125);  // le is inclusive
  h.Observe(0.75);
  h.Observe(3);

  r.AddCallback("es_lag_entries", "Computed at scrape.", Type::kGauge, {"consumer"},
                []() -> absl::StatusOr<std::vector<Sample>> {
                  return std::vector<Sample>{{{"zeta"}, 7}, {{"alpha"}, 0}};
                });
  r.AddCallback("es_broken", "A failing callback renders no samples.", Type::kCounter, {},
                []() -> absl::StatusOr<std::vector<Sample>> {
                  return absl::UnavailableError("database down");
                });

  EXPECT_EQ(r.Render(),
            "# HELP es_captured_total Entries captured.\n"
            "# TYPE es_captured_total counter\n"
            "es_captured_total{doctype=\"Customer\",update_type=\"Update\"} 1\n"
            "es_captured_total{doctype=\"Note\",update_type=\"Create\"} 5\n"
            "# HELP es_up 1 when up.\\nSecond line with a \\\\ backslash.\n"
            "# TYPE es_up gauge\n"
            "es_up 1\n"
            "# HELP es_escaped Label escaping.\n"
            "# TYPE es_escaped gauge\n"
            "es_escaped{v=\"a \\\"quoted\\\"\\nline \\\\ end\"} -2.5\n"
            "# HELP es_latency_seconds Latency.\n"
            "# TYPE es_latency_seconds histogram\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"0.125\"} 2\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"0.5\"} 2\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"1\"} 3\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"+Inf\"} 4\n"
            "es_latency_seconds_sum{consumer=\"branch\"} 3.9375\n"
            "es_latency_seconds_count{consumer=\"branch\"} 4\n"
            "# HELP es_lag_entries Computed at scrape.\n"
            "# TYPE es_lag_entries gauge\n"
            "es_lag_entries{consumer=\"alpha\"} 0\n"
            "es_lag_entries{consumer=\"zeta\"} 7\n"
            "# HELP es_broken A failing callback renders no samples.\n"
            "# TYPE es_broken counter\n");
}

TEST(MetricsTest, HistogramWithoutLabels) {
  Registry r;
  r.AddHistogram("h", "H.", {}, {1})->WithLabels({}).Observe(2);
  EXPECT_EQ(r.Render(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n");
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(123456789012), "123456789012");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, SameNameReturnsSameFamily) {
  Registry r;
  auto* a = r.AddCounter("c_total", "C.", {"x"});
  auto* b = r.AddCounter("c_total", "C.", {"x"});
  EXPECT_EQ(a, b);
  Counter& c = a->WithLabels({"1"});
  EXPECT_EQ(&c, &b->WithLabels({"1"}));
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto* counters = r.AddCounter("n_total", "N.", {"t"});
  auto* hist = r.AddHistogram("d", "D.", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        counters->WithLabels({"shared"}).Inc();
        counters->WithLabels({std::to_string(t)}).Inc();
        hist->WithLabels({}).Observe(0.5);
        if (i % 1000 == 0) (void)r.Render();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(counters->WithLabels({"shared"}).value(), 40000);
  EXPECT_EQ(hist->WithLabels({}).snapshot().count, 40000u);
}

}  // namespace
}  // namespace eventstream::metrics
