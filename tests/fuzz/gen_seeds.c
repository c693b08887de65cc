/* gen_seeds.c - writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).
 *
 *     gen_seeds OUT_DIR DEMO_DIR DATA_DIR
 *
 * DEMO_DIR holds a small demo data set (scripts/gen_demo.py: achievements.jsonl, demands.jsonl),
 * DATA_DIR the loader test files (tests/data). Seeds are real-looking inputs a few KB each, made
 * with the project's own writers wherever there is one: JSON requests and responses by hand,
 * their protobuf form by dt_pbjson_decode + protobuf_c_message_pack, HTTP requests around both,
 * CSV and JSON Lines rows from the demo records and the loader test files, tokenizer texts from
 * the demo records, journal files by dt_journal_append, snapshot files by dt_snapshot_*, encoded
 * records by dt_codec_encode_record, outcome events by dt_codec_put_outcome. Run by `tests/fuzz/run.sh --seeds`; the output is committed.
 * The same inputs give the same files (names are numbered, not hashed), except for the creation
 * time in the snapshot headers.
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "durable.h"
#include "dovetail/v1/matchmaker.pb-c.h"
#include "fuzz_twirp.h"
#include "journal.h"
#include "load.h"
#include "pbjson.h"
#include "snapshot.h"

static const char *out_dir;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("gen_seeds: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void mkdir_p(const char *p)
{
    char b[1024];
    snprintf(b, sizeof b, "%s", p);
    for (char *s = b + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(b, 0755);
            *s = '/';
        }
    if (mkdir(b, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", b, strerror(errno));
}

/* Writes OUT/target/name = prefix byte (when prefix >= 0) + p[0..n). */
static void seed(const char *target, const char *name, int prefix, const void *p, size_t n)
{
    char d[1024], path[1200];
    snprintf(d, sizeof d, "%s/%s", out_dir, target);
    mkdir_p(d);
    snprintf(path, sizeof path, "%s/%s", d, name);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s", path);
    if (prefix >= 0) fputc(prefix, f);
    if (n && fwrite(p, 1, n, f) != n) die("cannot write %s", path);
    if (fclose(f) != 0) die("cannot close %s", path);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The first lines of a file, at most max bytes (whole lines only, at least one). */
static size_t head_lines(const char *s, size_t n, size_t max)
{
    size_t end = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') {
            if (i + 1 > max && end) break;
            end = i + 1;
        }
    return end ? end : n;
}

/* ---------------------------------------------------------------- records */

typedef struct {
    dt_record *v;
    size_t n, cap;
} rec_list;

static int keep(void *ud, dt_record *rec, size_t line, dt_err *err)
{
    (void)line, (void)err;
    rec_list *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) die("out of memory");
    }
    l->v[l->n++] = *rec;
    dt_record_init(rec);
    return 0;
}

static void load(const char *path, rec_list *l)
{
    dt_load_opts o = DT_LOAD_OPTS_INIT;
    dt_err err = DT_ERR_INIT;
    if (dt_load_file(path, &o, keep, l, NULL, &err) != 0) die("%s: %s: %s", path, err.field, err.msg);
}

/* ---------------------------------------------------------------- Twirp */

