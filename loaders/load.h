/* load.h - reading demand/achievement records from CSV and JSON Lines exports (DESIGN section 1).
 *
 * One record per CSV row or JSON line, streamed: memory grows with the number of distinct ids (for
 * the duplicate check), not with the size of the file. Every bad row is reported with its line
 * number and reason and skipped; good rows go to a callback. A strict mode refuses the whole file
 * at the first bad row and then delivers nothing.
 *
 * Schema (both formats; names case-insensitive): tenant, id (alias _id, as in BEIR corpus files),
 * side, title, text, keywords, org, field, region, trl, modes, price_min, price_max, tags, status,
 * updated_at, embedding. An empty value means absent.
 *  - CSV (RFC 4180): a header row names the columns in any order. List cells (keywords, tags,
 * modes) separate entries with ';' or '|'; an embedding cell separates floats with spaces, ';' or
 * ',' (optionally inside [ ]). Unknown columns are ignored with one warning; no "id" column is a
 *    whole-file error.
 *  - JSON Lines: one object per line; lists as JSON arrays (a string is split as in CSV), numbers
 * as numbers or numeric strings. Unknown keys are ignored with one warning per key; a BEIR
 *    "metadata" object is ignored silently.
 *  - updated_at: unix seconds, or an ISO 8601 date/time ("2024-05-01",
 * "2024-05-01T08:00:00+08:00"). A UTF-8 byte-order mark is skipped; CRLF line endings are accepted.
 * Line numbers count physical lines from 1; a CSV row with a quoted field spanning lines is
 * reported at the line where it starts.
 *
 * Not here: the durable snapshot and journal (snapshot.c, journal.c), indexing (matcher/).
 */
#ifndef DT_LOAD_H
#define DT_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dt.h"
#include "record.h"

typedef enum { DT_FMT_AUTO = 0, DT_FMT_CSV, DT_FMT_JSONL } dt_load_format;

typedef struct dt_load_opts {
    dt_load_format format;      /* DT_FMT_AUTO: by extension (.csv; .jsonl/.ndjson/.json), else
                                   JSON Lines when the first non-space byte is '{', else CSV */
    bool strict;                /* first bad row: deliver nothing, return -DT_EINVAL */
    const char *default_tenant; /* for rows without a tenant; NULL: "public" */
    int default_side;           /* for rows without a side: DT_DEMAND or DT_ACHIEVEMENT; -1: every
                                   row must give one */
    size_t max_errors_kept;     /* issues kept in the report (all are counted); 0: 1000 */
} dt_load_opts;

#define DT_LOAD_OPTS_INIT                                                                          \
    {                                                                                              \
        DT_FMT_AUTO, false, NULL, -1, 0                                                            \
    }

/* The longest line (JSON Lines) or row (CSV, with its quoted line breaks) accepted, in bytes; a CSV
 * row is measured in 64 KiB steps, so one may exceed this by less than that. */
#define DT_LOAD_ROW_MAX ((size_t)4 << 20)

/* One reported problem. code is the DT_E* of a rejected row, or 0 for a warning (an ignored column
 * or key) that rejected nothing. field names the record field ("trl", "keywords[3]") or, for a
 * problem with the row as a whole, "row", "json" or "utf8". */
typedef struct dt_load_issue {
    size_t line;
    int code;
    char field[64];
    char msg[256];
} dt_load_issue;

typedef struct dt_load_report {
    dt_load_format format; /* the format actually read */
    size_t rows;           /* data rows seen (header and blank lines excluded) */
    size_t loaded;         /* rows delivered to the callback */
    size_t rejected;       /* bad rows skipped */
    size_t warnings;       /* warnings issued */
    dt_load_issue
        *issues; /* the first max_errors_kept issues (rejections and warnings), in order */
    size_t n_issues;
} dt_load_report;

/* Receives each good (validated) record with the line where its row starts. The callback may take
 * ownership of the record's contents by moving the struct out and then calling dt_record_init(rec),
 * or copy what it needs; the loader frees whatever is left in *rec afterwards. Return 0 to go on,
 * or a negative -DT_E* (filling err) to stop loading with that error. */
typedef int (*dt_load_cb)(void *ud, dt_record *rec, size_t line, dt_err *err);

/* Loads the file at path. opts may be NULL (defaults as in DT_LOAD_OPTS_INIT). rep may be NULL;
 * else it is overwritten (not freed first) and must be released with dt_load_report_free, also
 * after an error. Returns 0 when the file was read to the end (bad rows skipped and reported: see
 * rep->rejected), or:
 *  -DT_EIO      the file cannot be opened or read (err->msg carries strerror);
 *  -DT_EINVAL   a whole-file problem (no "id" column, neither a "side" column nor a default side,
 *               bad opts) or, in strict mode, the first bad row: err->field is "file:line" (the
 *               file's base name) and err->msg "field: reason"; nothing was delivered;
 *  -DT_ENOMEM   out of memory;
 *  whatever the callback returned when it stopped the load.
 * Thread-safety: no shared state; concurrent loads of different files are fine. */
int dt_load_file(const char *path, const dt_load_opts *opts, dt_load_cb cb, void *ud,
                 dt_load_report *rep, dt_err *err);

/* Same as dt_load_file over data[0..len) (not NUL-terminated, not modified, borrowed for the call).
 * name is used for format detection by extension and in error positions; NULL: "<buffer>". */
