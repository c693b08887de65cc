/* engine.c - tenants, vectorizers and hybrid ranking over index.c (see engine.h).
 *
 * Invariants per tenant:
 * - idx[side] is NULL until the first record of that side arrives;
 * - kind NONE: indexes have dim 0; kind LSA: both indexes have dim = lsa.dim and every live row is
 *   the projection of its record on the current basis; kind EXTERNAL: both indexes have the
 *   embedding dimension and each row is its record's normalised embedding (zero when it has none);
 * - epoch is bumped by every write to the tenant.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lsa.h"
#include "text.h"
#include "topk.h"
#include "u32map.h"

typedef enum { DENSE_NONE = 0, DENSE_LSA, DENSE_EXTERNAL } dense_kind;

typedef struct tenant {
    char name[DT_TENANT_MAX + 1];
    dt_index *idx[2];
    dense_kind kind;
    dt_lsa lsa;
    dt_u32map col; /* term -> LSA column */
    float *idf;    /* per LSA column */
    uint32_t *col_terms; /* the term of each LSA column (the inverse of col) */
    uint64_t epoch;
    size_t built_docs; /* live records when the basis was last learned */
} tenant;

typedef struct cluster {
    char name[DT_SHORT_MAX + 1];
    char **prefixes;
    size_t n;
} cluster;

struct dt_engine {
    dt_engine_opts opts;
    tenant *tenants;
    size_t n_tenants, cap_tenants;
    const char **tenant_names;
    cluster *clusters;
    size_t n_clusters;
    dt_text *text; /* the writers' tokenizer */
    dt_tokens toks;
    bool defer_compaction; /* upsert and delete leave it to dt_engine_compaction_* */
};

struct dt_searcher {
    dt_engine *e;
    dt_text *text;
    dt_tokens toks;
};

dt_engine_opts dt_engine_opts_default(void)
{
    dt_engine_opts o;
    memset(&o, 0, sizeof o);
    o.dim = 256;
    o.weights = (dt_weights){0.7f, 0.3f, 0.1f};
    o.bm25_k1 = 1.2f;
    o.bm25_b = 0.75f;
    o.threads = 1;
    o.lsa_min_docs = 20;
    o.lsa_power_iters = 2;
    o.lsa_seed = 0x5eed1e55u;
    o.prf = true;
    o.prf_docs = 10;
    o.prf_terms = 20;
    o.prf_weight = 0.5f;
    o.prf_max_terms = 40;
    o.title_weight = 2;
    o.fusion_depth = 100;
    o.fusion_adapt = true;
    return o;
}

void dt_query_init(dt_query *q)
{
    memset(q, 0, sizeof *q);
    dt_filter_init(&q->filter);
    q->target = DT_ACHIEVEMENT;
    q->record_side = DT_DEMAND;
    q->k = 10;
    q->prf = -1;
}

const char *dt_fit_name(int part)
{
    static const char *const names[DT_FIT_COUNT] = {"field", "region", "trl", "price", "modes"};
    return part >= 0 && part < DT_FIT_COUNT ? names[part] : "?";
}

dt_engine *dt_engine_new(const dt_engine_opts *opts, dt_err *err)
{
    dt_engine *e = calloc(1, sizeof *e);
    if (!e) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating the engine");
        return NULL;
    }
    e->opts = opts ? *opts : dt_engine_opts_default();
    if (e->opts.threads < 1) e->opts.threads = 1;
    dt_text_opts to = dt_text_opts_default();
    e->text = dt_text_new(&to, err);
    if (!e->text) {
        free(e);
        return NULL;
    }
    dt_tokens_init(&e->toks);
    return e;
}

void dt_engine_memory(const dt_engine *e, dt_index_mem *m, size_t *basis)
{
    *basis = 0;
    for (size_t i = 0; i < e->n_tenants; i++) {
        const tenant *t = &e->tenants[i];
        for (int s = 0; s < 2; s++)
            if (t->idx[s]) dt_index_memory(t->idx[s], m);
        *basis += (t->lsa.n_terms * t->lsa.dim + t->lsa.dim) * sizeof(float) +
                  t->lsa.n_terms * (sizeof *t->idf + sizeof *t->col_terms) + t->col.cap * 2 * sizeof(uint32_t);
    }
}

static void tenant_clear_lsa(tenant *t)
{
    dt_lsa_free(&t->lsa);
    memset(&t->lsa, 0, sizeof t->lsa);
    dt_u32map_free(&t->col);
    free(t->idf);
    t->idf = NULL;
    free(t->col_terms);
    t->col_terms = NULL;
}

void dt_engine_free(dt_engine *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->n_tenants; i++) {
        dt_index_free(e->tenants[i].idx[0]);
        dt_index_free(e->tenants[i].idx[1]);
        tenant_clear_lsa(&e->tenants[i]);
    }
    free(e->tenants);
    free(e->tenant_names);
    for (size_t i = 0; i < e->n_clusters; i++) {
        for (size_t j = 0; j < e->clusters[i].n; j++) free(e->clusters[i].prefixes[j]);
        free(e->clusters[i].prefixes);
    }
    free(e->clusters);
    dt_tokens_free(&e->toks);
    dt_text_free(e->text);
    free(e);
}

const dt_engine_opts *dt_engine_opts_get(const dt_engine *e)
{
    return &e->opts;
}

/* ---- clusters ---- */

static void refresh_cluster_masks(dt_engine *e);

int dt_engine_add_cluster(dt_engine *e, const char *name, const char *prefix, dt_err *err)
{
    if (!name || !*name || strlen(name) > DT_SHORT_MAX) return dt_err_set(err, DT_EINVAL, "cluster", "name must be 1..%d bytes", DT_SHORT_MAX);
    if (!prefix || !*prefix || strlen(prefix) > DT_SHORT_MAX)
        return dt_err_set(err, DT_EINVAL, "cluster", "region prefix of cluster '%s' must be 1..%d bytes", name, DT_SHORT_MAX);
    cluster *c = NULL;
    for (size_t i = 0; i < e->n_clusters; i++)
        if (strcmp(e->clusters[i].name, name) == 0) c = &e->clusters[i];
    if (!c) {
        if (e->n_clusters == 64) return dt_err_set(err, DT_ELIMIT, "cluster", "at most 64 clusters (adding '%s')", name);
        cluster *v = realloc(e->clusters, (e->n_clusters + 1) * sizeof *v);
        if (!v) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        e->clusters = v;
        c = &v[e->n_clusters++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", name);
    }
    char **p = realloc(c->prefixes, (c->n + 1) * sizeof *p);
    if (!p) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    c->prefixes = p;
    if (!(p[c->n] = strdup(prefix))) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    c->n++;
    refresh_cluster_masks(e);
    return 0;
}

int dt_engine_parse_clusters(dt_engine *e, const char *text, size_t len, dt_err *err)
{
    size_t line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        char buf[2 * DT_SHORT_MAX + 4];
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--;
        if (n >= sizeof buf) return dt_err_set(err, DT_EINVAL, "clusters", "line %zu: longer than %zu bytes", line, sizeof buf - 1);
        memcpy(buf, p, n);
        buf[n] = 0;
        p = nl ? nl + 1 : end;
        char *s = buf;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        char *tab = strchr(s, '\t');
        if (!tab) return dt_err_set(err, DT_EINVAL, "clusters", "line %zu: expected 'name<TAB>region_prefix'", line);
        *tab = 0;
        char *pre = tab + 1;
        while (*pre == ' ') pre++;
        size_t pl = strlen(pre);
        while (pl && (pre[pl - 1] == ' ' || pre[pl - 1] == '\t')) pre[--pl] = 0;
        dt_err e2 = DT_ERR_INIT;
        if (dt_engine_add_cluster(e, s, pre, &e2) < 0)
            return dt_err_set(err, e2.code, "clusters", "line %zu: %s", line, e2.msg);
    }
    return 0;
}

const char *const *dt_engine_cluster(const dt_engine *e, const char *name, size_t *n)
{
    for (size_t i = 0; i < e->n_clusters; i++)
        if (strcmp(e->clusters[i].name, name) == 0) {
            *n = e->clusters[i].n;
            return (const char *const *)e->clusters[i].prefixes;
        }
    *n = 0;
    return NULL;
}

/* Bit c set when region is in cluster c (at most 64 clusters). */
static uint64_t cluster_mask(const dt_engine *e, const char *region)
{
    uint64_t m = 0;
    if (!region || !*region) return 0;
    for (size_t i = 0; i < e->n_clusters; i++)
        for (size_t j = 0; j < e->clusters[i].n; j++)
            if (dt_code_has_prefix(region, e->clusters[i].prefixes[j])) {
                m |= 1ull << i;
                break;
            }
    return m;
}

/* Recomputes every record's cluster bits (after the clusters changed). */
static void refresh_cluster_masks(dt_engine *e)
{
    for (size_t t = 0; t < e->n_tenants; t++)
        for (int s = 0; s < 2; s++) {
            dt_index *idx = e->tenants[t].idx[s];
            size_t n = idx ? dt_index_slots(idx) : 0;
            for (uint32_t i = 0; i < n; i++)
                dt_index_set_clusters(idx, i, cluster_mask(e, dt_index_record(idx, i)->region));
        }
}

/* ---- tenants ---- */

static const char *tenant_name(const char *t)
{
    return t && *t ? t : "public";
}

static tenant *find_tenant(const dt_engine *e, const char *name)
{
    name = tenant_name(name);
    for (size_t i = 0; i < e->n_tenants; i++)
        if (strcmp(e->tenants[i].name, name) == 0) return &e->tenants[i];
    return NULL;
}

static tenant *get_tenant(dt_engine *e, const char *name, dt_err *err)
{
    tenant *t = find_tenant(e, name);
    if (t) return t;
    name = tenant_name(name);
    if (strlen(name) > DT_TENANT_MAX) {
        dt_err_set(err, DT_EINVAL, "tenant", "longer than %d bytes", DT_TENANT_MAX);
        return NULL;
    }
    if (e->n_tenants == e->cap_tenants) {
        size_t cap = e->cap_tenants ? e->cap_tenants * 2 : 4;
        tenant *v = realloc(e->tenants, cap * sizeof *v);
        if (!v) goto nomem;
        e->tenants = v;
        const char **names = realloc(e->tenant_names, cap * sizeof *names);
        if (!names) goto nomem;
        e->tenant_names = names;
        e->cap_tenants = cap;
    }
    t = &e->tenants[e->n_tenants];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    dt_u32map_init(&t->col);
    e->n_tenants++;
    for (size_t i = 0; i < e->n_tenants; i++) e->tenant_names[i] = e->tenants[i].name;
    return t;
nomem:
    dt_err_set(err, DT_ENOMEM, NULL, "out of memory adding tenant '%s'", name);
    return NULL;
}

