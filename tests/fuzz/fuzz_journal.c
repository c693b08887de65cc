/* fuzz_journal.c - libFuzzer target: dt_journal_replay over journal files made from the input.
 *
 * Input: one flag byte, then the bytes of the journal. Flags:
 *   bit 0  recompute the checksum of every entry that is complete (so payloads get past it)
 *   bit 1  truncate_torn_tail
 *   bit 2  split into two files at the first entry boundary in the second half (or the middle)
 *   bits 3-5  after_seq (0..7)
 *   bit 6  renumber complete entries 1, 2, 3, ... (before the checksums are recomputed)
 *   bit 7  the callback stops the replay at the first payload the daemon's decoders refuse
 * The files go to a private directory on tmpfs (journal.<first seq>.log; the first file starts at
 * seq 1, a second one at the seq that follows its predecessor's complete entries). Payloads are
 * decoded as dovetaild's entries (fuzz_durable.h). Checks: entries reach the callback in seq order
 * after after_seq; an error fills err; the report adds up (entries delivered, last_seq, the torn
 * tail ends at the end of the newest file); a replay of what a truncating replay left finds no torn
 * tail and the same entries, and a non-truncating replay changes nothing (same report again).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <xxhash.h>

#include "fuzz_durable.h"
#include "fuzz_util.h"
#include "journal.h"

#define MAGIC 0xD7

static const char *dir;

typedef struct {
    uint64_t after, last, n;
    bool stop_on_bad;
} replay_state;

static int on_entry(void *ud, uint8_t type, const uint8_t *p, size_t len, uint64_t seq, dt_err *err)
{
    replay_state *st = ud;
    fz_check(seq > st->after, "entry %" PRIu64 " delivered after seq %" PRIu64, seq, st->after);
    fz_check(st->n == 0 || seq == st->last + 1, "entry %" PRIu64 " after %" PRIu64, seq, st->last);
    st->last = seq;
    st->n++;
    dt_err e = DT_ERR_INIT;
    int rc = 0;
    if (type == FZ_J_UPSERT) rc = fz_decode_records(p, len, &e);
    else if (type == FZ_J_DELETE) rc = fz_decode_delete(p, len, &e);
    else if (type == FZ_J_BUILD) rc = fz_decode_build(p, len, &e);
    else if (type == FZ_J_OUTCOMES) rc = fz_decode_outcomes(p, len, &e);
    if (rc && st->stop_on_bad) {
        *err = e;
        return rc;
    }
    return 0;
}

static void file_name(char *buf, size_t n, uint64_t seq)
{
    snprintf(buf, n, "journal.%020" PRIu64 ".log", seq);
}

static uint64_t file_size(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    fz_check(stat(path, &st) == 0, "stat %s failed", path);
    return (uint64_t)st.st_size;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    dir = fz_dir("journal");
    return 0;
}

static int replay(uint64_t after, bool truncate, bool stop_on_bad, replay_state *st, dt_journal_replay_report *rep,
                  dt_err *err)
{
    memset(st, 0, sizeof *st);
    st->after = after;
    st->stop_on_bad = stop_on_bad;
    int rc = dt_journal_replay(dir, after, truncate, on_entry, st, rep, err);
    if (rc) {
        fz_check(err->code == -rc && err->msg[0], "replay error %d: err.code %d, message '%s'", rc, err->code,
                 err->msg);
    } else {
        fz_check(rep->entries == st->n, "report: %" PRIu64 " entries, callback saw %" PRIu64, rep->entries, st->n);
        fz_check(rep->last_seq >= after && (st->n == 0 || rep->last_seq == st->last),
                 "report: last_seq %" PRIu64 ", after %" PRIu64 ", last delivered %" PRIu64, rep->last_seq, after,
                 st->last);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    fz_check(buf != NULL, "out of memory");
    memcpy(buf, data + 1, n);
    uint64_t after = (flags >> 3) & 7;
    bool truncate = flags & 2, stop_on_bad = flags & 0x80;

    size_t off = 0, split = n / 2;
    uint64_t k = 0, seq_at_split = 0;
    bool split_found = false;
    while (off + DT_JOURNAL_HEADER_SIZE <= n && buf[off] == MAGIC) {
        uint64_t len = fz_load_le(buf + off + 2, 4);
        if (len > n - off - DT_JOURNAL_HEADER_SIZE) break;
        if (flags & 0x40) fz_store_le(buf + off + 6, 1 + k, 8);
        if (flags & 1) {
            uint64_t ph = XXH3_64bits(buf + off + DT_JOURNAL_HEADER_SIZE, (size_t)len);
            fz_store_le(buf + off + 14, XXH3_64bits_withSeed(buf + off, 14, ph), 8);
        }
        off += DT_JOURNAL_HEADER_SIZE + (size_t)len;
        k++;
        if (!split_found && off >= n / 2) {
            split = off;
            seq_at_split = 1 + k;
            split_found = true;
        }
    }
    char name1[64], name2[64] = "";
    file_name(name1, sizeof name1, 1);
    if ((flags & 4) && split < n) {
        uint64_t s2 = split_found ? seq_at_split : (n - split >= 14 ? fz_load_le(buf + split + 6, 8) : 2);
        if (s2 <= 1) s2 = 2;
        file_name(name2, sizeof name2, s2);
        fz_write_file(dir, name1, buf, split);
        fz_write_file(dir, name2, buf + split, n - split);
    } else {
        fz_write_file(dir, name1, buf, n);
    }
    const char *newest = name2[0] ? name2 : name1;
    uint64_t newest_size = file_size(newest);

    replay_state st;
    dt_journal_replay_report rep;
    dt_err err = DT_ERR_INIT;
    int rc = replay(after, truncate, stop_on_bad, &st, &rep, &err);
    if (rc == 0 && rep.torn_bytes) {
        fz_check(strcmp(rep.torn_file, newest) == 0, "torn tail in %s, newest file %s", rep.torn_file, newest);
        fz_check(rep.torn_offset + rep.torn_bytes == newest_size,
                 "torn tail %" PRIu64 "+%" PRIu64 " does not end the file (%" PRIu64 " bytes)", rep.torn_offset,
                 rep.torn_bytes, newest_size);
        fz_check(rep.torn_reason[0] != 0, "torn tail without a reason");
        fz_check(rep.truncated == truncate, "truncated %d, asked %d", rep.truncated, truncate);
        fz_check(file_size(newest) == (truncate ? rep.torn_offset : newest_size), "%s: size after replay",
                 newest);
    }
    if (rc == 0) {
        replay_state st2;
        dt_journal_replay_report rep2;
        dt_err err2 = DT_ERR_INIT;
        int rc2 = replay(after, false, stop_on_bad, &st2, &rep2, &err2);
        fz_check(rc2 == 0, "a second replay fails: %s", err2.msg);
        fz_check(rep2.entries == rep.entries && rep2.last_seq == rep.last_seq && rep2.skipped == rep.skipped,
                 "a second replay delivers %" PRIu64 " entries up to %" PRIu64 ", the first %" PRIu64 " up to %" PRIu64,
                 rep2.entries, rep2.last_seq, rep.entries, rep.last_seq);
        if (rep.truncated) fz_check(rep2.torn_bytes == 0, "a torn tail remains after truncation: %s", rep2.torn_reason);
        else
            fz_check(rep2.torn_bytes == rep.torn_bytes && rep2.torn_offset == rep.torn_offset,
                     "a second replay finds another torn tail");
    }
    fz_dir_clear();
    free(buf);
    return 0;
}
