/* test_lsa.c - LSA by randomized SVD (matcher/lsa.h) against an exact dense SVD (LAPACK dgesvd on
 * the densified matrix): singular values, the rank-k row geometry, degenerate shapes, bad input,
 * determinism, and the two projection paths against each other and a double-precision sum.
 *
 * Test matrices are built from small integers so that they are exact in float: an "exactly rank r"
 * matrix really has rank r, and the reference sees the very matrix the fit sees. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <lapacke.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsa.h"

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* A nonzero integer in -3..3. */
static int rng_small(uint64_t *s)
{
    int v = 1 + (int)(rng_next(s) % 3);
    return (rng_next(s) & 1) ? v : -v;
}

/* A dense row-major double matrix and its CSR copy (exact zeros left out). */
typedef struct tmat {
    size_t m, n;
    double *a;
    size_t *rp;
    uint32_t *col;
    float *val;
} tmat;

static tmat tmat_zeros(size_t m, size_t n)
{
    tmat t = {m, n, calloc(m * n + 1, sizeof(double)), NULL, NULL, NULL};
    assert_non_null(t.a);
    return t;
}

static void tmat_free(tmat *t)
{
    free(t->a);
    free(t->rp);
    free(t->col);
    free(t->val);
    memset(t, 0, sizeof *t);
}

/* Builds the CSR copy; every value must be exact in float. */
static dt_csr tmat_csr(tmat *t)
{
    free(t->rp);
    free(t->col);
    free(t->val);
    size_t nnz = 0;
    for (size_t k = 0; k < t->m * t->n; k++)
        nnz += t->a[k] != 0.0;
    t->rp = malloc((t->m + 1) * sizeof *t->rp);
    t->col = malloc((nnz + 1) * sizeof *t->col);
    t->val = malloc((nnz + 1) * sizeof *t->val);
    assert_true(t->rp && t->col && t->val);
    size_t p = 0;
    t->rp[0] = 0;
    for (size_t i = 0; i < t->m; i++) {
        for (size_t j = 0; j < t->n; j++) {
            double v = t->a[i * t->n + j];
            if (v == 0.0) continue;
            assert_true((double)(float)v == v);
            t->col[p] = (uint32_t)j;
            t->val[p] = (float)v;
            p++;
        }
        t->rp[i + 1] = p;
    }
    return (dt_csr){t->m, t->n, t->rp, t->col, t->val};
}

/* A = sum_t scale_t u_t v_t^T with sparse integer u_t (density pu), v_t (density pv): rank <= r. */
static void add_low_rank(tmat *t, size_t r, double pu, double pv, const int *scale, uint64_t seed)
{
    double *u = malloc(t->m * sizeof *u), *v = malloc(t->n * sizeof *v);
    assert_true(u && v);
    for (size_t c = 0; c < r; c++) {
        for (size_t i = 0; i < t->m; i++)
            u[i] = rng_unit(&seed) < pu ? rng_small(&seed) : 0;
        for (size_t j = 0; j < t->n; j++)
            v[j] = rng_unit(&seed) < pv ? rng_small(&seed) : 0;
        for (size_t i = 0; i < t->m; i++) {
            if (u[i] == 0) continue;
            for (size_t j = 0; j < t->n; j++)
                t->a[i * t->n + j] += scale[c] * u[i] * v[j];
        }
    }
    free(u);
    free(v);
}

/* Sprinkles +-amp at density p. */
static void add_noise_amp(tmat *t, double p, double amp, uint64_t seed)
{
    for (size_t k = 0; k < t->m * t->n; k++)
        if (rng_unit(&seed) < p) t->a[k] += (rng_next(&seed) & 1) ? amp : -amp;
}

static void add_noise(tmat *t, double p, uint64_t seed)
{
    add_noise_amp(t, p, 1.0, seed);
}

/* Exact thin SVD of t: S (min(m,n)), U (m x min(m,n), row-major). */
static void ref_svd(const tmat *t, double *S, double *U)
{
    size_t mn = t->m < t->n ? t->m : t->n;
    double *a = malloc(t->m * t->n * sizeof *a), *sup = malloc(mn * sizeof *sup), vt = 0;
    assert_true(a && sup);
    memcpy(a, t->a, t->m * t->n * sizeof *a);
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'N', (lapack_int)t->m, (lapack_int)t->n,
                                     a, (lapack_int)t->n, S, U, (lapack_int)mn, &vt, 1, sup);
    assert_int_equal(info, 0);
    free(a);
    free(sup);
}

static size_t rank_of(const double *S, size_t mn)
{
    size_t r = 0;
    while (r < mn && S[r] > 1e-5 * S[0])
        r++;
    return r;
}

static dt_lsa fit_ok(const dt_csr *A, const dt_lsa_opts *o)
{
    dt_lsa m;
    dt_err err = DT_ERR_INIT;
    int rc = dt_lsa_fit(A, o, &m, &err);
    if (rc) fail_msg("dt_lsa_fit: %d %s: %s", rc, err.field, err.msg);
    return m;
}

