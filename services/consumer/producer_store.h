// ProducerStore: the consumer's Event Producer records in its own schema
// (migrations/consumer/0002_producers.sql): es_consumer.event_producer,
// es_consumer.producer_doctype and the watermark es_consumer.last_update.
//
// Contract:
//  * EnsureProducer creates a configured producer's row on first start with
//    a fresh random notify token (kept for good: the producer knows it) and
//    returns that token; later starts only refresh url and api_key.
//  * SaveSubscription replaces the producer's DocType rows with what was
//    last sent (with the statuses the producer answered), marks it
//    registered, and -- on first registration only -- stores the returned
//    watermark. An existing watermark is never moved backwards.
//  * Plain functions of a connection, no state: any thread, any connection.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_STORE_H_
#define EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eventstream/v1/common.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"

namespace eventstream {

// One subscribed DocType of one producer.
struct ProducerDocTypeRow {
  std::string doctype;  // the producer's DocType
  std::string local_doctype;
  bool use_same_name = false;
  std::string condition;
  std::string mapping;
  bool unsubscribe = false;
  // Sent as !skip_initial_sync; not stored (a row loaded from the database
  // keeps the default) and not compared by SameRequest: the producer reads
  // it only when the subscription becomes active, so a change alone is no
  // reason to call UpdateSubscription.
  bool initial_sync = true;
  v1::SubscriptionStatus status = v1::SUBSCRIPTION_STATUS_UNSPECIFIED;

  // What the producer is told (RegisterConsumer / UpdateSubscription),
  // apart from initial_sync.
  bool SameRequest(const ProducerDocTypeRow& other) const {
    return doctype == other.doctype && condition == other.condition &&
           unsubscribe == other.unsubscribe;
  }
};

struct StoredProducer {
  std::string name;
  std::string url;
  std::string api_key;
  bool registered = false;
  std::string notify_token;
  std::string notify_address;
  std::vector<ProducerDocTypeRow> doctypes;  // by doctype
};

// The DocType rows `producer` asks for according to the config (statuses
// unspecified), by producer DocType. INVALID_ARGUMENT when two entries would
// subscribe to the same producer DocType.
absl::StatusOr<std::vector<ProducerDocTypeRow>> DesiredDocTypes(
    const ConsumerConfig& consumer, const EventProducerConfig& producer);

// Creates or refreshes the producer's row; returns its notify token.
absl::StatusOr<std::string> EnsureProducer(pg::Connection* conn,
                                           const EventProducerConfig& producer);

// nullopt when there is no row for `name`.
absl::StatusOr<std::optional<StoredProducer>> LoadProducer(pg::Connection* conn,
                                                           const std::string& name);

// See the contract above. `watermark` is only used when no last_update row
// exists for the producer.
absl::Status SaveSubscription(pg::Connection* conn, const std::string& name,
                              const std::string& notify_address,
                              const std::vector<ProducerDocTypeRow>& doctypes,
                              std::optional<int64_t> watermark);

// Forgets the registration (the producer no longer knows this consumer); the
// watermark stays.
absl::Status ClearRegistration(pg::Connection* conn, const std::string& name);

// The producer's watermark; 0 when it has none yet.
absl::StatusOr<int64_t> LoadWatermark(pg::Connection* conn, const std::string& name);

std::string StatusText(v1::SubscriptionStatus status);  // "approved"
v1::SubscriptionStatus StatusFromText(const std::string& text);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_STORE_H_
