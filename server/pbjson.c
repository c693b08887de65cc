/* pbjson.c - ProtoJSON <-> protobuf-c messages through run-time descriptors (see pbjson.h).
 *
 * Decoding: one pass over the raw text bounds nesting, finds invalid UTF-8 and number tokens
 * jansson would misread (rewriting them in a copy when needed); jansson parses; a walk over the
 * JSON tree, guided by the message descriptor, builds the message. The message
 * is built in place with the conventions of protobuf_c_message_unpack (every string, array,
 * byte buffer and sub-message its own malloc block; unset strings point at the descriptor's
 * default), and it is consistent after every step, so any error is cleaned up by
 * protobuf_c_message_free_unpacked on the partial message.
 *
 * Encoding writes JSON text directly into a growing buffer (no JSON tree), which gives control
 * over number formatting (shortest round-trip floats, 64-bit integers as strings).
 *
 * Not here: well-known-type special forms, proto2 extensions and groups, checks of proto2
 * required fields, json_name options (protoc-c drops them from descriptors).
 */
#include "pbjson.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define MEMBER(msg, off, type) ((type *)((char *)(msg) + (off)))
#define CMEMBER(msg, off, type) ((const type *)((const char *)(msg) + (off)))
#define NONE_AT SIZE_MAX

/* Stands in for each byte that is not valid UTF-8 so that jansson can parse the rest and the walk
 * can name the field holding it. U+10FFFF (a noncharacter); used only when the text does not
 * already contain it. */
static const char MARK[] = "\xF4\x8F\xBF\xBF";
#define MARK_LEN 4

/* ---------------------------------------------------------------- shared helpers */

/* Length of the valid UTF-8 sequence starting at s (n bytes available), or 0 when invalid:
 * overlong forms, surrogates and values above U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return k;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

size_t dt_pbjson_json_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    bool up = false;
    for (const char *p = name; *p; p++) {
        char ch = *p;
        if (ch == '_') {
            up = true;
            continue;
        }
        if (up && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        up = false;
        if (n + 1 < cap) out[n] = ch;
        n++;
    }
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

/* Does key[0..klen) equal the JSON name of the proto field name `name`? */
static bool json_name_eq(const char *name, const char *key, size_t klen)
{
    size_t i = 0;
    bool up = false;
    for (const char *p = name; *p; p++) {
        char ch = *p;
        if (ch == '_') {
            up = true;
            continue;
        }
        if (up && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        up = false;
        if (i >= klen || key[i] != ch) return false;
        i++;
    }
    return i == klen;
}

/* protoc names the entry message of map field "my_map" "MyMapEntry", nested in the parent. */
static bool map_entry_name_eq(const char *parent, const char *field, const char *entry)
{
    size_t pl = strlen(parent);
    if (strncmp(entry, parent, pl) != 0 || entry[pl] != '.') return false;
    const char *e = entry + pl + 1;
    bool up = true;
    for (const char *p = field; *p; p++) {
        char ch = *p;
        if (ch == '_') {
            up = true;
            continue;
        }
        if (up && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        up = false;
        if (*e++ != ch) return false;
    }
    return strcmp(e, "Entry") == 0;
}

static bool is_map_key_type(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_FLOAT && t != PROTOBUF_C_TYPE_DOUBLE && t != PROTOBUF_C_TYPE_ENUM &&
           t != PROTOBUF_C_TYPE_BYTES && t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Is f (a field of message type d) a map field? See pbjson.h for the rule. */
static bool is_map(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return false;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    if (!e || e->n_fields != 2) return false;
    const ProtobufCFieldDescriptor *k = &e->fields[0], *v = &e->fields[1];
    return k->id == 1 && v->id == 2 && strcmp(k->name, "key") == 0 && strcmp(v->name, "value") == 0 &&
           k->label != PROTOBUF_C_LABEL_REPEATED && v->label != PROTOBUF_C_LABEL_REPEATED &&
           is_map_key_type(k->type) && map_entry_name_eq(d->name, f->name, e->name);
}

/* Size of one element of a repeated field of type t in protobuf-c's C representation. */
static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* Scalar types with a has_ member when the label is OPTIONAL (proto2). */
static bool has_quantifier(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static const char *const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---------------------------------------------------------------- decoding */

typedef struct dec {
    dt_err *err;
    size_t max_depth;
    bool marked;     /* invalid UTF-8 bytes were replaced by MARK before parsing */
    size_t plen;
    char path[256];  /* JSON path of the value being decoded, as the caller spelled the keys */
} dec;

/* Position of byte offset off in text: 1-based line and column (in characters). */
static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

/* err = code at the value being decoded (its path) with the message; returns -code. */
static int vfail(dec *c, int code, const char *fmt, va_list ap)
{
    char msg[sizeof c->err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char field[sizeof c->err->field];
    size_t keep = c->plen, from = 0;
    if (keep >= sizeof field) { /* keep the end, which names the value itself */
        memcpy(field, "...", 3);
        from = c->plen - (sizeof field - 4);
        keep = sizeof field - 4;
        memcpy(field + 3, c->path + from, keep);
        field[3 + keep] = '\0';
    } else {
        memcpy(field, c->path, keep + 1);
    }
    return dt_err_set(c->err, code, field, "%s", msg);
}

static int fail(dec *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(dec *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, DT_EINVAL, fmt, ap);
    va_end(ap);
    return rc;
}

/* A well-formed number outside what its field holds: -DT_ERANGE (invalid_argument, not malformed). */
static int fail_range(dec *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_range(dec *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, DT_ERANGE, fmt, ap);
    va_end(ap);
    return rc;
}

static int nomem(dec *c) { return dt_err_set(c->err, DT_ENOMEM, c->path, "out of memory decoding JSON"); }

static void path_append(dec *c, const char *s, size_t n)
{
    size_t room = sizeof c->path - 1 - c->plen;
    if (n > room) n = room;
    memcpy(c->path + c->plen, s, n);
    c->plen += n;
    c->path[c->plen] = '\0';
}

static size_t path_key(dec *c, const char *key, size_t klen)
{
    size_t saved = c->plen;
    if (c->plen) path_append(c, ".", 1);
    path_append(c, key, klen);
    return saved;
}

static size_t path_index(dec *c, size_t i)
{
    size_t saved = c->plen;
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "[%zu]", i);
    path_append(c, tmp, (size_t)n);
    return saved;
}

static size_t path_map_key(dec *c, const char *key, size_t klen)
{
    size_t saved = c->plen;
    path_append(c, "[\"", 2);
    path_append(c, key, klen);
    path_append(c, "\"]", 2);
    return saved;
}

static void path_pop(dec *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* Copies s[0..n) for an error message, cut to fit a short buffer. */
static const char *shown(const char *s, size_t n, char *buf, size_t cap)
{
    if (n < cap) {
        memcpy(buf, s, n);
        buf[n] = '\0';
    } else {
        snprintf(buf, cap, "%.*s...", (int)(cap - 4), s);
    }
    return buf;
}

enum { NUM_OK, NUM_SYNTAX, NUM_FRACTION, NUM_RANGE };

/* Checks that s[0..n) is a JSON number (RFC 8259 grammar, no surrounding space). */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return false;
    if (s[i] == '0') i++;
    else
        while (i < n && is_digit(s[i])) i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i])) i++;
    }
    return i == n;
}

