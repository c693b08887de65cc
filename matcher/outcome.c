/* outcome.c - outcome events, their aggregates, the ranking policy and tracking stats (outcome.h).
 *
 * Per tenant: the records of each side that appear in events (an id -> record index hash), the
 * pairs (a (demand, achievement) -> pair index hash), and the events in arrival order, each
 * naming its pair. Invariants:
 * - every pair index in a record's partner list names a pair that involves that record, once;
 * - a record's decliners[r] counts its pairs whose reasons mask has bit r (decliners[NONE]: its
 *   pairs with the DECLINED flag), so the policy's "distinct demands" are distinct pairs;
 * - epoch is bumped by every write to the tenant.
 */
#include "outcome.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define OUT_NONE UINT32_MAX /* "no index" and the largest count a side or pair table may reach */

typedef struct orec {
    char *id;
    uint64_t hash;
    uint32_t *pairs; /* partner pair indices */
    uint32_t n_pairs, cap_pairs;
    uint32_t events[DT_OUTCOME_KIND_COUNT];
    uint32_t decliners[DT_OUTCOME_REASON_COUNT];
    uint32_t contacted_pairs, deal_pairs;
    uint64_t served;
    double deal_amount;
} orec;

typedef struct opair {
    uint32_t d, a; /* record indices on the demand and achievement sides */
    uint32_t events[DT_OUTCOME_KIND_COUNT];
    unsigned reasons, flags;
    double deal_amount;
    int64_t first_at, last_at;
    dt_outcome_kind last_kind;
} opair;

typedef struct oevent {
    uint32_t pair;
    uint8_t kind, reason;
    double amount;
    int64_t at;
} oevent;

/* Open addressing over uint32 indices (+1; 0 = empty); the key lives in the indexed element. */
typedef struct otab {
    uint32_t *slot;
    size_t cap; /* power of two, or 0 */
    size_t n;
} otab;

typedef struct otenant {
    char name[DT_TENANT_MAX + 1];
    orec *recs[2];
    size_t n_recs[2], cap_recs[2];
    otab rec_tab[2];
    opair *pairs;
    size_t n_pairs, cap_pairs;
    otab pair_tab;
    oevent *events;
    size_t n_events, cap_events;
    uint64_t epoch;
} otenant;

struct dt_outcome_store {
    otenant **tenants;
    const char **names;
    size_t n_tenants, cap_tenants;
};

static const char *const kind_names[DT_OUTCOME_KIND_COUNT] = {"viewed",       "contacted",   "declined",
                                                              "meeting_held", "negotiating", "deal_signed"};
static const char *const reason_names[DT_OUTCOME_REASON_COUNT] = {"", "too_early_stage", "unclear_benefit",
                                                                  "price", "other"};

/* ---- names and validation ---- */

void dt_outcome_event_init(dt_outcome_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->reason = DT_OUTCOME_REASON_NONE;
    ev->amount = NAN;
}

const char *dt_outcome_kind_name(dt_outcome_kind k)
{
    return (unsigned)k < DT_OUTCOME_KIND_COUNT ? kind_names[k] : "?";
}

const char *dt_outcome_reason_name(dt_outcome_reason r)
{
    return (unsigned)r < DT_OUTCOME_REASON_COUNT ? reason_names[r] : "?";
}

/* Copies s trimmed, lower-cased, '-' and ' ' as '_', into buf; false when it does not fit. */
static bool canon_name(const char *s, char *buf, size_t n)
{
    while (*s && isspace((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= n) return false;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        buf[i] = c == '-' || c == ' ' ? '_' : c;
    }
    buf[len] = 0;
    return true;
}

int dt_outcome_kind_parse(const char *s, dt_outcome_kind *out, const char *field, dt_err *err)
{
    char buf[32];
    if (s && canon_name(s, buf, sizeof buf))
        for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++)
            if (strcmp(buf, kind_names[k]) == 0) {
                *out = (dt_outcome_kind)k;
                return 0;
            }
    return dt_err_set(err, DT_EINVAL, field,
                      "unknown outcome kind '%.64s': expected viewed, contacted, declined, meeting_held, "
                      "negotiating or deal_signed",
                      s ? s : "");
}

int dt_outcome_reason_parse(const char *s, dt_outcome_reason *out, const char *field, dt_err *err)
{
    char buf[32];
    if (s && canon_name(s, buf, sizeof buf))
        for (int r = 1; r < DT_OUTCOME_REASON_COUNT; r++)
            if (strcmp(buf, reason_names[r]) == 0) {
                *out = (dt_outcome_reason)r;
                return 0;
            }
    return dt_err_set(err, DT_EINVAL, field,
                      "unknown decline reason '%.64s': expected too_early_stage, unclear_benefit, price or other",
                      s ? s : "");
}

