/* test_rerank.c - the batch re-rank job: lists against per-record dt_search, outcome feedback against
 * a brute-force adjusted ranking, declined pairs, the exposure cap against an independent LP solver
 * (tests/rerank_oracle.py), cancellation, progress, locks and errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rerank.h"
#include "topk.h"

/* Scores of one record computed in another GEMM geometry differ in their last bits (topk.h); a
 * swap of two candidates this close is a near-tie, not a difference. */
#define SCORE_EPS 2e-5f

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double urand(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* ---- collected lists ---- */

typedef struct clist {
    dt_side side;
    char id[32];
    char (*items)[32];
    float *scores;
    size_t n;
} clist;

typedef struct sink {
    clist *v;
    size_t n, cap;
    pthread_mutex_t mu;
    int concurrent, max_concurrent;
    /* cancellation and failure hooks */
    dt_rerank_job *job;
    size_t cancel_after; /* 0 = never */
    dt_side cancel_on_side;
    bool cancel_side_only;
    int fail_with;       /* returned from the emit after cancel_after lists when non-zero */
    dt_rerank_progress seen; /* progress read during the run */
} sink;

static void sink_init(sink *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void sink_free(sink *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].items);
        free(s->v[i].scores);
    }
    free(s->v);
    pthread_mutex_destroy(&s->mu);
}

static int collect(void *ud, const dt_rerank_list *l, dt_err *err)
{
    sink *s = ud;
    pthread_mutex_lock(&s->mu);
    s->concurrent++;
    if (s->concurrent > s->max_concurrent) s->max_concurrent = s->concurrent;
    pthread_mutex_unlock(&s->mu);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    clist *c = &s->v[s->n++];
    c->side = l->side;
    snprintf(c->id, sizeof c->id, "%s", l->id);
    c->n = l->n;
    c->items = malloc((l->n ? l->n : 1) * sizeof *c->items);
    c->scores = malloc((l->n ? l->n : 1) * sizeof *c->scores);
    for (size_t i = 0; i < l->n; i++) {
        snprintf(c->items[i], sizeof c->items[i], "%s", l->items[i].id);
        c->scores[i] = l->items[i].score;
        if (i) assert_true(l->items[i].score <= l->items[i - 1].score);
    }
    if (s->job) dt_rerank_get_progress(s->job, &s->seen);
    int rc = 0;
    if (s->cancel_after && s->n >= s->cancel_after && (!s->cancel_side_only || l->side == s->cancel_on_side)) {
        if (s->fail_with) {
            rc = s->fail_with;
            dt_err_set(err, -s->fail_with, "out", "disk full writing list %zu", s->n);
        } else {
            dt_rerank_cancel(s->job);
        }
    }
    pthread_mutex_lock(&s->mu);
    s->concurrent--;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static const clist *find_list(const sink *s, dt_side side, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].side == side && strcmp(s->v[i].id, id) == 0) return &s->v[i];
    return NULL;
}

/* ---- corpora ---- */

static const char *fields[] = {"C.38.4", "C.38.1", "C.39", "A.01"};
static const char *regions[] = {"CN.32.05", "CN.31", "CN.44.03"};
static const char *words[] = {"锂电池", "隔膜", "涂层", "固态", "电解质", "separator", "coating", "lithium",
                              "battery", "vision", "inspection", "defect", "水稻", "育种", "耐盐碱", "drug",
                              "release", "microsphere", "sensor", "robot", "welding", "laser", "光伏", "储能"};
#define NWORDS (sizeof words / sizeof *words)

static void put(dt_engine *e, dt_record *r)
{
    dt_err err = DT_ERR_INIT;
    if (dt_engine_upsert(e, r, &err)) fail_msg("upsert %s: %s: %s", r->id, err.field, err.msg);
}

static dt_record base_record(dt_side side, int i)
{
    dt_record r;
    dt_record_init(&r);
    r.tenant = strdup("t");
    r.side = side;
    char id[32];
    snprintf(id, sizeof id, "%s%d", side == DT_DEMAND ? "d" : "a", i);
    r.id = strdup(id);
    r.field = strdup(fields[rnd() % 4]);
    r.region = strdup(regions[rnd() % 3]);
    r.trl = (int)(rnd() % 10);
    r.modes = (uint32_t)(1u << (rnd() % DT_MODE_COUNT));
    double p = 1e5 * (double)(1 + rnd() % 20);
    if (rnd() % 4) {
        if (side == DT_DEMAND) r.price_max = p;
        else r.price_min = p, r.price_max = 2 * p;
    }
    if (rnd() % 10 == 0) r.status = DT_CLOSED;
    return r;
}

/* Text records in tenant "t" (LSA). The basis is learned from the first half only, so the job's
 * re-learn has something to do. */
static dt_engine *lsa_corpus(size_t nd, size_t na)
{
    dt_engine_opts o = dt_engine_opts_default();
    o.dim = 24;
    o.threads = 1;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&o, &err);
    assert_non_null(e);
    size_t have[2] = {0, 0};
    for (size_t i = 0; i < nd + na; i++) {
        dt_side side = (i % 2 == 0 && have[DT_DEMAND] < nd) || have[DT_ACHIEVEMENT] >= na ? DT_DEMAND : DT_ACHIEVEMENT;
        dt_record r = base_record(side, (int)have[side]++);
        char text[512] = "";
        size_t topic = rnd() % 6;
        for (int w = 0; w < 8; w++) {
            strcat(text, words[(topic * 4 + rnd() % 6) % NWORDS]);
            strcat(text, " ");
        }
        r.text = strdup(text);
        r.title = strdup(words[(topic * 4) % NWORDS]);
        put(e, &r);
        if (i == (nd + na) / 2) assert_int_equal(dt_engine_build(e, "t", &err), 0);
    }
    return e;
}

/* Random d-dimensional embeddings in tenant "t" (external). */
static dt_engine *emb_corpus(size_t nd, size_t na, size_t d, int threads)
{
    dt_engine_opts o = dt_engine_opts_default();
    o.threads = threads;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&o, &err);
    assert_non_null(e);
    for (size_t i = 0; i < nd + na; i++) {
        dt_record r = base_record(i < nd ? DT_DEMAND : DT_ACHIEVEMENT, (int)(i < nd ? i : i - nd));
        r.dim = d;
        r.embedding = malloc(d * sizeof(float));
        for (size_t j = 0; j < d; j++) r.embedding[j] = (float)(urand() - 0.5);
        put(e, &r);
    }
    return e;
}

static size_t count_open(dt_engine *e, dt_side side)
{
    dt_index *idx = dt_engine_index(e, "t", side);
    return idx ? dt_index_count_open(idx) : 0;
}

/* ---- references ---- */

typedef struct ref {
    const dt_record *rec[10000];
    float score[10000];
    size_t n;
} ref;

