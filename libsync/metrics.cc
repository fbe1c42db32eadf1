#include "libsync/metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace eventstream::metrics {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

const char* TypeName(Type type) {
  switch (type) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";  // also -0
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

void Counter::Inc(double v) {
  assert(v >= 0);
  if (v > 0) AtomicAdd(value_, v);
}

void Gauge::Inc(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
}

void Histogram::Observe(double v) {
  // Buckets are "less than or equal": the first bound >= v.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

namespace internal {

void FamilyBase::RenderHeader(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", EscapeHelp(help_), "\n# TYPE ", name_, " ",
                  TypeName(type_), "\n");
}

void FamilyBase::RenderSample(std::string* out, const std::string& suffix,
                              const std::vector<std::string>& values, double value,
                              const std::pair<std::string, std::string>* extra) const {
  absl::StrAppend(out, name_, suffix);
  const size_t n = std::min(values.size(), label_names_.size());
  if (n > 0 || extra != nullptr) {
    out->push_back('{');
    for (size_t i = 0; i < n; ++i) {
      absl::StrAppend(out, i == 0 ? "" : ",", label_names_[i], "=\"",
                      EscapeLabelValue(values[i]), "\"");
    }
    if (extra != nullptr) {
      absl::StrAppend(out, n == 0 ? "" : ",", extra->first, "=\"",
                      EscapeLabelValue(extra->second), "\"");
    }
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatValue(value), "\n");
}

}  // namespace internal

template <>
void Family<Counter>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, c] : series_) RenderSample(out, "", values, c->value());
}

template <>
void Family<Gauge>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, g] : series_) RenderSample(out, "", values, g->value());
}

template <>
void Family<Histogram>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, h] : series_) {
    Histogram::Snapshot s = h->snapshot();
    for (size_t i = 0; i < s.bounds.size(); ++i) {
      std::pair<std::string, std::string> le("le", FormatValue(s.bounds[i]));
      RenderSample(out, "_bucket", values, static_cast<double>(s.cumulative[i]), &le);
    }
    std::pair<std::string, std::string> inf("le", "+Inf");
    RenderSample(out, "_bucket", values, static_cast<double>(s.count), &inf);
    RenderSample(out, "_sum", values, s.sum);
    RenderSample(out, "_count", values, static_cast<double>(s.count));
  }
}

void CallbackFamily::Render(std::string* out) const {
  RenderHeader(out);
  auto samples = collect_();
  if (!samples.ok()) return;
  std::sort(samples->begin(), samples->end(), [](const Sample& a, const Sample& b) {
    return a.label_values < b.label_values;
  });
  for (const Sample& s : *samples) RenderSample(out, "", s.label_values, s.value);
}

internal::FamilyBase* Registry::Find(const std::string& name) const {
  for (const auto& f : families_)
    if (f->name() == name) return f.get();
  return nullptr;
}

Family<Counter>* Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto* f = Find(name)) return static_cast<Family<Counter>*>(f);
  auto f = std::make_shared<Family<Counter>>(name, help, Type::kCounter,
                                             std::move(label_names),
                                             [] { return std::make_unique<Counter>(); });
  families_.push_back(f);
  return f.get();
}

Family<Gauge>* Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto* f = Find(name)) return static_cast<Family<Gauge>*>(f);
  auto f = std::make_shared<Family<Gauge>>(name, help, Type::kGauge, std::move(label_names),
                                           [] { return std::make_unique<Gauge>(); });
  families_.push_back(f);
  return f.get();
}

Family<Histogram>* Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto* f = Find(name)) return static_cast<Family<Histogram>*>(f);
  auto f = std::make_shared<Family<Histogram>>(
      name, help, Type::kHistogram, std::move(label_names),
      [bounds] { return std::make_unique<Histogram>(bounds); });
  families_.push_back(f);
  return f.get();
}

void Registry::AddCallback(const std::string& name, const std::string& help, Type type,
                           std::vector<std::string> label_names,
                           CallbackFamily::Collect collect) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Find(name) != nullptr) return;
  families_.push_back(std::make_shared<CallbackFamily>(name, help, type,
                                                       std::move(label_names),
                                                       std::move(collect)));
}

std::string Registry::Render() const {
  std::vector<std::shared_ptr<internal::FamilyBase>> families;
  {
    std::lock_guard<std::mutex> lock(mu_);
    families = families_;
  }
  std::string out;
  for (const auto& f : families) f->Render(&out);
  return out;
}

}  // namespace eventstream::metrics
