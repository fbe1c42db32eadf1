#include "services/common/service_main.h"

#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/pg.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/tls_reasons.h"
#include "services/common/cli.h"
#include "services/common/metrics_server.h"
#include "services/common/server.h"
#include "services/common/tls.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

int Fail(const std::string& binary, const absl::Status& status) {
  fprintf(stderr, "%s: %s\n", binary.c_str(), std::string(status.message()).c_str());
  return 1;
}

}  // namespace

void AppendJsonEscaped(absl::string_view in, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': *out += "\\\""; break;
        case '\\': *out += "\\\\"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        case '\t': *out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            *out += "\\u00";
            *out += kHex[c >> 4];
            *out += kHex[c & 0xf];
          } else {
            *out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence passes through; anything else is U+FFFD.
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c >= 0xf5) len = 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 3) {
      // No overlongs, no surrogates.
      ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);
    }
    if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90);
    if (ok) {
      out->append(reinterpret_cast<const char*>(p + i), len);
      i += len;
    } else {
      *out += "\\ufffd";
      ++i;
    }
  }
}

namespace {

// %* in the text pattern: the message with control characters escaped, so
// no input (a name, an address) can start a forged log line.
class EscapedMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string escaped =
        EscapeForLog(absl::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessageFlag>();
  }
};

// %* in the JSON pattern: the message, escaped as a JSON string body.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string escaped;
    AppendJsonEscaped(absl::string_view(msg.payload.data(), msg.payload.size()), &escaped);
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// gRPC logs one line per failed TLS handshake, naming only OpenSSL's
// reason; a client retrying with the wrong settings would write one every
// few seconds. This says what the reason means (libsync/base/tls_reasons.h), at
// most once a minute per cause, counting the ones it held back.
class HandshakeFailureLog {
 public:
  void Report(const std::string& message) {
    const std::string meaning = ExplainTlsFailure(message);
    const std::string cause = meaning.empty() ? message : meaning;
    const absl::Time now = absl::Now();
    int held_back = 0;
    {
      absl::MutexLock lock(&mu_);
      if (causes_.size() > 64) causes_.clear();  // gRPC's texts are few; stay bounded
      Cause& c = causes_[cause];
      if (now < c.quiet_until) {
        ++c.held_back;
        return;
      }
      held_back = c.held_back;
      c.held_back = 0;
      c.quiet_until = now + absl::Minutes(1);
    }
    spdlog::warn("TLS handshake failed{}{} (grpc: {}){}", meaning.empty() ? "" : ": ", meaning,
                 message,
                 held_back > 0 ? absl::StrCat("; ", held_back, " more like it in the last minute")
                               : "");
  }

 private:
  struct Cause {
    absl::Time quiet_until = absl::InfinitePast();
    int held_back = 0;
  };
  absl::Mutex mu_;
  std::map<std::string, Cause> causes_ ABSL_GUARDED_BY(mu_);
};

// gRPC's own log lines (connection errors and the like), through spdlog so
// that they share the format (and, in JSON, stay valid lines).
void GrpcLogToSpdlog(gpr_log_func_args* args) {
  if (args->severity == GPR_LOG_SEVERITY_ERROR && IsTlsHandshakeFailure(args->message)) {
    static HandshakeFailureLog* handshakes = new HandshakeFailureLog();
    handshakes->Report(args->message);
    return;
  }
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG: spdlog::debug("grpc: {}", args->message); break;
    case GPR_LOG_SEVERITY_INFO: spdlog::info("grpc: {}", args->message); break;
    default: spdlog::error("grpc: {}", args->message); break;
  }
}

void InitLogging(const Config& config, const CommandLine& cl) {
  auto logger = spdlog::stderr_logger_mt("eventstream");
  if (config.log.format == LogFormat::kJson) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(
        spdlog::pattern_time_type::utc, spdlog::details::os::default_eol);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<EscapedMessageFlag>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %*");
    logger->set_formatter(std::move(formatter));
  }
  gpr_set_log_function(GrpcLogToSpdlog);
  spdlog::set_default_logger(logger);
  std::string level = cl.log_level.empty() ? config.log.level : cl.log_level;
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace

absl::StatusOr<std::vector<Credential>> ResolveCredentials(
    const std::vector<ApiKeyConfig>& keys) {
  std::vector<Credential> out;
  for (const ApiKeyConfig& k : keys) {
    ASSIGN_OR_RETURN(std::string secret, ResolveSecret(k.secret));
    out.push_back(Credential{k.key, secret,
                             k.role == ApiKeyRole::kAdmin ? Role::kAdmin : Role::kConsumer});
  }
  return out;
}

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec) {
  BlockShutdownSignals();
  // Debian builds Abseil without NDEBUG, so every absl::Mutex operation
  // (gRPC's included) also ran deadlock detection under one process-wide
  // lock: measurable at fan-out (docs/design.md "Delivery").
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cl = ParseCommandLine(args);
  if (!cl.ok()) {
    fprintf(stderr, "%s: %s\n\n%s", spec.binary.c_str(),
            std::string(cl.status().message()).c_str(),
            Usage(spec.binary, spec.about).c_str());
    return 2;
  }
  if (cl->help) {
    printf("%s", Usage(spec.binary, spec.about).c_str());
    return 0;
  }

  auto config = LoadConfigFile(cl->config_path);
  if (!config.ok()) return Fail(spec.binary, config.status());
  if (auto s = spec.check_section(*config); !s.ok()) return Fail(spec.binary, s);
  if (cl->check_config) {
    printf("%s: config %s is valid\n", spec.binary.c_str(), cl->config_path.c_str());
    return 0;
  }

  InitLogging(*config, *cl);
  if (auto s = ApplyEnvironment(*config); !s.ok()) return Fail(spec.binary, s);

  auto conn = pg::Connection::Open(config->database.url);
  if (!conn.ok()) return Fail(spec.binary, conn.status());
  int applied = 0;
  if (auto s = ApplyMigrations(conn->get(), spec.schema, *spec.migrations, &applied);
      !s.ok()) {
    return Fail(spec.binary, s);
  }
  if (cl->command == "migrate") {
    printf("%s: %d migration(s) applied to schema %s\n", spec.binary.c_str(), applied,
           spec.schema.c_str());
    return 0;
  }
  conn->reset();

  // The certificate files, before the service starts any work (the server
  // re-checks them when it builds its credentials).
  if (const TlsServerConfig* tls = spec.tls ? spec.tls(*config) : nullptr) {
    if (auto s = CheckServerTls(*tls); !s.ok()) return Fail(spec.binary, s);
  }
  auto instance = spec.create(*config);
  if (!instance.ok()) return Fail(spec.binary, instance.status());
  auto server = GrpcServer::Start(spec.binary, spec.listen(*config), (*instance)->services(),
                                  spec.tls ? spec.tls(*config) : nullptr);
  if (!server.ok()) return Fail(spec.binary, server.status());

  std::unique_ptr<MetricsServer> metrics_server;
  const std::string metrics_listen = spec.metrics_listen ? spec.metrics_listen(*config) : "";
  if (!metrics_listen.empty() && (*instance)->metrics() != nullptr) {
    auto started = MetricsServer::Start(metrics_listen, (*instance)->metrics());
    if (!started.ok()) {
      (*server)->Shutdown(0);
      (*instance)->Stop();
      return Fail(spec.binary, started.status());
    }
    metrics_server = std::move(*started);
  }

  int sig = WaitForSignal();
  spdlog::info("{}: signal {} received, shutting down", spec.binary, sig);
  (*instance)->Draining();
  (*server)->Shutdown();
  if (metrics_server) metrics_server->Stop();
  (*instance)->Stop();
  spdlog::info("{}: stopped", spec.binary);
  return 0;
}

}  // namespace eventstream