/* An id as record.h defines them: 1..DT_ID_MAX bytes of valid UTF-8 without control bytes. */
static int check_id(const char *id, const char *field, dt_err *err)
{
    if (!id || !*id) return dt_err_set(err, DT_EINVAL, field, "missing: give the record's id");
    size_t len = strlen(id);
    if (len > DT_ID_MAX)
        return dt_err_set(err, DT_ELIMIT, field, "%zu bytes, longer than the limit of %d bytes", len, DT_ID_MAX);
    size_t ok = dt_utf8_valid_prefix(id, len);
    if (ok < len) return dt_err_set(err, DT_EINVAL, field, "invalid UTF-8 at offset %zu", ok);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c == 0x7f)
            return dt_err_set(err, DT_EINVAL, field, "contains a non-printable byte 0x%02x at offset %zu", c, i);
    }
    return 0;
}

static const char *tenant_name(const char *t)
{
    return t && *t ? t : "public";
}

static int check_tenant(const char *t, dt_err *err)
{
    t = tenant_name(t);
    size_t len = strlen(t);
    if (len > DT_TENANT_MAX)
        return dt_err_set(err, DT_ELIMIT, "tenant", "%zu bytes, longer than the limit of %d bytes", len,
                          DT_TENANT_MAX);
    if (dt_utf8_valid_prefix(t, len) < len) return dt_err_set(err, DT_EINVAL, "tenant", "invalid UTF-8");
    return 0;
}

int dt_outcome_event_validate(const dt_outcome_event *ev, dt_err *err)
{
    int rc = check_tenant(ev->tenant, err);
    if (rc == 0) rc = check_id(ev->demand_id, "demand_id", err);
    if (rc == 0) rc = check_id(ev->achievement_id, "achievement_id", err);
    if (rc) return rc;
    if ((unsigned)ev->kind >= DT_OUTCOME_KIND_COUNT)
        return dt_err_set(err, DT_EINVAL, "kind", "unknown outcome kind %d", (int)ev->kind);
    if ((unsigned)ev->reason >= DT_OUTCOME_REASON_COUNT)
        return dt_err_set(err, DT_EINVAL, "reason", "unknown decline reason %d", (int)ev->reason);
    if (ev->kind == DT_OUTCOME_DECLINED && ev->reason == DT_OUTCOME_REASON_NONE)
        return dt_err_set(err, DT_EINVAL, "reason",
                          "a declined event needs a reason: too_early_stage, unclear_benefit, price or other");
    if (ev->kind != DT_OUTCOME_DECLINED && ev->reason != DT_OUTCOME_REASON_NONE)
        return dt_err_set(err, DT_EINVAL, "reason", "only a declined event has a reason (this one is %s)",
                          kind_names[ev->kind]);
    if (ev->kind == DT_OUTCOME_DEAL_SIGNED) {
        if (isnan(ev->amount))
            return dt_err_set(err, DT_EINVAL, "amount", "a deal_signed event needs the deal's amount (CNY)");
        if (!isfinite(ev->amount) || ev->amount < 0)
            return dt_err_set(err, DT_EINVAL, "amount", "must be a finite amount >= 0 (got %g)", ev->amount);
    } else if (!isnan(ev->amount)) {
        return dt_err_set(err, DT_EINVAL, "amount", "only a deal_signed event has an amount (this one is %s)",
                          kind_names[ev->kind]);
    }
    if (ev->at < 0) return dt_err_set(err, DT_EINVAL, "at", "must be unix seconds >= 0 (got %lld)", (long long)ev->at);
    return 0;
}

/* ---- the store ---- */

static uint64_t hash_str(const char *s)
{
    return XXH3_64bits(s, strlen(s));
}

static uint64_t hash_pair(uint32_t d, uint32_t a)
{
    return XXH3_64bits_withSeed(&d, sizeof d, a);
}

static int otab_grow(otab *t, size_t want, uint64_t (*hash_of)(const void *, uint32_t), const void *ctx)
{
    size_t cap = t->cap ? t->cap : 16;
    while (cap / 4 * 3 < want) cap *= 2;
    if (cap == t->cap) return 0;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i]) continue;
        size_t j = (size_t)hash_of(ctx, t->slot[i] - 1) & (cap - 1);
        while (slot[j]) j = (j + 1) & (cap - 1);
        slot[j] = t->slot[i];
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

static uint64_t rec_hash_of(const void *ctx, uint32_t i)
{
    return ((const orec *)ctx)[i].hash;
}

static uint64_t pair_hash_of(const void *ctx, uint32_t i)
{
    const opair *p = &((const opair *)ctx)[i];
    return hash_pair(p->d, p->a);
}

static uint32_t rec_find(const otenant *t, int side, const char *id, uint64_t h)
{
    const otab *tb = &t->rec_tab[side];
    if (!tb->cap) return OUT_NONE;
    for (size_t j = (size_t)h & (tb->cap - 1);; j = (j + 1) & (tb->cap - 1)) {
        uint32_t v = tb->slot[j];
        if (!v) return OUT_NONE;
        const orec *r = &t->recs[side][v - 1];
        if (r->hash == h && strcmp(r->id, id) == 0) return v - 1;
    }
}

