/* engine.h - the matching engine: every tenant's two indexes, their vectorizers, and ranking.
 *
 * An engine holds, per tenant, a demand index and an achievement index (index.h) and one dense
 * space shared by both sides: either a built-in LSA basis learned from the tenant's records
 * (lsa.h), or the records' external embeddings when they carry them. Records are tokenized
 * (text.h) into hashed terms for BM25 and for LSA.
 *
 * Ranking (DESIGN section 2): score = w_dense' * cosine / c + w_lexical' * BM25 / max BM25 of the
 * query + w_structured * structured fit; the dense part comes from blocked GEMM over the whole matrix
 * (topk.h), the others are added to each block before selection, so results are exact.
 * - BM25 (k1, b) over hashed terms; a record's title counts title_weight times (a BM25F-style field
 *   weight). Query terms weigh by their count in the query (BM25 with k3 = infinity), whether the
 *   query is a short text or a whole record. Free-text queries of at most prf_max_terms distinct
 *   terms get RM3-style pseudo-relevance feedback (long texts are left as they are: feedback helps
 *   keyword queries and drifts long ones).
 * - Fusion (when both w_dense and w_lexical are > 0 and the query has at least 5 lexical
 *   candidates): c is the best cosine among the query's top fusion_depth BM25 candidates, so both
 *   parts share a scale; with fusion_adapt, w_dense' = w_dense * max(0, r) where r is the Pearson
 *   correlation of BM25 and cosine over those candidates, and w_lexical' = w_lexical + w_dense -
 *   w_dense'. Otherwise c = 1 and the weights are used as given. The weighted parts reported in a
 *   dt_match are the ones actually added.
 *
 * Thread-safety: writers (upsert, delete, build, set_*) need exclusive access; any number of
 * dt_searcher objects (one per thread) may search concurrently between writes.
 * No I/O: loaders/ and server/ feed records in.
 */
#ifndef DT_ENGINE_H
#define DT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "index.h"
#include "record.h"

typedef struct dt_weights {
    float dense, lexical, structured;
} dt_weights;

typedef struct dt_engine_opts {
    size_t dim;          /* LSA dimension (default 256) */
    dt_weights weights;  /* default ranking weights (0.7 dense, 0.3 lexical, 0.1 structured) */
    float bm25_k1, bm25_b;
    int threads;         /* threads one search may use for its GEMM (default 1) */
    size_t lsa_min_docs; /* no LSA basis below this many records in a tenant (default 20) */
    int lsa_power_iters; /* randomized SVD power iterations (default 2) */
    uint64_t lsa_seed;
    bool prf;            /* pseudo-relevance feedback on free-text queries (default true) */
    size_t prf_docs;     /* feedback documents (default 10) */
    size_t prf_terms;    /* expansion terms (default 20) */
    float prf_weight;    /* weight of the expansion relative to the original query (default 0.5) */
    size_t prf_max_terms; /* feedback only for queries of at most this many distinct terms (default 40) */
    unsigned title_weight; /* a title's tokens count this many times (default 2; 0 ignores titles) */
    size_t fusion_depth; /* lexical candidates the fusion is estimated on; 0 = plain cosine (default 100) */
    bool fusion_adapt;   /* scale the dense weight by the dense/lexical agreement (default true) */
} dt_engine_opts;

dt_engine_opts dt_engine_opts_default(void);

typedef struct dt_engine dt_engine;

dt_engine *dt_engine_new(const dt_engine_opts *opts, dt_err *err);
void dt_engine_free(dt_engine *e);
const dt_engine_opts *dt_engine_opts_get(const dt_engine *e);

/* Region clusters ("yrd" -> CN.31, CN.32, ...), used by filters and the structured fit.
 * dt_engine_parse_clusters reads "name<TAB>prefix" lines ('#' comments, blank lines allowed) from a
 * buffer; errors name the line. Replaces earlier definitions of the same names. */
int dt_engine_add_cluster(dt_engine *e, const char *name, const char *region_prefix, dt_err *err);
int dt_engine_parse_clusters(dt_engine *e, const char *text, size_t len, dt_err *err);
/* Region prefixes of a named cluster (NULL and *n = 0 when unknown). Owned by the engine. */
const char *const *dt_engine_cluster(const dt_engine *e, const char *name, size_t *n);

