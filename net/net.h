// net/net.h — thin RAII layer over the kernel's networking: network namespaces, sysctls,
// and (over libnl-route-3) links, veth pairs, bridges, addresses, routes.
//
// Error handling in this layer: functions throw net::Error (a std::runtime_error whose
// message carries the context, e.g. `failed to add address 10.1.0.2/24 to "eth0": File
// exists`) plus the errno/libnl code so callers can treat "already exists" / "not found"
// explicitly. The CNI plugins translate these to cni::Error at their boundary.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry::net {

class Error : public std::runtime_error {
 public:
  Error(std::string what, int err = 0) : std::runtime_error(std::move(what)), err_(err) {}
  int err() const { return err_; }  // positive errno (ENOENT, EEXIST, ...) or 0

 private:
  int err_;
};

// ---------------------------------------------------------------------------------------
// Network namespaces

// An open network namespace. Opening checks the path really is a namespace (nsfs or procfs
// magic), so a tmpfs file left where a netns was is reported as "not a namespace".
class Netns {
 public:
  enum class OpenStatus { kOk, kGone, kNotANamespace };
  static Netns open(const std::string& path);  // throws Error (ENOENT when the path is gone)
  // Opens without throwing on "gone" / "not a netns": DEL treats both as "already cleaned".
  static Netns try_open(const std::string& path, OpenStatus* status);
  static Netns current();

  Netns() = default;
  Netns(Netns&&) noexcept;
  Netns& operator=(Netns&&) noexcept;
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  ~Netns();

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  Netns(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// Runs `fn` with the calling thread inside `ns`, then returns to the namespace the thread
// was in, also when `fn` throws. The plugins are single-threaded, so setns() on the calling
// thread is safe. If switching back fails the process aborts rather than continue in the
// wrong namespace.
void in_netns(const Netns& ns, const std::function<void()>& fn);

// ---------------------------------------------------------------------------------------
// sysctl, by /proc/sys path relative name: "net/ipv4/ip_forward",
// "net/ipv6/conf/eth0/accept_dad". Names are never dot-converted (VLAN names have dots).

void write_sysctl(std::string_view name, std::string_view value);   // throws Error
std::string read_sysctl(std::string_view name);                     // throws Error; trimmed
// Writes only when the value differs (saves a write on the ADD path); returns true if written.
bool ensure_sysctl(std::string_view name, std::string_view value);

}  // namespace ferry::net
