/* test_cache.c - the response cache (server/cache.c) against a real redis-server, a fake server
 * that answers nonsense, and a brute-force LRU model for the in-process cache.
 *
 * redis-server (/usr/bin/redis-server, Debian package redis-server) is started on a free loopback
 * port and stopped by PID; it is killed, restarted and paused (SIGSTOP) mid-test. The fake server
 * runs on the test's own event loop and answers each command according to a mode (wrong types,
 * random bytes, two replies per command, silence, huge array headers, a flood, ...). What the cache
 * stored is checked with an independent synchronous hiredis client against the value format that
 * cache.h documents, computed here from xxhash directly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <xxhash.h>

#include "cache.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define SLACK_MS 300

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- the loop ---- */

static void pump_ms(struct event_base *b, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(b, &tv);
    event_base_dispatch(b);
}

typedef bool (*pred_fn)(void *arg);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until pred(arg) holds or ms have passed; returns pred's last value. Each turn
 * handles whatever is ready, waiting at most 2 ms for something to be. */
static bool pump_until(struct event_base *b, pred_fn pred, void *arg, int ms)
{
    int64_t end = now_ms() + ms;
    struct event *tick = evtimer_new(b, on_tick, NULL);
    assert_non_null(tick);
    struct timeval tv = {0, 2000};
    bool ok;
    while (!(ok = pred(arg)) && now_ms() < end) {
        evtimer_add(tick, &tv);
        event_base_loop(b, EVLOOP_ONCE);
    }
    event_free(tick);
    return ok;
}

static bool is_connected(void *arg)
{
    dt_cache_stats st;
    dt_cache_stats_get(arg, &st);
    return st.connected == 1;
}

static bool is_disconnected(void *arg)
{
    return !is_connected(arg);
}

/* ---- one GET, waited for ---- */

typedef struct got {
    int calls;
    bool in_get;        /* set around dt_cache_get: a callback seeing it was called synchronously */
    bool sync_call;
    bool hit;
    unsigned char *val;
    size_t len;
    int64_t t_start, t_done;
} got;

static void on_got(void *ud, const void *val, size_t len)
{
    got *g = ud;
    g->calls++;
    if (g->in_get) g->sync_call = true;
    g->t_done = now_ms();
    free(g->val);
    g->val = NULL;
    g->hit = val != NULL;
    g->len = len;
    if (val) {
        g->val = malloc(len ? len : 1);
        assert_non_null(g->val);
        memcpy(g->val, val, len);
    }
}

static bool got_done(void *arg)
{
    return ((got *)arg)->calls > 0;
}

static void start_get(dt_cache *c, const void *key, size_t klen, got *g)
{
    memset(g, 0, sizeof *g);
    g->t_start = now_ms();
    g->in_get = true;
    assert_int_equal(dt_cache_get(c, key, klen, on_got, g), 0);
    g->in_get = false;
    assert_int_equal(g->calls, 0);
}

/* GETs key and waits for the answer: a hit copies the value into g. */
static void get_wait(struct event_base *b, dt_cache *c, const void *key, size_t klen, got *g)
{
    start_get(c, key, klen, g);
    assert_true(pump_until(b, got_done, g, 5000));
    assert_int_equal(g->calls, 1);
    assert_false(g->sync_call);
}

static void got_fini(got *g)
{
    free(g->val);
    g->val = NULL;
}

/* ---- redis-server ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static redisReply *sync_cmd(int port, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!rc || rc->err) {
        if (rc) redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    redisFree(rc);
    return r;
}

static pid_t start_redis(int port)
{
    if (access(REDIS_SERVER, X_OK) != 0)
        fail_msg("%s is missing: these tests need a real Redis (apt-get install redis-server)", REDIS_SERVER);
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(REDIS_SERVER, "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no", "--dir", "/tmp", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    int64_t end = now_ms() + 5000;
    for (;;) {
        redisReply *r = sync_cmd(port, "PING");
        bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) freeReplyObject(r);
        if (ok) return pid;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) fail_msg("redis-server exited at start-up on port %d", port);
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("redis-server did not answer PING on port %d within 5 s", port);
        }
        usleep(10000);
    }
}

static void stop_redis(pid_t *pid)
{
    if (*pid <= 0) return;
    kill(*pid, SIGCONT);
    kill(*pid, SIGKILL);
    int st;
    waitpid(*pid, &st, 0);
    *pid = 0;
}

/* The answers live in the fixture, not on a test's stack: if an assertion fails with GETs still
 * pending, the teardown's dt_cache_free answers them into memory that is still there. */
typedef struct fx {
    struct event_base *base;
    pid_t redis;
    int port;
    dt_cache *cache;
    got g[4];
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    dt_cache_free(f->cache);
    for (size_t i = 0; i < sizeof f->g / sizeof f->g[0]; i++) got_fini(&f->g[i]);
    stop_redis(&f->redis);
    event_base_free(f->base);
    free(f);
    return 0;
}

static dt_cache_opts redis_opts(int port)
{
    dt_cache_opts o = dt_cache_opts_default();
    o.redis_host = "127.0.0.1";
    o.redis_port = port;
    o.ttl_s = 60;
    o.timeout_ms = 200;
    o.connect_timeout_ms = 500;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 100;
    return o;
}

static void fx_start(fx *f, int ttl_s)
{
    f->port = free_port();
    f->redis = start_redis(f->port);
    dt_cache_opts o = redis_opts(f->port);
    o.ttl_s = ttl_s;
    dt_err err = DT_ERR_INIT;
    f->cache = dt_cache_new(f->base, &o, &err);
    assert_non_null(f->cache);
    assert_true(pump_until(f->base, is_connected, f->cache, 3000));
}