/* One JSON body per message type of fuzz_twirp.h, in its order, then a second set. */
static const char *const twirp_json[][2] = {
    {"{\"tenant\":\"suzhou-park\",\"records\":[{\"id\":\"dem-00001\",\"side\":\"SIDE_DEMAND\",\"title\":\"锂电池回收工艺\","
     "\"text\":\"需要一种低成本的锂电池回收工艺, recovery of Li and Co\",\"keywords\":[\"回收\",\"湿法冶金\"],"
     "\"org\":\"某某新能源有限公司\",\"field\":\"C.42.1\",\"region\":\"CN.32.05\",\"trl\":6,"
     "\"modes\":[\"MODE_TRANSFER\",\"MODE_LICENSE\"],\"priceMin\":100000,\"priceMax\":500000,\"tags\":[\"srdi\"],"
     "\"status\":\"STATUS_OPEN\",\"updatedAt\":\"1714521600\",\"embedding\":[0.5,-0.25,1]}]}",
     "{\"records\":[{\"id\":\"a1\",\"side\":2,\"title\":\"Solid-state electrolyte\",\"price_min\":0,"
     "\"updated_at\":1700000000,\"modes\":[4]},{\"id\":\"a2\",\"side\":\"SIDE_ACHIEVEMENT\",\"embedding\":[\"NaN\",1e-7]}]}"},
    {"{\"tenant\":\"public\",\"side\":\"SIDE_ACHIEVEMENT\",\"ids\":[\"ach-00001\",\"ach-00002\"]}",
     "{\"side\":1,\"ids\":[\"d1\",\"\"]}"},
    {"{\"tenant\":\"public\",\"side\":\"SIDE_DEMAND\",\"id\":\"dem-00003\"}", "{\"side\":\"SIDE_ACHIEVEMENT\",\"id\":\"x\"}"},
    {"{\"tenant\":\"public\",\"record\":{\"side\":\"SIDE_DEMAND\",\"id\":\"dem-00001\"},\"targetSide\":\"SIDE_ACHIEVEMENT\","
     "\"filter\":{\"fieldPrefixes\":[\"C.38\"],\"regions\":[\"CN.32\"],\"clusters\":[\"yangtze-delta\"],\"trlMin\":4,"
     "\"trlMax\":9,\"modes\":[\"MODE_LICENSE\"],\"priceMax\":2000000,\"tags\":[\"first_set\"],\"includeClosed\":false,"
     "\"excludeIds\":[\"ach-00009\"]},\"k\":10,\"offset\":0,\"explain\":true,"
     "\"weights\":{\"dense\":0.5,\"lexical\":0.3,\"structured\":0.2}}",
     "{\"text\":\"固态电池 solid-state battery electrolyte\",\"target_side\":\"SIDE_ACHIEVEMENT\",\"k\":\"5\"}"},
    {"{\"tenant\":\"suzhou-park\",\"groups\":true,\"fieldDepth\":2,\"regionDepth\":1}", "{\"field_depth\":0}"},
    {"{\"tenant\":\"public\",\"eventId\":\"deep-dive-2025-06\",\"smes\":{\"ids\":[\"dem-00001\",\"dem-00002\"]},"
     "\"holders\":{\"filter\":{\"regions\":[\"CN.32\"],\"trlMin\":5}},\"slots\":6,\"tables\":10,\"maxMeetings\":3,"
     "\"minMeetings\":1,\"smeLimits\":[{\"id\":\"dem-00001\",\"maxMeetings\":2}],"
     "\"holderLimits\":[{\"id\":\"ach-00004\",\"minMeetings\":1}],\"minScore\":0.2,"
     "\"mustMeet\":[{\"smeId\":\"dem-00001\",\"holderId\":\"ach-00004\"}],"
     "\"neverMeet\":[{\"smeId\":\"dem-00002\",\"holderId\":\"ach-00004\"}],"
     "\"requests\":[{\"smeId\":\"dem-00002\",\"holderId\":\"ach-00007\",\"requestedBy\":\"REQUESTER_BOTH\"}],"
     "\"metBefore\":[],\"locked\":[{\"smeId\":\"dem-00001\",\"holderId\":\"ach-00004\",\"slot\":1,\"table\":1}],"
     "\"candidates\":20,\"weights\":{\"dense\":1},\"boostOne\":0.1,\"boostBoth\":0.25,\"decayGamma\":0.8}",
     "{\"event_id\":\"e1\",\"smes\":{\"ids\":[\"d1\"]},\"holders\":{\"ids\":[\"a1\"]},\"slots\":1,\"tables\":1}"},
    {"{\"tenant\":\"suzhou-park\",\"outcomes\":[{\"demandId\":\"dem-00001\",\"achievementId\":\"ach-00004\","
     "\"kind\":\"OUTCOME_KIND_DECLINED\",\"reason\":\"DECLINE_REASON_PRICE\",\"at\":\"1714521600\"},"
     "{\"demandId\":\"dem-00001\",\"achievementId\":\"ach-00007\",\"kind\":\"OUTCOME_KIND_DEAL_SIGNED\","
     "\"amount\":1250000.5}]}",
     "{\"outcomes\":[{\"demand_id\":\"d1\",\"achievement_id\":\"a1\",\"kind\":2,\"amount\":\"NaN\"}]}"},
    {"{\"tenant\":\"suzhou-park\",\"jobId\":\"nightly-2026-11-23\",\"k\":10,\"cap\":30,\"candidates\":60,"
     "\"sides\":[\"SIDE_DEMAND\",\"SIDE_ACHIEVEMENT\"],\"relearn\":false,\"weights\":{\"dense\":0.7,\"lexical\":0.3}}",
     "{\"job_id\":\"j.1\",\"sides\":[1],\"relearn\":true}"},
    {"{\"tenant\":\"suzhou-park\",\"id\":\"nightly-2026-11-23\"}", "{\"id\":\"\"}"},
    {"{\"tenant\":\"suzhou-park\",\"id\":\"nightly-2026-11-23\"}", "{}"},
    {"{\"tenant\":\"suzhou-park\"}", "{}"},
    {"{\"upserted\":2,\"indexEpoch\":\"7\"}", "{}"},
    {"{\"deleted\":1,\"notFound\":[\"ach-00002\"],\"indexEpoch\":\"8\"}", "{\"not_found\":[]}"},
    {"{\"record\":{\"tenant\":\"public\",\"id\":\"dem-00003\",\"side\":\"SIDE_DEMAND\",\"title\":\"LED显示屏降本增效\","
     "\"trl\":5,\"priceMin\":0,\"status\":\"STATUS_CLOSED\"}}",
     "{}"},
    {"{\"matches\":[{\"id\":\"ach-00004\",\"side\":\"SIDE_ACHIEVEMENT\",\"score\":0.8125,\"title\":\"高镍正极材料\","
     "\"org\":\"清华大学\",\"field\":\"C.38.4\",\"region\":\"CN.11\",\"trl\":6,\"modes\":[\"MODE_JOINT_RD\"],"
     "\"priceMin\":300000,\"explanation\":{\"dense\":0.61,\"lexical\":0.12,\"structured\":0.0825,"
     "\"structuredParts\":[{\"name\":\"field\",\"value\":0.05}],\"terms\":[{\"term\":\"电池\",\"weight\":2.5}]}}],"
     "\"totalCandidates\":412,\"cached\":true,\"indexEpoch\":\"12\"}",
     "{\"matches\":[{\"score\":-0.0,\"price_max\":1e21}],\"total_candidates\":0}"},
    {"{\"tenants\":[{\"tenant\":\"public\",\"demands\":3000,\"achievements\":4000,\"open\":6500,\"closed\":500,"
     "\"indexEpoch\":\"3\",\"dimension\":256,\"demandsOpen\":2900,\"achievementsOpen\":3600,"
     "\"servedDemands\":\"120000\",\"servedAchievements\":\"45000\",\"events\":{\"viewed\":\"900\","
     "\"contacted\":\"120\",\"declined\":\"40\",\"meetingHeld\":\"30\",\"negotiating\":\"12\","
     "\"dealSigned\":\"5\"},\"declines\":{\"tooEarlyStage\":\"10\",\"unclearBenefit\":\"8\",\"price\":\"20\","
     "\"other\":\"2\"},\"contactedPairs\":\"100\",\"dealPairs\":\"5\",\"conversion\":0.05,"
     "\"dealAmount\":6250000,\"groups\":[{\"field\":\"C\",\"region\":\"CN.32\",\"demands\":100,"
     "\"servedDemands\":\"7\",\"events\":{\"viewed\":\"3\"},\"conversion\":0}]}]}",
     "{\"tenants\":[]}"},
    {"{\"eventId\":\"deep-dive-2025-06\",\"meetings\":[{\"slot\":1,\"table\":2,\"sme\":{\"id\":\"dem-00001\","
     "\"title\":\"锂电池回收\",\"org\":\"某某新能源\"},\"holder\":{\"id\":\"ach-00004\"},\"score\":0.7,\"value\":0.95,"
     "\"locked\":true,\"mustMeet\":true,\"requestedBy\":\"REQUESTER_SME\",\"summary\":\"shared: 电池, 回收\"}],"
     "\"agendas\":[{\"side\":\"SIDE_DEMAND\",\"participant\":{\"id\":\"dem-00001\"},\"meetings\":1,\"maxMeetings\":3,"
     "\"items\":[{\"slot\":1,\"table\":2,\"partner\":{\"id\":\"ach-00004\"},\"score\":0.7}],"
     "\"reasons\":[\"SHORTFALL_REASON_NO_CANDIDATES\"]}],\"shortfalls\":[{\"side\":\"SIDE_ACHIEVEMENT\",\"id\":\"ach-00009\","
     "\"reasons\":[\"SHORTFALL_REASON_TABLES\"]}],\"unmetGuarantees\":[],\"unmetMustMeet\":[{\"smeId\":\"d\","
     "\"holderId\":\"a\",\"reasons\":[10]}],\"totalScore\":0.7,\"totalValue\":0.95,\"smes\":2,\"holders\":5,"
     "\"candidates\":40,\"mustMet\":1,\"indexEpoch\":\"12\",\"htmlUrl\":\"/events/public/deep-dive-2025-06.html\"}",
     "{\"event_id\":\"e\"}"},
    {"{\"recorded\":2,\"tenantOutcomes\":\"42\",\"indexEpoch\":\"19\"}", "{}"},
    {"{\"job\":{\"id\":\"j1\",\"tenant\":\"t\",\"state\":\"JOB_STATE_RANKING\",\"done\":500,\"total\":2000,\"rate\":812.5,\"etaSeconds\":1.8,\"startedAt\":\"1763856000\",\"sides\":[\"SIDE_DEMAND\"],\"relearn\":true}}", "{\"job\":{}}"},
    {"{\"job\":{\"id\":\"j1\",\"tenant\":\"t\",\"state\":\"JOB_STATE_RANKING\",\"done\":500,\"total\":2000,\"rate\":812.5,\"etaSeconds\":1.8,\"startedAt\":\"1763856000\",\"sides\":[\"SIDE_DEMAND\"],\"relearn\":true}}", "{\"job\":{}}"},
    {"{\"job\":{\"id\":\"j1\",\"tenant\":\"t\",\"state\":\"JOB_STATE_RANKING\",\"done\":500,\"total\":2000,\"rate\":812.5,\"etaSeconds\":1.8,\"startedAt\":\"1763856000\",\"sides\":[\"SIDE_DEMAND\"],\"relearn\":true}}", "{\"job\":{}}"},
    {"{\"jobs\":[{\"id\":\"j1\",\"tenant\":\"t\",\"state\":\"JOB_STATE_RANKING\",\"done\":500,\"total\":2000,\"rate\":812.5,\"etaSeconds\":1.8,\"startedAt\":\"1763856000\",\"sides\":[\"SIDE_DEMAND\"],\"relearn\":true},{\"state\":8,\"error\":\"redis: connection refused\"}]}", "{}"},
};