static uint32_t pair_find(const otenant *t, uint32_t d, uint32_t a)
{
    const otab *tb = &t->pair_tab;
    if (!tb->cap) return OUT_NONE;
    for (size_t j = (size_t)hash_pair(d, a) & (tb->cap - 1);; j = (j + 1) & (tb->cap - 1)) {
        uint32_t v = tb->slot[j];
        if (!v) return OUT_NONE;
        if (t->pairs[v - 1].d == d && t->pairs[v - 1].a == a) return v - 1;
    }
}

static void otab_insert(otab *tb, uint64_t h, uint32_t idx)
{
    size_t j = (size_t)h & (tb->cap - 1);
    while (tb->slot[j]) j = (j + 1) & (tb->cap - 1);
    tb->slot[j] = idx + 1;
    tb->n++;
}

/* The record of (side, id), created when absent. OUT_NONE when memory or the limit runs out. */
static uint32_t rec_get(otenant *t, int side, const char *id, dt_err *err)
{
    uint64_t h = hash_str(id);
    uint32_t i = rec_find(t, side, id, h);
    if (i != OUT_NONE) return i;
    if (t->n_recs[side] >= OUT_NONE - 1) {
        dt_err_set(err, DT_ELIMIT, "tenant", "more than %u %ss with outcomes in tenant '%s'", OUT_NONE - 1,
                   dt_side_name((dt_side)side), t->name);
        return OUT_NONE;
    }
    if (t->n_recs[side] == t->cap_recs[side]) {
        size_t cap = t->cap_recs[side] ? t->cap_recs[side] * 2 : 64;
        orec *v = realloc(t->recs[side], cap * sizeof *v);
        if (!v) goto nomem;
        t->recs[side] = v;
        t->cap_recs[side] = cap;
    }
    if (otab_grow(&t->rec_tab[side], t->n_recs[side] + 1, rec_hash_of, t->recs[side]) < 0) goto nomem;
    orec *r = &t->recs[side][t->n_recs[side]];
    memset(r, 0, sizeof *r);
    if (!(r->id = strdup(id))) goto nomem;
    r->hash = h;
    otab_insert(&t->rec_tab[side], h, (uint32_t)t->n_recs[side]);
    return (uint32_t)t->n_recs[side]++;
nomem:
    dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
    return OUT_NONE;
}

static int rec_add_pair(orec *r, uint32_t p)
{
    if (r->n_pairs == r->cap_pairs) {
        uint32_t cap = r->cap_pairs ? r->cap_pairs * 2 : 4;
        uint32_t *v = realloc(r->pairs, cap * sizeof *v);
        if (!v) return -1;
        r->pairs = v;
        r->cap_pairs = cap;
    }
    r->pairs[r->n_pairs++] = p;
    return 0;
}

static otenant *find_tenant(const dt_outcome_store *s, const char *name)
{
    name = tenant_name(name);
    for (size_t i = 0; i < s->n_tenants; i++)
        if (strcmp(s->tenants[i]->name, name) == 0) return s->tenants[i];
    return NULL;
}

static otenant *get_tenant(dt_outcome_store *s, const char *name, dt_err *err)
{
    otenant *t = find_tenant(s, name);
    if (t) return t;
    if (s->n_tenants == s->cap_tenants) {
        size_t cap = s->cap_tenants ? s->cap_tenants * 2 : 4;
        otenant **v = realloc(s->tenants, cap * sizeof *v);
        if (!v) goto nomem;
        s->tenants = v;
        const char **n = realloc(s->names, cap * sizeof *n);
        if (!n) goto nomem;
        s->names = n;
        s->cap_tenants = cap;
    }
    if (!(t = calloc(1, sizeof *t))) goto nomem;
    snprintf(t->name, sizeof t->name, "%s", tenant_name(name));
    s->names[s->n_tenants] = t->name;
    s->tenants[s->n_tenants++] = t;
    return t;
nomem:
    dt_err_set(err, DT_ENOMEM, NULL, "out of memory adding tenant '%s'", tenant_name(name));
    return NULL;
}

dt_outcome_store *dt_outcome_store_new(dt_err *err)
{
    dt_outcome_store *s = calloc(1, sizeof *s);
    if (!s) dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating the outcome store");
    return s;
}

void dt_outcome_store_free(dt_outcome_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_tenants; i++) {
        otenant *t = s->tenants[i];
        for (int side = 0; side < 2; side++) {
            for (size_t j = 0; j < t->n_recs[side]; j++) {
                free(t->recs[side][j].id);
                free(t->recs[side][j].pairs);
            }
            free(t->recs[side]);
            free(t->rec_tab[side].slot);
        }
        free(t->pairs);
        free(t->pair_tab.slot);
        free(t->events);
        free(t);
    }
    free(s->tenants);
    free(s->names);
    free(s);
}