const char *const *dt_engine_tenants(const dt_engine *e, size_t *n)
{
    *n = e->n_tenants;
    return e->tenant_names;
}

dt_index *dt_engine_index(const dt_engine *e, const char *tname, dt_side side)
{
    tenant *t = find_tenant(e, tname);
    return t ? t->idx[side] : NULL;
}

uint64_t dt_engine_epoch(const dt_engine *e, const char *tname)
{
    tenant *t = find_tenant(e, tname);
    return t ? t->epoch : 0;
}

int dt_engine_set_epoch(dt_engine *e, const char *tname, uint64_t epoch, dt_err *err)
{
    tenant *t = get_tenant(e, tname, err);
    if (!t) return err ? -err->code : -DT_ENOMEM;
    t->epoch = epoch;
    return 0;
}

const char *dt_engine_dense_kind(const dt_engine *e, const char *tname)
{
    tenant *t = find_tenant(e, tname);
    if (!t) return "none";
    return t->kind == DENSE_LSA ? "lsa" : t->kind == DENSE_EXTERNAL ? "external" : "none";
}

const dt_record *dt_engine_get(const dt_engine *e, const char *tname, dt_side side, const char *id)
{
    dt_index *idx = dt_engine_index(e, tname, side);
    if (!idx) return NULL;
    int64_t s = dt_index_find(idx, id);
    return s < 0 ? NULL : dt_index_record(idx, (uint32_t)s);
}

/* ---- vectorizing ---- */

/* Tokens of a record's title (title_weight times: a field weight, as BM25F gives titles), keywords
 * and text (appended to toks, which is cleared first). */
static int tokenize_record(dt_text *tx, unsigned title_weight, const dt_record *r, dt_tokens *toks, dt_err *err)
{
    dt_tokens_clear(toks);
    int rc = 0;
    for (unsigned k = 0; rc == 0 && r->title && k < title_weight; k++)
        rc = dt_text_tokenize(tx, r->title, strlen(r->title), toks, err);
    for (size_t i = 0; rc == 0 && i < r->n_keywords; i++)
        rc = dt_text_tokenize(tx, r->keywords[i], strlen(r->keywords[i]), toks, err);
    if (rc == 0 && r->text) rc = dt_text_tokenize(tx, r->text, strlen(r->text), toks, err);
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Distinct terms of toks with their counts, into a malloc'd array (*out, *n). */
static int term_counts(const dt_tokens *toks, dt_tf **out, size_t *n, dt_err *err)
{
    *out = NULL;
    *n = 0;
    if (toks->n == 0) return 0;
    uint32_t *b = malloc(toks->n * sizeof *b);
    dt_tf *tf = malloc(toks->n * sizeof *tf);
    if (!b || !tf) {
        free(b);
        free(tf);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory counting terms");
    }
    for (size_t i = 0; i < toks->n; i++) b[i] = toks->v[i].bucket;
    qsort(b, toks->n, sizeof *b, cmp_u32);
    size_t k = 0;
    for (size_t i = 0; i < toks->n; i++) {
        if (k && tf[k - 1].term == b[i])
            tf[k - 1].tf += 1;
        else
            tf[k++] = (dt_tf){b[i], 1};
    }
    free(b);
    *out = tf;
    *n = k;
    return 0;
}

static void normalize(float *v, size_t d)
{
    double s = 0;
    for (size_t i = 0; i < d; i++) s += (double)v[i] * v[i];
    if (s <= 0) return;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < d; i++) v[i] *= inv;
}

/* LSA fold-in of a term vector: weights (1 + ln tf) * idf, unseen terms ignored. */
static int project_on(const dt_u32map *col, const float *idf, const dt_lsa *lsa, const dt_tf *terms, size_t n,
                      float *out, dt_err *err);

static int lsa_project_terms(const tenant *t, const dt_tf *terms, size_t n, float *out, dt_err *err)
{
    return project_on(&t->col, t->idf, &t->lsa, terms, n, out, err);
}

/* Projects one record's terms on a basis (col: term -> column, idf per column). */
static int project_on(const dt_u32map *col, const float *idf, const dt_lsa *lsa, const dt_tf *terms, size_t n,
                      float *out, dt_err *err)
{
    uint32_t *cols = malloc((n ? n : 1) * sizeof *cols);
    float *vals = malloc((n ? n : 1) * sizeof *vals);
    if (!cols || !vals) {
        free(cols);
        free(vals);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory projecting a record");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = dt_u32map_get(col, terms[i].term);
        if (c == DT_U32MAP_NONE) continue;
        cols[k] = c;
        vals[k] = (1.0f + logf(terms[i].tf)) * idf[c];
        k++;
    }
    dt_lsa_project(lsa, cols, vals, k, out);
    free(cols);
    free(vals);
    return 0;
}

static int set_row(tenant *t, dt_index *idx, uint32_t slot, const dt_record *r, const dt_tf *terms, size_t n,
                   dt_err *err)
{
    float *row = dt_index_row(idx, slot);
    if (!row) return 0;
    size_t d = dt_index_dim(idx);
    if (t->kind == DENSE_EXTERNAL) {
        if (r->embedding && r->dim == d) {
            memcpy(row, r->embedding, d * sizeof *row);
            normalize(row, d);
        }
        return 0;
    }
    if (t->kind == DENSE_LSA) return lsa_project_terms(t, terms, n, row, err);
    return 0;
}

/* Switches a tenant to external embeddings of dimension d (first record that carries one). */
static int make_external(tenant *t, size_t d, dt_err *err)
{
    for (int s = 0; s < 2; s++) {
        if (!t->idx[s]) continue;
        int rc = dt_index_set_dim(t->idx[s], d, err);
        if (rc) return rc;
        size_t n = dt_index_slots(t->idx[s]);
        for (uint32_t i = 0; i < n; i++) {
            const dt_record *r = dt_index_record(t->idx[s], i);
            if (dt_index_live(t->idx[s], i) && r->embedding && r->dim == d) {
                float *row = dt_index_row(t->idx[s], i);
                memcpy(row, r->embedding, d * sizeof *row);
                normalize(row, d);
            }
        }
    }
    tenant_clear_lsa(t);
    t->kind = DENSE_EXTERNAL;
    return 0;
}

/* ---- the embedding contract ---- */

/* What a tenant's next record must carry: EMB_ANY (the tenant has no live record: the first one
 * decides), EMB_NONE (it ranks by its own vectors) or EMB_EXTERNAL (embeddings of dim values). */
enum { EMB_ANY, EMB_NONE, EMB_EXTERNAL };

static size_t tenant_live(const tenant *t)
{
    size_t n = 0;
    for (int s = 0; s < 2; s++)
        if (t->idx[s]) n += dt_index_count(t->idx[s]);
    return n;
}

static int tenant_emb_rule(const tenant *t, size_t *dim)
{
    *dim = 0;
    if (t && t->kind == DENSE_EXTERNAL) {
        *dim = dt_index_dim(t->idx[0] ? t->idx[0] : t->idx[1]);
        return EMB_EXTERNAL;
    }
    return t && tenant_live(t) ? EMB_NONE : EMB_ANY;
}

static int emb_refuse(const dt_record *r, const char *tname, int rule, size_t dim, bool in_batch, dt_err *err)
{
    if (rule == EMB_EXTERNAL && !r->embedding)
        return dt_err_set(err, DT_EINVAL, "embedding",
                          "required: tenant '%s' ranks by external embeddings of %zu values%s, so every record "
                          "carries one",
                          tname, dim, in_batch ? " (set by the earlier records of this request)" : "");
    if (rule == EMB_EXTERNAL)
        return dt_err_set(err, DT_EINVAL, "embedding", "has %zu values; tenant '%s' uses %zu%s", r->dim, tname, dim,
                          in_batch ? " (set by the earlier records of this request)" : "");
    return dt_err_set(err, DT_EINVAL, "embedding",
                      "not allowed: tenant '%s' ranks by Dovetail's own vectors (%s no embedding); send all of a "
                      "tenant's records with embeddings of one length, or none",
                      tname, in_batch ? "the earlier records of this request carry" : "its stored records carry");
}

/* strict: the contract; otherwise only what dt_engine_upsert refuses (a record's embedding
 * length differs from its external tenant's). */
static int check_batch(const dt_engine *e, dt_record *const *recs, size_t n, bool strict, size_t *bad, dt_err *err)
{
    /* per tenant of the batch: the rule its next record must follow; a batch names one tenant in
     * the daemon, so a short linear list is enough */
    struct rule {
        const char *name;
        int rule;
        size_t dim;
        bool from_batch;
    } small[4], *rules = small;
    size_t nr = 0, cap = 4;
    int rc = 0;
    size_t i = 0;
    for (; i < n; i++) {
        const dt_record *r = recs[i];
        if ((rc = dt_record_validate(r, err)) != 0) break;
        const char *tname = tenant_name(r->tenant);
        struct rule *ru = NULL;
        for (size_t k = 0; k < nr; k++)
            if (strcmp(rules[k].name, tname) == 0) ru = &rules[k];
        if (!ru) {
            if (strlen(tname) > DT_TENANT_MAX) {
                rc = dt_err_set(err, DT_EINVAL, "tenant", "longer than %d bytes", DT_TENANT_MAX);
                break;
            }
            if (nr == cap) {
                struct rule *v = malloc(2 * cap * sizeof *v);
                if (!v) {
                    rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory checking a batch");
                    break;
                }
                memcpy(v, rules, nr * sizeof *v);
                if (rules != small) free(rules);
                rules = v;
                cap *= 2;
            }
            ru = &rules[nr++];
            ru->name = tname;
            ru->rule = tenant_emb_rule(find_tenant(e, tname), &ru->dim);
            ru->from_batch = false;
        }
        if (ru->rule == EMB_ANY || (!strict && ru->rule == EMB_NONE && r->embedding)) {
            /* the tenant's first record (or, stored, its first embedding) decides for the rest */
            ru->rule = r->embedding ? EMB_EXTERNAL : EMB_NONE;
            ru->dim = r->embedding ? r->dim : 0;
            ru->from_batch = true;
            continue;
        }
        bool ok = ru->rule == EMB_NONE ? !r->embedding : r->embedding ? r->dim == ru->dim : !strict;
        if (!ok) {
            rc = emb_refuse(r, tname, ru->rule, ru->dim, ru->from_batch, err);
            break;
        }
    }
    if (rules != small) free(rules);
    if (bad) *bad = rc ? i : n;
    return rc;
}

