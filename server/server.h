/* server.h - the dovetaild daemon's shared state and the pieces its files share.
 *
 * One libevent loop owns every socket (http.c): it reads a request, decodes it, looks the answer
 * up in the cache (cache.c) and otherwise hands the work to the pool (pool.c); handlers (rpc.c)
 * run on workers against the engine under a reader-writer lock, and only the loop replies.
 */
#ifndef DT_SERVER_H
#define DT_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <protobuf-c/protobuf-c.h>

#include "auth.h"
#include "cache.h"
#include "commit.h"
#include "dovetail/v1/matchmaker.pb-c.h"
#include "engine.h"
#include "rerank.h"
#include "jobs.h"
#include "metrics.h"
#include "outcome.h"
#include "pool.h"
#include "served.h"

/* Twirp error codes, in the order of dt_twirp_names (index 0 is success). */
typedef enum {
    TW_OK = 0,
    TW_CANCELED,
    TW_UNKNOWN,
    TW_INVALID_ARGUMENT,
    TW_MALFORMED,
    TW_DEADLINE_EXCEEDED,
    TW_NOT_FOUND,
    TW_BAD_ROUTE,
    TW_ALREADY_EXISTS,
    TW_PERMISSION_DENIED,
    TW_UNAUTHENTICATED,
    TW_RESOURCE_EXHAUSTED,
    TW_FAILED_PRECONDITION,
    TW_ABORTED,
    TW_OUT_OF_RANGE,
    TW_UNIMPLEMENTED,
    TW_INTERNAL,
    TW_UNAVAILABLE,
    TW_COUNT
} dt_twirp_code;

extern const char *const dt_twirp_names[TW_COUNT];

/* The RPC methods, by the name the service descriptor gives them (the .proto's order is free). */
typedef enum {
    DT_M_UPSERT_RECORDS,
    DT_M_DELETE_RECORDS,
    DT_M_GET_RECORD,
    DT_M_MATCH,
    DT_M_STATS,
    DT_M_PAIR_EVENT,
    DT_M_RECORD_OUTCOME,
    DT_M_START_RERANK, /* re-rank jobs (jobs.c) */
    DT_M_GET_JOB,
    DT_M_CANCEL_JOB,
    DT_M_LIST_JOBS,
    DT_M_COUNT
} dt_method;

typedef struct dt_call dt_call;
typedef struct dt_worker dt_worker;

/* What a method is, for everything around its handler. */
enum {
    DT_MF_WRITE = 1 << 0,     /* changes the durable state (journaled): runs even when it waited past
                                 its deadline, since the client was told the outcome is unknown */
    DT_MF_HEAVY = 1 << 1,     /* a heavy pool job: at most workers - 1 of them run at once (pool.h) */
    DT_MF_BATCHABLE = 1 << 2, /* the pool may run it with others of its kind in one run_batch */
    DT_MF_CACHEABLE = 1 << 3  /* its answers are cached by (tenant, epoch, request) */
};

/* The method table: one row per RPC, indexed by dt_method. Everything that differs between methods
 * outside their handlers - the route name, who may call it, how the pool runs it, the checks made
 * on the loop - is read from here (http.c, auth.c, rpc.c). Adding a method: a row here, the enum
 * above, the handler. */
typedef struct dt_method_def {
    const char *name;      /* as the service descriptor names it (the route's last part) */
    dt_auth_scope scope;   /* who may call it with --auth-file (auth.h) */
    unsigned flags;        /* DT_MF_* */
    /* on the loop, after decoding: checks that need only the request (limits, required fields);
     * 0, or -1 with c->code and c->err set. NULL: none. */
    int (*precheck)(dt_call *c);
    void (*run)(dt_call *c, dt_worker *w); /* on a worker */
} dt_method_def;
extern const dt_method_def dt_methods[DT_M_COUNT];
/* The method of a route's name, or DT_M_COUNT when there is none. */
dt_method dt_method_find(const char *name);
int dt_twirp_status(dt_twirp_code c);
/* The Twirp code for a dt_err code (DT_EINVAL -> invalid_argument, ...). */
dt_twirp_code dt_twirp_from_err(int dt_code);

