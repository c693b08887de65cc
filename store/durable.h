/* durable.h - the daemon's durable state in --data-dir: snapshot + journal (docs/durability.md).
 *
 * The state is the engine's records and LSA bases plus the outcome store (events and "matches
 * served" counters). Served counts reach the journal never, snapshots only: the counts since the
 * last snapshot are lost on a crash (a clean shutdown takes a final snapshot).
 *
 * Writes (the daemon's, docs/design.md "Concurrency model"): with the commit mutex held, a handler
 * checks the whole request against the current state, encodes it, appends ONE journal entry for
 * the whole call (so a crash never leaves half a call applied, and a refused request leaves
 * nothing), applies it under the engine write lock (so a refused append changes nothing), releases
 * both, then waits in dt_durable_sync until the entry is durable under the fsync policy, and only
 * then acknowledges. Start-up: the newest valid snapshot, then the journal after it (a torn tail is
 * cut and logged; a damaged complete entry, or damage in the middle, refuses to start).
 * Snapshots are written by a background thread once the journal has grown by a threshold, at
 * start-up after bulk files were loaded, and at shutdown.
 */
#ifndef DT_DURABLE_H
#define DT_DURABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "journal.h"
#include "outcome.h"

/* journal entry types */
enum { DT_J_UPSERT = 1, DT_J_DELETE = 2, DT_J_BUILD = 3, DT_J_OUTCOMES = 4 };
/* snapshot section types */
enum { DT_S_BASIS = 1, DT_S_RECORDS = 2, DT_S_OUTCOMES = 3, DT_S_SERVED = 4, DT_S_EPOCHS = 5, DT_S_INDEXED = 6 };

typedef struct dt_durable_opts {
    const char *dir;
    dt_fsync_policy policy;
    size_t snapshot_every_bytes; /* journal growth that triggers a snapshot */
    bool quiet;
    /* NULL, or called (without any lock held) at the start of every snapshot, before the state is
     * copied: dovetaild folds its pending served counts into the store here */
    void (*before_snapshot)(void *ud);
    void *before_snapshot_ud;
    /* NULL, or the mutex every writer holds around its write lock (taken first): a snapshot then
     * holds this alone while it freezes the state (dt_durable_serialising) and writes it without
     * it - instead of holding the engine lock as a reader, which would also stop every search queued
     * behind a waiting writer. NULL: the engine lock is read-locked for the whole snapshot. */
    pthread_mutex_t *commit;
} dt_durable_opts;

typedef struct dt_durable_stats {
    uint64_t journal_seq, synced_seq, appends, fsyncs, snapshots, snapshot_failures;
    uint64_t last_snapshot_seq;
    double last_snapshot_seconds;
    bool broken;
} dt_durable_stats;

typedef struct dt_durable dt_durable;

/* Locks the directory, loads the snapshot and replays the journal into e and os (both must be
 * empty), opens the journal for appending and starts the snapshot thread. lock is the lock that
 * guards both e and os (held by the snapshot thread as a reader while it copies them). Logs what it
 * did to stderr. A directory written before outcomes existed (no outcome sections or entries)
 * loads with an empty store. */
dt_durable *dt_durable_open(dt_engine *e, dt_outcome_store *os, pthread_rwlock_t *lock, const dt_durable_opts *o,
                            dt_err *err);
/* Flushes the journal, stops the snapshot thread (after a final snapshot when final_snapshot), and
 * unlocks the directory. NULL is fine. */
void dt_durable_close(dt_durable *d, bool final_snapshot);

/* Payload of an upsert of n records (encode before applying: the engine takes the records). */
int dt_durable_encode_upsert(dt_record *const *recs, size_t n, uint8_t **payload, size_t *len, dt_err *err);
/* Under the engine write lock, before the mutation is applied: appends one entry. */
int dt_durable_append(dt_durable *d, uint8_t type, const uint8_t *payload, size_t len, uint64_t *seq, dt_err *err);
/* Payload of a delete of n ids of one side (str tenant, u8 side, u32 count, the ids). */
int dt_durable_encode_delete(const char *tenant, dt_side side, char *const *ids, size_t n, uint8_t **payload,
                             size_t *len, dt_err *err);
