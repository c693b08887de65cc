/* test_engine.c - tenants, hybrid ranking, filters, batching, explanations, external embeddings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static dt_record rec(const char *tenant, dt_side side, const char *id, const char *title,
                     const char *text)
{
    dt_record r;
    dt_record_init(&r);
    r.tenant = tenant ? strdup(tenant) : NULL;
    r.side = side;
    r.id = strdup(id);
    r.title = title ? strdup(title) : NULL;
    r.text = text ? strdup(text) : NULL;
    return r;
}

static void put(dt_engine *e, dt_record r)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_engine_upsert(e, &r, &err);
    if (rc) fail_msg("upsert %s: %s: %s", r.id, err.field, err.msg);
}

static const char *topics[][2] = {
    {"锂电池隔膜涂层", "陶瓷涂覆隔膜提高锂电池热稳定性，隔膜孔隙率均匀"},
    {"固态电解质", "硫化物固态电解质离子电导率高，固态电池安全性好"},
    {"separator coating", "ceramic coated separator improves lithium battery thermal stability"},
    {"solid electrolyte",
     "sulfide solid state electrolyte with high ionic conductivity for batteries"},
    {"水稻育种", "耐盐碱水稻新品种选育，亩产提高，适合沿海滩涂种植"},
    {"machine vision inspection",
     "deep learning defect detection for printed circuit boards on the line"},
    {"工业视觉检测", "基于深度学习的印刷电路板缺陷视觉检测系统，检测速度快"},
    {"生物医药缓释", "药物缓释微球制剂技术，延长药效，降低给药频次"},
};

/* A corpus of 8 topics x 12 variants per side, in tenant "t". */
static dt_engine *corpus(void)
{
    dt_engine_opts o = dt_engine_opts_default();
    o.dim = 16;
    o.threads = 2;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&o, &err);
    assert_non_null(e);
    char id[32], text[512];
    for (int t = 0; t < 8; t++)
        for (int v = 0; v < 12; v++) {
            snprintf(id, sizeof id, "a%d-%d", t, v);
            snprintf(text, sizeof text, "%s 第%d版 variant %d", topics[t][1], v, v);
            dt_record r = rec("t", DT_ACHIEVEMENT, id, topics[t][0], text);
            r.field = strdup(t < 4 ? "C.38.4" : t == 4 ? "A.01.1" : t < 7 ? "C.39.7" : "C.27.2");
            r.region = strdup(v % 2 ? "CN.32.05" : "CN.44.03");
            r.trl = 1 + v % 9;
            r.modes = v % 3 ? DT_MODE_LICENSE : DT_MODE_TRANSFER;
            r.price_min = 1e5 * (v + 1);
            r.price_max = 2e5 * (v + 1);
            if (v == 11) r.status = DT_CLOSED;
            put(e, r);
            snprintf(id, sizeof id, "d%d-%d", t, v);
            dt_record d = rec("t", DT_DEMAND, id, topics[t][0], topics[t][1]);
            d.field = strdup(t < 4 ? "C.38.4" : t == 4 ? "A.01" : t < 7 ? "C.39" : "C.27");
            d.region = strdup("CN.32.05");
            d.trl = 5;
            d.modes = DT_MODE_LICENSE;
            d.price_max = 5e5;
            put(e, d);
        }
    assert_int_equal(dt_engine_build(e, NULL, &err), 0);
    return e;
}

static void search1(dt_engine *e, const dt_query *q, dt_match_result *r)
{
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    assert_non_null(s);
    int rc = dt_search(s, q, 1, r, &err);
    if (rc) fail_msg("search: %s: %s", err.field, err.msg);
    dt_searcher_free(s);
}

static void test_text_query_finds_topic(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    assert_string_equal(dt_engine_dense_kind(e, "t"), "lsa");
    const char *queries[] = {"锂电池 隔膜 涂层", "solid electrolyte conductivity",
                             "印刷电路板 缺陷 检测"};
    const char *prefix[] = {"a0-", "a3-", "a6-"};
    for (int i = 0; i < 3; i++) {
        dt_query q;
        dt_query_init(&q);
        q.tenant = "t";
        q.text = queries[i];
        q.k = 5;
        dt_match_result r;
        search1(e, &q, &r);
        assert_int_equal(r.n, 5);
        for (size_t j = 0; j < r.n; j++)
            assert_memory_equal(r.v[j].rec->id, prefix[i], 3);
        dt_match_result_free(&r);
    }
    dt_engine_free(e);
}

