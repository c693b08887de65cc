/* pair.c - `dovetail pair`: plans a Deep Dive event from record files.
 *
 * Loads records as `dovetail match` does, reads the event's lists (participant ids, limits,
 * must / never / met-before pairs, requests, locked meetings) from small CSV files, pairs the event
 * with dt_event_pair and writes the schedule as JSON, CSV or a printable HTML page.
 * What it is not: a client of the daemon (PairEvent is the RPC equivalent).
 */
#include <csv.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "event.h"
#include "topk.h"

#define MAX_FILES 64
#define MAX_COLS 8

static void pair_usage(FILE *f)
{
    fprintf(f,
            "usage: dovetail pair [FILES] (--smes F | --sme-filter S) (--holders F | --holder-filter S)\n"
            "                     --slots T --tables N [options]\n"
            "\n"
            "Plans a Deep Dive event: which SME (demand) meets which achievement holder, in which time\n"
            "slot, at which table, maximising the total match score under the event's rules.\n"
            "Slots and tables count from 1 in every file and output.\n"
            "Records:\n"
            "  -a, --achievements FILE  achievements (rows without a 'side' are achievements); repeatable\n"
            "  -d, --demands FILE       demands; repeatable\n"
            "  FILE                     records whose rows each give their 'side'\n"
            "  --clusters FILE          region clusters, lines 'name<TAB>region_prefix'\n"
            "  --tenant T               tenant (default public); --strict refuses a file on a bad row\n"
            "  --dim N                  LSA dimension (default 256)\n"
            "Participants (one of each pair of options):\n"
            "  --smes FILE              SME (demand) ids, one per line ('#' comments)\n"
            "  --sme-filter SPEC        or every open demand passing SPEC: comma-separated key=value,\n"
            "                           keys field, region, cluster, tag, mode (repeatable: any field,\n"
            "                           region or cluster; all tags), trl-min, trl-max, closed=1;\n"
            "                           e.g. 'region=CN.32,field=C.38'\n"
            "  --holders FILE, --holder-filter SPEC   the same for achievement holders\n"
            "Event:\n"
            "  --slots T                time slots (1..1024)\n"
            "  --tables N               tables per slot\n"
            "  --max-meetings N         meetings per participant at most (default: one per slot)\n"
            "  --min-meetings N         meetings guaranteed to every participant when possible (default 0)\n"
            "  --limits FILE            per-participant overrides, CSV id,max,min[,side]: empty max or\n"
            "                           min keeps the default; side (sme|holder) only when an id is both\n"
            "  --min-score X            pairs scoring less never meet unless requested, must or locked\n"
            "  --must FILE              CSV sme_id,holder_id: pairs that must meet\n"
            "  --never FILE             CSV sme_id,holder_id: pairs that must not meet\n"
            "  --requests FILE          CSV sme_id,holder_id,who with who sme|holder|both: a boost\n"
            "  --exclude-met FILE       CSV sme_id,holder_id: pairs that met at an earlier event\n"
            "  --locked FILE            CSV sme_id,holder_id,slot,table: meetings kept as they are\n"
            "                           (a meetings CSV written by --format csv is not this format)\n"
            "  --candidates L           candidate partners per participant and direction (default 50)\n"
            "  --weights D,L,S          match score weights (default 0.7,0.3,0.1, adapted per query;\n"
            "                           given weights are used as they are)\n"
            "  --boost-one X, --boost-both X   request boosts (default 0.2, 0.4)\n"
            "  --decay G                n-th meeting worth G^(n-1) of the first (default 0.9; 1 = off)\n"
            "Output:\n"
            "  --format json|csv|html   (default json); csv writes the meetings\n"
            "  -o FILE                  write there instead of standard output\n"
            "  --agendas FILE           also write the agendas as CSV\n"
            "  --title NAME             the event's name in the HTML page (default: Event)\n"
            "  -q, --quiet              no summary line on standard error\n"
            "CSV files may start with a header line (its first field is sme_id or id).\n"
            "Exit status: 0 planned, 1 bad input (unknown id, bad file), 2 usage, 3 internal error.\n");
}

/* ---------------------------------------------------------------- small CSV files */

typedef struct rows {
    char **cells; /* n_rows x MAX_COLS, NULL for absent cells */
    int *ncols;
    size_t n_rows, cap;
    char *cur[MAX_COLS];
    int ncur;
    bool oom, too_wide;
} rows;

