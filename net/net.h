// net/net.h — thin RAII layer over the kernel's networking: network namespaces, sysctls,
// and (over libnl-route-3) links, veth pairs, bridges, addresses, routes.
//
// Error handling in this layer: functions throw net::Error (a std::runtime_error whose
// message carries the context, e.g. `failed to add address 10.1.0.2/24 to "eth0": File
// exists`) plus the errno/libnl code so callers can treat "already exists" / "not found"
// explicitly. The CNI plugins translate these to cni::Error at their boundary.
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

// =======================================================================================
// Links, addresses and routes over libnl-route-3 (and the external tools the plugins run).
//
// Every call takes a Socket: a NETLINK_ROUTE socket bound for life to the namespace it was
// created in. Use one Socket per namespace per batch of operations; for work inside a pod,
// create the socket inside in_netns (Socket::open_in does exactly that) and use it from
// anywhere afterwards.

struct nl_sock;
struct nl_msg;

namespace ferry::net {

// ---------------------------------------------------------------------------------------
// Value types (addresses in network byte order, as the kernel uses them)

struct Ip {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};
  static std::optional<Ip> parse(std::string_view text);
  int size() const { return family == AF_INET6 ? 16 : 4; }
  std::string str() const;
  bool operator==(const Ip&) const = default;
};

struct Prefix {
  Ip ip;  // may carry host bits (an interface address)
  int len = 0;
  static std::optional<Prefix> parse(std::string_view cidr);  // "10.1.0.2/24"
  std::string str() const;
  Prefix network() const;               // host bits cleared
  bool contains(const Ip& a) const;
  bool operator==(const Prefix&) const = default;
};

using Mac = std::array<uint8_t, 6>;
std::optional<Mac> parse_mac(std::string_view text);  // "c2:11:22:33:44:55" (or '-')
std::string mac_str(const Mac& mac);                  // lower-case, ':'-separated
Mac random_mac();  // locally administered unicast, from getrandom()

// ---------------------------------------------------------------------------------------
// Sockets

class Socket {
 public:
  static Socket open();                    // in the calling thread's namespace
  static Socket open_in(const Netns& ns);  // inside `ns`, bound to it for life

  Socket(Socket&&) noexcept = default;
  Socket& operator=(Socket&&) noexcept = default;
  ~Socket() = default;

  nl_sock* get() const { return sk_.get(); }

  // Sends `msg` (taking ownership), waits for the kernel's ACK. Returns 0 or a positive
  // errno; `extack` receives the kernel's extended-ack message when there is one.
  int request(nl_msg* msg, std::string* extack = nullptr);

 private:
  struct Deleter {
    void operator()(nl_sock* sk) const;
  };
  explicit Socket(nl_sock* sk) : sk_(sk) {}
  std::unique_ptr<nl_sock, Deleter> sk_;
};

// ---------------------------------------------------------------------------------------
// Links

struct Link {
  int index = 0;
  std::string name;
  std::string kind;     // IFLA_INFO_KIND: "bridge", "veth", ... ("" when the link has none)
  std::optional<Mac> mac;
  unsigned mtu = 0;
  unsigned flags = 0;   // IFF_*
  int operstate = 0;    // IF_OPER_* (RFC 2863)
  int master = 0;       // ifindex of the master device (bridge), 0 = none
  int peer_index = 0;   // IFLA_LINK: a veth's peer ifindex, in the peer's namespace
  std::string alias;    // IFLA_IFALIAS

  bool up() const;        // administratively up
  bool oper_up() const;   // operstate UP
  bool promisc() const;
};

std::optional<Link> find_link(Socket& sock, std::string_view name);  // nullopt if absent
std::optional<Link> find_link(Socket& sock, int index);
Link get_link(Socket& sock, std::string_view name);  // throws Error(ENODEV) if absent
std::vector<Link> list_links(Socket& sock);           // dump, retried on NLM_F_DUMP_INTR

struct BridgeSpec {
  std::string name;
  int mtu = 0;                  // 0 = kernel default
  bool vlan_filtering = false;  // IFLA_BR_VLAN_FILTERING at creation
  std::optional<Mac> mac;       // fixed MAC at creation (keeps it from following its ports)
};
// Creates the bridge and sets it up. An existing bridge is left as configured (its MTU and
// VLAN filtering are not changed) and only set up. Throws Error(EEXIST) "... already exists
// but is not a bridge" when `name` is another kind of link.
Link ensure_bridge(Socket& sock, const BridgeSpec& spec, bool* created = nullptr);

