/* fuzz_twirp_pb.c - libFuzzer target: protobuf-encoded Twirp bodies.
 *
 * Input: one byte choosing the message type (fuzz_twirp.h; bit 4: JSON with proto field names,
 * bit 5: JSON with defaults emitted), then the body. Each body goes through
 * protobuf_c_message_unpack as the daemon's application/protobuf path does; a message that
 * unpacks is then checked:
 *   - pack(unpack(pack(m))) == pack(m) (protobuf-c re-encodes what it decoded; with unknown
 *     fields protobuf-c 1.4.1 may re-pack one it cannot read back, so then only pack is run);
 *   - dt_pbjson_encode(m) gives JSON that dt_pbjson_decode takes back, and encoding that again
 *     gives the same text (the JSON form is a fixed point);
 *   - when m holds nothing JSON cannot carry (unknown fields, invalid UTF-8, NaN payloads), the
 *     message decoded from its JSON packs to the same bytes as m.
 * Every body also goes through dt_pbcheck (the daemon's check before unpacking): when it lets a
 * body through and protobuf-c unpacks it, every string is valid UTF-8 without NUL (by the
 * matcher's own validator) and protobuf-c asked a counting allocator for no more than the bound
 * dt_pbcheck computed.
 * Not covered: dt_rpc_precheck (needs a dt_server; fuzz_http drives it through evhttp).
 * libprotobuf-c itself is Debian's build, without sanitizers: memory errors inside it are only
 * seen through the interceptors (memcpy, malloc), not its own code.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "fuzz_twirp.h"
#include "fuzz_util.h"
#include "pbcheck.h"
#include "pbjson.h"

static void *count_alloc(void *ud, size_t n)
{
    *(size_t *)ud += n;
    return malloc(n);
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

/* Every string of m and the messages below it is valid UTF-8 (a NUL would have cut it short, so
 * the check is only that what is left is valid). */
static bool strings_valid(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        size_t n = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            base = *(const char *const *)base;
        } else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id) {
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                const char *s = ((const char *const *)base)[k];
                if (s && dt_utf8_valid_prefix(s, strlen(s)) != strlen(s)) return false;
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const ProtobufCMessage *sub = ((const ProtobufCMessage *const *)base)[k];
                if (sub && !strings_valid(sub)) return false;
            }
        }
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const ProtobufCServiceDescriptor *svc = &dovetail__v1__matchmaker__descriptor;
    for (unsigned i = 0; i < svc->n_methods; i++) {
        bool found = false;
        for (size_t t = 0; t < FZ_TWIRP_NREQUESTS; t++) found |= fz_twirp_types[t] == svc->methods[i].input;
        fz_check(found, "request type %s of %s is not in fuzz_twirp.h", svc->methods[i].input->name,
                 svc->methods[i].name);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = fz_twirp_type(data[0]);
    dt_pbjson_opts opts = {(data[0] & 0x10) != 0, (data[0] & 0x20) != 0, 0};
    dt_pbcheck_info info;
    dt_err perr = DT_ERR_INIT;
    int prc = dt_pbcheck(d, data + 1, size - 1, SIZE_MAX, &info, &perr);
    fz_check(prc == 0 || (prc == -DT_EINVAL && perr.msg[0]), "%s: dt_pbcheck returned %d (%s)", d->name, prc,
             perr.msg);
    size_t asked = 0;
    ProtobufCAllocator counting = {count_alloc, count_free, &asked};
    ProtobufCMessage *mc = protobuf_c_message_unpack(d, &counting, size - 1, data + 1);
    if (prc == 0 && mc) {
        fz_check(asked <= info.alloc, "%s: protobuf-c asked for %zu bytes, dt_pbcheck's bound is %zu", d->name, asked,
                 info.alloc);
        fz_check(strings_valid(mc), "%s: dt_pbcheck let through a string that is not UTF-8", d->name);
    }
    if (mc) protobuf_c_message_free_unpacked(mc, NULL);

    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m) return 0;

    bool unknown = false, inexact = false;
    fz_pb_scan(m, &unknown, &inexact);
    size_t n1, n2;
    uint8_t *p1 = fz_pb_pack(m, &n1);
    ProtobufCMessage *m1 = protobuf_c_message_unpack(d, NULL, n1, p1);
    fz_check(m1 != NULL || unknown, "%s: protobuf-c cannot unpack its own packing of a message", d->name);
    if (m1) {
        uint8_t *p2 = fz_pb_pack(m1, &n2);
        fz_check(n1 == n2 && memcmp(p1, p2, n1) == 0, "%s: pack(unpack(pack(m))) != pack(m)", d->name);
        free(p2);
        protobuf_c_message_free_unpacked(m1, NULL);
    }

    size_t l1 = 0, l2 = 0;
    char *e1 = dt_pbjson_encode(m, &opts, &l1);
    fz_check(e1 != NULL, "%s: dt_pbjson_encode failed", d->name);
    fz_check(strlen(e1) == l1, "%s: dt_pbjson_encode length %zu, string of %zu", d->name, l1, strlen(e1));
    ProtobufCMessage *m2 = NULL;
    dt_err err = DT_ERR_INIT;
    int rc = dt_pbjson_decode(d, e1, l1, 0, &m2, &err);
    fz_check(rc == 0, "%s: dt_pbjson_decode refuses dt_pbjson_encode's output (%s: %s): %s", d->name,
             err.field, err.msg, e1);
    char *e2 = dt_pbjson_encode(m2, &opts, &l2);
    fz_check(e2 != NULL, "%s: dt_pbjson_encode failed on a decoded message", d->name);
    fz_check(l1 == l2 && memcmp(e1, e2, l1) == 0, "%s: JSON not a fixed point:\n  %s\n  %s", d->name, e1, e2);
    if (!inexact) {
        uint8_t *q = fz_pb_pack(m2, &n2);
        fz_check(n1 == n2 && memcmp(p1, q, n1) == 0, "%s: the message changed through JSON %s", d->name, e1);
        free(q);
    }
    free(e2);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(e1);
    free(p1);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
