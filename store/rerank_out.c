/* rerank_out.c - a re-rank job's outputs: the JSON Lines file and the Redis keys (rerank_out.h). */
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rerank_out.h"

#define REDIS_WINDOW 1024 /* commands in flight before their replies are read */

struct dt_rerank_out {
    char tenant[DT_TENANT_MAX + 1];
    char job[DT_RERANK_JOB_ID_MAX + 1];
    const char *file_field, *redis_field;
    /* file */
    char *path, *tmp;
    FILE *f;
    /* redis */
    redisContext *rc;
    char *prefix; /* dt:v1:rerank:<tenant>: */
    size_t pending;
    bool published; /* `current` names this job */
    uint64_t lists[2];
};

bool dt_rerank_job_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > DT_RERANK_JOB_ID_MAX) return false;
    if (strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != n) return false;
    return strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

void dt_rerank_job_id_make(char *out, size_t n, unsigned long seq)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int len = snprintf(out, n, "%04d%02d%02dT%02d%02d%02dZ-%ld", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid());
    if (seq && len > 0 && (size_t)len < n) snprintf(out + len, n - (size_t)len, "-%lu", seq);
}

uint64_t dt_rerank_out_lists(const dt_rerank_out *o, dt_side side)
{
    return o->lists[side == DT_ACHIEVEMENT];
}

static char *list_json(const dt_rerank_list *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < l->n; i++) {
        json_t *m = json_pack("{s:s,s:f}", "id", l->items[i].id, "score", (double)l->items[i].score);
        if (!m || json_array_append_new(arr, m)) {
            json_decref(arr);
            return NULL;
        }
    }
    char *s = arr ? json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(7)) : NULL;
    json_decref(arr);
    return s;
}

/* Reads replies until at most `keep` commands are in flight. */
static int redis_drain(dt_rerank_out *o, size_t keep, dt_err *err)
{
    while (o->pending > keep) {
        void *r = NULL;
        if (redisGetReply(o->rc, &r) != REDIS_OK)
            return dt_err_set(err, DT_EIO, o->redis_field, "%s", o->rc->errstr[0] ? o->rc->errstr : "connection lost");
        redisReply *rep = r;
        o->pending--;
        if (rep->type == REDIS_REPLY_ERROR) {
            int rc = dt_err_set(err, DT_EIO, o->redis_field, "%s", rep->str);
            freeReplyObject(rep);
            return rc;
        }
        freeReplyObject(rep);
    }
    return 0;
}

int dt_rerank_out_emit(void *ud, const dt_rerank_list *l, dt_err *err)
{
    dt_rerank_out *o = ud;
    char *arr = list_json(l);
    if (!arr) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory encoding a list");
    int rc = 0;
    if (o->f) {
        json_t *t = json_string(l->tenant), *id = json_string(l->id);
        char *ts = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL, *ids = id ? json_dumps(id, JSON_ENCODE_ANY) : NULL;
        json_decref(t);
        json_decref(id);
        if (!ts || !ids)
            rc = dt_err_set(err, DT_ENOMEM, NULL, "out of memory encoding a list");
        else if (fprintf(o->f, "{\"tenant\":%s,\"side\":\"%s\",\"id\":%s,\"matches\":%s}\n", ts, dt_side_name(l->side),
                         ids, arr) < 0)
            rc = dt_err_set(err, DT_EIO, o->file_field, "writing %s: %s", o->tmp, strerror(errno));
        free(ts);
        free(ids);
    }
    if (rc == 0 && o->rc) {
        char key[1024];
        int n = snprintf(key, sizeof key, "%sjob:%s:%s:%s", o->prefix, o->job, dt_side_name(l->side), l->id);
        if (n < 0 || (size_t)n >= sizeof key) {
            rc = dt_err_set(err, DT_ELIMIT, o->redis_field, "key for '%s' too long", l->id);
        } else if (redisAppendCommand(o->rc, "SET %b %b", key, (size_t)n, arr, strlen(arr)) != REDIS_OK) {
            rc = dt_err_set(err, DT_EIO, o->redis_field, "%s", o->rc->errstr);
        } else {
            o->pending++;
            if (o->pending >= REDIS_WINDOW) rc = redis_drain(o, 0, err);
        }
    }
    free(arr);
    if (rc == 0) o->lists[l->side == DT_ACHIEVEMENT]++;
    return rc;
}

/* Escapes glob characters for SCAN MATCH. */
static void glob_escape(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 2 < n; s++) {
        if (strchr("*?[]\\", *s)) out[k++] = '\\';
        out[k++] = *s;
    }
    out[k] = 0;
}

