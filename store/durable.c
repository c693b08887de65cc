/* durable.c - snapshot + journal for dovetaild (see durable.h and docs/durability.md).
 *
 * Journal payloads (codec.h encoding):
 *   DT_J_UPSERT  u32 count, then count records (each carries its tenant and side)
 *   DT_J_DELETE  str tenant, u8 side, u32 count, count str ids
 *   DT_J_BUILD   str tenant: a re-learn of the tenant's LSA basis starts here, from the records
 *                stored at this point (replay re-learns it here, from the same records in the same
 *                order, which gives the same basis; the live daemon swaps it in later and projects
 *                the records written meanwhile on it, as their replayed upserts do)
 *   DT_J_OUTCOMES str tenant, u32 count, count outcome events (one RecordOutcome call)
 * Snapshot sections:
 *   DT_S_BASIS   str tenant, u64 built_docs, u64 n_terms, u64 dim, n_terms u32 terms, n_terms f32
 *                idf, n_terms*dim f32 proj, dim f32 sigma (always before the tenant's records)
 *   DT_S_RECORDS u32 count, then count records (written by older versions; still read)
 *   DT_S_INDEXED u64 terms fingerprint (dt_engine_terms_fingerprint), u32 count, then count x
 *                (record, u32 token count, u32 n, n x (u32 term, f32 tf), u32 dim, dim x f32 dense
 *                row): what the index holds, so a restart neither tokenizes nor projects (an engine
 *                with another fingerprint re-tokenizes the records instead)
 *   DT_S_OUTCOMES str tenant, u32 count, count outcome events: a tenant's events in arrival order,
 *                split over as many sections as needed (replaying them through dt_outcome_add
 *                rebuilds the same store)
 *   DT_S_SERVED  str tenant, u32 count, count x (u8 side, str id, u64 matches served); after every
 *                DT_S_OUTCOMES section
 *   DT_S_EPOCHS  u32 count, count x (str tenant, u64 index epoch): after every tenant's records,
 *                so a restart continues each tenant's epoch where it was (older snapshots have none)
 */
#include "durable.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "codec.h"
#include "snapshot.h"

#define RECORDS_PER_SECTION 1000
#define OUTCOMES_PER_SECTION 4096
#define MAX_IDS (10u * 1000 * 1000)
/* the smallest encodings: an outcome event (version, kind, reason, two 1-byte ids, amount, at) and
 * a served counter (side, a 1-byte id, count); counts are checked against them before reading */
#define MIN_OUTCOME_BYTES (3 + 5 + 5 + 8 + 8)
#define MIN_SERVED_BYTES (1 + 5 + 8)

