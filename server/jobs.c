/* jobs.c - re-rank jobs inside dovetaild (jobs.h): the registry, each job's thread, the outputs'
 * life cycle, and the StartRerank / GetJob / CancelJob / ListJobs handlers.
 *
 * A job's life: StartRerank (a worker) validates it, creates the dt_rerank_job and its thread;
 * the thread opens the outputs, runs the job, then publishes (commit, the `current` link of the
 * tenant's directory, pruning old files) or abandons them, freezes the final progress and marks the
 * job finished. Finished jobs stay in the registry (newest first) until more than --jobs-keep of
 * their tenant are finished; their threads are joined when they are dropped or at shutdown.
 * Invariant: a job's `rr` is non-NULL exactly while it is not finished, and both change only under
 * the registry mutex, so GetJob and CancelJob never touch a freed job.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "durable.h"
#include "jobs.h"
#include "outcome.h"
#include "rerank.h"
#include "rerank_out.h"
#include "server.h"

#define HANDOFF_WAIT_S 2 /* longest a job waits for the loop to take a new epoch */

/* A job's own phases; while RUNNING the library's state says more. */
enum { PH_PENDING, PH_RUNNING, PH_PUBLISHING, PH_DONE, PH_CANCELLED, PH_FAILED };

typedef struct job {
    struct dt_jobs *owner;
    struct job *next;        /* registry, newest first */
    char id[DT_RERANK_JOB_ID_MAX + 1];
    char tenant[DT_TENANT_MAX + 1];
    size_t k, cap, candidates;
    bool demands, achievements, relearn;
    char *dir;               /* the tenant's directory under the jobs dir, or NULL */
    char *path;              /* the file to publish, or NULL */
    char *redis_prefix;      /* or NULL */
    dt_rerank_job *rr;       /* NULL once finished */
    dt_rerank_out *out;      /* the job thread's */
    atomic_int phase;
    bool cancel_requested;
    atomic_uint_fast64_t lists[2];
    int64_t started_at, finished_at;
    uint64_t t0_us, t1_us;
    dt_rerank_progress last; /* frozen when finished */
    char error[400];
    bool finished;
    bool thread_started;
    pthread_t tid;
} job;

typedef struct handoff {
    char tenant[DT_TENANT_MAX + 1];
    uint64_t epoch;
} handoff;

struct dt_jobs {
    dt_server *srv;
    char *dir;
    pthread_mutex_t mu;
    pthread_cond_t applied_cv;
    pthread_cond_t finished_cv; /* a job finished */
    job *list;
    unsigned long id_seq;
    bool stopping;
    struct event *wake;      /* activated by job threads: new epochs for the loop */
    handoff *pend;
    size_t n_pend, cap_pend;
    uint64_t requested, applied;
    atomic_uint_fast64_t started, done, cancelled, failed;
};

static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;

/* dt_search allocates per-query scratch for every batch: keep freed memory in the process rather
 * than page-faulting fresh zeroed pages in again (docs/rerank.md, "Performance"). */
static void malloc_keep_memory(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
}

static uint64_t now_wall(void)
{
    return (uint64_t)time(NULL);
}

/* ---- epochs: a re-learned basis is a write the loop must know about ---- */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dt_jobs *J = arg;
    pthread_mutex_lock(&J->mu);
    for (size_t i = 0; i < J->n_pend; i++) dt_server_set_epoch(J->srv, J->pend[i].tenant, J->pend[i].epoch);
    J->n_pend = 0;
    J->applied = J->requested;
    pthread_cond_broadcast(&J->applied_cv);
    pthread_mutex_unlock(&J->mu);
}

