/* snapshot.c - writing snapshots through a temp file and rename, and loading the newest that
 * verifies.
 *
 * The writer streams sections through a stdio buffer while feeding an XXH3 state, so memory does
 * not grow with the snapshot. The reader maps a candidate file, checks it completely (size, magic,
 * version, whole-file hash, trailer, seq against the name, the section chain ending exactly at the
 * trailer with the declared count) and only then walks the same mapping again to deliver sections.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "files.h"

#define MAGIC "DTSNAP\0\0"
#define TRAILER_MAGIC "DTSNEND\0"
#define HEADER_SIZE 32
#define SECTION_HEADER_SIZE 9
#define TRAILER_SIZE 24
#define NAME_PREFIX "snapshot."
#define NAME_SUFFIX ".dt"
#define TEMP_MARK ".tmp."
#define NAME_DIGITS 20

static void file_name(char *buf, size_t n, uint64_t seq)
{
    snprintf(buf, n, NAME_PREFIX "%0*" PRIu64 NAME_SUFFIX, NAME_DIGITS, seq);
}

/* Parses snapshot.<20 digits>.dt exactly (then *temp = false) or snapshot.<20 digits>.dt.tmp.<any>
 * (*temp = true). false for any other name. */
static bool parse_name(const char *name, uint64_t *seq, bool *temp)
{
    size_t plen = strlen(NAME_PREFIX), slen = strlen(NAME_SUFFIX), n = strlen(name);
    if (n < plen + NAME_DIGITS + slen || strncmp(name, NAME_PREFIX, plen) != 0) return false;
    uint64_t v = 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        char c = name[plen + (size_t)i];
        if (c < '0' || c > '9') return false;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    const char *rest = name + plen + NAME_DIGITS;
    if (strncmp(rest, NAME_SUFFIX, slen) != 0) return false;
    rest += slen;
    if (*rest == '\0') {
        *temp = false;
    } else if (strncmp(rest, TEMP_MARK, strlen(TEMP_MARK)) == 0) {
        *temp = true;
    } else {
        return false;
    }
    *seq = v;
    return true;
}

typedef struct {
    uint64_t seq;
    bool temp;
    char name[NAME_MAX + 1];
} dir_entry;

static int cmp_desc(const void *a, const void *b)
{
    const dir_entry *x = a, *y = b;
    if (x->seq != y->seq) return x->seq > y->seq ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool pick_snapshot(const char *name, void *elem)
{
    dir_entry *de = elem;
    if (!parse_name(name, &de->seq, &de->temp)) return false;
    snprintf(de->name, sizeof de->name, "%s", name);
    return true;
}

/* Snapshot and temp files of dir, newest seq first, in *out (malloc'd). A missing dir is empty. */
static int list_dir(const char *dir, dir_entry **out, size_t *n, dt_err *err)
{
    return dt_file_list(dir, pick_snapshot, sizeof **out, cmp_desc, (void **)out, n, err);
}

/* ---- writer ---- */

struct dt_snapshot_writer {
    char dir[PATH_MAX];
    char tmp_path[PATH_MAX];
    char final_name[64];
    uint64_t seq;
    FILE *f;
    XXH3_state_t *hash;
    uint64_t sections;
    int failed; /* DT_E* of the first failure */
};

static int write_hashed(dt_snapshot_writer *w, const void *p, size_t n, dt_err *err)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = DT_EIO;
        return dt_file_io_err(err, "cannot write", w->tmp_path, errno ? errno : EIO);
    }
    if (n) XXH3_64bits_update(w->hash, p, n);
    return 0;
}

static void writer_free(dt_snapshot_writer *w, bool remove_tmp)
{
    if (w->f) fclose(w->f);
    if (remove_tmp) unlink(w->tmp_path);
    if (w->hash) XXH3_freeState(w->hash);
    free(w);
}

