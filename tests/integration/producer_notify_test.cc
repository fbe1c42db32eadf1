// The producer's Notifier against real in-process gRPC Consumer servers on
// loopback: coalescing of a burst of signals, the authorization metadata and
// request, exponential backoff for a consumer that is down and delivery once
// it comes up, UNAUTHENTICATED treated as a failure with backoff and logged
// once, one slow consumer not holding up another, and a prompt Stop() while
// backing off or with a call in flight. The token never reaches the log.
#include "services/producer/notifier.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"
#include "tests/support/eventually.h"

namespace eventstream::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const char kProducer[] = "hq";
const char kToken[] = "notify-token-x7q";
const char kWrongToken[] = "stale-token-k2w";

// A Consumer service that records Notify calls. Accepts only
// `authorization: token hq:<expected token>`; others are UNAUTHENTICATED.
class FakeConsumer : public eventstream::v1::Consumer::Service {
 public:
  explicit FakeConsumer(std::string expected_token)
      : expected_auth_(absl::StrCat("token ", kProducer, ":", expected_token)) {}

  grpc::Status Notify(grpc::ServerContext* context,
                      const eventstream::v1::NotifyRequest* request,
                      eventstream::v1::NotifyResponse* response) override {
    std::string auth;
    auto it = context->client_metadata().find("authorization");
    if (it != context->client_metadata().end()) {
      auth.assign(it->second.data(), it->second.size());
    }
    milliseconds delay;
    bool accept = auth == expected_auth_ && request->producer() == kProducer;
    if (!accept) {
      milliseconds reject_delay;
      {
        std::lock_guard<std::mutex> lock(mu_);
        reject_delay = reject_delay_;
      }
      std::this_thread::sleep_for(reject_delay);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!accept) {
        ++rejected_;
        cv_.notify_all();
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "unknown producer or wrong notify token");
      }
      ++calls_;
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      positions_.push_back(request->log_position());
      delay = delay_;
      cv_.notify_all();
    }
    // Slow consumer: sleep, but give up when the caller cancels.
    const auto until = Clock::now() + delay;
    while (Clock::now() < until && !context->IsCancelled()) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    ++completed_;
    cv_.notify_all();
    return grpc::Status::OK;
  }

  void set_delay(milliseconds delay) {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ = delay;
  }
  // How long a rejected call takes before UNAUTHENTICATED.
  void set_reject_delay(milliseconds delay) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_delay_ = delay;
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int rejected() {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }
  int completed() {
    std::lock_guard<std::mutex> lock(mu_);
    return completed_;
  }
  int max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }
  std::vector<int64_t> positions() {
    std::lock_guard<std::mutex> lock(mu_);
    return positions_;
  }
  // Waits until an accepted Notify carried `position` (or a later one).
  bool WaitForPosition(int64_t position, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return !positions_.empty() && positions_.back() >= position;
    });
  }
  bool WaitForCalls(int n, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return calls_ >= n; });
  }

 private:
  const std::string expected_auth_;
  std::mutex mu_;
  std::condition_variable cv_;
  milliseconds delay_{0};
  milliseconds reject_delay_{0};
  int calls_ = 0;
  int rejected_ = 0;
  int completed_ = 0;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  std::vector<int64_t> positions_;
};

// A real gRPC server on 127.0.0.1 serving one FakeConsumer.
class ConsumerServer {
 public:
  // port 0 picks a free one.
  static std::unique_ptr<ConsumerServer> Start(FakeConsumer* service,
                                               int port = 0) {
    auto server = std::unique_ptr<ConsumerServer>(new ConsumerServer);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureServerCredentials(), &server->port_);
    builder.RegisterService(service);
    server->server_ = builder.BuildAndStart();
    if (server->server_ == nullptr || server->port_ == 0) return nullptr;
    return server;
  }
  ~ConsumerServer() { Shutdown(); }
  void Shutdown() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
    server_->Wait();
    server_.reset();
  }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  ConsumerServer() = default;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A loopback port with nothing listening (it was free a moment ago).
int FreePort() {
  FakeConsumer unused(kToken);
  auto server = ConsumerServer::Start(&unused);
  return server == nullptr ? 0 : server->port();
}

// Collects every log line, so tests can count state-change lines and check
// that no secret is logged.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

class NotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    sink_ = std::make_shared<CaptureSink>();
    auto logger = std::make_shared<spdlog::logger>("notify-test", sink_);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override {
    for (const auto& line : sink_->lines()) {
      std::printf("  log: %s\n", line.c_str());
      EXPECT_FALSE(absl::StrContains(line, kToken)) << line;
      EXPECT_FALSE(absl::StrContains(line, kWrongToken)) << line;
    }
    spdlog::set_default_logger(previous_);
  }
  int CountLog(const std::string& a, const std::string& b) {
    int n = 0;
    for (const auto& line : sink_->lines()) {
      if (absl::StrContains(line, a) && absl::StrContains(line, b)) ++n;
    }
    return n;
  }

  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<CaptureSink> sink_;
};


TEST_F(NotifierTest, BurstOfSignalsIsCoalesced) {
  FakeConsumer consumer(kToken);
  consumer.set_delay(milliseconds(20));  // a little slow, as under load
  auto server = ConsumerServer::Start(&consumer);
  ASSERT_NE(server, nullptr);

  Notifier::Options options;
  options.initial_backoff = milliseconds(100);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", server->address(), kToken}});
  notifier.Start();

  constexpr int kSignals = 10000;
  for (int i = 1; i <= kSignals; ++i) {
    // "elsewhere" is no target: ignored.
    notifier.Signal({"branch1", "elsewhere"}, i);
  }
  ASSERT_TRUE(consumer.WaitForPosition(kSignals, milliseconds(10000)));
  // Nothing more is owed: no further calls trickle in.
  ASSERT_TRUE(Eventually(
      [&] {
        auto target = notifier.stats().targets["branch1"];
        return !target.dirty && !target.in_flight;
      },
      milliseconds(5000)));
  std::this_thread::sleep_for(milliseconds(300));

  const std::vector<int64_t> positions = consumer.positions();
  std::printf("%d signals -> %zu Notify calls\n", kSignals, positions.size());
  EXPECT_GE(positions.size(), 1u);
  EXPECT_LE(positions.size(), 20u);
  EXPECT_EQ(positions.back(), kSignals);
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
  EXPECT_EQ(consumer.max_in_flight(), 1);
  EXPECT_EQ(consumer.rejected(), 0);

  Notifier::Stats stats = notifier.stats();
  EXPECT_EQ(stats.signals, kSignals);
  EXPECT_EQ(stats.attempts, static_cast<int64_t>(positions.size()));
  EXPECT_EQ(stats.successes, stats.attempts);
  EXPECT_EQ(stats.failures, 0);
  ASSERT_EQ(stats.targets.count("branch1"), 1u);
  EXPECT_EQ(stats.targets["branch1"].delivered_position, kSignals);
  EXPECT_EQ(stats.targets["branch1"].consecutive_failures, 0);
  EXPECT_EQ(stats.targets.count("elsewhere"), 0u);

  // A later signal is one more call.
  notifier.Signal({"branch1"}, kSignals + 1);
  ASSERT_TRUE(consumer.WaitForPosition(kSignals + 1, milliseconds(5000)));
  EXPECT_EQ(consumer.calls(), static_cast<int>(positions.size()) + 1);

  // Signals that keep coming while calls are in flight: each call takes at
  // least 50 ms and only one is in flight, so the number of calls is bounded
  // by the time taken, not by the number of signals.
  consumer.set_delay(milliseconds(50));
  const int before = consumer.calls();
  const auto start = Clock::now();
  for (int i = 1; i <= kSignals; ++i) {
    notifier.Signal({"branch1"}, 2 * kSignals + i);
    if (i % 100 == 0) std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(consumer.WaitForPosition(3 * kSignals, milliseconds(10000)));
  const auto elapsed =
      std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  const int spread_calls = consumer.calls() - before;
  std::printf("%d signals over %lld ms -> %d Notify calls\n", kSignals,
              static_cast<long long>(elapsed.count()), spread_calls);
  EXPECT_GE(spread_calls, 1);
  EXPECT_LE(spread_calls, elapsed.count() / 50 + 2);
  EXPECT_LT(spread_calls, kSignals / 10);
  EXPECT_EQ(consumer.positions().back(), 3 * kSignals);
  EXPECT_EQ(consumer.max_in_flight(), 1);
  notifier.Stop();
}

TEST_F(NotifierTest, ConsumerDownBacksOffThenDeliversWhenItComesUp) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);

  Notifier::Options options;
  options.initial_backoff = milliseconds(100);
  options.max_backoff = milliseconds(1600);
  options.rpc_timeout = milliseconds(1000);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", address, kToken}});
  notifier.Start();

  const auto start = Clock::now();
  int64_t position = 0;
  // Keep signalling for ~2 s, as capture would; every Signal stays cheap.
  milliseconds slowest_signal{0};
  while (Clock::now() - start < milliseconds(2000)) {
    const auto before = Clock::now();
    notifier.Signal({"branch1"}, ++position);
    slowest_signal = std::max(slowest_signal,
                              std::chrono::duration_cast<milliseconds>(
                                  Clock::now() - before));
    std::this_thread::sleep_for(milliseconds(1));
  }
  Notifier::TargetStats down = notifier.stats().targets["branch1"];
  std::printf("consumer down for 2 s: %lld attempts, %lld signals, slowest "
              "Signal %lld ms, last error %s\n",
              static_cast<long long>(down.attempts),
              static_cast<long long>(position),
              static_cast<long long>(slowest_signal.count()),
              down.last_error.c_str());
  // 100, 200, 400, 800 ms (±20%): about 5 attempts, not hundreds.
  EXPECT_GE(down.attempts, 2);
  EXPECT_LE(down.attempts, 6);
  EXPECT_EQ(down.successes, 0);
  EXPECT_EQ(down.failures, down.attempts - (down.in_flight ? 1 : 0));
  EXPECT_TRUE(absl::StartsWith(down.last_error, "UNAVAILABLE")) << down.last_error;
  EXPECT_LT(slowest_signal, milliseconds(500));  // generous: never blocks
  // Logged once when it started failing, not per attempt.
  EXPECT_EQ(CountLog("branch1", "failing"), 1);

  // The consumer comes up on that port: the next attempt gets through,
  // carrying the newest position.
  FakeConsumer consumer(kToken);
  auto server = ConsumerServer::Start(&consumer, port);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(consumer.WaitForPosition(position, milliseconds(10000)));
  EXPECT_EQ(consumer.positions().back(), position);
  ASSERT_TRUE(Eventually(
      [&] { return notifier.stats().targets["branch1"].successes == 1; },
      milliseconds(2000)));
  Notifier::TargetStats up = notifier.stats().targets["branch1"];
  EXPECT_EQ(up.consecutive_failures, 0);
  EXPECT_EQ(up.delivered_position, position);
  EXPECT_TRUE(up.last_error.empty());
  EXPECT_EQ(CountLog("branch1", "reachable again"), 1);
  EXPECT_EQ(CountLog("branch1", "failing"), 1);
  notifier.Stop();
}