int dt_engine_check_upsert(const dt_engine *e, dt_record *const *recs, size_t n, size_t *bad, dt_err *err)
{
    return check_batch(e, recs, n, true, bad, err);
}

int dt_engine_check_stored(const dt_engine *e, dt_record *const *recs, size_t n, size_t *bad, dt_err *err)
{
    return check_batch(e, recs, n, false, bad, err);
}

/* A record's terms, counted before it is stored (dt_engine_batch_prepare or dt_engine_upsert). */
typedef struct counted {
    dt_tf *terms;
    size_t n;
    uint32_t doc_len;
    float *row; /* dt_engine_batch_prepare: the row on the tenant's LSA basis of then, or NULL */
} counted;

static int count_record(dt_engine *e, const dt_record *rec, counted *out, dt_err *err)
{
    out->terms = NULL;
    out->n = 0;
    out->row = NULL;
    int rc = tokenize_record(e->text, e->opts.title_weight, rec, &e->toks, err);
    if (rc) return rc;
    out->doc_len = (uint32_t)e->toks.n;
    return term_counts(&e->toks, &out->terms, &out->n, err);
}

/* Stores rec with its counted terms (which stay the caller's). row (NULL: computed) is its dense
 * row as stored before, used when it has the index's dimension. */
static int upsert_counted(dt_engine *e, dt_record *rec, const counted *ct, const float *row, size_t row_dim,
                          dt_err *err)
{
    int rc = dt_record_validate(rec, err);
    if (rc) return rc;
    tenant *t = get_tenant(e, rec->tenant, err);
    if (!t) return err ? -err->code : -DT_ENOMEM;
    if (rec->embedding) {
        size_t d = t->kind == DENSE_EXTERNAL ? dt_index_dim(t->idx[0] ? t->idx[0] : t->idx[1]) : 0;
        if (d && rec->dim != d)
            return dt_err_set(err, DT_EINVAL, "embedding", "has %zu dimensions; tenant '%s' uses %zu", rec->dim,
                              t->name, d);
    }
    if (!t->idx[rec->side]) {
        /* a side's first record: its index joins the tenant's dense space */
        dt_index *other = t->idx[!rec->side];
        size_t dim = t->kind == DENSE_LSA ? t->lsa.dim : other ? dt_index_dim(other) : 0;
        t->idx[rec->side] = dt_index_new(t->name, rec->side, dim, err);
        if (!t->idx[rec->side]) return err ? -err->code : -DT_ENOMEM;
    }
    if (rec->embedding && t->kind != DENSE_EXTERNAL) {
        rc = make_external(t, rec->dim, err);
        if (rc) return rc;
    }
    dt_index *idx = t->idx[rec->side];
    uint32_t slot;
    rc = dt_index_put(idx, rec, ct->terms, ct->n, ct->doc_len, &slot, err);
    if (rc == 0) {
        const dt_record *stored = dt_index_record(idx, slot);
        dt_index_set_clusters(idx, slot, cluster_mask(e, stored->region));
        if (row && row_dim && row_dim == dt_index_dim(idx) && dt_index_row(idx, slot))
            memcpy(dt_index_row(idx, slot), row, row_dim * sizeof *row);
        else
            rc = set_row(t, idx, slot, stored, ct->terms, ct->n, err);
        t->epoch++;
        if (!e->defer_compaction) dt_index_compact(idx, false, NULL); /* best effort: tombstones stay longer */
    }
    return rc;
}

int dt_engine_upsert(dt_engine *e, dt_record *rec, dt_err *err)
{
    int rc = dt_record_validate(rec, err);
    if (rc) return rc;
    counted ct;
    rc = count_record(e, rec, &ct, err);
    if (rc == 0) rc = upsert_counted(e, rec, &ct, NULL, 0, err);
    free(ct.terms);
    return rc;
}

uint64_t dt_engine_terms_fingerprint(const dt_engine *e)
{
    uint64_t v[4] = {DT_TEXT_RULES, DT_TEXT_SEED, DT_TEXT_BUCKET_BITS, e->opts.title_weight};
    return XXH3_64bits(v, sizeof v);
}

int dt_engine_restore(dt_engine *e, dt_record *rec, const dt_tf *terms, size_t n, uint32_t doc_len, const float *row,
                      size_t dim, dt_err *err)
{
    counted ct = {(dt_tf *)terms, n, doc_len, NULL};
    return upsert_counted(e, rec, &ct, row, dim, err);
}

/* The room a batch needs in one index, made before the write lock (dt_index_growth_*). */
typedef struct batch_room {
    char tenant[DT_TENANT_MAX + 1];
    dt_side side;
    dt_index *idx;
    size_t slots, terms;
    dt_index_growth *g;
} batch_room;

struct dt_engine_batch {
    size_t n;
    counted *v;
    batch_room *room; /* one per index the batch writes to that exists already */
    size_t n_room;
    bool grown;
};

void dt_engine_batch_free(dt_engine_batch *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].terms);
        free(b->v[i].row);
    }
    for (size_t i = 0; i < b->n_room; i++) dt_index_growth_free(b->room[i].g);
    free(b->room);
    free(b->v);
    free(b);
}

/* Grown copies of the indexes the batch writes to that would otherwise grow under the write lock
 * (doubling a 100k-record index copies its whole matrix). Best effort: without them, the puts grow
 * the indexes themselves. */
static void batch_make_room(const dt_engine *e, dt_record *const *recs, dt_engine_batch *b)
{
    if (!(b->room = calloc(b->n ? b->n : 1, sizeof *b->room))) return;
    for (size_t i = 0; i < b->n; i++) {
        const tenant *t = find_tenant(e, recs[i]->tenant);
        dt_side side = recs[i]->side;
        if (!t || (side != DT_DEMAND && side != DT_ACHIEVEMENT) || !t->idx[side]) continue;
        size_t r = 0;
        while (r < b->n_room && b->room[r].idx != t->idx[side]) r++;
        if (r == b->n_room) {
            snprintf(b->room[r].tenant, sizeof b->room[r].tenant, "%s", t->name);
            b->room[r].side = side;
            b->room[r].idx = t->idx[side];
            b->n_room++;
        }
        b->room[r].slots++;
        b->room[r].terms += b->v[i].n;
    }
    for (size_t r = 0; r < b->n_room; r++) {
        dt_index *idx = b->room[r].idx;
        dt_index_growth_prepare(idx, dt_index_slots(idx) + b->room[r].slots,
                                dt_index_terms_len(idx) + b->room[r].terms, &b->room[r].g, NULL);
    }
}

int dt_engine_batch_prepare(dt_engine *e, dt_record *const *recs, size_t n, dt_engine_batch **out, dt_err *err)
{
    *out = NULL;
    dt_engine_batch *b = calloc(1, sizeof *b);
    if (!b || !(b->v = calloc(n ? n : 1, sizeof *b->v))) {
        free(b);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory tokenizing %zu records", n);
    }
    for (; b->n < n; b->n++) {
        counted *ct = &b->v[b->n];
        int rc = count_record(e, recs[b->n], ct, err);
        /* the projection on the tenant's basis too: no writer can change the basis before the
         * records are stored, and it is most of a record's cost under the write lock */
        const tenant *t = rc ? NULL : find_tenant(e, recs[b->n]->tenant);
        if (t && t->kind == DENSE_LSA && !recs[b->n]->embedding && t->lsa.dim) {
            if (!(ct->row = malloc(t->lsa.dim * sizeof *ct->row)))
                rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory projecting %zu records", n);
            else
                rc = lsa_project_terms(t, ct->terms, ct->n, ct->row, err);
        }
        if (rc) {
            b->n++; /* free this one's terms too */
            dt_engine_batch_free(b);
            return rc;
        }
    }
    batch_make_room(e, recs, b);
    *out = b;
    return 0;
}

int dt_engine_batch_upsert(dt_engine *e, dt_engine_batch *b, size_t i, dt_record *rec, dt_err *err)
{
    if (i >= b->n) return dt_err_set(err, DT_EINVAL, NULL, "record %zu of a batch of %zu", i, b->n);
    if (!b->grown) {
        /* the room made at prepare, for indexes that are still the ones it was made for */
        b->grown = true;
        for (size_t r = 0; r < b->n_room; r++) {
            const tenant *rt = find_tenant(e, b->room[r].tenant);
            if (rt && rt->idx[b->room[r].side] == b->room[r].idx)
                dt_index_growth_install(b->room[r].idx, b->room[r].g);
        }
    }
    /* a row projected at prepare is used while the tenant still ranks by that basis (a record of
     * the batch cannot change it: the contract keeps embeddings out of an LSA tenant with records) */
    const tenant *t = find_tenant(e, rec->tenant);
    const counted *ct = &b->v[i];
    bool lsa = ct->row && t && t->kind == DENSE_LSA;
    return upsert_counted(e, rec, ct, lsa ? ct->row : NULL, lsa ? t->lsa.dim : 0, err);
}

int dt_engine_delete(dt_engine *e, const char *tname, dt_side side, const char *id, dt_err *err)
{
    tenant *t = find_tenant(e, tname);
    if (!t || !t->idx[side])
        return dt_err_set(err, DT_ENOTFOUND, "id", "no %s with id '%s' in tenant '%s'", dt_side_name(side),
                          id ? id : "", tenant_name(tname));
    int rc = dt_index_remove(t->idx[side], id, err);
    if (rc == 0) {
        t->epoch++;
        if (!e->defer_compaction) dt_index_compact(t->idx[side], false, NULL);
    }
    return rc;
}

/* ---- compaction off the write path ---- */

void dt_engine_defer_compaction(dt_engine *e, bool defer)
{
    e->defer_compaction = defer;
}

struct dt_engine_compaction {
    char tenant[DT_TENANT_MAX + 1];
    dt_index *fresh[2];
};

void dt_engine_compaction_free(dt_engine_compaction *c)
{
    if (!c) return;
    for (int s = 0; s < 2; s++) dt_index_free(c->fresh[s]);
    free(c);
}

