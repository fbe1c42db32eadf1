// RETURN_IF_ERROR / ASSIGN_OR_RETURN: early returns for absl::Status and
// absl::StatusOr, so code reads as its happy path.
//
//   RETURN_IF_ERROR(conn->Exec(sql).status());
//   ASSIGN_OR_RETURN(auto doc, ReadDocument(conn, registry, def, name));
//
// ASSIGN_OR_RETURN declares or assigns its left side in the enclosing scope;
// the expression is evaluated once.
#ifndef EVENTSTREAM_LIBSYNC_BASE_STATUS_MACROS_H_
#define EVENTSTREAM_LIBSYNC_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETURN_IF_ERROR(expr)                             \
  do {                                                    \
    if (::absl::Status es_status_ = (expr); !es_status_.ok()) \
      return es_status_;                                  \
  } while (false)

#define ES_STATUS_CONCAT_INNER_(a, b) a##b
#define ES_STATUS_CONCAT_(a, b) ES_STATUS_CONCAT_INNER_(a, b)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ES_ASSIGN_OR_RETURN_IMPL_(ES_STATUS_CONCAT_(es_statusor_, __LINE__), lhs, expr)

#define ES_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(*statusor)

#endif  // EVENTSTREAM_LIBSYNC_BASE_STATUS_MACROS_H_
