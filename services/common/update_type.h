// The Event Update Log's update types as the database stores them
// ("Create", "Update", "Cancel", "Rename", "Delete") and as the protocol
// sends them (v1::UpdateType). One mapping, used by both services.
#ifndef EVENTSTREAM_SERVICES_COMMON_UPDATE_TYPE_H_
#define EVENTSTREAM_SERVICES_COMMON_UPDATE_TYPE_H_

#include <string>

#include "absl/strings/string_view.h"
#include "eventstream/v1/common.pb.h"

namespace eventstream {

// "Create" ...; "Unspecified" for UPDATE_TYPE_UNSPECIFIED.
std::string UpdateTypeName(v1::UpdateType type);
// UPDATE_TYPE_UNSPECIFIED for a name that is none of the five.
v1::UpdateType UpdateTypeFromName(absl::string_view name);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_UPDATE_TYPE_H_