static ref R; /* one at a time */

typedef struct declined_ids {
    const char *v[4096];
    size_t n;
} declined_ids;

static void add_declined(void *ud, const char *id, unsigned flags)
{
    declined_ids *d = ud;
    if ((flags & DT_OUTCOME_PAIR_DECLINED) && d->n < 4096) d->v[d->n++] = id;
}

/* The reference list of a record, by the procedure rerank.h documents: dt_search over every
 * candidate but its declined partners (one record per call), plus the outcome adjustment when s
 * is given, sorted by (score desc, slot asc), cut to k. */
static void reference(dt_searcher *sr, dt_engine *e, const dt_outcome_store *s, const dt_outcome_policy *p,
                      dt_side side, const char *id, size_t k, const dt_weights *w)
{
    dt_side target = side == DT_DEMAND ? DT_ACHIEVEMENT : DT_DEMAND;
    static declined_ids dec;
    dec.n = 0;
    if (s) dt_outcome_partners(s, "t", side, id, add_declined, &dec);
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.record_id = id;
    q.record_side = side;
    q.target = target;
    q.weights = w;
    q.exclude_ids = dec.v;
    q.n_exclude = dec.n;
    q.k = s ? dt_index_slots(dt_engine_index(e, "t", target)) : k;
    dt_match_result res;
    dt_err err = DT_ERR_INIT;
    if (dt_search(sr, &q, 1, &res, &err)) fail_msg("reference search %s: %s", id, err.msg);
    const dt_record *self = dt_engine_get(e, "t", side, id);
    static uint32_t slots[10000];
    R.n = 0;
    for (size_t i = 0; i < res.n; i++) {
        float sc = res.v[i].score;
        if (s) {
            const dt_record *d = side == DT_DEMAND ? self : res.v[i].rec;
            const dt_record *a = side == DT_DEMAND ? res.v[i].rec : self;
            sc += dt_outcome_adjust(s, p, d, a);
            if (isinf(sc)) fail_msg("a declined pair of %s was not excluded", id);
        }
        size_t j = R.n++;
        while (j > 0 && (R.score[j - 1] < sc || (R.score[j - 1] == sc && slots[j - 1] > res.v[i].slot))) {
            R.score[j] = R.score[j - 1];
            R.rec[j] = R.rec[j - 1];
            slots[j] = slots[j - 1];
            j--;
        }
        R.score[j] = sc;
        R.rec[j] = res.v[i].rec;
        slots[j] = res.v[i].slot;
    }
    if (R.n > k) R.n = k;
    dt_match_result_free(&res);
}

/* Whether a job list equals the reference R up to near-ties; counts exact positions. */
static void check_list(const clist *c, size_t *exact, size_t *total)
{
    if (c->n != R.n) fail_msg("%s %s: %zu entries, reference %zu", dt_side_name(c->side), c->id, c->n, R.n);
    for (size_t i = 0; i < c->n; i++) {
        (*total)++;
        if (fabsf(c->scores[i] - R.score[i]) > SCORE_EPS)
            fail_msg("%s %s [%zu]: score %.7f, reference %.7f", dt_side_name(c->side), c->id, i, c->scores[i],
                     R.score[i]);
        if (strcmp(c->items[i], R.rec[i]->id) == 0) {
            (*exact)++;
            continue;
        }
        bool tie = false;
        for (size_t j = 0; j < R.n; j++)
            if (strcmp(R.rec[j]->id, c->items[i]) == 0) tie = fabsf(R.score[j] - c->scores[i]) <= SCORE_EPS;
        bool in_ref = false;
        for (size_t j = 0; j < R.n; j++) in_ref = in_ref || strcmp(R.rec[j]->id, c->items[i]) == 0;
        if (!in_ref) tie = c->scores[i] <= R.score[R.n - 1] + SCORE_EPS;
        if (!tie)
            fail_msg("%s %s [%zu]: %s (%.7f), reference %s (%.7f)", dt_side_name(c->side), c->id, i, c->items[i],
                     c->scores[i], R.rec[i]->id, R.score[i]);
    }
}

/* Checks every list of the sink against the per-record reference; every open record has one. */
static void check_all(dt_engine *e, const sink *sk, const dt_outcome_store *s, const dt_outcome_policy *p, size_t k,
                      const dt_weights *w, bool dem, bool ach)
{
    dt_err err = DT_ERR_INIT;
    dt_searcher *sr = dt_searcher_new(e, &err);
    assert_non_null(sr);
    size_t exact = 0, total = 0, lists = 0;
    for (int side = 0; side < 2; side++) {
        if (side == DT_DEMAND ? !dem : !ach) continue;
        dt_index *idx = dt_engine_index(e, "t", (dt_side)side);
        for (uint32_t slot = 0; slot < dt_index_slots(idx); slot++) {
            if (!dt_index_live(idx, slot)) continue;
            const dt_record *r = dt_index_record(idx, slot);
            const clist *c = find_list(sk, (dt_side)side, r->id);
            if (r->status != DT_OPEN) {
                assert_null(c);
                continue;
            }
            if (!c) fail_msg("no list for %s %s", dt_side_name((dt_side)side), r->id);
            lists++;
            reference(sr, e, s, p, (dt_side)side, r->id, k, w);
            check_list(c, &exact, &total);
        }
    }
    assert_int_equal(lists, sk->n);
    /* near-ties are rare: almost every position agrees exactly */
    assert_true(exact * 100 >= total * 95);
    dt_searcher_free(sr);
}

static dt_rerank_job *new_job(dt_engine *e, dt_rerank_opts *o, sink *sk)
{
    o->tenant = "t";
    o->emit = collect;
    o->emit_ud = sk;
    dt_err err = DT_ERR_INIT;
    dt_rerank_job *j = dt_rerank_new(e, o, &err);
    if (!j) fail_msg("dt_rerank_new: %s: %s", err.field, err.msg);
    sk->job = j;
    return j;
}

static int run_job(dt_engine *e, dt_rerank_opts *o, sink *sk, dt_rerank_progress *pg)
{
    dt_rerank_job *j = new_job(e, o, sk);
    dt_err err = DT_ERR_INIT;
    int rc = dt_rerank_run(j, &err);
    if (rc < 0) fail_msg("run: %s: %s", err.field, err.msg);
    if (pg) dt_rerank_get_progress(j, pg);
    sk->job = NULL;
    dt_rerank_free(j);
    return rc;
}

/* ---- lists equal per-record dt_search ---- */

typedef struct lockstat {
    pthread_mutex_t mu;
    int shared, exclusive, excl_held, max_shared;
    int depth_shared;
    int no_writers, nw_held;
    bool bad;
} lockstat;

