/* test_journal.c - journal append, group commit, rotation, pruning and replay (store/journal.c).
 *
 * Every test works in its own mkdtemp directory under /tmp. Damage is made by rewriting the files
 * with plain I/O: every cut inside the last entry (a torn tail) and inside the first entry of the
 * newest file (refused), every flipped byte of every entry (refused), seq gaps,
 * missing files, a write that fails half-way (RLIMIT_FSIZE). Expected entries come from what the
 * test appended, and the on-disk layout is checked against docs/durability.md with xxhash directly.
 * The concurrency test prints the group-commit figures (entries/s, fdatasyncs/s); it asserts
 * ordering and completeness, never speed.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "journal.h"

/* ---- files and directories ---- */

static char *make_dir(void)
{
    char *d = strdup("/tmp/dt-journal-XXXXXX");
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

static void jpath(char *buf, size_t n, const char *dir, uint64_t seq)
{
    snprintf(buf, n, "%s/journal.%020llu.log", dir, (unsigned long long)seq);
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

static size_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static size_t count_files(const char *dir, const char *prefix)
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

/* ---- payloads and a collecting callback ---- */

/* Payload of entry seq: its length and bytes are a function of seq, so replay can be checked. */
static size_t payload_for(uint64_t seq, uint8_t *buf, size_t cap)
{
    size_t len = (size_t)((seq * 37) % 300);
    if (seq % 11 == 0) len = 0;
    assert_true(len <= cap);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 131 + i * 7);
    return len;
}

static uint8_t type_for(uint64_t seq)
{
    return (uint8_t)(1 + seq % 3);
}

typedef struct {
    uint64_t n;
    uint64_t seqs[20000];
    bool check_payload; /* compare against payload_for */
    uint64_t fail_at;   /* return an error at this seq (0: never) */
} collect;

static int collect_cb(void *ud, uint8_t type, const uint8_t *p, size_t len, uint64_t seq,
                      dt_err *err)
{
    collect *c = ud;
    if (c->fail_at && seq == c->fail_at)
        return dt_err_set(err, DT_EINVAL, "test", "stop at %llu", (unsigned long long)seq);
    assert_true(c->n < 20000);
    c->seqs[c->n++] = seq;
    if (c->check_payload) {
        uint8_t want[512];
        size_t wlen = payload_for(seq, want, sizeof want);
        assert_int_equal(type, type_for(seq));
        assert_int_equal(len, wlen);
        if (wlen) assert_memory_equal(p, want, wlen);
    }
    return 0;
}

static collect *collect_new(void)
{
    collect *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->check_payload = true;
    return c;
}

/* Appends entries first..last with payload_for, syncing each. */
static void append_range(dt_journal *j, uint64_t first, uint64_t last)
{
    for (uint64_t s = first; s <= last; s++) {
        uint8_t buf[512];
        size_t len = payload_for(s, buf, sizeof buf);
        uint64_t got;
        dt_err err = DT_ERR_INIT;
        int rc = dt_journal_append(j, type_for(s), buf, len, &got, &err);
        if (rc) fail_msg("append %llu: %s", (unsigned long long)s, err.msg);
        assert_int_equal(got, s);
        assert_int_equal(dt_journal_sync(j, got, &err), 0);
    }
}

static dt_journal *open_ok(const char *dir, dt_fsync_policy p, uint64_t next)
{
    dt_err err = DT_ERR_INIT;
    dt_journal *j = dt_journal_open(dir, p, next, &err);
    if (!j) fail_msg("open: %s", err.msg);
    return j;
}

/* Replays dir after `after`; expects success and the entries after+1..last in order. */
static void expect_replay(const char *dir, uint64_t after, uint64_t last,
                          dt_journal_replay_report *rep)
{
    collect *c = collect_new();
    dt_err err = DT_ERR_INIT;
    int rc = dt_journal_replay(dir, after, true, collect_cb, c, rep, &err);
    if (rc) fail_msg("replay: %s", err.msg);
    assert_int_equal(c->n, last > after ? last - after : 0);
    for (uint64_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], after + 1 + i);
    assert_int_equal(rep->entries, c->n);
    free(c);
}

