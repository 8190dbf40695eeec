// AgentSocket: the unix datagram socket ferry-bridge announces endpoint records on.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "agent/registry/registry.h"

namespace ferry::registry {

AgentSocket::AgentSocket(std::string path, unsigned mode) : path_(std::move(path)) {
  sockaddr_un addr{};
  if (path_.empty() || path_.size() >= sizeof addr.sun_path)
    throw RegistryError("agent socket path \"" + path_ + "\" is empty or longer than " +
                        std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::error_code ec;
  auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) throw RegistryError("failed to create directory \"" + parent.string() + "\": " + ec.message());

  struct stat st;
  if (lstat(path_.c_str(), &st) == 0) {
    // A previous agent's socket (it crashed or was killed): replace it. Anything else at that
    // path is someone else's file.
    if (!S_ISSOCK(st.st_mode))
      throw RegistryError("agent socket path \"" + path_ + "\" exists and is not a socket; refusing to replace it");
    if (unlink(path_.c_str()) != 0 && errno != ENOENT)
      throw RegistryError("failed to remove stale agent socket \"" + path_ + "\": " + std::strerror(errno));
  }
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw RegistryError(std::string("failed to create the agent socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size());
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd_);
    throw RegistryError("failed to bind the agent socket \"" + path_ + "\": " + std::strerror(err));
  }
  if (chmod(path_.c_str(), mode) != 0) {
    int err = errno;
    close(fd_);
    unlink(path_.c_str());
    throw RegistryError("failed to set the mode of \"" + path_ + "\": " + std::strerror(err));
  }
}

AgentSocket::~AgentSocket() {
  if (fd_ < 0) return;
  close(fd_);
  // Without the file, ferry-bridge sees at once that no agent listens (instead of a refused send).
  unlink(path_.c_str());
}

std::optional<Datagram> AgentSocket::receive() {
  Datagram d;
  char buf[4096];
  d.sender_len = sizeof d.sender;
  ssize_t n = recvfrom(fd_, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&d.sender), &d.sender_len);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      spdlog::warn("agent socket \"{}\": receive failed: {}", path_, std::strerror(errno));
    return std::nullopt;
  }
  d.text.assign(buf, static_cast<size_t>(n));
  while (!d.text.empty() && (d.text.back() == '\n' || d.text.back() == '\r' || d.text.back() == ' '))
    d.text.pop_back();
  return d;
}

bool AgentSocket::reply(const Datagram& to, const std::string& text) {
  if (!to.has_sender()) return false;
  ssize_t n = sendto(fd_, text.data(), text.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr*>(&to.sender), to.sender_len);
  if (n < 0) {
    // The sender timed out and closed its socket: nothing to tell anyone.
    spdlog::debug("agent socket: reply \"{}\" not delivered: {}", text, std::strerror(errno));
    return false;
  }
  return true;
}

}  // namespace ferry::registry
