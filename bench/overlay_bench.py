#!/usr/bin/env python3
"""Cross-node overlay benchmark: the measuring half of overlay_bench.sh.

The shell script builds the setups (plain VXLAN between two namespaces = the limit, ferry eBPF
and ferry iptables clusters of two nodes) and describes them in a JSON file: name, the client's
netns, the server's IP, and for ferry setups the two node netns whose agents serve /metrics.
Per round and in a fixed order this runs one iperf3 TCP stream per setup, then one
`ferry-probe rr` per setup, so machine noise spreads over all setups alike (the measuring
functions are datapath_bench.py's). It prints median and min-max per setup, the ratios to the
plain VXLAN limit, the agents' packet counters that moved during the run, and the goal line
"eBPF >= 90% of the plain VXLAN limit". It never fails on a number.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datapath_bench as common  # noqa: E402  (in_netns, iperf3_gbits, rr_per_second, ...)

AGENT_METRICS = "http://127.0.0.1:9400/metrics"
GOAL_SHARE = 0.90


def log(text):
    print("overlay_bench: " + text, file=sys.stderr, flush=True)


def agent_counters(node):
    """{'mode': str|None, 'packets': {counter: value}} from the node's agent /metrics."""
    text = common.in_netns(node, ["curl", "-sf", "--max-time", "3", AGENT_METRICS], timeout=10)
    found = {"mode": None, "packets": {}}
    for line in text.splitlines():
        if line.startswith("ferry_datapath_info{"):
            found["mode"] = line.split('"')[1]
        elif line.startswith('ferry_datapath_packets_total{counter="'):
            found["packets"][line.split('"')[1]] = int(float(line.split()[-1]))
    return found


def nodes_of(setup):
    return [n for n in (setup.get("node"), setup.get("peer_node")) if n]


def measure(setups, args):
    for s in setups:
        s["gbits"], s["rr"] = [], []
        s["metrics_before"] = {n: agent_counters(n) for n in nodes_of(s)}
    log("warm-up: 1 s iperf3 and 1 s rr per setup (not counted)")
    for s in setups:
        common.iperf3_gbits(s, 1)
        common.rr_per_second(s, args, 1)
    for r in range(1, args.rounds + 1):
        for s in setups:
            s["gbits"].append(common.iperf3_gbits(s, args.seconds))
        for s in setups:
            s["rr"].append(common.rr_per_second(s, args, args.seconds))
        log("round %d/%d: %s" % (r, args.rounds, ", ".join(
            "%s %.2f Gbit/s %.0f/s" % (s["key"], s["gbits"][-1], s["rr"][-1]) for s in setups)))
    for s in setups:
        s["metrics_after"] = {n: agent_counters(n) for n in nodes_of(s)}


def build_report(setups, args, started, finished, load_start):
    limit = next(s for s in setups if s["key"] == "limit")
    limit_tp, limit_rr = statistics.median(limit["gbits"]), statistics.median(limit["rr"])
    rows = []
    for s in setups:
        row = {"setup": s["name"], "key": s["key"], "note": s["note"],
               "throughput_gbit_s": common.summary(s["gbits"]), "rr_per_s": common.summary(s["rr"])}
        row["throughput_vs_limit"] = row["throughput_gbit_s"]["median"] / limit_tp if limit_tp else None
        row["rr_vs_limit"] = row["rr_per_s"]["median"] / limit_rr if limit_rr else None
        agents = {}
        for node in nodes_of(s):
            before, after = s["metrics_before"][node], s["metrics_after"][node]
            moved = {k: v - before["packets"].get(k, 0) for k, v in after["packets"].items()
                     if v - before["packets"].get(k, 0) > 0}
            agents[node] = {"datapath": after["mode"], "packets_during_run": moved}
        if agents:
            row["agents"] = agents
        rows.append(row)
    ebpf = next(r for r in rows if r["key"] == "ebpf")
    share = ebpf["throughput_vs_limit"]
    goal = {"text": "eBPF >= %d%% of the plain VXLAN limit (throughput)" % round(GOAL_SHARE * 100),
            "ebpf_share_of_limit": share, "ebpf_rr_share_of_limit": ebpf["rr_vs_limit"],
            "met": share is not None and share >= GOAL_SHARE}
    return {"started": started, "finished": finished, "rounds": args.rounds, "seconds": args.seconds,
            "iperf3": "single TCP stream, iperf3 -t %d -J, received bits/s" % args.seconds,
            "rr": "ferry-probe rr, 1-byte TCP ping-pong on one connection, %d s, %s" % (
                args.seconds, "client and server unpinned" if args.rr_cpu == "none"
                else "client and server pinned to CPU " + args.rr_cpu),
            "rr_cpu": args.rr_cpu, "load_average_start": load_start,
            "load_average_end": common.load_average(), "setups": rows, "goal": goal}