/* Writes a journal of entries 1..n into a fresh dir; *starts gets each entry's offset. */
static char *journal_of(uint64_t n, size_t *starts)
{
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, DT_FSYNC_NO, 1);
    size_t off = 0;
    for (uint64_t s = 1; s <= n; s++) {
        uint8_t buf[512];
        size_t len = payload_for(s, buf, sizeof buf);
        if (starts) starts[s - 1] = off;
        off += DT_JOURNAL_HEADER_SIZE + len;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_journal_append(j, type_for(s), buf, len, NULL, &err), 0);
    }
    dt_journal_close(j);
    return dir;
}

/* ---- tests ---- */

static void test_policy_names_parse(void **state)
{
    (void)state;
    dt_fsync_policy p;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_fsync_policy_parse("always", &p, &err), 0);
    assert_int_equal(p, DT_FSYNC_ALWAYS);
    assert_int_equal(dt_fsync_policy_parse(" EverySec ", &p, &err), 0);
    assert_int_equal(p, DT_FSYNC_EVERYSEC);
    assert_int_equal(dt_fsync_policy_parse("NO", &p, &err), 0);
    assert_int_equal(p, DT_FSYNC_NO);
    assert_int_equal(dt_fsync_policy_parse("sometimes", &p, &err), -DT_EINVAL);
    assert_string_equal(err.field, "fsync");
    assert_non_null(strstr(err.msg, "sometimes"));
    assert_int_equal(dt_fsync_policy_parse(NULL, &p, &err), -DT_EINVAL);
    assert_string_equal(dt_fsync_policy_name(DT_FSYNC_EVERYSEC), "everysec");
}

static void test_append_then_replay_delivers_every_entry_in_order(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, DT_FSYNC_ALWAYS, 1);
    append_range(j, 1, 120);
    dt_journal_stats st;
    dt_journal_stats_get(j, &st);
    assert_int_equal(st.next_seq, 121);
    assert_int_equal(st.synced_seq, 120);
    assert_int_equal(st.appends, 120);
    assert_true(st.fsyncs >= 1 && st.fsyncs <= 120);
    assert_false(st.broken);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_journal_sync(j, 121, &err), -DT_EINVAL);
    assert_int_equal(dt_journal_sync(j, 0, &err), 0);
    dt_journal_close(j);

    dt_journal_replay_report rep;
    expect_replay(dir, 0, 120, &rep);
    assert_int_equal(rep.last_seq, 120);
    assert_int_equal(rep.files, 1);
    assert_int_equal(rep.skipped, 0);
    assert_int_equal(rep.torn_bytes, 0);
    assert_false(rep.truncated);
    expect_replay(dir, 75, 120, &rep);
    assert_int_equal(rep.skipped, 75);
    expect_replay(dir, 120, 120, &rep);
    assert_int_equal(rep.last_seq, 120);
    /* a snapshot newer than the journal: nothing to replay, the journal continues after it */
    expect_replay(dir, 500, 500, &rep);
    assert_int_equal(rep.last_seq, 500);

    /* a NULL callback only verifies */
    assert_int_equal(dt_journal_replay(dir, 0, false, NULL, NULL, &rep, &err), 0);
    assert_int_equal(rep.entries, 120);

    /* the callback's error stops the replay */
    collect *c = collect_new();
    c->fail_at = 30;
    assert_int_equal(dt_journal_replay(dir, 0, true, collect_cb, c, &rep, &err), -DT_EINVAL);
    assert_int_equal(c->n, 29);
    assert_string_equal(err.field, "test");
    free(c);
    remove_dir(dir);
}

