/* dt.c - the shared error record (see dt.h). */
#include "dt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int dt_err_set(dt_err *err, int code, const char *field, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -code;
}

const char *dt_err_name(int code)
{
    static const char *const names[] = {"ok", "invalid", "nomem", "notfound", "exists",
                                        "io", "corrupt", "limit", "internal"};
    if (code < 0) code = -code;
    return code < (int)(sizeof names / sizeof names[0]) ? names[code] : "unknown";
}