/* Exact value of the JSON number s[0..n) as sign and magnitude, when it is an integer:
 * "12", "-7", "1e2", "1.50e1", "100e-2". Returns NUM_OK or why not. */
static int parse_int_text(const char *s, size_t n, bool *neg, uint64_t *mag)
{
    if (!is_json_number(s, n)) return NUM_SYNTAX;
    size_t i = 0;
    *neg = false;
    *mag = 0;
    if (s[i] == '-') {
        *neg = true;
        i++;
    }
    /* the digits before the exponent, ignoring the point; value = digits * 10^(e - nfrac) */
    size_t d0 = i, nfrac = 0;
    bool point = false;
    for (; i < n && (is_digit(s[i]) || s[i] == '.'); i++) {
        if (s[i] == '.') point = true;
        else if (point) nfrac++;
    }
    size_t dend = i;
    long e = 0;
    if (i < n) { /* exponent */
        i++;
        bool eneg = false;
        if (s[i] == '+' || s[i] == '-') eneg = s[i++] == '-';
        for (; i < n; i++)
            if (e < 1000000) e = e * 10 + (s[i] - '0');
        if (eneg) e = -e;
    }
    e -= (long)(nfrac < 1000000 ? nfrac : 1000000);
    /* significant digits: first and last non-zero */
    size_t first = NONE_AT, last = NONE_AT;
    for (size_t k = d0; k < dend; k++) {
        if (s[k] == '.' || s[k] == '0') continue;
        if (first == NONE_AT) first = k;
        last = k;
    }
    if (first == NONE_AT) return NUM_OK; /* zero, whatever the exponent */
    for (size_t k = last + 1; k < dend; k++)
        if (s[k] == '0') e++; /* trailing zeros move into the exponent */
    if (e < 0) return NUM_FRACTION;
    size_t nsig = 0;
    for (size_t k = first; k <= last; k++)
        if (s[k] != '.') nsig++;
    if (nsig + (size_t)(e < 100 ? e : 100) > 20) return NUM_RANGE;
    uint64_t v = 0;
    for (size_t k = first; k <= last; k++) {
        if (s[k] == '.') continue;
        unsigned dg = (unsigned)(s[k] - '0');
        if (v > (UINT64_MAX - dg) / 10) return NUM_RANGE;
        v = v * 10 + dg;
    }
    for (long k = 0; k < e; k++) {
        if (v > UINT64_MAX / 10) return NUM_RANGE;
        v *= 10;
    }
    *mag = v;
    return NUM_OK;
}

/* Reads an integer-typed JSON value (number, or string holding a number) as sign + magnitude.
 * text/cap receives the value as written, for error messages. */
static int json_int(dec *c, const json_t *v, bool *neg, uint64_t *mag, char *text, size_t cap)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        snprintf(text, cap, "%" JSON_INTEGER_FORMAT, x);
        *neg = x < 0;
        *mag = x < 0 ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x;
        return 0;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        snprintf(text, cap, "%.17g", x);
        if (x != floor(x)) return fail(c, "expected an integer, got %s", text);
        if (fabs(x) >= 18446744073709551616.0) return fail_range(c, "%s is out of range", text);
        *neg = x < 0;
        *mag = (uint64_t)fabs(x);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        shown(s, n, text, cap);
        switch (parse_int_text(s, n, neg, mag)) {
        case NUM_OK: return 0;
        case NUM_FRACTION: return fail(c, "expected an integer, got \"%s\"", text);
        case NUM_RANGE: return fail_range(c, "\"%s\" is out of range", text);
        default: return fail(c, "expected an integer, got the string \"%s\"", text);
        }
    }
    return fail(c, "expected an integer (a number or a numeric string), got %s", jtype(v));
}

/* Stores sign + magnitude into an integer field of type t, checking its range. */
static int store_int(dec *c, ProtobufCType t, bool neg, uint64_t mag, const char *text, void *dst)
{
    const char *tname;
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX) {
            tname = "a 32-bit signed integer";
            break;
        }
        *(int32_t *)dst = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((neg && mag) || mag > UINT32_MAX) {
            tname = "a 32-bit unsigned integer";
            break;
        }
        *(uint32_t *)dst = (uint32_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > INT64_MAX) {
            tname = "a 64-bit signed integer";
            break;
        }
        *(int64_t *)dst = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (neg && mag) {
            tname = "a 64-bit unsigned integer";
            break;
        }
        *(uint64_t *)dst = mag;
        return 0;
    default:
        return fail(c, "internal: not an integer type");
    }
    return fail_range(c, "%s is out of range for %s", text, tname);
}

