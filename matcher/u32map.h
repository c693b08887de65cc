/* u32map.h - an open-addressing hash map from uint32 keys to uint32 values.
 *
 * Used for hashed-token buckets -> posting lists and -> LSA columns. Keys are any uint32 except
 * UINT32_MAX (reserved as the empty marker). No deletion: owners rebuild on compaction.
 * Not thread-safe for writers; concurrent readers are fine.
 */
#ifndef DT_U32MAP_H
#define DT_U32MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dt_u32map {
    uint32_t *keys;
    uint32_t *vals;
    size_t cap; /* a power of two, or 0 */
    size_t n;
} dt_u32map;

#define DT_U32MAP_NONE UINT32_MAX

void dt_u32map_init(dt_u32map *m);
void dt_u32map_free(dt_u32map *m);
/* The value stored for key, or DT_U32MAP_NONE. */
uint32_t dt_u32map_get(const dt_u32map *m, uint32_t key);
/* Inserts or overwrites. 0, or -1 when memory runs out (the map is unchanged then). */
int dt_u32map_put(dt_u32map *m, uint32_t key, uint32_t val);
/* Pre-sizes for n keys without rehashing later. 0 or -1. */
int dt_u32map_reserve(dt_u32map *m, size_t n);

#endif
