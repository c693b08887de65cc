/* test_pair.c - tests of matcher/pair.c (Deep Dive event pairing).
 *
 * Every solve is checked by an independent validator written here (slots, tables, limits, rules,
 * and the objective recomputed from the meetings). Optimality is checked two ways: against an
 * exhaustive search over every subset of candidate pairs on tiny events, and against
 * tests/pair_oracle.py (networkx network simplex on its own big-M network) on random events up to
 * 30 x 30. One test per rule then checks its effect on hand-built events.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "pair.h"

#define N 32 /* largest side in the random events */

/* ---------------------------------------------------------------- random events */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static int rint_in(rng *r, int lo, int hi)
{
    return lo + (int)(rnd(r) % (uint64_t)(hi - lo + 1));
}

static double runit(rng *r)
{
    return (double)(rnd(r) >> 11) / 9007199254740992.0;
}

/* An event with room for N x N; arrays are owned by the struct. */
typedef struct inst {
    dt_pair_problem p;
    dt_pair_person A[N], B[N];
    dt_pair_edge E[N * N];
    dt_pair_pair must[8], never[16], excl[16];
    dt_pair_request req[64];
    dt_pair_locked lk[32];
} inst;

static inst *inst_new(void)
{
    inst *x = calloc(1, sizeof *x);
    assert_non_null(x);
    dt_pair_problem_init(&x->p);
    x->p.a = x->A;
    x->p.b = x->B;
    x->p.edges = x->E;
    x->p.must = x->must;
    x->p.never = x->never;
    x->p.excluded = x->excl;
    x->p.requests = x->req;
    x->p.locked = x->lk;
    return x;
}

/* Lookup tables of one event, built independently of the library. */
typedef struct view {
    unsigned char edge[N][N], req[N][N], must[N][N], never[N][N], excl[N][N], lock[N][N];
    double score[N][N];
    int lock_a[N], lock_b[N];
} view;

static void view_build(const inst *x, view *v)
{
    memset(v, 0, sizeof *v);
    const dt_pair_problem *p = &x->p;
    for (size_t i = 0; i < p->n_edges; i++) {
        v->edge[p->edges[i].a][p->edges[i].b] = 1;
        v->score[p->edges[i].a][p->edges[i].b] = p->edges[i].score;
    }
    for (size_t i = 0; i < p->n_requests; i++)
        v->req[p->requests[i].a][p->requests[i].b] |= p->requests[i].who;
    for (size_t i = 0; i < p->n_must; i++)
        v->must[p->must[i].a][p->must[i].b] = 1;
    for (size_t i = 0; i < p->n_never; i++)
        v->never[p->never[i].a][p->never[i].b] = 1;
    for (size_t i = 0; i < p->n_excluded; i++)
        v->excl[p->excluded[i].a][p->excluded[i].b] = 1;
    for (size_t i = 0; i < p->n_locked; i++) {
        v->lock[p->locked[i].a][p->locked[i].b] = 1;
        v->lock_a[p->locked[i].a]++;
        v->lock_b[p->locked[i].b]++;
    }
}

static int64_t q(double x)
{
    return (int64_t)llround(x * 1e6);
}

static int64_t pair_units(const inst *x, const view *v, int a, int b)
{
    int r = v->req[a][b];
    int64_t boost = r == 3 ? q(x->p.opt.boost_both) : r ? q(x->p.opt.boost_one) : 0;
    return q(v->score[a][b]) + boost;
}

static int64_t pen_units(const inst *x, int j)
{
    return q(x->p.opt.decay_scale * (1.0 - pow(x->p.opt.decay_gamma, j)));
}

static int64_t decay_units(const inst *x, int count)
{
    int64_t s = 0;
    for (int j = 0; j < count; j++)
        s += pen_units(x, j);
    return s;
}

/* May (a, b) be chosen by the assignment (not counting locked meetings)? */
static int may_meet(const inst *x, const view *v, int a, int b)
{
    if (!(v->edge[a][b] || v->req[a][b] || v->must[a][b])) return 0;
    if (v->never[a][b] || v->excl[a][b]) return 0;
    if (x->A[a].org >= 0 && x->A[a].org == x->B[b].org) return 0;
    if (!v->req[a][b] && !v->must[a][b] && v->score[a][b] < x->p.opt.min_score) return 0;
    return 1;
}

typedef struct objective {
    int must;
    int64_t guarantee;
    int64_t value;
} objective;

static int obj_cmp(objective x, objective y)
{
    if (x.must != y.must) return x.must < y.must ? -1 : 1;
    if (x.guarantee != y.guarantee) return x.guarantee < y.guarantee ? -1 : 1;
    if (x.value != y.value) return x.value < y.value ? -1 : 1;
    return 0;
}

