/* text.c - tokenizer and feature hashing (see text.h for the rules).
 *
 * Pipeline of dt_text_tokenize: UTF-8 check -> NFKC_Casefold into a code-point buffer -> one pass
 * that cuts words and CJK runs -> stop words, stemming -> hashed tokens appended to a dt_tokens.
 *
 * Normalisation is done in segments so ASCII costs a table lookup: an ASCII byte followed by
 * another ASCII byte (or the end) normalises to its lower case whatever surrounds it, because an
 * ASCII character has combining class 0 and is never the second character of a canonical
 * composition. Every other stretch, a maximal run of non-ASCII bytes together with the ASCII byte
 * just before it (which may compose with a following combining mark), goes through libutf8proc.
 * Such segments cannot interact, so the result equals utf8proc's NFKC_Casefold of the whole text
 * (the unit tests compare the two on random text).
 */
#include "text.h"

#include <libstemmer.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define NORM_OPTS \
    (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE)

/* Snowball's English stop list without the apostrophe forms, plus the parts those forms leave
 * after apostrophe splitting ("isn", "don", "ll", "ve", "re", ...). One-letter words ("i", "a")
 * are dropped by the one-code-point rule. Each tokenizer loads it into a stop_set. */
static const char *const en_stop[] = {
    "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "aren",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "cannot", "could", "couldn", "did", "didn", "do", "does", "doesn", "doing", "don", "down",
    "during", "each", "few", "for", "from", "further", "had", "hadn", "has", "hasn", "have", "haven",
    "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "if", "in",
    "into", "is", "isn", "it", "its", "itself", "ll", "me", "more", "most", "mustn", "my", "myself",
    "no", "nor", "not", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours",
    "ourselves", "out", "over", "own", "re", "same", "shan", "she", "should", "shouldn", "so", "some",
    "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
    "they", "this", "those", "through", "to", "too", "under", "until", "up", "ve", "very", "was",
    "wasn", "we", "were", "weren", "what", "when", "where", "which", "while", "who", "whom", "why",
    "with", "won", "would", "wouldn", "you", "your", "yours", "yourself", "yourselves",
};
#define EN_STOP_MAXLEN 10
#define STOP_SLOTS 512 /* power of two, well above 2 * the list's length */

/* The stop list as an open-addressing hash set, built once per tokenizer. len[i] == 0: empty. */
typedef struct stop_set {
    uint8_t len[STOP_SLOTS];
    char w[STOP_SLOTS][EN_STOP_MAXLEN];
} stop_set;

static inline uint32_t stop_slot(const char *s, size_t len)
{
    uint32_t h = (uint32_t)len;
    for (size_t i = 0; i < len; i++) h = h * 31u + (unsigned char)s[i];
    return (h * 0x9E3779B1u) >> 23;
}

static void stop_set_build(stop_set *ss)
{
    memset(ss->len, 0, sizeof ss->len);
    for (size_t k = 0; k < sizeof en_stop / sizeof en_stop[0]; k++) {
        size_t len = strlen(en_stop[k]);
        uint32_t i = stop_slot(en_stop[k], len);
        while (ss->len[i]) i = (i + 1) & (STOP_SLOTS - 1);
        ss->len[i] = (uint8_t)len;
        memcpy(ss->w[i], en_stop[k], len);
    }
}

static inline bool stop_set_has(const stop_set *ss, const char *s, size_t len)
{
    if (len < 2 || len > EN_STOP_MAXLEN) return false;
    for (uint32_t i = stop_slot(s, len); ss->len[i]; i = (i + 1) & (STOP_SLOTS - 1))
        if (ss->len[i] == len && memcmp(ss->w[i], s, len) == 0) return true;
    return false;
}

/* A direct-mapped cache of stems: word frequencies are Zipfian, so most words are stemmed once
 * per tokenizer. Entries hold words and stems of up to STEM_CACHE_WORD bytes; wlen == 0: empty. */
#define STEM_CACHE_SLOTS 4096
#define STEM_CACHE_WORD 22

typedef struct stem_ent {
    uint64_t key;
    uint32_t bucket;
    uint8_t wlen, slen;
    char w[STEM_CACHE_WORD];
    char s[STEM_CACHE_WORD];
} stem_ent;

/* Chinese function characters whose unigrams carry no topic: 的 了 和 与 及 在 是 之 或 等 于 其 并
 * 而 被 把 着 也. */
