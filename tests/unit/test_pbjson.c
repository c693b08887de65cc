/* test_pbjson.c - ProtoJSON converter (server/pbjson.c) on the generated dovetail.v1 messages,
 * plus a hand-written descriptor ("test.Kitchen") for the types the contract does not use: bytes,
 * maps (string, int32 and bool keys), sint/fixed/sfixed integers, repeated bool, a oneof holding
 * bytes, and a recursive field.
 *
 * Expected values come from the ProtoJSON specification (protobuf's json.md), protobuf-go's
 * number layout, RFC 4648 test vectors, and independent references written here
 * (strtoll/strtoull, __int128 arithmetic, strtof/strtod round trips, protobuf-c's own
 * pack/unpack). tests/pbjson_check.py cross-checks the same code against Python's
 * google.protobuf.json_format.
 *
 * Out-of-memory paths: a second copy of pbjson.c is compiled into this file with malloc, calloc
 * and realloc replaced by versions that fail the n-th call (its public functions renamed
 * fi_pbjson_*), and every n is tried.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "dovetail/v1/matchmaker.pb-c.h"
#include "pbjson.h"

static long fi_fail_at = -1; /* the allocation call that fails; -1: none */
static long fi_calls;
static size_t fi_bytes; /* bytes the copy asked for, in all */
static bool fi_ok(void) { return ++fi_calls != fi_fail_at; }
static void *fi_malloc(size_t n) { fi_bytes += n; return fi_ok() ? malloc(n) : NULL; }
static void *fi_calloc(size_t n, size_t size) { fi_bytes += n * size; return fi_ok() ? calloc(n, size) : NULL; }
static void *fi_realloc(void *p, size_t n) { fi_bytes += n; return fi_ok() ? realloc(p, n) : NULL; }
#define malloc fi_malloc
#define calloc fi_calloc
#define realloc fi_realloc
#define dt_pbjson_decode fi_pbjson_decode
#define dt_pbjson_decode_bounded fi_pbjson_decode_bounded
#define dt_pbjson_encode fi_pbjson_encode
#define dt_pbjson_json_name fi_pbjson_json_name
#include "pbjson.c"
#undef malloc
#undef calloc
#undef realloc
#undef dt_pbjson_decode
#undef dt_pbjson_decode_bounded
#undef dt_pbjson_encode
#undef dt_pbjson_json_name

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* ---------------------------------------------------------------- test.Kitchen descriptors */

typedef struct Kitchen Kitchen;
typedef struct { ProtobufCMessage base; char *key; int64_t value; } KCounts;
typedef struct { ProtobufCMessage base; int32_t key; char *value; } KNames;
typedef struct { ProtobufCMessage base; protobuf_c_boolean key; Kitchen *value; } KFlags;
struct Kitchen {
    ProtobufCMessage base;
    ProtobufCBinaryData blob;
    size_t n_blobs;
    ProtobufCBinaryData *blobs;
    size_t n_counts;
    KCounts **counts;
    size_t n_names;
    KNames **names;
    int32_t s32;
    int64_t s64;
    uint32_t fx32;
    uint64_t fx64;
    int32_t sfx32;
    int64_t sfx64;
    float f;
    Kitchen *child;
    size_t n_flags;
    KFlags **flags;
    uint64_t u64;
    size_t n_bools;
    protobuf_c_boolean *bools;
    uint32_t pick_case;
    union {
        ProtobufCBinaryData pick_bytes;
        int64_t pick_i64;
    };
};

static const ProtobufCMessageDescriptor kitchen_desc, kcounts_desc, knames_desc, kflags_desc;

#define FD(name, id, label, type, q, off, desc, def, flags) \
    { name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q, off, desc, def, flags, 0, NULL, NULL }
#define PACKED PROTOBUF_C_FIELD_FLAG_PACKED
#define ONEOF PROTOBUF_C_FIELD_FLAG_ONEOF
static const unsigned two_by_name[] = {0, 1};
static const ProtobufCIntRange two_ranges[] = {{1, 0}, {0, 2}};

static void kcounts_init(KCounts *m)
{
    static const KCounts v = {PROTOBUF_C_MESSAGE_INIT(&kcounts_desc), (char *)protobuf_c_empty_string, 0};
    *m = v;
}
static const ProtobufCFieldDescriptor kcounts_fields[] = {
    FD("key", 1, NONE, STRING, 0, offsetof(KCounts, key), NULL, &protobuf_c_empty_string, 0),
    FD("value", 2, NONE, INT64, 0, offsetof(KCounts, value), NULL, NULL, 0),
};
static const ProtobufCMessageDescriptor kcounts_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Kitchen.CountsEntry", "CountsEntry", "Test__Kitchen__CountsEntry",
    "test", sizeof(KCounts), 2, kcounts_fields, two_by_name, 1, two_ranges, (ProtobufCMessageInit)kcounts_init,
    NULL, NULL, NULL};

static void knames_init(KNames *m)
{
    static const KNames v = {PROTOBUF_C_MESSAGE_INIT(&knames_desc), 0, (char *)protobuf_c_empty_string};
    *m = v;
}
static const ProtobufCFieldDescriptor knames_fields[] = {
    FD("key", 1, NONE, INT32, 0, offsetof(KNames, key), NULL, NULL, 0),
    FD("value", 2, NONE, STRING, 0, offsetof(KNames, value), NULL, &protobuf_c_empty_string, 0),
};
static const ProtobufCMessageDescriptor knames_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Kitchen.NamesEntry", "NamesEntry", "Test__Kitchen__NamesEntry",
    "test", sizeof(KNames), 2, knames_fields, two_by_name, 1, two_ranges, (ProtobufCMessageInit)knames_init,
    NULL, NULL, NULL};

static void kflags_init(KFlags *m)
{
    static const KFlags v = {PROTOBUF_C_MESSAGE_INIT(&kflags_desc), 0, NULL};
    *m = v;
}
static const ProtobufCFieldDescriptor kflags_fields[] = {
    FD("key", 1, NONE, BOOL, 0, offsetof(KFlags, key), NULL, NULL, 0),
    FD("value", 2, NONE, MESSAGE, 0, offsetof(KFlags, value), &kitchen_desc, NULL, 0),
};
static const ProtobufCMessageDescriptor kflags_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Kitchen.FlagsEntry", "FlagsEntry", "Test__Kitchen__FlagsEntry",
    "test", sizeof(KFlags), 2, kflags_fields, two_by_name, 1, two_ranges, (ProtobufCMessageInit)kflags_init,
    NULL, NULL, NULL};

static void kitchen_init(Kitchen *m)
{
    static const Kitchen v = {.base = PROTOBUF_C_MESSAGE_INIT(&kitchen_desc)};
    *m = v;
}
#define K(f) offsetof(Kitchen, f)
static const ProtobufCFieldDescriptor kitchen_fields[] = {
    FD("blob", 1, NONE, BYTES, 0, K(blob), NULL, NULL, 0),
    FD("blobs", 2, REPEATED, BYTES, K(n_blobs), K(blobs), NULL, NULL, 0),
    FD("counts", 3, REPEATED, MESSAGE, K(n_counts), K(counts), &kcounts_desc, NULL, 0),
    FD("names", 4, REPEATED, MESSAGE, K(n_names), K(names), &knames_desc, NULL, 0),
    FD("s32", 5, NONE, SINT32, 0, K(s32), NULL, NULL, 0),
    FD("s64", 6, NONE, SINT64, 0, K(s64), NULL, NULL, 0),
    FD("fx32", 7, NONE, FIXED32, 0, K(fx32), NULL, NULL, 0),
    FD("fx64", 8, NONE, FIXED64, 0, K(fx64), NULL, NULL, 0),
    FD("sfx32", 9, NONE, SFIXED32, 0, K(sfx32), NULL, NULL, 0),
    FD("sfx64", 10, NONE, SFIXED64, 0, K(sfx64), NULL, NULL, 0),
    FD("f", 11, NONE, FLOAT, 0, K(f), NULL, NULL, 0),
    FD("child", 12, NONE, MESSAGE, 0, K(child), &kitchen_desc, NULL, 0),
    FD("flags", 13, REPEATED, MESSAGE, K(n_flags), K(flags), &kflags_desc, NULL, 0),
    FD("u64", 14, NONE, UINT64, 0, K(u64), NULL, NULL, 0),
    FD("bools", 15, REPEATED, BOOL, K(n_bools), K(bools), NULL, NULL, PACKED),
    FD("pick_bytes", 16, NONE, BYTES, K(pick_case), K(pick_bytes), NULL, NULL, ONEOF),
    FD("pick_i64", 17, NONE, INT64, K(pick_case), K(pick_i64), NULL, NULL, ONEOF),
};
static const unsigned kitchen_by_name[] = {0, 1, 14, 11, 2, 10, 12, 6, 7, 3, 15, 16, 4, 5, 8, 9, 13};
static const ProtobufCIntRange kitchen_ranges[] = {{1, 0}, {0, 17}};
static const ProtobufCMessageDescriptor kitchen_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Kitchen", "Kitchen", "Test__Kitchen", "test", sizeof(Kitchen), 17,
    kitchen_fields, kitchen_by_name, 1, kitchen_ranges, (ProtobufCMessageInit)kitchen_init, NULL, NULL, NULL};

/* ---------------------------------------------------------------- helpers */

#define D(name) (&dovetail__v1__##name##__descriptor)

static int decode(const ProtobufCMessageDescriptor *d, const char *json, size_t max_depth, ProtobufCMessage **m,
                  dt_err *e)
{
    *e = (dt_err)DT_ERR_INIT;
    return dt_pbjson_decode(d, json, strlen(json), max_depth, m, e);
}

static ProtobufCMessage *dec_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    dt_err e;
    ProtobufCMessage *m = NULL;
    int rc = decode(d, json, 0, &m, &e);
    if (rc) fail_msg("decode of %s failed: [%s] %s", json, e.field, e.msg);
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, d);
    return m;
}

/* Decoding must fail with -DT_EINVAL, err.field == field and msg containing part. */
static void dec_err(const ProtobufCMessageDescriptor *d, const char *json, const char *field, const char *part)
{
    dt_err e;
    ProtobufCMessage *m = (ProtobufCMessage *)&e; /* must be reset to NULL */
    int rc = decode(d, json, 0, &m, &e);
    /* a number out of its field's range is -DT_ERANGE (the daemon answers invalid_argument, as for
     * the same value in protobuf); anything else wrong with the JSON -DT_EINVAL (malformed) */
    bool range = part && strstr(part, "out of range");
    if (rc != (range ? -DT_ERANGE : -DT_EINVAL))
        fail_msg("decode of %s: expected an error at %s, got rc %d (%s)", json, field, rc, e.msg);
    assert_null(m);
    if (strcmp(e.field, field) != 0) fail_msg("decode of %s: error at [%s] (%s), expected [%s]", json, e.field, e.msg, field);
    if (part && !strstr(e.msg, part)) fail_msg("decode of %s: message \"%s\" lacks \"%s\"", json, e.msg, part);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    assert_non_null(b);
    assert_int_equal(protobuf_c_message_pack(m, b), *n);
    return b;
}

