/* test_text.c - unit tests of matcher/text.c: normalisation, words, stop words, stemming, CJK
 * n-grams, positions, UTF-8 validation, hashing, and fuzzing with random bytes.
 *
 * Expected stems come from the Snowball English (Porter2) documentation and sample vocabulary;
 * expected foldings from Unicode's CaseFolding.txt; UTF-8 validity from a separate decoder written
 * here to Unicode's definition; normalisation is compared with utf8proc_map on the whole text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <libstemmer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "text.h"

typedef struct exp_tok {
    int kind;
    const char *text;
    uint32_t pos;
} exp_tok;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static dt_text *new_text(bool stem, bool stop, bool uni, bool bi)
{
    dt_text_opts o = {.stem = stem, .stopwords = stop, .cjk_unigrams = uni, .cjk_bigrams = bi};
    dt_err err = DT_ERR_INIT;
    dt_text *t = dt_text_new(&o, &err);
    assert_non_null(t);
    return t;
}

static bool tok_is(const dt_tokens *out, size_t i, const char *s)
{
    return out->v[i].len == strlen(s) && memcmp(dt_token_text(out, i), s, out->v[i].len) == 0;
}

static void print_tokens(const dt_tokens *out)
{
    for (size_t i = 0; i < out->n; i++)
        print_message("  [%zu] kind=%d pos=%u '%.*s'\n", i, out->v[i].kind, out->v[i].pos,
                      (int)out->v[i].len, dt_token_text(out, i));
}

static void expect_tokens(dt_text *t, const char *s, const exp_tok *exp, size_t n_exp)
{
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, s, strlen(s), &out, &err), 0);
    bool ok = out.n == n_exp;
    for (size_t i = 0; ok && i < n_exp; i++)
        ok = out.v[i].kind == exp[i].kind && tok_is(&out, i, exp[i].text) &&
             out.v[i].pos == exp[i].pos;
    if (!ok) {
        print_message("input '%s': got %zu tokens, expected %zu\n", s, out.n, n_exp);
        print_tokens(&out);
    }
    assert_true(ok);
    dt_tokens_free(&out);
}

/* Number of tokens of s whose text is `word` (any kind). */
static size_t count_token(dt_text *t, const char *s, const char *word)
{
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, s, strlen(s), &out, &err), 0);
    size_t c = 0;
    for (size_t i = 0; i < out.n; i++)
        c += tok_is(&out, i, word);
    dt_tokens_free(&out);
    return c;
}

static size_t n_tokens(dt_text *t, const char *s, size_t len)
{
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, s, len, &out, &err), 0);
    size_t n = out.n;
    dt_tokens_free(&out);
    return n;
}

/* Independent UTF-8 decoder to Unicode's definition: decode by the lead byte's bit pattern, then
 * reject bad continuation bytes, overlong forms, surrogates and values above U+10FFFF. Returns the
 * offset of the first ill-formed sequence, or len. */
static size_t ref_utf8_bad(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned b = s[i];
        size_t n;
        uint32_t v, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, v = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, v = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, v = b & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (i + n > len) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            v = (v << 6) | (s[i + k] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return i;
        i += n;
    }
    return len;
}

