/* main.c - `dovetail`, the command-line tool over the matching library.
 *
 * Subcommands: validate (check record files), match (rank records loaded from files), eval
 * (relevance on a BEIR-format data set), pair, import, rerank, stats. Each has --help. Exit status: 0 success, 1 bad input
 * (bad rows, unknown record), 2 usage errors, 3 internal errors.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"
#include "topk.h"

bool cli_tty(void)
{
    return isatty(STDERR_FILENO);
}

int cli_load(dt_engine *e, const char *path, int default_side, const char *tenant, bool strict, bool quiet,
             size_t *loaded)
{
    return dt_ingest_file(e, path, default_side, tenant, strict, quiet ? NULL : stderr, 20, loaded, NULL);
}

int cli_load_all(dt_engine *e, const char *clusters_file, const char *const *ach, size_t n_ach,
                 const char *const *dem, size_t n_dem, char *const *files, size_t n_files, const char *tenant,
                 bool strict, bool quiet, bool build)
{
    dt_err err = DT_ERR_INIT;
    if (clusters_file) {
        FILE *f = fopen(clusters_file, "rb");
        char *buf = NULL;
        size_t len = 0;
        int bad = !f;
        if (f) {
            FILE *mem = open_memstream(&buf, &len);
            char chunk[4096];
            size_t r;
            while (mem && (r = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, r, mem);
            bad = !mem || ferror(f);
            if (mem) fclose(mem);
            fclose(f);
        }
        int rc = 0;
        if (bad) {
            fprintf(stderr, "%s: %s\n", clusters_file, strerror(errno));
            rc = 1;
        } else if (dt_engine_parse_clusters(e, buf ? buf : "", len, &err) < 0) {
            fprintf(stderr, "%s: %s\n", clusters_file, err.msg);
            rc = 1;
        }
        free(buf);
        if (rc) return rc;
    }
    for (size_t i = 0; i < n_ach; i++)
        if (cli_load(e, ach[i], DT_ACHIEVEMENT, tenant, strict, quiet, NULL) < 0) return 1;
    for (size_t i = 0; i < n_dem; i++)
        if (cli_load(e, dem[i], DT_DEMAND, tenant, strict, quiet, NULL) < 0) return 1;
    for (size_t i = 0; i < n_files; i++)
        if (cli_load(e, files[i], -1, tenant, strict, quiet, NULL) < 0) return 1;
    if (build && dt_engine_build(e, NULL, &err) < 0) {
        fprintf(stderr, "dovetail: building the dense index: %s\n", err.msg);
        return 3;
    }
    return 0;
}

int cli_parse_weights(const char *s, dt_weights *w)
{
    char *end;
    float v[3];
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        v[i] = strtof(p, &end);
        if (end == p || errno || !isfinite(v[i]) || v[i] < 0) goto bad;
        p = end;
        if (i < 2) {
            if (*p != ',') goto bad;
            p++;
        }
    }
    if (*p) goto bad;
    if (v[0] + v[1] + v[2] <= 0) goto bad;
    *w = (dt_weights){v[0], v[1], v[2]};
    return 0;
bad:
    fprintf(stderr, "--weights: expected three numbers >= 0 'dense,lexical,structured', not all 0 (got '%s')\n", s);
    return -1;
}

/* ---- validate ---- */

static void validate_usage(FILE *f)
{
    fprintf(f, "usage: dovetail validate [--strict] [--side demand|achievement] [--tenant T] FILE...\n"
               "\n"
               "Checks CSV or JSON Lines record files and reports every bad row as FILE:LINE: FIELD: REASON.\n"
               "  --side S     side of rows that do not say it (default: every row must have a 'side')\n"
               "  --tenant T   tenant of rows that do not say it (default: public)\n"
               "  --strict     refuse a file on its first bad row (as loading with --strict does)\n"
               "Exit status: 0 when every row is good, 1 when any row or file is bad.\n");
}

