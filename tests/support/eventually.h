// Eventually: the one way tests wait for something the services do in the
// background. Polls `done` until it is true or `timeout` passes, and
// returns its last answer (so a failing ASSERT_TRUE(Eventually(...)) reads
// the final state).
#ifndef EVENTSTREAM_TESTS_SUPPORT_EVENTUALLY_H_
#define EVENTSTREAM_TESTS_SUPPORT_EVENTUALLY_H_

#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace eventstream::testing {

template <typename F>
bool Eventually(F done, absl::Duration timeout = absl::Seconds(30),
                absl::Duration poll = absl::Milliseconds(50)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(poll);
  }
  return done();
}

// The same with a std::chrono timeout, polling every 10 ms (for tests that
// measure delivery in milliseconds).
template <typename F, typename Rep, typename Period>
bool Eventually(F done, std::chrono::duration<Rep, Period> timeout) {
  return Eventually(done, absl::FromChrono(timeout), absl::Milliseconds(10));
}

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_EVENTUALLY_H_