static void lk(void *ud, dt_rerank_lock_mode mode)
{
    lockstat *l = ud;
    pthread_mutex_lock(&l->mu);
    if (mode == DT_RERANK_LOCK_NO_WRITERS) {
        if (l->nw_held || l->excl_held) l->bad = true;
        l->nw_held = 1;
        l->no_writers++;
    } else if (mode == DT_RERANK_LOCK_EXCLUSIVE) {
        /* only inside NO_WRITERS, never with a batch searching */
        if (l->excl_held || l->depth_shared || !l->nw_held) l->bad = true;
        l->excl_held = 1;
        l->exclusive++;
    } else {
        if (l->excl_held) l->bad = true;
        l->depth_shared++;
        l->shared++;
    }
    pthread_mutex_unlock(&l->mu);
}

static void unlk(void *ud, dt_rerank_lock_mode mode)
{
    lockstat *l = ud;
    pthread_mutex_lock(&l->mu);
    if (mode == DT_RERANK_LOCK_NO_WRITERS) {
        if (!l->nw_held || l->excl_held) l->bad = true;
        l->nw_held = 0;
    } else if (mode == DT_RERANK_LOCK_EXCLUSIVE) {
        if (!l->excl_held) l->bad = true;
        l->excl_held = 0;
    } else {
        if (l->depth_shared <= 0) l->bad = true;
        l->depth_shared--;
    }
    pthread_mutex_unlock(&l->mu);
}

static void test_lsa_lists_equal_search(void **state)
{
    (void)state;
    dt_engine *e = lsa_corpus(120, 140);
    dt_engine_basis b;
    assert_int_equal(dt_engine_get_basis(e, "t", &b), 1);
    size_t built_before = b.built_docs;
    size_t live = dt_index_count(dt_engine_index(e, "t", DT_DEMAND)) + dt_index_count(dt_engine_index(e, "t", DT_ACHIEVEMENT));
    assert_true(built_before < live);
    sink sk;
    sink_init(&sk);
    lockstat ls = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, false};
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.k = 7;
    o.threads = 3;
    o.batch = 37;
    o.lock = lk;
    o.unlock = unlk;
    o.lock_ud = &ls;
    dt_rerank_progress pg;
    assert_int_equal(run_job(e, &o, &sk, &pg), 0);
    /* the basis was re-learned from every live record with writers out, and swapped in under
     * the exclusive lock */
    assert_int_equal(dt_engine_get_basis(e, "t", &b), 1);
    assert_int_equal(b.built_docs, live);
    assert_int_equal(ls.no_writers, 1);
    assert_int_equal(ls.exclusive, 1);
    assert_int_equal(ls.nw_held, 0);
    assert_false(ls.bad);
    assert_int_equal(ls.depth_shared, 0);
    size_t nd = count_open(e, DT_DEMAND), na = count_open(e, DT_ACHIEVEMENT);
    assert_true(ls.shared >= (int)((nd + 36) / 37 + (na + 36) / 37));
    assert_int_equal(sk.max_concurrent, 1);
    assert_int_equal(pg.state, DT_RERANK_DONE);
    assert_int_equal(pg.total, nd + na);
    assert_int_equal(pg.done, nd + na);
    assert_int_equal(pg.emitted, nd + na);
    assert_true(pg.elapsed > 0);
    assert_true(pg.rate > 0);
    assert_true(pg.eta == 0);
    check_all(e, &sk, NULL, NULL, 7, NULL, true, true);
    sink_free(&sk);
    dt_engine_free(e);
}

static void test_embedding_lists_equal_search(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(300, 260, 32, 2);
    const int threads[] = {1, 3};
    const size_t batch[] = {1, 1000};
    const size_t ks[] = {10, 1};
    for (int v = 0; v < 2; v++) {
        sink sk;
        sink_init(&sk);
        dt_rerank_opts o;
        dt_rerank_opts_init(&o);
        o.k = ks[v];
        o.threads = threads[v];
        o.batch = batch[v];
        dt_weights w = {0.6f, 0.2f, 0.4f};
        if (v == 1) o.weights = &w;
        assert_int_equal(run_job(e, &o, &sk, NULL), 0);
        check_all(e, &sk, NULL, NULL, ks[v], v == 1 ? &w : NULL, true, true);
        sink_free(&sk);
    }
    /* one side only */
    sink sk;
    sink_init(&sk);
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.demands = false;
    assert_int_equal(run_job(e, &o, &sk, NULL), 0);
    assert_int_equal(sk.n, count_open(e, DT_ACHIEVEMENT));
    check_all(e, &sk, NULL, NULL, 10, NULL, false, true);
    sink_free(&sk);
    dt_engine_free(e);
}

/* ---- outcome feedback ---- */

static dt_outcome_store *random_outcomes(dt_engine *e, size_t n_events, double p_decline)
{
    dt_err err = DT_ERR_INIT;
    dt_outcome_store *s = dt_outcome_store_new(&err);
    assert_non_null(s);
    dt_index *di = dt_engine_index(e, "t", DT_DEMAND), *ai = dt_engine_index(e, "t", DT_ACHIEVEMENT);
    size_t nd = dt_index_slots(di), na = dt_index_slots(ai);
    for (size_t i = 0; i < n_events; i++) {
        dt_outcome_event ev;
        dt_outcome_event_init(&ev);
        ev.tenant = "t";
        ev.demand_id = dt_index_record(di, (uint32_t)(rnd() % nd))->id;
        /* a few popular achievements collect most declines, so some get flagged */
        ev.achievement_id = dt_index_record(ai, (uint32_t)(rnd() % 3 ? rnd() % 12 : rnd() % na))->id;
        ev.at = 1000 + (int64_t)i;
        if (urand() < p_decline) {
            ev.kind = DT_OUTCOME_DECLINED;
            ev.reason = (dt_outcome_reason)(1 + rnd() % 4);
        } else {
            ev.kind = (dt_outcome_kind)(rnd() % DT_OUTCOME_KIND_COUNT);
            if (ev.kind == DT_OUTCOME_DECLINED) ev.kind = DT_OUTCOME_NEGOTIATING;
            if (ev.kind == DT_OUTCOME_DEAL_SIGNED) ev.amount = 1e5;
        }
        if (dt_outcome_add(s, &ev, &err)) fail_msg("outcome: %s", err.msg);
    }
    return s;
}

/* No list of the sink contains a declined pair. Returns how many declined pairs there are. */
static size_t check_no_declined(const sink *sk, const dt_outcome_store *s)
{
    for (size_t i = 0; i < sk->n; i++) {
        const clist *c = &sk->v[i];
        for (size_t m = 0; m < c->n; m++) {
            const char *d = c->side == DT_DEMAND ? c->id : c->items[m];
            const char *a = c->side == DT_DEMAND ? c->items[m] : c->id;
            if (dt_outcome_declined(s, "t", d, a)) fail_msg("declined pair %s / %s is in a list", d, a);
        }
    }
    return 1;
}

