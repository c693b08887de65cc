/* rpc.c - one handler per Matchmaker method, converting between the protobuf messages and the
 * engine. Handlers run on worker threads (dt_rpc_run*) and hold the engine lock only while they
 * read or write it; dt_rpc_precheck and dt_rpc_from_cache run on the loop thread and never touch
 * the engine.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "commit.h"
#include "durable.h"
#include "pbjson.h"
#include "server.h"

typedef Dovetail__V1__Record PbRecord;

static const char *tenant_or_public(const char *t)
{
    return t && *t ? t : "public";
}

const char *dt_rpc_tenant(const dt_call *c)
{
    /* every request message has a string field "tenant" (the .proto's convention) */
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(c->in->descriptor, "tenant");
    if (!f || f->type != PROTOBUF_C_TYPE_STRING) return "public";
    return tenant_or_public(*(char *const *)((const char *)c->in + f->offset));
}

uint64_t dt_rpc_tenant_epoch(const dt_server *s, const char *tenant)
{
    return dt_engine_epoch(s->engine, tenant) + (s->outcomes ? dt_outcome_count(s->outcomes, tenant) : 0);
}

/* Folds pending served counts into the store; the caller holds the write lock. */
static void fold_locked(dt_server *s)
{
    if (!s->served || !s->outcomes || !dt_served_pending(s->served)) return;
    dt_err err = DT_ERR_INIT;
    if (dt_served_fold(s->served, s->outcomes, &err) < 0 && !s->cfg.quiet)
        fprintf(stderr, "dovetaild: matches served not counted yet: %s\n", err.msg);
}

void dt_rpc_write_lock(dt_server *s)
{
    pthread_mutex_lock(&s->commit);
    dt_store_write_lock(&s->store);
}

void dt_rpc_write_unlock(dt_server *s)
{
    dt_store_write_unlock(&s->store);
    pthread_mutex_unlock(&s->commit);
}

void dt_rpc_fold_served(dt_server *s)
{
    if (!s->served || !dt_served_pending(s->served)) return;
    dt_rpc_write_lock(s);
    fold_locked(s);
    dt_rpc_write_unlock(s);
}

static int vfail(dt_call *c, dt_twirp_code code, int dt_code, const char *field, const char *fmt, va_list ap)
{
    c->code = code;
    c->err.code = dt_code;
    snprintf(c->err.field, sizeof c->err.field, "%s", field ? field : "");
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    return -1;
}

int dt_rpc_fail(dt_call *c, dt_twirp_code code, int dt_code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, code, dt_code, field, fmt, ap);
    va_end(ap);
    return -1;
}

int dt_rpc_bad(dt_call *c, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, TW_INVALID_ARGUMENT, DT_EINVAL, field, fmt, ap);
    va_end(ap);
    return -1;
}

int dt_rpc_side_of(Dovetail__V1__Side s, dt_side *out)
{
    if (s == DOVETAIL__V1__SIDE__SIDE_DEMAND) *out = DT_DEMAND;
    else if (s == DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT) *out = DT_ACHIEVEMENT;
    else return -1;
    return 0;
}

Dovetail__V1__Side dt_rpc_side_pb(dt_side s)
{
    return s == DT_DEMAND ? DOVETAIL__V1__SIDE__SIDE_DEMAND : DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT;
}

/* Mode enum <-> bit: MODE_TRANSFER (1) is bit 0, ... MODE_CONSULTING (6) bit 5. */
static int modes_of(const Dovetail__V1__Mode *m, size_t n, uint32_t *bits, char *field, size_t fsz,
                    const char *name /* at most 40 bytes */)
{
    *bits = 0;
    for (size_t i = 0; i < n; i++) {
        if ((int)m[i] < 1 || (int)m[i] > DT_MODE_COUNT) {
            snprintf(field, fsz, "%.40s[%zu]", name, i);
            return -1;
        }
        *bits |= 1u << ((int)m[i] - 1);
    }
    return 0;
}

static size_t modes_pb(uint32_t bits, Dovetail__V1__Mode *out)
{
    size_t n = 0;
    for (int b = 0; b < DT_MODE_COUNT; b++)
        if (bits & (1u << b)) out[n++] = (Dovetail__V1__Mode)(b + 1);
    return n;
}

/* ---- loop-side checks ---- */

int dt_rpc_check_weights(dt_call *c, const Dovetail__V1__Weights *w)
{
    if (!w) return 0;
    double v[3] = {w->dense, w->lexical, w->structured};
    const char *names[3] = {"weights.dense", "weights.lexical", "weights.structured"};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || v[i] < 0 || v[i] > 1e6)
            return dt_rpc_bad(c, names[i], "%g: a weight is a number from 0 to 1e6", v[i]);
    if (v[0] + v[1] + v[2] <= 0) return dt_rpc_bad(c, "weights", "at least one weight must be > 0");
    return 0;
}

#define STATS_DEPTH_MAX 64

/* Converts outcomes[i] into *ev (borrowing the request's strings) and checks it as
 * dt_outcome_event_validate does. Errors name "outcomes[i].field". */
static int outcome_from_pb(dt_call *c, const Dovetail__V1__Outcome *p, size_t i, dt_outcome_event *ev)
{
    dt_outcome_event_init(ev);
    ev->tenant = c->tenant;
    ev->demand_id = p->demand_id;
    ev->achievement_id = p->achievement_id;
    ev->at = p->at;
    char field[64];
    if (p->kind == DOVETAIL__V1__OUTCOME_KIND__OUTCOME_KIND_UNSPECIFIED) {
        snprintf(field, sizeof field, "outcomes[%zu].kind", i);
        return dt_rpc_bad(c, field, "required: OUTCOME_KIND_VIEWED, _CONTACTED, _DECLINED, _MEETING_HELD, _NEGOTIATING or "
                             "_DEAL_SIGNED");
    }
    if ((int)p->kind < 1 || (int)p->kind > DT_OUTCOME_KIND_COUNT) {
        snprintf(field, sizeof field, "outcomes[%zu].kind", i);
        return dt_rpc_bad(c, field, "unknown outcome kind %d", (int)p->kind);
    }
    ev->kind = (dt_outcome_kind)((int)p->kind - 1);
    if ((int)p->reason < 0 || (int)p->reason >= DT_OUTCOME_REASON_COUNT) {
        snprintf(field, sizeof field, "outcomes[%zu].reason", i);
        return dt_rpc_bad(c, field, "unknown decline reason %d", (int)p->reason);
    }
    ev->reason = (dt_outcome_reason)p->reason;
    if (p->amount_present_case == DOVETAIL__V1__OUTCOME__AMOUNT_PRESENT_AMOUNT) {
        if (ev->kind == DT_OUTCOME_DEAL_SIGNED && !(isfinite(p->amount) && p->amount >= 0)) {
            snprintf(field, sizeof field, "outcomes[%zu].amount", i);
            return dt_rpc_bad(c, field, "must be a finite amount >= 0 (CNY), got %g", p->amount);
        }
        ev->amount = isnan(p->amount) ? 0 : p->amount; /* a NaN on another kind is still an amount given */
    }
    dt_err err = DT_ERR_INIT;
    if (dt_outcome_event_validate(ev, &err) < 0) {
        snprintf(field, sizeof field, "outcomes[%zu].%.30s", i, err.field[0] ? err.field : "outcome");
        return dt_rpc_bad(c, field, "%s", err.msg);
    }
    return 0;
}