int dt_engine_compaction_prepare(const dt_engine *e, const char *tname, dt_engine_compaction **out, dt_err *err)
{
    *out = NULL;
    tenant *t = find_tenant(e, tname);
    if (!t) return 0;
    dt_engine_compaction *c = NULL;
    for (int s = 0; s < 2; s++) {
        dt_index *fresh = NULL;
        int rc = t->idx[s] ? dt_index_compact_build(t->idx[s], false, &fresh, err) : 0;
        if (rc < 0) {
            dt_engine_compaction_free(c);
            return rc;
        }
        if (!fresh) continue;
        if (!c && !(c = calloc(1, sizeof *c))) {
            dt_index_free(fresh);
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        }
        snprintf(c->tenant, sizeof c->tenant, "%s", t->name);
        c->fresh[s] = fresh;
    }
    *out = c;
    return 0;
}

int dt_engine_compaction_install(dt_engine *e, dt_engine_compaction *c, dt_err *err)
{
    tenant *t = find_tenant(e, c->tenant);
    for (int s = 0; s < 2; s++) {
        if (!c->fresh[s]) continue;
        if (!t || !t->idx[s]) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", c->tenant);
        int rc = dt_index_compact_install(t->idx[s], c->fresh[s], err);
        if (rc) return rc;
        /* c->fresh[s] now holds the old contents: dt_engine_compaction_free frees them */
    }
    return 0;
}

int dt_engine_compact(dt_engine *e, const char *tname, dt_err *err)
{
    dt_engine_compaction *c = NULL;
    int rc = dt_engine_compaction_prepare(e, tname, &c, err);
    if (rc == 0 && c) rc = dt_engine_compaction_install(e, c, err);
    dt_engine_compaction_free(c);
    return rc;
}

/* ---- LSA build ---- */

/* Every live record of t projected on a basis, into new matrices of its indexes' shapes (X[side]
 * is NULL for a side without an index or capacity; free them with dt_index_free_rows). Reads t. */
static int project_all(const tenant *t, const dt_u32map *col, const float *idf, const dt_lsa *lsa, float *X[2],
                       dt_err *err)
{
    int rc = 0;
    for (int s = 0; rc == 0 && s < 2; s++) {
        X[s] = NULL;
        if (!t->idx[s]) continue;
        X[s] = dt_index_alloc_rows(t->idx[s], lsa->dim, err);
        if (!X[s] && dt_index_capacity(t->idx[s])) return err ? -err->code : -DT_ENOMEM;
        size_t n = dt_index_slots(t->idx[s]);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            if (!dt_index_live(t->idx[s], i)) continue;
            const dt_tf *tf;
            size_t k;
            dt_index_terms(t->idx[s], i, &tf, &k);
            rc = project_on(col, idf, lsa, tf, k, X[s] + (size_t)i * lsa->dim, err);
        }
    }
    return rc;
}

/* A re-learned basis and every record's row on it, computed without changing the engine: begin
 * copies the term matrix (A), fit learns the basis from it, project fills X. */
struct dt_engine_relearn {
    char tenant[DT_TENANT_MAX + 1];
    bool has[2];          /* the tenant had an index of that side */
    uint64_t idx_epoch[2];/* ... at this epoch (as of project): install refuses an index that changed since */
    size_t built_docs;
    bool none;            /* too few records: the tenant loses its basis */
    bool fitted, projected;
    dt_lsa_opts lo;
    size_t *row_ptr;      /* A, the tenant's tf-idf matrix as of begin (CSR), until fit */
    uint32_t *cols;
    float *vals;          /* row-normalised: what the basis learns from */
    float *raw;           /* the same weights before normalising: what a record's row projects */
    size_t ncols;
    /* the records A holds: row r is slot row_slot[r] of side 0 for r < side_rows[0], then of side 1;
     * each index as it was at begin (the pointer, and its slots then) */
    uint32_t *row_slot;
    size_t side_rows[2];
    const dt_index *idx_begin[2];
    uint64_t gen_begin[2]; /* ... and its generation: a compaction since renumbered the slots */
    size_t n_begin[2];
    float *P;             /* after fit: row r of A on the new basis (dim floats each) */
    float *C[2];          /* after catch-up: slot n_begin[s] + j of side s on the new basis at row j */
    size_t n_caught[2];   /* slots below this were caught up (n_begin[s] until then) */
    dt_lsa lsa;
    dt_u32map col;
    float *idf;
    uint32_t *col_terms;
    float *X[2];          /* rows of each side's index on the new basis (dt_index_alloc_rows) */
};

static void free_matrix(dt_engine_relearn *r)
{
    free(r->row_ptr);
    free(r->cols);
    free(r->vals);
    free(r->raw);
    r->row_ptr = NULL;
    r->cols = NULL;
    r->vals = NULL;
    r->raw = NULL;
}

void dt_engine_relearn_free(dt_engine_relearn *r)
{
    if (!r) return;
    dt_lsa_free(&r->lsa);
    dt_u32map_free(&r->col);
    free(r->idf);
    free(r->col_terms);
    free_matrix(r);
    free(r->row_slot);
    free(r->P);
    for (int s = 0; s < 2; s++) {
        free(r->C[s]);
        dt_index_free_rows(r->X[s]);
    }
    free(r);
}

static void note_indexes(const tenant *t, dt_engine_relearn *rl)
{
    for (int s = 0; s < 2; s++) {
        rl->has[s] = t->idx[s] != NULL;
        rl->idx_epoch[s] = t->idx[s] ? dt_index_epoch(t->idx[s]) : 0;
    }
}

static int relearn_begin(const dt_engine *e, const tenant *t, dt_engine_relearn **out, dt_err *err)
{
    *out = NULL;
    if (t->kind == DENSE_EXTERNAL) return 0;
    dt_engine_relearn *rl = calloc(1, sizeof *rl);
    if (!rl) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory re-learning tenant '%s'", t->name);
    snprintf(rl->tenant, sizeof rl->tenant, "%s", t->name);
    dt_u32map_init(&rl->col);
    note_indexes(t, rl);
    size_t docs = 0, nnz = 0;
    for (int s = 0; s < 2; s++)
        if (t->idx[s]) {
            docs += dt_index_count(t->idx[s]);
            size_t n = dt_index_slots(t->idx[s]);
            for (uint32_t i = 0; i < n; i++) {
                if (!dt_index_live(t->idx[s], i)) continue;
                const dt_tf *tf;
                size_t k;
                dt_index_terms(t->idx[s], i, &tf, &k);
                nnz += k;
            }
        }
    rl->built_docs = docs;
    if (docs < e->opts.lsa_min_docs) {
        rl->none = rl->fitted = true;
        *out = rl;
        return 0;
    }
    rl->lo = dt_lsa_opts_default();
    rl->lo.dim = e->opts.dim;
    rl->lo.power_iters = e->opts.lsa_power_iters;
    rl->lo.seed = e->opts.lsa_seed;
    rl->lo.threads = e->opts.threads;
    dt_u32map df;
    dt_u32map_init(&df);
    size_t *row_ptr = rl->row_ptr = malloc((docs + 1) * sizeof *row_ptr);
    uint32_t *cols = rl->cols = malloc((nnz ? nnz : 1) * sizeof *cols);
    float *vals = rl->vals = malloc((nnz ? nnz : 1) * sizeof *vals);
    float *raw = rl->raw = malloc((nnz ? nnz : 1) * sizeof *raw);
    uint32_t *row_slot = rl->row_slot = malloc((docs ? docs : 1) * sizeof *row_slot);
    if (!row_ptr || !cols || !vals || !raw || !row_slot) goto nomem;
    /* document frequencies over both sides; a column for every term in >= 2 documents */
    for (int s = 0; s < 2; s++) {
        if (!t->idx[s]) continue;
        size_t n = dt_index_slots(t->idx[s]);
        for (uint32_t i = 0; i < n; i++) {
            if (!dt_index_live(t->idx[s], i)) continue;
            const dt_tf *tf;
            size_t k;
            dt_index_terms(t->idx[s], i, &tf, &k);
            for (size_t j = 0; j < k; j++) {
                uint32_t c = dt_u32map_get(&df, tf[j].term);
                if (dt_u32map_put(&df, tf[j].term, c == DT_U32MAP_NONE ? 1 : c + 1) < 0) goto nomem;
            }
        }
    }
    size_t ncols = 0;
    for (size_t i = 0; i < df.cap; i++)
        if (df.keys[i] != DT_U32MAP_NONE && df.vals[i] >= 2) ncols++;
    rl->idf = malloc((ncols ? ncols : 1) * sizeof *rl->idf);
    rl->col_terms = malloc((ncols ? ncols : 1) * sizeof *rl->col_terms);
    if (!rl->idf || !rl->col_terms || dt_u32map_reserve(&rl->col, ncols) < 0) goto nomem;
    ncols = 0;
    for (size_t i = 0; i < df.cap; i++)
        if (df.keys[i] != DT_U32MAP_NONE && df.vals[i] >= 2) {
            if (dt_u32map_put(&rl->col, df.keys[i], (uint32_t)ncols) < 0) goto nomem;
            rl->col_terms[ncols] = df.keys[i];
            rl->idf[ncols++] = (float)(log((double)(docs + 1) / (df.vals[i] + 1)) + 1.0);
        }
    rl->ncols = ncols;
    size_t r = 0, z = 0;
    row_ptr[0] = 0;
    for (int s = 0; s < 2; s++) {
        if (!t->idx[s]) continue;
        size_t n = dt_index_slots(t->idx[s]);
        rl->idx_begin[s] = t->idx[s];
        rl->gen_begin[s] = dt_index_generation(t->idx[s]);
        rl->n_begin[s] = rl->n_caught[s] = n;
        for (uint32_t i = 0; i < n; i++) {
            if (!dt_index_live(t->idx[s], i)) continue;
            const dt_tf *tf;
            size_t k;
            dt_index_terms(t->idx[s], i, &tf, &k);
            size_t z0 = z;
            double norm = 0;
            /* the weights project_on gives the record, in its order: its row comes out the same */
            for (size_t j = 0; j < k; j++) {
                uint32_t c = dt_u32map_get(&rl->col, tf[j].term);
                if (c == DT_U32MAP_NONE) continue;
                cols[z] = c;
                raw[z] = vals[z] = (1.0f + logf(tf[j].tf)) * rl->idf[c];
                norm += (double)vals[z] * vals[z];
                z++;
            }
            if (norm > 0)
                for (size_t j = z0; j < z; j++) vals[j] = (float)(vals[j] / sqrt(norm));
            row_slot[r] = i;
            row_ptr[++r] = z;
            rl->side_rows[s]++;
        }
    }
    dt_u32map_free(&df);
    *out = rl;
    return 0;
nomem:
    dt_u32map_free(&df);
    dt_engine_relearn_free(rl);
    return dt_err_set(err, DT_ENOMEM, NULL, "out of memory building the LSA basis of tenant '%s'", t->name);
}

