/* test_durable.c - the daemon's durable state with outcomes (store/durable.c): outcome events
 * journaled per call and snapshotted per tenant, served counts in snapshots only, old directories
 * without outcomes, damaged outcome payloads refused with the entry and field named, and the
 * read-only load that `dovetail stats --data-dir` uses (no byte of the directory changes, a torn
 * tail is ignored, a daemon may hold the directory).
 *
 * The reference for every comparison is the list of events the test itself added, in order, and
 * the served counts it noted; each directory is a fresh mkdtemp under /tmp.
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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "codec.h"
#include "durable.h"
#include "journal.h"
#include "snapshot.h"

static char *make_dir(void)
{
    char *d = strdup("/tmp/dt-durable-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    DIR *dp = opendir(d);
    assert_non_null(dp);
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(dp)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", d, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(dp);
    assert_int_equal(rmdir(d), 0);
    free(d);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- the state under test and its reference ---- */

typedef struct ref_event {
    char tenant[16], d[16], a[16];
    dt_outcome_kind kind;
    dt_outcome_reason reason;
    double amount;
    int64_t at;
} ref_event;

typedef struct state {
    char *dir;
    dt_engine *e;
    dt_outcome_store *os;
    pthread_rwlock_t lock;
    dt_durable *d;
    int hook_calls;
} state;

static void hook(void *ud)
{
    ((state *)ud)->hook_calls++;
}

static void open_state(state *st)
{
    dt_err err = DT_ERR_INIT;
    st->e = dt_engine_new(NULL, &err);
    st->os = dt_outcome_store_new(&err);
    assert_non_null(st->e);
    assert_non_null(st->os);
    pthread_rwlock_init(&st->lock, NULL);
    dt_durable_opts o = {st->dir, DT_FSYNC_NO, (size_t)1 << 40, true, hook, st, NULL};
    st->d = dt_durable_open(st->e, st->os, &st->lock, &o, &err);
    if (!st->d) fail_msg("open %s: %s: %s", st->dir, err.field, err.msg);
}

static void close_state(state *st)
{
    dt_durable_close(st->d, false);
    dt_outcome_store_free(st->os);
    dt_engine_free(st->e);
    pthread_rwlock_destroy(&st->lock);
    st->d = NULL;
}

/* Upserts n records of each side in tenant t (ids d0.., a0..) as the daemon does: one entry. */
static void put_records(state *st, const char *t, int n)
{
    dt_record *recs = calloc((size_t)(2 * n), sizeof *recs);
    dt_record **ptrs = calloc((size_t)(2 * n), sizeof *ptrs);
    assert_true(recs && ptrs);
    for (int i = 0; i < 2 * n; i++) {
        dt_record *r = &recs[i];
        dt_record_init(r);
        char id[16], text[64];
        snprintf(id, sizeof id, "%c%d", i < n ? 'd' : 'a', i % n);
        snprintf(text, sizeof text, "battery separator coating %d", i);
        r->tenant = strdup(t);
        r->id = strdup(id);
        r->side = i < n ? DT_DEMAND : DT_ACHIEVEMENT;
        r->text = strdup(text);
        r->field = strdup(i % 3 ? "C.38.4" : "C.34.1");
        r->region = strdup(i % 2 ? "CN.32.05" : "CN.31");
        ptrs[i] = r;
    }
    uint8_t *p;
    size_t len;
    uint64_t seq;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_durable_encode_upsert(ptrs, (size_t)(2 * n), &p, &len, &err), 0);
    assert_int_equal(dt_durable_append(st->d, DT_J_UPSERT, p, len, &seq, &err), 0);
    for (int i = 0; i < 2 * n; i++) assert_int_equal(dt_engine_upsert(st->e, &recs[i], &err), 0);
    free(p);
    free(ptrs);
    free(recs);
}