/* pack(a) == pack(b) */
static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na, nb;
    uint8_t *pa = pack(a, &na), *pb = pack(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

static char *enc(const ProtobufCMessage *m, bool original, bool defaults)
{
    dt_pbjson_opts o = {.original_names = original, .emit_defaults = defaults};
    size_t len = 0;
    char *s = dt_pbjson_encode(m, &o, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

/* encode -> parse with jansson (an independent JSON reader) */
static json_t *enc_tree(const ProtobufCMessage *m, bool original, bool defaults)
{
    char *s = enc(m, original, defaults);
    json_error_t je;
    json_t *t = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!t) fail_msg("encoder produced invalid JSON (%s): %s", je.text, s);
    free(s);
    return t;
}

/* For every option combination: encode, decode, and compare packed bytes with the original. */
static void assert_round_trip(const ProtobufCMessage *m)
{
    for (int opt = 0; opt < 4; opt++) {
        char *s = enc(m, opt & 1, opt & 2);
        dt_err e;
        ProtobufCMessage *back = NULL;
        int rc = decode(m->descriptor, s, 0, &back, &e);
        if (rc) fail_msg("re-decoding %s failed: [%s] %s", s, e.field, e.msg);
        assert_same(m, back);
        protobuf_c_message_free_unpacked(back, NULL);
        free(s);
    }
}

static void free_msg(void *m) { protobuf_c_message_free_unpacked(m, NULL); }

/* ---------------------------------------------------------------- contract */

static void test_contract_compiles_with_expected_shape(void **state)
{
    (void)state;
    /* the fields other modules and clients rely on, by name and number */
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(D(record), "price_min");
    assert_non_null(f);
    assert_true(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
    assert_int_equal(f->type, PROTOBUF_C_TYPE_DOUBLE);
    f = protobuf_c_message_descriptor_get_field_by_name(D(record), "embedding");
    assert_true(f->flags & PROTOBUF_C_FIELD_FLAG_PACKED);
    assert_int_equal(f->type, PROTOBUF_C_TYPE_FLOAT);
    assert_non_null(protobuf_c_message_descriptor_get_field_by_name(D(match_request), "text"));
    assert_string_equal(dovetail__v1__matchmaker__descriptor.name, "dovetail.v1.Matchmaker");
    /* these methods exist, and every method (the contract grows) follows <Method>Request/Response */
    const char *methods[] = {"UpsertRecords", "DeleteRecords", "GetRecord", "Match", "Stats"};
    for (size_t i = 0; i < 5; i++)
        assert_non_null(protobuf_c_service_descriptor_get_method_by_name(&dovetail__v1__matchmaker__descriptor, methods[i]));
    assert_true(dovetail__v1__matchmaker__descriptor.n_methods >= 5);
    for (size_t i = 0; i < dovetail__v1__matchmaker__descriptor.n_methods; i++) {
        const ProtobufCMethodDescriptor *md = &dovetail__v1__matchmaker__descriptor.methods[i];
        char want[96];
        snprintf(want, sizeof want, "dovetail.v1.%sRequest", md->name);
        assert_string_equal(md->input->name, want);
        snprintf(want, sizeof want, "dovetail.v1.%sResponse", md->name);
        assert_string_equal(md->output->name, want);
    }
    /* the hand-written test descriptor is consistent (names sorted, as protobuf-c requires) */
    for (unsigned i = 1; i < kitchen_desc.n_fields; i++)
        assert_true(strcmp(kitchen_fields[kitchen_by_name[i - 1]].name, kitchen_fields[kitchen_by_name[i]].name) < 0);
}

static void test_json_name(void **state)
{
    (void)state;
    char out[32];
    /* protoc's ToJsonName: '_' dropped, next letter upper-cased */
    assert_int_equal(dt_pbjson_json_name("price_min", out, sizeof out), 8);
    assert_string_equal(out, "priceMin");
    dt_pbjson_json_name("field_prefixes", out, sizeof out);
    assert_string_equal(out, "fieldPrefixes");
    dt_pbjson_json_name("trl", out, sizeof out);
    assert_string_equal(out, "trl");
    dt_pbjson_json_name("a__b_1c", out, sizeof out);
    assert_string_equal(out, "aB1c");
    assert_int_equal(dt_pbjson_json_name("index_epoch", out, 4), 10);
    assert_string_equal(out, "ind");
}

/* ---------------------------------------------------------------- decoding */

static const char *RECORD_SNAKE =
    "{\"tenant\":\"acme\",\"id\":\"d-1\",\"side\":\"SIDE_DEMAND\",\"title\":\"\xe6\xb0\xa2\xe8\x83\xbd battery\","
    "\"text\":\"need a \\\"solid-state\\\" cell\\n\",\"keywords\":[\"battery\",\"\xe5\x82\xa8\xe8\x83\xbd\"],"
    "\"org\":\"Foo Ltd\",\"field\":\"C.38.4\",\"region\":\"CN.32.05\",\"trl\":6,"
    "\"modes\":[\"MODE_LICENSE\",\"MODE_JOINT_RD\"],\"price_min\":100000,\"price_max\":2.5e6,"
    "\"tags\":[\"srdi\"],\"status\":\"STATUS_OPEN\",\"updated_at\":\"1700000000\",\"embedding\":[0.5,-1,\"NaN\"]}";
static const char *RECORD_CAMEL =
    "{\"tenant\":\"acme\",\"id\":\"d-1\",\"side\":1,\"title\":\"\\u6c22\\u80fd battery\","
    "\"text\":\"need a \\\"solid-state\\\" cell\\n\",\"keywords\":[\"battery\",\"\\u50a8\\u80fd\"],"
    "\"org\":\"Foo Ltd\",\"field\":\"C.38.4\",\"region\":\"CN.32.05\",\"trl\":\"6\","
    "\"modes\":[2,\"MODE_JOINT_RD\"],\"priceMin\":\"1e5\",\"priceMax\":2500000,"
    "\"tags\":[\"srdi\"],\"status\":1,\"updatedAt\":1700000000,\"embedding\":[\"0.5\",-1.0,\"NaN\"]}";

static void test_decode_record_both_spellings(void **state)
{
    (void)state;
    Dovetail__V1__Record *a = (Dovetail__V1__Record *)dec_ok(D(record), RECORD_SNAKE);
    Dovetail__V1__Record *b = (Dovetail__V1__Record *)dec_ok(D(record), RECORD_CAMEL);
    assert_string_equal(a->tenant, "acme");
    assert_string_equal(a->id, "d-1");
    assert_int_equal(a->side, DOVETAIL__V1__SIDE__SIDE_DEMAND);
    assert_string_equal(a->title, "\xe6\xb0\xa2\xe8\x83\xbd battery");
    assert_string_equal(a->text, "need a \"solid-state\" cell\n");
    assert_int_equal(a->n_keywords, 2);
    assert_string_equal(a->keywords[1], "\xe5\x82\xa8\xe8\x83\xbd");
    assert_int_equal(a->trl, 6);
    assert_int_equal(a->n_modes, 2);
    assert_int_equal(a->modes[0], DOVETAIL__V1__MODE__MODE_LICENSE);
    assert_int_equal(a->modes[1], DOVETAIL__V1__MODE__MODE_JOINT_RD);
    assert_int_equal(a->price_min_present_case, DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT_PRICE_MIN);
    assert_true(a->price_min == 100000.0);
    assert_true(a->price_max == 2.5e6);
    assert_int_equal(a->status, DOVETAIL__V1__STATUS__STATUS_OPEN);
    assert_int_equal(a->updated_at, 1700000000);
    assert_int_equal(a->n_embedding, 3);
    assert_true(a->embedding[0] == 0.5f && a->embedding[1] == -1.0f && isnan(a->embedding[2]));
    assert_same(&a->base, &b->base);
    assert_round_trip(&a->base);
    free_msg(a);
    free_msg(b);
}

static void test_decode_defaults_and_null(void **state)
{
    (void)state;
    Dovetail__V1__Record def = DOVETAIL__V1__RECORD__INIT;
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), "{}");
    assert_same(&def.base, &r->base);
    assert_string_equal(r->title, ""); /* unset strings read as "" like unpacked ones */
    free_msg(r);
    /* null = unset, for every kind of field */
    r = (Dovetail__V1__Record *)dec_ok(D(record),
                                       "{\"tenant\":null,\"side\":null,\"keywords\":null,\"trl\":null,\"modes\":null,"
                                       "\"priceMin\":null,\"updated_at\":null,\"embedding\":null,\"status\":null}");
    assert_same(&def.base, &r->base);
    assert_int_equal(r->price_min_present_case, DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT__NOT_SET);
    free_msg(r);
    Dovetail__V1__MatchRequest *q = (Dovetail__V1__MatchRequest *)dec_ok(D(match_request), "{\"filter\":null,\"weights\":{}}");
    assert_null(q->filter);
    assert_non_null(q->weights); /* presence of the sub-message, even empty */
    free_msg(q);
    /* explicit defaults are the same as absent for plain proto3 fields */
    r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"tenant\":\"\",\"trl\":0,\"keywords\":[],\"updatedAt\":\"0\"}");
    assert_same(&def.base, &r->base);
    free_msg(r);
}

static void test_decode_unknown_fields_ignored(void **state)
{
    (void)state;
    Dovetail__V1__GetRecordRequest *g = (Dovetail__V1__GetRecordRequest *)dec_ok(
        D(get_record_request),
        "{\"futureField\":{\"a\":[1,{\"b\":null}],\"c\":\"\\u0000\"},\"id\":\"x\",\"Id\":5,\"ID\":[],\"side\":2,"
        "\"extra\":-1e300}");
    assert_string_equal(g->id, "x");
    assert_int_equal(g->side, DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT);
    free_msg(g);
}

