/* eval.c - `dovetail eval DIR`: relevance of the rankers on a BEIR-format data set.
 *
 * DIR holds corpus.jsonl ({"_id","title","text"}), queries.jsonl ({"_id","text",...}) and
 * qrels/test.tsv (query-id, corpus-id, score; a header line is skipped). The corpus is loaded as
 * achievements of tenant "eval" and every judged query is run against it: as a free-text query, or,
 * when the query names the corpus document it is ("corpus_id", a document used as the query), as a
 * query by that stored record (the engine's record-to-record path), which never returns the
 * document itself. The rrf ranker fuses the lexical and dense lists by reciprocal rank (k = 60).
 * Metrics follow trec_eval / BEIR: nDCG@10 with linear gain (the judged grade), recall@100 and
 * MRR@10 counting grade > 0 as relevant; queries without a relevant judgement are skipped.
 * A peer's figures, when DIR/SOURCE.txt states them ("nDCG@10 0.357 recall@100 ... MRR@10 ..."),
 * are printed alongside.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "topk.h"

typedef struct judgement {
    char *doc;
    int grade;
} judgement;

typedef struct equery {
    char *id;
    char *text;
    char *self; /* the corpus document this query is ("corpus_id"), never counted as a result; or NULL */
    judgement *j;
    size_t nj, capj;
} equery;

typedef struct ranker {
    const char *name;
    dt_weights w;
    int prf;
    bool rrf; /* reciprocal rank fusion of the lexical (engine's feedback setting) and dense lists */
} ranker;

#define RRF_K 60.0    /* Cormack, Clarke & Buettcher (2009) */
#define RRF_DEPTH 100 /* each list's depth */

typedef struct fused {
    const char *id;
    uint32_t slot;
    double score;
    size_t first; /* best rank in either list, for ties */
} fused;

static int cmp_fused(const void *a, const void *b)
{
    const fused *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Reciprocal rank fusion of two result lists into ids (at most RRF_DEPTH, best first): each
 * document scores the sum over the lists of 1 / (RRF_K + rank), rank counted from 1. */
static size_t rrf_fuse(const dt_match_result *a, const dt_match_result *b, fused *buf, const char **ids)
{
    size_t n = 0;
    const dt_match_result *lists[2] = {a, b};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            size_t j;
            for (j = 0; j < n; j++)
                if (buf[j].slot == lists[l]->v[i].slot) break;
            if (j == n) buf[n++] = (fused){lists[l]->v[i].rec->id, lists[l]->v[i].slot, 0, i};
            buf[j].score += 1.0 / (RRF_K + (double)i + 1);
            if (i < buf[j].first) buf[j].first = i;
        }
    qsort(buf, n, sizeof *buf, cmp_fused);
    if (n > RRF_DEPTH) n = RRF_DEPTH;
    for (size_t i = 0; i < n; i++) ids[i] = buf[i].id;
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: dovetail eval DIR [options]\n"
            "\n"
            "Runs every judged query of a BEIR-format data set (DIR/corpus.jsonl, DIR/queries.jsonl,\n"
            "DIR/qrels/test.tsv) and prints nDCG@10, recall@100 and MRR@10 per ranker.\n"
            "  --rankers LIST      comma-separated, from lexical (BM25), lexical-prf (BM25 + feedback),\n"
            "                      dense (LSA), hybrid (the defaults), rrf (reciprocal rank fusion of\n"
            "                      the lexical and dense lists, k 60); default: all five\n"
            "  --as-text           run queries that name a corpus document (\"corpus_id\") as free text\n"
            "                      rather than by that record (it is still never counted as a result)\n"
            "  --query-field F     query text from these fields of queries.jsonl, comma-separated and\n"
            "                      concatenated (default: text); e.g. title,text for long queries\n"
            "  --qrels FILE        judgements file (default DIR/qrels/test.tsv)\n"
            "  --weights D,L,S     weights of the hybrid ranker (default: the engine's)\n"
            "  --dim N             LSA dimension (default 256)\n"
            "  --limit N           only the first N judged queries\n"
            "Engine parameters (to study them; the defaults are the engine's):\n"
            "  --bm25-k1 X, --bm25-b X, --prf-docs N, --prf-terms N, --prf-weight X, --no-prf,\n"
            "  --prf-max-terms N, --title-weight N, --fusion-depth N (0: plain cosine),\n"
            "  --no-fusion-adapt, --lsa-power-iters N\n"
            "  --json              JSON output\n");
}

