#include "plugins/portmap/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace ferry::portmap {
namespace {

struct DumpFilter {
  const std::vector<int>* ports;
  const std::vector<int>* families;
  std::vector<nf_conntrack*> doomed;  // clones, destroyed after the dump
};

int on_entry(nf_conntrack_msg_type, nf_conntrack* ct, void* data) {
  auto* f = static_cast<DumpFilter*>(data);
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
  int family = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (std::find(f->families->begin(), f->families->end(), family) == f->families->end())
    return NFCT_CB_CONTINUE;
  int port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  if (std::find(f->ports->begin(), f->ports->end(), port) == f->ports->end()) return NFCT_CB_CONTINUE;
  if (nf_conntrack* copy = nfct_clone(ct)) f->doomed.push_back(copy);
  return NFCT_CB_CONTINUE;
}

}  // namespace

std::string delete_udp_conntrack(const std::vector<int>& ports, const std::vector<int>& families) {
  if (ports.empty() || families.empty()) return "";
  std::unique_ptr<nfct_handle, int (*)(nfct_handle*)> h(nfct_open(CONNTRACK, 0), nfct_close);
  if (!h) return std::string("cannot open a ctnetlink socket: ") + std::strerror(errno);
  DumpFilter filter{&ports, &families, {}};
  nfct_callback_register(h.get(), NFCT_T_ALL, on_entry, &filter);
  // One dump of both families; matching entries are deleted after it ends (a handle cannot
  // take a new request from inside its own dump callback).
  uint32_t family = families.size() == 1 ? static_cast<uint32_t>(families.front()) : AF_UNSPEC;
  std::string problem;
  if (nfct_query(h.get(), NFCT_Q_DUMP, &family) < 0)
    problem = std::string("conntrack dump failed: ") + std::strerror(errno);
  nfct_callback_unregister(h.get());
  for (nf_conntrack* ct : filter.doomed) {
    // ENOENT: the entry expired or was deleted meanwhile, which is what we wanted.
    if (nfct_query(h.get(), NFCT_Q_DESTROY, ct) < 0 && errno != ENOENT && problem.empty())
      problem = std::string("conntrack delete failed: ") + std::strerror(errno);
    nfct_destroy(ct);
  }
  return problem;
}

}  // namespace ferry::portmap
