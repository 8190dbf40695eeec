#!/usr/bin/env python3
"""Side-by-side latency of ferry's CNI plugins and the reference plugins, in one run.

Drives the plugins exactly as a runtime does: exec the bridge plugin with CNI_* in the
environment and the network configuration on stdin; the bridge plugin execs its IPAM
plugin found through CNI_PATH. Each flavour gets a CNI_PATH holding only its own plugins,
identical configuration apart from "type" (cniVersion 1.0.0, which both speak), its own
bridge and subnet. Pod namespaces are created before the timed part. Ferry's and the
reference's pods alternate (and which goes first alternates too) so that drift in machine
load hits both the same way.

Run through bench/cni_bench.sh, which puts this process (and so the bridges and iptables
rules the plugins create) in a private "node" network namespace and cleans up after it.
"""

import argparse
import json
import math
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

# Names every pod namespace of this run (h5bp<RUN_ID>...), so a caller can sweep leftovers.
RUN_ID = os.environ.get("H5BENCH_RUN_ID") or uuid.uuid4().hex[:6]


class Flavour:
    def __init__(self, label, plugin_dir, type_prefix, bridge, subnet, netns_tag):
        self.label = label
        self.plugin_dir = plugin_dir
        self.type_prefix = type_prefix
        self.bridge = bridge
        self.subnet = subnet
        self.netns_tag = netns_tag
        self.data_dir = None

    def plugin(self, name):
        return os.path.join(self.plugin_dir, self.type_prefix + name)

    def bridge_config(self, ip_masq):
        return {
            "cniVersion": "1.0.0",
            "name": "h5bench-" + self.netns_tag,
            "type": self.type_prefix + "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": ip_masq,
            "ipam": {
                "type": self.type_prefix + "host-local",
                "dataDir": self.data_dir,
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }

    def loopback_config(self):
        return {"cniVersion": "1.0.0", "name": "h5bench-lo", "type": self.type_prefix + "loopback"}


class PluginError(RuntimeError):
    pass


def plugin_env(flavour, command, container_id, netns):
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": "/run/netns/" + netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": flavour.plugin_dir,
    }


def spawn(binary, env, config):
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # The config is far below the pipe buffer, so this never blocks on the plugin.
    proc.stdin.write(json.dumps(config).encode())
    proc.stdin.close()
    return proc


def finish(proc, what):
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait()
    if proc.returncode != 0:
        raise PluginError(f"{what} exited {proc.returncode}: {out.decode()} {err.decode()}".strip())
    return out


def run_plugin(binary, env, config, what):
    """One exec, timed from spawn to exit (what a runtime waits for); returns (ns, stdout)."""
    start = time.perf_counter_ns()
    proc = spawn(binary, env, config)
    out = finish(proc, what)
    return time.perf_counter_ns() - start, out


