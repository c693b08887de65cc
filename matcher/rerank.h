/* rerank.h - the nightly batch re-rank of one tenant (DESIGN section 7).
 *
 * A job computes, for every open record of a tenant, its top-k records of the other side, in both
 * directions, so that frontends can read ready-made lists. In order:
 *   1. when the tenant's dense space is not external embeddings, its LSA basis is re-learned
 *      (dt_engine_build) so that the lists use a basis fitted to today's records;
 *   2. the open records of both sides are listed; worker threads take them in batches and rank
 *      each batch with dt_search (one blocked GEMM over the whole target index per batch);
 *   3. outcome feedback (outcome.h) is applied: declined pairs are removed, the policy's deltas are
 *      added; the lists are emitted through a callback as they are done;
 *   4. with an exposure cap C, the demands' lists are held back, and once every demand has its
 *      top-L candidates the capped assignment of maximum value is solved exactly
 *      (dt_rerank_cap_assign) and those lists are emitted last.
 *
 * Exactness. A record's list is what this procedure gives, exactly: dt_search by the record over
 * every open record of the other side except its declined partners (excluded as a Match call's
 * exclude_ids would be, same weights), then each pair's outcome delta added (outcome.h), sorted by
 * adjusted score, ties by the candidate's slot as in dt_search, cut to k. The job asks dt_search
 * for a little more than k and checks that no candidate beyond those returned can reach the top k
 * (a candidate ranks below the last one returned by its base score, and only an engaged pair's
 * delta is positive); when the check fails it asks again for four times as many, up to 10000
 * (beyond that a list is exact among the best 10000 by base score, and progress counts it in
 * `uncertain`). Without outcome feedback the lists are dt_search's lists.
 * As topk.h documents, OpenBLAS rounds a score's last bits differently depending on where the
 * query falls in the GEMM, so the same record ranked alone by dt_search may show scores a few ulps
 * apart and near-ties (within ~1e-6) in another order; nothing else differs.
 *
 * Exposure cap. With cap C > 0 no achievement appears in more than C demands' lists. Every demand
 * takes its top-L candidates (L = candidates >= k, after the outcome feedback); among the
 * assignments giving each demand at most k of its candidates and each achievement at most C
 * demands, the job picks one that first fills as many list entries as possible and then maximises
 * the total score (scores in fixed point, 1e-6 units) - with a cap that binds nowhere, every
 * demand keeps its top-k. Solved as a min-cost flow by successive shortest paths (Dijkstra with
 * potentials), exact. Achievements' lists of demands are not capped.
 *
 * Concurrency. The job reads the engine and the outcome store. Without lock callbacks the caller
 * must keep both unchanged for the whole run. With them, the job takes the shared lock around each
 * batch (and keeps writers out during the LSA re-learn, locking searches out only while it swaps
 * the new basis in) and lets writers in between: a record
 * written meanwhile is ranked as it is when its batch runs; one deleted or closed before its batch
 * gets no list; one added after the start waits for the next run. Progress and cancellation may be
 * used from any thread while dt_rerank_run runs.
 */
#ifndef DT_RERANK_H
#define DT_RERANK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "engine.h"
#include "outcome.h"

/* One entry of a list: a record of the other side and its (adjusted) score. */
typedef struct dt_rerank_item {
    const char *id;
    float score;
} dt_rerank_item;

/* One record's list, best first. Every pointer is valid during the emit call only. */
typedef struct dt_rerank_list {
    const char *tenant;
    dt_side side;  /* side of the record whose list this is; the items are of the other side */
    const char *id;
    const dt_rerank_item *items;
    size_t n;
} dt_rerank_list;

/* Receives each finished list. Called one list at a time (never concurrently), from the job's
 * worker threads or the thread running dt_rerank_run, without the engine lock held. A non-zero
 * return stops the job, which then fails with that value (a -DT_E* code; fill err). */
typedef int (*dt_rerank_emit_fn)(void *ud, const dt_rerank_list *list, dt_err *err);