struct dt_durable {
    dt_durable_opts o;
    char dir[4096];
    dt_engine *e;
    dt_outcome_store *os;
    pthread_rwlock_t *lock;
    dt_journal *j;
    int lock_fd;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    uint64_t bytes_at_snapshot; /* journal bytes appended when the last snapshot started */
    pthread_mutex_t snap_mu;    /* one snapshot at a time */
    unsigned holds;             /* dt_durable_hold_snapshots, guarded by o.commit */
    bool serialising;           /* a snapshot writes a frozen state without the commit mutex (mu) */
    pthread_cond_t serialised;  /* signalled (mu) when serialising drops */
    /* NULL, or called while a snapshot serialises without the commit mutex (tests pause it here) */
    void (*during_serialise)(void *ud);
    void *during_serialise_ud;
    uint64_t snapshots, snapshot_failures, last_snapshot_seq;
    double last_snapshot_seconds;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void logf_(const dt_durable *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const dt_durable *d, const char *fmt, ...)
{
    if (d->o.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dovetaild: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- applying entries and sections (start-up) ---- */

/* Restates err with a prefix before its message, keeping its field; code replaces its code. */
static int err_prefix(dt_err *err, int code, const char *prefix)
{
    char field[sizeof err->field], msg[sizeof err->msg];
    snprintf(field, sizeof field, "%s", err->field);
    snprintf(msg, sizeof msg, "%s", err->msg);
    return dt_err_set(err, code, field, "%s%s", prefix, msg);
}

/* What entries and sections are applied to. Without dense, LSA bases and re-learn markers are
 * skipped (a read-only load for statistics). */
typedef struct apply_ctx {
    dt_engine *e;
    dt_outcome_store *os;
    bool dense;
    bool quiet;       /* no warnings on stderr */
    uint64_t skipped; /* journal entries of refused requests (written by older versions) */
} apply_ctx;

/* str tenant, u32 count, count events, each added to the store. */
static int apply_outcomes(dt_outcome_store *os, dt_codec_reader *rd, const char *what, dt_err *err)
{
    char *tenant = NULL;
    uint32_t n = 0;
    int rc = dt_codec_get_str(rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_count(rd, &n, MAX_IDS, MIN_OUTCOME_BYTES, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        dt_outcome_event ev;
        rc = dt_codec_get_outcome(rd, &ev, err);
        if (rc) {
            char m[200];
            snprintf(m, sizeof m, "%s: %s: ", what, err->field);
            rc = err_prefix(err, err->code, m);
            break;
        }
        ev.tenant = tenant;
        rc = dt_outcome_add(os, &ev, err);
        if (rc) {
            char m[200];
            snprintf(m, sizeof m, "%s: stored outcome %u of tenant '%s' refused: %s: ", what, i,
                     tenant ? tenant : "public", err->field);
            rc = err_prefix(err, rc == -DT_ENOMEM ? DT_ENOMEM : DT_ECORRUPT, m);
        }
        dt_codec_outcome_fini(&ev);
    }
    free(tenant);
    return rc ? rc : dt_codec_reader_end(rd, what, err);
}

/* str tenant, u32 count, count x (u8 side, str id, u64 served). */
static int apply_served(dt_outcome_store *os, dt_codec_reader *rd, const char *what, dt_err *err)
{
    char *tenant = NULL;
    uint32_t n = 0;
    int rc = dt_codec_get_str(rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_count(rd, &n, MAX_IDS, MIN_SERVED_BYTES, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint8_t side = 0;
        char *id = NULL;
        uint64_t served = 0;
        rc = dt_codec_get_u8(rd, &side, "side", err);
        if (!rc && side > 1) rc = dt_err_set(err, DT_ECORRUPT, "side", "%s: bad side %u", what, side);
        if (!rc) rc = dt_codec_get_str(rd, &id, DT_ID_MAX, "id", err);
        if (!rc) rc = dt_codec_get_u64(rd, &served, "served", err);
        if (!rc && (rc = dt_outcome_note_served(os, tenant, (dt_side)side, id, served, err)) != 0) {
            char m[200];
            snprintf(m, sizeof m, "%s: served count %u of tenant '%s' refused: %s: ", what, i,
                     tenant ? tenant : "public", err->field);
            rc = err_prefix(err, rc == -DT_ENOMEM ? DT_ENOMEM : DT_ECORRUPT, m);
        }
        free(id);
    }
    free(tenant);
    return rc ? rc : dt_codec_reader_end(rd, what, err);
}

static int apply_records(dt_engine *e, dt_codec_reader *rd, const char *what, dt_err *err)
{
    uint32_t n;
    int rc = dt_codec_get_count(rd, &n, MAX_IDS, 8, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        dt_record r;
        rc = dt_codec_get_record(rd, &r, err);
        if (rc) break;
        rc = dt_engine_upsert(e, &r, err);
        if (rc) {
            char m[200];
            snprintf(m, sizeof m, "%s: stored record '%.128s' refused: ", what, r.id ? r.id : "");
            rc = err_prefix(err, DT_ECORRUPT, m);
        }
        dt_record_free(&r);
    }
    return rc ? rc : dt_codec_reader_end(rd, what, err);
}

/* A journal's upsert entry: all of its records, or - when the engine refuses one of them - none.
 * Requests are checked whole before they are journaled, so an acknowledged entry always applies;
 * an entry the engine refuses was written by an older Dovetail that journaled before checking and
 * answered the request with an error: it is skipped, as the request promised. */
static int apply_upsert_entry(apply_ctx *ax, dt_codec_reader *rd, const char *what, dt_err *err)
{
    uint32_t n;
    int rc = dt_codec_get_count(rd, &n, MAX_IDS, 8, "count", err);
    if (rc) return rc;
    dt_record *recs = calloc(n ? n : 1, sizeof *recs);
    dt_record **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
    if (!recs || !ptrs) {
        free(recs);
        free(ptrs);
        return dt_err_set(err, DT_ENOMEM, NULL, "%s: out of memory", what);
    }
    uint32_t total = n;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = dt_codec_get_record(rd, &recs[i], err);
        ptrs[i] = &recs[i];
    }
    if (!rc) rc = dt_codec_reader_end(rd, what, err);
    size_t bad = 0;
    dt_err why = DT_ERR_INIT;
    if (!rc && dt_engine_check_stored(ax->e, ptrs, n, &bad, &why) < 0) {
        if (why.code == DT_ENOMEM) {
            *err = why;
            rc = -DT_ENOMEM;
        } else {
            ax->skipped++;
            if (!ax->quiet)
                fprintf(stderr,
                        "dovetaild: %s skipped: its record %zu ('%.128s') is refused (%s: %s), so the request "
                        "was answered with an error and stored nothing\n",
                        what, bad, recs[bad].id ? recs[bad].id : "", why.field, why.msg);
            n = 0;
        }
    }
    for (uint32_t i = 0; !rc && i < n; i++)
        if ((rc = dt_engine_upsert(ax->e, &recs[i], err)) != 0) {
            char m[200];
            snprintf(m, sizeof m, "%s: stored record '%.128s' refused: ", what, recs[i].id ? recs[i].id : "");
            rc = err_prefix(err, rc == -DT_ENOMEM ? DT_ENOMEM : DT_ECORRUPT, m);
        }
    for (uint32_t i = 0; i < total; i++) dt_record_free(&recs[i]);
    free(recs);
    free(ptrs);
    return rc;
}

/* A DT_S_INDEXED section. Rows are used only with the bases (dense); terms only when the
 * fingerprint matches this engine's tokenizer. */
static int apply_indexed(const apply_ctx *ax, dt_codec_reader *rd, dt_err *err)
{
    const char *what = "snapshot records";
    uint64_t fp;
    uint32_t n;
    int rc = dt_codec_get_u64(rd, &fp, "fingerprint", err);
    if (!rc) rc = dt_codec_get_count(rd, &n, MAX_IDS, 20, "count", err);
    bool same = fp == dt_engine_terms_fingerprint(ax->e);
    dt_tf *terms = NULL;
    float *row = NULL;
    size_t terms_cap = 0, row_cap = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        dt_record r;
        uint32_t doc_len = 0, nt = 0, dim = 0;
        rc = dt_codec_get_record(rd, &r, err);
        if (rc) break;
        if (!rc) rc = dt_codec_get_u32(rd, &doc_len, "doc_len", err);
        if (!rc) rc = dt_codec_get_count(rd, &nt, 1u << 24, 8, "terms", err);
        if (!rc && nt > terms_cap) {
            dt_tf *v = realloc(terms, nt * sizeof *v);
            if (!v) rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory loading a snapshot");
            else terms = v, terms_cap = nt;
        }
        for (uint32_t k = 0; !rc && k < nt; k++) {
            rc = dt_codec_get_u32(rd, &terms[k].term, "term", err);
            if (!rc) rc = dt_codec_get_f32(rd, &terms[k].tf, "tf", err);
        }
        if (!rc) rc = dt_codec_get_count(rd, &dim, DT_DIM_MAX, 4, "dim", err);
        if (!rc && dim > row_cap) {
            float *v = realloc(row, dim * sizeof *v);
            if (!v) rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory loading a snapshot");
            else row = v, row_cap = dim;
        }
        if (!rc) rc = dt_codec_get_f32s(rd, row, dim, "row", err);
        if (rc && rc != -DT_ENOMEM) { /* name the record whose bytes are bad */
            char m[200];
            snprintf(m, sizeof m, "%s: record %u ('%.128s'): %s: ", what, i, r.id ? r.id : "", err->field);
            rc = err_prefix(err, DT_ECORRUPT, m);
        }
        if (!rc) {
            if (same)
                rc = dt_engine_restore(ax->e, &r, terms, nt, doc_len, ax->dense ? row : NULL, ax->dense ? dim : 0, err);
            else
                rc = dt_engine_upsert(ax->e, &r, err);
            if (rc) {
                char m[200];
                snprintf(m, sizeof m, "%s: stored record '%.128s' refused: ", what, r.id ? r.id : "");
                rc = err_prefix(err, rc == -DT_ENOMEM ? DT_ENOMEM : DT_ECORRUPT, m);
            }
        }
        dt_record_free(&r);
    }
    free(terms);
    free(row);
    return rc ? rc : dt_codec_reader_end(rd, what, err);
}

static int apply_entry(void *ud, uint8_t type, const uint8_t *p, size_t len, uint64_t seq, dt_err *err)
{
    apply_ctx *ax = ud;
    dt_engine *e = ax->e;
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char what[64];
    snprintf(what, sizeof what, "journal entry %llu", (unsigned long long)seq);
    switch (type) {
    case DT_J_UPSERT: return apply_upsert_entry(ax, &rd, what, err);
    case DT_J_DELETE: {
        char *tenant = NULL;
        uint8_t side;
        uint32_t n;
        int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
        if (!rc) rc = dt_codec_get_u8(&rd, &side, "side", err);
        if (!rc && side > 1) rc = dt_err_set(err, DT_ECORRUPT, "side", "%s: bad side %u", what, side);
        if (!rc) rc = dt_codec_get_count(&rd, &n, MAX_IDS, 4, "count", err);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            char *id = NULL;
            rc = dt_codec_get_str(&rd, &id, DT_ID_MAX, "id", err);
            if (!rc) dt_engine_delete(e, tenant, (dt_side)side, id, NULL); /* gone already is fine */
            free(id);
        }
        free(tenant);
        return rc ? rc : dt_codec_reader_end(&rd, what, err);
    }
    case DT_J_BUILD: {
        char *tenant = NULL;
        int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
        if (!rc) rc = dt_codec_reader_end(&rd, what, err);
        if (!rc && ax->dense && dt_engine_build(e, tenant, err) < 0 && err->code != DT_ENOTFOUND) rc = -err->code;
        free(tenant);
        return rc;
    }
    case DT_J_OUTCOMES: return apply_outcomes(ax->os, &rd, what, err);
    }
    return dt_err_set(err, DT_ECORRUPT, NULL, "%s: unknown entry type %u", what, type);
}

/* u32 count, count x (str tenant, u64 epoch). */
static int apply_epochs(dt_engine *e, dt_codec_reader *rd, dt_err *err)
{
    uint32_t n = 0;
    int rc = dt_codec_get_count(rd, &n, MAX_IDS, 9, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        char *tenant = NULL;
        uint64_t epoch = 0;
        rc = dt_codec_get_str(rd, &tenant, DT_TENANT_MAX, "tenant", err);
        if (!rc) rc = dt_codec_get_u64(rd, &epoch, "epoch", err);
        if (!rc) rc = dt_engine_set_epoch(e, tenant, epoch, err);
        free(tenant);
    }
    if (rc && rc != -DT_ENOMEM) {
        char m[96];
        snprintf(m, sizeof m, "snapshot epochs: %s: ", err->field);
        rc = err_prefix(err, DT_ECORRUPT, m);
    }
    return rc ? rc : dt_codec_reader_end(rd, "snapshot epochs", err);
}

static int apply_section(void *ud, uint8_t type, const uint8_t *p, size_t len, dt_err *err)
{
    const apply_ctx *ax = ud;
    dt_engine *e = ax->e;
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    if (type == DT_S_RECORDS) return apply_records(e, &rd, "snapshot records", err);
    if (type == DT_S_INDEXED) return apply_indexed(ax, &rd, err);
    if (type == DT_S_OUTCOMES) return apply_outcomes(ax->os, &rd, "snapshot outcomes", err);
    if (type == DT_S_SERVED) return apply_served(ax->os, &rd, "snapshot served counts", err);
    if (type == DT_S_EPOCHS) return apply_epochs(e, &rd, err);
    if (type != DT_S_BASIS) return dt_err_set(err, DT_ECORRUPT, NULL, "snapshot: unknown section type %u", type);
    if (!ax->dense) return 0;
    char *tenant = NULL;
    uint64_t built, nt, dim;
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &built, "built_docs", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &nt, "n_terms", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &dim, "dim", err);
    if (!rc && (nt == 0 || dim == 0 || dim > DT_DIM_MAX || nt > (1u << 24) ||
                (nt * (dim + 2) + dim) * 4 > dt_codec_reader_left(&rd)))
        rc = dt_err_set(err, DT_ECORRUPT, "basis", "snapshot basis of '%s': sizes %llu x %llu do not fit the section",
                        tenant ? tenant : "", (unsigned long long)nt, (unsigned long long)dim);
    uint32_t *terms = NULL;
    float *idf = NULL, *proj = NULL, *sigma = NULL;
    if (!rc) {
        terms = malloc(nt * sizeof *terms);
        idf = malloc(nt * sizeof *idf);
        proj = malloc(nt * dim * sizeof *proj);
        sigma = malloc(dim * sizeof *sigma);
        if (!terms || !idf || !proj || !sigma) rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory loading a basis");
    }
    for (uint64_t i = 0; !rc && i < nt; i++) rc = dt_codec_get_u32(&rd, &terms[i], "terms", err);
    if (!rc) rc = dt_codec_get_f32s(&rd, idf, nt, "idf", err);
    if (!rc) rc = dt_codec_get_f32s(&rd, proj, nt * dim, "proj", err);
    if (!rc) rc = dt_codec_get_f32s(&rd, sigma, dim, "sigma", err);
    if (!rc) rc = dt_codec_reader_end(&rd, "snapshot basis", err);
    if (!rc) {
        dt_engine_basis b = {(size_t)built, (size_t)nt, (size_t)dim, terms, idf, proj, sigma};
        rc = dt_engine_set_basis(e, tenant, &b, err);
    }
    free(tenant);
    free(terms);
    free(idf);
    free(proj);
    free(sigma);
    return rc;
}

/* ---- encoding ---- */

int dt_durable_encode_upsert(dt_record *const *recs, size_t n, uint8_t **payload, size_t *len, dt_err *err)
{
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        if (dt_codec_put_record(&b, recs[i], err) < 0) {
            dt_codec_buf_fini(&b);
            return -err->code;
        }
    return dt_codec_buf_take(&b, payload, len, err);
}

int dt_durable_encode_outcomes(const char *tenant, const dt_outcome_event *evs, size_t n, uint8_t **payload,
                               size_t *len, dt_err *err)
{
    *payload = NULL;
    *len = 0;
    if (n > MAX_IDS)
        return dt_err_set(err, DT_ELIMIT, "outcomes", "%zu events in one entry; the limit is %u", n, MAX_IDS);
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_str(&b, tenant && *tenant ? tenant : "public");
    dt_codec_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        if (dt_codec_put_outcome(&b, &evs[i], err) < 0) {
            dt_codec_buf_fini(&b);
            return -err->code;
        }
    return dt_codec_buf_take(&b, payload, len, err);
}

int dt_durable_append(dt_durable *d, uint8_t type, const uint8_t *payload, size_t len, uint64_t *seq, dt_err *err)
{
    int rc = dt_journal_append(d->j, type, payload, len, seq, err);
    pthread_mutex_lock(&d->mu);
    pthread_cond_signal(&d->cv); /* the snapshot thread checks the journal's growth */
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int dt_durable_encode_delete(const char *tenant, dt_side side, char *const *ids, size_t n, uint8_t **payload,
                             size_t *len, dt_err *err)
{
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_str(&b, tenant);
    dt_codec_put_u8(&b, (uint8_t)side);
    dt_codec_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) dt_codec_put_str(&b, ids[i]);
    return dt_codec_buf_take(&b, payload, len, err);
}

int dt_durable_log_build(dt_durable *d, const char *tenant, uint64_t *seq, dt_err *err)
{
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_str(&b, tenant);
    uint8_t *p;
    size_t len;
    int rc = dt_codec_buf_take(&b, &p, &len, err);
    if (rc) return rc;
    rc = dt_durable_append(d, DT_J_BUILD, p, len, seq, err);
    free(p);
    return rc;
}

int dt_durable_sync(dt_durable *d, uint64_t seq, dt_err *err)
{
    return dt_journal_sync(d->j, seq, err);
}

/* ---- snapshots ---- */

static int put_basis(dt_snapshot_writer *w, const char *tenant, const dt_engine_basis *bs, dt_err *err)
{
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_str(&b, tenant);
    dt_codec_put_u64(&b, bs->built_docs);
    dt_codec_put_u64(&b, bs->n_terms);
    dt_codec_put_u64(&b, bs->dim);
    for (size_t i = 0; i < bs->n_terms; i++) dt_codec_put_u32(&b, bs->terms[i]);
    dt_codec_put_f32s(&b, bs->idf, bs->n_terms);
    dt_codec_put_f32s(&b, bs->proj, bs->n_terms * bs->dim);
    dt_codec_put_f32s(&b, bs->sigma, bs->dim);
    int rc = dt_codec_buf_check(&b, err);
    if (!rc) rc = dt_snapshot_put(w, DT_S_BASIS, b.data, b.len, err);
    dt_codec_buf_fini(&b);
    return rc;
}

/* Where sections go: straight into the snapshot, or held in memory (sections copied with the
 * commit mutex held, written after the records that are serialised without it). */
typedef struct held_section {
    uint8_t type;
    uint8_t *data;
    size_t len;
} held_section;

typedef struct section_sink {
    dt_snapshot_writer *w;
    bool hold;
    held_section *held;
    size_t n, cap;
} section_sink;

static int sink_put(section_sink *k, uint8_t type, const uint8_t *data, size_t len, dt_err *err)
{
    if (!k->hold) return dt_snapshot_put(k->w, type, data, len, err);
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 16;
        held_section *h = realloc(k->held, nc * sizeof *h);
        if (!h) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory holding snapshot sections");
        k->held = h;
        k->cap = nc;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory holding snapshot sections");
    memcpy(copy, data, len);
    k->held[k->n++] = (held_section){type, copy, len};
    return 0;
}

/* Writes the held sections, in the order they came, into w; frees them either way. */
static int sink_release(section_sink *k, dt_snapshot_writer *w, int rc, dt_err *err)
{
    for (size_t i = 0; i < k->n; i++) {
        if (!rc && w) rc = dt_snapshot_put(w, k->held[i].type, k->held[i].data, k->held[i].len, err);
        free(k->held[i].data);
    }
    free(k->held);
    k->held = NULL;
    k->n = k->cap = 0;
    return rc;
}

/* Sections of one tenant's outcome events or served counts, OUTCOMES_PER_SECTION entries each:
 * str tenant, u32 count (patched when the section is full), the entries. */
typedef struct section_out {
    section_sink *k;
    uint8_t type;
    const char *tenant;
    dt_codec_buf b;
    size_t count_at;
    uint32_t count;
    dt_err *err;
} section_out;

static void section_start(section_out *so)
{
    dt_codec_buf_reset(&so->b);
    dt_codec_put_str(&so->b, so->tenant);
    so->count_at = so->b.len;
    dt_codec_put_u32(&so->b, 0);
    so->count = 0;
}

static int section_flush(section_out *so)
{
    if (!so->count) return 0;
    int rc = dt_codec_buf_check(&so->b, so->err);
    if (rc) return rc;
    for (int i = 0; i < 4; i++) so->b.data[so->count_at + (size_t)i] = (uint8_t)(so->count >> (8 * i));
    rc = sink_put(so->k, so->type, so->b.data, so->b.len, so->err);
    section_start(so);
    return rc;
}

static int put_outcome_cb(void *ud, const dt_outcome_event *ev)
{
    section_out *so = ud;
    int rc = dt_codec_put_outcome(&so->b, ev, so->err);
    if (rc) return rc;
    return ++so->count == OUTCOMES_PER_SECTION ? section_flush(so) : 0;
}

static int put_served_cb(void *ud, dt_side side, const char *id, uint64_t served)
{
    section_out *so = ud;
    dt_codec_put_u8(&so->b, (uint8_t)side);
    dt_codec_put_str(&so->b, id);
    dt_codec_put_u64(&so->b, served);
    return ++so->count == OUTCOMES_PER_SECTION ? section_flush(so) : 0;
}

/* Every tenant's outcome events, then every tenant's served counts; called with the lock read. */
static int write_outcomes(dt_durable *d, section_sink *k, dt_err *err)
{
    size_t nt;
    const char *const *names = dt_outcome_tenants(d->os, &nt);
    section_out so = {k, DT_S_OUTCOMES, NULL, DT_CODEC_BUF_INIT, 0, 0, err};
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        so.type = pass ? DT_S_SERVED : DT_S_OUTCOMES;
        for (size_t t = 0; t < nt && rc == 0; t++) {
            so.tenant = names[t];
            section_start(&so);
            rc = pass ? dt_outcome_each_served(d->os, names[t], put_served_cb, &so)
                      : dt_outcome_each(d->os, names[t], put_outcome_cb, &so);
            if (!rc) rc = section_flush(&so);
        }
    }
    dt_codec_buf_fini(&so.b);
    return rc;
}

