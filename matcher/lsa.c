/* lsa.c - LSA by randomized SVD (see lsa.h).
 *
 * Algorithm: randomized subspace iteration (Halko, Martinsson, Tropp 2011, algorithm 4.4):
 *   Omega = n_cols x l Gaussian;  Q = orth(A Omega)
 *   power_iters times:  Z = orth(A^T Q);  Q = orth(A Z)
 *   Z = A^T Q, which is B^T for B = Q^T A (l x n_cols), the small matrix carrying A's top triplets
 *   G = B B^T = Z^T Z (l x l, accumulated in double) = U_B diag(sigma^2) U_B^T   (dsyevd)
 *   V_k = B^T U_B S^-1, hence proj = V_k S^e = Z U_B[:, :k] diag(sigma^(e-1))   (one sgemm)
 * B is never handed to an SVD routine: sgesdd on l x n_cols would need several copies of B plus its
 * workspace. The Gram route needs only the l x l eigenproblem; forming and solving it in double
 * keeps the squared singular values accurate far beyond float precision, so squaring costs nothing
 * here.
 *
 * orth (orthonormalise()) is not Householder QR: sgeqrf + sorgqr want a column-major copy of the
 * tall matrix (twice the memory), and in place on our layout (sgelqf + sorglq of M^T) their level-2
 * panels took 3-8 s on 1e5..2e5 x 266, against 0.3-0.6 s for one pass here. A pass takes the
 * eigenpairs of the Gram matrix M^T M (accumulated in double) and sets M <- M V Lambda^-1/2 in
 * place, block by block: all GEMM. With the Gram matrix in double, one pass is orthonormal to about
 * FLT_EPSILON * cond(M), which is all the intermediate iterations need; the last Q gets a second
 * pass (as CholeskyQR2 does) and is orthonormal to FLT_EPSILON. Directions with sigma below
 * LSA_RANK_TOL * sigma_max become zero columns: a rank-deficient sketch (rank(A) < l) is padded
 * with zeros, never NaN.
 *
 * Layout: the tall matrices (Q and Y: n_rows x l; Omega and Z: n_cols x l) are row-major, so the
 * sparse products read and write whole rows. A^T is built once as a CSR copy (8 bytes per entry),
 * so both products gather rows, and every output row is written by exactly one thread summing in a
 * fixed order: the result does not depend on the number of threads. Only OpenBLAS's own thread
 * count (the process's setting) could change bits.
 *
 * Peak memory: phase 1 holds A^T (8 nnz + 8 n_cols bytes), Q (4 n_rows l) and Z (4 n_cols l); A^T
 * and Q are freed before proj (4 n_cols dim) is allocated next to Z. The dense steps add 12 l^2 +
 * 12 * 2048 l bytes (Gram matrix, eigenvectors, row blocks).
 *
 * Not here: term weighting, tokenisation, incremental updates of a basis (a refit replaces it).
 */
#include "lsa.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LSA_ALIGN 64
#define LSA_MAX_THREADS 256
#define LSA_MAX_POWER_ITERS 16
#define LSA_RANK_TOL 1e-5 /* singular values <= LSA_RANK_TOL * sigma_1 count as zero */
#define LSA_BLOCK 2048    /* rows per dsyrk / sgemm call of the dense steps */
#define LSA_ROW_CHUNK 64  /* rows per work item of the parallel loops */
#define LSA_PREFETCH 4    /* entries ahead whose dense row the sparse products prefetch */

dt_lsa_opts dt_lsa_opts_default(void)
{
    return (dt_lsa_opts){
        .dim = 256,
        .oversample = 10,
        .power_iters = 2,
        .seed = 0x4c53412d64743031ull,
        .sigma_exp = 0.0f,
        .threads = 0,
    };
}

/* ---- memory ---------------------------------------------------------------------------------- */

/* 64-byte aligned array of n * size bytes (rounded up to 64), zeroed when zero is set; NULL when
 * the size overflows or the allocation fails. n must be > 0. */
static void *alloc_aligned(size_t n, size_t size, bool zero)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes) || bytes > SIZE_MAX - LSA_ALIGN) return NULL;
    bytes = (bytes + LSA_ALIGN - 1) / LSA_ALIGN * LSA_ALIGN;
    void *p = aligned_alloc(LSA_ALIGN, bytes);
    if (p && zero) memset(p, 0, bytes);
    return p;
}

