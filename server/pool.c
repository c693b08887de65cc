/* pool.c - worker threads, a FIFO job queue with micro-batching, and the hand-back event. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dt_pool {
    dt_pool_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dt_job *head, *tail; /* queued */
    size_t queued;
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

/* Takes the first queued job and, when it is batchable, every batchable job behind it. */
static size_t take(dt_pool *p, dt_job **batch, size_t cap)
{
    dt_job *j = p->head;
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->queued--;
    batch[0] = j;
    size_t n = 1;
    if (!j->batchable) return 1;
    dt_job *prev = NULL;
    for (dt_job *k = p->head; k && n < cap;) {
        dt_job *next = k->next;
        if (k->batchable) {
            if (prev)
                prev->next = next;
            else
                p->head = next;
            if (p->tail == k) p->tail = prev;
            p->queued--;
            batch[n++] = k;
        } else {
            prev = k;
        }
        k = next;
    }
    return n;
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
    for (;;) {
        while (!p->head && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) break;
        if (p->head->batchable && p->o.batch_window_us > 0 && p->queued < p->o.max_batch) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)p->o.batch_window_us * 1000;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            while (!p->stopping && p->queued < p->o.max_batch &&
                   pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
            }
            if (p->stopping || !p->head) continue;
        }
        size_t n = take(p, batch, cap);
        pthread_mutex_unlock(&p->mu);
        if (!wctx) {
            /* no worker context: hand the jobs back unrun (done() sees ran == false) */
        } else if (n > 1 || (batch[0]->batchable && batch[0]->vt->run_batch)) {
            batch[0]->vt->run_batch(batch, n, wctx);
        } else {
            batch[0]->vt->run(batch[0], wctx);
        }
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < n; i++) {
            batch[i]->ran = wctx != NULL;
            push_done(p, batch[i]);
        }
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
    j->next = NULL;
    j->ran = false;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
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
    for (dt_job *j = p->head; j;) { /* never run */
        dt_job *next = j->next;
        push_done(p, j);
        j = next;
    }
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    if (p->ev_done) deliver(-1, 0, p);
    if (p->ev_done) event_free(p->ev_done);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
