/* http.c - the loop side of dovetaild: evhttp set-up, Twirp v7 routing and replies, /healthz,
 * /metrics, the cache lookup and the hand-off to the worker pool.
 *
 * Everything here runs on the loop thread, except the decoding of large bodies (decode_run, on a
 * worker). A call's life: on_request refuses it when too many are in flight, decodes it (a large
 * body on a worker first), checks it, takes its tenant's in-flight slot, arms its deadline, looks
 * Match answers up in the cache, else queues a job; the job's done() or the deadline answers it;
 * dt_call_release frees it (and its slots) once nothing refers to it any more.
 * With --auth-file, the token is checked before the body is decoded and the tenant right after
 * (auth.c decides), so a refused request never reaches the cache or a worker.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <xxhash.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "auth.h"
#include "conn.h"
#include "inflight.h"
#include "pbcheck.h"
#include "pbjson.h"
#include "server.h"

const char *const dt_twirp_names[TW_COUNT] = {
    "ok",         "canceled",  "unknown",         "invalid_argument",    "malformed",      "deadline_exceeded",
    "not_found",  "bad_route", "already_exists",  "permission_denied",   "unauthenticated", "resource_exhausted",
    "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal",     "unavailable"};

int dt_twirp_status(dt_twirp_code c)
{
    static const int st[TW_COUNT] = {200, 408, 500, 400, 400, 408, 404, 404, 409,
                                     403, 401, 429, 412, 409, 400, 501, 500, 503};
    return c < TW_COUNT ? st[c] : 500;
}

dt_twirp_code dt_twirp_from_err(int code)
{
    if (code < 0) code = -code;
    switch (code) {
    case DT_EINVAL:
    case DT_ELIMIT: return TW_INVALID_ARGUMENT;
    case DT_ENOTFOUND: return TW_NOT_FOUND;
    case DT_EEXIST: return TW_ALREADY_EXISTS;
    case DT_ECORRUPT: return TW_INTERNAL;
    default: return TW_INTERNAL;
    }
}

void dt_log(const dt_config *cfg, const char *fmt, ...)
{
    if (cfg->quiet) return;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s dovetaild: %s\n", ts, line); /* one write per line: jobs log from their own threads */
}

uint64_t dt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- epochs (loop thread only) ---- */

uint64_t dt_server_epoch(dt_server *s, const char *tenant)
{
    for (size_t i = 0; i < s->n_epochs; i++)
        if (strcmp(s->epochs[i].tenant, tenant) == 0) return s->epochs[i].epoch;
    return 0;
}

void dt_server_set_epoch(dt_server *s, const char *tenant, uint64_t epoch)
{
    for (size_t i = 0; i < s->n_epochs; i++)
        if (strcmp(s->epochs[i].tenant, tenant) == 0) {
            if (epoch > s->epochs[i].epoch) s->epochs[i].epoch = epoch;
            return;
        }
    dt_epoch_entry *v = realloc(s->epochs, (s->n_epochs + 1) * sizeof *v);
    if (!v) return; /* the tenant then reads epoch 0 and the next write retries: still never stale,
                       because the boot nonce and the engine epoch of a new tenant both start fresh */
    s->epochs = v;
    snprintf(v[s->n_epochs].tenant, sizeof v[0].tenant, "%s", tenant);
    v[s->n_epochs].epoch = epoch;
    s->n_epochs++;
}

/* ---- replies ---- */

static void send_twirp_error(struct evhttp_request *req, dt_twirp_code code, const char *msg, const char *meta_key,
                             const char *meta_val)
{
    json_t *o = json_object();
    json_object_set_new(o, "code", json_string(dt_twirp_names[code]));
    json_object_set_new(o, "msg", json_string(msg ? msg : ""));
    if (meta_key && meta_val) {
        json_t *meta = json_object();
        json_object_set_new(meta, meta_key, json_string(meta_val));
        json_object_set_new(o, "meta", meta);
    }
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    struct evbuffer *b = evbuffer_new();
    if (body && b) evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, dt_twirp_status(code), dt_twirp_names[code], b);
    if (b) evbuffer_free(b);
    free(body);
}

/* A message is valid UTF-8 for json_string: ours are, but a field path may quote user input. */
static void safe_msg(char *dst, size_t n, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 1 < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[j++] = ch < 0x20 || ch >= 0x80 ? '?' : (char)ch;
    }
    dst[j] = 0;
}