/* k results are the first k of the full ranking; offset slices it; parts sum to the score; the
 * ranking never increases; every result passes the filter and total_candidates counts them. */
static void test_ranking_consistency(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    dt_index *idx = dt_engine_index(e, "t", DT_ACHIEVEMENT);
    const char *fp[] = {"C.38"};
    for (int variant = 0; variant < 4; variant++) {
        dt_query q;
        dt_query_init(&q);
        q.tenant = "t";
        if (variant % 2) {
            q.record_id = "d1-3";
            q.record_side = DT_DEMAND;
        } else {
            q.text = "battery 电池 separator";
        }
        if (variant >= 2) {
            q.filter.field_prefixes = fp;
            q.filter.n_field_prefixes = 1;
            q.filter.trl_min = 3;
        }
        q.k = 1000;
        dt_match_result all;
        search1(e, &q, &all);
        size_t want = 0;
        for (uint32_t s = 0; s < dt_index_slots(idx); s++)
            want += dt_index_passes(idx, s, &q.filter);
        assert_int_equal(all.total_candidates, want);
        assert_int_equal(all.n, want);
        for (size_t i = 0; i < all.n; i++) {
            const dt_match *m = &all.v[i];
            assert_true(dt_index_passes(idx, m->slot, &q.filter));
            assert_float_equal(m->score, m->dense + m->lexical + m->structured, 1e-4);
            if (i) assert_true(all.v[i - 1].score >= m->score);
        }
        for (size_t k = 1; k <= 7; k += 3)
            for (size_t off = 0; off <= 10; off += 5) {
                q.k = k;
                q.offset = off;
                dt_match_result r;
                search1(e, &q, &r);
                size_t expect = off >= all.n ? 0 : (all.n - off < k ? all.n - off : k);
                assert_int_equal(r.n, expect);
                for (size_t i = 0; i < r.n; i++)
                    assert_string_equal(r.v[i].rec->id, all.v[off + i].rec->id);
                dt_match_result_free(&r);
            }
        dt_match_result_free(&all);
    }
    dt_engine_free(e);
}

/* A batch of queries (one shared GEMM) returns exactly what the queries return one by one. */
static void test_batch_equals_single(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    enum { M = 9 };
    dt_query q[M];
    const char *texts[] = {"电池", "detection deep learning", "水稻 新品种", "缓释", "ceramic"};
    for (int i = 0; i < M; i++) {
        dt_query_init(&q[i]);
        q[i].tenant = "t";
        q[i].k = 4 + (size_t)i;
        if (i < 5) {
            q[i].text = texts[i];
        } else {
            static char ids[4][16];
            snprintf(ids[i - 5], sizeof ids[0], "d%d-%d", i - 3, i);
            q[i].record_id = ids[i - 5];
        }
    }
    q[8].target = DT_DEMAND; /* a different index in the same batch */
    q[8].record_side = DT_ACHIEVEMENT;
    q[8].record_id = "a2-2";
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    dt_match_result batch[M];
    assert_int_equal(dt_search(s, q, M, batch, &err), 0);
    for (int i = 0; i < M; i++) {
        dt_match_result one;
        assert_int_equal(dt_search(s, &q[i], 1, &one, &err), 0);
        assert_int_equal(one.n, batch[i].n);
        for (size_t j = 0; j < one.n; j++) {
            assert_string_equal(one.v[j].rec->id, batch[i].v[j].rec->id);
            assert_float_equal(one.v[j].score, batch[i].v[j].score, 1e-5);
        }
        dt_match_result_free(&one);
        dt_match_result_free(&batch[i]);
    }
    dt_searcher_free(s);
    dt_engine_free(e);
}