static void test_entry_layout_matches_documentation(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, DT_FSYNC_ALWAYS, 7);
    dt_err err = DT_ERR_INIT;
    uint64_t seq;
    assert_int_equal(dt_journal_append(j, 0x42, "hello", 5, &seq, &err), 0);
    assert_int_equal(seq, 7);
    assert_int_equal(dt_journal_append(j, 9, NULL, 0, &seq, &err), 0);
    assert_int_equal(seq, 8);
    assert_int_equal(dt_journal_sync(j, 8, &err), 0);
    dt_journal_close(j);

    char path[PATH_MAX];
    jpath(path, sizeof path, dir, 7);
    size_t len;
    uint8_t *p = read_all(path, &len);
    assert_int_equal(len, 22 + 5 + 22);
    const uint8_t want_hdr[14] = {0xD7, 0x42, 5, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p, want_hdr, 14);
    uint64_t sum = XXH3_64bits_withSeed(p, 14, XXH3_64bits("hello", 5));
    for (int i = 0; i < 8; i++)
        assert_int_equal(p[14 + i], (uint8_t)(sum >> (8 * i)));
    assert_memory_equal(p + 22, "hello", 5);
    const uint8_t *q = p + 27;
    const uint8_t want_hdr2[14] = {0xD7, 9, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(q, want_hdr2, 14);
    sum = XXH3_64bits_withSeed(q, 14, XXH3_64bits("", 0));
    for (int i = 0; i < 8; i++)
        assert_int_equal(q[14 + i], (uint8_t)(sum >> (8 * i)));
    free(p);
    remove_dir(dir);
}

typedef struct {
    dt_journal *j;
    int id;
    int n;
    bool sync;
} writer_arg;

static void *writer_main(void *arg)
{
    writer_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        uint32_t payload[2] = {(uint32_t)a->id, (uint32_t)i};
        uint64_t seq;
        dt_err err = DT_ERR_INIT;
        if (dt_journal_append(a->j, 1, payload, sizeof payload, &seq, &err) != 0) abort();
        if (a->sync && dt_journal_sync(a->j, seq, &err) != 0) abort();
    }
    return NULL;
}

typedef struct {
    uint64_t n;
    uint64_t next_seq;
    int per_thread[16];
    bool ok;
} concurrent_check;

static int concurrent_cb(void *ud, uint8_t type, const uint8_t *p, size_t len, uint64_t seq,
                         dt_err *err)
{
    (void)err;
    concurrent_check *c = ud;
    uint32_t v[2];
    if (type != 1 || len != sizeof v || seq != c->next_seq) c->ok = false;
    memcpy(v, p, sizeof v);
    /* each thread's entries appear once, in the order it appended them */
    if (v[0] >= 16 || (int)v[1] != c->per_thread[v[0]])
        c->ok = false;
    else
        c->per_thread[v[0]]++;
    c->next_seq++;
    c->n++;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_concurrent(dt_fsync_policy policy, int threads, int per, bool sync)
{
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, policy, 1);
    pthread_t t[16];
    writer_arg a[16];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        a[i] = (writer_arg){j, i, per, sync};
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &a[i]), 0);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    dt_journal_stats st;
    dt_journal_stats_get(j, &st);
    uint64_t total = (uint64_t)threads * (uint64_t)per;
    assert_int_equal(st.appends, total);
    if (policy == DT_FSYNC_ALWAYS) {
        assert_int_equal(st.synced_seq, total);
        assert_true(st.fsyncs <= total);
        print_message(
            "# group commit, %s, %d threads x %d append+sync: %.0f entries/s, %.0f fdatasyncs/s "
            "(%.1f entries per fdatasync)\n",
            dt_fsync_policy_name(policy), threads, per, (double)total / dt, (double)st.fsyncs / dt,
            (double)total / (double)(st.fsyncs ? st.fsyncs : 1));
    } else {
        print_message("# %s, %d threads x %d append+sync: %.0f entries/s\n",
                      dt_fsync_policy_name(policy), threads, per, (double)total / dt);
    }
    dt_journal_close(j);

    concurrent_check c = {0, 1, {0}, true};
    dt_journal_replay_report rep;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_journal_replay(dir, 0, true, concurrent_cb, &c, &rep, &err), 0);
    assert_true(c.ok);
    assert_int_equal(c.n, total);
    for (int i = 0; i < threads; i++)
        assert_int_equal(c.per_thread[i], per);
    remove_dir(dir);
}

