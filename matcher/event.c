/* event.c - a Deep Dive event over stored records (see event.h): participants, candidate meetings
 * from the matcher, the exact pairing of pair.c, and the CSV and HTML renderers.
 *
 * Participants are kept as index slots; pos[slot] maps a slot back to the participant's index on
 * its side, and allow is the bitmap of participant slots handed to dt_search (dt_query.allow_slots)
 * so that every search ranks participants only. Candidate pairs live in one hash map keyed by
 * (SME index, holder index); a pair added for a must-meet, request or locked meeting that no
 * search proposed stays unscored until its SME is searched over every holder.
 */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64 /* queries per dt_search call: one GEMM */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int nomem(dt_err *err)
{
    return dt_err_set(err, DT_ENOMEM, NULL, "out of memory pairing the event");
}

void dt_event_spec_init(dt_event_spec *s)
{
    memset(s, 0, sizeof *s);
    dt_filter_init(&s->smes.filter);
    dt_filter_init(&s->holders.filter);
    s->max_meetings = -1;
    dt_pair_options_default(&s->opt);
}

/* ---------------------------------------------------------------- participants */

typedef struct side_ctx {
    dt_side side;
    const char *name;  /* "smes" / "holders": the spec member, for error fields */
    const char *label; /* "SME" / "holder" */
    dt_index *idx;     /* NULL when the tenant has no record of this side */
    uint32_t *slot;    /* n participants' index slots */
    int n;
    int *pos;          /* per index slot: participant index, or -1 */
    uint64_t *allow;   /* participant slots */
} side_ctx;

static void side_free(side_ctx *s)
{
    free(s->slot);
    free(s->pos);
    free(s->allow);
}

static const char *rec_id(const side_ctx *s, int i)
{
    return dt_index_record(s->idx, s->slot[i])->id;
}

typedef struct slot_id {
    uint32_t slot;
    const char *id;
} slot_id;

static int by_id_cmp(const void *x, const void *y)
{
    return strcmp(((const slot_id *)x)->id, ((const slot_id *)y)->id);
}

static int resolve_side(const dt_engine *e, const char *tenant, const dt_event_side *sp, side_ctx *sc, dt_err *err)
{
    sc->idx = dt_engine_index(e, tenant, sc->side);
    size_t slots = sc->idx ? dt_index_slots(sc->idx) : 0, words = (slots + 63) / 64;
    sc->pos = malloc((slots ? slots : 1) * sizeof *sc->pos);
    sc->allow = calloc(words ? words : 1, sizeof *sc->allow);
    if (!sc->pos || !sc->allow) return nomem(err);
    for (size_t s = 0; s < slots; s++) sc->pos[s] = -1;
    char field[64];
    if (!sp->by_filter) {
        if (sp->n_ids > DT_EVENT_SIDE_MAX)
            return dt_err_set(err, DT_ELIMIT, sc->name, "%zu %ss; an event takes at most %d per side", sp->n_ids,
                              sc->label, DT_EVENT_SIDE_MAX);
        sc->slot = malloc((sp->n_ids ? sp->n_ids : 1) * sizeof *sc->slot);
        if (!sc->slot) return nomem(err);
        for (size_t i = 0; i < sp->n_ids; i++) {
            snprintf(field, sizeof field, "%s.ids[%zu]", sc->name, i);
            const char *id = sp->ids[i] ? sp->ids[i] : "";
            int64_t s = sc->idx ? dt_index_find(sc->idx, id) : -1;
            if (s < 0)
                return dt_err_set(err, DT_ENOTFOUND, field, "no %s with id '%.128s' in tenant '%s'",
                                  dt_side_name(sc->side), id, tenant);
            if (sc->pos[s] >= 0)
                return dt_err_set(err, DT_EINVAL, field, "'%.128s' is listed twice (also %s.ids[%d])", id, sc->name,
                                  sc->pos[s]);
            sc->pos[s] = (int)i;
            sc->slot[i] = (uint32_t)s;
        }
        sc->n = (int)sp->n_ids;
    } else {
        size_t np = sp->filter.n_region_prefixes;
        for (size_t i = 0; i < sp->n_clusters; i++) {
            size_t n;
            snprintf(field, sizeof field, "%s.filter.clusters[%zu]", sc->name, i);
            if (!sp->clusters[i] || !dt_engine_cluster(e, sp->clusters[i], &n))
                return dt_err_set(err, DT_EINVAL, field, "unknown cluster '%.100s'",
                                  sp->clusters[i] ? sp->clusters[i] : "");
            np += n;
        }
        const char **pre = malloc((np ? np : 1) * sizeof *pre);
        slot_id *v = malloc((slots ? slots : 1) * sizeof *v);
        if (!pre || !v) {
            free(pre);
            free(v);
            return nomem(err);
        }
        size_t k = 0;
        for (size_t i = 0; i < sp->filter.n_region_prefixes; i++) pre[k++] = sp->filter.region_prefixes[i];
        for (size_t i = 0; i < sp->n_clusters; i++) {
            size_t n;
            const char *const *p = dt_engine_cluster(e, sp->clusters[i], &n);
            for (size_t j = 0; j < n; j++) pre[k++] = p[j];
        }
        dt_filter f = sp->filter;
        f.region_prefixes = pre;
        f.n_region_prefixes = k;
        for (size_t i = 0; i < sp->n_exclude; i++) { /* pos = -2 marks an excluded slot for now */
            int64_t s = sc->idx && sp->exclude_ids[i] ? dt_index_find(sc->idx, sp->exclude_ids[i]) : -1;
            if (s >= 0) sc->pos[s] = -2;
        }
        size_t n = 0;
        for (size_t s = 0; s < slots; s++) {
            if (sc->pos[s] == -2) {
                sc->pos[s] = -1;
                continue;
            }
            if (dt_index_passes(sc->idx, (uint32_t)s, &f)) v[n++] = (slot_id){(uint32_t)s, dt_index_record(sc->idx, (uint32_t)s)->id};
        }
        free(pre);
        if (n > DT_EVENT_SIDE_MAX) {
            free(v);
            snprintf(field, sizeof field, "%s.filter", sc->name);
            return dt_err_set(err, DT_ELIMIT, field, "%zu %ss pass the filter; an event takes at most %d per side", n,
                              sc->label, DT_EVENT_SIDE_MAX);
        }
        qsort(v, n, sizeof *v, by_id_cmp);
        sc->slot = malloc((n ? n : 1) * sizeof *sc->slot);
        if (!sc->slot) {
            free(v);
            return nomem(err);
        }
        for (size_t i = 0; i < n; i++) {
            sc->slot[i] = v[i].slot;
            sc->pos[v[i].slot] = (int)i;
        }
        free(v);
        sc->n = (int)n;
    }
    for (int i = 0; i < sc->n; i++) sc->allow[sc->slot[i] >> 6] |= 1ull << (sc->slot[i] & 63);
    return 0;
}

