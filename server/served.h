/* served.h - "matches served" counts on their way from Match calls to the outcome store.
 *
 * Match runs under the engine's read lock, where nothing may write the outcome store. A Match by a
 * stored record that returns n matches notes (tenant, side, id, n) here instead, under this
 * table's own mutex; counts of one record add up in one entry. Whoever holds the engine's write
 * lock folds the table into the store (dovetaild does before every write, before Stats reads the
 * store, before a snapshot copies it, and when the table grows past a threshold).
 *
 * Lock order: the engine lock (either mode) may be held while calling any function here; this
 * table's mutex is never held while waiting for the engine lock.
 * Not here: the store (matcher/outcome.h) and the decision when to fold (server/rpc.c).
 */
#ifndef DT_SERVED_H
#define DT_SERVED_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "outcome.h"
#include "record.h"

typedef struct dt_served dt_served;

/* An empty table; NULL (err filled) when out of memory. Free with dt_served_free. */
dt_served *dt_served_new(dt_err *err);
void dt_served_free(dt_served *t); /* NULL is fine */

/* Adds n to the pending count of (tenant, side, id); the strings are copied. n = 0 does nothing.
 * 0, or -DT_ENOMEM (the count is lost). Thread-safe. */
int dt_served_note(dt_served *t, const char *tenant, dt_side side, const char *id, uint64_t n,
                   dt_err *err);

/* Records with a pending count. Thread-safe. */
size_t dt_served_pending(dt_served *t);

/* Moves every pending count into s with dt_outcome_note_served and empties the table. The caller
 * holds s exclusively. A count the store refuses as invalid is dropped; on -DT_ENOMEM the counts
 * not yet moved are pending again (unless memory fails for that too). Notes made meanwhile go on
 * unblocked: the table's mutex is held only to take the entries out. Thread-safe with respect to
 * dt_served_note; one fold at a time (the caller's exclusive hold on s sees to that). */
int dt_served_fold(dt_served *t, dt_outcome_store *s, dt_err *err);

#endif