int dt_snapshot_begin(const char *dir, uint64_t seq, dt_snapshot_writer **out, dt_err *err)
{
    *out = NULL;
    int rc = dt_file_mkdir_p(dir, err);
    if (rc) return rc;
    dt_snapshot_writer *w = calloc(1, sizeof *w);
    if (!w) return dt_err_set(err, DT_ENOMEM, "snapshot", "out of memory");
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->seq = seq;
    file_name(w->final_name, sizeof w->final_name, seq);
    char tmp_name[96];
    snprintf(tmp_name, sizeof tmp_name, "%s" TEMP_MARK "XXXXXX", w->final_name);
    if ((rc = dt_file_join(w->tmp_path, sizeof w->tmp_path, dir, tmp_name, err))) {
        free(w);
        return rc;
    }
    w->hash = XXH3_createState();
    if (!w->hash || XXH3_64bits_reset(w->hash) != XXH_OK) {
        writer_free(w, false);
        return dt_err_set(err, DT_ENOMEM, "snapshot", "out of memory for the hash state");
    }
    int fd = mkostemp(w->tmp_path, O_CLOEXEC);
    if (fd < 0) {
        rc = dt_file_io_err(err, "cannot create", w->tmp_path, errno);
        writer_free(w, false);
        return rc;
    }
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        rc = dt_file_io_err(err, "cannot open", w->tmp_path, errno);
        close(fd);
        writer_free(w, true);
        return rc;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    uint8_t hdr[HEADER_SIZE] = {0};
    memcpy(hdr, MAGIC, 8);
    dt_le_store(hdr + 8, DT_SNAPSHOT_FORMAT, 4);
    dt_le_store(hdr + 16, seq, 8);
    dt_le_store(hdr + 24, (uint64_t)(int64_t)time(NULL), 8);
    if ((rc = write_hashed(w, hdr, sizeof hdr, err))) {
        writer_free(w, true);
        return rc;
    }
    *out = w;
    return 0;
}

int dt_snapshot_put(dt_snapshot_writer *w, uint8_t type, const void *payload, size_t len,
                    dt_err *err)
{
    if (w->failed)
        return dt_err_set(err, w->failed, w->tmp_path, "an earlier write to %s failed: abort it",
                          w->tmp_path);
    if (len && !payload) return dt_err_set(err, DT_EINVAL, "payload", "NULL with length %zu", len);
    uint8_t sh[SECTION_HEADER_SIZE];
    sh[0] = type;
    dt_le_store(sh + 1, (uint64_t)len, 8);
    int rc = write_hashed(w, sh, sizeof sh, err);
    if (!rc) rc = write_hashed(w, payload, len, err);
    if (!rc) w->sections++;
    return rc;
}

/* Deletes snapshots at or below seq beyond the newest DT_SNAPSHOT_KEEP, and temp files. */
static int prune(const char *dir, uint64_t seq, dt_err *err)
{
    dir_entry *v;
    size_t n;
    int rc = list_dir(dir, &v, &n, err);
    if (rc) return rc;
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        bool del;
        if (v[i].temp)
            del = true;
        else if (v[i].seq > seq)
            del = false;
        else
            del = ++kept > DT_SNAPSHOT_KEEP;
        if (!del) continue;
        char path[PATH_MAX];
        if ((rc = dt_file_join(path, sizeof path, dir, v[i].name, err))) break;
        if (unlink(path) != 0 && errno != ENOENT) {
            char name[64];
            file_name(name, sizeof name, seq);
            rc = dt_err_set(err, DT_EIO, v[i].name, "%s committed, but cannot delete %s: %s", name,
                            path, strerror(errno));
            break;
        }
        removed++;
    }
    free(v);
    if (removed) {
        dt_err tmp = DT_ERR_INIT;
        if (dt_file_fsync_dir(dir, &tmp) != 0 && !rc) {
            char name[64];
            file_name(name, sizeof name, seq);
            rc = dt_err_set(err, DT_EIO, "dir", "%s committed, but after deleting old files: %s",
                            name, tmp.msg);
        }
    }
    return rc;
}

