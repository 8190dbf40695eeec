// ferry-portmap end to end, chained after a bridge + host-local (the reference pair, and
// ferry-bridge + ferry-host-local when they are built): TCP and UDP host ports reached from
// a client namespace and from the host (its own address and 127.0.0.1), hairpin through the
// host port with masquerade, stale UDP conntrack removal, containerd's capitalised keys,
// the rules in iptables-save, CHECK, DEL, GC, IPv6, concurrent ADDs, errors, and ADD/DEL
// latency against the reference portmap.
//
// Everything made here is named h4-* (netns, networks) or h4* (links); TearDown removes the
// FERRY-DN-* chains whose comments name an h4-* network, and the shared FERRY-HOSTPORT-*
// chains when no container chain of anyone is left in them.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "tests/integration/support.h"

namespace ferry::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kPortmap = "ferry-portmap";
const std::string kBridge = "h4br0";
const std::string kPodSubnet4 = "172.30.70.0/24";
const std::string kPodSubnet6 = "fd00:4:70::/64";
const std::string kClientHost4 = "192.168.77.1";  // the host's address on the client link
const std::string kClientHost6 = "fd00:4:77::1";

// A TCP greeter on :80 (tells the peer its address) and a UDP echo on :53, dual-stack.
const char* kServerPy = R"PY(
import socket, sys, threading
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("::", 80)); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", 53))
open(sys.argv[1], "w").close()
def peer(a): return a[0][7:] if a[0].startswith("::ffff:") else a[0]
def udp():
    while True:
        d, a = u.recvfrom(512); u.sendto(b"udp-pong " + peer(a).encode() + b"\n", a)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, a = t.accept(); c.sendall(b"pod-h4 " + peer(a).encode() + b"\n"); c.close()
)PY";

// ---------------------------------------------------------------------------------------
// Cleanup of the nat table, scoped to h4-* networks.

