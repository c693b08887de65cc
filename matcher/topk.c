/* topk.c - exact top-k inner product: blocked BLAS scores and a bounded heap per query (topk.h).
 *
 * The rows are cut into blocks of block_rows rows (a multiple of 64, so a block starts on a word of
 * the allow bitmap) and the queries into tiles. Threads claim (block, tile) items from a shared
 * counter, block-major, so for every query a thread sees its rows in ascending order; each item is
 * scored with one sgemm call (or one sgemv per query for batches of up to three, which are
 * memory-bound), handed to the adjust callback, and scanned into the thread's own heaps. The heaps
 * are merged once all threads are done. Blocks without an allowed row are skipped; a block where
 * few rows are allowed is scanned through a list of those rows.
 *
 * OpenBLAS rounds a score differently depending on where its row and query fall in the call's
 * tiles, so the block and tile geometry is a function of (n, d, m, block_rows, block_queries)
 * alone, never of the thread count or the allow bitmap: a result is then bit-for-bit reproducible.
 *
 * Invariant of a thread's heap for query q (root = worst under "score descending, row ascending"):
 * it holds the exact top min(k, allowed) of the rows that thread has scanned, and thr[q] is the
 * root's score once the heap is full, -INFINITY before. Because a thread's rows arrive in ascending
 * order, a new score equal to thr[q] always loses the tie, so "score > thr[q]" is the whole
 * admission test; it is also false for NaN and -INFINITY, which are therefore never admitted.
 */
#include "topk.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Batches up to this many queries are scored with sgemv, one query at a time, per block. */
#define TOPK_GEMV_MAX_M 3
/* Automatic block sizes: bytes of X per block, for sgemm and for sgemv. */
#define TOPK_GEMM_BLOCK_BYTES ((size_t)1 << 20)
#define TOPK_GEMV_BLOCK_BYTES ((size_t)256 << 10)
/* Automatic query tile of one sgemm call. */
#define TOPK_QUERY_TILE 1024
/* Automatic blocks are made small enough that there are at least this many (whatever the number
 * of threads: the block geometry, and so every score's rounding, depends on n, d and m only). */
#define TOPK_MIN_BLOCKS 8
/* Scores compared with a query's threshold at a time before the heap is touched. */
#define TOPK_CHUNK 16
/* A block is scanned through a list of its allowed rows when fewer than 1 in this many are. */
#define TOPK_SPARSE_RATIO 8
/* Padding of a score tile's rows (floats), so tile rows do not share cache sets. */
#define TOPK_LD_PAD 16
#define TOPK_MAX_THREADS 256

typedef struct topk_job {
    const float *X;
    size_t n, d, ldx;
    const float *Q;
    size_t m, kk; /* kk = heap capacity = min(k, allowed rows) */
    const uint64_t *allow;
    dt_topk_adjust_fn adjust;
    void *adjust_ud;
    size_t nb, mq, ld;
    size_t ntiles, nitems; /* query tiles; work items = blocks x tiles */
    bool gemv;
    atomic_size_t next_item;
} topk_job;

typedef struct topk_worker {
    topk_job *job;
    dt_hit *heap;   /* m * kk; query q's heap at heap + q * kk */
    size_t *count;  /* m */
    float *thr;     /* m */
    float *scores;  /* mq * ld */
    uint32_t *list; /* nb offsets of allowed rows in a sparse block */
    pthread_t tid;
    bool started;
} topk_worker;

static inline bool hit_worse(dt_hit a, dt_hit b)
{
    return a.score < b.score || (a.score == b.score && a.row > b.row);
}

