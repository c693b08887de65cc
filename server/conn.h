/* conn.h - bookkeeping of the HTTP server's connections: the connection limit and the
 * per-request read deadline.
 *
 * evhttp (libevent 2.1) resets its read timeout on every byte, so a client that dribbles a
 * request one byte at a time would hold a connection, and a slot of the server, forever; and it
 * accepts every connection the kernel hands it. dt_conns hooks into evhttp through
 * evhttp_set_bevcb (the only per-connection hook 2.1 has: no evhttp_set_newreqcb before 2.2) to
 *   - count open connections, and close a connection over the limit at once after a best-effort
 *     "503 unavailable" Twirp error, so it never reaches the request handler;
 *   - give each request a total read deadline: the clock starts with the first byte of a request
 *     and stops when the server starts its reply; a request still being read when it runs out is
 *     dropped with its connection. Idle keep-alive connections (no byte of a next request yet)
 *     are left to evhttp's own timeout (evhttp_set_timeout), which the caller keeps setting.
 * Not here: request routing, body limits (evhttp's and http.c's), anything about a request's
 * content. Everything runs on the loop thread of the event_base given.
 */
#ifndef DT_CONN_H
#define DT_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "dt.h"

typedef struct dt_conns dt_conns;

typedef struct dt_conns_opts {
    size_t max_connections; /* open connections at most; 0: no limit */
    int read_timeout_ms;    /* total time to read one request; 0: no deadline */
} dt_conns_opts;

typedef struct dt_conns_stats {
    size_t open;            /* connections open now (counted against the limit) */
    uint64_t accepted;      /* connections taken in, ever */
    uint64_t rejected;      /* connections closed at once because the limit was reached */
    uint64_t read_timeouts; /* connections dropped because a request took longer to arrive */
} dt_conns_stats;

/* Installs the hook on http (before it accepts connections). NULL when out of memory (err
 * filled). The caller frees it with dt_conns_free after evhttp_free(http). */
dt_conns *dt_conns_new(struct event_base *base, struct evhttp *http, const dt_conns_opts *o, dt_err *err);
/* Frees what evhttp_free left (connections it never finished setting up). NULL is fine. */
void dt_conns_free(dt_conns *cs);
void dt_conns_stats_get(const dt_conns *cs, dt_conns_stats *out);

#endif
