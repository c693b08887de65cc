/* test_outcome.c - outcome events: validation, aggregates against a brute-force recount, the ranking
 * policy (and its effect on a real ranking), replay, and tracking statistics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outcome.h"

static dt_outcome_event ev_of(const char *d, const char *a, dt_outcome_kind k)
{
    dt_outcome_event ev;
    dt_outcome_event_init(&ev);
    ev.tenant = "t";
    ev.demand_id = d;
    ev.achievement_id = a;
    ev.kind = k;
    ev.at = 1700000000;
    return ev;
}

static void add(dt_outcome_store *s, dt_outcome_event ev)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_outcome_add(s, &ev, &err);
    if (rc) fail_msg("add %s/%s: %s: %s", ev.demand_id, ev.achievement_id, err.field, err.msg);
}

static void decline(dt_outcome_store *s, const char *d, const char *a, dt_outcome_reason r)
{
    dt_outcome_event ev = ev_of(d, a, DT_OUTCOME_DECLINED);
    ev.reason = r;
    add(s, ev);
}

static dt_outcome_store *store(void)
{
    dt_err err = DT_ERR_INIT;
    dt_outcome_store *s = dt_outcome_store_new(&err);
    assert_non_null(s);
    return s;
}

static void test_validate(void **state)
{
    (void)state;
    char long_id[DT_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    char long_tenant[DT_TENANT_MAX + 2];
    memset(long_tenant, 't', sizeof long_tenant - 1);
    long_tenant[sizeof long_tenant - 1] = 0;
    struct {
        dt_outcome_event ev;
        const char *field;
        int code;
    } bad[16];
    size_t n = 0;
    bad[n].ev = ev_of(NULL, "a", DT_OUTCOME_VIEWED), bad[n].field = "demand_id", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "", DT_OUTCOME_VIEWED), bad[n].field = "achievement_id", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of(long_id, "a", DT_OUTCOME_VIEWED), bad[n].field = "demand_id", bad[n++].code = DT_ELIMIT;
    bad[n].ev = ev_of("d\n1", "a", DT_OUTCOME_VIEWED), bad[n].field = "demand_id", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a\xff", DT_OUTCOME_VIEWED), bad[n].field = "achievement_id", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_DECLINED), bad[n].field = "reason", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_CONTACTED), bad[n].ev.reason = DT_OUTCOME_REASON_PRICE,
    bad[n].field = "reason", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_DEAL_SIGNED), bad[n].field = "amount", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_DEAL_SIGNED), bad[n].ev.amount = -5, bad[n].field = "amount",
    bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_DEAL_SIGNED), bad[n].ev.amount = INFINITY, bad[n].field = "amount",
    bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_MEETING_HELD), bad[n].ev.amount = 100, bad[n].field = "amount",
    bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_VIEWED), bad[n].ev.at = -1, bad[n].field = "at", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", (dt_outcome_kind)17), bad[n].field = "kind", bad[n++].code = DT_EINVAL;
    bad[n].ev = ev_of("d", "a", DT_OUTCOME_VIEWED), bad[n].ev.tenant = long_tenant, bad[n].field = "tenant",
    bad[n++].code = DT_ELIMIT;
    dt_outcome_store *s = store();
    for (size_t i = 0; i < n; i++) {
        dt_err err = DT_ERR_INIT;
        int rc = dt_outcome_add(s, &bad[i].ev, &err);
        if (rc != -bad[i].code || strcmp(err.field, bad[i].field) != 0)
            fail_msg("case %zu: rc %d field '%s' (%s), expected %d '%s'", i, rc, err.field, err.msg, -bad[i].code,
                     bad[i].field);
        assert_true(strlen(err.msg) > 5);
    }
    assert_int_equal(dt_outcome_count(s, "t"), 0);
    dt_outcome_event ok = ev_of("d", "a", DT_OUTCOME_DEAL_SIGNED);
    ok.amount = 0;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_outcome_add(s, &ok, &err), 0);
    assert_int_equal(dt_outcome_count(s, "t"), 1);
    assert_int_equal(dt_outcome_count(s, "public"), 0);
    dt_outcome_store_free(s);
}

static void test_names(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++) {
        dt_outcome_kind out;
        assert_int_equal(dt_outcome_kind_parse(dt_outcome_kind_name((dt_outcome_kind)k), &out, "kind", &err), 0);
        assert_int_equal(out, k);
    }
    for (int r = 1; r < DT_OUTCOME_REASON_COUNT; r++) {
        dt_outcome_reason out;
        assert_int_equal(dt_outcome_reason_parse(dt_outcome_reason_name((dt_outcome_reason)r), &out, "reason", &err), 0);
        assert_int_equal(out, r);
    }
    dt_outcome_kind k;
    assert_int_equal(dt_outcome_kind_parse(" Meeting-Held ", &k, "kind", &err), 0);
    assert_int_equal(k, DT_OUTCOME_MEETING_HELD);
    assert_int_equal(dt_outcome_kind_parse("deal signed", &k, "kind", &err), 0);
    assert_int_equal(k, DT_OUTCOME_DEAL_SIGNED);
    assert_int_equal(dt_outcome_kind_parse("won", &k, "events[3].kind", &err), -DT_EINVAL);
    assert_string_equal(err.field, "events[3].kind");
    assert_non_null(strstr(err.msg, "won"));
    dt_outcome_reason r;
    assert_int_equal(dt_outcome_reason_parse("TOO-EARLY-STAGE", &r, "reason", &err), 0);
    assert_int_equal(r, DT_OUTCOME_REASON_TOO_EARLY_STAGE);
    assert_int_equal(dt_outcome_reason_parse("", &r, "reason", &err), -DT_EINVAL);
    assert_int_equal(dt_outcome_reason_parse("none", &r, "reason", &err), -DT_EINVAL);
}

/* ---- aggregates against a brute-force recount of a random event log ---- */

