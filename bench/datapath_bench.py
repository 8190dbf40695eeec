#!/usr/bin/env python3
"""Same-node pod-to-pod datapath benchmark: the measuring half of datapath_bench.sh.

The shell script builds the setups (raw veth pair, plain bridge, ferry eBPF, ferry iptables)
and describes them in a JSON file: name, the client's netns, the server's IP, and for ferry
setups the node netns whose agent serves /metrics. This driver runs, per round and in a fixed
order, one iperf3 TCP stream (single connection, `iperf3 -J`) per setup, then one
`ferry-probe rr` (1-byte ping-pong on one TCP connection) per setup, so that machine noise
spreads over all setups alike. It prints median and min-max per setup, the ratios to raw
veth, and the goal line. It never fails on a number: a benchmark reports, tests assert.
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time

IPERF_PORT = 5201
RR_PORT = 5102  # the bench's own rr server (datapath_bench.sh), pinned like the client
AGENT_METRICS = "http://127.0.0.1:9400/metrics"


class MeasureError(RuntimeError):
    pass


def in_netns(netns, argv, timeout):
    """Runs argv in a network namespace (host mounts, as the harness does); returns stdout."""
    cmd = ["nsenter", "--net=/run/netns/" + netns] + argv
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasureError("%s in %s: no result after %ds" % (argv[0], netns, timeout))
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-400:]
        raise MeasureError("%s in %s exited %d: %s" % (" ".join(argv), netns, proc.returncode, detail))
    return proc.stdout


def iperf3_gbits(setup, seconds):
    out = in_netns(setup["client"], ["iperf3", "--client", setup["server_ip"], "--port", str(IPERF_PORT),
                                     "--time", str(seconds), "--json"], timeout=seconds + 30)
    result = json.loads(out)
    if "error" in result:
        raise MeasureError("iperf3 to %s: %s" % (setup["server_ip"], result["error"]))
    return result["end"]["sum_received"]["bits_per_second"] / 1e9


def rr_per_second(setup, args, seconds):
    pin = [] if args.rr_cpu == "none" else ["taskset", "--cpu-list", args.rr_cpu]
    out = in_netns(setup["client"], pin + [args.probe, "rr", "--to", setup["server_ip"], "--port", str(RR_PORT),
                                     "--duration", str(seconds)], timeout=seconds + 30)
    result = json.loads(out)
    if not result.get("ok"):
        raise MeasureError("ferry-probe rr to %s: %s" % (setup["server_ip"], result.get("error")))
    return result["transactions_per_s"]


def agent_metrics(node):
    """{'mode': str|None, 'redirect_local': packets, 'to_stack': packets} from the node's agent."""
    text = in_netns(node, ["curl", "-sf", "--max-time", "3", AGENT_METRICS], timeout=10)
    found = {"mode": None, "redirect_local": 0, "to_stack": 0}
    for line in text.splitlines():
        if line.startswith("ferry_datapath_info{"):
            found["mode"] = line.split('"')[1]
        for counter in ("redirect_local", "to_stack"):
            if line.startswith('ferry_datapath_packets_total{counter="%s"}' % counter):
                found[counter] = int(float(line.split()[-1]))
    return found


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def log(text):
    print("datapath_bench: " + text, file=sys.stderr, flush=True)


