// Rules for untrusted text crossing into logs, error messages and the
// database (issue 13 item 12), in one place:
//  * EscapeForLog: control characters of a log message are escaped, so no
//    input can forge a log line (the text log format applies it to every
//    message; the JSON format escapes on its own).
//  * TruncateForClient: an error message sent to a client is cut to a
//    bound, so echoing a huge input cannot turn into a metadata-size error.
//  * NulProblem: PostgreSQL text cannot hold NUL; libpq would silently cut
//    the value there, so a value with one is refused.
//  * NotifyAddressProblem: where a producer may send Notify calls.
//  * Quoted: how a name appears in a message: "Note" (in double quotes, as
//    it is; messages are escaped for logs and cut for clients above).
#ifndef EVENTSTREAM_LIBSYNC_INPUT_RULES_H_
#define EVENTSTREAM_LIBSYNC_INPUT_RULES_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace eventstream {

// "\n" -> "\\n", "\r" -> "\\r", "\t" -> "\\t", other bytes < 0x20 and 0x7f
// -> "\\xNN"; everything else (UTF-8 included) as is.
std::string EscapeForLog(absl::string_view text);

inline constexpr size_t kMaxClientMessage = 1024;
// `message` itself when it fits in `max` bytes; else its first bytes (cut
// at a UTF-8 character boundary) and " ... (N more bytes)".
std::string TruncateForClient(absl::string_view message, size_t max = kMaxClientMessage);

// `"` + text + `"`.
std::string Quoted(absl::string_view text);

// "" when `value` has no NUL byte; else where it is.
std::string NulProblem(absl::string_view value);

// "" when `address` is acceptable as a consumer's notify_address: "" (no
// notifies) or host:port with a DNS name, an IPv4 address or a bracketed
// IPv6 address, and a port 1-65535; no whitespace or control characters.
// Link-local (169.254.0.0/16, fe80::/10: cloud metadata services live
// there) and unspecified (0.0.0.0, [::]) addresses are refused.
std::string NotifyAddressProblem(absl::string_view address);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_INPUT_RULES_H_
