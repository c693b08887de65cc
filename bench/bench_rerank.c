/* bench_rerank.c - how long does the nightly re-rank take, against the machine's own sgemm peak?
 *
 * Loads N demands and N achievements (default 100,000 each) with random 256-dimensional unit
 * vectors as external embeddings into an engine (one thread per search: the job's workers, one
 * per CPU, provide the parallelism), and runs the re-rank job of matcher/rerank.h through the
 * engine's search path: top-k (default 10) of every record in both directions, lists counted by
 * the output callback. The weights are dense only (1, 0, 0): random vectors carry no text or
 * attributes, so the lexical and structured parts would only add zeros.
 *
 * Prints the job's time, its effective GFLOP/s (2 x N x N x d per direction, both directions),
 * the peak of cblas_sgemm with OpenBLAS's own threads on a large square shape measured in the same
 * run (best of 3), and their ratio. Then, unless --no-core, the same two directions through the
 * top-k core alone (dt_topk_ip over the index matrices, no engine scoring), which shows what the
 * engine's per-query work (filters, score assembly) costs on top of the GEMM.
 * Memory: about 2 x N x d x 8 bytes for records and rows, plus batch x N x 4 bytes per worker.
 * Like `dovetail rerank`, it tells glibc to keep freed memory (mallopt) so that the engine's
 * per-query scratch is reused rather than page-faulted in again for every batch.
 *
 *   bench_rerank [--n N] [--dim D] [-k K] [--batch B] [--threads T] [--no-core]
 */
#include <cblas.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rerank.h"
#include "topk.h"

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

static double uniform(uint64_t *s)
{
    return (double)(splitmix(s) >> 11) * 0x1p-52 - 1.0;
}

typedef struct counter {
    atomic_size_t lists, entries;
    size_t k;
    atomic_size_t short_lists;
} counter;

static int count_list(void *ud, const dt_rerank_list *l, dt_err *err)
{
    (void)err;
    counter *c = ud;
    atomic_fetch_add(&c->lists, 1);
    atomic_fetch_add(&c->entries, l->n);
    if (l->n != c->k) atomic_fetch_add(&c->short_lists, 1);
    return 0;
}

