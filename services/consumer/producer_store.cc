#include "services/consumer/producer_store.h"

#include <openssl/rand.h>

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    return absl::InternalError("cannot generate a notify token: OpenSSL RAND_bytes failed");
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// The store's statements (es_consumer.event_producer, producer_doctype,
// last_update). Crash safety: EnsureProducer and ClearRegistration are one
// statement each; SaveSubscription writes in one transaction.
// A concurrent start (second replica) keeps the first token: ON CONFLICT
// only refreshes url and api_key.
constexpr pg::Query kEnsureProducer{
    "consumer_ensure_producer",
    "INSERT INTO es_consumer.event_producer (name, url, api_key, notify_token)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, api_key = EXCLUDED.api_key"
    " RETURNING notify_token"};
constexpr pg::Query kLoadProducer{
    "consumer_load_producer",
    "SELECT name, url, api_key, registered_at IS NOT NULL AS registered, notify_token,"
    " notify_address FROM es_consumer.event_producer WHERE name = $1"};
constexpr pg::Query kLoadProducerDocTypes{
    "consumer_load_producer_doctypes",
    "SELECT doctype, local_doctype, use_same_name, condition, mapping, unsubscribe, status"
    " FROM es_consumer.producer_doctype WHERE producer = $1 ORDER BY doctype"};
constexpr pg::Query kMarkRegistered{
    "consumer_mark_registered",
    "UPDATE es_consumer.event_producer"
    " SET registered_at = coalesce(registered_at, now()), notify_address = $2"
    " WHERE name = $1"};
constexpr pg::Query kDeleteProducerDocTypes{
    "consumer_delete_producer_doctypes",
    "DELETE FROM es_consumer.producer_doctype WHERE producer = $1"};
constexpr pg::Query kInsertProducerDocType{
    "consumer_insert_producer_doctype",
    "INSERT INTO es_consumer.producer_doctype (producer, doctype, local_doctype,"
    " use_same_name, condition, mapping, unsubscribe, status)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"};
constexpr pg::Query kInitWatermark{
    "consumer_init_watermark",
    "INSERT INTO es_consumer.last_update (producer, last_seq) VALUES ($1, $2)"
    " ON CONFLICT (producer) DO NOTHING"};
constexpr pg::Query kClearRegistration{
    "consumer_clear_registration",
    "UPDATE es_consumer.event_producer SET registered_at = NULL WHERE name = $1"};
constexpr pg::Query kLoadWatermark{
    "consumer_load_watermark",
    "SELECT last_seq FROM es_consumer.last_update WHERE producer = $1"};

}  // namespace

std::string StatusText(v1::SubscriptionStatus status) {
  switch (status) {
    case v1::SUBSCRIPTION_STATUS_APPROVED: return "approved";
    case v1::SUBSCRIPTION_STATUS_REJECTED: return "rejected";
    default: return "pending";
  }
}

v1::SubscriptionStatus StatusFromText(const std::string& text) {
  if (text == "approved") return v1::SUBSCRIPTION_STATUS_APPROVED;
  if (text == "rejected") return v1::SUBSCRIPTION_STATUS_REJECTED;
  if (text == "pending") return v1::SUBSCRIPTION_STATUS_PENDING;
  return v1::SUBSCRIPTION_STATUS_UNSPECIFIED;
}

absl::StatusOr<std::vector<ProducerDocTypeRow>> DesiredDocTypes(
    const ConsumerConfig& consumer, const EventProducerConfig& producer) {
  std::map<std::string, ProducerDocTypeRow> by_doctype;
  for (const ProducerDocTypeConfig& d : producer.doctypes) {
    ProducerDocTypeRow row;
    row.doctype = d.doctype;
    row.local_doctype = d.doctype;
    if (!d.mapping.empty()) {
      const DocTypeMapping* mapping = consumer.FindMapping(d.mapping);
      if (mapping == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "consumer.producers ", producer.name, ": doctype ", d.doctype,
            ": unknown mapping \"", d.mapping, "\""));
      }
      row.doctype = mapping->remote_doctype;
      row.local_doctype = mapping->local_doctype;
    }
    row.use_same_name = d.use_same_name;
    row.condition = d.condition;
    row.mapping = d.mapping;
    row.unsubscribe = d.unsubscribe;
    row.initial_sync = d.initial_sync;
    auto [it, inserted] = by_doctype.emplace(row.doctype, row);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "consumer.producers ", producer.name, ": two doctypes entries (",
          it->second.local_doctype, ", ", row.local_doctype,
          ") subscribe to the producer's DocType \"", row.doctype,
          "\"; keep one per producer DocType"));
    }
  }
  std::vector<ProducerDocTypeRow> out;
  for (auto& [doctype, row] : by_doctype) out.push_back(std::move(row));
  return out;
}

