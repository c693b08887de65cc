/* csv.c - the CSV reader: RFC 4180 rows (libcsv, strict quoting) with a header row naming columns.
 *
 * Input is fed to libcsv one physical line at a time (a line ends at "\n", "\r\n" or a lone "\r"),
 * so every row is known by the line where it starts, even when a quoted field spans lines. A row
 * whose quoting is malformed is reported and skipped up to the end of the line where the error is;
 * a row longer than DT_LOAD_ROW_MAX (typically an unterminated quote) likewise.
 * Not here: the field values themselves (load.c).
 */
#define DT_LOAD_INTERNAL
#include "load.h"

#include <csv.h>
#include <stdlib.h>
#include <string.h>

/* Bytes fed to libcsv at once at most, so a row's length is checked as it grows. */
#define PIECE ((size_t)64 << 10)
#define CSV_OPTS (CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)
/* libcsv grows a field's buffer by this much at a time (its default, 128, is quadratic on long
 * fields). */
#define FIELD_GROWTH ((size_t)64 << 10)

static int parser_init(struct csv_parser *p)
{
    if (csv_init(p, CSV_OPTS) != 0) return -1;
    csv_set_blk_size(p, FIELD_GROWTH);
    return 0;
}

typedef struct csv_state {
    dt_load_ctx *ctx;
    struct csv_parser p;
    char *buf; /* the current row's cells, back to back */
    size_t buf_len, buf_cap;
    size_t *off, *len; /* per cell */
    size_t n_cells, cap_cells;
    bool oom;
    bool row_started;
    size_t row_line, row_bytes;
    bool header_done;
    int *cols; /* header: cell index -> DT_COL_* (or < 0: ignored) */
    size_t n_cols;
    int rc; /* non-zero: stop (set from inside the row callback) */
} csv_state;

static void on_field(void *data, size_t n, void *ud)
{
    csv_state *st = ud;
    if (st->rc || st->oom) return;
    if (st->n_cells == st->cap_cells) {
        size_t cap = st->cap_cells ? st->cap_cells * 2 : 32;
        size_t *o = realloc(st->off, cap * sizeof *o);
        if (!o) goto oom;
        st->off = o;
        size_t *l = realloc(st->len, cap * sizeof *l);
        if (!l) goto oom;
        st->len = l;
        st->cap_cells = cap;
    }
    if (st->buf_cap - st->buf_len < n + 1) {
        size_t cap = st->buf_cap ? st->buf_cap : 4096;
        while (cap - st->buf_len < n + 1)
            cap *= 2;
        char *b = realloc(st->buf, cap);
        if (!b) goto oom;
        st->buf = b;
        st->buf_cap = cap;
    }
    if (n) memcpy(st->buf + st->buf_len, data, n);
    st->buf[st->buf_len + n] = '\0';
    st->off[st->n_cells] = st->buf_len;
    st->len[st->n_cells++] = n;
    st->buf_len += n + 1;
    return;
oom:
    st->oom = true;
}

static void clear_row(csv_state *st)
{
    st->n_cells = 0;
    st->buf_len = 0;
    st->row_started = false;
    st->oom = false;
}

static const char *cell(const csv_state *st, size_t i)
{
    return st->buf + st->off[i];
}

static int read_header(csv_state *st)
{
    dt_load_ctx *ctx = st->ctx;
    size_t line = st->row_line;
    st->cols = malloc((st->n_cells ? st->n_cells : 1) * sizeof *st->cols);
    if (!st->cols) return dt_load_fail(ctx, line, DT_ENOMEM, "out of memory");
    st->n_cols = st->n_cells;
    size_t where[DT_COL_COUNT] = {0}; /* 1-based cell of each column */
    for (size_t i = 0; i < st->n_cells; i++) {
        char q[64];
        dt_load_echo(q, sizeof q, cell(st, i), st->len[i]);
        bool alias;
        int col = dt_load_column(cell(st, i), st->len[i], &alias);
        st->cols[i] = col;
        if (col == DT_COL_UNKNOWN || col == DT_COL_IGNORED) {
            if (st->len[i] == 0)
                dt_load_warn(ctx, line, "header", "column %zu has no name; ignored", i + 1);
            else
                dt_load_warn(ctx, line, q,
                             "unknown column \"%s\" ignored (not in the record schema)", q);
            st->cols[i] = DT_COL_UNKNOWN;
            continue;
        }
        if (where[col])
            return dt_load_fail(ctx, line, DT_EINVAL,
                                "the header names column \"%s\" twice (columns %zu and %zu)",
                                dt_load_column_name(col), where[col], i + 1);
        where[col] = i + 1;
    }
    if (!where[DT_COL_ID])
        return dt_load_fail(ctx, line, DT_EINVAL,
                            "the header has no \"id\" column (the first row must name the "
                            "columns: id, side, title, text, ...)");
    if (!where[DT_COL_SIDE] && !dt_load_has_default_side(ctx))
        return dt_load_fail(ctx, line, DT_EINVAL,
                            "the header has no \"side\" column and no default side was given");
    st->header_done = true;
    return 0;
}