/* Places x at the root of the heap h[0..size) (whose root slot is free) and sifts it down. */
static void heap_sift_down(dt_hit *h, size_t size, dt_hit x)
{
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && hit_worse(h[c + 1], h[c])) c++;
        if (!hit_worse(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Admits (score, row), which must beat the threshold; returns the new threshold. */
static float heap_admit(dt_hit *h, size_t *count, size_t kk, float score, uint32_t row)
{
    dt_hit x = {score, row};
    size_t c = *count;
    if (c < kk) {
        size_t i = c;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!hit_worse(x, h[p])) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = x;
        *count = ++c;
        return c == kk ? h[0].score : -INFINITY;
    }
    heap_sift_down(h, kk, x);
    return h[0].score;
}

/* Turns a heap into an array sorted best first. */
static void heap_sort_best_first(dt_hit *h, size_t size)
{
    while (size > 1) {
        dt_hit worst = h[0];
        size--;
        heap_sift_down(h, size, h[size]);
        h[size] = worst;
    }
}

static inline bool any_above(const float *s, float thr)
{
    int above = 0;
    for (int t = 0; t < TOPK_CHUNK; t++)
        above += s[t] > thr;
    return above != 0;
}

static inline bool row_allowed(const uint64_t *allow, size_t row)
{
    return !allow || ((allow[row >> 6] >> (row & 63)) & 1);
}

/* Scans rows row0 .. row0 + nrows of a score tile; allow is NULL when all of them are allowed. */
static void select_dense(topk_worker *w, size_t q0, size_t mq, size_t row0, size_t nrows,
                         const uint64_t *allow)
{
    const topk_job *jb = w->job;
    for (size_t i = 0; i < mq; i++) {
        size_t q = q0 + i;
        const float *s = w->scores + i * jb->ld;
        dt_hit *h = w->heap + q * jb->kk;
        float thr = w->thr[q];
        size_t j = 0;
        for (; j + TOPK_CHUNK <= nrows; j += TOPK_CHUNK) {
            if (!any_above(s + j, thr)) continue;
            for (size_t t = j; t < j + TOPK_CHUNK; t++)
                if (s[t] > thr && row_allowed(allow, row0 + t))
                    thr = heap_admit(h, &w->count[q], jb->kk, s[t], (uint32_t)(row0 + t));
        }
        for (; j < nrows; j++)
            if (s[j] > thr && row_allowed(allow, row0 + j))
                thr = heap_admit(h, &w->count[q], jb->kk, s[j], (uint32_t)(row0 + j));
        w->thr[q] = thr;
    }
}

/* Scans only the listed (ascending) offsets of a score tile. */
static void select_sparse(topk_worker *w, size_t q0, size_t mq, size_t row0, size_t nlist)
{
    const topk_job *jb = w->job;
    for (size_t i = 0; i < mq; i++) {
        size_t q = q0 + i;
        const float *s = w->scores + i * jb->ld;
        dt_hit *h = w->heap + q * jb->kk;
        float thr = w->thr[q];
        for (size_t t = 0; t < nlist; t++) {
            uint32_t j = w->list[t];
            if (s[j] > thr) thr = heap_admit(h, &w->count[q], jb->kk, s[j], (uint32_t)(row0 + j));
        }
        w->thr[q] = thr;
    }
}

static void score_tile(topk_worker *w, size_t q0, size_t mq, size_t row0, size_t nrows)
{
    const topk_job *jb = w->job;
    const float *xb = jb->X + row0 * jb->ldx;
    if (jb->gemv) {
        for (size_t i = 0; i < mq; i++) {
            float *y = w->scores + i * jb->ld;
            /* beta = 0 must not let an old NaN through, whatever the BLAS version does with it */
            memset(y, 0, nrows * sizeof *y);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nrows, (int)jb->d, 1.0f, xb,
                        (int)jb->ldx, jb->Q + (q0 + i) * jb->d, 1, 0.0f, y, 1);
        }
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq, (int)nrows, (int)jb->d,
                    1.0f, jb->Q + q0 * jb->d, (int)jb->d, xb, (int)jb->ldx, 0.0f, w->scores,
                    (int)jb->ld);
    }
}

/* Word wi of the allow bitmap without the bits of rows at or past row1. */
static inline uint64_t block_word(const uint64_t *allow, size_t wi, size_t row1)
{
    uint64_t x = allow[wi];
    if (wi == (row1 - 1) / 64 && (row1 & 63)) x &= (UINT64_C(1) << (row1 & 63)) - 1;
    return x;
}

/* Work item i is block i / ntiles against query tile i % ntiles. */
static void scan_item(topk_worker *w, size_t item)
{
    const topk_job *jb = w->job;
    size_t row0 = item / jb->ntiles * jb->nb;
    size_t q0 = item % jb->ntiles * jb->mq;
    size_t row1 = jb->n - row0 < jb->nb ? jb->n : row0 + jb->nb;
    const uint64_t *check = NULL;
    size_t nlist = 0;
    bool sparse = false;

    if (jb->allow) {
        size_t allowed = 0, w0 = row0 / 64, w1 = (row1 + 63) / 64;
        for (size_t wi = w0; wi < w1; wi++)
            allowed += (size_t)__builtin_popcountll(block_word(jb->allow, wi, row1));
        if (!allowed) return;
        if (allowed < row1 - row0) {
            if (allowed * TOPK_SPARSE_RATIO < row1 - row0) {
                sparse = true;
                for (size_t wi = w0; wi < w1; wi++)
                    for (uint64_t x = block_word(jb->allow, wi, row1); x; x &= x - 1)
                        w->list[nlist++] = (uint32_t)(wi * 64 + (size_t)__builtin_ctzll(x) - row0);
            } else {
                check = jb->allow;
            }
        }
    }

    size_t nrows = row1 - row0;
    size_t mq = jb->m - q0 < jb->mq ? jb->m - q0 : jb->mq;
    score_tile(w, q0, mq, row0, nrows);
    if (jb->adjust) jb->adjust(jb->adjust_ud, q0, mq, row0, nrows, w->scores, jb->ld);
    if (sparse)
        select_sparse(w, q0, mq, row0, nlist);
    else
        select_dense(w, q0, mq, row0, nrows, check);
}