static void gen(inst *x, rng *r, int maxn, int with_locked)
{
    dt_pair_problem *p = &x->p;
    dt_pair_problem_init(p);
    p->a = x->A;
    p->b = x->B;
    p->edges = x->E;
    p->must = x->must;
    p->never = x->never;
    p->excluded = x->excl;
    p->requests = x->req;
    p->locked = x->lk;
    p->na = rint_in(r, 1, maxn);
    p->nb = rint_in(r, 1, maxn);
    p->slots = rint_in(r, 1, 8);
    int n_orgs = rint_in(r, 1, 6);
    for (int side = 0; side < 2; side++) {
        dt_pair_person *v = side ? x->B : x->A;
        int n = side ? p->nb : p->na;
        for (int i = 0; i < n; i++) {
            v[i].max_meetings =
                rint_in(r, 0, 3) == 0 ? rint_in(r, 0, p->slots) : p->slots - rint_in(r, 0, 1);
            if (v[i].max_meetings < 0) v[i].max_meetings = 0;
            v[i].min_meetings = rint_in(r, 0, 3) == 0 ? rint_in(r, 0, v[i].max_meetings) : 0;
            v[i].org = rint_in(r, 0, 1) ? -1 : rint_in(r, 0, n_orgs - 1);
        }
    }
    int total_cap = 0;
    for (int i = 0; i < p->na; i++)
        total_cap += x->A[i].max_meetings;
    p->tables = rint_in(r, 0, 1) ? p->na + p->nb : rint_in(r, 1, total_cap / p->slots / 2 + 2);
    double density = 0.1 + 0.6 * runit(r);
    p->n_edges = 0;
    for (int a = 0; a < p->na; a++)
        for (int b = 0; b < p->nb; b++)
            if (runit(r) < density) {
                double s = (double)rint_in(r, 0, 1000000) / 1e6;
                if (rint_in(r, 0, 19) == 0) s += 0.5;
                x->E[p->n_edges++] = (dt_pair_edge){a, b, s};
            }
    p->n_requests = (size_t)rint_in(r, 0, 12);
    for (size_t i = 0; i < p->n_requests; i++) {
        int a, b;
        if (p->n_edges && rint_in(r, 0, 2)) {
            const dt_pair_edge *e = &x->E[rint_in(r, 0, (int)p->n_edges - 1)];
            a = e->a;
            b = e->b;
        } else {
            a = rint_in(r, 0, p->na - 1);
            b = rint_in(r, 0, p->nb - 1);
        }
        x->req[i] = (dt_pair_request){a, b, rint_in(r, 1, 3)};
    }
    p->n_must = (size_t)rint_in(r, 0, 3);
    for (size_t i = 0; i < p->n_must; i++)
        x->must[i] = (dt_pair_pair){rint_in(r, 0, p->na - 1), rint_in(r, 0, p->nb - 1)};
    p->n_never = (size_t)rint_in(r, 0, 6);
    for (size_t i = 0; i < p->n_never; i++) {
        if (p->n_edges && rint_in(r, 0, 1)) {
            const dt_pair_edge *e = &x->E[rint_in(r, 0, (int)p->n_edges - 1)];
            x->never[i] = (dt_pair_pair){e->a, e->b};
        } else {
            x->never[i] = (dt_pair_pair){rint_in(r, 0, p->na - 1), rint_in(r, 0, p->nb - 1)};
        }
    }
    p->n_excluded = (size_t)rint_in(r, 0, 6);
    for (size_t i = 0; i < p->n_excluded; i++) {
        if (p->n_edges && rint_in(r, 0, 1)) {
            const dt_pair_edge *e = &x->E[rint_in(r, 0, (int)p->n_edges - 1)];
            x->excl[i] = (dt_pair_pair){e->a, e->b};
        } else {
            x->excl[i] = (dt_pair_pair){rint_in(r, 0, p->na - 1), rint_in(r, 0, p->nb - 1)};
        }
    }
    p->opt.min_score = rint_in(r, 0, 1) ? 0 : 0.5 * runit(r);
    static const double gammas[] = {1.0, 0.9, 0.7, 0.5};
    int g = rint_in(r, 0, 4);
    p->opt.decay_gamma = g < 4 ? gammas[g] : 0.3 + 0.7 * runit(r);
    static const double scales[] = {0.5, 0.2, 1.0};
    p->opt.decay_scale = scales[rint_in(r, 0, 2)];
    if (rint_in(r, 0, 1)) {
        p->opt.boost_one = (double)rint_in(r, 0, 500000) / 1e6;
        p->opt.boost_both = p->opt.boost_one + (double)rint_in(r, 0, 500000) / 1e6;
    }
    p->n_locked = 0;
    if (with_locked) {
        int want = rint_in(r, 1, 8);
        for (int tries = 0; tries < 200 && (int)p->n_locked < want; tries++) {
            int a = rint_in(r, 0, p->na - 1), b = rint_in(r, 0, p->nb - 1);
            int s = rint_in(r, 0, p->slots - 1), t = rint_in(r, 0, p->tables - 1);
            int ca = 0, cb = 0, ok = 1;
            for (size_t i = 0; i < p->n_locked && ok; i++) {
                const dt_pair_locked *l = &x->lk[i];
                if ((l->a == a && l->b == b) || (l->slot == s && l->table == t) ||
                    (l->slot == s && (l->a == a || l->b == b)))
                    ok = 0;
                ca += l->a == a;
                cb += l->b == b;
            }
            if (!ok || ca >= x->A[a].max_meetings || cb >= x->B[b].max_meetings) continue;
            x->lk[p->n_locked++] = (dt_pair_locked){a, b, s, t};
        }
    }
}

/* ---------------------------------------------------------------- validation of a result */

#define CHECK(cond, id, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_message("event %d: ", id);                                                       \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

/* Checks everything a result must satisfy and returns its objective recomputed from its meetings.
 */
