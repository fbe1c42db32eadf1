#include "services/consumer/consumer_service.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/retention_plan.h"
#include "services/consumer/producer_store.h"
#include "services/consumer/resnapshot.h"
#include "services/consumer/sync_log_trimmer.h"
#include "services/common/tls.h"
#include "services/common/update_type.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr int kDefaultSyncLogLimit = 100;
constexpr int kMaxSyncLogLimit = 1000;

// The sync log, newest first: $1 producer, $2 doctype, $3 status ('' = any),
// $4 before this id (0 = newest), $5 how many.
constexpr pg::Query kListSyncLog{
    "consumer_list_sync_log",
    "SELECT id, producer, seq, doctype, docname, update_type, status,"
    " coalesce(error, '') AS error, note, coalesce(data::text, '') AS data,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at,"
    " coalesce(parked_behind, 0) AS parked_behind, local_doctype,"
    " coalesce(local_docname, '') AS local_docname"
    " FROM es_consumer.sync_log"
    " WHERE ($1 = '' OR producer = $1) AND ($2 = '' OR doctype = $2)"
    "   AND ($3 = '' OR status = $3) AND ($4::bigint = 0 OR id < $4::bigint)"
    " ORDER BY id DESC LIMIT $5::int"};
constexpr pg::Query kSyncLogProducer{
    "consumer_service_sync_log_producer",
    "SELECT producer FROM es_consumer.sync_log WHERE id = $1"};


std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

v1::SyncStatus SyncStatusFromText(const std::string& status) {
  if (status == "Synced") return v1::SYNC_STATUS_SYNCED;
  if (status == "Failed") return v1::SYNC_STATUS_FAILED;
  if (status == "Parked") return v1::SYNC_STATUS_PARKED;
  return v1::SYNC_STATUS_UNSPECIFIED;
}

std::string SyncStatusText(v1::SyncStatus status) {
  switch (status) {
    case v1::SYNC_STATUS_SYNCED: return "Synced";
    case v1::SYNC_STATUS_FAILED: return "Failed";
    case v1::SYNC_STATUS_PARKED: return "Parked";
    default: return "";
  }
}

void ToProto(const SyncLogRow& row, v1::SyncLogEntry* out) {
  out->set_id(row.id);
  out->set_producer(row.producer);
  out->set_seq(row.seq);
  out->set_doctype(row.doctype);
  out->set_docname(row.docname);
  out->set_update_type(UpdateTypeFromName(row.update_type));
  out->set_status(SyncStatusFromText(row.status));
  out->set_error(row.error);
  out->set_data_json(row.data);
  out->set_created_at(row.created_at);
  out->set_parked_behind(row.parked_behind);
  out->set_local_docname(row.local_docname);
  out->set_note(row.note);
  out->set_local_doctype(row.local_doctype);
}

void ToProto(const std::string& producer, const PullOutcome& outcome, v1::PullResult* out) {
  out->set_producer(producer);
  out->set_pulled(outcome.pulled);
  out->set_synced(outcome.synced);
  out->set_failed(outcome.failed);
  out->set_parked(outcome.parked);
  out->set_last_seq(outcome.last_seq);
  if (!outcome.status.ok()) out->set_error(std::string(outcome.status.message()));
}

absl::Time Deadline(const grpc::ServerContext* context) {
  absl::Time deadline = absl::FromChrono(context->deadline());
  // No client deadline: do not wait forever for a stuck pull.
  return std::min(deadline, absl::Now() + absl::Minutes(10));
}

// Owns the pullers and the RPC handlers. Pullers start before the server
// accepts RPCs and stop in Stop(), after the server stopped.
class ConsumerInstance : public ServiceInstance {
 public:
  ConsumerInstance(ConsumerService::Deps deps, std::vector<std::unique_ptr<Puller>> pullers)
      : config_(deps.config),
        metrics_(deps.metrics),
        pullers_(std::move(pullers)),
        trimmer_(deps.pool, TrimmerOptions(*deps.config->consumer, deps.metrics.get())),
        service_(std::move(deps)) {
    for (auto& p : pullers_) p->Start();
    trimmer_.Start();
  }
  ~ConsumerInstance() override { Stop(); }
  std::vector<grpc::Service*> services() override { return {&service_}; }
  const metrics::Registry* metrics() override {
    return metrics_ ? &metrics_->registry : nullptr;
  }
  void Stop() override {
    for (auto& p : pullers_) p->Stop();
    trimmer_.Stop();
  }

