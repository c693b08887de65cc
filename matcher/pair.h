/* pair.h - Deep Dive event pairing (DESIGN section 6): who meets whom, in which slot, at which
 * table.
 *
 * A pure computation over indices: the caller maps its SMEs to side A (0..na-1) and its achievement
 * holders to side B (0..nb-1), passes candidate edges with matcher scores and the event's rules,
 * and gets back meetings with slots and tables. No I/O, no record store, no global state.
 *
 * The assignment is exact. It maximises, in this order of precedence:
 *   1. locked meetings (always kept, with their slot and table),
 *   2. the number of must-meet pairs that meet,
 *   3. the number of guaranteed meeting units (participant i's first min_meetings meetings),
 *   4. the total value  sum(edge value) - sum over participants of their decay charges,
 * as a min-cost flow (successive shortest paths, Dijkstra with Johnson potentials). Precedence 2
 * and 3 are the "large bonus M" of a big-M model, kept as separate components of a lexicographic
 * cost so that no M has to be chosen and nothing can overflow.
 *
 * Values are fixed point: q(x) = llround(x * DT_PAIR_SCALE).
 *   edge value     = q(score) + q(boost), boost = boost_both when both sides requested the meeting,
 *                    boost_one when one side did, 0 otherwise;
 *   decay charge   = a participant's j-th meeting (j = 0, 1, ...) costs q(decay_scale * (1 -
 * gamma^j)), charged on each side separately. With the defaults (gamma 0.9, scale 0.5) a meeting of
 * value 1 between two participants at their j-th meetings is worth exactly gamma^j; in general this
 * is the additive form of "multiply the j-th meeting by gamma^j", which is what a flow network can
 * represent exactly (parallel unit arcs with rising cost). gamma = 1 turns decay off. total_value
 * and every reported value are these fixed-point sums divided by DT_PAIR_SCALE, so two solvers of
 * the same model agree to the last unit.
 *
 * Candidate rules: an edge below min_score is dropped unless the pair was requested, must meet or
 * is locked. A pair that is never-meet, of the same organisation (org >= 0 and equal) or excluded
 * (met before) is never chosen; locked meetings are kept even then (they were published as they
 * are). A requested or must-meet pair that is not among the edges takes score 0.
 *
 * The schedule is a bipartite edge colouring with `slots` colours (every participant has at most
 * `slots` meetings, so one exists: Koenig), balanced so slot sizes differ by at most one (de Werra)
 * when nothing is locked; tables then suffice, since the assignment never exceeds tables x slots.
 * Unlocked meetings are coloured around the locked ones (Kempe-chain swaps never move a locked
 * meeting). Extending a pre-colouring is not always possible: when every attempt (value order, most
 * constrained first, then a few shuffled orders) leaves some meeting without a slot or a table, the
 * attempt losing the fewest (then the least valuable) meetings is kept and those meetings are
 * reported as unscheduled, never placed in a clash. The assignment does not see slots, so it does
 * not pick a different set of meetings instead. Without locked meetings this never happens.
 */
#ifndef DT_PAIR_H
#define DT_PAIR_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"

#define DT_PAIR_SCALE 1000000.0 /* fixed-point units per unit of score or value */
#define DT_PAIR_SLOTS_MAX 1024  /* time slots in one event */
#define DT_PAIR_TABLES_MAX 1000000
#define DT_PAIR_SIDE_MAX 1000000 /* participants on one side */
/* entries of each list: edges, requests, must / never / excluded pairs, locked meetings */
#define DT_PAIR_ITEMS_MAX (1 << 26)
#define DT_PAIR_VALUE_MAX 1000000.0 /* largest score or boost accepted */