int dt_lsa_alloc(dt_lsa *m, size_t n_terms, size_t dim, dt_err *err)
{
    memset(m, 0, sizeof *m);
    if (dim == 0 || dim > DT_DIM_MAX)
        return dt_err_set(err, DT_EINVAL, "dim", "LSA dimension %zu is out of range 1..%d", dim,
                          DT_DIM_MAX);
    m->sigma = calloc(dim, sizeof *m->sigma);
    if (!m->sigma)
        return dt_err_set(err, DT_ENOMEM, "dim", "out of memory for %zu singular values", dim);
    if (n_terms > 0) {
        m->proj = alloc_aligned(n_terms, dim * sizeof *m->proj, true);
        if (!m->proj) {
            free(m->sigma);
            m->sigma = NULL;
            return dt_err_set(err, DT_ENOMEM, "n_terms",
                              "out of memory for a %zu x %zu LSA projection", n_terms, dim);
        }
    }
    m->n_terms = n_terms;
    m->dim = dim;
    return 0;
}

void dt_lsa_free(dt_lsa *m)
{
    if (!m) return;
    free(m->proj);
    free(m->sigma);
    memset(m, 0, sizeof *m);
}

/* ---- parallel loop over rows ----------------------------------------------------------------- */

typedef void (*range_fn)(void *ctx, size_t begin, size_t end);

typedef struct par_job {
    range_fn fn;
    void *ctx;
    size_t n, chunk;
    atomic_size_t next;
} par_job;

static void *par_worker(void *arg)
{
    par_job *job = arg;
    for (;;) {
        size_t b = atomic_fetch_add_explicit(&job->next, job->chunk, memory_order_relaxed);
        if (b >= job->n) break;
        size_t e = job->n - b < job->chunk ? job->n : b + job->chunk;
        job->fn(job->ctx, b, e);
    }
    return NULL;
}

static int resolve_threads(int threads)
{
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (c > LSA_MAX_THREADS ? LSA_MAX_THREADS : (int)c) : 1;
    }
    return threads > LSA_MAX_THREADS ? LSA_MAX_THREADS : threads;
}

/* Runs fn over [0, n) in chunks on up to `threads` threads (the caller's included). Items must be
 * independent. If a thread cannot be started the others do its share, so this cannot fail. */
static void par_for(int threads, size_t n, range_fn fn, void *ctx)
{
    if (n == 0) return;
    size_t n_chunks = n / LSA_ROW_CHUNK + (n % LSA_ROW_CHUNK != 0);
    size_t t = (size_t)resolve_threads(threads);
    if (t > n_chunks) t = n_chunks;
    if (t <= 1) {
        fn(ctx, 0, n);
        return;
    }
    par_job job = {.fn = fn, .ctx = ctx, .n = n, .chunk = LSA_ROW_CHUNK};
    atomic_init(&job.next, 0);
    pthread_t tid[LSA_MAX_THREADS];
    size_t started = 0;
    while (started + 1 < t && pthread_create(&tid[started], NULL, par_worker, &job) == 0)
        started++;
    par_worker(&job);
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}

/* ---- sparse x dense -------------------------------------------------------------------------- */

typedef float v8sf __attribute__((vector_size(32)));

/* y += a * x over n floats. Explicit 8-wide vectors: the loop runs at -O2, where GCC does not
 * vectorise it by itself. Every caller goes through this one function, so equal inputs give equal
 * bits. */
static inline void axpy(float *restrict y, const float *restrict x, float a, size_t n)
{
    size_t k = 0;
    const v8sf va = {a, a, a, a, a, a, a, a};
    for (; k + 8 <= n; k += 8) {
        v8sf vx, vy;
        memcpy(&vx, x + k, sizeof vx);
        memcpy(&vy, y + k, sizeof vy);
        vy += va * vx;
        memcpy(y + k, &vy, sizeof vy);
    }
    for (; k < n; k++)
        y[k] += a * x[k];
}

/* Y (n_rows x l) = S (n_rows x n_cols, CSR) * X (n_cols x l); row-major, leading dimension l. */
typedef struct spmm_ctx {
    const size_t *row_ptr;
    const uint32_t *col;
    const float *val;
    const float *X;
    float *Y;
    size_t l, n_entries;
} spmm_ctx;

