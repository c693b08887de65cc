/* soak.c - a load generator for a long run of dovetaild: a fixed mix of every RPC over libevent's
 * evhttp client, first closed loop to find the rate the daemon sustains, then open loop at a share
 * of that rate for a long time; it counts answers and errors per kind, prints latency percentiles
 * and follows the daemon's resident memory (VmRSS from /proc/PID/status).
 *
 *   soak --port PORT --demo DIR [--pid PID] [--measure S] [--load F] [--rate R] [--duration S]
 *        [--warmup S] [--connections N] [--open-connections N] [--max-growth PCT] [--seed N]
 *
 *   --demo DIR       the demo data the daemon serves (achievements.jsonl, demands.jsonl): ids,
 *                    titles and texts for the requests; only tenant "public" is queried
 *   --measure S      closed loop for S seconds (default 20) with --connections (16) requests in
 *                    flight: the maximum sustainable rate of the mix; skipped when --rate is given
 *   --open-connections N   connections the open loop spreads its requests over (default 4 times
 *                    --connections, so that the daemon, not the client, is where requests wait)
 *   --load F         open loop at F times that rate (default 0.8)
 *   --duration S     open loop for S seconds (default 600)
 *   --warmup S       resident memory is compared between S seconds into the open loop (default 60,
 *                    at most a quarter of the duration) and its end
 *   --max-growth P   the growth target, percent (default 10)
 *
 * The mix (per mille): Match by a demand held in a hot set of 40 (cached after the first time) 300,
 * Match by a random record with a random k and offset (uncached) 120, Match by one of 20 record
 * titles as free text (cached) 120, Match by two random titles (uncached) 80; UpsertRecords of a
 * new record 70 and of a changed one 60, DeleteRecords 60 (all in tenant "soak", whose live records
 * stay between 0 and 400, so writes never invalidate the cached "public" answers); GetRecord 120;
 * PairEvent of 12 SMEs x 8 holders x 3 slots under one of 8 event ids 10; Stats 30; and 30
 * deliberately bad requests (malformed JSON, a Match without a query, an unknown id, an unknown
 * method, an invalid record, a wrong Content-Type), each of which must get its Twirp error.
 * An error is any other answer: a status that is not 200 (or not the expected error), a missing
 * body, a delete that found nothing, a GetRecord that returned another record, a lost connection.
 *
 * Open loop: requests are due at evenly spaced times and latency counts from that time, so a stall
 * shows as latency of everything due during it rather than as a lower rate; requests go to the
 * connection with the fewest outstanding. Exit status: 0 when there were no errors, the open loop
 * kept up (at least 95% of the requests due were answered before the run's end) and memory grew
 * less than --max-growth; 1 otherwise; 2 on bad arguments or unusable demo data.
 *
 * Not a general HTTP benchmark: it speaks only dovetaild's Twirp JSON, to 127.0.0.1.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

enum {
    K_MATCH_HOT,
    K_MATCH_COLD,
    K_TEXT_HOT,
    K_TEXT_COLD,
    K_UPSERT_NEW,
    K_UPSERT_CHANGE,
    K_DELETE,
    K_GET,
    K_PAIR,
    K_STATS,
    K_BAD,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {"Match record (hot)", "Match record (cold)",
                                                "Match text (hot)",   "Match text (cold)",
                                                "Upsert new",         "Upsert changed",
                                                "DeleteRecords",      "GetRecord",
                                                "PairEvent",          "Stats",
                                                "bad requests"};
static const int kind_weight[K_COUNT] = {300, 120, 120, 80, 70, 60, 60, 120, 10, 30, 30};

#define HOT_IDS 40
#define HOT_TEXTS 20
#define LIVE_MAX 400
#define EVENT_IDS 8
#define N_BAD 6

typedef struct rec {
    char *id, *title, *text;
    bool demand;
} rec;

typedef struct live {
    char id[32];
    bool demand;
    int busy; /* requests naming it in flight: only an idle record is changed or deleted */
} live;

typedef struct lat {
    uint32_t *us;
    size_t n, cap;
} lat;

typedef struct stats {
    uint64_t sent[K_COUNT], ok[K_COUNT], errors[K_COUNT];
    lat lat[K_COUNT];
} stats;

typedef struct conn {
    struct evhttp_connection *evcon;
    int outstanding;
} conn;

typedef struct soak soak;

