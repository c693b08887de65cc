/* jobs.h - the daemon's re-rank jobs: StartRerank, GetJob, CancelJob, ListJobs.
 *
 * A job is the nightly re-rank of one tenant (matcher/rerank.h) run inside dovetaild on a thread
 * of its own (not the worker pool), with --rerank-threads workers of its own. It takes the engine
 * lock shared around each batch and exclusive around the basis re-learn, so Match calls and writes
 * keep being served; a re-learned basis is journalled and its new epoch handed to the loop, so no
 * cached answer from the old basis is served afterwards. Lists go to a JSON Lines file under
 * --jobs-dir and/or to Redis (--redis) through rerank_out.h, published only when complete.
 * One running job per tenant; the last --jobs-keep finished jobs of each tenant stay queryable (in
 * memory: a restart forgets them). docs/rerank.md, "Re-rank jobs in the daemon", is the user's
 * view.
 * What it is not: a scheduler (something outside calls StartRerank each night) or a store of past
 * lists beyond the published ones and the last --jobs-keep files.
 * Threads: the RPC entry points run on pool workers, dt_jobs_metrics on the loop; everything they
 * share is under one mutex held only for bookkeeping, never while ranking or writing outputs.
 */
#ifndef DT_JOBS_H
#define DT_JOBS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dt.h"

struct dt_server;
struct dt_call;
typedef struct dt_jobs dt_jobs;

/* The job registry of server s (borrowed; its base, engine, lock, outcomes, durable and cfg must
 * outlive it). Creates the jobs directory (one level) when s has one and checks it is writable:
 * -DT_EIO via NULL and err (field "jobs-dir") when not. Loop thread, before serving. */
dt_jobs *dt_jobs_new(struct dt_server *s, const char *dir, dt_err *err);

/* Cancels every running job and refuses new ones (StartRerank then answers unavailable). Does not
 * wait. Any thread; NULL is fine. */
void dt_jobs_stop(dt_jobs *j);

/* dt_jobs_stop, then waits for every job thread to finish cleaning up, and frees. Loop thread,
 * while the event base still exists (the loop need not run). NULL is fine. */
void dt_jobs_free(dt_jobs *j);

/* Tells the loop a tenant's epoch moved outside a write call (a basis re-learned by a job or in the
 * store's background): the loop's epoch table, which cache keys carry, takes it. With wait, waits
 * (a little) until the loop has, so that no answer cached under the old epoch is served after the
 * call returns. Any thread but the loop's; NULL is fine. */
void dt_jobs_hand_epoch(dt_jobs *J, const char *tenant, uint64_t epoch, bool wait);

/* Appends the job metrics (text format 0.0.4): jobs started and finished by outcome, and each
 * running job's progress. Loop thread; NULL writes the counters as 0. */
void dt_jobs_metrics(dt_jobs *j, FILE *f);

/* Loop thread: checks a StartRerank / GetJob / CancelJob / ListJobs request (0, or sets
 * c->code and c->err naming the field). */
int dt_rpc_jobs_precheck(struct dt_call *c);

/* Worker thread: runs one of those calls and answers through dt_rpc_finish or c->code/err:
 * StartRerank failed_precondition while the tenant has a running job (naming it) or when the
 * server has no output; already_exists for a job id the tenant's remembered jobs use; unavailable
 * once stopping. GetJob / CancelJob not_found for an unknown id. */
void dt_rpc_jobs_run(struct dt_call *c);

#endif
