/* test_commit.c - the one commit path (store/commit.c): the order of its steps, the locks each
 * step runs under, and that a write refused at any step before the journal changes nothing (no
 * journal entry, no apply), while a write that passes is journaled as one entry, applied, and
 * durable before dt_store_commit returns. Records go through the real engine for the re-index
 * step (the re-learn is journaled after the write's own entry).
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "durable.h"
#include "journal.h"
#include "snapshot.h"

typedef struct fixture {
    char dir[64];
    dt_engine *e;
    dt_outcome_store *os;
    pthread_rwlock_t lock;
    pthread_mutex_t commit;
    dt_durable *d;
    dt_store st;
    int lock_hook_calls;
} fixture;

static void on_write_lock(void *ud)
{
    fixture *f = ud;
    assert_int_not_equal(pthread_rwlock_tryrdlock(&f->lock), 0); /* the write lock is held */
    f->lock_hook_calls++;
}

static void open_fixture(fixture *f, bool journal)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dt-commit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    dt_err err = DT_ERR_INIT;
    f->e = dt_engine_new(NULL, &err);
    f->os = dt_outcome_store_new(&err);
    assert_true(f->e && f->os);
    pthread_rwlockattr_t ra; /* as dovetaild's: writer-preferring */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&f->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&f->commit, NULL);
    if (journal) {
        dt_durable_opts o = {f->dir, DT_FSYNC_ALWAYS, (size_t)1 << 40, true, NULL, NULL, &f->commit};
        f->d = dt_durable_open(f->e, f->os, &f->lock, &o, &err);
        if (!f->d) fail_msg("open %s: %s", f->dir, err.msg);
    }
    dt_store_init(&f->st, f->e, f->d, &f->commit, &f->lock);
    f->st.on_write_lock = on_write_lock;
    f->st.ud = f;
    f->st.quiet = true;
}

static void close_fixture(fixture *f)
{
    dt_store_fini(&f->st);
    dt_durable_close(f->d, false);
    dt_outcome_store_free(f->os);
    dt_engine_free(f->e);
    pthread_rwlock_destroy(&f->lock);
    pthread_mutex_destroy(&f->commit);
    DIR *dp = opendir(f->dir);
    assert_non_null(dp);
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(dp)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", f->dir, de->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(dp);
    assert_int_equal(rmdir(f->dir), 0);
}

static uint64_t journal_seq(fixture *f)
{
    dt_durable_stats ds;
    dt_durable_stats_get(f->d, &ds);
    return ds.journal_seq;
}

/* A scripted write: logs each step it was called for, checks the locks each step runs under, and
 * fails at the step it is told to. */
typedef struct script {
    fixture *f;
    char log[64];
    char fail; /* 'c' check, 'p' prepare, 'a' apply, 0 none */
} script;

static void note(script *s, char step)
{
    size_t n = strlen(s->log);
    s->log[n] = step;
    s->log[n + 1] = 0;
}

/* commit mutex held (a trylock from this thread fails), write lock not held (a read lock is free) */
static void expect_commit_only(fixture *f)
{
    assert_int_not_equal(pthread_mutex_trylock(&f->commit), 0);
    assert_int_equal(pthread_rwlock_tryrdlock(&f->lock), 0);
    pthread_rwlock_unlock(&f->lock);
}

static int s_check(void *ud, dt_err *err)
{
    script *s = ud;
    note(s, 'c');
    expect_commit_only(s->f);
    if (s->fail == 'c') return dt_err_set(err, DT_EINVAL, "embedding", "2 floats, the tenant's records have 3");
    return 0;
}

static int s_prepare(void *ud, dt_err *err)
{
    script *s = ud;
    note(s, 'p');
    expect_commit_only(s->f);
    if (s->fail == 'p') return dt_err_set(err, DT_EINVAL, "text", "cannot tokenize");
    return 0;
}

static int s_apply(void *ud, dt_err *err)
{
    script *s = ud;
    note(s, 'a');
    assert_int_not_equal(pthread_mutex_trylock(&s->f->commit), 0);
    assert_int_not_equal(pthread_rwlock_tryrdlock(&s->f->lock), 0); /* the write lock is held */
    if (s->fail == 'a') return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    return 0;
}

static void s_publish(void *ud)
{
    script *s = ud;
    note(s, 'P');
    expect_commit_only(s->f);
}

static const dt_commit_ops script_ops = {DT_J_DELETE, "the test write", s_check, s_prepare, s_apply, s_publish};

