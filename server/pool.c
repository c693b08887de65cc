/* pool.c - worker threads, per-flow job queues served fairly, micro-batching, and the hand-back
 * event (see pool.h for the policy).
 *
 * Invariants, all under mu: a flow record exists while it has queued or running jobs; the flows
 * with queued jobs form the `active` list (in order of arrival); `queued` is the sum of their
 * queue lengths; `heavy_running` counts heavy jobs taken by workers and not yet finished.
 */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLOW_BUCKETS 256 /* hash buckets for flow records (a power of two) */

typedef struct flow {
    uint64_t key;
    dt_job *head, *tail; /* queued, oldest first */
    int running;         /* jobs of the flow taken by workers and not finished */
    uint64_t served;     /* when a worker last took one of its jobs (0: never) */
    struct flow *hnext;  /* hash chain */
    struct flow *prev, *next; /* the active list, while head != NULL */
} flow;

struct dt_pool {
    dt_pool_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    flow *buckets[FLOW_BUCKETS];
    flow *active_head, *active_tail;
    size_t queued;
    uint64_t serve_clock;
    int heavy_running, heavy_max;
    dt_job *done_head, *done_tail; /* finished, for the loop */
    bool stopping;
    struct event *ev_done;
    pthread_t *threads;
    int n_threads;
};

typedef struct worker_arg {
    dt_pool *p;
    int i;
} worker_arg;

static size_t bucket_of(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)(key & (FLOW_BUCKETS - 1));
}

static flow *flow_find(dt_pool *p, uint64_t key)
{
    for (flow *f = p->buckets[bucket_of(key)]; f; f = f->hnext)
        if (f->key == key) return f;
    return NULL;
}

static void active_add(dt_pool *p, flow *f)
{
    f->next = NULL;
    f->prev = p->active_tail;
    if (p->active_tail)
        p->active_tail->next = f;
    else
        p->active_head = f;
    p->active_tail = f;
}

static void active_remove(dt_pool *p, flow *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        p->active_head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        p->active_tail = f->prev;
    f->prev = f->next = NULL;
}

/* Frees f when it has nothing queued or running. */
static void flow_maybe_free(dt_pool *p, flow *f)
{
    if (f->head || f->running > 0) return;
    flow **pp = &p->buckets[bucket_of(f->key)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    free(f);
}

static void push_done(dt_pool *p, dt_job *j)
{
    j->next = NULL;
    if (p->done_tail)
        p->done_tail->next = j;
    else
        p->done_head = j;
    p->done_tail = j;
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dt_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    dt_job *j = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        dt_job *next = j->next;
        j->vt->done(j);
        j = next;
    }
}

static bool runnable(const dt_pool *p, const dt_job *j)
{
    return !j->heavy || p->heavy_running < p->heavy_max;
}

/* f's first queued job that may run now (NULL: none); *prev (may be NULL) gets its predecessor.
 * A heavy job waiting for the heavy share does not hold up the light jobs queued behind it in its
 * flow: a Match is never queued behind a write that waits (for instance for a snapshot). */
static dt_job *first_runnable(const dt_pool *p, const flow *f, dt_job **prev)
{
    dt_job *pv = NULL;
    for (dt_job *j = f->head; j; pv = j, j = j->next)
        if (runnable(p, j)) {
            if (prev) *prev = pv;
            return j;
        }
    return NULL;
}

/* The flow to serve next: fewest running jobs, then least recently served, among the flows
 * with a queued job that may run now. NULL when none may. */
static flow *pick(const dt_pool *p)
{
    flow *best = NULL;
    for (flow *f = p->active_head; f; f = f->next) {
        if (!first_runnable(p, f, NULL)) continue;
        if (!best || f->running < best->running || (f->running == best->running && f->served < best->served))
            best = f;
    }
    return best;
}

/* Removes job j (whose predecessor in f's queue is prev, or NULL) and accounts it as running. */
static void take_job(dt_pool *p, flow *f, dt_job *prev, dt_job *j)
{
    if (prev)
        prev->next = j->next;
    else
        f->head = j->next;
    if (f->tail == j) f->tail = prev;
    j->next = NULL;
    p->queued--;
    f->running++;
    f->served = ++p->serve_clock;
    if (j->heavy) p->heavy_running++;
    if (!f->head) active_remove(p, f);
}

/* Takes f's first runnable job and, when it is batchable, batchable jobs of every flow: one per flow per
 * round (f sitting out the first), in the order the flows became active, until cap or none is
 * left. */
static size_t take(dt_pool *p, flow *f, dt_job **batch, size_t cap)
{
    dt_job *prev = NULL, *j = first_runnable(p, f, &prev);
    take_job(p, f, prev, j);
    batch[0] = j;
    size_t n = 1;
    if (!j->batchable) return 1;
    for (bool more = true, first = true; more && n < cap; first = false) {
        more = false;
        for (flow *g = p->active_head; g && n < cap;) {
            flow *next = g->next; /* g may leave the active list */
            if (first && g == f) { /* f gave the first job: the others come first */
                more = true;
                g = next;
                continue;
            }
            dt_job *prev = NULL, *k = g->head;
            while (k && !k->batchable) prev = k, k = k->next;
            if (k) {
                take_job(p, g, prev, k);
                batch[n++] = k;
                more = true;
            }
            g = next;
        }
    }
    return n;
}

