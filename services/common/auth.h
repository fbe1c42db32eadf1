// Authenticator: checks the `authorization: token KEY:SECRET` metadata that
// every RPC carries (docs/design.md "Protocol").
//
// A missing, malformed or wrong token is UNAUTHENTICATED; a valid key whose
// role is not allowed for the RPC is PERMISSION_DENIED. Secrets are compared
// in constant time and never appear in a status message or a log line.
#ifndef EVENTSTREAM_SERVICES_COMMON_AUTH_H_
#define EVENTSTREAM_SERVICES_COMMON_AUTH_H_

#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

namespace eventstream {

enum class Role { kConsumer, kAdmin, kProducer /* a Notify caller */ };

struct Principal {
  std::string key;  // for kConsumer: the consumer site it is bound to
  Role role;
};

struct Credential {
  std::string key;
  std::string secret;
  Role role;
};

class Authenticator {
 public:
  explicit Authenticator(std::vector<Credential> credentials);

  // Adds or replaces one credential at run time (e.g. a producer's Notify
  // token learned at registration). Thread-safe.
  void Put(Credential credential);

  // Checks the metadata value itself ("token KEY:SECRET").
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;
  // Reads the metadata from `context`, then requires one of `allowed`.
  absl::StatusOr<Principal> Authorize(const grpc::ServerContext* context,
                                      std::initializer_list<Role> allowed) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Credential, std::less<>> by_key_ ABSL_GUARDED_BY(mu_);
};

// Returns `expr` (a grpc::Status) from the enclosing RPC handler unless OK.
#define ES_RETURN_IF_GRPC_ERROR(expr) \
  if (grpc::Status es_status_ = (expr); !es_status_.ok()) return es_status_

// The guard an RPC handler opens with: returns UNAUTHENTICATED or
// PERMISSION_DENIED from it unless `auth` (an Authenticator) admits the
// caller of `context` in one of the roles that follow.
//   ES_AUTHORIZE(*auth_, context, Role::kAdmin);
#define ES_AUTHORIZE(auth, context, ...) \
  ES_RETURN_IF_GRPC_ERROR(::eventstream::AuthorizeRpc((auth), (context), {__VA_ARGS__}))

// Authorize as a grpc::Status (OK when admitted).
grpc::Status AuthorizeRpc(const Authenticator& auth, const grpc::ServerContext* context,
                          std::initializer_list<Role> allowed);

// absl::Status -> grpc::Status, keeping code and message.
grpc::Status ToGrpc(const absl::Status& status);

// ToGrpc for the answer of RPC `rpc` ("Producer.PullUpdates"). Codes that
// describe the caller's request or a peer's reachability are returned
// quietly; anything else is an unexpected failure (usually the database) and
// is logged here, once, since the caller sees only its code and message.
grpc::Status AnswerRpc(absl::string_view rpc, const absl::Status& status);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_AUTH_H_
