/* test_topk.c - dt_topk_ip against a brute-force scalar top-k.
 *
 * Most data lies on the grid {-2, -1, 0, 1, 2} / 4, where every dot product is exact in float (and
 * in the double accumulation of the reference), so ties are real and the expected order is fully
 * determined: (score descending, row ascending). Random-float data checks that the result does not
 * depend on threads or block sizes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

static float grid_value(uint64_t *s)
{
    return (float)((int)rng_below(s, 5) - 2) / 4.0f;
}

static float *grid_matrix(uint64_t *s, size_t rows, size_t cols, size_t ld, float pad)
{
    float *a = malloc((rows * ld + 1) * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++)
            a[i * ld + j] = j < cols ? grid_value(s) : pad;
    return a;
}

static uint64_t *random_bitmap(uint64_t *s, size_t n, unsigned per_mille)
{
    size_t words = (n + 63) / 64 + 1;
    uint64_t *b = calloc(words, sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        if (rng_below(s, 1000) < per_mille) b[i / 64] |= UINT64_C(1) << (i % 64);
    /* bits past n must be ignored */
    b[words - 1] = ~UINT64_C(0);
    if (n % 64) b[n / 64] |= ~((UINT64_C(1) << (n % 64)) - 1);
    return b;
}

static int hit_cmp(const void *pa, const void *pb)
{
    const dt_hit *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

/* The reference: double accumulation, the adjust callback over the whole score matrix at once,
 * then a full sort of every usable, allowed score. */
static void brute_topk(const float *X, size_t n, size_t d, size_t ldx, const float *Q, size_t m,
                       size_t k, const uint64_t *allow, dt_topk_adjust_fn adjust, void *ud,
                       dt_hit *out, size_t *n_out)
{
    float *S = malloc((m * n + 1) * sizeof *S);
    dt_hit *cand = malloc((n ? n : 1) * sizeof *cand);
    assert_non_null(S);
    assert_non_null(cand);
    for (size_t q = 0; q < m; q++)
        for (size_t r = 0; r < n; r++) {
            double acc = 0;
            for (size_t t = 0; t < d; t++)
                acc += (double)Q[q * d + t] * (double)X[r * ldx + t];
            S[q * n + r] = (float)acc;
        }
    if (adjust && m && n) adjust(ud, 0, m, 0, n, S, n);
    for (size_t q = 0; q < m; q++) {
        size_t c = 0;
        for (size_t r = 0; r < n; r++) {
            float s = S[q * n + r];
            if (allow && !((allow[r / 64] >> (r % 64)) & 1)) continue;
            if (isnan(s) || s == -INFINITY) continue;
            cand[c++] = (dt_hit){s, (uint32_t)r};
        }
        qsort(cand, c, sizeof *cand, hit_cmp);
        n_out[q] = c < k ? c : k;
        memcpy(out + q * k, cand, n_out[q] * sizeof *cand);
    }
    free(S);
    free(cand);
}

static void expect_same(const dt_hit *want, const size_t *want_n, const dt_hit *got,
                        const size_t *got_n, size_t m, size_t k, const char *what)
{
    for (size_t q = 0; q < m; q++) {
        if (want_n[q] != got_n[q]) {
            print_error("%s: query %zu: %zu hits, expected %zu\n", what, q, got_n[q], want_n[q]);
            fail();
        }
        for (size_t c = 0; c < want_n[q]; c++) {
            dt_hit w = want[q * k + c], g = got[q * k + c];
            if (w.row != g.row || w.score != g.score) {
                print_error("%s: query %zu rank %zu: got (%g, row %u), expected (%g, row %u)\n",
                            what, q, c, (double)g.score, g.row, (double)w.score, w.row);
                fail();
            }
        }
        for (size_t c = got_n[q]; c < k; c++) {
            assert_true(got[q * k + c].row == UINT32_MAX);
            assert_true(got[q * k + c].score == -INFINITY);
        }
    }
}

typedef struct check_case {
    size_t n, d, ldx, m, k;
    const uint64_t *allow;
    int threads;
    size_t block_rows, block_queries;
    dt_topk_adjust_fn adjust;
    void *ud;
} check_case;

/* Runs dt_topk_ip and the reference on the same inputs and compares everything. */
static void check_against_brute(const float *X, const float *Q, const check_case *c,
                                const char *what)
{
    size_t mk = c->m * c->k + 1;
    dt_hit *want = malloc(mk * sizeof *want), *got = malloc(mk * sizeof *got);
    size_t *want_n = calloc(c->m + 1, sizeof *want_n), *got_n = calloc(c->m + 1, sizeof *got_n);
    assert_non_null(want);
    assert_non_null(got);
    assert_non_null(want_n);
    assert_non_null(got_n);
    for (size_t i = 0; i < mk; i++)
        got[i] = (dt_hit){12345.0f, 777};
    dt_topk_opts o = DT_TOPK_OPTS_INIT;
    o.threads = c->threads;
    o.block_rows = c->block_rows;
    o.block_queries = c->block_queries;
    o.allow = c->allow;
    o.adjust = c->adjust;
    o.adjust_ud = c->ud;
    dt_err err = DT_ERR_INIT;
    int rc = dt_topk_ip(X, c->n, c->d, c->ldx, Q, c->m, c->k, &o, got, got_n, &err);
    if (rc) {
        print_error("%s: rc %d field '%s': %s\n", what, rc, err.field, err.msg);
        fail();
    }
    brute_topk(X, c->n, c->d, c->ldx, Q, c->m, c->k, c->allow, c->adjust, c->ud, want, want_n);
    expect_same(want, want_n, got, got_n, c->m, c->k, what);
    free(want);
    free(got);
    free(want_n);
    free(got_n);
}

static void test_grid_random_shapes(void **state)
{
    (void)state;
    static const size_t ns[] = {1, 2, 63, 64, 65, 129, 300, 1000};
    static const size_t ds[] = {1, 3, 7, 16, 33};
    static const size_t ms[] = {1, 2, 3, 5, 17, 40};
    static const size_t ks[] = {1, 2, 5, 10, 64, 5000};
    static const size_t brs[] = {0, 1, 64, 128, 100000};
    static const size_t bqs[] = {0, 1, 4, 7};
    uint64_t s = 1;
    for (int it = 0; it < 300; it++) {
        check_case c = {0};
        c.n = ns[rng_below(&s, sizeof ns / sizeof ns[0])];
        c.d = ds[rng_below(&s, sizeof ds / sizeof ds[0])];
        c.ldx = c.d + (rng_below(&s, 3) == 0 ? rng_below(&s, 5) : 0);
        c.m = ms[rng_below(&s, sizeof ms / sizeof ms[0])];
        c.k = ks[rng_below(&s, sizeof ks / sizeof ks[0])];
        c.threads = (int)rng_below(&s, 4);
        c.block_rows = brs[rng_below(&s, sizeof brs / sizeof brs[0])];
        c.block_queries = bqs[rng_below(&s, sizeof bqs / sizeof bqs[0])];
        float *X = grid_matrix(&s, c.n, c.d, c.ldx, NAN);
        float *Q = grid_matrix(&s, c.m, c.d, c.d, 0);
        char what[160];
        snprintf(what, sizeof what, "case %d n=%zu d=%zu ldx=%zu m=%zu k=%zu t=%d br=%zu bq=%zu",
                 it, c.n, c.d, c.ldx, c.m, c.k, c.threads, c.block_rows, c.block_queries);
        check_against_brute(X, Q, &c, what);
        free(X);
        free(Q);
    }
}

static void test_threads_and_blocks(void **state)
{
    (void)state;
    uint64_t s = 2;
    size_t n = 1000, d = 16, m = 9, k = 7;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, m, d, d, 0);
    for (int t = 1; t <= 3; t++)
        for (size_t br = 64; br <= 1024; br *= 4)
            for (size_t mm = 1; mm <= m; mm += 4) {
                check_case c = {
                    .n = n, .d = d, .ldx = d, .m = mm, .k = k, .threads = t, .block_rows = br};
                char what[96];
                snprintf(what, sizeof what, "threads=%d block_rows=%zu m=%zu", t, br, mm);
                check_against_brute(X, Q, &c, what);
            }
    free(X);
    free(Q);
}

