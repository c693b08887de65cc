/* journal.c - append-only journal files, group-committed fdatasync, replay with torn-tail repair.
 *
 * One handle owns one current file, opened O_APPEND. A mutex serialises appends (seq order = order
 * of the lock) and guards the sync state: next_seq, synced_seq (every entry <= it is durable) and a
 * `syncing` flag. Whoever needs durability and finds no sync running becomes the leader: it notes
 * the last appended seq, drops the mutex, runs fdatasync, and on return advances synced_seq and
 * wakes everyone; waiters whose entry is not yet covered elect the next leader. So N concurrent
 * writers cost about one fdatasync per round trip of the disk, not N. At most one sync runs at a
 * time, which is also what keeps the current descriptor alive while it is synced outside the lock.
 *
 * An fdatasync failure is not retried: after it the kernel may have dropped the dirty pages, so
 * a retry could report success for data that is gone. The handle goes "broken" and refuses writes.
 *
 * Checksum: XXH3-64 (xxhash 0.8, stable output) rather than CRC32C: it is already a dependency, it
 * hashes at memory speed without hardware support, and 64 bits make it negligible that the
 * torn-tail scan mistakes garbage for an entry (CRC32C's burst-error guarantees matter for bit
 * errors on a wire, not for the half-written or stale blocks a crash leaves).
 */
#include "journal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "files.h"

#define ENTRY_MAGIC 0xD7
#define NAME_PREFIX "journal."
#define NAME_SUFFIX ".log"
#define NAME_DIGITS 20

/* ---- encoding, names and directories (writer and reader) ---- */

/* checksum = XXH3_64bits_withSeed(header[0..14), 14, seed = XXH3_64bits(payload)) */
static uint64_t entry_checksum(const uint8_t *hdr, uint64_t payload_hash)
{
    return XXH3_64bits_withSeed(hdr, 14, payload_hash);
}

static void make_header(uint8_t *hdr, uint8_t type, size_t len, uint64_t seq, uint64_t payload_hash)
{
    hdr[0] = ENTRY_MAGIC;
    hdr[1] = type;
    dt_le_store(hdr + 2, (uint64_t)len, 4);
    dt_le_store(hdr + 6, seq, 8);
    dt_le_store(hdr + 14, entry_checksum(hdr, payload_hash), 8);
}

static void file_name(char *buf, size_t n, uint64_t seq)
{
    snprintf(buf, n, NAME_PREFIX "%0*" PRIu64 NAME_SUFFIX, NAME_DIGITS, seq);
}

/* seq of a journal file name, or 0 when name is not exactly journal.<20 digits>.log. */
static uint64_t parse_name(const char *name)
{
    size_t plen = strlen(NAME_PREFIX), slen = strlen(NAME_SUFFIX);
    if (strlen(name) != plen + NAME_DIGITS + slen) return 0;
    if (strncmp(name, NAME_PREFIX, plen) != 0 ||
        strcmp(name + plen + NAME_DIGITS, NAME_SUFFIX) != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        char c = name[plen + (size_t)i];
        if (c < '0' || c > '9') return 0;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool pick_journal(const char *name, void *elem)
{
    return (*(uint64_t *)elem = parse_name(name)) != 0;
}

/* The first seqs of dir's journal files, ascending, in *out (malloc'd, caller frees). A missing dir
 * is an empty list. */
static int list_files(const char *dir, uint64_t **out, size_t *n, dt_err *err)
{
    return dt_file_list(dir, pick_journal, sizeof **out, cmp_u64, (void **)out, n, err);
}

int dt_fsync_policy_parse(const char *s, dt_fsync_policy *out, dt_err *err)
{
    static const char *const names[] = {"always", "everysec", "no"};
    if (s) {
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        for (int i = 0; i < 3; i++) {
            if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0) {
                *out = (dt_fsync_policy)i;
                return 0;
            }
        }
    }
    return dt_err_set(err, DT_EINVAL, "fsync",
                      "unknown fsync policy \"%s\": use always, everysec or no", s ? s : "(null)");
}

const char *dt_fsync_policy_name(dt_fsync_policy p)
{
    switch (p) {
    case DT_FSYNC_ALWAYS:
        return "always";
    case DT_FSYNC_EVERYSEC:
        return "everysec";
    case DT_FSYNC_NO:
        return "no";
    }
    return "unknown";
}

int dt_journal_lock_dir(const char *dir, int *lock_fd, dt_err *err)
{
    *lock_fd = -1;
    int rc = dt_file_mkdir_p(dir, err);
    if (rc) return rc;
    /* the directory itself, not a file in it: a lock file can be deleted (and re-created and
     * locked by a second process) under a running daemon; a directory that holds the journal cannot
     * be removed, and a process that locks it finds the lock of the one already there */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open", dir, errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return dt_err_set(err, DT_EEXIST, "dir",
                              "data directory %s is in use by another process (it holds a lock on the "
                              "directory)",
                              dir);
        return dt_file_io_err(err, "cannot lock", dir, e);
    }
    *lock_fd = fd;
    return 0;
}