static int decode_double(dec *c, const json_t *v, double *out)
{
    if (json_is_integer(v)) {
        *out = (double)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        *out = json_real_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        char text[48];
        if (strcmp(s, "NaN") == 0) *out = NAN;
        else if (strcmp(s, "Infinity") == 0) *out = INFINITY;
        else if (strcmp(s, "-Infinity") == 0) *out = -INFINITY;
        else if (!is_json_number(s, n))
            return fail(c, "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got \"%s\"",
                        shown(s, n, text, sizeof text));
        else {
            errno = 0;
            *out = strtod(s, NULL);
            if (errno == ERANGE && isinf(*out))
                return fail_range(c, "\"%s\" is out of range for a double", shown(s, n, text, sizeof text));
        }
        return 0;
    }
    return fail(c, "expected a number, got %s", jtype(v));
}

/* Checks a decoded string: no NUL, valid UTF-8 (see MARK). */
static int check_string(dec *c, const char *s, size_t n, size_t nul_len)
{
    if (n != nul_len) return fail(c, "contains a NUL character (\\u0000), not allowed in a string");
    if (c->marked && n >= MARK_LEN && memmem(s, n, MARK, MARK_LEN))
        return fail(c, "is not valid UTF-8: send text as UTF-8");
    return 0;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

static int decode_bytes(dec *c, const json_t *v, ProtobufCBinaryData *out)
{
    if (!json_is_string(v)) return fail(c, "expected a base64 string, got %s", jtype(v));
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t n = json_string_length(v), pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad && (n + pad) % 4 != 0) || n % 4 == 1)
        return fail(c, "is not valid base64: wrong length or padding");
    for (size_t i = 0; i < n; i++)
        if (b64_value(s[i]) < 0)
            return fail(c, "is not valid base64: unexpected character at position %zu", i);
    size_t len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    uint8_t *buf = NULL;
    if (len) {
        buf = malloc(len);
        if (!buf) return nomem(c);
    }
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 6) | (uint32_t)b64_value(s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out->data = buf;
    out->len = len;
    return 0;
}

/* The value names of ed for an error message: "A_X, A_Y, A_Z", or when that does not fit,
 * "A_{X, Y, Z}" (their common prefix up to an underscore written once), cut with "..." only when
 * even that does not fit. */
static void enum_names(const ProtobufCEnumDescriptor *ed, char *out, size_t n)
{
    size_t prefix = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t used = 0;
        out[0] = 0;
        if (prefix) used = (size_t)snprintf(out, n, "%.*s{", (int)prefix, ed->values[0].name);
        for (unsigned i = 0; i < ed->n_values && used < n; i++) {
            int w = snprintf(out + used, n - used, "%s%s", i ? ", " : "", ed->values[i].name + prefix);
            if (w < 0) break;
            used += (size_t)w;
        }
        if (prefix && used < n) used += (size_t)snprintf(out + used, n - used, "}");
        if (used < n) return;
        if (pass == 0 && ed->n_values > 1) { /* the longest common prefix ending in '_' */
            const char *first = ed->values[0].name;
            size_t common = strlen(first);
            for (unsigned i = 1; i < ed->n_values; i++) {
                size_t k = 0;
                while (k < common && ed->values[i].name[k] == first[k]) k++;
                common = k;
            }
            while (common && first[common - 1] != '_') common--;
            prefix = common;
        }
        if (!prefix) break;
    }
    memcpy(out + n - 4, "...", 4);
}

static int decode_enum(dec *c, const ProtobufCEnumDescriptor *ed, const json_t *v, int *out)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        int rc = check_string(c, s, n, strlen(s));
        if (rc) return rc;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
        if (ev) {
            *out = ev->value;
            return 0;
        }
        char names[sizeof c->err->msg] = "", text[48];
        const char *val = shown(s, n, text, sizeof text);
        /* the names get what the rest of the message leaves of err->msg */
        int rest = snprintf(NULL, 0, "unknown %s value \"%s\"; expected one of  (or a number)", ed->short_name, val);
        size_t room = rest > 0 && (size_t)rest + 40 < sizeof names ? sizeof names - (size_t)rest : 40;
        enum_names(ed, names, room);
        return fail(c, "unknown %s value \"%s\"; expected one of %s (or a number)", ed->short_name, val, names);
    }
    if (json_is_number(v)) {
        bool neg;
        uint64_t mag;
        char text[48];
        int rc = json_int(c, v, &neg, &mag, text, sizeof text);
        if (rc) return rc;
        int32_t x = 0;
        rc = store_int(c, PROTOBUF_C_TYPE_INT32, neg, mag, text, &x);
        if (rc) return rc;
        *out = x;
        return 0;
    }
    return fail(c, "expected the name (a string) or number of a %s value, got %s", ed->short_name,
                jtype(v));
}

static int decode_message(dec *c, const ProtobufCMessageDescriptor *d, const json_t *v, size_t depth,
                          ProtobufCMessage **out);

/* Decodes one value of field f (a singular field, a list element or a map value) into dst,
 * which has f's C type. depth is the nesting level of v. Allocates only on success. */
static int decode_value(dec *c, const ProtobufCFieldDescriptor *f, const json_t *v, size_t depth,
                        void *dst)
{
    char text[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        bool neg;
        uint64_t mag;
        int rc = json_int(c, v, &neg, &mag, text, sizeof text);
        return rc ? rc : store_int(c, f->type, neg, mag, text, dst);
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        double x;
        int rc = decode_double(c, v, &x);
        if (rc) return rc;
        float y = (float)x;
        if (isinf(y) && !isinf(x)) return fail_range(c, "%.9g is out of range for a float", x);
        *(float *)dst = y;
        return 0;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
        return decode_double(c, v, (double *)dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) return fail(c, "expected true or false, got %s", jtype(v));
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return decode_enum(c, f->descriptor, v, (int *)dst);
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v)) return fail(c, "expected a string, got %s", jtype(v));
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        int rc = check_string(c, s, n, strlen(s));
        if (rc) return rc;
        char *copy = malloc(n + 1);
        if (!copy) return nomem(c);
        memcpy(copy, s, n + 1);
        *(char **)dst = copy;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return decode_bytes(c, v, (ProtobufCBinaryData *)dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return decode_message(c, f->descriptor, v, depth, (ProtobufCMessage **)dst);
    }
    return fail(c, "unsupported field type %d", (int)f->type);
}