static int find_query(equery *qs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(qs[i].id, id) == 0) return (int)i;
    return -1;
}

static void free_queries(equery *qs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(qs[i].id);
        free(qs[i].text);
        free(qs[i].self);
        for (size_t j = 0; j < qs[i].nj; j++) free(qs[i].j[j].doc);
        free(qs[i].j);
    }
    free(qs);
}

/* Reads queries.jsonl; the text is the listed fields joined by spaces. */
static int read_queries(const char *path, const char *fields, equery **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    equery *qs = NULL;
    size_t nq = 0, cap = 0, line = 0;
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&buf, &bcap, f)) > 0) {
        line++;
        json_error_t je;
        json_t *o = json_loadb(buf, (size_t)len, 0, &je);
        if (!o || !json_is_object(o)) {
            fprintf(stderr, "%s:%zu: not a JSON object: %s\n", path, line, o ? "" : je.text);
            json_decref(o);
            if (buf[strspn(buf, " \t\r\n")] == 0) continue;
            rc = -1;
            break;
        }
        const char *id = json_string_value(json_object_get(o, "_id"));
        if (!id) {
            fprintf(stderr, "%s:%zu: _id: missing or not a string\n", path, line);
            json_decref(o);
            rc = -1;
            break;
        }
        char *text = NULL;
        size_t tl = 0;
        FILE *m = open_memstream(&text, &tl);
        char fl[256];
        snprintf(fl, sizeof fl, "%s", fields);
        char *save = NULL;
        for (char *fn = strtok_r(fl, ",", &save); fn && m; fn = strtok_r(NULL, ",", &save)) {
            const char *v = json_string_value(json_object_get(o, fn));
            if (v && *v) fprintf(m, "%s%s", tl || ftell(m) ? " " : "", v);
        }
        if (m) fclose(m);
        if (nq == cap) {
            cap = cap ? cap * 2 : 256;
            equery *q2 = realloc(qs, cap * sizeof *q2);
            if (!q2) {
                free(text);
                json_decref(o);
                rc = -1;
                break;
            }
            qs = q2;
        }
        memset(&qs[nq], 0, sizeof qs[nq]);
        qs[nq].id = strdup(id);
        qs[nq].text = text;
        const char *self = json_string_value(json_object_get(o, "corpus_id"));
        qs[nq].self = self ? strdup(self) : NULL;
        nq++;
        if (self && !qs[nq - 1].self) {
            fprintf(stderr, "%s:%zu: out of memory\n", path, line);
            json_decref(o);
            rc = -1;
            break;
        }
        json_decref(o);
    }
    free(buf);
    fclose(f);
    *out = qs;
    *n = nq;
    return rc;
}

static int read_qrels(const char *path, equery *qs, size_t nq, size_t *n_judged)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t bcap = 0, line = 0, unknown = 0;
    *n_judged = 0;
    while (getline(&buf, &bcap, f) > 0) {
        line++;
        char qid[256], did[256];
        int grade;
        if (sscanf(buf, "%255s %255s %d", qid, did, &grade) != 3) {
            if (line == 1) continue; /* header */
            if (buf[strspn(buf, " \t\r\n")] == 0) continue;
            fprintf(stderr, "%s:%zu: expected 'query-id corpus-id score'\n", path, line);
            free(buf);
            fclose(f);
            return -1;
        }
        int qi = find_query(qs, nq, qid);
        if (qi < 0) {
            unknown++;
            continue;
        }
        equery *q = &qs[qi];
        if (q->nj == q->capj) {
            q->capj = q->capj ? q->capj * 2 : 8;
            judgement *j = realloc(q->j, q->capj * sizeof *j);
            if (!j) break;
            q->j = j;
        }
        q->j[q->nj++] = (judgement){strdup(did), grade};
        (*n_judged)++;
    }
    free(buf);
    fclose(f);
    if (unknown) fprintf(stderr, "%s: %zu judgements name queries not in queries.jsonl (ignored)\n", path, unknown);
    return 0;
}

