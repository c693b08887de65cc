/* pair.c - Deep Dive event pairing: exact assignment as min-cost flow, then a balanced schedule.
 *
 * What it is: validation of a dt_pair_problem, the flow network (source -> SME -> holder -> sink
 * with parallel unit arcs for decay and guarantees), successive shortest paths with Johnson
 * potentials on a lexicographic cost, a Kempe-chain edge colouring for slots, de Werra balancing,
 * table numbering, and the per-participant explanations. What it is not: a matcher (scores come
 * in), a store of records, or a printer of agendas.
 *
 * Cost of the flow network: cost3 {t0, t1, v} compared lexicographically. t0 counts must-meet pairs
 * (-1 per forced arc), t1 guaranteed units (-1 per guaranteed arc), v is -value in fixed point plus
 * decay charges. A lexicographic cost is an ordered group, so Dijkstra with potentials is exact on
 * it, and it equals a big-M objective with M larger than anything the lower tiers can add.
 * Only profitable flow is pushed: augmenting stops at the first shortest path of cost >= 0, which
 * is optimal over every flow amount because successive shortest path costs never decrease.
 * Each round is one Dijkstra stopped when the sink is settled; arcs are stored grouped by tail with
 * those that have residual capacity in front, so a round scans only usable arcs.
 */
#include "pair.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- lexicographic costs */

typedef struct cost3 {
    int64_t t0, t1, v;
} cost3;

static inline int c3_cmp(cost3 x, cost3 y)
{
    if (x.t0 != y.t0) return x.t0 < y.t0 ? -1 : 1;
    if (x.t1 != y.t1) return x.t1 < y.t1 ? -1 : 1;
    if (x.v != y.v) return x.v < y.v ? -1 : 1;
    return 0;
}

static inline cost3 c3_add(cost3 x, cost3 y)
{
    return (cost3){x.t0 + y.t0, x.t1 + y.t1, x.v + y.v};
}

static inline cost3 c3_sub(cost3 x, cost3 y)
{
    return (cost3){x.t0 - y.t0, x.t1 - y.t1, x.v - y.v};
}

static const cost3 C3_ZERO = {0, 0, 0};

static int64_t quantise(double x)
{
    return (int64_t)llround(x * DT_PAIR_SCALE);
}

/* ---------------------------------------------------------------- candidate pairs */

/* Where a pair came from (a bit each). */
enum {
    C_EDGE = 1u << 0,
    C_REQ_A = 1u << 1,
    C_REQ_B = 1u << 2,
    C_MUST = 1u << 3,
    C_LOCKED = 1u << 4,
    C_NEVER = 1u << 5,
    C_EXCL = 1u << 6
};
#define C_CANDIDATE (C_EDGE | C_REQ_A | C_REQ_B | C_MUST | C_LOCKED)

/* Outcome of a candidate. */
enum { OUT_NONE = 0, OUT_CHOSEN = 1, OUT_UNSCHEDULED = 2 };

typedef struct cand {
    int a, b;
    double score;
    int64_t value;    /* fixed point, score + boost */
    unsigned src;     /* C_* */
    unsigned blocked; /* DT_PAIR_R_NEVER_MEET | _SAME_ORG | _EXCLUDED */
    size_t edge_idx;  /* index in p->edges when C_EDGE */
    size_t lock_idx;  /* index in p->locked when C_LOCKED */
    bool flow;        /* its SME -> holder arc carries flow: the assignment chose the pair */
    int outcome;      /* OUT_* */
    bool below_min;
    bool reported;
} cand;

/* Open addressing map (a, b) -> cand index. Key 0 is empty. */
typedef struct pairmap {
    uint64_t *keys;
    int *vals;
    size_t mask;
} pairmap;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t pair_key(int a, int b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)b;
}

/* The slot of (a, b): either holding its key or empty. */
static size_t pairmap_slot(const pairmap *m, uint64_t key)
{
    size_t i = (size_t)mix64(key) & m->mask;
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & m->mask;
    return i;
}

/* ---------------------------------------------------------------- the solver's state */

typedef struct arcs {
    int *head; /* per arc */
    int *cap;  /* residual capacity per arc; arc ^ 1 is its reverse */
    cost3 *cost;
    int n, max;
} arcs;

/* An arc of the residual network, stored grouped by tail (CSR order); rev is its reverse. */
typedef struct arc {
    int64_t v; /* cost, value tier */
    int head, cap, rev;
    int8_t t0, t1; /* cost, must-meet and guarantee tiers: -1, 0 or 1 */
} arc;

static inline cost3 arc_cost(const arc *e)
{
    return (cost3){e->t0, e->t1, e->v};
}

typedef struct heap_ent {
    cost3 d;
    int v;
} heap_ent;

typedef struct solver {
    const dt_pair_problem *p;
    int na, nb, T;
    int64_t capacity; /* tables x slots */
    int64_t *pen;     /* decay charge of the j-th meeting, j < T */

    cand *cands;
    size_t n_cands;
    pairmap map;

    int *lock_a, *lock_b; /* locked meetings per participant */
    int n_locked_total;

    /* flow network */
    int n_nodes;
    arcs g;         /* arcs as built, e and e ^ 1 paired; freed once net is made */
    arc *net;       /* the same arcs grouped by tail */
    int *adj_start; /* arcs of node v: net[adj_start[v] .. adj_start[v + 1]) */
    int *live_end;  /* arcs of v with capacity: net[adj_start[v] .. live_end[v]) */
    cost3 *pot, *dist;
    int *prev_arc, *seen, *done;
    heap_ent *heap;
    size_t heap_n, heap_max;
    size_t n_paths;

    /* meetings per participant: chosen by the assignment (asg_*), and kept by the schedule (cnt_*);
     * they differ only by meetings that could not be scheduled */
    int *cnt_a, *cnt_b, *asg_a, *asg_b;
    int64_t assigned;
} solver;

static void solver_free(solver *s)
{
    free(s->pen);
    free(s->cands);
    free(s->map.keys);
    free(s->map.vals);
    free(s->lock_a);
    free(s->lock_b);
    free(s->g.head);
    free(s->g.cap);
    free(s->g.cost);
    free(s->adj_start);
    free(s->live_end);
    free(s->net);
    free(s->pot);
    free(s->dist);
    free(s->prev_arc);
    free(s->seen);
    free(s->done);
    free(s->heap);
    free(s->cnt_a);
    free(s->cnt_b);
    free(s->asg_a);
    free(s->asg_b);
}

static int nomem(dt_err *err)
{
    return dt_err_set(err, DT_ENOMEM, "pair", "out of memory while solving the event");
}

/* Returns the cand index for (a, b), adding an empty cand when absent. */
static int cand_get(solver *s, int a, int b)
{
    uint64_t key = pair_key(a, b);
    size_t i = pairmap_slot(&s->map, key);
    if (s->map.keys[i] == key) return s->map.vals[i];
    int c = (int)s->n_cands++;
    s->map.keys[i] = key;
    s->map.vals[i] = c;
    cand *x = &s->cands[c];
    memset(x, 0, sizeof *x);
    x->a = a;
    x->b = b;
    return c;
}

static int cand_find(const solver *s, int a, int b)
{
    uint64_t key = pair_key(a, b);
    size_t i = pairmap_slot(&s->map, key);
    return s->map.keys[i] == key ? s->map.vals[i] : -1;
}

