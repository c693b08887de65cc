/* snapshot.h - checksummed point-in-time images of the daemon's state in a data directory.
 *
 * A snapshot file snapshot.<seq, 20 digits>.dt holds the state that includes every journal entry up
 * to seq: a header (magic "DTSNAP", format version, seq, creation time), any number of sections
 * {type u8, length u64, payload} whose meaning belongs to the caller, and a trailer with the
 * section count and an XXH3-64 of everything before it. Layout in docs/durability.md.
 *
 * Writing goes to a temp file in the same directory (snapshot.<seq>.dt.tmp.XXXXXX) that only commit
 * renames to its final name, after fsync; a crash at any point leaves either the old set of
 * snapshots or the new one, plus perhaps a temp file that no reader ever takes for a snapshot.
 * Reading verifies a whole file before delivering any of it, so a callback never sees data from a
 * file that turns out to be damaged.
 *
 * Not here: what the sections hold (durable.c encodes them with codec.h), the journal
 * (journal.h). One writer at a time per directory (the daemon holds dt_journal_lock_dir).
 */
#ifndef DT_SNAPSHOT_H
#define DT_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"

#define DT_SNAPSHOT_FORMAT 1
/* Snapshots left in place by a successful commit: the new one and the newest older one. */
#define DT_SNAPSHOT_KEEP 2

typedef struct dt_snapshot_writer dt_snapshot_writer;

/* Starts a snapshot of the state that includes journal seq `seq` (0: before any entry). Creates dir
 * if needed and a temp file in it, and writes the header. On 0 *w is the caller's: finish it with
 * exactly one of dt_snapshot_commit or dt_snapshot_abort. Errors: -DT_EIO, -DT_ENOMEM. */
int dt_snapshot_begin(const char *dir, uint64_t seq, dt_snapshot_writer **w, dt_err *err);

/* Appends one section (buffered; payload may be NULL when len is 0). -DT_EIO when the write fails;
 * after any failure the writer refuses further puts and the commit, and must be aborted. */
int dt_snapshot_put(dt_snapshot_writer *w, uint8_t type, const void *payload, size_t len,
                    dt_err *err);

/* Writes the trailer, flushes, fsyncs the file, renames it to snapshot.<seq>.dt (replacing a file
 * of that name), fsyncs the directory, then deletes all but the DT_SNAPSHOT_KEEP newest snapshots
 * at or below seq (newer files are never touched) and stale temp files. Always frees w (and on
 * failure removes the temp file). Errors: -DT_EIO; when the message says "committed" the snapshot
 * is durable and only the clean-up failed (treating that as a failed snapshot is safe). */
int dt_snapshot_commit(dt_snapshot_writer *w, dt_err *err);

/* Closes and removes the temp file and frees w. NULL is fine. */
void dt_snapshot_abort(dt_snapshot_writer *w);

/* Called once per section, in file order. payload points into a read-only mapping that is valid
 * only during the call. A non-zero return (the callback fills err) stops the load, which returns
 * it. */
typedef int (*dt_snapshot_cb)(void *ud, uint8_t type, const uint8_t *payload, size_t len,
                              dt_err *err);

#define DT_SNAPSHOT_REJECTED_MAX 8

typedef struct dt_snapshot_rejected {
    char file[64];    /* file name without dir */
    uint64_t seq;     /* seq from its name */
    char reason[256]; /* offset and what was expected */
} dt_snapshot_rejected;

typedef struct dt_snapshot_report {
    char loaded[64];   /* file name loaded, "" when none */
    uint64_t seq;      /* its seq (0 when none) */
    int64_t created;   /* its creation time, unix seconds */
    uint64_t sections; /* sections delivered */
    uint64_t bytes;    /* its size */
    size_t found;      /* snapshot files found (temp files excluded) */
    size_t temp_files; /* temp files seen and ignored */
    size_t n_rejected; /* files newer than the loaded one that failed verification (all counted) */
    dt_snapshot_rejected rejected[DT_SNAPSHOT_REJECTED_MAX]; /* the first of them, newest first */
} dt_snapshot_report;

/* Loads the newest snapshot of dir that verifies: every section, in order, through cb; *seq gets
 * its seq. Newer files that fail verification are listed in the report (and never deleted): log
 * them loudly, and load the older one only if the journal still covers the gap (dt_journal_replay
 * from *seq refuses when it does not). No snapshot at all (or no dir): 0 with *seq = 0. Errors:
 * -DT_ECORRUPT when snapshots exist but none verifies (the message names the newest and why);
 * -DT_EINVAL when a file declares a format version this build cannot read (never skipped: loading
 * an older snapshot instead could lose data); -DT_EIO; the callback's error. rep may be NULL. */
int dt_snapshot_load_latest(const char *dir, dt_snapshot_cb cb, void *ud, uint64_t *seq,
                            dt_snapshot_report *rep, dt_err *err);

#endif