int dt_engine_relearn_begin(const dt_engine *e, const char *tname, dt_engine_relearn **out, dt_err *err)
{
    *out = NULL;
    tenant *t = find_tenant(e, tname);
    if (!t) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", tenant_name(tname));
    return relearn_begin(e, t, out, err);
}

int dt_engine_relearn_fit(dt_engine_relearn *rl, dt_err *err)
{
    if (rl->fitted) return 0;
    dt_csr A = {rl->built_docs, rl->ncols, rl->row_ptr, rl->cols, rl->vals};
    int rc = dt_lsa_fit(&A, &rl->lo, &rl->lsa, err);
    free(rl->vals); /* learned: room for the rows below */
    rl->vals = NULL;
    /* every record of A on the new basis, here where nothing is held: project then copies them */
    if (rc == 0 && rl->built_docs && rl->lsa.dim) {
        if (!(rl->P = malloc(rl->built_docs * rl->lsa.dim * sizeof *rl->P))) {
            rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory projecting tenant '%s'", rl->tenant);
        } else {
            dt_csr R = {rl->built_docs, rl->ncols, rl->row_ptr, rl->cols, rl->raw};
            rc = dt_lsa_project_csr(&rl->lsa, &R, rl->P, rl->lsa.dim, err);
        }
    }
    free_matrix(rl);
    if (rc == 0) rl->fitted = true;
    return rc;
}

/* project_all for a re-learn: a slot that holds what it held at begin takes its row computed by
 * the fit; only records written since are projected here. */
static int project_since(const tenant *t, dt_engine_relearn *rl, dt_err *err)
{
    size_t dim = rl->lsa.dim;
    for (int s = 0; s < 2; s++) {
        rl->X[s] = NULL;
        const dt_index *idx = t->idx[s];
        if (!idx) continue;
        rl->X[s] = dt_index_alloc_rows(idx, dim, err);
        if (!rl->X[s] && dt_index_capacity(idx)) return err ? -err->code : -DT_ENOMEM;
        /* the same index, not compacted since: slots below n_begin still hold their records of
         * then (an index only appends; a compaction renumbers, and moves the generation on) */
        bool same = rl->P && idx == rl->idx_begin[s] && dt_index_generation(idx) == rl->gen_begin[s];
        size_t r = s ? rl->side_rows[0] : 0, end = r + rl->side_rows[s];
        size_t n = dt_index_slots(idx);
        for (uint32_t i = 0; i < n; i++) {
            if (!dt_index_live(idx, i)) continue;
            float *out = rl->X[s] + (size_t)i * dim;
            if (same && i < rl->n_begin[s]) {
                while (r < end && rl->row_slot[r] < i) r++;
                if (r < end && rl->row_slot[r] == i) {
                    memcpy(out, rl->P + r * dim, dim * sizeof *out);
                    continue;
                }
            } else if (same && i < rl->n_caught[s] && rl->C[s]) {
                memcpy(out, rl->C[s] + (size_t)(i - rl->n_begin[s]) * dim, dim * sizeof *out);
                continue;
            }
            const dt_tf *tf;
            size_t k;
            dt_index_terms(idx, i, &tf, &k);
            int rc = project_on(&rl->col, rl->idf, &rl->lsa, tf, k, out, err);
            if (rc) return rc;
        }
    }
    return 0;
}

int dt_engine_relearn_catch_up(const dt_engine *e, dt_engine_relearn *rl, size_t max, size_t *left, dt_err *err)
{
    *left = 0;
    const tenant *t = find_tenant(e, rl->tenant);
    if (!rl->fitted || rl->none || !rl->P || !t || t->kind == DENSE_EXTERNAL) return 0;
    size_t dim = rl->lsa.dim;
    for (int s = 0; s < 2; s++) {
        const dt_index *idx = t->idx[s];
        if (!idx || idx != rl->idx_begin[s] || dt_index_generation(idx) != rl->gen_begin[s])
            continue; /* compacted since: project does it all */
        size_t n = dt_index_slots(idx), from = rl->n_caught[s], to = from + max < n ? from + max : n;
        if (to > from) {
            float *C = realloc(rl->C[s], (to - rl->n_begin[s]) * dim * sizeof *C);
            if (!C) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory projecting tenant '%s'", rl->tenant);
            rl->C[s] = C;
            for (size_t i = from; i < to; i++) {
                if (!dt_index_live(idx, (uint32_t)i)) continue; /* never copied */
                const dt_tf *tf;
                size_t k;
                dt_index_terms(idx, (uint32_t)i, &tf, &k);
                int rc = project_on(&rl->col, rl->idf, &rl->lsa, tf, k, C + (i - rl->n_begin[s]) * dim, err);
                if (rc) return rc;
            }
            rl->n_caught[s] = to;
        }
        *left += n - to;
        max -= to - from;
    }
    return 0;
}

int dt_engine_relearn_project(const dt_engine *e, dt_engine_relearn *rl, dt_err *err)
{
    if (!rl->fitted) return dt_err_set(err, DT_EINVAL, NULL, "the basis of tenant '%s' is not learned yet", rl->tenant);
    tenant *t = find_tenant(e, rl->tenant);
    if (!t) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", rl->tenant);
    if (t->kind == DENSE_EXTERNAL)
        return dt_err_set(err, DT_EINVAL, "tenant", "tenant '%s' took external embeddings while its basis was learned",
                          rl->tenant);
    for (int s = 0; s < 2; s++) {
        dt_index_free_rows(rl->X[s]);
        rl->X[s] = NULL;
    }
    note_indexes(t, rl);
    rl->projected = true;
    return rl->none ? 0 : project_since(t, rl, err);
}

const char *dt_engine_relearn_tenant(const dt_engine_relearn *r)
{
    return r->tenant;
}

size_t dt_engine_relearn_docs(const dt_engine_relearn *r)
{
    return r->built_docs;
}

static int relearn_prepare(const dt_engine *e, const tenant *t, dt_engine_relearn **out, dt_err *err)
{
    int rc = relearn_begin(e, t, out, err);
    if (rc == 0 && *out) rc = dt_engine_relearn_fit(*out, err);
    if (rc == 0 && *out) rc = dt_engine_relearn_project(e, *out, err);
    if (rc) {
        dt_engine_relearn_free(*out);
        *out = NULL;
    }
    return rc;
}

int dt_engine_relearn_prepare(const dt_engine *e, const char *tname, dt_engine_relearn **out, dt_err *err)
{
    *out = NULL;
    tenant *t = find_tenant(e, tname);
    if (!t) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", tenant_name(tname));
    return relearn_prepare(e, t, out, err);
}

int dt_engine_relearn_install(dt_engine *e, dt_engine_relearn *rl, dt_err *err)
{
    tenant *t = find_tenant(e, rl->tenant);
    if (!t) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", rl->tenant);
    if (!rl->projected)
        return dt_err_set(err, DT_EINVAL, NULL, "the rows of tenant '%s' are not projected yet", rl->tenant);
    for (int s = 0; s < 2; s++)
        if ((t->idx[s] != NULL) != rl->has[s] || (t->idx[s] && dt_index_epoch(t->idx[s]) != rl->idx_epoch[s]))
            return dt_err_set(err, DT_EINVAL, "tenant", "tenant '%s' changed while its basis was learned", rl->tenant);
    t->built_docs = rl->built_docs;
    tenant_clear_lsa(t);
    if (rl->none) {
        t->kind = DENSE_NONE;
        for (int s = 0; s < 2; s++)
            if (t->idx[s]) dt_index_set_dim(t->idx[s], 0, NULL);
        t->epoch++;
        return 0;
    }
    t->lsa = rl->lsa;
    memset(&rl->lsa, 0, sizeof rl->lsa);
    t->col = rl->col;
    dt_u32map_init(&rl->col);
    t->idf = rl->idf;
    rl->idf = NULL;
    t->col_terms = rl->col_terms;
    rl->col_terms = NULL;
    t->kind = DENSE_LSA;
    for (int s = 0; s < 2; s++)
        if (t->idx[s]) {
            dt_index_install_rows(t->idx[s], rl->X[s], t->lsa.dim);
            rl->X[s] = NULL;
        }
    t->epoch++;
    return 0;
}

static int build_tenant(dt_engine *e, tenant *t, dt_err *err)
{
    dt_engine_relearn *rl = NULL;
    int rc = relearn_prepare(e, t, &rl, err);
    if (rc == 0 && rl) rc = dt_engine_relearn_install(e, rl, err);
    dt_engine_relearn_free(rl);
    return rc;
}

bool dt_engine_needs_build(const dt_engine *e, const char *tname)
{
    tenant *t = find_tenant(e, tname);
    if (!t || t->kind == DENSE_EXTERNAL) return false;
    size_t live = 0;
    for (int s = 0; s < 2; s++)
        if (t->idx[s]) live += dt_index_count(t->idx[s]);
    return live >= e->opts.lsa_min_docs && live >= 2 * t->built_docs;
}

int dt_engine_build(dt_engine *e, const char *tname, dt_err *err)
{
    if (tname) {
        tenant *t = find_tenant(e, tname);
        if (!t) return dt_err_set(err, DT_ENOTFOUND, "tenant", "no tenant '%s'", tname);
        return build_tenant(e, t, err);
    }
    for (size_t i = 0; i < e->n_tenants; i++) {
        int rc = build_tenant(e, &e->tenants[i], err);
        if (rc) return rc;
    }
    return 0;
}

/* ---- searching ---- */

dt_searcher *dt_searcher_new(dt_engine *e, dt_err *err)
{
    dt_searcher *s = calloc(1, sizeof *s);
    if (!s) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating a searcher");
        return NULL;
    }
    s->e = e;
    dt_text_opts to = dt_text_opts_default();
    if (!(s->text = dt_text_new(&to, err))) {
        free(s);
        return NULL;
    }
    dt_tokens_init(&s->toks);
    return s;
}