/* Validates and stores *rec (moved in: rec is re-initialised on success, untouched on failure).
 * Replaces the live record with the same (tenant, side, id). Its dense vector is the projection on
 * the tenant's current basis (zero until the first dt_engine_build) or its own embedding. */
int dt_engine_upsert(dt_engine *e, dt_record *rec, dt_err *err);
int dt_engine_delete(dt_engine *e, const char *tenant, dt_side side, const char *id, dt_err *err);
/* What a snapshot stores besides a record: its counted terms (index.h dt_tf, sorted or not), its
 * token count and its dense row, so a restart neither tokenizes nor projects. dt_engine_restore
 * stores rec as dt_engine_upsert would have, with these; row (dim values; NULL or another dim: it
 * is computed) must be the row the engine gave it under the tenant's current basis. Terms are only
 * valid for an engine with the same dt_engine_terms_fingerprint (tokenization rules and title
 * weight) as the one that counted them. */
uint64_t dt_engine_terms_fingerprint(const dt_engine *e);
int dt_engine_restore(dt_engine *e, dt_record *rec, const dt_tf *terms, size_t n, uint32_t doc_len, const float *row,
                      size_t dim, dt_err *err);

/* dt_engine_upsert in two steps, so that searches need not wait while records are tokenized:
 * dt_engine_batch_prepare tokenizes recs[0..n) with the writers' tokenizer, projects them on their
 * tenant's basis and makes grown copies of the indexes that would have to grow to hold them (it
 * changes nothing a search reads, but no other writer may run meanwhile);
 * dt_engine_batch_upsert(e, b, i, recs[i]) then stores record i exactly as dt_engine_upsert would
 * (exclusive access; the first call swaps the grown copies in). Free the batch after the exclusive
 * section: it holds the arrays the copies replaced. */
typedef struct dt_engine_batch dt_engine_batch;
int dt_engine_batch_prepare(dt_engine *e, dt_record *const *recs, size_t n, dt_engine_batch **out, dt_err *err);
int dt_engine_batch_upsert(dt_engine *e, dt_engine_batch *b, size_t i, dt_record *rec, dt_err *err);
void dt_engine_batch_free(dt_engine_batch *b); /* NULL is fine */

/* Checks, without changing anything, that recs[0..n) could all be upserted in this order: each
 * passes dt_record_validate, and every tenant keeps the embedding contract - all of its records
 * carry an embedding of one length, or none does (a tenant without live records takes the form
 * of its first record). dt_engine_upsert itself checks only what stored data must pass (so a data
 * directory written before the contract was enforced still loads); every path that takes new
 * records calls this first. On failure *bad (may be NULL) is the index of the first refused record
 * and err names its field; -DT_EINVAL, or -DT_ENOMEM. */
int dt_engine_check_upsert(const dt_engine *e, dt_record *const *recs, size_t n, size_t *bad, dt_err *err);
/* The same check with only the rules dt_engine_upsert enforces (stored data: journal replay). */
int dt_engine_check_stored(const dt_engine *e, dt_record *const *recs, size_t n, size_t *bad, dt_err *err);
const dt_record *dt_engine_get(const dt_engine *e, const char *tenant, dt_side side, const char *id);
/* The tenant's index of one side, or NULL when the tenant has none yet. */
dt_index *dt_engine_index(const dt_engine *e, const char *tenant, dt_side side);
/* Tenant names, in creation order: *n of them, owned by the engine. */
const char *const *dt_engine_tenants(const dt_engine *e, size_t *n);
/* Bytes held by every tenant's indexes (added to *m) and by their LSA bases (*basis: projection,
 * weights, term map). Walks every record: for start-up reports. */
void dt_engine_memory(const dt_engine *e, dt_index_mem *m, size_t *basis);
/* Per-tenant write counter: bumped by every upsert, delete and build of that tenant (cache keys). */
uint64_t dt_engine_epoch(const dt_engine *e, const char *tenant);
/* Restores a tenant's epoch from a snapshot (creates the tenant when it has none yet), so epochs
 * never go backwards across a restart. */
