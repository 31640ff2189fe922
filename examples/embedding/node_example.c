/* A host agent's use of the acns node runtime: policies and endpoints in, a DNS proxy that
 * enforces them (and the eBPF datapath, when run as root with endpoints that name their
 * interface), DNS events out. Usage: node_example POLICY_FILE ENDPOINTS_FILE LISTEN UPSTREAM SECONDS */
#include <acns/acns.h>
#include <stdio.h>
#include <stdlib.h>

static void on_diagnostic(void *user_data, const acns_diagnostic *d) {
  (void)user_data;
  fprintf(stderr, "%s\n", d->text);
}

static void on_log(void *user_data, int32_t level, const char *message) {
  (void)user_data;
  fprintf(stderr, "acns[%d]: %s\n", (int)level, message);
}

static void on_event(void *user_data, const acns_node_event *e) {
  (void)user_data;
  if (e->kind == ACNS_NODE_EVENT_DNS && e->dns->type == ACNS_DNS_EVENT_RESPONSE) {
    printf("endpoint %llu asked %.*s: rcode %u, %zu addresses\n", (unsigned long long)e->dns->endpoint_id,
           (int)e->dns->qname_len, e->dns->qname, (unsigned)e->dns->rcode, e->dns->n_ips);
  }
}

int main(int argc, char **argv) {
  acns_error err = {0};
  acns_node *node = NULL;
  acns_node_opts opts = {0};
  acns_dns_proxy_stats proxy = {0};
  int seconds;
  err.struct_size = sizeof(err);
  opts.struct_size = sizeof(opts);
  proxy.struct_size = sizeof(proxy);
  if (argc != 6) {
    fprintf(stderr, "usage: %s POLICY_FILE ENDPOINTS_FILE LISTEN UPSTREAM SECONDS\n", argv[0]);
    return 2;
  }
  const char *listen[] = {argv[3]};
  opts.dns_listen = listen;
  opts.n_dns_listen = 1;
  opts.dns_upstream = argv[4];
  opts.event_queue_capacity = 4096;
  opts.log_fn = on_log;
  seconds = atoi(argv[5]);

  if (acns_node_create(&opts, &node, &err) != ACNS_OK ||
      acns_node_policy_apply_file(node, argv[1], on_diagnostic, NULL, &err) != ACNS_OK ||
      acns_node_endpoints_load_file(node, argv[2], on_diagnostic, NULL, NULL, &err) != ACNS_OK ||
      acns_node_start(node, &err) != ACNS_OK) {
    fprintf(stderr, "%s: %s\n", acns_status_name(err.code), err.message);
    acns_node_destroy(node);
    return 1;
  }
  /* Events are polled on this thread: nothing of ours runs on the proxy's workers. */
  for (int i = 0; i < seconds * 10; ++i) acns_node_poll_events(node, on_event, NULL, 256, 100, NULL, NULL);

  acns_node_stats_get(node, NULL, &proxy, NULL, NULL, NULL);
  printf("%llu queries, %llu denied\n", (unsigned long long)proxy.queries, (unsigned long long)proxy.denied);
  acns_node_destroy(node);
  return 0;
}
