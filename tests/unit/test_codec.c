/* test_codec.c - the record and outcome event encodings and the checked writer/reader
 * (store/codec.c).
 *
 * Round trips of random records compared field by field (bit patterns for floats), the byte layout
 * against docs/durability.md, encoder refusals, and hostile input: every truncation and every byte
 * flip of valid encodings, random bytes, lengths and counts pointing past the end. Run under ASan
 * to catch over-reads and leaks on the error paths.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rng_next(s) % n) : 0;
}

/* A string of n random non-NUL bytes. */
static char *rand_str(uint64_t *s, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(1 + rng_below(s, 255));
    p[n] = '\0';
    return p;
}

/* NULL, "", a short string, or (rarely) one exactly at the limit. */
static char *rand_opt_str(uint64_t *s, size_t max)
{
    switch (rng_below(s, 6)) {
    case 0:
        return NULL;
    case 1:
        return rand_str(s, 0);
    case 2:
        return rand_str(s, max);
    default:
        return rand_str(s, 1 + rng_below(s, max < 40 ? max : 40));
    }
}

static char **rand_list(uint64_t *s, size_t *n, bool big)
{
    *n = big && rng_below(s, 5) == 0 ? DT_LIST_MAX : rng_below(s, 6);
    if (*n == 0) return NULL;
    char **v = calloc(*n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < *n; i++)
        v[i] = rand_str(s, big && rng_below(s, 8) == 0 ? DT_SHORT_MAX : rng_below(s, 12));
    return v;
}

static double rand_double(uint64_t *s)
{
    switch (rng_below(s, 5)) {
    case 0:
        return NAN;
    case 1:
        return -0.0;
    case 2:
        return INFINITY;
    default: {
        uint64_t bits = rng_next(s);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    }
}

/* A random valid record; big ones reach every dt.h limit now and then. */
static void rand_record(uint64_t *s, dt_record *r, bool big)
{
    dt_record_init(r);
    r->tenant = rand_opt_str(s, DT_TENANT_MAX);
    r->id = rand_str(s, 1 + rng_below(s, DT_ID_MAX));
    r->side = (dt_side)rng_below(s, 2);
    r->title = rand_opt_str(s, DT_TITLE_MAX);
    r->text = big && rng_below(s, 50) == 0 ? rand_str(s, DT_TEXT_MAX) : rand_opt_str(s, 300);
    r->keywords = rand_list(s, &r->n_keywords, big);
    r->org = rand_opt_str(s, DT_SHORT_MAX);
    r->field = rand_opt_str(s, DT_SHORT_MAX);
    r->region = rand_opt_str(s, DT_SHORT_MAX);
    r->trl = (int)rng_below(s, 10);
    r->modes = (uint32_t)rng_below(s, 1u << DT_MODE_COUNT);
    r->price_min = rand_double(s);
    r->price_max = rand_double(s);
    r->tags = rand_list(s, &r->n_tags, big);
    r->status = (dt_status)rng_below(s, 2);
    r->updated_at = (int64_t)rng_next(s);
    size_t k = rng_below(s, 4);
    if (k) {
        r->dim = big && k == 3 ? DT_DIM_MAX : 1 + rng_below(s, 64);
        r->embedding = malloc(r->dim * sizeof *r->embedding);
        assert_non_null(r->embedding);
        for (size_t i = 0; i < r->dim; i++) {
            uint32_t bits = (uint32_t)rng_next(s);
            memcpy(&r->embedding[i], &bits, sizeof bits);
        }
    }
}

static void assert_same_str(const char *a, const char *b)
{
    if (!a || !b) {
        assert_ptr_equal(a, b);
        return;
    }
    assert_string_equal(a, b);
}

static void assert_same_bits(double a, double b)
{
    assert_memory_equal(&a, &b, sizeof a);
}

static void assert_same_record(const dt_record *a, const dt_record *b)
{
    assert_same_str(a->tenant, b->tenant);
    assert_same_str(a->id, b->id);
    assert_int_equal(a->side, b->side);
    assert_same_str(a->title, b->title);
    assert_same_str(a->text, b->text);
    assert_int_equal(a->n_keywords, b->n_keywords);
    for (size_t i = 0; i < a->n_keywords; i++)
        assert_string_equal(a->keywords[i], b->keywords[i]);
    assert_same_str(a->org, b->org);
    assert_same_str(a->field, b->field);
    assert_same_str(a->region, b->region);
    assert_int_equal(a->trl, b->trl);
    assert_int_equal(a->modes, b->modes);
    assert_same_bits(a->price_min, b->price_min);
    assert_same_bits(a->price_max, b->price_max);
    assert_int_equal(a->n_tags, b->n_tags);
    for (size_t i = 0; i < a->n_tags; i++)
        assert_string_equal(a->tags[i], b->tags[i]);
    assert_int_equal(a->status, b->status);
    assert_true(a->updated_at == b->updated_at);
    size_t da = a->embedding ? a->dim : 0, db = b->embedding ? b->dim : 0;
    assert_int_equal(da, db);
    if (da) assert_memory_equal(a->embedding, b->embedding, da * sizeof *a->embedding);
}

static void encode_ok(const dt_record *r, uint8_t **buf, size_t *len)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_codec_encode_record(r, buf, len, &err);
    if (rc) fail_msg("encode: %s: %s", err.field, err.msg);
}