void dt_call_answer(dt_call *c)
{
    if (c->answered) return;
    c->answered = true;
    if (c->deadline) event_del(c->deadline);
    if (c->code == TW_OK) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
        evhttp_add_header(h, "Content-Type", c->json ? "application/json" : "application/protobuf");
        struct evbuffer *b = evbuffer_new();
        if (b) {
            if (c->json)
                evbuffer_add(b, c->out_json, c->out_json_len);
            else
                evbuffer_add(b, c->out, c->out_len);
        }
        evhttp_send_reply(c->req, 200, "OK", b);
        if (b) evbuffer_free(b);
    } else {
        char msg[300], field[80];
        safe_msg(msg, sizeof msg, c->err.msg);
        safe_msg(field, sizeof field, c->err.field);
        char full[400];
        if (field[0])
            snprintf(full, sizeof full, "%s: %s", field, msg);
        else
            snprintf(full, sizeof full, "%s", msg);
        send_twirp_error(c->req, c->code, full, field[0] ? "argument" : NULL, field[0] ? field : NULL);
    }
    if (c->code == TW_DEADLINE_EXCEEDED) atomic_fetch_add(&c->srv->metrics.deadline_exceeded, 1);
    dt_metrics_request(&c->srv->metrics, c->method_index, c->code, dt_now_us() - c->t_start_us);
    atomic_fetch_sub(&c->srv->metrics.in_flight, 1);
}

void dt_call_release(dt_call *c)
{
    if (!c->answered || c->pending > 0) return;
    dt_server *s = c->srv;
    s->calls--;
    if (c->tenant_counted) dt_inflight_release(s->inflight, c->tenant);
    if (c->in) protobuf_c_message_free_unpacked(c->in, NULL);
    if (c->deadline) event_free(c->deadline);
    free(c->out);
    free(c->out_json);
    free(c);
}

static void fail(dt_call *c, dt_twirp_code code, const char *field, const char *fmt, const char *arg)
{
    c->code = code;
    dt_err_set(&c->err, DT_EINVAL, field, fmt, arg);
    dt_call_answer(c);
}

/* ---- the pool side ---- */

static void job_run(dt_job *j, void *wctx)
{
    dt_call *c = (dt_call *)j;
    int deadline_ms = c->srv->cfg.deadline_ms;
    bool writes = dt_methods[c->method_index].flags & DT_MF_WRITE;
    if (!writes && deadline_ms > 0 && dt_now_us() - c->t_start_us > (uint64_t)deadline_ms * 1000) {
        /* answered deadline_exceeded while queued: nobody waits for the work (writes still run:
         * the client was told the outcome is unknown, not that nothing happened) */
        c->code = TW_DEADLINE_EXCEEDED;
        dt_err_set(&c->err, DT_ELIMIT, NULL, "the request waited longer than its deadline");
        return;
    }
    dt_rpc_run(c, wctx);
}

static void job_run_batch(dt_job **js, size_t n, void *wctx)
{
    dt_rpc_run_match_batch((dt_call **)js, n, wctx);
}

static void job_done(dt_job *j)
{
    dt_call *c = (dt_call *)j;
    dt_server *s = c->srv;
    c->pending--;
    if (!j->ran) {
        c->code = TW_UNAVAILABLE;
        dt_err_set(&c->err, DT_EINTERNAL, NULL, "the server is shutting down");
    }
    if (c->epoch_after) dt_server_set_epoch(s, c->tenant, c->epoch_after);
    if (!c->answered) {
        dt_call_answer(c);
        if (c->code == TW_OK && c->cacheable && c->out && s->cache)
            dt_cache_set(s->cache, c->key, c->key_len, c->out, c->out_len);
    }
    dt_call_release(c);
}

static const dt_job_vt call_vt = {job_run, job_run_batch, job_done};