int dt_durable_log_build(dt_durable *d, const char *tenant, uint64_t *seq, dt_err *err);
/* Payload of one RecordOutcome call: str tenant, u32 count, count events (dt_codec_put_outcome).
 * The events' own tenant fields are ignored. Encode before taking the lock; append it with
 * dt_durable_append(d, DT_J_OUTCOMES, ...) before applying the events. Errors as
 * dt_codec_put_outcome, or -DT_ENOMEM. */
int dt_durable_encode_outcomes(const char *tenant, const dt_outcome_event *evs, size_t n, uint8_t **payload,
                               size_t *len, dt_err *err);
/* Without the lock: returns once entry seq is durable as the policy promises. */
int dt_durable_sync(dt_durable *d, uint64_t seq, dt_err *err);
/* Takes a snapshot now (the caller must not hold the engine lock nor the commit mutex); while
 * snapshots are held, it waits for the hold to end. */
int dt_durable_snapshot(dt_durable *d, dt_err *err);
/* With the commit mutex held: holds snapshots back (hold) or lets them be taken again. A re-learn
 * holds them between its journal marker and the swap: a snapshot in between would hold the old
 * basis after the marker, and a restart from it would lose the re-learn (and the epoch step the
 * swap made). Holds nest. NULL is fine. */
void dt_durable_hold_snapshots(dt_durable *d, bool hold);
/* A snapshot freezes the state with the commit mutex held (which slots are live, the bases, the
 * epochs; a copy of the outcome store), then writes the records without it, each section under the
 * engine lock as a reader: writes go on meanwhile. What would change the frozen records or bases
 * in place - an index compaction, a basis swap - must not run while dt_durable_serialising is
 * true: skip it (compaction, a small re-learn done inline) or dt_durable_wait_serialised first (the
 * swap of a re-learn, whose hold keeps new snapshots from starting). NULL is fine for both. */
bool dt_durable_serialising(dt_durable *d);
void dt_durable_wait_serialised(dt_durable *d);
/* Tests: fn(ud) is called while a snapshot serialises, after the commit mutex was released. */
void dt_durable_set_serialise_hook(dt_durable *d, void (*fn)(void *ud), void *ud);
void dt_durable_stats_get(dt_durable *d, dt_durable_stats *out);

typedef struct dt_durable_load_report {
    char snapshot[64];      /* snapshot file loaded, "" when there was none */
    uint64_t snapshot_seq;  /* its seq (0: none) */
    uint64_t entries;       /* journal entries replayed after it */
    uint64_t last_seq;      /* the last journal entry read */
    uint64_t torn_bytes;    /* bytes after the last complete entry, ignored (a write in progress or a
                               crash's torn tail); 0 when none */
    char torn_file[64];
    size_t rejected;        /* newer snapshots that failed verification and were skipped */
    char rejected_reason[256]; /* why the newest of them was skipped */
    unsigned attempts;      /* loads tried: more than one when a running daemon moved files meanwhile */
} dt_durable_load_report;

/* Reads the state of a data directory without writing it: no lock taken, a torn tail is ignored
 * rather than cut, nothing is created or deleted. Safe while a daemon holds the directory: if a
 * snapshot it writes meanwhile prunes files this load needed, the load starts again (3 attempts; only
 * when the directory's files changed during the failed attempt).
 * On 0, *e (a new engine made with eo, NULL for defaults) holds the records and *os (a new store)
 * the outcome events and served counts as of the last journal entry read; the caller frees both.
 * The LSA bases are not loaded (records are searchable by text, not by dense vectors): this is a
 * load for statistics and inspection, not for ranking. Errors: -DT_ENOTFOUND (no such directory),
 * the errors of start-up (-DT_ECORRUPT, -DT_EINVAL, -DT_EIO), -DT_ENOMEM; *e and *os are NULL then.
 * rep may be NULL. */
int dt_durable_load_readonly(const char *dir, const dt_engine_opts *eo, dt_engine **e, dt_outcome_store **os,
                             dt_durable_load_report *rep, dt_err *err);

#endif
