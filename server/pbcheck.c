/* pbcheck.c - a wire-format walk that validates strings and bounds protobuf-c's allocations
 * before unpacking (see pbcheck.h).
 *
 * The charges mirror protobuf_c_message_unpack in protobuf-c 1.4.1: per message its struct, a
 * scratch record of at most SCAN_BYTES per field occurrence (its ScannedMember slabs double in
 * size), the required-field bitmap when it does not fit on the stack, one array per non-empty list
 * and one for unknown fields, a copy of every string, bytes value and unknown field, and the
 * sub-messages, recursively. Every allocation is charged as a malloc chunk (dt_pbcheck_chunk), and
 * every charge only adds: the total bounds what an allocator that counts requests sees, which is
 * at least the peak in use.
 */
#include "pbcheck.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <utf8proc.h>

#define SCAN_BYTES 80    /* per field occurrence: protobuf-c's 32-byte ScannedMember, slabs doubling */
#define STACK_BITMAP 16  /* bytes of required-field bitmap protobuf-c keeps on the stack */
#define TRACKED 128      /* fields per message whose occurrences are counted exactly */

typedef struct walk {
    size_t max_alloc;
    size_t alloc;
    dt_pbcheck_info *info;
    dt_err *err;
    size_t plen;
    char path[256];
} walk;

size_t dt_pbcheck_chunk(size_t n)
{
    /* glibc: 8 bytes of header, 16-byte alignment, 32-byte minimum */
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static bool charge(walk *w, size_t n)
{
    w->alloc += dt_pbcheck_chunk(n);
    return w->alloc <= w->max_alloc;
}

static void path_push(walk *w, const char *name, size_t index, bool indexed, size_t *saved)
{
    *saved = w->plen;
    char part[96];
    int n = indexed ? snprintf(part, sizeof part, "%s%s[%zu]", w->plen ? "." : "", name, index)
                    : snprintf(part, sizeof part, "%s%s", w->plen ? "." : "", name);
    if (n < 0) return;
    size_t room = sizeof w->path - 1 - w->plen, k = (size_t)n < room ? (size_t)n : room;
    memcpy(w->path + w->plen, part, k);
    w->plen += k;
    w->path[w->plen] = 0;
}

static void path_pop(walk *w, size_t saved)
{
    w->plen = saved;
    w->path[saved] = 0;
}

static int refuse(walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(walk *w, const char *fmt, ...)
{
    char msg[sizeof w->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *field = w->path;
    if (w->plen >= sizeof w->err->field) field = w->path + w->plen - (sizeof w->err->field - 1);
    return dt_err_set(w->err, DT_EINVAL, field, "%s", msg);
}

/* Reads a varint at p[0..n): its length in bytes (0 when unterminated within 10 bytes). */
static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 8;
}

static bool packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES && t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Elements in packed data of type t, as protobuf-c counts them; false when the length does not
 * fit the type. */
static bool packed_count(ProtobufCType t, const uint8_t *p, size_t n, size_t *count)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        *count = n / 4;
        return n % 4 == 0;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        *count = n / 8;
        return n % 8 == 0;
    case PROTOBUF_C_TYPE_BOOL: *count = n; return true;
    default: {
        size_t c = 0;
        for (size_t i = 0; i < n; i++) c += !(p[i] & 0x80);
        *count = c;
        return n == 0 || !(p[n - 1] & 0x80);
    }
    }
}

static int check_string(walk *w, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (s[i] == 0) return refuse(w, "contains a NUL byte (at byte %zu of the string); strings may not hold NUL", i);
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0)
            return refuse(w, "is not valid UTF-8 (byte 0x%02X at byte %zu of the string); send text as UTF-8", s[i],
                          i);
        i += (size_t)k;
    }
    return 0;
}

static void note_list(walk *w, const char *name, size_t n)
{
    if (!w->info || n <= w->info->largest_n) return;
    w->info->largest_n = n;
    char full[sizeof w->path + 128];
    int len = snprintf(full, sizeof full, "%s%s%.100s", w->path, w->plen ? "." : "", name);
    size_t keep = sizeof w->info->largest - 1, from = len > 0 && (size_t)len > keep ? (size_t)len - keep : 0;
    memcpy(w->info->largest, full + from, strlen(full + from) + 1); /* the end names the list */
}

static int walk_message(walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                        unsigned depth);

/* One length-delimited value v[0..n) of known field f. seen: earlier occurrences of f here. */
static int walk_delimited(walk *w, const ProtobufCFieldDescriptor *f, const uint8_t *v, size_t n, size_t seen,
                          unsigned depth)
{
    bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
    size_t saved;
    int rc = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        path_push(w, f->name, seen, repeated, &saved);
        rc = check_string(w, v, n);
        path_pop(w, saved);
        if (!rc && !charge(w, n + 1)) rc = -DT_ELIMIT;
        return rc;
    case PROTOBUF_C_TYPE_BYTES:
        return n && !charge(w, n) ? -DT_ELIMIT : 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        path_push(w, f->name, seen, repeated, &saved);
        if (!repeated && seen > 0)
            rc = refuse(w, "given %zu times; a message field may be given only once", seen + 1);
        else if (depth + 1 > DT_PBCHECK_MAX_DEPTH)
            rc = refuse(w, "nested deeper than %d messages", DT_PBCHECK_MAX_DEPTH);
        else
            rc = walk_message(w, f->descriptor, v, n, depth + 1);
        path_pop(w, saved);
        return rc;
    default:
        return 0; /* packed scalars: counted by the caller */
    }
}

