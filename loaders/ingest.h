/* ingest.h - loading record files straight into an engine (used by the CLI and the daemon). */
#ifndef DT_INGEST_H
#define DT_INGEST_H

#include <stdbool.h>
#include <stdio.h>

#include "engine.h"
#include "load.h"

/* Loads path into e. Rows without a side get default_side (-1: rows must name it), rows without a
 * tenant get tenant (NULL: "public"). Each rejected row (by the loader or by the engine) is printed
 * to log as "PATH:LINE: FIELD: REASON" (at most max_shown of them) followed by a one-line summary;
 * log may be NULL. Returns 0, or -code when the file could not be read (or strict refused it);
 * *loaded (may be NULL) receives the number of records stored. */
int dt_ingest_file(dt_engine *e, const char *path, int default_side, const char *tenant, bool strict, FILE *log,
                   size_t max_shown, size_t *loaded, size_t *rejected);

#endif