#define ND 7
#define NA 6

typedef struct logged {
    int d, a;
    dt_outcome_kind kind;
    dt_outcome_reason reason;
    double amount;
    int64_t at;
} logged;

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static char dname[ND][16], aname[NA][16];

static void names_init(void)
{
    for (int i = 0; i < ND; i++) snprintf(dname[i], sizeof dname[i], "d%d", i);
    for (int i = 0; i < NA; i++) snprintf(aname[i], sizeof aname[i], "a%d", i);
}

static logged random_event(void)
{
    logged l = {(int)(rnd() % ND), (int)(rnd() % NA), (dt_outcome_kind)(rnd() % DT_OUTCOME_KIND_COUNT),
                DT_OUTCOME_REASON_NONE, NAN, (int64_t)(1000 + rnd() % 1000)};
    if (l.kind == DT_OUTCOME_DECLINED) l.reason = (dt_outcome_reason)(1 + rnd() % (DT_OUTCOME_REASON_COUNT - 1));
    if (l.kind == DT_OUTCOME_DEAL_SIGNED) l.amount = (double)(rnd() % 100) * 1000;
    return l;
}

static void add_logged(dt_outcome_store *s, const logged *l)
{
    dt_outcome_event ev = ev_of(dname[l->d], aname[l->a], l->kind);
    ev.reason = l->reason;
    ev.amount = l->amount;
    ev.at = l->at;
    add(s, ev);
}

/* Checks every pair and record aggregate of s against a recount of log[0..n). */
static void check_against_log(const dt_outcome_store *s, const logged *log, size_t n)
{
    for (int d = 0; d < ND; d++)
        for (int a = 0; a < NA; a++) {
            uint32_t ev[DT_OUTCOME_KIND_COUNT] = {0};
            unsigned reasons = 0;
            double amount = 0;
            int64_t first = INT64_MAX, last = INT64_MIN;
            size_t cnt = 0;
            dt_outcome_kind last_kind = 0;
            for (size_t i = 0; i < n; i++) {
                if (log[i].d != d || log[i].a != a) continue;
                cnt++;
                ev[log[i].kind]++;
                if (log[i].kind == DT_OUTCOME_DECLINED) reasons |= 1u << log[i].reason;
                if (log[i].kind == DT_OUTCOME_DEAL_SIGNED) amount += log[i].amount;
                if (log[i].at < first) first = log[i].at;
                if (log[i].at > last) last = log[i].at;
                last_kind = log[i].kind;
            }
            dt_outcome_pair_stats ps;
            int found = dt_outcome_pair_get(s, "t", dname[d], aname[a], &ps);
            assert_int_equal(found, cnt > 0);
            if (!cnt) {
                assert_int_equal(dt_outcome_pair_flags(s, "t", dname[d], aname[a]), 0);
                continue;
            }
            assert_memory_equal(ps.events, ev, sizeof ev);
            assert_int_equal(ps.reasons, reasons);
            assert_true(fabs(ps.deal_amount - amount) < 1e-9);
            assert_int_equal(ps.first_at, first);
            assert_int_equal(ps.last_at, last);
            assert_int_equal(ps.last_kind, last_kind);
            bool declined = ev[DT_OUTCOME_DECLINED] > 0;
            bool engaged = ev[DT_OUTCOME_MEETING_HELD] + ev[DT_OUTCOME_NEGOTIATING] + ev[DT_OUTCOME_DEAL_SIGNED] > 0;
            bool contacted = engaged || ev[DT_OUTCOME_CONTACTED] > 0;
            assert_int_equal(!!(ps.flags & DT_OUTCOME_PAIR_DECLINED), declined);
            assert_int_equal(!!(ps.flags & DT_OUTCOME_PAIR_ENGAGED), engaged);
            assert_int_equal(!!(ps.flags & DT_OUTCOME_PAIR_CONTACTED), contacted);
            assert_int_equal(!!(ps.flags & DT_OUTCOME_PAIR_DEAL), ev[DT_OUTCOME_DEAL_SIGNED] > 0);
            assert_int_equal(!!(ps.flags & DT_OUTCOME_PAIR_VIEWED), ev[DT_OUTCOME_VIEWED] > 0);
            assert_int_equal(dt_outcome_declined(s, "t", dname[d], aname[a]), declined);
        }
    /* records: per side, recount over the pairs */
    for (int side = 0; side < 2; side++)
        for (int r = 0; r < (side ? NA : ND); r++) {
            uint32_t ev[DT_OUTCOME_KIND_COUNT] = {0}, decl[DT_OUTCOME_REASON_COUNT] = {0};
            uint32_t partners = 0, contacted = 0, deals = 0;
            double amount = 0;
            for (int o = 0; o < (side ? ND : NA); o++) {
                int d = side ? o : r, a = side ? r : o;
                bool any = false, ctc = false, deal = false, dec = false;
                unsigned reasons = 0;
                for (size_t i = 0; i < n; i++) {
                    if (log[i].d != d || log[i].a != a) continue;
                    any = true;
                    ev[log[i].kind]++;
                    if (log[i].kind == DT_OUTCOME_DECLINED) dec = true, reasons |= 1u << log[i].reason;
                    if (log[i].kind == DT_OUTCOME_DEAL_SIGNED) amount += log[i].amount, deal = true;
                    if (log[i].kind == DT_OUTCOME_CONTACTED || log[i].kind >= DT_OUTCOME_MEETING_HELD) ctc = true;
                }
                partners += any;
                contacted += ctc;
                deals += deal;
                decl[0] += dec;
                for (int x = 1; x < DT_OUTCOME_REASON_COUNT; x++) decl[x] += (reasons >> x) & 1;
            }
            dt_outcome_record_stats rs;
            const char *id = side ? aname[r] : dname[r];
            int found = dt_outcome_record_get(s, "t", (dt_side)side, id, &rs);
            assert_int_equal(found, partners > 0);
            if (!found) continue;
            assert_memory_equal(rs.events, ev, sizeof ev);
            assert_memory_equal(rs.decliners, decl, sizeof decl);
            assert_int_equal(rs.partners, partners);
            assert_int_equal(rs.contacted_pairs, contacted);
            assert_int_equal(rs.deal_pairs, deals);
            assert_true(fabs(rs.deal_amount - amount) < 1e-9);
            assert_int_equal(dt_outcome_partners(s, "t", (dt_side)side, id, NULL, NULL), partners);
        }
}

