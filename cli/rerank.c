/* rerank.c - `dovetail rerank`: the nightly re-rank of one tenant from record files.
 *
 * Loads records as `dovetail match` does and outcome events from JSON Lines, runs a re-rank job
 * (matcher/rerank.h) and writes every open record's list to a JSON Lines file and/or to Redis.
 * Neither output is ever visible half-written: the file is written under a temporary name and
 * renamed when complete; Redis lists are written under a job-specific prefix and published by
 * setting one pointer key last (docs/rerank.md). SIGINT or SIGTERM cancels the job cleanly: the
 * temporary file and the job's keys are removed, the published lists stay as they were.
 * What it is not: a client of the daemon (StartRerank is the RPC equivalent).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "outcome.h"
#include "rerank.h"
#include "rerank_out.h"
#include "topk.h"

#define MAX_FILES 64

static void rerank_usage(FILE *f)
{
    fprintf(f,
            "usage: dovetail rerank [FILES] [options] (--out FILE | --redis HOST:PORT)\n"
            "\n"
            "Re-ranks every open record of a tenant: each demand's top-k achievements and each\n"
            "achievement's top-k demands, with outcome feedback and an optional exposure cap.\n"
            "Records:\n"
            "  -a, --achievements FILE  achievements (rows without a 'side' are achievements); repeatable\n"
            "  -d, --demands FILE       demands; repeatable\n"
            "  FILE                     records whose rows each give their 'side'\n"
            "  --clusters FILE          region clusters, lines 'name<TAB>region_prefix'\n"
            "  --tenant T               tenant (default public); --strict refuses a file on a bad row\n"
            "  --dim N                  LSA dimension (default 256)\n"
            "Feedback:\n"
            "  --outcomes FILE          outcome events, JSON Lines: {\"demand_id\", \"achievement_id\",\n"
            "                           \"kind\", \"reason\", \"amount\", \"at\", \"tenant\"}; repeatable.\n"
            "                           Kinds: viewed, contacted, declined (reason: too_early_stage,\n"
            "                           unclear_benefit, price, other), meeting_held, negotiating,\n"
            "                           deal_signed (amount). Any bad line stops the run.\n"
            "  --engaged-boost X        added to pairs with a meeting, negotiation or deal (default 0.05)\n"
            "  --price-penalty X        for demands below the asking price of an achievement declined\n"
            "                           for price by --min-declines demands (default 0.1)\n"
            "  --stage-penalty X        for demands needing a higher TRL than an achievement declined as\n"
            "                           too early stage by --min-declines demands (default 0.1)\n"
            "  --min-declines N         distinct demands before an achievement is demoted (default 2)\n"
            "Lists:\n"
            "  -k N                     list length (default 10, at most 10000)\n"
            "  --side demand|achievement   only the lists of that side's records (default both)\n"
            "  --cap C                  no achievement in more than C demands' lists (best assignment)\n"
            "  --candidates L           candidates per demand under a cap (default max(5k, 50))\n"
            "  --weights D,L,S          score weights (default 0.7,0.3,0.1, adapted per record; given\n"
            "                           weights are used as they are)\n"
            "  --threads N              worker threads (default: one per CPU); --batch N records per\n"
            "                           GEMM (default 512)\n"
            "Output (at least one):\n"
            "  --out FILE               JSON Lines, one line per record: {\"tenant\", \"side\", \"id\",\n"
            "                           \"matches\": [{\"id\", \"score\"}, ...]}; written to FILE.tmp.PID and\n"
            "                           renamed when complete\n"
            "  --redis HOST:PORT        lists as JSON under dt:v1:rerank:T:job:JOB:SIDE:ID, published by\n"
            "                           setting dt:v1:rerank:T:current to JOB last; the previous job's\n"
            "                           keys are then removed\n"
            "  --job-id ID              the job's id (default: UTC time and process id)\n"
            "  -q, --quiet              no progress bar and no summary\n"
            "A progress bar (done/total, rate, ETA) is drawn on standard error when it is a terminal.\n"
            "SIGINT or SIGTERM cancels: nothing is published and the temporary outputs are removed.\n"
            "Exit status: 0 done, 1 bad input, 2 usage, 3 internal or output error, 130 cancelled.\n");
}

/* ---- signals ---- */

static volatile sig_atomic_t g_stop_signal; /* set by the handler, read by the monitor thread */

static void on_signal(int sig)
{
    g_stop_signal = sig;
}


/* ---- progress ---- */

typedef struct monitor {
    dt_rerank_job *job;
    bool draw;
    atomic_bool finished;
    bool cancelled_by_signal;
} monitor;