/* A valid random event of tenant t over records d0..d(n-1), a0..a(n-1). */
static ref_event rand_event(uint64_t *s, const char *t, int n)
{
    ref_event r;
    memset(&r, 0, sizeof r);
    snprintf(r.tenant, sizeof r.tenant, "%s", t);
    snprintf(r.d, sizeof r.d, "d%d", (int)(rng_next(s) % (uint64_t)n));
    snprintf(r.a, sizeof r.a, "a%d", (int)(rng_next(s) % (uint64_t)n));
    r.kind = (dt_outcome_kind)(rng_next(s) % DT_OUTCOME_KIND_COUNT);
    r.reason = r.kind == DT_OUTCOME_DECLINED ? (dt_outcome_reason)(1 + rng_next(s) % 4) : DT_OUTCOME_REASON_NONE;
    r.amount = r.kind == DT_OUTCOME_DEAL_SIGNED ? (double)(rng_next(s) % 100000) / 4 : NAN;
    r.at = (int64_t)(rng_next(s) % 2000000000u);
    return r;
}

static dt_outcome_event as_event(const ref_event *r)
{
    dt_outcome_event ev = {r->tenant, r->d, r->a, r->kind, r->reason, r->amount, r->at};
    return ev;
}

/* One RecordOutcome call as the daemon makes it: one entry for the batch, then the events. */
static void record_batch(state *st, const ref_event *v, size_t n)
{
    dt_outcome_event *evs = calloc(n, sizeof *evs);
    assert_non_null(evs);
    for (size_t i = 0; i < n; i++) evs[i] = as_event(&v[i]);
    uint8_t *p;
    size_t len;
    uint64_t seq;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_durable_encode_outcomes(v[0].tenant, evs, n, &p, &len, &err), 0);
    assert_int_equal(dt_durable_append(st->d, DT_J_OUTCOMES, p, len, &seq, &err), 0);
    for (size_t i = 0; i < n; i++)
        if (dt_outcome_add(st->os, &evs[i], &err)) fail_msg("add: %s: %s", err.field, err.msg);
    free(p);
    free(evs);
}

typedef struct walk {
    const ref_event *want;
    size_t n, at;
    const char *tenant;
} walk;

static int check_event(void *ud, const dt_outcome_event *ev)
{
    walk *w = ud;
    while (w->at < w->n && strcmp(w->want[w->at].tenant, w->tenant)) w->at++;
    if (w->at == w->n) fail_msg("tenant %s: an event more than were added", w->tenant);
    const ref_event *r = &w->want[w->at++];
    assert_string_equal(ev->tenant, r->tenant);
    assert_string_equal(ev->demand_id, r->d);
    assert_string_equal(ev->achievement_id, r->a);
    assert_int_equal(ev->kind, r->kind);
    assert_int_equal(ev->reason, r->reason);
    assert_true(isnan(r->amount) ? isnan(ev->amount) : ev->amount == r->amount);
    assert_true(ev->at == r->at);
    return 0;
}

/* The store holds exactly the reference events of each tenant, in the order they were added. */
static void expect_events(const dt_outcome_store *os, const ref_event *v, size_t n, const char *const *tenants,
                          size_t nt)
{
    for (size_t t = 0; t < nt; t++) {
        walk w = {v, n, 0, tenants[t]};
        size_t want = 0;
        for (size_t i = 0; i < n; i++) want += !strcmp(v[i].tenant, tenants[t]);
        assert_int_equal(dt_outcome_count(os, tenants[t]), want);
        assert_int_equal(dt_outcome_each(os, tenants[t], check_event, &w), 0);
    }
}

static uint64_t served_of(const dt_outcome_store *os, const char *t, dt_side side, const char *id)
{
    dt_outcome_record_stats rs;
    dt_outcome_record_get(os, t, side, id, &rs);
    return rs.served;
}