/* The participant index of id on side sc. strict: an id that is no record is DT_ENOTFOUND and a
 * record that is no participant DT_EINVAL, both naming field; otherwise both give *out = -1. */
static int find_participant(const side_ctx *sc, const char *tenant, const char *id, const char *field, bool strict,
                            int *out, dt_err *err)
{
    *out = -1;
    if (!id) id = "";
    int64_t s = sc->idx ? dt_index_find(sc->idx, id) : -1;
    if (s < 0) {
        if (!strict) return 0;
        return dt_err_set(err, DT_ENOTFOUND, field, "no %s with id '%.128s' in tenant '%s'", dt_side_name(sc->side), id,
                          tenant);
    }
    if (sc->pos[s] < 0) {
        if (!strict) return 0;
        return dt_err_set(err, DT_EINVAL, field, "'%.128s' is not among the event's %ss", id, sc->label);
    }
    *out = sc->pos[s];
    return 0;
}

/* ---------------------------------------------------------------- candidate pairs */

typedef struct cedge {
    int a, b;
    float score;
    float dense, lexical, structured;
    float fit[DT_FIT_COUNT];
    dt_term_weight terms[DT_EVENT_TERMS];
    unsigned char n_terms;
    bool proposed; /* a top-L search proposed it */
    bool scored;   /* a search returned it (proposed, or by the full search of its SME) */
} cedge;

typedef struct emap {
    cedge *v;
    size_t n, cap;
    uint64_t *keys; /* 0 = empty */
    uint32_t *vals;
    size_t mask;
} emap;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t ekey(int a, int b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)b;
}

static size_t emap_slot(const emap *m, uint64_t key)
{
    size_t i = (size_t)mix64(key) & m->mask;
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & m->mask;
    return i;
}

static void emap_free(emap *m)
{
    free(m->v);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static cedge *emap_find(const emap *m, int a, int b)
{
    if (!m->keys) return NULL;
    size_t i = emap_slot(m, ekey(a, b));
    return m->keys[i] ? &m->v[m->vals[i]] : NULL;
}

/* The edge (a, b), added unscored when absent; NULL when out of memory. */
static cedge *emap_get(emap *m, int a, int b)
{
    if (2 * (m->n + 1) > m->mask + 1 || !m->keys) {
        size_t cap = m->keys ? 2 * (m->mask + 1) : 1024;
        uint64_t *keys = calloc(cap, sizeof *keys);
        uint32_t *vals = malloc(cap * sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return NULL;
        }
        uint64_t *ok = m->keys;
        uint32_t *ov = m->vals;
        size_t ocap = m->keys ? m->mask + 1 : 0;
        m->keys = keys;
        m->vals = vals;
        m->mask = cap - 1;
        for (size_t i = 0; i < ocap; i++)
            if (ok[i]) {
                size_t j = emap_slot(m, ok[i]);
                m->keys[j] = ok[i];
                m->vals[j] = ov[i];
            }
        free(ok);
        free(ov);
    }
    uint64_t key = ekey(a, b);
    size_t i = emap_slot(m, key);
    if (m->keys[i]) return &m->v[m->vals[i]];
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        cedge *v = realloc(m->v, cap * sizeof *v);
        if (!v) return NULL;
        m->v = v;
        m->cap = cap;
    }
    cedge *c = &m->v[m->n];
    memset(c, 0, sizeof *c);
    c->a = a;
    c->b = b;
    m->keys[i] = key;
    m->vals[i] = (uint32_t)m->n++;
    return c;
}

static void edge_set(cedge *c, const dt_match *m)
{
    c->score = m->score > 0 ? m->score : 0;
    c->dense = m->dense;
    c->lexical = m->lexical;
    c->structured = m->structured;
    memcpy(c->fit, m->fit, sizeof c->fit);
    c->n_terms = (unsigned char)(m->n_terms < DT_EVENT_TERMS ? m->n_terms : DT_EVENT_TERMS);
    memcpy(c->terms, m->terms, c->n_terms * sizeof *c->terms);
    c->scored = true;
}

/* Searches, for each participant of `from` listed in who[0..n), the participants of `to`, k
 * results each. propose: every result becomes a proposed edge (keeping the higher score when the
 * other direction proposed it too); otherwise only unscored edges already in the map are scored. */