// Holds ferry-portmap's own lock so no plugin run interleaves with the cleanup.
struct PortmapLock {
  int fd;
  PortmapLock() {
    fs::create_directories("/run/ferry");
    fd = open("/run/ferry/portmap.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) flock(fd, LOCK_EX);
  }
  ~PortmapLock() {
    if (fd >= 0) close(fd);
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void cleanup_family(const std::string& ipt) {
  std::string save = sh_status(ipt + "-save -t nat 2>/dev/null").out;
  std::vector<std::string> lines = lines_of(save);
  std::set<std::string> ours;  // FERRY-DN-* chains of h4-* networks
  std::set<std::string> all_container_chains;
  for (const auto& l : lines) {
    if (!l.starts_with("-A ")) continue;
    std::string chain = l.substr(3, l.find(' ', 3) - 3);
    size_t j = l.rfind("-j ");
    std::string target = j == std::string::npos ? "" : l.substr(j + 3);
    for (const std::string& c : {chain, target})
      if (c.starts_with("FERRY-DN-")) {
        all_container_chains.insert(c);
        if (l.find("ferry: hostport net=h4-") != std::string::npos) ours.insert(c);
      }
  }
  for (const auto& l : lines)
    if (l.starts_with(":FERRY-DN-")) all_container_chains.insert(l.substr(1, l.find(' ') - 1));
  std::string script = "*nat\n", removes;
  for (const auto& c : ours) {
    script += ":" + c + " - [0:0]\n";
    removes += "-X " + c + "\n";
  }
  for (const auto& l : lines) {
    if (!l.starts_with("-A FERRY-HOSTPORT-DNAT ")) continue;
    for (const auto& c : ours)
      if (l.ends_with("-j " + c)) script += "-D" + l.substr(2) + "\n";
  }
  script += removes;
  // Nobody else's container chain left: the shared chains go too, leaving the table as found.
  if (all_container_chains.size() == ours.size() && save.find(":FERRY-HOSTPORT-DNAT") != std::string::npos) {
    for (const auto& l : lines)
      if ((l.starts_with("-A PREROUTING ") || l.starts_with("-A OUTPUT ") || l.starts_with("-A POSTROUTING ")) &&
          l.find("\"ferry: hostport ") != std::string::npos)
        script += "-D" + l.substr(2) + "\n";
    for (const char* c : {"FERRY-HOSTPORT-DNAT", "FERRY-HOSTPORT-SETMARK", "FERRY-HOSTPORT-MASQ"})
      if (save.find(std::string(":") + c + " ") != std::string::npos)
        script += std::string(":") + c + " - [0:0]\n-X " + c + "\n";
  }
  if (script == "*nat\n") return;
  script += "COMMIT\n";
  std::string file = "/tmp/h4-cleanup-" + ipt + ".txt";
  std::ofstream(file) << script;
  sh_status(ipt + "-restore --noflush < " + file + " 1>&2");
  fs::remove(file);
}

void cleanup_nat() {
  PortmapLock lock;
  cleanup_family("iptables");
  cleanup_family("ip6tables");
}

// ---------------------------------------------------------------------------------------
// A pod: a namespace wired by a bridge plugin (+ host-local), optionally serving on :80/:53.

struct Stack {
  std::string name;     // for messages
  std::string bridge;   // plugin binary (path or name in plugin_dir())
  std::string ipam;     // ipam "type"
  std::string cni_path;
};

Stack reference_stack() {
  return {"reference", reference_plugin_dir() + "/bridge", "host-local", reference_plugin_dir()};
}
Stack ferry_stack() {
  return {"ferry", "ferry-bridge", "ferry-host-local", plugin_dir() + ":" + reference_plugin_dir()};
}
bool ferry_stack_built() {
  return fs::exists(plugin_dir() + "/ferry-bridge") && fs::exists(plugin_dir() + "/ferry-host-local");
}

class Pod {
 public:
  Pod(const Stack& stack, std::string netns, std::string container_id, std::string network,
      std::string data_dir, bool ipv6)
      : stack_(stack), ns_(std::move(netns)), id_(std::move(container_id)),
        network_(std::move(network)), data_dir_(std::move(data_dir)) {
    json ranges = json::array({json::array({{{"subnet", kPodSubnet4}}})});
    json routes = json::array({{{"dst", "0.0.0.0/0"}}});
    if (ipv6) {
      ranges.push_back(json::array({{{"subnet", kPodSubnet6}}}));
      routes.push_back({{"dst", "::/0"}});
    }
    conf_ = {{"cniVersion", "1.0.0"},
             {"name", network_},
             {"type", "bridge"},
             {"bridge", kBridge},
             {"isGateway", true},
             {"hairpinMode", true},
             // As containerd's default conflist; its nat rules also keep conntrack active
             // on the host, as on any real node.
             {"ipMasq", true},
             {"ipam", {{"type", stack_.ipam}, {"ranges", ranges}, {"routes", routes}, {"dataDir", data_dir_}}}};
    PluginRun r = run_plugin(stack_.bridge, call("ADD"), conf_);
    if (r.exit_code != 0) throw std::runtime_error(stack_.name + " bridge ADD failed: " + r.out + r.err);
    result_ = r.json_out();
  }
  ~Pod() {
    stop_server();
    run_plugin(stack_.bridge, call("DEL"), conf_);
  }

  PluginCall call(const std::string& cmd) const {
    PluginCall c;
    c.command = cmd;
    c.container_id = id_;
    c.netns = ns_.path();
    c.cni_path = stack_.cni_path;
    return c;
  }
  const json& result() const { return result_; }
  const std::string& id() const { return id_; }
  const TestNetns& ns() const { return ns_; }
  std::string ip(int family) const {
    for (const auto& ip : result_["ips"]) {
      std::string a = ip["address"];
      if ((a.find(':') != std::string::npos) == (family == 6)) return a.substr(0, a.find('/'));
    }
    return "";
  }

  void serve() {
    std::string script = "/tmp/h4-server.py", ready = "/tmp/h4-ready-" + ns_.name();
    std::ofstream(script) << kServerPy;
    fs::remove(ready);
    server_pid_ = std::stoi(sh("ip netns exec " + ns_.name() + " /usr/bin/python3 " + script + " " + ready +
                               " >/dev/null 2>&1 & echo $!"));
    for (int i = 0; i < 500 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!fs::exists(ready)) throw std::runtime_error("pod server did not start in " + ns_.name());
  }
  void stop_server() {
    if (server_pid_ > 0) sh_status("kill " + std::to_string(server_pid_) + " 2>/dev/null");
    server_pid_ = -1;
    fs::remove("/tmp/h4-ready-" + ns_.name());
  }

 private:
  Stack stack_;
  TestNetns ns_;
  std::string id_, network_, data_dir_;
  json conf_, result_;
  int server_pid_ = -1;
};

// The client namespace, linked to the host by a veth (host side h4cl0).
class Client {
 public:
  Client() : ns_("h4-client") {
    sh_status("ip link del h4cl0 2>/dev/null");
    sh("ip link add h4cl0 type veth peer name eth0 netns h4-client");
    sh("ip addr add " + kClientHost4 + "/30 dev h4cl0");
    sh("ip addr add " + kClientHost6 + "/64 dev h4cl0 nodad");
    sh("ip link set h4cl0 up");
    ns_.exec("ip addr add 192.168.77.2/30 dev eth0");
    ns_.exec("ip addr add fd00:4:77::2/64 dev eth0 nodad");
    ns_.exec("ip link set eth0 up");
    ns_.exec("ip route add default via " + kClientHost4);
    ns_.exec("ip -6 route add default via " + kClientHost6);
  }
  ~Client() { sh_status("ip link del h4cl0 2>/dev/null"); }
  const TestNetns& ns() const { return ns_; }

 private:
  TestNetns ns_;
};

std::string tcp_get(const std::string& where, const std::string& host, int port) {
  std::string cmd = "nc -w 3 " + host + " " + std::to_string(port) + " </dev/null 2>/dev/null";
  if (!where.empty()) cmd = "ip netns exec " + where + " " + cmd;
  return sh_status(cmd).out;
}

std::string udp_ask(const std::string& where, const std::string& host, int port, int src_port = 0) {
  std::string cmd = "nc -u -w 1 " + (src_port ? "-p " + std::to_string(src_port) + " " : "") + host + " " +
                    std::to_string(port) + " <<EOF 2>/dev/null\nping\nEOF";
  if (!where.empty()) cmd = "ip netns exec " + where + " " + cmd;
  return sh_status(cmd).out;
}

json mapping(int host, int cont, const std::string& proto = "tcp", const std::string& host_ip = "") {
  json m = {{"hostPort", host}, {"containerPort", cont}, {"protocol", proto}};
  if (!host_ip.empty()) m["hostIP"] = host_ip;
  return m;
}

std::string nat_save(int family = 4) {
  return sh(family == 4 ? "iptables-save -t nat 2>/dev/null" : "ip6tables-save -t nat 2>/dev/null");
}

std::vector<std::string> rules_of(const std::string& save, const std::string& chain) {
  std::vector<std::string> out;
  for (const auto& l : lines_of(save))
    if (l.starts_with("-A " + chain + " ")) out.push_back(l);
  return out;
}

std::string fnv_chain(const std::string& network, const std::string& id) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : network + id) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "FERRY-DN-%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The reference portmap leaves its shared CNI-HOSTPORT-* chains behind; remove them when no
// CNI-DN-* chain (of anyone) uses them any more.
void remove_reference_shared_chains() {
  std::string save = nat_save();
  if (save.find(":CNI-DN-") != std::string::npos || save.find(":CNI-HOSTPORT-DNAT") == std::string::npos) return;
  std::string script = "*nat\n";
  for (const auto& l : lines_of(save))
    if ((l.starts_with("-A PREROUTING ") || l.starts_with("-A OUTPUT ") || l.starts_with("-A POSTROUTING ")) &&
        l.find("CNI-HOSTPORT-") != std::string::npos)
      script += "-D" + l.substr(2) + "\n";
  for (const char* c : {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"})
    if (save.find(std::string(":") + c + " ") != std::string::npos)
      script += std::string(":") + c + " - [0:0]\n-X " + c + "\n";
  std::ofstream("/tmp/h4-ref-cleanup.txt") << script << "COMMIT\n";
  sh_status("iptables-restore --noflush < /tmp/h4-ref-cleanup.txt 1>&2");
  fs::remove("/tmp/h4-ref-cleanup.txt");
}

class Portmap : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    ASSERT_TRUE(fs::exists(plugin_dir() + "/" + kPortmap)) << "build ferry-portmap first";
    char tmpl[] = "/tmp/h4-ipam.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    data_dir_ = tmpl;
  }
  void TearDown() override {
    pods_.clear();
    client_.reset();
    cleanup_nat();
    sh_status("ip link del h4fk0 2>/dev/null");
    fs::remove("/tmp/h4-server.py");
    sh_status("ip link del " + kBridge + " 2>/dev/null");
    if (!data_dir_.empty()) fs::remove_all(data_dir_);
  }

  Pod& add_pod(const Stack& stack, const std::string& ns, const std::string& id, bool ipv6 = false) {
    pods_.push_back(std::make_unique<Pod>(stack, ns, id, network_, data_dir_, ipv6));
    return *pods_.back();
  }
  Client& client() {
    if (!client_) client_ = std::make_unique<Client>();
    return *client_;
  }
  // Tests with made-up prevResults (no pod) route 172.30.80.0/22 to a veth of their own, so
  // route_localnet is set there and never on the host's real interface.
  void fake_container_link() {
    sh_status("ip link del h4fk0 2>/dev/null");
    sh("ip link add h4fk0 type veth peer name h4fk1");
    sh("ip addr add 172.30.80.1/22 dev h4fk0");
    sh("ip link set h4fk0 up");
    sh("ip link set h4fk1 up");
  }

  json portmap_conf(const json& mappings, const json& prev, const std::string& version = "1.0.0") const {
    json c = {{"cniVersion", version},
              {"name", network_},
              {"type", kPortmap},
              {"capabilities", {{"portMappings", true}}},
              {"runtimeConfig", {{"portMappings", mappings}}}};
    if (!prev.is_null()) c["prevResult"] = prev;
    return c;
  }
  PluginRun portmap(const std::string& cmd, const std::string& id, const json& conf,
                    const std::string& netns = "/run/netns/h4-pod1") const {
    PluginCall c;
    c.command = cmd;
    c.container_id = id;
    c.netns = netns;
    return run_plugin(kPortmap, c, conf);
  }
  // ADD on `pod` with `mappings`; asserts success and that the output is prevResult.
  void add_mappings(Pod& pod, const json& mappings) {
    PluginRun r = portmap("ADD", pod.id(), portmap_conf(mappings, pod.result()));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    // An empty "dns" object is the same as none.
    json want = pod.result(), got = r.json_out();
    for (json* j : {&want, &got})
      if (j->contains("dns") && (*j)["dns"].empty()) j->erase("dns");
    EXPECT_EQ(got, want);
  }

  std::string network_ = "h4-net";
  std::string data_dir_;
  std::vector<std::unique_ptr<Pod>> pods_;
  std::unique_ptr<Client> client_;
};

// ---------------------------------------------------------------------------------------

void expect_tcp_reachable(Portmap& t, Pod& pod, const std::string& bridge_gw) {
  (void)t;
  // From the client namespace, through the host's address: the pod sees the client itself.
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8080), "pod-h4 192.168.77.2\n");
  // From the host, to its own address and to 127.0.0.1 (route_localnet + masquerade).
  EXPECT_EQ(tcp_get("", kClientHost4, 8080), "pod-h4 " + kClientHost4 + "\n");
  EXPECT_EQ(tcp_get("", "127.0.0.1", 8080), "pod-h4 " + bridge_gw + "\n");
  EXPECT_EQ(sh("cat /proc/sys/net/ipv4/conf/" + kBridge + "/route_localnet"), "1\n");
  // Hairpin: the pod reaches itself through host:8080, masqueraded to the bridge address.
  EXPECT_EQ(tcp_get(pod.ns().name(), kClientHost4, 8080), "pod-h4 " + bridge_gw + "\n");
  // The container port itself is not what is mapped: 8081 leads nowhere.
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8081), "");
}