static int replay(void *ud, const dt_outcome_event *ev)
{
    dt_err err = DT_ERR_INIT;
    return dt_outcome_add(ud, ev, &err);
}

static void test_aggregates_random(void **state)
{
    (void)state;
    names_init();
    for (int round = 0; round < 20; round++) {
        dt_outcome_store *s = store();
        size_t n = 1 + rnd() % 120;
        logged *log = malloc(n * sizeof *log);
        assert_non_null(log);
        for (size_t i = 0; i < n; i++) {
            log[i] = random_event();
            add_logged(s, &log[i]);
        }
        assert_int_equal(dt_outcome_count(s, "t"), n);
        assert_int_equal(dt_outcome_epoch(s, "t"), n);
        check_against_log(s, log, n);
        /* replaying the stored events in order rebuilds the same store */
        dt_outcome_store *s2 = store();
        assert_int_equal(dt_outcome_each(s, "t", replay, s2), 0);
        check_against_log(s2, log, n);
        dt_outcome_store_free(s2);
        dt_outcome_store_free(s);
        free(log);
    }
}

typedef struct seen_partner {
    char ids[8][16];
    unsigned flags[8];
    int n;
} seen_partner;

static void on_partner(void *ud, const char *id, unsigned flags)
{
    seen_partner *p = ud;
    snprintf(p->ids[p->n], sizeof p->ids[p->n], "%s", id);
    p->flags[p->n++] = flags;
}

static void test_partners_and_tenants(void **state)
{
    (void)state;
    dt_outcome_store *s = store();
    add(s, ev_of("d1", "a1", DT_OUTCOME_VIEWED));
    add(s, ev_of("d1", "a2", DT_OUTCOME_MEETING_HELD));
    decline(s, "d1", "a3", DT_OUTCOME_REASON_OTHER);
    dt_outcome_event other = ev_of("d1", "a1", DT_OUTCOME_DECLINED);
    other.tenant = NULL; /* public */
    other.reason = DT_OUTCOME_REASON_PRICE;
    add(s, other);
    seen_partner p = {0};
    assert_int_equal(dt_outcome_partners(s, "t", DT_DEMAND, "d1", on_partner, &p), 3);
    assert_string_equal(p.ids[0], "a1");
    assert_int_equal(p.flags[0], DT_OUTCOME_PAIR_VIEWED);
    assert_string_equal(p.ids[1], "a2");
    assert_int_equal(p.flags[1], DT_OUTCOME_PAIR_ENGAGED | DT_OUTCOME_PAIR_CONTACTED);
    assert_string_equal(p.ids[2], "a3");
    assert_int_equal(p.flags[2], DT_OUTCOME_PAIR_DECLINED);
    /* tenants do not see each other */
    assert_false(dt_outcome_declined(s, "t", "d1", "a1"));
    assert_true(dt_outcome_declined(s, "public", "d1", "a1"));
    assert_true(dt_outcome_declined(s, "", "d1", "a1"));
    size_t nt;
    const char *const *names = dt_outcome_tenants(s, &nt);
    assert_int_equal(nt, 2);
    assert_string_equal(names[0], "t");
    assert_string_equal(names[1], "public");
    assert_int_equal(dt_outcome_partners(s, "nobody", DT_DEMAND, "d1", on_partner, &p), 0);
    dt_outcome_store_free(s);
}

