#!/usr/bin/env python3
"""Figures from dnsperf -v output, for bench/dnsproxy_bench.sh.

  dnsproxy_bench_stats.py NAME FILE CPU_TICKS TICKS_PER_S   one table row; saves NAME.json
  dnsproxy_bench_stats.py --ratios DIR ROUNDS               medians, acns against dnsdist
  dnsproxy_bench_stats.py --half-qps DIR ROUNDS             half of acns's median queries/s
  dnsproxy_bench_stats.py --added DIR                       latency acns adds over the upstream
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
    return {"qps": qps, "p50": pct(0.50), "p99": pct(0.99), "lost": lost, "answers": len(latencies),
            "noerror": noerror / len(latencies) if latencies else 0.0}


def load(d, name):
    with open(os.path.join(d, name + ".json")) as f:
        return json.load(f)


def median(d, target, rounds, key):
    values = sorted(load(d, f"{target}.{r}")[key] for r in range(1, rounds + 1))
    return values[len(values) // 2]


if sys.argv[1] == "--ratios":
    d, rounds = sys.argv[2], int(sys.argv[3])
    m = {t: {k: median(d, t, rounds, k) for k in ("qps", "cpu_us", "p99")} for t in ("upstream", "dnsdist", "acns")}
    for t in m:
        print(f"median {t:<7} {m[t]['qps']:10.0f} queries/s, p99 {m[t]['p99']:.3f} ms"
              + (f", {m[t]['cpu_us']:.1f} us CPU/query" if m[t]["cpu_us"] else ""))
    a, dd = m["acns"], m["dnsdist"]
    print(f"acns / dnsdist: {a['qps'] / dd['qps']:.2f}x the queries/s, "
          f"{dd['cpu_us'] / a['cpu_us']:.2f}x less CPU per query")
elif sys.argv[1] == "--half-qps":
    print(int(median(sys.argv[2], "acns", int(sys.argv[3]), "qps") / 2))
elif sys.argv[1] == "--added":
    d = sys.argv[2]
    up, acns = load(d, "upstream_half"), load(d, "acns_half")
    print(f"added by acns at that rate: p50 {acns['p50'] - up['p50']:.3f} ms, p99 {acns['p99'] - up['p99']:.3f} ms")
else:
    name, path, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = parse(path)
    s["cpu_us"] = ticks / hz * 1e6 / s["answers"] if ticks and s["answers"] else 0.0
    with open(os.path.join(os.path.dirname(path), name + ".json"), "w") as f:
        json.dump(s, f)
    cpu = f"{s['cpu_us']:.1f}" if s["cpu_us"] else "-"
    print(f"{name:<14} {s['qps']:10.0f} {s['p50']:9.3f} {s['p99']:9.3f} {s['lost']:9d} {cpu:>12} {s['noerror']:8.0%}")
