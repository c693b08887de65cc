/* index.c - one (tenant, side) collection: records, tombstones, columns, matrix, BM25 postings.
 *
 * Invariants:
 * - slots [0, n) are in use; bit s of `live` is set iff slot s holds the current version of its id;
 * - id_head/id_next chain every slot (live or not) by hash of its id; lookups skip dead slots;
 * - every slot's terms are in terms[term_off[s] .. term_off[s] + term_n[s]), sorted by term;
 * - postings[list(t)] holds (slot, tf) for every slot, live or dead, that contains t, in slot order;
 *   df(t) counts only live slots, so BM25 statistics never include tombstones;
 * - X has cap rows of dim floats; rows >= n are zero.
 */
#include "index.h"

#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "topk.h"
#include "u32map.h"

typedef struct posting_list {
    uint32_t *slot;
    float *tf;
    uint32_t n, cap;
    uint32_t df; /* live slots among them */
} posting_list;

struct dt_index {
    char tenant[DT_TENANT_MAX + 1];
    dt_side side;
    size_t dim;
    size_t n, cap, n_live, n_open;
    uint64_t epoch;
    uint64_t generation; /* compactions installed: slot numbers change with it */
    /* a compacted copy not installed yet: its records' strings belong to the index it was built
     * from (dt_index_compact_build), so freeing it leaves them */
    bool borrowed;
    uint64_t base_epoch; /* epoch of that index when the copy was built */

    dt_record *recs;
    uint64_t *live;
    float *X;

    /* columns */
    uint8_t *trl;
    uint8_t *status;
    uint32_t *modes;
    double *pmin, *pmax;
    dt_codes *codes;

    /* lexical forward index */
    uint32_t *doc_len;
    size_t *term_off;
    uint32_t *term_n;
    dt_tf *terms;
    size_t terms_len, terms_cap;
    double sum_doc_len; /* over live slots */

    /* lexical inverted index */
    dt_u32map term_list; /* term -> index into lists */
    posting_list *lists;
    size_t n_lists, lists_cap;

    /* id map */
    uint32_t *id_head; /* id_cap buckets; UINT32_MAX = empty */
    uint32_t *id_next; /* cap entries */
    size_t id_cap;
};

#define NIL UINT32_MAX

void dt_filter_init(dt_filter *f)
{
    memset(f, 0, sizeof *f);
    f->price_min = NAN;
    f->price_max = NAN;
}

static inline bool bit_get(const uint64_t *b, size_t i)
{
    return (b[i >> 6] >> (i & 63)) & 1;
}
static inline void bit_set(uint64_t *b, size_t i)
{
    b[i >> 6] |= 1ull << (i & 63);
}
static inline void bit_clear(uint64_t *b, size_t i)
{
    b[i >> 6] &= ~(1ull << (i & 63));
}

static uint64_t id_hash(const char *id)
{
    return XXH3_64bits(id, strlen(id));
}

dt_index *dt_index_new(const char *tenant, dt_side side, size_t dim, dt_err *err)
{
    if (!tenant || !*tenant) tenant = "public";
    if (strlen(tenant) > DT_TENANT_MAX) {
        dt_err_set(err, DT_EINVAL, "tenant", "longer than %d bytes", DT_TENANT_MAX);
        return NULL;
    }
    dt_index *idx = calloc(1, sizeof *idx);
    if (!idx) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating an index");
        return NULL;
    }
    snprintf(idx->tenant, sizeof idx->tenant, "%s", tenant);
    idx->side = side;
    idx->dim = dim;
    dt_u32map_init(&idx->term_list);
    return idx;
}

static void free_lists(dt_index *idx)
{
    for (size_t i = 0; i < idx->n_lists; i++) {
        free(idx->lists[i].slot);
        free(idx->lists[i].tf);
    }
    free(idx->lists);
    idx->lists = NULL;
    idx->n_lists = idx->lists_cap = 0;
    dt_u32map_free(&idx->term_list);
}

