/* commit.c - the one commit path (commit.h). */
#include "commit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void dt_store_init(dt_store *st, dt_engine *e, dt_durable *d, pthread_mutex_t *commit, pthread_rwlock_t *lock)
{
    memset(st, 0, sizeof *st);
    st->engine = e;
    st->durable = d;
    st->commit = commit;
    st->lock = lock;
    st->background_docs = DT_STORE_BACKGROUND_DOCS;
    st->fit_nice = DT_STORE_FIT_NICE;
    pthread_cond_init(&st->relearn_idle, NULL);
    pthread_mutex_init(&st->thr_mu, NULL);
    pthread_cond_init(&st->thr_cv, NULL);
    pthread_mutex_init(&st->gate_mu, NULL);
    pthread_cond_init(&st->gate_cv, NULL);
}

void dt_store_drain(dt_store *st)
{
    pthread_mutex_lock(&st->thr_mu);
    while (st->threads) pthread_cond_wait(&st->thr_cv, &st->thr_mu);
    pthread_mutex_unlock(&st->thr_mu);
}

void dt_store_fini(dt_store *st)
{
    dt_store_drain(st);
    pthread_cond_destroy(&st->relearn_idle);
    pthread_cond_destroy(&st->thr_cv);
    pthread_mutex_destroy(&st->thr_mu);
    pthread_cond_destroy(&st->gate_cv);
    pthread_mutex_destroy(&st->gate_mu);
}

void dt_store_write_lock(dt_store *st)
{
    pthread_mutex_lock(&st->gate_mu);
    st->writers_waiting++;
    while (st->long_readers) pthread_cond_wait(&st->gate_cv, &st->gate_mu);
    pthread_mutex_unlock(&st->gate_mu);
    pthread_rwlock_wrlock(st->lock);
}

void dt_store_write_unlock(dt_store *st)
{
    pthread_rwlock_unlock(st->lock);
    pthread_mutex_lock(&st->gate_mu);
    st->writers_waiting--;
    pthread_cond_broadcast(&st->gate_cv);
    pthread_mutex_unlock(&st->gate_mu);
}

void dt_store_read_long(dt_store *st)
{
    pthread_mutex_lock(&st->gate_mu);
    while (st->writers_waiting) pthread_cond_wait(&st->gate_cv, &st->gate_mu);
    st->long_readers++;
    pthread_mutex_unlock(&st->gate_mu);
    pthread_rwlock_rdlock(st->lock);
}

void dt_store_read_long_end(dt_store *st)
{
    pthread_rwlock_unlock(st->lock);
    pthread_mutex_lock(&st->gate_mu);
    if (--st->long_readers == 0) pthread_cond_broadcast(&st->gate_cv);
    pthread_mutex_unlock(&st->gate_mu);
}

void dt_store_wait_relearn(dt_store *st)
{
    pthread_mutex_lock(st->commit);
    while (st->relearning) pthread_cond_wait(&st->relearn_idle, st->commit);
    pthread_mutex_unlock(st->commit);
}

/* ---- re-learning a basis: begin and swap with writers out, the fit with nothing held ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct fit_arg {
    int (*fn)(dt_engine_relearn *, dt_err *);
    dt_engine_relearn *rl;
    int nice;
    int rc;
    dt_err err;
} fit_arg;

static void *fit_main(void *p)
{
    fit_arg *a = p;
    /* this thread (and the threads the fit starts, which inherit it) yields to searches and
     * writes; best effort: the fit runs either way */
    if (a->nice > 0) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a->nice);
    a->rc = a->fn(a->rl, &a->err);
    return NULL;
}

/* The fit, on a thread of its own at st->fit_nice (the caller keeps its priority for the swap,
 * which excludes writers: it must not wait behind searches for CPU). */
static int fit(dt_store *st, dt_engine_relearn *rl, dt_err *err)
{
    int (*fn)(dt_engine_relearn *, dt_err *) = st->fit_fn ? st->fit_fn : dt_engine_relearn_fit;
    if (st->fit_nice <= 0) return fn(rl, err);
    fit_arg a = {fn, rl, st->fit_nice, 0, DT_ERR_INIT};
    pthread_t t;
    if (pthread_create(&t, NULL, fit_main, &a) != 0) return fn(rl, err);
    pthread_join(t, NULL);
    if (a.rc && err) *err = a.err;
    return a.rc;
}

/* *commit held: the records the basis is learned from are those stored now; the marker goes to
 * the journal here so that a replay learns from the same records. */
static int begin_locked(dt_store *st, const char *tenant, dt_engine_relearn **rl, uint64_t *seq, dt_err *err)
{
    int rc = dt_engine_relearn_begin(st->engine, tenant, rl, err);
    if (rc || !*rl) return rc;
    st->relearning = true;
    /* a lost marker only changes the basis a replay learns, never the records; no snapshot until
     * the swap (one would hold the old basis after the marker) */
    if (st->durable) {
        dt_durable_log_build(st->durable, tenant, seq, NULL);
        dt_durable_hold_snapshots(st->durable, true);
    }
    return 0;
}