static void test_tenant_isolation(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    /* the same text in another tenant is never seen from "t", and vice versa */
    put(e,
        rec("other", DT_ACHIEVEMENT, "secret", "锂电池隔膜涂层", "陶瓷涂覆隔膜提高锂电池热稳定性"));
    assert_null(dt_engine_get(e, "t", DT_ACHIEVEMENT, "secret"));
    assert_non_null(dt_engine_get(e, "other", DT_ACHIEVEMENT, "secret"));
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.text = "锂电池隔膜涂层";
    q.k = 1000;
    dt_match_result r;
    search1(e, &q, &r);
    for (size_t i = 0; i < r.n; i++)
        assert_string_not_equal(r.v[i].rec->id, "secret");
    dt_match_result_free(&r);
    q.tenant = "other";
    search1(e, &q, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].rec->id, "secret");
    dt_match_result_free(&r);
    /* a record id of another tenant is unknown here */
    q.tenant = "other";
    q.text = NULL;
    q.record_id = "d0-0";
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "record_id");
    dt_searcher_free(s);
    dt_engine_free(e);
}

static void test_bad_queries(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    dt_err err = DT_ERR_INIT;
    dt_searcher *s = dt_searcher_new(e, &err);
    dt_match_result r;
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL); /* neither id nor text */
    assert_string_equal(err.field, "query");
    q.text = "x";
    q.record_id = "d0-0";
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL); /* both */
    q.record_id = NULL;
    q.k = 20000;
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_ELIMIT);
    assert_string_equal(err.field, "k");
    q.k = 5;
    dt_weights w = {0, 0, 0};
    q.weights = &w;
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "weights");
    w = (dt_weights){NAN, 1, 0};
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL);
    q.weights = NULL;
    const char *cl[] = {"nowhere"};
    q.clusters = cl;
    q.n_clusters = 1;
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "filter.clusters");
    q.n_clusters = 0;
    q.text = "\xff\xfe bad";
    assert_int_equal(dt_search(s, &q, 1, &r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "text");
    /* a batch names the failing query */
    dt_query qs[2];
    dt_query_init(&qs[0]);
    dt_query_init(&qs[1]);
    qs[0].tenant = qs[1].tenant = "t";
    qs[0].text = "电池";
    qs[1].record_id = "missing";
    dt_match_result rs[2];
    assert_int_equal(dt_search(s, qs, 2, rs, &err), -DT_ENOTFOUND);
    assert_string_equal(err.field, "queries[1].record_id");
    /* an unknown tenant has nothing, but is no error */
    q.tenant = "nobody";
    q.text = "电池";
    assert_int_equal(dt_search(s, &q, 1, &r, &err), 0);
    assert_int_equal(r.n, 0);
    dt_match_result_free(&r);
    dt_searcher_free(s);
    dt_engine_free(e);
}

static void test_explain_and_structured(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.record_id = "d0-0";
    q.explain = true;
    q.k = 3;
    dt_match_result r;
    search1(e, &q, &r);
    assert_true(r.n == 3);
    for (size_t i = 0; i < r.n; i++) {
        const dt_match *m = &r.v[i];
        assert_true(m->n_terms > 0);
        /* every named term occurs in the record (CJK terms literally; words may be stemmed) */
        for (size_t t = 0; t < m->n_terms; t++) {
            assert_true(m->terms[t].weight > 0);
            if ((unsigned char)m->terms[t].term[0] >= 0x80)
                assert_non_null(strstr(m->rec->text, m->terms[t].term)
                                    ? m->rec->text
                                    : strstr(m->rec->title, m->terms[t].term));
        }
        assert_true(m->fit[DT_FIT_FIELD] >= 0 && m->fit[DT_FIT_FIELD] <= 1);
        assert_true(m->fit[DT_FIT_MODES] >= 0);
        assert_true(m->structured > 0);
    }
    dt_match_result_free(&r);
    /* structured fit alone, every record: the score is the mean of the available parts, and the
     * parts of a0-5 are known by hand: same field and region, TRL 6 >= 5, shared licence mode,
     * asking 6e5 against a budget of 5e5 */
    dt_weights w = {0, 0, 1};
    q.weights = &w;
    q.k = 1000;
    search1(e, &q, &r);
    bool seen = false;
    for (size_t i = 0; i < r.n; i++) {
        const dt_match *m = &r.v[i];
        float sum = 0;
        int n = 0;
        for (int p = 0; p < DT_FIT_COUNT; p++)
            if (m->fit[p] >= 0) sum += m->fit[p], n++;
        assert_float_equal(m->score, n ? sum / (float)n : 0, 1e-5);
        if (i) assert_true(r.v[i - 1].score >= m->score);
        if (!strcmp(m->rec->id, "a0-5")) {
            seen = true;
            assert_float_equal(m->fit[DT_FIT_FIELD], 1, 1e-6);
            assert_float_equal(m->fit[DT_FIT_REGION], 1, 1e-6);
            assert_float_equal(m->fit[DT_FIT_TRL], 1, 1e-6);
            assert_float_equal(m->fit[DT_FIT_MODES], 1, 1e-6);
            assert_float_equal(m->fit[DT_FIT_PRICE], 5.0 / 6.0, 1e-5);
        }
        if (!strcmp(m->rec->id, "a4-0")) { /* A.01.1 vs C.38.4; CN.44.03 vs CN.32.05 ; TRL 1 < 5 */
            assert_float_equal(m->fit[DT_FIT_FIELD], 0, 1e-6);
            assert_float_equal(m->fit[DT_FIT_REGION], 1.0 / 3.0, 1e-6);
            assert_float_equal(m->fit[DT_FIT_TRL], 0, 1e-6);
            assert_float_equal(m->fit[DT_FIT_MODES], 0, 1e-6);
        }
    }
    assert_true(seen);
    dt_match_result_free(&r);
    dt_engine_free(e);
}