/* ---------------------------------------------------------------- validation */

static int check_options(const dt_pair_options *o, dt_err *err)
{
    if (!isfinite(o->min_score))
        return dt_err_set(err, DT_EINVAL, "opt.min_score", "min_score must be a finite number");
    if (!isfinite(o->boost_one) || o->boost_one < 0 || o->boost_one > DT_PAIR_VALUE_MAX)
        return dt_err_set(err, DT_EINVAL, "opt.boost_one", "boost_one must be finite, 0..%g",
                          DT_PAIR_VALUE_MAX);
    if (!isfinite(o->boost_both) || o->boost_both < 0 || o->boost_both > DT_PAIR_VALUE_MAX)
        return dt_err_set(err, DT_EINVAL, "opt.boost_both", "boost_both must be finite, 0..%g",
                          DT_PAIR_VALUE_MAX);
    if (!(o->decay_gamma > 0 && o->decay_gamma <= 1))
        return dt_err_set(err, DT_EINVAL, "opt.decay_gamma",
                          "decay_gamma must be in (0, 1] (1 turns decay off), got %g",
                          o->decay_gamma);
    if (!isfinite(o->decay_scale) || o->decay_scale < 0 || o->decay_scale > DT_PAIR_VALUE_MAX)
        return dt_err_set(err, DT_EINVAL, "opt.decay_scale", "decay_scale must be finite, 0..%g",
                          DT_PAIR_VALUE_MAX);
    return 0;
}

static int check_people(const dt_pair_person *v, int n, int T, char side, dt_err *err)
{
    const char *name = side == 'a' ? "a" : "b";
    for (int i = 0; i < n; i++) {
        char field[64];
        snprintf(field, sizeof field, "%s[%d]", name, i);
        if (v[i].max_meetings < 0 || v[i].max_meetings > T)
            return dt_err_set(err, DT_EINVAL, field,
                              "max_meetings %d is outside 0..%d (the number of slots)",
                              v[i].max_meetings, T);
        if (v[i].min_meetings < 0 || v[i].min_meetings > v[i].max_meetings)
            return dt_err_set(err, DT_EINVAL, field,
                              "min_meetings %d is outside 0..max_meetings (%d)", v[i].min_meetings,
                              v[i].max_meetings);
        if (v[i].org < -1)
            return dt_err_set(err, DT_EINVAL, field, "org %d must be -1 (none) or >= 0", v[i].org);
    }
    return 0;
}

static int check_pair(const dt_pair_problem *p, const char *list, size_t i, int a, int b,
                      dt_err *err)
{
    char field[64];
    snprintf(field, sizeof field, "%s[%zu]", list, i);
    if (a < 0 || a >= p->na)
        return dt_err_set(err, DT_EINVAL, field, "SME index %d is outside 0..%d", a, p->na - 1);
    if (b < 0 || b >= p->nb)
        return dt_err_set(err, DT_EINVAL, field, "holder index %d is outside 0..%d", b, p->nb - 1);
    return 0;
}

typedef struct key3 {
    int64_t k1, k2;
    size_t idx;
} key3;

static int key3_cmp(const void *x, const void *y)
{
    const key3 *a = x, *b = y;
    if (a->k1 != b->k1) return a->k1 < b->k1 ? -1 : 1;
    if (a->k2 != b->k2) return a->k2 < b->k2 ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Finds two locked meetings with equal (k1, k2); returns 1 and their indices (lo < hi) if any. */
static int locked_clash(key3 *keys, size_t n, size_t *lo, size_t *hi)
{
    qsort(keys, n, sizeof *keys, key3_cmp);
    for (size_t i = 1; i < n; i++)
        if (keys[i].k1 == keys[i - 1].k1 && keys[i].k2 == keys[i - 1].k2) {
            *lo = keys[i - 1].idx;
            *hi = keys[i].idx;
            return 1;
        }
    return 0;
}

static int check_locked(const dt_pair_problem *p, dt_err *err)
{
    for (size_t i = 0; i < p->n_locked; i++) {
        const dt_pair_locked *l = &p->locked[i];
        int rc = check_pair(p, "locked", i, l->a, l->b, err);
        if (rc) return rc;
        char field[64];
        snprintf(field, sizeof field, "locked[%zu]", i);
        if (l->slot < 0 || l->slot >= p->slots)
            return dt_err_set(err, DT_EINVAL, field, "slot %d is outside 0..%d", l->slot,
                              p->slots - 1);
        if (l->table < 0 || l->table >= p->tables)
            return dt_err_set(err, DT_EINVAL, field, "table %d is outside 0..%d", l->table,
                              p->tables - 1);
    }
    if (p->n_locked < 2) return 0;
    key3 *keys = malloc(p->n_locked * sizeof *keys);
    if (!keys) return nomem(err);
    static const char *const what[3] = {"slot %d and table %d", "SME %d in slot %d",
                                        "holder %d in slot %d"};
    int rc = 0;
    for (int pass = 0; pass < 3 && rc == 0; pass++) {
        for (size_t i = 0; i < p->n_locked; i++) {
            const dt_pair_locked *l = &p->locked[i];
            int64_t k1 = pass == 0 ? l->slot : pass == 1 ? l->a : l->b;
            int64_t k2 = pass == 0 ? l->table : l->slot;
            keys[i] = (key3){k1, k2, i};
        }
        size_t lo, hi;
        if (locked_clash(keys, p->n_locked, &lo, &hi)) {
            const dt_pair_locked *l = &p->locked[hi];
            char field[64], clash[64];
            snprintf(field, sizeof field, "locked[%zu]", hi);
            if (pass == 0)
                snprintf(clash, sizeof clash, what[0], l->slot, l->table);
            else
                snprintf(clash, sizeof clash, what[pass], pass == 1 ? l->a : l->b, l->slot);
            rc = dt_err_set(err, DT_EINVAL, field, "clashes with locked[%zu]: both use %s", lo,
                            clash);
        }
    }
    free(keys);
    return rc;
}

static int check_problem(const dt_pair_problem *p, dt_err *err)
{
    if (p->na < 0 || p->nb < 0)
        return dt_err_set(err, DT_EINVAL, p->na < 0 ? "na" : "nb", "participant count is negative");
    if (p->na > DT_PAIR_SIDE_MAX || p->nb > DT_PAIR_SIDE_MAX)
        return dt_err_set(err, DT_ELIMIT, p->na > DT_PAIR_SIDE_MAX ? "na" : "nb",
                          "more than %d participants on one side", DT_PAIR_SIDE_MAX);
    if ((p->na > 0 && !p->a) || (p->nb > 0 && !p->b))
        return dt_err_set(err, DT_EINVAL, !p->a ? "a" : "b", "participant array is NULL");
    if (p->slots < 1)
        return dt_err_set(err, DT_EINVAL, "slots", "an event needs at least 1 time slot, got %d",
                          p->slots);
    if (p->slots > DT_PAIR_SLOTS_MAX)
        return dt_err_set(err, DT_ELIMIT, "slots", "%d slots is above the limit of %d", p->slots,
                          DT_PAIR_SLOTS_MAX);
    if (p->tables < 1)
        return dt_err_set(err, DT_EINVAL, "tables",
                          "an event needs at least 1 table per slot, got %d", p->tables);
    if (p->tables > DT_PAIR_TABLES_MAX)
        return dt_err_set(err, DT_ELIMIT, "tables", "%d tables is above the limit of %d", p->tables,
                          DT_PAIR_TABLES_MAX);
    const struct {
        const char *name;
        size_t n;
        const void *ptr;
    } lists[] = {{"edges", p->n_edges, p->edges},          {"must", p->n_must, p->must},
                 {"never", p->n_never, p->never},          {"excluded", p->n_excluded, p->excluded},
                 {"requests", p->n_requests, p->requests}, {"locked", p->n_locked, p->locked}};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if (lists[i].n > DT_PAIR_ITEMS_MAX)
            return dt_err_set(err, DT_ELIMIT, lists[i].name, "%zu entries is above the limit of %d",
                              lists[i].n, DT_PAIR_ITEMS_MAX);
        if (lists[i].n > 0 && !lists[i].ptr)
            return dt_err_set(err, DT_EINVAL, lists[i].name, "%zu entries but the array is NULL",
                              lists[i].n);
    }
    int rc = check_options(&p->opt, err);
    if (!rc) rc = check_people(p->a, p->na, p->slots, 'a', err);
    if (!rc) rc = check_people(p->b, p->nb, p->slots, 'b', err);
    if (rc) return rc;
    for (size_t i = 0; i < p->n_edges; i++) {
        const dt_pair_edge *e = &p->edges[i];
        if ((rc = check_pair(p, "edges", i, e->a, e->b, err))) return rc;
        if (!isfinite(e->score) || e->score < 0 || e->score > DT_PAIR_VALUE_MAX) {
            char field[64];
            snprintf(field, sizeof field, "edges[%zu]", i);
            return dt_err_set(err, DT_EINVAL, field, "score %g must be finite and within 0..%g",
                              e->score, DT_PAIR_VALUE_MAX);
        }
    }
    for (size_t i = 0; i < p->n_requests; i++) {
        const dt_pair_request *r = &p->requests[i];
        if ((rc = check_pair(p, "requests", i, r->a, r->b, err))) return rc;
        if (r->who < DT_PAIR_REQ_A || r->who > DT_PAIR_REQ_BOTH) {
            char field[64];
            snprintf(field, sizeof field, "requests[%zu]", i);
            return dt_err_set(err, DT_EINVAL, field,
                              "who %d must be 1 (SME), 2 (holder) or 3 (both)", r->who);
        }
    }
    for (size_t i = 0; i < p->n_must; i++)
        if ((rc = check_pair(p, "must", i, p->must[i].a, p->must[i].b, err))) return rc;
    for (size_t i = 0; i < p->n_never; i++)
        if ((rc = check_pair(p, "never", i, p->never[i].a, p->never[i].b, err))) return rc;
    for (size_t i = 0; i < p->n_excluded; i++)
        if ((rc = check_pair(p, "excluded", i, p->excluded[i].a, p->excluded[i].b, err))) return rc;
    return check_locked(p, err);
}