static int read_row(csv_state *st)
{
    dt_load_ctx *ctx = st->ctx;
    size_t line = st->row_line;
    bool blank = true;
    for (size_t i = 0; i < st->n_cells && blank; i++)
        blank = st->len[i] == 0;
    if (blank) return 0;
    dt_err e = DT_ERR_INIT;
    if (st->n_cells != st->n_cols) {
        bool extra_empty = st->n_cells > st->n_cols;
        for (size_t i = st->n_cols; i < st->n_cells && extra_empty; i++)
            extra_empty = st->len[i] == 0;
        if (!extra_empty) {
            dt_err_set(&e, DT_EINVAL, "row", "has %zu fields, the header has %zu", st->n_cells,
                       st->n_cols);
            return dt_load_row_bad(ctx, NULL, line, &e);
        }
    }
    dt_load_row row;
    dt_load_row_start(&row);
    for (size_t i = 0; i < st->n_cols; i++) {
        if (st->cols[i] < 0) continue;
        if (dt_load_set_text(&row, st->cols[i], cell(st, i), st->len[i], &e) != 0)
            return dt_load_row_bad(ctx, &row, line, &e);
    }
    return dt_load_row_done(ctx, &row, line);
}

static void on_row(int c, void *ud)
{
    (void)c;
    csv_state *st = ud;
    if (st->rc) return;
    if (st->oom) {
        st->rc = dt_load_fail(st->ctx, st->row_line, DT_ENOMEM, "out of memory");
        return;
    }
    st->rc = st->header_done ? read_row(st) : read_header(st);
    clear_row(st);
}

/* The current row cannot be parsed: report it and start afresh. */
static int bad_quoting(csv_state *st, const char *msg, size_t line, size_t col)
{
    dt_err e = DT_ERR_INIT;
    if (col)
        dt_err_set(&e, DT_EINVAL, "row", "%s at line %zu, column %zu", msg, line, col);
    else
        dt_err_set(&e, DT_EINVAL, "row", "%s", msg);
    size_t at = st->row_line;
    bool header = !st->header_done;
    clear_row(st);
    csv_free(&st->p);
    if (parser_init(&st->p) != 0) return dt_load_fail(st->ctx, at, DT_ENOMEM, "out of memory");
    if (header)
        return dt_load_fail(st->ctx, at, DT_EINVAL, "the header row is malformed: %s", e.msg);
    return dt_load_row_bad(st->ctx, NULL, at, &e);
}

static bool has_content(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return true;
    return false;
}

int dt_load_csv(dt_load_ctx *ctx, dt_load_src *src)
{
    csv_state st;
    memset(&st, 0, sizeof st);
    st.ctx = ctx;
    if (parser_init(&st.p) != 0) return dt_load_fail(ctx, 1, DT_ENOMEM, "out of memory");
    size_t line = 1, line_off = 0;
    bool skip_line = false, cr_pending = false;
    int rc = 0;
    dt_err e = DT_ERR_INIT;
    for (;;) {
        const char *data;
        size_t n;
        if ((rc = dt_load_src_next(src, &data, &n, &e)) != 0) {
            rc = dt_load_fail(ctx, line, e.code, "%s", e.msg);
            goto out;
        }
        if (n == 0) break;
        size_t pos = 0;
        if (cr_pending && data[0] == '\n' && !skip_line) {
            csv_parse(&st.p, data, 1, on_field, on_row, &st);
            pos = 1;
        } else if (cr_pending && data[0] == '\n') {
            pos = 1;
        }
        cr_pending = false;
        while (pos < n) {
            size_t end = n - pos > PIECE ? pos + PIECE : n;
            const char *nl = memchr(data + pos, '\n', end - pos);
            size_t stop = nl ? (size_t)(nl - data) : end;
            const char *cr = memchr(data + pos, '\r', stop - pos);
            size_t seg_end = end;
            bool eol = false;
            if (cr) {
                size_t i = (size_t)(cr - data);
                eol = true;
                if (i + 1 < n && data[i + 1] == '\n')
                    seg_end = i + 2;
                else {
                    seg_end = i + 1;
                    cr_pending = i + 1 == n;
                }
            } else if (nl) {
                seg_end = stop + 1;
                eol = true;
            }
            const char *seg = data + pos;
            size_t seg_len = seg_end - pos;
            if (!skip_line) {
                if (!st.row_started && has_content(seg, seg_len)) {
                    st.row_started = true;
                    st.row_line = line;
                    st.row_bytes = 0;
                }
                size_t used = csv_parse(&st.p, seg, seg_len, on_field, on_row, &st);
                if (st.rc) {
                    rc = st.rc;
                    goto out;
                }
                if (used < seg_len) {
                    rc = bad_quoting(&st,
                                     "malformed quoting: a quote inside an unquoted field or text "
                                     "after a closing quote (quote the whole field and double any "
                                     "quote inside it)",
                                     line, line_off + used + 1);
                    if (rc) goto out;
                    skip_line = !eol;
                } else if (st.row_started) {
                    st.row_bytes += seg_len;
                    if (st.row_bytes > DT_LOAD_ROW_MAX) {
                        char msg[160];
                        snprintf(msg, sizeof msg,
                                 "longer than %zu bytes (an unterminated quoted field?)",
                                 DT_LOAD_ROW_MAX);
                        rc = bad_quoting(&st, msg, line, 0);
                        if (rc) goto out;
                        skip_line = !eol;
                    }
                }
            } else if (eol) {
                skip_line = false;
            }
            if (eol) {
                line++;
                line_off = 0;
            } else {
                line_off += seg_len;
            }
            pos = seg_end;
        }
    }
    if (csv_fini(&st.p, on_field, on_row, &st) != 0) {
        if (!st.rc && st.row_started)
            st.rc = bad_quoting(&st, "unterminated quoted field (the closing quote is missing)",
                                st.row_line, 0);
    }
    rc = st.rc;
out:
    csv_free(&st.p);
    free(st.buf);
    free(st.off);
    free(st.len);
    free(st.cols);
    return rc;
}