static dt_cache_stats stats(dt_cache *c)
{
    dt_cache_stats s;
    dt_cache_stats_get(c, &s);
    return s;
}

/* The bytes cache.h says Redis holds for val under key: "DTC1", XXH3-64 of val seeded with XXH3-64
 * of key (little-endian), val. Caller frees. */
static unsigned char *framed(const void *key, size_t klen, const void *val, size_t len, size_t *out_len)
{
    unsigned char *b = malloc(12 + len);
    assert_non_null(b);
    memcpy(b, "DTC1", 4);
    uint64_t h = XXH3_64bits_withSeed(val, len, XXH3_64bits(key, klen));
    for (int i = 0; i < 8; i++) b[4 + i] = (unsigned char)(h >> (8 * i));
    if (len) memcpy(b + 12, val, len);
    *out_len = 12 + len;
    return b;
}

/* ---- Redis: round trip, miss, TTL ---- */

static void test_redis_binary_round_trip(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    const unsigned char key[] = {'d', 't', 0, '\r', '\n', 0xff, ' ', '%', 's'};
    unsigned char val[1000];
    for (size_t i = 0; i < sizeof val; i++) val[i] = (unsigned char)(i * 131 + 7);
    val[3] = 0;
    val[10] = '\r';
    val[11] = '\n';
    dt_cache_set(f->cache, key, sizeof key, val, sizeof val);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, key, sizeof key, g);
    assert_true(g->hit);
    assert_int_equal(g->len, sizeof val);
    assert_memory_equal(g->val, val, sizeof val);
    got_fini(g);

    /* what Redis holds, seen by another client, and its TTL */
    size_t flen;
    unsigned char *fv = framed(key, sizeof key, val, sizeof val, &flen);
    redisReply *r = sync_cmd(f->port, "GET %b", key, sizeof key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, flen);
    assert_memory_equal(r->str, fv, flen);
    freeReplyObject(r);
    free(fv);
    r = sync_cmd(f->port, "TTL %b", key, sizeof key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 55 && r->integer <= 60);
    freeReplyObject(r);

    /* an empty value is a hit of length 0; a value written by another client is read back */
    dt_cache_set(f->cache, "empty", 5, "", 0);
    get_wait(f->base, f->cache, "empty", 5, g);
    assert_true(g->hit);
    assert_int_equal(g->len, 0);
    got_fini(g);
    size_t big = 300000;
    unsigned char *bv = malloc(big);
    assert_non_null(bv);
    uint64_t s = 42;
    for (size_t i = 0; i < big; i++) bv[i] = (unsigned char)rng_next(&s);
    fv = framed("big", 3, bv, big, &flen);
    r = sync_cmd(f->port, "SET %b %b", "big", (size_t)3, fv, flen);
    assert_non_null(r);
    freeReplyObject(r);
    free(fv);
    get_wait(f->base, f->cache, "big", 3, g);
    assert_true(g->hit);
    assert_int_equal(g->len, big);
    assert_memory_equal(g->val, bv, big);
    got_fini(g);
    free(bv);

    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 0);
    assert_int_equal(st.sets, 2);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.timeouts, 0);
}

/* A value that is not framed for its key (another key's value, a raw value, a truncated or altered
 * one) is a miss and an error, and the connection is replaced; the right value is a hit again. */
static void test_redis_foreign_value_is_a_miss(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    dt_cache_set(f->cache, "k-a", 3, "answer for a", 12);
    dt_cache_set(f->cache, "k-b", 3, "answer for b", 12);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k-a", 3, g);
    assert_true(g->hit);
    got_fini(g);
    redisReply *ra = sync_cmd(f->port, "GET k-a");
    assert_non_null(ra);
    assert_int_equal(ra->type, REDIS_REPLY_STRING);
    size_t alen = ra->len;
    unsigned char *a = malloc(alen);
    assert_non_null(a);
    memcpy(a, ra->str, alen);
    freeReplyObject(ra);

    unsigned char altered[64];
    assert_true(alen <= sizeof altered);
    memcpy(altered, a, alen);
    altered[alen - 1] ^= 1;
    struct {
        const void *v;
        size_t len;
    } bad[] = {{a, alen}, {"answer for a", 12}, {a, alen - 1}, {altered, alen}, {a, 11}, {"", 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        redisReply *r = sync_cmd(f->port, "SET %b %b", "k-b", (size_t)3, bad[i].v, bad[i].len);
        assert_non_null(r);
        freeReplyObject(r);
        assert_true(pump_until(f->base, is_connected, f->cache, 3000));
        dt_cache_stats before = stats(f->cache);
        get_wait(f->base, f->cache, "k-b", 3, g);
        if (g->hit) fail_msg("bad value %zu of k-b was taken as a hit", i);
        dt_cache_stats after = stats(f->cache);
        assert_int_equal(after.errors, before.errors + 1);
        assert_true(pump_until(f->base, is_connected, f->cache, 3000));
        assert_true(stats(f->cache).reconnects > before.reconnects);
    }
    free(a);
    dt_cache_set(f->cache, "k-b", 3, "answer for b", 12);
    get_wait(f->base, f->cache, "k-b", 3, g);
    assert_true(g->hit);
    assert_int_equal(g->len, 12);
    assert_memory_equal(g->val, "answer for b", 12);
    got_fini(g);
}

static void test_redis_unknown_key_is_a_miss(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "nope", 4, g);
    assert_false(g->hit);
    got_fini(g);
    /* a key of another type gets an error reply: a miss, counted, and the connection stays */
    redisReply *r = sync_cmd(f->port, "LPUSH %s %s", "list", "x");
    assert_non_null(r);
    freeReplyObject(r);
    get_wait(f->base, f->cache, "list", 4, g);
    assert_false(g->hit);
    got_fini(g);
    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.reconnects, 0);
}