TEST_F(Portmap, TcpHostPortReachableFromClientHostAndPodWithReferenceBridge) {
  client();
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-tcp");
  pod.serve();
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8080), "");  // nothing before ADD
  add_mappings(pod, json::array({mapping(8080, 80)}));
  expect_tcp_reachable(*this, pod, "172.30.70.1");
}

TEST_F(Portmap, TcpHostPortWithFerryBridgeAndFerryHostLocal) {
  if (!ferry_stack_built()) GTEST_SKIP() << "ferry-bridge / ferry-host-local are not built yet";
  client();
  Pod& pod = add_pod(ferry_stack(), "h4-pod1", "h4-ctr-ferry");
  pod.serve();
  add_mappings(pod, json::array({mapping(8080, 80)}));
  expect_tcp_reachable(*this, pod, "172.30.70.1");
  PluginRun check = portmap("CHECK", pod.id(), portmap_conf(json::array({mapping(8080, 80)}), pod.result()));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  PluginRun del = portmap("DEL", pod.id(), portmap_conf(json::array({mapping(8080, 80)}), pod.result()));
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8080), "");
}

TEST_F(Portmap, UdpHostPortAndStaleConntrackIsRemoved) {
  client();
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-udp");
  pod.serve();
  // Entries of an earlier run (DEL does not remove them, as the reference) would answer for us.
  sh_status("conntrack -D -p udp --orig-port-dst 5353 >/dev/null 2>&1");
  // Before the mapping, a host service answers on :5353, so the client's flow gets a
  // conntrack entry towards the host; without removing it, the flow's next datagrams would
  // keep going there after the mapping exists (reference plugins#123).
  sh("/usr/bin/python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
     "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('" + kClientHost4 + "', 5353)); "
     "open('/tmp/h4-udp-ready', 'w').close(); d, a = s.recvfrom(512); s.sendto(b'host-pong\\n', a)\" "
     ">/dev/null 2>&1 & echo $! > /tmp/h4-udp-pid");
  for (int i = 0; i < 500 && !fs::exists("/tmp/h4-udp-ready"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(udp_ask("h4-client", kClientHost4, 5353, 40053), "host-pong\n");
  sh_status("kill $(cat /tmp/h4-udp-pid) 2>/dev/null; rm -f /tmp/h4-udp-pid /tmp/h4-udp-ready");
  ASSERT_NE(sh("conntrack -L -p udp --orig-port-dst 5353 2>/dev/null"), "");
  add_mappings(pod, json::array({mapping(5353, 53, "udp")}));
  EXPECT_EQ(sh("conntrack -L -p udp --orig-port-dst 5353 2>/dev/null"), "");
  EXPECT_EQ(udp_ask("h4-client", kClientHost4, 5353, 40053), "udp-pong 192.168.77.2\n");
  EXPECT_EQ(udp_ask("", "127.0.0.1", 5353), "udp-pong 172.30.70.1\n");
}

TEST_F(Portmap, ContainerdCapitalisedKeys) {
  client();
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-caps");
  pod.serve();
  json mappings = json::array({{{"HostPort", 8080}, {"ContainerPort", 80}, {"Protocol", "tcp"}, {"HostIP", ""}}});
  add_mappings(pod, mappings);
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8080), "pod-h4 192.168.77.2\n");
  // DEL gets the same capitalised keys from the runtime's cache and must find the chain.
  PluginRun del = portmap("DEL", pod.id(), portmap_conf(mappings, pod.result()));
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(nat_save().find(fnv_chain(network_, pod.id())), std::string::npos);
}