typedef struct dt_config {
    const char *listen;        /* "127.0.0.1:8080" */
    int workers;
    size_t max_body;           /* bytes of a request body */
    size_t max_records;        /* records, ids or outcome events in one write call */
    size_t max_text;           /* bytes of a free-text query */
    size_t max_k;              /* k + offset of a Match */
    size_t max_queue;          /* queued jobs; beyond: resource_exhausted */
    size_t max_batch;          /* Match queries sharing one GEMM */
    int batch_window_us;
    int deadline_ms;           /* per request, from read to reply */
    int idle_timeout_s;        /* a connection idle (or dribbling) this long is closed */
    const char *redis;         /* "host:port", or NULL for the in-process cache */
    int cache_ttl_s;
    int redis_timeout_ms;
    size_t local_cache_mb;
    const char *clusters_file;
    const char *achievements[64];
    size_t n_achievements;
    const char *demands[64];
    size_t n_demands;
    const char *records[64];   /* files whose rows name their side */
    size_t n_records;
    size_t dim;
    bool quiet;
    const char *data_dir;      /* snapshot + journal; NULL: nothing survives a restart */
    const char *fsync;         /* always | everysec | no */
    size_t snapshot_every_mb;
    const char *auth_file;     /* bearer tokens (auth.h); NULL: no auth, loopback only */
    /* re-rank jobs (jobs.c) */
    const char *jobs_dir;      /* JSON Lines outputs; NULL: <data_dir>/jobs, or no file output */
    int rerank_threads;        /* worker threads per job; 0: online CPUs */
    size_t jobs_keep;          /* finished jobs (and their files) kept per tenant */
    int rerank_redis_timeout_ms;
    /* limits against abusive clients (conn.c, http.c); 0 = no limit */
    int read_timeout_ms;            /* total time to read one request from its first byte */
    size_t max_connections;         /* open connections */
    size_t max_inflight;            /* requests taken in and not finished */
    size_t max_inflight_per_tenant; /* the same, per tenant */
    size_t max_decode;              /* bytes decoding one request body may allocate */
} dt_config;

/* The loop's view of each tenant's epoch: updated only on the loop thread, after a write job
 * finished, so a request that follows an acknowledged write never reads an older epoch. */
typedef struct dt_epoch_entry {
    char tenant[DT_TENANT_MAX + 1];
    uint64_t epoch;
} dt_epoch_entry;

typedef struct dt_server {
    dt_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;                   /* the bound port (useful with port 0) */
    dt_engine *engine;
    dt_outcome_store *outcomes; /* outcome events and served counts, guarded by lock like the engine */
    dt_served *served;          /* served counts noted by Match, not yet folded into outcomes */
    pthread_rwlock_t lock;      /* engine and outcomes: writers exclusive, searches shared */
    /* One writer at a time, taken before lock (dt_rpc_write_lock): a snapshot holds it alone while
     * it serialises the state, so writes wait for the snapshot but searches never do. */
    pthread_mutex_t commit;
    dt_store store;             /* the commit path over engine, lock, commit and durable (store/commit.h) */
    dt_pool *pool;
    dt_cache *cache;
    dt_metrics metrics;
    uint64_t boot_nonce;        /* in every cache key: epochs restart with the process */
    dt_epoch_entry *epochs;
    size_t n_epochs;
    struct event *sig_int, *sig_term;
    char *metrics_sizes;        /* index sizes as of the last /metrics scrape that got the lock */
    struct dt_event_store *events; /* rendered PairEvent schedules (rpc_event.c) */
    bool stopping;              /* shutting down: new calls are answered unavailable */
    struct dt_durable *durable; /* --data-dir state, or NULL (durable.c) */
    struct dt_auth *auth;       /* --auth-file tokens, or NULL: every request allowed (auth.c) */
    struct dt_auth_reloader *auth_reloader; /* re-reads --auth-file on SIGHUP */
    struct dt_jobs *jobs;       /* re-rank jobs (jobs.c) */
    /* limits against abusive clients, loop thread only */
    struct dt_conns *conns;       /* connection limit, read deadline (conn.c) */
    struct dt_inflight *inflight; /* calls in flight per tenant (inflight.c) */
    size_t calls;                 /* calls taken in and not yet released */
    uint64_t inflight_rejected[2]; /* refused by --max-inflight [0] and --max-inflight-per-tenant [1] */
    uint64_t decode_rejected;     /* refused by --max-decode-mb */
} dt_server;

