/*
 * acns: FQDN filtering and network observability for Linux host agents.
 *
 * This is the only public header: C99, self-contained, stable. Conventions (see docs/capi.md):
 * - Fallible calls return an acns_status and take a last `acns_error *err` (may be NULL) that
 *   receives the code, the errno (0 if none) and a message. There is no thread-local error.
 * - Options and in/out structs start with `size_t struct_size` (set it to sizeof); fields are
 *   only ever appended. A struct larger than this library knows is accepted only if the unknown
 *   tail is all zero. A NULL options pointer means defaults.
 * - Strings in are NUL-terminated UTF-8 unless a length is passed with them. Strings out are
 *   (buf, buf_len, *needed): at most buf_len - 1 bytes and a NUL are written; *needed is the
 *   full length without the NUL.
 * - Callbacks take `void *user_data` first, and the pointers they receive are valid only during
 *   the callback. Each callback type says on which thread it runs: most run on the calling
 *   thread before the call returns; those given at creation (acns_fqdn_cache_opts.delta_fn,
 *   acns_dns_proxy_opts.event_fn, acns_node_opts.log_fn) run on the library's threads.
 * - No C++ exception crosses this interface.
 */
#ifndef ACNS_ACNS_H_
#define ACNS_ACNS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported functions; everything else in libacns.so is hidden. */
#if defined(__GNUC__)
#define ACNS_API __attribute__((visibility("default")))
#else
#define ACNS_API
#endif

#define ACNS_VERSION_MAJOR 0
#define ACNS_VERSION_MINOR 6
#define ACNS_VERSION_PATCH 0

/* ---------------------------------------------------------------------------------------- */
/* Status and errors                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* Status codes: values are fixed forever; new ones are only appended. */
typedef int32_t acns_status;
#define ACNS_OK 0
#define ACNS_INVALID_ARGUMENT 1   /* a bad argument or option */
#define ACNS_NOT_FOUND 2          /* the named object does not exist */
#define ACNS_ALREADY_EXISTS 3
#define ACNS_RESOURCE_EXHAUSTED 4 /* a limit was reached (memory, automaton size, map full) */
#define ACNS_FAILED_PRECONDITION 5
#define ACNS_PERMISSION_DENIED 6
#define ACNS_UNAVAILABLE 7
#define ACNS_IO_ERROR 8           /* a system call failed; err->sys_errno says which errno */
#define ACNS_INTERNAL 9           /* a bug in acns: please report it */
#define ACNS_UNIMPLEMENTED 10
#define ACNS_POLICY_INVALID 11    /* a policy document failed validation; see the diagnostics */
#define ACNS_DATA_LOSS 12         /* stored data is corrupt or truncated (e.g. a cache snapshot) */

#define ACNS_ERROR_MESSAGE_SIZE 1024

/* Caller-owned error details. Set struct_size = sizeof(acns_error) before passing it. */
typedef struct acns_error {
  size_t struct_size;
  acns_status code;
  int32_t sys_errno;                      /* errno captured at the failure, or 0 */
  char message[ACNS_ERROR_MESSAGE_SIZE];  /* NUL-terminated; truncated if longer */
} acns_error;

/*
 * Returns the constant name of a status ("ACNS_OK", "ACNS_NOT_FOUND", ...), or
 * "ACNS_UNKNOWN_STATUS" for a value this library does not know. Never NULL.
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API const char *acns_status_name(acns_status status);

/*
 * Returns the library's version, "MAJOR.MINOR.PATCH". Static storage, never NULL.
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API const char *acns_version_string(void);

/* An IP address (@since 0.2). IPv4 in the first 4 bytes of addr, network byte order. */
typedef struct acns_ip {
  uint8_t family; /* 4 or 6 */
  uint8_t pad[3]; /* must be 0 */
  uint8_t addr[16];
} acns_ip;

/* ---------------------------------------------------------------------------------------- */
/* FQDN patterns                                                                             */
/* ---------------------------------------------------------------------------------------- */

#define ACNS_PATTERN_MATCH_NAME 1     /* Cilium matchName: a literal name */
#define ACNS_PATTERN_MATCH_PATTERN 2  /* Cilium matchPattern: `*`, leading `**.` */

typedef struct acns_fqdn_pattern {
  uint32_t kind;    /* ACNS_PATTERN_MATCH_NAME or ACNS_PATTERN_MATCH_PATTERN */
  uint32_t pad;     /* must be 0 */
  const char *text; /* NUL-terminated */
} acns_fqdn_pattern;

typedef struct acns_fqdn_matcher acns_fqdn_matcher;

typedef struct acns_fqdn_matcher_opts {
  size_t struct_size;
  const acns_fqdn_pattern *patterns; /* pattern i is reported as index i */
  size_t n_patterns;
  uint64_t max_table_bytes; /* largest automaton table before splitting; 0 = 64 MiB */
} acns_fqdn_matcher_opts;

/*
 * Compiles a set of patterns into one automaton (Cilium 1.19 semantics: case-insensitive,
 * trailing dot optional, `*` never crosses a dot, a leading `**.` matches one or more labels).
 * Returns ACNS_OK and *out, or ACNS_INVALID_ARGUMENT naming the first invalid pattern.
 * The caller owns *out and frees it with acns_fqdn_matcher_destroy. The opts and the pattern
 * texts are copied. Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_fqdn_matcher_create(const acns_fqdn_matcher_opts *opts, acns_fqdn_matcher **out,
                                     acns_error *err);

/* Frees a matcher; NULL is fine. Thread-safety: not while other calls use it. @since 0.1 */
ACNS_API void acns_fqdn_matcher_destroy(acns_fqdn_matcher *matcher);

/* Called once per matching pattern, in ascending index order. Return 0 to stop early. */
typedef int (*acns_match_fn)(void *user_data, size_t pattern_index);

/*
 * Matches `name` (name_len bytes, need not be NUL-terminated) against the matcher's patterns:
 * calls fn for each match (fn may be NULL) and sets *n_matches (may be NULL) to the number of
 * matches reported. Returns ACNS_OK, or ACNS_INVALID_ARGUMENT for a NULL matcher or name.
 * Thread-safety: safe from many threads at once on one matcher. @since 0.1
 */
ACNS_API acns_status acns_fqdn_matcher_match(const acns_fqdn_matcher *matcher, const char *name,
                                    size_t name_len, acns_match_fn fn, void *user_data,
                                    size_t *n_matches, acns_error *err);

/* ---------------------------------------------------------------------------------------- */
/* Policies                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* One validation problem in a policy document. */
typedef struct acns_diagnostic {
  size_t struct_size;
  const char *file;    /* the source name given to the call */
  int32_t document;    /* 0-based index of the YAML document */
  int32_t is_warning;  /* 1: a part was ignored; 0: an error that rejects the document */
  const char *path;    /* rule path, e.g. "spec.egress[1].toPorts[0].rules.dns[2]"; may be "" */
  const char *message;
  const char *text;    /* "FILE: document N: PATH: MESSAGE" */
} acns_diagnostic;

typedef void (*acns_diagnostic_fn)(void *user_data, const acns_diagnostic *diagnostic);

/*
 * Validates CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy documents (YAML or JSON,
 * multi-document, kind: List) without loading them. Calls fn (may be NULL) for every error and
 * warning. Returns ACNS_OK if valid, ACNS_POLICY_INVALID if any error (err holds the first).
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_validate(const char *source_name, const char *data, size_t data_len,
                                 acns_diagnostic_fn fn, void *user_data, acns_error *err);

typedef struct acns_policy_engine acns_policy_engine;

typedef struct acns_policy_engine_opts {
  size_t struct_size;
  uint64_t max_table_bytes; /* per automaton, before splitting; 0 = 64 MiB */
} acns_policy_engine_opts;

