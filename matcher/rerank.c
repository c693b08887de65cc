/* rerank.c - the batch re-rank job and the exposure-cap assignment (rerank.h).
 *
 * The job lists the open records of the selected sides once, then worker threads claim batches
 * of them from an atomic counter (demands' batches first). A batch is searched and merged under
 * the shared lock - one dt_search call for the whole batch, then again for the records whose
 * exactness check needs a deeper list (merge_one) - and emitted (or, for demands under a cap,
 * stored as candidates) outside it.
 *
 * Invariants: done counts records whose batch finished (ranked, or skipped because the record
 * went away); emitted counts emit calls; after stop is set no list is emitted. Candidate storage
 * under a cap is one slab of L entries per demand, written only by the worker owning the demand's
 * batch; the achievement id -> index map is guarded by map_mu.
 */
#include "rerank.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define RR_K_MAX 10000
#define RR_SCORE_SCALE 1e6
#define RR_SCORE_MAX 1000.0

/* ---- small containers ---- */

/* A list of strings in one buffer: string i at buf + off[i]. */
typedef struct strlist {
    char *buf;
    size_t len, cap;
    size_t *off;
    size_t n, cap_off;
} strlist;

static void strlist_free(strlist *l)
{
    free(l->buf);
    free(l->off);
    memset(l, 0, sizeof *l);
}

static int strlist_add(strlist *l, const char *s)
{
    size_t n = strlen(s) + 1;
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + n) cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) return -1;
        l->buf = b;
        l->cap = cap;
    }
    if (l->n == l->cap_off) {
        size_t cap = l->cap_off ? l->cap_off * 2 : 256;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return -1;
        l->off = o;
        l->cap_off = cap;
    }
    memcpy(l->buf + l->len, s, n);
    l->off[l->n++] = l->len;
    l->len += n;
    return 0;
}

static const char *strlist_get(const strlist *l, size_t i)
{
    return l->buf + l->off[i];
}

/* id -> index over a strlist (open addressing, index + 1 in each slot). */
typedef struct idmap {
    strlist ids;
    uint64_t *hash;
    uint32_t *slot;
    size_t cap; /* slots, a power of two */
} idmap;

