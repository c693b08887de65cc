/* dt.h - what every Dovetail module shares: the error record and a few limits.
 *
 * Not a grab bag: only things that more than one module of matcher/, loaders/ and server/ need.
 */
#ifndef DT_H
#define DT_H

#include <stddef.h>
#include <stdint.h>

/* Error codes. Functions return 0 on success or one of these, negated, and fill a dt_err. */
enum {
    DT_OK = 0,
    DT_EINVAL = 1,   /* the caller's input is wrong: dt_err.field names what */
    DT_ENOMEM = 2,   /* an allocation failed */
    DT_ENOTFOUND = 3,/* no such record / file / key */
    DT_EEXIST = 4,   /* already present where that is an error (duplicate id in one file) */
    DT_EIO = 5,      /* an operating-system I/O call failed: dt_err.msg carries strerror */
    DT_ECORRUPT = 6, /* stored data failed a checksum or structural check */
    DT_ELIMIT = 7,   /* a configured limit was exceeded (size, count, k) */
    DT_EINTERNAL = 8,/* a library call we rely on failed (BLAS/LAPACK info != 0) */
    DT_ERANGE = 9    /* a well-formed value outside the range its field takes (JSON k: -1) */
};

/* An error: a code, the field (or "file:line") it is about, and a message a user can act on.
 * Plain data, no allocation; zero-initialise with DT_ERR_INIT or memset. */
typedef struct dt_err {
    int code;
    char field[64];
    char msg[512]; /* room for two paths and a command that repairs */
} dt_err;

#define DT_ERR_INIT {0, {0}, {0}}

/* Fills err (when non-NULL) and returns -code, so `return dt_err_set(err, DT_EINVAL, "trl", "...");`
 * works. field may be NULL. The message is printf-formatted and silently truncated to fit. */
int dt_err_set(dt_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Short lower-case name of an error code ("invalid", "nomem", ...), never NULL. */
const char *dt_err_name(int code);

/* Limits on one record. Loaders and the RPC layer refuse anything larger with DT_ELIMIT. */
#define DT_ID_MAX 128            /* bytes of an id */
#define DT_TENANT_MAX 64         /* bytes of a tenant name */
#define DT_TITLE_MAX 1024        /* bytes of a title */
#define DT_TEXT_MAX (64 * 1024)  /* bytes of a text */
#define DT_SHORT_MAX 256         /* bytes of org, field, region, a keyword or a tag */
#define DT_LIST_MAX 64           /* entries of keywords[] or tags[] */
#define DT_DIM_MAX 4096          /* dimension of an external embedding */

#endif