/* ---- round trips ---- */

static void test_random_records_round_trip_and_reencode_identically(void **state)
{
    (void)state;
    uint64_t s = 1;
    for (int i = 0; i < 1500; i++) {
        dt_record r, back;
        rand_record(&s, &r, true);
        uint8_t *buf, *buf2;
        size_t len, len2;
        encode_ok(&r, &buf, &len);
        dt_err err = DT_ERR_INIT;
        int rc = dt_codec_decode_record(buf, len, &back, &err);
        if (rc) fail_msg("decode of record %d: %s: %s", i, err.field, err.msg);
        assert_same_record(&r, &back);
        encode_ok(&back, &buf2, &len2);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        free(buf);
        free(buf2);
        dt_record_free(&r);
        dt_record_free(&back);
    }
}

static void test_absent_and_empty_strings_stay_distinct(void **state)
{
    (void)state;
    dt_record r, back;
    dt_record_init(&r);
    r.id = strdup("x");
    r.tenant = NULL;
    r.title = strdup("");
    r.text = NULL;
    r.org = strdup("");
    uint8_t *buf;
    size_t len;
    encode_ok(&r, &buf, &len);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_decode_record(buf, len, &back, &err), 0);
    assert_null(back.tenant);
    assert_non_null(back.title);
    assert_string_equal(back.title, "");
    assert_null(back.text);
    assert_non_null(back.org);
    assert_string_equal(back.org, "");
    assert_null(back.field);
    assert_true(isnan(back.price_min) && isnan(back.price_max));
    assert_null(back.embedding);
    assert_int_equal(back.dim, 0);
    assert_null(back.keywords);
    assert_int_equal(back.n_keywords, 0);
    free(buf);
    dt_record_free(&r);
    dt_record_free(&back);
}

/* The bytes of a minimal record, written out from the layout in docs/durability.md. */
static void test_minimal_record_matches_documented_layout(void **state)
{
    (void)state;
    dt_record r;
    dt_record_init(&r);
    r.id = strdup("ab");
    r.side = DT_ACHIEVEMENT;
    r.status = DT_CLOSED;
    r.trl = 7;
    r.modes = DT_MODE_LICENSE | DT_MODE_EQUITY; /* 0x12 */
    r.price_min = 1.5;                          /* 0x3FF8000000000000 */
    r.price_max = NAN;
    r.updated_at = -2;
    r.tags = calloc(1, sizeof *r.tags);
    r.tags[0] = strdup("t");
    r.n_tags = 1;
    r.dim = 1;
    r.embedding = malloc(sizeof(float));
    r.embedding[0] = 1.0f; /* 0x3F800000 */
    uint64_t nan_bits;
    double nan = r.price_max;
    memcpy(&nan_bits, &nan, sizeof nan_bits);
    /* clang-format off */
    uint8_t want[] = {
        1, 1, 1, 7,                                     /* version, side, status, trl */
        0x12, 0, 0, 0,                                  /* modes */
        0, 0, 0, 0, 0, 0, 0xF8, 0x3F,                   /* price_min */
        (uint8_t)nan_bits, (uint8_t)(nan_bits >> 8), (uint8_t)(nan_bits >> 16),
        (uint8_t)(nan_bits >> 24), (uint8_t)(nan_bits >> 32), (uint8_t)(nan_bits >> 40),
        (uint8_t)(nan_bits >> 48), (uint8_t)(nan_bits >> 56), /* price_max */
        0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* updated_at */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* tenant absent */
        2, 0, 0, 0, 'a', 'b',                           /* id */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* title absent */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* text absent */
        0, 0, 0, 0,                                     /* no keywords */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* org */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* field */
        0xFF, 0xFF, 0xFF, 0xFF,                         /* region */
        1, 0, 0, 0, 1, 0, 0, 0, 't',                    /* tags */
        1, 0, 0, 0, 0, 0, 0x80, 0x3F,                   /* embedding */
    };
    /* clang-format on */
    uint8_t *buf;
    size_t len;
    encode_ok(&r, &buf, &len);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    free(buf);
    dt_record_free(&r);
}