static void idmap_free(idmap *m)
{
    strlist_free(&m->ids);
    free(m->hash);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* Index of id, added when absent; UINT32_MAX when memory runs out. */
static uint32_t idmap_get(idmap *m, const char *id)
{
    uint64_t h = XXH3_64bits(id, strlen(id));
    if (m->cap)
        for (size_t j = (size_t)h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
            uint32_t v = m->slot[j];
            if (!v) break;
            if (m->hash[v - 1] == h && strcmp(strlist_get(&m->ids, v - 1), id) == 0) return v - 1;
        }
    size_t n = m->ids.n;
    if (n >= UINT32_MAX - 1) return UINT32_MAX;
    if ((n + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        uint32_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
            size_t j = (size_t)m->hash[i] & (cap - 1);
            while (slot[j]) j = (j + 1) & (cap - 1);
            slot[j] = (uint32_t)i + 1;
        }
        free(m->slot);
        m->slot = slot;
        m->cap = cap;
    }
    if (n % 1024 == 0) {
        uint64_t *hv = realloc(m->hash, (n + 1024) * sizeof *hv);
        if (!hv) return UINT32_MAX;
        m->hash = hv;
    }
    if (strlist_add(&m->ids, id) < 0) return UINT32_MAX;
    m->hash[n] = h;
    size_t j = (size_t)h & (m->cap - 1);
    while (m->slot[j]) j = (j + 1) & (m->cap - 1);
    m->slot[j] = (uint32_t)n + 1;
    return (uint32_t)n;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the job ---- */

typedef struct cand {
    uint32_t to; /* achievement index in ach_map */
    float score;
} cand;

struct dt_rerank_job {
    dt_engine *e;
    dt_rerank_opts o;
    char tenant[DT_TENANT_MAX + 1];
    dt_weights weights;
    size_t want_dem; /* list length searched for a demand: k, or L under a cap */

    atomic_int state;
    atomic_bool cancel; /* the user asked to stop */
    atomic_bool stop;   /* cancel or a failure: workers stop */
    atomic_bool ran;
    atomic_uint_fast64_t done, total, emitted, assign_done, assign_total, uncertain;
    atomic_int_fast64_t t_start, t_end, t_rank; /* ns; 0 = not yet */

    strlist ids[2];         /* open records listed at the start, per side */
    size_t nb[2];           /* batches per side */
    atomic_size_t next;     /* next batch to claim (demand batches first) */

    pthread_mutex_t emit_mu, map_mu, err_mu;
    bool failed;
    dt_err first_err;
    int first_rc;

    /* exposure cap */
    cand *cands;      /* want_dem per demand */
    uint32_t *n_cand; /* per demand */
    uint8_t *skipped; /* per demand: the record went away before its batch */
    idmap ach_map;
};

void dt_rerank_opts_init(dt_rerank_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->demands = true;
    o->achievements = true;
    o->relearn = true;
    o->batch = 512;
    dt_outcome_policy_default(&o->policy);
}

const char *dt_rerank_state_name(dt_rerank_state s)
{
    static const char *const names[] = {"pending", "building", "ranking", "assigning", "done", "cancelled", "failed"};
    return (unsigned)s <= DT_RERANK_FAILED ? names[s] : "?";
}

dt_rerank_job *dt_rerank_new(dt_engine *e, const dt_rerank_opts *o, dt_err *err)
{
    if (!e || !o) {
        dt_err_set(err, DT_EINVAL, !e ? "engine" : "opts", "is NULL");
        return NULL;
    }
    const char *tenant = o->tenant && *o->tenant ? o->tenant : "public";
    if (strlen(tenant) > DT_TENANT_MAX) {
        dt_err_set(err, DT_EINVAL, "tenant", "longer than %d bytes", DT_TENANT_MAX);
        return NULL;
    }
    if (o->k < 1 || o->k > RR_K_MAX) {
        dt_err_set(err, DT_EINVAL, "k", "must be 1..%d (got %zu)", RR_K_MAX, o->k);
        return NULL;
    }
    size_t L = o->candidates;
    if (o->cap) {
        if (!L) L = o->k * 5 > 50 ? o->k * 5 : 50;
        if (L > RR_K_MAX) L = RR_K_MAX;
        if (L < o->k) L = o->k;
        if (o->candidates && (o->candidates < o->k || o->candidates > RR_K_MAX)) {
            dt_err_set(err, DT_EINVAL, "candidates", "must be k (%zu)..%d (got %zu)", o->k, RR_K_MAX, o->candidates);
            return NULL;
        }
    }
    if (!o->emit) {
        dt_err_set(err, DT_EINVAL, "emit", "an output callback is required");
        return NULL;
    }
    if (!o->lock != !o->unlock) {
        dt_err_set(err, DT_EINVAL, "lock", "give both lock and unlock callbacks, or neither");
        return NULL;
    }
    if (!o->demands && !o->achievements) {
        dt_err_set(err, DT_EINVAL, "sides", "select the demands' lists, the achievements' lists or both");
        return NULL;
    }
    if (o->outcomes && dt_outcome_policy_validate(&o->policy, err) < 0) return NULL;
    dt_weights w = o->weights ? *o->weights : dt_engine_opts_get(e)->weights;
    if (o->weights && (!(w.dense >= 0 && w.lexical >= 0 && w.structured >= 0 && isfinite(w.dense + w.lexical + w.structured)) ||
                       w.dense + w.lexical + w.structured <= 0)) {
        dt_err_set(err, DT_EINVAL, "weights", "weights must be finite, >= 0 and not all 0");
        return NULL;
    }
    dt_rerank_job *j = calloc(1, sizeof *j);
    if (!j) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating a re-rank job");
        return NULL;
    }
    j->e = e;
    j->o = *o;
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    j->o.tenant = j->tenant;
    j->weights = w;
    j->o.weights = o->weights ? &j->weights : NULL; /* NULL keeps the engine's adaptive defaults */
    j->o.candidates = o->cap ? L : 0;
    j->want_dem = o->cap ? L : o->k;
    if (!j->o.batch) j->o.batch = 512;
    if (j->o.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        j->o.threads = n > 0 ? (int)n : 1;
    }
    atomic_init(&j->state, DT_RERANK_PENDING);
    atomic_init(&j->cancel, false);
    atomic_init(&j->stop, false);
    atomic_init(&j->ran, false);
    atomic_init(&j->done, 0);
    atomic_init(&j->total, 0);
    atomic_init(&j->emitted, 0);
    atomic_init(&j->assign_done, 0);
    atomic_init(&j->assign_total, 0);
    atomic_init(&j->uncertain, 0);
    atomic_init(&j->t_start, 0);
    atomic_init(&j->t_end, 0);
    atomic_init(&j->t_rank, 0);
    atomic_init(&j->next, 0);
    pthread_mutex_init(&j->emit_mu, NULL);
    pthread_mutex_init(&j->map_mu, NULL);
    pthread_mutex_init(&j->err_mu, NULL);
    return j;
}

void dt_rerank_free(dt_rerank_job *j)
{
    if (!j) return;
    strlist_free(&j->ids[0]);
    strlist_free(&j->ids[1]);
    free(j->cands);
    free(j->n_cand);
    free(j->skipped);
    idmap_free(&j->ach_map);
    pthread_mutex_destroy(&j->emit_mu);
    pthread_mutex_destroy(&j->map_mu);
    pthread_mutex_destroy(&j->err_mu);
    free(j);
}

void dt_rerank_cancel(dt_rerank_job *j)
{
    atomic_store(&j->cancel, true);
    atomic_store(&j->stop, true);
}

void dt_rerank_get_progress(const dt_rerank_job *j, dt_rerank_progress *p)
{
    dt_rerank_job *m = (dt_rerank_job *)j; /* atomics are read only */
    memset(p, 0, sizeof *p);
    p->state = (dt_rerank_state)atomic_load(&m->state);
    p->done = atomic_load(&m->done);
    p->total = atomic_load(&m->total);
    p->emitted = atomic_load(&m->emitted);
    p->assign_done = atomic_load(&m->assign_done);
    p->assign_total = atomic_load(&m->assign_total);
    p->uncertain = atomic_load(&m->uncertain);
    int64_t t0 = atomic_load(&m->t_start), t1 = atomic_load(&m->t_end), tr = atomic_load(&m->t_rank);
    int64_t now = t1 ? t1 : now_ns();
    p->elapsed = t0 ? (double)(now - t0) / 1e9 : 0;
    double ranking = tr ? (double)(now - tr) / 1e9 : 0;
    p->rate = ranking > 0 && p->done ? (double)p->done / ranking : 0;
    if (p->state == DT_RERANK_DONE)
        p->eta = 0;
    else if (p->rate > 0 && p->state == DT_RERANK_RANKING)
        p->eta = (double)(p->total - p->done) / p->rate;
    else
        p->eta = -1;
}

static void job_lock(dt_rerank_job *j, dt_rerank_lock_mode mode)
{
    if (j->o.lock) j->o.lock(j->o.lock_ud, mode);
}

static void job_unlock(dt_rerank_job *j, dt_rerank_lock_mode mode)
{
    if (j->o.unlock) j->o.unlock(j->o.lock_ud, mode);
}

/* Records the first failure and stops the workers. Returns rc. */
static int job_fail(dt_rerank_job *j, int rc, const dt_err *err)
{
    pthread_mutex_lock(&j->err_mu);
    if (!j->failed) {
        j->failed = true;
        j->first_rc = rc;
        if (err) j->first_err = *err;
        else dt_err_set(&j->first_err, -rc, NULL, "re-rank failed (%s)", dt_err_name(rc));
    }
    pthread_mutex_unlock(&j->err_mu);
    atomic_store(&j->stop, true);
    return rc;
}

/* Hands one list to emit unless the job is stopping. */
static int job_emit(dt_rerank_job *j, const dt_rerank_list *l)
{
    int rc = 0;
    pthread_mutex_lock(&j->emit_mu);
    if (!atomic_load(&j->stop)) {
        dt_err err = DT_ERR_INIT;
        rc = j->o.emit(j->o.emit_ud, l, &err);
        if (rc) {
            if (rc > 0) rc = -rc;
            if (!err.code) dt_err_set(&err, -rc, "emit", "writing the list of %s '%s' failed", dt_side_name(l->side), l->id);
            job_fail(j, rc, &err);
        } else {
            atomic_fetch_add(&j->emitted, 1);
        }
    }
    pthread_mutex_unlock(&j->emit_mu);
    return rc;
}

/* ---- one search with outcome feedback (dt_feedback_search) ---- */

typedef struct partner {
    const char *id;
    unsigned flags;
} partner;

typedef struct hit {
    float score; /* adjusted */
    float delta;
    uint32_t slot;
    uint32_t at; /* index in the search result */
} hit;

struct dt_feedback {
    dt_engine *e;
    const dt_record **recs; /* per query: its stored record (feedback queries) */
    size_t cap_recs;
    dt_query *q;            /* the queries as searched */
    dt_query *q2;           /* a deepening round's queries */
    dt_match_result *res;   /* and their results */
    size_t cap_q, cap_q2, cap_res;
    unsigned char *fb;      /* per query: feedback applies */
    size_t *want;           /* offset + k */
    size_t *off0;           /* the query's offset */
    size_t *depth;          /* candidates its next search asks for */
    unsigned *self_flags;   /* DT_OUTCOME_ACH_* of an achievement query record */
    size_t *p_off, *p_n;    /* its partners in partners[], sorted by id */
    size_t *x_off, *x_n;    /* its exclusions (own exclude_ids, then declined partners) in excl[] */
    size_t cap_fb, cap_want, cap_off0, cap_depth, cap_self, cap_poff, cap_pn, cap_xoff, cap_xn;
    uint32_t *pending;
    size_t n_pending, cap_pending;
    partner *partners;
    size_t n_partners, cap_partners;
    const char **excl;
    size_t n_excl, cap_excl;
    hit *hits;
    size_t cap_hits;
    dt_match *tmp;
    size_t cap_tmp;
    /* flagged achievements of the last tenant seen, valid while its outcome epoch is unchanged */
    char flag_tenant[DT_TENANT_MAX + 1];
    uint64_t flag_epoch;
    dt_outcome_policy flag_policy;
    size_t n_flagged;
    bool flag_valid;
};

dt_feedback *dt_feedback_new(dt_engine *e, dt_err *err)
{
    if (!e) {
        dt_err_set(err, DT_EINVAL, "engine", "is NULL");
        return NULL;
    }
    dt_feedback *f = calloc(1, sizeof *f);
    if (!f) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory for a feedback searcher");
        return NULL;
    }
    f->e = e;
    return f;
}