/* Records with external embeddings rank by cosine, fused with lexical. */
static void test_external_embeddings(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(NULL, &err);
    enum { N = 60, D = 8 };
    float emb[N][D];
    srand(3);
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        dt_record r = rec(NULL, DT_ACHIEVEMENT, id, "same words everywhere",
                          i == 7 ? "unique marker" : "filler");
        r.embedding = malloc(D * sizeof(float));
        r.dim = D;
        for (int j = 0; j < D; j++)
            r.embedding[j] = emb[i][j] = (float)(rand() % 2001 - 1000) / 1000.0f;
        put(e, r);
    }
    dt_record qd = rec(NULL, DT_DEMAND, "q", "query", "unique marker");
    qd.embedding = malloc(D * sizeof(float));
    qd.dim = D;
    float qv[D];
    for (int j = 0; j < D; j++)
        qd.embedding[j] = qv[j] = (float)(rand() % 2001 - 1000) / 1000.0f;
    put(e, qd);
    assert_string_equal(dt_engine_dense_kind(e, NULL), "external");
    dt_engine_build(e, NULL, &err); /* leaves external vectors alone */
    /* a wrong dimension is refused, naming the field, and nothing changes */
    dt_record bad = rec(NULL, DT_ACHIEVEMENT, "bad", "x", "y");
    bad.embedding = calloc(3, sizeof(float));
    bad.embedding[0] = 1;
    bad.dim = 3;
    assert_int_equal(dt_engine_upsert(e, &bad, &err), -DT_EINVAL);
    assert_string_equal(err.field, "embedding");
    dt_record_free(&bad);
    assert_null(dt_engine_get(e, NULL, DT_ACHIEVEMENT, "bad"));

    double cosv[N], qn = 0;
    for (int j = 0; j < D; j++)
        qn += (double)qv[j] * qv[j];
    for (int i = 0; i < N; i++) {
        double dot = 0, n = 0;
        for (int j = 0; j < D; j++)
            dot += (double)emb[i][j] * qv[j], n += (double)emb[i][j] * emb[i][j];
        cosv[i] = dot / sqrt(n * qn);
    }
    dt_query q;
    dt_query_init(&q);
    q.record_id = "q";
    q.k = N;
    dt_weights dense = {1, 0, 0};
    q.weights = &dense;
    dt_match_result r;
    search1(e, &q, &r);
    assert_int_equal(r.n, N);
    for (size_t i = 0; i < r.n; i++) {
        int id = atoi(r.v[i].rec->id + 1);
        assert_float_equal(r.v[i].score, cosv[id], 1e-4);
        if (i) assert_true(cosv[atoi(r.v[i - 1].rec->id + 1)] >= cosv[id] - 1e-6);
    }
    dt_match_result_free(&r);
    /* fusion: 0.5 cosine + 0.5 normalised BM25; only e7 shares "unique marker" */
    dt_weights fused = {0.5f, 0.5f, 0};
    q.weights = &fused;
    search1(e, &q, &r);
    for (size_t i = 0; i < r.n; i++) {
        int id = atoi(r.v[i].rec->id + 1);
        assert_float_equal(r.v[i].dense, 0.5 * cosv[id], 1e-4);
        if (id == 7)
            assert_float_equal(r.v[i].lexical, 0.5, 1e-4); /* the best lexical match scores 1 */
        else
            assert_true(r.v[i].lexical < 0.5f);
    }
    dt_match_result_free(&r);
    dt_engine_free(e);
}