static void expect_same_stats(const dt_outcome_store *a, const dt_engine *ea, const dt_outcome_store *b,
                              const dt_engine *eb, const char *t)
{
    dt_outcome_stats_opts o;
    dt_outcome_stats_opts_default(&o);
    dt_outcome_stats_row *ra, *rb;
    size_t na, nb;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_outcome_stats(a, ea, t, &o, &ra, &na, &err), 0);
    assert_int_equal(dt_outcome_stats(b, eb, t, &o, &rb, &nb, &err), 0);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(ra[i].field, rb[i].field);
        assert_string_equal(ra[i].region, rb[i].region);
        assert_int_equal(ra[i].demands, rb[i].demands);
        assert_int_equal(ra[i].achievements_open, rb[i].achievements_open);
        assert_int_equal(ra[i].served_demands, rb[i].served_demands);
        assert_int_equal(ra[i].served_achievements, rb[i].served_achievements);
        assert_memory_equal(ra[i].events, rb[i].events, sizeof ra[i].events);
        assert_memory_equal(ra[i].declined, rb[i].declined, sizeof ra[i].declined);
        assert_int_equal(ra[i].contacted_pairs, rb[i].contacted_pairs);
        assert_int_equal(ra[i].deal_pairs, rb[i].deal_pairs);
        assert_true(ra[i].deal_amount == rb[i].deal_amount);
    }
    free(ra);
    free(rb);
}

/* ---- tests ---- */

static void test_outcomes_and_served_counts_survive_restarts(void **unused)
{
    (void)unused;
    uint64_t s = 41;
    state st;
    memset(&st, 0, sizeof st);
    st.dir = make_dir();
    open_state(&st);
    put_records(&st, "t1", 30);
    put_records(&st, "t2", 10);
    /* more than one snapshot section's worth of events in t1 */
    enum { N1 = 5200, N2 = 300 };
    ref_event *v = calloc(N1 + N2 + 400, sizeof *v);
    size_t n = 0;
    while (n < N1 + N2) {
        size_t batch = 1 + rng_next(&s) % 40;
        const char *t = rng_next(&s) % 16 ? "t1" : "t2";
        for (size_t i = 0; i < batch; i++) v[n + i] = rand_event(&s, t, !strcmp(t, "t1") ? 30 : 10);
        record_batch(&st, v + n, batch);
        n += batch;
    }
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_outcome_note_served(st.os, "t1", DT_DEMAND, "d3", 10, &err), 0);
    const char *const tenants[] = {"t1", "t2"};
    close_state(&st);

    /* restart from the journal alone: every event, no served count (those live in snapshots) */
    open_state(&st);
    expect_events(st.os, v, n, tenants, 2);
    assert_int_equal(served_of(st.os, "t1", DT_DEMAND, "d3"), 0);
    dt_index *di = dt_engine_index(st.e, "t1", DT_DEMAND);
    assert_int_equal(di ? dt_index_count(di) : 0, 30);

    /* a snapshot carries the served counts; events after it come from the journal */
    assert_int_equal(dt_outcome_note_served(st.os, "t1", DT_DEMAND, "d3", 10, &err), 0);
    assert_int_equal(dt_outcome_note_served(st.os, "t2", DT_ACHIEVEMENT, "a9", 4, &err), 0);
    assert_int_equal(dt_outcome_note_served(st.os, "t2", DT_ACHIEVEMENT, "gone", 2, &err), 0);
    st.hook_calls = 0;
    assert_int_equal(dt_durable_snapshot(st.d, &err), 0);
    assert_int_equal(st.hook_calls, 1);
    for (int k = 0; k < 10; k++) {
        v[n] = rand_event(&s, "t2", 10);
        record_batch(&st, v + n, 1);
        n++;
    }
    assert_int_equal(dt_outcome_note_served(st.os, "t1", DT_DEMAND, "d3", 1, &err), 0); /* after the snapshot */
    dt_engine *e0 = st.e;
    dt_outcome_store *os0 = st.os;
    st.e = NULL, st.os = NULL;
    dt_durable_close(st.d, false);
    pthread_rwlock_destroy(&st.lock);

    open_state(&st);
    expect_events(st.os, v, n, tenants, 2);
    assert_int_equal(served_of(st.os, "t1", DT_DEMAND, "d3"), 10);
    assert_int_equal(served_of(st.os, "t2", DT_ACHIEVEMENT, "a9"), 4);
    assert_int_equal(served_of(st.os, "t2", DT_ACHIEVEMENT, "gone"), 2);
    /* everything but the one served count noted after the snapshot is as it was */
    assert_int_equal(dt_outcome_note_served(st.os, "t1", DT_DEMAND, "d3", 1, &err), 0);
    expect_same_stats(os0, e0, st.os, st.e, "t1");
    expect_same_stats(os0, e0, st.os, st.e, "t2");
    dt_outcome_store_free(os0);
    dt_engine_free(e0);

    /* a final snapshot on close, then a restart replays nothing and loses nothing */
    dt_durable_close(st.d, true);
    st.d = NULL;
    dt_engine *e1 = st.e;
    dt_outcome_store *os1 = st.os;
    pthread_rwlock_destroy(&st.lock);
    open_state(&st);
    expect_events(st.os, v, n, tenants, 2);
    assert_int_equal(served_of(st.os, "t1", DT_DEMAND, "d3"), 11);
    expect_same_stats(os1, e1, st.os, st.e, "t1");
    dt_outcome_store_free(os1);
    dt_engine_free(e1);
    close_state(&st);
    free(v);
    remove_dir(st.dir);
}