static size_t put_utf8(unsigned char *p, uint32_t c)
{
    if (c < 0x80) {
        p[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        p[0] = (unsigned char)(0xC0 | (c >> 6));
        p[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        p[0] = (unsigned char)(0xE0 | (c >> 12));
        p[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    p[0] = (unsigned char)(0xF0 | (c >> 18));
    p[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    p[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    p[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* Every structural promise of a token list. */
static void check_invariants(const dt_tokens *out, const dt_text_opts *o)
{
    uint32_t last_pos = 0;
    for (size_t i = 0; i < out->n; i++) {
        const dt_token *k = &out->v[i];
        assert_true(k->len > 0);
        assert_true((size_t)k->off + k->len <= out->buf_len);
        assert_true(k->kind <= DT_TOK_CJK2);
        const char *s = dt_token_text(out, i);
        assert_int_equal(k->bucket, dt_text_bucket(s, k->len));
        assert_true(k->bucket < DT_TEXT_BUCKETS);
        size_t bad;
        assert_int_equal(dt_text_utf8_check(s, k->len, &bad), 0);
        assert_true(k->pos >= last_pos);
        assert_true(k->pos < out->next_pos);
        last_pos = k->pos;
        size_t ncp = 0;
        for (size_t j = 0; j < k->len; j++)
            ncp += ((unsigned char)s[j] & 0xC0) != 0x80;
        if (k->kind == DT_TOK_CJK1) {
            assert_int_equal(ncp, 1);
            assert_true(o->cjk_unigrams || o->cjk_bigrams);
        }
        if (k->kind == DT_TOK_CJK2) {
            assert_int_equal(ncp, 2);
            assert_true(o->cjk_bigrams);
        }
        if (k->kind == DT_TOK_NUM) {
            for (size_t j = 0; j < k->len; j++)
                if ((unsigned char)s[j] < 0x80)
                    assert_true((s[j] >= '0' && s[j] <= '9') || s[j] == '.');
        }
        if (k->kind == DT_TOK_WORD || k->kind == DT_TOK_NUM) {
            assert_true(k->len <= DT_TEXT_WORD_MAX);
            for (size_t j = 0; j < k->len; j++) {
                unsigned char c = (unsigned char)s[j];
                assert_false(c < 0x80 &&
                             !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'));
            }
        }
    }
}

static void test_english_stem_stop(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, true, true);
    const exp_tok e1[] = {{DT_TOK_WORD, "run", 0}, {DT_TOK_WORD, "flow", 1}};
    expect_tokens(t, "running flows", e1, 2);
    const exp_tok e2[] = {
        {DT_TOK_WORD, "run", 1}, {DT_TOK_WORD, "flow", 2}, {DT_TOK_WORD, "water", 5}};
    expect_tokens(t, "The running flows of the water", e2, 3);

    /* Porter2 (Snowball English) documentation and sample vocabulary. */
    static const char *const pairs[][2] = {
        {"caresses", "caress"},
        {"ponies", "poni"},
        {"ties", "tie"},
        {"cats", "cat"},
        {"hopping", "hop"},
        {"consigned", "consign"},
        {"consigning", "consign"},
        {"consignment", "consign"},
        {"knackeries", "knackeri"},
        {"kneaded", "knead"},
        {"knightly", "knight"},
        {"knitting", "knit"},
        {"knives", "knive"},
        {"generalizations", "general"},
        {"skies", "sky"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const exp_tok e[] = {{DT_TOK_WORD, pairs[i][1], 0}};
        expect_tokens(t, pairs[i][0], e, 1);
    }

    /* Snowball's English stop list (apostrophe forms split into fragments). */
    static const char *const stop[] = {
        "me",       "my",      "myself",    "we",       "our",        "ours",    "ourselves",
        "you",      "your",    "yours",     "yourself", "yourselves", "he",      "him",
        "his",      "himself", "she",       "her",      "hers",       "herself", "it",
        "its",      "itself",  "they",      "them",     "their",      "theirs",  "themselves",
        "what",     "which",   "who",       "whom",     "this",       "that",    "these",
        "those",    "am",      "is",        "are",      "was",        "were",    "be",
        "been",     "being",   "have",      "has",      "had",        "having",  "do",
        "does",     "did",     "doing",     "would",    "should",     "could",   "ought",
        "cannot",   "an",      "the",       "and",      "but",        "if",      "or",
        "because",  "as",      "until",     "while",    "of",         "at",      "by",
        "for",      "with",    "about",     "against",  "between",    "into",    "through",
        "during",   "before",  "after",     "above",    "below",      "to",      "from",
        "up",       "down",    "in",        "out",      "on",         "off",     "over",
        "under",    "again",   "further",   "then",     "once",       "here",    "there",
        "when",     "where",   "why",       "how",      "all",        "any",     "both",
        "each",     "few",     "more",      "most",     "other",      "some",    "such",
        "no",       "nor",     "not",       "only",     "own",        "same",    "so",
        "than",     "too",     "very",      "I'm",      "you're",     "he's",    "it's",
        "we've",    "they'd",  "she'll",    "isn't",    "aren't",     "wasn't",  "weren't",
        "hasn't",   "haven't", "hadn't",    "doesn't",  "don't",      "didn't",  "won't",
        "wouldn't", "shan't",  "shouldn't", "can't",    "couldn't",   "mustn't", "THE",
        "Of",
    };
    dt_text *nostem = new_text(false, true, true, true);
    for (size_t i = 0; i < sizeof stop / sizeof stop[0]; i++) {
        if (n_tokens(t, stop[i], strlen(stop[i])) != 0 ||
            n_tokens(nostem, stop[i], strlen(stop[i])) != 0)
            fail_msg("stop word '%s' was not dropped", stop[i]);
    }
    /* Near misses are kept. */
    assert_int_equal(count_token(nostem, "thee theirsx ab", "thee"), 1);
    assert_int_equal(count_token(nostem, "thee theirsx ab", "theirsx"), 1);
    assert_int_equal(count_token(nostem, "thee theirsx ab", "ab"), 1);

    dt_text *nostop = new_text(false, false, true, true);
    const exp_tok e3[] = {{DT_TOK_WORD, "the", 0},
                          {DT_TOK_WORD, "running", 1},
                          {DT_TOK_WORD, "flows", 2},
                          {DT_TOK_WORD, "don", 3}};
    expect_tokens(nostop, "the running flows, don't", e3, 4);
    const exp_tok e4[] = {{DT_TOK_WORD, "li", 0},
                          {DT_TOK_WORD, "ion", 1},
                          {DT_TOK_WORD, "ray", 3},
                          {DT_TOK_WORD, "don", 4}};
    expect_tokens(nostop, "Li-ion X-ray don\xE2\x80\x99t", e4, 4);
    dt_text_free(nostop);
    dt_text_free(nostem);
    dt_text_free(t);
}

static void test_fullwidth(void **state)
{
    (void)state;
    char *o = NULL;
    size_t ol = 0;
    dt_err err = DT_ERR_INIT;
    const char *fw =
        "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xEF\xBC\x91\xEF\xBC\x92"; /* ＡＢＣ１２ */
    assert_int_equal(dt_text_normalize(fw, strlen(fw), &o, &ol, &err), 0);
    assert_string_equal(o, "abc12");
    assert_int_equal(ol, 5);
    free(o);

    dt_text *t = new_text(true, true, true, true);
    const exp_tok e1[] = {{DT_TOK_WORD, "abc12", 0}};
    expect_tokens(t, fw, e1, 1);
    /* ｒｕｎｎｉｎｇ　１２３ (ideographic space between) */
    const exp_tok e2[] = {{DT_TOK_WORD, "run", 0}, {DT_TOK_NUM, "123", 1}};
    expect_tokens(t,
                  "\xEF\xBD\x92\xEF\xBD\x95\xEF\xBD\x8E\xEF\xBD\x8E\xEF\xBD\x89\xEF\xBD\x8E\xEF\xBD"
                  "\x87\xE3\x80\x80\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93",
                  e2, 2);
    /* Ligature ﬁ (U+FB01) and superscript ² decompose: "ﬁber" -> "fiber", "m²" -> "m2". */
    const char *lig = "\xEF\xAC\x81"
                      "ber m\xC2\xB2";
    assert_int_equal(dt_text_normalize(lig, strlen(lig), &o, &ol, &err), 0);
    assert_string_equal(o, "fiber m2");
    free(o);
    dt_text_free(t);
}

static void test_case_folding(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL;
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_normalize("STRASSE", 7, &a, NULL, &err), 0);
    assert_int_equal(dt_text_normalize("Stra\xC3\x9F"
                                       "e",
                                       7, &b, NULL, &err),
                     0);
    assert_string_equal(a, "strasse");
    assert_string_equal(b, "strasse");
    free(a);
    free(b);

    /* Greek: capital sigma and final sigma both fold to small sigma. */
    const char *up = "\xCE\xA3\xCE\x8A\xCE\xA3\xCE\xA5\xCE\xA6\xCE\x9F\xCE\xA3"; /* ΣΊΣΥΦΟΣ */
    const char *lo = "\xCF\x83\xCE\xAF\xCF\x83\xCF\x85\xCF\x86\xCE\xBF\xCF\x82"; /* σίσυφος */
    assert_int_equal(dt_text_normalize(up, strlen(up), &a, NULL, &err), 0);
    assert_int_equal(dt_text_normalize(lo, strlen(lo), &b, NULL, &err), 0);
    assert_string_equal(a, b);
    assert_string_equal(a, "\xCF\x83\xCE\xAF\xCF\x83\xCF\x85\xCF\x86\xCE\xBF\xCF\x83");
    free(a);
    free(b);

    dt_text *t = new_text(true, true, true, true);
    const char *forms[] = {"STRASSE",
                           "Stra\xC3\x9F"
                           "e",
                           "strasse",
                           "STRA\xE1\xBA\x9E"
                           "E"};
    dt_tokens ref;
    dt_tokens_init(&ref);
    assert_int_equal(dt_text_tokenize(t, forms[0], strlen(forms[0]), &ref, &err), 0);
    assert_int_equal(ref.n, 1);
    for (size_t i = 1; i < 4; i++) {
        dt_tokens out;
        dt_tokens_init(&out);
        assert_int_equal(dt_text_tokenize(t, forms[i], strlen(forms[i]), &out, &err), 0);
        assert_int_equal(out.n, 1);
        assert_int_equal(out.v[0].len, ref.v[0].len);
        assert_memory_equal(dt_token_text(&out, 0), dt_token_text(&ref, 0), ref.v[0].len);
        assert_int_equal(out.v[0].bucket, ref.v[0].bucket);
        dt_tokens_free(&out);
    }
    dt_tokens_free(&ref);

    /* Precomposed and decomposed accents give the same word: "ÉCOLE" / "e" + U+0301 + "cole". */
    dt_text *nostem = new_text(false, true, true, true);
    const exp_tok e[] = {{DT_TOK_WORD,
                          "\xC3\xA9"
                          "cole",
                          0},
                         {DT_TOK_WORD,
                          "\xC3\xA9"
                          "cole",
                          1}};
    expect_tokens(nostem,
                  "\xC3\x89"
                  "COLE E\xCC\x81"
                  "cole",
                  e, 2);
    dt_text_free(nostem);
    dt_text_free(t);
}

static void test_chinese(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, true, true);
    const exp_tok e[] = {
        {DT_TOK_CJK1, "锂", 0},   {DT_TOK_CJK2, "锂电", 0}, {DT_TOK_CJK1, "电", 1},
        {DT_TOK_CJK2, "电池", 1}, {DT_TOK_CJK1, "池", 2},   {DT_TOK_CJK2, "池隔", 2},
        {DT_TOK_CJK1, "隔", 3},   {DT_TOK_CJK2, "隔膜", 3}, {DT_TOK_CJK1, "膜", 4},
    };
    expect_tokens(t, "锂电池隔膜", e, 9);

    dt_text *bi = new_text(true, true, false, true);
    const exp_tok e2[] = {
        {DT_TOK_CJK2, "锂电", 0}, {DT_TOK_CJK2, "电池", 1}, {DT_TOK_CJK1, "膜", 3}};
    expect_tokens(bi, "锂电池 膜", e2, 3);
    dt_text *uni = new_text(true, true, true, false);
    const exp_tok e3[] = {{DT_TOK_CJK1, "锂", 0}, {DT_TOK_CJK1, "电", 1}, {DT_TOK_CJK1, "池", 2}};
    expect_tokens(uni, "锂电池", e3, 3);
    dt_text *none = new_text(true, true, false, false);
    const exp_tok e4[] = {{DT_TOK_WORD, "batteri", 3}};
    expect_tokens(none, "锂电池battery", e4, 1);

    /* Kana, hangul, Ext A and Ext B ideographs are CJK; half-width katakana becomes full-width. */
    assert_int_equal(count_token(t, "リチウム", "リチ"), 1);
    assert_int_equal(count_token(t, "\xEF\xBE\x98\xEF\xBE\x81", "リチ"), 1);
    assert_int_equal(count_token(t, "배터리", "배터"), 1);
    assert_int_equal(count_token(t, "\xE3\x90\x80\xF0\xA0\x80\x80", "\xE3\x90\x80\xF0\xA0\x80\x80"),
                     1);

    /* Function characters: unigram dropped with stop words on, bigrams kept. */
    assert_int_equal(count_token(t, "电池的隔膜", "的"), 0);
    assert_int_equal(count_token(t, "电池的隔膜", "池的"), 1);
    assert_int_equal(count_token(t, "电池的隔膜", "的隔"), 1);
    dt_text *nostop = new_text(true, false, true, true);
    assert_int_equal(count_token(nostop, "电池的隔膜", "的"), 1);

    /* A long run: n unigrams and n - 1 bigrams. */
    char *run = malloc(3 * 1000 + 1);
    assert_non_null(run);
    for (int i = 0; i < 1000; i++)
        memcpy(run + 3 * i, (i & 1) ? "池" : "电", 3);
    assert_int_equal(n_tokens(t, run, 3000), 1999);
    free(run);

    dt_text_free(nostop);
    dt_text_free(none);
    dt_text_free(uni);
    dt_text_free(bi);
    dt_text_free(t);
}

static void test_mixed(void **state)
{
    (void)state;
    const char *s = "基于AI的锂电池隔膜coating技术";
    dt_text *nostem = new_text(false, true, true, true);
    const exp_tok e[] = {
        {DT_TOK_CJK1, "基", 0},    {DT_TOK_CJK2, "基于", 0},    {DT_TOK_WORD, "ai", 2},
        {DT_TOK_CJK2, "的锂", 3},  {DT_TOK_CJK1, "锂", 4},      {DT_TOK_CJK2, "锂电", 4},
        {DT_TOK_CJK1, "电", 5},    {DT_TOK_CJK2, "电池", 5},    {DT_TOK_CJK1, "池", 6},
        {DT_TOK_CJK2, "池隔", 6},  {DT_TOK_CJK1, "隔", 7},      {DT_TOK_CJK2, "隔膜", 7},
        {DT_TOK_CJK1, "膜", 8},    {DT_TOK_WORD, "coating", 9}, {DT_TOK_CJK1, "技", 10},
        {DT_TOK_CJK2, "技术", 10}, {DT_TOK_CJK1, "术", 11},
    };
    expect_tokens(nostem, s, e, sizeof e / sizeof e[0]);
    dt_text *t = new_text(true, true, true, true);
    assert_int_equal(count_token(t, s, "ai"), 1);
    assert_int_equal(count_token(t, s, "coat"), 1);
    assert_int_equal(count_token(t, s, "膜c"), 0);
    assert_int_equal(count_token(t, s, "于a"), 0);
    /* Digits end a CJK run too. */
    const exp_tok e2[] = {{DT_TOK_NUM, "18650", 0},
                          {DT_TOK_CJK1, "型", 1},
                          {DT_TOK_NUM, "3", 2},
                          {DT_TOK_CJK1, "号", 3}};
    expect_tokens(t, "18650型3号", e2, 4);
    dt_text_free(t);
    dt_text_free(nostem);
}

static void test_cjk_punctuation(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, false, true);
    const exp_tok e[] = {
        {DT_TOK_CJK2, "锂电", 0},  {DT_TOK_CJK2, "电池", 1}, {DT_TOK_CJK2, "隔膜", 3},
        {DT_TOK_CJK2, "储能", 5},  {DT_TOK_CJK2, "材料", 7}, {DT_TOK_CJK2, "涂层", 9},
        {DT_TOK_CJK2, "工艺", 11},
    };
    expect_tokens(t, "锂电池，隔膜。《储能》、材料；涂层・工艺", e, sizeof e / sizeof e[0]);
    dt_text *u = new_text(true, true, true, true);
    static const char *const cross[] = {"池隔", "膜储", "能材", "料涂", "层工"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(count_token(u, "锂电池，隔膜。《储能》、材料；涂层・工艺", cross[i]), 0);
    dt_text_free(u);
    dt_text_free(t);
}

static void test_numbers(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, true, true);
    const exp_tok e[] = {
        {DT_TOK_WORD, "version", 0}, {DT_TOK_NUM, "3.14", 1},  {DT_TOK_NUM, "1.2.3", 3},
        {DT_TOK_NUM, "18650", 4},    {DT_TOK_WORD, "cell", 5}, {DT_TOK_NUM, "25", 7},
        {DT_TOK_NUM, "1998", 10},    {DT_TOK_NUM, "3", 11},    {DT_TOK_WORD, "5mm", 12},
        {DT_TOK_WORD, "co2", 13},    {DT_TOK_NUM, "42", 14},   {DT_TOK_NUM, "7", 15},
    };
    expect_tokens(t,
                  "version 3.14 of 1.2.3, 18650 cells at 25\xC2\xB0"
                  "C in 1998. 3.5mm CO2 "
                  "\xEF\xBC\x94\xEF\xBC\x92 7",
                  e, sizeof e / sizeof e[0]);
    /* Numbers are never stop-listed or stemmed, and a trailing or doubled dot is not kept. */
    const exp_tok e2[] = {
        {DT_TOK_NUM, "1", 0}, {DT_TOK_NUM, "2", 1}, {DT_TOK_NUM, "10", 2}, {DT_TOK_NUM, "0", 3}};
    expect_tokens(t, "1..2 10. .0", e2, 4);
    dt_text_free(t);
}

static void test_empty(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, true, true);
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, NULL, 0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    static const char *const blank[] = {"",           " ",           "  \t\r\n  ", "\xE3\x80\x80",
                                        "。，、《》", "--- ... !!!", "a b c",      "\xE2\x80\x8B"};
    for (size_t i = 0; i < sizeof blank / sizeof blank[0]; i++) {
        assert_int_equal(dt_text_tokenize(t, blank[i], strlen(blank[i]), &out, &err), 0);
        assert_int_equal(out.n, 0);
    }
    assert_int_equal(dt_text_tokenize(t, "\0\0x\0", 4, &out, &err), 0);
    assert_int_equal(out.n, 0);
    char *o = NULL;
    size_t ol = 9;
    assert_int_equal(dt_text_normalize("", 0, &o, &ol, &err), 0);
    assert_string_equal(o, "");
    assert_int_equal(ol, 0);
    free(o);
    dt_tokens_free(&out);
    dt_text_free(t);
}

static void test_positions_and_append(void **state)
{
    (void)state;
    dt_text *t = new_text(true, true, true, true);
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, "the running flows", 17, &out, &err), 0);
    assert_int_equal(out.next_pos, 3);
    out.next_pos += 100;
    assert_int_equal(dt_text_tokenize(t, "电池 of heat", strlen("电池 of heat"), &out, &err), 0);
    assert_int_equal(out.n, 6);
    assert_true(tok_is(&out, 0, "run") && out.v[0].pos == 1);
    assert_true(tok_is(&out, 1, "flow") && out.v[1].pos == 2);
    assert_true(tok_is(&out, 2, "电") && out.v[2].pos == 103);
    assert_true(tok_is(&out, 3, "电池") && out.v[3].pos == 103);
    assert_true(tok_is(&out, 4, "池") && out.v[4].pos == 104);
    assert_true(tok_is(&out, 5, "heat") && out.v[5].pos == 106);
    assert_int_equal(out.next_pos, 107);
    dt_text_opts o = dt_text_opts_default();
    check_invariants(&out, &o);
    dt_tokens_clear(&out);
    assert_int_equal(out.n, 0);
    assert_int_equal(out.buf_len, 0);
    assert_int_equal(out.next_pos, 0);
    assert_int_equal(dt_text_tokenize(t, "heat", 4, &out, &err), 0);
    assert_true(out.n == 1 && out.v[0].pos == 0 && tok_is(&out, 0, "heat"));
    dt_tokens_free(&out);
    dt_tokens_free(NULL);
    dt_text_free(NULL);
    dt_text_free(t);
}

static void test_long_words(void **state)
{
    (void)state;
    dt_text *t = new_text(false, false, true, true);
    char w[200];
    memset(w, 'q', sizeof w);
    assert_int_equal(n_tokens(t, w, DT_TEXT_WORD_MAX), 1);
    assert_int_equal(n_tokens(t, w, DT_TEXT_WORD_MAX + 1), 0);
    /* 32 two-byte letters = 64 bytes: kept; 33 = 66 bytes: dropped. */
    char g[80];
    for (int i = 0; i < 33; i++)
        memcpy(g + 2 * i, "\xCE\xB1", 2);
    assert_int_equal(n_tokens(t, g, 64), 1);
    assert_int_equal(n_tokens(t, g, 66), 0);
    /* A dropped word still takes a position. */
    char s[300];
    snprintf(s, sizeof s, "%.*s heat", 100, w);
    const exp_tok e[] = {{DT_TOK_WORD, "heat", 1}};
    expect_tokens(t, s, e, 1);
    dt_text_free(t);
}

struct bad_case {
    const char *s;
    size_t len;
    size_t off;
};

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct bad_case bad[] = {
        {"ab\xC0\xAF", 4, 2},          /* overlong '/' */
        {"\xC1\xBF", 2, 0},            /* overlong */
        {"\xE0\x80\xAF", 3, 0},        /* overlong 3-byte */
        {"abc\xF0\x80\x80\xAF", 7, 3}, /* overlong 4-byte */
        {"abc\xE4\xB8", 5, 3},         /* truncated at end */
        {"\xE4\xB8x", 3, 0},           /* truncated before ASCII */
        {"ok\xF0\x9F\x98", 5, 2},      /* truncated 4-byte */
        {"a\x80"
         "b",
         3, 1},                   /* lone continuation */
        {"\xBF", 1, 0},           /* lone continuation */
        {"xy\xED\xA0\x80", 5, 2}, /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, 0},   /* surrogate U+DFFF */
        {"\xFE", 1, 0},
        {"a\xFF", 2, 1},
        {"\xF4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
        {"\xF5\x80\x80\x80", 4, 0},
        {"abcdefghijkl\x80", 13, 12}, /* after the 8-byte ASCII path */
        {"锂电池\xE7\x94", 11, 9},
    };
    static const struct bad_case good[] = {
        {"\xC2\x80", 2, 0},         {"\xED\x9F\xBF", 3, 0},
        {"\xEE\x80\x80", 3, 0},     {"\xEF\xBF\xBF", 3, 0},
        {"\xF0\x90\x80\x80", 4, 0}, {"\xF4\x8F\xBF\xBF", 4, 0},
        {"\xEF\xBF\xBE", 3, 0},     {"\0", 1, 0},
    };
    dt_text *t = new_text(true, true, true, true);
    dt_tokens out;
    dt_tokens_init(&out);
    dt_err err = DT_ERR_INIT;
    assert_int_equal(dt_text_tokenize(t, "heat 电池", strlen("heat 电池"), &out, &err), 0);
    size_t n0 = out.n, b0 = out.buf_len;
    uint32_t p0 = out.next_pos;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off = 999;
        assert_int_equal(dt_text_utf8_check(bad[i].s, bad[i].len, &off), -1);
        assert_int_equal(off, bad[i].off);
        assert_int_equal(ref_utf8_bad((const unsigned char *)bad[i].s, bad[i].len), bad[i].off);
        memset(&err, 0, sizeof err);
        assert_int_equal(dt_text_tokenize(t, bad[i].s, bad[i].len, &out, &err), -DT_EINVAL);
        assert_int_equal(err.code, DT_EINVAL);
        assert_string_equal(err.field, "text");
        char want[48];
        snprintf(want, sizeof want, "offset %zu ", bad[i].off);
        if (!strstr(err.msg, want)) fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, want);
        assert_int_equal(out.n, n0);
        assert_int_equal(out.buf_len, b0);
        assert_int_equal(out.next_pos, p0);
        char *o = (char *)1;
        assert_int_equal(dt_text_normalize(bad[i].s, bad[i].len, &o, NULL, &err), -DT_EINVAL);
        assert_null(o);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t off = 999;
        assert_int_equal(dt_text_utf8_check(good[i].s, good[i].len, &off), 0);
        assert_int_equal(off, 999);
        assert_int_equal(ref_utf8_bad((const unsigned char *)good[i].s, good[i].len), good[i].len);
        assert_int_equal(dt_text_tokenize(t, good[i].s, good[i].len, &out, &err), 0);
    }
    dt_tokens_free(&out);
    dt_text_free(t);
}