static void test_all_tied(void **state)
{
    (void)state;
    size_t n = 700, d = 5, m = 4, k = 50;
    float *X = malloc(n * d * sizeof *X), *Q = malloc(m * d * sizeof *Q);
    assert_non_null(X);
    assert_non_null(Q);
    for (size_t i = 0; i < n * d; i++)
        X[i] = 0.5f;
    for (size_t i = 0; i < m * d; i++)
        Q[i] = 1.0f;
    dt_hit out[4 * 50];
    size_t n_out[4];
    for (int t = 1; t <= 3; t++) {
        dt_topk_opts o = DT_TOPK_OPTS_INIT;
        o.threads = t;
        o.block_rows = 64;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_topk_ip(X, n, d, d, Q, m, k, &o, out, n_out, &err), 0);
        for (size_t q = 0; q < m; q++) {
            assert_int_equal(n_out[q], k);
            for (size_t c = 0; c < k; c++) {
                assert_true(out[q * k + c].score == 2.5f);
                assert_int_equal(out[q * k + c].row, c);
            }
        }
    }
    free(X);
    free(Q);
}

static void test_allow_bitmaps(void **state)
{
    (void)state;
    uint64_t s = 3;
    size_t n = 2000, d = 8;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, 20, d, d, 0);
    static const unsigned densities[] = {0, 1, 5, 50, 120, 500, 990, 1000};
    for (size_t di = 0; di < sizeof densities / sizeof densities[0]; di++) {
        uint64_t *allow = random_bitmap(&s, n, densities[di]);
        static const size_t ks[] = {1, 10, 100, 3000};
        for (size_t ki = 0; ki < 4; ki++)
            for (size_t m = 1; m <= 20; m += 19)
                for (int t = 1; t <= 3; t += 2) {
                    check_case c = {.n = n,
                                    .d = d,
                                    .ldx = d,
                                    .m = m,
                                    .k = ks[ki],
                                    .threads = t,
                                    .block_rows = 128,
                                    .allow = allow};
                    char what[96];
                    snprintf(what, sizeof what, "allow %u/1000 k=%zu m=%zu threads=%d",
                             densities[di], ks[ki], m, t);
                    check_against_brute(X, Q, &c, what);
                }
        free(allow);
    }

    /* whole blocks empty, the rest dense: blocks are skipped or trimmed */
    uint64_t *allow = calloc((n + 63) / 64, sizeof *allow);
    assert_non_null(allow);
    for (size_t r = 0; r < n; r++)
        if ((r / 256) % 3 == 1 || r == 5 || r == n - 1) allow[r / 64] |= UINT64_C(1) << (r % 64);
    for (size_t br = 0; br <= 512; br += 256) {
        check_case c = {.n = n,
                        .d = d,
                        .ldx = d,
                        .m = 20,
                        .k = 30,
                        .threads = 2,
                        .block_rows = br,
                        .allow = allow};
        check_against_brute(X, Q, &c, "clustered allow");
    }
    free(allow);
    free(X);
    free(Q);
}

