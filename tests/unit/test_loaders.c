/* test_loaders.c - the CSV and JSON Lines loaders (loaders/load.h) on the fixtures in tests/data/
 * and on generated inputs whose ids encode the line they are written on. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

/* ---- helpers ---- */

typedef struct item {
    dt_record rec;
    size_t line;
} item;

typedef struct got {
    item *v;
    size_t n, cap;
    size_t stop_after;  /* 0: never stop */
    bool check_line_id; /* ids are "L<line>[...]": check the line the loader reports */
    size_t line_mismatches;
} got;

static int collect(void *ud, dt_record *rec, size_t line, dt_err *err)
{
    got *g = ud;
    if (g->stop_after && g->n == g->stop_after)
        return dt_err_set(err, DT_ELIMIT, "test", "stopped after %zu", g->n);
    if (g->check_line_id) {
        char want[32];
        snprintf(want, sizeof want, "L%zu", line);
        size_t wl = strlen(want);
        if (strncmp(rec->id, want, wl) != 0 || (rec->id[wl] != '\0' && rec->id[wl] != '-'))
            g->line_mismatches++;
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->v = realloc(g->v, g->cap * sizeof *g->v);
        assert_non_null(g->v);
    }
    g->v[g->n].rec = *rec; /* take ownership */
    g->v[g->n++].line = line;
    dt_record_init(rec);
    return 0;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        dt_record_free(&g->v[i].rec);
    free(g->v);
    memset(g, 0, sizeof *g);
}

static const item *find(const got *g, const char *id, dt_side side)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i].rec.id, id) == 0 && g->v[i].rec.side == side) return &g->v[i];
    return NULL;
}

static char data_dir[4096];

static int setup_paths(void **state)
{
    (void)state;
    const char *env = getenv("DT_TEST_DATA");
    if (env) {
        snprintf(data_dir, sizeof data_dir, "%s", env);
        return 0;
    }
    if (access("tests/data/loader_bad.csv", R_OK) == 0) {
        snprintf(data_dir, sizeof data_dir, "tests/data");
        return 0;
    }
    snprintf(data_dir, sizeof data_dir, "%s", __FILE__); /* .../tests/unit/test_loaders.c */
    char *slash = strrchr(data_dir, '/');
    if (slash) *slash = '\0';
    slash = strrchr(data_dir, '/');
    if (slash) *slash = '\0';
    strncat(data_dir, "/data", sizeof data_dir - strlen(data_dir) - 1);
    return 0;
}

static const char *fixture(const char *name)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    return path;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* 1-based number of the line of text that starts with prefix; 0 when none does. */
static size_t line_of(const char *text, const char *prefix)
{
    size_t line = 1, pl = strlen(prefix);
    for (const char *p = text; *p; p++) {
        if ((p == text || p[-1] == '\n') && strncmp(p, prefix, pl) == 0) return line;
        if (*p == '\n') line++;
    }
    return 0;
}

static const dt_load_issue *issue_at(const dt_load_report *rep, size_t line)
{
    for (size_t i = 0; i < rep->n_issues; i++)
        if (rep->issues[i].line == line) return &rep->issues[i];
    return NULL;
}

typedef struct want_issue {
    const char *line_prefix; /* the fixture line the issue is about starts with this */
    int code;
    const char *field;
    const char *msg_part;
} want_issue;

static void check_issues(const dt_load_report *rep, const char *text, const want_issue *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t line = line_of(text, w[i].line_prefix);
        if (line == 0) fail_msg("fixture has no line starting with %s", w[i].line_prefix);
        const dt_load_issue *is = issue_at(rep, line);
        if (!is) fail_msg("no issue reported on line %zu (%s)", line, w[i].line_prefix);
        if (is->code != w[i].code || strcmp(is->field, w[i].field) != 0 ||
            !strstr(is->msg, w[i].msg_part))
            fail_msg("line %zu: got [%d] %s: %s; want [%d] %s: ...%s...", line, is->code, is->field,
                     is->msg, w[i].code, w[i].field, w[i].msg_part);
    }
}

static char *temp_file(const char *suffix, const char *data, size_t len)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *path = malloc(4096);
    assert_non_null(path);
    snprintf(path, 4096, "%s/dt_loader_XXXXXX%s", dir, suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    close(fd);
    return path;
}

/* A growable text buffer that tracks the current line number. */
typedef struct text {
    char *s;
    size_t n, cap;
    size_t line; /* the line the next byte goes on */
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        while (t->n + n + 1 > t->cap)
            t->cap = t->cap ? t->cap * 2 : 1 << 16;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            t->line++;
        else if (s[i] == '\r' && !(i + 1 < n && s[i + 1] == '\n'))
            t->line++; /* a lone CR ends a line too (put never splits "\r\n") */
    }
}

static void putf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text *t, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    put(t, buf, (size_t)n);
}

/* ---- the fixtures ---- */