typedef struct types_seen {
    unsigned mask;
} types_seen;

static int see_type(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    (void)p, (void)len, (void)err;
    ((types_seen *)ud)->mask |= 1u << type;
    return 0;
}

static void test_directory_without_outcomes_loads(void **unused)
{
    (void)unused;
    state st;
    memset(&st, 0, sizeof st);
    st.dir = make_dir();
    open_state(&st);
    put_records(&st, "t", 5);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_durable_snapshot(st.d, &err), 0);
    put_records(&st, "u", 2);
    close_state(&st);
    /* what an older build wrote: record sections only */
    types_seen ts = {0};
    uint64_t seq;
    assert_int_equal(dt_snapshot_load_latest(st.dir, see_type, &ts, &seq, NULL, &err), 0);
    assert_int_equal(ts.mask, 1u << DT_S_INDEXED | 1u << DT_S_EPOCHS);
    open_state(&st);
    size_t nt;
    dt_outcome_tenants(st.os, &nt);
    assert_int_equal(nt, 0);
    assert_non_null(dt_engine_get(st.e, "u", DT_ACHIEVEMENT, "a1"));
    assert_non_null(dt_engine_get(st.e, "t", DT_DEMAND, "d4"));
    close_state(&st);
    remove_dir(st.dir);
}

/* Writes one journal entry (valid checksum) into a fresh directory and expects start-up to refuse
 * it with -DT_ECORRUPT, naming the entry and the needle. */
static void expect_entry_refused(uint8_t type, dt_codec_buf *b, const char *needle)
{
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    dt_journal *j = dt_journal_open(dir, DT_FSYNC_NO, 1, &err);
    assert_non_null(j);
    assert_int_equal(dt_codec_buf_check(b, &err), 0);
    assert_int_equal(dt_journal_append(j, type, b->data, b->len, NULL, &err), 0);
    dt_journal_close(j);
    dt_codec_buf_fini(b);
    state st;
    memset(&st, 0, sizeof st);
    st.dir = dir;
    st.e = dt_engine_new(NULL, &err);
    st.os = dt_outcome_store_new(&err);
    pthread_rwlock_init(&st.lock, NULL);
    dt_durable_opts o = {dir, DT_FSYNC_NO, (size_t)1 << 40, true, NULL, NULL, NULL};
    dt_durable *d = dt_durable_open(st.e, st.os, &st.lock, &o, &err);
    assert_null(d);
    assert_int_equal(err.code, DT_ECORRUPT);
    if (!strstr(err.msg, needle) && !strstr(err.field, needle))
        fail_msg("error \"%s: %s\" lacks \"%s\"", err.field, err.msg, needle);
    /* the read-only load refuses it the same way */
    dt_engine *e2;
    dt_outcome_store *os2;
    dt_err err2 = DT_ERR_INIT;
    assert_int_equal(dt_durable_load_readonly(dir, NULL, &e2, &os2, NULL, &err2), -DT_ECORRUPT);
    assert_null(e2);
    assert_null(os2);
    dt_outcome_store_free(st.os);
    dt_engine_free(st.e);
    pthread_rwlock_destroy(&st.lock);
    remove_dir(dir);
}