void dt_feedback_free(dt_feedback *f)
{
    if (!f) return;
    free(f->recs);
    free(f->q);
    free(f->q2);
    free(f->res);
    free(f->fb);
    free(f->want);
    free(f->off0);
    free(f->depth);
    free(f->self_flags);
    free(f->p_off);
    free(f->p_n);
    free(f->x_off);
    free(f->x_n);
    free(f->pending);
    free(f->partners);
    free(f->excl);
    free(f->hits);
    free(f->tmp);
    free(f);
}

/* Grows *p (elements of size sz, capacity *cap) to hold n. 0 or -1. */
static int grow(void *p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < n) c *= 2;
    void *v = realloc(*(void **)p, c * sz);
    if (!v) return -1;
    *(void **)p = v;
    *cap = c;
    return 0;
}

static void collect_partner(void *ud, const char *id, unsigned flags)
{
    dt_feedback *f = ud;
    if (grow(&f->partners, &f->cap_partners, f->n_partners + 1, sizeof *f->partners) < 0) return;
    f->partners[f->n_partners++] = (partner){id, flags};
}

static void count_flagged(void *ud, const char *id, unsigned flags)
{
    (void)ud, (void)id, (void)flags;
}

static int cmp_partner(const void *a, const void *b)
{
    return strcmp(((const partner *)a)->id, ((const partner *)b)->id);
}

static unsigned partner_flags(const dt_feedback *f, size_t i, const char *id)
{
    const partner key = {id, 0};
    const partner *p = f->p_n[i] ? bsearch(&key, f->partners + f->p_off[i], f->p_n[i], sizeof key, cmp_partner) : NULL;
    return p ? p->flags : 0;
}

