// plugins/portmap/conntrack.h — removes stale UDP conntrack entries for host ports, so
// datagrams to a re-mapped port reach the new container instead of following an entry made
// before the rules existed (reference plugins#123, fixed upstream by PR #553).
//
// Errors: returns a message instead of throwing — the reference treats a failure here as
// informative only, and so does ferry-portmap (logged on stderr, the ADD succeeds).
#pragma once

#include <string>
#include <vector>

namespace ferry::portmap {

// Deletes UDP entries whose original destination port is one of `ports`, in the families
// listed (AF_INET / AF_INET6). Returns "" on success or a description of what failed.
std::string delete_udp_conntrack(const std::vector<int>& ports, const std::vector<int>& families);

}  // namespace ferry::portmap
