/* load.c - what the CSV and JSON Lines readers share: input blocks, format detection, turning text
 * and numbers into record fields, and the per-row pipeline (defaults, validation, duplicate ids,
 * embedding dimension, delivery, the report, strict mode).
 *
 * Strict mode never delivers a record from a file with a bad row: a rewindable input (a regular
 * file or a buffer) is read twice, once to check and once to deliver, so memory stays bounded; any
 * other input (a pipe) is checked while the good records are held, then delivered.
 */
#define DT_LOAD_INTERNAL
#include "load.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <xxhash.h>

#define BLOCK_SIZE ((size_t)64 << 10)
#define KEEP_DEFAULT 1000
#define WARNED_KEYS_MAX 64

/* ---- columns ---- */

static const char *const col_names[DT_COL_COUNT] = {
    "tenant",    "id",    "side",   "title",      "text",     "keywords",
    "org",       "field", "region", "trl",        "modes",    "price_min",
    "price_max", "tags",  "status", "updated_at", "embedding"};

int dt_load_column(const char *name, size_t len, bool *alias)
{
    while (len > 0 && isspace((unsigned char)*name))
        name++, len--;
    while (len > 0 && isspace((unsigned char)name[len - 1]))
        len--;
    if (alias) *alias = false;
    for (int i = 0; i < DT_COL_COUNT; i++)
        if (strlen(col_names[i]) == len && strncasecmp(name, col_names[i], len) == 0) return i;
    if (len == 3 && strncasecmp(name, "_id", 3) == 0) {
        if (alias) *alias = true;
        return DT_COL_ID;
    }
    if (len == 8 && strncasecmp(name, "metadata", 8) == 0) return DT_COL_IGNORED;
    return DT_COL_UNKNOWN;
}

const char *dt_load_column_name(int col)
{
    return (col >= 0 && col < DT_COL_COUNT) ? col_names[col] : "?";
}

const char *dt_load_format_name(dt_load_format f)
{
    return f == DT_FMT_CSV ? "csv" : f == DT_FMT_JSONL ? "jsonl" : "auto";
}

const char *dt_load_echo(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        if (k > n - i || (k > 1 && dt_utf8_valid_prefix(s + i, k) != k)) k = 0;
        if (o + (k ? k : 1) + 4 > cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || (k == 1 && (c < 0x20 || c == 0x7f))) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
    return out;
}

/* ---- input ---- */

int dt_load_src_next(dt_load_src *src, const char **data, size_t *n, dt_err *err)
{
    if (src->pend) {
        *data = src->pend;
        *n = src->pend_len;
        src->pend = NULL;
        return 0;
    }
    if (!src->fp) {
        *data = src->data + src->pos;
        *n = src->len - src->pos;
        src->pos = src->len;
    } else {
        if (!src->block) {
            src->block = malloc(BLOCK_SIZE);
            if (!src->block) return dt_err_set(err, DT_ENOMEM, "file", "out of memory");
            src->block_cap = BLOCK_SIZE;
        }
        size_t got = fread(src->block, 1, src->block_cap, src->fp);
        if (got < src->block_cap && ferror(src->fp))
            return dt_err_set(err, DT_EIO, "file", "read error: %s", strerror(errno));
        *data = src->block;
        *n = got;
    }
    if (!src->started) {
        src->started = true;
        if (*n >= 3 && memcmp(*data, "\xEF\xBB\xBF", 3) == 0) {
            *data += 3;
            *n -= 3;
        }
    }
    return 0;
}

static void src_unread(dt_load_src *src, const char *data, size_t n)
{
    src->pend = data;
    src->pend_len = n;
}

/* ---- duplicate ids: (tenant, side, id) -> first line ---- */

typedef struct dup_slot {
    uint64_t h;
    const char *key; /* NULL: empty slot */
    size_t klen;
    size_t line;
} dup_slot;

typedef struct dup_block {
    struct dup_block *next;
    size_t used, cap;
    char data[];
} dup_block;

typedef struct dup_set {
    dup_slot *slots;
    size_t cap, n; /* cap a power of two */
    dup_block *blocks;
} dup_set;

