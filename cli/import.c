/* import.c - `dovetail import`: loads record files and outcome events into a daemon's data
 * directory, offline.
 *
 * Opens the directory as dovetaild does (newest valid snapshot + journal), upserts the files'
 * records, adds the outcome events (whose ids must name stored records, as RecordOutcome requires),
 * re-learns the bases that are due, and writes a snapshot, so the next dovetaild started on the
 * directory serves them. The directory lock refuses a directory a running daemon holds.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "durable.h"
#include "ingest.h"

static void import_usage(FILE *f)
{
    fprintf(f, "usage: dovetail import --data-dir DIR [-a FILE] [-d FILE] [FILE...] [--outcomes FILE] [--tenant T]\n"
               "                       [--strict]\n"
               "\n"
               "Adds the records of CSV / JSON Lines files, and outcome events, to the durable state in DIR\n"
               "(the directory dovetaild --data-dir uses), offline: stop the daemon first. Existing records\n"
               "with the same (tenant, side, id) are replaced. Bad rows and lines are reported as\n"
               "FILE:LINE: FIELD: REASON.\n"
               "  -a, --achievements FILE   rows without a 'side' are achievements (repeatable)\n"
               "  -d, --demands FILE        rows without a 'side' are demands (repeatable)\n"
               "  FILE                      rows give their 'side'\n"
               "  --outcomes FILE           outcome events, JSON Lines as `dovetail rerank` reads them\n"
               "                            ({\"demand_id\", \"achievement_id\", \"kind\", \"reason\", \"amount\",\n"
               "                            \"at\", \"tenant\"}); their ids must name records stored in DIR or\n"
               "                            imported now. Any bad line stores nothing at all. Repeatable.\n"
               "  --tenant T                tenant of rows and events that do not name one (default public)\n"
               "  --strict                  refuse a file on its first bad row (nothing of it is stored)\n"
               "  --dim N                   LSA dimension for tenants learned now (default 256)\n");
}

int cmd_import(int argc, char **argv)
{
    enum { O_DIR = 256, O_TENANT, O_STRICT, O_DIM, O_OUTCOMES };
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, O_DIR},    {"achievements", required_argument, 0, 'a'},
        {"demands", required_argument, 0, 'd'},       {"tenant", required_argument, 0, O_TENANT},
        {"strict", no_argument, 0, O_STRICT},         {"dim", required_argument, 0, O_DIM},
        {"outcomes", required_argument, 0, O_OUTCOMES},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *dir = NULL, *tenant = NULL, *files[64], *outcomes[64];
    int sides[64];
    size_t nf = 0, no = 0;
    bool strict = false;
    dt_engine_opts eo = dt_engine_opts_default();
    int c;
    while ((c = getopt_long(argc, argv, "a:d:h", opts, NULL)) != -1) {
        switch (c) {
        case O_DIR: dir = optarg; break;
        case 'a':
        case 'd':
            if (nf == 64) {
                fprintf(stderr, "dovetail import: at most 64 files\n");
                return 2;
            }
            sides[nf] = c == 'a' ? DT_ACHIEVEMENT : DT_DEMAND;
            files[nf++] = optarg;
            break;
        case O_OUTCOMES:
            if (no == 64) {
                fprintf(stderr, "dovetail import: at most 64 outcome files\n");
                return 2;
            }
            outcomes[no++] = optarg;
            break;
        case O_TENANT: tenant = optarg; break;
        case O_STRICT: strict = true; break;
        case O_DIM: eo.dim = (size_t)strtoul(optarg, NULL, 10); break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return 2;
        }
    }
    for (int i = optind; i < argc && nf < 64; i++) sides[nf] = -1, files[nf++] = argv[i];
    if (!dir || nf + no == 0) {
        import_usage(stderr);
        return 2;
    }
    if (eo.dim < 1 || eo.dim > DT_DIM_MAX) {
        fprintf(stderr, "--dim: expected 1..%d\n", DT_DIM_MAX);
        return 2;
    }
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(&eo, &err);
    dt_outcome_store *os = e ? dt_outcome_store_new(&err) : NULL;
    if (!os) {
        fprintf(stderr, "dovetail import: %s\n", err.msg);
        dt_engine_free(e);
        return 3;
    }
    pthread_rwlock_t lock;
    pthread_rwlock_init(&lock, NULL);
    dt_durable_opts o = {dir, DT_FSYNC_ALWAYS, (size_t)1 << 62, false, NULL, NULL, NULL};
    dt_durable *d = dt_durable_open(e, os, &lock, &o, &err);
    int status = 0;
    if (!d) {
        fprintf(stderr, "dovetail import: --data-dir %s: %s%s%s\n", dir, err.field, err.field[0] ? ": " : "", err.msg);
        status = 1;
    }
    size_t total = 0;
    for (size_t i = 0; status == 0 && i < nf; i++) {
        size_t loaded = 0;
        if (dt_ingest_file(e, files[i], sides[i], tenant, strict, stderr, 20, &loaded, NULL) < 0) status = 1;
        total += loaded;
    }
    size_t events = 0;
    for (size_t i = 0; status == 0 && i < no; i++) {
        long bad = cli_load_outcomes(os, e, outcomes[i], tenant, &events);
        if (bad != 0) {
            if (bad > 0) fprintf(stderr, "%s: fix the bad lines above; nothing was imported\n", outcomes[i]);
            status = 1;
        }
    }
    size_t nt;
    const char *const *names = dt_engine_tenants(e, &nt);
    for (size_t i = 0; status == 0 && i < nt; i++)
        if (dt_engine_needs_build(e, names[i]) && dt_engine_build(e, names[i], &err) < 0) {
            fprintf(stderr, "dovetail import: building the dense index of tenant %s: %s\n", names[i], err.msg);
            status = 3;
        }
    /* nothing reaches the directory unless every file loaded: the snapshot is the only write */
    if (status == 0 && dt_durable_snapshot(d, &err) < 0) status = 3;
    if (status == 0)
        fprintf(stderr, "dovetail import: %zu records and %zu outcome events added to %s\n", total, events, dir);
    dt_durable_close(d, false);
    pthread_rwlock_destroy(&lock);
    dt_outcome_store_free(os);
    dt_engine_free(e);
    return status;
}