/* Reasons, a bit each. A participant's shortfall (count < max) and each unmet item carry a mask.
 * For a participant they describe its remaining candidates (pairs not met, at or above min_score
 * or requested or must-meet); for a must-meet pair, the pair itself. Capacities are those the
 * assignment saw, before any meeting was left out of the schedule.
 *   NO_CANDIDATES  no remaining candidate at all
 *   NEVER_MEET     a remaining candidate is a never-meet pair
 *   SAME_ORG       ... is of the same organisation
 *   EXCLUDED       ... has met before
 *   PARTNERS_FULL  a remaining candidate's partner has reached its max meetings
 *   TABLES         every table of every slot is taken (tables x slots meetings)
 *   LOW_VALUE      a remaining candidate is worth no more than its decay charges
 *   UNSCHEDULED    a chosen meeting could not be placed around the locked ones
 *   A_FULL, B_FULL must-meet pair: the SME, the holder has reached its max meetings */
enum {
    DT_PAIR_R_NO_CANDIDATES = 1u << 0,
    DT_PAIR_R_NEVER_MEET = 1u << 1,
    DT_PAIR_R_SAME_ORG = 1u << 2,
    DT_PAIR_R_EXCLUDED = 1u << 3,
    DT_PAIR_R_PARTNERS_FULL = 1u << 4,
    DT_PAIR_R_TABLES = 1u << 5,
    DT_PAIR_R_LOW_VALUE = 1u << 6,
    DT_PAIR_R_UNSCHEDULED = 1u << 7,
    DT_PAIR_R_A_FULL = 1u << 8,
    DT_PAIR_R_B_FULL = 1u << 9
};

/* Who asked for a meeting. */
enum { DT_PAIR_REQ_A = 1, DT_PAIR_REQ_B = 2, DT_PAIR_REQ_BOTH = 3 };

/* Flags of a meeting in the result. */
enum {
    DT_PAIR_M_LOCKED = 1u << 0,
    DT_PAIR_M_MUST = 1u << 1,
    DT_PAIR_M_REQ_A = 1u << 2, /* the SME requested it */
    DT_PAIR_M_REQ_B = 1u << 3  /* the holder requested it */
};

/* Kinds of unmet items. */
enum {
    DT_PAIR_UNMET_GUARANTEE = 1,  /* a participant got fewer than min_meetings */
    DT_PAIR_UNMET_MUST = 2,       /* a must-meet pair does not meet */
    DT_PAIR_UNMET_UNSCHEDULED = 3 /* a chosen meeting was left out of the schedule */
};

typedef struct dt_pair_person {
    int max_meetings; /* 0..slots */
    int min_meetings; /* guaranteed meetings, 0..max_meetings (met whenever feasible) */
    int org;          /* organisation id, or -1 for none; equal ids >= 0 never meet */
} dt_pair_person;

typedef struct dt_pair_edge {
    int a, b;     /* SME index, holder index */
    double score; /* matcher score, finite, 0..DT_PAIR_VALUE_MAX; one edge per pair */
} dt_pair_edge;

typedef struct dt_pair_pair {
    int a, b;
} dt_pair_pair;

typedef struct dt_pair_request {
    int a, b;
    int who; /* DT_PAIR_REQ_A, _B or _BOTH; several requests for one pair combine */
} dt_pair_request;

typedef struct dt_pair_locked {
    int a, b;
    int slot;  /* 0..slots-1 */
    int table; /* 0..tables-1 */
} dt_pair_locked;

typedef struct dt_pair_options {
    double min_score;   /* default 0 */
    double boost_one;   /* value added when one side requested the meeting; default 0.2 */
    double boost_both;  /* value added when both did; default 0.4 (meant to exceed boost_one) */
    double decay_gamma; /* (0, 1]; default 0.9; 1 = no diminishing returns */
    double decay_scale; /* >= 0; default 0.5 (per side) */
} dt_pair_options;

/* One event. Every pointer is borrowed for the duration of dt_pair_solve; a list with count 0 may
 * be NULL. Pair lists (must, never, excluded) are sets: repeats are harmless. */
