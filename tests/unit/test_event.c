/* test_event.c - tests of matcher/event.c: events over stored records, and their renderers.
 *
 * Candidate pairs are checked against a reference built here with plain dt_search calls that keep
 * non-participants out through exclude_ids (a different path from the event's allow_slots): with
 * slots and tables to spare and no diminishing returns, every candidate worth more than 0 is met,
 * so the meetings must be exactly the reference union minus same-organisation pairs. Schedules
 * are checked by a validator written here; the CSV output is parsed back by an RFC 4180 reader
 * written here; the HTML output is searched for escaped text and for each meeting in its cell.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#define T "ev"

/* ---------------------------------------------------------------- a small engine */

static const char *topic_words[6] = {
    "lithium battery separator ceramic coating thermal stability electrolyte",
    "machine vision weld seam defect inspection camera deep learning",
    "drought tolerant rice seed breeding salt alkaline yield",
    "anticorrosion polymer coating marine steel pipeline",
    "wireless sensor network vibration monitoring bearing fault",
    "sustained release microsphere drug formulation injection",
};
static const char *fillers[5] = {"pilot line", "cost reduction", "industrial partner", "field trial", "export"};

static void put(dt_engine *e, dt_side side, const char *id, const char *org, const char *field, const char *text,
                bool closed)
{
    dt_record r;
    dt_record_init(&r);
    r.tenant = strdup(T);
    r.side = side;
    r.id = strdup(id);
    r.title = strdup(text);
    r.text = strdup(text);
    if (org) r.org = strdup(org);
    if (field) r.field = strdup(field);
    r.status = closed ? DT_CLOSED : DT_OPEN;
    dt_err err = DT_ERR_INIT;
    if (dt_engine_upsert(e, &r, &err) < 0) fail_msg("upsert %s: %s: %s", id, err.field, err.msg);
}

/* 14 demands d00..d13 and 16 achievements a00..a15 on 6 topics, in tenant T, plus 3 records of
 * tenant "other". d03 and a03 are one organisation spelt two ways, on the same topic; d05 is closed.
 * dense: with an LSA basis (GEMM path) or without (scalar path). */
static dt_engine *small_engine(bool dense)
{
    dt_engine_opts o = dt_engine_opts_default();
    o.dim = 8;
    o.lsa_min_docs = dense ? 4 : 100000;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&o, &err);
    assert_non_null(e);
    char id[16], text[512], org[64], field[32];
    for (int i = 0; i < 14; i++) {
        snprintf(id, sizeof id, "d%02d", i);
        snprintf(text, sizeof text, "%s %s %s", topic_words[i % 6], fillers[i % 5], i % 4 == 0 ? topic_words[(i + 1) % 6] : "");
        snprintf(org, sizeof org, "Company %d", i);
        snprintf(field, sizeof field, "C.%d.%d", 30 + i % 6, i % 3);
        put(e, DT_DEMAND, id, i == 3 ? "  Acme Lab " : org, field, text, i == 5);
    }
    for (int i = 0; i < 16; i++) {
        snprintf(id, sizeof id, "a%02d", i);
        snprintf(text, sizeof text, "%s %s", topic_words[i % 6], fillers[(i + 2) % 5]);
        snprintf(org, sizeof org, "University %d", i % 7);
        snprintf(field, sizeof field, "C.%d", 30 + i % 6);
        put(e, DT_ACHIEVEMENT, id, i == 3 ? "ACME lab" : org, field, text, false);
    }
    dt_record r;
    dt_record_init(&r);
    r.tenant = strdup("other");
    r.side = DT_ACHIEVEMENT;
    r.id = strdup("a00");
    r.text = strdup(topic_words[0]);
    assert_int_equal(dt_engine_upsert(e, &r, &err), 0);
    assert_int_equal(dt_engine_build(e, NULL, &err), 0);
    assert_string_equal(dt_engine_dense_kind(e, T), dense ? "lsa" : "none");
    return e;
}

/* ---------------------------------------------------------------- an independent validator */