static void spmm_rows(void *arg, size_t begin, size_t end)
{
    const spmm_ctx *c = arg;
    const size_t l = c->l;
    for (size_t i = begin; i < end; i++) {
        float *restrict y = c->Y + i * l;
        memset(y, 0, l * sizeof *y);
        const size_t pe = c->row_ptr[i + 1];
        for (size_t p = c->row_ptr[i]; p < pe; p++) {
            if (p + LSA_PREFETCH < c->n_entries) {
                const char *next = (const char *)(c->X + (size_t)c->col[p + LSA_PREFETCH] * l);
                for (size_t b = 0; b < l * sizeof(float); b += 64)
                    __builtin_prefetch(next + b);
            }
            axpy(y, c->X + (size_t)c->col[p] * l, c->val[p], l);
        }
    }
}

static void spmm(int threads, size_t n_rows, const size_t *row_ptr, const uint32_t *col,
                 const float *val, const float *X, float *Y, size_t l)
{
    spmm_ctx c = {row_ptr, col, val, X, Y, l, row_ptr[n_rows]};
    par_for(threads, n_rows, spmm_rows, &c);
}

/* A^T in CSR form, owned. Entries of A equal to zero are dropped. */
typedef struct csr_t {
    size_t *row_ptr; /* n_cols of A + 1 */
    uint32_t *col;   /* row of A */
    float *val;
} csr_t;

static void csr_t_free(csr_t *t)
{
    free(t->row_ptr);
    free(t->col);
    free(t->val);
    memset(t, 0, sizeof *t);
}

static int transpose(const dt_csr *A, size_t nnz, csr_t *t, dt_err *err)
{
    memset(t, 0, sizeof *t);
    t->row_ptr = calloc(A->n_cols + 1, sizeof *t->row_ptr);
    t->col = malloc(nnz * sizeof *t->col);
    t->val = malloc(nnz * sizeof *t->val);
    if (!t->row_ptr || !t->col || !t->val) {
        csr_t_free(t);
        return dt_err_set(err, DT_ENOMEM, "A", "out of memory for the transpose of %zu entries",
                          nnz);
    }
    size_t *rp = t->row_ptr;
    for (size_t p = 0; p < nnz; p++)
        if (A->val[p] != 0.0f) rp[(size_t)A->col[p] + 1]++;
    for (size_t c = 0; c < A->n_cols; c++)
        rp[c + 1] += rp[c];
    for (size_t i = 0; i < A->n_rows; i++) {
        for (size_t p = A->row_ptr[i]; p < A->row_ptr[i + 1]; p++) {
            if (A->val[p] == 0.0f) continue;
            size_t q = rp[A->col[p]]++;
            t->col[q] = (uint32_t)i;
            t->val[q] = A->val[p];
        }
    }
    for (size_t c = A->n_cols; c > 0; c--)
        rp[c] = rp[c - 1];
    rp[0] = 0;
    return 0;
}

/* ---- Gaussian test matrix -------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman, Vigna). */
typedef struct xoshiro {
    uint64_t s[4];
} xoshiro;