/* ---------------------------------------------------------------- building the candidates */

static int build_cands(solver *s, dt_err *err)
{
    const dt_pair_problem *p = s->p;
    size_t total =
        p->n_edges + p->n_requests + p->n_must + p->n_never + p->n_excluded + p->n_locked;
    if (total > (size_t)INT_MAX / 4)
        return dt_err_set(err, DT_ELIMIT, "edges", "%zu pairs in all is above the limit of %d",
                          total, INT_MAX / 4);
    size_t cap = 16;
    while (cap < 2 * total + 16)
        cap <<= 1;
    s->cands = malloc((total ? total : 1) * sizeof *s->cands);
    s->map.keys = calloc(cap, sizeof *s->map.keys);
    s->map.vals = malloc(cap * sizeof *s->map.vals);
    s->map.mask = cap - 1;
    if (!s->cands || !s->map.keys || !s->map.vals) return nomem(err);

    for (size_t i = 0; i < p->n_edges; i++) {
        const dt_pair_edge *e = &p->edges[i];
        cand *c = &s->cands[cand_get(s, e->a, e->b)];
        if (c->src & C_EDGE) {
            char field[64];
            snprintf(field, sizeof field, "edges[%zu]", i);
            return dt_err_set(err, DT_EINVAL, field,
                              "duplicate edge: SME %d and holder %d already appear in edges[%zu]",
                              e->a, e->b, c->edge_idx);
        }
        c->src |= C_EDGE;
        c->edge_idx = i;
        c->score = e->score;
    }
    for (size_t i = 0; i < p->n_requests; i++) {
        const dt_pair_request *r = &p->requests[i];
        cand *c = &s->cands[cand_get(s, r->a, r->b)];
        if (r->who & DT_PAIR_REQ_A) c->src |= C_REQ_A;
        if (r->who & DT_PAIR_REQ_B) c->src |= C_REQ_B;
    }
    for (size_t i = 0; i < p->n_must; i++)
        s->cands[cand_get(s, p->must[i].a, p->must[i].b)].src |= C_MUST;
    for (size_t i = 0; i < p->n_never; i++)
        s->cands[cand_get(s, p->never[i].a, p->never[i].b)].src |= C_NEVER;
    for (size_t i = 0; i < p->n_excluded; i++)
        s->cands[cand_get(s, p->excluded[i].a, p->excluded[i].b)].src |= C_EXCL;

    s->lock_a = calloc((size_t)s->na + 1, sizeof *s->lock_a);
    s->lock_b = calloc((size_t)s->nb + 1, sizeof *s->lock_b);
    if (!s->lock_a || !s->lock_b) return nomem(err);
    for (size_t i = 0; i < p->n_locked; i++) {
        const dt_pair_locked *l = &p->locked[i];
        cand *c = &s->cands[cand_get(s, l->a, l->b)];
        char field[64];
        snprintf(field, sizeof field, "locked[%zu]", i);
        if (c->src & C_LOCKED)
            return dt_err_set(err, DT_EINVAL, field,
                              "SME %d and holder %d are already locked in locked[%zu]", l->a, l->b,
                              c->lock_idx);
        c->src |= C_LOCKED;
        c->lock_idx = i;
        if (++s->lock_a[l->a] > p->a[l->a].max_meetings)
            return dt_err_set(err, DT_EINVAL, field,
                              "SME %d has more locked meetings than its max_meetings (%d)", l->a,
                              p->a[l->a].max_meetings);
        if (++s->lock_b[l->b] > p->b[l->b].max_meetings)
            return dt_err_set(err, DT_EINVAL, field,
                              "holder %d has more locked meetings than its max_meetings (%d)", l->b,
                              p->b[l->b].max_meetings);
        s->n_locked_total++;
    }

    int64_t q_one = quantise(p->opt.boost_one), q_both = quantise(p->opt.boost_both);
    for (size_t i = 0; i < s->n_cands; i++) {
        cand *c = &s->cands[i];
        int req = ((c->src & C_REQ_A) != 0) + ((c->src & C_REQ_B) != 0);
        c->value = quantise(c->score) + (req == 2 ? q_both : req == 1 ? q_one : 0);
        c->below_min = (c->src & C_CANDIDATE) == C_EDGE && c->score < p->opt.min_score;
        int oa = p->a[c->a].org, ob = p->b[c->b].org;
        if (c->src & C_NEVER) c->blocked |= DT_PAIR_R_NEVER_MEET;
        if (oa >= 0 && oa == ob) c->blocked |= DT_PAIR_R_SAME_ORG;
        if (c->src & C_EXCL) c->blocked |= DT_PAIR_R_EXCLUDED;
    }
    return 0;
}

