#include "services/producer/consumer_store.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libsync/input_rules.h"
#include "libsync/status_macros.h"
#include "libsync/subscription_condition.h"
#include "libsync/value.h"
#include "services/producer/approvals_lock.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr char kRowColumns[] =
    "doctype, status, condition, producer_condition, unsubscribed, "
    "approved_by_config";

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }


bool SecretEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string StatusText(SubscriptionStatus status) {
  return std::string(ToString(status));
}

SubscriptionStatus ParseStatus(absl::string_view text) {
  if (text == "approved") return SubscriptionStatus::kApproved;
  if (text == "rejected") return SubscriptionStatus::kRejected;
  return SubscriptionStatus::kPending;
}

SubscriptionRow RowAt(const pg::Result& r, int i) {
  SubscriptionRow row;
  row.doctype = std::string(r.Get(i, 0));
  row.status = ParseStatus(r.Get(i, 1));
  row.condition = std::string(r.Get(i, 2));
  row.producer_condition = std::string(r.Get(i, 3));
  row.unsubscribed = r.GetBool(i, 4);
  row.from_config = r.GetBool(i, 5);
  return row;
}

std::string JsonArray(const std::vector<std::string>& items) {
  Value::Array a;
  for (const std::string& s : items) a.push_back(Value::String(s));
  return Value::FromArray(std::move(a)).ToJson();
}

// "2 DocTypes: 1 approved, 1 pending" for one log line.
std::string Describe(const std::vector<SubscriptionRow>& rows) {
  std::map<std::string, int> counts;
  int unsubscribed = 0;
  for (const SubscriptionRow& r : rows) {
    if (r.unsubscribed) {
      ++unsubscribed;
    } else {
      ++counts[StatusText(r.status)];
    }
  }
  std::vector<std::string> parts;
  for (const auto& [status, n] : counts) parts.push_back(absl::StrCat(n, " ", status));
  if (unsubscribed > 0) parts.push_back(absl::StrCat(unsubscribed, " unsubscribed"));
  return absl::StrCat(rows.size(), " DocType(s)",
                      parts.empty() ? "" : ": ", absl::StrJoin(parts, ", "));
}

}  // namespace

ConsumerStore::ConsumerStore(const Config* config, pg::ConnectionPool* pool,
                             TriggerSync sync_triggers)
    : config_(config), pool_(pool), sync_triggers_(std::move(sync_triggers)) {}

absl::Status ConsumerStore::Validate(const ConsumerRegistration& reg) const {
  if (std::string problem = NotifyAddressProblem(reg.notify_address); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "notify_address ", Quote(EscapeForLog(TruncateForClient(reg.notify_address, 100))),
        ": ", problem));
  }
  const std::vector<SubscriptionRequest>& doctypes = reg.doctypes;
  std::set<std::string> seen;
  for (size_t i = 0; i < doctypes.size(); ++i) {
    const SubscriptionRequest& d = doctypes[i];
    if (d.doctype.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("doctypes[", i, "].doctype: required"));
    }
    const DocTypeDef* def = config_->registry.Find(d.doctype);
    if (def == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown DocType ", Quote(d.doctype),
          ": this producer's config (doctypes:) does not define it"));
    }
    if (def->istable) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DocType ", Quote(d.doctype),
          " is a child table; subscribe to its parent DocType, whose "
          "documents carry its rows"));
    }
    if (!seen.insert(d.doctype).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("DocType ", Quote(d.doctype), " is listed twice"));
    }
    // A consumer's cmd: condition may only name an allowed function.
    std::string problem = ConditionProblem(d.condition, &config_->condition_functions());
    if (!problem.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "condition for DocType ", Quote(d.doctype), ": ", problem));
    }
  }
  return absl::OkStatus();
}

const ConsumerDocTypeConfig* ConsumerStore::ConfigFor(
    absl::string_view site, absl::string_view doctype) const {
  if (!config_->producer) return nullptr;
  const ConsumerSiteConfig* c =
      config_->producer->FindConsumer(std::string_view(site.data(), site.size()));
  if (c == nullptr) return nullptr;
  for (const ConsumerDocTypeConfig& d : c->doctypes) {
    if (d.doctype == doctype) return &d;
  }
  return nullptr;
}

