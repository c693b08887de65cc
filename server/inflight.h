/* inflight.h - requests in flight per tenant, for --max-inflight-per-tenant.
 *
 * A counter per tenant name, kept only while it is above zero, so the table holds at most as
 * many entries as there are requests in flight, whatever names clients send. Not thread-safe:
 * the server uses it on its loop thread only.
 */
#ifndef DT_INFLIGHT_H
#define DT_INFLIGHT_H

#include <stddef.h>

#include "dt.h"

typedef struct dt_inflight dt_inflight;

/* An empty table; NULL when out of memory. */
dt_inflight *dt_inflight_new(void);
void dt_inflight_free(dt_inflight *t);
/* Counts one more request of tenant (at most DT_TENANT_MAX bytes) unless it already has limit
 * (0: no limit) in flight: 0, -DT_ELIMIT (at the limit; nothing counted), -DT_EINVAL (a name
 * longer than DT_TENANT_MAX) or -DT_ENOMEM. */
int dt_inflight_acquire(dt_inflight *t, const char *tenant, size_t limit);
/* Counts one request of tenant less (it must have been acquired). */
void dt_inflight_release(dt_inflight *t, const char *tenant);
/* Requests of tenant in flight. */
size_t dt_inflight_count(const dt_inflight *t, const char *tenant);
/* Tenants with requests in flight. */
size_t dt_inflight_tenants(const dt_inflight *t);

#endif
