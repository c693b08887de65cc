/* test_index.c - the (tenant, side) index: id map, tombstones, BM25, filters, compaction. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

static dt_record mk(const char *id, int trl, uint32_t modes, double pmin, double pmax,
                    const char *field, const char *region)
{
    dt_record r;
    dt_record_init(&r);
    r.id = strdup(id);
    r.side = DT_ACHIEVEMENT;
    r.trl = trl;
    r.modes = modes;
    r.price_min = pmin;
    r.price_max = pmax;
    if (field) r.field = strdup(field);
    if (region) r.region = strdup(region);
    return r;
}

static void test_put_find_replace_remove(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new("t1", DT_ACHIEVEMENT, 4, &err);
    assert_non_null(idx);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "r%d", i);
        dt_record r = mk(id, 1 + i % 9, 0, NAN, NAN, NULL, NULL);
        dt_tf t[2] = {{(uint32_t)i % 7, 1}, {100, 2}};
        uint32_t slot;
        assert_int_equal(dt_index_put(idx, &r, t, 2, 3, &slot, &err), 0);
        assert_null(r.id); /* moved */
        assert_int_equal(slot, i);
        dt_index_row(idx, slot)[0] = (float)i;
    }
    assert_int_equal(dt_index_count(idx), 1000);
    assert_int_equal(dt_index_find(idx, "r500"), 500);
    assert_int_equal(dt_index_find(idx, "nope"), -1);
    assert_int_equal(dt_index_df(idx, 100), 1000);
    uint64_t ep = dt_index_epoch(idx);
    /* replace: new slot, old one dead, df unchanged */
    dt_record r = mk("r500", 9, 0, NAN, NAN, NULL, NULL);
    dt_tf t = {100, 1};
    uint32_t slot;
    assert_int_equal(dt_index_put(idx, &r, &t, 1, 1, &slot, &err), 0);
    assert_int_equal(slot, 1000);
    assert_int_equal(dt_index_find(idx, "r500"), 1000);
    assert_false(dt_index_live(idx, 500));
    assert_int_equal(dt_index_count(idx), 1000);
    assert_int_equal(dt_index_df(idx, 100), 1000);
    assert_true(dt_index_epoch(idx) > ep);
    /* remove */
    assert_int_equal(dt_index_remove(idx, "r7", &err), 0);
    assert_int_equal(dt_index_find(idx, "r7"), -1);
    assert_int_equal(dt_index_remove(idx, "r7", &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "id");
    assert_int_equal(dt_index_count(idx), 999);
    assert_int_equal(dt_index_df(idx, 100), 999);
    /* a missing id is refused and nothing changes */
    dt_record bad;
    dt_record_init(&bad);
    assert_int_equal(dt_index_put(idx, &bad, NULL, 0, 0, NULL, &err), -DT_EINVAL);
    assert_int_equal(dt_index_count(idx), 999);
    dt_index_free(idx);
}

/* BM25 against an independent double-precision implementation over random documents. */
static void test_bm25_reference(void **state)
{
    (void)state;
    srand(7);
    enum { N = 300, V = 40 };
    static float tf[N][V];
    static uint32_t dl[N];
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new(NULL, DT_DEMAND, 0, &err);
    char id[32];
    for (int d = 0; d < N; d++) {
        dt_tf terms[V];
        size_t n = 0;
        dl[d] = 0;
        for (int v = 0; v < V; v++) {
            tf[d][v] = (rand() % 4 == 0) ? (float)(1 + rand() % 5) : 0;
            if (tf[d][v] > 0) terms[n++] = (dt_tf){(uint32_t)v * 977u, tf[d][v]};
            dl[d] += (uint32_t)tf[d][v];
        }
        snprintf(id, sizeof id, "d%d", d);
        dt_record r = mk(id, 0, 0, NAN, NAN, NULL, NULL);
        assert_int_equal(dt_index_put(idx, &r, terms, n, dl[d], NULL, &err), 0);
    }
    /* delete a few: statistics must ignore them */
    bool dead[N] = {0};
    for (int d = 0; d < N; d += 17) {
        snprintf(id, sizeof id, "d%d", d);
        assert_int_equal(dt_index_remove(idx, id, &err), 0);
        dead[d] = true;
    }
    double k1 = 1.2, b = 0.75, sumdl = 0;
    int live = 0;
    for (int d = 0; d < N; d++)
        if (!dead[d]) sumdl += dl[d], live++;
    double avg = sumdl / live;
    dt_tf q[3] = {{3 * 977u, 1}, {11 * 977u, 2}, {39 * 977u, 0.5f}};
    float *acc = calloc(N, sizeof *acc);
    dt_index_bm25(idx, q, 3, (float)k1, (float)b, acc);
    for (int d = 0; d < N; d++) {
        double want = 0;
        if (!dead[d])
            for (int i = 0; i < 3; i++) {
                int v = (int)(q[i].term / 977u);
                int df = 0;
                for (int e = 0; e < N; e++)
                    df += !dead[e] && tf[e][v] > 0;
                double idf = log(1 + (live - df + 0.5) / (df + 0.5));
                double f = tf[d][v];
                want += q[i].tf * idf * f * (k1 + 1) / (f + k1 * (1 - b + b * dl[d] / avg));
            }
        assert_true(fabs(acc[d] - want) < 1e-4 * (1 + want));
    }
    free(acc);
    dt_index_free(idx);
}

