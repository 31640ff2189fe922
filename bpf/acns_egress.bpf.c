/* Policy enforcement on a pod's host-side veth.
 *
 * acns_egress runs at the TC ingress hook of the host side (traffic leaving the pod): parse IPv4
 * or IPv6 with TCP, UDP or ICMP; a packet of a connection allowed earlier passes (so a connection
 * outlives the name that allowed it); otherwise the destination's identity comes from the
 * ipcache (LPM; no entry: reserved:world) and the endpoint's policy map decides, looked up with
 * that identity, with the identity of the longest policy prefix holding the destination
 * (acns_prefixes: toCIDR rules) and with the any-identity wildcard (longest prefix each).
 * Allowed new flows are recorded in the connection table.
 *
 * acns_ingress runs at the TC egress hook of the host side (traffic entering the pod) and records
 * each flow it lets in, so that the pod's replies pass acns_egress.
 *
 * A policy entry with a proxy port (a port rule with `rules.dns`, transparent mode) sends the
 * flow to the DNS proxy instead: the packet is assigned to the proxy's socket with bpf_sk_assign
 * (its established TCP socket, else its listener on the loopback address at the proxy port) and
 * marked so that the node delivers it locally (lib/datapath/proxy_routing.h); its destination is
 * left alone, so the proxy reads the original server from it and answers as that server. The
 * connection table remembers the redirect, so that every later packet of the flow goes the same
 * way (also when the proxy's replies have made acns_ingress see the flow).
 *
 * Verdicts on new flows and drops go to the ring buffer acns_events (shared by all endpoints);
 * when it is full, acns_events_lost counts what could not be reserved. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "acns/maps.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, ACNS_IPCACHE_MAX_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct acns_ipcache_key);
  __type(value, struct acns_ipcache_value);
} acns_ipcache SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, ACNS_PREFIXES_MAX_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct acns_ipcache_key);
  __type(value, __u32);
} acns_prefixes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, ACNS_POLICY_MAX_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct acns_policy_key);
  __type(value, struct acns_policy_value);
} acns_policy SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, ACNS_CT_MAX_ENTRIES);
  __type(key, struct acns_ct_key);
  __type(value, struct acns_ct_value);
} acns_ct SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2 * ACNS_PKT_MAX);
  __type(key, __u32);
  __type(value, struct acns_counter);
} acns_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, ACNS_EVENTS_RING_BYTES);
} acns_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} acns_events_lost SEC(".maps");

/* [0]: 1 if the endpoint has policy to enforce; 0 lets everything pass. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} acns_config SEC(".maps");

struct flow {
  struct acns_ct_key key; /* as seen leaving the pod: saddr = pod */
  __u8 ok;                /* 0: not IP, or headers cut short */
  __u8 icmp_type;
  __u8 icmp_code;
  __u8 tcp_flags;
};

/* ICMPv6 router/neighbour solicitations and advertisements and redirects (RFC 4861): IPv6
 * itself stops working without them, so no policy applies to them (as in Cilium). */
static __always_inline int is_neighbour_discovery(const struct flow *f) {
  return f->key.protocol == IPPROTO_ICMPV6 && f->icmp_type >= 133 && f->icmp_type <= 137;
}

static __always_inline int count_dir(struct __sk_buff *skb, __u32 direction, __u32 verdict, int action) {
  const __u32 index = direction * ACNS_PKT_MAX + verdict;
  struct acns_counter *c = bpf_map_lookup_elem(&acns_counters, &index);
  if (c) {
    c->packets += 1;
    c->bytes += skb->len;
  }
  return action;
}

static __always_inline int count(struct __sk_buff *skb, __u32 verdict, int action) {
  return count_dir(skb, ACNS_DIR_EGRESS, verdict, action);
}

/* Reads the 5-tuple; `reverse` swaps it so that a packet entering the pod gives the key of the
 * pod's replies. */
