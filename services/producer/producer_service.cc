#include "services/producer/producer_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/producer/assembler.h"
#include "services/common/tls.h"
#include "services/common/update_type.h"
#include "libsync/rules/batch_budget.h"
#include "libsync/base/status_macros.h"
#include "services/producer/answer_size.h"
#include "services/producer/capture.h"
#include "services/producer/retention.h"
#include "services/producer/wal_capture.h"
#include "services/producer/wal_capture_store.h"
#include "libsync/rules/retention_plan.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

v1::SubscriptionStatus ToProto(SubscriptionStatus status) {
  switch (status) {
    case SubscriptionStatus::kPending: return v1::SUBSCRIPTION_STATUS_PENDING;
    case SubscriptionStatus::kApproved: return v1::SUBSCRIPTION_STATUS_APPROVED;
    case SubscriptionStatus::kRejected: return v1::SUBSCRIPTION_STATUS_REJECTED;
  }
  return v1::SUBSCRIPTION_STATUS_UNSPECIFIED;
}

void ToProto(const SubscriptionRow& row, v1::DocTypeSubscription* out) {
  out->set_doctype(row.doctype);
  out->set_status(ToProto(row.status));
  out->set_condition(row.condition);
  out->set_unsubscribed(row.unsubscribed);
  out->set_producer_condition(row.producer_condition);
  out->set_from_config(row.from_config);
  v1::InitialSync* sync = out->mutable_initial_sync();
  sync->set_state(!row.sync_state.empty() ? row.sync_state
                                          : (row.skip_initial_sync ? "off" : ""));
  sync->set_documents_done(row.sync_done);
  sync->set_documents_total(row.sync_total);
}

template <typename Request>
ConsumerRegistration FromProto(const Request& request, const std::string& key) {
  ConsumerRegistration reg;
  reg.site = request.consumer_site();
  reg.api_key = key;
  reg.notify_address = request.notify_address();
  reg.notify_token = request.notify_token();
  for (const v1::SubscriptionRequest& d : request.doctypes())
    reg.doctypes.push_back({d.doctype(), d.condition(), d.unsubscribe(), d.skip_initial_sync()});
  return reg;
}

// What a writer of the log (capture, initial sync) logged goes into the
// log tail at once (null tail: nowhere).
RawChangeStore::LoggedSink TailSink(LogTail* tail) {
  if (tail == nullptr) return nullptr;
  return [tail](int64_t prev_end, std::vector<std::shared_ptr<const LogRecord>> records) {
    tail->Append(prev_end, std::move(records));
  };
}

InitialSyncWriter::Options InitialSyncOptions(LogTail* tail) {
  InitialSyncWriter::Options options;
  options.on_logged = TailSink(tail);
  return options;
}

AssemblerLoop::Options AssemblerLoopOptions(const std::string& database_url) {
  AssemblerLoop::Options options;
  options.database_url = database_url;
  return options;
}

Assembler::Options AssemblerOptions(ProducerMetrics* metrics, LogTail* tail) {
  Assembler::Options options;
  options.on_logged = TailSink(tail);
  if (metrics != nullptr) {
    options.on_committed = [captured = metrics->captured](const std::string& doctype,
                                                          const std::string& update_type,
                                                          int count) {
      captured->WithLabels({doctype, update_type}).Increment(count);
    };
    options.on_failed = [errors = metrics->capture_errors](const CaptureFailure& f) {
      errors->WithLabels({f.doctype}).Increment();
    };
  }
  return options;
}

