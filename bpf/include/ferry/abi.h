/* bpf/include/ferry/abi.h — the contract between ferry's BPF programs and user space (the agent's
 * eBPF backend, ferryctl, the BPF tests). Included from BPF C and from C++, so it uses only
 * <linux/types.h>. Every struct's size is checked at compile time below; a change to any layout
 * bumps FERRY_MAP_LAYOUT and the map names (the agent migrates, it never flushes silently).
 *
 * Byte order: addresses and ports are stored as on the wire (network order); everything else is
 * host order. IPv4 addresses sit in the first 4 bytes of a 16-byte field, the rest zero. */
#ifndef FERRY_BPF_ABI_H
#define FERRY_BPF_ABI_H

#include <linux/types.h>

#define FERRY_MAP_LAYOUT 1

/* Pinned map names (LIBBPF_PIN_BY_NAME under the node's bpffs root, e.g.
 * /sys/fs/bpf/ferry/<node>/ferry_ep_v1). Kernel object names are limited to 15 characters. */
#define FERRY_MAP_ENDPOINTS "ferry_ep_v1"
#define FERRY_MAP_CT "ferry_ct_v2"       /* v2: service fields (backend_id, rev_nat) */
#define FERRY_MAP_CT_V1 "ferry_ct_v1"    /* the layout before services: migrated on start, removed */
#define FERRY_MAP_COUNTERS "ferry_ctr_v1"
#define FERRY_MAP_EVENTS "ferry_ev_v1"
#define FERRY_MAP_TUNNELS "ferry_tun_v1"  /* overlay: remote pod CIDR -> node (issue 4) */
#define FERRY_MAP_CONFIG "ferry_cfg_v3"   /* node-wide settings the datapath reads (v3: services) */
#define FERRY_MAP_CONFIG_V2 "ferry_cfg_v2" /* the layout before services: migrated on start, removed */
#define FERRY_MAP_CONFIG_V1 "ferry_cfg_v1" /* the layout before policy: migrated on start, removed */
#define FERRY_MAP_IPCACHE "ferry_ipc_v1"  /* policy: IP/prefix -> security identity (LPM) */
#define FERRY_MAP_POLICY "ferry_pol_v1"   /* policy: per-endpoint allow entries (LPM) */
/* Services (issue 6, DESIGN.md "Services"): frontend -> service, (service, set, slot) -> backend,
 * backend id -> address, service id -> reverse-NAT address, client affinity, Maglev tables, and
 * the socket LB's UDP reverse translation. */
#define FERRY_MAP_SERVICES "ferry_svc_v1"
#define FERRY_MAP_SLOTS "ferry_slot_v1"
#define FERRY_MAP_BACKENDS "ferry_be_v1"
#define FERRY_MAP_REVNAT "ferry_rnat_v1"
#define FERRY_MAP_AFFINITY "ferry_aff_v1"
#define FERRY_MAP_MAGLEV "ferry_mglv_v1"
#define FERRY_MAP_SOCK_REVNAT "ferry_skrn_v1"

/* Default sizes (the agent may resize before load; see DESIGN.md "Maps are sized"). */
#define FERRY_ENDPOINTS_MAX 65536   /* local pod IPs of one node */
#define FERRY_CT_MAX 262144         /* flows */
#define FERRY_EVENTS_BYTES (1 << 20)
#define FERRY_TUNNELS_MAX 16384     /* pod CIDRs of the other nodes (two per dual-stack node) */
#define FERRY_IPCACHE_MAX 131072    /* pod IPs of the cluster + node IPs + ipBlock prefixes */
#define FERRY_POLICY_MAX 262144     /* allow entries of all local endpoints */
#define FERRY_SERVICES_MAX 65536    /* frontends: ClusterIP + NodePort per node address + external IPs */
#define FERRY_SLOTS_MAX 262144      /* backend slots of all frontends (both sets) */
#define FERRY_BACKENDS_MAX 65536
#define FERRY_REVNAT_MAX 65536      /* one per frontend */
#define FERRY_AFFINITY_MAX 65536    /* (frontend, client) pairs under sessionAffinity ClientIP */
#define FERRY_MAGLEV_MAX 16384      /* frontends with a Maglev table (only with --lb-algorithm maglev) */
#define FERRY_MAGLEV_TABLE_SIZE 1021 /* slots per Maglev table: prime, > 100 x typical backend counts */
#define FERRY_SOCK_REVNAT_MAX 65536 /* UDP sockets of the node's processes talking to a service */

