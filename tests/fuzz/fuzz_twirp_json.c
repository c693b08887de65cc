/* fuzz_twirp_json.c - libFuzzer target: JSON Twirp bodies through dt_pbjson_decode.
 *
 * Input: one byte choosing the message type (fuzz_twirp.h; bit 4: re-encode with proto field
 * names, bit 5: with defaults emitted, bit 6: nesting limit 4 instead of the daemon's 64), then
 * the JSON text. Checks:
 *   - a refusal leaves *out NULL and fills err (code, message);
 *   - a decoded message packs to protobuf that protobuf-c unpacks and packs to the same bytes;
 *   - dt_pbjson_encode of it decodes again, the JSON is a fixed point, and (when nothing JSON
 *     cannot carry is involved) the message is unchanged: same packed bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "fuzz_twirp.h"
#include "fuzz_util.h"
#include "pbjson.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = fz_twirp_type(data[0]);
    dt_pbjson_opts opts = {(data[0] & 0x10) != 0, (data[0] & 0x20) != 0, 0};
    size_t depth = (data[0] & 0x40) ? 4 : 64;
    ProtobufCMessage *m = (ProtobufCMessage *)&opts; /* must be reset to NULL on failure */
    dt_err err = DT_ERR_INIT;
    int rc = dt_pbjson_decode(d, (const char *)data + 1, size - 1, depth, &m, &err);
    if (rc != 0) {
        fz_check(m == NULL, "%s: *out not NULL after error %d", d->name, rc);
        fz_check(rc == -DT_EINVAL || rc == -DT_ERANGE || rc == -DT_ENOMEM, "%s: unexpected error %d", d->name, rc);
        fz_check(err.code == -rc, "%s: err.code %d for return %d", d->name, err.code, rc);
        fz_check(err.msg[0] != 0, "%s: error %d without a message", d->name, rc);
        return 0;
    }
    fz_check(m != NULL && m->descriptor == d, "%s: success without a message of that type", d->name);

    bool unknown = false, inexact = false;
    fz_pb_scan(m, &unknown, &inexact);
    size_t n1, n2;
    uint8_t *p1 = fz_pb_pack(m, &n1);
    ProtobufCMessage *m1 = protobuf_c_message_unpack(d, NULL, n1, p1);
    fz_check(m1 != NULL || unknown, "%s: protobuf-c cannot unpack a message dt_pbjson_decode built", d->name);
    if (m1) {
        uint8_t *p2 = fz_pb_pack(m1, &n2);
        fz_check(n1 == n2 && memcmp(p1, p2, n1) == 0, "%s: pack(unpack(pack(m))) != pack(m)", d->name);
        free(p2);
        protobuf_c_message_free_unpacked(m1, NULL);
    }

    size_t l1 = 0, l2 = 0;
    char *e1 = dt_pbjson_encode(m, &opts, &l1);
    fz_check(e1 != NULL, "%s: dt_pbjson_encode failed", d->name);
    ProtobufCMessage *m2 = NULL;
    rc = dt_pbjson_decode(d, e1, l1, 0, &m2, &err);
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