static void test_empty_allow_and_k_beyond(void **state)
{
    (void)state;
    uint64_t s = 4;
    size_t n = 300, d = 4, m = 3, k = 8;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, m, d, d, 0);
    uint64_t allow[5] = {0};
    dt_hit out[3 * 8];
    size_t n_out[3] = {9, 9, 9};
    dt_topk_opts o = DT_TOPK_OPTS_INIT;
    o.allow = allow;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_topk_ip(X, n, d, d, Q, m, k, &o, out, n_out, &err), 0);
    for (size_t q = 0; q < m; q++) {
        assert_int_equal(n_out[q], 0);
        for (size_t c = 0; c < k; c++)
            assert_int_equal(out[q * k + c].row, UINT32_MAX);
    }

    /* three rows allowed, k = 8: exactly those three, best first */
    allow[0] = UINT64_C(1) << 7;
    allow[2] = UINT64_C(1) << 1;
    allow[4] = UINT64_C(1) << 43; /* row 299 */
    for (int t = 1; t <= 3; t++) {
        check_case c = {.n = n,
                        .d = d,
                        .ldx = d,
                        .m = m,
                        .k = k,
                        .threads = t,
                        .block_rows = 64,
                        .allow = allow};
        check_against_brute(X, Q, &c, "three allowed");
        assert_int_equal(dt_topk_ip(X, n, d, d, Q, m, k, &o, out, n_out, &err), 0);
        for (size_t q = 0; q < m; q++)
            assert_int_equal(n_out[q], 3);
    }
    free(X);
    free(Q);
}

