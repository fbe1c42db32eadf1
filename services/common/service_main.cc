#include "services/common/service_main.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "libsync/pg.h"
#include "services/common/cli.h"
#include "services/common/server.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

int Fail(const std::string& binary, const absl::Status& status) {
  fprintf(stderr, "%s: %s\n", binary.c_str(), std::string(status.message()).c_str());
  return 1;
}

void InitLogging(const Config& config, const CommandLine& cl) {
  auto logger = spdlog::stderr_logger_mt("eventstream");
  if (config.log.format == LogFormat::kJson) {
    logger->set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
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
    auto secret = ResolveSecret(k.secret);
    if (!secret.ok()) return secret.status();
    out.push_back(Credential{k.key, *secret,
                             k.role == ApiKeyRole::kAdmin ? Role::kAdmin : Role::kConsumer});
  }
  return out;
}

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec) {
  BlockShutdownSignals();
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

  auto instance = spec.create(*config);
  if (!instance.ok()) return Fail(spec.binary, instance.status());
  auto server = GrpcServer::Start(spec.binary, spec.listen(*config), (*instance)->services());
  if (!server.ok()) return Fail(spec.binary, server.status());

  int sig = WaitForSignal();
  spdlog::info("{}: signal {} received, shutting down", spec.binary, sig);
  (*server)->Shutdown();
  (*instance)->Stop();
  spdlog::info("{}: stopped", spec.binary);
  return 0;
}

}  // namespace eventstream
