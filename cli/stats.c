/* stats.c - `dovetail stats`: tracking statistics per tenant and per (field, region) group.
 *
 * Input is either record files plus outcome files (loaded as `dovetail rerank` loads them) or a
 * daemon's data directory, read without writing it (store/durable.h, dt_durable_load_readonly),
 * also while the daemon runs. The numbers are dt_outcome_stats' (matcher/outcome.h), the same the
 * Stats RPC returns. Output: a table, or JSON with --json.
 * What it is not: a client of a running daemon (call the Stats RPC for live served counts).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "durable.h"

#define MAX_FILES 64

static void stats_usage(FILE *f)
{
    fprintf(
        f,
        "usage: dovetail stats [FILES] [-a FILE] [-d FILE] [--outcomes FILE] [options]\n"
        "       dovetail stats --data-dir DIR [options]\n"
        "\n"
        "Tracking statistics per tenant: records (and open ones), matches served, outcome events "
        "by\n"
        "kind, declines by reason, contacted pairs, deal pairs, conversion (deal pairs / "
        "contacted\n"
        "pairs) and the deals' amount; with --groups, the same per (field, region) group.\n"
        "Input, either:\n"
        "  -a, --achievements FILE  achievements (rows without a 'side' are achievements); "
        "repeatable\n"
        "  -d, --demands FILE       demands; repeatable\n"
        "  FILE                     records whose rows each give their 'side'\n"
        "  --outcomes FILE          outcome events, JSON Lines as `dovetail rerank` reads them;\n"
        "                           repeatable. Any bad line stops the run.\n"
        "  --strict                 refuse a record file on its first bad row\n"
        "or:\n"
        "  --data-dir DIR           the state in a dovetaild data directory (snapshot + journal),\n"
        "                           read only: nothing in DIR is written, a torn journal tail is\n"
        "                           ignored, and a daemon may be running on it. Matches served "
        "are\n"
        "                           as of the daemon's last snapshot.\n"
        "Options:\n"
        "  --tenant T               report only tenant T (with files: also the tenant of rows and\n"
        "                           events that do not name one; default public)\n"
        "  --groups                 also the counters per (field, region) group\n"
        "  --field-depth N          components of the field code that make a group (default 1; 0:\n"
        "                           one group for every field)\n"
        "  --region-depth N         the same for the region code (default 2, the province)\n"
        "  --json                   JSON on standard output (keys as the Stats RPC's fields)\n"
        "  -q, --quiet              no notes on standard error\n"
        "Exit status: 0 done, 1 bad input, 2 usage, 3 internal error.\n");
}

/* ---- JSON ---- */