/* Optional lock callbacks. The job takes SHARED around each batch it searches. The LSA re-learn
 * takes NO_WRITERS (no writer may change the engine; searches may go on) while it learns the basis
 * and projects every record, and EXCLUSIVE, nested inside NO_WRITERS, only to swap them in. */
typedef enum { DT_RERANK_LOCK_SHARED = 0, DT_RERANK_LOCK_NO_WRITERS = 1, DT_RERANK_LOCK_EXCLUSIVE = 2 } dt_rerank_lock_mode;
typedef void (*dt_rerank_lock_fn)(void *ud, dt_rerank_lock_mode mode);

typedef struct dt_rerank_opts {
    const char *tenant;        /* NULL = "public" */
    size_t k;                  /* list length (default 10), 1..10000 */
    bool demands, achievements;/* whose lists to compute: demands' (of achievements) and/or
                                  achievements' (of demands); both by default */
    size_t cap;                /* exposure cap C: 0 = none */
    size_t candidates;         /* L: candidates per demand under a cap (0 = max(5k, 50), at most
                                  10000, at least k) */
    bool relearn;              /* re-learn the LSA basis first (default true; ignored for external
                                  embeddings) */
    const dt_weights *weights; /* NULL = the engine's defaults (adaptive fusion, as a Match call
                                  without weights) */
    int threads;               /* worker threads, each searching its own batch (0 = online CPUs).
                                  Each search also uses the engine's opts.threads for its GEMM: for
                                  a job on its own, an engine with threads = 1 and one worker per
                                  CPU is fastest; make OpenBLAS single-threaded either way
                                  (dt_topk_blas_single) */
    size_t batch;              /* records per search (default 512) */
    const dt_outcome_store *outcomes; /* NULL = no feedback */
    dt_outcome_policy policy;  /* default dt_outcome_policy_default */
    dt_rerank_emit_fn emit;    /* required */
    void *emit_ud;
    dt_rerank_lock_fn lock, unlock; /* both or neither */
    void *lock_ud;
    /* NULL, or how the job re-learns the basis instead of under its own locks (called with lock_ud
     * and no lock held; 0 or an error with err set): dovetaild's store lets writers in during the
     * fit and journals the re-learn */
    int (*relearn_fn)(void *ud, const char *tenant, dt_err *err);
} dt_rerank_opts;

void dt_rerank_opts_init(dt_rerank_opts *o);

typedef enum {
    DT_RERANK_PENDING = 0, /* created, not started */
    DT_RERANK_BUILDING,    /* re-learning the LSA basis */
    DT_RERANK_RANKING,     /* computing lists */
    DT_RERANK_ASSIGNING,   /* solving the exposure cap */
    DT_RERANK_DONE,
    DT_RERANK_CANCELLED,
    DT_RERANK_FAILED
} dt_rerank_state;

const char *dt_rerank_state_name(dt_rerank_state s); /* "pending", "building", ... */

typedef struct dt_rerank_progress {
    dt_rerank_state state;
    uint64_t done, total;  /* records ranked / open records listed at the start (both sides) */
    uint64_t emitted;      /* lists handed to emit */
    uint64_t assign_done, assign_total; /* demands routed by the cap solver / to route */
    uint64_t uncertain;    /* lists whose exactness check still failed at 10000 candidates */
    double elapsed;        /* seconds since dt_rerank_run started (frozen once it returned) */
    double rate;           /* records ranked per second of ranking so far (0 before any) */
    double eta;            /* seconds left, estimated from rate; -1 when unknown */
} dt_rerank_progress;

typedef struct dt_rerank_job dt_rerank_job;

/* A job over e with options o (copied; the pointers in it are borrowed until dt_rerank_free).
 * -DT_EINVAL (via NULL and err) for a bad option: k out of range, candidates < k or > 10000, no
 * emit, only one lock callback, no side selected, bad policy or weights. */
dt_rerank_job *dt_rerank_new(dt_engine *e, const dt_rerank_opts *o, dt_err *err);
void dt_rerank_free(dt_rerank_job *j);

/* dt_rerank_run's return value when the job was cancelled (not an error: nothing failed). */
#define DT_RERANK_INTERRUPTED 1