static uint64_t xoshiro_next(xoshiro *r)
{
    uint64_t *s = r->s;
    const uint64_t out = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* Uniform in the open interval (0, 1). */
static double uniform01(xoshiro *r)
{
    return ((double)(xoshiro_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

typedef struct gauss_ctx {
    float *M;
    size_t l;
    uint64_t seed;
} gauss_ctx;

/* Row j of the test matrix comes from its own generator, seeded from (seed, j): the matrix does not
 * depend on how rows are shared among threads. Marsaglia's polar form of Box-Muller: two normals
 * per accepted pair of uniforms, no trigonometry. */
static void gauss_rows(void *arg, size_t begin, size_t end)
{
    const gauss_ctx *c = arg;
    for (size_t j = begin; j < end; j++) {
        uint64_t sm = c->seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(j + 1));
        xoshiro r;
        for (int w = 0; w < 4; w++)
            r.s[w] = splitmix64(&sm);
        float *row = c->M + j * c->l;
        size_t k = 0;
        while (k < c->l) {
            double u = 2.0 * uniform01(&r) - 1.0, v = 2.0 * uniform01(&r) - 1.0;
            double q = u * u + v * v;
            if (q >= 1.0 || q == 0.0) continue;
            double f = sqrt(-2.0 * log(q) / q);
            row[k++] = (float)(u * f);
            if (k < c->l) row[k++] = (float)(v * f);
        }
    }
}

/* ---- dense steps ----------------------------------------------------------------------------- */

static int lapack_fail(const char *routine, lapack_int info, dt_err *err)
{
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return dt_err_set(err, DT_ENOMEM, "lsa", "out of memory for the workspace of %s", routine);
    return dt_err_set(err, DT_EINTERNAL, "lsa", "LAPACK %s failed with info %d", routine,
                      (int)info);
}

/* Scratch of the dense steps, sized for sketch width l and output dimension dim. */
typedef struct lsa_work {
    size_t l, dim;
    double *G;      /* l x l Gram matrix, then its eigenvectors (column-major) */
    double *ev;     /* l eigenvalues, ascending */
    double *blockd; /* LSA_BLOCK x l */
    float *blockf;  /* LSA_BLOCK x l */
    float *W;       /* l x max(l, dim), row-major */
} lsa_work;

static void work_free(lsa_work *w)
{
    free(w->G);
    free(w->ev);
    free(w->blockd);
    free(w->blockf);
    free(w->W);
    memset(w, 0, sizeof *w);
}

static int work_init(lsa_work *w, size_t l, size_t dim, dt_err *err)
{
    memset(w, 0, sizeof *w);
    w->l = l;
    w->dim = dim;
    w->G = malloc(l * l * sizeof *w->G);
    w->ev = malloc(l * sizeof *w->ev);
    w->blockd = malloc(LSA_BLOCK * l * sizeof *w->blockd);
    w->blockf = malloc(LSA_BLOCK * l * sizeof *w->blockf);
    w->W = malloc(l * (l > dim ? l : dim) * sizeof *w->W);
    if (!w->G || !w->ev || !w->blockd || !w->blockf || !w->W) {
        work_free(w);
        return dt_err_set(err, DT_ENOMEM, "dim", "out of memory for the %zu x %zu dense steps", l,
                          l);
    }
    return 0;
}

/* Eigendecomposition of M^T M for M (rows x l, row-major): the Gram matrix is accumulated in double
 * (row blocks of M converted, then dsyrk) and solved by dsyevd. Leaves eigenvalues ascending in
 * w->ev and eigenvector j in w->G[j * l .. j * l + l). */
static int gram_eig(lsa_work *w, const float *M, size_t rows, dt_err *err)
{
    const size_t l = w->l;
    memset(w->G, 0, l * l * sizeof *w->G);
    for (size_t b = 0; b < rows; b += LSA_BLOCK) {
        const size_t n = rows - b < LSA_BLOCK ? rows - b : LSA_BLOCK;
        const float *src = M + b * l;
        for (size_t k = 0; k < n * l; k++)
            w->blockd[k] = src[k];
        /* blockd read column-major is the l x n matrix M_b^T, so this adds M_b^T M_b. */
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)l, (blasint)n, 1.0, w->blockd,
                    (blasint)l, 1.0, w->G, (blasint)l);
    }
    lapack_int info =
        LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)l, w->G, (lapack_int)l, w->ev);
    if (info != 0) return lapack_fail("dsyevd", info, err);
    return 0;
}

/* out (rows x k, stride ldo) = M (rows x l, row-major) * W (l x k, stride ldw), by row blocks; when
 * out is NULL, M itself is overwritten (then k must be l). */
static void mul_blocks(lsa_work *w, float *M, size_t rows, const float *W, size_t ldw, size_t k,
                       float *out, size_t ldo)
{
    const size_t l = w->l;
    for (size_t b = 0; b < rows; b += LSA_BLOCK) {
        const size_t n = rows - b < LSA_BLOCK ? rows - b : LSA_BLOCK;
        float *dst = out ? out + b * ldo : w->blockf;
        const size_t ldd = out ? ldo : l;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)k, (blasint)l,
                    1.0f, M + b * l, (blasint)l, W, (blasint)ldw, 0.0f, dst, (blasint)ldd);
        if (!out) memcpy(M + b * l, w->blockf, n * l * sizeof *M);
    }
}