 private:
  static SyncLogTrimmer::Options TrimmerOptions(const ConsumerConfig& consumer,
                                                ConsumerMetrics* metrics) {
    SyncLogTrimmer::Options options;
    options.retention = consumer.sync_log_retention;
    options.interval = SyncLogTrimInterval(consumer.sync_log_retention);
    if (metrics != nullptr) options.trimmed = &metrics->sync_log_trimmed->WithLabels({});
    return options;
  }

  std::shared_ptr<const Config> config_;  // the pullers refer to it
  std::shared_ptr<ConsumerMetrics> metrics_;  // so do they
  std::vector<std::unique_ptr<Puller>> pullers_;
  SyncLogTrimmer trimmer_;
  ConsumerService service_;
};

}  // namespace

grpc::Status ConsumerService::Notify(grpc::ServerContext* context,
                                     const v1::NotifyRequest* request,
                                     v1::NotifyResponse*) {
  auto principal = deps_.auth->Authorize(context, {Role::kProducer});
  if (!principal.ok()) return ToGrpc(principal.status());
  const std::string& producer =
      request->producer().empty() ? principal->key : request->producer();
  auto it = deps_.pullers.find(producer);
  if (it == deps_.pullers.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no producer \"", producer,
                                     "\" in this consumer's consumer.producers"));
  }
  if (producer != principal->key) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("the notify token of producer \"", principal->key,
                                     "\" cannot notify for producer \"", producer, "\""));
  }
  if (deps_.metrics) deps_.metrics->NotePosition(producer, request->log_position());
  it->second->Notify();
  return grpc::Status::OK;
}