void dt_jobs_hand_epoch(dt_jobs *J, const char *tenant, uint64_t epoch, bool wait)
{
    if (!J) return;
    pthread_mutex_lock(&J->mu);
    if (J->n_pend == J->cap_pend) {
        size_t nc = J->cap_pend ? J->cap_pend * 2 : 8;
        handoff *p = realloc(J->pend, nc * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&J->mu);
            return; /* the next write of the tenant moves its epoch on */
        }
        J->pend = p;
        J->cap_pend = nc;
    }
    snprintf(J->pend[J->n_pend].tenant, sizeof J->pend[0].tenant, "%s", tenant);
    J->pend[J->n_pend++].epoch = epoch;
    uint64_t ticket = ++J->requested;
    event_active(J->wake, EV_READ, 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HANDOFF_WAIT_S;
    while (wait && J->applied < ticket && !J->stopping)
        if (pthread_cond_timedwait(&J->applied_cv, &J->mu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&J->mu);
}

static void job_lock(void *ud, dt_rerank_lock_mode mode)
{
    job *jb = ud;
    dt_server *s = jb->owner->srv;
    switch (mode) {
    case DT_RERANK_LOCK_SHARED: dt_store_read_long(&s->store); break; /* a batch: a long reader */
    case DT_RERANK_LOCK_NO_WRITERS: pthread_mutex_lock(&s->commit); break;
    case DT_RERANK_LOCK_EXCLUSIVE: dt_store_write_lock(&s->store); break;
    }
}

static void job_unlock(void *ud, dt_rerank_lock_mode mode)
{
    job *jb = ud;
    dt_server *s = jb->owner->srv;
    if (mode == DT_RERANK_LOCK_NO_WRITERS)
        pthread_mutex_unlock(&s->commit);
    else if (mode == DT_RERANK_LOCK_SHARED)
        dt_store_read_long_end(&s->store);
    else
        dt_store_write_unlock(&s->store);
}

/* The job's basis re-learn goes through the store like the one a write starts: journaled where it
 * learns from, writers let in during the fit; then the loop learns the tenant's new epoch. */
static int job_relearn(void *ud, const char *tenant, dt_err *err)
{
    job *jb = ud;
    dt_server *s = jb->owner->srv;
    bool built = false;
    int rc = dt_store_relearn(&s->store, tenant, &built, err);
    if (built) {
        pthread_mutex_lock(&s->commit);
        uint64_t epoch = dt_rpc_tenant_epoch(s, tenant);
        pthread_mutex_unlock(&s->commit);
        dt_jobs_hand_epoch(jb->owner, tenant, epoch, true);
    }
    return rc;
}

static int job_emit(void *ud, const dt_rerank_list *l, dt_err *err)
{
    job *jb = ud;
    int rc = dt_rerank_out_emit(jb->out, l, err);
    if (rc == 0) atomic_fetch_add(&jb->lists[l->side == DT_ACHIEVEMENT], 1);
    return rc;
}

/* ---- the tenant's directory: <jobs dir>/<tenant, percent-encoded>/ ---- */

static char *tenant_dir(const char *root, const char *tenant)
{
    char enc[3 * DT_TENANT_MAX + 1];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                     *p == '-' || (*p == '.' && p != (const unsigned char *)tenant);
        if (plain)
            enc[n++] = (char)*p;
        else
            n += (size_t)snprintf(enc + n, sizeof enc - n, "%%%02X", *p);
    }
    enc[n] = 0;
    size_t len = strlen(root) + n + 2;
    char *out = malloc(len);
    if (out) snprintf(out, len, "%s/%s", root, enc);
    return out;
}

/* The temporary names our writers use: "<job id>.jsonl.tmp.<pid>" and "current.tmp.<pid>". */
static bool tmp_name(const char *name)
{
    const char *m = NULL, *marker = ".jsonl.tmp.";
    for (const char *p = strstr(name, marker); p; p = strstr(p + 1, marker)) m = p;
    if (m) {
        char stem[DT_RERANK_JOB_ID_MAX + 1];
        if ((size_t)(m - name) > DT_RERANK_JOB_ID_MAX) return false;
        snprintf(stem, sizeof stem, "%.*s", (int)(m - name), name);
        if (!dt_rerank_job_id_valid(stem)) return false;
        m += strlen(marker);
    } else if (!strncmp(name, "current.tmp.", 12)) {
        m = name + 12;
    } else {
        return false;
    }
    return *m && strspn(m, "0123456789") == strlen(m);
}

typedef struct old_file {
    char name[DT_RERANK_JOB_ID_MAX + 16];
    struct timespec mtime;
} old_file;

static int newer_first(const void *a, const void *b)
{
    const struct timespec *x = &((const old_file *)a)->mtime, *y = &((const old_file *)b)->mtime;
    if (x->tv_sec != y->tv_sec) return x->tv_sec < y->tv_sec ? 1 : -1;
    return x->tv_nsec < y->tv_nsec ? 1 : x->tv_nsec > y->tv_nsec ? -1 : 0;
}

/* Points <dir>/current at the job's file (a symlink replaced with one rename), then removes stale
 * temporary files and the job files beyond the newest `keep` (the current one counts). */