absl::StatusOr<std::string> EnsureProducer(pg::Connection* conn,
                                           const EventProducerConfig& producer) {
  ASSIGN_OR_RETURN(std::string token, NewToken());
  ASSIGN_OR_RETURN(pg::Result r,
                   conn->Exec(kEnsureProducer,
                              {producer.name, producer.url, producer.api_key, token}));
  return std::string(r.Get(0, "notify_token"));
}

absl::StatusOr<std::optional<StoredProducer>> LoadProducer(pg::Connection* conn,
                                                           const std::string& name) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kLoadProducer, {name}));
  if (r.rows() == 0) return std::optional<StoredProducer>();
  StoredProducer p;
  p.name = std::string(r.Get(0, "name"));
  p.url = std::string(r.Get(0, "url"));
  p.api_key = std::string(r.Get(0, "api_key"));
  p.registered = r.GetBool(0, r.ColumnIndex("registered"));
  p.notify_token = std::string(r.Get(0, "notify_token"));
  p.notify_address = std::string(r.Get(0, "notify_address"));
  ASSIGN_OR_RETURN(pg::Result rows, conn->Exec(kLoadProducerDocTypes, {name}));
  for (int i = 0; i < rows.rows(); ++i) {
    ProducerDocTypeRow d;
    d.doctype = std::string(rows.Get(i, "doctype"));
    d.local_doctype = std::string(rows.Get(i, "local_doctype"));
    d.use_same_name = rows.GetBool(i, rows.ColumnIndex("use_same_name"));
    d.condition = std::string(rows.Get(i, "condition"));
    d.mapping = std::string(rows.Get(i, "mapping"));
    d.unsubscribe = rows.GetBool(i, rows.ColumnIndex("unsubscribe"));
    d.status = StatusFromText(std::string(rows.Get(i, "status")));
    p.doctypes.push_back(std::move(d));
  }
  return std::optional<StoredProducer>(std::move(p));
}

absl::Status SaveSubscription(pg::Connection* conn, const std::string& name,
                              const std::string& notify_address,
                              const std::vector<ProducerDocTypeRow>& doctypes,
                              std::optional<int64_t> watermark) {
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kMarkRegistered, {name, notify_address}));
  if (r.affected_rows() != 1)
    return absl::NotFoundError(absl::StrCat("no event_producer row for ", name));
  RETURN_IF_ERROR(conn->Exec(kDeleteProducerDocTypes, {name}).status());
  for (const ProducerDocTypeRow& d : doctypes) {
    RETURN_IF_ERROR(conn->Exec(kInsertProducerDocType,
                               {name, d.doctype, d.local_doctype, d.use_same_name, d.condition,
                                d.mapping, d.unsubscribe, StatusText(d.status)})
                        .status());
  }
  if (watermark) RETURN_IF_ERROR(conn->Exec(kInitWatermark, {name, *watermark}).status());
  return tx->Commit();
}

absl::Status ClearRegistration(pg::Connection* conn, const std::string& name) {
  return conn->Exec(kClearRegistration, {name}).status();
}

absl::StatusOr<int64_t> LoadWatermark(pg::Connection* conn, const std::string& name) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kLoadWatermark, {name}));
  return r.rows() == 0 ? 0 : r.GetInt64(0, r.ColumnIndex("last_seq"));
}

}  // namespace eventstream
