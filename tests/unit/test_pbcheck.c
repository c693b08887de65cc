/* test_pbcheck.c - the protobuf body check (server/pbcheck.c).
 *
 * References: bodies packed by protobuf-c's generated code or written byte by byte here; the
 * allocation bound is compared with what protobuf_c_message_unpack really asks of a counting
 * allocator (protobuf-c is the oracle); strings of unpacked messages are checked with a UTF-8
 * validator written here from RFC 3629's table (not utf8proc, which pbcheck uses).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dovetail/v1/matchmaker.pb-c.h"
#include "pbcheck.h"

/* ---- references ---- */

/* RFC 3629 section 4 (the well-formed byte sequences table). */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == 0) return false; /* NUL: refused as well */
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 2;
        else if (c == 0xE0) k = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC) k = 3;
        else if (c == 0xED) k = 3, hi = 0x9F;
        else if (c >= 0xEE && c <= 0xEF) k = 3;
        else if (c == 0xF0) k = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) k = 4;
        else if (c == 0xF4) k = 4, hi = 0x8F;
        else return false;
        if (n - i < k || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j < k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return false;
        i += k;
    }
    return true;
}

typedef struct counting {
    size_t requested; /* sum of sizes asked for */
    size_t calls;
} counting;

static void *count_alloc(void *ud, size_t n)
{
    counting *c = ud;
    c->requested += n;
    c->calls++;
    return malloc(n);
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

/* Unpacks with a counting allocator: the message (or NULL) and what was asked for. */
static ProtobufCMessage *unpack_counted(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n, counting *c)
{
    memset(c, 0, sizeof *c);
    ProtobufCAllocator a = {count_alloc, count_free, c};
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &a, n, b);
    return m;
}

/* Every string field of m, recursively, passes utf8_ok. */
static bool strings_ok(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            void *arr = *(void *const *)base;
            for (size_t k = 0; k < n; k++) {
                if (f->type == PROTOBUF_C_TYPE_STRING) {
                    const char *s = ((char *const *)arr)[k];
                    if (!utf8_ok((const unsigned char *)s, strlen(s))) return false;
                } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                    if (!strings_ok(((ProtobufCMessage *const *)arr)[k])) return false;
                }
            }
        } else if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(const char *const *)base;
            if (s && !utf8_ok((const unsigned char *)s, strlen(s))) return false;
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessage *sm = *(ProtobufCMessage *const *)base;
            if (sm && !strings_ok(sm)) return false;
        }
    }
    return true;
}

/* ---- building bodies ---- */

typedef struct buf {
    uint8_t b[1 << 16];
    size_t n;
} buf;

static void put_varint(buf *o, uint64_t v)
{
    do {
        uint8_t x = v & 0x7f;
        v >>= 7;
        o->b[o->n++] = (uint8_t)(x | (v ? 0x80 : 0));
    } while (v);
}

static void put_key(buf *o, uint32_t id, unsigned wt) { put_varint(o, (uint64_t)id << 3 | wt); }

static void put_bytes(buf *o, uint32_t id, const void *p, size_t n)
{
    put_key(o, id, 2);
    put_varint(o, n);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_msg(buf *o, uint32_t id, const buf *sub) { put_bytes(o, id, sub->b, sub->n); }

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    assert_non_null(b);
    protobuf_c_message_pack(m, b);
    return b;
}

static const ProtobufCMessageDescriptor *const UPSERT = &dovetail__v1__upsert_records_request__descriptor;
static const ProtobufCMessageDescriptor *const MATCH = &dovetail__v1__match_request__descriptor;
static const ProtobufCMessageDescriptor *const EVENT = &dovetail__v1__pair_event_request__descriptor;