static void test_decode_same_field_twice(void **state)
{
    (void)state;
    dec_err(D(record), "{\"price_min\":1,\"priceMin\":2}", "priceMin", "given twice");
    dec_err(D(record), "{\"updatedAt\":\"1\",\"updated_at\":null}", "updated_at", "given twice");
    /* the same key twice: refused as protojson does (not last-wins), also inside a nested object */
    dec_err(D(record), "{\"trl\":1,\"trl\":7}", "", "duplicate object key");
    dec_err(D(match_request), "{\"filter\":{\"trlMin\":1,\"trlMin\":2}}", "", "duplicate object key");
}

static void test_decode_enums(void **state)
{
    (void)state;
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(
        D(record), "{\"side\":\"SIDE_ACHIEVEMENT\",\"modes\":[\"MODE_TRANSFER\",6,99,-3,\"MODE_UNSPECIFIED\"],\"status\":2}");
    assert_int_equal(r->side, 2);
    assert_int_equal(r->n_modes, 5);
    assert_int_equal(r->modes[0], 1);
    assert_int_equal(r->modes[1], 6);
    assert_int_equal(r->modes[2], 99); /* proto3 enums are open: unknown numbers are kept */
    assert_int_equal((int)r->modes[3], -3);
    assert_int_equal(r->modes[4], 0);
    assert_int_equal(r->status, DOVETAIL__V1__STATUS__STATUS_CLOSED);
    /* unknown numbers are written back as numbers, known ones as names */
    json_t *t = enc_tree(&r->base, false, false);
    json_t *modes = json_object_get(t, "modes");
    assert_string_equal(json_string_value(json_array_get(modes, 0)), "MODE_TRANSFER");
    assert_int_equal(json_integer_value(json_array_get(modes, 2)), 99);
    assert_int_equal(json_integer_value(json_array_get(modes, 3)), -3);
    assert_string_equal(json_string_value(json_object_get(t, "side")), "SIDE_ACHIEVEMENT");
    json_decref(t);
    assert_round_trip(&r->base);
    free_msg(r);

    dec_err(D(record), "{\"side\":\"DEMAND\"}", "side", "unknown Side value \"DEMAND\"");
    dec_err(D(record), "{\"side\":\"side_demand\"}", "side", "SIDE_UNSPECIFIED, SIDE_DEMAND, SIDE_ACHIEVEMENT");
    dec_err(D(record), "{\"modes\":[1,\"MODE_FOO\"]}", "modes[1]", "MODE_FOO");
    dec_err(D(record), "{\"side\":1.5}", "side", "expected an integer");
    dec_err(D(record), "{\"side\":2147483648}", "side", "out of range");
    dec_err(D(record), "{\"side\":true}", "side", "got a boolean");
    dec_err(D(record), "{\"status\":{}}", "status", "got an object");
}

static void test_decode_int64(void **state)
{
    (void)state;
    const struct { const char *json; int64_t want; } ok[] = {
        {"\"1700000000\"", 1700000000},
        {"1700000000", 1700000000},
        {"1e2", 100},
        {"\"1e2\"", 100},
        {"\"1.5E1\"", 15},
        {"\"100e-2\"", 1},
        {"1.0", 1},
        {"\"-0\"", 0},
        {"\"0e99999999999\"", 0},
        {"\"-9223372036854775808\"", INT64_MIN},
        {"-9223372036854775808", INT64_MIN},
        {"\"9223372036854775807\"", INT64_MAX},
        {"\"92233720368547758.07e2\"", INT64_MAX},
        {"\"-5\"", -5},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"updatedAt\":%s}", ok[i].json);
        Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), json);
        if (r->updated_at != ok[i].want) fail_msg("%s -> %" PRId64, json, r->updated_at);
        free_msg(r);
    }
    dec_err(D(record), "{\"updatedAt\":\"9223372036854775808\"}", "updatedAt", "out of range");
    dec_err(D(record), "{\"updatedAt\":\"-9223372036854775809\"}", "updatedAt", "out of range");
    dec_err(D(record), "{\"updatedAt\":\"1e19\"}", "updatedAt", "out of range");
    dec_err(D(record), "{\"updatedAt\":1.5}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"1.5\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"15e-1\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\" 1\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"01\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"0x10\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"+1\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":\"\"}", "updatedAt", "expected an integer");
    dec_err(D(record), "{\"updatedAt\":true}", "updatedAt", "got a boolean");
    dec_err(D(record), "{\"updatedAt\":[1]}", "updatedAt", "got an array");
}

static void test_decode_32_and_unsigned(void **state)
{
    (void)state;
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"trl\":\"-2147483648\"}");
    assert_int_equal(r->trl, INT32_MIN);
    free_msg(r);
    r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"trl\":2147483647}");
    assert_int_equal(r->trl, INT32_MAX);
    free_msg(r);
    dec_err(D(record), "{\"trl\":2147483648}", "trl", "out of range for a 32-bit signed integer");
    dec_err(D(record), "{\"trl\":\"-2147483649\"}", "trl", "out of range");
    dec_err(D(record), "{\"trl\":6.5}", "trl", "expected an integer");

    Dovetail__V1__MatchRequest *q = (Dovetail__V1__MatchRequest *)dec_ok(D(match_request), "{\"k\":4294967295,\"offset\":\"2e1\"}");
    assert_int_equal(q->k, UINT32_MAX);
    assert_int_equal(q->offset, 20);
    free_msg(q);
    dec_err(D(match_request), "{\"k\":-1}", "k", "out of range for a 32-bit unsigned integer");
    dec_err(D(match_request), "{\"k\":4294967296}", "k", "out of range");

    Dovetail__V1__MatchResponse *mr = (Dovetail__V1__MatchResponse *)dec_ok(
        D(match_response), "{\"indexEpoch\":\"18446744073709551615\",\"cached\":true,\"totalCandidates\":3}");
    assert_true(mr->index_epoch == UINT64_MAX);
    assert_true(mr->cached);
    free_msg(mr);
    dec_err(D(match_response), "{\"indexEpoch\":\"18446744073709551616\"}", "indexEpoch", "out of range");
    dec_err(D(match_response), "{\"indexEpoch\":\"-1\"}", "indexEpoch", "out of range for a 64-bit unsigned");
    dec_err(D(match_response), "{\"indexEpoch\":-1}", "indexEpoch", "out of range");
    dec_err(D(match_response), "{\"cached\":1}", "cached", "expected true or false");
    dec_err(D(match_response), "{\"cached\":\"true\"}", "cached", "expected true or false");
}

static void test_decode_floats(void **state)
{
    (void)state;
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(
        D(record), "{\"embedding\":[\"Infinity\",\"-Infinity\",\"NaN\",1e-50,\"3.5\",3.4028234663852886e38,-0.0]}");
    assert_int_equal(r->n_embedding, 7);
    assert_true(isinf(r->embedding[0]) && r->embedding[0] > 0);
    assert_true(isinf(r->embedding[1]) && r->embedding[1] < 0);
    assert_true(isnan(r->embedding[2]));
    assert_true(r->embedding[3] == 0.0f); /* underflow rounds to zero */
    assert_true(r->embedding[4] == 3.5f);
    assert_true(r->embedding[5] == 3.4028234663852886e38f);
    assert_true(r->embedding[6] == 0.0f && signbit(r->embedding[6]));
    assert_round_trip(&r->base);
    free_msg(r);
    dec_err(D(record), "{\"embedding\":[1,1e39]}", "embedding[1]", "out of range for a float");
    dec_err(D(record), "{\"embedding\":[\"-1e39\"]}", "embedding[0]", "out of range for a float");
    dec_err(D(record), "{\"embedding\":[\"nan\"]}", "embedding[0]", "expected a number");
    dec_err(D(record), "{\"embedding\":[\"inf\"]}", "embedding[0]", "expected a number");
    dec_err(D(record), "{\"embedding\":[true]}", "embedding[0]", "expected a number");
    dec_err(D(record), "{\"priceMin\":\"1e400\"}", "priceMin", "out of range for a double");
    dec_err(D(record), "{\"priceMin\":\"1,5\"}", "priceMin", "expected a number");
    r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"priceMin\":\"-Infinity\",\"priceMax\":\"1e-400\"}");
    assert_true(isinf(r->price_min) && r->price_min < 0);
    assert_true(r->price_max == 0.0);
    free_msg(r);
}

static void test_decode_oneofs(void **state)
{
    (void)state;
    /* unset */
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"priceMax\":7}");
    assert_int_equal(r->price_min_present_case, DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT__NOT_SET);
    assert_int_equal(r->price_max_present_case, DOVETAIL__V1__RECORD__PRICE_MAX_PRESENT_PRICE_MAX);
    free_msg(r);
    /* set to zero: still set, and written back */
    r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"price_min\":0}");
    assert_int_equal(r->price_min_present_case, DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT_PRICE_MIN);
    assert_true(r->price_min == 0.0);
    char *s = enc(&r->base, false, false);
    assert_string_equal(s, "{\"priceMin\":0}");
    free(s);
    s = enc(&r->base, true, false);
    assert_string_equal(s, "{\"price_min\":0}");
    free(s);
    assert_round_trip(&r->base);
    free_msg(r);

    /* a oneof of a message and a string */
    Dovetail__V1__MatchRequest *q = (Dovetail__V1__MatchRequest *)dec_ok(
        D(match_request), "{\"record\":{\"side\":\"SIDE_DEMAND\",\"id\":\"d1\"},\"text\":null}");
    assert_int_equal(q->query_case, DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD);
    assert_string_equal(q->record->id, "d1");
    assert_round_trip(&q->base);
    free_msg(q);
    q = (Dovetail__V1__MatchRequest *)dec_ok(D(match_request), "{\"text\":\"\"}");
    assert_int_equal(q->query_case, DOVETAIL__V1__MATCH_REQUEST__QUERY_TEXT);
    assert_string_equal(q->text, "");
    s = enc(&q->base, false, false);
    assert_string_equal(s, "{\"text\":\"\"}");
    free(s);
    assert_round_trip(&q->base);
    free_msg(q);
    /* unset oneofs stay out even with emit_defaults */
    q = (Dovetail__V1__MatchRequest *)dec_ok(D(match_request), "{}");
    json_t *t = enc_tree(&q->base, false, true);
    assert_null(json_object_get(t, "text"));
    assert_null(json_object_get(t, "record"));
    assert_true(json_is_null(json_object_get(t, "filter")));
    json_decref(t);
    free_msg(q);

    dec_err(D(match_request), "{\"record\":{\"id\":\"a\"},\"text\":\"x\"}", "text", "\"record\"");
    dec_err(D(match_request), "{\"text\":\"x\",\"record\":{}}", "record", "alternatives");
    dec_err(D(match_request), "{\"text\":\"x\",\"record\":{\"id\":5}}", "record", "alternatives");
    dec_err(D(match_request), "{\"record\":{\"id\":5}}", "record.id", "expected a string");
}