/* The state a snapshot writes, frozen at its seq: per tenant its basis (arrays only a re-learn's swap
 * replaces, and that waits for the snapshot) and per side the index and the slots live then (slots
 * below that count keep their record, terms and row: an index only appends; a compaction, which
 * renumbers them, waits too, and the generation checked per section would catch one that did
 * not). The epochs and the outcome store, small, are copied as sections. */
typedef struct frozen_side {
    dt_index *idx;
    uint64_t generation;
    size_t slots;
    uint64_t *live; /* bit per slot */
} frozen_side;

typedef struct frozen_tenant {
    char name[DT_TENANT_MAX + 1];
    bool has_basis;
    dt_engine_basis bs;
    frozen_side side[2];
} frozen_tenant;

typedef struct frozen {
    frozen_tenant *t;
    size_t nt;
    uint64_t fingerprint;
    section_sink tail; /* epochs, outcomes, served: written after the records */
} frozen;

static void frozen_free(frozen *f)
{
    for (size_t i = 0; i < f->nt; i++)
        for (int s = 0; s < 2; s++) free(f->t[i].side[s].live);
    free(f->t);
    sink_release(&f->tail, NULL, 0, NULL);
}

/* With no writer running (the commit mutex, or the engine lock read-locked). */
static int freeze(dt_durable *d, frozen *f, dt_err *err)
{
    memset(f, 0, sizeof *f);
    f->tail.hold = true;
    size_t nt;
    const char *const *names = dt_engine_tenants(d->e, &nt);
    f->fingerprint = dt_engine_terms_fingerprint(d->e);
    if (!(f->t = calloc(nt ? nt : 1, sizeof *f->t))) goto nomem;
    f->nt = nt;
    for (size_t i = 0; i < nt; i++) {
        frozen_tenant *ft = &f->t[i];
        snprintf(ft->name, sizeof ft->name, "%s", names[i]);
        ft->has_basis = dt_engine_get_basis(d->e, names[i], &ft->bs) == 1;
        for (int s = 0; s < 2; s++) {
            frozen_side *fs = &ft->side[s];
            if (!(fs->idx = dt_engine_index(d->e, names[i], (dt_side)s))) continue;
            fs->generation = dt_index_generation(fs->idx);
            fs->slots = dt_index_slots(fs->idx);
            if (!(fs->live = calloc((fs->slots + 63) / 64 + 1, sizeof *fs->live))) goto nomem;
            for (size_t k = 0; k < fs->slots; k++)
                if (dt_index_live(fs->idx, (uint32_t)k)) fs->live[k / 64] |= 1ull << (k % 64);
        }
    }
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    dt_codec_put_u32(&b, (uint32_t)nt);
    for (size_t t = 0; t < nt; t++) {
        dt_codec_put_str(&b, names[t]);
        dt_codec_put_u64(&b, dt_engine_epoch(d->e, names[t]));
    }
    int rc = dt_codec_buf_check(&b, err);
    if (!rc) rc = sink_put(&f->tail, DT_S_EPOCHS, b.data, b.len, err);
    dt_codec_buf_fini(&b);
    if (!rc && d->os) rc = write_outcomes(d, &f->tail, err);
    return rc;
nomem:
    return dt_err_set(err, DT_ENOMEM, NULL, "out of memory freezing the state for a snapshot");
}

