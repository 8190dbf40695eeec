// ipMasq rule rendering (pure) and application through iptables-restore / nft.
#include "masq.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <map>
#include <optional>

#include "names.h"

namespace ferry::bridge {

namespace {

// One "-A CHAIN ..." line of iptables-save output, tokenised.
struct SavedRule {
  std::string chain;
  std::string spec;     // everything after "-A CHAIN "
  std::string comment;  // --comment value, unescaped
  std::string target;   // -j value
};

struct SavedTable {
  std::set<std::string> chains;
  std::vector<SavedRule> rules;
};

SavedTable parse_save(std::string_view text) {
  SavedTable t;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == text.npos ? text.npos : nl - pos);
    pos = nl == text.npos ? text.size() : nl + 1;
    if (line.starts_with(":")) {
      size_t sp = line.find(' ');
      t.chains.insert(std::string(line.substr(1, sp == line.npos ? line.npos : sp - 1)));
    } else if (line.starts_with("-A ")) {
      size_t sp = line.find(' ', 3);
      if (sp == line.npos) continue;
      SavedRule r;
      r.chain = std::string(line.substr(3, sp - 3));
      r.spec = std::string(line.substr(sp + 1));
      auto tok = net::split_iptables_save_line(r.spec);
      for (size_t i = 0; i + 1 < tok.size(); ++i) {
        if (tok[i] == "--comment") r.comment = tok[i + 1];
        if (tok[i] == "-j" || tok[i] == "-g") r.target = tok[i + 1];
      }
      t.rules.push_back(std::move(r));
    }
  }
  return t;
}

// Removes the POSTROUTING jumps to `chains` and the chains themselves.
std::string render_removal(const SavedTable& t, const std::set<std::string>& chains,
                           const std::vector<const SavedRule*>& extra_jumps) {
  std::vector<std::string> lines;
  std::set<std::string> deleted_specs;
  for (const SavedRule& r : t.rules)
    if (r.chain == "POSTROUTING" && chains.count(r.target) && deleted_specs.insert(r.spec).second)
      lines.push_back("-D POSTROUTING " + r.spec);
  for (const SavedRule* r : extra_jumps)
    if (deleted_specs.insert(r->spec).second) lines.push_back("-D POSTROUTING " + r->spec);
  std::string out;
  for (const std::string& c : chains)
    if (t.chains.count(c)) out += ":" + c + " - [0:0]\n";  // declaring flushes it
  bool any_chain = !out.empty();
  if (!any_chain && lines.empty()) return "";
  std::string text = "*nat\n" + out;
  for (const std::string& l : lines) text += l + "\n";
  for (const std::string& c : chains)
    if (t.chains.count(c)) text += "-X " + c + "\n";
  return text + "COMMIT\n";
}

}  // namespace

std::string render_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  if (ips.empty()) return "";
  const bool v6 = ips.front().ip.family == AF_INET6;
  const std::string chain = masq_chain_name(id.network, id.container_id);
  const std::string comment = "-m comment --comment " + net::iptables_quote(masq_comment(id.network, id.container_id));
  std::string text = "*nat\n:" + chain + " - [0:0]\n";
  std::set<std::string> subnets;
  for (const net::Prefix& p : ips) {
    std::string subnet = p.network().str();
    if (subnets.insert(subnet).second) text += "-A " + chain + " -d " + subnet + " " + comment + " -j ACCEPT\n";
  }
  text += "-A " + chain + " ! -d " + (v6 ? "ff00::/8" : "224.0.0.0/4") + " " + comment + " -j MASQUERADE\n";
  for (const net::Prefix& p : ips)
    text += "-A POSTROUTING -s " + p.ip.str() + (v6 ? "/128" : "/32") + " " + comment + " -j " + chain + "\n";
  return text + "COMMIT\n";
}

std::string render_masq_del_known(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  if (ips.empty()) return "";
  const bool v6 = ips.front().ip.family == AF_INET6;
  const std::string chain = masq_chain_name(id.network, id.container_id);
  const std::string comment = "-m comment --comment " + net::iptables_quote(masq_comment(id.network, id.container_id));
  std::string text = "*nat\n:" + chain + " - [0:0]\n";
  for (const net::Prefix& p : ips)
    text += "-D POSTROUTING -s " + p.ip.str() + (v6 ? "/128" : "/32") + " " + comment + " -j " + chain + "\n";
  return text + "-X " + chain + "\nCOMMIT\n";
}