TEST_F(Portmap, HostIpLimitsTheMappingToThatAddress) {
  client();
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-hostip");
  pod.serve();
  add_mappings(pod, json::array({mapping(8080, 80, "tcp", kClientHost4), mapping(8081, 80, "tcp", "fd00::99")}));
  EXPECT_EQ(tcp_get("", kClientHost4, 8080), "pod-h4 " + kClientHost4 + "\n");
  EXPECT_EQ(tcp_get("", "172.30.70.1", 8080), "");  // another local address: not mapped
  // The IPv6 hostIP's mapping is not installed for the IPv4 address.
  EXPECT_EQ(nat_save().find("--dport 8081 "), std::string::npos);
}

TEST_F(Portmap, RulesCarryFerryCommentsNamingNetworkAndContainer) {
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-comments");
  add_mappings(pod, json::array({mapping(8080, 80), mapping(5353, 53, "udp")}));
  std::string save = nat_save();
  std::string chain = fnv_chain(network_, pod.id());
  std::vector<std::string> rules = rules_of(save, chain);
  ASSERT_EQ(rules.size(), 6u) << save;  // per mapping: hairpin mark, localhost mark, DNAT
  for (const auto& r : rules)
    EXPECT_NE(r.find("--comment \"ferry: hostport net=h4-net id=h4-ctr-comments\""), std::string::npos) << r;
  EXPECT_NE(save.find("-j DNAT --to-destination " + pod.ip(4) + ":80"), std::string::npos);
  std::vector<std::string> entries = rules_of(save, "FERRY-HOSTPORT-DNAT");
  EXPECT_EQ(std::count_if(entries.begin(), entries.end(),
                          [&](const std::string& l) { return l.ends_with("-j " + chain); }),
            2);
  for (const char* chain_name : {"PREROUTING", "OUTPUT", "POSTROUTING", "FERRY-HOSTPORT-SETMARK", "FERRY-HOSTPORT-MASQ"}) {
    auto ours = rules_of(save, chain_name);
    EXPECT_EQ(std::count_if(ours.begin(), ours.end(),
                            [](const std::string& l) { return l.find("\"ferry: hostport ") != std::string::npos; }),
              1)
        << chain_name << "\n" << save;
  }
  // ferry's rules never use the reference's chain names, so both plugins can coexist (the
  // reference's own shared CNI-HOSTPORT-* chains may exist from an interop test).
  std::istringstream lines(save);
  for (std::string l; std::getline(lines, l);) {
    if (l.find("ferry: ") != std::string::npos) {
      EXPECT_EQ(l.find("CNI-"), std::string::npos) << l;
    }
  }
}