int dt_engine_set_epoch(dt_engine *e, const char *tenant, uint64_t epoch, dt_err *err);
/* "lsa", "external" or "none" (no dense part yet) for a tenant. */
const char *dt_engine_dense_kind(const dt_engine *e, const char *tenant);

/* (Re-)learns the LSA basis of a tenant (NULL: of every tenant) from its live records and
 * re-projects every record. Tenants whose records carry embeddings are left as they are. */
int dt_engine_build(dt_engine *e, const char *tenant, dt_err *err);
/* Compaction (index.h: squeezing out the tombstones of replaced and deleted records once they are
 * a quarter of an index) runs inside dt_engine_upsert and dt_engine_delete unless deferred; the
 * daemon defers it and runs it after each write in two steps, so that searches need not wait while
 * an index is rebuilt: dt_engine_compaction_prepare reads the engine (searches may run, writers may
 * not) and sets *out to the tenant's compacted indexes, or NULL when none is due;
 * dt_engine_compaction_install (exclusive access) swaps them in; it refuses (-DT_EINVAL) an index
 * that changed since. dt_engine_compaction_free (after the exclusive section) frees what was
 * replaced, or an uninstalled compaction. dt_engine_compact is all three. Neither changes a
 * tenant's epoch. */
void dt_engine_defer_compaction(dt_engine *e, bool defer);
typedef struct dt_engine_compaction dt_engine_compaction;
int dt_engine_compaction_prepare(const dt_engine *e, const char *tenant, dt_engine_compaction **out, dt_err *err);
int dt_engine_compaction_install(dt_engine *e, dt_engine_compaction *c, dt_err *err);
void dt_engine_compaction_free(dt_engine_compaction *c); /* NULL is fine */
int dt_engine_compact(dt_engine *e, const char *tenant, dt_err *err);

/* The same re-learn in steps, so that searches never wait for the heavy part and writers only for
 * the copy and the projection:
 *   dt_engine_relearn_begin    no writer may run (the daemon holds its commit mutex), searches may:
 *                              copies the tenant's tf-idf term matrix; the basis is learned from the
 *                              records as of this point (where the daemon journals its marker)
 *   dt_engine_relearn_fit      no lock at all (it touches only *r): learns the basis from the copy,
 *                              the long part
 *   dt_engine_relearn_project  no writer, searches may: projects every record as stored now (also
 *                              those written since begin) on the new basis
 *   dt_engine_relearn_install  exclusive access (no search): swaps the basis and the rows in; it
 *                              refuses (-DT_EINVAL) when an index of the tenant changed since project.
 * dt_engine_relearn_prepare is begin + fit + project (no writer for all of it); dt_engine_build is
 * prepare + install. begin sets *out to NULL for a tenant with external embeddings; project refuses
 * a tenant that took external embeddings since begin. */
typedef struct dt_engine_relearn dt_engine_relearn;
int dt_engine_relearn_begin(const dt_engine *e, const char *tenant, dt_engine_relearn **out, dt_err *err);
int dt_engine_relearn_fit(dt_engine_relearn *r, dt_err *err);
/* Between fit and project, with searches allowed and writers not (the daemon holds its engine lock
 * as a reader): projects up to max of the records written since begin, so that project, with
 * writers out, has only the last ones left. *left: records written since begin and not caught up. */
int dt_engine_relearn_catch_up(const dt_engine *e, dt_engine_relearn *r, size_t max, size_t *left, dt_err *err);
int dt_engine_relearn_project(const dt_engine *e, dt_engine_relearn *r, dt_err *err);
int dt_engine_relearn_prepare(const dt_engine *e, const char *tenant, dt_engine_relearn **out, dt_err *err);
int dt_engine_relearn_install(dt_engine *e, dt_engine_relearn *r, dt_err *err);
/* The tenant and the number of records a re-learn learns from (as of begin). */
const char *dt_engine_relearn_tenant(const dt_engine_relearn *r);
size_t dt_engine_relearn_docs(const dt_engine_relearn *r);
void dt_engine_relearn_free(dt_engine_relearn *r); /* NULL is fine; after install it frees what is left */
/* Whether a tenant's basis is due: it has none yet but enough records, or its live records have
 * doubled since it was learned (so re-learning costs amortised O(1) per upsert). */