static void dup_free(dup_set *d)
{
    free(d->slots);
    for (dup_block *b = d->blocks, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    memset(d, 0, sizeof *d);
}

static int dup_grow(dup_set *d)
{
    size_t cap = d->cap ? d->cap * 2 : 1024;
    dup_slot *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < d->cap; i++) {
        if (!d->slots[i].key) continue;
        size_t j = d->slots[i].h & (cap - 1);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = d->slots[i];
    }
    free(d->slots);
    d->slots = s;
    d->cap = cap;
    return 0;
}

static char *dup_store(dup_set *d, const char *key, size_t klen)
{
    dup_block *b = d->blocks;
    if (!b || b->cap - b->used < klen) {
        size_t cap = klen > BLOCK_SIZE ? klen : BLOCK_SIZE;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = d->blocks;
        b->used = 0;
        b->cap = cap;
        d->blocks = b;
    }
    char *p = b->data + b->used;
    memcpy(p, key, klen);
    b->used += klen;
    return p;
}

/* Looks key up; when absent inserts it with line. *first is the line of an earlier occurrence, or
 * 0 when key is new. 0 or -1 (out of memory). */
static int dup_check(dup_set *d, const char *key, size_t klen, size_t line, size_t *first)
{
    *first = 0;
    if ((d->n + 1) * 10 > d->cap * 7 && dup_grow(d) != 0) return -1;
    uint64_t h = XXH3_64bits(key, klen);
    size_t j = h & (d->cap - 1);
    for (; d->slots[j].key; j = (j + 1) & (d->cap - 1)) {
        const dup_slot *s = &d->slots[j];
        if (s->h == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
            *first = s->line;
            return 0;
        }
    }
    char *k = dup_store(d, key, klen);
    if (!k) return -1;
    d->slots[j] = (dup_slot){h, k, klen, line};
    d->n++;
    return 0;
}

/* ---- the load context ---- */

enum { MODE_DELIVER, MODE_CHECK, MODE_HOLD };

struct dt_load_ctx {
    dt_load_opts opts;
    char name[48]; /* the input's base name, for "file:line" */
    dt_load_report *rep;
    dt_load_cb cb;
    void *ud;
    dt_err *err;
    int mode;
    dup_set dups;
    size_t dim, dim_line; /* the file's embedding dimension and where it was set; 0 when unset */
    char *warned[WARNED_KEYS_MAX];
    size_t n_warned;
    bool warned_overflow;
    size_t issues_cap; /* entries allocated in rep->issues */
    dt_record *held;   /* MODE_HOLD: the good records, in order */
    size_t *held_line;
    size_t n_held, cap_held;
};

bool dt_load_has_default_side(const dt_load_ctx *ctx)
{
    return ctx->opts.default_side >= 0;
}

static void position(const dt_load_ctx *ctx, size_t line, char *out, size_t cap)
{
    snprintf(out, cap, "%s:%zu", ctx->name, line);
}

static int add_issue(dt_load_ctx *ctx, size_t line, int code, const char *field, const char *msg)
{
    dt_load_report *rep = ctx->rep;
    if (rep->n_issues >= ctx->opts.max_errors_kept) return 0;
    if (rep->n_issues == ctx->issues_cap) {
        size_t cap = ctx->issues_cap ? ctx->issues_cap * 2 : 16;
        if (cap > ctx->opts.max_errors_kept) cap = ctx->opts.max_errors_kept;
        dt_load_issue *v = realloc(rep->issues, cap * sizeof *v);
        if (!v) return -1;
        rep->issues = v;
        ctx->issues_cap = cap;
    }
    dt_load_issue *is = &rep->issues[rep->n_issues++];
    is->line = line;
    is->code = code;
    snprintf(is->field, sizeof is->field, "%s", field ? field : "");
    snprintf(is->msg, sizeof is->msg, "%s", msg ? msg : "");
    return 0;
}

void dt_load_warn(dt_load_ctx *ctx, size_t line, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->rep->warnings++;
    (void)add_issue(ctx, line, 0, field, msg); /* a warning that cannot be kept is only counted */
}