static void rows_free(rows *r)
{
    for (size_t i = 0; i < r->n_rows * MAX_COLS; i++) free(r->cells[i]);
    for (int i = 0; i < r->ncur; i++) free(r->cur[i]);
    free(r->cells);
    free(r->ncols);
    memset(r, 0, sizeof *r);
}

static void on_field(void *s, size_t len, void *ud)
{
    rows *r = ud;
    if (r->ncur == MAX_COLS) {
        r->too_wide = true;
        return;
    }
    char *v = malloc(len + 1);
    if (!v) {
        r->oom = true;
        return;
    }
    memcpy(v, s, len);
    v[len] = 0;
    r->cur[r->ncur++] = v;
}

static void on_row(int c, void *ud)
{
    (void)c;
    rows *r = ud;
    if (r->n_rows == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        char **cells = realloc(r->cells, cap * MAX_COLS * sizeof *cells);
        if (cells) r->cells = cells;
        int *nc = realloc(r->ncols, cap * sizeof *nc);
        if (nc) r->ncols = nc;
        if (!cells || !nc) {
            r->oom = true;
            for (int i = 0; i < r->ncur; i++) free(r->cur[i]);
            r->ncur = 0;
            return;
        }
        r->cap = cap;
    }
    for (int i = 0; i < MAX_COLS; i++) r->cells[r->n_rows * MAX_COLS + i] = i < r->ncur ? r->cur[i] : NULL;
    r->ncols[r->n_rows++] = r->ncur;
    r->ncur = 0;
}

static const char *cell(const rows *r, size_t row, int col)
{
    return col < r->ncols[row] ? r->cells[row * MAX_COLS + col] : NULL;
}

/* Reads a CSV file with at least min_cols columns per row; a first row whose first field is
 * sme_id or id is a header and dropped. 0, or -1 after printing why. */
static int read_rows(const char *path, int min_cols, rows *r)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL) != 0) {
        fclose(f);
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    char buf[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (csv_parse(&p, buf, n, on_field, on_row, r) != n) {
            fprintf(stderr, "%s: %s\n", path, csv_strerror(csv_error(&p)));
            rc = -1;
            break;
        }
    if (ferror(f)) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0) csv_fini(&p, on_field, on_row, r);
    csv_free(&p);
    fclose(f);
    if (rc == 0 && (r->oom || r->too_wide)) {
        fprintf(stderr, "%s: %s\n", path, r->oom ? "out of memory" : "more than 8 columns in a row");
        rc = -1;
    }
    if (rc == 0 && r->n_rows && (!strcmp(cell(r, 0, 0) ? cell(r, 0, 0) : "", "sme_id") ||
                                 !strcmp(cell(r, 0, 0) ? cell(r, 0, 0) : "", "id"))) {
        for (int i = 0; i < MAX_COLS; i++) free(r->cells[i]);
        memmove(r->cells, r->cells + MAX_COLS, (r->n_rows - 1) * MAX_COLS * sizeof *r->cells);
        memmove(r->ncols, r->ncols + 1, (r->n_rows - 1) * sizeof *r->ncols);
        r->n_rows--;
    }
    for (size_t i = 0; rc == 0 && i < r->n_rows; i++)
        if (r->ncols[i] < min_cols) {
            fprintf(stderr, "%s: row %zu: expected %d columns, got %d\n", path, i + 1, min_cols, r->ncols[i]);
            rc = -1;
        }
    if (rc) rows_free(r);
    return rc;
}

/* One id per line, '#' comments and blank lines skipped, surrounding white space trimmed. */
static int read_ids(const char *path, char ***ids, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, nv = 0, capv = 0;
    char **v = NULL;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\n' || s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t')) s[--l] = 0;
        if (!l || *s == '#') continue;
        if (nv == capv) {
            capv = capv ? 2 * capv : 64;
            char **v2 = realloc(v, capv * sizeof *v2);
            if (!v2) {
                rc = -1;
                break;
            }
            v = v2;
        }
        if (!(v[nv] = strdup(s))) {
            rc = -1;
            break;
        }
        nv++;
    }
    if (ferror(f)) rc = -1;
    if (rc) fprintf(stderr, "%s: %s\n", path, errno ? strerror(errno) : "read error");
    free(line);
    fclose(f);
    *ids = v;
    *n = nv;
    return rc;
}

