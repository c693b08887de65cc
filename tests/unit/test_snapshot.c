/* test_snapshot.c - snapshot writing, verification and fallback (store/snapshot.c).
 *
 * Every test works in its own mkdtemp directory under /tmp. Damage: truncation and byte flips at
 * hundreds of random offsets. The rule checked each time: a load either delivers exactly the
 * sections written for the seq it reports, or refuses with a message, and a callback never sees a
 * byte of a file that fails verification. The layout is checked against docs/durability.md with
 * xxhash directly.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "snapshot.h"

static char *make_dir(void)
{
    char *d = strdup("/tmp/dt-snapshot-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    DIR *dp = opendir(d);
    assert_non_null(dp);
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(dp)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", d, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(dp);
    assert_int_equal(rmdir(d), 0);
    free(d);
}

static void spath(char *buf, size_t n, const char *dir, uint64_t seq)
{
    snprintf(buf, n, "%s/snapshot.%020llu.dt", dir, (unsigned long long)seq);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n ? (size_t)n : 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static size_t count_prefix(const char *dir, const char *prefix)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(dp);
    return n;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- what a snapshot should contain ---- */

typedef struct {
    size_t n;
    uint8_t type[64];
    size_t len[64];
    uint8_t *data[64];
} sections;

/* Sections derived from seq: different seqs give different contents. */
static void sections_for(uint64_t seq, sections *s, size_t n, size_t max_len)
{
    uint64_t r = seq * 1000003u;
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        s->type[i] = (uint8_t)rng_next(&r);
        s->len[i] = i == 1 ? 0 : (size_t)(rng_next(&r) % max_len);
        s->data[i] = malloc(s->len[i] ? s->len[i] : 1);
        assert_non_null(s->data[i]);
        for (size_t k = 0; k < s->len[i]; k++)
            s->data[i][k] = (uint8_t)rng_next(&r);
    }
}

static void sections_free(sections *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->data[i]);
    s->n = 0;
}

static void write_snapshot(const char *dir, uint64_t seq, const sections *s)
{
    dt_snapshot_writer *w;
    dt_err err = DT_ERR_INIT;
    int rc = dt_snapshot_begin(dir, seq, &w, &err);
    if (rc) fail_msg("begin: %s", err.msg);
    for (size_t i = 0; i < s->n; i++) {
        rc = dt_snapshot_put(w, s->type[i], s->data[i], s->len[i], &err);
        if (rc) fail_msg("put: %s", err.msg);
    }
    rc = dt_snapshot_commit(w, &err);
    if (rc) fail_msg("commit: %s", err.msg);
}

/* A callback that compares each delivered section with the expected ones of every seq it may be. */
typedef struct {
    size_t calls;
    size_t matched[2]; /* sections so far matching cand[0] / cand[1] in order */
    const sections *cand[2];
} checker;

static int check_cb(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    (void)err;
    checker *c = ud;
    for (int k = 0; k < 2; k++) {
        const sections *s = c->cand[k];
        size_t i = c->calls;
        if (s && c->matched[k] == i && i < s->n && s->type[i] == type && s->len[i] == len &&
            (len == 0 || memcmp(s->data[i], p, len) == 0))
            c->matched[k]++;
    }
    c->calls++;
    return 0;
}

/* Loads dir; on success the delivered sections must be exactly those of the seq reported. Returns
 * the load's result. */
static int load_checked(const char *dir, const sections *by_seq[], const uint64_t seqs[],
                        int n_seqs, uint64_t *seq, dt_snapshot_report *rep, dt_err *err)
{
    checker c = {0, {0, 0}, {n_seqs > 0 ? by_seq[0] : NULL, n_seqs > 1 ? by_seq[1] : NULL}};
    int rc = dt_snapshot_load_latest(dir, check_cb, &c, seq, rep, err);
    if (rc) {
        assert_int_equal(c.calls, 0);
        assert_true(err->msg[0] != '\0');
        return rc;
    }
    int which = -1;
    for (int k = 0; k < n_seqs; k++)
        if (seqs[k] == *seq) which = k;
    if (which < 0) fail_msg("loaded seq %llu that was never written", (unsigned long long)*seq);
    assert_int_equal(c.calls, by_seq[which]->n);
    assert_int_equal(c.matched[which], by_seq[which]->n);
    assert_int_equal(rep->sections, by_seq[which]->n);
    return 0;
}

