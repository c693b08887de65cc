/* conn.c - connection limit and per-request read deadline on top of evhttp (see conn.h).
 *
 * Why this shape. libevent 2.1 offers no per-request hook before a request is complete
 * (evhttp_set_newreqcb arrived in 2.2), and evhttp's timeout restarts with every byte. The one
 * per-connection hook is evhttp_set_bevcb: evhttp asks us for each connection's bufferevent. We
 * create a plain socket bufferevent (a filtering one would see the bytes, but 2.1's filters
 * cannot take evhttp's socket and do not flush a reply evhttp queues) and watch its two buffers
 * with evbuffer callbacks, which evhttp leaves alone:
 *   - bytes added to the input while no request is being read start the read clock;
 *   - bytes added to the output (the start of a reply; an interim "100 Continue" excepted) stop
 *     it: the request was read in full.
 * When the clock runs out the connection is dropped with evhttp_connection_free - unless evhttp
 * has stopped reading (EV_READ disabled), which means the request is complete and with the
 * handler. Our own evconnlistener was not an option: 2.1 has no public call that hands an
 * accepted socket to evhttp.
 * To learn when evhttp frees a connection we need its evhttp_connection, for
 * evhttp_connection_set_closecb. evhttp creates it right after the callback returns and makes it
 * the argument of the bufferevent's callbacks; one loop pass later (an event made active in the
 * callback) we read it back with bufferevent_getcb, check it with
 * evhttp_connection_get_bufferevent, and set the close callback. Until then we hold a reference
 * on the bufferevent, so a connection evhttp drops at once cannot be freed under us.
 * A connection over the limit is refused in that same pass: a short 503 written straight to the
 * socket (after reading what the client sent, so the close is not a reset), then
 * evhttp_connection_free.
 */
#include "conn.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

typedef struct conn conn;

struct dt_conns {
    struct event_base *base;
    struct evhttp *http;
    dt_conns_opts o;
    dt_conns_stats st;
    conn *head; /* every connection we know of */
};

struct conn {
    dt_conns *cs;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* once attached */
    struct event *ev;                /* first the attach pass, then the read deadline */
    struct evbuffer_cb_entry *in_cb, *out_cb;
    bool attached;
    bool held;    /* we hold a reference on bev (until attached) */
    bool reject;  /* over the limit: refused when attached */
    bool reading; /* a request is being read: its clock runs */
    uint64_t read_start_us;
    conn *prev, *next;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void conn_free(conn *c)
{
    dt_conns *cs = c->cs;
    if (c->in_cb) evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    if (c->out_cb) evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    if (c->ev) event_free(c->ev);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next) c->next->prev = c->prev;
    if (!c->reject) cs->st.open--;
    struct bufferevent *bev = c->held ? c->bev : NULL;
    free(c);
    if (bev) bufferevent_decref(bev); /* may free it: nothing of ours refers to it any more */
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_free(arg);
}

static void arm(conn *c, uint64_t elapsed_us)
{
    uint64_t limit = (uint64_t)c->cs->o.read_timeout_ms * 1000u;
    uint64_t left = elapsed_us < limit ? limit - elapsed_us : 1;
    struct timeval tv = {(time_t)(left / 1000000u), (suseconds_t)(left % 1000000u)};
    evtimer_add(c->ev, &tv);
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    conn *c = arg;
    if (!info->n_added || c->reading) return;
    c->reading = true;
    c->read_start_us = now_us();
    if (c->attached && c->cs->o.read_timeout_ms > 0) arm(c, 0);
}

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    conn *c = arg;
    if (!info->n_added || !c->reading) return;
    /* "HTTP/1.1 100 Continue": the body is still to come */
    char head[13];
    struct evbuffer_ptr at;
    size_t len = evbuffer_get_length(buf);
    if (len >= info->n_added && info->n_added >= sizeof head &&
        evbuffer_ptr_set(buf, &at, len - info->n_added, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_copyout_from(buf, &at, head, sizeof head) == (ev_ssize_t)sizeof head &&
        (!memcmp(head, "HTTP/1.1 100 ", sizeof head) || !memcmp(head, "HTTP/1.0 100 ", sizeof head)))
        return;
    c->reading = false;
    if (c->attached) evtimer_del(c->ev);
}