static unsigned kind_flags(dt_outcome_kind k)
{
    switch (k) {
    case DT_OUTCOME_VIEWED: return DT_OUTCOME_PAIR_VIEWED;
    case DT_OUTCOME_CONTACTED: return DT_OUTCOME_PAIR_CONTACTED;
    case DT_OUTCOME_DECLINED: return DT_OUTCOME_PAIR_DECLINED;
    case DT_OUTCOME_MEETING_HELD:
    case DT_OUTCOME_NEGOTIATING: return DT_OUTCOME_PAIR_CONTACTED | DT_OUTCOME_PAIR_ENGAGED;
    case DT_OUTCOME_DEAL_SIGNED: return DT_OUTCOME_PAIR_CONTACTED | DT_OUTCOME_PAIR_ENGAGED | DT_OUTCOME_PAIR_DEAL;
    default: return 0;
    }
}

int dt_outcome_add(dt_outcome_store *s, const dt_outcome_event *ev, dt_err *err)
{
    int rc = dt_outcome_event_validate(ev, err);
    if (rc) return rc;
    otenant *t = get_tenant(s, ev->tenant, err);
    if (!t) return -DT_ENOMEM;
    /* everything that can fail comes first: records, room for the pair and the event */
    uint32_t d = rec_get(t, DT_DEMAND, ev->demand_id, err);
    if (d == OUT_NONE) return err ? -err->code : -DT_ENOMEM;
    uint32_t a = rec_get(t, DT_ACHIEVEMENT, ev->achievement_id, err);
    if (a == OUT_NONE) return err ? -err->code : -DT_ENOMEM;
    if (t->n_events == t->cap_events) {
        size_t cap = t->cap_events ? t->cap_events * 2 : 256;
        oevent *v = realloc(t->events, cap * sizeof *v);
        if (!v) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
        t->events = v;
        t->cap_events = cap;
    }
    uint32_t p = pair_find(t, d, a);
    if (p == OUT_NONE) {
        if (t->n_pairs >= OUT_NONE - 1)
            return dt_err_set(err, DT_ELIMIT, "tenant", "more than %u pairs with outcomes in tenant '%s'",
                              OUT_NONE - 1, t->name);
        if (t->n_pairs == t->cap_pairs) {
            size_t cap = t->cap_pairs ? t->cap_pairs * 2 : 64;
            opair *v = realloc(t->pairs, cap * sizeof *v);
            if (!v) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
            t->pairs = v;
            t->cap_pairs = cap;
        }
        if (otab_grow(&t->pair_tab, t->n_pairs + 1, pair_hash_of, t->pairs) < 0)
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
        orec *rd = &t->recs[DT_DEMAND][d], *ra = &t->recs[DT_ACHIEVEMENT][a];
        p = (uint32_t)t->n_pairs;
        if (rec_add_pair(rd, p) < 0) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
        if (rec_add_pair(ra, p) < 0) {
            rd->n_pairs--;
            return dt_err_set(err, DT_ENOMEM, NULL, "out of memory storing an outcome");
        }
        opair *np = &t->pairs[p];
        memset(np, 0, sizeof *np);
        np->d = d;
        np->a = a;
        np->first_at = ev->at;
        otab_insert(&t->pair_tab, hash_pair(d, a), p);
        t->n_pairs++;
    }

    opair *pr = &t->pairs[p];
    orec *r[2] = {&t->recs[DT_DEMAND][d], &t->recs[DT_ACHIEVEMENT][a]};
    unsigned old = pr->flags, add = kind_flags(ev->kind);
    pr->events[ev->kind]++;
    pr->flags |= add;
    if (ev->at < pr->first_at) pr->first_at = ev->at;
    if (ev->at > pr->last_at) pr->last_at = ev->at;
    pr->last_kind = ev->kind;
    for (int side = 0; side < 2; side++) {
        r[side]->events[ev->kind]++;
        if (!(old & DT_OUTCOME_PAIR_CONTACTED) && (add & DT_OUTCOME_PAIR_CONTACTED)) r[side]->contacted_pairs++;
        if (!(old & DT_OUTCOME_PAIR_DEAL) && (add & DT_OUTCOME_PAIR_DEAL)) r[side]->deal_pairs++;
        if (!(old & DT_OUTCOME_PAIR_DECLINED) && (add & DT_OUTCOME_PAIR_DECLINED))
            r[side]->decliners[DT_OUTCOME_REASON_NONE]++;
        if (ev->kind == DT_OUTCOME_DECLINED && !(pr->reasons & (1u << ev->reason))) r[side]->decliners[ev->reason]++;
    }
    if (ev->kind == DT_OUTCOME_DECLINED) pr->reasons |= 1u << ev->reason;
    if (ev->kind == DT_OUTCOME_DEAL_SIGNED) {
        pr->deal_amount += ev->amount;
        r[0]->deal_amount += ev->amount;
        r[1]->deal_amount += ev->amount;
    }
    t->events[t->n_events++] = (oevent){p, (uint8_t)ev->kind, (uint8_t)ev->reason, ev->amount, ev->at};
    t->epoch++;
    return 0;
}