/* Sets singular field f of message m from v (not null), with its presence marker. */
static int decode_singular(dec *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                           const json_t *v, size_t depth)
{
    int rc = decode_value(c, f, v, depth, MEMBER(m, f->offset, void));
    if (rc) return rc;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *MEMBER(m, f->quantifier_offset, uint32_t) = f->id;
    else if (has_quantifier(f))
        *MEMBER(m, f->quantifier_offset, protobuf_c_boolean) = 1;
    return 0;
}

/* A map key arrives as a JSON object key: strings as is, integers in decimal, bools as
 * "true"/"false". */
static int decode_map_key(dec *c, const ProtobufCFieldDescriptor *kf, const char *key, size_t klen,
                          void *dst)
{
    char text[48];
    shown(key, klen, text, sizeof text);
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        int rc = check_string(c, key, klen, strlen(key));
        if (rc) return rc;
        char *copy = malloc(klen + 1);
        if (!copy) return nomem(c);
        memcpy(copy, key, klen + 1);
        *(char **)dst = copy;
        return 0;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") == 0 && klen == 4) *(protobuf_c_boolean *)dst = 1;
        else if (strcmp(key, "false") == 0 && klen == 5) *(protobuf_c_boolean *)dst = 0;
        else return fail(c, "map key \"%s\" is not \"true\" or \"false\"", text);
        return 0;
    }
    bool neg;
    uint64_t mag;
    int r = parse_int_text(key, klen, &neg, &mag);
    if (r == NUM_RANGE) return fail_range(c, "map key \"%s\" is out of range", text);
    if (r != NUM_OK) return fail(c, "map key \"%s\" is not an integer", text);
    return store_int(c, kf->type, neg, mag, text, dst);
}

static int decode_map(dec *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *v,
                      size_t depth)
{
    if (!json_is_object(v)) return fail(c, "expected an object (a map), got %s", jtype(v));
    size_t n = json_object_size(v);
    if (n == 0) return 0;
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    ProtobufCMessage **arr = calloc(n, sizeof *arr);
    if (!arr) return nomem(c);
    size_t *count = MEMBER(m, f->quantifier_offset, size_t);
    *MEMBER(m, f->offset, ProtobufCMessage **) = arr;
    *count = 0;
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        const json_t *val = json_object_iter_value(it);
        size_t saved = path_map_key(c, key, klen);
        if (json_is_null(val)) return fail(c, "null is not allowed as a map value");
        ProtobufCMessage *e = malloc(ed->sizeof_message);
        if (!e) return nomem(c);
        protobuf_c_message_init(ed, e);
        int rc = decode_map_key(c, kf, key, klen, MEMBER(e, kf->offset, void));
        if (!rc && has_quantifier(kf)) *MEMBER(e, kf->quantifier_offset, protobuf_c_boolean) = 1;
        if (!rc) rc = decode_singular(c, e, vf, val, depth + 1);
        if (rc) {
            protobuf_c_message_free_unpacked(e, NULL);
            return rc;
        }
        arr[(*count)++] = e;
        path_pop(c, saved);
    }
    return 0;
}

static int decode_list(dec *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *v,
                       size_t depth)
{
    if (!json_is_array(v)) return fail(c, "expected an array, got %s", jtype(v));
    size_t n = json_array_size(v);
    if (n == 0) return 0;
    size_t es = elem_size(f->type);
    char *arr = calloc(n, es);
    if (!arr) return nomem(c);
    size_t *count = MEMBER(m, f->quantifier_offset, size_t);
    *MEMBER(m, f->offset, void *) = arr;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_index(c, i);
        const json_t *el = json_array_get(v, i);
        if (json_is_null(el)) return fail(c, "null is not allowed in a list");
        int rc = decode_value(c, f, el, depth + 1, arr + i * es);
        if (rc) return rc;
        ++*count;
        path_pop(c, saved);
    }
    return 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key,
                                                  size_t klen)
{
    if (strlen(key) != klen) return NULL;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f) return f;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (json_name_eq(d->fields[i].name, key, klen)) return &d->fields[i];
    return NULL;
}

static const ProtobufCFieldDescriptor *field_by_id(const ProtobufCMessageDescriptor *d, uint32_t id)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].id == id) return &d->fields[i];
    return NULL;
}

static int decode_fields(dec *c, const ProtobufCMessageDescriptor *d, const json_t *v, size_t depth,
                         ProtobufCMessage *m, unsigned char *seen)
{
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        const json_t *val = json_object_iter_value(it);
        const ProtobufCFieldDescriptor *f = find_field(d, key, klen);
        if (!f) continue; /* unknown fields are ignored */
        size_t saved = path_key(c, key, klen);
        size_t idx = (size_t)(f - d->fields);
        if (seen[idx]) {
            char camel[128];
            dt_pbjson_json_name(f->name, camel, sizeof camel);
            return fail(c, "field given twice, as \"%s\" and as \"%s\"", f->name, camel);
        }
        seen[idx] = 1;
        if (json_is_null(val)) {
            path_pop(c, saved);
            continue;
        }
        int rc;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            rc = is_map(d, f) ? decode_map(c, m, f, val, depth + 1) : decode_list(c, m, f, val, depth + 1);
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t set = *MEMBER(m, f->quantifier_offset, uint32_t);
                const ProtobufCFieldDescriptor *other = set ? field_by_id(d, set) : NULL;
                if (other && other != f) {
                    char camel[128];
                    dt_pbjson_json_name(other->name, camel, sizeof camel);
                    return fail(c, "cannot be set together with \"%s\": they are alternatives (one oneof), "
                                   "set only one",
                                camel);
                }
            }
            rc = decode_singular(c, m, f, val, depth + 1);
        }
        if (rc) return rc;
        path_pop(c, saved);
    }
    return 0;
}

