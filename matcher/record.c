/* record.c - the record struct's lifecycle, its validation and the names of its enums (record.h).
 *
 * Validation is the single place where DESIGN section 1 rules and the dt.h limits are enforced:
 * loaders and the RPC layer build a dt_record however they like and then call dt_record_validate.
 * No I/O, no global mutable state.
 */
#include "record.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

void dt_record_init(dt_record *r)
{
    memset(r, 0, sizeof *r);
    r->side = DT_DEMAND;
    r->status = DT_OPEN;
    r->price_min = NAN;
    r->price_max = NAN;
}

static void free_list(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void dt_record_free(dt_record *r)
{
    if (!r) return;
    free(r->tenant);
    free(r->id);
    free(r->title);
    free(r->text);
    free_list(r->keywords, r->n_keywords);
    free(r->org);
    free(r->field);
    free(r->region);
    free_list(r->tags, r->n_tags);
    free(r->embedding);
    dt_record_init(r);
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (!src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static int dup_list(char ***dst, size_t *n_dst, char *const *src, size_t n)
{
    *dst = NULL;
    *n_dst = 0;
    if (!src || n == 0) return 0;
    char **v = calloc(n, sizeof *v);
    if (!v) return -1;
    *dst = v;
    for (size_t i = 0; i < n; i++) {
        if (dup_str(&v[i], src[i]) != 0) return -1;
        *n_dst = i + 1;
    }
    return 0;
}

int dt_record_copy(dt_record *dst, const dt_record *src, dt_err *err)
{
    *dst = *src;
    dst->tenant = dst->id = dst->title = dst->text = NULL;
    dst->org = dst->field = dst->region = NULL;
    dst->keywords = dst->tags = NULL;
    dst->n_keywords = dst->n_tags = 0;
    dst->embedding = NULL;
    dst->dim = 0;
    if (dup_str(&dst->tenant, src->tenant) || dup_str(&dst->id, src->id) ||
        dup_str(&dst->title, src->title) || dup_str(&dst->text, src->text) ||
        dup_str(&dst->org, src->org) || dup_str(&dst->field, src->field) ||
        dup_str(&dst->region, src->region) ||
        dup_list(&dst->keywords, &dst->n_keywords, src->keywords, src->n_keywords) ||
        dup_list(&dst->tags, &dst->n_tags, src->tags, src->n_tags))
        goto nomem;
    if (src->embedding && src->dim > 0) {
        dst->embedding = malloc(src->dim * sizeof *dst->embedding);
        if (!dst->embedding) goto nomem;
        memcpy(dst->embedding, src->embedding, src->dim * sizeof *dst->embedding);
        dst->dim = src->dim;
    }
    return 0;
nomem:
    dt_record_free(dst);
    return dt_err_set(err, DT_ENOMEM, "record", "out of memory copying a record");
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0 when it is invalid:
 * truncated, a stray continuation byte, an overlong form, a surrogate or beyond U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

size_t dt_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0) break;
        i += k;
    }
    return i;
}

/* Rules a string field must follow, beyond valid UTF-8. */
enum {
    STR_PRINTABLE = 1 << 0,     /* no bytes < 0x20 and no 0x7f */
    STR_NO_EDGE_SPACE = 1 << 1, /* no leading or trailing space (ASCII or Unicode Zs) */
    STR_CODE = 1 << 2,          /* dot-separated code: no empty segment */
    STR_NONEMPTY = 1 << 3
};

static bool is_space_cp(int32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
           utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
}

static int check_str(const char *s, size_t max, unsigned rules, int limit_code, const char *field,
                     dt_err *err)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    if (len == 0 && (rules & STR_NONEMPTY)) return dt_err_set(err, DT_EINVAL, field, "empty");
    if (len > max)
        return dt_err_set(err, limit_code, field, "%zu bytes, longer than the limit of %zu bytes",
                          len, max);
    int32_t first = -1, last = -1;
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x80) {
            if ((rules & STR_PRINTABLE) && (u[i] < 0x20 || u[i] == 0x7f))
                return dt_err_set(err, DT_EINVAL, field,
                                  "contains a non-printable byte 0x%02x at offset %zu", u[i], i);
            if (first < 0) first = u[i];
            last = u[i];
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0)
            return dt_err_set(err, DT_EINVAL, field, "invalid UTF-8 (byte 0x%02x) at offset %zu",
                              u[i], i);
        if (rules & STR_NO_EDGE_SPACE) {
            int32_t cp;
            utf8proc_iterate(u + i, (utf8proc_ssize_t)k, &cp);
            if (first < 0) first = cp;
            last = cp;
        }
        i += k;
    }
    if ((rules & STR_NO_EDGE_SPACE) && len > 0) {
        if (is_space_cp(first)) return dt_err_set(err, DT_EINVAL, field, "starts with white space");
        if (is_space_cp(last)) return dt_err_set(err, DT_EINVAL, field, "ends with white space");
    }
    if ((rules & STR_CODE) && len > 0) { /* an empty code is the same as none */
        if (s[0] == '.' || s[len - 1] == '.' || strstr(s, ".."))
            return dt_err_set(err, DT_EINVAL, field,
                              "\"%s\" has an empty segment (expected dot-separated parts such as "
                              "\"C.35.2\")",
                              s);
    }
    return 0;
}

