/* codec.c - binary encoding of records and outcome events, and the checked writer/reader under
 * them (codec.h).
 *
 * Integers are written byte by byte in little-endian order, so the format does not depend on the
 * host. The reader never trusts a length: it compares it with the bytes left (and with the caller's
 * limit) before using it, and a count is checked against the smallest possible size of its elements
 * before anything is allocated, so a 20-byte payload can never ask for gigabytes.
 */
#include "codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"

/* ---- writer ---- */

void dt_codec_buf_init(dt_codec_buf *b)
{
    memset(b, 0, sizeof *b);
}

void dt_codec_buf_fini(dt_codec_buf *b)
{
    if (!b) return;
    free(b->data);
    dt_codec_buf_init(b);
}

void dt_codec_buf_reset(dt_codec_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

static int reserve(dt_codec_buf *b, size_t n)
{
    if (b->failed) return -b->failed;
    if (n <= b->cap - b->len) return 0;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = DT_ENOMEM;
        return -DT_ENOMEM;
    }
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = DT_ENOMEM;
        return -DT_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int put_le(dt_codec_buf *b, uint64_t v, int n)
{
    int rc = reserve(b, (size_t)n);
    if (rc) return rc;
    dt_le_store(b->data + b->len, v, n);
    b->len += (size_t)n;
    return 0;
}

int dt_codec_put_u8(dt_codec_buf *b, uint8_t v)
{
    return put_le(b, v, 1);
}

int dt_codec_put_u32(dt_codec_buf *b, uint32_t v)
{
    return put_le(b, v, 4);
}

int dt_codec_put_u64(dt_codec_buf *b, uint64_t v)
{
    return put_le(b, v, 8);
}

int dt_codec_put_i64(dt_codec_buf *b, int64_t v)
{
    return put_le(b, (uint64_t)v, 8);
}

int dt_codec_put_f32(dt_codec_buf *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_le(b, bits, 4);
}

int dt_codec_put_f32s(dt_codec_buf *b, const float *v, size_t n)
{
    if (n > SIZE_MAX / 4) return reserve(b, SIZE_MAX);
    int rc = reserve(b, n * 4);
    if (rc) return rc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n) memcpy(b->data + b->len, v, n * 4); /* the encoding is the little-endian bits */
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        dt_le_store(b->data + b->len + 4 * i, bits, 4);
    }
#endif
    b->len += n * 4;
    return 0;
}

int dt_codec_put_f64(dt_codec_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_le(b, bits, 8);
}