/* Replaces the columns of M (rows x l, row-major, rows >= l) by a basis of their span: each pass is
 * M <- M V diag(lambda^-1/2) from the eigenpairs of M^T M. One pass leaves the columns orthonormal
 * up to about FLT_EPSILON * cond(M), enough to keep a subspace iteration well-conditioned; a second
 * pass brings them to FLT_EPSILON (as in CholeskyQR2). Directions with sigma <= LSA_RANK_TOL *
 * sigma_max become zero columns, so a rank-deficient M gives a basis padded with zeros, never NaN.
 */
static int orthonormalise(lsa_work *w, float *M, size_t rows, int passes, dt_err *err)
{
    const size_t l = w->l;
    for (int pass = 0; pass < passes; pass++) {
        int rc = gram_eig(w, M, rows, err);
        if (rc) return rc;
        const double floor = LSA_RANK_TOL * LSA_RANK_TOL * w->ev[l - 1];
        memset(w->W, 0, l * l * sizeof *w->W);
        for (size_t c = 0; c < l; c++) {
            const size_t j = l - 1 - c;
            if (!(w->ev[j] > floor) || !(w->ev[j] > 0.0)) break;
            const double scale = 1.0 / sqrt(w->ev[j]);
            for (size_t r = 0; r < l; r++)
                w->W[r * l + c] = (float)(w->G[j * l + r] * scale);
        }
        mul_blocks(w, M, rows, w->W, l, l, NULL, 0);
    }
    return 0;
}

/* Makes the largest-magnitude entry of each of the first k columns of P (n x ld, row-major)
 * positive. */
static void fix_signs(float *P, size_t n, size_t ld, size_t k, float *best)
{
    memset(best, 0, k * sizeof *best);
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < k; c++)
            if (fabsf(P[r * ld + c]) > fabsf(best[c])) best[c] = P[r * ld + c];
    bool any = false;
    for (size_t c = 0; c < k; c++)
        any |= best[c] < 0.0f;
    if (!any) return;
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < k; c++)
            if (best[c] < 0.0f) P[r * ld + c] = -P[r * ld + c];
}

/* ---- validation ------------------------------------------------------------------------------ */

/* Checks A's row_ptr (and, when full, its columns and values). Sets *nnz and *n_nonzero. */
static int check_csr(const dt_csr *A, bool full, size_t *nnz, size_t *n_nonzero, dt_err *err)
{
    *nnz = 0;
    *n_nonzero = 0;
    if (A->n_rows == 0) {
        if (A->row_ptr && A->row_ptr[0] != 0)
            return dt_err_set(err, DT_EINVAL, "A.row_ptr", "row_ptr[0] is %zu; it must be 0",
                              A->row_ptr[0]);
        return 0;
    }
    if (!A->row_ptr)
        return dt_err_set(err, DT_EINVAL, "A.row_ptr", "row_ptr is NULL for %zu rows", A->n_rows);
    if (A->row_ptr[0] != 0)
        return dt_err_set(err, DT_EINVAL, "A.row_ptr", "row_ptr[0] is %zu; it must be 0",
                          A->row_ptr[0]);
    for (size_t i = 0; i < A->n_rows; i++)
        if (A->row_ptr[i + 1] < A->row_ptr[i])
            return dt_err_set(err, DT_EINVAL, "A.row_ptr",
                              "row_ptr decreases at row %zu (%zu after %zu)", i, A->row_ptr[i + 1],
                              A->row_ptr[i]);
    *nnz = A->row_ptr[A->n_rows];
    if (*nnz > 0 && (!A->col || !A->val))
        return dt_err_set(err, DT_EINVAL, A->col ? "A.val" : "A.col", "NULL array for %zu entries",
                          *nnz);
    if (!full) return 0;
    size_t nz = 0;
    for (size_t i = 0; i < A->n_rows; i++) {
        for (size_t p = A->row_ptr[i]; p < A->row_ptr[i + 1]; p++) {
            if (A->col[p] >= A->n_cols)
                return dt_err_set(err, DT_EINVAL, "A.col",
                                  "row %zu has column %u, beyond n_cols %zu", i, A->col[p],
                                  A->n_cols);
            if (!isfinite(A->val[p]))
                return dt_err_set(err, DT_EINVAL, "A.val",
                                  "row %zu column %u has a non-finite weight", i, A->col[p]);
            nz += A->val[p] != 0.0f;
        }
    }
    *n_nonzero = nz;
    return 0;
}