/* ---------------------------------------------------------------- flow network */

static int add_arc(solver *s, int from, int to, int cap, cost3 cost)
{
    arcs *g = &s->g;
    int e = g->n;
    g->head[e] = to;
    g->cap[e] = cap;
    g->cost[e] = cost;
    g->head[e + 1] = from;
    g->cap[e + 1] = 0;
    g->cost[e + 1] = (cost3){-cost.t0, -cost.t1, -cost.v};
    g->n += 2;
    return e;
}

/* Exchanges arcs i and j of one node's range, keeping reverse links right. */
static void swap_arcs(arc *net, int i, int j)
{
    if (i == j) return;
    arc t = net[i];
    net[i] = net[j];
    net[j] = t;
    net[net[i].rev].rev = i;
    net[net[j].rev].rev = j;
}

/* Sets the capacity of arc e, keeping its node's arcs with capacity in front. Arcs of other nodes
 * keep their places. */
static void set_cap(solver *s, int e, int cap)
{
    arc *net = s->net;
    int old = net[e].cap, tail = net[net[e].rev].head;
    net[e].cap = cap;
    if (old > 0 && cap <= 0)
        swap_arcs(net, e, --s->live_end[tail]);
    else if (old <= 0 && cap > 0)
        swap_arcs(net, e, s->live_end[tail]++);
}

/* Cost of participant unit j: a guaranteed unit (t1 -1) while j < min, plus its decay charge. */
static cost3 unit_cost(const solver *s, int j, int min)
{
    return (cost3){0, j < min ? -1 : 0, s->pen[j]};
}

/* Arcs for units locked..max-1 of one participant, consecutive units of equal cost merged. */
static void add_unit_arcs(solver *s, int from, int to, const dt_pair_person *pp, int locked)
{
    int j = locked;
    while (j < pp->max_meetings) {
        cost3 c = unit_cost(s, j, pp->min_meetings);
        int k = j + 1;
        while (k < pp->max_meetings && c3_cmp(unit_cost(s, k, pp->min_meetings), c) == 0)
            k++;
        add_arc(s, from, to, k - j, c);
        j = k;
    }
}

static int build_network(solver *s, dt_err *err)
{
    const dt_pair_problem *p = s->p;
    int na = s->na, nb = s->nb;
    int S0 = 0, S = 1, T = 2 + na + nb;
    s->n_nodes = na + nb + 3;
    size_t n_arcs = 1 + (size_t)(na + nb) * (size_t)s->T + s->n_cands;
    if (n_arcs > (size_t)INT_MAX / 2 - 2)
        return dt_err_set(err, DT_ELIMIT, "edges", "the flow network would need %zu arcs", n_arcs);
    s->g.max = (int)(2 * n_arcs);
    s->g.head = malloc((size_t)s->g.max * sizeof *s->g.head);
    s->g.cap = malloc((size_t)s->g.max * sizeof *s->g.cap);
    s->g.cost = malloc((size_t)s->g.max * sizeof *s->g.cost);
    if (!s->g.head || !s->g.cap || !s->g.cost) return nomem(err);

    int64_t room = s->capacity - s->n_locked_total;
    add_arc(s, S0, S, room > INT_MAX ? INT_MAX : (int)room, C3_ZERO);
    for (int i = 0; i < na; i++)
        add_unit_arcs(s, S, 2 + i, &p->a[i], s->lock_a[i]);
    for (size_t i = 0; i < s->n_cands; i++) {
        cand *c = &s->cands[i];
        if (!(c->src & C_CANDIDATE) || (c->src & C_LOCKED) || c->blocked || c->below_min) continue;
        cost3 cost = {(c->src & C_MUST) ? -1 : 0, 0, -c->value};
        add_arc(s, 2 + c->a, 2 + na + c->b, 1, cost);
    }
    for (int j = 0; j < nb; j++)
        add_unit_arcs(s, 2 + na + j, T, &p->b[j], s->lock_b[j]);

    int n = s->n_nodes, m = s->g.n;
    s->adj_start = calloc((size_t)n + 1, sizeof *s->adj_start);
    s->net = malloc((size_t)m * sizeof *s->net);
    s->live_end = malloc(((size_t)n + 1) * sizeof *s->live_end);
    int *pos = malloc((size_t)m * sizeof *pos);
    s->pot = malloc((size_t)n * sizeof *s->pot);
    s->dist = malloc((size_t)n * sizeof *s->dist);
    s->prev_arc = malloc((size_t)n * sizeof *s->prev_arc);
    s->seen = calloc((size_t)n, sizeof *s->seen);
    s->done = calloc((size_t)n, sizeof *s->done);
    s->heap_max = (size_t)m + 2;
    s->heap = malloc(s->heap_max * sizeof *s->heap);
    if (!s->adj_start || !s->net || !s->live_end || !pos || !s->pot || !s->dist || !s->prev_arc ||
        !s->seen || !s->done || !s->heap) {
        free(pos);
        return nomem(err);
    }
    /* tail of arc e is the head of e ^ 1 */
    for (int e = 0; e < m; e++)
        s->adj_start[s->g.head[e ^ 1] + 1]++;
    for (int v = 0; v < n; v++)
        s->adj_start[v + 1] += s->adj_start[v];
    int *fill = s->prev_arc; /* scratch */
    memcpy(fill, s->adj_start, (size_t)n * sizeof *fill);
    for (int e = 0; e < m; e++)
        pos[e] = fill[s->g.head[e ^ 1]]++;
    for (int e = 0; e < m; e++)
        s->net[pos[e]] =
            (arc){s->g.cost[e].v,          s->g.head[e],           s->g.cap[e], pos[e ^ 1],
                  (int8_t)s->g.cost[e].t0, (int8_t)s->g.cost[e].t1};
    for (int v = 0; v < n; v++) { /* arcs with capacity first */
        int live = s->adj_start[v];
        for (int k = s->adj_start[v]; k < s->adj_start[v + 1]; k++)
            if (s->net[k].cap > 0) swap_arcs(s->net, k, live++);
        s->live_end[v] = live;
    }
    free(pos);
    free(s->g.head);
    free(s->g.cap);
    free(s->g.cost);
    s->g = (arcs){0};

    /* Initial potentials: shortest distances on the layered DAG S0 -> S -> A -> B -> T, taking
     * only arcs with capacity; a node with no such incoming arc gets 0, which keeps every
     * arc with capacity at a non-negative reduced cost. */
    for (int v = 0; v < n; v++)
        s->pot[v] = C3_ZERO;
    bool *has = calloc((size_t)n, sizeof *has);
    if (!has) return nomem(err);
    has[S0] = true;
    for (int v = 0; v < n; v++) { /* node ids are in layer order */
        for (int k = s->adj_start[v]; k < s->adj_start[v + 1]; k++) {
            const arc *e = &s->net[k];
            if (e->cap <= 0) continue;
            int w = e->head;
            cost3 d = c3_add(s->pot[v], arc_cost(e));
            if (!has[w] || c3_cmp(d, s->pot[w]) < 0) {
                s->pot[w] = d;
                has[w] = true;
            }
        }
    }
    free(has);
    return 0;
}