int dt_codec_put_raw(dt_codec_buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int dt_codec_put_bytes(dt_codec_buf *b, const void *p, size_t n)
{
    if (b->failed) return -b->failed;
    if (n >= DT_CODEC_ABSENT) {
        b->failed = DT_ELIMIT;
        return -DT_ELIMIT;
    }
    int rc = reserve(b, 4 + n);
    if (rc) return rc;
    dt_codec_put_u32(b, (uint32_t)n);
    return dt_codec_put_raw(b, p, n);
}

int dt_codec_put_str(dt_codec_buf *b, const char *s)
{
    if (!s) return dt_codec_put_u32(b, DT_CODEC_ABSENT);
    return dt_codec_put_bytes(b, s, strlen(s));
}

int dt_codec_buf_check(const dt_codec_buf *b, dt_err *err)
{
    if (!b->failed) return 0;
    if (b->failed == DT_ELIMIT)
        return dt_err_set(err, DT_ELIMIT, "payload", "a field is longer than %u bytes",
                          DT_CODEC_ABSENT - 1);
    return dt_err_set(err, b->failed, "payload", "out of memory while encoding (%zu bytes so far)",
                      b->len);
}

int dt_codec_buf_take(dt_codec_buf *b, uint8_t **data, size_t *len, dt_err *err)
{
    *data = NULL;
    *len = 0;
    int rc = dt_codec_buf_check(b, err);
    if (rc) {
        dt_codec_buf_fini(b);
        return rc;
    }
    if (!b->data && reserve(b, 1) != 0) {
        dt_codec_buf_fini(b);
        return dt_err_set(err, DT_ENOMEM, "payload", "out of memory");
    }
    *data = b->data;
    *len = b->len;
    dt_codec_buf_init(b);
    return 0;
}

/* ---- reader ---- */

void dt_codec_reader_init(dt_codec_reader *rd, const void *p, size_t len)
{
    rd->p = p;
    rd->len = p ? len : 0;
    rd->pos = 0;
    rd->failed = 0;
}

size_t dt_codec_reader_left(const dt_codec_reader *rd)
{
    return rd->len - rd->pos;
}

__attribute__((format(printf, 5, 6))) static int fail(dt_codec_reader *rd, int code, dt_err *err,
                                                      const char *field, const char *fmt, ...)
{
    rd->failed = code;
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dt_err_set(err, code, field, "%s", msg);
}

static int need(dt_codec_reader *rd, size_t n, const char *field, dt_err *err)
{
    if (rd->failed) return -rd->failed;
    if (n <= rd->len - rd->pos) return 0;
    rd->failed = DT_ECORRUPT;
    return dt_err_set(err, DT_ECORRUPT, field, "truncated: need %zu bytes at offset %zu, %zu left",
                      n, rd->pos, rd->len - rd->pos);
}

static int get_le(dt_codec_reader *rd, uint64_t *out, int n, const char *field, dt_err *err)
{
    int rc = need(rd, (size_t)n, field, err);
    if (rc) return rc;
    *out = dt_le_load(rd->p + rd->pos, n);
    rd->pos += (size_t)n;
    return 0;
}

int dt_codec_get_u8(dt_codec_reader *rd, uint8_t *out, const char *field, dt_err *err)
{
    uint64_t v;
    int rc = get_le(rd, &v, 1, field, err);
    if (!rc) *out = (uint8_t)v;
    return rc;
}

int dt_codec_get_u32(dt_codec_reader *rd, uint32_t *out, const char *field, dt_err *err)
{
    uint64_t v;
    int rc = get_le(rd, &v, 4, field, err);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

int dt_codec_get_u64(dt_codec_reader *rd, uint64_t *out, const char *field, dt_err *err)
{
    return get_le(rd, out, 8, field, err);
}

int dt_codec_get_i64(dt_codec_reader *rd, int64_t *out, const char *field, dt_err *err)
{
    uint64_t v;
    int rc = get_le(rd, &v, 8, field, err);
    if (!rc) *out = (int64_t)v;
    return rc;
}

int dt_codec_get_f32(dt_codec_reader *rd, float *out, const char *field, dt_err *err)
{
    uint64_t v;
    int rc = get_le(rd, &v, 4, field, err);
    if (!rc) {
        uint32_t bits = (uint32_t)v;
        memcpy(out, &bits, sizeof bits);
    }
    return rc;
}

int dt_codec_get_f32s(dt_codec_reader *rd, float *out, size_t n, const char *field, dt_err *err)
{
    if (n > SIZE_MAX / 4) return need(rd, SIZE_MAX, field, err);
    int rc = need(rd, n * 4, field, err);
    if (rc) return rc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n) memcpy(out, rd->p + rd->pos, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)dt_le_load(rd->p + rd->pos + 4 * i, 4);
        memcpy(&out[i], &bits, sizeof bits);
    }
#endif
    rd->pos += n * 4;
    return 0;
}

int dt_codec_get_f64(dt_codec_reader *rd, double *out, const char *field, dt_err *err)
{
    uint64_t v;
    int rc = get_le(rd, &v, 8, field, err);
    if (!rc) memcpy(out, &v, sizeof v);
    return rc;
}

int dt_codec_get_raw(dt_codec_reader *rd, const uint8_t **out, size_t n, const char *field,
                     dt_err *err)
{
    int rc = need(rd, n, field, err);
    if (rc) return rc;
    *out = rd->p + rd->pos;
    rd->pos += n;
    return 0;
}

/* Reads a u32 length prefix; *absent is set for DT_CODEC_ABSENT. Checks it against max and the
 * bytes left, reporting the offset of the prefix itself. */
static int get_len(dt_codec_reader *rd, uint32_t *n, bool *absent, size_t max, const char *field,
                   dt_err *err)
{
    size_t at = rd->pos;
    int rc = dt_codec_get_u32(rd, n, field, err);
    if (rc) return rc;
    *absent = *n == DT_CODEC_ABSENT;
    if (*absent) return 0;
    if (*n > max)
        return fail(rd, DT_ECORRUPT, err, field,
                    "length %u at offset %zu exceeds the limit of %zu bytes", *n, at, max);
    if (*n > rd->len - rd->pos)
        return fail(rd, DT_ECORRUPT, err, field, "length %u points past the end (%zu bytes left)",
                    *n, rd->len - rd->pos);
    return 0;
}