/*
 * Creates an empty policy engine. The caller owns *out (acns_policy_engine_destroy).
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_create(const acns_policy_engine_opts *opts,
                                      acns_policy_engine **out, acns_error *err);

/* Frees an engine; NULL is fine. Thread-safety: not while other calls use it. @since 0.1 */
ACNS_API void acns_policy_engine_destroy(acns_policy_engine *engine);

/*
 * Replaces every policy previously applied under `source_name` (for example a file path) by
 * the documents in data. Atomic: invalid data changes nothing and returns ACNS_POLICY_INVALID;
 * concurrent decisions see either the old or the new policies, never a mix. fn (may be NULL)
 * receives every error and warning. Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_apply(acns_policy_engine *engine, const char *source_name,
                                     const char *data, size_t data_len, acns_diagnostic_fn fn,
                                     void *user_data, acns_error *err);

/*
 * Reads the file at `path` and applies it with the path as source name. ACNS_IO_ERROR (with
 * sys_errno) if it cannot be read. Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_apply_file(acns_policy_engine *engine, const char *path,
                                          acns_diagnostic_fn fn, void *user_data,
                                          acns_error *err);

/*
 * Removes the policies applied under `source_name`. ACNS_NOT_FOUND if there are none.
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_remove(acns_policy_engine *engine, const char *source_name,
                                      acns_error *err);

typedef struct acns_endpoint {
  size_t struct_size;
  uint64_t id;                 /* non-zero */
  const char *namespace_name;  /* may be NULL: no namespace label */
  const char *const *labels;   /* "[source:]key=value"; no source means k8s */
  size_t n_labels;
  /* @since 0.2: the endpoint's addresses (an explicit-mode proxy finds clients by them). */
  const acns_ip *ips;
  size_t n_ips;
  /* @since 0.2: the pod's host-side interface the datapath enforces on; NULL or "": none. */
  const char *interface_name;
  /* @since 0.5: the pod's name, shown in flows; NULL or "": none. */
  const char *pod_name;
} acns_endpoint;

/*
 * Registers an endpoint (a pod) or replaces its labels and addresses. Everything is copied.
 * ACNS_INVALID_ARGUMENT for id 0, a malformed label or address; ACNS_ALREADY_EXISTS if an
 * address belongs to another endpoint.
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_endpoint_upsert(acns_policy_engine *engine,
                                               const acns_endpoint *endpoint, acns_error *err);

/*
 * Replaces every registered endpoint with those of an endpoints file (acns-agent's format: a
 * YAML list of {id, name, namespace, labels: {k: v}, interface, ipv4, ipv6}). All or nothing:
 * a bad file changes nothing and returns ACNS_POLICY_INVALID with every problem sent to fn
 * ("FILE: document 0: [2].ipv4: ..."). *n_endpoints (may be NULL) receives the count.
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_policy_engine_endpoints_load_file(acns_policy_engine *engine,
                                                            const char *path,
                                                            acns_diagnostic_fn fn, void *user_data,
                                                            size_t *n_endpoints, acns_error *err);

/* Unregisters an endpoint. ACNS_NOT_FOUND if unknown. Thread-safety: any thread. @since 0.1 */
ACNS_API acns_status acns_policy_engine_endpoint_remove(acns_policy_engine *engine, uint64_t id,
                                               acns_error *err);

typedef struct acns_policy_engine_stats {
  size_t struct_size;
  uint64_t sources;  /* files or sources applied */
  uint64_t policies;
  uint64_t endpoints;
  uint64_t endpoints_with_interface; /* endpoints the datapath enforces on */
  uint64_t selectors;                /* distinct toFQDNs selectors */
} acns_policy_engine_stats;

/* Counts. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_policy_engine_stats_get(const acns_policy_engine *engine,
                                                  acns_policy_engine_stats *out, acns_error *err);

#define ACNS_PROTO_TCP 6
#define ACNS_PROTO_UDP 17

typedef struct acns_dns_query {
  size_t struct_size;
  /* The endpoint: a registered id, or (id 0) its namespace and labels. */
  uint64_t endpoint_id;
  const char *endpoint_namespace;
  const char *const *endpoint_labels;
  size_t n_endpoint_labels;
  /* The DNS server the query was sent to. */
  uint8_t server_family;   /* 4 or 6 */
  uint8_t protocol;        /* ACNS_PROTO_UDP or ACNS_PROTO_TCP */
  uint16_t server_port;    /* host byte order */
  uint8_t server_addr[16]; /* network byte order; IPv4 in the first 4 bytes */
  uint32_t pad;            /* must be 0 */
  /* Labels of the server when it is a cluster endpoint (for toEndpoints); else NULL/0. */
  const char *const *server_labels;
  size_t n_server_labels;
  /* The query name, as sent (any case, trailing dot optional). */
  const char *qname;
  size_t qname_len;
  /* @since 0.3: the server's namespace when it is a cluster endpoint (becomes its
   * io.kubernetes.pod.namespace label, as an endpoint's namespace does); NULL: none. */
  const char *server_namespace;
} acns_dns_query;

#define ACNS_VERDICT_ALLOW 1
#define ACNS_VERDICT_DENY 2

#define ACNS_REASON_ALLOWED_BY_RULE 1  /* a rule allowed it; the rule is in the decision */
#define ACNS_REASON_NOT_ENFORCED 2     /* no egress policy selects the endpoint: default allow */
#define ACNS_REASON_NO_RULE_MATCHED 3  /* denied: no rule allows the name to this server/port */
#define ACNS_REASON_UNKNOWN_ENDPOINT 4 /* denied: no endpoint registered with that id */

#define ACNS_POLICY_KIND_CNP 1   /* CiliumNetworkPolicy */
#define ACNS_POLICY_KIND_CCNP 2  /* CiliumClusterwideNetworkPolicy */

/* In: struct_size and the (buf, buf_len) pairs (NULL/0 to skip). Out: everything else. */
typedef struct acns_dns_decision {
  size_t struct_size;
  int32_t verdict;     /* ACNS_VERDICT_* */
  int32_t reason;      /* ACNS_REASON_* */
  int32_t policy_kind; /* ACNS_POLICY_KIND_*, 0 when no rule allowed it */
  int32_t pad;
  char *policy_name_buf;
  size_t policy_name_buf_len;
  size_t policy_name_needed;
  char *policy_namespace_buf; /* "" for clusterwide policies */
  size_t policy_namespace_buf_len;
  size_t policy_namespace_needed;
  char *rule_path_buf;        /* e.g. "spec.egress[0].toPorts[0].rules.dns[1]" */
  size_t rule_path_buf_len;
  size_t rule_path_needed;
} acns_dns_decision;

/*
 * Decides whether the endpoint may resolve qname through the server: a name is allowed iff an
 * egress rule selecting the endpoint has a toPorts entry covering the server's port and
 * protocol, its L3 part selects the server, and its rules.dns matches the name (or it has no
 * L7 rules). Output strings that do not fit are truncated (the *_needed fields say the full
 * size); that is not an error. Returns ACNS_OK with the decision filled in, or
 * ACNS_INVALID_ARGUMENT for a malformed query.
 * Thread-safety: safe from many threads, also during updates. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_check_dns(const acns_policy_engine *engine,
                                         const acns_dns_query *query, acns_dns_decision *decision,
                                         acns_error *err);

/* Called once per matching selector with its text (e.g. "*.cilium.io"), not NUL-terminated. */
typedef void (*acns_selector_fn)(void *user_data, const char *selector, size_t selector_len);

/*
 * Calls fn for every toFQDNs selector of the loaded policies that matches `name` (in one pass
 * of one automaton), and sets *n_matches (may be NULL). The selector text is the matchName or
 * matchPattern, lower-cased: Cilium's identity label fqdn:<selector>.
 * Thread-safety: safe from many threads, also during updates. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_match_selectors(const acns_policy_engine *engine, const char *name,
                                               size_t name_len, acns_selector_fn fn,
                                               void *user_data, size_t *n_matches,
                                               acns_error *err);

/* ---------------------------------------------------------------------------------------- */
/* FQDN cache: DNS answers -> IPs per toFQDNs selector -> node-local identities               */
/* ---------------------------------------------------------------------------------------- */

