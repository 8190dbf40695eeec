# shellcheck shell=bash disable=SC2317  # case functions are called through np_run_case
# tests/harness/netpol/cases.sh — the cases: upstream's (kubernetes
# test/e2e/network/netpol/network_policy.go, named after their It() text) and ferry's own
# ("ferry: ..."). Each writes policies, waits for the agents (np_sync), and checks every pod
# against every pod for each (port, protocol) of NP_COMBOS. Policies and label changes are
# undone by np_run_case. See README.md for the list and what is not translated.
#
# Expect functions get <port> <proto>; upstream checked one port/protocol per step, these
# tables say what holds for every port and protocol the model serves.

# Upstream's SetSpecIngressRules/SetSpecEgressRules also set policyTypes, so the policies
# below spell policyTypes out as upstream's generated objects have them.

# --- default deny / allow all ------------------------------------------------------------
np_case c_default_deny_ingress "should support a 'default-deny-ingress' policy"
c_default_deny_ingress() {
  np_policy x deny-ingress <<'EOF'
podSelector: {}
policyTypes: [Ingress]
EOF
  np_sync
  e() { np_expect '*' 'x/*' 0; }
  np_check e
}

np_case c_default_deny_all "should support a 'default-deny-all' policy"
c_default_deny_all() {
  np_policy x deny-all <<'EOF'
podSelector: {}
policyTypes: [Ingress, Egress]
EOF
  np_sync
  e() {
    np_expect '*' 'x/*' 0
    np_expect 'x/*' '*' 0
  }
  np_check e
}

np_case c_allow_all "should support allow-all policy"
c_allow_all() {
  np_policy x allow-all <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- {}
EOF
  np_sync
  np_check np_expect_all_allowed
}

# --- pod and namespace selectors ---------------------------------------------------------
np_case c_pod_selector_server_ns "should enforce policy to allow traffic from pods within server namespace based on PodSelector"
c_pod_selector_server_ns() {
  np_policy x x-a-allows-x-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect x/b x/a 1
  }
  np_check e
}

np_case c_allow_ingress_target "should enforce policy to allow ingress traffic for a target"
c_allow_ingress_target() {
  np_policy x deny-ingress <<'EOF'
podSelector: {}
policyTypes: [Ingress]
EOF
  np_policy x allow-all-to-a <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- {}
EOF
  np_sync
  e() {
    np_expect '*' x/b 0
    np_expect '*' x/c 0
  }
  np_check e
}

np_case c_allow_ingress_all_ns "should enforce policy to allow ingress traffic from pods in all namespaces"
c_allow_ingress_all_ns() {
  np_policy x allow-from-another-ns <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {}
EOF
  np_sync
  np_check np_expect_all_allowed
}

np_case c_ns_selector_other_ns "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector"
c_ns_selector_other_ns() {
  np_policy x allow-client-a-via-ns-selector <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
EOF
  np_sync
  e() {
    np_expect 'x/*' 'x/*' 0
    np_expect 'z/*' 'x/*' 0
  }
  np_check e
}

np_case c_pod_selector_match_expressions "should enforce policy based on PodSelector with MatchExpressions"
c_pod_selector_match_expressions() {
  np_policy x x-a-allows-x-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector:
      matchExpressions: [{key: pod, operator: In, values: [b]}]
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect x/b x/a 1
  }
  np_check e
}

np_case c_ns_selector_match_expressions "should enforce policy based on NamespaceSelector with MatchExpressions"
c_ns_selector_match_expressions() {
  np_policy x allow-ns-y-match-selector <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: ns, operator: In, values: [y]}]
EOF
  np_sync
  e() {
    np_expect 'x/*' x/a 0
    np_expect 'z/*' x/a 0
  }
  np_check e
}

np_case c_pod_or_ns_selector "should enforce policy based on PodSelector or NamespaceSelector"
c_pod_or_ns_selector() {
  np_policy x allow-ns-y-z-pod-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
  - podSelector: {matchLabels: {pod: b}}
EOF
  np_sync
  e() { np_expect x/c x/a 0; }
  np_check e
}

np_case c_pod_and_ns_selector "should enforce policy based on PodSelector and NamespaceSelector"
c_pod_and_ns_selector() {
  np_policy x allow-ns-y-z-pod-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
    podSelector: {matchLabels: {pod: b}}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect y/b x/a 1
    np_expect z/b x/a 1
  }
  np_check e
}