int dt_codec_get_bytes(dt_codec_reader *rd, const uint8_t **out, size_t *n, size_t max,
                       const char *field, dt_err *err)
{
    uint32_t len;
    bool absent;
    size_t at = rd->pos;
    int rc = get_len(rd, &len, &absent, max, field, err);
    if (rc) return rc;
    if (absent)
        return fail(rd, DT_ECORRUPT, err, field,
                    "absent marker at offset %zu where bytes are required", at);
    *out = rd->p + rd->pos;
    *n = len;
    rd->pos += len;
    return 0;
}

int dt_codec_get_str(dt_codec_reader *rd, char **out, size_t max, const char *field, dt_err *err)
{
    uint32_t len;
    bool absent;
    int rc = get_len(rd, &len, &absent, max, field, err);
    if (rc) return rc;
    if (absent) {
        *out = NULL;
        return 0;
    }
    const uint8_t *s = rd->p + rd->pos;
    const uint8_t *nul = memchr(s, 0, len);
    if (nul)
        return fail(rd, DT_ECORRUPT, err, field,
                    "NUL byte inside a string at offset %zu (length %u)",
                    rd->pos + (size_t)(nul - s), len);
    char *c = malloc((size_t)len + 1);
    if (!c) {
        rd->failed = DT_ENOMEM;
        return dt_err_set(err, DT_ENOMEM, field, "out of memory for a %u-byte string", len);
    }
    memcpy(c, s, len);
    c[len] = '\0';
    rd->pos += len;
    *out = c;
    return 0;
}

int dt_codec_get_count(dt_codec_reader *rd, uint32_t *out, uint32_t max, size_t min_elem_bytes,
                       const char *field, dt_err *err)
{
    size_t at = rd->pos;
    uint32_t n;
    int rc = dt_codec_get_u32(rd, &n, field, err);
    if (rc) return rc;
    if (n > max)
        return fail(rd, DT_ECORRUPT, err, field, "count %u at offset %zu exceeds the limit of %u",
                    n, at, max);
    if (min_elem_bytes == 0) min_elem_bytes = 1;
    if ((size_t)n > (rd->len - rd->pos) / min_elem_bytes)
        return fail(rd, DT_ECORRUPT, err, field, "count %u cannot fit in the %zu bytes left", n,
                    rd->len - rd->pos);
    *out = n;
    return 0;
}

int dt_codec_reader_end(dt_codec_reader *rd, const char *what, dt_err *err)
{
    if (rd->failed) return -rd->failed;
    if (rd->pos == rd->len) return 0;
    return fail(rd, DT_ECORRUPT, err, what, "%zu trailing bytes at offset %zu", rd->len - rd->pos,
                rd->pos);
}

/* ---- records ---- */

static int check_str(const char *s, size_t max, bool required, const char *field, dt_err *err)
{
    if (!s) {
        if (required) return dt_err_set(err, DT_EINVAL, field, "is required");
        return 0;
    }
    size_t n = strlen(s);
    if (n > max)
        return dt_err_set(err, DT_ELIMIT, field, "%zu bytes, more than the limit of %zu", n, max);
    return 0;
}

static int check_list(char *const *v, size_t n, const char *name, dt_err *err)
{
    if (n > DT_LIST_MAX)
        return dt_err_set(err, DT_ELIMIT, name, "%zu entries, more than the limit of %d", n,
                          DT_LIST_MAX);
    if (n && !v) return dt_err_set(err, DT_EINVAL, name, "%zu entries but no array", n);
    char field[40];
    for (size_t i = 0; i < n; i++) {
        snprintf(field, sizeof field, "%s[%zu]", name, i);
        if (!v[i]) return dt_err_set(err, DT_EINVAL, field, "is NULL");
        int rc = check_str(v[i], DT_SHORT_MAX, true, field, err);
        if (rc) return rc;
    }
    return 0;
}