static __always_inline void parse(struct __sk_buff *skb, struct flow *f, int reverse) {
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  void *l4;
  __u8 *src, *dst;
  f->ok = 0;
  if ((void *)(eth + 1) > end) return;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl < 5) return;
    f->key.family = ACNS_FAMILY_IPV4;
    f->key.protocol = ip->protocol;
    src = reverse ? f->key.daddr : f->key.saddr;
    dst = reverse ? f->key.saddr : f->key.daddr;
    __builtin_memcpy(src, &ip->saddr, 4);
    __builtin_memcpy(dst, &ip->daddr, 4);
    l4 = (void *)ip + ip->ihl * 4;
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > end) return;
    f->key.family = ACNS_FAMILY_IPV6;
    f->key.protocol = ip6->nexthdr; /* extension headers: matched as that protocol, no ports */
    src = reverse ? f->key.daddr : f->key.saddr;
    dst = reverse ? f->key.saddr : f->key.daddr;
    __builtin_memcpy(src, &ip6->saddr, 16);
    __builtin_memcpy(dst, &ip6->daddr, 16);
    l4 = (void *)(ip6 + 1);
  } else {
    return;
  }
  if (f->key.protocol == IPPROTO_TCP || f->key.protocol == IPPROTO_UDP) {
    /* TCP and UDP both start with the two ports. */
    struct udphdr *ports = l4;
    if ((void *)(ports + 1) > end) return;
    f->key.sport = reverse ? ports->dest : ports->source;
    f->key.dport = reverse ? ports->source : ports->dest;
    f->tcp_flags = 0;
    if (f->key.protocol == IPPROTO_TCP) {
      __u8 *flags = (__u8 *)l4 + 13; /* after ports, sequence, acknowledgement, offset */
      if ((void *)(flags + 1) <= end) f->tcp_flags = *flags;
    }
  } else if (f->key.protocol == IPPROTO_ICMP || f->key.protocol == IPPROTO_ICMPV6) {
    /* Echo requests and replies share an identifier: each ping is its own flow (in the
     * connection table only; policy sees ICMP without ports). */
    struct {
      __u8 type, code;
      __u16 checksum;
      __be16 id;
    } *icmp = l4;
    if ((void *)(icmp + 1) > end) return;
    f->key.sport = icmp->id;
    f->icmp_type = icmp->type;
    f->icmp_code = icmp->code;
  }
  f->ok = 1;
}

static __always_inline void host_key(struct acns_ipcache_key *key, const struct acns_ct_key *k) {
  key->family = k->family;
  if (k->family == ACNS_FAMILY_IPV4) {
    key->prefixlen = ACNS_IPCACHE_FIXED_PREFIX + 32;
    __builtin_memcpy(&key->ip4, k->daddr, 4);
  } else {
    key->prefixlen = ACNS_IPCACHE_FIXED_PREFIX + 128;
    __builtin_memcpy(key->ip6, k->daddr, 16);
  }
}

/* The identity of the longest policy prefix holding the destination; 0 if none. */
static __always_inline __u32 prefix_identity_of(const struct acns_ct_key *k) {
  struct acns_ipcache_key key = {};
  host_key(&key, k);
  __u32 *v = bpf_map_lookup_elem(&acns_prefixes, &key);
  return v ? *v : 0;
}

static __always_inline __u32 identity_of(const struct acns_ct_key *k) {
  struct acns_ipcache_key key = {};
  host_key(&key, k);
  struct acns_ipcache_value *v = bpf_map_lookup_elem(&acns_ipcache, &key);
  if (v) return v->sec_identity;
  return k->family == ACNS_FAMILY_IPV4 ? ACNS_IDENTITY_WORLD_IPV4 : ACNS_IDENTITY_WORLD_IPV6;
}

static __always_inline struct acns_policy_value *policy_of(__u32 identity, const struct flow *f) {
  const struct acns_ct_key *k = &f->key;
  const int icmp = k->protocol == IPPROTO_ICMP || k->protocol == IPPROTO_ICMPV6;
  struct acns_policy_key key = {
      .prefixlen = ACNS_POLICY_FULL_PREFIX,
      .sec_label = identity,
      .egress = 1,
      .protocol = k->protocol,
      .dport = icmp ? bpf_htons(f->icmp_type) : k->dport, /* ICMP: the type, as Cilium keys it */
  };
  return bpf_map_lookup_elem(&acns_policy, &key);
}