static void test_degenerate_sizes(void **state)
{
    (void)state;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float qv[4] = {1, 1, 1, 1};
    dt_hit out[8];
    size_t n_out[2] = {77, 77};
    dt_err err = DT_ERR_INIT;

    /* k = 0: nothing written to out, counts are 0 */
    assert_int_equal(dt_topk_ip(x, 2, 4, 4, qv, 1, 0, NULL, NULL, n_out, &err), 0);
    assert_int_equal(n_out[0], 0);

    /* m = 0: nothing at all, NULL buffers are fine */
    assert_int_equal(dt_topk_ip(x, 2, 4, 4, NULL, 0, 5, NULL, NULL, NULL, &err), 0);

    /* n = 0: no hits, sentinel slots */
    n_out[0] = 77;
    assert_int_equal(dt_topk_ip(NULL, 0, 4, 4, qv, 1, 3, NULL, out, n_out, &err), 0);
    assert_int_equal(n_out[0], 0);
    for (int c = 0; c < 3; c++) {
        assert_int_equal(out[c].row, UINT32_MAX);
        assert_true(out[c].score == -INFINITY);
    }

    /* k > n: all rows, best first */
    assert_int_equal(dt_topk_ip(x, 2, 4, 4, qv, 1, 8, NULL, out, n_out, &err), 0);
    assert_int_equal(n_out[0], 2);
    assert_int_equal(out[0].row, 1);
    assert_true(out[0].score == 26.0f);
    assert_int_equal(out[1].row, 0);
    assert_true(out[1].score == 10.0f);
    assert_int_equal(out[2].row, UINT32_MAX);
}

typedef struct adjust_ud {
    size_t m, n;
    atomic_uint *calls; /* m * n counters, or NULL */
    atomic_int bad;     /* set when a call's arguments are out of range */
} adjust_ud;

/* Drops rows r % 7 == 3, boosts rows r % 11 == 5 for even queries, makes (q + r) % 13 == 0 NaN.
 * Depends only on (query, row, score), so the reference may apply it to the whole matrix. */
static void adjust_drop_boost(void *ud, size_t q0, size_t mq, size_t row0, size_t nrows,
                              float *scores, size_t ld)
{
    adjust_ud *a = ud;
    if (q0 + mq > a->m || row0 + nrows > a->n || ld < nrows || mq == 0 || nrows == 0)
        atomic_store(&a->bad, 1);
    for (size_t i = 0; i < mq; i++)
        for (size_t j = 0; j < nrows; j++) {
            size_t q = q0 + i, r = row0 + j;
            float *p = &scores[i * ld + j];
            if (r % 7 == 3)
                *p = -INFINITY;
            else if (r % 11 == 5 && q % 2 == 0)
                *p += 1.5f;
            else if ((q + r) % 13 == 0)
                *p = NAN;
            if (a->calls) atomic_fetch_add(&a->calls[q * a->n + r], 1);
        }
}

