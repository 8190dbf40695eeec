// Prometheus text format of the agent's metrics.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "agent/core/agent.h"

namespace ferry::agent {
namespace {

MetricsSnapshot sample() {
  MetricsSnapshot m;
  m.datapath = "ebpf";
  m.endpoints = 3;
  m.reconcile_total = 5;
  m.reconcile_errors_total = 1;
  m.reconcile_duration.observe(0.0002);
  m.reconcile_duration.observe(0.003);
  m.reconcile_duration.observe(20);
  m.datapath_errors_total = 2;
  m.stats.kernel_writes = 42;
  m.stats.counters = {{"redirect_local", false, 100, 6400}, {"to_stack", false, 7, 700},
                      {"drop_spoofed", true, 3, 180}};
  m.stats.maps["ferry_ct_v2"] = {12, 262144};
  m.stats.maps["ferry_ep_v1"] = {6, 65536};
  m.cluster_objects = {{"Pod", 4}, {"Node", 2}};
  m.policy_identities = 9;
  m.policy_ipcache_entries = 14;
  m.policy_entries_ingress = 21;
  m.policy_entries_egress = 4;
  m.policy_isolated_ingress = 2;
  m.policy_isolated_egress = 1;
  m.policy_applies_total = 6;
  m.policy_errors_total = 1;
  m.policy_compile_duration.observe(0.002);
  m.policy_apply_duration.observe(0.0004);
  return m;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

TEST(Metrics, EveryLineIsValidExpositionFormat) {
  std::string text = render_metrics(sample());
  std::regex sample_line(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"\})? [-+0-9.eInf]+$)");
  std::regex comment_line(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::istringstream in(text);
  std::set<std::string> typed;
  for (std::string l; std::getline(in, l);) {
    if (l.starts_with("# TYPE ")) typed.insert(l.substr(7, l.find(' ', 7) - 7));
    if (l.starts_with("#")) {
      EXPECT_TRUE(std::regex_match(l, comment_line)) << l;
      continue;
    }
    EXPECT_TRUE(std::regex_match(l, sample_line)) << l;
    std::string name = l.substr(0, l.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (name.ends_with(suffix) && typed.count(name.substr(0, name.size() - strlen(suffix))))
        name = name.substr(0, name.size() - strlen(suffix));
    EXPECT_TRUE(typed.count(name)) << "sample before its # TYPE: " << l;
  }
  EXPECT_TRUE(text.ends_with("\n"));
}

TEST(Metrics, Values) {
  std::string text = render_metrics(sample());
  EXPECT_TRUE(has_line(text, "ferry_endpoints 3")) << text;
  EXPECT_TRUE(has_line(text, "ferry_reconcile_total 5"));
  EXPECT_TRUE(has_line(text, "ferry_reconcile_errors_total 1"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_errors_total 2"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_kernel_writes_total 42"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_packets_total{counter=\"redirect_local\"} 100"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_packets_total{counter=\"to_stack\"} 7"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_bytes_total{counter=\"redirect_local\"} 6400"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_drops_total{reason=\"spoofed\"} 3"));
  EXPECT_FALSE(has_line(text, "ferry_datapath_packets_total{counter=\"drop_spoofed\"} 3"));
  EXPECT_TRUE(has_line(text, "ferry_bpf_map_entries{map=\"ferry_ct_v2\"} 12"));
  EXPECT_TRUE(has_line(text, "ferry_bpf_map_capacity{map=\"ferry_ct_v2\"} 262144"));
  EXPECT_TRUE(has_line(text, "ferry_cluster_objects{kind=\"Pod\"} 4"));
  EXPECT_TRUE(has_line(text, "ferry_datapath_info{mode=\"ebpf\"} 1"));
}

TEST(Metrics, PolicyValues) {
  std::string text = render_metrics(sample());
  EXPECT_TRUE(has_line(text, "ferry_policy_enforced 1")) << text;
  EXPECT_TRUE(has_line(text, "ferry_policy_identities 9"));
  EXPECT_TRUE(has_line(text, "ferry_policy_ipcache_entries 14"));
  EXPECT_TRUE(has_line(text, "ferry_policy_entries{direction=\"ingress\"} 21"));
  EXPECT_TRUE(has_line(text, "ferry_policy_entries{direction=\"egress\"} 4"));
  EXPECT_TRUE(has_line(text, "ferry_policy_endpoints_isolated{direction=\"ingress\"} 2"));
  EXPECT_TRUE(has_line(text, "ferry_policy_endpoints_isolated{direction=\"egress\"} 1"));
  EXPECT_TRUE(has_line(text, "ferry_policy_applies_total 6"));
  EXPECT_TRUE(has_line(text, "ferry_policy_errors_total 1"));
  EXPECT_TRUE(has_line(text, "ferry_policy_compile_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_TRUE(has_line(text, "ferry_policy_compile_seconds_bucket{le=\"0.001\"} 0"));
  EXPECT_TRUE(has_line(text, "ferry_policy_apply_seconds_bucket{le=\"0.0005\"} 1"));
  EXPECT_TRUE(has_line(text, "ferry_policy_apply_seconds_count 1"));
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  std::string text = render_metrics(sample());
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_bucket{le=\"0.0005\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_bucket{le=\"0.001\"} 1"));
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_bucket{le=\"0.005\"} 2"));
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_bucket{le=\"10\"} 2"));
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3"));
  EXPECT_TRUE(has_line(text, "ferry_reconcile_duration_seconds_count 3"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("ferry_reconcile_duration_seconds_sum ([0-9.]+)")));
  EXPECT_NEAR(std::stod(m[1]), 20.0032, 1e-9);
}

TEST(Metrics, LabelValuesAreEscaped) {
  MetricsSnapshot m;
  m.cluster_objects["a\"b\\c\nd"] = 1;
  EXPECT_TRUE(has_line(render_metrics(m), R"(ferry_cluster_objects{kind="a\"b\\c\nd"} 1)"));
}

TEST(Metrics, NoModeBeforeTheBackendIsChosen) {
  std::string text = render_metrics(MetricsSnapshot{});
  EXPECT_EQ(text.find("ferry_datapath_info{"), std::string::npos);
  EXPECT_TRUE(has_line(text, "ferry_endpoints 0"));
}

}  // namespace
}  // namespace ferry::agent
