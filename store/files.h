/* files.h - what the journal, the snapshots and the codec share about bytes and files:
 * little-endian integers, I/O errors naming the path, and directories (create, fsync, list).
 */
#ifndef DT_FILES_H
#define DT_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"

/* The low n bytes of v, least significant first, and back. */
static inline void dt_le_store(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t dt_le_load(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* -DT_EIO with field path and message "<what> <path>: <strerror(e)>". */
int dt_file_io_err(dt_err *err, const char *what, const char *path, int e);
/* "<dir>/<name>" into buf (n bytes); -DT_EINVAL when it does not fit. */
int dt_file_join(char *buf, size_t n, const char *dir, const char *name, dt_err *err);
/* Creates dir and its parents (0755) as needed; -DT_EINVAL when dir exists and is no directory. */
int dt_file_mkdir_p(const char *dir, dt_err *err);
/* fsyncs the directory itself, so that files created or renamed in it survive a crash. */
int dt_file_fsync_dir(const char *dir, dt_err *err);
/* The entries of dir that pick(name, elem) accepts - it fills one element of elem_size bytes and
 * returns true - sorted by cmp, in *out (malloc'd; the caller frees it). A missing dir is empty. */
int dt_file_list(const char *dir, bool (*pick)(const char *name, void *elem), size_t elem_size,
                 int (*cmp)(const void *, const void *), void **out, size_t *n, dt_err *err);

#endif