typedef struct call {
    soak *s;
    conn *cn;
    int kind;
    int bad;          /* K_BAD: which bad request */
    int live_ix;      /* a request naming a live record (index when sent), else -1 */
    char want_id[32]; /* GetRecord: the id the answer must carry */
    int64_t t_due_us; /* latency counts from here */
} call;

struct soak {
    struct event_base *base;
    int port;
    rec *recs;
    size_t n_recs;
    size_t *dem; /* indexes of demand records */
    size_t n_dem;
    size_t *ach; /* indexes of achievement records */
    size_t n_ach;
    live lv[LIVE_MAX];
    size_t n_live;
    uint64_t next_id;
    uint64_t rng;
    conn *conns;
    int n_conns;
    stats *st;     /* the phase being recorded */
    bool open;     /* open loop, else closed */
    bool stopping; /* no new requests */
    int64_t t0_us, t_end_us;
    double rate;
    uint64_t due_sent;         /* open loop: requests sent so far */
    uint64_t answered_in_time; /* answers that came before t_end_us */
    uint64_t in_flight;
    struct event *tick;
    char errlog[5][300];
    int n_errlog;
    int pid;
    long rss_warm_kb, rss_peak_kb;
    int64_t t_warm_us, t_next_rss_us;
    int64_t progress_every_us, t_next_progress_us;
    uint64_t progress_answered;
    bool warm_done;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rnd(soak *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rnd_below(soak *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

static void die(const char *what)
{
    fprintf(stderr, "soak: %s\n", what);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) die("out of memory");
    return p;
}

static void lat_add(lat *l, uint32_t us)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint32_t *v = realloc(l->us, cap * sizeof *v);
        if (!v) die("out of memory");
        l->us = v;
        l->cap = cap;
    }
    l->us[l->n++] = us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of a sorted array, in milliseconds. */
static double quantile_ms(const uint32_t *v, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)ceil(q * (double)n);
    if (i > 0) i--;
    if (i >= n) i = n - 1;
    return v[i] / 1000.0;
}

/* VmRSS of pid in KiB, or -1. */
static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* ---- demo data ---- */

