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
 * - Callbacks take `void *user_data` first, run on the calling thread before the call returns,
 *   and the pointers they receive are valid only during the callback.
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
#define ACNS_VERSION_MINOR 1
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
} acns_endpoint;

/*
 * Registers an endpoint (a pod) or replaces its labels. Label strings are copied.
 * ACNS_INVALID_ARGUMENT for id 0 or a malformed label.
 * Thread-safety: safe from any thread. @since 0.1
 */
ACNS_API acns_status acns_policy_engine_endpoint_upsert(acns_policy_engine *engine,
                                               const acns_endpoint *endpoint, acns_error *err);

/* Unregisters an endpoint. ACNS_NOT_FOUND if unknown. Thread-safety: any thread. @since 0.1 */
ACNS_API acns_status acns_policy_engine_endpoint_remove(acns_policy_engine *engine, uint64_t id,
                                               acns_error *err);

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ACNS_ACNS_H_ */