void dt_searcher_free(dt_searcher *s)
{
    if (!s) return;
    dt_text_free(s->text);
    dt_tokens_free(&s->toks);
    free(s);
}

void dt_match_result_free(dt_match_result *r)
{
    if (!r) return;
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Everything one query needs while its index is scanned. */
typedef struct qstate {
    const dt_query *q;
    size_t qi;
    tenant *t;
    dt_index *idx;
    const dt_record *qrec; /* query by record: the record */
    dt_codes qcodes;       /* ... and its codes */
    dt_tf *terms;          /* query terms (after feedback), weights in tf */
    size_t n_terms;
    size_t n_orig_terms;   /* the first n_orig_terms come from the query itself */
    float *vec;            /* dense query vector, dim of idx, or NULL */
    float *acc;            /* BM25 per slot */
    float lex_scale;       /* 1 / max BM25 over allowed slots (0 when none) */
    float dense_scale;     /* 1 / best cosine among the fusion candidates (1 when not scaled) */
    uint64_t *allow;
    size_t n_allowed;
    dt_weights w;
    bool structured;       /* structured fit applies (query by record with ws > 0) */
    char **prefix_buf;     /* region prefixes incl. expanded clusters (owned array) */
    dt_filter filter;
} qstate;

static void qstate_free(qstate *st)
{
    free(st->terms);
    free(st->vec);
    free(st->acc);
    free(st->allow);
    free(st->prefix_buf);
    memset(st, 0, sizeof *st);
}

static float fit_part(const dt_codes *qc, const dt_record *q, const dt_codes *rc, const dt_record *r, int part)
{
    switch (part) {
    case DT_FIT_FIELD: {
        int dq = qc->field_depth, dr = rc->field_depth;
        if (!dq || !dr) return -1;
        return (float)dt_codes_shared(qc->field, dq, rc->field, dr) / (float)(dq > dr ? dq : dr);
    }
    case DT_FIT_REGION: {
        int dq = qc->region_depth, dr = rc->region_depth;
        if (!dq || !dr) return -1;
        float f = (float)dt_codes_shared(qc->region, dq, rc->region, dr) / (float)(dq > dr ? dq : dr);
        if (f < 0.5f && (qc->clusters & rc->clusters)) f = 0.5f;
        return f;
    }
    case DT_FIT_TRL: {
        if (!q->trl || !r->trl) return -1;
        /* the demand states the minimum level it accepts; the achievement states its level */
        int need = q->side == DT_DEMAND ? q->trl : r->trl;
        int have = q->side == DT_DEMAND ? r->trl : q->trl;
        if (have >= need) return 1;
        float f = 1.0f - (float)(need - have) / 4.0f;
        return f > 0 ? f : 0;
    }
    case DT_FIT_PRICE: {
        /* the demand's highest budget against the achievement's lowest ask; a missing end is open
         * (only a minimum is "from that price up", only a maximum "up to that price") */
        const dt_record *d = q->side == DT_DEMAND ? q : r, *a = q->side == DT_DEMAND ? r : q;
        if ((isnan(d->price_min) && isnan(d->price_max)) || (isnan(a->price_min) && isnan(a->price_max))) return -1;
        double budget = !isnan(d->price_max) ? d->price_max : INFINITY;
        double ask = !isnan(a->price_min) ? a->price_min : 0;
        if (ask <= budget) return 1;
        return ask > 0 ? (float)(budget / ask) : 1;
    }
    case DT_FIT_MODES:
        if (!q->modes || !r->modes) return -1;
        return (q->modes & r->modes) ? 1.0f : 0.0f;
    }
    return -1;
}

/* Mean of the available structured-fit parts (0 when none is available). */
static float fit_score(const dt_codes *qc, const dt_record *q, const dt_codes *rc, const dt_record *r, float *parts)
{
    float sum = 0;
    int n = 0;
    for (int p = 0; p < DT_FIT_COUNT; p++) {
        float f = fit_part(qc, q, rc, r, p);
        if (parts) parts[p] = f;
        if (f >= 0) sum += f, n++;
    }
    return n ? sum / (float)n : 0;
}

static inline bool allowed(const qstate *st, size_t slot)
{
    return (st->allow[slot >> 6] >> (slot & 63)) & 1;
}

static inline float combine(const qstate *st, size_t slot, float dense)
{
    float s = st->w.dense * dense * st->dense_scale + st->w.lexical * st->acc[slot] * st->lex_scale;
    if (st->structured)
        s += st->w.structured * fit_score(&st->qcodes, st->qrec, dt_index_codes(st->idx, (uint32_t)slot),
                                          dt_index_record(st->idx, (uint32_t)slot), NULL);
    return s;
}

typedef struct adjust_ctx {
    const dt_engine *e;
    qstate *const *qs; /* the group's queries, in GEMM row order */
} adjust_ctx;

static void adjust_block(void *ud, size_t q0, size_t mq, size_t row0, size_t nrows, float *scores, size_t ld)
{
    const adjust_ctx *c = ud;
    for (size_t qi = q0; qi < q0 + mq; qi++) {
        const qstate *st = c->qs[qi];
        float *sc = scores + (qi - q0) * ld;
        for (size_t j = 0; j < nrows; j++) {
            size_t slot = row0 + j;
            sc[j] = allowed(st, slot) ? combine(st, slot, sc[j]) : -INFINITY;
        }
    }
}

/* Bounded min-heap top-k over explicit scores (no dense part): ties by lower slot. */
static bool hit_better(dt_hit a, dt_hit b)
{
    return a.score > b.score || (a.score == b.score && a.row < b.row);
}

static void heap_push(dt_hit *h, size_t *n, size_t k, dt_hit x)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = x;
        while (i && hit_better(h[(i - 1) / 2], h[i])) {
            dt_hit t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!hit_better(x, h[0])) return;
    h[0] = x;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && hit_better(h[m], h[l])) m = l;
        if (r < *n && hit_better(h[m], h[r])) m = r;
        if (m == i) break;
        dt_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_hit(const void *a, const void *b)
{
    dt_hit x = *(const dt_hit *)a, y = *(const dt_hit *)b;
    return hit_better(x, y) ? -1 : hit_better(y, x) ? 1 : 0;
}

static size_t scalar_topk(const qstate *st, size_t k, dt_hit *out)
{
    size_t n = 0, slots = dt_index_slots(st->idx);
    for (size_t s = 0; s < slots; s++) {
        if (!allowed(st, s)) continue;
        float sc = combine(st, s, 0);
        heap_push(out, &n, k, (dt_hit){sc, (uint32_t)s});
    }
    qsort(out, n, sizeof *out, cmp_hit);
    return n;
}

static int cmp_tf_weight(const void *a, const void *b)
{
    float x = ((const dt_tf *)a)->tf, y = ((const dt_tf *)b)->tf;
    return x > y ? -1 : x < y;
}

/* RM3-style feedback: the top documents by BM25 vote for their terms (weighted by the document's
 * normalised score and the term's relative frequency and idf); the strongest terms not already in
 * the query join it with a total weight of prf_weight relative to the original query. */
static int add_feedback(const dt_engine *e, qstate *st, dt_err *err)
{
    size_t nd = e->opts.prf_docs, nt = e->opts.prf_terms;
    if (!nd || !nt || !st->n_terms) return 0;
    dt_hit *top = malloc(nd * sizeof *top);
    if (!top) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    size_t n = 0, slots = dt_index_slots(st->idx);
    for (size_t s = 0; s < slots; s++)
        if (allowed(st, s) && st->acc[s] > 0) heap_push(top, &n, nd, (dt_hit){st->acc[s], (uint32_t)s});
    if (n == 0) {
        free(top);
        return 0;
    }
    qsort(top, n, sizeof *top, cmp_hit);
    dt_u32map pos;
    dt_u32map_init(&pos);
    dt_tf *cand = NULL;
    size_t nc = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const dt_tf *tf;
        size_t k;
        dt_index_terms(st->idx, top[i].row, &tf, &k);
        float dl = (float)dt_index_doc_len(st->idx, top[i].row);
        float dw = top[i].score / top[0].score;
        for (size_t j = 0; j < k; j++) {
            float v = dw * tf[j].tf / (dl > 0 ? dl : 1) * (float)dt_index_idf(st->idx, tf[j].term);
            uint32_t p = dt_u32map_get(&pos, tf[j].term);
            if (p != DT_U32MAP_NONE) {
                cand[p].tf += v;
                continue;
            }
            if (nc == cap) {
                cap = cap ? cap * 2 : 256;
                dt_tf *c2 = realloc(cand, cap * sizeof *c2);
                if (!c2) goto nomem;
                cand = c2;
            }
            if (dt_u32map_put(&pos, tf[j].term, (uint32_t)nc) < 0) goto nomem;
            cand[nc++] = (dt_tf){tf[j].term, v};
        }
    }
    for (size_t i = 0; i < st->n_terms; i++) { /* original terms are not expansion candidates */
        uint32_t p = dt_u32map_get(&pos, st->terms[i].term);
        if (p != DT_U32MAP_NONE) cand[p].tf = 0;
    }
    qsort(cand, nc, sizeof *cand, cmp_tf_weight);
    if (nc > nt) nc = nt;
    while (nc && cand[nc - 1].tf <= 0) nc--;
    if (nc) {
        float qsum = 0, csum = 0;
        for (size_t i = 0; i < st->n_terms; i++) qsum += st->terms[i].tf;
        for (size_t i = 0; i < nc; i++) csum += cand[i].tf;
        dt_tf *t2 = realloc(st->terms, (st->n_terms + nc) * sizeof *t2);
        if (!t2) goto nomem;
        st->terms = t2;
        for (size_t i = 0; i < nc; i++)
            st->terms[st->n_terms + i] = (dt_tf){cand[i].term, cand[i].tf / csum * qsum * e->opts.prf_weight};
        st->n_terms += nc;
        memset(st->acc, 0, slots * sizeof *st->acc);
        dt_index_bm25(st->idx, st->terms, st->n_terms, e->opts.bm25_k1, e->opts.bm25_b, st->acc);
    }
    goto out;
nomem:
    rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory in query feedback");
out:
    dt_u32map_free(&pos);
    free(cand);
    free(top);
    return rc;
}

/* Fewest lexical candidates from which the fusion is estimated; with fewer, the dense part stays
 * the plain cosine. */