/* Writes every tenant's basis and the records live at the freeze, then the held sections. With
 * lock_chunks, each section of records is encoded under the engine lock as a reader (writers may
 * run between sections: they grow arrays, which searches and this only read under the lock). */
static int write_frozen(dt_durable *d, frozen *f, dt_snapshot_writer *w, bool lock_chunks, dt_err *err)
{
    dt_codec_buf b;
    dt_codec_buf_init(&b);
    int rc = 0;
    for (size_t t = 0; rc == 0 && t < f->nt; t++) {
        frozen_tenant *ft = &f->t[t];
        if (ft->has_basis) rc = put_basis(w, ft->name, &ft->bs, err);
        for (int side = 0; rc == 0 && side < 2; side++) {
            frozen_side *fs = &ft->side[side];
            size_t s = 0;
            while (rc == 0 && s < fs->slots) {
                dt_codec_buf_reset(&b);
                dt_codec_put_u64(&b, f->fingerprint);
                dt_codec_put_u32(&b, 0); /* count, patched below */
                uint32_t count = 0;
                if (lock_chunks) pthread_rwlock_rdlock(d->lock);
                dt_index *idx = fs->idx;
                size_t dim = dt_index_dim(idx);
                const float *X = dt_index_matrix(idx);
                if (dt_index_generation(idx) != fs->generation)
                    rc = dt_err_set(err, DT_EINTERNAL, NULL, "tenant '%s' was compacted while its snapshot was written",
                                    ft->name);
                for (; s < fs->slots && count < RECORDS_PER_SECTION && rc == 0; s++) {
                    if (!(fs->live[s / 64] >> (s % 64) & 1)) continue;
                    rc = dt_codec_put_record(&b, dt_index_record(idx, (uint32_t)s), err);
                    const dt_tf *tf;
                    size_t k;
                    dt_index_terms(idx, (uint32_t)s, &tf, &k);
                    dt_codec_put_u32(&b, dt_index_doc_len(idx, (uint32_t)s));
                    dt_codec_put_u32(&b, (uint32_t)k);
                    for (size_t i = 0; i < k; i++) {
                        dt_codec_put_u32(&b, tf[i].term);
                        dt_codec_put_f32(&b, tf[i].tf);
                    }
                    dt_codec_put_u32(&b, X ? (uint32_t)dim : 0);
                    if (X) dt_codec_put_f32s(&b, X + s * dim, dim);
                    count++;
                }
                if (lock_chunks) pthread_rwlock_unlock(d->lock);
                if (rc || count == 0) break;
                if ((rc = dt_codec_buf_check(&b, err)) == 0) {
                    for (int i = 0; i < 4; i++) b.data[8 + i] = (uint8_t)(count >> (8 * i));
                    rc = dt_snapshot_put(w, DT_S_INDEXED, b.data, b.len, err);
                }
            }
        }
    }
    dt_codec_buf_fini(&b);
    return sink_release(&f->tail, w, rc, err);
}

