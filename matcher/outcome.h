/* outcome.h - what happened after a match was shown: outcome events on (demand, achievement) pairs,
 * their aggregates, how they feed back into ranking, and tracking statistics.
 *
 * An event says that on a pair something happened: the match was viewed, one side contacted the
 * other, the demand declined the achievement (with a reason), a meeting was held, the parties are
 * negotiating, or a deal was signed (with its amount). A store keeps, per tenant, every event in
 * arrival order (for snapshots and journals to persist), an aggregate per pair and per record, and
 * a "matches served" counter per record that the daemon feeds.
 *
 * How outcomes inform ranking (dt_outcome_delta; docs/rerank.md tells the same story):
 *   - a declined pair is never recommended again, in either direction, whatever happens later;
 *   - an engaged pair (a meeting held, negotiating, or a deal signed) gets + engaged_boost, so its
 *     parties find their running conversation where they look for matches;
 *   - an achievement declined for "price" by at least min_declines distinct demands gets
 *     - price_penalty for every demand whose budget is below its asking price;
 *   - an achievement declined as "too early stage" by at least min_declines distinct demands gets
 *     - stage_penalty for every demand that requires a higher TRL than the achievement states.
 * The structured fit (engine.h) already weighs a price or TRL gap mildly and equally for every
 * record; repeated declines over that same gap are evidence that, for this achievement, the gap is
 * what decides, so it counts extra. One demand's repeated declines count once, and a gap is only
 * penalised when both records state the attributes (budget: the demand's price_max, else its
 * price_min; asking price: the achievement's price_min, else its price_max - as the structured
 * fit reads them). Viewed and contacted events only feed the statistics.
 * The delta is symmetric: the same value applies to the pair in the demand's list and in the
 * achievement's list.
 *
 * Not here: persistence (the daemon journals events and snapshots the store through
 * dt_outcome_each and dt_outcome_each_served), applying the delta to a ranking (rerank.h does,
 * exactly). The store itself accepts events on any ids; dt_outcome_event_check_stored is the check
 * a caller that wants ids to name stored records applies first.
 * Thread-safety: writers (dt_outcome_add, dt_outcome_note_served) need exclusive access; any
 * number of readers may run concurrently between writes. No global state.
 */
#ifndef DT_OUTCOME_H
#define DT_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"
#include "engine.h"
#include "record.h"

typedef enum {
    DT_OUTCOME_VIEWED = 0,
    DT_OUTCOME_CONTACTED,
    DT_OUTCOME_DECLINED,
    DT_OUTCOME_MEETING_HELD,
    DT_OUTCOME_NEGOTIATING,
    DT_OUTCOME_DEAL_SIGNED,
    DT_OUTCOME_KIND_COUNT
} dt_outcome_kind;

typedef enum {
    DT_OUTCOME_REASON_NONE = 0, /* every kind but declined */
    DT_OUTCOME_REASON_TOO_EARLY_STAGE,
    DT_OUTCOME_REASON_UNCLEAR_BENEFIT,
    DT_OUTCOME_REASON_PRICE,
    DT_OUTCOME_REASON_OTHER,
    DT_OUTCOME_REASON_COUNT
} dt_outcome_reason;

/* One event. Strings are borrowed by dt_outcome_add (copied into the store). */
typedef struct dt_outcome_event {
    const char *tenant;         /* NULL or "" = "public" */
    const char *demand_id;      /* 1..DT_ID_MAX printable bytes, as record ids */
    const char *achievement_id;
    dt_outcome_kind kind;
    dt_outcome_reason reason;   /* required for declined, NONE for every other kind */
    double amount;              /* deal_signed: the deal's amount in CNY, finite and >= 0;
                                   NAN for every other kind */
    int64_t at;                 /* unix seconds, >= 0 (0 = not known) */
} dt_outcome_event;

/* Zeroes ev, with reason NONE and amount NAN. */
void dt_outcome_event_init(dt_outcome_event *ev);

/* Checks the rules above. err->field names the field ("demand_id", "reason", "amount", ...) and
 * err->msg what is wrong. 0 or -DT_EINVAL (-DT_ELIMIT for an id or tenant that is too long). */
int dt_outcome_event_validate(const dt_outcome_event *ev, dt_err *err);

/* Names used by JSON, the CLI and the RPC: viewed, contacted, declined, meeting_held, negotiating,
 * deal_signed; too_early_stage, unclear_benefit, price, other. Parsing is case-insensitive,
 * ignores surrounding whitespace and accepts '-' or ' ' for '_'; errors name `field`. */
int dt_outcome_kind_parse(const char *s, dt_outcome_kind *out, const char *field, dt_err *err);
int dt_outcome_reason_parse(const char *s, dt_outcome_reason *out, const char *field, dt_err *err);
const char *dt_outcome_kind_name(dt_outcome_kind k);     /* "?" when out of range */
const char *dt_outcome_reason_name(dt_outcome_reason r); /* "" for NONE, "?" when out of range */