static int check_opt(const char *s, size_t max, unsigned rules, const char *field, dt_err *err)
{
    if (!s) return 0;
    return check_str(s, max, rules, DT_ELIMIT, field, err);
}

static int check_list(char *const *v, size_t n, const char *name, dt_err *err)
{
    if (n > DT_LIST_MAX)
        return dt_err_set(err, DT_ELIMIT, name, "%zu entries, more than the limit of %d", n,
                          DT_LIST_MAX);
    if (n > 0 && !v) return dt_err_set(err, DT_EINVAL, name, "%zu entries but no array", n);
    for (size_t i = 0; i < n; i++) {
        char field[64];
        snprintf(field, sizeof field, "%s[%zu]", name, i);
        if (!v[i]) return dt_err_set(err, DT_EINVAL, field, "missing (NULL entry)");
        int rc = check_str(v[i], DT_SHORT_MAX, STR_PRINTABLE | STR_NONEMPTY, DT_ELIMIT, field, err);
        if (rc) return rc;
    }
    return 0;
}

static int check_price(double v, const char *field, dt_err *err)
{
    if (isnan(v)) return 0;
    if (!isfinite(v)) return dt_err_set(err, DT_EINVAL, field, "not a finite number");
    if (v < 0) return dt_err_set(err, DT_EINVAL, field, "negative (%g)", v);
    return 0;
}

int dt_tenant_name_check(const char *name, const char *field, dt_err *err)
{
    size_t n = strlen(name);
    if (n == 0) return dt_err_set(err, DT_EINVAL, field, "empty");
    if (n > DT_TENANT_MAX) return dt_err_set(err, DT_ELIMIT, field, "%zu bytes: longer than %d bytes", n, DT_TENANT_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return dt_err_set(err, DT_EINVAL, field,
                              "byte 0x%02x at offset %zu: a tenant name is made of A-Z a-z 0-9 . _ -", ch, i);
    }
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return dt_err_set(err, DT_EINVAL, field, "\"%s\" is not a tenant name", name);
    return 0;
}

int dt_record_check_names(const dt_record *r, dt_err *err)
{
    int rc;
    if (r->tenant && r->tenant[0] && (rc = dt_tenant_name_check(r->tenant, "tenant", err))) return rc;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)(r->id ? r->id : "");
    utf8proc_int32_t cp;
    for (utf8proc_ssize_t i = 0, k; p[i]; i += k) {
        if ((k = utf8proc_iterate(p + i, -1, &cp)) <= 0) return dt_err_set(err, DT_EINVAL, "id", "invalid UTF-8");
        utf8proc_category_t c = utf8proc_category(cp);
        if (c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_ZL ||
            c == UTF8PROC_CATEGORY_ZP)
            return dt_err_set(err, DT_EINVAL, "id",
                              "holds U+%04X at offset %zd: ids take no control, format or separator characters",
                              (unsigned)cp, i);
    }
    return 0;
}

int dt_record_validate(const dt_record *r, dt_err *err)
{
    int rc;
    if (r->tenant && r->tenant[0] &&
        (rc = check_str(r->tenant, DT_TENANT_MAX, STR_PRINTABLE | STR_NO_EDGE_SPACE, DT_ELIMIT,
                        "tenant", err)))
        return rc;
    if (!r->id || !r->id[0]) return dt_err_set(err, DT_EINVAL, "id", "missing");
    if ((rc = check_str(r->id, DT_ID_MAX, STR_PRINTABLE | STR_NO_EDGE_SPACE, DT_ELIMIT, "id", err)))
        return rc;
    if (r->side != DT_DEMAND && r->side != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "side", "unknown side %d (valid: demand, achievement)",
                          (int)r->side);
    if ((rc = check_opt(r->title, DT_TITLE_MAX, 0, "title", err))) return rc;
    if ((rc = check_opt(r->text, DT_TEXT_MAX, 0, "text", err))) return rc;
    if ((rc = check_list(r->keywords, r->n_keywords, "keywords", err))) return rc;
    if ((rc = check_opt(r->org, DT_SHORT_MAX, STR_PRINTABLE, "org", err))) return rc;
    if ((rc = check_opt(r->field, DT_SHORT_MAX, STR_PRINTABLE | STR_CODE, "field", err))) return rc;
    if ((rc = check_opt(r->region, DT_SHORT_MAX, STR_PRINTABLE | STR_CODE, "region", err)))
        return rc;
    if (r->trl < 0 || r->trl > 9)
        return dt_err_set(err, DT_EINVAL, "trl", "%d is out of range (1..9, or 0 when absent)",
                          r->trl);
    if (r->modes & ~((1u << DT_MODE_COUNT) - 1))
        return dt_err_set(err, DT_EINVAL, "modes", "unknown mode bits 0x%x",
                          (unsigned)(r->modes & ~((1u << DT_MODE_COUNT) - 1)));
    if ((rc = check_price(r->price_min, "price_min", err))) return rc;
    if ((rc = check_price(r->price_max, "price_max", err))) return rc;
    if (!isnan(r->price_min) && !isnan(r->price_max) && r->price_min > r->price_max)
        return dt_err_set(err, DT_EINVAL, "price_min", "%g is greater than price_max %g",
                          r->price_min, r->price_max);
    if ((rc = check_list(r->tags, r->n_tags, "tags", err))) return rc;
    if (r->status != DT_OPEN && r->status != DT_CLOSED)
        return dt_err_set(err, DT_EINVAL, "status", "unknown status %d (valid: open, closed)",
                          (int)r->status);
    if (r->updated_at < 0)
        return dt_err_set(err, DT_EINVAL, "updated_at", "negative (%lld)",
                          (long long)r->updated_at);
    if (r->embedding || r->dim) {
        if (!r->embedding || r->dim == 0)
            return dt_err_set(err, DT_EINVAL, "embedding", "dimension %zu with %s values", r->dim,
                              r->embedding ? "some" : "no");
        if (r->dim > DT_DIM_MAX)
            return dt_err_set(err, DT_ELIMIT, "embedding",
                              "%zu dimensions, more than the limit of %d", r->dim, DT_DIM_MAX);
        for (size_t i = 0; i < r->dim; i++)
            if (!isfinite(r->embedding[i])) {
                char field[64];
                snprintf(field, sizeof field, "embedding[%zu]", i);
                return dt_err_set(err, DT_EINVAL, field, "not a finite number");
            }
    }
    return 0;
}