static void test_decode_nested_paths(void **state)
{
    (void)state;
    dec_err(D(upsert_records_request), "{\"records\":[{\"id\":\"a\"},{\"id\":\"b\",\"priceMin\":\"cheap\"}]}",
            "records[1].priceMin", "expected a number");
    dec_err(D(upsert_records_request), "{\"records\":[{\"id\":\"a\"},{\"id\":\"b\",\"trl\":1.5},{}]}", "records[1].trl",
            "expected an integer, got 1.5");
    dec_err(D(upsert_records_request), "{\"records\":[{},null]}", "records[1]", "null is not allowed in a list");
    dec_err(D(upsert_records_request), "{\"records\":[{},[]]}", "records[1]", "expected an object");
    dec_err(D(upsert_records_request), "{\"records\":{}}", "records", "expected an array");
    dec_err(D(upsert_records_request), "{\"records\":[{\"keywords\":[\"a\",null]}]}", "records[0].keywords[1]", "null");
    dec_err(D(upsert_records_request), "{\"records\":[{\"keywords\":[\"a\",3]}]}", "records[0].keywords[1]",
            "expected a string, got a number");
    dec_err(D(match_request), "{\"filter\":{\"price_min\":1,\"priceMin\":2}}", "filter.priceMin", "twice");
    dec_err(D(match_request), "{\"filter\":{\"trlMin\":\"x\"}}", "filter.trlMin", "got the string \"x\"");
    dec_err(D(match_request), "{\"weights\":{\"dense\":[]}}", "weights.dense", "got an array");
    dec_err(D(match_response), "{\"matches\":[{\"explanation\":{\"terms\":[{},{\"weight\":{}}]}}]}",
            "matches[0].explanation.terms[1].weight", "got an object");
    /* long paths keep their end */
    char json[512] = "", path[512] = "";
    for (int i = 0; i < 12; i++) {
        strcat(json, "{\"child\":");
        strcat(path, "child.");
    }
    strcat(json, "{\"s32\":\"x\"}");
    strcat(path, "s32");
    for (int i = 0; i < 12; i++) strcat(json, "}");
    char want[64];
    snprintf(want, sizeof want, "...%s", path + strlen(path) - 60);
    dec_err(&kitchen_desc, json, want, "expected an integer");
}

/* Bare numbers the JSON parser alone would misread. */
static void test_decode_big_and_negative_zero_numbers(void **state)
{
    (void)state;
    Dovetail__V1__MatchResponse *mr = (Dovetail__V1__MatchResponse *)dec_ok(
        D(match_response), "{\"indexEpoch\":18446744073709551615,\"totalCandidates\":-0}");
    assert_true(mr->index_epoch == UINT64_MAX);
    free_msg(mr);
    mr = (Dovetail__V1__MatchResponse *)dec_ok(D(match_response), "{\"indexEpoch\":9223372036854775808}");
    assert_true(mr->index_epoch == (uint64_t)1 << 63);
    free_msg(mr);
    dec_err(D(match_response), "{\"indexEpoch\":18446744073709551616}", "indexEpoch", "out of range");
    dec_err(D(record), "{\"updatedAt\":-9223372036854775809}", "updatedAt", "out of range");
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(
        D(record), "{\"priceMin\":-0,\"priceMax\":123456789012345678901,\"updatedAt\":-9223372036854775808,"
                   "\"embedding\":[-0, 0, 100000000000000000000]}");
    assert_true(r->price_min == 0 && signbit(r->price_min));
    assert_true(r->price_max == 123456789012345678901.0);
    assert_true(r->updated_at == INT64_MIN);
    assert_true(signbit(r->embedding[0]) && !signbit(r->embedding[1]) && r->embedding[2] == 1e20f);
    char *s = enc(&r->base, false, false);
    assert_string_equal(s, "{\"priceMin\":-0.0,\"priceMax\":123456789012345680000,\"updatedAt\":\"-9223372036854775808\","
                           "\"embedding\":[-0.0,0,100000000000000000000]}");
    free(s);
    assert_round_trip(&r->base);
    free_msg(r);
    /* inside strings nothing is rewritten */
    r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"id\":\"-0\",\"title\":\"99999999999999999999\"}");
    assert_string_equal(r->id, "-0");
    assert_string_equal(r->title, "99999999999999999999");
    free_msg(r);
    dec_err(D(record), "{\"trl\":-01}", "", "malformed JSON");
    dec_err(D(record), "{\"trl\":012345678901234567890}", "", "malformed JSON");
}

static void test_decode_not_an_object(void **state)
{
    (void)state;
    dec_err(D(record), "[]", "", "expected a JSON object (message dovetail.v1.Record), got an array");
    dec_err(D(record), "null", "", "got null");
    dec_err(D(record), "\"x\"", "", "got a string");
    dec_err(D(record), "", "", "empty JSON text: expected an object (message dovetail.v1.Record)");
    dec_err(D(record), " \r\n\t", "", "empty JSON text");
    dec_err(D(record), "{", "", "malformed JSON at line 1");
    dec_err(D(record), "{\"id\":\"a\"}\n{\"id\":\"b\"}", "", "malformed JSON at line 2");
    dec_err(D(record), "{\"id\":\"a\",}", "", "malformed JSON");
    dec_err(D(record), "{\"trl\":NaN}", "", "malformed JSON");
    dec_err(D(record), "{\"trl\":01}", "", "malformed JSON");
    dec_err(D(record), "{\"updatedAt\":99999999999999999999}", "updatedAt", "out of range");
    dec_err(D(record), "{\"id\":\"\\ud800\"}", "", "malformed JSON");
    dt_err e = DT_ERR_INIT;
    ProtobufCMessage *m = NULL;
    assert_int_equal(dt_pbjson_decode(D(record), NULL, 0, 0, &m, &e), -DT_EINVAL); /* an empty body */
    assert_int_equal(dt_pbjson_decode(NULL, "{}", 2, 0, &m, &e), -DT_EINVAL);
    assert_int_equal(dt_pbjson_decode(D(record), "{}", 2, 0, NULL, &e), -DT_EINVAL);
    /* the length is respected: no terminator needed */
    assert_int_equal(dt_pbjson_decode(D(record), "{\"trl\":5}garbage", 9, 0, &m, &e), 0);
    assert_int_equal(((Dovetail__V1__Record *)m)->trl, 5);
    free_msg(m);
}

static void test_decode_strings_utf8_and_nul(void **state)
{
    (void)state;
    dec_err(D(upsert_records_request), "{\"records\":[{\"id\":\"a\"},{\"title\":\"ok \xff bad\"}]}", "records[1].title",
            "not valid UTF-8");
    dec_err(D(upsert_records_request), "{\"records\":[{\"keywords\":[\"\xe6\xb0\"]}]}", "records[0].keywords[0]",
            "not valid UTF-8");
    dec_err(D(record), "{\"id\":\"\xed\xa0\x80\"}", "id", "not valid UTF-8");  /* an encoded surrogate */
    dec_err(D(record), "{\"id\":\"\xc0\xaf\"}", "id", "not valid UTF-8");      /* overlong '/' */
    dec_err(D(record), "{\"id\":\"\xf4\x90\x80\x80\"}", "id", "not valid UTF-8"); /* above U+10FFFF */
    dec_err(D(record), "{\"side\":\"SIDE_\xff\"}", "side", "not valid UTF-8");
    /* outside a decoded field: no path, but line and column */
    dec_err(D(record), "{\n \"unknown\":\"\xff\"}", "", "byte 0xFF at line 2, column 13");
    dec_err(D(record), "{\"ke\xfe\":1}", "", "not valid UTF-8");
    dec_err(D(record), "{\"id\":\"a\"}\xff", "", "not valid UTF-8");
    /* the stand-in character already present: still refused, without a path */
    dec_err(D(record), "{\"id\":\"\xf4\x8f\xbf\xbf\",\"title\":\"\xff\"}", "", "not valid UTF-8");
    dec_err(D(record), "{\"id\":\"\\udbff\\udfff\",\"title\":\"\xff\"}", "", "not valid UTF-8");
    /* ... and allowed when the text is valid */
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), "{\"id\":\"\\udbff\\udfff\",\"title\":\"\xf4\x8f\xbf\xbf\"}");
    assert_string_equal(r->id, "\xf4\x8f\xbf\xbf");
    assert_string_equal(r->title, "\xf4\x8f\xbf\xbf");
    free_msg(r);
    dec_err(D(record), "{\"id\":\"a\\u0000b\"}", "id", "NUL");
    dec_err(D(record), "{\"keywords\":[\"\\u0000\"]}", "keywords[0]", "NUL");
    dec_err(D(record), "{\"id\":\"a\x01\"}", "", "malformed JSON"); /* raw control characters */
}

static void test_decode_depth_limit(void **state)
{
    (void)state;
    /* MatchResponse nests 6 levels: response, matches[], match, explanation, structured_parts[], part */
    const char *deep = "{\"matches\":[{\"explanation\":{\"structuredParts\":[{\"name\":\"trl\"}]}}]}";
    dt_err e;
    ProtobufCMessage *m = NULL;
    assert_int_equal(decode(D(match_response), deep, 6, &m, &e), 0);
    free_msg(m);
    m = NULL;
    assert_int_equal(decode(D(match_response), deep, 5, &m, &e), -DT_EINVAL);
    assert_null(m);
    assert_string_equal(e.field, "");
    assert_non_null(strstr(e.msg, "deeper than 5 levels at line 1, column 48"));
    /* hostile nesting, in a known or an unknown field, never reaches the parser's recursion */
    size_t n = 1000000;
    char *big = malloc(2 * n + 16);
    assert_non_null(big);
    strcpy(big, "{\"x\":");
    memset(big + 5, '[', n);
    memset(big + 5 + n, ']', n);
    strcpy(big + 5 + 2 * n, "}");
    assert_int_equal(dt_pbjson_decode(D(record), big, strlen(big), 0, &m, &e), -DT_EINVAL);
    assert_non_null(strstr(e.msg, "deeper than 64 levels"));
    free(big);
    /* recursion through a message type: the limit counts objects and arrays */
    char json[2048] = "";
    for (int i = 0; i < 70; i++) strcat(json, "{\"child\":");
    strcat(json, "{}");
    for (int i = 0; i < 70; i++) strcat(json, "}");
    assert_int_equal(decode(&kitchen_desc, json, 0, &m, &e), -DT_EINVAL);
    assert_non_null(strstr(e.msg, "deeper than 64"));
    assert_int_equal(decode(&kitchen_desc, json, 100, &m, &e), 0);
    int depth = 0;
    for (Kitchen *k = (Kitchen *)m; k; k = k->child) depth++;
    assert_int_equal(depth, 71);
    /* encoding honours the limit too */
    dt_pbjson_opts o = {.max_depth = 10};
    assert_null(dt_pbjson_encode(m, &o, NULL));
    o.max_depth = 71;
    char *s = dt_pbjson_encode(m, &o, NULL);
    assert_non_null(s);
    free(s);
    free_msg(m);
}