static int cmp_hit(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* (s, slot) ranks strictly below (t, tslot): lower score, or the same score and a later slot. */
static bool ranks_below(float s, uint32_t slot, float t, uint32_t tslot)
{
    return s < t || (s == t && slot > tslot);
}

/* Achievements of the tenant with policy flags: the count, recomputed when the store changed. */
static size_t flagged_count(dt_feedback *f, const dt_outcome_store *s, const dt_outcome_policy *p, const char *tenant)
{
    uint64_t ep = dt_outcome_epoch(s, tenant);
    if (!f->flag_valid || ep != f->flag_epoch || strcmp(f->flag_tenant, tenant) != 0 ||
        memcmp(&f->flag_policy, p, sizeof *p) != 0) {
        f->n_flagged = dt_outcome_flagged(s, p, tenant, count_flagged, NULL);
        snprintf(f->flag_tenant, sizeof f->flag_tenant, "%s", tenant);
        f->flag_epoch = ep;
        f->flag_policy = *p;
        f->flag_valid = true;
    }
    return f->n_flagged;
}

/* Query i's outcome context: its partners (sorted, for lookups), its exclusions (the query's own
 * plus its declined partners) and the search depth. Decides whether feedback can change anything
 * for it: with no partners, no flags of its own and (for a demand) no flagged achievement in the
 * tenant, every delta is 0 and the query is dt_search's. */
static int prepare_query(dt_feedback *f, size_t i, const dt_outcome_store *s, const dt_outcome_policy *p,
                         const dt_query *q)
{
    dt_query *sq = &f->q[i];
    *sq = *q;
    f->fb[i] = 0;
    f->p_off[i] = f->n_partners;
    f->x_off[i] = f->n_excl;
    f->p_n[i] = f->x_n[i] = 0;
    f->self_flags[i] = 0;
    if (!s || !q->record_id) return 0;
    const char *tenant = q->tenant && *q->tenant ? q->tenant : "public";
    if (!dt_outcome_count(s, tenant)) return 0;
    const dt_record *self = dt_engine_get(f->e, tenant, q->record_side, q->record_id);
    if (!self) return 0; /* dt_search reports it */
    f->recs[i] = self;
    size_t np = dt_outcome_partners(s, tenant, q->record_side, q->record_id, collect_partner, f);
    if (f->n_partners - f->p_off[i] != np) return -DT_ENOMEM;
    f->p_n[i] = np;
    if (q->record_side == DT_ACHIEVEMENT) f->self_flags[i] = dt_outcome_achievement_flags(s, p, tenant, q->record_id);
    bool any = np || f->self_flags[i] || (q->record_side == DT_DEMAND && flagged_count(f, s, p, tenant));
    if (!any) return 0;
    if (np) qsort(f->partners + f->p_off[i], np, sizeof *f->partners, cmp_partner);
    size_t engaged = 0;
    if (grow(&f->excl, &f->cap_excl, f->n_excl + q->n_exclude + np, sizeof *f->excl) < 0) return -DT_ENOMEM;
    for (size_t m = 0; m < q->n_exclude; m++) f->excl[f->n_excl++] = q->exclude_ids[m];
    for (size_t m = 0; m < np; m++) {
        const partner *pp = &f->partners[f->p_off[i] + m];
        if (pp->flags & DT_OUTCOME_PAIR_DECLINED)
            f->excl[f->n_excl++] = pp->id;
        else if (pp->flags & DT_OUTCOME_PAIR_ENGAGED)
            engaged++;
    }
    f->x_n[i] = f->n_excl - f->x_off[i];
    size_t want = q->offset + q->k;
    f->fb[i] = 1;
    f->want[i] = want;
    f->off0[i] = q->offset;
    size_t d = want + want / 2 + 8 + engaged;
    f->depth[i] = d > RR_K_MAX ? (want > RR_K_MAX ? want : RR_K_MAX) : d;
    sq->k = f->depth[i];
    sq->offset = 0;
    sq->n_exclude = f->x_n[i]; /* exclude_ids is set once excl[] stops moving */
    return 0;
}

/* Scores query i's result r with the outcome deltas into f->hits (sorted) and decides whether its
 * first want[i] are certainly the exact top of every allowed candidate: either the search returned
 * every candidate, or no candidate it did not return can beat the want-th. A candidate not
 * returned ranks below the last returned one (s_L, slot_L) by its base score, and only an engaged
 * pair's delta is positive, so it stays below (s_L, slot_L) - or below s_L + engaged_boost when an
 * engaged partner was not returned. *nh receives the number of hits. */
static int merge_one(dt_feedback *f, size_t i, const dt_outcome_store *s, const dt_outcome_policy *p,
                     const dt_match_result *r, size_t *nh, bool *certain)
{
    const dt_query *q = &f->q[i];
    const dt_record *self = f->recs[i];
    const char *tenant = self->tenant && *self->tenant ? self->tenant : "public";
    if (grow(&f->hits, &f->cap_hits, r->n, sizeof *f->hits) < 0) return -DT_ENOMEM;
    size_t n = 0;
    for (size_t m = 0; m < r->n; m++) {
        const dt_match *x = &r->v[m];
        unsigned pf = partner_flags(f, i, x->rec->id), af;
        const dt_record *d, *a;
        if (q->record_side == DT_DEMAND) {
            d = self, a = x->rec;
            af = dt_outcome_achievement_flags(s, p, tenant, a->id);
        } else {
            d = x->rec, a = self;
            af = f->self_flags[i];
        }
        float delta = dt_outcome_delta(p, pf, af, d, a);
        if (delta == -INFINITY) continue; /* declined but not excluded: never listed */
        f->hits[n++] = (hit){x->score + delta, delta, x->slot, (uint32_t)m};
    }
    if (n > 1) qsort(f->hits, n, sizeof *f->hits, cmp_hit);
    *nh = n;
    size_t want = f->want[i];
    if (r->n < f->depth[i] || r->n >= r->total_candidates) {
        *certain = true;
        return 0;
    }
    if (n < want) {
        *certain = false;
        return 0;
    }
    const dt_match *last = &r->v[r->n - 1];
    const hit *kth = &f->hits[want - 1];
    bool engaged_unseen = false;
    for (size_t m = 0; m < f->p_n[i] && !engaged_unseen; m++) {
        const partner *pp = &f->partners[f->p_off[i] + m];
        if ((pp->flags & (DT_OUTCOME_PAIR_ENGAGED | DT_OUTCOME_PAIR_DECLINED)) != DT_OUTCOME_PAIR_ENGAGED) continue;
        bool seen = false;
        for (size_t x = 0; x < r->n && !seen; x++) seen = strcmp(r->v[x].rec->id, pp->id) == 0;
        engaged_unseen = !seen;
    }
    if (engaged_unseen)
        *certain = kth->score > last->score + p->engaged_boost;
    else
        *certain = !ranks_below(kth->score, kth->slot, last->score, last->slot);
    return 0;
}

/* Rewrites r as the slice [offset, offset + k) of query i's hits: adjusted scores, with the
 * outcome delta in each match's feedback part. */
static int apply_hits(dt_feedback *f, size_t i, dt_match_result *r, size_t nh)
{
    size_t lo = f->off0[i], hi = f->want[i] < nh ? f->want[i] : nh;
    size_t n = hi > lo ? hi - lo : 0;
    if (grow(&f->tmp, &f->cap_tmp, n, sizeof *f->tmp) < 0) return -DT_ENOMEM;
    for (size_t m = 0; m < n; m++) {
        const hit *h = &f->hits[lo + m];
        f->tmp[m] = r->v[h->at];
        f->tmp[m].score = h->score;
        f->tmp[m].feedback = h->delta;
    }
    if (n) memcpy(r->v, f->tmp, n * sizeof *f->tmp);
    r->n = n;
    return 0;
}

static void free_results(dt_match_result *res, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        dt_match_result_free(&res[i]);
        memset(&res[i], 0, sizeof res[i]);
    }
}

int dt_feedback_search(dt_feedback *f, dt_searcher *sr, const dt_outcome_store *s, const dt_outcome_policy *p,
                       const dt_query *q, size_t m, dt_match_result *res, size_t *uncertain, dt_err *err)
{
    if (uncertain) *uncertain = 0;
    if (!s || !m) return dt_search(sr, q, m, res, err);
    dt_outcome_policy def;
    if (!p) {
        dt_outcome_policy_default(&def);
        p = &def;
    }
    if (grow(&f->q, &f->cap_q, m, sizeof *f->q) < 0 || grow(&f->recs, &f->cap_recs, m, sizeof *f->recs) < 0 ||
        grow(&f->fb, &f->cap_fb, m, sizeof *f->fb) < 0 || grow(&f->want, &f->cap_want, m, sizeof *f->want) < 0 ||
        grow(&f->off0, &f->cap_off0, m, sizeof *f->off0) < 0 || grow(&f->depth, &f->cap_depth, m, sizeof *f->depth) < 0 ||
        grow(&f->self_flags, &f->cap_self, m, sizeof *f->self_flags) < 0 ||
        grow(&f->p_off, &f->cap_poff, m, sizeof *f->p_off) < 0 || grow(&f->p_n, &f->cap_pn, m, sizeof *f->p_n) < 0 ||
        grow(&f->x_off, &f->cap_xoff, m, sizeof *f->x_off) < 0 || grow(&f->x_n, &f->cap_xn, m, sizeof *f->x_n) < 0 ||
        grow(&f->pending, &f->cap_pending, m, sizeof *f->pending) < 0)
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory preparing %zu searches", m);
    f->n_partners = f->n_excl = f->n_pending = 0;
    for (size_t i = 0; i < m; i++) {
        if (prepare_query(f, i, s, p, &q[i]) < 0)
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory reading the outcomes of queries[%zu]", i);
        if (f->fb[i]) f->pending[f->n_pending++] = (uint32_t)i;
    }
    if (!f->n_pending) return dt_search(sr, q, m, res, err);
    for (size_t k = 0; k < f->n_pending; k++) {
        size_t i = f->pending[k];
        f->q[i].exclude_ids = f->x_n[i] ? f->excl + f->x_off[i] : NULL;
    }
    int rc = dt_search(sr, f->q, m, res, err);
    if (rc) return rc;
    for (;;) {
        size_t still = 0;
        for (size_t k = 0; k < f->n_pending && rc == 0; k++) {
            size_t i = f->pending[k], nh = 0;
            bool certain = true;
            rc = merge_one(f, i, s, p, &res[i], &nh, &certain);
            if (rc) break;
            if (!certain && f->depth[i] < RR_K_MAX) {
                f->depth[i] = f->depth[i] * 4 < RR_K_MAX ? f->depth[i] * 4 : RR_K_MAX;
                f->pending[still++] = (uint32_t)i;
            } else {
                if (!certain && uncertain) (*uncertain)++;
                rc = apply_hits(f, i, &res[i], nh);
            }
        }
        if (rc || !still) break;
        if (grow(&f->q2, &f->cap_q2, still, sizeof *f->q2) < 0 || grow(&f->res, &f->cap_res, still, sizeof *f->res) < 0) {
            rc = -DT_ENOMEM;
            break;
        }
        for (size_t k = 0; k < still; k++) {
            f->q2[k] = f->q[f->pending[k]];
            f->q2[k].k = f->depth[f->pending[k]];
        }
        rc = dt_search(sr, f->q2, still, f->res, err);
        if (rc) {
            free_results(res, m);
            return rc;
        }
        for (size_t k = 0; k < still; k++) {
            dt_match_result_free(&res[f->pending[k]]);
            res[f->pending[k]] = f->res[k];
        }
        f->n_pending = still;
    }
    if (rc) {
        free_results(res, m);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory applying outcome feedback to %zu searches", m);
    }
    return 0;
}