static const uint8_t payload[] = {1, 't', 0, 0, 0, 0, 0};

static void test_steps_run_in_order_under_their_locks(void **unused)
{
    (void)unused;
    fixture f;
    open_fixture(&f, true);
    uint64_t before = journal_seq(&f);
    script s = {&f, "", 0};
    dt_commit c = {&script_ops, &s, payload, sizeof payload, NULL, 0, DT_COMMIT_DONE};
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_store_commit(&f.st, &c, &err), 0);
    assert_string_equal(s.log, "cpaP");
    assert_int_equal(c.stage, DT_COMMIT_DONE);
    assert_int_equal(journal_seq(&f), before + 1);
    assert_int_equal(c.seq, before + 1);
    dt_durable_stats ds;
    dt_durable_stats_get(f.d, &ds);
    assert_true(ds.synced_seq >= c.seq); /* durable before it returns (fsync always) */
    assert_int_equal(f.lock_hook_calls, 1);
    /* both locks are free again */
    assert_int_equal(pthread_mutex_trylock(&f.commit), 0);
    pthread_mutex_unlock(&f.commit);
    assert_int_equal(pthread_rwlock_trywrlock(&f.lock), 0);
    pthread_rwlock_unlock(&f.lock);
    close_fixture(&f);
}

/* Refused by check or prepare: nothing journaled, nothing applied, the step's own error kept. */
static void test_refused_before_the_journal_changes_nothing(void **unused)
{
    (void)unused;
    const char fails[] = {'c', 'p'};
    const char *logs[] = {"cP", "cpP"};
    const char *fields[] = {"embedding", "text"};
    for (int i = 0; i < 2; i++) {
        fixture f;
        open_fixture(&f, true);
        uint64_t before = journal_seq(&f);
        script s = {&f, "", fails[i]};
        dt_commit c = {&script_ops, &s, payload, sizeof payload, "t", 0, DT_COMMIT_DONE};
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_store_commit(&f.st, &c, &err), -1);
        assert_int_equal(c.stage, DT_COMMIT_REFUSED);
        assert_string_equal(s.log, logs[i]);
        assert_string_equal(err.field, fields[i]);
        assert_int_equal(c.seq, 0);
        assert_int_equal(journal_seq(&f), before);
        assert_int_equal(f.lock_hook_calls, 0);
        close_fixture(&f);
    }
}

/* apply fails after the entry was journaled: the stage says so, and sync is not waited for. */
static void test_apply_failure_is_reported_as_such(void **unused)
{
    (void)unused;
    fixture f;
    open_fixture(&f, true);
    script s = {&f, "", 'a'};
    dt_commit c = {&script_ops, &s, payload, sizeof payload, NULL, 0, DT_COMMIT_DONE};
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_store_commit(&f.st, &c, &err), -1);
    assert_int_equal(c.stage, DT_COMMIT_NOT_APPLIED);
    assert_string_equal(s.log, "cpaP");
    assert_int_equal(err.code, DT_ENOMEM);
    assert_true(c.seq > 0);
    close_fixture(&f);
}

/* Without a journal (no --data-dir), or with nothing to journal, the same steps run. */
static void test_without_a_journal(void **unused)
{
    (void)unused;
    for (int journal = 0; journal < 2; journal++) {
        fixture f;
        open_fixture(&f, journal);
        uint64_t before = journal ? journal_seq(&f) : 0;
        script s = {&f, "", 0};
        dt_commit c = {&script_ops, &s, journal ? NULL : payload, journal ? 0 : sizeof payload, NULL, 0,
                       DT_COMMIT_DONE};
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_store_commit(&f.st, &c, &err), 0);
        assert_string_equal(s.log, "cpaP");
        assert_int_equal(c.seq, 0);
        if (journal) assert_int_equal(journal_seq(&f), before);
        close_fixture(&f);
    }
}

/* Records through the engine: once a tenant has enough records its basis is learned in the
 * re-index step and journaled as its own entry after the write's, and c.seq is that entry's. */
typedef struct recs_ctx {
    dt_engine *e;
    dt_record *recs, **ptrs;
    size_t n;
    dt_engine_batch *tok;
} recs_ctx;

static int r_prepare(void *ud, dt_err *err)
{
    recs_ctx *r = ud;
    return dt_engine_batch_prepare(r->e, r->ptrs, r->n, &r->tok, err);
}

static int r_apply(void *ud, dt_err *err)
{
    recs_ctx *r = ud;
    for (size_t i = 0; i < r->n; i++)
        if (dt_engine_batch_upsert(r->e, r->tok, i, &r->recs[i], err) < 0) return -1;
    return 0;
}