static void test_redis_ttl_expires(void **state)
{
    fx *f = *state;
    fx_start(f, 1);
    dt_cache_set(f->cache, "k", 1, "v", 1);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    got_fini(g);
    redisReply *r = sync_cmd(f->port, "PTTL k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 0 && r->integer <= 1000);
    freeReplyObject(r);
    pump_ms(f->base, 1150);
    get_wait(f->base, f->cache, "k", 1, g);
    assert_false(g->hit);
    got_fini(g);
}

/* ---- Redis killed, restarted, paused ---- */

static void test_redis_killed_then_restarted(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    dt_cache_set(f->cache, "k", 1, "v1", 2);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    got_fini(g);

    /* a GET on the wire when Redis dies, and GETs after */
    start_get(f->cache, "k", 1, g);
    stop_redis(&f->redis);
    assert_true(pump_until(f->base, got_done, g, 1000));
    assert_false(g->hit);
    assert_true(g->t_done - g->t_start <= 200 + SLACK_MS);
    got_fini(g);
    assert_true(pump_until(f->base, is_disconnected, f->cache, 1000));
    for (int i = 0; i < 5; i++) {
        get_wait(f->base, f->cache, "k", 1, g);
        assert_false(g->hit);
        got_fini(g);
        dt_cache_set(f->cache, "k", 1, "v2", 2);
    }
    pump_ms(f->base, 100); /* a few refused attempts */
    dt_cache_stats st = stats(f->cache);
    assert_true(st.errors >= 2);
    assert_true(st.skipped >= 10);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.connected, 0);

    f->redis = start_redis(f->port);
    assert_true(pump_until(f->base, is_connected, f->cache, 2000));
    get_wait(f->base, f->cache, "k", 1, g); /* the restarted Redis is empty */
    assert_false(g->hit);
    got_fini(g);
    dt_cache_set(f->cache, "k", 1, "v3", 2);
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    assert_int_equal(g->len, 2);
    assert_memory_equal(g->val, "v3", 2);
    got_fini(g);
    st = stats(f->cache);
    assert_true(st.reconnects >= 1);
    assert_int_equal(st.hits, 2);
}

static void test_redis_paused_get_times_out_then_recovers(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    dt_cache_set(f->cache, "k", 1, "v", 1);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    got_fini(g);

    assert_int_equal(kill(f->redis, SIGSTOP), 0);
    got *gs = &f->g[1];
    for (int i = 0; i < 3; i++) start_get(f->cache, "k", 1, &gs[i]);
    for (int i = 0; i < 3; i++) {
        assert_true(pump_until(f->base, got_done, &gs[i], 2000));
        assert_int_equal(gs[i].calls, 1);
        assert_false(gs[i].hit);
        assert_true(gs[i].t_done - gs[i].t_start <= 200 + SLACK_MS);
        got_fini(&gs[i]);
    }
    /* while paused, every GET is answered within the timeout, whether a connection is up or not */
    for (int i = 0; i < 4; i++) {
        get_wait(f->base, f->cache, "k", 1, g);
        assert_false(g->hit);
        assert_true(g->t_done - g->t_start <= 200 + SLACK_MS);
        got_fini(g);
        dt_cache_set(f->cache, "k2", 2, "x", 1);
    }
    dt_cache_stats st = stats(f->cache);
    assert_true(st.timeouts >= 3);
    assert_int_equal(st.hits, 1);

    assert_int_equal(kill(f->redis, SIGCONT), 0);
    bool hit = false;
    for (int64_t end = now_ms() + 3000; !hit && now_ms() < end;) {
        pump_until(f->base, is_connected, f->cache, 500);
        get_wait(f->base, f->cache, "k", 1, g);
        hit = g->hit;
        got_fini(g);
    }
    assert_true(hit);
}

/* A closed port: attempts back off (10, 20, 40, 80, 80, ... ms) instead of spinning. */
static void test_redis_down_backs_off(void **state)
{
    fx *f = *state;
    dt_cache_opts o = redis_opts(free_port());
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 80;
    dt_err err = DT_ERR_INIT;
    f->cache = dt_cache_new(f->base, &o, &err);
    assert_non_null(f->cache);
    pump_ms(f->base, 600);
    dt_cache_stats st = stats(f->cache);
    /* about 1 + 600/80 + 4 attempts; without back-off there would be hundreds */
    assert_true(st.errors >= 5);
    assert_true(st.errors <= 16);
    assert_int_equal(st.connected, 0);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k", 1, g);
    assert_false(g->hit);
    got_fini(g);
}