/* ---- tests ---- */

static void test_round_trip_delivers_sections_in_order(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections s;
    sections_for(42, &s, 50, 20000);
    time_t t0 = time(NULL);
    write_snapshot(dir, 42, &s);
    assert_int_equal(count_prefix(dir, "snapshot."), 1);
    uint64_t seq = 99;
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;
    const sections *by[] = {&s};
    const uint64_t seqs[] = {42};
    assert_int_equal(load_checked(dir, by, seqs, 1, &seq, &rep, &err), 0);
    assert_int_equal(seq, 42);
    assert_int_equal(rep.seq, 42);
    assert_string_equal(rep.loaded, "snapshot.00000000000000000042.dt");
    assert_true(rep.created >= t0 - 1 && rep.created <= time(NULL) + 1);
    assert_int_equal(rep.found, 1);
    assert_int_equal(rep.n_rejected, 0);
    assert_int_equal(rep.temp_files, 0);
    sections_free(&s);

    /* a snapshot without sections, at seq 0 */
    sections empty = {0};
    write_snapshot(dir, 0, &empty);
    char p0[PATH_MAX];
    spath(p0, sizeof p0, dir, 0);
    struct stat st;
    assert_int_equal(stat(p0, &st), 0);
    assert_int_equal(st.st_size, 32 + 24);
    remove_dir(dir);

    /* no snapshot at all (or no directory): a fresh start */
    dir = make_dir();
    seq = 7;
    assert_int_equal(dt_snapshot_load_latest(dir, check_cb, NULL, &seq, &rep, &err), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(rep.found, 0);
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/none", dir);
    assert_int_equal(dt_snapshot_load_latest(missing, check_cb, NULL, &seq, NULL, &err), 0);
    remove_dir(dir);
}

static void test_layout_matches_documentation(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_snapshot_writer *w;
    dt_err err = DT_ERR_INIT;
    time_t t0 = time(NULL);
    assert_int_equal(dt_snapshot_begin(dir, 0x0102, &w, &err), 0);
    assert_int_equal(dt_snapshot_put(w, 7, "abc", 3, &err), 0);
    assert_int_equal(dt_snapshot_put(w, 9, NULL, 0, &err), 0);
    assert_int_equal(dt_snapshot_commit(w, &err), 0);
    char path[PATH_MAX];
    spath(path, sizeof path, dir, 0x0102);
    size_t len;
    uint8_t *p = read_all(path, &len);
    assert_int_equal(len, 32 + 9 + 3 + 9 + 24);
    assert_memory_equal(p, "DTSNAP\0\0", 8);
    const uint8_t ver_seq[] = {1, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p + 8, ver_seq, sizeof ver_seq);
    int64_t created = 0;
    for (int i = 0; i < 8; i++)
        created |= (int64_t)p[24 + i] << (8 * i);
    assert_true(created >= t0 - 1 && created <= time(NULL) + 1);
    const uint8_t sec[] = {7, 3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 9, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p + 32, sec, sizeof sec);
    assert_memory_equal(p + 53, "DTSNEND\0", 8);
    const uint8_t count[] = {2, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p + 61, count, 8);
    uint64_t h = XXH3_64bits(p, len - 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(p[len - 8 + (size_t)i], (uint8_t)(h >> (8 * i)));
    free(p);
    remove_dir(dir);
}

/* Damage the newest of two snapshots (or the only one) `cases` times at random offsets. */
static void damage_cases(bool truncate, bool with_older, int cases)
{
    char *dir = make_dir();
    sections old, cur;
    sections_for(10, &old, 8, 3000);
    sections_for(20, &cur, 12, 3000);
    if (with_older) write_snapshot(dir, 10, &old);
    write_snapshot(dir, 20, &cur);
    char path[PATH_MAX];
    spath(path, sizeof path, dir, 20);
    size_t len;
    uint8_t *full = read_all(path, &len);
    uint8_t *p = malloc(len);
    const sections *by[] = {&cur, &old};
    const uint64_t seqs[] = {20, with_older ? 10 : 0};
    uint64_t r = truncate ? 5 : 6;
    int loads_older = 0, refusals = 0;
    for (int k = 0; k < cases; k++) {
        size_t at = (size_t)(rng_next(&r) % len);
        size_t plen = len;
        memcpy(p, full, len);
        if (truncate)
            plen = at;
        else
            p[at] ^= (uint8_t)(1 + rng_next(&r) % 255);
        write_all(path, p, plen);
        uint64_t seq = 1234;
        dt_snapshot_report rep;
        dt_err err = DT_ERR_INIT;
        int rc = load_checked(dir, by, seqs, with_older ? 2 : 1, &seq, &rep, &err);
        /* every damage is detected: the newest never loads */
        if (with_older) {
            if (rc) fail_msg("damage at %zu: %s", at, err.msg);
            assert_int_equal(seq, 10);
            assert_int_equal(rep.n_rejected, 1);
            assert_string_equal(rep.rejected[0].file, "snapshot.00000000000000000020.dt");
            assert_true(rep.rejected[0].reason[0] != '\0');
            loads_older++;
        } else {
            assert_int_equal(rc, -DT_ECORRUPT);
            assert_non_null(strstr(err.msg, "snapshot.00000000000000000020.dt"));
            assert_non_null(strstr(err.msg, "none of the 1 snapshots"));
            refusals++;
        }
        /* the damaged file is never deleted or repaired */
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((size_t)st.st_size, plen);
    }
    assert_int_equal(loads_older + refusals, cases);
    /* undamaged again: the newest loads */
    write_all(path, full, len);
    uint64_t seq;
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(load_checked(dir, by, seqs, with_older ? 2 : 1, &seq, &rep, &err), 0);
    assert_int_equal(seq, 20);
    free(p);
    free(full);
    sections_free(&old);
    sections_free(&cur);
    remove_dir(dir);
}

static void test_truncation_at_random_offsets_never_loads_wrong_data(void **state)
{
    (void)state;
    damage_cases(true, true, 250);
    damage_cases(true, false, 250);
}

static void test_byte_flips_at_random_offsets_never_load_wrong_data(void **state)
{
    (void)state;
    damage_cases(false, true, 250);
    damage_cases(false, false, 250);
}

static void test_temp_and_foreign_files_are_never_loaded(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections a, b;
    sections_for(20, &a, 3, 100);
    sections_for(99, &b, 3, 100);
    write_snapshot(dir, 99, &b);
    char p99[PATH_MAX - 32], tmp[PATH_MAX], odd[PATH_MAX], bak[PATH_MAX];
    spath(p99, sizeof p99, dir, 99);
    /* a complete, valid file under a temp name, a short name and a backup name */
    snprintf(tmp, sizeof tmp, "%s.tmp.abc123", p99);
    assert_int_equal(rename(p99, tmp), 0);
    size_t len;
    uint8_t *full = read_all(tmp, &len);
    snprintf(odd, sizeof odd, "%s/snapshot.99.dt", dir);
    write_all(odd, full, len);
    snprintf(bak, sizeof bak, "%s.bak", p99);
    write_all(bak, full, len);
    write_snapshot(dir, 20, &a);
    /* the commit of 20 removed the stale temp file; put it back */
    write_all(tmp, full, len);

    uint64_t seq;
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;
    const sections *by[] = {&a};
    const uint64_t seqs[] = {20};
    assert_int_equal(load_checked(dir, by, seqs, 1, &seq, &rep, &err), 0);
    assert_int_equal(seq, 20);
    assert_int_equal(rep.found, 1);
    assert_int_equal(rep.temp_files, 1);
    assert_int_equal(rep.n_rejected, 0);

    /* an aborted writer leaves nothing */
    dt_snapshot_writer *w;
    assert_int_equal(dt_snapshot_begin(dir, 30, &w, &err), 0);
    assert_int_equal(dt_snapshot_put(w, 1, "x", 1, &err), 0);
    assert_int_equal(count_prefix(dir, "snapshot.00000000000000000030.dt.tmp."), 1);
    dt_snapshot_abort(w);
    dt_snapshot_abort(NULL);
    assert_int_equal(count_prefix(dir, "snapshot.00000000000000000030"), 0);
    /* foreign names survive commits */
    assert_int_equal(access(odd, F_OK), 0);
    assert_int_equal(access(bak, F_OK), 0);
    free(full);
    sections_free(&a);
    sections_free(&b);
    remove_dir(dir);
}

static void test_commit_keeps_two_and_never_deletes_a_newer_file(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections s[6];
    for (uint64_t i = 1; i <= 4; i++) {
        sections_for(i, &s[i], 2, 50);
        write_snapshot(dir, i, &s[i]);
    }
    assert_int_equal(count_prefix(dir, "snapshot."), 2);
    char p[PATH_MAX];
    spath(p, sizeof p, dir, 3);
    assert_int_equal(access(p, F_OK), 0);
    spath(p, sizeof p, dir, 4);
    assert_int_equal(access(p, F_OK), 0);

    /* a damaged file with a higher seq: reported, loaded around, never deleted */
    char bad[PATH_MAX];
    spath(bad, sizeof bad, dir, 100);
    write_all(bad, (const uint8_t *)"garbage", 7);
    sections_for(5, &s[5], 2, 50);
    write_snapshot(dir, 5, &s[5]);
    assert_int_equal(access(bad, F_OK), 0);
    assert_int_equal(count_prefix(dir, "snapshot."), 3);
    uint64_t seq;
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;
    const sections *by[] = {&s[5]};
    const uint64_t seqs[] = {5};
    assert_int_equal(load_checked(dir, by, seqs, 1, &seq, &rep, &err), 0);
    assert_int_equal(seq, 5);
    assert_int_equal(rep.n_rejected, 1);
    assert_int_equal(rep.rejected[0].seq, 100);
    assert_non_null(strstr(rep.rejected[0].reason, "shorter than an empty snapshot"));
    for (int i = 1; i <= 5; i++)
        sections_free(&s[i]);
    remove_dir(dir);
}

/* Rewrites the file at path with byte `at` (4 or 8 bytes LE) set to v and the trailer hash fixed.
 */
static void patch_and_rehash(const char *path, size_t at, uint64_t v, int width)
{
    size_t len;
    uint8_t *p = read_all(path, &len);
    for (int i = 0; i < width; i++)
        p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
    uint64_t h = XXH3_64bits(p, len - 8);
    for (int i = 0; i < 8; i++)
        p[len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
    write_all(path, p, len);
    free(p);
}

static void test_structural_checks_behind_a_valid_checksum(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections old, cur;
    sections_for(1, &old, 2, 50);
    sections_for(2, &cur, 3, 50);
    write_snapshot(dir, 1, &old);
    write_snapshot(dir, 2, &cur);
    char path[PATH_MAX];
    spath(path, sizeof path, dir, 2);
    size_t len;
    uint8_t *full = read_all(path, &len);
    const sections *by[] = {&cur, &old};
    const uint64_t seqs[] = {2, 1};
    uint64_t seq;
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;

    /* a newer format version is refused outright, never skipped for an older snapshot */
    patch_and_rehash(path, 8, 2, 4);
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), -DT_EINVAL);
    assert_non_null(strstr(err.msg, "format version 2"));
    write_all(path, full, len);

    /* header seq different from the name: falls back */
    patch_and_rehash(path, 16, 3, 8);
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), 0);
    assert_int_equal(seq, 1);
    assert_non_null(strstr(rep.rejected[0].reason, "does not match the file name"));
    write_all(path, full, len);

    /* section count that disagrees with the sections */
    patch_and_rehash(path, len - 16, 4, 8);
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), 0);
    assert_int_equal(seq, 1);
    assert_non_null(strstr(rep.rejected[0].reason, "sections found"));
    write_all(path, full, len);

    /* a section length pointing past the trailer */
    patch_and_rehash(path, 33, 1u << 30, 8);
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), 0);
    assert_int_equal(seq, 1);
    assert_non_null(strstr(rep.rejected[0].reason, "runs past the trailer"));
    write_all(path, full, len);

    /* not a snapshot at all */
    patch_and_rehash(path, 0, 0x5858585858585858ull, 8);
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), 0);
    assert_non_null(strstr(rep.rejected[0].reason, "magic"));
    write_all(path, full, len);

    /* undamaged again */
    assert_int_equal(load_checked(dir, by, seqs, 2, &seq, &rep, &err), 0);
    assert_int_equal(seq, 2);
    free(full);
    sections_free(&old);
    sections_free(&cur);
    remove_dir(dir);
}

