/* rerank_out.h - where a re-rank job's lists go: a JSON Lines file and/or Redis, each published
 * only when the job is complete (docs/rerank.md, "Outputs").
 *
 * File: one line per record, {"tenant","side","id","matches":[{"id","score"},...]}, written to
 * PATH.tmp.PID, fsynced, and renamed to PATH on commit; a job that does not commit removes it.
 * Redis: pipelined SETs (REDIS_WINDOW in flight) of dt:v1:rerank:<tenant>:job:<job>:<side>:<id>;
 * on commit the job's meta key, then dt:v1:rerank:<tenant>:current = <job> with one SET, then
 * every other job's keys of the tenant are removed. A job that does not commit removes its own
 * keys and never touches `current`.
 * Used by `dovetail rerank` and by the daemon's re-rank jobs (jobs.c). What it is not: the
 * ranking (matcher/rerank.h) or a reader of published lists.
 * Thread-safety: one dt_rerank_out belongs to one job; its emit callback is called one list at a
 * time (dt_rerank_run guarantees it), the other calls from the thread that runs the job. The Redis
 * connection is synchronous (hiredis) with connect and command timeouts.
 */
#ifndef DT_RERANK_OUT_H
#define DT_RERANK_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rerank.h"

#define DT_RERANK_JOB_ID_MAX 64

typedef struct dt_rerank_out_opts {
    const char *tenant;     /* NULL or "" = "public" */
    const char *job;        /* the job id (dt_rerank_job_id_valid) */
    const char *path;       /* the file to publish, or NULL for none */
    const char *redis;      /* HOST:PORT ([::1]:6379 for IPv6), or NULL for none */
    int connect_timeout_ms; /* 0 = 5000 */
    int timeout_ms;         /* per Redis command; 0 = 30000 */
    const char *file_field, *redis_field; /* names in errors ("--out", "--redis"); NULL = "file", "redis" */
} dt_rerank_out_opts;

typedef struct dt_rerank_out dt_rerank_out;

/* Opens the outputs: creates the temporary file, connects to Redis (PING) and refuses a job id
 * that is the tenant's published job (its keys are the lists readers use). NULL with err filled:
 * -DT_EINVAL for a bad address or job id (err->field is redis_field or "job"), -DT_EIO when the
 * file cannot be created or Redis cannot be reached, -DT_EEXIST for the published job's id. */
dt_rerank_out *dt_rerank_out_open(const dt_rerank_out_opts *o, dt_err *err);

/* A dt_rerank_emit_fn (ud = the dt_rerank_out): appends the list to the file and queues its SET.
 * -DT_EIO (err names the output) on a write or Redis error, -DT_ENOMEM. */
int dt_rerank_out_emit(void *ud, const dt_rerank_list *l, dt_err *err);

/* What dt_rerank_out_commit did besides publishing. */
typedef struct dt_rerank_out_summary {
    char previous[DT_RERANK_JOB_ID_MAX + 32]; /* the job `current` named before ("" when none) */
    long removed;                             /* keys of other jobs removed; -1 when that failed */
} dt_rerank_out_summary;

/* Publishes a complete job: syncs the temporary file, writes the Redis meta key (k and cap are
 * recorded there) and points `current` at the job, renames the file into place, then removes the
 * other jobs' keys of the tenant. On an error before `current` was set nothing is published (call
 * dt_rerank_out_abandon); after it (the rename failed) the Redis lists stay published and the
 * error says so. sum may be NULL. 0 or -DT_EIO / -DT_ENOMEM. */
int dt_rerank_out_commit(dt_rerank_out *o, size_t k, size_t cap, dt_rerank_out_summary *sum, dt_err *err);

/* Undoes what an unfinished job wrote: removes the temporary file and (when Redis still answers
 * and nothing was published) the job's own keys. Safe to call more than once. */
void dt_rerank_out_abandon(dt_rerank_out *o);

/* Closes the outputs (an uncommitted temporary file is removed first). NULL is fine. */
void dt_rerank_out_free(dt_rerank_out *o);

/* Lists emitted so far for records of one side. */
uint64_t dt_rerank_out_lists(const dt_rerank_out *o, dt_side side);

/* Whether id is a valid job id: 1 to DT_RERANK_JOB_ID_MAX characters from A-Z a-z 0-9 . _ - ,
 * and not "." or "..". */
bool dt_rerank_job_id_valid(const char *id);

/* A job id from the UTC time and the process id ("20250601T020000Z-4242"), followed by "-seq"
 * when seq > 0. out needs DT_RERANK_JOB_ID_MAX + 1 bytes. */
void dt_rerank_job_id_make(char *out, size_t n, unsigned long seq);

#endif