/* dt_text_utf8_check against the reference decoder on random near-UTF-8 byte strings. */
static void test_utf8_check_vs_reference(void **state)
{
    (void)state;
    uint64_t rng = 42;
    unsigned char s[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = rng_next(&rng) % sizeof s, n = 0;
        while (n < len) {
            uint64_t r = rng_next(&rng);
            switch (r % 4) {
            case 0:
                s[n++] = (unsigned char)(r >> 8) & 0x7F;
                break;
            case 1:
                s[n++] = (unsigned char)(r >> 8);
                break;
            case 2:
                s[n++] = (unsigned char)(0x80 | ((r >> 8) & 0x3F));
                break;
            default: {
                unsigned char tmp[4];
                uint32_t c = (uint32_t)(r >> 8) % 0x110000;
                size_t k = put_utf8(tmp, c);
                for (size_t j = 0; j < k && n < len; j++)
                    s[n++] = tmp[j];
            }
            }
        }
        size_t want = ref_utf8_bad(s, len), off = 12345;
        int rc = dt_text_utf8_check((const char *)s, len, &off);
        if (want == len) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(off, want);
        }
    }
}

/* The segment-wise normaliser against utf8proc_map over the whole text. */
static void test_normalize_vs_utf8proc(void **state)
{
    (void)state;
    static const uint32_t pool[] = {
        'a',    'B',    'z',    'E',    'i',    'I',     ' ',     '-',    '.',    '1',
        0x0301, 0x0308, 0x0327, 0x0323, 0x0345, 0x00C9,  0x00DF,  0x1E9E, 0x0130, 0x03A3,
        0x03C2, 0x212A, 0x2126, 0xFB01, 0xFDFA, 0xFF21,  0xFF41,  0xFF11, 0x3000, 0x200B,
        0x00AD, 0x1100, 0x1161, 0x11A8, 0xAC00, 0x3131,  0xFF76,  0xFF9E, 0x3099, 0x304B,
        0x30AB, 0x7535, 0x6C60, 0x2460, 0x00B2, 0x1F600, 0x20000, 0x0627, 0x0644, 0x0915,
        0x093F, 0x0E01, 0x0E31, 0x00BD, 0x2163, 0x03D3,  0x1E0B,  0x0387,
    };
    const size_t np = sizeof pool / sizeof pool[0];
    uint64_t rng = 7;
    unsigned char s[200];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0, want = rng_next(&rng) % 40;
        for (size_t k = 0; k < want; k++)
            n += put_utf8(s + n, pool[rng_next(&rng) % np]);
        utf8proc_uint8_t *ref = NULL;
        utf8proc_ssize_t rl = utf8proc_map(s, (utf8proc_ssize_t)n, &ref,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT |
                                               UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);
        assert_true(rl >= 0);
        char *o = NULL;
        size_t ol = 0;
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_text_normalize((const char *)s, n, &o, &ol, &err), 0);
        if (ol != (size_t)rl || memcmp(o, ref, ol) != 0)
            fail_msg("normalisation differs from utf8proc_map for '%.*s'", (int)n, s);
        free(o);
        free(ref);
    }
}