static void test_csv_fixture(void **state)
{
    (void)state;
    size_t len;
    char *txt = slurp(fixture("loader_bad.csv"), &len);
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    assert_int_equal(dt_load_file(fixture("loader_bad.csv"), &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.format, DT_FMT_CSV);
    /* 24 data rows: rows starting on lines 2, 3 (spans 4), 5..18, 19 (spans 20), 21..27 */
    assert_int_equal(rep.rows, 24);
    assert_int_equal(rep.loaded, 5);
    assert_int_equal(rep.rejected, 19);
    assert_int_equal(rep.warnings, 1);
    assert_int_equal(rep.n_issues, 20);
    assert_int_equal(rep.issues[0].line, 1);
    assert_int_equal(rep.issues[0].code, 0);
    assert_string_equal(rep.issues[0].field, "colour");

    const want_issue w[] = {
        {",demand,missing id", DT_EINVAL, "id", "missing"},
        {"b2,", DT_EINVAL, "trl", "\"12\" is out of range (1..9)"},
        {"b3,", DT_EINVAL, "trl", "not an integer: \"4.5\""},
        {"b4,", DT_EINVAL, "modes[1]",
         "unknown mode \"barter\" (valid: transfer, license, open_license, joint_rd, equity, "
         "consulting)"},
        {"b5,", DT_EINVAL, "price_min", "malformed number: \"12k\""},
        {"b6,", DT_EINVAL, "price_min", "negative"},
        {"b7,", DT_EINVAL, "price_min", "500 is greater than price_max 100"},
        {"b8,", DT_EINVAL, "embedding[1]", "not a finite number: \"nan\""},
        {"b9,", DT_EINVAL, "embedding", "2 dimensions, expected 3"},
        {"g1,demand,dup", DT_EEXIST, "id",
         "duplicate id \"g1\" for tenant public, side demand: "
         "first seen on line 2"},
        {"b10,", DT_EINVAL, "side", "unknown side \"robot\""},
        {"b11,", DT_EINVAL, "status", "unknown status \"pending\""},
        {"b12,", DT_EINVAL, "title", "invalid UTF-8 (byte 0xff) at offset 4"},
        {"b14,", DT_EINVAL, "row", "malformed quoting"},
        {"b15,", DT_EINVAL, "row", "has 13 fields, the header has 12"},
        {"\"id with space \"", DT_EINVAL, "id", "ends with white space"},
        {"b16,", DT_EINVAL, "updated_at", "\"yesterday\""},
        {"b17,", DT_ELIMIT, "keywords", "limit of 64"},
        {"b18,", DT_ELIMIT, "title", "1100 bytes, longer than the limit of 1024 bytes"},
    };
    check_issues(&rep, txt, w, sizeof w / sizeof w[0]);
    /* the quoted title of g2 spans lines 3-4, so everything after is one line further down */
    assert_int_equal(line_of(txt, ",demand,missing id"), 5);
    assert_int_equal(line_of(txt, "b18,"), 26);
    const dt_load_issue *q = issue_at(&rep, 21);
    assert_non_null(strstr(q->msg, "at line 21, column 15")); /* b14,demand,"x"y: the y */

    assert_int_equal(g.n, 5);
    const item *it = find(&g, "g1", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->line, 2);
    assert_string_equal(it->rec.title, "Good one");
    assert_int_equal(it->rec.n_keywords, 2);
    assert_string_equal(it->rec.keywords[1], "b");
    assert_int_equal(it->rec.trl, 5);
    assert_int_equal(it->rec.modes, DT_MODE_TRANSFER | DT_MODE_LICENSE);
    assert_true(it->rec.price_min == 100 && it->rec.price_max == 200);
    assert_int_equal(it->rec.updated_at, 1700000000);
    assert_int_equal(it->rec.dim, 3);
    assert_true(it->rec.embedding[2] == 0.3f);
    it = find(&g, "g2", DT_ACHIEVEMENT);
    assert_non_null(it);
    assert_int_equal(it->line, 3);
    assert_string_equal(it->rec.title, "Title spanning\ntwo lines");
    assert_int_equal(it->rec.status, DT_CLOSED);
    assert_int_equal(it->rec.updated_at, 1714521600); /* 2024-05-01T00:00:00Z */
    it = find(&g, "g1", DT_ACHIEVEMENT);
    assert_non_null(it);
    assert_int_equal(it->line, line_of(txt, "g1,achievement"));
    it = find(&g, "b13", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->line, line_of(txt, "b13,"));
    assert_string_equal(it->rec.title, "multi\nline, quoted");
    it = find(&g, "g3", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->line, 27);
    assert_int_equal(it->rec.trl, 3);
    got_free(&g);
    dt_load_report_free(&rep);
    free(txt);
}

static void test_jsonl_fixture(void **state)
{
    (void)state;
    size_t len;
    char *txt = slurp(fixture("loader_bad.jsonl"), &len);
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_load_file(fixture("loader_bad.jsonl"), NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.format, DT_FMT_JSONL);
    assert_int_equal(rep.rows, 25); /* 26 lines, line 3 blank */
    assert_int_equal(rep.rejected, 19);
    assert_int_equal(rep.loaded, 6);
    assert_int_equal(rep.warnings, 1); /* "colour" on lines 2 and 10: warned once */
    assert_int_equal(rep.issues[0].line, 2);
    assert_int_equal(rep.issues[0].code, 0);
    assert_string_equal(rep.issues[0].field, "colour");

    const want_issue w[] = {
        {"{\"id\":\"j3\"", DT_EINVAL, "trl", "malformed number: \"nine\""},
        {"{\"id\":\"j4\"", DT_EINVAL, "title", "wrong JSON type: expected a string, got a number"},
        {"{\"id\":\"j5\"", DT_EINVAL, "json", "invalid JSON at column"},
        {"{\"id\":\"j6\"", DT_EINVAL, "keywords[1]", "invalid UTF-8 (byte 0xff)"},
        {"{\"id\":\"j7\"", DT_EINVAL, "embedding", "3 dimensions, expected 2"},
        {"{\"id\":\"j1\",\"side\":\"demand\"}", DT_EEXIST, "id", "first seen on line 1"},
        {"{\"id\":\"j9\"", DT_EINVAL, "id", "both \"id\" and \"_id\""},
        {"[1,2]", DT_EINVAL, "json", "a line must hold an object, got an array"},
        {"{\"id\":\"j10\"", DT_EINVAL, "modes[1]", "expected a string, got a number"},
        {"{\"id\":\"j11\"", DT_EINVAL, "trl", "0 is out of range (1..9)"},
        {"{\"id\":\"j12\"", DT_EINVAL, "price_max", "negative"},
        {"{\"id\":\"j13\"", DT_EINVAL, "status", "\"archived\""},
        {"{\"id\":\"j14\"", DT_EINVAL, "side", "\"seller\""},
        {"{\"id\":\"j15\"", DT_EINVAL, "embedding[0]", "not a finite float32"},
        {"{\"id\":\"j16\"", DT_EINVAL, "updated_at", "\"2024-13-01\""},
        {"{\"id\":\"j18\"}", DT_EINVAL, "side", "missing"},
        {"{\"id\":\"j20\"", DT_EINVAL, "title", "invalid UTF-8 (byte 0xc3)"},
        {"{\"id\":\"j21\"", DT_EINVAL, "trl", "expected a number, got a boolean"},
        {"{\"id\":\"j22\"", DT_EINVAL, "modes[0]", "unknown mode \"barter\""},
    };
    check_issues(&rep, txt, w, sizeof w / sizeof w[0]);
    /* the invalid byte's column, found independently */
    size_t l6 = line_of(txt, "{\"id\":\"j6\"");
    const char *p = txt;
    for (size_t l = 1; l < l6; l++)
        p = strchr(p, '\n') + 1;
    char want[64];
    snprintf(want, sizeof want, "at column %zu", (size_t)(strchr(p, '\xff') - p) + 1);
    assert_non_null(strstr(issue_at(&rep, l6)->msg, want));

    const item *it = find(&g, "j1", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->line, 1);
    assert_string_equal(it->rec.title, "好的需求");
    assert_int_equal(it->rec.n_keywords, 2);
    assert_string_equal(it->rec.keywords[0], "电池");
    assert_int_equal(it->rec.trl, 4);
    assert_int_equal(it->rec.modes, DT_MODE_LICENSE);
    assert_true(it->rec.price_min == 1000 && it->rec.price_max == 5000); /* "1000": a string */
    assert_int_equal(it->rec.updated_at, 1700000000);
    assert_int_equal(it->rec.dim, 2);
    assert_true(it->rec.embedding[1] == 0.2f);
    it = find(&g, "j8", DT_DEMAND); /* "_id" */
    assert_non_null(it);
    assert_int_equal(it->line, 10);
    it = find(&g, "j17", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->rec.n_keywords, 3); /* "a;b|c" */
    assert_string_equal(it->rec.keywords[2], "c");
    assert_int_equal(it->rec.n_tags, 1);
    assert_int_equal(it->rec.modes, DT_MODE_EQUITY);
    it = find(&g, "j19", DT_DEMAND);
    assert_non_null(it);
    assert_int_equal(it->rec.trl, 3);     /* 3.0 */
    assert_null(it->rec.title);           /* null */
    it = find(&g, "j23", DT_ACHIEVEMENT); /* last line, no newline, leading spaces */
    assert_non_null(it);
    assert_int_equal(it->line, 26);
    got_free(&g);
    dt_load_report_free(&rep);
    free(txt);
}

static void test_good_csv_all_fields(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.default_tenant = "gov";
    opts.strict = true;
    assert_int_equal(dt_load_file(fixture("loader_good.csv"), &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.loaded, 3);
    assert_int_equal(rep.n_issues, 0);
    const dt_record *r = &g.v[0].rec;
    assert_int_equal(g.v[0].line, 2);
    assert_string_equal(r->tenant, "acme");
    assert_string_equal(r->id, "d1");
    assert_int_equal(r->side, DT_DEMAND);
    assert_string_equal(r->title, "锂电池回收");
    assert_string_equal(r->text,
                        "需要一种低成本的锂电池回收工艺, with \"quotes\" and a\nsecond line");
    assert_int_equal(r->n_keywords, 3);
    assert_string_equal(r->keywords[0], "回收");
    assert_string_equal(r->keywords[2], "湿法冶金");
    assert_string_equal(r->org, "某某新能源有限公司");
    assert_string_equal(r->field, "C.42.1");
    assert_string_equal(r->region, "CN.32.05");
    assert_int_equal(r->trl, 6);
    assert_int_equal(r->modes, DT_MODE_TRANSFER | DT_MODE_LICENSE);
    assert_true(r->price_min == 100000 && r->price_max == 500000);
    assert_int_equal(r->n_tags, 1);
    assert_string_equal(r->tags[0], "srdi");
    assert_int_equal(r->status, DT_OPEN);
    assert_int_equal(r->updated_at, 1714521600);
    assert_int_equal(r->dim, 3);
    assert_true(r->embedding[0] == 0.5f && r->embedding[1] == -0.25f && r->embedding[2] == 1.0f);
    r = &g.v[1].rec;
    assert_int_equal(g.v[1].line, 4);
    assert_string_equal(r->tenant, "gov"); /* empty cell: the default tenant */
    assert_int_equal(r->side, DT_ACHIEVEMENT);
    assert_int_equal(r->updated_at, 1714521600); /* 2024-05-01T08:00:00+08:00 */
    assert_true(isnan(r->price_min));
    r = &g.v[2].rec;
    assert_string_equal(r->tenant, "acme");
    assert_string_equal(r->id, "a1");
    assert_int_equal(r->side, DT_DEMAND);
    got_free(&g);
    dt_load_report_free(&rep);
}

static void test_bom_crlf(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.default_side = DT_ACHIEVEMENT;
    assert_int_equal(dt_load_file(fixture("loader_bom_crlf.csv"), &opts, collect, &g, &rep, &err),
                     0);
    assert_int_equal(rep.loaded, 3);
    assert_int_equal(rep.rejected, 0);
    assert_int_equal(rep.warnings, 1);
    assert_string_equal(rep.issues[0].field, "Extra");
    assert_int_equal(rep.issues[0].line, 1);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.v[0].rec.id, "c1"); /* not "\xEF\xBB\xBFid" as a column name */
    assert_string_equal(g.v[0].rec.title, "第一");
    assert_int_equal(g.v[0].rec.side, DT_ACHIEVEMENT);
    assert_int_equal(g.v[0].line, 2);
    assert_string_equal(g.v[1].rec.title, "two\r\nlines");
    assert_int_equal(g.v[1].line, 3);
    assert_int_equal(g.v[2].line, 6); /* after the quoted CRLF and a blank line */
    got_free(&g);
    dt_load_report_free(&rep);

    const char js[] = "\xEF\xBB\xBF{\"id\":\"a\",\"side\":\"demand\"}\r\n\r\n"
                      "{\"id\":\"b\",\"side\":\"demand\",\"trl\":\"x\"}\r\n"
                      "{\"id\":\"c\",\"side\":\"demand\"}\r\n";
    assert_int_equal(dt_load_buffer(js, sizeof js - 1, NULL, NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.format, DT_FMT_JSONL); /* sniffed past the BOM */
    assert_int_equal(g.n, 2);
    assert_int_equal(g.v[1].line, 4);
    assert_int_equal(rep.issues[0].line, 3);
    got_free(&g);
    dt_load_report_free(&rep);

    /* lone CR line endings (old spreadsheet exports) count lines too */
    const char cr[] = "id,side\rx1,demand\r\rx2,bogus\rx3,demand";
    assert_int_equal(dt_load_buffer(cr, sizeof cr - 1, "cr.csv", NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.v[0].line, 2);
    assert_int_equal(g.v[1].line, 5);
    assert_int_equal(rep.issues[0].line, 4);
    got_free(&g);
    dt_load_report_free(&rep);
}

static void test_beir(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.default_side = DT_ACHIEVEMENT;
    opts.default_tenant = "beir";
    assert_int_equal(dt_load_file(fixture("loader_beir.jsonl"), &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.loaded, 2);
    assert_int_equal(rep.n_issues, 0); /* "metadata" is ignored silently */
    assert_string_equal(g.v[0].rec.id, "doc1");
    assert_string_equal(g.v[0].rec.tenant, "beir");
    assert_string_equal(g.v[0].rec.text, "A hydrometallurgical process.");
    assert_null(g.v[1].rec.title);
    got_free(&g);
    dt_load_report_free(&rep);

    const char csv[] = "_id,title\nq1,What\n";
    assert_int_equal(
        dt_load_buffer(csv, sizeof csv - 1, "queries.csv", &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.v[0].rec.id, "q1");
    got_free(&g);
    dt_load_report_free(&rep);
}

/* ---- strict mode ---- */

static void test_strict(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.strict = true;
    assert_int_equal(dt_load_file(fixture("loader_bad.csv"), &opts, collect, &g, &rep, &err),
                     -DT_EINVAL);
    assert_int_equal(g.n, 0);
    assert_int_equal(rep.loaded, 0);
    assert_int_equal(err.code, DT_EINVAL);
    assert_string_equal(err.field, "loader_bad.csv:5");
    assert_string_equal(err.msg, "id: missing");
    dt_load_report_free(&rep);

    assert_int_equal(dt_load_file(fixture("loader_bad.jsonl"), &opts, collect, &g, &rep, &err),
                     -DT_EINVAL);
    assert_int_equal(g.n, 0);
    assert_string_equal(err.field, "loader_bad.jsonl:4");
    assert_string_equal(err.msg, "trl: malformed number: \"nine\"");
    dt_load_report_free(&rep);

    /* the bad row is the very last one: still nothing delivered */
    const char late[] = "id,side\na,demand\nb,demand\nc,demand\na,demand\n";
    memset(&err, 0, sizeof err);
    assert_int_equal(
        dt_load_buffer(late, sizeof late - 1, "late.csv", &opts, collect, &g, &rep, &err),
        -DT_EINVAL);
    assert_int_equal(g.n, 0);
    assert_string_equal(err.field, "late.csv:5");
    assert_non_null(strstr(err.msg, "first seen on line 2"));
    dt_load_report_free(&rep);

    /* a good file in strict mode: everything, in order, once */
    const char good[] = "id,side\na,demand\nb,demand\nc,achievement\n";
    assert_int_equal(
        dt_load_buffer(good, sizeof good - 1, "good.csv", &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(rep.rows, 3);
    assert_int_equal(rep.loaded, 3);
    assert_string_equal(g.v[2].rec.id, "c");
    assert_int_equal(g.v[2].line, 4);
    got_free(&g);
    dt_load_report_free(&rep);
}

/* Strict mode over a pipe, which cannot be read twice: records are held, then delivered. */
static void test_strict_pipe(void **state)
{
    (void)state;
    const char *inputs[] = {
        "{\"id\":\"a\",\"side\":\"demand\"}\n{\"id\":\"b\",\"side\":\"demand\"}\n",
        "{\"id\":\"a\",\"side\":\"demand\"}\n{\"id\":\"b\",\"side\":\"x\"}\n"};
    for (int bad = 0; bad < 2; bad++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        size_t n = strlen(inputs[bad]);
        assert_int_equal(write(fds[1], inputs[bad], n), (ssize_t)n);
        close(fds[1]);
        char path[64];
        snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
        got g = {0};
        dt_load_report rep;
        dt_err err = DT_ERR_INIT;
        dt_load_opts opts = DT_LOAD_OPTS_INIT;
        opts.strict = true;
        int rc = dt_load_file(path, &opts, collect, &g, &rep, &err);
        close(fds[0]);
        if (bad) {
            assert_int_equal(rc, -DT_EINVAL);
            assert_int_equal(g.n, 0);
            assert_non_null(strstr(err.field, ":2"));
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(g.n, 2);
            assert_string_equal(g.v[1].rec.id, "b");
            assert_int_equal(g.v[1].line, 2);
        }
        got_free(&g);
        dt_load_report_free(&rep);
    }
}

/* ---- whole-file problems and edge cases ---- */

static void test_whole_file(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    const char noid[] = "\n\nkey,side,title\nk1,demand,t\n";
    assert_int_equal(dt_load_buffer(noid, sizeof noid - 1, "x.csv", NULL, collect, &g, &rep, &err),
                     -DT_EINVAL);
    assert_string_equal(err.field, "x.csv:3");
    assert_non_null(strstr(err.msg, "no \"id\" column"));
    assert_int_equal(g.n, 0);
    dt_load_report_free(&rep);

    const char noside[] = "id,title\nk1,t\n";
    assert_int_equal(
        dt_load_buffer(noside, sizeof noside - 1, "x.csv", NULL, collect, &g, &rep, &err),
        -DT_EINVAL);
    assert_non_null(strstr(err.msg, "no \"side\" column"));
    dt_load_report_free(&rep);

    const char twice[] = "id,side,ID\nk1,demand,k2\n";
    assert_int_equal(
        dt_load_buffer(twice, sizeof twice - 1, "x.csv", NULL, collect, &g, &rep, &err),
        -DT_EINVAL);
    assert_non_null(strstr(err.msg, "\"id\" twice (columns 1 and 3)"));
    dt_load_report_free(&rep);

    const char badhdr[] = "id,\"side\"x\nk1,demand\n";
    assert_int_equal(
        dt_load_buffer(badhdr, sizeof badhdr - 1, "x.csv", NULL, collect, &g, &rep, &err),
        -DT_EINVAL);
    assert_non_null(strstr(err.msg, "header row is malformed"));
    dt_load_report_free(&rep);

    /* empty inputs: no rows, no error */
    const char *empties[] = {"", "\xEF\xBB\xBF", "\n\n  \n", "id,side\n"};
    const char *names[] = {"e.csv", "e.jsonl", NULL};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++) {
            if (i == 3 && j == 1) continue;
            assert_int_equal(dt_load_buffer(empties[i], strlen(empties[i]), names[j], NULL, collect,
                                            &g, &rep, &err),
                             0);
            assert_int_equal(rep.rows, 0);
            assert_int_equal(g.n, 0);
            dt_load_report_free(&rep);
        }
    char *empty = temp_file(".jsonl", "", 0);
    assert_int_equal(dt_load_file(empty, NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.rows, 0);
    unlink(empty);
    free(empty);

    assert_int_equal(dt_load_file("/nonexistent/dir/x.csv", NULL, collect, &g, &rep, &err),
                     -DT_EIO);
    assert_int_equal(err.code, DT_EIO);
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
    assert_int_equal(dt_load_file(data_dir, NULL, collect, &g, &rep, &err), -DT_EIO);
    assert_non_null(strstr(err.msg, strerror(EISDIR)));

    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.default_side = 7;
    assert_int_equal(dt_load_buffer("", 0, NULL, &opts, collect, &g, &rep, &err), -DT_EINVAL);
    assert_string_equal(err.field, "default_side");
    opts.default_side = -1;
    opts.default_tenant = "bad\ntenant";
    assert_int_equal(dt_load_buffer("", 0, NULL, &opts, collect, &g, &rep, &err), -DT_EINVAL);
    assert_string_equal(err.field, "default_tenant");
    dt_load_report_free(&rep);
}

static void test_format_detection(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    const char js[] = "  \n{\"id\":\"a\",\"side\":\"demand\"}\n";
    const char csv[] = "id,side\na,demand\n";
    struct {
        const char *data, *name;
        dt_load_format fmt, want;
    } c[] = {
        {js, NULL, DT_FMT_AUTO, DT_FMT_JSONL},
        {csv, NULL, DT_FMT_AUTO, DT_FMT_CSV},
        {js, "a/b.NDJSON", DT_FMT_AUTO, DT_FMT_JSONL},
        {js, "x.json", DT_FMT_AUTO, DT_FMT_JSONL},
        {csv, "export.txt", DT_FMT_AUTO, DT_FMT_CSV},
        {csv, "x.jsonl", DT_FMT_CSV, DT_FMT_CSV},
        {js, "dir.csv/noext", DT_FMT_AUTO, DT_FMT_JSONL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        dt_load_opts opts = DT_LOAD_OPTS_INIT;
        opts.format = c[i].fmt;
        assert_int_equal(
            dt_load_buffer(c[i].data, strlen(c[i].data), c[i].name, &opts, collect, &g, &rep, &err),
            0);
        assert_int_equal(rep.format, c[i].want);
        assert_int_equal(g.n, 1);
        got_free(&g);
        dt_load_report_free(&rep);
    }
    assert_string_equal(dt_load_format_name(DT_FMT_CSV), "csv");
    assert_string_equal(dt_load_format_name(DT_FMT_JSONL), "jsonl");
}

static void test_values(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    /* updated_at forms, checked against timegm */
    struct tm tm = {.tm_year = 124, .tm_mon = 4, .tm_mday = 1, .tm_hour = 8};
    long long t8 = (long long)timegm(&tm);
    struct {
        const char *text;
        long long want; /* -1: rejected */
    } times[] = {
        {"2024-05-01T08:00:00Z", t8},
        {"2024-05-01 08:00", t8},
        {"2024-05-01T16:00:00+08:00", t8},
        {"2024-05-01T03:30-0430", t8},
        {"2024-05-01T08:00:00.250Z", t8},
        {"1714550400", t8},
        {"1714550400.0", t8},
        {"2024-02-29", t8 - 62 * 86400 - 8 * 3600},
        {"2023-02-29", -1},
        {"2024-05-01T24:00", -1},
        {"2024-5-1", -1},
        {"1714550400.5", -1},
        {"2024-05-01T08:00:00+08", t8 - 8 * 3600},
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "id,side,updated_at\nx,demand,%s\n", times[i].text);
        assert_int_equal(dt_load_buffer(buf, (size_t)n, "t.csv", NULL, collect, &g, &rep, &err), 0);
        if (times[i].want < 0) {
            if (g.n != 0) fail_msg("%s accepted", times[i].text);
            assert_string_equal(rep.issues[0].field, "updated_at");
        } else {
            if (g.n != 1) fail_msg("%s rejected: %s", times[i].text, rep.issues[0].msg);
            if (g.v[0].rec.updated_at != times[i].want)
                fail_msg("%s -> %lld, want %lld", times[i].text, (long long)g.v[0].rec.updated_at,
                         times[i].want);
        }
        got_free(&g);
        dt_load_report_free(&rep);
    }

    /* numbers, lists, embeddings, NUL bytes */
    const char csv[] = "id,side,trl,price_min,price_max,keywords,embedding,modes\n"
                       "n1,demand, 7 ,1e3,2.5E3, a ; ;b |c ,[1;2;3],Joint-RD|open license\n"
                       "n2,demand,0x5,,,,,\n"
                       "n3,demand,,inf,,,,\n"
                       "n4,demand,,,,,1 2 x,\n"
                       "n5,demand,,,,,,transfer;;license\n"
                       "n6,demand,,,,,1e39,\n";
    assert_int_equal(dt_load_buffer(csv, sizeof csv - 1, "v.csv", NULL, collect, &g, &rep, &err),
                     0);
    assert_int_equal(g.n, 2);
    const dt_record *r = &g.v[0].rec;
    assert_int_equal(r->trl, 7);
    assert_true(r->price_min == 1000 && r->price_max == 2500);
    assert_int_equal(r->n_keywords, 3);
    assert_string_equal(r->keywords[0], "a");
    assert_string_equal(r->keywords[1], "b");
    assert_string_equal(r->keywords[2], "c");
    assert_int_equal(r->dim, 3);
    assert_int_equal(r->modes, DT_MODE_JOINT_RD | DT_MODE_OPEN_LICENSE);
    assert_int_equal(g.v[1].rec.modes, DT_MODE_TRANSFER | DT_MODE_LICENSE);
    assert_string_equal(issue_at(&rep, 3)->field, "trl");
    assert_non_null(strstr(issue_at(&rep, 3)->msg, "malformed number: \"0x5\""));
    assert_string_equal(issue_at(&rep, 4)->field, "price_min");
    assert_non_null(strstr(issue_at(&rep, 4)->msg, "not a finite number"));
    assert_string_equal(issue_at(&rep, 5)->field, "embedding[2]");
    assert_string_equal(issue_at(&rep, 7)->field, "embedding[0]");
    got_free(&g);
    dt_load_report_free(&rep);

    const char nul[] = "id,side,title\nz1,demand,ab\0cd\n";
    assert_int_equal(dt_load_buffer(nul, sizeof nul - 1, "n.csv", NULL, collect, &g, &rep, &err),
                     0);
    assert_int_equal(g.n, 0);
    assert_string_equal(rep.issues[0].field, "title");
    assert_non_null(strstr(rep.issues[0].msg, "NUL byte at offset 2"));
    dt_load_report_free(&rep);

    /* a side only from the default; a file side overrides it; a list longer than the limit */
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.default_side = DT_DEMAND;
    char big[8192];
    int n = snprintf(big, sizeof big,
                     "{\"id\":\"s1\"}\n{\"id\":\"s1\",\"side\":\"ACHIEVEMENT\"}\n"
                     "{\"id\":\"s2\",\"tags\":[");
    for (int i = 0; i <= DT_LIST_MAX; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "%s\"t%d\"", i ? "," : "", i);
    n += snprintf(big + n, sizeof big - (size_t)n, "]}\n");
    assert_int_equal(dt_load_buffer(big, (size_t)n, NULL, &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.v[0].rec.side, DT_DEMAND);
    assert_int_equal(g.v[1].rec.side, DT_ACHIEVEMENT);
    assert_int_equal(rep.issues[0].code, DT_ELIMIT);
    assert_string_equal(rep.issues[0].field, "tags");
    got_free(&g);
    dt_load_report_free(&rep);
}

static void test_report_and_callback(void **state)
{
    (void)state;
    text t = {0};
    put(&t, "id,side\n", 8);
    for (int i = 0; i < 50; i++)
        putf(&t, "%s%d,demand\n", i % 5 == 0 ? "" : "ok", i % 5 ? i : 0);
    /* rows 0,5,10..: "0,demand" duplicates from the second one on; others are ok<i> */
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    dt_load_opts opts = DT_LOAD_OPTS_INIT;
    opts.max_errors_kept = 3;
    assert_int_equal(dt_load_buffer(t.s, t.n, "r.csv", &opts, collect, &g, &rep, &err), 0);
    assert_int_equal(rep.rows, 50);
    assert_int_equal(rep.rejected, 9);
    assert_int_equal(rep.loaded, 41);
    assert_int_equal(rep.n_issues, 3);
    assert_int_equal(rep.issues[0].line, 7);
    assert_int_equal(rep.issues[2].line, 17);
    got_free(&g);
    dt_load_report_free(&rep);

    g.stop_after = 4;
    assert_int_equal(dt_load_buffer(t.s, t.n, "r.csv", NULL, collect, &g, &rep, &err), -DT_ELIMIT);
    assert_int_equal(err.code, DT_ELIMIT);
    assert_string_equal(err.field, "test");
    assert_int_equal(g.n, 4);
    assert_int_equal(rep.loaded, 4);
    got_free(&g);
    dt_load_report_free(&rep);

    /* no callback: validation only; no report */
    assert_int_equal(dt_load_buffer(t.s, t.n, "r.csv", NULL, NULL, NULL, &rep, &err), 0);
    assert_int_equal(rep.loaded, 41);
    dt_load_report_free(&rep);
    assert_int_equal(dt_load_buffer(t.s, t.n, "r.csv", NULL, collect, &g, NULL, &err), 0);
    assert_int_equal(g.n, 41);
    got_free(&g);
    free(t.s);
}

/* A CSV row that never closes its quote, and lines beyond the length limit. */
static void test_runaway_rows(void **state)
{
    (void)state;
    got g = {0};
    dt_load_report rep;
    dt_err err = DT_ERR_INIT;
    const char open_quote[] = "id,side,title\na,demand,ok\nb,demand,\"never closed\nc,demand,x\n";
    assert_int_equal(
        dt_load_buffer(open_quote, sizeof open_quote - 1, "q.csv", NULL, collect, &g, &rep, &err),
        0);
    assert_int_equal(g.n, 1);
    assert_int_equal(rep.rejected, 1);
    assert_int_equal(rep.issues[0].line, 3);
    assert_non_null(strstr(rep.issues[0].msg, "unterminated quoted field"));
    got_free(&g);
    dt_load_report_free(&rep);

    text t = {0};
    t.line = 1;
    putf(&t, "{\"id\":\"L1\",\"side\":\"demand\"}\n");
    size_t long_line = t.line;
    putf(&t, "{\"id\":\"long\",\"side\":\"demand\",\"text\":\"");
    const size_t pad_len = DT_LOAD_ROW_MAX + 200000;
    char *pad = malloc(pad_len);
    assert_non_null(pad);
    memset(pad, 'a', pad_len);
    put(&t, pad, pad_len);
    putf(&t, "\"}\n");
    for (int i = 0; i < 3000; i++) /* some of these span blocks: assembled after the long one */
        putf(&t, "{\"id\":\"L%zu\",\"side\":\"demand\",\"title\":\"%.*s\"}\n", t.line, i % 97,
             "----------------------------------------------------------------------------------"
             "------------------");
    char *path = temp_file(".jsonl", t.s, t.n);
    g.check_line_id = true;
    assert_int_equal(dt_load_file(path, NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(g.n, 3001);
    assert_int_equal(rep.rejected, 1);
    assert_int_equal(g.line_mismatches, 0);
    assert_int_equal(rep.issues[0].line, long_line);
    assert_int_equal(rep.issues[0].code, DT_ELIMIT);
    got_free(&g);
    dt_load_report_free(&rep);
    unlink(path);
    free(path);
    free(t.s);

    memset(&t, 0, sizeof t);
    t.line = 1;
    putf(&t, "id,side,text\nL2,demand,x\n");
    long_line = t.line;
    putf(&t, "long,demand,\"");
    put(&t, pad, pad_len);
    putf(&t, "\"\n");
    putf(&t, "L%zu,demand,y\n", t.line);
    path = temp_file(".csv", t.s, t.n);
    g.check_line_id = true;
    assert_int_equal(dt_load_file(path, NULL, collect, &g, &rep, &err), 0);
    assert_int_equal(g.line_mismatches, 0);
    assert_int_equal(rep.issues[0].line, long_line);
    assert_non_null(strstr(rep.issues[0].msg, "longer than"));
    assert_int_equal(g.n, 2);
    got_free(&g);
    dt_load_report_free(&rep);
    unlink(path);
    free(path);
    free(t.s);
    free(pad);
}

/* ---- block boundaries and scale ---- */

/* Writes a CSV or JSONL document whose good rows have id "L<line>-<k>", mixing multi-line quoted
 * fields, CRLF, blank lines, bad rows and long lines, after `shift` bytes of padding so that every
 * construct falls across the reader's block boundaries in one variant or another. Returns the
 * number of good rows. */
static size_t gen(text *t, bool csv, size_t shift, size_t rows, bool crlf)
{
    const char *eol = crlf ? "\r\n" : "\n";
    size_t good = 0;
    t->line = 1;
    if (csv) {
        putf(t, "id,side,title,trl,keywords%s", eol);
        putf(
            t, "pad,demand,%.*s,,%s", (int)shift,
            "######################################################################################"
            "######################################################################################"
            "####################################################################################",
            eol);
    } else {
        putf(
            t, "{\"id\":\"pad\",\"side\":\"demand\",\"title\":\"%.*s\"}%s", (int)shift,
            "######################################################################################"
            "######################################################################################"
            "####################################################################################",
            eol);
    }
    uint64_t x = 88172645463325252ull ^ shift;
    for (size_t k = 0; k < rows; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned kind = (unsigned)(x % 16);
        size_t fill = (size_t)(x >> 8) % 300;
        char body[512];
        memset(body, 'w', fill);
        body[fill] = '\0';
        size_t line = t->line;
        if (csv) {
            if (kind == 0)
                putf(t, "L%zu-%zu,demand,\"multi%sline %s\",3,a;b%s", line, k, eol, body, eol);
            else if (kind == 1)
                putf(t, "bad%zu,demand,x,12,%s", k, eol); /* trl out of range */
            else if (kind == 2)
                put(t, eol, strlen(eol));
            else if (kind == 3)
                putf(t, "L%zu-%zu,achievement,\"q \"\"%s\"\"\",,\"k1;k2\"%s", line, k, body, eol);
            else
                putf(t, "L%zu-%zu,demand,%s,%u,%s", line, k, body, kind % 9 + 1, eol);
        } else {
            if (kind == 1)
                putf(t, "{\"id\":\"bad%zu\",\"side\":\"demand\",\"trl\":12}%s", k, eol);
            else if (kind == 2)
                put(t, eol, strlen(eol));
            else if (kind == 3)
                putf(t,
                     "{\"id\":\"L%zu-%zu\",\"side\":\"achievement\",\"title\":\"中文%s\","
                     "\"keywords\":[\"k1\",\"k2\"]}%s",
                     line, k, body, eol);
            else
                putf(t, "{\"id\":\"L%zu-%zu\",\"side\":\"demand\",\"title\":\"%s\",\"trl\":%u}%s",
                     line, k, body, kind % 9 + 1, eol);
        }
        if (kind != 1 && kind != 2) good++;
    }
    return good + 1;
}

static void same_results(const got *a, const dt_load_report *ra, const got *b,
                         const dt_load_report *rb)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].line, b->v[i].line);
        assert_string_equal(a->v[i].rec.id, b->v[i].rec.id);
        if (a->v[i].rec.title || b->v[i].rec.title)
            assert_string_equal(a->v[i].rec.title, b->v[i].rec.title);
        assert_int_equal(a->v[i].rec.n_keywords, b->v[i].rec.n_keywords);
    }
    assert_int_equal(ra->rows, rb->rows);
    assert_int_equal(ra->rejected, rb->rejected);
    assert_int_equal(ra->n_issues, rb->n_issues);
    for (size_t i = 0; i < ra->n_issues; i++) {
        assert_int_equal(ra->issues[i].line, rb->issues[i].line);
        assert_string_equal(ra->issues[i].msg, rb->issues[i].msg);
    }
}

static void test_block_boundaries(void **state)
{
    (void)state;
    for (int csv = 0; csv < 2; csv++)
        for (int crlf = 0; crlf < 2; crlf++)
            for (size_t shift = 0; shift < 256; shift += 67) {
                text t = {0};
                size_t good = gen(&t, csv, shift, 3000, crlf);
                assert_true(t.n > 3 * (64 << 10)); /* several blocks */
                char *path = temp_file(csv ? ".csv" : ".jsonl", t.s, t.n);
                got gf = {0}, gb = {0};
                gf.check_line_id = gb.check_line_id = true;
                dt_load_report rf, rb;
                dt_err err = DT_ERR_INIT;
                assert_int_equal(dt_load_file(path, NULL, collect, &gf, &rf, &err), 0);
                assert_int_equal(dt_load_buffer(t.s, t.n, path, NULL, collect, &gb, &rb, &err), 0);
                assert_int_equal(gf.n, good);
                assert_int_equal(gf.line_mismatches, 1); /* only "pad", which is not L<line> */
                assert_int_equal(gb.line_mismatches, 1);
                same_results(&gf, &rf, &gb, &rb);
                assert_true(rf.n_issues > 0);
                for (size_t i = 0; i < rf.n_issues; i++)
                    assert_string_equal(rf.issues[i].field, "trl");
                got_free(&gf);
                got_free(&gb);
                dt_load_report_free(&rf);
                dt_load_report_free(&rb);
                unlink(path);
                free(path);
                free(t.s);
            }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct tally {
    size_t n;
    long long trl_sum;
} tally;

static int count(void *ud, dt_record *rec, size_t line, dt_err *err)
{
    (void)line;
    (void)err;
    tally *t = ud;
    t->n++;
    t->trl_sum += rec->trl;
    return 0;
}

/* Line endings and a quoted line break split exactly at the reader's 64 KiB block boundary. */
static void test_split_line_endings(void **state)
{
    (void)state;
    const size_t block = (size_t)64 << 10;
    for (int variant = 0; variant < 3; variant++) {
        text t = {0};
        t.line = 1;
        putf(&t, "id,side,title,text\r\n");
        /* pad so that the next construct's '\r' is the last byte of the first block */
        const char *tail = variant == 0   ? "L%zu-q,demand,\"a\r\nb\",x\r\n" /* quoted CRLF */
                           : variant == 1 ? "L%zu-u,demand,ab,x\r\n"         /* row end CRLF */
                                          : "L%zu-c,demand,ab,x\r";          /* lone CR */
        char probe[64];
        int pre = variant == 0 ? snprintf(probe, sizeof probe, "L%zu-q,demand,\"a", t.line + 1)
                               : snprintf(probe, sizeof probe, "L%zu-x,demand,ab,x", t.line + 1);
        size_t fill = block - 1 - t.n - (size_t)pre - strlen("pad,demand,,\r\n");
        char *f = malloc(fill + 1);
        assert_non_null(f);
        memset(f, 'p', fill);
        f[fill] = '\0';
        putf(&t, "pad,demand,,");
        put(&t, f, fill);
        putf(&t, "\r\n");
        free(f);
        size_t at = t.n;
        putf(&t, tail, t.line);
        assert_int_equal(t.s[block - 1], '\r');
        assert_true(at < block);
        putf(&t, "L%zu-z,demand,end,x\r\n", t.line);
        char *path = temp_file(".csv", t.s, t.n);
        got g = {0};
        g.check_line_id = true;
        dt_load_report rep;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_load_file(path, NULL, collect, &g, &rep, &err), 0);
        if (rep.rejected)
            fail_msg("variant %d: line %zu: %s: %s", variant, rep.issues[0].line,
                     rep.issues[0].field, rep.issues[0].msg);
        assert_int_equal(g.n, 3);
        assert_int_equal(g.line_mismatches, 1); /* "pad" */
        if (variant == 0) assert_string_equal(g.v[1].rec.title, "a\r\nb");
        got_free(&g);
        dt_load_report_free(&rep);
        unlink(path);
        free(path);
        free(t.s);
    }
}

static void test_large_files(void **state)
{
    (void)state;
    const size_t rows = 100000;
    for (int csv = 0; csv < 2; csv++) {
        text t = {0};
        long long trl_sum = 0;
        if (csv) putf(&t, "id,side,title,text,keywords,trl,modes,price_min,price_max,embedding\n");
        for (size_t i = 0; i < rows; i++) {
            unsigned trl = (unsigned)(i % 9) + 1;
            trl_sum += trl;
            if (csv)
                putf(&t,
                     "r%zu,%s,Title %zu 标题,\"Text of record %zu, about batteries and "
                     "储能 systems.\",kw%zu;电池,%u,license|transfer,%zu,%zu,%zu 0.5 -0.25 1\n",
                     i, i & 1 ? "demand" : "achievement", i, i, i % 100, trl, i, i + 10, i % 7);
            else
                putf(&t,
                     "{\"id\":\"r%zu\",\"side\":\"%s\",\"title\":\"Title %zu 标题\",\"text\":"
                     "\"Text of record %zu, about batteries and 储能 systems.\",\"keywords\":"
                     "[\"kw%zu\",\"电池\"],\"trl\":%u,\"modes\":[\"license\",\"transfer\"],"
                     "\"price_min\":%zu,\"price_max\":%zu,\"embedding\":[%zu,0.5,-0.25,1]}\n",
                     i, i & 1 ? "demand" : "achievement", i, i, i % 100, trl, i, i + 10, i % 7);
        }
        char *path = temp_file(csv ? ".csv" : ".jsonl", t.s, t.n);
        size_t bytes = t.n;
        free(t.s);
        tally tl = {0};
        dt_load_report rep;
        dt_err err = DT_ERR_INIT;
        double t0 = now();
        assert_int_equal(dt_load_file(path, NULL, count, &tl, &rep, &err), 0);
        double dt = now() - t0;
        assert_int_equal(tl.n, rows);
        assert_int_equal(rep.loaded, rows);
        assert_int_equal(rep.n_issues, 0);
        assert_int_equal(tl.trl_sum, trl_sum);
        printf("# %s: %zu rows, %.1f MB in %.3f s: %.0f rows/s\n", csv ? "csv" : "jsonl", rows,
               (double)bytes / 1e6, dt, (double)rows / dt);
        dt_load_report_free(&rep);
        unlink(path);
        free(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_fixture),
        cmocka_unit_test(test_jsonl_fixture),
        cmocka_unit_test(test_good_csv_all_fields),
        cmocka_unit_test(test_bom_crlf),
        cmocka_unit_test(test_beir),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_strict_pipe),
        cmocka_unit_test(test_whole_file),
        cmocka_unit_test(test_format_detection),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_report_and_callback),
        cmocka_unit_test(test_runaway_rows),
        cmocka_unit_test(test_block_boundaries),
        cmocka_unit_test(test_split_line_endings),
        cmocka_unit_test(test_large_files),
    };
    return cmocka_run_group_tests(tests, setup_paths, NULL);
}