void dt_index_free(dt_index *idx)
{
    if (!idx) return;
    if (!idx->borrowed)
        for (size_t s = 0; s < idx->n; s++) dt_record_free(&idx->recs[s]);
    free(idx->recs);
    free(idx->live);
    free(idx->X);
    free(idx->trl);
    free(idx->status);
    free(idx->modes);
    free(idx->pmin);
    free(idx->pmax);
    free(idx->codes);
    free(idx->doc_len);
    free(idx->term_off);
    free(idx->term_n);
    free(idx->terms);
    free_lists(idx);
    free(idx->id_head);
    free(idx->id_next);
    free(idx);
}

const char *dt_index_tenant(const dt_index *idx)
{
    return idx->tenant;
}
dt_side dt_index_side(const dt_index *idx)
{
    return idx->side;
}
size_t dt_index_slots(const dt_index *idx)
{
    return idx->n;
}
size_t dt_index_count(const dt_index *idx)
{
    return idx->n_live;
}
size_t dt_index_count_open(const dt_index *idx)
{
    return idx->n_open;
}
uint64_t dt_index_generation(const dt_index *idx)
{
    return idx->generation;
}

uint64_t dt_index_epoch(const dt_index *idx)
{
    return idx->epoch;
}
size_t dt_index_dim(const dt_index *idx)
{
    return idx->dim;
}
const float *dt_index_matrix(const dt_index *idx)
{
    return idx->X;
}
float *dt_index_row(dt_index *idx, uint32_t slot)
{
    return idx->X ? idx->X + (size_t)slot * idx->dim : NULL;
}
bool dt_index_live(const dt_index *idx, uint32_t slot)
{
    return slot < idx->n && bit_get(idx->live, slot);
}
const dt_record *dt_index_record(const dt_index *idx, uint32_t slot)
{
    return slot < idx->n ? &idx->recs[slot] : NULL;
}
void dt_index_terms(const dt_index *idx, uint32_t slot, const dt_tf **terms, size_t *n)
{
    *terms = idx->terms + idx->term_off[slot];
    *n = idx->term_n[slot];
}
uint32_t dt_index_doc_len(const dt_index *idx, uint32_t slot)
{
    return idx->doc_len[slot];
}

/* Grows a per-slot array to cap elements of size sz, zeroing the new part. */
static int grow(void **p, size_t old_cap, size_t cap, size_t sz)
{
    void *q = realloc(*p, cap * sz);
    if (!q) return -1;
    memset((char *)q + old_cap * sz, 0, (cap - old_cap) * sz);
    *p = q;
    return 0;
}

static float *alloc_matrix(size_t rows, size_t dim)
{
    return dt_topk_alloc(rows * dim * sizeof(float)); /* huge pages for large matrices */
}

static int rehash_ids(dt_index *idx, size_t id_cap)
{
    uint32_t *head = malloc(id_cap * sizeof *head);
    if (!head) return -1;
    memset(head, 0xff, id_cap * sizeof *head);
    for (size_t s = 0; s < idx->n; s++) {
        size_t b = id_hash(idx->recs[s].id) & (id_cap - 1);
        idx->id_next[s] = head[b];
        head[b] = (uint32_t)s;
    }
    free(idx->id_head);
    idx->id_head = head;
    idx->id_cap = id_cap;
    return 0;
}

/* The per-slot arrays, by offset and element size (live is in 64-bit words). */
#define SLOT_ARRAY(f) {offsetof(dt_index, f), sizeof *((dt_index *)0)->f}
static const struct {
    size_t off, sz;
} slot_arrays[] = {SLOT_ARRAY(recs),  SLOT_ARRAY(live),    SLOT_ARRAY(trl),      SLOT_ARRAY(status),
                   SLOT_ARRAY(modes), SLOT_ARRAY(pmin),    SLOT_ARRAY(pmax),     SLOT_ARRAY(codes),
                   SLOT_ARRAY(doc_len), SLOT_ARRAY(term_off), SLOT_ARRAY(term_n), SLOT_ARRAY(id_next)};
#define N_SLOT_ARRAYS (sizeof slot_arrays / sizeof slot_arrays[0])

static void **slot_array(dt_index *idx, size_t i)
{
    return (void **)((char *)idx + slot_arrays[i].off);
}

