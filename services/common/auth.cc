#include "services/common/auth.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kConsumer: return "consumer";
    case Role::kAdmin: return "admin";
    case Role::kProducer: return "producer";
  }
  return "?";
}

}  // namespace

Authenticator::Authenticator(std::vector<Credential> credentials) {
  for (auto& c : credentials) by_key_[c.key] = std::move(c);
}

void Authenticator::Put(Credential credential) {
  absl::MutexLock lock(&mu_);
  by_key_[credential.key] = std::move(credential);
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    absl::string_view authorization) const {
  constexpr absl::string_view kPrefix = "token ";
  if (authorization.empty())
    return absl::UnauthenticatedError(
        "missing metadata \"authorization: token KEY:SECRET\"");
  if (!absl::StartsWith(authorization, kPrefix))
    return absl::UnauthenticatedError(
        "authorization must be \"token KEY:SECRET\"");
  absl::string_view token = authorization.substr(kPrefix.size());
  size_t colon = token.find(':');
  if (colon == absl::string_view::npos)
    return absl::UnauthenticatedError(
        "authorization must be \"token KEY:SECRET\"");
  absl::string_view key = token.substr(0, colon);
  absl::string_view secret = token.substr(colon + 1);
  absl::MutexLock lock(&mu_);
  auto it = by_key_.find(key);
  // Same message for an unknown key and a wrong secret: do not confirm
  // which keys exist.
  if (it == by_key_.end() || !ConstantTimeEquals(it->second.secret, secret))
    return absl::UnauthenticatedError(
        absl::StrCat("invalid api key or secret for key \"", key, "\""));
  return Principal{it->second.key, it->second.role};
}

absl::StatusOr<Principal> Authenticator::Authorize(
    const grpc::ServerContext* context, std::initializer_list<Role> allowed) const {
  absl::string_view header;
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it != md.end()) header = absl::string_view(it->second.data(), it->second.size());
  ASSIGN_OR_RETURN(Principal principal, Authenticate(header));
  for (Role r : allowed)
    if (r == principal.role) return principal;
  std::string wanted;
  for (Role r : allowed) absl::StrAppend(&wanted, wanted.empty() ? "" : " or ", RoleName(r));
  return absl::PermissionDeniedError(absl::StrCat(
      "key \"", principal.key, "\" has role ", RoleName(principal.role),
      "; this call needs role ", wanted));
}

grpc::Status AuthorizeRpc(const Authenticator& auth, const grpc::ServerContext* context,
                          std::initializer_list<Role> allowed) {
  auto principal = auth.Authorize(context, allowed);
  return principal.ok() ? grpc::Status::OK : ToGrpc(principal.status());
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Messages often quote the caller's input: bounded, so a huge input
  // cannot turn the answer into a metadata-size error.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      TruncateForClient(status.message()));
}

grpc::Status AnswerRpc(absl::string_view rpc, const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:          // the caller gave up
    case absl::StatusCode::kResourceExhausted:  // a limit; logged where it is kept
      break;
    default:
      spdlog::error("{} failed: {}", std::string(rpc), std::string(status.message()));
  }
  return ToGrpc(status);
}

}  // namespace eventstream