static float *project_all(const dt_lsa *m, const dt_csr *A)
{
    float *x = malloc((A->n_rows * m->dim + 1) * sizeof *x);
    assert_non_null(x);
    dt_err err = DT_ERR_INIT;
    int rc = dt_lsa_project_csr(m, A, x, m->dim, &err);
    if (rc) fail_msg("dt_lsa_project_csr: %s: %s", err.field, err.msg);
    return x;
}

static void assert_all_finite(const float *x, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!isfinite(x[k])) fail_msg("non-finite value at %zu", k);
}

static bool all_zero(const float *x, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (x[k] != 0.0f) return false;
    return true;
}

/* Compares the cosine of every pair of rows of X (LSA vectors, unit or zero) with the cosine of the
 * same rows of R (m x k reference coordinates, row-major). Rows whose reference norm is below
 * skip_rel of the largest are left out (their direction is ill-determined); zero reference rows
 * must be zero in X. */
static double max_cosine_gap(const float *X, size_t dim, const double *R, size_t k, size_t m,
                             double skip_rel)
{
    double *norm = malloc(m * sizeof *norm), big = 0;
    assert_non_null(norm);
    for (size_t i = 0; i < m; i++) {
        double s = 0;
        for (size_t c = 0; c < k; c++)
            s += R[i * k + c] * R[i * k + c];
        norm[i] = sqrt(s);
        if (norm[i] > big) big = norm[i];
    }
    double worst = 0;
    for (size_t i = 0; i < m; i++) {
        if (norm[i] <= 1e-12 * big) {
            if (!all_zero(X + i * dim, dim))
                fail_msg("row %zu is zero in the reference but not in LSA", i);
            continue;
        }
        if (norm[i] < skip_rel * big) continue;
        for (size_t j = i + 1; j < m; j++) {
            if (norm[j] < skip_rel * big || norm[j] <= 1e-12 * big) continue;
            double ref = 0, got = 0;
            for (size_t c = 0; c < k; c++)
                ref += R[i * k + c] * R[j * k + c];
            ref /= norm[i] * norm[j];
            for (size_t c = 0; c < dim; c++)
                got += (double)X[i * dim + c] * X[j * dim + c];
            if (fabs(got - ref) > worst) worst = fabs(got - ref);
        }
    }
    free(norm);
    return worst;
}

/* Reference coordinates U_k S_k^(1 + e) (m x k). */
static double *ref_coords(const double *U, const double *S, size_t m, size_t mn, size_t k, double e)
{
    double *R = malloc(m * k * sizeof *R);
    assert_non_null(R);
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < k; c++)
            R[i * k + c] = U[i * mn + c] * pow(S[c], 1.0 + e);
    return R;
}

static const int scales[] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 9, 7, 5, 3, 1, 8, 6, 4, 2, 9, 1,
                             8, 2, 7, 3, 6, 4, 5, 5, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2};

/* ---- exact low rank ---- */

static const int spread[] = {4096, 2896, 2048, 1448, 1024, 724, 512, 362, 256, 181, 128, 90,
                             64,   45,   32,   23,   16,   11,  8,   6,   4,   3,   2,   1};