bool dt_engine_needs_build(const dt_engine *e, const char *tenant);

/* A tenant's learned LSA basis, as the snapshot stores it: column c is hashed term terms[c] with
 * weight idf[c]; proj is n_terms x dim (row-major), sigma has dim values. */
typedef struct dt_engine_basis {
    size_t built_docs;
    size_t n_terms, dim;
    const uint32_t *terms;
    const float *idf;
    const float *proj;
    const float *sigma;
} dt_engine_basis;

/* Views the tenant's basis (borrowed: valid until the next write). 1 when it has one, 0 when its
 * dense part is not LSA (none yet, or external embeddings), -DT_ENOTFOUND for an unknown tenant. */
int dt_engine_get_basis(const dt_engine *e, const char *tenant, dt_engine_basis *b);
/* Installs a stored basis for a tenant (created when new; its records are re-projected). Copies b.
 * Refused with -DT_EINVAL when the tenant uses external embeddings or b is inconsistent. */
int dt_engine_set_basis(dt_engine *e, const char *tenant, const dt_engine_basis *b, dt_err *err);

/* A query: by a stored record (record_id + record_side) or by free text, against target side. */
typedef struct dt_query {
    const char *tenant;      /* NULL = "public" */
    dt_side target;          /* the side searched */
    const char *record_id;   /* query by this stored record ... */
    dt_side record_side;
    const char *text;        /* ... or by this free text */
    dt_filter filter;        /* dt_filter_init'ed; region_prefixes are added from clusters */
    const char *const *clusters; /* cluster names: records in any of them pass (with region_prefixes) */
    size_t n_clusters;
    const char *const *exclude_ids;
    size_t n_exclude;
    /* NULL, or a bitmap over the target index's slots (bit s in word s / 64, dt_index_slots() bits,
     * built under the same read lock as the search): only set slots may be returned. */
    const uint64_t *allow_slots;
    size_t k, offset;        /* results [offset, offset + k) */
    bool explain;
    const dt_weights *weights; /* NULL = the engine's defaults */
    int prf;                 /* pseudo-relevance feedback for text queries: -1 engine default, 0 off, 1 on */
} dt_query;

void dt_query_init(dt_query *q);

#define DT_EXPLAIN_TERMS 8
typedef struct dt_term_weight {
    char term[64];
    float weight;
} dt_term_weight;

/* Structured-fit components, each in [0, 1], or -1 when one side lacks the attribute. */
enum { DT_FIT_FIELD, DT_FIT_REGION, DT_FIT_TRL, DT_FIT_PRICE, DT_FIT_MODES, DT_FIT_COUNT };
const char *dt_fit_name(int part);

typedef struct dt_match {
    const dt_record *rec; /* owned by the engine; valid until the next write */
    uint32_t slot;
    float score;
    float dense, lexical, structured; /* the weighted parts: score = dense + lexical + structured
                                         (+ feedback) */
    float feedback;                   /* outcome feedback (rerank.h: dt_feedback_search); 0 otherwise */
    float fit[DT_FIT_COUNT];          /* filled when explain */
    dt_term_weight terms[DT_EXPLAIN_TERMS];
    size_t n_terms;
} dt_match;

typedef struct dt_match_result {
    dt_match *v;
    size_t n;
    size_t total_candidates; /* records that passed the filters */
    uint64_t epoch;          /* the tenant's epoch the result was computed at */
} dt_match_result;

void dt_match_result_free(dt_match_result *r);

/* Per-thread search state (tokenizer and scratch buffers). Borrows the engine. */
typedef struct dt_searcher dt_searcher;
dt_searcher *dt_searcher_new(dt_engine *e, dt_err *err);
void dt_searcher_free(dt_searcher *s);

/* Runs m queries; res[i] receives query i's matches (free each with dt_match_result_free).
 * Queries on the same (tenant, target) share one blocked GEMM. A query that fails (unknown record,
 * bad weights) fails the call: err names it as "queries[i]" or the field. */
int dt_search(dt_searcher *s, const dt_query *q, size_t m, dt_match_result *res, dt_err *err);

#endif
