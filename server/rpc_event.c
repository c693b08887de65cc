/* rpc_event.c - the PairEvent RPC and the store of rendered event schedules.
 *
 * dt_rpc_event_precheck (loop thread) checks a request's shape and numbers; dt_rpc_event_run (a
 * worker) converts it to a dt_event_spec, pairs the event under the engine's read lock, encodes
 * the response, renders the HTML schedule and puts it in the store. dt_event_serve (loop thread)
 * answers GET /events/<tenant>/<event_id>.html by copying the stored page out under the store's
 * mutex: nothing is rendered on the loop.
 * The store keeps the latest page per (tenant, event id), in memory only, at most max_events pages
 * and max_bytes bytes; beyond either the least recently stored pages are dropped.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "event.h"
#include "pbjson.h"
#include "server.h"

typedef Dovetail__V1__PairEventRequest PbEventReq;

/* ---------------------------------------------------------------- the store */

typedef struct stored_page {
    char tenant[DT_TENANT_MAX + 1];
    char event_id[DT_ID_MAX + 1];
    char *html;
    size_t len;
    uint64_t seq; /* when it was stored: the smallest goes first */
} stored_page;

struct dt_event_store {
    pthread_mutex_t mu;
    stored_page *v;
    size_t n, max_events, max_bytes, bytes;
    uint64_t seq;
};

dt_event_store *dt_event_store_new(size_t max_events, size_t max_bytes)
{
    dt_event_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->max_events = max_events ? max_events : 1;
    st->max_bytes = max_bytes;
    st->v = calloc(st->max_events, sizeof *st->v);
    if (!st->v || pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st->v);
        free(st);
        return NULL;
    }
    return st;
}

void dt_event_store_free(dt_event_store *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->v[i].html);
    free(st->v);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static void store_drop(dt_event_store *st, size_t i)
{
    st->bytes -= st->v[i].len;
    free(st->v[i].html);
    st->v[i] = st->v[--st->n];
}

/* Takes html (malloc'd) in all cases: stored, or freed when it is larger than the whole store. */
static void store_put(dt_event_store *st, const char *tenant, const char *event_id, char *html, size_t len)
{
    if (len > st->max_bytes) {
        free(html);
        return;
    }
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->v[i].tenant, tenant) && !strcmp(st->v[i].event_id, event_id)) {
            store_drop(st, i);
            break;
        }
    while (st->n && (st->n == st->max_events || st->bytes + len > st->max_bytes)) {
        size_t old = 0;
        for (size_t i = 1; i < st->n; i++)
            if (st->v[i].seq < st->v[old].seq) old = i;
        store_drop(st, old);
    }
    stored_page *p = &st->v[st->n++];
    snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
    snprintf(p->event_id, sizeof p->event_id, "%s", event_id);
    p->html = html;
    p->len = len;
    p->seq = ++st->seq;
    st->bytes += len;
    pthread_mutex_unlock(&st->mu);
}

int dt_event_store_copy(dt_event_store *st, const char *tenant, const char *event_id, struct evbuffer *out)
{
    int rc = -1;
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->v[i].tenant, tenant) && !strcmp(st->v[i].event_id, event_id)) {
            rc = evbuffer_add(out, st->v[i].html, st->v[i].len) == 0 ? 0 : -1;
            break;
        }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---------------------------------------------------------------- names and URLs */

static bool event_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > DT_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* "/events/<tenant, percent-encoded>/<event_id>.html" into out (cap >= 3 * DT_TENANT_MAX + DT_ID_MAX + 16). */
static void html_url(const char *tenant, const char *event_id, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "/events/");
    for (const unsigned char *p = (const unsigned char *)tenant; *p && n + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
            *p == '_' || *p == '-' || *p == '~')
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
    }
    snprintf(out + n, cap - n, "/%s.html", event_id);
}

/* One path segment, percent-decoded, is "." or "..". */
static bool dot_segment(const char *seg, size_t n)
{
    char *enc = strndup(seg, n);
    char *dec = enc ? evhttp_uridecode(enc, 0, NULL) : NULL;
    bool dot = dec && (!strcmp(dec, ".") || !strcmp(dec, ".."));
    free(dec);
    free(enc);
    return dot;
}