static void test_fields_at_their_limits_round_trip(void **state)
{
    (void)state;
    uint64_t s = 7;
    dt_record r, back;
    dt_record_init(&r);
    r.tenant = rand_str(&s, DT_TENANT_MAX);
    r.id = rand_str(&s, DT_ID_MAX);
    r.title = rand_str(&s, DT_TITLE_MAX);
    r.text = rand_str(&s, DT_TEXT_MAX);
    r.n_keywords = DT_LIST_MAX;
    r.keywords = calloc(DT_LIST_MAX, sizeof *r.keywords);
    for (size_t i = 0; i < DT_LIST_MAX; i++)
        r.keywords[i] = rand_str(&s, DT_SHORT_MAX);
    r.dim = DT_DIM_MAX;
    r.embedding = calloc(DT_DIM_MAX, sizeof(float));
    uint8_t *buf;
    size_t len;
    encode_ok(&r, &buf, &len);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_decode_record(buf, len, &back, &err), 0);
    assert_same_record(&r, &back);
    free(buf);
    dt_record_free(&r);
    dt_record_free(&back);
}

/* ---- encoder refusals ---- */

static void expect_refusal(dt_record *r, int code, const char *field)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    assert_int_equal(dt_codec_put_u32(&b, 0xAABBCCDD), 0);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_put_record(&b, r, &err), -code);
    assert_string_equal(err.field, field);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(b.len, 4);
    assert_int_equal(b.failed, 0);
    dt_codec_buf_fini(&b);
}

static void test_encoder_refuses_what_the_decoder_would_refuse(void **state)
{
    (void)state;
    uint64_t s = 3;
    dt_record r;
    dt_record_init(&r);
    expect_refusal(&r, DT_EINVAL, "id");
    r.id = strdup("");
    expect_refusal(&r, DT_EINVAL, "id");
    free(r.id);
    r.id = rand_str(&s, DT_ID_MAX + 1);
    expect_refusal(&r, DT_ELIMIT, "id");
    free(r.id);
    r.id = strdup("ok");
    r.title = rand_str(&s, DT_TITLE_MAX + 1);
    expect_refusal(&r, DT_ELIMIT, "title");
    free(r.title);
    r.title = NULL;
    r.n_keywords = 2;
    r.keywords = calloc(2, sizeof *r.keywords);
    r.keywords[0] = strdup("a");
    expect_refusal(&r, DT_EINVAL, "keywords[1]");
    r.keywords[1] = rand_str(&s, DT_SHORT_MAX + 1);
    expect_refusal(&r, DT_ELIMIT, "keywords[1]");
    dt_record_free(&r);
    r.id = strdup("ok");
    r.n_tags = DT_LIST_MAX + 1;
    r.tags = calloc(r.n_tags, sizeof *r.tags);
    for (size_t i = 0; i < r.n_tags; i++)
        r.tags[i] = strdup("t");
    expect_refusal(&r, DT_ELIMIT, "tags");
    dt_record_free(&r);
    r.id = strdup("ok");
    r.trl = 10;
    expect_refusal(&r, DT_EINVAL, "trl");
    r.trl = -1;
    expect_refusal(&r, DT_EINVAL, "trl");
    r.trl = 0;
    r.modes = 1u << DT_MODE_COUNT;
    expect_refusal(&r, DT_EINVAL, "modes");
    r.modes = 0;
    r.side = (dt_side)2;
    expect_refusal(&r, DT_EINVAL, "side");
    r.side = DT_DEMAND;
    r.status = (dt_status)5;
    expect_refusal(&r, DT_EINVAL, "status");
    r.status = DT_OPEN;
    r.dim = DT_DIM_MAX + 1;
    r.embedding = calloc(r.dim, sizeof(float));
    expect_refusal(&r, DT_ELIMIT, "embedding");
    dt_record_free(&r);
}

/* ---- hostile input ---- */

/* Decodes p; on success the record must re-encode to exactly p (the encoding is canonical, so
 * nothing was silently altered). */
static int decode_checked(const uint8_t *p, size_t len, dt_err *err)
{
    dt_record r;
    int rc = dt_codec_decode_record(p, len, &r, err);
    if (rc) {
        assert_true(rc == -DT_ECORRUPT || rc == -DT_ENOMEM);
        assert_true(err->msg[0] != '\0');
        /* a failed decode leaves an empty record */
        assert_null(r.id);
        assert_null(r.keywords);
        assert_null(r.embedding);
        return rc;
    }
    uint8_t *buf;
    size_t blen;
    encode_ok(&r, &buf, &blen);
    assert_int_equal(blen, len);
    assert_memory_equal(buf, p, len);
    free(buf);
    dt_record_free(&r);
    return 0;
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    uint64_t s = 11;
    for (int k = 0; k < 42; k++) {
        dt_record r;
        rand_record(&s, &r, k >= 40);
        uint8_t *buf;
        size_t len;
        encode_ok(&r, &buf, &len);
        size_t step = len > 4000 ? 97 : 1;
        for (size_t cut = 0; cut < len; cut += step) {
            /* a copy of exactly cut bytes, so ASan sees any read past it */
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, buf, cut);
            dt_err err = DT_ERR_INIT;
            assert_int_equal(decode_checked(p, cut, &err), -DT_ECORRUPT);
            free(p);
        }
        /* one byte too many */
        uint8_t *p = malloc(len + 1);
        memcpy(p, buf, len);
        p[len] = 0;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(decode_checked(p, len + 1, &err), -DT_ECORRUPT);
        assert_non_null(strstr(err.msg, "trailing"));
        free(p);
        free(buf);
        dt_record_free(&r);
    }
}

