/* bench_topk.c - how fast is exact top-k (dt_topk_ip) against the machine's own sgemm?
 *
 * For each n and batch size m: random unit vectors (fixed seed) X (n x d) and Q (m x d); the best
 * of several timed dt_topk_ip runs after a warm-up, and the best of several runs of plain
 * cblas_sgemm with OpenBLAS's own threads computing Q X^T into a buffer (in slices of at most 1 GiB
 * of output when Q X^T is larger; same M and K, the rows of X split). Prints queries per second and
 * GFLOP/s (2 m n d per batch) for both. The two are timed alternately; run with
 * OPENBLAS_THREAD_TIMEOUT=4 so OpenBLAS's idle threads do not poll through the next run.
 *
 * With --dir, also writes X, Q and our top-k row ids as .npy files under DIR/n<N>/ and a summary
 * DIR/ours.tsv, for bench/faiss_peer.py (run both with bench/topk.sh). Not a correctness test.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "topk.h"

typedef struct bench_cfg {
    size_t ns[8], n_ns;
    size_t ms[8], n_ms;
    size_t d, k;
    int runs;
    double min_time;
    const char *dir;
    dt_topk_opts opts;
} bench_cfg;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* rows x d unit vectors: uniform in [-1, 1)^d, normalised. */
static float *unit_vectors(size_t rows, size_t d, uint64_t seed)
{
    float *a = dt_topk_alloc(rows * d * sizeof(float));
    if (!a) return NULL;
    for (size_t i = 0; i < rows; i++) {
        float *r = a + i * d;
        double norm = 0;
        for (size_t j = 0; j < d; j++) {
            r[j] = (float)((double)(splitmix(&seed) >> 11) * 0x1p-52 - 1.0);
            norm += (double)r[j] * r[j];
        }
        float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
        for (size_t j = 0; j < d; j++)
            r[j] *= inv;
    }
    return a;
}

/* Writes a C-order .npy array; descr is "<f4" or "<i8". */
static int write_npy(const char *path, const char *descr, size_t rows, size_t cols,
                     const void *data, size_t elem)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bench_topk: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                       rows, cols);
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    size_t hlen = (size_t)len + pad + 1;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, elem, rows * cols, f) == rows * cols;
    if (fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "bench_topk: write error on %s\n", path);
    return ok ? 0 : -1;
}

/* Times two workloads alternately (so both see the same machine load): one warm-up each, then
 * rounds of one run each, at least cfg->runs rounds and until min_time has passed (at most 50);
 * stores the best time of each in seconds. 0, or -1 when a run failed. */
typedef int (*bench_fn)(void *arg);
static int best_times(const bench_cfg *cfg, bench_fn fa, void *a, double *ta, bench_fn fb, void *b,
                      double *tb)
{
    if (fa(a) || fb(b)) return -1;
    *ta = *tb = INFINITY;
    double start = now_s();
    for (int r = 0; r < 50; r++) {
        if (r >= cfg->runs && now_s() - start >= cfg->min_time) break;
        double t = now_s();
        if (fa(a)) return -1;
        t = now_s() - t;
        if (t < *ta) *ta = t;
        t = now_s();
        if (fb(b)) return -1;
        t = now_s() - t;
        if (t < *tb) *tb = t;
    }
    return 0;
}

typedef struct topk_arg {
    const bench_cfg *cfg;
    const float *X, *Q;
    size_t n, m;
    dt_hit *out;
    size_t *n_out;
} topk_arg;

static int run_topk(void *p)
{
    topk_arg *a = p;
    dt_err err = DT_ERR_INIT;
    int rc = dt_topk_ip(a->X, a->n, a->cfg->d, a->cfg->d, a->Q, a->m, a->cfg->k, &a->cfg->opts,
                        a->out, a->n_out, &err);
    if (rc) fprintf(stderr, "bench_topk: dt_topk_ip: %s: %s\n", err.field, err.msg);
    return rc;
}

typedef struct gemm_arg {
    const float *X, *Q;
    size_t n, m, d, slice;
    float *C;
    int threads;
} gemm_arg;