static int check_record(const dt_record *r, dt_err *err)
{
    int rc;
    if ((rc = check_str(r->tenant, DT_TENANT_MAX, false, "tenant", err))) return rc;
    if ((rc = check_str(r->id, DT_ID_MAX, true, "id", err))) return rc;
    if (!r->id[0]) return dt_err_set(err, DT_EINVAL, "id", "is empty");
    if ((rc = check_str(r->title, DT_TITLE_MAX, false, "title", err))) return rc;
    if ((rc = check_str(r->text, DT_TEXT_MAX, false, "text", err))) return rc;
    if ((rc = check_str(r->org, DT_SHORT_MAX, false, "org", err))) return rc;
    if ((rc = check_str(r->field, DT_SHORT_MAX, false, "field", err))) return rc;
    if ((rc = check_str(r->region, DT_SHORT_MAX, false, "region", err))) return rc;
    if ((rc = check_list(r->keywords, r->n_keywords, "keywords", err))) return rc;
    if ((rc = check_list(r->tags, r->n_tags, "tags", err))) return rc;
    if (r->side != DT_DEMAND && r->side != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "side", "unknown side %d", (int)r->side);
    if (r->status != DT_OPEN && r->status != DT_CLOSED)
        return dt_err_set(err, DT_EINVAL, "status", "unknown status %d", (int)r->status);
    if (r->trl < 0 || r->trl > 9)
        return dt_err_set(err, DT_EINVAL, "trl", "%d is outside 0..9", r->trl);
    if (r->modes >> DT_MODE_COUNT)
        return dt_err_set(err, DT_EINVAL, "modes", "unknown mode bits 0x%x",
                          (unsigned)(r->modes >> DT_MODE_COUNT << DT_MODE_COUNT));
    if (r->dim > DT_DIM_MAX)
        return dt_err_set(err, DT_ELIMIT, "embedding", "%zu dimensions, more than the limit of %d",
                          r->dim, DT_DIM_MAX);
    if (r->dim && !r->embedding)
        return dt_err_set(err, DT_EINVAL, "embedding", "dim is %zu but there is no vector", r->dim);
    return 0;
}

static void put_list(dt_codec_buf *b, char *const *v, size_t n)
{
    dt_codec_put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        dt_codec_put_str(b, v[i]);
}

int dt_codec_put_record(dt_codec_buf *b, const dt_record *r, dt_err *err)
{
    int rc = check_record(r, err);
    if (rc) return rc;
    if (b->failed) return dt_codec_buf_check(b, err);
    size_t start = b->len;
    dt_codec_put_u8(b, DT_CODEC_RECORD_VERSION);
    dt_codec_put_u8(b, (uint8_t)r->side);
    dt_codec_put_u8(b, (uint8_t)r->status);
    dt_codec_put_u8(b, (uint8_t)r->trl);
    dt_codec_put_u32(b, r->modes);
    dt_codec_put_f64(b, r->price_min);
    dt_codec_put_f64(b, r->price_max);
    dt_codec_put_i64(b, r->updated_at);
    dt_codec_put_str(b, r->tenant);
    dt_codec_put_str(b, r->id);
    dt_codec_put_str(b, r->title);
    dt_codec_put_str(b, r->text);
    put_list(b, r->keywords, r->n_keywords);
    dt_codec_put_str(b, r->org);
    dt_codec_put_str(b, r->field);
    dt_codec_put_str(b, r->region);
    put_list(b, r->tags, r->n_tags);
    size_t dim = r->embedding ? r->dim : 0;
    dt_codec_put_u32(b, (uint32_t)dim);
    if (reserve(b, dim * 4) == 0) {
        for (size_t i = 0; i < dim; i++)
            dt_codec_put_f32(b, r->embedding[i]);
    }
    rc = dt_codec_buf_check(b, err);
    if (rc && b->len > start) b->len = start;
    return rc;
}

static int get_list(dt_codec_reader *rd, char ***out, size_t *n_out, const char *name, dt_err *err)
{
    uint32_t n;
    int rc = dt_codec_get_count(rd, &n, DT_LIST_MAX, 4, name, err);
    if (rc) return rc;
    if (n == 0) return 0;
    char **v = calloc(n, sizeof *v);
    if (!v) {
        rd->failed = DT_ENOMEM;
        return dt_err_set(err, DT_ENOMEM, name, "out of memory for %u entries", n);
    }
    *out = v;
    char field[40];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(field, sizeof field, "%s[%u]", name, i);
        size_t at = rd->pos;
        rc = dt_codec_get_str(rd, &v[i], DT_SHORT_MAX, field, err);
        if (rc) return rc;
        *n_out = (size_t)i + 1;
        if (!v[i])
            return fail(rd, DT_ECORRUPT, err, field, "absent entry at offset %zu in a list", at);
    }
    return 0;
}