static size_t slot_count(size_t i, size_t cap)
{
    return slot_arrays[i].off == offsetof(dt_index, live) ? (cap + 63) / 64 : cap;
}

static size_t grown_cap(const dt_index *idx, size_t want)
{
    size_t cap = idx->cap ? idx->cap * 2 : 64;
    while (cap < want) cap *= 2;
    return cap;
}

static int reserve_slots(dt_index *idx, size_t want, dt_err *err)
{
    if (want <= idx->cap) return 0;
    if (want > UINT32_MAX - 1) return dt_err_set(err, DT_ELIMIT, NULL, "an index holds at most 2^32-2 slots");
    size_t cap = grown_cap(idx, want), old = idx->cap;
    for (size_t i = 0; i < N_SLOT_ARRAYS; i++)
        if (grow(slot_array(idx, i), slot_count(i, old), slot_count(i, cap), slot_arrays[i].sz))
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory growing an index to %zu slots", cap);
    if (idx->dim) {
        float *X = alloc_matrix(cap, idx->dim);
        if (!X) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory growing the matrix to %zu rows", cap);
        if (idx->X) memcpy(X, idx->X, idx->n * idx->dim * sizeof(float));
        free(idx->X);
        idx->X = X;
    }
    idx->cap = cap;
    if (idx->id_cap < cap && rehash_ids(idx, cap) < 0)
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory growing the id map");
    return 0;
}

/* Room made without changing the index: new arrays holding copies (dt_index_growth_prepare). */
struct dt_index_growth {
    size_t cap, id_cap, terms_cap; /* 0: that part does not grow */
    void *arr[N_SLOT_ARRAYS];
    float *X;
    uint32_t *id_head;
    dt_tf *terms;
};

void dt_index_growth_free(dt_index_growth *g)
{
    if (!g) return;
    for (size_t i = 0; i < N_SLOT_ARRAYS; i++) free(g->arr[i]);
    free(g->X);
    free(g->id_head);
    free(g->terms);
    free(g);
}

int dt_index_growth_prepare(const dt_index *idx, size_t want_slots, size_t want_terms, dt_index_growth **out,
                            dt_err *err)
{
    *out = NULL;
    bool slots = want_slots > idx->cap, terms = want_terms > idx->terms_cap;
    if (!slots && !terms) return 0;
    if (want_slots > UINT32_MAX - 1) return dt_err_set(err, DT_ELIMIT, NULL, "an index holds at most 2^32-2 slots");
    dt_index_growth *g = calloc(1, sizeof *g);
    if (!g) goto nomem;
    if (slots) {
        size_t cap = g->cap = grown_cap(idx, want_slots);
        for (size_t i = 0; i < N_SLOT_ARRAYS; i++) {
            size_t sz = slot_arrays[i].sz, oldn = slot_count(i, idx->cap), n = slot_count(i, cap);
            if (!(g->arr[i] = malloc(n * sz))) goto nomem;
            const void *cur = *slot_array((dt_index *)idx, i);
            if (oldn) memcpy(g->arr[i], cur, oldn * sz);
            memset((char *)g->arr[i] + oldn * sz, 0, (n - oldn) * sz);
        }
        if (idx->dim) {
            if (!(g->X = alloc_matrix(cap, idx->dim))) goto nomem;
            if (idx->X) memcpy(g->X, idx->X, idx->n * idx->dim * sizeof(float));
        }
        if (idx->id_cap < cap) {
            /* the id chains for the new bucket count, in the copy of id_next */
            g->id_cap = cap;
            if (!(g->id_head = malloc(cap * sizeof *g->id_head))) goto nomem;
            memset(g->id_head, 0xff, cap * sizeof *g->id_head);
            uint32_t *next = g->arr[N_SLOT_ARRAYS - 1];
            for (size_t s = 0; s < idx->n; s++) {
                size_t b = id_hash(idx->recs[s].id) & (cap - 1);
                next[s] = g->id_head[b];
                g->id_head[b] = (uint32_t)s;
            }
        }
    }
    if (terms) {
        size_t cap = idx->terms_cap ? idx->terms_cap : 4096;
        while (cap < want_terms) cap *= 2;
        if (!(g->terms = malloc(cap * sizeof *g->terms))) goto nomem;
        if (idx->terms_len) memcpy(g->terms, idx->terms, idx->terms_len * sizeof *g->terms);
        g->terms_cap = cap;
    }
    *out = g;
    return 0;
nomem:
    dt_index_growth_free(g);
    return dt_err_set(err, DT_ENOMEM, NULL, "out of memory growing the index of %zu slots", idx->cap);
}