/* Plain multithreaded sgemm; leaves OpenBLAS single-threaded again for dt_topk_ip. */
static int run_gemm(void *p)
{
    gemm_arg *a = p;
    openblas_set_num_threads(a->threads);
    for (size_t r0 = 0; r0 < a->n; r0 += a->slice) {
        size_t rows = a->n - r0 < a->slice ? a->n - r0 : a->slice;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->m, (int)rows, (int)a->d, 1.0f,
                    a->Q, (int)a->d, a->X + r0 * a->d, (int)a->d, 0.0f, a->C, (int)rows);
    }
    dt_topk_blas_single();
    return 0;
}

static int parse_list(const char *s, size_t *out, size_t *count, size_t max)
{
    *count = 0;
    while (*s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || *count == max || v == 0) return -1;
        out[(*count)++] = (size_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *count ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_topk [options]\n"
            "  --n LIST            rows of X, comma-separated (default 100000,1000000)\n"
            "  --m LIST            batch sizes (default 1,16,1024)\n"
            "  --d D               dimension (default 256)\n"
            "  --k K               hits per query (default 10)\n"
            "  --runs R            timed runs at least (default 3), after one warm-up\n"
            "  --min-time S        keep timing until S seconds have passed (default 1)\n"
            "  --threads T         dt_topk_ip threads (default 0 = one per CPU)\n"
            "  --block-rows B      dt_topk_opts.block_rows (default 0 = automatic)\n"
            "  --block-queries Q   dt_topk_opts.block_queries (default 0 = automatic)\n"
            "  --dir DIR           write X, Q, our ids (.npy) and ours.tsv for"
            " bench/faiss_peer.py\n");
}