/* Delta kinds: what the datapath must apply, in sequence order. */
#define ACNS_FQDN_DELTA_IDENTITY_ADDED 1   /* identity now stands for labels */
#define ACNS_FQDN_DELTA_IP_UPSERTED 2      /* ip now has identity */
#define ACNS_FQDN_DELTA_IP_REMOVED 3       /* ip leaves the ipcache */
#define ACNS_FQDN_DELTA_IDENTITY_REMOVED 4 /* identity is used by no IP any more */
#define ACNS_FQDN_DELTA_RESYNC 5           /* deltas were lost or the cache was restored:
                                              forget what you had; the full state follows */

typedef struct acns_fqdn_delta {
  size_t struct_size;
  uint64_t seq;      /* increasing; acns_fqdn_cache_ingest returns the last one it caused */
  uint32_t kind;     /* ACNS_FQDN_DELTA_* */
  uint32_t identity; /* IDENTITY_ADDED/REMOVED, IP_UPSERTED */
  acns_ip ip;        /* IP_UPSERTED, IP_REMOVED */
  uint32_t pad;
  const char *const *labels; /* IDENTITY_ADDED: "reserved:world", "fqdn:<selector>"... */
  size_t n_labels;
} acns_fqdn_delta;

/* Receives a batch of deltas in order. Runs on the thread whose call caused them: a DNS proxy
 * worker (an answer learned), the cache's background thread (GC), the caller of
 * acns_fqdn_cache_reevaluate / _remove_endpoint / _resync / _restore, or the caller of
 * acns_fqdn_cache_drain_deltas; outside the cache's lock but under the lock that orders
 * deliveries. It may call the cache's read functions; it must not call acns_fqdn_cache_resync,
 * _drain_deltas or anything that changes the cache (they wait for that lock), nor block: a
 * proxy worker stalls while it runs. acns_node does all of this for you on a thread of its own. */
typedef void (*acns_fqdn_delta_fn)(void *user_data, const acns_fqdn_delta *const *deltas,
                                   size_t n_deltas);

/* acns_fqdn_cache_opts.flags */
#define ACNS_FQDN_CACHE_MANUAL 1 /* no background thread: the caller runs gc and save */

typedef struct acns_fqdn_cache_opts {
  size_t struct_size;
  uint32_t min_ttl_s;                       /* --tofqdns-min-ttl; default 0 */
  uint32_t max_ips_per_hostname;            /* per endpoint and name; 0 = 1000 */
  uint32_t max_deferred_connection_deletes; /* zombies per endpoint; 0 = 10000 */
  uint32_t idle_connection_grace_period_s;  /* default 0 */
  uint64_t max_entries;                     /* names + (endpoint, name, IP); 0 = 1,000,000 */
  const char *state_dir; /* snapshots go to STATE_DIR/fqdn-cache.state; NULL: none */
  uint32_t gc_interval_s;   /* background GC; 0 = 60 */
  uint32_t save_interval_s; /* at most one snapshot per interval; 0 = 5 */
  uint32_t flags;           /* ACNS_FQDN_CACHE_* */
  uint32_t pad;             /* must be 0 */
  acns_fqdn_delta_fn delta_fn; /* NULL: deltas wait for acns_fqdn_cache_drain_deltas */
  void *delta_user_data;
} acns_fqdn_cache_opts;

typedef struct acns_fqdn_cache acns_fqdn_cache;

/*
 * Creates an FQDN cache. `engine` (may be NULL: no identities) supplies the toFQDNs selectors
 * and must outlive the cache; after changing its policies call acns_fqdn_cache_reevaluate.
 * Unless ACNS_FQDN_CACHE_MANUAL, a background thread runs GC and, with a state_dir, writes
 * snapshots. Nothing is restored by creating: call acns_fqdn_cache_restore next. Background
 * saves never write over a snapshot the cache has not restored (since 0.4), until
 * acns_fqdn_cache_save wrote one.
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_create(const acns_fqdn_cache_opts *opts,
                                            const acns_policy_engine *engine,
                                            acns_fqdn_cache **out, acns_error *err);

/* Frees the cache; NULL is fine. Unless ACNS_FQDN_CACHE_MANUAL, first stops the background
 * thread and, with a state_dir, writes a last snapshot if anything changed since the last one. Thread-safety: not while other calls use it.
 * @since 0.2 */
ACNS_API void acns_fqdn_cache_destroy(acns_fqdn_cache *cache);

typedef struct acns_dns_answer {
  size_t struct_size;
  uint64_t endpoint_id; /* 0: the node itself */
  const char *qname;    /* the queried name (any case, trailing dot optional) */
  size_t qname_len;
  const acns_ip *ips;   /* every A/AAAA address of the answer, through CNAMEs */
  size_t n_ips;
  uint32_t ttl_s;       /* minimum over the answer's A/AAAA/CNAME records */
  uint32_t pad;         /* must be 0 */
  int64_t now;          /* Unix seconds; 0 = the current time */
} acns_dns_answer;

/*
 * Learns a DNS answer: TTL raised to min_ttl, at most max_ips_per_hostname per (endpoint, name)
 * (the earliest expiring become zombies), least recently looked-up names evicted past
 * max_entries. *seq (may be NULL) is the sequence number of the last delta this caused (or the
 * current one): once the datapath applied it, the answer's IPs are enforced.
 * ACNS_INVALID_ARGUMENT for an empty or over-long name or a bad address; ACNS_RESOURCE_EXHAUSTED
 * (nothing learned) for an answer of a 4,097th endpoint while 4,096 others hold answers.
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_ingest(acns_fqdn_cache *cache, const acns_dns_answer *answer,
                                            uint64_t *seq, acns_error *err);

#define ACNS_FQDN_ANY_ENDPOINT UINT64_MAX

typedef struct acns_fqdn_lease {
  size_t struct_size;
  acns_ip ip;
  uint32_t zombie;      /* 1: expired, kept while connections may use it */
  uint64_t endpoint_id;
  int64_t expires;      /* Unix seconds; for a zombie, when it may be deleted if idle */
  int64_t alive_at;     /* zombies: last time the datapath reported it in use; else 0 */
  uint32_t ttl_s;
  uint32_t pad;
} acns_fqdn_lease;

/*
 * The (endpoint, IP) leases of `name` for one endpoint or ACNS_FQDN_ANY_ENDPOINT. Writes up to
 * `cap` leases of `lease_size` bytes each (pass sizeof(acns_fqdn_lease)) into out and sets
 * *needed to the number there are; a short array is not an error.
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_lookup_name(const acns_fqdn_cache *cache, const char *name,
                                                 uint64_t endpoint_id, acns_fqdn_lease *out,
                                                 size_t lease_size, size_t cap, size_t *needed,
                                                 acns_error *err);

/*
 * What the cache knows of an IP: *identity (0: not in the ipcache) and its names, sorted, one
 * per line, as a string out (buf may be NULL with buf_len 0 to ask the size).
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_lookup_ip(const acns_fqdn_cache *cache, const acns_ip *ip,
                                               uint32_t *identity, char *names_buf,
                                               size_t names_buf_len, size_t *names_needed,
                                               acns_error *err);

/*
 * The datapath saw connections to `ip` from endpoint_id (or ACNS_FQDN_ANY_ENDPOINT) at `at`
 * (Unix seconds, 0 = now): a zombie for it is kept. Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_mark_alive(acns_fqdn_cache *cache, uint64_t endpoint_id,
                                                const acns_ip *ip, int64_t at, acns_error *err);

/*
 * The datapath finished a pass over its connections begun at `started_at` (Cilium's conntrack
 * GC), having marked alive every IP it found. From the first such report on, a zombie is
 * deleted only when a pass begun after it became a zombie did not see it within the idle grace
 * period; without reports, when it was not marked alive within the grace period before the GC.
 * Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_end_alive_sweep(acns_fqdn_cache *cache, int64_t started_at,
                                                     acns_error *err);

typedef struct acns_fqdn_gc_result {
  size_t struct_size;
  uint64_t expired;            /* leases whose TTL ran out (they became zombies) */
  uint64_t zombies_deleted;    /* idle zombies deleted */
  uint64_t zombies_over_limit; /* deleted past max_deferred_connection_deletes */
  uint64_t names_removed;
} acns_fqdn_gc_result;