/* Removes the keys of job `only`, or (only NULL) of every job of the tenant but `keep`, with SCAN +
 * UNLINK. Returns the number removed, or -1 on a Redis error. */
static long redis_drop_jobs(dt_rerank_out *o, const char *only, const char *keep)
{
    char pat[1200], esc[1100], base[1100];
    int nb = snprintf(base, sizeof base, "%sjob:", o->prefix);
    snprintf(pat, sizeof pat, "%s%s%s", base, only ? only : "", only ? ":" : "");
    glob_escape(pat, esc, sizeof esc);
    snprintf(pat, sizeof pat, "%s*", esc);
    size_t keep_len = keep ? strlen(keep) : 0;
    char cursor[32] = "0";
    long removed = 0;
    do {
        redisReply *r = redisCommand(o->rc, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        const char **argv = malloc((keys->elements + 1) * sizeof *argv);
        size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
        if (!argv || !lens) {
            free(argv);
            free(lens);
            freeReplyObject(r);
            return -1;
        }
        int argc = 1;
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str + nb; /* the job id, then ':' */
            if (keep && keys->element[i]->len > (size_t)nb + keep_len && strncmp(k, keep, keep_len) == 0 &&
                k[keep_len] == ':')
                continue;
            argv[argc] = keys->element[i]->str;
            lens[argc++] = keys->element[i]->len;
        }
        bool failed = false;
        if (argc > 1) {
            redisReply *u = redisCommandArgv(o->rc, argc, argv, lens);
            if (u && u->type == REDIS_REPLY_INTEGER) removed += (long)u->integer;
            failed = !u || u->type == REDIS_REPLY_ERROR;
            if (u) freeReplyObject(u);
        }
        free(argv);
        free(lens);
        freeReplyObject(r);
        if (failed) return -1;
    } while (strcmp(cursor, "0") != 0);
    return removed;
}

static struct timeval ms_tv(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static int redis_open(dt_rerank_out *o, const char *addr, int connect_ms, int cmd_ms, dt_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host || *end || port < 1 || port > 65535)
        return dt_err_set(err, DT_EINVAL, o->redis_field, "expected HOST:PORT, got '%s'", addr);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:6379 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    o->rc = redisConnectWithTimeout(host, (int)port, ms_tv(connect_ms));
    if (!o->rc || o->rc->err)
        return dt_err_set(err, DT_EIO, o->redis_field, "cannot connect to %s: %s", addr,
                          o->rc ? o->rc->errstr : "out of memory");
    if (redisSetTimeout(o->rc, ms_tv(cmd_ms)) != REDIS_OK)
        return dt_err_set(err, DT_EIO, o->redis_field, "cannot set a timeout on the connection to %s", addr);
    size_t n = strlen("dt:v1:rerank::") + strlen(o->tenant) + 1;
    if (!(o->prefix = malloc(n))) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    snprintf(o->prefix, n, "dt:v1:rerank:%s:", o->tenant);
    char key[256];
    snprintf(key, sizeof key, "%scurrent", o->prefix);
    redisReply *r = redisCommand(o->rc, "GET %s", key);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        int rc = dt_err_set(err, DT_EIO, o->redis_field, "%s does not answer: %s", addr, r ? r->str : o->rc->errstr);
        if (r) freeReplyObject(r);
        return rc;
    }
    bool taken = r->type == REDIS_REPLY_STRING && strcmp(r->str, o->job) == 0;
    freeReplyObject(r);
    if (taken)
        return dt_err_set(err, DT_EEXIST, "job", "'%s' is the published job of tenant '%s': choose another job id",
                          o->job, o->tenant);
    return 0;
}

static int file_open(dt_rerank_out *o, const char *path, dt_err *err)
{
    size_t n = strlen(path) + 32;
    if (!(o->path = strdup(path)) || !(o->tmp = malloc(n))) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        free(o->tmp);
        o->tmp = NULL;
        return dt_err_set(err, DT_EIO, o->file_field, "creating %s.tmp.*: %s", path, strerror(e));
    }
    return 0;
}

dt_rerank_out *dt_rerank_out_open(const dt_rerank_out_opts *opts, dt_err *err)
{
    if (!dt_rerank_job_id_valid(opts->job)) {
        dt_err_set(err, DT_EINVAL, "job", "1..%d characters of letters, digits, '-', '_' and '.'", DT_RERANK_JOB_ID_MAX);
        return NULL;
    }
    dt_rerank_out *o = calloc(1, sizeof *o);
    if (!o) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
        return NULL;
    }
    snprintf(o->tenant, sizeof o->tenant, "%s", opts->tenant && *opts->tenant ? opts->tenant : "public");
    snprintf(o->job, sizeof o->job, "%s", opts->job);
    o->file_field = opts->file_field ? opts->file_field : "file";
    o->redis_field = opts->redis_field ? opts->redis_field : "redis";
    int connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000;
    int cmd_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    if ((opts->redis && redis_open(o, opts->redis, connect_ms, cmd_ms, err) < 0) ||
        (opts->path && file_open(o, opts->path, err) < 0)) {
        dt_rerank_out_free(o);
        return NULL;
    }
    return o;
}