np_case c_multiple_pod_and_ns_selectors "should enforce policy based on Multiple PodSelectors and NamespaceSelectors"
c_multiple_pod_and_ns_selectors() {
  np_policy x allow-ns-y-z-pod-b-c <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
    podSelector:
      matchExpressions: [{key: pod, operator: In, values: [b, c]}]
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect 'y/[bc]' x/a 1
    np_expect 'z/[bc]' x/a 1
  }
  np_check e
}

np_case c_any_pod_selectors "should enforce policy based on any PodSelectors"
c_any_pod_selectors() {
  np_policy x x-a-allows-x-b-x-c <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  - podSelector: {matchLabels: {pod: c}}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect x/b x/a 1
    np_expect x/c x/a 1
  }
  np_check e
}

np_case c_pod_in_other_ns "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector"
c_pod_in_other_ns() {
  np_policy x allow-ns-y-pod-a-via-namespace-pod-selector <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect y/a x/a 1
  }
  np_check e
}

np_case c_default_ns_label_match_labels "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label"
c_default_ns_label_match_labels() {
  np_policy x allow-client-a-via-ns-selector-for-immutable-ns-label <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
EOF
  np_sync
  e() {
    np_expect 'x/*' x/a 0
    np_expect 'z/*' x/a 0
  }
  np_check e
}

np_case c_default_ns_label_match_expressions "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label"
c_default_ns_label_match_expressions() {
  np_policy x allow-ns-y-match-selector-for-immutable-ns-label <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}]
EOF
  np_sync
  e() { np_expect 'y/*' x/a 0; }
  np_check e
}

np_case c_deny_other_namespaces "should deny ingress from pods on other namespaces"
c_deny_other_namespaces() {
  np_policy x deny-other-namespaces <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {}
EOF
  np_sync
  e() {
    np_expect 'y/*' 'x/*' 0
    np_expect 'z/*' 'x/*' 0
  }
  np_check e
}

# --- ports and protocols -----------------------------------------------------------------
# Upstream's Ports case (and its UDP and SCTP suites): namespace y may reach x/a on exactly
# one port of one protocol.
np_port81_case() {
  local proto=$1
  np_policy x allow-client-a-via-ns-selector-81 <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {port: 81, protocol: ${proto^^}}
EOF
  np_sync
  NP_PORT81_PROTO=$proto
  e() {
    np_expect_all_ingress x/a 0
    [[ $1/$2 == "81/$NP_PORT81_PROTO" ]] && np_expect 'y/*' x/a 1
  }
  np_check e
}
np_case c_ports "should enforce policy based on Ports"
c_ports() { np_port81_case tcp; }
np_case c_ports_udp "[UDP] should enforce policy based on Ports"
c_ports_udp() { np_port81_case udp; }
np_case c_ports_sctp "[SCTP] should enforce policy based on Ports"
c_ports_sctp() { np_port81_case sctp; }

np_case c_stacked_overlapping "should enforce multiple, stacked policies with overlapping podSelectors"
c_stacked_overlapping() {
  np_policy x allow-client-a-via-ns-selector-81 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {port: 81, protocol: TCP}
EOF
  np_sync
  e81() {
    np_expect_all_ingress x/a 0
    [[ $1/$2 == 81/tcp ]] && np_expect 'y/*' x/a 1
  }
  np_check e81
  np_policy x allow-client-a-via-ns-selector-80 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {port: 80, protocol: TCP}
EOF
  np_sync
  eboth() {
    np_expect_all_ingress x/a 0
    [[ $2 == tcp && ($1 == 80 || $1 == 81) ]] && np_expect 'y/*' x/a 1
  }
  np_check eboth
}

np_case c_named_port_ingress "should allow ingress access on one named port"
c_named_port_ingress() {
  np_policy x allow-all <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- ports:
  - {port: serve-81-tcp}
EOF
  np_sync
  e() { [[ $1/$2 == 81/tcp ]] || np_expect '*' 'x/*' 0; }
  np_check e
}

np_case c_named_port_ingress_from_ns "should allow ingress access from namespace on one named port"
c_named_port_ingress_from_ns() {
  np_policy x allow-client-in-ns-y-on-named-port-80 <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {port: serve-80-tcp}
EOF
  np_sync
  e() {
    np_expect '*' 'x/*' 0
    [[ $1/$2 == 80/tcp ]] && np_expect 'y/*' 'x/*' 1
  }
  np_check e
}