/* Checks the schedule rules and the result's internal consistency; returns meetings per person. */
static void validate(const dt_event_result *r, const dt_event_spec *sp)
{
    assert_int_equal(r->slots, sp->slots);
    assert_int_equal(r->tables, sp->tables);
    size_t na = r->n_smes, nb = r->n_holders;
    int *busy_a = calloc(na * (size_t)r->slots + 1, sizeof *busy_a);
    int *busy_b = calloc(nb * (size_t)r->slots + 1, sizeof *busy_b);
    int *table = calloc((size_t)r->tables * (size_t)r->slots + 1, sizeof *table);
    int *cnt_a = calloc(na + 1, sizeof *cnt_a), *cnt_b = calloc(nb + 1, sizeof *cnt_b);
    double total = 0;
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        assert_true(m->sme >= 0 && (size_t)m->sme < na);
        assert_true(m->holder >= 0 && (size_t)m->holder < nb);
        assert_true(m->slot >= 1 && m->slot <= r->slots);
        assert_true(m->table >= 1 && m->table <= r->tables);
        if (k) { /* by slot, then table */
            const dt_event_meeting *p = &r->meetings[k - 1];
            assert_true(p->slot < m->slot || (p->slot == m->slot && p->table < m->table));
        }
        int s = m->slot - 1;
        assert_int_equal(busy_a[(size_t)m->sme * (size_t)r->slots + (size_t)s]++, 0);
        assert_int_equal(busy_b[(size_t)m->holder * (size_t)r->slots + (size_t)s]++, 0);
        assert_int_equal(table[(size_t)(m->table - 1) * (size_t)r->slots + (size_t)s]++, 0);
        cnt_a[m->sme]++;
        cnt_b[m->holder]++;
        total += m->score;
        assert_true(m->score >= 0);
    }
    assert_true(fabs(total - r->total_score) < 1e-6);
    for (int side = 0; side < 2; side++) {
        const dt_event_person *pp = side ? r->holders : r->smes;
        size_t n = side ? nb : na;
        const int *cnt = side ? cnt_b : cnt_a;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(pp[i].count, cnt[i]);
            assert_true(pp[i].count <= pp[i].max_meetings);
            if (pp[i].count == pp[i].max_meetings) assert_int_equal(pp[i].reasons, 0);
            for (int j = 0; j < pp[i].count; j++) {
                const dt_event_meeting *m = &r->meetings[pp[i].agenda[j]];
                assert_int_equal(side ? m->holder : m->sme, (int)i);
                if (j) assert_true(r->meetings[pp[i].agenda[j - 1]].slot < m->slot);
            }
        }
    }
    free(busy_a);
    free(busy_b);
    free(table);
    free(cnt_a);
    free(cnt_b);
}

static int sme_index(const dt_event_result *r, const char *id)
{
    for (size_t i = 0; i < r->n_smes; i++)
        if (!strcmp(r->smes[i].id, id)) return (int)i;
    return -1;
}

static int holder_index(const dt_event_result *r, const char *id)
{
    for (size_t i = 0; i < r->n_holders; i++)
        if (!strcmp(r->holders[i].id, id)) return (int)i;
    return -1;
}

static const dt_event_meeting *find_meeting(const dt_event_result *r, const char *sme, const char *holder)
{
    int a = sme_index(r, sme), b = holder_index(r, holder);
    for (size_t k = 0; k < r->n_meetings; k++)
        if (r->meetings[k].sme == a && r->meetings[k].holder == b) return &r->meetings[k];
    return NULL;
}

/* ---------------------------------------------------------------- the reference */

/* Ids of side `side` in T that are not in `keep`. */
static const char **others(const dt_engine *e, dt_side side, const char *const *keep, size_t nk, size_t *n)
{
    dt_index *idx = dt_engine_index(e, T, side);
    size_t slots = dt_index_slots(idx);
    const char **v = calloc(slots + 1, sizeof *v);
    *n = 0;
    for (uint32_t s = 0; s < slots; s++) {
        if (!dt_index_live(idx, s)) continue;
        const char *id = dt_index_record(idx, s)->id;
        bool in = false;
        for (size_t i = 0; i < nk; i++) in = in || !strcmp(keep[i], id);
        if (!in) v[(*n)++] = id;
    }
    return v;
}

/* Scores of query `id` (side from) against the participants `to_ids` of the other side, top k,
 * through exclude_ids. score[j] for to_ids[j] (NAN when not returned). */
static void ref_query(const dt_engine *e, dt_searcher *s, dt_side from, const char *id, const char *const *to_ids,
                      size_t nt, size_t k, double *score)
{
    size_t nx;
    const char **ex = others(e, (dt_side)!from, to_ids, nt, &nx);
    dt_query q;
    dt_query_init(&q);
    q.tenant = T;
    q.record_id = id;
    q.record_side = from;
    q.target = (dt_side)!from;
    q.filter.include_closed = true;
    q.exclude_ids = ex;
    q.n_exclude = nx;
    q.k = k;
    dt_match_result res;
    dt_err err = DT_ERR_INIT;
    if (dt_search(s, &q, 1, &res, &err) < 0) fail_msg("reference search: %s: %s", err.field, err.msg);
    for (size_t j = 0; j < nt; j++) score[j] = NAN;
    for (size_t i = 0; i < res.n; i++)
        for (size_t j = 0; j < nt; j++)
            if (!strcmp(res.v[i].rec->id, to_ids[j])) score[j] = res.v[i].score > 0 ? res.v[i].score : 0;
    dt_match_result_free(&res);
    free(ex);
}