static void publish_dir(job *jb, size_t keep)
{
    char tmp[PATH_MAX], fin[PATH_MAX], target[DT_RERANK_JOB_ID_MAX + 8];
    snprintf(target, sizeof target, "%s.jsonl", jb->id);
    snprintf(tmp, sizeof tmp, "%s/current.tmp.%ld", jb->dir, (long)getpid());
    snprintf(fin, sizeof fin, "%s/current", jb->dir);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, fin) != 0) {
        dt_log(&jb->owner->srv->cfg, "re-rank job %s: cannot point %s at %s: %s", jb->id, fin, target, strerror(errno));
        unlink(tmp);
    }
    DIR *d = opendir(jb->dir);
    if (!d) return;
    old_file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", jb->dir, name);
        if (tmp_name(name)) {
            unlink(path); /* left by a crash: only this job wrote in the directory meanwhile */
            continue;
        }
        size_t len = strlen(name);
        if (len <= 6 || strcmp(name + len - 6, ".jsonl") != 0 || len - 6 > DT_RERANK_JOB_ID_MAX) continue;
        char stem[DT_RERANK_JOB_ID_MAX + 1];
        snprintf(stem, sizeof stem, "%.*s", (int)(len - 6), name);
        struct stat st;
        if (!dt_rerank_job_id_valid(stem) || strcmp(stem, jb->id) == 0 || lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            old_file *p = realloc(files, nc * sizeof *p);
            if (!p) break;
            files = p;
            cap = nc;
        }
        snprintf(files[n].name, sizeof files[n].name, "%s.jsonl", stem);
        files[n++].mtime = st.st_mtim;
    }
    closedir(d);
    if (n) qsort(files, n, sizeof *files, newer_first);
    for (size_t i = keep > 0 ? keep - 1 : 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", jb->dir, files[i].name);
        unlink(path);
    }
    free(files);
}

/* ---- the registry ---- */

static void job_free(job *jb)
{
    if (!jb) return;
    if (jb->thread_started) pthread_join(jb->tid, NULL);
    dt_rerank_free(jb->rr);
    dt_rerank_out_free(jb->out);
    free(jb->dir);
    free(jb->path);
    free(jb->redis_prefix);
    free(jb);
}

static job *find(dt_jobs *J, const char *tenant, const char *id)
{
    for (job *jb = J->list; jb; jb = jb->next)
        if (!strcmp(jb->tenant, tenant) && !strcmp(jb->id, id)) return jb;
    return NULL;
}

/* Drops the tenant's finished jobs beyond the newest `keep` (mutex held). */
static void evict(dt_jobs *J, const char *tenant, size_t keep)
{
    size_t seen = 0;
    for (job **pp = &J->list; *pp;) {
        job *jb = *pp;
        if (!strcmp(jb->tenant, tenant) && jb->finished && ++seen > keep) {
            *pp = jb->next;
            job_free(jb); /* its thread has only to return */
            continue;
        }
        pp = &jb->next;
    }
}

/* ---- the job thread ---- */

static void *job_main(void *arg)
{
    job *jb = arg;
    dt_jobs *J = jb->owner;
    const dt_config *cfg = &J->srv->cfg;
    dt_err err = DT_ERR_INIT;
    int rc = 0;
    if (jb->dir && mkdir(jb->dir, 0755) != 0 && errno != EEXIST)
        rc = dt_err_set(&err, DT_EIO, "jobs-dir", "cannot create %s: %s", jb->dir, strerror(errno));
    if (rc == 0) {
        dt_rerank_out_opts oo = {jb->tenant, jb->id, jb->path, cfg->redis, cfg->rerank_redis_timeout_ms,
                                 cfg->rerank_redis_timeout_ms, "jobs-dir", "redis"};
        if (!(jb->out = dt_rerank_out_open(&oo, &err))) rc = -err.code;
    }
    if (rc == 0) {
        atomic_store(&jb->phase, PH_RUNNING);
        rc = dt_rerank_run(jb->rr, &err);
    }
    pthread_mutex_lock(&J->mu);
    if (rc == 0 && jb->cancel_requested) rc = DT_RERANK_INTERRUPTED; /* asked before publishing began */
    if (rc == 0) atomic_store(&jb->phase, PH_PUBLISHING);
    pthread_mutex_unlock(&J->mu);
    dt_rerank_out_summary sum = {"", 0};
    if (rc == 0) {
        rc = dt_rerank_out_commit(jb->out, jb->k, jb->cap, &sum, &err);
        if (rc == 0 && jb->path) publish_dir(jb, cfg->jobs_keep);
        if (rc == 0 && sum.removed < 0) dt_log(cfg, "re-rank job %s: could not remove the keys of earlier jobs", jb->id);
    }
    if (rc != 0) dt_rerank_out_abandon(jb->out);
    dt_rerank_out_free(jb->out);
    jb->out = NULL;

    int phase = rc == 0 ? PH_DONE : rc == DT_RERANK_INTERRUPTED ? PH_CANCELLED : PH_FAILED;
    atomic_fetch_add(phase == PH_DONE ? &J->done : phase == PH_CANCELLED ? &J->cancelled : &J->failed, 1);
    /* what the log line needs: once finished, the job may be dropped by another thread at any time */
    char id[sizeof jb->id], tenant[sizeof jb->tenant], error[sizeof jb->error], path[PATH_MAX];
    snprintf(id, sizeof id, "%s", jb->id);
    snprintf(tenant, sizeof tenant, "%s", jb->tenant);
    snprintf(path, sizeof path, "%s", jb->path ? jb->path : "");
    pthread_mutex_lock(&J->mu);
    if (jb->rr) dt_rerank_get_progress(jb->rr, &jb->last);
    dt_rerank_job *rr = jb->rr;
    jb->rr = NULL;
    jb->t1_us = dt_now_us();
    jb->finished_at = (int64_t)now_wall();
    if (phase == PH_FAILED)
        snprintf(jb->error, sizeof jb->error, "%s%s%.300s; nothing was published", err.field, err.field[0] ? ": " : "",
                 err.msg[0] ? err.msg : "failed");
    snprintf(error, sizeof error, "%s", jb->error);
    double secs = (double)(jb->t1_us - jb->t0_us) / 1e6;
    uint64_t nd = atomic_load(&jb->lists[0]), na = atomic_load(&jb->lists[1]);
    dt_rerank_progress last = jb->last;
    atomic_store(&jb->phase, phase);
    jb->finished = true;
    evict(J, tenant, cfg->jobs_keep); /* never this job: it is its tenant's newest */
    pthread_cond_broadcast(&J->finished_cv);
    pthread_mutex_unlock(&J->mu);
    dt_rerank_free(rr);

    if (phase == PH_DONE)
        dt_log(cfg, "re-rank job %s of tenant %s: done in %.1f s, %llu demand and %llu achievement lists%s%s", id,
               tenant, secs, (unsigned long long)nd, (unsigned long long)na, path[0] ? ", file " : "", path);
    else if (phase == PH_CANCELLED)
        dt_log(cfg, "re-rank job %s of tenant %s: cancelled after %llu of %llu records; nothing was published", id,
               tenant, (unsigned long long)last.done, (unsigned long long)last.total);
    else
        dt_log(cfg, "re-rank job %s of tenant %s: failed: %s", id, tenant, error);
    return NULL;
}

