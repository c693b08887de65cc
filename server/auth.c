/* auth.c - bearer tokens, scopes and the --auth-file reload (see auth.h for the file format).
 *
 * Not the HTTP side (http.c) and not start-up policy (main.c decides when auth is required).
 * Tokens are kept zero-padded to DT_AUTH_TOKEN_MAX bytes so that every lookup reads every byte of
 * every entry: the time a lookup takes says nothing about how much of any token a guess matched.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <utf8proc.h>

#include "metrics.h"
#include "server.h"

typedef struct auth_entry {
    char name[DT_AUTH_NAME_MAX + 1];
    unsigned char token[DT_AUTH_TOKEN_MAX]; /* zero-padded */
    size_t token_len;
    char **tenants;
    size_t n_tenants;
    bool operator_scope;
    uint64_t requests, denied;
} auth_entry;

enum { REASON_MISSING, REASON_MALFORMED, REASON_UNKNOWN, N_REASONS };
static const char *const reason_names[N_REASONS] = {"missing", "malformed", "unknown"};

struct dt_auth {
    auth_entry *v;
    size_t n;
    uint64_t unauthenticated[N_REASONS];
    uint64_t reloads_ok, reloads_failed;
};

/* ---- scopes ---- */

/* The RPCs' scopes are in the method table (server.h); these are the other routes'. */
static const struct {
    const char *route;
    dt_auth_scope scope;
} route_scopes[] = {
    {"GET /metrics", DT_SCOPE_OPERATOR},
    {"GET /events", DT_SCOPE_TENANT},
};

dt_auth_scope dt_auth_method_scope(const char *method)
{
    dt_method m = dt_method_find(method);
    if (m < DT_M_COUNT) return dt_methods[m].scope;
    for (size_t i = 0; i < sizeof route_scopes / sizeof route_scopes[0]; i++)
        if (!strcmp(route_scopes[i].route, method)) return route_scopes[i].scope;
    return DT_SCOPE_NONE;
}

/* ---- parsing ---- */

static void entry_free(auth_entry *e)
{
    for (size_t i = 0; i < e->n_tenants; i++)
        free(e->tenants[i]);
    free(e->tenants);
    explicit_bzero(e->token, sizeof e->token);
}

void dt_auth_free(dt_auth *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++)
        entry_free(&a->v[i]);
    free(a->v);
    free(a);
}

size_t dt_auth_count(const dt_auth *a)
{
    return a ? a->n : 0;
}

const char *dt_auth_name(const dt_auth *a, int who)
{
    return a && who >= 0 && (size_t)who < a->n ? a->v[who].name : "";
}

static bool token68_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