int dt_snapshot_commit(dt_snapshot_writer *w, dt_err *err)
{
    int rc;
    if (w->failed) {
        rc = dt_err_set(err, w->failed, w->tmp_path,
                        "an earlier write to %s failed; nothing committed", w->tmp_path);
        writer_free(w, true);
        return rc;
    }
    uint8_t tr[TRAILER_SIZE];
    memcpy(tr, TRAILER_MAGIC, 8);
    dt_le_store(tr + 8, w->sections, 8);
    if ((rc = write_hashed(w, tr, 16, err))) goto fail;
    dt_le_store(tr + 16, XXH3_64bits_digest(w->hash), 8);
    if (fwrite(tr + 16, 1, 8, w->f) != 8) {
        rc = dt_file_io_err(err, "cannot write", w->tmp_path, errno ? errno : EIO);
        goto fail;
    }
    if (fflush(w->f) != 0) {
        rc = dt_file_io_err(err, "cannot write", w->tmp_path, errno);
        goto fail;
    }
    if (fsync(fileno(w->f)) != 0) {
        rc = dt_file_io_err(err, "cannot fsync", w->tmp_path, errno);
        goto fail;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        rc = dt_file_io_err(err, "cannot close", w->tmp_path, errno);
        goto fail;
    }
    char final_path[PATH_MAX];
    if ((rc = dt_file_join(final_path, sizeof final_path, w->dir, w->final_name, err))) goto fail;
    if (rename(w->tmp_path, final_path) != 0) {
        rc = dt_file_io_err(err, "cannot rename the finished snapshot to", final_path, errno);
        goto fail;
    }
    if ((rc = dt_file_fsync_dir(w->dir, err))) {
        writer_free(w, false);
        return rc;
    }
    rc = prune(w->dir, w->seq, err);
    writer_free(w, false);
    return rc;
fail:
    writer_free(w, true);
    return rc;
}

void dt_snapshot_abort(dt_snapshot_writer *w)
{
    if (w) writer_free(w, true);
}

/* ---- reader ---- */

/* Checks the mapped file p[0..size) completely. 0, or -DT_ECORRUPT / -DT_EINVAL (unknown format)
 * with err naming the offset and what was expected. */
static int verify(const uint8_t *p, uint64_t size, uint64_t name_seq, const char *path, dt_err *err)
{
    if (size < HEADER_SIZE + TRAILER_SIZE)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s: %" PRIu64 " bytes, shorter than an empty snapshot (%d)", path, size,
                          HEADER_SIZE + TRAILER_SIZE);
    if (memcmp(p, MAGIC, 8) != 0)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s offset 0: not a Dovetail snapshot (magic \"DTSNAP\" expected)", path);
    /* Every format version ends with the XXH3-64 of all bytes before it, so a damaged file is told
     * apart from one written by a newer build before the version is believed. */
    uint64_t tpos = size - TRAILER_SIZE;
    uint64_t want = dt_le_load(p + size - 8, 8);
    uint64_t got = XXH3_64bits(p, (size_t)(size - 8));
    if (got != want)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s: checksum mismatch (stored at offset %" PRIu64 ": %016" PRIx64
                          ", contents hash to %016" PRIx64 "): truncated or damaged",
                          path, size - 8, want, got);
    uint32_t version = (uint32_t)dt_le_load(p + 8, 4);
    if (version != DT_SNAPSHOT_FORMAT)
        return dt_err_set(
            err, DT_EINVAL, path,
            "%s offset 8: format version %u, this build reads %d: run a newer Dovetail, or "
            "move the file away to start from an older snapshot",
            path, version, DT_SNAPSHOT_FORMAT);
    if (memcmp(p + tpos, TRAILER_MAGIC, 8) != 0)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s offset %" PRIu64 ": trailer magic \"DTSNEND\" expected", path, tpos);
    if (dt_le_load(p + 12, 4) != 0)
        return dt_err_set(err, DT_ECORRUPT, path, "%s offset 12: reserved field is not zero", path);
    uint64_t seq = dt_le_load(p + 16, 8);
    if (seq != name_seq)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s offset 16: header seq %" PRIu64
                          " does not match the file name (seq %" PRIu64 ")",
                          path, seq, name_seq);
    uint64_t count = dt_le_load(p + tpos + 8, 8), n = 0, off = HEADER_SIZE;
    while (off < tpos) {
        if (tpos - off < SECTION_HEADER_SIZE)
            return dt_err_set(err, DT_ECORRUPT, path,
                              "%s offset %" PRIu64 ": section header runs into the trailer", path,
                              off);
        uint64_t len = dt_le_load(p + off + 1, 8);
        if (len > tpos - off - SECTION_HEADER_SIZE)
            return dt_err_set(err, DT_ECORRUPT, path,
                              "%s offset %" PRIu64 ": section of %" PRIu64
                              " bytes runs past the trailer",
                              path, off, len);
        off += SECTION_HEADER_SIZE + len;
        n++;
    }
    if (n != count)
        return dt_err_set(err, DT_ECORRUPT, path,
                          "%s: %" PRIu64 " sections found, the trailer at offset %" PRIu64
                          " says %" PRIu64,
                          path, n, tpos, count);
    return 0;
}