void dt_journal_unlock_dir(int lock_fd)
{
    if (lock_fd >= 0) close(lock_fd);
}

/* ---- writer ---- */

struct dt_journal {
    char dir[PATH_MAX];
    dt_fsync_policy policy;
    pthread_mutex_t mu;
    pthread_cond_t synced; /* broadcast when a sync ends */
    pthread_cond_t tick;   /* wakes the background thread early (close) */
    int fd;
    uint64_t file_seq;  /* first seq of the current file */
    uint64_t file_size; /* bytes in the current file */
    uint64_t next_seq;
    uint64_t synced_seq;
    bool syncing;
    bool broken;
    char broken_msg[160];
    bool stop;
    bool bg_started;
    pthread_t bg;
    uint64_t appends, bytes, fsyncs;
};

static int broken_err(dt_journal *j, dt_err *err)
{
    return dt_err_set(err, DT_EIO, "journal", "journal in %s refuses writes: %s", j->dir,
                      j->broken_msg);
}

static void mark_broken(dt_journal *j, const char *what, int e)
{
    if (j->broken) return;
    j->broken = true;
    char name[64];
    file_name(name, sizeof name, j->file_seq);
    snprintf(j->broken_msg, sizeof j->broken_msg, "%s %s failed: %s", what, name, strerror(e));
}

/* Makes every entry appended so far durable. Called with mu held and !syncing; drops mu during
 * fdatasync. */
static int lead_sync_locked(dt_journal *j, dt_err *err)
{
    assert(pthread_mutex_trylock(&j->mu) != 0 && !j->syncing);
    j->syncing = true;
    uint64_t target = j->next_seq - 1;
    int fd = j->fd;
    pthread_mutex_unlock(&j->mu);
    int r = fdatasync(fd);
    int e = errno;
    pthread_mutex_lock(&j->mu);
    j->syncing = false;
    j->fsyncs++;
    int rc = 0;
    if (r != 0) {
        mark_broken(j, "fdatasync of", e);
        rc = broken_err(j, err);
    } else if (target > j->synced_seq) {
        j->synced_seq = target;
    }
    pthread_cond_broadcast(&j->synced);
    return rc;
}

/* Waits (leading syncs as needed) until seq is durable. mu held. */
static int wait_durable_locked(dt_journal *j, uint64_t seq, dt_err *err)
{
    assert(pthread_mutex_trylock(&j->mu) != 0);
    for (;;) {
        if (j->broken) return broken_err(j, err);
        if (j->synced_seq >= seq) return 0;
        if (!j->syncing) {
            int rc = lead_sync_locked(j, err);
            if (rc) return rc;
        } else {
            pthread_cond_wait(&j->synced, &j->mu);
        }
    }
}

static void *everysec_main(void *arg)
{
    dt_journal *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += 1;
        while (!j->stop) {
            int r = pthread_cond_timedwait(&j->tick, &j->mu, &deadline);
            if (r == ETIMEDOUT) break;
        }
        if (j->stop) break;
        if (!j->broken && !j->syncing && j->synced_seq < j->next_seq - 1) lead_sync_locked(j, NULL);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static int open_current(dt_journal *j, uint64_t seq, bool create, dt_err *err)
{
    char name[64], path[PATH_MAX];
    file_name(name, sizeof name, seq);
    int rc = dt_file_join(path, sizeof path, j->dir, name, err);
    if (rc) return rc;
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) return dt_file_io_err(err, create ? "cannot create" : "cannot open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = dt_file_io_err(err, "cannot stat", path, errno);
        close(fd);
        return rc;
    }
    if (st.st_size != 0) {
        close(fd);
        return dt_err_set(
            err, DT_EEXIST, name,
            "%s already holds %lld bytes: replay the journal and open at its last seq + 1", path,
            (long long)st.st_size);
    }
    j->fd = fd;
    j->file_seq = seq;
    j->file_size = 0;
    return 0;
}

