/* cache.c - the response cache: hiredis 0.14 async on the caller's event_base, or an in-process LRU.
 *
 * Redis mode keeps at most one hiredis context. Its life, and what may be done with it where:
 *
 *   DOWN --reconnect timer--> CONNECTING --onConnect(OK)--> UP
 *     ^                          |  onConnect(ERR): hiredis frees the context itself and never
 *     |                          |  calls onDisconnect; connect timer: we free it
 *     +--------------------------+------------------------------------------------+
 *   UP -> DOWN: hiredis closed it (EOF, I/O or protocol error: NULL replies, then onDisconnect),
 *               or we dropped it (timeout, wrong reply type, stray data) with conn_drop().
 *
 * Rules that keep us off freed memory (hiredis 0.14.1 async.c):
 *   - c->ac is detached (set to NULL) before anything frees the context, so every hiredis
 *     callback can tell "my live connection" (ac == c->ac) from one on its way out;
 *   - redisAsyncFree() is called only from our own libevent callbacks (immediate) or from a reply
 *     callback (hiredis defers it until the callback returns and frees before parsing the next
 *     reply), never from onConnect/onDisconnect and never twice;
 *   - every command's privdata is a heap `cmd` that lives until its reply callback, which hiredis
 *     calls exactly once (with NULL when the context is freed). conn_drop() answers the GETs of a
 *     dropped connection itself and marks their cmds orphaned; their NULL callbacks just free them.
 * Replies come in command order, so the outstanding commands form a FIFO and one timer, armed for
 * the oldest command's deadline, bounds every command's wait.
 *
 * hiredis 0.14.1 assert()s (abort) on a non-error reply that no command is waiting for. Our own
 * libevent binding (instead of adapters/libevent.h) therefore closes the connection when the socket
 * becomes readable with nothing outstanding, and a reply callback that finds unparsed bytes left
 * after the last outstanding reply drops the connection before hiredis parses them.
 *
 * What else a broken or hostile server could do to hiredis 0.14.1's reader, and the guard:
 *   - an array header ("*2147483647") makes it calloc() that many pointers before a single element
 *     arrives (and walk them all when the reply is freed): our reply functions refuse every array
 *     (we never send a command whose answer is one), which the reader reports as an error;
 *   - a bulk header announcing more than any value we store makes it buffer whatever follows: the
 *     connection is dropped once more unparsed bytes are buffered than the largest valid reply.
 * Values are stored framed (VALUE_MAGIC, then XXH3-64 of the value seeded with the XXH3-64 of the
 * key, then the value), so a GET answered with another key's value, a truncated or altered value,
 * or a stream shifted by one reply is a miss, never someone else's answer.
 */
#include "cache.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <xxhash.h>

enum { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSING };
enum { CMD_GET, CMD_SET, CMD_DEFERRED };
enum { LOST_ERROR, LOST_TIMEOUT, LOST_SHUTDOWN };

#define MAX_MS 3600000
#define VALUE_MAGIC "DTC1"
#define VALUE_HDR 12          /* magic, then the 8-byte check, little-endian */
#define READ_SLACK (64 * 1024) /* unparsed bytes allowed beyond one largest reply (a read is 16 KiB) */

/* A GET or SET sent to Redis (privdata of its reply callback), or a GET waiting in the deferred
 * queue to be answered on the next loop turn. key[] holds a GET's key (a SET's is not kept). */
typedef struct cmd {
    struct cmd *prev, *next;
    int kind;
    bool orphan;          /* answered by conn_drop(); the reply callback only frees it */
    bool lookup;          /* deferred: look key[] up in the local LRU, else answer a miss */
    int64_t deadline_us;  /* sent commands: when the connection is declared sick */
    size_t bytes;         /* SET: counted in pending_bytes */
    dt_cache_get_cb cb;
    void *ud;
    size_t klen;
    unsigned char key[];
} cmd;