static void test_codes(void **state)
{
    (void)state;
    assert_true(dt_code_has_prefix("C.38.4", "C.38"));
    assert_true(dt_code_has_prefix("C.38", "C.38"));
    assert_false(dt_code_has_prefix("C.381", "C.38"));
    assert_true(dt_code_has_prefix("C.381", "C."));
    assert_false(dt_code_has_prefix(NULL, "C"));
    assert_int_equal(dt_code_shared_depth("C.38.4", "C.38.1"), 2);
    assert_int_equal(dt_code_shared_depth("C.38.4", "C.38.4"), 3);
    assert_int_equal(dt_code_shared_depth("C.38", "C.381"), 1);
    assert_int_equal(dt_code_shared_depth("A", "C"), 0);
    assert_int_equal(dt_code_depth("CN.32.05"), 3);
    assert_int_equal(dt_code_depth(""), 0);
}

/* Every filter kind, against a predicate written out independently here. */
static void test_filters_random(void **state)
{
    (void)state;
    srand(11);
    const char *fields[] = {"C.38.4", "C.38.1", "C.27", "A.01.1", NULL};
    const char *regions[] = {"CN.32.05", "CN.32.01", "CN.31.01", "CN.44.03", NULL};
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new("x", DT_ACHIEVEMENT, 0, &err);
    enum { N = 500 };
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        double p1 = rand() % 3 ? (rand() % 100) * 10.0 : NAN,
               p2 = rand() % 3 ? (rand() % 100) * 10.0 + 1000 : NAN;
        dt_record r = mk(id, rand() % 10, (uint32_t)rand() % 64, p1, p2, fields[rand() % 5],
                         regions[rand() % 5]);
        r.status = rand() % 5 == 0 ? DT_CLOSED : DT_OPEN;
        if (rand() % 3 == 0) {
            r.tags = calloc(1, sizeof *r.tags);
            r.tags[0] = strdup(rand() % 2 ? "srdi" : "first_set");
            r.n_tags = 1;
        }
        assert_int_equal(dt_index_put(idx, &r, NULL, 0, 0, NULL, &err), 0);
    }
    for (int i = 0; i < N; i += 13) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        dt_index_remove(idx, id, &err);
    }
    const char *fp[] = {"C.38"}, *rp[] = {"CN.32", "CN.44.03"}, *tg[] = {"srdi"};
    uint64_t allow[(N + 63) / 64 + 1];
    for (int round = 0; round < 64; round++) {
        dt_filter f;
        dt_filter_init(&f);
        if (round & 1) f.field_prefixes = fp, f.n_field_prefixes = 1;
        if (round & 2) f.region_prefixes = rp, f.n_region_prefixes = 2;
        if (round & 4) f.trl_min = 4, f.trl_max = 7;
        if (round & 8) f.modes = DT_MODE_LICENSE | DT_MODE_EQUITY;
        if (round & 16) f.price_min = 300, f.price_max = 900;
        if (round & 32) f.tags = tg, f.n_tags = 1;
        f.include_closed = round % 3 == 0;
        size_t count = dt_index_filter(idx, &f, allow), want = 0;
        for (uint32_t s = 0; s < dt_index_slots(idx); s++) {
            const dt_record *r = dt_index_record(idx, s);
            bool ok = dt_index_live(idx, s) && (f.include_closed || r->status == DT_OPEN);
            if (round & 1)
                ok = ok && r->field && !strncmp(r->field, "C.38", 4) &&
                     (r->field[4] == '.' || !r->field[4]);
            if (round & 2)
                ok = ok && r->region &&
                     (!strncmp(r->region, "CN.32.", 6) || !strcmp(r->region, "CN.44.03"));
            if (round & 4) ok = ok && r->trl >= 4 && r->trl <= 7;
            if (round & 8) ok = ok && (r->modes & (DT_MODE_LICENSE | DT_MODE_EQUITY));
            if (round & 16) { /* the .proto: a missing end is open; no price at all passes */
                bool none = isnan(r->price_min) && isnan(r->price_max);
                double lo = isnan(r->price_min) ? 0 : r->price_min;
                double hi = isnan(r->price_max) ? INFINITY : r->price_max;
                ok = ok && (none || (lo <= 900 && hi >= 300));
            }
            if (round & 32) ok = ok && r->n_tags && !strcmp(r->tags[0], "srdi");
            bool got = (allow[s >> 6] >> (s & 63)) & 1;
            assert_int_equal(got, ok);
            assert_int_equal(dt_index_passes(idx, s, &f), ok);
            want += ok;
        }
        assert_int_equal(count, want);
    }
    dt_index_free(idx);
}