/* tc attachment of ferry's programs on a pod's host-side veth (and of ferry_from_overlay on the
 * overlay device's ingress): clsact, this handle and priority. Cleanup removes exactly this
 * (handle, priority) pair. */
#define FERRY_TC_HANDLE 0xfe
#define FERRY_TC_PRIORITY 1

/* ---- endpoints: pod IP -> where the pod is (one entry per IP of each local pod) ---- */
struct ferry_endpoint_key {
	__u8 family;   /* AF_INET (2) or AF_INET6 (10) */
	__u8 pad[3];
	__u8 addr[16]; /* network order */
};

#define FERRY_EP_F_PROGRAMMED 0x1 /* set once the agent finished programming this endpoint */

struct ferry_endpoint_value {
	__u32 ifindex;      /* host-side veth ifindex (redirect target) */
	__u32 endpoint_id;  /* agent-assigned, stable for the endpoint's life, never 0 */
	__u8 pod_mac[6];    /* MAC of the pod's interface (eth0 in the pod) */
	__u8 host_mac[6];   /* MAC used as source when the datapath delivers to the pod (gateway) */
	__u32 flags;        /* FERRY_EP_F_* */
};

/* ---- tunnels: LPM trie, remote node's pod CIDR -> where its VXLAN endpoint is ----
 * LPM keys start with the prefix length in bits of the data that follows: family and pad are
 * always part of the prefix, so prefixlen = 32 + the CIDR's length (v4 and v6 share the trie
 * and never match each other). pad is zero. */
struct ferry_tunnel_key {
	__u32 prefixlen; /* 32 + CIDR length (e.g. 56 for a /24) */
	__u8 family;     /* AF_INET / AF_INET6 of the pod CIDR */
	__u8 pad[3];
	__u8 addr[16];   /* network address of the CIDR, network order, host bits zero */
};

struct ferry_tunnel_value {
	__u8 vtep_mac[6];  /* the remote node's VTEP MAC: inner destination MAC (the FDB key) */
	__u8 node_family;  /* AF_INET / AF_INET6 of node_ip */
	__u8 pad;
	__u8 node_ip[16];  /* the remote node's underlay address (informational: the VXLAN
			    * device's FDB entry for vtep_mac carries the real destination) */
};

/* ---- config: array with one entry (key 0), node-wide settings written by the agent ---- */
#define FERRY_CFG_F_OVERLAY 0x1 /* direct overlay path on: from-pod redirects to overlay_ifindex */
#define FERRY_CFG_F_POLICY 0x2  /* NetworkPolicy enforced (off: every flow is allowed) */
#define FERRY_CFG_F_SERVICES 0x4 /* service load-balancing on (off: frontends are not translated) */
#define FERRY_CFG_F_MAGLEV 0x8  /* backend choice by Maglev table (off: random) */

/* v3 = v2's first 28 bytes + the service fields; v2 = v1's first 16 bytes + policy. */
struct ferry_config {
	__u32 overlay_ifindex;  /* the node's VXLAN device (ferry_vxlan); 0 = no overlay */
	__u8 vtep_mac[6];       /* its MAC: inner source MAC of tunnelled frames */
	__u16 pad;
	__u32 flags;            /* FERRY_CFG_F_* */
	__u32 policy_rev;       /* bumped by the agent after each policy change; a ct entry judged
				 * under another revision is judged again on its next packet */
	__u32 pad2[2];
	__u32 pad3;
	__u64 netns_cookie;     /* the node's netns (SO_NETNS_COOKIE): the socket LB translates only
				 * sockets of this netns, so several simulated nodes share one cgroup */
	__u8 loopback4[4];      /* service loopback: source address of a pod's flow to itself through
				 * a Service (hairpin), as Cilium's 169.254.42.1 */
	__u8 loopback6[16];     /* the same for IPv6 */
	__u32 pad4;
};

