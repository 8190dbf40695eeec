// sysctl access through /proc/sys (one open+read/write; no dot conversion).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/net.h"

namespace ferry::net {

namespace {

std::string proc_path(std::string_view name) { return "/proc/sys/" + std::string(name); }

}  // namespace

void write_sysctl(std::string_view name, std::string_view value) {
  std::string path = proc_path(name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error("failed to set sysctl " + std::string(name) + ": " + std::strerror(err), err);
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    throw Error("failed to set sysctl " + std::string(name) + "=" + std::string(value) + ": " +
                    std::strerror(err),
                err);
}

std::string read_sysctl(std::string_view name) {
  std::string path = proc_path(name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error("failed to read sysctl " + std::string(name) + ": " + std::strerror(err), err);
  }
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof buf);
  int err = errno;
  ::close(fd);
  if (n < 0) throw Error("failed to read sysctl " + std::string(name) + ": " + std::strerror(err), err);
  std::string value(buf, static_cast<size_t>(n));
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

bool ensure_sysctl(std::string_view name, std::string_view value) {
  if (read_sysctl(name) == value) return false;
  write_sysctl(name, value);
  return true;
}

}  // namespace ferry::net