/* Runs a GC now (`now` Unix seconds, 0 = now); out may be NULL. Thread-safety: any thread.
 * @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_gc(acns_fqdn_cache *cache, int64_t now,
                                        acns_fqdn_gc_result *out, acns_error *err);

/* Matches every cached name against the engine's current selectors again; call after applying
 * or removing policies. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_reevaluate(acns_fqdn_cache *cache, acns_error *err);

/* Makes the next deltas a resync followed by the full state (ACNS_FQDN_DELTA_RESYNC): for a
 * datapath that starts after the cache or failed a write. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_resync(acns_fqdn_cache *cache, acns_error *err);

/* Forgets the leases and zombies of an endpoint. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_remove_endpoint(acns_fqdn_cache *cache, uint64_t endpoint_id,
                                                     acns_error *err);

/* Calls fn (once, with every waiting delta) when no delta_fn was given at creation; sets
 * *n_deltas (may be NULL). Thread-safety: any thread; batches never interleave. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_drain_deltas(acns_fqdn_cache *cache, acns_fqdn_delta_fn fn,
                                                  void *user_data, size_t *n_deltas,
                                                  acns_error *err);

/* Writes the snapshot now (atomically: temp file, fsync, rename). ACNS_FAILED_PRECONDITION
 * without a state_dir, ACNS_IO_ERROR with sys_errno on failure. Thread-safety: any thread.
 * @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_save(acns_fqdn_cache *cache, acns_error *err);

/*
 * Replaces the cache's content with the snapshot in state_dir (NULL: the one in the options),
 * at time `now` (0 = now): identities keep their numbers for the selector sets that still
 * exist, leases that expired meanwhile become zombies, and a RESYNC delta followed by the full
 * state goes to the datapath. ACNS_NOT_FOUND if there is no snapshot; ACNS_DATA_LOSS if it is
 * corrupt or truncated (the cache is left as it was). Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_restore(acns_fqdn_cache *cache, const char *state_dir,
                                             int64_t now, acns_error *err);

/*
 * Loads a pre-cache file in Cilium's `cilium-dbg fqdn cache list -o json` format (a JSON array
 * of {fqdn, ips, ttl, lookup-time, expiration-time[, endpoint-id]}); entries already expired
 * at `now` (0 = now) are skipped. All or nothing: ACNS_INVALID_ARGUMENT names the first bad
 * item. *n_leases (may be NULL) receives the (name, IP) pairs added. @since 0.2
 */
ACNS_API acns_status acns_fqdn_cache_precache_load(acns_fqdn_cache *cache, const char *path,
                                                   int64_t now, size_t *n_leases,
                                                   acns_error *err);

#define ACNS_FQDN_LIST_JSON 1  /* the pre-cache format above */
#define ACNS_FQDN_LIST_TABLE 2 /* columns like `cilium-dbg fqdn cache list` */

/* The whole cache, most recently looked-up names first, one entry per (endpoint, name, expiry);
 * zombies have source "connection", live leases "lookup". A string out.
 * ACNS_INVALID_ARGUMENT for an unknown format. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_list(const acns_fqdn_cache *cache, uint32_t format, char *buf,
                                          size_t buf_len, size_t *needed, acns_error *err);

typedef struct acns_fqdn_cache_stats {
  size_t struct_size;
  uint64_t names;
  uint64_t leases;   /* live and zombie (endpoint, name, IP) */
  uint64_t zombies;  /* (endpoint, IP) */
  uint64_t ips;
  uint64_t identities;
  uint64_t entries;  /* names + leases, against max_entries */
  uint64_t lru_evictions;
  uint64_t ip_limit_evictions;
  uint64_t zombie_limit_evictions;
  uint64_t identity_exhausted;
  uint64_t last_seq;
} acns_fqdn_cache_stats;

/* Counters and sizes. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_fqdn_cache_stats_get(const acns_fqdn_cache *cache,
                                               acns_fqdn_cache_stats *out, acns_error *err);

/* ---------------------------------------------------------------------------------------- */
/* DNS proxy (explicit mode over UDP; more modes to come)                                    */
/* ---------------------------------------------------------------------------------------- */

#define ACNS_DNS_RCODE_NXDOMAIN 3
#define ACNS_DNS_RCODE_REFUSED 5

/* acns_dns_proxy_opts.flags */
#define ACNS_DNS_PROXY_ALLOW_UNKNOWN_ENDPOINTS 1 /* forward queries of unknown clients unchecked */
#define ACNS_DNS_PROXY_WAIT_FOR_ACK 2 /* hold answers until acns_dns_proxy_ack covers them */
/* @since 0.2: epoll and plain system calls only, even where io_uring is available */
#define ACNS_DNS_PROXY_NO_IO_URING 4
/* @since 0.2: UDP queries go to every worker at any load (default: to as few workers as the
 * load needs, more as soon as they get busy) */
#define ACNS_DNS_PROXY_ALL_WORKERS 8
/* @since 0.4: forwarded names keep the client's case (default: DNS 0x20, a random case that a
 * UDP reply must repeat, else the query goes again over TCP) */
#define ACNS_DNS_PROXY_NO_CASE_RANDOMIZATION 16

#define ACNS_DNS_EVENT_REQUEST 1  /* a query was received and decided */
#define ACNS_DNS_EVENT_RESPONSE 2 /* the client was answered */

#define ACNS_DNS_VERDICT_FORWARDED 1 /* allowed and sent upstream */
#define ACNS_DNS_VERDICT_DENIED 2    /* refused by policy; nothing sent upstream */
#define ACNS_DNS_VERDICT_ERROR 3     /* answered SERVFAIL by the proxy (unknown endpoint, limit,
                                        upstream failure or timeout) */

/* One event of the DNS proxy, for flows and metrics. Pointers are valid during the callback. */
typedef struct acns_dns_event {
  size_t struct_size;
  uint32_t type;        /* ACNS_DNS_EVENT_* */
  uint32_t verdict;     /* ACNS_DNS_VERDICT_* */
  uint64_t endpoint_id; /* 0: no known endpoint */
  acns_ip client;
  uint16_t client_port;
  uint16_t server_port;
  acns_ip server;       /* the upstream */
  uint8_t protocol;     /* ACNS_PROTO_UDP or ACNS_PROTO_TCP */
  uint8_t rcode;        /* responses */
  uint16_t qtype;
  const char *qname;    /* as asked (the client's case, trailing dot), qname_len bytes */
  size_t qname_len;
  const acns_ip *ips;   /* responses: the A/AAAA addresses learned */
  size_t n_ips;
  uint32_t ttl_s;
  uint32_t pad;
  const char *const *cnames; /* responses: the CNAME chain followed */
  size_t n_cnames;
  uint64_t upstream_latency_ns; /* responses: sent upstream -> reply (0: not forwarded) */
  uint64_t hold_latency_ns;     /* reply -> released after the datapath's ack */
  uint64_t total_latency_ns;    /* received -> answered */
} acns_dns_event;

/* Called on the proxy's worker threads, for every query: it must not block (the worker and
 * every query it holds wait) and must not destroy the proxy. acns_node queues these events for
 * polling instead (acns_node_poll_events). */
typedef void (*acns_dns_event_fn)(void *user_data, const acns_dns_event *event);