static bool is_cjk_stop(int32_t c)
{
    switch (c) {
    case 0x7684: case 0x4E86: case 0x548C: case 0x4E0E: case 0x53CA: case 0x5728:
    case 0x662F: case 0x4E4B: case 0x6216: case 0x7B49: case 0x4E8E: case 0x5176:
    case 0x5E76: case 0x800C: case 0x88AB: case 0x628A: case 0x7740: case 0x4E5F:
        return true;
    default:
        return false;
    }
}

/* Han ideographs (every extension, compatibility ideographs, 々〆〇), hiragana, katakana and
 * hangul (syllables and jamo). Kana punctuation (゠ ・) and the combining voicing marks are not
 * included. */
static bool is_cjk(int32_t c)
{
    if (c >= 0x4E00) {
        if (c <= 0x9FFF) return true;
        if (c >= 0xAC00 && c <= 0xD7A3) return true;
        if (c >= 0x20000 && c <= 0x323AF) return true;
        if (c >= 0xF900 && c <= 0xFAFF) return true;
        if (c >= 0xA960 && c <= 0xA97F) return true;
        if (c >= 0xD7B0 && c <= 0xD7FF) return true;
        if (c >= 0x1B000 && c <= 0x1B16F) return true;
        return false;
    }
    if (c < 0x1100) return false;
    if (c <= 0x11FF) return true;
    if (c < 0x3005) return false;
    if (c <= 0x3007) return true;
    if (c >= 0x3041 && c <= 0x3096) return true;
    if (c >= 0x309D && c <= 0x309F) return true;
    if (c >= 0x30A1 && c <= 0x30FA) return true;
    if (c >= 0x30FC && c <= 0x30FF) return true;
    if (c >= 0x3131 && c <= 0x318E) return true;
    if (c >= 0x31F0 && c <= 0x31FF) return true;
    if (c >= 0x3400 && c <= 0x4DBF) return true;
    return false;
}

enum { C_SEP, C_LETTER, C_DIGIT, C_MARK, C_CJK };

static inline int cp_class(int32_t c)
{
    if (c < 0x80) {
        if ((uint32_t)(c - 'a') < 26u || (uint32_t)(c - 'A') < 26u) return C_LETTER;
        if ((uint32_t)(c - '0') < 10u) return C_DIGIT;
        return C_SEP;
    }
    if (is_cjk(c)) return C_CJK;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return C_LETTER;
    case UTF8PROC_CATEGORY_ND:
        return C_DIGIT;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
        return C_MARK;
    default:
        return C_SEP;
    }
}

static inline bool is_ascii_digit(int32_t c)
{
    return (uint32_t)(c - '0') < 10u;
}

