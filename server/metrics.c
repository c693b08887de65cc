/* metrics.c - counters and histograms in Prometheus text format 0.0.4 (see metrics.h). */
#include "metrics.h"

#include <string.h>

const double dt_metrics_bounds[DT_METRICS_BUCKETS - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 10};

void dt_metrics_init(dt_metrics *m)
{
    memset(m, 0, sizeof *m);
}

void dt_metrics_request(dt_metrics *m, size_t method, size_t code, uint64_t us)
{
    if (method >= DT_METRICS_METHODS || code >= DT_METRICS_CODES) return;
    atomic_fetch_add_explicit(&m->requests[method][code], 1, memory_order_relaxed);
    double s = (double)us / 1e6;
    size_t b = 0;
    while (b < DT_METRICS_BUCKETS - 1 && s > dt_metrics_bounds[b]) b++;
    atomic_fetch_add_explicit(&m->latency_bucket[method][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[method], us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_count[method], 1, memory_order_relaxed);
}

void dt_metrics_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void dt_metrics_render(const dt_metrics *m, FILE *f)
{
    fputs("# HELP dovetail_rpc_requests_total RPC requests answered, by method and Twirp code.\n"
          "# TYPE dovetail_rpc_requests_total counter\n",
          f);
    for (size_t i = 0; i < m->n_methods; i++)
        for (size_t c = 0; c < m->n_codes; c++) {
            uint64_t v = LOAD(m->requests[i][c]);
            if (!v && c) continue; /* always show code "ok", others once they happened */
            fprintf(f, "dovetail_rpc_requests_total{method=\"%s\",code=\"%s\"} %llu\n", m->method_names[i],
                    m->code_names[c], (unsigned long long)v);
        }
    fputs("# HELP dovetail_rpc_duration_seconds RPC latency from request read to reply queued.\n"
          "# TYPE dovetail_rpc_duration_seconds histogram\n",
          f);
    for (size_t i = 0; i < m->n_methods; i++) {
        uint64_t cum = 0;
        for (size_t b = 0; b < DT_METRICS_BUCKETS; b++) {
            cum += LOAD(m->latency_bucket[i][b]);
            if (b < DT_METRICS_BUCKETS - 1)
                fprintf(f, "dovetail_rpc_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n", m->method_names[i],
                        dt_metrics_bounds[b], (unsigned long long)cum);
            else
                fprintf(f, "dovetail_rpc_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
                        m->method_names[i], (unsigned long long)cum);
        }
        fprintf(f, "dovetail_rpc_duration_seconds_sum{method=\"%s\"} %.6f\n", m->method_names[i],
                (double)LOAD(m->latency_sum_us[i]) / 1e6);
        fprintf(f, "dovetail_rpc_duration_seconds_count{method=\"%s\"} %llu\n", m->method_names[i],
                (unsigned long long)cum);
    }
    static const char *const other[] = {"healthz", "metrics", "bad_route", "other"};
    fputs("# HELP dovetail_http_requests_total Plain HTTP requests outside the RPC methods.\n"
          "# TYPE dovetail_http_requests_total counter\n",
          f);
    for (int i = 0; i < 4; i++)
        fprintf(f, "dovetail_http_requests_total{path=\"%s\"} %llu\n", other[i], (unsigned long long)LOAD(m->http_other[i]));
    fprintf(f,
            "# HELP dovetail_match_batches_total GEMM batches run for Match requests.\n"
            "# TYPE dovetail_match_batches_total counter\n"
            "dovetail_match_batches_total %llu\n"
            "# HELP dovetail_match_batched_queries_total Match queries run inside those batches.\n"
            "# TYPE dovetail_match_batched_queries_total counter\n"
            "dovetail_match_batched_queries_total %llu\n"
            "# HELP dovetail_queue_rejections_total Requests refused because the work queue was full.\n"
            "# TYPE dovetail_queue_rejections_total counter\n"
            "dovetail_queue_rejections_total %llu\n"
            "# HELP dovetail_deadline_exceeded_total Requests answered deadline_exceeded.\n"
            "# TYPE dovetail_deadline_exceeded_total counter\n"
            "dovetail_deadline_exceeded_total %llu\n"
            "# HELP dovetail_requests_in_flight RPC requests being worked on.\n"
            "# TYPE dovetail_requests_in_flight gauge\n"
            "dovetail_requests_in_flight %lld\n",
            (unsigned long long)LOAD(m->batches), (unsigned long long)LOAD(m->batched_queries),
            (unsigned long long)LOAD(m->queue_rejections), (unsigned long long)LOAD(m->deadline_exceeded),
            (long long)LOAD(m->in_flight));
}
