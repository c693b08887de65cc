/* test_auth.c - bearer tokens and scopes (server/auth.c): the --auth-file parser and its errors,
 * token lookup against a brute-force strcmp reference, that every lookup compares every entry in
 * full (constant time), scope decisions against a reference written here from the rules in
 * README/docs, the scope table against the service descriptor, loopback detection, the file
 * permission warning, metrics, and the SIGHUP reload on a real event loop.
 *
 * Out-of-memory paths: a second copy of auth.c is compiled into this file with calloc, malloc and
 * strdup replaced by versions that fail the n-th call (its public functions renamed fi_auth_*),
 * and every n is tried.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "dovetail/v1/matchmaker.pb-c.h"

/* ---- the fault-injected copy ---- */

static long fi_fail_at = -1;
static long fi_calls;
static bool fi_ok(void)
{
    return ++fi_calls != fi_fail_at;
}
static void *fi_malloc(size_t n)
{
    return fi_ok() ? malloc(n) : NULL;
}
static void *fi_calloc(size_t n, size_t size)
{
    return fi_ok() ? calloc(n, size) : NULL;
}
static char *fi_strdup(const char *s)
{
    return fi_ok() ? strdup(s) : NULL;
}
#define malloc fi_malloc
#define calloc fi_calloc
#define strdup fi_strdup
#define dt_auth_parse fi_auth_parse
#define dt_auth_load fi_auth_load
#define dt_auth_free fi_auth_free
#define dt_auth_count fi_auth_count
#define dt_auth_name fi_auth_name
#define dt_auth_identify fi_auth_identify
#define dt_auth_method_scope fi_auth_method_scope
#define dt_auth_allow fi_auth_allow
#define dt_auth_request_tenant fi_auth_request_tenant
#define dt_auth_listen_is_loopback fi_auth_listen_is_loopback
#define dt_auth_metrics_render fi_auth_metrics_render
#define dt_auth_reloader_new fi_auth_reloader_new
#define dt_auth_reloader_start fi_auth_reloader_start
#define dt_auth_reloader_done fi_auth_reloader_done
#define dt_auth_reloader_free fi_auth_reloader_free
#include "../../server/auth.c"
#undef malloc
#undef calloc
#undef strdup
#undef dt_auth_parse
#undef dt_auth_load
#undef dt_auth_free
#undef dt_auth_count
#undef dt_auth_name
#undef dt_auth_identify
#undef dt_auth_method_scope
#undef dt_auth_allow
#undef dt_auth_request_tenant
#undef dt_auth_listen_is_loopback
#undef dt_auth_metrics_render
#undef dt_auth_reloader_new
#undef dt_auth_reloader_start
#undef dt_auth_reloader_done
#undef dt_auth_reloader_free

/* ---- helpers ---- */

#define TOK_A "tenantA-token-0123456789abcdefghijklmnopq"
#define TOK_B "tenantB-token-0123456789abcdefghijklmnopq"
#define TOK_AB "both-AB-token-0123456789abcdefghijklmnopq"
#define TOK_PUB "public--token-0123456789abcdefghijklmnopq"
#define TOK_OP "operator-token-0123456789abcdefghijklmnopq"

static const char *good_file =
    "{\"tokens\": ["
    "{\"name\": \"a\", \"token\": \"" TOK_A "\", \"tenants\": [\"tenant-a\"]},"
    "{\"name\": \"b\", \"token\": \"" TOK_B "\", \"tenants\": [\"tenant-b\"]},"
    "{\"name\": \"ab\", \"token\": \"" TOK_AB
    "\", \"tenants\": [\"tenant-a\", \"tenant-b\"], \"operator\": false},"
    "{\"name\": \"pub\", \"token\": \"" TOK_PUB "\", \"tenants\": [\"public\"]},"
    "{\"name\": \"ops\", \"token\": \"" TOK_OP "\", \"operator\": true}"
    "]}";

static dt_auth *parse_str(const char *s, dt_err *err)
{
    return dt_auth_parse(s, strlen(s), err);
}

static dt_auth *good(void)
{
    dt_err err = DT_ERR_INIT;
    dt_auth *a = parse_str(good_file, &err);
    if (!a) fail_msg("good file refused: %s: %s", err.field, err.msg);
    return a;
}

static int who_of(dt_auth *a, const char *header)
{
    int who;
    dt_err err = DT_ERR_INIT;
    const char *v[1] = {header};
    return dt_auth_identify(a, v, 1, &who, NULL, &err) == 0 ? who : -1;
}

