/* metrics.h - the daemon's counters and latency histograms, rendered in Prometheus text format.
 *
 * Counters and histograms are lock-free (C11 atomics): workers and the loop update them freely.
 * Rendering reads them without a lock, so one scrape may mix values a few updates apart.
 * Gauges that live elsewhere (index sizes, cache state) are appended by the caller's callback.
 */
#ifndef DT_METRICS_H
#define DT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DT_METRICS_METHODS 16 /* RPC methods tracked (index = the service descriptor's method index) */
#define DT_METRICS_CODES 18   /* Twirp codes tracked (see dt_twirp_code in http.h) */
#define DT_METRICS_BUCKETS 16

typedef struct dt_metrics {
    const char *method_names[DT_METRICS_METHODS];
    size_t n_methods;
    const char *code_names[DT_METRICS_CODES];
    size_t n_codes;
    _Atomic uint64_t requests[DT_METRICS_METHODS][DT_METRICS_CODES];
    _Atomic uint64_t latency_bucket[DT_METRICS_METHODS][DT_METRICS_BUCKETS]; /* non-cumulative */
    _Atomic uint64_t latency_sum_us[DT_METRICS_METHODS];
    _Atomic uint64_t latency_count[DT_METRICS_METHODS];
    _Atomic uint64_t http_other[4]; /* healthz, metrics, bad route, other */
    _Atomic uint64_t batches, batched_queries;
    _Atomic uint64_t queue_rejections;
    _Atomic uint64_t deadline_exceeded;
    _Atomic int64_t in_flight;
} dt_metrics;

/* The upper bounds (seconds) of the latency buckets; the last bucket is +Inf. */
extern const double dt_metrics_bounds[DT_METRICS_BUCKETS - 1];

void dt_metrics_init(dt_metrics *m);
/* Records one finished RPC: method index, Twirp code index, latency in microseconds. */
void dt_metrics_request(dt_metrics *m, size_t method, size_t code, uint64_t us);
/* Writes every metric to f in text format 0.0.4 (counters with _total, histograms with buckets,
 * _sum and _count). The caller appends its own gauges afterwards. */
void dt_metrics_render(const dt_metrics *m, FILE *f);
/* Writes a label value escaped as the text format requires (\\, \", \n). */
void dt_metrics_label(FILE *f, const char *v);

#endif
