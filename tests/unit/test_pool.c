/* test_pool.c - the worker pool (server/pool.c): order of service across flows, the heavy-job
 * share, micro-batching across flows, the queue limit and shutdown.
 *
 * Jobs record when they run into a shared log; "gate" jobs block their worker until the test opens
 * them, so the queue can be filled in a known state before any worker takes from it. The expected
 * orders are written out by hand from the policy in pool.h (an independent model), never taken
 * from a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "pool.h"

typedef struct tjob {
    dt_job job; /* first */
    char name[8];
    bool gate;      /* blocks its worker until the test opens the gate */
    int batch_size; /* size of the batch it ran in */
    bool done;
    bool ran;
} tjob;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gates_waiting;
static char run_log[1024];
static int heavy_now, heavy_peak;
static int n_done;
static bool logging = true;

static void log_add(const char *s)
{
    if (logging && strlen(run_log) + strlen(s) + 1 < sizeof run_log) strcat(run_log, s);
}

static void reset(void)
{
    pthread_mutex_lock(&mu);
    gate_open = false;
    gates_waiting = 0;
    run_log[0] = 0;
    heavy_now = heavy_peak = 0;
    n_done = 0;
    logging = true;
    pthread_mutex_unlock(&mu);
}

static void run_one(tjob *t, int batch_size)
{
    pthread_mutex_lock(&mu);
    t->batch_size = batch_size;
    if (run_log[0]) log_add(" ");
    log_add(t->name);
    if (t->job.heavy && ++heavy_now > heavy_peak) heavy_peak = heavy_now;
    if (t->gate) {
        gates_waiting++;
        pthread_cond_broadcast(&cv);
        while (!gate_open) pthread_cond_wait(&cv, &mu);
        gates_waiting--;
    }
    if (t->job.heavy) heavy_now--;
    pthread_mutex_unlock(&mu);
}

static void vt_run(dt_job *j, void *wctx)
{
    (void)wctx;
    run_one((tjob *)j, 1);
}

static void vt_run_batch(dt_job **js, size_t n, void *wctx)
{
    (void)wctx;
    pthread_mutex_lock(&mu);
    if (run_log[0]) log_add(" ");
    log_add("[");
    for (size_t i = 0; i < n; i++) {
        if (i) log_add(" ");
        log_add(((tjob *)js[i])->name);
        ((tjob *)js[i])->batch_size = (int)n;
    }
    log_add("]");
    pthread_mutex_unlock(&mu);
}

static void vt_done(dt_job *j)
{
    tjob *t = (tjob *)j;
    t->done = true;
    t->ran = j->ran;
    n_done++;
}

static const dt_job_vt vt = {vt_run, vt_run_batch, vt_done};

static int wctx_token;
static void *wctx_new(void *ud, int i)
{
    (void)ud, (void)i;
    return &wctx_token;
}

static tjob *mk(tjob *t, const char *name, uint64_t flow)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->job.vt = &vt;
    t->job.flow = flow;
    return t;
}