static void check_exact_rank_scaled(size_t m, size_t n, size_t r, size_t dim, uint64_t seed,
                                    const int *scale)
{
    tmat t = tmat_zeros(m, n);
    add_low_rank(&t, r, 0.25, 0.15, scale, seed);
    dt_csr A = tmat_csr(&t);
    size_t mn = m < n ? m : n;
    double *S = malloc(mn * sizeof *S), *U = malloc(m * mn * sizeof *U);
    assert_true(S && U);
    ref_svd(&t, S, U);
    assert_int_equal(rank_of(S, mn), r);

    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = dim;
    dt_lsa mod = fit_ok(&A, &o);
    assert_int_equal(mod.n_terms, n);
    assert_int_equal(mod.dim, dim);
    double worst_rel = 0;
    for (size_t c = 0; c < r; c++) {
        double rel = fabs(mod.sigma[c] - S[c]) / S[c];
        if (rel >= 1e-3)
            fail_msg("sigma[%zu] = %.9g, exact %.9g (rel %.3g)", c, mod.sigma[c], S[c], rel);
        if (rel > worst_rel) worst_rel = rel;
    }
    for (size_t c = r; c < dim; c++)
        assert_true(mod.sigma[c] == 0.0f);
    for (size_t c = 0; c + 1 < dim; c++)
        assert_true(mod.sigma[c] >= mod.sigma[c + 1]);
    /* columns beyond the rank are zero; the others orthonormal (sigma_exp 0) with a positive peak
     */
    for (size_t a = 0; a < dim; a++) {
        float peak = 0;
        for (size_t j = 0; j < n; j++)
            if (fabsf(mod.proj[j * dim + a]) > fabsf(peak)) peak = mod.proj[j * dim + a];
        if (a >= r) {
            assert_true(peak == 0.0f);
            continue;
        }
        assert_true(peak > 0.0f);
        for (size_t b = a; b < r; b++) {
            double d = 0;
            for (size_t j = 0; j < n; j++)
                d += (double)mod.proj[j * dim + a] * mod.proj[j * dim + b];
            if (fabs(d - (a == b)) > 1e-4) fail_msg("V^T V [%zu][%zu] = %.9g", a, b, d);
        }
    }
    /* with rank <= dim and sigma_exp 0 the LSA space keeps A's row geometry exactly */
    float *X = project_all(&mod, &A);
    assert_all_finite(X, m * dim);
    double *R = ref_coords(U, S, m, mn, r, 0.0);
    double gap = max_cosine_gap(X, dim, R, r, m, 0.0);
    if (gap >= 1e-3) fail_msg("row cosines differ by %.3g", gap);
    print_message("# %zu x %zu rank %zu dim %zu: sigma rel err <= %.2g (sigma_r/sigma_1 %.2g), "
                  "cosine gap %.2g\n",
                  m, n, r, dim, worst_rel, S[r - 1] / S[0], gap);
    free(X);
    free(R);
    dt_lsa_free(&mod);

    /* sigma_exp 1 and -1: coordinates U S^2 and U. Folding in with sigma_exp -1 divides by sigma_r,
     * so float rounding grows like (sigma_1 / sigma_r)^2 * FLT_EPSILON: only checked on a narrow
     * spectrum. */
    const float exps[] = {1.0f, -1.0f};
    const size_t n_exps = S[r - 1] / S[0] > 1e-2 ? 2 : 1;
    for (size_t q = 0; q < n_exps; q++) {
        o.sigma_exp = exps[q];
        mod = fit_ok(&A, &o);
        X = project_all(&mod, &A);
        R = ref_coords(U, S, m, mn, r, exps[q]);
        gap = max_cosine_gap(X, dim, R, r, m, 0.0);
        if (gap >= 1e-3) fail_msg("sigma_exp %g: row cosines differ by %.3g", exps[q], gap);
        free(X);
        free(R);
        dt_lsa_free(&mod);
    }
    free(S);
    free(U);
    tmat_free(&t);
}

static void check_exact_rank(size_t m, size_t n, size_t r, size_t dim, uint64_t seed)
{
    check_exact_rank_scaled(m, n, r, dim, seed, scales);
}

static void test_exact_rank_below_dim(void **state)
{
    (void)state;
    check_exact_rank(300, 500, 20, 32, 1);
}

static void test_exact_rank_equal_dim(void **state)
{
    (void)state;
    check_exact_rank(260, 180, 24, 24, 2);
}

static void test_exact_rank_many(void **state)
{
    (void)state;
    check_exact_rank(400, 350, 40, 64, 3);
}

static void test_exact_rank_wide_spread(void **state)
{
    (void)state;
    /* component scales from 4096 down to 1: singular values over more than three orders of
     * magnitude */
    check_exact_rank_scaled(300, 260, 24, 32, 4, spread);
}

/* ---- truncation: rank above dim, a gap at dim ---- */

static void test_truncated_subspace(void **state)
{
    (void)state;
    const size_t m = 350, n = 420, k = 12;
    tmat t = tmat_zeros(m, n);
    int big[12];
    for (size_t c = 0; c < k; c++)
        big[c] = scales[c] + 1;
    add_low_rank(&t, k, 0.05, 0.04, big, 11);
    add_noise_amp(&t, 0.5, 2.0, 12); /* sigma_k+1 / sigma_k about 0.3 */
    dt_csr A = tmat_csr(&t);
    size_t mn = m < n ? m : n;
    double *S = malloc(mn * sizeof *S), *U = malloc(m * mn * sizeof *U);
    assert_true(S && U);
    ref_svd(&t, S, U);
    assert_true(rank_of(S, mn) > k);
    print_message("# truncated: sigma_k+1 / sigma_k = %.3f\n", S[k] / S[k - 1]);

    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = k;
    dt_lsa mod = fit_ok(&A, &o);
    for (size_t c = 0; c < k; c++) {
        double rel = fabs(mod.sigma[c] - S[c]) / S[c];
        if (rel >= 1e-3)
            fail_msg("sigma[%zu] = %.9g, exact %.9g (rel %.3g)", c, mod.sigma[c], S[c], rel);
    }
    float *X = project_all(&mod, &A);
    double *R = ref_coords(U, S, m, mn, k, 0.0);
    double gap = max_cosine_gap(X, k, R, k, m, 0.05);
    if (gap >= 1e-3)
        fail_msg("row cosines against the exact rank-%zu space differ by %.3g", k, gap);
    print_message("# truncated: cosine gap %.2g\n", gap);
    free(X);
    free(R);
    dt_lsa_free(&mod);
    free(S);
    free(U);
    tmat_free(&t);
}