/* Offset of the first byte that breaks token68 (letters ... then '=' padding), or len. */
static size_t token68_bad(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && token68_char((unsigned char)s[i]))
        i++;
    if (i == 0) return 0;
    while (i < len && s[i] == '=')
        i++;
    return i;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DT_AUTH_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* The rules new records apply to a tenant (dt_tenant_name_check, record.c). Returns NULL when
 * fine, else what is wrong (in a static buffer: the loader's thread only). */
static const char *tenant_problem(const char *s)
{
    if (!*s) return "empty (requests that name no tenant use \"public\": write that)";
    if (!strcmp(s, "*")) return "\"*\" is not a wildcard: give the entry \"operator\": true for every tenant";
    static dt_err err;
    err = (dt_err)DT_ERR_INIT;
    return dt_tenant_name_check(s, "tenant", &err) < 0 ? err.msg : NULL;
}

/* An error about entry i (and its key, when not NULL), naming the entry when it has a name. */
static int entry_err(dt_err *err, size_t i, const char *key, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int entry_err(dt_err *err, size_t i, const char *key, const char *name, const char *fmt, ...)
{
    char field[64], msg[200];
    if (key)
        snprintf(field, sizeof field, "tokens[%zu].%s", i, key);
    else
        snprintf(field, sizeof field, "tokens[%zu]", i);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (name && *name) return dt_err_set(err, DT_EINVAL, field, "entry \"%s\": %s", name, msg);
    return dt_err_set(err, DT_EINVAL, field, "%s", msg);
}

static int parse_entry(json_t *o, size_t i, auth_entry *e, dt_err *err)
{
    if (!json_is_object(o))
        return entry_err(err, i, NULL, NULL,
                         "expected an object with name, token and tenants or operator");
    json_t *jname = json_object_get(o, "name");
    const char *name = json_is_string(jname) ? json_string_value(jname) : NULL;
    if (name && name_ok(name)) snprintf(e->name, sizeof e->name, "%s", name);
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        if (strcmp(key, "name") && strcmp(key, "token") && strcmp(key, "tenants") &&
            strcmp(key, "operator")) {
            char k[48];
            snprintf(k, sizeof k, "%.40s", key);
            for (char *p = k; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
            return entry_err(err, i, k, e->name,
                             "unknown key (the keys are name, token, tenants, operator)");
        }
    }
    if (!jname) return entry_err(err, i, "name", NULL, "required: a name for logs and metrics");
    if (!name || !name_ok(name))
        return entry_err(err, i, "name", NULL,
                         "expected 1 to 64 characters from A-Z a-z 0-9 . _ -");
    json_t *jtok = json_object_get(o, "token");
    if (!jtok) return entry_err(err, i, "token", e->name, "required");
    if (!json_is_string(jtok)) return entry_err(err, i, "token", e->name, "expected a string");
    const char *tok = json_string_value(jtok);
    size_t tl = json_string_length(jtok);
    if (tl == 0) return entry_err(err, i, "token", e->name, "empty");
    if (tl < DT_AUTH_TOKEN_MIN || tl > DT_AUTH_TOKEN_MAX)
        return entry_err(
            err, i, "token", e->name,
            "%zu characters; a token has %d to %d (e.g. head -c 33 /dev/urandom | base64)", tl,
            DT_AUTH_TOKEN_MIN, DT_AUTH_TOKEN_MAX);
    size_t bad = token68_bad(tok, tl);
    if (bad != tl)
        return entry_err(err, i, "token", e->name,
                         "character %zu is not allowed (A-Z a-z 0-9 - . _ ~ + / and '=' only at "
                         "the end: RFC 6750)",
                         bad + 1);
    memcpy(e->token, tok, tl);
    e->token_len = tl;
    json_t *jop = json_object_get(o, "operator");
    if (jop && !json_is_boolean(jop))
        return entry_err(err, i, "operator", e->name, "expected true or false");
    e->operator_scope = jop && json_is_true(jop);
    json_t *jt = json_object_get(o, "tenants");
    if (jt) {
        if (!json_is_array(jt))
            return entry_err(err, i, "tenants", e->name, "expected an array of tenant names");
        size_t nt = json_array_size(jt);
        if (nt) {
            e->tenants = calloc(nt, sizeof *e->tenants);
            if (!e->tenants) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        }
        for (size_t k = 0; k < nt; k++) {
            json_t *s = json_array_get(jt, k);
            char f[48];
            snprintf(f, sizeof f, "tenants[%zu]", k);
            if (!json_is_string(s))
                return entry_err(err, i, f, e->name, "expected a string (a tenant name)");
            const char *t = json_string_value(s);
            const char *why = tenant_problem(t);
            if (why) return entry_err(err, i, f, e->name, "%s", why);
            for (size_t q = 0; q < e->n_tenants; q++)
                if (!strcmp(e->tenants[q], t))
                    return entry_err(err, i, f, e->name, "\"%s\" is listed twice", t);
            e->tenants[e->n_tenants] = strdup(t);
            if (!e->tenants[e->n_tenants]) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
            e->n_tenants++;
        }
    }
    if (!e->n_tenants && !e->operator_scope)
        return entry_err(err, i, NULL, e->name,
                         "grants nothing: give \"tenants\": [...], \"operator\": true, or both");
    return 0;
}

dt_auth *dt_auth_parse(const char *json, size_t len, dt_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        dt_err_set(err, DT_EINVAL, NULL, "not valid JSON at line %d, column %d: %s", je.line,
                   je.column, je.text);
        return NULL;
    }
    dt_auth *a = NULL;
    if (!json_is_object(root)) {
        dt_err_set(err, DT_EINVAL, NULL, "expected a JSON object {\"tokens\": [...]}");
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "tokens")) {
            char k[48];
            snprintf(k, sizeof k, "%.40s", key);
            for (char *p = k; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
            dt_err_set(err, DT_EINVAL, k, "unknown key (the file holds one key, \"tokens\")");
            goto fail;
        }
    }
    json_t *toks = json_object_get(root, "tokens");
    if (!toks || !json_is_array(toks)) {
        dt_err_set(err, DT_EINVAL, "tokens",
                   "required: an array of {\"name\", \"token\", \"tenants\" / \"operator\"}");
        goto fail;
    }
    size_t n = json_array_size(toks);
    if (n == 0) {
        dt_err_set(err, DT_EINVAL, "tokens", "empty: every request would be refused");
        goto fail;
    }
    if (n > DT_AUTH_ENTRIES_MAX) {
        dt_err_set(err, DT_ELIMIT, "tokens", "%zu entries, more than the limit of %d", n,
                   DT_AUTH_ENTRIES_MAX);
        goto fail;
    }
    a = calloc(1, sizeof *a);
    if (a) a->v = calloc(n, sizeof *a->v);
    if (!a || !a->v) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        a->n = i + 1;
        if (parse_entry(json_array_get(toks, i), i, &a->v[i], err) < 0) goto fail;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(a->v[j].name, a->v[i].name)) {
                entry_err(err, i, "name", a->v[i].name,
                          "the same name as tokens[%zu]: names must be unique", j);
                goto fail;
            }
            if (a->v[j].token_len == a->v[i].token_len &&
                !memcmp(a->v[j].token, a->v[i].token, a->v[i].token_len)) {
                entry_err(err, i, "token", a->v[i].name,
                          "the same token as tokens[%zu] (\"%s\"): tokens must differ", j,
                          a->v[j].name);
                goto fail;
            }
        }
    }
    json_decref(root);
    return a;