void dt_load_warn_key(dt_load_ctx *ctx, size_t line, const char *key)
{
    for (size_t i = 0; i < ctx->n_warned; i++)
        if (strcmp(ctx->warned[i], key) == 0) return;
    char q[64];
    dt_load_echo(q, sizeof q, key, strlen(key));
    if (ctx->n_warned == WARNED_KEYS_MAX) {
        if (!ctx->warned_overflow)
            dt_load_warn(ctx, line, q, "more than %d distinct unknown keys; no more are reported",
                         WARNED_KEYS_MAX);
        ctx->warned_overflow = true;
        return;
    }
    char *k = strdup(key);
    if (!k) return;
    ctx->warned[ctx->n_warned++] = k;
    dt_load_warn(ctx, line, q, "unknown key \"%s\" ignored (not in the record schema)", q);
}

int dt_load_fail(dt_load_ctx *ctx, size_t line, int code, const char *fmt, ...)
{
    if (ctx->err) {
        char pos[64];
        position(ctx, line, pos, sizeof pos);
        ctx->err->code = code;
        snprintf(ctx->err->field, sizeof ctx->err->field, "%s", pos);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err->msg, sizeof ctx->err->msg, fmt, ap);
        va_end(ap);
    }
    return -code;
}

void dt_load_row_start(dt_load_row *row)
{
    dt_record_init(&row->rec);
    row->seen = 0;
}

int dt_load_row_bad(dt_load_ctx *ctx, dt_load_row *row, size_t line, const dt_err *why)
{
    if (row) dt_record_free(&row->rec);
    if (why->code == DT_ENOMEM) return dt_load_fail(ctx, line, DT_ENOMEM, "%s", why->msg);
    ctx->rep->rows++;
    ctx->rep->rejected++;
    if (add_issue(ctx, line, why->code ? why->code : DT_EINVAL, why->field, why->msg) != 0)
        return dt_load_fail(ctx, line, DT_ENOMEM, "out of memory keeping the report");
    if (ctx->opts.strict)
        return dt_load_fail(ctx, line, DT_EINVAL, "%s%s%s", why->field, why->field[0] ? ": " : "",
                            why->msg);
    return 0;
}

static int hold(dt_load_ctx *ctx, dt_record *rec, size_t line)
{
    if (ctx->n_held == ctx->cap_held) {
        size_t cap = ctx->cap_held ? ctx->cap_held * 2 : 256;
        dt_record *r = realloc(ctx->held, cap * sizeof *r);
        if (!r) return -1;
        ctx->held = r;
        size_t *l = realloc(ctx->held_line, cap * sizeof *l);
        if (!l) return -1;
        ctx->held_line = l;
        ctx->cap_held = cap;
    }
    ctx->held[ctx->n_held] = *rec;
    ctx->held_line[ctx->n_held++] = line;
    dt_record_init(rec);
    return 0;
}

static int deliver(dt_load_ctx *ctx, dt_record *rec, size_t line)
{
    if (ctx->cb) {
        dt_err e = DT_ERR_INIT;
        int rc = ctx->cb(ctx->ud, rec, line, &e);
        if (rc != 0) {
            if (rc > 0) rc = -rc;
            if (ctx->err) *ctx->err = e;
            if (ctx->err && ctx->err->code == 0) ctx->err->code = -rc;
            return rc;
        }
    }
    ctx->rep->loaded++;
    return 0;
}

