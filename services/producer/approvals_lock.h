// The producer's approvals lock: a PostgreSQL advisory lock taken around
// every write that changes which DocTypes are captured (consumer approvals in
// ConsumerStore, webhook DocTypes in WebhookStore), so "compute the set,
// sync the triggers" never interleaves. Both stores must take the same lock:
// hence one definition.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_APPROVALS_LOCK_H_
#define EVENTSTREAM_SERVICES_PRODUCER_APPROVALS_LOCK_H_

namespace eventstream {

inline constexpr char kApprovalsLock[] =
    "SELECT pg_advisory_lock(hashtext('es_producer.consumer_approvals'))";
inline constexpr char kApprovalsUnlock[] =
    "SELECT pg_advisory_unlock(hashtext('es_producer.consumer_approvals'))";

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_APPROVALS_LOCK_H_