// Owns the RPC handlers and the assembler thread. The assembler starts
// before the server accepts RPCs and stops in Stop(), after the server
// stopped; AssemblerLoop::Stop waits for the pass in flight, which commits
// or rolls back as a whole (assembler.h), so stopping mid-pass loses nothing.
class ProducerInstance : public ServiceInstance {
 public:
  // The assembler's passes signal the notifier; the notifier coalesces, so a
  // burst of writes becomes a handful of Notify calls per consumer.
  ProducerInstance(ProducerService::Deps deps, const Config& config)
      : notifier_(deps.notifier),
        webhooks_(deps.webhooks),
        streams_(deps.streams),
        metrics_(deps.metrics),
        config_(deps.config),
        feed_(deps.feed),
        service_(std::move(deps)),
        assembler_(config.registry, AssemblerOptions(metrics_.get(), tail())),
        initial_sync_(config_.get(), InitialSyncOptions(tail())),
        loop_(&assembler_, AssemblerLoopOptions(config.database.url), LoggedHook(),
              &initial_sync_),
        retention_(RetentionLoop::Options{config.database.url, config.producer->retention,
                                          metrics_.get()}) {
    if (config.producer->capture == CaptureMode::kWal) {
      // The assembler loop stays: it drains raw rows left from trigger mode
      // (none arrive: no trigger is installed) and writes initial syncs.
      wal_capture_ = std::make_unique<WalCapture>(
          &config_->registry,
          WalCaptureStore(config.producer->wal_slot, config.producer->wal_publication),
          AssemblerOptions(metrics_.get(), tail()));
      WalCaptureLoop::Options wal_options;
      wal_options.database_url = config.database.url;
      wal_loop_ = std::make_unique<WalCaptureLoop>(wal_capture_.get(), std::move(wal_options),
                                                   LoggedHook());
      WalCaptureLoop* wal = wal_loop_.get();
      initial_sync_.SetWalWait(
          {[wal] { return wal->Streaming(); },
           [wal](uint64_t lsn, absl::Duration timeout) { return wal->WaitCaptured(lsn, timeout); }});
    }
    if (feed_) {
      // An acknowledgment that lets an initial sync's next chunk go is
      // recorded at once (a stream may otherwise record it up to a second
      // later) and wakes the loop (libsync/rules/sync_window.h).
      feed_->SetAckWaiter(
          {[this](absl::string_view site, int64_t acknowledged) {
             return initial_sync_.Awaits(site, acknowledged);
           },
           [this](absl::string_view site, int64_t acknowledged) {
             if (initial_sync_.Unblocks(site, acknowledged)) loop_.Wake();
           }});
    }
    if (notifier_) notifier_->Start();
    if (webhooks_) webhooks_->Start();
    loop_.Start();
    if (wal_loop_) wal_loop_->Start();
    retention_.Start();
  }
  ~ProducerInstance() override { Stop(); }
  const metrics::Registry* metrics() override {
    return metrics_ ? &metrics_->registry : nullptr;
  }
  std::vector<grpc::Service*> services() override {
    std::vector<grpc::Service*> out = {&service_};
    if (webhooks_) out.push_back(webhooks_->service());
    return out;
  }
  // Before the server drains: open streams end now, not after its grace.
  void Draining() override {
    if (streams_) streams_->Close();
  }
  void Stop() override {
    if (streams_) streams_->Close();
    retention_.Stop();
    if (wal_loop_) wal_loop_->Stop();
    loop_.Stop();
    if (notifier_) notifier_->Stop();
    if (webhooks_) webhooks_->Stop();
  }

 private:
  // Where the log's writers put what they logged at once (null: no tail).
  LogTail* tail() const { return feed_ ? feed_->tail() : nullptr; }

  std::shared_ptr<Notifier> notifier_;
  std::shared_ptr<WebhookRuntime> webhooks_;
  std::shared_ptr<StreamHub> streams_;
  std::shared_ptr<ProducerMetrics> metrics_;
  std::shared_ptr<const Config> config_;  // outlives initial_sync_
  std::shared_ptr<UpdateFeed> feed_;      // outlives the capture loops (its tail)
  ProducerService service_;
  Assembler assembler_;
  InitialSyncWriter initial_sync_;
  AssemblerLoop loop_;
  RetentionLoop retention_;  // update log retention (retention.h)
  std::unique_ptr<WalCapture> wal_capture_;  // capture: wal only
  std::unique_ptr<WalCaptureLoop> wal_loop_;