static void test_delete_and_replace(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    uint64_t ep = dt_engine_epoch(e, "t");
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_engine_delete(e, "t", DT_ACHIEVEMENT, "a0-0", &err), 0);
    assert_true(dt_engine_epoch(e, "t") > ep);
    assert_int_equal(dt_engine_delete(e, "t", DT_ACHIEVEMENT, "a0-0", &err), -DT_ENOTFOUND);
    assert_int_equal(dt_engine_delete(e, "zz", DT_ACHIEVEMENT, "a0-0", &err), -DT_ENOTFOUND);
    put(e, rec("t", DT_ACHIEVEMENT, "a0-1", "replaced", "完全不同的内容 quantum"));
    const dt_record *r = dt_engine_get(e, "t", DT_ACHIEVEMENT, "a0-1");
    assert_string_equal(r->title, "replaced");
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.text = "quantum";
    q.k = 3;
    dt_match_result m;
    search1(e, &q, &m);
    assert_true(m.n >= 1);
    assert_string_equal(m.v[0].rec->id, "a0-1");
    dt_match_result_free(&m);
    /* an invalid record is refused and the stored one stays */
    dt_record bad = rec("t", DT_ACHIEVEMENT, "a0-1", "x", "y");
    bad.trl = 12;
    assert_int_equal(dt_engine_upsert(e, &bad, &err), -DT_EINVAL);
    assert_string_equal(err.field, "trl");
    dt_record_free(&bad);
    assert_string_equal(dt_engine_get(e, "t", DT_ACHIEVEMENT, "a0-1")->title, "replaced");
    dt_engine_free(e);
}

static void test_clusters(void **state)
{
    (void)state;
    dt_engine *e = corpus();
    dt_err err = DT_ERR_INIT;
    const char *txt = "# clusters\nyrd\tCN.31\nyrd\tCN.32\n\ngba\tCN.44\n";
    assert_int_equal(dt_engine_parse_clusters(e, txt, strlen(txt), &err), 0);
    size_t n;
    assert_non_null(dt_engine_cluster(e, "yrd", &n));
    assert_int_equal(n, 2);
    const char *bad = "yrd CN.31\n";
    assert_true(dt_engine_parse_clusters(e, bad, strlen(bad), &err) < 0);
    assert_non_null(strstr(err.msg, "line 1"));
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.text = "电池";
    q.k = 1000;
    const char *cl[] = {"gba"};
    q.clusters = cl;
    q.n_clusters = 1;
    dt_match_result r;
    search1(e, &q, &r);
    assert_true(r.n > 0);
    for (size_t i = 0; i < r.n; i++)
        assert_string_equal(r.v[i].rec->region, "CN.44.03");
    dt_match_result_free(&r);
    /* clusters defined after the records: the region fit knows CN.32.05 and CN.31.01 share "yrd" */
    dt_record d = rec("t", DT_DEMAND, "d-sh", "电池", "锂电池");
    d.region = strdup("CN.31.01");
    put(e, d);
    dt_query qr;
    dt_query_init(&qr);
    qr.tenant = "t";
    qr.record_id = "d-sh";
    qr.k = 1000;
    qr.explain = true;
    search1(e, &qr, &r);
    assert_true(r.n > 0);
    for (size_t i = 0; i < r.n; i++) {
        float want = !strcmp(r.v[i].rec->region, "CN.32.05") ? 0.5f : 1.0f / 3.0f; /* cluster / "CN" only */
        assert_float_equal(r.v[i].fit[DT_FIT_REGION], want, 1e-6);
    }
    dt_match_result_free(&r);
    dt_engine_free(e);
}

/* A basis stored and installed in a fresh engine reproduces every dense row bit for bit, and a
 * bad basis is refused without touching the tenant. */