static int grade_of(const equery *q, const char *doc)
{
    for (size_t i = 0; i < q->nj; i++)
        if (strcmp(q->j[i].doc, doc) == 0) return q->j[i].grade;
    return 0;
}

static int cmp_int_desc(const void *a, const void *b)
{
    return *(const int *)b - *(const int *)a;
}

typedef struct metrics {
    double ndcg10, recall100, mrr10;
    size_t n;
    double seconds;
} metrics;

static void score_query(const equery *q, const char *const *ids, size_t n, metrics *m)
{
    int grades[1024];
    size_t ng = 0, relevant = 0;
    for (size_t i = 0; i < q->nj && ng < 1024; i++)
        if (q->j[i].grade > 0) grades[ng++] = q->j[i].grade, relevant++;
    if (!relevant) return;
    qsort(grades, ng, sizeof *grades, cmp_int_desc);
    double dcg = 0, idcg = 0, rr = 0;
    size_t found = 0;
    for (size_t i = 0; i < n && i < 100; i++) {
        int g = grade_of(q, ids[i]);
        if (g <= 0) continue;
        found++;
        if (i < 10) {
            dcg += g / log2((double)i + 2);
            if (rr == 0) rr = 1.0 / (double)(i + 1);
        }
    }
    for (size_t i = 0; i < ng && i < 10; i++) idcg += grades[i] / log2((double)i + 2);
    m->ndcg10 += idcg > 0 ? dcg / idcg : 0;
    m->recall100 += (double)found / (double)relevant;
    m->mrr10 += rr;
    m->n++;
}

/* Reads "nDCG@10 X  recall@100 Y  MRR@10 Z" from DIR/SOURCE.txt, when present. */
static bool peer_figures(const char *dir, double *ndcg, double *recall, double *mrr, char *label, size_t lsz)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/SOURCE.txt", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char *buf = NULL;
    size_t cap = 0;
    bool ok = false;
    char measured[512] = "";
    while (!ok && getline(&buf, &cap, f) > 0) {
        if (strstr(buf, "measured")) snprintf(measured, sizeof measured, "%s", buf);
        char *p = strstr(buf, "nDCG@10 ");
        if (p && sscanf(p, "nDCG@10 %lf recall@100 %lf MRR@10 %lf", ndcg, recall, mrr) == 3) {
            ok = true;
            /* "Peer figure, measured on the same files with Xapian 1.4 BM25 (English ..." */
            const char *w = strstr(measured, " with ");
            snprintf(label, lsz, "%s", w ? w + 6 : "peer");
            char *end = strpbrk(label, "(,\n");
            if (end) *end = 0;
            size_t n = strlen(label);
            while (n && label[n - 1] == ' ') label[--n] = 0;
        }
    }
    free(buf);
    fclose(f);
    return ok;
}

