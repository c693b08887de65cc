/* fuzz_durable.h - decoders for the payloads dovetaild stores in journal entries and snapshot
 * sections (store/durable.c, docs/durability.md), written against store/codec.h the way the
 * daemon reads them, for the journal, snapshot and codec fuzz targets. They only read: nothing is
 * applied to an engine. Each returns 0 or the codec's error (err filled).
 */
#ifndef DT_FUZZ_DURABLE_H
#define DT_FUZZ_DURABLE_H

#include <stdint.h>
#include <stdlib.h>

#include "codec.h"
#include "fuzz_util.h"
#include "outcome.h"

enum { FZ_J_UPSERT = 1, FZ_J_DELETE = 2, FZ_J_BUILD = 3, FZ_J_OUTCOMES = 4 }; /* journal entry types */
enum { FZ_S_BASIS = 1, FZ_S_RECORDS = 2, FZ_S_OUTCOMES = 3, FZ_S_SERVED = 4 }; /* snapshot section types */
#define FZ_MAX_IDS (10u * 1000 * 1000)
#define FZ_MIN_OUTCOME_BYTES 29 /* version, kind, reason, two 1-byte ids, amount, at */
#define FZ_MIN_SERVED_BYTES 14  /* side, a 1-byte id, count */

/* u32 count, then count records. Every decoded record is also run through dt_record_validate
 * (any verdict) and must re-encode to the bytes it came from. */
static inline int fz_decode_records(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    uint32_t n = 0;
    int rc = dt_codec_get_count(&rd, &n, FZ_MAX_IDS, 8, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        size_t at = rd.pos;
        dt_record r;
        rc = dt_codec_get_record(&rd, &r, err);
        if (rc) break;
        dt_err e = DT_ERR_INIT;
        fz_validate(&r);
        uint8_t *b = NULL;
        size_t bn = 0;
        int erc = dt_codec_encode_record(&r, &b, &bn, &e);
        fz_check(erc == 0, "a decoded record does not encode: %s: %s", e.field, e.msg);
        fz_check(bn == rd.pos - at && memcmp(b, p + at, bn) == 0, "record at offset %zu re-encodes differently", at);
        free(b);
        dt_record_free(&r);
    }
    return rc ? rc : dt_codec_reader_end(&rd, "records", err);
}

/* str tenant, u8 side (0 or 1), u32 count, count str ids. */
static inline int fz_decode_delete(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char *tenant = NULL;
    uint8_t side = 0;
    uint32_t n = 0;
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_u8(&rd, &side, "side", err);
    if (!rc && side > 1) rc = dt_err_set(err, DT_ECORRUPT, "side", "bad side %u", side);
    if (!rc) rc = dt_codec_get_count(&rd, &n, FZ_MAX_IDS, 4, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        char *id = NULL;
        rc = dt_codec_get_str(&rd, &id, DT_ID_MAX, "id", err);
        free(id);
    }
    free(tenant);
    return rc ? rc : dt_codec_reader_end(&rd, "delete", err);
}

/* str tenant, u32 count, count outcome events (a RecordOutcome entry or an outcome section).
 * Every decoded event must re-encode to the bytes it came from; it is then validated and added to a
 * store (any verdict), as replay does. */
static inline int fz_decode_outcomes(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char *tenant = NULL;
    uint32_t n = 0;
    dt_outcome_store *os = dt_outcome_store_new(NULL);
    fz_check(os != NULL, "out of memory");
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_count(&rd, &n, FZ_MAX_IDS, FZ_MIN_OUTCOME_BYTES, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        size_t at = rd.pos;
        dt_outcome_event ev;
        rc = dt_codec_get_outcome(&rd, &ev, err);
        if (rc) {
            fz_check(!ev.demand_id && !ev.achievement_id, "a failed outcome decode left ids behind");
            break;
        }
        dt_codec_buf b = DT_CODEC_BUF_INIT;
        dt_err e = DT_ERR_INIT;
        fz_check(dt_codec_put_outcome(&b, &ev, &e) == 0, "a decoded outcome does not encode: %s: %s", e.field, e.msg);
        fz_check(b.len == rd.pos - at && memcmp(b.data, p + at, b.len) == 0,
                 "outcome at offset %zu re-encodes differently", at);
        dt_codec_buf_fini(&b);
        ev.tenant = tenant;
        if (dt_outcome_add(os, &ev, &e) == 0)
            fz_check(dt_outcome_event_validate(&ev, &e) == 0, "the store took an event validate refuses");
        dt_codec_outcome_fini(&ev);
    }
    free(tenant);
    dt_outcome_store_free(os);
    return rc ? rc : dt_codec_reader_end(&rd, "outcomes", err);
}

/* str tenant, u32 count, count x (u8 side 0 or 1, str id, u64 served). */
static inline int fz_decode_served(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char *tenant = NULL;
    uint32_t n = 0;
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_count(&rd, &n, FZ_MAX_IDS, FZ_MIN_SERVED_BYTES, "count", err);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint8_t side = 0;
        uint64_t served = 0;
        char *id = NULL;
        rc = dt_codec_get_u8(&rd, &side, "side", err);
        if (!rc && side > 1) rc = dt_err_set(err, DT_ECORRUPT, "side", "bad side %u", side);
        if (!rc) rc = dt_codec_get_str(&rd, &id, DT_ID_MAX, "id", err);
        if (!rc) rc = dt_codec_get_u64(&rd, &served, "served", err);
        free(id);
    }
    free(tenant);
    return rc ? rc : dt_codec_reader_end(&rd, "served", err);
}

/* str tenant. */
static inline int fz_decode_build(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char *tenant = NULL;
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    free(tenant);
    return rc ? rc : dt_codec_reader_end(&rd, "build", err);
}

/* str tenant, u64 built_docs, u64 n_terms, u64 dim, n_terms u32, n_terms f32, n_terms*dim f32,
 * dim f32; sizes checked against the bytes left before any is read, as the daemon does. */
static inline int fz_decode_basis(const uint8_t *p, size_t len, dt_err *err)
{
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, p, len);
    char *tenant = NULL;
    uint64_t built = 0, nt = 0, dim = 0;
    int rc = dt_codec_get_str(&rd, &tenant, DT_TENANT_MAX, "tenant", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &built, "built_docs", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &nt, "n_terms", err);
    if (!rc) rc = dt_codec_get_u64(&rd, &dim, "dim", err);
    if (!rc && (nt == 0 || dim == 0 || dim > DT_DIM_MAX || nt > (1u << 24) ||
                (nt * (dim + 2) + dim) * 4 > dt_codec_reader_left(&rd)))
        rc = dt_err_set(err, DT_ECORRUPT, "basis", "sizes do not fit the section");
    uint32_t u;
    float f;
    for (uint64_t i = 0; !rc && i < nt; i++) rc = dt_codec_get_u32(&rd, &u, "terms", err);
    for (uint64_t i = 0; !rc && i < nt * (dim + 1) + dim; i++) rc = dt_codec_get_f32(&rd, &f, "floats", err);
    free(tenant);
    return rc ? rc : dt_codec_reader_end(&rd, "basis", err);
}

#endif
