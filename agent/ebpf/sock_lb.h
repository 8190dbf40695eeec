// agent/ebpf/sock_lb.h — socket-level service load-balancing for the node's own processes: the
// ferry_sock programs (bpf/ferry_sock.bpf.c) on the cgroup v2 root, one bpf_link per hook,
// pinned under the node's bpffs root next to its maps.
//
// Layout in the node's bpffs root (beside ebpf.h's maps and programs):
//   link_sock4_connect_<hash>, link_sock6_connect_<hash>,          one cgroup bpf_link per hook,
//   link_sock4_sendmsg_<hash>, link_sock6_sendmsg_<hash>,          <hash> = the build of the
//   link_sock4_recvmsg_<hash>, link_sock6_recvmsg_<hash>,          ferry_sock object it runs
//   link_sock4_getpeername_<hash>, link_sock6_getpeername_<hash>
// The links are multi-attach (every simulated node's agent attaches its own side by side; each
// instance translates only the sockets of its node's netns, ferry_config.netns_cookie). Pinned
// links stay attached while the agent is down; a restart of the same build finds them and
// writes nothing; a new build swaps its programs into the same links (bpf_link_update: no
// moment without a program) and renames the pins. The maps are the node's, reused by name
// (created and pinned if the backend has not pinned them yet).
//
// How the eBPF backend uses this (agent/ebpf/backend.cpp):
//   start():        after its own maps are loaded, attach_sock_lb({cfg.bpffs_root}); then write
//                   ferry_config.netns_cookie = current_netns_cookie() (called in the node's
//                   netns) and FERRY_CFG_F_SERVICES when services are programmed.
//   cleanup_all():  detach_sock_lb(cfg.bpffs_root) before unpinning the rest of the root.
//   stats/ferryctl: sock_lb_links(root) says what is attached.
//
// Errors: every function throws EbpfError with the object and the cause in the message. A
// failed attach_sock_lb leaves every link either as it was or fully replaced (each hook is
// handled on its own), never a link without its pin.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/ebpf/ebpf.h"

namespace ferry::ebpf {

// Where cgroup2 is mounted when the machine has no cgroup v2 mount at all.
inline constexpr const char* kCgroup2FallbackMount = "/run/ferry/cgroupv2";

// The root of the cgroup v2 hierarchy: the first cgroup2 mount of the hierarchy root in
// /proc/self/mountinfo (/sys/fs/cgroup on a unified machine, /sys/fs/cgroup/unified on a hybrid
// one); without one, cgroup2 is mounted at kCgroup2FallbackMount.
std::string cgroup2_root();

// The calling thread's network namespace cookie (getsockopt SO_NETNS_COOKIE on a new socket):
// what the backend writes to ferry_config.netns_cookie. Call it inside the node's netns.
uint64_t current_netns_cookie();

// Short hex hash of the ferry_sock object embedded in this binary (names the link pins).
std::string embedded_sock_program_hash();

struct SockLbConfig {
  std::string bpffs_root;  // the node's root, e.g. node_bpffs_root("node-1"); created if missing
  std::string cgroup;      // cgroup v2 directory to attach to; "" = cgroup2_root()
  // Overrides the program hash (normally embedded_sock_program_hash()). Tests use it to
  // simulate an upgrade to another build without building one.
  std::string program_hash_override;
};

// What one attach_sock_lb() call did.
struct SockLbChange {
  bool loaded = false;        // the ferry_sock object was loaded (something had to change)
  int created = 0;            // links created and pinned
  int updated = 0;            // links of another build given this build's program in place
  int removed = 0;            // leftover or defunct links detached and unpinned
  uint64_t kernel_writes = 0; // loads, link creates/updates/detaches, pins/unpins, mkdirs
};

// Makes every hook of this build attached to the cgroup through a pinned link (see the top of
// this file). Idempotent: a second call with the same build changes nothing.
SockLbChange attach_sock_lb(const SockLbConfig& config);

// Detaches and unpins every socket-LB link under the root (any build); returns how many.
// Nothing pinned (or no root) = 0.
size_t detach_sock_lb(const std::string& bpffs_root);

// One pinned link, as the kernel reports it.
struct SockLbLink {
  std::string pin;           // file name under the root
  std::string program;       // the program of its hook (by attach type), e.g. "ferry_sock4_connect"
  uint32_t link_id = 0;
  uint32_t prog_id = 0;
  uint32_t attach_type = 0;  // enum bpf_attach_type (BPF_CGROUP_INET4_CONNECT, ...)
  uint64_t cgroup_id = 0;    // the cgroup it is attached to; 0 = detached (a defunct link)
  bool current = false;      // pinned under `hash` (default: this build's)
};
// The socket-LB links pinned under the root, sorted by pin name.
std::vector<SockLbLink> sock_lb_links(const std::string& bpffs_root, const std::string& hash = "");

}  // namespace ferry::ebpf
