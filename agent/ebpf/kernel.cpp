// Thin wrappers over libbpf for pins, object info and tc attachments, plus bpffs and the
// kernel feature probe.
#include <linux/bpf.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cstdarg>

#include "agent/ebpf/internal.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace ferry::ebpf {
namespace detail {

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Fd open_pinned(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Fd();
    throw EbpfError("failed to open pinned bpf object " + path + ": " + errstr(err));
  }
  return Fd(fd);
}

ProgInfo prog_info(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0)
    throw EbpfError("failed to read bpf program info: " + errstr(errno));
  return {info.id, info.name};
}

ProgInfo prog_info_by_id(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {id, ""};
  Fd owned(fd);
  return prog_info(owned.get());
}

MapInfo map_info(int map_fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &len) != 0)
    throw EbpfError("failed to read bpf map info: " + errstr(errno));
  return {info.id, info.max_entries, info.value_size, info.name};
}

// Queries and "is it there?" calls fail routinely (no clsact yet, no filter): keep libbpf from
// logging the kernel's extended ack for those. Not thread-safe, like libbpf_set_print itself.
namespace {
int discard_print(enum libbpf_print_level, const char*, va_list) { return 0; }
class QuietLibbpf {
 public:
  QuietLibbpf() : old_(libbpf_set_print(discard_print)) {}
  ~QuietLibbpf() { libbpf_set_print(old_); }
  QuietLibbpf(const QuietLibbpf&) = delete;
  QuietLibbpf& operator=(const QuietLibbpf&) = delete;

 private:
  libbpf_print_fn_t old_;
};
}  // namespace

static bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point side) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = side;
  return hook;
}

static bpf_tc_opts make_opts() {
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.handle = FERRY_TC_HANDLE;
  opts.priority = FERRY_TC_PRIORITY;
  return opts;
}

static const char* side_name(bpf_tc_attach_point side) {
  return side == BPF_TC_INGRESS ? "ingress" : "egress";
}

uint32_t tc_filter_prog(int ifindex, bpf_tc_attach_point side) {
  bpf_tc_hook hook = make_hook(ifindex, side);
  bpf_tc_opts opts = make_opts();
  QuietLibbpf quiet;
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  return opts.prog_id;
}

void tc_attach(int ifindex, bpf_tc_attach_point side, int prog_fd) {
  bpf_tc_hook hook = make_hook(ifindex, side);
  bpf_tc_opts opts = make_opts();
  opts.prog_fd = prog_fd;
  opts.flags = BPF_TC_F_REPLACE;  // in place: the old program runs until the new one does
  int err = bpf_tc_attach(&hook, &opts);
  if (err != 0)
    throw EbpfError("failed to attach bpf program to tc " + std::string(side_name(side)) +
                    " of ifindex " + std::to_string(ifindex) + ": " + errstr(err));
}

bool tc_detach(int ifindex, bpf_tc_attach_point side) {
  bpf_tc_hook hook = make_hook(ifindex, side);
  bpf_tc_opts opts = make_opts();
  QuietLibbpf quiet;
  int err = bpf_tc_detach(&hook, &opts);
  if (err == 0) return true;
  if (err == -ENOENT || err == -ENODEV || err == -EINVAL) return false;  // nothing there
  throw EbpfError("failed to detach bpf program from tc " + std::string(side_name(side)) +
                  " of ifindex " + std::to_string(ifindex) + ": " + errstr(err));
}

bool tc_ensure_clsact(int ifindex) {
  bpf_tc_hook hook = make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  QuietLibbpf quiet;
  int err = bpf_tc_hook_create(&hook);
  if (err == 0) return true;
  if (err == -EEXIST) return false;
  throw EbpfError("failed to create clsact qdisc on ifindex " + std::to_string(ifindex) + ": " +
                  errstr(err));
}

}  // namespace detail

TcFilters tc_filters(int ifindex) {
  return {detail::tc_filter_prog(ifindex, BPF_TC_INGRESS), detail::tc_filter_prog(ifindex, BPF_TC_EGRESS)};
}

static bool bpffs_mounted() {
  struct statfs st {};
  return ::statfs(kBpffsMount, &st) == 0 && static_cast<uint64_t>(st.f_type) == BPF_FS_MAGIC;
}

bool ensure_bpffs() {
  if (bpffs_mounted()) return false;
  ::mkdir(kBpffsMount, 0700);
  if (::mount("bpf", kBpffsMount, "bpf", 0, "mode=0700") != 0)
    throw EbpfError(std::string("failed to mount bpffs at ") + kBpffsMount + ": " + detail::errstr(errno));
  return true;
}

bool ebpf_supported(std::string* why) {
  std::vector<std::string> missing;
  detail::QuietLibbpf quiet;
  int tc = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, nullptr);
  if (tc < 0) {
    missing.push_back("permission to load bpf programs (" + detail::errstr(tc) + "; needs root or CAP_BPF)");
  } else if (tc == 0) {
    missing.push_back("tc (BPF_PROG_TYPE_SCHED_CLS) programs");
  } else if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_redirect_peer, nullptr) != 1) {
    missing.push_back("the bpf_redirect_peer helper (kernel >= 5.10)");
  }
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_LRU_HASH, nullptr) != 1) missing.push_back("LRU hash maps");
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_PERCPU_ARRAY, nullptr) != 1) missing.push_back("per-CPU array maps");
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) != 1) missing.push_back("ring buffer maps (kernel >= 5.8)");
  // Not mounted is fine (start() mounts it) as long as the mount point exists.
  if (!bpffs_mounted() && !detail::path_exists(kBpffsMount))
    missing.push_back(std::string("bpffs (") + kBpffsMount + " does not exist)");
  if (missing.empty()) return true;
  if (why) {
    std::string text = "missing: ";
    for (size_t i = 0; i < missing.size(); ++i) text += (i ? ", " : "") + missing[i];
    *why = text;
  }
  return false;
}

}  // namespace ferry::ebpf
