/* bench_pair.c - exact event pairing (dt_pair_solve: min-cost flow + schedule) against a greedy
 * peer.
 *
 * Question: what does exactness buy, and what does it cost, on a large Deep Dive event?
 * Event: 1,000 SMEs x 500 achievement holders x 12 slots, 50 candidate holders per SME with random
 * scores (fixed seed), 1% requested pairs, max meetings 4..12 per participant. Each configuration
 * is solved exactly and by the greedy baseline (edges by decreasing value, taken while both sides
 * and the tables have room and the meeting is worth more than its decay charges); both are scored
 * with the same objective (pair.h); the greedy peer ignores guarantees. Prints values, meetings,
 * SMEs left without any meeting, times, and the ratios exact/greedy. The last configuration
 * guarantees every SME one meeting. Usage: bench_pair [repeats]   (default 3; the best time of the
 * repeats is reported)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pair.h"

enum { NA = 1000, NB = 500, SLOTS = 12, PER = 50 };

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct gedge {
    int a, b;
    int64_t value;
} gedge;

static int by_value(const void *x, const void *y)
{
    const gedge *p = x, *q = y;
    if (p->value != q->value) return p->value > q->value ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

static int64_t units(double x)
{
    return (int64_t)llround(x * DT_PAIR_SCALE);
}

/* Greedy baseline: returns its objective in fixed-point units and the number of meetings. */
static int64_t greedy(const dt_pair_problem *p, gedge *ge, int *ca, int *cb, size_t *n_meet)
{
    int64_t pen[SLOTS + 1];
    for (int j = 0; j < p->slots; j++)
        pen[j] = units(p->opt.decay_scale * (1.0 - pow(p->opt.decay_gamma, j)));
    int64_t one = units(p->opt.boost_one), both = units(p->opt.boost_both);
    for (size_t i = 0; i < p->n_edges; i++) {
        ge[i] = (gedge){p->edges[i].a, p->edges[i].b, units(p->edges[i].score)};
    }
    for (size_t i = 0; i < p->n_requests; i++) {
        /* requests in this bench are always on edges: edges[i] for i < n_requests */
        ge[i].value += p->requests[i].who == DT_PAIR_REQ_BOTH ? both : one;
    }
    qsort(ge, p->n_edges, sizeof *ge, by_value);
    memset(ca, 0, sizeof *ca * (size_t)p->na);
    memset(cb, 0, sizeof *cb * (size_t)p->nb);
    int64_t cap = (int64_t)p->tables * p->slots, total = 0, n = 0;
    for (size_t i = 0; i < p->n_edges && n < cap; i++) {
        const gedge *e = &ge[i];
        if (ca[e->a] >= p->a[e->a].max_meetings || cb[e->b] >= p->b[e->b].max_meetings) continue;
        int64_t gain = e->value - pen[ca[e->a]] - pen[cb[e->b]];
        if (gain <= 0) continue;
        ca[e->a]++;
        cb[e->b]++;
        total += gain;
        n++;
    }
    *n_meet = (size_t)n;
    return total;
}