typedef struct acns_dns_proxy_opts {
  size_t struct_size;
  const char *const *listen; /* "ADDR:PORT" or "[ADDR]:PORT"; port 0 picks one */
  size_t n_listen;
  const char *upstream;      /* "ADDR:PORT" */
  uint32_t workers;          /* 0: one per CPU the calling thread may use:
                                its affinity, capped by its cgroup's CPU quota */
  uint32_t deny_rcode;       /* 0 = ACNS_DNS_RCODE_REFUSED, or ACNS_DNS_RCODE_NXDOMAIN */
  uint32_t flags;            /* ACNS_DNS_PROXY_* */
  uint32_t upstream_timeout_ms;   /* 0 = 5000 */
  uint32_t response_max_delay_ms; /* 0 = 100 */
  uint32_t concurrency_limit;     /* queries in flight; 0 = no limit */
  /* Labels of the upstream when it is a cluster endpoint (for toEndpoints rules); may be 0. */
  const char *upstream_namespace;
  const char *const *upstream_labels;
  size_t n_upstream_labels;
  acns_dns_event_fn event_fn; /* may be NULL */
  void *event_user_data;
  /* @since 0.2: transparent mode, "127.0.0.1:PORT" and/or "[::1]:PORT" (the datapath's
   * acns_datapath_opts.transparent_dns_port): queries the datapath redirects there go to the
   * server they were sent to, and are answered from its address. Needs CAP_NET_ADMIN. With
   * these, listen and upstream may be left empty. */
  const char *const *transparent_listen;
  size_t n_transparent_listen;
} acns_dns_proxy_opts;

typedef struct acns_dns_proxy acns_dns_proxy;

/*
 * Binds the listen addresses and starts the proxy's worker threads. Clients are found by the
 * addresses registered with the engine (acns_endpoint.ips). Learned answers go to `cache` (may
 * be NULL). `engine` and `cache` must outlive the proxy. ACNS_INVALID_ARGUMENT for bad options,
 * ACNS_IO_ERROR (sys_errno) if an address cannot be bound.
 * Thread-safety: safe from any thread. @since 0.2
 */
ACNS_API acns_status acns_dns_proxy_create(const acns_dns_proxy_opts *opts,
                                           const acns_policy_engine *engine,
                                           acns_fqdn_cache *cache, acns_dns_proxy **out,
                                           acns_error *err);

/* Stops the workers (queries in flight are dropped) and frees the proxy; NULL is fine.
 * Thread-safety: not while other calls use it. @since 0.2 */
ACNS_API void acns_dns_proxy_destroy(acns_dns_proxy *proxy);

/* The datapath applied every FQDN cache delta up to `seq`: held answers up to it are released.
 * Thread-safety: safe from any thread (e.g. the delta callback). @since 0.2 */
ACNS_API acns_status acns_dns_proxy_ack(acns_dns_proxy *proxy, uint64_t seq, acns_error *err);

/* The address listen[index] is bound to (a port 0 resolved), as a string out.
 * ACNS_NOT_FOUND past the last. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_dns_proxy_listen_address(const acns_dns_proxy *proxy, size_t index,
                                                   char *buf, size_t buf_len, size_t *needed,
                                                   acns_error *err);

typedef struct acns_dns_proxy_stats {
  size_t struct_size;
  uint64_t queries;
  uint64_t allowed;
  uint64_t denied;
  uint64_t malformed;
  uint64_t unknown_endpoint;
  uint64_t upstream_failures; /* answered SERVFAIL */
  uint64_t upstream_timeouts;
  uint64_t concurrency_limited;
  uint64_t rejected_replies;  /* wrong ID or question: dropped */
  uint64_t answers_learned;
  uint64_t held_released_late;
  uint64_t answers_not_learned; /* the FQDN cache refused them (more endpoints than it holds) */
  uint32_t workers;             /* worker threads */
  uint32_t active_workers;      /* of them, those taking UDP queries now (ACNS_DNS_PROXY_ALL_WORKERS) */
  /* @since 0.4 */
  uint64_t case_mismatches;       /* UDP replies that lost the 0x20 case: dropped */
  uint64_t tcp_fallbacks;         /* UDP exchanges asked again over TCP after a rejected reply */
  uint64_t tcp_connections;       /* client TCP connections open now */
  uint64_t tcp_refused;           /* client TCP connections closed at accept: over a limit */
  uint64_t tcp_idle_closed;       /* closed after completing no query for the idle time */
  uint64_t descriptors_exhausted; /* queries answered SERVFAIL: no descriptor left */
} acns_dns_proxy_stats;

/* Counters. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_dns_proxy_stats_get(const acns_dns_proxy *proxy,
                                              acns_dns_proxy_stats *out, acns_error *err);

/* ---------------------------------------------------------------------------------------- */
/* Datapath: eBPF enforcement on pods' host-side veths, pinned Cilium-layout maps              */
/* ---------------------------------------------------------------------------------------- */

typedef struct acns_datapath_opts {
  size_t struct_size;
  const char *bpffs_dir; /* NULL: "/sys/fs/bpf/acns"; a bpffs is mounted there if none is */
  /* "ADDR:PORT" of the explicit-mode DNS proxy, as bound (port 0 is refused: it would open every
   * port of the host): reserved:host in the ipcache, and reachable (UDP and TCP) by every
   * endpoint whose rules have rules.dns. */
  const char *const *dns_proxy;
  size_t n_dns_proxy;
  /* Transparent mode: DNS under rules.dns is redirected (bpf_sk_assign) to the proxy's
   * transparent sockets on 127.0.0.1 and ::1 at this port; a routing rule (fwmark 0xac5000/
   * 0xfff000 -> table 2757, local default) is added. 0: off. */
  uint16_t transparent_dns_port;
} acns_datapath_opts;

typedef struct acns_datapath acns_datapath;

/*
 * Creates the datapath of this node: creates or adopts the pinned shared maps under bpffs_dir.
 * Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN to mount). `engine` supplies endpoints (with
 * their interface) and rules, and must outlive the datapath. Errors carry the kernel's message
 * (and verifier log). Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_datapath_create(const acns_datapath_opts *opts, acns_policy_engine *engine,
                                          acns_datapath **out, acns_error *err);

/* Frees the handle. Programs stay attached and maps pinned: enforcement continues, and the next
 * acns_datapath_create adopts them. NULL is a no-op. @since 0.2 */
ACNS_API void acns_datapath_destroy(acns_datapath *datapath);

/*
 * Brings interfaces and policy maps in line with the engine (call after loading policies or
 * endpoints): endpoints with an interface get the programs, gone ones are detached and their
 * pins removed, every policy map is reconciled (only differences written). An error names
 * each endpoint that failed; the others are synced. Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_datapath_sync(acns_datapath *datapath, acns_error *err);

/*
 * Applies FQDN cache deltas in order (policy entries for new identities, then the ipcache, then
 * removals). *applied_seq (may be NULL) receives the last sequence number written: acknowledge
 * the DNS proxy with it. After an error, ask the cache for a resync (acns_fqdn_cache_resync).
 * Thread-safety: any thread (serialised inside). @since 0.2
 */
ACNS_API acns_status acns_datapath_apply_deltas(acns_datapath *datapath,
                                                const acns_fqdn_delta *const *deltas, size_t n,
                                                uint64_t *applied_seq, acns_error *err);

typedef struct acns_datapath_stats {
  size_t struct_size;
  uint64_t endpoints;        /* with programs attached */
  uint64_t fqdn_identities;
  uint64_t policy_written;   /* policy map entries added or changed */
  uint64_t policy_deleted;
  uint64_t ipcache_written;
  uint64_t ipcache_deleted;
  uint64_t sync_failures;
  uint64_t delta_failures;
  uint64_t events_lost;        /* the event ring was full */
  uint64_t largest_policy_map; /* entries in the fullest endpoint policy map */
  uint64_t policy_map_capacity; /* entries a policy map can hold */
  uint64_t endpoint_identities; /* one per distinct endpoint label set (toEndpoints) */
  uint64_t cidr_identities;     /* one per policy prefix (toCIDR) */
  uint64_t ipcache_entries;     /* counted by the last acns_datapath_sweep_connections */
  uint64_t ipcache_capacity;
} acns_datapath_stats;