static int decode_message(dec *c, const ProtobufCMessageDescriptor *d, const json_t *v, size_t depth,
                          ProtobufCMessage **out)
{
    if (!json_is_object(v)) return fail(c, "expected an object (message %s), got %s", d->name, jtype(v));
    if (depth > c->max_depth) return fail(c, "nested deeper than %zu levels", c->max_depth);
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m) return nomem(c);
    protobuf_c_message_init(d, m);
    unsigned char seen_small[64] = {0};
    unsigned char *seen = d->n_fields <= sizeof seen_small ? seen_small : calloc(d->n_fields, 1);
    if (!seen) {
        free(m);
        return nomem(c);
    }
    int rc = decode_fields(c, d, v, depth, m, seen);
    if (seen != seen_small) free(seen);
    if (rc) {
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return 0;
}

/* Number tokens jansson would misread. It reads a bare integer into a long long, refusing the
 * whole text when one does not fit, and reads "-0" as the integer 0, losing the sign a double
 * field needs. Such tokens are rewritten before parsing: a too-large integer becomes a string
 * (read exactly by the integer and float rules; the price is that a string field accepts it
 * too), "-0" becomes "-0.0". */
enum { FIX_NONE, FIX_NEGZERO, FIX_QUOTE };

static bool is_number_char(char ch)
{
    return is_digit(ch) || ch == '-' || ch == '+' || ch == '.' || ch == 'e' || ch == 'E';
}

static int number_fix(const char *t, size_t n)
{
    if (n == 2 && t[0] == '-' && t[1] == '0') return FIX_NEGZERO;
    size_t i = t[0] == '-';
    size_t nd = n - i;
    if (nd < 19 || t[i] == '0') return FIX_NONE; /* a leading zero is invalid: left to jansson */
    for (size_t k = i; k < n; k++)
        if (!is_digit(t[k])) return FIX_NONE;
    if (nd > 19) return FIX_QUOTE;
    return memcmp(t + i, i ? "9223372036854775808" : "9223372036854775807", 19) > 0 ? FIX_QUOTE : FIX_NONE;
}

#define SCAN_LEVELS 128 /* nesting levels whose arrays are measured for the largest one */

/* What one pass over the raw text found. */
typedef struct scan {
    size_t bad_utf8; /* offset of the first byte that is not valid UTF-8, or NONE_AT */
    size_t n_bad;    /* number of such bytes */
    size_t too_deep; /* offset of the bracket that exceeds the nesting limit, or NONE_AT */
    size_t n_fix;    /* number tokens to rewrite */
    /* what decoding will allocate, by its parts */
    size_t objects, arrays, members, commas, numbers, strings, string_bytes;
    size_t largest_n, largest_at; /* the array with the most elements, and where it starts */
    struct {
        size_t start, commas;
        bool is_array, nonempty;
    } level[SCAN_LEVELS];
} scan;

/* An upper bound of the bytes decoding allocates for text whose scan is sc, counted as a
 * counting allocator would see the requests of jansson's tree (objects with their hash tables,
 * arrays, strings, numbers) plus the message built from it (structs, lists, string copies):
 *   object 640 (jansson's object and buckets, a message struct), member 160 (its pair, bucket
 *   growth, a field), array 64, element or member separator 40 (slots in jansson's table and the
 *   message's list, both doubling), number 48, string 96 + 3 bytes per byte (jansson's copy, the
 *   message's copy, object keys stored twice), and the text itself twice (a rewritten copy).
 * tests/unit/test_pbjson.c checks the bound against counted allocations. */
static size_t scan_cost(const scan *sc, size_t len)
{
    return 640 * sc->objects + 160 * sc->members + 64 * sc->arrays + 40 * (sc->commas + sc->arrays) +
           48 * sc->numbers + 96 * sc->strings + 3 * sc->string_bytes + 2 * len + 4096;
}

/* Walks the text as JSON tokens at the level needed here: strings (with escapes), brackets and
 * number tokens. With out == NULL it fills sc; otherwise it writes the rewritten text to out
 * (invalid bytes replaced by MARK when mark, number tokens fixed) and returns its length. */
static size_t walk_text(const char *text, size_t len, size_t max_depth, scan *sc, char *out, bool mark)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t depth = 0, o = 0;
    bool in_str = false, esc = false;
    if (sc) {
        sc->bad_utf8 = sc->too_deep = NONE_AT;
        sc->n_bad = sc->n_fix = 0;
        sc->objects = sc->arrays = sc->members = sc->commas = sc->numbers = sc->strings = sc->string_bytes = 0;
        sc->largest_n = 0;
        sc->largest_at = NONE_AT;
    }
    for (size_t i = 0; i < len;) {
        unsigned char ch = s[i];
        if (sc && in_str) sc->string_bytes++;
        if (sc && !in_str && depth && depth <= SCAN_LEVELS && ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' &&
            ch != ']' && ch != '}')
            sc->level[depth - 1].nonempty = true;
        if (ch >= 0x80) {
            size_t k = utf8_len(s + i, len - i);
            if (!k) {
                if (sc && sc->bad_utf8 == NONE_AT) sc->bad_utf8 = i;
                if (sc) sc->n_bad++;
                if (out && mark) {
                    memcpy(out + o, MARK, MARK_LEN);
                    o += MARK_LEN;
                } else if (out) {
                    out[o++] = (char)ch;
                }
                esc = false;
                i++;
                continue;
            }
            if (out) memcpy(out + o, s + i, k);
            if (sc && in_str) sc->string_bytes += k - 1;
            o += k;
            esc = false;
            i += k;
            continue;
        }
        if (!in_str && (ch == '-' || is_digit((char)ch))) {
            size_t j = i;
            while (j < len && is_number_char(text[j])) j++;
            int fix = number_fix(text + i, j - i);
            if (sc && fix != FIX_NONE) sc->n_fix++;
            if (sc) sc->numbers++;
            if (out) {
                if (fix == FIX_QUOTE) out[o++] = '"';
                memcpy(out + o, text + i, j - i);
                o += j - i;
                if (fix == FIX_QUOTE) out[o++] = '"';
                if (fix == FIX_NEGZERO) {
                    memcpy(out + o, ".0", 2);
                    o += 2;
                }
            }
            i = j;
            continue;
        }
        if (in_str) {
            if (esc) esc = false;
            else if (ch == '\\') esc = true;
            else if (ch == '"') in_str = false;
        } else if (ch == '"') {
            in_str = true;
            if (sc) sc->strings++;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max_depth && sc && sc->too_deep == NONE_AT) sc->too_deep = i;
            if (sc) {
                if (ch == '{') sc->objects++;
                else sc->arrays++;
                if (depth <= SCAN_LEVELS) {
                    sc->level[depth - 1].start = i;
                    sc->level[depth - 1].commas = 0;
                    sc->level[depth - 1].is_array = ch == '[';
                    sc->level[depth - 1].nonempty = false;
                }
            }
        } else if ((ch == '}' || ch == ']') && depth) {
            if (sc && depth <= SCAN_LEVELS && sc->level[depth - 1].is_array) {
                size_t n = sc->level[depth - 1].nonempty ? sc->level[depth - 1].commas + 1 : 0;
                if (n > sc->largest_n) {
                    sc->largest_n = n;
                    sc->largest_at = sc->level[depth - 1].start;
                }
            }
            depth--;
        } else if (sc && ch == ',') {
            sc->commas++;
            if (depth && depth <= SCAN_LEVELS) sc->level[depth - 1].commas++;
        } else if (sc && ch == ':') {
            sc->members++;
        }
        if (out) out[o] = (char)ch;
        o++;
        i++;
    }
    return o;
}