/* No gap at all (random sparse): Ritz values never exceed the exact ones, V stays orthonormal. */
static void test_flat_spectrum_bounds(void **state)
{
    (void)state;
    const size_t m = 400, n = 300, dim = 32;
    tmat t = tmat_zeros(m, n);
    add_noise(&t, 0.03, 21);
    dt_csr A = tmat_csr(&t);
    double *S = malloc(n * sizeof *S), *U = malloc(m * n * sizeof *U);
    assert_true(S && U);
    ref_svd(&t, S, U);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = dim;
    o.oversample = 8;
    o.power_iters = 3;
    dt_lsa mod = fit_ok(&A, &o);
    for (size_t c = 0; c < dim; c++) {
        assert_true(mod.sigma[c] > 0.0f);
        if (mod.sigma[c] > S[c] * (1 + 1e-5))
            fail_msg("sigma[%zu] = %.9g exceeds exact %.9g", c, mod.sigma[c], S[c]);
    }
    assert_true(fabs(mod.sigma[0] - S[0]) / S[0] < 2e-2);
    for (size_t a = 0; a < dim; a++)
        for (size_t b = a; b < dim; b++) {
            double d = 0;
            for (size_t j = 0; j < n; j++)
                d += (double)mod.proj[j * dim + a] * mod.proj[j * dim + b];
            if (fabs(d - (a == b)) > 1e-4) fail_msg("V^T V [%zu][%zu] = %.9g", a, b, d);
        }
    dt_lsa_free(&mod);
    free(S);
    free(U);
    tmat_free(&t);
}

/* proj(sigma_exp = 1) is proj(sigma_exp = 0) scaled column-wise by sigma, for the same seed. */
static void test_sigma_exp_scales_columns(void **state)
{
    (void)state;
    tmat t = tmat_zeros(120, 90);
    add_low_rank(&t, 10, 0.3, 0.3, scales, 31);
    dt_csr A = tmat_csr(&t);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 16;
    dt_lsa m0 = fit_ok(&A, &o);
    o.sigma_exp = 1.0f;
    dt_lsa m1 = fit_ok(&A, &o);
    o.sigma_exp = 0.5f;
    dt_lsa mh = fit_ok(&A, &o);
    for (size_t j = 0; j < 90; j++)
        for (size_t c = 0; c < 16; c++) {
            float v0 = m0.proj[j * 16 + c];
            assert_float_equal(m1.proj[j * 16 + c], v0 * m0.sigma[c], 1e-4 * m0.sigma[0]);
            assert_float_equal(mh.proj[j * 16 + c], v0 * sqrtf(m0.sigma[c]),
                               1e-4 * sqrtf(m0.sigma[0]));
        }
    assert_memory_equal(m0.sigma, m1.sigma, 16 * sizeof(float));
    dt_lsa_free(&m0);
    dt_lsa_free(&m1);
    dt_lsa_free(&mh);
    tmat_free(&t);
}

/* ---- degenerate shapes ---- */

static void check_zero_model(const dt_lsa *m, size_t n_terms, size_t dim)
{
    assert_int_equal(m->n_terms, n_terms);
    assert_int_equal(m->dim, dim);
    assert_non_null(m->sigma);
    assert_true(all_zero(m->sigma, dim));
    if (n_terms) {
        assert_non_null(m->proj);
        assert_true(((uintptr_t)m->proj & 63) == 0);
        assert_true(all_zero(m->proj, n_terms * dim));
    }
}

static void test_empty_matrices(void **state)
{
    (void)state;
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 8;
    dt_csr none = {0, 0, NULL, NULL, NULL};
    dt_lsa m = fit_ok(&none, &o);
    check_zero_model(&m, 0, 8);
    assert_null(m.proj);
    float q[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    uint32_t qc[2] = {0, 5};
    float qv[2] = {1, 2};
    dt_lsa_project(&m, qc, qv, 2, q);
    assert_true(all_zero(q, 8));
    dt_lsa_free(&m);

    size_t rp0[1] = {0};
    dt_csr no_rows = {0, 5, rp0, NULL, NULL};
    m = fit_ok(&no_rows, &o);
    check_zero_model(&m, 5, 8);
    dt_lsa_free(&m);

    size_t rp3[4] = {0, 0, 0, 0};
    dt_csr no_cols = {3, 0, rp3, NULL, NULL};
    m = fit_ok(&no_cols, &o);
    check_zero_model(&m, 0, 8);
    float x[3 * 8];
    memset(x, 0xff, sizeof x);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_lsa_project_csr(&m, &no_cols, x, 8, &err), 0);
    assert_true(all_zero(x, 3 * 8));
    dt_lsa_free(&m);

    dt_csr empty_rows = {3, 6, rp3, NULL, NULL};
    m = fit_ok(&empty_rows, &o);
    check_zero_model(&m, 6, 8);
    dt_lsa_free(&m);
}