static int search_side(dt_searcher *sr, const dt_event_spec *spec, const char *tenant, const side_ctx *from,
                       const side_ctx *to, const int *who, size_t n, size_t k, bool propose, emap *m, dt_err *err)
{
    dt_query q[BATCH];
    dt_match_result res[BATCH];
    for (size_t i0 = 0; i0 < n; i0 += BATCH) {
        size_t nq = n - i0 < BATCH ? n - i0 : BATCH;
        for (size_t j = 0; j < nq; j++) {
            dt_query_init(&q[j]);
            q[j].tenant = tenant;
            q[j].target = to->side;
            q[j].record_id = rec_id(from, who[i0 + j]);
            q[j].record_side = from->side;
            q[j].filter.include_closed = true; /* listed participants take part whatever their status */
            q[j].allow_slots = to->allow;
            q[j].k = k;
            q[j].explain = true;
            q[j].weights = spec->weights;
        }
        int rc = dt_search(sr, q, nq, res, err);
        if (rc) {
            const char *dot = err ? strchr(err->field, '.') : NULL;
            if (dot && strncmp(err->field, "queries[", 8) == 0) memmove(err->field, dot + 1, strlen(dot + 1) + 1);
            return rc;
        }
        for (size_t j = 0; j < nq && rc == 0; j++) {
            int self = who[i0 + j];
            for (size_t r = 0; r < res[j].n; r++) {
                const dt_match *mt = &res[j].v[r];
                int other = to->pos[mt->slot];
                if (other < 0) continue; /* cannot happen: allow_slots holds participants only */
                int a = from->side == DT_DEMAND ? self : other, b = from->side == DT_DEMAND ? other : self;
                if (!propose) {
                    cedge *c = emap_find(m, a, b);
                    if (c && !c->scored) edge_set(c, mt);
                    continue;
                }
                cedge *c = emap_get(m, a, b);
                if (!c) {
                    rc = nomem(err);
                    break;
                }
                float sc = mt->score > 0 ? mt->score : 0;
                if (!c->proposed || sc > c->score) edge_set(c, mt);
                c->proposed = true;
            }
        }
        for (size_t j = 0; j < nq; j++) dt_match_result_free(&res[j]);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- organisations */

typedef struct org_ent {
    char *norm;
    int person; /* SMEs 0..na-1, holders na.. */
} org_ent;

static int org_cmp(const void *x, const void *y)
{
    return strcmp(((const org_ent *)x)->norm, ((const org_ent *)y)->norm);
}

/* org with surrounding white space dropped and ASCII letters lower-cased; NULL when empty. */
static char *org_norm(const char *org, bool *oom)
{
    *oom = false;
    if (!org) return NULL;
    while (*org == ' ' || *org == '\t' || *org == '\r' || *org == '\n') org++;
    size_t n = strlen(org);
    while (n && (org[n - 1] == ' ' || org[n - 1] == '\t' || org[n - 1] == '\r' || org[n - 1] == '\n')) n--;
    if (!n) return NULL;
    char *s = malloc(n + 1);
    if (!s) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) s[i] = org[i] >= 'A' && org[i] <= 'Z' ? (char)(org[i] + 32) : org[i];
    s[n] = 0;
    return s;
}

/* Sets people[i].org: equal normalised organisations share an id >= 0, none is -1. */
static int assign_orgs(const side_ctx *sa, const side_ctx *sb, dt_pair_person *pa, dt_pair_person *pb, dt_err *err)
{
    size_t total = (size_t)sa->n + (size_t)sb->n, n = 0;
    org_ent *v = malloc((total ? total : 1) * sizeof *v);
    if (!v) return nomem(err);
    int rc = 0;
    for (size_t i = 0; i < total; i++) {
        bool side_b = i >= (size_t)sa->n;
        const side_ctx *s = side_b ? sb : sa;
        int k = side_b ? (int)(i - (size_t)sa->n) : (int)i;
        (side_b ? pb : pa)[k].org = -1;
        bool oom;
        char *norm = org_norm(dt_index_record(s->idx, s->slot[k])->org, &oom);
        if (oom) {
            rc = nomem(err);
            break;
        }
        if (norm) v[n++] = (org_ent){norm, (int)i};
    }
    if (rc == 0) {
        qsort(v, n, sizeof *v, org_cmp);
        int id = -1;
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || strcmp(v[i].norm, v[i - 1].norm) != 0) id++;
            int p = v[i].person;
            if (p < sa->n)
                pa[p].org = id;
            else
                pb[p - sa->n].org = id;
        }
    }
    for (size_t i = 0; i < n; i++) free(v[i].norm);
    free(v);
    return rc;
}

/* ---------------------------------------------------------------- the event */

typedef struct ev {
    const dt_event_spec *spec;
    const char *tenant;
    side_ctx sa, sb;
    dt_pair_person *pa, *pb;
    dt_pair_pair *must, *never, *met;
    size_t n_must, n_never, n_met;
    dt_pair_request *req;
    dt_pair_locked *locked;
    emap edges;
    dt_pair_edge *pedges;
    int *who;
} ev;

static void ev_free(ev *x)
{
    side_free(&x->sa);
    side_free(&x->sb);
    free(x->pa);
    free(x->pb);
    free(x->must);
    free(x->never);
    free(x->met);
    free(x->req);
    free(x->locked);
    emap_free(&x->edges);
    free(x->pedges);
    free(x->who);
}

static int apply_limits(ev *x, const side_ctx *sc, dt_pair_person *pp, const dt_event_limit *lim, size_t n,
                        const char *list, dt_err *err)
{
    const dt_event_spec *sp = x->spec;
    if (n > DT_EVENT_LIST_MAX) return dt_err_set(err, DT_ELIMIT, list, "%zu entries; at most %d", n, DT_EVENT_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        char field[64];
        snprintf(field, sizeof field, "%s[%zu].id", list, i);
        int k, rc = find_participant(sc, x->tenant, lim[i].id, field, true, &k, err);
        if (rc) return rc;
        int mx = lim[i].max_meetings >= 0 ? lim[i].max_meetings : pp[k].max_meetings;
        if (lim[i].max_meetings < -1 || mx > sp->slots) {
            snprintf(field, sizeof field, "%s[%zu].max_meetings", list, i);
            return dt_err_set(err, DT_EINVAL, field, "%d is outside 0..%d (the number of slots)", lim[i].max_meetings,
                              sp->slots);
        }
        /* the event's default guarantee is cut to this participant's own max */
        int mn = lim[i].min_meetings >= 0 ? lim[i].min_meetings : pp[k].min_meetings < mx ? pp[k].min_meetings : mx;
        if (lim[i].min_meetings < -1 || mn > mx) {
            snprintf(field, sizeof field, "%s[%zu].min_meetings", list, i);
            return dt_err_set(err, DT_EINVAL, field, "%d is outside 0..%d (its max_meetings)", lim[i].min_meetings, mx);
        }
        pp[k].max_meetings = mx;
        pp[k].min_meetings = mn;
    }
    return 0;
}

/* Maps a list of id pairs to index pairs. strict: both must be participants (else an error);
 * otherwise pairs naming a non-participant are left out. */
static int map_pairs(ev *x, const dt_event_pairref *in, size_t n, const char *list, bool strict, dt_pair_pair **out,
                     size_t *n_out, dt_err *err)
{
    if (n > DT_EVENT_LIST_MAX) return dt_err_set(err, DT_ELIMIT, list, "%zu entries; at most %d", n, DT_EVENT_LIST_MAX);
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!*out) return nomem(err);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char field[64];
        int a, b, rc;
        snprintf(field, sizeof field, "%s[%zu].sme_id", list, i);
        if ((rc = find_participant(&x->sa, x->tenant, in[i].sme_id, field, strict, &a, err))) return rc;
        snprintf(field, sizeof field, "%s[%zu].holder_id", list, i);
        if ((rc = find_participant(&x->sb, x->tenant, in[i].holder_id, field, strict, &b, err))) return rc;
        if (a >= 0 && b >= 0) (*out)[k++] = (dt_pair_pair){a, b};
    }
    *n_out = k;
    return 0;
}

typedef struct lkey {
    int k1, k2;
    size_t i;
} lkey;