static void test_every_byte_flip_is_refused_or_decodes_canonically(void **state)
{
    (void)state;
    uint64_t s = 13;
    size_t refused = 0, accepted = 0;
    for (int k = 0; k < 27; k++) {
        dt_record r;
        rand_record(&s, &r, k >= 25);
        uint8_t *buf;
        size_t len;
        encode_ok(&r, &buf, &len);
        uint8_t *p = malloc(len);
        size_t step = len > 4000 ? 101 : 1;
        for (size_t i = 0; i < len; i += step) {
            static const uint8_t masks[] = {0x01, 0x80, 0xFF, 0x40};
            for (size_t m = 0; m < sizeof masks; m++) {
                memcpy(p, buf, len);
                p[i] ^= masks[m];
                dt_err err = DT_ERR_INIT;
                if (decode_checked(p, len, &err) == 0)
                    accepted++;
                else
                    refused++;
            }
        }
        free(p);
        free(buf);
        dt_record_free(&r);
    }
    /* flips in string bytes and numbers decode (to a different record); flips in lengths do not */
    assert_true(refused > 0 && accepted > 0);
}

static void test_random_bytes_never_crash(void **state)
{
    (void)state;
    uint64_t s = 17;
    for (int k = 0; k < 100000; k++) {
        size_t len = rng_below(&s, 200);
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rng_next(&s);
        /* half the time start like a real record so decoding gets past the first fields */
        if (len >= 4 && (k & 1)) {
            p[0] = 1;
            p[1] &= 1;
            p[2] &= 1;
            p[3] %= 10;
        }
        if (len >= 8 && (k & 2)) p[4] &= 0x3F, p[5] = p[6] = p[7] = 0;
        dt_err err = DT_ERR_INIT;
        decode_checked(p, len, &err);
        free(p);
    }
}

/* The fixed part of a record (version .. updated_at), then whatever the test appends. */
static void put_head(dt_codec_buf *b)
{
    dt_codec_put_u8(b, 1);
    dt_codec_put_u8(b, 0);
    dt_codec_put_u8(b, 0);
    dt_codec_put_u8(b, 0);
    dt_codec_put_u32(b, 0);
    dt_codec_put_f64(b, NAN);
    dt_codec_put_f64(b, NAN);
    dt_codec_put_i64(b, 0);
}

static void expect_corrupt(dt_codec_buf *b, const char *field, const char *needle)
{
    dt_err err = DT_ERR_INIT;
    dt_record r;
    assert_int_equal(dt_codec_buf_check(b, &err), 0);
    int rc = dt_codec_decode_record(b->data, b->len, &r, &err);
    assert_int_equal(rc, -DT_ECORRUPT);
    assert_string_equal(err.field, field);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    dt_codec_buf_fini(b);
}

static void test_lengths_and_counts_are_checked_before_use(void **state)
{
    (void)state;
    dt_codec_buf b = DT_CODEC_BUF_INIT;

    put_head(&b);
    dt_codec_put_u32(&b, 1000); /* tenant length, few bytes follow */
    dt_codec_put_raw(&b, "abc", 3);
    expect_corrupt(&b, "tenant", "exceeds the limit");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, 50); /* id of 50 bytes, 3 present */
    dt_codec_put_raw(&b, "abc", 3);
    expect_corrupt(&b, "id", "points past the end");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, NULL); /* absent id */
    expect_corrupt(&b, "id", "missing");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_bytes(&b, "a\0b", 3);
    expect_corrupt(&b, "id", "NUL");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, "id");
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, UINT32_MAX - 1); /* keywords count, at 32 + 4 + 6 + 4 + 4 */
    expect_corrupt(&b, "keywords", "count 4294967294 at offset 50 exceeds the limit of 64");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, "id");
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, DT_LIST_MAX); /* 64 entries need >= 256 bytes */
    dt_codec_put_str(&b, "k");
    expect_corrupt(&b, "keywords", "cannot fit");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, "id");
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, 2);
    dt_codec_put_str(&b, "k");
    dt_codec_put_str(&b, NULL); /* absent list entry */
    expect_corrupt(&b, "keywords[1]", "absent entry");

    put_head(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_put_str(&b, "id");
    for (int i = 0; i < 2; i++)
        dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, 0);
    for (int i = 0; i < 3; i++)
        dt_codec_put_str(&b, NULL);
    dt_codec_put_u32(&b, 0);
    dt_codec_put_u32(&b, DT_DIM_MAX); /* 4096 floats, 4 bytes present */
    dt_codec_put_f32(&b, 1.0f);
    expect_corrupt(&b, "embedding", "cannot fit");

    dt_codec_put_u8(&b, 2); /* a future version */
    expect_corrupt(&b, "record", "version 2");

    put_head(&b);
    b.data[3] = 10; /* trl */
    expect_corrupt(&b, "trl", "out of range");

    put_head(&b);
    b.data[4] = 0x40; /* mode bit 6 */
    expect_corrupt(&b, "modes", "unknown mode bits");
}