// A consumer that was down long enough for a long backoff, and then pulls
// (the producer calls Heard): the Notify it is owed goes at once, not when
// the backoff runs out (which was up to a minute of lag after a restart).
TEST_F(NotifierTest, HeardFromAConsumerEndsItsBackoff) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  Notifier::Options options;
  options.initial_backoff = milliseconds(30000);  // far beyond this test
  options.max_backoff = milliseconds(60000);
  options.rpc_timeout = milliseconds(1000);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", address, kToken}});
  notifier.Start();
  notifier.Signal({"branch1"}, 7);
  ASSERT_TRUE(Eventually(
      [&] { return notifier.stats().targets["branch1"].failures == 1; }, milliseconds(5000)));

  FakeConsumer consumer(kToken);
  auto server = ConsumerServer::Start(&consumer, port);
  ASSERT_NE(server, nullptr);
  notifier.Signal({"branch1"}, 8);
  // Still backing off: nothing arrives on its own within a second.
  EXPECT_FALSE(consumer.WaitForPosition(8, milliseconds(1000)));
  const auto heard = Clock::now();
  notifier.Heard("branch1");
  notifier.Heard("nobody");  // not a target: ignored
  ASSERT_TRUE(consumer.WaitForPosition(8, milliseconds(5000)));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - heard);
  std::printf("Notify delivered %lld ms after Heard\n", static_cast<long long>(took.count()));
  EXPECT_TRUE(Eventually(
      [&] { return notifier.stats().targets["branch1"].consecutive_failures == 0; },
      milliseconds(2000)));
  notifier.Stop();
}

