// Pure parts of agent/ebpf: names shared with ferryctl/metrics and drop-event decoding.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>

#include "agent/ebpf/ebpf.h"
#include "ferry/abi.h"

namespace ferry::ebpf {
namespace {

TEST(EbpfNames, CountersAndDropReasons) {
  EXPECT_EQ(counter_name(FERRY_CTR_FROM_POD), "from_pod");
  EXPECT_EQ(counter_name(FERRY_CTR_REDIRECT_LOCAL), "redirect_local");
  EXPECT_EQ(counter_name(FERRY_CTR_PASS_NON_IP), "pass_non_ip");
  EXPECT_EQ(counter_name(int{FERRY_CTR_DROP_BASE} + FERRY_DROP_SPOOFED), "drop_spoofed");
  EXPECT_EQ(counter_name(int{FERRY_CTR_DROP_BASE} + FERRY_DROP_INVALID), "drop_invalid");
  EXPECT_EQ(counter_name(int{FERRY_CTR_DROP_BASE} + FERRY_DROP_POLICY), "drop_policy");
  EXPECT_EQ(counter_name(FERRY_CTR_CT_RELATED), "ct_related");
  EXPECT_EQ(counter_name(FERRY_CTR_REDIRECT_TUNNEL), "redirect_tunnel");
  EXPECT_EQ(counter_name(FERRY_CTR_FROM_OVERLAY), "from_overlay");
  EXPECT_EQ(hook_name(FERRY_HOOK_FROM_OVERLAY), "from-overlay");
  EXPECT_EQ(source_file_name(FERRY_SRC_OVERLAY), "bpf/lib/overlay.h");
  EXPECT_EQ(counter_name(20), "");  // unused slot between the two ranges
  EXPECT_EQ(drop_reason_name(FERRY_DROP_NOT_READY), "not_ready");
  EXPECT_EQ(drop_reason_name(29), "reason_29");
  EXPECT_EQ(ct_state_name(FERRY_CT_ESTABLISHED), "established");
  EXPECT_EQ(hook_name(FERRY_HOOK_FROM_POD), "from-pod");
  EXPECT_EQ(protocol_name(IPPROTO_ICMPV6), "icmpv6");
  EXPECT_EQ(protocol_name(47), "47");
}

TEST(EbpfNames, EndpointStrings) {
  EXPECT_EQ(endpoint_str(*net::Ip::parse("10.1.2.3"), 80, IPPROTO_TCP), "10.1.2.3:80");
  EXPECT_EQ(endpoint_str(*net::Ip::parse("fd00::1"), 53, IPPROTO_UDP), "[fd00::1]:53");
  EXPECT_EQ(endpoint_str(*net::Ip::parse("fd00::1"), 7, IPPROTO_ICMPV6), "fd00::1");
  EXPECT_EQ(node_bpffs_root("node-1"), "/sys/fs/bpf/ferry/node-1");
}

TEST(EbpfNames, DecodesDropEvents) {
  ferry_drop_event raw{};
  raw.type = FERRY_EVENT_DROP;
  raw.reason = FERRY_DROP_SPOOFED;
  raw.ifindex = 7;
  raw.endpoint_id = 101;
  raw.source_file = FERRY_SRC_LXC;
  raw.source_line = 42;
  raw.hook = FERRY_HOOK_FROM_POD;
  raw.family = AF_INET6;
  raw.proto = IPPROTO_TCP;
  raw.sport = htons(40000);
  raw.dport = htons(80);
  inet_pton(AF_INET6, "fd77::99", raw.saddr);
  inet_pton(AF_INET6, "fd77::3", raw.daddr);
  raw.pkt_len = 74;

  auto ev = decode_drop_event(&raw, sizeof(raw));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->reason_name, "spoofed");
  EXPECT_EQ(ev->src.str(), "fd77::99");
  EXPECT_EQ(ev->dst.str(), "fd77::3");
  EXPECT_EQ(ev->sport, 40000);
  EXPECT_EQ(ev->dport, 80);
  EXPECT_EQ(ev->ifindex, 7u);
  EXPECT_EQ(ev->endpoint_id, 101u);
  EXPECT_EQ(ev->source, "bpf/ferry_lxc.bpf.c:42");
  EXPECT_EQ(ev->pkt_len, 74u);

  EXPECT_FALSE(decode_drop_event(&raw, sizeof(raw) - 1).has_value());  // truncated
  raw.type = 99;
  EXPECT_FALSE(decode_drop_event(&raw, sizeof(raw)).has_value());  // another event type
}

TEST(EbpfNames, ProbeExplainsWhatIsMissing) {
  std::string why;
  bool ok = ebpf_supported(&why);
  // Whatever the machine: a "no" always comes with a reason.
  if (!ok) {
    EXPECT_FALSE(why.empty());
  }
  EXPECT_EQ(embedded_program_hash().size(), 16u);
  EXPECT_EQ(embedded_program_hash(), embedded_program_hash());
}

}  // namespace
}  // namespace ferry::ebpf