absl::StatusOr<std::vector<NotifyTarget>> ConsumerStore::NotifyTargets() {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->Exec(
      "SELECT c.site, c.notify_address, c.notify_token FROM es_producer.consumer c"
      " WHERE c.notify_address <> '' AND EXISTS (SELECT 1 FROM"
      " es_producer.consumer_doctype d WHERE d.site = c.site"
      " AND d.status = 'approved' AND NOT d.unsubscribed) ORDER BY c.site");
  if (!r.ok()) return r.status();
  std::vector<NotifyTarget> out;
  for (int i = 0; i < r->rows(); ++i)
    out.push_back(NotifyTarget{std::string(r->Get(i, 0)), std::string(r->Get(i, 1)),
                               std::string(r->Get(i, 2))});
  return out;
}

absl::StatusOr<int64_t> ConsumerStore::LogPosition(pg::Connection* conn) {
  auto r = conn->Exec("SELECT coalesce(max(seq), 0) FROM es_producer.update_log");
  if (!r.ok()) return r.status();
  return r->GetInt64(0, 0);
}

absl::StatusOr<std::set<std::string>> ConsumerStore::CapturedDocTypes(
    pg::Connection* conn) {
  auto r = conn->Exec(
      "SELECT DISTINCT doctype FROM es_producer.consumer_doctype"
      " WHERE status = 'approved' AND NOT unsubscribed");
  if (!r.ok()) return r.status();
  std::set<std::string> out;
  for (int i = 0; i < r->rows(); ++i) {
    std::string doctype(r->Get(i, 0));
    const DocTypeDef* def = config_->registry.Find(doctype);
    if (def != nullptr && !def->istable) out.insert(std::move(doctype));
  }
  return out;
}

absl::StatusOr<std::vector<SubscriptionRow>> ConsumerStore::ReadRows(
    pg::Connection* conn, absl::string_view site) {
  auto r = conn->Exec(absl::StrCat("SELECT ", kRowColumns,
                                   " FROM es_producer.consumer_doctype"
                                   " WHERE site = $1 ORDER BY doctype"),
                      {site});
  if (!r.ok()) return r.status();
  std::vector<SubscriptionRow> rows;
  for (int i = 0; i < r->rows(); ++i) rows.push_back(RowAt(*r, i));
  return rows;
}