TEST_F(Portmap, CheckPassesThenReportsARuleDeletedByHand) {
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-check");
  json conf = portmap_conf(json::array({mapping(8080, 80)}), pod.result());
  add_mappings(pod, conf["runtimeConfig"]["portMappings"]);
  PluginRun ok = portmap("CHECK", pod.id(), conf);
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_EQ(ok.out, "");

  std::string chain = fnv_chain(network_, pod.id());
  std::vector<std::string> rules = rules_of(nat_save(), chain);
  ASSERT_EQ(rules.size(), 3u);
  sh("iptables -t nat -D" + rules[2].substr(2));  // the DNAT rule
  PluginRun bad = portmap("CHECK", pod.id(), conf);
  EXPECT_NE(bad.exit_code, 0);
  json err = bad.json_out();
  EXPECT_EQ(err["code"], 999);
  EXPECT_NE(err["details"].get<std::string>().find("missing rule in " + chain), std::string::npos) << bad.out;
  EXPECT_NE(err["details"].get<std::string>().find("DNAT --to-destination " + pod.ip(4) + ":80"),
            std::string::npos);

  // A second ADD repairs it (and does not duplicate the entry rule).
  add_mappings(pod, conf["runtimeConfig"]["portMappings"]);
  EXPECT_EQ(portmap("CHECK", pod.id(), conf).exit_code, 0);
  std::vector<std::string> entries = rules_of(nat_save(), "FERRY-HOSTPORT-DNAT");
  EXPECT_EQ(std::count_if(entries.begin(), entries.end(), [&](const std::string& l) { return l.ends_with(chain); }), 1);

  // CHECK needs prevResult.
  PluginRun no_prev = portmap("CHECK", pod.id(), portmap_conf(json::array({mapping(8080, 80)}), nullptr));
  EXPECT_EQ(no_prev.json_out()["code"], 7);
}