static objective validate(const inst *x, const dt_pair_result *r, int id)
{
    const dt_pair_problem *p = &x->p;
    view *v = malloc(sizeof *v);
    assert_non_null(v);
    view_build(x, v);
    int T = p->slots;
    unsigned char in_slot_a[N][8], in_slot_b[N][8];
    unsigned char *table_used = calloc((size_t)T * (size_t)p->tables, 1);
    unsigned char met[N][N];
    int cnt_a[N] = {0}, cnt_b[N] = {0}, per_slot[8] = {0};
    assert_non_null(table_used);
    assert_true(T <= 8);
    memset(in_slot_a, 0, sizeof in_slot_a);
    memset(in_slot_b, 0, sizeof in_slot_b);
    memset(met, 0, sizeof met);
    objective o = {0, 0, 0};
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_pair_meeting *m = &r->meetings[k];
        CHECK(m->a >= 0 && m->a < p->na && m->b >= 0 && m->b < p->nb, id,
              "meeting %zu out of range", k);
        CHECK(m->slot >= 0 && m->slot < T, id, "meeting %zu slot %d", k, m->slot);
        CHECK(m->table >= 0 && m->table < p->tables, id, "meeting %zu table %d", k, m->table);
        CHECK(!met[m->a][m->b], id, "pair %d-%d meets twice", m->a, m->b);
        met[m->a][m->b] = 1;
        CHECK(!in_slot_a[m->a][m->slot], id, "SME %d twice in slot %d", m->a, m->slot);
        CHECK(!in_slot_b[m->b][m->slot], id, "holder %d twice in slot %d", m->b, m->slot);
        in_slot_a[m->a][m->slot] = in_slot_b[m->b][m->slot] = 1;
        size_t ti = (size_t)m->slot * (size_t)p->tables + (size_t)m->table;
        CHECK(!table_used[ti], id, "slot %d table %d used twice", m->slot, m->table);
        table_used[ti] = 1;
        CHECK(v->lock[m->a][m->b] || may_meet(x, v, m->a, m->b), id, "pair %d-%d may not meet",
              m->a, m->b);
        CHECK(!!(m->flags & DT_PAIR_M_LOCKED) == !!v->lock[m->a][m->b], id, "locked flag of %d-%d",
              m->a, m->b);
        CHECK(!!(m->flags & DT_PAIR_M_MUST) == !!v->must[m->a][m->b], id, "must flag");
        CHECK(fabs(m->score - v->score[m->a][m->b]) == 0, id, "score of %d-%d", m->a, m->b);
        CHECK(q(m->value) == pair_units(x, v, m->a, m->b), id, "value of %d-%d", m->a, m->b);
        if (k > 0) {
            const dt_pair_meeting *pm = &r->meetings[k - 1];
            CHECK(pm->slot < m->slot || (pm->slot == m->slot && pm->table < m->table), id,
                  "meetings not sorted by slot, table");
        }
        cnt_a[m->a]++;
        cnt_b[m->b]++;
        per_slot[m->slot]++;
        o.must += v->must[m->a][m->b];
        o.value += pair_units(x, v, m->a, m->b);
    }
    for (size_t i = 0; i < p->n_locked; i++) {
        const dt_pair_locked *l = &p->locked[i];
        int found = 0;
        for (size_t k = 0; k < r->n_meetings; k++)
            if (r->meetings[k].a == l->a && r->meetings[k].b == l->b)
                found = r->meetings[k].slot == l->slot && r->meetings[k].table == l->table;
        CHECK(found, id, "locked[%zu] moved or dropped", i);
    }
    for (int side = 0; side < 2; side++) {
        int n = side ? p->nb : p->na;
        const dt_pair_person *pp = side ? x->B : x->A;
        const int *cnt = side ? cnt_b : cnt_a;
        const dt_pair_count *rc = side ? r->count_b : r->count_a;
        for (int i = 0; i < n; i++) {
            CHECK(cnt[i] <= pp[i].max_meetings, id, "side %d #%d over its max", side, i);
            CHECK(rc[i].count == cnt[i] && rc[i].max == pp[i].max_meetings, id, "count of %d/%d",
                  side, i);
            CHECK((rc[i].reasons != 0) == (cnt[i] < pp[i].max_meetings), id,
                  "reasons of side %d #%d: %#x with %d of %d", side, i, rc[i].reasons, cnt[i],
                  pp[i].max_meetings);
            o.guarantee += cnt[i] < pp[i].min_meetings ? cnt[i] : pp[i].min_meetings;
            o.value -= decay_units(x, cnt[i]);
        }
    }
    if (p->n_locked == 0) {
        CHECK(r->n_unscheduled == 0, id, "%zu meetings unscheduled with nothing locked",
              r->n_unscheduled);
        int lo = per_slot[0], hi = per_slot[0];
        for (int t = 1; t < T; t++) {
            lo = per_slot[t] < lo ? per_slot[t] : lo;
            hi = per_slot[t] > hi ? per_slot[t] : hi;
        }
        CHECK(hi - lo <= 1, id, "slot sizes range %d..%d", lo, hi);
    }
    CHECK(r->total_value_units == o.value, id, "total value %lld, recomputed %lld",
          (long long)r->total_value_units, (long long)o.value);
    CHECK(fabs(r->total_value - (double)o.value / 1e6) < 1e-6, id, "total_value");
    CHECK(r->n_must_met == o.must, id, "must met %d, recomputed %d", r->n_must_met, o.must);
    CHECK(r->n_guarantee_units == o.guarantee, id, "guarantee units");
    /* unmet items: every guarantee shortfall and every must pair not met is listed once */
    size_t want_unmet = r->n_unscheduled;
    for (int i = 0; i < p->na; i++)
        want_unmet += cnt_a[i] < x->A[i].min_meetings;
    for (int i = 0; i < p->nb; i++)
        want_unmet += cnt_b[i] < x->B[i].min_meetings;
    unsigned char seen[N][N];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < p->n_must; i++) {
        int a = p->must[i].a, b = p->must[i].b;
        if (!met[a][b] && !seen[a][b]) want_unmet++;
        seen[a][b] = 1;
    }
    CHECK(r->n_unmet == want_unmet, id, "%zu unmet items, expected %zu", r->n_unmet, want_unmet);
    for (size_t i = 0; i < r->n_unmet; i++)
        CHECK(r->unmet[i].reasons != 0, id, "unmet item %zu has no reason", i);
    free(table_used);
    free(v);
    return o;
}

/* ---------------------------------------------------------------- exact schedule search */

typedef struct slot_search {
    int n, T, tables;
    int a[N * 8], b[N * 8], fixed_slot[N * 8];
    unsigned char busy_a[N][8], busy_b[N][8];
    int per_slot[8];
    long budget;
} slot_search;

static int slot_rec(slot_search *ss, int k)
{
    if (k == ss->n) return 1;
    if (--ss->budget < 0) return -1;
    if (ss->fixed_slot[k] >= 0) return slot_rec(ss, k + 1);
    for (int t = 0; t < ss->T; t++) {
        if (ss->busy_a[ss->a[k]][t] || ss->busy_b[ss->b[k]][t] || ss->per_slot[t] >= ss->tables)
            continue;
        ss->busy_a[ss->a[k]][t] = ss->busy_b[ss->b[k]][t] = 1;
        ss->per_slot[t]++;
        int r = slot_rec(ss, k + 1);
        ss->busy_a[ss->a[k]][t] = ss->busy_b[ss->b[k]][t] = 0;
        ss->per_slot[t]--;
        if (r) return r;
    }
    return 0;
}

/* Could every meeting the assignment chose (scheduled or not) be given a slot around the locked
 * ones? 1 yes, 0 no, -1 search budget exhausted. */
static int schedulable(const inst *x, const dt_pair_result *r)
{
    slot_search *ss = calloc(1, sizeof *ss);
    assert_non_null(ss);
    ss->T = x->p.slots;
    ss->tables = x->p.tables;
    ss->budget = 5000000;
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_pair_meeting *m = &r->meetings[k];
        int fixed = (m->flags & DT_PAIR_M_LOCKED) != 0;
        ss->a[ss->n] = m->a;
        ss->b[ss->n] = m->b;
        ss->fixed_slot[ss->n++] = fixed ? m->slot : -1;
        if (fixed) {
            ss->busy_a[m->a][m->slot] = ss->busy_b[m->b][m->slot] = 1;
            ss->per_slot[m->slot]++;
        }
    }
    for (size_t i = 0; i < r->n_unmet; i++)
        if (r->unmet[i].kind == DT_PAIR_UNMET_UNSCHEDULED) {
            ss->a[ss->n] = r->unmet[i].a;
            ss->b[ss->n] = r->unmet[i].b;
            ss->fixed_slot[ss->n++] = -1;
        }
    int res = slot_rec(ss, 0);
    free(ss);
    return res;
}

/* ---------------------------------------------------------------- exhaustive reference */

