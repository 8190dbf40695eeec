// agent/registry/registry.h — the node's local endpoints as ferry-bridge reports them, and the
// agent's unix datagram socket on which ferry-bridge announces a changed record.
//
// Records are the files plugins/bridge/endpoint.h writes (`<dir>/<containerID>-<ifname>.json`);
// this module reads them with the plugin's own code, gives each a stable endpoint id (persisted
// in `<state_dir>/endpoint-ids.json`, so an agent restart keeps them) and turns them into the
// dataplane::Endpoint values the backends program.
//
// Errors: constructors and file/socket setup throw RegistryError (a std::runtime_error naming
// the path and the cause). A malformed record is not an exception: it is logged, skipped and
// listed in problems(). Single-threaded: the agent's event loop owns both classes.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/dataplane/dataplane.h"
#include "net/net.h"
#include "plugins/bridge/endpoint.h"

namespace ferry::registry {

class RegistryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the registry asks of the node's links when it builds an Endpoint. The default reads
// them over netlink in the calling thread's network namespace (the node's); tests pass a fake.
class LinkLookup {
 public:
  virtual ~LinkLookup() = default;
  // The bridge's MAC (source MAC of datapath delivery to pods); nullopt if there is no such link.
  virtual std::optional<net::Mac> bridge_mac(const std::string& bridge) = 0;
  // true if link `index` exists and is named `name` (false: the pod is gone, the record is stale).
  virtual bool link_present(int index, const std::string& name) = 0;
};
std::unique_ptr<LinkLookup> make_netlink_lookup();

// Sorts addresses the way every backend reports them: IPv4 before IPv6, then by bytes
// (network order, so numerically). Endpoint comparison depends on one order.
void sort_ips(std::vector<net::Ip>& ips);

// Builds the Endpoint of one record; throws RegistryError naming the field that is wrong.
dataplane::Endpoint endpoint_from_record(const bridge::EndpointRecord& rec, uint32_t endpoint_id,
                                         const net::Mac& host_mac);

// True for names ferry-bridge writes: "<something>.json", no '/', not hidden, not a temporary.
bool is_record_file_name(const std::string& file_name);

class EndpointRegistry {
 public:
  // Creates `endpoint_dir` and `state_dir` if missing, loads the persisted ids and starts
  // watching `endpoint_dir` with inotify. Throws RegistryError.
  EndpointRegistry(std::string endpoint_dir, std::string state_dir,
                   std::unique_ptr<LinkLookup> links = make_netlink_lookup());
  ~EndpointRegistry();
  EndpointRegistry(const EndpointRegistry&) = delete;
  EndpointRegistry& operator=(const EndpointRegistry&) = delete;

  enum class Change { kUnchanged, kAdded, kUpdated, kRemoved, kInvalid };

  // Reads every record (records that vanished are dropped, their ids released). Returns the
  // number of valid records.
  size_t load_all();
  // Re-reads one record by file name; a missing file means the endpoint was removed.
  // kInvalid: the file name or the record is malformed (logged; any previous version is kept).
  Change reload(const std::string& file_name);

  // Every record as an endpoint, sorted by id. Records whose bridge or host veth is not there
  // are left out and listed in problems() (a stale record: the pod is gone).
  std::vector<dataplane::Endpoint> desired();
  // One record as an endpoint: nullopt if there is no valid record under that name. Throws
  // RegistryError when the record is there but its links are not (bridge or veth missing).
  std::optional<dataplane::Endpoint> desired_one(const std::string& file_name);
  // The endpoint id of a record (0 = no such record).
  uint32_t id_of(const std::string& file_name) const;
  // The pod behind each valid record (what NetworkPolicy selects), sorted by id. Records whose
  // links are missing are included: policy is keyed by endpoint id, not by interface.
  struct PodEndpoint {
    uint32_t endpoint_id = 0;
    std::string pod_namespace;  // K8S_POD_NAMESPACE; "" when the runtime did not pass it
    std::string pod_name;       // K8S_POD_NAME
    std::vector<net::Ip> ips;   // sorted like Endpoint::ips
  };
  std::vector<PodEndpoint> pod_endpoints() const;
  size_t size() const { return records_.size(); }
  // Malformed records and records whose links are missing, one line each, as of the last
  // load_all()/reload()/desired().
  std::vector<std::string> problems() const;

  // inotify fd for the event loop (readable when records change).
  int watch_fd() const { return inotify_fd_; }
  // Drains the inotify fd; returns the record file names that changed (created, replaced by
  // rename, deleted). Returns {"*"} when the directory itself went away and was re-created,
  // which asks the caller for a load_all().
  std::vector<std::string> read_watch_events();

  const std::string& endpoint_dir() const { return endpoint_dir_; }

 private:
  struct Entry {
    bridge::EndpointRecord record;
    uint32_t id = 0;
  };
  std::optional<bridge::EndpointRecord> read_record(const std::string& file_name, std::string* problem);
  uint32_t allocate_id(const std::string& file_name);
  void load_ids();
  void save_ids();
  void add_watch();

  std::string endpoint_dir_;
  std::string state_dir_;
  std::unique_ptr<LinkLookup> links_;
  std::map<std::string, Entry> records_;            // by file name
  std::map<std::string, uint32_t> ids_;             // by file name, persisted
  uint32_t next_id_ = 1;
  std::map<std::string, std::string> bad_records_;  // file name -> why
  std::map<std::string, std::string> link_problems_;
  int inotify_fd_ = -1;
  int watch_ = -1;
};

// One datagram received on the agent socket.
struct Datagram {
  std::string text;
  sockaddr_un sender{};
  socklen_t sender_len = 0;
  // Autobound or bound senders have an address to reply to; unbound ones do not.
  bool has_sender() const { return sender_len > sizeof(sa_family_t); }
};

// The agent's unix datagram socket. ferry-bridge sends a record file name; with
// "agentRequired" it sends from an autobound socket and waits for "ok <file>" or
// "error <message>".
class AgentSocket {
 public:
  // Replaces a stale socket file at `path` (refuses to replace anything that is not a socket),
  // creates the parent directory, binds, sets `mode`. Throws RegistryError.
  explicit AgentSocket(std::string path, unsigned mode = 0660);
  ~AgentSocket();  // closes and removes the socket file
  AgentSocket(const AgentSocket&) = delete;
  AgentSocket& operator=(const AgentSocket&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Non-blocking; nullopt when nothing is queued.
  std::optional<Datagram> receive();
  // Best effort: a sender without an address, or one that went away, gets nothing.
  // Returns true if the reply was sent.
  bool reply(const Datagram& to, const std::string& text);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace ferry::registry