bool dt_durable_serialising(dt_durable *d)
{
    if (!d) return false;
    pthread_mutex_lock(&d->mu);
    bool on = d->serialising;
    pthread_mutex_unlock(&d->mu);
    return on;
}

void dt_durable_wait_serialised(dt_durable *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    while (d->serialising) pthread_cond_wait(&d->serialised, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

void dt_durable_set_serialise_hook(dt_durable *d, void (*fn)(void *ud), void *ud)
{
    d->during_serialise = fn;
    d->during_serialise_ud = ud;
}

void dt_durable_hold_snapshots(dt_durable *d, bool hold)
{
    if (!d) return;
    if (hold)
        d->holds++;
    else if (d->holds)
        d->holds--;
}

/* A snapshot; while snapshots are held, waits for the hold to end (wait) or returns 1 without
 * taking one. */
static int snapshot(dt_durable *d, bool wait, dt_err *err)
{
    pthread_mutex_lock(&d->snap_mu);
    if (d->o.before_snapshot) d->o.before_snapshot(d->o.before_snapshot_ud);
    double t0 = now_s();
    dt_snapshot_writer *w = NULL;
    /* writers wait while the state is frozen (searches too, without a commit mutex): it is exactly
     * the journal up to seq */
    if (d->o.commit) {
        pthread_mutex_lock(d->o.commit);
        while (d->holds) {
            pthread_mutex_unlock(d->o.commit);
            if (!wait) {
                pthread_mutex_unlock(&d->snap_mu);
                return 1;
            }
            usleep(10000);
            pthread_mutex_lock(d->o.commit);
        }
    } else {
        pthread_rwlock_rdlock(d->lock);
    }
    dt_journal_stats js;
    dt_journal_stats_get(d->j, &js);
    uint64_t seq = js.next_seq - 1;
    frozen f;
    memset(&f, 0, sizeof f);
    int rc = dt_journal_rotate(d->j, err);
    if (!rc) rc = dt_snapshot_begin(d->dir, seq, &w, err);
    if (!rc) rc = freeze(d, &f, err);
    if (d->o.commit) {
        /* the state is frozen at seq: writers go on while it is written */
        pthread_mutex_lock(&d->mu);
        d->serialising = !rc;
        pthread_mutex_unlock(&d->mu);
        pthread_mutex_unlock(d->o.commit);
        if (!rc && d->during_serialise) d->during_serialise(d->during_serialise_ud);
        if (!rc) rc = write_frozen(d, &f, w, true, err);
        pthread_mutex_lock(&d->mu);
        d->serialising = false;
        pthread_cond_broadcast(&d->serialised);
        pthread_mutex_unlock(&d->mu);
    } else {
        if (!rc) rc = write_frozen(d, &f, w, false, err);
        pthread_rwlock_unlock(d->lock);
    }
    frozen_free(&f);
    if (!rc) {
        rc = dt_snapshot_commit(w, err);
        w = NULL;
    }
    if (w) dt_snapshot_abort(w);
    size_t pruned = 0;
    if (!rc) rc = dt_journal_prune(d->dir, seq, &pruned, err);
    pthread_mutex_lock(&d->mu);
    d->bytes_at_snapshot = js.bytes;
    if (rc) {
        d->snapshot_failures++;
    } else {
        d->snapshots++;
        d->last_snapshot_seq = seq;
        d->last_snapshot_seconds = now_s() - t0;
    }
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&d->snap_mu);
    if (rc)
        fprintf(stderr, "dovetaild: snapshot at journal seq %llu failed: %s\n", (unsigned long long)seq, err->msg);
    else
        logf_(d, "snapshot at journal seq %llu written in %.2f s; %zu journal files pruned", (unsigned long long)seq,
              now_s() - t0, pruned);
    return rc;
}

int dt_durable_snapshot(dt_durable *d, dt_err *err)
{
    return snapshot(d, true, err);
}

static void *snapshot_thread(void *arg)
{
    dt_durable *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&d->cv, &d->mu, &until);
        if (d->stopping) break;
        dt_journal_stats js;
        dt_journal_stats_get(d->j, &js);
        if (js.bytes - d->bytes_at_snapshot < d->o.snapshot_every_bytes) continue;
        pthread_mutex_unlock(&d->mu);
        dt_err err = DT_ERR_INIT;
        snapshot(d, false, &err); /* held: tried again in a second */
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- open / close ---- */

dt_durable *dt_durable_open(dt_engine *e, dt_outcome_store *os, pthread_rwlock_t *lock, const dt_durable_opts *o,
                            dt_err *err)
{
    dt_durable *d = calloc(1, sizeof *d);
    if (!d) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    d->o = *o;
    d->e = e;
    d->os = os;
    d->lock = lock;
    d->lock_fd = -1;
    snprintf(d->dir, sizeof d->dir, "%s", o->dir);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_cond_init(&d->serialised, NULL);
    pthread_mutex_init(&d->snap_mu, NULL);
    if (mkdir(d->dir, 0700) < 0 && errno != EEXIST) {
        dt_err_set(err, DT_EIO, "data-dir", "cannot create %s: %s", d->dir, strerror(errno));
        goto fail;
    }
    if (dt_journal_lock_dir(d->dir, &d->lock_fd, err) < 0) goto fail;
    double t0 = now_s();
    uint64_t snap_seq = 0;
    dt_snapshot_report sr;
    memset(&sr, 0, sizeof sr);
    apply_ctx ax = {e, os, true, o->quiet, 0};
    int rc = dt_snapshot_load_latest(d->dir, apply_section, &ax, &snap_seq, &sr, err);
    for (size_t i = 0; i < sr.n_rejected && i < DT_SNAPSHOT_REJECTED_MAX; i++)
        fprintf(stderr, "dovetaild: WARNING: snapshot %s (seq %llu) is damaged and was not loaded: %s\n",
                sr.rejected[i].file, (unsigned long long)sr.rejected[i].seq, sr.rejected[i].reason);
    if (rc < 0) goto fail;
    if (sr.loaded[0])
        logf_(d, "loaded snapshot %s (journal seq %llu, %llu sections) in %.2f s", sr.loaded,
              (unsigned long long)snap_seq, (unsigned long long)sr.sections, now_s() - t0);
    double t1 = now_s();
    dt_journal_replay_report jr;
    memset(&jr, 0, sizeof jr);
    rc = dt_journal_replay(d->dir, snap_seq, true, apply_entry, &ax, &jr, err);
    if (jr.torn_bytes)
        fprintf(stderr, "dovetaild: journal %s: torn tail of %llu bytes at offset %llu (%s) %s\n", jr.torn_file,
                (unsigned long long)jr.torn_bytes, (unsigned long long)jr.torn_offset, jr.torn_reason,
                jr.truncated ? "truncated: it was never acknowledged" : "left in place");
    if (rc < 0) goto fail;
    logf_(d, "replayed %llu journal entries after seq %llu in %.2f s (%llu of refused requests skipped); next seq %llu",
          (unsigned long long)jr.entries, (unsigned long long)snap_seq, now_s() - t1, (unsigned long long)ax.skipped,
          (unsigned long long)jr.last_seq + 1);
    d->j = dt_journal_open(d->dir, o->policy, jr.last_seq + 1, err);
    if (!d->j) goto fail;
    if (pthread_create(&d->thread, NULL, snapshot_thread, d) != 0) {
        dt_err_set(err, DT_ENOMEM, NULL, "cannot start the snapshot thread");
        goto fail;
    }
    d->thread_started = true;
    return d;
fail:
    dt_durable_close(d, false);
    return NULL;
}

void dt_durable_close(dt_durable *d, bool final_snapshot)
{
    if (!d) return;
    if (d->thread_started) {
        pthread_mutex_lock(&d->mu);
        d->stopping = true;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
    }
    if (d->j && final_snapshot) {
        dt_err err = DT_ERR_INIT;
        dt_durable_snapshot(d, &err);
    }
    if (d->j) {
        dt_err err = DT_ERR_INIT;
        if (dt_journal_flush(d->j, &err) < 0) fprintf(stderr, "dovetaild: journal flush: %s\n", err.msg);
        dt_journal_close(d->j);
    }
    if (d->lock_fd >= 0) dt_journal_unlock_dir(d->lock_fd);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    pthread_cond_destroy(&d->serialised);
    pthread_mutex_destroy(&d->snap_mu);
    free(d);
}

void dt_durable_stats_get(dt_durable *d, dt_durable_stats *out)
{
    memset(out, 0, sizeof *out);
    dt_journal_stats js;
    dt_journal_stats_get(d->j, &js);
    out->journal_seq = js.next_seq - 1;
    out->synced_seq = js.synced_seq;
    out->appends = js.appends;
    out->fsyncs = js.fsyncs;
    out->broken = js.broken;
    pthread_mutex_lock(&d->mu);
    out->snapshots = d->snapshots;
    out->snapshot_failures = d->snapshot_failures;
    out->last_snapshot_seq = d->last_snapshot_seq;
    out->last_snapshot_seconds = d->last_snapshot_seconds;
    pthread_mutex_unlock(&d->mu);
}

/* ---- read-only load ---- */

static int load_once(const char *dir, const dt_engine_opts *eo, dt_engine **e, dt_outcome_store **os,
                     dt_durable_load_report *rep, dt_err *err)
{
    *e = dt_engine_new(eo, err);
    *os = *e ? dt_outcome_store_new(err) : NULL;
    if (!*os) return -DT_ENOMEM;
    apply_ctx ax = {*e, *os, false, true, 0};
    uint64_t snap_seq = 0;
    dt_snapshot_report sr;
    memset(&sr, 0, sizeof sr);
    int rc = dt_snapshot_load_latest(dir, apply_section, &ax, &snap_seq, &sr, err);
    snprintf(rep->snapshot, sizeof rep->snapshot, "%s", sr.loaded);
    rep->snapshot_seq = snap_seq;
    rep->rejected = sr.n_rejected;
    if (sr.n_rejected) snprintf(rep->rejected_reason, sizeof rep->rejected_reason, "%s", sr.rejected[0].reason);
    if (rc) return rc;
    dt_journal_replay_report jr;
    memset(&jr, 0, sizeof jr);
    rc = dt_journal_replay(dir, snap_seq, false, apply_entry, &ax, &jr, err);
    rep->entries = jr.entries;
    rep->last_seq = jr.last_seq;
    rep->torn_bytes = jr.torn_bytes;
    snprintf(rep->torn_file, sizeof rep->torn_file, "%s", jr.torn_file);
    return rc;
}

/* A hash of a directory's entries (names, sizes, modification times): what changes when a
 * running daemon writes, rotates or prunes its files. */
static uint64_t dir_state(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t h = 0;
    struct dirent *de;
    char path[4200];
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0) continue;
        uint64_t v[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        /* order-independent: readdir's order is not stable */
        h += XXH3_64bits_withSeed(v, sizeof v, XXH3_64bits(de->d_name, strlen(de->d_name)));
    }
    closedir(d);
    return h;
}