/* ---- the policy ---- */

static dt_record mkrec(dt_side side, const char *id, int trl, double pmin, double pmax)
{
    dt_record r;
    dt_record_init(&r);
    r.tenant = strdup("t");
    r.side = side;
    r.id = strdup(id);
    r.trl = trl;
    r.price_min = pmin;
    r.price_max = pmax;
    return r;
}

static void test_flags_threshold(void **state)
{
    (void)state;
    dt_outcome_store *s = store();
    dt_outcome_policy p;
    dt_outcome_policy_default(&p);
    assert_int_equal(p.min_declines, 2);
    /* one demand declining twice for price is one decliner */
    decline(s, "d1", "a1", DT_OUTCOME_REASON_PRICE);
    decline(s, "d1", "a1", DT_OUTCOME_REASON_PRICE);
    assert_int_equal(dt_outcome_achievement_flags(s, &p, "t", "a1"), 0);
    decline(s, "d2", "a1", DT_OUTCOME_REASON_UNCLEAR_BENEFIT);
    assert_int_equal(dt_outcome_achievement_flags(s, &p, "t", "a1"), 0);
    decline(s, "d3", "a1", DT_OUTCOME_REASON_PRICE);
    assert_int_equal(dt_outcome_achievement_flags(s, &p, "t", "a1"), DT_OUTCOME_ACH_PRICE);
    decline(s, "d4", "a2", DT_OUTCOME_REASON_TOO_EARLY_STAGE);
    decline(s, "d5", "a2", DT_OUTCOME_REASON_TOO_EARLY_STAGE);
    assert_int_equal(dt_outcome_achievement_flags(s, &p, "t", "a2"), DT_OUTCOME_ACH_STAGE);
    assert_int_equal(dt_outcome_flagged(s, &p, "t", NULL, NULL), 2);
    p.min_declines = 1;
    assert_int_equal(dt_outcome_achievement_flags(s, &p, "t", "a1"), DT_OUTCOME_ACH_PRICE);
    assert_int_equal(dt_outcome_flagged(s, &p, "t", NULL, NULL), 2);
    p.min_declines = 3;
    assert_int_equal(dt_outcome_flagged(s, &p, "t", NULL, NULL), 0);
    p.min_declines = 0;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_outcome_policy_validate(&p, &err), -DT_EINVAL);
    assert_string_equal(err.field, "min_declines");
    dt_outcome_policy_default(&p);
    p.price_penalty = NAN;
    assert_int_equal(dt_outcome_policy_validate(&p, &err), -DT_EINVAL);
    assert_string_equal(err.field, "price_penalty");
    dt_outcome_store_free(s);
}