static void heap_push(solver *s, cost3 d, int v)
{
    heap_ent *h = s->heap;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (c3_cmp(h[up].d, d) <= 0) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = (heap_ent){d, v};
}

static heap_ent heap_pop(solver *s)
{
    heap_ent *h = s->heap;
    heap_ent top = h[0], last = h[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && c3_cmp(h[c + 1].d, h[c].d) < 0) c++;
        if (c3_cmp(h[c].d, last.d) >= 0) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = last;
    return top;
}

/* One round: Dijkstra on reduced costs from S0, stopped once the sink is settled; potentials move
 * by min(dist, dist(sink)), which keeps reduced costs non-negative. Returns 1 when a path of
 * negative cost was pushed, 0 when none is left (no path, or the cheapest is not profitable). */
static int augment(solver *s, int round)
{
    int n = s->n_nodes, src = 0, sink = n - 1;
    s->heap_n = 0;
    s->dist[src] = C3_ZERO;
    s->seen[src] = round;
    heap_push(s, C3_ZERO, src);
    bool reached = false;
    while (s->heap_n > 0) {
        heap_ent top = heap_pop(s);
        int u = top.v;
        if (s->done[u] == round) continue;
        s->done[u] = round;
        if (u == sink) {
            reached = true;
            break;
        }
        cost3 pu = c3_add(top.d, s->pot[u]);
        for (int k = s->adj_start[u], end = s->live_end[u]; k < end; k++) {
            const arc *e = &s->net[k];
            int w = e->head;
            if (s->done[w] == round) continue;
            cost3 nd = c3_sub(c3_add(pu, arc_cost(e)), s->pot[w]);
            if (s->seen[w] != round || c3_cmp(nd, s->dist[w]) < 0) {
                s->seen[w] = round;
                s->dist[w] = nd;
                s->prev_arc[w] = k;
                heap_push(s, nd, w);
            }
        }
    }
    if (!reached) return 0;
    cost3 D = s->dist[sink];
    for (int v = 0; v < n; v++)
        s->pot[v] = c3_add(s->pot[v], s->done[v] == round ? s->dist[v] : D);
    /* the path's true cost is pot[sink] - pot[src], and pot[src] stays 0 */
    if (c3_cmp(c3_sub(s->pot[sink], s->pot[src]), C3_ZERO) >= 0) return 0;
    for (int v = sink; v != src;) {
        /* e lies in the range of its tail, r in that of v: moving one never moves the other, nor
         * the path's next arc, which lies in the range of the tail's predecessor */
        int e = s->prev_arc[v], r = s->net[e].rev, tail = s->net[r].head;
        set_cap(s, e, s->net[e].cap - 1);
        set_cap(s, r, s->net[r].cap + 1);
        v = tail;
    }
    s->n_paths++;
    return 1;
}

/* Marks the candidates whose SME -> holder arc carries flow. */
static void mark_flow(solver *s)
{
    int first_b = 2 + s->na, end_b = 2 + s->na + s->nb;
    for (int a = 0; a < s->na; a++) {
        int v = 2 + a;
        for (int k = s->adj_start[v]; k < s->adj_start[v + 1]; k++) {
            const arc *e = &s->net[k];
            if (e->head >= first_b && e->head < end_b && e->cap == 0)
                s->cands[cand_find(s, a, e->head - first_b)].flow = true;
        }
    }
}

static void run_flow(solver *s)
{
    /* each round pushes one unit through one SME -> holder arc, so rounds are bounded by those */
    int round = 1;
    while (augment(s, round)) {
        if (round == INT_MAX) break;
        round++;
    }
}

/* ---------------------------------------------------------------- schedule */

/* Edge colouring state: meeting k joins vertices U[k] (SME) and V[k] (na + holder). */
typedef struct colouring {
    int T, nv;
    size_t m;
    const int *U, *V;
    const bool *fixed;
    int *at;   /* nv * T: meeting using colour c at vertex x, or -1 */
    int *col;  /* per meeting, -1 = none */
    int *cnt;  /* meetings per colour */
    int *path; /* scratch, m entries */
} colouring;

static inline int other_end(const colouring *g, int k, int x)
{
    return g->U[k] == x ? g->V[k] : g->U[k];
}

static void set_col(colouring *g, int k, int c)
{
    g->col[k] = c;
    g->at[(size_t)g->U[k] * g->T + c] = k;
    g->at[(size_t)g->V[k] * g->T + c] = k;
    g->cnt[c]++;
}

static void clear_col(colouring *g, int k)
{
    int c = g->col[k];
    g->at[(size_t)g->U[k] * g->T + c] = -1;
    g->at[(size_t)g->V[k] * g->T + c] = -1;
    g->cnt[c]--;
    g->col[k] = -1;
}

/* Walks the path from x alternating colours c1, c2, ...; returns its length (meetings in g->path)
 * and sets *fixed_seen when a locked meeting lies on it. */
static size_t walk(colouring *g, int x, int c1, int c2, bool *fixed_seen)
{
    size_t n = 0;
    int c = c1;
    *fixed_seen = false;
    for (;;) {
        int k = g->at[(size_t)x * g->T + c];
        if (k < 0) break;
        if (g->fixed[k]) *fixed_seen = true;
        g->path[n++] = k;
        x = other_end(g, k, x);
        c = c == c1 ? c2 : c1;
    }
    return n;
}

/* Swaps colours c1 and c2 on the meetings of g->path[0..n). */
static void swap_path(colouring *g, size_t n, int c1, int c2)
{
    for (size_t i = 0; i < n; i++)
        clear_col(g, g->path[i]);
    for (size_t i = 0; i < n; i++) {
        int k = g->path[i];
        set_col(g, k, (i % 2 == 0) ? c2 : c1);
    }
}

/* Colours meeting k, recolouring alternating paths free of locked meetings where needed.
 * Returns 0, or -1 when every Kempe swap would move a locked meeting. */
static int colour_one(colouring *g, int k)
{
    int T = g->T, u = g->U[k], v = g->V[k];
    const int *au = g->at + (size_t)u * T, *av = g->at + (size_t)v * T;
    int best = -1;
    for (int c = 0; c < T; c++)
        if (au[c] < 0 && av[c] < 0 && (best < 0 || g->cnt[c] < g->cnt[best])) best = c;
    if (best >= 0) {
        set_col(g, k, best);
        return 0;
    }
    /* alpha free at u, beta free at v: flip the alpha/beta path from v (it never reaches u in a
     * bipartite graph), or the beta/alpha path from u */
    for (int side = 0; side < 2; side++)
        for (int alpha = 0; alpha < T; alpha++) {
            if (au[alpha] >= 0) continue;
            for (int beta = 0; beta < T; beta++) {
                if (av[beta] >= 0) continue;
                bool fixed_seen;
                int start = side == 0 ? v : u, c1 = side == 0 ? alpha : beta;
                int c2 = side == 0 ? beta : alpha;
                size_t n = walk(g, start, c1, c2, &fixed_seen);
                if (fixed_seen) continue;
                swap_path(g, n, c1, c2);
                set_col(g, k, c1);
                return 0;
            }
        }
    return -1;
}