static ProtobufCMessage *decode_json(size_t type, const char *json)
{
    ProtobufCMessage *m = NULL;
    dt_err err = DT_ERR_INIT;
    if (dt_pbjson_decode(fz_twirp_types[type], json, strlen(json), 0, &m, &err) != 0)
        die("sample %zu: %s: %s", type, err.field, err.msg);
    return m;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n + 1);
    if (!b) die("out of memory");
    protobuf_c_message_pack(m, b);
    return b;
}

static void http_seed(size_t k, const char *method, const char *path, const char *ctype, const void *body, size_t n,
                      const char *extra)
{
    char *req = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&req, &len);
    if (!f) die("out of memory");
    fprintf(f, "%s %s HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: twirp-client/1.0\r\n", method, path);
    if (ctype) fprintf(f, "Content-Type: %s\r\n", ctype);
    if (body) fprintf(f, "Content-Length: %zu\r\n", n);
    if (extra) fputs(extra, f);
    fputs("\r\n", f);
    if (body) fwrite(body, 1, n, f);
    fclose(f);
    char name[32];
    snprintf(name, sizeof name, "seed-%02zu", k);
    seed("http", name, -1, req, len);
    free(req);
}

static void twirp_seeds(void)
{
    const char *methods[FZ_TWIRP_NREQUESTS] = {"UpsertRecords", "DeleteRecords", "GetRecord", "Match",
                                               "Stats",         "PairEvent",     "RecordOutcome", "StartRerank",
                                               "GetJob",        "CancelJob",     "ListJobs"};
    size_t hk = 0;
    for (size_t t = 0; t < FZ_TWIRP_NTYPES; t++)
        for (int v = 0; v < 2; v++) {
            const char *json = twirp_json[t][v];
            ProtobufCMessage *m = decode_json(t, json);
            size_t n;
            uint8_t *b = pack(m, &n);
            char name[32];
            snprintf(name, sizeof name, "seed-%02zu-%d", t, v);
            int flags = (int)(t & 0x0f) | (int)((t & 0x10) << 3) | (v ? 0x30 : 0);
            seed("twirp_json", name, flags, json, strlen(json));
            seed("twirp_pb", name, flags, b, n);
            if (t < FZ_TWIRP_NREQUESTS) {
                char path[128];
                snprintf(path, sizeof path, "/twirp/dovetail.v1.Matchmaker/%s", methods[t]);
                http_seed(hk++, "POST", path, v ? "application/json; charset=utf-8" : "application/json", json,
                          strlen(json), NULL);
                http_seed(hk++, "POST", path, "application/protobuf", b, n, v ? "Connection: close\r\n" : NULL);
            }
            free(b);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    http_seed(hk++, "GET", "/healthz", NULL, NULL, 0, NULL);
    http_seed(hk++, "GET", "/metrics", NULL, NULL, 0, "Accept: text/plain\r\n");
    http_seed(hk++, "GET", "/events/suzhou-park/deep-dive-2025-06.html", NULL, NULL, 0, NULL);
    http_seed(hk++, "GET", "/events/%E8%8B%8F%E5%B7%9E/e1.html?x=1", NULL, NULL, 0, NULL);
    http_seed(hk++, "GET", "/twirp/dovetail.v1.Matchmaker/Match", "application/json", NULL, 0, NULL);
    http_seed(hk++, "POST", "/twirp/dovetail.v1.Matchmaker/Nope", "application/json", "{}", 2, NULL);
    http_seed(hk++, "POST", "/twirp/other.Service/Match", "application/json", "{}", 2, NULL);
    http_seed(hk++, "POST", "/twirp/dovetail.v1.Matchmaker/Stats", "text/plain", "{}", 2, NULL);
    http_seed(hk++, "POST", "/twirp/dovetail.v1.Matchmaker/Stats", " Application/JSON ;q=1", "{\"tenant\":1}", 12, NULL);
    http_seed(hk++, "POST", "/twirp/dovetail.v1.Matchmaker/Match", "application/protobuf", "\x1a\x03\xe7\x94\xb5", 5,
              NULL);
    /* two pipelined requests, the second with a chunked body */
    const char pipe[] = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                        "POST /twirp/dovetail.v1.Matchmaker/GetRecord HTTP/1.1\r\nHost: a\r\n"
                        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "10\r\n{\"side\":1,\"id\":\"\r\n4\r\nx1\"}\r\n0\r\n\r\n";
    char name[32];
    snprintf(name, sizeof name, "seed-%02zu", hk++);
    seed("http", name, -1, pipe, sizeof pipe - 1);
    const char old[] = "POST /twirp/dovetail.v1.Matchmaker/Stats HTTP/1.0\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2\r\n\r\n{}";
    snprintf(name, sizeof name, "seed-%02zu", hk++);
    seed("http", name, -1, old, sizeof old - 1);
}

/* ---------------------------------------------------------------- CSV, JSON Lines, text */

static void csv_cell(FILE *f, const char *s)
{
    if (!s) return;
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

static void csv_list(FILE *f, char *const *v, size_t n)
{
    char *joined = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&joined, &len);
    for (size_t i = 0; i < n; i++) fprintf(g, "%s%s", i ? ";" : "", v[i]);
    fclose(g);
    csv_cell(f, joined);
    free(joined);
}

static void csv_row(FILE *f, const dt_record *r)
{
    csv_cell(f, r->tenant);
    fputc(',', f);
    csv_cell(f, r->id);
    fprintf(f, ",%s,", dt_side_name(r->side));
    csv_cell(f, r->title);
    fputc(',', f);
    csv_cell(f, r->text);
    fputc(',', f);
    csv_list(f, r->keywords, r->n_keywords);
    fputc(',', f);
    csv_cell(f, r->org);
    fputc(',', f);
    csv_cell(f, r->field);
    fputc(',', f);
    csv_cell(f, r->region);
    fputc(',', f);
    if (r->trl) fprintf(f, "%d", r->trl);
    fputc(',', f);
    for (uint32_t b = 1, k = 0; b < (1u << DT_MODE_COUNT); b <<= 1)
        if (r->modes & b) fprintf(f, "%s%s", k++ ? "|" : "", dt_mode_name(b));
    fputc(',', f);
    if (r->price_min == r->price_min) fprintf(f, "%.17g", r->price_min);
    fputc(',', f);
    if (r->price_max == r->price_max) fprintf(f, "%.17g", r->price_max);
    fputc(',', f);
    csv_list(f, r->tags, r->n_tags);
    fprintf(f, ",%s,", dt_status_name(r->status));
    if (r->updated_at) fprintf(f, "%" PRId64, r->updated_at);
    fputc(',', f);
    if (r->dim) {
        fputs("\"[", f);
        for (size_t i = 0; i < r->dim; i++) fprintf(f, "%s%.9g", i ? ", " : "", (double)r->embedding[i]);
        fputs("]\"", f);
    }
    fputs("\r\n", f);
}

static void loader_seeds(const char *demo, const char *data, const rec_list *recs)
{
    /* the loader test files as they are */
    DIR *d = opendir(data);
    if (!d) die("cannot open %s", data);
    struct dirent *e;
    char path[1200];
    int ck = 0, jk = 0;
    char *names[64];
    size_t nn = 0;
    while ((e = readdir(d)) != NULL && nn < 64)
        if (e->d_name[0] != '.') names[nn++] = strdup(e->d_name);
    closedir(d);
    for (size_t i = 0; i < nn; i++)
        for (size_t j = i + 1; j < nn; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < nn; i++) {
        size_t len;
        snprintf(path, sizeof path, "%s/%s", data, names[i]);
        char *s = read_all(path, &len);
        size_t nl = strlen(names[i]);
        char name[64];
        if (nl > 4 && !strcmp(names[i] + nl - 4, ".csv")) {
            snprintf(name, sizeof name, "data-%d", ck++);
            seed("csv", name, -1, s, head_lines(s, len, 4096));
        } else if (nl > 6 && !strcmp(names[i] + nl - 6, ".jsonl")) {
            snprintf(name, sizeof name, "data-%d", jk++);
            seed("jsonl", name, -1, s, head_lines(s, len, 4096));
        }
        free(s);
        free(names[i]);
    }
    /* demo rows: JSON Lines as generated, CSV written from the loaded records */
    const char *files[2] = {"demands.jsonl", "achievements.jsonl"};
    for (int i = 0; i < 2; i++) {
        size_t len;
        snprintf(path, sizeof path, "%s/%s", demo, files[i]);
        char *s = read_all(path, &len);
        size_t a = head_lines(s, len, 3000);
        char name[64];
        snprintf(name, sizeof name, "demo-%d", i);
        seed("jsonl", name, -1, s, a);
        free(s);
    }
    for (int part = 0; part < 3; part++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        fputs(part == 2 ? "\xef\xbb\xbfID,Side,Title,Keywords,TRL,Modes,Price_Max,Embedding,colour\r\n"
                        : "tenant,id,side,title,text,keywords,org,field,region,trl,modes,price_min,price_max,tags,"
                          "status,updated_at,embedding\r\n",
              f);
        for (size_t i = (size_t)part * 7; i < recs->n && len < 2500; i++) {
            const dt_record *r = &recs->v[i];
            if (part < 2) {
                fflush(f);
                csv_row(f, r);
            } else {
                csv_cell(f, r->id);
                fprintf(f, ",%s,", dt_side_name(r->side));
                csv_cell(f, r->title);
                fputc(',', f);
                csv_list(f, r->keywords, r->n_keywords);
                fprintf(f, ",%d,%s,,\"0.1 0.2 0.3\",blue\r\n", r->trl, r->modes & 1 ? "transfer" : "");
            }
            fflush(f);
        }
        fclose(f);
        char name[64];
        snprintf(name, sizeof name, "demo-%d", part);
        seed("csv", name, -1, buf, len);
        free(buf);
    }
    /* tokenizer: titles and texts, with several option sets */
    for (size_t i = 0, k = 0; i < recs->n && k < 24; i += 3, k++) {
        const dt_record *r = &recs->v[i];
        const char *s = k % 2 ? r->title : r->text;
        if (!s) continue;
        size_t len = strlen(s);
        if (len > 2048) len = dt_utf8_valid_prefix(s, 2048);
        char name[64];
        snprintf(name, sizeof name, "demo-%02zu", k);
        seed("text", name, (int)(k % 16) | 0x0f * (k < 8), s, len);
    }
    const char *texts[] = {"Don't stop: it's x-ray, Li-ion 3.14 and 1.2.3; Straße ＡＢＣ１２ naïve café",
                           "石墨烯导热膜的制备方法及其在5G手机散热中的应用（第二代）",
                           "ｆｕｌｌ－ｗｉｄｔｈ　ＴＥＸＴ　and 日本語のかな、한국어 텍스트",
                           "running runs ran runner's easily fairly generously 𠀀𠀁 Ω ǅ ﬁ"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "text-%zu", i);
        seed("text", name, 0x0f ^ (int)i, texts[i], strlen(texts[i]));
    }
}