/* dt_pbcheck passes the body, and its bound covers what protobuf-c asks for. */
static void assert_passes_and_bounds(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n)
{
    dt_pbcheck_info info;
    dt_err err = DT_ERR_INIT;
    int rc = dt_pbcheck(d, b, n, SIZE_MAX, &info, &err);
    if (rc) fprintf(stderr, "refused: %s: %s\n", err.field, err.msg);
    assert_int_equal(rc, 0);
    counting c;
    ProtobufCMessage *m = unpack_counted(d, b, n, &c);
    assert_non_null(m);
    if (c.requested > info.alloc) fprintf(stderr, "bound %zu < requested %zu\n", info.alloc, c.requested);
    assert_true(c.requested <= info.alloc);
    /* and not absurdly above it */
    assert_true(info.alloc <= 8 * (c.requested + 16 * c.calls) + 4096);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void assert_refused(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n, int code,
                           const char *field, const char *msg_part)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_pbcheck(d, b, n, (size_t)64 << 20, NULL, &err);
    if (rc != -code || strcmp(err.field, field) != 0 || (msg_part && !strstr(err.msg, msg_part)))
        fprintf(stderr, "rc %d field '%s' msg '%s' (want %d '%s' ~'%s')\n", rc, err.field, err.msg, -code, field,
                msg_part ? msg_part : "");
    assert_int_equal(rc, -code);
    assert_string_equal(err.field, field);
    if (msg_part) assert_non_null(strstr(err.msg, msg_part));
}

/* ---- tests ---- */

static void test_valid_messages_pass(void **state)
{
    (void)state;
    Dovetail__V1__Record r[3];
    Dovetail__V1__Record *rp[3];
    char *kw[] = {"锂电池", "solid-state 🔋", "é"};
    float emb[16] = {0.5f};
    Dovetail__V1__Mode modes[] = {DOVETAIL__V1__MODE__MODE_LICENSE, DOVETAIL__V1__MODE__MODE_JOINT_RD};
    for (int i = 0; i < 3; i++) {
        dovetail__v1__record__init(&r[i]);
        r[i].id = "rec-1";
        r[i].side = DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT;
        r[i].title = "硫化物固态电解质";
        r[i].text = "Sulfide solid-state electrolyte with high ionic conductivity.";
        r[i].n_keywords = 3;
        r[i].keywords = kw;
        r[i].n_modes = 2;
        r[i].modes = modes;
        r[i].n_embedding = 16;
        r[i].embedding = emb;
        r[i].price_min_present_case = DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT_PRICE_MIN;
        r[i].price_min = 10;
        rp[i] = &r[i];
    }
    Dovetail__V1__UpsertRecordsRequest up = DOVETAIL__V1__UPSERT_RECORDS_REQUEST__INIT;
    up.tenant = "t1";
    up.n_records = 3;
    up.records = rp;
    size_t n;
    uint8_t *b = pack(&up.base, &n);
    assert_passes_and_bounds(UPSERT, b, n);
    free(b);

    Dovetail__V1__Filter f = DOVETAIL__V1__FILTER__INIT;
    char *tags[] = {"srdi", "first_batch"};
    f.n_tags = 2;
    f.tags = tags;
    Dovetail__V1__MatchRequest mr = DOVETAIL__V1__MATCH_REQUEST__INIT;
    mr.query_case = DOVETAIL__V1__MATCH_REQUEST__QUERY_TEXT;
    mr.text = "焊缝缺陷检测";
    mr.filter = &f;
    mr.k = 5;
    b = pack(&mr.base, &n);
    assert_passes_and_bounds(MATCH, b, n);
    free(b);

    /* the empty body is a valid (empty) message */
    assert_passes_and_bounds(MATCH, (const uint8_t *)"", 0);
}

