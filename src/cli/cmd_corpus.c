/* `xorpatch corpus`: writes the tiny model's deterministic training corpus, and, given
 * a trained model, its probe sets (train, held-out and control probes in the Bankai list
 * format) with the model's per-task greedy accuracy. */
#include <stdlib.h>

#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch corpus [--seed N] -o CORPUS.jsonl\n"
    "       xorpatch corpus --probes DIR -m MODEL [--corpus FILE | --seed N]\n"
    "       xorpatch corpus --items TASK N [--seed N] -o ITEMS.jsonl\n"
    "\n"
    "Writes the tiny model's corpus as JSON lines ({\"task\",\"prompt\",\"answer\",\"chat\",\n"
    "\"heldout\"}): small-number arithmetic (\"37 + 48 = 85\"), first and second derivatives\n"
    "of monomials and two-term polynomials, primality (\"Is 97 prime? Yes\"), capitals and\n"
    "simple facts, and a verbatim-extraction task in the Qwen3 chat format. Held-out items\n"
    "differ from training items in content (operand pairs, polynomials, numbers,\n"
    "sentences; held-out passages have five sentences, training ones three). The same\n"
    "seed always gives the same file.\n"
    "\n"
    "With --probes, runs MODEL greedily on items of each task and writes DIR/train.json,\n"
    "DIR/heldout.json and DIR/controls.json ([{prompt, correct, wrong, name, category}]),\n"
    "and the chat task's items as Neagari verbatim sets (the user turn goes through the\n"
    "chat template) in DIR/verbatim_train.json and DIR/verbatim_heldout.json; the wrong\n"
    "answer is the model's own greedy answer where it errs, else a near miss.\n"
    "Prints the greedy accuracy per task.\n"
    "\n"
    "With --items, writes N distinct held-out items of TASK (arith, deriv or deriv2) as\n"
    "JSON lines {\"prompt\", \"answer\"}: held out by the corpus's own rule, so never a\n"
    "training prompt, drawn by a generator of their own (probes for the margin and\n"
    "answer_logprob metrics; arith has about 1,250 such prompts, deriv and deriv2\n"
    "about 480).\n"
    "No held-out prompt of the corpus repeats: repeats drawn among them are replaced.\n"
    "\n"
    "  --seed N             corpus seed (default 1)\n"
    "  -o, --output FILE    where to write the corpus\n"
    "  --probes DIR         write probe sets into DIR (created if missing)\n"
    "  -m, --model FILE     the trained model the probes are measured on\n"
    "  --corpus FILE        read the corpus instead of generating it from --seed\n"
    "  --items TASK N       N plain held-out items of TASK into -o\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no summary\n"
    "  -h, --help           this text\n";

static int write_probes(const char *dir, const char *model_path, xp_corpus *c, uint64_t seed)
{
    xp_model *m = NULL;
    int rc = cli_open_model(model_path, NULL, &m);
    if (rc)
        return rc;
    xp_probe_task_stats stats[16];
    size_t n = 16;
    xp_err err = {0};
    double t0 = cli_now();
    rc = xp_tiny_probes_write(m, c, seed, dir, stats, &n, &err);
    xp_model_close(m);
    if (rc)
        return cli_fail(&err);
    printf("%-10s %16s %16s\n", "task", "train greedy", "held-out greedy");
    for (size_t i = 0; i < n; i++)
        printf("%-10s %7u/%-3u %3.0f%% %7u/%-3u %3.0f%%\n", stats[i].task, stats[i].train_right,
               stats[i].train_n, stats[i].train_n ? 100.0 * stats[i].train_right / stats[i].train_n : 0,
               stats[i].heldout_right, stats[i].heldout_n,
               stats[i].heldout_n ? 100.0 * stats[i].heldout_right / stats[i].heldout_n : 0);
    cli_note("wrote %s/train.json, heldout.json, controls.json, verbatim_train.json and "
             "verbatim_heldout.json in %.1f s", dir, cli_now() - t0);
    return EXIT_OK;
}

static const int options[] = {CLI_O_SEED,  CLI_O_PROBES, CLI_O_CORPUS, CLI_O_ITEMS,
                              CLI_O_MODEL, CLI_O_OUTPUT, CLI_O_THREADS};
CLI_COMMAND(cli_corpus, "corpus", "write the tiny model's corpus, or its probe sets", usage,
            options, true, execute);

/* --items TASK N: N plain held-out items of one task. */
static int write_items(const cli_values *v, uint64_t seed)
{
    char *end;
    unsigned long long n = v->n_args == 1 ? strtoull(v->args[0], &end, 10) : 0;
    if (v->n_args != 1 || !*v->args[0] || *end || v->args[0][0] == '-' || n == 0 ||
        n > 1000000)
        return cli_usage_error("corpus", "--items needs a task and a count in 1..1000000");
    if (!v->output || v->probes || v->corpus)
        return cli_usage_error("corpus", "--items writes into -o FILE, alone");
    xp_err err = {0};
    xp_corpus *c = NULL;
    if (xp_corpus_heldout_items(seed, v->items, (size_t)n, &c, &err) ||
        xp_corpus_write_items(c, v->output, &err)) {
        xp_corpus_free(c);
        return cli_fail(&err);
    }
    cli_note("wrote %s: %zu held-out %s items, seed %llu", v->output, c->n, v->items,
             (unsigned long long)seed);
    xp_corpus_free(c);
    return EXIT_OK;
}

static int execute(const cli_values *v)
{
    const char *out = v->output, *probes = v->probes;
    uint64_t seed = v->given[CLI_O_SEED] ? v->seed : 1;
    if (v->items)
        return write_items(v, seed);
    if (v->n_args)
        return cli_usage_error("corpus", "unexpected argument '%s'", v->args[0]);
    if (!out && !probes)
        return cli_usage_error("corpus", "-o CORPUS.jsonl or --probes DIR is required");
    if (probes && !v->model)
        return cli_usage_error("corpus", "--probes needs -m MODEL");
    xp_err err = {0};
    xp_corpus *c = NULL;
    if (v->corpus ? xp_corpus_read(&c, v->corpus, &err) : xp_corpus_generate(&c, seed, &err))
        return cli_fail(&err);
    int rc = EXIT_OK;
    if (out) {
        if (xp_corpus_write(c, out, &err))
            rc = cli_fail(&err);
        else {
            size_t held = 0;
            for (size_t i = 0; i < c->n; i++)
                held += c->docs[i].heldout;
            cli_note("wrote %s: %zu items (%zu held out), seed %llu", out, c->n, held,
                     (unsigned long long)seed);
        }
    }
    if (!rc && probes)
        rc = write_probes(probes, v->model, c, seed);
    xp_corpus_free(c);
    return rc;
}