static void submit(dt_call *c)
{
    dt_server *s = c->srv;
    c->job.vt = &call_vt;
    unsigned flags = dt_methods[c->method_index].flags;
    c->job.batchable = flags & DT_MF_BATCHABLE;
    /* one flow per tenant: a tenant's flood queues behind itself (pool.h) */
    c->job.flow = XXH3_64bits(c->tenant, strlen(c->tenant));
    /* writes wait for each other (and for a snapshot) on the commit mutex: as heavy jobs they never
     * hold more than workers - 1 workers, so one worker is always left for Match */
    c->job.heavy = flags & DT_MF_HEAVY;
    if (s->stopping || !s->pool) {
        fail(c, TW_UNAVAILABLE, NULL, "%s", "the server is shutting down; retry on another replica");
        dt_call_release(c);
        return;
    }
    c->pending++;
    int rc = dt_pool_submit(s->pool, &c->job);
    if (rc < 0) {
        c->pending--;
        atomic_fetch_add(&s->metrics.queue_rejections, 1);
        char n[32];
        snprintf(n, sizeof n, "%zu", s->cfg.max_queue);
        if (rc == -DT_ELIMIT)
            fail(c, TW_RESOURCE_EXHAUSTED, NULL, "the server is busy: %s requests are already queued; retry later", n);
        else
            fail(c, TW_RESOURCE_EXHAUSTED, NULL, "%s", "the server is out of memory; retry later");
        dt_call_release(c);
    }
}

