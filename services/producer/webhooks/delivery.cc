#include "services/producer/webhooks/delivery.h"

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/time/clock.h"
#include "services/producer/webhooks/http_sender.h"
#include "spdlog/spdlog.h"

namespace eventstream {

void LowerThisThreadPriority(int nice) {
  // Linux: a thread's own nice value; raising it needs no privilege.
  if (nice <= 0) return;
  errno = 0;
  int current = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  if (errno != 0) current = 0;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()),
                  std::min(19, current + nice)) != 0) {
    spdlog::warn("webhook delivery: could not lower thread priority: {}",
                 std::strerror(errno));
  }
}

absl::Duration ThisThreadCpu() {
  struct timespec ts = {};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

WebhookDelivery::WebhookDelivery(const Config* config, std::string database_url)
    : config_(config),
      database_url_(std::move(database_url)),
      options_(config->producer ? config->producer->webhook_delivery
                                : WebhookDeliveryConfig()) {
  if (config->producer) {
    for (const WebhookConfig& w : config->producer->webhooks) {
      config_webhooks_.insert(w.name);
    }
  }
  for (int i = 0; i < options_.workers; ++i) {
    worker_sleepers_.push_back(std::make_unique<InterruptibleSleeper>());
  }
}

WebhookDelivery::~WebhookDelivery() {
  Stop();
  absl::MutexLock lock(&pass_mu_);
  for (CURL* curl : pass_curls_) curl_easy_cleanup(curl);
}

void WebhookDelivery::Start() {
  InitCurlOnce();
  absl::MutexLock lock(&mu_);
  if (!threads_.empty()) return;
  stop_ = false;
  stopping_ = false;
  dispatch_sleeper_.Resume();
  for (auto& s : worker_sleepers_) s->Resume();
  threads_.emplace_back([this] { DispatchLoop(); });
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

void WebhookDelivery::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    stopping_ = true;
    threads.swap(threads_);
    // Under mu_, so a Start() racing with this resumes them after.
    dispatch_sleeper_.Stop();
    for (auto& s : worker_sleepers_) s->Stop();
  }
  for (std::thread& t : threads) t.join();
}

void WebhookDelivery::Wake() {
  {
    absl::MutexLock lock(&mu_);
    ++dispatch_wakes_;
  }
  dispatch_sleeper_.Wake();
}

void WebhookDelivery::WakeWorkers() {
  for (auto& s : worker_sleepers_) s->Wake();
}

Sleeper& WebhookDelivery::sleeper(int worker) {
  if (worker < 0) return dispatch_sleeper_;
  return *worker_sleepers_.at(static_cast<size_t>(worker));
}

absl::Status WebhookDelivery::Reconnect(
    std::unique_ptr<pg::Connection>* conn) const {
  if (*conn != nullptr && (*conn)->ok()) return absl::OkStatus();
  auto opened = pg::Connection::Open(database_url_);
  if (!opened.ok()) {
    conn->reset();
    return opened.status();
  }
  *conn = std::move(*opened);
  (void)(*conn)->SetApplicationName("eventstream-producer webhooks");
  return absl::OkStatus();
}

bool WebhookDelivery::PauseWhileWriting(absl::Duration d) {
  // The assembler's Wake() after each pass that wrote entries marks the
  // writes going on; a whole slice without one means they stopped.
  constexpr absl::Duration kQuietSlice = absl::Milliseconds(250);
  Clock& clock = dispatch_sleeper_;
  const absl::Time end = clock.Now() + d;
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = clock.Now();
    if (now >= end) break;
    const uint64_t seen = dispatch_wakes_;
    mu_.AwaitWithTimeout(absl::Condition(&stop_), std::min(end - now, kQuietSlice));
    if (dispatch_wakes_ == seen) break;  // no new entries for a slice
  }
  return !stop_;
}

const std::vector<std::string>* WebhookDelivery::RuntimeSecretEnv(
    const WebhookConfig& hook) const {
  // Start-up (WebhookStore::SyncConfig) stores exactly the config's
  // webhooks as from_config, under their names, and the RPCs cannot write
  // those names: a webhook named in the config is that config webhook.
  if (config_webhooks_.count(hook.name) > 0) return nullptr;
  return &options_.runtime_secret_env;
}

}  // namespace eventstream
