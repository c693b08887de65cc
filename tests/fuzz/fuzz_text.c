/* fuzz_text.c - libFuzzer target: the tokenizer and the normaliser (matcher/text.h).
 *
 * Input: one byte whose low 4 bits pick the tokenizer options (stem, stopwords, CJK unigrams,
 * CJK bigrams), then the text. Checks:
 *   - dt_text_utf8_check and dt_utf8_valid_prefix (record.h) agree on validity and on the offset
 *     of the first bad byte;
 *   - dt_text_normalize succeeds exactly on valid UTF-8, gives valid UTF-8, and is idempotent;
 *   - dt_text_tokenize appending to a non-empty dt_tokens: on invalid UTF-8 -DT_EINVAL and the
 *     tokens untouched; on valid text success, every new token inside the buffer, its bucket
 *     dt_text_bucket of its text, its text valid UTF-8, words within DT_TEXT_WORD_MAX bytes, CJK
 *     unigrams one code point and bigrams two, no kind the options turn off, positions between
 *     the previous next_pos and the new one;
 *   - tokenizing the same text again (the stem cache now warm) gives the same tokens.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text.h"

static dt_text *tokenizers[16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    for (int i = 0; i < 16; i++) {
        dt_text_opts o = {(i & 1) != 0, (i & 2) != 0, (i & 4) != 0, (i & 8) != 0};
        dt_err err = DT_ERR_INIT;
        tokenizers[i] = dt_text_new(&o, &err);
        fz_check(tokenizers[i] != NULL, "dt_text_new: %s", err.msg);
    }
    return 0;
}

static size_t code_points(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

static const char PRE[] = "Solid-state batteries 固态电池 3.14";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int oi = data[0] & 15;
    dt_text_opts o = {(oi & 1) != 0, (oi & 2) != 0, (oi & 4) != 0, (oi & 8) != 0};
    dt_text *tk = tokenizers[oi];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    size_t bad = (size_t)-1;
    bool valid = dt_text_utf8_check(s, n, &bad) == 0;
    size_t prefix = dt_utf8_valid_prefix(s, n);
    fz_check(valid == (prefix == n), "dt_text_utf8_check says %s, dt_utf8_valid_prefix %zu of %zu",
             valid ? "valid" : "invalid", prefix, n);
    if (!valid) fz_check(bad == prefix, "first bad byte at %zu, valid prefix %zu", bad, prefix);

    dt_err err = DT_ERR_INIT;
    char *norm = NULL;
    size_t norm_len = 0;
    int rc = dt_text_normalize(s, n, &norm, &norm_len, &err);
    if (!valid) {
        fz_check(rc == -DT_EINVAL && norm == NULL, "normalize of invalid UTF-8: rc %d", rc);
    } else {
        fz_check(rc == 0 && norm != NULL, "normalize of valid UTF-8 failed: %d %s", rc, err.msg);
        fz_check(norm[norm_len] == 0, "normalized text not terminated at its length");
        fz_check(dt_text_utf8_check(norm, norm_len, NULL) == 0, "normalized text is not valid UTF-8");
        char *again = NULL;
        size_t again_len = 0;
        rc = dt_text_normalize(norm, norm_len, &again, &again_len, &err);
        fz_check(rc == 0, "normalize of normalized text failed: %s", err.msg);
        fz_check(again_len == norm_len && memcmp(again, norm, norm_len) == 0,
                 "normalize is not idempotent (%zu then %zu bytes)", norm_len, again_len);
        free(again);
        free(norm);
    }

    dt_tokens t;
    dt_tokens_init(&t);
    fz_check(dt_text_tokenize(tk, PRE, sizeof PRE - 1, &t, &err) == 0, "tokenize of a fixed text: %s", err.msg);
    t.next_pos += 3;
    size_t n0 = t.n, buf0 = t.buf_len;
    uint32_t pos0 = t.next_pos;
    dt_token *v0 = malloc(n0 * sizeof *v0);
    char *b0 = malloc(buf0 ? buf0 : 1);
    fz_check(v0 && b0, "out of memory");
    memcpy(v0, t.v, n0 * sizeof *v0);
    memcpy(b0, t.buf, buf0);

    rc = dt_text_tokenize(tk, s, n, &t, &err);
    if (!valid) {
        fz_check(rc == -DT_EINVAL, "tokenize of invalid UTF-8 returned %d", rc);
        fz_check(t.n == n0 && t.buf_len == buf0 && t.next_pos == pos0, "a failed tokenize changed the tokens");
    } else {
        fz_check(rc == 0, "tokenize of valid UTF-8 failed: %d %s: %s", rc, err.field, err.msg);
        for (size_t i = n0; i < t.n; i++) {
            const dt_token *k = &t.v[i];
            fz_check((size_t)k->off + k->len <= t.buf_len, "token %zu outside the buffer", i);
            const char *txt = dt_token_text(&t, i);
            fz_check(k->len > 0, "empty token %zu", i);
            fz_check(k->bucket == dt_text_bucket(txt, k->len), "token %zu: bucket is not its text's", i);
            fz_check(dt_text_utf8_check(txt, k->len, NULL) == 0, "token %zu is not valid UTF-8", i);
            fz_check(k->pos >= pos0 && k->pos < t.next_pos, "token %zu at position %u outside %u..%u", i, k->pos,
                     pos0, t.next_pos);
            switch (k->kind) {
            case DT_TOK_WORD:
            case DT_TOK_NUM:
                fz_check(k->len <= DT_TEXT_WORD_MAX, "word of %u bytes", k->len);
                break;
            case DT_TOK_CJK1:
                fz_check(code_points(txt, k->len) == 1, "CJK unigram of %zu code points", code_points(txt, k->len));
                fz_check(o.cjk_unigrams || o.cjk_bigrams, "CJK unigram with CJK tokens off");
                break;
            case DT_TOK_CJK2:
                fz_check(code_points(txt, k->len) == 2, "CJK bigram of %zu code points", code_points(txt, k->len));
                fz_check(o.cjk_bigrams, "CJK bigram with bigrams off");
                break;
            default: fz_check(false, "token %zu of kind %u", i, k->kind);
            }
        }
        dt_tokens u;
        dt_tokens_init(&u);
        fz_check(dt_text_tokenize(tk, s, n, &u, &err) == 0, "second tokenize failed: %s", err.msg);
        fz_check(u.n == t.n - n0, "second tokenize: %zu tokens, first %zu", u.n, t.n - n0);
        for (size_t i = 0; i < u.n; i++) {
            const dt_token *a = &t.v[n0 + i], *b = &u.v[i];
            fz_check(a->bucket == b->bucket && a->len == b->len && a->kind == b->kind && a->pos - pos0 == b->pos &&
                         memcmp(dt_token_text(&t, n0 + i), dt_token_text(&u, i), a->len) == 0,
                     "second tokenize differs at token %zu", i);
        }
        fz_check(u.next_pos == t.next_pos - pos0, "second tokenize ends at position %u, first at %u", u.next_pos,
                 t.next_pos - pos0);
        dt_tokens_free(&u);
    }
    fz_check(memcmp(t.v, v0, n0 * sizeof *v0) == 0 && memcmp(t.buf, b0, buf0) == 0,
             "tokenize changed the tokens it appended to");
    free(v0);
    free(b0);
    dt_tokens_free(&t);
    return 0;
}