/* Moves one meeting from colour c1 to c2 along an alternating path with more c1 than c2 meetings
 * and no locked meeting. Returns 1 on success. */
static int shift_one(colouring *g, int c1, int c2)
{
    int T = g->T;
    for (size_t k = 0; k < g->m; k++) {
        if (g->col[k] != c1) continue;
        int ends[2] = {g->U[k], g->V[k]};
        for (int i = 0; i < 2; i++) {
            int x = ends[i];
            if (g->at[(size_t)x * T + c2] >= 0) continue;
            bool fixed_seen;
            size_t n = walk(g, x, c1, c2, &fixed_seen);
            if (fixed_seen || n % 2 == 0) continue;
            swap_path(g, n, c1, c2);
            return 1;
        }
    }
    return 0;
}

/* Equalises colour classes (de Werra): while two classes differ by two or more, shift one meeting
 * from the larger to the smaller. Every shift lowers the sum of squared class sizes, so this ends;
 * without locked meetings it ends with classes differing by at most one. */
static void balance(colouring *g)
{
    int T = g->T;
    for (;;) {
        int moved = 0;
        for (int d = INT_MAX; !moved;) {
            /* the largest difference below d among pairs, tried in decreasing order */
            int best = -1;
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    int diff = g->cnt[i] - g->cnt[j];
                    if (diff >= 2 && diff < d && diff > best) best = diff;
                }
            if (best < 0) break;
            for (int i = 0; i < T && !moved; i++)
                for (int j = 0; j < T && !moved; j++)
                    if (g->cnt[i] - g->cnt[j] == best) moved = shift_one(g, i, j);
            d = best;
        }
        if (!moved) return;
    }
}

typedef struct meeting_ref {
    int cand;
    int slot, table;
} meeting_ref;

static int by_value_desc(const void *x, const void *y, void *ctx)
{
    const cand *c = ctx;
    const meeting_ref *a = x, *b = y;
    int64_t va = c[a->cand].value, vb = c[b->cand].value;
    if (va != vb) return va > vb ? -1 : 1;
    return a->cand < b->cand ? -1 : a->cand > b->cand;
}

static int by_slot_table(const void *x, const void *y)
{
    const meeting_ref *a = x, *b = y;
    if (a->slot != b->slot) return a->slot < b->slot ? -1 : 1;
    return a->table < b->table ? -1 : a->table > b->table;
}

/* Colouring attempts tried when locked meetings leave some meeting unplaced. */
#define SCHEDULE_TRIES 16

/* Leaves out unlocked meetings of slots over their tables, lowest value first (meetings after the
 * locked ones are in decreasing value). */
static void drop_overflow(colouring *g, size_t n_locked, int tables)
{
    for (size_t k = g->m; k-- > n_locked;)
        if (g->col[k] >= 0 && g->cnt[g->col[k]] > tables) clear_col(g, (int)k);
}

/* One attempt: the locked meetings, then the others in `order`, balancing, and a second chance for
 * meetings that found no slot. Returns how many meetings stay unplaced. */
static size_t colour_all(colouring *g, const meeting_ref *refs, size_t n_locked, const int *order,
                         int tables)
{
    size_t m = g->m;
    for (size_t i = 0; i < (size_t)g->nv * g->T; i++)
        g->at[i] = -1;
    memset(g->cnt, 0, (size_t)g->T * sizeof *g->cnt);
    for (size_t k = 0; k < m; k++)
        g->col[k] = -1;
    for (size_t k = 0; k < n_locked; k++)
        set_col(g, (int)k, refs[k].slot);
    for (size_t i = 0; i + n_locked < m; i++)
        colour_one(g, order[i]);
    balance(g);
    drop_overflow(g, n_locked, tables);
    bool retry = false;
    for (size_t i = 0; i + n_locked < m; i++)
        if (g->col[order[i]] < 0) retry |= colour_one(g, order[i]) == 0;
    if (retry) {
        balance(g);
        drop_overflow(g, n_locked, tables);
    }
    size_t left = 0;
    for (size_t k = n_locked; k < m; k++)
        left += g->col[k] < 0;
    return left;
}

/* Colours, balances and numbers tables. refs[0..n_locked) are the locked meetings (slot, table
 * filled), the rest unlocked in decreasing value. Without locked meetings the first attempt places
 * everything (Koenig, de Werra). With them, other orders are tried (most constrained first, then
 * shuffles) and the attempt leaving the fewest (then the least valuable) meetings out is kept;
 * those get slot -1. */
static int schedule(solver *s, meeting_ref *refs, size_t m, size_t n_locked, dt_err *err)
{
    const dt_pair_problem *p = s->p;
    int T = s->T;
    size_t nm = m ? m : 1;
    colouring g = {0};
    g.T = T;
    g.nv = s->na + s->nb;
    g.m = m;
    int *U = malloc(nm * sizeof *U), *V = malloc(nm * sizeof *V);
    bool *fixed = malloc(nm * sizeof *fixed);
    int *order = malloc(nm * sizeof *order), *best = malloc(nm * sizeof *best);
    int64_t *key = malloc(nm * sizeof *key);
    g.at = malloc(((size_t)g.nv * T + 1) * sizeof *g.at);
    g.col = malloc(nm * sizeof *g.col);
    g.cnt = calloc((size_t)T, sizeof *g.cnt);
    g.path = malloc(nm * sizeof *g.path);
    unsigned char *used = calloc((size_t)p->tables, 1);
    int rc = 0;
    if (!U || !V || !fixed || !order || !best || !key || !g.at || !g.col || !g.cnt || !g.path ||
        !used) {
        rc = nomem(err);
        goto out;
    }
    g.U = U;
    g.V = V;
    g.fixed = fixed;
    for (size_t k = 0; k < m; k++) {
        const cand *c = &s->cands[refs[k].cand];
        U[k] = c->a;
        V[k] = s->na + c->b;
        fixed[k] = k < n_locked;
    }
    size_t n_free = m - n_locked, best_left = SIZE_MAX;
    int64_t best_lost = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int attempt = 0; attempt < SCHEDULE_TRIES && best_left > 0; attempt++) {
        for (size_t i = 0; i < n_free; i++)
            order[i] = (int)(n_locked + i);
        if (attempt == 1) {
            /* most constrained first: meetings of participants with the most locked meetings */
            for (size_t i = 0; i < n_free; i++) {
                const cand *c = &s->cands[refs[order[i]].cand];
                key[i] = (int64_t)(s->lock_a[c->a] + s->lock_b[c->b]) << 32 | (int64_t)(m - i);
            }
            for (size_t i = 1; i < n_free; i++) { /* insertion sort by key, decreasing */
                int64_t kk = key[i];
                int oo = order[i];
                size_t j = i;
                for (; j > 0 && key[j - 1] < kk; j--) {
                    key[j] = key[j - 1];
                    order[j] = order[j - 1];
                }
                key[j] = kk;
                order[j] = oo;
            }
        } else if (attempt > 1) {
            for (size_t i = n_free; i > 1; i--) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                size_t j = (size_t)(seed % i);
                int t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
            }
        }
        size_t left = colour_all(&g, refs, n_locked, order, p->tables);
        int64_t lost = 0;
        for (size_t k = n_locked; k < m; k++)
            if (g.col[k] < 0) lost += s->cands[refs[k].cand].value;
        if (left < best_left || (left == best_left && lost < best_lost)) {
            best_left = left;
            best_lost = lost;
            memcpy(best, g.col, nm * sizeof *best);
        }
    }
    for (size_t k = 0; k < m; k++)
        refs[k].slot = best[k];
    for (int t = 0; t < T; t++) {
        memset(used, 0, (size_t)p->tables);
        for (size_t k = 0; k < n_locked; k++)
            if (refs[k].slot == t) used[refs[k].table] = 1;
        int next = 0;
        for (size_t k = n_locked; k < m; k++) {
            if (refs[k].slot != t) continue;
            while (used[next])
                next++;
            refs[k].table = next;
            used[next] = 1;
        }
    }
