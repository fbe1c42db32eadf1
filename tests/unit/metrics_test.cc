// libsync/base/metrics.h on prometheus-cpp: the text exposition format 0.0.4 a
// scrape returns (HELP/TYPE lines, escaping, series order, histogram
// buckets, callback families computed at scrape time, a failing callback
// rendering no samples), same-name families, and thread-safe updates.
#include "libsync/base/metrics.h"

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
  captured->WithLabels({"Note", "Create"}).Increment(3);
  captured->WithLabels({"Customer", "Update"}).Increment();
  captured->WithLabels({"Note", "Create"}).Increment(2);

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
            "es_latency_seconds_count{consumer=\"branch\"} 4\n"
            "es_latency_seconds_sum{consumer=\"branch\"} 3.9375\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"0.125\"} 2\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"0.5\"} 2\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"1\"} 3\n"
            "es_latency_seconds_bucket{consumer=\"branch\",le=\"+Inf\"} 4\n"
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
            "h_count 1\nh_sum 2\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\n");
}

TEST(MetricsTest, Numbers) {
  Registry r;
  auto* g = r.AddGauge("g", "G.", {"v"});
  g->WithLabels({"a"}).Set(0.1);
  g->WithLabels({"b"}).Set(1e21);
  g->WithLabels({"c"}).Set(123456789012);
  g->WithLabels({"d"}).Set(std::numeric_limits<double>::infinity());
  g->WithLabels({"e"}).Set(-std::numeric_limits<double>::infinity());
  g->WithLabels({"f"}).Set(std::numeric_limits<double>::quiet_NaN());
  // Series order within a family is prometheus-cpp's (a hash map): look
  // for each line. "Nan" is what prometheus-cpp 1.0.1 writes; Prometheus
  // parses floats case-insensitively.
  const std::string text = r.Render();
  for (const char* line : {"g{v=\"a\"} 0.1\n", "g{v=\"b\"} 1e+21\n", "g{v=\"c\"} 123456789012\n",
                           "g{v=\"d\"} +Inf\n", "g{v=\"e\"} -Inf\n", "g{v=\"f\"} Nan\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }
}

TEST(MetricsTest, SameNameReturnsSameSeries) {
  Registry r;
  auto* a = r.AddCounter("c_total", "C.", {"x"});
  auto* b = r.AddCounter("c_total", "C.", {"x"});
  EXPECT_EQ(&a->WithLabels({"1"}), &b->WithLabels({"1"}));
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto* counters = r.AddCounter("n_total", "N.", {"t"});
  auto* hist = r.AddHistogram("d", "D.", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        counters->WithLabels({"shared"}).Increment();
        counters->WithLabels({std::to_string(t)}).Increment();
        hist->WithLabels({}).Observe(0.5);
        if (i % 1000 == 0) (void)r.Render();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(counters->WithLabels({"shared"}).Value(), 40000);
  EXPECT_EQ(hist->WithLabels({}).Collect().histogram.sample_count, 40000u);
}

}  // namespace
}  // namespace eventstream::metrics
