#include "services/common/cli.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"

namespace eventstream {

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine cl;
  bool have_command = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool has_inline_value = false;
    if (absl::StartsWith(arg, "--") && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_inline_value = true;
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (has_inline_value) return value;
      if (i + 1 >= args.size())
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      return args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      cl.help = true;
    } else if (arg == "--check-config") {
      cl.check_config = true;
    } else if (arg == "--config") {
      ASSIGN_OR_RETURN(cl.config_path, take_value());
    } else if (arg == "--log-level") {
      ASSIGN_OR_RETURN(cl.log_level, take_value());
    } else if (!absl::StartsWith(arg, "-") && !have_command &&
               (arg == "serve" || arg == "migrate")) {
      cl.command = arg;
      have_command = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", arg, "\""));
    }
  }
  if (!cl.help && cl.config_path.empty())
    return absl::InvalidArgumentError("--config FILE is required");
  return cl;
}

std::string Usage(const std::string& binary, const std::string& about) {
  return absl::StrCat(
      "Usage: ", binary, " [serve|migrate] --config FILE [options]\n\n", about,
      "\n\nCommands:\n"
      "  serve            run the gRPC server (default); applies migrations first\n"
      "  migrate          apply the database migrations and exit\n\n"
      "Options:\n"
      "  --config FILE    the YAML config (schema: README.md, \"Configuration\")\n"
      "  --check-config   validate the config and exit (0 = valid); touches no\n"
      "                   database and needs no secrets\n"
      "  --log-level L    trace|debug|info|warn|error (overrides log.level)\n"
      "  --help           this text\n\n"
      "Environment:\n"
      "  ES_DATABASE_URL  overrides database.url\n"
      "  secrets are read from the variables/files named by secret_env /\n"
      "  secret_file (api_secret_env / api_secret_file) in the config\n");
}

}  // namespace eventstream
