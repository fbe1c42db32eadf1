// metrics: the services' Prometheus metrics, on prometheus-cpp (Debian's
// prometheus-cpp-dev; docs/design.md "Dependencies"). This file only adds
// what prometheus-cpp lacks: families addressed by label *values* in a
// fixed label order, and families computed at scrape time.
//
// Contract:
//  * A Registry owns a prometheus::Registry (counters, gauges, histograms)
//    and a collectable of scrape-time families; collectables() lists both
//    for prometheus::Exposer (services/common/metrics_server.h).
//  * Family<T>::WithLabels(values) returns the prometheus-cpp series for
//    those label values (one per label name, in order; missing ones are "",
//    extra ones ignored), creating it at zero on first use. The reference
//    stays valid as long as the registry. The lookup takes the family's
//    mutex (as prometheus::Family::Add does); updates on the series are
//    lock-free atomics for Counter and Gauge, a per-series mutex for
//    Histogram (prometheus-cpp 1.0). Callers on hot paths may keep the
//    reference.
//  * Adding a family under a name already added returns a handle on the
//    same prometheus-cpp family (prometheus::Registry's Merge behaviour), so
//    WithLabels yields the same series.
//  * A callback family computes its samples when scraped (e.g. from the
//    database) on the scraping thread, without any registry lock held; it
//    may fail, and is then exposed with no samples, so a scrape never fails
//    as a whole. Its samples are ordered by label values.
//  * Render() is what a scrape returns: prometheus-cpp's text exposition
//    format 0.0.4 of every family (the registry's families by type, then the
//    callback families in the order added). Series of a registry family
//    come in prometheus-cpp's (hash) order, callback samples sorted by label
//    values; label pairs are sorted by name; histograms write _count, _sum,
//    then the cumulative buckets. HELP text is escaped here (`\` and
//    newline), which prometheus-cpp 1.0.1 does not do.
#ifndef EVENTSTREAM_LIBSYNC_BASE_METRICS_H_
#define EVENTSTREAM_LIBSYNC_BASE_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace eventstream::metrics {

using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;
using Histogram = prometheus::Histogram;

// Default latency buckets in seconds (5 ms .. 60 s).
std::vector<double> LatencyBuckets();

enum class Type { kCounter, kGauge };

// One sample of a callback family.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0;
};

template <typename T>
class Family {
 public:
  Family(prometheus::Family<T>* family, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : family_(family), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

  T& WithLabels(const std::vector<std::string>& values) {
    prometheus::Labels labels;
    for (size_t i = 0; i < label_names_.size(); ++i)
      labels[label_names_[i]] = i < values.size() ? values[i] : std::string();
    if constexpr (std::is_same_v<T, Histogram>) {
      return family_->Add(labels, bounds_);
    } else {
      return family_->Add(labels);
    }
  }

 private:
  prometheus::Family<T>* const family_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;
};

class Registry {
 public:
  using CollectFn = std::function<absl::StatusOr<std::vector<Sample>>()>;

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  // `bounds`: ascending upper bounds, without +Inf.
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);
  // Samples computed at scrape time. Add every callback before the registry
  // is scraped (not thread-safe against a concurrent scrape).
  void AddCallback(const std::string& name, const std::string& help, Type type,
                   std::vector<std::string> label_names, CollectFn collect);

  // What to hand prometheus::Exposer::RegisterCollectable.
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables() const;
  // The exposition text (format 0.0.4) of every family.
  std::string Render() const;

 private:
  class Callbacks;
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::shared_ptr<Callbacks> callbacks_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
};

}  // namespace eventstream::metrics

#endif  // EVENTSTREAM_LIBSYNC_BASE_METRICS_H_
