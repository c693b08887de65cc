/* index.h - one (tenant, side) collection of records, ready to be scored.
 *
 * Holds, per record slot: the record itself, a tombstone bit, columnar attributes for filters
 * (TRL, status, modes, prices), the record's lexical terms (hashed token bucket + term frequency),
 * and a row of the dense matrix (row-major float32, 64-byte aligned, grown by doubling). Over the
 * lexical terms it keeps a BM25 inverted index. An id -> slot hash map finds records.
 *
 * Slots are append-only: an upsert of an existing id tombstones the old slot and appends a new one;
 * dt_index_compact() squeezes tombstones out (and renumbers slots) once they outnumber live records.
 * It does not tokenize, vectorise or rank (engine.c does); it does no I/O.
 * Not thread-safe: callers serialise writers against readers (readers may run concurrently).
 */
#ifndef DT_INDEX_H
#define DT_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "record.h"

/* One lexical term of a record: hashed token bucket and its frequency in the record. */
typedef struct dt_tf {
    uint32_t term;
    float tf;
} dt_tf;

/* A filter over one index. Zero-initialised (with NAN prices, see dt_filter_init) = everything open.
 * Prefixes match whole dot-separated components: "C.38" matches "C.38" and "C.38.4", not "C.381". */
typedef struct dt_filter {
    const char *const *field_prefixes; /* any of them; n = 0: no constraint */
    size_t n_field_prefixes;
    const char *const *region_prefixes; /* any of them (clusters already expanded by the caller) */
    size_t n_region_prefixes;
    int trl_min, trl_max;   /* 0 = no bound; a record without a TRL fails a bounded filter */
    uint32_t modes;         /* DT_MODE_* bits: the record must offer at least one; 0 = any */
    double price_min;       /* NAN = unbounded. A record whose [price_min, price_max] range */
    double price_max;       /* overlaps [price_min, price_max] passes; one without prices passes */
    const char *const *tags; /* all required */
    size_t n_tags;
    bool include_closed;    /* default false: closed records are never matched */
} dt_filter;

void dt_filter_init(dt_filter *f);

/* A record's field and region codes in a form the structured fit can compare per row without
 * string work: field[i] / region[i] hash the code's first i+1 components (so equal hashes mean
 * equal prefixes), depths count components (at most DT_CODE_LEVELS are compared), clusters has a
 * bit per engine cluster the region is in (set by the engine). */
#define DT_CODE_LEVELS 6
typedef struct dt_codes {
    uint32_t field[DT_CODE_LEVELS], region[DT_CODE_LEVELS];
    uint8_t field_depth, region_depth;
    uint64_t clusters;
} dt_codes;

/* Fills c from a field and a region code (either may be NULL); c->clusters = 0. */
void dt_codes_of(const char *field, const char *region, dt_codes *c);
/* Leading components two hashed codes share (both depths capped at DT_CODE_LEVELS). */
int dt_codes_shared(const uint32_t *a, int da, const uint32_t *b, int db);

typedef struct dt_index dt_index;

/* A new empty index for (tenant, side) with dense dimension dim (may be 0: no dense part yet). */
dt_index *dt_index_new(const char *tenant, dt_side side, size_t dim, dt_err *err);
void dt_index_free(dt_index *idx);

const char *dt_index_tenant(const dt_index *idx);
dt_side dt_index_side(const dt_index *idx);
size_t dt_index_slots(const dt_index *idx); /* slots in use, live or not: bitmaps have this many bits */
size_t dt_index_count(const dt_index *idx); /* live records */
size_t dt_index_count_open(const dt_index *idx);
/* Bumped by every change; lets caches and batch jobs notice that the index moved. */
uint64_t dt_index_epoch(const dt_index *idx);
/* Grows by one with every compaction installed (which renumbers slots; the dt_index stays the same
 * object): a slot number is only meaningful with the generation it was read at. */
uint64_t dt_index_generation(const dt_index *idx);

/* Inserts *rec, taking ownership of everything it points to (rec is re-initialised on success; on
 * failure the caller keeps it). terms: the record's distinct lexical terms (any order, tf > 0),
 * copied; doc_len: its token count. An existing live record with the same id is replaced. The new
 * slot's dense row is zero until written through dt_index_row(). *slot receives the new slot. */
int dt_index_put(dt_index *idx, dt_record *rec, const dt_tf *terms, size_t n_terms, uint32_t doc_len,
                 uint32_t *slot, dt_err *err);
/* Tombstones the live record with this id: 0, or -DT_ENOTFOUND. */
int dt_index_remove(dt_index *idx, const char *id, dt_err *err);
/* Slot of the live record with this id, or -1. */
int64_t dt_index_find(const dt_index *idx, const char *id);
bool dt_index_live(const dt_index *idx, uint32_t slot);
/* The record in a slot (live or not: check dt_index_live), owned by the index. */
const dt_record *dt_index_record(const dt_index *idx, uint32_t slot);
/* The slot's lexical terms, sorted by term. */
void dt_index_terms(const dt_index *idx, uint32_t slot, const dt_tf **terms, size_t *n);
uint32_t dt_index_doc_len(const dt_index *idx, uint32_t slot);