absl::Status ConsumerStore::WriteWithCapture(
    const std::function<absl::Status(pg::Connection*)>& write, bool reconcile) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  if (auto locked = (*conn)->Exec(kApprovalsLock); !locked.ok()) return locked.status();
  // Session-level lock: released here on every path. Should the process
  // die, PostgreSQL releases it with the session.
  struct Unlock {
    pg::Connection* c;
    ~Unlock() { (void)c->Exec(kApprovalsUnlock); }
  } unlock{conn->get()};

  auto before = CapturedDocTypes(conn->get());
  if (!before.ok()) return before.status();
  auto tx = pg::Transaction::Begin(conn->get());
  if (!tx.ok()) return tx.status();
  if (absl::Status s = write(conn->get()); !s.ok()) return s;  // rolls back
  auto after = CapturedDocTypes(conn->get());  // sees this transaction's writes
  if (!after.ok()) return after.status();

  std::set<std::string> both = *before;
  both.insert(after->begin(), after->end());
  std::unique_ptr<pg::ConnectionPool::Lease> ddl;
  auto sync = [&](const std::set<std::string>& doctypes) -> absl::Status {
    if (ddl == nullptr) {
      auto lease = pool_->Acquire();
      if (!lease.ok()) return lease.status();
      ddl = std::make_unique<pg::ConnectionPool::Lease>(std::move(*lease));
    }
    return sync_triggers_(ddl->get(), doctypes);
  };
  // New approvals: triggers first, on another connection, committed before
  // the approvals are. Dying after this sync and before our COMMIT leaves
  // triggers without an approval: captured rows nobody pulls, dropped again
  // on the next start.
  if (both.size() != before->size()) {
    if (absl::Status s = sync(both); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot install capture for DocType(s) [",
          absl::StrJoin(both, ", "), "]; nothing was changed: ", s.message()));
    }
  }
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  // Withdrawn approvals: triggers go only after the commit, so no committed
  // approval is ever without its trigger. Dying here keeps them until the
  // next start.
  if (reconcile || both.size() != after->size()) {
    if (absl::Status s = sync(*after); !s.ok()) {
      if (reconcile) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot install capture for the approved DocType(s) [",
            absl::StrJoin(*after, ", "), "]: ", s.message()));
      }
      spdlog::warn(
          "approvals changed, but removing capture triggers failed (they stay "
          "until the next start or approval change): {}",
          std::string(s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ConsumerStore::WriteSubscriptions(pg::Connection* conn,
                                               const ConsumerRegistration& reg) {
  // All statements run in the caller's transaction: a crash between them
  // rolls every one back.
  auto updated = conn->Exec(
      "UPDATE es_producer.consumer SET notify_address = $2, notify_token = $3"
      " WHERE site = $1",
      {reg.site, reg.notify_address, reg.notify_token});
  if (!updated.ok()) return updated.status();

  std::vector<std::string> asked;
  for (const SubscriptionRequest& d : reg.doctypes) {
    asked.push_back(d.doctype);
    const ConsumerDocTypeConfig* cfg = ConfigFor(reg.site, d.doctype);
    // A config entry decides the status (and adds its condition); without
    // one, a new row is pending and an existing row keeps its status, except
    // that a status the config used to decide falls back to pending.
    auto upserted = conn->Exec(
        "INSERT INTO es_producer.consumer_doctype AS d"
        " (site, doctype, status, condition, producer_condition, unsubscribed,"
        "  approved_by_config)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (site, doctype) DO UPDATE SET"
        "  condition = EXCLUDED.condition,"
        "  producer_condition = EXCLUDED.producer_condition,"
        "  unsubscribed = EXCLUDED.unsubscribed,"
        "  status = CASE WHEN EXCLUDED.approved_by_config THEN EXCLUDED.status"
        "                WHEN d.approved_by_config THEN 'pending'"
        "                ELSE d.status END,"
        "  approved_by_config = EXCLUDED.approved_by_config,"
        "  updated_at = now()",
        {reg.site, d.doctype,
         cfg ? StatusText(cfg->status) : std::string("pending"), d.condition,
         cfg ? cfg->condition : std::string(), d.unsubscribe, cfg != nullptr});
    if (!upserted.ok()) return upserted.status();
  }
  auto dropped = conn->Exec(
      "UPDATE es_producer.consumer_doctype SET unsubscribed = true,"
      " updated_at = now()"
      " WHERE site = $1 AND NOT unsubscribed"
      "   AND doctype NOT IN (SELECT jsonb_array_elements_text($2::jsonb))",
      {reg.site, JsonArray(asked)});
  return dropped.status();
}

absl::StatusOr<RegisterResult> ConsumerStore::Register(const ConsumerRegistration& reg) {
  if (reg.site.empty()) return absl::InvalidArgumentError("consumer_site: required");
  RETURN_IF_ERROR(Validate(reg));
  RegisterResult result;
  bool existed = false;
  absl::Status written = WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    auto found = conn->Exec(
        "SELECT api_key, notify_token FROM es_producer.consumer WHERE site = $1"
        " FOR UPDATE",
        {reg.site});
    if (!found.ok()) return found.status();
    if (found->rows() > 0) {
      existed = true;
      bool same_key = found->Get(0, 0) == reg.api_key;
      if (!same_key || !SecretEquals(found->Get(0, 1), reg.notify_token)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "consumer site ", Quote(reg.site), " is already registered with ",
            same_key ? "another notify token" : "another api key",
            ": if this deployment replaces the registered one, call "
            "UpdateSubscription with the new token; otherwise give this "
            "consumer a site name of its own"));
      }
    } else {
      auto inserted = conn->Exec(
          "INSERT INTO es_producer.consumer (site, api_key) VALUES ($1, $2)",
          {reg.site, reg.api_key});
      if (!inserted.ok()) return inserted.status();
    }
    if (absl::Status s = WriteSubscriptions(conn, reg); !s.ok()) return s;
    auto position = LogPosition(conn);
    if (!position.ok()) return position.status();
    result.watermark = *position;
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto rows = ReadRows(conn->get(), reg.site);
  if (!rows.ok()) return rows.status();
  result.subscriptions = std::move(*rows);
  spdlog::info("consumer {} {} (notify {}), watermark {}; {}", reg.site,
               existed ? "registered again" : "registered",
               reg.notify_address.empty() ? "off" : reg.notify_address,
               result.watermark, Describe(result.subscriptions));
  return result;
}