static int lkey_cmp(const void *x, const void *y)
{
    const lkey *a = x, *b = y;
    if (a->k1 != b->k1) return a->k1 < b->k1 ? -1 : 1;
    if (a->k2 != b->k2) return a->k2 < b->k2 ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Locked meetings: ranges, clashes and limits checked here so that messages count from 1 and
 * name participants by id. */
static int map_locked(ev *x, dt_err *err)
{
    const dt_event_spec *sp = x->spec;
    size_t n = sp->n_locked;
    if (n > DT_EVENT_LIST_MAX) return dt_err_set(err, DT_ELIMIT, "locked", "%zu entries; at most %d", n, DT_EVENT_LIST_MAX);
    x->locked = malloc((n ? n : 1) * sizeof *x->locked);
    lkey *keys = malloc((n ? n : 1) * sizeof *keys);
    int *cnt_a = calloc((size_t)x->sa.n + 1, sizeof *cnt_a), *cnt_b = calloc((size_t)x->sb.n + 1, sizeof *cnt_b);
    int rc = 0;
    char field[64];
    if (!x->locked || !keys || !cnt_a || !cnt_b) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const dt_event_locked *l = &sp->locked[i];
        int a, b;
        snprintf(field, sizeof field, "locked[%zu].sme_id", i);
        if ((rc = find_participant(&x->sa, x->tenant, l->sme_id, field, true, &a, err))) break;
        snprintf(field, sizeof field, "locked[%zu].holder_id", i);
        if ((rc = find_participant(&x->sb, x->tenant, l->holder_id, field, true, &b, err))) break;
        if (l->slot < 1 || l->slot > sp->slots) {
            snprintf(field, sizeof field, "locked[%zu].slot", i);
            rc = dt_err_set(err, DT_EINVAL, field, "slot %d is outside 1..%d", l->slot, sp->slots);
            break;
        }
        if (l->table < 1 || l->table > sp->tables) {
            snprintf(field, sizeof field, "locked[%zu].table", i);
            rc = dt_err_set(err, DT_EINVAL, field, "table %d is outside 1..%d", l->table, sp->tables);
            break;
        }
        x->locked[i] = (dt_pair_locked){a, b, l->slot - 1, l->table - 1};
        snprintf(field, sizeof field, "locked[%zu]", i);
        if (++cnt_a[a] > x->pa[a].max_meetings)
            rc = dt_err_set(err, DT_EINVAL, field, "SME '%.128s' has more locked meetings than its max_meetings (%d)",
                            rec_id(&x->sa, a), x->pa[a].max_meetings);
        else if (++cnt_b[b] > x->pb[b].max_meetings)
            rc = dt_err_set(err, DT_EINVAL, field, "holder '%.128s' has more locked meetings than its max_meetings (%d)",
                            rec_id(&x->sb, b), x->pb[b].max_meetings);
    }
    for (int pass = 0; pass < 4 && rc == 0 && n > 1; pass++) {
        for (size_t i = 0; i < n; i++) {
            const dt_pair_locked *l = &x->locked[i];
            keys[i] = pass == 0   ? (lkey){l->slot, l->table, i}
                      : pass == 1 ? (lkey){l->a, l->slot, i}
                      : pass == 2 ? (lkey){l->b, l->slot, i}
                                  : (lkey){l->a, l->b, i};
        }
        qsort(keys, n, sizeof *keys, lkey_cmp);
        for (size_t j = 1; j < n; j++) {
            if (keys[j].k1 != keys[j - 1].k1 || keys[j].k2 != keys[j - 1].k2) continue;
            size_t lo = keys[j - 1].i, hi = keys[j].i;
            const dt_pair_locked *l = &x->locked[hi];
            snprintf(field, sizeof field, "locked[%zu]", hi);
            if (pass == 0)
                rc = dt_err_set(err, DT_EINVAL, field, "table %d of slot %d is also taken by locked[%zu]", l->table + 1,
                                l->slot + 1, lo);
            else if (pass == 3)
                rc = dt_err_set(err, DT_EINVAL, field, "the same pair is already locked in locked[%zu]", lo);
            else
                rc = dt_err_set(err, DT_EINVAL, field, "%s '%.128s' also meets someone in slot %d (locked[%zu])",
                                pass == 1 ? "SME" : "holder", pass == 1 ? rec_id(&x->sa, l->a) : rec_id(&x->sb, l->b),
                                l->slot + 1, lo);
            break;
        }
    }
out:
    free(keys);
    free(cnt_a);
    free(cnt_b);
    return rc;
}

static int map_requests(ev *x, dt_err *err)
{
    const dt_event_spec *sp = x->spec;
    size_t n = sp->n_requests;
    if (n > DT_EVENT_LIST_MAX) return dt_err_set(err, DT_ELIMIT, "requests", "%zu entries; at most %d", n, DT_EVENT_LIST_MAX);
    x->req = malloc((n ? n : 1) * sizeof *x->req);
    if (!x->req) return nomem(err);
    for (size_t i = 0; i < n; i++) {
        const dt_event_request *r = &sp->requests[i];
        char field[64];
        int a, b, rc;
        snprintf(field, sizeof field, "requests[%zu].sme_id", i);
        if ((rc = find_participant(&x->sa, x->tenant, r->sme_id, field, true, &a, err))) return rc;
        snprintf(field, sizeof field, "requests[%zu].holder_id", i);
        if ((rc = find_participant(&x->sb, x->tenant, r->holder_id, field, true, &b, err))) return rc;
        if (r->who < DT_PAIR_REQ_A || r->who > DT_PAIR_REQ_BOTH) {
            snprintf(field, sizeof field, "requests[%zu].who", i);
            return dt_err_set(err, DT_EINVAL, field, "who requested the meeting: the SME, the holder or both (got %d)",
                              r->who);
        }
        x->req[i] = (dt_pair_request){a, b, r->who};
    }
    return 0;
}

/* Candidate pairs: top-L both ways, then the must-meet, requested and locked pairs nobody
 * proposed, scored by their SME over every holder. */