bool dt_event_path_ok(const char *path)
{
    if (strncmp(path, "/events/", 8) != 0) return false;
    const char *tenant = path + 8, *slash = strchr(tenant, '/');
    if (!slash || slash == tenant || dot_segment(tenant, (size_t)(slash - tenant))) return false;
    const char *page = slash + 1;
    size_t n = strlen(page);
    /* one more segment, "<event id>.html", and nothing after it */
    return n > 5 && !strchr(page, '/') && !strcmp(page + n - 5, ".html") && !dot_segment(page, n - 5);
}

char *dt_event_path_tenant(const char *path)
{
    const char *rest = path + strlen("/events/"), *slash = strchr(rest, '/');
    size_t plen = strlen(path);
    if (!slash || plen <= 5 || strcmp(path + plen - 5, ".html")) return NULL;
    char *enc = strndup(rest, (size_t)(slash - rest));
    char *tenant = enc ? evhttp_uridecode(enc, 0, NULL) : NULL;
    free(enc);
    return tenant;
}

void dt_event_serve(dt_server *s, struct evhttp_request *req, const char *path)
{
    atomic_fetch_add(&s->metrics.http_other[3], 1);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    const char *rest = path + strlen("/events/"), *slash = strchr(rest, '/');
    size_t plen = strlen(path);
    char *tenant = NULL, event_id[DT_ID_MAX + 1] = "";
    if (slash && plen > 5 && !strcmp(path + plen - 5, ".html")) {
        tenant = dt_event_path_tenant(path);
        size_t idl = strlen(slash + 1) - 5;
        if (idl <= DT_ID_MAX) {
            memcpy(event_id, slash + 1, idl);
            event_id[idl] = 0;
        }
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        free(tenant);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    if (tenant && *tenant && strlen(tenant) <= DT_TENANT_MAX && event_id_ok(event_id) &&
        dt_event_store_copy(s->events, tenant, event_id, b) == 0) {
        evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
        evhttp_add_header(h, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(b, "no schedule stored for this event (plan it with PairEvent first)\n");
        evhttp_send_reply(req, 404, "Not Found", b);
    }
    evbuffer_free(b);
    free(tenant);
}

/* ---------------------------------------------------------------- loop-side checks */

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

static int check_participants(dt_call *c, const Dovetail__V1__Participants *p, const char *name)
{
    char field[64];
    if (!p || (!p->n_ids && !p->filter))
        return bad(c, name, "required: the participants' ids, or a filter selecting them");
    if (p->n_ids && p->filter) return bad(c, name, "give either ids or filter, not both");
    if (p->n_ids > DT_EVENT_SIDE_MAX) {
        snprintf(field, sizeof field, "%s.ids", name);
        return bad(c, field, "%zu ids; an event takes at most %d per side", p->n_ids, DT_EVENT_SIDE_MAX);
    }
    const Dovetail__V1__Filter *f = p->filter;
    if (!f) return 0;
    snprintf(field, sizeof field, "%s.filter", name);
    if (f->trl_min < 0 || f->trl_min > 9 || f->trl_max < 0 || f->trl_max > 9 ||
        (f->trl_min && f->trl_max && f->trl_min > f->trl_max))
        return bad(c, field, "trl_min and trl_max must be 0 (none) or 1..9, trl_min <= trl_max");
    for (size_t i = 0; i < f->n_modes; i++)
        if ((int)f->modes[i] < 1 || (int)f->modes[i] > DT_MODE_COUNT) return bad(c, field, "unknown mode in modes");
    if ((f->price_min_present_case && !(f->price_min >= 0 && isfinite(f->price_min))) ||
        (f->price_max_present_case && !(f->price_max >= 0 && isfinite(f->price_max))))
        return bad(c, field, "price_min and price_max must be finite numbers >= 0");
    if (f->n_field_prefixes > 64 || f->n_regions > 64 || f->n_clusters > 64 || f->n_tags > 64 ||
        f->n_exclude_ids > DT_EVENT_LIST_MAX)
        return bad(c, field, "too many values in a list (64 at most; exclude_ids %d)", DT_EVENT_LIST_MAX);
    return 0;
}

static int check_pairs(dt_call *c, PbEventReq *r)
{
    const struct {
        const char *name;
        size_t n;
    } lists[] = {{"sme_limits", r->n_sme_limits}, {"holder_limits", r->n_holder_limits},
                 {"must_meet", r->n_must_meet},   {"never_meet", r->n_never_meet},
                 {"requests", r->n_requests},     {"met_before", r->n_met_before},
                 {"locked", r->n_locked}};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        if (lists[i].n > DT_EVENT_LIST_MAX)
            return bad(c, lists[i].name, "%zu entries; at most %d", lists[i].n, DT_EVENT_LIST_MAX);
    char field[64];
    for (size_t i = 0; i < r->n_requests; i++) {
        Dovetail__V1__Requester w = r->requests[i]->requested_by;
        if ((int)w < DOVETAIL__V1__REQUESTER__REQUESTER_SME || (int)w > DOVETAIL__V1__REQUESTER__REQUESTER_BOTH) {
            snprintf(field, sizeof field, "requests[%zu].requested_by", i);
            return bad(c, field, "required: REQUESTER_SME, REQUESTER_HOLDER or REQUESTER_BOTH");
        }
    }
    for (size_t i = 0; i < r->n_locked; i++) {
        const Dovetail__V1__LockedMeeting *l = r->locked[i];
        if (l->slot < 1 || l->slot > r->slots) {
            snprintf(field, sizeof field, "locked[%zu].slot", i);
            return bad(c, field, "slot %u is outside 1..%u (slots count from 1)", l->slot, r->slots);
        }
        if (l->table < 1 || l->table > r->tables) {
            snprintf(field, sizeof field, "locked[%zu].table", i);
            return bad(c, field, "table %u is outside 1..%u (tables count from 1)", l->table, r->tables);
        }
    }
    for (int side = 0; side < 2; side++) {
        size_t n = side ? r->n_holder_limits : r->n_sme_limits;
        Dovetail__V1__ParticipantLimit **v = side ? r->holder_limits : r->sme_limits;
        for (size_t i = 0; i < n; i++)
            if (v[i]->max_meetings_present_case && v[i]->max_meetings > r->slots) {
                snprintf(field, sizeof field, "%s[%zu].max_meetings", side ? "holder_limits" : "sme_limits", i);
                return bad(c, field, "%u is more than the number of slots (%u)", v[i]->max_meetings, r->slots);
            }
    }
    return 0;
}

int dt_rpc_event_precheck(dt_call *c)
{
    PbEventReq *r = (PbEventReq *)c->in;
    if (!event_id_ok(r->event_id))
        return bad(c, "event_id", "required: 1 to %d characters from A-Z a-z 0-9 . _ -", DT_ID_MAX);
    if (check_participants(c, r->smes, "smes") < 0 || check_participants(c, r->holders, "holders") < 0) return -1;
    if (r->slots < 1 || r->slots > DT_PAIR_SLOTS_MAX)
        return bad(c, "slots", "required: 1 to %d time slots, got %u", DT_PAIR_SLOTS_MAX, r->slots);
    if (r->tables < 1 || r->tables > DT_PAIR_TABLES_MAX)
        return bad(c, "tables", "required: 1 to %d tables per slot, got %u", DT_PAIR_TABLES_MAX, r->tables);
    uint32_t mx = r->max_meetings_present_case ? r->max_meetings : r->slots;
    if (mx > r->slots) return bad(c, "max_meetings", "%u is more than the number of slots (%u)", mx, r->slots);
    if (r->min_meetings > mx) return bad(c, "min_meetings", "%u is more than max_meetings (%u)", r->min_meetings, mx);
    if (r->candidates > DT_EVENT_CANDIDATES_MAX)
        return bad(c, "candidates", "%u; at most %d", r->candidates, DT_EVENT_CANDIDATES_MAX);
    if (!isfinite(r->min_score)) return bad(c, "min_score", "must be a finite number");
    if (r->boost_one_present_case && !(r->boost_one >= 0 && r->boost_one <= DT_PAIR_VALUE_MAX))
        return bad(c, "boost_one", "must be a number from 0 to %g", DT_PAIR_VALUE_MAX);
    if (r->boost_both_present_case && !(r->boost_both >= 0 && r->boost_both <= DT_PAIR_VALUE_MAX))
        return bad(c, "boost_both", "must be a number from 0 to %g", DT_PAIR_VALUE_MAX);
    if (r->decay_gamma_present_case && !(r->decay_gamma > 0 && r->decay_gamma <= 1))
        return bad(c, "decay_gamma", "must be in (0, 1] (1 turns diminishing returns off)");
    const Dovetail__V1__Weights *w = r->weights;
    if (w) {
        if (!(isfinite(w->dense) && w->dense >= 0 && w->dense <= 1e6) ||
            !(isfinite(w->lexical) && w->lexical >= 0 && w->lexical <= 1e6) ||
            !(isfinite(w->structured) && w->structured >= 0 && w->structured <= 1e6))
            return bad(c, "weights", "each weight must be a finite number >= 0");
        if (w->dense + w->lexical + w->structured <= 0) return bad(c, "weights", "at least one weight must be > 0");
    }
    return check_pairs(c, r);
}

/* ---------------------------------------------------------------- the request as a spec */

typedef struct spec_buf {
    dt_event_spec sp;
    dt_weights w;
    dt_event_limit *lim[2];
    dt_event_pairref *must, *never, *met;
    dt_event_request *req;
    dt_event_locked *locked;
} spec_buf;

static void spec_buf_free(spec_buf *b)
{
    free(b->lim[0]);
    free(b->lim[1]);
    free(b->must);
    free(b->never);
    free(b->met);
    free(b->req);
    free(b->locked);
}

static void side_from_pb(const Dovetail__V1__Participants *p, dt_event_side *s)
{
    if (p->n_ids) {
        s->ids = (const char *const *)p->ids;
        s->n_ids = p->n_ids;
        return;
    }
    const Dovetail__V1__Filter *f = p->filter;
    s->by_filter = true;
    s->filter.field_prefixes = (const char *const *)f->field_prefixes;
    s->filter.n_field_prefixes = f->n_field_prefixes;
    s->filter.region_prefixes = (const char *const *)f->regions;
    s->filter.n_region_prefixes = f->n_regions;
    s->clusters = (const char *const *)f->clusters;
    s->n_clusters = f->n_clusters;
    s->filter.trl_min = f->trl_min;
    s->filter.trl_max = f->trl_max;
    for (size_t i = 0; i < f->n_modes; i++) s->filter.modes |= 1u << ((int)f->modes[i] - 1);
    if (f->price_min_present_case) s->filter.price_min = f->price_min;
    if (f->price_max_present_case) s->filter.price_max = f->price_max;
    s->filter.tags = (const char *const *)f->tags;
    s->filter.n_tags = f->n_tags;
    s->filter.include_closed = f->include_closed;
    s->exclude_ids = (const char *const *)f->exclude_ids;
    s->n_exclude = f->n_exclude_ids;
}

static dt_event_pairref *pairs_from_pb(Dovetail__V1__PairRef **v, size_t n, bool *oom)
{
    dt_event_pairref *out = malloc((n ? n : 1) * sizeof *out);
    if (!out) *oom = true;
    for (size_t i = 0; out && i < n; i++) out[i] = (dt_event_pairref){v[i]->sme_id, v[i]->holder_id};
    return out;
}

/* The request as a spec borrowing its strings (valid while c->in lives). 0 or -1 (out of memory). */
static int spec_from_pb(const dt_call *c, spec_buf *b)
{
    const PbEventReq *r = (const PbEventReq *)c->in;
    memset(b, 0, sizeof *b);
    dt_event_spec *sp = &b->sp;
    dt_event_spec_init(sp);
    sp->tenant = c->tenant;
    side_from_pb(r->smes, &sp->smes);
    side_from_pb(r->holders, &sp->holders);
    sp->slots = (int)r->slots;
    sp->tables = (int)r->tables;
    sp->max_meetings = r->max_meetings_present_case ? (int)r->max_meetings : -1;
    sp->min_meetings = (int)r->min_meetings;
    sp->candidates = r->candidates;
    sp->opt.min_score = r->min_score;
    if (r->boost_one_present_case) sp->opt.boost_one = r->boost_one;
    if (r->boost_both_present_case) sp->opt.boost_both = r->boost_both;
    if (r->decay_gamma_present_case) sp->opt.decay_gamma = r->decay_gamma;
    if (r->weights) {
        b->w = (dt_weights){(float)r->weights->dense, (float)r->weights->lexical, (float)r->weights->structured};
        sp->weights = &b->w;
    }
    bool oom = false;
    for (int side = 0; side < 2; side++) {
        size_t n = side ? r->n_holder_limits : r->n_sme_limits;
        Dovetail__V1__ParticipantLimit **v = side ? r->holder_limits : r->sme_limits;
        b->lim[side] = malloc((n ? n : 1) * sizeof *b->lim[side]);
        if (!b->lim[side]) return -1;
        for (size_t i = 0; i < n; i++)
            b->lim[side][i] = (dt_event_limit){v[i]->id, v[i]->max_meetings_present_case ? (int)v[i]->max_meetings : -1,
                                               v[i]->min_meetings_present_case ? (int)v[i]->min_meetings : -1};
    }
    sp->sme_limits = b->lim[0];
    sp->n_sme_limits = r->n_sme_limits;
    sp->holder_limits = b->lim[1];
    sp->n_holder_limits = r->n_holder_limits;
    sp->must_meet = b->must = pairs_from_pb(r->must_meet, r->n_must_meet, &oom);
    sp->n_must_meet = r->n_must_meet;
    sp->never_meet = b->never = pairs_from_pb(r->never_meet, r->n_never_meet, &oom);
    sp->n_never_meet = r->n_never_meet;
    sp->met_before = b->met = pairs_from_pb(r->met_before, r->n_met_before, &oom);
    sp->n_met_before = r->n_met_before;
    b->req = malloc((r->n_requests ? r->n_requests : 1) * sizeof *b->req);
    b->locked = malloc((r->n_locked ? r->n_locked : 1) * sizeof *b->locked);
    if (oom || !b->req || !b->locked) return -1;
    for (size_t i = 0; i < r->n_requests; i++) {
        const Dovetail__V1__MeetingRequest *q = r->requests[i];
        int who = q->requested_by == DOVETAIL__V1__REQUESTER__REQUESTER_SME      ? DT_PAIR_REQ_A
                  : q->requested_by == DOVETAIL__V1__REQUESTER__REQUESTER_HOLDER ? DT_PAIR_REQ_B
                                                                                 : DT_PAIR_REQ_BOTH;
        b->req[i] = (dt_event_request){q->sme_id, q->holder_id, who};
    }
    sp->requests = b->req;
    sp->n_requests = r->n_requests;
    for (size_t i = 0; i < r->n_locked; i++) {
        const Dovetail__V1__LockedMeeting *l = r->locked[i];
        b->locked[i] = (dt_event_locked){l->sme_id, l->holder_id, (int)l->slot, (int)l->table};
    }
    sp->locked = b->locked;
    sp->n_locked = r->n_locked;
    return 0;
}

/* ---------------------------------------------------------------- the response */

#define N_REASONS 10 /* DT_PAIR_R_* bits; ShortfallReason = bit index + 1 */
#define SUMMARY_MAX 512

/* Everything the response points to, allocated in bulk; strings are borrowed from the result. */
typedef struct resp_buf {
    Dovetail__V1__Meeting *m;
    Dovetail__V1__Meeting **mp;
    Dovetail__V1__EventParty *party; /* per meeting 2, per agenda item 1, per agenda 1 */
    Dovetail__V1__Explanation *ex;
    Dovetail__V1__StructuredPart *sp;
    Dovetail__V1__StructuredPart **spp;
    Dovetail__V1__Term *tm;
    Dovetail__V1__Term **tmp;
    char *summary; /* SUMMARY_MAX per meeting */
    Dovetail__V1__Agenda *ag;
    Dovetail__V1__Agenda **agp;
    Dovetail__V1__AgendaItem *it;
    Dovetail__V1__AgendaItem **itp;
    Dovetail__V1__Shortfall *sf;
    Dovetail__V1__Shortfall **sfp;
    Dovetail__V1__UnmetGuarantee *ug;
    Dovetail__V1__UnmetGuarantee **ugp;
    Dovetail__V1__UnmetPair *up;
    Dovetail__V1__UnmetPair **upm, **ups;
    Dovetail__V1__ShortfallReason *reasons; /* N_REASONS per participant and per unmet item */
} resp_buf;

static void resp_buf_free(resp_buf *b)
{
    void *ptrs[] = {b->m,  b->mp,  b->party, b->ex,  b->sp,  b->spp, b->tm,  b->tmp,  b->summary, b->ag,     b->agp,
                    b->it, b->itp, b->sf,    b->sfp, b->ug,  b->ugp, b->up,  b->upm,  b->ups,     b->reasons};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) free(ptrs[i]);
}

static size_t reasons_pb(unsigned mask, Dovetail__V1__ShortfallReason *out)
{
    size_t n = 0;
    for (int i = 0; i < N_REASONS; i++)
        if (mask & (1u << i)) out[n++] = (Dovetail__V1__ShortfallReason)(i + 1);
    return n;
}

static void party_pb(Dovetail__V1__EventParty *p, const dt_event_person *x)
{
    dovetail__v1__event_party__init(p);
    p->id = x->id;
    p->title = x->title;
    p->org = x->org;
}

static Dovetail__V1__Requester requester_pb(unsigned flags)
{
    unsigned q = flags & (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B);
    return q == (DT_PAIR_M_REQ_A | DT_PAIR_M_REQ_B) ? DOVETAIL__V1__REQUESTER__REQUESTER_BOTH
           : q == DT_PAIR_M_REQ_A                   ? DOVETAIL__V1__REQUESTER__REQUESTER_SME
           : q == DT_PAIR_M_REQ_B                   ? DOVETAIL__V1__REQUESTER__REQUESTER_HOLDER
                                                    : DOVETAIL__V1__REQUESTER__REQUESTER_UNSPECIFIED;
}

static void explanation_pb(resp_buf *b, size_t k, const dt_event_meeting *m)
{
    Dovetail__V1__Explanation *e = &b->ex[k];
    dovetail__v1__explanation__init(e);
    e->dense = m->dense;
    e->lexical = m->lexical;
    e->structured = m->structured;
    float sum = 0;
    for (int f = 0; f < DT_FIT_COUNT; f++)
        if (m->fit[f] > 0) sum += m->fit[f];
    e->structured_parts = b->spp + k * DT_FIT_COUNT;
    for (int f = 0; f < DT_FIT_COUNT; f++) {
        if (m->fit[f] < 0) continue;
        Dovetail__V1__StructuredPart *s = &b->sp[k * DT_FIT_COUNT + e->n_structured_parts];
        dovetail__v1__structured_part__init(s);
        s->name = (char *)dt_fit_name(f);
        s->value = sum > 0 ? m->structured * m->fit[f] / sum : 0;
        e->structured_parts[e->n_structured_parts++] = s;
    }
    e->terms = b->tmp + k * DT_EVENT_TERMS;
    for (size_t t = 0; t < m->n_terms; t++) {
        Dovetail__V1__Term *tt = &b->tm[k * DT_EVENT_TERMS + t];
        dovetail__v1__term__init(tt);
        tt->term = (char *)m->terms[t].term;
        tt->weight = m->terms[t].weight;
        e->terms[e->n_terms++] = tt;
    }
}


static int respond(dt_call *c, const dt_event_result *r, const char *url, uint32_t elapsed_ms)
{
    const PbEventReq *rq = (const PbEventReq *)c->in;
    size_t nm = r->n_meetings, np = r->n_smes + r->n_holders, nu = r->n_unmet;
    resp_buf b;
    memset(&b, 0, sizeof b);
    b.m = calloc(nm + 1, sizeof *b.m);
    b.mp = calloc(nm + 1, sizeof *b.mp);
    b.party = calloc(4 * nm + np + 1, sizeof *b.party);
    b.ex = calloc(nm + 1, sizeof *b.ex);
    b.sp = calloc((nm + 1) * DT_FIT_COUNT, sizeof *b.sp);
    b.spp = calloc((nm + 1) * DT_FIT_COUNT, sizeof *b.spp);
    b.tm = calloc((nm + 1) * DT_EVENT_TERMS, sizeof *b.tm);
    b.tmp = calloc((nm + 1) * DT_EVENT_TERMS, sizeof *b.tmp);
    b.summary = calloc((nm + 1) * SUMMARY_MAX, 1);
    b.ag = calloc(np + 1, sizeof *b.ag);
    b.agp = calloc(np + 1, sizeof *b.agp);
    b.it = calloc(2 * nm + 1, sizeof *b.it);
    b.itp = calloc(2 * nm + 1, sizeof *b.itp);
    b.sf = calloc(np + 1, sizeof *b.sf);
    b.sfp = calloc(np + 1, sizeof *b.sfp);
    b.ug = calloc(nu + 1, sizeof *b.ug);
    b.ugp = calloc(nu + 1, sizeof *b.ugp);
    b.up = calloc(nu + 1, sizeof *b.up);
    b.upm = calloc(nu + 1, sizeof *b.upm);
    b.ups = calloc(nu + 1, sizeof *b.ups);
    b.reasons = calloc((np + nu + 1) * N_REASONS, sizeof *b.reasons);
    if (!b.m || !b.mp || !b.party || !b.ex || !b.sp || !b.spp || !b.tm || !b.tmp || !b.summary || !b.ag || !b.agp ||
        !b.it || !b.itp || !b.sf || !b.sfp || !b.ug || !b.ugp || !b.up || !b.upm || !b.ups || !b.reasons) {
        resp_buf_free(&b);
        return -1;
    }
    Dovetail__V1__PairEventResponse resp = DOVETAIL__V1__PAIR_EVENT_RESPONSE__INIT;
    resp.event_id = rq->event_id;
    size_t parties = 0;
    for (size_t k = 0; k < nm; k++) {
        const dt_event_meeting *m = &r->meetings[k];
        Dovetail__V1__Meeting *p = &b.m[k];
        dovetail__v1__meeting__init(p);
        p->slot = (uint32_t)m->slot;
        p->table = (uint32_t)m->table;
        p->sme = &b.party[parties++];
        party_pb(p->sme, &r->smes[m->sme]);
        p->holder = &b.party[parties++];
        party_pb(p->holder, &r->holders[m->holder]);
        p->score = m->score;
        p->value = m->value;
        p->locked = (m->flags & DT_PAIR_M_LOCKED) != 0;
        p->must_meet = (m->flags & DT_PAIR_M_MUST) != 0;
        p->requested_by = requester_pb(m->flags);
        explanation_pb(&b, k, m);
        p->explanation = &b.ex[k];
        p->summary = b.summary + k * SUMMARY_MAX;
        dt_event_summary(r, m, p->summary, SUMMARY_MAX);
        b.mp[k] = p;
    }
    resp.meetings = b.mp;
    resp.n_meetings = nm;
    size_t items = 0, nsf = 0, rs = 0;
    for (size_t g = 0; g < np; g++) {
        int side = g >= r->n_smes;
        size_t i = side ? g - r->n_smes : g;
        const dt_event_person *x = side ? &r->holders[i] : &r->smes[i];
        Dovetail__V1__Side pside = side ? DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT : DOVETAIL__V1__SIDE__SIDE_DEMAND;
        Dovetail__V1__Agenda *a = &b.ag[g];
        dovetail__v1__agenda__init(a);
        a->side = pside;
        a->participant = &b.party[parties++];
        party_pb(a->participant, x);
        a->meetings = (uint32_t)x->count;
        a->max_meetings = (uint32_t)x->max_meetings;
        a->min_meetings = (uint32_t)x->min_meetings;
        a->items = b.itp + items;
        for (int j = 0; j < x->count; j++) {
            const dt_event_meeting *m = &r->meetings[x->agenda[j]];
            Dovetail__V1__AgendaItem *it = &b.it[items];
            dovetail__v1__agenda_item__init(it);
            it->slot = (uint32_t)m->slot;
            it->table = (uint32_t)m->table;
            it->partner = side ? b.m[x->agenda[j]].sme : b.m[x->agenda[j]].holder;
            it->score = m->score;
            it->summary = b.summary + x->agenda[j] * SUMMARY_MAX;
            b.itp[items++] = it;
        }
        a->n_items = (size_t)x->count;
        Dovetail__V1__ShortfallReason *why = b.reasons + (rs++) * N_REASONS;
        size_t nwhy = reasons_pb(x->reasons, why);
        a->reasons = why;
        a->n_reasons = nwhy;
        b.agp[g] = a;
        if (x->count < x->max_meetings) {
            Dovetail__V1__Shortfall *s = &b.sf[nsf];
            dovetail__v1__shortfall__init(s);
            s->side = pside;
            s->id = x->id;
            s->meetings = (uint32_t)x->count;
            s->max_meetings = (uint32_t)x->max_meetings;
            s->reasons = why;
            s->n_reasons = nwhy;
            b.sfp[nsf++] = s;
        }
    }
    resp.agendas = b.agp;
    resp.n_agendas = np;
    resp.shortfalls = b.sfp;
    resp.n_shortfalls = nsf;
    size_t nug = 0, nupm = 0, nups = 0;
    for (size_t i = 0; i < nu; i++) {
        const dt_pair_unmet *u = &r->unmet[i];
        Dovetail__V1__ShortfallReason *why = b.reasons + (rs++) * N_REASONS;
        size_t nwhy = reasons_pb(u->reasons, why);
        if (u->kind == DT_PAIR_UNMET_GUARANTEE) {
            Dovetail__V1__UnmetGuarantee *g = &b.ug[nug];
            dovetail__v1__unmet_guarantee__init(g);
            g->side = u->side ? DOVETAIL__V1__SIDE__SIDE_ACHIEVEMENT : DOVETAIL__V1__SIDE__SIDE_DEMAND;
            g->id = u->side ? r->holders[u->b].id : r->smes[u->a].id;
            g->meetings = (uint32_t)u->have;
            g->min_meetings = (uint32_t)u->want;
            g->reasons = why;
            g->n_reasons = nwhy;
            b.ugp[nug++] = g;
            continue;
        }
        Dovetail__V1__UnmetPair *p = &b.up[i];
        dovetail__v1__unmet_pair__init(p);
        p->sme_id = r->smes[u->a].id;
        p->holder_id = r->holders[u->b].id;
        p->reasons = why;
        p->n_reasons = nwhy;
        if (u->kind == DT_PAIR_UNMET_MUST)
            b.upm[nupm++] = p;
        else
            b.ups[nups++] = p;
    }
    resp.unmet_guarantees = b.ugp;
    resp.n_unmet_guarantees = nug;
    resp.unmet_must_meet = b.upm;
    resp.n_unmet_must_meet = nupm;
    resp.unscheduled = b.ups;
    resp.n_unscheduled = nups;
    resp.total_score = r->total_score;
    resp.total_value = r->total_value;
    resp.smes = (uint32_t)r->n_smes;
    resp.holders = (uint32_t)r->n_holders;
    resp.candidates = (uint32_t)r->n_candidates;
    resp.must_met = (uint32_t)r->n_must_met;
    resp.index_epoch = r->epoch;
    resp.html_url = (char *)url;
    resp.elapsed_ms = elapsed_ms;
    dt_rpc_finish(c, &resp.base);
    resp_buf_free(&b);
    return 0;
}

void dt_rpc_event_run(dt_call *c, dt_searcher *sr)
{
    dt_server *s = c->srv;
    const PbEventReq *rq = (const PbEventReq *)c->in;
    uint64_t t0 = dt_now_us();
    if (s->cfg.deadline_ms > 0 && t0 - c->t_start_us > (uint64_t)s->cfg.deadline_ms * 1000) {
        c->code = TW_DEADLINE_EXCEEDED; /* already answered by the loop: skip the work */
        dt_err_set(&c->err, DT_ELIMIT, NULL, "the request waited longer than its deadline");
        return;
    }
    spec_buf b;
    dt_event_result *r = NULL;
    if (spec_from_pb(c, &b) < 0) {
        spec_buf_free(&b);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory");
        return;
    }
    dt_err err = DT_ERR_INIT;
    dt_store_read_long(&s->store); /* candidates for every participant, then the schedule */
    int rc = dt_event_pair(s->engine, sr, &b.sp, &r, &err);
    if (rc == 0 && s->outcomes) r->epoch += dt_outcome_count(s->outcomes, c->tenant); /* as dt_rpc_tenant_epoch */
    dt_store_read_long_end(&s->store);
    spec_buf_free(&b);
    if (rc < 0) {
        c->code = dt_twirp_from_err(err.code);
        c->err = err;
        return;
    }
    char url[3 * DT_TENANT_MAX + DT_ID_MAX + 32];
    html_url(c->tenant, rq->event_id, url, sizeof url);
    size_t len = 0;
    char *html = dt_event_html(r, rq->event_id, &len);
    uint64_t ms = (dt_now_us() - t0) / 1000;
    if (!html || respond(c, r, url, (uint32_t)(ms > UINT32_MAX ? UINT32_MAX : ms)) < 0) {
        free(html);
        c->code = TW_INTERNAL;
        dt_err_set(&c->err, DT_ENOMEM, NULL, "out of memory building the schedule");
    } else if (c->code == TW_OK) {
        store_put(s->events, c->tenant, rq->event_id, html, len);
    } else {
        free(html);
    }
    dt_event_result_free(r);
}