static void on_cache(void *ud, const void *val, size_t len)
{
    dt_call *c = ud;
    c->pending--;
    if (c->answered) {
        dt_call_release(c);
        return;
    }
    if (val && dt_rpc_from_cache(c, val, len) == 0) {
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    submit(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dt_call *c = arg;
    if (c->answered) return;
    char ms[32];
    snprintf(ms, sizeof ms, "%d", c->srv->cfg.deadline_ms);
    fail(c, TW_DEADLINE_EXCEEDED, NULL, "the request took longer than its deadline of %s ms", ms);
    dt_call_release(c);
}

/* "dt:v1:<tenant>:" + hex XXH3-128 of (boot nonce, tenant epoch, canonical request bytes). */
static int make_key(dt_call *c)
{
    size_t n = protobuf_c_message_get_packed_size(c->in);
    uint8_t *buf = malloc(n + 16);
    if (!buf) return -1;
    uint64_t epoch = dt_server_epoch(c->srv, c->tenant);
    memcpy(buf, &c->srv->boot_nonce, 8);
    memcpy(buf + 8, &epoch, 8);
    protobuf_c_message_pack(c->in, buf + 16);
    XXH128_hash_t h = XXH3_128bits(buf, n + 16);
    free(buf);
    int len = snprintf(c->key, sizeof c->key, "dt:v1:%s:%016llx%016llx", c->tenant, (unsigned long long)h.high64,
                       (unsigned long long)h.low64);
    c->key_len = (size_t)len;
    return 0;
}

/* ---- routing ---- */

static const char *content_type(struct evhttp_request *req, char *buf, size_t n)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct) return "";
    size_t len = strcspn(ct, ";");
    while (len && (ct[len - 1] == ' ' || ct[len - 1] == '\t')) len--;
    while (len && (*ct == ' ' || *ct == '\t')) ct++, len--;
    if (len >= n) len = n - 1;
    for (size_t i = 0; i < len; i++) buf[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    buf[len] = 0;
    return buf;
}

static const char *cmd_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

static void bad_route(dt_server *s, struct evhttp_request *req, const char *path, const char *why)
{
    atomic_fetch_add(&s->metrics.http_other[2], 1);
    char route[512], msg[700];
    snprintf(route, sizeof route, "%s %.400s", cmd_name(evhttp_request_get_command(req)), path);
    safe_msg(route, sizeof route, route);
    snprintf(msg, sizeof msg, "%s: %s", route, why);
    send_twirp_error(req, TW_BAD_ROUTE, msg, "twirp_invalid_route", route);
}

/* The counters of the limits against abusive clients (conn.c, the in-flight limits, decoding). */
static void render_limits(dt_server *s, FILE *f)
{
    dt_conns_stats cs;
    dt_conns_stats_get(s->conns, &cs);
    fprintf(f,
            "# HELP dovetail_connections Open HTTP connections (counted against --max-connections).\n"
            "# TYPE dovetail_connections gauge\ndovetail_connections %zu\n"
            "# HELP dovetail_connections_accepted_total HTTP connections taken in.\n"
            "# TYPE dovetail_connections_accepted_total counter\ndovetail_connections_accepted_total %llu\n"
            "# HELP dovetail_connections_rejected_total Connections closed at once: --max-connections were open.\n"
            "# TYPE dovetail_connections_rejected_total counter\ndovetail_connections_rejected_total %llu\n"
            "# HELP dovetail_read_timeouts_total Connections dropped: a request took longer than --read-timeout-ms "
            "to arrive.\n"
            "# TYPE dovetail_read_timeouts_total counter\ndovetail_read_timeouts_total %llu\n"
            "# HELP dovetail_inflight_calls RPC requests taken in and not finished (answered early by a deadline "
            "or not).\n"
            "# TYPE dovetail_inflight_calls gauge\ndovetail_inflight_calls %zu\n"
            "# HELP dovetail_inflight_tenants Tenants with RPC requests in flight.\n"
            "# TYPE dovetail_inflight_tenants gauge\ndovetail_inflight_tenants %zu\n"
            "# HELP dovetail_inflight_rejections_total Requests refused resource_exhausted by --max-inflight "
            "(limit=\"server\") or --max-inflight-per-tenant (limit=\"tenant\").\n"
            "# TYPE dovetail_inflight_rejections_total counter\n"
            "dovetail_inflight_rejections_total{limit=\"server\"} %llu\n"
            "dovetail_inflight_rejections_total{limit=\"tenant\"} %llu\n"
            "# HELP dovetail_decode_rejections_total Requests refused resource_exhausted: decoding them would take "
            "more than --max-decode-mb.\n"
            "# TYPE dovetail_decode_rejections_total counter\ndovetail_decode_rejections_total %llu\n",
            cs.open, (unsigned long long)cs.accepted, (unsigned long long)cs.rejected,
            (unsigned long long)cs.read_timeouts, s->calls, s->inflight ? dt_inflight_tenants(s->inflight) : 0,
            (unsigned long long)s->inflight_rejected[0], (unsigned long long)s->inflight_rejected[1],
            (unsigned long long)s->decode_rejected);
}

static void serve_metrics(dt_server *s, struct evhttp_request *req)
{
    atomic_fetch_add(&s->metrics.http_other[1], 1);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    dt_metrics_render(&s->metrics, f);
    dt_auth_metrics_render(s->auth, f);
    dt_cache_stats cs;
    memset(&cs, 0, sizeof cs);
    if (s->cache) dt_cache_stats_get(s->cache, &cs);
    fprintf(f,
            "# HELP dovetail_cache_hits_total Match answers served from the cache.\n"
            "# TYPE dovetail_cache_hits_total counter\ndovetail_cache_hits_total %llu\n"
            "# HELP dovetail_cache_misses_total Cache lookups that found nothing (or failed).\n"
            "# TYPE dovetail_cache_misses_total counter\ndovetail_cache_misses_total %llu\n"
            "# HELP dovetail_cache_sets_total Answers stored in the cache.\n"
            "# TYPE dovetail_cache_sets_total counter\ndovetail_cache_sets_total %llu\n"
            "# HELP dovetail_cache_skipped_total Cache commands not sent because Redis was down or backed up.\n"
            "# TYPE dovetail_cache_skipped_total counter\ndovetail_cache_skipped_total %llu\n"
            "# HELP dovetail_redis_errors_total Redis commands that failed or got a bad reply.\n"
            "# TYPE dovetail_redis_errors_total counter\ndovetail_redis_errors_total %llu\n"
            "# HELP dovetail_redis_timeouts_total Redis commands not answered in time.\n"
            "# TYPE dovetail_redis_timeouts_total counter\ndovetail_redis_timeouts_total %llu\n"
            "# HELP dovetail_redis_reconnects_total Connections to Redis re-established.\n"
            "# TYPE dovetail_redis_reconnects_total counter\ndovetail_redis_reconnects_total %llu\n"
            "# HELP dovetail_redis_connected Whether the Redis connection is up (1) or not (0).\n"
            "# TYPE dovetail_redis_connected gauge\ndovetail_redis_connected %d\n"
            "# HELP dovetail_queue_length Jobs waiting for a worker.\n"
            "# TYPE dovetail_queue_length gauge\ndovetail_queue_length %zu\n",
            (unsigned long long)cs.hits, (unsigned long long)cs.misses, (unsigned long long)cs.sets,
            (unsigned long long)cs.skipped, (unsigned long long)cs.errors, (unsigned long long)cs.timeouts, (unsigned long long)cs.reconnects,
            cs.connected, dt_pool_queued(s->pool));
    /* index sizes: the engine is read under the lock only if it is free right now; the loop never
     * waits for a writer. A busy scrape shows the sizes of the last idle moment. */
    if (pthread_rwlock_tryrdlock(&s->lock) == 0) {
        char *sz = NULL;
        size_t szl = 0;
        FILE *g = open_memstream(&sz, &szl);
        if (g) {
            fputs("# HELP dovetail_index_records Live records per tenant and side.\n"
                  "# TYPE dovetail_index_records gauge\n",
                  g);
            size_t nt;
            const char *const *names = dt_engine_tenants(s->engine, &nt);
            for (size_t i = 0; i < nt; i++)
                for (int side = 0; side < 2; side++) {
                    dt_index *idx = dt_engine_index(s->engine, names[i], (dt_side)side);
                    fputs("dovetail_index_records{tenant=\"", g);
                    dt_metrics_label(g, names[i]);
                    fprintf(g, "\",side=\"%s\"} %zu\n", dt_side_name((dt_side)side), idx ? dt_index_count(idx) : 0);
                }
            fclose(g);
            free(s->metrics_sizes);
            s->metrics_sizes = sz;
        }
        pthread_rwlock_unlock(&s->lock);
    }
    if (s->metrics_sizes) fputs(s->metrics_sizes, f);
    dt_jobs_metrics(s->jobs, f);
    render_limits(s, f);
    fclose(f);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    free(text);
}

/* ---- authentication (auth.c decides; this reads headers and answers) ---- */

/* Identifies the request's bearer token: TW_OK with *who set, or TW_UNAUTHENTICATED with err and
 * the WWW-Authenticate header added to the reply. */
static dt_twirp_code authenticate(dt_server *s, struct evhttp_request *req, int *who, dt_err *err)
{
    const char *vals[2];
    size_t n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    if (!strcasecmp(kv->key, "Authorization") && n < 2) vals[n++] = kv->value;
    if (dt_auth_identify(s->auth, vals, n, who, NULL, err) == 0) return TW_OK;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"dovetail\"");
    return TW_UNAUTHENTICATED;
}