void dt_index_growth_install(dt_index *idx, dt_index_growth *g)
{
    if (!g) return;
    if (g->cap > idx->cap) {
        for (size_t i = 0; i < N_SLOT_ARRAYS; i++) {
            void **p = slot_array(idx, i), *old = *p;
            *p = g->arr[i];
            g->arr[i] = old;
        }
        if (g->X) {
            float *old = idx->X;
            idx->X = g->X;
            g->X = old;
        }
        if (g->id_head) {
            uint32_t *old = idx->id_head;
            idx->id_head = g->id_head;
            g->id_head = old;
            idx->id_cap = g->id_cap;
        }
        idx->cap = g->cap;
    }
    if (g->terms && g->terms_cap > idx->terms_cap) {
        dt_tf *old = idx->terms;
        idx->terms = g->terms;
        g->terms = old;
        idx->terms_cap = g->terms_cap;
    }
}

size_t dt_index_terms_len(const dt_index *idx)
{
    return idx->terms_len;
}

static size_t str_bytes(const char *p)
{
    return p ? strlen(p) + 1 : 0;
}

void dt_index_memory(const dt_index *idx, dt_index_mem *m)
{
    m->rows += idx->dim * idx->cap * sizeof(float);
    m->postings += idx->lists_cap * sizeof *idx->lists + idx->term_list.cap * 2 * sizeof(uint32_t);
    for (size_t i = 0; i < idx->n_lists; i++) m->postings += (size_t)idx->lists[i].cap * (sizeof(uint32_t) + sizeof(float));
    m->terms += idx->terms_cap * sizeof *idx->terms +
                idx->cap * (sizeof *idx->term_off + sizeof *idx->term_n + sizeof *idx->doc_len);
    m->records += idx->cap * sizeof *idx->recs;
    m->ids += idx->id_cap * sizeof *idx->id_head + idx->cap * sizeof *idx->id_next;
    m->columns += (idx->cap + 63) / 64 * 8 +
                  idx->cap * (sizeof *idx->trl + sizeof *idx->status + sizeof *idx->modes + sizeof *idx->pmin +
                              sizeof *idx->pmax + sizeof *idx->codes);
    for (size_t s = 0; s < idx->n; s++) {
        const dt_record *r = &idx->recs[s];
        m->ids += str_bytes(r->id);
        size_t b = str_bytes(r->tenant) + str_bytes(r->title) + str_bytes(r->text) + str_bytes(r->org) +
                   str_bytes(r->field) + str_bytes(r->region) + r->dim * sizeof(float) +
                   (r->n_keywords + r->n_tags) * sizeof(char *);
        for (size_t k = 0; k < r->n_keywords; k++) b += str_bytes(r->keywords[k]);
        for (size_t k = 0; k < r->n_tags; k++) b += str_bytes(r->tags[k]);
        m->records += b;
    }
}

int dt_index_set_dim(dt_index *idx, size_t dim, dt_err *err)
{
    float *X = NULL;
    if (dim && idx->cap) {
        X = alloc_matrix(idx->cap, dim);
        if (!X) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory for a %zu x %zu matrix", idx->cap, dim);
    }
    free(idx->X);
    idx->X = X;
    idx->dim = dim;
    idx->epoch++;
    return 0;
}

float *dt_index_alloc_rows(const dt_index *idx, size_t dim, dt_err *err)
{
    if (!dim || !idx->cap) return NULL;
    float *X = alloc_matrix(idx->cap, dim);
    if (!X) dt_err_set(err, DT_ENOMEM, NULL, "out of memory for a %zu x %zu matrix", idx->cap, dim);
    return X;
}