static const dt_commit_ops recs_ops = {DT_J_UPSERT, "the write", NULL, r_prepare, r_apply, NULL};

static int count_type(void *ud, uint8_t type, const uint8_t *p, size_t len, uint64_t seq, dt_err *err)
{
    (void)p, (void)len, (void)seq, (void)err;
    size_t *counts = ud;
    counts[type]++;
    return 0;
}

/* Upserts n achievements a<first>.. of tenant t through the commit path (re-index step on). */
static int upsert_recs(fixture *f, int first, int n, dt_commit *c, dt_err *err)
{
    dt_record *recs = calloc((size_t)n, sizeof *recs);
    dt_record **ptrs = calloc((size_t)n, sizeof *ptrs);
    assert_true(recs && ptrs);
    for (int i = 0; i < n; i++) {
        dt_record_init(&recs[i]);
        char id[16], text[96];
        snprintf(id, sizeof id, "a%d", first + i);
        static const char *const words[] = {"anode",  "cathode", "polymer", "ceramic",  "graphene", "silicon",
                                            "sensor", "laser",   "coating", "catalyst", "membrane"};
        int k = first + i;
        snprintf(text, sizeof text, "battery separator %s lithium %s %s", words[k % 11], words[(k * 7 + 3) % 11],
                 words[(k / 11) % 11]);
        recs[i].tenant = strdup("t");
        recs[i].id = strdup(id);
        recs[i].side = DT_ACHIEVEMENT;
        recs[i].text = strdup(text);
        ptrs[i] = &recs[i];
    }
    uint8_t *p;
    size_t len;
    assert_int_equal(dt_durable_encode_upsert(ptrs, (size_t)n, &p, &len, err), 0);
    recs_ctx r = {f->e, recs, ptrs, (size_t)n, NULL};
    dt_commit cm = {&recs_ops, &r, p, len, "t", 0, DT_COMMIT_DONE};
    *c = cm;
    int rc = dt_store_commit(&f->st, c, err);
    dt_engine_batch_free(r.tok);
    for (int i = 0; i < n; i++) dt_record_free(&recs[i]);
    free(recs);
    free(ptrs);
    free(p);
    return rc;
}

static void test_reindex_is_journaled_after_the_write(void **unused)
{
    (void)unused;
    fixture f;
    open_fixture(&f, true);
    uint64_t before = journal_seq(&f);
    dt_commit c;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(upsert_recs(&f, 0, 30, &c, &err), 0); /* small: learned inline */
    assert_int_equal(journal_seq(&f), before + 2);
    assert_int_equal(c.seq, before + 2);
    assert_false(dt_engine_needs_build(f.e, "t"));
    assert_string_equal(dt_engine_dense_kind(f.e, "t"), "lsa");
    assert_non_null(dt_engine_get(f.e, "t", DT_ACHIEVEMENT, "a29"));
    dt_durable_close(f.d, false);
    f.d = NULL;
    /* the journal holds the upsert, then the re-learn marker */
    size_t counts[256] = {0};
    assert_int_equal(dt_journal_replay(f.dir, 0, false, count_type, counts, NULL, &err), 0);
    assert_int_equal(counts[DT_J_UPSERT], 1);
    assert_int_equal(counts[DT_J_BUILD], 1);
    close_fixture(&f);
}

/* Closes f's journal, starts a second engine from f's directory, and expects it to hold what f's
 * engine holds: n live achievements of tenant t, each with the same text and the same row bit for
 * bit, and the same epoch. */