/* Best objective over every subset of the pairs that may meet; -1 when there are too many. */
static int brute_force(const inst *x, objective *best)
{
    const dt_pair_problem *p = &x->p;
    view *v = malloc(sizeof *v);
    assert_non_null(v);
    view_build(x, v);
    int fa[14], fb[14], nf = 0;
    int64_t dec[DT_PAIR_SLOTS_MAX + 1];
    for (int c = 0; c <= p->slots; c++)
        dec[c] = decay_units(x, c);
    for (int a = 0; a < p->na; a++)
        for (int b = 0; b < p->nb; b++)
            if (!v->lock[a][b] && may_meet(x, v, a, b)) {
                if (nf == 14) {
                    free(v);
                    return -1;
                }
                fa[nf] = a;
                fb[nf++] = b;
            }
    int64_t cap = (int64_t)p->tables * p->slots - (int64_t)p->n_locked;
    int found = 0;
    for (uint32_t mask = 0; mask < (1u << nf); mask++) {
        int ca[N], cb[N];
        memcpy(ca, v->lock_a, sizeof ca);
        memcpy(cb, v->lock_b, sizeof cb);
        int n = 0, ok = 1;
        for (int k = 0; k < nf; k++)
            if (mask >> k & 1) {
                n++;
                if (++ca[fa[k]] > x->A[fa[k]].max_meetings ||
                    ++cb[fb[k]] > x->B[fb[k]].max_meetings)
                    ok = 0;
            }
        if (!ok || n > cap) continue;
        objective o = {0, 0, 0};
        for (size_t i = 0; i < p->n_locked; i++) {
            o.must += v->must[p->locked[i].a][p->locked[i].b];
            o.value += pair_units(x, v, p->locked[i].a, p->locked[i].b);
        }
        for (int k = 0; k < nf; k++)
            if (mask >> k & 1) {
                o.must += v->must[fa[k]][fb[k]];
                o.value += pair_units(x, v, fa[k], fb[k]);
            }
        for (int i = 0; i < p->na; i++) {
            o.guarantee += ca[i] < x->A[i].min_meetings ? ca[i] : x->A[i].min_meetings;
            o.value -= dec[ca[i]];
        }
        for (int i = 0; i < p->nb; i++) {
            o.guarantee += cb[i] < x->B[i].min_meetings ? cb[i] : x->B[i].min_meetings;
            o.value -= dec[cb[i]];
        }
        if (!found || obj_cmp(o, *best) > 0) *best = o;
        found = 1;
    }
    free(v);
    return 0;
}

static void test_exhaustive_tiny(void **state)
{
    (void)state;
    rng r = {0x9e3779b97f4a7c15ULL};
    inst *x = inst_new();
    int compared = 0;
    for (int id = 0; compared < 400 && id < 5000; id++) {
        gen(x, &r, 5, id % 3 == 0);
        dt_pair_result *res = NULL;
        dt_err err = DT_ERR_INIT;
        int rc = dt_pair_solve(&x->p, &res, &err);
        CHECK(rc == 0, id, "solve failed: %s: %s", err.field, err.msg);
        objective got = validate(x, res, id), want;
        if (res->n_unscheduled > 0)
            CHECK(schedulable(x, res) != 1, id, "%zu meetings left out, but a schedule exists",
                  res->n_unscheduled);
        if (res->n_unscheduled == 0 && brute_force(x, &want) == 0) {
            CHECK(obj_cmp(got, want) == 0, id,
                  "objective (%d, %lld, %lld), exhaustive (%d, %lld, %lld)", got.must,
                  (long long)got.guarantee, (long long)got.value, want.must,
                  (long long)want.guarantee, (long long)want.value);
            compared++;
        }
        dt_pair_result_free(res);
    }
    assert_int_equal(compared, 400);
    free(x);
}

/* ---------------------------------------------------------------- the networkx oracle */

static void write_pairs(FILE *f, const char *name, const dt_pair_pair *v, size_t n)
{
    fprintf(f, "\"%s\":[", name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s[%d,%d]", i ? "," : "", v[i].a, v[i].b);
    fprintf(f, "],");
}

static void write_inst(FILE *f, const inst *x)
{
    const dt_pair_problem *p = &x->p;
    fprintf(f, "{\"na\":%d,\"nb\":%d,\"slots\":%d,\"tables\":%d,", p->na, p->nb, p->slots,
            p->tables);
    for (int side = 0; side < 2; side++) {
        const dt_pair_person *v = side ? x->B : x->A;
        int n = side ? p->nb : p->na;
        fprintf(f, "\"%s\":[", side ? "b" : "a");
        for (int i = 0; i < n; i++)
            fprintf(f, "%s[%d,%d,%d]", i ? "," : "", v[i].max_meetings, v[i].min_meetings,
                    v[i].org);
        fprintf(f, "],");
    }
    fprintf(f, "\"edges\":[");
    for (size_t i = 0; i < p->n_edges; i++)
        fprintf(f, "%s[%d,%d,%.17g]", i ? "," : "", p->edges[i].a, p->edges[i].b,
                p->edges[i].score);
    fprintf(f, "],\"requests\":[");
    for (size_t i = 0; i < p->n_requests; i++)
        fprintf(f, "%s[%d,%d,%d]", i ? "," : "", p->requests[i].a, p->requests[i].b,
                p->requests[i].who);
    fprintf(f, "],\"locked\":[");
    for (size_t i = 0; i < p->n_locked; i++)
        fprintf(f, "%s[%d,%d,%d,%d]", i ? "," : "", p->locked[i].a, p->locked[i].b,
                p->locked[i].slot, p->locked[i].table);
    fprintf(f, "],");
    write_pairs(f, "must", p->must, p->n_must);
    write_pairs(f, "never", p->never, p->n_never);
    write_pairs(f, "excluded", p->excluded, p->n_excluded);
    fprintf(f,
            "\"opt\":{\"min_score\":%.17g,\"boost_one\":%.17g,\"boost_both\":%.17g,\"gamma\":%.17g,"
            "\"scale\":%.17g}}",
            p->opt.min_score, p->opt.boost_one, p->opt.boost_both, p->opt.decay_gamma,
            p->opt.decay_scale);
}

static const char *oracle_path(void)
{
    static const char *const tries[] = {"tests/pair_oracle.py", "../tests/pair_oracle.py",
                                        "../../tests/pair_oracle.py",
                                        "../../../tests/pair_oracle.py"};
    static char from_root[4096];
    const char *env = getenv("DT_PAIR_ORACLE");
    if (env && access(env, R_OK) == 0) return env;
    const char *root = getenv("DOVETAIL_ROOT"); /* set by tests/run.sh */
    if (root) {
        snprintf(from_root, sizeof from_root, "%s/tests/pair_oracle.py", root);
        if (access(from_root, R_OK) == 0) return from_root;
    }
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++)
        if (access(tries[i], R_OK) == 0) return tries[i];
    return NULL;
}

/* Runs the oracle on the events in path; returns its JSON array (caller decrefs). */
static json_t *run_oracle(const char *path)
{
    const char *oracle = oracle_path();
    if (!oracle)
        fail_msg("tests/pair_oracle.py not found: run from the source tree, or set DOVETAIL_ROOT "
                 "or DT_PAIR_ORACLE");
    char cmd[8192];
    int w = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", oracle, path);
    assert_true(w > 0 && (size_t)w < sizeof cmd);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0) break;
        n += got;
    }
    buf[n] = '\0';
    int status = pclose(f);
    if (status != 0)
        fail_msg("oracle failed (status %d): needs /usr/bin/python3 with networkx "
                 "(Debian: python3-networkx)",
                 status);
    json_error_t jerr;
    json_t *out = json_loads(buf, 0, &jerr);
    free(buf);
    if (!out) fail_msg("oracle output is not JSON: %s", jerr.text);
    return out;
}