#define FUSION_MIN_CANDIDATES 5

/* Score normalisation and query-adaptive weighting of the convex combination, estimated on the
 * query's best fusion_depth lexical candidates (allowed records with a BM25 score above 0):
 * - the dense part is divided by the best cosine among them, as the lexical part is divided by the
 *   best BM25, so both parts are on the same scale where the ranking is decided whatever the range
 *   of the vectors' cosines (LSA or external embeddings);
 * - with fusion_adapt, the dense weight is multiplied by the agreement of the two parts there,
 *   the Pearson correlation of BM25 and cosine over those candidates (floored at 0), and the
 *   lexical weight takes what the dense weight gives up: a dense space that disagrees with exact
 *   term evidence on the very records that evidence ranks best does not get to reorder them.
 * Nothing changes when fewer than FUSION_MIN_CANDIDATES candidates exist or either part is
 * constant over them. Cost: fusion_depth dot products of the dense dimension. */
static int fuse_weights(const dt_engine *e, qstate *st, size_t slots, dt_err *err)
{
    size_t depth = e->opts.fusion_depth, n = 0, d = dt_index_dim(st->idx);
    dt_hit *top = malloc(depth * sizeof *top);
    if (!top) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    for (size_t s = 0; s < slots; s++)
        if (st->acc[s] > 0 && allowed(st, s)) heap_push(top, &n, depth, (dt_hit){st->acc[s], (uint32_t)s});
    if (n >= FUSION_MIN_CANDIDATES) {
        const float *X = dt_index_matrix(st->idx);
        double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, best = 0;
        for (size_t i = 0; i < n; i++) {
            const float *row = X + (size_t)top[i].row * d;
            double x = top[i].score, y = 0;
            for (size_t j = 0; j < d; j++) y += (double)st->vec[j] * row[j];
            if (y > best) best = y;
            sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
        }
        double m = (double)n, vx = sxx / m - (sx / m) * (sx / m), vy = syy / m - (sy / m) * (sy / m);
        if (best > 0) st->dense_scale = (float)(1.0 / best);
        /* weights the caller gave are used as given; only the defaults adapt */
        if (e->opts.fusion_adapt && !st->q->weights && vx > 1e-12 * (sxx / m) && vy > 1e-12 * (syy / m)) {
            double r = (sxy / m - (sx / m) * (sy / m)) / sqrt(vx * vy);
            float wd = st->w.dense * (float)(r > 0 ? (r < 1 ? r : 1) : 0);
            st->w.lexical += st->w.dense - wd;
            st->w.dense = wd;
        }
    }
    free(top);
    return 0;
}

static int prepare(dt_searcher *sr, const dt_query *q, size_t qi, qstate *st, dt_err *err)
{
    dt_engine *e = sr->e;
    memset(st, 0, sizeof *st);
    st->q = q;
    st->qi = qi;
    st->w = q->weights ? *q->weights : e->opts.weights;
    if (!(st->w.dense >= 0 && st->w.lexical >= 0 && st->w.structured >= 0) ||
        st->w.dense + st->w.lexical + st->w.structured <= 0)
        return dt_err_set(err, DT_EINVAL, "weights", "weights must be finite, >= 0 and not all 0");
    if (q->target != DT_DEMAND && q->target != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "target", "must be demand or achievement");
    if (!!q->record_id == !!q->text)
        return dt_err_set(err, DT_EINVAL, "query", "give exactly one of a record id or a text");
    st->t = find_tenant(e, q->tenant);
    if (q->record_id) {
        dt_index *qi_idx = st->t ? st->t->idx[q->record_side] : NULL;
        int64_t s = qi_idx ? dt_index_find(qi_idx, q->record_id) : -1;
        if (s < 0)
            return dt_err_set(err, DT_ENOTFOUND, "record_id", "no %s with id '%s' in tenant '%s'",
                              dt_side_name(q->record_side), q->record_id, tenant_name(q->tenant));
        st->qrec = dt_index_record(qi_idx, (uint32_t)s);
        st->qcodes = *dt_index_codes(qi_idx, (uint32_t)s);
    } else if (strlen(q->text) > DT_TEXT_MAX) {
        return dt_err_set(err, DT_ELIMIT, "text", "longer than %d bytes", DT_TEXT_MAX);
    }
    st->idx = st->t ? st->t->idx[q->target] : NULL;
    if (!st->idx || dt_index_slots(st->idx) == 0) return 0;

    /* query terms */
    int rc;
    if (st->qrec) {
        rc = tokenize_record(sr->text, e->opts.title_weight, st->qrec, &sr->toks, err);
    } else {
        dt_tokens_clear(&sr->toks);
        rc = dt_text_tokenize(sr->text, q->text, strlen(q->text), &sr->toks, err);
        if (rc) snprintf(err->field, sizeof err->field, "text");
    }
    if (rc) return rc;
    rc = term_counts(&sr->toks, &st->terms, &st->n_terms, err);
    if (rc) return rc;
    st->n_orig_terms = st->n_terms;

    /* filter */
    size_t slots = dt_index_slots(st->idx), words = (slots + 63) / 64;
    st->filter = q->filter;
    size_t np = q->filter.n_region_prefixes;
    for (size_t i = 0; i < q->n_clusters; i++) {
        size_t n;
        if (!dt_engine_cluster(e, q->clusters[i], &n))
            return dt_err_set(err, DT_EINVAL, "filter.clusters", "unknown cluster '%s'", q->clusters[i]);
        np += n;
    }
    if (q->n_clusters) {
        st->prefix_buf = malloc(np * sizeof(char *));
        if (!st->prefix_buf) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < q->filter.n_region_prefixes; i++) st->prefix_buf[k++] = (char *)q->filter.region_prefixes[i];
        for (size_t i = 0; i < q->n_clusters; i++) {
            size_t n;
            const char *const *p = dt_engine_cluster(e, q->clusters[i], &n);
            for (size_t j = 0; j < n; j++) st->prefix_buf[k++] = (char *)p[j];
        }
        st->filter.region_prefixes = (const char *const *)st->prefix_buf;
        st->filter.n_region_prefixes = k;
    }
    st->allow = calloc(words ? words : 1, sizeof *st->allow);
    st->acc = calloc(slots, sizeof *st->acc);
    if (!st->allow || !st->acc) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    st->n_allowed = dt_index_filter(st->idx, &st->filter, st->allow);
    if (q->allow_slots) {
        st->n_allowed = 0;
        for (size_t w = 0; w < words; w++) st->n_allowed += (size_t)__builtin_popcountll(st->allow[w] &= q->allow_slots[w]);
    }
    if (st->qrec && q->record_side == q->target) {
        int64_t self = dt_index_find(st->idx, st->qrec->id);
        if (self >= 0 && allowed(st, (size_t)self)) st->allow[self >> 6] &= ~(1ull << (self & 63)), st->n_allowed--;
    }
    for (size_t i = 0; i < q->n_exclude; i++) {
        int64_t s = dt_index_find(st->idx, q->exclude_ids[i]);
        if (s >= 0 && allowed(st, (size_t)s)) st->allow[s >> 6] &= ~(1ull << (s & 63)), st->n_allowed--;
    }

    /* lexical */
    dt_index_bm25(st->idx, st->terms, st->n_terms, e->opts.bm25_k1, e->opts.bm25_b, st->acc);
    if (!st->qrec && (q->prf < 0 ? e->opts.prf : q->prf > 0) && st->w.lexical > 0 &&
        st->n_orig_terms <= e->opts.prf_max_terms) {
        rc = add_feedback(e, st, err);
        if (rc) return rc;
    }
    float mx = 0;
    for (size_t s = 0; s < slots; s++)
        if (st->acc[s] > mx && allowed(st, s)) mx = st->acc[s];
    st->lex_scale = mx > 0 ? 1.0f / mx : 0;

    /* dense */
    size_t d = dt_index_dim(st->idx);
    if (d && st->w.dense > 0) {
        if (st->qrec) {
            dt_index *qx = st->t->idx[q->record_side];
            if (dt_index_dim(qx) == d) {
                int64_t s = dt_index_find(qx, st->qrec->id);
                st->vec = malloc(d * sizeof *st->vec);
                if (!st->vec) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
                memcpy(st->vec, dt_index_row(qx, (uint32_t)s), d * sizeof *st->vec);
            }
        } else if (st->t->kind == DENSE_LSA) {
            st->vec = malloc(d * sizeof *st->vec);
            if (!st->vec) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
            rc = lsa_project_terms(st->t, st->terms, st->n_orig_terms, st->vec, err);
            if (rc) return rc;
        }
    }
    st->dense_scale = 1;
    if (st->vec && st->w.dense > 0 && st->w.lexical > 0 && e->opts.fusion_depth) {
        rc = fuse_weights(e, st, slots, err);
        if (rc) return rc;
    }
    st->structured = st->qrec && st->w.structured > 0;
    return 0;
}

static float term_bm25(const dt_engine *e, const dt_index *idx, uint32_t slot, const dt_tf *qt)
{
    const dt_tf *tf;
    size_t n;
    dt_index_terms(idx, slot, &tf, &n);
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tf[mid].term < qt->term)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == n || tf[lo].term != qt->term) return 0;
    float k1 = e->opts.bm25_k1, b = e->opts.bm25_b, f = tf[lo].tf;
    float dl = (float)dt_index_doc_len(idx, slot), avg = (float)dt_index_avg_doc_len(idx);
    return (float)dt_index_idf(idx, qt->term) * qt->tf * f * (k1 + 1) / (f + k1 * (1 - b + b * dl / avg));
}

static int cmp_term_weight(const void *a, const void *b)
{
    float x = ((const dt_term_weight *)a)->weight, y = ((const dt_term_weight *)b)->weight;
    return x > y ? -1 : x < y;
}

/* Explains one match: score parts, structured-fit parts, and the query terms it shares, named by
 * the query's own tokens (sr->toks still holds them). */