/* SETs sent in one loop turn stop at max_pending_bytes; values above max_value_bytes never go. */
static void test_redis_pending_budget_and_value_limit(void **state)
{
    fx *f = *state;
    f->port = free_port();
    f->redis = start_redis(f->port);
    dt_cache_opts o = redis_opts(f->port);
    o.max_pending_bytes = 1000;
    o.max_value_bytes = 600;
    dt_err err = DT_ERR_INIT;
    f->cache = dt_cache_new(f->base, &o, &err);
    assert_non_null(f->cache);
    assert_true(pump_until(f->base, is_connected, f->cache, 3000));
    char v[601];
    memset(v, 'v', sizeof v);
    const char *keys[] = {"k0", "k1", "k2", "k3", "k4"};
    for (int i = 0; i < 5; i++) dt_cache_set(f->cache, keys[i], 2, v, 398); /* 400 bytes each */
    dt_cache_set(f->cache, "big", 3, v, 601);
    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.sets, 2);
    assert_int_equal(st.skipped, 3);
    assert_int_equal(st.too_large, 1);
    got *g = &f->g[0];
    for (int i = 0; i < 5; i++) {
        get_wait(f->base, f->cache, keys[i], 2, g);
        assert_int_equal(g->hit, i < 2);
        got_fini(g);
    }
    /* answered SETs no longer count against the budget */
    dt_cache_set(f->cache, "k4", 2, v, 398);
    get_wait(f->base, f->cache, "k4", 2, g);
    assert_true(g->hit);
    got_fini(g);
    get_wait(f->base, f->cache, "big", 3, g);
    assert_false(g->hit);
    got_fini(g);
}

/* A listener whose accept queue is full drops SYNs: connecting hangs until connect_timeout_ms. */
static void test_redis_connect_timeout(void **state)
{
    fx *f = *state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &l), 0);
    assert_int_equal(listen(lfd, 0), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fill[i] >= 0);
        (void)connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    dt_cache_opts o = redis_opts(ntohs(a.sin_port));
    o.connect_timeout_ms = 100;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 10;
    dt_err err = DT_ERR_INIT;
    f->cache = dt_cache_new(f->base, &o, &err);
    assert_non_null(f->cache);
    got *g = &f->g[0];
    int64_t end = now_ms() + 450;
    while (now_ms() < end) {
        get_wait(f->base, f->cache, "k", 1, g);
        assert_false(g->hit);
        assert_true(g->t_done - g->t_start <= 50);
        got_fini(g);
        pump_ms(f->base, 20);
    }
    dt_cache_stats st = stats(f->cache);
    print_message("# connect timeouts %llu errors %llu\n", (unsigned long long)st.timeouts,
                  (unsigned long long)st.errors);
    assert_int_equal(st.connected, 0);
    assert_true(st.timeouts >= 2);
    assert_true(st.timeouts <= 5);
    dt_cache_free(f->cache);
    f->cache = NULL;
    for (int i = 0; i < 4; i++) close(fill[i]);
    close(lfd);
}

/* A host name is resolved once, at creation. */
static void test_redis_host_name(void **state)
{
    fx *f = *state;
    f->port = free_port();
    f->redis = start_redis(f->port);
    dt_cache_opts o = redis_opts(f->port);
    o.redis_host = "localhost";
    dt_err err = DT_ERR_INIT;
    f->cache = dt_cache_new(f->base, &o, &err);
    assert_non_null(f->cache);
    assert_true(pump_until(f->base, is_connected, f->cache, 3000));
}

/* Freeing answers every GET still on the wire, and those the callbacks issue, before returning. */
typedef struct chain {
    dt_cache *c;
    int calls;
    int more; /* GETs still to issue from the callback */
} chain;

static void on_chain(void *ud, const void *val, size_t len)
{
    (void)val;
    (void)len;
    chain *ch = ud;
    ch->calls++;
    if (ch->more > 0) {
        ch->more--;
        assert_int_equal(dt_cache_get(ch->c, "k", 1, on_chain, ch), 0);
    }
}

static void test_redis_free_answers_pending(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    assert_int_equal(kill(f->redis, SIGSTOP), 0);
    chain ch = {f->cache, 0, 3};
    for (int i = 0; i < 5; i++) assert_int_equal(dt_cache_get(f->cache, "k", 1, on_chain, &ch), 0);
    pump_ms(f->base, 20);
    assert_int_equal(ch.calls, 0);
    dt_cache_free(f->cache);
    f->cache = NULL;
    assert_int_equal(ch.calls, 8);
}

/* GETs issued from a reply callback go out on the same connection. */
static void test_redis_get_from_callback(void **state)
{
    fx *f = *state;
    fx_start(f, 60);
    dt_cache_set(f->cache, "k", 1, "v", 1);
    chain ch = {f->cache, 0, 10};
    assert_int_equal(dt_cache_get(f->cache, "k", 1, on_chain, &ch), 0);
    for (int64_t end = now_ms() + 3000; ch.calls < 11 && now_ms() < end;) pump_ms(f->base, 2);
    assert_int_equal(ch.calls, 11);
    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.hits, 11);
}

/* ---- a fake server on the test's loop ---- */

enum {
    FAKE_NIL,         /* "$-1" to GET, "+OK" to SET: an empty, well-behaved Redis */
    FAKE_ERROR,       /* "-ERR" to everything: in step, so the connection stays */
    FAKE_STATUS,      /* "+OK" to everything: a GET gets a status */
    FAKE_INTEGER,     /* ":1" to everything */
    FAKE_DOUBLE,      /* two bulk replies per command */
    FAKE_SPEAK_FIRST, /* "+hello" as soon as a client connects, then like FAKE_NIL */
    FAKE_RANDOM,      /* random bytes that are not RESP */
    FAKE_FRAGMENTS,   /* random pieces of RESP: valid replies, nested arrays, cut-offs */
    FAKE_SILENT,      /* reads, never answers */
    FAKE_CLOSE,       /* closes the connection on the first command */
    FAKE_HALF,        /* the start of a long bulk reply per command, never completed */
    FAKE_IDLE_PUSH,   /* like FAKE_NIL, plus a bulk reply pushed 20 ms after the last command */
    FAKE_HUGE_ARRAY,  /* an array header of 2^31-1 elements per command, no elements */
    FAKE_FLOOD,       /* a bulk header of 10^9 bytes and 1 MiB of them per command */
    FAKE_MODES
};