dt_jobs *dt_jobs_new(dt_server *s, const char *dir, dt_err *err)
{
    if (dir) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            dt_err_set(err, DT_EIO, "jobs-dir", "cannot create %s: %s", dir, strerror(errno));
            return NULL;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            dt_err_set(err, DT_EIO, "jobs-dir", "%s is not a writable directory: %s", dir, strerror(errno));
            return NULL;
        }
    }
    dt_jobs *J = calloc(1, sizeof *J);
    if (!J || (dir && !(J->dir = strdup(dir))) || !(J->wake = event_new(s->base, -1, 0, on_wake, J))) {
        if (J) free(J->dir);
        free(J);
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    J->srv = s;
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->applied_cv, NULL);
    pthread_cond_init(&J->finished_cv, NULL);
    return J;
}

void dt_jobs_stop(dt_jobs *J)
{
    if (!J) return;
    pthread_mutex_lock(&J->mu);
    J->stopping = true;
    for (job *jb = J->list; jb; jb = jb->next)
        if (!jb->finished && atomic_load(&jb->phase) < PH_PUBLISHING) {
            jb->cancel_requested = true;
            if (jb->rr) dt_rerank_cancel(jb->rr);
        }
    pthread_cond_broadcast(&J->applied_cv);
    pthread_mutex_unlock(&J->mu);
}

void dt_jobs_free(dt_jobs *J)
{
    if (!J) return;
    dt_jobs_stop(J);
    pthread_mutex_lock(&J->mu);
    for (;;) { /* finishing jobs still evict (and join) others: wait until none runs */
        bool running = false;
        for (job *jb = J->list; jb; jb = jb->next) running |= !jb->finished;
        if (!running) break;
        pthread_cond_wait(&J->finished_cv, &J->mu);
    }
    pthread_mutex_unlock(&J->mu);
    while (J->list) {
        job *jb = J->list;
        J->list = jb->next;
        job_free(jb);
    }
    event_free(J->wake);
    pthread_cond_destroy(&J->applied_cv);
    pthread_cond_destroy(&J->finished_cv);
    pthread_mutex_destroy(&J->mu);
    free(J->pend);
    free(J->dir);
    free(J);
}