/* ---------------------------------------------------------------- filters */

typedef struct filter_opt {
    const char *v[4][64]; /* field, region, cluster, tag */
    size_t n[4];
    char *copy;
} filter_opt;

static int parse_filter(const char *spec, const char *opt, filter_opt *fo, dt_event_side *side)
{
    side->by_filter = true;
    dt_filter_init(&side->filter);
    fo->copy = strdup(spec);
    if (!fo->copy) return -1;
    char *save = NULL;
    for (char *kv = strtok_r(fo->copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1]) {
            fprintf(stderr, "%s: expected key=value, got '%s'\n", opt, kv);
            return -1;
        }
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        static const char *const list_keys[4] = {"field", "region", "cluster", "tag"};
        int li = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(k, list_keys[i])) li = i;
        if (li >= 0) {
            if (fo->n[li] == 64) {
                fprintf(stderr, "%s: at most 64 %s values\n", opt, k);
                return -1;
            }
            fo->v[li][fo->n[li]++] = v;
        } else if (!strcmp(k, "trl-min") || !strcmp(k, "trl-max")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*end || t < 1 || t > 9) {
                fprintf(stderr, "%s: %s must be 1..9\n", opt, k);
                return -1;
            }
            *(!strcmp(k, "trl-min") ? &side->filter.trl_min : &side->filter.trl_max) = (int)t;
        } else if (!strcmp(k, "mode")) {
            uint32_t bit;
            dt_err err = DT_ERR_INIT;
            if (dt_mode_parse(v, &bit, "mode", &err) < 0) {
                fprintf(stderr, "%s: %s\n", opt, err.msg);
                return -1;
            }
            side->filter.modes |= bit;
        } else if (!strcmp(k, "closed")) {
            side->filter.include_closed = !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes");
        } else {
            fprintf(stderr, "%s: unknown key '%s' (field, region, cluster, tag, mode, trl-min, trl-max, closed)\n", opt,
                    k);
            return -1;
        }
    }
    side->filter.field_prefixes = fo->v[0];
    side->filter.n_field_prefixes = fo->n[0];
    side->filter.region_prefixes = fo->v[1];
    side->filter.n_region_prefixes = fo->n[1];
    side->clusters = fo->v[2];
    side->n_clusters = fo->n[2];
    side->filter.tags = fo->v[3];
    side->filter.n_tags = fo->n[3];
    return 0;
}

/* ---------------------------------------------------------------- JSON output */

static json_t *party_json(const dt_event_person *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(p->id));
    json_object_set_new(o, "title", json_string(p->title));
    json_object_set_new(o, "org", json_string(p->org));
    return o;
}

static json_t *reasons_json(unsigned mask)
{
    json_t *a = json_array();
    for (unsigned bit = 1; bit && bit <= mask; bit <<= 1)
        if (mask & bit) json_array_append_new(a, json_string(dt_pair_reason_name(bit)));
    return a;
}

static const char *requester_name(unsigned flags)
{
    unsigned q = flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B);
    return q == (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B) ? "both" : q == DT_PAIR_M_REQ_A ? "sme" : q ? "holder" : NULL;
}