/* The counters of one row; tenant (when not NULL) or the group's codes come first. */
static json_t *row_json(const dt_outcome_stats_row *r, const char *tenant, bool group)
{
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    if (tenant) bad |= json_object_set_new(o, "tenant", json_string(tenant));
    if (group) {
        bad |= json_object_set_new(o, "field", json_string(r->field));
        bad |= json_object_set_new(o, "region", json_string(r->region));
    }
    bad |= json_object_set_new(o, "demands", json_integer((json_int_t)r->demands));
    bad |= json_object_set_new(o, "demands_open", json_integer((json_int_t)r->demands_open));
    bad |= json_object_set_new(o, "achievements", json_integer((json_int_t)r->achievements));
    bad |=
        json_object_set_new(o, "achievements_open", json_integer((json_int_t)r->achievements_open));
    bad |= json_object_set_new(o, "served_demands", json_integer((json_int_t)r->served_demands));
    bad |= json_object_set_new(o, "served_achievements",
                               json_integer((json_int_t)r->served_achievements));
    json_t *ev = json_object(), *dc = json_object();
    for (int k = 0; ev && k < DT_OUTCOME_KIND_COUNT; k++)
        bad |= json_object_set_new(ev, dt_outcome_kind_name((dt_outcome_kind)k),
                                   json_integer((json_int_t)r->events[k]));
    for (int k = 1; dc && k < DT_OUTCOME_REASON_COUNT; k++)
        bad |= json_object_set_new(dc, dt_outcome_reason_name((dt_outcome_reason)k),
                                   json_integer((json_int_t)r->declined[k]));
    bad |= json_object_set_new(o, "events", ev);
    bad |= json_object_set_new(o, "declines", dc);
    bad |= json_object_set_new(o, "contacted_pairs", json_integer((json_int_t)r->contacted_pairs));
    bad |= json_object_set_new(o, "deal_pairs", json_integer((json_int_t)r->deal_pairs));
    bad |= json_object_set_new(o, "conversion", json_real(r->conversion));
    bad |= json_object_set_new(o, "deal_amount", json_real(r->deal_amount));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- table ---- */

#define COLS 18

static void table_row(char cells[][48], const char *const *vals)
{
    for (int c = 0; c < COLS; c++)
        snprintf(cells[c], 48, "%s", vals[c]);
}

static void fmt_u(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

static void print_total(const char *tenant, const dt_outcome_stats_row *r)
{
    printf("tenant %s: %llu demands (%llu open), %llu achievements (%llu open)\n", tenant,
           (unsigned long long)r->demands, (unsigned long long)r->demands_open,
           (unsigned long long)r->achievements, (unsigned long long)r->achievements_open);
    printf("  matches served  %llu in demands' lists, %llu in achievements' lists\n",
           (unsigned long long)r->served_demands, (unsigned long long)r->served_achievements);
    printf("  outcome events ");
    for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++)
        printf("%s %s %llu", k ? "," : "", dt_outcome_kind_name((dt_outcome_kind)k),
               (unsigned long long)r->events[k]);
    printf("\n  declines       ");
    for (int k = 1; k < DT_OUTCOME_REASON_COUNT; k++)
        printf("%s %s %llu", k > 1 ? "," : "", dt_outcome_reason_name((dt_outcome_reason)k),
               (unsigned long long)r->declined[k]);
    printf("\n  pairs           %llu contacted, %llu with a deal: conversion %.1f%%, deal amount "
           "%.2f CNY\n",
           (unsigned long long)r->contacted_pairs, (unsigned long long)r->deal_pairs,
           100.0 * r->conversion, r->deal_amount);
}

static int print_groups(const dt_outcome_stats_row *rows, size_t n)
{
    static const char *const head[COLS] = {
        "field",       "region",   "demands",         "open",       "achievements", "open",
        "served_d",    "served_a", "viewed",          "contacted",  "declined",     "meetings",
        "negotiating", "deals",    "contacted_pairs", "deal_pairs", "conversion",   "amount"};
    char(*cells)[COLS][48] = calloc(n + 1, sizeof *cells);
    if (!cells) return -1;
    table_row(cells[0], head);
    for (size_t i = 0; i < n; i++) {
        const dt_outcome_stats_row *r = &rows[i];
        char(*c)[48] = cells[i + 1];
        snprintf(c[0], 48, "%.47s", r->field);
        snprintf(c[1], 48, "%.47s", r->region);
        uint64_t v[] = {r->demands,
                        r->demands_open,
                        r->achievements,
                        r->achievements_open,
                        r->served_demands,
                        r->served_achievements,
                        r->events[DT_OUTCOME_VIEWED],
                        r->events[DT_OUTCOME_CONTACTED],
                        r->events[DT_OUTCOME_DECLINED],
                        r->events[DT_OUTCOME_MEETING_HELD],
                        r->events[DT_OUTCOME_NEGOTIATING],
                        r->events[DT_OUTCOME_DEAL_SIGNED],
                        r->contacted_pairs,
                        r->deal_pairs};
        for (int k = 0; k < 14; k++)
            fmt_u(c[2 + k], 48, v[k]);
        snprintf(c[16], 48, "%.1f%%", 100.0 * r->conversion);
        snprintf(c[17], 48, "%.2f", r->deal_amount);
    }
    int w[COLS] = {0};
    for (size_t i = 0; i <= n; i++)
        for (int c = 0; c < COLS; c++) {
            int l = (int)strlen(cells[i][c]);
            if (l > w[c]) w[c] = l;
        }
    for (size_t i = 0; i <= n; i++) {
        printf(" ");
        for (int c = 0; c < COLS; c++)
            printf(c < 2 ? " %-*s" : " %*s", w[c], cells[i][c]);
        printf("\n");
    }
    free(cells);
    return 0;
}

/* ---- command ---- */

static int parse_depth(const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 64) {
        fprintf(stderr, "%s: expected a whole number 0..64 (got '%s')\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Adds name to the list of tenants to report unless it is there already. */
static int add_name(const char ***v, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i], name)) return 0;
    const char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) return -1;
    p[(*n)++] = name;
    *v = p;
    return 0;
}