static int sync_file(const char *dir, uint64_t seq, dt_err *err)
{
    char name[64], path[PATH_MAX];
    file_name(name, sizeof name, seq);
    int rc = dt_file_join(path, sizeof path, dir, name, err);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open", path, errno);
    if (fdatasync(fd) != 0) rc = dt_file_io_err(err, "cannot fdatasync", path, errno);
    close(fd);
    return rc;
}

dt_journal *dt_journal_open(const char *dir, dt_fsync_policy p, uint64_t next_seq, dt_err *err)
{
    if (next_seq == 0) {
        dt_err_set(err, DT_EINVAL, "next_seq", "must be at least 1");
        return NULL;
    }
    if (p != DT_FSYNC_ALWAYS && p != DT_FSYNC_EVERYSEC && p != DT_FSYNC_NO) {
        dt_err_set(err, DT_EINVAL, "fsync", "unknown fsync policy %d", (int)p);
        return NULL;
    }
    if (dt_file_mkdir_p(dir, err) != 0) return NULL;
    dt_journal *j = calloc(1, sizeof *j);
    if (!j) {
        dt_err_set(err, DT_ENOMEM, "journal", "out of memory");
        return NULL;
    }
    j->fd = -1;
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    j->policy = p;
    j->next_seq = next_seq;
    j->synced_seq = next_seq - 1;

    uint64_t *files = NULL;
    size_t n = 0;
    if (list_files(dir, &files, &n, err) != 0) goto fail_alloc;
    uint64_t newest = n ? files[n - 1] : 0;
    free(files);
    if (newest > next_seq) {
        char name[64];
        file_name(name, sizeof name, newest);
        dt_err_set(err, DT_EINVAL, "next_seq",
                   "%s/%s starts at seq %" PRIu64 ", after the requested next seq %" PRIu64
                   ": replay the journal and open at its last seq + 1",
                   dir, name, newest, next_seq);
        goto fail_alloc;
    }
    if (newest == next_seq) {
        if (open_current(j, next_seq, false, err) != 0) goto fail_alloc;
    } else {
        if (newest && sync_file(dir, newest, err) != 0) goto fail_alloc;
        if (open_current(j, next_seq, true, err) != 0) goto fail_alloc;
    }
    if (dt_file_fsync_dir(dir, err) != 0) goto fail_fd;

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r1 = pthread_mutex_init(&j->mu, NULL);
    int r2 = pthread_cond_init(&j->synced, NULL);
    int r3 = pthread_cond_init(&j->tick, &ca);
    pthread_condattr_destroy(&ca);
    if (r1 || r2 || r3) {
        dt_err_set(err, DT_EINTERNAL, "journal", "cannot initialise a mutex or condition variable");
        if (!r1) pthread_mutex_destroy(&j->mu);
        if (!r2) pthread_cond_destroy(&j->synced);
        if (!r3) pthread_cond_destroy(&j->tick);
        goto fail_fd;
    }
    if (p == DT_FSYNC_EVERYSEC) {
        int r = pthread_create(&j->bg, NULL, everysec_main, j);
        if (r != 0) {
            dt_err_set(err, DT_EINTERNAL, "journal", "cannot start the fsync thread: %s",
                       strerror(r));
            pthread_mutex_destroy(&j->mu);
            pthread_cond_destroy(&j->synced);
            pthread_cond_destroy(&j->tick);
            goto fail_fd;
        }
        j->bg_started = true;
    }
    return j;

fail_fd:
    close(j->fd);
fail_alloc:
    free(j);
    return NULL;
}