static int index_of(const dt_auth *a, const char *name)
{
    for (size_t i = 0; i < dt_auth_count(a); i++)
        if (!strcmp(dt_auth_name(a, (int)i), name)) return (int)i;
    return -1;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- the parser ---- */

static void test_parse_good(void **state)
{
    (void)state;
    dt_auth *a = good();
    assert_int_equal(dt_auth_count(a), 5);
    const char *names[] = {"a", "b", "ab", "pub", "ops"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(dt_auth_name(a, i), names[i]);
    assert_string_equal(dt_auth_name(a, 5), "");
    assert_string_equal(dt_auth_name(a, -1), "");
    dt_auth_free(a);
    dt_auth_free(NULL);
}

typedef struct bad_case {
    const char *json;
    const char *field; /* expected dt_err.field exactly */
    const char *msg;   /* a substring of dt_err.msg */
} bad_case;

#define T32 "abcdefghijklmnopqrstuvwxyz012345"
#define ENTRY(extra) "{\"tokens\": [{\"name\": \"n1\", \"token\": \"" T32 "\"" extra "}]}"

static void test_parse_errors_name_entry_and_field(void **state)
{
    (void)state;
    char long_tok[300], long_tenant[120], json_long_tok[600], json_long_tenant[400];
    memset(long_tok, 'x', 257);
    long_tok[257] = 0;
    memset(long_tenant, 't', 65);
    long_tenant[65] = 0;
    snprintf(json_long_tok, sizeof json_long_tok,
             "{\"tokens\": [{\"name\": \"n1\", \"token\": \"%s\", \"operator\": true}]}", long_tok);
    snprintf(json_long_tenant, sizeof json_long_tenant, ENTRY(", \"tenants\": [\"%s\"]"),
             long_tenant);
    const bad_case cases[] = {
        {"{\"tokens\": [", "", "not valid JSON at line 1"},
        {"[]", "", "expected a JSON object"},
        {"{\"tokens\": [], \"tokenz\": 1}", "tokenz", "unknown key"},
        {"{}", "tokens", "required"},
        {"{\"tokens\": {}}", "tokens", "required: an array"},
        {"{\"tokens\": []}", "tokens", "empty"},
        {"{\"tokens\": [17]}", "tokens[0]", "expected an object"},
        {ENTRY(", \"operator\": true, \"scopes\": [\"x\"]"), "tokens[0].scopes",
         "entry \"n1\": unknown key"},
        {"{\"tokens\": [{\"token\": \"" T32 "\", \"operator\": true}]}", "tokens[0].name",
         "required"},
        {"{\"tokens\": [{\"name\": \"has space\", \"token\": \"" T32 "\", \"operator\": true}]}",
         "tokens[0].name", "A-Z a-z 0-9"},
        {"{\"tokens\": [{\"name\": 7, \"token\": \"" T32 "\", \"operator\": true}]}",
         "tokens[0].name", "A-Z a-z"},
        {"{\"tokens\": [{\"name\": \"n1\", \"operator\": true}]}", "tokens[0].token",
         "entry \"n1\": required"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": 12, \"operator\": true}]}", "tokens[0].token",
         "a string"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"\", \"operator\": true}]}",
         "tokens[0].token", "empty"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"abcdefghijklmnopqrstuvwxyz01234\", "
         "\"operator\": true}]}",
         "tokens[0].token", "31 characters; a token has 32 to 256"},
        {json_long_tok, "tokens[0].token", "257 characters"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"abcd efghijklmnopqrstuvwxyz0123456\", "
         "\"operator\": true}]}",
         "tokens[0].token", "character 5 is not allowed"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"abcd=efghijklmnopqrstuvwxyz0123456\", "
         "\"operator\": true}]}",
         "tokens[0].token", "character 6 is not allowed"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"=abcdefghijklmnopqrstuvwxyz0123456\", "
         "\"operator\": true}]}",
         "tokens[0].token", "character 1 is not allowed"},
        {ENTRY(", \"operator\": \"yes\""), "tokens[0].operator", "true or false"},
        {ENTRY(", \"tenants\": \"tenant-a\""), "tokens[0].tenants", "an array"},
        {ENTRY(", \"tenants\": [3]"), "tokens[0].tenants[0]", "a string"},
        {ENTRY(", \"tenants\": [\"ok\", \"\"]"), "tokens[0].tenants[1]",
         "empty (requests that name no tenant"},
        {json_long_tenant, "tokens[0].tenants[0]", "longer than 64 bytes"},
        {ENTRY(", \"tenants\": [\"a\\u0001b\"]"), "tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"},
        {ENTRY(", \"tenants\": [\"a\\u0000b\"]"), "", "\\u0000 is not allowed"},
        {ENTRY(", \"tenants\": [\" lead\"]"), "tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"},
        {ENTRY(", \"tenants\": [\"trail\\u3000\"]"), "tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"},
        {ENTRY(", \"tenants\": [\"\u7814\u7a76\u9662\"]"), "tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"},
        {ENTRY(", \"tenants\": [\"../../escape\"]"), "tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"},
        {ENTRY(", \"tenants\": [\"..\"]"), "tokens[0].tenants[0]", "not a tenant name"},
        {ENTRY(", \"tenants\": [\"*\"]"), "tokens[0].tenants[0]", "not a wildcard"},
        {ENTRY(", \"tenants\": [\"x\", \"y\", \"x\"]"), "tokens[0].tenants[2]",
         "\"x\" is listed twice"},
        {ENTRY(""), "tokens[0]", "grants nothing"},
        {ENTRY(", \"tenants\": []"), "tokens[0]", "grants nothing"},
        {ENTRY(", \"tenants\": [], \"operator\": false"), "tokens[0]", "grants nothing"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"" T32 "\", \"operator\": true},"
         "{\"name\": \"n2\", \"token\": \"" T32 "\", \"operator\": true}]}",
         "tokens[1].token", "entry \"n2\": the same token as tokens[0] (\"n1\")"},
        {"{\"tokens\": [{\"name\": \"n1\", \"token\": \"" T32 "\", \"operator\": true},"
         "{\"name\": \"n1\", \"token\": \"" T32 "x\", \"operator\": true}]}",
         "tokens[1].name", "the same name as tokens[0]"},
        {"{\"tokens\": [{\"name\": \"n1\", \"name\": \"n2\", \"token\": \"" T32
         "\", \"operator\": true}]}",
         "", "duplicate object key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dt_err err = DT_ERR_INIT;
        dt_auth *a = parse_str(cases[i].json, &err);
        if (a) fail_msg("case %zu accepted: %s", i, cases[i].json);
        if (strcmp(err.field, cases[i].field) || !strstr(err.msg, cases[i].msg))
            fail_msg(
                "case %zu: got field '%s' msg '%s'; want field '%s' and a message containing '%s'",
                i, err.field, err.msg, cases[i].field, cases[i].msg);
        if (strstr(err.msg, T32) || strstr(err.msg, "abcdefghijklmnopqrstuvwxyz") ||
            strstr(err.msg, long_tok))
            fail_msg("case %zu: the error message quotes a token: %s", i, err.msg);
        assert_true(err.code == DT_EINVAL || err.code == DT_ELIMIT);
    }
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* DT_AUTH_ENTRIES_MAX + 1 entries */
    size_t n = DT_AUTH_ENTRIES_MAX + 1, cap = n * 100 + 64, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    len += (size_t)snprintf(buf + len, cap - len, "{\"tokens\": [");
    for (size_t i = 0; i < n; i++)
        len +=
            (size_t)snprintf(buf + len, cap - len,
                             "%s{\"name\": \"n%zu\", \"token\": \"%s%08zu\", \"operator\": true}",
                             i ? "," : "", i, T32, i);
    len += (size_t)snprintf(buf + len, cap - len, "]}");
    dt_err err = DT_ERR_INIT;
    assert_null(dt_auth_parse(buf, len, &err));
    assert_string_equal(err.field, "tokens");
    assert_int_equal(err.code, DT_ELIMIT);
    /* exactly the limit is fine */
    char *cut = strstr(buf, ",{\"name\": \"n1024\"");
    assert_non_null(cut);
    strcpy(cut, "]}");
    dt_auth *a = dt_auth_parse(buf, strlen(buf), &err);
    assert_non_null(a);
    assert_int_equal(dt_auth_count(a), DT_AUTH_ENTRIES_MAX);
    dt_auth_free(a);
    free(buf);
    /* 256 and 32 characters are the bounds, '=' padding at the end is fine */
    char tok[257];
    memset(tok, 'Q', 256);
    tok[256] = 0;
    char json[700];
    snprintf(json, sizeof json,
             "{\"tokens\": [{\"name\": \"x\", \"token\": \"%s\", \"operator\": true},"
             "{\"name\": \"y\", \"token\": \"" T32 "\", \"tenants\": [\"yanjiuyuan\"]},"
             "{\"name\": \"z\", \"token\": \"abcdefghijklmnopqrstuvwxyz0123+/~._-==\", "
             "\"tenants\": [\"a.b_c-D9\"]}]}",
             tok);
    a = dt_auth_parse(json, strlen(json), &err);
    if (!a) fail_msg("%s: %s", err.field, err.msg);
    char hdr[300];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    assert_int_equal(who_of(a, hdr), 0);
    assert_int_equal(who_of(a, "Bearer abcdefghijklmnopqrstuvwxyz0123+/~._-=="), 2);
    dt_auth_free(a);
}

static void test_parse_out_of_memory(void **state)
{
    (void)state;
    long ok_runs = 0;
    for (long n = 1; n < 200; n++) {
        fi_calls = 0;
        fi_fail_at = n;
        dt_err err = DT_ERR_INIT;
        dt_auth *a = fi_auth_parse(good_file, strlen(good_file), &err);
        long used = fi_calls;
        fi_fail_at = -1;
        if (a) {
            assert_int_equal(fi_auth_count(a), 5);
            fi_auth_free(a);
            if (used < n) ok_runs++;
        } else {
            assert_int_equal(err.code, DT_ENOMEM);
            assert_string_equal(err.msg, "out of memory");
        }
        if (used < n) break; /* every allocation has been failed once */
    }
    assert_int_equal(ok_runs, 1);
}

/* ---- identify ---- */

static void test_identify_headers(void **state)
{
    (void)state;
    dt_auth *a = good();
    int who;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_auth_identify(a, NULL, 0, &who, NULL, &err), -DT_EINVAL);
    assert_int_equal(who, -1);
    assert_non_null(strstr(err.msg, "Authorization: Bearer"));
    const char *two[2] = {"Bearer " TOK_A, "Bearer " TOK_A};
    assert_int_equal(dt_auth_identify(a, two, 2, &who, NULL, &err), -DT_EINVAL);
    assert_non_null(strstr(err.msg, "more than one"));
    const char *malformed[] = {"",
                               "Bearer",
                               "Bearer ",
                               "Bearer    ",
                               "Basic " TOK_A,
                               "Token " TOK_A,
                               "Bearer" TOK_A,
                               "Bearer " TOK_A " extra",
                               "Bearer \"" TOK_A "\"",
                               "Bearer " TOK_A ",",
                               "Bearer =abc",
                               "Bearer ab=c" TOK_A,
                               "BearerX " TOK_A};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        const char *v[1] = {malformed[i]};
        err = (dt_err)DT_ERR_INIT;
        if (dt_auth_identify(a, v, 1, &who, NULL, &err) != -DT_EINVAL)
            fail_msg("'%s' was not refused as malformed (%s)", malformed[i], err.msg);
        assert_int_equal(who, -1);
    }
    assert_int_equal(who_of(a, "Bearer " TOK_A), index_of(a, "a"));
    assert_int_equal(who_of(a, "bearer " TOK_B), index_of(a, "b"));
    assert_int_equal(who_of(a, "BEARER\t" TOK_OP "  "), index_of(a, "ops"));
    assert_int_equal(who_of(a, "  Bearer   " TOK_PUB), index_of(a, "pub"));
    const char *unknown[] = {"Bearer " TOK_A "x", "Bearer tenantA-token-0123456789abcdefghijklmnop",
                             "Bearer tenantA-token-0123456789abcdefghijklmnopQ", "Bearer x",
                             "Bearer " TOK_A "="};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *v[1] = {unknown[i]};
        if (dt_auth_identify(a, v, 1, &who, NULL, &err) != -DT_ENOTFOUND)
            fail_msg("'%s' was accepted", unknown[i]);
        assert_string_equal(err.msg, "unknown token");
    }
    char huge[600] = "Bearer ";
    memset(huge + 7, 'k', 500);
    huge[507] = 0;
    const char *v[1] = {huge};
    assert_int_equal(dt_auth_identify(a, v, 1, &who, NULL, &err), -DT_ENOTFOUND);
    dt_auth_free(a);
}