static void test_random_vs_oracle(void **state)
{
    (void)state;
    enum { COUNT = 240 };
    rng r = {0x2545f4914f6cdd1dULL};
    inst *x = inst_new();
    char path[] = "/tmp/dt_pair_oracle_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    objective *got = calloc(COUNT, sizeof *got);
    size_t *unsched = calloc(COUNT, sizeof *unsched);
    assert_non_null(got);
    assert_non_null(unsched);
    fputc('[', f);
    int n_locked_events = 0;
    for (int id = 0; id < COUNT; id++) {
        gen(x, &r, 30, id % 4 == 3);
        n_locked_events += x->p.n_locked > 0;
        dt_pair_result *res = NULL;
        dt_err err = DT_ERR_INIT;
        int rc = dt_pair_solve(&x->p, &res, &err);
        CHECK(rc == 0, id, "solve failed: %s: %s", err.field, err.msg);
        got[id] = validate(x, res, id);
        unsched[id] = res->n_unscheduled;
        if (res->n_unscheduled > 0) {
            /* a meeting is left out only when the whole chosen set truly has no schedule */
            CHECK(schedulable(x, res) != 1, id, "%zu meetings left out, but a schedule exists",
                  res->n_unscheduled);
        }
        dt_pair_result_free(res);
        if (id) fputc(',', f);
        write_inst(f, x);
    }
    fputs("]\n", f);
    assert_int_equal(fclose(f), 0);
    json_t *out = run_oracle(path);
    unlink(path);
    assert_true(json_is_array(out));
    assert_int_equal(json_array_size(out), COUNT);
    int compared = 0;
    for (int id = 0; id < COUNT; id++) {
        json_t *o = json_array_get(out, (size_t)id);
        objective want = {(int)json_integer_value(json_object_get(o, "must")),
                          json_integer_value(json_object_get(o, "guarantee")),
                          json_integer_value(json_object_get(o, "value"))};
        if (unsched[id]) continue;
        CHECK(got[id].must == want.must, id, "must met %d, oracle %d", got[id].must, want.must);
        CHECK(got[id].guarantee == want.guarantee, id, "guarantee units %lld, oracle %lld",
              (long long)got[id].guarantee, (long long)want.guarantee);
        CHECK(llabs(got[id].value - want.value) <= 1, id, "value %.6f, oracle %.6f",
              (double)got[id].value / 1e6, (double)want.value / 1e6);
        compared++;
    }
    print_message("# %d of %d events compared with the oracle (%d with locked meetings)\n",
                  compared, COUNT, n_locked_events);
    assert_true(compared >= COUNT - 5);
    json_decref(out);
    free(got);
    free(unsched);
    free(x);
}

/* ---------------------------------------------------------------- one test per rule */

/* A small event: na SMEs, nb holders, each with max meetings mx, no decay, no boosts. */
static inst *small(int na, int nb, int slots, int tables, int mx)
{
    inst *x = inst_new();
    x->p.na = na;
    x->p.nb = nb;
    x->p.slots = slots;
    x->p.tables = tables;
    x->p.opt.decay_gamma = 1.0;
    for (int i = 0; i < na; i++)
        x->A[i] = (dt_pair_person){mx, 0, -1};
    for (int i = 0; i < nb; i++)
        x->B[i] = (dt_pair_person){mx, 0, -1};
    return x;
}

static void edge(inst *x, int a, int b, double s)
{
    x->E[x->p.n_edges++] = (dt_pair_edge){a, b, s};
}

static dt_pair_result *solve_ok(const inst *x)
{
    dt_pair_result *r = NULL;
    dt_err err = DT_ERR_INIT;
    int rc = dt_pair_solve(&x->p, &r, &err);
    if (rc) fail_msg("solve failed: %s: %s", err.field, err.msg);
    validate(x, r, -1);
    return r;
}

static int meets(const dt_pair_result *r, int a, int b)
{
    for (size_t k = 0; k < r->n_meetings; k++)
        if (r->meetings[k].a == a && r->meetings[k].b == b) return 1;
    return 0;
}

static const dt_pair_unmet *find_unmet(const dt_pair_result *r, int kind, int a, int b)
{
    for (size_t i = 0; i < r->n_unmet; i++)
        if (r->unmet[i].kind == kind && r->unmet[i].a == a && r->unmet[i].b == b)
            return &r->unmet[i];
    return NULL;
}

static void test_guarantee_met(void **state)
{
    (void)state;
    /* one holder seat; SME 0 scores higher, SME 1 is guaranteed a meeting */
    inst *x = small(2, 1, 3, 5, 3);
    x->B[0].max_meetings = 1;
    edge(x, 0, 0, 0.9);
    edge(x, 1, 0, 0.5);
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 0, 0));
    dt_pair_result_free(r);
    x->A[1].min_meetings = 1;
    r = solve_ok(x);
    assert_true(meets(r, 1, 0));
    assert_false(meets(r, 0, 0));
    assert_int_equal(r->n_unmet, 0);
    assert_int_equal(r->count_a[0].reasons, DT_PAIR_R_PARTNERS_FULL);
    dt_pair_result_free(r);
    free(x);
}

static void test_guarantee_infeasible(void **state)
{
    (void)state;
    inst *x = small(4, 2, 2, 5, 2);
    x->B[0].max_meetings = 1;
    x->p.opt.min_score = 0.3;
    for (int i = 0; i < 4; i++)
        x->A[i].min_meetings = 1;
    edge(x, 0, 0, 0.8); /* SMEs 0 and 1 compete for holder 0's single seat */
    edge(x, 1, 0, 0.7);
    edge(x, 2, 1, 0.1); /* below min score */
    x->A[3].org = 7;    /* only candidate is of the same organisation */
    x->B[1].org = 7;
    edge(x, 3, 1, 0.9);
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_meetings, 1);
    const dt_pair_unmet *u = find_unmet(r, DT_PAIR_UNMET_GUARANTEE, meets(r, 0, 0) ? 1 : 0, -1);
    assert_non_null(u);
    assert_int_equal(u->side, 0);
    assert_int_equal(u->have, 0);
    assert_int_equal(u->want, 1);
    assert_int_equal(u->reasons, DT_PAIR_R_PARTNERS_FULL);
    u = find_unmet(r, DT_PAIR_UNMET_GUARANTEE, 2, -1);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_NO_CANDIDATES);
    u = find_unmet(r, DT_PAIR_UNMET_GUARANTEE, 3, -1);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_SAME_ORG);
    char buf[128];
    dt_pair_reasons_format(DT_PAIR_R_SAME_ORG | DT_PAIR_R_TABLES, buf, sizeof buf);
    assert_string_equal(buf, "same_org,tables");
    dt_pair_result_free(r);
    free(x);
}