static void outcome_head(dt_codec_buf *b, const char *tenant, uint32_t count)
{
    dt_codec_put_str(b, tenant);
    dt_codec_put_u32(b, count);
}

static void test_damaged_outcome_entries_are_refused_with_clear_errors(void **unused)
{
    (void)unused;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    /* a kind beyond the six */
    outcome_head(&b, "t", 1);
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 9), dt_codec_put_u8(&b, 0);
    dt_codec_put_str(&b, "d"), dt_codec_put_str(&b, "a"), dt_codec_put_f64(&b, NAN), dt_codec_put_i64(&b, 0);
    expect_entry_refused(DT_J_OUTCOMES, &b, "kind");
    /* well-formed bytes, but a decline without a reason: the store refuses it */
    outcome_head(&b, "t", 1);
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, DT_OUTCOME_DECLINED), dt_codec_put_u8(&b, 0);
    dt_codec_put_str(&b, "d"), dt_codec_put_str(&b, "a"), dt_codec_put_f64(&b, NAN), dt_codec_put_i64(&b, 0);
    expect_entry_refused(DT_J_OUTCOMES, &b, "journal entry 1: stored outcome 0 of tenant 't' refused");
    /* a count the payload cannot hold */
    outcome_head(&b, "t", 1000);
    expect_entry_refused(DT_J_OUTCOMES, &b, "count");
    /* the event cut short inside its last field (ids long enough for the count check to pass) */
    outcome_head(&b, "t", 1);
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 0), dt_codec_put_u8(&b, 0);
    dt_codec_put_str(&b, "demand-with-a-long-id"), dt_codec_put_str(&b, "a"), dt_codec_put_f64(&b, NAN);
    dt_codec_put_i64(&b, 0);
    b.len -= 6;
    expect_entry_refused(DT_J_OUTCOMES, &b, "journal entry 1: at: truncated: need 8 bytes");
    /* trailing bytes after the events */
    outcome_head(&b, "t", 0);
    dt_codec_put_u8(&b, 0);
    expect_entry_refused(DT_J_OUTCOMES, &b, "trailing");
}

static void emb_record(dt_record *r, const char *id, const char *title, size_t dim)
{
    dt_record_init(r);
    r->tenant = strdup("e");
    r->id = strdup(id);
    r->title = strdup(title);
    r->text = strdup("solid-state electrolyte");
    r->side = DT_ACHIEVEMENT;
    r->embedding = calloc(dim, sizeof *r->embedding);
    r->embedding[dim - 1] = 1;
    r->dim = dim;
}

/* A journal written by a version that journaled before checking: the entry of a refused batch (a
 * good record, then one whose embedding has the wrong length) must neither stop start-up nor be
 * half-applied: it is skipped whole. */
static void test_entry_of_a_refused_batch_is_skipped_whole(void **unused)
{
    (void)unused;
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    dt_journal *j = dt_journal_open(dir, DT_FSYNC_NO, 1, &err);
    assert_non_null(j);
    dt_record r[3];
    emb_record(&r[0], "a", "ORIGINAL", 3);
    emb_record(&r[1], "a", "CHANGED", 3);
    emb_record(&r[2], "r1", "wrong length", 2);
    dt_record *first[] = {&r[0]}, *refused[] = {&r[1], &r[2]};
    uint8_t *p;
    size_t len;
    assert_int_equal(dt_durable_encode_upsert(first, 1, &p, &len, &err), 0);
    assert_int_equal(dt_journal_append(j, DT_J_UPSERT, p, len, NULL, &err), 0);
    free(p);
    assert_int_equal(dt_durable_encode_upsert(refused, 2, &p, &len, &err), 0);
    assert_int_equal(dt_journal_append(j, DT_J_UPSERT, p, len, NULL, &err), 0);
    free(p);
    dt_journal_close(j);
    for (int i = 0; i < 3; i++) dt_record_free(&r[i]);
    state st;
    memset(&st, 0, sizeof st);
    st.dir = dir;
    open_state(&st);
    const dt_record *a = dt_engine_get(st.e, "e", DT_ACHIEVEMENT, "a");
    assert_non_null(a);
    assert_string_equal(a->title, "ORIGINAL");
    assert_null(dt_engine_get(st.e, "e", DT_ACHIEVEMENT, "r1"));
    close_state(&st);
    remove_dir(dir);
}

