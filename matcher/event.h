/* event.h - a Deep Dive event over stored records: who takes part, which meetings the matcher
 * proposes, the exact pairing and schedule of pair.h, and the schedule as CSV and printable HTML.
 *
 * dt_event_pair() resolves the participants (ids, or every record of a side passing a filter),
 * builds candidate meetings with the matcher - for each SME its top-L achievements among the
 * event's holders, for each holder its top-L demands among the event's SMEs, the union of both -
 * maps organisations to ids so that two people of one organisation never meet, solves with
 * dt_pair_solve, and returns a result that owns a copy of every string it shows: it stays valid
 * after the engine changes. The renderers format a result and read nothing else.
 *
 * Scores: a candidate's score is the engine's hybrid score of the pair, computed in the direction
 * that proposed it with the event's participants as the candidate set (so the lexical part is
 * normalised among them); when both directions propose a pair, the higher score (and its
 * explanation) is kept. Negative scores (a negative dense cosine) count as 0. A must-meet,
 * requested or locked pair that neither direction proposed is scored by its SME over every holder
 * of the event.
 *
 * Numbering: slots and tables count from 1 here, in the renderers, the CLI and the RPC (as
 * organisers count them); pair.h counts from 0 and this module converts.
 * Not here: reading files or requests (cli/, server/), the flow solver (pair.c), ranking (engine.c).
 */
#ifndef DT_EVENT_H
#define DT_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "engine.h"
#include "pair.h"

#define DT_EVENT_CANDIDATES_DEFAULT 50 /* L: candidates per participant and direction */
#define DT_EVENT_CANDIDATES_MAX 1000
#define DT_EVENT_SIDE_MAX 10000   /* participants on one side */
#define DT_EVENT_LIST_MAX 1000000 /* entries of each pair list and limit list */
#define DT_EVENT_TERMS 5          /* shared terms kept per meeting */

/* Who takes part on one side. */
typedef struct dt_event_side {
    const char *const *ids; /* by id (n_ids of them, no repeats; closed records take part) ... */
    size_t n_ids;
    bool by_filter;         /* ... or, when true, every live record of the side that passes filter
                               (region_prefixes plus clusters; closed ones only with
                               filter.include_closed) and is not in exclude_ids, ordered by id */
    dt_filter filter;
    const char *const *clusters;
    size_t n_clusters;
    const char *const *exclude_ids;
    size_t n_exclude;
} dt_event_side;

/* One participant's own limits. */
typedef struct dt_event_limit {
    const char *id;
    int max_meetings; /* 0..slots, or -1 for the event's default */
    int min_meetings; /* 0..max, or -1 for the event's default */
} dt_event_limit;

typedef struct dt_event_pairref {
    const char *sme_id, *holder_id;
} dt_event_pairref;

typedef struct dt_event_request {
    const char *sme_id, *holder_id;
    int who; /* DT_PAIR_REQ_A (the SME asked), _B (the holder asked) or _BOTH */
} dt_event_request;

typedef struct dt_event_locked {
    const char *sme_id, *holder_id;
    int slot, table; /* from 1 */
} dt_event_locked;

/* One event. Every pointer is borrowed for the duration of dt_event_pair; a list with count 0 may
 * be NULL. Error fields name the members as written here ("smes.ids[3]", "locked[0].table"),
 * which are also the PairEventRequest field names of the RPC. */
typedef struct dt_event_spec {
    const char *tenant; /* NULL = "public" */
    dt_event_side smes; /* demands */
    dt_event_side holders; /* achievements */
    int slots, tables;  /* 1..DT_PAIR_SLOTS_MAX, 1..DT_PAIR_TABLES_MAX */
    int max_meetings;   /* per participant, 0..slots; -1 (the default) = slots */
    int min_meetings;   /* guaranteed per participant (when feasible), 0..max; default 0 */
    const dt_event_limit *sme_limits; /* overrides, by participant id */
    size_t n_sme_limits;
    const dt_event_limit *holder_limits;
    size_t n_holder_limits;
    const dt_event_pairref *must_meet;
    size_t n_must_meet;
    const dt_event_pairref *never_meet; /* pairs naming non-participants are ignored */
    size_t n_never_meet;
    const dt_event_pairref *met_before; /* met at an earlier event: excluded; non-participants ignored */
    size_t n_met_before;
    const dt_event_request *requests;
    size_t n_requests;
    const dt_event_locked *locked; /* kept as they are; the rest is solved around them */
    size_t n_locked;
    size_t candidates;          /* L: 0 = DT_EVENT_CANDIDATES_DEFAULT; at most _MAX */
    const dt_weights *weights;  /* NULL = the engine's defaults */
    dt_pair_options opt;        /* min_score, request boosts, diminishing returns (pair.h) */
} dt_event_spec;

/* Zeroes *s, sets max_meetings to -1 and opt to pair.h's defaults. */
void dt_event_spec_init(dt_event_spec *s);

typedef struct dt_event_person {
    char *id, *title, *org; /* owned; title and org are "" when the record has none */
    int max_meetings, min_meetings;
    int count;        /* meetings scheduled */
    unsigned reasons; /* DT_PAIR_R_* explaining count < max_meetings; 0 otherwise */
    size_t *agenda;   /* count indices into dt_event_result.meetings, by slot */
} dt_event_person;

