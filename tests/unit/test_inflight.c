/* test_inflight.c - per-tenant in-flight counters (server/inflight.c) against a brute-force
 * model: an array of (name, count) pairs searched linearly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inflight.h"

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum { NAMES = 300 };

static void test_against_model(void **state)
{
    (void)state;
    dt_inflight *t = dt_inflight_new();
    assert_non_null(t);
    char names[NAMES][DT_TENANT_MAX + 1];
    size_t model[NAMES] = {0};
    for (int i = 0; i < NAMES; i++) {
        /* names that share prefixes and hash buckets, up to the longest allowed */
        if (i == 0) snprintf(names[i], sizeof names[i], "public");
        else if (i == 1) memset(names[i], 'x', DT_TENANT_MAX), names[i][DT_TENANT_MAX] = 0;
        else snprintf(names[i], sizeof names[i], "tenant-%d", i % 150 + (i >= 150 ? 1000 : 0));
    }
    uint64_t s = 7;
    const size_t limit = 5;
    for (int it = 0; it < 200000; it++) {
        int k = (int)(rng(&s) % NAMES);
        if (rng(&s) % 2) {
            int rc = dt_inflight_acquire(t, names[k], limit);
            if (model[k] >= limit) {
                assert_int_equal(rc, -DT_ELIMIT);
            } else {
                assert_int_equal(rc, 0);
                model[k]++;
            }
        } else if (model[k]) {
            dt_inflight_release(t, names[k]);
            model[k]--;
        }
        if (it % 1000 == 0) {
            size_t live = 0;
            for (int i = 0; i < NAMES; i++) {
                assert_int_equal(dt_inflight_count(t, names[i]), model[i]);
                live += model[i] > 0;
            }
            assert_int_equal(dt_inflight_tenants(t), live);
        }
    }
    /* drain: the table empties */
    for (int i = 0; i < NAMES; i++)
        while (model[i]--) dt_inflight_release(t, names[i]);
    assert_int_equal(dt_inflight_tenants(t), 0);
    dt_inflight_free(t);
}

static void test_no_limit_and_bad_name(void **state)
{
    (void)state;
    dt_inflight *t = dt_inflight_new();
    for (int i = 0; i < 10000; i++) assert_int_equal(dt_inflight_acquire(t, "a", 0), 0);
    assert_int_equal(dt_inflight_count(t, "a"), 10000);
    assert_int_equal(dt_inflight_count(t, "b"), 0);
    char longname[DT_TENANT_MAX + 2];
    memset(longname, 'y', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(dt_inflight_acquire(t, longname, 0), -DT_EINVAL);
    dt_inflight_release(t, "never-acquired"); /* harmless */
    assert_int_equal(dt_inflight_tenants(t), 1);
    dt_inflight_free(t); /* frees the live entry too (ASan checks) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_no_limit_and_bad_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