/* ---- ipcache: LPM trie, IP/prefix -> security identity (every address the node may talk to:
 * the cluster's pod IPs, node IPs, ipBlock prefixes, and 0.0.0.0/0 + ::/0 = world). Same key
 * shape as the tunnel map: prefixlen = 32 + the prefix length; family and pad always match. */
struct ferry_ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];   /* network order, host bits zero */
};

struct ferry_ipcache_value {
	__u32 identity;  /* FERRY_IDENTITY_* or an allocated one (>= 256) */
	__u32 pad;
};

#define FERRY_IDENTITY_ANY 0          /* in a policy key: any peer */
#define FERRY_IDENTITY_HOST 1         /* this node */
#define FERRY_IDENTITY_REMOTE_NODE 2  /* other nodes */
#define FERRY_IDENTITY_WORLD 3        /* outside the cluster */

/* ---- policy: LPM trie of allow entries. Everything before port is matched exactly
 * (prefixlen >= 80); the port is matched on its first (prefixlen - 80) bits, so a port range
 * is a handful of prefixes, never one entry per port. proto 0 = any protocol (then prefixlen
 * is 80: any port). A flow is judged per local endpoint and direction with up to four lookups:
 * (peer, proto, port), (peer, any), (any peer, proto, port), (any peer, any). An isolated
 * direction has only its allow entries; a direction that is not isolated has the entry
 * (any peer, any proto). An endpoint with no entry in a direction denies it (fail-closed). */
#define FERRY_POLICY_KEY_EXACT_BITS 80

struct ferry_policy_key {
	__u32 prefixlen;    /* 80 + port prefix length (0-16) */
	__u32 endpoint_id;  /* host order */
	__u32 identity;     /* the peer's identity (host order); FERRY_IDENTITY_ANY = any peer */
	__u8 direction;     /* FERRY_DIR_INGRESS / FERRY_DIR_EGRESS */
	__u8 proto;         /* IPPROTO_*, 0 = any */
	__be16 dport;       /* destination port, network order, bits past the prefix zero */
};

#define FERRY_DIR_INGRESS 1  /* to the endpoint: the peer is the source */
#define FERRY_DIR_EGRESS 2   /* from the endpoint: the peer is the destination */

struct ferry_policy_value {
	__u32 flags;  /* reserved, 0 */
	__u32 pad;
};

/* ---- conntrack: LRU hash, one entry per flow keyed by the tuple of its first packet ---- */
struct ferry_ct_key {
	__u8 saddr[16];  /* network order */
	__u8 daddr[16];  /* network order */
	__be16 sport;    /* TCP/UDP/SCTP port; ICMP echo: identifier; other ICMP: 0 */
	__be16 dport;    /* TCP/UDP/SCTP port; ICMP echo: identifier; other ICMP: 0 */
	__u8 proto;      /* IPPROTO_* (ICMPv6 = 58) */
	__u8 family;     /* AF_INET / AF_INET6 */
	__u8 pad[2];
};

enum ferry_ct_state {
	FERRY_CT_NEW = 0,         /* first packet seen, no reply yet */
	FERRY_CT_ESTABLISHED = 1, /* a reply was seen */
	FERRY_CT_CLOSING = 2,     /* FIN or RST seen (TCP); short timeout */
};

