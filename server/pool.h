/* pool.h - the worker threads that run matching and writes off the event loop.
 *
 * Jobs are queued by the loop thread, run on a worker, and handed back to the loop through one
 * event (event_active, so the event_base must be created after evthread_use_pthreads()); each
 * job's done() then runs on the loop thread, the only thread that touches sockets.
 *
 * Fairness: every job names a flow (the server uses one flow per tenant). Each flow has its own
 * FIFO queue; a free worker serves the flow with the fewest jobs running, and among those the one
 * served least recently, so a flow that floods the pool waits behind its own jobs, not in front of
 * other flows' work: another flow's job waits for at most one job of each busier flow. Heavy jobs
 * (writes, event planning) run on at most workers - 1 workers at once (1 with a single worker), so
 * with two or more workers one always stays free for light jobs such as Match; a heavy job that
 * waits for that share does not hold up the light jobs queued behind it in its flow.
 * Micro-batching: a worker that takes a batchable job also takes batchable jobs queued behind it,
 * one per flow in turn (up to max_batch), and runs them together, so concurrent Match requests
 * share one GEMM; with a batch window > 0 it first waits that long for more to arrive.
 * Not here: what a flow is worth (no weights) and preemption (a running job runs to its end).
 */
#ifndef DT_POOL_H
#define DT_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "dt.h"

typedef struct dt_job dt_job;
typedef struct dt_job_vt {
    void (*run)(dt_job *j, void *wctx);                    /* on a worker */
    void (*run_batch)(dt_job **js, size_t n, void *wctx); /* on a worker, for batchable jobs */
    void (*done)(dt_job *j);                              /* on the loop thread, after run */
} dt_job_vt;

struct dt_job {
    const dt_job_vt *vt;
    bool batchable;
    bool heavy;    /* set by the submitter: counts against the heavy-job share of the workers */
    uint64_t flow; /* set by the submitter: jobs of one flow run in order of submission */
    bool ran;      /* set by the pool: false when the job is handed back unrun (shutdown) */
    dt_job *next;  /* the pool's */
};

typedef struct dt_pool_opts {
    int workers;
    size_t max_queue;       /* queued jobs beyond this are refused */
    size_t max_batch;       /* batchable jobs run together at most */
    int batch_window_us;    /* wait this long for more batchable jobs (0: take what is queued) */
    void *(*wctx_new)(void *ud, int worker); /* per-worker context (NULL result = failure) */
    void (*wctx_free)(void *wctx);
    void *ud;
} dt_pool_opts;

typedef struct dt_pool dt_pool;

/* Starts o->workers threads; NULL (err filled) when out of memory or threads. Loop thread. */
dt_pool *dt_pool_new(struct event_base *base, const dt_pool_opts *o, dt_err *err);
/* Queues a job (loop thread). 0, -DT_ELIMIT when the queue is full, or -DT_ENOMEM when a new
 * flow could not be recorded; on error the job is not taken. */
int dt_pool_submit(dt_pool *p, dt_job *j);
size_t dt_pool_queued(const dt_pool *p); /* 0 for NULL (no pool: shutting down) */
/* Stops the workers after the jobs already running; queued jobs are handed back undone through
 * done() with their run never called, as are finished ones not yet delivered. Loop thread. */
void dt_pool_free(dt_pool *p);

#endif