/* Flushes, fsyncs and closes the temporary file. */
static int file_sync(dt_rerank_out *o, dt_err *err)
{
    int rc = 0;
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
        rc = dt_err_set(err, DT_EIO, o->file_field, "writing %s: %s", o->tmp, strerror(errno));
    if (fclose(o->f) != 0 && rc == 0) rc = dt_err_set(err, DT_EIO, o->file_field, "writing %s: %s", o->tmp, strerror(errno));
    o->f = NULL;
    return rc;
}

static int file_rename(dt_rerank_out *o, dt_err *err)
{
    if (rename(o->tmp, o->path) != 0)
        return dt_err_set(err, DT_EIO, o->file_field, "renaming %s%s: %s", o->tmp,
                          o->published ? " (the Redis lists are published)" : "", strerror(errno));
    free(o->tmp);
    o->tmp = NULL;
    char *dup = strdup(o->path);
    if (dup) { /* make the rename itself durable; best effort */
        int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) fsync(dfd), close(dfd);
        free(dup);
    }
    return 0;
}

/* The meta key, then the current pointer (its old value into previous). */
static int redis_publish(dt_rerank_out *o, size_t k, size_t cap, char *previous, size_t np, dt_err *err)
{
    int rc = redis_drain(o, 0, err);
    if (rc) return rc;
    char key[1200];
    snprintf(key, sizeof key, "%sjob:%s:meta", o->prefix, o->job);
    json_t *meta = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "job", o->job, "tenant", o->tenant, "k", (json_int_t)k,
                             "cap", (json_int_t)cap, "demands", (json_int_t)o->lists[0], "achievements",
                             (json_int_t)o->lists[1], "finished_at", (json_int_t)time(NULL));
    char *m = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);
    if (!m) return dt_err_set(err, DT_ENOMEM, NULL, "out of memory");
    redisReply *r = redisCommand(o->rc, "SET %s %s", key, m);
    free(m);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        rc = dt_err_set(err, DT_EIO, o->redis_field, "%s", r ? r->str : o->rc->errstr);
        if (r) freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    snprintf(key, sizeof key, "%scurrent", o->prefix);
    r = redisCommand(o->rc, "SET %s %s GET", key, o->job); /* Redis >= 6.2; else GET then SET */
    if (r && r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        r = redisCommand(o->rc, "GET %s", key);
        if (r && r->type == REDIS_REPLY_STRING) snprintf(previous, np, "%s", r->str);
        if (r) freeReplyObject(r);
        r = redisCommand(o->rc, "SET %s %s", key, o->job);
    } else if (r && r->type == REDIS_REPLY_STRING) {
        snprintf(previous, np, "%s", r->str);
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
        rc = dt_err_set(err, DT_EIO, o->redis_field, "setting %s: %s", key, r ? r->str : o->rc->errstr);
        if (r) freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    o->published = true;
    return 0;
}

int dt_rerank_out_commit(dt_rerank_out *o, size_t k, size_t cap, dt_rerank_out_summary *sum, dt_err *err)
{
    dt_rerank_out_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    int rc = 0;
    if (o->f && (rc = file_sync(o, err)) < 0) return rc;
    if (o->rc && (rc = redis_publish(o, k, cap, sum->previous, sizeof sum->previous, err)) < 0) return rc;
    if (o->tmp && (rc = file_rename(o, err)) < 0) return rc;
    /* the previous job's keys, and those a crashed job may have left */
    if (o->rc) sum->removed = redis_drop_jobs(o, NULL, o->job);
    return 0;
}

void dt_rerank_out_abandon(dt_rerank_out *o)
{
    if (!o) return;
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    if (o->rc && !o->published) {
        while (o->pending && !o->rc->err) { /* every reply, error replies included */
            dt_err err = DT_ERR_INIT;
            redis_drain(o, 0, &err);
        }
        if (!o->rc->err) redis_drop_jobs(o, o->job, NULL);
        o->pending = 0;
    }
}

void dt_rerank_out_free(dt_rerank_out *o)
{
    if (!o) return;
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    if (o->rc) redisFree(o->rc);
    free(o->prefix);
    free(o->tmp);
    free(o->path);
    free(o);
}
