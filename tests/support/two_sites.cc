#include "tests/support/two_sites.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {

const std::map<std::string, std::string>& TwoSites::Secrets() {
  static const auto* secrets = new std::map<std::string, std::string>{
      {"ES_E2E_BRANCH", "e2e-branch-at-hq"},  // branch's key at hq
      {"ES_E2E_HQ_OPS", "e2e-hq-ops"},        // hq's admin
      {"ES_E2E_OPS", "e2e-branch-ops"},       // branch's admin
  };
  return *secrets;
}

TwoSites::Spec TwoSites::NoteSpec(std::string doctypes, std::string sql) {
  Spec spec;
  spec.hq_doctypes = std::move(doctypes);
  spec.hq_sql = std::move(sql);
  spec.subscriptions = "        - {doctype: Note, use_same_name: true}\n";
  spec.pre_approvals = "        - {doctype: Note, status: approved}\n";
  return spec;
}

absl::StatusOr<std::unique_ptr<TwoSites>> TwoSites::Create(Spec spec) {
  std::unique_ptr<TwoSites> sites(new TwoSites());
  if (spec.branch_doctypes.empty()) spec.branch_doctypes = spec.hq_doctypes;
  if (spec.branch_sql.empty()) spec.branch_sql = spec.hq_sql;
  sites->spec_ = std::move(spec);
  sites->hq_db_ = FreshDatabase("hq");
  sites->branch_db_ = FreshDatabase("branch");
  auto hq = pg::Connection::Open(SharedCluster().Url(sites->hq_db_));
  if (!hq.ok()) return hq.status();
  sites->hq_ = std::move(*hq);
  auto branch = pg::Connection::Open(SharedCluster().Url(sites->branch_db_));
  if (!branch.ok()) return branch.status();
  sites->branch_ = std::move(*branch);
  if (absl::Status s = sites->hq_->ExecScript(sites->spec_.hq_sql); !s.ok()) return s;
  if (absl::Status s = sites->branch_->ExecScript(sites->spec_.branch_sql); !s.ok()) return s;
  sites->producer_port_ = FreeTcpPort();
  do {
    sites->consumer_port_ = FreeTcpPort();
  } while (sites->consumer_port_ == sites->producer_port_);
  if (sites->spec_.consumer_metrics) {
    do {
      sites->consumer_metrics_port_ = FreeTcpPort();
    } while (sites->consumer_metrics_port_ == sites->producer_port_ ||
             sites->consumer_metrics_port_ == sites->consumer_port_);
  }
  return sites;
}

std::string SlotNameFor(const std::string& db) {
  std::string slot = "s_" + db;
  for (char& c : slot) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '_';
  return slot.substr(0, 63);
}

std::string TwoSites::ProducerConfig() const {
  std::string out = absl::StrCat(
      "site: {name: hq}\ndatabase: {url: \"", SharedCluster().Url(hq_db_),
      "\"}\ndoctypes:\n", spec_.hq_doctypes, "producer:\n  listen: \"127.0.0.1:",
      producer_port_, "\"\n  api_keys:\n",
      "    - {key: branch, secret_env: ES_E2E_BRANCH, role: consumer}\n",
      "    - {key: ops, secret_env: ES_E2E_HQ_OPS, role: admin}\n",
      "  condition_functions: [", absl::StrJoin(spec_.condition_functions, ", "), "]\n",
      spec_.producer_extra);
  // ES_TEST_CAPTURE=wal runs the same tests with WAL capture (pg_cluster.cc
  // starts the cluster with wal_level=logical); a slot per hq database.
  if (const char* mode = getenv("ES_TEST_CAPTURE"); mode != nullptr && std::string(mode) == "wal") {
    absl::StrAppend(&out, "  capture: wal\n  wal_slot: ", SlotNameFor(hq_db_), "\n");
  }
  if (!spec_.producer_tls.empty()) absl::StrAppend(&out, "  tls: ", spec_.producer_tls, "\n");
  if (!spec_.producer_notify_tls.empty())
    absl::StrAppend(&out, "  notify_tls: ", spec_.producer_notify_tls, "\n");
  if (!spec_.pre_approvals.empty()) {
    absl::StrAppend(&out, "  consumers:\n    - site: branch\n      doctypes:\n",
                    spec_.pre_approvals);
  }
  return out;
}