static void outcomes_exact_on(dt_engine *e, size_t k)
{
    dt_outcome_store *s = random_outcomes(e, 1500, 0.6);
    dt_outcome_policy p;
    dt_outcome_policy_default(&p);
    p.price_penalty = 0.07f;
    p.stage_penalty = 0.04f;
    size_t flagged = dt_outcome_flagged(s, &p, "t", NULL, NULL);
    assert_true(flagged >= 3);
    sink sk, plain;
    sink_init(&sk);
    sink_init(&plain);
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.k = k;
    o.threads = 2;
    o.batch = 50;
    o.outcomes = s;
    o.policy = p;
    dt_rerank_progress pg;
    assert_int_equal(run_job(e, &o, &sk, &pg), 0);
    assert_int_equal(pg.uncertain, 0);
    check_all(e, &sk, s, &p, k, NULL, true, true);
    check_no_declined(&sk, s);
    /* and the feedback changed something */
    o.outcomes = NULL;
    assert_int_equal(run_job(e, &o, &plain, NULL), 0);
    size_t changed = 0;
    for (size_t i = 0; i < sk.n; i++) {
        const clist *a = &sk.v[i], *b = find_list(&plain, a->side, a->id);
        assert_non_null(b);
        bool same = a->n == b->n;
        for (size_t m = 0; same && m < a->n; m++) same = strcmp(a->items[m], b->items[m]) == 0;
        changed += !same;
    }
    assert_true(changed >= 20);
    sink_free(&sk);
    sink_free(&plain);
    dt_outcome_store_free(s);
}

static void test_outcomes_exact(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(220, 180, 16, 1);
    outcomes_exact_on(e, 8);
    dt_engine_free(e);
    /* with text, the engine's lexical normalisation and fusion depend on the candidate set */
    e = lsa_corpus(150, 170);
    outcomes_exact_on(e, 6);
    dt_engine_free(e);
}

/* dt_feedback_search, the live Match path: every record's [offset, offset + k) equals the slice of
 * the reference ranking, the feedback part is the pair's delta, declined pairs never appear, and
 * text queries (no record, no pairs) are dt_search's own answers. */
static void feedback_search_on(dt_engine *e)
{
    dt_outcome_store *s = random_outcomes(e, 1200, 0.5);
    dt_outcome_policy p;
    dt_outcome_policy_default(&p);
    p.price_penalty = 0.07f;
    p.stage_penalty = 0.04f;
    dt_err err = DT_ERR_INIT;
    dt_searcher *sr = dt_searcher_new(e, &err), *sr2 = dt_searcher_new(e, &err);
    dt_feedback *f = dt_feedback_new(e, &err);
    assert_non_null(sr);
    assert_non_null(sr2);
    assert_non_null(f);
    static const size_t ks[][2] = {{5, 0}, {3, 4}, {10, 0}, {2, 9}};
    size_t checked = 0, moved = 0, exact = 0, total = 0;
    for (int side = 0; side < 2; side++) {
        dt_index *idx = dt_engine_index(e, "t", (dt_side)side);
        dt_side target = side == DT_DEMAND ? DT_ACHIEVEMENT : DT_DEMAND;
        /* a batch of every open record of the side, as a worker pool would hand it over */
        size_t n = 0, cap = dt_index_slots(idx);
        dt_query *qs = calloc(cap, sizeof *qs);
        dt_match_result *res = calloc(cap, sizeof *res);
        assert_non_null(qs);
        assert_non_null(res);
        for (size_t v = 0; v < sizeof ks / sizeof *ks; v++) {
            n = 0;
            for (uint32_t slot = 0; slot < dt_index_slots(idx); slot++) {
                if (!dt_index_live(idx, slot) || dt_index_record(idx, slot)->status != DT_OPEN) continue;
                dt_query *q = &qs[n++];
                dt_query_init(q);
                q->tenant = "t";
                q->target = target;
                q->record_id = dt_index_record(idx, slot)->id;
                q->record_side = (dt_side)side;
                q->k = ks[v][0];
                q->offset = ks[v][1];
                q->explain = v == 0;
            }
            size_t unsure = 99;
            if (dt_feedback_search(f, sr, s, &p, qs, n, res, &unsure, &err)) fail_msg("feedback search: %s", err.msg);
            assert_int_equal(unsure, 0);
            for (size_t i = 0; i < n; i++) {
                size_t k = ks[v][0], off = ks[v][1];
                reference(sr2, e, s, &p, (dt_side)side, qs[i].record_id, k + off, NULL);
                size_t want = R.n > off ? R.n - off : 0;
                if (res[i].n != want) fail_msg("%s: %zu matches, reference %zu", qs[i].record_id, res[i].n, want);
                for (size_t m = 0; m < res[i].n; m++) {
                    const dt_match *x = &res[i].v[m];
                    total++;
                    if (fabsf(x->score - R.score[off + m]) > SCORE_EPS)
                        fail_msg("%s [%zu]: score %.7f, reference %.7f", qs[i].record_id, m, x->score, R.score[off + m]);
                    exact += x->rec == R.rec[off + m];
                    const dt_record *self = dt_engine_get(e, "t", (dt_side)side, qs[i].record_id);
                    const dt_record *d = side == DT_DEMAND ? self : x->rec, *a = side == DT_DEMAND ? x->rec : self;
                    assert_false(dt_outcome_declined(s, "t", d->id, a->id));
                    float delta = dt_outcome_adjust(s, &p, d, a);
                    assert_true(fabsf(x->feedback - delta) < 1e-6f);
                    assert_true(fabsf(x->score - (x->dense + x->lexical + x->structured + x->feedback)) < 1e-4f);
                    moved += delta != 0;
                }
                checked++;
                dt_match_result_free(&res[i]);
            }
        }
        free(qs);
        free(res);
    }
    assert_true(checked > 100);
    assert_true(moved > 0);
    assert_true(exact * 100 >= total * 95);

    /* free text: nothing to feed back, so exactly dt_search */
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.target = DT_ACHIEVEMENT;
    q.text = "lithium battery separator coating";
    q.k = 8;
    dt_match_result a, b;
    assert_int_equal(dt_feedback_search(f, sr, s, &p, &q, 1, &a, NULL, &err), 0);
    assert_int_equal(dt_search(sr2, &q, 1, &b, &err), 0);
    assert_int_equal(a.n, b.n);
    for (size_t m = 0; m < a.n; m++) {
        assert_ptr_equal(a.v[m].rec, b.v[m].rec);
        assert_true(a.v[m].feedback == 0);
    }
    dt_match_result_free(&a);
    dt_match_result_free(&b);
    /* an unknown record fails as dt_search does, naming it */
    q.text = NULL;
    q.record_id = "no-such-record";
    q.record_side = DT_DEMAND;
    err = (dt_err)DT_ERR_INIT;
    assert_true(dt_feedback_search(f, sr, s, &p, &q, 1, &a, NULL, &err) < 0);
    assert_int_equal(err.code, DT_ENOTFOUND);
    dt_feedback_free(f);
    dt_searcher_free(sr);
    dt_searcher_free(sr2);
    dt_outcome_store_free(s);
}

