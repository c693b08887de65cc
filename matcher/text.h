/* text.h - tokenizer and feature hashing (DESIGN section 2, "Tokens").
 *
 * Turns UTF-8 text (Chinese, English, or mixed) into a stream of hashed tokens:
 *   - the text is normalised with NFKC + full case folding + removal of default-ignorable code points
 *     (libutf8proc), so "ＡＢＣ１２" is "abc12" and "Straße" is "strasse";
 *   - non-CJK letters, digits and combining marks form words; anything else (space, punctuation,
 *     symbols, apostrophes, hyphens) splits them: "don't" -> "don" + "t", "Li-ion" -> "li" + "ion";
 *   - a word made only of decimal digits is a number (DT_TOK_NUM); a '.' between two ASCII digits
 *     stays inside a number ("3.14", "1.2.3"); numbers are never stemmed nor stop-listed;
 *   - words of a single code point that are not numbers ("t" of "don't", "s" of "it's", "x" of
 *     "x-ray") are dropped: they are mostly fragments and carry little matching signal;
 *   - words longer than DT_TEXT_WORD_MAX bytes (after normalisation) are dropped (hashes, base64);
 *   - English stop words (the Snowball English list plus the fragments that apostrophe splitting
 *     leaves, such as "don", "isn", "ll", "ve") are dropped when opts.stopwords;
 *   - words are stemmed with the Snowball English (Porter2) stemmer when opts.stem;
 *   - a run of CJK characters (Han ideographs of every extension, kana, hangul) yields a unigram
 *     per character (DT_TOK_CJK1) and a bigram per adjacent pair (DT_TOK_CJK2). Anything that is
 *     not CJK (punctuation such as ，。、《》, a Latin word, a digit) ends the run. When
 *     opts.stopwords, unigrams of a few Chinese function characters (的 了 和 与 及 在 是 之 或 等 于
 *     其 并 而 被 把 着 也) are dropped; bigrams containing them are kept. When only bigrams are on, a
 *     run of one character still yields its unigram, so no character is lost.
 *
 * Positions: dt_token.pos is the ordinal of the word, or of the CJK character, the token starts at,
 * counted in the text. Dropped words still take a position, so pos differences are distances in
 * the text; a CJK unigram and the bigram starting at the same character share a position. Positions
 * continue across calls that append to the same dt_tokens (dt_tokens.next_pos); a caller may add
 * to next_pos to put a gap between fields.
 *
 * Hashing: each token's final text is hashed with XXH3-64 and DT_TEXT_SEED; the low
 * DT_TEXT_BUCKET_BITS bits are its bucket. No vocabulary is stored, and a token's bucket never
 * changes between versions.
 *
 * Not here: weighting (vec.c), the index (index.c). This module does no I/O and has no global
 * mutable state.
 */
#ifndef DT_TEXT_H
#define DT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dt.h"

#define DT_TEXT_BUCKET_BITS 20             /* 2^20 hash buckets */
#define DT_TEXT_BUCKETS (1u << DT_TEXT_BUCKET_BITS)
#define DT_TEXT_SEED 0x446f76657461696cULL /* fixed forever: changing it changes every stored vector */
/* The tokenization rules' version: bump it with any change of what a text yields (normalisation,
 * splitting, stop words, stemming, CJK n-grams). Snapshots store counted terms under it and fall
 * back to re-tokenizing when it differs. */
#define DT_TEXT_RULES 1
#define DT_TEXT_WORD_MAX 64                /* bytes of a normalised word; longer words are dropped */

typedef enum { DT_TOK_WORD = 0, DT_TOK_NUM = 1, DT_TOK_CJK1 = 2, DT_TOK_CJK2 = 3 } dt_tok_kind;

/* One token. off/len: its final text (normalised, stemmed; UTF-8, not NUL-terminated) at
 * dt_tokens.buf + off. bucket: dt_text_bucket of that text. kind: a dt_tok_kind. pos: see above. */
typedef struct dt_token {
    uint32_t bucket;
    uint32_t off;
    uint16_t len;
    uint8_t kind;
    uint32_t pos;
} dt_token;