static json_t *result_json(const dt_event_result *r, const char *title)
{
    json_t *o = json_object();
    char sum[1024];
    json_object_set_new(o, "event", json_string(title ? title : "Event"));
    json_object_set_new(o, "tenant", json_string(r->tenant));
    json_object_set_new(o, "slots", json_integer(r->slots));
    json_object_set_new(o, "tables", json_integer(r->tables));
    json_object_set_new(o, "smes", json_integer((json_int_t)r->n_smes));
    json_object_set_new(o, "holders", json_integer((json_int_t)r->n_holders));
    json_object_set_new(o, "candidates", json_integer((json_int_t)r->n_candidates));
    json_object_set_new(o, "total_score", json_real(r->total_score));
    json_object_set_new(o, "total_value", json_real(r->total_value));
    json_object_set_new(o, "must_met", json_integer(r->n_must_met));
    json_t *ms = json_array();
    for (size_t k = 0; k < r->n_meetings; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        json_t *j = json_object();
        json_object_set_new(j, "slot", json_integer(m->slot));
        json_object_set_new(j, "table", json_integer(m->table));
        json_object_set_new(j, "sme", party_json(&r->smes[m->sme]));
        json_object_set_new(j, "holder", party_json(&r->holders[m->holder]));
        json_object_set_new(j, "score", json_real(m->score));
        json_object_set_new(j, "value", json_real(m->value));
        json_object_set_new(j, "locked", json_boolean(m->flags & DT_PAIR_M_LOCKED));
        json_object_set_new(j, "must_meet", json_boolean(m->flags & DT_PAIR_M_MUST));
        const char *rq = requester_name(m->flags);
        if (rq) json_object_set_new(j, "requested_by", json_string(rq));
        json_t *x = json_object();
        json_object_set_new(x, "dense", json_real(m->dense));
        json_object_set_new(x, "lexical", json_real(m->lexical));
        json_object_set_new(x, "structured", json_real(m->structured));
        json_t *terms = json_array();
        for (size_t t = 0; t < m->n_terms; t++) json_array_append_new(terms, json_string(m->terms[t].term));
        json_object_set_new(x, "terms", terms);
        json_object_set_new(j, "explanation", x);
        dt_event_summary(r, m, sum, sizeof sum);
        json_object_set_new(j, "summary", json_string(sum));
        json_array_append_new(ms, j);
    }
    json_object_set_new(o, "meetings", ms);
    json_t *ags = json_array(), *sf = json_array();
    for (int side = 0; side < 2; side++) {
        const dt_event_person *pp = side ? r->holders : r->smes;
        size_t n = side ? r->n_holders : r->n_smes;
        for (size_t i = 0; i < n; i++) {
            const dt_event_person *p = &pp[i];
            json_t *a = json_object();
            json_object_set_new(a, "side", json_string(side ? "holder" : "sme"));
            json_object_set_new(a, "participant", party_json(p));
            json_object_set_new(a, "meetings", json_integer(p->count));
            json_object_set_new(a, "max_meetings", json_integer(p->max_meetings));
            json_object_set_new(a, "min_meetings", json_integer(p->min_meetings));
            json_t *items = json_array();
            for (int j = 0; j < p->count; j++) {
                const dt_event_meeting *m = &r->meetings[p->agenda[j]];
                json_t *it = json_object();
                json_object_set_new(it, "slot", json_integer(m->slot));
                json_object_set_new(it, "table", json_integer(m->table));
                json_object_set_new(it, "partner", party_json(side ? &r->smes[m->sme] : &r->holders[m->holder]));
                json_object_set_new(it, "score", json_real(m->score));
                json_array_append_new(items, it);
            }
            json_object_set_new(a, "items", items);
            json_object_set_new(a, "reasons", reasons_json(p->reasons));
            json_array_append_new(ags, a);
            if (p->count < p->max_meetings) {
                json_t *s = json_object();
                json_object_set_new(s, "side", json_string(side ? "holder" : "sme"));
                json_object_set_new(s, "id", json_string(p->id));
                json_object_set_new(s, "meetings", json_integer(p->count));
                json_object_set_new(s, "max_meetings", json_integer(p->max_meetings));
                json_object_set_new(s, "reasons", reasons_json(p->reasons));
                json_array_append_new(sf, s);
            }
        }
    }
    json_object_set_new(o, "agendas", ags);
    json_object_set_new(o, "shortfalls", sf);
    json_t *un = json_array();
    for (size_t i = 0; i < r->n_unmet; i++) {
        const dt_pair_unmet *u = &r->unmet[i];
        json_t *j = json_object();
        if (u->kind == DT_PAIR_UNMET_GUARANTEE) {
            json_object_set_new(j, "kind", json_string("guarantee"));
            json_object_set_new(j, "side", json_string(u->side ? "holder" : "sme"));
            json_object_set_new(j, "id", json_string(u->side ? r->holders[u->b].id : r->smes[u->a].id));
            json_object_set_new(j, "meetings", json_integer(u->have));
            json_object_set_new(j, "min_meetings", json_integer(u->want));
        } else {
            json_object_set_new(j, "kind", json_string(u->kind == DT_PAIR_UNMET_MUST ? "must_meet" : "unscheduled"));
            json_object_set_new(j, "sme_id", json_string(r->smes[u->a].id));
            json_object_set_new(j, "holder_id", json_string(r->holders[u->b].id));
        }
        json_object_set_new(j, "reasons", reasons_json(u->reasons));
        json_array_append_new(un, j);
    }
    json_object_set_new(o, "unmet", un);
    return o;
}

