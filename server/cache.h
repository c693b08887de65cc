/* cache.h - the response cache of dovetaild: Redis through hiredis' async API, or an in-process LRU.
 *
 * The cache maps opaque binary keys to opaque binary values with one TTL for every entry. It is an
 * optimisation only: every failure (Redis down, slow, paused, restarted, answering nonsense) turns
 * into a miss or a dropped store, is counted in dt_cache_stats, and never into an error for the
 * caller. What the keys mean (tenant, epoch, request hash) is the caller's business.
 *
 * Redis mode (opts.redis_host set): one hiredis 0.14 async connection attached to the caller's
 * event_base. hiredis 0.14 has no timeouts and no reconnect, so this module adds them with libevent
 * timers:
 *   - every command must be answered within timeout_ms of being sent; Redis answers in order, so one
 *     timer watches the oldest outstanding command. When it expires the connection is considered
 *     sick: it is closed, every outstanding GET is answered with a miss, and a new connection is
 *     made after a back-off;
 *   - a connection attempt must complete within connect_timeout_ms;
 *   - after a failure, attempts are retried after backoff_min_ms, doubling up to backoff_max_ms;
 *     the back-off starts again from backoff_min_ms once a connection has answered a command;
 *   - while no connection is up, GETs are answered with a miss at once (on the next loop turn)
 *     and SETs are dropped; both are counted as `skipped`;
 *   - a reply of the wrong type, or a reply nobody asked for, closes the connection (the stream
 *     is out of step with the commands; hiredis 0.14 would abort() on an unsolicited reply);
 *   - an array header is refused before hiredis allocates its elements, and more unparsed bytes
 *     than max_value_bytes + 64 KiB close the connection: a broken server cannot make the daemon
 *     allocate what it announces;
 *   - Redis holds each value framed as "DTC1", the XXH3-64 of the value seeded with the XXH3-64 of
 *     the key (8 bytes, little-endian), then the value. A GET whose answer does not carry the check
 *     of its own key (another key's value, a truncated or altered one, anything written by another
 *     program) is a miss, counted in errors, and closes the connection.
 * The host name is resolved once, in dt_cache_new, so that reconnecting never blocks the loop
 * on DNS; give an IP address if Redis may move.
 *
 * Local mode (opts.redis_host NULL): a hash map plus a doubly linked LRU list, bounded by
 * local_max_bytes (each entry is charged klen + vlen + DT_CACHE_ENTRY_OVERHEAD bytes; the least
 * recently used entries are evicted first). The TTL is checked when an entry is read; expired
 * entries also leave as they reach the LRU end.
 *
 * Not thread-safe: every function, and every callback, runs on the thread that runs the
 * event_base's loop. hiredis writes with write(2): the process must ignore SIGPIPE, or a Redis
 * that dies mid-write kills it.
 */
#ifndef DT_CACHE_H
#define DT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "dt.h"

/* Bytes charged per local entry on top of its key and value (bookkeeping). */
#define DT_CACHE_ENTRY_OVERHEAD 64

typedef struct dt_cache_stats {
    uint64_t hits;            /* GETs answered with a value */
    uint64_t misses;          /* GETs answered without one, whatever the reason */
    uint64_t sets;            /* SETs sent to Redis, or stored locally */
    uint64_t errors;          /* Redis: error or malformed replies, commands lost with a broken
                                 connection, failed connection attempts, lost connections */
    uint64_t timeouts;        /* Redis: commands abandoned because the connection stopped
                                 answering within timeout_ms; connection attempts that took
                                 longer than connect_timeout_ms */
    uint64_t reconnects;      /* Redis: connections established after the first one */
    uint64_t local_evictions; /* local: entries evicted to stay within local_max_bytes */
    uint64_t skipped;         /* GETs answered as misses and SETs dropped without asking Redis:
                                 no connection was up, or max_pending_bytes was reached */
    uint64_t too_large;       /* SETs not stored: value above max_value_bytes (or, locally,
                                 the entry above local_max_bytes) */
    int connected;            /* Redis: 1 while a connection is up, else 0 */
} dt_cache_stats;

typedef struct dt_cache_opts {
    const char *redis_host;   /* Redis host (IP address or name); NULL: the in-process LRU */
    int redis_port;           /* 1..65535 */
    int ttl_s;                /* TTL of every entry, seconds, >= 1 (SET key val EX ttl_s) */
    int timeout_ms;           /* a command not answered within this closes the connection; its
                                 GET is a miss */
    int connect_timeout_ms;   /* a connection attempt not done within this is abandoned */
    int backoff_min_ms;       /* first reconnect delay after a failure */
    int backoff_max_ms;       /* the delay doubles up to this */
    size_t local_max_bytes;   /* local LRU budget */
    size_t max_value_bytes;   /* larger values are not stored */
    size_t max_pending_bytes; /* Redis: bytes of SET values sent but not yet answered; beyond
                                 this, SETs are dropped */
} dt_cache_opts;

/* The defaults: no Redis (local LRU), port 6379, ttl 300 s, timeout 50 ms, connect timeout
 * 1000 ms, back-off 100..5000 ms, local budget 64 MiB, values up to 1 MiB, 64 MiB pending. */
dt_cache_opts dt_cache_opts_default(void);

typedef struct dt_cache dt_cache;

/* Creates a cache whose timers and connection live on `base` (borrowed; it must outlive the
 * cache). In Redis mode the first connection attempt starts at once; the cache is usable before
 * it completes (GETs miss until it does). `o` is copied, redis_host included.
 * Returns NULL and fills err: DT_EINVAL (err->field names the option: out of range, or a host
 * name that does not resolve), DT_ENOMEM. Loop thread. */
dt_cache *dt_cache_new(struct event_base *base, const dt_cache_opts *o, dt_err *err);

/* Closes the connection and frees everything. Every GET still waiting is answered with a miss
 * first, from inside this call; GETs issued by those callbacks are answered with a miss too,
 * before it returns. NULL is a no-op. Must not be called from inside a dt_cache_get callback.
 * Loop thread. */
void dt_cache_free(dt_cache *c);

/* The answer to a dt_cache_get: val = the cached bytes, valid only during the callback, or NULL
 * for a miss, an error, a timeout or Redis being unavailable. */
typedef void (*dt_cache_get_cb)(void *ud, const void *val, size_t len);

/* Looks key[0..klen) up (binary-safe; key is copied, not kept). Returns 0, and cb(ud, ...) will
 * then be called exactly once, on the loop thread, never from inside this call; in Redis mode
 * within about timeout_ms, or at once if no connection is up. Returns -DT_ENOMEM if the lookup
 * could not even be queued: cb will then not be called. The callback may call dt_cache_get and
 * dt_cache_set. Loop thread. */
int dt_cache_get(dt_cache *c, const void *key, size_t klen, dt_cache_get_cb cb, void *ud);

/* Stores val[0..len) under key[0..klen) with the TTL (both copied). Fire and forget: values above
 * max_value_bytes, a missing connection and failures are only counted in the stats. Loop thread. */
void dt_cache_set(dt_cache *c, const void *key, size_t klen, const void *val, size_t len);

/* Copies the counters into *out. Loop thread. */
void dt_cache_stats_get(const dt_cache *c, dt_cache_stats *out);

#endif