/* One RPC in flight. Lives until it has been answered and nothing (cache lookup, job) still
 * refers to it; both happen on the loop thread. */
typedef struct dt_call {
    dt_job job;                 /* first: the pool's view */
    dt_server *srv;
    struct evhttp_request *req;
    const ProtobufCMethodDescriptor *method;
    unsigned method_index;
    bool json;
    ProtobufCMessage *in;       /* the decoded request */
    /* the answer, produced by a worker */
    dt_twirp_code code;
    dt_err err;
    uint8_t *out;               /* packed protobuf response */
    size_t out_len;
    char *out_json;             /* JSON response for JSON calls */
    size_t out_json_len;
    uint64_t epoch_after;       /* writes: the tenant's epoch afterwards */
    char tenant[DT_TENANT_MAX + 1];
    /* bookkeeping */
    uint64_t t_start_us;
    struct event *deadline;
    bool answered;
    int pending;                /* outstanding cache lookups and jobs */
    bool cacheable;
    bool tenant_counted;        /* holds a slot of s->inflight */
    struct dt_auth *auth_seen;  /* the token set the caller was identified in, and its entry */
    int auth_who;
    const uint8_t *body;        /* a large body decoded on a worker: evhttp's buffer, alive until */
    size_t body_len;            /* the call is answered */
    int decode_rc;
    char key[96 + DT_TENANT_MAX]; /* "dt:v1:<tenant>:<32 hex digits>" */
    size_t key_len;
} dt_call;