int dt_outcome_note_served(dt_outcome_store *s, const char *tenant, dt_side side, const char *id, uint64_t n,
                           dt_err *err)
{
    int rc = check_tenant(tenant, err);
    if (rc == 0) rc = check_id(id, "id", err);
    if (rc) return rc;
    if (side != DT_DEMAND && side != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "side", "must be demand or achievement");
    otenant *t = get_tenant(s, tenant, err);
    if (!t) return -DT_ENOMEM;
    uint32_t i = rec_get(t, side, id, err);
    if (i == OUT_NONE) return err ? -err->code : -DT_ENOMEM;
    t->recs[side][i].served += n;
    t->epoch++;
    return 0;
}

size_t dt_outcome_count(const dt_outcome_store *s, const char *tenant)
{
    const otenant *t = find_tenant(s, tenant);
    return t ? t->n_events : 0;
}

uint64_t dt_outcome_epoch(const dt_outcome_store *s, const char *tenant)
{
    const otenant *t = find_tenant(s, tenant);
    return t ? t->epoch : 0;
}

const char *const *dt_outcome_tenants(const dt_outcome_store *s, size_t *n)
{
    *n = s->n_tenants;
    return s->names;
}

int dt_outcome_each(const dt_outcome_store *s, const char *tenant, int (*fn)(void *ud, const dt_outcome_event *ev),
                    void *ud)
{
    const otenant *t = find_tenant(s, tenant);
    if (!t) return 0;
    for (size_t i = 0; i < t->n_events; i++) {
        const oevent *e = &t->events[i];
        const opair *p = &t->pairs[e->pair];
        dt_outcome_event ev = {t->name,
                               t->recs[DT_DEMAND][p->d].id,
                               t->recs[DT_ACHIEVEMENT][p->a].id,
                               (dt_outcome_kind)e->kind,
                               (dt_outcome_reason)e->reason,
                               e->amount,
                               e->at};
        int rc = fn(ud, &ev);
        if (rc) return rc;
    }
    return 0;
}

static const opair *lookup_pair(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                                const char *achievement_id)
{
    const otenant *t = find_tenant(s, tenant);
    if (!t || !demand_id || !achievement_id) return NULL;
    uint32_t d = rec_find(t, DT_DEMAND, demand_id, hash_str(demand_id));
    if (d == OUT_NONE) return NULL;
    uint32_t a = rec_find(t, DT_ACHIEVEMENT, achievement_id, hash_str(achievement_id));
    if (a == OUT_NONE) return NULL;
    uint32_t p = pair_find(t, d, a);
    return p == OUT_NONE ? NULL : &t->pairs[p];
}

static const orec *lookup_rec(const dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                              const otenant **tp)
{
    const otenant *t = find_tenant(s, tenant);
    if (tp) *tp = t;
    if (!t || !id || (side != DT_DEMAND && side != DT_ACHIEVEMENT)) return NULL;
    uint32_t i = rec_find(t, side, id, hash_str(id));
    return i == OUT_NONE ? NULL : &t->recs[side][i];
}

int dt_outcome_pair_get(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                        const char *achievement_id, dt_outcome_pair_stats *out)
{
    memset(out, 0, sizeof *out);
    const opair *p = lookup_pair(s, tenant, demand_id, achievement_id);
    if (!p) return 0;
    memcpy(out->events, p->events, sizeof out->events);
    out->reasons = p->reasons;
    out->flags = p->flags;
    out->deal_amount = p->deal_amount;
    out->first_at = p->first_at;
    out->last_at = p->last_at;
    out->last_kind = p->last_kind;
    return 1;
}

unsigned dt_outcome_pair_flags(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                               const char *achievement_id)
{
    const opair *p = lookup_pair(s, tenant, demand_id, achievement_id);
    return p ? p->flags : 0;
}

bool dt_outcome_declined(const dt_outcome_store *s, const char *tenant, const char *demand_id,
                         const char *achievement_id)
{
    return (dt_outcome_pair_flags(s, tenant, demand_id, achievement_id) & DT_OUTCOME_PAIR_DECLINED) != 0;
}

int dt_outcome_record_get(const dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                          dt_outcome_record_stats *out)
{
    memset(out, 0, sizeof *out);
    const orec *r = lookup_rec(s, tenant, side, id, NULL);
    if (!r) return 0;
    memcpy(out->events, r->events, sizeof out->events);
    memcpy(out->decliners, r->decliners, sizeof out->decliners);
    out->partners = r->n_pairs;
    out->contacted_pairs = r->contacted_pairs;
    out->deal_pairs = r->deal_pairs;
    out->served = r->served;
    out->deal_amount = r->deal_amount;
    return 1;
}