/* Writes a Twirp "unavailable" error to the client and closes the connection (frees c). */
static void refuse(conn *c)
{
    char body[200], resp[400];
    int bl = snprintf(body, sizeof body,
                      "{\"code\":\"unavailable\",\"msg\":\"the server has %zu connections open, its limit "
                      "(--max-connections); retry later\"}",
                      c->cs->o.max_connections);
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n%s",
                      bl, body);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0 && rl > 0 && (size_t)rl < sizeof resp) {
        char sink[4096];
        for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {
        }
        ssize_t w = send(fd, resp, (size_t)rl, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* best effort: the connection is closed either way */
    }
    evhttp_connection_free(c->evcon); /* calls on_close, which frees c */
}

static void attach(conn *c)
{
    bufferevent_data_cb rcb, wcb;
    bufferevent_event_cb ecb;
    void *cbarg = NULL;
    bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, &cbarg);
    /* no callbacks: evhttp already let go of it (our reference keeps it alive) */
    struct evhttp_connection *evcon = ecb ? cbarg : NULL;
    if (!evcon || evhttp_connection_get_bufferevent(evcon) != c->bev) {
        conn_free(c);
        return;
    }
    c->evcon = evcon;
    c->attached = true;
    evhttp_connection_set_closecb(evcon, on_close, c);
    c->held = false;
    bufferevent_decref(c->bev); /* evhttp holds its own */
    if (c->reject) {
        refuse(c);
        return;
    }
    if (c->reading && c->cs->o.read_timeout_ms > 0) arm(c, now_us() - c->read_start_us);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn *c = arg;
    if (!c->attached) {
        attach(c);
        return;
    }
    if (!c->reading) return;
    if (!(bufferevent_get_enabled(c->bev) & EV_READ)) { /* complete, and with the handler */
        c->reading = false;
        return;
    }
    c->cs->st.read_timeouts++;
    evhttp_connection_free(c->evcon); /* calls on_close, which frees c */
}

static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
    dt_conns *cs = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return NULL; /* evhttp tries its own, uncounted */
    conn *c = calloc(1, sizeof *c);
    if (!c) return bev;
    c->cs = cs;
    c->bev = bev;
    c->ev = event_new(base, -1, 0, on_event, c);
    if (c->ev) c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    if (c->in_cb) c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
    if (!c->out_cb) { /* out of memory: serve it unwatched */
        if (c->in_cb) evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->in_cb);
        if (c->ev) event_free(c->ev);
        free(c);
        return bev;
    }
    bufferevent_incref(bev);
    c->held = true;
    c->next = cs->head;
    if (cs->head) cs->head->prev = c;
    cs->head = c;
    if (cs->o.max_connections && cs->st.open >= cs->o.max_connections) {
        c->reject = true;
        cs->st.rejected++;
    } else {
        cs->st.open++;
        cs->st.accepted++;
    }
    event_active(c->ev, EV_TIMEOUT, 0);
    return bev;
}

dt_conns *dt_conns_new(struct event_base *base, struct evhttp *http, const dt_conns_opts *o, dt_err *err)
{
    dt_conns *cs = calloc(1, sizeof *cs);
    if (!cs) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    cs->base = base;
    cs->http = http;
    cs->o = *o;
    evhttp_set_bevcb(http, new_bev, cs);
    return cs;
}

void dt_conns_free(dt_conns *cs)
{
    if (!cs) return;
    while (cs->head) conn_free(cs->head);
    free(cs);
}

void dt_conns_stats_get(const dt_conns *cs, dt_conns_stats *out)
{
    if (cs)
        *out = cs->st;
    else
        memset(out, 0, sizeof *out);
}
