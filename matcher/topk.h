/* topk.h - exact top-k inner product of a batch of queries against a float32 matrix (DESIGN 3).
 *
 * The similarity core under the index, the hybrid ranker and batch re-ranking: scores every allowed
 * row of a row-major matrix against every query with OpenBLAS (sgemm in row blocks, or sgemv for
 * up to three queries), lets the caller adjust each block of scores, and keeps a bounded heap per
 * query. Exact: the result is the brute-force top-k of the computed float32 scores, with ties
 * broken by row. It is not an index (no storage, ids or filters beyond a bitmap) and does no
 * approximate search.
 */
#ifndef DT_TOPK_H
#define DT_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"

typedef struct dt_hit {
    float score;
    uint32_t row;
} dt_hit;

/* Called on each block of scores before selection. scores points at the block's first score: the
 * score of query q0 + i against row row0 + j is scores[i * ld + j], for i in [0, mq) and
 * j in [0, nrows). The callback may modify scores in place (add lexical and structured parts,
 * write -INFINITY or NAN to drop a row). Every (query, row) pair of a scanned block is passed
 * exactly once; blocks holding no allowed row may be skipped, and rows outside the allow bitmap may
 * be passed (they are dropped afterwards whatever their score). Called concurrently from several
 * threads on disjoint blocks: it must be thread-safe. */
typedef void (*dt_topk_adjust_fn)(void *ud, size_t q0, size_t mq, size_t row0, size_t nrows,
                                  float *scores, size_t ld);

/* Options; zero-initialise for the defaults ({0} or DT_TOPK_OPTS_INIT). */
typedef struct dt_topk_opts {
    int threads;              /* our own threads (0 = number of online CPUs); each calls
                                 single-threaded BLAS (see dt_topk_blas_single) */
    size_t block_rows;        /* rows per block, rounded up to a multiple of 64; 0 = automatic */
    const uint64_t *allow;    /* n bits (bit i of allow[i / 64] is row i); set = row i may be
                                 returned; NULL = all rows */
    dt_topk_adjust_fn adjust; /* may be NULL */
    void *adjust_ud;
    size_t block_queries;     /* queries per sgemm call; 0 = automatic */
} dt_topk_opts;

#define DT_TOPK_OPTS_INIT {0, 0, NULL, NULL, NULL, 0}

/* Exact top-k by inner product.
 *
 * X: n rows of d floats, row i at X + i * ldx (ldx >= d); Q: m queries of d floats, query i at
 * Q + i * d. Both borrowed, read only, and may be NULL when n (resp. m) is 0.
 * out: m * k hits, caller-allocated; query i's hits are out[i * k .. i * k + n_out[i]), sorted by
 * score descending, ties by row ascending; the rest of query i's k slots are set to
 * {-INFINITY, UINT32_MAX}. n_out: m counts, n_out[i] <= k (fewer when fewer rows are allowed or
 * have a usable score). Scores that are NaN or -INFINITY (after adjust) are never returned.
 * k may exceed n; m, n and k may be 0 (out and n_out may then be NULL when nothing is written).
 * opts may be NULL (defaults).
 *
 * The scores are OpenBLAS float32 dot products. Their last bits depend on where the row and the
 * query fall in the BLAS call, that is on the block geometry, which is a function of n, d, m,
 * block_rows and block_queries only: for the same inputs and those options the result is
 * bit-for-bit the same whatever the thread count and the allow bitmap (a filtered result is the
 * unfiltered ranking restricted to the allowed rows). The same query in a batch of another size,
 * or with other block sizes, may see its scores differ in the last bits and near-ties ordered
 * differently.
 *
 * Working memory: per thread, m * min(k, allowed rows) hits plus one block of scores.
 *
 * Errors: -DT_EINVAL (a NULL pointer where data is needed, d == 0, ldx < d, threads < 0; err.field
 * names the argument), -DT_ELIMIT (n above UINT32_MAX rows, d, ldx or a block beyond BLAS's int,
 * m * k overflowing size_t), -DT_ENOMEM. On error out and n_out are unspecified.
 *
 * Thread-safety: reentrant (no shared state); runs opts->threads threads of its own and returns
 * after joining them. With threads > 1, make OpenBLAS single-threaded first (dt_topk_blas_single),
 * or each block's BLAS call may start OpenBLAS threads of its own and oversubscribe the CPUs. */
int dt_topk_ip(const float *X, size_t n, size_t d, size_t ldx, const float *Q, size_t m, size_t k,
               const dt_topk_opts *opts, dt_hit *out, size_t *n_out, dt_err *err);

/* Makes OpenBLAS single-threaded for the whole process (our threads provide the parallelism): call
 * once at start-up, before other threads use BLAS, in programs that call dt_topk_ip with
 * threads > 1. Returns the previous OpenBLAS thread count (to restore with
 * openblas_set_num_threads). Not thread-safe: it changes process-wide OpenBLAS state. */
int dt_topk_blas_single(void);

/* Allocates a zeroed matrix of `bytes` for dt_topk_ip, 64-byte aligned; large ones are aligned to
 * 2 MiB and marked for transparent huge pages (MADV_HUGEPAGE), which a scan of a matrix larger
 * than the TLB's reach needs to run at memory bandwidth. Free with free(). NULL on failure. */
void *dt_topk_alloc(size_t bytes);

#endif