static const char *const fake_names[FAKE_MODES] = {"nil",       "error",      "status", "integer", "double",
                                                   "speak-first", "random",  "fragments", "silent", "close",
                                                   "half",      "idle-push",  "huge-array", "flood"};

#define FAKE_MAX_CONNS 256

typedef struct fake {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    int mode;
    int accepts;
    int commands;
    uint64_t rng;
    struct bufferevent *conns[FAKE_MAX_CONNS];
    struct event *push_ev; /* FAKE_IDLE_PUSH */
} fake;

static void fake_drop(fake *fk, struct bufferevent *bev)
{
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (fk->conns[i] == bev) fk->conns[i] = NULL;
    bufferevent_free(bev);
}

/* Length of one complete RESP command (array of bulk strings) at the start of p, 0 if incomplete. */
static size_t resp_command_len(const char *p, size_t n)
{
    size_t i = 0;
    long count = 0, len = 0;
    const char *e = memchr(p, '\n', n);
    if (!e || p[0] != '*') return 0;
    count = strtol(p + 1, NULL, 10);
    i = (size_t)(e - p) + 1;
    for (long k = 0; k < count; k++) {
        if (i >= n) return 0;
        e = memchr(p + i, '\n', n - i);
        if (!e) return 0;
        len = strtol(p + i + 1, NULL, 10);
        i = (size_t)(e - p) + 1 + (size_t)len + 2;
        if (i > n) return 0;
    }
    return i;
}

static void fake_reply(fake *fk, struct bufferevent *bev, bool is_get)
{
    static const char *const pieces[] = {"+OK\r\n", "$-1\r\n",  "$3\r\nabc\r\n", ":12\r\n",  "*2\r\n",
                                         "*-1\r\n", "-ERR\r\n", "$5\r\nab",       "*1\r\n*1\r\n", "$0\r\n\r\n",
                                         "\r\n",    "$",        "99999\r\n",      "*3\r\n:1\r\n"};
    struct evbuffer *out = bufferevent_get_output(bev);
    switch (fk->mode) {
    case FAKE_IDLE_PUSH: {
        struct timeval tv = {0, 20000};
        evtimer_add(fk->push_ev, &tv);
    }
    /* fall through */
    case FAKE_NIL:
    case FAKE_SPEAK_FIRST: evbuffer_add_printf(out, "%s", is_get ? "$-1\r\n" : "+OK\r\n"); break;
    case FAKE_ERROR: evbuffer_add_printf(out, "-ERR nope\r\n"); break;
    case FAKE_STATUS: evbuffer_add_printf(out, "+OK\r\n"); break;
    case FAKE_INTEGER: evbuffer_add_printf(out, ":1\r\n"); break;
    case FAKE_DOUBLE: evbuffer_add_printf(out, "$1\r\nx\r\n$1\r\ny\r\n"); break;
    case FAKE_RANDOM: {
        size_t n = 1 + rng_next(&fk->rng) % 64;
        unsigned char b[64];
        for (size_t i = 0; i < n; i++) b[i] = (unsigned char)rng_next(&fk->rng);
        while (strchr("+-:$*", b[0])) b[0] = (unsigned char)rng_next(&fk->rng);
        evbuffer_add(out, b, n);
        break;
    }
    case FAKE_FRAGMENTS: {
        size_t n = rng_next(&fk->rng) % 4;
        for (size_t i = 0; i < n; i++) {
            const char *s = pieces[rng_next(&fk->rng) % (sizeof pieces / sizeof pieces[0])];
            evbuffer_add(out, s, strlen(s));
        }
        break;
    }
    case FAKE_HALF: evbuffer_add_printf(out, "$1000\r\nab"); break;
    case FAKE_HUGE_ARRAY: evbuffer_add_printf(out, "*2147483647\r\n"); break;
    case FAKE_FLOOD: {
        evbuffer_add_printf(out, "$1000000000\r\n");
        char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 16; i++) evbuffer_add(out, chunk, sizeof chunk);
        break;
    }
    default: break;
    }
}

static void fake_read(struct bufferevent *bev, void *arg)
{
    fake *fk = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t n = evbuffer_get_length(in);
        if (!n) return;
        const char *p = (const char *)evbuffer_pullup(in, -1);
        size_t l = resp_command_len(p, n);
        if (!l) return;
        bool is_get = n > 13 && memcmp(p, "*2\r\n$3\r\nGET\r\n", 13) == 0;
        evbuffer_drain(in, l);
        fk->commands++;
        if (fk->mode == FAKE_CLOSE) {
            fake_drop(fk, bev);
            return;
        }
        fake_reply(fk, bev, is_get);
    }
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) fake_drop(arg, bev);
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    fake *fk = arg;
    fk->accepts++;
    struct bufferevent *bev = bufferevent_socket_new(fk->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    int slot = -1;
    for (int i = 0; i < FAKE_MAX_CONNS && slot < 0; i++)
        if (!fk->conns[i]) slot = i;
    if (slot < 0) {
        bufferevent_free(bev);
        return;
    }
    fk->conns[slot] = bev;
    bufferevent_setcb(bev, fake_read, NULL, fake_event, fk);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (fk->mode == FAKE_SPEAK_FIRST) evbuffer_add_printf(bufferevent_get_output(bev), "+hello\r\n");
}