struct ferry_ct_value {
	__u64 created_ns;      /* bpf_ktime_get_ns() of the first packet */
	__u64 last_seen_ns;    /* bpf_ktime_get_ns() of the latest packet either way; GC compares it */
	__u64 packets_fwd;
	__u64 bytes_fwd;
	__u64 packets_rev;
	__u64 bytes_rev;
	__u32 lifetime_s;      /* seconds after last_seen_ns until the entry is expired (by state) */
	__u32 src_endpoint;    /* endpoint_id of the originating pod, 0 if not a local pod */
	__u8 state;            /* enum ferry_ct_state */
	__u8 tcp_flags_fwd;    /* OR of TCP flags seen in the original direction */
	__u8 tcp_flags_rev;    /* OR of TCP flags seen in the reply direction */
	__u8 flags;            /* FERRY_CT_F_* */
	__u32 policy_rev;      /* ferry_config.policy_rev under which the flow was last judged
				* allowed (0 = never): a mismatch re-judges it on its next packet */
	__u32 backend_id;      /* FERRY_CT_F_SERVICE: the backend this flow was sent to */
	__u32 rev_nat;         /* translated flows: the service id whose ferry_rnat_v1 address:port
				* replies get as source (0 = no reverse NAT) */
};

/* Service flows have two entries (as in Cilium): a service entry keyed by the original tuple
 * (client -> frontend) that remembers the backend, and the flow's entry keyed by the translated
 * tuple (client -> backend) that carries rev_nat, policy and counters. */
#define FERRY_CT_F_SERVICE 0x1  /* service entry: keyed client -> frontend; backend_id is the choice */
#define FERRY_CT_F_HAIRPIN 0x2  /* a pod reaching itself through a Service: the source was rewritten
				 * to the service loopback address; replies get source = frontend and
				 * destination = the pod */
#define FERRY_CT_F_NODEPORT 0x4 /* created by from-uplink (a client outside the node) */

/* Timeouts (seconds), as Cilium's defaults. */
#define FERRY_CT_TIMEOUT_TCP_SYN 60
#define FERRY_CT_TIMEOUT_TCP 21600
#define FERRY_CT_TIMEOUT_TCP_CLOSE 10
#define FERRY_CT_TIMEOUT_UDP 60
#define FERRY_CT_TIMEOUT_ICMP 30
#define FERRY_CT_TIMEOUT_OTHER 60

/* ---- counters: per-CPU array indexed by enum ferry_counter ---- */
enum ferry_counter {
	FERRY_CTR_FROM_POD = 0,       /* packets entering from-pod */
	FERRY_CTR_TO_POD = 1,         /* packets entering to-pod */
	FERRY_CTR_REDIRECT_LOCAL = 2, /* delivered straight into a local pod's netns */
	FERRY_CTR_TO_STACK = 3,       /* passed on to the bridge / host stack */
	FERRY_CTR_CT_NEW = 4,
	FERRY_CTR_CT_ESTABLISHED = 5,
	FERRY_CTR_CT_REPLY = 6,
	FERRY_CTR_PASS_NON_IP = 7,    /* ARP and other non-IP frames, passed untouched */
	FERRY_CTR_EVENT_LOST = 8,     /* drop events lost because the ring buffer was full */
	FERRY_CTR_CT_RELATED = 9,     /* ICMP errors/control, later fragments: passed, no entry */
	FERRY_CTR_REDIRECT_TUNNEL = 10, /* from-pod: sent straight to the overlay device (remote pod) */
	FERRY_CTR_FROM_OVERLAY = 11,  /* packets entering from-overlay (decapsulated, from other nodes) */
	FERRY_CTR_FROM_UPLINK = 12,   /* packets entering from-uplink (NodePort device ingress) */
	FERRY_CTR_TO_UPLINK = 13,     /* packets entering to-uplink (NodePort device egress) */
	FERRY_CTR_LB_NEW = 14,        /* new connections to a frontend, translated to a backend */
	FERRY_CTR_LB_REVNAT = 15,     /* replies translated back to the frontend's address */
	FERRY_CTR_LB_REJECT_SENT = 16, /* ICMP unreachable sent for a frontend without backends */
	FERRY_CTR_LB_AFFINITY_HIT = 17, /* new connections sent to the client's affinity backend */
	/* drops: one counter per reason, FERRY_CTR_DROP_BASE + enum ferry_drop_reason */
	FERRY_CTR_DROP_BASE = 32,
	FERRY_CTR_MAX = 64,
};