/* ---- the generic writer and reader ---- */

static void test_buf_and_reader_round_trip_every_type(void **state)
{
    (void)state;
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    assert_int_equal(dt_codec_put_u8(&b, 0xAB), 0);
    assert_int_equal(dt_codec_put_u32(&b, 0xDEADBEEF), 0);
    assert_int_equal(dt_codec_put_u64(&b, 0x0102030405060708ull), 0);
    assert_int_equal(dt_codec_put_i64(&b, INT64_MIN), 0);
    assert_int_equal(dt_codec_put_f32(&b, -0.0f), 0);
    assert_int_equal(dt_codec_put_f64(&b, NAN), 0);
    assert_int_equal(dt_codec_put_bytes(&b, "xyz", 3), 0);
    assert_int_equal(dt_codec_put_bytes(&b, NULL, 0), 0);
    assert_int_equal(dt_codec_put_str(&b, NULL), 0);
    assert_int_equal(dt_codec_put_str(&b, ""), 0);
    assert_int_equal(dt_codec_put_raw(&b, "RAW", 3), 0);
    /* u64 little-endian: lowest byte first */
    assert_int_equal(b.data[5], 0x08);
    assert_int_equal(b.data[12], 0x01);

    dt_err err = DT_ERR_INIT;
    uint8_t *data;
    size_t len;
    assert_int_equal(dt_codec_buf_take(&b, &data, &len, &err), 0);
    assert_null(b.data);

    dt_codec_reader rd;
    dt_codec_reader_init(&rd, data, len);
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    const uint8_t *bytes;
    size_t n;
    char *str;
    assert_int_equal(dt_codec_get_u8(&rd, &u8, "a", &err), 0);
    assert_int_equal(u8, 0xAB);
    assert_int_equal(dt_codec_get_u32(&rd, &u32, "b", &err), 0);
    assert_int_equal(u32, 0xDEADBEEF);
    assert_int_equal(dt_codec_get_u64(&rd, &u64, "c", &err), 0);
    assert_true(u64 == 0x0102030405060708ull);
    assert_int_equal(dt_codec_get_i64(&rd, &i64, "d", &err), 0);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(dt_codec_get_f32(&rd, &f32, "e", &err), 0);
    assert_true(f32 == 0.0f && signbit(f32));
    assert_int_equal(dt_codec_get_f64(&rd, &f64, "f", &err), 0);
    assert_true(isnan(f64));
    assert_int_equal(dt_codec_get_bytes(&rd, &bytes, &n, 3, "g", &err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(bytes, "xyz", 3);
    assert_int_equal(dt_codec_get_bytes(&rd, &bytes, &n, 0, "h", &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(dt_codec_get_str(&rd, &str, 10, "i", &err), 0);
    assert_null(str);
    assert_int_equal(dt_codec_get_str(&rd, &str, 10, "j", &err), 0);
    assert_string_equal(str, "");
    free(str);
    assert_int_equal(dt_codec_reader_left(&rd), 3);
    assert_int_equal(dt_codec_get_raw(&rd, &bytes, 3, "k", &err), 0);
    assert_memory_equal(bytes, "RAW", 3);
    assert_int_equal(dt_codec_reader_end(&rd, "payload", &err), 0);

    /* past the end: refused, and sticky */
    assert_int_equal(dt_codec_get_u8(&rd, &u8, "extra", &err), -DT_ECORRUPT);
    assert_string_equal(err.field, "extra");
    assert_non_null(strstr(err.msg, "need 1 bytes"));
    dt_err err2 = DT_ERR_INIT;
    assert_int_equal(dt_codec_get_u8(&rd, &u8, "later", &err2), -DT_ECORRUPT);
    assert_int_equal(dt_codec_reader_end(&rd, "payload", &err2), -DT_ECORRUPT);
    free(data);
}

/* The bulk float calls write and read exactly what n single calls do. */
static void test_bulk_floats_equal_single_ones(void **state)
{
    (void)state;
    float v[7] = {0.0f, -0.0f, 1.5f, -3.25e-7f, 3.4e38f, INFINITY, NAN};
    dt_codec_buf one = DT_CODEC_BUF_INIT, bulk = DT_CODEC_BUF_INIT;
    for (int i = 0; i < 7; i++) dt_codec_put_f32(&one, v[i]);
    assert_int_equal(dt_codec_put_f32s(&bulk, v, 7), 0);
    assert_int_equal(dt_codec_put_f32s(&bulk, v, 0), 0);
    assert_int_equal(one.len, 28);
    assert_int_equal(bulk.len, 28);
    assert_memory_equal(one.data, bulk.data, 28);
    float back[7];
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, one.data, one.len);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_get_f32s(&rd, back, 7, "v", &err), 0);
    assert_memory_equal(back, v, sizeof v);
    /* one float short: refused, naming the field, nothing consumed */
    dt_codec_reader_init(&rd, one.data, one.len - 1);
    assert_int_equal(dt_codec_get_f32s(&rd, back, 7, "row", &err), -DT_ECORRUPT);
    assert_string_equal(err.field, "row");
    dt_codec_buf_fini(&one);
    dt_codec_buf_fini(&bulk);
}

static void test_reader_limits(void **state)
{
    (void)state;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_codec_put_bytes(&b, "abcdef", 6);
    dt_codec_put_u32(&b, 5);
    dt_err err = DT_ERR_INIT;
    dt_codec_reader rd;
    const uint8_t *p;
    size_t n;
    uint32_t cnt;

    dt_codec_reader_init(&rd, b.data, b.len);
    assert_int_equal(dt_codec_get_bytes(&rd, &p, &n, 5, "blob", &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "exceeds the limit of 5"));

    dt_codec_reader_init(&rd, b.data, b.len);
    assert_int_equal(dt_codec_get_bytes(&rd, &p, &n, 6, "blob", &err), 0);
    assert_int_equal(dt_codec_get_count(&rd, &cnt, 10, 1, "ids", &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "cannot fit"));

    dt_codec_reader_init(&rd, NULL, 0);
    assert_int_equal(dt_codec_reader_end(&rd, "empty", &err), 0);
    assert_int_equal(dt_codec_get_u32(&rd, &cnt, "n", &err), -DT_ECORRUPT);

    /* an absent marker where bytes are required */
    dt_codec_buf_reset(&b);
    dt_codec_put_str(&b, NULL);
    dt_codec_reader_init(&rd, b.data, b.len);
    assert_int_equal(dt_codec_get_bytes(&rd, &p, &n, 100, "blob", &err), -DT_ECORRUPT);

    /* a field too long for a u32 length fails the buffer without reading it */
    static const char one = 'x';
    assert_int_equal(dt_codec_put_bytes(&b, &one, (size_t)UINT32_MAX), -DT_ELIMIT);
    assert_int_equal(dt_codec_put_u8(&b, 1), -DT_ELIMIT);
    assert_int_equal(dt_codec_buf_check(&b, &err), -DT_ELIMIT);
    uint8_t *data;
    size_t len;
    assert_int_equal(dt_codec_buf_take(&b, &data, &len, &err), -DT_ELIMIT);
    assert_null(data);
    assert_null(b.data);

    /* an empty take still gives a buffer */
    assert_int_equal(dt_codec_buf_take(&b, &data, &len, &err), 0);
    assert_non_null(data);
    assert_int_equal(len, 0);
    free(data);
    dt_codec_buf_fini(&b);
    dt_codec_buf_fini(NULL);
}

/* Several records in one payload (as an UpsertRecords journal entry would hold them). */
static void test_records_nest_in_a_payload(void **state)
{
    (void)state;
    uint64_t s = 23;
    dt_record in[5];
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_u32(&b, 5);
    for (int i = 0; i < 5; i++) {
        rand_record(&s, &in[i], true);
        assert_int_equal(dt_codec_put_record(&b, &in[i], &err), 0);
    }
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, b.data, b.len);
    uint32_t n;
    assert_int_equal(dt_codec_get_count(&rd, &n, 1000, 40, "records", &err), 0);
    assert_int_equal(n, 5);
    for (uint32_t i = 0; i < n; i++) {
        dt_record r;
        assert_int_equal(dt_codec_get_record(&rd, &r, &err), 0);
        assert_same_record(&in[i], &r);
        dt_record_free(&r);
        dt_record_free(&in[i]);
    }
    assert_int_equal(dt_codec_reader_end(&rd, "records", &err), 0);
    dt_codec_buf_fini(&b);
}

/* ---- outcome events ---- */

/* A random event: ids of 1..DT_ID_MAX random non-NUL bytes (any kind and reason pairing: the
 * codec stores what it is given), an amount or NaN, any at. */
static void rand_outcome(uint64_t *s, dt_outcome_event *ev)
{
    dt_outcome_event_init(ev);
    ev->demand_id = rand_str(s, rng_below(s, 4) == 0 ? DT_ID_MAX : 1 + rng_below(s, 20));
    ev->achievement_id = rand_str(s, 1 + rng_below(s, DT_ID_MAX));
    ev->kind = (dt_outcome_kind)rng_below(s, DT_OUTCOME_KIND_COUNT);
    ev->reason = (dt_outcome_reason)rng_below(s, DT_OUTCOME_REASON_COUNT);
    ev->amount = rand_double(s);
    ev->at = (int64_t)rng_next(s);
}

static void free_outcome(dt_outcome_event *ev)
{
    free((void *)ev->demand_id);
    free((void *)ev->achievement_id);
}

static void assert_same_outcome(const dt_outcome_event *a, const dt_outcome_event *b)
{
    assert_string_equal(a->demand_id, b->demand_id);
    assert_string_equal(a->achievement_id, b->achievement_id);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->reason, b->reason);
    assert_same_bits(a->amount, b->amount);
    assert_true(a->at == b->at);
}