static void fake_push(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fake *fk = arg;
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (fk->conns[i]) evbuffer_add_printf(bufferevent_get_output(fk->conns[i]), "$1\r\nz\r\n");
}

static void fake_start(fake *fk, struct event_base *base, int mode)
{
    memset(fk, 0, sizeof *fk);
    fk->base = base;
    fk->mode = mode;
    fk->rng = 0x5eed0000u + (uint64_t)mode;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fk->lis = evconnlistener_new_bind(base, fake_accept, fk, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                      (struct sockaddr *)&a, sizeof a);
    assert_non_null(fk->lis);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(evconnlistener_get_fd(fk->lis), (struct sockaddr *)&a, &l), 0);
    fk->port = ntohs(a.sin_port);
    fk->push_ev = evtimer_new(base, fake_push, fk);
    assert_non_null(fk->push_ev);
}

static void fake_stop(fake *fk)
{
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (fk->conns[i]) bufferevent_free(fk->conns[i]);
    evconnlistener_free(fk->lis);
    event_free(fk->push_ev);
}

#define FAKE_ROUNDS 8
#define FAKE_BURST 8

/* Drives the cache against one fake mode: each round, one GET alone (so that whatever follows its
 * reply arrives with nothing outstanding), a burst of GETs and SETs, and a pause; every GET must
 * be answered exactly once, never synchronously, within timeout_ms + slack. */
static void run_fake(struct event_base *base, int mode, dt_cache_stats *st, fake *fk)
{
    fake_start(fk, base, mode);
    dt_cache_opts o = redis_opts(fk->port);
    o.timeout_ms = 100;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 20;
    o.max_value_bytes = 4096; /* a flood trips the buffer bound (4 KiB + 64 KiB) long before the timeout */
    dt_err err = DT_ERR_INIT;
    dt_cache *c = dt_cache_new(base, &o, &err);
    assert_non_null(c);
    for (int round = 0; round < FAKE_ROUNDS; round++) {
        pump_until(base, is_connected, c, 100);
        got one;
        start_get(c, "solo", 4, &one);
        if (!pump_until(base, got_done, &one, 100 + SLACK_MS))
            fail_msg("fake server '%s': lone GET of round %d unanswered", fake_names[mode], round);
        got_fini(&one);
        pump_ms(base, mode == FAKE_IDLE_PUSH || mode == FAKE_DOUBLE ? 30 : 1);
        pump_until(base, is_connected, c, 100);
        got g[FAKE_BURST];
        for (int i = 0; i < FAKE_BURST; i++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "k%d", i);
            start_get(c, key, (size_t)kl, &g[i]);
            if (i % 3 == 0) dt_cache_set(c, key, (size_t)kl, "value", 5);
        }
        for (int i = 0; i < FAKE_BURST; i++) {
            if (!pump_until(base, got_done, &g[i], 100 + SLACK_MS))
                fail_msg("fake server '%s': GET %d of round %d unanswered after %d ms", fake_names[mode], i, round,
                         100 + SLACK_MS);
            assert_int_equal(g[i].calls, 1);
            assert_false(g[i].sync_call);
            if (g[i].t_done - g[i].t_start > 100 + SLACK_MS)
                fail_msg("fake server '%s': GET answered after %lld ms", fake_names[mode],
                         (long long)(g[i].t_done - g[i].t_start));
            got_fini(&g[i]);
        }
        for (int i = 0; i < FAKE_BURST; i++) assert_int_equal(g[i].calls, 1);
    }
    pump_ms(base, 10);
    dt_cache_stats_get(c, st);
    dt_cache_free(c);
    fake_stop(fk);
}

static void test_fake_server_modes(void **state)
{
    fx *f = *state;
    for (int mode = 0; mode < FAKE_MODES; mode++) {
        dt_cache_stats st;
        fake fk;
        run_fake(f->base, mode, &st, &fk);
        const char *name = fake_names[mode];
        print_message("# fake '%s': accepts %d commands %d hits %llu misses %llu errors %llu timeouts %llu "
                      "skipped %llu\n",
                      name, fk.accepts, fk.commands, (unsigned long long)st.hits, (unsigned long long)st.misses,
                      (unsigned long long)st.errors, (unsigned long long)st.timeouts, (unsigned long long)st.skipped);
        assert_int_equal(st.hits + st.misses, FAKE_ROUNDS * (FAKE_BURST + 1));
        switch (mode) {
        case FAKE_NIL:
            assert_int_equal(st.hits, 0);
            assert_int_equal(st.errors, 0);
            assert_int_equal(st.timeouts, 0);
            assert_int_equal(fk.accepts, 1);
            assert_int_equal(st.skipped, 0);
            break;
        case FAKE_IDLE_PUSH: /* a push that lands while a GET is out is taken as its answer */
            assert_true(st.errors >= FAKE_ROUNDS / 2);
            assert_true(fk.accepts > FAKE_ROUNDS / 2);
            break;
        case FAKE_ERROR:
            assert_int_equal(st.hits, 0);
            assert_true(st.errors >= FAKE_ROUNDS * FAKE_BURST);
            assert_int_equal(fk.accepts, 1);
            assert_int_equal(st.reconnects, 0);
            break;
        case FAKE_STATUS:
        case FAKE_INTEGER:
        case FAKE_RANDOM:
        case FAKE_CLOSE:
        case FAKE_SPEAK_FIRST:
            assert_int_equal(st.hits, 0);
            assert_true(st.errors >= FAKE_ROUNDS);
            assert_true(fk.accepts > 1);
            break;
        case FAKE_DOUBLE:
            assert_true(st.errors >= FAKE_ROUNDS);
            assert_true(fk.accepts > 1);
            break;
        case FAKE_SILENT:
        case FAKE_HALF:
            assert_int_equal(st.hits, 0);
            assert_true(st.timeouts >= FAKE_ROUNDS);
            assert_true(fk.accepts > 1);
            break;
        case FAKE_HUGE_ARRAY: /* refused before the elements are allocated, not waited for */
            assert_int_equal(st.hits, 0);
            assert_true(st.errors >= FAKE_ROUNDS);
            assert_int_equal(st.timeouts, 0);
            assert_true(fk.accepts > 1);
            break;
        case FAKE_FLOOD: /* dropped once more than the largest value is buffered (an error, where waiting
                            for the announced 10^9 bytes would end in timeouts only) */
            assert_int_equal(st.hits, 0);
            assert_true(st.errors >= FAKE_ROUNDS);
            assert_true(fk.accepts > 1);
            break;
        default: break;
        }
    }
}