enum ferry_drop_reason {
	FERRY_DROP_INVALID = 1,     /* truncated or malformed headers */
	FERRY_DROP_SPOOFED = 2,     /* from-pod source IP is not one of the sending endpoint's IPs */
	FERRY_DROP_POLICY = 3,      /* NetworkPolicy denied (issue 5) */
	FERRY_DROP_NO_SERVICE = 4,  /* frontend without backends: rejected (an ICMP unreachable went
				     * back, FERRY_CTR_LB_REJECT_SENT) or dropped (Local policy) */
	FERRY_DROP_NOT_READY = 5,   /* destination endpoint not yet programmed (fail-closed) */
	FERRY_DROP_CT_FULL = 6,     /* conntrack insert failed */
	FERRY_DROP_REASON_MAX = 31,
};

struct ferry_counter_value {
	__u64 packets;
	__u64 bytes;
};

/* ---- events: ring buffer of drop events ---- */
#define FERRY_EVENT_DROP 1

struct ferry_drop_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns() */
	__u32 type;         /* FERRY_EVENT_DROP */
	__u32 reason;       /* enum ferry_drop_reason */
	__u32 ifindex;      /* interface the packet was seen on */
	__u32 endpoint_id;  /* local endpoint involved, 0 if none */
	__u16 source_line;  /* __LINE__ of the drop in the BPF source */
	__u8 source_file;   /* enum ferry_source_file */
	__u8 hook;          /* FERRY_HOOK_*: 1 = from-pod, 2 = to-pod, 3 = from-overlay */
	__u8 family;
	__u8 proto;
	__be16 sport;
	__be16 dport;
	__u8 direction;     /* FERRY_DROP_POLICY: FERRY_DIR_* of the denying policy, else 0 */
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 pkt_len;
};

enum ferry_source_file {
	FERRY_SRC_LXC = 1, /* bpf/ferry_lxc.bpf.c */
	FERRY_SRC_CT = 2,  /* bpf/lib/conntrack.h */
	FERRY_SRC_PARSE = 3,
	FERRY_SRC_OVERLAY = 4, /* bpf/lib/overlay.h */
	FERRY_SRC_POLICY = 5,  /* bpf/lib/policy.h */
	FERRY_SRC_LB = 6,      /* bpf/lib/lb.h */
	FERRY_SRC_NAT = 7,     /* bpf/lib/nat.h */
};

#define FERRY_HOOK_FROM_POD 1
#define FERRY_HOOK_TO_POD 2
#define FERRY_HOOK_FROM_OVERLAY 3 /* tc ingress of the overlay (VXLAN) device */
#define FERRY_HOOK_FROM_UPLINK 4  /* tc ingress of a NodePort device (the node's underlay NIC) */
#define FERRY_HOOK_TO_UPLINK 5    /* tc egress of a NodePort device */

/* skb->mark bit from-uplink sets on a NodePort connection to be masqueraded (externalTraffic-
 * Policy Cluster): the agent's one iptables MASQUERADE rule matches it (DESIGN.md "Masquerade"),
 * as kube-proxy's KUBE-MARK-MASQ bit. */
#define FERRY_MARK_MASQ 0x4000

/* ---- services ----
 * ferry_svc_v1 (HASH): frontend (address, port, protocol) -> service. Key and value: */
struct ferry_service_key {
	__u8 addr[16];  /* frontend address, network order */
	__be16 port;    /* network order */
	__u8 proto;     /* IPPROTO_TCP / UDP / SCTP */
	__u8 family;
};