/* Could MARK occur in the parsed text by itself (raw, or as the escape \udbff\udfff)? */
static bool may_contain_mark(const char *text, size_t len)
{
    if (memmem(text, len, MARK, MARK_LEN)) return true;
    for (size_t i = 0; i + 6 <= len; i++)
        if (text[i] == '\\' && (text[i + 1] == 'u' || text[i + 1] == 'U') && strncasecmp(text + i + 2, "dbff", 4) == 0)
            return true;
    return false;
}

static int utf8_error(dt_err *err, const char *text, size_t off)
{
    size_t line, col;
    line_col(text, off, &line, &col);
    return dt_err_set(err, DT_EINVAL, "",
                      "the request is not valid UTF-8: byte 0x%02X at line %zu, column %zu (byte offset %zu); "
                      "send JSON as UTF-8",
                      (unsigned char)text[off], line, col, off);
}

int dt_pbjson_decode_bounded(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                             size_t max_depth, size_t max_alloc, ProtobufCMessage **out, dt_err *err)
{
    if (out) *out = NULL;
    if (!d || !out || (!json && len))
        return dt_err_set(err, DT_EINVAL, "", "dt_pbjson_decode: descriptor, text and out are required");
    if (!json) json = "";
    if (max_depth == 0) max_depth = DT_PBJSON_MAX_DEPTH;
    size_t blank = 0;
    while (blank < len && strchr(" \t\r\n", json[blank]) && json[blank]) blank++;
    if (blank == len)
        return dt_err_set(err, DT_EINVAL, "", "empty JSON text: expected an object (message %s)", d->name);

    scan sc;
    walk_text(json, len, max_depth, &sc, NULL, false);
    if (sc.too_deep != NONE_AT) {
        size_t line, col;
        line_col(json, sc.too_deep, &line, &col);
        return dt_err_set(err, DT_EINVAL, "", "JSON nested deeper than %zu levels at line %zu, column %zu",
                          max_depth, line, col);
    }
    if (max_alloc != SIZE_MAX && scan_cost(&sc, len) > max_alloc) {
        if (sc.largest_n > 1000) {
            size_t line, col;
            line_col(json, sc.largest_at, &line, &col);
            return dt_err_set(err, DT_ELIMIT, "",
                              "decoding the request would take more than %zu bytes of memory (the largest list, "
                              "at line %zu, column %zu, has %zu entries); send fewer or smaller values per request",
                              max_alloc, line, col, sc.largest_n);
        }
        return dt_err_set(err, DT_ELIMIT, "",
                          "decoding the request would take more than %zu bytes of memory; send a smaller request",
                          max_alloc);
    }
    const char *text = json;
    size_t tlen = len;
    char *copy = NULL;
    bool marked = sc.bad_utf8 != NONE_AT && !may_contain_mark(json, len);
    if (marked || sc.n_fix) {
        size_t cap = len + sc.n_bad * (MARK_LEN - 1) + sc.n_fix * 2;
        copy = malloc(cap ? cap : 1);
        if (!copy) return dt_err_set(err, DT_ENOMEM, "", "out of memory decoding JSON");
        tlen = walk_text(json, len, max_depth, NULL, copy, marked);
        text = copy;
    }

    json_error_t je;
    /* protojson refuses an object that names a field twice; so does jansson with this flag */
    json_t *root = json_loadb(text, tlen, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        free(copy);
        /* jansson reports a failed allocation as such, or (in its set-up) not at all */
        if (json_error_code(&je) == json_error_out_of_memory || je.text[0] == '\0')
            return dt_err_set(err, DT_ENOMEM, "", "out of memory parsing JSON");
        if (sc.bad_utf8 != NONE_AT) return utf8_error(err, json, sc.bad_utf8);
        return dt_err_set(err, DT_EINVAL, "", "malformed JSON at line %d, column %d: %s", je.line, je.column,
                          je.text);
    }
    int rc;
    if (!json_is_object(root)) {
        rc = dt_err_set(err, DT_EINVAL, "", "expected a JSON object (message %s), got %s", d->name,
                        jtype(root));
    } else {
        dec c = {.err = err, .max_depth = max_depth, .marked = marked};
        ProtobufCMessage *m = NULL;
        rc = decode_message(&c, d, root, 1, &m);
        if (!rc && marked) { /* the invalid bytes were in a key or an ignored field */
            protobuf_c_message_free_unpacked(m, NULL);
            rc = utf8_error(err, json, sc.bad_utf8);
        } else if (!rc) {
            *out = m;
        }
    }
    json_decref(root);
    free(copy);
    return rc;
}

int dt_pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                     size_t max_depth, ProtobufCMessage **out, dt_err *err)
{
    return dt_pbjson_decode_bounded(d, json, len, max_depth, SIZE_MAX, out, err);
}