fail:
    json_decref(root);
    dt_auth_free(a);
    return NULL;
}

dt_auth *dt_auth_load(const char *path, char *warning, size_t wn, dt_err *err)
{
    if (wn) warning[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dt_err_set(err, DT_EIO, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        dt_err_set(err, DT_EIO, NULL, "not a regular file");
        close(fd);
        return NULL;
    }
    if ((size_t)st.st_size > DT_AUTH_FILE_MAX) {
        dt_err_set(err, DT_ELIMIT, NULL, "%lld bytes, larger than the limit of %u",
                   (long long)st.st_size, DT_AUTH_FILE_MAX);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            dt_err_set(err, DT_EIO, NULL, "cannot read: %s", strerror(errno));
            close(fd);
            explicit_bzero(buf, len);
            free(buf);
            return NULL;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len == cap) { /* grew since fstat */
            dt_err_set(err, DT_ELIMIT, NULL, "the file changed while it was read; try again");
            close(fd);
            explicit_bzero(buf, len);
            free(buf);
            return NULL;
        }
    }
    close(fd);
    dt_auth *a = dt_auth_parse(buf, len, err);
    explicit_bzero(buf, len);
    free(buf);
    if (a && wn && (st.st_mode & 066))
        snprintf(warning, wn, "%s holds secrets but is %s by %s (mode %04o): chmod 600 it", path,
                 (st.st_mode & 022) && (st.st_mode & 044) ? "readable and writable"
                 : (st.st_mode & 022)                     ? "writable"
                                                          : "readable",
                 (st.st_mode & 060) && (st.st_mode & 006) ? "its group and others"
                 : (st.st_mode & 006)                     ? "others"
                                                          : "its group",
                 (unsigned)(st.st_mode & 07777));
    return a;
}

