/* record.h - one demand or achievement record (DESIGN section 1), its enums and its validation.
 *
 * A dt_record owns every string and array it points to (malloc'd); dt_record_free releases them.
 * This module parses and checks values; it does no I/O (loaders/ read files, server/ decodes RPCs).
 */
#ifndef DT_RECORD_H
#define DT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"

typedef enum { DT_DEMAND = 0, DT_ACHIEVEMENT = 1 } dt_side;
typedef enum { DT_OPEN = 0, DT_CLOSED = 1 } dt_status;

/* Cooperation modes, a bit each in dt_record.modes. */
enum {
    DT_MODE_TRANSFER = 1u << 0,
    DT_MODE_LICENSE = 1u << 1,
    DT_MODE_OPEN_LICENSE = 1u << 2,
    DT_MODE_JOINT_RD = 1u << 3,
    DT_MODE_EQUITY = 1u << 4,
    DT_MODE_CONSULTING = 1u << 5,
    DT_MODE_COUNT = 6
};

typedef struct dt_record {
    char *tenant;       /* NULL or "" means "public" */
    char *id;           /* 1..DT_ID_MAX printable bytes, unique within (tenant, side) */
    dt_side side;
    char *title;        /* may be NULL */
    char *text;         /* may be NULL */
    char **keywords;    /* n_keywords strings */
    size_t n_keywords;
    char *org;          /* may be NULL */
    char *field;        /* dot-separated hierarchical code, e.g. "C.35.2"; may be NULL */
    char *region;       /* dot-separated region code, e.g. "CN.32.05"; may be NULL */
    int trl;            /* 1..9, or 0 when absent */
    uint32_t modes;     /* DT_MODE_* bits; 0 when absent */
    double price_min;   /* CNY; NAN when absent */
    double price_max;   /* CNY; NAN when absent */
    char **tags;        /* n_tags strings */
    size_t n_tags;
    dt_status status;
    int64_t updated_at; /* unix seconds; 0 when absent */
    float *embedding;   /* dim floats, or NULL */
    size_t dim;
} dt_record;

/* Sets every field to its "absent" value (NULLs, 0, NAN prices, DT_OPEN). */
void dt_record_init(dt_record *r);
/* Frees everything r owns and re-initialises it. r itself is not freed. NULL is fine. */
void dt_record_free(dt_record *r);
/* Deep copy of src into dst (dst is overwritten, not freed first). 0 or -DT_ENOMEM. */
int dt_record_copy(dt_record *dst, const dt_record *src, dt_err *err);

/* Checks every DESIGN section 1 rule and the DT_* limits of dt.h: id present, 1..128 printable
 * bytes; valid UTF-8 everywhere; sizes; trl 0 or 1..9; price_min <= price_max when both set and
 * neither negative; embedding finite with 1..DT_DIM_MAX dimensions. On failure err->field names the
 * field ("id", "trl", "keywords[3]", ...) and err->msg says what is wrong. */
int dt_record_validate(const dt_record *r, dt_err *err);

/* The rules for names that new data must follow on top of dt_record_validate (records taken by the
 * RPC, files loaded, `dovetail import`; not records already stored, which load as they are):
 * a tenant name is 1..64 of A-Z a-z 0-9 . _ - (as a token's name), not "." or ".." - it becomes a
 * directory and a URL segment; an id holds no control, format or line/paragraph separator
 * character (U+0085, U+200B, U+202E, ...), which would display as something else or not at all.
 * dt_tenant_name_check reports under `field`; dt_record_check_names under "tenant" or "id". */
int dt_tenant_name_check(const char *name, const char *field, dt_err *err);
int dt_record_check_names(const dt_record *r, dt_err *err);

/* Parsers for the textual forms used by CSV, JSON and the CLI. Case-insensitive, surrounding
 * whitespace ignored. Return 0 and the value, or -DT_EINVAL with err naming `field`. */
int dt_side_parse(const char *s, dt_side *out, const char *field, dt_err *err);   /* demand|achievement */
int dt_status_parse(const char *s, dt_status *out, const char *field, dt_err *err); /* open|closed */
int dt_mode_parse(const char *s, uint32_t *bit, const char *field, dt_err *err);   /* one mode name */

const char *dt_side_name(dt_side s);     /* "demand" / "achievement" */
const char *dt_status_name(dt_status s); /* "open" / "closed" */
const char *dt_mode_name(uint32_t bit);  /* "transfer", ...; NULL for an unknown bit */

/* The tenant r belongs to: r->tenant, or "public" when that is NULL or empty. */
const char *dt_record_tenant(const dt_record *r);

/* Length of the longest prefix of s[0..n) that is valid UTF-8 (no overlong forms, surrogates or
 * code points beyond U+10FFFF); n when all of it is valid. Pure function, thread-safe. */
size_t dt_utf8_valid_prefix(const char *s, size_t n);

#endif