TEST_F(NotifierTest, WrongTokenIsAFailureWithBackoffLoggedOnce) {
  FakeConsumer consumer(kToken);
  auto server = ConsumerServer::Start(&consumer);
  ASSERT_NE(server, nullptr);

  Notifier::Options options;
  options.initial_backoff = milliseconds(100);
  options.max_backoff = milliseconds(400);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", server->address(), kWrongToken}});
  notifier.Start();
  notifier.Signal({"branch1"}, 42);

  std::this_thread::sleep_for(milliseconds(1500));
  Notifier::TargetStats target = notifier.stats().targets["branch1"];
  std::printf("wrong token for 1.5 s: %d rejected calls, %lld failures\n",
              consumer.rejected(), static_cast<long long>(target.failures));
  // Retried (the signal is still owed), but with backoff: 100, 200, 400,
  // 400 ... ms, so a handful of attempts, not a busy loop.
  EXPECT_GE(consumer.rejected(), 2);
  EXPECT_LE(consumer.rejected(), 10);
  EXPECT_EQ(consumer.calls(), 0);
  EXPECT_GE(target.failures, 2);
  EXPECT_GE(target.consecutive_failures, 2);
  EXPECT_TRUE(target.dirty || target.in_flight);
  EXPECT_EQ(target.delivered_position, 0);
  EXPECT_TRUE(absl::StartsWith(target.last_error, "UNAUTHENTICATED"))
      << target.last_error;
  EXPECT_EQ(CountLog("branch1", "failing"), 1);
  EXPECT_EQ(CountLog("branch1", "UNAUTHENTICATED"), 1);

  // The consumer re-registers with its real token: the owed Notify goes out.
  notifier.SetTargets({{"branch1", server->address(), kToken}});
  ASSERT_TRUE(consumer.WaitForPosition(42, milliseconds(5000)));
  EXPECT_EQ(consumer.positions(), std::vector<int64_t>({42}));
  notifier.Stop();
}

TEST_F(NotifierTest, TargetChangedWhileCallInFlightKeepsWhatIsOwed) {
  FakeConsumer consumer(kToken);
  consumer.set_reject_delay(milliseconds(500));
  auto server = ConsumerServer::Start(&consumer);
  ASSERT_NE(server, nullptr);

  Notifier::Options options;
  options.initial_backoff = milliseconds(100);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", server->address(), kWrongToken}});
  notifier.Start();
  notifier.Signal({"branch1"}, 9);
  ASSERT_TRUE(Eventually(
      [&] { return notifier.stats().targets["branch1"].in_flight; },
      milliseconds(5000)));
  // The token changes while the (doomed) call is in flight: the new target
  // still owes position 9 and sends it.
  notifier.SetTargets({{"branch1", server->address(), kToken}});
  ASSERT_TRUE(consumer.WaitForPosition(9, milliseconds(5000)));
  EXPECT_EQ(consumer.positions(), std::vector<int64_t>({9}));
  EXPECT_TRUE(Eventually([&] { return consumer.rejected() == 1; },
                         milliseconds(5000)));
  notifier.Stop();
}

