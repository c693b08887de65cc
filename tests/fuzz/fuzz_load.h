/* fuzz_load.h - the body of the CSV and JSON Lines fuzz targets (fuzz_csv.c, fuzz_jsonl.c):
 * dt_load_buffer over the input in the format FZ_LOAD_FORMAT, three times:
 *   1. lenient, no default side;  2. strict, no default side;
 *   3. lenient, default side achievement, default tenant, at most 2 issues kept.
 * Every delivered record must pass dt_record_validate, come with a line number above the previous
 * one and within the input, and survive dt_codec_encode_record / dt_codec_decode_record unchanged;
 * half of them are taken over by the callback (moved out, as load.h allows). The reports must
 * add up (rows = loaded + rejected, loaded = records delivered, issues kept <= the cap and <= the
 * problems counted, issue lines within the input), and strict mode must agree with lenient mode:
 * it delivers the same records when lenient mode rejected none, and nothing otherwise.
 */
#ifndef DT_FUZZ_LOAD_H
#define DT_FUZZ_LOAD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"
#include "load.h"

typedef struct {
    size_t n;         /* records delivered */
    size_t last_line; /* line of the previous one */
    size_t lines;     /* physical lines of the input */
} fz_load_state;

static int fz_on_record(void *ud, dt_record *rec, size_t line, dt_err *err)
{
    (void)err;
    fz_load_state *st = ud;
    st->n++;
    fz_check(line > st->last_line, "record on line %zu after one on line %zu", line, st->last_line);
    fz_check(line <= st->lines, "record on line %zu of %zu", line, st->lines);
    st->last_line = line;
    dt_err e = DT_ERR_INIT;
    fz_check(dt_record_validate(rec, &e) == 0, "line %zu: delivered record fails validation: %s: %s", line,
             e.field, e.msg);
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = dt_codec_encode_record(rec, &b, &n, &e);
    fz_check(rc == 0, "line %zu: dt_codec_encode_record refuses a valid record: %s: %s", line, e.field, e.msg);
    dt_record back;
    rc = dt_codec_decode_record(b, n, &back, &e);
    fz_check(rc == 0, "line %zu: dt_codec_decode_record refuses its own encoding: %s: %s", line, e.field, e.msg);
    const char *diff = fz_record_diff(rec, &back);
    fz_check(diff == NULL, "line %zu: field %s changed through the record codec", line, diff ? diff : "");
    dt_record_free(&back);
    free(b);
    if (st->n % 2) {
        dt_record mine = *rec;
        dt_record_init(rec);
        dt_record_free(&mine);
    }
    return 0;
}

static void fz_load_check_report(const dt_load_report *rep, const fz_load_state *st, size_t kept_max,
                                 const char *pass)
{
    fz_check(rep->format == FZ_LOAD_FORMAT, "%s: format %d read as %d", pass, FZ_LOAD_FORMAT, rep->format);
    fz_check(rep->rows == rep->loaded + rep->rejected, "%s: rows %zu != loaded %zu + rejected %zu", pass,
             rep->rows, rep->loaded, rep->rejected);
    fz_check(rep->loaded == st->n, "%s: loaded %zu, callback saw %zu", pass, rep->loaded, st->n);
    fz_check(rep->n_issues <= kept_max && rep->n_issues <= rep->rejected + rep->warnings,
             "%s: %zu issues kept (cap %zu, %zu rejected, %zu warnings)", pass, rep->n_issues, kept_max,
             rep->rejected, rep->warnings);
    size_t rejections = 0;
    for (size_t i = 0; i < rep->n_issues; i++) {
        const dt_load_issue *is = &rep->issues[i];
        fz_check(is->line <= st->lines, "%s: issue on line %zu of %zu: %s: %s", pass, is->line, st->lines,
                 is->field, is->msg);
        fz_check(is->msg[0] != 0, "%s: issue on line %zu without a message", pass, is->line);
        fz_check(memchr(is->field, 0, sizeof is->field) && memchr(is->msg, 0, sizeof is->msg),
                 "%s: issue text not terminated", pass);
        if (is->code) rejections++;
        if (i > 0 && is->code && rep->issues[i - 1].code)
            fz_check(is->line > rep->issues[i - 1].line, "%s: rejections on lines %zu then %zu", pass,
                     rep->issues[i - 1].line, is->line);
    }
    fz_check(rejections <= rep->rejected, "%s: %zu rejections kept, %zu counted", pass, rejections, rep->rejected);
}

static int fz_load_run(const uint8_t *data, size_t size, const dt_load_opts *o, fz_load_state *st,
                       dt_load_report *rep, dt_err *err)
{
    memset(st, 0, sizeof *st);
    st->lines = 1; /* JSON Lines: lines end at "\n"; CSV also at a lone "\r" (csv.c) */
    for (size_t i = 0; i < size; i++)
        st->lines += data[i] == '\n' || (FZ_LOAD_FORMAT == DT_FMT_CSV && data[i] == '\r' &&
                                         (i + 1 == size || data[i + 1] != '\n'));
    int rc = dt_load_buffer((const char *)data, size, NULL, o, fz_on_record, st, rep, err);
    if (rc) {
        fz_check(err->code == -rc, "error %d with err.code %d", rc, err->code);
        fz_check(err->msg[0] != 0, "error %d without a message", rc);
    }
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dt_load_opts o = DT_LOAD_OPTS_INIT;
    o.format = FZ_LOAD_FORMAT;
    fz_load_state s1, s2, s3;
    dt_load_report r1, r2, r3;
    dt_err e1 = DT_ERR_INIT, e2 = DT_ERR_INIT, e3 = DT_ERR_INIT;

    int rc1 = fz_load_run(data, size, &o, &s1, &r1, &e1);
    if (rc1 == 0) fz_load_check_report(&r1, &s1, 1000, "lenient");

    o.strict = true;
    int rc2 = fz_load_run(data, size, &o, &s2, &r2, &e2);
    if (rc2 == 0) fz_load_check_report(&r2, &s2, 1000, "strict");
    else
        fz_check(s2.n == 0, "strict mode failed (%s: %s) after delivering %zu records", e2.field, e2.msg, s2.n);
    if (rc1 == 0 && r1.rejected == 0)
        fz_check(rc2 == 0 && s2.n == s1.n, "lenient: %zu records, none rejected; strict: rc %d (%s: %s), %zu records",
                 s1.n, rc2, e2.field, e2.msg, s2.n);
    if (rc1 == 0 && r1.rejected > 0)
        fz_check(rc2 == -DT_EINVAL, "lenient rejected %zu rows (first: line %zu %s: %s); strict returned %d",
                 r1.rejected, r1.n_issues ? r1.issues[0].line : 0, r1.n_issues ? r1.issues[0].field : "",
                 r1.n_issues ? r1.issues[0].msg : "", rc2);
    if (rc1 != 0) fz_check(rc2 != 0, "lenient failed (%s: %s), strict succeeded", e1.field, e1.msg);

    o.strict = false;
    o.default_side = DT_ACHIEVEMENT;
    o.default_tenant = "t-fuzz";
    o.max_errors_kept = 2;
    int rc3 = fz_load_run(data, size, &o, &s3, &r3, &e3);
    if (rc3 == 0) fz_load_check_report(&r3, &s3, 2, "defaults");

    dt_load_report_free(&r1);
    dt_load_report_free(&r2);
    dt_load_report_free(&r3);
    return 0;
}

#endif