static int build_edges(ev *x, dt_searcher *sr, dt_err *err)
{
    const dt_event_spec *sp = x->spec;
    size_t L = sp->candidates ? sp->candidates : DT_EVENT_CANDIDATES_DEFAULT;
    int nmax = x->sa.n > x->sb.n ? x->sa.n : x->sb.n;
    x->who = malloc(((size_t)nmax + 1) * sizeof *x->who);
    if (!x->who) return nomem(err);
    int rc;
    if (x->sa.n && x->sb.n) {
        for (int i = 0; i < x->sa.n; i++) x->who[i] = i;
        rc = search_side(sr, sp, x->tenant, &x->sa, &x->sb, x->who, (size_t)x->sa.n,
                         L < (size_t)x->sb.n ? L : (size_t)x->sb.n, true, &x->edges, err);
        if (rc) return rc;
        for (int i = 0; i < x->sb.n; i++) x->who[i] = i;
        rc = search_side(sr, sp, x->tenant, &x->sb, &x->sa, x->who, (size_t)x->sb.n,
                         L < (size_t)x->sa.n ? L : (size_t)x->sa.n, true, &x->edges, err);
        if (rc) return rc;
    }
    const struct {
        size_t n;
        const void *v;
        size_t stride, off_a, off_b;
    } wanted[3] = {{x->n_must, x->must, sizeof *x->must, offsetof(dt_pair_pair, a), offsetof(dt_pair_pair, b)},
                   {sp->n_requests, x->req, sizeof *x->req, offsetof(dt_pair_request, a), offsetof(dt_pair_request, b)},
                   {sp->n_locked, x->locked, sizeof *x->locked, offsetof(dt_pair_locked, a), offsetof(dt_pair_locked, b)}};
    bool *full = calloc((size_t)x->sa.n + 1, sizeof *full);
    if (!full) return nomem(err);
    for (int w = 0; w < 3; w++)
        for (size_t i = 0; i < wanted[w].n; i++) {
            const char *p = (const char *)wanted[w].v + i * wanted[w].stride;
            int a = *(const int *)(p + wanted[w].off_a), b = *(const int *)(p + wanted[w].off_b);
            cedge *c = emap_get(&x->edges, a, b);
            if (!c) {
                free(full);
                return nomem(err);
            }
            if (!c->scored) full[a] = true;
        }
    size_t nf = 0;
    for (int i = 0; i < x->sa.n; i++)
        if (full[i]) x->who[nf++] = i;
    free(full);
    if (nf) return search_side(sr, sp, x->tenant, &x->sa, &x->sb, x->who, nf, (size_t)x->sb.n, false, &x->edges, err);
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static int build_result(ev *x, const dt_pair_result *pr, dt_event_result **out, dt_err *err)
{
    dt_event_result *r = calloc(1, sizeof *r);
    if (!r) return nomem(err);
    r->slots = x->spec->slots;
    r->tables = x->spec->tables;
    r->tenant = strdup(x->tenant);
    r->smes = calloc((size_t)x->sa.n + 1, sizeof *r->smes);
    r->holders = calloc((size_t)x->sb.n + 1, sizeof *r->holders);
    r->meetings = calloc(pr->n_meetings + 1, sizeof *r->meetings);
    r->unmet = malloc((pr->n_unmet + 1) * sizeof *r->unmet);
    if (!r->tenant || !r->smes || !r->holders || !r->meetings || !r->unmet) goto nomem;
    r->n_smes = (size_t)x->sa.n;
    r->n_holders = (size_t)x->sb.n;
    for (int side = 0; side < 2; side++) {
        const side_ctx *sc = side ? &x->sb : &x->sa;
        dt_event_person *pp = side ? r->holders : r->smes;
        const dt_pair_count *cnt = side ? pr->count_b : pr->count_a;
        for (int i = 0; i < sc->n; i++) {
            const dt_record *rec = dt_index_record(sc->idx, sc->slot[i]);
            dt_event_person *p = &pp[i];
            p->id = dup_or_empty(rec->id);
            p->title = dup_or_empty(rec->title);
            p->org = dup_or_empty(rec->org);
            if (!p->id || !p->title || !p->org) goto nomem;
            p->max_meetings = cnt[i].max;
            p->min_meetings = cnt[i].min;
            p->reasons = cnt[i].reasons;
            p->agenda = malloc(((size_t)cnt[i].count + 1) * sizeof *p->agenda);
            if (!p->agenda) goto nomem;
        }
    }
    for (size_t k = 0; k < pr->n_meetings; k++) {
        const dt_pair_meeting *pm = &pr->meetings[k];
        dt_event_meeting *m = &r->meetings[k];
        m->sme = pm->a;
        m->holder = pm->b;
        m->slot = pm->slot + 1;
        m->table = pm->table + 1;
        m->score = pm->score;
        m->value = pm->value;
        m->flags = pm->flags;
        for (int f = 0; f < DT_FIT_COUNT; f++) m->fit[f] = -1;
        const cedge *c = emap_find(&x->edges, pm->a, pm->b);
        if (c) {
            m->proposed = c->proposed;
            m->dense = c->dense;
            m->lexical = c->lexical;
            m->structured = c->structured;
            memcpy(m->fit, c->fit, sizeof m->fit);
            m->n_terms = c->n_terms;
            memcpy(m->terms, c->terms, c->n_terms * sizeof *c->terms);
        }
        dt_event_person *ps = &r->smes[pm->a], *ph = &r->holders[pm->b];
        ps->agenda[ps->count++] = k;
        ph->agenda[ph->count++] = k;
    }
    r->n_meetings = pr->n_meetings;
    memcpy(r->unmet, pr->unmet, pr->n_unmet * sizeof *r->unmet);
    r->n_unmet = pr->n_unmet;
    r->total_score = pr->total_score;
    r->total_value = pr->total_value;
    r->n_must_met = pr->n_must_met;
    for (size_t i = 0; i < x->edges.n; i++) r->n_candidates += x->edges.v[i].proposed;
    *out = r;
    return 0;
nomem:
    dt_event_result_free(r);
    return nomem(err);
}

int dt_event_pair(const dt_engine *e, dt_searcher *sr, const dt_event_spec *sp, dt_event_result **out, dt_err *err)
{
    if (!e || !sr || !sp || !out) return dt_err_set(err, DT_EINVAL, NULL, "dt_event_pair: a required argument is NULL");
    const char *tenant = sp->tenant && *sp->tenant ? sp->tenant : "public";
    if (sp->candidates > DT_EVENT_CANDIDATES_MAX)
        return dt_err_set(err, DT_ELIMIT, "candidates", "%zu candidates per participant; at most %d", sp->candidates,
                          DT_EVENT_CANDIDATES_MAX);
    /* slots, tables and the pairing options, checked by pair.c on an empty event before any work */
    dt_pair_problem empty;
    dt_pair_problem_init(&empty);
    empty.slots = sp->slots;
    empty.tables = sp->tables;
    empty.opt = sp->opt;
    dt_pair_result *pr = NULL;
    int rc = dt_pair_solve(&empty, &pr, err);
    dt_pair_result_free(pr);
    pr = NULL;
    if (rc) {
        if (err && strncmp(err->field, "opt.", 4) == 0) memmove(err->field, err->field + 4, strlen(err->field + 4) + 1);
        return rc;
    }
    if (sp->max_meetings < -1 || sp->max_meetings > sp->slots)
        return dt_err_set(err, DT_EINVAL, "max_meetings", "%d is outside 0..%d (the number of slots)", sp->max_meetings,
                          sp->slots);
    int def_max = sp->max_meetings >= 0 ? sp->max_meetings : sp->slots;
    if (sp->min_meetings < 0 || sp->min_meetings > def_max)
        return dt_err_set(err, DT_EINVAL, "min_meetings", "%d is outside 0..%d (max_meetings)", sp->min_meetings, def_max);

    uint64_t t0 = now_us();
    ev x;
    memset(&x, 0, sizeof x);
    x.spec = sp;
    x.tenant = tenant;
    x.sa = (side_ctx){DT_DEMAND, "smes", "SME", NULL, NULL, 0, NULL, NULL};
    x.sb = (side_ctx){DT_ACHIEVEMENT, "holders", "holder", NULL, NULL, 0, NULL, NULL};
    if ((rc = resolve_side(e, tenant, &sp->smes, &x.sa, err)) || (rc = resolve_side(e, tenant, &sp->holders, &x.sb, err)))
        goto out;
    x.pa = calloc((size_t)x.sa.n + 1, sizeof *x.pa);
    x.pb = calloc((size_t)x.sb.n + 1, sizeof *x.pb);
    if (!x.pa || !x.pb) {
        rc = nomem(err);
        goto out;
    }
    for (int i = 0; i < x.sa.n; i++) x.pa[i] = (dt_pair_person){def_max, sp->min_meetings, -1};
    for (int i = 0; i < x.sb.n; i++) x.pb[i] = (dt_pair_person){def_max, sp->min_meetings, -1};
    if ((rc = assign_orgs(&x.sa, &x.sb, x.pa, x.pb, err)) ||
        (rc = apply_limits(&x, &x.sa, x.pa, sp->sme_limits, sp->n_sme_limits, "sme_limits", err)) ||
        (rc = apply_limits(&x, &x.sb, x.pb, sp->holder_limits, sp->n_holder_limits, "holder_limits", err)) ||
        (rc = map_pairs(&x, sp->must_meet, sp->n_must_meet, "must_meet", true, &x.must, &x.n_must, err)) ||
        (rc = map_pairs(&x, sp->never_meet, sp->n_never_meet, "never_meet", false, &x.never, &x.n_never, err)) ||
        (rc = map_pairs(&x, sp->met_before, sp->n_met_before, "met_before", false, &x.met, &x.n_met, err)) ||
        (rc = map_requests(&x, err)) || (rc = map_locked(&x, err)) || (rc = build_edges(&x, sr, err)))
        goto out;
    x.pedges = malloc((x.edges.n + 1) * sizeof *x.pedges);
    if (!x.pedges) {
        rc = nomem(err);
        goto out;
    }
    for (size_t i = 0; i < x.edges.n; i++) x.pedges[i] = (dt_pair_edge){x.edges.v[i].a, x.edges.v[i].b, x.edges.v[i].score};
    uint64_t t1 = now_us();
    dt_pair_problem p;
    dt_pair_problem_init(&p);
    p.na = x.sa.n;
    p.nb = x.sb.n;
    p.a = x.pa;
    p.b = x.pb;
    p.slots = sp->slots;
    p.tables = sp->tables;
    p.edges = x.pedges;
    p.n_edges = x.edges.n;
    p.must = x.must;
    p.n_must = x.n_must;
    p.never = x.never;
    p.n_never = x.n_never;
    p.excluded = x.met;
    p.n_excluded = x.n_met;
    p.requests = x.req;
    p.n_requests = sp->n_requests;
    p.locked = x.locked;
    p.n_locked = sp->n_locked;
    p.opt = sp->opt;
    if ((rc = dt_pair_solve(&p, &pr, err))) goto out;
    uint64_t t2 = now_us();
    rc = build_result(&x, pr, out, err);
    if (rc == 0) {
        (*out)->epoch = dt_engine_epoch(e, tenant);
        (*out)->candidates_us = t1 - t0;
        (*out)->solve_us = t2 - t1;
    }
out:
    dt_pair_result_free(pr);
    ev_free(&x);
    return rc;
}

void dt_event_result_free(dt_event_result *r)
{
    if (!r) return;
    for (int side = 0; side < 2; side++) {
        dt_event_person *pp = side ? r->holders : r->smes;
        size_t n = side ? r->n_holders : r->n_smes;
        for (size_t i = 0; pp && i < n; i++) {
            free(pp[i].id);
            free(pp[i].title);
            free(pp[i].org);
            free(pp[i].agenda);
        }
        free(pp);
    }
    free(r->tenant);
    free(r->meetings);
    free(r->unmet);
    free(r);
}

/* ---------------------------------------------------------------- renderers */

size_t dt_event_summary(const dt_event_result *r, const dt_event_meeting *m, char *buf, size_t n)
{
    (void)r;
    size_t len = 0;
#define PUT(...)                                                                                                       \
    do {                                                                                                               \
        int w_ = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, __VA_ARGS__);                             \
        if (w_ > 0) len += (size_t)w_;                                                                                 \
    } while (0)
    if (n) buf[0] = 0;
    if (m->n_terms) {
        PUT("shared terms: ");
        for (size_t i = 0; i < m->n_terms; i++) PUT("%s%s", i ? ", " : "", m->terms[i].term);
    }
    if (m->fit[DT_FIT_FIELD] >= 1) PUT("%ssame field", len ? "; " : "");
    if (m->fit[DT_FIT_REGION] >= 1) PUT("%ssame region", len ? "; " : "");
    unsigned req = m->flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B);
    if (req)
        PUT("%srequested by %s", len ? "; " : "",
            req == (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B) ? "both" : req == DT_PAIR_M_REQ_A ? "the SME" : "the holder");
    if (m->flags & DT_PAIR_M_MUST) PUT("%smust meet", len ? "; " : "");
    if (m->flags & DT_PAIR_M_LOCKED) PUT("%slocked", len ? "; " : "");