/* A plain reference for ASCII text without dots: lower-case, split on non-alphanumerics, drop
 * one-letter words and words over DT_TEXT_WORD_MAX, digits-only words are numbers. */
static void test_ascii_vs_reference(void **state)
{
    (void)state;
    static const char alpha[] = "aBcXyz019 -'\t,_/(Q";
    dt_text *t = new_text(false, false, true, true);
    dt_tokens out;
    dt_tokens_init(&out);
    uint64_t rng = 99;
    char s[300];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng_next(&rng) % sizeof s;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng_next(&rng);
            s[i] = (r & 0x300) ? alpha[r % 9] : alpha[r % (sizeof alpha - 1)];
        }
        dt_tokens_clear(&out);
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_text_tokenize(t, s, len, &out, &err), 0);
        size_t k = 0, i = 0;
        uint32_t pos = 0;
        while (i < len) {
            if (!isalnum((unsigned char)s[i])) {
                i++;
                continue;
            }
            size_t j = i;
            bool digits = true;
            while (j < len && isalnum((unsigned char)s[j])) {
                digits = digits && isdigit((unsigned char)s[j]);
                j++;
            }
            if ((j - i >= 2 || digits) && j - i <= DT_TEXT_WORD_MAX) {
                assert_true(k < out.n);
                assert_int_equal(out.v[k].len, j - i);
                for (size_t q = 0; q < j - i; q++)
                    assert_int_equal(dt_token_text(&out, k)[q], tolower((unsigned char)s[i + q]));
                assert_int_equal(out.v[k].kind, digits ? DT_TOK_NUM : DT_TOK_WORD);
                assert_int_equal(out.v[k].pos, pos);
                k++;
            }
            pos++;
            i = j;
        }
        assert_int_equal(k, out.n);
        assert_int_equal(out.next_pos, pos);
    }
    dt_tokens_free(&out);
    dt_text_free(t);
}

