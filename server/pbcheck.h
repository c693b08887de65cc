/* pbcheck.h - checks a protobuf-encoded message against its descriptor before protobuf-c unpacks
 * it.
 *
 * protobuf-c 1.4.1 takes any bytes in a string field (no UTF-8 check, and a NUL byte silently
 * cuts the C string short), allocates whatever a body declares without any budget, and merges
 * every repeated occurrence of a singular message field by copying its lists again (quadratic
 * time). dt_pbcheck walks the wire format once, guided by the descriptors, allocating nothing, and
 *   - refuses a string field at any depth that is not valid UTF-8 (utf8proc's rules: no overlong
 *     forms, surrogates or values above U+10FFFF) or that holds a NUL byte;
 *   - refuses structure protobuf-c would refuse (truncated keys or values, lengths past the end,
 *     field number 0, groups, packed data of the wrong size) and a singular message field given
 *     more than once;
 *   - computes an upper bound of the bytes protobuf_c_message_unpack allocates for the message
 *     (structures, lists, copies of strings and unknown fields, its scratch space, malloc's
 *     overhead) and refuses the message when that exceeds a budget.
 * Every refusal names where: the field path as a JSON client would spell it with proto names
 * ("records[3].title"), or the byte offset for a broken key at the top level.
 * Not checked: values (ranges, enums, required fields) and wire types that do not match a field's
 * type (protobuf-c refuses those itself).
 * Thread-safe and stateless; recursion is bounded by DT_PBCHECK_MAX_DEPTH.
 */
#ifndef DT_PBCHECK_H
#define DT_PBCHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "dt.h"

#define DT_PBCHECK_MAX_DEPTH 32 /* nested messages; deeper input is refused */

typedef struct dt_pbcheck_info {
    size_t alloc;      /* upper bound of unpack's allocations (so far, when refused), bytes */
    char largest[64];  /* path of the list with the most entries, "" when there is none */
    size_t largest_n;  /* its number of entries */
} dt_pbcheck_info;

/* Checks data[0..len) as an encoded message of type d; max_alloc bounds info->alloc (SIZE_MAX:
 * no bound). Returns 0 when protobuf_c_message_unpack may be given the bytes, or
 *   -DT_EINVAL  err->field names the field (or is empty for the body itself) and err->msg says
 *               what is wrong with it (not UTF-8, a NUL byte, truncated, ...);
 *   -DT_ELIMIT  unpacking would allocate more than max_alloc: err->field names the longest list
 *               when there is one and err->msg gives the figures.
 * info (may be NULL) is filled in every case. err may be NULL. */
int dt_pbcheck(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len, size_t max_alloc,
               dt_pbcheck_info *info, dt_err *err);

/* The charge dt_pbcheck makes for one allocation of n bytes (n rounded up to malloc's chunk
 * size, with its header). Exposed so that tests can compare the bound with a counting
 * allocator. */
size_t dt_pbcheck_chunk(size_t n);

#endif