typedef struct lentry {
    struct lentry *hnext;       /* bucket chain */
    struct lentry *prev, *next; /* LRU list, most recent first */
    uint64_t hash;
    int64_t expires_us;
    size_t klen, vlen;
    unsigned char data[];       /* key, then value */
} lentry;

/* Per-context event binding (our replacement for adapters/libevent.h); freed by its cleanup hook. */
typedef struct redis_ev {
    dt_cache *c;
    redisAsyncContext *ac;
    struct event *rev, *wev;
} redis_ev;

struct dt_cache {
    struct event_base *base;
    dt_cache_opts o;
    char *host;                 /* numeric address, Redis mode only */
    dt_cache_stats st;
    bool freeing;

    struct event *defer_ev;
    cmd *defer_head, *defer_tail;

    redisAsyncContext *ac;      /* the live connection, NULL when DOWN */
    int state;
    bool ever_connected;
    int backoff_ms;             /* delay before the next connection attempt */
    struct event *reconnect_ev, *connect_ev, *deadline_ev;
    cmd *out_head, *out_tail;   /* commands sent on ac, oldest first */
    size_t pending_bytes;
    redisReplyObjectFunctions reply_fns; /* hiredis' own minus arrays, for every context's reader */

    lentry **buckets;           /* nbuckets, a power of two */
    size_t nbuckets, count, bytes;
    lentry *lru_head, *lru_tail;
    lentry *pinned;             /* the entry whose value a callback is reading */
    bool pinned_dead;           /* it was removed meanwhile: free it after the callback */
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timeval tv_us(int64_t us)
{
    if (us < 0) us = 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return tv;
}

static void timer_add_us(struct event *ev, int64_t us)
{
    struct timeval tv = tv_us(us);
    evtimer_add(ev, &tv);
}

dt_cache_opts dt_cache_opts_default(void)
{
    dt_cache_opts o;
    memset(&o, 0, sizeof o);
    o.redis_host = NULL;
    o.redis_port = 6379;
    o.ttl_s = 300;
    o.timeout_ms = 50;
    o.connect_timeout_ms = 1000;
    o.backoff_min_ms = 100;
    o.backoff_max_ms = 5000;
    o.local_max_bytes = (size_t)64 << 20;
    o.max_value_bytes = (size_t)1 << 20;
    o.max_pending_bytes = (size_t)64 << 20;
    return o;
}

/* ---- deferred answers ---- */

static void defer_push(dt_cache *c, cmd *m)
{
    m->next = NULL;
    if (c->defer_tail) c->defer_tail->next = m;
    else c->defer_head = m;
    c->defer_tail = m;
    if (!c->freeing) event_active(c->defer_ev, 0, 0);
}

static void answer(dt_cache *c, dt_cache_get_cb cb, void *ud, const void *val, size_t len)
{
    if (val) c->st.hits++;
    else c->st.misses++;
    cb(ud, val, len);
}

/* ---- local LRU ---- */

static size_t charge(size_t klen, size_t vlen)
{
    return klen + vlen + DT_CACHE_ENTRY_OVERHEAD;
}

static lentry **local_slot(dt_cache *c, const void *key, size_t klen, uint64_t h)
{
    lentry **p = &c->buckets[h & (c->nbuckets - 1)];
    for (; *p; p = &(*p)->hnext)
        if ((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->data, key, klen) == 0) return p;
    return p;
}

static void lru_unlink(dt_cache *c, lentry *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->lru_head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(dt_cache *c, lentry *e)
{
    e->prev = NULL;
    e->next = c->lru_head;
    if (c->lru_head) c->lru_head->prev = e;
    else c->lru_tail = e;
    c->lru_head = e;
}

/* Unlinks the entry at *slot from the map and the list and frees it (later if pinned). */
static void local_remove(dt_cache *c, lentry **slot)
{
    lentry *e = *slot;
    *slot = e->hnext;
    lru_unlink(c, e);
    c->bytes -= charge(e->klen, e->vlen);
    c->count--;
    if (e == c->pinned) c->pinned_dead = true;
    else free(e);
}

static void local_grow(dt_cache *c)
{
    size_t n = c->nbuckets * 2;
    lentry **b = calloc(n, sizeof *b);
    if (!b) return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        lentry *e = c->buckets[i];
        while (e) {
            lentry *nx = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = nx;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

static lentry *local_find(dt_cache *c, const void *key, size_t klen)
{
    uint64_t h = XXH3_64bits(key, klen);
    lentry **slot = local_slot(c, key, klen, h);
    lentry *e = *slot;
    if (!e) return NULL;
    if (now_us() >= e->expires_us) {
        local_remove(c, slot);
        return NULL;
    }
    lru_unlink(c, e);
    lru_push_front(c, e);
    return e;
}

static void local_set(dt_cache *c, const void *key, size_t klen, const void *val, size_t len)
{
    if (charge(klen, len) > c->o.local_max_bytes) {
        c->st.too_large++;
        return;
    }
    lentry *e = malloc(sizeof *e + klen + len);
    if (!e) {
        c->st.errors++;
        return;
    }
    e->hash = XXH3_64bits(key, klen);
    e->expires_us = now_us() + (int64_t)c->o.ttl_s * 1000000;
    e->klen = klen;
    e->vlen = len;
    if (klen) memcpy(e->data, key, klen);
    if (len) memcpy(e->data + klen, val, len);
    lentry **slot = local_slot(c, key, klen, e->hash);
    if (*slot) local_remove(c, slot);
    slot = &c->buckets[e->hash & (c->nbuckets - 1)];
    e->hnext = *slot;
    *slot = e;
    lru_push_front(c, e);
    c->bytes += charge(klen, len);
    c->count++;
    c->st.sets++;
    while (c->bytes > c->o.local_max_bytes && c->lru_tail != e) {
        lentry *t = c->lru_tail;
        local_remove(c, local_slot(c, t->data, t->klen, t->hash));
        c->st.local_evictions++;
    }
    if (c->count > c->nbuckets) local_grow(c);
}

static void deliver_local(dt_cache *c, cmd *m)
{
    lentry *e = local_find(c, m->key, m->klen);
    if (!e) {
        answer(c, m->cb, m->ud, NULL, 0);
        return;
    }
    c->pinned = e;
    c->pinned_dead = false;
    answer(c, m->cb, m->ud, e->data + e->klen, e->vlen);
    c->pinned = NULL;
    if (c->pinned_dead) free(e);
}

/* Answers every deferred GET queued so far; ones queued by the callbacks wait for the next turn
 * (or, while freeing, for the caller's next round). */
static void run_deferred(dt_cache *c)
{
    cmd *m = c->defer_head;
    c->defer_head = c->defer_tail = NULL;
    while (m) {
        cmd *nx = m->next;
        if (m->lookup && !c->freeing) deliver_local(c, m);
        else answer(c, m->cb, m->ud, NULL, 0);
        free(m);
        m = nx;
    }
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_deferred(arg);
}

/* ---- Redis connection ---- */

static void schedule_reconnect(dt_cache *c)
{
    if (c->freeing) return;
    timer_add_us(c->reconnect_ev, (int64_t)c->backoff_ms * 1000);
    c->backoff_ms = c->backoff_ms > c->o.backoff_max_ms / 2 ? c->o.backoff_max_ms : c->backoff_ms * 2;
}

static void fifo_push(dt_cache *c, cmd *m)
{
    m->next = NULL;
    m->prev = c->out_tail;
    if (c->out_tail) c->out_tail->next = m;
    else c->out_head = m;
    c->out_tail = m;
    c->pending_bytes += m->bytes;
    if (!evtimer_pending(c->deadline_ev, NULL)) timer_add_us(c->deadline_ev, (int64_t)c->o.timeout_ms * 1000);
}

static void fifo_unlink(dt_cache *c, cmd *m)
{
    if (m->prev) m->prev->next = m->next;
    else c->out_head = m->next;
    if (m->next) m->next->prev = m->prev;
    else c->out_tail = m->prev;
    m->prev = m->next = NULL;
    c->pending_bytes -= m->bytes;
}

static void set_down(dt_cache *c)
{
    c->ac = NULL;
    c->state = ST_DOWN;
    c->st.connected = 0;
    evtimer_del(c->connect_ev);
    evtimer_del(c->deadline_ev);
}

/* Takes every outstanding command off the FIFO, counts it as `lost`, answers its GET with a miss
 * and leaves the cmd to its (NULL) reply callback. */
static void orphan_outstanding(dt_cache *c, int lost)
{
    cmd *m = c->out_head;
    c->out_head = c->out_tail = NULL;
    c->pending_bytes = 0;
    for (cmd *x = m; x; x = x->next) x->orphan = true;
    while (m) {
        cmd *nx = m->next;
        if (lost == LOST_TIMEOUT) c->st.timeouts++;
        else if (lost == LOST_ERROR) c->st.errors++;
        if (m->kind == CMD_GET) answer(c, m->cb, m->ud, NULL, 0);
        m = nx;
    }
}

/* Closes the live connection ourselves: from a libevent callback it is freed at once, from a reply
 * callback hiredis frees it as soon as that callback returns. */
static void conn_drop(dt_cache *c, int lost)
{
    redisAsyncContext *ac = c->ac;
    if (!ac) return;
    set_down(c);
    orphan_outstanding(c, lost);
    schedule_reconnect(c);
    redisAsyncFree(ac);
}

static void ev_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_ev *e = arg;
    dt_cache *c = e->c;
    if (c->ac != e->ac) return;
    if (c->state != ST_UP || !c->out_head) {
        /* EOF, or bytes nobody asked for */
        c->st.errors++;
        conn_drop(c, LOST_ERROR);
        return;
    }
    redisAsyncContext *ac = e->ac;
    redisAsyncHandleRead(ac);
    /* e may be gone now; c->ac is still ac only while the connection lives */
    if (c->ac != ac || c->state != ST_UP) return;
    const redisReader *rd = ac->c.reader;
    if (rd && rd->len - rd->pos > c->o.max_value_bytes + VALUE_HDR + READ_SLACK) {
        c->st.errors++;
        conn_drop(c, LOST_ERROR);
    }
}

static void ev_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_ev *e = arg;
    redisAsyncHandleWrite(e->ac);
}

static void ev_add_read(void *p) { event_add(((redis_ev *)p)->rev, NULL); }
static void ev_del_read(void *p) { event_del(((redis_ev *)p)->rev); }
static void ev_add_write(void *p) { event_add(((redis_ev *)p)->wev, NULL); }
static void ev_del_write(void *p) { event_del(((redis_ev *)p)->wev); }

static void ev_cleanup(void *p)
{
    redis_ev *e = p;
    event_free(e->rev);
    event_free(e->wev);
    free(e);
}

/* Binds ac to the loop. Unlike adapters/libevent.h, reading is armed only when hiredis asks
 * (after the first write), so a server that speaks first is caught by ev_read. */
static int ev_attach(dt_cache *c, redisAsyncContext *ac)
{
    redis_ev *e = calloc(1, sizeof *e);
    if (!e) return -1;
    e->c = c;
    e->ac = ac;
    e->rev = event_new(c->base, ac->c.fd, EV_READ, ev_read, e);
    e->wev = event_new(c->base, ac->c.fd, EV_WRITE, ev_write, e);
    if (!e->rev || !e->wev) {
        if (e->rev) event_free(e->rev);
        if (e->wev) event_free(e->wev);
        free(e);
        return -1;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    ac->ev.data = e;
    return 0;
}

/* The reader's array constructor: no reply we expect is an array. NULL makes the reader fail
 * ("out of memory") before it allocates anything for the elements; hiredis then closes. */
static void *refuse_array(const redisReadTask *task, int elements)
{
    (void)task;
    (void)elements;
    return NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    dt_cache *c = ac->data;
    if (c->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns; onDisconnect will not come */
        c->st.errors++;
        set_down(c);
        schedule_reconnect(c);
        return;
    }
    evtimer_del(c->connect_ev);
    c->state = ST_UP;
    c->st.connected = 1;
    if (c->ever_connected) c->st.reconnects++;
    c->ever_connected = true;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    dt_cache *c = ac->data;
    if (c->ac != ac) return; /* dropped by us */
    if (status != REDIS_OK) c->st.errors++;
    set_down(c);
    orphan_outstanding(c, LOST_ERROR);
    schedule_reconnect(c);
}

static void connect_now(dt_cache *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->o.redis_port);
    if (!ac || ac->err || ev_attach(c, ac) < 0) {
        c->st.errors++;
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    if (ac->c.reader && ac->c.reader->fn) {
        c->reply_fns = *ac->c.reader->fn;
        c->reply_fns.createArray = refuse_array;
        ac->c.reader->fn = &c->reply_fns;
    }
    c->ac = ac;
    c->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    timer_add_us(c->connect_ev, (int64_t)c->o.connect_timeout_ms * 1000);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dt_cache *c = arg;
    if (!c->ac) connect_now(c);
}

static void on_connect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dt_cache *c = arg;
    if (c->ac && c->state == ST_CONNECTING) {
        c->st.timeouts++;
        conn_drop(c, LOST_TIMEOUT);
    }
}

static void on_deadline_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dt_cache *c = arg;
    if (!c->ac || !c->out_head) return;
    int64_t left = c->out_head->deadline_us - now_us();
    if (left > 0) {
        timer_add_us(c->deadline_ev, left);
        return;
    }
    conn_drop(c, LOST_TIMEOUT);
}

/* Whether a reply of this type is what the command expects; ERROR replies are in step too. */
static bool reply_in_step(int kind, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) return true;
    if (kind == CMD_GET) return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL;
    return r->type == REDIS_REPLY_STATUS;
}