static void test_bound_covers_many_fields_and_unknowns(void **state)
{
    (void)state;
    /* many occurrences (protobuf-c's scratch slabs grow), unknown fields of every wire type,
     * lists of every kind */
    buf o = {.n = 0};
    for (int i = 0; i < 300; i++) {
        buf rec = {.n = 0};
        put_bytes(&rec, 2, "id", 2);
        put_key(&rec, 3, 0), put_varint(&rec, 1);
        for (int k = 0; k < 5; k++) put_bytes(&rec, 6, "kw", 2);
        put_key(&rec, 11, 0), put_varint(&rec, 2); /* an unpacked enum list entry */
        uint8_t packed[3] = {1, 2, 3};
        put_bytes(&rec, 11, packed, 3); /* and a packed one */
        float e[4] = {1, 2, 3, 4};
        put_bytes(&rec, 17, e, sizeof e);
        put_key(&rec, 99, 0), put_varint(&rec, 123456); /* unknown fields */
        put_key(&rec, 100, 1), memset(rec.b + rec.n, 7, 8), rec.n += 8;
        put_key(&rec, 101, 5), memset(rec.b + rec.n, 7, 4), rec.n += 4;
        put_bytes(&rec, 102, "unknown bytes", 13);
        put_msg(&o, 2, &rec);
    }
    for (int i = 0; i < 40; i++) put_bytes(&o, 1, "tenant", 6); /* a singular string many times */
    assert_passes_and_bounds(UPSERT, o.b, o.n);
}

static void test_strings_must_be_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
        const char *why;
    } bad[] = {
        {"ab\xff", 3, "UTF-8"},           {"\xc0\x80", 2, "UTF-8"},       /* overlong NUL */
        {"\xed\xa0\x80", 3, "UTF-8"},     /* surrogate */                 {"\xe4\xb8", 2, "UTF-8"}, /* cut short */
        {"\xf4\x90\x80\x80", 4, "UTF-8"}, /* above U+10FFFF */            {"a\0b", 3, "NUL"},
        {"\x80", 1, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* UpsertRecords: records[1].title */
        buf o = {.n = 0}, r0 = {.n = 0}, r1 = {.n = 0};
        put_bytes(&r0, 2, "a", 1);
        put_bytes(&r1, 2, "b", 1);
        put_bytes(&r1, 4, bad[i].bytes, bad[i].n);
        put_msg(&o, 2, &r0);
        put_msg(&o, 2, &r1);
        assert_refused(UPSERT, o.b, o.n, DT_EINVAL, "records[1].title", bad[i].why);
        /* keywords[2] of records[0] */
        buf p = {.n = 0}, q = {.n = 0};
        put_bytes(&q, 6, "ok", 2);
        put_bytes(&q, 6, "好", 3);
        put_bytes(&q, 6, bad[i].bytes, bad[i].n);
        put_msg(&p, 2, &q);
        assert_refused(UPSERT, p.b, p.n, DT_EINVAL, "records[0].keywords[2]", bad[i].why);
        /* MatchRequest.text (a oneof member) and the tenant */
        buf m = {.n = 0};
        put_bytes(&m, 3, bad[i].bytes, bad[i].n);
        assert_refused(MATCH, m.b, m.n, DT_EINVAL, "text", bad[i].why);
        buf t = {.n = 0};
        put_bytes(&t, 1, bad[i].bytes, bad[i].n);
        assert_refused(MATCH, t.b, t.n, DT_EINVAL, "tenant", bad[i].why);
        /* deep: PairEventRequest.holders.filter.tags[0] */
        buf e = {.n = 0}, part = {.n = 0}, filt = {.n = 0};
        put_bytes(&filt, 9, bad[i].bytes, bad[i].n);
        put_msg(&part, 2, &filt);
        put_msg(&e, 4, &part);
        assert_refused(EVENT, e.b, e.n, DT_EINVAL, "holders.filter.tags[0]", bad[i].why);
    }
    /* valid multi-byte text, including the largest code point, passes */
    buf ok = {.n = 0};
    put_bytes(&ok, 3, "\xf4\x8f\xbf\xbf 锂 é 🔋", strlen("\xf4\x8f\xbf\xbf 锂 é 🔋"));
    assert_passes_and_bounds(MATCH, ok.b, ok.n);
    /* bytes in unknown fields are not strings: not checked */
    buf unk = {.n = 0};
    put_bytes(&unk, 77, "\xff\x00", 2);
    assert_passes_and_bounds(MATCH, unk.b, unk.n);
}

