/* fuzz_snapshot.c - libFuzzer target: dt_snapshot_load_latest over a snapshot file made from the
 * input.
 *
 * Input: one flag byte, then the file. Flags:
 *   bit 0  recompute the trailing XXH3-64 (so the file gets past the checksum)
 *   bit 1  name the file after the seq in its header (else after bits 4-5)
 *   bit 2  also put a valid older snapshot (seq 0, written by dt_snapshot_* at start-up) beside it
 *   bit 3  recompute the section count in the trailer when the sections end exactly at it
 *   bits 4-5  the file's seq when bit 1 is clear
 *   bit 6  also put a copy of it under a temp-file name (never to be read)
 *   bit 7  the callback stops the load at the first section the daemon's decoders refuse, and a
 *          directory that loads is read again by dt_durable_load_readonly: dovetaild's own
 *          decoders (DT_S_INDEXED, DT_S_EPOCHS included) into an engine
 * Sections are decoded as dovetaild's (fuzz_durable.h). Checks: an error fills err; on success the
 * report adds up (files found, temp files, sections delivered = callback calls, *seq = the loaded
 * file's seq, nothing loaded only when there is no snapshot); the input file, when it verifies and
 * is newer, is the one loaded, else the older one is, and a rejected newer file is listed.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "durable.h"
#include "fuzz_durable.h"
#include "fuzz_util.h"
#include "snapshot.h"

#define HEADER 32
#define TRAILER 24

static const char *dir;
static uint8_t *older;
static size_t older_len;

typedef struct {
    uint64_t n;
    bool stop_on_bad;
} load_state;

static int on_section(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    load_state *st = ud;
    st->n++;
    dt_err e = DT_ERR_INIT;
    int rc = 0;
    if (type == FZ_S_RECORDS) rc = fz_decode_records(p, len, &e);
    else if (type == FZ_S_BASIS) rc = fz_decode_basis(p, len, &e);
    else if (type == FZ_S_OUTCOMES) rc = fz_decode_outcomes(p, len, &e);
    else if (type == FZ_S_SERVED) rc = fz_decode_served(p, len, &e);
    if (rc && st->stop_on_bad) {
        *err = e;
        return rc;
    }
    return 0;
}

static void file_name(char *buf, size_t n, uint64_t seq)
{
    snprintf(buf, n, "snapshot.%020" PRIu64 ".dt", seq);
}

/* A valid snapshot at seq 0 with one records section, written by the library's writer. */
static void make_older(void)
{
    dt_err err = DT_ERR_INIT;
    dt_snapshot_writer *w = NULL;
    fz_check(dt_snapshot_begin(dir, 0, &w, &err) == 0, "dt_snapshot_begin: %s", err.msg);
    dt_record r;
    dt_record_init(&r);
    r.id = "a1";
    r.side = DT_ACHIEVEMENT;
    r.title = "固态电解质 solid electrolyte";
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_codec_put_u32(&b, 1);
    fz_check(dt_codec_put_record(&b, &r, &err) == 0, "dt_codec_put_record: %s", err.msg);
    fz_check(dt_snapshot_put(w, FZ_S_RECORDS, b.data, b.len, &err) == 0, "dt_snapshot_put: %s", err.msg);
    dt_codec_buf_fini(&b);
    fz_check(dt_snapshot_commit(w, &err) == 0, "dt_snapshot_commit: %s", err.msg);
    char name[64], path[512];
    file_name(name, sizeof name, 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    fz_check(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    older_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    older = malloc(older_len);
    fz_check(older && fread(older, 1, older_len, f) == older_len, "cannot read %s", path);
    fclose(f);
    fz_dir_clear();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    dir = fz_dir("snapshot");
    make_older();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    fz_check(buf != NULL, "out of memory");
    memcpy(buf, data + 1, n);

    if ((flags & 8) && n >= HEADER + TRAILER) {
        size_t tpos = n - TRAILER, off = HEADER;
        uint64_t count = 0;
        while (off < tpos && tpos - off >= 9) {
            uint64_t len = fz_load_le(buf + off + 1, 8);
            if (len > tpos - off - 9) break;
            off += 9 + (size_t)len;
            count++;
        }
        if (off == tpos) fz_store_le(buf + tpos + 8, count, 8);
    }
    uint64_t seq = (flags & 2) && n >= 24 ? fz_load_le(buf + 16, 8) : (uint64_t)((flags >> 4) & 3);
    if ((flags & 1) && n >= 8) fz_store_le(buf + n - 8, XXH3_64bits(buf, n - 8), 8);

    char name[64], tmp[80];
    file_name(name, sizeof name, seq);
    fz_write_file(dir, name, buf, n);
    size_t found = 1, temps = 0;
    bool with_older = (flags & 4) && seq > 0;
    if (with_older) {
        char oname[64];
        file_name(oname, sizeof oname, 0);
        fz_write_file(dir, oname, older, older_len);
        found++;
    }
    if (flags & 0x40) {
        snprintf(tmp, sizeof tmp, "%s.tmp.Fz0123", name);
        fz_write_file(dir, tmp, buf, n);
        temps++;
    }

    load_state st = {0, (flags & 0x80) != 0};
    dt_snapshot_report rep;
    dt_err err = DT_ERR_INIT;
    uint64_t got = 99;
    int rc = dt_snapshot_load_latest(dir, on_section, &st, &got, &rep, &err);
    if (rc) {
        fz_check(err.code == -rc && err.msg[0], "load error %d: err.code %d, message '%s'", rc, err.code, err.msg);
    } else {
        fz_check(rep.found == found && rep.temp_files == temps, "found %zu + %zu temp, wrote %zu + %zu", rep.found,
                 rep.temp_files, found, temps);
        fz_check(rep.loaded[0] != 0, "success with %zu snapshots but none loaded", found);
        fz_check(rep.sections == st.n, "report: %" PRIu64 " sections, callback saw %" PRIu64, rep.sections, st.n);
        fz_check(got == rep.seq, "*seq %" PRIu64 ", report %" PRIu64, got, rep.seq);
        fz_check(rep.bytes > 0, "loaded an empty file");
        if (strcmp(rep.loaded, name) == 0) {
            fz_check(got == seq && rep.bytes == n && rep.n_rejected == 0, "loaded the input file: seq %" PRIu64, got);
        } else {
            fz_check(with_older && got == 0 && rep.bytes == older_len, "loaded %s", rep.loaded);
            fz_check(rep.n_rejected == 1 && strcmp(rep.rejected[0].file, name) == 0 && rep.rejected[0].seq == seq &&
                         rep.rejected[0].reason[0],
                     "the input file was not loaded and is not listed as rejected");
        }
    }
    if (rc == 0 && (flags & 0x80)) {
        /* the directory as dovetaild reads it: every section through its own decoders (records,
         * counted terms and rows, epochs, outcomes), into an engine (slow: half the inputs) */
        dt_engine *e = NULL;
        dt_outcome_store *os = NULL;
        dt_err derr = DT_ERR_INIT;
        int drc = dt_durable_load_readonly(dir, NULL, &e, &os, NULL, &derr);
        if (drc)
            fz_check(derr.msg[0] && !e && !os, "dt_durable_load_readonly %d without a message", drc);
        else
            fz_check(e && os, "dt_durable_load_readonly succeeded without a state");
        dt_engine_free(e);
        dt_outcome_store_free(os);
    }
    fz_dir_clear();
    free(buf);
    return 0;
}
