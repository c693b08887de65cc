/* served.c - pending "matches served" counts (served.h).
 *
 * Entries in arrival order plus an open-addressing index over them (slot = entry index + 1, 0 =
 * empty) keyed by XXH3 of (side, tenant, id). Invariant: the index holds every entry exactly once
 * and is at most half full. A fold takes the entries out under the mutex and moves them into the
 * store without it.
 */
#include "served.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

typedef struct entry {
    char *tenant, *id;
    uint64_t hash, n;
    dt_side side;
} entry;

struct dt_served {
    pthread_mutex_t mu;
    entry *v;
    size_t n, cap;
    uint32_t *slot;
    size_t slots; /* power of two, or 0 */
};

dt_served *dt_served_new(dt_err *err)
{
    dt_served *t = calloc(1, sizeof *t);
    if (!t) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating the served-count table");
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void clear(dt_served *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].tenant);
        free(t->v[i].id);
    }
    t->n = 0;
    if (t->slots) memset(t->slot, 0, t->slots * sizeof *t->slot);
}

void dt_served_free(dt_served *t)
{
    if (!t) return;
    clear(t);
    free(t->v);
    free(t->slot);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static uint64_t key_hash(const char *tenant, dt_side side, const char *id)
{
    uint64_t h = XXH3_64bits_withSeed(tenant, strlen(tenant), (uint64_t)side + 1);
    return XXH3_64bits_withSeed(id, strlen(id), h);
}

static void index_put(dt_served *t, size_t i)
{
    size_t mask = t->slots - 1;
    for (size_t j = (size_t)t->v[i].hash & mask;; j = (j + 1) & mask)
        if (!t->slot[j]) {
            t->slot[j] = (uint32_t)i + 1;
            return;
        }
}

/* Makes room for one more entry in v and the index. -1 when out of memory. */
static int grow(dt_served *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        entry *v = realloc(t->v, cap * sizeof *v);
        if (!v) return -1;
        t->v = v;
        t->cap = cap;
    }
    if ((t->n + 1) * 2 > t->slots) {
        size_t slots = t->slots ? t->slots * 2 : 128;
        uint32_t *s = calloc(slots, sizeof *s);
        if (!s) return -1;
        free(t->slot);
        t->slot = s;
        t->slots = slots;
        for (size_t i = 0; i < t->n; i++)
            index_put(t, i);
    }
    return 0;
}

int dt_served_note(dt_served *t, const char *tenant, dt_side side, const char *id, uint64_t n,
                   dt_err *err)
{
    if (!n) return 0;
    tenant = tenant && *tenant ? tenant : "public";
    uint64_t h = key_hash(tenant, side, id);
    pthread_mutex_lock(&t->mu);
    if (t->slots)
        for (size_t j = (size_t)h & (t->slots - 1); t->slot[j]; j = (j + 1) & (t->slots - 1)) {
            entry *e = &t->v[t->slot[j] - 1];
            if (e->hash == h && e->side == side && !strcmp(e->id, id) &&
                !strcmp(e->tenant, tenant)) {
                e->n += n;
                pthread_mutex_unlock(&t->mu);
                return 0;
            }
        }
    entry e = {strdup(tenant), strdup(id), h, n, side};
    if (!e.tenant || !e.id || grow(t) < 0) {
        pthread_mutex_unlock(&t->mu);
        free(e.tenant);
        free(e.id);
        return dt_err_set(err, DT_ENOMEM, NULL, "out of memory counting matches served");
    }
    t->v[t->n] = e;
    index_put(t, t->n);
    t->n++;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

size_t dt_served_pending(dt_served *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int dt_served_fold(dt_served *t, dt_outcome_store *s, dt_err *err)
{
    /* the entries are taken out under the mutex and moved without it, so a note never waits for
     * the store */
    pthread_mutex_lock(&t->mu);
    entry *v = t->v;
    size_t n = t->n;
    t->v = NULL;
    t->n = t->cap = 0;
    if (t->slots) memset(t->slot, 0, t->slots * sizeof *t->slot);
    pthread_mutex_unlock(&t->mu);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        entry *e = &v[i];
        dt_err e2 = DT_ERR_INIT;
        if (rc == 0 && dt_outcome_note_served(s, e->tenant, e->side, e->id, e->n, &e2) == -DT_ENOMEM) {
            if (err) *err = e2;
            rc = -DT_ENOMEM;
        }
        if (rc) dt_served_note(t, e->tenant, e->side, e->id, e->n, NULL); /* pending again */
        free(e->tenant);
        free(e->id);
    }
    free(v);
    return rc;
}