/* Stems through the tokenizer (which caches them) equal libstemmer's, called directly, for many
 * words in a random order with repeats, so cache hits, misses and evictions all occur. */
static void test_stems_vs_libstemmer(void **state)
{
    (void)state;
    static const char *const roots[] = {
        "gener",  "connect", "relat", "hop",     "run",  "flow",   "batter", "knight", "consign",
        "electr", "cataly",  "sky",   "membran", "coat", "integr", "optim",  "sens",   "weld"};
    static const char *const suffixes[] = {"",         "s",   "es",      "ies",     "ing",
                                           "ed",       "ly",  "ness",    "ational", "ization",
                                           "izations", "ful", "fulness", "ive",     "iveness",
                                           "ement",    "ent", "er",      "y",       "al"};
    const size_t nr = sizeof roots / sizeof roots[0], ns = sizeof suffixes / sizeof suffixes[0];
    struct sb_stemmer *ref = sb_stemmer_new("english", "UTF_8");
    assert_non_null(ref);
    dt_text *t = new_text(true, false, true, true);
    dt_tokens out;
    dt_tokens_init(&out);
    uint64_t rng = 11;
    char w[128];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len;
        uint64_t r = rng_next(&rng);
        if (r & 1) {
            len =
                (size_t)snprintf(w, sizeof w, "%s%s%s", roots[(r >> 8) % nr],
                                 (r & 2) ? suffixes[(r >> 16) % ns] : "", suffixes[(r >> 24) % ns]);
        } else {
            len = 2 + (r >> 8) % 30;
            for (size_t i = 0; i < len; i++)
                w[i] = (char)('a' + rng_next(&rng) % 26);
        }
        dt_tokens_clear(&out);
        dt_err err = DT_ERR_INIT;
        assert_int_equal(dt_text_tokenize(t, w, len, &out, &err), 0);
        const sb_symbol *st = sb_stemmer_stem(ref, (const sb_symbol *)w, (int)len);
        assert_non_null(st);
        size_t sl = (size_t)sb_stemmer_length(ref);
        assert_int_equal(out.n, 1);
        if (out.v[0].len != sl || memcmp(dt_token_text(&out, 0), st, sl) != 0)
            fail_msg("'%.*s': tokenizer stem '%.*s', libstemmer '%.*s'", (int)len, w,
                     (int)out.v[0].len, dt_token_text(&out, 0), (int)sl, (const char *)st);
        assert_int_equal(out.v[0].bucket, dt_text_bucket((const char *)st, sl));
    }
    dt_tokens_free(&out);
    dt_text_free(t);
    sb_stemmer_delete(ref);
}