int dt_load_row_done(dt_load_ctx *ctx, dt_load_row *row, size_t line)
{
    dt_record *rec = &row->rec;
    dt_err e = DT_ERR_INIT;
    if (!(row->seen & (1u << DT_COL_SIDE))) {
        if (ctx->opts.default_side < 0) {
            dt_err_set(&e, DT_EINVAL, "side",
                       "missing (give demand or achievement, or load with a default side)");
            return dt_load_row_bad(ctx, row, line, &e);
        }
        rec->side = (dt_side)ctx->opts.default_side;
    }
    if ((!rec->tenant || !rec->tenant[0]) && ctx->opts.default_tenant &&
        ctx->opts.default_tenant[0]) {
        free(rec->tenant);
        rec->tenant = strdup(ctx->opts.default_tenant);
        if (!rec->tenant) return dt_load_fail(ctx, line, DT_ENOMEM, "out of memory");
    }
    if (dt_record_validate(rec, &e) != 0 || dt_record_check_names(rec, &e) != 0)
        return dt_load_row_bad(ctx, row, line, &e);
    if (rec->dim && ctx->dim && rec->dim != ctx->dim) {
        dt_err_set(&e, DT_EINVAL, "embedding",
                   "%zu dimensions, expected %zu (all embeddings of a file share the dimension of "
                   "the first one, line %zu)",
                   rec->dim, ctx->dim, ctx->dim_line);
        return dt_load_row_bad(ctx, row, line, &e);
    }

    const char *tenant = dt_record_tenant(rec);
    size_t tl = strlen(tenant), il = strlen(rec->id);
    char key[DT_TENANT_MAX + DT_ID_MAX + 4];
    memcpy(key, tenant, tl);
    key[tl] = '\0';
    key[tl + 1] = (char)('0' + rec->side);
    memcpy(key + tl + 2, rec->id, il);
    size_t first;
    if (dup_check(&ctx->dups, key, tl + 2 + il, line, &first) != 0)
        return dt_load_fail(ctx, line, DT_ENOMEM, "out of memory checking duplicate ids");
    if (first) {
        char q[80];
        dt_err_set(&e, DT_EEXIST, "id",
                   "duplicate id \"%s\" for tenant %s, side %s: first seen on line %zu",
                   dt_load_echo(q, sizeof q, rec->id, il), tenant, dt_side_name(rec->side), first);
        return dt_load_row_bad(ctx, row, line, &e);
    }
    if (rec->dim && !ctx->dim) {
        ctx->dim = rec->dim;
        ctx->dim_line = line;
    }

    ctx->rep->rows++;
    int rc = 0;
    if (ctx->mode == MODE_DELIVER) {
        rc = deliver(ctx, rec, line);
    } else if (ctx->mode == MODE_HOLD) {
        if (hold(ctx, rec, line) != 0) rc = dt_load_fail(ctx, line, DT_ENOMEM, "out of memory");
    }
    dt_record_free(rec);
    return rc;
}

/* ---- values ---- */

static int wrong_text(dt_err *err, const char *field, const char *what, const char *s, size_t n)
{
    char q[80];
    return dt_err_set(err, DT_EINVAL, field, "%s: \"%s\"", what, dt_load_echo(q, sizeof q, s, n));
}

/* Parses a decimal number (no hex, no inf/nan words) from s[0..n), white space around it allowed.
 * 0, or -DT_EINVAL naming field. */
static int parse_double(const char *s, size_t n, double *out, const char *field, dt_err *err)
{
    const char *b = s;
    size_t len = n;
    while (len > 0 && isspace((unsigned char)*b))
        b++, len--;
    while (len > 0 && isspace((unsigned char)b[len - 1]))
        len--;
    char buf[64];
    if (len == 0 || len >= sizeof buf) return wrong_text(err, field, "malformed number", s, n);
    memcpy(buf, b, len);
    buf[len] = '\0';
    const char *word = buf + (buf[0] == '-' || buf[0] == '+');
    if (strcasecmp(word, "nan") == 0 || strcasecmp(word, "inf") == 0 ||
        strcasecmp(word, "infinity") == 0)
        return wrong_text(err, field, "not a finite number", s, n);
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (!isdigit((unsigned char)c) && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E')
            return wrong_text(err, field, "malformed number", s, n);
    }
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + len) return wrong_text(err, field, "malformed number", s, n);
    if (!isfinite(v)) return wrong_text(err, field, "not a finite number", s, n);
    *out = v;
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* ISO 8601 date or date-time: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|+HH[:MM]|-HH[:MM]]; no zone
 * means UTC. 0 and unix seconds, or -1. */
static int parse_iso8601(const char *s, size_t n, long long *out)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n < 10 || !all_digits(s, 4) || s[4] != '-' || !all_digits(s + 5, 2) || s[7] != '-' ||
        !all_digits(s + 8, 2))
        return -1;
    int Y = num(s, 4), M = num(s + 5, 2), D = num(s + 8, 2), h = 0, m = 0, sec = 0, off = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1]) return -1;
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M == 2 && D == 29 && !leap) return -1;
    size_t i = 10;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        if (n < i + 6 || !all_digits(s + i + 1, 2) || s[i + 3] != ':' || !all_digits(s + i + 4, 2))
            return -1;
        h = num(s + i + 1, 2);
        m = num(s + i + 4, 2);
        i += 6;
        if (i < n && s[i] == ':') {
            if (n < i + 3 || !all_digits(s + i + 1, 2)) return -1;
            sec = num(s + i + 1, 2);
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                i++;
                size_t f = i;
                while (i < n && isdigit((unsigned char)s[i]))
                    i++;
                if (i == f) return -1;
            }
        }
        if (h > 23 || m > 59 || sec > 60) return -1;
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i] == '-' ? -1 : 1;
            i++;
            if (n < i + 2 || !all_digits(s + i, 2)) return -1;
            int oh = num(s + i, 2), om = 0;
            i += 2;
            if (i < n && s[i] == ':') i++;
            if (i < n) {
                if (n < i + 2 || !all_digits(s + i, 2)) return -1;
                om = num(s + i, 2);
                i += 2;
            }
            if (oh > 14 || om > 59) return -1;
            off = sign * (oh * 3600 + om * 60);
        }
    }
    if (i != n) return -1;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *out = (long long)t - off;
    return 0;
}