#define FERRY_SVC_F_AFFINITY 0x1       /* sessionAffinity ClientIP (timeout affinity_timeout_s) */
#define FERRY_SVC_F_DROP_EMPTY 0x2     /* no backend: drop (Local policy), not reject */
#define FERRY_SVC_F_NODEPORT 0x4       /* a NodePort frontend (node address:nodePort) */
#define FERRY_SVC_F_EXTERNAL_IP 0x8    /* a spec.externalIPs frontend */
#define FERRY_SVC_F_LOCAL 0x10         /* traffic policy Local: external clients keep their source
					* address and use set 0 (local backends); pods and the
					* node itself use set 1 (count_internal) */

struct ferry_service_value {
	__u32 service_id;      /* the frontend's ServiceId: rev-NAT, affinity and Maglev key; != 0 */
	__u16 count;           /* backends of set 0 (slots 0..count-1); 0 = none (reject/drop) */
	__u16 count_internal;  /* backends of set 1, used only with FERRY_SVC_F_LOCAL */
	__u32 flags;           /* FERRY_SVC_F_* */
	__u32 affinity_timeout_s;
};

/* ferry_slot_v1 (HASH): (service id, set, slot) -> backend id (__u32 value). Random choice picks
 * slot = prandom % count; slots are dense 0..count-1 in BackendId-sorted order of the IR. */
struct ferry_slot_key {
	__u32 service_id;
	__u16 slot;
	__u8 set;   /* 0 = ServiceFrontend::backends, 1 = pod_and_host_backends */
	__u8 pad;
};

/* ferry_be_v1 (HASH): backend id (__u32) -> backend. Every backend a frontend names, in any
 * state, so that established flows to it keep being translated; only slots choose new ones. */
#define FERRY_BACKEND_ACTIVE 0
#define FERRY_BACKEND_TERMINATING 1
#define FERRY_BACKEND_NOT_SERVING 2
#define FERRY_BACKEND_F_LOCAL 0x1  /* on this node */

struct ferry_backend_value {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
	__u8 state;   /* FERRY_BACKEND_* */
	__u8 flags;   /* FERRY_BACKEND_F_* */
	__u16 pad;
};

/* ferry_rnat_v1 (HASH): service id (__u32) -> the frontend address:port replies carry. */
struct ferry_revnat_value {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	__u8 pad;
};

/* ferry_aff_v1 (LRU HASH): (service id, client address) -> the client's backend. An entry
 * older than the frontend's affinity_timeout_s, or naming a backend no longer in set 0/1, is
 * ignored and replaced. */
struct ferry_affinity_key {
	__u32 service_id;
	__u8 family;
	__u8 pad[3];
	__u8 client[16];
};

struct ferry_affinity_value {
	__u64 last_used_ns;  /* bpf_ktime_get_ns() of the latest new connection that used it */
	__u32 backend_id;
	__u32 pad;
};

/* ferry_mglv_v1 (HASH, BPF_F_NO_PREALLOC): (service id, set) -> Maglev lookup table; a new
 * flow takes backend_id[hash(5-tuple) % FERRY_MAGLEV_TABLE_SIZE]. Written only when
 * FERRY_CFG_F_MAGLEV is on. */
struct ferry_maglev_key {
	__u32 service_id;
	__u32 set;
};

struct ferry_maglev_value {
	__u32 backend_id[FERRY_MAGLEV_TABLE_SIZE];
};

/* ferry_skrn_v1 (LRU HASH): socket LB (cgroup sock_addr programs): for a UDP socket of the
 * node's processes that sent to a frontend, (socket cookie, backend address:port) -> the
 * frontend, so recvmsg shows replies as coming from the address the process sent to. */
struct ferry_sock_revnat_key {
	__u64 cookie;     /* bpf_get_socket_cookie() */
	__u8 addr[16];    /* backend address */
	__be16 port;      /* backend port */
	__u8 family;
	__u8 pad[5];
};

struct ferry_sock_revnat_value {
	__u8 addr[16];    /* frontend address */
	__be16 port;      /* frontend port */
	__u8 family;
	__u8 pad;
	__u32 service_id;
};

