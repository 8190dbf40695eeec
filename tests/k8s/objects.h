// Kubernetes objects in exactly the JSON shape the API server returns them (as a watch event
// object: with apiVersion and kind; the fake server strips both from list items).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ferry::k8s::test {

inline nlohmann::json node_json(const std::string& name, const std::string& pod_cidr, const std::string& ip) {
  return {{"apiVersion", "v1"}, {"kind", "Node"},
          {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}, {"kubernetes.io/os", "linux"}}}}},
          {"spec", {{"podCIDR", pod_cidr}, {"podCIDRs", {pod_cidr}}}},
          {"status", {{"addresses", {{{"type", "InternalIP"}, {"address", ip}}, {{"type", "Hostname"}, {"address", name}}}},
                      {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
}

inline nlohmann::json namespace_json(const std::string& name) {
  return {{"apiVersion", "v1"}, {"kind", "Namespace"},
          {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/metadata.name", name}}}}},
          {"spec", {{"finalizers", {"kubernetes"}}}}, {"status", {{"phase", "Active"}}}};
}

inline nlohmann::json pod_json(const std::string& ns, const std::string& name, const std::string& node,
                               const std::string& ip, const std::string& app = "web") {
  return {{"apiVersion", "v1"}, {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"app", app}}},
                        {"ownerReferences", {{{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", app + "-7d4b9c8f5"},
                                              {"uid", "0b6a0f0e-1f7e-4d8e-9a55-3f6f1c2b9a01"}, {"controller", true}}}}}},
          {"spec", {{"nodeName", node}, {"restartPolicy", "Always"},
                    {"containers", {{{"name", "app"}, {"image", "nginx:1.25"},
                                     {"ports", {{{"name", "http"}, {"containerPort", 80}, {"protocol", "TCP"}}}}}}}}},
          {"status", {{"phase", "Running"}, {"hostIP", "172.18.0.2"}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}}}}}};
}

inline nlohmann::json service_json(const std::string& ns, const std::string& name, const std::string& cluster_ip) {
  return {{"apiVersion", "v1"}, {"kind", "Service"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", {{"type", "ClusterIP"}, {"clusterIP", cluster_ip}, {"clusterIPs", {cluster_ip}},
                    {"ipFamilies", {"IPv4"}}, {"ipFamilyPolicy", "SingleStack"}, {"selector", {{"app", name}}},
                    {"ports", {{{"name", "http"}, {"port", 80}, {"protocol", "TCP"}, {"targetPort", 80}}}},
                    {"sessionAffinity", "None"}, {"internalTrafficPolicy", "Cluster"}}},
          {"status", {{"loadBalancer", nlohmann::json::object()}}}};
}

inline nlohmann::json endpointslice_json(const std::string& ns, const std::string& service, const std::string& ip,
                                         const std::string& node) {
  return {{"apiVersion", "discovery.k8s.io/v1"}, {"kind", "EndpointSlice"},
          {"metadata", {{"name", service + "-abcde"}, {"namespace", ns},
                        {"labels", {{"kubernetes.io/service-name", service},
                                    {"endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io"}}}}},
          {"addressType", "IPv4"},
          {"endpoints", {{{"addresses", {ip}}, {"conditions", {{"ready", true}, {"serving", true}, {"terminating", false}}},
                          {"nodeName", node}}}},
          {"ports", {{{"name", "http"}, {"port", 80}, {"protocol", "TCP"}}}}};
}

inline nlohmann::json networkpolicy_json(const std::string& ns, const std::string& name) {
  return {{"apiVersion", "networking.k8s.io/v1"}, {"kind", "NetworkPolicy"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", {{"podSelector", {{"matchLabels", {{"app", "web"}}}}},
                    {"policyTypes", {"Ingress"}},
                    {"ingress", {{{"from", {{{"podSelector", {{"matchLabels", {{"app", "client"}}}}}}}},
                                  {"ports", {{{"protocol", "TCP"}, {"port", 80}}}}}}}}}};
}

}  // namespace ferry::k8s::test