static int set_string(char **dst, const char *s, size_t len, dt_err *err)
{
    char *v = strndup(s, len);
    if (!v) return dt_err_set(err, DT_ENOMEM, "record", "out of memory");
    free(*dst);
    *dst = v;
    return 0;
}

static int set_trl(dt_load_row *row, double v, const char *s, size_t n, dt_err *err)
{
    char q[80];
    if (v != floor(v)) {
        if (s) return wrong_text(err, "trl", "not an integer", s, n);
        return dt_err_set(err, DT_EINVAL, "trl", "not an integer: %g", v);
    }
    if (v < 1 || v > 9) {
        if (s)
            return dt_err_set(err, DT_EINVAL, "trl", "\"%s\" is out of range (1..9)",
                              dt_load_echo(q, sizeof q, s, n));
        return dt_err_set(err, DT_EINVAL, "trl", "%.0f is out of range (1..9)", v);
    }
    row->rec.trl = (int)v;
    return 0;
}

static int set_updated(dt_load_row *row, double v, dt_err *err)
{
    if (v != floor(v) || fabs(v) > 9007199254740992.0)
        return dt_err_set(err, DT_EINVAL, "updated_at", "not an integer number of seconds: %g", v);
    row->rec.updated_at = (int64_t)v;
    return 0;
}

int dt_load_add_item(dt_load_row *row, int col, const char *s, size_t len, size_t index,
                     dt_err *err)
{
    const char *name = dt_load_column_name(col);
    char field[64];
    snprintf(field, sizeof field, "%s[%zu]", name, index);
    if (memchr(s, '\0', len))
        return dt_err_set(err, DT_EINVAL, field, "contains a NUL byte at offset %zu",
                          (size_t)((const char *)memchr(s, '\0', len) - s));
    size_t ok = dt_utf8_valid_prefix(s, len);
    if (ok < len)
        return dt_err_set(err, DT_EINVAL, field, "invalid UTF-8 (byte 0x%02x) at offset %zu",
                          (unsigned char)s[ok], ok);
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0) return 0;
    row->seen |= 1u << col;
    if (col == DT_COL_MODES) {
        char buf[72];
        size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
        uint32_t bit;
        int rc = dt_mode_parse(buf, &bit, "modes", err);
        if (rc) {
            if (err) snprintf(err->field, sizeof err->field, "%s", field);
            return rc;
        }
        row->rec.modes |= bit;
        return 0;
    }
    char ***list;
    size_t *n;
    if (col == DT_COL_KEYWORDS) {
        list = &row->rec.keywords;
        n = &row->rec.n_keywords;
    } else if (col == DT_COL_TAGS) {
        list = &row->rec.tags;
        n = &row->rec.n_tags;
    } else {
        return dt_err_set(err, DT_EINVAL, name, "not a list");
    }
    if (*n >= DT_LIST_MAX)
        return dt_err_set(err, DT_ELIMIT, name, "more than the limit of %d entries", DT_LIST_MAX);
    if ((*n & (*n - 1)) == 0) {
        size_t cap = *n ? *n * 2 : 4;
        char **v = realloc(*list, cap * sizeof *v);
        if (!v) return dt_err_set(err, DT_ENOMEM, name, "out of memory");
        *list = v;
    }
    (*list)[*n] = strndup(s, len);
    if (!(*list)[*n]) return dt_err_set(err, DT_ENOMEM, name, "out of memory");
    (*n)++;
    return 0;
}