static int parse_side_opt(const char *s, int *side)
{
    dt_side sd;
    dt_err err = DT_ERR_INIT;
    if (dt_side_parse(s, &sd, "--side", &err) < 0) {
        fprintf(stderr, "--side: %s\n", err.msg);
        return -1;
    }
    *side = (int)sd;
    return 0;
}

static int cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {{"strict", no_argument, 0, 's'}, {"side", required_argument, 0, 'S'},
                                          {"tenant", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    bool strict = false;
    int side = -1;
    const char *tenant = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': strict = true; break;
        case 'S':
            if (parse_side_opt(optarg, &side) < 0) return 2;
            break;
        case 't': tenant = optarg; break;
        case 'h': validate_usage(stdout); return 0;
        default: validate_usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        validate_usage(stderr);
        return 2;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        dt_engine *e = dt_engine_new(NULL, NULL);
        if (!e) return 3;
        size_t rejected = 0;
        if (dt_ingest_file(e, argv[i], side, tenant, strict, stdout, (size_t)-1, NULL, &rejected) < 0 || rejected)
            status = 1;
        dt_engine_free(e);
    }
    return status;
}

/* ---- match ---- */

static void match_usage(FILE *f)
{
    fprintf(f,
            "usage: dovetail match [FILES] (--id ID | --query TEXT) [options]\n"
            "\n"
            "Loads records from CSV / JSON Lines files and ranks one side against a record or a text.\n"
            "Files:\n"
            "  -a, --achievements FILE  achievements (rows without a 'side' are achievements); repeatable\n"
            "  -d, --demands FILE       demands; repeatable\n"
            "  FILE                     records whose rows each give their 'side'\n"
            "  --clusters FILE          region clusters, lines 'name<TAB>region_prefix'\n"
            "  --strict                 refuse a file on its first bad row\n"
            "Query:\n"
            "  --id ID                  rank against this stored record ...\n"
            "  --side demand|achievement   ... of this side (default demand)\n"
            "  --query TEXT             ... or against a free text\n"
            "  --target demand|achievement side to rank (default: the other side of --side; for --query:\n"
            "                           achievement)\n"
            "  --tenant T               tenant (default public)\n"
            "  -k N                     results (default 10, at most 10000); --offset N skips the first N\n"
            "Filters:\n"
            "  --field P, --region P    code prefixes (repeatable: any of them)\n"
            "  --cluster NAME           region cluster (repeatable)\n"
            "  --trl-min N, --trl-max N readiness level bounds (records without a TRL are excluded)\n"
            "  --mode M                 cooperation mode the record must offer (repeatable: any)\n"
            "  --price-min X, --price-max X  price range that must overlap the record's\n"
            "  --tag T                  required tag (repeatable: all)\n"
            "  --include-closed         also match closed records\n"
            "Ranking and output:\n"
            "  --weights D,L,S          dense, lexical and structured weights (default 0.7,0.3,0.1, adapted per query;\n"
            "                           given weights are used as they are)\n"
            "  --dim N                  LSA dimension (default 256)\n"
            "  --explain                show each score's parts and the shared terms\n"
            "  --json                   JSON output\n");
}

#define MAX_MULTI 64