TEST_F(Portmap, DelRemovesTheContainerChainAndIsIdempotent) {
  client();
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-del");
  pod.serve();
  json mappings = json::array({mapping(8080, 80)});
  add_mappings(pod, mappings);
  std::string chain = fnv_chain(network_, pod.id());
  ASSERT_NE(nat_save().find(":" + chain), std::string::npos);

  // DEL without the mappings is a no-op, as the reference (the runtime resends them).
  PluginRun noop = portmap("DEL", pod.id(), portmap_conf(json::array(), nullptr));
  EXPECT_EQ(noop.exit_code, 0) << noop.out;
  EXPECT_NE(nat_save().find(":" + chain), std::string::npos);

  // DEL works without prevResult and without the netns.
  PluginRun del = portmap("DEL", pod.id(), portmap_conf(mappings, nullptr), "/run/netns/h4-gone");
  EXPECT_EQ(del.exit_code, 0) << del.out;
  std::string save = nat_save();
  EXPECT_EQ(save.find(chain), std::string::npos) << save;
  EXPECT_EQ(tcp_get("h4-client", kClientHost4, 8080), "");
  PluginRun again = portmap("DEL", pod.id(), portmap_conf(mappings, nullptr));
  EXPECT_EQ(again.exit_code, 0) << again.out;
  EXPECT_EQ(again.out, "");
}