int dt_load_buffer(const char *data, size_t len, const char *name, const dt_load_opts *opts,
                   dt_load_cb cb, void *ud, dt_load_report *rep, dt_err *err);

/* Frees the issues of rep and zeroes it. NULL is fine. */
void dt_load_report_free(dt_load_report *rep);

/* "csv", "jsonl" or "auto". */
const char *dt_load_format_name(dt_load_format f);

#ifdef DT_LOAD_INTERNAL
/* Shared by load.c, csv.c and jsonl.c only; not a public interface. */

enum {
    DT_COL_TENANT,
    DT_COL_ID,
    DT_COL_SIDE,
    DT_COL_TITLE,
    DT_COL_TEXT,
    DT_COL_KEYWORDS,
    DT_COL_ORG,
    DT_COL_FIELD,
    DT_COL_REGION,
    DT_COL_TRL,
    DT_COL_MODES,
    DT_COL_PRICE_MIN,
    DT_COL_PRICE_MAX,
    DT_COL_TAGS,
    DT_COL_STATUS,
    DT_COL_UPDATED_AT,
    DT_COL_EMBEDDING,
    DT_COL_COUNT,
    DT_COL_UNKNOWN = -1,
    DT_COL_IGNORED = -2 /* known to carry nothing for us (BEIR "metadata") */
};

/* The column for a header cell or JSON key: DT_COL_*, DT_COL_UNKNOWN or DT_COL_IGNORED.
 * *alias is set when the name was an alias ("_id"). */
int dt_load_column(const char *name, size_t len, bool *alias);
const char *dt_load_column_name(int col);

/* An input: a FILE read in blocks, or a borrowed buffer handed out whole. */
typedef struct dt_load_src {
    FILE *fp;
    const char *data;
    size_t len, pos;
    char *block;
    size_t block_cap;
    bool started;
    const char *pend; /* a block handed back by dt_load_src_unread */
    size_t pend_len;
} dt_load_src;

/* The next block of input (the BOM already skipped); *n == 0 at the end. The block stays valid
 * until the next call. 0 or -DT_EIO / -DT_ENOMEM. */
int dt_load_src_next(dt_load_src *src, const char **data, size_t *n, dt_err *err);

typedef struct dt_load_ctx dt_load_ctx;

/* The record being built for the current row, and which columns it has set so far. */
typedef struct dt_load_row {
    dt_record rec;
    unsigned seen; /* 1u << DT_COL_* */
} dt_load_row;

void dt_load_row_start(dt_load_row *row);

/* Sets column col of row from the text s[0..len) (any bytes). Empty text means absent. On a bad
 * value returns -DT_EINVAL / -DT_ELIMIT with err naming the field ("trl", "keywords[2]"). */
int dt_load_set_text(dt_load_row *row, int col, const char *s, size_t len, dt_err *err);
/* Sets a numeric column (trl, price_min, price_max, updated_at) from a number; is_int says v came
 * from an integer literal (iv holds it exactly). Other columns: a wrong-type error. */
int dt_load_set_number(dt_load_row *row, int col, double v, bool is_int, long long iv, dt_err *err);

/* Appends one entry to a list column (keywords, tags: the text as one entry; modes: one mode name)
 * at position index (for error messages). Empty text is skipped. Errors as dt_load_set_text. */
int dt_load_add_item(dt_load_row *row, int col, const char *s, size_t len, size_t index,
                     dt_err *err);
/* Appends one value to the embedding; index names it in errors (a value that does not fit a
 * float32, more than DT_DIM_MAX values). */
int dt_load_add_dim(dt_load_row *row, double v, size_t index, dt_err *err);

/* Copies s[0..n) into out (cap bytes) for quoting in a message: control bytes and invalid UTF-8
 * become '?', long input is cut at a character boundary with "...". Returns out. */
const char *dt_load_echo(char *out, size_t cap, const char *s, size_t n);

/* Ends a row that parsed: applies defaults, validates, checks duplicates and the embedding
 * dimension, and delivers (or holds) it. Frees row->rec in every case. 0 to go on, negative to stop
 * the load (err of the load filled). */
int dt_load_row_done(dt_load_ctx *ctx, dt_load_row *row, size_t line);
/* Ends a row that did not parse: why names the field and the reason. Frees row->rec when row is
 * not NULL. 0 to go on, negative (strict mode) to stop. */
int dt_load_row_bad(dt_load_ctx *ctx, dt_load_row *row, size_t line, const dt_err *why);
/* Reports a warning (no row rejected). */
void dt_load_warn(dt_load_ctx *ctx, size_t line, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Warns once per distinct key name (up to a bound) that a JSON key is unknown. */
void dt_load_warn_key(dt_load_ctx *ctx, size_t line, const char *key);
/* Fails the whole load: fills the load's err with field "file:line". Returns -code. */
int dt_load_fail(dt_load_ctx *ctx, size_t line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether rows without a side can take a default. */
bool dt_load_has_default_side(const dt_load_ctx *ctx);

/* The format readers. 0 at the end of input, or negative as from dt_load_row_*. */
int dt_load_csv(dt_load_ctx *ctx, dt_load_src *src);
int dt_load_jsonl(dt_load_ctx *ctx, dt_load_src *src);
#endif

#endif