static void load_file(soak *s, const char *path, size_t *cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "soak: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t n = 0;
    while (getline(&line, &n, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) continue;
        const char *id = json_string_value(json_object_get(o, "id"));
        const char *side = json_string_value(json_object_get(o, "side"));
        const char *tenant = json_string_value(json_object_get(o, "tenant"));
        const char *title = json_string_value(json_object_get(o, "title"));
        const char *text = json_string_value(json_object_get(o, "text"));
        if (id && side && title && text && (!tenant || !strcmp(tenant, "public"))) {
            if (s->n_recs == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                rec *v = realloc(s->recs, *cap * sizeof *v);
                if (!v) die("out of memory");
                s->recs = v;
            }
            rec *r = &s->recs[s->n_recs++];
            r->id = xstrdup(id);
            r->title = xstrdup(title);
            r->text = xstrdup(text);
            r->demand = !strcmp(side, "demand");
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
}

static void load_demo(soak *s, const char *dir)
{
    size_t cap = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/achievements.jsonl", dir);
    load_file(s, path, &cap);
    snprintf(path, sizeof path, "%s/demands.jsonl", dir);
    load_file(s, path, &cap);
    s->dem = xmalloc(s->n_recs * sizeof *s->dem);
    s->ach = xmalloc(s->n_recs * sizeof *s->ach);
    for (size_t i = 0; i < s->n_recs; i++) {
        if (s->recs[i].demand)
            s->dem[s->n_dem++] = i;
        else
            s->ach[s->n_ach++] = i;
    }
    if (s->n_dem < HOT_IDS + 12 || s->n_ach < 8 + HOT_TEXTS)
        die("the demo data has too few public records (make demo)");
}

/* ---- requests ---- */

static const char *const method_of[K_COUNT] = {
    "Match",     "Match",     "Match", "Match", "UpsertRecords", "UpsertRecords", "DeleteRecords",
    "GetRecord", "PairEvent", "Stats", NULL};

static const struct {
    const char *method, *ctype, *body;
    int status;
    const char *code;
} bad_reqs[N_BAD] = {
    {"Match", "application/json", "{\"k\": ", 400, "malformed"},
    {"Match", "application/json", "{\"k\":5}", 400, "invalid_argument"},
    {"GetRecord", "application/json", "{\"side\":\"SIDE_DEMAND\",\"id\":\"no-such-record\"}", 404,
     "not_found"},
    {"NoSuchMethod", "application/json", "{}", 404, "bad_route"},
    {"UpsertRecords", "application/json",
     "{\"tenant\":\"soak\",\"records\":[{\"id\":\"bad-trl\",\"side\":\"SIDE_ACHIEVEMENT\","
     "\"title\":\"t\",\"trl\":42}]}",
     400, "invalid_argument"},
    {"Stats", "text/plain", "{}", 404, "bad_route"},
};

static char *dump(json_t *o)
{
    char *b = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!b) die("out of memory");
    return b;
}

static int pick_kind(soak *s)
{
    size_t r = rnd_below(s, 1000);
    int k = 0;
    while (k < K_COUNT - 1 && r >= (size_t)kind_weight[k])
        r -= (size_t)kind_weight[k++];
    return k;
}

/* A live record nobody is writing, or -1. */
static int pick_live(soak *s)
{
    for (int tries = 0; tries < 8 && s->n_live; tries++) {
        size_t i = rnd_below(s, s->n_live);
        if (!s->lv[i].busy) return (int)i;
    }
    return -1;
}

static void live_remove(soak *s, int i)
{
    s->lv[i] = s->lv[--s->n_live];
}

/* The body of a request of kind c->kind (may change it: a write with no record to write becomes
 * a new upsert or a delete). Caller frees. */
static char *make_body(soak *s, call *c)
{
    if (c->kind == K_UPSERT_NEW && s->n_live >= LIVE_MAX) c->kind = K_DELETE;
    if ((c->kind == K_UPSERT_CHANGE || c->kind == K_DELETE) && (c->live_ix = pick_live(s)) < 0)
        c->kind = s->n_live >= LIVE_MAX ? K_STATS : K_UPSERT_NEW;
    const rec *a = &s->recs[rnd_below(s, s->n_recs)];
    switch (c->kind) {
    case K_MATCH_HOT: {
        const rec *d = &s->recs[s->dem[rnd_below(s, HOT_IDS)]];
        return dump(
            json_pack("{s:{s:s,s:s},s:i}", "record", "side", "SIDE_DEMAND", "id", d->id, "k", 10));
    }
    case K_MATCH_COLD:
        return dump(json_pack("{s:{s:s,s:s},s:i,s:i}", "record", "side",
                              a->demand ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT", "id", a->id, "k",
                              5 + (int)rnd_below(s, 26), "offset", (int)rnd_below(s, 20)));
    case K_TEXT_HOT: {
        const rec *t = &s->recs[rnd_below(s, HOT_TEXTS)];
        return dump(json_pack("{s:s,s:s,s:i}", "text", t->title, "targetSide", "SIDE_ACHIEVEMENT",
                              "k", 10));
    }
    case K_TEXT_COLD: {
        const rec *b = &s->recs[rnd_below(s, s->n_recs)];
        char q[1024];
        snprintf(q, sizeof q, "%.400s %.400s", a->title, b->title);
        return dump(json_pack("{s:s,s:s,s:i}", "text", q, "targetSide",
                              rnd(s) & 1 ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT", "k",
                              5 + (int)rnd_below(s, 20)));
    }
    case K_UPSERT_NEW:
    case K_UPSERT_CHANGE: {
        live *l;
        if (c->kind == K_UPSERT_NEW) {
            c->live_ix = (int)s->n_live;
            l = &s->lv[s->n_live++];
            memset(l, 0, sizeof *l);
            snprintf(l->id, sizeof l->id, "soak-%08llu", (unsigned long long)++s->next_id);
            l->demand = rnd(s) & 1;
        } else {
            l = &s->lv[c->live_ix];
        }
        l->busy++;
        snprintf(c->want_id, sizeof c->want_id, "%s", l->id);
        json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "id", l->id, "side",
                              l->demand ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT", "title", a->title,
                              "text", a->text, "field", "C.38.4", "region", "CN.32.05", "trl",
                              1 + (int)rnd_below(s, 9));
        return dump(json_pack("{s:s,s:[o]}", "tenant", "soak", "records", r));
    }
    case K_DELETE: {
        live *l = &s->lv[c->live_ix];
        l->busy++;
        snprintf(c->want_id, sizeof c->want_id, "%s", l->id);
        return dump(json_pack("{s:s,s:s,s:[s]}", "tenant", "soak", "side",
                              l->demand ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT", "ids", l->id));
    }
    case K_GET: {
        int i = rnd(s) % 4 == 0 ? pick_live(s) : -1;
        if (i >= 0) {
            c->live_ix = i;
            s->lv[i].busy++;
            snprintf(c->want_id, sizeof c->want_id, "%s", s->lv[i].id);
            return dump(json_pack("{s:s,s:s,s:s}", "tenant", "soak", "side",
                                  s->lv[i].demand ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT", "id",
                                  s->lv[i].id));
        }
        snprintf(c->want_id, sizeof c->want_id, "%s", a->id);
        return dump(json_pack("{s:s,s:s}", "side", a->demand ? "SIDE_DEMAND" : "SIDE_ACHIEVEMENT",
                              "id", a->id));
    }
    case K_PAIR: {
        json_t *smes = json_array(), *holders = json_array();
        size_t d0 = rnd_below(s, s->n_dem - 12), a0 = rnd_below(s, s->n_ach - 8);
        for (size_t i = 0; i < 12; i++)
            json_array_append_new(smes, json_string(s->recs[s->dem[d0 + i]].id));
        for (size_t i = 0; i < 8; i++)
            json_array_append_new(holders, json_string(s->recs[s->ach[a0 + i]].id));
        char ev[32];
        snprintf(ev, sizeof ev, "soak-event-%d", (int)rnd_below(s, EVENT_IDS));
        return dump(json_pack("{s:s,s:{s:o},s:{s:o},s:i,s:i}", "eventId", ev, "smes", "ids", smes,
                              "holders", "ids", holders, "slots", 3, "tables", 4));
    }
    case K_STATS:
        return xstrdup("{\"tenant\":\"public\"}");
    default:
        c->bad = (int)rnd_below(s, N_BAD);
        return xstrdup(bad_reqs[c->bad].body);
    }
}

static void note_error(soak *s, const call *c, int status, const char *why, struct evbuffer *body)
{
    s->st->errors[c->kind]++;
    if (s->n_errlog >= 5) return;
    char snippet[160] = "";
    if (body) {
        size_t n = evbuffer_get_length(body);
        if (n > sizeof snippet - 1) n = sizeof snippet - 1;
        evbuffer_copyout(body, snippet, n);
        snippet[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (snippet[i] == '\n') snippet[i] = ' ';
    }
    snprintf(s->errlog[s->n_errlog++], sizeof s->errlog[0], "%s: HTTP %d: %s %s",
             kind_names[c->kind], status, why, snippet);
}

static bool body_has(struct evbuffer *b, const char *needle)
{
    return evbuffer_search(b, needle, strlen(needle), NULL).pos >= 0;
}

static void send_one(soak *s, conn *cn, int64_t t_due);

static void on_done(struct evhttp_request *req, void *arg)
{
    call *c = arg;
    soak *s = c->s;
    int64_t t = now_us();
    int status = req ? evhttp_request_get_response_code(req) : 0;
    struct evbuffer *body = req ? evhttp_request_get_input_buffer(req) : NULL;
    s->in_flight--;
    c->cn->outstanding--;
    if (t <= s->t_end_us) s->answered_in_time++;
    bool ok = false;
    if (c->kind == K_BAD) {
        char code[64];
        snprintf(code, sizeof code, "\"code\":\"%s\"", bad_reqs[c->bad].code);
        ok = status == bad_reqs[c->bad].status && body && body_has(body, code);
        if (!ok) note_error(s, c, status, "a bad request did not get its Twirp error", body);
    } else if (status != 200 || !body || evbuffer_get_length(body) == 0) {
        note_error(s, c, status, status ? "not 200" : "no answer (connection failed or timed out)",
                   body);
    } else if (c->kind <= K_TEXT_COLD && !body_has(body, "\"matches\":")) {
        note_error(s, c, status, "no matches array", body);
    } else if (c->kind == K_DELETE && !body_has(body, "\"deleted\":1")) {
        note_error(s, c, status, "the delete of a live record found nothing", body);
    } else if (c->kind == K_GET) {
        char want[64];
        snprintf(want, sizeof want, "\"id\":\"%s\"", c->want_id);
        if (body_has(body, want))
            ok = true;
        else
            note_error(s, c, status, "GetRecord answered another record", body);
    } else {
        ok = true;
    }
    if (ok) s->st->ok[c->kind]++;
    int64_t l = t - c->t_due_us;
    lat_add(&s->st->lat[c->kind], (uint32_t)(l < 0 ? 0 : l > UINT32_MAX ? UINT32_MAX : l));
    if (c->live_ix >= 0) {
        /* find the record again: removals move entries */
        int i = -1;
        for (size_t j = 0; j < s->n_live; j++)
            if (!strcmp(s->lv[j].id, c->want_id)) i = (int)j;
        if (i >= 0) {
            s->lv[i].busy--;
            if ((c->kind == K_DELETE && ok) || (c->kind == K_UPSERT_NEW && !ok)) live_remove(s, i);
        }
    }
    conn *cn = c->cn;
    free(c);
    if (!s->open && !s->stopping) send_one(s, cn, now_us());
    if (s->stopping && s->in_flight == 0) event_base_loopbreak(s->base);
}

static void send_one(soak *s, conn *cn, int64_t t_due)
{
    call *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->s = s;
    c->cn = cn;
    c->kind = pick_kind(s);
    c->live_ix = -1;
    c->t_due_us = t_due;
    char *body = make_body(s, c);
    const char *method = c->kind == K_BAD ? bad_reqs[c->bad].method : method_of[c->kind];
    const char *ctype = c->kind == K_BAD ? bad_reqs[c->bad].ctype : "application/json";
    char path[128];
    snprintf(path, sizeof path, "/twirp/dovetail.v1.Matchmaker/%s", method);
    struct evhttp_request *req = evhttp_request_new(on_done, c);
    if (!req) die("out of memory");
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    evhttp_add_header(h, "Content-Type", ctype);
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    free(body);
    s->st->sent[c->kind]++;
    s->in_flight++;
    cn->outstanding++;
    if (evhttp_make_request(cn->evcon, req, EVHTTP_REQ_POST, path) != 0) {
        /* libevent freed req and will not call back */
        s->in_flight--;
        cn->outstanding--;
        note_error(s, c, 0, "the request could not be sent", NULL);
        free(c);
    }
}

static void sample_rss(soak *s, int64_t t)
{
    if (t < s->t_next_rss_us) return;
    s->t_next_rss_us = t + 1000000;
    long kb = s->pid ? rss_kb(s->pid) : -1;
    if (kb > s->rss_peak_kb) s->rss_peak_kb = kb;
    if (!s->warm_done && t >= s->t_warm_us) {
        s->rss_warm_kb = kb;
        s->warm_done = true;
    }
    if (t >= s->t_next_progress_us) {
        double secs = (double)s->progress_every_us / 1e6;
        printf("  %5.0f s: %7.1f answers/s, %6llu in flight, VmRSS %.1f MiB\n",
               (double)(t - s->t0_us) / 1e6,
               (double)(s->answered_in_time - s->progress_answered) / secs,
               (unsigned long long)s->in_flight, kb / 1024.0);
        fflush(stdout);
        s->progress_answered = s->answered_in_time;
        s->t_next_progress_us += s->progress_every_us;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    soak *s = arg;
    int64_t t = now_us();
    if (s->open) sample_rss(s, t);
    if (t >= s->t_end_us) {
        s->stopping = true;
        event_del(s->tick);
        if (s->in_flight == 0) event_base_loopbreak(s->base);
        return;
    }
    if (!s->open) return;
    uint64_t due = (uint64_t)((double)(t - s->t0_us) * s->rate / 1e6);
    while (s->due_sent < due) {
        conn *best = &s->conns[0];
        for (int i = 1; i < s->n_conns; i++)
            if (s->conns[i].outstanding < best->outstanding) best = &s->conns[i];
        int64_t t_due = s->t0_us + (int64_t)((double)s->due_sent * 1e6 / s->rate);
        s->due_sent++;
        send_one(s, best, t_due);
    }
}

/* Runs one phase: closed loop (rate <= 0, every connection keeps one request in flight) or open
 * loop at `rate` per second, for `secs` seconds, plus the time the last answers take. */
static void run_phase(soak *s, stats *st, double rate, double secs)
{
    memset(st, 0, sizeof *st);
    s->st = st;
    s->open = rate > 0;
    s->rate = rate;
    s->stopping = false;
    s->due_sent = 0;
    s->answered_in_time = 0;
    s->t0_us = now_us();
    s->t_end_us = s->t0_us + (int64_t)(secs * 1e6);
    struct timeval tv = {0, 1000};
    event_add(s->tick, &tv);
    if (!s->open)
        for (int i = 0; i < s->n_conns; i++)
            send_one(s, &s->conns[i], now_us());
    event_base_dispatch(s->base);
}

static uint64_t sum(const uint64_t *v, int from, int to)
{
    uint64_t t = 0;
    for (int i = from; i < to; i++)
        t += v[i];
    return t;
}

static void print_table(stats *st, double secs)
{
    printf("%-20s %9s %9s %7s %9s %9s %9s\n", "kind", "sent", "ok", "errors", "p50 ms", "p99 ms",
           "p999 ms");
    lat all = {0};
    for (int k = 0; k < K_COUNT; k++) {
        lat *l = &st->lat[k];
        qsort(l->us, l->n, sizeof *l->us, cmp_u32);
        printf("%-20s %9llu %9llu %7llu %9.2f %9.2f %9.2f\n", kind_names[k],
               (unsigned long long)st->sent[k], (unsigned long long)st->ok[k],
               (unsigned long long)st->errors[k], quantile_ms(l->us, l->n, 0.50),
               quantile_ms(l->us, l->n, 0.99), quantile_ms(l->us, l->n, 0.999));
        if (k != K_BAD)
            for (size_t i = 0; i < l->n; i++)
                lat_add(&all, l->us[i]);
    }
    qsort(all.us, all.n, sizeof *all.us, cmp_u32);
    printf("%-20s %9llu %9llu %7llu %9.2f %9.2f %9.2f\n", "all but bad",
           (unsigned long long)sum(st->sent, 0, K_BAD), (unsigned long long)sum(st->ok, 0, K_BAD),
           (unsigned long long)sum(st->errors, 0, K_BAD), quantile_ms(all.us, all.n, 0.50),
           quantile_ms(all.us, all.n, 0.99), quantile_ms(all.us, all.n, 0.999));
    printf("answered: %.1f req/s over %.0f s\n", (double)sum(st->ok, 0, K_COUNT) / secs, secs);
    free(all.us);
}

static void free_stats(stats *st)
{
    for (int k = 0; k < K_COUNT; k++)
        free(st->lat[k].us);
}

static double arg_num(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "soak: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char *end;
    double v = strtod(argv[++*i], &end);
    if (*end || !(v >= 0)) {
        fprintf(stderr, "soak: %s: expected a number >= 0, got '%s'\n", argv[*i - 1], argv[*i]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    soak s;
    memset(&s, 0, sizeof s);
    const char *demo = NULL;
    double measure = 20, load = 0.8, rate = 0, duration = 600, warmup = 60, max_growth = 10;
    int connections = 16, open_connections = 0;
    uint64_t seed = 20250601;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--port"))
            s.port = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--pid"))
            s.pid = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--demo") && i + 1 < argc)
            demo = argv[++i];
        else if (!strcmp(a, "--measure"))
            measure = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--load"))
            load = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--rate"))
            rate = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--duration"))
            duration = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--warmup"))
            warmup = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--connections"))
            connections = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--open-connections"))
            open_connections = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--max-growth"))
            max_growth = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--seed"))
            seed = (uint64_t)arg_num(argc, argv, &i);
        else {
            fprintf(stderr,
                    "soak: unknown argument '%s' (see the comment at the top of bench/soak.c)\n",
                    a);
            return 2;
        }
    }
    if (s.port < 1 || s.port > 65535 || !demo) {
        fprintf(
            stderr,
            "usage: soak --port PORT --demo DIR [--pid PID] [--measure S] [--load F] [--rate R] "
            "[--duration S] [--warmup S] [--connections N] [--max-growth PCT] [--seed N]\n");
        return 2;
    }
    if (!open_connections) open_connections = connections * 4;
    if (connections < 1 || connections > 1024 || open_connections > 4096 || duration < 1 ||
        (rate <= 0 && (measure < 1 || load <= 0))) {
        fprintf(stderr, "soak: --connections must be 1..1024, --open-connections up to 4096, "
                        "--duration >= 1, and "
                        "without --rate --measure >= 1 and --load > 0\n");
        return 2;
    }
    int n_alloc = connections > open_connections ? connections : open_connections;
    if (warmup > duration / 4) warmup = duration / 4;
    s.rng = seed;
    load_demo(&s, demo);
    s.base = event_base_new();
    if (!s.base) die("cannot create the event loop");
    s.tick = event_new(s.base, -1, EV_PERSIST, on_tick, &s);
    s.conns = calloc((size_t)n_alloc, sizeof *s.conns);
    if (!s.tick || !s.conns) die("out of memory");
    for (int i = 0; i < n_alloc; i++) {
        s.conns[i].evcon =
            evhttp_connection_base_new(s.base, NULL, "127.0.0.1", (unsigned short)s.port);
        if (!s.conns[i].evcon) die("cannot create an HTTP connection");
        evhttp_connection_set_timeout(s.conns[i].evcon, 30);
    }

    stats st;
    bool fail = false;
    if (rate <= 0) {
        s.n_conns = connections;
        run_phase(&s, &st, 0, measure);
        double secs = (double)(now_us() - s.t0_us) / 1e6;
        double max_rate = (double)sum(st.ok, 0, K_COUNT) / secs;
        printf("== closed loop, %d connections, %.0f s: the sustainable rate of the mix\n",
               connections, measure);
        print_table(&st, secs);
        if (sum(st.errors, 0, K_COUNT)) fail = true;
        free_stats(&st);
        rate = max_rate * load;
        printf("max_rate=%.1f\n\n", max_rate);
    }
    s.t_warm_us = now_us() + (int64_t)(warmup * 1e6);
    s.t_next_rss_us = 0;
    s.progress_every_us = (int64_t)(duration >= 300  ? 60e6
                                    : duration >= 40 ? 10e6
                                                     : 1e6 * ceil(duration / 4));
    s.t_next_progress_us = now_us() + s.progress_every_us;
    printf("== open loop at %.1f req/s for %.0f s (%d connections)\n", rate, duration,
           open_connections);
    s.rss_peak_kb = 0;
    int64_t t_start = now_us();
    s.n_conns = open_connections;
    run_phase(&s, &st, rate, duration);
    double secs = (double)(now_us() - t_start) / 1e6;
    long rss_end = s.pid ? rss_kb(s.pid) : -1;
    print_table(&st, secs);
    uint64_t errors = sum(st.errors, 0, K_COUNT);
    double kept = (double)s.answered_in_time / (rate * duration);
    printf("bad requests: %llu sent, %llu answered with their Twirp error, %llu otherwise\n",
           (unsigned long long)st.sent[K_BAD], (unsigned long long)st.ok[K_BAD],
           (unsigned long long)st.errors[K_BAD]);
    printf("errors (other than the deliberate bad requests answered as expected): %llu\n",
           (unsigned long long)errors);
    for (int i = 0; i < s.n_errlog; i++)
        printf("  first errors: %s\n", s.errlog[i]);
    printf("open loop kept up: %.1f%% of the requests due were answered within the %.0f s (target "
           ">= 95%%)\n",
           100.0 * kept, duration);
    if (errors) fail = true;
    if (kept < 0.95) fail = true;
    if (s.pid) {
        double growth = s.rss_warm_kb > 0
                            ? 100.0 * (double)(rss_end - s.rss_warm_kb) / (double)s.rss_warm_kb
                            : NAN;
        printf("daemon VmRSS: %.1f MiB after %.0f s of warm-up, %.1f MiB at the end (peak %.1f "
               "MiB): %+.1f%% "
               "(target < %.0f%%)\n",
               s.rss_warm_kb / 1024.0, warmup, rss_end / 1024.0, s.rss_peak_kb / 1024.0, growth,
               max_growth);
        if (!(growth < max_growth)) fail = true;
    }
    printf("result: %s\n", fail ? "FAIL" : "PASS");
    free_stats(&st);
    for (int i = 0; i < n_alloc; i++)
        evhttp_connection_free(s.conns[i].evcon);
    free(s.conns);
    event_free(s.tick);
    event_base_free(s.base);
    for (size_t i = 0; i < s.n_recs; i++) {
        free(s.recs[i].id);
        free(s.recs[i].title);
        free(s.recs[i].text);
    }
    free(s.recs);
    free(s.dem);
    free(s.ach);
    return fail ? 1 : 0;
}