static int check_opts(const dt_lsa_opts *o, dt_err *err)
{
    if (o->dim == 0 || o->dim > DT_DIM_MAX)
        return dt_err_set(err, DT_EINVAL, "dim", "LSA dimension %zu is out of range 1..%d", o->dim,
                          DT_DIM_MAX);
    if (o->oversample > DT_DIM_MAX)
        return dt_err_set(err, DT_EINVAL, "oversample", "oversample %zu is out of range 0..%d",
                          o->oversample, DT_DIM_MAX);
    if (o->power_iters < 0 || o->power_iters > LSA_MAX_POWER_ITERS)
        return dt_err_set(err, DT_EINVAL, "power_iters", "power_iters %d is out of range 0..%d",
                          o->power_iters, LSA_MAX_POWER_ITERS);
    if (!isfinite(o->sigma_exp))
        return dt_err_set(err, DT_EINVAL, "sigma_exp", "sigma_exp must be a finite number");
    return 0;
}

/* ---- fit ------------------------------------------------------------------------------------- */

int dt_lsa_fit(const dt_csr *A, const dt_lsa_opts *opts, dt_lsa *out, dt_err *err)
{
    memset(out, 0, sizeof *out);
    dt_lsa_opts o = opts ? *opts : dt_lsa_opts_default();
    int rc = check_opts(&o, err);
    if (rc) return rc;
    if (!A) return dt_err_set(err, DT_EINVAL, "A", "the matrix is NULL");
    size_t nnz, n_nonzero;
    rc = check_csr(A, true, &nnz, &n_nonzero, err);
    if (rc) return rc;
    if (A->n_rows > (size_t)UINT32_MAX + 1)
        return dt_err_set(err, DT_ELIMIT, "A.n_rows", "%zu rows; at most 2^32 are supported",
                          A->n_rows);

    const size_t m = A->n_rows, n = A->n_cols, dim = o.dim;
    size_t l = dim + o.oversample;
    if (l > m) l = m;
    if (l > n) l = n;
    const int threads = resolve_threads(o.threads);

    if (n_nonzero == 0 || l == 0) {
        rc = dt_lsa_alloc(out, n, dim, err);
        if (rc == 0) out->threads = o.threads;
        return rc;
    }

    csr_t at = {0};
    lsa_work wk = {0};
    float *Y = NULL, *Z = NULL, *best = NULL, *proj = NULL, *sigma = NULL;

    rc = transpose(A, nnz, &at, err);
    if (rc) goto done;
    if ((rc = work_init(&wk, l, dim, err))) goto done;
    Y = alloc_aligned(m, l * sizeof *Y, false);
    Z = alloc_aligned(n, l * sizeof *Z, false);
    best = malloc(dim * sizeof *best);
    sigma = calloc(dim, sizeof *sigma);
    if (!Y || !Z || !best || !sigma) {
        rc = dt_err_set(err, DT_ENOMEM, "A",
                        "out of memory for the %zu x %zu and %zu x %zu sketches", m, l, n, l);
        goto done;
    }

    gauss_ctx gc = {Z, l, o.seed};
    par_for(threads, n, gauss_rows, &gc);
    spmm(threads, m, A->row_ptr, A->col, A->val, Z, Y, l);
    if ((rc = orthonormalise(&wk, Y, m, o.power_iters > 0 ? 1 : 2, err))) goto done;
    for (int it = 0; it < o.power_iters; it++) {
        spmm(threads, n, at.row_ptr, at.col, at.val, Y, Z, l);
        if ((rc = orthonormalise(&wk, Z, n, 1, err))) goto done;
        spmm(threads, m, A->row_ptr, A->col, A->val, Z, Y, l);
        if ((rc = orthonormalise(&wk, Y, m, it + 1 < o.power_iters ? 1 : 2, err))) goto done;
    }
    spmm(threads, n, at.row_ptr, at.col, at.val, Y, Z, l);
    free(Y);
    Y = NULL;
    csr_t_free(&at);

    /* Z = B^T: the eigenpairs of Z^T Z = B B^T are (sigma^2, U_B), ascending. */
    if ((rc = gram_eig(&wk, Z, n, err))) goto done;
    const double s_max = sqrt(wk.ev[l - 1] > 0.0 ? wk.ev[l - 1] : 0.0);
    const size_t k_max = dim < l ? dim : l;
    size_t k = 0;
    memset(wk.W, 0, l * dim * sizeof *wk.W);
    for (; k < k_max; k++) {
        const size_t j = l - 1 - k;
        const double s = sqrt(wk.ev[j] > 0.0 ? wk.ev[j] : 0.0);
        if (!(s > LSA_RANK_TOL * s_max) || !(s > 0.0)) break;
        const double scale = pow(s, (double)o.sigma_exp - 1.0);
        sigma[k] = (float)s;
        for (size_t r = 0; r < l; r++)
            wk.W[r * dim + k] = (float)(wk.G[j * l + r] * scale);
    }

    proj = alloc_aligned(n, dim * sizeof *proj, k < dim);
    if (!proj) {
        rc = dt_err_set(err, DT_ENOMEM, "A.n_cols", "out of memory for a %zu x %zu LSA projection",
                        n, dim);
        goto done;
    }
    if (k > 0) {
        mul_blocks(&wk, Z, n, wk.W, dim, k, proj, dim);
        fix_signs(proj, n, dim, k, best);
    }
    out->n_terms = n;
    out->dim = dim;
    out->proj = proj;
    out->sigma = sigma;
    out->threads = o.threads;
    proj = NULL;
    sigma = NULL;
    rc = 0;

done:
    csr_t_free(&at);
    work_free(&wk);
    free(Y);
    free(Z);
    free(best);
    free(proj);
    free(sigma);
    return rc;
}

