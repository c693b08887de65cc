/* journal.h - the append-only journal of mutations in a data directory (DESIGN section 5).
 *
 * Files journal.<first seq, 20 digits>.log, each a run of entries with consecutive sequence
 * numbers; the next file starts where the previous one ended. An entry is a 22-byte header (format
 * byte 0xD7, type, payload length, seq, XXH3-64 checksum) followed by the payload, which the caller
 * encodes (codec.h). The format, the fsync policies and the recovery rules are in
 * docs/durability.md.
 *
 * Writing: dt_journal_append writes an entry into the current file (write(2), no fsync) and returns
 * its seq; dt_journal_sync then waits until that entry is durable as the policy promises. Under
 * DT_FSYNC_ALWAYS concurrent waiters share fdatasync calls (group commit): the first waiter to find
 * no sync in progress syncs everything appended so far, the others wait for it or follow it.
 *
 * Reading: dt_journal_replay delivers every entry after a snapshot's seq in order. A torn tail (the
 * end of the newest file holds no complete, valid entry) is what a crash during a write leaves: it
 * is reported and, on request, cut off. A bad entry with a valid entry after it, or anywhere in an
 * older file, and any gap between sequence numbers, is corruption: replay refuses and names file
 * and offset.
 *
 * Not here: what the payloads mean (durable.c), snapshots (snapshot.h).
 */
#ifndef DT_JOURNAL_H
#define DT_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"

/* When an appended entry counts as durable (the names and promises of Redis' appendfsync). */
typedef enum {
    DT_FSYNC_ALWAYS = 0, /* dt_journal_sync returns after fdatasync covered the entry */
    DT_FSYNC_EVERYSEC, /* a background thread syncs once a second; up to ~1 s lost on power loss */
    DT_FSYNC_NO /* never synced by us (except rotate/close); the OS writes back when it likes */
} dt_fsync_policy;

/* "always" / "everysec" / "no", case-insensitive. -DT_EINVAL naming field "fsync" otherwise. */
int dt_fsync_policy_parse(const char *s, dt_fsync_policy *out, dt_err *err);
const char *dt_fsync_policy_name(dt_fsync_policy p);

/* The largest payload of one entry. */
#define DT_JOURNAL_PAYLOAD_MAX ((size_t)256 << 20)
/* Bytes of an entry header. */
#define DT_JOURNAL_HEADER_SIZE 22

/* Takes an exclusive advisory lock (flock) on the directory itself, creating dir (and parents) if
 * needed, so that two processes never share a data directory (a lock file could be deleted under a
 * running process). Take it before dt_journal_replay. *lock_fd is
 * the descriptor to pass to dt_journal_unlock_dir. -DT_EEXIST when another process holds it,
 * -DT_EIO. */
int dt_journal_lock_dir(const char *dir, int *lock_fd, dt_err *err);
/* Releases the lock (closes the descriptor). A negative fd is ignored. */
void dt_journal_unlock_dir(int lock_fd);

typedef struct dt_journal dt_journal;

/* Opens the journal of dir for appending entries from next_seq (>= 1) on: next_seq must be the
 * replay report's last_seq + 1. Creates dir if needed. Starts a new file journal.<next_seq>.log
 * (reusing it when it exists and is empty) after fdatasync'ing the newest existing file, and fsyncs
 * the directory, so a later crash can leave a torn tail only in the new file. Replay with
 * truncate_torn_tail first: a torn tail left in an older file is corruption from then on.
 * Errors: -DT_EINVAL (next_seq 0, or an existing file starts after next_seq), -DT_EEXIST
 * (journal.<next_seq>.log exists and is not empty), -DT_EIO, -DT_ENOMEM, -DT_EINTERNAL (thread).
 * Free with dt_journal_close. */
dt_journal *dt_journal_open(const char *dir, dt_fsync_policy p, uint64_t next_seq, dt_err *err);

/* Appends one entry (len <= DT_JOURNAL_PAYLOAD_MAX, payload may be NULL when len is 0) with one
 * write(2) and no fsync; *seq (may be NULL) gets its sequence number. Entries are numbered in the
 * order appends take the journal's internal lock, so a caller that appends under its own write lock
 * gets journal order = apply order. If the write fails the file is cut back to where the entry
 * began and the seq is not used: -DT_EIO, and the journal stays usable; if even that fails, or an
 * earlier fdatasync failed, the journal is broken and every later append and sync returns -DT_EIO.
 * Other errors: -DT_ELIMIT (len). Thread-safe. */
int dt_journal_append(dt_journal *j, uint8_t type, const void *payload, size_t len, uint64_t *seq,
                      dt_err *err);