/* ---------------------------------------------------------------- durable files */

static void upsert_payload(const rec_list *recs, size_t from, size_t n, uint8_t **p, size_t *len)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        if (dt_codec_put_record(&b, &recs->v[from + i], &err) != 0) die("encode: %s", err.msg);
    if (dt_codec_buf_take(&b, p, len, &err) != 0) die("encode: %s", err.msg);
}

static void delete_payload(const char *tenant, int side, const char *const *ids, size_t n, uint8_t **p, size_t *len)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_str(&b, tenant);
    dt_codec_put_u8(&b, (uint8_t)side);
    dt_codec_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) dt_codec_put_str(&b, ids[i]);
    if (dt_codec_buf_take(&b, p, len, &err) != 0) die("encode: %s", err.msg);
}

static void basis_payload(uint8_t **p, size_t *len)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    const size_t nt = 6, dim = 3;
    dt_codec_put_str(&b, "public");
    dt_codec_put_u64(&b, 40);
    dt_codec_put_u64(&b, nt);
    dt_codec_put_u64(&b, dim);
    for (size_t i = 0; i < nt; i++) dt_codec_put_u32(&b, (uint32_t)(i * 104729u % (1u << 20)));
    for (size_t i = 0; i < nt; i++) dt_codec_put_f32(&b, 1.0f + 0.25f * (float)i);
    for (size_t i = 0; i < nt * dim; i++) dt_codec_put_f32(&b, (float)((int)(i % 5) - 2) / 3.0f);
    for (size_t i = 0; i < dim; i++) dt_codec_put_f32(&b, 10.0f / (float)(i + 1));
    if (dt_codec_buf_take(&b, p, len, &err) != 0) die("encode: %s", err.msg);
}