/* Every lookup with a well-formed header examines every byte of every entry, whichever entry
 * matches (the first, the last) or none; a lookup that stopped early would examine fewer. */
static void test_identify_compares_everything(void **state)
{
    (void)state;
    dt_auth *a = good();
    size_t want = dt_auth_count(a) * DT_AUTH_TOKEN_MAX;
    const char *headers[] = {"Bearer " TOK_A,
                             "Bearer " TOK_OP,
                             "Bearer " TOK_PUB,
                             "Bearer nothing-like-any",
                             "Bearer tenantA-token-0123456789abcdefghijklmnopX",
                             "Bearer t"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        int who;
        size_t compared = 1;
        dt_err err = DT_ERR_INIT;
        const char *v[1] = {headers[i]};
        dt_auth_identify(a, v, 1, &who, &compared, &err);
        if (compared != want)
            fail_msg("'%s': %zu bytes compared, want %zu", headers[i], compared, want);
    }
    dt_auth_free(a);
}

/* Random token sets and probes (real tokens, their prefixes, extensions and one-byte changes)
 * against a plain strcmp lookup. */
static void test_identify_against_reference(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
    uint64_t seed = 42;
    for (int round = 0; round < 40; round++) {
        size_t n = 1 + rng_next(&seed) % 12;
        char toks[12][260];
        char json[12 * 400];
        size_t len = (size_t)snprintf(json, sizeof json, "{\"tokens\": [");
        for (size_t i = 0; i < n; i++) {
            size_t tl =
                DT_AUTH_TOKEN_MIN + rng_next(&seed) % (DT_AUTH_TOKEN_MAX - DT_AUTH_TOKEN_MIN + 1);
            if (i > 0 && rng_next(&seed) % 3 == 0) { /* share a long prefix with an earlier token */
                size_t j = rng_next(&seed) % i;
                snprintf(toks[i], sizeof toks[i], "%s", toks[j]);
                size_t pl = strlen(toks[i]);
                toks[i][pl - 1] = toks[i][pl - 1] == 'A' ? 'B' : 'A';
            } else {
                for (size_t k = 0; k < tl; k++)
                    toks[i][k] = alphabet[rng_next(&seed) % (sizeof alphabet - 1)];
                toks[i][tl] = 0;
            }
            bool dup = false;
            for (size_t j = 0; j < i; j++)
                dup |= !strcmp(toks[i], toks[j]);
            if (dup) toks[i][0] = toks[i][0] == 'Z' ? 'Y' : 'Z';
            for (size_t j = 0; j < i; j++)
                dup |= !strcmp(toks[i], toks[j]);
            if (dup) {
                n = i;
                break;
            }
            len += (size_t)snprintf(json + len, sizeof json - len,
                                    "%s{\"name\": \"t%zu\", \"token\": \"%s\", \"operator\": true}",
                                    i ? "," : "", i, toks[i]);
        }
        snprintf(json + len, sizeof json - len, "]}");
        dt_err err = DT_ERR_INIT;
        dt_auth *a = parse_str(json, &err);
        if (!a) fail_msg("round %d: %s: %s", round, err.field, err.msg);
        for (int probe = 0; probe < 60; probe++) {
            char p[300];
            size_t src = rng_next(&seed) % n;
            snprintf(p, sizeof p, "%s", toks[src]);
            size_t pl = strlen(p);
            switch (rng_next(&seed) % 5) {
            case 0:
                break;
            case 1:
                p[rng_next(&seed) % pl] = alphabet[rng_next(&seed) % (sizeof alphabet - 1)];
                break;
            case 2:
                p[1 + rng_next(&seed) % (pl - 1)] = 0;
                break;
            case 3:
                if (pl < 256) p[pl] = 'q', p[pl + 1] = 0;
                break;
            case 4:
                p[0] = 'Z', p[1] = 0;
                break;
            }
            int want = -1;
            for (size_t i = 0; i < n; i++)
                if (!strcmp(p, toks[i])) want = (int)i;
            char hdr[320];
            snprintf(hdr, sizeof hdr, "Bearer %s", p);
            if (who_of(a, hdr) != want)
                fail_msg("round %d probe '%s': got %d, want %d", round, p, who_of(a, hdr), want);
        }
        dt_auth_free(a);
    }
}