static void test_delta_rules(void **state)
{
    (void)state;
    dt_outcome_policy p;
    dt_outcome_policy_default(&p);
    dt_record poor = mkrec(DT_DEMAND, "poor", 7, NAN, 1e5);
    dt_record rich = mkrec(DT_DEMAND, "rich", 3, NAN, 1e7);
    dt_record minonly = mkrec(DT_DEMAND, "minonly", 0, 2e5, NAN); /* budget from 2e5 up: unbounded */
    dt_record nobudget = mkrec(DT_DEMAND, "nobudget", 0, NAN, NAN);
    dt_record ach = mkrec(DT_ACHIEVEMENT, "ach", 4, 5e5, 8e5);
    dt_record maxonly = mkrec(DT_ACHIEVEMENT, "maxonly", 0, NAN, 1.5e5); /* asks up to 1.5e5: from 0 */
    const float eps = 1e-7f;

    assert_true(isinf(dt_outcome_delta(&p, DT_OUTCOME_PAIR_DECLINED | DT_OUTCOME_PAIR_ENGAGED, 0, &poor, &ach)));
    assert_true(dt_outcome_delta(&p, DT_OUTCOME_PAIR_DECLINED, 0, &poor, &ach) < 0);
    assert_float_equal(dt_outcome_delta(&p, 0, 0, &poor, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, DT_OUTCOME_PAIR_VIEWED | DT_OUTCOME_PAIR_CONTACTED, 0, &poor, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, DT_OUTCOME_PAIR_ENGAGED, 0, &poor, &ach), p.engaged_boost, eps);
    /* price: budget up to 1e5 < ask from 5e5; rich 1e7 is not below; a budget from 2e5 up has no
     * ceiling; no budget: no penalty; an ask of up to 1.5e5 may be as low as any budget */
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &poor, &ach), -p.price_penalty, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &rich, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &minonly, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &nobudget, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &minonly, &maxonly), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_PRICE, &poor, &maxonly), 0, eps);
    /* stage: poor needs TRL 7 > 4; rich needs 3; minonly states none; maxonly states none */
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_STAGE, &poor, &ach), -p.stage_penalty, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_STAGE, &rich, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_STAGE, &minonly, &ach), 0, eps);
    assert_float_equal(dt_outcome_delta(&p, 0, DT_OUTCOME_ACH_STAGE, &poor, &maxonly), 0, eps);
    /* parts add up */
    assert_float_equal(dt_outcome_delta(&p, DT_OUTCOME_PAIR_ENGAGED, DT_OUTCOME_ACH_PRICE | DT_OUTCOME_ACH_STAGE,
                                        &poor, &ach),
                       p.engaged_boost - p.price_penalty - p.stage_penalty, eps);

    /* dt_outcome_adjust reads the same flags from the store */
    dt_outcome_store *s = store();
    decline(s, "x1", "ach", DT_OUTCOME_REASON_PRICE);
    decline(s, "x2", "ach", DT_OUTCOME_REASON_PRICE);
    add(s, ev_of("poor", "ach", DT_OUTCOME_NEGOTIATING));
    assert_float_equal(dt_outcome_adjust(s, &p, &poor, &ach), p.engaged_boost - p.price_penalty, eps);
    assert_float_equal(dt_outcome_adjust(s, &p, &rich, &ach), 0, eps);
    decline(s, "rich", "ach", DT_OUTCOME_REASON_OTHER);
    assert_true(isinf(dt_outcome_adjust(s, &p, &rich, &ach)));
    dt_outcome_store_free(s);
    dt_record *all[] = {&poor, &rich, &minonly, &nobudget, &ach, &maxonly};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dt_record_free(all[i]);
}

/* ---- the effect on a real ranking ---- */

static void put(dt_engine *e, dt_record *r)
{
    dt_err err = DT_ERR_INIT;
    if (dt_engine_upsert(e, r, &err)) fail_msg("upsert %s: %s: %s", r->id, err.field, err.msg);
}

typedef struct ranked {
    char id[8][16];
    float score[8];
    int n;
} ranked;

/* The demand's list over every achievement, with the outcome adjustment applied by hand: the
 * procedure docs/rerank.md describes (and rerank.c implements exactly). */
static ranked rank_adjusted(dt_engine *e, dt_searcher *sr, const dt_outcome_store *s, const dt_outcome_policy *p,
                            const char *demand)
{
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.record_id = demand;
    q.record_side = DT_DEMAND;
    q.target = DT_ACHIEVEMENT;
    q.k = 8;
    dt_match_result r;
    dt_err err = DT_ERR_INIT;
    if (dt_search(sr, &q, 1, &r, &err)) fail_msg("search: %s", err.msg);
    const dt_record *d = dt_engine_get(e, "t", DT_DEMAND, demand);
    ranked out = {0};
    for (size_t i = 0; i < r.n; i++) {
        float sc = r.v[i].score + (s ? dt_outcome_adjust(s, p, d, r.v[i].rec) : 0);
        if (isinf(sc)) continue;
        int j = out.n++;
        while (j > 0 && out.score[j - 1] < sc) {
            out.score[j] = out.score[j - 1];
            memcpy(out.id[j], out.id[j - 1], sizeof out.id[j]);
            j--;
        }
        out.score[j] = sc;
        snprintf(out.id[j], sizeof out.id[j], "%s", r.v[i].rec->id);
    }
    dt_match_result_free(&r);
    return out;
}

static int pos_of(const ranked *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->id[i], id) == 0) return i;
    return -1;
}