grpc::Status ConsumerService::ListProducers(grpc::ServerContext* context,
                                            const v1::ListProducersRequest*,
                                            v1::ListProducersResponse* response) {
  ES_AUTHORIZE(*deps_.auth, context, Role::kAdmin);
  auto conn = deps_.pool->Acquire();
  if (!conn.ok()) return AnswerRpc("Consumer.ListProducers", conn.status());
  for (const EventProducerConfig& p : deps_.config->consumer->producers) {
    v1::ProducerInfo* info = response->add_producers();
    info->set_name(p.name);
    info->set_url(p.url);
    auto stored = LoadProducer(conn->get(), p.name);
    if (!stored.ok()) return AnswerRpc("Consumer.ListProducers", stored.status());
    std::map<std::string, v1::SubscriptionStatus> statuses;
    if (stored->has_value()) {
      for (const ProducerDocTypeRow& r : (*stored)->doctypes) statuses[r.doctype] = r.status;
    }
    auto desired = DesiredDocTypes(*deps_.config->consumer, p);
    if (!desired.ok()) return AnswerRpc("Consumer.ListProducers", desired.status());
    for (const ProducerDocTypeRow& r : *desired) {
      v1::ProducerDocType* d = info->add_doctypes();
      d->set_doctype(r.doctype);
      d->set_local_doctype(r.local_doctype);
      d->set_use_same_name(r.use_same_name);
      d->set_condition(r.condition);
      d->set_mapping(r.mapping);
      d->set_unsubscribe(r.unsubscribe);
      auto it = statuses.find(r.doctype);
      d->set_status(it == statuses.end() ? v1::SUBSCRIPTION_STATUS_UNSPECIFIED : it->second);
    }
    auto watermark = LoadWatermark(conn->get(), p.name);
    if (!watermark.ok()) return AnswerRpc("Consumer.ListProducers", watermark.status());
    info->set_last_seq(*watermark);
    auto puller = deps_.pullers.find(p.name);
    if (puller != deps_.pullers.end()) {
      PullerState state = puller->second->State();
      info->set_reachable(state.reachable);
      info->set_last_error(state.last_error);
      info->set_last_pull_at(Rfc3339(state.last_pull_at));
      info->set_consecutive_failures(state.consecutive_failures);
      for (v1::ProducerDocType& d : *info->mutable_doctypes()) {
        auto sync = state.initial_sync.find(d.doctype());
        if (sync != state.initial_sync.end()) *d.mutable_initial_sync() = sync->second;
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status ConsumerService::PullNow(grpc::ServerContext* context,
                                      const v1::PullNowRequest* request,
                                      v1::PullNowResponse* response) {
  ES_AUTHORIZE(*deps_.auth, context, Role::kAdmin);
  std::vector<std::pair<Puller*, int64_t>> tickets;
  if (request->producer().empty()) {
    for (const EventProducerConfig& p : deps_.config->consumer->producers) {
      Puller* puller = deps_.pullers.at(p.name);
      tickets.emplace_back(puller, puller->RequestPull());
    }
  } else {
    auto it = deps_.pullers.find(request->producer());
    if (it == deps_.pullers.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no producer \"", request->producer(),
                                       "\" in consumer.producers (ListProducers lists them)"));
    }
    tickets.emplace_back(it->second, it->second->RequestPull());
  }
  const absl::Time deadline = Deadline(context);
  for (auto& [puller, ticket] : tickets) {
    auto outcome =
        puller->WaitForPull(ticket, deadline, [context] { return context->IsCancelled(); });
    if (!outcome.ok()) return AnswerRpc("Consumer.PullNow", outcome.status());
    if (!request->producer().empty() && !outcome->status.ok()) {
      return AnswerRpc("Consumer.PullNow", outcome->status);
    }
    ToProto(puller->name(), *outcome, response->add_results());
  }
  return grpc::Status::OK;
}

grpc::Status ConsumerService::Resnapshot(grpc::ServerContext* context,
                                         const v1::ResnapshotRequest* request,
                                         v1::ResnapshotResponse* response) {
  ES_AUTHORIZE(*deps_.auth, context, Role::kAdmin);
  auto it = deps_.pullers.find(request->producer());
  if (it == deps_.pullers.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no producer \"", request->producer(),
                                     "\" in consumer.producers (ListProducers lists them)"));
  }
  if (request->doctype().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "doctype: required");
  auto conn = deps_.pool->Acquire();
  if (!conn.ok()) return AnswerRpc("Consumer.Resnapshot", conn.status());
  auto answer = RunResnapshot(*deps_.config, conn->get(), it->second->link(), request->doctype(),
                              request->dry_run());
  if (!answer.ok()) return AnswerRpc("Consumer.Resnapshot", answer.status());
  if (!request->dry_run()) {
    google::protobuf::RepeatedPtrField<v1::DocTypeSubscription> heard;
    *heard.Add() = answer->subscription();
    it->second->HeardSubscriptions(heard);
    spdlog::info("producer {}: initial sync of {} asked for again (Resnapshot)",
                 request->producer(), request->doctype());
  }
  *response = *std::move(answer);
  return grpc::Status::OK;
}

grpc::Status ConsumerService::ListSyncLog(grpc::ServerContext* context,
                                          const v1::ListSyncLogRequest* request,
                                          v1::ListSyncLogResponse* response) {
  ES_AUTHORIZE(*deps_.auth, context, Role::kAdmin);
  if (request->limit() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "limit: expected 0 (default 100) or a positive number");
  }
  if (request->before_id() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "before_id: expected 0 (newest) or a sync log id");
  }
  const int limit = request->limit() == 0 ? kDefaultSyncLogLimit
                                          : std::min(request->limit(), kMaxSyncLogLimit);
  auto conn = deps_.pool->Acquire();
  if (!conn.ok()) return AnswerRpc("Consumer.ListSyncLog", conn.status());
  auto r = (*conn)->Exec(
      kListSyncLog, {request->producer(), request->doctype(), SyncStatusText(request->status()),
                     static_cast<int64_t>(request->before_id()), limit});
  if (!r.ok()) {
    if (pg::SqlStateOf(r.status()) == "42P01") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "es_consumer.sync_log does not exist: this build has no sync "
                          "log migration yet");
    }
    return AnswerRpc("Consumer.ListSyncLog", r.status());
  }
  for (int i = 0; i < r->rows(); ++i) ToProto(ReadSyncLogRow(*r, i), response->add_entries());
  return grpc::Status::OK;
}