/* ---------------------------------------------------------------- the command */

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: expected an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_dbl(const char *opt, const char *s, double lo, double hi, double *out)
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

static int write_out(const char *path, const char *text, size_t len)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    bool bad = fwrite(text, 1, len, f) != len;
    if (path) bad = fclose(f) != 0 || bad;
    else bad = fflush(f) != 0 || bad;
    if (bad) fprintf(stderr, "%s: %s\n", path ? path : "standard output", strerror(errno));
    return bad ? -1 : 0;
}

/* Everything the lists of one run hold. */
typedef struct lists {
    rows must, never, met, req, locked, limits;
    dt_event_pairref *pmust, *pnever, *pmet;
    dt_event_request *preq;
    dt_event_locked *plocked;
    dt_event_limit *lim[2];
    size_t nlim[2];
    char **ids[2];
    size_t nids[2];
    filter_opt fo[2];
} lists;

static void lists_free(lists *l)
{
    rows_free(&l->must);
    rows_free(&l->never);
    rows_free(&l->met);
    rows_free(&l->req);
    rows_free(&l->locked);
    rows_free(&l->limits);
    free(l->pmust);
    free(l->pnever);
    free(l->pmet);
    free(l->preq);
    free(l->plocked);
    for (int s = 0; s < 2; s++) {
        free(l->lim[s]);
        for (size_t i = 0; i < l->nids[s]; i++) free(l->ids[s][i]);
        free(l->ids[s]);
        free(l->fo[s].copy);
    }
}

static int pairs_of(const char *path, rows *r, dt_event_pairref **out, size_t *n)
{
    if (read_rows(path, 2, r) < 0) return -1;
    *out = malloc((r->n_rows + 1) * sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < r->n_rows; i++) (*out)[i] = (dt_event_pairref){cell(r, i, 0), cell(r, i, 1)};
    *n = r->n_rows;
    return 0;
}

static int limit_value(const char *path, size_t row, const char *s, int *out)
{
    if (!s || !*s) {
        *out = -1;
        return 0;
    }
    char what[64];
    snprintf(what, sizeof what, "row %zu", row + 1);
    char opt[600];
    snprintf(opt, sizeof opt, "%s: %s", path, what);
    return parse_int(opt, s, 0, DT_PAIR_SLOTS_MAX, out);
}

static int limits_of(dt_engine *e, const char *tenant, const char *path, lists *l)
{
    rows *r = &l->limits;
    if (read_rows(path, 2, r) < 0) return -1;
    for (int s = 0; s < 2; s++) {
        l->lim[s] = malloc((r->n_rows + 1) * sizeof *l->lim[s]);
        if (!l->lim[s]) return -1;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        const char *id = cell(r, i, 0), *side = cell(r, i, 3);
        dt_event_limit lim = {id, -1, -1};
        if (limit_value(path, i, cell(r, i, 1), &lim.max_meetings) < 0 ||
            limit_value(path, i, cell(r, i, 2), &lim.min_meetings) < 0)
            return -1;
        bool is_sme = dt_engine_get(e, tenant, DT_DEMAND, id) != NULL,
             is_holder = dt_engine_get(e, tenant, DT_ACHIEVEMENT, id) != NULL;
        if (side && *side) {
            if (strcmp(side, "sme") && strcmp(side, "holder")) {
                fprintf(stderr, "%s: row %zu: side must be sme or holder, got '%s'\n", path, i + 1, side);
                return -1;
            }
            is_sme = !strcmp(side, "sme");
            is_holder = !is_sme;
        } else if (is_sme && is_holder) {
            fprintf(stderr, "%s: row %zu: '%s' is both a demand and an achievement: add a side column (sme|holder)\n",
                    path, i + 1, id);
            return -1;
        } else if (!is_sme && !is_holder) {
            fprintf(stderr, "%s: row %zu: no demand or achievement with id '%s'\n", path, i + 1, id);
            return -1;
        }
        int s = is_sme ? 0 : 1;
        l->lim[s][l->nlim[s]++] = lim;
    }
    return 0;
}