/* Decodes exactly one event from p[0..len); on success checks it re-encodes to the same bytes. */
static int decode_outcome_checked(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    dt_outcome_event ev;
    int rc = dt_codec_get_outcome(&rd, &ev, err);
    if (rc) {
        assert_null(ev.demand_id); /* a failed decode owns nothing */
        assert_null(ev.achievement_id);
    } else {
        rc = dt_codec_reader_end(&rd, "outcome", err);
    }
    if (rc == 0) {
        dt_codec_buf b = DT_CODEC_BUF_INIT;
        dt_err e2 = DT_ERR_INIT;
        assert_int_equal(dt_codec_put_outcome(&b, &ev, &e2), 0);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.data, p, len);
        dt_codec_buf_fini(&b);
    } else {
        assert_int_equal(err->code, -rc);
        assert_true(err->msg[0] != 0);
    }
    dt_codec_outcome_fini(&ev);
    return rc;
}

static void test_outcomes_round_trip_in_a_payload(void **state)
{
    (void)state;
    uint64_t s = 29;
    enum { N = 200 };
    dt_outcome_event in[N];
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_str(&b, "tenant");
    dt_codec_put_u32(&b, N);
    for (int i = 0; i < N; i++) {
        rand_outcome(&s, &in[i]);
        assert_int_equal(dt_codec_put_outcome(&b, &in[i], &err), 0);
    }
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, b.data, b.len);
    char *tenant = NULL;
    uint32_t n;
    assert_int_equal(dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", &err), 0);
    assert_string_equal(tenant, "tenant");
    free(tenant);
    assert_int_equal(dt_codec_get_count(&rd, &n, 1000, 29, "count", &err), 0);
    assert_int_equal(n, N);
    for (uint32_t i = 0; i < n; i++) {
        dt_outcome_event ev;
        assert_int_equal(dt_codec_get_outcome(&rd, &ev, &err), 0);
        assert_null(ev.tenant);
        assert_same_outcome(&in[i], &ev);
        dt_codec_outcome_fini(&ev);
        assert_null(ev.demand_id);
        free_outcome(&in[i]);
    }
    assert_int_equal(dt_codec_reader_end(&rd, "outcomes", &err), 0);
    dt_codec_buf_fini(&b);
}