/* ---- the in-process LRU ---- */

static dt_cache *local_new(struct event_base *b, size_t budget, size_t max_value, int ttl_s)
{
    dt_cache_opts o = dt_cache_opts_default();
    o.local_max_bytes = budget;
    o.max_value_bytes = max_value;
    o.ttl_s = ttl_s;
    dt_err err = DT_ERR_INIT;
    dt_cache *c = dt_cache_new(b, &o, &err);
    assert_non_null(c);
    return c;
}

static void test_local_evicts_least_recently_used(void **state)
{
    fx *f = *state;
    size_t one = 2 + 100 + DT_CACHE_ENTRY_OVERHEAD;
    f->cache = local_new(f->base, 3 * one, 1000, 60);
    char v[100];
    memset(v, 'a', sizeof v);
    dt_cache_set(f->cache, "kA", 2, v, 100);
    dt_cache_set(f->cache, "kB", 2, v, 100);
    dt_cache_set(f->cache, "kC", 2, v, 100);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "kA", 2, g); /* A is now the most recent, B the least */
    assert_true(g->hit);
    got_fini(g);
    dt_cache_set(f->cache, "kD", 2, v, 100);
    assert_int_equal(stats(f->cache).local_evictions, 1);
    const char *expect_hit[] = {"kA", "kC", "kD"};
    for (int i = 0; i < 3; i++) {
        get_wait(f->base, f->cache, expect_hit[i], 2, g);
        assert_true(g->hit);
        got_fini(g);
    }
    get_wait(f->base, f->cache, "kB", 2, g);
    assert_false(g->hit);
    got_fini(g);
    /* a value one byte over the per-entry budget, and one over max_value_bytes, are not stored */
    char *big = calloc(1, 4000);
    assert_non_null(big);
    dt_cache_set(f->cache, "kE", 2, big, 3 * one - 2 - DT_CACHE_ENTRY_OVERHEAD + 1);
    dt_cache_set(f->cache, "kF", 2, big, 1001);
    free(big);
    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.too_large, 2);
    assert_int_equal(st.local_evictions, 1);
    assert_int_equal(st.sets, 4);
}

/* The reference: entries in an array, recency as a counter, eviction by smallest counter. */
typedef struct ref_entry {
    unsigned char key[16];
    size_t klen;
    unsigned char *val;
    size_t vlen;
    uint64_t used;
} ref_entry;

static void test_local_matches_reference_lru(void **state)
{
    fx *f = *state;
    const size_t budget = 20000, max_value = 1800;
    f->cache = local_new(f->base, budget, max_value, 60);
    enum { NKEYS = 40, OPS = 4000 };
    ref_entry ref[NKEYS];
    memset(ref, 0, sizeof ref);
    bool present[NKEYS] = {false};
    size_t bytes = 0;
    uint64_t tick = 0, evictions = 0, hits = 0, s = 7;
    unsigned char *vbuf = malloc(2100);
    assert_non_null(vbuf);
    for (int k = 0; k < NKEYS; k++) {
        ref[k].klen = 1 + (size_t)k % 16;
        for (size_t i = 0; i < ref[k].klen; i++) ref[k].key[i] = (unsigned char)(k * 37 + i * 11);
    }
    for (int op = 0; op < OPS; op++) {
        int k = (int)(rng_next(&s) % NKEYS);
        ref_entry *r = &ref[k];
        if (rng_next(&s) % 2) {
            size_t vlen = rng_next(&s) % 2100;
            for (size_t i = 0; i < vlen; i++) vbuf[i] = (unsigned char)rng_next(&s);
            dt_cache_set(f->cache, r->key, r->klen, vbuf, vlen);
            if (vlen > max_value) continue;
            if (present[k]) {
                bytes -= r->klen + r->vlen + DT_CACHE_ENTRY_OVERHEAD;
                free(r->val);
            }
            r->val = malloc(vlen ? vlen : 1);
            assert_non_null(r->val);
            memcpy(r->val, vbuf, vlen);
            r->vlen = vlen;
            r->used = ++tick;
            present[k] = true;
            bytes += r->klen + vlen + DT_CACHE_ENTRY_OVERHEAD;
            while (bytes > budget) {
                int lru = -1;
                for (int j = 0; j < NKEYS; j++)
                    if (present[j] && j != k && (lru < 0 || ref[j].used < ref[lru].used)) lru = j;
                assert_true(lru >= 0);
                present[lru] = false;
                bytes -= ref[lru].klen + ref[lru].vlen + DT_CACHE_ENTRY_OVERHEAD;
                free(ref[lru].val);
                ref[lru].val = NULL;
                evictions++;
            }
        } else {
            got *g = &f->g[0];
            get_wait(f->base, f->cache, r->key, r->klen, g);
            assert_int_equal(g->hit, present[k]);
            if (present[k]) {
                hits++;
                r->used = ++tick;
                assert_int_equal(g->len, r->vlen);
                assert_memory_equal(g->val, r->val, r->vlen);
            }
            got_fini(g);
        }
    }
    dt_cache_stats st = stats(f->cache);
    assert_int_equal(st.local_evictions, evictions);
    assert_int_equal(st.hits, hits);
    assert_true(evictions > 100);
    for (int k = 0; k < NKEYS; k++) free(ref[k].val);
    free(vbuf);
}