/* Checks a plain GET route ("GET /metrics", "GET /events") for tenant (NULL: none): 0, or -1
 * after answering 401 or 403 with a Twirp JSON error. */
static int auth_route(dt_server *s, struct evhttp_request *req, const char *route, const char *tenant)
{
    dt_err err = DT_ERR_INIT;
    int who;
    dt_twirp_code code = authenticate(s, req, &who, &err);
    if (code == TW_OK && dt_auth_allow(s->auth, who, route, tenant, &err) < 0) code = TW_PERMISSION_DENIED;
    if (code == TW_OK) return 0;
    char msg[300];
    safe_msg(msg, sizeof msg, err.msg);
    send_twirp_error(req, code, msg, NULL, NULL);
    return -1;
}

/* ---- decoding request bodies ---- */

#define DECODE_INLINE_MAX 32768 /* bodies larger than this are decoded on a worker */
#define DECODE_FLOW 0            /* the pool flow of those decoding jobs (tenants hash elsewhere) */

static void proceed(dt_call *c);

/* Counts what protobuf-c allocates and refuses beyond a budget: the hard stop behind dt_pbcheck's
 * estimate. Blocks come from malloc, so the message is freed with the default allocator. */
typedef struct budget {
    size_t used, limit;
    bool tripped;
} budget;

static void *budget_alloc(void *ud, size_t n)
{
    budget *b = ud;
    if (n > b->limit - b->used) {
        b->tripped = true;
        return NULL;
    }
    b->used += n;
    return malloc(n);
}

static void budget_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

/* Decodes the body into c->in: 0, or -1 with c->code and c->err set (malformed, naming the field
 * when one is at fault, or resource_exhausted when decoding would take more than --max-decode-mb).
 * Reads only the call and the configuration: runs on the loop or on a worker. */