/* s without surrounding white space, as [*b, *b + *n). */
static void trim(const char *s, const char **b, size_t *n)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    *b = s;
    *n = len;
}

/* Case-insensitive match of [b, b+n) against name, where '-' and ' ' in the input stand for '_'. */
static bool name_eq(const char *b, size_t n, const char *name)
{
    if (strlen(name) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)b[i]);
        if (c == '-' || c == ' ') c = '_';
        if (c != name[i]) return false;
    }
    return true;
}

/* Copies [b, b+n) into out (cap bytes) for quoting in a message: control bytes and invalid UTF-8
 * become '?', and long input is cut at a character boundary with "...". */
static const char *echo(char *out, size_t cap, const char *b, size_t n)
{
    const unsigned char *u = (const unsigned char *)b;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i);
        if (o + (k ? k : 1) + 4 > cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || (k == 1 && (u[i] < 0x20 || u[i] == 0x7f))) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, b + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
    return out;
}

static const char *const side_names[] = {"demand", "achievement"};
static const char *const status_names[] = {"open", "closed"};
static const char *const mode_names[DT_MODE_COUNT] = {"transfer", "license", "open_license",
                                                      "joint_rd", "equity",  "consulting"};

int dt_side_parse(const char *s, dt_side *out, const char *field, dt_err *err)
{
    const char *b;
    size_t n;
    trim(s ? s : "", &b, &n);
    for (int i = 0; i < 2; i++)
        if (name_eq(b, n, side_names[i])) {
            *out = (dt_side)i;
            return 0;
        }
    char q[80];
    return dt_err_set(err, DT_EINVAL, field, "unknown side \"%s\" (valid: demand, achievement)",
                      echo(q, sizeof q, b, n));
}

int dt_status_parse(const char *s, dt_status *out, const char *field, dt_err *err)
{
    const char *b;
    size_t n;
    trim(s ? s : "", &b, &n);
    for (int i = 0; i < 2; i++)
        if (name_eq(b, n, status_names[i])) {
            *out = (dt_status)i;
            return 0;
        }
    char q[80];
    return dt_err_set(err, DT_EINVAL, field, "unknown status \"%s\" (valid: open, closed)",
                      echo(q, sizeof q, b, n));
}

int dt_mode_parse(const char *s, uint32_t *bit, const char *field, dt_err *err)
{
    const char *b;
    size_t n;
    trim(s ? s : "", &b, &n);
    for (int i = 0; i < DT_MODE_COUNT; i++)
        if (name_eq(b, n, mode_names[i])) {
            *bit = 1u << i;
            return 0;
        }
    char q[80];
    return dt_err_set(err, DT_EINVAL, field,
                      "unknown mode \"%s\" (valid: transfer, license, open_license, joint_rd, "
                      "equity, consulting)",
                      echo(q, sizeof q, b, n));
}

const char *dt_side_name(dt_side s)
{
    return (s == DT_DEMAND || s == DT_ACHIEVEMENT) ? side_names[s] : "unknown";
}

const char *dt_status_name(dt_status s)
{
    return (s == DT_OPEN || s == DT_CLOSED) ? status_names[s] : "unknown";
}

const char *dt_mode_name(uint32_t bit)
{
    for (int i = 0; i < DT_MODE_COUNT; i++)
        if (bit == 1u << i) return mode_names[i];
    return NULL;
}

const char *dt_record_tenant(const dt_record *r)
{
    return (r->tenant && r->tenant[0]) ? r->tenant : "public";
}