static void test_hash(void **state)
{
    (void)state;
    assert_int_equal(DT_TEXT_SEED, 0x446f76657461696cULL);
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(DT_TEXT_SEED >> (56 - 8 * i));
    assert_memory_equal(be, "Dovetail", 8);

    assert_true(XXH3_64bits("abc", 3) == 0x78af5f94892f3950ULL);
    uint64_t h = dt_text_hash("abc", 3);
    assert_true(h == XXH3_64bits_withSeed("abc", 3, DT_TEXT_SEED));
    assert_true(h != 0x78af5f94892f3950ULL);
    assert_true(dt_text_hash("abc", 3) == h);
    assert_int_equal(dt_text_bucket("abc", 3), (uint32_t)(h & ((1u << 20) - 1)));
    assert_int_equal(DT_TEXT_BUCKETS, 1u << 20);

    uint64_t rng = 5;
    char buf[300];
    uint32_t seen_hi = 0;
    for (int i = 0; i < 100000; i++) {
        size_t len = rng_next(&rng) % sizeof buf;
        for (size_t j = 0; j < len; j++)
            buf[j] = (char)rng_next(&rng);
        uint64_t hh = XXH3_64bits_withSeed(buf, len, DT_TEXT_SEED);
        assert_true(dt_text_hash(buf, len) == hh);
        uint32_t b = dt_text_bucket(buf, len);
        assert_true(b < DT_TEXT_BUCKETS);
        assert_int_equal(b, (uint32_t)(hh & (DT_TEXT_BUCKETS - 1)));
        seen_hi |= b;
    }
    assert_int_equal(seen_hi, DT_TEXT_BUCKETS - 1);
}