static void expect_restart_equal(fixture *f, size_t n)
{
    dt_durable_close(f->d, false);
    f->d = NULL;
    dt_err err = DT_ERR_INIT;
    dt_engine *e2 = dt_engine_new(NULL, &err);
    dt_outcome_store *os2 = dt_outcome_store_new(&err);
    pthread_rwlock_t lock2;
    pthread_rwlock_init(&lock2, NULL);
    dt_durable_opts o = {f->dir, DT_FSYNC_NO, (size_t)1 << 40, true, NULL, NULL, NULL};
    dt_durable *d2 = dt_durable_open(e2, os2, &lock2, &o, &err);
    if (!d2) fail_msg("reopen: %s", err.msg);
    dt_index *a = dt_engine_index(f->e, "t", DT_ACHIEVEMENT), *b = dt_engine_index(e2, "t", DT_ACHIEVEMENT);
    assert_int_equal(dt_index_count(a), n);
    assert_int_equal(dt_index_count(b), n);
    size_t dim = dt_index_dim(a);
    assert_true(dim > 0);
    assert_int_equal(dt_index_dim(b), dim);
    for (uint32_t s = 0; s < dt_index_slots(a); s++) {
        if (!dt_index_live(a, s)) continue;
        int64_t o2 = dt_index_find(b, dt_index_record(a, s)->id);
        assert_true(o2 >= 0);
        assert_string_equal(dt_index_record(a, s)->text, dt_index_record(b, (uint32_t)o2)->text);
        assert_memory_equal(dt_index_row(a, s), dt_index_row(b, (uint32_t)o2), dim * sizeof(float));
    }
    assert_int_equal(dt_engine_epoch(f->e, "t"), dt_engine_epoch(e2, "t"));
    dt_durable_close(d2, false);
    dt_outcome_store_free(os2);
    dt_engine_free(e2);
    pthread_rwlock_destroy(&lock2);
}

/* Starts fn(arg) on a thread and waits up to 30 s for it to finish: 0 when it did (joined);
 * otherwise it still runs, and the caller joins *t once what it waits for is let go. A write that
 * waited for what it must not shows as this timeout, not as a hung test. */
static int run_briefly(void *(*fn)(void *), void *arg, pthread_t *t)
{
    assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    return pthread_timedjoin_np(*t, NULL, &until);
}

/* A fit that waits until the test lets it go, so that the test can write during a fit. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, go;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static int gated_fit(dt_engine_relearn *r, dt_err *err)
{
    pthread_mutex_lock(&gate.mu);
    gate.entered = true;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.go) pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    return dt_engine_relearn_fit(r, err);
}

static int relearned_calls;
static char relearned_tenant[16];

static void on_relearned(void *ud, const char *tenant)
{
    fixture *f = ud;
    assert_int_not_equal(pthread_mutex_trylock(&f->commit), 0); /* called with the commit mutex held */
    relearned_calls++;
    snprintf(relearned_tenant, sizeof relearned_tenant, "%s", tenant);
}

static void *snapshot_main(void *p)
{
    dt_err err = DT_ERR_INIT;
    if (dt_durable_snapshot(p, &err) < 0) fprintf(stderr, "snapshot: %s\n", err.msg);
    return NULL;
}

typedef struct writer_arg {
    fixture *f;
    int rc;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    dt_commit c;
    dt_err err = DT_ERR_INIT;
    w->rc = upsert_recs(w->f, 100, 3, &c, &err);
    return NULL;
}

/* A tenant big enough re-learns in the background: the write that made it due is answered at once
 * (its entry and the marker journaled), writes go on during the fit (the commit mutex is free),
 * the basis is swapped in afterwards with every record - those written during the fit too -
 * projected on it as an upsert would, and a restart gives the same rows bit for bit and the same
 * epoch: from the journal alone (the marker sits where the records the basis learned from are),
 * or, with snapshot_during_fit, from a snapshot asked for during the fit, which waits for the swap
 * (taken during the fit, it would hold the old basis after the marker). */