int cmd_eval(int argc, char **argv)
{
    enum { O_RANKERS = 256, O_QFIELD, O_QRELS, O_WEIGHTS, O_DIM, O_LIMIT, O_JSON, O_K1, O_B, O_PRF_DOCS, O_PRF_TERMS,
           O_PRF_WEIGHT, O_NO_PRF, O_POWER, O_AS_TEXT, O_PRF_MAX, O_TITLE_W, O_FUSION_DEPTH, O_NO_ADAPT };
    static const struct option opts[] = {
        {"rankers", required_argument, 0, O_RANKERS}, {"query-field", required_argument, 0, O_QFIELD},
        {"qrels", required_argument, 0, O_QRELS},     {"weights", required_argument, 0, O_WEIGHTS},
        {"dim", required_argument, 0, O_DIM},         {"limit", required_argument, 0, O_LIMIT},
        {"json", no_argument, 0, O_JSON},             {"help", no_argument, 0, 'h'},
        {"bm25-k1", required_argument, 0, O_K1},      {"bm25-b", required_argument, 0, O_B},
        {"prf-docs", required_argument, 0, O_PRF_DOCS}, {"prf-terms", required_argument, 0, O_PRF_TERMS},
        {"prf-weight", required_argument, 0, O_PRF_WEIGHT}, {"no-prf", no_argument, 0, O_NO_PRF},
        {"lsa-power-iters", required_argument, 0, O_POWER}, {"as-text", no_argument, 0, O_AS_TEXT},
        {"prf-max-terms", required_argument, 0, O_PRF_MAX}, {"title-weight", required_argument, 0, O_TITLE_W},
        {"fusion-depth", required_argument, 0, O_FUSION_DEPTH}, {"no-fusion-adapt", no_argument, 0, O_NO_ADAPT},
        {0, 0, 0, 0}};
    const char *rankers_s = "lexical,lexical-prf,dense,hybrid,rrf", *qfield = "text", *qrels = NULL;
    dt_engine_opts eo = dt_engine_opts_default();
    dt_weights hw = eo.weights;
    bool have_w = false; /* --weights given: the hybrid uses them as given (no per-query adaptation) */
    size_t limit = 0;
    bool json = false, as_text = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_RANKERS: rankers_s = optarg; break;
        case O_QFIELD: qfield = optarg; break;
        case O_QRELS: qrels = optarg; break;
        case O_WEIGHTS:
            if (cli_parse_weights(optarg, &hw)) return 2;
            have_w = true;
            break;
        case O_DIM: eo.dim = (size_t)strtoul(optarg, NULL, 10); break;
        case O_LIMIT: limit = (size_t)strtoul(optarg, NULL, 10); break;
        case O_JSON: json = true; break;
        case O_K1: eo.bm25_k1 = strtof(optarg, NULL); break;
        case O_B: eo.bm25_b = strtof(optarg, NULL); break;
        case O_PRF_DOCS: eo.prf_docs = (size_t)strtoul(optarg, NULL, 10); break;
        case O_PRF_TERMS: eo.prf_terms = (size_t)strtoul(optarg, NULL, 10); break;
        case O_PRF_WEIGHT: eo.prf_weight = strtof(optarg, NULL); break;
        case O_NO_PRF: eo.prf = false; break;
        case O_POWER: eo.lsa_power_iters = atoi(optarg); break;
        case O_AS_TEXT: as_text = true; break;
        case O_PRF_MAX: eo.prf_max_terms = (size_t)strtoul(optarg, NULL, 10); break;
        case O_TITLE_W: eo.title_weight = (unsigned)strtoul(optarg, NULL, 10); break;
        case O_FUSION_DEPTH: eo.fusion_depth = (size_t)strtoul(optarg, NULL, 10); break;
        case O_NO_ADAPT: eo.fusion_adapt = false; break;
        case 'h': eval_usage(stdout); return 0;
        default: eval_usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        eval_usage(stderr);
        return 2;
    }
    if (!(eo.bm25_k1 > 0 && eo.bm25_b >= 0 && eo.bm25_b <= 1 && eo.prf_weight >= 0) || eo.lsa_power_iters < 0) {
        fprintf(stderr, "dovetail eval: bad engine parameter (k1 > 0, 0 <= b <= 1, prf weight >= 0)\n");
        return 2;
    }
    if (eo.dim < 1 || eo.dim > 4096) {
        fprintf(stderr, "--dim: expected 1..4096\n");
        return 2;
    }
    const char *dir = argv[optind];
    ranker all[] = {{"lexical", {0, 1, 0}, 0, false},
                    {"lexical-prf", {0, 1, 0}, 1, false},
                    {"dense", {1, 0, 0}, 0, false},
                    {"hybrid", hw, -1, false},
                    {"rrf", {0, 1, 0}, -1, true}};
    ranker chosen[8];
    size_t nr = 0;
    char rl[256];
    snprintf(rl, sizeof rl, "%s", rankers_s);
    char *save = NULL;
    for (char *t = strtok_r(rl, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof all / sizeof all[0]; i++)
            if (!strcmp(all[i].name, t)) break;
        if (i == sizeof all / sizeof all[0] || nr == 8) {
            fprintf(stderr, "--rankers: unknown ranker '%s' (lexical, lexical-prf, dense, hybrid, rrf)\n", t);
            return 2;
        }
        chosen[nr++] = all[i];
    }

    dt_topk_blas_single();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    eo.threads = ncpu > 0 ? (int)ncpu : 1;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    if (!e) {
        fprintf(stderr, "dovetail: %s\n", err.msg);
        return 3;
    }
    char path[4096];
    int status = 0;
    equery *qs = NULL;
    size_t nq = 0, nj = 0, docs = 0;
    double t0 = now_s();
    snprintf(path, sizeof path, "%s/corpus.jsonl", dir);
    if (cli_load(e, path, DT_ACHIEVEMENT, "eval", false, json, &docs) < 0) status = 1;
    double t_load = now_s() - t0;
    if (status == 0) {
        t0 = now_s();
        if (dt_engine_build(e, NULL, &err) < 0) {
            fprintf(stderr, "dovetail eval: building the dense index: %s\n", err.msg);
            status = 3;
        }
    }
    double t_build = now_s() - t0;
    snprintf(path, sizeof path, "%s/queries.jsonl", dir);
    if (status == 0 && read_queries(path, qfield, &qs, &nq) < 0) status = 1;
    if (!qrels) snprintf(path, sizeof path, "%s/qrels/test.tsv", dir), qrels = path;
    if (status == 0 && read_qrels(qrels, qs, nq, &nj) < 0) status = 1;

    /* the judged queries, in file order */
    size_t *run = calloc(nq ? nq : 1, sizeof *run), nrun = 0;
    for (size_t i = 0; status == 0 && i < nq; i++) {
        bool rel = false;
        for (size_t j = 0; j < qs[i].nj; j++) rel = rel || qs[i].j[j].grade > 0;
        if (rel && qs[i].text && *qs[i].text && (!limit || nrun < limit)) run[nrun++] = i;
    }
    metrics m[8];
    memset(m, 0, sizeof m);
    dt_searcher *sr = status == 0 ? dt_searcher_new(e, &err) : NULL;
    const size_t batch = 64;
    dt_query *qq = calloc(2 * batch, sizeof *qq);
    dt_match_result *res = calloc(2 * batch, sizeof *res);
    fused *fbuf = calloc(2 * RRF_DEPTH, sizeof *fbuf);
    const char **ids = calloc(2 * RRF_DEPTH, sizeof *ids);
    static const dt_weights dense_only = {1, 0, 0};
    if (status == 0 && (!sr || !qq || !res || !fbuf || !ids)) status = 3;
    for (size_t r = 0; status == 0 && r < nr; r++) {
        t0 = now_s();
        for (size_t b = 0; status == 0 && b < nrun; b += batch) {
            size_t nb = nrun - b < batch ? nrun - b : batch;
            for (size_t i = 0; i < nb; i++) {
                dt_query_init(&qq[i]);
                qq[i].tenant = "eval";
                qq[i].target = DT_ACHIEVEMENT;
                if (qs[run[b + i]].self && !as_text) {
                    qq[i].record_id = qs[run[b + i]].self;
                    qq[i].record_side = DT_ACHIEVEMENT;
                } else {
                    qq[i].text = qs[run[b + i]].text;
                }
                qq[i].k = chosen[r].rrf ? RRF_DEPTH : 100;
                /* the hybrid row is the engine's default ranker unless --weights was given */
                bool dflt = !strcmp(chosen[r].name, "hybrid") && !have_w;
                qq[i].weights = dflt ? NULL : &chosen[r].w;
                qq[i].prf = chosen[r].prf;
                if (qs[run[b + i]].self) {
                    qq[i].exclude_ids = (const char *const *)&qs[run[b + i]].self;
                    qq[i].n_exclude = 1;
                }
                if (chosen[r].rrf) { /* the dense list of the same query */
                    qq[nb + i] = qq[i];
                    qq[nb + i].weights = &dense_only;
                    qq[nb + i].prf = 0;
                }
            }
            if (dt_search(sr, qq, chosen[r].rrf ? 2 * nb : nb, res, &err) < 0) {
                fprintf(stderr, "dovetail eval: %s: %s\n", err.field, err.msg);
                status = 3;
                break;
            }
            for (size_t i = 0; i < nb; i++) {
                size_t n;
                if (chosen[r].rrf) {
                    n = rrf_fuse(&res[i], &res[nb + i], fbuf, ids);
                } else {
                    n = res[i].n < 2 * RRF_DEPTH ? res[i].n : 2 * RRF_DEPTH;
                    for (size_t j = 0; j < n; j++) ids[j] = res[i].v[j].rec->id;
                }
                score_query(&qs[run[b + i]], ids, n, &m[r]);
                dt_match_result_free(&res[i]);
                if (chosen[r].rrf) dt_match_result_free(&res[nb + i]);
            }
            if (cli_tty() && !json)
                fprintf(stderr, "\r%-12s %zu/%zu queries", chosen[r].name, b + nb, nrun);
        }
        m[r].seconds = now_s() - t0;
        if (cli_tty() && !json) fprintf(stderr, "\r%40s\r", "");
    }
    if (status == 0) {
        double pn = 0, pr = 0, pm = 0;
        char label[256];
        bool peer = peer_figures(dir, &pn, &pr, &pm, label, sizeof label);
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "dataset", json_string(dir));
            json_object_set_new(o, "documents", json_integer((json_int_t)docs));
            json_object_set_new(o, "queries", json_integer((json_int_t)nrun));
            json_object_set_new(o, "dense", json_string(dt_engine_dense_kind(e, "eval")));
            json_t *rs = json_object();
            for (size_t r = 0; r < nr; r++) {
                json_t *x = json_object();
                double n = m[r].n ? (double)m[r].n : 1;
                json_object_set_new(x, "ndcg@10", json_real(m[r].ndcg10 / n));
                json_object_set_new(x, "recall@100", json_real(m[r].recall100 / n));
                json_object_set_new(x, "mrr@10", json_real(m[r].mrr10 / n));
                json_object_set_new(x, "seconds", json_real(m[r].seconds));
                json_object_set_new(rs, chosen[r].name, x);
            }
            json_object_set_new(o, "rankers", rs);
            if (peer) {
                json_t *x = json_object();
                json_object_set_new(x, "name", json_string(label));
                json_object_set_new(x, "ndcg@10", json_real(pn));
                json_object_set_new(x, "recall@100", json_real(pr));
                json_object_set_new(x, "mrr@10", json_real(pm));
                json_object_set_new(o, "peer", x);
            }
            char *txt = json_dumps(o, JSON_INDENT(2));
            if (txt) puts(txt);
            free(txt);
            json_decref(o);
        } else {
            printf("%s: %zu documents, %zu judged queries, %zu judgements; load %.2f s, dense index (%s) %.2f s\n",
                   dir, docs, nrun, nj, t_load, dt_engine_dense_kind(e, "eval"), t_build);
            printf("%-14s %8s %10s %8s %9s\n", "ranker", "nDCG@10", "recall@100", "MRR@10", "queries/s");
            for (size_t r = 0; r < nr; r++) {
                double n = m[r].n ? (double)m[r].n : 1;
                printf("%-14s %8.4f %10.4f %8.4f %9.0f", chosen[r].name, m[r].ndcg10 / n, m[r].recall100 / n,
                       m[r].mrr10 / n, m[r].seconds > 0 ? (double)nrun / m[r].seconds : 0);
                if (peer) printf("   (%+.1f%% nDCG@10 vs peer)", (m[r].ndcg10 / n / pn - 1) * 100);
                printf("\n");
            }
            if (peer) printf("%-14s %8.4f %10.4f %8.4f   %s\n", "peer", pn, pr, pm, label);
        }
    }
    free(qq);
    free(res);
    free(fbuf);
    free(ids);
    free(run);
    dt_searcher_free(sr);
    free_queries(qs, nq);
    dt_engine_free(e);
    return status;
}