static void test_outcome_layout_matches_documentation(void **state)
{
    (void)state;
    dt_outcome_event ev;
    dt_outcome_event_init(&ev);
    ev.demand_id = "d1";
    ev.achievement_id = "ach";
    ev.kind = DT_OUTCOME_DEAL_SIGNED;
    ev.amount = 2.5;
    ev.at = 258;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_put_outcome(&b, &ev, &err), 0);
    /* version 1, kind 5, reason 0, "d1", "ach", 2.5 as IEEE-754 bits, 258 */
    const uint8_t want[] = {1, 5, 0, 2, 0, 0, 0, 'd', '1', 3, 0, 0, 0, 'a', 'c', 'h',
                            0, 0, 0, 0, 0, 0, 4, 0x40, 2, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    dt_codec_buf_fini(&b);
}

static void expect_put_refused(const dt_outcome_event *ev, int code, const char *field)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_codec_put_u8(&b, 7);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_put_outcome(&b, ev, &err), -code);
    assert_string_equal(err.field, field);
    assert_int_equal(b.len, 1); /* nothing appended */
    dt_codec_buf_fini(&b);
}

static void test_outcome_encoder_refuses_what_the_decoder_would_refuse(void **state)
{
    (void)state;
    char long_id[DT_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    dt_outcome_event ev;
    dt_outcome_event_init(&ev);
    ev.demand_id = "d";
    ev.achievement_id = "a";
    dt_outcome_event e = ev;
    e.demand_id = NULL;
    expect_put_refused(&e, DT_EINVAL, "demand_id");
    e = ev;
    e.achievement_id = "";
    expect_put_refused(&e, DT_EINVAL, "achievement_id");
    e = ev;
    e.demand_id = long_id;
    expect_put_refused(&e, DT_ELIMIT, "demand_id");
    e = ev;
    e.kind = DT_OUTCOME_KIND_COUNT;
    expect_put_refused(&e, DT_EINVAL, "kind");
    e = ev;
    e.reason = DT_OUTCOME_REASON_COUNT;
    expect_put_refused(&e, DT_EINVAL, "reason");
}

static void expect_outcome_corrupt(dt_codec_buf *b, const char *field, const char *needle)
{
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_codec_buf_check(b, &err), 0);
    assert_int_equal(decode_outcome_checked(b->data, b->len, &err), -DT_ECORRUPT);
    assert_string_equal(err.field, field);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    dt_codec_buf_fini(b);
}

