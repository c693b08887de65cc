/* fuzz_twirp.h - the message types the Twirp fuzz targets decode: every request of
 * dovetail.v1.Matchmaker (what the daemon decodes from clients), then every response (what the
 * CLI and clients decode from the daemon, and what the daemon encodes). The first input byte picks
 * one (its low 4 bits and bit 7 as a 5-bit number, modulo the count) and carries option bits in
 * bits 4-6.
 */
#ifndef DT_FUZZ_TWIRP_H
#define DT_FUZZ_TWIRP_H

#include "dovetail/v1/matchmaker.pb-c.h"

static const ProtobufCMessageDescriptor *const fz_twirp_types[] = {
    &dovetail__v1__upsert_records_request__descriptor,
    &dovetail__v1__delete_records_request__descriptor,
    &dovetail__v1__get_record_request__descriptor,
    &dovetail__v1__match_request__descriptor,
    &dovetail__v1__stats_request__descriptor,
    &dovetail__v1__pair_event_request__descriptor,
    &dovetail__v1__record_outcome_request__descriptor,
    &dovetail__v1__start_rerank_request__descriptor,
    &dovetail__v1__get_job_request__descriptor,
    &dovetail__v1__cancel_job_request__descriptor,
    &dovetail__v1__list_jobs_request__descriptor,
    &dovetail__v1__upsert_records_response__descriptor,
    &dovetail__v1__delete_records_response__descriptor,
    &dovetail__v1__get_record_response__descriptor,
    &dovetail__v1__match_response__descriptor,
    &dovetail__v1__stats_response__descriptor,
    &dovetail__v1__pair_event_response__descriptor,
    &dovetail__v1__record_outcome_response__descriptor,
    &dovetail__v1__start_rerank_response__descriptor,
    &dovetail__v1__get_job_response__descriptor,
    &dovetail__v1__cancel_job_response__descriptor,
    &dovetail__v1__list_jobs_response__descriptor,
};
#define FZ_TWIRP_NTYPES (sizeof fz_twirp_types / sizeof fz_twirp_types[0])
#define FZ_TWIRP_NREQUESTS 11

static inline const ProtobufCMessageDescriptor *fz_twirp_type(uint8_t b)
{
    return fz_twirp_types[((b & 0x0f) | ((b & 0x80) >> 3)) % FZ_TWIRP_NTYPES];
}

#endif