/* ---- scopes ---- */

static void test_every_service_method_has_a_scope(void **state)
{
    (void)state;
    const ProtobufCServiceDescriptor *svc = &dovetail__v1__matchmaker__descriptor;
    for (unsigned i = 0; i < svc->n_methods; i++)
        if (dt_auth_method_scope(svc->methods[i].name) == DT_SCOPE_NONE)
            fail_msg("method %s has no row in the method table of server/rpc.c (dt_methods): add one "
                     "(its scope: tenant, tenant or all, or operator) and document it in README, "
                     "Authentication",
                     svc->methods[i].name);
    /* the method table and the service agree: a row for every method, a method for every row, each
     * row with a handler; the writes are heavy */
    assert_int_equal(svc->n_methods, DT_M_COUNT);
    for (unsigned i = 0; i < DT_M_COUNT; i++) {
        if (!protobuf_c_service_descriptor_get_method_by_name(svc, dt_methods[i].name))
            fail_msg("dt_methods[%u] names %s, which the service does not have", i, dt_methods[i].name);
        assert_non_null(dt_methods[i].run);
        assert_int_equal(dt_method_find(dt_methods[i].name), i);
        if (dt_methods[i].flags & DT_MF_WRITE) assert_true(dt_methods[i].flags & DT_MF_HEAVY);
    }
    assert_true(dt_methods[DT_M_RECORD_OUTCOME].flags & DT_MF_WRITE);
    assert_int_equal(dt_method_find("NoSuchMethod"), DT_M_COUNT);
    assert_int_equal(dt_auth_method_scope("Match"), DT_SCOPE_TENANT);
    assert_int_equal(dt_auth_method_scope("Stats"), DT_SCOPE_TENANT_OR_ALL);
    const char *op[] = {"StartRerank", "GetJob", "CancelJob", "ListJobs", "GET /metrics"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(dt_auth_method_scope(op[i]), DT_SCOPE_OPERATOR);
    assert_int_equal(dt_auth_method_scope("GET /events"), DT_SCOPE_TENANT);
    assert_int_equal(dt_auth_method_scope("match"), DT_SCOPE_NONE);
    assert_int_equal(dt_auth_method_scope(""), DT_SCOPE_NONE);
}

/* The rules as README states them, written independently of auth.c. */
static bool reference_allows(const char *token_name, const char *method, const char *tenant)
{
    static const struct {
        const char *name;
        bool op;
        const char *tenants[3];
    } grants[] = {{"a", false, {"tenant-a"}},
                  {"b", false, {"tenant-b"}},
                  {"ab", false, {"tenant-a", "tenant-b"}},
                  {"pub", false, {"public"}},
                  {"ops", true, {NULL}}};
    static const char *const tenant_methods[] = {"UpsertRecords", "DeleteRecords", "GetRecord",
                                                 "Match",         "PairEvent",     "RecordOutcome",
                                                 "GET /events"};
    for (size_t g = 0; g < 5; g++) {
        if (strcmp(grants[g].name, token_name)) continue;
        if (grants[g].op) return true;
        bool tenant_scoped = false;
        for (size_t m = 0; m < 7; m++)
            tenant_scoped |= !strcmp(tenant_methods[m], method);
        bool named = tenant && *tenant;
        if (!strcmp(method, "Stats")) {
            if (!named) return false;
            tenant_scoped = true;
        }
        if (!tenant_scoped) return false;
        const char *t = named ? tenant : "public";
        for (size_t k = 0; k < 3 && grants[g].tenants[k]; k++)
            if (!strcmp(grants[g].tenants[k], t)) return true;
        return false;
    }
    return false;
}

static void test_allow_against_reference(void **state)
{
    (void)state;
    dt_auth *a = good();
    const char *methods[] = {"UpsertRecords", "DeleteRecords", "GetRecord", "Match",
                             "PairEvent",     "RecordOutcome", "Stats",     "StartRerank",
                             "GetJob",        "CancelJob",     "ListJobs",  "GET /metrics",
                             "GET /events",   "Frobnicate",    ""};
    const char *tenants[] = {NULL,       "",         "public",    "tenant-a", "tenant-b",
                             "tenant-c", "Tenant-a", "tenant-a ", "*"};
    const char *names[] = {"a", "b", "ab", "pub", "ops"};
    size_t decisions = 0;
    for (size_t w = 0; w < 5; w++) {
        int who = index_of(a, names[w]);
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++)
            for (size_t t = 0; t < sizeof tenants / sizeof tenants[0]; t++) {
                dt_err err = DT_ERR_INIT;
                int rc = dt_auth_allow(a, who, methods[m], tenants[t], &err);
                bool want = reference_allows(names[w], methods[m], tenants[t]);
                if ((rc == 0) != want)
                    fail_msg("token %s, %s, tenant %s: got %s, want %s (%s)", names[w], methods[m],
                             tenants[t] ? tenants[t] : "(none)", rc == 0 ? "allowed" : "denied",
                             want ? "allowed" : "denied", err.msg);
                if (rc < 0) {
                    assert_int_equal(rc, -DT_EINVAL);
                    assert_true(err.msg[0]);
                }
                decisions++;
            }
    }
    assert_int_equal(decisions, 5 * 15 * 9);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_auth_allow(a, index_of(a, "a"), "Match", "tenant-b", &err), -DT_EINVAL);
    assert_string_equal(err.field, "tenant");
    assert_non_null(strstr(err.msg, "\"a\" has no access to tenant \"tenant-b\""));
    assert_int_equal(dt_auth_allow(a, index_of(a, "a"), "GetJob", "tenant-a", &err), -DT_EINVAL);
    assert_non_null(strstr(err.msg, "GetJob works across tenants and needs an operator token"));
    assert_int_equal(dt_auth_allow(a, 99, "Match", "tenant-a", &err), -DT_EINVAL);
    assert_int_equal(dt_auth_allow(a, -1, "Match", "tenant-a", &err), -DT_EINVAL);
    dt_auth_free(a);
}