static void test_feedback_search(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(160, 150, 16, 1);
    feedback_search_on(e);
    dt_engine_free(e);
    e = lsa_corpus(120, 130);
    feedback_search_on(e);
    dt_engine_free(e);
}

/* Feedback that reaches deep: the demand's whole top is demoted, and an engaged partner far down
 * is boosted to the top, so the first search is not deep enough and the job searches again. */
static void test_deep_feedback(void **state)
{
    (void)state;
    dt_engine_opts eo = dt_engine_opts_default();
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    for (int i = 0; i < 40; i++) {
        dt_record r = base_record(DT_ACHIEVEMENT, i);
        r.status = DT_OPEN;
        r.trl = 5;
        r.price_min = 5e5;
        r.price_max = 6e5;
        r.dim = 2;
        r.embedding = malloc(2 * sizeof(float));
        r.embedding[0] = cosf(0.02f * (float)i);
        r.embedding[1] = sinf(0.02f * (float)i);
        put(e, &r);
    }
    const char *dem[] = {"low", "x1", "x2"};
    for (int i = 0; i < 3; i++) {
        dt_record r = base_record(DT_DEMAND, i);
        free(r.id);
        r.id = strdup(dem[i]);
        r.status = DT_OPEN;
        r.trl = 3;
        r.price_min = NAN;
        r.price_max = 1e5;
        r.dim = 2;
        r.embedding = calloc(2, sizeof(float));
        r.embedding[0] = 1;
        put(e, &r);
    }
    dt_outcome_store *s = dt_outcome_store_new(&err);
    for (int i = 0; i < 35; i++)
        for (int x = 1; x <= 2; x++) {
            char a[16];
            snprintf(a, sizeof a, "a%d", i);
            dt_outcome_event ev;
            dt_outcome_event_init(&ev);
            ev.tenant = "t";
            ev.demand_id = dem[x];
            ev.achievement_id = a;
            ev.kind = DT_OUTCOME_DECLINED;
            ev.reason = DT_OUTCOME_REASON_PRICE;
            assert_int_equal(dt_outcome_add(s, &ev, &err), 0);
        }
    dt_outcome_event ev;
    dt_outcome_event_init(&ev);
    ev.tenant = "t";
    ev.demand_id = "low";
    ev.achievement_id = "a39";
    ev.kind = DT_OUTCOME_MEETING_HELD;
    assert_int_equal(dt_outcome_add(s, &ev, &err), 0);
    sink sk;
    sink_init(&sk);
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.k = 2;
    o.outcomes = s;
    o.policy.price_penalty = 1.0f;
    o.policy.engaged_boost = 0.5f;
    dt_rerank_progress pg;
    assert_int_equal(run_job(e, &o, &sk, &pg), 0);
    assert_int_equal(pg.uncertain, 0);
    const clist *low = find_list(&sk, DT_DEMAND, "low");
    assert_non_null(low);
    assert_int_equal(low->n, 2);
    assert_string_equal(low->items[0], "a39"); /* boosted from the bottom */
    assert_string_equal(low->items[1], "a35"); /* the best not demoted */
    check_all(e, &sk, s, &o.policy, 2, NULL, true, true);
    sink_free(&sk);
    dt_outcome_store_free(s);
    dt_engine_free(e);
}

static void test_declined_never_reappear(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(60, 40, 8, 1);
    dt_err err = DT_ERR_INIT;
    dt_outcome_store *s = dt_outcome_store_new(&err);
    /* every demand declines its current top 5 and half of the rest */
    dt_searcher *sr = dt_searcher_new(e, &err);
    dt_index *di = dt_engine_index(e, "t", DT_DEMAND);
    size_t declined = 0;
    for (uint32_t slot = 0; slot < dt_index_slots(di); slot++) {
        const dt_record *d = dt_index_record(di, slot);
        dt_query q;
        dt_query_init(&q);
        q.tenant = "t";
        q.record_id = d->id;
        q.k = 40;
        q.filter.include_closed = true;
        dt_match_result r;
        assert_int_equal(dt_search(sr, &q, 1, &r, &err), 0);
        for (size_t i = 0; i < r.n; i++) {
            if (i >= 5 && rnd() % 2) continue;
            dt_outcome_event ev;
            dt_outcome_event_init(&ev);
            ev.tenant = "t";
            ev.demand_id = d->id;
            ev.achievement_id = r.v[i].rec->id;
            ev.kind = DT_OUTCOME_DECLINED;
            ev.reason = DT_OUTCOME_REASON_UNCLEAR_BENEFIT;
            assert_int_equal(dt_outcome_add(s, &ev, &err), 0);
            /* later positive events do not bring a declined pair back */
            ev.kind = DT_OUTCOME_MEETING_HELD;
            ev.reason = DT_OUTCOME_REASON_NONE;
            assert_int_equal(dt_outcome_add(s, &ev, &err), 0);
            declined++;
        }
        dt_match_result_free(&r);
    }
    dt_searcher_free(sr);
    assert_true(declined > 60 * 5);
    for (size_t cap = 0; cap <= 3; cap += 3) {
        sink sk;
        sink_init(&sk);
        dt_rerank_opts o;
        dt_rerank_opts_init(&o);
        o.k = 10;
        o.cap = cap;
        o.outcomes = s;
        o.batch = 7;
        assert_int_equal(run_job(e, &o, &sk, NULL), 0);
        check_no_declined(&sk, s);
        if (!cap) check_all(e, &sk, s, &o.policy, 10, NULL, true, true);
        sink_free(&sk);
    }
    dt_outcome_store_free(s);
    dt_engine_free(e);
}

/* ---- the exposure cap ---- */

static const char *oracle_path(void)
{
    static char from_root[4096];
    static const char *const tries[] = {"tests/rerank_oracle.py", "../tests/rerank_oracle.py",
                                        "../../tests/rerank_oracle.py", "../../../tests/rerank_oracle.py"};
    const char *root = getenv("DOVETAIL_ROOT"); /* set by tests/run.sh */
    if (root) {
        snprintf(from_root, sizeof from_root, "%s/tests/rerank_oracle.py", root);
        if (access(from_root, R_OK) == 0) return from_root;
    }
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++)
        if (access(tries[i], R_OK) == 0) return tries[i];
    if (access("/work/main/tests/rerank_oracle.py", R_OK) == 0) return "/work/main/tests/rerank_oracle.py";
    return NULL;
}