static void test_structure(void **state)
{
    (void)state;
    /* a key cut short at the top */
    assert_refused(MATCH, (const uint8_t *)"\x80", 1, DT_EINVAL, "", "truncated field key");
    /* field number 0 */
    assert_refused(MATCH, (const uint8_t *)"\x00\x01", 2, DT_EINVAL, "", "invalid field key");
    /* a length past the end, on a known field */
    assert_refused(MATCH, (const uint8_t *)"\x1a\x05" "ab", 4, DT_EINVAL, "text", "truncated");
    /* inside a nested message */
    buf o = {.n = 0};
    put_bytes(&o, 2, "\x12\x09" "abc", 5);
    assert_refused(UPSERT, o.b, o.n, DT_EINVAL, "records[0].id", "truncated");
    /* groups */
    assert_refused(MATCH, (const uint8_t *)"\x0b", 1, DT_EINVAL, "", "groups");
    /* a fixed64 cut short: on a known field (tenant, whatever its type) and on an unknown one */
    assert_refused(MATCH, (const uint8_t *)"\x09\x01\x02", 3, DT_EINVAL, "tenant", "truncated");
    assert_refused(MATCH, (const uint8_t *)"\x91\x03\x01\x02", 4, DT_EINVAL, "", "field 50 at byte 0");
    /* packed floats of a length that is not a multiple of 4 */
    buf p = {.n = 0}, r = {.n = 0};
    put_bytes(&r, 17, "\x00\x00\x80", 3);
    put_msg(&p, 2, &r);
    assert_refused(UPSERT, p.b, p.n, DT_EINVAL, "records[0].embedding", "packed");
    /* a singular message field given twice (protobuf-c would merge: quadratic in the copies) */
    buf m = {.n = 0}, f = {.n = 0};
    put_bytes(&f, 2, "CN.32", 5);
    put_msg(&m, 10, &f);
    put_msg(&m, 10, &f);
    assert_refused(MATCH, m.b, m.n, DT_EINVAL, "filter", "only once");
    /* each of these is also refused by protobuf-c itself */
    counting c;
    assert_null(unpack_counted(MATCH, (const uint8_t *)"\x1a\x05" "ab", 4, &c));
    assert_null(unpack_counted(MATCH, (const uint8_t *)"\x0b", 1, &c));
}

static void test_budget(void **state)
{
    (void)state;
    /* 20,000 empty records: 40 KB on the wire, far more once unpacked */
    static buf o;
    o.n = 0;
    for (int i = 0; i < 20000; i++) put_bytes(&o, 2, "", 0);
    dt_pbcheck_info info;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_pbcheck(UPSERT, o.b, o.n, SIZE_MAX, &info, &err), 0);
    assert_string_equal(info.largest, "records");
    assert_int_equal(info.largest_n, 20000);
    counting c;
    ProtobufCMessage *m = unpack_counted(UPSERT, o.b, o.n, &c);
    assert_non_null(m);
    assert_true(c.requested > 50 * o.n); /* the amplification this guards against */
    assert_true(c.requested <= info.alloc);
    protobuf_c_message_free_unpacked(m, NULL);
    /* with a budget below it: refused, naming the list */
    memset(&err, 0, sizeof err);
    assert_int_equal(dt_pbcheck(UPSERT, o.b, o.n, (size_t)1 << 20, &info, &err), -DT_ELIMIT);
    assert_string_equal(err.field, "records");
    assert_true(info.largest_n > 1000);
    assert_non_null(strstr(err.msg, "1048576 bytes"));
    assert_true(info.alloc > ((size_t)1 << 20));
    /* a nested list: PairEventRequest.smes.ids */
    static buf e;
    e.n = 0;
    buf part = {.n = 0};
    for (int i = 0; i < 2000; i++) put_bytes(&part, 1, "s", 1);
    put_msg(&e, 3, &part);
    memset(&err, 0, sizeof err);
    assert_int_equal(dt_pbcheck(EVENT, e.b, e.n, 4096, &info, &err), -DT_ELIMIT);
    assert_string_equal(err.field, "smes.ids");
    /* a small budget refuses even a message without lists */
    assert_int_equal(dt_pbcheck(MATCH, (const uint8_t *)"\x20\x05", 2, 16, &info, &err), -DT_ELIMIT);
    assert_string_equal(err.field, "");
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Mutations of valid bodies: whatever passes the check and unpacks has only valid strings, and
 * protobuf-c never asks for more than the bound. */