size_t dt_outcome_partners(const dt_outcome_store *s, const char *tenant, dt_side side, const char *id,
                           void (*fn)(void *ud, const char *partner_id, unsigned pair_flags), void *ud)
{
    const otenant *t;
    const orec *r = lookup_rec(s, tenant, side, id, &t);
    if (!r) return 0;
    for (uint32_t i = 0; i < r->n_pairs; i++) {
        const opair *p = &t->pairs[r->pairs[i]];
        const char *other = side == DT_DEMAND ? t->recs[DT_ACHIEVEMENT][p->a].id : t->recs[DT_DEMAND][p->d].id;
        if (fn) fn(ud, other, p->flags);
    }
    return r->n_pairs;
}

/* ---- feedback into ranking ---- */

void dt_outcome_policy_default(dt_outcome_policy *p)
{
    p->engaged_boost = 0.05f;
    p->price_penalty = 0.10f;
    p->stage_penalty = 0.10f;
    p->min_declines = 2;
}

int dt_outcome_policy_validate(const dt_outcome_policy *p, dt_err *err)
{
    if (!(isfinite(p->engaged_boost) && p->engaged_boost >= 0))
        return dt_err_set(err, DT_EINVAL, "engaged_boost", "must be finite and >= 0");
    if (!(isfinite(p->price_penalty) && p->price_penalty >= 0))
        return dt_err_set(err, DT_EINVAL, "price_penalty", "must be finite and >= 0");
    if (!(isfinite(p->stage_penalty) && p->stage_penalty >= 0))
        return dt_err_set(err, DT_EINVAL, "stage_penalty", "must be finite and >= 0");
    if (p->min_declines < 1) return dt_err_set(err, DT_EINVAL, "min_declines", "must be at least 1");
    return 0;
}

static unsigned rec_ach_flags(const orec *r, const dt_outcome_policy *p)
{
    unsigned f = 0;
    if (r->decliners[DT_OUTCOME_REASON_PRICE] >= p->min_declines) f |= DT_OUTCOME_ACH_PRICE;
    if (r->decliners[DT_OUTCOME_REASON_TOO_EARLY_STAGE] >= p->min_declines) f |= DT_OUTCOME_ACH_STAGE;
    return f;
}

unsigned dt_outcome_achievement_flags(const dt_outcome_store *s, const dt_outcome_policy *p, const char *tenant,
                                      const char *achievement_id)
{
    const orec *r = lookup_rec(s, tenant, DT_ACHIEVEMENT, achievement_id, NULL);
    return r ? rec_ach_flags(r, p) : 0;
}

size_t dt_outcome_flagged(const dt_outcome_store *s, const dt_outcome_policy *p, const char *tenant,
                          void (*fn)(void *ud, const char *achievement_id, unsigned flags), void *ud)
{
    const otenant *t = find_tenant(s, tenant);
    if (!t) return 0;
    size_t n = 0;
    for (size_t i = 0; i < t->n_recs[DT_ACHIEVEMENT]; i++) {
        unsigned f = rec_ach_flags(&t->recs[DT_ACHIEVEMENT][i], p);
        if (!f) continue;
        n++;
        if (fn) fn(ud, t->recs[DT_ACHIEVEMENT][i].id, f);
    }
    return n;
}

float dt_outcome_delta(const dt_outcome_policy *p, unsigned pair_flags, unsigned achievement_flags,
                       const dt_record *demand, const dt_record *achievement)
{
    if (pair_flags & DT_OUTCOME_PAIR_DECLINED) return -INFINITY;
    float delta = 0;
    if (pair_flags & DT_OUTCOME_PAIR_ENGAGED) delta += p->engaged_boost;
    if ((achievement_flags & DT_OUTCOME_ACH_PRICE) && demand && achievement) {
        /* the demand's highest budget below the achievement's lowest ask, as the structured fit
         * reads them: only a demand's maximum bounds its budget, only an achievement's minimum
         * bounds its ask (a missing end is open) */
        double budget = demand->price_max, ask = achievement->price_min;
        if (!isnan(budget) && !isnan(ask) && budget < ask) delta -= p->price_penalty;
    }
    if ((achievement_flags & DT_OUTCOME_ACH_STAGE) && demand && achievement && demand->trl > 0 &&
        achievement->trl > 0 && demand->trl > achievement->trl)
        delta -= p->stage_penalty;
    return delta;
}

float dt_outcome_adjust(const dt_outcome_store *s, const dt_outcome_policy *p, const dt_record *demand,
                        const dt_record *achievement)
{
    const char *tenant = dt_record_tenant(demand);
    return dt_outcome_delta(p, dt_outcome_pair_flags(s, tenant, demand->id, achievement->id),
                            dt_outcome_achievement_flags(s, p, tenant, achievement->id), demand, achievement);
}