static bool same_org(const char *x, const char *y)
{
    char a[64] = "", b[64] = "";
    size_t n = 0;
    for (const char *p = x ? x : ""; *p && n < 63; p++)
        if (*p != ' ') a[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    a[n] = 0;
    n = 0;
    for (const char *p = y ? y : ""; *p && n < 63; p++)
        if (*p != ' ') b[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    b[n] = 0;
    return a[0] && !strcmp(a, b);
}

static void check_candidates(bool dense)
{
    dt_engine *e = small_engine(dense);
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    assert_non_null(s);
    /* participants: a subset of each side (d05 is closed and still takes part) */
    const char *smes[] = {"d00", "d01", "d02", "d03", "d05", "d07", "d08", "d10", "d11"};
    const char *holders[] = {"a00", "a01", "a02", "a03", "a04", "a06", "a07", "a09", "a10", "a13", "a14"};
    size_t na = sizeof smes / sizeof *smes, nb = sizeof holders / sizeof *holders, L = 3;
    dt_event_spec sp;
    dt_event_spec_init(&sp);
    sp.tenant = T;
    sp.smes.ids = smes;
    sp.smes.n_ids = na;
    sp.holders.ids = holders;
    sp.holders.n_ids = nb;
    sp.slots = (int)nb;
    sp.tables = (int)na;
    sp.candidates = L;
    sp.opt.decay_gamma = 1; /* no diminishing returns: every candidate worth more than 0 is met */
    dt_event_result *r = NULL;
    int rc = dt_event_pair(e, s, &sp, &r, &err);
    if (rc) fail_msg("%s: %s", err.field, err.msg);
    validate(r, &sp);
    assert_int_equal(r->n_smes, na);
    assert_int_equal(r->n_holders, nb);
    for (size_t i = 0; i < na; i++) assert_string_equal(r->smes[i].id, smes[i]);
    for (size_t j = 0; j < nb; j++) assert_string_equal(r->holders[j].id, holders[j]);

    /* the reference union of top-L both ways */
    double *sc = malloc(na * nb * sizeof *sc), row[32];
    for (size_t i = 0; i < na * nb; i++) sc[i] = NAN;
    for (size_t i = 0; i < na; i++) {
        ref_query(e, s, DT_DEMAND, smes[i], holders, nb, L, row);
        for (size_t j = 0; j < nb; j++)
            if (!isnan(row[j])) sc[i * nb + j] = row[j];
    }
    for (size_t j = 0; j < nb; j++) {
        ref_query(e, s, DT_ACHIEVEMENT, holders[j], smes, na, L, row);
        for (size_t i = 0; i < na; i++)
            if (!isnan(row[i]) && (isnan(sc[i * nb + j]) || row[i] > sc[i * nb + j])) sc[i * nb + j] = row[i];
    }
    size_t want = 0, proposed = 0, same_org_pairs = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++) {
            if (isnan(sc[i * nb + j])) continue;
            proposed++;
            const dt_record *ra = dt_engine_get(e, T, DT_DEMAND, smes[i]), *rb = dt_engine_get(e, T, DT_ACHIEVEMENT, holders[j]);
            const dt_event_meeting *m = find_meeting(r, smes[i], holders[j]);
            if (same_org(ra->org, rb->org)) {
                same_org_pairs++;
                assert_null(m);
                continue;
            }
            if (llround(sc[i * nb + j] * DT_PAIR_SCALE) <= 0) continue;
            want++;
            if (!m) fail_msg("candidate %s-%s (score %g) was not met", smes[i], holders[j], sc[i * nb + j]);
            assert_true(fabs(m->score - sc[i * nb + j]) < 1e-5);
            assert_true(m->proposed);
        }
    assert_int_equal(r->n_meetings, want);
    assert_int_equal(r->n_candidates, proposed);
    assert_true(same_org_pairs >= 1); /* d03 / a03 were proposed, and kept apart */
    assert_true(want > na);           /* the check saw real work */
    /* d03 and a03 share a topic, so their shortfall (if any) is not for lack of candidates only */
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        assert_false(same_org(r->smes[m->sme].org, r->holders[m->holder].org));
        assert_true(m->n_terms > 0 || m->lexical == 0);
    }
    free(sc);
    dt_event_result_free(r);
    dt_searcher_free(s);
    dt_engine_free(e);
}

static void test_candidates_scalar(void **state)
{
    (void)state;
    check_candidates(false);
}

static void test_candidates_dense(void **state)
{
    (void)state;
    check_candidates(true);
}

/* ---------------------------------------------------------------- rules */