/* ---- per request ---- */

static uint64_t ct_barrier(uint64_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

int dt_auth_identify(dt_auth *a, const char *const *values, size_t n, int *who, size_t *compared,
                     dt_err *err)
{
    *who = -1;
    if (compared) *compared = 0;
    if (n == 0) {
        a->unauthenticated[REASON_MISSING]++;
        return dt_err_set(
            err, DT_EINVAL, NULL,
            "authentication required: send the header 'Authorization: Bearer <token>'");
    }
    if (n > 1) {
        a->unauthenticated[REASON_MALFORMED]++;
        return dt_err_set(err, DT_EINVAL, NULL,
                          "more than one Authorization header: send exactly one");
    }
    const char *h = values[0];
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        a->unauthenticated[REASON_MALFORMED]++;
        return dt_err_set(err, DT_EINVAL, NULL,
                          "the Authorization header must be 'Bearer <token>'");
    }
    const char *t = h + 6;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t len = strlen(t);
    while (len && (t[len - 1] == ' ' || t[len - 1] == '\t'))
        len--;
    if (len == 0 || token68_bad(t, len) != len) {
        a->unauthenticated[REASON_MALFORMED]++;
        return dt_err_set(err, DT_EINVAL, NULL,
                          "the Authorization header must be 'Bearer <token>' with a token of A-Z "
                          "a-z 0-9 - . _ ~ + / =");
    }
    if (len > DT_AUTH_TOKEN_MAX) {
        a->unauthenticated[REASON_UNKNOWN]++;
        return dt_err_set(err, DT_ENOTFOUND, NULL, "unknown token");
    }
    unsigned char buf[DT_AUTH_TOKEN_MAX];
    memset(buf, 0, sizeof buf);
    memcpy(buf, t, len);
    size_t sel = 0, bytes = 0;
    for (size_t i = 0; i < a->n; i++) {
        const auth_entry *e = &a->v[i];
        uint64_t d = (uint64_t)(e->token_len ^ len);
        for (size_t k = 0; k < DT_AUTH_TOKEN_MAX; k += 8) {
            uint64_t x, y;
            memcpy(&x, buf + k, 8);
            memcpy(&y, e->token + k, 8);
            d |= x ^ y;
        }
        d = ct_barrier(d);
        uint64_t eq = ((d | (0 - d)) >> 63) ^ 1; /* 1 when d == 0 */
        sel |= (size_t)(0 - eq) & (i + 1);
        bytes += DT_AUTH_TOKEN_MAX;
    }
    explicit_bzero(buf, sizeof buf);
    if (compared) *compared = bytes;
    if (sel == 0) {
        a->unauthenticated[REASON_UNKNOWN]++;
        return dt_err_set(err, DT_ENOTFOUND, NULL, "unknown token");
    }
    *who = (int)(sel - 1);
    a->v[sel - 1].requests++;
    return 0;
}

int dt_auth_allow(dt_auth *a, int who, const char *method, const char *tenant, dt_err *err)
{
    if (who < 0 || (size_t)who >= a->n) return dt_err_set(err, DT_EINVAL, NULL, "unknown token");
    auth_entry *e = &a->v[who];
    dt_auth_scope sc = dt_auth_method_scope(method);
    bool named = tenant && *tenant;
    if (e->operator_scope) return 0;
    switch (sc) {
    case DT_SCOPE_TENANT_OR_ALL:
        if (!named) {
            e->denied++;
            return dt_err_set(err, DT_EINVAL, "tenant",
                              "%s without a tenant covers every tenant and needs an operator "
                              "token; name your tenant",
                              method);
        }
        /* fallthrough */
    case DT_SCOPE_TENANT: {
        const char *t = named ? tenant : "public";
        for (size_t i = 0; i < e->n_tenants; i++)
            if (!strcmp(e->tenants[i], t)) return 0;
        e->denied++;
        return dt_err_set(err, DT_EINVAL, "tenant",
                          "the token \"%s\" has no access to tenant \"%.64s\"", e->name, t);
    }
    case DT_SCOPE_OPERATOR:
    case DT_SCOPE_NONE:
        break;
    }
    e->denied++;
    return dt_err_set(err, DT_EINVAL, NULL,
                      "%.64s works across tenants and needs an operator token; \"%s\" is not one",
                      method, e->name);
}