uint64_t dt_now_us(void);
/* A timestamped line on standard error, unless cfg->quiet. Any thread. */
void dt_log(const dt_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* http.c */
int dt_http_start(dt_server *s, dt_err *err);
void dt_http_stop(dt_server *s);
/* Answers a call (loop thread): the worker's result or an error already set in call->code/err. */
void dt_call_answer(dt_call *c);
/* Frees the call once it is answered and nothing is pending. */
void dt_call_release(dt_call *c);
uint64_t dt_server_epoch(dt_server *s, const char *tenant);
void dt_server_set_epoch(dt_server *s, const char *tenant, uint64_t epoch);

/* rpc.c: runs on workers. Fills c->code / c->err or c->out (+ c->out_json for JSON calls). */
/* A pool worker's own search state: the engine searcher and the outcome feedback's scratch. */
typedef struct dt_worker {
    dt_searcher *sr;
    dt_feedback *fb;
} dt_worker;
void dt_rpc_run(dt_call *c, dt_worker *w);
/* Match calls by stored records get the outcome feedback (rerank.h, dt_feedback_search): their
 * declined partners never appear, and they equal the re-rank job's lists with the same k. */
void dt_rpc_run_match_batch(dt_call **calls, size_t n, dt_worker *w);
/* rpc.c: sets s->store's hooks (served counts folded under each write lock; a basis re-learned in
 * the background tells the loop the tenant's new epoch). Before serving. */
void dt_rpc_store_hooks(dt_server *s);
/* rpc.c, loop thread: checks a decoded request before any work is queued (limits, required
 * fields) so that bad requests never wait in the queue. 0 or sets c->code/err. */
int dt_rpc_precheck(dt_call *c);
/* Sets c->code = invalid_argument with the field and message; returns -1. */
int dt_rpc_bad(dt_call *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with any Twirp code and dt_err code (field may be NULL). */
int dt_rpc_fail(dt_call *c, dt_twirp_code code, int dt_code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Checks request weights (NULL is fine): each finite, >= 0, not all 0. 0 or dt_rpc_bad. */
int dt_rpc_check_weights(dt_call *c, const Dovetail__V1__Weights *w);
/* SIDE_DEMAND / SIDE_ACHIEVEMENT <-> dt_side; -1 for any other value. */
int dt_rpc_side_of(Dovetail__V1__Side s, dt_side *out);
Dovetail__V1__Side dt_rpc_side_pb(dt_side s);
/* The tenant a request names ("public" when empty). */
const char *dt_rpc_tenant(const dt_call *c);
/* Packs a response into c->out (and c->out_json for JSON calls) and sets c->code; on failure
 * c->code is internal. Any worker-side handler ends with it. */
void dt_rpc_finish(dt_call *c, const ProtobufCMessage *msg);
/* Re-encodes a cached packed MatchResponse for this call with cached = true (loop thread); a Match
 * by a stored record counts its matches as served. */
int dt_rpc_from_cache(dt_call *c, const void *val, size_t len);
/* The tenant's index epoch: the engine's write counter plus the outcome events stored, so it grows
 * with every write of records or outcomes. The caller holds s->lock (either mode). */
uint64_t dt_rpc_tenant_epoch(const dt_server *s, const char *tenant);
/* Moves the served counts Match noted into s->outcomes, taking the write lock when there are any.
 * The caller holds no lock. */
void dt_rpc_fold_served(dt_server *s);
/* s->commit, then s->lock as a writer (and the reverse): for a change with nothing to prepare
 * first. The write handlers hold s->commit for the whole call and s->lock only to apply (rpc.c);
 * every change of the engine or the outcome store happens with both held. */
void dt_rpc_write_lock(dt_server *s);
void dt_rpc_write_unlock(dt_server *s);

/* ---- rpc_event.c: PairEvent, and the latest schedule page per (tenant, event id) ---- */
typedef struct dt_event_store dt_event_store;
/* A store of at most max_events pages and max_bytes bytes (oldest dropped first); NULL when out
 * of memory. Thread-safe: workers put pages, the loop copies them out, under one mutex. */
dt_event_store *dt_event_store_new(size_t max_events, size_t max_bytes);
void dt_event_store_free(dt_event_store *st);
/* Appends the stored page to out: 0, or -1 when there is none (or no memory). */
int dt_event_store_copy(dt_event_store *st, const char *tenant, const char *event_id, struct evbuffer *out);
/* Loop thread: checks a PairEventRequest (0 or sets c->code/err), as dt_rpc_precheck does. */
int dt_rpc_event_precheck(dt_call *c);
/* Worker: plans the event under the read lock, answers, renders and stores the page. */
void dt_rpc_event_run(dt_call *c, dt_searcher *sr);
/* The tenant of a page path "/events/<tenant>/<event_id>.html", percent-decoded (malloc'd; the
 * caller frees it), or NULL when the path has another shape or no memory. */
char *dt_event_path_tenant(const char *path);
/* Whether path has the shape of an event page, /events/<tenant>/<event id>.html: two segments,
 * neither empty nor a dot-segment ("." or "..", also percent-encoded), the page ending in .html.
 * Anything else under /events/ is answered 404 before any tenant or token is looked at. */
bool dt_event_path_ok(const char *path);
/* Loop thread: answers GET /events/<tenant>/<event_id>.html from the store (200 or 404). */
void dt_event_serve(dt_server *s, struct evhttp_request *req, const char *path);

#endif
