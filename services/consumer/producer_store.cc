#include "services/consumer/producer_store.h"

#include <openssl/rand.h>

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    return absl::InternalError("cannot generate a notify token: OpenSSL RAND_bytes failed");
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

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
  auto token = NewToken();
  if (!token.ok()) return token.status();
  // A concurrent start (second replica) keeps the first token: ON CONFLICT
  // only refreshes url and api_key.
  auto r = conn->Exec(
      "INSERT INTO es_consumer.event_producer (name, url, api_key, notify_token)"
      " VALUES ($1, $2, $3, $4)"
      " ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, api_key = EXCLUDED.api_key"
      " RETURNING notify_token",
      {producer.name, producer.url, producer.api_key, *token});
  if (!r.ok()) return r.status();
  return std::string(r->Get(0, 0));
}

absl::StatusOr<std::optional<StoredProducer>> LoadProducer(pg::Connection* conn,
                                                           const std::string& name) {
  auto r = conn->Exec(
      "SELECT name, url, api_key, registered_at IS NOT NULL, notify_token, notify_address"
      " FROM es_consumer.event_producer WHERE name = $1",
      {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<StoredProducer>();
  StoredProducer p;
  p.name = std::string(r->Get(0, 0));
  p.url = std::string(r->Get(0, 1));
  p.api_key = std::string(r->Get(0, 2));
  p.registered = r->GetBool(0, 3);
  p.notify_token = std::string(r->Get(0, 4));
  p.notify_address = std::string(r->Get(0, 5));
  auto rows = conn->Exec(
      "SELECT doctype, local_doctype, use_same_name, condition, mapping, unsubscribe, status"
      " FROM es_consumer.producer_doctype WHERE producer = $1 ORDER BY doctype",
      {name});
  if (!rows.ok()) return rows.status();
  for (int i = 0; i < rows->rows(); ++i) {
    ProducerDocTypeRow d;
    d.doctype = std::string(rows->Get(i, 0));
    d.local_doctype = std::string(rows->Get(i, 1));
    d.use_same_name = rows->GetBool(i, 2);
    d.condition = std::string(rows->Get(i, 3));
    d.mapping = std::string(rows->Get(i, 4));
    d.unsubscribe = rows->GetBool(i, 5);
    d.status = StatusFromText(std::string(rows->Get(i, 6)));
    p.doctypes.push_back(std::move(d));
  }
  return std::optional<StoredProducer>(std::move(p));
}

absl::Status SaveSubscription(pg::Connection* conn, const std::string& name,
                              const std::string& notify_address,
                              const std::vector<ProducerDocTypeRow>& doctypes,
                              std::optional<int64_t> watermark) {
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  auto r = conn->Exec(
      "UPDATE es_consumer.event_producer"
      " SET registered_at = coalesce(registered_at, now()), notify_address = $2"
      " WHERE name = $1",
      {name, notify_address});
  if (!r.ok()) return r.status();
  if (r->affected_rows() != 1)
    return absl::NotFoundError(absl::StrCat("no event_producer row for ", name));
  r = conn->Exec("DELETE FROM es_consumer.producer_doctype WHERE producer = $1", {name});
  if (!r.ok()) return r.status();
  for (const ProducerDocTypeRow& d : doctypes) {
    r = conn->Exec(
        "INSERT INTO es_consumer.producer_doctype (producer, doctype, local_doctype,"
        " use_same_name, condition, mapping, unsubscribe, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {name, d.doctype, d.local_doctype, d.use_same_name, d.condition, d.mapping,
         d.unsubscribe, StatusText(d.status)});
    if (!r.ok()) return r.status();
  }
  if (watermark) {
    r = conn->Exec(
        "INSERT INTO es_consumer.last_update (producer, last_seq) VALUES ($1, $2)"
        " ON CONFLICT (producer) DO NOTHING",
        {name, *watermark});
    if (!r.ok()) return r.status();
  }
  return (*tx)->Commit();
}

absl::Status ClearRegistration(pg::Connection* conn, const std::string& name) {
  auto r = conn->Exec(
      "UPDATE es_consumer.event_producer SET registered_at = NULL WHERE name = $1", {name});
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<int64_t> LoadWatermark(pg::Connection* conn, const std::string& name) {
  auto r = conn->Exec("SELECT last_seq FROM es_consumer.last_update WHERE producer = $1",
                      {name});
  if (!r.ok()) return r.status();
  return r->rows() == 0 ? 0 : r->GetInt64(0, 0);
}

}  // namespace eventstream
