// Network namespace handles and the in_netns() guard.
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>

#include "net/net.h"

namespace ferry::net {

namespace {

constexpr long kNsfsMagic = NSFS_MAGIC;
constexpr long kProcMagic = PROC_SUPER_MAGIC;

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

Netns Netns::try_open(const std::string& path, OpenStatus* status) {
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) {
    *status = OpenStatus::kGone;
    return {};
  }
  if (st.f_type != kNsfsMagic && st.f_type != kProcMagic) {
    *status = OpenStatus::kNotANamespace;
    return {};
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *status = OpenStatus::kGone;
    return {};
  }
  *status = OpenStatus::kOk;
  return Netns(fd, path);
}

Netns Netns::open(const std::string& path) {
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) {
    int err = errno;
    throw Error("failed to open netns \"" + path + "\": " + errno_text(err), err);
  }
  if (st.f_type != kNsfsMagic && st.f_type != kProcMagic) {
    char magic[32];
    std::snprintf(magic, sizeof magic, "%#lx", static_cast<long>(st.f_type));
    throw Error("\"" + path + "\" is not a network namespace (filesystem magic " + magic + ")",
                EINVAL);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error("failed to open netns \"" + path + "\": " + errno_text(err), err);
  }
  return Netns(fd, path);
}

Netns Netns::current() { return open("/proc/thread-self/ns/net"); }

Netns::Netns(Netns&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

Netns& Netns::operator=(Netns&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

Netns::~Netns() {
  if (fd_ >= 0) ::close(fd_);
}

void in_netns(const Netns& ns, const std::function<void()>& fn) {
  Netns origin = Netns::current();
  if (setns(ns.fd(), CLONE_NEWNET) != 0) {
    int err = errno;
    throw Error("failed to enter netns \"" + ns.path() + "\": " + errno_text(err), err);
  }
  struct Return {
    const Netns& origin;
    ~Return() {
      if (setns(origin.fd(), CLONE_NEWNET) != 0) {
        std::perror("ferry: cannot return to the original network namespace");
        std::abort();
      }
    }
  } back{origin};
  fn();
}

}  // namespace ferry::net