static void test_filter_participants(void **state)
{
    (void)state;
    dt_engine *e = small_engine(true);
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    dt_event_spec sp;
    dt_event_spec_init(&sp);
    sp.tenant = T;
    const char *f_smes[] = {"C.30", "C.31"};
    const char *ex[] = {"d06", "nonexistent"};
    sp.smes.by_filter = true;
    sp.smes.filter.field_prefixes = f_smes;
    sp.smes.filter.n_field_prefixes = 2;
    sp.smes.exclude_ids = ex;
    sp.smes.n_exclude = 2;
    sp.holders.by_filter = true; /* empty filter: every open achievement of the tenant */
    sp.slots = 4;
    sp.tables = 3;
    sp.max_meetings = 2;
    dt_event_result *r = NULL;
    if (dt_event_pair(e, s, &sp, &r, &err)) fail_msg("%s: %s", err.field, err.msg);
    validate(r, &sp);
    /* brute force: demands of T whose field is C.30... or C.31..., open, not d06, sorted by id */
    const char *want_smes[14];
    size_t nw = 0;
    for (int i = 0; i < 14; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%02d", i);
        const dt_record *rec = dt_engine_get(e, T, DT_DEMAND, id);
        bool pass = (!strncmp(rec->field, "C.30.", 5) || !strncmp(rec->field, "C.31.", 5)) && rec->status == DT_OPEN &&
                    strcmp(id, "d06") != 0;
        if (pass) want_smes[nw++] = rec->id;
    }
    assert_int_equal(r->n_smes, nw);
    for (size_t i = 0; i < nw; i++) assert_string_equal(r->smes[i].id, want_smes[i]);
    assert_int_equal(r->n_holders, 16);
    for (size_t j = 1; j < r->n_holders; j++) assert_true(strcmp(r->holders[j - 1].id, r->holders[j].id) < 0);
    for (size_t i = 0; i < r->n_smes; i++) assert_int_equal(r->smes[i].max_meetings, 2);
    dt_event_result_free(r);

    const char *cl[] = {"nowhere"};
    sp.holders.clusters = cl;
    sp.holders.n_clusters = 1;
    assert_int_equal(dt_event_pair(e, s, &sp, &r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "holders.filter.clusters[0]");
    dt_searcher_free(s);
    dt_engine_free(e);
}

static void test_rules(void **state)
{
    (void)state;
    dt_engine *e = small_engine(true);
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    const char *smes[] = {"d00", "d01", "d02", "d04", "d06"};
    const char *holders[] = {"a00", "a01", "a02", "a04", "a05", "a06"};
    dt_event_spec sp;
    dt_event_spec_init(&sp);
    sp.tenant = T;
    sp.smes.ids = smes;
    sp.smes.n_ids = 5;
    sp.holders.ids = holders;
    sp.holders.n_ids = 6;
    sp.slots = 3;
    sp.tables = 5; /* room for everyone: what is left out is left out by a rule */
    sp.candidates = 1;
    /* d01 (vision) and a02 (rice) share no topic: must meet anyway; d02 (rice) and a00
     * (battery) requested by both; d00-a00 (same topic) never meet; d06-a06 met before;
     * d04-a04 locked at slot 2, table 1 */
    dt_event_pairref must[] = {{"d01", "a02"}}, never[] = {{"d00", "a00"}, {"d99", "a00"}}, met[] = {{"d06", "a06"}};
    dt_event_request req[] = {{"d02", "a00", DT_PAIR_REQ_A}, {"d02", "a00", DT_PAIR_REQ_B}};
    dt_event_locked lk[] = {{"d04", "a04", 2, 1}};
    dt_event_limit lim[] = {{"a05", 1, 1}};
    sp.must_meet = must;
    sp.n_must_meet = 1;
    sp.never_meet = never;
    sp.n_never_meet = 2; /* d99 is no record: ignored in never_meet */
    sp.met_before = met;
    sp.n_met_before = 1;
    sp.requests = req;
    sp.n_requests = 2;
    sp.locked = lk;
    sp.n_locked = 1;
    sp.holder_limits = lim;
    sp.n_holder_limits = 1;
    dt_event_result *r = NULL;
    if (dt_event_pair(e, s, &sp, &r, &err)) fail_msg("%s: %s", err.field, err.msg);
    validate(r, &sp);
    const dt_event_meeting *m = find_meeting(r, "d04", "a04");
    assert_non_null(m);
    assert_int_equal(m->slot, 2);
    assert_int_equal(m->table, 1);
    assert_true(m->flags & DT_PAIR_M_LOCKED);
    m = find_meeting(r, "d01", "a02");
    assert_non_null(m);
    assert_true(m->flags & DT_PAIR_M_MUST);
    m = find_meeting(r, "d02", "a00");
    assert_non_null(m);
    assert_int_equal(m->flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B), DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B);
    assert_true(fabs(m->value - (m->score + sp.opt.boost_both)) < 1e-6);
    assert_null(find_meeting(r, "d00", "a00"));
    assert_null(find_meeting(r, "d06", "a06"));
    assert_int_equal(r->holders[holder_index(r, "a05")].max_meetings, 1);
    assert_int_equal(r->holders[holder_index(r, "a05")].min_meetings, 1);
    assert_int_equal(r->n_must_met, 1);

    /* must-meet, requested and locked pairs nobody proposed (L = 1) are scored like any pair:
     * by their SME over every holder of the event */
    double row[6];
    ref_query(e, s, DT_DEMAND, "d01", holders, 6, 6, row);
    assert_true(fabs(find_meeting(r, "d01", "a02")->score - row[2]) < 1e-5);
    ref_query(e, s, DT_DEMAND, "d02", holders, 6, 6, row);
    assert_true(fabs(find_meeting(r, "d02", "a00")->score - row[0]) < 1e-5);

    char sum[512];
    dt_event_summary(r, find_meeting(r, "d02", "a00"), sum, sizeof sum);
    assert_non_null(strstr(sum, "requested by both"));
    dt_event_summary(r, find_meeting(r, "d04", "a04"), sum, sizeof sum);
    assert_non_null(strstr(sum, "shared terms: "));
    assert_non_null(strstr(sum, "locked"));
    dt_event_result_free(r);

    /* a re-run keeps the published meetings locked and re-solves the rest */
    sp.n_never_meet = 0;
    sp.n_met_before = 0;
    if (dt_event_pair(e, s, &sp, &r, &err)) fail_msg("%s: %s", err.field, err.msg);
    validate(r, &sp);
    size_t nl = r->n_meetings;
    dt_event_locked *all = calloc(nl + 1, sizeof *all);
    for (size_t k = 0; k < nl; k++)
        all[k] = (dt_event_locked){r->smes[r->meetings[k].sme].id, r->holders[r->meetings[k].holder].id,
                                   r->meetings[k].slot, r->meetings[k].table};
    sp.locked = all;
    sp.n_locked = nl;
    sp.slots = 4;
    sp.tables = 3;
    dt_event_result *r2 = NULL;
    if (dt_event_pair(e, s, &sp, &r2, &err)) fail_msg("%s: %s", err.field, err.msg);
    validate(r2, &sp);
    for (size_t k = 0; k < nl; k++) {
        const dt_event_meeting *m2 = find_meeting(r2, all[k].sme_id, all[k].holder_id);
        assert_non_null(m2);
        assert_int_equal(m2->slot, all[k].slot);
        assert_int_equal(m2->table, all[k].table);
        assert_true(m2->flags & DT_PAIR_M_LOCKED);
    }
    assert_true(r2->n_meetings >= nl);
    dt_event_result_free(r2);
    free(all);
    dt_event_result_free(r);
    dt_searcher_free(s);
    dt_engine_free(e);
}