/* Maps path; *p = NULL for an empty file. */
static int map_file(const char *path, const uint8_t **p, uint64_t *size, dt_err *err)
{
    *p = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open", path, errno);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = dt_file_io_err(err, "cannot stat", path, errno);
    } else if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            rc = dt_file_io_err(err, "cannot map", path, errno);
        else {
            *p = m;
            *size = (uint64_t)st.st_size;
        }
    }
    close(fd);
    return rc;
}

/* Drops the mapped pages of p[from, to) (whole pages only) from this process: they are clean
 * copies of the file, read again from the page cache if touched, so a large snapshot does not
 * stay resident on top of the state built from it. */
static void drop_pages(const uint8_t *p, uint64_t from, uint64_t to)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = (from + page - 1) / page * page, b = to / page * page;
    if (b > a) madvise((void *)(p + a), (size_t)(b - a), MADV_DONTNEED);
}

static int deliver(const uint8_t *p, uint64_t size, dt_snapshot_cb cb, void *ud,
                   dt_snapshot_report *rep, dt_err *err)
{
    uint64_t tpos = size - TRAILER_SIZE, off = HEADER_SIZE, dropped = 0;
    drop_pages(p, 0, size); /* the verification read every page */
    while (off < tpos) {
        uint8_t type = p[off];
        uint64_t len = dt_le_load(p + off + 1, 8);
        if (cb) {
            int rc = cb(ud, type, p + off + SECTION_HEADER_SIZE, (size_t)len, err);
            if (rc) return rc;
        }
        rep->sections++;
        off += SECTION_HEADER_SIZE + len;
        if (off - dropped >= ((uint64_t)8 << 20)) {
            drop_pages(p, dropped, off);
            dropped = off;
        }
    }
    return 0;
}

int dt_snapshot_load_latest(const char *dir, dt_snapshot_cb cb, void *ud, uint64_t *seq,
                            dt_snapshot_report *rep, dt_err *err)
{
    dt_snapshot_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    *seq = 0;
    dir_entry *v;
    size_t n;
    int rc = list_dir(dir, &v, &n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        if (v[i].temp)
            rep->temp_files++;
        else
            rep->found++;
    }
    dt_err first = DT_ERR_INIT;
    bool loaded = false;
    for (size_t i = 0; i < n && !loaded && !rc; i++) {
        if (v[i].temp) continue;
        char path[PATH_MAX];
        if ((rc = dt_file_join(path, sizeof path, dir, v[i].name, err))) break;
        const uint8_t *p;
        uint64_t size;
        dt_err ve = DT_ERR_INIT;
        int vrc = map_file(path, &p, &size, &ve);
        if (!vrc) vrc = verify(p, size, v[i].seq, path, &ve);
        if (vrc == -DT_EINVAL || (vrc && ve.code == DT_EIO)) {
            if (p) munmap((void *)p, (size_t)size);
            rc = dt_err_set(err, ve.code, ve.field, "%s", ve.msg);
            break;
        }
        if (vrc) {
            if (!first.code) first = ve;
            if (rep->n_rejected < DT_SNAPSHOT_REJECTED_MAX) {
                dt_snapshot_rejected *r = &rep->rejected[rep->n_rejected];
                snprintf(r->file, sizeof r->file, "%.63s", v[i].name);
                r->seq = v[i].seq;
                snprintf(r->reason, sizeof r->reason, "%.255s", ve.msg);
            }
            rep->n_rejected++;
            if (p) munmap((void *)p, (size_t)size);
            continue;
        }
        snprintf(rep->loaded, sizeof rep->loaded, "%.63s", v[i].name);
        rep->seq = v[i].seq;
        rep->created = (int64_t)dt_le_load(p + 24, 8);
        rep->bytes = size;
        rc = deliver(p, size, cb, ud, rep, err);
        munmap((void *)p, (size_t)size);
        if (!rc) *seq = v[i].seq;
        loaded = true;
    }
    free(v);
    if (rc) return rc;
    if (!loaded && rep->found)
        return dt_err_set(err, DT_ECORRUPT, first.field,
                          "none of the %zu snapshots in %s verifies; the newest: %s", rep->found,
                          dir, first.msg);
    return 0;
}