def print_table(report):
    print("Cross-node pod-to-pod over VXLAN, %d interleaved rounds, %s .. %s, load average %s at start, %s at end" % (
        report["rounds"], report["started"], report["finished"], report["load_average_start"],
        report["load_average_end"]))
    print("throughput: %s; rr: %s" % (report["iperf3"], report["rr"]))
    print()
    head = ("setup", "Gbit/s median", "min-max", "vs limit", "rr trans/s median", "min-max", "vs limit")
    lines = []
    for r in report["setups"]:
        tp, rr = r["throughput_gbit_s"], r["rr_per_s"]
        lines.append((r["setup"], "%.2f" % tp["median"], "%.2f-%.2f" % (tp["min"], tp["max"]),
                      "%.0f%%" % (100 * r["throughput_vs_limit"]), "%.0f" % rr["median"],
                      "%.0f-%.0f" % (rr["min"], rr["max"]), "%.0f%%" % (100 * r["rr_vs_limit"])))
    widths = [max(len(row[i]) for row in [head] + lines) for i in range(len(head))]
    fmt = "  ".join("%-" + str(w) + "s" if i == 0 else "%" + str(w) + "s" for i, w in enumerate(widths))
    print(fmt % head)
    print(fmt % tuple("-" * w for w in widths))
    for row in lines:
        print(fmt % row)
    print()
    for r in report["setups"]:
        print("  %-16s %s" % (r["setup"] + ":", r["note"]))
        for node, a in sorted(r.get("agents", {}).items()):
            moved = ", ".join("%s +%d" % kv for kv in sorted(a["packets_during_run"].items())) or "none"
            print("  %-16s agent %s: datapath %s; packet counters during the run: %s" % ("", node, a["datapath"], moved))
    g = report["goal"]
    print()
    print("goal: %s -> eBPF at %.1f%% of the limit (rr %.1f%%): %s" % (
        g["text"], 100 * g["ebpf_share_of_limit"], 100 * g["ebpf_rr_share_of_limit"],
        "MET" if g["met"] else "NOT MET (reported, not failed)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", required=True, help="JSON list of setups (written by overlay_bench.sh)")
    parser.add_argument("--probe", required=True, help="path of ferry-probe")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=5, help="per iperf3 run and per rr run (whole seconds)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="JSON instead of the table on stdout; with FILE, the table and a JSON copy in FILE")
    parser.add_argument("--rr-cpu", default="none",
                        help="CPU the rr client runs on (taskset), or \"none\"; the server is pinned by the caller")
    parser.add_argument("--validate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    if args.rr_cpu != "none" and not args.rr_cpu.isdigit():
        parser.error("--rr-cpu must be a CPU number or \"none\"")
    if args.validate_only:
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

    with open(args.setups) as f:
        setups = json.load(f)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_start = common.load_average()
    try:
        measure(setups, args)
    except common.MeasureError as e:
        log("error: %s" % e)
        return 1
    report = build_report(setups, args, started, time.strftime("%H:%M:%S"), load_start)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