static void test_adjust_callback(void **state)
{
    (void)state;
    uint64_t s = 5;
    size_t n = 1500, d = 12;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, 30, d, d, 0);
    adjust_ud ref = {.m = 30, .n = n};
    for (size_t m = 1; m <= 30; m += 29)
        for (int t = 1; t <= 3; t++)
            for (size_t bq = 0; bq <= 8; bq += 8) {
                adjust_ud a = {.m = m, .n = n};
                a.calls = calloc(m * n, sizeof *a.calls);
                assert_non_null(a.calls);
                atomic_init(&a.bad, 0);
                dt_hit *out = malloc(m * 10 * sizeof *out);
                size_t *n_out = malloc(m * sizeof *n_out);
                assert_non_null(out);
                assert_non_null(n_out);
                dt_topk_opts o = DT_TOPK_OPTS_INIT;
                o.threads = t;
                o.block_rows = 192;
                o.block_queries = bq;
                o.adjust = adjust_drop_boost;
                o.adjust_ud = &a;
                dt_err err = DT_ERR_INIT;
                assert_int_equal(dt_topk_ip(X, n, d, d, Q, m, 10, &o, out, n_out, &err), 0);
                assert_int_equal(atomic_load(&a.bad), 0);
                for (size_t i = 0; i < m * n; i++)
                    assert_int_equal(atomic_load(&a.calls[i]), 1);
                for (size_t q = 0; q < m; q++)
                    for (size_t c = 0; c < n_out[q]; c++) {
                        assert_true(out[q * 10 + c].row % 7 != 3);
                        assert_false(isnan(out[q * 10 + c].score));
                    }
                free(a.calls);
                free(out);
                free(n_out);

                ref.m = m;
                check_case c = {.n = n,
                                .d = d,
                                .ldx = d,
                                .m = m,
                                .k = 10,
                                .threads = t,
                                .block_rows = 192,
                                .block_queries = bq,
                                .adjust = adjust_drop_boost,
                                .ud = &ref};
                check_against_brute(X, Q, &c, "adjust");
            }

    /* with an allow bitmap too: sparse and dense blocks */
    uint64_t *allow = random_bitmap(&s, n, 100);
    for (size_t r = 0; r < 640; r++)
        allow[r / 64] |= UINT64_C(1) << (r % 64);
    ref.m = 30;
    check_case c = {.n = n,
                    .d = d,
                    .ldx = d,
                    .m = 30,
                    .k = 25,
                    .threads = 2,
                    .block_rows = 128,
                    .allow = allow,
                    .adjust = adjust_drop_boost,
                    .ud = &ref};
    check_against_brute(X, Q, &c, "adjust + allow");
    free(allow);
    free(X);
    free(Q);
}

static void test_nan_rows_and_stride(void **state)
{
    (void)state;
    uint64_t s = 6;
    size_t n = 900, d = 10, ldx = 13;
    float *X = grid_matrix(&s, n, d, ldx, NAN);
    float *Q = grid_matrix(&s, 24, d, d, 0);
    for (size_t r = 0; r < n; r += 1 + rng_below(&s, 40))
        X[r * ldx + rng_below(&s, d)] = NAN;
    for (size_t r = 100; r < 164; r++) /* a whole bitmap word of NaN rows */
        X[r * ldx] = NAN;
    for (size_t m = 1; m <= 24; m += 23)
        for (int t = 1; t <= 3; t++)
            for (size_t br = 64; br <= 256; br *= 4) {
                check_case c = {
                    .n = n, .d = d, .ldx = ldx, .m = m, .k = 12, .threads = t, .block_rows = br};
                check_against_brute(X, Q, &c, "NaN rows, ldx > d");
            }
    /* every row NaN: nothing is returned */
    for (size_t r = 0; r < n; r++)
        X[r * ldx + 1] = NAN;
    check_case c = {.n = n, .d = d, .ldx = ldx, .m = 24, .k = 5, .threads = 2};
    check_against_brute(X, Q, &c, "all rows NaN");
    free(X);
    free(Q);
}

static void test_larger_automatic_blocks(void **state)
{
    (void)state;
    uint64_t s = 7;
    size_t n = 20000, d = 64;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, 1030, d, d, 0);
    static const size_t ms[] = {1, 2, 40};
    for (size_t i = 0; i < 3; i++) {
        check_case c = {.n = n, .d = d, .ldx = d, .m = ms[i], .k = 10, .threads = 2};
        check_against_brute(X, Q, &c, "automatic blocks");
    }
    /* more queries than one automatic query tile */
    check_case c = {.n = 300, .d = d, .ldx = d, .m = 1030, .k = 3, .threads = 2};
    check_against_brute(X, Q, &c, "query tiles");
    free(X);
    free(Q);
}