static int failing_cb(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    (void)type, (void)p, (void)len;
    int *calls = ud;
    if (++*calls == 2)
        return dt_err_set(err, DT_ENOMEM, "state", "out of memory applying a section");
    return 0;
}

static void test_callback_error_stops_the_load(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections s;
    sections_for(3, &s, 5, 50);
    write_snapshot(dir, 3, &s);
    int calls = 0;
    uint64_t seq = 77;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_snapshot_load_latest(dir, failing_cb, &calls, &seq, NULL, &err),
                     -DT_ENOMEM);
    assert_int_equal(calls, 2);
    assert_int_equal(seq, 0);
    assert_string_equal(err.field, "state");
    sections_free(&s);
    remove_dir(dir);
}

/* A write that fails (file size limit): nothing is committed and no temp file stays. */
static void test_failed_write_commits_nothing(void **state)
{
    (void)state;
    char *dir = make_dir();
    sections s;
    sections_for(1, &s, 2, 50);
    write_snapshot(dir, 1, &s);
    size_t big = 3u << 20;
    uint8_t *blob = calloc(big, 1);

    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    dt_snapshot_writer *w;
    dt_err err = DT_ERR_INIT, err2 = DT_ERR_INIT;
    int rc_begin = dt_snapshot_begin(dir, 2, &w, &err);
    int rc_put = rc_begin ? 0 : dt_snapshot_put(w, 1, blob, big, &err);
    int rc_commit = rc_begin ? 0 : dt_snapshot_commit(w, &err2);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old);

    assert_int_equal(rc_begin, 0);
    assert_int_equal(rc_put, -DT_EIO);
    assert_non_null(strstr(err.msg, "cannot write"));
    assert_int_equal(rc_commit, -DT_EIO);
    assert_non_null(strstr(err2.msg, "nothing committed"));
    assert_int_equal(count_prefix(dir, "snapshot."), 1);
    uint64_t seq;
    const sections *by[] = {&s};
    const uint64_t seqs[] = {1};
    dt_snapshot_report rep;
    assert_int_equal(load_checked(dir, by, seqs, 1, &seq, &rep, &err), 0);
    assert_int_equal(seq, 1);
    free(blob);
    sections_free(&s);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_delivers_sections_in_order),
        cmocka_unit_test(test_layout_matches_documentation),
        cmocka_unit_test(test_truncation_at_random_offsets_never_loads_wrong_data),
        cmocka_unit_test(test_byte_flips_at_random_offsets_never_load_wrong_data),
        cmocka_unit_test(test_temp_and_foreign_files_are_never_loaded),
        cmocka_unit_test(test_commit_keeps_two_and_never_deletes_a_newer_file),
        cmocka_unit_test(test_structural_checks_behind_a_valid_checksum),
        cmocka_unit_test(test_callback_error_stops_the_load),
        cmocka_unit_test(test_failed_write_commits_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