/* ---- one worker ---- */

typedef struct worker {
    dt_rerank_job *j;
    dt_searcher *sr;
    dt_feedback *fb;
    pthread_t tid;
    bool started;
    /* per batch */
    const dt_record **recs; /* the batch's records (NULL: gone or closed) */
    uint32_t *qrec;         /* per query: its record in recs */
    size_t *list_off, *list_n, *rec_name;
    size_t cap_recs, cap_qrec, cap_loff, cap_ln, cap_rn;
    dt_query *q;
    dt_match_result *res;
    size_t cap_q, cap_res;
    float *item_score;
    size_t *item_name; /* per item: index of its id in names */
    size_t n_items, cap_items, cap_item_name;
    strlist names; /* ids of the batch's records and of their items */
    dt_rerank_item *out;
    size_t cap_out;
} worker;

static void worker_free(worker *w)
{
    dt_searcher_free(w->sr);
    dt_feedback_free(w->fb);
    free(w->recs);
    free(w->qrec);
    free(w->list_off);
    free(w->list_n);
    free(w->rec_name);
    free(w->q);
    free(w->res);
    free(w->item_score);
    free(w->item_name);
    strlist_free(&w->names);
    free(w->out);
}

/* Ranks records [first, first + count) of `side`: one dt_feedback_search for the batch under the
 * shared lock (it deepens where the outcome feedback needs it), the lists copied out, then emitted
 * (or, for demands under a cap, stored as candidates) outside the lock. */