/* A RecordOutcome payload (or outcome section) over the first demand and achievement of recs:
 * every kind once, a decline for each reason. */
static void outcomes_payload(const rec_list *recs, uint8_t **p, size_t *len)
{
    const char *dem = NULL, *ach = NULL;
    for (size_t i = 0; i < recs->n; i++) {
        if (!dem && recs->v[i].side == DT_DEMAND) dem = recs->v[i].id;
        if (!ach && recs->v[i].side == DT_ACHIEVEMENT) ach = recs->v[i].id;
    }
    if (!dem || !ach) die("no demand or no achievement among the seed records");
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_str(&b, "public");
    dt_codec_put_u32(&b, DT_OUTCOME_KIND_COUNT + DT_OUTCOME_REASON_COUNT - 2);
    for (int k = 0; k < DT_OUTCOME_KIND_COUNT; k++) {
        dt_outcome_event ev;
        dt_outcome_event_init(&ev);
        ev.demand_id = dem;
        ev.achievement_id = ach;
        ev.kind = (dt_outcome_kind)k;
        ev.reason = k == DT_OUTCOME_DECLINED ? DT_OUTCOME_REASON_PRICE : DT_OUTCOME_REASON_NONE;
        ev.amount = k == DT_OUTCOME_DEAL_SIGNED ? 1250000.0 : ev.amount;
        ev.at = 1700000000 + k;
        if (dt_codec_put_outcome(&b, &ev, &err) != 0) die("encode: %s", err.msg);
    }
    for (int r = DT_OUTCOME_REASON_TOO_EARLY_STAGE; r < DT_OUTCOME_REASON_COUNT; r++) {
        if (r == DT_OUTCOME_REASON_PRICE) continue;
        dt_outcome_event ev;
        dt_outcome_event_init(&ev);
        ev.demand_id = dem;
        ev.achievement_id = "ach-00002";
        ev.kind = DT_OUTCOME_DECLINED;
        ev.reason = (dt_outcome_reason)r;
        if (dt_codec_put_outcome(&b, &ev, &err) != 0) die("encode: %s", err.msg);
    }
    if (dt_codec_buf_take(&b, p, len, &err) != 0) die("encode: %s", err.msg);
}