static void test_concurrent_appends_get_every_seq_once_in_order(void **state)
{
    (void)state;
    run_concurrent(DT_FSYNC_ALWAYS, 8, 400, true);
    run_concurrent(DT_FSYNC_ALWAYS, 1, 400, true);
    run_concurrent(DT_FSYNC_EVERYSEC, 8, 2000, true);
    run_concurrent(DT_FSYNC_NO, 8, 2000, true);
}

static void test_everysec_syncs_in_the_background(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, DT_FSYNC_EVERYSEC, 1);
    append_range(j, 1, 5);
    dt_journal_stats st;
    double t0 = now_s();
    do {
        usleep(50 * 1000);
        dt_journal_stats_get(j, &st);
    } while (st.synced_seq < 5 && now_s() - t0 < 10);
    assert_int_equal(st.synced_seq, 5);
    assert_true(st.fsyncs >= 1);
    dt_journal_close(j);

    j = open_ok(dir, DT_FSYNC_NO, 6);
    append_range(j, 6, 8);
    dt_journal_stats_get(j, &st);
    assert_int_equal(st.synced_seq, 5);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_journal_flush(j, &err), 0);
    dt_journal_stats_get(j, &st);
    assert_int_equal(st.synced_seq, 8);
    dt_journal_close(j);
    dt_journal_replay_report rep;
    expect_replay(dir, 0, 8, &rep);
    assert_int_equal(rep.files, 2);
    remove_dir(dir);
}

static void test_torn_tail_at_every_offset_is_cut(void **state)
{
    (void)state;
    enum { N = 6 };
    size_t starts[N];
    char *src = journal_of(N, starts);
    char path[PATH_MAX];
    jpath(path, sizeof path, src, 1);
    size_t len;
    uint8_t *full = read_all(path, &len);
    size_t last = starts[N - 1];
    assert_true(len - last > DT_JOURNAL_HEADER_SIZE + 20);

    for (size_t cut = last; cut < len; cut++) {
        write_all(path, full, cut);
        dt_journal_replay_report rep;
        expect_replay(src, 0, N - 1, &rep);
        assert_int_equal(rep.last_seq, N - 1);
        if (cut == last) {
            assert_int_equal(rep.torn_bytes, 0);
            assert_false(rep.truncated);
        } else {
            assert_int_equal(rep.torn_bytes, cut - last);
            assert_int_equal(rep.torn_offset, last);
            assert_true(rep.truncated);
            assert_non_null(strstr(rep.torn_file, "journal.00000000000000000001.log"));
            assert_true(rep.torn_reason[0] != '\0');
        }
        assert_int_equal(file_size(path), last);

        /* the journal continues cleanly after the cut */
        if (cut % 9 == 0 || cut == len - 1) {
            dt_journal *j = open_ok(src, DT_FSYNC_ALWAYS, N);
            append_range(j, N, N + 2);
            dt_journal_close(j);
            expect_replay(src, 0, N + 2, &rep);
            assert_int_equal(rep.torn_bytes, 0);
            char p2[PATH_MAX];
            jpath(p2, sizeof p2, src, N);
            assert_int_equal(unlink(p2), 0);
        }
    }

    /* without repair the tail is reported and left in place */
    write_all(path, full, len - 3);
    dt_journal_replay_report rep;
    collect *c = collect_new();
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_journal_replay(src, 0, false, collect_cb, c, &rep, &err), 0);
    assert_int_equal(c->n, N - 1);
    assert_int_equal(rep.torn_bytes, len - 3 - last);
    assert_false(rep.truncated);
    assert_int_equal(file_size(path), len - 3);
    free(c);

    /* zeros after the last entry (a pre-allocated or stale block) are a torn tail too */
    uint8_t *z = calloc(len + 4096, 1);
    memcpy(z, full, len);
    write_all(path, z, len + 4096);
    expect_replay(src, 0, N, &rep);
    assert_int_equal(rep.torn_bytes, 4096);
    assert_non_null(strstr(rep.torn_reason, "format byte"));
    assert_int_equal(file_size(path), len);
    free(z);
    free(full);
    remove_dir(src);
}