static void test_local_ttl(void **state)
{
    fx *f = *state;
    f->cache = local_new(f->base, 1 << 20, 1000, 1);
    dt_cache_set(f->cache, "k", 1, "v", 1);
    got *g = &f->g[0];
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    got_fini(g);
    pump_ms(f->base, 1100);
    get_wait(f->base, f->cache, "k", 1, g);
    assert_false(g->hit);
    got_fini(g);
    dt_cache_set(f->cache, "k", 1, "w", 1);
    get_wait(f->base, f->cache, "k", 1, g);
    assert_true(g->hit);
    assert_memory_equal(g->val, "w", 1);
    got_fini(g);
}

/* The value handed to a callback stays valid while the callback replaces and evicts its entry. */
typedef struct replacer {
    dt_cache *c;
    int calls;
} replacer;

static void on_replace(void *ud, const void *val, size_t len)
{
    replacer *rp = ud;
    rp->calls++;
    assert_non_null(val);
    assert_int_equal(len, 500);
    char other[500];
    memset(other, 'z', sizeof other);
    dt_cache_set(rp->c, "k", 1, other, sizeof other);
    for (int i = 0; i < 10; i++) {
        char key[16];
        snprintf(key, sizeof key, "f%d", i);
        dt_cache_set(rp->c, key, 2, other, sizeof other);
    }
    const unsigned char *p = val;
    for (size_t i = 0; i < len; i++) assert_int_equal(p[i], 'a');
}

static void test_local_value_outlives_replacement_in_callback(void **state)
{
    fx *f = *state;
    f->cache = local_new(f->base, 3 * (600 + DT_CACHE_ENTRY_OVERHEAD), 1000, 60);
    char v[500];
    memset(v, 'a', sizeof v);
    dt_cache_set(f->cache, "k", 1, v, sizeof v);
    replacer rp = {f->cache, 0};
    assert_int_equal(dt_cache_get(f->cache, "k", 1, on_replace, &rp), 0);
    pump_ms(f->base, 5);
    assert_int_equal(rp.calls, 1);
    assert_true(stats(f->cache).local_evictions >= 8);
}

static void test_local_free_answers_pending(void **state)
{
    fx *f = *state;
    f->cache = local_new(f->base, 1 << 20, 1000, 60);
    dt_cache_set(f->cache, "k", 1, "v", 1);
    chain ch = {f->cache, 0, 2};
    assert_int_equal(dt_cache_get(f->cache, "k", 1, on_chain, &ch), 0);
    assert_int_equal(dt_cache_get(f->cache, "x", 1, on_chain, &ch), 0);
    assert_int_equal(ch.calls, 0);
    dt_cache_free(f->cache);
    f->cache = NULL;
    assert_int_equal(ch.calls, 4);
}

static void test_options_are_checked(void **state)
{
    fx *f = *state;
    dt_err err = DT_ERR_INIT;
    dt_cache_opts o = dt_cache_opts_default();
    o.ttl_s = 0;
    assert_null(dt_cache_new(f->base, &o, &err));
    assert_int_equal(err.code, DT_EINVAL);
    assert_string_equal(err.field, "ttl_s");
    o = redis_opts(6379);
    o.redis_port = 70000;
    assert_null(dt_cache_new(f->base, &o, &err));
    assert_string_equal(err.field, "redis_port");
    o = redis_opts(6379);
    o.timeout_ms = 0;
    assert_null(dt_cache_new(f->base, &o, &err));
    assert_string_equal(err.field, "timeout_ms");
    o = redis_opts(6379);
    o.backoff_max_ms = 5;
    assert_null(dt_cache_new(f->base, &o, &err));
    assert_string_equal(err.field, "backoff_max_ms");
    o = redis_opts(6379);
    o.redis_host = "";
    assert_null(dt_cache_new(f->base, &o, &err));
    assert_string_equal(err.field, "redis_host");
    dt_cache_free(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_redis_binary_round_trip),
        T(test_redis_foreign_value_is_a_miss),
        T(test_redis_unknown_key_is_a_miss),
        T(test_redis_ttl_expires),
        T(test_redis_killed_then_restarted),
        T(test_redis_paused_get_times_out_then_recovers),
        T(test_redis_down_backs_off),
        T(test_redis_pending_budget_and_value_limit),
        T(test_redis_connect_timeout),
        T(test_redis_host_name),
        T(test_redis_free_answers_pending),
        T(test_redis_get_from_callback),
        T(test_fake_server_modes),
        T(test_local_evicts_least_recently_used),
        T(test_local_matches_reference_lru),
        T(test_local_ttl),
        T(test_local_value_outlives_replacement_in_callback),
        T(test_local_free_answers_pending),
        T(test_options_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