void dt_index_install_rows(dt_index *idx, float *X, size_t dim)
{
    free(idx->X);
    idx->X = X;
    idx->dim = dim;
    idx->epoch++;
}

void dt_index_free_rows(float *X)
{
    free(X);
}

size_t dt_index_capacity(const dt_index *idx)
{
    return idx->cap;
}

int64_t dt_index_find(const dt_index *idx, const char *id)
{
    if (!idx->id_cap || !id) return -1;
    size_t b = id_hash(id) & (idx->id_cap - 1);
    for (uint32_t s = idx->id_head[b]; s != NIL; s = idx->id_next[s])
        if (bit_get(idx->live, s) && strcmp(idx->recs[s].id, id) == 0) return s;
    return -1;
}

static posting_list *list_for(dt_index *idx, uint32_t term, bool create)
{
    uint32_t li = dt_u32map_get(&idx->term_list, term);
    if (li != DT_U32MAP_NONE) return &idx->lists[li];
    if (!create) return NULL;
    if (idx->n_lists == idx->lists_cap) {
        size_t cap = idx->lists_cap ? idx->lists_cap * 2 : 1024;
        posting_list *l = realloc(idx->lists, cap * sizeof *l);
        if (!l) return NULL;
        idx->lists = l;
        idx->lists_cap = cap;
    }
    if (dt_u32map_put(&idx->term_list, term, (uint32_t)idx->n_lists) < 0) return NULL;
    posting_list *pl = &idx->lists[idx->n_lists++];
    memset(pl, 0, sizeof *pl);
    return pl;
}

static const posting_list *list_get(const dt_index *idx, uint32_t term)
{
    uint32_t li = dt_u32map_get(&idx->term_list, term);
    return li == DT_U32MAP_NONE ? NULL : &idx->lists[li];
}

static int posting_add(posting_list *pl, uint32_t slot, float tf)
{
    if (pl->n == pl->cap) {
        uint32_t cap = pl->cap ? pl->cap * 2 : 4;
        uint32_t *s = realloc(pl->slot, cap * sizeof *s);
        if (!s) return -1;
        pl->slot = s;
        float *t = realloc(pl->tf, cap * sizeof *t);
        if (!t) return -1;
        pl->tf = t;
        pl->cap = cap;
    }
    pl->slot[pl->n] = slot;
    pl->tf[pl->n] = tf;
    pl->n++;
    pl->df++;
    return 0;
}

static int cmp_tf(const void *a, const void *b)
{
    uint32_t x = ((const dt_tf *)a)->term, y = ((const dt_tf *)b)->term;
    return x < y ? -1 : x > y;
}

static void kill_slot(dt_index *idx, uint32_t s)
{
    bit_clear(idx->live, s);
    idx->n_live--;
    if (idx->status[s] == DT_OPEN) idx->n_open--;
    idx->sum_doc_len -= idx->doc_len[s];
    const dt_tf *t = idx->terms + idx->term_off[s];
    for (uint32_t i = 0; i < idx->term_n[s]; i++) {
        uint32_t li = dt_u32map_get(&idx->term_list, t[i].term);
        if (li != DT_U32MAP_NONE) idx->lists[li].df--;
    }
}

