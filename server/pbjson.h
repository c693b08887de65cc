/* pbjson.h - ProtoJSON (the proto3 JSON mapping) for protobuf-c messages.
 *
 * Converts between JSON text and any protobuf-c message, driven only by protobuf-c's run-time
 * descriptors: no generated code per message. Used by the RPC layer for `application/json`
 * requests and responses, so that any Twirp client (camelCase or snake_case, strings for 64-bit
 * integers, enum names) talks to the server unchanged.
 *
 * Decoding follows protobuf's JSON mapping as the Go reference implements it (protojson with
 * DiscardUnknown):
 *   - keys: the lowerCamelCase JSON name ("priceMin") or the proto name ("price_min"); giving one
 *     field under both spellings is an error; unknown keys are ignored;
 *   - null: the field stays unset (null inside a list, or as a map value, is an error);
 *   - integers: JSON numbers or strings holding a JSON number ("42", "1e2"); exponent and
 *     fraction forms are accepted when the value is integral; fractional or out-of-range -> error;
 *   - float/double: numbers, numeric strings, "NaN", "Infinity", "-Infinity"; a float that
 *     overflows float32 -> error;
 *   - bool: true / false only; enums: the value's name, or its number (any int32: proto3 enums
 *     are open); an unknown name is an error (protojson with DiscardUnknown drops it silently,
 *     which would hide a misspelt mode from the client);
 *   - bytes: base64, standard or URL-safe alphabet, padded or not;
 *   - strings: valid UTF-8 without NUL characters;
 *   - oneofs: at most one member per oneof may be non-null;
 *   - maps: protobuf-c has no map type: a map field is a repeated `XxxEntry` message (key = 1,
 *     value = 2) nested in the parent. A repeated message field whose type is named
 *     `<Parent>.<CamelField>Entry` with exactly those two fields is treated as a map, taking and
 *     giving a JSON object. A hand-written message of that exact shape and name is
 *     indistinguishable and is treated as a map too.
 * Well-known types (Timestamp, Duration, Struct, wrappers, Any) get no special JSON form: they
 * are encoded as ordinary messages.
 *
 * Numbers: a bare integer beyond the int64 range is read exactly (it is turned into a string
 * before jansson parses it, so a string field would accept it too); a bare number in fraction or
 * exponent form (1.0, 1e2) goes through a double, so for integer fields it is exact up to 2^53;
 * inside a string every form is exact. Bare "-0" keeps its sign for float and double fields.
 *
 * Out of memory: our allocations are all checked. jansson 2.14 ignores some failed allocations of
 * its own and may then drop bytes or abort (jansson issue #362); a process that must never act on
 * such input should install aborting allocators with json_set_alloc_funcs at start-up.
 *
 * Numbers are read and written with strtod/snprintf: the process must keep the "C" LC_NUMERIC
 * locale (the default unless it calls setlocale).
 *
 * Thread-safety: no shared state; any number of threads may call any function at once.
 * This module does no I/O and knows nothing of HTTP or Twirp.
 */
#ifndef DT_PBJSON_H
#define DT_PBJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "dt.h"

/* Default nesting limit (JSON objects and arrays, the outermost object counting as 1). */
#define DT_PBJSON_MAX_DEPTH 64

typedef struct dt_pbjson_opts {
    bool original_names; /* keys as in the .proto ("price_min") instead of lowerCamelCase */
    bool emit_defaults;  /* also write fields holding their default: 0, "", false, the enum's
                            0 value, [] and {}; unset messages as null. Unset oneofs are still
                            left out (this is protojson's EmitUnpopulated). */
    size_t max_depth;    /* 0 = DT_PBJSON_MAX_DEPTH */
} dt_pbjson_opts;

/* Decodes the JSON text json[0..len) (no NUL terminator needed) into a new message of type d.
 *
 * On success returns 0 and *out owns a message allocated exactly as protobuf_c_message_unpack
 * with the default allocator would: free it with protobuf_c_message_free_unpacked(*out, NULL).
 * It can be packed with protobuf_c_message_pack like any unpacked message.
 * max_depth bounds the nesting of JSON objects and arrays (0 = DT_PBJSON_MAX_DEPTH); deeper input
 * is refused before it is parsed, so stack use stays bounded whatever the input.
 *
 * Errors (*out is then NULL and nothing is leaked):
 *   -DT_EINVAL  err->field is the JSON path of the offending value as the caller spelled it
 *               ("records[2].trl", "counts[\"a\"]"; a path too long for err->field keeps its
 *               end, after "...") and err->msg says what was expected;
 *               for text that is not JSON at all (or not UTF-8, or nested too deeply, or an
 *               object naming a key twice, which protojson refuses too) err->field is "" and
 *               err->msg gives the line and column;
 *   -DT_ERANGE  a well-formed number outside the range of its field (k: -1 for a uint32, 1e39
 *               for a float): err as for -DT_EINVAL (dovetaild answers invalid_argument, as it
 *               does for the same value in protobuf, rather than malformed);
 *   -DT_ENOMEM  an allocation failed.
 * err may be NULL. Thread-safe. */
int dt_pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                     size_t max_depth, ProtobufCMessage **out, dt_err *err);

/* dt_pbjson_decode, refusing before anything is allocated text whose decoding would allocate
 * more than max_alloc bytes (SIZE_MAX: no bound) by an estimate from one pass over the text
 * (objects, members, arrays, elements, numbers, strings and their bytes, each charged at least
 * what jansson and the decoded message take for it): -DT_ELIMIT with err->field "" and err->msg
 * giving the figures and where the largest list starts. Other errors as dt_pbjson_decode. */
int dt_pbjson_decode_bounded(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                             size_t max_depth, size_t max_alloc, ProtobufCMessage **out, dt_err *err);

/* Encodes msg as ProtoJSON: keys in lowerCamelCase (or proto names with opts->original_names),
 * fields in field-number order, 64-bit integers as decimal strings, enums by name (by number when
 * the value has no name), bytes as padded standard base64, NaN and infinities as "NaN",
 * "Infinity", "-Infinity", floats and doubles in the shortest form that reads back to the same
 * value (plain notation for 1e-6 <= |v| < 1e21 as protobuf-go writes them, "-0.0" for negative
 * zero); fields at their default are left out unless opts->emit_defaults. A oneof member is
 * written whenever it is the set member, even when its value is zero. Invalid UTF-8 in a string
 * field is written as U+FFFD. opts may be NULL (all defaults).
 *
 * Returns a malloc'd NUL-terminated string the caller frees, and its length in *len (len may be
 * NULL); NULL when out of memory or when msg nests deeper than opts->max_depth (only possible
 * with a recursive message type). msg is only read. Thread-safe. */
char *dt_pbjson_encode(const ProtobufCMessage *msg, const dt_pbjson_opts *opts, size_t *len);

/* Writes the lowerCamelCase JSON name of the proto field name `name` ("price_min" -> "priceMin",
 * protoc's rule: each '_' is dropped and the next letter upper-cased) into out (cap bytes,
 * NUL-terminated, truncated to fit) and returns its full length. For error messages and routing
 * code that must name fields the way JSON clients see them. */
size_t dt_pbjson_json_name(const char *name, char *out, size_t cap);

#endif