static void test_all_zero_values(void **state)
{
    (void)state;
    size_t rp[3] = {0, 2, 3};
    uint32_t col[3] = {0, 3, 1};
    float val[3] = {0.0f, -0.0f, 0.0f};
    dt_csr A = {2, 4, rp, col, val};
    dt_lsa m = fit_ok(&A, NULL);
    check_zero_model(&m, 4, 256);
    float *x = project_all(&m, &A);
    assert_true(all_zero(x, 2 * 256));
    free(x);
    dt_lsa_free(&m);
}

static void test_one_by_one(void **state)
{
    (void)state;
    size_t rp[2] = {0, 1};
    uint32_t col[1] = {0};
    float val[1] = {-2.5f};
    dt_csr A = {1, 1, rp, col, val};
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 4;
    dt_lsa m = fit_ok(&A, &o);
    assert_float_equal(m.sigma[0], 2.5f, 1e-6);
    assert_true(all_zero(m.sigma + 1, 3));
    assert_float_equal(m.proj[0], 1.0f, 1e-6);
    assert_true(all_zero(m.proj + 1, 3));
    float x[4];
    dt_lsa_project(&m, col, val, 1, x);
    assert_float_equal(x[0], -1.0f, 1e-6);
    assert_true(all_zero(x + 1, 3));
    dt_lsa_free(&m);
}

static void test_one_row(void **state)
{
    (void)state;
    tmat t = tmat_zeros(1, 50);
    uint64_t s = 41;
    double norm2 = 0;
    for (size_t j = 0; j < 50; j += 3) {
        t.a[j] = rng_small(&s);
        norm2 += t.a[j] * t.a[j];
    }
    dt_csr A = tmat_csr(&t);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 16;
    dt_lsa m = fit_ok(&A, &o);
    assert_true(fabs(m.sigma[0] - sqrt(norm2)) / sqrt(norm2) < 1e-5);
    assert_true(all_zero(m.sigma + 1, 15));
    float *x = project_all(&m, &A);
    assert_true(fabsf(fabsf(x[0]) - 1.0f) < 1e-5f);
    assert_true(all_zero(x + 1, 15));
    /* a query sharing no term with the row projects to zero, not NaN */
    uint32_t qc[2] = {1, 2};
    float qv[2] = {1, 1};
    float q[16];
    dt_lsa_project(&m, qc, qv, 2, q);
    assert_true(all_zero(q, 16));
    free(x);
    dt_lsa_free(&m);
    tmat_free(&t);
}

static void test_rank_one(void **state)
{
    (void)state;
    tmat t = tmat_zeros(20, 30);
    int one[1] = {3};
    add_low_rank(&t, 1, 0.6, 0.5, one, 51);
    dt_csr A = tmat_csr(&t);
    double S[20], U[20 * 20];
    ref_svd(&t, S, U);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 8;
    dt_lsa m = fit_ok(&A, &o);
    assert_true(fabs(m.sigma[0] - S[0]) / S[0] < 1e-5);
    assert_true(all_zero(m.sigma + 1, 7));
    float *x = project_all(&m, &A);
    assert_all_finite(x, 20 * 8);
    size_t i0 = 20;
    for (size_t i = 0; i < 20; i++) {
        if (A.row_ptr[i] == A.row_ptr[i + 1]) {
            assert_true(all_zero(x + i * 8, 8));
            continue;
        }
        if (i0 == 20) i0 = i;
        /* every row is a multiple of the same vector: +-e_0, the sign of its exact left coordinate
         */
        assert_true(fabsf(fabsf(x[i * 8]) - 1.0f) < 1e-5f);
        assert_true(all_zero(x + i * 8 + 1, 7));
        assert_int_equal(x[i * 8] * x[i0 * 8] > 0, U[i * 20] * U[i0 * 20] > 0);
    }
    assert_true(i0 < 20);
    free(x);
    dt_lsa_free(&m);
    tmat_free(&t);
}

/* dim above n_rows or n_cols: the sketch is the whole range, the decomposition is exact. */
static void check_small_side(size_t m, size_t n)
{
    tmat t = tmat_zeros(m, n);
    add_noise(&t, 0.5, 61 + m);
    for (size_t j = 0; j < n; j++)
        t.a[(j % m) * n + j] += 2.0; /* full rank */
    dt_csr A = tmat_csr(&t);
    size_t mn = m < n ? m : n;
    double *S = malloc(mn * sizeof *S), *U = malloc(m * mn * sizeof *U);
    assert_true(S && U);
    ref_svd(&t, S, U);
    size_t r = rank_of(S, mn);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 16;
    o.power_iters = 0;
    dt_lsa mod = fit_ok(&A, &o);
    for (size_t c = 0; c < r; c++)
        assert_true(fabs(mod.sigma[c] - S[c]) / S[c] < 1e-4);
    for (size_t c = r; c < 16; c++)
        assert_true(mod.sigma[c] == 0.0f);
    for (size_t j = 0; j < n; j++)
        assert_true(all_zero(mod.proj + j * 16 + r, 16 - r));
    float *X = project_all(&mod, &A);
    assert_all_finite(X, m * 16);
    double *R = ref_coords(U, S, m, mn, r, 0.0);
    double gap = max_cosine_gap(X, 16, R, r, m, 0.0);
    if (gap >= 1e-4) fail_msg("%zu x %zu: row cosines differ by %.3g", m, n, gap);
    free(X);
    free(R);
    dt_lsa_free(&mod);
    free(S);
    free(U);
    tmat_free(&t);
}

