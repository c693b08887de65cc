/* main.c - dovetaild: flags and environment, start-up (load, build), the loop, shutdown.
 *
 * Every flag has an environment equivalent (DOVETAIL_ + the flag in upper case with '_' for '-');
 * a flag on the command line wins over the environment. `dovetaild --help` lists them all.
 * Without --auth-file the daemon refuses any --listen address but loopback.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/resource.h>

#include <event2/thread.h>
#include <jansson.h>

#include "auth.h"
#include "durable.h"
#include "ingest.h"
#include "outcome.h"
#include "server.h"
#include "topk.h"

typedef enum { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL, OPT_LIST } opt_kind;

typedef struct opt {
    const char *name;
    opt_kind kind;
    void *ptr;
    size_t *count; /* OPT_LIST */
    long long min, max;
    const char *help;
} opt;

static void env_name(const char *flag, char *out, size_t n)
{
    size_t j = snprintf(out, n, "DOVETAIL_");
    for (size_t i = 0; flag[i] && j + 1 < n; i++) out[j++] = flag[i] == '-' ? '_' : (char)(flag[i] & ~0x20);
    out[j] = 0;
}

static int set_opt(const opt *o, const char *v, const char *source)
{
    char *end;
    switch (o->kind) {
    case OPT_STR: *(const char **)o->ptr = v; return 0;
    case OPT_LIST: {
        if (*o->count >= 64) {
            fprintf(stderr, "dovetaild: %s --%s: at most 64 times\n", source, o->name);
            return -1;
        }
        ((const char **)o->ptr)[(*o->count)++] = v;
        return 0;
    }
    case OPT_BOOL:
        if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) *(bool *)o->ptr = true;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) *(bool *)o->ptr = false;
        else goto bad;
        return 0;
    case OPT_INT:
    case OPT_SIZE: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < o->min || x > o->max) goto bad;
        if (o->kind == OPT_INT) *(int *)o->ptr = (int)x;
        else *(size_t *)o->ptr = (size_t)x;
        return 0;
    }
    }
bad:
    fprintf(stderr, "dovetaild: %s --%s: bad value '%s' (expected %s", source, o->name, v ? v : "",
            o->kind == OPT_BOOL ? "true or false" : "an integer");
    if (o->kind == OPT_INT || o->kind == OPT_SIZE) fprintf(stderr, " in [%lld, %lld]", o->min, o->max);
    fprintf(stderr, ")\n");
    return -1;
}

static void usage(const opt *opts, size_t n, FILE *f)
{
    fprintf(f, "usage: dovetaild [options]\n\n"
               "Dovetail's matchmaking daemon: Twirp RPC (protobuf or JSON) over HTTP at\n"
               "POST /twirp/dovetail.v1.Matchmaker/<Method>, plus GET /healthz and GET /metrics.\n\n"
               "Options (each also read from the environment variable shown; the command line wins):\n");
    for (size_t i = 0; i < n; i++) {
        char env[64];
        env_name(opts[i].name, env, sizeof env);
        char left[80];
        snprintf(left, sizeof left, "--%s%s", opts[i].name,
                 opts[i].kind == OPT_BOOL ? "" : opts[i].kind == OPT_STR || opts[i].kind == OPT_LIST ? " VALUE" : " N");
        fprintf(f, "  %-28s %s [%s]\n", left, opts[i].help, env);
    }
    fprintf(f, "  %-28s this text\n", "--help");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    dt_server *s = arg;
    dt_log(&s->cfg, "signal %d: shutting down", (int)sig);
    event_base_loopexit(s->base, NULL);
}

static void on_auth_log(void *ud, bool error, const char *msg)
{
    const dt_config *cfg = ud;
    dt_config loud = *cfg;
    loud.quiet = false;
    dt_log(error ? &loud : cfg, "%s", msg);
}

static void worker_ctx_free(void *ctx)
{
    dt_worker *w = ctx;
    if (!w) return;
    dt_searcher_free(w->sr);
    dt_feedback_free(w->fb);
    free(w);
}

