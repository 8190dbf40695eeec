// Endpoint records: atomic JSON files plus a datagram to the agent.
#include "endpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "names.h"

namespace ferry::bridge {

using nlohmann::json;

namespace {
// ".<network>.<containerID>-<ifname>.json.tmp": hidden, and GC can tell whose it is.
std::string tmp_file_name(std::string_view network, std::string_view container_id, std::string_view ifname) {
  return "." + std::string(network) + "." + endpoint_file_name(container_id, ifname) + ".tmp";
}
}  // namespace

json EndpointRecord::to_json() const {
  return {{"containerID", container_id}, {"ifname", ifname},       {"netns", netns},
          {"network", network},          {"bridge", bridge},       {"hostVeth", host_veth},
          {"hostVethIndex", host_veth_index}, {"containerMAC", container_mac}, {"mtu", mtu},
          {"ips", ips},                  {"gateways", gateways},   {"podNamespace", pod_namespace},
          {"podName", pod_name}};
}

std::optional<EndpointRecord> EndpointRecord::from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  try {
    EndpointRecord r;
    r.container_id = j.value("containerID", "");
    r.ifname = j.value("ifname", "");
    r.netns = j.value("netns", "");
    r.network = j.value("network", "");
    r.bridge = j.value("bridge", "");
    r.host_veth = j.value("hostVeth", "");
    r.host_veth_index = j.value("hostVethIndex", 0);
    r.container_mac = j.value("containerMAC", "");
    r.mtu = j.value("mtu", 0);
    r.ips = j.value("ips", std::vector<std::string>{});
    r.gateways = j.value("gateways", std::vector<std::string>{});
    r.pod_namespace = j.value("podNamespace", "");
    r.pod_name = j.value("podName", "");
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path, int err) {
  throw cni::Error(cni::kIOFailure, what + " \"" + path + "\": " + std::strerror(err),
                   "ferry-bridge keeps endpoint records for the node agent there; check the directory "
                   "(config key \"endpointDir\")");
}

void make_dirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) io_error("failed to create directory", part, errno);
  }
}

std::string read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string data;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  close(fd);
  return data;
}

}  // namespace

void write_endpoint(const std::string& dir, const EndpointRecord& rec) {
  const std::string path = dir + "/" + endpoint_file_name(rec.container_id, rec.ifname);
  const std::string tmp = dir + "/" + tmp_file_name(rec.network, rec.container_id, rec.ifname);
  const std::string data = rec.to_json().dump(2) + "\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT && attempt == 0) {
      make_dirs(dir);
      continue;
    }
    if (fd < 0) io_error("failed to write endpoint record", tmp, errno);
    ssize_t n = write(fd, data.data(), data.size());
    int err = errno;
    close(fd);
    if (n != static_cast<ssize_t>(data.size())) {
      unlink(tmp.c_str());
      io_error("failed to write endpoint record", tmp, n < 0 ? err : ENOSPC);
    }
    // No fsync: /run is tmpfs and the record describes state that dies with a reboot.
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      err = errno;
      unlink(tmp.c_str());
      io_error("failed to publish endpoint record", path, err);
    }
    return;
  }
}

std::optional<EndpointRecord> read_endpoint(const std::string& dir, const std::string& container_id,
                                            const std::string& ifname) {
  std::string data = read_file(dir + "/" + endpoint_file_name(container_id, ifname));
  if (data.empty()) return std::nullopt;
  return EndpointRecord::from_json(json::parse(data, nullptr, false));
}

bool remove_endpoint(const std::string& dir, const std::string& container_id, const std::string& ifname,
                     const std::string& network) {
  const std::string path = dir + "/" + endpoint_file_name(container_id, ifname);
  if (!network.empty()) unlink((dir + "/" + tmp_file_name(network, container_id, ifname)).c_str());
  return unlink(path.c_str()) == 0;
}

void gc_endpoints(const std::string& dir, const std::string& network, const std::set<cni::Attachment>& valid) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    // A temporary file is what an ADD killed before its rename left behind; its name says the
    // network and the attachment, its content may be partial.
    const std::string tmp_prefix = "." + network + ".";
    if (name.starts_with(tmp_prefix) && name.ends_with(".tmp")) {
      const std::string record = name.substr(tmp_prefix.size(), name.size() - tmp_prefix.size() - 4);
      bool in_use = false;
      for (const cni::Attachment& a : valid) in_use |= endpoint_file_name(a.container_id, a.ifname) == record;
      if (!in_use) stale.push_back(name);
      continue;
    }
    if (!name.ends_with(".json")) continue;
    auto rec = EndpointRecord::from_json(json::parse(read_file(dir + "/" + name), nullptr, false));
    if (!rec || rec->network != network) continue;
    if (!valid.count(cni::Attachment{rec->container_id, rec->ifname})) stale.push_back(name);
  }
  closedir(d);
  for (const std::string& name : stale) unlink((dir + "/" + name).c_str());
}

void notify_agent(const std::string& socket_path, const std::string& file_name) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) return;
  struct stat st;
  if (stat(socket_path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;  // no agent yet
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  sendto(fd, file_name.data(), file_name.size(), MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
         sizeof addr);
  close(fd);
}

namespace {

[[noreturn]] void agent_unavailable(const std::string& msg, const std::string& details) {
  throw cni::Error(cni::kTryAgainLater, msg, details);
}

}  // namespace

void confirm_with_agent(const std::string& socket_path, const std::string& file_name,
                        std::chrono::milliseconds timeout) {
  const std::string where = "agent socket " + socket_path;
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path)
    throw cni::Error(cni::kInvalidConfig, "\"agentSocket\" path is too long", socket_path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) agent_unavailable("cannot create a socket to reach ferry-agent", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  // Autobind: the kernel gives us an abstract address the agent can reply to.
  sockaddr_un self{};
  self.sun_family = AF_UNIX;
  if (bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof(sa_family_t)) != 0)
    agent_unavailable("cannot bind a reply socket for ferry-agent", std::strerror(errno));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    agent_unavailable("ferry-agent is not running or not ready (" + where + ": " + std::strerror(err) + ")",
                      "the network requires the agent (\"agentRequired\") to program the endpoint before "
                      "the pod starts; start ferry-agent on this node, the runtime will retry");
  }
  if (send(fd, file_name.data(), file_name.size(), MSG_NOSIGNAL) < 0) {
    int err = errno;
    agent_unavailable("cannot reach ferry-agent (" + where + ": " + std::strerror(err) + ")",
                      "the runtime will retry");
  }

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      agent_unavailable("ferry-agent did not confirm endpoint " + file_name + " within " +
                            std::to_string(timeout.count()) + " ms",
                        "the agent is slow or stuck (see its log and /readyz); the runtime will retry");
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      agent_unavailable("lost the connection to ferry-agent (" + where + ": " + std::strerror(err) + ")",
                        "the runtime will retry");
    }
    std::string_view reply(buf, static_cast<size_t>(n));
    if (reply == "ok " + file_name) return;
    const std::string err_prefix = "error ";
    if (reply.substr(0, err_prefix.size()) == err_prefix)
      agent_unavailable("ferry-agent could not program endpoint " + file_name,
                        std::string(reply.substr(err_prefix.size())));
    // A reply meant for an earlier request on a reused address: keep waiting.
  }
}

}  // namespace ferry::bridge
