/* ingest.c - record files into an engine, reporting every rejected row (see ingest.h). */
#include "ingest.h"

#include <string.h>

typedef struct ingest_ctx {
    dt_engine *e;
    const char *path;
    FILE *log;
    size_t shown, max_shown, rejected_by_engine;
} ingest_ctx;

static int ingest_one(void *ud, dt_record *rec, size_t line, dt_err *err)
{
    ingest_ctx *c = ud;
    dt_err e2 = DT_ERR_INIT;
    if (dt_engine_check_upsert(c->e, &rec, 1, NULL, &e2) < 0 || dt_engine_upsert(c->e, rec, &e2) < 0) {
        if (e2.code == DT_ENOMEM) {
            *err = e2;
            return -DT_ENOMEM;
        }
        c->rejected_by_engine++;
        if (c->log && c->shown++ < c->max_shown) fprintf(c->log, "%s:%zu: %s: %s\n", c->path, line, e2.field, e2.msg);
    }
    return 0;
}

int dt_ingest_file(dt_engine *e, const char *path, int default_side, const char *tenant, bool strict, FILE *log,
                   size_t max_shown, size_t *loaded, size_t *rejected)
{
    dt_load_opts o = DT_LOAD_OPTS_INIT;
    o.strict = strict;
    o.default_side = default_side;
    o.default_tenant = tenant;
    ingest_ctx c = {e, path, log, 0, max_shown, 0};
    dt_load_report rep;
    memset(&rep, 0, sizeof rep);
    dt_err err = DT_ERR_INIT;
    int rc = dt_load_file(path, &o, ingest_one, &c, &rep, &err);
    for (size_t i = 0; log && i < rep.n_issues && c.shown < max_shown; i++, c.shown++)
        fprintf(log, "%s:%zu: %s%s: %s\n", path, rep.issues[i].line, rep.issues[i].code ? "" : "warning: ",
                rep.issues[i].field[0] ? rep.issues[i].field : "row", rep.issues[i].msg);
    size_t bad = rep.rejected + c.rejected_by_engine, good = rep.loaded - c.rejected_by_engine;
    if (log && c.shown >= max_shown && bad + rep.warnings > max_shown)
        fprintf(log, "%s: ... more issues not shown\n", path);
    if (rc < 0) {
        if (log) fprintf(log, "%s: %s%s%s\n", path, err.field, err.field[0] ? ": " : "", err.msg);
    } else if (log) {
        fprintf(log, "%s: %zu rows, %zu loaded, %zu rejected\n", path, rep.rows, good, bad);
    }
    if (loaded) *loaded = rc < 0 ? 0 : good;
    if (rejected) *rejected = bad;
    dt_load_report_free(&rep);
    return rc;
}