void dt_jobs_metrics(dt_jobs *J, FILE *f)
{
    uint64_t st = J ? atomic_load(&J->started) : 0, dn = J ? atomic_load(&J->done) : 0;
    uint64_t ca = J ? atomic_load(&J->cancelled) : 0, fa = J ? atomic_load(&J->failed) : 0;
    fprintf(f,
            "# HELP dovetail_rerank_jobs_started_total Re-rank jobs started.\n"
            "# TYPE dovetail_rerank_jobs_started_total counter\ndovetail_rerank_jobs_started_total %llu\n"
            "# HELP dovetail_rerank_jobs_finished_total Re-rank jobs ended, by how.\n"
            "# TYPE dovetail_rerank_jobs_finished_total counter\n"
            "dovetail_rerank_jobs_finished_total{state=\"done\"} %llu\n"
            "dovetail_rerank_jobs_finished_total{state=\"cancelled\"} %llu\n"
            "dovetail_rerank_jobs_finished_total{state=\"failed\"} %llu\n",
            (unsigned long long)st, (unsigned long long)dn, (unsigned long long)ca, (unsigned long long)fa);
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"dovetail_rerank_job_records_done", "Records ranked by a running re-rank job."},
        {"dovetail_rerank_job_records_total", "Records a running re-rank job ranks."},
        {"dovetail_rerank_job_records_per_second", "Records ranked per second by a running re-rank job."},
        {"dovetail_rerank_job_eta_seconds", "Estimated seconds of ranking left (-1: unknown)."},
        {"dovetail_rerank_job_elapsed_seconds", "Seconds since a running re-rank job started."},
    };
    size_t n = 0;
    dt_rerank_progress *pr = NULL;
    char (*labels)[2][DT_TENANT_MAX + DT_RERANK_JOB_ID_MAX + 2] = NULL;
    double *elapsed = NULL;
    if (J) {
        pthread_mutex_lock(&J->mu);
        size_t running = 0;
        for (job *jb = J->list; jb; jb = jb->next) running += !jb->finished;
        pr = calloc(running ? running : 1, sizeof *pr);
        labels = calloc(running ? running : 1, sizeof *labels);
        elapsed = calloc(running ? running : 1, sizeof *elapsed);
        for (job *jb = J->list; pr && labels && elapsed && jb; jb = jb->next) {
            if (jb->finished) continue;
            if (jb->rr) dt_rerank_get_progress(jb->rr, &pr[n]);
            else pr[n] = jb->last;
            snprintf(labels[n][0], sizeof labels[n][0], "%s", jb->tenant);
            snprintf(labels[n][1], sizeof labels[n][1], "%s", jb->id);
            elapsed[n++] = (double)(dt_now_us() - jb->t0_us) / 1e6;
        }
        pthread_mutex_unlock(&J->mu);
    }
    fprintf(f, "# HELP dovetail_rerank_jobs_running Re-rank jobs running.\n"
               "# TYPE dovetail_rerank_jobs_running gauge\ndovetail_rerank_jobs_running %zu\n", n);
    for (size_t g = 0; g < sizeof gauges / sizeof *gauges; g++) {
        if (!n) break;
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help, gauges[g].name);
        for (size_t i = 0; i < n; i++) {
            double v = g == 0 ? (double)pr[i].done : g == 1 ? (double)pr[i].total : g == 2 ? pr[i].rate
                     : g == 3 ? pr[i].eta : elapsed[i];
            fprintf(f, "%s{tenant=\"", gauges[g].name);
            dt_metrics_label(f, labels[i][0]);
            fputs("\",job=\"", f);
            dt_metrics_label(f, labels[i][1]);
            fprintf(f, "\"} %.6g\n", v);
        }
    }
    free(pr);
    free(labels);
    free(elapsed);
}

/* ---- RPCs ---- */

typedef struct pbjob {
    Dovetail__V1__Job m;
    Dovetail__V1__Side sides[2];
} pbjob;

static Dovetail__V1__JobState state_pb(int phase, dt_rerank_state st)
{
    switch (phase) {
    case PH_PENDING: return DOVETAIL__V1__JOB_STATE__JOB_STATE_PENDING;
    case PH_PUBLISHING: return DOVETAIL__V1__JOB_STATE__JOB_STATE_PUBLISHING;
    case PH_DONE: return DOVETAIL__V1__JOB_STATE__JOB_STATE_DONE;
    case PH_CANCELLED: return DOVETAIL__V1__JOB_STATE__JOB_STATE_CANCELLED;
    case PH_FAILED: return DOVETAIL__V1__JOB_STATE__JOB_STATE_FAILED;
    }
    switch (st) {
    case DT_RERANK_PENDING: return DOVETAIL__V1__JOB_STATE__JOB_STATE_PENDING;
    case DT_RERANK_BUILDING: return DOVETAIL__V1__JOB_STATE__JOB_STATE_BUILDING;
    case DT_RERANK_ASSIGNING: return DOVETAIL__V1__JOB_STATE__JOB_STATE_ASSIGNING;
    case DT_RERANK_DONE: return DOVETAIL__V1__JOB_STATE__JOB_STATE_PUBLISHING;
    default: return DOVETAIL__V1__JOB_STATE__JOB_STATE_RANKING; /* ranking, or cleaning up after it */
    }
}