int dt_load_add_dim(dt_load_row *row, double v, size_t index, dt_err *err)
{
    dt_record *r = &row->rec;
    char field[64];
    snprintf(field, sizeof field, "embedding[%zu]", index);
    if (r->dim >= DT_DIM_MAX)
        return dt_err_set(err, DT_ELIMIT, "embedding", "more than the limit of %d dimensions",
                          DT_DIM_MAX);
    float f = (float)v;
    if (!isfinite(v) || !isfinite(f))
        return dt_err_set(err, DT_EINVAL, field, "%g is not a finite float32", v);
    if ((r->dim & (r->dim - 1)) == 0) {
        size_t cap = r->dim ? r->dim * 2 : 16;
        float *e = realloc(r->embedding, cap * sizeof *e);
        if (!e) return dt_err_set(err, DT_ENOMEM, "embedding", "out of memory");
        r->embedding = e;
    }
    r->embedding[r->dim++] = f;
    row->seen |= 1u << DT_COL_EMBEDDING;
    return 0;
}

static int set_list_text(dt_load_row *row, int col, const char *s, size_t len, dt_err *err)
{
    size_t index = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ';' && s[j] != '|')
            j++;
        size_t a = i, b = j;
        while (a < b && isspace((unsigned char)s[a]))
            a++;
        while (b > a && isspace((unsigned char)s[b - 1]))
            b--;
        if (b > a) {
            int rc = dt_load_add_item(row, col, s + a, b - a, index++, err);
            if (rc) return rc;
        }
        i = j + 1;
    }
    return 0;
}

static int set_embedding_text(dt_load_row *row, const char *s, size_t len, dt_err *err)
{
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') s++, len -= 2;
    size_t index = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && (isspace((unsigned char)s[i]) || s[i] == ';' || s[i] == ','))
            i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !isspace((unsigned char)s[j]) && s[j] != ';' && s[j] != ',')
            j++;
        char field[64];
        snprintf(field, sizeof field, "embedding[%zu]", index);
        double v;
        int rc = parse_double(s + i, j - i, &v, field, err);
        if (rc) return rc;
        if ((rc = dt_load_add_dim(row, v, index++, err))) return rc;
        i = j;
    }
    return 0;
}

int dt_load_set_text(dt_load_row *row, int col, const char *s, size_t len, dt_err *err)
{
    const char *name = dt_load_column_name(col);
    const char *nul = memchr(s, '\0', len);
    if (nul)
        return dt_err_set(err, DT_EINVAL, name, "contains a NUL byte at offset %zu",
                          (size_t)(nul - s));
    size_t ok = dt_utf8_valid_prefix(s, len);
    if (ok < len)
        return dt_err_set(err, DT_EINVAL, name, "invalid UTF-8 (byte 0x%02x) at offset %zu",
                          (unsigned char)s[ok], ok);
    if (len == 0) return 0;
    dt_record *r = &row->rec;
    row->seen |= 1u << col;
    double v;
    int rc;
    switch (col) {
    case DT_COL_TENANT:
        return set_string(&r->tenant, s, len, err);
    case DT_COL_ID:
        return set_string(&r->id, s, len, err);
    case DT_COL_TITLE:
        return set_string(&r->title, s, len, err);
    case DT_COL_TEXT:
        return set_string(&r->text, s, len, err);
    case DT_COL_ORG:
        return set_string(&r->org, s, len, err);
    case DT_COL_FIELD:
        return set_string(&r->field, s, len, err);
    case DT_COL_REGION:
        return set_string(&r->region, s, len, err);
    case DT_COL_SIDE:
    case DT_COL_STATUS: {
        char buf[72];
        size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (col == DT_COL_SIDE) return dt_side_parse(buf, &r->side, name, err);
        return dt_status_parse(buf, &r->status, name, err);
    }
    case DT_COL_KEYWORDS:
    case DT_COL_TAGS:
    case DT_COL_MODES:
        return set_list_text(row, col, s, len, err);
    case DT_COL_TRL:
        if ((rc = parse_double(s, len, &v, name, err))) return rc;
        return set_trl(row, v, s, len, err);
    case DT_COL_PRICE_MIN:
    case DT_COL_PRICE_MAX:
        if ((rc = parse_double(s, len, &v, name, err))) return rc;
        *(col == DT_COL_PRICE_MIN ? &r->price_min : &r->price_max) = v;
        return 0;
    case DT_COL_UPDATED_AT: {
        long long t;
        if (parse_iso8601(s, len, &t) == 0) {
            r->updated_at = t;
            return 0;
        }
        dt_err ignored = DT_ERR_INIT;
        if (parse_double(s, len, &v, name, &ignored) == 0) return set_updated(row, v, err);
        return wrong_text(err, name,
                          "malformed time (expected unix seconds or an ISO 8601 date such as "
                          "2024-05-01T08:00:00Z)",
                          s, len);
    }
    case DT_COL_EMBEDDING:
        return set_embedding_text(row, s, len, err);
    }
    return dt_err_set(err, DT_EINVAL, name, "unknown column");
}