static void test_flipped_byte_in_a_middle_entry_is_corruption(void **state)
{
    (void)state;
    enum { N = 6 };
    size_t starts[N];
    char *src = journal_of(N, starts);
    char path[PATH_MAX];
    jpath(path, sizeof path, src, 1);
    size_t len;
    uint8_t *full = read_all(path, &len);
    uint8_t *p = malloc(len);
    for (size_t i = 0; i < starts[N - 1]; i++) {
        size_t entry = 0;
        while (entry + 1 < N && starts[entry + 1] <= i)
            entry++;
        memcpy(p, full, len);
        p[i] ^= (uint8_t)(1u << (i % 8));
        write_all(path, p, len);
        collect *c = collect_new();
        dt_journal_replay_report rep;
        dt_err err = DT_ERR_INIT;
        int rc = dt_journal_replay(src, 0, true, collect_cb, c, &rep, &err);
        if (rc != -DT_ECORRUPT)
            fail_msg("flip at %zu: rc %d, %llu entries", i, rc, (unsigned long long)c->n);
        /* named file and offset of the bad entry */
        char where[64];
        snprintf(where, sizeof where, "offset %zu", starts[entry]);
        if (!strstr(err.msg, where) || !strstr(err.msg, "journal.00000000000000000001.log"))
            fail_msg("flip at %zu: message \"%s\"", i, err.msg);
        /* nothing at or after the bad entry was delivered, and nothing was cut */
        assert_int_equal(c->n, entry);
        assert_int_equal(file_size(path), len);
        assert_false(rep.truncated);
        free(c);
    }
    free(p);
    free(full);
    remove_dir(src);
}

/* A crash leaves a prefix of the entry being written, never a full-length entry with a bad
 * checksum: every flipped byte of the last entry (header, length, seq, checksum or payload) is
 * refused as damage, naming file and offset, and nothing is cut. */
static void test_flipped_byte_in_the_last_entry_is_refused(void **state)
{
    (void)state;
    enum { N = 6 };
    size_t starts[N];
    char *src = journal_of(N, starts);
    char path[PATH_MAX];
    jpath(path, sizeof path, src, 1);
    size_t len;
    uint8_t *full = read_all(path, &len);
    uint8_t *p = malloc(len);
    char where[64];
    snprintf(where, sizeof where, "offset %zu", starts[N - 1]);
    for (size_t i = starts[N - 1]; i < len; i++)
        for (unsigned bit = 0; bit < 8; bit += 3) {
            memcpy(p, full, len);
            p[i] ^= (uint8_t)(1u << ((i + bit) % 8));
            write_all(path, p, len);
            collect *c = collect_new();
            dt_journal_replay_report rep;
            dt_err err = DT_ERR_INIT;
            int rc = dt_journal_replay(src, 0, true, collect_cb, c, &rep, &err);
            if (rc != -DT_ECORRUPT)
                fail_msg("flip at %zu (entry at %zu): rc %d, torn %llu bytes", i, starts[N - 1], rc,
                         (unsigned long long)rep.torn_bytes);
            if (!strstr(err.msg, where) || !strstr(err.msg, "journal.00000000000000000001.log") ||
                !strstr(err.msg, "truncate -s"))
                fail_msg("flip at %zu: message \"%s\"", i, err.msg);
            assert_int_equal(c->n, N - 1);
            assert_false(rep.truncated);
            assert_int_equal(file_size(path), len);
            free(c);
        }
    free(p);
    free(full);
    remove_dir(src);
}

/* A newest file cut inside its first entry lost every acknowledged entry it held: refused (with
 * the command that cuts it, for the operator who knows a crash left it), never cut silently. An
 * empty newest file is fine. */