/* Runs the oracle on the instances; returns its JSON array (caller decrefs). */
static json_t *run_oracle(json_t *instances)
{
    const char *oracle = oracle_path();
    if (!oracle) fail_msg("tests/rerank_oracle.py not found: run from the source tree, or set DOVETAIL_ROOT");
    char path[] = "/tmp/dt_rerank_oracle_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_int_equal(json_dumpf(instances, f, JSON_COMPACT), 0);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", oracle, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, p)) > 0) fwrite(chunk, 1, r, mem);
    fclose(mem);
    int st = pclose(p);
    unlink(path);
    if (st != 0) fail_msg("oracle failed (status %d): needs /usr/bin/python3 with numpy and scipy", st);
    json_error_t jerr;
    json_t *out = json_loads(buf, 0, &jerr);
    free(buf);
    if (!out) fail_msg("oracle output is not JSON: %s", jerr.text);
    return out;
}

typedef struct inst {
    size_t nl, nr, k, cap;
    size_t *off;
    dt_rerank_edge *edges;
} inst;

static json_t *inst_json(const inst *in)
{
    json_t *o = json_object(), *lists = json_array();
    json_object_set_new(o, "nl", json_integer((json_int_t)in->nl));
    json_object_set_new(o, "nr", json_integer((json_int_t)in->nr));
    json_object_set_new(o, "k", json_integer((json_int_t)in->k));
    json_object_set_new(o, "cap", json_integer((json_int_t)in->cap));
    for (size_t d = 0; d < in->nl; d++) {
        json_t *l = json_array();
        for (size_t e = in->off[d]; e < in->off[d + 1]; e++)
            json_array_append_new(l, json_pack("[iI]", (int)in->edges[e].to, (json_int_t)llround(in->edges[e].score * 1e6)));
        json_array_append_new(lists, l);
    }
    json_object_set_new(o, "lists", lists);
    return o;
}

/* Checks a solution's constraints; returns its value in units. */
static int64_t check_solution(const inst *in, const uint8_t *chosen, size_t *count)
{
    size_t *load = calloc(in->nr ? in->nr : 1, sizeof *load);
    int64_t v = 0;
    *count = 0;
    for (size_t d = 0; d < in->nl; d++) {
        size_t n = 0;
        for (size_t e = in->off[d]; e < in->off[d + 1]; e++) {
            assert_true(chosen[e] <= 1);
            if (!chosen[e]) continue;
            n++;
            load[in->edges[e].to]++;
            v += llround(in->edges[e].score * 1e6);
        }
        assert_true(n <= in->k);
        *count += n;
    }
    for (size_t a = 0; a < in->nr; a++) assert_true(load[a] <= in->cap);
    free(load);
    return v;
}

static void test_cap_solver_vs_oracle(void **state)
{
    (void)state;
    enum { N = 80 };
    inst in[N];
    json_t *all = json_array();
    for (int t = 0; t < N; t++) {
        inst *x = &in[t];
        x->nl = 1 + rnd() % (t < 60 ? 12 : 40);
        x->nr = 1 + rnd() % (t < 60 ? 8 : 25);
        x->k = 1 + rnd() % 4;
        x->cap = 1 + rnd() % 4;
        x->off = malloc((x->nl + 1) * sizeof *x->off);
        x->edges = malloc((x->nl * x->nr + 1) * sizeof *x->edges);
        size_t ne = 0;
        bool coarse = rnd() % 3 == 0; /* many exact ties */
        for (size_t d = 0; d < x->nl; d++) {
            x->off[d] = ne;
            for (size_t a = 0; a < x->nr; a++) {
                if (rnd() % 3 == 0) continue;
                double sc = coarse ? (double)(rnd() % 5) / 4.0 : urand() * 2 - 0.4;
                x->edges[ne++] = (dt_rerank_edge){(uint32_t)a, (float)sc};
            }
        }
        x->off[x->nl] = ne;
        json_array_append_new(all, inst_json(x));
    }
    json_t *want = run_oracle(all);
    assert_int_equal(json_array_size(want), N);
    size_t binding = 0;
    for (int t = 0; t < N; t++) {
        inst *x = &in[t];
        size_t ne = x->off[x->nl];
        uint8_t *chosen = malloc(ne + 1);
        size_t n_chosen, count;
        int64_t value;
        dt_err err = DT_ERR_INIT;
        int rc = dt_rerank_cap_assign(x->nl, x->off, x->edges, x->nr, x->k, x->cap, chosen, &n_chosen, &value, NULL,
                                      NULL, &err);
        if (rc) fail_msg("instance %d: %s", t, err.msg);
        assert_int_equal(check_solution(x, chosen, &count), value);
        assert_int_equal(count, n_chosen);
        json_t *w = json_array_get(want, (size_t)t);
        json_int_t wc = json_integer_value(json_object_get(w, "count"));
        json_int_t wv = json_integer_value(json_object_get(w, "value"));
        if ((json_int_t)n_chosen != wc || (json_int_t)value != wv)
            fail_msg("instance %d (%zu x %zu, k %zu, cap %zu): %zu edges value %lld, oracle %lld value %lld", t, x->nl,
                     x->nr, x->k, x->cap, n_chosen, (long long)value, (long long)wc, (long long)wv);
        /* the cap bound somewhere: some achievement is listed by more demands than cap */
        size_t *deg = calloc(x->nr, sizeof *deg);
        for (size_t e = 0; e < ne; e++) deg[x->edges[e].to]++;
        for (size_t a = 0; a < x->nr; a++)
            if (deg[a] > x->cap) {
                binding++;
                break;
            }
        free(deg);
        free(chosen);
        free(x->off);
        free(x->edges);
    }
    assert_true(binding >= 40);
    json_decref(want);
    json_decref(all);
}