static void test_ranking_effect(void **state)
{
    (void)state;
    dt_engine_opts eo = dt_engine_opts_default();
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    assert_non_null(e);
    /* embeddings on a line: achievement ai is at angle 0.1 * i from both demands, so the plain
     * ranking is a0 > a1 > ... > a5 for both */
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        dt_record r = mkrec(DT_ACHIEVEMENT, id, 5, 3e5, 4e5);
        r.embedding = malloc(2 * sizeof(float));
        r.dim = 2;
        r.embedding[0] = cosf(0.1f * (float)i);
        r.embedding[1] = sinf(0.1f * (float)i);
        put(e, &r);
    }
    const char *dem[] = {"low", "high", "x1", "x2"};
    double budget[] = {1e5, 1e6, 1e6, 1e6};
    for (int i = 0; i < 4; i++) {
        dt_record r = mkrec(DT_DEMAND, dem[i], 3, NAN, budget[i]);
        r.embedding = malloc(2 * sizeof(float));
        r.dim = 2;
        r.embedding[0] = 1;
        r.embedding[1] = 0;
        put(e, &r);
    }
    dt_searcher *sr = dt_searcher_new(e, &err);
    assert_non_null(sr);
    dt_outcome_policy p;
    dt_outcome_policy_default(&p);
    p.price_penalty = 0.2f; /* larger than the gap between a0 and a2 */
    ranked before = rank_adjusted(e, sr, NULL, &p, "low");
    assert_int_equal(before.n, 6);
    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        assert_string_equal(before.id[i], id);
    }
    dt_outcome_store *s = store();
    decline(s, "low", "a1", DT_OUTCOME_REASON_UNCLEAR_BENEFIT); /* gone for low only */
    add(s, ev_of("low", "a4", DT_OUTCOME_MEETING_HELD));      /* a4 boosted for low */
    decline(s, "x1", "a0", DT_OUTCOME_REASON_PRICE);          /* a0: two price declines */
    decline(s, "x2", "a0", DT_OUTCOME_REASON_PRICE);
    ranked low = rank_adjusted(e, sr, s, &p, "low");
    ranked high = rank_adjusted(e, sr, s, &p, "high");
    /* declined pair is gone */
    assert_int_equal(pos_of(&low, "a1"), -1);
    assert_int_equal(low.n, 5);
    assert_int_equal(pos_of(&high, "a1"), 1);
    /* a4 rose above a3 (it was two places below it) */
    assert_true(pos_of(&low, "a4") < pos_of(&low, "a3"));
    assert_true(pos_of(&high, "a4") > pos_of(&high, "a3"));
    /* a0 demoted for the demand whose budget (1e5) is below its asking price (3e5), kept first
     * for the one who can afford it */
    assert_true(pos_of(&low, "a0") > pos_of(&low, "a2"));
    assert_int_equal(pos_of(&high, "a0"), 0);
    /* the declining demands themselves no longer see a0 */
    ranked x1 = rank_adjusted(e, sr, s, &p, "x1");
    assert_int_equal(pos_of(&x1, "a0"), -1);
    dt_outcome_store_free(s);
    dt_searcher_free(sr);
    dt_engine_free(e);
}

/* ---- statistics ---- */