static int decode(dt_call *c, const uint8_t *data, size_t len)
{
    dt_server *s = c->srv;
    const ProtobufCMessageDescriptor *d = c->method->input;
    size_t limit = s->cfg.max_decode ? s->cfg.max_decode : SIZE_MAX;
    dt_err err = DT_ERR_INIT;
    int rc;
    if (c->json) {
        rc = dt_pbjson_decode_bounded(d, (const char *)data, len, DT_PBJSON_MAX_DEPTH, limit, &c->in, &err);
        if (rc == 0) return 0;
        if (!err.msg[0]) snprintf(err.msg, sizeof err.msg, "the body is not valid JSON for %s", d->name);
    } else {
        rc = dt_pbcheck(d, data, len, limit, NULL, &err);
        if (rc == 0) {
            budget b = {0, limit, false};
            ProtobufCAllocator a = {budget_alloc, budget_free, &b};
            c->in = protobuf_c_message_unpack(d, &a, len, data);
            if (c->in) return 0;
            if (b.tripped)
                rc = dt_err_set(&err, DT_ELIMIT, "", "decoding the request would take more than %zu bytes of memory",
                                limit);
            else
                rc = dt_err_set(&err, DT_EINVAL, "", "the body is not a valid protobuf-encoded %s", d->name);
        }
    }
    if (rc == -DT_ELIMIT) {
        c->code = TW_RESOURCE_EXHAUSTED;
        if (s->cfg.max_decode)
            snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg), " (--max-decode-mb %zu)",
                     s->cfg.max_decode >> 20);
    } else if (rc == -DT_ERANGE) {
        c->code = TW_INVALID_ARGUMENT; /* as the same value sent in protobuf is */
        err.code = DT_EINVAL;
    } else {
        c->code = rc == -DT_ENOMEM ? TW_INTERNAL : TW_MALFORMED;
    }
    c->err = err;
    return -1;
}

/* A large body's decoding, as a pool job: the call's own job, reused for its RPC afterwards. */
static void decode_run(dt_job *j, void *wctx)
{
    (void)wctx;
    dt_call *c = (dt_call *)j;
    c->decode_rc = decode(c, c->body, c->body_len);
}

static void decode_done(dt_job *j)
{
    dt_call *c = (dt_call *)j;
    dt_server *s = c->srv;
    c->pending--;
    if (!j->ran) {
        fail(c, TW_UNAVAILABLE, NULL, "%s", "the server is shutting down; retry on another replica");
    } else if (c->decode_rc < 0) {
        if (c->code == TW_RESOURCE_EXHAUSTED) s->decode_rejected++;
        dt_call_answer(c);
    } else {
        proceed(c);
        return;
    }
    dt_call_release(c);
}

static const dt_job_vt decode_vt = {decode_run, NULL, decode_done};

#define TWIRP_PREFIX "/twirp/"

/* HEAD (RFC 9110): headers only, never a body - evhttp would send the body of a reply to HEAD
 * without a Content-Length, and a keep-alive client would read it as the start of its next
 * response. /healthz answers as GET does; everything else 405 with the method it takes. */
