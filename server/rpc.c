/* rpc.c - one handler per Matchmaker method, converting between the protobuf messages and the
 * engine. Handlers run on worker threads (dt_rpc_run*) and hold the engine lock only while they
 * read or write it; dt_rpc_precheck and dt_rpc_from_cache run on the loop thread and never touch
 * the engine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    switch (c->method_index) {
    case DT_M_UPSERT_RECORDS:
        return tenant_or_public(((const Dovetail__V1__UpsertRecordsRequest *)c->in)->tenant);
    case DT_M_DELETE_RECORDS:
        return tenant_or_public(((const Dovetail__V1__DeleteRecordsRequest *)c->in)->tenant);
    case DT_M_GET_RECORD:
        return tenant_or_public(((const Dovetail__V1__GetRecordRequest *)c->in)->tenant);
    case DT_M_MATCH:
        return tenant_or_public(((const Dovetail__V1__MatchRequest *)c->in)->tenant);
    case DT_M_STATS:
        return tenant_or_public(((const Dovetail__V1__StatsRequest *)c->in)->tenant);
    case DT_M_PAIR_EVENT:
        return tenant_or_public(((const Dovetail__V1__PairEventRequest *)c->in)->tenant);
    }
    return "public";
}

static int bad(dt_call *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(dt_call *c, const char *field, const char *fmt, ...)
{
    c->code = TW_INVALID_ARGUMENT;
    c->err.code = DT_EINVAL;
    snprintf(c->err.field, sizeof c->err.field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int side_of(Dovetail__V1__Side s, dt_side *out)
{
    if (s == DOVETAIL__V1__SIDE__SIDE_DEMAND) *out = DT_DEMAND;
    else if (s == DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT) *out = DT_ACHIEVEMENT;
    else return -1;
    return 0;
}

static Dovetail__V1__Side side_pb(dt_side s)
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

static int check_weights(dt_call *c, const Dovetail__V1__Weights *w)
{
    if (!w) return 0;
    double v[3] = {w->dense, w->lexical, w->structured};
    const char *names[3] = {"weights.dense", "weights.lexical", "weights.structured"};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || v[i] < 0 || v[i] > 1e6) return bad(c, names[i], "must be a finite number >= 0");
    if (v[0] + v[1] + v[2] <= 0) return bad(c, "weights", "at least one weight must be > 0");
    return 0;
}

int dt_rpc_precheck(dt_call *c)
{
    const dt_config *cfg = &c->srv->cfg;
    /* c->tenant is a copy cut to DT_TENANT_MAX bytes: the request's own field is what counts */
    if (strlen(dt_rpc_tenant(c)) > DT_TENANT_MAX) return bad(c, "tenant", "longer than %d bytes", DT_TENANT_MAX);
    switch (c->method_index) {
    case DT_M_UPSERT_RECORDS: {
        const Dovetail__V1__UpsertRecordsRequest *r = (const void *)c->in;
        if (r->n_records > cfg->max_records)
            return bad(c, "records", "%zu records in one call; the limit is %zu (--max-records)", r->n_records,
                       cfg->max_records);
        return 0;
    }
    case DT_M_DELETE_RECORDS: {
        const Dovetail__V1__DeleteRecordsRequest *r = (const void *)c->in;
        dt_side s;
        if (side_of(r->side, &s) < 0) return bad(c, "side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
        if (r->n_ids > cfg->max_records)
            return bad(c, "ids", "%zu ids in one call; the limit is %zu (--max-records)", r->n_ids, cfg->max_records);
        return 0;
    }
    case DT_M_GET_RECORD: {
        const Dovetail__V1__GetRecordRequest *r = (const void *)c->in;
        dt_side s;
        if (side_of(r->side, &s) < 0) return bad(c, "side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
        if (!r->id || !*r->id) return bad(c, "id", "required");
        return 0;
    }
    case DT_M_MATCH: {
        const Dovetail__V1__MatchRequest *r = (const void *)c->in;
        dt_side s;
        if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD) {
            if (!r->record || side_of(r->record->side, &s) < 0)
                return bad(c, "record.side", "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
            if (!r->record->id || !*r->record->id) return bad(c, "record.id", "required");
            if (r->target_side != DOVETAIL__V1__SIDE__SIDE_UNSPECIFIED && side_of(r->target_side, &s) < 0)
                return bad(c, "target_side", "unknown side %d", (int)r->target_side);
        } else if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_TEXT) {
            if (!r->text || !*r->text) return bad(c, "text", "empty");
            if (strlen(r->text) > cfg->max_text)
                return bad(c, "text", "longer than %zu bytes (--max-text)", cfg->max_text);
            if (side_of(r->target_side, &s) < 0)
                return bad(c, "target_side", "required with a text query: SIDE_DEMAND or SIDE_ACHIEVEMENT");
        } else {
            return bad(c, "query", "give either record (side and id of a stored record) or text");
        }
        if ((size_t)r->k + r->offset > cfg->max_k)
            return bad(c, r->k > cfg->max_k ? "k" : "offset", "k + offset is %llu; the limit is %zu (--max-k)",
                       (unsigned long long)r->k + r->offset, cfg->max_k);
        const Dovetail__V1__Filter *f = r->filter;
        if (f) {
            if (f->trl_min < 0 || f->trl_min > 9) return bad(c, "filter.trl_min", "must be 0 (none) or 1..9");
            if (f->trl_max < 0 || f->trl_max > 9) return bad(c, "filter.trl_max", "must be 0 (none) or 1..9");
            if (f->trl_min && f->trl_max && f->trl_min > f->trl_max)
                return bad(c, "filter.trl_min", "is larger than filter.trl_max");
            uint32_t bits;
            char field[64];
            if (modes_of(f->modes, f->n_modes, &bits, field, sizeof field, "filter.modes") < 0)
                return bad(c, field, "unknown mode");
            if (f->price_min_present_case && !(f->price_min >= 0 && isfinite(f->price_min)))
                return bad(c, "filter.price_min", "must be a finite number >= 0");
            if (f->price_max_present_case && !(f->price_max >= 0 && isfinite(f->price_max)))
                return bad(c, "filter.price_max", "must be a finite number >= 0");
            if (f->n_field_prefixes > 64 || f->n_regions > 64 || f->n_clusters > 64 || f->n_tags > 64 ||
                f->n_exclude_ids > 10000)
                return bad(c, "filter", "too many values in a list (64 at most; exclude_ids 10000)");
        }
        return check_weights(c, r->weights);
    }
    case DT_M_PAIR_EVENT: return dt_rpc_event_precheck(c);
    }
    return 0;
}