np_case c_named_port_egress "should allow egress access on one named port"
c_named_port_egress() {
  np_policy x allow-egress <<'EOF'
podSelector: {}
policyTypes: [Egress]
egress:
- ports:
  - {port: serve-80-tcp}
EOF
  np_sync
  e() { [[ $1/$2 == 80/tcp ]] || np_expect 'x/*' '*' 0; }
  np_check e
}

# x/a accepts only one protocol (any port when $3 is empty, else that port): the pattern of
# upstream's protocol cases below.
np_x_a_ingress_only() {
  local name=$1 proto=$2 port=${3:-}
  np_policy x "$name" <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- ports:
  - {${port:+port: $port, }protocol: ${proto^^}}
EOF
  np_sync
  NP_ONLY_PROTO=$proto NP_ONLY_PORT=$port
  e() { [[ $2 == "$NP_ONLY_PROTO" && (-z $NP_ONLY_PORT || $1 == "$NP_ONLY_PORT") ]] || np_expect_all_ingress x/a 0; }
  np_check e
}

np_case c_any_port_specific_protocol "should enforce ingress policy allowing any port traffic to a server on a specific protocol"
c_any_port_specific_protocol() { np_x_a_ingress_only allow-ingress-by-proto tcp; }

# ferry supports SCTP, so SCTP is allowed where the policy says so (upstream only asserts that
# TCP is not).
np_case c_sctp_not_tcp "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP"
c_sctp_not_tcp() { np_x_a_ingress_only allow-only-sctp-ingress-on-port-81 sctp 81; }

np_case c_sctp_isolates "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP"
c_sctp_isolates() { np_x_a_ingress_only allow-only-sctp-ingress sctp; }

np_case c_udp_not_tcp "should not allow access by TCP when a policy specifies only UDP"
c_udp_not_tcp() { np_x_a_ingress_only allow-only-udp-ingress-on-port-81 udp 81; }

# The protocol suites ("NetworkPolicy between server and client using UDP" / "using SCTP")
# repeat default-deny-ingress (protocol-independent: covered above for every protocol) and the
# pod-in-other-namespace case with a port of their protocol.
np_pod_in_other_ns_port_case() {
  local proto=$1
  np_policy x allow-ns-y-pod-a-via-namespace-pod-selector <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
  ports:
  - {port: 80, protocol: ${proto^^}}
EOF
  np_sync
  NP_CASE_PROTO=$proto
  e() {
    np_expect_all_ingress x/a 0
    [[ $1/$2 == "80/$NP_CASE_PROTO" ]] && np_expect y/a x/a 1
  }
  np_check e
}
np_case c_pod_in_other_ns_udp "[UDP] should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector"
c_pod_in_other_ns_udp() { np_pod_in_other_ns_port_case udp; }
np_case c_pod_in_other_ns_sctp "[SCTP] should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector"
c_pod_in_other_ns_sctp() { np_pod_in_other_ns_port_case sctp; }

# --- several policies, updates, deletion -------------------------------------------------
np_case c_multiple_ingress_allow_all_wins "should enforce multiple ingress policies with ingress allow-all policy taking precedence"
c_multiple_ingress_allow_all_wins() {
  np_policy x allow-client-a-via-ns-selector-80 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- ports:
  - {port: 80, protocol: TCP}
EOF
  np_sync
  e80() { [[ $1/$2 == 80/tcp ]] || np_expect_all_ingress x/a 0; }
  np_check e80
  np_policy x allow-all <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- {}
EOF
  np_sync
  np_check np_expect_all_allowed
}

np_case c_multiple_egress_allow_all_wins "should enforce multiple egress policies with egress allow-all policy taking precedence"
c_multiple_egress_allow_all_wins() {
  np_policy x allow-egress-port-80 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- ports:
  - {port: 80, protocol: TCP}
EOF
  np_sync
  e80() { [[ $1/$2 == 80/tcp ]] || np_expect_all_egress x/a 0; }
  np_check e80
  np_policy x allow-all-egress <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- {}
EOF
  np_sync
  np_check np_expect_all_allowed
}

np_case c_stacked_policies "ferry: deny-all + allow specific (x/a -> x/b through an egress and an ingress policy on top of deny-all)"
c_stacked_policies() {
  np_policy x deny-all <<'EOF'
podSelector: {}
policyTypes: [Ingress, Egress]
EOF
  np_policy x allow-x-a-to-x-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - podSelector: {matchLabels: {pod: b}}
EOF
  np_policy x allow-x-b-from-x-a <<'EOF'
podSelector: {matchLabels: {pod: b}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: a}}
EOF
  np_sync
  e() {
    np_expect '*' 'x/*' 0
    np_expect 'x/*' '*' 0
    np_expect x/a x/b 1
  }
  np_check e
}

