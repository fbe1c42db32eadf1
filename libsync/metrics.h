// metrics: a small, thread-safe Prometheus metrics registry (prometheus-cpp
// is not packaged in Debian 12, docs/design.md "Dependencies").
//
// Contract:
//  * A Registry holds metric families in registration order. Each family has
//    a name, a help text, a type (counter, gauge, histogram) and a fixed
//    list of label names. Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and
//    label names [a-zA-Z_][a-zA-Z0-9_]* (programmer errors; not checked at
//    run time beyond a debug assert).
//  * Family<T>::WithLabels(values) returns the series for those label
//    values (one value per label name, in order), creating it at zero on
//    first use. The reference stays valid as long as the registry; callers
//    on hot paths keep it instead of looking it up each time.
//  * A callback family computes its samples when scraped (e.g. from the
//    database); its function runs on the scraping thread, without any
//    registry lock held, and may fail (its family is then rendered with no
//    samples, so a scrape never fails as a whole).
//  * Render() produces the text exposition format 0.0.4: for every family
//    `# HELP name help` (help escaped: `\` -> `\\`, newline -> `\n`),
//    `# TYPE name type`, then one line per sample `name{l="v",...} value`
//    (label values escaped: `\` -> `\\`, `"` -> `\"`, newline -> `\n`),
//    series ordered by label values. Histograms render cumulative
//    `name_bucket{...,le="b"}` lines for each bound and `le="+Inf"`, then
//    `name_sum` and `name_count`. Numbers use the shortest form that
//    round-trips (`3`, `0.25`, `1e+21`, `+Inf`, `-Inf`, `NaN`).
//
// Thread-safety: everything is thread-safe; counter/gauge updates are
// lock-free, histogram observations take a per-series mutex.
#ifndef EVENTSTREAM_LIBSYNC_METRICS_H_
#define EVENTSTREAM_LIBSYNC_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace eventstream::metrics {

class Counter {
 public:
  // `v` must be >= 0 (a counter only goes up).
  void Inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Inc(double v = 1);
  void Dec(double v = 1) { Inc(-v); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: ascending upper bounds, without +Inf.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), + overflow
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Default latency buckets in seconds (5 ms .. 60 s).
std::vector<double> LatencyBuckets();

enum class Type { kCounter, kGauge, kHistogram };

// One sample of a callback family.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0;
};

namespace internal {
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type,
             std::vector<std::string> label_names)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        label_names_(std::move(label_names)) {}
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  // Appends this family's exposition text to `out`.
  virtual void Render(std::string* out) const = 0;

 protected:
  void RenderHeader(std::string* out) const;
  // `name{labels} value\n`; `extra` is an extra label pair (le) or empty.
  void RenderSample(std::string* out, const std::string& suffix,
                    const std::vector<std::string>& values, double value,
                    const std::pair<std::string, std::string>* extra = nullptr) const;

  const std::string name_;
  const std::string help_;
  const Type type_;
  const std::vector<std::string> label_names_;
};
}  // namespace internal

template <typename T>
class Family : public internal::FamilyBase {
 public:
  using Factory = std::function<std::unique_ptr<T>()>;
  Family(std::string name, std::string help, Type type,
         std::vector<std::string> label_names, Factory factory)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        factory_(std::move(factory)) {}

  // The series for `values` (as many as label names). Missing values are
  // taken as "", extra ones are ignored.
  T& WithLabels(std::vector<std::string> values) {
    values.resize(label_names_.size());
    std::lock_guard<std::mutex> lock(mu_);
    auto it = series_.find(values);
    if (it == series_.end()) it = series_.emplace(std::move(values), factory_()).first;
    return *it->second;
  }

  void Render(std::string* out) const override;

 private:
  Factory factory_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

template <>
void Family<Counter>::Render(std::string* out) const;
template <>
void Family<Gauge>::Render(std::string* out) const;
template <>
void Family<Histogram>::Render(std::string* out) const;

class CallbackFamily : public internal::FamilyBase {
 public:
  using Collect = std::function<absl::StatusOr<std::vector<Sample>>()>;
  CallbackFamily(std::string name, std::string help, Type type,
                 std::vector<std::string> label_names, Collect collect)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        collect_(std::move(collect)) {}
  void Render(std::string* out) const override;

 private:
  Collect collect_;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each returns the family registered under `name` (a second call with the
  // same name returns the first family; the kinds must match).
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);
  // `type` is kCounter or kGauge: samples computed at scrape time.
  void AddCallback(const std::string& name, const std::string& help, Type type,
                   std::vector<std::string> label_names, CallbackFamily::Collect collect);

  // The exposition text (format 0.0.4) of every family.
  std::string Render() const;

 private:
  internal::FamilyBase* Find(const std::string& name) const;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<internal::FamilyBase>> families_;
};

// The shortest round-trip text of `v` as the exposition format writes it.
std::string FormatValue(double v);
// Label value escaping (`\`, `"`, newline).
std::string EscapeLabelValue(const std::string& v);

// Content-Type of Render()'s output.
inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace eventstream::metrics

#endif  // EVENTSTREAM_LIBSYNC_METRICS_H_