std::string render_masq_del(const MasqIdentity& id, std::string_view save_nat) {
  SavedTable t = parse_save(save_nat);
  std::set<std::string> chains = {masq_chain_name(id.network, id.container_id)};
  const std::string ours = masq_comment(id.network, id.container_id);
  const std::string reference = reference_masq_comment(id.network, id.container_id);
  std::vector<const SavedRule*> extra;
  for (const SavedRule& r : t.rules) {
    if (r.chain != "POSTROUTING") continue;
    if (r.comment == reference && r.target.starts_with("CNI-")) chains.insert(r.target);
    else if (r.comment == ours) extra.push_back(&r);  // ours, whatever it jumps to
  }
  return render_removal(t, chains, extra);
}

std::string render_masq_gc(std::string_view network, const std::set<std::string>& valid_ids,
                           std::string_view save_nat) {
  SavedTable t = parse_save(save_nat);
  const std::string prefix = "ferry: name: \"" + std::string(network) + "\" id: \"";
  std::set<std::string> stale;
  for (const SavedRule& r : t.rules) {
    if (!r.chain.starts_with("FERRY-MASQ-") || !r.comment.starts_with(prefix) || !r.comment.ends_with("\"")) continue;
    std::string cid = r.comment.substr(prefix.size(), r.comment.size() - prefix.size() - 1);
    if (!valid_ids.count(cid)) stale.insert(r.chain);
  }
  if (stale.empty()) return "";
  return render_removal(t, stale, {});
}

bool masq_present(const MasqIdentity& id, std::string_view save_nat) {
  SavedTable t = parse_save(save_nat);
  const std::string chain = masq_chain_name(id.network, id.container_id);
  if (!t.chains.count(chain)) return false;
  for (const SavedRule& r : t.rules)
    if (r.chain == "POSTROUTING" && r.target == chain) return true;
  return false;
}

std::string nft_masq_comment(const MasqIdentity& id) {
  return "ferry: net=" + id.network + " id=" + id.container_id;
}

std::string render_nft_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  // The base chain is rebuilt in the same transaction, so it never holds duplicates.
  std::string text =
      "add table inet ferry_masquerade\n"
      "add chain inet ferry_masquerade masq_checks\n"
      "add chain inet ferry_masquerade postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
      "flush chain inet ferry_masquerade postrouting\n"
      "add rule inet ferry_masquerade postrouting ip daddr 224.0.0.0/4 return\n"
      "add rule inet ferry_masquerade postrouting ip6 daddr ff00::/8 return\n"
      "add rule inet ferry_masquerade postrouting goto masq_checks\n";
  const std::string comment = nft_masq_comment(id);
  for (const net::Prefix& p : ips) {
    const char* fam = p.ip.family == AF_INET6 ? "ip6" : "ip";
    text += std::string("add rule inet ferry_masquerade masq_checks ") + fam + " saddr " + p.ip.str() + " " + fam +
            " daddr != " + p.network().str() + " masquerade comment \"" + comment + "\"\n";
  }
  return text;
}

// ---------------------------------------------------------------------------------------
// Kernel side

namespace {

bool in_path(const char* tool) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"}) {
    std::string p = std::string(dir) + "/" + tool;
    if (access(p.c_str(), X_OK) == 0) return true;
  }
  return false;
}

void run_or_throw(const std::vector<std::string>& argv, std::string_view input, const std::string& what) {
  net::CommandResult r = net::run_command(argv, input);
  if (r.status != 0) {
    std::string err = r.err.empty() ? r.out : r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    throw net::Error(what + ": " + argv[0] + " exited with " + std::to_string(r.status) + ": " + err, EIO);
  }
}

std::string save_nat(Family f) {
  net::CommandResult r = net::run_command({f == Family::kV6 ? "ip6tables-save" : "iptables-save", "-t", "nat"});
  if (r.status != 0)
    throw net::Error(std::string("failed to read the nat table: ") + (f == Family::kV6 ? "ip6tables-save" : "iptables-save") +
                         ": " + r.err,
                     EIO);
  return r.out;
}

void restore(Family f, const std::string& input, const std::string& what) {
  if (input.empty()) return;
  run_or_throw({f == Family::kV6 ? "ip6tables-restore" : "iptables-restore", "-w", "--noflush"}, input, what);
}

std::string describe(const MasqIdentity& id) {
  return "container " + id.container_id + " of network \"" + id.network + "\"";
}

}  // namespace