/* A restart from a snapshot restores every record's terms and dense row exactly as the index held
 * them (nothing is tokenized or projected again: the rows are bitwise equal, basis included), and
 * a search ranks the same. */
static void test_snapshot_restores_terms_and_rows(void **unused)
{
    (void)unused;
    state st;
    memset(&st, 0, sizeof st);
    st.dir = make_dir();
    open_state(&st);
    put_records(&st, "t", 15); /* 30 records: enough for an LSA basis */
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_engine_build(st.e, "t", &err), 0);
    assert_int_equal(dt_durable_log_build(st.d, "t", NULL, &err), 0);
    assert_string_equal(dt_engine_dense_kind(st.e, "t"), "lsa");
    assert_int_equal(dt_durable_snapshot(st.d, &err), 0);
    dt_durable_close(st.d, false);
    st.d = NULL;
    dt_engine *e1 = st.e;
    dt_outcome_store *os1 = st.os;
    pthread_rwlock_destroy(&st.lock);
    open_state(&st);
    assert_string_equal(dt_engine_dense_kind(st.e, "t"), "lsa");
    for (int side = 0; side < 2; side++) {
        dt_index *a = dt_engine_index(e1, "t", (dt_side)side), *b = dt_engine_index(st.e, "t", (dt_side)side);
        assert_int_equal(dt_index_count(a), dt_index_count(b));
        size_t dim = dt_index_dim(a);
        assert_true(dim > 0);
        assert_int_equal(dt_index_dim(b), dim);
        for (uint32_t s = 0; s < dt_index_slots(a); s++) {
            if (!dt_index_live(a, s)) continue;
            int64_t o = dt_index_find(b, dt_index_record(a, s)->id);
            assert_true(o >= 0);
            assert_memory_equal(dt_index_row(a, s), dt_index_row(b, (uint32_t)o), dim * sizeof(float));
            const dt_tf *ta, *tb;
            size_t na, nb;
            dt_index_terms(a, s, &ta, &na);
            dt_index_terms(b, (uint32_t)o, &tb, &nb);
            assert_int_equal(na, nb);
            assert_memory_equal(ta, tb, na * sizeof *ta);
            assert_int_equal(dt_index_doc_len(a, s), dt_index_doc_len(b, (uint32_t)o));
        }
    }
    assert_int_equal(dt_engine_epoch(e1, "t"), dt_engine_epoch(st.e, "t"));
    dt_outcome_store_free(os1);
    dt_engine_free(e1);
    close_state(&st);
    remove_dir(st.dir);
}

/* The epoch a snapshot was taken at comes back, and the journal after it continues it. */
static void test_epochs_survive_restarts(void **unused)
{
    (void)unused;
    state st;
    memset(&st, 0, sizeof st);
    st.dir = make_dir();
    open_state(&st);
    put_records(&st, "t", 4);
    put_records(&st, "t", 4); /* the same ids again: more writes than records */
    uint64_t e1 = dt_engine_epoch(st.e, "t");
    assert_int_equal(e1, 16); /* one per upserted record: 8 live records */
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_durable_snapshot(st.d, &err), 0);
    put_records(&st, "t", 2);
    uint64_t e2 = dt_engine_epoch(st.e, "t");
    assert_true(e2 > e1);
    close_state(&st);
    open_state(&st);
    assert_int_equal(dt_engine_epoch(st.e, "t"), e2);
    close_state(&st);
    remove_dir(st.dir);
}