static int precheck_upsert(dt_call *c)
{
    const dt_config *cfg = &c->srv->cfg;
    const Dovetail__V1__UpsertRecordsRequest *r = (const void *)c->in;
    if (r->n_records > cfg->max_records)
        return dt_rpc_bad(c, "records", "%zu records in one call; the limit is %zu (--max-records)", r->n_records,
                          cfg->max_records);
    return 0;
}

static int precheck_delete(dt_call *c)
{
    const dt_config *cfg = &c->srv->cfg;
    const Dovetail__V1__DeleteRecordsRequest *r = (const void *)c->in;
    dt_side s;
    if (dt_rpc_side_of(r->side, &s) < 0) return dt_rpc_bad(c, "side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
    if (r->n_ids > cfg->max_records)
        return dt_rpc_bad(c, "ids", "%zu ids in one call; the limit is %zu (--max-records)", r->n_ids, cfg->max_records);
    return 0;
}

static int precheck_get(dt_call *c)
{
    const Dovetail__V1__GetRecordRequest *r = (const void *)c->in;
    dt_side s;
    if (dt_rpc_side_of(r->side, &s) < 0) return dt_rpc_bad(c, "side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
    if (!r->id || !*r->id) return dt_rpc_bad(c, "id", "required");
    return 0;
}

/* Whether a query text has nothing to search for: only separators (spaces, line and paragraph
 * separators, U+3000 and the like), control and format characters (tabs, zero-width spaces).
 * Invalid UTF-8 is not blank (the decoder refused it already). */
static bool blank_text(const char *text)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    utf8proc_int32_t cp;
    utf8proc_ssize_t n;
    while (*p && (n = utf8proc_iterate(p, -1, &cp)) > 0) {
        switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP:
        case UTF8PROC_CATEGORY_CC:
        case UTF8PROC_CATEGORY_CF: break;
        default: return false;
        }
        p += n;
    }
    return *p == 0;
}

static int precheck_match(dt_call *c)
{
    const dt_config *cfg = &c->srv->cfg;
    const Dovetail__V1__MatchRequest *r = (const void *)c->in;
    dt_side s;
    if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD) {
        if (!r->record || dt_rpc_side_of(r->record->side, &s) < 0)
            return dt_rpc_bad(c, "record.side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
        if (!r->record->id || !*r->record->id) return dt_rpc_bad(c, "record.id", "required");
        if (r->target_side != DOVETAIL__V1__SIDE__SIDE_UNSPECIFIED && dt_rpc_side_of(r->target_side, &s) < 0)
            return dt_rpc_bad(c, "target_side", "unknown side %d", (int)r->target_side);
    } else if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_TEXT) {
        if (!r->text || !*r->text) return dt_rpc_bad(c, "text", "empty");
        if (blank_text(r->text))
            return dt_rpc_bad(c, "text", "has nothing to search for: only spaces, control or format characters");
        if (strlen(r->text) > cfg->max_text)
            return dt_rpc_bad(c, "text", "longer than %zu bytes (--max-text)", cfg->max_text);
        if (dt_rpc_side_of(r->target_side, &s) < 0)
            return dt_rpc_bad(c, "target_side", "required with a text query: SIDE_DEMAND or SIDE_ACHIEVEMENT");
    } else {
        return dt_rpc_bad(c, "query", "give either record (side and id of a stored record) or text");
    }
    if ((size_t)r->k + r->offset > cfg->max_k)
        return dt_rpc_bad(c, r->k > cfg->max_k ? "k" : "offset", "k + offset is %llu; the limit is %zu (--max-k)",
                          (unsigned long long)r->k + r->offset, cfg->max_k);
    const Dovetail__V1__Filter *f = r->filter;
    if (f) {
        if (f->trl_min < 0 || f->trl_min > 9) return dt_rpc_bad(c, "filter.trl_min", "must be 0 (none) or 1..9");
        if (f->trl_max < 0 || f->trl_max > 9) return dt_rpc_bad(c, "filter.trl_max", "must be 0 (none) or 1..9");
        if (f->trl_min && f->trl_max && f->trl_min > f->trl_max)
            return dt_rpc_bad(c, "filter.trl_min", "is larger than filter.trl_max");
        uint32_t bits;
        char field[64];
        if (modes_of(f->modes, f->n_modes, &bits, field, sizeof field, "filter.modes") < 0)
            return dt_rpc_bad(c, field, "unknown mode");
        if (f->price_min_present_case && !(f->price_min >= 0 && isfinite(f->price_min)))
            return dt_rpc_bad(c, "filter.price_min", "must be a finite number >= 0");
        if (f->price_max_present_case && !(f->price_max >= 0 && isfinite(f->price_max)))
            return dt_rpc_bad(c, "filter.price_max", "must be a finite number >= 0");
        if (f->price_min_present_case && f->price_max_present_case && f->price_min > f->price_max)
            return dt_rpc_bad(c, "filter.price_min", "is larger than filter.price_max (%g > %g)", f->price_min,
                              f->price_max);
        if (f->n_field_prefixes > 64 || f->n_regions > 64 || f->n_clusters > 64 || f->n_tags > 64 ||
            f->n_exclude_ids > 10000)
            return dt_rpc_bad(c, "filter", "too many values in a list (64 at most; exclude_ids 10000)");
    }
    return dt_rpc_check_weights(c, r->weights);
}

static int precheck_stats(dt_call *c)
{
    const Dovetail__V1__StatsRequest *r = (const void *)c->in;
    if (r->field_depth_present_case && r->field_depth > STATS_DEPTH_MAX)
        return dt_rpc_bad(c, "field_depth", "%u is more than %d components", r->field_depth, STATS_DEPTH_MAX);
    if (r->region_depth_present_case && r->region_depth > STATS_DEPTH_MAX)
        return dt_rpc_bad(c, "region_depth", "%u is more than %d components", r->region_depth, STATS_DEPTH_MAX);
    return 0;
}

