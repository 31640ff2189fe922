/* Map keys, values and events shared by the BPF programs (bpf/) and the C++ map managers
 * (lib/datapath/): the single definition of each layout. ipcache and policy entries use
 * Cilium 1.18/1.19's layouts byte for byte (DESIGN.md section 4), so the same writer can program
 * a Cilium datapath's maps. C (BPF) and C++ both compile this header. */
#ifndef ACNS_BPF_INCLUDE_ACNS_MAPS_H_
#define ACNS_BPF_INCLUDE_ACNS_MAPS_H_

#include <linux/types.h>

#ifdef __cplusplus
#define ACNS_STATIC_ASSERT static_assert
#else
#define ACNS_STATIC_ASSERT _Static_assert
#endif

#define ACNS_IPCACHE_MAX_ENTRIES 512000
#define ACNS_POLICY_MAX_ENTRIES 16384
#define ACNS_CT_MAX_ENTRIES 262144
#define ACNS_EVENTS_RING_BYTES (1 << 20)
#define ACNS_PREFIXES_MAX_ENTRIES 16384

#define ACNS_FAMILY_IPV4 1
#define ACNS_FAMILY_IPV6 2

/* Identities Cilium reserves that the datapath uses: an address the ipcache does not know is
 * world, by family (Cilium's dual-stack reserved:world-ipv4 and reserved:world-ipv6). */
#define ACNS_IDENTITY_WORLD_IPV4 9
#define ACNS_IDENTITY_WORLD_IPV6 10

/* skb->mark of a packet assigned to the DNS proxy's transparent socket: a routing rule delivers
 * such packets locally (lib/datapath/proxy_routing.h). */
#define ACNS_MARK_TO_PROXY 0x00ac5000
#define ACNS_MARK_TO_PROXY_MASK 0x00fff000

/* ---- ipcache (cilium_ipcache_v2): LPM trie, BPF_F_NO_PREALLOC ---- */

/* prefixlen counts the 32 fixed bits (cluster_id, pad1, family) plus the address prefix. */
#define ACNS_IPCACHE_FIXED_PREFIX 32

struct acns_ipcache_key {
  __u32 prefixlen;
  __u16 cluster_id;
  __u8 pad1;
  __u8 family; /* ACNS_FAMILY_* */
  union {
    __u32 ip4; /* network order, in the first 4 bytes */
    __u8 ip6[16];
  };
} __attribute__((packed));

#define ACNS_IPCACHE_SKIP_TUNNEL (1 << 0)
#define ACNS_IPCACHE_HAS_TUNNEL_EP (1 << 1)
#define ACNS_IPCACHE_IPV6_TUNNEL_EP (1 << 2)
#define ACNS_IPCACHE_REMOTE_CLUSTER (1 << 3)

struct acns_ipcache_value {
  __u32 sec_identity;
  __u8 tunnel_endpoint[16];
  __u16 pad;
  __u8 key;   /* encryption key index */
  __u8 flags; /* ACNS_IPCACHE_* */
};

ACNS_STATIC_ASSERT(sizeof(struct acns_ipcache_key) == 24, "ipcache key is 24 bytes");
ACNS_STATIC_ASSERT(sizeof(struct acns_ipcache_value) == 24, "ipcache value is 24 bytes");

/* ---- policy prefixes: LPM trie, acns_ipcache_key -> __u32 CIDR identity ----
 * The toCIDR prefixes of the policies, looked up beside the ipcache: an address inside a policy
 * prefix carries that prefix's identity as well as its own (an FQDN identity, say), so toCIDR
 * rules hold for addresses that names resolved to. */

/* ---- policy (cilium_policy_v2_<endpoint>): LPM trie per endpoint ---- */

/* The full prefix: 32 identity bits and 8 direction bits are fixed, then 8 protocol bits and up
 * to 16 port bits; a wildcard protocol or port is a shorter prefix. */
#define ACNS_POLICY_FIXED_PREFIX 40
#define ACNS_POLICY_FULL_PREFIX 64