/* A dimension so large that one automatic block would hold less than a row. */
static void test_large_dimension(void **state)
{
    (void)state;
    uint64_t s = 9;
    size_t n = 70, d = 300000;
    float *X = grid_matrix(&s, n, d, d, 0);
    float *Q = grid_matrix(&s, 5, d, d, 0);
    for (size_t m = 1; m <= 5; m += 4) {
        check_case c = {.n = n, .d = d, .ldx = d, .m = m, .k = 4, .threads = 2};
        check_against_brute(X, Q, &c, "d = 300000");
    }
    free(X);
    free(Q);
}

/* Runs dt_topk_ip and fails on an error; returns nothing, fills out / n_out. */
static void topk_ok(const float *X, size_t n, size_t d, const float *Q, size_t m, size_t k,
                    const dt_topk_opts *o, dt_hit *out, size_t *n_out)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_topk_ip(X, n, d, d, Q, m, k, o, out, n_out, &err);
    if (rc) {
        print_error("rc %d field '%s': %s\n", rc, err.field, err.msg);
        fail();
    }
}

/* On random floats, scores round differently with the block geometry; for one geometry the result
 * must not depend on threads or on the allow bitmap. Taking k = n returns every row's score as the
 * engine computed it, which is the oracle for the smaller k and the filtered runs. */
static void test_deterministic_random_floats(void **state)
{
    (void)state;
    uint64_t s = 8;
    size_t n = 5000, d = 48, k = 10;
    float *X = malloc(n * d * sizeof *X), *Q = malloc(64 * d * sizeof *Q);
    assert_non_null(X);
    assert_non_null(Q);
    for (size_t i = 0; i < n * d; i++)
        X[i] = (float)((double)rng_next(&s) / 18446744073709551616.0 - 0.5);
    for (size_t i = 0; i < 64 * d; i++)
        Q[i] = (float)((double)rng_next(&s) / 18446744073709551616.0 - 0.5);
    X[17 * d + 3] = NAN;
    uint64_t *allows[2] = {random_bitmap(&s, n, 300), random_bitmap(&s, n, 60)};
    static const size_t ms[] = {1, 2, 64};
    static const size_t brs[] = {0, 64, 448, 4096};
    for (size_t mi = 0; mi < 3; mi++)
        for (size_t bi = 0; bi < 4; bi++)
            for (size_t bq = 0; bq <= 5; bq += 5) {
                size_t m = ms[mi];
                const uint64_t *allow = allows[bi % 2]; /* dense and sparse blocks */
                dt_hit *all = malloc(m * n * sizeof *all), *out = malloc(m * k * sizeof *out);
                dt_hit *want = malloc(m * k * sizeof *want);
                size_t *all_n = malloc(m * sizeof *all_n), *n_out = malloc(m * sizeof *n_out);
                size_t *want_n = malloc(m * sizeof *want_n);
                assert_true(all && out && want && all_n && n_out && want_n);
                dt_topk_opts o = DT_TOPK_OPTS_INIT;
                o.block_rows = brs[bi];
                o.block_queries = bq;
                o.threads = 1;
                topk_ok(X, n, d, Q, m, n, &o, all, all_n);
                for (size_t q = 0; q < m; q++) {
                    assert_int_equal(all_n[q], n - 1); /* the NaN row is never returned */
                    want_n[q] = k;
                    memcpy(want + q * k, all + q * n, k * sizeof *want);
                    /* the scores are the true dot products up to float rounding */
                    for (size_t c = 0; c < n - 1; c++) {
                        const dt_hit h = all[q * n + c];
                        double acc = 0;
                        for (size_t t = 0; t < d; t++)
                            acc += (double)Q[q * d + t] * X[h.row * d + t];
                        assert_true(fabs(acc - h.score) < 1e-5);
                        if (c) assert_true(hit_cmp(&all[q * n + c - 1], &h) < 0);
                    }
                }
                for (int t = 1; t <= 3; t++) {
                    o.threads = t;
                    o.allow = NULL;
                    topk_ok(X, n, d, Q, m, k, &o, out, n_out);
                    expect_same(want, want_n, out, n_out, m, k, "random floats, k < n");
                    o.allow = allow;
                    topk_ok(X, n, d, Q, m, k, &o, out, n_out);
                    for (size_t q = 0; q < m; q++) {
                        size_t c = 0;
                        for (size_t i = 0; i < all_n[q] && c < k; i++) {
                            uint32_t r = all[q * n + i].row;
                            if ((allow[r / 64] >> (r % 64)) & 1) want[q * k + c++] = all[q * n + i];
                        }
                        want_n[q] = c;
                    }
                    expect_same(want, want_n, out, n_out, m, k, "random floats, filtered");
                    for (size_t q = 0; q < m; q++) {
                        want_n[q] = k;
                        memcpy(want + q * k, all + q * n, k * sizeof *want);
                    }
                }
                free(all);
                free(out);
                free(want);
                free(all_n);
                free(n_out);
                free(want_n);
            }
    free(allows[0]);
    free(allows[1]);
    free(X);
    free(Q);
}

