/* inflight.c - per-tenant request counters in a chained hash table (see inflight.h). */
#include "inflight.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define BUCKETS 4096 /* a power of two */

typedef struct entry {
    struct entry *next;
    size_t n;
    char tenant[DT_TENANT_MAX + 1];
} entry;

struct dt_inflight {
    entry *b[BUCKETS];
    size_t entries;
};

static entry **slot(const dt_inflight *t, const char *tenant)
{
    size_t h = (size_t)XXH3_64bits(tenant, strlen(tenant)) & (BUCKETS - 1);
    entry *const *pp = &t->b[h];
    while (*pp && strcmp((*pp)->tenant, tenant) != 0) pp = &(*pp)->next;
    return (entry **)pp;
}

dt_inflight *dt_inflight_new(void)
{
    return calloc(1, sizeof(dt_inflight));
}

void dt_inflight_free(dt_inflight *t)
{
    if (!t) return;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = t->b[i]; e;) {
            entry *next = e->next;
            free(e);
            e = next;
        }
    free(t);
}

int dt_inflight_acquire(dt_inflight *t, const char *tenant, size_t limit)
{
    if (strlen(tenant) > DT_TENANT_MAX) return -DT_EINVAL;
    entry **pp = slot(t, tenant);
    if (*pp) {
        if (limit && (*pp)->n >= limit) return -DT_ELIMIT;
        (*pp)->n++;
        return 0;
    }
    entry *e = calloc(1, sizeof *e);
    if (!e) return -DT_ENOMEM;
    memcpy(e->tenant, tenant, strlen(tenant) + 1);
    e->n = 1;
    *pp = e;
    t->entries++;
    return 0;
}

void dt_inflight_release(dt_inflight *t, const char *tenant)
{
    entry **pp = slot(t, tenant), *e = *pp;
    if (!e) return;
    if (--e->n == 0) {
        *pp = e->next;
        free(e);
        t->entries--;
    }
}

size_t dt_inflight_count(const dt_inflight *t, const char *tenant)
{
    entry **pp = slot(t, tenant);
    return *pp ? (*pp)->n : 0;
}

size_t dt_inflight_tenants(const dt_inflight *t)
{
    return t->entries;
}