static json_t *match_json(const dt_query *q, const dt_match_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "tenant", json_string(q->tenant ? q->tenant : "public"));
    json_object_set_new(o, "target", json_string(dt_side_name(q->target)));
    if (q->record_id) {
        json_object_set_new(o, "record_id", json_string(q->record_id));
        json_object_set_new(o, "record_side", json_string(dt_side_name(q->record_side)));
    } else {
        json_object_set_new(o, "query", json_string(q->text));
    }
    json_object_set_new(o, "total_candidates", json_integer((json_int_t)r->total_candidates));
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const dt_match *m = &r->v[i];
        json_t *j = json_object();
        json_object_set_new(j, "rank", json_integer((json_int_t)(q->offset + i + 1)));
        json_object_set_new(j, "id", json_string(m->rec->id));
        json_object_set_new(j, "score", json_real(m->score));
        if (m->rec->title) json_object_set_new(j, "title", json_string(m->rec->title));
        if (m->rec->org) json_object_set_new(j, "org", json_string(m->rec->org));
        if (m->rec->field) json_object_set_new(j, "field", json_string(m->rec->field));
        if (m->rec->region) json_object_set_new(j, "region", json_string(m->rec->region));
        if (m->rec->trl) json_object_set_new(j, "trl", json_integer(m->rec->trl));
        if (q->explain) {
            json_t *x = json_object();
            json_object_set_new(x, "dense", json_real(m->dense));
            json_object_set_new(x, "lexical", json_real(m->lexical));
            json_object_set_new(x, "structured", json_real(m->structured));
            json_t *fit = json_object();
            for (int p = 0; p < DT_FIT_COUNT; p++)
                if (m->fit[p] >= 0) json_object_set_new(fit, dt_fit_name(p), json_real(m->fit[p]));
            json_object_set_new(x, "fit", fit);
            json_t *terms = json_array();
            for (size_t t = 0; t < m->n_terms; t++) {
                json_t *tw = json_object();
                json_object_set_new(tw, "term", json_string(m->terms[t].term));
                json_object_set_new(tw, "weight", json_real(m->terms[t].weight));
                json_array_append_new(terms, tw);
            }
            json_object_set_new(x, "terms", terms);
            json_object_set_new(j, "explanation", x);
        }
        json_array_append_new(arr, j);
    }
    json_object_set_new(o, "matches", arr);
    return o;
}

/* Prints at most `width` display columns of s (CJK characters count two), never cutting a character. */
static void print_clipped(const char *s, int width)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    int used = 0;
    while (*p) {
        int len = *p < 0x80 ? 1 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : 4;
        int w = len >= 3 ? 2 : 1;
        if (used + w > width) break;
        for (int i = 0; i < len && p[i]; i++) putchar(p[i]);
        p += len;
        used += w;
    }
    for (; used < width; used++) putchar(' ');
}

