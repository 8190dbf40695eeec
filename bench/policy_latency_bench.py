#!/usr/bin/env python3
"""NetworkPolicy change latency of ferry-agent: manifest change -> policy applied, both modes.

    sudo bench/policy_latency_bench.py [FERRY_BIN_DIR] [--pods N] [--local N] [--policies N]
                                       [--rounds N] [--json]

For each datapath mode (ebpf, iptables) in one run: a node netns `fyplat-<mode>-<pid>` with
bridge ferry0 and --local pod veths (endpoint records as ferry-bridge writes them), a manifest
directory with one Node, namespaces x/y/z, --pods pods (one file each, --local of them on this
node) and --policies NetworkPolicies; the real ferry-agent runs in the netns. Each round edits one
manifest (atomically, tmp + rename, as `kubectl get -o yaml > f && mv` would) and waits for the
agent's <state-dir>/policy.json to change: the agent writes it right after
Dataplane::program_policy() returned, so manifest rename -> policy.json = change in the datapath.
Change kinds, interleaved by round: a policy's port, a remote pod's label, a namespace's label,
a remote pod's IP. The agent's own per-pass log (`compile X ms, apply Y ms`) is summarised too.

Goal (issue 5): every change applied within 1 s. Everything it creates (netns, bpffs pins under
/sys/fs/bpf/ferry/fyplat-*, temp dirs) is removed on exit.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

NODE_IP = "192.168.77.1"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def pod_ip(i):
    return f"10.245.{i // 250}.{i % 250 + 2}"


def pod_yaml(name, ns, labels, ip, node):
    lab = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{lab}}}}}\n"
            f"spec: {{nodeName: {node}, containers: [{{name: c, image: i, ports: [{{name: serve-80-tcp, "
            f"containerPort: 80, protocol: TCP}}]}}]}}\nstatus: {{phase: Running, podIP: {ip}}}\n")


def ns_yaml(name, extra=""):
    return (f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: "
            f"{{kubernetes.io/metadata.name: {name}{extra}}}}}\n")


def policy_yaml(i, ns, port):
    # Selects pods with app=a<i%10>, admits pods with role=r<i%7> from namespaces labelled team=t.
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: {ns}}}\n"
            f"spec:\n  podSelector: {{matchLabels: {{app: a{i % 10}}}}}\n  ingress:\n"
            f"  - from:\n    - namespaceSelector: {{matchLabels: {{team: t}}}}\n"
            f"      podSelector: {{matchLabels: {{role: r{i % 7}}}}}\n"
            f"    ports: [{{protocol: TCP, port: {port}}}]\n")


class Node:
    def __init__(self, mode, bindir, args):
        self.mode = mode
        self.name = f"fyplat-{mode[:3]}-{os.getpid() % 100000}"
        self.tmp = tempfile.mkdtemp(prefix=self.name + "-")
        self.manifests = os.path.join(self.tmp, "manifests")
        self.state = os.path.join(self.tmp, "state")
        self.bpffs = f"/sys/fs/bpf/ferry/{self.name}"
        self.log_path = os.path.join(self.tmp, "agent.log")
        self.agent = None
        self.bindir = bindir
        self.args = args
        os.makedirs(self.manifests)
        os.makedirs(os.path.join(self.state, "endpoints"))

    def setup(self):
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "netns", "add", self.name)
        ipn = lambda *a: sh("ip", "-n", self.name, *a)
        ipn("link", "set", "lo", "up")
        ipn("link", "add", "ferry0", "address", "02:fe:00:00:00:01", "type", "bridge")
        ipn("addr", "add", "10.245.0.1/16", "dev", "ferry0")
        ipn("link", "set", "ferry0", "up")
        a = self.args
        write_atomic(os.path.join(self.manifests, "00-node.yaml"),
                     f"apiVersion: v1\nkind: Node\nmetadata: {{name: {self.name}}}\nspec: {{podCIDR: 10.245.0.0/16}}\n"
                     f"status: {{addresses: [{{type: InternalIP, address: {NODE_IP}}}]}}\n")
        for ns in ("x", "y", "z"):
            write_atomic(os.path.join(self.manifests, f"ns-{ns}.yaml"), ns_yaml(ns, ", team: t" if ns != "z" else ""))
        self.pods = {}
        for i in range(a.pods):
            ns = "xyz"[i % 3]
            local = i < a.local
            self.pods[i] = dict(name=f"pod{i}", ns=ns, labels={"app": f"a{i % 10}", "role": f"r{i % 7}"},
                                ip=pod_ip(i), node=self.name if local else "remote")
            self.write_pod(i)
            if local:
                veth = f"fyv{i:07d}"
                ipn("link", "add", veth, "type", "veth", "peer", "name", f"fyp{i:07d}")
                ipn("link", "set", veth, "master", "ferry0", "up")
                index = int(sh("ip", "netns", "exec", self.name, "cat", f"/sys/class/net/{veth}/ifindex").stdout)
                rec = {"containerID": f"c{i:011d}", "ifname": "eth0", "netns": "/run/netns/none", "network": "bench",
                       "bridge": "ferry0", "hostVeth": veth, "hostVethIndex": index,
                       "containerMAC": f"0a:58:0a:f5:{i // 256:02x}:{i % 256:02x}", "mtu": 1500,
                       "ips": [pod_ip(i) + "/16"], "gateways": ["10.245.0.1"], "podNamespace": ns,
                       "podName": f"pod{i}"}
                write_atomic(os.path.join(self.state, "endpoints", f"c{i:011d}-eth0.json"), json.dumps(rec))
        self.policy_port = {}
        for i in range(a.policies):
            self.policy_port[i] = 80
            write_atomic(os.path.join(self.manifests, f"pol-{i}.yaml"), policy_yaml(i, "xyz"[i % 3], 80))

    def write_pod(self, i):
        p = self.pods[i]
        write_atomic(os.path.join(self.manifests, f"pod-{i}.yaml"),
                     pod_yaml(p["name"], p["ns"], p["labels"], p["ip"], p["node"]))

    def start(self):
        log = open(self.log_path, "a")
        self.agent = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name}", os.path.join(self.bindir, "ferry-agent"), "--node", self.name,
             "--datastore", "dir:" + self.manifests, "--state-dir", self.state, "--bpffs-root", self.bpffs,
             "--datapath", self.mode, "--overlay", "none", "--resync-interval", "1h"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.agent.poll() is not None:
                raise RuntimeError(f"ferry-agent ({self.mode}) exited:\n" + open(self.log_path).read())
            if "ready:" in open(self.log_path).read():
                return
            time.sleep(0.05)
        raise RuntimeError(f"ferry-agent ({self.mode}) not ready in 60 s:\n" + open(self.log_path).read())

    def policy_file_id(self):
        try:
            st = os.stat(os.path.join(self.state, "policy.json"))
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    # One change; returns seconds from the manifest rename to the new policy.json.
    def change(self, kind, round_no):
        a = self.args
        before = self.policy_file_id()
        remote = list(range(a.local, a.pods))
        if kind == "policy":
            i = round_no % a.policies
            self.policy_port[i] = 1000 + round_no
            path, text = os.path.join(self.manifests, f"pol-{i}.yaml"), policy_yaml(i, "xyz"[i % 3], 1000 + round_no)
        elif kind == "pod-label":
            i = remote[round_no % len(remote)]
            self.pods[i]["labels"]["role"] = f"r{(int(self.pods[i]['labels']['role'][1:]) + 1) % 7}"
            self.pods[i]["labels"]["bench"] = f"b{round_no}"
            p = self.pods[i]
            path, text = os.path.join(self.manifests, f"pod-{i}.yaml"), pod_yaml(p["name"], p["ns"], p["labels"], p["ip"], p["node"])
        elif kind == "ns-label":
            ns = "xyz"[round_no % 3]
            path, text = os.path.join(self.manifests, f"ns-{ns}.yaml"), ns_yaml(ns, f", rev: r{round_no}" + (", team: t" if round_no % 2 else ""))
        else:  # pod-ip
            i = remote[round_no % len(remote)]
            self.pods[i]["ip"] = f"10.246.{round_no // 250}.{round_no % 250 + 2}"
            p = self.pods[i]
            path, text = os.path.join(self.manifests, f"pod-{i}.yaml"), pod_yaml(p["name"], p["ns"], p["labels"], p["ip"], p["node"])
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        t0 = time.monotonic()
        os.rename(tmp, path)
        deadline = t0 + 10
        while time.monotonic() < deadline:
            if self.policy_file_id() != before:
                return time.monotonic() - t0
            time.sleep(0.0005)
        raise RuntimeError(f"{self.mode}: {kind} change not applied within 10 s:\n" + open(self.log_path).read()[-3000:])

    def passes(self):
        out = []
        for m in re.finditer(r"policy applied: .*compile ([0-9.]+) ms, apply ([0-9.]+) ms", open(self.log_path).read()):
            out.append((float(m.group(1)), float(m.group(2))))
        return out

    def cleanup(self):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(self.bpffs, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def summary(values):
    v = sorted(values)
    return {"n": len(v), "median_ms": round(statistics.median(v) * 1e3, 2),
            "p90_ms": round(v[min(len(v) - 1, int(len(v) * 0.9))] * 1e3, 2), "max_ms": round(v[-1] * 1e3, 2)}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bindir", nargs="?", default=os.path.join(here, "..", "build", "bin"))
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--local", type=int, default=20)
    ap.add_argument("--policies", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20, help="changes per kind and mode")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, bpffs)", file=sys.stderr)
        return 77
    kinds = ["policy", "pod-label", "ns-label", "pod-ip"]
    nodes = [Node(m, a.bindir, a) for m in ("ebpf", "iptables")]
    results = {}
    try:
        for n in nodes:
            print(f"setting up {n.mode}: {a.pods} pods ({a.local} local), {a.policies} policies", file=sys.stderr)
            n.setup()
            n.start()
        lat = {(n.mode, k): [] for n in nodes for k in kinds}
        for r in range(a.rounds):  # interleaved: modes and kinds share the machine's noise
            for k in kinds:
                for n in nodes:
                    lat[(n.mode, k)].append(n.change(k, r))
                    time.sleep(0.02)
        for n in nodes:
            p = n.passes()[1:]  # the first pass is the initial apply
            results[n.mode] = {k: summary(lat[(n.mode, k)]) for k in kinds}
            if p:
                results[n.mode]["agent_pass"] = {
                    "compile_median_ms": round(statistics.median(c for c, _ in p), 2),
                    "apply_median_ms": round(statistics.median(x for _, x in p), 2),
                    "passes": len(p)}
            results[n.mode]["first_apply"] = dict(zip(("compile_ms", "apply_ms"), n.passes()[0])) if n.passes() else {}
    finally:
        for n in nodes:
            n.cleanup()
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"manifest change -> policy applied (policy.json written after program_policy), "
          f"{a.pods} pods ({a.local} local), {a.policies} policies, {a.rounds} rounds per kind")
    print(f"{'mode':9} {'change':10} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for mode, r in results.items():
        for k in kinds:
            s = r[k]
            print(f"{mode:9} {k:10} {s['median_ms']:>10} {s['p90_ms']:>8} {s['max_ms']:>8}")
    for mode, r in results.items():
        ap_ = r.get("agent_pass", {})
        print(f"{mode}: agent pass compile median {ap_.get('compile_median_ms')} ms, apply median "
              f"{ap_.get('apply_median_ms')} ms; first apply {r.get('first_apply')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