int dt_journal_append(dt_journal *j, uint8_t type, const void *payload, size_t len, uint64_t *seq,
                      dt_err *err)
{
    if (len > DT_JOURNAL_PAYLOAD_MAX)
        return dt_err_set(err, DT_ELIMIT, "payload",
                          "journal entry of %zu bytes exceeds the limit of %zu", len,
                          DT_JOURNAL_PAYLOAD_MAX);
    if (len && !payload) return dt_err_set(err, DT_EINVAL, "payload", "NULL with length %zu", len);
    uint64_t payload_hash = XXH3_64bits(len ? payload : "", len);
    uint8_t hdr[DT_JOURNAL_HEADER_SIZE];

    pthread_mutex_lock(&j->mu);
    if (j->broken) {
        int rc = broken_err(j, err);
        pthread_mutex_unlock(&j->mu);
        return rc;
    }
    uint64_t s = j->next_seq;
    make_header(hdr, type, len, s, payload_hash);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    int niov = len ? 2 : 1;
    size_t total = sizeof hdr + len, done = 0;
    int e = 0;
    while (done < total) {
        ssize_t w = writev(j->fd, iov, niov);
        if (w < 0) {
            if (errno == EINTR) continue;
            e = errno;
            break;
        }
        if (w == 0) {
            e = EIO;
            break;
        }
        done += (size_t)w;
        size_t adv = (size_t)w;
        for (int i = 0; i < niov && adv; i++) {
            size_t take = adv < iov[i].iov_len ? adv : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            adv -= take;
        }
    }
    if (e) {
        char name[64];
        file_name(name, sizeof name, j->file_seq);
        int rc = dt_err_set(err, DT_EIO, name, "cannot append %zu bytes to %s/%s: %s", total,
                            j->dir, name, strerror(e));
        if (done && ftruncate(j->fd, (off_t)j->file_size) != 0)
            mark_broken(j, "undoing a partial write to", errno);
        pthread_mutex_unlock(&j->mu);
        return rc;
    }
    j->file_size += total;
    j->next_seq++;
    j->appends++;
    j->bytes += total;
    pthread_mutex_unlock(&j->mu);
    if (seq) *seq = s;
    return 0;
}

