/* commit.h - the one commit path every write of the durable state takes.
 *
 * A write (records, deletes, outcome events; later events and subscriptions) is described by a
 * dt_commit_ops table and a context, and dt_store_commit runs it in this order:
 *
 *   commit mutex taken (writers excluded; searches go on)
 *   check    the whole request against the state it will apply to   - refused: nothing changed
 *   prepare  work that needs no write lock (tokenizing, projecting)  - refused: nothing changed
 *   journal  ONE entry for the whole request                         - refused: nothing changed
 *   apply    under the engine write lock (searches wait this long)
 *   reindex  compaction and the LSA re-learn when due (journaled as their own entry)
 *   publish  what the answer reports (epochs, totals), read before the next writer
 *   commit mutex released
 *   sync     wait until the journal entry is durable under the fsync policy
 *
 * and only then may the caller acknowledge. A replay applies the journal's entries through the
 * same apply steps, and since every entry was checked against the state it applied to, replay never
 * meets an entry it must refuse.
 */
#ifndef DT_COMMIT_H
#define DT_COMMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "durable.h"
#include "engine.h"

/* The state a commit writes and the locks around it (owned by the caller). dt_store_init first,
 * then set the optional fields; dt_store_fini before the engine and the journal go. */
typedef struct dt_store {
    dt_engine *engine;
    dt_durable *durable;     /* NULL: nothing is journaled (no --data-dir) */
    pthread_mutex_t *commit; /* every writer holds it for check .. publish */
    pthread_rwlock_t *lock;  /* searches hold it as readers; apply and swaps as the writer */
    /* NULL, or called with the write lock held before every apply (dovetaild folds its pending
     * "matches served" counts here) */
    void (*on_write_lock)(void *ud);
    /* NULL, or called with *commit held (so it must not wait for writers) after a re-learn in the
     * background swapped a tenant's new basis in: its epoch moved (dovetaild tells its loop, whose
     * cache keys carry epochs) */
    void (*on_relearned)(void *ud, const char *tenant);
    void *ud;
    /* A tenant with at least this many records re-learns its basis in the background (begin,
     * journal marker and the swap with writers excluded; the fit with nothing held). Below it the
     * re-learn is done inline, by the write that made it due. */
    size_t background_docs;
    int fit_nice;            /* the fit runs on a thread of this nice value (0..19; 0 = as the caller) */
    bool quiet;              /* no log lines (re-learns in the background, slow commits) */
    /* NULL: dt_engine_relearn_fit; tests put one here that waits, to write during a fit */
    int (*fit_fn)(dt_engine_relearn *r, dt_err *err);
    /* the store's own */
    bool relearning;         /* a re-learn is between begin and install (guarded by *commit) */
    pthread_cond_t relearn_idle; /* signalled, with *commit, when relearning drops */
    pthread_mutex_t thr_mu;
    pthread_cond_t thr_cv;
    size_t threads;          /* background re-learn threads not yet finished (thr_mu) */
    pthread_mutex_t gate_mu; /* long readers and the writer waiting for them (dt_store_read_long) */
    pthread_cond_t gate_cv;
    unsigned long_readers, writers_waiting;
} dt_store;

/* The required fields; the optional ones get their defaults (no hooks, background_docs
 * DT_STORE_BACKGROUND_DOCS, fit_nice DT_STORE_FIT_NICE). */
#define DT_STORE_BACKGROUND_DOCS 5000
#define DT_STORE_FIT_NICE 10
void dt_store_init(dt_store *st, dt_engine *e, dt_durable *d, pthread_mutex_t *commit, pthread_rwlock_t *lock);
/* Waits for background re-learns to finish (the caller makes sure no commit starts another). */
void dt_store_drain(dt_store *st);
/* dt_store_drain, then frees the store's own; nothing may use the store any more (a re-rank job
 * re-learning through it included). */
void dt_store_fini(dt_store *st);