typedef struct dt_outcome_store dt_outcome_store;

dt_outcome_store *dt_outcome_store_new(dt_err *err);
void dt_outcome_store_free(dt_outcome_store *s); /* NULL is fine */

/* Validates ev and appends it (copying its strings); updates the pair's and both records'
 * aggregates. Errors as dt_outcome_event_validate, or -DT_ENOMEM (nothing of the event is counted;
 * an empty entry for one of its records may remain), or -DT_ELIMIT past 2^32 - 2 records of one
 * side or pairs in a tenant. */
int dt_outcome_add(dt_outcome_store *s, const dt_outcome_event *ev, dt_err *err);

/* Adds n to the "matches served" counter of a record: the daemon calls it when it returns a list
 * of n matches for a record (by a Match call or from a stored re-rank list). The record need not
 * have outcome events. 0, -DT_EINVAL (bad tenant or id), -DT_ENOMEM. */
int dt_outcome_note_served(dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                           uint64_t n, dt_err *err);

/* Events stored for a tenant (0 for an unknown one), and a counter bumped by every write to it
 * (lets a reader cache what it derived from the store). */
size_t dt_outcome_count(const dt_outcome_store *s, const char *tenant);
uint64_t dt_outcome_epoch(const dt_outcome_store *s, const char *tenant);

/* Tenant names with anything stored, in creation order (owned by the store, valid until the next
 * write). */
const char *const *dt_outcome_tenants(const dt_outcome_store *s, size_t *n);

/* Calls fn for every event of a tenant, in the order they were added (a snapshot that replays
 * them through dt_outcome_add rebuilds the same store). The event's strings are the store's, valid
 * during the call. A non-zero return of fn stops the walk and is returned. */
int dt_outcome_each(const dt_outcome_store *s, const char *tenant,
                    int (*fn)(void *ud, const dt_outcome_event *ev), void *ud);

/* Calls fn(ud, side, id, served) for every record of a tenant whose "matches served" counter is not
 * zero: demands first, then achievements, each in the order the store first saw them (a snapshot
 * that feeds them to dt_outcome_note_served restores the counters). Strings are the store's, valid
 * during the call. A non-zero return of fn stops the walk and is returned. */
int dt_outcome_each_served(const dt_outcome_store *s, const char *tenant,
                           int (*fn)(void *ud, dt_side side, const char *id, uint64_t served), void *ud);

/* Whether ev's ids name records stored in e under ev's tenant: demand_id a demand, achievement_id
 * an achievement (closed records count). 0, or -DT_ENOTFOUND with err->field "demand_id" or
 * "achievement_id" and a message naming the id and tenant (and saying so when the id belongs to a
 * record of the other side); -DT_EINVAL for a missing id. Reads e: hold its read lock. */
int dt_outcome_event_check_stored(const dt_engine *e, const dt_outcome_event *ev, dt_err *err);

/* Pair flags, derived from the pair's events. */
enum {
    DT_OUTCOME_PAIR_VIEWED = 1u << 0,
    DT_OUTCOME_PAIR_CONTACTED = 1u << 1, /* contacted, or any later stage (a meeting, ...) */
    DT_OUTCOME_PAIR_DECLINED = 1u << 2,
    DT_OUTCOME_PAIR_ENGAGED = 1u << 3,   /* a meeting held, negotiating or a deal signed */
    DT_OUTCOME_PAIR_DEAL = 1u << 4
};

typedef struct dt_outcome_pair_stats {
    uint32_t events[DT_OUTCOME_KIND_COUNT];
    unsigned reasons;     /* bit (1 << reason) for each reason the pair was declined with */
    unsigned flags;       /* DT_OUTCOME_PAIR_* */
    double deal_amount;   /* sum over deal_signed events */
    int64_t first_at, last_at;
    dt_outcome_kind last_kind; /* kind of the event added last */
} dt_outcome_pair_stats;

/* Aggregate of a pair. 1 and *out filled when the pair has events, 0 (and *out zeroed) when not. */
int dt_outcome_pair_get(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                        const char *achievement_id, dt_outcome_pair_stats *out);
/* Flags of a pair (0 when it has no events). dt_outcome_declined is flags & DECLINED. */
unsigned dt_outcome_pair_flags(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                               const char *achievement_id);
bool dt_outcome_declined(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                         const char *achievement_id);

typedef struct dt_outcome_record_stats {
    uint32_t events[DT_OUTCOME_KIND_COUNT]; /* events on the record's pairs */
    uint32_t partners;                      /* records of the other side it has events with */
    uint32_t decliners[DT_OUTCOME_REASON_COUNT]; /* distinct partners that declined the pair with
                                                    each reason ([NONE] counts any reason) */
    uint32_t contacted_pairs, deal_pairs;   /* its pairs with the CONTACTED / DEAL flag */
    uint64_t served;                        /* dt_outcome_note_served total */
    double deal_amount;
} dt_outcome_record_stats;