/* Counters. Thread-safety: any thread. @since 0.2 */
ACNS_API acns_status acns_datapath_stats_get(const acns_datapath *datapath, acns_datapath_stats *out,
                                             acns_error *err);

/* Packet verdicts of the datapath (events and counters). */
#define ACNS_PKT_VERDICT_ALLOW 1       /* a new flow a policy entry allows */
#define ACNS_PKT_VERDICT_DROP_POLICY 3 /* dropped: no entry allows it, or a deny entry */
#define ACNS_PKT_VERDICT_REDIRECT 4    /* a new flow sent to the DNS proxy */

typedef struct acns_datapath_event {
  size_t struct_size;
  uint64_t time_ns;   /* CLOCK_MONOTONIC */
  uint32_t ifindex;   /* the pod's host-side interface */
  uint32_t identity;  /* of the destination (2: world) */
  uint32_t verdict;   /* ACNS_PKT_VERDICT_* */
  uint32_t protocol;  /* IPPROTO_* */
  acns_ip src;
  acns_ip dst;
  uint16_t src_port;  /* ICMP: the echo identifier */
  uint16_t dst_port;
  uint32_t bytes;     /* the packet's length */
} acns_datapath_event;

typedef void (*acns_datapath_event_fn)(void *user_data, const acns_datapath_event *event);

/*
 * Delivers the datapath's waiting events (a verdict per new flow, one per dropped packet) to fn,
 * waiting up to timeout_ms (0: not at all) for the first. *n_events (may be NULL) gets how many.
 * Events the full ring could not take are counted in acns_datapath_stats.events_lost.
 * Thread-safety: one caller at a time (others wait). @since 0.2
 */
ACNS_API acns_status acns_datapath_poll_events(acns_datapath *datapath, acns_datapath_event_fn fn,
                                               void *user_data, int timeout_ms, size_t *n_events,
                                               acns_error *err);

typedef struct acns_datapath_sweep_result {
  size_t struct_size;
  uint64_t flows;   /* in the connection table */
  uint64_t alive;   /* marked alive in the cache */
  uint64_t deleted; /* idle past their timeout (TCP 6 h, others 60 s) */
} acns_datapath_sweep_result;

/*
 * Walks the connection table: the remote address of every live flow is marked alive in `cache`
 * (may be NULL) for its pod's endpoint, then acns_fqdn_cache_end_alive_sweep: an expired name's
 * IP stays enforceable while a connection uses it. Idle flows are deleted. Call it regularly
 * (the agent: every 30 s). out may be NULL. Thread-safety: any thread. @since 0.2
 */
ACNS_API acns_status acns_datapath_sweep_connections(acns_datapath *datapath, acns_fqdn_cache *cache,
                                                     acns_datapath_sweep_result *out, acns_error *err);

#define ACNS_MAP_IPCACHE 1 /* the shared ipcache */
#define ACNS_MAP_POLICY 2  /* one endpoint's policy map */
#define ACNS_MAP_DUMP_JSON 1
#define ACNS_MAP_DUMP_TABLE 2

/*
 * Reads a pinned map under bpffs_dir (NULL: "/sys/fs/bpf/acns") and writes it as text: the
 * ipcache (prefix, identity) or the policy map of endpoint_id (verdict, direction, identity,
 * ports, proxy port). Needs no datapath handle and no running agent. A string out.
 * ACNS_NOT_FOUND (with errno) when the map is not pinned there. Thread-safety: any. @since 0.2
 */
ACNS_API acns_status acns_datapath_map_dump(const char *bpffs_dir, uint32_t map, uint64_t endpoint_id,
                                            uint32_t format, char *buf, size_t buf_len, size_t *needed,
                                            acns_error *err);

/* ---------------------------------------------------------------------------------------- */
/* Node runtime: the whole pipeline (policy engine, FQDN cache, DNS proxy, datapath) in one   */
/* handle (@since 0.3). See docs/embedding.md.                                                */
/* ---------------------------------------------------------------------------------------- */

/* The runtime's own threads:
 * - the applier takes the FQDN cache's deltas, writes them to the datapath and releases the
 *   answers the DNS proxy holds for them (answers wait until their IPs are enforced, at most
 *   response_max_delay_ms; a failed write is retried with the cache's full state);
 * - the control thread syncs the datapath after endpoint and policy changes (the datapath
 *   starts with the first endpoint that names an interface) and sweeps its connections;
 * - a maintainer runs the cache's GC and snapshots (state_dir), an event reader takes the
 *   datapath's events, and a log thread calls log_fn.
 * Nothing of the embedder's runs on a DNS worker: events are polled (acns_node_poll_events). */

typedef struct acns_node acns_node;

#define ACNS_LOG_ERROR 1
#define ACNS_LOG_WARNING 2
#define ACNS_LOG_INFO 3

/* A runtime message (a failed snapshot, a datapath error, a recovery), each once per change of
 * state. Runs on the runtime's log thread, one message at a time: it may call any acns_node_*
 * function of the node except acns_node_destroy; while it blocks, only later messages wait
 * (1,024 are kept, then they are counted in acns_node_stats.log_lost). `message` is valid
 * during the call. */
typedef void (*acns_log_fn)(void *user_data, int32_t level, const char *message);

/* acns_node_opts.flags */
#define ACNS_NODE_NO_DATAPATH 1        /* no eBPF (and no transparent DNS): the proxy only */
#define ACNS_NODE_NO_WAIT_FOR_ACK 2    /* answers go out before their IPs are enforced */
#define ACNS_NODE_DNS_NO_IO_URING 4    /* as ACNS_DNS_PROXY_NO_IO_URING */
#define ACNS_NODE_DNS_ALL_WORKERS 8    /* as ACNS_DNS_PROXY_ALL_WORKERS */
#define ACNS_NODE_ALLOW_UNKNOWN_ENDPOINTS 16 /* as ACNS_DNS_PROXY_ALLOW_UNKNOWN_ENDPOINTS */
#define ACNS_NODE_NO_DNS_EVENTS 32     /* queue datapath events only */
#define ACNS_NODE_NO_DATAPATH_EVENTS 64 /* queue DNS events only */
#define ACNS_NODE_DNS_NO_CASE_RANDOMIZATION 128 /* as ACNS_DNS_PROXY_NO_CASE_RANDOMIZATION; @since 0.4 */