np_case c_updated_policy "should enforce updated policy"
c_updated_policy() {
  np_policy x allow-all-mutate-to-deny-all <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- {}
EOF
  np_sync
  np_check np_expect_all_allowed
  # The same object, rewritten with no ingress rule: deny all ingress of x.
  np_policy x allow-all-mutate-to-deny-all <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress: []
EOF
  np_sync
  e() { np_expect '*' 'x/*' 0; }
  np_check e
}

np_case c_updated_namespace "should allow ingress access from updated namespace"
c_updated_namespace() {
  np_policy x allow-client-a-via-ns-selector <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns2: updated}}
EOF
  np_sync
  e0() { np_expect_all_ingress x/a 0; }
  np_check e0
  np_label_ns y "ns=y,ns2=updated"
  np_sync
  e1() {
    np_expect_all_ingress x/a 0
    np_expect 'y/*' x/a 1
  }
  np_check e1
}

np_case c_updated_pod_allow "should allow ingress access from updated pod"
c_updated_pod_allow() {
  np_policy x x-a-allows-b-with-label <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b, pod2: updated}}
EOF
  np_sync
  e0() { np_expect_all_ingress x/a 0; }
  np_check e0
  np_label_pod x/b "pod=b,pod2=updated"
  np_sync
  e1() {
    np_expect_all_ingress x/a 0
    np_expect x/b x/a 1
  }
  np_check e1
}

np_case c_updated_pod_deny "should deny ingress access to updated pod"
c_updated_pod_deny() {
  np_policy x deny-ingress-via-label-selector <<'EOF'
podSelector: {matchLabels: {target: isolated}}
policyTypes: [Ingress]
EOF
  np_sync
  np_check np_expect_all_allowed
  np_label_pod x/a "pod=a,target=isolated"
  np_sync
  e() { np_expect_all_ingress x/a 0; }
  np_check e
}

np_case c_deleted_policies "should stop enforcing policies after they are deleted"
c_deleted_policies() {
  np_policy x deny-all <<'EOF'
podSelector: {}
policyTypes: [Ingress, Egress]
EOF
  np_sync
  e() {
    np_expect 'x/*' '*' 0
    np_expect '*' 'x/*' 0
  }
  np_check e
  np_policy_delete x deny-all
  np_sync
  np_check np_expect_all_allowed
}

# --- egress ------------------------------------------------------------------------------
np_case c_deny_egress_pod_selector "should deny egress from pods based on PodSelector"
c_deny_egress_pod_selector() {
  np_policy x deny-egress-pod-a <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
EOF
  np_sync
  e() { np_expect_all_egress x/a 0; }
  np_check e
}

np_case c_deny_egress_namespace "should deny egress from all pods in a namespace"
c_deny_egress_namespace() {
  np_policy x deny-egress-ns-x <<'EOF'
podSelector: {}
policyTypes: [Egress]
EOF
  np_sync
  e() { np_expect 'x/*' '*' 0; }
  np_check e
}

np_case c_ingress_egress_together "should work with Ingress, Egress specified together"
c_ingress_egress_together() {
  np_policy x allow-client-a-via-pod-selector <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress, Egress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress:
- ports:
  - {port: 80, protocol: TCP}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect x/b x/a 1
    [[ $1/$2 == 80/tcp ]] || np_expect_all_egress x/a 0
  }
  np_check e
}

np_case c_egress_client_side_deny "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)"
c_egress_client_side_deny() {
  # x/a may talk only to y/a; y's pods accept x/a (and the a pods of y and z) explicitly.
  np_policy x allow-to-ns-y-pod-a <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
EOF
  np_policy y allow-from-xyz-pod-a <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: ns, operator: In, values: [x, y, z]}]
    podSelector: {matchLabels: {pod: a}}
EOF
  np_sync
  e() {
    np_expect_all_egress x/a 0
    np_expect '*' 'y/*' 0
    np_expect '*/a' 'y/*' 1
    np_expect x/a 'y/[bc]' 0  # allowed by y's ingress, denied by x/a's egress
  }
  np_check e
}

np_case c_egress_pod_and_ns_selector "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector"
c_egress_pod_and_ns_selector() {
  np_policy x allow-to-ns-y-pod-a <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
EOF
  np_sync
  e() {
    np_expect_all_egress x/a 0
    np_expect x/a y/a 1
  }
  np_check e
}