/* Aggregate of a record. 1 and *out filled when the store knows the record, 0 (*out zeroed) when
 * not. */
int dt_outcome_record_get(const dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                          dt_outcome_record_stats *out);

/* Calls fn(ud, partner_id, pair_flags) for every partner of a record (records of the other side it
 * has events with), in the order the pairs first appeared. Strings are the store's, valid during
 * the call. Returns the number of partners. */
size_t dt_outcome_partners(const dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                           void (*fn)(void *ud, const char *partner_id, unsigned pair_flags), void *ud);

/* ---- feedback into ranking ---- */

typedef struct dt_outcome_policy {
    float engaged_boost;   /* default 0.05 */
    float price_penalty;   /* default 0.10 */
    float stage_penalty;   /* default 0.10 */
    uint32_t min_declines; /* distinct demands before an achievement is demoted (default 2, >= 1) */
} dt_outcome_policy;

/* Achievement flags: the record-level evidence of the policy. */
enum {
    DT_OUTCOME_ACH_PRICE = 1u << 0, /* declined for price by >= min_declines distinct demands */
    DT_OUTCOME_ACH_STAGE = 1u << 1  /* declined as too early stage by >= min_declines demands */
};

void dt_outcome_policy_default(dt_outcome_policy *p);
/* Finite, >= 0 boost and penalties, min_declines >= 1: 0 or -DT_EINVAL naming the field. */
int dt_outcome_policy_validate(const dt_outcome_policy *p, dt_err *err);

/* DT_OUTCOME_ACH_* flags of an achievement under policy p (0 when it has no events). */
unsigned dt_outcome_achievement_flags(const dt_outcome_store *s, const dt_outcome_policy *p,
                                      const char *tenant, const char *achievement_id);

/* Calls fn(ud, achievement_id, flags) for every achievement of a tenant with non-zero
 * DT_OUTCOME_ACH_* flags under p. Returns how many there are. */
size_t dt_outcome_flagged(const dt_outcome_store *s, const dt_outcome_policy *p, const char *tenant,
                          void (*fn)(void *ud, const char *achievement_id, unsigned flags), void *ud);

/* The policy as a pure function: the amount added to the score of the pair (demand,
 * achievement) given the pair's DT_OUTCOME_PAIR_* flags and the achievement's DT_OUTCOME_ACH_*
 * flags; -INFINITY when the pair is declined (drop it). 0 when nothing applies. */
float dt_outcome_delta(const dt_outcome_policy *p, unsigned pair_flags, unsigned achievement_flags,
                       const dt_record *demand, const dt_record *achievement);

/* The same, reading the flags from the store: the per-(query, candidate) hook a ranker applies
 * to the pair's score (dt_record.tenant of either record names the tenant). */
float dt_outcome_adjust(const dt_outcome_store *s, const dt_outcome_policy *p, const dt_record *demand,
                        const dt_record *achievement);

/* ---- tracking statistics ---- */

typedef struct dt_outcome_stats_opts {
    int field_depth;  /* leading components of the field code that make a group (default 1); 0: one
                         group for every field */
    int region_depth; /* the same for the region code (default 2: province) */
    dt_side by;       /* outcome events and pair counts go to the group of this side's record of
                         the pair (default DT_DEMAND) */
} dt_outcome_stats_opts;

void dt_outcome_stats_opts_default(dt_outcome_stats_opts *o);

typedef struct dt_outcome_stats_row {
    char field[DT_SHORT_MAX + 1];  /* group key: the code cut to field_depth components; "*" in the
                                      tenant's total row and when field_depth is 0; "-" for records
                                      without the code or no longer stored */
    char region[DT_SHORT_MAX + 1];
    uint64_t demands, demands_open;           /* stored records of the group */
    uint64_t achievements, achievements_open;
    uint64_t served_demands;                  /* matches served in lists of the group's demands */
    uint64_t served_achievements;             /* ... and of its achievements */
    uint64_t events[DT_OUTCOME_KIND_COUNT];
    uint64_t declined[DT_OUTCOME_REASON_COUNT]; /* declined events by reason */
    uint64_t contacted_pairs, deal_pairs;
    double conversion;   /* deal_pairs / contacted_pairs (0 when no pair was contacted) */
    double deal_amount;
} dt_outcome_stats_row;

/* Statistics of one tenant: row 0 is the tenant's total, then one row per (field, region) group
 * sorted by field then region. Records are counted from the engine (e may be NULL: record counts
 * stay 0 and every group is "-"); events, pairs and served counts from the store, each record
 * placed in the group of its current field and region. *rows is malloc'd (free() it), *n rows.
 * 0, -DT_EINVAL (bad opts), -DT_ENOMEM. Reads e and s: hold both read locks. */
int dt_outcome_stats(const dt_outcome_store *s, const dt_engine *e, const char *tenant,
                     const dt_outcome_stats_opts *o, dt_outcome_stats_row **rows, size_t *n, dt_err *err);

#endif