static int get_enum(dt_codec_reader *rd, uint8_t *v, uint8_t max, const char *field, dt_err *err)
{
    size_t at = rd->pos;
    int rc = dt_codec_get_u8(rd, v, field, err);
    if (rc) return rc;
    if (*v > max)
        return fail(rd, DT_ECORRUPT, err, field, "value %u at offset %zu is out of range 0..%u", *v,
                    at, max);
    return 0;
}

static int get_record(dt_codec_reader *rd, dt_record *r, dt_err *err)
{
    uint8_t version, side, status, trl;
    size_t at = rd->pos;
    int rc = dt_codec_get_u8(rd, &version, "record", err);
    if (rc) return rc;
    if (version != DT_CODEC_RECORD_VERSION)
        return fail(rd, DT_ECORRUPT, err, "record",
                    "unsupported record encoding version %u at offset %zu (this build reads %d)",
                    version, at, DT_CODEC_RECORD_VERSION);
    if ((rc = get_enum(rd, &side, DT_ACHIEVEMENT, "side", err))) return rc;
    if ((rc = get_enum(rd, &status, DT_CLOSED, "status", err))) return rc;
    if ((rc = get_enum(rd, &trl, 9, "trl", err))) return rc;
    r->side = (dt_side)side;
    r->status = (dt_status)status;
    r->trl = trl;
    at = rd->pos;
    if ((rc = dt_codec_get_u32(rd, &r->modes, "modes", err))) return rc;
    if (r->modes >> DT_MODE_COUNT)
        return fail(rd, DT_ECORRUPT, err, "modes", "unknown mode bits 0x%x at offset %zu",
                    (unsigned)(r->modes >> DT_MODE_COUNT << DT_MODE_COUNT), at);
    if ((rc = dt_codec_get_f64(rd, &r->price_min, "price_min", err))) return rc;
    if ((rc = dt_codec_get_f64(rd, &r->price_max, "price_max", err))) return rc;
    if ((rc = dt_codec_get_i64(rd, &r->updated_at, "updated_at", err))) return rc;
    if ((rc = dt_codec_get_str(rd, &r->tenant, DT_TENANT_MAX, "tenant", err))) return rc;
    at = rd->pos;
    if ((rc = dt_codec_get_str(rd, &r->id, DT_ID_MAX, "id", err))) return rc;
    if (!r->id || !r->id[0])
        return fail(rd, DT_ECORRUPT, err, "id", "missing or empty id at offset %zu", at);
    if ((rc = dt_codec_get_str(rd, &r->title, DT_TITLE_MAX, "title", err))) return rc;
    if ((rc = dt_codec_get_str(rd, &r->text, DT_TEXT_MAX, "text", err))) return rc;
    if ((rc = get_list(rd, &r->keywords, &r->n_keywords, "keywords", err))) return rc;
    if ((rc = dt_codec_get_str(rd, &r->org, DT_SHORT_MAX, "org", err))) return rc;
    if ((rc = dt_codec_get_str(rd, &r->field, DT_SHORT_MAX, "field", err))) return rc;
    if ((rc = dt_codec_get_str(rd, &r->region, DT_SHORT_MAX, "region", err))) return rc;
    if ((rc = get_list(rd, &r->tags, &r->n_tags, "tags", err))) return rc;
    uint32_t dim;
    if ((rc = dt_codec_get_count(rd, &dim, DT_DIM_MAX, 4, "embedding", err))) return rc;
    if (dim) {
        r->embedding = malloc((size_t)dim * sizeof *r->embedding);
        if (!r->embedding) {
            rd->failed = DT_ENOMEM;
            return dt_err_set(err, DT_ENOMEM, "embedding", "out of memory for %u floats", dim);
        }
        r->dim = dim;
        for (uint32_t i = 0; i < dim; i++)
            dt_codec_get_f32(rd, &r->embedding[i], "embedding", err);
    }
    return 0;
}

int dt_codec_get_record(dt_codec_reader *rd, dt_record *out, dt_err *err)
{
    dt_record_init(out);
    int rc = get_record(rd, out, err);
    if (rc) dt_record_free(out);
    return rc;
}