struct VethSpec {
  std::string name;           // created in the socket's namespace
  std::string peer_name;      // created in `peer_netns_fd` (or next to `name` if -1)
  int peer_netns_fd = -1;
  int mtu = 0;                // both ends; 0 = kernel default
  std::optional<Mac> mac;     // of `name`
  std::optional<Mac> peer_mac;
  int master = 0;             // enslave `name` to this ifindex in the same request
  bool up = false;            // set `name` up in the same request (the peer stays down)
};
// One RTM_NEWLINK: both ends exist afterwards, or neither. Throws Error(EEXIST) when
// either name is taken (the caller finds out which).
void create_veth(Socket& sock, const VethSpec& spec);

bool delete_link(Socket& sock, std::string_view name);  // false if it did not exist
// Deletes link `name` (a veth takes its peer along) and returns once the kernel has unlisted
// it (its RTM_DELLINK notification), while the rest of the kernel's work, the RCU barrier
// that makes a deletion take 10-30 ms, finishes in a detached child process. Observable
// state is the same as after delete_link. Falls back to delete_link when it cannot fork or
// the notification does not come within `timeout`. Call it while single-threaded, from the
// socket's namespace. Returns false if the link did not exist.
bool delete_link_detached(Socket& sock, std::string_view name,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
bool delete_link(Socket& sock, int index);
void set_link_up(Socket& sock, int index, bool up = true);
void set_master(Socket& sock, int index, int master);
void set_mac(Socket& sock, int index, const Mac& mac);
void set_promisc(Socket& sock, int index, bool on);
void set_alias(Socket& sock, int index, std::string_view alias);

// Bridge port flags, sent in one AF_BRIDGE RTM_SETLINK; unset fields are not touched.
struct BridgePortFlags {
  std::optional<bool> hairpin;   // IFLA_BRPORT_MODE
  std::optional<bool> isolated;  // IFLA_BRPORT_ISOLATED
};
void set_bridge_port(Socket& sock, int index, const BridgePortFlags& flags);

struct BridgeVlan {
  uint16_t vid = 0;
  bool pvid = false;
  bool untagged = false;
};
void bridge_vlan_add(Socket& sock, int port_index, const BridgeVlan& vlan);
void bridge_vlan_del(Socket& sock, int port_index, uint16_t vid);
std::vector<BridgeVlan> bridge_vlans(Socket& sock, int port_index);

// Waits for link `index` to be oper-UP: checks once and, if it is not, waits for the
// kernel's link notification (no polling). Returns the last operstate seen.
int wait_oper_up(Socket& sock, int index, std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------------------
// Addresses

struct Address {
  int index = 0;
  Prefix prefix;
  unsigned flags = 0;  // IFA_F_* (TENTATIVE, DADFAILED, PERMANENT, NODAD, ...)
  int scope = 0;       // RT_SCOPE_*
};
// Throws Error(EEXIST) when the address is already there.
void add_address(Socket& sock, int index, const Prefix& prefix, unsigned flags = 0);
void delete_address(Socket& sock, int index, const Prefix& prefix);
// family AF_UNSPEC = both; index 0 = every link.
std::vector<Address> list_addresses(Socket& sock, int family = 0, int index = 0);
// Waits until no IPv6 address on `index` is tentative (DAD done). Throws Error on a
// DAD failure or when `timeout` passes while the link is oper-UP.
void wait_addresses_settled(Socket& sock, int index, std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------------------
// Routes

struct Route {
  Prefix dst;              // 0.0.0.0/0 or ::/0 for a default route
  std::optional<Ip> gw;
  int oif = 0;
  int table = 254;         // RT_TABLE_MAIN
  int scope = 0;           // RT_SCOPE_UNIVERSE
  int priority = 0;        // metric
  int mtu = 0;
  int advmss = 0;
  int protocol = 0;        // RTPROT_*; 0 = RTPROT_BOOT as `ip route add` does
  int type = 1;            // RTN_UNICAST
  unsigned flags = 0;      // rtm_flags: RTNH_F_ONLINK for a gateway not on any local subnet
};
// RTM_NEWROUTE with NLM_F_CREATE (no EXCL, like `ip route append` for v6 ECMP); an
// identical route is Error(EEXIST).
void add_route(Socket& sock, const Route& route);
void delete_route(Socket& sock, const Route& route);
// family AF_UNSPEC = both; table 0 = every table.
std::vector<Route> list_routes(Socket& sock, int family = 0, int table = 254);

// ---------------------------------------------------------------------------------------
// External tools (iptables-restore, nft): one exec, no shell.

struct CommandResult {
  int status = 0;  // exit status; 128+signal when killed; 127 when it could not be run
  std::string out;
  std::string err;
};
CommandResult run_command(const std::vector<std::string>& argv, std::string_view input = {});

// Full path of the executable `name`: looked up in $PATH, then in /usr/sbin:/sbin:/usr/bin:/bin
// (runtimes and agents do not always run with sbin in PATH). A name holding '/' is returned
// unchanged. nullopt when there is no such executable.
std::optional<std::string> find_executable(const std::string& name);

// iptables-save / iptables-restore text (pure; net/iptables_text.cpp).
// `text` as one double-quoted token that iptables-restore reads back verbatim (it unescapes
// \" and \\ inside quotes), e.g. for `--comment`.
std::string iptables_quote(std::string_view text);
// The tokens of one iptables-save line, split at blanks; a double-quoted token is returned
// without its quotes and unescaped (the inverse of iptables_quote).
std::vector<std::string> split_iptables_save_line(std::string_view line);

// ---------------------------------------------------------------------------------------
// Stable names

// FNV-1a 64 of `data`. Names of kernel objects (host veths, iptables chains, pinned BPF
// programs) derive from it and must come out the same in every process and every release of
// ferry (an upgraded plugin or agent has to find what the old one made): its output must never
// change.
uint64_t stable_hash64(std::string_view data);

// ---------------------------------------------------------------------------------------
// VXLAN devices, neighbours and FDB entries (net/vxlan.cpp, net/neigh.cpp): the overlay.

struct VxlanSpec {
  std::string name;
  uint32_t vni = 1;
  uint16_t port = 8472;        // UDP destination port
  std::optional<Ip> local;     // source address of the outer packets (the node's underlay IP)
  int underlay_index = 0;      // IFLA_VXLAN_LINK: the device outer packets leave by; 0 = any
  bool learning = false;       // false = "nolearning": remote MACs only from the FDB we write
  int mtu = 0;                 // 0 = kernel default
  std::optional<Mac> mac;
  bool up = true;
};
// A VXLAN link as the kernel reports it (fields of VxlanSpec that a link can be read back as).
struct Vxlan {
  Link link;
  uint32_t vni = 0;
  uint16_t port = 0;
  std::optional<Ip> local;
  int underlay_index = 0;
  bool learning = true;
};
// Creates the device (classic, not collect-metadata). Throws Error(EEXIST) when the name is taken.
void create_vxlan(Socket& sock, const VxlanSpec& spec);
// nullopt when there is no link `name`; Error(EEXIST) when it exists but is not a VXLAN device.
std::optional<Vxlan> find_vxlan(Socket& sock, std::string_view name);
void set_mtu(Socket& sock, int index, int mtu);

// A neighbour (ARP / NDP) entry: `ip` is reachable at `mac` on link `index`.
struct Neighbour {
  int index = 0;
  Ip ip;
  std::optional<Mac> mac;  // absent for incomplete/failed entries
  uint16_t state = 0;      // NUD_* (NUD_PERMANENT for the ones we write)
  uint8_t flags = 0;       // NTF_*
};
// Adds or replaces (NLM_F_REPLACE) a permanent entry for `ip` on `index`.
void set_neighbour(Socket& sock, int index, const Ip& ip, const Mac& mac);
bool delete_neighbour(Socket& sock, int index, const Ip& ip);  // false if there was none
// family AF_UNSPEC = IPv4 and IPv6; index 0 = every link.
std::vector<Neighbour> list_neighbours(Socket& sock, int family = 0, int index = 0);

// A forwarding-database entry of a device's own FDB (AF_BRIDGE, NTF_SELF): for VXLAN, frames
// to `mac` are sent to the remote VTEP `dst`.
struct FdbEntry {
  int index = 0;
  Mac mac{};
  std::optional<Ip> dst;  // NDA_DST (VXLAN remote)
  uint16_t state = 0;     // NUD_*
  uint8_t flags = 0;      // NTF_*
};
// Adds or replaces a permanent `mac dev <index> dst <dst> self` entry.
void set_fdb(Socket& sock, int index, const Mac& mac, const Ip& dst);
bool delete_fdb(Socket& sock, int index, const Mac& mac, const std::optional<Ip>& dst = {});
std::vector<FdbEntry> list_fdb(Socket& sock, int index);

}  // namespace ferry::net