/* Over the budget: records this message's lists so far (the error names the longest) and
 * returns -DT_ELIMIT. */
static int over(walk *w, const ProtobufCMessageDescriptor *d, const size_t *elems, size_t nf)
{
    for (size_t i = 0; i < nf; i++)
        if (elems[i]) note_list(w, d->fields[i].name, elems[i]);
    return -DT_ELIMIT;
}

static int walk_message(walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                        unsigned depth)
{
    size_t seen[TRACKED];
    size_t nf = d->n_fields < TRACKED ? d->n_fields : TRACKED;
    memset(seen, 0, nf * sizeof *seen);
    size_t elems[TRACKED]; /* list entries per field, packed ones included */
    memset(elems, 0, nf * sizeof *elems);
    size_t n_unknown = 0;
    if (!charge(w, d->sizeof_message)) return over(w, d, elems, nf);
    if ((d->n_fields + 7) / 8 > STACK_BITMAP && !charge(w, (d->n_fields + 7) / 8)) return over(w, d, elems, nf);
    for (size_t pos = 0; pos < len;) {
        uint64_t key, l = 0;
        size_t k = varint(data + pos, len - pos, &key);
        if (!k || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return refuse(w, "%s field key at byte %zu of the message", k ? "an invalid" : "a truncated", pos);
        pos += k;
        uint32_t id = (uint32_t)(key >> 3);
        unsigned wt = (unsigned)(key & 7);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, id);
        size_t vstart = pos, vlen;
        switch (wt) {
        case PROTOBUF_C_WIRE_TYPE_VARINT:
            vlen = varint(data + pos, len - pos, &l);
            if (!vlen) goto truncated;
            break;
        case PROTOBUF_C_WIRE_TYPE_64BIT:
            vlen = 8;
            if (len - pos < 8) goto truncated;
            break;
        case PROTOBUF_C_WIRE_TYPE_32BIT:
            vlen = 4;
            if (len - pos < 4) goto truncated;
            break;
        case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
            size_t h = varint(data + pos, len - pos, &l);
            if (!h || h > 5 || l > UINT32_MAX || l > len - pos - h) goto truncated;
            vstart = pos + h;
            vlen = h + (size_t)l;
            break;
        }
        default:
            return refuse(w, "field %u at byte %zu has wire type %u (groups are not supported)", id, pos - k, wt);
        }
        if (!charge(w, SCAN_BYTES - 16)) return over(w, d, elems, nf); /* scratch: no header per entry */
        if (!f) {
            if (!n_unknown++ && !charge(w, 0)) return over(w, d, elems, nf);
            if (!charge(w, vlen) || !charge(w, sizeof(ProtobufCMessageUnknownField))) return over(w, d, elems, nf);
        } else {
            size_t fi = (size_t)(f - d->fields), s = fi < TRACKED ? seen[fi] : 0;
            bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
            size_t add = repeated ? 1 : 0;
            if (wt == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
                if (repeated && packable(f->type)) {
                    if (!packed_count(f->type, data + vstart, (size_t)l, &add)) {
                        size_t saved;
                        path_push(w, f->name, 0, false, &saved);
                        return refuse(w, "packed data of %zu bytes does not hold whole values of its type",
                                      (size_t)l);
                    }
                } else {
                    int rc = walk_delimited(w, f, data + vstart, (size_t)l, s, depth);
                    if (rc == -DT_ELIMIT) return over(w, d, elems, nf);
                    if (rc) return rc;
                }
            }
            if (fi < TRACKED) {
                seen[fi]++;
                elems[fi] += add;
            } else if (add && !charge(w, add * elem_size(f->type))) {
                return over(w, d, elems, nf);
            }
        }
        pos = vstart + (wt == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED ? (size_t)l : vlen);
        continue;
    truncated:
        if (f) {
            size_t saved;
            path_push(w, f->name, 0, false, &saved);
            return refuse(w, "truncated: the value runs past the end of the message");
        }
        return refuse(w, "field %u at byte %zu is truncated: the value runs past the end of the message", id, pos - k);
    }
    if (n_unknown && !charge(w, n_unknown * sizeof(ProtobufCMessageUnknownField))) return over(w, d, elems, nf);
    bool ok = true;
    for (size_t i = 0; i < nf; i++) {
        if (!elems[i]) continue;
        note_list(w, d->fields[i].name, elems[i]);
        ok &= charge(w, elems[i] * elem_size(d->fields[i].type));
    }
    return ok ? 0 : -DT_ELIMIT;
}

int dt_pbcheck(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len, size_t max_alloc,
               dt_pbcheck_info *info, dt_err *err)
{
    dt_pbcheck_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    walk w;
    memset(&w, 0, sizeof w);
    w.max_alloc = max_alloc;
    w.info = info;
    dt_err scratch = DT_ERR_INIT;
    w.err = err ? err : &scratch;
    int rc = walk_message(&w, d, data ? data : (const uint8_t *)"", data ? len : 0, 0);
    info->alloc = w.alloc;
    if (rc == -DT_ELIMIT) {
        if (info->largest_n)
            return dt_err_set(err, DT_ELIMIT, info->largest,
                              "decoding the request would take more than %zu bytes of memory (the largest list "
                              "here has %zu entries); send fewer or smaller values per request",
                              max_alloc, info->largest_n);
        return dt_err_set(err, DT_ELIMIT, "",
                          "decoding the request would take more than %zu bytes of memory; send a smaller request",
                          max_alloc);
    }
    return rc;
}