static void test_mutations_against_protobuf_c(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *types[] = {UPSERT, MATCH, EVENT,
                                                 &dovetail__v1__delete_records_request__descriptor};
    /* a seed body per type, with nested messages and strings */
    static buf seeds[4];
    for (int t = 0; t < 4; t++) seeds[t].n = 0;
    {
        buf r = {.n = 0};
        put_bytes(&r, 2, "id-1", 4);
        put_bytes(&r, 4, "标题", 6);
        put_bytes(&r, 6, "kw", 2);
        put_bytes(&r, 17, "\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
        put_msg(&seeds[0], 2, &r);
        put_msg(&seeds[0], 2, &r);
        put_bytes(&seeds[0], 1, "tenant", 6);
    }
    {
        buf f = {.n = 0}, ref = {.n = 0};
        put_bytes(&f, 1, "C.38", 4);
        put_bytes(&f, 9, "srdi", 4);
        put_bytes(&ref, 2, "d-1", 3);
        put_msg(&seeds[1], 2, &ref);
        put_msg(&seeds[1], 10, &f);
        put_key(&seeds[1], 20, 0), put_varint(&seeds[1], 10);
    }
    {
        buf p = {.n = 0}, pr = {.n = 0};
        put_bytes(&p, 1, "s-1", 3);
        put_bytes(&p, 1, "s-2", 3);
        put_bytes(&pr, 1, "s-1", 3);
        put_bytes(&pr, 2, "h-1", 3);
        put_bytes(&seeds[2], 2, "ev", 2);
        put_msg(&seeds[2], 3, &p);
        put_msg(&seeds[2], 12, &pr);
        put_key(&seeds[2], 5, 0), put_varint(&seeds[2], 4);
    }
    {
        put_key(&seeds[3], 2, 0), put_varint(&seeds[3], 1);
        put_bytes(&seeds[3], 3, "x", 1);
        put_bytes(&seeds[3], 3, "é", 2);
    }
    uint64_t s = 42;
    int passed = 0, refused = 0;
    for (int it = 0; it < 20000; it++) {
        int t = (int)(rng(&s) % 4);
        static uint8_t b[4096];
        size_t n = seeds[t].n;
        memcpy(b, seeds[t].b, n);
        int muts = 1 + (int)(rng(&s) % 4);
        for (int k = 0; k < muts && n; k++) {
            size_t at = rng(&s) % n;
            switch (rng(&s) % 4) {
            case 0: b[at] = (uint8_t)rng(&s); break;                       /* any byte */
            case 1: b[at] ^= (uint8_t)(1u << (rng(&s) % 8)); break;        /* one bit */
            case 2: if (n < sizeof b - 1) memmove(b + at + 1, b + at, n - at), b[at] = 0xff, n++; break;
            case 3: memmove(b + at, b + at + 1, n - at - 1), n--; break;
            }
        }
        dt_pbcheck_info info;
        dt_err err = DT_ERR_INIT;
        int rc = dt_pbcheck(types[t], b, n, SIZE_MAX, &info, &err);
        counting c;
        ProtobufCMessage *m = unpack_counted(types[t], b, n, &c);
        if (rc == 0) {
            passed++;
            if (m) {
                assert_true(strings_ok(m));
                assert_true(c.requested <= info.alloc);
            }
        } else {
            refused++;
            assert_int_equal(rc, -DT_EINVAL);
            assert_true(err.msg[0] != 0);
        }
        if (m) protobuf_c_message_free_unpacked(m, NULL);
    }
    assert_true(passed > 1000 && refused > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_messages_pass),
        cmocka_unit_test(test_bound_covers_many_fields_and_unknowns),
        cmocka_unit_test(test_strings_must_be_utf8),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_mutations_against_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
