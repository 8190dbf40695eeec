// Socket LB: finding cgroup v2, loading ferry_sock with the node's maps, and keeping one pinned
// cgroup bpf_link per hook (created, kept, or updated in place by a new build).
#include "agent/ebpf/sock_lb.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "agent/ebpf/internal.h"
#include "ferry_sock.skel.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // asm-generic/socket.h (Linux 5.14)
#endif

namespace ferry::ebpf {

using detail::Fd;

namespace {

// The hooks of ferry_sock.bpf.c: program name -> cgroup attach type. The link pin of a hook is
// "link_" + the program name without "ferry_" + "_" + hash.
struct SockHook {
  const char* program;
  bpf_attach_type type;
};
constexpr SockHook kHooks[] = {
    {"ferry_sock4_connect", BPF_CGROUP_INET4_CONNECT},   {"ferry_sock6_connect", BPF_CGROUP_INET6_CONNECT},
    {"ferry_sock4_sendmsg", BPF_CGROUP_UDP4_SENDMSG},     {"ferry_sock6_sendmsg", BPF_CGROUP_UDP6_SENDMSG},
    {"ferry_sock4_recvmsg", BPF_CGROUP_UDP4_RECVMSG},     {"ferry_sock6_recvmsg", BPF_CGROUP_UDP6_RECVMSG},
    {"ferry_sock4_getpeername", BPF_CGROUP_INET4_GETPEERNAME},
    {"ferry_sock6_getpeername", BPF_CGROUP_INET6_GETPEERNAME},
};
constexpr const char* kLinkPinPrefix = "link_sock";

std::string pin_prefix(const SockHook& hook) { return std::string("link_") + (hook.program + 6) + "_"; }

std::string trimmed_root(std::string root) {
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root.empty()) throw EbpfError("socket LB: empty bpffs root");
  return root;
}

std::vector<std::string> pin_names(const std::string& root, const std::string& prefix) {
  std::vector<std::string> names;
  if (DIR* dir = ::opendir(root.c_str())) {
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      if (n.rfind(prefix, 0) == 0) names.push_back(n);
    }
    ::closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct LinkState {
  uint32_t id = 0, prog_id = 0, attach_type = 0;
  uint64_t cgroup_id = 0;
};

LinkState link_state(int link_fd) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  LinkState s;
  if (bpf_obj_get_info_by_fd(link_fd, &info, &len) != 0) return s;
  s.id = info.id;
  s.prog_id = info.prog_id;
  if (info.type == BPF_LINK_TYPE_CGROUP) {
    s.cgroup_id = info.cgroup.cgroup_id;
    s.attach_type = info.cgroup.attach_type;
  }
  return s;
}

// A cgroup's id is the inode number of its directory in cgroupfs.
uint64_t cgroup_id_of(int cgroup_fd) {
  struct stat st {};
  if (::fstat(cgroup_fd, &st) != 0) throw EbpfError("socket LB: fstat on the cgroup: " + detail::errstr(errno));
  return st.st_ino;
}

void make_dirs(const std::string& path, uint64_t& writes) {
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    std::string dir = path.substr(0, pos);
    if (!detail::path_exists(dir)) {
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        throw EbpfError("failed to create " + dir + ": " + detail::errstr(errno));
      ++writes;
    }
    if (pos == std::string::npos) return;
  }
}

// Detaches the pinned link (also when some other process still holds it) and removes the pin.
void detach_and_unpin(const std::string& path) {
  Fd link = detail::open_pinned(path);
  if (link.valid() && bpf_link_detach(link.get()) != 0 && errno != EINVAL && errno != ENOLINK)
    throw EbpfError("failed to detach the link pinned at " + path + ": " + detail::errstr(errno));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw EbpfError("failed to unpin " + path + ": " + detail::errstr(errno));
}

void pin_link(int link_fd, const std::string& path) {
  if (bpf_obj_pin(link_fd, path.c_str()) != 0)
    throw EbpfError("failed to pin the socket LB link at " + path + ": " + detail::errstr(errno));
}

// mountinfo escapes blanks and backslashes in paths as \ooo.
std::string unescape_mount_path(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct SkelDeleter {
  void operator()(ferry_sock* s) const { ferry_sock__destroy(s); }
};

}  // namespace

std::string cgroup2_root() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    std::string id, parent, dev, root, mountpoint, field;
    fields >> id >> parent >> dev >> root >> mountpoint;
    while (fields >> field && field != "-") {
    }
    std::string fstype;
    fields >> fstype;
    if (fstype == "cgroup2" && root == "/") return unescape_mount_path(mountpoint);
  }
  uint64_t writes = 0;
  make_dirs(kCgroup2FallbackMount, writes);
  if (::mount("cgroup2", kCgroup2FallbackMount, "cgroup2", 0, nullptr) != 0)
    throw EbpfError(std::string("no cgroup v2 mount, and mounting one at ") + kCgroup2FallbackMount +
                    " failed: " + detail::errstr(errno));
  spdlog::info("ebpf: mounted cgroup2 at {}", kCgroup2FallbackMount);
  return kCgroup2FallbackMount;
}

uint64_t current_netns_cookie() {
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) sock = Fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) throw EbpfError("netns cookie: cannot open a socket: " + detail::errstr(errno));
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(sock.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
    throw EbpfError("netns cookie: getsockopt(SO_NETNS_COOKIE): " + detail::errstr(errno));
  return cookie;
}

