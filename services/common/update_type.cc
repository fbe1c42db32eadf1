#include "services/common/update_type.h"

namespace eventstream {

std::string UpdateTypeName(v1::UpdateType type) {
  switch (type) {
    case v1::UPDATE_TYPE_CREATE:
      return "Create";
    case v1::UPDATE_TYPE_UPDATE:
      return "Update";
    case v1::UPDATE_TYPE_CANCEL:
      return "Cancel";
    case v1::UPDATE_TYPE_RENAME:
      return "Rename";
    case v1::UPDATE_TYPE_DELETE:
      return "Delete";
    case v1::UPDATE_TYPE_SYNC:
      return "Sync";
    case v1::UPDATE_TYPE_REVOKE:
      return "Revoke";
    default:
      return "Unspecified";
  }
}

v1::UpdateType UpdateTypeFromName(absl::string_view name) {
  if (name == "Create") return v1::UPDATE_TYPE_CREATE;
  if (name == "Update") return v1::UPDATE_TYPE_UPDATE;
  if (name == "Cancel") return v1::UPDATE_TYPE_CANCEL;
  if (name == "Rename") return v1::UPDATE_TYPE_RENAME;
  if (name == "Delete") return v1::UPDATE_TYPE_DELETE;
  if (name == "Sync") return v1::UPDATE_TYPE_SYNC;
  if (name == "Revoke") return v1::UPDATE_TYPE_REVOKE;
  return v1::UPDATE_TYPE_UNSPECIFIED;
}

}  // namespace eventstream