/* A growable list of tokens and the bytes of their texts. Owns v and buf (both grow by doubling).
 * next_pos: the position the next appended token will start from. */
typedef struct dt_tokens {
    dt_token *v;
    size_t n, cap;
    char *buf;
    size_t buf_len, buf_cap;
    uint32_t next_pos;
} dt_tokens;

/* Empties t without allocating. */
void dt_tokens_init(dt_tokens *t);
/* Forgets every token (n, buf_len and next_pos back to 0) but keeps the memory for reuse. */
void dt_tokens_clear(dt_tokens *t);
/* Frees what t owns and re-initialises it. t itself is not freed. NULL is fine. */
void dt_tokens_free(dt_tokens *t);

/* The text of token i of t (len bytes: t->v[i].len, not NUL-terminated). i < t->n. */
static inline const char *dt_token_text(const dt_tokens *t, size_t i)
{
    return t->buf + t->v[i].off;
}

typedef struct dt_text_opts {
    bool stem;         /* Porter2 (Snowball English) stemming of words */
    bool stopwords;    /* drop English stop words and Chinese function-character unigrams */
    bool cjk_unigrams; /* one token per CJK character */
    bool cjk_bigrams;  /* one token per adjacent pair of CJK characters */
} dt_text_opts;

/* Every option on. */
dt_text_opts dt_text_opts_default(void);

/* A tokenizer: its options, a Snowball stemmer with a cache of recent stems (about 256 KiB), the
 * stop list and a reusable code-point buffer. Not thread-safe: use one per thread. */
typedef struct dt_text dt_text;

/* A tokenizer with *opts (NULL: dt_text_opts_default()). Returns NULL and fills err on failure
 * (-DT_ENOMEM, or DT_EINTERNAL when the Snowball English stemmer is unavailable). Free with
 * dt_text_free. */
dt_text *dt_text_new(const dt_text_opts *opts, dt_err *err);
/* Frees t. NULL is fine. */
void dt_text_free(dt_text *t);

/* Appends the tokens of s[0..len) to out (see the banner for the rules). s need not be
 * NUL-terminated; embedded NULs are separators. Returns 0, or:
 *   -DT_EINVAL  s is not valid UTF-8: err->field is "text", err->msg gives the byte offset of the
 *               first ill-formed sequence (callers tokenizing another field may rename err->field);
 *   -DT_ENOMEM  an allocation failed;
 *   -DT_ELIMIT  out would exceed 2^32 - 1 bytes of token text or positions;
 *   -DT_EINTERNAL  libutf8proc or the stemmer failed on valid input.
 * On error out is left exactly as it was before the call. Uses t's stemmer and buffers: one call
 * at a time per t. No allocation once out and t have grown to fit. */
int dt_text_tokenize(dt_text *t, const char *s, size_t len, dt_tokens *out, dt_err *err);

/* 0 when s[0..len) is well-formed UTF-8 (Unicode table 3-7: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence), else -1 and *bad_off (when non-NULL) = offset of
 * the first byte of the first ill-formed sequence. Thread-safe. */
int dt_text_utf8_check(const char *s, size_t len, size_t *bad_off);

/* NFKC + full case folding + removal of default-ignorable code points (utf8proc's
 * NFKC_Casefold) of s[0..len), the normalisation the tokenizer applies. On success *out is a new
 * malloc'd NUL-terminated string the caller frees, *out_len its length in bytes (out_len may be
 * NULL). Returns 0, -DT_EINVAL (invalid UTF-8, offset in err->msg), -DT_ENOMEM or -DT_EINTERNAL;
 * *out is NULL on error. Thread-safe. */
int dt_text_normalize(const char *s, size_t len, char **out, size_t *out_len, dt_err *err);

/* XXH3_64bits_withSeed(tok, len, DT_TEXT_SEED). Thread-safe. */
uint64_t dt_text_hash(const char *tok, size_t len);
/* The low DT_TEXT_BUCKET_BITS bits of dt_text_hash(tok, len): 0 .. DT_TEXT_BUCKETS - 1. */
uint32_t dt_text_bucket(const char *tok, size_t len);

#endif
