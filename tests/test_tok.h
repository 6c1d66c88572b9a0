/* Helpers shared by the tokenizer tests: the real Qwen3 vocabulary from the npm cache
 * (loaded once per test process that asks for it), a tiny synthetic byte-level
 * vocabulary built in code for unit tests that must not depend on the cache, and
 * readable printing of texts and id lists in failure messages. */
#ifndef XP_TESTS_TEST_TOK_H
#define XP_TESTS_TEST_TOK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "tok/tok_internal.h"
#include "xorpatch.h"

/* The real vocabulary and a tokenizer over it, or false (the caller skips) when the npm
 * cache has no tokenizer.json. Fails the test when the file is there but does not load. */
static inline bool tok_real(xp_vocab **v, xp_tokenizer **t)
{
    static xp_vocab *vocab;
    static xp_tokenizer *tok;
    if (!tok) {
        char path[4096];
        xp_test_tokenizer_json(path, sizeof path);
        struct stat st;
        if (stat(path, &st) != 0)
            return false;
        xp_err err = {0};
        cr_assert_eq(xp_vocab_from_hf_json(&vocab, path, &err), 0, "%s", err.msg);
        cr_assert_eq(xp_tokenizer_new(&tok, vocab, &err), 0, "%s", err.msg);
    }
    if (v)
        *v = vocab;
    *t = tok;
    return true;
}

#define TOK_REAL_OR_SKIP(v, t)                                                                     \
    do {                                                                                           \
        if (!tok_real(v, t)) {                                                                     \
            cr_skip_test("skipped: needs tokenizer.json from the npm cache ($XP_CACHE); "          \
                         "run `make npm-cache`");                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Printable, escaped, possibly shortened copy of text for messages. */
static inline const char *tok_show(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            o += (size_t)snprintf(buf + o, size - o, "\\n");
        else if (c == '\\' || c == '"')
            o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
        if (o + 8 >= size && i + 1 < n) {
            o += (size_t)snprintf(buf + o, size - o, "...");
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

static inline const char *tok_show_ids(const int32_t *ids, size_t n, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    for (size_t i = 0; i < n && o + 16 < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? ",%d" : "%d", ids[i]);
    snprintf(buf + o, size - o, "]");
    return buf;
}

/* The corpus as NUL-terminated strings (read with cJSON, one JSON string per line). */
static inline char **tok_read_corpus(size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/tok/corpus.jsonl", xp_test_env("XP_ROOT", "."));
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    char **out = NULL, *line = NULL;
    size_t cap = 0, count = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        cr_assert(cJSON_IsString(j), "%s line %zu is not a JSON string", path, count + 1);
        out = realloc(out, (count + 1) * sizeof *out);
        out[count++] = strdup(j->valuestring);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    *n = count;
    return out;
}

/* Tiny byte-level vocabulary: the 256 byte tokens (ids 0..255 in byte order), then
 * the given merges' results, then the given added tokens with their types. Merges are
 * "left right" strings in the byte alphabet. */
static inline xp_vocab *tok_small_vocab(const char *const *merges, size_t n_merges,
                                        const char *const *added, const int32_t *added_types,
                                        size_t n_added)
{
    xp_vocab *v = calloc(1, sizeof *v);
    cr_assert(v);
    size_t n = 256 + n_merges + n_added;
    v->tokens = calloc(n, sizeof *v->tokens);
    v->types = calloc(n, sizeof *v->types);
    v->merges = calloc(n_merges ? n_merges : 1, sizeof *v->merges);
    cr_assert(v->tokens && v->types && v->merges);
    for (int b = 0; b < 256; b++) {
        char u[5] = {0};
        xp_tok_utf8_put(xp_tok_byte_cp((uint8_t)b), u);
        v->tokens[b] = strdup(u);
        v->types[b] = XP_TOKEN_NORMAL;
    }
    for (size_t i = 0; i < n_merges; i++) {
        const char *sp = strchr(merges[i], ' ');
        cr_assert(sp, "bad test merge %s", merges[i]);
        char *joined = malloc(strlen(merges[i]));
        memcpy(joined, merges[i], (size_t)(sp - merges[i]));
        strcpy(joined + (sp - merges[i]), sp + 1);
        v->tokens[256 + i] = joined;
        v->types[256 + i] = XP_TOKEN_NORMAL;
        v->merges[i] = strdup(merges[i]);
    }
    for (size_t i = 0; i < n_added; i++) {
        v->tokens[256 + n_merges + i] = strdup(added[i]);
        v->types[256 + n_merges + i] = added_types[i];
    }
    v->n_tokens = n;
    v->n_merges = n_merges;
    v->eos_id = v->pad_id = v->bos_id = -1;
    v->model = strdup("gpt2");
    v->pre = strdup("qwen2");
    return v;
}
#endif