/* The slot's codes; dt_index_set_clusters sets its cluster bits. */
const dt_codes *dt_index_codes(const dt_index *idx, uint32_t slot);
void dt_index_set_clusters(dt_index *idx, uint32_t slot, uint64_t clusters);

/* Dense part. dt_index_set_dim drops every row and allocates zero rows of the new dimension. */
int dt_index_set_dim(dt_index *idx, size_t dim, dt_err *err);
size_t dt_index_dim(const dt_index *idx);
float *dt_index_row(dt_index *idx, uint32_t slot);
/* A zeroed matrix of the index's shape (capacity x dim rows) to fill off-line and install with
 * dt_index_install_rows, which frees the old matrix and sets the dimension (no copy). NULL when the
 * index has no capacity yet (nothing to fill) or memory runs out (err says which). Free an
 * uninstalled one with dt_index_free_rows. The index must not grow between the two calls. */
float *dt_index_alloc_rows(const dt_index *idx, size_t dim, dt_err *err);
void dt_index_install_rows(dt_index *idx, float *X, size_t dim);
void dt_index_free_rows(float *X);
/* Room for want_slots slots and want_terms lexical terms, made in two steps so that a search never
 * waits for the copy: dt_index_growth_prepare allocates the grown arrays and copies the index into
 * them without changing it (searches may read it meanwhile; nothing may change it until install),
 * *out NULL when there is room already; dt_index_growth_install (exclusive access) swaps them in,
 * keeping the old arrays in g; dt_index_growth_free (after the exclusive section) frees them. */
typedef struct dt_index_growth dt_index_growth;
int dt_index_growth_prepare(const dt_index *idx, size_t want_slots, size_t want_terms, dt_index_growth **out,
                            dt_err *err);
void dt_index_growth_install(dt_index *idx, dt_index_growth *g);
void dt_index_growth_free(dt_index_growth *g); /* NULL is fine */
size_t dt_index_terms_len(const dt_index *idx);

/* Bytes an index holds, by what for (allocated capacity, dead slots included until compaction). */
typedef struct dt_index_mem {
    size_t rows;     /* the dense matrix */
    size_t postings; /* inverted lists and the term -> list map */
    size_t terms;    /* each record's counted terms (forward index: re-learn, compaction, snapshots) */
    size_t records;  /* record structs and their text: title, text, keywords, org, codes, tags, embedding */
    size_t ids;      /* id strings and the id map */
    size_t columns;  /* filter columns: live, TRL, status, modes, prices, codes */
} dt_index_mem;
/* Adds idx's bytes to *m (walks every slot: for start-up reports, not for every request). */
void dt_index_memory(const dt_index *idx, dt_index_mem *m);
size_t dt_index_capacity(const dt_index *idx);
const float *dt_index_matrix(const dt_index *idx); /* slots x dim, row stride dim */

/* BM25: adds each live record's BM25 score against the query terms (distinct terms, tf = query
 * term weight) to acc[slot] (slots entries). Returns the number of postings visited. */
size_t dt_index_bm25(const dt_index *idx, const dt_tf *q, size_t nq, float k1, float b, float *acc);
/* BM25 idf of a term in this index (0 when absent); and the parameters of one term's BM25 part. */
double dt_index_idf(const dt_index *idx, uint32_t term);
double dt_index_avg_doc_len(const dt_index *idx);
/* Live records containing term. */
uint32_t dt_index_df(const dt_index *idx, uint32_t term);

/* Sets bit s of allow (slots bits, caller-allocated, (slots+63)/64 words) for every live slot that
 * passes f, clears the others. Returns the number of bits set. */
size_t dt_index_filter(const dt_index *idx, const dt_filter *f, uint64_t *allow);
/* Whether one slot passes f (live and matching). */
bool dt_index_passes(const dt_index *idx, uint32_t slot, const dt_filter *f);

/* Squeezes tombstoned slots out when they are at least a quarter of all slots (or always, when
 * force). Renumbers slots; rows and terms move with their records. Returns 1 if it compacted. */
int dt_index_compact(dt_index *idx, bool force, dt_err *err);
/* The same in two steps, so that searches need not wait while the copy is built.
 * dt_index_compact_build reads idx (searches may run, writers may not) and, when compaction is
 * due, sets *out to a compacted copy and returns 1 (0: not due, *out NULL). The copy shares the
 * records' strings with idx: dt_index_compact_install (exclusive access) swaps it in and hands them
 * over, leaving the old contents in fresh - free it with dt_index_free after the exclusive section
 * (freeing an index's postings takes a while); dt_index_free drops an uninstalled copy without
 * touching the records. Install refuses (-DT_EINVAL) when idx changed since the build. */
int dt_index_compact_build(const dt_index *idx, bool force, dt_index **out, dt_err *err);
int dt_index_compact_install(dt_index *idx, dt_index *fresh, dt_err *err);

/* True when code equals prefix or starts with prefix followed by '.'. */
bool dt_code_has_prefix(const char *code, const char *prefix);
/* Number of leading dot-separated components two codes share ("C.38.4" vs "C.38.1" -> 2). */
int dt_code_shared_depth(const char *a, const char *b);
/* Number of dot-separated components of a code (0 for NULL or ""). */
int dt_code_depth(const char *code);

#endif