static void test_basis_round_trip(void **state)
{
    (void)state;
    dt_engine *a = corpus();
    dt_engine_basis b;
    assert_int_equal(dt_engine_get_basis(a, "t", &b), 1);
    assert_true(b.n_terms > 0 && b.dim == 16);
    assert_int_equal(dt_engine_get_basis(a, "nobody", &b), -DT_ENOTFOUND);
    dt_engine_get_basis(a, "t", &b);
    dt_engine_opts o = dt_engine_opts_default();
    o.dim = 16;
    dt_err err = DT_ERR_INIT;
    dt_engine *c = dt_engine_new(&o, &err);
    assert_int_equal(dt_engine_set_basis(c, "t", &b, &err), 0);
    /* records arrive after the basis, as when a snapshot is loaded: folded in on upsert */
    for (int side = 0; side < 2; side++) {
        dt_index *ia = dt_engine_index(a, "t", (dt_side)side);
        for (uint32_t s = 0; s < dt_index_slots(ia); s++) {
            if (!dt_index_live(ia, s)) continue;
            dt_record r;
            assert_int_equal(dt_record_copy(&r, dt_index_record(ia, s), &err), 0);
            assert_int_equal(dt_engine_upsert(c, &r, &err), 0);
        }
    }
    for (int side = 0; side < 2; side++) {
        dt_index *ia = dt_engine_index(a, "t", (dt_side)side), *ic = dt_engine_index(c, "t", (dt_side)side);
        assert_int_equal(dt_index_count(ia), dt_index_count(ic));
        for (uint32_t s = 0; s < dt_index_slots(ia); s++) {
            if (!dt_index_live(ia, s)) continue;
            int64_t t = dt_index_find(ic, dt_index_record(ia, s)->id);
            assert_true(t >= 0);
            assert_memory_equal(dt_index_row(ia, s), dt_index_row(ic, (uint32_t)t), 16 * sizeof(float));
        }
    }
    dt_engine_basis bad = b;
    bad.dim = 0;
    assert_int_equal(dt_engine_set_basis(c, "t", &bad, &err), -DT_EINVAL);
    assert_string_equal(dt_engine_dense_kind(c, "t"), "lsa");
    dt_engine_free(c);
    dt_engine_free(a);
}

/* Top-10 ids of a text query, as one string. */
static void top_ids(dt_engine *e, const char *text, char *out, size_t n)
{
    dt_query q;
    dt_query_init(&q);
    q.tenant = "t";
    q.target = DT_ACHIEVEMENT;
    q.text = text;
    q.k = 10;
    dt_match_result r;
    search1(e, &q, &r);
    out[0] = '\0';
    for (size_t i = 0; i < r.n; i++) {
        strncat(out, r.v[i].rec->id, n - strlen(out) - 1);
        strncat(out, " ", n - strlen(out) - 1);
    }
    dt_match_result_free(&r);
}

/* The two-step compaction, re-learn and batch upsert the daemon runs off the write lock give what
 * the one-step calls give: the same records, rows, basis and rankings. A searcher may use the
 * engine between prepare and install; install refuses a tenant that changed meanwhile. */
/* The text of record i of the re-learn test: words picked by i, so that records differ. */
static void relearn_text(int i, char *buf, size_t n)
{
    static const char *const w[] = {"anode",  "cathode", "polymer", "ceramic",  "graphene", "silicon",
                                    "sensor", "laser",   "coating", "catalyst", "membrane"};
    snprintf(buf, n, "battery separator %s lithium %s %s", w[i % 11], w[(i * 7 + 3) % 11], w[(i / 11) % 11]);
}

/* A re-learn in steps whose index is compacted between its begin and its projection (slots
 * renumbered, the index object the same): every record still gets its own row - the one an upsert
 * of the same record computes on the new basis. */