static int run_batch(worker *w, dt_side side, size_t first, size_t count)
{
    dt_rerank_job *j = w->j;
    dt_side target = side == DT_DEMAND ? DT_ACHIEVEMENT : DT_DEMAND;
    size_t want = side == DT_DEMAND ? j->want_dem : j->o.k;
    bool capped = side == DT_DEMAND && j->o.cap > 0;
    dt_err err = DT_ERR_INIT;
    int rc = 0;

    if (grow(&w->recs, &w->cap_recs, count, sizeof *w->recs) < 0 || grow(&w->qrec, &w->cap_qrec, count, sizeof *w->qrec) < 0 ||
        grow(&w->q, &w->cap_q, count, sizeof *w->q) < 0 || grow(&w->res, &w->cap_res, count, sizeof *w->res) < 0 ||
        grow(&w->list_off, &w->cap_loff, count, sizeof *w->list_off) < 0 ||
        grow(&w->list_n, &w->cap_ln, count, sizeof *w->list_n) < 0 ||
        grow(&w->rec_name, &w->cap_rn, count, sizeof *w->rec_name) < 0)
        return job_fail(j, -DT_ENOMEM, NULL);
    w->n_items = 0;
    w->names.n = w->names.len = 0;

    job_lock(j, DT_RERANK_LOCK_SHARED);
    size_t nq = 0;
    for (size_t i = 0; i < count; i++) {
        const dt_record *r = dt_engine_get(j->e, j->tenant, side, strlist_get(&j->ids[side], first + i));
        if (r && r->status != DT_OPEN) r = NULL;
        w->recs[i] = r;
        w->list_n[i] = 0;
        if (!r) continue;
        dt_query *q = &w->q[nq];
        dt_query_init(q);
        q->tenant = j->tenant;
        q->target = target;
        q->record_id = r->id;
        q->record_side = side;
        q->k = want;
        q->weights = j->o.weights;
        w->qrec[nq++] = (uint32_t)i;
    }
    size_t unsure = 0;
    if (nq) rc = dt_feedback_search(w->fb, w->sr, j->o.outcomes, &j->o.policy, w->q, nq, w->res, &unsure, &err);
    if (rc) {
        job_unlock(j, DT_RERANK_LOCK_SHARED);
        return job_fail(j, rc, &err);
    }
    if (unsure) atomic_fetch_add(&j->uncertain, unsure);
    for (size_t p = 0; p < nq; p++) {
        size_t i = w->qrec[p];
        const dt_match_result *r = &w->res[p];
        if (rc == 0) {
            w->list_off[i] = w->n_items;
            w->rec_name[i] = w->names.n;
            if (grow(&w->item_score, &w->cap_items, w->n_items + r->n, sizeof *w->item_score) < 0 ||
                grow(&w->item_name, &w->cap_item_name, w->n_items + r->n, sizeof *w->item_name) < 0 ||
                strlist_add(&w->names, w->recs[i]->id) < 0)
                rc = -DT_ENOMEM;
            for (size_t m = 0; m < r->n && rc == 0; m++) {
                w->item_score[w->n_items + m] = r->v[m].score;
                w->item_name[w->n_items + m] = w->names.n;
                if (strlist_add(&w->names, r->v[m].rec->id) < 0) rc = -DT_ENOMEM;
            }
            w->list_n[i] = r->n;
            w->n_items += r->n;
        }
        dt_match_result_free(&w->res[p]);
    }
    job_unlock(j, DT_RERANK_LOCK_SHARED);
    if (rc) return job_fail(j, rc, NULL);

    if (capped) {
        pthread_mutex_lock(&j->map_mu);
        for (size_t i = 0; i < count && rc == 0; i++) {
            size_t d = first + i;
            j->skipped[d] = !w->recs[i];
            j->n_cand[d] = (uint32_t)w->list_n[i];
            for (size_t m = 0; m < w->list_n[i]; m++) {
                size_t it = w->list_off[i] + m;
                uint32_t a = idmap_get(&j->ach_map, strlist_get(&w->names, w->item_name[it]));
                if (a == UINT32_MAX) {
                    rc = -DT_ENOMEM;
                    break;
                }
                j->cands[d * j->want_dem + m] = (cand){a, w->item_score[it]};
            }
        }
        pthread_mutex_unlock(&j->map_mu);
        if (rc) return job_fail(j, rc, NULL);
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        if (!w->recs[i]) continue;
        size_t n = w->list_n[i];
        if (grow(&w->out, &w->cap_out, n, sizeof *w->out) < 0) return job_fail(j, -DT_ENOMEM, NULL);
        for (size_t m = 0; m < n; m++) {
            size_t it = w->list_off[i] + m;
            w->out[m] = (dt_rerank_item){strlist_get(&w->names, w->item_name[it]), w->item_score[it]};
        }
        dt_rerank_list l = {j->tenant, side, strlist_get(&w->names, w->rec_name[i]), w->out, n};
        rc = job_emit(j, &l);
        if (rc) return rc;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    dt_rerank_job *j = w->j;
    size_t total = j->nb[0] + j->nb[1];
    size_t bs = j->o.batch;
    for (;;) {
        if (atomic_load(&j->stop)) break;
        size_t b = atomic_fetch_add(&j->next, 1);
        if (b >= total) break;
        dt_side side = b < j->nb[DT_DEMAND] ? DT_DEMAND : DT_ACHIEVEMENT;
        size_t bi = side == DT_DEMAND ? b : b - j->nb[DT_DEMAND];
        size_t first = bi * bs, n = j->ids[side].n - first < bs ? j->ids[side].n - first : bs;
        if (run_batch(w, side, first, n)) break;
        atomic_fetch_add(&j->done, n);
    }
    return NULL;
}

/* ---- running ---- */

static int list_open(dt_rerank_job *j, dt_err *err)
{
    for (int side = 0; side < 2; side++) {
        if (side == DT_DEMAND ? !j->o.demands : !j->o.achievements) continue;
        dt_index *idx = dt_engine_index(j->e, j->tenant, (dt_side)side);
        size_t slots = idx ? dt_index_slots(idx) : 0;
        for (uint32_t s = 0; s < slots; s++) {
            if (!dt_index_live(idx, s)) continue;
            const dt_record *r = dt_index_record(idx, s);
            if (r->status != DT_OPEN) continue;
            if (strlist_add(&j->ids[side], r->id) < 0)
                return dt_err_set(err, DT_ENOMEM, NULL, "out of memory listing the records of tenant '%s'", j->tenant);
        }
    }
    return 0;
}

static bool assign_stop(void *ud, size_t routed)
{
    dt_rerank_job *j = ud;
    atomic_store(&j->assign_done, routed);
    return atomic_load(&j->stop);
}

/* Solves the exposure cap over the stored candidates and emits the demands' lists. */
static int assign_and_emit(dt_rerank_job *j, dt_err *err)
{
    size_t nd = j->ids[DT_DEMAND].n, L = j->want_dem;
    size_t *off = malloc((nd + 1) * sizeof *off);
    size_t ne = 0;
    for (size_t d = 0; d < nd; d++) ne += j->n_cand[d];
    dt_rerank_edge *edges = malloc((ne ? ne : 1) * sizeof *edges);
    uint8_t *chosen = malloc(ne ? ne : 1);
    dt_rerank_item *items = malloc(j->o.k * sizeof *items);
    int rc = 0;
    if (!off || !edges || !chosen || !items) {
        rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory for the exposure-cap assignment");
        goto out;
    }
    ne = 0;
    for (size_t d = 0; d < nd; d++) {
        off[d] = ne;
        for (uint32_t m = 0; m < j->n_cand[d]; m++) {
            const cand *c = &j->cands[d * L + m];
            edges[ne++] = (dt_rerank_edge){c->to, c->score};
        }
    }
    off[nd] = ne;
    atomic_store(&j->assign_total, nd);
    rc = dt_rerank_cap_assign(nd, off, edges, j->ach_map.ids.n, j->o.k, j->o.cap, chosen, NULL, NULL, assign_stop, j,
                              err);
    if (rc) goto out;
    atomic_store(&j->assign_done, nd);
    for (size_t d = 0; d < nd && rc == 0; d++) {
        if (j->skipped[d]) continue;
        size_t n = 0;
        for (size_t e = off[d]; e < off[d + 1]; e++)
            if (chosen[e]) items[n++] = (dt_rerank_item){strlist_get(&j->ach_map.ids, edges[e].to), edges[e].score};
        dt_rerank_list l = {j->tenant, DT_DEMAND, strlist_get(&j->ids[DT_DEMAND], d), items, n};
        rc = job_emit(j, &l);
        if (atomic_load(&j->stop)) break;
    }
out:
    free(off);
    free(edges);
    free(chosen);
    free(items);
    return rc;
}

static int finish(dt_rerank_job *j, int rc, dt_err *err)
{
    pthread_mutex_lock(&j->err_mu);
    bool failed = j->failed;
    if (failed) {
        rc = j->first_rc;
        if (err) *err = j->first_err;
    }
    pthread_mutex_unlock(&j->err_mu);
    atomic_store(&j->t_end, now_ns());
    if (failed || rc < 0) {
        atomic_store(&j->state, DT_RERANK_FAILED);
        return rc < 0 ? rc : -DT_EINTERNAL;
    }
    if (atomic_load(&j->cancel) || rc == DT_RERANK_INTERRUPTED) {
        atomic_store(&j->state, DT_RERANK_CANCELLED);
        return DT_RERANK_INTERRUPTED;
    }
    atomic_store(&j->state, DT_RERANK_DONE);
    return 0;
}

int dt_rerank_run(dt_rerank_job *j, dt_err *err)
{
    if (atomic_exchange(&j->ran, true)) return dt_err_set(err, DT_EINVAL, "job", "a re-rank job runs only once");
    atomic_store(&j->t_start, now_ns());
    if (atomic_load(&j->stop)) return finish(j, DT_RERANK_INTERRUPTED, err);
    int rc = 0;

    if (j->o.relearn && strcmp(dt_engine_dense_kind(j->e, j->tenant), "external") != 0) {
        atomic_store(&j->state, DT_RERANK_BUILDING);
        if (j->o.relearn_fn) {
            rc = j->o.relearn_fn(j->o.lock_ud, j->tenant, err);
        } else {
            job_lock(j, DT_RERANK_LOCK_NO_WRITERS);
            dt_engine_relearn *rl = NULL;
            rc = dt_engine_relearn_prepare(j->e, j->tenant, &rl, err);
            if (rc == 0 && rl) {
                job_lock(j, DT_RERANK_LOCK_EXCLUSIVE);
                rc = dt_engine_relearn_install(j->e, rl, err);
                job_unlock(j, DT_RERANK_LOCK_EXCLUSIVE);
            }
            dt_engine_relearn_free(rl);
            job_unlock(j, DT_RERANK_LOCK_NO_WRITERS);
        }
        if (rc) return finish(j, rc, err);
    }
    if (atomic_load(&j->stop)) return finish(j, DT_RERANK_INTERRUPTED, err);

    job_lock(j, DT_RERANK_LOCK_SHARED);
    if (!dt_engine_index(j->e, j->tenant, DT_DEMAND) && !dt_engine_index(j->e, j->tenant, DT_ACHIEVEMENT))
        rc = dt_err_set(err, DT_ENOTFOUND, "tenant", "no records in tenant '%s'", j->tenant);
    else
        rc = list_open(j, err);
    job_unlock(j, DT_RERANK_LOCK_SHARED);
    if (rc) return finish(j, rc, err);

    size_t nd = j->ids[DT_DEMAND].n, bs = j->o.batch;
    j->nb[DT_DEMAND] = (nd + bs - 1) / bs;
    j->nb[DT_ACHIEVEMENT] = (j->ids[DT_ACHIEVEMENT].n + bs - 1) / bs;
    if (j->o.cap && nd) {
        size_t L = j->want_dem, cells;
        if (__builtin_mul_overflow(nd, L, &cells)) return finish(j, dt_err_set(err, DT_ELIMIT, "candidates", "too many candidates"), err);
        j->cands = malloc(cells * sizeof *j->cands);
        j->n_cand = calloc(nd, sizeof *j->n_cand);
        j->skipped = calloc(nd, 1);
        if (!j->cands || !j->n_cand || !j->skipped)
            return finish(j, dt_err_set(err, DT_ENOMEM, NULL, "out of memory for %zu x %zu exposure-cap candidates", nd, L), err);
    }
    atomic_store(&j->total, nd + j->ids[DT_ACHIEVEMENT].n);
    atomic_store(&j->t_rank, now_ns());
    atomic_store(&j->state, DT_RERANK_RANKING);

    size_t nb = j->nb[0] + j->nb[1];
    size_t nw = (size_t)j->o.threads < nb ? (size_t)j->o.threads : nb;
    if (nw < 1) nw = 1;
    worker *ws = calloc(nw, sizeof *ws);
    if (!ws) return finish(j, dt_err_set(err, DT_ENOMEM, NULL, "out of memory starting workers"), err);
    size_t ready = 0;
    for (; ready < nw; ready++) {
        ws[ready].j = j;
        dt_err e2 = DT_ERR_INIT;
        ws[ready].sr = dt_searcher_new(j->e, &e2);
        if (ws[ready].sr && !(ws[ready].fb = dt_feedback_new(j->e, &e2))) {
            dt_searcher_free(ws[ready].sr);
            ws[ready].sr = NULL;
        }
        if (!ws[ready].sr) {
            if (ready == 0) {
                free(ws);
                if (err) *err = e2;
                return finish(j, -e2.code, err);
            }
            break;
        }
    }
    for (size_t i = 1; i < ready; i++) ws[i].started = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) == 0;
    worker_main(&ws[0]);
    for (size_t i = 1; i < ready; i++)
        if (ws[i].started) pthread_join(ws[i].tid, NULL);
    /* a worker that could not start leaves its batches to the others: run what is left */
    if (!atomic_load(&j->stop) && atomic_load(&j->next) < nb) worker_main(&ws[0]);
    for (size_t i = 0; i < ready; i++) worker_free(&ws[i]);
    free(ws);

    if (atomic_load(&j->stop)) return finish(j, DT_RERANK_INTERRUPTED, err);
    if (j->o.cap && nd) {
        atomic_store(&j->state, DT_RERANK_ASSIGNING);
        rc = assign_and_emit(j, err);
        if (rc < 0) job_fail(j, rc, err);
    }
    return finish(j, rc, err);
}

