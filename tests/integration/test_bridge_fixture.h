// Shared fixture of the ferry-bridge integration tests (test_bridge*.cpp): one network, one
// bridge (h3br<N>), pod namespaces (h3-<N>-<name>), a private IPAM store and endpoint
// directory per test; TearDown removes every kernel object the test could have left, also
// when the test failed half way.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/support.h"

namespace ferry::test {

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Parses the JSON printed by `ip -j ...` (an empty output is an empty array).
inline json ip_json(const std::string& cmd) {
  std::string out = sh(cmd);
  if (out.find_first_not_of(" \n") == std::string::npos) return json::array();
  return json::parse(out);
}

// Removes nat rules (iptables and ip6tables) whose text contains `needle`, and the chains
// they belong to or jump to when those chains are ferry's.
inline void scrub_nat(const std::string& needle) {
  for (const char* tool : {"iptables", "ip6tables"}) {
    std::string save = sh_status(std::string(tool) + "-save -t nat 2>/dev/null").out;
    std::set<std::string> chains;
    std::istringstream in(save);
    std::string line;
    std::vector<std::string> builtin_rules;
    while (std::getline(in, line)) {
      if (line.rfind("-A ", 0) != 0 || line.find(needle) == std::string::npos) continue;
      std::string chain = line.substr(3, line.find(' ', 3) - 3);
      size_t j = line.rfind(" -j ");
      std::string target = j == std::string::npos ? "" : line.substr(j + 4);
      if (target.rfind("FERRY-MASQ-", 0) == 0 || target.rfind("CNI-", 0) == 0) chains.insert(target);
      if (chain.rfind("FERRY-MASQ-", 0) == 0) chains.insert(chain);
      else builtin_rules.push_back(line);
    }
    for (const std::string& r : builtin_rules)
      sh_status(std::string(tool) + " -w -t nat -D " + r.substr(3) + " 2>/dev/null");
    for (const std::string& c : chains) {
      sh_status(std::string(tool) + " -w -t nat -F " + c + " 2>/dev/null");
      sh_status(std::string(tool) + " -w -t nat -X " + c + " 2>/dev/null");
    }
  }
}

class BridgeFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    static int counter = 0;
    idx_ = ++counter;
    id_ = std::to_string(idx_);
    network_ = "h3-net-" + id_;
    bridge_ = "h3br" + id_;
    subnet_prefix_ = "10.213." + std::to_string(idx_ % 250);
    subnet6_prefix_ = "fd00:213:" + std::to_string(idx_ % 250) + "::";
    char tmpl[] = "/tmp/h3-bridge.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    scrub();
    ready_ = true;
  }

  void TearDown() override {
    if (!ready_) return;
    // DEL what is still registered, then remove anything left regardless.
    for (const auto& [cid, netns, ifname, c] : added_) call("DEL", cid, netns, c, ifname);
    pods_.clear();
    scrub();
    std::filesystem::remove_all(dir_);
  }

  void scrub() {
    sh_status("ip link del " + bridge_ + " 2>/dev/null");
    // Host veths of this network carry its name in their alias.
    for (const json& l : ip_json("ip -j -d link show type veth"))
      if (l.value("ifalias", "").find(" " + network_ + " ") != std::string::npos)
        sh_status("ip link del " + l.value("ifname", "") + " 2>/dev/null");
    scrub_nat("\\\"" + network_ + "\\\"");
    scrub_nat("h3-test-" + id_);
    // nftables: masquerade rules of this network, spoof-check rules of its containers.
    std::string t = sh_status("nft -a list table inet ferry_masquerade 2>/dev/null").out;
    std::istringstream in(t);
    std::string line;
    while (std::getline(in, line))
      if (line.find("net=" + network_ + " ") != std::string::npos) {
        std::string handle = line.substr(line.rfind("handle ") + 7);
        sh_status("nft delete rule inet ferry_masquerade masq_checks handle " + handle);
      }
    std::string b = sh_status("nft -a list table bridge nat 2>/dev/null").out;
    std::istringstream bin(b);
    std::vector<std::string> chains;
    const std::string mine = "cni-br-iface-h3c-" + id_ + "-";
    while (std::getline(bin, line)) {
      size_t at = line.find("chain " + mine);
      if (at != std::string::npos && line.find("jump") == std::string::npos) {
        chains.push_back(line.substr(at + 6, line.find(' ', at + 6) - at - 6));
      } else if (line.find("iifname") != std::string::npos && line.find("macspoofchk-h3c-" + id_ + "-") != std::string::npos) {
        sh_status("nft delete rule bridge nat PREROUTING handle " + line.substr(line.rfind("handle ") + 7));
      }
    }
    for (const std::string& c : chains) sh_status("nft flush chain bridge nat " + c + " 2>/dev/null");
    // The iface chain jumps to its -mac chain: delete the iface chains first.
    for (const std::string& c : chains)
      if (!c.ends_with("-mac")) sh_status("nft delete chain bridge nat " + c + " 2>/dev/null");
    for (const std::string& c : chains)
      if (c.ends_with("-mac")) sh_status("nft delete chain bridge nat " + c + " 2>/dev/null");
    // The shared tables, once nothing is left in them.
    if (!has_nft_rules("nft list chain inet ferry_masquerade masq_checks"))
      sh_status("nft delete table inet ferry_masquerade 2>/dev/null");
    if (!has_nft_rules("nft list table bridge nat")) sh_status("nft delete table bridge nat 2>/dev/null");
  }

  // True when the listing holds a rule (a line that is not a table/chain header, a base-chain
  // "type ..." line or a brace), or when it cannot be listed (leave it alone).
  static bool has_nft_rules(const std::string& list_cmd) {
    ShellResult r = sh_status(list_cmd + " 2>/dev/null");
    if (r.status != 0) return true;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      size_t at = line.find_first_not_of(" \t");
      if (at == std::string::npos) continue;
      std::string t = line.substr(at);
      if (t.rfind("table ", 0) == 0 || t.rfind("chain ", 0) == 0 || t.rfind("type ", 0) == 0 || t == "}") continue;
      return true;
    }
    return false;
  }

  // ---- configuration -------------------------------------------------------------------
  std::string subnet() const { return subnet_prefix_ + ".0/24"; }
  std::string gateway() const { return subnet_prefix_ + ".1"; }
  std::string subnet6() const { return subnet6_prefix_ + "/64"; }
  std::string gateway6() const { return subnet6_prefix_ + "1"; }
  std::string store() const { return dir_ + "/ipam/" + network_; }
  std::string endpoints() const { return dir_ + "/endpoints"; }

  json ipam(bool dual = false, const std::string& type = "ferry-host-local") const {
    json ranges = json::array({json::array({{{"subnet", subnet()}}})});
    json routes = json::array({{{"dst", "0.0.0.0/0"}}});
    if (dual) {
      ranges.push_back(json::array({{{"subnet", subnet6()}}}));
      routes.push_back({{"dst", "::/0"}});
    }
    return {{"type", type}, {"ranges", ranges}, {"routes", routes}, {"dataDir", dir_ + "/ipam"}};
  }

  json conf(json extra = json::object(), const std::string& version = "1.0.0") const {
    json c = {{"cniVersion", version}, {"name", network_},      {"type", "ferry-bridge"}, {"bridge", bridge_},
              {"isGateway", true},     {"ipam", ipam()},        {"endpointDir", endpoints()}};
    for (auto& [k, v] : extra.items()) c[k] = v;
    return c;
  }

  // ---- pods and plugin calls -----------------------------------------------------------
  TestNetns& pod(const std::string& name) {
    pods_.push_back(std::make_unique<TestNetns>("h3-" + id_ + "-" + name));
    return *pods_.back();
  }
  std::string cid(const std::string& name) const { return "h3c-" + id_ + "-" + name; }

  PluginRun call(const std::string& verb, const std::string& container_id, const std::string& netns, const json& c,
                 const std::string& ifname = "eth0", const std::string& cni_args = "",
                 const std::string& binary = "ferry-bridge") {
    PluginCall pc;
    pc.command = verb;
    pc.container_id = container_id;
    pc.netns = netns;
    pc.ifname = ifname;
    pc.cni_args = cni_args;
    return run_plugin(binary, pc, c);
  }

  // ADD that must succeed; remembered so TearDown DELs it.
  json add(const std::string& name, const TestNetns& ns, const json& c, const std::string& ifname = "eth0",
           const std::string& cni_args = "") {
    added_.push_back({cid(name), ns.path(), ifname, c});
    PluginRun r = call("ADD", cid(name), ns.path(), c, ifname, cni_args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return r.exit_code == 0 ? r.json_out() : json();
  }

  // conf + prevResult, as a runtime sends for CHECK and DEL.
  static json with_prev(json c, const json& result) {
    c["prevResult"] = result;
    return c;
  }

  // ---- observations --------------------------------------------------------------------
  bool host_link_exists(const std::string& name) const {
    return sh_status("ip link show dev " + name + " >/dev/null 2>&1").status == 0;
  }
  // Reservations in the IPAM store (not the lock or last_reserved_ip.* files).
  std::vector<std::string> reservations() const {
    std::vector<std::string> out;
    if (!std::filesystem::exists(store())) return out;
    for (auto& e : std::filesystem::directory_iterator(store())) {
      std::string f = e.path().filename();
      if (f != "lock" && f.rfind("last_reserved_ip.", 0) != 0) out.push_back(f);
    }
    return out;
  }
  // nat rules (both families) mentioning this network.
  int masq_rule_count() const {
    std::string needle = "\\\"" + network_ + "\\\"";
    int n = 0;
    for (const char* tool : {"iptables-save", "ip6tables-save"}) {
      std::istringstream in(sh_status(std::string(tool) + " -t nat 2>/dev/null").out);
      std::string line;
      while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
    }
    return n;
  }
  // Host veths of this network (by alias).
  std::vector<std::string> host_veths() const {
    std::vector<std::string> out;
    for (const json& l : ip_json("ip -j -d link show type veth"))
      if (l.value("ifalias", "").find(" " + network_ + " ") != std::string::npos) out.push_back(l["ifname"]);
    return out;
  }
  std::vector<std::string> endpoint_files() const {
    std::vector<std::string> out;
    if (!std::filesystem::exists(endpoints())) return out;
    for (auto& e : std::filesystem::directory_iterator(endpoints())) out.push_back(e.path().filename());
    return out;
  }

  int idx_ = 0;
  std::string id_, network_, bridge_, subnet_prefix_, subnet6_prefix_, dir_;
  bool ready_ = false;
  std::vector<std::unique_ptr<TestNetns>> pods_;
  struct Added {
    std::string cid, netns, ifname;
    json conf;
  };
  std::vector<Added> added_;
};

}  // namespace ferry::test