grpc::Status ConsumerService::Resync(grpc::ServerContext* context,
                                     const v1::ResyncRequest* request,
                                     v1::ResyncResponse* response) {
  ES_AUTHORIZE(*deps_.auth, context, Role::kAdmin);
  if (request->id() <= 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "id: expected a sync log id (ListSyncLog shows them)");
  }
  std::string producer;
  {
    auto conn = deps_.pool->Acquire();
    if (!conn.ok()) return AnswerRpc("Consumer.Resync", conn.status());
    auto r = (*conn)->Exec(kSyncLogProducer, {static_cast<int64_t>(request->id())});
    if (!r.ok()) return AnswerRpc("Consumer.Resync", r.status());
    if (r->rows() == 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no sync log row ", request->id()));
    }
    producer = std::string(r->Get(0, "producer"));
  }
  auto it = deps_.pullers.find(producer);
  if (it == deps_.pullers.end()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("sync log row ", request->id(), " is from producer \"",
                                     producer, "\", which is not in consumer.producers"));
  }
  auto rows = it->second->Resync(request->id());
  if (!rows.ok()) return AnswerRpc("Consumer.Resync", rows.status());
  for (const SyncLogRow& row : *rows) ToProto(row, response->add_results());
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateConsumer(const Config& config) {
  ASSIGN_OR_RETURN(std::vector<Credential> credentials,
                   ResolveCredentials(config.consumer->api_keys));
  for (size_t i = 0; i < config.consumer->producers.size(); ++i) {
    const EventProducerConfig& p = config.consumer->producers[i];
    if (config.consumer->FindApiKey(p.name) != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          config.source, ": consumer.producers[", i, "].name: \"", p.name,
          "\" is also a key in consumer.api_keys; a producer's name is the key its "
          "Notify calls authenticate with, so rename that api key"));
    }
    if (absl::Status s = DesiredDocTypes(*config.consumer, p).status(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config.source, ": ", s.message()));
    }
  }
  auto auth = std::make_shared<Authenticator>(std::move(credentials));

  ConsumerService::Deps deps;
  deps.auth = auth;
  deps.config = std::make_shared<const Config>(config);
  deps.pool = std::make_shared<pg::ConnectionPool>(config.database.url,
                                                   "eventstream-consumer");
  deps.metrics = std::make_shared<ConsumerMetrics>(deps.pool);
  const ConsumerConfig& consumer = *deps.config->consumer;

  std::vector<std::unique_ptr<Puller>> pullers;
  {
    ASSIGN_OR_RETURN(auto conn, deps.pool->Acquire());
    for (const EventProducerConfig& p : consumer.producers) {
      ASSIGN_OR_RETURN(std::string token, EnsureProducer(conn.get(), p));
      auth->Put(Credential{p.name, token, Role::kProducer});
      ASSIGN_OR_RETURN(std::string secret, ResolveSecret(p.api_secret));
      Puller::Options options;
      options.database_url = config.database.url;
      options.site = config.site.name;
      options.notify_address = consumer.advertise;
      options.poll_interval = consumer.poll_interval;
      options.metrics = deps.metrics.get();
      ProducerLink::Options link_options;
      link_options.max_message_bytes = int64_t{consumer.max_message_mb} * 1024 * 1024;
      ASSIGN_OR_RETURN(link_options.transport,
                       MakeClientTransport(p.tls ? &*p.tls : nullptr));
      if (!p.tls && !IsLoopbackAddress(p.url)) {
        spdlog::warn("producer {}: connecting to {} WITHOUT TLS: this site's API key and "
                     "the documents cross the network in the clear; set tls under its "
                     "entry in consumer.producers",
                     p.name, p.url);
      }
      if (deps.metrics) {
        link_options.dependency_calls = &deps.metrics->dependency_calls->WithLabels({p.name});
      }
      auto link =
          std::make_unique<ProducerLink>(p.name, p.url, p.api_key, secret, link_options);
      pullers.push_back(
          std::make_unique<Puller>(*deps.config, p, std::move(link), std::move(options)));
      deps.pullers[p.name] = pullers.back().get();
    }
  }
  spdlog::info("following {} producer(s); notify address {}", pullers.size(),
               consumer.advertise.empty() ? std::string("(none: polling only)")
                                          : consumer.advertise);
  return std::unique_ptr<ServiceInstance>(
      new ConsumerInstance(std::move(deps), std::move(pullers)));
}

}  // namespace eventstream