int cmd_stats(int argc, char **argv)
{
    enum { O_OUTCOMES = 256, O_TENANT, O_STRICT, O_DIR, O_GROUPS, O_FDEPTH, O_RDEPTH, O_JSON };
    static const struct option opts[] = {{"achievements", required_argument, 0, 'a'},
                                         {"demands", required_argument, 0, 'd'},
                                         {"outcomes", required_argument, 0, O_OUTCOMES},
                                         {"tenant", required_argument, 0, O_TENANT},
                                         {"strict", no_argument, 0, O_STRICT},
                                         {"data-dir", required_argument, 0, O_DIR},
                                         {"groups", no_argument, 0, O_GROUPS},
                                         {"field-depth", required_argument, 0, O_FDEPTH},
                                         {"region-depth", required_argument, 0, O_RDEPTH},
                                         {"json", no_argument, 0, O_JSON},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *ach[MAX_FILES], *dem[MAX_FILES], *outc[MAX_FILES];
    size_t n_ach = 0, n_dem = 0, n_outc = 0;
    const char *tenant = NULL, *dir = NULL;
    bool strict = false, groups = false, json = false, quiet = false;
    dt_outcome_stats_opts so;
    dt_outcome_stats_opts_default(&so);
    int c;
    while ((c = getopt_long(argc, argv, "a:d:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
        case 'd':
        case O_OUTCOMES: {
            const char **arr = c == 'a' ? ach : c == 'd' ? dem : outc;
            size_t *n = c == 'a' ? &n_ach : c == 'd' ? &n_dem : &n_outc;
            if (*n >= MAX_FILES) {
                fprintf(stderr, "dovetail stats: at most %d files of each kind\n", MAX_FILES);
                return 2;
            }
            arr[(*n)++] = optarg;
            break;
        }
        case O_TENANT:
            tenant = optarg;
            break;
        case O_STRICT:
            strict = true;
            break;
        case O_DIR:
            dir = optarg;
            break;
        case O_GROUPS:
            groups = true;
            break;
        case O_FDEPTH:
            if (parse_depth("--field-depth", optarg, &so.field_depth)) return 2;
            break;
        case O_RDEPTH:
            if (parse_depth("--region-depth", optarg, &so.region_depth)) return 2;
            break;
        case O_JSON:
            json = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            stats_usage(stdout);
            return 0;
        default:
            stats_usage(stderr);
            return 2;
        }
    }
    size_t n_files = (size_t)(argc - optind);
    bool from_files = n_ach + n_dem + n_outc + n_files > 0;
    if (dir && from_files) {
        fprintf(stderr, "dovetail stats: give either --data-dir or files, not both (see --help)\n");
        return 2;
    }
    if (!dir && !from_files) {
        fprintf(stderr, "dovetail stats: no input: give record and outcome files, or --data-dir "
                        "(see --help)\n");
        return 2;
    }
    if (!groups) so.field_depth = so.region_depth = 0;

    dt_err err = DT_ERR_INIT;
    dt_engine *e = NULL;
    dt_outcome_store *store = NULL;
    int status = 0;
    bool oom = false;
    if (dir) {
        dt_durable_load_report rep;
        if (dt_durable_load_readonly(dir, NULL, &e, &store, &rep, &err) < 0) {
            fprintf(stderr, "dovetail stats: --data-dir %s: %s%s%s\n", dir,
                    err.field[0] ? err.field : "", err.field[0] ? ": " : "", err.msg);
            return err.code == DT_ENOMEM ? 3 : 1;
        }
        if (!quiet) {
            if (rep.rejected)
                fprintf(
                    stderr,
                    "dovetail stats: WARNING: %zu damaged snapshot(s) skipped; the newest: %s\n",
                    rep.rejected, rep.rejected_reason);
            fprintf(stderr,
                    "dovetail stats: read %s: %s%s%s%llu journal entries after it (last seq %llu)",
                    dir, rep.snapshot[0] ? "snapshot " : "no snapshot", rep.snapshot,
                    rep.snapshot[0] ? " + " : ", ", (unsigned long long)rep.entries,
                    (unsigned long long)rep.last_seq);
            if (rep.torn_bytes)
                fprintf(stderr, "; %llu bytes at the end of %s ignored (incomplete entry)",
                        (unsigned long long)rep.torn_bytes, rep.torn_file);
            fprintf(stderr, "\n");
        }
    } else {
        e = dt_engine_new(NULL, &err);
        store = e ? dt_outcome_store_new(&err) : NULL;
        if (!store) {
            fprintf(stderr, "dovetail stats: %s\n", err.msg);
            dt_engine_free(e);
            return 3;
        }
        status = cli_load_all(e, NULL, ach, n_ach, dem, n_dem, argv + optind, n_files, tenant,
                              strict, quiet, false);
        size_t n_events = 0;
        for (size_t i = 0; status == 0 && i < n_outc; i++) {
            long bad = cli_load_outcomes(store, NULL, outc[i], tenant, &n_events);
            if (bad != 0) status = 1;
        }
    }

    const char **names = NULL;
    size_t nn = 0, nt = 0;
    const char *const *en = dt_engine_tenants(e, &nt);
    for (size_t i = 0; status == 0 && i < nt; i++)
        if ((!tenant || !strcmp(tenant, en[i])) && add_name(&names, &nn, en[i]) < 0)
            status = 3, oom = true;
    en = dt_outcome_tenants(store, &nt);
    for (size_t i = 0; status == 0 && i < nt; i++)
        if ((!tenant || !strcmp(tenant, en[i])) && add_name(&names, &nn, en[i]) < 0)
            status = 3, oom = true;
    if (status == 0 && tenant && nn == 0) {
        fprintf(stderr, "dovetail stats: tenant '%s' has no records and no outcome events here\n",
                tenant);
        status = 1;
    }

    json_t *out = json && status == 0 ? json_object() : NULL, *arr = out ? json_array() : NULL;
    if (json && status == 0 && (!out || !arr || json_object_set_new(out, "tenants", arr)))
        status = 3, oom = true;
    for (size_t i = 0; status == 0 && i < nn; i++) {
        dt_outcome_stats_row *rows = NULL;
        size_t nr = 0;
        if (dt_outcome_stats(store, e, names[i], &so, &rows, &nr, &err) < 0) {
            fprintf(stderr, "dovetail stats: %s\n", err.msg);
            status = 3;
            break;
        }
        if (json) {
            json_t *t = row_json(&rows[0], names[i], false), *ga = json_array();
            bool ok = t && ga;
            for (size_t g = 1; ok && groups && g < nr; g++)
                ok = json_array_append_new(ga, row_json(&rows[g], NULL, true)) == 0;
            if (ok && groups) {
                ok = json_object_set_new(t, "groups", ga) == 0;
                ga = NULL;
            }
            json_decref(ga);
            if (ok) {
                ok = json_array_append_new(arr, t) == 0;
                t = NULL;
            }
            json_decref(t);
            if (!ok) status = 3, oom = true;
        } else {
            if (i) printf("\n");
            print_total(names[i], &rows[0]);
            if (groups && nr > 1 && print_groups(rows + 1, nr - 1) < 0) status = 3, oom = true;
        }
        free(rows);
    }
    if (status == 0 && out) {
        char *text = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        if (!text)
            status = 3, oom = true;
        else
            printf("%s\n", text);
        free(text);
    }
    if (oom) fprintf(stderr, "dovetail stats: out of memory\n");
    json_decref(out);
    free(names);
    dt_outcome_store_free(store);
    dt_engine_free(e);
    return status;
}