typedef struct dt_commit_ops {
    uint8_t entry;    /* the journal entry's type, DT_J_* */
    const char *what; /* "the write", "the delete": the subject of the journal's and sync's errors */
    /* commit mutex held, no write lock: 0, or -1 with err set (err->field names the request's
     * field, e.g. "records[3].embedding"). NULL: nothing to check. */
    int (*check)(void *ctx, dt_err *err);
    /* the same locks, after check: work done before the journal and outside the write lock.
     * 0, or -1 with err set. NULL: none. */
    int (*prepare)(void *ctx, dt_err *err);
    /* write lock held, after the entry was journaled: changes the state. Checked already, so it
     * fails only for memory: 0, or -1 with err set (what it applied before failing stays). */
    int (*apply)(void *ctx, dt_err *err);
    /* commit mutex held, write lock not: reads what the answer reports. NULL: none. */
    void (*publish)(void *ctx);
} dt_commit_ops;

/* Where a commit stopped. */
typedef enum {
    DT_COMMIT_DONE = 0,      /* applied and durable: acknowledge */
    DT_COMMIT_REFUSED,       /* check or prepare refused it: nothing changed */
    DT_COMMIT_NOT_JOURNALED, /* the journal refused the entry: nothing changed */
    DT_COMMIT_NOT_APPLIED,   /* apply failed (memory) after the entry was journaled */
    DT_COMMIT_NOT_DURABLE    /* applied, but the entry could not be made durable: do not acknowledge */
} dt_commit_stage;

typedef struct dt_commit {
    const dt_commit_ops *ops;
    void *ctx;
    /* the journal entry's payload: the whole request. NULL: nothing to journal (an empty request,
     * or a store without a journal). */
    const uint8_t *payload;
    size_t len;
    /* non-NULL: after apply, compact this tenant's indexes and re-learn its basis when due */
    const char *reindex_tenant;
    /* out */
    uint64_t seq;          /* the entry's sequence number (0: nothing journaled) */
    dt_commit_stage stage;
} dt_commit;

/* Runs c through the commit path above. 0 when the write is applied and durable; otherwise -1,
 * c->stage says where it stopped and err says why: check's and apply's own errors as they gave
 * them; the journal's and sync's as -DT_EIO "<what> could not be journaled (...); nothing was
 * stored" / "... could not be made durable (...); not acknowledged". */
int dt_store_commit(dt_store *st, dt_commit *c, dt_err *err);

/* Compaction and re-learn of tenant's indexes when due, as a commit's reindex step does: the caller
 * holds the commit mutex and not the write lock (taken here for the swaps only). A re-learn is
 * journaled (DT_J_BUILD) at its begin, where the records it learns from are, so that a replay
 * re-learns from the same records; *seq then gets that entry. At most one re-learn runs at a time:
 * none starts while one is in flight. */
void dt_store_reindex(dt_store *st, const char *tenant, uint64_t *seq);

/* Re-learns tenant's basis now, on the calling thread, letting writers in during the fit (waits for
 * a re-learn in flight first). The caller holds no lock. *built tells whether the tenant's basis
 * (and epoch) changed. 0, or the engine's error. */
int dt_store_relearn(dt_store *st, const char *tenant, bool *built, dt_err *err);

/* The write lock, the way every writer of the store takes it: a writer first waits for the long
 * readers in flight to finish while searches go on (and holds new long readers back), then takes
 * *lock; searches therefore never queue behind a writer that waits for a long reader. */
void dt_store_write_lock(dt_store *st);
void dt_store_write_unlock(dt_store *st);
/* *lock as a reader for a long read (a re-rank batch, Stats, PairEvent: tens to hundreds of
 * milliseconds): starts only when no writer waits. Searches take *lock directly. */
void dt_store_read_long(dt_store *st);
void dt_store_read_long_end(dt_store *st);

/* Waits until no re-learn is in flight (tests, shutdown). The caller holds no lock. */
void dt_store_wait_relearn(dt_store *st);

#endif