#ifdef __cplusplus
static_assert(sizeof(struct ferry_endpoint_key) == 20);
static_assert(sizeof(struct ferry_endpoint_value) == 24);
static_assert(sizeof(struct ferry_ct_key) == 40);
static_assert(sizeof(struct ferry_ct_value) == 72);
static_assert(sizeof(struct ferry_counter_value) == 16);
static_assert(sizeof(struct ferry_drop_event) == 72);
static_assert(sizeof(struct ferry_tunnel_key) == 24);
static_assert(sizeof(struct ferry_tunnel_value) == 24);
static_assert(sizeof(struct ferry_config) == 64);
static_assert(sizeof(struct ferry_service_key) == 20);
static_assert(sizeof(struct ferry_service_value) == 16);
static_assert(sizeof(struct ferry_slot_key) == 8);
static_assert(sizeof(struct ferry_backend_value) == 24);
static_assert(sizeof(struct ferry_revnat_value) == 20);
static_assert(sizeof(struct ferry_affinity_key) == 24);
static_assert(sizeof(struct ferry_affinity_value) == 16);
static_assert(sizeof(struct ferry_maglev_key) == 8);
static_assert(sizeof(struct ferry_maglev_value) == 4 * FERRY_MAGLEV_TABLE_SIZE);
static_assert(sizeof(struct ferry_sock_revnat_key) == 32);
static_assert(sizeof(struct ferry_sock_revnat_value) == 24);
static_assert(sizeof(struct ferry_ipcache_key) == 24);
static_assert(sizeof(struct ferry_ipcache_value) == 8);
static_assert(sizeof(struct ferry_policy_key) == 16);
static_assert(sizeof(struct ferry_policy_value) == 8);
#else
_Static_assert(sizeof(struct ferry_endpoint_key) == 20, "endpoint key layout");
_Static_assert(sizeof(struct ferry_endpoint_value) == 24, "endpoint value layout");
_Static_assert(sizeof(struct ferry_ct_key) == 40, "ct key layout");
_Static_assert(sizeof(struct ferry_ct_value) == 72, "ct value layout");
_Static_assert(sizeof(struct ferry_counter_value) == 16, "counter layout");
_Static_assert(sizeof(struct ferry_drop_event) == 72, "event layout");
_Static_assert(sizeof(struct ferry_tunnel_key) == 24, "tunnel key layout");
_Static_assert(sizeof(struct ferry_tunnel_value) == 24, "tunnel value layout");
_Static_assert(sizeof(struct ferry_config) == 64, "config layout");
_Static_assert(sizeof(struct ferry_service_key) == 20, "service key layout");
_Static_assert(sizeof(struct ferry_service_value) == 16, "service value layout");
_Static_assert(sizeof(struct ferry_slot_key) == 8, "slot key layout");
_Static_assert(sizeof(struct ferry_backend_value) == 24, "backend layout");
_Static_assert(sizeof(struct ferry_revnat_value) == 20, "revnat layout");
_Static_assert(sizeof(struct ferry_affinity_key) == 24, "affinity key layout");
_Static_assert(sizeof(struct ferry_affinity_value) == 16, "affinity value layout");
_Static_assert(sizeof(struct ferry_maglev_key) == 8, "maglev key layout");
_Static_assert(sizeof(struct ferry_sock_revnat_key) == 32, "sock revnat key layout");
_Static_assert(sizeof(struct ferry_sock_revnat_value) == 24, "sock revnat value layout");
_Static_assert(sizeof(struct ferry_ipcache_key) == 24, "ipcache key layout");
_Static_assert(sizeof(struct ferry_ipcache_value) == 8, "ipcache value layout");
_Static_assert(sizeof(struct ferry_policy_key) == 16, "policy key layout");
_Static_assert(sizeof(struct ferry_policy_value) == 8, "policy value layout");
#endif

#endif /* FERRY_BPF_ABI_H */