static void test_request_tenant(void **state)
{
    (void)state;
    Dovetail__V1__MatchRequest m = DOVETAIL__V1__MATCH_REQUEST__INIT;
    assert_string_equal(dt_auth_request_tenant(&m.base), "");
    m.tenant = "tenant-a";
    assert_string_equal(dt_auth_request_tenant(&m.base), "tenant-a");
    Dovetail__V1__StatsRequest s = DOVETAIL__V1__STATS_REQUEST__INIT;
    assert_string_equal(dt_auth_request_tenant(&s.base), "");
    s.tenant = NULL;
    assert_string_equal(dt_auth_request_tenant(&s.base), "");
    Dovetail__V1__RecordRef r = DOVETAIL__V1__RECORD_REF__INIT;
    assert_null(dt_auth_request_tenant(&r.base));
    assert_null(dt_auth_request_tenant(NULL));
    /* every request of the service that names a tenant is seen through the descriptor */
    const ProtobufCServiceDescriptor *svc = &dovetail__v1__matchmaker__descriptor;
    for (unsigned i = 0; i < svc->n_methods; i++) {
        const ProtobufCMessageDescriptor *in = svc->methods[i].input;
        ProtobufCMessage *msg = calloc(1, in->sizeof_message);
        assert_non_null(msg);
        in->message_init(msg);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(in, "tenant");
        if (f) {
            *(const char **)((char *)msg + f->offset) = "probe-tenant";
            const char *got = dt_auth_request_tenant(msg);
            if (!got || strcmp(got, "probe-tenant")) fail_msg("%s: tenant not read", in->name);
        }
        free(msg);
    }
}