out:
    free(U);
    free(V);
    free(fixed);
    free(order);
    free(best);
    free(key);
    free(g.at);
    free(g.col);
    free(g.cnt);
    free(g.path);
    free(used);
    return rc;
}

/* ---------------------------------------------------------------- explanations */

/* Why participant (side, i) has fewer than its max: walks its candidate pairs not met. */
static unsigned shortfall(const solver *s, const int *cands_of, const int *start, int i, int side)
{
    const dt_pair_problem *p = s->p;
    bool self_full =
        side == 0 ? s->asg_a[i] >= p->a[i].max_meetings : s->asg_b[i] >= p->b[i].max_meetings;
    if (self_full)
        return DT_PAIR_R_UNSCHEDULED; /* full when assigned, short only after scheduling */
    unsigned r = 0;
    bool any = false;
    for (int k = start[i]; k < start[i + 1]; k++) {
        const cand *c = &s->cands[cands_of[k]];
        if (c->outcome == OUT_CHOSEN || c->below_min) continue;
        any = true;
        if (c->blocked) {
            r |= c->blocked;
            continue;
        }
        if (c->outcome == OUT_UNSCHEDULED) {
            r |= DT_PAIR_R_UNSCHEDULED;
            continue;
        }
        bool partner_full = side == 0 ? s->asg_b[c->b] >= p->b[c->b].max_meetings
                                      : s->asg_a[c->a] >= p->a[c->a].max_meetings;
        if (partner_full)
            r |= DT_PAIR_R_PARTNERS_FULL;
        else if (s->assigned >= s->capacity)
            r |= DT_PAIR_R_TABLES;
        else
            r |= DT_PAIR_R_LOW_VALUE;
    }
    if (!any) r |= DT_PAIR_R_NO_CANDIDATES;
    return r;
}

/* CSR lists of candidate pairs per SME (side 0) or holder (side 1). */
static int cands_by_side(const solver *s, int side, int **start_out, int **list_out)
{
    int n = side == 0 ? s->na : s->nb;
    int *start = calloc((size_t)n + 1, sizeof *start);
    int *list = malloc((s->n_cands ? s->n_cands : 1) * sizeof *list);
    if (!start || !list) {
        free(start);
        free(list);
        return -1;
    }
    for (size_t i = 0; i < s->n_cands; i++)
        if (s->cands[i].src & C_CANDIDATE) start[(side == 0 ? s->cands[i].a : s->cands[i].b) + 1]++;
    for (int i = 0; i < n; i++)
        start[i + 1] += start[i];
    int *fill = malloc(((size_t)n + 1) * sizeof *fill);
    if (!fill) {
        free(start);
        free(list);
        return -1;
    }
    memcpy(fill, start, ((size_t)n + 1) * sizeof *fill);
    for (size_t i = 0; i < s->n_cands; i++)
        if (s->cands[i].src & C_CANDIDATE)
            list[fill[side == 0 ? s->cands[i].a : s->cands[i].b]++] = (int)i;
    free(fill);
    *start_out = start;
    *list_out = list;
    return 0;
}

static int build_result(solver *s, const meeting_ref *refs, size_t m, dt_pair_result **out,
                        dt_err *err)
{
    const dt_pair_problem *p = s->p;
    dt_pair_result *r = calloc(1, sizeof *r);
    int *start_a = NULL, *list_a = NULL, *start_b = NULL, *list_b = NULL;
    if (!r) return nomem(err);
    size_t n_sched = 0;
    for (size_t k = 0; k < m; k++)
        n_sched += refs[k].slot >= 0;
    size_t max_unmet = (size_t)s->na + (size_t)s->nb + p->n_must + m;
    r->meetings = malloc((n_sched ? n_sched : 1) * sizeof *r->meetings);
    r->count_a = calloc((size_t)s->na + 1, sizeof *r->count_a);
    r->count_b = calloc((size_t)s->nb + 1, sizeof *r->count_b);
    r->unmet = malloc((max_unmet ? max_unmet : 1) * sizeof *r->unmet);
    if (!r->meetings || !r->count_a || !r->count_b || !r->unmet ||
        cands_by_side(s, 0, &start_a, &list_a) || cands_by_side(s, 1, &start_b, &list_b)) {
        dt_pair_result_free(r);
        free(start_a);
        free(list_a);
        return nomem(err);
    }
    r->n_paths = s->n_paths;

    int64_t units = 0;
    double score = 0;
    for (size_t k = 0; k < m; k++) {
        cand *c = &s->cands[refs[k].cand];
        s->asg_a[c->a]++;
        s->asg_b[c->b]++;
        if (refs[k].slot < 0) {
            c->outcome = OUT_UNSCHEDULED;
            r->n_unscheduled++;
            continue;
        }
        c->outcome = OUT_CHOSEN;
        dt_pair_meeting *mt = &r->meetings[r->n_meetings++];
        mt->a = c->a;
        mt->b = c->b;
        mt->slot = refs[k].slot;
        mt->table = refs[k].table;
        mt->score = c->score;
        mt->value = (double)c->value / DT_PAIR_SCALE;
        mt->flags = ((c->src & C_LOCKED) ? DT_PAIR_M_LOCKED : 0) |
                    ((c->src & C_MUST) ? DT_PAIR_M_MUST : 0) |
                    ((c->src & C_REQ_A) ? DT_PAIR_M_REQ_A : 0) |
                    ((c->src & C_REQ_B) ? DT_PAIR_M_REQ_B : 0);
        s->cnt_a[c->a]++;
        s->cnt_b[c->b]++;
        units += c->value;
        score += c->score;
        if (c->src & C_MUST) r->n_must_met++;
    }
    s->assigned = (int64_t)m;
    for (int i = 0; i < s->na; i++)
        for (int j = 0; j < s->cnt_a[i]; j++)
            units -= s->pen[j];
    for (int i = 0; i < s->nb; i++)
        for (int j = 0; j < s->cnt_b[i]; j++)
            units -= s->pen[j];
    r->total_value_units = units;
    r->total_value = (double)units / DT_PAIR_SCALE;
    r->total_score = score;

    for (int side = 0; side < 2; side++) {
        int n = side == 0 ? s->na : s->nb;
        const dt_pair_person *pp = side == 0 ? p->a : p->b;
        const int *cnt = side == 0 ? s->cnt_a : s->cnt_b;
        dt_pair_count *out_cnt = side == 0 ? r->count_a : r->count_b;
        for (int i = 0; i < n; i++) {
            dt_pair_count *pc = &out_cnt[i];
            pc->count = cnt[i];
            pc->max = pp[i].max_meetings;
            pc->min = pp[i].min_meetings;
            if (pc->count < pc->max)
                pc->reasons = side == 0 ? shortfall(s, list_a, start_a, i, 0)
                                        : shortfall(s, list_b, start_b, i, 1);
            r->n_guarantee_units += pc->count < pc->min ? pc->count : pc->min;
            if (pc->count < pc->min)
                r->unmet[r->n_unmet++] = (dt_pair_unmet){DT_PAIR_UNMET_GUARANTEE,
                                                         side,
                                                         side == 0 ? i : -1,
                                                         side == 0 ? -1 : i,
                                                         pc->count,
                                                         pc->min,
                                                         pc->reasons};
        }
    }
    for (size_t i = 0; i < p->n_must; i++) {
        int ci = cand_find(s, p->must[i].a, p->must[i].b);
        cand *c = &s->cands[ci];
        if (c->outcome == OUT_CHOSEN || c->reported) continue;
        c->reported = true;
        unsigned why = c->blocked;
        if (!why) {
            if (c->outcome == OUT_UNSCHEDULED || s->asg_a[c->a] > s->cnt_a[c->a] ||
                s->asg_b[c->b] > s->cnt_b[c->b])
                why |= DT_PAIR_R_UNSCHEDULED;
            if (s->asg_a[c->a] >= p->a[c->a].max_meetings) why |= DT_PAIR_R_A_FULL;
            if (s->asg_b[c->b] >= p->b[c->b].max_meetings) why |= DT_PAIR_R_B_FULL;
            if (s->assigned >= s->capacity) why |= DT_PAIR_R_TABLES;
        }
        r->unmet[r->n_unmet++] = (dt_pair_unmet){DT_PAIR_UNMET_MUST, 0, c->a, c->b, 0, 1, why};
    }
    for (size_t k = 0; k < m; k++) {
        if (refs[k].slot >= 0) continue;
        const cand *c = &s->cands[refs[k].cand];
        r->unmet[r->n_unmet++] =
            (dt_pair_unmet){DT_PAIR_UNMET_UNSCHEDULED, 0, c->a, c->b, 0, 1, DT_PAIR_R_UNSCHEDULED};
    }
    free(start_a);
    free(list_a);
    free(start_b);
    free(list_b);
    *out = r;
    return 0;
}