  // What runs after entries were logged, by either capture path.
  std::function<void(int64_t)> LoggedHook() const {
    return [notifier = notifier_, webhooks = webhooks_, streams = streams_](int64_t last_seq) {
      if (streams) streams->Advance(last_seq);  // open streams first: they send at once
      // A consumer streaming from this replica needs no Notify (one call per
      // consumer per logged batch, N of them at fan-out N). If its stream
      // ends just now, it pulls when it opens the next one.
      if (notifier) notifier->SignalAll(last_seq, streams ? streams->open_sites()
                                                          : std::set<std::string>{});
      if (webhooks) webhooks->Wake();
    };
  }
};

}  // namespace

absl::Status ProducerService::TakeSlot(const std::string& key,
                                       std::optional<CallLimiter::Slot>* slot) {
  if (deps_.limiter == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(CallLimiter::Slot taken, deps_.limiter->Enter(key));
  slot->emplace(std::move(taken));
  return absl::OkStatus();
}

grpc::Status ProducerService::Check(grpc::ServerContext* context,
                                    std::initializer_list<Role> roles,
                                    std::optional<CallLimiter::Slot>* slot) {
  auto principal = deps_.auth->Authorize(context, roles);
  if (!principal.ok()) return ToGrpc(principal.status());
  return ToGrpc(TakeSlot(principal->key, slot));
}

grpc::Status ProducerService::CheckSite(grpc::ServerContext* context,
                                        const std::string& site, std::string* key,
                                        std::optional<CallLimiter::Slot>* slot) {
  auto principal = deps_.auth->Authorize(context, {Role::kConsumer});
  if (!principal.ok()) return ToGrpc(principal.status());
  if (site.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "consumer_site: required (your site name, the same as your api key)");
  }
  if (principal->key != site) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("key \"", principal->key, "\" may only act for site \"",
                                     principal->key, "\", not \"", site, "\""));
  }
  *key = principal->key;
  return ToGrpc(TakeSlot(principal->key, slot));
}

absl::StatusOr<Principal> ProducerService::Admit(grpc::ServerContext* context,
                                                 std::optional<CallLimiter::Slot>* slot) {
  ASSIGN_OR_RETURN(Principal principal, deps_.auth->Authorize(context, {Role::kConsumer}));
  RETURN_IF_ERROR(TakeSlot(principal.key, slot));
  return principal;
}

grpc::Status ProducerService::RegisterConsumer(grpc::ServerContext* context,
                                               const v1::RegisterConsumerRequest* request,
                                               v1::RegisterConsumerResponse* response) {
  std::string key;
  std::optional<CallLimiter::Slot> slot;
  if (grpc::Status s = CheckSite(context, request->consumer_site(), &key, &slot); !s.ok())
    return s;
  CallScope scope(context);
  auto result = deps_.consumers->Register(FromProto(*request, key));
  if (!result.ok()) return AnswerRpc("Producer.RegisterConsumer", result.status());
  if (deps_.notifier) RefreshNotifyTargets(deps_.consumers.get(), deps_.notifier.get());
  response->set_last_seq(result->watermark);
  for (const SubscriptionRow& row : result->subscriptions)
    ToProto(row, response->add_subscriptions());
  return grpc::Status::OK;
}

grpc::Status ProducerService::UpdateSubscription(grpc::ServerContext* context,
                                                 const v1::UpdateSubscriptionRequest* request,
                                                 v1::UpdateSubscriptionResponse* response) {
  std::string key;
  std::optional<CallLimiter::Slot> slot;
  if (grpc::Status s = CheckSite(context, request->consumer_site(), &key, &slot); !s.ok())
    return s;
  CallScope scope(context);
  auto rows = deps_.consumers->UpdateSubscription(FromProto(*request, key));
  if (!rows.ok()) return AnswerRpc("Producer.UpdateSubscription", rows.status());
  if (deps_.notifier) RefreshNotifyTargets(deps_.consumers.get(), deps_.notifier.get());
  for (const SubscriptionRow& row : *rows) ToProto(row, response->add_subscriptions());
  return grpc::Status::OK;
}