static void test_dim_above_rows(void **state)
{
    (void)state;
    check_small_side(5, 40);
}

static void test_dim_above_cols(void **state)
{
    (void)state;
    check_small_side(40, 5);
}

/* Empty rows and rows of explicit zeros give zero vectors; the other rows are unaffected. */
static void test_zero_rows(void **state)
{
    (void)state;
    const size_t m = 60, n = 70;
    tmat t = tmat_zeros(m, n);
    add_low_rank(&t, 6, 0.5, 0.4, scales, 71);
    for (size_t i = 0; i < m; i += 4)
        memset(t.a + i * n, 0, n * sizeof *t.a);
    dt_csr A = tmat_csr(&t);
    /* append explicit zeros to some empty rows by rebuilding with a padded copy */
    size_t nnz = A.row_ptr[m];
    size_t *rp = malloc((m + 1) * sizeof *rp);
    uint32_t *col = malloc((nnz + m) * sizeof *col);
    float *val = malloc((nnz + m) * sizeof *val);
    assert_true(rp && col && val);
    size_t p = 0;
    rp[0] = 0;
    for (size_t i = 0; i < m; i++) {
        for (size_t q = A.row_ptr[i]; q < A.row_ptr[i + 1]; q++, p++) {
            col[p] = A.col[q];
            val[p] = A.val[q];
        }
        if (i % 8 == 0) {
            col[p] = (uint32_t)(i % n);
            val[p++] = 0.0f;
        }
        rp[i + 1] = p;
    }
    dt_csr B = {m, n, rp, col, val};
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 10;
    dt_lsa ma = fit_ok(&A, &o), mb = fit_ok(&B, &o);
    for (size_t c = 0; c < 10; c++)
        assert_float_equal(ma.sigma[c], mb.sigma[c], 1e-5 * ma.sigma[0]);
    float *x = project_all(&mb, &B);
    assert_all_finite(x, m * 10);
    for (size_t i = 0; i < m; i += 4)
        assert_true(all_zero(x + i * 10, 10));
    for (size_t i = 1; i < m; i++) {
        if (i % 4 == 0 || A.row_ptr[i] == A.row_ptr[i + 1]) continue;
        double s = 0;
        for (size_t c = 0; c < 10; c++)
            s += (double)x[i * 10 + c] * x[i * 10 + c];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    free(x);
    dt_lsa_free(&ma);
    dt_lsa_free(&mb);
    free(rp);
    free(col);
    free(val);
    tmat_free(&t);
}

/* ---- errors ---- */

static void expect_fit_error(const dt_csr *A, const dt_lsa_opts *o, int code, const char *field)
{
    dt_lsa m;
    memset(&m, 0x5a, sizeof m);
    dt_err err = DT_ERR_INIT;
    int rc = dt_lsa_fit(A, o, &m, &err);
    assert_int_equal(rc, -code);
    assert_int_equal(err.code, code);
    assert_string_equal(err.field, field);
    assert_true(err.msg[0] != '\0');
    assert_null(m.proj);
    assert_null(m.sigma);
    dt_lsa_free(&m);
}

static void test_bad_input(void **state)
{
    (void)state;
    size_t rp[3] = {0, 2, 3};
    uint32_t col[3] = {0, 3, 1};
    float val[3] = {1.0f, 2.0f, 3.0f};
    dt_csr A = {2, 4, rp, col, val};
    dt_lsa_opts o = dt_lsa_opts_default();

    dt_csr bad = A;
    bad.n_cols = 3;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.col");
    float nan_val[3] = {1.0f, NAN, 3.0f};
    bad = A;
    bad.val = nan_val;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.val");
    float inf_val[3] = {1.0f, 2.0f, INFINITY};
    bad.val = inf_val;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.val");
    size_t rp_dec[3] = {0, 2, 1};
    bad = A;
    bad.row_ptr = rp_dec;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.row_ptr");
    size_t rp_start[3] = {1, 2, 3};
    bad.row_ptr = rp_start;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.row_ptr");
    bad = A;
    bad.row_ptr = NULL;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.row_ptr");
    bad = A;
    bad.col = NULL;
    expect_fit_error(&bad, &o, DT_EINVAL, "A.col");
    expect_fit_error(NULL, &o, DT_EINVAL, "A");

    dt_lsa_opts bo = o;
    bo.dim = 0;
    expect_fit_error(&A, &bo, DT_EINVAL, "dim");
    bo.dim = DT_DIM_MAX + 1;
    expect_fit_error(&A, &bo, DT_EINVAL, "dim");
    bo = o;
    bo.power_iters = -1;
    expect_fit_error(&A, &bo, DT_EINVAL, "power_iters");
    bo = o;
    bo.sigma_exp = NAN;
    expect_fit_error(&A, &bo, DT_EINVAL, "sigma_exp");
    bo = o;
    bo.oversample = (size_t)-1;
    expect_fit_error(&A, &bo, DT_EINVAL, "oversample");

    dt_lsa m = fit_ok(&A, &o);
    float out[2 * 256];
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_lsa_project_csr(&m, &A, out, 255, &err), -DT_EINVAL);
    assert_string_equal(err.field, "ld");
    bad = A;
    bad.row_ptr = rp_dec;
    assert_int_equal(dt_lsa_project_csr(&m, &bad, out, 256, &err), -DT_EINVAL);
    assert_string_equal(err.field, "A.row_ptr");
    assert_int_equal(dt_lsa_project_csr(&m, &A, NULL, 256, &err), -DT_EINVAL);
    assert_string_equal(err.field, "out");
    dt_lsa_free(&m);

    assert_int_equal(dt_lsa_alloc(&m, 10, 0, &err), -DT_EINVAL);
    assert_string_equal(err.field, "dim");
    assert_int_equal(dt_lsa_alloc(&m, 10, 7, &err), 0);
    check_zero_model(&m, 10, 7);
    dt_lsa_free(&m);
    dt_lsa_free(NULL);
}