static void test_stats(void **state)
{
    (void)state;
    dt_engine_opts eo = dt_engine_opts_default();
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    assert_non_null(e);
    struct {
        dt_side side;
        const char *id, *field, *region;
        bool closed;
    } recs[] = {
        {DT_DEMAND, "d1", "C.38.4", "CN.32.05", false},   {DT_DEMAND, "d2", "C.38.1", "CN.32.01", false},
        {DT_DEMAND, "d3", "C.39", "CN.32.05", true},      {DT_DEMAND, "d4", NULL, "CN.44", false},
        {DT_ACHIEVEMENT, "a1", "C.38.4", "CN.31", false}, {DT_ACHIEVEMENT, "a2", "A.01", "CN.32.05", false},
        {DT_ACHIEVEMENT, "a3", "C.38", "CN.32", true},
    };
    for (size_t i = 0; i < sizeof recs / sizeof *recs; i++) {
        dt_record r;
        dt_record_init(&r);
        r.tenant = strdup("t");
        r.side = recs[i].side;
        r.id = strdup(recs[i].id);
        r.title = strdup("lithium battery separator");
        if (recs[i].field) r.field = strdup(recs[i].field);
        r.region = strdup(recs[i].region);
        r.status = recs[i].closed ? DT_CLOSED : DT_OPEN;
        put(e, &r);
    }
    dt_outcome_store *s = store();
    /* d1 (C, CN.32): contacted a1, a2; deal with a1 (40) */
    add(s, ev_of("d1", "a1", DT_OUTCOME_CONTACTED));
    add(s, ev_of("d1", "a2", DT_OUTCOME_CONTACTED));
    dt_outcome_event deal = ev_of("d1", "a1", DT_OUTCOME_DEAL_SIGNED);
    deal.amount = 40;
    add(s, deal);
    /* d2 (C, CN.32): meeting with a1 (counts as contacted), declined a2 twice (price, other) */
    add(s, ev_of("d2", "a1", DT_OUTCOME_MEETING_HELD));
    decline(s, "d2", "a2", DT_OUTCOME_REASON_PRICE);
    decline(s, "d2", "a2", DT_OUTCOME_REASON_OTHER);
    /* d4 (no field, CN.44): viewed a2; gone (unknown to the engine): deal with a2 (5) */
    add(s, ev_of("d4", "a2", DT_OUTCOME_VIEWED));
    deal = ev_of("gone", "a2", DT_OUTCOME_DEAL_SIGNED);
    deal.amount = 5;
    add(s, deal);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "d1", 10, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "d1", 5, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_ACHIEVEMENT, "a2", 7, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", (dt_side)5, "a2", 7, &err), -DT_EINVAL);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "", 7, &err), -DT_EINVAL);
    dt_outcome_record_stats rs;
    assert_int_equal(dt_outcome_record_get(s, "t", DT_DEMAND, "d1", &rs), 1);
    assert_int_equal(rs.served, 15);

    dt_outcome_stats_opts o;
    dt_outcome_stats_opts_default(&o);
    dt_outcome_stats_row *rows;
    size_t n;
    assert_int_equal(dt_outcome_stats(s, e, "t", &o, &rows, &n, &err), 0);
    /* groups (field depth 1, region depth 2): total; A/CN.32 (a2); C/CN.31 (a1); C/CN.32 (d1, d2,
     * d3, a3); -/CN.44 (d4); -/- (gone) */
    const char *want[][2] = {{"*", "*"}, {"-", "-"}, {"-", "CN.44"}, {"A", "CN.32"}, {"C", "CN.31"}, {"C", "CN.32"}};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].field, want[i][0]);
        assert_string_equal(rows[i].region, want[i][1]);
    }
    const dt_outcome_stats_row *tot = &rows[0], *c32 = &rows[5], *a32 = &rows[3], *gone = &rows[1];
    assert_int_equal(tot->demands, 4);
    assert_int_equal(tot->demands_open, 3);
    assert_int_equal(tot->achievements, 3);
    assert_int_equal(tot->achievements_open, 2);
    assert_int_equal(tot->served_demands, 15);
    assert_int_equal(tot->served_achievements, 7);
    assert_int_equal(tot->events[DT_OUTCOME_CONTACTED], 2);
    assert_int_equal(tot->events[DT_OUTCOME_DECLINED], 2);
    assert_int_equal(tot->events[DT_OUTCOME_DEAL_SIGNED], 2);
    assert_int_equal(tot->declined[DT_OUTCOME_REASON_PRICE], 1);
    assert_int_equal(tot->declined[DT_OUTCOME_REASON_OTHER], 1);
    assert_int_equal(tot->declined[DT_OUTCOME_REASON_NONE], 2);
    /* contacted pairs: d1-a1, d1-a2, d2-a1, gone-a2 (a deal implies contact); deals: d1-a1, gone-a2 */
    assert_int_equal(tot->contacted_pairs, 4);
    assert_int_equal(tot->deal_pairs, 2);
    assert_float_equal(tot->conversion, 0.5, 1e-12);
    assert_float_equal(tot->deal_amount, 45, 1e-12);
    assert_int_equal(c32->demands, 3);
    assert_int_equal(c32->demands_open, 2);
    assert_int_equal(c32->achievements, 1);
    assert_int_equal(c32->achievements_open, 0);
    assert_int_equal(c32->served_demands, 15);
    assert_int_equal(c32->contacted_pairs, 3);
    assert_int_equal(c32->deal_pairs, 1);
    assert_float_equal(c32->conversion, 1.0 / 3.0, 1e-12);
    assert_int_equal(a32->served_achievements, 7);
    assert_int_equal(a32->contacted_pairs, 0); /* by demand: a2's pairs count under their demands */
    assert_int_equal(gone->deal_pairs, 1);
    assert_float_equal(gone->conversion, 1.0, 1e-12);
    free(rows);

    /* by achievement, one group per full field code, regions together */
    o.by = DT_ACHIEVEMENT;
    o.field_depth = 9;
    o.region_depth = 0;
    assert_int_equal(dt_outcome_stats(s, e, "t", &o, &rows, &n, &err), 0);
    const dt_outcome_stats_row *a1row = NULL, *a2row = NULL;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].region, "*");
        if (strcmp(rows[i].field, "C.38.4") == 0) a1row = &rows[i];
        if (strcmp(rows[i].field, "A.01") == 0) a2row = &rows[i];
    }
    assert_non_null(a1row);
    assert_non_null(a2row);
    assert_int_equal(a1row->contacted_pairs, 2); /* d1-a1, d2-a1 */
    assert_int_equal(a1row->deal_pairs, 1);
    assert_int_equal(a1row->demands, 1);         /* d1 has field C.38.4 too */
    assert_int_equal(a2row->contacted_pairs, 2); /* d1-a2, gone-a2 */
    assert_int_equal(a2row->events[DT_OUTCOME_DECLINED], 2);
    assert_int_equal(rows[0].contacted_pairs, 4);
    free(rows);

    o.field_depth = -1;
    assert_int_equal(dt_outcome_stats(s, e, "t", &o, &rows, &n, &err), -DT_EINVAL);
    assert_string_equal(err.field, "field_depth");
    /* without an engine everything lands in "-" groups */
    dt_outcome_stats_opts_default(&o);
    assert_int_equal(dt_outcome_stats(s, NULL, "t", &o, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].contacted_pairs, 4);
    assert_int_equal(rows[1].contacted_pairs, 4);
    assert_int_equal(rows[0].demands, 0);
    free(rows);
    /* an unknown tenant has a zero total */
    assert_int_equal(dt_outcome_stats(s, e, "nobody", &o, &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].demands, 0);
    free(rows);
    dt_outcome_store_free(s);
    dt_engine_free(e);
}