static void test_relearn_steps_survive_a_compaction(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(NULL, &err);
    char id[16], text[96];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "a%d", i);
        relearn_text(i, text, sizeof text);
        put(e, rec("t", DT_ACHIEVEMENT, id, NULL, text));
    }
    dt_engine_relearn *rl = NULL;
    assert_int_equal(dt_engine_relearn_begin(e, "t", &rl, &err), 0);
    assert_non_null(rl);
    assert_int_equal(dt_engine_relearn_fit(rl, &err), 0);
    dt_index *idx = dt_engine_index(e, "t", DT_ACHIEVEMENT);
    uint64_t gen = dt_index_generation(idx);
    for (int i = 0; i < 15; i++) {
        snprintf(id, sizeof id, "a%d", i);
        assert_int_equal(dt_engine_delete(e, "t", DT_ACHIEVEMENT, id, &err), 0);
    }
    assert_int_equal(dt_engine_compact(e, "t", &err), 0);
    assert_true(dt_index_generation(idx) > gen); /* renumbered (deletes compact too, undeferred) */
    for (int i = 100; i < 103; i++) {
        snprintf(id, sizeof id, "a%d", i);
        relearn_text(i, text, sizeof text);
        put(e, rec("t", DT_ACHIEVEMENT, id, NULL, text));
    }
    size_t left = 0;
    assert_int_equal(dt_engine_relearn_catch_up(e, rl, 1000, &left, &err), 0);
    assert_int_equal(dt_engine_relearn_project(e, rl, &err), 0);
    assert_int_equal(dt_engine_relearn_install(e, rl, &err), 0);
    dt_engine_relearn_free(rl);
    size_t dim = dt_index_dim(idx);
    assert_true(dim > 0);
    float *row = malloc(dim * sizeof *row);
    for (int i = 15; i < 103; i = i == 39 ? 100 : i + 1) {
        snprintf(id, sizeof id, "a%d", i);
        int64_t s = dt_index_find(idx, id);
        assert_true(s >= 0);
        memcpy(row, dt_index_row(idx, (uint32_t)s), dim * sizeof *row);
        relearn_text(i, text, sizeof text);
        put(e, rec("t", DT_ACHIEVEMENT, id, NULL, text));
        s = dt_index_find(idx, id);
        assert_memory_equal(dt_index_row(idx, (uint32_t)s), row, dim * sizeof *row);
    }
    free(row);
    dt_engine_free(e);
}

