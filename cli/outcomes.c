/* outcomes.c - outcome events from JSON Lines files, for `dovetail rerank`, `dovetail stats` and
 * `dovetail import`.
 *
 * One JSON object per line with the keys demand_id, achievement_id, kind, reason, amount, at and
 * tenant (docs/rerank.md); blank lines are skipped. What it is not: a reader of the daemon's
 * journal (store/durable.c), or a client of RecordOutcome.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Fills ev from one line's object (strings borrowed from o). On error field names the key. */
static int parse_outcome_line(json_t *o, const char *tenant, dt_outcome_event *ev, char *field,
                              size_t nfield, dt_err *err)
{
    static const char *const keys[] = {"tenant", "demand_id", "achievement_id", "kind", "reason",
                                       "amount", "at"};
    dt_outcome_event_init(ev);
    ev->tenant = tenant;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i = 0;
        while (i < sizeof keys / sizeof *keys && strcmp(k, keys[i]))
            i++;
        if (i == sizeof keys / sizeof *keys) {
            snprintf(field, nfield, "%s", k);
            return dt_err_set(err, DT_EINVAL, NULL,
                              "unknown key: expected tenant, demand_id, achievement_id, kind, "
                              "reason, amount, at");
        }
        snprintf(field, nfield, "%s", k);
        if (json_is_null(v)) continue;
        bool str = i <= 4;
        if (str && !json_is_string(v)) return dt_err_set(err, DT_EINVAL, NULL, "must be a string");
        if (!str && !json_is_number(v)) return dt_err_set(err, DT_EINVAL, NULL, "must be a number");
        const char *s = str ? json_string_value(v) : NULL;
        int rc = 0;
        switch (i) {
        case 0:
            ev->tenant = s;
            break;
        case 1:
            ev->demand_id = s;
            break;
        case 2:
            ev->achievement_id = s;
            break;
        case 3:
            rc = dt_outcome_kind_parse(s, &ev->kind, k, err);
            break;
        case 4:
            rc = dt_outcome_reason_parse(s, &ev->reason, k, err);
            break;
        case 5:
            ev->amount = json_number_value(v);
            break;
        case 6: {
            double at = json_number_value(v);
            if (!(at >= 0 && at < 9e15 && at == floor(at)))
                return dt_err_set(err, DT_EINVAL, NULL, "must be whole unix seconds >= 0");
            ev->at = (int64_t)at;
            break;
        }
        }
        if (rc) return rc;
    }
    if (!json_object_get(o, "kind")) {
        snprintf(field, nfield, "kind");
        return dt_err_set(err, DT_EINVAL, NULL, "missing");
    }
    field[0] = 0;
    return 0;
}

long cli_load_outcomes(dt_outcome_store *s, const dt_engine *e, const char *path,
                       const char *tenant, size_t *added)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    long bad = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) continue;
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)len, 0, &jerr);
        char field[128] = "";
        dt_err err = DT_ERR_INIT;
        dt_outcome_event ev;
        int rc;
        if (!o || !json_is_object(o)) {
            rc = dt_err_set(&err, DT_EINVAL, NULL, "%s", o ? "not a JSON object" : jerr.text);
        } else {
            rc = parse_outcome_line(o, tenant, &ev, field, sizeof field, &err);
            if (rc == 0) {
                rc = dt_outcome_event_validate(&ev, &err);
                if (rc == 0 && e) rc = dt_outcome_event_check_stored(e, &ev, &err);
                if (rc == 0) rc = dt_outcome_add(s, &ev, &err);
                if (rc == 0) (*added)++;
                snprintf(field, sizeof field, "%s", err.field);
            }
        }
        if (rc) {
            if (bad < 20)
                fprintf(stderr, "%s:%zu: %s%s%s\n", path, lineno, field, field[0] ? ": " : "",
                        err.msg);
            bad++;
        }
        json_decref(o);
    }
    bool rerr = ferror(f);
    free(line);
    fclose(f);
    if (rerr) {
        fprintf(stderr, "%s: read error\n", path);
        return -1;
    }
    if (bad > 20) fprintf(stderr, "%s: %ld bad lines in all\n", path, bad);
    return bad;
}