const char *dt_auth_request_tenant(const ProtobufCMessage *msg)
{
    if (!msg) return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "tenant");
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)((const char *)msg + f->quantifier_offset) != f->id)
        return "";
    const char *s = *(char *const *)((const char *)msg + f->offset);
    return s ? s : "";
}

bool dt_auth_listen_is_loopback(const char *listen)
{
    if (!listen) return false;
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) return false;
    char host[256];
    size_t n = (size_t)(colon - listen);
    if (n >= sizeof host) return false;
    memcpy(host, listen, n);
    host[n] = 0;
    char *h = host;
    if (h[0] == '[') {
        if (n < 2 || h[n - 1] != ']') return false;
        h[n - 1] = 0;
        h++;
    }
    if (!strcasecmp(h, "localhost")) return true;
    struct in_addr v4;
    if (inet_pton(AF_INET, h, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    struct in6_addr v6;
    if (inet_pton(AF_INET6, h, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return false;
}

/* ---- metrics ---- */

void dt_auth_metrics_render(const dt_auth *a, FILE *f)
{
    if (!a) return;
    fputs("# HELP dovetail_auth_requests_total Requests that presented a known token, by token "
          "name.\n"
          "# TYPE dovetail_auth_requests_total counter\n",
          f);
    for (size_t i = 0; i < a->n; i++) {
        fputs("dovetail_auth_requests_total{token=\"", f);
        dt_metrics_label(f, a->v[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)a->v[i].requests);
    }
    fputs("# HELP dovetail_auth_denied_total Requests refused permission_denied, by token name.\n"
          "# TYPE dovetail_auth_denied_total counter\n",
          f);
    for (size_t i = 0; i < a->n; i++) {
        fputs("dovetail_auth_denied_total{token=\"", f);
        dt_metrics_label(f, a->v[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)a->v[i].denied);
    }
    fputs(
        "# HELP dovetail_auth_unauthenticated_total Requests refused unauthenticated, by reason.\n"
        "# TYPE dovetail_auth_unauthenticated_total counter\n",
        f);
    for (int r = 0; r < N_REASONS; r++)
        fprintf(f, "dovetail_auth_unauthenticated_total{reason=\"%s\"} %llu\n", reason_names[r],
                (unsigned long long)a->unauthenticated[r]);
    fprintf(f,
            "# HELP dovetail_auth_tokens Tokens loaded from --auth-file.\n"
            "# TYPE dovetail_auth_tokens gauge\ndovetail_auth_tokens %zu\n"
            "# HELP dovetail_auth_reloads_total Reloads of --auth-file (SIGHUP), by result.\n"
            "# TYPE dovetail_auth_reloads_total counter\n"
            "dovetail_auth_reloads_total{result=\"ok\"} %llu\n"
            "dovetail_auth_reloads_total{result=\"failed\"} %llu\n",
            a->n, (unsigned long long)a->reloads_ok, (unsigned long long)a->reloads_failed);
}

/* Counters survive a reload for the names that stay. */
static void carry(dt_auth *to, const dt_auth *from)
{
    for (size_t i = 0; i < to->n; i++)
        for (size_t j = 0; j < from->n; j++)
            if (!strcmp(to->v[i].name, from->v[j].name)) {
                to->v[i].requests = from->v[j].requests;
                to->v[i].denied = from->v[j].denied;
            }
    memcpy(to->unauthenticated, from->unauthenticated, sizeof to->unauthenticated);
    to->reloads_ok = from->reloads_ok;
    to->reloads_failed = from->reloads_failed;
}

/* ---- reload ---- */

struct dt_auth_reloader {
    struct event_base *base;
    char *path;
    dt_auth **slot;
    dt_auth_log_fn log;
    void *ud;
    struct event *sig, *done_ev;
    pthread_t th;
    bool running, again;
    uint64_t done;
    /* written by the reload thread, read on the loop after pthread_join */
    dt_auth *result;
    dt_err err;
    char warning[512];
};

static void *reload_thread(void *arg)
{
    dt_auth_reloader *r = arg;
    r->err = (dt_err)DT_ERR_INIT;
    r->result = dt_auth_load(r->path, r->warning, sizeof r->warning, &r->err);
    event_active(r->done_ev, EV_READ, 0);
    return NULL;
}

static void say(dt_auth_reloader *r, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(dt_auth_reloader *r, bool error, const char *fmt, ...)
{
    if (!r->log) return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->log(r->ud, error, line);
}

void dt_auth_reloader_start(dt_auth_reloader *r)
{
    if (r->running) {
        r->again = true;
        return;
    }
    r->result = NULL;
    r->warning[0] = 0;
    if (pthread_create(&r->th, NULL, reload_thread, r) != 0) {
        (*r->slot)->reloads_failed++;
        say(r, true,
            "--auth-file %s: cannot start the reload (no thread): keeping the tokens loaded before",
            r->path);
        return;
    }
    r->running = true;
}

void dt_auth_reloader_free(dt_auth_reloader *r)
{
    if (!r) return;
    if (r->running) {
        pthread_join(r->th, NULL);
        dt_auth_free(r->result);
    }
    if (r->sig) event_free(r->sig);
    if (r->done_ev) event_free(r->done_ev);
    free(r->path);
    free(r);
}

static void on_reloaded(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dt_auth_reloader *r = arg;
    pthread_join(r->th, NULL);
    r->running = false;
    dt_auth *old = *r->slot;
    if (r->result) {
        carry(r->result, old);
        r->result->reloads_ok++;
        *r->slot = r->result;
        r->result = NULL;
        dt_auth_free(old);
        if (r->warning[0]) say(r, true, "warning: --auth-file %s", r->warning);
        say(r, false, "--auth-file %s reloaded: %zu tokens", r->path, (*r->slot)->n);
    } else {
        old->reloads_failed++;
        say(r, true, "--auth-file %s: reload refused, keeping the %zu tokens loaded before: %s%s%s",
            r->path, old->n, r->err.field, r->err.field[0] ? ": " : "", r->err.msg);
    }
    r->done++;
    if (r->again) {
        r->again = false;
        dt_auth_reloader_start(r);
    }
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    dt_auth_reloader_start(arg);
}

uint64_t dt_auth_reloader_done(const dt_auth_reloader *r)
{
    return r->done;
}

dt_auth_reloader *dt_auth_reloader_new(struct event_base *base, const char *path, dt_auth **slot,
                                       dt_auth_log_fn log, void *ud, dt_err *err)
{
    dt_auth_reloader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    r->base = base;
    r->slot = slot;
    r->log = log;
    r->ud = ud;
    r->sig = evsignal_new(base, SIGHUP, on_sighup, r);
    r->done_ev = event_new(base, -1, 0, on_reloaded, r);
    if (!r->sig || !r->done_ev || evsignal_add(r->sig, NULL) < 0) {
        dt_auth_reloader_free(r);
        dt_err_set(err, DT_EINTERNAL, NULL, "cannot watch SIGHUP for --auth-file reloads");
        return NULL;
    }
    return r;
}