/* ---------------------------------------------------------------- errors */

static void expect_err(dt_engine *e, dt_searcher *s, const dt_event_spec *sp, int code, const char *field)
{
    dt_err err = DT_ERR_INIT;
    dt_event_result *r = (dt_event_result *)0x1;
    int rc = dt_event_pair(e, s, sp, &r, &err);
    if (rc != -code || strcmp(err.field, field) != 0)
        fail_msg("want %s on '%s', got rc %d on '%s': %s", dt_err_name(code), field, rc, err.field, err.msg);
    assert_ptr_equal(r, (dt_event_result *)0x1);
    assert_true(err.msg[0] != 0);
}

static void test_errors(void **state)
{
    (void)state;
    dt_engine *e = small_engine(false);
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    const char *smes[] = {"d00", "d01", "d02"};
    const char *holders[] = {"a00", "a01", "a02"};
    dt_event_spec base;
    dt_event_spec_init(&base);
    base.tenant = T;
    base.smes.ids = smes;
    base.smes.n_ids = 3;
    base.holders.ids = holders;
    base.holders.n_ids = 3;
    base.slots = 2;
    base.tables = 2;
    dt_event_spec sp;

    const char *bad_smes[] = {"d00", "zz"};
    sp = base;
    sp.smes.ids = bad_smes;
    sp.smes.n_ids = 2;
    expect_err(e, s, &sp, DT_ENOTFOUND, "smes.ids[1]");
    const char *dup[] = {"a00", "a01", "a00"};
    sp = base;
    sp.holders.ids = dup;
    expect_err(e, s, &sp, DT_EINVAL, "holders.ids[2]");
    const char *wrong_side[] = {"d00"};
    sp = base;
    sp.holders.ids = wrong_side;
    sp.holders.n_ids = 1;
    expect_err(e, s, &sp, DT_ENOTFOUND, "holders.ids[0]");
    sp = base;
    sp.tenant = "other"; /* a00 exists there, d00 does not */
    expect_err(e, s, &sp, DT_ENOTFOUND, "smes.ids[0]");

    sp = base;
    sp.slots = 0;
    expect_err(e, s, &sp, DT_EINVAL, "slots");
    sp = base;
    sp.tables = 0;
    expect_err(e, s, &sp, DT_EINVAL, "tables");
    sp = base;
    sp.max_meetings = 3;
    expect_err(e, s, &sp, DT_EINVAL, "max_meetings");
    sp = base;
    sp.min_meetings = 3;
    expect_err(e, s, &sp, DT_EINVAL, "min_meetings");
    sp = base;
    sp.opt.decay_gamma = 0;
    expect_err(e, s, &sp, DT_EINVAL, "decay_gamma");
    sp = base;
    sp.candidates = DT_EVENT_CANDIDATES_MAX + 1;
    expect_err(e, s, &sp, DT_ELIMIT, "candidates");

    dt_event_pairref must_nf[] = {{"d00", "a99"}}, must_np[] = {{"d00", "a05"}};
    sp = base;
    sp.must_meet = must_nf;
    sp.n_must_meet = 1;
    expect_err(e, s, &sp, DT_ENOTFOUND, "must_meet[0].holder_id");
    sp.must_meet = must_np; /* a05 is a record, not a participant */
    expect_err(e, s, &sp, DT_EINVAL, "must_meet[0].holder_id");
    dt_event_request rq[] = {{"d01", "a01", DT_PAIR_REQ_A}, {"d09", "a01", DT_PAIR_REQ_B}};
    sp = base;
    sp.requests = rq;
    sp.n_requests = 2;
    expect_err(e, s, &sp, DT_EINVAL, "requests[1].sme_id");
    rq[1] = (dt_event_request){"d02", "a01", 7};
    expect_err(e, s, &sp, DT_EINVAL, "requests[1].who");
    dt_event_limit lim[] = {{"a01", 3, -1}};
    sp = base;
    sp.holder_limits = lim;
    sp.n_holder_limits = 1;
    expect_err(e, s, &sp, DT_EINVAL, "holder_limits[0].max_meetings");
    lim[0] = (dt_event_limit){"a01", 1, 2};
    expect_err(e, s, &sp, DT_EINVAL, "holder_limits[0].min_meetings");
    lim[0] = (dt_event_limit){"q", 1, 1};
    expect_err(e, s, &sp, DT_ENOTFOUND, "holder_limits[0].id");
    sp = base;
    sp.sme_limits = lim;
    sp.n_sme_limits = 1;
    lim[0] = (dt_event_limit){"a01", 1, 1}; /* a holder's id among SME limits */
    expect_err(e, s, &sp, DT_ENOTFOUND, "sme_limits[0].id");

    dt_event_locked lk[3];
    sp = base;
    sp.locked = lk;
    sp.n_locked = 1;
    lk[0] = (dt_event_locked){"d00", "a00", 0, 1};
    expect_err(e, s, &sp, DT_EINVAL, "locked[0].slot");
    lk[0] = (dt_event_locked){"d00", "a00", 2, 3};
    expect_err(e, s, &sp, DT_EINVAL, "locked[0].table");
    lk[0] = (dt_event_locked){"d00", "a00", 1, 1};
    lk[1] = (dt_event_locked){"d01", "a01", 1, 1};
    sp.n_locked = 2;
    expect_err(e, s, &sp, DT_EINVAL, "locked[1]"); /* one table twice in a slot */
    lk[1] = (dt_event_locked){"d00", "a01", 1, 2};
    expect_err(e, s, &sp, DT_EINVAL, "locked[1]"); /* d00 twice in slot 1 */
    lk[1] = (dt_event_locked){"d00", "a00", 2, 2};
    expect_err(e, s, &sp, DT_EINVAL, "locked[1]"); /* the same pair twice */
    lk[1] = (dt_event_locked){"d01", "a00", 2, 1};
    lk[2] = (dt_event_locked){"d02", "a00", 2, 2};
    sp.n_locked = 3;
    expect_err(e, s, &sp, DT_EINVAL, "locked[2]"); /* a00 twice in slot 2 */
    dt_event_limit one[] = {{"a00", 1, -1}};
    sp.holder_limits = one;
    sp.n_holder_limits = 1;
    sp.n_locked = 2;
    expect_err(e, s, &sp, DT_EINVAL, "locked[1]"); /* a00 locked twice, max 1 */

    /* an event with nobody on one side is fine: no meetings, everyone's reason is no candidates */
    sp = base;
    sp.holders.n_ids = 0;
    dt_event_result *r = NULL;
    assert_int_equal(dt_event_pair(e, s, &sp, &r, &err), 0);
    assert_int_equal(r->n_meetings, 0);
    assert_int_equal(r->n_holders, 0);
    for (size_t i = 0; i < r->n_smes; i++) assert_true(r->smes[i].reasons & DT_PAIR_R_NO_CANDIDATES);
    dt_event_result_free(r);
    dt_searcher_free(s);
    dt_engine_free(e);
}