namespace {
// The consumer's delivery line for the Spec (see Spec::delivery).
std::string DeliveryLine(const std::string& delivery) {
  std::string mode = delivery;
  if (mode.empty()) {
    const char* env = getenv("ES_TEST_DELIVERY");
    mode = env != nullptr ? env : "";
  }
  return mode.empty() ? "" : absl::StrCat("      delivery: ", mode, "\n");
}
// The consumer's apply_workers line for the Spec (see Spec::apply_workers).
std::string ApplyWorkersLine(int workers) {
  std::string n = workers > 0 ? absl::StrCat(workers) : "";
  if (n.empty()) {
    const char* env = getenv("ES_TEST_APPLY_WORKERS");
    n = env != nullptr ? env : "";
  }
  return n.empty() ? "" : absl::StrCat("      apply_workers: ", n, "\n");
}
}  // namespace

std::string TwoSites::ConsumerConfig() const {
  std::string out = absl::StrCat(
      "site: {name: branch}\ndatabase: {url: \"", SharedCluster().Url(branch_db_),
      "\"}\nlog: {level: ", spec_.consumer_log_level, "}\ndoctypes:\n",
      spec_.branch_doctypes, "consumer:\n  listen: \"127.0.0.1:", consumer_port_,
      "\"\n",
      spec_.advertise ? absl::StrCat("  advertise: \"127.0.0.1:", consumer_port_, "\"\n") : "",
      "  poll_interval: ",
      spec_.poll_interval, "\n",
      consumer_metrics_port_ != 0
          ? absl::StrCat("  metrics_listen: \"127.0.0.1:", consumer_metrics_port_, "\"\n")
          : "",
      spec_.consumer_extra,
      spec_.consumer_tls.empty() ? "" : absl::StrCat("  tls: ", spec_.consumer_tls, "\n"),
      "  api_keys:\n",
      "    - {key: ops, secret_env: ES_E2E_OPS, role: admin}\n",
      "  producers:\n    - name: hq\n      url: \"127.0.0.1:", producer_port_,
      "\"\n      api_key: branch\n      api_secret_env: ES_E2E_BRANCH\n",
      DeliveryLine(spec_.delivery), ApplyWorkersLine(spec_.apply_workers),
      spec_.consumer_producer_tls.empty()
          ? ""
          : absl::StrCat("      tls: ", spec_.consumer_producer_tls, "\n"),
      "      doctypes:\n", spec_.subscriptions);
  if (!spec_.mappings.empty()) absl::StrAppend(&out, "  mappings:\n", spec_.mappings);
  return out;
}

absl::Status TwoSites::StartProducer() {
  auto svc = StartService("eventstream-producer", ProducerConfig(), Secrets());
  if (!svc.ok()) return svc.status();
  producer_ = std::move(*svc);
  return absl::OkStatus();
}

absl::Status TwoSites::StartConsumer() {
  auto svc = StartService("eventstream-consumer", ConsumerConfig(), Secrets());
  if (!svc.ok()) return svc.status();
  consumer_ = std::move(*svc);
  return absl::OkStatus();
}

absl::Status TwoSites::MigrateConsumer() {
  ScopedTempDir dir("eventstream-consumer-migrate");
  WriteFile(dir.path() + "/config.yaml", ConsumerConfig());
  CommandResult r = RunCommand(
      {BinDir() + "/eventstream-consumer", "migrate", "--config", dir.path() + "/config.yaml"},
      Secrets());
  if (r.exit_code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("eventstream-consumer migrate exited with ",
                                          r.exit_code, ":\n", r.output));
}