/* Writes c (a valid scalar value) as UTF-8 at p; returns the number of bytes (1..4). */
static inline size_t utf8_put(char *p, int32_t c)
{
    unsigned char *q = (unsigned char *)p;
    if (c < 0x80) {
        q[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        q[0] = (unsigned char)(0xC0 | (c >> 6));
        q[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        q[0] = (unsigned char)(0xE0 | (c >> 12));
        q[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        q[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    q[0] = (unsigned char)(0xF0 | (c >> 18));
    q[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    q[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    q[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

int dt_text_utf8_check(const char *s, size_t len, size_t *bad_off)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c == 0xE0) {
            need = 2;
            lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            need = 2;
        } else if (c == 0xED) {
            need = 2;
            hi = 0x9F;
        } else if (c == 0xF0) {
            need = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            need = 3;
        } else if (c == 0xF4) {
            need = 3;
            hi = 0x8F;
        } else {
            goto bad;
        }
        if (len - i <= need) goto bad;
        if (p[i + 1] < lo || p[i + 1] > hi) goto bad;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80) goto bad;
        i += need + 1;
    }
    return 0;
bad:
    if (bad_off) *bad_off = i;
    return -1;
}

static int utf8_error(const char *s, size_t len, dt_err *err)
{
    size_t off = 0;
    if (dt_text_utf8_check(s, len, &off) == 0) return 0;
    return dt_err_set(err, DT_EINVAL, "text",
                      "invalid UTF-8 at byte offset %zu (byte 0x%02x): fix the encoding (expected "
                      "UTF-8 without overlong forms or surrogates)",
                      off, (unsigned)(unsigned char)s[off]);
}

/* A growable array of code points. */
typedef struct cpbuf {
    int32_t *v;
    size_t n, cap;
} cpbuf;

static int cpbuf_reserve(cpbuf *b, size_t extra)
{
    if (extra <= b->cap - b->n) return 0;
    if (extra > SIZE_MAX / sizeof(int32_t) / 2 - b->n) return -1;
    size_t need = b->n + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    int32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return -1;
    b->v = v;
    b->cap = cap;
    return 0;
}

/* NFKC_Casefold of s[0..len) (valid UTF-8) into b->v[0..b->n). */
static int normalize_cps(const unsigned char *s, size_t len, cpbuf *b, dt_err *err)
{
    b->n = 0;
    if (cpbuf_reserve(b, len)) goto nomem;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80 && (i + 1 == len || s[i + 1] < 0x80)) {
            b->v[b->n++] = (int32_t)((c - 'A' < 26u) ? c + 32 : c);
            i++;
            continue;
        }
        size_t start = i;
        if (c < 0x80) i++;
        while (i < len && s[i] >= 0x80) i++;
        utf8proc_ssize_t r;
        for (;;) {
            size_t avail = b->cap - b->n;
            r = utf8proc_decompose_custom(s + start, (utf8proc_ssize_t)(i - start), b->v + b->n,
                                          (utf8proc_ssize_t)avail, NORM_OPTS, NULL, NULL);
            if (r < 0)
                return dt_err_set(err, DT_EINTERNAL, "text", "utf8proc: %s at byte offset %zu",
                                  utf8proc_errmsg(r), start);
            if ((size_t)r <= avail) break;
            if (cpbuf_reserve(b, (size_t)r)) goto nomem;
        }
        r = utf8proc_normalize_utf32(b->v + b->n, r, NORM_OPTS);
        if (r < 0)
            return dt_err_set(err, DT_EINTERNAL, "text", "utf8proc: %s at byte offset %zu",
                              utf8proc_errmsg(r), start);
        b->n += (size_t)r;
        if (cpbuf_reserve(b, len - i)) goto nomem;
    }
    return 0;
nomem:
    return dt_err_set(err, DT_ENOMEM, "text", "out of memory normalising %zu bytes of text", len);
}

int dt_text_normalize(const char *s, size_t len, char **out, size_t *out_len, dt_err *err)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    int rc = utf8_error(s, len, err);
    if (rc) return rc;
    cpbuf b = {NULL, 0, 0};
    rc = normalize_cps((const unsigned char *)s, len, &b, err);
    if (rc) {
        free(b.v);
        return rc;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < b.n; i++) {
        int32_t c = b.v[i];
        bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    char *o = malloc(bytes + 1);
    if (!o) {
        free(b.v);
        return dt_err_set(err, DT_ENOMEM, "text", "out of memory normalising %zu bytes of text",
                          len);
    }
    size_t w = 0;
    for (size_t i = 0; i < b.n; i++) w += utf8_put(o + w, b.v[i]);
    o[w] = '\0';
    free(b.v);
    *out = o;
    if (out_len) *out_len = w;
    return 0;
}

uint64_t dt_text_hash(const char *tok, size_t len)
{
    return XXH3_64bits_withSeed(tok, len, DT_TEXT_SEED);
}

uint32_t dt_text_bucket(const char *tok, size_t len)
{
    return (uint32_t)(dt_text_hash(tok, len) & (DT_TEXT_BUCKETS - 1));
}

void dt_tokens_init(dt_tokens *t)
{
    memset(t, 0, sizeof *t);
}

void dt_tokens_clear(dt_tokens *t)
{
    t->n = 0;
    t->buf_len = 0;
    t->next_pos = 0;
}

void dt_tokens_free(dt_tokens *t)
{
    if (!t) return;
    free(t->v);
    free(t->buf);
    dt_tokens_init(t);
}

/* Room for `extra` more bytes in t->buf; token offsets must stay below 2^32. */
static int buf_reserve(dt_tokens *t, size_t extra, dt_err *err)
{
    if (extra <= t->buf_cap - t->buf_len) return 0;
    if (extra > (size_t)UINT32_MAX - t->buf_len)
        return dt_err_set(err, DT_ELIMIT, "text",
                          "token text exceeds 4 GiB in one token list: tokenize less text at once");
    size_t need = t->buf_len + extra;
    size_t cap = t->buf_cap ? t->buf_cap : 1024;
    while (cap < need) cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) return dt_err_set(err, DT_ENOMEM, "text", "out of memory growing token text");
    t->buf = b;
    t->buf_cap = cap;
    return 0;
}

static inline int tok_push(dt_tokens *t, uint32_t off, size_t len, int kind, uint32_t pos,
                           uint32_t bucket, dt_err *err)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        if (cap > SIZE_MAX / sizeof(dt_token))
            return dt_err_set(err, DT_ENOMEM, "text", "out of memory growing the token list");
        dt_token *v = realloc(t->v, cap * sizeof *v);
        if (!v) return dt_err_set(err, DT_ENOMEM, "text", "out of memory growing the token list");
        t->v = v;
        t->cap = cap;
    }
    dt_token *k = &t->v[t->n++];
    k->bucket = bucket;
    k->off = off;
    k->len = (uint16_t)len;
    k->kind = (uint8_t)kind;
    k->pos = pos;
    return 0;
}