static void background_relearn(bool snapshot_during_fit)
{
    fixture f;
    open_fixture(&f, true);
    f.st.background_docs = 10;
    f.st.fit_fn = gated_fit;
    f.st.on_relearned = on_relearned;
    gate.entered = gate.go = false;
    relearned_calls = 0;
    uint64_t before = journal_seq(&f);
    dt_commit c;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(upsert_recs(&f, 0, 30, &c, &err), 0);
    assert_int_equal(c.seq, before + 2); /* the upsert, then the marker */
    pthread_mutex_lock(&gate.mu);
    while (!gate.entered) pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    assert_string_equal(dt_engine_dense_kind(f.e, "t"), "none"); /* not swapped in yet */
    /* a write during the fit goes through */
    writer_arg w = {&f, -1};
    pthread_t t;
    int joined = run_briefly(writer_main, &w, &t);
    if (joined != 0) {
        pthread_mutex_lock(&gate.mu);
        gate.go = true;
        pthread_cond_broadcast(&gate.cv);
        pthread_mutex_unlock(&gate.mu);
        pthread_join(t, NULL);
    }
    assert_int_equal(joined, 0);
    assert_int_equal(w.rc, 0);
    assert_int_equal(journal_seq(&f), before + 3); /* no second re-learn started meanwhile */
    dt_durable_stats ds0, ds1;
    dt_durable_stats_get(f.d, &ds0);
    pthread_t snap;
    if (snapshot_during_fit) {
        assert_int_equal(pthread_create(&snap, NULL, snapshot_main, f.d), 0);
        usleep(200000);
        dt_durable_stats_get(f.d, &ds1);
        assert_int_equal(ds1.snapshots, ds0.snapshots);
    }
    pthread_mutex_lock(&gate.mu);
    gate.go = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    if (snapshot_during_fit) {
        pthread_join(snap, NULL);
        dt_durable_stats_get(f.d, &ds1);
        assert_int_equal(ds1.snapshots, ds0.snapshots + 1);
    }
    dt_store_wait_relearn(&f.st);
    dt_store_fini(&f.st); /* the background thread has finished */
    dt_store_init(&f.st, f.e, f.d, &f.commit, &f.lock);
    assert_int_equal(relearned_calls, 1);
    assert_string_equal(relearned_tenant, "t");
    assert_string_equal(dt_engine_dense_kind(f.e, "t"), "lsa");
    assert_false(dt_engine_needs_build(f.e, "t"));
    /* a row the re-learn computed - during the fit from its copy (a0, a5, a29), or caught up after
     * it (a100..a102, written during the fit) - is the row an upsert of the same record computes */
    const int firsts[] = {0, 5, 29, 100, 101, 102};
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", firsts[i]);
        dt_index *ia = dt_engine_index(f.e, "t", DT_ACHIEVEMENT);
        size_t d = dt_index_dim(ia);
        float *old_row = malloc(d * sizeof *old_row);
        memcpy(old_row, dt_index_row(ia, (uint32_t)dt_index_find(ia, id)), d * sizeof *old_row);
        assert_int_equal(upsert_recs(&f, firsts[i], 1, &c, &err), 0);
        ia = dt_engine_index(f.e, "t", DT_ACHIEVEMENT);
        assert_memory_equal(dt_index_row(ia, (uint32_t)dt_index_find(ia, id)), old_row, d * sizeof *old_row);
        free(old_row);
    }
    /* the replay: the upsert, the marker (learned there, from those 30 records), the 3 records */
    expect_restart_equal(&f, 33);
    close_fixture(&f);
}

static void test_background_relearn_lets_writers_in_and_replays_equal(void **unused)
{
    (void)unused;
    background_relearn(false);
}

static void test_snapshot_waits_for_the_swap_of_a_background_relearn(void **unused)
{
    (void)unused;
    background_relearn(true);
}

/* ---- a snapshot writes a frozen state while writes go on ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, go;
} sgate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static void paused_serialise(void *ud)
{
    fixture *f = ud;
    assert_int_equal(pthread_mutex_trylock(&f->commit), 0); /* the commit mutex is free */
    pthread_mutex_unlock(&f->commit);
    pthread_mutex_lock(&sgate.mu);
    sgate.entered = true;
    pthread_cond_broadcast(&sgate.cv);
    while (!sgate.go) pthread_cond_wait(&sgate.cv, &sgate.mu);
    pthread_mutex_unlock(&sgate.mu);
}

static void *grow_main(void *p)
{
    writer_arg *w = p;
    dt_commit c;
    dt_err err = DT_ERR_INIT;
    /* 100 new records (the index grows: its arrays are swapped under the write lock) and a
     * replacement of a5 (its frozen slot dies) */
    w->rc = upsert_recs(w->f, 200, 100, &c, &err);
    if (!w->rc) w->rc = upsert_recs(w->f, 5, 1, &c, &err);
    return NULL;
}

typedef struct section_count {
    size_t records;
    bool epochs;
} section_count;