TEST_F(Portmap, GcRemovesChainsOfContainersNotInTheValidList) {
  // portmap does not need a live namespace: prevResults with addresses are enough.
  fake_container_link();
  auto prev = [](const std::string& ip) {
    return json{{"cniVersion", "1.1.0"}, {"ips", {{{"address", ip + "/24"}}}}};
  };
  json mappings = json::array({mapping(18080, 80)});
  for (auto [id, ip] : {std::pair{"h4-keep", "172.30.80.2"}, std::pair{"h4-gone", "172.30.80.3"}}) {
    PluginRun r = portmap("ADD", id, portmap_conf(mappings, prev(ip), "1.1.0"));
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  // A chain of another network with the same container ID must survive this network's GC.
  network_ = "h4-other";
  ASSERT_EQ(portmap("ADD", "h4-gone", portmap_conf(mappings, prev("172.30.80.4"), "1.1.0")).exit_code, 0);
  network_ = "h4-net";

  json gc = {{"cniVersion", "1.1.0"},
             {"name", network_},
             {"type", kPortmap},
             {"cni.dev/valid-attachments", {{{"containerID", "h4-keep"}, {"ifname", "eth0"}}}}};
  PluginRun r = portmap("GC", "", gc);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::string save = nat_save();
  EXPECT_NE(save.find(":" + fnv_chain("h4-net", "h4-keep")), std::string::npos);
  EXPECT_EQ(save.find(fnv_chain("h4-net", "h4-gone")), std::string::npos);
  EXPECT_NE(save.find(":" + fnv_chain("h4-other", "h4-gone")), std::string::npos);
  // GC is idempotent.
  EXPECT_EQ(portmap("GC", "", gc).exit_code, 0);
}

TEST_F(Portmap, Ipv6MappingFromTheHost) {
  Pod& pod = add_pod(reference_stack(), "h4-pod1", "h4-ctr-v6", /*ipv6=*/true);
  client();  // for the host's IPv6 address on h4cl0
  pod.serve();
  add_mappings(pod, json::array({mapping(8080, 80)}));
  std::string save6 = nat_save(6);
  std::string chain = fnv_chain(network_, pod.id());
  EXPECT_NE(save6.find("-j DNAT --to-destination [" + pod.ip(6) + "]:80"), std::string::npos) << save6;
  EXPECT_NE(save6.find("-s fd00:4:70::/64 -p tcp -m tcp --dport 8080"), std::string::npos);
  EXPECT_EQ(save6.find("127.0.0.1"), std::string::npos);
  EXPECT_EQ(tcp_get("", kClientHost6, 8080), "pod-h4 " + kClientHost6 + "\n");
  // Both families are removed by one DEL.
  ASSERT_EQ(portmap("DEL", pod.id(), portmap_conf(json::array({mapping(8080, 80)}), nullptr)).exit_code, 0);
  EXPECT_EQ(nat_save(6).find(chain), std::string::npos);
  EXPECT_EQ(nat_save(4).find(chain), std::string::npos);
}

TEST_F(Portmap, ConcurrentAddsCreateTheSharedJumpsOnce) {
  cleanup_nat();  // start from a table without the shared chains when nobody else uses them
  fake_container_link();
  json mappings = json::array({mapping(18090, 80)});
  std::vector<std::thread> threads;
  std::vector<int> codes(6, -1);
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&, i] {
      json prev = {{"cniVersion", "1.0.0"}, {"ips", {{{"address", "172.30.81." + std::to_string(i + 2) + "/24"}}}}};
      codes[i] = portmap("ADD", "h4-par" + std::to_string(i), portmap_conf(mappings, prev)).exit_code;
    });
  for (auto& t : threads) t.join();
  for (int c : codes) EXPECT_EQ(c, 0);
  std::string save = nat_save();
  for (const char* chain : {"PREROUTING", "OUTPUT", "POSTROUTING"}) {
    auto rules = rules_of(save, chain);
    EXPECT_EQ(std::count_if(rules.begin(), rules.end(),
                            [](const std::string& l) { return l.find("FERRY-HOSTPORT") != std::string::npos; }),
              1)
        << chain << "\n" << save;
  }
  EXPECT_EQ(rules_of(save, "FERRY-HOSTPORT-SETMARK").size(), 1u);
  EXPECT_EQ(rules_of(save, "FERRY-HOSTPORT-MASQ").size(), 1u);
  EXPECT_EQ(rules_of(save, "FERRY-HOSTPORT-DNAT").size() >= 6u, true);
}

TEST_F(Portmap, CoexistsWithTheReferencePortmap) {
  fake_container_link();
  json mappings = json::array({mapping(18300, 80)});
  auto prev = [](const std::string& ip) {
    return json{{"cniVersion", "1.0.0"}, {"ips", {{{"address", ip + "/22"}}}}};
  };
  PluginCall ref_call;
  ref_call.command = "ADD";
  ref_call.container_id = "h4-co-ref";
  ref_call.netns = "/run/netns/h4-pod1";
  json ref_conf = portmap_conf(mappings, prev("172.30.80.20"));
  ref_conf["type"] = "portmap";
  ASSERT_EQ(run_plugin(reference_plugin_dir() + "/portmap", ref_call, ref_conf).exit_code, 0);
  ASSERT_EQ(portmap("ADD", "h4-co-ferry", portmap_conf(mappings, prev("172.30.80.21"))).exit_code, 0);
  std::string save = nat_save();
  EXPECT_NE(save.find("--to-destination 172.30.80.20:80"), std::string::npos);
  EXPECT_NE(save.find("--to-destination 172.30.80.21:80"), std::string::npos);

  // Each DEL removes only its own plugin's rules. (The reference's own CHECK cannot serve as
  // the witness: v1.1.1 checks an IPv6 chain even for an IPv4-only container and fails.)
  ASSERT_EQ(portmap("DEL", "h4-co-ferry", portmap_conf(mappings, nullptr)).exit_code, 0);
  save = nat_save();
  EXPECT_NE(save.find("--to-destination 172.30.80.20:80"), std::string::npos);
  EXPECT_EQ(save.find("--to-destination 172.30.80.21:80"), std::string::npos);
  EXPECT_NE(save.find(":CNI-DN-"), std::string::npos);
  ref_call.command = "DEL";
  ASSERT_EQ(run_plugin(reference_plugin_dir() + "/portmap", ref_call, ref_conf).exit_code, 0);
  EXPECT_EQ(nat_save().find("172.30.80.20"), std::string::npos);
  remove_reference_shared_chains();
}