std::string embedded_sock_program_hash() {
  size_t size = 0;
  const auto* bytes = static_cast<const char*>(ferry_sock__elf_bytes(&size));
  const uint64_t h = net::stable_hash64(std::string_view(bytes, size));
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

SockLbChange attach_sock_lb(const SockLbConfig& config) {
  SockLbChange change;
  const std::string root = trimmed_root(config.bpffs_root);
  const std::string hash =
      config.program_hash_override.empty() ? embedded_sock_program_hash() : config.program_hash_override;
  if (ensure_bpffs()) ++change.kernel_writes;
  make_dirs(root, change.kernel_writes);

  const std::string cgroup = config.cgroup.empty() ? cgroup2_root() : config.cgroup;
  Fd cgroup_fd(::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup_fd.valid()) throw EbpfError("socket LB: cannot open cgroup " + cgroup + ": " + detail::errstr(errno));
  const uint64_t cgroup_id = cgroup_id_of(cgroup_fd.get());
  auto path = [&](const std::string& name) { return root + "/" + name; };
  auto attached_here = [&](const std::string& name) {
    Fd link = detail::open_pinned(path(name));
    return link.valid() && link_state(link.get()).cgroup_id == cgroup_id;
  };

  // A hook is done when this build's pin holds a link attached to the cgroup.
  std::vector<const SockHook*> todo;
  for (const SockHook& hook : kHooks)
    if (!attached_here(pin_prefix(hook) + hash)) todo.push_back(&hook);

  std::unique_ptr<ferry_sock, SkelDeleter> skel;
  if (!todo.empty()) {
    bpf_object_open_opts opts{};
    opts.sz = sizeof(opts);
    opts.pin_root_path = root.c_str();
    skel.reset(ferry_sock__open_opts(&opts));
    if (!skel) throw EbpfError("failed to open the embedded socket LB object: " + detail::errstr(errno));
    int err = ferry_sock__load(skel.get());
    if (err != 0)
      throw EbpfError("failed to load the socket LB programs into " + root + ": " + detail::errstr(err) +
                      " (see the libbpf log above)");
    change.loaded = true;
    ++change.kernel_writes;
  }
  for (const SockHook* hook : todo) {
    bpf_program* prog = bpf_object__find_program_by_name(skel->obj, hook->program);
    if (!prog) throw EbpfError(std::string("socket LB object has no program ") + hook->program);
    const std::string name = pin_prefix(*hook) + hash;
    if (detail::path_exists(path(name))) {  // this build's pin, but its link was detached
      detach_and_unpin(path(name));
      ++change.removed;
      change.kernel_writes += 2;
    }
    // Another build's link on this cgroup takes the new program in place, else a new link.
    Fd link;
    for (const std::string& old : pin_names(root, pin_prefix(*hook))) {
      if (!attached_here(old)) continue;
      link = detail::open_pinned(path(old));
      if (bpf_link_update(link.get(), bpf_program__fd(prog), nullptr) != 0)
        throw EbpfError("failed to update the socket LB link " + path(old) + ": " + detail::errstr(errno));
      pin_link(link.get(), path(name));
      if (::unlink(path(old).c_str()) != 0)
        throw EbpfError("failed to unpin " + path(old) + ": " + detail::errstr(errno));
      ++change.updated;
      change.kernel_writes += 3;
      break;
    }
    if (!link.valid()) {
      link = Fd(bpf_link_create(bpf_program__fd(prog), cgroup_fd.get(), hook->type, nullptr));
      if (!link.valid())
        throw EbpfError(std::string("failed to attach ") + hook->program + " to cgroup " + cgroup + ": " +
                        detail::errstr(errno));
      ++change.kernel_writes;
      try {
        pin_link(link.get(), path(name));
      } catch (...) {
        bpf_link_detach(link.get());  // an unpinned link would go with this process anyway
        throw;
      }
      ++change.created;
      ++change.kernel_writes;
    }
  }
  // Leftovers: other builds' links no hook took over (detached, or on another cgroup).
  for (const SockHook& hook : kHooks) {
    for (const std::string& n : pin_names(root, pin_prefix(hook))) {
      if (n == pin_prefix(hook) + hash) continue;
      detach_and_unpin(path(n));
      ++change.removed;
      change.kernel_writes += 2;
    }
  }
  if (change.loaded)
    spdlog::info("ebpf: socket LB {} on {}: {} links created, {} updated, {} removed", hash, cgroup, change.created,
                 change.updated, change.removed);
  return change;
}

size_t detach_sock_lb(const std::string& bpffs_root) {
  const std::string root = trimmed_root(bpffs_root);
  size_t n = 0;
  for (const std::string& name : pin_names(root, kLinkPinPrefix)) {
    detach_and_unpin(root + "/" + name);
    ++n;
  }
  return n;
}

std::vector<SockLbLink> sock_lb_links(const std::string& bpffs_root, const std::string& hash) {
  const std::string root = trimmed_root(bpffs_root);
  const std::string current = hash.empty() ? embedded_sock_program_hash() : hash;
  std::vector<SockLbLink> out;
  for (const std::string& name : pin_names(root, kLinkPinPrefix)) {
    Fd link = detail::open_pinned(root + "/" + name);
    if (!link.valid()) continue;  // unpinned meanwhile
    LinkState state = link_state(link.get());
    SockLbLink l;
    l.pin = name;
    l.link_id = state.id;
    l.prog_id = state.prog_id;
    l.attach_type = state.attach_type;
    l.cgroup_id = state.cgroup_id;
    for (const SockHook& hook : kHooks)  // the kernel keeps only 15 characters of the name
      if (hook.type == state.attach_type && state.prog_id) l.program = hook.program;
    l.current = name.size() > current.size() && name.compare(name.size() - current.size(), current.size(), current) == 0 &&
                name[name.size() - current.size() - 1] == '_';
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace ferry::ebpf