struct dt_text {
    dt_text_opts opts;
    struct sb_stemmer *stemmer;
    stem_ent *stems; /* STEM_CACHE_SLOTS entries when stemming */
    cpbuf cps;
    stop_set stop;
};

dt_text_opts dt_text_opts_default(void)
{
    dt_text_opts o = {.stem = true, .stopwords = true, .cjk_unigrams = true, .cjk_bigrams = true};
    return o;
}

dt_text *dt_text_new(const dt_text_opts *opts, dt_err *err)
{
    dt_text *t = calloc(1, sizeof *t);
    if (!t) {
        dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating a tokenizer");
        return NULL;
    }
    t->opts = opts ? *opts : dt_text_opts_default();
    if (t->opts.stem) {
        t->stemmer = sb_stemmer_new("english", "UTF_8");
        t->stems = calloc(STEM_CACHE_SLOTS, sizeof *t->stems);
        if (!t->stems) {
            if (t->stemmer) sb_stemmer_delete(t->stemmer);
            free(t);
            dt_err_set(err, DT_ENOMEM, NULL, "out of memory creating a tokenizer");
            return NULL;
        }
        if (!t->stemmer) {
            free(t->stems);
            free(t);
            dt_err_set(err, DT_EINTERNAL, NULL,
                       "libstemmer could not create the English (UTF_8) stemmer: check the "
                       "libstemmer installation or turn stemming off");
            return NULL;
        }
    }
    stop_set_build(&t->stop);
    return t;
}

void dt_text_free(dt_text *t)
{
    if (!t) return;
    if (t->stemmer) sb_stemmer_delete(t->stemmer);
    free(t->stems);
    free(t->cps.v);
    free(t);
}

/* Emits the word w[0..n) (code points, n >= 1) at position pos, or drops it. */
static int emit_word(dt_text *t, const int32_t *w, size_t n, bool num, uint32_t pos,
                     dt_tokens *out, dt_err *err)
{
    if (n > DT_TEXT_WORD_MAX) return 0;
    if (n == 1 && !num) return 0;
    int rc = buf_reserve(out, 4 * DT_TEXT_WORD_MAX, err);
    if (rc) return rc;
    char *p = out->buf + out->buf_len;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += utf8_put(p + len, w[i]);
    if (len > DT_TEXT_WORD_MAX) return 0;
    uint32_t bucket;
    if (num) {
        bucket = dt_text_bucket(p, len);
    } else {
        if (t->opts.stopwords && stop_set_has(&t->stop, p, len)) return 0;
        if (!t->stemmer) {
            bucket = dt_text_bucket(p, len);
        } else {
            stem_ent *e = NULL;
            uint64_t key = 0;
            if (len <= STEM_CACHE_WORD) {
                key = XXH3_64bits(p, len);
                e = &t->stems[key & (STEM_CACHE_SLOTS - 1)];
                if (e->wlen == len && e->key == key && memcmp(e->w, p, len) == 0) {
                    memcpy(p, e->s, e->slen);
                    len = e->slen;
                    bucket = e->bucket;
                    goto push;
                }
            }
            const sb_symbol *st = sb_stemmer_stem(t->stemmer, (const sb_symbol *)p, (int)len);
            if (!st) return dt_err_set(err, DT_ENOMEM, "text", "out of memory stemming a word");
            int sl = sb_stemmer_length(t->stemmer);
            if (sl <= 0) return 0;
            if ((size_t)sl > 4 * DT_TEXT_WORD_MAX) {
                rc = buf_reserve(out, (size_t)sl, err);
                if (rc) return rc;
                p = out->buf + out->buf_len;
            }
            bucket = dt_text_bucket((const char *)st, (size_t)sl);
            if (e && sl <= STEM_CACHE_WORD) {
                e->key = key;
                e->bucket = bucket;
                e->wlen = (uint8_t)len;
                e->slen = (uint8_t)sl;
                memcpy(e->w, p, len);
                memcpy(e->s, st, (size_t)sl);
            }
            memcpy(p, st, (size_t)sl);
            len = (size_t)sl;
        }
    }
push:
    rc = tok_push(out, (uint32_t)out->buf_len, len, num ? DT_TOK_NUM : DT_TOK_WORD, pos, bucket,
                  err);
    if (rc) return rc;
    out->buf_len += len;
    return 0;
}