/* ---------------------------------------------------------------- encoding */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_s(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_c(buf *b, char ch) { put(b, &ch, 1); }

static void put_f(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_f(buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal; invalid UTF-8 becomes U+FFFD. */
static void put_string(buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    put_c(b, '"');
    size_t run = 0; /* start of bytes copied verbatim */
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        const char *esc = NULL;
        char tmp[8];
        size_t k = 1;
        if (ch == '"') esc = "\\\"";
        else if (ch == '\\') esc = "\\\\";
        else if (ch == '\n') esc = "\\n";
        else if (ch == '\r') esc = "\\r";
        else if (ch == '\t') esc = "\\t";
        else if (ch == '\b') esc = "\\b";
        else if (ch == '\f') esc = "\\f";
        else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            esc = tmp;
        } else if (ch >= 0x80) {
            k = utf8_len(s + i, n - i);
            if (!k) {
                esc = "\xEF\xBF\xBD";
                k = 1;
            }
        }
        if (esc) {
            put(b, str + run, i - run);
            put_s(b, esc);
            run = i + k;
        }
        i += k;
    }
    put(b, str + run, n - run);
    put_c(b, '"');
}

static void put_key(buf *b, const char *name, bool original)
{
    put_c(b, '"');
    if (original) {
        put_s(b, name);
    } else {
        char tmp[128];
        size_t n = dt_pbjson_json_name(name, tmp, sizeof tmp);
        if (n < sizeof tmp) {
            put(b, tmp, n);
        } else { /* absurdly long name: convert character by character */
            bool up = false;
            for (const char *p = name; *p; p++) {
                if (*p == '_') {
                    up = true;
                    continue;
                }
                put_c(b, up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p);
                up = false;
            }
        }
    }
    put_s(b, "\":");
}

/* Writes x in decimal at out, NUL-terminated (at most 12 bytes). */
static void write_int(char *out, int x)
{
    char tmp[12];
    int n = 0;
    unsigned u = x < 0 ? 0u - (unsigned)x : (unsigned)x;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) *out++ = '-';
    while (n) *out++ = tmp[--n];
    *out = '\0';
}

/* Rounds the n significant digits d (a decimal mantissa, exponent *exp) to p < n digits into out,
 * half away from zero, carrying into the exponent. Returns false on an exact tie (digit p is 5 and
 * nothing follows), where the digits alone cannot tell which way the binary value lies. */
static bool round_digits(const char *d, int n, int p, char *out, int *exp)
{
    memcpy(out, d, (size_t)p);
    bool up = d[p] > '5';
    if (d[p] == '5') {
        bool rest = false;
        for (int i = p + 1; i < n; i++) rest |= d[i] != '0';
        if (!rest) return false;
        up = true;
    }
    if (!up) return true;
    int i = p - 1;
    while (i >= 0 && out[i] == '9') out[i--] = '0';
    if (i >= 0) {
        out[i]++;
    } else { /* 99.9 -> 100 */
        out[0] = '1';
        ++*exp;
    }
    return true;
}

/* The shortest decimal that reads back as the same float (is_float) or double, laid out as
 * protobuf-go (and JavaScript) do: plain notation for 1e-6 <= |v| < 1e21 ("100000", "0.0000015"),
 * exponent notation outside ("1e+21", "1.5e-7"); negative zero as "-0.0". */
static void put_float(buf *b, double v, bool is_float)
{
    if (isnan(v)) {
        put_s(b, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        put_s(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    if (v == 0) { /* "-0" would read back as the integer 0 in many parsers (Python, jansson) */
        put_s(b, signbit(v) ? "-0.0" : "0");
        return;
    }
    /* all significant digits once (9 always read back as the same float, 17 as the same double),
     * then the fewest that still do, found by binary search over decimal roundings of them */
    int maxp = is_float ? 9 : 17;
    char full[40], digits[24];
    snprintf(full, sizeof full, "%.*e", maxp - 1, v);
    const char *p = full + (full[0] == '-');
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    int lo = 1, hi = maxp, best_exp = exp;
    char best[24];
    memcpy(best, digits, (size_t)maxp);
    while (lo < hi) {
        int mid = (lo + hi) / 2, e = exp;
        char cand[24];
        if (!round_digits(digits, maxp, mid, cand, &e)) { /* an exact tie: let printf round */
            char tmp[40];
            snprintf(tmp, sizeof tmp, "%.*e", mid - 1, v);
            const char *q = tmp + (tmp[0] == '-');
            int k = 0;
            for (; *q && *q != 'e'; q++)
                if (*q != '.') cand[k++] = *q;
            e = atoi(q + 1);
        }
        char text[48];
        size_t t = 0;
        if (v < 0) text[t++] = '-';
        text[t++] = cand[0];
        text[t++] = '.';
        memcpy(text + t, cand + 1, (size_t)mid - 1);
        t += (size_t)mid - 1;
        text[t++] = 'e';
        write_int(text + t, e);
        bool same = is_float ? strtof(text, NULL) == (float)v : strtod(text, NULL) == v;
        if (same) {
            hi = mid;
            memcpy(best, cand, (size_t)mid);
            best_exp = e;
        } else {
            lo = mid + 1;
        }
    }
    nd = hi;
    memcpy(digits, best, (size_t)nd);
    exp = best_exp;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    double a = fabs(v);
    bool sci = is_float ? ((float)a < 1e-6f || (float)a >= 1e21f) : (a < 1e-6 || a >= 1e21);
    char out[64];
    size_t o = 0;
    if (v < 0) out[o++] = '-';
    if (sci) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)nd - 1);
            o += (size_t)nd - 1;
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp >= 0) { /* exp <= 20 here */
        for (int i = 0; i <= exp; i++) out[o++] = i < nd ? digits[i] : '0';
        if (nd > exp + 1) {
            out[o++] = '.';
            for (int i = exp + 1; i < nd; i++) out[o++] = digits[i];
        }
    } else { /* -6 <= exp < 0 */
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
        memcpy(out + o, digits, (size_t)nd);
        o += (size_t)nd;
    }
    put(b, out, o);
}