/* ---- determinism ---- */

static void test_determinism(void **state)
{
    (void)state;
    const size_t m = 500, n = 800;
    tmat t = tmat_zeros(m, n);
    add_low_rank(&t, 30, 0.1, 0.05, scales, 81);
    add_noise(&t, 0.01, 82);
    dt_csr A = tmat_csr(&t);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = 24;
    o.threads = 1;
    dt_lsa a = fit_ok(&A, &o), b = fit_ok(&A, &o);
    o.threads = 3;
    dt_lsa c = fit_ok(&A, &o);
    o.seed ^= 1;
    dt_lsa d = fit_ok(&A, &o);
    assert_memory_equal(a.proj, b.proj, n * 24 * sizeof(float));
    assert_memory_equal(a.sigma, b.sigma, 24 * sizeof(float));
    assert_memory_equal(a.proj, c.proj, n * 24 * sizeof(float));
    assert_memory_equal(a.sigma, c.sigma, 24 * sizeof(float));
    assert_true(memcmp(a.proj, d.proj, n * 24 * sizeof(float)) != 0);
    for (size_t k = 0; k < 10; k++)
        assert_true(fabs(a.sigma[k] - d.sigma[k]) / a.sigma[k] < 1e-3);
    dt_lsa_free(&a);
    dt_lsa_free(&b);
    dt_lsa_free(&c);
    dt_lsa_free(&d);
    tmat_free(&t);
}

/* ---- projection paths ---- */

