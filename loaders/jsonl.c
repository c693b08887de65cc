/* jsonl.c - the JSON Lines reader: one JSON object per line, parsed with jansson.
 *
 * Lines are parsed in place when they lie within one input block and assembled otherwise, so memory
 * is bounded by DT_LOAD_ROW_MAX whatever the file size. Blank lines are skipped. Invalid UTF-8 is
 * reported with the key whose value holds it ("title", "keywords[2]").
 * Not here: the field values themselves (load.c).
 */
#define DT_LOAD_INTERNAL
#include "load.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static bool is_list(int col)
{
    return col == DT_COL_KEYWORDS || col == DT_COL_TAGS || col == DT_COL_MODES;
}

static int wrong_type(dt_err *err, const char *field, int col, const json_t *got)
{
    const char *want = col == DT_COL_EMBEDDING ? "an array of numbers"
                       : is_list(col)          ? "an array of strings"
                       : (col == DT_COL_TRL || col == DT_COL_PRICE_MIN || col == DT_COL_PRICE_MAX ||
                          col == DT_COL_UPDATED_AT)
                           ? "a number"
                           : "a string";
    return dt_err_set(err, DT_EINVAL, field, "wrong JSON type: expected %s, got %s", want,
                      type_name(got));
}

static int set_array(dt_load_row *row, int col, const json_t *arr, dt_err *err)
{
    const char *name = dt_load_column_name(col);
    size_t i;
    const json_t *v;
    if (col == DT_COL_EMBEDDING) {
        json_array_foreach(arr, i, v)
        {
            char field[64];
            snprintf(field, sizeof field, "embedding[%zu]", i);
            if (!json_is_number(v)) return wrong_type(err, field, -1, v);
            int rc = dt_load_add_dim(row, json_number_value(v), i, err);
            if (rc) return rc;
        }
        return 0;
    }
    if (!is_list(col)) return wrong_type(err, name, col, arr);
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v)) {
            char field[64];
            snprintf(field, sizeof field, "%s[%zu]", name, i);
            return wrong_type(err, field, -1, v);
        }
        int rc = dt_load_add_item(row, col, json_string_value(v), json_string_length(v), i, err);
        if (rc) return rc;
    }
    return 0;
}

/* Names the place of byte `bad` of the line s: the top-level key whose value holds it, with the
 * array index when that value is an array ("keywords[2]"); "key" when it is inside a key. */
static void locate(const char *s, size_t bad, char *field, size_t cap)
{
    int depth = 0;
    bool in_str = false, esc = false, is_key = false, want_key = false, in_array = false;
    size_t key_b = 0, key_e = 0, str_b = 0, idx = 0;
    for (size_t i = 0; i < bad; i++) {
        char c = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"') {
                in_str = false;
                if (is_key) {
                    key_b = str_b;
                    key_e = i;
                }
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = true;
            str_b = i + 1;
            is_key = depth == 1 && want_key;
            break;
        case '{':
        case '[':
            depth++;
            if (depth == 1) want_key = true;
            if (depth == 2) {
                in_array = c == '[';
                idx = 0;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        case ':':
            if (depth == 1) want_key = false;
            break;
        case ',':
            if (depth == 1) want_key = true;
            if (depth == 2 && in_array) idx++;
            break;
        default:
            break;
        }
    }
    if (in_str && is_key) {
        snprintf(field, cap, "key");
        return;
    }
    if (key_e <= key_b || depth < 1) {
        snprintf(field, cap, "json");
        return;
    }
    char q[48];
    dt_load_echo(q, sizeof q, s + key_b, key_e - key_b);
    bool alias;
    int col = dt_load_column(s + key_b, key_e - key_b, &alias);
    const char *name = col >= 0 ? dt_load_column_name(col) : q;
    if (depth >= 2 && in_array)
        snprintf(field, cap, "%s[%zu]", name, idx);
    else
        snprintf(field, cap, "%s", name);
}