typedef struct dt_pair_problem {
    int na, nb;
    const dt_pair_person *a; /* na SMEs */
    const dt_pair_person *b; /* nb achievement holders */
    int slots, tables;
    const dt_pair_edge *edges;
    size_t n_edges;
    const dt_pair_pair *must;
    size_t n_must;
    const dt_pair_pair *never;
    size_t n_never;
    const dt_pair_pair *excluded;
    size_t n_excluded;
    const dt_pair_request *requests;
    size_t n_requests;
    const dt_pair_locked *locked;
    size_t n_locked;
    dt_pair_options opt;
} dt_pair_problem;

typedef struct dt_pair_meeting {
    int a, b, slot, table;
    double score;   /* the edge's score (0 for a pair that was not an edge) */
    double value;   /* score + request boost, before decay */
    unsigned flags; /* DT_PAIR_M_* */
} dt_pair_meeting;

typedef struct dt_pair_count {
    int count, max, min;
    unsigned reasons; /* DT_PAIR_R_* explaining count < max; 0 when count == max */
} dt_pair_count;

typedef struct dt_pair_unmet {
    int kind; /* DT_PAIR_UNMET_* */
    int side; /* GUARANTEE: 0 = SME (index a), 1 = holder (index b) */
    int a, b; /* GUARANTEE: the participant's index on its side, the other -1; else the pair */
    int have, want;   /* GUARANTEE: meetings got and guaranteed; else 0, 1 */
    unsigned reasons; /* DT_PAIR_R_* */
} dt_pair_unmet;

typedef struct dt_pair_result {
    dt_pair_meeting *meetings; /* sorted by slot, then table */
    size_t n_meetings;
    dt_pair_count *count_a; /* na entries */
    dt_pair_count *count_b; /* nb entries */
    /* guarantees first (side A, then B), then must-meet pairs, then unscheduled meetings */
    dt_pair_unmet *unmet;
    size_t n_unmet;
    double total_score;        /* sum of meeting scores */
    double total_value;        /* sum of meeting values minus every participant's decay charges */
    int64_t total_value_units; /* the same in fixed point (DT_PAIR_SCALE units), exact */
    int n_must_met;            /* must-meet pairs that meet (locked ones included) */
    int64_t n_guarantee_units; /* sum over participants of min(count, min_meetings), both sides */
    size_t n_unscheduled;      /* chosen meetings left out of the schedule */
    size_t n_paths;            /* augmenting paths the flow solver pushed */
} dt_pair_result;

/* Fills *o with the defaults above. */
void dt_pair_options_default(dt_pair_options *o);

/* Zeroes *p and sets p->opt to the defaults. */
void dt_pair_problem_init(dt_pair_problem *p);

/* Solves the event p: the exact assignment, then the schedule.
 * On success returns 0 and sets *out to a result the caller frees with dt_pair_result_free.
 * Errors (nothing allocated, *out untouched): -DT_EINVAL naming the field, e.g. "edges[12]" for a
 * duplicate pair, an index out of range, a NaN or negative score, slots or tables < 1, max_meetings
 * above slots, min_meetings above max_meetings, locked meetings out of range or clashing on a
 * table, in a participant's slot or more than a participant's max; -DT_ELIMIT for sizes above the
 * DT_PAIR_*_MAX limits; -DT_ENOMEM.
 * Thread-safety: reentrant; p is only read, so one problem may be solved by several threads. */
int dt_pair_solve(const dt_pair_problem *p, dt_pair_result **out, dt_err *err);

/* Frees r and everything it holds; NULL is a no-op. */
void dt_pair_result_free(dt_pair_result *r);

/* Short name of one DT_PAIR_R_* bit ("no_candidates", "tables", ...), or "unknown". */
const char *dt_pair_reason_name(unsigned bit);

/* Writes the names of the bits of mask, comma-separated, into buf (always NUL-terminated when
 * n > 0, truncated to fit). Returns the length the full text needs, like snprintf. */
size_t dt_pair_reasons_format(unsigned mask, char *buf, size_t n);

#endif
