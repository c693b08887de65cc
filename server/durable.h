/* durable.h - the daemon's durable state in --data-dir: snapshot + journal (docs/durability.md).
 *
 * Writes: a handler encodes the mutation, takes the engine write lock, appends ONE journal entry
 * for the whole call (so a crash never leaves half a call applied), then applies it (so a refused
 * append changes nothing), releases the lock,
 * then waits in dt_durable_sync until the entry is durable under the fsync policy, and only then
 * acknowledges. Start-up: the newest valid snapshot, then the journal after it (a torn tail is cut
 * and logged; damage in the middle refuses to start unless nothing after it can be trusted anyway).
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

/* journal entry types */
enum { DT_J_UPSERT = 1, DT_J_DELETE = 2, DT_J_BUILD = 3 };
/* snapshot section types */
enum { DT_S_BASIS = 1, DT_S_RECORDS = 2 };

typedef struct dt_durable_opts {
    const char *dir;
    dt_fsync_policy policy;
    size_t snapshot_every_bytes; /* journal growth that triggers a snapshot */
    bool quiet;
} dt_durable_opts;

typedef struct dt_durable_stats {
    uint64_t journal_seq, synced_seq, appends, fsyncs, snapshots, snapshot_failures;
    uint64_t last_snapshot_seq;
    double last_snapshot_seconds;
    bool broken;
} dt_durable_stats;

typedef struct dt_durable dt_durable;

/* Locks the directory, loads the snapshot and replays the journal into e (which must be empty),
 * opens the journal for appending and starts the snapshot thread. lock is the engine's lock (held
 * by the snapshot thread as a reader while it copies the engine). Logs what it did to stderr. */
dt_durable *dt_durable_open(dt_engine *e, pthread_rwlock_t *lock, const dt_durable_opts *o, dt_err *err);
/* Flushes the journal, stops the snapshot thread (after a final snapshot when final_snapshot), and
 * unlocks the directory. NULL is fine. */
void dt_durable_close(dt_durable *d, bool final_snapshot);

/* Payload of an upsert of n records (encode before applying: the engine takes the records). */
int dt_durable_encode_upsert(dt_record *const *recs, size_t n, uint8_t **payload, size_t *len, dt_err *err);
/* Under the engine write lock, before the mutation is applied: appends one entry. */
int dt_durable_append(dt_durable *d, uint8_t type, const uint8_t *payload, size_t len, uint64_t *seq, dt_err *err);
int dt_durable_log_delete(dt_durable *d, const char *tenant, dt_side side, char *const *ids, size_t n,
                          uint64_t *seq, dt_err *err);
int dt_durable_log_build(dt_durable *d, const char *tenant, uint64_t *seq, dt_err *err);
/* Without the lock: returns once entry seq is durable as the policy promises. */
int dt_durable_sync(dt_durable *d, uint64_t seq, dt_err *err);
/* Takes a snapshot now (the caller must not hold the engine lock). */
int dt_durable_snapshot(dt_durable *d, dt_err *err);
void dt_durable_stats_get(dt_durable *d, dt_durable_stats *out);

#endif