static void fmt_secs(double s, char *buf, size_t n)
{
    if (s < 0 || !isfinite(s)) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void draw(const dt_rerank_progress *p)
{
    char eta[32], el[32];
    fmt_secs(p->eta, eta, sizeof eta);
    fmt_secs(p->elapsed, el, sizeof el);
    if (p->state == DT_RERANK_BUILDING) {
        fprintf(stderr, "\r\033[Klearning the LSA basis ... %s", el);
    } else if (p->state == DT_RERANK_ASSIGNING) {
        fprintf(stderr, "\r\033[Kexposure cap: %llu/%llu demands assigned  %s", (unsigned long long)p->assign_done,
                (unsigned long long)p->assign_total, el);
    } else {
        const int width = 30;
        double f = p->total ? (double)p->done / (double)p->total : 0;
        int full = (int)(f * width);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < full ? '#' : '-';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K[%s] %5.1f%%  %llu/%llu  %.0f rec/s  ETA %s", bar, 100 * f,
                (unsigned long long)p->done, (unsigned long long)p->total, p->rate, eta);
    }
    fflush(stderr);
}

static void *monitor_run(void *arg)
{
    monitor *m = arg;
    int ticks = 0;
    while (!atomic_load(&m->finished)) {
        if (g_stop_signal && !m->cancelled_by_signal) {
            m->cancelled_by_signal = true;
            dt_rerank_cancel(m->job);
            if (m->draw) fprintf(stderr, "\r\033[Kcancelling ...");
        }
        if (m->draw && !m->cancelled_by_signal && ticks++ % 4 == 0) {
            dt_rerank_progress p;
            dt_rerank_get_progress(m->job, &p);
            draw(&p);
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (m->draw) fprintf(stderr, "\r\033[K");
    return NULL;
}

/* ---- the command ---- */

static int parse_number(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: expected a number in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_rerank(int argc, char **argv)
{
    enum { O_CLUSTERS = 256, O_TENANT, O_STRICT, O_DIM, O_OUTCOMES, O_BOOST, O_PPEN, O_SPEN, O_MIND, O_SIDE, O_CAP,
           O_CAND, O_WEIGHTS, O_THREADS, O_BATCH, O_OUT, O_REDIS, O_JOB };
    static const struct option opts[] = {
        {"achievements", required_argument, 0, 'a'}, {"demands", required_argument, 0, 'd'},
        {"clusters", required_argument, 0, O_CLUSTERS}, {"tenant", required_argument, 0, O_TENANT},
        {"strict", no_argument, 0, O_STRICT}, {"dim", required_argument, 0, O_DIM},
        {"outcomes", required_argument, 0, O_OUTCOMES}, {"engaged-boost", required_argument, 0, O_BOOST},
        {"price-penalty", required_argument, 0, O_PPEN}, {"stage-penalty", required_argument, 0, O_SPEN},
        {"min-declines", required_argument, 0, O_MIND}, {"side", required_argument, 0, O_SIDE},
        {"cap", required_argument, 0, O_CAP}, {"candidates", required_argument, 0, O_CAND},
        {"weights", required_argument, 0, O_WEIGHTS}, {"threads", required_argument, 0, O_THREADS},
        {"batch", required_argument, 0, O_BATCH}, {"out", required_argument, 0, O_OUT},
        {"redis", required_argument, 0, O_REDIS}, {"job-id", required_argument, 0, O_JOB},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *ach[MAX_FILES], *dem[MAX_FILES], *outc[MAX_FILES];
    size_t n_ach = 0, n_dem = 0, n_outc = 0;
    const char *clusters_file = NULL, *tenant = NULL, *out_path = NULL, *redis_addr = NULL, *job_id = NULL;
    bool strict = false, quiet = false;
    dt_engine_opts eo = dt_engine_opts_default();
    dt_rerank_opts ro;
    dt_rerank_opts_init(&ro);
    dt_weights w;
    double v;
    int c;
    while ((c = getopt_long(argc, argv, "a:d:k:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
        case 'd':
        case O_OUTCOMES: {
            const char **arr = c == 'a' ? ach : c == 'd' ? dem : outc;
            size_t *n = c == 'a' ? &n_ach : c == 'd' ? &n_dem : &n_outc;
            if (*n >= MAX_FILES) {
                fprintf(stderr, "at most %d files of each kind\n", MAX_FILES);
                return 2;
            }
            arr[(*n)++] = optarg;
            break;
        }
        case 'k':
            if (parse_number("-k", optarg, 1, 10000, &v)) return 2;
            ro.k = (size_t)v;
            break;
        case O_CLUSTERS: clusters_file = optarg; break;
        case O_TENANT: tenant = optarg; break;
        case O_STRICT: strict = true; break;
        case O_DIM:
            if (parse_number("--dim", optarg, 1, 4096, &v)) return 2;
            eo.dim = (size_t)v;
            break;
        case O_BOOST:
            if (parse_number("--engaged-boost", optarg, 0, 100, &v)) return 2;
            ro.policy.engaged_boost = (float)v;
            break;
        case O_PPEN:
            if (parse_number("--price-penalty", optarg, 0, 100, &v)) return 2;
            ro.policy.price_penalty = (float)v;
            break;
        case O_SPEN:
            if (parse_number("--stage-penalty", optarg, 0, 100, &v)) return 2;
            ro.policy.stage_penalty = (float)v;
            break;
        case O_MIND:
            if (parse_number("--min-declines", optarg, 1, 1e9, &v)) return 2;
            ro.policy.min_declines = (uint32_t)v;
            break;
        case O_SIDE: {
            dt_side s;
            dt_err err = DT_ERR_INIT;
            if (dt_side_parse(optarg, &s, "--side", &err) < 0) {
                fprintf(stderr, "--side: %s\n", err.msg);
                return 2;
            }
            ro.demands = s == DT_DEMAND;
            ro.achievements = s == DT_ACHIEVEMENT;
            break;
        }
        case O_CAP:
            if (parse_number("--cap", optarg, 1, 1e9, &v)) return 2;
            ro.cap = (size_t)v;
            break;
        case O_CAND:
            if (parse_number("--candidates", optarg, 1, 10000, &v)) return 2;
            ro.candidates = (size_t)v;
            break;
        case O_WEIGHTS:
            if (cli_parse_weights(optarg, &w)) return 2;
            ro.weights = &w;
            break;
        case O_THREADS:
            if (parse_number("--threads", optarg, 1, 1024, &v)) return 2;
            ro.threads = (int)v;
            break;
        case O_BATCH:
            if (parse_number("--batch", optarg, 1, 100000, &v)) return 2;
            ro.batch = (size_t)v;
            break;
        case O_OUT: out_path = optarg; break;
        case O_REDIS: redis_addr = optarg; break;
        case O_JOB: job_id = optarg; break;
        case 'q': quiet = true; break;
        case 'h': rerank_usage(stdout); return 0;
        default: rerank_usage(stderr); return 2;
        }
    }
    if (n_ach + n_dem == 0 && optind >= argc) {
        fprintf(stderr, "dovetail rerank: no record files given (see --help)\n");
        return 2;
    }
    if (!out_path && !redis_addr) {
        fprintf(stderr, "dovetail rerank: give --out FILE and/or --redis HOST:PORT (see --help)\n");
        return 2;
    }
    if (ro.candidates && !ro.cap) {
        fprintf(stderr, "dovetail rerank: --candidates only applies with --cap\n");
        return 2;
    }
    if (ro.cap && ro.candidates && ro.candidates < ro.k) {
        fprintf(stderr, "dovetail rerank: --candidates (%zu) must be at least -k (%zu)\n", ro.candidates, ro.k);
        return 2;
    }
    char jid[DT_RERANK_JOB_ID_MAX + 1];
    if (job_id) {
        if (!dt_rerank_job_id_valid(job_id)) {
            fprintf(stderr, "--job-id: 1..%d characters of letters, digits, '-', '_' and '.'\n", DT_RERANK_JOB_ID_MAX);
            return 2;
        }
        snprintf(jid, sizeof jid, "%s", job_id);
    } else {
        dt_rerank_job_id_make(jid, sizeof jid, 0);
    }

    dt_topk_blas_single();
    /* dt_search allocates per-query scratch for every batch: keep freed memory in the process
     * rather than page-faulting fresh zeroed pages in again (several times faster at 100k records) */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    eo.threads = 1; /* the job's workers provide the parallelism */
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    dt_outcome_store *store = dt_outcome_store_new(&err);
    if (!e || !store) {
        fprintf(stderr, "dovetail: %s\n", err.msg);
        dt_engine_free(e);
        dt_outcome_store_free(store);
        return 3;
    }
    /* no build here: the job re-learns the bases itself before ranking */
    int status = cli_load_all(e, clusters_file, ach, n_ach, dem, n_dem, argv + optind, (size_t)(argc - optind), tenant,
                              strict, quiet, false);
    size_t n_events = 0;
    for (size_t i = 0; status == 0 && i < n_outc; i++) {
        long bad = cli_load_outcomes(store, NULL, outc[i], tenant, &n_events);
        if (bad != 0) {
            if (bad > 0) fprintf(stderr, "%s: fix the bad lines above: a dropped decline would be recommended again\n", outc[i]);
            status = 1;
        }
    }
    if (status == 0 && !quiet && n_outc) fprintf(stderr, "%zu outcome events loaded\n", n_events);

    const char *tenant_name = tenant && *tenant ? tenant : "public";
    dt_rerank_out *out = NULL;
    if (status == 0) {
        dt_rerank_out_opts oo = {tenant_name, jid, out_path, redis_addr, 5000, 30000, "--out", "--redis"};
        if (!(out = dt_rerank_out_open(&oo, &err))) {
            fprintf(stderr, "dovetail rerank: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
            status = err.code == DT_EEXIST || err.code == DT_EINVAL ? 2 : 3;
        }
    }
    if (status) {
        dt_outcome_store_free(store);
        dt_engine_free(e);
        return status;
    }

    ro.tenant = tenant_name;
    ro.outcomes = n_outc ? store : NULL;
    ro.emit = dt_rerank_out_emit;
    ro.emit_ud = out;
    dt_rerank_job *job = dt_rerank_new(e, &ro, &err);
    if (!job) {
        fprintf(stderr, "dovetail rerank: %s: %s\n", err.field, err.msg);
        dt_rerank_out_abandon(out);
        dt_rerank_out_free(out);
        dt_outcome_store_free(store);
        dt_engine_free(e);
        return 2;
    }
    if (redis_addr) signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second signal ends the process the usual way */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    monitor mon = {job, !quiet && cli_tty(), false, false};
    atomic_init(&mon.finished, false);
    pthread_t mt;
    bool have_monitor = pthread_create(&mt, NULL, monitor_run, &mon) == 0;
    if (!have_monitor) fprintf(stderr, "dovetail rerank: no progress thread; SIGINT will end the process\n");

    int rc = dt_rerank_run(job, &err);
    if (rc == 0 && g_stop_signal) rc = DT_RERANK_INTERRUPTED; /* nothing is published after a signal */
    dt_rerank_out_summary sum;
    if (rc == 0 && dt_rerank_out_commit(out, ro.k, ro.cap, &sum, &err) < 0) rc = -err.code;
    atomic_store(&mon.finished, true);
    if (have_monitor) pthread_join(mt, NULL);

    dt_rerank_progress p;
    dt_rerank_get_progress(job, &p);
    if (rc == 0) {
        status = 0;
        if (redis_addr && sum.removed < 0) fprintf(stderr, "dovetail rerank: could not remove the keys of earlier jobs\n");
        if (!quiet) {
            fprintf(stderr, "re-ranked %llu demands and %llu achievements of tenant '%s' in %.1f s (%.0f records/s)",
                    (unsigned long long)dt_rerank_out_lists(out, DT_DEMAND),
                    (unsigned long long)dt_rerank_out_lists(out, DT_ACHIEVEMENT), tenant_name,
                    p.elapsed, p.elapsed > 0 ? (double)p.total / p.elapsed : 0.0);
            if (out_path) fprintf(stderr, "; wrote %s", out_path);
            if (redis_addr) fprintf(stderr, "; published job %s", jid);
            fprintf(stderr, "\n");
            if (redis_addr && sum.removed > 0)
                fprintf(stderr, "removed %ld keys of earlier jobs (the previous current job: %s)\n", sum.removed,
                        sum.previous[0] ? sum.previous : "none");
            if (p.uncertain)
                fprintf(stderr, "note: %llu lists are exact only among their best 10000 candidates (see docs/rerank.md)\n",
                        (unsigned long long)p.uncertain);
        }
    } else {
        dt_rerank_out_abandon(out);
        if (rc == DT_RERANK_INTERRUPTED) {
            fprintf(stderr, "dovetail rerank: cancelled after %llu of %llu records; nothing was published\n",
                    (unsigned long long)p.done, (unsigned long long)p.total);
            status = 130;
        } else {
            fprintf(stderr, "dovetail rerank: %s%s%s; nothing was published\n", err.field, err.field[0] ? ": " : "",
                    err.msg);
            status = err.code == DT_EINVAL || err.code == DT_ENOTFOUND ? 1 : 3;
        }
    }
    dt_rerank_out_free(out);
    dt_rerank_free(job);
    dt_outcome_store_free(store);
    dt_engine_free(e);
    return status;
}