def measure(setups, args):
    for s in setups:
        s["gbits"], s["rr"] = [], []
        if s.get("node"):
            s["metrics_before"] = agent_metrics(s["node"])
    log("warm-up: 1 s iperf3 and 1 s rr per setup (not counted)")
    for s in setups:
        iperf3_gbits(s, 1)
        rr_per_second(s, args, 1)
    for r in range(1, args.rounds + 1):
        for s in setups:
            s["gbits"].append(iperf3_gbits(s, args.seconds))
        for s in setups:
            s["rr"].append(rr_per_second(s, args, args.seconds))
        log("round %d/%d: %s" % (r, args.rounds, ", ".join(
            "%s %.1f Gbit/s %.0f/s" % (s["key"], s["gbits"][-1], s["rr"][-1]) for s in setups)))
    for s in setups:
        if s.get("node"):
            s["metrics_after"] = agent_metrics(s["node"])


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def build_report(setups, args, started, finished, load_average_start):
    raw = next(s for s in setups if s["key"] == "raw")
    raw_tp = statistics.median(raw["gbits"])
    raw_rr = statistics.median(raw["rr"])
    rows = []
    for s in setups:
        row = {"setup": s["name"], "key": s["key"], "note": s["note"],
               "throughput_gbit_s": summary(s["gbits"]), "rr_per_s": summary(s["rr"])}
        row["throughput_vs_raw"] = row["throughput_gbit_s"]["median"] / raw_tp if raw_tp else None
        row["rr_vs_raw"] = row["rr_per_s"]["median"] / raw_rr if raw_rr else None
        if s.get("node"):
            before, after = s["metrics_before"], s["metrics_after"]
            row["agent"] = {"datapath": after["mode"],
                            "redirect_local_packets": after["redirect_local"] - before["redirect_local"],
                            "to_stack_packets": after["to_stack"] - before["to_stack"]}
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    ebpf, bridge = by_key["ebpf"], by_key["bridge"]
    goal_share = ebpf["throughput_vs_raw"]
    ahead = ebpf["throughput_gbit_s"]["median"] > bridge["throughput_gbit_s"]["median"]
    goal = {"text": "eBPF >= 95% of raw veth throughput and ahead of the bridge path",
            "ebpf_share_of_raw": goal_share,
            "ebpf_vs_bridge": ebpf["throughput_gbit_s"]["median"] / bridge["throughput_gbit_s"]["median"],
            "met_95_percent": goal_share is not None and goal_share >= 0.95,
            "ahead_of_bridge": ahead}
    goal["met"] = goal["met_95_percent"] and goal["ahead_of_bridge"]
    return {"started": started, "finished": finished, "rounds": args.rounds, "seconds": args.seconds,
            "iperf3": "single TCP stream, iperf3 -t %d -J, received bits/s" % args.seconds,
            "rr": "ferry-probe rr, 1-byte TCP ping-pong on one connection, %d s, %s" % (
                args.seconds, "client and server unpinned" if args.rr_cpu == "none"
                else "client and server pinned to CPU " + args.rr_cpu),
            "rr_cpu": args.rr_cpu,
            "load_average_start": load_average_start, "load_average_end": load_average(),
            "setups": rows, "goal": goal}


def print_table(report):
    print("Same-node pod-to-pod datapath, %d interleaved rounds, %s .. %s, load average %s at start, %s at end" % (
        report["rounds"], report["started"], report["finished"], report["load_average_start"],
        report["load_average_end"]))
    print("throughput: %s; rr: %s" % (report["iperf3"], report["rr"]))
    print()
    head = ("setup", "Gbit/s median", "min-max", "vs raw", "rr trans/s median", "min-max", "vs raw")
    lines = []
    for r in report["setups"]:
        tp, rr = r["throughput_gbit_s"], r["rr_per_s"]
        lines.append((r["setup"], "%.2f" % tp["median"], "%.2f-%.2f" % (tp["min"], tp["max"]),
                      "%.0f%%" % (100 * r["throughput_vs_raw"]), "%.0f" % rr["median"],
                      "%.0f-%.0f" % (rr["min"], rr["max"]), "%.0f%%" % (100 * r["rr_vs_raw"])))
    widths = [max(len(row[i]) for row in [head] + lines) for i in range(len(head))]
    fmt = "  ".join("%-" + str(w) + "s" if i == 0 else "%" + str(w) + "s" for i, w in enumerate(widths))
    print(fmt % head)
    print(fmt % tuple("-" * w for w in widths))
    for row in lines:
        print(fmt % row)
    print()
    for r in report["setups"]:
        extra = ""
        a = r.get("agent")
        if a and a["datapath"] == "ebpf":
            extra = "; agent: datapath ebpf, redirect_local +%d packets, to_stack +%d" % (
                a["redirect_local_packets"], a["to_stack_packets"])
        elif a:
            extra = "; agent: datapath %s" % a["datapath"]
        print("  %-18s %s%s" % (r["setup"] + ":", r["note"], extra))
    g = report["goal"]
    print()
    print("goal: %s -> eBPF at %.1f%% of raw veth (%s), %.2fx the bridge path (%s): %s" % (
        g["text"], 100 * g["ebpf_share_of_raw"], "met" if g["met_95_percent"] else "missed",
        g["ebpf_vs_bridge"], "ahead" if g["ahead_of_bridge"] else "not ahead",
        "MET" if g["met"] else "NOT MET (reported, not failed)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", required=True, help="JSON list of setups (written by datapath_bench.sh)")
    parser.add_argument("--probe", required=True, help="path of ferry-probe")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=5, help="per iperf3 run and per rr run (whole seconds: iperf3 -t)")
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
    load_start = load_average()
    try:
        measure(setups, args)
    except MeasureError as e:
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