absl::StatusOr<std::vector<SubscriptionRow>> ConsumerStore::UpdateSubscription(
    const ConsumerRegistration& reg) {
  if (reg.site.empty()) return absl::InvalidArgumentError("consumer_site: required");
  RETURN_IF_ERROR(Validate(reg));
  absl::Status written = WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    auto found = conn->Exec(
        "SELECT 1 FROM es_producer.consumer WHERE site = $1 FOR UPDATE", {reg.site});
    if (!found.ok()) return found.status();
    if (found->rows() == 0) {
      return absl::NotFoundError(absl::StrCat(
          "consumer site ", Quote(reg.site),
          " is not registered; call RegisterConsumer first"));
    }
    return WriteSubscriptions(conn, reg);
  });
  if (!written.ok()) return written;
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto rows = ReadRows(conn->get(), reg.site);
  if (!rows.ok()) return rows.status();
  spdlog::info("consumer {} updated its subscription (notify {}); {}", reg.site,
               reg.notify_address.empty() ? "off" : reg.notify_address,
               Describe(*rows));
  return rows;
}

absl::StatusOr<SubscriptionRow> ConsumerStore::SetStatus(absl::string_view site,
                                                         absl::string_view doctype,
                                                         SubscriptionStatus status) {
  SubscriptionRow row;
  std::string was;
  absl::Status written = WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    auto found = conn->Exec(
        absl::StrCat("SELECT ", kRowColumns,
                     " FROM es_producer.consumer_doctype"
                     " WHERE site = $1 AND doctype = $2 FOR UPDATE"),
        {site, doctype});
    if (!found.ok()) return found.status();
    if (found->rows() == 0) {
      auto consumer =
          conn->Exec("SELECT 1 FROM es_producer.consumer WHERE site = $1", {site});
      if (!consumer.ok()) return consumer.status();
      if (consumer->rows() == 0) {
        return absl::NotFoundError(
            absl::StrCat("no consumer site ", Quote(site), " is registered"));
      }
      return absl::NotFoundError(absl::StrCat("consumer site ", Quote(site),
                                              " has not asked for DocType ",
                                              Quote(doctype)));
    }
    row = RowAt(*found, 0);
    if (row.from_config) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the status of consumer site ", Quote(site), "'s subscription to ",
          Quote(doctype), " is set by the config (producer.consumers, site ",
          Quote(site), "); change it there"));
    }
    was = StatusText(row.status);
    auto updated = conn->Exec(
        "UPDATE es_producer.consumer_doctype SET status = $3, updated_at = now()"
        " WHERE site = $1 AND doctype = $2",
        {site, doctype, StatusText(status)});
    if (!updated.ok()) return updated.status();
    row.status = status;
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  spdlog::info("consumer {} subscription to {}: {} -> {}", std::string(site),
               std::string(doctype), was, StatusText(status));
  return row;
}