/* *commit held, after the fit (rc its result): every record as stored now is projected on the new
 * basis (no writer can add one meanwhile), swapped in under the write lock. */
static int finish_locked(dt_store *st, dt_engine_relearn *rl, int rc, double fit_s, dt_err *err)
{
    double t0 = now_s(), t1 = t0, t2 = t0;
    if (rc == 0) rc = dt_engine_relearn_project(st->engine, rl, err);
    if (rc == 0) {
        t1 = now_s();
        dt_store_write_lock(st);
        rc = dt_engine_relearn_install(st->engine, rl, err);
        dt_store_write_unlock(st);
        t2 = now_s();
    }
    if (rc == 0 && !st->quiet && dt_engine_relearn_docs(rl) >= st->background_docs)
        fprintf(stderr,
                "dovetail: basis of tenant '%s' re-learned from %zu records: fit and catch-up %.2f s (writes went on), "
                "projection %.3f s (writers waited), swap %.3f s (searches waited)\n",
                dt_engine_relearn_tenant(rl), dt_engine_relearn_docs(rl), fit_s, t1 - t0, t2 - t1);
    st->relearning = false;
    dt_durable_hold_snapshots(st->durable, false);
    pthread_cond_broadcast(&st->relearn_idle);
    return rc;
}

/* Between fit and finish: the records written during the fit are projected in chunks, each under
 * the read lock as a long reader (writers go on between chunks), until few are left for finish to
 * project with writers out. Best effort: finish projects whatever is left. */
enum { CATCH_UP_CHUNK = 2000 };

static void catch_up(dt_store *st, dt_engine_relearn *rl)
{
    for (int round = 0; round < 64; round++) {
        size_t left = 0;
        dt_store_read_long(st);
        int rc = dt_engine_relearn_catch_up(st->engine, rl, CATCH_UP_CHUNK, &left, NULL);
        dt_store_read_long_end(st);
        if (rc || left < CATCH_UP_CHUNK / 4) return;
    }
}

typedef struct background {
    dt_store *st;
    dt_engine_relearn *rl;
} background;

static void *background_main(void *p)
{
    background *b = p;
    dt_store *st = b->st;
    dt_err err = DT_ERR_INIT;
    double t0 = now_s();
    int rc = fit(st, b->rl, &err);
    if (rc == 0) catch_up(st, b->rl);
    double fit_s = now_s() - t0;
    dt_durable_wait_serialised(st->durable); /* held: no snapshot starts after this one */
    pthread_mutex_lock(st->commit);
    rc = finish_locked(st, b->rl, rc, fit_s, &err);
    if (rc == 0 && st->on_relearned) st->on_relearned(st->ud, dt_engine_relearn_tenant(b->rl));
    pthread_mutex_unlock(st->commit);
    if (rc && !st->quiet)
        fprintf(stderr, "dovetail: re-learning the basis of tenant '%s' failed (%s); it keeps the old one\n",
                dt_engine_relearn_tenant(b->rl), err.msg);
    dt_engine_relearn_free(b->rl);
    free(b);
    pthread_mutex_lock(&st->thr_mu);
    st->threads--;
    pthread_cond_broadcast(&st->thr_cv);
    pthread_mutex_unlock(&st->thr_mu);
    return NULL;
}

/* Hands rl to a detached thread; false when none could be started. */
static bool start_background(dt_store *st, dt_engine_relearn *rl)
{
    background *b = malloc(sizeof *b);
    if (!b) return false;
    b->st = st;
    b->rl = rl;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&st->thr_mu);
    pthread_t t;
    bool ok = pthread_create(&t, &attr, background_main, b) == 0;
    if (ok) st->threads++;
    pthread_mutex_unlock(&st->thr_mu);
    pthread_attr_destroy(&attr);
    if (!ok) free(b);
    return ok;
}

void dt_store_reindex(dt_store *st, const char *tenant, uint64_t *seq)
{
    /* a snapshot writing the records frozen before this write: both change them in place, so a
     * later write does them */
    if (dt_durable_serialising(st->durable)) return;
    dt_engine_compaction *cp = NULL;
    /* not while a re-learn runs either: it copies rows by slot number, which compaction changes */
    if (!st->relearning && dt_engine_compaction_prepare(st->engine, tenant, &cp, NULL) == 0 && cp) {
        dt_store_write_lock(st);
        dt_engine_compaction_install(st->engine, cp, NULL); /* best effort: tombstones stay longer */
        dt_store_write_unlock(st);
    }
    dt_engine_compaction_free(cp);
    if (st->relearning || !dt_engine_needs_build(st->engine, tenant)) return;
    dt_engine_relearn *rl = NULL;
    if (begin_locked(st, tenant, &rl, seq, NULL) < 0 || !rl) return;
    if (dt_engine_relearn_docs(rl) >= st->background_docs && start_background(st, rl)) return;
    /* small enough to learn inline (or no thread to learn it on): the write that made it due
     * answers with the new basis in place */
    double t0 = now_s();
    int rc = (st->fit_fn ? st->fit_fn : dt_engine_relearn_fit)(rl, NULL);
    finish_locked(st, rl, rc, now_s() - t0, NULL);
    dt_engine_relearn_free(rl);
}