int main(int argc, char **argv)
{
    bench_cfg cfg = {.ns = {100000, 1000000}, .n_ns = 2, .ms = {1, 16, 1024}, .n_ms = 3,
                     .d = 256, .k = 10, .runs = 3, .min_time = 1.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!v) {
            bad = 1;
        } else if (!strcmp(a, "--n")) {
            bad = parse_list(v, cfg.ns, &cfg.n_ns, 8);
        } else if (!strcmp(a, "--m")) {
            bad = parse_list(v, cfg.ms, &cfg.n_ms, 8);
        } else if (!strcmp(a, "--d")) {
            cfg.d = strtoul(v, NULL, 10);
            bad = cfg.d == 0;
        } else if (!strcmp(a, "--k")) {
            cfg.k = strtoul(v, NULL, 10);
            bad = cfg.k == 0;
        } else if (!strcmp(a, "--runs")) {
            cfg.runs = atoi(v);
        } else if (!strcmp(a, "--min-time")) {
            cfg.min_time = atof(v);
        } else if (!strcmp(a, "--threads")) {
            cfg.opts.threads = atoi(v);
        } else if (!strcmp(a, "--block-rows")) {
            cfg.opts.block_rows = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--block-queries")) {
            cfg.opts.block_queries = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--dir")) {
            cfg.dir = v;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "bench_topk: bad or missing value for %s\n", a);
            usage();
            return 2;
        }
        i++;
    }

    size_t max_m = 0;
    for (size_t i = 0; i < cfg.n_ms; i++)
        if (cfg.ms[i] > max_m) max_m = cfg.ms[i];
    if (!getenv("OPENBLAS_THREAD_TIMEOUT"))
        fprintf(stderr, "bench_topk: note: OPENBLAS_THREAD_TIMEOUT is not set; OpenBLAS threads "
                        "poll for ~0.1 s after each sgemm run and slow the dt_topk_ip run that "
                        "follows (bench/topk.sh sets it to 4)\n");
    int blas_threads = dt_topk_blas_single();
    float *Q = unit_vectors(max_m, cfg.d, 2);
    if (!Q) {
        fprintf(stderr, "bench_topk: out of memory for Q\n");
        return 1;
    }
    FILE *tsv = NULL;
    char path[4096];
    if (cfg.dir && strlen(cfg.dir) > 3000) {
        fprintf(stderr, "bench_topk: --dir path is too long\n");
        return 2;
    }
    if (cfg.dir) {
        snprintf(path, sizeof path, "%s/ours.tsv", cfg.dir);
        tsv = fopen(path, "w");
        if (!tsv) {
            fprintf(stderr, "bench_topk: cannot write %s: %s\n", path, strerror(errno));
            return 1;
        }
        fprintf(tsv, "n\tm\tours_qps\tsgemm_qps\tours_gflops\tsgemm_gflops\n");
    }
    printf("d=%zu k=%zu dt_topk threads=%d (0 = one per CPU), OpenBLAS threads for sgemm=%d (%s)\n",
           cfg.d, cfg.k, cfg.opts.threads, blas_threads, openblas_get_corename());
    printf("%9s %6s %12s %12s %10s %10s %8s\n", "n", "m", "ours q/s", "sgemm q/s", "ours GF/s",
           "sgemm GF/s", "ours/sgemm");
    fflush(stdout);

    int status = 0;
    for (size_t ni = 0; ni < cfg.n_ns && !status; ni++) {
        size_t n = cfg.ns[ni];
        float *X = unit_vectors(n, cfg.d, 1);
        if (!X) {
            fprintf(stderr, "bench_topk: out of memory for X (%zu x %zu)\n", n, cfg.d);
            status = 1;
            break;
        }
        char sub[3072];
        if (cfg.dir) {
            snprintf(sub, sizeof sub, "%s/n%zu", cfg.dir, n);
            if (mkdir(sub, 0755) && errno != EEXIST) {
                fprintf(stderr, "bench_topk: mkdir %s: %s\n", sub, strerror(errno));
                status = 1;
            }
            snprintf(path, sizeof path, "%s/X.npy", sub);
            if (!status) status = write_npy(path, "<f4", n, cfg.d, X, sizeof(float)) ? 1 : 0;
            snprintf(path, sizeof path, "%s/Q.npy", sub);
            if (!status) status = write_npy(path, "<f4", max_m, cfg.d, Q, sizeof(float)) ? 1 : 0;
        }
        for (size_t mi = 0; mi < cfg.n_ms && !status; mi++) {
            size_t m = cfg.ms[mi];
            topk_arg ta = {&cfg, X, Q, n, m, malloc(m * cfg.k * sizeof(dt_hit)),
                           malloc(m * sizeof(size_t))};
            gemm_arg ga = {X, Q, n, m, cfg.d, 0, NULL, 1};
            ga.slice = ((size_t)1 << 28) / m;
            if (ga.slice > n) ga.slice = n;
            if (ga.slice == 0) ga.slice = 1;
            ga.C = malloc(m * ga.slice * sizeof(float));
            int64_t *ids = malloc(m * cfg.k * sizeof *ids);
            if (!ta.out || !ta.n_out || !ga.C || !ids) {
                fprintf(stderr, "bench_topk: out of memory (n=%zu m=%zu)\n", n, m);
                status = 1;
            }
            ga.threads = blas_threads;
            double t_ours = -1, t_gemm = -1;
            if (!status && best_times(&cfg, run_topk, &ta, &t_ours, run_gemm, &ga, &t_gemm))
                status = 1;
            for (size_t q = 0; !status && q < m; q++)
                for (size_t c = 0; c < cfg.k; c++)
                    ids[q * cfg.k + c] = c < ta.n_out[q] ? (int64_t)ta.out[q * cfg.k + c].row : -1;
            if (!status) {
                double flop = 2.0 * (double)m * (double)n * (double)cfg.d;
                printf("%9zu %6zu %12.1f %12.1f %10.1f %10.1f %8.2f\n", n, m, m / t_ours,
                       m / t_gemm, flop / t_ours * 1e-9, flop / t_gemm * 1e-9, t_gemm / t_ours);
                fflush(stdout);
                if (tsv)
                    fprintf(tsv, "%zu\t%zu\t%.3f\t%.3f\t%.3f\t%.3f\n", n, m, m / t_ours,
                            m / t_gemm, flop / t_ours * 1e-9, flop / t_gemm * 1e-9);
                if (cfg.dir) {
                    snprintf(path, sizeof path, "%s/ids_m%zu.npy", sub, m);
                    status = write_npy(path, "<i8", m, cfg.k, ids, sizeof *ids) ? 1 : 0;
                }
            }
            free(ta.out);
            free(ta.n_out);
            free(ga.C);
            free(ids);
        }
        free(X);
    }
    if (tsv && fclose(tsv) != 0) status = 1;
    free(Q);
    openblas_set_num_threads(blas_threads);
    return status;
}