int cmd_pair(int argc, char **argv)
{
    enum { O_SMES = 256, O_SME_FILTER, O_HOLDERS, O_HOLDER_FILTER, O_SLOTS, O_TABLES, O_MAXM, O_MINM, O_LIMITS,
           O_MINSCORE, O_MUST, O_NEVER, O_REQUESTS, O_EXCL, O_LOCKED, O_CAND, O_WEIGHTS, O_B1, O_B2, O_DECAY, O_FORMAT,
           O_AGENDAS, O_TITLE, O_CLUSTERS, O_TENANT, O_STRICT, O_DIM };
    static const struct option opts[] = {
        {"achievements", required_argument, 0, 'a'}, {"demands", required_argument, 0, 'd'},
        {"smes", required_argument, 0, O_SMES}, {"sme-filter", required_argument, 0, O_SME_FILTER},
        {"holders", required_argument, 0, O_HOLDERS}, {"holder-filter", required_argument, 0, O_HOLDER_FILTER},
        {"slots", required_argument, 0, O_SLOTS}, {"tables", required_argument, 0, O_TABLES},
        {"max-meetings", required_argument, 0, O_MAXM}, {"min-meetings", required_argument, 0, O_MINM},
        {"limits", required_argument, 0, O_LIMITS}, {"min-score", required_argument, 0, O_MINSCORE},
        {"must", required_argument, 0, O_MUST}, {"never", required_argument, 0, O_NEVER},
        {"requests", required_argument, 0, O_REQUESTS}, {"exclude-met", required_argument, 0, O_EXCL},
        {"locked", required_argument, 0, O_LOCKED}, {"candidates", required_argument, 0, O_CAND},
        {"weights", required_argument, 0, O_WEIGHTS}, {"boost-one", required_argument, 0, O_B1},
        {"boost-both", required_argument, 0, O_B2}, {"decay", required_argument, 0, O_DECAY},
        {"format", required_argument, 0, O_FORMAT}, {"agendas", required_argument, 0, O_AGENDAS},
        {"title", required_argument, 0, O_TITLE}, {"clusters", required_argument, 0, O_CLUSTERS},
        {"tenant", required_argument, 0, O_TENANT}, {"strict", no_argument, 0, O_STRICT},
        {"dim", required_argument, 0, O_DIM}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *ach[MAX_FILES], *dem[MAX_FILES];
    size_t n_ach = 0, n_dem = 0;
    const char *side_file[2] = {NULL, NULL}, *side_filter[2] = {NULL, NULL};
    const char *f_limits = NULL, *f_must = NULL, *f_never = NULL, *f_req = NULL, *f_met = NULL, *f_locked = NULL;
    const char *format = "json", *out_path = NULL, *agendas_path = NULL, *title = NULL, *clusters_file = NULL;
    bool strict = false, quiet = false;
    dt_event_spec sp;
    dt_event_spec_init(&sp);
    dt_weights w;
    dt_engine_opts eo = dt_engine_opts_default();
    int iv, c;
    while ((c = getopt_long(argc, argv, "a:d:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
        case 'd':
            if ((c == 'a' ? n_ach : n_dem) == MAX_FILES) {
                fprintf(stderr, "-%c: at most %d files\n", c, MAX_FILES);
                return 2;
            }
            if (c == 'a') ach[n_ach++] = optarg;
            else dem[n_dem++] = optarg;
            break;
        case 'o': out_path = optarg; break;
        case 'q': quiet = true; break;
        case O_SMES: side_file[0] = optarg; break;
        case O_HOLDERS: side_file[1] = optarg; break;
        case O_SME_FILTER: side_filter[0] = optarg; break;
        case O_HOLDER_FILTER: side_filter[1] = optarg; break;
        case O_SLOTS:
            if (parse_int("--slots", optarg, 1, DT_PAIR_SLOTS_MAX, &sp.slots)) return 2;
            break;
        case O_TABLES:
            if (parse_int("--tables", optarg, 1, DT_PAIR_TABLES_MAX, &sp.tables)) return 2;
            break;
        case O_MAXM:
            if (parse_int("--max-meetings", optarg, 0, DT_PAIR_SLOTS_MAX, &sp.max_meetings)) return 2;
            break;
        case O_MINM:
            if (parse_int("--min-meetings", optarg, 0, DT_PAIR_SLOTS_MAX, &sp.min_meetings)) return 2;
            break;
        case O_CAND:
            if (parse_int("--candidates", optarg, 1, DT_EVENT_CANDIDATES_MAX, &iv)) return 2;
            sp.candidates = (size_t)iv;
            break;
        case O_MINSCORE:
            if (parse_dbl("--min-score", optarg, -1e6, 1e6, &sp.opt.min_score)) return 2;
            break;
        case O_B1:
            if (parse_dbl("--boost-one", optarg, 0, DT_PAIR_VALUE_MAX, &sp.opt.boost_one)) return 2;
            break;
        case O_B2:
            if (parse_dbl("--boost-both", optarg, 0, DT_PAIR_VALUE_MAX, &sp.opt.boost_both)) return 2;
            break;
        case O_DECAY:
            if (parse_dbl("--decay", optarg, 1e-9, 1, &sp.opt.decay_gamma)) return 2;
            break;
        case O_WEIGHTS:
            if (cli_parse_weights(optarg, &w)) return 2;
            sp.weights = &w;
            break;
        case O_LIMITS: f_limits = optarg; break;
        case O_MUST: f_must = optarg; break;
        case O_NEVER: f_never = optarg; break;
        case O_REQUESTS: f_req = optarg; break;
        case O_EXCL: f_met = optarg; break;
        case O_LOCKED: f_locked = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_AGENDAS: agendas_path = optarg; break;
        case O_TITLE: title = optarg; break;
        case O_CLUSTERS: clusters_file = optarg; break;
        case O_TENANT: sp.tenant = optarg; break;
        case O_STRICT: strict = true; break;
        case O_DIM:
            if (parse_int("--dim", optarg, 1, 4096, &iv)) return 2;
            eo.dim = (size_t)iv;
            break;
        case 'h': pair_usage(stdout); return 0;
        default: pair_usage(stderr); return 2;
        }
    }
    if (strcmp(format, "json") && strcmp(format, "csv") && strcmp(format, "html")) {
        fprintf(stderr, "--format: json, csv or html, not '%s'\n", format);
        return 2;
    }
    static const char *const side_names[2] = {"--smes or --sme-filter", "--holders or --holder-filter"};
    for (int s = 0; s < 2; s++)
        if (!side_file[s] == !side_filter[s]) {
            fprintf(stderr, "dovetail pair: give exactly one of %s (see --help)\n", side_names[s]);
            return 2;
        }
    if (!sp.slots || !sp.tables) {
        fprintf(stderr, "dovetail pair: --slots and --tables are required (see --help)\n");
        return 2;
    }
    if (n_ach + n_dem == 0 && optind >= argc) {
        fprintf(stderr, "dovetail pair: no record files given (see --help)\n");
        return 2;
    }

    dt_topk_blas_single();
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    if (!e) {
        fprintf(stderr, "dovetail: %s\n", err.msg);
        return 3;
    }
    int status = 0;
    lists l;
    memset(&l, 0, sizeof l);
    dt_searcher *sr = NULL;
    dt_event_result *r = NULL;
    char *text = NULL;
    status = cli_load_all(e, clusters_file, ach, n_ach, dem, n_dem, argv + optind, (size_t)(argc - optind), sp.tenant,
                          strict, quiet, true);
    if (status) goto out;

    status = 1; /* from here on, a failure is a bad input file unless said otherwise */
    for (int s = 0; s < 2; s++) {
        dt_event_side *side = s ? &sp.holders : &sp.smes;
        if (side_file[s]) {
            if (read_ids(side_file[s], &l.ids[s], &l.nids[s]) < 0) goto out;
            side->ids = (const char *const *)l.ids[s];
            side->n_ids = l.nids[s];
        } else if (parse_filter(side_filter[s], s ? "--holder-filter" : "--sme-filter", &l.fo[s], side) < 0) {
            status = 2;
            goto out;
        }
    }
    if (f_limits) {
        if (limits_of(e, sp.tenant, f_limits, &l) < 0) goto out;
        sp.sme_limits = l.lim[0];
        sp.n_sme_limits = l.nlim[0];
        sp.holder_limits = l.lim[1];
        sp.n_holder_limits = l.nlim[1];
    }
    if (f_must && pairs_of(f_must, &l.must, &l.pmust, &sp.n_must_meet) < 0) goto out;
    if (f_never && pairs_of(f_never, &l.never, &l.pnever, &sp.n_never_meet) < 0) goto out;
    if (f_met && pairs_of(f_met, &l.met, &l.pmet, &sp.n_met_before) < 0) goto out;
    sp.must_meet = l.pmust;
    sp.never_meet = l.pnever;
    sp.met_before = l.pmet;
    if (f_req) {
        if (read_rows(f_req, 3, &l.req) < 0 || !(l.preq = malloc((l.req.n_rows + 1) * sizeof *l.preq))) goto out;
        for (size_t i = 0; i < l.req.n_rows; i++) {
            const char *who = cell(&l.req, i, 2);
            int w2 = !strcmp(who, "sme") ? DT_PAIR_REQ_A : !strcmp(who, "holder") ? DT_PAIR_REQ_B
                                                          : !strcmp(who, "both")   ? DT_PAIR_REQ_BOTH
                                                                                   : 0;
            if (!w2) {
                fprintf(stderr, "%s: row %zu: who must be sme, holder or both, got '%s'\n", f_req, i + 1, who);
                goto out;
            }
            l.preq[i] = (dt_event_request){cell(&l.req, i, 0), cell(&l.req, i, 1), w2};
        }
        sp.requests = l.preq;
        sp.n_requests = l.req.n_rows;
    }
    if (f_locked) {
        if (read_rows(f_locked, 4, &l.locked) < 0 || !(l.plocked = malloc((l.locked.n_rows + 1) * sizeof *l.plocked)))
            goto out;
        for (size_t i = 0; i < l.locked.n_rows; i++) {
            char what[600];
            snprintf(what, sizeof what, "%s: row %zu: slot", f_locked, i + 1);
            dt_event_locked *lk = &l.plocked[i];
            *lk = (dt_event_locked){cell(&l.locked, i, 0), cell(&l.locked, i, 1), 0, 0};
            if (parse_int(what, cell(&l.locked, i, 2), 1, DT_PAIR_SLOTS_MAX, &lk->slot) < 0) goto out;
            snprintf(what, sizeof what, "%s: row %zu: table", f_locked, i + 1);
            if (parse_int(what, cell(&l.locked, i, 3), 1, DT_PAIR_TABLES_MAX, &lk->table) < 0) goto out;
        }
        sp.locked = l.plocked;
        sp.n_locked = l.locked.n_rows;
    }

    if (!(sr = dt_searcher_new(e, &err))) {
        fprintf(stderr, "dovetail: %s\n", err.msg);
        status = 3;
        goto out;
    }
    if (dt_event_pair(e, sr, &sp, &r, &err) < 0) {
        fprintf(stderr, "dovetail pair: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
        status = err.code == DT_ENOMEM || err.code == DT_EINTERNAL ? 3 : 1;
        goto out;
    }
    size_t len = 0;
    if (!strcmp(format, "json")) {
        json_t *o = result_json(r, title);
        text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        json_decref(o);
        if (text) {
            len = strlen(text);
            char *t2 = realloc(text, len + 2);
            if (t2) {
                text = t2;
                text[len++] = '\n';
                text[len] = 0;
            }
        }
    } else if (!strcmp(format, "csv")) {
        text = dt_event_csv_meetings(r, &len);
    } else {
        text = dt_event_html(r, title, &len);
    }
    if (!text) {
        fprintf(stderr, "dovetail: out of memory writing the schedule\n");
        status = 3;
        goto out;
    }
    if (write_out(out_path, text, len) < 0) goto out;
    if (agendas_path) {
        free(text);
        text = dt_event_csv_agendas(r, &len);
        if (!text || write_out(agendas_path, text, len) < 0) goto out;
    }
    if (!quiet)
        fprintf(stderr,
                "dovetail pair: %zu SMEs x %zu holders, %d slots x %d tables: %zu meetings, total score %.3f, "
                "%zu candidates (%.1f ms candidates, %.1f ms solve)\n",
                r->n_smes, r->n_holders, r->slots, r->tables, r->n_meetings, r->total_score, r->n_candidates,
                (double)r->candidates_us / 1000, (double)r->solve_us / 1000);
    status = 0;
out:
    free(text);
    dt_event_result_free(r);
    dt_searcher_free(sr);
    lists_free(&l);
    dt_engine_free(e);
    return status;
}