static void test_compaction_keeps_everything(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new("c", DT_DEMAND, 3, &err);
    char id[16];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "x%d", i);
        dt_record r = mk(id, 5, 0, NAN, NAN, "C.1", NULL);
        dt_tf t[2] = {{1, (float)(1 + i % 3)}, {(uint32_t)(10 + i % 5), 1}};
        uint32_t s;
        assert_int_equal(dt_index_put(idx, &r, t, 2, 4, &s, &err), 0);
        float *row = dt_index_row(idx, s);
        row[0] = (float)i, row[1] = 1, row[2] = -1;
    }
    float before[200];
    dt_tf q[2] = {{1, 1}, {12, 1}};
    float *acc = calloc(200, sizeof *acc);
    for (int i = 0; i < 200; i += 2) {
        snprintf(id, sizeof id, "x%d", i);
        assert_int_equal(dt_index_remove(idx, id, &err), 0);
    }
    dt_index_bm25(idx, q, 2, 1.2f, 0.75f, acc);
    for (int i = 0; i < 200; i++)
        before[i] = acc[i];
    uint64_t ep = dt_index_epoch(idx);
    assert_int_equal(dt_index_compact(idx, false, &err), 1);
    assert_true(dt_index_epoch(idx) > ep);
    assert_int_equal(dt_index_slots(idx), 100);
    assert_int_equal(dt_index_count(idx), 100);
    memset(acc, 0, 200 * sizeof *acc);
    dt_index_bm25(idx, q, 2, 1.2f, 0.75f, acc);
    for (int i = 1; i < 200; i += 2) {
        snprintf(id, sizeof id, "x%d", i);
        int64_t s = dt_index_find(idx, id);
        assert_true(s >= 0);
        assert_float_equal(acc[s], before[i], 1e-6);
        assert_float_equal(dt_index_row(idx, (uint32_t)s)[0], (float)i, 0);
        assert_string_equal(dt_index_record(idx, (uint32_t)s)->field, "C.1");
    }
    assert_int_equal(dt_index_compact(idx, false, &err), 0); /* nothing to do */
    free(acc);
    dt_index_free(idx);
}

/* Growth made off the write lock: prepare leaves the index as it was (same arrays, same capacity,
 * searches read it meanwhile), install swaps in copies that hold everything - records, rows, terms,
 * the id map rehashed for the new capacity - and the puts that follow need no further growth. */