/* ---------------------------------------------------------------- encoding */

static Dovetail__V1__Record *sample_record(void)
{
    Dovetail__V1__Record *r = (Dovetail__V1__Record *)dec_ok(D(record), RECORD_SNAKE);
    return r;
}

static void test_encode_forms(void **state)
{
    (void)state;
    Dovetail__V1__Record *r = sample_record();
    char *s = enc(&r->base, false, false);
    /* field-number order, camelCase, int64 as a string, enums by name, NaN as a string */
    assert_string_equal(
        s, "{\"tenant\":\"acme\",\"id\":\"d-1\",\"side\":\"SIDE_DEMAND\",\"title\":\"\xe6\xb0\xa2\xe8\x83\xbd battery\","
           "\"text\":\"need a \\\"solid-state\\\" cell\\n\",\"keywords\":[\"battery\",\"\xe5\x82\xa8\xe8\x83\xbd\"],"
           "\"org\":\"Foo Ltd\",\"field\":\"C.38.4\",\"region\":\"CN.32.05\",\"trl\":6,"
           "\"modes\":[\"MODE_LICENSE\",\"MODE_JOINT_RD\"],\"priceMin\":100000,\"priceMax\":2500000,"
           "\"tags\":[\"srdi\"],\"status\":\"STATUS_OPEN\",\"updatedAt\":\"1700000000\",\"embedding\":[0.5,-1,\"NaN\"]}");
    free(s);
    s = enc(&r->base, true, false);
    assert_non_null(strstr(s, "\"updated_at\":\"1700000000\""));
    assert_non_null(strstr(s, "\"price_min\":100000"));
    assert_null(strstr(s, "priceMin"));
    free(s);
    free_msg(r);

    /* emit_defaults: every non-oneof field, with the zero value of its type */
    Dovetail__V1__Record empty = DOVETAIL__V1__RECORD__INIT;
    s = enc(&empty.base, false, false);
    assert_string_equal(s, "{}");
    free(s);
    s = enc(&empty.base, true, true);
    assert_string_equal(s, "{\"tenant\":\"\",\"id\":\"\",\"side\":\"SIDE_UNSPECIFIED\",\"title\":\"\",\"text\":\"\","
                           "\"keywords\":[],\"org\":\"\",\"field\":\"\",\"region\":\"\",\"trl\":0,\"modes\":[],"
                           "\"tags\":[],\"status\":\"STATUS_UNSPECIFIED\",\"updated_at\":\"0\",\"embedding\":[]}");
    free(s);
    Dovetail__V1__MatchResponse mr = DOVETAIL__V1__MATCH_RESPONSE__INIT;
    mr.index_epoch = UINT64_MAX;
    s = enc(&mr.base, false, true);
    assert_string_equal(s, "{\"matches\":[],\"totalCandidates\":0,\"cached\":false,\"indexEpoch\":\"18446744073709551615\"}");
    free(s);
    Dovetail__V1__GetRecordResponse gr = DOVETAIL__V1__GET_RECORD_RESPONSE__INIT;
    s = enc(&gr.base, true, true);
    assert_string_equal(s, "{\"record\":null}");
    free(s);
    s = dt_pbjson_encode(&gr.base, NULL, NULL);
    assert_string_equal(s, "{}");
    free(s);

    /* strings: escapes, control characters, invalid UTF-8 replaced */
    Dovetail__V1__Term term = DOVETAIL__V1__TERM__INIT;
    char text[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xe2\x80\xa8 \xff\xc3";
    term.term = text;
    term.weight = -0.0;
    s = enc(&term.base, false, false);
    assert_string_equal(s, "{\"term\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xe2\x80\xa8 \xef\xbf\xbd\xef\xbf\xbd\","
                           "\"weight\":-0.0}");
    free(s);
}

/* Significant digits of the JSON number at the start of t. */
static int sig_digits(const char *t)
{
    char d[64];
    int n = 0;
    for (; *t && *t != 'e' && *t != ',' && *t != ']' && *t != '}'; t++)
        if (*t >= '0' && *t <= '9' && n < 64) d[n++] = *t;
    int a = 0, z = n;
    while (a < n && d[a] == '0') a++;
    while (z > a && d[z - 1] == '0') z--;
    return z - a;
}

/* Fewest %g digits that read back as v. */
static int shortest_ref(double v, bool is_float)
{
    char tmp[40];
    for (int p = 1; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (is_float ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) return p;
    }
    return 17;
}

static void test_encode_floats_shortest(void **state)
{
    (void)state;
    /* protobuf-go's layout: plain notation for 1e-6 <= |v| < 1e21, exponent form outside; -0.0 */
    const struct { double v; const char *want; } dv[] = {
        {0.1, "0.1"}, {1.0 / 3, "0.3333333333333333"}, {1e21, "1e+21"}, {123456789.0, "123456789"},
        {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {1e20, "100000000000000000000"},
        {9.999999999999999e20, "999999999999999900000"}, {1e-6, "0.000001"}, {1.5e-6, "0.0000015"},
        {9.99e-7, "9.99e-7"}, {1e-7, "1e-7"}, {-1.25e-100, "-1.25e-100"}, {100000, "100000"}, {-0.0, "-0.0"},
        {INFINITY, "\"Infinity\""}, {-INFINITY, "\"-Infinity\""}, {NAN, "\"NaN\""}, {-2.5, "-2.5"},
    };
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) {
        Dovetail__V1__Weights w = DOVETAIL__V1__WEIGHTS__INIT;
        w.dense = dv[i].v;
        char *s = enc(&w.base, false, false);
        char want[96];
        snprintf(want, sizeof want, "{\"dense\":%s}", dv[i].want);
        assert_string_equal(s, want);
        free(s);
    }
    /* random bit patterns: the text reads back to the same value, and no shorter %g form does */
    uint64_t x = 0x9E3779B97F4A7C15u;
    size_t not_shortest = 0;
    for (int it = 0; it < 20000; it++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t fb = (uint32_t)x;
        float f;
        double d;
        memcpy(&f, &fb, 4);
        memcpy(&d, &x, 8);
        if (!isfinite(f) || !isfinite(d)) continue;
        Dovetail__V1__Record r = DOVETAIL__V1__RECORD__INIT;
        r.n_embedding = 1;
        r.embedding = &f;
        r.price_min_present_case = DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT_PRICE_MIN;
        r.price_min = d;
        char *s = enc(&r.base, false, false);
        const char *pf = strstr(s, "\"embedding\":[") + 13, *pd = strstr(s, "\"priceMin\":") + 11;
        if (strtof(pf, NULL) != f) fail_msg("float %a did not round-trip: %s", (double)f, s);
        if (strtod(pd, NULL) != d) fail_msg("double %a did not round-trip: %s", d, s);
        /* as few significant digits as a linear search finds */
        if (sig_digits(pf) != shortest_ref(f, true)) not_shortest++;
        if (sig_digits(pd) != shortest_ref(d, false)) not_shortest++;
        free(s);
    }
    assert_int_equal(not_shortest, 0);
}

static void test_round_trip_binary_json_binary(void **state)
{
    (void)state;
    /* a full MatchResponse built in C, through binary first (as the server would hold it) */
    Dovetail__V1__StructuredPart parts[2] = {DOVETAIL__V1__STRUCTURED_PART__INIT, DOVETAIL__V1__STRUCTURED_PART__INIT};
    parts[0].name = "field";
    parts[0].value = 0.125;
    parts[1].name = "trl";
    parts[1].value = -1e-9;
    Dovetail__V1__StructuredPart *pp[2] = {&parts[0], &parts[1]};
    Dovetail__V1__Term terms[1] = {DOVETAIL__V1__TERM__INIT};
    terms[0].term = "\xe7\x94\xb5\xe6\xb1\xa0";
    terms[0].weight = 3.25;
    Dovetail__V1__Term *tp[1] = {&terms[0]};
    Dovetail__V1__Explanation ex = DOVETAIL__V1__EXPLANATION__INIT;
    ex.dense = 0.5;
    ex.lexical = 0.25;
    ex.structured = 0.125;
    ex.n_structured_parts = 2;
    ex.structured_parts = pp;
    ex.n_terms = 1;
    ex.terms = tp;
    Dovetail__V1__Match m[2] = {DOVETAIL__V1__MATCH__INIT, DOVETAIL__V1__MATCH__INIT};
    Dovetail__V1__Mode modes[2] = {DOVETAIL__V1__MODE__MODE_EQUITY, DOVETAIL__V1__MODE__MODE_CONSULTING};
    m[0].id = "a-17";
    m[0].side = DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT;
    m[0].score = 0.875;
    m[0].title = "Solid-state electrolyte";
    m[0].trl = 7;
    m[0].n_modes = 2;
    m[0].modes = modes;
    m[0].price_min_present_case = DOVETAIL__V1__MATCH__PRICE_MIN_PRESENT_PRICE_MIN;
    m[0].price_min = 0;
    m[0].explanation = &ex;
    m[1].id = "a-3";
    m[1].price_max_present_case = DOVETAIL__V1__MATCH__PRICE_MAX_PRESENT_PRICE_MAX;
    m[1].price_max = 1e7;
    Dovetail__V1__Match *mp[2] = {&m[0], &m[1]};
    Dovetail__V1__MatchResponse resp = DOVETAIL__V1__MATCH_RESPONSE__INIT;
    resp.n_matches = 2;
    resp.matches = mp;
    resp.total_candidates = 1234;
    resp.cached = 1;
    resp.index_epoch = (uint64_t)1 << 60;
    size_t n;
    uint8_t *bin = pack(&resp.base, &n);
    ProtobufCMessage *un = protobuf_c_message_unpack(D(match_response), NULL, n, bin);
    assert_non_null(un);
    assert_round_trip(un);
    protobuf_c_message_free_unpacked(un, NULL);
    free(bin);

    /* every request type from JSON */
    const struct { const ProtobufCMessageDescriptor *d; const char *json; } reqs[] = {
        {D(upsert_records_request), "{\"tenant\":\"t\",\"records\":[{\"id\":\"1\"},{\"id\":\"2\",\"embedding\":[1,2]}]}"},
        {D(delete_records_request), "{\"tenant\":\"t\",\"side\":\"SIDE_DEMAND\",\"ids\":[\"1\",\"2\"]}"},
        {D(delete_records_response), "{\"deleted\":1,\"notFound\":[\"2\"],\"indexEpoch\":\"9\"}"},
        {D(get_record_request), "{\"side\":2,\"id\":\"x\"}"},
        {D(match_request),
         "{\"tenant\":\"t\",\"text\":\"\xe6\xb0\xa2\xe8\x83\xbd\",\"targetSide\":\"SIDE_ACHIEVEMENT\",\"filter\":{"
         "\"fieldPrefixes\":[\"C.38\"],\"regions\":[\"CN.32\"],\"clusters\":[\"yrd\"],\"trlMin\":4,\"trlMax\":9,"
         "\"modes\":[\"MODE_LICENSE\"],\"priceMin\":0,\"tags\":[\"srdi\"],\"includeClosed\":true,\"excludeIds\":[\"a\"]},"
         "\"k\":20,\"offset\":40,\"explain\":true,\"weights\":{\"dense\":0.6,\"lexical\":0.3,\"structured\":0.1}}"},
        {D(stats_response),
         "{\"tenants\":[{\"tenant\":\"public\",\"demands\":3,\"achievements\":4,\"open\":6,\"closed\":1,"
         "\"indexEpoch\":\"12\",\"dimension\":256}]}"},
        {D(stats_request), "{\"tenant\":\"t\",\"groups\":true,\"fieldDepth\":0,\"region_depth\":3}"},
        {D(stats_response),
         "{\"tenants\":[{\"tenant\":\"t\",\"demandsOpen\":2,\"servedDemands\":\"18446744073709551615\","
         "\"events\":{\"viewed\":\"4\",\"dealSigned\":\"1\"},\"declines\":{\"price\":\"2\"},\"conversion\":0.25,"
         "\"dealAmount\":1250000.5,\"groups\":[{\"field\":\"C\",\"region\":\"-\",\"events\":{},"
         "\"contactedPairs\":\"4\"}]}]}"},
        {D(record_outcome_request),
         "{\"tenant\":\"t\",\"outcomes\":[{\"demandId\":\"d\",\"achievement_id\":\"a\",\"kind\":"
         "\"OUTCOME_KIND_DECLINED\",\"reason\":3,\"at\":\"1700000000\"},{\"demand_id\":\"d\",\"achievementId\":"
         "\"a\",\"kind\":6,\"amount\":0}]}"},
        {D(record_outcome_response), "{\"recorded\":2,\"tenantOutcomes\":\"7\",\"indexEpoch\":\"30\"}"},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        ProtobufCMessage *msg = dec_ok(reqs[i].d, reqs[i].json);
        uint8_t *b = pack(msg, &n);
        ProtobufCMessage *u = protobuf_c_message_unpack(reqs[i].d, NULL, n, b);
        assert_non_null(u);
        assert_round_trip(u);
        assert_round_trip(msg);
        protobuf_c_message_free_unpacked(u, NULL);
        free(b);
        free_msg(msg);
    }
}

/* RecordOutcome: enum names and numbers decode alike; an amount of 0 is present (a free licence). */
static void test_decode_outcomes(void **state)
{
    (void)state;
    Dovetail__V1__RecordOutcomeRequest *a = (void *)dec_ok(
        D(record_outcome_request),
        "{\"outcomes\":[{\"demandId\":\"d\",\"achievementId\":\"a\",\"kind\":\"OUTCOME_KIND_DEAL_SIGNED\","
        "\"reason\":\"DECLINE_REASON_UNSPECIFIED\",\"amount\":0}]}");
    Dovetail__V1__RecordOutcomeRequest *b = (void *)dec_ok(
        D(record_outcome_request),
        "{\"outcomes\":[{\"demand_id\":\"d\",\"achievement_id\":\"a\",\"kind\":6,\"reason\":0,\"amount\":\"0\"}]}");
    for (int i = 0; i < 2; i++) {
        Dovetail__V1__RecordOutcomeRequest *r = i ? b : a;
        assert_int_equal(r->n_outcomes, 1);
        assert_int_equal(r->outcomes[0]->kind, DOVETAIL__V1__OUTCOME_KIND__OUTCOME_KIND_DEAL_SIGNED);
        assert_int_equal(r->outcomes[0]->reason, DOVETAIL__V1__DECLINE_REASON__DECLINE_REASON_UNSPECIFIED);
        assert_int_equal(r->outcomes[0]->amount_present_case, DOVETAIL__V1__OUTCOME__AMOUNT_PRESENT_AMOUNT);
        assert_true(r->outcomes[0]->amount == 0);
    }
    size_t na, nb;
    uint8_t *pa = pack(&a->base, &na), *pb = pack(&b->base, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
    free_msg(a);
    free_msg(b);
    /* an unknown kind name is refused naming the field */
    ProtobufCMessage *m = NULL;
    dt_err err = DT_ERR_INIT;
    const char *bad = "{\"outcomes\":[{},{\"kind\":\"OUTCOME_KIND_ADOPTED\"}]}";
    assert_int_equal(dt_pbjson_decode(D(record_outcome_request), bad, strlen(bad), 0, &m, &err), -DT_EINVAL);
    assert_null(m);
    assert_string_equal(err.field, "outcomes[1].kind");
    /* every name is listed */
    assert_non_null(strstr(err.msg, "OUTCOME_KIND_NEGOTIATING, OUTCOME_KIND_DEAL_SIGNED (or a number)"));
    dec_err(D(agenda), "{\"reasons\":[\"SHORTFALL_REASON_NONE\"]}", "reasons[0]",
            "SHORTFALL_REASON_UNSPECIFIED, SHORTFALL_REASON_NO_CANDIDATES, SHORTFALL_REASON_NEVER_MEET, "
            "SHORTFALL_REASON_SAME_ORG, SHORTFALL_REASON_MET_BEFORE, SHORTFALL_REASON_PARTNERS_FULL, "
            "SHORTFALL_REASON_TABLES, SHORTFALL_REASON_LOW_VALUE, SHORTFALL_REASON_UNSCHEDULED, "
            "SHORTFALL_REASON_SME_FULL, SHORTFALL_REASON_HOLDER_FULL (or a number)");
}

/* ---------------------------------------------------------------- test.Kitchen: bytes, maps, other integers */

static void test_kitchen_bytes(void **state)
{
    (void)state;
    /* RFC 4648 section 10 vectors */
    const char *b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    const char *raw[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    for (size_t i = 0; i < 7; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"blob\":\"%s\"}", b64[i]);
        Kitchen *k = (Kitchen *)dec_ok(&kitchen_desc, json);
        assert_int_equal(k->blob.len, strlen(raw[i]));
        if (k->blob.len) assert_memory_equal(k->blob.data, raw[i], k->blob.len);
        char *s = enc(&k->base, false, false);
        assert_string_equal(s, i ? json : "{}");
        free(s);
        free_msg(k);
    }
    /* URL-safe alphabet and missing padding are accepted */
    Kitchen *k = (Kitchen *)dec_ok(&kitchen_desc, "{\"blobs\":[\"-_8\",\"+/8=\",\"Zm9vYg\",\"\",\"AA\"],\"pickBytes\":\"\"}");
    assert_int_equal(k->n_blobs, 5);
    assert_int_equal(k->blobs[0].len, 2);
    assert_memory_equal(k->blobs[0].data, "\xfb\xff", 2);
    assert_memory_equal(k->blobs[1].data, "\xfb\xff", 2);
    assert_memory_equal(k->blobs[2].data, "foob", 4);
    assert_int_equal(k->blobs[3].len, 0);
    assert_int_equal(k->blobs[4].len, 1);
    assert_int_equal(k->pick_case, 16);
    char *s = enc(&k->base, false, false);
    assert_string_equal(s, "{\"blobs\":[\"+/8=\",\"+/8=\",\"Zm9vYg==\",\"\",\"AA==\"],\"pickBytes\":\"\"}");
    free(s);
    assert_round_trip(&k->base);
    free_msg(k);
    dec_err(&kitchen_desc, "{\"blob\":\"Zm9v!\"}", "blob", "base64");
    dec_err(&kitchen_desc, "{\"blob\":\"Z\"}", "blob", "base64");
    dec_err(&kitchen_desc, "{\"blob\":\"Zg=\"}", "blob", "base64");
    dec_err(&kitchen_desc, "{\"blob\":\"Zg===\"}", "blob", "base64");
    dec_err(&kitchen_desc, "{\"blob\":\"Z=g=\"}", "blob", "base64");
    dec_err(&kitchen_desc, "{\"blobs\":[\"AA\",5]}", "blobs[1]", "expected a base64 string");
    dec_err(&kitchen_desc, "{\"pickBytes\":\"AA\",\"pick_i64\":\"1\"}", "pick_i64", "alternatives");
}

static void test_kitchen_maps(void **state)
{
    (void)state;
    Kitchen *k = (Kitchen *)dec_ok(
        &kitchen_desc, "{\"counts\":{\"a\":\"1\",\"\xe7\x94\xb5\":-2,\"\":0},\"names\":{\"-7\":\"minus\",\"2147483647\":\"max\"},"
                       "\"flags\":{\"true\":{\"s32\":-1},\"false\":{}}}");
    assert_int_equal(k->n_counts, 3);
    assert_string_equal(k->counts[0]->key, "a");
    assert_int_equal(k->counts[0]->value, 1);
    assert_string_equal(k->counts[1]->key, "\xe7\x94\xb5");
    assert_int_equal(k->counts[1]->value, -2);
    assert_string_equal(k->counts[2]->key, "");
    assert_int_equal(k->n_names, 2);
    assert_int_equal(k->names[0]->key, -7);
    assert_string_equal(k->names[0]->value, "minus");
    assert_int_equal(k->names[1]->key, INT32_MAX);
    assert_int_equal(k->n_flags, 2);
    assert_true(k->flags[0]->key);
    assert_int_equal(k->flags[0]->value->s32, -1);
    assert_false(k->flags[1]->key);
    assert_non_null(k->flags[1]->value);
    char *s = enc(&k->base, false, false);
    assert_string_equal(s, "{\"counts\":{\"a\":\"1\",\"\xe7\x94\xb5\":\"-2\",\"\":\"0\"},\"names\":{\"-7\":\"minus\","
                           "\"2147483647\":\"max\"},\"flags\":{\"true\":{\"s32\":-1},\"false\":{}}}");
    free(s);
    assert_round_trip(&k->base);
    /* the binary form is protobuf's map encoding: unpacking gives the same entries */
    size_t n;
    uint8_t *b = pack(&k->base, &n);
    ProtobufCMessage *u = protobuf_c_message_unpack(&kitchen_desc, NULL, n, b);
    assert_non_null(u);
    assert_same(u, &k->base);
    protobuf_c_message_free_unpacked(u, NULL);
    free(b);
    free_msg(k);
    k = (Kitchen *)dec_ok(&kitchen_desc, "{\"counts\":{},\"names\":null}");
    assert_int_equal(k->n_counts, 0);
    s = enc(&k->base, true, true);
    assert_non_null(strstr(s, "\"counts\":{},\"names\":{}"));
    assert_non_null(strstr(s, "\"flags\":{}"));
    assert_non_null(strstr(s, "\"child\":null"));
    free(s);
    free_msg(k);

    dec_err(&kitchen_desc, "{\"names\":{\"x\":\"a\"}}", "names[\"x\"]", "not an integer");
    dec_err(&kitchen_desc, "{\"names\":{\"2147483648\":\"a\"}}", "names[\"2147483648\"]", "out of range");
    dec_err(&kitchen_desc, "{\"names\":{\"1\":5}}", "names[\"1\"]", "expected a string");
    dec_err(&kitchen_desc, "{\"counts\":{\"a\":null}}", "counts[\"a\"]", "null is not allowed as a map value");
    dec_err(&kitchen_desc, "{\"counts\":{\"a\":\"1\",\"b\":1.5}}", "counts[\"b\"]", "expected an integer");
    dec_err(&kitchen_desc, "{\"counts\":[]}", "counts", "expected an object (a map)");
    dec_err(&kitchen_desc, "{\"flags\":{\"yes\":{}}}", "flags[\"yes\"]", "\"true\" or \"false\"");
    dec_err(&kitchen_desc, "{\"flags\":{\"true\":{\"f\":\"x\"}}}", "flags[\"true\"].f", "expected a number");
    dec_err(&kitchen_desc, "{\"counts\":{\"\xff\":1}}", "counts[\"\xf4\x8f\xbf\xbf\"]", "not valid UTF-8");
}

static void test_kitchen_integers(void **state)
{
    (void)state;
    Kitchen *k = (Kitchen *)dec_ok(&kitchen_desc,
                                   "{\"s32\":-2147483648,\"s64\":\"-9223372036854775808\",\"fx32\":4294967295,"
                                   "\"fx64\":\"18446744073709551615\",\"sfx32\":\"-1\",\"sfx64\":-1,\"f\":\"-1.5\","
                                   "\"u64\":\"1e19\",\"bools\":[true,false,true],\"pick_i64\":\"0\"}");
    assert_int_equal(k->s32, INT32_MIN);
    assert_true(k->s64 == INT64_MIN);
    assert_int_equal(k->fx32, UINT32_MAX);
    assert_true(k->fx64 == UINT64_MAX);
    assert_int_equal(k->sfx32, -1);
    assert_int_equal(k->sfx64, -1);
    assert_true(k->f == -1.5f);
    assert_true(k->u64 == 10000000000000000000u);
    assert_int_equal(k->n_bools, 3);
    assert_true(k->bools[0] && !k->bools[1] && k->bools[2]);
    assert_int_equal(k->pick_case, 17);
    char *s = enc(&k->base, true, false);
    assert_string_equal(s, "{\"s32\":-2147483648,\"s64\":\"-9223372036854775808\",\"fx32\":4294967295,"
                           "\"fx64\":\"18446744073709551615\",\"sfx32\":-1,\"sfx64\":\"-1\",\"f\":-1.5,"
                           "\"u64\":\"10000000000000000000\",\"bools\":[true,false,true],\"pick_i64\":\"0\"}");
    free(s);
    assert_round_trip(&k->base);
    free_msg(k);
    dec_err(&kitchen_desc, "{\"fx32\":-1}", "fx32", "out of range");
    dec_err(&kitchen_desc, "{\"fx64\":\"2e19\"}", "fx64", "out of range");
    dec_err(&kitchen_desc, "{\"sfx32\":2147483648}", "sfx32", "out of range");
    dec_err(&kitchen_desc, "{\"bools\":[true,1]}", "bools[1]", "expected true or false");
    dec_err(&kitchen_desc, "{\"child\":{\"child\":{\"s64\":1.25}}}", "child.child.s64", "expected an integer");
    dec_err(&kitchen_desc, "{\"child\":5}", "child", "expected an object (message test.Kitchen)");
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Integer parsing against an independent reference: __int128 arithmetic on random decimal forms. */
static void test_integer_forms_against_reference(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252u;
    int n_ok = 0, n_frac = 0, n_range = 0;
    for (int it = 0; it < 20000; it++) {
        char digits[40], num[96];
        int nd = 1 + (int)(xorshift(&x) % 24);
        for (int i = 0; i < nd; i++) digits[i] = (char)('0' + xorshift(&x) % 10);
        if (xorshift(&x) % 3 == 0) /* trailing zeros, common in exponent forms */
            for (int i = nd - 1 - (int)(xorshift(&x) % 6); i < nd; i++)
                if (i >= 0) digits[i] = '0';
        if (nd > 1 && digits[0] == '0') digits[0] = '1' + (char)(xorshift(&x) % 9);
        digits[nd] = '\0';
        int point = (xorshift(&x) % 2) ? (int)(xorshift(&x) % (unsigned)nd) : -1; /* digits after the point */
        int exp = (xorshift(&x) % 2) ? (int)(xorshift(&x) % 41) - 20 : 0;
        bool neg = xorshift(&x) % 2;
        char *p = num;
        if (neg) *p++ = '-';
        if (point > 0) {
            p += sprintf(p, "%.*s.%s", nd - point, digits, digits + nd - point);
        } else {
            p += sprintf(p, "%s", digits);
        }
        if (exp || xorshift(&x) % 4 == 0) p += sprintf(p, "%c%d", xorshift(&x) % 2 ? 'e' : 'E', exp);
        /* reference: mantissa * 10^(exp - point) */
        unsigned __int128 mant = 0;
        for (int i = 0; i < nd; i++) mant = mant * 10 + (unsigned)(digits[i] - '0');
        int e = exp - (point > 0 ? point : 0);
        const unsigned __int128 LIM = (unsigned __int128)1 << 64;
        int kind; /* 0 ok, 1 fraction, 2 range */
        unsigned __int128 v = mant;
        if (mant == 0) {
            kind = 0;
        } else if (e < -30) {
            kind = 1; /* mant < 10^24 is not a multiple of 10^31 */
        } else if (e < 0) {
            unsigned __int128 pw = 1;
            for (int i = 0; i < -e; i++) pw *= 10;
            kind = v % pw ? 1 : 0;
            v /= pw;
        } else {
            kind = 0;
            for (int i = 0; i < e && kind == 0; i++) {
                if (v >= LIM) kind = 2;
                v *= 10;
            }
        }
        if (kind == 0 && (neg ? v > ((unsigned __int128)1 << 63) : v > (((unsigned __int128)1 << 63) - 1))) kind = 2;
        char json[160];
        snprintf(json, sizeof json, "{\"updatedAt\":\"%s\"}", num);
        dt_err err;
        ProtobufCMessage *m = NULL;
        int rc = decode(D(record), json, 0, &m, &err);
        if (kind == 0) {
            if (rc) fail_msg("%s: unexpected error %s", num, err.msg);
            int64_t want = neg ? (int64_t)(0 - (uint64_t)v) : (int64_t)v;
            if (((Dovetail__V1__Record *)m)->updated_at != want) fail_msg("%s: got %" PRId64, num, ((Dovetail__V1__Record *)m)->updated_at);
            free_msg(m);
            n_ok++;
        } else {
            if (rc != (kind == 1 ? -DT_EINVAL : -DT_ERANGE)) fail_msg("%s: accepted, expected an error", num);
            const char *want = kind == 1 ? "expected an integer" : "out of range";
            if (!strstr(err.msg, want)) fail_msg("%s: \"%s\" lacks \"%s\"", num, err.msg, want);
            if (kind == 1) n_frac++;
            else n_range++;
        }
    }
    assert_true(n_ok > 1000 && n_frac > 1000 && n_range > 1000); /* every branch exercised */
    /* and plain decimal forms against strtoll / strtoull */
    for (int it = 0; it < 5000; it++) {
        uint64_t u = xorshift(&x);
        u >>= xorshift(&x) % 64;
        char json[96];
        snprintf(json, sizeof json, "{\"u64\":\"%" PRIu64 "\",\"s64\":%" PRId64 ",\"fx32\":%" PRIu32 "}", u, (int64_t)u,
                 (uint32_t)u);
        Kitchen *k = (Kitchen *)dec_ok(&kitchen_desc, json);
        char ref[32];
        snprintf(ref, sizeof ref, "%" PRIu64, u);
        assert_true(k->u64 == strtoull(ref, NULL, 10));
        snprintf(ref, sizeof ref, "%" PRId64, (int64_t)u);
        assert_true(k->s64 == strtoll(ref, NULL, 10));
        assert_int_equal(k->fx32, (uint32_t)u);
        free_msg(k);
    }
}

/* Mutations of a valid request: every outcome is a clean error or a message that re-encodes to
 * the same message. Under ASan this checks every error path for leaks and overflows. */
static void test_mutations_fail_cleanly(void **state)
{
    (void)state;
    char base[2048];
    snprintf(base, sizeof base,
             "{\"tenant\":\"t\",\"records\":[%s,{\"id\":\"b\",\"text\":\"x\",\"priceMax\":1e3,\"modes\":[1,2]}]}",
             RECORD_CAMEL);
    size_t n = strlen(base);
    static const char subst[] = {'"', '{', '}', '[', ']', ',', ':', '1', '-', 'e', '.', 'x', 'n', '\\', ' ', '\xff', '\0'};
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    size_t accepted = 0, rejected = 0;
    for (size_t len = 0; len <= n; len++) { /* truncations */
        ProtobufCMessage *m = NULL;
        dt_err e = DT_ERR_INIT;
        int rc = dt_pbjson_decode(D(upsert_records_request), base, len, 0, &m, &e);
        if (len == n) assert_int_equal(rc, 0);
        else assert_int_equal(rc, -DT_EINVAL);
        if (m) free_msg(m);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(buf, base, n + 1);
            buf[i] = subst[s];
            ProtobufCMessage *m = NULL;
            dt_err e = DT_ERR_INIT;
            int rc = dt_pbjson_decode(D(upsert_records_request), buf, n, 0, &m, &e);
            if (rc) {
                assert_int_equal(rc, -DT_EINVAL);
                assert_null(m);
                assert_true(e.msg[0] != '\0');
                rejected++;
                continue;
            }
            accepted++;
            assert_round_trip(m);
            free_msg(m);
        }
    }
    free(buf);
    assert_true(accepted > 100 && rejected > 1000);
}

static void *failing_malloc(size_t n)
{
    (void)n;
    return NULL;
}

/* Every allocation of a decode and of an encode fails once in turn: the result is -DT_ENOMEM /
 * NULL, never a crash or a leak (ASan), and the next attempt works. jansson's own allocations are
 * not injected past its first one: jansson 2.14 ignores some failed allocations and silently
 * drops bytes (jansson issue #362), which no caller can repair. */
static void test_out_of_memory_everywhere(void **state)
{
    (void)state;
    char upsert[2048];
    snprintf(upsert, sizeof upsert, "{\"tenant\":\"t\",\"records\":[%s,{\"id\":\"b\",\"priceMin\":-0}]}", RECORD_CAMEL);
    const struct { const ProtobufCMessageDescriptor *d; const char *json; } cases[] = {
        {D(upsert_records_request), upsert},
        {D(match_request), "{\"record\":{\"id\":\"x\"},\"filter\":{\"tags\":[\"a\",\"b\"]},\"weights\":{}}"},
        {&kitchen_desc, "{\"blob\":\"Zm9v\",\"blobs\":[\"AA\"],\"counts\":{\"a\":1,\"b\":2},\"names\":{\"1\":\"x\"},"
                        "\"flags\":{\"true\":{\"child\":{}}},\"bools\":[true],\"pickBytes\":\"AA\",\"u64\":18446744073709551615}"},
        {&kitchen_desc, "{\"counts\":{\"\xff\":1}}"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ProtobufCMessage *good = NULL;
        dt_err e = DT_ERR_INIT;
        int want = dt_pbjson_decode(cases[c].d, cases[c].json, strlen(cases[c].json), 0, &good, &e);
        assert_int_equal(want, c == 3 ? -DT_EINVAL : 0);
        size_t injected = 0;
        for (long n = 1;; n++) {
            fi_calls = 0;
            fi_fail_at = n;
            ProtobufCMessage *m = NULL;
            int rc = fi_pbjson_decode(cases[c].d, cases[c].json, strlen(cases[c].json), 0, &m, &e);
            if (fi_calls < n) { /* nothing failed: the final, complete run */
                fi_fail_at = -1;
                assert_int_equal(rc, want);
                if (m) assert_same(m, good);
                if (m) free_msg(m);
                break;
            }
            injected++;
            if (rc != -DT_ENOMEM) fail_msg("case %zu, allocation %ld failed: rc %d [%s] %s", c, n, rc, e.field, e.msg);
            assert_null(m);
        }
        assert_true(injected > 0);
        if (!good) continue;
        for (long n = 1;; n++) {
            fi_calls = 0;
            fi_fail_at = n;
            dt_pbjson_opts o = {.emit_defaults = true};
            char *s = fi_pbjson_encode(good, &o, NULL);
            if (fi_calls < n) {
                fi_fail_at = -1;
                assert_non_null(s);
                free(s);
                break;
            }
            assert_null(s);
        }
        free_msg(good);
    }
    fi_fail_at = -1;
    /* jansson out of memory from the start: reported as such */
    json_set_alloc_funcs(failing_malloc, free);
    ProtobufCMessage *m = NULL;
    dt_err e = DT_ERR_INIT;
    int rc = dt_pbjson_decode(D(record), "{\"id\":\"x\"}", 10, 0, &m, &e);
    json_set_alloc_funcs(malloc, free);
    assert_int_equal(rc, -DT_ENOMEM);
    assert_null(m);
}

/* ---------------------------------------------------------------- the decoding budget */

static size_t json_bytes; /* bytes jansson asked for, in all */
static void *counting_json_malloc(size_t n)
{
    json_bytes += n;
    return malloc(n);
}

/* A JSON text built by repetition: head, then n copies of item separated by commas, then tail. */
static char *repeat_json(const char *head, const char *item, size_t n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), il = strlen(item), tl = strlen(tail);
    char *t = malloc(hl + n * (il + 1) + tl + 1);
    assert_non_null(t);
    size_t o = 0;
    memcpy(t, head, hl), o += hl;
    for (size_t i = 0; i < n; i++) {
        if (i) t[o++] = ',';
        memcpy(t + o, item, il), o += il;
    }
    memcpy(t + o, tail, tl), o += tl;
    t[o] = 0;
    *len = o;
    return t;
}

/* What decoding really asks for (jansson's requests plus pbjson's own, counted through the
 * instrumented copy) never exceeds the estimate scan_cost gives before parsing, for shapes that
 * cost far more than their size: empty objects, long lists of tiny numbers, short strings,
 * unknown keys, nested unknown structure, CJK text. The estimate stays within a small factor. */
static void test_decode_budget_bounds_allocations(void **state)
{
    (void)state;
    char *big_kw = NULL;
    struct {
        const ProtobufCMessageDescriptor *d;
        const char *head, *item, *tail;
        size_t n;
    } shapes[] = {
        {D(upsert_records_request), "{\"records\":[", "{}", "]}", 20000},
        {D(upsert_records_request), "{\"records\":[{\"id\":\"a\",\"embedding\":[", "0", "]}]}", 50000},
        {D(upsert_records_request), "{\"records\":[{\"id\":\"a\",\"embedding\":[", "0.123456789", "]}]}", 20000},
        {D(upsert_records_request), "{\"records\":[{\"id\":\"a\",\"keywords\":[", "\"k\"", "]}]}", 20000},
        {D(upsert_records_request), "{\"records\":[", "{\"id\":\"锂电池隔膜\",\"title\":\"硫化物固态电解质锂电池\"}", "]}", 3000},
        {D(match_request), "{\"unknown\":[", "[]", "]}", 20000},
        {D(match_request), "{\"unknown\":[", "{\"a\":{\"b\":[1,{},\"x\"]}}", "]}", 5000},
        {D(match_request), "{\"unknown\":[", "true", "]}", 50000},
        {D(match_request), "{\"filter\":{\"tags\":[", "\"\"", "]}}", 30000},
        {D(delete_records_request), "{\"side\":\"SIDE_DEMAND\",\"ids\":[", "\"12345678\"", "]}", 20000},
        {D(pair_event_request), "{\"mustMeet\":[", "{\"smeId\":\"s\",\"holderId\":\"h\"}", "]}", 10000},
        {D(upsert_records_request), "{\"records\":[", RECORD_CAMEL, "]}", 300},
    };
    /* unknown keys: {"k0":0,"k1":0,...} */
    size_t kl = 0;
    {
        size_t cap = 20000 * 16 + 16;
        big_kw = malloc(cap);
        assert_non_null(big_kw);
        kl = (size_t)snprintf(big_kw, cap, "{");
        for (int i = 0; i < 20000; i++) kl += (size_t)snprintf(big_kw + kl, cap - kl, "%s\"k%d\":0", i ? "," : "", i);
        kl += (size_t)snprintf(big_kw + kl, cap - kl, "}");
    }
    for (size_t c = 0; c <= sizeof shapes / sizeof *shapes; c++) {
        size_t len;
        char *text;
        const ProtobufCMessageDescriptor *d;
        if (c < sizeof shapes / sizeof *shapes) {
            text = repeat_json(shapes[c].head, shapes[c].item, shapes[c].n, shapes[c].tail, &len);
            d = shapes[c].d;
        } else {
            text = big_kw;
            len = kl;
            d = D(match_request);
        }
        scan sc;
        walk_text(text, len, DT_PBJSON_MAX_DEPTH, &sc, NULL, false);
        size_t est = scan_cost(&sc, len);
        json_bytes = fi_bytes = 0;
        json_set_alloc_funcs(counting_json_malloc, free);
        ProtobufCMessage *m = NULL;
        dt_err e = DT_ERR_INIT;
        int rc = fi_pbjson_decode_bounded(d, text, len, 0, est, &m, &e);
        json_set_alloc_funcs(malloc, free);
        size_t real = json_bytes + fi_bytes;
        if (rc || real > est || est > 8 * real + 8192)
            fail_msg("shape %zu: rc %d (%s: %s), %zu bytes of text, asked for %zu, estimate %zu", c, rc, e.field,
                     e.msg, len, real, est);
        free_msg(m);
        /* one byte less of budget: refused before parsing, with the figures */
        m = NULL;
        memset(&e, 0, sizeof e);
        assert_int_equal(dt_pbjson_decode_bounded(d, text, len, 0, est - 1, &m, &e), -DT_ELIMIT);
        assert_null(m);
        assert_non_null(strstr(e.msg, "bytes of memory"));
        if (c < 3) assert_non_null(strstr(e.msg, "line 1, column"));
        if (text != big_kw) free(text);
    }
    free(big_kw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contract_compiles_with_expected_shape),
        cmocka_unit_test(test_json_name),
        cmocka_unit_test(test_decode_record_both_spellings),
        cmocka_unit_test(test_decode_defaults_and_null),
        cmocka_unit_test(test_decode_unknown_fields_ignored),
        cmocka_unit_test(test_decode_same_field_twice),
        cmocka_unit_test(test_decode_enums),
        cmocka_unit_test(test_decode_int64),
        cmocka_unit_test(test_decode_32_and_unsigned),
        cmocka_unit_test(test_decode_floats),
        cmocka_unit_test(test_decode_oneofs),
        cmocka_unit_test(test_decode_nested_paths),
        cmocka_unit_test(test_decode_big_and_negative_zero_numbers),
        cmocka_unit_test(test_decode_not_an_object),
        cmocka_unit_test(test_decode_strings_utf8_and_nul),
        cmocka_unit_test(test_decode_depth_limit),
        cmocka_unit_test(test_encode_forms),
        cmocka_unit_test(test_encode_floats_shortest),
        cmocka_unit_test(test_round_trip_binary_json_binary),
        cmocka_unit_test(test_decode_outcomes),
        cmocka_unit_test(test_kitchen_bytes),
        cmocka_unit_test(test_kitchen_maps),
        cmocka_unit_test(test_kitchen_integers),
        cmocka_unit_test(test_integer_forms_against_reference),
        cmocka_unit_test(test_mutations_fail_cleanly),
        cmocka_unit_test(test_out_of_memory_everywhere),
        cmocka_unit_test(test_decode_budget_bounds_allocations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
