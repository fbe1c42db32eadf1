#include "libsync/base/metrics.h"

#include <algorithm>

#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace eventstream::metrics {

namespace {

// prometheus-cpp 1.0.1 writes HELP text as given; the format wants `\` and
// newline escaped (MetricsTest.GoldenExposition fails if a later version
// escapes too).
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

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// The callback families, as one prometheus-cpp Collectable: each Collect()
// runs every callback.
class Registry::Callbacks : public prometheus::Collectable {
 public:
  struct Entry {
    std::string name, help;
    Type type;
    std::vector<std::string> label_names;
    CollectFn collect;
  };
  void Add(Entry e) { entries_.push_back(std::move(e)); }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    for (const Entry& e : entries_) out.push_back(CollectOne(e));
    return out;
  }

 private:
  static prometheus::MetricFamily CollectOne(const Entry& e) {
    prometheus::MetricFamily f;
    f.name = e.name;
    f.help = EscapeHelp(e.help);
    f.type = e.type == Type::kCounter ? prometheus::MetricType::Counter
                                      : prometheus::MetricType::Gauge;
    auto samples = e.collect();
    if (!samples.ok()) return f;  // exposed without samples
    std::sort(samples->begin(), samples->end(), [](const Sample& a, const Sample& b) {
      return a.label_values < b.label_values;
    });
    for (const Sample& s : *samples) {
      prometheus::ClientMetric m;
      for (size_t i = 0; i < e.label_names.size(); ++i)
        m.label.push_back({e.label_names[i],
                           i < s.label_values.size() ? s.label_values[i] : std::string()});
      if (e.type == Type::kCounter) {
        m.counter.value = s.value;
      } else {
        m.gauge.value = s.value;
      }
      f.metric.push_back(std::move(m));
    }
    return f;
  }

  std::vector<Entry> entries_;
};

Registry::Registry()
    : registry_(std::make_shared<prometheus::Registry>()),
      callbacks_(std::make_shared<Callbacks>()) {}

Registry::~Registry() = default;

Family<Counter>* Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  auto& f = prometheus::BuildCounter().Name(name).Help(EscapeHelp(help)).Register(*registry_);
  counters_.push_back(std::make_unique<Family<Counter>>(&f, std::move(label_names)));
  return counters_.back().get();
}

Family<Gauge>* Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  auto& f = prometheus::BuildGauge().Name(name).Help(EscapeHelp(help)).Register(*registry_);
  gauges_.push_back(std::make_unique<Family<Gauge>>(&f, std::move(label_names)));
  return gauges_.back().get();
}

Family<Histogram>* Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  auto& f = prometheus::BuildHistogram().Name(name).Help(EscapeHelp(help)).Register(*registry_);
  histograms_.push_back(
      std::make_unique<Family<Histogram>>(&f, std::move(label_names), std::move(bounds)));
  return histograms_.back().get();
}

void Registry::AddCallback(const std::string& name, const std::string& help, Type type,
                           std::vector<std::string> label_names, CollectFn collect) {
  callbacks_->Add({name, help, type, std::move(label_names), std::move(collect)});
}

std::vector<std::weak_ptr<prometheus::Collectable>> Registry::collectables() const {
  return {registry_, callbacks_};
}

std::string Registry::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : callbacks_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace eventstream::metrics