bool iptables_available() { return in_path("iptables-restore"); }
bool nft_available() { return in_path("nft"); }

void iptables_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  std::vector<net::Prefix> v4, v6;
  for (const net::Prefix& p : ips) (p.ip.family == AF_INET6 ? v6 : v4).push_back(p);
  restore(Family::kV4, render_masq_add(id, v4), "failed to set up IP masquerade for " + describe(id));
  restore(Family::kV6, render_masq_add(id, v6), "failed to set up IPv6 masquerade for " + describe(id));
}

void iptables_masq_del(const MasqIdentity& id, bool v4, bool v6) {
  for (Family f : {Family::kV4, Family::kV6}) {
    if ((f == Family::kV4 && !v4) || (f == Family::kV6 && !v6)) continue;
    restore(f, render_masq_del(id, save_nat(f)), "failed to remove IP masquerade for " + describe(id));
  }
}

void iptables_masq_del_known(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  std::vector<net::Prefix> by_family[2];
  for (const net::Prefix& p : ips) by_family[p.ip.family == AF_INET6].push_back(p);
  for (int f = 0; f < 2; ++f) {
    if (by_family[f].empty()) continue;
    Family family = f ? Family::kV6 : Family::kV4;
    net::CommandResult r = net::run_command({f ? "ip6tables-restore" : "iptables-restore", "-w", "--noflush"},
                                            render_masq_del_known(id, by_family[f]));
    if (r.status != 0)  // not exactly as ADD left it: find the rules by identity instead
      restore(family, render_masq_del(id, save_nat(family)), "failed to remove IP masquerade for " + describe(id));
  }
}

void iptables_masq_gc(std::string_view network, const std::set<std::string>& valid_ids) {
  for (Family f : {Family::kV4, Family::kV6})
    restore(f, render_masq_gc(network, valid_ids, save_nat(f)),
            "failed to remove stale IP masquerade rules of network \"" + std::string(network) + "\"");
}

bool iptables_masq_present(const MasqIdentity& id, Family family) { return masq_present(id, save_nat(family)); }

namespace {

// Rule handles in masq_checks whose comment satisfies `match`.
std::vector<std::pair<long, std::string>> nft_masq_rules() {
  net::CommandResult r = net::run_command({"nft", "-j", "-a", "list", "chain", "inet", "ferry_masquerade", "masq_checks"});
  std::vector<std::pair<long, std::string>> out;
  if (r.status != 0) return out;  // no table: nothing of ours
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (!j.is_object() || !j.contains("nftables")) return out;
  for (const auto& item : j["nftables"]) {
    if (!item.contains("rule")) continue;
    const auto& rule = item["rule"];
    if (!rule.contains("handle") || !rule.contains("comment")) continue;
    out.emplace_back(rule["handle"].get<long>(), rule["comment"].get<std::string>());
  }
  return out;
}

void nft_delete_handles(const std::vector<long>& handles, const std::string& what) {
  if (handles.empty()) return;
  std::string text;
  for (long h : handles) text += "delete rule inet ferry_masquerade masq_checks handle " + std::to_string(h) + "\n";
  run_or_throw({"nft", "-f", "-"}, text, what);
}

}  // namespace

void nft_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  run_or_throw({"nft", "-f", "-"}, render_nft_masq_add(id, ips), "failed to set up IP masquerade for " + describe(id));
}

void nft_masq_del(const MasqIdentity& id) {
  const std::string comment = nft_masq_comment(id);
  std::vector<long> handles;
  for (const auto& [handle, c] : nft_masq_rules())
    if (c == comment) handles.push_back(handle);
  nft_delete_handles(handles, "failed to remove IP masquerade for " + describe(id));
}

void nft_masq_gc(std::string_view network, const std::set<std::string>& valid_ids) {
  const std::string prefix = "ferry: net=" + std::string(network) + " id=";
  std::vector<long> handles;
  for (const auto& [handle, c] : nft_masq_rules())
    if (c.starts_with(prefix) && !valid_ids.count(c.substr(prefix.size()))) handles.push_back(handle);
  nft_delete_handles(handles, "failed to remove stale IP masquerade rules of network \"" + std::string(network) + "\"");
}

bool nft_masq_present(const MasqIdentity& id) {
  const std::string comment = nft_masq_comment(id);
  for (const auto& [handle, c] : nft_masq_rules())
    if (c == comment) return true;
  return false;
}

}  // namespace ferry::bridge