/* Writes a snapshot with one section into a fresh directory and expects start-up to refuse it. */
static void expect_section_refused(uint8_t type, dt_codec_buf *b, const char *needle)
{
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    dt_snapshot_writer *w;
    assert_int_equal(dt_snapshot_begin(dir, 0, &w, &err), 0);
    assert_int_equal(dt_snapshot_put(w, type, b->data, b->len, &err), 0);
    assert_int_equal(dt_snapshot_commit(w, &err), 0);
    dt_codec_buf_fini(b);
    dt_engine *e;
    dt_outcome_store *os;
    assert_int_equal(dt_durable_load_readonly(dir, NULL, &e, &os, NULL, &err), -DT_ECORRUPT);
    if (!strstr(err.msg, needle)) fail_msg("error \"%s: %s\" lacks \"%s\"", err.field, err.msg, needle);
    remove_dir(dir);
}

static void test_damaged_outcome_sections_are_refused(void **unused)
{
    (void)unused;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    outcome_head(&b, "t", 1);
    dt_codec_put_u8(&b, 5), dt_codec_put_str(&b, "d"), dt_codec_put_u64(&b, 3);
    expect_section_refused(DT_S_SERVED, &b, "bad side 5");
    outcome_head(&b, "t", 1);
    dt_codec_put_u8(&b, 0), dt_codec_put_str(&b, "a\x01"), dt_codec_put_u64(&b, 3);
    expect_section_refused(DT_S_SERVED, &b, "served count 0 of tenant 't' refused: id: contains a non-printable");
    outcome_head(&b, "t", 2);
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 0), dt_codec_put_u8(&b, 0);
    dt_codec_put_str(&b, "d"), dt_codec_put_str(&b, "a"), dt_codec_put_f64(&b, NAN), dt_codec_put_i64(&b, 0);
    expect_section_refused(DT_S_OUTCOMES, &b, "count");
    dt_codec_put_u8(&b, 0);
    expect_section_refused(9, &b, "unknown section type 9");
}

/* A snapshot's record and epoch sections with bad bytes: refused, naming the section, the record
 * and the field. */
static void test_damaged_indexed_and_epoch_sections_are_refused(void **unused)
{
    (void)unused;
    dt_record r;
    dt_record_init(&r);
    r.tenant = "t", r.id = "a1", r.text = "battery", r.side = DT_ACHIEVEMENT;
    dt_err err = DT_ERR_INIT;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    /* a row of 3 floats with 2 present: the count is checked against the bytes left */
    dt_codec_put_u64(&b, 0), dt_codec_put_u32(&b, 1);
    assert_int_equal(dt_codec_put_record(&b, &r, &err), 0);
    dt_codec_put_u32(&b, 1), dt_codec_put_u32(&b, 1), dt_codec_put_u32(&b, 7), dt_codec_put_f32(&b, 1);
    dt_codec_put_u32(&b, 3), dt_codec_put_f32(&b, 0.5f), dt_codec_put_f32(&b, 0.5f);
    expect_section_refused(DT_S_INDEXED, &b, "snapshot records: record 0 ('a1'): dim: count 3 cannot fit");
    /* more terms than the section holds */
    dt_codec_put_u64(&b, 0), dt_codec_put_u32(&b, 1);
    assert_int_equal(dt_codec_put_record(&b, &r, &err), 0);
    dt_codec_put_u32(&b, 1), dt_codec_put_u32(&b, 1000);
    expect_section_refused(DT_S_INDEXED, &b, "snapshot records: record 0 ('a1'): terms:");
    /* an epoch cut short */
    dt_codec_put_u32(&b, 1), dt_codec_put_str(&b, "t"), dt_codec_put_u32(&b, 5);
    expect_section_refused(DT_S_EPOCHS, &b, "snapshot epochs: epoch: truncated");
}

/* Name, size and XXH3 of every file in dir, sorted by name into one string. */
static char *dir_digest(const char *dir)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    char *lines[64];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        XXH3_state_t *h = XXH3_createState();
        XXH3_64bits_reset(h);
        char buf[8192];
        size_t r, total = 0;
        while ((r = fread(buf, 1, sizeof buf, f)) > 0) XXH3_64bits_update(h, buf, r), total += r;
        fclose(f);
        assert_true(n < 64);
        lines[n] = malloc(400);
        snprintf(lines[n], 400, "%s %zu %016llx\n", e->d_name, total, (unsigned long long)XXH3_64bits_digest(h));
        XXH3_freeState(h);
        n++;
    }
    closedir(dp);
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(lines[k - 1], lines[k]) > 0; k--) {
            char *t = lines[k];
            lines[k] = lines[k - 1];
            lines[k - 1] = t;
        }
    char *out = calloc(1, n * 400 + 1);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        free(lines[i]);
    }
    return out;
}