/* ---- the exposure-cap assignment ---- */

/* Lexicographic cost: first the number of unfilled list entries, then minus the score. */
typedef struct lc {
    int64_t b, s;
} lc;

static inline bool lc_less(lc x, lc y)
{
    return x.b < y.b || (x.b == y.b && x.s < y.s);
}

typedef struct hentry {
    lc d;
    uint32_t v;
} hentry;

typedef struct heap {
    hentry *h;
    size_t n, cap;
} heap;

static int heap_push(heap *h, lc d, uint32_t v)
{
    if (grow(&h->h, &h->cap, h->n + 1, sizeof *h->h) < 0) return -1;
    size_t i = h->n++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!lc_less(d, h->h[p].d)) break;
        h->h[i] = h->h[p];
        i = p;
    }
    h->h[i] = (hentry){d, v};
    return 0;
}

static hentry heap_pop(heap *h)
{
    hentry top = h->h[0], x = h->h[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && lc_less(h->h[c + 1].d, h->h[c].d)) c++;
        if (!lc_less(h->h[c].d, x.d)) break;
        h->h[i] = h->h[c];
        i = c;
    }
    if (h->n) h->h[i] = x;
    return top;
}

enum { PAR_NONE = 0, PAR_FWD, PAR_REV, PAR_SINK, PAR_BYPASS };