int dt_journal_sync(dt_journal *j, uint64_t seq, dt_err *err)
{
    pthread_mutex_lock(&j->mu);
    int rc;
    if (seq >= j->next_seq)
        rc = dt_err_set(err, DT_EINVAL, "seq",
                        "seq %" PRIu64 " has not been appended (next is %" PRIu64 ")", seq,
                        j->next_seq);
    else if (j->broken)
        rc = broken_err(j, err);
    else if (j->policy == DT_FSYNC_ALWAYS)
        rc = wait_durable_locked(j, seq, err);
    else
        rc = 0;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int dt_journal_flush(dt_journal *j, dt_err *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = wait_durable_locked(j, j->next_seq - 1, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int dt_journal_rotate(dt_journal *j, dt_err *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    if (j->broken) {
        rc = broken_err(j, err);
        goto out;
    }
    if (j->file_size == 0) goto out;
    /* Bulk of the old file's data, with appends still flowing. */
    if ((rc = wait_durable_locked(j, j->next_seq - 1, err))) goto out;
    while (j->syncing)
        pthread_cond_wait(&j->synced, &j->mu);
    if (j->broken) {
        rc = broken_err(j, err);
        goto out;
    }
    /* The rest with appends held: the old file is complete on disk before the new one exists. */
    int old_fd = j->fd;
    uint64_t old_seq = j->file_seq, old_size = j->file_size;
    if (fdatasync(old_fd) != 0) {
        mark_broken(j, "fdatasync of", errno);
        rc = broken_err(j, err);
        goto out;
    }
    j->fsyncs++;
    j->synced_seq = j->next_seq - 1;
    if ((rc = open_current(j, j->next_seq, true, err))) {
        j->fd = old_fd;
        j->file_seq = old_seq;
        j->file_size = old_size;
        goto out;
    }
    if ((rc = dt_file_fsync_dir(j->dir, err))) {
        /* The new file might vanish in a crash, taking acknowledged entries with it. */
        mark_broken(j, "fsync of the directory holding", EIO);
        close(old_fd);
        goto out;
    }
    close(old_fd);
    pthread_cond_broadcast(&j->synced);
out:
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void dt_journal_stats_get(dt_journal *j, dt_journal_stats *out)
{
    pthread_mutex_lock(&j->mu);
    out->next_seq = j->next_seq;
    out->synced_seq = j->synced_seq;
    out->appends = j->appends;
    out->bytes = j->bytes;
    out->fsyncs = j->fsyncs;
    out->file_seq = j->file_seq;
    out->broken = j->broken;
    pthread_mutex_unlock(&j->mu);
}

void dt_journal_close(dt_journal *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    pthread_cond_broadcast(&j->tick);
    pthread_mutex_unlock(&j->mu);
    if (j->bg_started) pthread_join(j->bg, NULL);
    pthread_mutex_lock(&j->mu);
    while (j->syncing)
        pthread_cond_wait(&j->synced, &j->mu);
    if (!j->broken && j->synced_seq < j->next_seq - 1)
        wait_durable_locked(j, j->next_seq - 1, NULL);
    pthread_mutex_unlock(&j->mu);
    close(j->fd);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->synced);
    pthread_cond_destroy(&j->tick);
    free(j);
}

int dt_journal_prune(const char *dir, uint64_t snapshot_seq, size_t *deleted, dt_err *err)
{
    if (deleted) *deleted = 0;
    uint64_t *files;
    size_t n;
    int rc = list_files(dir, &files, &n, err);
    if (rc) return rc;
    size_t removed = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        /* file i holds seqs files[i] .. files[i+1]-1 */
        if (files[i + 1] - 1 > snapshot_seq) break;
        char name[64], path[PATH_MAX];
        file_name(name, sizeof name, files[i]);
        if ((rc = dt_file_join(path, sizeof path, dir, name, err))) break;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = dt_file_io_err(err, "cannot delete", path, errno);
            break;
        }
        removed++;
    }
    free(files);
    if (removed) {
        int rc2 = dt_file_fsync_dir(dir, rc ? NULL : err);
        if (!rc) rc = rc2;
    }
    if (deleted) *deleted = removed;
    return rc;
}

/* ---- replay ---- */

typedef struct {
    uint8_t type;
    uint32_t len;
    uint64_t seq;
    const uint8_t *payload;
} entry;

/* Parses the entry at off of p[0..size). 0 when it is complete and its checksum verifies, else -1
 * with why (when non-NULL) saying what is wrong. */
static int parse_entry(const uint8_t *p, uint64_t size, uint64_t off, entry *e, char *why,
                       size_t why_n)
{
    uint64_t left = size - off;
    if (left < DT_JOURNAL_HEADER_SIZE) {
        if (why)
            snprintf(why, why_n, "incomplete header (%" PRIu64 " of %d bytes)", left,
                     DT_JOURNAL_HEADER_SIZE);
        return -1;
    }
    const uint8_t *h = p + off;
    if (h[0] != ENTRY_MAGIC) {
        if (why) snprintf(why, why_n, "format byte 0x%02x, expected 0x%02x", h[0], ENTRY_MAGIC);
        return -1;
    }
    uint64_t len = dt_le_load(h + 2, 4);
    if (len > DT_JOURNAL_PAYLOAD_MAX) {
        if (why)
            snprintf(why, why_n, "payload length %" PRIu64 " exceeds the limit of %zu", len,
                     DT_JOURNAL_PAYLOAD_MAX);
        return -1;
    }
    if (len > left - DT_JOURNAL_HEADER_SIZE) {
        if (why)
            snprintf(why, why_n,
                     "payload of %" PRIu64 " bytes runs past the end of the file (%" PRIu64
                     " left)",
                     len, left - DT_JOURNAL_HEADER_SIZE);
        return -1;
    }
    const uint8_t *payload = h + DT_JOURNAL_HEADER_SIZE;
    uint64_t want = dt_le_load(h + 14, 8);
    if (entry_checksum(h, XXH3_64bits(payload, (size_t)len)) != want) {
        if (why) snprintf(why, why_n, "checksum mismatch (entry of %" PRIu64 " bytes)", len);
        return -1;
    }
    e->type = h[1];
    e->len = (uint32_t)len;
    e->seq = dt_le_load(h + 6, 8);
    e->payload = payload;
    return 0;
}

/* Offset of the first valid entry starting after off, or 0 when there is none. */
static uint64_t find_valid_after(const uint8_t *p, uint64_t size, uint64_t off, entry *e)
{
    for (uint64_t q = off + 1; q + DT_JOURNAL_HEADER_SIZE <= size; q++) {
        const uint8_t *m =
            memchr(p + q, ENTRY_MAGIC, (size_t)(size - DT_JOURNAL_HEADER_SIZE + 1 - q));
        if (!m) return 0;
        q = (uint64_t)(m - p);
        if (parse_entry(p, size, q, e, NULL, 0) == 0) return q;
    }
    return 0;
}

/* Whether the bytes p[off..size), which do not parse as an entry, are one whole entry that was
 * damaged rather than a tail cut short: a crash leaves a prefix of an entry (the header is written
 * in the same write(2) as its payload, never a full-length entry with a bad checksum), so a tail
 * whose header is complete and whose entry ends exactly at the end of the file - as the length
 * field says, or as a length field with a flipped bit would have said, or with a damaged format
 * byte - is damage. The header checksum covers type, length and seq, so re-checking it with the
 * length the file implies finds a flipped length byte. NULL when the tail is a genuine short write,
 * else what is wrong. */
static const char *damaged_full_entry(const uint8_t *p, uint64_t size, uint64_t off)
{
    uint64_t left = size - off;
    if (left < DT_JOURNAL_HEADER_SIZE) return NULL;
    const uint8_t *h = p + off;
    uint64_t len = dt_le_load(h + 2, 4), body = left - DT_JOURNAL_HEADER_SIZE;
    if (h[0] == ENTRY_MAGIC && len <= body) return "its checksum does not match";
    if (body > DT_JOURNAL_PAYLOAD_MAX) return NULL;
    uint64_t want = dt_le_load(h + 14, 8), payload_hash = XXH3_64bits(h + DT_JOURNAL_HEADER_SIZE, (size_t)body);
    uint8_t fixed[DT_JOURNAL_HEADER_SIZE];
    memcpy(fixed, h, sizeof fixed);
    fixed[0] = ENTRY_MAGIC;
    dt_le_store(fixed + 2, body, 4);
    if (entry_checksum(fixed, payload_hash) == want)
        return h[0] != ENTRY_MAGIC ? "its format byte is damaged" : "its length field is damaged";
    return NULL;
}

typedef struct {
    const char *dir;
    uint64_t after_seq;
    bool truncate;
    dt_journal_cb cb;
    void *ud;
    dt_journal_replay_report *rep;
    uint64_t expect; /* seq the next entry must have */
} replay_ctx;

static int cut_tail(const char *path, uint64_t off, dt_err *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open for truncation", path, errno);
    int rc = 0;
    if (ftruncate(fd, (off_t)off) != 0)
        rc = dt_file_io_err(err, "cannot truncate the torn tail of", path, errno);
    else if (fsync(fd) != 0)
        rc = dt_file_io_err(err, "cannot fsync after truncating", path, errno);
    close(fd);
    return rc;
}

static int replay_file(replay_ctx *c, uint64_t first_seq, bool last, dt_err *err)
{
    char name[64], path[PATH_MAX];
    file_name(name, sizeof name, first_seq);
    int rc = dt_file_join(path, sizeof path, c->dir, name, err);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = dt_file_io_err(err, "cannot stat", path, errno);
        close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    const uint8_t *p = NULL;
    if (size) {
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = dt_file_io_err(err, "cannot map", path, errno);
            close(fd);
            return rc;
        }
        p = m;
    }
    close(fd);
    c->rep->files++;
    c->expect = first_seq;

    uint64_t off = 0, torn_at = UINT64_MAX;
    char why[128];
    while (off < size) {
        entry e;
        if (parse_entry(p, size, off, &e, why, sizeof why) != 0) {
            if (!last) {
                rc = dt_err_set(err, DT_ECORRUPT, name,
                                "%s offset %" PRIu64
                                ": %s; a newer journal file follows, so this is "
                                "corruption, not a torn tail",
                                path, off, why);
                break;
            }
            entry after;
            uint64_t q = find_valid_after(p, size, off, &after);
            if (q) {
                rc = dt_err_set(err, DT_ECORRUPT, name,
                                "%s offset %" PRIu64 ": %s, but a valid entry (seq %" PRIu64
                                ") follows at offset %" PRIu64 ": corruption, not a torn tail",
                                path, off, why, after.seq, q);
                break;
            }
            const char *damage = damaged_full_entry(p, size, off);
            if (damage) {
                rc = dt_err_set(err, DT_ECORRUPT, name,
                                "%s offset %" PRIu64 ": %s: the last entry is complete but %s; a crash "
                                "only cuts an entry short, so this is damage to an entry that may have been "
                                "acknowledged, not a torn tail. Restore the directory from a backup, or, "
                                "accepting the loss of that entry, run 'truncate -s %" PRIu64 " %s'",
                                path, off, why, damage, off, path);
                break;
            }
            if (off == 0 && c->truncate) { /* a reader beside a running daemon may see a first write in progress */
                rc = dt_err_set(err, DT_ECORRUPT, name,
                                "%s offset 0: %s: the newest journal file does not hold one complete entry "
                                "(%" PRIu64 " bytes): it may have been cut, losing acknowledged entries. "
                                "Restore the directory from a backup; only if the daemon crashed during its "
                                "first write to this file, run 'truncate -s 0 %s'",
                                path, why, size, path);
                break;
            }
            torn_at = off;
            break;
        }
        if (e.seq != c->expect) {
            rc = dt_err_set(
                err, DT_ECORRUPT, name,
                "%s offset %" PRIu64 ": entry has seq %" PRIu64 ", expected %" PRIu64 " (%s)", path,
                off, e.seq, c->expect, e.seq > c->expect ? "entries are missing" : "out of order");
            break;
        }
        if (e.seq > c->after_seq) {
            if (c->cb && (rc = c->cb(c->ud, e.type, e.payload, e.len, e.seq, err)) != 0) break;
            c->rep->entries++;
        } else {
            c->rep->skipped++;
        }
        c->expect++;
        off += DT_JOURNAL_HEADER_SIZE + (uint64_t)e.len;
    }
    if (p) munmap((void *)p, (size_t)size);
    if (rc || torn_at == UINT64_MAX) return rc;

    dt_journal_replay_report *r = c->rep;
    r->torn_bytes = size - torn_at;
    r->torn_offset = torn_at;
    snprintf(r->torn_file, sizeof r->torn_file, "%s", name);
    snprintf(r->torn_reason, sizeof r->torn_reason, "%s", why);
    if (c->truncate) {
        if ((rc = cut_tail(path, torn_at, err))) return rc;
        r->truncated = true;
    }
    return 0;
}