static void test_cap_solver_cases(void **state)
{
    (void)state;
    /* a greedy cut in demand order gives d0 its best (a0), leaving d1 with nothing: the exact
     * assignment fills both lists (d0 -> a1, d1 -> a0) */
    size_t off[] = {0, 2, 3};
    dt_rerank_edge ed[] = {{0, 0.9f}, {1, 0.8f}, {0, 0.85f}};
    uint8_t ch[3];
    size_t n;
    int64_t v;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_rerank_cap_assign(2, off, ed, 2, 1, 1, ch, &n, &v, NULL, NULL, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v, 1650000);
    assert_int_equal(ch[0], 0);
    assert_int_equal(ch[1], 1);
    assert_int_equal(ch[2], 1);
    /* with room for both, both keep their best */
    assert_int_equal(dt_rerank_cap_assign(2, off, ed, 2, 1, 2, ch, &n, &v, NULL, NULL, &err), 0);
    assert_int_equal(v, 1750000);
    assert_int_equal(ch[0] + ch[2], 2);
    /* errors */
    dt_rerank_edge dup[] = {{0, 0.9f}, {0, 0.8f}, {0, 0.85f}};
    assert_int_equal(dt_rerank_cap_assign(2, off, dup, 2, 1, 1, ch, &n, &v, NULL, NULL, &err), -DT_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    dt_rerank_edge far[] = {{0, 0.9f}, {5, 0.8f}, {0, 0.85f}};
    assert_int_equal(dt_rerank_cap_assign(2, off, far, 2, 1, 1, ch, &n, &v, NULL, NULL, &err), -DT_EINVAL);
    dt_rerank_edge nan[] = {{0, 0.9f}, {1, NAN}, {0, 0.85f}};
    assert_int_equal(dt_rerank_cap_assign(2, off, nan, 2, 1, 1, ch, &n, &v, NULL, NULL, &err), -DT_EINVAL);
    assert_int_equal(dt_rerank_cap_assign(2, off, ed, 2, 0, 1, ch, &n, &v, NULL, NULL, &err), -DT_EINVAL);
    assert_string_equal(err.field, "k");
    assert_int_equal(dt_rerank_cap_assign(2, off, ed, 2, 1, 0, ch, &n, &v, NULL, NULL, &err), -DT_EINVAL);
    assert_string_equal(err.field, "cap");
    /* nothing to assign */
    assert_int_equal(dt_rerank_cap_assign(0, off, ed, 0, 1, 1, ch, &n, &v, NULL, NULL, &err), 0);
    assert_int_equal(n, 0);
}

/* Sums a sink's demand lists' scores in units and checks the cap. */
static int64_t capped_value(const sink *sk, size_t cap, size_t k, size_t *count)
{
    int64_t v = 0;
    *count = 0;
    for (size_t i = 0; i < sk->n; i++) {
        const clist *c = &sk->v[i];
        if (c->side != DT_DEMAND) continue;
        assert_true(c->n <= k);
        for (size_t m = 0; m < c->n; m++) {
            v += llround(c->scores[m] * 1e6);
            size_t uses = 0;
            for (size_t x = 0; x < sk->n; x++)
                if (sk->v[x].side == DT_DEMAND)
                    for (size_t y = 0; y < sk->v[x].n; y++) uses += strcmp(sk->v[x].items[y], c->items[m]) == 0;
            if (uses > cap) fail_msg("achievement %s is in %zu demands' lists, cap %zu", c->items[m], uses, cap);
        }
        *count += c->n;
    }
    return v;
}

static void test_cap_job(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(70, 26, 8, 1);
    dt_outcome_store *s = random_outcomes(e, 150, 0.5);
    dt_outcome_policy pol;
    dt_outcome_policy_default(&pol);
    const size_t k = 3, cap = 4, L = 9;
    sink sk, plain;
    sink_init(&sk);
    sink_init(&plain);
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.k = k;
    o.cap = cap;
    o.candidates = L;
    o.outcomes = s;
    o.batch = 11;
    o.threads = 2;
    assert_int_equal(run_job(e, &o, &sk, NULL), 0);
    size_t count;
    int64_t value = capped_value(&sk, cap, k, &count);
    check_no_declined(&sk, s);
    /* the reference: each demand's top-L adjusted candidates, solved by the oracle */
    dt_err err = DT_ERR_INIT;
    dt_searcher *sr = dt_searcher_new(e, &err);
    dt_index *di = dt_engine_index(e, "t", DT_DEMAND);
    size_t nd = 0;
    inst x = {0, 26, k, cap, malloc(71 * sizeof(size_t)), malloc(70 * L * sizeof(dt_rerank_edge))};
    size_t ne = 0;
    for (uint32_t slot = 0; slot < dt_index_slots(di); slot++) {
        const dt_record *d = dt_index_record(di, slot);
        if (d->status != DT_OPEN) continue;
        assert_non_null(find_list(&sk, DT_DEMAND, d->id));
        reference(sr, e, s, &pol, DT_DEMAND, d->id, L, NULL);
        x.off[nd++] = ne;
        for (size_t m = 0; m < R.n; m++) {
            int a;
            assert_int_equal(sscanf(R.rec[m]->id, "a%d", &a), 1);
            x.edges[ne++] = (dt_rerank_edge){(uint32_t)a, R.score[m]};
        }
    }
    x.off[nd] = ne;
    x.nl = nd;
    json_t *all = json_array();
    json_array_append_new(all, inst_json(&x));
    json_t *want = run_oracle(all);
    json_int_t wc = json_integer_value(json_object_get(json_array_get(want, 0), "count"));
    json_int_t wv = json_integer_value(json_object_get(json_array_get(want, 0), "value"));
    /* the cap binds: fewer entries than an uncapped run would have */
    assert_true((size_t)wc < nd * k);
    assert_int_equal((json_int_t)count, wc);
    /* scores computed in another GEMM geometry may differ by an ulp or so per entry */
    if (llabs((long long)(value - wv)) > (long long)count * 3)
        fail_msg("capped total %lld, oracle %lld", (long long)value, (long long)wv);
    json_decref(want);
    json_decref(all);
    free(x.off);
    free(x.edges);
    dt_searcher_free(sr);
    /* the achievements' lists are not capped: the same as without a cap */
    o.cap = 0;
    assert_int_equal(run_job(e, &o, &plain, NULL), 0);
    for (size_t i = 0; i < plain.n; i++) {
        if (plain.v[i].side != DT_ACHIEVEMENT) continue;
        const clist *c = find_list(&sk, DT_ACHIEVEMENT, plain.v[i].id);
        assert_non_null(c);
        assert_int_equal(c->n, plain.v[i].n);
        for (size_t m = 0; m < c->n; m++) assert_string_equal(c->items[m], plain.v[i].items[m]);
    }
    /* a cap that binds nowhere leaves every demand its top-k */
    sink loose;
    sink_init(&loose);
    o.cap = 1000;
    assert_int_equal(run_job(e, &o, &loose, NULL), 0);
    for (size_t i = 0; i < plain.n; i++) {
        if (plain.v[i].side != DT_DEMAND) continue;
        const clist *c = find_list(&loose, DT_DEMAND, plain.v[i].id);
        assert_non_null(c);
        assert_int_equal(c->n, plain.v[i].n);
        int64_t a = 0, b = 0;
        for (size_t m = 0; m < c->n; m++) a += llround(c->scores[m] * 1e6), b += llround(plain.v[i].scores[m] * 1e6);
        assert_true(llabs((long long)(a - b)) <= 3 * (long long)c->n);
    }
    sink_free(&loose);
    sink_free(&sk);
    sink_free(&plain);
    dt_outcome_store_free(s);
    dt_engine_free(e);
}

/* ---- cancellation, progress, errors ---- */

static void test_cancel_from_emit(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(200, 200, 8, 1);
    sink sk;
    sink_init(&sk);
    sk.cancel_after = 5;
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.threads = 3;
    o.batch = 4;
    dt_rerank_progress pg;
    assert_int_equal(run_job(e, &o, &sk, &pg), DT_RERANK_INTERRUPTED);
    assert_int_equal(sk.n, 5); /* nothing is emitted once cancelled */
    assert_int_equal(pg.state, DT_RERANK_CANCELLED);
    assert_int_equal(pg.emitted, 5);
    assert_true(pg.done < pg.total);
    sink_free(&sk);

    /* under a cap: cancelled while the achievements' lists are emitted, before the assignment -
     * no demand list comes out */
    sink_init(&sk);
    sk.cancel_after = 3;
    sk.cancel_side_only = true;
    sk.cancel_on_side = DT_ACHIEVEMENT;
    o.cap = 2;
    assert_int_equal(run_job(e, &o, &sk, &pg), DT_RERANK_INTERRUPTED);
    for (size_t i = 0; i < sk.n; i++) assert_int_equal(sk.v[i].side, DT_ACHIEVEMENT);
    assert_int_equal(pg.state, DT_RERANK_CANCELLED);
    sink_free(&sk);

    /* cancelled before it ran */
    sink_init(&sk);
    dt_rerank_opts_init(&o);
    dt_rerank_job *j = new_job(e, &o, &sk);
    dt_rerank_cancel(j);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_rerank_run(j, &err), DT_RERANK_INTERRUPTED);
    assert_int_equal(sk.n, 0);
    dt_rerank_get_progress(j, &pg);
    assert_int_equal(pg.state, DT_RERANK_CANCELLED);
    /* a job runs once */
    assert_int_equal(dt_rerank_run(j, &err), -DT_EINVAL);
    dt_rerank_free(j);
    sink_free(&sk);
    dt_engine_free(e);
}