grpc::Status ProducerService::PullUpdates(grpc::ServerContext* context,
                                          const v1::PullUpdatesRequest* request,
                                          v1::PullUpdatesResponse* response) {
  std::optional<CallLimiter::Slot> slot;
  auto principal = Admit(context, &slot);
  if (!principal.ok()) return ToGrpc(principal.status());
  CallScope scope(context);
  // A consumer that pulls is up: a Notify owed to it goes now, not after
  // the backoff its downtime built up.
  if (deps_.notifier) deps_.notifier->Heard(principal->key);
  auto budget = ResolveBudget(request->max_bytes(), request->max_message_bytes());
  if (!budget.ok()) return ToGrpc(budget.status());
  // A stream of the site still running (its consumer cancelled it and now
  // catches up) ends first: pulls of one site run one at a time.
  if (deps_.streams && !deps_.streams->EndStreamOf(principal->key)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "this site's stream is still closing; try again");
  }
  const absl::Time started = absl::Now();
  auto pulled = deps_.feed->Pull(
      principal->key, request->after_seq(), request->limit(),
      request->has_acknowledged_seq() ? std::optional<int64_t>(request->acknowledged_seq())
                                      : std::nullopt,
      *budget);
  CountPull(principal->key, started, pulled);
  if (!pulled.ok()) return AnswerRpc("Producer.PullUpdates", pulled.status());
  // The log position, for the consumer's lag: without `more` the pull
  // examined everything up to the end of the log.
  int64_t position = pulled->next_after_seq;
  if (pulled->more) {
    if (auto conn = deps_.pool->Acquire(); conn.ok()) {
      auto log_position = ConsumerStore::LogPosition(conn->get());
      if (log_position.ok()) position = std::max(position, *log_position);
    }
  }
  FillAnswer(*pulled, position, response);
  return grpc::Status::OK;
}

void ProducerService::CountPull(const std::string& site, absl::Time started,
                                const absl::StatusOr<PullResult>& pulled) {
  if (!deps_.metrics) return;
  deps_.metrics->pulls->WithLabels({site}).Increment();
  deps_.metrics->pull_seconds->WithLabels({site})
      .Observe(absl::ToDoubleSeconds(absl::Now() - started));
  if (pulled.ok()) {
    deps_.metrics->pulled->WithLabels({site})
        .Increment(static_cast<double>(pulled->entries.size()));
  } else if (IsLogTrimmed(pulled.status())) {
    deps_.metrics->trimmed_pulls->WithLabels({site}).Increment();
  }
}

void ProducerService::FillAnswer(PullResult& pulled, int64_t log_position,
                                 v1::PullUpdatesResponse* response) {
  response->set_log_position(log_position);
  for (FeedEntry& e : pulled.entries) {
    v1::UpdateLogEntry* out = response->add_entries();
    out->set_seq(e.seq);
    out->set_doctype(std::move(e.doctype));
    out->set_docname(std::move(e.docname));
    out->set_update_type(UpdateTypeFromName(e.update_type));
    if (e.data_json) out->set_data_json(std::move(*e.data_json));
    out->set_origin(std::move(e.origin));
    out->set_created_at(std::move(e.created_at));
    out->set_data_omitted_bytes(e.data_omitted_bytes);
  }
  response->set_next_after_seq(pulled.next_after_seq);
  response->set_more(pulled.more);
}

grpc::Status ProducerService::BeginDocumentCall(grpc::ServerContext* context,
                                                int64_t max_message_bytes, DocumentCall* call) {
  auto principal = Admit(context, &call->slot);
  if (!principal.ok()) return ToGrpc(principal.status());
  call->scope.emplace(context);
  call->site = principal->key;
  auto budget = ResolveBudget(0, max_message_bytes);
  if (!budget.ok()) return ToGrpc(budget.status());
  call->budget = *budget;
  return grpc::Status::OK;
}