int dt_load_set_number(dt_load_row *row, int col, double v, bool is_int, long long iv, dt_err *err)
{
    const char *name = dt_load_column_name(col);
    switch (col) {
    case DT_COL_TRL:
        if (is_int && (iv < 1 || iv > 9))
            return dt_err_set(err, DT_EINVAL, name, "%lld is out of range (1..9)", iv);
        row->seen |= 1u << col;
        return set_trl(row, is_int ? (double)iv : v, NULL, 0, err);
    case DT_COL_PRICE_MIN:
    case DT_COL_PRICE_MAX:
        if (!isfinite(v)) return dt_err_set(err, DT_EINVAL, name, "not a finite number");
        row->seen |= 1u << col;
        *(col == DT_COL_PRICE_MIN ? &row->rec.price_min : &row->rec.price_max) = v;
        return 0;
    case DT_COL_UPDATED_AT:
        row->seen |= 1u << col;
        if (is_int) {
            row->rec.updated_at = iv;
            return 0;
        }
        return set_updated(row, v, err);
    }
    return dt_err_set(err, DT_EINVAL, name, "wrong JSON type: expected %s, got a number",
                      col == DT_COL_EMBEDDING ? "an array of numbers"
                      : (col == DT_COL_KEYWORDS || col == DT_COL_TAGS || col == DT_COL_MODES)
                          ? "an array of strings"
                          : "a string");
}

/* ---- the driver ---- */

static void ctx_reset(dt_load_ctx *ctx)
{
    dup_free(&ctx->dups);
    ctx->dim = ctx->dim_line = 0;
    for (size_t i = 0; i < ctx->n_warned; i++)
        free(ctx->warned[i]);
    ctx->n_warned = 0;
    ctx->warned_overflow = false;
    for (size_t i = 0; i < ctx->n_held; i++)
        dt_record_free(&ctx->held[i]);
    free(ctx->held);
    free(ctx->held_line);
    ctx->held = NULL;
    ctx->held_line = NULL;
    ctx->n_held = ctx->cap_held = 0;
}

static void report_reset(dt_load_report *rep, dt_load_format fmt)
{
    free(rep->issues);
    memset(rep, 0, sizeof *rep);
    rep->format = fmt;
}

void dt_load_report_free(dt_load_report *rep)
{
    if (!rep) return;
    free(rep->issues);
    memset(rep, 0, sizeof *rep);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static dt_load_format by_extension(const char *name)
{
    const char *dot = name ? strrchr(base_name(name), '.') : NULL;
    if (!dot) return DT_FMT_AUTO;
    if (strcasecmp(dot, ".csv") == 0) return DT_FMT_CSV;
    if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".ndjson") == 0 ||
        strcasecmp(dot, ".json") == 0)
        return DT_FMT_JSONL;
    return DT_FMT_AUTO;
}

static int run(dt_load_ctx *ctx, dt_load_src *src, dt_load_format fmt)
{
    return fmt == DT_FMT_CSV ? dt_load_csv(ctx, src) : dt_load_jsonl(ctx, src);
}

