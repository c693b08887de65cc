/* test_served.c - pending "matches served" counts (server/served.c): notes from several threads
 * while another thread folds, compared with each thread's own tally; the empty tenant as
 * "public"; pending counts as entries, not notes.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "served.h"

#define IDS 300
#define THREADS 4
#define NOTES 20000

typedef struct worker {
    dt_served *t;
    uint64_t seed;
    uint64_t tally[2][2][IDS]; /* tenant, side, id */
} worker;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *const tenants[2] = {"public", "t2"};

static void *note_main(void *arg)
{
    worker *w = arg;
    for (int k = 0; k < NOTES; k++) {
        int t = (int)(rng_next(&w->seed) % 2), side = (int)(rng_next(&w->seed) % 2);
        int id = (int)(rng_next(&w->seed) % IDS);
        uint64_t n = 1 + rng_next(&w->seed) % 10;
        char buf[16];
        snprintf(buf, sizeof buf, "r%d", id);
        dt_err err = DT_ERR_INIT;
        /* tenant 0 is noted as "" half the time: the same tenant as "public" */
        const char *tn = t == 0 && (k & 1) ? "" : tenants[t];
        assert_int_equal(dt_served_note(w->t, tn, (dt_side)side, buf, n, &err), 0);
        w->tally[t][side][id] += n;
    }
    return NULL;
}

static void test_concurrent_notes_and_folds_lose_nothing(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_served *t = dt_served_new(&err);
    dt_outcome_store *s = dt_outcome_store_new(&err);
    assert_non_null(t);
    assert_non_null(s);
    static worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].t = t;
        w[i].seed = 100 + (uint64_t)i;
        assert_int_equal(pthread_create(&th[i], NULL, note_main, &w[i]), 0);
    }
    int folds = 0;
    for (int k = 0; k < 200; k++) {
        assert_int_equal(dt_served_fold(t, s, &err), 0);
        folds++;
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    assert_int_equal(dt_served_fold(t, s, &err), 0);
    assert_int_equal(dt_served_pending(t), 0);
    for (int tn = 0; tn < 2; tn++)
        for (int side = 0; side < 2; side++)
            for (int id = 0; id < IDS; id++) {
                uint64_t want = 0;
                for (int i = 0; i < THREADS; i++) want += w[i].tally[tn][side][id];
                char buf[16];
                snprintf(buf, sizeof buf, "r%d", id);
                dt_outcome_record_stats rs;
                dt_outcome_record_get(s, tenants[tn], (dt_side)side, buf, &rs);
                if (rs.served != want)
                    fail_msg("%s %d %s: %llu served, want %llu", tenants[tn], side, buf,
                             (unsigned long long)rs.served, (unsigned long long)want);
            }
    assert_true(folds > 0);
    dt_outcome_store_free(s);
    dt_served_free(t);
}

static void test_pending_counts_records(void **state)
{
    (void)state;
    dt_err err = DT_ERR_INIT;
    dt_served *t = dt_served_new(&err);
    dt_outcome_store *s = dt_outcome_store_new(&err);
    assert_int_equal(dt_served_pending(t), 0);
    assert_int_equal(dt_served_note(t, "x", DT_DEMAND, "d", 3, &err), 0);
    assert_int_equal(dt_served_note(t, "x", DT_DEMAND, "d", 4, &err), 0);
    assert_int_equal(dt_served_note(t, "x", DT_ACHIEVEMENT, "d", 1, &err), 0); /* other side: another record */
    assert_int_equal(dt_served_note(t, "y", DT_DEMAND, "d", 1, &err), 0);
    assert_int_equal(dt_served_note(t, "y", DT_DEMAND, "e", 0, &err), 0); /* nothing served, nothing noted */
    assert_int_equal(dt_served_pending(t), 3);
    assert_int_equal(dt_served_fold(t, s, &err), 0);
    assert_int_equal(dt_served_pending(t), 0);
    dt_outcome_record_stats rs;
    assert_int_equal(dt_outcome_record_get(s, "x", DT_DEMAND, "d", &rs), 1);
    assert_int_equal(rs.served, 7);
    assert_int_equal(dt_outcome_record_get(s, "x", DT_ACHIEVEMENT, "d", &rs), 1);
    assert_int_equal(rs.served, 1);
    assert_int_equal(dt_outcome_record_get(s, "y", DT_DEMAND, "e", &rs), 0);
    /* an id the store refuses is dropped, the others still arrive */
    assert_int_equal(dt_served_note(t, "x", DT_DEMAND, "bad\x01", 2, &err), 0);
    assert_int_equal(dt_served_note(t, "x", DT_DEMAND, "d", 1, &err), 0);
    assert_int_equal(dt_served_fold(t, s, &err), 0);
    assert_int_equal(dt_served_pending(t), 0);
    assert_int_equal(dt_outcome_record_get(s, "x", DT_DEMAND, "d", &rs), 1);
    assert_int_equal(rs.served, 8);
    dt_outcome_store_free(s);
    dt_served_free(t);
    dt_served_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_notes_and_folds_lose_nothing),
        cmocka_unit_test(test_pending_counts_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