/* Waits until entry seq is durable as the policy promises: ALWAYS - an fdatasync that started after
 * the entry was written has completed (this thread may be the one that runs it); EVERYSEC and NO -
 * returns at once. Errors: -DT_EINVAL (seq not appended yet), -DT_EIO (the journal is broken: an
 * fdatasync failed, now or in the background). Thread-safe; blocks (never call it on the event
 * loop). */
int dt_journal_sync(dt_journal *j, uint64_t seq, dt_err *err);

/* fdatasync of everything appended so far, whatever the policy (shutdown, tests). Thread-safe. */
int dt_journal_flush(dt_journal *j, dt_err *err);

/* Makes everything appended so far durable and starts a new file at the next seq (no-op when the
 * current file is still empty). Appends continue while the bulk of the old file is synced and wait
 * only for a last short fdatasync, the new file's creation and a directory fsync, so the old file
 * is complete on disk before the new one exists. After a snapshot at seq S is committed, call
 * rotate and then dt_journal_prune(dir, S). Errors: -DT_EIO (the journal is broken afterwards if
 * the old file could not be synced or the directory not fsync'd). Thread-safe. */
int dt_journal_rotate(dt_journal *j, dt_err *err);

/* Deletes the files whose entries are all <= snapshot_seq (judged by the name of the next file; the
 * newest file is never deleted) and fsyncs dir. Call only once the snapshot at snapshot_seq is
 * durable. *deleted (may be NULL) gets the number of files removed. Safe while a dt_journal
 * appends. */
int dt_journal_prune(const char *dir, uint64_t snapshot_seq, size_t *deleted, dt_err *err);

/* Counters for /metrics. last_seq - synced_seq is the journal lag. */
typedef struct dt_journal_stats {
    uint64_t next_seq;   /* seq the next append gets */
    uint64_t synced_seq; /* every entry <= this is known durable (0: none yet) */
    uint64_t appends;    /* entries appended by this handle */
    uint64_t bytes;      /* bytes appended by this handle */
    uint64_t fsyncs;     /* fdatasync calls made by this handle */
    uint64_t file_seq;   /* first seq of the current file */
    bool broken;         /* a write could not be undone or an fdatasync failed */
} dt_journal_stats;

void dt_journal_stats_get(dt_journal *j, dt_journal_stats *out);

/* Waits for pending syncs, stops the background thread, fdatasyncs what was appended (a failure is
 * lost: call dt_journal_flush first to see it) and frees j. NULL is fine. */
void dt_journal_close(dt_journal *j);

/* Called once per entry, in seq order. payload points into a mapping that is valid only during the
 * call. A non-zero return (the callback fills err) stops the replay, which returns it. */
typedef int (*dt_journal_cb)(void *ud, uint8_t type, const uint8_t *payload, size_t len,
                             uint64_t seq, dt_err *err);

typedef struct dt_journal_replay_report {
    uint64_t files;        /* journal files read (files wholly <= after_seq are skipped unread) */
    uint64_t entries;      /* entries delivered (seq > after_seq) */
    uint64_t skipped;      /* valid entries read with seq <= after_seq */
    uint64_t last_seq;     /* highest seq known: max(after_seq, last valid entry); open at +1 */
    uint64_t torn_bytes;   /* bytes of the torn tail; 0 when there is none */
    uint64_t torn_offset;  /* where the torn tail starts in torn_file */
    bool truncated;        /* the torn tail was cut off (and the cut fsync'd) */
    char torn_file[64];    /* file name (without dir) of the torn tail */
    char torn_reason[160]; /* what is wrong with the first bytes of the tail */
} dt_journal_replay_report;

/* Replays every entry of dir with seq > after_seq in order through cb (NULL: only verify and
 * count). A missing or empty dir
 * replays nothing. The torn tail of the newest file is cut (ftruncate + fsync) when
 * truncate_torn_tail, else only reported. Refuses with -DT_ECORRUPT, naming file and offset: a bad
 * entry followed by a valid one or in an older file, a file whose first entry does not match its
 * name, a gap between seqs (also between after_seq and the first entry delivered). Entries
 * delivered before such a refusal come from a journal that cannot be trusted: do not serve them.
 * Other errors: -DT_EIO, or the callback's. rep (may be NULL) is filled in every case. Not for a
 * directory a dt_journal is appending to. */
int dt_journal_replay(const char *dir, uint64_t after_seq, bool truncate_torn_tail,
                      dt_journal_cb cb, void *ud, dt_journal_replay_report *rep, dt_err *err);

#endif
