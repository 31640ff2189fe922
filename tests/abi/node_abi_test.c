/* The node runtime through its C ABI, as a C host agent uses it: policies, an endpoint on a
 * veth, the explicit DNS proxy in front of a real unbound, the eBPF datapath on its own bpffs.
 * Allowed, denied and CNAME answers; learned IPs in the pinned ipcache before the answer; a full
 * ipcache holds the answer until the maximum delay, and the runtime recovers once it has room.
 * Run by node_abi_test.sh, which builds (and removes) the world: usage
 *   node_abi_test UPSTREAM_PORT VETH BPFFS_DIR STATE_DIR */
#include <acns/acns.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bpf/include/acns/maps.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    ++checks;                                                     \
    if (!(cond)) {                                                \
      ++failures;                                                 \
      fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);  \
      fprintf(stderr, __VA_ARGS__);                               \
      fprintf(stderr, "\n");                                      \
    }                                                             \
  } while (0)

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Sends one query for name/type to 127.0.0.1:port; returns the rcode (-1: no answer) and the
 * time it took in *took_ms. */
static int ask(uint16_t port, const char *name, uint16_t type, double *took_ms) {
  static uint16_t next_id = 1;
  unsigned char q[512];
  size_t n = 0;
  const char *label = name;
  q[n++] = (unsigned char)(next_id >> 8);
  q[n++] = (unsigned char)next_id++;
  q[n++] = 0x01; /* RD */
  q[n++] = 0;
  q[n++] = 0, q[n++] = 1, q[n++] = 0, q[n++] = 0, q[n++] = 0, q[n++] = 0, q[n++] = 0, q[n++] = 0;
  while (*label != '\0') {
    const char *dot = strchr(label, '.');
    const size_t len = dot != NULL ? (size_t)(dot - label) : strlen(label);
    q[n++] = (unsigned char)len;
    memcpy(q + n, label, len);
    n += len;
    label += len + (dot != NULL ? 1 : 0);
  }
  q[n++] = 0;
  q[n++] = (unsigned char)(type >> 8), q[n++] = (unsigned char)type, q[n++] = 0, q[n++] = 1;

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const double start = now_ms();
  sendto(fd, q, n, 0, (struct sockaddr *)&addr, sizeof(addr));
  unsigned char reply[1500];
  const ssize_t got = recv(fd, reply, sizeof(reply), 0);
  *took_ms = now_ms() - start;
  close(fd);
  return got >= 4 ? (reply[3] & 0x0f) : -1;
}

static struct acns_ipcache_key v4_key(const char *ip) {
  struct acns_ipcache_key key;
  memset(&key, 0, sizeof(key));
  key.prefixlen = 32 + 32;
  key.family = ACNS_FAMILY_IPV4;
  inet_pton(AF_INET, ip, &key.ip4);
  return key;
}

/* Whether the pinned ipcache has ip/32 with an FQDN identity. */
static int in_ipcache(int fd, const char *ip) {
  struct acns_ipcache_key key = v4_key(ip);
  struct acns_ipcache_value value;
  return bpf_map_lookup_elem(fd, &key, &value) == 0 && value.sec_identity >= (1u << 24);
}

/* Filler entries 2001:db8:ffff::/48 + i, as /128 (map content only: no packet goes anywhere). */
static struct acns_ipcache_key filler(uint32_t i) {
  struct acns_ipcache_key key;
  memset(&key, 0, sizeof(key));
  key.prefixlen = 32 + 128;
  key.family = ACNS_FAMILY_IPV6;
  key.ip6[0] = 0x20, key.ip6[1] = 0x01, key.ip6[2] = 0x0d, key.ip6[3] = 0xb8, key.ip6[4] = 0xff, key.ip6[5] = 0xff;
  key.ip6[12] = (uint8_t)(i >> 24), key.ip6[13] = (uint8_t)(i >> 16), key.ip6[14] = (uint8_t)(i >> 8);
  key.ip6[15] = (uint8_t)i;
  return key;
}