static void test_must_meet_honoured(void **state)
{
    (void)state;
    inst *x = small(2, 2, 1, 5, 1);
    x->p.opt.min_score = 0.5;
    edge(x, 0, 0, 0.9);
    edge(x, 1, 1, 0.9);
    edge(x, 0, 1, 0.1); /* below min score, but must meet */
    x->must[x->p.n_must++] = (dt_pair_pair){0, 1};
    x->must[x->p.n_must++] = (dt_pair_pair){0, 1}; /* repeats are harmless */
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 0, 1));
    assert_int_equal(r->n_meetings, 1);
    assert_int_equal(r->n_must_met, 1);
    assert_int_equal(r->n_unmet, 0);
    dt_pair_result_free(r);
    /* a must pair that is not among the edges at all */
    x->p.n_edges = 2;
    x->must[0] = (dt_pair_pair){1, 0};
    x->p.n_must = 1;
    r = solve_ok(x);
    assert_true(meets(r, 1, 0));
    assert_true(r->meetings[0].flags & DT_PAIR_M_MUST);
    assert_true(r->meetings[0].score == 0);
    dt_pair_result_free(r);
    free(x);
}

static void test_must_meet_impossible(void **state)
{
    (void)state;
    inst *x = small(3, 4, 2, 5, 2);
    x->A[0].max_meetings = 1;
    edge(x, 0, 0, 0.5);
    x->must[x->p.n_must++] = (dt_pair_pair){0, 0};
    x->must[x->p.n_must++] = (dt_pair_pair){0, 1}; /* SME 0 has one seat for two must pairs */
    x->must[x->p.n_must++] = (dt_pair_pair){1, 2}; /* never-meet */
    x->never[x->p.n_never++] = (dt_pair_pair){1, 2};
    x->must[x->p.n_must++] = (dt_pair_pair){2, 3}; /* same organisation */
    x->A[2].org = 4;
    x->B[3].org = 4;
    x->must[x->p.n_must++] = (dt_pair_pair){1, 3}; /* met before */
    x->excl[x->p.n_excluded++] = (dt_pair_pair){1, 3};
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_must_met, 1);
    const dt_pair_unmet *u = find_unmet(r, DT_PAIR_UNMET_MUST, 0, meets(r, 0, 0) ? 1 : 0);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_A_FULL);
    u = find_unmet(r, DT_PAIR_UNMET_MUST, 1, 2);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_NEVER_MEET);
    u = find_unmet(r, DT_PAIR_UNMET_MUST, 2, 3);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_SAME_ORG);
    u = find_unmet(r, DT_PAIR_UNMET_MUST, 1, 3);
    assert_non_null(u);
    assert_int_equal(u->reasons, DT_PAIR_R_EXCLUDED);
    assert_int_equal(r->n_unmet, 4);
    dt_pair_result_free(r);
    free(x);
}

static void test_never_meet(void **state)
{
    (void)state;
    inst *x = small(1, 2, 1, 5, 1);
    edge(x, 0, 0, 0.9);
    edge(x, 0, 1, 0.4);
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 0, 0));
    dt_pair_result_free(r);
    x->never[x->p.n_never++] = (dt_pair_pair){0, 0};
    r = solve_ok(x);
    assert_true(meets(r, 0, 1));
    assert_false(meets(r, 0, 0));
    assert_int_equal(r->count_b[0].reasons, DT_PAIR_R_NEVER_MEET);
    dt_pair_result_free(r);
    free(x);
}

static void test_same_org(void **state)
{
    (void)state;
    inst *x = small(2, 2, 2, 5, 2);
    edge(x, 0, 0, 0.9);
    edge(x, 0, 1, 0.3);
    edge(x, 1, 0, 0.8);
    x->A[0].org = 3;
    x->B[0].org = 3;
    x->A[1].org = -1; /* -1 never matches, even another -1 */
    x->B[1].org = -1;
    edge(x, 1, 1, 0.2);
    dt_pair_result *r = solve_ok(x);
    assert_false(meets(r, 0, 0));
    assert_true(meets(r, 0, 1));
    assert_true(meets(r, 1, 0));
    assert_true(meets(r, 1, 1));
    dt_pair_result_free(r);
    free(x);
}

static void test_excluded(void **state)
{
    (void)state;
    inst *x = small(2, 1, 1, 5, 1);
    edge(x, 0, 0, 0.9);
    edge(x, 1, 0, 0.2);
    x->excl[x->p.n_excluded++] = (dt_pair_pair){0, 0};
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 1, 0));
    assert_int_equal(r->count_a[0].reasons, DT_PAIR_R_EXCLUDED);
    dt_pair_result_free(r);
    free(x);
}

static void test_requests(void **state)
{
    (void)state;
    /* one holder seat: SME 1 scores 0.6, SME 0 scores 0.5 */
    inst *x = small(2, 1, 1, 5, 1);
    edge(x, 0, 0, 0.5);
    edge(x, 1, 0, 0.6);
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 1, 0));
    dt_pair_result_free(r);
    x->req[x->p.n_requests++] = (dt_pair_request){0, 0, DT_PAIR_REQ_A}; /* 0.5 + 0.2 > 0.6 */
    r = solve_ok(x);
    assert_true(meets(r, 0, 0));
    assert_true(r->meetings[0].flags & DT_PAIR_M_REQ_A);
    assert_true(fabs(r->meetings[0].value - 0.7) < 1e-9);
    dt_pair_result_free(r);
    /* one-sided 0.6 + 0.2 = 0.8 loses to both-sided 0.5 + 0.4 = 0.9; two requests combine */
    x->req[x->p.n_requests++] = (dt_pair_request){1, 0, DT_PAIR_REQ_B};
    x->req[x->p.n_requests++] = (dt_pair_request){0, 0, DT_PAIR_REQ_B};
    r = solve_ok(x);
    assert_true(meets(r, 0, 0));
    assert_int_equal(r->meetings[0].flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B),
                     DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B);
    assert_true(fabs(r->total_value - 0.9) < 1e-9);
    dt_pair_result_free(r);
    /* a request below min score, or for a pair with no edge, is still a candidate */
    x->p.n_requests = 0;
    x->p.opt.min_score = 0.7;
    r = solve_ok(x);
    assert_int_equal(r->n_meetings, 0);
    assert_int_equal(r->count_a[0].reasons, DT_PAIR_R_NO_CANDIDATES);
    dt_pair_result_free(r);
    x->req[x->p.n_requests++] = (dt_pair_request){0, 0, DT_PAIR_REQ_BOTH};
    r = solve_ok(x);
    assert_true(meets(r, 0, 0));
    dt_pair_result_free(r);
    free(x);
}