int dt_journal_replay(const char *dir, uint64_t after_seq, bool truncate_torn_tail,
                      dt_journal_cb cb, void *ud, dt_journal_replay_report *rep, dt_err *err)
{
    dt_journal_replay_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    rep->last_seq = after_seq;
    uint64_t *files;
    size_t n;
    int rc = list_files(dir, &files, &n, err);
    if (rc) return rc;
    size_t i = 0;
    while (i + 1 < n && files[i + 1] <= after_seq + 1)
        i++;
    replay_ctx c = {dir, after_seq, truncate_torn_tail, cb, ud, rep, 0};
    if (i < n && files[i] > after_seq + 1) {
        char name[64];
        file_name(name, sizeof name, files[i]);
        rc = dt_err_set(err, DT_ECORRUPT, name,
                        "%s/%s starts at seq %" PRIu64
                        " but the journal must continue from seq %" PRIu64 ": entries %" PRIu64
                        "..%" PRIu64 " are missing",
                        dir, name, files[i], after_seq + 1, after_seq + 1, files[i] - 1);
    }
    for (; !rc && i < n; i++) {
        rc = replay_file(&c, files[i], i + 1 == n, err);
        if (rc) break;
        if (c.expect - 1 > rep->last_seq) rep->last_seq = c.expect - 1;
        if (i + 1 < n && files[i + 1] != c.expect) {
            char name[64], next[64];
            file_name(name, sizeof name, files[i]);
            file_name(next, sizeof next, files[i + 1]);
            rc = dt_err_set(err, DT_ECORRUPT, next,
                            "%s/%s starts at seq %" PRIu64 " but %s ends before seq %" PRIu64
                            ": the seqs in between are missing",
                            dir, next, files[i + 1], name, c.expect);
        }
    }
    free(files);
    return rc;
}