/* ---------------------------------------------------------------- public */

void dt_pair_options_default(dt_pair_options *o)
{
    o->min_score = 0;
    o->boost_one = 0.2;
    o->boost_both = 0.4;
    o->decay_gamma = 0.9;
    o->decay_scale = 0.5;
}

void dt_pair_problem_init(dt_pair_problem *p)
{
    memset(p, 0, sizeof *p);
    dt_pair_options_default(&p->opt);
}

int dt_pair_solve(const dt_pair_problem *p, dt_pair_result **out, dt_err *err)
{
    if (!p || !out) return dt_err_set(err, DT_EINVAL, p ? "out" : "problem", "argument is NULL");
    int rc = check_problem(p, err);
    if (rc) return rc;
    solver s = {0};
    s.p = p;
    s.na = p->na;
    s.nb = p->nb;
    s.T = p->slots;
    s.capacity = (int64_t)p->tables * p->slots;
    meeting_ref *refs = NULL;
    s.pen = malloc((size_t)s.T * sizeof *s.pen);
    s.cnt_a = calloc((size_t)s.na + 1, sizeof *s.cnt_a);
    s.cnt_b = calloc((size_t)s.nb + 1, sizeof *s.cnt_b);
    s.asg_a = calloc((size_t)s.na + 1, sizeof *s.asg_a);
    s.asg_b = calloc((size_t)s.nb + 1, sizeof *s.asg_b);
    if (!s.pen || !s.cnt_a || !s.cnt_b || !s.asg_a || !s.asg_b) {
        rc = nomem(err);
        goto out;
    }
    for (int j = 0; j < s.T; j++)
        s.pen[j] = quantise(p->opt.decay_scale * (1.0 - pow(p->opt.decay_gamma, j)));
    if ((rc = build_cands(&s, err))) goto out;
    if ((rc = build_network(&s, err))) goto out;
    run_flow(&s);
    mark_flow(&s);

    size_t m = 0;
    for (size_t i = 0; i < s.n_cands; i++) {
        const cand *c = &s.cands[i];
        if ((c->src & C_LOCKED) || c->flow) m++;
    }
    refs = malloc((m ? m : 1) * sizeof *refs);
    if (!refs) {
        rc = nomem(err);
        goto out;
    }
    size_t n_locked = 0;
    for (size_t i = 0; i < p->n_locked; i++) {
        const dt_pair_locked *l = &p->locked[i];
        refs[n_locked++] = (meeting_ref){cand_find(&s, l->a, l->b), l->slot, l->table};
    }
    size_t k = n_locked;
    for (size_t i = 0; i < s.n_cands; i++) {
        const cand *c = &s.cands[i];
        if (!(c->src & C_LOCKED) && c->flow) refs[k++] = (meeting_ref){(int)i, -1, -1};
    }
    qsort_r(refs + n_locked, m - n_locked, sizeof *refs, by_value_desc, s.cands);
    if ((rc = schedule(&s, refs, m, n_locked, err))) goto out;
    qsort(refs, m, sizeof *refs, by_slot_table);
    rc = build_result(&s, refs, m, out, err);
out:
    free(refs);
    solver_free(&s);
    return rc;
}

void dt_pair_result_free(dt_pair_result *r)
{
    if (!r) return;
    free(r->meetings);
    free(r->count_a);
    free(r->count_b);
    free(r->unmet);
    free(r);
}

const char *dt_pair_reason_name(unsigned bit)
{
    switch (bit) {
    case DT_PAIR_R_NO_CANDIDATES:
        return "no_candidates";
    case DT_PAIR_R_NEVER_MEET:
        return "never_meet";
    case DT_PAIR_R_SAME_ORG:
        return "same_org";
    case DT_PAIR_R_EXCLUDED:
        return "excluded";
    case DT_PAIR_R_PARTNERS_FULL:
        return "partners_full";
    case DT_PAIR_R_TABLES:
        return "tables";
    case DT_PAIR_R_LOW_VALUE:
        return "low_value";
    case DT_PAIR_R_UNSCHEDULED:
        return "unscheduled";
    case DT_PAIR_R_A_FULL:
        return "sme_full";
    case DT_PAIR_R_B_FULL:
        return "holder_full";
    default:
        return "unknown";
    }
}

size_t dt_pair_reasons_format(unsigned mask, char *buf, size_t n)
{
    size_t len = 0;
    if (n > 0) buf[0] = '\0';
    for (unsigned bit = 1; bit != 0 && bit <= mask; bit <<= 1) {
        if (!(mask & bit)) continue;
        const char *name = dt_pair_reason_name(bit);
        int w = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s%s", len ? "," : "",
                         name);
        if (w > 0) len += (size_t)w;
    }
    return len;
}
