/* codec.h - the binary encoding of a dt_record and of an outcome event, and a small checked
 * writer/reader for other payloads.
 *
 * What the journal and the snapshot store. Little-endian, fixed-width integers, every variable
 * field length-prefixed; the format is specified in docs/durability.md ("Record encoding").
 *
 * Writing (dt_codec_buf) grows a heap buffer; a failed allocation or an oversized field makes the
 * buffer "failed" and every later put a no-op, so a caller may put a whole payload and check once.
 * Reading (dt_codec_reader) checks every length against the bytes that remain before touching them,
 * and every count against a caller-given maximum before allocating: a hostile or damaged payload
 * gives -DT_ECORRUPT with the field and byte offset, never an over-read, a huge allocation or a
 * crash.
 *
 * Not here: files, checksums, fsync (journal.c, snapshot.c); semantic validation of a record (a
 * decoded record satisfies the dt.h limits but is not passed through dt_record_validate).
 * No global state; a buffer or reader is used by one thread at a time.
 */
#ifndef DT_CODEC_H
#define DT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "outcome.h"
#include "record.h"

/* Version byte that starts every encoded record. */
#define DT_CODEC_RECORD_VERSION 1

/* Version byte that starts every encoded outcome event. */
#define DT_CODEC_OUTCOME_VERSION 1

/* Length prefix of an absent string (NULL); a present string, even "", stores its byte length. */
#define DT_CODEC_ABSENT UINT32_MAX

/* A growable output buffer. Zero-initialise with DT_CODEC_BUF_INIT or dt_codec_buf_init. */
typedef struct dt_codec_buf {
    uint8_t *data; /* len bytes written so far (owned) */
    size_t len;
    size_t cap;
    int failed; /* 0, or the DT_E* code of the first failed put */
} dt_codec_buf;

#define DT_CODEC_BUF_INIT                                                                          \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void dt_codec_buf_init(dt_codec_buf *b);
/* Frees the bytes and re-initialises b. NULL is fine. */
void dt_codec_buf_fini(dt_codec_buf *b);
/* Forgets the contents (keeps the allocation and clears a failure) so b can be reused. */
void dt_codec_buf_reset(dt_codec_buf *b);

/* Appends one value. Return 0, or -DT_ENOMEM (allocation) / -DT_ELIMIT (bytes or str longer than
 * UINT32_MAX - 1) and mark b failed; on a failed buffer they do nothing and return its code.
 * Floats are stored as their IEEE-754 bit patterns, so NAN and -0.0 round-trip exactly. */
int dt_codec_put_u8(dt_codec_buf *b, uint8_t v);
int dt_codec_put_u32(dt_codec_buf *b, uint32_t v);
int dt_codec_put_u64(dt_codec_buf *b, uint64_t v);
int dt_codec_put_i64(dt_codec_buf *b, int64_t v);
int dt_codec_put_f32(dt_codec_buf *b, float v);
/* n floats, each as dt_codec_put_f32 (one copy on a little-endian host). */
int dt_codec_put_f32s(dt_codec_buf *b, const float *v, size_t n);
int dt_codec_put_f64(dt_codec_buf *b, double v);
/* n raw bytes, no length prefix (the reader must know n). */
int dt_codec_put_raw(dt_codec_buf *b, const void *p, size_t n);
/* u32 length n, then n bytes. p may be NULL when n is 0. */
int dt_codec_put_bytes(dt_codec_buf *b, const void *p, size_t n);
/* A C string: u32 length and its bytes (no NUL), or DT_CODEC_ABSENT alone when s is NULL. */
int dt_codec_put_str(dt_codec_buf *b, const char *s);

/* 0 when every put succeeded, else the first failure as -code with err filled. */
int dt_codec_buf_check(const dt_codec_buf *b, dt_err *err);

/* Hands the bytes to the caller (free() them) and re-initialises b. On a failed buffer returns its
 * error, frees the bytes and sets *data = NULL, *len = 0. An empty success gives a non-NULL
 * pointer. */
int dt_codec_buf_take(dt_codec_buf *b, uint8_t **data, size_t *len, dt_err *err);

/* A bounds-checked cursor over borrowed bytes (they must outlive the reader). Sticky: after the
 * first failure every get fails again with the same code and leaves err as the first failure set
 * it. */
typedef struct dt_codec_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    int failed;
} dt_codec_reader;

void dt_codec_reader_init(dt_codec_reader *rd, const void *p, size_t len);
/* Bytes not yet read. */
size_t dt_codec_reader_left(const dt_codec_reader *rd);

/* Read one value. field names it in the error ("tags[2]", "ids"). Return 0, or -DT_ECORRUPT
 * ("field: need 8 bytes at offset 41, 3 left") leaving *out untouched. */
