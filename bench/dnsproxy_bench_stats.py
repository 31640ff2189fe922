#!/usr/bin/env python3
"""Figures from dnsperf -v output, for bench/dnsproxy_bench.sh.

  dnsproxy_bench_stats.py NAME FILE CPU_TICKS TICKS_PER_S   one table row; saves NAME.json
  dnsproxy_bench_stats.py --ratios DIR ROUNDS               medians, acns against dnsdist
                                                            (its best rules, and regex rules)
  dnsproxy_bench_stats.py --half-qps DIR ROUNDS             half of acns's median queries/s
  dnsproxy_bench_stats.py --added DIR ROUNDS                median latency each proxy adds over
                                                            the upstream at that rate, and its
                                                            CPU per query there
Runs named acns_b (ACNS_AGENT_B) are reported next to acns when present.
"""
import json
import os
import re
import sys


def parse(path):
    latencies, noerror, qps, lost = [], 0, 0.0, 0
    with open(path) as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                try:
                    latencies.append(float(parts[-1]))
                except ValueError:
                    continue  # "> T name type": a timeout, counted in "Queries lost"
                noerror += parts[1] == "NOERROR"
            elif "Queries per second:" in line:
                qps = float(line.split(":")[1])
            elif "Queries lost:" in line:
                lost = int(re.search(r"Queries lost:\s+(\d+)", line).group(1))
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
    return {"qps": qps, "p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999), "lost": lost, "answers": len(latencies),
            "noerror": noerror / len(latencies) if latencies else 0.0}


def load(d, name):
    with open(os.path.join(d, name + ".json")) as f:
        return json.load(f)


def median(d, target, rounds, key):
    values = sorted(load(d, f"{target}.{r}")[key] for r in range(1, rounds + 1))
    return values[len(values) // 2]


def acns_targets(d):
    return ["acns"] + (["acns_b"] if os.path.exists(os.path.join(d, "acns_b.1.json")) else [])


if sys.argv[1] == "--ratios":
    d, rounds = sys.argv[2], int(sys.argv[3])
    targets = ["upstream", "floor", "dnsdist_best", "dnsdist"] + acns_targets(d)
    m = {t: {k: median(d, t, rounds, k) for k in ("qps", "cpu_us", "p99")} for t in targets}
    for t in m:
        print(f"median {t:<12} {m[t]['qps']:10.0f} queries/s, p99 {m[t]['p99']:.3f} ms"
              + (f", {m[t]['cpu_us']:.1f} us CPU/query" if m[t]["cpu_us"] else ""))
    for t in acns_targets(d):
        a = m[t]
        for peer, what in (("dnsdist_best", "its best rules"), ("dnsdist", "regex rules")):
            dd = m[peer]
            print(f"{t} / dnsdist ({what}): {a['qps'] / dd['qps']:.2f}x the queries/s, "
                  f"{a['cpu_us'] / dd['cpu_us']:.2f}x the CPU per query")
        print(f"{t} / floor: {a['qps'] / m['floor']['qps']:.2f}x the queries/s, "
              f"{a['cpu_us'] / m['floor']['cpu_us']:.2f}x the CPU per query")
elif sys.argv[1] == "--half-qps":
    print(int(median(sys.argv[2], "acns", int(sys.argv[3]), "qps") / 2))
elif sys.argv[1] == "--added":
    d, rounds = sys.argv[2], int(sys.argv[3])
    cpu = {}
    for t in ["floor", "dnsdist_best"] + acns_targets(d):
        added = {k: sorted(load(d, f"{t}_half.{r}")[k] - load(d, f"upstream_half.{r}")[k]
                           for r in range(1, rounds + 1)) for k in ("p50", "p99", "p999")}
        cpu[t] = median(d, f"{t}_half", rounds, "cpu_us")
        print(f"added by {t:<12} (median of {rounds}, each against the upstream run of its round): "
              f"p50 {added['p50'][rounds // 2]:.3f} ms, p99 {added['p99'][rounds // 2]:.3f} ms, "
              f"p99.9 {added['p999'][rounds // 2]:.3f} ms; {cpu[t]:.1f} us CPU/query")
    for t in acns_targets(d):
        print(f"{t} at that rate: {cpu[t] / cpu['dnsdist_best']:.2f}x dnsdist_best's CPU per query, "
              f"{cpu[t] / cpu['floor']:.2f}x the floor's")
else:
    name, path, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = parse(path)
    s["cpu_us"] = ticks / hz * 1e6 / s["answers"] if ticks and s["answers"] else 0.0
    with open(os.path.join(os.path.dirname(path), name + ".json"), "w") as f:
        json.dump(s, f)
    cpu = f"{s['cpu_us']:.1f}" if s["cpu_us"] else "-"
    print(f"{name:<14} {s['qps']:10.0f} {s['p50']:9.3f} {s['p99']:9.3f} {s['lost']:9d} {cpu:>12} {s['noerror']:8.0%}")