static void finished(dt_pool *p, dt_job *j, bool ran)
{
    flow *f = flow_find(p, j->flow);
    if (f) {
        f->running--;
        flow_maybe_free(p, f);
    }
    if (j->heavy) p->heavy_running--;
    j->ran = ran;
    push_done(p, j);
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    dt_pool *p = wa->p;
    void *wctx = p->o.wctx_new ? p->o.wctx_new(p->o.ud, wa->i) : NULL;
    free(wa);
    size_t cap = p->o.max_batch ? p->o.max_batch : 1;
    dt_job *one[1], **batch = malloc(cap * sizeof *batch);
    if (!batch) batch = one, cap = 1; /* no memory for batching: run jobs one at a time */
    pthread_mutex_lock(&p->mu);
    bool waited = false;
    for (;;) {
        flow *f = NULL;
        while (!p->stopping && !(f = pick(p))) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) break;
        if (!waited && first_runnable(p, f, NULL)->batchable && p->o.batch_window_us > 0 &&
            p->queued < p->o.max_batch) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)p->o.batch_window_us * 1000;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            while (!p->stopping && p->queued < p->o.max_batch &&
                   pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
            }
            waited = true; /* pick again: the flows may have changed while waiting */
            continue;
        }
        waited = false;
        size_t n = take(p, f, batch, cap);
        pthread_mutex_unlock(&p->mu);
        if (!wctx) {
            /* no worker context: hand the jobs back unrun (done() sees ran == false) */
        } else if (n > 1 || (batch[0]->batchable && batch[0]->vt->run_batch)) {
            batch[0]->vt->run_batch(batch, n, wctx);
        } else {
            batch[0]->vt->run(batch[0], wctx);
        }
        pthread_mutex_lock(&p->mu);
        bool freed_heavy = false;
        for (size_t i = 0; i < n; i++) {
            freed_heavy |= batch[i]->heavy;
            finished(p, batch[i], wctx != NULL);
        }
        /* a worker may be asleep because only heavy jobs were queued */
        if (freed_heavy && p->queued) pthread_cond_broadcast(&p->cv);
        event_active(p->ev_done, EV_READ, 0);
    }
    pthread_mutex_unlock(&p->mu);
    if (batch != one) free(batch);
    if (wctx && p->o.wctx_free) p->o.wctx_free(wctx);
    return NULL;
}

dt_pool *dt_pool_new(struct event_base *base, const dt_pool_opts *o, dt_err *err)
{
    dt_pool *p = calloc(1, sizeof *p);
    if (!p) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->o = *o;
    if (p->o.workers < 1) p->o.workers = 1;
    if (p->o.max_batch < 1) p->o.max_batch = 1;
    p->heavy_max = p->o.workers > 1 ? p->o.workers - 1 : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->ev_done = event_new(base, -1, 0, deliver, p);
    p->threads = calloc((size_t)p->o.workers, sizeof *p->threads);
    if (!p->ev_done || !p->threads) goto fail;
    for (int i = 0; i < p->o.workers; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail;
        wa->p = p;
        wa->i = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            goto fail;
        }
        p->n_threads++;
    }
    return p;
fail:
    dt_err_set(err, DT_ENOMEM, NULL, "cannot start %d worker threads", p->o.workers);
    dt_pool_free(p);
    return NULL;
}

int dt_pool_submit(dt_pool *p, dt_job *j)
{
    pthread_mutex_lock(&p->mu);
    if (p->queued >= p->o.max_queue) {
        pthread_mutex_unlock(&p->mu);
        return -DT_ELIMIT;
    }
    flow *f = flow_find(p, j->flow);
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) {
            pthread_mutex_unlock(&p->mu);
            return -DT_ENOMEM;
        }
        f->key = j->flow;
        size_t b = bucket_of(j->flow);
        f->hnext = p->buckets[b];
        p->buckets[b] = f;
    }
    j->next = NULL;
    j->ran = false;
    if (f->tail)
        f->tail->next = j;
    else {
        f->head = j;
        active_add(p, f);
    }
    f->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

size_t dt_pool_queued(const dt_pool *p)
{
    return p ? p->queued : 0; /* a racy read is fine for reporting; no pool while shutting down */
}

void dt_pool_free(dt_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_lock(&p->mu);
    while (p->active_head) { /* never run */
        flow *f = p->active_head;
        for (dt_job *j = f->head; j;) {
            dt_job *next = j->next;
            j->ran = false;
            push_done(p, j);
            j = next;
        }
        f->head = f->tail = NULL;
        active_remove(p, f);
    }
    p->queued = 0;
    for (size_t b = 0; b < FLOW_BUCKETS; b++)
        for (flow *f = p->buckets[b]; f;) {
            flow *next = f->hnext;
            free(f);
            f = next;
        }
    pthread_mutex_unlock(&p->mu);
    if (p->ev_done) deliver(-1, 0, p);
    if (p->ev_done) event_free(p->ev_done);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
