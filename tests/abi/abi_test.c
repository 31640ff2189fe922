/* Exercises every function of acns.h from plain C99, including every error path.
 * Built with -std=c99 -pedantic -Werror and linked only against libacns.so. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, rmdir */
#include <acns/acns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/time.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                  \
  do {                                                               \
    ++checks;                                                        \
    if (!(cond)) {                                                   \
      ++failures;                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                \
  } while (0)

static acns_error new_error(void) {
  acns_error e;
  memset(&e, 0, sizeof(e));
  e.struct_size = sizeof(e);
  return e;
}

static const char kPolicy[] =
    "apiVersion: cilium.io/v2\n"
    "kind: CiliumNetworkPolicy\n"
    "metadata: {name: abi, namespace: ns}\n"
    "spec:\n"
    "  endpointSelector: {matchLabels: {app: web}}\n"
    "  egress:\n"
    "    - toEndpoints: [{matchLabels: {k8s-app: dns}}]\n"
    "      toPorts: [{ports: [{port: \"53\", protocol: ANY}],\n"
    "                 rules: {dns: [{matchPattern: \"*.allowed.test\"}]}}]\n"
    "    - toFQDNs: [{matchPattern: \"*.allowed.test\"}, {matchName: exact.test}]\n";

static const char kBadPolicy[] =
    "apiVersion: cilium.io/v2\n"
    "kind: CiliumNetworkPolicy\n"
    "metadata: {name: bad}\n"
    "spec:\n"
    "  endpointSelector: {}\n"
    "  egress: [{toPorts: [{ports: [{port: \"53\"}], rules: {dns: [{matchName: a, matchPattern: b}]}}]}]\n";

/* Collects what acns_observe / acns_flow_graph hand over. */
typedef struct {
  char text[4096];
  size_t len;
  int calls;
} collected_text;
static int collect_text(void *user_data, const char *text, size_t len) {
  collected_text *c = user_data;
  if (c->len + len < sizeof(c->text)) memcpy(c->text + c->len, text, len);
  c->len += len;
  c->calls++;
  return 0;
}

static int diag_count;
static void count_diag(void *user_data, const acns_diagnostic *d) {
  (void)user_data;
  if (!d->is_warning) ++diag_count;
  CHECK(strstr(d->text, "spec.egress[0].toPorts[0].rules.dns[0]") != NULL);
}

static size_t matched[8];
static size_t n_matched;
static int record_match(void *user_data, size_t index) {
  (void)user_data;
  if (n_matched < 8) matched[n_matched++] = index;
  return 1;
}
static int stop_match(void *user_data, size_t index) {
  (void)user_data;
  (void)index;
  return 0;
}

static char selectors[256];
static void record_selector(void *user_data, const char *s, size_t len) {
  (void)user_data;
  strncat(selectors, s, len);
  strcat(selectors, ";");
}

static void test_status_and_version(void) {
  char expect[32];
  CHECK(strcmp(acns_status_name(ACNS_OK), "ACNS_OK") == 0);
  CHECK(strcmp(acns_status_name(ACNS_POLICY_INVALID), "ACNS_POLICY_INVALID") == 0);
  CHECK(strcmp(acns_status_name(ACNS_IO_ERROR), "ACNS_IO_ERROR") == 0);
  CHECK(strcmp(acns_status_name(12345), "ACNS_UNKNOWN_STATUS") == 0);
  sprintf(expect, "%d.%d.%d", ACNS_VERSION_MAJOR, ACNS_VERSION_MINOR, ACNS_VERSION_PATCH);
  CHECK(strcmp(acns_version_string(), expect) == 0);
}

static void test_matcher(void) {
  acns_error err = new_error();
  acns_fqdn_matcher *m = NULL;
  acns_fqdn_pattern patterns[3];
  acns_fqdn_matcher_opts opts;
  size_t n = 99;
  memset(patterns, 0, sizeof(patterns));
  memset(&opts, 0, sizeof(opts));
  patterns[0].kind = ACNS_PATTERN_MATCH_PATTERN;
  patterns[0].text = "*.cilium.io";
  patterns[1].kind = ACNS_PATTERN_MATCH_NAME;
  patterns[1].text = "www.cilium.io";
  patterns[2].kind = ACNS_PATTERN_MATCH_PATTERN;
  patterns[2].text = "**.io";
  opts.struct_size = sizeof(opts);
  opts.patterns = patterns;
  opts.n_patterns = 3;

  CHECK(acns_fqdn_matcher_create(&opts, &m, &err) == ACNS_OK && m != NULL);
  CHECK(acns_fqdn_matcher_match(m, "WWW.cilium.io", 13, record_match, NULL, &n, &err) == ACNS_OK);
  CHECK(n == 3 && n_matched == 3 && matched[0] == 0 && matched[1] == 1 && matched[2] == 2);
  CHECK(acns_fqdn_matcher_match(m, "www.cilium.iox", 13, NULL, NULL, &n, &err) == ACNS_OK && n == 3);
  CHECK(acns_fqdn_matcher_match(m, "cilium.io", 9, NULL, NULL, &n, NULL) == ACNS_OK && n == 1);
  CHECK(acns_fqdn_matcher_match(m, "x.cilium.io", 11, stop_match, NULL, &n, NULL) == ACNS_OK && n == 1);
  /* Error paths. */
  CHECK(acns_fqdn_matcher_match(NULL, "a", 1, NULL, NULL, &n, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(err.code == ACNS_INVALID_ARGUMENT && strstr(err.message, "matcher") != NULL);
  CHECK(acns_fqdn_matcher_match(m, NULL, 1, NULL, NULL, &n, &err) == ACNS_INVALID_ARGUMENT);
  acns_fqdn_matcher_destroy(m);
  acns_fqdn_matcher_destroy(NULL);

  CHECK(acns_fqdn_matcher_create(&opts, NULL, &err) == ACNS_INVALID_ARGUMENT);
  patterns[1].text = "bad name";
  CHECK(acns_fqdn_matcher_create(&opts, &m, &err) == ACNS_INVALID_ARGUMENT && m == NULL);
  CHECK(strstr(err.message, "pattern 1") != NULL);
  patterns[1].text = NULL;
  CHECK(acns_fqdn_matcher_create(&opts, &m, &err) == ACNS_INVALID_ARGUMENT);
  patterns[1].text = "ok.example";
  patterns[1].kind = 77;
  CHECK(acns_fqdn_matcher_create(&opts, &m, &err) == ACNS_INVALID_ARGUMENT);
  patterns[1].kind = ACNS_PATTERN_MATCH_NAME;
  opts.patterns = NULL;
  CHECK(acns_fqdn_matcher_create(&opts, &m, &err) == ACNS_INVALID_ARGUMENT);
  /* NULL opts: an empty matcher. */
  CHECK(acns_fqdn_matcher_create(NULL, &m, &err) == ACNS_OK);
  CHECK(acns_fqdn_matcher_match(m, "a", 1, NULL, NULL, &n, &err) == ACNS_OK && n == 0);
  acns_fqdn_matcher_destroy(m);
}

/* Versioned structs: bad struct_size, larger with a zero tail, larger with a non-zero tail. */
static void test_struct_size(void) {
  acns_error err = new_error();
  acns_policy_engine *e = NULL;
  struct {
    acns_policy_engine_opts opts;
    uint64_t future;
  } bigger;
  memset(&bigger, 0, sizeof(bigger));
  bigger.opts.struct_size = sizeof(bigger);
  CHECK(acns_policy_engine_create(&bigger.opts, &e, &err) == ACNS_OK);
  acns_policy_engine_destroy(e);
  bigger.future = 1;
  CHECK(acns_policy_engine_create(&bigger.opts, &e, &err) == ACNS_INVALID_ARGUMENT && e == NULL);
  CHECK(strstr(err.message, "unknown") != NULL);
  bigger.opts.struct_size = 1;
  CHECK(acns_policy_engine_create(&bigger.opts, &e, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_create(NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  /* A caller's error struct that is smaller than ours gets only what fits. */
  {
    acns_error small;
    memset(&small, 0x7f, sizeof(small));
    small.struct_size = 16 + 8;
    CHECK(acns_policy_engine_create(NULL, NULL, &small) == ACNS_INVALID_ARGUMENT);
    CHECK(small.code == ACNS_INVALID_ARGUMENT && small.message[7] == '\0' && small.message[8] == 0x7f);
  }
}

static void test_policy(void) {
  acns_error err = new_error();
  acns_policy_engine *e = NULL;
  const char *labels[] = {"app=web"};
  const char *server_labels[] = {"k8s-app=dns", "k8s:io.kubernetes.pod.namespace=ns"};
  const char *server_app_only[] = {"k8s-app=dns"};
  const char *bad_labels[] = {"=nokey"};
  acns_endpoint ep;
  acns_dns_query q;
  acns_dns_decision d;
  char name[8], ns[64], path[64];
  size_t n = 0;

  diag_count = 0;
  CHECK(acns_policy_validate("bad.yaml", kBadPolicy, strlen(kBadPolicy), count_diag, NULL, &err) ==
        ACNS_POLICY_INVALID);
  CHECK(diag_count == 1 && err.code == ACNS_POLICY_INVALID);
  CHECK(strstr(err.message, "bad.yaml: document 0: spec.egress[0]") != NULL);
  CHECK(acns_policy_validate("ok.yaml", kPolicy, strlen(kPolicy), NULL, NULL, &err) == ACNS_OK);
  CHECK(acns_policy_validate(NULL, kPolicy, 1, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_validate("x", NULL, 1, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);

  CHECK(acns_policy_engine_create(NULL, &e, &err) == ACNS_OK);
  CHECK(acns_policy_engine_apply(e, "p.yaml", kPolicy, strlen(kPolicy), NULL, NULL, &err) == ACNS_OK);
  CHECK(acns_policy_engine_apply(e, "p.yaml", kBadPolicy, strlen(kBadPolicy), NULL, NULL, &err) ==
        ACNS_POLICY_INVALID);
  CHECK(acns_policy_engine_apply(NULL, "p", "", 0, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_apply(e, NULL, "", 0, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_apply(e, "p", NULL, 3, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_apply_file(e, "/nonexistent/acns.yaml", NULL, NULL, &err) == ACNS_NOT_FOUND);
  CHECK(err.sys_errno == 2);
  CHECK(acns_policy_engine_apply_file(e, "/", NULL, NULL, &err) == ACNS_IO_ERROR && err.sys_errno != 0);
  CHECK(acns_policy_engine_apply_file(e, NULL, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_apply_file(NULL, "x", NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);

  memset(&ep, 0, sizeof(ep));
  ep.struct_size = sizeof(ep);
  ep.id = 42;
  ep.namespace_name = "ns";
  ep.labels = labels;
  ep.n_labels = 1;
  CHECK(acns_policy_engine_endpoint_upsert(e, &ep, &err) == ACNS_OK);
  ep.id = 0;
  CHECK(acns_policy_engine_endpoint_upsert(e, &ep, &err) == ACNS_INVALID_ARGUMENT);
  ep.id = 43;
  ep.labels = bad_labels;
  CHECK(acns_policy_engine_endpoint_upsert(e, &ep, &err) == ACNS_INVALID_ARGUMENT);
  ep.labels = NULL;
  CHECK(acns_policy_engine_endpoint_upsert(e, &ep, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_endpoint_upsert(e, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_endpoint_upsert(NULL, &ep, &err) == ACNS_INVALID_ARGUMENT);

  memset(&q, 0, sizeof(q));
  q.struct_size = sizeof(q);
  q.endpoint_id = 42;
  q.server_family = 4;
  q.protocol = ACNS_PROTO_UDP;
  q.server_port = 53;
  q.server_addr[0] = 198; q.server_addr[1] = 51; q.server_addr[2] = 100; q.server_addr[3] = 53;
  q.server_labels = server_labels;
  q.n_server_labels = 2;
  q.qname = "WWW.Allowed.Test.";
  q.qname_len = strlen(q.qname);
  memset(&d, 0, sizeof(d));
  d.struct_size = sizeof(d);
  d.policy_name_buf = name;
  d.policy_name_buf_len = sizeof(name);
  d.policy_namespace_buf = ns;
  d.policy_namespace_buf_len = sizeof(ns);
  d.rule_path_buf = path;
  d.rule_path_buf_len = sizeof(path);
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK);
  CHECK(d.verdict == ACNS_VERDICT_ALLOW && d.reason == ACNS_REASON_ALLOWED_BY_RULE);
  CHECK(d.policy_kind == ACNS_POLICY_KIND_CNP);
  CHECK(strcmp(name, "abi") == 0 && d.policy_name_needed == 3);
  CHECK(strcmp(ns, "ns") == 0);
  CHECK(strcmp(path, "spec.egress[0].toPorts[0].rules.dns[0]") == 0);
  /* Truncation: a 4-byte buffer gets 3 bytes and the NUL; needed says the full size. */
  d.rule_path_buf_len = 4;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK);
  CHECK(strcmp(path, "spe") == 0 && d.rule_path_needed == strlen("spec.egress[0].toPorts[0].rules.dns[0]"));
  d.rule_path_buf_len = sizeof(path);
  /* The server's namespace as a field, not a label (@since 0.3); without it, no namespace. */
  q.server_labels = server_app_only;
  q.n_server_labels = 1;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK && d.verdict == ACNS_VERDICT_DENY);
  q.server_namespace = "ns";
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK && d.verdict == ACNS_VERDICT_ALLOW);
  q.server_namespace = NULL;
  q.server_labels = server_labels;
  q.n_server_labels = 2;

  q.qname = "evil.test";
  q.qname_len = 9;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK);
  CHECK(d.verdict == ACNS_VERDICT_DENY && d.reason == ACNS_REASON_NO_RULE_MATCHED && d.policy_kind == 0);
  CHECK(d.policy_name_needed == 0 && name[0] == '\0');
  q.endpoint_id = 7;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK && d.reason == ACNS_REASON_UNKNOWN_ENDPOINT);
  /* By labels instead of id. */
  q.endpoint_id = 0;
  q.endpoint_namespace = "ns";
  q.endpoint_labels = labels;
  q.n_endpoint_labels = 1;
  q.qname = "a.allowed.test";
  q.qname_len = 14;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK && d.verdict == ACNS_VERDICT_ALLOW);
  q.endpoint_namespace = "other";
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_OK && d.reason == ACNS_REASON_NOT_ENFORCED);
  q.endpoint_labels = bad_labels;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  q.endpoint_labels = labels;
  /* Malformed queries. */
  q.server_family = 5;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  q.server_family = 4;
  q.protocol = 1;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  q.protocol = ACNS_PROTO_TCP;
  q.qname = NULL;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  q.qname = "a.allowed.test";
  q.pad = 0;
  q.struct_size = 3;
  CHECK(acns_policy_engine_check_dns(e, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  q.struct_size = sizeof(q);
  CHECK(acns_policy_engine_check_dns(NULL, &q, &d, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_check_dns(e, NULL, &d, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_check_dns(e, &q, NULL, &err) == ACNS_INVALID_ARGUMENT);

  selectors[0] = '\0';
  CHECK(acns_policy_engine_match_selectors(e, "x.allowed.test", 14, record_selector, NULL, &n, &err) == ACNS_OK);
  CHECK(n == 1 && strcmp(selectors, "*.allowed.test;") == 0);
  CHECK(acns_policy_engine_match_selectors(e, "EXACT.test", 10, NULL, NULL, &n, &err) == ACNS_OK && n == 1);
  CHECK(acns_policy_engine_match_selectors(e, "no.test", 7, NULL, NULL, &n, NULL) == ACNS_OK && n == 0);
  CHECK(acns_policy_engine_match_selectors(NULL, "a", 1, NULL, NULL, &n, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_match_selectors(e, NULL, 1, NULL, NULL, &n, &err) == ACNS_INVALID_ARGUMENT);

  CHECK(acns_policy_engine_endpoint_remove(e, 42, &err) == ACNS_OK);
  CHECK(acns_policy_engine_endpoint_remove(e, 42, &err) == ACNS_NOT_FOUND);
  CHECK(acns_policy_engine_endpoint_remove(NULL, 42, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_remove(e, "p.yaml", &err) == ACNS_OK);
  CHECK(acns_policy_engine_remove(e, "p.yaml", &err) == ACNS_NOT_FOUND);
  CHECK(strstr(err.message, "p.yaml") != NULL);
  CHECK(acns_policy_engine_remove(e, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_policy_engine_remove(NULL, "p.yaml", &err) == ACNS_INVALID_ARGUMENT);
  acns_policy_engine_destroy(e);
  acns_policy_engine_destroy(NULL);
}

/* ---- FQDN cache ---- */

#define T0 1800000000
static uint32_t delta_kinds[64];
static acns_fqdn_delta first_added;
static char first_label[64];
static size_t n_delta;
static void record_deltas(void *user_data, const acns_fqdn_delta *const *d, size_t n) {
  size_t i;
  (void)user_data;
  for (i = 0; i < n; ++i) {
    CHECK(d[i]->struct_size == sizeof(acns_fqdn_delta));
    if (d[i]->kind == ACNS_FQDN_DELTA_IDENTITY_ADDED && first_added.kind == 0) {
      first_added = *d[i];
      CHECK(d[i]->n_labels == 2);
      if (d[i]->n_labels == 2) snprintf(first_label, sizeof(first_label), "%s", d[i]->labels[1]);
    }
    if (n_delta < 64) delta_kinds[n_delta++] = d[i]->kind;
  }
}
static void reset_deltas(void) {
  n_delta = 0;
  memset(&first_added, 0, sizeof(first_added));
}

static acns_ip ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  acns_ip ip;
  memset(&ip, 0, sizeof(ip));
  ip.family = 4;
  ip.addr[0] = a;
  ip.addr[1] = b;
  ip.addr[2] = c;
  ip.addr[3] = d;
  return ip;
}

static acns_dns_answer answer(const char *qname, const acns_ip *ips, size_t n, uint32_t ttl, int64_t now) {
  acns_dns_answer a;
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  a.endpoint_id = 7;
  a.qname = qname;
  a.qname_len = strlen(qname);
  a.ips = ips;
  a.n_ips = n;
  a.ttl_s = ttl;
  a.now = now;
  return a;
}

static void write_file(const char *path, const char *content) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs(content, f);
  fclose(f);
}

static void test_fqdn_cache(void) {
  acns_error err = new_error();
  acns_policy_engine *engine = NULL;
  acns_fqdn_cache *cache = NULL, *restored = NULL, *plain = NULL;
  acns_fqdn_cache_opts opts;
  acns_ip ips[2];
  acns_dns_answer a;
  acns_fqdn_lease leases[4];
  acns_fqdn_gc_result gc;
  acns_fqdn_cache_stats stats;
  uint64_t seq = 0;
  uint32_t identity = 0;
  size_t needed = 0, n = 0;
  char buf[256], listing[1024], dir[] = "/tmp/acns-abi-XXXXXX", path[320], other[] = "/tmp/acns-abi-XXXXXX";

  CHECK(mkdtemp(dir) != NULL && mkdtemp(other) != NULL);
  CHECK(acns_policy_engine_create(NULL, &engine, &err) == ACNS_OK);
  CHECK(acns_policy_engine_apply(engine, "p.yaml", kPolicy, sizeof(kPolicy) - 1, NULL, NULL, &err) == ACNS_OK);

  /* Defaults (background thread) and bad options. */
  CHECK(acns_fqdn_cache_create(NULL, NULL, &plain, &err) == ACNS_OK);
  acns_fqdn_cache_destroy(plain);
  acns_fqdn_cache_destroy(NULL);
  memset(&opts, 0, sizeof(opts));
  CHECK(acns_fqdn_cache_create(&opts, NULL, &plain, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "struct_size") != NULL);
  opts.struct_size = sizeof(opts);
  opts.flags = 0x80;
  CHECK(acns_fqdn_cache_create(&opts, NULL, &plain, &err) == ACNS_INVALID_ARGUMENT && plain == NULL);
  opts.flags = ACNS_FQDN_CACHE_MANUAL;
  opts.pad = 1;
  CHECK(acns_fqdn_cache_create(&opts, NULL, &plain, &err) == ACNS_INVALID_ARGUMENT);
  opts.pad = 0;
  CHECK(acns_fqdn_cache_create(&opts, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);

  opts.state_dir = dir;
  opts.delta_fn = record_deltas;
  CHECK(acns_fqdn_cache_create(&opts, engine, &cache, &err) == ACNS_OK);

  /* Ingest: an identity for {*.allowed.test}, then the two IPs. */
  ips[0] = ip4(198, 51, 100, 1);
  memset(&ips[1], 0, sizeof(ips[1]));
  ips[1].family = 6;
  ips[1].addr[0] = 0x20;
  ips[1].addr[1] = 0x01;
  ips[1].addr[2] = 0x0d;
  ips[1].addr[3] = 0xb8;
  ips[1].addr[15] = 1;
  reset_deltas();
  a = answer("WWW.allowed.test", ips, 2, 60, T0);
  CHECK(acns_fqdn_cache_ingest(cache, &a, &seq, &err) == ACNS_OK);
  CHECK(seq == 3 && n_delta == 3);
  CHECK(delta_kinds[0] == ACNS_FQDN_DELTA_IDENTITY_ADDED && delta_kinds[1] == ACNS_FQDN_DELTA_IP_UPSERTED);
  CHECK(first_added.identity == 16777216 && strcmp(first_label, "fqdn:*.allowed.test") == 0);
  a = answer("", ips, 2, 60, T0);
  CHECK(acns_fqdn_cache_ingest(cache, &a, &seq, &err) == ACNS_INVALID_ARGUMENT);
  a = answer("x.allowed.test", NULL, 2, 60, T0);
  CHECK(acns_fqdn_cache_ingest(cache, &a, &seq, &err) == ACNS_INVALID_ARGUMENT);
  ips[0].family = 5;
  a = answer("x.allowed.test", ips, 1, 60, T0);
  CHECK(acns_fqdn_cache_ingest(cache, &a, &seq, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "ips[0]") != NULL);
  ips[0].family = 4;
  CHECK(acns_fqdn_cache_ingest(NULL, &a, &seq, &err) == ACNS_INVALID_ARGUMENT);

  /* Lookups. */
  CHECK(acns_fqdn_cache_lookup_name(cache, "www.allowed.test.", ACNS_FQDN_ANY_ENDPOINT, NULL,
                                    sizeof(acns_fqdn_lease), 0, &needed, &err) == ACNS_OK && needed == 2);
  CHECK(acns_fqdn_cache_lookup_name(cache, "www.allowed.test", 7, leases, sizeof(acns_fqdn_lease), 1,
                                    &needed, &err) == ACNS_OK && needed == 2);
  CHECK(leases[0].struct_size == sizeof(acns_fqdn_lease) && leases[0].endpoint_id == 7);
  CHECK(leases[0].expires == T0 + 60 && leases[0].ttl_s == 60 && leases[0].zombie == 0);
  CHECK(leases[0].ip.family == 4 && leases[0].ip.addr[3] == 1);
  CHECK(acns_fqdn_cache_lookup_name(cache, "www.allowed.test", 8, leases, sizeof(acns_fqdn_lease), 4,
                                    &needed, &err) == ACNS_OK && needed == 0);
  CHECK(acns_fqdn_cache_lookup_name(cache, NULL, 7, leases, sizeof(acns_fqdn_lease), 4, &needed, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_fqdn_cache_lookup_name(cache, "a", 7, NULL, sizeof(acns_fqdn_lease), 4, &needed, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_fqdn_cache_lookup_ip(cache, &ips[1], &identity, buf, sizeof(buf), &needed, &err) == ACNS_OK);
  CHECK(identity == 16777216 && strcmp(buf, "www.allowed.test.") == 0 && needed == 17);
  CHECK(acns_fqdn_cache_lookup_ip(cache, &ips[0], &identity, buf, 4, &needed, &err) == ACNS_OK);
  CHECK(strcmp(buf, "www") == 0 && needed == 17);
  CHECK(acns_fqdn_cache_lookup_ip(cache, NULL, &identity, buf, 4, &needed, &err) == ACNS_INVALID_ARGUMENT);

  /* Liveness and GC: without sweep reports, an idle expired IP goes at the next GC. */
  CHECK(acns_fqdn_cache_mark_alive(cache, ACNS_FQDN_ANY_ENDPOINT, &ips[0], T0, &err) == ACNS_OK);
  CHECK(acns_fqdn_cache_mark_alive(cache, 7, NULL, T0, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_fqdn_cache_end_alive_sweep(NULL, T0, &err) == ACNS_INVALID_ARGUMENT);
  memset(&gc, 0, sizeof(gc));
  CHECK(acns_fqdn_cache_gc(cache, T0 + 1, &gc, &err) == ACNS_INVALID_ARGUMENT);
  gc.struct_size = sizeof(gc);
  reset_deltas();
  CHECK(acns_fqdn_cache_gc(cache, T0 + 60, &gc, &err) == ACNS_OK);
  CHECK(gc.expired == 2 && gc.zombies_deleted == 2 && gc.names_removed == 1);
  CHECK(n_delta == 3 && delta_kinds[2] == ACNS_FQDN_DELTA_IDENTITY_REMOVED);

  /* Persistence: save, then a new cache restores the same IPs with the same identity. */
  a = answer("api.allowed.test", ips, 1, 600, 0);
  CHECK(acns_fqdn_cache_ingest(cache, &a, &seq, &err) == ACNS_OK);
  CHECK(acns_fqdn_cache_save(cache, &err) == ACNS_OK);
  CHECK(acns_fqdn_cache_restore(cache, other, 0, &err) == ACNS_NOT_FOUND);
  opts.state_dir = NULL;
  reset_deltas();
  CHECK(acns_fqdn_cache_create(&opts, engine, &restored, &err) == ACNS_OK);
  CHECK(acns_fqdn_cache_save(restored, &err) == ACNS_FAILED_PRECONDITION);
  CHECK(acns_fqdn_cache_restore(restored, NULL, 0, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_fqdn_cache_restore(restored, dir, 0, &err) == ACNS_OK);
  CHECK(n_delta == 3 && delta_kinds[0] == ACNS_FQDN_DELTA_RESYNC && first_added.identity == 16777216);
  CHECK(acns_fqdn_cache_lookup_ip(restored, &ips[0], &identity, NULL, 0, &needed, &err) == ACNS_OK);
  CHECK(identity == 16777216 && needed == strlen("api.allowed.test."));
  snprintf(path, sizeof(path), "%s/fqdn-cache.state", dir);
  write_file(path, "ACNSFQC1 but not really");
  CHECK(acns_fqdn_cache_restore(restored, dir, 0, &err) == ACNS_DATA_LOSS);
  CHECK(strstr(err.message, path) != NULL);
  remove(path);

  /* Pre-cache in Cilium's format, and the export. */
  snprintf(path, sizeof(path), "%s/precache.json", other);
  write_file(path, "[{\"fqdn\": \"exact.test.\", \"ips\": [\"203.0.113.4\"], \"ttl\": 3600, "
                   "\"lookup-time\": \"2027-01-15T08:00:00Z\", \"expiration-time\": \"2027-01-15T09:00:00Z\"}]");
  CHECK(acns_fqdn_cache_precache_load(restored, path, T0, &n, &err) == ACNS_OK && n == 1);
  CHECK(acns_fqdn_cache_list(restored, ACNS_FQDN_LIST_JSON, listing, sizeof(listing), &needed, &err) == ACNS_OK);
  CHECK(strstr(listing, "\"fqdn\": \"exact.test.\", \"ips\": [\"203.0.113.4\"]") != NULL);
  CHECK(acns_fqdn_cache_list(restored, ACNS_FQDN_LIST_TABLE, listing, sizeof(listing), &needed, &err) == ACNS_OK);
  CHECK(strstr(listing, "exact.test.") != NULL && strstr(listing, "FQDN") != NULL);
  CHECK(acns_fqdn_cache_list(restored, 9, buf, sizeof(buf), &needed, &err) == ACNS_INVALID_ARGUMENT);
  write_file(path, "[{\"fqdn\": \"exact.test.\"}]");
  CHECK(acns_fqdn_cache_precache_load(restored, path, T0, &n, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "item 0: ips") != NULL);
  remove(path);
  CHECK(acns_fqdn_cache_precache_load(restored, path, T0, &n, &err) == ACNS_NOT_FOUND);
  CHECK(err.sys_errno != 0);

  /* Stats; a policy change; an endpoint leaving. */
  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  CHECK(acns_fqdn_cache_stats_get(restored, &stats, &err) == ACNS_OK);
  CHECK(stats.names == 2 && stats.leases == 2 && stats.identities == 2 && stats.entries == 4);
  CHECK(acns_policy_engine_remove(engine, "p.yaml", &err) == ACNS_OK);
  reset_deltas();
  CHECK(acns_fqdn_cache_reevaluate(restored, &err) == ACNS_OK);
  CHECK(n_delta == 4 && delta_kinds[0] == ACNS_FQDN_DELTA_IP_REMOVED);
  CHECK(acns_fqdn_cache_remove_endpoint(restored, 7, &err) == ACNS_OK);
  CHECK(acns_fqdn_cache_stats_get(restored, &stats, &err) == ACNS_OK && stats.names == 1);

  /* Without a delta_fn, deltas wait to be drained. */
  CHECK(acns_policy_engine_apply(engine, "p.yaml", kPolicy, sizeof(kPolicy) - 1, NULL, NULL, &err) == ACNS_OK);
  opts.delta_fn = NULL;
  CHECK(acns_fqdn_cache_create(&opts, engine, &plain, &err) == ACNS_OK);
  a = answer("www.allowed.test", ips, 1, 60, T0);
  CHECK(acns_fqdn_cache_ingest(plain, &a, &seq, &err) == ACNS_OK && seq == 2);
  reset_deltas();
  CHECK(acns_fqdn_cache_drain_deltas(plain, record_deltas, NULL, &n, &err) == ACNS_OK && n == 2);
  CHECK(n_delta == 2 && delta_kinds[1] == ACNS_FQDN_DELTA_IP_UPSERTED);
  CHECK(acns_fqdn_cache_drain_deltas(plain, record_deltas, NULL, &n, &err) == ACNS_OK && n == 0);
  CHECK(acns_fqdn_cache_drain_deltas(plain, NULL, NULL, &n, &err) == ACNS_INVALID_ARGUMENT);
  /* A resync: the full state again, after a RESYNC. */
  CHECK(acns_fqdn_cache_resync(plain, &err) == ACNS_OK);
  reset_deltas();
  CHECK(acns_fqdn_cache_drain_deltas(plain, record_deltas, NULL, &n, &err) == ACNS_OK && n == 3);
  CHECK(n_delta == 3 && delta_kinds[0] == ACNS_FQDN_DELTA_RESYNC && delta_kinds[2] == ACNS_FQDN_DELTA_IP_UPSERTED);
  CHECK(acns_fqdn_cache_resync(NULL, &err) == ACNS_INVALID_ARGUMENT);
  acns_fqdn_cache_destroy(plain);

  acns_fqdn_cache_destroy(restored);
  acns_fqdn_cache_destroy(cache);
  acns_policy_engine_destroy(engine);
  snprintf(path, sizeof(path), "%s/fqdn-cache.state", dir);
  remove(path);
  CHECK(rmdir(dir) == 0 && rmdir(other) == 0);
}

/* ---- DNS proxy ---- */

static int dns_events;
static void count_dns_event(void *user_data, const acns_dns_event *e) {
  (void)user_data;
  CHECK(e->struct_size == sizeof(acns_dns_event));
  CHECK(e->verdict == ACNS_DNS_VERDICT_DENIED && e->endpoint_id == 42 && e->protocol == ACNS_PROTO_UDP);
  CHECK(e->qname_len == 16 && strncmp(e->qname, "www.denied.test.", 16) == 0 && e->qtype == 1);
  CHECK(e->client.family == 4 && e->client.addr[0] == 127 && e->server_port == 9);
  if (e->type == ACNS_DNS_EVENT_RESPONSE) CHECK(e->rcode == 3 && e->n_ips == 0 && e->upstream_latency_ns == 0);
  ++dns_events;
}

static void test_dns_proxy(void) {
  acns_error err = new_error();
  acns_policy_engine *engine = NULL;
  acns_dns_proxy *proxy = NULL;
  acns_dns_proxy_opts opts;
  acns_dns_proxy_stats stats;
  acns_endpoint ep;
  acns_ip ip = ip4(127, 0, 0, 1);
  const char *labels[] = {"app=web"};
  const char *listen[] = {"127.0.0.1:0"};
  /* A query for www.denied.test (A, RD). */
  static const unsigned char query[] = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                                        3, 'w', 'w', 'w', 6, 'd', 'e', 'n', 'i', 'e', 'd',
                                        4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
  unsigned char reply[512];
  char addr[64];
  size_t needed = 0;
  const char *colon;
  struct sockaddr_in to;
  struct timeval tv;
  int fd;
  long n;

  CHECK(acns_policy_engine_create(NULL, &engine, &err) == ACNS_OK);
  CHECK(acns_policy_engine_apply(engine, "p.yaml", kPolicy, sizeof(kPolicy) - 1, NULL, NULL, &err) == ACNS_OK);
  memset(&ep, 0, sizeof(ep));
  ep.struct_size = sizeof(ep);
  ep.id = 42;
  ep.namespace_name = "ns";
  ep.labels = labels;
  ep.n_labels = 1;
  ep.ips = &ip;
  ep.n_ips = 1;
  CHECK(acns_policy_engine_endpoint_upsert(engine, &ep, &err) == ACNS_OK);
  ep.id = 43;
  CHECK(acns_policy_engine_endpoint_upsert(engine, &ep, &err) == ACNS_ALREADY_EXISTS);
  ip.family = 9;
  CHECK(acns_policy_engine_endpoint_upsert(engine, &ep, &err) == ACNS_INVALID_ARGUMENT);
  ip.family = 4;

  memset(&opts, 0, sizeof(opts));
  opts.struct_size = sizeof(opts);
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_INVALID_ARGUMENT);
  opts.listen = listen;
  opts.n_listen = 1;
  opts.upstream = "127.0.0.1";
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "upstream") != NULL);
  opts.upstream = "127.0.0.1:9";
  opts.deny_rcode = 4;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_INVALID_ARGUMENT);
  opts.deny_rcode = ACNS_DNS_RCODE_NXDOMAIN;
  CHECK(acns_dns_proxy_create(&opts, NULL, NULL, &proxy, &err) == ACNS_INVALID_ARGUMENT);
  opts.workers = 1;
  opts.event_fn = count_dns_event;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_OK);
  CHECK(acns_dns_proxy_listen_address(proxy, 0, addr, sizeof(addr), &needed, &err) == ACNS_OK);
  CHECK(strncmp(addr, "127.0.0.1:", 10) == 0);
  CHECK(acns_dns_proxy_listen_address(proxy, 1, addr, sizeof(addr), &needed, &err) == ACNS_NOT_FOUND);

  /* The policy allows *.allowed.test only: a denied name is answered NXDOMAIN by the proxy. */
  colon = strrchr(addr, ':');
  memset(&to, 0, sizeof(to));
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)atoi(colon + 1));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  tv.tv_sec = 3;
  tv.tv_usec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sendto(fd, query, sizeof(query), 0, (struct sockaddr *)&to, sizeof(to));
  n = (long)recv(fd, reply, sizeof(reply), 0);
  close(fd);
  CHECK(n == (long)sizeof(query));
  CHECK(reply[0] == 0xab && reply[1] == 0xcd && (reply[2] & 0x80) && (reply[3] & 0x0f) == 3);

  CHECK(acns_dns_proxy_ack(proxy, 5, &err) == ACNS_OK);
  CHECK(acns_dns_proxy_ack(NULL, 5, &err) == ACNS_INVALID_ARGUMENT);
  memset(&stats, 0, sizeof(stats));
  CHECK(acns_dns_proxy_stats_get(proxy, &stats, &err) == ACNS_INVALID_ARGUMENT);
  stats.struct_size = sizeof(stats);
  CHECK(acns_dns_proxy_stats_get(proxy, &stats, &err) == ACNS_OK);
  CHECK(stats.queries == 1 && stats.denied == 1 && stats.allowed == 0);
  CHECK(stats.workers == 1 && stats.active_workers == 1);
  CHECK(dns_events == 2);
  acns_dns_proxy_destroy(proxy);

  /* Two workers: one takes the queries while idle, both with ACNS_DNS_PROXY_ALL_WORKERS. */
  opts.workers = 2;
  opts.event_fn = NULL;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_OK);
  CHECK(acns_dns_proxy_stats_get(proxy, &stats, &err) == ACNS_OK);
  CHECK(stats.workers == 2 && stats.active_workers == 1);
  acns_dns_proxy_destroy(proxy);
  opts.flags = ACNS_DNS_PROXY_ALL_WORKERS;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_OK);
  CHECK(acns_dns_proxy_stats_get(proxy, &stats, &err) == ACNS_OK);
  CHECK(stats.workers == 2 && stats.active_workers == 2);
  acns_dns_proxy_destroy(proxy);
  opts.flags = ACNS_DNS_PROXY_NO_CASE_RANDOMIZATION;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_OK);
  acns_dns_proxy_destroy(proxy);
  opts.flags = 32;
  CHECK(acns_dns_proxy_create(&opts, engine, NULL, &proxy, &err) == ACNS_INVALID_ARGUMENT);
  acns_dns_proxy_destroy(NULL);
  acns_policy_engine_destroy(engine);
}

/* ---- datapath ---- */

static void count_events(void *user_data, const acns_datapath_event *event) {
  (void)user_data;
  CHECK(event->struct_size == sizeof(acns_datapath_event));
}

static void test_datapath(void) {
  acns_error err = new_error();
  acns_policy_engine *engine = NULL;
  acns_datapath *dp = NULL;
  acns_datapath_opts opts;
  acns_datapath_stats stats;
  acns_policy_engine_stats es;
  acns_fqdn_delta added, upserted;
  const acns_fqdn_delta *batch[2];
  const char *labels[] = {"reserved:world", "fqdn:*.allowed.test"};
  const char *bad_proxy[] = {"not-an-address"};
  const char *proxy[] = {"198.51.100.1:53"};
  char dir[] = "/tmp/acns-abi-bpffs-XXXXXX";
  uint64_t seq = 0;
  size_t n_events = 99;

  CHECK(acns_policy_engine_create(NULL, &engine, &err) == ACNS_OK);
  memset(&es, 0, sizeof(es));
  es.struct_size = sizeof(es);
  CHECK(acns_policy_engine_stats_get(engine, &es, &err) == ACNS_OK && es.endpoints == 0);
  CHECK(acns_policy_engine_stats_get(NULL, &es, &err) == ACNS_INVALID_ARGUMENT);

  memset(&opts, 0, sizeof(opts));
  opts.struct_size = sizeof(opts);
  CHECK(acns_datapath_create(&opts, NULL, &dp, &err) == ACNS_INVALID_ARGUMENT && dp == NULL);
  opts.dns_proxy = bad_proxy;
  opts.n_dns_proxy = 1;
  CHECK(acns_datapath_create(&opts, engine, &dp, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "dns_proxy[0]") != NULL);
  CHECK(acns_datapath_sync(NULL, &err) == ACNS_INVALID_ARGUMENT);
  acns_datapath_destroy(NULL);

  if (geteuid() != 0 || mkdtemp(dir) == NULL) {
    printf("datapath: skipping the kernel part (needs root)\n");
    acns_policy_engine_destroy(engine);
    return;
  }
  /* The datapath mounts a bpffs on the directory itself. */
  opts.bpffs_dir = dir;
  opts.dns_proxy = proxy;
  CHECK(acns_datapath_create(&opts, engine, &dp, &err) == ACNS_OK && dp != NULL);
  CHECK(acns_datapath_sync(dp, &err) == ACNS_OK);
  memset(&added, 0, sizeof(added));
  added.struct_size = sizeof(added);
  added.seq = 1;
  added.kind = ACNS_FQDN_DELTA_IDENTITY_ADDED;
  added.identity = 16777216;
  added.labels = labels;
  added.n_labels = 2;
  upserted = added;
  upserted.seq = 2;
  upserted.kind = ACNS_FQDN_DELTA_IP_UPSERTED;
  upserted.labels = NULL;
  upserted.n_labels = 0;
  upserted.ip.family = 4;
  upserted.ip.addr[0] = 203;
  upserted.ip.addr[1] = 0;
  upserted.ip.addr[2] = 113;
  upserted.ip.addr[3] = 10;
  batch[0] = &added;
  batch[1] = &upserted;
  CHECK(acns_datapath_apply_deltas(dp, batch, 2, &seq, &err) == ACNS_OK && seq == 2);
  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  CHECK(acns_datapath_stats_get(dp, &stats, &err) == ACNS_OK);
  CHECK(stats.fqdn_identities == 1 && stats.ipcache_written == 2 && stats.endpoints == 0);
  CHECK(stats.events_lost == 0 && stats.largest_policy_map == 0);
  CHECK(acns_datapath_poll_events(dp, count_events, NULL, 0, &n_events, &err) == ACNS_OK && n_events == 0);
  CHECK(acns_datapath_poll_events(dp, NULL, NULL, 0, &n_events, &err) == ACNS_INVALID_ARGUMENT);
  upserted.kind = 99;
  CHECK(acns_datapath_apply_deltas(dp, batch, 2, &seq, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "deltas[1]: unknown kind 99") != NULL);
  acns_datapath_destroy(dp);
  acns_policy_engine_destroy(engine);
  CHECK(umount2(dir, MNT_DETACH) == 0 && rmdir(dir) == 0);
}

/* The node runtime's options and its life cycle without root (no datapath). */
static void test_node(void) {
  acns_error err;
  acns_node *node = NULL;
  acns_node_opts o;
  memset(&err, 0, sizeof(err));
  err.struct_size = sizeof(err);
  memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  o.flags = 1u << 20;
  CHECK(acns_node_create(&o, &node, &err) == ACNS_INVALID_ARGUMENT && node == NULL);
  o.flags = ACNS_NODE_NO_DATAPATH;
  o.state_dir = "/proc/version/state"; /* below a file: unusable */
  CHECK(acns_node_create(&o, &node, &err) == ACNS_FAILED_PRECONDITION);
  CHECK(strstr(err.message, "/proc/version/state") != NULL);
  o.state_dir = NULL;
  const char *listen[] = {"127.0.0.1:0"};
  o.dns_listen = listen;
  o.n_dns_listen = 1;
  CHECK(acns_node_create(&o, &node, &err) == ACNS_INVALID_ARGUMENT); /* no upstream */
  o.dns_upstream = "127.0.0.1:9";
  o.hubble_listen_address = "127.0.0.1:0";
  CHECK(acns_node_create(&o, &node, &err) == ACNS_INVALID_ARGUMENT); /* the API needs flows */
  o.flow_capacity = 16;
  o.pad2 = 1;
  CHECK(acns_node_create(&o, &node, &err) == ACNS_INVALID_ARGUMENT);
  o.pad2 = 0;
  o.flow_log_path = "/tmp/acns-abi-flow-log/events.log";
  o.flow_log_allowlist = "{\"verdict\":[\"SOMETIMES\"]}";
  CHECK(acns_node_create(&o, &node, &err) == ACNS_INVALID_ARGUMENT); /* a bad filter, before anything runs */
  CHECK(strstr(err.message, "flow log allowlist") != NULL);
  o.flow_log_path = NULL;
  o.flow_log_allowlist = NULL;
  CHECK(acns_node_create(&o, &node, &err) == ACNS_OK && node != NULL);
  CHECK(acns_node_wait_synced(node, 10, &err) == ACNS_FAILED_PRECONDITION);
  CHECK(acns_node_policy_apply(node, "bad.yaml", "spec: [", 7, NULL, NULL, &err) == ACNS_POLICY_INVALID);
  CHECK(acns_node_endpoint_remove(node, 42, &err) == ACNS_NOT_FOUND);
  acns_ip host_ip;
  memset(&host_ip, 0, sizeof(host_ip));
  host_ip.family = 4;
  host_ip.addr[0] = 198, host_ip.addr[1] = 51, host_ip.addr[2] = 100, host_ip.addr[3] = 1;
  CHECK(acns_node_set_reserved_addresses(node, "host", &host_ip, 1, &err) == ACNS_OK);
  CHECK(acns_node_set_reserved_addresses(node, "world", &host_ip, 1, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_node_set_reserved_addresses(node, "remote-node", NULL, 1, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_node_set_reserved_addresses(node, "host", NULL, 0, &err) == ACNS_OK);
  CHECK(acns_node_start(node, &err) == ACNS_OK);
  CHECK(acns_node_start(node, &err) == ACNS_FAILED_PRECONDITION);
  CHECK(acns_node_wait_synced(node, 5000, &err) == ACNS_OK);
  char addr[64];
  size_t needed = 0;
  CHECK(acns_node_dns_listen_address(node, 0, addr, sizeof(addr), &needed, &err) == ACNS_OK);
  CHECK(strncmp(addr, "127.0.0.1:", 10) == 0 && strcmp(addr, "127.0.0.1:0") != 0);
  CHECK(acns_node_dns_listen_address(node, 1, addr, sizeof(addr), &needed, &err) == ACNS_NOT_FOUND);
  CHECK(acns_node_hubble_listen_address(node, addr, sizeof(addr), &needed, &err) == ACNS_OK);
  CHECK(strncmp(addr, "127.0.0.1:", 10) == 0 && strcmp(addr, "127.0.0.1:0") != 0);
  /* The Hubble API clients: no flows yet, an empty graph; bad flags and no server are errors. */
  collected_text got_text;
  memset(&got_text, 0, sizeof(got_text));
  const char *observe_args[] = {"--server", addr, "--last", "10", "-o", "json"};
  CHECK(acns_observe(observe_args, 6, collect_text, &got_text, &err) == ACNS_OK);
  CHECK(got_text.len == 0);
  const char *graph_args[] = {"--server", addr};
  CHECK(acns_flow_graph(graph_args, 2, collect_text, &got_text, &err) == ACNS_OK);
  CHECK(got_text.calls == 1 && strncmp(got_text.text, "digraph flows {\n", 16) == 0);
  const char *bad_args[] = {"--verdict", "MAYBE"};
  CHECK(acns_observe(bad_args, 2, collect_text, &got_text, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "MAYBE") != NULL);
  CHECK(acns_observe(observe_args, 6, NULL, NULL, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_observe(NULL, 1, collect_text, &got_text, &err) == ACNS_INVALID_ARGUMENT);
  const char *no_server[] = {"--server", "unix:/nonexistent/acns.sock", "--timeout", "200ms"};
  CHECK(acns_flow_graph(no_server, 4, collect_text, &got_text, &err) == ACNS_UNAVAILABLE);
  CHECK(strstr(err.message, "cannot reach the Hubble API") != NULL);
  char *text = NULL;
  size_t len = 0;
  CHECK(acns_node_metrics(node, &text, &len, &err) == ACNS_OK);
  CHECK(text != NULL && strlen(text) == len && strstr(text, "# TYPE cilium_fqdn_active_names gauge\n") != NULL);
  acns_free(text);
  CHECK(acns_node_metrics(node, NULL, &len, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_node_fqdn_cache_list(node, ACNS_FQDN_LIST_JSON, &text, &len, &err) == ACNS_OK);
  CHECK(text != NULL && strlen(text) == len);
  acns_free(text);
  CHECK(acns_node_fqdn_cache_list(node, 99, &text, &len, &err) == ACNS_INVALID_ARGUMENT && text == NULL);
  acns_fqdn_listing *listing = NULL;
  CHECK(acns_node_fqdn_cache_list_open(node, ACNS_FQDN_LIST_TABLE, &listing, &err) == ACNS_INVALID_ARGUMENT);
  CHECK(acns_node_fqdn_cache_list_open(node, ACNS_FQDN_LIST_JSON, &listing, &err) == ACNS_OK && listing != NULL);
  char piece[2], streamed[16] = {0};
  size_t got = 0, total = 0;
  do {
    CHECK(acns_fqdn_listing_read(listing, piece, sizeof(piece), &got, &err) == ACNS_OK);
    if (total + got < sizeof(streamed)) memcpy(streamed + total, piece, got);
    total += got;
  } while (got > 0);
  CHECK(strcmp(streamed, "[]\n") == 0);
  acns_fqdn_listing_close(listing);
  acns_fqdn_listing_close(NULL);
  acns_node_stats s;
  acns_dns_proxy_stats p;
  memset(&s, 0, sizeof(s));
  memset(&p, 0, sizeof(p));
  s.struct_size = sizeof(s);
  p.struct_size = sizeof(p);
  CHECK(acns_node_stats_get(node, &s, &p, NULL, NULL, &err) == ACNS_OK);
  CHECK(s.started == 1 && s.datapath_started == 0 && s.transparent_dns_port == 0 && p.workers > 0);
  CHECK(s.flows == 0 && s.flows_queue_lost == 0 && s.flows_kernel_lost == 0);
  acns_node_destroy(node);
  acns_node_destroy(NULL);
}

int main(void) {
  test_status_and_version();
  test_matcher();
  test_struct_size();
  test_policy();
  test_fqdn_cache();
  test_dns_proxy();
  test_datapath();
  test_node();
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
