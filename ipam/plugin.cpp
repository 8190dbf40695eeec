// The CNI verbs of ferry-host-local: config → lock the store → allocator → result.
// One lock is held for a whole operation (all range sets), where the reference takes it per
// range set: both lock the same file, so they exclude each other either way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ipam/ipam.h"

namespace ferry::ipam {

namespace {

cni::Attachment attachment(const cni::CmdArgs& args) { return {args.container_id, args.ifname}; }

cni::DNS read_resolv_conf(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw cni::Error(cni::kIOFailure, "failed to read resolvConf " + path + ": " + std::strerror(errno),
                     "fix or remove \"resolvConf\" in the ipam config");
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  int err = errno;
  close(fd);
  if (n < 0) throw cni::Error(cni::kIOFailure, "failed to read resolvConf " + path + ": " + std::strerror(err));
  return cni::parse_resolv_conf(text);
}

// DEL, GC and STATUS must not create a store that does not exist yet.
bool store_exists(const Config& config) {
  struct stat st {};
  return stat(config.store_dir().c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

cni::Result cmd_add(const cni::CmdArgs& args) {
  Config config = parse_config(args.conf.raw, args.args, ConfigUse::kAllocate);
  cni::Result result;
  result.cni_version = args.conf.cni_version;
  if (!config.resolv_conf.empty()) result.dns = read_resolv_conf(config.resolv_conf);

  DiskStore store(config.store_dir());
  store.lock();
  result.ips = allocate(config, store, attachment(args));
  result.routes = config.routes;
  return result;
}

void cmd_del(const cni::CmdArgs& args) {
  Config config = parse_config(args.conf.raw, args.args, ConfigUse::kRelease);
  if (!store_exists(config)) return;  // nothing was ever reserved here
  DiskStore store(config.store_dir());
  store.lock();
  release(store, attachment(args));
}

void cmd_check(const cni::CmdArgs& args) {
  Config config = parse_config(args.conf.raw, args.args, ConfigUse::kAllocate);
  bool found = false;
  if (store_exists(config)) {
    DiskStore store(config.store_dir());
    store.lock();
    found = has_reservation(store.list(), attachment(args));
  }
  if (!found)
    throw cni::Error(kErrReservationNotFound,
                     "host-local: Failed to find address added by container " + args.container_id,
                     "no reservation for interface " + args.ifname + " in " + config.store_dir() +
                         "; the address was released (DEL or GC) or never allocated");
}

void cmd_gc(const cni::CmdArgs& args) {
  Config config = parse_config(args.conf.raw, args.args, ConfigUse::kRelease);
  std::vector<cni::Attachment> valid = cni::valid_attachments(args.conf.raw);
  if (!store_exists(config)) return;
  DiskStore store(config.store_dir());
  store.lock();
  std::vector<Reservation> stale = gc_selection(store.list(), valid);
  std::string errors;
  size_t failed = 0;
  for (const Reservation& r : stale) {  // continue on errors, report them all
    try {
      store.release(r.ip);
    } catch (const cni::Error& e) {
      ++failed;
      errors += (errors.empty() ? "" : "; ") + e.msg();
    }
  }
  if (failed > 0)
    throw cni::Error(cni::kIOFailure,
                     "failed to release " + std::to_string(failed) + " of " + std::to_string(stale.size()) +
                         " stale reservations in " + config.store_dir(),
                     errors);
}

void cmd_status(const cni::CmdArgs& args) {
  Config config = parse_config(args.conf.raw, args.args, ConfigUse::kInspect);
  if (config.range_sets.empty() || !store_exists(config)) return;
  // No lock: STATUS is informational and must not queue behind ADDs; reservations appear
  // atomically, so an unlocked listing is a consistent-enough snapshot.
  DiskStore store(config.store_dir());
  if (all_exhausted(config, store.list())) {
    std::string sets;
    for (const RangeSet& s : config.range_sets) sets += (sets.empty() ? "" : "; ") + s.str();
    throw cni::Error(cni::kPluginNotAvailable, "no IP addresses available in any range set: " + sets,
                     "every address is reserved; delete unused containers, run GC, or widen the ranges");
  }
}

cni::Plugin host_local_plugin() {
  cni::Plugin p;
  p.about = "ferry-host-local v" FERRY_VERSION;
  p.add = cmd_add;
  p.del = cmd_del;
  p.check = cmd_check;
  p.gc = cmd_gc;
  p.status = cmd_status;
  return p;
}

}  // namespace ferry::ipam