/* Emits the unigrams and bigrams of the CJK run r[0..n) (n >= 1), its first character at pos.
 * The run's characters are written once; a unigram is one character's bytes, a bigram the bytes
 * of two neighbours, so both point into the same stretch of buf. */
static int emit_cjk(dt_text *t, const int32_t *r, size_t n, uint32_t pos, dt_tokens *out,
                    dt_err *err)
{
    bool uni = t->opts.cjk_unigrams || (t->opts.cjk_bigrams && n == 1);
    bool bi = t->opts.cjk_bigrams;
    if (!uni && !bi) return 0;
    if (n > ((size_t)UINT32_MAX) / 4)
        return dt_err_set(err, DT_ELIMIT, "text", "a run of %zu CJK characters is too long", n);
    int rc = buf_reserve(out, 4 * n, err);
    if (rc) return rc;
    uint32_t off = (uint32_t)out->buf_len;
    char *base = out->buf;
    uint32_t cur_len = (uint32_t)utf8_put(base + off, r[0]);
    for (size_t i = 0; i < n; i++) {
        uint32_t next_off = off + cur_len;
        uint32_t next_len = i + 1 < n ? (uint32_t)utf8_put(base + next_off, r[i + 1]) : 0;
        if (uni && !(t->opts.stopwords && is_cjk_stop(r[i]))) {
            rc = tok_push(out, off, cur_len, DT_TOK_CJK1, pos + (uint32_t)i,
                          dt_text_bucket(base + off, cur_len), err);
            if (rc) return rc;
        }
        if (bi && i + 1 < n) {
            rc = tok_push(out, off, cur_len + next_len, DT_TOK_CJK2, pos + (uint32_t)i,
                          dt_text_bucket(base + off, cur_len + next_len), err);
            if (rc) return rc;
        }
        off = next_off;
        cur_len = next_len;
    }
    out->buf_len = off;
    return 0;
}

static int tokenize_cps(dt_text *t, const int32_t *cp, size_t n, dt_tokens *out, dt_err *err)
{
    uint64_t pos = out->next_pos;
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        int c = cp_class(cp[i]);
        if (c == C_SEP || c == C_MARK) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (c == C_CJK) {
            while (j < n && cp_class(cp[j]) == C_CJK) j++;
            if (pos + (j - i) > UINT32_MAX) goto too_many;
            rc = emit_cjk(t, cp + i, j - i, (uint32_t)pos, out, err);
            if (rc) return rc;
            pos += j - i;
            i = j;
            continue;
        }
        bool num = c == C_DIGIT;
        size_t first_dot = 0;
        for (; j < n; j++) {
            int k = cp_class(cp[j]);
            if (k == C_DIGIT) continue;
            if (k == C_LETTER || k == C_MARK) {
                if (num && first_dot) {
                    j = first_dot;
                    break;
                }
                num = false;
                continue;
            }
            if (num && cp[j] == '.' && is_ascii_digit(cp[j - 1]) && j + 1 < n &&
                is_ascii_digit(cp[j + 1])) {
                if (!first_dot) first_dot = j;
                continue;
            }
            break;
        }
        if (pos + 1 > UINT32_MAX) goto too_many;
        rc = emit_word(t, cp + i, j - i, num, (uint32_t)pos, out, err);
        if (rc) return rc;
        pos++;
        i = j;
    }
    out->next_pos = (uint32_t)pos;
    return 0;
too_many:
    return dt_err_set(err, DT_ELIMIT, "text",
                      "more than 2^32 - 1 token positions in one token list: tokenize less text "
                      "at once");
}

int dt_text_tokenize(dt_text *t, const char *s, size_t len, dt_tokens *out, dt_err *err)
{
    int rc = utf8_error(s, len, err);
    if (rc) return rc;
    if (len == 0) return 0;
    size_t n0 = out->n, b0 = out->buf_len;
    uint32_t p0 = out->next_pos;
    rc = normalize_cps((const unsigned char *)s, len, &t->cps, err);
    if (!rc) rc = tokenize_cps(t, t->cps.v, t->cps.n, out, err);
    if (rc) {
        out->n = n0;
        out->buf_len = b0;
        out->next_pos = p0;
    }
    return rc;
}