struct acns_policy_key {
  __u32 prefixlen;
  __u32 sec_label; /* remote identity; 0 = any */
  __u8 egress;     /* bit 0: 1 egress, 0 ingress */
  __u8 protocol;   /* IPPROTO_*; 0 with a shorter prefix = any */
  __be16 dport;
};

#define ACNS_POLICY_DENY (1 << 0)
#define ACNS_POLICY_PREFIX_SHIFT 3 /* bits 3..7 of flags: the entry's port prefix length */

struct acns_policy_value {
  __be16 proxy_port; /* non-zero: redirect to this proxy port */
  __u8 flags;        /* ACNS_POLICY_DENY | (prefix length << ACNS_POLICY_PREFIX_SHIFT) */
  __u8 auth_type;    /* 7 bits + has_explicit bit */
  __u32 precedence;
  __u32 cookie;
};

ACNS_STATIC_ASSERT(sizeof(struct acns_policy_key) == 12, "policy key is 12 bytes");
ACNS_STATIC_ASSERT(sizeof(struct acns_policy_value) == 12, "policy value is 12 bytes");

/* ---- verdict reasons and counters ---- */

enum acns_verdict {
  ACNS_PKT_PASS = 0,     /* no policy applies (endpoint without FQDN policy, non-IP) */
  ACNS_PKT_ALLOW = 1,    /* a policy entry allows it */
  ACNS_PKT_ESTABLISHED = 2, /* part of a connection allowed earlier */
  ACNS_PKT_DROP_POLICY = 3, /* no entry allows it, or a deny entry */
  ACNS_PKT_REDIRECT = 4,    /* to the DNS proxy */
  ACNS_PKT_MAX = 5,
};

/* Per-CPU array indexed by direction * ACNS_PKT_MAX + verdict. Ingress (traffic entering the
 * pod) is not enforced: its packets count as PASS (a new flow) or ESTABLISHED. */
#define ACNS_DIR_EGRESS 0
#define ACNS_DIR_INGRESS 1
struct acns_counter {
  __u64 packets;
  __u64 bytes;
};

/* ---- connection tracking: LRU hash of flows the policy allowed ---- */

struct acns_ct_key {
  __u8 saddr[16]; /* IPv4 in the first 4 bytes */
  __u8 daddr[16];
  __be16 sport;
  __be16 dport;
  __u8 protocol;
  __u8 family;
  __u16 pad;
};

struct acns_ct_value {
  __u64 last_seen_ns; /* bpf_ktime_get_ns(); the FQDN cache asks which IPs are still in use */
  __u32 identity;     /* of the remote end when the connection was allowed */
  __be16 proxy_port;  /* non-zero: the flow goes to the DNS proxy, every packet of it */
  __u16 pad;
};

ACNS_STATIC_ASSERT(sizeof(struct acns_ct_key) == 40, "ct key is 40 bytes");
ACNS_STATIC_ASSERT(sizeof(struct acns_ct_value) == 16, "ct value is 16 bytes");

/* ---- events: a ring buffer of verdicts on new flows and drops ---- */

/* One per new flow allowed or redirected, and one per dropped packet. When the ring is full the
 * event is counted in acns_events_lost (per-CPU) instead. */
struct acns_event {
  __u64 time_ns;  /* bpf_ktime_get_ns() */
  __u32 ifindex;  /* the interface the program runs on (the pod's host-side veth) */
  __u32 identity; /* of the destination */
  __u32 bytes;    /* the packet's length */
  __u8 verdict;   /* enum acns_verdict */
  __u8 family;    /* ACNS_FAMILY_* */
  __u8 protocol;
  __u8 tcp_flags; /* TCP: the header's flag byte (FIN 0x01 ... CWR 0x80) */
  __u8 saddr[16]; /* IPv4 in the first 4 bytes */
  __u8 daddr[16];
  __be16 sport;
  __be16 dport;
  __u8 icmp_type; /* ICMP and ICMPv6 */
  __u8 icmp_code;
  __u16 policy_cookie; /* the allowing entry's cookie, low 16 bits (0: none) */
};

ACNS_STATIC_ASSERT(sizeof(struct acns_event) == 64, "event is 64 bytes");

#endif /* ACNS_BPF_INCLUDE_ACNS_MAPS_H_ */