/* ---- served counters walk, stored-record check ---- */

typedef struct served_seen {
    int n;
    dt_side side[8];
    char id[8][16];
    uint64_t served[8];
    int stop_after;
} served_seen;

static int see_served(void *ud, dt_side side, const char *id, uint64_t served)
{
    served_seen *v = ud;
    assert_true(v->n < 8);
    v->side[v->n] = side;
    snprintf(v->id[v->n], sizeof v->id[0], "%s", id);
    v->served[v->n] = served;
    v->n++;
    return v->n == v->stop_after ? 7 : 0;
}

static void test_each_served(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_outcome_store *s = dt_outcome_store_new(&err);
    assert_non_null(s);
    add(s, ev_of("d0", "a0", DT_OUTCOME_VIEWED)); /* records known, nothing served */
    assert_int_equal(dt_outcome_note_served(s, "t", DT_ACHIEVEMENT, "a1", 5, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "d1", 3, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "d2", 0, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "t", DT_DEMAND, "d1", 2, &err), 0);
    assert_int_equal(dt_outcome_note_served(s, "u", DT_DEMAND, "d1", 9, &err), 0);
    served_seen v = {0};
    assert_int_equal(dt_outcome_each_served(s, "t", see_served, &v), 0);
    /* demands first, in the order first seen; zero counters left out */
    assert_int_equal(v.n, 2);
    assert_int_equal(v.side[0], DT_DEMAND);
    assert_string_equal(v.id[0], "d1");
    assert_int_equal(v.served[0], 5);
    assert_int_equal(v.side[1], DT_ACHIEVEMENT);
    assert_string_equal(v.id[1], "a1");
    assert_int_equal(v.served[1], 5);
    /* feeding the walk to another store restores the counters */
    dt_outcome_store *c = dt_outcome_store_new(&err);
    for (int i = 0; i < v.n; i++)
        assert_int_equal(dt_outcome_note_served(c, "t", v.side[i], v.id[i], v.served[i], &err), 0);
    dt_outcome_record_stats rs;
    assert_int_equal(dt_outcome_record_get(c, "t", DT_DEMAND, "d1", &rs), 1);
    assert_int_equal(rs.served, 5);
    assert_int_equal(dt_outcome_record_get(c, "t", DT_ACHIEVEMENT, "a1", &rs), 1);
    assert_int_equal(rs.served, 5);
    dt_outcome_store_free(c);
    served_seen w = {0};
    w.stop_after = 1;
    assert_int_equal(dt_outcome_each_served(s, "t", see_served, &w), 7);
    assert_int_equal(w.n, 1);
    served_seen none = {0};
    assert_int_equal(dt_outcome_each_served(s, "nobody", see_served, &none), 0);
    assert_int_equal(none.n, 0);
    dt_outcome_store_free(s);
}

static void test_check_stored(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(NULL, &err);
    assert_non_null(e);
    dt_record r = mkrec(DT_DEMAND, "d1", 3, NAN, NAN);
    put(e, &r);
    r = mkrec(DT_ACHIEVEMENT, "a1", 5, NAN, NAN);
    r.status = DT_CLOSED;
    put(e, &r);
    dt_outcome_event ev = ev_of("d1", "a1", DT_OUTCOME_CONTACTED);
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), 0); /* closed records count */
    ev = ev_of("a1", "a1", DT_OUTCOME_CONTACTED);
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "demand_id");
    assert_non_null(strstr(err.msg, "no demand with id 'a1' in tenant 't'"));
    assert_non_null(strstr(err.msg, "names an achievement"));
    ev = ev_of("d1", "d1", DT_OUTCOME_CONTACTED);
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "achievement_id");
    assert_non_null(strstr(err.msg, "names a demand"));
    ev = ev_of("d1", "zz", DT_OUTCOME_CONTACTED);
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "achievement_id");
    assert_null(strstr(err.msg, "names"));
    ev = ev_of("d1", "a1", DT_OUTCOME_CONTACTED);
    ev.tenant = "other";
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "demand_id");
    ev.tenant = "t";
    ev.demand_id = "";
    assert_int_equal(dt_outcome_event_check_stored(e, &ev, &err), -DT_EINVAL);
    assert_string_equal(err.field, "demand_id");
    dt_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),         cmocka_unit_test(test_names),
        cmocka_unit_test(test_aggregates_random), cmocka_unit_test(test_partners_and_tenants),
        cmocka_unit_test(test_flags_threshold),  cmocka_unit_test(test_delta_rules),
        cmocka_unit_test(test_ranking_effect),   cmocka_unit_test(test_stats),
        cmocka_unit_test(test_each_served),      cmocka_unit_test(test_check_stored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