absl::StatusOr<std::string> TwoSites::StopConsumer() {
  if (consumer_.process == nullptr) return absl::FailedPreconditionError("not started");
  consumer_.process->Signal(SIGTERM);
  auto code = consumer_.process->Wait(absl::Seconds(20));
  if (!code.ok()) return code.status();
  std::string log = consumer_.process->Log();
  if (*code != 0)
    return absl::InternalError(absl::StrCat("consumer exited with ", *code, ":\n", log));
  return log;
}

void TwoSites::KillConsumer() {
  if (consumer_.process == nullptr) return;
  consumer_.process->Signal(SIGKILL);
  (void)consumer_.process->Wait(absl::Seconds(20));
}

void TwoSites::KillProducer() {
  if (producer_.process == nullptr) return;
  producer_.process->Signal(SIGKILL);
  (void)producer_.process->Wait(absl::Seconds(20));
}

bool TwoSites::ConsumerRunning() {
  return consumer_.process != nullptr && consumer_.process->Running();
}

pid_t TwoSites::producer_pid() const {
  return producer_.process ? producer_.process->pid() : 0;
}
pid_t TwoSites::consumer_pid() const {
  return consumer_.process ? consumer_.process->pid() : 0;
}

std::string TwoSites::producer_address() const {
  return absl::StrCat("127.0.0.1:", producer_port_);
}
std::string TwoSites::consumer_address() const {
  return absl::StrCat("127.0.0.1:", consumer_port_);
}
std::string TwoSites::ProducerLog() const {
  return producer_.process ? producer_.process->Log() : "";
}
std::string TwoSites::ConsumerLog() const {
  return consumer_.process ? consumer_.process->Log() : "";
}
std::string TwoSites::Logs() const {
  return absl::StrCat("--- producer log ---\n", ProducerLog(), "\n--- consumer log ---\n",
                      ConsumerLog(), "\n--- state ---\n", State());
}

std::string TwoSites::State() const {
  // One text line per query (the last 40 log entries; the bookkeeping of
  // both sides), so a failure shows where an entry stopped.
  auto lines = [](pg::Connection* conn, const std::string& what, const std::string& sql) {
    if (conn == nullptr) return std::string();
    return absl::StrCat(what, ": ",
                        QueryText(conn, absl::StrCat("SELECT coalesce(string_agg(line, ' ; '), '-')"
                                                     " FROM (", sql, ") AS t")),
                        "\n");
  };
  return absl::StrCat(
      lines(hq_.get(), "hq update_log (last 40)",
            "SELECT concat_ws('|', seq, doctype, docname, update_type, for_site) AS line FROM "
            "(SELECT * FROM es_producer.update_log ORDER BY seq DESC LIMIT 40) AS l ORDER BY seq"),
      lines(hq_.get(), "hq consumers",
            "SELECT concat_ws('|', site, acknowledged_seq) AS line FROM es_producer.consumer"),
      lines(hq_.get(), "hq holdings",
            "SELECT concat_ws('|', site, doctype, docname) AS line FROM es_producer.holding"),
      lines(hq_.get(), "hq pending holding changes",
            "SELECT concat_ws('|', site, seq, doctype, docname, held) AS line "
            "FROM es_producer.holding_change"),
      lines(branch_.get(), "branch watermarks",
            "SELECT concat_ws('|', producer, last_seq) AS line FROM es_consumer.last_update"),
      lines(branch_.get(), "branch sync_log (last 40)",
            "SELECT concat_ws('|', seq, doctype, docname, update_type, status) AS line FROM "
            "(SELECT * FROM es_consumer.sync_log ORDER BY id DESC LIMIT 40) AS l ORDER BY id"));
}

std::string QueryText(pg::Connection* conn, const std::string& sql) {
  auto r = conn->Exec(sql);
  if (!r.ok()) return absl::StrCat("<error: ", r.status().message(), ">");
  if (r->rows() == 0) return "<no rows>";
  if (r->IsNull(0, 0)) return "<null>";
  return std::string(r->Get(0, 0));
}

int64_t QueryInt(pg::Connection* conn, const std::string& sql) {
  auto r = conn->Exec(sql);
  if (!r.ok() || r->rows() == 0) return -1;
  return r->GetInt64(0, 0);
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace eventstream::testing