/* Best of 3 multithreaded cblas_sgemm runs of an s x s x s product, in GFLOP/s. */
static double sgemm_peak(size_t s, int threads)
{
    float *a = dt_topk_alloc(s * s * sizeof(float)), *b = dt_topk_alloc(s * s * sizeof(float)),
          *c = dt_topk_alloc(s * s * sizeof(float));
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    uint64_t seed = 42;
    for (size_t i = 0; i < s * s; i++) a[i] = (float)uniform(&seed), b[i] = (float)uniform(&seed);
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    double best = 1e30;
    for (int r = 0; r < 4; r++) { /* the first is a warm-up */
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s, (int)s, (int)s, 1.0f, a, (int)s, b, (int)s,
                    0.0f, c, (int)s);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    openblas_set_num_threads(prev);
    free(a), free(b), free(c);
    return 2.0 * (double)s * (double)s * (double)s / best / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = 100000, d = 256, k = 10, batch = 512;
    int threads = 0;
    bool core = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) d = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-core")) core = false;
        else {
            fprintf(stderr, "usage: bench_rerank [--n N] [--dim D] [-k K] [--batch B] [--threads T] [--no-core]\n");
            return 2;
        }
    }
    if (!n || !d || !k || d > DT_DIM_MAX || k > 10000 || !batch) {
        fprintf(stderr, "bench_rerank: N, D, K and B must be positive (D <= %d, K <= 10000)\n", DT_DIM_MAX);
        return 2;
    }
    /* dt_search allocates its per-query scratch (a score per candidate) for every call: keep freed
     * memory in the process instead of returning it to the kernel after each batch, or page faults
     * and zeroing of fresh pages cost more than the GEMM (4x the job's time at N = 20,000) */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = ncpu > 0 ? (int)ncpu : 1;

    printf("re-rank: %zu demands x %zu achievements x %zu dimensions, k = %zu, both directions, %d workers, "
           "batch %zu\n", n, n, d, k, threads, batch);
    double peak = sgemm_peak(4096, threads);
    printf("cblas_sgemm peak (4096 x 4096 x 4096, %d OpenBLAS threads, best of 3): %.1f GFLOP/s\n", threads, peak);
    dt_topk_blas_single();

    dt_engine_opts eo = dt_engine_opts_default();
    eo.threads = 1;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    if (!e) {
        fprintf(stderr, "bench_rerank: %s\n", err.msg);
        return 3;
    }
    double t0 = now_s();
    uint64_t seed = 7;
    for (int side = 0; side < 2; side++)
        for (size_t i = 0; i < n; i++) {
            dt_record r;
            dt_record_init(&r);
            char id[32];
            snprintf(id, sizeof id, "%c%zu", side == DT_DEMAND ? 'd' : 'a', i);
            r.id = strdup(id);
            r.side = (dt_side)side;
            r.dim = d;
            r.embedding = malloc(d * sizeof(float));
            if (!r.id || !r.embedding) {
                fprintf(stderr, "bench_rerank: out of memory loading records\n");
                return 3;
            }
            double norm = 0;
            for (size_t j = 0; j < d; j++) {
                r.embedding[j] = (float)uniform(&seed);
                norm += (double)r.embedding[j] * r.embedding[j];
            }
            for (size_t j = 0; j < d; j++) r.embedding[j] = (float)(r.embedding[j] / sqrt(norm));
            if (dt_engine_upsert(e, &r, &err) < 0) {
                fprintf(stderr, "bench_rerank: %s: %s\n", err.field, err.msg);
                return 3;
            }
        }
    printf("loaded %zu records in %.1f s\n", 2 * n, now_s() - t0);

    counter cnt;
    atomic_init(&cnt.lists, 0);
    atomic_init(&cnt.entries, 0);
    atomic_init(&cnt.short_lists, 0);
    cnt.k = k;
    dt_weights w = {1, 0, 0};
    dt_rerank_opts o;
    dt_rerank_opts_init(&o);
    o.k = k;
    o.weights = &w;
    o.threads = threads;
    o.batch = batch;
    o.emit = count_list;
    o.emit_ud = &cnt;
    dt_rerank_job *job = dt_rerank_new(e, &o, &err);
    if (!job) {
        fprintf(stderr, "bench_rerank: %s: %s\n", err.field, err.msg);
        return 3;
    }
    t0 = now_s();
    int rc = dt_rerank_run(job, &err);
    double job_s = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "bench_rerank: the job failed: %s: %s\n", err.field, err.msg);
        return 3;
    }
    dt_rerank_free(job);
    double flops = 2.0 * 2.0 * (double)n * (double)n * (double)d;
    double gf = flops / job_s / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("job: %zu lists (%zu entries, %zu shorter than k) in %.1f s = %.0f lists/s\n", atomic_load(&cnt.lists),
           atomic_load(&cnt.entries), atomic_load(&cnt.short_lists), job_s, (double)atomic_load(&cnt.lists) / job_s);
    printf("job effective: %.1f GFLOP/s = %.3f of the sgemm peak (%.1f GFLOP/s)\n", gf, gf / peak, peak);
    printf("peak resident memory so far: %.2f GB\n", (double)ru.ru_maxrss / (1024.0 * 1024.0));

    if (core) {
        /* the same products through the top-k core alone, over the engine's own matrices */
        dt_index *dx = dt_engine_index(e, "public", DT_DEMAND), *ax = dt_engine_index(e, "public", DT_ACHIEVEMENT);
        dt_hit *hits = malloc(n * k * sizeof *hits);
        size_t *n_out = malloc(n * sizeof *n_out);
        if (!hits || !n_out) {
            fprintf(stderr, "bench_rerank: out of memory for the core run\n");
            return 3;
        }
        dt_topk_opts to = DT_TOPK_OPTS_INIT;
        to.threads = threads;
        t0 = now_s();
        for (int dir = 0; dir < 2 && rc == 0; dir++) {
            dt_index *X = dir ? dx : ax, *Q = dir ? ax : dx;
            rc = dt_topk_ip(dt_index_matrix(X), dt_index_slots(X), d, d, dt_index_matrix(Q), dt_index_slots(Q), k, &to,
                            hits, n_out, &err);
        }
        double core_s = now_s() - t0;
        if (rc) {
            fprintf(stderr, "bench_rerank: dt_topk_ip: %s\n", err.msg);
            return 3;
        }
        double cgf = flops / core_s / 1e9;
        printf("top-k core alone (dt_topk_ip, %d threads, no engine scoring): %.1f s = %.1f GFLOP/s = %.3f of peak; "
               "the job takes %.2fx its time\n",
               threads, core_s, cgf, cgf / peak, job_s / core_s);
        free(hits);
        free(n_out);
    }
    dt_engine_free(e);
    return 0;
}