int dt_rerank_cap_assign(size_t nl, const size_t *off, const dt_rerank_edge *edges, size_t nr, size_t k, size_t cap,
                         uint8_t *chosen, size_t *n_chosen, int64_t *value, bool (*stop)(void *ud, size_t routed),
                         void *stop_ud, dt_err *err)
{
    if (k == 0 || cap == 0) return dt_err_set(err, DT_EINVAL, k == 0 ? "k" : "cap", "must be at least 1");
    size_t ne = nl ? off[nl] : 0;
    if (nl >= UINT32_MAX / 2 || nr >= UINT32_MAX / 2 || ne >= UINT32_MAX - 1)
        return dt_err_set(err, DT_EINVAL, "edges", "more than %u demands, achievements or edges", UINT32_MAX / 2);
    size_t N = nl + nr + 1, T = N - 1;
    int64_t *w = malloc((ne ? ne : 1) * sizeof *w);
    uint32_t *left = malloc((ne ? ne : 1) * sizeof *left);
    uint32_t *pos = malloc((ne ? ne : 1) * sizeof *pos);
    uint32_t *indeg = calloc(nr + 1, sizeof *indeg);
    size_t *roff = malloc((nr + 1) * sizeof *roff);
    uint32_t *load = calloc(nr ? nr : 1, sizeof *load);
    lc *pi = malloc(N * sizeof *pi), *dist = malloc(N * sizeof *dist);
    uint32_t *seen = calloc(N, sizeof *seen), *popped_at = calloc(N, sizeof *popped_at);
    uint8_t *pk = malloc(N);
    uint32_t *pv = malloc(N * sizeof *pv);
    uint32_t *popped = malloc(N * sizeof *popped);
    uint32_t *rlist = NULL;
    heap h = {0};
    int rc = 0;
    if (!w || !left || !pos || !indeg || !roff || !load || !pi || !dist || !seen || !popped_at || !pk || !pv ||
        !popped) {
        rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory for the exposure-cap assignment (%zu edges)", ne);
        goto out;
    }
    int64_t wmax = 0;
    for (size_t d = 0; d < nl && rc == 0; d++) {
        if (off[d + 1] < off[d]) {
            rc = dt_err_set(err, DT_EINVAL, "off", "offsets decrease at demand %zu", d);
            break;
        }
        for (size_t e = off[d]; e < off[d + 1]; e++) {
            const dt_rerank_edge *x = &edges[e];
            if (x->to >= nr) {
                rc = dt_err_set(err, DT_EINVAL, "edges", "edge %zu of demand %zu targets %u, beyond %zu achievements", e - off[d], d, x->to, nr);
                break;
            }
            if (!isfinite(x->score) || fabs(x->score) > RR_SCORE_MAX) {
                rc = dt_err_set(err, DT_EINVAL, "edges", "edge %zu of demand %zu has score %g: must be finite, within +-%g", e - off[d], d,
                                (double)x->score, RR_SCORE_MAX);
                break;
            }
            if (seen[x->to] == d + 1) {
                rc = dt_err_set(err, DT_EINVAL, "edges", "demand %zu lists achievement %u twice", d, x->to);
                break;
            }
            seen[x->to] = (uint32_t)d + 1;
            w[e] = llround((double)x->score * RR_SCORE_SCALE);
            if (w[e] > wmax) wmax = w[e];
            left[e] = (uint32_t)d;
            indeg[x->to]++;
            chosen[e] = 0;
        }
    }
    if (rc) goto out;
    size_t tot = 0;
    for (size_t a = 0; a < nr; a++) {
        roff[a] = tot;
        tot += indeg[a] < cap ? indeg[a] : cap;
    }
    roff[nr] = tot;
    rlist = malloc((tot ? tot : 1) * sizeof *rlist);
    if (!rlist) {
        rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory for the exposure-cap assignment");
        goto out;
    }
    /* potentials making every residual arc's reduced cost >= 0 at the start */
    for (size_t v = 0; v < N; v++) pi[v] = (lc){0, v < nl ? 0 : -wmax};
    memset(seen, 0, N * sizeof *seen);
    uint32_t stamp = 0;

    for (size_t d0 = 0; d0 < nl && rc == 0; d0++) {
        if (stop && d0 % 64 == 0 && stop(stop_ud, d0)) {
            rc = DT_RERANK_INTERRUPTED;
            break;
        }
        size_t deg = off[d0 + 1] - off[d0], supply = deg < k ? deg : k;
        for (size_t unit = 0; unit < supply; unit++) {
            /* Dijkstra from d0 on reduced costs, stopping when the sink is settled */
            stamp++;
            if (stamp == UINT32_MAX) { /* wrap: reset the marks */
                memset(seen, 0, N * sizeof *seen);
                memset(popped_at, 0, N * sizeof *popped_at);
                stamp = 1;
            }
            size_t np = 0;
            h.n = 0;
            dist[d0] = (lc){0, 0};
            seen[d0] = stamp;
            pk[d0] = PAR_NONE;
            if (heap_push(&h, dist[d0], (uint32_t)d0) < 0) goto nomem;
            while (h.n) {
                hentry x = heap_pop(&h);
                uint32_t u = x.v;
                if (popped_at[u] == stamp || lc_less(dist[u], x.d)) continue;
                popped_at[u] = stamp;
                popped[np++] = u;
                if (u == T) break;
#define RELAX(V, CB, CS, KIND, VAL)                                                                  \
    do {                                                                                             \
        size_t v_ = (V);                                                                             \
        if (popped_at[v_] == stamp) break;                                                           \
        lc nd_ = {dist[u].b + (CB) + pi[u].b - pi[v_].b, dist[u].s + (CS) + pi[u].s - pi[v_].s};     \
        if (seen[v_] != stamp || lc_less(nd_, dist[v_])) {                                           \
            seen[v_] = stamp;                                                                        \
            dist[v_] = nd_;                                                                          \
            pk[v_] = (KIND);                                                                         \
            pv[v_] = (uint32_t)(VAL);                                                                \
            if (heap_push(&h, nd_, (uint32_t)v_) < 0) goto nomem;                                    \
        }                                                                                            \
    } while (0)
                if (u < nl) {
                    for (size_t e = off[u]; e < off[u + 1]; e++)
                        if (!chosen[e]) RELAX(nl + edges[e].to, 0, -w[e], PAR_FWD, e);
                    RELAX(T, 1, 0, PAR_BYPASS, u);
                } else {
                    size_t a = u - nl;
                    if (load[a] < cap) RELAX(T, 0, 0, PAR_SINK, a);
                    for (uint32_t i = 0; i < load[a]; i++) {
                        uint32_t e = rlist[roff[a] + i];
                        RELAX(left[e], 0, w[e], PAR_REV, e);
                    }
                }
#undef RELAX
            }
            /* potentials: pi += dist - dist(T) on settled nodes keeps reduced costs >= 0 */
            lc D = dist[T];
            for (size_t i = 0; i < np; i++) {
                uint32_t v = popped[i];
                pi[v].b += dist[v].b - D.b;
                pi[v].s += dist[v].s - D.s;
            }
            /* augment one unit along the path */
            size_t v = T;
            while (v != d0) {
                uint32_t x = pv[v];
                switch (pk[v]) {
                case PAR_SINK: v = nl + x; break;
                case PAR_BYPASS: v = x; break;
                case PAR_FWD: { /* left[x] -> achievement v: the edge becomes chosen */
                    size_t a = v - nl;
                    chosen[x] = 1;
                    pos[x] = load[a];
                    rlist[roff[a] + load[a]++] = x;
                    v = left[x];
                    break;
                }
                case PAR_REV: { /* achievement to[x] -> demand v: the edge is given up */
                    size_t a = edges[x].to;
                    chosen[x] = 0;
                    uint32_t last = rlist[roff[a] + --load[a]];
                    rlist[roff[a] + pos[x]] = last;
                    pos[last] = pos[x];
                    v = nl + a;
                    break;
                }
                default:
                    rc = dt_err_set(err, DT_EINTERNAL, NULL, "exposure-cap assignment: broken augmenting path");
                    goto out;
                }
            }
        }
    }
    if (rc == 0) {
        size_t nc = 0;
        int64_t val = 0;
        for (size_t e = 0; e < ne; e++)
            if (chosen[e]) nc++, val += w[e];
        if (n_chosen) *n_chosen = nc;
        if (value) *value = val;
        if (stop) stop(stop_ud, nl);
    }
    goto out;
nomem:
    rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory for the exposure-cap assignment");
out:
    free(w);
    free(left);
    free(pos);
    free(indeg);
    free(roff);
    free(load);
    free(pi);
    free(dist);
    free(seen);
    free(popped_at);
    free(pk);
    free(pv);
    free(popped);
    free(rlist);
    free(h.h);
    return rc;
}