np_case c_ingress_egress_independent "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector"
c_ingress_egress_independent() {
  np_policy x allow-egress-for-target <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- {}
EOF
  np_sync
  np_check np_expect_all_allowed
  np_policy x deny-ingress-via-label-selector <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
EOF
  np_sync
  e() { np_expect_all_ingress x/a 0; }
  np_check e
}

# --- ipBlock (pod IPs, as upstream) ------------------------------------------------------
np_case c_egress_cidr "should allow egress access to server in CIDR block"
c_egress_cidr() {
  np_policy x allow-client-a-via-cidr-egress-rule <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: "$(np_host_cidr y/b)"}
EOF
  np_sync
  e() {
    np_expect_all_egress x/a 0
    np_expect x/a y/b 1
  }
  np_check e
}

# Upstream writes "<x/b's IP>/24" (/64) except "<x/b's IP>/32" (/128); which pods are in that
# /24 depends on the addressing (here: the pods on x/b's node), so the table is computed.
np_case c_egress_cidr_except "should enforce except clause while egress access to server in CIDR block"
c_egress_cidr_except() {
  local mask=24
  [[ $NP_FAMILY == 6 ]] && mask=64
  NP_BLOCK_PODS=$(np_pods_in_block "$(np_cidr x/b $mask)" "$(np_host_cidr x/b)")
  [[ -n $NP_BLOCK_PODS ]] || fail "no model pod in $(np_cidr x/b $mask) besides x/b: the case would not test anything"
  np_policy x deny-client-a-via-except-cidr-egress-rule <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: "$(np_cidr x/b $mask)"
      except: ["$(np_host_cidr x/b)"]
EOF
  np_sync
  e() {
    local p
    np_expect_all_egress x/a 0
    for p in $NP_BLOCK_PODS; do np_expect x/a "$p" 1; done
  }
  np_check e
}

np_case c_cidr_overlapping_except "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed"
c_cidr_overlapping_except() {
  local mask=24
  [[ $NP_FAMILY == 6 ]] && mask=64
  NP_BLOCK_PODS=$(np_pods_in_block "$(np_cidr x/b $mask)" "$(np_host_cidr x/b)")
  np_policy x deny-client-a-via-except-cidr-egress-rule <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: "$(np_cidr x/b $mask)"
      except: ["$(np_host_cidr x/b)"]
EOF
  np_sync
  e() {
    local p
    np_expect_all_egress x/a 0
    for p in $NP_BLOCK_PODS; do np_expect x/a "$p" 1; done
  }
  np_check e
  # A second policy allows x/b's own /32: inside the first one's except, allowed by the union.
  np_policy x allow-client-a-via-cidr-egress-rule <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: "$(np_host_cidr x/b)"}
EOF
  np_sync
  e2() {
    e "$@"
    np_expect x/a x/b 1
  }
  np_check e2
}

np_case c_ingress_cidr "ferry: allow ingress from a CIDR (pod IPs) with except"
c_ingress_cidr() {
  local mask=24
  [[ $NP_FAMILY == 6 ]] && mask=64
  NP_BLOCK_PODS=$(np_pods_in_block "$(np_cidr y/a $mask)" "$(np_host_cidr y/a)")
  np_policy x allow-from-cidr <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - ipBlock:
      cidr: "$(np_cidr y/a $mask)"
      except: ["$(np_host_cidr y/a)"]
EOF
  np_sync
  e() {
    local p
    np_expect_all_ingress x/a 0
    for p in $NP_BLOCK_PODS; do np_expect "$p" x/a 1; done
  }
  np_check e
}

# --- ferry's own cases -------------------------------------------------------------------
np_case c_endport_ingress_edges "ferry: ingress endPort range 81-83 (edges 80 and 84 blocked; TCP only)"
c_endport_ingress_edges() {
  np_policy x allow-81-83 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- ports:
  - {port: 81, endPort: 83, protocol: TCP}
EOF
  np_sync
  e() { [[ $2 == tcp && $1 -ge 81 && $1 -le 83 ]] || np_expect_all_ingress x/a 0; }
  np_check e 80/tcp 81/tcp 82/tcp 83/tcp 84/tcp 82/udp
}

np_case c_endport_udp_and_single "ferry: UDP endPort 80-82 plus a one-port range 84-84 (83 blocked)"
c_endport_udp_and_single() {
  np_policy x allow-udp-ranges <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- ports:
  - {port: 80, endPort: 82, protocol: UDP}
  - {port: 84, endPort: 84, protocol: UDP}
EOF
  np_sync
  e() { [[ $2 == udp && $1 != 83 ]] || np_expect_all_ingress x/a 0; }
  np_check e 80/udp 81/udp 82/udp 83/udp 84/udp 82/tcp
}