int dt_index_put(dt_index *idx, dt_record *rec, const dt_tf *terms, size_t n_terms, uint32_t doc_len,
                 uint32_t *slot_out, dt_err *err)
{
    if (!rec->id || !*rec->id) return dt_err_set(err, DT_EINVAL, "id", "missing");
    int rc = reserve_slots(idx, idx->n + 1, err);
    if (rc) return rc;
    if (idx->terms_len + n_terms > idx->terms_cap) {
        size_t cap = idx->terms_cap ? idx->terms_cap : 4096;
        while (cap < idx->terms_len + n_terms) cap *= 2;
        dt_tf *t = realloc(idx->terms, cap * sizeof *t);
        if (!t) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory for lexical terms");
        idx->terms = t;
        idx->terms_cap = cap;
    }
    uint32_t s = (uint32_t)idx->n;
    dt_tf *mine = idx->terms + idx->terms_len;
    if (n_terms) { /* a record with no text has no terms (and terms may be NULL) */
        memcpy(mine, terms, n_terms * sizeof *mine);
        size_t i = 1;
        while (i < n_terms && mine[i - 1].term < mine[i].term) i++;
        if (i < n_terms) qsort(mine, n_terms, sizeof *mine, cmp_tf); /* restored terms come sorted */
    }
    /* Postings first: the only step after the checks above that can fail halfway. A failure leaves
     * postings pointing at slot n, which is not in use and is overwritten by the next put. */
    for (size_t i = 0; i < n_terms; i++) {
        posting_list *pl = list_for(idx, mine[i].term, true);
        if (!pl || posting_add(pl, s, mine[i].tf) < 0) {
            for (size_t j = 0; j < i; j++) {
                posting_list *p = list_for(idx, mine[j].term, false);
                if (p && p->n && p->slot[p->n - 1] == s) p->n--, p->df--;
            }
            if (pl && pl->n && pl->slot[pl->n - 1] == s) pl->n--, pl->df--;
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory for postings");
        }
    }
    int64_t old = dt_index_find(idx, rec->id);
    if (old >= 0) kill_slot(idx, (uint32_t)old);

    idx->terms_len += n_terms;
    idx->term_off[s] = (size_t)(mine - idx->terms);
    idx->term_n[s] = (uint32_t)n_terms;
    idx->doc_len[s] = doc_len;
    idx->sum_doc_len += doc_len;
    idx->recs[s] = *rec;
    dt_record_init(rec);
    const dt_record *r = &idx->recs[s];
    idx->trl[s] = (uint8_t)r->trl;
    idx->status[s] = (uint8_t)r->status;
    idx->modes[s] = r->modes;
    idx->pmin[s] = r->price_min;
    idx->pmax[s] = r->price_max;
    dt_codes_of(r->field, r->region, &idx->codes[s]);
    if (idx->X) memset(idx->X + (size_t)s * idx->dim, 0, idx->dim * sizeof(float));
    bit_set(idx->live, s);
    size_t b = id_hash(r->id) & (idx->id_cap - 1);
    idx->id_next[s] = idx->id_head[b];
    idx->id_head[b] = s;
    idx->n++;
    idx->n_live++;
    if (r->status == DT_OPEN) idx->n_open++;
    idx->epoch++;
    if (slot_out) *slot_out = s;
    return 0;
}

int dt_index_remove(dt_index *idx, const char *id, dt_err *err)
{
    int64_t s = dt_index_find(idx, id);
    if (s < 0) return dt_err_set(err, DT_ENOTFOUND, "id", "no %s with id '%s' in tenant '%s'",
                                 dt_side_name(idx->side), id ? id : "", idx->tenant);
    kill_slot(idx, (uint32_t)s);
    idx->epoch++;
    return 0;
}

uint32_t dt_index_df(const dt_index *idx, uint32_t term)
{
    const posting_list *pl = list_get(idx, term);
    return pl ? pl->df : 0;
}

double dt_index_idf(const dt_index *idx, uint32_t term)
{
    double df = dt_index_df(idx, term), N = (double)idx->n_live;
    if (df <= 0) return 0;
    return log(1.0 + (N - df + 0.5) / (df + 0.5));
}

double dt_index_avg_doc_len(const dt_index *idx)
{
    return idx->n_live ? idx->sum_doc_len / (double)idx->n_live : 0;
}

size_t dt_index_bm25(const dt_index *idx, const dt_tf *q, size_t nq, float k1, float b, float *acc)
{
    double avgdl = dt_index_avg_doc_len(idx);
    if (avgdl <= 0) return 0;
    size_t visited = 0;
    for (size_t i = 0; i < nq; i++) {
        const posting_list *pl = list_get(idx, q[i].term);
        if (!pl || pl->df == 0) continue;
        float w = (float)(dt_index_idf(idx, q[i].term) * q[i].tf);
        float kb = k1 * b / (float)avgdl, k1b = k1 * (1 - b);
        for (uint32_t j = 0; j < pl->n; j++) {
            uint32_t s = pl->slot[j];
            if (!bit_get(idx->live, s)) continue;
            float tf = pl->tf[j];
            acc[s] += w * tf * (k1 + 1) / (tf + k1b + kb * (float)idx->doc_len[s]);
        }
        visited += pl->n;
    }
    return visited;
}