#undef PUT
    return len;
}

static bool csv_needs_quotes(const char *s)
{
    if (!*s) return false;
    if (s[0] == ' ' || s[strlen(s) - 1] == ' ') return true;
    return strpbrk(s, ",\"\r\n") != NULL;
}

/* One CSV field. text: a leading = + - @ or tab gets a ' so spreadsheets show it as text. */
static void csv_field(FILE *f, const char *s, bool text, bool last)
{
    if (!s) s = "";
    bool guard = text && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t');
    if (guard || csv_needs_quotes(s)) {
        fputc('"', f);
        if (guard) fputc('\'', f);
        for (const char *p = s; *p; p++) {
            if (*p == '"') fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

static char *finish_stream(FILE *f, char **buf, size_t *blen, size_t *len)
{
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = true;
    if (bad) {
        free(*buf);
        return NULL;
    }
    if (len) *len = *blen;
    return *buf;
}

char *dt_event_csv_meetings(const dt_event_result *r, size_t *len)
{
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) return NULL;
    fputs("slot,table,sme_id,sme_org,holder_id,holder_org,score,sme_title,holder_title,notes\n", f);
    char notes[1024];
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        const dt_event_person *s = &r->smes[m->sme], *h = &r->holders[m->holder];
        fprintf(f, "%d,%d,", m->slot, m->table);
        csv_field(f, s->id, false, false);
        csv_field(f, s->org, true, false);
        csv_field(f, h->id, false, false);
        csv_field(f, h->org, true, false);
        fprintf(f, "%.4f,", m->score);
        csv_field(f, s->title, true, false);
        csv_field(f, h->title, true, false);
        dt_event_summary(r, m, notes, sizeof notes);
        csv_field(f, notes, true, true);
    }
    return finish_stream(f, &buf, &blen, len);
}

char *dt_event_csv_agendas(const dt_event_result *r, size_t *len)
{
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) return NULL;
    fputs("side,id,org,slot,table,partner_id,partner_org,score,title,partner_title\n", f);
    for (int side = 0; side < 2; side++) {
        const dt_event_person *pp = side ? r->holders : r->smes;
        size_t n = side ? r->n_holders : r->n_smes;
        for (size_t i = 0; i < n; i++)
            for (int j = 0; j < pp[i].count; j++) {
                const dt_event_meeting *m = &r->meetings[pp[i].agenda[j]];
                const dt_event_person *o = side ? &r->smes[m->sme] : &r->holders[m->holder];
                fputs(side ? "holder," : "sme,", f);
                csv_field(f, pp[i].id, false, false);
                csv_field(f, pp[i].org, true, false);
                fprintf(f, "%d,%d,", m->slot, m->table);
                csv_field(f, o->id, false, false);
                csv_field(f, o->org, true, false);
                fprintf(f, "%.4f,", m->score);
                csv_field(f, pp[i].title, true, false);
                csv_field(f, o->title, true, true);
            }
    }
    return finish_stream(f, &buf, &blen, len);
}