static void test_loopback(void **state)
{
    (void)state;
    const char *yes[] = {"127.0.0.1:8080",    "127.0.0.1:0",    "127.1.2.3:80",
                         "127.255.255.255:1", "localhost:8080", "LocalHost:1",
                         "[::1]:8080",        "::1:8080",       "[::ffff:127.0.0.1]:9"};
    const char *no[] = {"0.0.0.0:8080",
                        "10.0.0.1:8080",
                        "[::]:8080",
                        ":::8080",
                        "128.0.0.1:1",
                        "1.127.0.0:1",
                        ":8080",
                        "8080",
                        "",
                        "localhost.example.com:1",
                        "[::2]:1",
                        "[::ffff:10.0.0.1]:9",
                        "localhost",
                        "127.0.0.1",
                        "[::1:8080",
                        "host:1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!dt_auth_listen_is_loopback(yes[i])) fail_msg("%s is loopback", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (dt_auth_listen_is_loopback(no[i])) fail_msg("%s is not loopback", no[i]);
    assert_false(dt_auth_listen_is_loopback(NULL));
}

/* ---- files ---- */

static char tmpdir[64];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load_and_permissions(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dt-auth-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[128], warning[512];
    snprintf(path, sizeof path, "%s/tokens.json", tmpdir);
    dt_err err = DT_ERR_INIT;
    write_file(path, good_file, 0600);
    dt_auth *a = dt_auth_load(path, warning, sizeof warning, &err);
    assert_non_null(a);
    assert_string_equal(warning, "");
    dt_auth_free(a);
    const mode_t loose[] = {0640, 0604, 0644, 0620, 0602};
    for (size_t i = 0; i < 5; i++) {
        chmod(path, loose[i]);
        a = dt_auth_load(path, warning, sizeof warning, &err);
        assert_non_null(a);
        if (!strstr(warning, "chmod 600") || !strstr(warning, path))
            fail_msg("mode %o: warning '%s'", loose[i], warning);
        dt_auth_free(a);
    }
    chmod(path, 0400);
    a = dt_auth_load(path, warning, sizeof warning, &err);
    assert_non_null(a);
    assert_string_equal(warning, "");
    dt_auth_free(a);
    a = dt_auth_load(path, NULL, 0, &err); /* no room for a warning is fine */
    assert_non_null(a);
    dt_auth_free(a);

    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.json", tmpdir);
    assert_null(dt_auth_load(missing, warning, sizeof warning, &err));
    assert_int_equal(err.code, DT_EIO);
    assert_non_null(strstr(err.msg, "No such file"));
    assert_null(dt_auth_load(tmpdir, warning, sizeof warning, &err));
    assert_non_null(strstr(err.msg, "not a regular file"));

    char big[160];
    snprintf(big, sizeof big, "%s/big.json", tmpdir);
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    for (size_t i = 0; i <= DT_AUTH_FILE_MAX; i += 64)
        fputs("                                                               \n", f);
    fclose(f);
    chmod(big, 0600);
    assert_null(dt_auth_load(big, warning, sizeof warning, &err));
    assert_int_equal(err.code, DT_ELIMIT);
    unlink(big);
    unlink(path);
}

/* ---- metrics ---- */

static uint64_t metric(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);
    while ((p = strstr(p, series))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return strtoull(p + n + 1, NULL, 10);
        p += n;
    }
    fail_msg("no series %s in:\n%s", series, text);
    return 0;
}