int dt_outcome_each_served(const dt_outcome_store *s, const char *tenant,
                           int (*fn)(void *ud, dt_side side, const char *id, uint64_t served), void *ud)
{
    const otenant *t = find_tenant(s, tenant);
    for (int side = 0; t && side < 2; side++)
        for (size_t i = 0; i < t->n_recs[side]; i++) {
            const orec *r = &t->recs[side][i];
            if (!r->served) continue;
            int rc = fn(ud, (dt_side)side, r->id, r->served);
            if (rc) return rc;
        }
    return 0;
}

int dt_outcome_event_check_stored(const dt_engine *e, const dt_outcome_event *ev, dt_err *err)
{
    const char *tenant = tenant_name(ev->tenant);
    const char *ids[2] = {ev->demand_id, ev->achievement_id};
    static const char *const fields[2] = {"demand_id", "achievement_id"};
    for (int side = 0; side < 2; side++) {
        if (!ids[side] || !*ids[side])
            return dt_err_set(err, DT_EINVAL, fields[side], "missing: give the record's id");
        if (dt_engine_get(e, tenant, (dt_side)side, ids[side])) continue;
        const char *hint = !dt_engine_get(e, tenant, (dt_side)!side, ids[side]) ? ""
                           : side == DT_DEMAND                                   ? " (that id names an achievement)"
                                                                                 : " (that id names a demand)";
        return dt_err_set(err, DT_ENOTFOUND, fields[side], "no %s with id '%.128s' in tenant '%s'%s",
                          dt_side_name((dt_side)side), ids[side], tenant, hint);
    }
    return 0;
}

/* ---- tracking statistics ---- */

void dt_outcome_stats_opts_default(dt_outcome_stats_opts *o)
{
    o->field_depth = 1;
    o->region_depth = 2;
    o->by = DT_DEMAND;
}

/* Group rows keyed by "field\x1fregion", through an otab over the rows. */
typedef struct groups {
    dt_outcome_stats_row *rows;
    uint64_t *hash;
    size_t n, cap;
    otab tab;
} groups;

static uint64_t group_hash_of(const void *ctx, uint32_t i)
{
    return ((const uint64_t *)ctx)[i];
}

/* The first `depth` components of code into out; "*" for depth 0, "-" when code is empty. */
static void cut_code(const char *code, int depth, char *out, size_t n)
{
    if (depth <= 0) {
        snprintf(out, n, "*");
        return;
    }
    if (!code || !*code) {
        snprintf(out, n, "-");
        return;
    }
    size_t len = 0;
    int comps = 1;
    while (code[len] && !(code[len] == '.' && comps++ == depth)) len++;
    snprintf(out, n, "%.*s", (int)len, code);
}

static dt_outcome_stats_row *group_of(groups *g, const dt_record *r, const dt_outcome_stats_opts *o)
{
    char f[DT_SHORT_MAX + 1], reg[DT_SHORT_MAX + 1];
    if (r) {
        cut_code(r->field, o->field_depth, f, sizeof f);
        cut_code(r->region, o->region_depth, reg, sizeof reg);
    } else {
        cut_code(NULL, o->field_depth, f, sizeof f);
        cut_code(NULL, o->region_depth, reg, sizeof reg);
    }
    uint64_t h = XXH3_64bits(f, strlen(f)) ^ XXH3_64bits_withSeed(reg, strlen(reg), 0x9e3779b97f4a7c15u);
    if (g->tab.cap)
        for (size_t j = (size_t)h & (g->tab.cap - 1);; j = (j + 1) & (g->tab.cap - 1)) {
            uint32_t v = g->tab.slot[j];
            if (!v) break;
            dt_outcome_stats_row *row = &g->rows[v - 1];
            if (g->hash[v - 1] == h && strcmp(row->field, f) == 0 && strcmp(row->region, reg) == 0) return row;
        }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 32;
        dt_outcome_stats_row *v = realloc(g->rows, cap * sizeof *v);
        if (!v) return NULL;
        g->rows = v;
        uint64_t *hv = realloc(g->hash, cap * sizeof *hv);
        if (!hv) return NULL;
        g->hash = hv;
        g->cap = cap;
    }
    if (otab_grow(&g->tab, g->n + 1, group_hash_of, g->hash) < 0) return NULL;
    dt_outcome_stats_row *row = &g->rows[g->n];
    memset(row, 0, sizeof *row);
    snprintf(row->field, sizeof row->field, "%s", f);
    snprintf(row->region, sizeof row->region, "%s", reg);
    g->hash[g->n] = h;
    otab_insert(&g->tab, h, (uint32_t)g->n);
    g->n++;
    return row;
}

static int cmp_row(const void *a, const void *b)
{
    const dt_outcome_stats_row *x = a, *y = b;
    int c = strcmp(x->field, y->field);
    return c ? c : strcmp(x->region, y->region);
}