static void test_growth_prepared_then_installed(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new("g", DT_ACHIEVEMENT, 3, &err);
    char id[16];
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof id, "g%d", i);
        dt_record r = mk(id, 1 + i % 9, 0, 10.0 * i, NAN, "C.1", NULL);
        dt_tf t[2] = {{(uint32_t)i % 5, 1}, {(uint32_t)(100 + i), 2}};
        uint32_t s;
        assert_int_equal(dt_index_put(idx, &r, t, 2, 3, &s, &err), 0);
        dt_index_row(idx, s)[2] = (float)i;
    }
    assert_int_equal(dt_index_capacity(idx), 64);
    const float *X0 = dt_index_matrix(idx);
    dt_index_growth *g = NULL;
    assert_int_equal(dt_index_growth_prepare(idx, 64, dt_index_terms_len(idx), &g, &err), 0);
    assert_null(g); /* room enough */
    assert_int_equal(dt_index_growth_prepare(idx, 100, dt_index_terms_len(idx) + 100000, &g, &err), 0);
    assert_non_null(g);
    assert_int_equal(dt_index_capacity(idx), 64);
    assert_ptr_equal(dt_index_matrix(idx), X0);
    dt_index_growth_install(idx, g);
    assert_int_equal(dt_index_capacity(idx), 128);
    assert_ptr_not_equal(dt_index_matrix(idx), X0);
    dt_index_growth_free(g); /* the old arrays */
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof id, "g%d", i);
        int64_t s = dt_index_find(idx, id);
        assert_int_equal(s, i);
        assert_float_equal(dt_index_row(idx, (uint32_t)s)[2], (float)i, 0);
        assert_int_equal(dt_index_record(idx, (uint32_t)s)->trl, 1 + i % 9);
        assert_float_equal(dt_index_record(idx, (uint32_t)s)->price_min, 10.0 * i, 0);
        const dt_tf *tf;
        size_t n;
        dt_index_terms(idx, (uint32_t)s, &tf, &n);
        assert_int_equal(n, 2);
        assert_int_equal(tf[1].term, 100 + i);
    }
    const float *X1 = dt_index_matrix(idx);
    for (int i = 64; i < 100; i++) {
        snprintf(id, sizeof id, "g%d", i);
        dt_record r = mk(id, 5, 0, NAN, NAN, NULL, NULL);
        dt_tf t = {7, 1};
        assert_int_equal(dt_index_put(idx, &r, &t, 1, 1, NULL, &err), 0);
    }
    assert_ptr_equal(dt_index_matrix(idx), X1); /* no growth under the puts */
    assert_int_equal(dt_index_find(idx, "g99"), 99);
    assert_int_equal(dt_index_find(idx, "g0"), 0);
    dt_index_free(idx);
}

/* The memory report counts what the index holds: the matrix by capacity, every record's text and
 * id, its terms and postings. */
static void test_memory_report(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_index *idx = dt_index_new("m", DT_ACHIEVEMENT, 8, &err);
    dt_record r = mk("m0", 5, 0, NAN, NAN, "C.1", NULL);
    dt_tf t[3] = {{1, 1}, {2, 1}, {3, 2}};
    assert_int_equal(dt_index_put(idx, &r, t, 3, 4, NULL, &err), 0);
    dt_index_mem a = {0}, b = {0};
    dt_index_memory(idx, &a);
    assert_int_equal(a.rows, dt_index_capacity(idx) * 8 * sizeof(float));
    assert_true(a.ids >= 3 && a.postings >= 3 * 8 && a.terms >= 3 * sizeof(dt_tf) && a.columns > 0);
    char text[1001];
    memset(text, 'x', 1000);
    text[1000] = 0;
    r = mk("m1-a-longer-id", 5, 0, NAN, NAN, NULL, NULL);
    r.text = strdup(text);
    assert_int_equal(dt_index_put(idx, &r, t, 3, 4, NULL, &err), 0);
    dt_index_memory(idx, &b);
    assert_true(b.records >= a.records + 1001);
    assert_true(b.ids >= a.ids + strlen("m1-a-longer-id") + 1);
    assert_int_equal(b.rows, a.rows); /* capacity unchanged */
    dt_index_free(idx);
}

/* Hashed codes agree with the string functions, component by component. */
static void test_codes_hashed(void **state)
{
    (void)state;
    const char *codes[] = {"C.38.4", "C.38.1", "C.38", "C.381", "C", "A.01.1", "C.38.4.1.2.3.4", ""};
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            dt_codes a, b;
            dt_codes_of(codes[i], NULL, &a);
            dt_codes_of(NULL, codes[j], &b);
            assert_int_equal(a.field_depth, dt_code_depth(codes[i]) < DT_CODE_LEVELS ? dt_code_depth(codes[i]) : DT_CODE_LEVELS);
            assert_int_equal(b.field_depth, 0);
            int want = dt_code_shared_depth(codes[i], codes[j]);
            if (want > DT_CODE_LEVELS) want = DT_CODE_LEVELS;
            assert_int_equal(dt_codes_shared(a.field, a.field_depth, b.region, b.region_depth), want);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_find_replace_remove),
        cmocka_unit_test(test_bm25_reference),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_filters_random),
        cmocka_unit_test(test_compaction_keeps_everything), cmocka_unit_test(test_codes_hashed),
        cmocka_unit_test(test_growth_prepared_then_installed), cmocka_unit_test(test_memory_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