def netns_batch(verb, names):
    if not names:
        return
    script = "".join(f"netns {verb} {n}\n" for n in names)
    subprocess.run(["ip", "-force", "-batch", "-"], input=script.encode(), check=verb == "add",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Bench:
    def __init__(self, args):
        self.args = args
        self.ferry = Flavour("ferry", args.ferry_dir, "ferry-", "h5bf", "10.252.0.0/16", "f")
        self.ref = Flavour("reference", args.reference_dir, "", "h5br", "10.253.0.0/16", "r")
        self.flavours = (self.ferry, self.ref)
        self.netns = set()
        self.attached = {}  # (flavour label, netns) -> (container id, config, ADD result)
        self.results = {}  # (case, flavour label) -> list of ns, or wall ns for parallel
        self.tmp = tempfile.mkdtemp(prefix="h5bench.")
        for f in self.flavours:
            f.data_dir = os.path.join(self.tmp, f.label)

    # --- namespaces ---------------------------------------------------------------------
    def make_netns(self, flavour, count, tag):
        names = [f"h5bp{RUN_ID}{flavour.netns_tag}{tag}{i}" for i in range(count)]
        netns_batch("add", names)
        self.netns.update(names)
        return names

    def drop_netns(self, names):
        netns_batch("delete", names)
        self.netns.difference_update(names)

    # --- verbs --------------------------------------------------------------------------
    def add(self, flavour, netns, config):
        cid = f"h5bench-{RUN_ID}-{netns}"
        ns, out = run_plugin(flavour.plugin("bridge"), plugin_env(flavour, "ADD", cid, netns),
                             config, f"{flavour.label} ADD {netns}")
        self.attached[(flavour.label, netns)] = (cid, config, json.loads(out))
        return ns

    def with_prev_result(self, flavour, netns):
        cid, config, result = self.attached[(flavour.label, netns)]
        # As libcni does for CHECK and (cniVersion >= 0.4.0) DEL: the cached ADD result.
        return cid, dict(config, prevResult=result)

    def check(self, flavour, netns):
        cid, config = self.with_prev_result(flavour, netns)
        ns, _ = run_plugin(flavour.plugin("bridge"), plugin_env(flavour, "CHECK", cid, netns),
                           config, f"{flavour.label} CHECK {netns}")
        return ns

    def delete(self, flavour, netns):
        cid, config = self.with_prev_result(flavour, netns)
        ns, _ = run_plugin(flavour.plugin("bridge"), plugin_env(flavour, "DEL", cid, netns),
                           config, f"{flavour.label} DEL {netns}")
        del self.attached[(flavour.label, netns)]
        return ns

    def record(self, case, flavour, value):
        self.results.setdefault((case, flavour.label), []).append(value)

    def alternating(self, i):
        return self.flavours if i % 2 == 0 else tuple(reversed(self.flavours))

    # --- cases --------------------------------------------------------------------------
    def sequential(self, ip_masq):
        """ADD, then CHECK, then DEL over `pods` pods per flavour, ferry and reference alternating."""
        tag = "m" if ip_masq else "n"
        config = {f.label: f.bridge_config(ip_masq) for f in self.flavours}
        pods = {f.label: self.make_netns(f, self.args.pods + self.args.warmup, tag)
                for f in self.flavours}
        case = "ipMasq" if ip_masq else "no ipMasq"
        total = self.args.pods + self.args.warmup
        for verb in ("ADD", "CHECK", "DEL"):
            for i in range(total):
                for f in self.alternating(i):
                    netns = pods[f.label][i]
                    if verb == "ADD":
                        ns = self.add(f, netns, config[f.label])
                    elif verb == "CHECK":
                        ns = self.check(f, netns)
                    else:
                        ns = self.delete(f, netns)
                    if i >= self.args.warmup:
                        self.record((case, verb), f, ns)
        for f in self.flavours:
            self.drop_netns(pods[f.label])

    def parallel(self):
        """`parallel` ADDs started at once per flavour: wall time until the last one exits."""
        count = self.args.parallel
        for rnd in range(self.args.rounds):
            for f in self.alternating(rnd):
                config = f.bridge_config(False)
                pods = self.make_netns(f, count, "p")
                procs = []
                start = time.perf_counter_ns()
                for netns in pods:
                    cid = f"h5bench-{RUN_ID}-{netns}"
                    procs.append((netns, cid, spawn(f.plugin("bridge"),
                                                    plugin_env(f, "ADD", cid, netns), config)))
                outs = [(netns, cid, finish(p, f"{f.label} parallel ADD {netns}"))
                        for netns, cid, p in procs]
                self.record(("no ipMasq", f"{count} parallel ADD (wall)"), f,
                            time.perf_counter_ns() - start)
                for netns, cid, out in outs:
                    self.attached[(f.label, netns)] = (cid, config, json.loads(out))
                procs = []
                start = time.perf_counter_ns()
                for netns in pods:
                    cid, cfg = self.with_prev_result(f, netns)
                    procs.append((netns, spawn(f.plugin("bridge"),
                                               plugin_env(f, "DEL", cid, netns), cfg)))
                for netns, p in procs:
                    finish(p, f"{f.label} parallel DEL {netns}")
                    del self.attached[(f.label, netns)]
                self.record(("no ipMasq", f"{count} parallel DEL (wall)"), f,
                            time.perf_counter_ns() - start)
                self.drop_netns(pods)

    def loopback(self):
        pods = {f.label: self.make_netns(f, self.args.pods + self.args.warmup, "l")
                for f in self.flavours}
        for i in range(self.args.pods + self.args.warmup):
            for f in self.alternating(i):
                netns = pods[f.label][i]
                env = plugin_env(f, "ADD", f"h5bench-{RUN_ID}-{netns}", netns)
                ns, _ = run_plugin(f.plugin("loopback"), env, f.loopback_config(),
                                   f"{f.label} loopback ADD {netns}")
                if i >= self.args.warmup:
                    self.record(("loopback", "ADD"), f, ns)
        for f in self.flavours:
            self.drop_netns(pods[f.label])

    def exec_floor(self):
        """What spawning and waiting cost by themselves: /bin/cat (reads stdin, echoes it)."""
        env = {"PATH": os.environ.get("PATH", "")}
        for i in range(self.args.pods):
            ns, _ = run_plugin("/bin/cat", env, {}, "/bin/cat")
            self.results.setdefault((("exec floor", "/bin/cat"), "floor"), []).append(ns)

    # --- cleanup ------------------------------------------------------------------------
    def cleanup(self):
        # DEL what is still attached (an interrupted run), so the stores and rules are clean
        # even when the caller keeps the node namespace; then drop namespaces and stores.
        for (label, netns), (cid, config, result) in list(self.attached.items()):
            f = self.ferry if label == "ferry" else self.ref
            env = plugin_env(f, "DEL", cid, netns)
            try:
                finish(spawn(f.plugin("bridge"), env, dict(config, prevResult=result)), "cleanup DEL")
            except (PluginError, OSError) as e:
                print(f"cleanup: {e}", file=sys.stderr)
        self.attached.clear()
        self.drop_netns(sorted(self.netns))
        for f in self.flavours:
            subprocess.run(["ip", "link", "delete", f.bridge], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def percentile(values, p):
    ordered = sorted(values)
    rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)  # nearest rank
    return ordered[rank]


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def report(bench, goal):
    ms = lambda ns: ns / 1e6
    rows = []
    print()
    print(f"{'configuration':<12} {'operation':<26} {'ferry med':>9} {'p95':>7} "
          f"{'ref med':>9} {'p95':>7} {'ferry/ref':>9}")
    print("-" * 84)
    cases = []
    for (case, label) in bench.results:
        if case not in cases and label != "floor":
            cases.append(case)
    for case in cases:
        fv = bench.results[(case, "ferry")]
        rv = bench.results[(case, "reference")]
        fm, rm = median(fv), median(rv)
        ratio = fm / rm
        mark = ""
        if case[1] in ("ADD", "DEL") and case[0] != "loopback":
            mark = "  goal met" if ratio <= goal else f"  goal {goal:.2f} missed"
        print(f"{case[0]:<12} {case[1]:<26} {ms(fm):>7.2f}ms {ms(percentile(fv, 95)):>5.2f}ms "
              f"{ms(rm):>7.2f}ms {ms(percentile(rv, 95)):>5.2f}ms {ratio:>9.2f}{mark}")
        rows.append({"configuration": case[0], "operation": case[1], "samples": len(fv),
                     "ferry_median_ms": ms(fm), "ferry_p95_ms": ms(percentile(fv, 95)),
                     "reference_median_ms": ms(rm), "reference_p95_ms": ms(percentile(rv, 95)),
                     "ratio": ratio})
    floor = bench.results.get((("exec floor", "/bin/cat"), "floor"))
    if floor:
        print("-" * 84)
        print(f"exec floor (spawn + wait for /bin/cat, included in every number above): "
              f"median {ms(median(floor)):.2f}ms, p95 {ms(percentile(floor, 95)):.2f}ms")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ferry-dir", required=True, help="dir with ferry-bridge, ferry-host-local, ferry-loopback")
    parser.add_argument("--reference-dir", default="/usr/lib/cni", help="dir with bridge, host-local, loopback")
    parser.add_argument("--pods", type=int, default=100, help="pods per flavour and configuration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed pods before the timed ones")
    parser.add_argument("--parallel", type=int, default=50, help="ADDs started at once")
    parser.add_argument("--rounds", type=int, default=3, help="parallel rounds per flavour (median reported)")
    parser.add_argument("--goal", type=float, default=1 / 3, help="ferry/reference median goal for ADD and DEL")
    parser.add_argument("--json", help="also write the table as JSON to this file")
    args = parser.parse_args()

    for d, names in ((args.ferry_dir, ("ferry-bridge", "ferry-host-local", "ferry-loopback")),
                     (args.reference_dir, ("bridge", "host-local", "loopback"))):
        for n in names:
            if not os.access(os.path.join(d, n), os.X_OK):
                sys.exit(f"cni_bench: {os.path.join(d, n)} is missing or not executable")

    # Ctrl-C and TERM both unwind through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(args)
    try:
        print(f"cni_bench: {args.pods} pods per case (+{args.warmup} warm-up), "
              f"{args.parallel} parallel x {args.rounds} rounds; ferry={args.ferry_dir} "
              f"reference={args.reference_dir}", flush=True)
        for name, step in (("exec floor", bench.exec_floor),
                           ("bridge + host-local, no ipMasq", lambda: bench.sequential(False)),
                           ("bridge + host-local, ipMasq", lambda: bench.sequential(True)),
                           ("parallel ADD/DEL", bench.parallel),
                           ("loopback", bench.loopback)):
            t = time.monotonic()
            step()
            print(f"  {name}: done in {time.monotonic() - t:.1f}s", flush=True)
        rows = report(bench, args.goal)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(rows, out, indent=2)
    except KeyboardInterrupt:
        print("cni_bench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except PluginError as e:
        print(f"cni_bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