static void run(const char *name, dt_pair_problem *p, int repeats)
{
    gedge *ge = malloc(p->n_edges * sizeof *ge);
    int *ca = malloc(sizeof *ca * (size_t)p->na), *cb = malloc(sizeof *cb * (size_t)p->nb);
    if (!ge || !ca || !cb) {
        fprintf(stderr, "bench_pair: out of memory\n");
        exit(1);
    }
    double t_exact = 1e30, t_greedy = 1e30;
    int64_t v_exact = 0, v_greedy = 0;
    size_t n_exact = 0, n_greedy = 0, paths = 0, unsched = 0;
    int idle_exact = 0, idle_greedy = 0;
    for (int rep = 0; rep < repeats; rep++) {
        dt_pair_result *r = NULL;
        dt_err err = DT_ERR_INIT;
        double t0 = now();
        if (dt_pair_solve(p, &r, &err)) {
            fprintf(stderr, "bench_pair: %s: %s\n", err.field, err.msg);
            exit(1);
        }
        double t1 = now();
        if (t1 - t0 < t_exact) t_exact = t1 - t0;
        v_exact = r->total_value_units;
        n_exact = r->n_meetings;
        paths = r->n_paths;
        unsched = r->n_unscheduled;
        idle_exact = 0;
        for (int i = 0; i < p->na; i++)
            idle_exact += r->count_a[i].count == 0;
        dt_pair_result_free(r);
        t0 = now();
        v_greedy = greedy(p, ge, ca, cb, &n_greedy);
        t1 = now();
        if (t1 - t0 < t_greedy) t_greedy = t1 - t0;
        idle_greedy = 0;
        for (int i = 0; i < p->na; i++)
            idle_greedy += ca[i] == 0;
    }
    printf("%-30s exact  %9.3f value %5zu meetings %4d SMEs without %8.1f ms (%zu paths, %zu "
           "unscheduled)\n",
           name, (double)v_exact / DT_PAIR_SCALE, n_exact, idle_exact, 1e3 * t_exact, paths,
           unsched);
    printf("%-30s greedy %9.3f value %5zu meetings %4d SMEs without %8.1f ms\n", name,
           (double)v_greedy / DT_PAIR_SCALE, n_greedy, idle_greedy, 1e3 * t_greedy);
    printf("%-30s ratio exact/greedy: value %.4f, time %.1f\n", name,
           (double)v_exact / (double)v_greedy, t_exact / t_greedy);
    free(ge);
    free(ca);
    free(cb);
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    if (repeats < 1) repeats = 1;
    uint64_t seed = 0x5eed5eed12345ULL;
    dt_pair_person *A = malloc(NA * sizeof *A), *B = malloc(NB * sizeof *B);
    dt_pair_edge *E = malloc((size_t)NA * PER * sizeof *E);
    dt_pair_request *R = malloc((size_t)NA * PER * sizeof *R);
    unsigned char *taken = calloc(NB, 1);
    if (!A || !B || !E || !R || !taken) {
        fprintf(stderr, "bench_pair: out of memory\n");
        return 1;
    }
    for (int i = 0; i < NA; i++)
        A[i] = (dt_pair_person){4 + (int)(rnd(&seed) % 9), 0, -1};
    for (int i = 0; i < NB; i++)
        B[i] = (dt_pair_person){4 + (int)(rnd(&seed) % 9), 0, -1};
    size_t ne = 0;
    for (int a = 0; a < NA; a++) {
        int picked[PER];
        for (int k = 0; k < PER;) {
            int b = (int)(rnd(&seed) % NB);
            if (taken[b]) continue;
            taken[b] = 1;
            picked[k++] = b;
            E[ne++] = (dt_pair_edge){a, b, (double)(rnd(&seed) % 1000001) / 1e6};
        }
        for (int k = 0; k < PER; k++)
            taken[picked[k]] = 0;
    }
    /* shuffle so that requests (on the first 1% of edges) are spread over participants */
    for (size_t i = ne - 1; i > 0; i--) {
        size_t j = (size_t)(rnd(&seed) % (i + 1));
        dt_pair_edge t = E[i];
        E[i] = E[j];
        E[j] = t;
    }
    size_t nr = ne / 100;
    for (size_t i = 0; i < nr; i++)
        R[i] = (dt_pair_request){E[i].a, E[i].b, 1 + (int)(rnd(&seed) % 3)};

    dt_pair_problem p;
    dt_pair_problem_init(&p);
    p.na = NA;
    p.nb = NB;
    p.a = A;
    p.b = B;
    p.slots = SLOTS;
    p.edges = E;
    p.n_edges = ne;
    p.requests = R;
    p.n_requests = nr;
    printf("event: %d SMEs x %d holders x %d slots, %zu edges, %zu requests\n", NA, NB, SLOTS, ne,
           nr);

    p.tables = 200;
    run("tables 200, decay 0.9", &p, repeats);
    p.opt.decay_gamma = 1.0;
    run("tables 200, no decay", &p, repeats);
    p.tables = 1000;
    p.opt.decay_gamma = 0.9;
    run("tables 1000, decay 0.9", &p, repeats);
    p.opt.decay_gamma = 1.0;
    run("tables 1000, no decay", &p, repeats);
    p.tables = 200;
    p.opt.decay_gamma = 0.9;
    for (int i = 0; i < NA; i++)
        A[i].min_meetings = 1;
    run("tables 200, decay 0.9, min 1", &p, repeats);

    free(A);
    free(B);
    free(E);
    free(R);
    free(taken);
    return 0;
}