/* ---- projection ------------------------------------------------------------------------------ */

void dt_lsa_project(const dt_lsa *m, const uint32_t *cols, const float *vals, size_t nnz,
                    float *out)
{
    const size_t d = m->dim;
    if (d == 0) return;
    memset(out, 0, d * sizeof *out);
    for (size_t p = 0; p < nnz; p++)
        if (cols[p] < m->n_terms && vals[p] != 0.0f)
            axpy(out, m->proj + (size_t)cols[p] * d, vals[p], d);
    double ss = 0.0;
    for (size_t k = 0; k < d; k++)
        ss += (double)out[k] * out[k];
    if (!(ss > 0.0) || !isfinite(ss)) {
        memset(out, 0, d * sizeof *out);
        return;
    }
    const double inv = 1.0 / sqrt(ss);
    for (size_t k = 0; k < d; k++)
        out[k] = (float)(out[k] * inv);
}

typedef struct project_ctx {
    const dt_lsa *m;
    const dt_csr *A;
    float *out;
    size_t ld;
} project_ctx;

static void project_rows(void *arg, size_t begin, size_t end)
{
    const project_ctx *c = arg;
    const size_t *rp = c->A->row_ptr;
    for (size_t i = begin; i < end; i++) {
        size_t len = rp[i + 1] - rp[i];
        dt_lsa_project(c->m, len ? c->A->col + rp[i] : NULL, len ? c->A->val + rp[i] : NULL, len,
                       c->out + i * c->ld);
    }
}

int dt_lsa_project_csr(const dt_lsa *m, const dt_csr *A, float *out, size_t ld, dt_err *err)
{
    if (!m || !A) return dt_err_set(err, DT_EINVAL, m ? "A" : "m", "NULL argument");
    if (m->dim > 0 && m->n_terms > 0 && !m->proj)
        return dt_err_set(err, DT_EINVAL, "m.proj", "the model has %zu terms but no projection",
                          m->n_terms);
    if (ld < m->dim)
        return dt_err_set(err, DT_EINVAL, "ld", "row stride %zu is less than the dimension %zu", ld,
                          m->dim);
    size_t nnz, n_nonzero;
    int rc = check_csr(A, false, &nnz, &n_nonzero, err);
    if (rc) return rc;
    if (A->n_rows > 0 && m->dim > 0 && !out)
        return dt_err_set(err, DT_EINVAL, "out", "NULL output for %zu rows", A->n_rows);
    if (m->dim == 0) return 0;
    project_ctx c = {m, A, out, ld};
    par_for(m->threads, A->n_rows, project_rows, &c);
    return 0;
}