static __always_inline void emit(struct __sk_buff *skb, const struct flow *f, __u32 identity, __u8 verdict,
                                 __u32 cookie) {
  struct acns_event *e = bpf_ringbuf_reserve(&acns_events, sizeof(*e), 0);
  if (!e) {
    __u32 zero = 0;
    __u64 *lost = bpf_map_lookup_elem(&acns_events_lost, &zero);
    if (lost) *lost += 1;
    return;
  }
  e->time_ns = bpf_ktime_get_ns();
  e->ifindex = skb->ifindex;
  e->identity = identity;
  e->bytes = skb->len;
  e->verdict = verdict;
  e->family = f->key.family;
  e->protocol = f->key.protocol;
  e->tcp_flags = f->key.protocol == IPPROTO_TCP ? f->tcp_flags : 0;
  __builtin_memcpy(e->saddr, f->key.saddr, 16);
  __builtin_memcpy(e->daddr, f->key.daddr, 16);
  e->sport = f->key.sport;
  e->dport = f->key.dport;
  e->icmp_type = 0;
  e->icmp_code = 0;
  if (f->key.protocol == IPPROTO_ICMP || f->key.protocol == IPPROTO_ICMPV6) {
    e->icmp_type = f->icmp_type;
    e->icmp_code = f->icmp_code;
  }
  e->policy_cookie = (__u16)cookie;
  bpf_ringbuf_submit(e, 0);
}

/* Assigns the packet to the DNS proxy's socket; false if the proxy has no socket for it. */
static __always_inline int to_proxy(struct __sk_buff *skb, const struct flow *f, __be16 proxy_port) {
  struct bpf_sock_tuple tuple = {};
  struct bpf_sock *sk = 0;
  __u32 size;
  const int v4 = f->key.family == ACNS_FAMILY_IPV4;
  if (v4) {
    size = sizeof(tuple.ipv4);
    __builtin_memcpy(&tuple.ipv4.saddr, f->key.saddr, 4);
    __builtin_memcpy(&tuple.ipv4.daddr, f->key.daddr, 4);
    tuple.ipv4.sport = f->key.sport;
    tuple.ipv4.dport = f->key.dport;
  } else {
    size = sizeof(tuple.ipv6);
    __builtin_memcpy(tuple.ipv6.saddr, f->key.saddr, 16);
    __builtin_memcpy(tuple.ipv6.daddr, f->key.daddr, 16);
    tuple.ipv6.sport = f->key.sport;
    tuple.ipv6.dport = f->key.dport;
  }
  if (f->key.protocol == IPPROTO_TCP) {
    /* A connection the proxy accepted has the original addresses as its own. */
    sk = bpf_skc_lookup_tcp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0);
    if (sk && sk->state == BPF_TCP_LISTEN) {
      bpf_sk_release(sk); /* someone's listener on the server's port: not ours */
      sk = 0;
    }
  }
  if (!sk) {
    if (v4) {
      tuple.ipv4.daddr = bpf_htonl(0x7f000001); /* 127.0.0.1 */
      tuple.ipv4.dport = proxy_port;
    } else {
      __builtin_memset(tuple.ipv6.daddr, 0, 16);
      tuple.ipv6.daddr[3] = bpf_htonl(1); /* ::1 */
      tuple.ipv6.dport = proxy_port;
    }
    sk = f->key.protocol == IPPROTO_TCP ? bpf_skc_lookup_tcp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0)
                                        : bpf_sk_lookup_udp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0);
  }
  if (!sk) return 0;
  const long err = bpf_sk_assign(skb, sk, 0);
  bpf_sk_release(sk);
  if (err) return 0;
  skb->mark = (skb->mark & ~ACNS_MARK_TO_PROXY_MASK) | ACNS_MARK_TO_PROXY;
  return 1;
}

static __always_inline int redirect(struct __sk_buff *skb, const struct flow *f, __be16 proxy_port) {
  if (f->key.protocol != IPPROTO_TCP && f->key.protocol != IPPROTO_UDP) {
    return count(skb, ACNS_PKT_DROP_POLICY, TC_ACT_SHOT);
  }
  /* No proxy socket (the agent is down): the query is dropped and the client retries. */
  if (!to_proxy(skb, f, proxy_port)) return count(skb, ACNS_PKT_DROP_POLICY, TC_ACT_SHOT);
  return count(skb, ACNS_PKT_REDIRECT, TC_ACT_OK);
}