int dt_codec_get_u8(dt_codec_reader *rd, uint8_t *out, const char *field, dt_err *err);
int dt_codec_get_u32(dt_codec_reader *rd, uint32_t *out, const char *field, dt_err *err);
int dt_codec_get_u64(dt_codec_reader *rd, uint64_t *out, const char *field, dt_err *err);
int dt_codec_get_i64(dt_codec_reader *rd, int64_t *out, const char *field, dt_err *err);
int dt_codec_get_f32(dt_codec_reader *rd, float *out, const char *field, dt_err *err);
/* n floats as dt_codec_put_f32s wrote them; errors as dt_codec_get_f32 (nothing is read then). */
int dt_codec_get_f32s(dt_codec_reader *rd, float *out, size_t n, const char *field, dt_err *err);
int dt_codec_get_f64(dt_codec_reader *rd, double *out, const char *field, dt_err *err);
/* n raw bytes: *out points into the reader's buffer (no copy). */
int dt_codec_get_raw(dt_codec_reader *rd, const uint8_t **out, size_t n, const char *field,
                     dt_err *err);
/* A dt_codec_put_bytes value of at most max bytes: *out points into the buffer, *n its length. */
int dt_codec_get_bytes(dt_codec_reader *rd, const uint8_t **out, size_t *n, size_t max,
                       const char *field, dt_err *err);
/* A dt_codec_put_str value of at most max bytes without NUL bytes, copied into a new NUL-terminated
 * string the caller frees; *out = NULL for an absent string. -DT_ENOMEM when the copy fails. */
int dt_codec_get_str(dt_codec_reader *rd, char **out, size_t max, const char *field, dt_err *err);
/* A u32 element count for a list whose elements take at least min_elem_bytes each (>= 1): refuses
 * a count above max, or one that cannot fit in the bytes left, before the caller allocates. */
int dt_codec_get_count(dt_codec_reader *rd, uint32_t *out, uint32_t max, size_t min_elem_bytes,
                       const char *field, dt_err *err);
/* -DT_ECORRUPT unless every byte has been read ("what: 5 trailing bytes at offset 60"). */
int dt_codec_reader_end(dt_codec_reader *rd, const char *what, dt_err *err);

/* Appends the encoding of r. Refuses, appending nothing and leaving b as it was, a record the
 * decoder would refuse: -DT_EINVAL for a missing id, a NULL list entry, side/status/trl out of
 * range or mode bits beyond DT_MODE_COUNT; -DT_ELIMIT for a string, list or embedding over its dt.h
 * limit. An embedding with dim 0 is stored as absent. */
int dt_codec_put_record(dt_codec_buf *b, const dt_record *r, dt_err *err);

/* Reads one record written by dt_codec_put_record into *out (overwritten, not freed first). On 0
 * the caller owns *out (dt_record_free); on error *out is left initialised and owns nothing.
 * Errors: -DT_ECORRUPT (structure, limits, unknown version), -DT_ENOMEM. */
int dt_codec_get_record(dt_codec_reader *rd, dt_record *out, dt_err *err);

/* One record as a whole buffer: *buf is malloc'd (caller frees), *len its size. Errors as
 * dt_codec_put_record, plus -DT_ENOMEM. Thread-safe (no shared state). */
int dt_codec_encode_record(const dt_record *r, uint8_t **buf, size_t *len, dt_err *err);

/* Decodes exactly one record filling p[0..len): trailing bytes are -DT_ECORRUPT. Ownership and
 * errors as dt_codec_get_record. Thread-safe. */
int dt_codec_decode_record(const uint8_t *p, size_t len, dt_record *out, dt_err *err);

/* Appends the encoding of ev without its tenant (the payload around it names the tenant): version
 * u8, kind u8, reason u8, demand_id str, achievement_id str, amount f64 (NAN = none), at i64.
 * Refuses, appending nothing and leaving b as it was, what the decoder would refuse: -DT_EINVAL for
 * a missing or empty id, a kind or reason out of range; -DT_ELIMIT for an id over DT_ID_MAX. The
 * rules between fields (a reason only on a decline, an amount only on a deal, at >= 0) are
 * dt_outcome_event_validate's: the codec stores what it is given. */
int dt_codec_put_outcome(dt_codec_buf *b, const dt_outcome_event *ev, dt_err *err);

/* Reads one event written by dt_codec_put_outcome into *out (overwritten; out->tenant is NULL). On
 * 0 the ids are malloc'd copies owned by the caller: release them with dt_codec_outcome_fini. On
 * error *out owns nothing. Errors: -DT_ECORRUPT (structure, limits, unknown version, kind or
 * reason out of range), -DT_ENOMEM. */
int dt_codec_get_outcome(dt_codec_reader *rd, dt_outcome_event *out, dt_err *err);

/* Frees the ids of an event filled by dt_codec_get_outcome and sets them to NULL. */
void dt_codec_outcome_fini(dt_outcome_event *ev);

#endif