bool dt_code_has_prefix(const char *code, const char *prefix)
{
    if (!code || !prefix) return false;
    size_t n = strlen(prefix);
    if (n == 0) return true;
    return strncmp(code, prefix, n) == 0 && (code[n] == '\0' || code[n] == '.' || prefix[n - 1] == '.');
}

int dt_code_depth(const char *code)
{
    if (!code || !*code) return 0;
    int d = 1;
    for (const char *p = code; *p; p++) d += *p == '.';
    return d;
}

int dt_code_shared_depth(const char *a, const char *b)
{
    if (!a || !b || !*a || !*b) return 0;
    int d = 0;
    for (;;) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        if (la != lb || strncmp(a, b, la) != 0) return d;
        d++;
        if (!a[la] || !b[lb]) return d;
        a += la + 1;
        b += lb + 1;
    }
}

static bool has_tag(const dt_record *r, const char *tag)
{
    for (size_t i = 0; i < r->n_tags; i++)
        if (strcmp(r->tags[i], tag) == 0) return true;
    return false;
}

bool dt_index_passes(const dt_index *idx, uint32_t s, const dt_filter *f)
{
    if (s >= idx->n || !bit_get(idx->live, s)) return false;
    if (!f) return idx->status[s] == DT_OPEN;
    if (!f->include_closed && idx->status[s] != DT_OPEN) return false;
    if ((f->trl_min || f->trl_max) && idx->trl[s] == 0) return false;
    if (f->trl_min && idx->trl[s] < f->trl_min) return false;
    if (f->trl_max && idx->trl[s] > f->trl_max) return false;
    if (f->modes && !(idx->modes[s] & f->modes)) return false;
    double lo = idx->pmin[s], hi = idx->pmax[s];
    if (!isnan(lo) || !isnan(hi)) { /* a record with no prices passes (negotiable) */
        /* a missing end is open: only a minimum is "from that price up", only a maximum "up to it" */
        if (isnan(lo)) lo = 0;
        if (isnan(hi)) hi = INFINITY;
        if (!isnan(f->price_max) && lo > f->price_max) return false;
        if (!isnan(f->price_min) && hi < f->price_min) return false;
    }
    const dt_record *r = &idx->recs[s];
    if (f->n_field_prefixes) {
        bool ok = false;
        for (size_t i = 0; i < f->n_field_prefixes && !ok; i++) ok = dt_code_has_prefix(r->field, f->field_prefixes[i]);
        if (!ok) return false;
    }
    if (f->n_region_prefixes) {
        bool ok = false;
        for (size_t i = 0; i < f->n_region_prefixes && !ok; i++)
            ok = dt_code_has_prefix(r->region, f->region_prefixes[i]);
        if (!ok) return false;
    }
    for (size_t i = 0; i < f->n_tags; i++)
        if (!has_tag(r, f->tags[i])) return false;
    return true;
}

size_t dt_index_filter(const dt_index *idx, const dt_filter *f, uint64_t *allow)
{
    size_t words = (idx->n + 63) / 64, count = 0;
    bool simple = f && !f->n_field_prefixes && !f->n_region_prefixes && !f->n_tags && !f->trl_min &&
                  !f->trl_max && !f->modes && isnan(f->price_min) && isnan(f->price_max);
    if (!f || simple) {
        bool closed_too = f && f->include_closed;
        for (size_t w = 0; w < words; w++) {
            uint64_t m = idx->live[w];
            if (!closed_too) {
                size_t end = (w + 1) * 64 < idx->n ? (w + 1) * 64 : idx->n;
                for (size_t s = w * 64; s < end; s++)
                    if (idx->status[s] != DT_OPEN) m &= ~(1ull << (s & 63));
            }
            allow[w] = m;
            count += (size_t)__builtin_popcountll(m);
        }
        return count;
    }
    memset(allow, 0, words * 8);
    for (size_t w = 0; w < words; w++) {
        uint64_t m = idx->live[w];
        while (m) {
            size_t s = w * 64 + (size_t)__builtin_ctzll(m);
            m &= m - 1;
            if (dt_index_passes(idx, (uint32_t)s, f)) {
                bit_set(allow, s);
                count++;
            }
        }
    }
    return count;
}