static void head_reply(dt_server *s, struct evhttp_request *req, const char *path)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (!strcmp(path, "/healthz")) {
        atomic_fetch_add(&s->metrics.http_other[0], 1);
        evhttp_add_header(h, "Content-Type", "text/plain");
        evhttp_add_header(h, "Content-Length", "3"); /* GET's "ok\n" */
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    evhttp_add_header(h, "Allow", strncmp(path, TWIRP_PREFIX, strlen(TWIRP_PREFIX)) ? "GET" : "POST");
    evhttp_add_header(h, "Content-Length", "0");
    evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    dt_server *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path) path = "/";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_HEAD) {
        head_reply(s, req, path);
        return;
    }
    if (!strcmp(path, "/healthz")) {
        atomic_fetch_add(&s->metrics.http_other[0], 1);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, "ok\n", 3);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    if (!strcmp(path, "/metrics") && cmd == EVHTTP_REQ_GET) {
        if (s->auth && auth_route(s, req, "GET /metrics", NULL) < 0) return;
        serve_metrics(s, req);
        return;
    }
    if (!strncmp(path, "/events/", 8) && cmd == EVHTTP_REQ_GET) {
        if (!dt_event_path_ok(path)) {
            atomic_fetch_add(&s->metrics.http_other[3], 1);
            struct evbuffer *b = evbuffer_new();
            evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; charset=utf-8");
            if (b) evbuffer_add_printf(b, "no such page (event pages are /events/<tenant>/<event id>.html)\n");
            evhttp_send_reply(req, 404, "Not Found", b);
            if (b) evbuffer_free(b);
            return;
        }
        if (s->auth) {
            char *tenant = dt_event_path_tenant(path);
            int rc = auth_route(s, req, "GET /events", tenant ? tenant : "");
            free(tenant);
            if (rc < 0) return;
        }
        dt_event_serve(s, req, path); /* PairEvent schedule pages (rpc_event.c) */
        return;
    }
    const ProtobufCServiceDescriptor *svc = &dovetail__v1__matchmaker__descriptor;
    size_t plen = strlen(TWIRP_PREFIX), slen = strlen(svc->name);
    if (strncmp(path, TWIRP_PREFIX, plen) != 0 || strncmp(path + plen, svc->name, slen) != 0 || path[plen + slen] != '/') {
        bad_route(s, req, path, "no such route (RPCs are POST /twirp/dovetail.v1.Matchmaker/<Method>)");
        return;
    }
    const char *mname = path + plen + slen + 1;
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(svc, mname);
    unsigned mi = m ? (unsigned)dt_method_find(m->name) : DT_M_COUNT;
    if (mi == DT_M_COUNT) {
        bad_route(s, req, path, "no such method");
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        bad_route(s, req, path, "unsupported method (only POST is allowed)");
        return;
    }
    char ctbuf[128];
    const char *ct = content_type(req, ctbuf, sizeof ctbuf);
    bool json;
    if (!strcmp(ct, "application/json"))
        json = true;
    else if (!strcmp(ct, "application/protobuf"))
        json = false;
    else {
        char why[200];
        snprintf(why, sizeof why, "unexpected Content-Type: \"%.100s\" (use application/protobuf or application/json)", ct);
        bad_route(s, req, path, why);
        return;
    }
    if (s->cfg.max_inflight && s->calls >= s->cfg.max_inflight) {
        s->inflight_rejected[0]++;
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the server is busy: %zu requests are in flight, its limit (--max-inflight); retry later",
                 s->calls);
        send_twirp_error(req, TW_RESOURCE_EXHAUSTED, msg, NULL, NULL);
        dt_metrics_request(&s->metrics, mi, TW_RESOURCE_EXHAUSTED, 0);
        return;
    }
    dt_call *c = calloc(1, sizeof *c);
    if (!c) {
        send_twirp_error(req, TW_INTERNAL, "out of memory", NULL, NULL);
        return;
    }
    s->calls++;
    c->srv = s;
    c->req = req;
    c->method = m;
    c->method_index = mi;
    c->json = json;
    c->t_start_us = dt_now_us();
    atomic_fetch_add(&s->metrics.in_flight, 1);
    int who = -1;
    c->auth_seen = s->auth;
    if (s->auth && (c->code = authenticate(s, req, &who, &c->err)) != TW_OK) {
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    c->auth_who = who;

    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    if (len > s->cfg.max_body) {
        char lim[64];
        snprintf(lim, sizeof lim, "%zu", s->cfg.max_body);
        fail(c, TW_RESOURCE_EXHAUSTED, NULL, "the request body is larger than the limit of %s bytes (--max-body)", lim);
        dt_call_release(c);
        return;
    }
    const uint8_t *data = len ? evbuffer_pullup(body, -1) : (const uint8_t *)"";
    if (!data) {
        fail(c, TW_INTERNAL, NULL, "%s", "out of memory reading the request body");
        dt_call_release(c);
        return;
    }
    if (len > DECODE_INLINE_MAX && s->pool && !s->stopping) {
        /* a large body would hold the loop (and every other client) while it is decoded */
        c->body = data;
        c->body_len = len;
        c->job.vt = &decode_vt;
        c->job.batchable = false;
        c->job.heavy = true;
        c->job.flow = DECODE_FLOW;
        c->pending++;
        if (dt_pool_submit(s->pool, &c->job) == 0) return;
        c->pending--;
        atomic_fetch_add(&s->metrics.queue_rejections, 1);
        fail(c, TW_RESOURCE_EXHAUSTED, NULL, "%s", "the server is busy decoding other large requests; retry later");
        dt_call_release(c);
        return;
    }
    if (decode(c, data, len) < 0) {
        if (c->code == TW_RESOURCE_EXHAUSTED) s->decode_rejected++;
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    proceed(c);
}

/* After decoding (loop thread): the tenant, the request's checks, its tenant's in-flight slot, the
 * deadline, the cache, the queue. */
static void proceed(dt_call *c)
{
    dt_server *s = c->srv;
    /* identify again only when a SIGHUP reload replaced the tokens while a worker decoded */
    int who = c->auth_who;
    if (s->auth && s->auth != c->auth_seen) c->code = authenticate(s, c->req, &who, &c->err);
    if (s->auth && c->code == TW_OK &&
        dt_auth_allow(s->auth, who, c->method->name, dt_auth_request_tenant(c->in), &c->err) < 0)
        c->code = TW_PERMISSION_DENIED;
    if (c->code != TW_OK) {
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    snprintf(c->tenant, sizeof c->tenant, "%s", dt_rpc_tenant(c));
    if (dt_rpc_precheck(c) < 0) {
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    int trc = dt_inflight_acquire(s->inflight, c->tenant, s->cfg.max_inflight_per_tenant);
    if (trc < 0) {
        c->code = TW_RESOURCE_EXHAUSTED;
        if (trc == -DT_ELIMIT) {
            s->inflight_rejected[1]++;
            dt_err_set(&c->err, DT_ELIMIT, "tenant",
                       "tenant '%s' has %zu requests in flight, its limit (--max-inflight-per-tenant); retry later",
                       c->tenant, dt_inflight_count(s->inflight, c->tenant));
        } else {
            dt_err_set(&c->err, DT_ENOMEM, NULL, "the server is out of memory; retry later");
        }
        dt_call_answer(c);
        dt_call_release(c);
        return;
    }
    c->tenant_counted = true;
    if (s->cfg.deadline_ms > 0) {
        c->deadline = evtimer_new(s->base, on_deadline, c);
        struct timeval tv = {s->cfg.deadline_ms / 1000, (s->cfg.deadline_ms % 1000) * 1000};
        if (c->deadline) evtimer_add(c->deadline, &tv);
    }
    if ((dt_methods[c->method_index].flags & DT_MF_CACHEABLE) && s->cache && make_key(c) == 0) {
        c->cacheable = true;
        c->pending++;
        if (dt_cache_get(s->cache, c->key, c->key_len, on_cache, c) == 0) return;
        c->pending--; /* no memory for the lookup: compute the answer */

    }
    submit(c);
}

int dt_http_start(dt_server *s, dt_err *err)
{
    s->http = evhttp_new(s->base);
    if (!s->http) return dt_err_set(err, DT_ENOMEM, NULL, "cannot create the HTTP server");
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    /* bodies between max_body and this are read and refused with a Twirp error; larger ones are
     * cut off by libevent with 413 and a closed connection */
    evhttp_set_max_body_size(s->http, (ev_ssize_t)(s->cfg.max_body * 2 + 65536));
    evhttp_set_max_headers_size(s->http, 64 * 1024);
    evhttp_set_timeout(s->http, s->cfg.idle_timeout_s);
    evhttp_set_gencb(s->http, on_request, s);
    dt_conns_opts co = {s->cfg.max_connections, s->cfg.read_timeout_ms};
    s->conns = dt_conns_new(s->base, s->http, &co, err);
    s->inflight = dt_inflight_new();
    if (!s->conns || !s->inflight) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    evhttp_set_default_content_type(s->http, "application/json");

    char host[256];
    snprintf(host, sizeof host, "%s", s->cfg.listen);
    char *colon = strrchr(host, ':');
    if (!colon) return dt_err_set(err, DT_EINVAL, "listen", "expected HOST:PORT, got '%s'", s->cfg.listen);
    *colon = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return dt_err_set(err, DT_EINVAL, "listen", "bad port in '%s'", s->cfg.listen);
    const char *h = host;
    if (h[0] == '[') { /* [::1]:8080 */
        h++;
        char *rb = strchr(host, ']');
        if (rb) *rb = 0;
    }
    s->sock = evhttp_bind_socket_with_handle(s->http, h, (uint16_t)port);
    if (!s->sock)
        return dt_err_set(err, DT_EIO, "listen", "cannot listen on %s: %s", s->cfg.listen, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(s->sock), (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

void dt_http_stop(dt_server *s)
{
    if (s->http) evhttp_free(s->http);
    s->http = NULL;
    dt_conns_free(s->conns); /* after evhttp_free: it closes the connections */
    s->conns = NULL;
    dt_inflight_free(s->inflight);
    s->inflight = NULL;
}