static void *worker_ctx_new(void *ud, int i)
{
    (void)i;
    dt_server *s = ud;
    dt_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->sr = dt_searcher_new(s->engine, NULL);
    w->fb = dt_feedback_new(s->engine, NULL);
    if (!w->sr || !w->fb) {
        worker_ctx_free(w);
        return NULL;
    }
    return w;
}

/* jansson 2.14 ignores some of its own failed allocations (its issue #362): a daemon that ran out
 * of memory inside it could emit wrong JSON, so it gets allocators that abort instead. */
static void *json_malloc_or_abort(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "dovetaild: out of memory in the JSON library (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static int read_file(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    FILE *m = open_memstream(buf, len);
    char chunk[8192];
    size_t r;
    while (m && (r = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, r, m);
    int bad = ferror(f) || !m;
    if (m) fclose(m);
    fclose(f);
    return bad ? -1 : 0;
}

/* Before a snapshot copies the outcome store: the served counts Match noted go in first. */
static void fold_before_snapshot(void *ud)
{
    dt_rpc_fold_served(ud);
}

static int load_data(dt_server *s)
{
    dt_config *cfg = &s->cfg;
    dt_err err = DT_ERR_INIT;
    if (cfg->data_dir) {
        dt_durable_opts d = {cfg->data_dir, DT_FSYNC_ALWAYS, cfg->snapshot_every_mb << 20, cfg->quiet,
                             fold_before_snapshot, s, &s->commit};
        if (dt_fsync_policy_parse(cfg->fsync, &d.policy, &err) < 0) {
            fprintf(stderr, "dovetaild: --fsync: %s\n", err.msg);
            return -1;
        }
        s->durable = s->store.durable = dt_durable_open(s->engine, s->outcomes, &s->lock, &d, &err);
        if (!s->durable) {
            fprintf(stderr, "dovetaild: --data-dir %s: %s%s%s\n", cfg->data_dir, err.field, err.field[0] ? ": " : "",
                    err.msg);
            fprintf(stderr, "dovetaild: refusing to start from state that may be wrong; see docs/durability.md\n");
            return -1;
        }
    }
    if (cfg->clusters_file) {
        char *buf = NULL;
        size_t len = 0;
        if (read_file(cfg->clusters_file, &buf, &len) < 0) {
            fprintf(stderr, "dovetaild: --clusters %s: %s\n", cfg->clusters_file, strerror(errno));
            free(buf);
            return -1;
        }
        int rc = dt_engine_parse_clusters(s->engine, buf, len, &err);
        free(buf);
        if (rc < 0) {
            fprintf(stderr, "dovetaild: --clusters %s: %s\n", cfg->clusters_file, err.msg);
            return -1;
        }
    }
    struct {
        const char *const *files;
        size_t n;
        int side;
    } sets[3] = {{cfg->achievements, cfg->n_achievements, DT_ACHIEVEMENT},
                 {cfg->demands, cfg->n_demands, DT_DEMAND},
                 {cfg->records, cfg->n_records, -1}};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sets[k].n; i++) {
            size_t loaded = 0;
            if (dt_ingest_file(s->engine, sets[k].files[i], sets[k].side, NULL, false, cfg->quiet ? NULL : stderr, 20,
                               &loaded, NULL) < 0)
                return -1;
        }
    uint64_t t0 = dt_now_us();
    size_t nt, built = 0;
    const char *const *names = dt_engine_tenants(s->engine, &nt);
    for (size_t i = 0; i < nt; i++) { /* tenants restored with their basis keep it */
        if (!dt_engine_needs_build(s->engine, names[i])) continue;
        if (dt_engine_build(s->engine, names[i], &err) < 0) {
            fprintf(stderr, "dovetaild: building the dense index of tenant %s: %s\n", names[i], err.msg);
            return -1;
        }
        built++;
    }
    /* files loaded at start and bases learned now become part of the durable state */
    if (s->durable && (built || cfg->n_achievements + cfg->n_demands + cfg->n_records) &&
        dt_durable_snapshot(s->durable, &err) < 0)
        return -1;
    for (size_t i = 0; i < nt; i++) {
        dt_index *a = dt_engine_index(s->engine, names[i], DT_ACHIEVEMENT), *d = dt_engine_index(s->engine, names[i], DT_DEMAND);
        dt_log(cfg, "tenant %s: %zu achievements, %zu demands, %zu outcome events, dense vectors: %s", names[i],
               a ? dt_index_count(a) : 0, d ? dt_index_count(d) : 0, dt_outcome_count(s->outcomes, names[i]),
               dt_engine_dense_kind(s->engine, names[i]));
        dt_server_set_epoch(s, names[i], dt_rpc_tenant_epoch(s, names[i]));
    }
    if (built) dt_log(cfg, "dense index of %zu tenants built in %.2f s", built, (double)(dt_now_us() - t0) / 1e6);
    dt_index_mem m = {0};
    size_t basis = 0;
    dt_engine_memory(s->engine, &m, &basis);
    const double mib = 1024.0 * 1024.0;
    dt_log(cfg,
           "index memory: %.0f MiB = dense rows %.0f, postings %.0f, counted terms %.0f, record text %.0f, "
           "ids %.0f, filter columns %.0f, LSA bases %.0f",
           (double)(m.rows + m.postings + m.terms + m.records + m.ids + m.columns + basis) / mib, m.rows / mib,
           m.postings / mib, m.terms / mib, m.records / mib, m.ids / mib, m.columns / mib, basis / mib);
    return 0;
}