/* ---- record conversion ---- */

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
        return bad(c, field, "'%s' differs from the request's tenant '%s' (leave it empty)", p->tenant, c->tenant);
    }
    dt_side side;
    if (side_of(p->side, &side) < 0) {
        snprintf(field, sizeof field, "records[%zu].side", i);
        return bad(c, field, "required: SIDE_DEMAND or SIDE_ACHIEVEMENT");
    }
    r->side = side;
    uint32_t bits;
    char mf[64];
    snprintf(field, sizeof field, "records[%zu].modes", i);
    if (modes_of(p->modes, p->n_modes, &bits, mf, sizeof mf, field) < 0) return bad(c, mf, "unknown mode");
    r->modes = bits;
    if (p->status == DOVETAIL__V1__STATUS__STATUS_CLOSED)
        r->status = DT_CLOSED;
    else if (p->status != DOVETAIL__V1__STATUS__STATUS_OPEN && p->status != DOVETAIL__V1__STATUS__STATUS_UNSPECIFIED) {
        snprintf(field, sizeof field, "records[%zu].status", i);
        return bad(c, field, "unknown status %d", (int)p->status);
    }
    r->trl = p->trl;
    r->updated_at = p->updated_at;
    /* a record keeps NaN for "no price": a NaN sent as a price is an error, not an absence */
    if ((p->price_min_present_case && isnan(p->price_min)) || (p->price_max_present_case && isnan(p->price_max))) {
        snprintf(field, sizeof field, "records[%zu].%s", i, p->price_min_present_case && isnan(p->price_min)
                                                                 ? "price_min" : "price_max");
        return bad(c, field, "not a number (NaN); give a price >= 0, or leave the field out");
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
    if (dt_record_validate(r, &err) < 0) {
        snprintf(field, sizeof field, "records[%zu].%.30s", i, err.field);
        return bad(c, field, "%s", err.msg);
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
    p->side = side_pb(r->side);
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

static void run_upsert(dt_call *c)
{
    const Dovetail__V1__UpsertRecordsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    size_t n = rq->n_records;
    dt_record *recs = calloc(n ? n : 1, sizeof *recs);
    if (!recs) {
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    size_t ok = 0;
    for (; ok < n; ok++)
        if (record_from_pb(c, rq->records[ok], ok, &recs[ok]) < 0) break;
    /* two records with the same (side, id) in one call: the later one wins, as if upserted in
     * order; that is the documented behaviour, so nothing to check here */
    /* the journal entry (the whole call, so recovery never sees half of it) is encoded first:
     * the engine takes the records */
    uint8_t *payload = NULL;
    size_t plen = 0;
    uint64_t seq = 0;
    dt_err err = DT_ERR_INIT;
    if (ok == n && s->durable) {
        dt_record **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
        for (size_t i = 0; ptrs && i < n; i++) ptrs[i] = &recs[i];
        if (!ptrs || dt_durable_encode_upsert(ptrs, n, &payload, &plen, &err) < 0) {
            c->code = TW_INTERNAL;
            dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory encoding the journal entry");
            ok = 0;
        }
        free(ptrs);
    }
    if (ok == n) {
        pthread_rwlock_wrlock(&s->lock);
        size_t done = 0;
        /* journal first, then memory: a write the journal refuses changes nothing */
        if (s->durable && dt_durable_append(s->durable, DT_J_UPSERT, payload, plen, &seq, &err) < 0) {
            c->code = TW_INTERNAL;
            dt_err_set(&c->err, DT_EIO, NULL, "the write could not be journaled (%.180s); nothing was stored", err.msg);
        } else {
            for (; done < n; done++)
                if (dt_engine_upsert(s->engine, &recs[done], &err) < 0) break;
        }
        if (done < n && c->code == TW_OK) {
            char field[64];
            snprintf(field, sizeof field, "records[%zu]%s%.30s", done, err.field[0] ? "." : "", err.field);
            snprintf(err.field, sizeof err.field, "%s", field);
            engine_error(c, &err); /* validated already, so this is memory: earlier records stay */
        } else if (done == n) {
            /* re-learn the tenant's basis once it has doubled since the last time; the marker lets
             * a replay re-learn it at the same point (a lost marker only changes the basis) */
            if (dt_engine_needs_build(s->engine, c->tenant) && dt_engine_build(s->engine, c->tenant, NULL) == 0 &&
                s->durable)
                dt_durable_log_build(s->durable, c->tenant, &seq, NULL);
        }
        c->epoch_after = dt_engine_epoch(s->engine, c->tenant);
        pthread_rwlock_unlock(&s->lock);
        if (done == n && seq && dt_durable_sync(s->durable, seq, &err) < 0) {
            c->code = TW_INTERNAL;
            dt_err_set(&c->err, DT_EIO, NULL, "the write could not be made durable (%.180s); not acknowledged", err.msg);
            done = 0;
        }
        if (done == n) {
            Dovetail__V1__UpsertRecordsResponse resp = DOVETAIL__V1__UPSERT_RECORDS_RESPONSE__INIT;
            resp.upserted = (uint32_t)n;
            resp.index_epoch = c->epoch_after;
            dt_rpc_finish(c, &resp.base);
        }
    }
    for (size_t i = 0; i < n; i++) dt_record_free(&recs[i]);
    free(recs);
    free(payload);
}

static void run_delete(dt_call *c)
{
    const Dovetail__V1__DeleteRecordsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    dt_side side = DT_DEMAND;
    side_of(rq->side, &side);
    char **missing = calloc(rq->n_ids ? rq->n_ids : 1, sizeof *missing);
    if (!missing) {
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    size_t nm = 0, deleted = 0;
    uint64_t seq = 0;
    dt_err err = DT_ERR_INIT;
    bool durable_ok = true;
    pthread_rwlock_wrlock(&s->lock);
    /* journal first, then memory (replaying a delete of an absent id is harmless) */
    if (rq->n_ids && s->durable &&
        dt_durable_log_delete(s->durable, c->tenant, side, rq->ids, rq->n_ids, &seq, &err) < 0)
        durable_ok = false;
    for (size_t i = 0; durable_ok && i < rq->n_ids; i++) {
        if (dt_engine_delete(s->engine, c->tenant, side, rq->ids[i], NULL) == 0)
            deleted++;
        else
            missing[nm++] = rq->ids[i];
    }
    c->epoch_after = dt_engine_epoch(s->engine, c->tenant);
    pthread_rwlock_unlock(&s->lock);
    if (durable_ok && seq && dt_durable_sync(s->durable, seq, &err) < 0) durable_ok = false;
    if (!durable_ok) {
        free(missing);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_EIO, NULL, "the delete could not be made durable (%.180s); not acknowledged", err.msg);
        return;
    }
    Dovetail__V1__DeleteRecordsResponse resp = DOVETAIL__V1__DELETE_RECORDS_RESPONSE__INIT;
    resp.deleted = (uint32_t)deleted;
    resp.n_not_found = nm;
    resp.not_found = missing;
    resp.index_epoch = c->epoch_after;
    dt_rpc_finish(c, &resp.base);
    free(missing);
}

static void run_get(dt_call *c)
{
    const Dovetail__V1__GetRecordRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    dt_side side = DT_DEMAND;
    side_of(rq->side, &side);
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

static void run_stats(dt_call *c)
{
    const Dovetail__V1__StatsRequest *rq = (const void *)c->in;
    dt_server *s = c->srv;
    pthread_rwlock_rdlock(&s->lock);
    size_t nt;
    const char *const *names = dt_engine_tenants(s->engine, &nt);
    Dovetail__V1__TenantStats *ts = calloc(nt ? nt : 1, sizeof *ts);
    Dovetail__V1__TenantStats **tp = calloc(nt ? nt : 1, sizeof *tp);
    size_t k = 0;
    if (ts && tp) {
        for (size_t i = 0; i < nt; i++) {
            if (rq->tenant && *rq->tenant && strcmp(rq->tenant, names[i]) != 0) continue;
            Dovetail__V1__TenantStats *t = &ts[k];
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
            t->index_epoch = dt_engine_epoch(s->engine, names[i]);
            tp[k++] = t;
        }
        Dovetail__V1__StatsResponse resp = DOVETAIL__V1__STATS_RESPONSE__INIT;
        resp.n_tenants = k;
        resp.tenants = tp;
        dt_rpc_finish(c, &resp.base);
    } else {
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
    }
    pthread_rwlock_unlock(&s->lock);
    free(ts);
    free(tp);
}

/* ---- Match ---- */

static void query_from_pb(const dt_call *c, dt_query *q, dt_weights *w)
{
    const Dovetail__V1__MatchRequest *r = (const void *)c->in;
    dt_query_init(q);
    q->tenant = c->tenant;
    if (r->query_case == DOVETAIL__V1__MATCH_REQUEST__QUERY_RECORD) {
        side_of(r->record->side, &q->record_side);
        q->record_id = r->record->id;
        dt_side t;
        q->target = side_of(r->target_side, &t) == 0 ? t : (dt_side)!q->record_side;
    } else {
        q->text = r->text;
        side_of(r->target_side, &q->target);
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
        p->side = side_pb(r->side);
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
    resp.index_epoch = res->epoch;
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

void dt_rpc_run_match_batch(dt_call **calls, size_t n, dt_searcher *sr)
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
        if (dt_search(sr, qs, m, res, &err) == 0) break;
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
        dt_match_result_free(&res[i]);
    }
    if (s) pthread_rwlock_unlock(&s->lock);
out:
    free(qs);
    free(ws);
    free(res);
    free(live);
}

void dt_rpc_run(dt_call *c, dt_searcher *sr)
{
    switch (c->method_index) {
    case DT_M_UPSERT_RECORDS: run_upsert(c); break;
    case DT_M_DELETE_RECORDS: run_delete(c); break;
    case DT_M_GET_RECORD: run_get(c); break;
    case DT_M_MATCH: dt_rpc_run_match_batch(&c, 1, sr); break;
    case DT_M_STATS: run_stats(c); break;
    case DT_M_PAIR_EVENT: dt_rpc_event_run(c, sr); break;
    default:
        c->code = TW_UNIMPLEMENTED;
        dt_err_set(&c->err, DT_EINVAL, NULL, "method %s is not implemented", c->method->name);
    }
}

int dt_rpc_from_cache(dt_call *c, const void *val, size_t len)
{
    Dovetail__V1__MatchResponse *r = dovetail__v1__match_response__unpack(NULL, len, val);
    if (!r) return -1;
    r->cached = 1;
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
    return 0;
}