static void test_cut_inside_the_first_entry_of_the_newest_file_is_refused(void **state)
{
    (void)state;
    enum { N = 6 };
    size_t starts[N];
    char *src = journal_of(N, starts);
    char path[PATH_MAX];
    jpath(path, sizeof path, src, 1);
    size_t len;
    uint8_t *full = read_all(path, &len);
    for (size_t cut = 1; cut < starts[1]; cut++) {
        write_all(path, full, cut);
        dt_journal_replay_report rep;
        dt_err err = DT_ERR_INIT;
        int rc = dt_journal_replay(src, 0, true, NULL, NULL, &rep, &err);
        if (rc != -DT_ECORRUPT) fail_msg("cut at %zu: rc %d, torn %llu", cut, rc, (unsigned long long)rep.torn_bytes);
        if (!strstr(err.msg, "offset 0") || !strstr(err.msg, "truncate -s 0"))
            fail_msg("cut at %zu: message \"%s\"", cut, err.msg);
        assert_false(rep.truncated);
        assert_int_equal(file_size(path), cut);
    }
    /* the same cut in the newest of two files */
    write_all(path, full, len);
    dt_journal *j = open_ok(src, DT_FSYNC_ALWAYS, N + 1);
    append_range(j, N + 1, N + 40);
    dt_journal_close(j);
    char p2[PATH_MAX];
    jpath(p2, sizeof p2, src, N + 1);
    size_t len2;
    uint8_t *second = read_all(p2, &len2);
    write_all(p2, second, 10);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_journal_replay(src, 0, true, NULL, NULL, NULL, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "journal.00000000000000000007.log"));
    /* an empty newest file holds nothing to lose */
    write_all(p2, second, 0);
    dt_journal_replay_report rep;
    expect_replay(src, 0, N, &rep);
    assert_int_equal(rep.torn_bytes, 0);
    free(second);
    free(full);
    remove_dir(src);
}