static void test_project_paths(void **state)
{
    (void)state;
    const size_t m = 200, n = 300, dim = 20, ld = 23;
    tmat t = tmat_zeros(m, n);
    add_low_rank(&t, 25, 0.2, 0.1, scales, 91);
    add_noise(&t, 0.02, 92);
    dt_csr A = tmat_csr(&t);
    dt_lsa_opts o = dt_lsa_opts_default();
    o.dim = dim;
    o.sigma_exp = 0.5f;
    dt_lsa mod = fit_ok(&A, &o);
    mod.threads = 3;

    /* new documents: A's rows with a few terms unseen at fit time (ids >= n) mixed in */
    size_t nnz = A.row_ptr[m];
    size_t *rp = malloc((m + 1) * sizeof *rp);
    uint32_t *col = malloc((2 * nnz + 1) * sizeof *col);
    float *val = malloc((2 * nnz + 1) * sizeof *val);
    assert_true(rp && col && val);
    size_t p = 0;
    rp[0] = 0;
    uint64_t s = 93;
    for (size_t i = 0; i < m; i++) {
        for (size_t q = A.row_ptr[i]; q < A.row_ptr[i + 1]; q++) {
            if (q % 7 == 3) {
                col[p] = (uint32_t)(n + rng_next(&s) % 1000);
                val[p++] = 5.0f;
            }
            col[p] = A.col[q];
            val[p++] = A.val[q];
        }
        rp[i + 1] = p;
    }
    dt_csr B = {m, n + 1000, rp, col, val};
    float *X = malloc(m * ld * sizeof *X);
    assert_non_null(X);
    for (size_t k = 0; k < m * ld; k++)
        X[k] = -7.0f;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_lsa_project_csr(&mod, &B, X, ld, &err), 0);
    float one[20], plain[20];
    for (size_t i = 0; i < m; i++) {
        for (size_t c = dim; c < ld; c++)
            assert_true(X[i * ld + c] == -7.0f);
        size_t len = rp[i + 1] - rp[i];
        dt_lsa_project(&mod, len ? col + rp[i] : NULL, len ? val + rp[i] : NULL, len, one);
        assert_memory_equal(one, X + i * ld, dim * sizeof(float));
        /* unseen terms are ignored: same bits as the row without them */
        size_t alen = A.row_ptr[i + 1] - A.row_ptr[i];
        dt_lsa_project(&mod, alen ? A.col + A.row_ptr[i] : NULL, alen ? A.val + A.row_ptr[i] : NULL,
                       alen, plain);
        assert_memory_equal(one, plain, dim * sizeof(float));
        /* against a sum in double */
        double ref[20] = {0}, norm = 0;
        for (size_t q = A.row_ptr[i]; q < A.row_ptr[i + 1]; q++)
            for (size_t c = 0; c < dim; c++)
                ref[c] += (double)A.val[q] * mod.proj[(size_t)A.col[q] * dim + c];
        for (size_t c = 0; c < dim; c++)
            norm += ref[c] * ref[c];
        norm = sqrt(norm);
        for (size_t c = 0; c < dim; c++) {
            double want = norm > 0 ? ref[c] / norm : 0.0;
            if (fabs(one[c] - want) > 1e-5)
                fail_msg("row %zu dim %zu: %.9g vs %.9g", i, c, one[c], want);
        }
    }
    /* one thread gives the same bits */
    float *X1 = malloc(m * ld * sizeof *X1);
    assert_non_null(X1);
    memcpy(X1, X, m * ld * sizeof *X1);
    mod.threads = 1;
    assert_int_equal(dt_lsa_project_csr(&mod, &B, X1, ld, &err), 0);
    assert_memory_equal(X, X1, m * ld * sizeof *X1);

    /* non-finite sums become zero vectors */
    uint32_t qc[2] = {A.col[0], A.col[0]};
    float qv[2] = {INFINITY, 1.0f};
    dt_lsa_project(&mod, qc, qv, 2, one);
    assert_true(all_zero(one, dim));
    free(X);
    free(X1);
    free(rp);
    free(col);
    free(val);
    dt_lsa_free(&mod);
    tmat_free(&t);
}

/* A Cranfield-sized fit (1,400 documents, 8,000 terms, Zipf-like term use) at the default
 * dimension. */
static void test_collection_sized(void **state)
{
    (void)state;
    const size_t m = 1400, n = 8000, per = 60;
    size_t *rp = malloc((m + 1) * sizeof *rp);
    uint32_t *col = malloc(m * per * sizeof *col);
    float *val = malloc(m * per * sizeof *val);
    assert_true(rp && col && val);
    uint64_t s = 101;
    rp[0] = 0;
    for (size_t i = 0; i < m; i++) {
        for (size_t q = 0; q < per; q++) {
            size_t c = (size_t)pow((double)n, rng_unit(&s)) - 1;
            col[i * per + q] = (uint32_t)(c < n ? c : n - 1);
            val[i * per + q] = (float)(0.2 + rng_unit(&s));
        }
        rp[i + 1] = (i + 1) * per;
    }
    dt_csr A = {m, n, rp, col, val};
    dt_lsa mod = fit_ok(&A, NULL);
    assert_int_equal(mod.dim, 256);
    for (size_t c = 0; c < 256; c++)
        assert_true(mod.sigma[c] > 0.0f);
    for (size_t c = 0; c + 1 < 256; c++)
        assert_true(mod.sigma[c] >= mod.sigma[c + 1]);
    assert_all_finite(mod.proj, n * 256);
    float *X = project_all(&mod, &A);
    assert_all_finite(X, m * 256);
    free(X);
    dt_lsa_free(&mod);
    free(rp);
    free(col);
    free(val);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_rank_below_dim),
        cmocka_unit_test(test_exact_rank_equal_dim),
        cmocka_unit_test(test_exact_rank_many),
        cmocka_unit_test(test_exact_rank_wide_spread),
        cmocka_unit_test(test_truncated_subspace),
        cmocka_unit_test(test_flat_spectrum_bounds),
        cmocka_unit_test(test_sigma_exp_scales_columns),
        cmocka_unit_test(test_empty_matrices),
        cmocka_unit_test(test_all_zero_values),
        cmocka_unit_test(test_one_by_one),
        cmocka_unit_test(test_one_row),
        cmocka_unit_test(test_rank_one),
        cmocka_unit_test(test_dim_above_rows),
        cmocka_unit_test(test_dim_above_cols),
        cmocka_unit_test(test_zero_rows),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_project_paths),
        cmocka_unit_test(test_collection_sized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