static void test_metrics(void **state)
{
    (void)state;
    dt_auth *a = good();
    dt_err err = DT_ERR_INIT;
    int who;
    for (int i = 0; i < 3; i++)
        who_of(a, "Bearer " TOK_A);
    who_of(a, "Bearer nope-nope-nope");
    who_of(a, "Basic abc");
    dt_auth_identify(a, NULL, 0, &who, NULL, &err);
    dt_auth_identify(a, NULL, 0, &who, NULL, &err);
    int wa = index_of(a, "a");
    dt_auth_allow(a, wa, "Match", "tenant-b", &err);
    dt_auth_allow(a, wa, "Match", "tenant-a", &err);
    dt_auth_allow(a, wa, "GET /metrics", NULL, &err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    dt_auth_metrics_render(a, f);
    dt_auth_metrics_render(NULL, f);
    fclose(f);
    assert_int_equal(metric(text, "dovetail_auth_requests_total{token=\"a\"}"), 3);
    assert_int_equal(metric(text, "dovetail_auth_requests_total{token=\"ops\"}"), 0);
    assert_int_equal(metric(text, "dovetail_auth_denied_total{token=\"a\"}"), 2);
    assert_int_equal(metric(text, "dovetail_auth_unauthenticated_total{reason=\"missing\"}"), 2);
    assert_int_equal(metric(text, "dovetail_auth_unauthenticated_total{reason=\"malformed\"}"), 1);
    assert_int_equal(metric(text, "dovetail_auth_unauthenticated_total{reason=\"unknown\"}"), 1);
    assert_int_equal(metric(text, "dovetail_auth_tokens"), 5);
    assert_null(strstr(text, TOK_A));
    assert_int_equal(text[len - 1], '\n');
    free(text);
    dt_auth_free(a);
}

/* ---- reload ---- */

typedef struct log_capture {
    char lines[8][800];
    bool error[8];
    int n;
} log_capture;

static void capture(void *ud, bool error, const char *msg)
{
    log_capture *c = ud;
    if (c->n < 8) {
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s", msg);
        c->error[c->n] = error;
        c->n++;
    }
}

static void pump_until_done(struct event_base *base, dt_auth_reloader *r, uint64_t want)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (dt_auth_reloader_done(r) < want) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10)
            fail_msg("reload %llu did not finish in 10 s", (unsigned long long)want);
    }
}