static void match_print(const dt_query *q, const dt_match_result *r)
{
    printf("%zu candidates; top %zu:\n", r->total_candidates, r->n);
    for (size_t i = 0; i < r->n; i++) {
        const dt_match *m = &r->v[i];
        printf("%4zu  %.4f  %-16s  ", q->offset + i + 1, m->score, m->rec->id);
        print_clipped(m->rec->title, 44);
        printf("  ");
        print_clipped(m->rec->org, 28);
        printf("\n");
        if (q->explain) {
            printf("      dense %.4f  lexical %.4f  structured %.4f", m->dense, m->lexical, m->structured);
            for (int p = 0; p < DT_FIT_COUNT; p++)
                if (m->fit[p] >= 0) printf("  %s %.2f", dt_fit_name(p), m->fit[p]);
            printf("\n");
            if (m->n_terms) {
                printf("      terms:");
                for (size_t t = 0; t < m->n_terms; t++) printf(" %s (%.3f)", m->terms[t].term, m->terms[t].weight);
                printf("\n");
            }
        }
    }
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: expected a number in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int add_multi(const char **arr, size_t *n, const char *v, const char *opt)
{
    if (*n >= MAX_MULTI) {
        fprintf(stderr, "%s: at most %d times\n", opt, MAX_MULTI);
        return -1;
    }
    arr[(*n)++] = v;
    return 0;
}

static int cmd_match(int argc, char **argv)
{
    enum { O_ID = 256, O_SIDE, O_QUERY, O_TARGET, O_TENANT, O_OFFSET, O_FIELD, O_REGION, O_CLUSTER, O_TRLMIN,
           O_TRLMAX, O_MODE, O_PMIN, O_PMAX, O_TAG, O_CLOSED, O_WEIGHTS, O_EXPLAIN, O_JSON, O_CLUSTERS,
           O_STRICT, O_DIM };
    static const struct option opts[] = {
        {"achievements", required_argument, 0, 'a'}, {"demands", required_argument, 0, 'd'},
        {"id", required_argument, 0, O_ID}, {"side", required_argument, 0, O_SIDE},
        {"query", required_argument, 0, O_QUERY}, {"target", required_argument, 0, O_TARGET},
        {"tenant", required_argument, 0, O_TENANT}, {"offset", required_argument, 0, O_OFFSET},
        {"field", required_argument, 0, O_FIELD}, {"region", required_argument, 0, O_REGION},
        {"cluster", required_argument, 0, O_CLUSTER}, {"trl-min", required_argument, 0, O_TRLMIN},
        {"trl-max", required_argument, 0, O_TRLMAX}, {"mode", required_argument, 0, O_MODE},
        {"price-min", required_argument, 0, O_PMIN}, {"price-max", required_argument, 0, O_PMAX},
        {"tag", required_argument, 0, O_TAG}, {"include-closed", no_argument, 0, O_CLOSED},
        {"weights", required_argument, 0, O_WEIGHTS}, {"explain", no_argument, 0, O_EXPLAIN},
        {"json", no_argument, 0, O_JSON}, {"clusters", required_argument, 0, O_CLUSTERS},
        {"strict", no_argument, 0, O_STRICT}, {"dim", required_argument, 0, O_DIM},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *ach[MAX_MULTI], *dem[MAX_MULTI], *fields[MAX_MULTI], *regions[MAX_MULTI], *clusters[MAX_MULTI],
        *tags[MAX_MULTI];
    size_t n_ach = 0, n_dem = 0, n_fields = 0, n_regions = 0, n_clusters = 0, n_tags = 0;
    const char *clusters_file = NULL;
    dt_query q;
    dt_query_init(&q);
    int target = -1;
    bool json = false, strict = false;
    dt_weights w;
    bool have_w = false;
    dt_engine_opts eo = dt_engine_opts_default();
    double v;
    int c;
    while ((c = getopt_long(argc, argv, "a:d:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (add_multi(ach, &n_ach, optarg, "--achievements")) return 2;
            break;
        case 'd':
            if (add_multi(dem, &n_dem, optarg, "--demands")) return 2;
            break;
        case 'k':
            if (parse_num("-k", optarg, 0, 10000, &v)) return 2;
            q.k = (size_t)v;
            break;
        case O_OFFSET:
            if (parse_num("--offset", optarg, 0, 100000, &v)) return 2;
            q.offset = (size_t)v;
            break;
        case O_ID: q.record_id = optarg; break;
        case O_SIDE: {
            int s;
            if (parse_side_opt(optarg, &s)) return 2;
            q.record_side = (dt_side)s;
            break;
        }
        case O_QUERY: q.text = optarg; break;
        case O_TARGET:
            if (parse_side_opt(optarg, &target)) return 2;
            break;
        case O_TENANT: q.tenant = optarg; break;
        case O_FIELD:
            if (add_multi(fields, &n_fields, optarg, "--field")) return 2;
            break;
        case O_REGION:
            if (add_multi(regions, &n_regions, optarg, "--region")) return 2;
            break;
        case O_CLUSTER:
            if (add_multi(clusters, &n_clusters, optarg, "--cluster")) return 2;
            break;
        case O_TRLMIN:
            if (parse_num("--trl-min", optarg, 1, 9, &v)) return 2;
            q.filter.trl_min = (int)v;
            break;
        case O_TRLMAX:
            if (parse_num("--trl-max", optarg, 1, 9, &v)) return 2;
            q.filter.trl_max = (int)v;
            break;
        case O_MODE: {
            uint32_t bit;
            dt_err err = DT_ERR_INIT;
            if (dt_mode_parse(optarg, &bit, "--mode", &err) < 0) {
                fprintf(stderr, "--mode: %s\n", err.msg);
                return 2;
            }
            q.filter.modes |= bit;
            break;
        }
        case O_PMIN:
            if (parse_num("--price-min", optarg, 0, 1e15, &q.filter.price_min)) return 2;
            break;
        case O_PMAX:
            if (parse_num("--price-max", optarg, 0, 1e15, &q.filter.price_max)) return 2;
            break;
        case O_TAG:
            if (add_multi(tags, &n_tags, optarg, "--tag")) return 2;
            break;
        case O_CLOSED: q.filter.include_closed = true; break;
        case O_WEIGHTS:
            if (cli_parse_weights(optarg, &w)) return 2;
            have_w = true;
            break;
        case O_EXPLAIN: q.explain = true; break;
        case O_JSON: json = true; break;
        case O_CLUSTERS: clusters_file = optarg; break;
        case O_STRICT: strict = true; break;
        case O_DIM:
            if (parse_num("--dim", optarg, 1, 4096, &v)) return 2;
            eo.dim = (size_t)v;
            break;
        case 'h': match_usage(stdout); return 0;
        default: match_usage(stderr); return 2;
        }
    }
    if (!!q.record_id == !!q.text) {
        fprintf(stderr, "dovetail match: give exactly one of --id or --query (see --help)\n");
        return 2;
    }
    if (n_ach + n_dem == 0 && optind >= argc) {
        fprintf(stderr, "dovetail match: no record files given (see --help)\n");
        return 2;
    }
    q.target = target >= 0 ? (dt_side)target : q.record_id ? (dt_side)!q.record_side : DT_ACHIEVEMENT;
    if (q.filter.trl_min && q.filter.trl_max && q.filter.trl_min > q.filter.trl_max) {
        fprintf(stderr, "--trl-min is larger than --trl-max\n");
        return 2;
    }
    if (have_w) q.weights = &w;
    q.filter.field_prefixes = fields;
    q.filter.n_field_prefixes = n_fields;
    q.filter.region_prefixes = regions;
    q.filter.n_region_prefixes = n_regions;
    q.filter.tags = tags;
    q.filter.n_tags = n_tags;
    q.clusters = clusters;
    q.n_clusters = n_clusters;

    dt_topk_blas_single();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    eo.threads = ncpu > 0 ? (int)ncpu : 1;
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    if (!e) {
        fprintf(stderr, "dovetail: %s\n", err.msg);
        return 3;
    }
    int status = cli_load_all(e, clusters_file, ach, n_ach, dem, n_dem, argv + optind, (size_t)(argc - optind),
                              q.tenant, strict, json, true);
    if (status == 0) {
        dt_searcher *s = dt_searcher_new(e, &err);
        dt_match_result r;
        if (!s || dt_search(s, &q, 1, &r, &err) < 0) {
            fprintf(stderr, "dovetail match: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
            status = err.code == DT_ENOMEM || err.code == DT_EINTERNAL ? 3 : 1;
        } else {
            if (json) {
                json_t *o = match_json(&q, &r);
                char *txt = json_dumps(o, JSON_INDENT(2));
                if (txt) puts(txt);
                free(txt);
                json_decref(o);
            } else {
                match_print(&q, &r);
            }
            dt_match_result_free(&r);
        }
        dt_searcher_free(s);
    }
    dt_engine_free(e);
    return status;
}



static void usage(FILE *f)
{
    fprintf(f, "usage: dovetail COMMAND [options]   (dovetail COMMAND --help for each)\n"
               "\n"
               "Commands:\n"
               "  validate FILE...   check CSV / JSON Lines record files, reporting every bad row\n"
               "  match ...          rank achievements for a demand, demands for an achievement, or a text\n"
               "  eval DIR           relevance (nDCG@10, recall@100, MRR@10) on a BEIR-format data set\n"
               "  import ...         add record files and outcome events to a daemon's --data-dir (offline)\n"
               "  pair ...           plan a Deep Dive event: who meets whom, in which slot, at which table\n"
               "  rerank ...         re-rank every open record of a tenant into a file and/or Redis\n"
               "  stats ...          tracking statistics (served, outcomes, conversion) from files or a --data-dir\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    argv[1] = argv[0];
    if (!strcmp(cmd, "validate")) return cmd_validate(argc - 1, argv + 1);
    if (!strcmp(cmd, "match")) return cmd_match(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "pair")) return cmd_pair(argc - 1, argv + 1);
    if (!strcmp(cmd, "import")) return cmd_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "rerank")) return cmd_rerank(argc - 1, argv + 1);
    if (!strcmp(cmd, "stats")) return cmd_stats(argc - 1, argv + 1);
    fprintf(stderr, "dovetail: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