/* The 8-byte check of a stored value: XXH3-64 of the value, seeded with XXH3-64 of the key. */
static void value_check(const void *key, size_t klen, const void *val, size_t len,
                        unsigned char out[8])
{
    uint64_t h = XXH3_64bits_withSeed(val, len, XXH3_64bits(key, klen));
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(h >> (8 * i));
}

/* Whether a GET's bulk reply is a value stored under this command's key by dt_cache_set. */
static bool value_belongs(const cmd *m, const redisReply *r)
{
    if (r->len < VALUE_HDR || memcmp(r->str, VALUE_MAGIC, 4) != 0) return false;
    unsigned char want[8];
    value_check(m->key, m->klen, r->str + VALUE_HDR, (size_t)r->len - VALUE_HDR, want);
    return memcmp(r->str + 4, want, 8) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    dt_cache *c = ac->data;
    cmd *m = privdata;
    redisReply *r = reply;
    if (m->orphan) {
        free(m);
        return;
    }
    fifo_unlink(c, m);
    if (!r) {
        /* hiredis is freeing the context (EOF, I/O or protocol error); onDisconnect follows */
        c->st.errors++;
        if (c->ac == ac) c->state = ST_CLOSING;
        if (m->kind == CMD_GET) answer(c, m->cb, m->ud, NULL, 0);
        free(m);
        return;
    }
    const redisReader *rd = ac->c.reader;
    bool stray = !c->out_head && rd && rd->pos < rd->len;
    bool good = reply_in_step(m->kind, r) && !stray;
    if (good && m->kind == CMD_GET && r->type == REDIS_REPLY_STRING && !value_belongs(m, r))
        good = false; /* another key's value (a stream out of step), or an altered one */
    if (good && r->type != REDIS_REPLY_ERROR) c->backoff_ms = c->o.backoff_min_ms;
    if (!good || r->type == REDIS_REPLY_ERROR) c->st.errors++;
    if (!good && c->ac == ac) conn_drop(c, LOST_ERROR);
    if (m->kind == CMD_GET) {
        if (good && r->type == REDIS_REPLY_STRING)
            answer(c, m->cb, m->ud, r->str + VALUE_HDR, (size_t)r->len - VALUE_HDR);
        else answer(c, m->cb, m->ud, NULL, 0);
    }
    free(m);
}