absl::StatusOr<ConsumerListing> ConsumerStore::List() {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  // One snapshot for the whole listing.
  auto tx = pg::Transaction::Begin(conn->get(), "ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (!tx.ok()) return tx.status();
  ConsumerListing listing;
  auto position = LogPosition(conn->get());
  if (!position.ok()) return position.status();
  listing.log_position = *position;
  auto consumers = (*conn)->Exec(
      "SELECT c.site, c.notify_address, c.acknowledged_seq,"
      "  coalesce(to_char(c.last_pull_at AT TIME ZONE 'UTC',"
      "                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''),"
      "  (SELECT count(*) FROM es_producer.update_log u"
      "    WHERE u.seq > c.acknowledged_seq"
      "      AND u.origin IS DISTINCT FROM c.site"
      "      AND u.doctype IN (SELECT d.doctype FROM es_producer.consumer_doctype d"
      "                         WHERE d.site = c.site AND d.status = 'approved'"
      "                           AND NOT d.unsubscribed))"
      " FROM es_producer.consumer c ORDER BY c.site");
  if (!consumers.ok()) return consumers.status();
  std::map<std::string, size_t> index;
  for (int i = 0; i < consumers->rows(); ++i) {
    ConsumerSummary c;
    c.site = std::string(consumers->Get(i, 0));
    c.notify_address = std::string(consumers->Get(i, 1));
    c.acknowledged_seq = consumers->GetInt64(i, 2);
    c.last_pull_at = std::string(consumers->Get(i, 3));
    c.lag_entries = consumers->GetInt64(i, 4);
    index[c.site] = listing.consumers.size();
    listing.consumers.push_back(std::move(c));
  }
  auto rows = (*conn)->Exec(absl::StrCat("SELECT site, ", kRowColumns,
                                         " FROM es_producer.consumer_doctype"
                                         " ORDER BY site, doctype"));
  if (!rows.ok()) return rows.status();
  for (int i = 0; i < rows->rows(); ++i) {
    auto it = index.find(std::string(rows->Get(i, 0)));
    if (it == index.end()) continue;
    SubscriptionRow row;
    row.doctype = std::string(rows->Get(i, 1));
    row.status = ParseStatus(rows->Get(i, 2));
    row.condition = std::string(rows->Get(i, 3));
    row.producer_condition = std::string(rows->Get(i, 4));
    row.unsubscribed = rows->GetBool(i, 5);
    row.from_config = rows->GetBool(i, 6);
    listing.consumers[it->second].subscriptions.push_back(std::move(row));
  }
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return listing;
}

absl::Status ConsumerStore::ApplyConfig() {
  int changed = 0;
  absl::Status written = WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    auto rows = conn->Exec(absl::StrCat("SELECT site, ", kRowColumns,
                                        " FROM es_producer.consumer_doctype"
                                        " ORDER BY site, doctype FOR UPDATE"));
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      std::string site(rows->Get(i, 0));
      std::string doctype(rows->Get(i, 1));
      SubscriptionStatus status = ParseStatus(rows->Get(i, 2));
      std::string producer_condition(rows->Get(i, 4));
      bool from_config = rows->GetBool(i, 6);
      if (config_->registry.Find(doctype) == nullptr &&
          status == SubscriptionStatus::kApproved) {
        spdlog::warn(
            "consumer {} is approved for DocType {}, which the config no longer "
            "defines; it is not captured",
            site, doctype);
      }
      const ConsumerDocTypeConfig* cfg = ConfigFor(site, doctype);
      SubscriptionStatus want_status = status;
      std::string want_condition = producer_condition;
      if (cfg != nullptr) {
        want_status = cfg->status;
        want_condition = cfg->condition;
      } else if (from_config) {
        want_status = SubscriptionStatus::kPending;  // config entry withdrawn
        want_condition.clear();
      } else {
        continue;
      }
      if (want_status == status && want_condition == producer_condition &&
          from_config == (cfg != nullptr)) {
        continue;
      }
      // In the caller's transaction: a crash rolls back every row.
      auto updated = conn->Exec(
          "UPDATE es_producer.consumer_doctype SET status = $3,"
          " producer_condition = $4, approved_by_config = $5, updated_at = now()"
          " WHERE site = $1 AND doctype = $2",
          {site, doctype, StatusText(want_status), want_condition, cfg != nullptr});
      if (!updated.ok()) return updated.status();
      ++changed;
      spdlog::info("consumer {} subscription to {}: {} -> {} ({})", site, doctype,
                   StatusText(status), StatusText(want_status),
                   cfg ? "config pre-approval" : "config entry removed");
    }
    return absl::OkStatus();
  }, /*reconcile=*/true);
  if (!written.ok()) return written;
  spdlog::info("config pre-approvals applied at start: {} row(s) changed",
               changed);
  return absl::OkStatus();
}

}  // namespace eventstream