/* Runs the job in the calling thread (and its workers) until every list is emitted: returns 0.
 * DT_RERANK_INTERRUPTED when dt_rerank_cancel stopped it: lists emitted before stay emitted, the
 * caller discards them (they are not a complete run). -DT_E* on failure (the engine, memory, or
 * emit's error), with err filled. A job runs once: a second call returns -DT_EINVAL. */
int dt_rerank_run(dt_rerank_job *j, dt_err *err);

/* Asks a running (or not yet started) job to stop: the workers finish the batch in hand, emit
 * nothing more, and dt_rerank_run returns DT_RERANK_INTERRUPTED. Thread-safe and lock-free;
 * async-signal-safe where C11 atomic_bool is lock-free. */
void dt_rerank_cancel(dt_rerank_job *j);

/* A consistent-enough snapshot of the counters (each read atomically). Thread-safe. */
void dt_rerank_get_progress(const dt_rerank_job *j, dt_rerank_progress *p);

/* ---- one search with outcome feedback: what a live Match call by a record returns ---- */

/* Per-thread scratch of dt_feedback_search (like a dt_searcher, one per thread). Borrows e. */
typedef struct dt_feedback dt_feedback;
dt_feedback *dt_feedback_new(dt_engine *e, dt_err *err);
void dt_feedback_free(dt_feedback *f); /* NULL is fine */

/* dt_search(sr, q, m, res, err) with the outcome feedback of store s under policy p (NULL = the
 * default policy) applied to every query by a stored record: its declined partners are excluded
 * (in addition to the query's exclude_ids), each candidate's score gets the pair's
 * dt_outcome_delta (kept in dt_match.feedback, included in dt_match.score), the candidates are
 * ordered by adjusted score (ties by slot) and res[i] is the slice [offset, offset + k) of that
 * order. This is the procedure the job above uses for every list, so a Match call with the job's k
 * returns the job's list for the record (up to the GEMM rounding topk.h documents). The search
 * asks for a little more than offset + k and deepens (x4, up to 10000 candidates) until nothing
 * further down can reach the slice; *uncertain (may be NULL) receives how many queries 10000 did
 * not settle. Queries by free text, queries whose record has no outcomes and nothing flagged
 * around it, and every query when s is NULL, are exactly dt_search's. Reads e and s: hold both
 * read locks for the call. Errors as dt_search (res[] is then empty), or -DT_ENOMEM. */
int dt_feedback_search(dt_feedback *f, dt_searcher *sr, const dt_outcome_store *s, const dt_outcome_policy *p,
                       const dt_query *q, size_t m, dt_match_result *res, size_t *uncertain, dt_err *err);

/* ---- the exposure-cap assignment on its own ---- */

typedef struct dt_rerank_edge {
    uint32_t to;   /* achievement index, < n_right */
    float score;
} dt_rerank_edge;

/* Chooses, for n_left demands with candidate lists edges[off[i] .. off[i+1]) (each list's targets
 * distinct; any order, best first is usual), at most k edges per demand and at most cap edges per
 * achievement (n_right of them): first as many edges as possible, then the largest total of
 * llround(score * 1e6). chosen (off[n_left] bytes) receives 1 for a chosen edge, 0 otherwise;
 * *n_chosen and *value (either may be NULL) the count and the total in 1e-6 units.
 * stop (may be NULL) is called after every 64 demands with the number routed so far: when it
 * returns true the call returns DT_RERANK_INTERRUPTED, chosen unspecified.
 * -DT_EINVAL: k or cap 0, a target out of range or repeated in one list, a score that is not
 * finite or beyond +-1000, more than UINT32_MAX - 1 demands, achievements or edges. -DT_ENOMEM.
 * Reentrant: no shared state. */
int dt_rerank_cap_assign(size_t n_left, const size_t *off, const dt_rerank_edge *edges, size_t n_right,
                         size_t k, size_t cap, uint8_t *chosen, size_t *n_chosen, int64_t *value,
                         bool (*stop)(void *ud, size_t routed), void *stop_ud, dt_err *err);

#endif