typedef struct acns_node_opts {
  size_t struct_size;
  uint32_t flags;        /* ACNS_NODE_* */
  uint32_t dns_workers;  /* 0: one per CPU the calling thread may use */
  /* Explicit DNS proxy: "ADDR:PORT" (port 0 picks one, before the datapath starts) and the
   * server it forwards to. May be empty: with the datapath, pods' DNS under rules.dns is
   * redirected to the proxy anyway. */
  const char *const *dns_listen;
  size_t n_dns_listen;
  const char *dns_upstream;
  uint32_t deny_rcode;            /* 0 = ACNS_DNS_RCODE_REFUSED, or ACNS_DNS_RCODE_NXDOMAIN */
  uint32_t upstream_timeout_ms;   /* 0 = 5000 */
  uint32_t response_max_delay_ms; /* 0 = 100 (Cilium's --tofqdns-proxy-response-max-delay) */
  uint32_t concurrency_limit;     /* queries in flight; 0 = no limit */
  /* FQDN cache, as acns_fqdn_cache_opts */
  uint32_t min_ttl_s;
  uint32_t max_ips_per_hostname;
  uint32_t max_deferred_connection_deletes;
  uint32_t idle_connection_grace_period_s;
  uint64_t max_entries;
  /* Snapshots of the cache (restored by acns_node_start) and the transparent proxy's port.
   * Created if missing; a directory that cannot be written fails acns_node_create. NULL: none. */
  const char *state_dir;
  uint32_t gc_interval_s;   /* 0 = 60 */
  uint32_t save_interval_s; /* 0 = 5 */
  const char *bpffs_dir;    /* NULL: "/sys/fs/bpf/acns" (a bpffs is mounted at /sys/fs/bpf if none is) */
  /* Where the datapath redirects pods' DNS (127.0.0.1 and ::1). 0: the last run's (state_dir),
   * else one the kernel picks. */
  uint16_t transparent_dns_port;
  uint16_t pad16;               /* must be 0 */
  uint32_t sweep_interval_s;    /* connection sweeps; 0 = 30 */
  uint32_t event_queue_capacity; /* events kept for acns_node_poll_events; 0: none are kept */
  uint32_t pad;                 /* must be 0 */
  acns_log_fn log_fn;           /* may be NULL */
  void *log_user_data;
  /* Labels of dns_upstream when it is a cluster endpoint (for toEndpoints rules); may be 0. */
  const char *upstream_namespace;
  const char *const *upstream_labels;
  size_t n_upstream_labels;
  /* @since 0.4: the DNS proxy's TCP clients. Connections open at once (0 = 1024) and from one
   * client address (0 = 64); past either, a new one is accepted and closed. A connection that
   * completes no query and takes no answer for tcp_idle_timeout_ms (0 = 10000) is closed: bytes
   * trickling in do not count. */
  uint32_t max_tcp_connections;
  uint32_t max_tcp_connections_per_client;
  uint32_t tcp_idle_timeout_ms;
  /* Descriptors the proxy holds at most for client connections and upstream sockets, so that a
   * flood leaves the rest of the process some; 0 = three quarters of RLIMIT_NOFILE at start. */
  uint32_t max_descriptors;
  /* @since 0.5: Hubble flows. The node turns its DNS and datapath events into Hubble flow
   * records and keeps the last flow_capacity of them (0: none; Hubble's default is 4095);
   * hubble_listen_address ("ADDR:PORT", "[::]:4244", "unix:PATH"; NULL: not served) serves
   * Hubble's Observer and Peer gRPC services over them, for `hubble observe`, `hubble status`
   * and Hubble Relay. node_name names the node in flows (NULL: the host name). */
  uint32_t flow_capacity;
  uint32_t pad2;                /* must be 0 */
  const char *hubble_listen_address;
  const char *node_name;
  /* @since 0.6: the flow log file, as Cilium's Hubble exporter writes it: every flow record
   * (and lost-event notice) a line of protojson (GetFlowsResponse, proto field names). NULL:
   * none; needs flow_capacity. When the next line would take it past flow_log_max_size_mb
   * (0 = 10) it is renamed NAME-<UTC time>.EXT and a new file started; flow_log_max_backups
   * (0 = 5) are kept. flow_log_allowlist / _denylist: comma-separated FlowFilter JSON objects
   * ({"source_pod":["default/"]},...) selecting the flows written (NULL: all). */
  const char *flow_log_path;
  uint32_t flow_log_max_size_mb;
  uint32_t flow_log_max_backups;
  const char *flow_log_allowlist;
  const char *flow_log_denylist;
} acns_node_opts;

/*
 * Creates a node runtime: checks the options and the state directory; nothing runs and no
 * socket is bound until acns_node_start. Load policies and endpoints in between, so that the
 * proxy starts with them. ACNS_INVALID_ARGUMENT for bad options, ACNS_FAILED_PRECONDITION for
 * an unusable state directory. The caller owns *out (acns_node_destroy).
 * Thread-safety: any thread. @since 0.3
 */
ACNS_API acns_status acns_node_create(const acns_node_opts *opts, acns_node **out, acns_error *err);

/*
 * Syncs the datapath (started if an endpoint names an interface; needs root), restores the
 * cache from state_dir (a corrupt snapshot is moved aside as fqdn-cache.state.corrupt-TIME and
 * reported; the cache starts empty), then starts the threads and the DNS proxy. Errors carry
 * the kernel's or the socket's message. ACNS_FAILED_PRECONDITION if started already, or if the
 * datapath cannot start at all while an endpoint names an interface (nothing would enforce); a
 * later sync that fails (an interface not there yet) is logged and retried every 5 s.
 * Thread-safety: any thread, once. @since 0.3
 */
ACNS_API acns_status acns_node_start(acns_node *node, acns_error *err);

/*
 * Stops in a safe order (the applier, the DNS proxy: queries in flight are dropped, the other
 * threads, a last snapshot) and frees the node; NULL is fine. Programs and pinned maps stay:
 * enforcement goes on, and the next runtime adopts them. Thread-safety: not while other calls
 * use the node, and never from inside log_fn. @since 0.3
 */
ACNS_API void acns_node_destroy(acns_node *node);

/*
 * Replaces the policies applied under source_name by the documents in data (as
 * acns_policy_engine_apply), then re-matches the cached names and schedules a datapath sync.
 * Invalid data changes nothing: ACNS_POLICY_INVALID, every problem to fn (may be NULL).
 * Thread-safety: any thread. @since 0.3
 */
ACNS_API acns_status acns_node_policy_apply(acns_node *node, const char *source_name, const char *data,
                                            size_t data_len, acns_diagnostic_fn fn, void *user_data,
                                            acns_error *err);

/* The file at path, with the path as source name; ACNS_IO_ERROR (sys_errno) if it cannot be
 * read. Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_policy_apply_file(acns_node *node, const char *path, acns_diagnostic_fn fn,
                                                 void *user_data, acns_error *err);

/* Removes the policies of source_name (ACNS_NOT_FOUND if none), as acns_node_policy_apply.
 * Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_policy_remove(acns_node *node, const char *source_name, acns_error *err);

/* Registers or replaces an endpoint (as acns_policy_engine_endpoint_upsert) and schedules a
 * datapath sync (its interface gets the programs). Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_endpoint_upsert(acns_node *node, const acns_endpoint *endpoint,
                                               acns_error *err);

/* Unregisters an endpoint: its cache leases go at once, its programs and pins with the next
 * sync. ACNS_NOT_FOUND if unknown. Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_endpoint_remove(acns_node *node, uint64_t id, acns_error *err);

/*
 * The addresses behind one of Cilium's reserved entities, which only the embedder knows:
 * "host" (this node's addresses), "remote-node" (the other nodes'), "kube-apiserver", "health",
 * "ingress". Replaces that entity's list (n_ips 0 empties it). toEntities rules select DNS
 * servers and datapath peers by them, with Cilium's identities (host 1, health 4,
 * remote-node 6, kube-apiserver 7, ingress 8); `cluster` covers all but kube-apiserver, `world`
 * none, and toCIDR never selects host, remote-node, health or ingress addresses.
 * ACNS_INVALID_ARGUMENT for another entity or a bad address; ACNS_ALREADY_EXISTS if an
 * address is an endpoint's. Thread-safety: any thread. @since 0.5
 */
ACNS_API acns_status acns_node_set_reserved_addresses(acns_node *node, const char *entity, const acns_ip *ips,
                                                      size_t n_ips, acns_error *err);

/* Replaces every endpoint with those of an endpoints file (acns-agent's format), all or
 * nothing, as acns_policy_engine_endpoints_load_file; endpoints that left lose their leases.
 * Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_endpoints_load_file(acns_node *node, const char *path, acns_diagnostic_fn fn,
                                                   void *user_data, size_t *n_endpoints, acns_error *err);

/*
 * Waits up to timeout_ms until the datapath has every endpoint and policy change made before
 * the call (a CNI's ADD returns once the pod is enforced). Returns the last sync's outcome (an
 * error names each endpoint that failed), ACNS_UNAVAILABLE on timeout, ACNS_FAILED_PRECONDITION
 * before acns_node_start. Thread-safety: any thread. @since 0.3
 */
ACNS_API acns_status acns_node_wait_synced(acns_node *node, uint32_t timeout_ms, acns_error *err);

#define ACNS_NODE_EVENT_DNS 1      /* dns is set */
#define ACNS_NODE_EVENT_DATAPATH 2 /* datapath is set */