/* ---------------------------------------------------------------- renderers */

/* Parses RFC 4180 text into rows of fields (at most 16 fields, 64 rows). */
typedef struct csv_doc {
    char *f[64][16];
    int nf[64];
    int rows;
} csv_doc;

static void csv_parse(const char *s, csv_doc *d)
{
    memset(d, 0, sizeof *d);
    char buf[4096];
    size_t n = 0;
    int row = 0, col = 0;
    bool q = false, any = false;
    for (const char *p = s;; p++) {
        if (q) {
            assert_true(*p != 0);
            if (*p == '"' && p[1] == '"') buf[n++] = '"', p++;
            else if (*p == '"') q = false;
            else buf[n++] = *p;
            continue;
        }
        if (*p == '"') {
            assert_int_equal(n, 0); /* a quote only opens a field */
            q = true;
            any = true;
        } else if (*p == ',' || *p == '\n' || *p == 0) {
            if (*p == 0 && !any && col == 0) break;
            buf[n] = 0;
            d->f[row][col++] = strdup(buf);
            n = 0;
            if (*p != ',') {
                d->nf[row++] = col;
                col = 0;
                any = false;
                if (*p == 0 || row == 64) break;
            }
        } else {
            buf[n++] = *p;
            any = true;
        }
    }
    d->rows = row;
}

static void csv_free(csv_doc *d)
{
    for (int r = 0; r < 64; r++)
        for (int c = 0; c < 16; c++) free(d->f[r][c]);
}