/* ---- public API ---- */

/* The numeric form of host (copied), resolving a name once; NULL if it does not resolve. */
static char *numeric_host(const char *host, int *gai)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    *gai = getaddrinfo(host, NULL, &hints, &res);
    if (*gai == 0) {
        freeaddrinfo(res);
        return strdup(host);
    }
    hints.ai_family = AF_INET; /* hiredis 0.14 tries IPv4 first too */
    hints.ai_flags = 0;
    *gai = getaddrinfo(host, NULL, &hints, &res);
    if (*gai != 0) {
        hints.ai_family = AF_INET6;
        *gai = getaddrinfo(host, NULL, &hints, &res);
        if (*gai != 0) return NULL;
    }
    char buf[INET6_ADDRSTRLEN];
    const void *a = res->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                                              : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    const char *s = inet_ntop(res->ai_family, a, buf, sizeof buf);
    freeaddrinfo(res);
    if (!s) return NULL;
    return strdup(buf);
}

static int check_opts(const dt_cache_opts *o, dt_err *err)
{
    if (o->ttl_s < 1) return dt_err_set(err, DT_EINVAL, "ttl_s", "the cache TTL must be at least 1 second, got %d", o->ttl_s);
    if (o->max_value_bytes < 1)
        return dt_err_set(err, DT_EINVAL, "max_value_bytes", "the largest cached value must be at least 1 byte");
    if (!o->redis_host) {
        if (o->local_max_bytes < 1)
            return dt_err_set(err, DT_EINVAL, "local_max_bytes", "the in-process cache needs a budget of at least 1 byte");
        return 0;
    }
    if (!o->redis_host[0]) return dt_err_set(err, DT_EINVAL, "redis_host", "the Redis host is empty");
    if (o->redis_port < 1 || o->redis_port > 65535)
        return dt_err_set(err, DT_EINVAL, "redis_port", "the Redis port must be 1..65535, got %d", o->redis_port);
    const struct {
        const char *name;
        int v;
    } ms[] = {{"timeout_ms", o->timeout_ms},
              {"connect_timeout_ms", o->connect_timeout_ms},
              {"backoff_min_ms", o->backoff_min_ms},
              {"backoff_max_ms", o->backoff_max_ms}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (ms[i].v < 1 || ms[i].v > MAX_MS)
            return dt_err_set(err, DT_EINVAL, ms[i].name, "%s must be 1..%d milliseconds, got %d", ms[i].name, MAX_MS,
                              ms[i].v);
    if (o->backoff_max_ms < o->backoff_min_ms)
        return dt_err_set(err, DT_EINVAL, "backoff_max_ms", "backoff_max_ms (%d) is below backoff_min_ms (%d)",
                          o->backoff_max_ms, o->backoff_min_ms);
    if (o->max_pending_bytes < 1)
        return dt_err_set(err, DT_EINVAL, "max_pending_bytes", "max_pending_bytes must be at least 1 byte");
    return 0;
}

dt_cache *dt_cache_new(struct event_base *base, const dt_cache_opts *o, dt_err *err)
{
    if (!base || !o) {
        dt_err_set(err, DT_EINVAL, base ? "opts" : "base", "no %s given", base ? "cache options" : "event base");
        return NULL;
    }
    if (check_opts(o, err) < 0) return NULL;
    dt_cache *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->base = base;
    c->o = *o;
    c->o.redis_host = NULL;
    c->backoff_ms = o->backoff_min_ms;
    c->defer_ev = event_new(base, -1, 0, on_deferred, c);
    if (!c->defer_ev) goto oom;
    if (o->redis_host) {
        int gai = 0;
        c->host = numeric_host(o->redis_host, &gai);
        if (!c->host) {
            if (gai == EAI_MEMORY || gai == 0) goto oom;
            dt_err_set(err, DT_EINVAL, "redis_host", "cannot resolve the Redis host \"%s\": %s", o->redis_host,
                       gai_strerror(gai));
            dt_cache_free(c);
            return NULL;
        }
        c->o.redis_host = c->host;
        c->reconnect_ev = evtimer_new(base, on_reconnect_timer, c);
        c->connect_ev = evtimer_new(base, on_connect_timer, c);
        c->deadline_ev = evtimer_new(base, on_deadline_timer, c);
        if (!c->reconnect_ev || !c->connect_ev || !c->deadline_ev) goto oom;
        connect_now(c);
    } else {
        c->nbuckets = 64;
        c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
        if (!c->buckets) goto oom;
    }
    return c;
oom:
    dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating the cache");
    dt_cache_free(c);
    return NULL;
}

void dt_cache_free(dt_cache *c)
{
    if (!c) return;
    c->freeing = true;
    conn_drop(c, LOST_SHUTDOWN);
    while (c->defer_head) run_deferred(c);
    if (c->reconnect_ev) event_free(c->reconnect_ev);
    if (c->connect_ev) event_free(c->connect_ev);
    if (c->deadline_ev) event_free(c->deadline_ev);
    if (c->defer_ev) event_free(c->defer_ev);
    for (lentry *e = c->lru_head; e;) {
        lentry *nx = e->next;
        free(e);
        e = nx;
    }
    free(c->buckets);
    free(c->host);
    free(c);
}

int dt_cache_get(dt_cache *c, const void *key, size_t klen, dt_cache_get_cb cb, void *ud)
{
    bool local = !c->host;
    cmd *m = malloc(sizeof *m + klen);
    if (!m) return -DT_ENOMEM;
    memset(m, 0, sizeof *m);
    m->kind = CMD_DEFERRED;
    m->cb = cb;
    m->ud = ud;
    m->klen = klen;
    if (klen) memcpy(m->key, key, klen);
    if (local) {
        m->lookup = true;
        defer_push(c, m);
        return 0;
    }
    if (c->state != ST_UP || c->freeing) {
        c->st.skipped++;
        defer_push(c, m);
        return 0;
    }
    m->kind = CMD_GET;
    m->deadline_us = now_us() + (int64_t)c->o.timeout_ms * 1000;
    if (redisAsyncCommand(c->ac, on_reply, m, "GET %b", key, klen) != REDIS_OK) {
        c->st.errors++;
        m->kind = CMD_DEFERRED;
        defer_push(c, m);
        return 0;
    }
    fifo_push(c, m);
    return 0;
}

void dt_cache_set(dt_cache *c, const void *key, size_t klen, const void *val, size_t len)
{
    if (len > c->o.max_value_bytes) {
        c->st.too_large++;
        return;
    }
    if (!c->host) {
        local_set(c, key, klen, val, len);
        return;
    }
    if (c->state != ST_UP || c->freeing ||
        c->pending_bytes + klen + VALUE_HDR + len > c->o.max_pending_bytes) {
        c->st.skipped++;
        return;
    }
    cmd *m = calloc(1, sizeof *m);
    if (!m) {
        c->st.errors++;
        return;
    }
    m->kind = CMD_SET;
    m->bytes = klen + VALUE_HDR + len;
    m->deadline_us = now_us() + (int64_t)c->o.timeout_ms * 1000;
    unsigned char hdr[VALUE_HDR];
    memcpy(hdr, VALUE_MAGIC, 4);
    value_check(key, klen, val, len, hdr + 4);
    /* "%b%b": hiredis joins adjacent arguments into one, so the framed value is not copied here */
    if (redisAsyncCommand(c->ac, on_reply, m, "SET %b %b%b EX %d", key, klen, hdr, sizeof hdr, val,
                          len, c->o.ttl_s) != REDIS_OK) {
        c->st.errors++;
        free(m);
        return;
    }
    c->st.sets++;
    fifo_push(c, m);
}

void dt_cache_stats_get(const dt_cache *c, dt_cache_stats *out)
{
    *out = c->st;
}
