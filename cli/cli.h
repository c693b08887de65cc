/* cli.h - pieces shared by the `dovetail` command-line tool's subcommands. */
#ifndef DT_CLI_H
#define DT_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "engine.h"
#include "load.h"
#include "outcome.h"

/* Loads one file into the engine; prints each rejected row as "FILE:LINE: FIELD: MESSAGE" on
 * stderr (at most `show` of them) and a one-line summary unless quiet. Returns 0, or -code when the
 * file could not be read at all (or strict refused it). *loaded receives the count. */
int cli_load(dt_engine *e, const char *path, int default_side, const char *tenant, bool strict, bool quiet,
             size_t *loaded);

/* Reads the clusters file (when not NULL), then loads the achievement files, the demand files and
 * the files whose rows name their side, as `tenant` (NULL: public); with build, learns the dense
 * bases. Problems are printed on stderr. Returns an exit status: 0, 1 (bad input), 3 (internal). */
int cli_load_all(dt_engine *e, const char *clusters_file, const char *const *ach, size_t n_ach,
                 const char *const *dem, size_t n_dem, char *const *files, size_t n_files, const char *tenant,
                 bool strict, bool quiet, bool build);

/* Parses "0.3,0.6,0.1" into weights. 0 or -1 (message printed). */
int cli_parse_weights(const char *s, dt_weights *w);

/* Reads a JSON Lines file of outcome events (keys demand_id, achievement_id, kind, reason, amount,
 * at, tenant; docs/rerank.md) into s, as tenant when a line names none (NULL: public). With e, each
 * event's ids must also name records stored in e (a demand, an achievement). Reports each bad line
 * as FILE:LINE: FIELD: MESSAGE on stderr (at most 20) and returns the number of bad lines (their
 * events are not added), or -1 when the file cannot be read. *added grows by the events added. */
long cli_load_outcomes(dt_outcome_store *s, const dt_engine *e, const char *path, const char *tenant, size_t *added);

/* Whether progress lines may be drawn (stderr is a terminal). */
bool cli_tty(void);

int cmd_eval(int argc, char **argv);
int cmd_pair(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_rerank(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
