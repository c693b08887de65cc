/* test_record.c - the record lifecycle, validation rules and enum names (matcher/record.c). */
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

#include <utf8proc.h>

#include "record.h"

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

static char **xlist(size_t n, const char *const *v)
{
    char **l = calloc(n, sizeof *l);
    assert_non_null(l);
    for (size_t i = 0; i < n; i++)
        l[i] = xstrdup(v[i]);
    return l;
}

/* A record with every field set to a valid value. */
static void full_record(dt_record *r)
{
    dt_record_init(r);
    static const char *const kw[] = {"锂电池", "energy storage", "BMS"};
    static const char *const tags[] = {"srdi", "little_giant"};
    r->tenant = xstrdup("acme");
    r->id = xstrdup("D-0001");
    r->side = DT_ACHIEVEMENT;
    r->title = xstrdup("固态电池 solid-state battery");
    r->text = xstrdup("A long abstract.\nSecond line\twith a tab.");
    r->keywords = xlist(3, kw);
    r->n_keywords = 3;
    r->org = xstrdup("清华大学");
    r->field = xstrdup("C.38.4");
    r->region = xstrdup("CN.32.05");
    r->trl = 6;
    r->modes = DT_MODE_LICENSE | DT_MODE_JOINT_RD;
    r->price_min = 1e5;
    r->price_max = 5e5;
    r->tags = xlist(2, tags);
    r->n_tags = 2;
    r->status = DT_CLOSED;
    r->updated_at = 1700000000;
    r->dim = 4;
    r->embedding = malloc(4 * sizeof(float));
    assert_non_null(r->embedding);
    for (int i = 0; i < 4; i++)
        r->embedding[i] = 0.5f * (float)i - 0.25f;
}

static void test_init_absent(void **state)
{
    (void)state;
    dt_record r;
    memset(&r, 0xAB, sizeof r);
    dt_record_init(&r);
    assert_null(r.tenant);
    assert_null(r.id);
    assert_null(r.keywords);
    assert_int_equal(r.n_keywords, 0);
    assert_int_equal(r.trl, 0);
    assert_int_equal(r.modes, 0);
    assert_true(isnan(r.price_min));
    assert_true(isnan(r.price_max));
    assert_int_equal(r.status, DT_OPEN);
    assert_null(r.embedding);
    assert_int_equal(r.dim, 0);
    dt_record_free(&r);
    dt_record_free(&r);
    dt_record_free(NULL);
}

static void test_copy_is_deep(void **state)
{
    (void)state;
    dt_record src, dst;
    full_record(&src);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_record_copy(&dst, &src, &err), 0);
    assert_ptr_not_equal(dst.id, src.id);
    assert_ptr_not_equal(dst.keywords, src.keywords);
    assert_ptr_not_equal(dst.keywords[0], src.keywords[0]);
    assert_ptr_not_equal(dst.embedding, src.embedding);
    dt_record_free(&src); /* reading dst below is a use-after-free under ASan if it aliased src */
    assert_string_equal(dst.tenant, "acme");
    assert_string_equal(dst.id, "D-0001");
    assert_int_equal(dst.side, DT_ACHIEVEMENT);
    assert_string_equal(dst.title, "固态电池 solid-state battery");
    assert_string_equal(dst.text, "A long abstract.\nSecond line\twith a tab.");
    assert_int_equal(dst.n_keywords, 3);
    assert_string_equal(dst.keywords[0], "锂电池");
    assert_string_equal(dst.keywords[2], "BMS");
    assert_string_equal(dst.org, "清华大学");
    assert_string_equal(dst.field, "C.38.4");
    assert_string_equal(dst.region, "CN.32.05");
    assert_int_equal(dst.trl, 6);
    assert_int_equal(dst.modes, DT_MODE_LICENSE | DT_MODE_JOINT_RD);
    assert_true(dst.price_min == 1e5 && dst.price_max == 5e5);
    assert_int_equal(dst.n_tags, 2);
    assert_string_equal(dst.tags[1], "little_giant");
    assert_int_equal(dst.status, DT_CLOSED);
    assert_int_equal(dst.updated_at, 1700000000);
    assert_int_equal(dst.dim, 4);
    for (int i = 0; i < 4; i++)
        assert_true(dst.embedding[i] == 0.5f * (float)i - 0.25f);
    assert_int_equal(dt_record_validate(&dst, &err), 0);

    dt_record empty, e2;
    dt_record_init(&empty);
    assert_int_equal(dt_record_copy(&e2, &empty, &err), 0);
    assert_null(e2.id);
    assert_null(e2.keywords);
    assert_true(isnan(e2.price_min));
    dt_record_free(&e2);
    dt_record_free(&dst);
}