static void wait_gates(int n)
{
    pthread_mutex_lock(&mu);
    while (gates_waiting < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void open_gates(void)
{
    pthread_mutex_lock(&mu);
    gate_open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void *open_gates_later(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    open_gates();
    return NULL;
}

static void pump_until(struct event_base *b, int want_done)
{
    for (int i = 0; i < 20000 && n_done < want_done; i++) {
        event_base_loop(b, EVLOOP_NONBLOCK);
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(n_done, want_done);
}

static dt_pool *start(struct event_base *b, int workers, size_t max_queue, size_t max_batch)
{
    dt_err err = DT_ERR_INIT;
    dt_pool_opts o = {workers, max_queue, max_batch, 0, wctx_new, NULL, NULL};
    dt_pool *p = dt_pool_new(b, &o, &err);
    assert_non_null(p);
    return p;
}

/* One worker, flow A floods (8 jobs), flow B sends 3 after it: B's jobs alternate with A's
 * instead of waiting behind all of A's; each flow keeps its own order. */
static void test_flood_does_not_sit_in_front(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 1, 100, 1);
    tjob t[12];
    mk(&t[0], "g", 1)->gate = true;
    assert_int_equal(dt_pool_submit(p, &t[0].job), 0);
    wait_gates(1);
    const char *a[] = {"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"};
    for (int i = 0; i < 8; i++) assert_int_equal(dt_pool_submit(p, &mk(&t[1 + i], a[i], 1)->job), 0);
    const char *bn[] = {"b1", "b2", "b3"};
    for (int i = 0; i < 3; i++) assert_int_equal(dt_pool_submit(p, &mk(&t[9 + i], bn[i], 2)->job), 0);
    assert_int_equal(dt_pool_queued(p), 11);
    open_gates();
    pump_until(b, 12);
    assert_string_equal(run_log, "g b1 a1 b2 a2 b3 a3 a4 a5 a6 a7 a8");
    for (int i = 0; i < 12; i++) assert_true(t[i].ran);
    dt_pool_free(p);
    event_base_free(b);
}

/* Three flows, one worker: served round-robin by "least recently served" once each has waited. */
static void test_three_flows_round_robin(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 1, 100, 1);
    tjob t[10];
    mk(&t[0], "g", 9)->gate = true;
    dt_pool_submit(p, &t[0].job);
    wait_gates(1);
    const char *names[] = {"x1", "x2", "x3", "y1", "y2", "y3", "z1", "z2", "z3"};
    for (int i = 0; i < 9; i++) dt_pool_submit(p, &mk(&t[1 + i], names[i], (uint64_t)(100 + i / 3))->job);
    open_gates();
    pump_until(b, 10);
    assert_string_equal(run_log, "g x1 y1 z1 x2 y2 z2 x3 y3 z3");
    dt_pool_free(p);
    event_base_free(b);
}

/* Two workers: heavy jobs never take both; a light job runs while a heavy one holds a worker and
 * another heavy job waits. */
static void test_heavy_share(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 2, 100, 1);
    tjob t[4];
    mk(&t[0], "h1", 1)->gate = true;
    t[0].job.heavy = true;
    mk(&t[1], "h2", 2)->job.heavy = true;
    mk(&t[2], "h3", 3)->job.heavy = true;
    dt_pool_submit(p, &t[0].job);
    wait_gates(1);
    dt_pool_submit(p, &t[1].job);
    dt_pool_submit(p, &t[2].job);
    mk(&t[3], "l", 4);
    dt_pool_submit(p, &t[3].job);
    /* the light job finishes while h1 still blocks its worker, and h2/h3 stay queued */
    for (int i = 0; i < 20000 && n_done < 1; i++) {
        event_base_loop(b, EVLOOP_NONBLOCK);
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(n_done, 1);
    assert_true(t[3].done);
    assert_false(t[1].done);
    assert_int_equal(dt_pool_queued(p), 2);
    open_gates();
    pump_until(b, 4);
    assert_int_equal(heavy_peak, 1);
    assert_string_equal(run_log, "h1 l h2 h3");
    dt_pool_free(p);
    event_base_free(b);
}

/* A light job queued behind a heavy one that waits for the heavy share, in the same flow, runs at
 * once: a Match of a tenant is never held up by that tenant's queued write. */
static void test_light_job_passes_waiting_heavy_in_its_flow(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 2, 100, 1);
    tjob t[3];
    mk(&t[0], "h1", 7)->gate = true;
    t[0].job.heavy = true;
    dt_pool_submit(p, &t[0].job);
    wait_gates(1);
    mk(&t[1], "h2", 7)->job.heavy = true;
    dt_pool_submit(p, &t[1].job);
    mk(&t[2], "l", 7);
    dt_pool_submit(p, &t[2].job);
    for (int i = 0; i < 20000 && n_done < 1; i++) {
        event_base_loop(b, EVLOOP_NONBLOCK);
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(n_done, 1);
    assert_true(t[2].done);
    assert_false(t[1].done);
    open_gates();
    pump_until(b, 3);
    assert_int_equal(heavy_peak, 1);
    assert_string_equal(run_log, "h1 l h2");
    dt_pool_free(p);
    event_base_free(b);
}

/* With one worker heavy jobs still run (the share is at least one worker). */
static void test_heavy_single_worker(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 1, 100, 1);
    tjob t[3];
    for (int i = 0; i < 3; i++) {
        char n[4] = {'h', (char)('1' + i), 0, 0};
        mk(&t[i], n, 1)->job.heavy = true;
        dt_pool_submit(p, &t[i].job);
    }
    pump_until(b, 3);
    assert_string_equal(run_log, "h1 h2 h3");
    dt_pool_free(p);
    event_base_free(b);
}

/* Batchable jobs of several flows share a batch, one per flow per round, the serving flow sitting
 * out the first round; a non-batchable job of a flow is not taken into a batch. */
static void test_batch_across_flows(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 1, 100, 4);
    tjob t[9];
    mk(&t[0], "g", 7)->gate = true;
    dt_pool_submit(p, &t[0].job);
    wait_gates(1);
    const char *names[] = {"a1", "a2", "a3", "a4", "b1", "b2", "c1"};
    uint64_t flows[] = {1, 1, 1, 1, 2, 2, 3};
    for (int i = 0; i < 7; i++) {
        mk(&t[1 + i], names[i], flows[i])->job.batchable = true;
        dt_pool_submit(p, &t[1 + i].job);
    }
    mk(&t[8], "w", 3); /* not batchable, behind c1 */
    dt_pool_submit(p, &t[8].job);
    open_gates();
    pump_until(b, 9);
    /* first batch: a1 (flow 1 picked first), then round 1 without flow 1: b1 c1, round 2: a2 */
    assert_string_equal(run_log, "g [a1 b1 c1 a2] [b2 a3 a4] w");
    assert_int_equal(t[1].batch_size, 4);
    assert_int_equal(t[8].batch_size, 1);
    dt_pool_free(p);
    event_base_free(b);
}