TEST_F(Portmap, Errors) {
  // ADD without prevResult.
  PluginRun r = portmap("ADD", "h4-err", portmap_conf(json::array({mapping(8080, 80)}), nullptr));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.json_out()["code"], 7);
  EXPECT_EQ(r.json_out()["msg"], "must be called as chained plugin");
  // nftables backend: unsupported field.
  json prev = {{"cniVersion", "1.0.0"}, {"ips", {{{"address", "172.30.83.2/22"}}}}};
  json conf = portmap_conf(json::array({mapping(8080, 80)}), prev);
  conf["backend"] = "nftables";
  r = portmap("ADD", "h4-err", conf);
  EXPECT_EQ(r.json_out()["code"], 2);
  // A bad port number.
  conf = portmap_conf(json::array({mapping(0, 80)}), prev);
  EXPECT_EQ(portmap("ADD", "h4-err", conf).json_out()["code"], 7);
  // No mappings: prevResult printed as is, in the request's version, nothing installed.
  conf = portmap_conf(json::array(), prev, "0.4.0");
  r = portmap("ADD", "h4-err", conf);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.json_out()["cniVersion"], "0.4.0");
  EXPECT_EQ(r.json_out()["ips"][0]["address"], "172.30.83.2/22");
  EXPECT_EQ(nat_save().find(fnv_chain(network_, "h4-err")), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Latency: one mapping, ADD and DEL, median of 30, against the reference portmap.

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

TEST_F(Portmap, LatencyAgainstReferencePortmap) {
  fake_container_link();
  json prev = {{"cniVersion", "1.0.0"},
               {"interfaces", {{{"name", "eth0"}, {"sandbox", "/run/netns/h4-pod1"}}}},
               {"ips", {{{"address", "172.30.82.2/22"}, {"interface", 0}}}}};
  json mappings = json::array({mapping(18100, 80)});
  auto measure = [&](const std::string& binary, const std::string& id, std::vector<double>& add,
                     std::vector<double>& del) {
    json conf = portmap_conf(mappings, prev);
    conf["type"] = binary.find('/') == std::string::npos ? binary : "portmap";
    for (int i = 0; i < 30; ++i) {
      PluginCall c;
      c.container_id = id;
      c.netns = "/run/netns/h4-pod1";
      c.command = "ADD";
      auto t0 = Clock::now();
      PluginRun a = run_plugin(binary, c, conf);
      auto t1 = Clock::now();
      c.command = "DEL";
      PluginRun d = run_plugin(binary, c, conf);
      auto t2 = Clock::now();
      ASSERT_EQ(a.exit_code, 0) << a.out;
      ASSERT_EQ(d.exit_code, 0) << d.out;
      add.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      del.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
  };
  std::vector<double> ref_add, ref_del, our_add, our_del;
  measure(reference_plugin_dir() + "/portmap", "h4-lat-ref", ref_add, ref_del);
  measure(kPortmap, "h4-lat-ferry", our_add, our_del);
  remove_reference_shared_chains();
  double ra = median_ms(ref_add), rd = median_ms(ref_del), fa = median_ms(our_add), fd = median_ms(our_del);
  std::printf("portmap latency, median of 30, one mapping: ADD reference %.1f ms, ferry %.1f ms; "
              "DEL reference %.1f ms, ferry %.1f ms\n", ra, fa, rd, fd);
  RecordProperty("reference_add_ms", std::to_string(ra));
  RecordProperty("ferry_add_ms", std::to_string(fa));
  RecordProperty("reference_del_ms", std::to_string(rd));
  RecordProperty("ferry_del_ms", std::to_string(fd));
  EXPECT_LT(fa, ra);
  EXPECT_LT(fd, rd);
}

}  // namespace
}  // namespace ferry::test