/* A hand-built result with hostile text. */
static dt_event_result *hostile_result(void)
{
    dt_event_result *r = calloc(1, sizeof *r);
    r->tenant = strdup("t<&>");
    r->slots = 2;
    r->tables = 3;
    r->n_smes = 2;
    r->n_holders = 2;
    r->smes = calloc(2, sizeof *r->smes);
    r->holders = calloc(2, sizeof *r->holders);
    const char *ids[4] = {"s-1", "s,2", "h\"1", "h-2"};
    const char *titles[4] = {"Plain, with comma", "=HYPERLINK(\"x\")", "<script>alert('x')</script>", "line\nbreak"};
    const char *orgs[4] = {"Org A", "@org", "-1+1", "Org \"Q\" & Co"};
    for (int i = 0; i < 4; i++) {
        dt_event_person *p = i < 2 ? &r->smes[i] : &r->holders[i - 2];
        p->id = strdup(ids[i]);
        p->title = strdup(titles[i]);
        p->org = strdup(orgs[i]);
        p->max_meetings = 2;
        p->agenda = calloc(2, sizeof *p->agenda);
    }
    r->n_meetings = 3;
    r->meetings = calloc(3, sizeof *r->meetings);
    int spec[3][4] = {{0, 0, 1, 1}, {1, 1, 1, 3}, {1, 0, 2, 2}}; /* sme, holder, slot, table */
    for (int k = 0; k < 3; k++) {
        dt_event_meeting *m = &r->meetings[k];
        m->sme = spec[k][0];
        m->holder = spec[k][1];
        m->slot = spec[k][2];
        m->table = spec[k][3];
        m->score = 0.25 * (k + 1);
        for (int f = 0; f < DT_FIT_COUNT; f++) m->fit[f] = -1;
        snprintf(m->terms[0].term, sizeof m->terms[0].term, "%s", k == 0 ? "a<b" : "电池");
        m->n_terms = 1;
        dt_event_person *s = &r->smes[m->sme], *h = &r->holders[m->holder];
        s->agenda[s->count++] = (size_t)k;
        h->agenda[h->count++] = (size_t)k;
        r->total_score += m->score;
    }
    r->meetings[2].flags = DT_PAIR_M_LOCKED;
    r->smes[0].reasons = DT_PAIR_R_TABLES | DT_PAIR_R_SAME_ORG; /* 1 meeting of at most 2 */
    r->n_unmet = 1;
    r->unmet = calloc(1, sizeof *r->unmet);
    r->unmet[0] = (dt_pair_unmet){DT_PAIR_UNMET_MUST, 0, 0, 1, 0, 1, DT_PAIR_R_A_FULL};
    return r;
}

static void test_csv(void **state)
{
    (void)state;
    dt_event_result *r = hostile_result();
    size_t len = 0;
    char *csv = dt_event_csv_meetings(r, &len);
    assert_non_null(csv);
    assert_int_equal(len, strlen(csv));
    csv_doc d;
    csv_parse(csv, &d);
    assert_int_equal(d.rows, 4);
    for (int i = 0; i < d.rows; i++) assert_int_equal(d.nf[i], 10);
    assert_string_equal(d.f[0][0], "slot");
    /* row 2: slot 1, table 3, SME s,2 (id verbatim), holder h"1 */
    assert_string_equal(d.f[2][0], "1");
    assert_string_equal(d.f[2][1], "3");
    assert_string_equal(d.f[2][2], "s,2");
    assert_string_equal(d.f[2][3], "'@org");
    assert_string_equal(d.f[2][4], "h-2");
    assert_string_equal(d.f[2][5], "Org \"Q\" & Co");
    assert_string_equal(d.f[2][6], "0.5000");
    assert_string_equal(d.f[2][7], "'=HYPERLINK(\"x\")");
    assert_string_equal(d.f[2][8], "line\nbreak");
    assert_string_equal(d.f[3][4], "h\"1");
    assert_string_equal(d.f[3][5], "'-1+1");
    assert_string_equal(d.f[3][8], "<script>alert('x')</script>");
    assert_non_null(strstr(d.f[3][9], "locked"));
    assert_string_equal(d.f[1][9], "shared terms: a<b");
    csv_free(&d);
    free(csv);

    csv = dt_event_csv_agendas(r, NULL);
    assert_non_null(csv);
    csv_parse(csv, &d);
    assert_int_equal(d.rows, 1 + 2 * 3);
    for (int i = 0; i < d.rows; i++) assert_int_equal(d.nf[i], 10);
    /* SMEs first, each by slot: s-1 has meeting 0 only; s,2 has meetings at slot 1 and 2 */
    assert_string_equal(d.f[1][0], "sme");
    assert_string_equal(d.f[1][1], "s-1");
    assert_string_equal(d.f[2][1], "s,2");
    assert_string_equal(d.f[2][3], "1");
    assert_string_equal(d.f[3][1], "s,2");
    assert_string_equal(d.f[3][3], "2");
    assert_string_equal(d.f[4][0], "holder");
    assert_string_equal(d.f[4][1], "h\"1");
    assert_string_equal(d.f[4][5], "s-1");
    csv_free(&d);
    free(csv);
    dt_event_result_free(r);
}

