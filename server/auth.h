/* auth.h - bearer tokens and tenant isolation for dovetaild: the --auth-file format, the token
 * lookup (constant time), the scopes of methods (the RPCs' from the method table, server.h) and
 * routes, per-token counters, and the reload on SIGHUP.
 *
 * Not the HTTP side: http.c reads the Authorization header and answers with Twirp errors; this
 * module only decides. A dt_auth table never changes after it is parsed except for its counters,
 * and every use of it (identify, allow, render, the swap after a reload) happens on the loop
 * thread, so it needs no lock. Only the reload's file read runs on a thread of its own.
 *
 * File format (JSON):
 *   {"tokens": [
 *     {"name": "platform-a", "token": "<32 to 256 characters>", "tenants": ["platform-a"]},
 *     {"name": "ops", "token": "...", "operator": true}
 *   ]}
 * name: 1-64 characters from A-Z a-z 0-9 . _ - (logs and metrics show it; the token never).
 * token: 32-256 characters of RFC 6750 token68 (A-Z a-z 0-9 - . _ ~ + / then optional '=').
 * tenants: the tenants the token may read and write ("public" is the tenant of requests that
 * name none). operator: true for cross-tenant work (Stats of every tenant, batch jobs, /metrics)
 * and access to every tenant. An entry needs tenants, operator or both; unknown keys are errors.
 */
#ifndef DT_AUTH_H
#define DT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>

#include "dt.h"

#define DT_AUTH_TOKEN_MIN 32
#define DT_AUTH_TOKEN_MAX 256
#define DT_AUTH_NAME_MAX 64
#define DT_AUTH_ENTRIES_MAX 1024
#define DT_AUTH_FILE_MAX (1u << 20)

typedef struct dt_auth dt_auth;

/* What a method (or a plain HTTP route such as "GET /metrics") needs. */
typedef enum {
    DT_SCOPE_NONE = 0,      /* not in the table: refused to everyone but operators */
    DT_SCOPE_TENANT,        /* the tenant the request names ("public" when it names none) */
    DT_SCOPE_TENANT_OR_ALL, /* as DT_SCOPE_TENANT when a tenant is named; every tenant otherwise */
    DT_SCOPE_OPERATOR       /* cross-tenant: operator tokens only */
} dt_auth_scope;

/* Parses and validates a token file held in memory (len bytes, no NUL needed). Returns the table
 * (free with dt_auth_free) or NULL with err: field names the entry and key ("tokens[2].token"),
 * msg says what is wrong; a token's value is never quoted. */
dt_auth *dt_auth_parse(const char *json, size_t len, dt_err *err);

/* Reads path (a regular file of at most DT_AUTH_FILE_MAX bytes) and parses it. When the file is
 * readable or writable by group or others, fills warning (wn bytes, may be 0) with a sentence to
 * log; otherwise warning is "". NULL with err on any error. Blocking I/O: not on the loop. */
dt_auth *dt_auth_load(const char *path, char *warning, size_t wn, dt_err *err);

/* Frees a table and wipes its tokens. NULL is fine. */
void dt_auth_free(dt_auth *a);

/* Number of tokens; the name of entry who (0 <= who < count). */
size_t dt_auth_count(const dt_auth *a);
const char *dt_auth_name(const dt_auth *a, int who);

/* Finds the token of a request from its Authorization header values (n of them; n != 1 is
 * missing or malformed). Every entry is compared in full, in constant time, whatever matches;
 * compared (may be NULL) gets the number of token bytes examined, which is always
 * count * DT_AUTH_TOKEN_MAX for a well-formed header. 0 with *who set, or -DT_EINVAL (missing or
 * malformed header) / -DT_ENOTFOUND (unknown token) with err. Counts the request for the token,
 * or the refusal by reason. */
int dt_auth_identify(dt_auth *a, const char *const *values, size_t n, int *who, size_t *compared,
                     dt_err *err);

/* The scope of a method ("Match") or plain route ("GET /metrics", "GET /events"). */
dt_auth_scope dt_auth_method_scope(const char *method);

/* Whether token who may call method on tenant (the request's tenant field as sent: NULL or ""
 * means none named). 0, or -DT_EINVAL with err (field "tenant" when the tenant is the reason) and
 * the denial counted for the token. */
int dt_auth_allow(dt_auth *a, int who, const char *method, const char *tenant, dt_err *err);

/* The request's `tenant` field as sent (borrowed from msg), or NULL when its message has none. */
const char *dt_auth_request_tenant(const ProtobufCMessage *msg);

/* Whether a --listen value HOST:PORT names a loopback host: 127.0.0.0/8, ::1 (also [::1] and
 * ::ffff:127.x.y.z) or localhost. */
bool dt_auth_listen_is_loopback(const char *listen);

/* Appends the auth counters in Prometheus text format 0.0.4. */
void dt_auth_metrics_render(const dt_auth *a, FILE *f);

/* ---- reload on SIGHUP ---- */

typedef struct dt_auth_reloader dt_auth_reloader;
/* A log line: error is true for lines that must show even with --quiet. */
typedef void (*dt_auth_log_fn)(void *ud, bool error, const char *msg);

/* Watches SIGHUP on base: each signal re-reads path on a thread of its own, then, back on the
 * loop, replaces *slot (counters of names that stay are carried over) or, when the file is bad,
 * keeps *slot and logs why. *slot must be a loaded table and stay owned by the caller. base must
 * come from a libevent with threads enabled (evthread_use_pthreads). NULL with err on failure. */
dt_auth_reloader *dt_auth_reloader_new(struct event_base *base, const char *path, dt_auth **slot,
                                       dt_auth_log_fn log, void *ud, dt_err *err);
/* What SIGHUP does: starts a reload (or queues one when a reload is running). Loop thread. */
void dt_auth_reloader_start(dt_auth_reloader *r);
/* Completed reloads so far (successful or not). */
uint64_t dt_auth_reloader_done(const dt_auth_reloader *r);
/* Stops watching, waits for a running reload and frees what it read. NULL is fine. */
void dt_auth_reloader_free(dt_auth_reloader *r);

#endif