static void test_readonly_load(void **unused)
{
    (void)unused;
    uint64_t s = 43;
    state st;
    memset(&st, 0, sizeof st);
    st.dir = make_dir();
    open_state(&st);
    put_records(&st, "t", 8);
    ref_event v[60];
    for (int i = 0; i < 30; i++) v[i] = rand_event(&s, "t", 8);
    record_batch(&st, v, 30);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_outcome_note_served(st.os, "t", DT_DEMAND, "d1", 6, &err), 0);
    assert_int_equal(dt_durable_snapshot(st.d, &err), 0);
    for (int i = 30; i < 60; i++) v[i] = rand_event(&s, "t", 8);
    record_batch(&st, v + 30, 30);
    const char *const tenants[] = {"t"};

    /* while the directory is held (the lock refuses a second writer) */
    dt_engine *e;
    dt_outcome_store *os;
    dt_durable_load_report rep;
    char *before = dir_digest(st.dir);
    assert_int_equal(dt_durable_load_readonly(st.dir, NULL, &e, &os, &rep, &err), 0);
    expect_events(os, v, 60, tenants, 1);
    assert_int_equal(served_of(os, "t", DT_DEMAND, "d1"), 6);
    assert_non_null(dt_engine_get(e, "t", DT_ACHIEVEMENT, "a7"));
    assert_int_equal(rep.entries, 1);
    assert_int_equal(rep.torn_bytes, 0);
    assert_true(rep.snapshot[0] != 0);
    assert_int_equal(rep.attempts, 1);
    char *after = dir_digest(st.dir);
    assert_string_equal(before, after);
    free(before);
    free(after);
    dt_outcome_store_free(os);
    dt_engine_free(e);
    close_state(&st);

    /* a torn tail: ignored, and left where it is */
    DIR *dp = opendir(st.dir);
    struct dirent *de;
    char newest[PATH_MAX] = "";
    while ((de = readdir(dp)) != NULL)
        if (!strncmp(de->d_name, "journal.", 8)) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", st.dir, de->d_name);
            if (strcmp(path, newest) > 0) snprintf(newest, sizeof newest, "%s", path);
        }
    closedir(dp);
    FILE *f = fopen(newest, "ab");
    assert_non_null(f);
    const uint8_t torn[] = {0xD7, DT_J_OUTCOMES, 40, 0, 0, 0, 3};
    fwrite(torn, 1, sizeof torn, f);
    fclose(f);
    before = dir_digest(st.dir);
    assert_int_equal(dt_durable_load_readonly(st.dir, NULL, &e, &os, &rep, &err), 0);
    assert_int_equal(rep.torn_bytes, sizeof torn);
    expect_events(os, v, 60, tenants, 1);
    after = dir_digest(st.dir);
    assert_string_equal(before, after);
    free(before);
    free(after);
    dt_outcome_store_free(os);
    dt_engine_free(e);

    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/nothing-here", st.dir);
    assert_int_equal(dt_durable_load_readonly(missing, NULL, &e, &os, NULL, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "data-dir");
    assert_null(e);
    remove_dir(st.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes_and_served_counts_survive_restarts),
        cmocka_unit_test(test_directory_without_outcomes_loads),
        cmocka_unit_test(test_entry_of_a_refused_batch_is_skipped_whole),
        cmocka_unit_test(test_epochs_survive_restarts),
        cmocka_unit_test(test_snapshot_restores_terms_and_rows),
        cmocka_unit_test(test_damaged_outcome_entries_are_refused_with_clear_errors),
        cmocka_unit_test(test_damaged_outcome_sections_are_refused),
        cmocka_unit_test(test_damaged_indexed_and_epoch_sections_are_refused),
        cmocka_unit_test(test_readonly_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