np_case c_endport_egress "ferry: egress endPort range 82-84 to namespace y"
c_endport_egress() {
  np_policy x egress-82-84 <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {port: 82, endPort: 84, protocol: TCP}
EOF
  np_sync
  e() {
    np_expect_all_egress x/a 0
    [[ $2 == tcp && $1 -ge 82 ]] && np_expect x/a 'y/*' 1
  }
  np_check e 81/tcp 82/tcp 83/tcp 84/tcp
}

np_case c_match_expressions_exists "ferry: matchExpressions Exists / DoesNotExist on pod labels across namespaces"
c_match_expressions_exists() {
  np_label_pod y/b "pod=b,role=db"
  np_label_pod z/c "pod=c,role=web"
  np_policy x from-role-exists <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {}
    podSelector:
      matchExpressions: [{key: role, operator: Exists}]
EOF
  np_policy x from-no-role <<'EOF'
podSelector: {matchLabels: {pod: b}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {}
    podSelector:
      matchExpressions: [{key: role, operator: DoesNotExist}]
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect y/b x/a 1
    np_expect z/c x/a 1
    np_expect y/b x/b 0
    np_expect z/c x/b 0
  }
  np_check e
}

np_case c_match_expressions_ns_ops "ferry: namespaceSelector NotIn + Exists/DoesNotExist, matchLabels AND matchExpressions"
c_match_expressions_ns_ops() {
  np_label_ns z "ns=z,team=blue"
  np_policy x ns-ops <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: team, operator: Exists}]
- from:
  - namespaceSelector:
      matchLabels: {ns: y}
      matchExpressions: [{key: team, operator: DoesNotExist}]
    podSelector:
      matchLabels: {pod: c}
      matchExpressions: [{key: pod, operator: NotIn, values: [a, b]}]
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect 'z/*' x/a 1
    np_expect y/c x/a 1
  }
  np_check e
}

np_case c_policy_types_inferred "ferry: policyTypes absent: egress rules isolate both directions"
c_policy_types_inferred() {
  np_policy x egress-only-rules <<'EOF'
podSelector: {matchLabels: {pod: a}}
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
EOF
  np_sync
  e() {
    np_expect_all_ingress x/a 0
    np_expect_all_egress x/a 0
    np_expect x/a 'y/*' 1
  }
  np_check e
}

np_case c_policy_types_egress_only "ferry: policyTypes [Egress] ignores ingress rules (ingress not isolated)"
c_policy_types_egress_only() {
  np_policy x egress-type-with-ingress-rules <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress:
- to:
  - podSelector: {}
EOF
  np_sync
  e() { np_expect x/a 'y/*' 0; np_expect x/a 'z/*' 0; }
  np_check e
}

np_case c_other_namespace_policy "ferry: a policy selects pods of its own namespace only"
c_other_namespace_policy() {
  np_policy y deny-pod-a <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress, Egress]
EOF
  np_sync
  e() {
    np_expect_all_ingress y/a 0
    np_expect_all_egress y/a 0
  }
  np_check e
}

np_case c_ipv6 "ferry: IPv6 — default-deny-ingress, PodSelector, egress ipBlock /128 and /64 with except"
c_ipv6() {
  NP_FAMILY=6
  np_policy x deny-ingress <<'EOF'
podSelector: {}
policyTypes: [Ingress]
EOF
  np_policy y y-a-allows-y-b <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
EOF
  NP_BLOCK_PODS=$(np_pods_in_block "$(np_cidr z/b 64)" "$(np_host_cidr z/b)")
  np_policy z egress-cidrs <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: "$(np_host_cidr y/c)"}
  - ipBlock:
      cidr: "$(np_cidr z/b 64)"
      except: ["$(np_host_cidr z/b)"]
EOF
  np_sync
  e() {
    local p
    np_expect '*' 'x/*' 0
    np_expect_all_ingress y/a 0
    np_expect y/b y/a 1
    np_expect_all_egress z/a 0
    np_expect z/a y/c 1
    for p in $NP_BLOCK_PODS; do [[ $p == x/* ]] || np_expect z/a "$p" 1; done
  }
  np_check e
}

# Policies on pods reached through a Service's ClusterIP: tests/harness/services (case c_policy),
# where the Services live.