static void test_errors(void **state)
{
    (void)state;
    float x[4] = {0}, qv[4] = {0};
    dt_hit out[4];
    size_t n_out[2];
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_topk_ip(x, 1, 0, 0, qv, 1, 1, NULL, out, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "d");
    assert_int_equal(dt_topk_ip(x, 1, 4, 3, qv, 1, 1, NULL, out, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "ldx");
    assert_int_equal(dt_topk_ip(NULL, 1, 4, 4, qv, 1, 1, NULL, out, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "X");
    assert_int_equal(dt_topk_ip(x, 1, 4, 4, NULL, 1, 1, NULL, out, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "Q");
    assert_int_equal(dt_topk_ip(x, 1, 4, 4, qv, 1, 1, NULL, NULL, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "out");
    assert_int_equal(dt_topk_ip(x, 1, 4, 4, qv, 1, 1, NULL, out, NULL, &err), -DT_EINVAL);
    assert_string_equal(err.field, "n_out");
    dt_topk_opts o = DT_TOPK_OPTS_INIT;
    o.threads = -1;
    assert_int_equal(dt_topk_ip(x, 1, 4, 4, qv, 1, 1, &o, out, n_out, &err), -DT_EINVAL);
    assert_string_equal(err.field, "threads");
    assert_int_equal(err.code, DT_EINVAL);
    assert_true(strlen(err.msg) > 0);
    /* limits are checked before any row is read */
    assert_int_equal(dt_topk_ip(x, (size_t)UINT32_MAX + 2, 4, 4, qv, 1, 1, NULL, out, n_out, &err),
                     -DT_ELIMIT);
    assert_string_equal(err.field, "n");
    assert_int_equal(dt_topk_ip(x, 1, 4, 4, qv, 2, SIZE_MAX / 2 + 1, NULL, out, n_out, &err),
                     -DT_ELIMIT);
    assert_string_equal(err.field, "k");
    assert_int_equal(dt_topk_ip(x, 1, 4, (size_t)INT32_MAX + 1, qv, 1, 1, NULL, out, n_out, &err),
                     -DT_ELIMIT);
    /* a NULL err is fine */
    assert_int_equal(dt_topk_ip(x, 1, 0, 0, qv, 1, 1, NULL, out, n_out, NULL), -DT_EINVAL);
}

static void test_blas_single(void **state)
{
    (void)state;
    int before = openblas_get_num_threads();
    int prev = dt_topk_blas_single();
    assert_int_equal(prev, before);
    assert_int_equal(openblas_get_num_threads(), 1);
    openblas_set_num_threads(prev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_random_shapes),
        cmocka_unit_test(test_threads_and_blocks),
        cmocka_unit_test(test_all_tied),
        cmocka_unit_test(test_allow_bitmaps),
        cmocka_unit_test(test_empty_allow_and_k_beyond),
        cmocka_unit_test(test_degenerate_sizes),
        cmocka_unit_test(test_adjust_callback),
        cmocka_unit_test(test_nan_rows_and_stride),
        cmocka_unit_test(test_larger_automatic_blocks),
        cmocka_unit_test(test_large_dimension),
        cmocka_unit_test(test_deterministic_random_floats),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_blas_single),
    };
    int prev = dt_topk_blas_single();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    openblas_set_num_threads(prev);
    return rc;
}