static void test_rotation_prune_and_replay_across_files(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    dt_journal *j = open_ok(dir, DT_FSYNC_ALWAYS, 1);
    append_range(j, 1, 10);
    assert_int_equal(dt_journal_rotate(j, &err), 0);
    assert_int_equal(dt_journal_rotate(j, &err), 0); /* empty current file: no-op */
    append_range(j, 11, 20);
    assert_int_equal(dt_journal_rotate(j, &err), 0);
    append_range(j, 21, 25);
    dt_journal_stats st;
    dt_journal_stats_get(j, &st);
    assert_int_equal(st.file_seq, 21);
    assert_int_equal(count_files(dir, "journal."), 3);

    /* replay while nothing more is appended: all three files */
    dt_journal_replay_report rep;
    expect_replay(dir, 0, 25, &rep);
    assert_int_equal(rep.files, 3);
    expect_replay(dir, 12, 25, &rep);
    assert_int_equal(rep.files, 2); /* journal.1 holds only seqs <= 10: skipped unread */
    assert_int_equal(rep.skipped, 2);

    size_t deleted;
    assert_int_equal(dt_journal_prune(dir, 15, &deleted, &err), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(count_files(dir, "journal."), 2);
    expect_replay(dir, 15, 25, &rep);
    /* entries 1..10 are gone: a replay from 0 must refuse, not start at 11 */
    collect *c = collect_new();
    assert_int_equal(dt_journal_replay(dir, 0, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "missing"));
    assert_int_equal(c->n, 0);
    free(c);

    /* the newest file is never pruned, even when the snapshot covers it */
    append_range(j, 26, 26);
    assert_int_equal(dt_journal_prune(dir, 1000, &deleted, &err), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(count_files(dir, "journal."), 1);
    append_range(j, 27, 30);
    dt_journal_close(j);
    expect_replay(dir, 20, 30, &rep);
    remove_dir(dir);
}

static void test_seq_gaps_and_misplaced_files_are_refused(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    dt_journal *j = open_ok(dir, DT_FSYNC_NO, 1);
    append_range(j, 1, 5);
    assert_int_equal(dt_journal_rotate(j, &err), 0);
    append_range(j, 6, 10);
    assert_int_equal(dt_journal_rotate(j, &err), 0);
    append_range(j, 11, 15);
    dt_journal_close(j);
    char p1[PATH_MAX], p6[PATH_MAX], p11[PATH_MAX], tmp[PATH_MAX];
    jpath(p1, sizeof p1, dir, 1);
    jpath(p6, sizeof p6, dir, 6);
    jpath(p11, sizeof p11, dir, 11);
    dt_journal_replay_report rep;
    collect *c = collect_new();

    /* a missing middle file */
    snprintf(tmp, sizeof tmp, "%s/aside", dir);
    assert_int_equal(rename(p6, tmp), 0);
    assert_int_equal(dt_journal_replay(dir, 0, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "journal.00000000000000000011.log starts at seq 11"));
    assert_int_equal(rename(tmp, p6), 0);

    /* a file whose first entry is not its name */
    jpath(tmp, sizeof tmp, dir, 2);
    assert_int_equal(rename(p1, tmp), 0);
    c->n = 0;
    assert_int_equal(dt_journal_replay(dir, 1, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "has seq 1, expected 2"));
    assert_int_equal(rename(tmp, p1), 0);
    expect_replay(dir, 0, 15, &rep);

    /* an entry missing inside a file: splice entry 3 out of journal.1 */
    size_t len;
    uint8_t *full = read_all(p1, &len);
    size_t starts[6], off = 0;
    for (uint64_t s = 1; s <= 5; s++) {
        uint8_t buf[512];
        starts[s - 1] = off;
        off += DT_JOURNAL_HEADER_SIZE + payload_for(s, buf, sizeof buf);
    }
    starts[5] = off;
    assert_int_equal(off, len);
    uint8_t *spliced = malloc(len);
    memcpy(spliced, full, starts[2]);
    memcpy(spliced + starts[2], full + starts[3], len - starts[3]);
    write_all(p1, spliced, len - (starts[3] - starts[2]));
    c->n = 0;
    assert_int_equal(dt_journal_replay(dir, 0, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "has seq 4, expected 3"));
    assert_int_equal(c->n, 2);
    write_all(p1, full, len);

    /* a torn tail in a file that is not the newest is corruption */
    write_all(p1, full, len - 1);
    c->n = 0;
    assert_int_equal(dt_journal_replay(dir, 0, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "not a torn tail"));
    assert_int_equal(file_size(p1), len - 1);
    write_all(p1, full, len);

    /* a journal that starts after the snapshot's seq + 1 */
    assert_int_equal(unlink(p1), 0);
    c->n = 0;
    assert_int_equal(dt_journal_replay(dir, 3, true, collect_cb, c, &rep, &err), -DT_ECORRUPT);
    assert_non_null(strstr(err.msg, "entries 4..5 are missing"));
    expect_replay(dir, 5, 15, &rep);
    (void)p11;
    free(spliced);
    free(full);
    free(c);
    remove_dir(dir);
}

static void test_open_refuses_inconsistent_next_seq(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    assert_null(dt_journal_open(dir, DT_FSYNC_ALWAYS, 0, &err));
    assert_int_equal(err.code, DT_EINVAL);
    dt_journal *j = open_ok(dir, DT_FSYNC_ALWAYS, 10);
    append_range(j, 10, 12);
    dt_journal_close(j);
    assert_null(dt_journal_open(dir, DT_FSYNC_ALWAYS, 5, &err));
    assert_int_equal(err.code, DT_EINVAL);
    assert_non_null(strstr(err.msg, "replay"));
    assert_null(dt_journal_open(dir, DT_FSYNC_ALWAYS, 10, &err));
    assert_int_equal(err.code, DT_EEXIST);
    /* an empty file at next_seq is reused */
    j = open_ok(dir, DT_FSYNC_ALWAYS, 13);
    dt_journal_close(j);
    j = open_ok(dir, DT_FSYNC_ALWAYS, 13);
    append_range(j, 13, 14);
    dt_journal_close(j);
    assert_int_equal(count_files(dir, "journal."), 2);
    dt_journal_replay_report rep;
    expect_replay(dir, 9, 14, &rep);

    /* an oversized payload */
    j = open_ok(dir, DT_FSYNC_NO, 15);
    static const uint8_t b = 0;
    assert_int_equal(dt_journal_append(j, 1, &b, DT_JOURNAL_PAYLOAD_MAX + 1, NULL, &err),
                     -DT_ELIMIT);
    assert_int_equal(dt_journal_append(j, 1, NULL, 3, NULL, &err), -DT_EINVAL);
    dt_journal_close(j);
    dt_journal_close(NULL);
    remove_dir(dir);

    /* a missing directory replays nothing; open creates it with parents */
    char *base = make_dir();
    char deep[PATH_MAX];
    snprintf(deep, sizeof deep, "%s/a/b", base);
    assert_int_equal(dt_journal_replay(deep, 0, true, NULL, NULL, &rep, &err), 0);
    assert_int_equal(rep.files, 0);
    assert_int_equal(rep.last_seq, 0);
    j = open_ok(deep, DT_FSYNC_ALWAYS, 1);
    append_range(j, 1, 1);
    dt_journal_close(j);
    expect_replay(deep, 0, 1, &rep);
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/a/b", base);
    remove_dir(strdup(sub));
    snprintf(sub, sizeof sub, "%s/a", base);
    remove_dir(strdup(sub));
    remove_dir(base);
}

static void test_directory_lock_is_exclusive(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_err err = DT_ERR_INIT;
    int a, b;
    assert_int_equal(dt_journal_lock_dir(dir, &a, &err), 0);
    assert_int_equal(dt_journal_lock_dir(dir, &b, &err), -DT_EEXIST);
    assert_int_equal(b, -1);
    assert_non_null(strstr(err.msg, "in use"));
    dt_journal_unlock_dir(a);
    assert_int_equal(dt_journal_lock_dir(dir, &b, &err), 0);
    dt_journal_unlock_dir(b);
    dt_journal_unlock_dir(-1);
    remove_dir(dir);
}

/* A write that fails half-way (file size limit): the partial entry is cut back, its seq is not
 * used, and the journal keeps working. */
static void test_failed_write_is_undone(void **state)
{
    (void)state;
    char *dir = make_dir();
    dt_journal *j = open_ok(dir, DT_FSYNC_ALWAYS, 1);
    append_range(j, 1, 3);
    char path[PATH_MAX];
    jpath(path, sizeof path, dir, 1);
    size_t before = file_size(path);

    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = (rlim_t)before + 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    uint8_t buf[512];
    size_t len = payload_for(4, buf, sizeof buf);
    dt_err err = DT_ERR_INIT;
    uint64_t seq = 0;
    int rc = dt_journal_append(j, type_for(4), buf, len, &seq, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old);

    assert_int_equal(rc, -DT_EIO);
    assert_int_equal(seq, 0);
    assert_non_null(strstr(err.msg, "cannot append"));
    assert_int_equal(file_size(path), before);
    dt_journal_stats st;
    dt_journal_stats_get(j, &st);
    assert_false(st.broken);
    assert_int_equal(st.next_seq, 4);
    append_range(j, 4, 6);
    dt_journal_close(j);
    dt_journal_replay_report rep;
    expect_replay(dir, 0, 6, &rep);
    assert_int_equal(rep.torn_bytes, 0);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_names_parse),
        cmocka_unit_test(test_append_then_replay_delivers_every_entry_in_order),
        cmocka_unit_test(test_entry_layout_matches_documentation),
        cmocka_unit_test(test_concurrent_appends_get_every_seq_once_in_order),
        cmocka_unit_test(test_everysec_syncs_in_the_background),
        cmocka_unit_test(test_torn_tail_at_every_offset_is_cut),
        cmocka_unit_test(test_flipped_byte_in_a_middle_entry_is_corruption),
        cmocka_unit_test(test_flipped_byte_in_the_last_entry_is_refused),
        cmocka_unit_test(test_cut_inside_the_first_entry_of_the_newest_file_is_refused),
        cmocka_unit_test(test_rotation_prune_and_replay_across_files),
        cmocka_unit_test(test_seq_gaps_and_misplaced_files_are_refused),
        cmocka_unit_test(test_open_refuses_inconsistent_next_seq),
        cmocka_unit_test(test_directory_lock_is_exclusive),
        cmocka_unit_test(test_failed_write_is_undone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