int dt_durable_load_readonly(const char *dir, const dt_engine_opts *eo, dt_engine **e, dt_outcome_store **os,
                             dt_durable_load_report *rep, dt_err *err)
{
    dt_durable_load_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    *e = NULL;
    *os = NULL;
    struct stat st;
    if (stat(dir, &st) != 0)
        return dt_err_set(err, errno == ENOENT ? DT_ENOTFOUND : DT_EIO, "data-dir", "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return dt_err_set(err, DT_EINVAL, "data-dir", "%s is not a directory", dir);
    dt_engine_opts def = dt_engine_opts_default();
    int rc = 0;
    for (unsigned attempt = 1; attempt <= 3; attempt++) {
        memset(rep, 0, sizeof *rep);
        rep->attempts = attempt;
        uint64_t before = dir_state(dir);
        rc = load_once(dir, eo ? eo : &def, e, os, rep, err);
        if (rc == 0) return 0;
        dt_outcome_store_free(*os);
        dt_engine_free(*e);
        *os = NULL;
        *e = NULL;
        /* a daemon's snapshot may have pruned (or replaced) a file between listing and reading;
         * a directory that did not change meanwhile is really damaged: no point in trying again */
        if ((rc != -DT_ECORRUPT && rc != -DT_EIO) || dir_state(dir) == before) break;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return rc;
}