TEST_F(NotifierTest, SlowOrDownConsumerDoesNotHoldUpOthers) {
  FakeConsumer slow(kToken);
  slow.set_delay(milliseconds(1500));
  FakeConsumer fast(kToken);
  auto slow_server = ConsumerServer::Start(&slow);
  auto fast_server = ConsumerServer::Start(&fast);
  ASSERT_NE(slow_server, nullptr);
  ASSERT_NE(fast_server, nullptr);
  const int down_port = FreePort();
  ASSERT_NE(down_port, 0);

  Notifier::Options options;
  options.initial_backoff = milliseconds(100);
  options.rpc_timeout = milliseconds(5000);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"slow", slow_server->address(), kToken},
                       {"down", absl::StrCat("127.0.0.1:", down_port), kToken},
                       {"fast", fast_server->address(), kToken},
                       {"poll-only", "", kToken}});
  notifier.Start();
  notifier.Signal({"slow", "down", "fast", "poll-only"}, 7);

  ASSERT_TRUE(slow.WaitForCalls(1, milliseconds(5000)));
  ASSERT_TRUE(fast.WaitForPosition(7, milliseconds(5000)));
  // The fast consumer was served while the slow one's call was still open.
  EXPECT_EQ(slow.completed(), 0);
  // Signals meanwhile: fast gets one more call right away; slow gets exactly
  // one more after its call returns.
  for (int i = 8; i <= 500; ++i) notifier.Signal({"slow", "down", "fast"}, i);
  ASSERT_TRUE(fast.WaitForPosition(500, milliseconds(5000)));
  ASSERT_TRUE(slow.WaitForPosition(500, milliseconds(10000)));
  EXPECT_EQ(slow.positions(), std::vector<int64_t>({7, 500}));
  EXPECT_EQ(slow.max_in_flight(), 1);

  Notifier::Stats stats = notifier.stats();
  EXPECT_EQ(stats.targets.count("poll-only"), 0u);
  EXPECT_EQ(stats.targets["down"].successes, 0);
  EXPECT_GE(stats.targets["down"].failures, 1);
  EXPECT_EQ(stats.targets["fast"].failures, 0);
  EXPECT_EQ(CountLog("down", "failing"), 1);
  EXPECT_EQ(CountLog("fast", "failing"), 0);
  notifier.Stop();
}

TEST_F(NotifierTest, StopIsPromptWhileBackingOff) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  Notifier::Options options;
  options.initial_backoff = milliseconds(5000);
  options.max_backoff = milliseconds(60000);
  Notifier notifier(kProducer, options);
  notifier.SetTargets({{"branch1", absl::StrCat("127.0.0.1:", port), kToken}});
  notifier.Start();
  notifier.Signal({"branch1"}, 1);
  ASSERT_TRUE(Eventually(
      [&] { return notifier.stats().targets["branch1"].failures == 1; },
      milliseconds(5000)));

  const auto before = Clock::now();
  notifier.Stop();
  const auto took =
      std::chrono::duration_cast<milliseconds>(Clock::now() - before);
  std::printf("Stop() while backing off took %lld ms\n",
              static_cast<long long>(took.count()));
  EXPECT_LT(took, milliseconds(1000));
  notifier.Stop();  // idempotent
}

TEST_F(NotifierTest, StopIsPromptWithACallInFlight) {
  FakeConsumer consumer(kToken);
  consumer.set_delay(milliseconds(10000));
  auto server = ConsumerServer::Start(&consumer);
  ASSERT_NE(server, nullptr);
  Notifier::Options options;
  options.rpc_timeout = milliseconds(20000);
  auto notifier = std::make_unique<Notifier>(kProducer, options);
  notifier->SetTargets({{"branch1", server->address(), kToken}});
  notifier->Start();
  notifier->Signal({"branch1"}, 1);
  ASSERT_TRUE(consumer.WaitForCalls(1, milliseconds(5000)));

  const auto before = Clock::now();
  notifier.reset();  // the destructor stops it
  const auto took =
      std::chrono::duration_cast<milliseconds>(Clock::now() - before);
  std::printf("Stop() with a call in flight took %lld ms\n",
              static_cast<long long>(took.count()));
  EXPECT_LT(took, milliseconds(1000));
  // The server saw the cancellation and returned early.
  EXPECT_TRUE(Eventually([&] { return consumer.completed() == 1; },
                         milliseconds(3000)));
}

TEST_F(NotifierTest, SignalBeforeStartAndWithoutTargetsIsHarmless) {
  FakeConsumer consumer(kToken);
  auto server = ConsumerServer::Start(&consumer);
  ASSERT_NE(server, nullptr);
  Notifier notifier(kProducer);
  notifier.Signal({"branch1"}, 3);  // no targets yet: ignored
  notifier.SetTargets({{"branch1", server->address(), kToken}});
  notifier.SignalAll(5);  // before Start: owed, sent once started
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(consumer.calls(), 0);
  notifier.Start();
  ASSERT_TRUE(consumer.WaitForPosition(5, milliseconds(5000)));
  EXPECT_EQ(consumer.positions(), std::vector<int64_t>({5}));
  notifier.Stop();
  notifier.Signal({"branch1"}, 6);  // after Stop: dropped, no crash
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(consumer.calls(), 1);
}

}  // namespace
}  // namespace eventstream::testing