static void *worker_run(void *arg)
{
    topk_worker *w = arg;
    topk_job *jb = w->job;
    for (;;) {
        size_t item = atomic_fetch_add_explicit(&jb->next_item, 1, memory_order_relaxed);
        if (item >= jb->nitems) break;
        scan_item(w, item);
    }
    for (size_t q = 0; q < jb->m; q++)
        heap_sort_best_first(w->heap + q * jb->kk, w->count[q]);
    return NULL;
}

static void worker_free(topk_worker *w)
{
    free(w->heap);
    free(w->count);
    free(w->thr);
    free(w->scores);
    free(w->list);
}

static int worker_init(topk_worker *w, topk_job *jb, dt_err *err)
{
    memset(w, 0, sizeof *w);
    w->job = jb;
    size_t heap_bytes, score_bytes;
    if (__builtin_mul_overflow(jb->m * jb->kk, sizeof(dt_hit), &heap_bytes) ||
        __builtin_mul_overflow(jb->mq * jb->ld, sizeof(float), &score_bytes))
        return dt_err_set(err, DT_ELIMIT, "k", "working memory for %zu queries x %zu hits "
                          "overflows size_t", jb->m, jb->kk);
    w->heap = malloc(heap_bytes);
    w->count = calloc(jb->m, sizeof *w->count);
    w->thr = malloc(jb->m * sizeof *w->thr);
    w->scores = malloc(score_bytes);
    w->list = jb->allow ? malloc(jb->nb * sizeof *w->list) : NULL;
    if (!w->heap || !w->count || !w->thr || !w->scores || (jb->allow && !w->list)) {
        worker_free(w);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory for top-%zu heaps of %zu queries "
                          "(%zu bytes)", jb->kk, jb->m, heap_bytes);
    }
    for (size_t q = 0; q < jb->m; q++)
        w->thr[q] = -INFINITY;
    return 0;
}

static size_t round_up64(size_t x)
{
    return x > SIZE_MAX - 63 ? SIZE_MAX & ~(size_t)63 : (x + 63) & ~(size_t)63;
}

static size_t count_allowed(const uint64_t *allow, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n / 64; i++)
        c += (size_t)__builtin_popcountll(allow[i]);
    if (n & 63) c += (size_t)__builtin_popcountll(allow[n / 64] & ((UINT64_C(1) << (n & 63)) - 1));
    return c;
}

/* Writes query q's merged hits from the threads' sorted lists. */
static void merge_query(topk_worker *ws, size_t nw, size_t q, size_t k, dt_hit *out, size_t *n_out)
{
    const topk_job *jb = ws[0].job;
    size_t pos[TOPK_MAX_THREADS];
    for (size_t t = 0; t < nw; t++)
        pos[t] = 0;
    dt_hit *o = out + q * k;
    size_t c = 0;
    while (c < jb->kk) {
        size_t best = SIZE_MAX;
        for (size_t t = 0; t < nw; t++) {
            if (pos[t] >= ws[t].count[q]) continue;
            if (best == SIZE_MAX ||
                hit_worse(ws[best].heap[q * jb->kk + pos[best]], ws[t].heap[q * jb->kk + pos[t]]))
                best = t;
        }
        if (best == SIZE_MAX) break;
        o[c++] = ws[best].heap[q * jb->kk + pos[best]++];
    }
    n_out[q] = c;
    for (; c < k; c++)
        o[c] = (dt_hit){-INFINITY, UINT32_MAX};
}