grpc::Status ProducerService::GetDocument(grpc::ServerContext* context,
                                          const v1::GetDocumentRequest* request,
                                          v1::GetDocumentResponse* response) {
  DocumentCall call;
  ES_RETURN_IF_GRPC_ERROR(BeginDocumentCall(context, request->max_message_bytes(), &call));
  auto doc = deps_.feed->GetDocument(call.site, request->doctype(),
                                     request->name(), request->with_dependencies());
  if (!doc.ok()) return AnswerRpc("Producer.GetDocument", doc.status());
  auto fitted = FitServedDocument(call.budget, request->doctype(), request->name(), *std::move(doc));
  if (!fitted.ok()) return ToGrpc(fitted.status());
  response->set_document_json(std::move(fitted->json));
  for (std::string& d : fitted->dependencies_json) response->add_dependencies_json(std::move(d));
  response->set_dependencies_truncated(fitted->dependencies_truncated);
  return grpc::Status::OK;
}

grpc::Status ProducerService::FindDocuments(grpc::ServerContext* context,
                                            const v1::FindDocumentsRequest* request,
                                            v1::FindDocumentsResponse* response) {
  DocumentCall call;
  ES_RETURN_IF_GRPC_ERROR(BeginDocumentCall(context, request->max_message_bytes(), &call));
  std::map<std::string, std::string> filters(request->filters().begin(),
                                             request->filters().end());
  auto docs = deps_.feed->FindDocuments(call.site, request->doctype(),
                                        filters, request->limit());
  if (!docs.ok()) return AnswerRpc("Producer.FindDocuments", docs.status());
  auto fitted = FitFoundDocuments(call.budget, request->doctype(), *std::move(docs));
  if (!fitted.ok()) return ToGrpc(fitted.status());
  for (std::string& d : fitted->documents) response->add_documents_json(std::move(d));
  response->set_truncated(fitted->truncated);
  return grpc::Status::OK;
}

grpc::Status ProducerService::ListVisibleDocuments(grpc::ServerContext* context,
                                                   const v1::ListVisibleDocumentsRequest* request,
                                                   v1::ListVisibleDocumentsResponse* response) {
  DocumentCall call;
  ES_RETURN_IF_GRPC_ERROR(BeginDocumentCall(context, request->max_message_bytes(), &call));
  auto page = deps_.feed->ListVisible(call.site, request->doctype(), request->after_name(),
                                      request->limit(), request->names_only());
  if (!page.ok()) return AnswerRpc("Producer.ListVisibleDocuments", page.status());
  if (request->names_only()) {
    // Names are small: a page of the producer's largest limit fits any answer.
    response->set_next_after_name(page->next_after_name);
    for (std::string& n : page->names) response->add_names(std::move(n));
    return grpc::Status::OK;
  }
  auto fitted = FitFoundDocuments(call.budget, request->doctype(), std::move(page->documents));
  if (!fitted.ok()) return ToGrpc(fitted.status());
  // Cut by size: go on after the last document sent.
  response->set_next_after_name(fitted->truncated ? page->names[fitted->documents.size() - 1]
                                                  : page->next_after_name);
  for (std::string& d : fitted->documents) response->add_documents_json(std::move(d));
  return grpc::Status::OK;
}

grpc::Status ProducerService::ListConsumers(grpc::ServerContext* context,
                                            const v1::ListConsumersRequest*,
                                            v1::ListConsumersResponse* response) {
  std::optional<CallLimiter::Slot> slot;  // Check: authorize, then take the key's slot
  ES_RETURN_IF_GRPC_ERROR(Check(context, {Role::kAdmin}, &slot));
  CallScope scope(context);
  auto listing = deps_.consumers->List();
  if (!listing.ok()) return AnswerRpc("Producer.ListConsumers", listing.status());
  response->set_log_position(listing->log_position);
  for (const ConsumerSummary& c : listing->consumers) {
    v1::ConsumerInfo* info = response->add_consumers();
    info->set_site(c.site);
    info->set_notify_address(c.notify_address);
    info->set_acknowledged_seq(c.acknowledged_seq);
    info->set_lag_entries(c.lag_entries);
    info->set_last_pull_at(c.last_pull_at);
    for (const SubscriptionRow& row : c.subscriptions) ToProto(row, info->add_subscriptions());
  }
  return grpc::Status::OK;
}

