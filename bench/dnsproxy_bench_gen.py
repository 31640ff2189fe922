#!/usr/bin/env python3
"""Writes the files of bench/dnsproxy_bench.sh for N patterns into DIR: the upstream's zone, the
acns policy and endpoints, two dnsdist configurations with the same rules, and the dnsperf query
file (90% allowed names, 10% denied, fixed seed).

dnsdist.conf has one RegexRule per wildcard pattern (dnsdist's slowest way to say it);
dnsdist_best.conf is what its expert users would write: a DNSNameSet for the names and, for the
patterns (one label under each base name), a SuffixMatchNode of the bases AND'd with the
question's label count.

Usage: dnsproxy_bench_gen.py DIR N UPSTREAM_PORT DNSDIST_PORT DNSDIST_BEST_PORT
"""
import random
import sys

out, n, upstream_port, dnsdist_port, best_port = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
plain = [f"api{i}.allowed.test" for i in range(0, n, 2)]       # matchName
wild = [f"svc{i}.allowed.test" for i in range(1, n, 2)]        # matchPattern *.svcN...

with open(f"{out}/allowed.test.zone", "w") as z:
    z.write("allowed.test. 3600 IN SOA ns.allowed.test. admin.allowed.test. 1 3600 600 86400 60\n")
    z.write("allowed.test. 3600 IN NS ns.allowed.test.\n")
    for i, name in enumerate(plain):
        z.write(f"{name}. 300 IN A 198.51.100.{i % 250 + 1}\n")
    for i, name in enumerate(wild):
        z.write(f"*.{name}. 300 IN A 203.0.113.{i % 250 + 1}\n")
    z.write("*.denied.allowed.test. 300 IN A 198.51.100.254\n")

items = [f'{{matchName: "{p}"}}' for p in plain] + [f'{{matchPattern: "*.{w}"}}' for w in wild]
with open(f"{out}/policy.yaml", "w") as p:
    p.write(f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: bench, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: bench}}}}
  egress:
  - toCIDR: [127.0.0.0/8]
    toPorts:
    - ports: [{{port: "{upstream_port}", protocol: ANY}}]
      rules:
        dns: [{", ".join(items)}]
  - toFQDNs: [{", ".join(items)}]
""")
with open(f"{out}/endpoints.yaml", "w") as e:
    e.write("- {id: 1, namespace: default, labels: {app: bench}, ipv4: 127.0.0.1}\n")

def dnsdist_head(d, port):
    d.write(f'setLocal("127.0.0.1:{port}", {{reusePort=true}})\n')
    d.write(f'addLocal("127.0.0.1:{port}", {{reusePort=true}})\n')
    d.write('setACL({"127.0.0.0/8"})\n')
    d.write(f'newServer({{address="127.0.0.1:{upstream_port}", name="upstream"}})\n')
    d.write("local names = newDNSNameSet()\n")
    for name in plain:
        d.write(f'names:add(newDNSName("{name}."))\n')
    d.write("addAction(QNameSetRule(names), AllowAction())\n")


with open(f"{out}/dnsdist.conf", "w") as d:
    dnsdist_head(d, dnsdist_port)
    for w in wild:
        regex = "^[-a-zA-Z0-9_]*\\\\." + w.replace(".", "\\\\.") + "\\\\.?$"
        d.write(f'addAction(RegexRule("{regex}"), AllowAction())\n')
    d.write("addAction(AllRule(), RCodeAction(DNSRCode.REFUSED))\n")

with open(f"{out}/dnsdist_best.conf", "w") as d:
    dnsdist_head(d, best_port)
    d.write("local bases = newSuffixMatchNode()\n")
    for w in wild:
        d.write(f'bases:add(newDNSName("{w}."))\n')
    # The pattern's one label, the base's, and the root, which dnsdist's count includes.
    labels = {w.count(".") + 3 for w in wild}
    assert len(labels) == 1, "the bases differ in depth: one label-count rule per depth"
    depth = labels.pop()
    d.write(f"addAction(AndRule({{SuffixMatchNodeRule(bases, true), QNameLabelsCountRule({depth}, {depth})}}), AllowAction())\n")
    d.write("addAction(AllRule(), RCodeAction(DNSRCode.REFUSED))\n")

rng = random.Random(7)
with open(f"{out}/queries.txt", "w") as q:
    for k in range(100000):
        if k % 10 == 9:
            q.write(f"h{rng.randrange(10**6)}.denied.allowed.test A\n")
        elif k % 2 == 0:
            q.write(f"{rng.choice(plain)} A\n")
        else:
            q.write(f"h{rng.randrange(10**6)}.{rng.choice(wild)} A\n")