static int precheck_outcome(dt_call *c)
{
    const dt_config *cfg = &c->srv->cfg;
    const Dovetail__V1__RecordOutcomeRequest *r = (const void *)c->in;
    if (r->n_outcomes > cfg->max_records)
        return dt_rpc_bad(c, "outcomes", "%zu events in one call; the limit is %zu (--max-records)", r->n_outcomes,
                          cfg->max_records);
    for (size_t i = 0; i < r->n_outcomes; i++) {
        dt_outcome_event ev;
        if (outcome_from_pb(c, r->outcomes[i], i, &ev) < 0) return -1;
    }
    return 0;
}

int dt_rpc_precheck(dt_call *c)
{
    /* c->tenant is a copy cut to DT_TENANT_MAX bytes: the request's own field is what counts */
    dt_err err = DT_ERR_INIT;
    if (dt_tenant_name_check(dt_rpc_tenant(c), "tenant", &err) < 0) return dt_rpc_bad(c, "tenant", "%s", err.msg);
    int (*check)(dt_call *) = c->method_index < DT_M_COUNT ? dt_methods[c->method_index].precheck : NULL;
    return check ? check(c) : 0;
}

static int dup_str(char **dst, const char *src)
{
    if (!src || !*src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static int dup_list(char ***dst, size_t *n, char **src, size_t ns)
{
    if (!ns) return 0;
    *dst = calloc(ns, sizeof **dst);
    if (!*dst) return -1;
    *n = ns;
    for (size_t i = 0; i < ns; i++)
        if (!((*dst)[i] = strdup(src[i] ? src[i] : ""))) return -1;
    return 0;
}

/* Converts records[i] into *r (owned copies). Errors name "records[i].field". */
static int record_from_pb(dt_call *c, const PbRecord *p, size_t i, dt_record *r)
{
    dt_record_init(r);
    char field[64];
    if (p->tenant && *p->tenant && strcmp(p->tenant, c->tenant) != 0) {
        snprintf(field, sizeof field, "records[%zu].tenant", i);
        return dt_rpc_bad(c, field, "'%s' differs from the request's tenant '%s' (leave it empty)", p->tenant, c->tenant);
    }
    dt_side side;
    if (dt_rpc_side_of(p->side, &side) < 0) {
        snprintf(field, sizeof field, "records[%zu].side", i);
        return dt_rpc_bad(c, field, "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
    }
    r->side = side;
    uint32_t bits;
    char mf[64];
    snprintf(field, sizeof field, "records[%zu].modes", i);
    if (modes_of(p->modes, p->n_modes, &bits, mf, sizeof mf, field) < 0) return dt_rpc_bad(c, mf, "unknown mode");
    r->modes = bits;
    if (p->status == DOVETAIL__V1__STATUS__STATUS_CLOSED)
        r->status = DT_CLOSED;
    else if (p->status != DOVETAIL__V1__STATUS__STATUS_OPEN && p->status != DOVETAIL__V1__STATUS__STATUS_UNSPECIFIED) {
        snprintf(field, sizeof field, "records[%zu].status", i);
        return dt_rpc_bad(c, field, "unknown status %d", (int)p->status);
    }
    r->trl = p->trl;
    r->updated_at = p->updated_at;
    /* a record keeps NaN for "no price": a NaN sent as a price is an error, not an absence */
    if ((p->price_min_present_case && isnan(p->price_min)) || (p->price_max_present_case && isnan(p->price_max))) {
        snprintf(field, sizeof field, "records[%zu].%s", i, p->price_min_present_case && isnan(p->price_min)
                                                                 ? "price_min" : "price_max");
        return dt_rpc_bad(c, field, "not a number (NaN); give a price >= 0, or leave the field out");
    }
    if (p->price_min_present_case) r->price_min = p->price_min;
    if (p->price_max_present_case) r->price_max = p->price_max;
    if (dup_str(&r->tenant, c->tenant) || dup_str(&r->id, p->id) || dup_str(&r->title, p->title) ||
        dup_str(&r->text, p->text) || dup_str(&r->org, p->org) || dup_str(&r->field, p->field) ||
        dup_str(&r->region, p->region) || dup_list(&r->keywords, &r->n_keywords, p->keywords, p->n_keywords) ||
        dup_list(&r->tags, &r->n_tags, p->tags, p->n_tags))
        goto nomem;
    if (p->n_embedding) {
        r->embedding = malloc(p->n_embedding * sizeof(float));
        if (!r->embedding) goto nomem;
        memcpy(r->embedding, p->embedding, p->n_embedding * sizeof(float));
        r->dim = p->n_embedding;
    }
    dt_err err = DT_ERR_INIT;
    if (dt_record_validate(r, &err) < 0 || dt_record_check_names(r, &err) < 0) {
        snprintf(field, sizeof field, "records[%zu].%.30s", i, err.field);
        return dt_rpc_bad(c, field, "%s", err.msg);
    }
    return 0;
nomem:
    c->code = TW_INTERNAL;
    dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
    return -1;
}

/* Fills a protobuf Record that borrows r's strings (valid while the engine lock is held). */
static void record_to_pb(const dt_record *r, PbRecord *p, Dovetail__V1__Mode *modes)
{
    dovetail__v1__record__init(p);
    p->tenant = (char *)dt_record_tenant(r);
    p->id = r->id;
    p->side = dt_rpc_side_pb(r->side);
    if (r->title) p->title = r->title;
    if (r->text) p->text = r->text;
    p->n_keywords = r->n_keywords;
    p->keywords = r->keywords;
    if (r->org) p->org = r->org;
    if (r->field) p->field = r->field;
    if (r->region) p->region = r->region;
    p->trl = r->trl;
    p->n_modes = modes_pb(r->modes, modes);
    p->modes = modes;
    if (!isnan(r->price_min)) {
        p->price_min_present_case = DOVETAIL__V1__RECORD__PRICE_MIN_PRESENT_PRICE_MIN;
        p->price_min = r->price_min;
    }
    if (!isnan(r->price_max)) {
        p->price_max_present_case = DOVETAIL__V1__RECORD__PRICE_MAX_PRESENT_PRICE_MAX;
        p->price_max = r->price_max;
    }
    p->n_tags = r->n_tags;
    p->tags = r->tags;
    p->status = r->status == DT_CLOSED ? DOVETAIL__V1__STATUS__STATUS_CLOSED : DOVETAIL__V1__STATUS__STATUS_OPEN;
    p->updated_at = r->updated_at;
    p->n_embedding = r->embedding ? r->dim : 0;
    p->embedding = r->embedding;
}

void dt_rpc_finish(dt_call *c, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    c->out = malloc(n ? n : 1);
    if (!c->out) goto nomem;
    c->out_len = protobuf_c_message_pack(msg, c->out);
    if (c->json) {
        dt_pbjson_opts o = {0};
        o.emit_defaults = true;
        c->out_json = dt_pbjson_encode(msg, &o, &c->out_json_len);
        if (!c->out_json) goto nomem;
    }
    c->code = TW_OK;
    return;
nomem:
    c->code = TW_INTERNAL;
    dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory encoding the response");
}

static void engine_error(dt_call *c, const dt_err *err)
{
    c->code = dt_twirp_from_err(err->code);
    c->err = *err;
}

/* ---- handlers ---- */

/* The store every write commits to (s->store, store/commit.h): served counts are folded in under
 * each write lock, so that the outcome store the write changes is current. */
static void fold_cb(void *ud)
{
    fold_locked(ud);
}

/* A basis re-learned in the store's background moved the tenant's epoch (commit held). */
static void relearned_cb(void *ud, const char *tenant)
{
    dt_server *s = ud;
    dt_jobs_hand_epoch(s->jobs, tenant, dt_rpc_tenant_epoch(s, tenant), false);
}

void dt_rpc_store_hooks(dt_server *s)
{
    s->store.on_write_lock = fold_cb;
    s->store.on_relearned = relearned_cb;
    s->store.ud = s;
}

/* A commit's error as the call's answer; field prefixes are the handler's (e.g. "records[3]"). */
static void commit_error(dt_call *c, const char *prefix, size_t i, dt_err *err)
{
    if (prefix) {
        char field[64];
        snprintf(field, sizeof field, "%s[%zu]%s%.30s", prefix, i, err->field[0] ? "." : "", err->field);
        snprintf(err->field, sizeof err->field, "%s", field);
    }
    engine_error(c, err);
}

/* UpsertRecords: the whole batch is checked against the state it applies to, then tokenized and
 * projected (no write lock), journaled as one entry, stored. */
typedef struct upsert_ctx {
    dt_call *c;
    dt_record *recs, **ptrs;
    size_t n, bad, done;
    dt_engine_batch *tok;
    bool check_failed; /* refused by the check: bad is the record, err.field its field */
} upsert_ctx;

static int upsert_check(void *ud, dt_err *err)
{
    upsert_ctx *u = ud;
    u->check_failed = dt_engine_check_upsert(u->c->srv->engine, u->ptrs, u->n, &u->bad, err) < 0;
    return u->check_failed ? -1 : 0;
}

static int upsert_prepare(void *ud, dt_err *err)
{
    upsert_ctx *u = ud;
    return dt_engine_batch_prepare(u->c->srv->engine, u->ptrs, u->n, &u->tok, err);
}

static int upsert_apply(void *ud, dt_err *err)
{
    upsert_ctx *u = ud;
    for (; u->done < u->n; u->done++)
        if (dt_engine_batch_upsert(u->c->srv->engine, u->tok, u->done, &u->recs[u->done], err) < 0) return -1;
    return 0;
}

static void publish_epoch(void *ud)
{
    dt_call *c = *(dt_call **)ud; /* every handler's context starts with its call */
    c->epoch_after = dt_rpc_tenant_epoch(c->srv, c->tenant);
}

static const dt_commit_ops upsert_ops = {DT_J_UPSERT, "the write", upsert_check, upsert_prepare, upsert_apply,
                                         publish_epoch};

static void run_upsert(dt_call *c)
{
    const Dovetail__V1__UpsertRecordsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    size_t n = rq->n_records;
    upsert_ctx u = {c, calloc(n ? n : 1, sizeof *u.recs), malloc((n ? n : 1) * sizeof *u.ptrs), n, 0, 0, NULL, false};
    size_t ok = 0;
    for (; u.recs && ok < n; ok++)
        if (record_from_pb(c, rq->records[ok], ok, &u.recs[ok]) < 0) break;
    /* two records with the same (side, id) in one call: the later one wins, as if upserted in
     * order; that is the documented behaviour, so nothing to check here */
    /* the journal entry (the whole call, so recovery never sees half of it) is encoded first:
     * the engine takes the records */
    uint8_t *payload = NULL;
    size_t plen = 0;
    dt_err err = DT_ERR_INIT;
    if (!u.recs || !u.ptrs) {
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
    } else if (ok == n) {
        for (size_t i = 0; i < n; i++) u.ptrs[i] = &u.recs[i];
        if (s->durable && dt_durable_encode_upsert(u.ptrs, n, &payload, &plen, &err) < 0) {
            c->code = TW_INTERNAL;
            dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory encoding the journal entry");
        }
    }
    if (ok == n && c->code == TW_OK) {
        dt_commit cm = {&upsert_ops, &u, payload, plen, c->tenant, 0, DT_COMMIT_DONE};
        if (dt_store_commit(&s->store, &cm, &err) < 0) {
            if (u.check_failed)
                commit_error(c, "records", u.bad, &err);
            else if (cm.stage == DT_COMMIT_NOT_APPLIED)
                commit_error(c, "records", u.done, &err); /* memory: earlier records stay */
            else
                commit_error(c, NULL, 0, &err);
        } else {
            Dovetail__V1__UpsertRecordsResponse resp = DOVETAIL__V1__UPSERT_RECORDS_RESPONSE__INIT;
            resp.upserted = (uint32_t)n;
            resp.index_epoch = c->epoch_after;
            dt_rpc_finish(c, &resp.base);
        }
    }
    dt_engine_batch_free(u.tok);
    for (size_t i = 0; u.recs && i < n; i++) dt_record_free(&u.recs[i]);
    free(u.recs);
    free(u.ptrs);
    free(payload);
}

/* DeleteRecords: nothing to check (ids not stored are reported, not refused); journaled, then
 * deleted. Replaying a delete of an absent id is harmless. */
typedef struct delete_ctx {
    dt_call *c;
    dt_side side;
    char *const *ids;
    size_t n, deleted, nm;
    char **missing;
} delete_ctx;

static int delete_apply(void *ud, dt_err *err)
{
    (void)err;
    delete_ctx *d = ud;
    for (size_t i = 0; i < d->n; i++) {
        if (dt_engine_delete(d->c->srv->engine, d->c->tenant, d->side, d->ids[i], NULL) == 0)
            d->deleted++;
        else
            d->missing[d->nm++] = d->ids[i];
    }
    return 0;
}

static const dt_commit_ops delete_ops = {DT_J_DELETE, "the delete", NULL, NULL, delete_apply, publish_epoch};

static void run_delete(dt_call *c)
{
    const Dovetail__V1__DeleteRecordsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    delete_ctx d = {c, DT_DEMAND, rq->ids, rq->n_ids, 0, 0, calloc(rq->n_ids ? rq->n_ids : 1, sizeof(char *))};
    dt_rpc_side_of(rq->side, &d.side);
    uint8_t *payload = NULL;
    size_t plen = 0;
    dt_err err = DT_ERR_INIT;
    if (!d.missing || (rq->n_ids && s->durable &&
                       dt_durable_encode_delete(c->tenant, d.side, rq->ids, rq->n_ids, &payload, &plen, &err) < 0)) {
        free(d.missing);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    dt_commit cm = {&delete_ops, &d, payload, plen, c->tenant, 0, DT_COMMIT_DONE};
    if (dt_store_commit(&s->store, &cm, &err) < 0) {
        commit_error(c, NULL, 0, &err);
    } else {
        Dovetail__V1__DeleteRecordsResponse resp = DOVETAIL__V1__DELETE_RECORDS_RESPONSE__INIT;
        resp.deleted = (uint32_t)d.deleted;
        resp.n_not_found = d.nm;
        resp.not_found = d.missing;
        resp.index_epoch = c->epoch_after;
        dt_rpc_finish(c, &resp.base);
    }
    free(d.missing);
    free(payload);
}

static void run_get(dt_call *c)
{
    const Dovetail__V1__GetRecordRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    dt_side side = DT_DEMAND;
    dt_rpc_side_of(rq->side, &side);
    pthread_rwlock_rdlock(&s->lock);
    const dt_record *r = dt_engine_get(s->engine, c->tenant, side, rq->id);
    if (!r) {
        c->code = TW_NOT_FOUND;
        dt_err_set(&c->err, DT_ENOTFOUND, "id", "no %s with id '%.128s' in tenant '%s'", dt_side_name(side), rq->id,
                   c->tenant);
    } else {
        PbRecord p;
        Dovetail__V1__Mode modes[DT_MODE_COUNT];
        record_to_pb(r, &p, modes);
        Dovetail__V1__GetRecordResponse resp = DOVETAIL__V1__GET_RECORD_RESPONSE__INIT;
        resp.record = &p;
        dt_rpc_finish(c, &resp.base);
    }
    pthread_rwlock_unlock(&s->lock);
}

/* ---- Stats ---- */

/* The protobuf view of one statistics row; borrows nothing but the row itself (its codes). */
typedef struct stats_pb {
    Dovetail__V1__OutcomeCounts events;
    Dovetail__V1__DeclineCounts declines;
} stats_pb;

static void counts_pb(const dt_outcome_stats_row *r, stats_pb *p)
{
    dovetail__v1__outcome_counts__init(&p->events);
    p->events.viewed = r->events[DT_OUTCOME_VIEWED];
    p->events.contacted = r->events[DT_OUTCOME_CONTACTED];
    p->events.declined = r->events[DT_OUTCOME_DECLINED];
    p->events.meeting_held = r->events[DT_OUTCOME_MEETING_HELD];
    p->events.negotiating = r->events[DT_OUTCOME_NEGOTIATING];
    p->events.deal_signed = r->events[DT_OUTCOME_DEAL_SIGNED];
    dovetail__v1__decline_counts__init(&p->declines);
    p->declines.too_early_stage = r->declined[DT_OUTCOME_REASON_TOO_EARLY_STAGE];
    p->declines.unclear_benefit = r->declined[DT_OUTCOME_REASON_UNCLEAR_BENEFIT];
    p->declines.price = r->declined[DT_OUTCOME_REASON_PRICE];
    p->declines.other = r->declined[DT_OUTCOME_REASON_OTHER];
}

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void group_pb(const dt_outcome_stats_row *r, Dovetail__V1__StatsGroup *g, stats_pb *p)
{
    dovetail__v1__stats_group__init(g);
    counts_pb(r, p);
    g->field = (char *)r->field;
    g->region = (char *)r->region;
    g->demands = clamp32(r->demands);
    g->demands_open = clamp32(r->demands_open);
    g->achievements = clamp32(r->achievements);
    g->achievements_open = clamp32(r->achievements_open);
    g->served_demands = r->served_demands;
    g->served_achievements = r->served_achievements;
    g->events = &p->events;
    g->declines = &p->declines;
    g->contacted_pairs = r->contacted_pairs;
    g->deal_pairs = r->deal_pairs;
    g->conversion = r->conversion;
    g->deal_amount = r->deal_amount;
}

/* Everything one tenant's TenantStats points to, freed after the response is packed. */
typedef struct tenant_buf {
    dt_outcome_stats_row *rows;
    size_t n_rows;
    stats_pb total;
    Dovetail__V1__StatsGroup *groups;
    Dovetail__V1__StatsGroup **gp;
    stats_pb *gpb;
} tenant_buf;

static void run_stats(dt_call *c)
{
    const Dovetail__V1__StatsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    dt_outcome_stats_opts so;
    dt_outcome_stats_opts_default(&so);
    if (rq->field_depth_present_case) so.field_depth = (int)rq->field_depth;
    if (rq->region_depth_present_case) so.region_depth = (int)rq->region_depth;
    if (!rq->groups) so.field_depth = so.region_depth = 0; /* one group: the total alone */
    dt_rpc_fold_served(s);
    dt_store_read_long(&s->store); /* walks every record of the tenants it reports */
    size_t nt;
    const char *const *names = dt_engine_tenants(s->engine, &nt);
    Dovetail__V1__TenantStats *ts = calloc(nt ? nt : 1, sizeof *ts);
    Dovetail__V1__TenantStats **tp = calloc(nt ? nt : 1, sizeof *tp);
    tenant_buf *tb = calloc(nt ? nt : 1, sizeof *tb);
    size_t k = 0;
    dt_err err = DT_ERR_INIT;
    int rc = ts && tp && tb ? 0 : dt_err_set(&err, DT_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        if (rq->tenant && *rq->tenant && strcmp(rq->tenant, names[i]) != 0) continue;
        Dovetail__V1__TenantStats *t = &ts[k];
        tenant_buf *b = &tb[k];
        dovetail__v1__tenant_stats__init(t);
        t->tenant = (char *)names[i];
        for (int side = 0; side < 2; side++) {
            dt_index *idx = dt_engine_index(s->engine, names[i], (dt_side)side);
            if (!idx) continue;
            size_t cnt = dt_index_count(idx), open = dt_index_count_open(idx);
            if (side == DT_DEMAND)
                t->demands = (uint32_t)cnt;
            else
                t->achievements = (uint32_t)cnt;
            t->open += (uint32_t)open;
            t->closed += (uint32_t)(cnt - open);
            if (dt_index_dim(idx)) t->dimension = (uint32_t)dt_index_dim(idx);
        }
        t->index_epoch = dt_rpc_tenant_epoch(s, names[i]);
        tp[k++] = t;
        if (!s->outcomes) continue;
        if ((rc = dt_outcome_stats(s->outcomes, s->engine, names[i], &so, &b->rows, &b->n_rows, &err)) < 0) break;
        const dt_outcome_stats_row *r = &b->rows[0];
        counts_pb(r, &b->total);
        t->demands_open = clamp32(r->demands_open);
        t->achievements_open = clamp32(r->achievements_open);
        t->served_demands = r->served_demands;
        t->served_achievements = r->served_achievements;
        t->events = &b->total.events;
        t->declines = &b->total.declines;
        t->contacted_pairs = r->contacted_pairs;
        t->deal_pairs = r->deal_pairs;
        t->conversion = r->conversion;
        t->deal_amount = r->deal_amount;
        size_t ng = rq->groups && b->n_rows > 1 ? b->n_rows - 1 : 0;
        if (!ng) continue;
        b->groups = calloc(ng, sizeof *b->groups);
        b->gp = calloc(ng, sizeof *b->gp);
        b->gpb = calloc(ng, sizeof *b->gpb);
        if (!b->groups || !b->gp || !b->gpb) {
            rc = dt_err_set(&err, DT_ENOMEM, NULL, "out of memory");
            break;
        }
        for (size_t g = 0; g < ng; g++) {
            group_pb(&b->rows[g + 1], &b->groups[g], &b->gpb[g]);
            b->gp[g] = &b->groups[g];
        }
        t->groups = b->gp;
        t->n_groups = ng;
    }
    if (rc == 0) {
        Dovetail__V1__StatsResponse resp = DOVETAIL__V1__STATS_RESPONSE__INIT;
        resp.n_tenants = k;
        resp.tenants = tp;
        dt_rpc_finish(c, &resp.base);
    } else {
        engine_error(c, &err);
    }
    dt_store_read_long_end(&s->store);
    for (size_t i = 0; tb && i < nt; i++) {
        free(tb[i].rows);
        free(tb[i].groups);
        free(tb[i].gp);
        free(tb[i].gpb);
    }
    free(tb);
    free(ts);
    free(tp);
}

/* ---- RecordOutcome ---- */

/* RecordOutcome: every id must name a stored record (checked with writers excluded, so they stay
 * stored), then one journal entry, then the events. */
typedef struct outcome_ctx {
    dt_call *c;
    dt_outcome_event *evs;
    size_t n, bad, done;
    uint64_t total;
} outcome_ctx;

static int outcome_check(void *ud, dt_err *err)
{
    outcome_ctx *o = ud;
    for (o->bad = 0; o->bad < o->n; o->bad++)
        if (dt_outcome_event_check_stored(o->c->srv->engine, &o->evs[o->bad], err) < 0) return -1;
    return 0;
}

static int outcome_apply(void *ud, dt_err *err)
{
    outcome_ctx *o = ud;
    for (; o->done < o->n; o->done++)
        if (dt_outcome_add(o->c->srv->outcomes, &o->evs[o->done], err) < 0) return -1;
    return 0;
}

static void outcome_publish(void *ud)
{
    outcome_ctx *o = ud;
    publish_epoch(ud);
    o->total = dt_outcome_count(o->c->srv->outcomes, o->c->tenant);
}

static const dt_commit_ops outcome_ops = {DT_J_OUTCOMES, "the outcomes", outcome_check, NULL, outcome_apply,
                                          outcome_publish};

static void run_record_outcome(dt_call *c)
{
    const Dovetail__V1__RecordOutcomeRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    size_t n = rq->n_outcomes;
    outcome_ctx o = {c, calloc(n ? n : 1, sizeof *o.evs), n, 0, 0, 0};
    if (!o.evs || !s->outcomes) {
        free(o.evs);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (outcome_from_pb(c, rq->outcomes[i], i, &o.evs[i]) < 0) {
            free(o.evs);
            return;
        }
    uint8_t *payload = NULL;
    size_t plen = 0;
    dt_err err = DT_ERR_INIT;
    if (n && s->durable && dt_durable_encode_outcomes(c->tenant, o.evs, n, &payload, &plen, &err) < 0) {
        free(o.evs);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, err.code, NULL, "cannot encode the journal entry: %.200s", err.msg);
        return;
    }
    dt_commit cm = {&outcome_ops, &o, payload, plen, NULL, 0, DT_COMMIT_DONE};
    if (dt_store_commit(&s->store, &cm, &err) < 0) {
        if (cm.stage == DT_COMMIT_REFUSED) {
            char field[64];
            snprintf(field, sizeof field, "outcomes[%zu].%.30s", o.bad, err.field);
            snprintf(err.field, sizeof err.field, "%s", field);
            engine_error(c, &err);
        } else if (cm.stage == DT_COMMIT_NOT_APPLIED) {
            commit_error(c, "outcomes", o.done, &err); /* memory: earlier events stay */
        } else {
            commit_error(c, NULL, 0, &err);
        }
    } else {
        Dovetail__V1__RecordOutcomeResponse resp = DOVETAIL__V1__RECORD_OUTCOME_RESPONSE__INIT;
        resp.recorded = (uint32_t)n;
        resp.tenant_outcomes = o.total;
        resp.index_epoch = c->epoch_after;
        dt_rpc_finish(c, &resp.base);
    }
    free(payload);
    free(o.evs);
}

/* ---- Match ---- */

static void query_from_pb(const dt_call *c, dt_query *q, dt_weights *w)
{
    const Dovetail__V1__MatchRequest *r = (const void *)c->in;
    dt_query_init(q);
    q->tenant = c->tenant;
    if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD) {
        dt_rpc_side_of(r->record->side, &q->record_side);
        q->record_id = r->record->id;
        dt_side t;
        q->target = dt_rpc_side_of(r->target_side, &t) == 0 ? t : (dt_side)!q->record_side;
    } else {
        q->text = r->text;
        dt_rpc_side_of(r->target_side, &q->target);
    }
    q->k = r->k ? r->k : 10;
    q->offset = r->offset;
    q->explain = r->explain;
    if (r->weights) {
        *w = (dt_weights){(float)r->weights->dense, (float)r->weights->lexical, (float)r->weights->structured};
        q->weights = w;
    }
    const Dovetail__V1__Filter *f = r->filter;
    if (f) {
        q->filter.field_prefixes = (const char *const *)f->field_prefixes;
        q->filter.n_field_prefixes = f->n_field_prefixes;
        q->filter.region_prefixes = (const char *const *)f->regions;
        q->filter.n_region_prefixes = f->n_regions;
        q->clusters = (const char *const *)f->clusters;
        q->n_clusters = f->n_clusters;
        q->filter.trl_min = f->trl_min;
        q->filter.trl_max = f->trl_max;
        char field[64];
        modes_of(f->modes, f->n_modes, &q->filter.modes, field, sizeof field, "filter.modes");
        if (f->price_min_present_case) q->filter.price_min = f->price_min;
        if (f->price_max_present_case) q->filter.price_max = f->price_max;
        q->filter.tags = (const char *const *)f->tags;
        q->filter.n_tags = f->n_tags;
        q->filter.include_closed = f->include_closed;
        q->exclude_ids = (const char *const *)f->exclude_ids;
        q->n_exclude = f->n_exclude_ids;
    }
}

static void match_to_pb(dt_call *c, const dt_match_result *res)
{
    size_t n = res->n;
    Dovetail__V1__Match *ms = calloc(n ? n : 1, sizeof *ms);
    Dovetail__V1__Match **mp = calloc(n ? n : 1, sizeof *mp);
    Dovetail__V1__Mode *modes = calloc((n ? n : 1) * DT_MODE_COUNT, sizeof *modes);
    Dovetail__V1__Explanation *ex = calloc(n ? n : 1, sizeof *ex);
    Dovetail__V1__StructuredPart *sp = calloc((n ? n : 1) * DT_FIT_COUNT, sizeof *sp);
    Dovetail__V1__StructuredPart **spp = calloc((n ? n : 1) * DT_FIT_COUNT, sizeof *spp);
    Dovetail__V1__Term *tm = calloc((n ? n : 1) * DT_EXPLAIN_TERMS, sizeof *tm);
    Dovetail__V1__Term **tmp = calloc((n ? n : 1) * DT_EXPLAIN_TERMS, sizeof *tmp);
    if (!ms || !mp || !modes || !ex || !sp || !spp || !tm || !tmp) {
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        goto out;
    }
    const Dovetail__V1__MatchRequest *rq = (const void *)c->in;
    for (size_t i = 0; i < n; i++) {
        const dt_match *m = &res->v[i];
        const dt_record *r = m->rec;
        Dovetail__V1__Match *p = &ms[i];
        dovetail__v1__match__init(p);
        p->id = r->id;
        p->side = dt_rpc_side_pb(r->side);
        p->score = m->score;
        if (r->title) p->title = r->title;
        if (r->org) p->org = r->org;
        if (r->field) p->field = r->field;
        if (r->region) p->region = r->region;
        p->trl = r->trl;
        p->modes = modes + i * DT_MODE_COUNT;
        p->n_modes = modes_pb(r->modes, p->modes);
        if (!isnan(r->price_min)) {
            p->price_min_present_case = DOVETAIL__V1__MATCH__PRICE_MIN_PRESENT_PRICE_MIN;
            p->price_min = r->price_min;
        }
        if (!isnan(r->price_max)) {
            p->price_max_present_case = DOVETAIL__V1__MATCH__PRICE_MAX_PRESENT_PRICE_MAX;
            p->price_max = r->price_max;
        }
        if (rq->explain) {
            Dovetail__V1__Explanation *e = &ex[i];
            dovetail__v1__explanation__init(e);
            e->dense = m->dense;
            e->feedback = m->feedback;
            e->lexical = m->lexical;
            e->structured = m->structured;
            /* each available part's share of the structured score (which is weight x their mean) */
            float sum = 0;
            for (int f = 0; f < DT_FIT_COUNT; f++)
                if (m->fit[f] > 0) sum += m->fit[f];
            e->structured_parts = spp + i * DT_FIT_COUNT;
            for (int f = 0; f < DT_FIT_COUNT; f++) {
                if (m->fit[f] < 0) continue;
                Dovetail__V1__StructuredPart *s = &sp[i * DT_FIT_COUNT + e->n_structured_parts];
                dovetail__v1__structured_part__init(s);
                s->name = (char *)dt_fit_name(f);
                s->value = sum > 0 ? m->structured * m->fit[f] / sum : 0;
                e->structured_parts[e->n_structured_parts++] = s;
            }
            e->terms = tmp + i * DT_EXPLAIN_TERMS;
            for (size_t t = 0; t < m->n_terms; t++) {
                Dovetail__V1__Term *tt = &tm[i * DT_EXPLAIN_TERMS + t];
                dovetail__v1__term__init(tt);
                tt->term = (char *)m->terms[t].term;
                tt->weight = m->terms[t].weight;
                e->terms[e->n_terms++] = tt;
            }
            p->explanation = e;
        }
        mp[i] = p;
    }
    Dovetail__V1__MatchResponse resp = DOVETAIL__V1__MATCH_RESPONSE__INIT;
    resp.n_matches = n;
    resp.matches = mp;
    resp.total_candidates = (uint32_t)res->total_candidates;
    resp.index_epoch = res->epoch + (c->srv->outcomes ? dt_outcome_count(c->srv->outcomes, c->tenant) : 0);
    dt_rpc_finish(c, &resp.base);
out:
    free(ms);
    free(mp);
    free(modes);
    free(ex);
    free(sp);
    free(spp);
    free(tm);
    free(tmp);
}

#define SERVED_FOLD_AT 4096

/* A Match by a stored record that returns n matches counts n as served for that record. */
static void note_served(dt_call *c, size_t n)
{
    const Dovetail__V1__MatchRequest *r = (const void *)c->in;
    dt_side side;
    if (!n || !c->srv->served || r->query_case != DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD || !r->record ||
        dt_rpc_side_of(r->record->side, &side) < 0)
        return;
    dt_served_note(c->srv->served, c->tenant, side, r->record->id, n, NULL);
}

void dt_rpc_run_match_batch(dt_call **calls, size_t n, dt_worker *w)
{
    dt_query *qs = calloc(n, sizeof *qs);
    dt_weights *ws = calloc(n, sizeof *ws);
    dt_match_result *res = calloc(n, sizeof *res);
    dt_call **live = calloc(n, sizeof *live);
    if (!qs || !ws || !res || !live) {
        for (size_t i = 0; i < n; i++) {
            calls[i]->code = TW_INTERNAL;
            dt_err_set(&calls[i]->err, DT_ENOMEM, NULL, "out of memory");
        }
        goto out;
    }
    size_t m = 0;
    uint64_t now = dt_now_us();
    for (size_t i = 0; i < n; i++) {
        dt_call *c = calls[i];
        if (c->srv->cfg.deadline_ms > 0 && now - c->t_start_us > (uint64_t)c->srv->cfg.deadline_ms * 1000) {
            c->code = TW_DEADLINE_EXCEEDED; /* waited in the queue past its deadline: skip the work */
            dt_err_set(&c->err, DT_ELIMIT, NULL, "the request waited longer than its deadline");
            continue;
        }
        live[m] = c;
        query_from_pb(c, &qs[m], &ws[m]);
        if (qs[m].weights) qs[m].weights = &ws[m];
        m++;
    }
    dt_server *s = m ? live[0]->srv : NULL;
    if (s) {
        atomic_fetch_add(&s->metrics.batches, 1);
        atomic_fetch_add(&s->metrics.batched_queries, m);
        pthread_rwlock_rdlock(&s->lock);
    }
    /* a query that fails (unknown record, ...) fails alone: drop it and run the rest again */
    while (m) {
        dt_err err = DT_ERR_INIT;
        if (dt_feedback_search(w->fb, w->sr, s->outcomes, NULL, qs, m, res, NULL, &err) == 0) break;
        size_t bad_i = 0;
        char rest[64] = "";
        if (m > 1 && sscanf(err.field, "queries[%zu].%63s", &bad_i, rest) >= 1 && bad_i < m) {
            snprintf(err.field, sizeof err.field, "%s", rest);
        } else if (m > 1) { /* not a per-query error: fail them all */
            for (size_t i = 0; i < m; i++) engine_error(live[i], &err);
            m = 0;
            break;
        }
        engine_error(live[bad_i], &err);
        if (err.code == DT_ENOTFOUND && live[bad_i]->code == TW_NOT_FOUND) {
            /* keep the field the request used */
            if (!strcmp(err.field, "record_id")) snprintf(live[bad_i]->err.field, sizeof live[bad_i]->err.field, "record.id");
        }
        memmove(&live[bad_i], &live[bad_i + 1], (m - bad_i - 1) * sizeof *live);
        memmove(&qs[bad_i], &qs[bad_i + 1], (m - bad_i - 1) * sizeof *qs);
        memmove(&ws[bad_i], &ws[bad_i + 1], (m - bad_i - 1) * sizeof *ws);
        m--;
        for (size_t i = 0; i < m; i++)
            if (qs[i].weights) qs[i].weights = &ws[i];
    }
    for (size_t i = 0; i < m; i++) {
        match_to_pb(live[i], &res[i]);
        if (live[i]->code == TW_OK) note_served(live[i], res[i].n);
        dt_match_result_free(&res[i]);
    }
    if (s) pthread_rwlock_unlock(&s->lock);
    /* the pending table stays small: past a threshold the worker folds it itself, unless a writer
     * or a snapshot holds the commit mutex (a Match worker never waits for them) */
    if (s && s->served && dt_served_pending(s->served) >= SERVED_FOLD_AT && pthread_mutex_trylock(&s->commit) == 0) {
        dt_store_write_lock(&s->store);
        fold_locked(s);
        dt_store_write_unlock(&s->store);
        pthread_mutex_unlock(&s->commit);
    }
out:
    free(qs);
    free(ws);
    free(res);
    free(live);
}

void dt_rpc_run(dt_call *c, dt_worker *w)
{
    if (c->method_index < DT_M_COUNT && dt_methods[c->method_index].run) {
        dt_methods[c->method_index].run(c, w);
        return;
    }
    c->code = TW_UNIMPLEMENTED;
    dt_err_set(&c->err, DT_EINVAL, NULL, "method %s is not implemented", c->method->name);
}

/* ---- the method table ---- */

static void run_upsert_w(dt_call *c, dt_worker *w)
{
    (void)w;
    run_upsert(c);
}

static void run_delete_w(dt_call *c, dt_worker *w)
{
    (void)w;
    run_delete(c);
}

static void run_get_w(dt_call *c, dt_worker *w)
{
    (void)w;
    run_get(c);
}

static void run_match_w(dt_call *c, dt_worker *w)
{
    dt_rpc_run_match_batch(&c, 1, w);
}

static void run_stats_w(dt_call *c, dt_worker *w)
{
    (void)w;
    run_stats(c);
}

static void run_pair_event_w(dt_call *c, dt_worker *w)
{
    dt_rpc_event_run(c, w->sr);
}

static void run_record_outcome_w(dt_call *c, dt_worker *w)
{
    (void)w;
    run_record_outcome(c);
}

static void run_jobs_w(dt_call *c, dt_worker *w)
{
    (void)w;
    dt_rpc_jobs_run(c);
}

const dt_method_def dt_methods[DT_M_COUNT] = {
    [DT_M_UPSERT_RECORDS] = {"UpsertRecords", DT_SCOPE_TENANT, DT_MF_WRITE | DT_MF_HEAVY, precheck_upsert,
                             run_upsert_w},
    [DT_M_DELETE_RECORDS] = {"DeleteRecords", DT_SCOPE_TENANT, DT_MF_WRITE | DT_MF_HEAVY, precheck_delete,
                             run_delete_w},
    [DT_M_GET_RECORD] = {"GetRecord", DT_SCOPE_TENANT, 0, precheck_get, run_get_w},
    [DT_M_MATCH] = {"Match", DT_SCOPE_TENANT, DT_MF_BATCHABLE | DT_MF_CACHEABLE, precheck_match, run_match_w},
    [DT_M_STATS] = {"Stats", DT_SCOPE_TENANT_OR_ALL, 0, precheck_stats, run_stats_w},
    [DT_M_PAIR_EVENT] = {"PairEvent", DT_SCOPE_TENANT, DT_MF_HEAVY, dt_rpc_event_precheck, run_pair_event_w},
    [DT_M_RECORD_OUTCOME] = {"RecordOutcome", DT_SCOPE_TENANT, DT_MF_WRITE | DT_MF_HEAVY, precheck_outcome,
                             run_record_outcome_w},
    [DT_M_START_RERANK] = {"StartRerank", DT_SCOPE_OPERATOR, 0, dt_rpc_jobs_precheck, run_jobs_w},
    [DT_M_GET_JOB] = {"GetJob", DT_SCOPE_OPERATOR, 0, dt_rpc_jobs_precheck, run_jobs_w},
    [DT_M_CANCEL_JOB] = {"CancelJob", DT_SCOPE_OPERATOR, 0, dt_rpc_jobs_precheck, run_jobs_w},
    [DT_M_LIST_JOBS] = {"ListJobs", DT_SCOPE_OPERATOR, 0, dt_rpc_jobs_precheck, run_jobs_w},
};

dt_method dt_method_find(const char *name)
{
    unsigned i = 0;
    while (i < DT_M_COUNT && strcmp(dt_methods[i].name, name) != 0) i++;
    return (dt_method)i;
}

int dt_rpc_from_cache(dt_call *c, const void *val, size_t len)
{
    Dovetail__V1__MatchResponse *r = dovetail__v1__match_response__unpack(NULL, len, val);
    if (!r) return -1;
    r->cached = 1;
    size_t served = r->n_matches;
    dt_call tmp = *c;
    tmp.out = NULL;
    tmp.out_json = NULL;
    dt_rpc_finish(&tmp, &r->base);
    dovetail__v1__match_response__free_unpacked(r, NULL);
    if (tmp.code != TW_OK) {
        free(tmp.out);
        free(tmp.out_json);
        return -1;
    }
    c->code = TW_OK;
    c->out = tmp.out;
    c->out_len = tmp.out_len;
    c->out_json = tmp.out_json;
    c->out_json_len = tmp.out_json_len;
    note_served(c, served);
    return 0;
}