grpc::Status ProducerService::RestartSync(grpc::ServerContext* context,
                                          const v1::RestartSyncRequest* request,
                                          v1::RestartSyncResponse* response) {
  std::optional<CallLimiter::Slot> slot;
  auto principal = Admit(context, &slot);
  if (!principal.ok()) return ToGrpc(principal.status());
  CallScope scope(context);
  if (request->skip_trimmed()) {
    auto skipped = deps_.consumers->SkipTrimmed(principal->key);
    if (!skipped.ok()) return AnswerRpc("Producer.RestartSync", skipped.status());
    response->set_watermark(skipped->watermark);
    for (const SubscriptionRow& row : skipped->subscriptions) {
      ToProto(row, response->add_subscriptions());
    }
    return grpc::Status::OK;
  }
  if (request->doctype().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "doctype: required");
  auto row = deps_.consumers->RestartSync(principal->key, request->doctype());
  if (!row.ok()) return AnswerRpc("Producer.RestartSync", row.status());
  ToProto(*row, response->mutable_subscription());
  return grpc::Status::OK;
}

grpc::Status ProducerService::SetSubscriptionStatus(
    grpc::ServerContext* context, const v1::SetSubscriptionStatusRequest* request,
    v1::SetSubscriptionStatusResponse* response) {
  std::optional<CallLimiter::Slot> slot;  // Check: authorize, then take the key's slot
  ES_RETURN_IF_GRPC_ERROR(Check(context, {Role::kAdmin}, &slot));
  CallScope scope(context);
  SubscriptionStatus status;
  switch (request->status()) {
    case v1::SUBSCRIPTION_STATUS_PENDING: status = SubscriptionStatus::kPending; break;
    case v1::SUBSCRIPTION_STATUS_APPROVED: status = SubscriptionStatus::kApproved; break;
    case v1::SUBSCRIPTION_STATUS_REJECTED: status = SubscriptionStatus::kRejected; break;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "status: expected SUBSCRIPTION_STATUS_APPROVED, "
                          "SUBSCRIPTION_STATUS_REJECTED or SUBSCRIPTION_STATUS_PENDING");
  }
  if (request->consumer_site().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "consumer_site: required");
  if (request->doctype().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "doctype: required");
  auto row = deps_.consumers->SetStatus(request->consumer_site(), request->doctype(), status);
  if (!row.ok()) return AnswerRpc("Producer.SetSubscriptionStatus", row.status());
  if (deps_.notifier) RefreshNotifyTargets(deps_.consumers.get(), deps_.notifier.get());
  ToProto(*row, response->mutable_subscription());
  return grpc::Status::OK;
}

void RefreshNotifyTargets(ConsumerStore* consumers, Notifier* notifier) {
  auto targets = consumers->NotifyTargets();
  if (!targets.ok()) {
    spdlog::warn("cannot read notify targets (consumers still poll): {}",
                 std::string(targets.status().message()));
    return;
  }
  notifier->SetTargets(std::move(*targets));
}

absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateProducer(const Config& config) {
  ASSIGN_OR_RETURN(auto credentials, ResolveCredentials(config.producer->api_keys));
  ProducerService::Deps deps;
  deps.auth = std::make_shared<Authenticator>(std::move(credentials));
  deps.config = std::make_shared<const Config>(config);
  {
    pg::ConnectionPool::Options pool;
    pool.application_name = "eventstream-producer";
    pool.max_open = static_cast<size_t>(config.producer->database_pool.max_connections);
    pool.max_idle = pool.max_open;  // reused while busy; closed after idle_timeout
    pool.acquire_timeout = config.producer->database_pool.acquire_timeout;
    pool.bound_key = "producer.database_pool.max_connections";
    deps.pool = std::make_shared<pg::ConnectionPool>(config.database.url, std::move(pool));
  }
  deps.limiter = std::make_shared<CallLimiter>(config.producer->max_concurrent_calls_per_key,
                                               "producer.max_concurrent_calls_per_key");
  // Where the captured set goes: the triggers, or (capture: wal) the slot
  // and publication. Both callers hold the approvals lock (approvals_lock.h).
  std::shared_ptr<const Config> cfg = deps.config;
  std::function<absl::Status(pg::Connection*, const std::set<std::string>&)> sync_capture;
  if (config.producer->capture == CaptureMode::kWal) {
    auto store = std::make_shared<WalCaptureStore>(config.producer->wal_slot,
                                                   config.producer->wal_publication);
    sync_capture = [store, cfg](pg::Connection* conn, const std::set<std::string>& doctypes) {
      return store->SyncPublication(conn, cfg->registry, doctypes);
    };
  } else {
    auto installer = std::make_shared<CaptureInstaller>();
    sync_capture = [installer, cfg](pg::Connection* conn, const std::set<std::string>& doctypes) {
      return installer->SyncTriggers(conn, cfg->registry, doctypes);
    };
  }
  deps.consumers = std::make_shared<ConsumerStore>(
      deps.config.get(), deps.pool.get(),
      [sync_capture, cfg](pg::Connection* conn, const std::set<std::string>& doctypes) {
        // Webhooks need their DocTypes captured too (webhook_store.h).
        ASSIGN_OR_RETURN(auto hooked, WebhookStore::DocTypes(conn, cfg->registry));
        std::set<std::string> all = doctypes;
        all.insert(hooked.begin(), hooked.end());
        return sync_capture(conn, all);
      });
  {
    auto webhooks = WebhookRuntime::Create(
        deps.auth, deps.config, deps.pool,
        [sync_capture, cfg, consumers = deps.consumers](
            pg::Connection* conn, const std::set<std::string>& extra) -> absl::Status {
          ASSIGN_OR_RETURN(std::set<std::string> all, consumers->CapturedDocTypes(conn));
          ASSIGN_OR_RETURN(auto hooked, WebhookStore::DocTypes(conn, cfg->registry));
          all.insert(hooked.begin(), hooked.end());
          all.insert(extra.begin(), extra.end());
          return sync_capture(conn, all);
        });
    RETURN_IF_ERROR(webhooks.status());
    deps.webhooks = std::move(*webhooks);
  }
  RETURN_IF_ERROR(deps.consumers->ApplyConfig());
  Notifier::Options notify_options;
  {
    const std::optional<TlsClientConfig>& notify_tls = config.producer->notify_tls;
    ASSIGN_OR_RETURN(notify_options.transport,
                     MakeClientTransport(notify_tls ? &*notify_tls : nullptr));
    spdlog::info("notify calls to consumers use {}",
                 notify_tls ? "TLS (producer.notify_tls)" : "plaintext");
  }
  deps.notifier = std::make_shared<Notifier>(config.site.name, notify_options);
  deps.streams = std::make_shared<StreamHub>();
  deps.metrics = std::make_shared<ProducerMetrics>(deps.pool, deps.notifier);
  {
    UpdateFeed::Options feed;
    feed.interrupted = &CallScope::Interrupted;
    feed.on_statements = [statements = deps.metrics->dependency_statements](int64_t n) {
      statements->WithLabels({}).Increment(static_cast<double>(n));
    };
    deps.feed = std::make_shared<UpdateFeed>(deps.config.get(), deps.pool.get(), feed);
    if (deps.feed->tail() != nullptr) {
      deps.metrics->WatchLogTail([feed = deps.feed] { return feed->tail()->stats(); });
    }
  }
  RefreshNotifyTargets(deps.consumers.get(), deps.notifier.get());
  return std::unique_ptr<ServiceInstance>(new ProducerInstance(std::move(deps), config));
}

}  // namespace eventstream