static void html_esc(FILE *f, const char *s)
{
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*p, f);
        }
    }
}

/* Escapes at most max_cp code points of s (valid UTF-8), then an ellipsis if any were left out. */
static void html_esc_clip(FILE *f, const char *s, size_t max_cp)
{
    size_t n = 0, cp = 0;
    while (s[n] && cp < max_cp) {
        n++;
        while ((s[n] & 0xC0) == 0x80) n++;
        cp++;
    }
    char *head = strndup(s, n);
    html_esc(f, head ? head : s);
    if (head && s[n]) fputs("&hellip;", f);
    free(head);
}

static void html_party(FILE *f, const char *cls, const dt_event_person *p)
{
    fprintf(f, "<div class=\"%s\"><span class=\"id\">", cls);
    html_esc(f, p->id);
    fputs("</span> ", f);
    html_esc_clip(f, p->title, 80);
    if (p->org[0]) {
        fputs("<div class=\"org\">", f);
        html_esc(f, p->org);
        fputs("</div>", f);
    }
    fputs("</div>", f);
}

static const char HTML_STYLE[] =
    "<style>\n"
    "body{font-family:\"Noto Sans CJK SC\",\"Source Han Sans SC\",\"PingFang SC\",\"Microsoft YaHei\",Arial,sans-serif;"
    "margin:16px;color:#111;background:#fff}\n"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}h3{font-size:13px;margin:0 0 4px}\n"
    ".facts{color:#444;font-size:12px;margin:0 0 8px}\n"
    "table{border-collapse:collapse}\n"
    "table.grid{width:100%;table-layout:fixed}\n"
    ".grid th,.grid td{border:1px solid #8a94a6;padding:4px;vertical-align:top;font-size:11px;overflow-wrap:anywhere}\n"
    ".grid thead th{background:#dfe7f3}\n"
    ".grid tbody th{background:#eef2f8}\n"
    ".grid thead th:first-child{width:64px}\n"
    "td.meeting{background:#eef7ea}\n"
    "td.free{background:#fafafa;color:#9aa}\n"
    ".sme .id{color:#0b4f8a;font-weight:bold}.holder .id{color:#9a3f0b;font-weight:bold}\n"
    ".holder{margin-top:3px;padding-top:3px;border-top:1px dashed #b9c2cf}\n"
    ".org{color:#555}\n"
    ".score{color:#333;margin-top:2px;font-size:10px}\n"
    ".flag{display:inline-block;border:1px solid #777;border-radius:3px;padding:0 3px;margin-left:3px;font-size:9px}\n"
    ".notes li{font-size:12px}\n"
    ".agenda{break-inside:avoid;page-break-inside:avoid;margin:10px 0;padding:6px;border:1px solid #c6cdd8}\n"
    ".agenda table{width:100%}\n"
    ".agenda th,.agenda td{border:1px solid #d0d6df;padding:3px;font-size:11px;text-align:left;vertical-align:top}\n"
    ".agenda thead th{background:#eef2f8}\n"
    ".none{color:#8a3b0b;font-size:12px}\n"
    "@page{size:A4 landscape;margin:10mm}\n"
    "@media print{body{margin:0}.agendas{break-before:page;page-break-before:always}"
    "td.meeting,td.free,.grid th{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\n"
    "</style>\n";

/* The DT_PAIR_R_* bits of mask in words, "; "-separated, escaped. */
static void html_reasons(FILE *f, unsigned mask)
{
    static const char *const text[] = {
        "no candidate partner at or above the minimum score", "a candidate is a never-meet pair",
        "a candidate is of the same organisation", "a candidate met at an earlier event",
        "the candidate partners have all their meetings", "every table of every slot is taken",
        "another meeting would be worth less than it costs the others", "no free slot around the locked meetings",
        "the SME has all its meetings", "the holder has all its meetings"};
    bool first = true;
    for (unsigned i = 0; i < sizeof text / sizeof *text; i++)
        if (mask & (1u << i)) {
            fputs(first ? "" : "; ", f);
            html_esc(f, text[i]);
            first = false;
        }
}

static void html_flags(FILE *f, unsigned flags)
{
    if (flags & DT_PAIR_M_LOCKED) fputs("<span class=\"flag\">locked</span>", f);
    if (flags & DT_PAIR_M_MUST) fputs("<span class=\"flag\">must meet</span>", f);
    if (flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B)) fputs("<span class=\"flag\">requested</span>", f);
}