/* Fills p from jb (registry mutex held; p borrows jb's strings until the mutex is released). */
static void job_to_pb(const job *jb, pbjob *p)
{
    Dovetail__V1__Job *m = &p->m;
    dovetail__v1__job__init(m);
    dt_rerank_progress pr;
    if (jb->rr) dt_rerank_get_progress(jb->rr, &pr);
    else pr = jb->last;
    int phase = atomic_load(&jb->phase);
    m->id = (char *)jb->id;
    m->tenant = (char *)jb->tenant;
    m->state = state_pb(phase, pr.state);
    m->done = (uint32_t)pr.done;
    m->total = (uint32_t)pr.total;
    m->emitted = (uint32_t)pr.emitted;
    m->rate = pr.rate;
    m->eta_seconds = phase == PH_DONE ? 0 : phase == PH_RUNNING || phase == PH_PUBLISHING ? pr.eta : -1;
    m->elapsed_seconds = (double)((jb->finished ? jb->t1_us : dt_now_us()) - jb->t0_us) / 1e6;
    m->started_at = jb->started_at;
    m->finished_at = jb->finished ? jb->finished_at : 0;
    if (jb->error[0]) m->error = (char *)jb->error;
    if (jb->path) m->output_file = jb->path;
    if (jb->redis_prefix) m->redis_prefix = jb->redis_prefix;
    m->uncertain = (uint32_t)pr.uncertain;
    m->assign_done = (uint32_t)pr.assign_done;
    m->assign_total = (uint32_t)pr.assign_total;
    m->cancel_requested = jb->cancel_requested;
    m->k = (uint32_t)jb->k;
    m->cap = (uint32_t)jb->cap;
    m->candidates = (uint32_t)jb->candidates;
    m->sides = p->sides;
    if (jb->demands) p->sides[m->n_sides++] = DOVETAIL__V1__SIDE__SIDE_DEMAND;
    if (jb->achievements) p->sides[m->n_sides++] = DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT;
    m->relearn = jb->relearn;
    m->demand_lists = (uint32_t)atomic_load(&jb->lists[0]);
    m->achievement_lists = (uint32_t)atomic_load(&jb->lists[1]);
}

/* Answers with {job: jb} as the method's response type (mutex held). */
static void answer_job(dt_call *c, const job *jb)
{
    pbjob p;
    job_to_pb(jb, &p);
    switch (c->method_index) {
    case DT_M_START_RERANK: {
        Dovetail__V1__StartRerankResponse r = DOVETAIL__V1__START_RERANK_RESPONSE__INIT;
        r.job = &p.m;
        dt_rpc_finish(c, &r.base);
        break;
    }
    case DT_M_GET_JOB: {
        Dovetail__V1__GetJobResponse r = DOVETAIL__V1__GET_JOB_RESPONSE__INIT;
        r.job = &p.m;
        dt_rpc_finish(c, &r.base);
        break;
    }
    default: {
        Dovetail__V1__CancelJobResponse r = DOVETAIL__V1__CANCEL_JOB_RESPONSE__INIT;
        r.job = &p.m;
        dt_rpc_finish(c, &r.base);
        break;
    }
    }
}

int dt_rpc_jobs_precheck(dt_call *c)
{
    if (c->method_index == DT_M_GET_JOB || c->method_index == DT_M_CANCEL_JOB) {
        const char *id = c->method_index == DT_M_GET_JOB ? ((const Dovetail__V1__GetJobRequest *)c->in)->id
                                                         : ((const Dovetail__V1__CancelJobRequest *)c->in)->id;
        if (!id || !*id) return dt_rpc_bad(c, "id", "required: the job's id");
        return 0;
    }
    if (c->method_index != DT_M_START_RERANK) return 0;
    const Dovetail__V1__StartRerankRequest *r = (const void *)c->in;
    if (r->job_id && *r->job_id && !dt_rerank_job_id_valid(r->job_id))
        return dt_rpc_bad(c, "job_id", "1 to %d characters from A-Z a-z 0-9 . _ - (got '%.80s')", DT_RERANK_JOB_ID_MAX,
                          r->job_id);
    size_t k = r->k ? r->k : 10, max_k = c->srv->cfg.max_k;
    if (k > max_k) return dt_rpc_bad(c, "k", "%zu; the limit is %zu (--max-k)", k, max_k);
    if (r->candidates && !r->cap) return dt_rpc_bad(c, "candidates", "only applies with cap");
    if (r->candidates && (r->candidates < k || r->candidates > 10000))
        return dt_rpc_bad(c, "candidates", "must be k (%zu) to 10000, got %u", k, r->candidates);
    if (r->n_sides > 2) return dt_rpc_bad(c, "sides", "at most two sides");
    for (size_t i = 0; i < r->n_sides; i++) {
        dt_side s;
        if (dt_rpc_side_of(r->sides[i], &s) < 0) {
            char field[32];
            snprintf(field, sizeof field, "sides[%zu]", i);
            return dt_rpc_bad(c, field, "must be SIDE_DEMAND (demands' lists) or SIDE_ACHIEVEMENT (achievements' lists)");
        }
    }
    bool demands = r->n_sides == 0;
    for (size_t i = 0; i < r->n_sides; i++) demands |= r->sides[i] == DOVETAIL__V1__SIDE__SIDE_DEMAND;
    if (r->cap && !demands)
        return dt_rpc_bad(c, "cap", "the exposure cap limits the demands' lists: add SIDE_DEMAND to sides, or leave cap 0");
    return dt_rpc_check_weights(c, r->weights);
}