static void test_fuzz(void **state)
{
    (void)state;
    const size_t MB = 1 << 20;
    unsigned char *raw = malloc(MB);
    assert_non_null(raw);
    uint64_t rng = 2024;
    for (size_t i = 0; i < MB; i++)
        raw[i] = (unsigned char)rng_next(&rng);

    dt_text_opts optv[4] = {dt_text_opts_default(),
                            {false, false, true, true},
                            {true, true, false, true},
                            {true, false, false, false}};
    for (int oi = 0; oi < 4; oi++) {
        dt_err err = DT_ERR_INIT;
        dt_text *t = dt_text_new(&optv[oi], &err);
        assert_non_null(t);
        dt_tokens out;
        dt_tokens_init(&out);

        /* Random bytes, whole and in chunks: either valid, or an error at the checker's offset. */
        size_t off;
        int crc = dt_text_utf8_check((const char *)raw, MB, &off);
        int rc = dt_text_tokenize(t, (const char *)raw, MB, &out, &err);
        assert_int_equal(rc, crc ? -DT_EINVAL : 0);
        for (size_t i = 0; i < MB;) {
            size_t len = 1 + rng_next(&rng) % 16;
            if (len > MB - i) len = MB - i;
            crc = dt_text_utf8_check((const char *)raw + i, len, &off);
            rc = dt_text_tokenize(t, (const char *)raw + i, len, &out, &err);
            assert_int_equal(rc, crc ? -DT_EINVAL : 0);
            if (crc) assert_int_equal(ref_utf8_bad(raw + i, len), off);
            i += len;
        }
        check_invariants(&out, &optv[oi]);

        /* Random valid text: 1 MB of code points from every plane, with extra ASCII and CJK. */
        dt_tokens_clear(&out);
        unsigned char *txt = malloc(MB + 8);
        assert_non_null(txt);
        size_t n = 0;
        while (n + 4 <= MB) {
            uint64_t r = rng_next(&rng);
            uint32_t c;
            switch (r & 3) {
            case 0:
                c = (uint32_t)(r >> 8) % 0x80;
                break;
            case 1:
                c = 0x4E00 + (uint32_t)(r >> 8) % 0x5200;
                break;
            case 2:
                c = (uint32_t)(r >> 8) % 0x3000;
                break;
            default:
                c = (uint32_t)(r >> 8) % 0x110000;
                break;
            }
            if (c >= 0xD800 && c <= 0xDFFF) continue;
            n += put_utf8(txt + n, c);
        }
        for (size_t i = 0; i < n;) {
            size_t len = 1 + rng_next(&rng) % 4096;
            if (len > n - i) len = n - i;
            while (i + len < n && (txt[i + len] & 0xC0) == 0x80)
                len++;
            assert_int_equal(dt_text_tokenize(t, (const char *)txt + i, len, &out, &err), 0);
            i += len;
        }
        assert_true(out.n > 0);
        check_invariants(&out, &optv[oi]);
        free(txt);
        dt_tokens_free(&out);
        dt_text_free(t);
    }
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_english_stem_stop),
        cmocka_unit_test(test_fullwidth),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_chinese),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_cjk_punctuation),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_positions_and_append),
        cmocka_unit_test(test_long_words),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_utf8_check_vs_reference),
        cmocka_unit_test(test_normalize_vs_utf8proc),
        cmocka_unit_test(test_ascii_vs_reference),
        cmocka_unit_test(test_stems_vs_libstemmer),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