static void test_queue_limit_and_shutdown(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 1, 3, 1);
    tjob t[5];
    mk(&t[0], "g", 1)->gate = true;
    dt_pool_submit(p, &t[0].job);
    wait_gates(1);
    for (int i = 1; i <= 3; i++) {
        char n[4] = {'q', (char)('0' + i), 0, 0};
        assert_int_equal(dt_pool_submit(p, &mk(&t[i], n, (uint64_t)i)->job), 0);
    }
    assert_int_equal(dt_pool_submit(p, &mk(&t[4], "x", 9)->job), -DT_ELIMIT);
    assert_int_equal(dt_pool_queued(p), 3);
    /* shutdown: the running gate finishes (opened from another thread once dt_pool_free has
     * begun), the queued ones come back unrun */
    pthread_t opener;
    pthread_create(&opener, NULL, open_gates_later, NULL);
    dt_pool_free(p);
    pthread_join(opener, NULL);
    assert_int_equal(n_done, 4);
    assert_true(t[0].done && t[0].ran);
    for (int i = 1; i <= 3; i++) assert_true(t[i].done && !t[i].ran);
    assert_false(t[4].done);
    event_base_free(b);
}

/* Many flows coming and going: every job runs exactly once and no flow record is left over (ASan
 * reports a leak otherwise). */
static void test_many_flows(void **state)
{
    (void)state;
    reset();
    struct event_base *b = event_base_new();
    dt_pool *p = start(b, 2, 10000, 8);
    logging = false; /* only counts matter here */
    enum { N = 3000 };
    tjob *t = calloc(N, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        char n[8];
        snprintf(n, sizeof n, "%d", i % 100);
        mk(&t[i], n, (uint64_t)(i * 2654435761u) % 700);
        t[i].job.batchable = i % 3 == 0;
        t[i].job.heavy = i % 7 == 0;
        assert_int_equal(dt_pool_submit(p, &t[i].job), 0);
        if (i % 500 == 0) event_base_loop(b, EVLOOP_NONBLOCK);
    }
    for (int i = 0; i < 40000 && n_done < N; i++) {
        event_base_loop(b, EVLOOP_NONBLOCK);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(n_done, N);
    for (int i = 0; i < N; i++) assert_true(t[i].done && t[i].ran);
    assert_int_equal(dt_pool_queued(p), 0);
    dt_pool_free(p);
    free(t);
    event_base_free(b);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_does_not_sit_in_front),
        cmocka_unit_test(test_three_flows_round_robin),
        cmocka_unit_test(test_heavy_share),
        cmocka_unit_test(test_light_job_passes_waiting_heavy_in_its_flow),
        cmocka_unit_test(test_heavy_single_worker),
        cmocka_unit_test(test_batch_across_flows),
        cmocka_unit_test(test_queue_limit_and_shutdown),
        cmocka_unit_test(test_many_flows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