static int read_object(dt_load_ctx *ctx, json_t *obj, size_t line)
{
    dt_err e = DT_ERR_INIT;
    dt_load_row row;
    dt_load_row_start(&row);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool alias;
        int col = dt_load_column(key, strlen(key), &alias);
        if (col == DT_COL_IGNORED) continue;
        if (col == DT_COL_UNKNOWN) {
            dt_load_warn_key(ctx, line, key);
            continue;
        }
        const char *name = dt_load_column_name(col);
        if (col == DT_COL_ID && (row.seen & (1u << DT_COL_ID))) {
            dt_err_set(&e, DT_EINVAL, "id", "both \"id\" and \"_id\" are given");
            return dt_load_row_bad(ctx, &row, line, &e);
        }
        int rc = 0;
        switch (json_typeof(v)) {
        case JSON_NULL:
            break;
        case JSON_STRING:
            rc = dt_load_set_text(&row, col, json_string_value(v), json_string_length(v), &e);
            if (rc == 0 && col == DT_COL_ID && json_string_length(v) == 0)
                rc = dt_err_set(&e, DT_EINVAL, "id", "empty");
            break;
        case JSON_INTEGER:
            rc = dt_load_set_number(&row, col, (double)json_integer_value(v), true,
                                    (long long)json_integer_value(v), &e);
            break;
        case JSON_REAL:
            rc = dt_load_set_number(&row, col, json_real_value(v), false, 0, &e);
            break;
        case JSON_ARRAY:
            rc = set_array(&row, col, v, &e);
            break;
        default:
            rc = wrong_type(&e, name, col, v);
            break;
        }
        if (rc) return dt_load_row_bad(ctx, &row, line, &e);
    }
    return dt_load_row_done(ctx, &row, line);
}

static int read_line(dt_load_ctx *ctx, const char *s, size_t n, size_t line, bool too_long)
{
    dt_err e = DT_ERR_INIT;
    if (too_long) {
        dt_err_set(&e, DT_ELIMIT, "row", "line longer than %zu bytes", DT_LOAD_ROW_MAX);
        return dt_load_row_bad(ctx, NULL, line, &e);
    }
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    if (i == n) return 0;
    json_error_t jerr;
    json_t *obj = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        if (json_error_code(&jerr) == json_error_invalid_utf8) {
            size_t bad = dt_utf8_valid_prefix(s, n);
            char field[64];
            locate(s, bad, field, sizeof field);
            dt_err_set(&e, DT_EINVAL, field, "invalid UTF-8 (byte 0x%02x) at column %zu",
                       bad < n ? (unsigned char)s[bad] : 0, bad + 1);
        } else {
            dt_err_set(&e, DT_EINVAL, "json", "invalid JSON at column %d: %s", jerr.column,
                       jerr.text);
        }
        return dt_load_row_bad(ctx, NULL, line, &e);
    }
    int rc;
    if (!json_is_object(obj)) {
        dt_err_set(&e, DT_EINVAL, "json", "wrong JSON type: a line must hold an object, got %s",
                   type_name(obj));
        rc = dt_load_row_bad(ctx, NULL, line, &e);
    } else {
        rc = read_object(ctx, obj, line);
    }
    json_decref(obj);
    return rc;
}

int dt_load_jsonl(dt_load_ctx *ctx, dt_load_src *src)
{
    char *acc = NULL; /* a line spanning blocks */
    size_t acc_len = 0, acc_cap = 0;
    bool acc_on = false, too_long = false;
    size_t line = 1;
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
        while (pos < n) {
            const char *nl = memchr(data + pos, '\n', n - pos);
            size_t end = nl ? (size_t)(nl - data) : n;
            size_t piece = end - pos;
            if (!nl || acc_on) {
                acc_on = true;
                if (!too_long && acc_len + piece > DT_LOAD_ROW_MAX) {
                    too_long = true;
                    acc_len = 0;
                }
                if (!too_long) {
                    if (acc_cap < acc_len + piece) {
                        size_t cap = acc_cap ? acc_cap : 1 << 16;
                        while (cap < acc_len + piece)
                            cap *= 2;
                        char *a = realloc(acc, cap);
                        if (!a) {
                            rc = dt_load_fail(ctx, line, DT_ENOMEM, "out of memory");
                            goto out;
                        }
                        acc = a;
                        acc_cap = cap;
                    }
                    memcpy(acc + acc_len, data + pos, piece);
                    acc_len += piece;
                }
                if (nl) {
                    rc = read_line(ctx, acc, acc_len, line, too_long);
                    acc_on = too_long = false;
                    acc_len = 0;
                }
            } else {
                rc = read_line(ctx, data + pos, piece, line, false);
            }
            if (rc) goto out;
            if (nl) line++;
            pos = end + (nl ? 1 : 0);
        }
    }
    if (acc_on) rc = read_line(ctx, acc, acc_len, line, too_long);
out:
    free(acc);
    return rc;
}