typedef struct dt_event_meeting {
    int sme, holder;  /* indices into dt_event_result.smes / .holders */
    int slot, table;  /* from 1 */
    double score;     /* matcher score (0 for a pair the matcher could not score) */
    double value;     /* score + request boost */
    unsigned flags;   /* DT_PAIR_M_* */
    bool proposed;    /* the matcher proposed the pair (top-L of either side) */
    /* explanation of the score, from the direction that gave it: the weighted parts
     * (dense + lexical + structured = score before clamping), the structured-fit parts (-1 when
     * a side lacks the attribute) and the shared terms, strongest first */
    float dense, lexical, structured;
    float fit[DT_FIT_COUNT];
    dt_term_weight terms[DT_EVENT_TERMS];
    size_t n_terms;
} dt_event_meeting;

typedef struct dt_event_result {
    char *tenant;
    int slots, tables;
    dt_event_person *smes;
    size_t n_smes;
    dt_event_person *holders;
    size_t n_holders;
    dt_event_meeting *meetings; /* by slot, then table */
    size_t n_meetings;
    /* as pair.h returns them: a indexes smes, b indexes holders; guarantees, then must-meet
     * pairs, then chosen meetings that could not be placed around the locked ones */
    dt_pair_unmet *unmet;
    size_t n_unmet;
    double total_score; /* sum of meeting scores */
    double total_value; /* pair.h's objective: values minus diminishing-returns charges */
    int n_must_met;
    size_t n_candidates;    /* candidate pairs the matcher proposed */
    uint64_t epoch;         /* the tenant's index epoch the candidates were computed at */
    uint64_t candidates_us; /* time to build the candidates */
    uint64_t solve_us;      /* time in dt_pair_solve */
} dt_event_result;

/* Pairs one event. e is the engine sr searches (the caller holds the engine's read lock for the
 * whole call, so no writer changes it meanwhile); spec is only read.
 * On success returns 0 and sets *out to a result the caller frees with dt_event_result_free.
 * Errors (nothing allocated, *out untouched), err->field naming the spec member:
 *   -DT_ENOTFOUND  an id that is no record of its side in the tenant ("smes.ids[3]",
 *                  "must_meet[0].holder_id", "sme_limits[2].id");
 *   -DT_EINVAL     a bad value: slots, tables or limits out of range, a repeated participant,
 *                  an unknown cluster, a pair or limit naming a record that is not a participant,
 *                  locked meetings clashing (one table, or one participant, twice in a slot) or
 *                  exceeding a participant's max_meetings, request `who` out of range;
 *   -DT_ELIMIT     more than DT_EVENT_SIDE_MAX participants on a side, lists beyond
 *                  DT_EVENT_LIST_MAX, candidates beyond DT_EVENT_CANDIDATES_MAX;
 *   -DT_ENOMEM, or an engine error from the searches.
 * Thread-safety: as dt_search - one searcher per thread, readers concurrent. */
int dt_event_pair(const dt_engine *e, dt_searcher *sr, const dt_event_spec *spec, dt_event_result **out,
                  dt_err *err);

/* Frees r and everything it holds; NULL is a no-op. */
void dt_event_result_free(dt_event_result *r);

/* One line explaining meeting m of r: "shared terms: a, b, c; requested by both; locked".
 * Writes into buf (always NUL-terminated when n > 0, truncated to fit); returns the length the
 * whole text needs, like snprintf. */
size_t dt_event_summary(const dt_event_result *r, const dt_event_meeting *m, char *buf, size_t n);

/* Renderers. Each returns a malloc'd NUL-terminated text the caller frees (its length in *len
 * when len is not NULL), or NULL when out of memory. r is only read; thread-safe.
 *
 * dt_event_csv_meetings: RFC 4180 CSV, a header line then one row per meeting in slot, table
 *   order: slot,table,sme_id,sme_org,holder_id,holder_org,score,sme_title,holder_title,notes.
 * dt_event_csv_agendas: one row per meeting per participant, SMEs first, each participant's rows
 *   by slot: side,id,org,slot,table,partner_id,partner_org,score,title,partner_title
 *   (participants without meetings have no rows: see the result's reasons).
 * In both, fields holding ", quotes or line breaks are quoted; text fields (titles, orgs, notes)
 * that start with = + - @ or a tab are prefixed with ' so that spreadsheets do not run them as
 * formulas; ids are written as they are.
 *
 * dt_event_html: one self-contained page (inline CSS, no scripts, no external resources,
 *   print-friendly): a grid with a row per table and a column per slot, each meeting cell
 *   (<td class="meeting" data-slot="S" data-table="T">) naming both parties (titles cut to 80
 *   characters there); then the notes
 *   (unmet guarantees and must-meet pairs); then one agenda per participant. Every text from
 *   records or from `title` is HTML-escaped. title names the event (NULL: "Event"). */
char *dt_event_csv_meetings(const dt_event_result *r, size_t *len);
char *dt_event_csv_agendas(const dt_event_result *r, size_t *len);
char *dt_event_html(const dt_event_result *r, const char *title, size_t *len);

#endif