typedef struct runner {
    dt_rerank_job *j;
    int rc;
} runner;

static void *run_thread(void *arg)
{
    runner *r = arg;
    dt_err err = DT_ERR_INIT;
    r->rc = dt_rerank_run(r->j, &err);
    return NULL;
}

static void test_cancel_from_thread(void **state)
{
    (void)state;
    dt_topk_blas_single();
    dt_engine *e = emb_corpus(2500, 2500, 64, 1);
    sink sk;
    sink_init(&sk);
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.threads = 2;
    o.batch = 8;
    dt_rerank_job *j = new_job(e, &o, &sk);
    runner r = {j, -100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_thread, &r), 0);
    dt_rerank_progress pg;
    for (int i = 0; i < 20000; i++) {
        dt_rerank_get_progress(j, &pg);
        if (pg.done >= 100) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(pg.state, DT_RERANK_RANKING);
    assert_int_equal(pg.total, count_open(e, DT_DEMAND) + count_open(e, DT_ACHIEVEMENT));
    assert_true(pg.rate > 0);
    assert_true(pg.eta > 0);
    assert_true(pg.elapsed > 0);
    dt_rerank_cancel(j);
    pthread_join(t, NULL);
    assert_int_equal(r.rc, DT_RERANK_INTERRUPTED);
    dt_rerank_get_progress(j, &pg);
    assert_int_equal(pg.state, DT_RERANK_CANCELLED);
    assert_true(pg.done < pg.total);
    assert_int_equal(pg.emitted, sk.n);
    /* elapsed is frozen once the run returned */
    double el = pg.elapsed;
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    dt_rerank_get_progress(j, &pg);
    assert_true(pg.elapsed == el);
    dt_rerank_free(j);
    sink_free(&sk);
    dt_engine_free(e);
}

static void test_errors(void **state)
{
    (void)state;
    dt_engine *e = emb_corpus(20, 20, 4, 1);
    sink sk;
    sink_init(&sk);
    dt_err err = DT_ERR_INIT;
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.emit = collect;
    o.emit_ud = &sk;
    o.k = 0;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "k");
    o.k = 10001;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "k");
    o.k = 10;
    o.cap = 2;
    o.candidates = 5;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "candidates");
    o.cap = 0;
    o.candidates = 0;
    o.lock = lk;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "lock");
    o.lock = NULL;
    o.demands = o.achievements = false;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "sides");
    o.demands = true;
    dt_weights w = {0, 0, 0};
    o.weights = &w;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "weights");
    o.weights = NULL;
    dt_outcome_store *s = dt_outcome_store_new(&err);
    o.outcomes = s;
    o.policy.min_declines = 0;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "min_declines");
    o.outcomes = NULL;
    o.emit = NULL;
    assert_null(dt_rerank_new(e, &o, &err));
    assert_string_equal(err.field, "emit");
    /* unknown tenant */
    dt_rerank_opts_init(&o);
    o.emit = collect;
    o.emit_ud = &sk;
    o.tenant = "nobody";
    dt_rerank_job *j = dt_rerank_new(e, &o, &err);
    assert_non_null(j);
    assert_int_equal(dt_rerank_run(j, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "tenant");
    dt_rerank_progress pg;
    dt_rerank_get_progress(j, &pg);
    assert_int_equal(pg.state, DT_RERANK_FAILED);
    dt_rerank_free(j);
    /* the output callback's error stops the job and is returned */
    sk.cancel_after = 3;
    sk.fail_with = -DT_EIO;
    dt_rerank_opts_init(&o);
    j = new_job(e, &o, &sk);
    memset(&err, 0, sizeof err);
    assert_int_equal(dt_rerank_run(j, &err), -DT_EIO);
    assert_non_null(strstr(err.msg, "disk full"));
    dt_rerank_get_progress(j, &pg);
    assert_int_equal(pg.state, DT_RERANK_FAILED);
    assert_int_equal(pg.emitted, 2);
    assert_int_equal(sk.n, 3);
    dt_rerank_free(j);
    assert_string_equal(dt_rerank_state_name(DT_RERANK_ASSIGNING), "assigning");
    dt_outcome_store_free(s);
    sink_free(&sk);
    dt_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsa_lists_equal_search),
        cmocka_unit_test(test_embedding_lists_equal_search),
        cmocka_unit_test(test_outcomes_exact),
        cmocka_unit_test(test_feedback_search),
        cmocka_unit_test(test_deep_feedback),
        cmocka_unit_test(test_declined_never_reappear),
        cmocka_unit_test(test_cap_solver_vs_oracle),
        cmocka_unit_test(test_cap_solver_cases),
        cmocka_unit_test(test_cap_job),
        cmocka_unit_test(test_cancel_from_emit),
        cmocka_unit_test(test_cancel_from_thread),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