static void test_corrupt_outcomes_are_refused_naming_the_field(void **state)
{
    (void)state;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_codec_put_u8(&b, 2);
    expect_outcome_corrupt(&b, "outcome", "version 2");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 6);
    expect_outcome_corrupt(&b, "kind", "out of range 0..5");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 2), dt_codec_put_u8(&b, 5);
    expect_outcome_corrupt(&b, "reason", "out of range 0..4");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 2), dt_codec_put_u8(&b, 1), dt_codec_put_str(&b, NULL);
    expect_outcome_corrupt(&b, "demand_id", "missing");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 2), dt_codec_put_u8(&b, 1), dt_codec_put_str(&b, "d");
    dt_codec_put_str(&b, "");
    expect_outcome_corrupt(&b, "achievement_id", "empty");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 0), dt_codec_put_u8(&b, 0), dt_codec_put_u32(&b, 200);
    expect_outcome_corrupt(&b, "demand_id", "");
    dt_codec_put_u8(&b, 1), dt_codec_put_u8(&b, 0), dt_codec_put_u8(&b, 0), dt_codec_put_str(&b, "d");
    dt_codec_put_str(&b, "a"), dt_codec_put_f64(&b, NAN);
    expect_outcome_corrupt(&b, "at", "need 8 bytes");
}

static void test_every_outcome_truncation_and_flip(void **state)
{
    (void)state;
    uint64_t s = 31;
    size_t refused = 0, accepted = 0;
    for (int k = 0; k < 40; k++) {
        dt_outcome_event ev;
        rand_outcome(&s, &ev);
        dt_codec_buf b = DT_CODEC_BUF_INIT;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_codec_put_outcome(&b, &ev, &err), 0);
        assert_int_equal(decode_outcome_checked(b.data, b.len, &err), 0);
        for (size_t cut = 0; cut < b.len; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, b.data, cut);
            assert_int_equal(decode_outcome_checked(p, cut, &err), -DT_ECORRUPT);
            free(p);
        }
        uint8_t *p = malloc(b.len);
        for (size_t i = 0; i < b.len; i++) {
            memcpy(p, b.data, b.len);
            p[i] ^= (uint8_t)(1u << (i % 8));
            if (decode_outcome_checked(p, b.len, &err) == 0)
                accepted++;
            else
                refused++;
        }
        free(p);
        dt_codec_buf_fini(&b);
        free_outcome(&ev);
    }
    assert_true(refused > 0 && accepted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_records_round_trip_and_reencode_identically),
        cmocka_unit_test(test_absent_and_empty_strings_stay_distinct),
        cmocka_unit_test(test_minimal_record_matches_documented_layout),
        cmocka_unit_test(test_fields_at_their_limits_round_trip),
        cmocka_unit_test(test_encoder_refuses_what_the_decoder_would_refuse),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_every_byte_flip_is_refused_or_decodes_canonically),
        cmocka_unit_test(test_random_bytes_never_crash),
        cmocka_unit_test(test_lengths_and_counts_are_checked_before_use),
        cmocka_unit_test(test_buf_and_reader_round_trip_every_type),
        cmocka_unit_test(test_bulk_floats_equal_single_ones),
        cmocka_unit_test(test_reader_limits),
        cmocka_unit_test(test_records_nest_in_a_payload),
        cmocka_unit_test(test_outcomes_round_trip_in_a_payload),
        cmocka_unit_test(test_outcome_layout_matches_documentation),
        cmocka_unit_test(test_outcome_encoder_refuses_what_the_decoder_would_refuse),
        cmocka_unit_test(test_corrupt_outcomes_are_refused_naming_the_field),
        cmocka_unit_test(test_every_outcome_truncation_and_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