static void run_start(dt_call *c, dt_jobs *J)
{
    const Dovetail__V1__StartRerankRequest *r = (const void *)c->in;
    dt_server *s = c->srv;
    if (!J->dir && !s->cfg.redis) {
        dt_rpc_fail(c, TW_FAILED_PRECONDITION, DT_EINVAL, NULL,
               "the server has no output for re-rank lists: start it with --jobs-dir (or --data-dir) and/or --redis");
        return;
    }
    pthread_rwlock_rdlock(&s->lock);
    bool known = dt_engine_index(s->engine, c->tenant, DT_DEMAND) || dt_engine_index(s->engine, c->tenant, DT_ACHIEVEMENT);
    pthread_rwlock_unlock(&s->lock);
    if (!known) {
        dt_rpc_fail(c, TW_NOT_FOUND, DT_ENOTFOUND, "tenant", "tenant '%s' has no records", c->tenant);
        return;
    }
    pthread_once(&malloc_once, malloc_keep_memory);
    job *jb = calloc(1, sizeof *jb);
    if (!jb) {
        dt_rpc_fail(c, TW_INTERNAL, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    jb->owner = J;
    snprintf(jb->tenant, sizeof jb->tenant, "%s", c->tenant);
    jb->k = r->k ? r->k : 10;
    jb->cap = r->cap;
    jb->relearn = r->relearn_present_case ? r->relearn : true;
    for (size_t i = 0; i < r->n_sides; i++) {
        if (r->sides[i] == DOVETAIL__V1__SIDE__SIDE_DEMAND) jb->demands = true;
        if (r->sides[i] == DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT) jb->achievements = true;
    }
    if (!r->n_sides) jb->demands = jb->achievements = true;
    dt_weights w;
    dt_rerank_opts ro;
    dt_rerank_opts_init(&ro);
    ro.tenant = jb->tenant;
    ro.k = jb->k;
    ro.cap = jb->cap;
    ro.candidates = r->candidates;
    ro.demands = jb->demands;
    ro.achievements = jb->achievements;
    ro.relearn = jb->relearn;
    if (r->weights) {
        w = (dt_weights){(float)r->weights->dense, (float)r->weights->lexical, (float)r->weights->structured};
        ro.weights = &w;
    }
    ro.threads = s->cfg.rerank_threads;
    /* each batch is searched under the engine's read lock, and a writer waiting for that lock holds
     * up every Match behind it (the lock prefers writers): short batches keep that wait short (at
     * 100k records a record's search with feedback takes about 10 ms, so 16 of them about 0.15 s) */
    ro.batch = 16;
    ro.outcomes = s->outcomes;
    ro.emit = job_emit;
    ro.emit_ud = jb;
    ro.lock = job_lock;
    ro.unlock = job_unlock;
    ro.relearn_fn = job_relearn;
    ro.lock_ud = jb;
    if (jb->cap) jb->candidates = r->candidates ? r->candidates : jb->k * 5 > 50 ? jb->k * 5 : 50;
    if (jb->candidates > 10000) jb->candidates = 10000;
    dt_err err = DT_ERR_INIT;
    if (!(jb->rr = dt_rerank_new(s->engine, &ro, &err))) {
        dt_rpc_fail(c, dt_twirp_from_err(err.code), err.code, err.field, "%s", err.msg);
        free(jb);
        return;
    }

    pthread_mutex_lock(&J->mu);
    job *running = NULL;
    for (job *x = J->list; x && !running; x = x->next)
        if (!x->finished && !strcmp(x->tenant, jb->tenant)) running = x;
    if (J->stopping) {
        dt_rpc_fail(c, TW_UNAVAILABLE, DT_EINTERNAL, NULL, "the server is shutting down; start the job on another replica");
        goto refused;
    }
    if (running) {
        dt_rpc_fail(c, TW_FAILED_PRECONDITION, DT_EEXIST, NULL,
               "job '%s' of tenant '%s' is still running: wait for it to end or cancel it (CancelJob)", running->id,
               jb->tenant);
        goto refused;
    }
    if (r->job_id && *r->job_id) {
        if (find(J, jb->tenant, r->job_id)) {
            dt_rpc_fail(c, TW_ALREADY_EXISTS, DT_EEXIST, "job_id", "tenant '%s' already has a job '%s'", jb->tenant, r->job_id);
            goto refused;
        }
        snprintf(jb->id, sizeof jb->id, "%s", r->job_id);
    } else {
        do
            dt_rerank_job_id_make(jb->id, sizeof jb->id, ++J->id_seq);
        while (find(J, jb->tenant, jb->id));
    }
    if (J->dir) {
        jb->dir = tenant_dir(J->dir, jb->tenant);
        size_t n = jb->dir ? strlen(jb->dir) + strlen(jb->id) + 8 : 0;
        if (!jb->dir || !(jb->path = malloc(n))) goto nomem;
        snprintf(jb->path, n, "%s/%s.jsonl", jb->dir, jb->id);
    }
    if (s->cfg.redis) {
        size_t n = strlen("dt:v1:rerank::job::") + strlen(jb->tenant) + strlen(jb->id) + 1;
        if (!(jb->redis_prefix = malloc(n))) goto nomem;
        snprintf(jb->redis_prefix, n, "dt:v1:rerank:%s:job:%s:", jb->tenant, jb->id);
    }
    atomic_init(&jb->phase, PH_PENDING);
    jb->t0_us = dt_now_us();
    jb->started_at = (int64_t)now_wall();
    if (pthread_create(&jb->tid, NULL, job_main, jb) != 0) {
        dt_rpc_fail(c, TW_INTERNAL, DT_EINTERNAL, NULL, "cannot start a thread for the job: %s", strerror(errno));
        goto refused;
    }
    jb->thread_started = true;
    jb->next = J->list;
    J->list = jb;
    atomic_fetch_add(&J->started, 1);
    dt_log(&s->cfg, "re-rank job %s of tenant %s started: k %zu, cap %zu, %s", jb->id, jb->tenant, jb->k, jb->cap,
           jb->demands && jb->achievements ? "both sides" : jb->demands ? "demands' lists" : "achievements' lists");
    evict(J, jb->tenant, s->cfg.jobs_keep);
    answer_job(c, jb);
    pthread_mutex_unlock(&J->mu);
    return;
nomem:
    dt_rpc_fail(c, TW_INTERNAL, DT_ENOMEM, NULL, "out of memory");
refused:
    pthread_mutex_unlock(&J->mu);
    job_free(jb);
}

static void run_list(dt_call *c, dt_jobs *J)
{
    pthread_mutex_lock(&J->mu);
    size_t n = 0, k = 0;
    for (job *jb = J->list; jb; jb = jb->next) n += !strcmp(jb->tenant, c->tenant);
    pbjob *v = calloc(n ? n : 1, sizeof *v);
    Dovetail__V1__Job **pp = calloc(n ? n : 1, sizeof *pp);
    if (v && pp) {
        for (int pass = 0; pass < 2; pass++) /* running first, then finished; each newest first */
            for (job *jb = J->list; jb; jb = jb->next)
                if (!strcmp(jb->tenant, c->tenant) && jb->finished == (pass == 1)) {
                    job_to_pb(jb, &v[k]);
                    pp[k] = &v[k].m;
                    k++;
                }
        Dovetail__V1__ListJobsResponse r = DOVETAIL__V1__LIST_JOBS_RESPONSE__INIT;
        r.n_jobs = k;
        r.jobs = pp;
        dt_rpc_finish(c, &r.base);
    } else {
        dt_rpc_fail(c, TW_INTERNAL, DT_ENOMEM, NULL, "out of memory");
    }
    pthread_mutex_unlock(&J->mu);
    free(v);
    free(pp);
}

void dt_rpc_jobs_run(dt_call *c)
{
    dt_jobs *J = c->srv->jobs;
    if (!J) {
        dt_rpc_fail(c, TW_UNAVAILABLE, DT_EINTERNAL, NULL, "re-rank jobs are not available on this server");
        return;
    }
    if (c->method_index == DT_M_START_RERANK) {
        run_start(c, J);
        return;
    }
    if (c->method_index == DT_M_LIST_JOBS) {
        run_list(c, J);
        return;
    }
    const char *id = c->method_index == DT_M_GET_JOB ? ((const Dovetail__V1__GetJobRequest *)c->in)->id
                                                     : ((const Dovetail__V1__CancelJobRequest *)c->in)->id;
    pthread_mutex_lock(&J->mu);
    job *jb = find(J, c->tenant, id);
    if (!jb) {
        dt_rpc_fail(c, TW_NOT_FOUND, DT_ENOTFOUND, "id", "no job '%.80s' in tenant '%s' (finished jobs are kept until %zu newer ones of the tenant finished, or a restart)",
               id, c->tenant, c->srv->cfg.jobs_keep);
    } else {
        if (c->method_index == DT_M_CANCEL_JOB && !jb->finished && atomic_load(&jb->phase) < PH_PUBLISHING) {
            jb->cancel_requested = true;
            if (jb->rr) dt_rerank_cancel(jb->rr);
        }
        answer_job(c, jb);
    }
    pthread_mutex_unlock(&J->mu);
}
