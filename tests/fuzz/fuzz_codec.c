/* fuzz_codec.c - libFuzzer target: dt_codec_decode_record and dt_codec_get_outcome
 * (store/codec.h), plus the payload decoders of dovetaild's journal entries and snapshot sections
 * (fuzz_durable.h) over the same bytes.
 *
 * Checks: a refusal is -DT_ECORRUPT (or -DT_ENOMEM) with err filled and the record left empty; a
 * decoded record re-encodes to exactly the input (the encoding is canonical, docs/durability.md),
 * copies with dt_record_copy unchanged, and dt_record_validate gives a verdict without crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_durable.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dt_record r;
    dt_err err = DT_ERR_INIT;
    int rc = dt_codec_decode_record(data, size, &r, &err);
    if (rc) {
        fz_check(rc == -DT_ECORRUPT || rc == -DT_ENOMEM, "decode returned %d", rc);
        fz_check(err.code == -rc && err.msg[0], "error %d: err.code %d, message '%s'", rc, err.code, err.msg);
        fz_check(!r.tenant && !r.id && !r.title && !r.text && !r.keywords && !r.n_keywords && !r.org && !r.field &&
                     !r.region && !r.tags && !r.n_tags && !r.embedding && !r.dim,
                 "a failed decode left something in the record");
    } else {
        uint8_t *b = NULL;
        size_t n = 0;
        rc = dt_codec_encode_record(&r, &b, &n, &err);
        fz_check(rc == 0, "a decoded record does not encode: %s: %s", err.field, err.msg);
        fz_check(n == size && memcmp(b, data, n) == 0, "re-encoding gives %zu bytes, not the %zu decoded", n, size);
        free(b);
        dt_record c;
        fz_check(dt_record_copy(&c, &r, &err) == 0, "dt_record_copy: %s", err.msg);
        const char *diff = fz_record_diff(&r, &c);
        fz_check(diff == NULL, "dt_record_copy changed %s", diff ? diff : "");
        dt_record_free(&c);
        fz_validate(&r);
        dt_record_free(&r);
    }
    dt_err e = DT_ERR_INIT;
    (void)fz_decode_records(data, size, &e);
    (void)fz_decode_delete(data, size, &e);
    (void)fz_decode_build(data, size, &e);
    (void)fz_decode_basis(data, size, &e);
    (void)fz_decode_outcomes(data, size, &e);
    (void)fz_decode_served(data, size, &e);
    /* the bytes as one outcome event: a decoded one re-encodes to exactly the input */
    dt_codec_reader rd;
    dt_codec_reader_init(&rd, data, size);
    dt_outcome_event ev;
    dt_err oe = DT_ERR_INIT;
    if (dt_codec_get_outcome(&rd, &ev, &oe) == 0 && dt_codec_reader_end(&rd, "outcome", &oe) == 0) {
        dt_codec_buf b = DT_CODEC_BUF_INIT;
        fz_check(dt_codec_put_outcome(&b, &ev, &oe) == 0, "a decoded outcome does not encode: %s", oe.msg);
        fz_check(b.len == size && memcmp(b.data, data, size) == 0, "an outcome re-encodes differently");
        dt_codec_buf_fini(&b);
    } else {
        fz_check(oe.code == DT_ECORRUPT || oe.code == DT_ENOMEM, "outcome decode: error code %d", oe.code);
    }
    dt_codec_outcome_fini(&ev);
    return 0;
}
