/* u32map.c - open-addressing uint32 -> uint32 map with linear probing (see u32map.h). */
#include "u32map.h"

#include <stdlib.h>
#include <string.h>

static inline size_t slot_of(uint32_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B1u) ^ (key >> 16)) & mask;
}

void dt_u32map_init(dt_u32map *m)
{
    memset(m, 0, sizeof *m);
}

void dt_u32map_free(dt_u32map *m)
{
    free(m->keys);
    free(m->vals);
    dt_u32map_init(m);
}

uint32_t dt_u32map_get(const dt_u32map *m, uint32_t key)
{
    if (m->cap == 0) return DT_U32MAP_NONE;
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == DT_U32MAP_NONE) return DT_U32MAP_NONE;
    }
}

static int rehash(dt_u32map *m, size_t cap)
{
    uint32_t *keys = malloc(cap * sizeof *keys);
    uint32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    size_t mask = cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (m->keys[j] == DT_U32MAP_NONE) continue;
        size_t i = slot_of(m->keys[j], mask);
        while (keys[i] != DT_U32MAP_NONE) i = (i + 1) & mask;
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int dt_u32map_reserve(dt_u32map *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 16;
    while (cap / 2 < n + 1) cap *= 2; /* load factor <= 1/2 */
    return cap == m->cap ? 0 : rehash(m, cap);
}

int dt_u32map_put(dt_u32map *m, uint32_t key, uint32_t val)
{
    if (dt_u32map_reserve(m, m->n + 1) < 0) return -1;
    size_t mask = m->cap - 1;
    size_t i = slot_of(key, mask);
    while (m->keys[i] != DT_U32MAP_NONE && m->keys[i] != key) i = (i + 1) & mask;
    if (m->keys[i] == DT_U32MAP_NONE) m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}