static void test_reload(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dt-auth-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof path, "%s/tokens.json", tmpdir);
    write_file(path, good_file, 0600);
    dt_err err = DT_ERR_INIT;
    dt_auth *slot = dt_auth_load(path, NULL, 0, &err);
    assert_non_null(slot);
    for (int i = 0; i < 4; i++)
        who_of(slot, "Bearer " TOK_A);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    log_capture logs;
    memset(&logs, 0, sizeof logs);
    dt_auth_reloader *r = dt_auth_reloader_new(base, path, &slot, capture, &logs, &err);
    assert_non_null(r);

    /* a new file: token b gone, token c added, a kept (and its counter with it) */
    write_file(path,
               "{\"tokens\": [{\"name\": \"a\", \"token\": \"" TOK_A
               "\", \"tenants\": [\"tenant-a\"]},"
               "{\"name\": \"c\", \"token\": \"" T32 "\", \"tenants\": [\"tenant-c\"]}]}",
               0644);
    dt_auth *before = slot;
    dt_auth_reloader_start(r);
    pump_until_done(base, r, 1);
    assert_ptr_not_equal(slot, before);
    assert_int_equal(dt_auth_count(slot), 2);
    assert_int_equal(who_of(slot, "Bearer " TOK_B), -1);
    assert_int_equal(who_of(slot, "Bearer " T32), index_of(slot, "c"));
    assert_int_equal(who_of(slot, "Bearer " TOK_A), index_of(slot, "a"));
    assert_int_equal(logs.n, 2);
    assert_true(logs.error[0]); /* the mode warning shows even when quiet */
    assert_non_null(strstr(logs.lines[0], "chmod 600"));
    assert_false(logs.error[1]);
    assert_non_null(strstr(logs.lines[1], "reloaded: 2 tokens"));

    /* a bad file, this time by SIGHUP: the tokens stay, the log says why */
    write_file(path, "{\"tokens\": [{\"name\": \"a\", \"token\": \"short\", \"operator\": true}]}",
               0600);
    before = slot;
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    pump_until_done(base, r, 2);
    assert_ptr_equal(slot, before);
    assert_int_equal(who_of(slot, "Bearer " T32), index_of(slot, "c"));
    assert_int_equal(logs.n, 3);
    assert_true(logs.error[2]);
    assert_non_null(strstr(logs.lines[2], "keeping the 2 tokens loaded before: tokens[0].token"));
    assert_null(strstr(logs.lines[2], "short"));

    /* a missing file is refused the same way; two quick signals end in two reloads */
    unlink(path);
    dt_auth_reloader_start(r);
    dt_auth_reloader_start(r);
    pump_until_done(base, r, 4);
    assert_ptr_equal(slot, before);
    assert_non_null(strstr(logs.lines[3], "cannot open"));

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dt_auth_metrics_render(slot, f);
    fclose(f);
    assert_int_equal(metric(text, "dovetail_auth_requests_total{token=\"a\"}"), 4 + 1);
    assert_int_equal(metric(text, "dovetail_auth_reloads_total{result=\"ok\"}"), 1);
    assert_int_equal(metric(text, "dovetail_auth_reloads_total{result=\"failed\"}"), 3);
    free(text);

    /* freed while a reload runs: it is waited for */
    write_file(path, good_file, 0600);
    dt_auth_reloader_start(r);
    dt_auth_reloader_free(r);
    event_base_free(base);
    dt_auth_free(slot);
    unlink(path);
    rmdir(tmpdir);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_errors_name_entry_and_field),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_out_of_memory),
        cmocka_unit_test(test_identify_headers),
        cmocka_unit_test(test_identify_compares_everything),
        cmocka_unit_test(test_identify_against_reference),
        cmocka_unit_test(test_every_service_method_has_a_scope),
        cmocka_unit_test(test_allow_against_reference),
        cmocka_unit_test(test_request_tenant),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_load_and_permissions),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