/* Validates r and checks the outcome: expected code (0 = valid), field, and a message substring. */
static void expect(const dt_record *r, int code, const char *field, const char *msg_part)
{
    dt_err err = DT_ERR_INIT;
    int rc = dt_record_validate(r, &err);
    if (rc != -code)
        fail_msg("validate returned %d (%s: %s), expected %d", rc, err.field, err.msg, -code);
    if (code == 0) return;
    assert_int_equal(err.code, code);
    assert_string_equal(err.field, field);
    if (msg_part && !strstr(err.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

static void set(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? xstrdup(v) : NULL;
}

static void test_validate_id(void **state)
{
    (void)state;
    dt_record r;
    full_record(&r);
    expect(&r, 0, NULL, NULL);
    set(&r.id, NULL);
    expect(&r, DT_EINVAL, "id", "missing");
    set(&r.id, "");
    expect(&r, DT_EINVAL, "id", "missing");
    set(&r.id, "abcd\nef");
    expect(&r, DT_EINVAL, "id", NULL);
    dt_err err = DT_ERR_INIT;
    dt_record_validate(&r, &err);
    assert_string_equal(err.msg, "contains a non-printable byte 0x0a at offset 4");
    set(&r.id, "ab\x7f");
    expect(&r, DT_EINVAL, "id", "non-printable byte 0x7f at offset 2");
    set(&r.id, "tab\there");
    expect(&r, DT_EINVAL, "id", "0x09 at offset 3");
    set(&r.id, " lead");
    expect(&r, DT_EINVAL, "id", "starts with white space");
    set(&r.id, "trail ");
    expect(&r, DT_EINVAL, "id", "ends with white space");
    set(&r.id, "全角\xE3\x80\x80"); /* U+3000 IDEOGRAPHIC SPACE at the end */
    expect(&r, DT_EINVAL, "id", "ends with white space");
    set(&r.id, "\xC2\xA0nbsp"); /* U+00A0 at the start */
    expect(&r, DT_EINVAL, "id", "starts with white space");
    set(&r.id, "inner space ok");
    expect(&r, 0, NULL, NULL);
    set(&r.id, "需求-2024/001");
    expect(&r, 0, NULL, NULL);
    set(&r.id, "bad\xC3(");
    expect(&r, DT_EINVAL, "id", "invalid UTF-8 (byte 0xc3) at offset 3");

    char id[DT_ID_MAX + 2];
    memset(id, 'x', sizeof id);
    id[DT_ID_MAX] = '\0';
    set(&r.id, id);
    expect(&r, 0, NULL, NULL);
    id[DT_ID_MAX] = 'x';
    id[DT_ID_MAX + 1] = '\0';
    set(&r.id, id);
    expect(&r, DT_ELIMIT, "id", "129 bytes");
    dt_record_free(&r);
}

static void test_validate_utf8_every_field(void **state)
{
    (void)state;
    const char *bad = "ok\xFF";
    struct {
        const char *field;
        size_t off;
    } cases[] = {{"tenant", offsetof(dt_record, tenant)}, {"title", offsetof(dt_record, title)},
                 {"text", offsetof(dt_record, text)},     {"org", offsetof(dt_record, org)},
                 {"field", offsetof(dt_record, field)},   {"region", offsetof(dt_record, region)}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dt_record r;
        full_record(&r);
        set((char **)((char *)&r + cases[i].off), bad);
        expect(&r, DT_EINVAL, cases[i].field, "invalid UTF-8 (byte 0xff) at offset 2");
        dt_record_free(&r);
    }
    dt_record r;
    full_record(&r);
    set(&r.keywords[2], "\xE4\xB8"); /* a truncated 3-byte sequence */
    expect(&r, DT_EINVAL, "keywords[2]", "invalid UTF-8 (byte 0xe4) at offset 0");
    set(&r.keywords[2], "ok");
    set(&r.tags[1], "\xED\xA0\x80"); /* an encoded surrogate */
    expect(&r, DT_EINVAL, "tags[1]", "invalid UTF-8");
    set(&r.tags[1], "\xC0\xAF"); /* an overlong '/' */
    expect(&r, DT_EINVAL, "tags[1]", "invalid UTF-8");
    set(&r.tags[1], "\xF4\x90\x80\x80"); /* beyond U+10FFFF */
    expect(&r, DT_EINVAL, "tags[1]", "invalid UTF-8");
    set(&r.tags[1], "\xF0\x9F\x94\x8B"); /* U+1F50B, valid */
    expect(&r, 0, NULL, NULL);
    dt_record_free(&r);
}

/* The validator's UTF-8 check against utf8proc_iterate, exhaustively over all 1-, 2- and 3-byte
 * strings and over random 4-byte strings. */
static bool ref_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

static void test_utf8_against_utf8proc(void **state)
{
    (void)state;
    unsigned char s[4];
    size_t mismatches = 0;
    for (uint32_t v = 0; v < (1u << 24); v++) {
        s[0] = (unsigned char)(v >> 16);
        s[1] = (unsigned char)(v >> 8);
        s[2] = (unsigned char)v;
        if (s[0] == 0 || s[1] == 0 || s[2] == 0) continue; /* NUL is not part of a C string */
        bool ok = dt_utf8_valid_prefix((const char *)s, 3) == 3;
        if (ok != ref_valid(s, 3)) mismatches++;
        if (v < (1u << 16)) {
            bool ok2 = dt_utf8_valid_prefix((const char *)s + 1, 2) == 2;
            if (ok2 != ref_valid(s + 1, 2)) mismatches++;
        }
    }
    assert_int_equal(mismatches, 0);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 4000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s[0] = (unsigned char)(0xE8 + (x & 0x0F)); /* 0xE8..0xF7: 3- and 4-byte leads and worse */
        s[1] = (unsigned char)(0x70 + ((x >> 8) & 0x5F));
        s[2] = (unsigned char)(0x70 + ((x >> 16) & 0x5F));
        s[3] = (unsigned char)(0x70 + ((x >> 24) & 0x5F));
        bool ok = dt_utf8_valid_prefix((const char *)s, 4) == 4;
        if (ok != ref_valid(s, 4)) mismatches++;
    }
    assert_int_equal(mismatches, 0);
    /* the prefix length stops at the first bad byte */
    assert_int_equal(dt_utf8_valid_prefix("ab\xE4\xB8\xADx\xFFyz", 9), 6);
    assert_int_equal(dt_utf8_valid_prefix("", 0), 0);
}

static void test_validate_sizes(void **state)
{
    (void)state;
    dt_record r;
    full_record(&r);
    char *big = malloc(DT_TEXT_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', DT_TEXT_MAX + 1);
    big[DT_TITLE_MAX] = '\0';
    set(&r.title, big);
    expect(&r, 0, NULL, NULL);
    big[DT_TITLE_MAX] = 'a';
    big[DT_TITLE_MAX + 1] = '\0';
    set(&r.title, big);
    expect(&r, DT_ELIMIT, "title", "1025 bytes, longer than the limit of 1024 bytes");
    set(&r.title, "t");
    big[DT_TITLE_MAX + 1] = 'a';
    big[DT_TEXT_MAX] = '\0';
    set(&r.text, big);
    expect(&r, 0, NULL, NULL);
    big[DT_TEXT_MAX] = 'a';
    big[DT_TEXT_MAX + 1] = '\0';
    set(&r.text, big);
    expect(&r, DT_ELIMIT, "text", "longer than the limit of 65536 bytes");
    set(&r.text, NULL);
    big[DT_SHORT_MAX + 1] = '\0';
    set(&r.keywords[1], big);
    expect(&r, DT_ELIMIT, "keywords[1]", "257 bytes, longer than the limit of 256 bytes");
    set(&r.keywords[1], "");
    expect(&r, DT_EINVAL, "keywords[1]", "empty");
    free(r.keywords[1]);
    r.keywords[1] = NULL;
    expect(&r, DT_EINVAL, "keywords[1]", "missing");
    set(&r.keywords[1], "k");
    set(&r.org, big);
    expect(&r, DT_ELIMIT, "org", NULL);
    set(&r.org, "org\x01");
    expect(&r, DT_EINVAL, "org", "non-printable byte 0x01 at offset 3");
    set(&r.org, NULL);
    char tenant[DT_TENANT_MAX + 2];
    memset(tenant, 't', sizeof tenant);
    tenant[DT_TENANT_MAX + 1] = '\0';
    set(&r.tenant, tenant);
    expect(&r, DT_ELIMIT, "tenant", "65 bytes");
    set(&r.tenant, NULL);
    free(big);

    char **many = calloc(DT_LIST_MAX + 1, sizeof *many);
    assert_non_null(many);
    for (int i = 0; i <= DT_LIST_MAX; i++)
        many[i] = xstrdup("t");
    for (size_t i = 0; i < r.n_tags; i++)
        free(r.tags[i]);
    free(r.tags);
    r.tags = many;
    r.n_tags = DT_LIST_MAX;
    expect(&r, 0, NULL, NULL);
    r.n_tags = DT_LIST_MAX + 1;
    expect(&r, DT_ELIMIT, "tags", "65 entries, more than the limit of 64");
    dt_record_free(&r);
}

static void test_validate_values(void **state)
{
    (void)state;
    dt_record r;
    full_record(&r);
    r.trl = 0;
    expect(&r, 0, NULL, NULL);
    r.trl = 9;
    expect(&r, 0, NULL, NULL);
    r.trl = 10;
    expect(&r, DT_EINVAL, "trl", "out of range");
    r.trl = -1;
    expect(&r, DT_EINVAL, "trl", "out of range");
    r.trl = 1;
    r.modes = 1u << DT_MODE_COUNT;
    expect(&r, DT_EINVAL, "modes", "unknown mode bits 0x40");
    r.modes = (1u << DT_MODE_COUNT) - 1;
    expect(&r, 0, NULL, NULL);
    r.price_min = -1;
    expect(&r, DT_EINVAL, "price_min", "negative");
    r.price_min = 6e5;
    expect(&r, DT_EINVAL, "price_min", "greater than price_max");
    r.price_min = 5e5;
    expect(&r, 0, NULL, NULL);
    r.price_max = INFINITY;
    expect(&r, DT_EINVAL, "price_max", "not a finite number");
    r.price_max = NAN;
    expect(&r, 0, NULL, NULL);
    r.price_min = NAN;
    r.price_max = -3;
    expect(&r, DT_EINVAL, "price_max", "negative");
    r.price_max = 0;
    expect(&r, 0, NULL, NULL);
    r.side = (dt_side)2;
    expect(&r, DT_EINVAL, "side", "unknown side");
    r.side = DT_DEMAND;
    r.status = (dt_status)7;
    expect(&r, DT_EINVAL, "status", "unknown status");
    r.status = DT_OPEN;
    r.updated_at = -5;
    expect(&r, DT_EINVAL, "updated_at", "negative");
    r.updated_at = 0;
    set(&r.field, "C..35");
    expect(&r, DT_EINVAL, "field", "empty segment");
    set(&r.field, "C.35.");
    expect(&r, DT_EINVAL, "field", "empty segment");
    set(&r.field, "C");
    set(&r.region, ".CN");
    expect(&r, DT_EINVAL, "region", "empty segment");
    set(&r.region, "CN");
    expect(&r, 0, NULL, NULL);

    r.embedding[2] = NAN;
    expect(&r, DT_EINVAL, "embedding[2]", "not a finite number");
    r.embedding[2] = -INFINITY;
    expect(&r, DT_EINVAL, "embedding[2]", "not a finite number");
    r.embedding[2] = 0;
    r.dim = 0;
    expect(&r, DT_EINVAL, "embedding", NULL);
    free(r.embedding);
    r.embedding = calloc(DT_DIM_MAX + 1, sizeof(float));
    assert_non_null(r.embedding);
    r.dim = DT_DIM_MAX;
    expect(&r, 0, NULL, NULL);
    r.dim = DT_DIM_MAX + 1;
    expect(&r, DT_ELIMIT, "embedding", "4097 dimensions");
    free(r.embedding);
    r.embedding = NULL;
    r.dim = 3;
    expect(&r, DT_EINVAL, "embedding", NULL);
    r.dim = 0;
    expect(&r, 0, NULL, NULL);
    dt_record_free(&r);
}

static void test_parse_and_names(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_side side = DT_DEMAND;
    assert_int_equal(dt_side_parse("  Achievement ", &side, "side", &err), 0);
    assert_int_equal(side, DT_ACHIEVEMENT);
    assert_int_equal(dt_side_parse("DEMAND", &side, "side", &err), 0);
    assert_int_equal(side, DT_DEMAND);
    assert_int_equal(dt_side_parse("buyer", &side, "row.side", &err), -DT_EINVAL);
    assert_string_equal(err.field, "row.side");
    assert_string_equal(err.msg, "unknown side \"buyer\" (valid: demand, achievement)");
    assert_int_equal(dt_side_parse("", &side, "side", &err), -DT_EINVAL);
    assert_int_equal(dt_side_parse("demand\n\x01x", &side, "side", &err), -DT_EINVAL);
    assert_non_null(strstr(err.msg, "\"demand??x\"")); /* control bytes are not echoed */

    dt_status st = DT_OPEN;
    assert_int_equal(dt_status_parse("Closed", &st, "status", &err), 0);
    assert_int_equal(st, DT_CLOSED);
    assert_int_equal(dt_status_parse("\topen", &st, "status", &err), 0);
    assert_int_equal(st, DT_OPEN);
    assert_int_equal(dt_status_parse("archived", &st, "status", &err), -DT_EINVAL);
    assert_string_equal(err.msg, "unknown status \"archived\" (valid: open, closed)");

    uint32_t seen = 0;
    for (int i = 0; i < DT_MODE_COUNT; i++) {
        uint32_t bit = 0;
        const char *name = dt_mode_name(1u << i);
        assert_non_null(name);
        assert_int_equal(dt_mode_parse(name, &bit, "modes", &err), 0);
        assert_int_equal(bit, 1u << i);
        seen |= bit;
    }
    assert_int_equal(seen, (1u << DT_MODE_COUNT) - 1);
    uint32_t bit = 0;
    assert_int_equal(dt_mode_parse(" Joint-RD", &bit, "modes", &err), 0);
    assert_int_equal(bit, DT_MODE_JOINT_RD);
    assert_int_equal(dt_mode_parse("OPEN_LICENSE", &bit, "modes", &err), 0);
    assert_int_equal(bit, DT_MODE_OPEN_LICENSE);
    assert_int_equal(dt_mode_parse("barter", &bit, "modes[1]", &err), -DT_EINVAL);
    assert_string_equal(err.field, "modes[1]");
    assert_string_equal(err.msg, "unknown mode \"barter\" (valid: transfer, license, open_license, "
                                 "joint_rd, equity, consulting)");
    assert_null(dt_mode_name(0));
    assert_null(dt_mode_name(3));
    assert_null(dt_mode_name(1u << DT_MODE_COUNT));

    assert_string_equal(dt_side_name(DT_DEMAND), "demand");
    assert_string_equal(dt_side_name(DT_ACHIEVEMENT), "achievement");
    assert_string_equal(dt_status_name(DT_OPEN), "open");
    assert_string_equal(dt_status_name(DT_CLOSED), "closed");

    dt_record r;
    dt_record_init(&r);
    assert_string_equal(dt_record_tenant(&r), "public");
    r.tenant = xstrdup("");
    assert_string_equal(dt_record_tenant(&r), "public");
    set(&r.tenant, "acme");
    assert_string_equal(dt_record_tenant(&r), "acme");
    dt_record_free(&r);
}


/* Regression (found by fuzzing the record codec): an empty, present field or region code was
 * read one byte before its start. It is valid and means "no code". */
static void test_empty_codes_are_absent(void **state)
{
    (void)state;
    dt_record r;
    dt_record_init(&r);
    r.id = strdup("d1");
    r.field = strdup("");
    r.region = strdup("");
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_record_validate(&r, &err), 0);
    free(r.field);
    r.field = strdup(".");
    assert_int_equal(dt_record_validate(&r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "field");
    dt_record_free(&r);
}

/* Tenant names as token names; ids without control, format or separator characters. */
static void test_names_of_new_data(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    const char *good[] = {"public", "suzhou-park", "a.b_c-D9", "x"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_int_equal(dt_tenant_name_check(good[i], "tenant", &err), 0);
    const char *bad[] = {"", "../../escape", ".", "..", "a b", "\xe7\xa0\x94\xe7\xa9\xb6", "a/b", "a%2e"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(dt_tenant_name_check(bad[i], "tenant", &err), -DT_EINVAL);
        assert_string_equal(err.field, "tenant");
    }
    char longname[66];
    memset(longname, 'a', 65);
    longname[65] = 0;
    assert_int_equal(dt_tenant_name_check(longname, "tenant", &err), -DT_ELIMIT);
    dt_record r;
    dt_record_init(&r);
    r.id = "ok-\xe7\xa0\x94"; /* non-ASCII letters are fine in ids */
    assert_int_equal(dt_record_check_names(&r, &err), 0);
    const char *bad_ids[] = {"x\xc2\x85y", "abc\xe2\x80\xae" "def", "zero\xe2\x80\x8bwidth", "p\xe2\x80\xa8q"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        r.id = (char *)bad_ids[i];
        assert_int_equal(dt_record_check_names(&r, &err), -DT_EINVAL);
        assert_string_equal(err.field, "id");
    }
    r.id = "fine";
    r.tenant = "../x";
    assert_int_equal(dt_record_check_names(&r, &err), -DT_EINVAL);
    assert_string_equal(err.field, "tenant");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_codes_are_absent),
        cmocka_unit_test(test_init_absent),
        cmocka_unit_test(test_copy_is_deep),
        cmocka_unit_test(test_validate_id),
        cmocka_unit_test(test_validate_utf8_every_field),
        cmocka_unit_test(test_utf8_against_utf8proc),
        cmocka_unit_test(test_validate_sizes),
        cmocka_unit_test(test_validate_values),
        cmocka_unit_test(test_parse_and_names),
        cmocka_unit_test(test_names_of_new_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