static void test_html(void **state)
{
    (void)state;
    dt_event_result *r = hostile_result();
    char long_title[100 * 3 + 1] = ""; /* 100 CJK characters: cut to 80 in the grid, whole in agendas */
    for (int i = 0; i < 100; i++) strcat(long_title, i < 80 ? "\xe7\x94\xb5" : "\xe6\xb1\xa0"); /* 电 x 80, 池 x 20 */
    free(r->holders[1].title);
    r->holders[1].title = strdup(long_title);
    size_t len = 0;
    char *html = dt_event_html(r, "Expo <2025> & \"friends\"", &len);
    assert_non_null(html);
    assert_int_equal(len, strlen(html));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<2025>"));
    assert_null(strstr(html, "a<b"));
    assert_null(strstr(html, "http:"));
    assert_null(strstr(html, "https:"));
    assert_null(strstr(html, "src="));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert_non_null(strstr(html, "Expo &lt;2025&gt; &amp; &quot;friends&quot;"));
    assert_non_null(strstr(html, "Org &quot;Q&quot; &amp; Co"));
    assert_non_null(strstr(html, "h&quot;1"));
    assert_non_null(strstr(html, "@media print"));
    assert_non_null(strstr(html, "<meta charset=\"utf-8\">"));
    /* every meeting sits in the cell of its slot and table, naming both parties */
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        char key[80];
        snprintf(key, sizeof key, "<td class=\"meeting\" data-slot=\"%d\" data-table=\"%d\">", m->slot, m->table);
        const char *cell = strstr(html, key);
        assert_non_null(cell);
        const char *end = strstr(cell, "</td>");
        assert_non_null(end);
        char *txt = strndup(cell, (size_t)(end - cell));
        char sid[64], hid[64];
        snprintf(sid, sizeof sid, "<span class=\"id\">%s</span>", k == 0 ? "s-1" : "s,2");
        snprintf(hid, sizeof hid, "<span class=\"id\">%s</span>", m->holder == 0 ? "h&quot;1" : "h-2");
        assert_non_null(strstr(txt, sid));
        assert_non_null(strstr(txt, hid));
        free(txt);
    }
    char cut[80 * 3 + 32];
    snprintf(cut, sizeof cut, "%.240s&hellip;<div class=\"org\">", long_title);
    const char *grid_end = strstr(html, "</table>");
    const char *in_grid = strstr(html, cut);
    assert_non_null(in_grid);
    assert_true(in_grid < grid_end);
    const char *whole = strstr(html, long_title);
    assert_non_null(whole);
    assert_true(whole > grid_end);
    /* 3 rows (tables) x 2 slots: 3 meetings and 3 free cells */
    size_t free_cells = 0;
    for (const char *p = html; (p = strstr(p, "<td class=\"free\"")); p++) free_cells++;
    assert_int_equal(free_cells, 3);
    /* one agenda per participant, and the unmet must-meet pair in the notes */
    size_t agendas = 0;
    for (const char *p = html; (p = strstr(p, "<section class=\"agenda\"")); p++) agendas++;
    assert_int_equal(agendas, 4);
    assert_non_null(strstr(html, "1 meeting (at most 2). Fewer than the maximum: a candidate is of the same "
                                 "organisation; every table of every slot is taken</p>"));
    assert_non_null(strstr(html, "Must-meet pair s-1 &ndash; h-2 does not meet: the SME has all its meetings</li>"));
    free(html);
    dt_event_result_free(r);
}

static void test_render_real_event(void **state)
{
    (void)state;
    dt_engine *e = small_engine(true);
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    dt_event_spec sp;
    dt_event_spec_init(&sp);
    sp.tenant = T;
    sp.smes.by_filter = true;
    sp.holders.by_filter = true;
    sp.slots = 3;
    sp.tables = 4;
    dt_event_result *r = NULL;
    if (dt_event_pair(e, s, &sp, &r, &err)) fail_msg("%s: %s", err.field, err.msg);
    validate(r, &sp);
    assert_true(r->n_meetings > 0);
    assert_true(r->n_meetings <= 12);
    char *csv = dt_event_csv_meetings(r, NULL), *ag = dt_event_csv_agendas(r, NULL), *html = dt_event_html(r, NULL, NULL);
    assert_non_null(csv);
    assert_non_null(ag);
    assert_non_null(html);
    csv_doc d;
    csv_parse(csv, &d);
    assert_int_equal(d.rows, 1 + (int)r->n_meetings);
    for (size_t k = 0; k < r->n_meetings; k++) {
        char sl[16];
        snprintf(sl, sizeof sl, "%d", r->meetings[k].slot);
        assert_string_equal(d.f[k + 1][0], sl);
        assert_string_equal(d.f[k + 1][2], r->smes[r->meetings[k].sme].id);
        assert_string_equal(d.f[k + 1][4], r->holders[r->meetings[k].holder].id);
    }
    csv_free(&d);
    csv_parse(ag, &d);
    assert_int_equal(d.rows, 1 + 2 * (int)r->n_meetings);
    csv_free(&d);
    assert_non_null(strstr(html, "<title>Event &mdash; schedule</title>"));
    free(csv);
    free(ag);
    free(html);
    dt_event_result_free(r);
    dt_searcher_free(s);
    dt_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_candidates_scalar),
        cmocka_unit_test(test_candidates_dense),
        cmocka_unit_test(test_filter_participants),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_html),
        cmocka_unit_test(test_render_real_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