static void html_agenda(FILE *f, const dt_event_result *r, int side, size_t i)
{
    const dt_event_person *p = side ? &r->holders[i] : &r->smes[i];
    fprintf(f, "<section class=\"agenda\" data-side=\"%s\" data-id=\"", side ? "holder" : "sme");
    html_esc(f, p->id);
    fprintf(f, "\"><h3>%s ", side ? "Holder" : "SME");
    html_esc(f, p->id);
    fputs(" &mdash; ", f);
    html_esc(f, p->title);
    if (p->org[0]) {
        fputs(" (", f);
        html_esc(f, p->org);
        fputs(")", f);
    }
    fprintf(f, "</h3>\n<p class=\"facts\">%d meeting%s (at most %d", p->count, p->count == 1 ? "" : "s",
            p->max_meetings);
    if (p->min_meetings) fprintf(f, ", %d guaranteed", p->min_meetings);
    fputs(")", f);
    if (p->count < p->max_meetings && p->reasons) {
        fputs(". Fewer than the maximum: ", f);
        html_reasons(f, p->reasons);
    }
    fputs("</p>\n", f);
    if (!p->count) {
        fputs("<p class=\"none\">No meetings.</p></section>\n", f);
        return;
    }
    fputs("<table><thead><tr><th>Slot</th><th>Table</th><th>Meets</th><th>Organisation</th><th>Score</th>"
          "<th>Why</th></tr></thead><tbody>\n",
          f);
    char why[1024];
    for (int j = 0; j < p->count; j++) {
        const dt_event_meeting *m = &r->meetings[p->agenda[j]];
        const dt_event_person *o = side ? &r->smes[m->sme] : &r->holders[m->holder];
        fprintf(f, "<tr><td>%d</td><td>%d</td><td><b>", m->slot, m->table);
        html_esc(f, o->id);
        fputs("</b> ", f);
        html_esc(f, o->title);
        fputs("</td><td>", f);
        html_esc(f, o->org);
        fprintf(f, "</td><td>%.3f</td><td>", m->score);
        dt_event_summary(r, m, why, sizeof why);
        html_esc(f, why);
        fputs("</td></tr>\n", f);
    }
    fputs("</tbody></table></section>\n", f);
}

char *dt_event_html(const dt_event_result *r, const char *title, size_t *len)
{
    if (!title || !*title) title = "Event";
    /* grid[t * slots + s]: the meeting at table t + 1 in slot s + 1, or -1; rows up to the
     * highest table in use */
    int rows = 0;
    for (size_t k = 0; k < r->n_meetings; k++)
        if (r->meetings[k].table > rows) rows = r->meetings[k].table;
    size_t cells = (size_t)rows * (size_t)r->slots;
    long *grid = malloc((cells ? cells : 1) * sizeof *grid);
    if (!grid) return NULL;
    for (size_t c = 0; c < cells; c++) grid[c] = -1;
    for (size_t k = 0; k < r->n_meetings; k++)
        grid[(size_t)(r->meetings[k].table - 1) * (size_t)r->slots + (size_t)(r->meetings[k].slot - 1)] = (long)k;
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) {
        free(grid);
        return NULL;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
          f);
    html_esc(f, title);
    fputs(" &mdash; schedule</title>\n", f);
    fputs(HTML_STYLE, f);
    fputs("</head>\n<body>\n<h1>", f);
    html_esc(f, title);
    fputs("</h1>\n<p class=\"facts\">Tenant ", f);
    html_esc(f, r->tenant);
    fprintf(f,
            " &middot; %zu SMEs &middot; %zu holders &middot; %d slots &times; %d tables &middot; %zu meetings "
            "&middot; total score %.3f</p>\n",
            r->n_smes, r->n_holders, r->slots, r->tables, r->n_meetings, r->total_score);
    fputs("<h2>Schedule</h2>\n<table class=\"grid\" id=\"grid\">\n<thead><tr><th>Table</th>", f);
    for (int s = 1; s <= r->slots; s++) fprintf(f, "<th>Slot %d</th>", s);
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int t = 0; t < rows; t++) {
        fprintf(f, "<tr><th>Table %d</th>", t + 1);
        for (int s = 0; s < r->slots; s++) {
            long k = grid[(size_t)t * (size_t)r->slots + (size_t)s];
            if (k < 0) {
                fprintf(f, "<td class=\"free\" data-slot=\"%d\" data-table=\"%d\">free</td>", s + 1, t + 1);
                continue;
            }
            const dt_event_meeting *m = &r->meetings[k];
            fprintf(f, "<td class=\"meeting\" data-slot=\"%d\" data-table=\"%d\">", m->slot, m->table);
            html_party(f, "sme", &r->smes[m->sme]);
            html_party(f, "holder", &r->holders[m->holder]);
            fprintf(f, "<div class=\"score\">score %.3f", m->score);
            html_flags(f, m->flags);
            fputs("</div></td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n", f);
    if (rows < r->tables)
        fprintf(f, "<p class=\"facts\">Tables %d to %d are free in every slot.</p>\n", rows + 1, r->tables);
    if (r->n_unmet) {
        fputs("<h2>Notes</h2>\n<ul class=\"notes\">\n", f);
        for (size_t i = 0; i < r->n_unmet; i++) {
            const dt_pair_unmet *u = &r->unmet[i];
            fputs("<li>", f);
            if (u->kind == DT_PAIR_UNMET_GUARANTEE) {
                const dt_event_person *p = u->side ? &r->holders[u->b] : &r->smes[u->a];
                fprintf(f, "%s ", u->side ? "Holder" : "SME");
                html_esc(f, p->id);
                fprintf(f, " has %d of %d guaranteed meetings", u->have, u->want);
            } else {
                fputs(u->kind == DT_PAIR_UNMET_MUST ? "Must-meet pair " : "Chosen meeting ", f);
                html_esc(f, r->smes[u->a].id);
                fputs(" &ndash; ", f);
                html_esc(f, r->holders[u->b].id);
                fputs(u->kind == DT_PAIR_UNMET_MUST ? " does not meet" : " could not be scheduled", f);
            }
            if (u->reasons) {
                fputs(": ", f);
                html_reasons(f, u->reasons);
            }
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
    }
    fputs("<div class=\"agendas\">\n<h2>Agendas</h2>\n", f);
    for (size_t i = 0; i < r->n_smes; i++) html_agenda(f, r, 0, i);
    for (size_t i = 0; i < r->n_holders; i++) html_agenda(f, r, 1, i);
    fputs("</div>\n</body>\n</html>\n", f);
    free(grid);
    return finish_stream(f, &buf, &blen, len);
}
