/* fuzz_util.h - what the libFuzzer targets of tests/fuzz/ share: a check that aborts with a
 * message, record comparison, a scratch directory on tmpfs, and a walk over protobuf-c messages.
 *
 * Header-only (static functions) so that each fuzz_<target>.c stays one translation unit plus the
 * project's sources. Not a library for anything else: the checks abort the process, which is how a
 * fuzz target reports a broken property.
 */
#ifndef DT_FUZZ_UTIL_H
#define DT_FUZZ_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Aborts (a libFuzzer "crash", with the input saved) when cond is false. */
__attribute__((format(printf, 2, 3))) static inline void fz_check(bool cond, const char *fmt, ...)
{
    if (cond) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz property violated: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static inline bool fz_str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static inline bool fz_list_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!fz_str_eq(a[i], b[i])) return false;
    return true;
}

static inline bool fz_bits_eq(const void *a, const void *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

/* NULL when a and b hold the same values (floats compared bit for bit, so NAN equals NAN), else
 * the name of the first field that differs. */
static inline const char *fz_record_diff(const dt_record *a, const dt_record *b)
{
    if (!fz_str_eq(a->tenant, b->tenant)) return "tenant";
    if (!fz_str_eq(a->id, b->id)) return "id";
    if (a->side != b->side) return "side";
    if (!fz_str_eq(a->title, b->title)) return "title";
    if (!fz_str_eq(a->text, b->text)) return "text";
    if (!fz_list_eq(a->keywords, a->n_keywords, b->keywords, b->n_keywords)) return "keywords";
    if (!fz_str_eq(a->org, b->org)) return "org";
    if (!fz_str_eq(a->field, b->field)) return "field";
    if (!fz_str_eq(a->region, b->region)) return "region";
    if (a->trl != b->trl) return "trl";
    if (a->modes != b->modes) return "modes";
    if (!fz_bits_eq(&a->price_min, &b->price_min, sizeof a->price_min)) return "price_min";
    if (!fz_bits_eq(&a->price_max, &b->price_max, sizeof a->price_max)) return "price_max";
    if (!fz_list_eq(a->tags, a->n_tags, b->tags, b->n_tags)) return "tags";
    if (a->status != b->status) return "status";
    if (a->updated_at != b->updated_at) return "updated_at";
    size_t da = a->embedding ? a->dim : 0, db = b->embedding ? b->dim : 0;
    if (da != db || !fz_bits_eq(a->embedding, b->embedding, da * sizeof(float))) return "embedding";
    return NULL;
}

/* dt_record_validate(r) unless the environment says to skip a known defect that r would hit:
 * DOVETAIL_FUZZ_SKIP=empty-code skips records whose field or region is "" (present but empty),
 * which matcher/record.c's check of dot-separated codes reads one byte before. Lets a run go on
 * past that defect while it is open; a normal run (variable unset) reports it. */
static inline void fz_validate(const dt_record *r)
{
    static int skip = -1;
    if (skip < 0) {
        const char *v = getenv("DOVETAIL_FUZZ_SKIP");
        skip = v && strstr(v, "empty-code") != NULL;
    }
    if (skip && ((r->field && !r->field[0]) || (r->region && !r->region[0]))) return;
    dt_err e = DT_ERR_INIT;
    (void)dt_record_validate(r, &e);
}

/* A private directory under /dev/shm (else /tmp) for targets that must hand files to the code
 * under test; removed with its files at exit. Returns its path (static storage). */
static char fz_dir_path[256];

static inline void fz_dir_clear(void)
{
    DIR *d = opendir(fz_dir_path);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", fz_dir_path, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static inline void fz_dir_remove(void)
{
    if (!fz_dir_path[0]) return;
    fz_dir_clear();
    rmdir(fz_dir_path);
}

static inline const char *fz_dir(const char *name)
{
    if (fz_dir_path[0]) return fz_dir_path;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_dir_path, sizeof fz_dir_path, "%s/dovetail-fuzz-%s-%ld", base, name, (long)getpid());
    if (mkdir(fz_dir_path, 0700) != 0) {
        fz_dir_clear(); /* a leftover of an earlier process with the same pid */
        struct stat st;
        fz_check(stat(fz_dir_path, &st) == 0 && S_ISDIR(st.st_mode), "cannot create %s", fz_dir_path);
    }
    atexit(fz_dir_remove);
    return fz_dir_path;
}

/* Writes p[0..n) to dir/name (replacing it). */
static inline void fz_write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fz_check(f != NULL, "cannot create %s", path);
    fz_check(n == 0 || fwrite(p, 1, n, f) == n, "cannot write %s", path);
    fz_check(fclose(f) == 0, "cannot close %s", path);
}

static inline uint64_t fz_load_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void fz_store_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#ifdef PROTOBUF_C_VERSION_NUMBER
/* Scans m and every message below it: *unknown is set when one carries unknown fields (protobuf-c
 * keeps them as it read them, and 1.4.1 re-packs some it cannot read back, e.g. field number 0 in
 * an overlong tag), *inexact when one also holds what JSON does not carry (invalid UTF-8 in a
 * string, a NaN float or double whose payload JSON drops, unknown fields). Neither is cleared. */
static inline void fz_pb_scan(const ProtobufCMessage *m, bool *unknown, bool *inexact)
{
    if (m->unknown_fields && m->n_unknown_fields) *unknown = *inexact = true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        size_t n = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            base = *(const char *const *)base; /* the array */
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
            if (which != f->id) continue;
        }
        for (size_t k = 0; k < n; k++) {
            switch (f->type) {
            case PROTOBUF_C_TYPE_FLOAT: {
                float v;
                memcpy(&v, base + k * sizeof v, sizeof v);
                if (isnan(v)) *inexact = true;
                break;
            }
            case PROTOBUF_C_TYPE_DOUBLE: {
                double v;
                memcpy(&v, base + k * sizeof v, sizeof v);
                if (isnan(v)) *inexact = true;
                break;
            }
            case PROTOBUF_C_TYPE_STRING: {
                const char *s = ((const char *const *)base)[k];
                size_t len = s ? strlen(s) : 0;
                if (s && dt_utf8_valid_prefix(s, len) != len) *inexact = true;
                break;
            }
            case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub = ((const ProtobufCMessage *const *)base)[k];
                if (sub) fz_pb_scan(sub, unknown, inexact);
                break;
            }
            default: break;
            }
        }
    }
}

/* The packed bytes of m (malloc'd, *len set). */
static inline uint8_t *fz_pb_pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    fz_check(b != NULL, "out of memory");
    size_t w = protobuf_c_message_pack(m, b);
    fz_check(w == n, "%s: pack wrote %zu bytes, get_packed_size said %zu", m->descriptor->name, w, n);
    *len = n;
    return b;
}
#endif

#endif