/* Reads src (rewindable says whether src can be read again from the start) into cb. */
static int load(dt_load_src *src, bool rewindable, const char *name, const dt_load_opts *opts,
                dt_load_cb cb, void *ud, dt_load_report *rep_out, dt_err *err)
{
    dt_load_report local;
    dt_load_report *rep = rep_out ? rep_out : &local;
    memset(rep, 0, sizeof *rep);
    dt_load_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.opts = opts ? *opts : (dt_load_opts)DT_LOAD_OPTS_INIT;
    if (ctx.opts.max_errors_kept == 0) ctx.opts.max_errors_kept = KEEP_DEFAULT;
    ctx.rep = rep;
    ctx.cb = cb;
    ctx.ud = ud;
    ctx.err = err;
    const char *base = name ? base_name(name) : "<buffer>";
    size_t bl = strlen(base);
    if (bl > 40) bl = dt_utf8_valid_prefix(base, 40);
    memcpy(ctx.name, base, bl);
    ctx.name[bl] = '\0';

    if (ctx.opts.default_side != -1 && ctx.opts.default_side != DT_DEMAND &&
        ctx.opts.default_side != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "default_side",
                          "%d is not a side (DT_DEMAND, DT_ACHIEVEMENT, or -1 for none)",
                          ctx.opts.default_side);
    if (ctx.opts.default_tenant && ctx.opts.default_tenant[0]) {
        dt_record probe;
        dt_record_init(&probe);
        probe.tenant = (char *)ctx.opts.default_tenant;
        probe.id = "x";
        dt_err e = DT_ERR_INIT;
        if (dt_record_validate(&probe, &e) != 0 || dt_record_check_names(&probe, &e) != 0)
            return dt_err_set(err, DT_EINVAL, "default_tenant", "%s", e.msg);
    }

    dt_load_format fmt = ctx.opts.format;
    if (fmt == DT_FMT_AUTO) fmt = by_extension(name);
    if (fmt == DT_FMT_AUTO) {
        const char *data;
        size_t n;
        int rc = dt_load_src_next(src, &data, &n, err);
        if (rc) return rc;
        size_t i = 0;
        while (i < n && isspace((unsigned char)data[i]))
            i++;
        fmt = (i < n && data[i] == '{') ? DT_FMT_JSONL : DT_FMT_CSV;
        src_unread(src, data, n);
    }
    rep->format = fmt;

    int rc;
    if (!ctx.opts.strict) {
        ctx.mode = MODE_DELIVER;
        rc = run(&ctx, src, fmt);
    } else if (rewindable) {
        ctx.mode = MODE_CHECK;
        rc = run(&ctx, src, fmt);
        if (rc == 0) {
            ctx_reset(&ctx);
            report_reset(rep, fmt);
            ctx.issues_cap = 0;
            src->pos = 0;
            src->started = false;
            src->pend = NULL;
            if (src->fp && fseeko(src->fp, 0, SEEK_SET) != 0)
                rc = dt_err_set(err, DT_EIO, ctx.name, "cannot rewind: %s", strerror(errno));
            if (rc == 0) {
                ctx.mode = MODE_DELIVER;
                rc = run(&ctx, src, fmt);
            }
        }
    } else {
        ctx.mode = MODE_HOLD;
        rc = run(&ctx, src, fmt);
        for (size_t i = 0; rc == 0 && i < ctx.n_held; i++)
            rc = deliver(&ctx, &ctx.held[i], ctx.held_line[i]);
    }
    ctx_reset(&ctx);
    if (!rep_out) dt_load_report_free(&local);
    return rc;
}

int dt_load_buffer(const char *data, size_t len, const char *name, const dt_load_opts *opts,
                   dt_load_cb cb, void *ud, dt_load_report *rep, dt_err *err)
{
    dt_load_src src;
    memset(&src, 0, sizeof src);
    src.data = data ? data : "";
    src.len = data ? len : 0;
    return load(&src, true, name, opts, cb, ud, rep, err);
}

int dt_load_file(const char *path, const dt_load_opts *opts, dt_load_cb cb, void *ud,
                 dt_load_report *rep, dt_err *err)
{
    if (rep) memset(rep, 0, sizeof *rep);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return dt_err_set(err, DT_EIO, base_name(path), "cannot open %s: %s", path,
                          strerror(errno));
    struct stat st;
    int e = fstat(fileno(fp), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e) {
        fclose(fp);
        return dt_err_set(err, DT_EIO, base_name(path), "cannot read %s: %s", path, strerror(e));
    }
    dt_load_src src;
    memset(&src, 0, sizeof src);
    src.fp = fp;
    int rc = load(&src, S_ISREG(st.st_mode), path, opts, cb, ud, rep, err);
    free(src.block);
    fclose(fp);
    return rc;
}