int dt_index_compact_build(const dt_index *idx, bool force, dt_index **out, dt_err *err)
{
    *out = NULL;
    size_t dead = idx->n - idx->n_live;
    if (dead == 0 || (!force && dead * 4 < idx->n)) return 0;
    /* Postings are rebuilt from the forward index into fresh lists; records are shared, not
     * copied (install hands them over), so this reads idx and changes nothing of it. */
    dt_index *fresh = dt_index_new(idx->tenant, idx->side, idx->dim, err);
    if (!fresh) return -DT_ENOMEM;
    fresh->borrowed = true;
    fresh->base_epoch = idx->epoch;
    int rc = reserve_slots(fresh, idx->n_live, err);
    uint32_t ns = 0;
    for (size_t s = 0; rc == 0 && s < idx->n; s++) {
        if (!bit_get(idx->live, s)) continue;
        dt_record shared = idx->recs[s];
        rc = dt_index_put(fresh, &shared, idx->terms + idx->term_off[s], idx->term_n[s], idx->doc_len[s], &ns, err);
        if (rc) break;
        if (idx->dim) memcpy(fresh->X + (size_t)ns * idx->dim, idx->X + s * idx->dim, idx->dim * sizeof(float));
        fresh->codes[ns].clusters = idx->codes[s].clusters;
    }
    if (rc) {
        dt_index_free(fresh);
        return rc;
    }
    *out = fresh;
    return 1;
}

int dt_index_compact_install(dt_index *idx, dt_index *fresh, dt_err *err)
{
    if (!fresh->borrowed || fresh->base_epoch != idx->epoch)
        return dt_err_set(err, DT_EINVAL, NULL, "index of tenant '%s' changed since its compaction was built",
                          idx->tenant);
    /* the live records now belong to fresh; the old contents keep (and free) only the dead ones */
    for (size_t s = 0; s < idx->n; s++)
        if (bit_get(idx->live, s)) dt_record_init(&idx->recs[s]);
    fresh->borrowed = false;
    fresh->epoch = idx->epoch + 1;
    fresh->generation = idx->generation + 1;
    dt_index tmp = *idx;
    *idx = *fresh;
    *fresh = tmp; /* the old contents, for the caller to free */
    return 0;
}

int dt_index_compact(dt_index *idx, bool force, dt_err *err)
{
    dt_index *fresh;
    int rc = dt_index_compact_build(idx, force, &fresh, err);
    if (rc <= 0) return rc;
    rc = dt_index_compact_install(idx, fresh, err);
    dt_index_free(fresh);
    return rc ? rc : 1;
}

static void hash_prefixes(const char *code, uint32_t *h, uint8_t *depth)
{
    memset(h, 0, DT_CODE_LEVELS * sizeof *h);
    *depth = 0;
    if (!code || !*code) return;
    size_t n = strlen(code);
    for (size_t i = 0; i <= n && *depth < DT_CODE_LEVELS; i++)
        if (i == n || code[i] == '.') h[(*depth)++] = (uint32_t)XXH3_64bits(code, i);
}

void dt_codes_of(const char *field, const char *region, dt_codes *c)
{
    hash_prefixes(field, c->field, &c->field_depth);
    hash_prefixes(region, c->region, &c->region_depth);
    c->clusters = 0;
}

int dt_codes_shared(const uint32_t *a, int da, const uint32_t *b, int db)
{
    int n = da < db ? da : db, k = 0;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

const dt_codes *dt_index_codes(const dt_index *idx, uint32_t slot)
{
    return &idx->codes[slot];
}

void dt_index_set_clusters(dt_index *idx, uint32_t slot, uint64_t clusters)
{
    idx->codes[slot].clusters = clusters;
}