static void test_two_step_writes_equal_one_step(void **state)
{
    (void)state;
    dt_engine *a = corpus(), *b = corpus();
    dt_engine_defer_compaction(b, true);
    dt_err err = DT_ERR_INIT;
    char ids[40];
    for (int t = 0; t < 8; t++)
        for (int v = 0; v < 4; v++) {
            snprintf(ids, sizeof ids, "a%d-%d", t, v);
            assert_int_equal(dt_engine_delete(a, "t", DT_ACHIEVEMENT, ids, &err), 0);
            assert_int_equal(dt_engine_delete(b, "t", DT_ACHIEVEMENT, ids, &err), 0);
        }
    /* a: compacted inline; b: tombstones left until the two steps */
    size_t slots_a = dt_index_slots(dt_engine_index(a, "t", DT_ACHIEVEMENT));
    size_t slots_b = dt_index_slots(dt_engine_index(b, "t", DT_ACHIEVEMENT));
    assert_true(slots_a < slots_b);
    dt_engine_compaction *c = NULL;
    assert_int_equal(dt_engine_compaction_prepare(b, "t", &c, &err), 0);
    assert_non_null(c);
    char before[512], mid[512], after[512], ref[512];
    top_ids(b, "锂电池隔膜涂层", mid, sizeof mid); /* the old index still serves */
    assert_int_equal(dt_engine_compaction_install(b, c, &err), 0);
    dt_engine_compaction_free(c);
    /* every tombstone gone (a compacted at the 24th delete and keeps the last 8) */
    assert_int_equal(dt_index_slots(dt_engine_index(b, "t", DT_ACHIEVEMENT)),
                     dt_index_count(dt_engine_index(b, "t", DT_ACHIEVEMENT)));
    assert_true(dt_index_slots(dt_engine_index(b, "t", DT_ACHIEVEMENT)) <= slots_a);
    top_ids(a, "锂电池隔膜涂层", ref, sizeof ref);
    top_ids(b, "锂电池隔膜涂层", after, sizeof after);
    assert_string_equal(ref, after);
    assert_string_equal(mid, after);
    assert_int_equal(dt_engine_compaction_prepare(b, "t", &c, &err), 0);
    assert_null(c); /* nothing due any more */

    /* a batch upserted in two steps, then the re-learn in two steps */
    dt_record recs[3];
    dt_record *ptrs[3];
    for (int i = 0; i < 3; i++) {
        snprintf(ids, sizeof ids, "n%d", i);
        recs[i] = rec("t", DT_ACHIEVEMENT, ids, topics[i][0], topics[i][1]);
        ptrs[i] = &recs[i];
        dt_record r2;
        assert_int_equal(dt_record_copy(&r2, &recs[i], &err), 0);
        put(a, r2);
    }
    dt_engine_batch *bt = NULL;
    assert_int_equal(dt_engine_batch_prepare(b, ptrs, 3, &bt, &err), 0);
    for (size_t i = 0; i < 3; i++) assert_int_equal(dt_engine_batch_upsert(b, bt, i, &recs[i], &err), 0);
    dt_engine_batch_free(bt);
    assert_int_equal(dt_engine_epoch(a, "t"), dt_engine_epoch(b, "t"));
    /* rows projected at prepare are the rows dt_engine_upsert gives */
    for (int i = 0; i < 3; i++) {
        snprintf(ids, sizeof ids, "n%d", i);
        dt_index *ia = dt_engine_index(a, "t", DT_ACHIEVEMENT), *ib = dt_engine_index(b, "t", DT_ACHIEVEMENT);
        int64_t sa = dt_index_find(ia, ids), sb = dt_index_find(ib, ids);
        assert_true(sa >= 0 && sb >= 0);
        assert_memory_equal(dt_index_row(ia, (uint32_t)sa), dt_index_row(ib, (uint32_t)sb), 16 * sizeof(float));
    }
    assert_int_equal(dt_engine_build(a, "t", &err), 0);
    dt_engine_relearn *rl = NULL;
    assert_int_equal(dt_engine_relearn_prepare(b, "t", &rl, &err), 0);
    assert_non_null(rl);
    top_ids(b, "固态电解质", before, sizeof before); /* the old basis still serves */
    assert_int_equal(dt_engine_relearn_install(b, rl, &err), 0);
    dt_engine_relearn_free(rl);
    assert_int_equal(dt_engine_epoch(a, "t"), dt_engine_epoch(b, "t"));
    dt_engine_basis ba, bb;
    assert_int_equal(dt_engine_get_basis(a, "t", &ba), 1);
    assert_int_equal(dt_engine_get_basis(b, "t", &bb), 1);
    assert_int_equal(ba.n_terms, bb.n_terms);
    assert_memory_equal(ba.proj, bb.proj, ba.n_terms * ba.dim * sizeof(float));
    for (int side = 0; side < 2; side++) {
        dt_index *ia = dt_engine_index(a, "t", (dt_side)side), *ib = dt_engine_index(b, "t", (dt_side)side);
        assert_int_equal(dt_index_count(ia), dt_index_count(ib));
        for (uint32_t sl = 0; sl < dt_index_slots(ia); sl++) {
            if (!dt_index_live(ia, sl)) continue;
            int64_t o = dt_index_find(ib, dt_index_record(ia, sl)->id);
            assert_true(o >= 0);
            assert_memory_equal(dt_index_row(ia, sl), dt_index_row(ib, (uint32_t)o), 16 * sizeof(float));
        }
    }
    top_ids(a, "固态电解质", ref, sizeof ref);
    top_ids(b, "固态电解质", after, sizeof after);
    assert_string_equal(ref, after);
    /* a change between prepare and install: refused, nothing swapped */
    assert_int_equal(dt_engine_relearn_prepare(b, "t", &rl, &err), 0);
    assert_int_equal(dt_engine_delete(b, "t", DT_ACHIEVEMENT, "n0", &err), 0);
    uint64_t ep = dt_engine_epoch(b, "t");
    assert_int_equal(dt_engine_relearn_install(b, rl, &err), -DT_EINVAL);
    assert_int_equal(dt_engine_epoch(b, "t"), ep);
    dt_engine_relearn_free(rl);
    (void)before;
    dt_engine_free(a);
    dt_engine_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_query_finds_topic),
        cmocka_unit_test(test_relearn_steps_survive_a_compaction),
        cmocka_unit_test(test_ranking_consistency),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_tenant_isolation),
        cmocka_unit_test(test_bad_queries),
        cmocka_unit_test(test_explain_and_structured),
        cmocka_unit_test(test_external_embeddings),
        cmocka_unit_test(test_delete_and_replace),
        cmocka_unit_test(test_clusters),
        cmocka_unit_test(test_two_step_writes_equal_one_step),                cmocka_unit_test(test_basis_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