int dt_store_relearn(dt_store *st, const char *tenant, bool *built, dt_err *err)
{
    *built = false;
    pthread_mutex_lock(st->commit);
    while (st->relearning) pthread_cond_wait(&st->relearn_idle, st->commit);
    dt_engine_relearn *rl = NULL;
    uint64_t seq = 0;
    int rc = begin_locked(st, tenant, &rl, &seq, err);
    pthread_mutex_unlock(st->commit);
    if (rc || !rl) return rc;
    double t0 = now_s();
    rc = fit(st, rl, err);
    if (rc == 0) catch_up(st, rl);
    double fit_s = now_s() - t0;
    dt_durable_wait_serialised(st->durable); /* held: no snapshot starts after this one */
    pthread_mutex_lock(st->commit);
    rc = finish_locked(st, rl, rc, fit_s, err);
    pthread_mutex_unlock(st->commit);
    dt_engine_relearn_free(rl);
    if (rc == 0) *built = true;
    if (seq) dt_durable_sync(st->durable, seq, NULL);
    return rc;
}

static int stop(dt_commit *c, dt_commit_stage stage)
{
    c->stage = stage;
    return -1;
}

/* A write that took a second or more is logged with where its time went. */
static void log_slow(const dt_store *st, const char *what, const double *t, int n)
{
    if (st->quiet || t[n - 1] - t[0] < 1.0) return;
    static const char *const steps[] = {"waiting for the commit mutex", "check", "prepare", "journal",
                                        "apply", "re-index", "sync"};
    char line[512];
    int len = snprintf(line, sizeof line, "dovetail: slow commit (%s), %.3f s:", what, t[n - 1] - t[0]);
    for (int i = 1; i < n && len > 0 && (size_t)len < sizeof line; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, " %s %.3f s%s", steps[i - 1], t[i] - t[i - 1],
                        i + 1 < n ? "," : "");
    fprintf(stderr, "%s\n", line);
}

int dt_store_commit(dt_store *st, dt_commit *c, dt_err *err)
{
    const dt_commit_ops *ops = c->ops;
    const char *what = ops->what ? ops->what : "the write";
    c->seq = 0;
    c->stage = DT_COMMIT_DONE;
    double t[8];
    t[0] = now_s();
    pthread_mutex_lock(st->commit);
    for (int i = 1; i < 8; i++) t[i] = t[0];
    t[1] = now_s();
    int rc = 0;
    if (ops->check && ops->check(c->ctx, err) < 0) {
        rc = stop(c, DT_COMMIT_REFUSED);
    } else if ((t[2] = now_s()), ops->prepare && ops->prepare(c->ctx, err) < 0) {
        rc = stop(c, DT_COMMIT_REFUSED);
    } else if ((t[3] = now_s()), c->payload && st->durable &&
               dt_durable_append(st->durable, ops->entry, c->payload, c->len, &c->seq, err) < 0) {
        char why[200];
        snprintf(why, sizeof why, "%.180s", err->msg);
        dt_err_set(err, DT_EIO, NULL, "%s could not be journaled (%.180s); nothing was stored", what, why);
        c->seq = 0;
        rc = stop(c, DT_COMMIT_NOT_JOURNALED);
    } else {
        t[4] = now_s();
        dt_store_write_lock(st);
        if (st->on_write_lock) st->on_write_lock(st->ud);
        if (ops->apply(c->ctx, err) < 0) rc = stop(c, DT_COMMIT_NOT_APPLIED);
        dt_store_write_unlock(st);
        t[5] = now_s();
        if (rc == 0 && c->reindex_tenant) dt_store_reindex(st, c->reindex_tenant, &c->seq);
        t[6] = now_s();
    }
    if (ops->publish) ops->publish(c->ctx);
    pthread_mutex_unlock(st->commit);
    if (rc == 0 && c->seq && dt_durable_sync(st->durable, c->seq, err) < 0) {
        char why[200];
        snprintf(why, sizeof why, "%.180s", err->msg);
        dt_err_set(err, DT_EIO, NULL, "%s could not be made durable (%.180s); not acknowledged", what, why);
        rc = stop(c, DT_COMMIT_NOT_DURABLE);
    }
    t[7] = now_s();
    if (rc == 0) log_slow(st, what, t, 8);
    return rc;
}