static void row_add(dt_outcome_stats_row *dst, const dt_outcome_stats_row *src)
{
    dst->demands += src->demands;
    dst->demands_open += src->demands_open;
    dst->achievements += src->achievements;
    dst->achievements_open += src->achievements_open;
    dst->served_demands += src->served_demands;
    dst->served_achievements += src->served_achievements;
    for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++) dst->events[k] += src->events[k];
    for (int r = 0; r < DT_OUTCOME_REASON_COUNT; r++) dst->declined[r] += src->declined[r];
    dst->contacted_pairs += src->contacted_pairs;
    dst->deal_pairs += src->deal_pairs;
    dst->deal_amount += src->deal_amount;
}

int dt_outcome_stats(const dt_outcome_store *s, const dt_engine *e, const char *tenant,
                     const dt_outcome_stats_opts *o, dt_outcome_stats_row **rows_out, size_t *n_out, dt_err *err)
{
    dt_outcome_stats_opts def;
    if (!o) {
        dt_outcome_stats_opts_default(&def);
        o = &def;
    }
    *rows_out = NULL;
    *n_out = 0;
    if (o->field_depth < 0 || o->region_depth < 0)
        return dt_err_set(err, DT_EINVAL, o->field_depth < 0 ? "field_depth" : "region_depth", "must be >= 0");
    if (o->by != DT_DEMAND && o->by != DT_ACHIEVEMENT)
        return dt_err_set(err, DT_EINVAL, "by", "must be demand or achievement");
    groups g;
    memset(&g, 0, sizeof g);
    dt_outcome_stats_row *row;
    /* row 0 is the total; it is filled from the groups at the end */
    dt_record none;
    dt_record_init(&none);
    dt_outcome_stats_opts all = {0, 0, o->by};
    if (!group_of(&g, &none, &all)) goto nomem;

    for (int side = 0; e && side < 2; side++) {
        dt_index *idx = dt_engine_index(e, tenant, (dt_side)side);
        size_t slots = idx ? dt_index_slots(idx) : 0;
        for (uint32_t i = 0; i < slots; i++) {
            if (!dt_index_live(idx, i)) continue;
            const dt_record *r = dt_index_record(idx, i);
            if (!(row = group_of(&g, r, o))) goto nomem;
            bool open = r->status == DT_OPEN;
            if (side == DT_DEMAND) row->demands++, row->demands_open += open;
            else row->achievements++, row->achievements_open += open;
        }
    }
    const otenant *t = find_tenant(s, tenant);
    for (int side = 0; t && side < 2; side++)
        for (size_t i = 0; i < t->n_recs[side]; i++) {
            const orec *r = &t->recs[side][i];
            if (!r->served) continue;
            const dt_record *rec = e ? dt_engine_get(e, tenant, (dt_side)side, r->id) : NULL;
            if (!(row = group_of(&g, rec, o))) goto nomem;
            if (side == DT_DEMAND) row->served_demands += r->served;
            else row->served_achievements += r->served;
        }
    for (size_t i = 0; t && i < t->n_pairs; i++) {
        const opair *p = &t->pairs[i];
        const char *id = o->by == DT_DEMAND ? t->recs[DT_DEMAND][p->d].id : t->recs[DT_ACHIEVEMENT][p->a].id;
        const dt_record *rec = e ? dt_engine_get(e, tenant, o->by, id) : NULL;
        if (!(row = group_of(&g, rec, o))) goto nomem;
        for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++) row->events[k] += p->events[k];
        row->contacted_pairs += (p->flags & DT_OUTCOME_PAIR_CONTACTED) != 0;
        row->deal_pairs += (p->flags & DT_OUTCOME_PAIR_DEAL) != 0;
        row->deal_amount += p->deal_amount;
    }
    /* declines by reason need the events themselves (a pair may be declined more than once) */
    for (size_t i = 0; t && i < t->n_events; i++) {
        const oevent *ev = &t->events[i];
        if (ev->kind != DT_OUTCOME_DECLINED) continue;
        const opair *p = &t->pairs[ev->pair];
        const char *id = o->by == DT_DEMAND ? t->recs[DT_DEMAND][p->d].id : t->recs[DT_ACHIEVEMENT][p->a].id;
        const dt_record *rec = e ? dt_engine_get(e, tenant, o->by, id) : NULL;
        if (!(row = group_of(&g, rec, o))) goto nomem;
        row->declined[ev->reason]++;
        row->declined[DT_OUTCOME_REASON_NONE]++;
    }
    for (size_t i = 1; i < g.n; i++) row_add(&g.rows[0], &g.rows[i]);
    if (g.n > 2) qsort(g.rows + 1, g.n - 1, sizeof *g.rows, cmp_row);
    for (size_t i = 0; i < g.n; i++)
        g.rows[i].conversion =
            g.rows[i].contacted_pairs ? (double)g.rows[i].deal_pairs / (double)g.rows[i].contacted_pairs : 0;
    free(g.hash);
    free(g.tab.slot);
    *rows_out = g.rows;
    *n_out = g.n;
    return 0;
nomem:
    free(g.rows);
    free(g.hash);
    free(g.tab.slot);
    return dt_err_set(err, DT_ENOMEM, NULL, "out of memory computing outcome statistics");
}