int dt_topk_ip(const float *X, size_t n, size_t d, size_t ldx, const float *Q, size_t m, size_t k,
               const dt_topk_opts *opts, dt_hit *out, size_t *n_out, dt_err *err)
{
    static const dt_topk_opts defaults = DT_TOPK_OPTS_INIT;
    if (!opts) opts = &defaults;
    size_t mk;
    if (d == 0) return dt_err_set(err, DT_EINVAL, "d", "the dimension d must be at least 1");
    if (ldx < d)
        return dt_err_set(err, DT_EINVAL, "ldx", "row stride ldx (%zu) is smaller than d (%zu)",
                          ldx, d);
    if (d > INT_MAX || ldx > INT_MAX)
        return dt_err_set(err, DT_ELIMIT, d > INT_MAX ? "d" : "ldx",
                          "d and ldx must not exceed %d (BLAS int)", INT_MAX);
    if (n > UINT32_MAX)
        return dt_err_set(err, DT_ELIMIT, "n", "%zu rows: at most %lu rows can be searched", n,
                          (unsigned long)UINT32_MAX);
    if (__builtin_mul_overflow(m, k, &mk))
        return dt_err_set(err, DT_ELIMIT, "k", "m * k (%zu * %zu) overflows size_t", m, k);
    if (n && !X) return dt_err_set(err, DT_EINVAL, "X", "X is NULL but n is %zu", n);
    if (m && !Q) return dt_err_set(err, DT_EINVAL, "Q", "Q is NULL but m is %zu", m);
    if (mk && !out) return dt_err_set(err, DT_EINVAL, "out", "out is NULL but m * k is %zu", mk);
    if (m && !n_out) return dt_err_set(err, DT_EINVAL, "n_out", "n_out is NULL but m is %zu", m);
    if (opts->threads < 0)
        return dt_err_set(err, DT_EINVAL, "threads", "threads is %d; use 0 for one per CPU",
                          opts->threads);

    size_t allowed = opts->allow && n ? count_allowed(opts->allow, n) : n;
    topk_job jb = {
        .X = X,
        .n = n,
        .d = d,
        .ldx = ldx,
        .Q = Q,
        .m = m,
        .kk = k < allowed ? k : allowed,
        .allow = opts->allow,
        .adjust = opts->adjust,
        .adjust_ud = opts->adjust_ud,
        .gemv = m <= TOPK_GEMV_MAX_M,
    };
    if (jb.kk == 0 || m == 0) {
        for (size_t q = 0; q < m; q++) {
            n_out[q] = 0;
            for (size_t c = 0; c < k; c++)
                out[q * k + c] = (dt_hit){-INFINITY, UINT32_MAX};
        }
        return 0;
    }

    size_t nthreads = opts->threads;
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (size_t)cpus : 1;
    }
    if (nthreads > TOPK_MAX_THREADS) nthreads = TOPK_MAX_THREADS;

    if (opts->block_rows) {
        jb.nb = round_up64(opts->block_rows);
    } else {
        size_t bytes = jb.gemv ? TOPK_GEMV_BLOCK_BYTES : TOPK_GEMM_BLOCK_BYTES;
        jb.nb = round_up64(bytes / (d * sizeof(float)));
        size_t fair = round_up64((n + TOPK_MIN_BLOCKS - 1) / TOPK_MIN_BLOCKS);
        if (fair < jb.nb) jb.nb = fair;
        if (jb.nb < 64) jb.nb = 64;
    }
    if (jb.nb > round_up64(n)) jb.nb = round_up64(n);
    if (jb.nb > (size_t)INT_MAX - TOPK_LD_PAD)
        jb.nb = ((size_t)INT_MAX - TOPK_LD_PAD) & ~(size_t)63;
    jb.ld = jb.nb + TOPK_LD_PAD;
    if (jb.gemv)
        jb.mq = m;
    else
        jb.mq = opts->block_queries ? opts->block_queries : TOPK_QUERY_TILE;
    if (jb.mq > m) jb.mq = m;
    if (jb.mq > INT_MAX) jb.mq = INT_MAX;
    jb.ntiles = (m + jb.mq - 1) / jb.mq;
    jb.nitems = (n + jb.nb - 1) / jb.nb * jb.ntiles;
    if (nthreads > jb.nitems) nthreads = jb.nitems;
    atomic_init(&jb.next_item, 0);

    topk_worker ws[TOPK_MAX_THREADS];
    size_t nw = 0;
    int rc = 0;
    for (; nw < nthreads; nw++) {
        dt_err extra = DT_ERR_INIT;
        rc = worker_init(&ws[nw], &jb, nw == 0 ? err : &extra);
        if (rc) {
            if (nw == 0) return rc;
            rc = 0;
            break; /* fewer threads, as many as memory allows */
        }
    }
    for (size_t t = 1; t < nw; t++)
        ws[t].started = pthread_create(&ws[t].tid, NULL, worker_run, &ws[t]) == 0;
    worker_run(&ws[0]);
    for (size_t t = 1; t < nw; t++)
        if (ws[t].started) pthread_join(ws[t].tid, NULL);

    size_t used = 0;
    for (size_t t = 0; t < nw; t++) {
        if (t == 0 || ws[t].started)
            ws[used++] = ws[t];
        else
            worker_free(&ws[t]);
    }
    for (size_t q = 0; q < m; q++)
        merge_query(ws, used, q, k, out, n_out);
    for (size_t t = 0; t < used; t++)
        worker_free(&ws[t]);
    return rc;
}

int dt_topk_blas_single(void)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return prev;
}

void *dt_topk_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    size_t align = bytes >= 2 * huge ? huge : 64;
    bytes = (bytes + align - 1) / align * align;
    if (bytes == 0) bytes = align;
    void *p = aligned_alloc(align, bytes);
    if (!p) return NULL;
    if (align == huge) madvise(p, bytes, MADV_HUGEPAGE); /* advice only: failure changes nothing */
    memset(p, 0, bytes);
    return p;
}
