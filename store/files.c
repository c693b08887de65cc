/* files.c - directories and I/O errors shared by the journal and the snapshots (files.h). */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dt_file_io_err(dt_err *err, const char *what, const char *path, int e)
{
    return dt_err_set(err, DT_EIO, path, "%s %s: %s", what, path, strerror(e));
}

int dt_file_join(char *buf, size_t n, const char *dir, const char *name, dt_err *err)
{
    if (snprintf(buf, n, "%s/%s", dir, name) >= (int)n)
        return dt_err_set(err, DT_EINVAL, "dir", "path too long: %s/%s", dir, name);
    return 0;
}

int dt_file_mkdir_p(const char *dir, dt_err *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return dt_err_set(err, DT_EINVAL, "dir", "path too long: %s", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return dt_file_io_err(err, "cannot create", path, errno);
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0) return dt_file_io_err(err, "cannot stat", dir, errno);
    if (!S_ISDIR(st.st_mode)) return dt_err_set(err, DT_EINVAL, dir, "%s is not a directory", dir);
    return 0;
}

int dt_file_fsync_dir(const char *dir, dt_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dt_file_io_err(err, "cannot open directory", dir, errno);
    int rc = 0;
    if (fsync(fd) != 0) rc = dt_file_io_err(err, "cannot fsync directory", dir, errno);
    close(fd);
    return rc;
}

int dt_file_list(const char *dir, bool (*pick)(const char *name, void *elem), size_t elem_size,
                 int (*cmp)(const void *, const void *), void **out, size_t *n, dt_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return dt_file_io_err(err, "cannot read directory", dir, errno);
    }
    size_t cap = 0;
    char *v = NULL;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char *p = realloc(v, cap * elem_size);
            if (!p) {
                closedir(d);
                free(v);
                *n = 0;
                return dt_err_set(err, DT_ENOMEM, "dir", "out of memory listing %s", dir);
            }
            v = p;
        }
        if (pick(e->d_name, v + *n * elem_size)) (*n)++;
        errno = 0;
    }
    int e2 = errno;
    closedir(d);
    if (e2) {
        free(v);
        *n = 0;
        return dt_file_io_err(err, "cannot read directory", dir, e2);
    }
    if (*n) qsort(v, *n, elem_size, cmp);
    *out = v;
    return 0;
}
