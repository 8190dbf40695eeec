// macspoofchk through nft (rare feature: correctness over speed).
#include "spoofcheck.h"

#include <net/if.h>

#include <nlohmann/json.hpp>
#include <vector>

namespace ferry::bridge {

namespace {

using nlohmann::json;

void nft(const std::string& script, const std::string& what) {
  net::CommandResult r = net::run_command({"nft", "-f", "-"}, script);
  if (r.status != 0) {
    std::string err = r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    throw net::Error(what + ": nft exited with " + std::to_string(r.status) + ": " + err, EIO);
  }
}

struct BridgeNatTable {
  bool exists = false;
  std::set<std::string> chains;
  struct Rule {
    std::string chain;
    long handle = 0;
    std::string comment;
    std::string iifname;
  };
  std::vector<Rule> rules;
};

BridgeNatTable list_table() {
  BridgeNatTable t;
  net::CommandResult r = net::run_command({"nft", "-j", "-a", "list", "table", "bridge", "nat"});
  if (r.status != 0) return t;
  json j = json::parse(r.out, nullptr, false);
  if (!j.is_object() || !j.contains("nftables")) return t;
  t.exists = true;
  for (const json& item : j["nftables"]) {
    if (item.contains("chain")) t.chains.insert(item["chain"].value("name", ""));
    if (!item.contains("rule")) continue;
    const json& rule = item["rule"];
    BridgeNatTable::Rule out;
    out.chain = rule.value("chain", "");
    out.handle = rule.value("handle", 0L);
    out.comment = rule.value("comment", "");
    if (rule.contains("expr"))
      for (const json& e : rule["expr"]) {
        if (!e.contains("match")) continue;
        const json& m = e["match"];
        if (m.contains("left") && m["left"].contains("meta") && m["left"]["meta"].value("key", "") == "iifname" &&
            m.contains("right") && m["right"].is_string())
          out.iifname = m["right"].get<std::string>();
      }
    t.rules.push_back(out);
  }
  return t;
}

// Script removing the PREROUTING jumps with `comment` and the two chains, when present.
std::string render_removal(const BridgeNatTable& t, const std::string& comment, const std::string& iface_chain) {
  std::string text;
  for (const auto& r : t.rules)
    if (r.chain == "PREROUTING" && r.comment == comment)
      text += "delete rule bridge nat PREROUTING handle " + std::to_string(r.handle) + "\n";
  const std::string mac_chain = iface_chain + "-mac";
  for (const std::string& c : {iface_chain, mac_chain})
    if (t.chains.count(c)) text += "flush chain bridge nat " + c + "\n";
  for (const std::string& c : {iface_chain, mac_chain})
    if (t.chains.count(c)) text += "delete chain bridge nat " + c + "\n";
  return text;
}

}  // namespace

std::string render_spoofcheck_add(const SpoofCheck& sc) {
  const std::string c = " comment \"" + sc.comment() + "\"\n";
  return "add table bridge nat\n"
         "add chain bridge nat PREROUTING { type filter hook prerouting priority -300; policy accept; }\n"
         "add chain bridge nat " + sc.iface_chain() + "\n"
         "add chain bridge nat " + sc.mac_chain() + "\n"
         "flush chain bridge nat " + sc.iface_chain() + "\n"
         "flush chain bridge nat " + sc.mac_chain() + "\n"
         "add rule bridge nat " + sc.iface_chain() + " jump " + sc.mac_chain() + c +
         "add rule bridge nat " + sc.mac_chain() + " ether saddr " + sc.mac + " return" + c +
         "add rule bridge nat " + sc.mac_chain() + " drop" + c +
         "add rule bridge nat PREROUTING iifname \"" + sc.host_veth + "\" jump " + sc.iface_chain() + c;
}

void spoofcheck_add(const SpoofCheck& sc) {
  nft(render_spoofcheck_add(sc), "failed to set up MAC spoof checking on \"" + sc.host_veth + "\"");
}

void spoofcheck_del(std::string_view container_id, std::string_view ifname) {
  SpoofCheck sc{std::string(container_id), std::string(ifname), {}, {}};
  BridgeNatTable t = list_table();
  if (!t.exists) return;
  std::string script = render_removal(t, sc.comment(), sc.iface_chain());
  if (!script.empty()) nft(script, "failed to remove MAC spoof checking of container " + sc.container_id);
}

bool spoofcheck_present(std::string_view container_id, std::string_view ifname) {
  SpoofCheck sc{std::string(container_id), std::string(ifname), {}, {}};
  BridgeNatTable t = list_table();
  if (!t.chains.count(sc.mac_chain())) return false;
  for (const auto& r : t.rules)
    if (r.chain == "PREROUTING" && r.comment == sc.comment()) return true;
  return false;
}

void spoofcheck_gc(const std::set<std::string>& valid_veths) {
  BridgeNatTable t = list_table();
  std::string script;
  std::set<std::string> done;
  for (const auto& r : t.rules) {
    if (r.chain != "PREROUTING" || !r.comment.starts_with("macspoofchk-") || r.iifname.empty()) continue;
    if (valid_veths.count(r.iifname) || if_nametoindex(r.iifname.c_str()) != 0) continue;
    if (!done.insert(r.comment).second) continue;
    // comment "macspoofchk-<cid>-<ifname>" names the chain "cni-br-iface-<cid>-<ifname>".
    script += render_removal(t, r.comment, "cni-br-iface-" + r.comment.substr(12));
  }
  if (!script.empty()) nft(script, "failed to remove stale MAC spoof checking rules");
}

}  // namespace ferry::bridge