static int count_indexed(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    (void)err;
    section_count *sc = ud;
    if (type == DT_S_INDEXED && len >= 12) sc->records += (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16;
    if (type == DT_S_EPOCHS) sc->epochs = true;
    return 0;
}

/* Writers do not wait for a snapshot being written: it holds what was stored when it was frozen
 * (60 records, not the 100 written meanwhile, and a5 as it was), the arrays it reads grow under it
 * (ASan sees any read of a freed one), and a restart from it and the journal after it gives the
 * state the daemon holds, rows and epochs included. */
static void test_snapshot_writes_a_frozen_state_while_writes_go_on(void **unused)
{
    (void)unused;
    fixture f;
    open_fixture(&f, true);
    dt_commit c;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(upsert_recs(&f, 0, 60, &c, &err), 0); /* learned inline: a basis, 60 rows */
    assert_string_equal(dt_engine_dense_kind(f.e, "t"), "lsa");
    uint64_t frozen_seq = journal_seq(&f);
    sgate.entered = sgate.go = false;
    dt_durable_set_serialise_hook(f.d, paused_serialise, &f);
    pthread_t snap;
    assert_int_equal(pthread_create(&snap, NULL, snapshot_main, f.d), 0);
    pthread_mutex_lock(&sgate.mu);
    while (!sgate.entered) pthread_cond_wait(&sgate.cv, &sgate.mu);
    pthread_mutex_unlock(&sgate.mu);
    assert_true(dt_durable_serialising(f.d));
    writer_arg w = {&f, -1};
    pthread_t t;
    int joined = run_briefly(grow_main, &w, &t);
    pthread_mutex_lock(&sgate.mu);
    sgate.go = true;
    pthread_cond_broadcast(&sgate.cv);
    pthread_mutex_unlock(&sgate.mu);
    if (joined != 0) pthread_join(t, NULL);
    assert_int_equal(joined, 0); /* the writes did not wait for the snapshot */
    assert_int_equal(w.rc, 0);
    pthread_join(snap, NULL);
    assert_false(dt_durable_serialising(f.d));
    dt_durable_set_serialise_hook(f.d, NULL, NULL);
    section_count sc = {0, false};
    uint64_t seq = 0;
    assert_int_equal(dt_snapshot_load_latest(f.dir, count_indexed, &sc, &seq, NULL, &err), 0);
    assert_int_equal(seq, frozen_seq);
    assert_int_equal(sc.records, 60);
    assert_true(sc.epochs);
    expect_restart_equal(&f, 160);
    close_fixture(&f);
}

typedef struct locker {
    dt_store *st;
    bool write;
    _Atomic int state; /* 0 waiting, 1 holds the lock, 2 released it */
} locker;

static void *locker_main(void *p)
{
    locker *l = p;
    if (l->write)
        dt_store_write_lock(l->st);
    else
        dt_store_read_long(l->st);
    l->state = 1;
    usleep(20000);
    if (l->write)
        dt_store_write_unlock(l->st);
    else
        dt_store_read_long_end(l->st);
    l->state = 2;
    return NULL;
}

static void wait_state(locker *l, int want)
{
    for (int i = 0; i < 2000 && l->state != want; i++) usleep(1000);
    assert_int_equal(l->state, want);
}

/* A writer waiting for a long reader (a re-rank batch) does not hold up searches: they take the
 * read lock while it waits, since it has not asked for the write lock yet; a new long reader waits
 * behind the writer, so the writer cannot be starved by a stream of batches. */
static void test_writer_waits_for_long_readers_without_blocking_searches(void **unused)
{
    (void)unused;
    fixture f;
    open_fixture(&f, false);
    dt_store_read_long(&f.st); /* a batch in flight */
    locker w = {&f.st, true, 0};
    pthread_t tw;
    assert_int_equal(pthread_create(&tw, NULL, locker_main, &w), 0);
    for (int i = 0; i < 2000 && !f.st.writers_waiting; i++) usleep(1000);
    assert_int_equal(f.st.writers_waiting, 1);
    usleep(20000);
    assert_int_equal(w.state, 0);
    /* a search gets the read lock (with a writer-preferring lock it would not, had the writer
     * asked for the write lock) */
    assert_int_equal(pthread_rwlock_tryrdlock(&f.lock), 0);
    pthread_rwlock_unlock(&f.lock);
    locker r = {&f.st, false, 0};
    pthread_t tr;
    assert_int_equal(pthread_create(&tr, NULL, locker_main, &r), 0);
    usleep(20000);
    assert_int_equal(r.state, 0); /* the next batch waits for the writer */
    dt_store_read_long_end(&f.st);
    wait_state(&w, 2);
    wait_state(&r, 2);
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    close_fixture(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_run_in_order_under_their_locks),
        cmocka_unit_test(test_refused_before_the_journal_changes_nothing),
        cmocka_unit_test(test_apply_failure_is_reported_as_such),
        cmocka_unit_test(test_without_a_journal),
        cmocka_unit_test(test_reindex_is_journaled_after_the_write),
        cmocka_unit_test(test_background_relearn_lets_writers_in_and_replays_equal),
        cmocka_unit_test(test_snapshot_waits_for_the_swap_of_a_background_relearn),
        cmocka_unit_test(test_writer_waits_for_long_readers_without_blocking_searches),
        cmocka_unit_test(test_snapshot_writes_a_frozen_state_while_writes_go_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
