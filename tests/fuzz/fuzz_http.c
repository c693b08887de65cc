/* fuzz_http.c - libFuzzer target: raw bytes on a connection to dovetaild's HTTP front.
 *
 * One dt_server lives for the whole process, set up as server/main.c sets it up (metrics, an
 * empty engine, the in-process cache, the event-page store, a worker pool) and started with
 * dt_http_start, so evhttp's limits and the real request handler of server/http.c are used. It is
 * in its shutting-down state (stopping = true): every request is parsed, routed, its Content-Type
 * read, its body decoded (protobuf or JSON) and checked by dt_rpc_precheck, Match requests are
 * keyed and looked up in the cache, and then answered "unavailable" instead of running on a worker,
 * so no input changes the state the next one sees. /healthz, /metrics and /events/ pages are
 * served for real.
 *
 * Each input is written to a fresh connection on an abstract AF_UNIX socket the server also
 * accepts on (evhttp_accept_socket), the write side is shut down, and the loop runs until the
 * server has closed the connection; the replies are read and dropped. The input may hold several
 * pipelined requests. libevent itself is Debian's build, without sanitizers.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "fuzz_util.h"
#include "server.h"

/* Iterations of the loop without any progress after which a connection that is still open counts
 * as a hang. */
#define IDLE_MAX 20000

static dt_server srv;
static struct sockaddr_un addr;
static socklen_t addr_len;
static int wctx_token;

static void *wctx_new(void *ud, int worker)
{
    (void)ud, (void)worker;
    return &wctx_token;
}

static void wctx_free(void *wctx)
{
    (void)wctx;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_check(evthread_use_pthreads() == 0, "libevent without pthreads support");
    signal(SIGPIPE, SIG_IGN);
    dt_err err = DT_ERR_INIT;
    dt_config *cfg = &srv.cfg;
    cfg->listen = "127.0.0.1:0";
    cfg->workers = 1;
    cfg->max_body = 4096; /* inputs are up to 8 KiB: both sides of the limit are reached */
    cfg->max_records = 100;
    cfg->max_text = 1024;
    cfg->max_k = 100;
    cfg->max_queue = 16;
    cfg->max_batch = 4;
    cfg->deadline_ms = 0;
    cfg->idle_timeout_s = 5;
    cfg->cache_ttl_s = 60;
    cfg->dim = 16;
    cfg->quiet = true;
    pthread_rwlock_init(&srv.lock, NULL);
    dt_metrics_init(&srv.metrics);
    for (unsigned i = 0; i < DT_M_COUNT; i++) srv.metrics.method_names[i] = dt_methods[i].name;
    srv.metrics.n_methods = DT_M_COUNT;
    for (int i = 0; i < TW_COUNT && i < DT_METRICS_CODES; i++) srv.metrics.code_names[i] = dt_twirp_names[i];
    srv.metrics.n_codes = TW_COUNT < DT_METRICS_CODES ? TW_COUNT : DT_METRICS_CODES;
    srv.boot_nonce = 0x5eed;
    dt_engine_opts eo = dt_engine_opts_default();
    eo.dim = cfg->dim;
    srv.engine = dt_engine_new(&eo, &err);
    fz_check(srv.engine != NULL, "engine: %s", err.msg);
    srv.base = event_base_new();
    fz_check(srv.base != NULL, "event_base_new failed");
    dt_cache_opts co = dt_cache_opts_default();
    co.ttl_s = cfg->cache_ttl_s;
    co.local_max_bytes = (size_t)1 << 20;
    srv.cache = dt_cache_new(srv.base, &co, &err);
    fz_check(srv.cache != NULL, "cache: %s", err.msg);
    srv.events = dt_event_store_new(4, (size_t)1 << 20);
    fz_check(srv.events != NULL, "event store: out of memory");
    dt_pool_opts po = {cfg->workers, cfg->max_queue, cfg->max_batch, 0, wctx_new, wctx_free, &srv};
    srv.pool = dt_pool_new(srv.base, &po, &err);
    fz_check(srv.pool != NULL, "pool: %s", err.msg);
    fz_check(dt_http_start(&srv, &err) == 0, "dt_http_start: %s", err.msg);
    srv.stopping = true;

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fz_check(lfd >= 0, "socket: %s", strerror(errno));
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "dovetail-fuzz-http-%ld", (long)getpid());
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    fz_check(bind(lfd, (struct sockaddr *)&addr, addr_len) == 0, "bind: %s", strerror(errno));
    fz_check(listen(lfd, 64) == 0, "listen: %s", strerror(errno));
    fz_check(evhttp_accept_socket(srv.http, lfd) == 0, "evhttp_accept_socket failed");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    fz_check(c >= 0, "socket: %s", strerror(errno));
    fz_check(connect(c, (struct sockaddr *)&addr, addr_len) == 0, "connect: %s", strerror(errno));
    fz_check(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "fcntl: %s", strerror(errno));
    size_t off = 0;
    bool closed = false;
    if (size == 0) shutdown(c, SHUT_WR);
    char buf[16384];
    for (long idle = 0; !closed;) {
        bool progress = false;
        if (off < size) {
            ssize_t w = send(c, data + off, size - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                progress = true;
            } else {
                fz_check(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE ||
                                   errno == ECONNRESET),
                         "send: %s", strerror(errno));
                if (errno == EPIPE || errno == ECONNRESET) off = size; /* the server hung up early */
            }
            if (off == size) shutdown(c, SHUT_WR);
        }
        event_base_loop(srv.base, EVLOOP_NONBLOCK);
        for (;;) {
            ssize_t r = recv(c, buf, sizeof buf, 0);
            if (r > 0) {
                progress = true;
                continue;
            }
            if (r == 0 || errno == ECONNRESET) closed = true;
            else
                fz_check(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
            break;
        }
        idle = progress ? 0 : idle + 1;
        fz_check(closed || idle < IDLE_MAX, "the server neither answered nor closed the connection (%zu of %zu bytes sent)",
                 off, size);
    }
    close(c);
    /* let the server finish freeing the connection */
    for (int i = 0; i < 4; i++) event_base_loop(srv.base, EVLOOP_NONBLOCK);
    return 0;
}