int dt_codec_encode_record(const dt_record *r, uint8_t **buf, size_t *len, dt_err *err)
{
    *buf = NULL;
    *len = 0;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    int rc = dt_codec_put_record(&b, r, err);
    if (rc) {
        dt_codec_buf_fini(&b);
        return rc;
    }
    return dt_codec_buf_take(&b, buf, len, err);
}

int dt_codec_decode_record(const uint8_t *p, size_t len, dt_record *out, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    int rc = dt_codec_get_record(&rd, out, err);
    if (rc) return rc;
    rc = dt_codec_reader_end(&rd, "record", err);
    if (rc) dt_record_free(out);
    return rc;
}

/* ---- outcome events ---- */

static int check_outcome_id(const char *id, const char *field, dt_err *err)
{
    int rc = check_str(id, DT_ID_MAX, true, field, err);
    if (rc) return rc;
    if (!id[0]) return dt_err_set(err, DT_EINVAL, field, "is empty");
    return 0;
}

int dt_codec_put_outcome(dt_codec_buf *b, const dt_outcome_event *ev, dt_err *err)
{
    int rc = check_outcome_id(ev->demand_id, "demand_id", err);
    if (!rc) rc = check_outcome_id(ev->achievement_id, "achievement_id", err);
    if (rc) return rc;
    if ((unsigned)ev->kind >= DT_OUTCOME_KIND_COUNT)
        return dt_err_set(err, DT_EINVAL, "kind", "unknown outcome kind %d", (int)ev->kind);
    if ((unsigned)ev->reason >= DT_OUTCOME_REASON_COUNT)
        return dt_err_set(err, DT_EINVAL, "reason", "unknown decline reason %d", (int)ev->reason);
    if (b->failed) return dt_codec_buf_check(b, err);
    size_t start = b->len;
    dt_codec_put_u8(b, DT_CODEC_OUTCOME_VERSION);
    dt_codec_put_u8(b, (uint8_t)ev->kind);
    dt_codec_put_u8(b, (uint8_t)ev->reason);
    dt_codec_put_str(b, ev->demand_id);
    dt_codec_put_str(b, ev->achievement_id);
    dt_codec_put_f64(b, ev->amount);
    dt_codec_put_i64(b, ev->at);
    rc = dt_codec_buf_check(b, err);
    if (rc && b->len > start) b->len = start;
    return rc;
}

static int get_outcome_id(dt_codec_reader *rd, const char **out, const char *field, dt_err *err)
{
    size_t at = rd->pos;
    char *s = NULL;
    int rc = dt_codec_get_str(rd, &s, DT_ID_MAX, field, err);
    if (rc) return rc;
    *out = s;
    if (!s || !s[0])
        return fail(rd, DT_ECORRUPT, err, field, "missing or empty id at offset %zu", at);
    return 0;
}

int dt_codec_get_outcome(dt_codec_reader *rd, dt_outcome_event *out, dt_err *err)
{
    dt_outcome_event_init(out);
    uint8_t version, kind, reason;
    size_t at = rd->pos;
    int rc = dt_codec_get_u8(rd, &version, "outcome", err);
    if (!rc && version != DT_CODEC_OUTCOME_VERSION)
        rc = fail(rd, DT_ECORRUPT, err, "outcome",
                  "unsupported outcome encoding version %u at offset %zu (this build reads %d)",
                  version, at, DT_CODEC_OUTCOME_VERSION);
    if (!rc) rc = get_enum(rd, &kind, DT_OUTCOME_KIND_COUNT - 1, "kind", err);
    if (!rc) rc = get_enum(rd, &reason, DT_OUTCOME_REASON_COUNT - 1, "reason", err);
    if (!rc) rc = get_outcome_id(rd, &out->demand_id, "demand_id", err);
    if (!rc) rc = get_outcome_id(rd, &out->achievement_id, "achievement_id", err);
    if (!rc) rc = dt_codec_get_f64(rd, &out->amount, "amount", err);
    if (!rc) rc = dt_codec_get_i64(rd, &out->at, "at", err);
    if (rc) {
        dt_codec_outcome_fini(out);
        return rc;
    }
    out->kind = (dt_outcome_kind)kind;
    out->reason = (dt_outcome_reason)reason;
    return 0;
}

void dt_codec_outcome_fini(dt_outcome_event *ev)
{
    free((void *)ev->demand_id);
    free((void *)ev->achievement_id);
    ev->demand_id = NULL;
    ev->achievement_id = NULL;
}