static void on_log(void *user_data, int32_t level, const char *message) {
  (void)user_data;
  fprintf(stderr, "log[%d]: %s\n", (int)level, message);
}

static void get_stats(acns_node *node, acns_node_stats *n, acns_dns_proxy_stats *p) {
  memset(n, 0, sizeof(*n));
  memset(p, 0, sizeof(*p));
  n->struct_size = sizeof(*n);
  p->struct_size = sizeof(*p);
  acns_node_stats_get(node, n, p, NULL, NULL, NULL);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s UPSTREAM_PORT VETH BPFFS_DIR STATE_DIR\n", argv[0]);
    return 2;
  }
  const char *upstream_port = argv[1], *veth = argv[2], *bpffs = argv[3], *state = argv[4];
  char upstream[64], policy[2048], ipcache_path[512];
  snprintf(upstream, sizeof(upstream), "127.0.0.1:%s", upstream_port);
  snprintf(ipcache_path, sizeof(ipcache_path), "%s/acns_ipcache_v2", bpffs);
  snprintf(policy, sizeof(policy),
           "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: default}\n"
           "spec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress:\n"
           "  - toCIDR: [127.0.0.0/8]\n    toPorts:\n    - ports: [{port: \"%s\", protocol: ANY}]\n"
           "      rules:\n        dns: [{matchPattern: \"*.allowed.test\"}]\n"
           "  - toFQDNs: [{matchPattern: \"*.allowed.test\"}]\n",
           upstream_port);

  acns_error err;
  memset(&err, 0, sizeof(err));
  err.struct_size = sizeof(err);
  acns_node_opts opts;
  memset(&opts, 0, sizeof(opts));
  opts.struct_size = sizeof(opts);
  const char *listen[] = {"127.0.0.1:0"};
  opts.dns_listen = listen;
  opts.n_dns_listen = 1;
  opts.dns_upstream = upstream;
  opts.dns_workers = 2;
  opts.response_max_delay_ms = 400;
  opts.state_dir = state;
  opts.bpffs_dir = bpffs;
  opts.log_fn = on_log;
  acns_node *node = NULL;
  if (acns_node_create(&opts, &node, &err) != ACNS_OK) {
    fprintf(stderr, "create: %s\n", err.message);
    return 1;
  }
  CHECK(acns_node_policy_apply(node, "web.yaml", policy, strlen(policy), NULL, NULL, &err) == ACNS_OK, "%s",
        err.message);
  const char *labels[] = {"app=web"};
  acns_ip ip;
  memset(&ip, 0, sizeof(ip));
  ip.family = 4;
  inet_pton(AF_INET, "127.0.0.1", ip.addr);
  acns_endpoint ep;
  memset(&ep, 0, sizeof(ep));
  ep.struct_size = sizeof(ep);
  ep.id = 7;
  ep.namespace_name = "default";
  ep.labels = labels;
  ep.n_labels = 1;
  ep.ips = &ip;
  ep.n_ips = 1;
  ep.interface_name = veth;
  CHECK(acns_node_endpoint_upsert(node, &ep, &err) == ACNS_OK, "%s", err.message);
  if (acns_node_start(node, &err) != ACNS_OK) {
    fprintf(stderr, "start: %s\n", err.message);
    acns_node_destroy(node);
    return 1;
  }
  CHECK(acns_node_wait_synced(node, 10000, &err) == ACNS_OK, "%s", err.message);

  acns_node_stats n;
  acns_dns_proxy_stats p;
  get_stats(node, &n, &p);
  CHECK(n.datapath_started == 1, "the datapath did not start");
  CHECK(n.transparent_dns_port != 0, "no transparent port");
  char addr[64];
  size_t needed = 0;
  CHECK(acns_node_dns_listen_address(node, 0, addr, sizeof(addr), &needed, &err) == ACNS_OK, "%s", err.message);
  const uint16_t port = (uint16_t)atoi(strrchr(addr, ':') + 1);
  const int ipcache = bpf_obj_get(ipcache_path);
  CHECK(ipcache >= 0, "%s: %s", ipcache_path, strerror(errno));

  double took = 0;
  CHECK(ask(port, "www.allowed.test", 1, &took) == 0, "www.allowed.test not NOERROR");
  CHECK(took < 300, "www.allowed.test took %.0f ms", took);
  CHECK(in_ipcache(ipcache, "198.51.100.10"), "198.51.100.10 not in the ipcache after the answer");
  /* Through a CNAME: the address (of edge.allowed.test) is attributed to the name asked. */
  CHECK(ask(port, "api.allowed.test", 1, &took) == 0, "api.allowed.test not NOERROR");
  CHECK(in_ipcache(ipcache, "198.51.100.11"), "198.51.100.11 not in the ipcache after the answer");
  char *list = NULL;
  size_t list_len = 0;
  CHECK(acns_node_fqdn_cache_list(node, ACNS_FQDN_LIST_JSON, &list, &list_len, &err) == ACNS_OK, "%s", err.message);
  CHECK(list != NULL && strstr(list, "\"fqdn\": \"api.allowed.test.\", \"ips\": [\"198.51.100.11\"]") != NULL,
        "listing: %s", list != NULL ? list : "(null)");
  CHECK(list != NULL && strlen(list) == list_len, "listing length");
  acns_free(list);
  CHECK(ask(port, "www.example.com", 1, &took) == ACNS_DNS_RCODE_REFUSED, "www.example.com not REFUSED");

  /* The ipcache is full: the next answer's IPs cannot be written. */
  uint32_t filled = 0;
  for (;; ++filled) {
    struct acns_ipcache_key key = filler(filled);
    struct acns_ipcache_value value;
    memset(&value, 0, sizeof(value));
    value.sec_identity = 2;
    if (bpf_map_update_elem(ipcache, &key, &value, BPF_ANY) != 0) break;
  }
  CHECK(filled > 0 && filled <= ACNS_IPCACHE_MAX_ENTRIES, "filled %u", filled);
  CHECK(ask(port, "evil.allowed.test", 1, &took) == 0, "evil.allowed.test not NOERROR");
  CHECK(took >= 350, "the answer was not held: %.0f ms", took);
  get_stats(node, &n, &p);
  CHECK(p.held_released_late == 1, "held_released_late %llu", (unsigned long long)p.held_released_late);
  CHECK(n.apply_failures >= 1, "apply_failures %llu", (unsigned long long)n.apply_failures);
  CHECK(!in_ipcache(ipcache, "203.0.113.66"), "203.0.113.66 in a full ipcache");

  /* Room again: the runtime replays the cache into the map, and answers go out at once. */
  for (uint32_t i = 0; i < filled; ++i) {
    struct acns_ipcache_key key = filler(i);
    bpf_map_delete_elem(ipcache, &key);
  }
  /* Recovered: the address is in the map and every delta of the cache is acknowledged. */
  int recovered = 0;
  for (int i = 0; i < 300 && !recovered; ++i) {
    acns_fqdn_cache_stats c;
    memset(&c, 0, sizeof(c));
    c.struct_size = sizeof(c);
    get_stats(node, &n, &p);
    acns_node_stats_get(node, NULL, NULL, &c, NULL, NULL);
    recovered = in_ipcache(ipcache, "203.0.113.66") && n.acked_seq >= c.last_seq;
    if (!recovered) usleep(50000);
  }
  CHECK(recovered, "203.0.113.66 never reached the ipcache");
  CHECK(in_ipcache(ipcache, "198.51.100.10"), "198.51.100.10 lost in the replay");
  CHECK(ask(port, "www.allowed.test", 28, &took) == 0, "www.allowed.test AAAA not NOERROR");
  CHECK(took < 300, "after recovery an answer took %.0f ms", took);
  get_stats(node, &n, &p);
  CHECK(p.held_released_late == 1, "held_released_late %llu after recovery", (unsigned long long)p.held_released_late);

  close(ipcache);
  acns_node_destroy(node);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