/* A served-counts section: two demands and one achievement. */
static void served_payload(uint8_t **p, size_t *len)
{
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    dt_codec_put_str(&b, "public");
    dt_codec_put_u32(&b, 3);
    const char *ids[] = {"dem-00001", "dem-00002", "ach-00001"};
    for (int i = 0; i < 3; i++) {
        dt_codec_put_u8(&b, i < 2 ? 0 : 1);
        dt_codec_put_str(&b, ids[i]);
        dt_codec_put_u64(&b, (uint64_t)(10 * i + 3));
    }
    if (dt_codec_buf_take(&b, p, len, &err) != 0) die("encode: %s", err.msg);
}

static char *tmp_dir(const char *what)
{
    char *d = malloc(256);
    snprintf(d, 256, "/tmp/dovetail-seeds-%s-%ld", what, (long)getpid());
    mkdir_p(d);
    return d;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void journal_seeds(const rec_list *recs)
{
    char *dir = tmp_dir("journal");
    dt_err err = DT_ERR_INIT;
    dt_journal *j = dt_journal_open(dir, DT_FSYNC_NO, 1, &err);
    if (!j) die("journal: %s", err.msg);
    uint8_t *p;
    size_t len;
    upsert_payload(recs, 0, 2, &p, &len);
    if (dt_journal_append(j, 1, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    const char *ids[] = {recs->v[0].id, "ach-99999"};
    delete_payload("public", recs->v[0].side, ids, 2, &p, &len);
    if (dt_journal_append(j, 2, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_codec_put_str(&b, "suzhou-park");
    if (dt_journal_append(j, 3, b.data, b.len, NULL, &err) != 0) die("append: %s", err.msg);
    dt_codec_buf_fini(&b);
    upsert_payload(recs, 5, 1, &p, &len);
    if (dt_journal_append(j, 1, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    dt_journal_close(j);

    char path[512];
    snprintf(path, sizeof path, "%s/journal.%020d.log", dir, 1);
    size_t n;
    char *file = read_all(path, &n);
    seed("journal", "seed-0", 0x00, file, n);          /* as written, replayed from seq 0 */
    seed("journal", "seed-1", 0x02 | 0x08, file, n);   /* truncating, after seq 1 */
    seed("journal", "seed-2", 0x04 | 0x41, file, n);   /* split in two files, renumbered */
    seed("journal", "seed-3", 0x02, file, n - 7);      /* a torn tail */
    seed("journal", "seed-4", 0x80 | 0x01, file, n);   /* stop on a bad payload */
    char *dup = malloc(2 * n);
    memcpy(dup, file, n);
    memcpy(dup + n, file, n);
    seed("journal", "seed-5", 0x41, dup, 2 * n);       /* renumbered and re-summed: 8 entries */
    dup[40] ^= 0x20;
    seed("journal", "seed-6", 0x00, dup, 2 * n);       /* damage followed by valid entries */
    free(dup);
    free(file);
    rm_dir(dir);

    /* records, then a RecordOutcome call, then a delete */
    j = dt_journal_open(dir, DT_FSYNC_NO, 1, &err);
    if (!j) die("journal: %s", err.msg);
    upsert_payload(recs, 0, 2, &p, &len);
    if (dt_journal_append(j, 1, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    outcomes_payload(recs, &p, &len);
    if (dt_journal_append(j, 4, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    delete_payload("public", recs->v[0].side, ids, 2, &p, &len);
    if (dt_journal_append(j, 2, p, len, NULL, &err) != 0) die("append: %s", err.msg);
    free(p);
    dt_journal_close(j);
    file = read_all(path, &n);
    seed("journal", "outcomes-0", 0x00, file, n);        /* as written */
    seed("journal", "outcomes-1", 0x80 | 0x01, file, n); /* stop on a bad payload */
    free(file);
    rm_dir(dir);
    free(dir);
}

/* A snapshot as dovetaild writes it (dt_durable_snapshot): a basis, records with their counted
 * terms and rows (DT_S_INDEXED) and the epochs. */
static void daemon_snapshot_seed(const rec_list *recs)
{
    char *dir = tmp_dir("durable");
    dt_err err = DT_ERR_INIT;
    dt_engine *e = dt_engine_new(NULL, &err);
    dt_outcome_store *os = dt_outcome_store_new(&err);
    if (!e || !os) die("engine: %s", err.msg);
    pthread_rwlock_t lock;
    pthread_rwlock_init(&lock, NULL);
    dt_durable_opts o = {dir, DT_FSYNC_NO, (size_t)1 << 40, true, NULL, NULL, NULL};
    dt_durable *d = dt_durable_open(e, os, &lock, &o, &err);
    if (!d) die("durable: %s", err.msg);
    for (size_t i = 0; i < recs->n && i < 40; i++) {
        dt_record r;
        if (dt_record_copy(&r, &recs->v[i], &err) != 0) die("copy: %s", err.msg);
        free(r.tenant);
        r.tenant = NULL;
        if (dt_engine_upsert(e, &r, &err) != 0) dt_record_free(&r); /* a demo record the engine refuses */
    }
    if (dt_engine_build(e, NULL, &err) != 0) die("build: %s", err.msg);
    if (dt_durable_snapshot(d, &err) != 0) die("snapshot: %s", err.msg);
    dt_durable_close(d, false);
    dt_outcome_store_free(os);
    dt_engine_free(e);
    pthread_rwlock_destroy(&lock);
    char path[512];
    snprintf(path, sizeof path, "%s/snapshot.%020d.dt", dir, 0);
    size_t n;
    char *file = read_all(path, &n);
    seed("snapshot", "daemon-0", 0x02 | 0x80, file, n); /* as dovetaild wrote it, read as it reads it */
    free(file);
    rm_dir(dir);
    free(dir);
}

static void snapshot_seeds(const rec_list *recs)
{
    char *dir = tmp_dir("snapshot");
    dt_err err = DT_ERR_INIT;
    dt_snapshot_writer *w = NULL;
    if (dt_snapshot_begin(dir, 2, &w, &err) != 0) die("snapshot: %s", err.msg);
    uint8_t *p;
    size_t len;
    basis_payload(&p, &len);
    if (dt_snapshot_put(w, 1, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    upsert_payload(recs, 0, 2, &p, &len);
    if (dt_snapshot_put(w, 2, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    upsert_payload(recs, 9, 1, &p, &len);
    if (dt_snapshot_put(w, 2, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    if (dt_snapshot_put(w, 9, NULL, 0, &err) != 0) die("put: %s", err.msg);
    if (dt_snapshot_commit(w, &err) != 0) die("commit: %s", err.msg);
    /* the same with the outcome store's sections, at seq 3 */
    if (dt_snapshot_begin(dir, 3, &w, &err) != 0) die("snapshot: %s", err.msg);
    upsert_payload(recs, 0, 2, &p, &len);
    if (dt_snapshot_put(w, 2, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    outcomes_payload(recs, &p, &len);
    if (dt_snapshot_put(w, 3, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    served_payload(&p, &len);
    if (dt_snapshot_put(w, 4, p, len, &err) != 0) die("put: %s", err.msg);
    free(p);
    if (dt_snapshot_commit(w, &err) != 0) die("commit: %s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/snapshot.%020d.dt", dir, 3);
    size_t no;
    char *ofile = read_all(path, &no);
    seed("snapshot", "outcomes-0", 0x02, ofile, no);               /* as written */
    seed("snapshot", "outcomes-1", 0x02 | 0x80 | 0x09, ofile, no); /* stop on a bad section */
    free(ofile);
    snprintf(path, sizeof path, "%s/snapshot.%020d.dt", dir, 2);
    size_t n;
    char *file = read_all(path, &n);
    seed("snapshot", "seed-0", 0x02, file, n);        /* as written, named after its seq */
    seed("snapshot", "seed-1", 0x02 | 0x04 | 0x40, file, n); /* with an older one and a temp copy */
    seed("snapshot", "seed-2", 0x20, file, n);        /* under another seq than its header's */
    seed("snapshot", "seed-3", 0x02 | 0x04, file, n - 3); /* truncated, the older one loads */
    seed("snapshot", "seed-4", 0x02 | 0x80 | 0x09, file, n); /* stop on a bad section */
    file[8] = 2;
    seed("snapshot", "seed-5", 0x03, file, n);        /* format version 2 */
    free(file);
    rm_dir(dir);
    free(dir);
    daemon_snapshot_seed(recs);
}

static void codec_seeds(const rec_list *recs)
{
    for (size_t i = 0, k = 0; i < recs->n && k < 16; i += 5, k++) {
        uint8_t *b;
        size_t n;
        dt_err err = DT_ERR_INIT;
        if (dt_codec_encode_record(&recs->v[i], &b, &n, &err) != 0) die("encode: %s", err.msg);
        if (n > 3000) {
            free(b);
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "seed-%02zu", k);
        seed("codec", name, -1, b, n);
        free(b);
    }
    uint8_t *p;
    size_t len;
    basis_payload(&p, &len);
    seed("codec", "basis", -1, p, len);
    free(p);
    const char *ids[] = {"dem-00001", "dem-00002", "d3"};
    delete_payload("public", 0, ids, 3, &p, &len);
    seed("codec", "delete", -1, p, len);
    free(p);
    outcomes_payload(recs, &p, &len);
    seed("codec", "outcomes", -1, p, len);
    free(p);
    served_payload(&p, &len);
    seed("codec", "served", -1, p, len);
    free(p);
    dt_outcome_event ev;
    dt_outcome_event_init(&ev);
    ev.demand_id = "dem-00001";
    ev.achievement_id = "ach-00001";
    ev.kind = DT_OUTCOME_DEAL_SIGNED;
    ev.amount = 880000.0;
    ev.at = 1700000000;
    dt_codec_buf b = DT_CODEC_BUF_INIT;
    dt_err err = DT_ERR_INIT;
    if (dt_codec_put_outcome(&b, &ev, &err) != 0) die("encode: %s", err.msg);
    seed("codec", "outcome", -1, b.data, b.len);
    dt_codec_buf_fini(&b);
}

int main(int argc, char **argv)
{
    if (argc != 4) die("usage: gen_seeds OUT_DIR DEMO_DIR DATA_DIR");
    out_dir = argv[1];
    char path[1200];
    rec_list recs = {0};
    snprintf(path, sizeof path, "%s/demands.jsonl", argv[2]);
    load(path, &recs);
    snprintf(path, sizeof path, "%s/achievements.jsonl", argv[2]);
    load(path, &recs);
    snprintf(path, sizeof path, "%s/loader_good.csv", argv[3]);
    load(path, &recs);
    if (recs.n < 20) die("only %zu records in %s and %s", recs.n, argv[2], argv[3]);
    /* the records with embeddings (loader_good.csv) first: they reach every field of the codec */
    for (size_t i = recs.n - 3, k = 0; i < recs.n; i++, k++) {
        dt_record t = recs.v[k];
        recs.v[k] = recs.v[i];
        recs.v[i] = t;
    }
    twirp_seeds();
    loader_seeds(argv[2], argv[3], &recs);
    journal_seeds(&recs);
    snapshot_seeds(&recs);
    codec_seeds(&recs);
    for (size_t i = 0; i < recs.n; i++) dt_record_free(&recs.v[i]);
    free(recs.v);
    return 0;
}