static void explain(dt_searcher *sr, const qstate *st, dt_match *m)
{
    const dt_engine *e = sr->e;
    float parts[DT_FIT_COUNT];
    for (int p = 0; p < DT_FIT_COUNT; p++) m->fit[p] = -1;
    if (st->qrec)
        fit_score(&st->qcodes, st->qrec, dt_index_codes(st->idx, m->slot), m->rec, parts), memcpy(m->fit, parts, sizeof parts);
    dt_term_weight all[64];
    size_t na = 0;
    float scale = st->w.lexical * st->lex_scale;
    for (size_t i = 0; i < st->n_orig_terms && scale > 0; i++) {
        float w = term_bm25(e, st->idx, m->slot, &st->terms[i]) * scale;
        if (w <= 0) continue;
        dt_term_weight tw = {{0}, w};
        for (size_t k = 0; k < sr->toks.n; k++)
            if (sr->toks.v[k].bucket == st->terms[i].term) {
                size_t len = sr->toks.v[k].len < sizeof tw.term ? sr->toks.v[k].len : sizeof tw.term - 1;
                memcpy(tw.term, sr->toks.buf + sr->toks.v[k].off, len);
                break;
            }
        if (na < 64) {
            all[na++] = tw;
        } else { /* keep the 64 strongest */
            size_t minj = 0;
            for (size_t j = 1; j < na; j++)
                if (all[j].weight < all[minj].weight) minj = j;
            if (all[minj].weight < w) all[minj] = tw;
        }
    }
    qsort(all, na, sizeof *all, cmp_term_weight);
    m->n_terms = na < DT_EXPLAIN_TERMS ? na : DT_EXPLAIN_TERMS;
    memcpy(m->terms, all, m->n_terms * sizeof *all);
}

/* Turns hits into matches (dropping the first `offset`), with score parts. */
static int fill_result(dt_searcher *sr, qstate *st, const dt_hit *hits, size_t nh, dt_match_result *res, dt_err *err)
{
    const dt_query *q = st->q;
    size_t from = q->offset < nh ? q->offset : nh, n = nh - from;
    res->v = calloc(n ? n : 1, sizeof *res->v);
    if (!res->v) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    size_t d = dt_index_dim(st->idx);
    if (q->explain && n) {
        /* explanations name terms by the query's tokens; prepare() left in sr->toks only those of
         * the last query prepared, so tokenize this one again */
        int rc = st->qrec ? tokenize_record(sr->text, sr->e->opts.title_weight, st->qrec, &sr->toks, err)
                          : (dt_tokens_clear(&sr->toks), dt_text_tokenize(sr->text, q->text, strlen(q->text), &sr->toks, err));
        if (rc) return rc;
    }
    for (size_t i = 0; i < n; i++) {
        dt_match *m = &res->v[i];
        m->slot = hits[from + i].row;
        m->rec = dt_index_record(st->idx, m->slot);
        m->score = hits[from + i].score;
        float cos = 0;
        if (st->vec) {
            const float *row = dt_index_row(st->idx, m->slot);
            for (size_t j = 0; j < d; j++) cos += st->vec[j] * row[j];
        }
        m->dense = st->w.dense * cos * st->dense_scale;
        m->lexical = st->w.lexical * st->acc[m->slot] * st->lex_scale;
        m->structured = st->structured ? st->w.structured * fit_score(&st->qcodes, st->qrec,
                                                                      dt_index_codes(st->idx, m->slot), m->rec, NULL)
                                       : 0;
        if (q->explain) explain(sr, st, m);
    }
    res->n = n;
    return 0;
}

int dt_search(dt_searcher *sr, const dt_query *qs, size_t m, dt_match_result *res, dt_err *err)
{
    dt_engine *e = sr->e;
    qstate *st = calloc(m ? m : 1, sizeof *st);
    qstate **group = calloc(m ? m : 1, sizeof *group);
    bool *done = calloc(m ? m : 1, sizeof *done);
    float *Q = NULL;
    dt_hit *hits = NULL;
    size_t *n_out = NULL;
    int rc = 0;
    if (!st || !group || !done) {
        rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m; i++) memset(&res[i], 0, sizeof res[i]);
    for (size_t i = 0; i < m && rc == 0; i++) {
        if (qs[i].k > 10000) {
            rc = dt_err_set(err, DT_ELIMIT, "k", "at most 10000");
        } else if (qs[i].offset > 100000) {
            rc = dt_err_set(err, DT_ELIMIT, "offset", "at most 100000");
        } else {
            rc = prepare(sr, &qs[i], i, &st[i], err);
        }
        if (rc && m > 1 && err) {
            char f[64];
            snprintf(f, sizeof f, "queries[%zu].%.30s", i, err->field);
            snprintf(err->field, sizeof err->field, "%s", f);
        }
        res[i].epoch = st[i].t ? st[i].t->epoch : 0;
        res[i].total_candidates = st[i].n_allowed;
    }
    if (rc) goto out;
    for (size_t i = 0; i < m && rc == 0; i++) {
        if (done[i]) continue;
        qstate *s0 = &st[i];
        size_t want = qs[i].k + qs[i].offset;
        if (!s0->idx || dt_index_slots(s0->idx) == 0 || want == 0) {
            done[i] = true;
            res[i].v = calloc(1, sizeof *res[i].v);
            if (!res[i].v) rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
            continue;
        }
        if (!s0->vec) { /* no dense part: score rows directly */
            dt_hit *h = malloc(want * sizeof *h);
            if (!h) {
                rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
                break;
            }
            size_t nh = scalar_topk(s0, want, h);
            rc = fill_result(sr, s0, h, nh, &res[i], err);
            free(h);
            done[i] = true;
            continue;
        }
        /* every query on the same index with a dense vector joins one GEMM */
        size_t g = 0, kmax = 0, d = dt_index_dim(s0->idx);
        for (size_t j = i; j < m; j++)
            if (!done[j] && st[j].idx == s0->idx && st[j].vec) {
                group[g++] = &st[j];
                size_t w = qs[j].k + qs[j].offset;
                if (w > kmax) kmax = w;
            }
        free(Q);
        free(hits);
        free(n_out);
        Q = malloc(g * d * sizeof *Q);
        hits = malloc(g * kmax * sizeof *hits);
        n_out = malloc(g * sizeof *n_out);
        if (!Q || !hits || !n_out) {
            rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
            break;
        }
        for (size_t j = 0; j < g; j++) memcpy(Q + j * d, group[j]->vec, d * sizeof *Q);
        adjust_ctx ctx = {e, group};
        dt_topk_opts to = {0};
        to.threads = e->opts.threads;
        to.adjust = adjust_block;
        to.adjust_ud = &ctx;
        rc = dt_topk_ip(dt_index_matrix(s0->idx), dt_index_slots(s0->idx), d, d, Q, g, kmax, &to, hits, n_out, err);
        for (size_t j = 0; j < g && rc == 0; j++) {
            qstate *sj = group[j];
            size_t w = qs[sj->qi].k + qs[sj->qi].offset, nh = n_out[j] < w ? n_out[j] : w;
            rc = fill_result(sr, sj, hits + j * kmax, nh, &res[sj->qi], err);
            done[sj->qi] = true;
        }
    }
out:
    if (rc)
        for (size_t i = 0; i < m; i++) dt_match_result_free(&res[i]);
    for (size_t i = 0; i < m; i++) qstate_free(&st[i]);
    free(st);
    free(group);
    free(done);
    free(Q);
    free(hits);
    free(n_out);
    return rc;
}

/* ---- stored bases ---- */

int dt_engine_get_basis(const dt_engine *e, const char *tname, dt_engine_basis *b)
{
    tenant *t = find_tenant(e, tname);
    if (!t) return -DT_ENOTFOUND;
    if (t->kind != DENSE_LSA) return 0;
    b->built_docs = t->built_docs;
    b->n_terms = t->lsa.n_terms;
    b->dim = t->lsa.dim;
    b->terms = t->col_terms;
    b->idf = t->idf;
    b->proj = t->lsa.proj;
    b->sigma = t->lsa.sigma;
    return 1;
}

/* Re-projects every live record of an LSA tenant on its current basis. */
static int reproject(tenant *t, dt_err *err)
{
    float *X[2] = {NULL, NULL};
    int rc = project_all(t, &t->col, t->idf, &t->lsa, X, err);
    for (int s = 0; s < 2; s++) {
        if (rc == 0 && t->idx[s])
            dt_index_install_rows(t->idx[s], X[s], t->lsa.dim);
        else
            dt_index_free_rows(X[s]);
    }
    t->epoch++;
    return rc;
}

int dt_engine_set_basis(dt_engine *e, const char *tname, const dt_engine_basis *b, dt_err *err)
{
    if (!b->n_terms || !b->dim || b->dim > DT_DIM_MAX || !b->terms || !b->idf || !b->proj || !b->sigma)
        return dt_err_set(err, DT_EINVAL, "basis", "empty or inconsistent LSA basis");
    tenant *t = get_tenant(e, tname, err);
    if (!t) return err ? -err->code : -DT_ENOMEM;
    if (t->kind == DENSE_EXTERNAL)
        return dt_err_set(err, DT_EINVAL, "basis", "tenant '%s' uses external embeddings", t->name);
    dt_lsa lsa;
    memset(&lsa, 0, sizeof lsa);
    dt_u32map col;
    dt_u32map_init(&col);
    float *idf = malloc(b->n_terms * sizeof *idf);
    uint32_t *terms = malloc(b->n_terms * sizeof *terms);
    int rc = dt_lsa_alloc(&lsa, b->n_terms, b->dim, err);
    if (rc == 0 && (!idf || !terms || dt_u32map_reserve(&col, b->n_terms) < 0))
        rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory loading the basis of tenant '%s'", t->name);
    for (size_t c = 0; rc == 0 && c < b->n_terms; c++) {
        if (dt_u32map_get(&col, b->terms[c]) != DT_U32MAP_NONE || b->terms[c] == DT_U32MAP_NONE)
            rc = dt_err_set(err, DT_EINVAL, "basis", "term %u appears twice in the basis", b->terms[c]);
        else if (dt_u32map_put(&col, b->terms[c], (uint32_t)c) < 0)
            rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    }
    if (rc) {
        dt_lsa_free(&lsa);
        dt_u32map_free(&col);
        free(idf);
        free(terms);
        return rc;
    }
    memcpy(lsa.proj, b->proj, b->n_terms * b->dim * sizeof(float));
    memcpy(lsa.sigma, b->sigma, b->dim * sizeof(float));
    memcpy(idf, b->idf, b->n_terms * sizeof *idf);
    memcpy(terms, b->terms, b->n_terms * sizeof *terms);
    tenant_clear_lsa(t);
    t->lsa = lsa;
    t->col = col;
    t->idf = idf;
    t->col_terms = terms;
    t->built_docs = b->built_docs;
    t->kind = DENSE_LSA;
    return reproject(t, err);
}