/* Every connection takes a file descriptor: raises RLIMIT_NOFILE to fit --max-connections plus
 * the daemon's own files, or lowers the limit to what the system allows (accept() failing with
 * EMFILE would leave the listening socket ready forever, a busy loop). */
static int fit_open_files(dt_config *cfg)
{
    const rlim_t reserve = 256; /* data files, Redis, the loop's own descriptors, refused connections */
    if (!cfg->max_connections) return 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
    rlim_t need = (rlim_t)cfg->max_connections + reserve;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        if (rl.rlim_cur <= reserve + 16) {
            fprintf(stderr, "dovetaild: the open-files limit (ulimit -n) is %llu: too low to serve connections\n",
                    (unsigned long long)rl.rlim_cur);
            return -1;
        }
        size_t fit = (size_t)(rl.rlim_cur - reserve);
        dt_log(cfg, "--max-connections %zu lowered to %zu: the open-files limit (ulimit -n) is %llu", cfg->max_connections,
               fit, (unsigned long long)rl.rlim_cur);
        cfg->max_connections = fit;
    }
    return 0;
}

int main(int argc, char **argv)
{
    dt_server srv;
    memset(&srv, 0, sizeof srv);
    dt_config *cfg = &srv.cfg;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->listen = "127.0.0.1:8080";
    cfg->workers = ncpu > 0 ? (int)ncpu : 1;
    cfg->max_body = 8u << 20;
    cfg->max_records = 10000;
    cfg->max_text = DT_TEXT_MAX;
    cfg->max_k = 1000;
    cfg->max_queue = 4096;
    cfg->max_batch = 64;
    cfg->deadline_ms = 5000;
    cfg->idle_timeout_s = 60;
    cfg->cache_ttl_s = 300;
    cfg->redis_timeout_ms = 100;
    cfg->local_cache_mb = 64;
    cfg->dim = 256;
    cfg->fsync = "always";
    cfg->snapshot_every_mb = 64;
    cfg->jobs_keep = 8;
    cfg->rerank_redis_timeout_ms = 10000;
    cfg->read_timeout_ms = 5000;
    cfg->max_connections = 4096;
    cfg->max_inflight = 4096;
    cfg->max_inflight_per_tenant = 1024;
    size_t max_decode_mb = 64;
    const opt opts[] = {
        {"listen", OPT_STR, &cfg->listen, NULL, 0, 0, "address to serve on, HOST:PORT (port 0: any free port)"},
        {"workers", OPT_INT, &cfg->workers, NULL, 1, 256, "worker threads for matching and writes (default: CPUs)"},
        {"achievements", OPT_LIST, cfg->achievements, &cfg->n_achievements, 0, 0,
         "CSV/JSONL file of achievements to load at start (repeatable)"},
        {"demands", OPT_LIST, cfg->demands, &cfg->n_demands, 0, 0, "CSV/JSONL file of demands to load (repeatable)"},
        {"records", OPT_LIST, cfg->records, &cfg->n_records, 0, 0,
         "CSV/JSONL file whose rows give their side (repeatable)"},
        {"clusters", OPT_STR, &cfg->clusters_file, NULL, 0, 0, "region clusters file, lines 'name<TAB>region_prefix'"},
        {"dim", OPT_SIZE, &cfg->dim, NULL, 1, 4096, "LSA dimension of the built-in dense vectors (default 256)"},
        {"redis", OPT_STR, &cfg->redis, NULL, 0, 0, "Redis for the response cache, HOST:PORT (default: in-process cache)"},
        {"cache-ttl", OPT_INT, &cfg->cache_ttl_s, NULL, 1, 86400 * 30, "seconds a cached answer lives (default 300)"},
        {"redis-timeout-ms", OPT_INT, &cfg->redis_timeout_ms, NULL, 1, 60000,
         "a Redis lookup slower than this is a miss (default 100)"},
        {"local-cache-mb", OPT_SIZE, &cfg->local_cache_mb, NULL, 0, 1 << 20,
         "size of the in-process cache without Redis, MiB (default 64; 0: no cache)"},
        {"max-body", OPT_SIZE, &cfg->max_body, NULL, 1024, 1ll << 30, "largest request body, bytes (default 8 MiB)"},
        {"max-records", OPT_SIZE, &cfg->max_records, NULL, 1, 1000000,
         "records, ids or outcome events in one call (default 10000)"},
        {"max-text", OPT_SIZE, &cfg->max_text, NULL, 1, DT_TEXT_MAX, "bytes of a free-text query (default 65536)"},
        {"max-k", OPT_SIZE, &cfg->max_k, NULL, 1, 10000, "largest k + offset of a Match (default 1000)"},
        {"max-queue", OPT_SIZE, &cfg->max_queue, NULL, 1, 1000000,
         "requests waiting for a worker; beyond: resource_exhausted (default 4096)"},
        {"max-batch", OPT_SIZE, &cfg->max_batch, NULL, 1, 4096, "Match queries sharing one GEMM (default 64)"},
        {"batch-window-us", OPT_INT, &cfg->batch_window_us, NULL, 0, 100000,
         "wait this long for more Match queries to batch (default 0: batch what is queued)"},
        {"deadline-ms", OPT_INT, &cfg->deadline_ms, NULL, 0, 3600000,
         "per-request deadline; 0: none (default 5000)"},
        {"idle-timeout", OPT_INT, &cfg->idle_timeout_s, NULL, 1, 86400,
         "seconds without a byte in or out before a connection is closed (default 60)"},
        {"read-timeout-ms", OPT_INT, &cfg->read_timeout_ms, NULL, 0, 3600000,
         "time to receive one whole request from its first byte; slower clients are disconnected "
         "(default 5000; 0: no limit)"},
        {"max-connections", OPT_SIZE, &cfg->max_connections, NULL, 0, 1000000,
         "open connections at most; beyond: closed at once after a 503 (default 4096; 0: no limit)"},
        {"max-inflight", OPT_SIZE, &cfg->max_inflight, NULL, 0, 1000000,
         "requests taken in and not finished, at most; beyond: resource_exhausted (default 4096; 0: no limit)"},
        {"max-inflight-per-tenant", OPT_SIZE, &cfg->max_inflight_per_tenant, NULL, 0, 1000000,
         "the same per tenant, so one tenant's flood leaves room for the others (default 1024; 0: no limit)"},
        {"max-decode-mb", OPT_SIZE, &max_decode_mb, NULL, 0, 1 << 20,
         "memory decoding one request body may take, MiB, estimated before decoding; beyond: "
         "resource_exhausted (default 64; 0: no limit)"},
        {"data-dir", OPT_STR, &cfg->data_dir, NULL, 0, 0,
         "keep records and outcomes here (snapshot + journal): they survive restarts and crashes"},
        {"fsync", OPT_STR, &cfg->fsync, NULL, 0, 0,
         "journal fsync policy: always (a write is acknowledged once on disk; default), everysec, no"},
        {"snapshot-every-mb", OPT_SIZE, &cfg->snapshot_every_mb, NULL, 1, 1 << 20,
         "write a snapshot after the journal grew this much, MiB (default 64)"},
        {"auth-file", OPT_STR, &cfg->auth_file, NULL, 0, 0,
         "bearer tokens and their tenants, JSON (README: Authentication); re-read on SIGHUP; without it, "
         "--listen must be loopback"},
        {"jobs-dir", OPT_STR, &cfg->jobs_dir, NULL, 0, 0,
         "directory for re-rank job files (default <data-dir>/jobs; without either: Redis output only)"},
        {"rerank-threads", OPT_INT, &cfg->rerank_threads, NULL, 0, 1024,
         "worker threads of a re-rank job (default 0: one per CPU)"},
        {"jobs-keep", OPT_SIZE, &cfg->jobs_keep, NULL, 1, 10000,
         "finished re-rank jobs remembered, and job files kept, per tenant (default 8)"},
        {"rerank-redis-timeout-ms", OPT_INT, &cfg->rerank_redis_timeout_ms, NULL, 1, 3600000,
         "connect and command timeout of a re-rank job's Redis connection (default 10000)"},
        {"quiet", OPT_BOOL, &cfg->quiet, NULL, 0, 0, "log nothing but errors"},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    for (size_t i = 0; i < nopts; i++) {
        char env[64];
        env_name(opts[i].name, env, sizeof env);
        const char *v = getenv(env);
        if (v && *v) {
            char src[80];
            snprintf(src, sizeof src, "environment %s:", env);
            if (opts[i].kind == OPT_LIST) {
                /* a list from the environment: comma-separated */
                char *copy = strdup(v), *save = NULL;
                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                    if (set_opt(&opts[i], t, src) < 0) return 2;
                /* copy stays allocated: the list points into it for the process's life */
            } else if (set_opt(&opts[i], v, src) < 0) {
                return 2;
            }
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(opts, nopts, stdout);
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "dovetaild: unexpected argument '%s' (see --help)\n", arg);
            return 2;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = NULL;
        for (size_t i = 0; i < nopts; i++)
            if (strlen(opts[i].name) == nl && !strncmp(opts[i].name, name, nl)) o = &opts[i];
        if (!o) {
            fprintf(stderr, "dovetaild: unknown option '%s' (see --help)\n", arg);
            return 2;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && o->kind != OPT_BOOL) {
            if (a + 1 >= argc) {
                fprintf(stderr, "dovetaild: --%s needs a value\n", o->name);
                return 2;
            }
            v = argv[++a];
        }
        if (set_opt(o, v, "option") < 0) return 2;
    }

    cfg->max_decode = max_decode_mb << 20;
    if (fit_open_files(cfg) < 0) return 2;

    /* OpenBLAS: our workers are the parallelism (see topk.h) */
    dt_topk_blas_single();
    if (evthread_use_pthreads() < 0) {
        fprintf(stderr, "dovetaild: libevent without pthreads support\n");
        return 3;
    }
    signal(SIGPIPE, SIG_IGN); /* hiredis and evhttp write to sockets that may have closed */
    signal(SIGXFSZ, SIG_IGN); /* over a file size limit, a journal write fails (EFBIG) and is answered */
    json_set_alloc_funcs(json_malloc_or_abort, free);
    if (cfg->auth_file) {
        dt_err aerr = DT_ERR_INIT;
        char warning[512];
        srv.auth = dt_auth_load(cfg->auth_file, warning, sizeof warning, &aerr);
        if (!srv.auth) {
            fprintf(stderr, "dovetaild: --auth-file %s: %s%s%s\n", cfg->auth_file, aerr.field, aerr.field[0] ? ": " : "",
                    aerr.msg);
            return 2;
        }
        if (warning[0]) fprintf(stderr, "dovetaild: warning: --auth-file %s\n", warning);
        dt_log(cfg, "authentication: %zu tokens from %s", dt_auth_count(srv.auth), cfg->auth_file);
    } else if (!dt_auth_listen_is_loopback(cfg->listen)) {
        fprintf(stderr,
                "dovetaild: --listen %s is not a loopback address and there is no --auth-file: anyone who can reach "
                "it could read and change every tenant's records. Give --auth-file FILE (tokens and their tenants; "
                "see README, Authentication), or listen on 127.0.0.1\n",
                cfg->listen);
        return 2;
    }
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&srv.lock, &ra);
    pthread_mutex_init(&srv.commit, NULL);
    pthread_rwlockattr_destroy(&ra);
    dt_metrics_init(&srv.metrics);
    for (unsigned i = 0; i < DT_M_COUNT; i++) srv.metrics.method_names[i] = dt_methods[i].name;
    srv.metrics.n_methods = DT_M_COUNT;
    for (int i = 0; i < TW_COUNT && i < DT_METRICS_CODES; i++) srv.metrics.code_names[i] = dt_twirp_names[i];
    srv.metrics.n_codes = TW_COUNT < DT_METRICS_CODES ? TW_COUNT : DT_METRICS_CODES;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        srv.boot_nonce = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }

    dt_err err = DT_ERR_INIT;
    dt_engine_opts eo = dt_engine_opts_default();
    eo.dim = cfg->dim;
    srv.engine = dt_engine_new(&eo, &err);
    srv.outcomes = srv.engine ? dt_outcome_store_new(&err) : NULL;
    srv.served = srv.outcomes ? dt_served_new(&err) : NULL;
    if (!srv.served) {
        fprintf(stderr, "dovetaild: %s\n", err.msg);
        dt_outcome_store_free(srv.outcomes);
        dt_engine_free(srv.engine);
        dt_auth_free(srv.auth);
        return 3;
    }
    dt_store_init(&srv.store, srv.engine, NULL, &srv.commit, &srv.lock);
    srv.store.quiet = cfg->quiet;
    dt_rpc_store_hooks(&srv);
    int status = 0;
    char *jobs_dir = NULL;
    if (load_data(&srv) < 0) {
        status = 1;
        goto out;
    }
    /* from now on writes compact off the write lock (store/commit.c dt_store_reindex); start-up compacted inline */
    dt_engine_defer_compaction(srv.engine, true);
    srv.base = event_base_new();
    if (!srv.base) {
        fprintf(stderr, "dovetaild: cannot create the event loop\n");
        status = 3;
        goto out;
    }
    dt_cache_opts co = dt_cache_opts_default();
    char redis_host[256] = "";
    if (cfg->redis) {
        snprintf(redis_host, sizeof redis_host, "%s", cfg->redis);
        char *colon = strrchr(redis_host, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (!colon || port <= 0 || port > 65535) {
            fprintf(stderr, "dovetaild: --redis: expected HOST:PORT, got '%s'\n", cfg->redis);
            status = 2;
            goto out;
        }
        *colon = 0;
        co.redis_host = redis_host;
        co.redis_port = (int)port;
    }
    co.ttl_s = cfg->cache_ttl_s;
    co.timeout_ms = cfg->redis_timeout_ms;
    co.local_max_bytes = cfg->local_cache_mb << 20;
    if (cfg->redis || cfg->local_cache_mb) {
        srv.cache = dt_cache_new(srv.base, &co, &err);
        if (!srv.cache) {
            fprintf(stderr, "dovetaild: cache: %s\n", err.msg);
            status = 3;
            goto out;
        }
    }
    srv.events = dt_event_store_new(256, (size_t)256 << 20); /* PairEvent pages: 256 events, 256 MiB */
    if (!srv.events) {
        fprintf(stderr, "dovetaild: out of memory\n");
        status = 3;
        goto out;
    }
    if (cfg->jobs_dir || cfg->data_dir) {
        size_t n = cfg->jobs_dir ? strlen(cfg->jobs_dir) + 1 : strlen(cfg->data_dir) + sizeof "/jobs";
        if ((jobs_dir = malloc(n))) snprintf(jobs_dir, n, cfg->jobs_dir ? "%s" : "%s/jobs", cfg->jobs_dir ? cfg->jobs_dir : cfg->data_dir);
    }
    if ((cfg->jobs_dir || cfg->data_dir) && !jobs_dir) dt_err_set(&err, DT_ENOMEM, NULL, "out of memory");
    else srv.jobs = dt_jobs_new(&srv, jobs_dir, &err);
    if (!srv.jobs) {
        fprintf(stderr, "dovetaild: %s%s%s\n", err.field[0] ? "--" : "", err.field, err.field[0] ? ": " : "");
        fprintf(stderr, "dovetaild: %s\n", err.msg);
        status = 3;
        goto out;
    }
    dt_pool_opts po = {cfg->workers, cfg->max_queue, cfg->max_batch, cfg->batch_window_us,
                       worker_ctx_new, worker_ctx_free, &srv};
    srv.pool = dt_pool_new(srv.base, &po, &err);
    if (!srv.pool) {
        fprintf(stderr, "dovetaild: %s\n", err.msg);
        status = 3;
        goto out;
    }
    if (dt_http_start(&srv, &err) < 0) {
        if (err.field[0])
            fprintf(stderr, "dovetaild: --%s: %s\n", err.field, err.msg);
        else
            fprintf(stderr, "dovetaild: %s\n", err.msg);
        status = 1;
        goto out;
    }
    srv.sig_int = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    srv.sig_term = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    evsignal_add(srv.sig_int, NULL);
    evsignal_add(srv.sig_term, NULL);
    if (srv.auth) {
        srv.auth_reloader = dt_auth_reloader_new(srv.base, cfg->auth_file, &srv.auth, on_auth_log, cfg, &err);
        if (!srv.auth_reloader) {
            fprintf(stderr, "dovetaild: %s\n", err.msg);
            status = 3;
            goto out;
        }
    }
    {
        char host[256];
        snprintf(host, sizeof host, "%s", cfg->listen);
        char *colon = strrchr(host, ':');
        if (colon) *colon = 0;
        dt_log(cfg, "listening on http://%s:%d (%d workers, cache: %s)", host, srv.port, cfg->workers,
               cfg->redis ? cfg->redis : cfg->local_cache_mb ? "in-process" : "off");
        if (!srv.auth) dt_log(cfg, "authentication is off (no --auth-file): listening on loopback only");
        /* a machine-readable line for scripts and tests that start us on port 0 */
        printf("dovetaild listening on %s:%d\n", host, srv.port);
        fflush(stdout);
    }
    event_base_dispatch(srv.base);
    /* Shutdown: stop accepting; let the workers finish what they run and hand queued work back
     * (answered 503 unavailable); then run the loop a little longer so those answers are written
     * before the connections close. Requests arriving meanwhile are answered 503 too. */
    srv.stopping = true;
    dt_jobs_stop(srv.jobs); /* running re-rank jobs stop after their batch in hand and clean up */
    if (srv.sock) evhttp_del_accept_socket(srv.http, srv.sock);
    srv.sock = NULL;
    dt_pool_free(srv.pool);
    srv.pool = NULL;
    {
        struct timeval grace = {1, 0};
        event_base_loopexit(srv.base, &grace);
        event_base_dispatch(srv.base);
    }
out:
    dt_pool_free(srv.pool);
    /* a re-learn in the background finishes (no writer is left to start another); it tells the
     * jobs' epoch hand-off, so before that goes */
    dt_store_drain(&srv.store);
    dt_http_stop(&srv);
    dt_auth_reloader_free(srv.auth_reloader);
    dt_auth_free(srv.auth);
    dt_jobs_free(srv.jobs); /* a job re-learning through the store finishes first */
    srv.jobs = NULL;
    dt_store_fini(&srv.store);
    free(jobs_dir);
    /* a clean stop leaves a fresh snapshot, so the next start replays nothing */
    dt_durable_close(srv.durable, status == 0);
    if (srv.sig_int) event_free(srv.sig_int);
    if (srv.sig_term) event_free(srv.sig_term);
    dt_cache_free(srv.cache);
    dt_event_store_free(srv.events);
    if (srv.base) event_base_free(srv.base);
    dt_served_free(srv.served);
    dt_outcome_store_free(srv.outcomes);
    dt_engine_free(srv.engine);
    pthread_rwlock_destroy(&srv.lock);
    pthread_mutex_destroy(&srv.commit);
    free(srv.epochs);
    free(srv.metrics_sizes);
    return status;
}