static void put_base64(buf *b, const uint8_t *s, size_t n)
{
    put_c(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16;
        if (i + 1 < n) x |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n) x |= s[i + 2];
        char q[4] = {B64[x >> 18], B64[(x >> 12) & 63], i + 1 < n ? B64[(x >> 6) & 63] : '=',
                     i + 2 < n ? B64[x & 63] : '='};
        put(b, q, 4);
    }
    put_c(b, '"');
}

static bool encode_message(buf *b, const ProtobufCMessage *m, const dt_pbjson_opts *o, size_t depth);

/* One value of field f's type at p (a singular member, a list element or a map value). */
static bool encode_value(buf *b, const ProtobufCFieldDescriptor *f, const void *p, const dt_pbjson_opts *o,
                         size_t depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        put_f(b, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        put_f(b, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        put_f(b, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        put_f(b, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_float(b, *(const float *)p, true);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_float(b, *(const double *)p, false);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        put_s(b, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int x = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, x);
        if (ev) put_string(b, ev->name, strlen(ev->name));
        else put_f(b, "%d", x);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        put_string(b, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        put_base64(b, bd->data, bd->data ? bd->len : 0);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (!sub) put_s(b, "{}"); /* a set member without a message: packs as an empty one */
        else return encode_message(b, sub, o, depth);
        break;
    }
    }
    return true;
}

/* Is field f of m set, in the sense of "would protojson write it without EmitUnpopulated"? */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) return *CMEMBER(m, f->quantifier_offset, uint32_t) == f->id;
    const void *p = CMEMBER(m, f->offset, char);
    switch (f->label) {
    case PROTOBUF_C_LABEL_REPEATED:
        return *CMEMBER(m, f->quantifier_offset, size_t) > 0;
    case PROTOBUF_C_LABEL_REQUIRED:
        return true;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(void *const *)p != NULL;
        if (f->type == PROTOBUF_C_TYPE_STRING)
            return *(char *const *)p != NULL && *(char *const *)p != (const char *)f->default_value;
        return *CMEMBER(m, f->quantifier_offset, protobuf_c_boolean) != 0;
    case PROTOBUF_C_LABEL_NONE:
        break;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p != NULL;
    case PROTOBUF_C_TYPE_STRING:
        return *(char *const *)p != NULL && **(char *const *)p != '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: {
        uint32_t bits; /* -0.0f counts as set, as in protobuf-go */
        memcpy(&bits, p, sizeof bits);
        return bits != 0;
    }
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    default: { /* 64-bit integers and double */
        uint64_t bits;
        memcpy(&bits, p, sizeof bits);
        return bits != 0;
    }
    }
}

static bool encode_map(buf *b, const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries, size_t n,
                       const dt_pbjson_opts *o, size_t depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    put_c(b, '{');
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *e = entries[i];
        if (!e) continue;
        if (!first) put_c(b, ',');
        first = false;
        const void *k = CMEMBER(e, kf->offset, char);
        switch (kf->type) {
        case PROTOBUF_C_TYPE_STRING: {
            const char *s = *(char *const *)k;
            put_string(b, s ? s : "", s ? strlen(s) : 0);
            break;
        }
        case PROTOBUF_C_TYPE_BOOL:
            put_s(b, *(const protobuf_c_boolean *)k ? "\"true\"" : "\"false\"");
            break;
        default:
            /* integer keys: the same digits as the value form, always quoted */
            if (kf->type == PROTOBUF_C_TYPE_INT64 || kf->type == PROTOBUF_C_TYPE_SINT64 ||
                kf->type == PROTOBUF_C_TYPE_SFIXED64 || kf->type == PROTOBUF_C_TYPE_UINT64 ||
                kf->type == PROTOBUF_C_TYPE_FIXED64) {
                encode_value(b, kf, k, o, depth);
            } else {
                put_c(b, '"');
                encode_value(b, kf, k, o, depth);
                put_c(b, '"');
            }
        }
        put_c(b, ':');
        if (!encode_value(b, vf, CMEMBER(e, vf->offset, char), o, depth + 1)) return false;
    }
    put_c(b, '}');
    return true;
}

static bool encode_message(buf *b, const ProtobufCMessage *m, const dt_pbjson_opts *o, size_t depth)
{
    if (depth > o->max_depth) return false;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    put_c(b, '{');
    bool first = true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        bool present = field_present(m, f);
        if (!present && (!o->emit_defaults || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))) continue;
        if (!first) put_c(b, ',');
        first = false;
        put_key(b, f->name, o->original_names);
        const void *p = CMEMBER(m, f->offset, char);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *CMEMBER(m, f->quantifier_offset, size_t);
            const char *arr = *(char *const *)p;
            if (!arr) n = 0;
            if (is_map(d, f)) {
                if (!encode_map(b, f, (ProtobufCMessage *const *)arr, n, o, depth + 1)) return false;
                continue;
            }
            size_t es = elem_size(f->type);
            put_c(b, '[');
            for (size_t k = 0; k < n; k++) {
                if (k) put_c(b, ',');
                if (!encode_value(b, f, arr + k * es, o, depth + 2)) return false;
            }
            put_c(b, ']');
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && !present) {
            put_s(b, "null");
        } else if (!encode_value(b, f, p, o, depth + 1)) {
            return false;
        }
    }
    put_c(b, '}');
    return true;
}

char *dt_pbjson_encode(const ProtobufCMessage *msg, const dt_pbjson_opts *opts, size_t *len)
{
    dt_pbjson_opts o = {0};
    if (opts) o = *opts;
    if (o.max_depth == 0) o.max_depth = DT_PBJSON_MAX_DEPTH;
    if (len) *len = 0;
    if (!msg) return NULL;
    buf b = {0};
    bool ok = encode_message(&b, msg, &o, 1);
    put(&b, "", 0); /* ensures a buffer even for an empty output */
    if (!ok || b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    b.p[b.n] = '\0';
    if (len) *len = b.n;
    return b.p;
}