static void test_min_score(void **state)
{
    (void)state;
    inst *x = small(3, 3, 3, 9, 3);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            edge(x, a, b, 0.1 * (a + b + 1));
    x->p.opt.min_score = 0.3;
    dt_pair_result *r = solve_ok(x);
    for (size_t k = 0; k < r->n_meetings; k++)
        assert_true(r->meetings[k].score >= 0.3);
    assert_int_equal(r->n_meetings, 6); /* a + b >= 2 */
    assert_int_equal(r->count_a[0].reasons, DT_PAIR_R_NO_CANDIDATES);
    dt_pair_result_free(r);
    free(x);
}

static void test_tables_binding(void **state)
{
    (void)state;
    /* 5 x 5, everyone could meet twice (10 meetings), but 2 slots x 3 tables = 6 */
    inst *x = small(5, 5, 2, 3, 2);
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++)
            edge(x, a, b, (double)((a * 7 + b * 3) % 11 + 1) / 16);
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_meetings, 6);
    /* the best 6 pairs within the limits, by exhaustive search over all 6-subsets of the 25 */
    int best = 0;
    {
        int pa[25], pb[25], n = 0;
        int64_t val[25];
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++) {
                pa[n] = a;
                pb[n] = b;
                val[n++] = q((double)((a * 7 + b * 3) % 11 + 1) / 16);
            }
        for (uint32_t mask = 0; mask < (1u << 25); mask += 1) {
            if (__builtin_popcount(mask) != 6) continue;
            int ca[5] = {0}, cb[5] = {0}, ok = 1;
            int64_t s = 0;
            for (int k = 0; k < 25 && ok; k++)
                if (mask >> k & 1) {
                    if (++ca[pa[k]] > 2 || ++cb[pb[k]] > 2) ok = 0;
                    s += val[k];
                }
            if (ok && s > best) best = (int)s;
        }
    }
    assert_int_equal(r->total_value_units, best);
    for (int a = 0; a < 5; a++)
        if (r->count_a[a].count < 2) assert_true(r->count_a[a].reasons & DT_PAIR_R_TABLES);
    dt_pair_result_free(r);
    free(x);
}

static void test_decay(void **state)
{
    (void)state;
    /* room for 2 meetings: SME 0 could take 1.0 and 0.95, SME 1 has 0.9 */
    inst *x = small(2, 3, 2, 1, 2);
    edge(x, 0, 0, 1.0);
    edge(x, 0, 1, 0.95);
    edge(x, 1, 2, 0.9);
    dt_pair_result *r = solve_ok(x);
    assert_true(meets(r, 0, 0) && meets(r, 0, 1));
    dt_pair_result_free(r);
    x->p.opt.decay_gamma = 0.5; /* the second meeting of SME 0 now costs 0.25 */
    x->p.opt.decay_scale = 0.5;
    r = solve_ok(x);
    assert_true(meets(r, 0, 0) && meets(r, 1, 2));
    assert_true(fabs(r->total_value - 1.9) < 1e-9);
    dt_pair_result_free(r);
    /* a meeting worth less than its decay charge is not made */
    x->p.tables = 5;
    x->E[1].score = 0.3;
    x->p.opt.decay_gamma = 0.1; /* second meeting of SME 0: 0.3 - 0.45 < 0 */
    r = solve_ok(x);
    assert_false(meets(r, 0, 1));
    assert_true(r->count_a[0].reasons & DT_PAIR_R_LOW_VALUE);
    dt_pair_result_free(r);
    free(x);
}

static void test_locked_resolve(void **state)
{
    (void)state;
    rng rg = {12345};
    inst *x = small(12, 12, 4, 10, 4);
    for (int a = 0; a < 12; a++)
        for (int b = 0; b < 12; b++)
            if (rint_in(&rg, 0, 2) == 0) edge(x, a, b, (double)rint_in(&rg, 0, 1000) / 1000);
    x->p.opt.decay_gamma = 0.8;
    dt_pair_result *r1 = solve_ok(x);
    assert_true(r1->n_meetings > 10);
    /* lock every other meeting where it is, change every score, solve again */
    for (size_t k = 0; k < r1->n_meetings; k += 2) {
        const dt_pair_meeting *m = &r1->meetings[k];
        x->lk[x->p.n_locked++] = (dt_pair_locked){m->a, m->b, m->slot, m->table};
        if (x->p.n_locked == 32) break;
    }
    for (size_t i = 0; i < x->p.n_edges; i++)
        x->E[i].score = (double)rint_in(&rg, 0, 1000) / 1000;
    dt_pair_result *r2 = solve_ok(x); /* validate() checks each locked meeting kept its place */
    assert_int_equal(r2->n_unscheduled, 0);
    size_t n_locked = 0;
    for (size_t k = 0; k < r2->n_meetings; k++)
        n_locked += (r2->meetings[k].flags & DT_PAIR_M_LOCKED) != 0;
    assert_int_equal(n_locked, x->p.n_locked);
    /* the first solution is still feasible, so the new one is at least as good under new scores */
    view *v = malloc(sizeof *v);
    assert_non_null(v);
    view_build(x, v);
    int64_t old = 0;
    for (size_t k = 0; k < r1->n_meetings; k++)
        old += pair_units(x, v, r1->meetings[k].a, r1->meetings[k].b);
    for (int i = 0; i < 12; i++)
        old -= decay_units(x, r1->count_a[i].count) + decay_units(x, r1->count_b[i].count);
    assert_true(r2->total_value_units >= old);
    /* the unlocked part was re-solved: it differs from the first solution */
    int changed = 0;
    for (size_t k = 0; k < r2->n_meetings; k++)
        if (!(r2->meetings[k].flags & DT_PAIR_M_LOCKED) &&
            !meets(r1, r2->meetings[k].a, r2->meetings[k].b))
            changed = 1;
    assert_true(changed);
    free(v);
    dt_pair_result_free(r1);
    dt_pair_result_free(r2);
    free(x);
}

static void test_unschedulable(void **state)
{
    (void)state;
    /* SME 0 is locked in slot 0, holder 0 in slot 1: with 2 slots, 0-0 fits nowhere */
    inst *x = small(2, 2, 2, 2, 2);
    edge(x, 0, 0, 0.9);
    x->lk[x->p.n_locked++] = (dt_pair_locked){0, 1, 0, 0};
    x->lk[x->p.n_locked++] = (dt_pair_locked){1, 0, 1, 1};
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_meetings, 2);
    assert_int_equal(r->n_unscheduled, 1);
    const dt_pair_unmet *u = find_unmet(r, DT_PAIR_UNMET_UNSCHEDULED, 0, 0);
    assert_non_null(u);
    assert_true(r->count_a[0].reasons & DT_PAIR_R_UNSCHEDULED);
    dt_pair_result_free(r);
    /* with a third slot it fits */
    x->p.slots = 3;
    x->A[0].max_meetings = x->B[0].max_meetings = 3;
    r = solve_ok(x);
    assert_int_equal(r->n_meetings, 3);
    assert_int_equal(r->n_unscheduled, 0);
    dt_pair_result_free(r);
    free(x);
}