enum { kMatchAllow = 1, kMatchDeny = 2 };
static __always_inline int match_of(const struct acns_policy_value *v) {
  if (!v) return 0;
  return (v->flags & ACNS_POLICY_DENY) ? kMatchDeny : kMatchAllow;
}

SEC("tc")
int acns_egress(struct __sk_buff *skb) {
  struct flow f = {};
  __u32 zero = 0;
  parse(skb, &f, 0);
  if (!f.ok || is_neighbour_discovery(&f)) return count(skb, ACNS_PKT_PASS, TC_ACT_OK);
  __u32 *enforce = bpf_map_lookup_elem(&acns_config, &zero);
  if (!enforce || !*enforce) return count(skb, ACNS_PKT_PASS, TC_ACT_OK);

  struct acns_ct_value *ct = bpf_map_lookup_elem(&acns_ct, &f.key);
  if (ct) {
    ct->last_seen_ns = bpf_ktime_get_ns();
    if (ct->proxy_port) return redirect(skb, &f, ct->proxy_port);
    return count(skb, ACNS_PKT_ESTABLISHED, TC_ACT_OK);
  }

  const __u32 identity = identity_of(&f.key);
  struct acns_policy_value *exact = policy_of(identity, &f);
  struct acns_policy_value *any = policy_of(0, &f);
  const __u32 prefix_identity = prefix_identity_of(&f.key);
  struct acns_policy_value *by_prefix = prefix_identity ? policy_of(prefix_identity, &f) : 0;
  /* A deny entry wins over any allow; otherwise any matching entry allows. (Integers, not the
   * pointers themselves, are combined: the verifier refuses arithmetic on map value pointers.) */
  const int found = match_of(exact) | match_of(any) | match_of(by_prefix);
  if ((found & kMatchDeny) || found == 0) {
    emit(skb, &f, identity, ACNS_PKT_DROP_POLICY, 0);
    return count(skb, ACNS_PKT_DROP_POLICY, TC_ACT_SHOT);
  }
  /* The most specific peer that matched decides the redirect: an entry for this very peer
   * without a proxy (the explicit DNS proxy's own address) is not redirected by a rule for
   * any peer. */
  __be16 proxy_port = 0;
  __u32 cookie = 0;
  if (exact) proxy_port = exact->proxy_port, cookie = exact->cookie;
  else if (by_prefix) proxy_port = by_prefix->proxy_port, cookie = by_prefix->cookie;
  else if (any) proxy_port = any->proxy_port, cookie = any->cookie;
  struct acns_ct_value value = {.last_seen_ns = bpf_ktime_get_ns(), .identity = identity, .proxy_port = proxy_port};
  bpf_map_update_elem(&acns_ct, &f.key, &value, BPF_ANY);
  emit(skb, &f, identity, proxy_port ? ACNS_PKT_REDIRECT : ACNS_PKT_ALLOW, cookie);
  if (proxy_port) return redirect(skb, &f, proxy_port);
  return count(skb, ACNS_PKT_ALLOW, TC_ACT_OK);
}

SEC("tc")
int acns_ingress(struct __sk_buff *skb) {
  struct flow f = {};
  parse(skb, &f, 1);
  if (!f.ok) return count_dir(skb, ACNS_DIR_INGRESS, ACNS_PKT_PASS, TC_ACT_OK);
  struct acns_ct_value *ct = bpf_map_lookup_elem(&acns_ct, &f.key);
  if (ct) {
    ct->last_seen_ns = bpf_ktime_get_ns();
    return count_dir(skb, ACNS_DIR_INGRESS, ACNS_PKT_ESTABLISHED, TC_ACT_OK);
  }
  struct acns_ct_value value = {.last_seen_ns = bpf_ktime_get_ns()};
  bpf_map_update_elem(&acns_ct, &f.key, &value, BPF_ANY);
  return count_dir(skb, ACNS_DIR_INGRESS, ACNS_PKT_PASS, TC_ACT_OK);
}