typedef struct acns_node_event {
  size_t struct_size;
  uint32_t kind; /* ACNS_NODE_EVENT_* */
  uint32_t pad;
  const acns_dns_event *dns;
  const acns_datapath_event *datapath;
} acns_node_event;

/* Runs on the thread that called acns_node_poll_events; the event is valid during the call. */
typedef void (*acns_node_event_fn)(void *user_data, const acns_node_event *event);

/*
 * Hands up to max_events queued events (DNS queries and answers, datapath verdicts), oldest
 * first, to fn on the calling thread, waiting up to timeout_ms for the first; *n_events (may be
 * NULL) gets how many. Events that found the queue full are counted in
 * acns_node_stats.events_lost. fn may call any acns_node_* function except acns_node_destroy.
 * Thread-safety: any thread; concurrent callers share the events. @since 0.3
 */
ACNS_API acns_status acns_node_poll_events(acns_node *node, acns_node_event_fn fn, void *user_data,
                                           size_t max_events, uint32_t timeout_ms, size_t *n_events,
                                           acns_error *err);

typedef struct acns_node_stats {
  size_t struct_size;
  uint32_t started;
  uint32_t datapath_started;
  uint32_t transparent_dns_port; /* 0: no datapath */
  uint32_t save_failing;         /* 1: the last snapshot attempt failed */
  uint64_t delta_batches;        /* cache delta batches the datapath applied */
  uint64_t apply_failures;       /* batches it failed (then the full state is written again) */
  uint64_t acked_seq;            /* answers waiting for deltas up to this are released */
  uint64_t syncs;
  uint64_t sync_failures;
  uint64_t sync_generation;      /* endpoint and policy changes made */
  uint64_t synced_generation;    /* of them, those the datapath has */
  uint64_t sweeps;
  uint64_t sweep_failures;
  uint64_t saves;                /* snapshots written */
  uint64_t save_failures;
  uint64_t events_delivered;     /* handed to acns_node_poll_events callers */
  uint64_t events_lost;          /* the event queue was full */
  uint64_t log_lost;             /* log_fn was behind by 1,024 messages */
  uint64_t datapath_allowed;     /* datapath events: new flows allowed */
  uint64_t datapath_redirected;  /* new flows sent to the DNS proxy */
  uint64_t datapath_dropped;     /* packets dropped by policy */
  /* @since 0.5: Hubble flows built, and events lost on their way: the flow builder's queue
   * was full, or the datapath's ring buffer (counted in the kernel). */
  uint64_t flows;
  uint64_t flows_queue_lost;
  uint64_t flows_kernel_lost;
} acns_node_stats;

/*
 * The runtime's counters and, for each pointer that is not NULL, its components': the DNS
 * proxy's (zeros before start), the FQDN cache's, the datapath's (zeros until it started).
 * Each struct's struct_size must be set. Thread-safety: any thread. @since 0.3
 */
ACNS_API acns_status acns_node_stats_get(const acns_node *node, acns_node_stats *out,
                                         acns_dns_proxy_stats *proxy, acns_fqdn_cache_stats *cache,
                                         acns_datapath_stats *datapath, acns_error *err);

/*
 * The FQDN cache as text in one consistent listing (ACNS_FQDN_LIST_JSON or _TABLE, as
 * acns_fqdn_cache_list): *out is allocated by the library, NUL-terminated, *out_len bytes
 * without the NUL; free it with acns_free. Thread-safety: any thread. @since 0.3
 */
ACNS_API acns_status acns_node_fqdn_cache_list(const acns_node *node, uint32_t format, char **out,
                                               size_t *out_len, acns_error *err);

/*
 * The same listing (ACNS_FQDN_LIST_JSON only) read piece by piece, as the cache is walked: the
 * library holds a few hundred names of it at a time, however large the cache (serve it to a
 * slow HTTP client without a copy of the whole cache). The walk does not stop the cache: each
 * name is listed once as it was when read; one added or removed meanwhile may be missing.
 * The node must outlive the listing. Thread-safety: a listing is used by one thread at a time.
 * @since 0.4
 */
typedef struct acns_fqdn_listing acns_fqdn_listing;
ACNS_API acns_status acns_node_fqdn_cache_list_open(const acns_node *node, uint32_t format,
                                                    acns_fqdn_listing **out, acns_error *err);
/* Copies up to buf_len more bytes of the listing into buf; *n_read = 0 at its end. @since 0.4 */
ACNS_API acns_status acns_fqdn_listing_read(acns_fqdn_listing *listing, char *buf, size_t buf_len,
                                            size_t *n_read, acns_error *err);
/* Frees the listing (read to the end or not); NULL is fine. @since 0.4 */
ACNS_API void acns_fqdn_listing_close(acns_fqdn_listing *listing);

/* The address dns_listen[index] is bound to (a port 0 resolved), as a string out.
 * ACNS_NOT_FOUND past the last or before start. Thread-safety: any thread. @since 0.3 */
ACNS_API acns_status acns_node_dns_listen_address(const acns_node *node, size_t index, char *buf,
                                                  size_t buf_len, size_t *needed, acns_error *err);

/*
 * Every metric of the node in Prometheus' text format (exposition format 0.0.4): the DNS proxy's,
 * the FQDN cache's and the datapath's counters, and with flows Hubble's flow metrics
 * (hubble_flows_processed_total, hubble_dns_*, hubble_drop_total, ...; docs/observability.md).
 * *out is allocated by the library, NUL-terminated, *out_len bytes without the NUL; free it with
 * acns_free. Thread-safety: any thread. @since 0.5
 */
ACNS_API acns_status acns_node_metrics(const acns_node *node, char **out, size_t *out_len, acns_error *err);

/* The address the Hubble API listens on (a port 0 resolved), as a string out. ACNS_NOT_FOUND
 * when it is not served, or before start. Thread-safety: any thread. @since 0.5 */
ACNS_API acns_status acns_node_hubble_listen_address(const acns_node *node, char *buf, size_t buf_len,
                                                     size_t *needed, acns_error *err);

/* Frees memory the library allocated for the caller; NULL is fine. Thread-safety: any thread.
 * @since 0.3 */
ACNS_API void acns_free(void *ptr);

/* ---------------------------------------------------------------------------------------- */
/* Hubble API clients                                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Receives text as it is produced; return nonzero to stop (the call then returns ACNS_OK). */
typedef int (*acns_text_fn)(void *user_data, const char *text, size_t len);

/*
 * `hubble observe` against a Hubble API (a node's hubble_listen_address, or Hubble Relay):
 * args are hubble observe's flags, e.g. {"--server", "localhost:4244", "--last", "50",
 * "--verdict", "DROPPED", "--to-fqdn", "*.example.com", "-o", "json"} (docs/observability.md
 * lists them: --follow, --last, --first, --all, --since, --until, the filters, --not, -o
 * compact|dict|table|json|jsonpb, --print-node-name). The flows are printed as hubble prints
 * them and handed to `out`; with --follow the call returns when the server ends the stream or
 * `out` returns nonzero. Bad flags: ACNS_INVALID_ARGUMENT; a server that cannot be reached:
 * ACNS_UNAVAILABLE. Thread-safety: any thread. @since 0.6
 */
ACNS_API acns_status acns_observe(const char *const *args, size_t n_args, acns_text_fn out, void *user_data,
                                  acns_error *err);

/*
 * The connection graph of the flows a Hubble API keeps: who talks to whom, by protocol and
 * port and verdict, world destinations named by their DNS names. args: the selection and
 * filter flags of acns_observe (no --follow; default: every flow kept) and -o dot (Graphviz,
 * the default) or -o html (one self-contained page). The whole graph is handed to `out` at
 * the end. Thread-safety: any thread. @since 0.6
 */
ACNS_API acns_status acns_flow_graph(const char *const *args, size_t n_args, acns_text_fn out, void *user_data,
                                     acns_error *err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ACNS_ACNS_H_ */