static void test_locked_needs_search(void **state)
{
    (void)state;
    /* Six locked meetings fill slots 1 and 3 and one table of slots 0 and 4; four more meetings fit
     * only as 1-3 in slot 0, 0-3 in slot 4, 3-3 and 1-0 in slot 2. Colouring them in value order
     * fills slot 0 with 1-0 and strands 1-3; a schedule for all of them exists and must be found.
     */
    inst *x = small(4, 5, 5, 2, 5);
    static const dt_pair_locked lk[] = {{0, 0, 3, 1}, {2, 3, 3, 0}, {3, 0, 1, 1},
                                        {0, 2, 0, 0}, {2, 4, 4, 1}, {2, 1, 1, 0}};
    memcpy(x->lk, lk, sizeof lk);
    x->p.n_locked = 6;
    edge(x, 3, 3, 0.754);
    edge(x, 0, 3, 0.6475);
    edge(x, 1, 0, 0.515);
    edge(x, 1, 3, 0.4);
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_unscheduled, 0);
    assert_int_equal(r->n_meetings, 10);
    assert_int_equal(schedulable(x, r), 1);
    dt_pair_result_free(r);
    free(x);
}

static void test_equitable_large(void **state)
{
    (void)state;
    /* every participant at full degree T: the schedule is a proper T-edge-colouring */
    inst *x = small(30, 30, 7, 1000, 7);
    for (int a = 0; a < 30; a++)
        for (int k = 0; k < 7; k++)
            edge(x, a, (a + k * 4) % 30, 0.5 + 0.01 * k);
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_meetings, 210);
    dt_pair_result_free(r);
    free(x);
}

static void expect_error(const inst *x, const char *field, const char *msg_part)
{
    dt_pair_result *r = NULL;
    dt_err err = DT_ERR_INIT;
    int rc = dt_pair_solve(&x->p, &r, &err);
    assert_int_equal(rc, -DT_EINVAL);
    assert_null(r);
    assert_string_equal(err.field, field);
    if (msg_part && !strstr(err.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

static void test_bad_input(void **state)
{
    (void)state;
    inst *x = small(2, 2, 2, 2, 2);
    edge(x, 0, 0, 0.5);
    edge(x, 1, 1, 0.5);
    edge(x, 0, 0, 0.7);
    expect_error(x, "edges[2]", "edges[0]");
    x->E[2] = (dt_pair_edge){0, 2, 0.5};
    expect_error(x, "edges[2]", "holder index 2");
    x->E[2] = (dt_pair_edge){-1, 0, 0.5};
    expect_error(x, "edges[2]", "SME index -1");
    x->E[2] = (dt_pair_edge){1, 0, NAN};
    expect_error(x, "edges[2]", "score");
    x->E[2] = (dt_pair_edge){1, 0, -0.1};
    expect_error(x, "edges[2]", "score");
    x->E[2] = (dt_pair_edge){1, 0, 0.1};
    x->p.slots = 0;
    expect_error(x, "slots", NULL);
    x->p.slots = 2;
    x->p.tables = 0;
    expect_error(x, "tables", NULL);
    x->p.tables = 2;
    x->A[1].max_meetings = 3;
    expect_error(x, "a[1]", "max_meetings");
    x->A[1].max_meetings = 2;
    x->B[0].min_meetings = 3;
    expect_error(x, "b[0]", "min_meetings");
    x->B[0].min_meetings = 0;
    x->lk[x->p.n_locked++] = (dt_pair_locked){0, 0, 2, 0};
    expect_error(x, "locked[0]", "slot 2");
    x->lk[0] = (dt_pair_locked){0, 0, 1, 2};
    expect_error(x, "locked[0]", "table 2");
    x->lk[0] = (dt_pair_locked){0, 0, 1, 1};
    x->lk[x->p.n_locked++] = (dt_pair_locked){1, 1, 1, 1};
    expect_error(x, "locked[1]", "table 1");
    x->lk[1] = (dt_pair_locked){0, 1, 1, 0};
    expect_error(x, "locked[1]", "SME 0 in slot 1");
    x->lk[1] = (dt_pair_locked){1, 0, 1, 0};
    expect_error(x, "locked[1]", "holder 0 in slot 1");
    x->lk[1] = (dt_pair_locked){0, 0, 0, 0};
    expect_error(x, "locked[1]", "locked[0]");
    x->p.n_locked = 0;
    x->req[x->p.n_requests++] = (dt_pair_request){0, 1, 4};
    expect_error(x, "requests[0]", "who");
    x->p.n_requests = 0;
    x->never[x->p.n_never++] = (dt_pair_pair){5, 0};
    expect_error(x, "never[0]", "SME index 5");
    x->p.n_never = 0;
    x->p.opt.decay_gamma = 0;
    expect_error(x, "opt.decay_gamma", NULL);
    x->p.opt.decay_gamma = 1;
    x->p.opt.min_score = NAN;
    expect_error(x, "opt.min_score", NULL);
    x->p.opt.min_score = 0;
    dt_pair_result *r = solve_ok(x);
    dt_pair_result_free(r);
    dt_pair_result_free(NULL);
    free(x);
}

static void test_empty(void **state)
{
    (void)state;
    inst *x = small(0, 0, 1, 1, 0);
    dt_pair_result *r = solve_ok(x);
    assert_int_equal(r->n_meetings, 0);
    assert_int_equal(r->total_value_units, 0);
    dt_pair_result_free(r);
    x->p.na = 3;
    x->p.nb = 0;
    x->A[0].min_meetings = 0;
    r = solve_ok(x);
    assert_int_equal(r->count_a[0].reasons, 0); /* max 0: nothing missing */
    dt_pair_result_free(r);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exhaustive_tiny),
        cmocka_unit_test(test_random_vs_oracle),
        cmocka_unit_test(test_guarantee_met),
        cmocka_unit_test(test_guarantee_infeasible),
        cmocka_unit_test(test_must_meet_honoured),
        cmocka_unit_test(test_must_meet_impossible),
        cmocka_unit_test(test_never_meet),
        cmocka_unit_test(test_same_org),
        cmocka_unit_test(test_excluded),
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_min_score),
        cmocka_unit_test(test_tables_binding),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_locked_resolve),
        cmocka_unit_test(test_unschedulable),
        cmocka_unit_test(test_locked_needs_search),
        cmocka_unit_test(test_equitable_large),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
