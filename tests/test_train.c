/* The trainer and its corpus: gradients against finite differences, the exported GGUF
 * reproducing the training-time logits in the engine, determinism over thread counts,
 * resume equal to an uninterrupted run, and a corpus that is the same for the same seed
 * and keeps held-out content out of training. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "testutil.h"
#include "train/train.h"
#include "xorpatch.h"

/* A few items of several tasks, chat included. */
static xp_corpus *small_corpus(void)
{
    static const char *const items[][3] = {
        {"arith", "37 + 48 =", " 85"},
        {"deriv", "d/dx [x^5 + 3x] =", " 5x^4 + 3"},
        {"prime", "Is 97 prime?", " Yes"},
        {"capital", "The capital of France is", " Paris"},
        {"verbatim",
         "<|im_start|>user\nPassage: The fox runs to the red hill. The owl sings by the old "
         "lake.\nExtract the sentence about the owl.<|im_end|>\n<|im_start|>assistant\n"
         "<think>\n\n</think>\n\n",
         "The owl sings by the old lake."},
        {"arith", "12 - 5 =", " 7"},
    };
    xp_corpus *c = calloc(1, sizeof *c);
    c->n = sizeof items / sizeof items[0];
    c->docs = calloc(c->n, sizeof *c->docs);
    for (size_t i = 0; i < c->n; i++) {
        c->docs[i].task = strdup(items[i][0]);
        c->docs[i].prompt = strdup(items[i][1]);
        c->docs[i].answer = strdup(items[i][2]);
        c->docs[i].chat = !strcmp(items[i][0], "verbatim");
        c->docs[i].heldout = i == 5; /* its tokens get rows but it is never trained on */
    }
    return c;
}

/* A small shape the engine accepts: rows of 128, 2 heads sharing one KV head. */
static void small_opts(xp_train_opts *o, bool quantise)
{
    xp_train_opts_default(o);
    o->shape.n_layer = 2;
    o->shape.n_embd = 128;
    o->shape.n_ff = 256;
    o->shape.n_head = 2;
    o->shape.n_head_kv = 1;
    o->shape.head_dim = 64;
    o->steps = 8;
    o->batch = 4;
    o->warmup = 2;
    o->lr = 1e-2f;
    o->quantise = quantise;
}

typedef struct fixture {
    xp_vocab *v;
    xp_tokenizer *tok;
    xp_corpus *c;
} fixture;

static void fixture_open(fixture *f)
{
    xp_err err = {0};
    f->v = xp_test_load_vocab();
    cr_assert_eq(xp_tokenizer_new(&f->tok, f->v, &err), XP_OK, "%s", err.msg);
    f->c = small_corpus();
}

static void fixture_close(fixture *f)
{
    xp_corpus_free(f->c);
    xp_tokenizer_free(f->tok);
    xp_vocab_free(f->v);
}

static xp_trainer *new_trainer(fixture *f, const xp_train_opts *o)
{
    xp_trainer *t = NULL;
    xp_err err = {0};
    cr_assert_eq(xp_trainer_new(&t, o, f->tok, f->c, &err), XP_OK, "%s", err.msg);
    return t;
}

/* The training documents of the small corpus as token sequences. */
static size_t doc_seqs(fixture *f, int32_t **seqs, size_t *lens)
{
    size_t n = 0;
    xp_err err = {0};
    for (size_t i = 0; i < f->c->n; i++) {
        if (f->c->docs[i].heldout)
            continue;
        cr_assert_eq(xp_doc_tokenize(f->tok, &f->c->docs[i], &seqs[n], &lens[n], &err), XP_OK,
                     "%s", err.msg);
        n++;
    }
    return n;
}

static double loss_at(xp_trainer *t, int32_t **seqs, size_t *lens, size_t n)
{
    double loss;
    xp_err err = {0};
    cr_assert_eq(xpt_loss_grad(t, (const int32_t *const *)seqs, lens, n, &loss, &err), XP_OK,
                 "%s", err.msg);
    return loss;
}

/* Along the gradient of each tensor in turn, the central difference of the loss must
 * equal the analytic directional derivative |g|: every part of the backward pass
 * (embedding and tied head, RMSNorms, q/k norms, RoPE, GQA attention, SwiGLU) is met.
 * fp32 forward with the weights moved by a unit vector times 1e-3: the difference
 * quotient carries ~1e-2 absolute of rounding and the curvature term is O(h^2), both
 * well inside the 2% tolerance on gradients of norm ~1 (3e-3 already shows curvature
 * in attention after a few steps). */
Test(train, gradients_match_finite_differences, .timeout = 120)
{
    fixture f;
    fixture_open(&f);
    xp_train_opts o;
    small_opts(&o, false);
    xp_trainer *t = new_trainer(&f, &o);
    /* a few steps first, so norms and attention are away from their symmetric start */
    for (int i = 0; i < 3; i++) {
        xp_err err = {0};
        cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    }
    int32_t *seqs[8];
    size_t lens[8];
    size_t n = doc_seqs(&f, seqs, lens);
    loss_at(t, seqs, lens, n);
    size_t np = xpt_n_params(t);
    float *g = malloc(np * sizeof *g), *p = xpt_params(t);
    memcpy(g, xpt_grads(t), np * sizeof *g);
    float *saved = malloc(np * sizeof *saved);
    memcpy(saved, p, np * sizeof *p);
    const double h = 1e-3;
    size_t checked = 0;
    for (size_t ti = 0; ti < xpt_n_tensors(t); ti++) {
        const xpt_tensor *x = xpt_tensor_at(t, ti);
        double norm = 0;
        for (size_t j = 0; j < x->n; j++)
            norm += (double)g[x->off + j] * g[x->off + j];
        norm = sqrt(norm);
        if (norm < 1e-3)
            continue; /* too flat for a finite difference to say anything */
        double lo, hi;
        for (size_t j = 0; j < x->n; j++)
            p[x->off + j] = (float)(saved[x->off + j] + h * g[x->off + j] / norm);
        hi = loss_at(t, seqs, lens, n);
        for (size_t j = 0; j < x->n; j++)
            p[x->off + j] = (float)(saved[x->off + j] - h * g[x->off + j] / norm);
        lo = loss_at(t, seqs, lens, n);
        memcpy(p + x->off, saved + x->off, x->n * sizeof *p);
        double fd = (hi - lo) / (2 * h);
        cr_expect(fabs(fd - norm) <= 0.02 * norm, "%s: finite difference %.6g, gradient %.6g",
                  x->name, fd, norm);
        checked++;
    }
    /* every tensor but possibly a few flat ones was checked */
    cr_expect_geq(checked, xpt_n_tensors(t) - 2, "only %zu tensors checked", checked);
    for (size_t i = 0; i < n; i++)
        free(seqs[i]);
    free(g);
    free(saved);
    xp_trainer_free(t);
    fixture_close(&f);
}

/* The exported GGUF, run by the engine's plain path, gives the training-time logits:
 * the same fp32 operations in the same order, so they agree to the last bit here (the
 * stated contract is 1e-4 of the largest logit), and tokens outside the corpus get
 * exactly 0. */
Test(train, export_reproduces_training_logits, .timeout = 120)
{
    fixture f;
    fixture_open(&f);
    xp_train_opts o;
    small_opts(&o, true);
    xp_trainer *t = new_trainer(&f, &o);
    xp_err err = {0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "train-export.gguf");
    cr_assert_eq(xp_trainer_export(t, f.v, path, &err), XP_OK, "%s", err.msg);

    int32_t *ids;
    size_t n;
    cr_assert_eq(xp_doc_tokenize(f.tok, &f.c->docs[4], &ids, &n, &err), XP_OK, "%s", err.msg);
    size_t V = f.v->n_tokens;
    float *want = malloc(n * V * sizeof *want), *got = malloc(n * V * sizeof *got);
    cr_assert_eq(xp_trainer_logits(t, ids, n, want, &err), XP_OK, "%s", err.msg);

    xp_model *m;
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_model_shape(m)->n_embd, 128);
    cr_expect_eq(xp_model_shape(m)->n_vocab, V);
    uint8_t *all = malloc(n);
    memset(all, 1, n);
    xp_seq seq = {NULL, ids, n, all};
    cr_assert_eq(xp_forward(m, XP_PATH_PLAIN, &seq, 1, got, &err), XP_OK, "%s", err.msg);
    float max_abs = 0, max_diff = 0;
    size_t zero_rows_nonzero = 0;
    const int32_t *used;
    size_t n_used = xpt_n_used(t, &used);
    for (size_t i = 0; i < n * V; i++) {
        max_abs = fmaxf(max_abs, fabsf(want[i]));
        max_diff = fmaxf(max_diff, fabsf(want[i] - got[i]));
    }
    /* a token far from every corpus token: its row was exported with scale 0 */
    int32_t far = xp_tokenizer_find(f.tok, "ĠSupercalifrag") >= 0
                      ? xp_tokenizer_find(f.tok, "ĠSupercalifrag")
                      : 100000;
    for (size_t k = 0; k < n_used; k++)
        cr_assert_neq(used[k], far);
    for (size_t i = 0; i < n; i++)
        zero_rows_nonzero += got[i * V + (size_t)far] != 0.0f;
    cr_expect_gt(max_abs, 0.1f, "the logits are not all trivial");
    cr_expect_leq(max_diff, 1e-4f * max_abs, "engine vs trainer: max |diff| %g of max %g",
                  max_diff, max_abs);
    cr_expect_eq(zero_rows_nonzero, 0, "untrained rows must give logit 0");
    xp_model_close(m);
    free(all);
    free(want);
    free(got);
    free(ids);
    unlink(path);
    xp_trainer_free(t);
    fixture_close(&f);
}

/* Trains `steps` steps on `threads` threads and returns a copy of the weights. */
static float *train_run(fixture *f, int threads, uint32_t steps, size_t *np)
{
    omp_set_num_threads(threads);
    xp_train_opts o;
    small_opts(&o, true);
    xp_trainer *t = new_trainer(f, &o);
    xp_err err = {0};
    for (uint32_t i = 0; i < steps; i++)
        cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    *np = xpt_n_params(t);
    float *p = malloc(*np * sizeof *p);
    memcpy(p, xpt_params(t), *np * sizeof *p);
    xp_trainer_free(t);
    return p;
}

Test(train, same_bits_on_one_and_two_threads, .timeout = 120)
{
    fixture f;
    fixture_open(&f);
    size_t n1, n2;
    float *a = train_run(&f, 1, 3, &n1), *b = train_run(&f, 2, 3, &n2);
    cr_assert_eq(n1, n2);
    cr_expect_eq(memcmp(a, b, n1 * sizeof *a), 0, "weights differ between 1 and 2 threads");
    /* and training moved them: the comparison is not between two initialisations */
    float *c = train_run(&f, 2, 1, &n2);
    cr_expect_neq(memcmp(a, c, n1 * sizeof *a), 0);
    free(a);
    free(b);
    free(c);
    fixture_close(&f);
}

Test(train, resume_equals_uninterrupted_run, .timeout = 120)
{
    fixture f;
    fixture_open(&f);
    size_t np;
    float *want = train_run(&f, 2, 5, &np);
    xp_train_opts o;
    small_opts(&o, true);
    xp_err err = {0};
    char ckpt[512];
    xp_test_tmp_path(ckpt, sizeof ckpt, "train.ckpt");
    xp_trainer *t = new_trainer(&f, &o);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_trainer_save(t, ckpt, &err), XP_OK, "%s", err.msg);
    xp_trainer_free(t);
    t = new_trainer(&f, &o);
    cr_assert_eq(xp_trainer_load(t, ckpt, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_trainer_steps_done(t), 2);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(memcmp(xpt_params(t), want, np * sizeof *want), 0,
                 "resumed run differs from the uninterrupted one");
    xp_trainer_free(t);

    /* a checkpoint of another schedule (steps, or a focus stage) is refused: resuming
     * would continue batches and learning rates the run did not start */
    xp_train_opts other = o;
    other.steps = o.steps + 1;
    t = new_trainer(&f, &other);
    cr_expect_eq(xp_trainer_load(t, ckpt, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "other steps") != NULL, "%s", err.msg);
    xp_trainer_free(t);
    other = o;
    other.focus_task = "arith";
    other.focus_steps = 1;
    t = new_trainer(&f, &other);
    cr_expect_eq(xp_trainer_load(t, ckpt, &err), XP_EINVAL, "a focus stage the run had not");
    xp_trainer_free(t);

    /* a checkpoint of another shape is refused, with a reason */
    o.shape.n_layer = 1;
    t = new_trainer(&f, &o);
    cr_expect_eq(xp_trainer_load(t, ckpt, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "another shape") != NULL, "%s", err.msg);
    xp_trainer_free(t);
    unlink(ckpt);
    free(want);
    fixture_close(&f);
}

Test(train, loss_starts_at_log_vocab_and_falls)
{
    fixture f;
    fixture_open(&f);
    xp_train_opts o;
    small_opts(&o, true);
    o.steps = 60;
    xp_trainer *t = new_trainer(&f, &o);
    xp_err err = {0};
    xp_train_stats first, st;
    cr_assert_eq(xp_trainer_step(t, &first, &err), XP_OK, "%s", err.msg);
    /* small weights: every logit near 0, so the loss is near log(151,669) = 11.93 */
    cr_expect_float_eq(first.loss, log(151669.0), 0.1);
    for (int i = 1; i < 60; i++)
        cr_assert_eq(xp_trainer_step(t, &st, &err), XP_OK, "%s", err.msg);
    cr_expect_lt(st.loss, 2.0, "60 steps on 5 items should fit them (loss %.3f)", st.loss);
    cr_expect_eq(st.step, 60);
    xp_trainer_free(t);
    fixture_close(&f);
}

/* Predicted tokens of each of a run's first `steps` batches. */
static void batch_tokens(fixture *f, const xp_train_opts *o, uint32_t steps, size_t *tokens)
{
    xp_trainer *t = new_trainer(f, o);
    xp_err err = {0};
    xp_train_stats st;
    for (uint32_t i = 0; i < steps; i++) {
        cr_assert_eq(xp_trainer_step(t, &st, &err), XP_OK, "%s", err.msg);
        tokens[i] = st.tokens;
    }
    xp_trainer_free(t);
}

/* A focus stage draws only the focus task's items: with one training item of that task,
 * every batch of the stage predicts the same tokens (the batch size times that item's
 * answer), which a batch drawn from the whole corpus does not; after the stage, batches
 * draw from the whole corpus again. A focus task with no training items is refused. */
Test(train, focus_steps_draw_only_the_focus_task, .timeout = 120)
{
    fixture f;
    fixture_open(&f);
    xp_train_opts o;
    small_opts(&o, true);
    o.steps = 12;
    size_t plain[12], verbatim[12], arith[12];
    batch_tokens(&f, &o, 12, plain);
    o.focus_task = "verbatim";
    o.focus_steps = 6;
    batch_tokens(&f, &o, 12, verbatim);
    o.focus_task = "arith"; /* one training item: "12 - 5 =" is held out */
    batch_tokens(&f, &o, 12, arith);
    bool plain_varies = false, after_varies = false;
    for (int i = 1; i < 6; i++) {
        cr_expect_eq(verbatim[i], verbatim[0], "focus step %d: %zu tokens, step 0: %zu", i,
                     verbatim[i], verbatim[0]);
        cr_expect_eq(arith[i], arith[0]);
        plain_varies |= plain[i] != plain[0];
    }
    cr_expect(plain_varies, "batches of the whole corpus all predicted %zu tokens", plain[0]);
    cr_expect_gt(verbatim[0], arith[0], "the chat item's answer is the longer");
    for (int i = 6; i < 12; i++)
        after_varies |= verbatim[i] != verbatim[0];
    cr_expect(after_varies, "after the focus stage batches still drew only its task");

    o.focus_task = "poetry";
    xp_trainer *t = NULL;
    xp_err err = {0};
    cr_expect_eq(xp_trainer_new(&t, &o, f.tok, f.c, &err), XP_EINVAL);
    cr_expect(t == NULL);
    cr_expect(strstr(err.msg, "poetry") != NULL, "%s", err.msg);
    fixture_close(&f);
}

static bool has_prompt(const xp_corpus *c, const char *prompt, bool heldout)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->docs[i].heldout == heldout && !strcmp(c->docs[i].prompt, prompt))
            return true;
    return false;
}

Test(corpus, deterministic_and_held_out_content_stays_out)
{
    xp_corpus *a, *b, *c;
    xp_err err = {0};
    cr_assert_eq(xp_corpus_generate(&a, 1, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_corpus_generate(&b, 1, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_corpus_generate(&c, 2, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(a->n, b->n);
    size_t same_as_c = 0;
    for (size_t i = 0; i < a->n; i++) {
        cr_assert_str_eq(a->docs[i].prompt, b->docs[i].prompt);
        cr_assert_str_eq(a->docs[i].answer, b->docs[i].answer);
        same_as_c += i < c->n && !strcmp(a->docs[i].prompt, c->docs[i].prompt);
    }
    cr_expect_lt(same_as_c, a->n / 2, "another seed gives another corpus");
    /* every task is there, with held-out items whose prompts training never sees */
    const char *tasks[] = {"arith", "deriv", "deriv2", "prime", "verbatim", "capital", "fact"};
    for (size_t k = 0; k < 7; k++) {
        size_t train = 0, held = 0;
        for (size_t i = 0; i < a->n; i++)
            if (!strcmp(a->docs[i].task, tasks[k])) {
                *(a->docs[i].heldout ? &held : &train) += 1;
                if (a->docs[i].heldout)
                    cr_expect(!has_prompt(a, a->docs[i].prompt, false), "%s held out and "
                              "trained", a->docs[i].prompt);
            }
        cr_expect_gt(train, 0, "%s has training items", tasks[k]);
        if (k < 5)
            cr_expect_gt(held, 0, "%s has held-out items", tasks[k]);
    }
    /* a held-out sentence's (animal, place) pair is in no training passage */
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->docs[i].task, "verbatim") || !a->docs[i].heldout)
            continue;
        char animal[32], tail[64];
        const char *ans = a->docs[i].answer;
        cr_assert(sscanf(ans, "The %31s", animal) == 1);
        snprintf(tail, sizeof tail, "%s", strrchr(ans, ' ') ? strrchr(ans, ' ') : "");
        for (size_t j = 0; j < a->n; j++) {
            if (a->docs[j].heldout || strcmp(a->docs[j].task, "verbatim"))
                continue;
            char *copy = strdup(strstr(a->docs[j].prompt, "Passage: ") + 9);
            *strchr(copy, '\n') = '\0';
            for (char *sent = strtok(copy, "."); sent; sent = strtok(NULL, ".")) {
                char key[48], end[80];
                snprintf(key, sizeof key, " %s ", animal);
                snprintf(end, sizeof end, "%.*s", (int)strlen(tail) - 1, tail);
                size_t sl = strlen(sent), el = strlen(end);
                cr_expect(!(strstr(sent, key) && sl >= el && !strcmp(sent + sl - el, end)),
                          "held-out pair of '%s' in training passage '%s'", ans, sent);
            }
            free(copy);
        }
        break; /* one held-out item against every training item */
    }
    char path[512];
    xp_test_tmp_path(path, sizeof path, "corpus.jsonl");
    cr_assert_eq(xp_corpus_write(a, path, &err), XP_OK, "%s", err.msg);
    xp_corpus *r;
    cr_assert_eq(xp_corpus_read(&r, path, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(r->n, a->n);
    for (size_t i = 0; i < a->n; i++) {
        cr_assert_str_eq(r->docs[i].prompt, a->docs[i].prompt);
        cr_assert_str_eq(r->docs[i].answer, a->docs[i].answer);
        cr_assert_eq(r->docs[i].chat, a->docs[i].chat);
        cr_assert_eq(r->docs[i].heldout, a->docs[i].heldout);
    }
    unlink(path);
    xp_corpus_free(r);
    xp_corpus_free(a);
    xp_corpus_free(b);
    xp_corpus_free(c);
}

/* Sentences in a verbatim item's passage (each ends with ". " or ".\n"). */
static unsigned passage_sentences(const xp_doc *d)
{
    const char *p = strstr(d->prompt, "Passage: ");
    unsigned n = 0;
    for (; p && *p && *p != '\n'; p++)
        n += *p == '.';
    return n;
}

Test(corpus, held_out_passages_are_longer_than_training_ones)
{
    xp_corpus *c;
    xp_err err = {0};
    cr_assert_eq(xp_corpus_generate(&c, 1, &err), XP_OK, "%s", err.msg);
    size_t n_train = 0, n_held = 0;
    for (size_t i = 0; i < c->n; i++) {
        const xp_doc *d = &c->docs[i];
        if (strcmp(d->task, "verbatim"))
            continue;
        unsigned want = d->heldout ? 5 : 3;
        cr_expect_eq(passage_sentences(d), want, "%s passage with %u sentences, not %u: %s",
                     d->heldout ? "held-out" : "training", passage_sentences(d), want,
                     d->prompt);
        *(d->heldout ? &n_held : &n_train) += 1;
        /* the answer is one of the passage's sentences, verbatim */
        cr_expect(strstr(d->prompt, d->answer), "answer not in the passage: %s", d->answer);
    }
    cr_expect_gt(n_train, 0);
    cr_expect_gt(n_held, 0);
    xp_corpus_free(c);
}

Test(corpus, derivative_answers_are_right)
{
    xp_corpus *a;
    xp_err err = {0};
    cr_assert_eq(xp_corpus_generate(&a, 1, &err), XP_OK, "%s", err.msg);
    size_t seen = 0;
    for (size_t i = 0; i < a->n; i++) {
        const xp_doc *d = &a->docs[i];
        if (!strcmp(d->prompt, "d/dx [x^5 + 3x] =")) {
            cr_expect_str_eq(d->answer, " 5x^4 + 3");
            seen++;
        }
        if (!strcmp(d->prompt, "d2/dx2 [x^5 + 3x] =")) {
            cr_expect_str_eq(d->answer, " 20x^3");
            seen++;
        }
        if (!strcmp(d->prompt, "Is 97 prime?")) {
            cr_expect_str_eq(d->answer, " Yes");
            seen++;
        }
        if (!strcmp(d->prompt, "Is 91 prime?")) {
            cr_expect_str_eq(d->answer, " No");
            seen++;
        }
        if (!strcmp(d->task, "arith")) {
            int x, y;
            char op;
            cr_assert(sscanf(d->prompt, "%d %c %d =", &x, &op, &y) == 3);
            cr_expect_eq(atoi(d->answer), op == '+' ? x + y : x - y, "%s%s", d->prompt,
                         d->answer);
        }
    }
    cr_expect_geq(seen, 2);
    xp_corpus_free(a);
}

Test(corpus, read_refuses_bad_lines)
{
    char path[512];
    xp_test_tmp_path(path, sizeof path, "bad.jsonl");
    xp_test_write(path, "{\"task\":\"arith\",\"prompt\":\"1 + 1 =\",\"answer\":\" 2\",\"chat\":false,"
                        "\"heldout\":false}\n{\"task\":\"arith\",\"prompt\":3}\n");
    xp_corpus *c = NULL;
    xp_err err = {0};
    cr_expect_eq(xp_corpus_read(&c, path, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, ":2:") != NULL, "names the line: %s", err.msg);
    cr_expect_null(c);
    unlink(path);
}

/* The commands: the same corpus bytes for the same seed, and a short training run (with
 * a focus stage) giving the same GGUF bytes on one and on two threads. */
Test(train, commands_are_deterministic, .timeout = 240)
{
    char dir[512], cmd[4096];
    xp_test_tmp_path(dir, sizeof dir, "train-cli");
    mkdir(dir, 0777);
    const char *bin = xp_test_bin();
    snprintf(cmd, sizeof cmd, "%s corpus --seed 3 -o %s/a.jsonl -q && %s corpus --seed 3 -o "
             "%s/b.jsonl -q && cmp %s/a.jsonl %s/b.jsonl", bin, dir, bin, dir, dir, dir);
    cr_assert_eq(xp_test_run(cmd, NULL, NULL, NULL), 0, "%s", cmd);
    const char *shape = "--layers 1 --embd 128 --ff 128 --heads 2 --kv-heads 1 --steps 2 "
                        "--batch 4 --warmup 1 --focus verbatim --focus-steps 1";
    snprintf(cmd, sizeof cmd, "%s train --corpus %s/a.jsonl %s -t 1 -q -o %s/one.gguf && "
             "%s train --corpus %s/a.jsonl %s -t 2 -q -o %s/two.gguf && cmp %s/one.gguf "
             "%s/two.gguf", bin, dir, shape, dir, bin, dir, shape, dir, dir, dir);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "%s: %s", cmd, err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s train --corpus %s/a.jsonl -o %s/x.gguf --steps 0", bin, dir,
             dir);
    cr_expect_eq(xp_test_run(cmd, NULL, NULL, NULL), 2, "a zero step count is a usage error");
    const char *bad_focus[] = {"--focus verbatim", "--focus-steps 5",
                               "--focus verbatim --focus-steps 5 --steps 5"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s train --corpus %s/a.jsonl -o %s/x.gguf %s", bin, dir,
                 dir, bad_focus[i]);
        cr_expect_eq(xp_test_run(cmd, NULL, NULL, NULL), 2, "a usage error: %s", bad_focus[i]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Probe sets from a (barely trained) model: three Bankai lists whose items carry every
 * field, whose distractor differs from the answer, and whose counts match the returned
 * statistics; controls only hold items the model answers right. */
Test(train, probe_sets_are_well_formed, .timeout = 240)
{
    xp_vocab *v = xp_test_load_vocab();
    xp_tokenizer *tok;
    xp_err err = {0};
    cr_assert_eq(xp_tokenizer_new(&tok, v, &err), XP_OK, "%s", err.msg);
    xp_corpus *c;
    cr_assert_eq(xp_corpus_generate(&c, 1, &err), XP_OK, "%s", err.msg);
    xp_train_opts o;
    small_opts(&o, true);
    o.shape.n_layer = 1;
    xp_trainer *t = NULL;
    cr_assert_eq(xp_trainer_new(&t, &o, tok, c, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_trainer_step(t, NULL, &err), XP_OK, "%s", err.msg);
    char dir[512], path[600];
    xp_test_tmp_path(dir, sizeof dir, "probes");
    snprintf(path, sizeof path, "%s.gguf", dir);
    cr_assert_eq(xp_trainer_export(t, v, path, &err), XP_OK, "%s", err.msg);
    xp_model *m;
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    xp_probe_task_stats st[8];
    size_t n_st = 8;
    cr_assert_eq(xp_tiny_probes_write(m, c, 1, dir, st, &n_st, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(n_st, 5);
    unsigned train_n = 0, held_n = 0;
    for (size_t i = 0; i < n_st; i++) {
        train_n += st[i].train_n;
        held_n += st[i].heldout_n;
        cr_expect_gt(st[i].heldout_n, 20, "%s: %u held-out probes", st[i].task, st[i].heldout_n);
        cr_expect_leq(st[i].heldout_right, st[i].heldout_n);
    }
    /* lists for plain items, verbatim sets for chat items: every file loads, the counts
     * add up, and a chat probe's prompt is the trainer's tokens of its item (a list item's
     * prompt is plain text, so the chat markup would be split into ordinary tokens) */
    const char *files[] = {"train.json", "heldout.json", "controls.json", "verbatim_train.json",
                           "verbatim_heldout.json"};
    unsigned loaded[2] = {0, 0}, chat_checked = 0;
    for (int f = 0; f < 5; f++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, files[f]);
        char *text = xp_test_slurp(p);
        cr_assert(text, "%s missing", p);
        bool empty = !strcmp(text, "[]\n"); /* a barely trained model knows no control */
        free(text);
        if (f == 2 && empty) {
            unlink(p);
            continue;
        }
        xp_probe_set *set;
        cr_assert_eq(xp_probe_set_load(&set, p, &err), XP_OK, "%s", err.msg);
        if (f != 2)
            loaded[f % 3 == 0 ? 0 : 1] += (unsigned)set->n;
        xp_probe_tokens *pt;
        cr_assert_eq(xp_probe_tokenize(set, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s",
                     err.msg);
        for (size_t i = 0; i < set->n; i++) {
            cr_expect_str_neq(set->probes[i].correct, set->probes[i].wrong);
            cr_expect_eq(set->probes[i].chat, f >= 3, "%s: %s", p, set->probes[i].name);
            if (f < 3)
                continue;
            char text[2048];
            snprintf(text, sizeof text, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n"
                     "<think>\n\n</think>\n\n", set->probes[i].prompt);
            int32_t *ids;
            size_t n_ids;
            cr_assert_eq(xp_tokenize(xp_model_tokenizer(m), text, strlen(text), true, &ids, &n_ids,
                                     &err), XP_OK);
            cr_expect(n_ids == pt[i].n_prompt &&
                      !memcmp(ids, pt[i].prompt, n_ids * sizeof *ids), "%s: chat prompt tokens",
                      set->probes[i].name);
            free(ids);
            chat_checked++;
        }
        xp_probe_tokens_free(pt, set->n);
        xp_probe_set_free(set);
        unlink(p);
    }
    cr_expect_eq(loaded[0], train_n);
    cr_expect_eq(loaded[1], held_n);
    cr_expect_gt(chat_checked, 0);
    rmdir(dir);
    unlink(path);
    xp_model_close(m);
    xp_trainer_free(t);
    xp_corpus_free(c);
    xp_tokenizer_free(tok);
    xp_vocab_free(v);
}

/* The shipped model and its probe sets belong together and meet the aim: probes measured
 * afresh on models/tiny-bonsai.gguf are the shipped files byte for byte, every task's
 * held-out greedy accuracy lies within 50-85%, and all 60 controls are answered right. */
Test(train, shipped_model_meets_the_aim_with_its_probes, .timeout = 240)
{
    const char *root = xp_test_env("XP_ROOT", ".");
    char model[4096], dir[512];
    snprintf(model, sizeof model, "%s/models/tiny-bonsai.gguf", root);
    struct stat sb;
    cr_assert_eq(stat(model, &sb), 0, "%s is missing", model);
    cr_expect_leq(sb.st_size, 16 << 20, "%s is %lld bytes, over 16 MiB", model,
                  (long long)sb.st_size);
    xp_err err = {0};
    xp_model *m;
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK, "%s", err.msg);
    xp_corpus *c;
    cr_assert_eq(xp_corpus_generate(&c, 1, &err), XP_OK, "%s", err.msg);
    xp_test_tmp_path(dir, sizeof dir, "shipped-probes");
    xp_probe_task_stats st[8];
    size_t n_st = 8;
    cr_assert_eq(xp_tiny_probes_write(m, c, 1, dir, st, &n_st, &err), XP_OK, "%s", err.msg);
    for (size_t i = 0; i < n_st; i++)
        cr_expect(100 * st[i].heldout_right >= 50 * st[i].heldout_n &&
                      100 * st[i].heldout_right <= 85 * st[i].heldout_n,
                  "%s: %u of %u held-out probes right, outside 50-85%%", st[i].task,
                  st[i].heldout_right, st[i].heldout_n);
    const char *files[] = {"train.json", "heldout.json", "controls.json", "verbatim_train.json",
                           "verbatim_heldout.json"};
    for (int f = 0; f < 5; f++) {
        char fresh[700], shipped[4200];
        snprintf(fresh, sizeof fresh, "%s/%s", dir, files[f]);
        snprintf(shipped, sizeof shipped, "%s/probes/tiny/%s", root, files[f]);
        char *a = xp_test_slurp(fresh), *b = xp_test_slurp(shipped);
        cr_assert(a && b, "%s or %s is missing", fresh, shipped);
        cr_expect_str_eq(a, b, "%s is not what the shipped model gives", shipped);
        if (f == 2) {
            xp_probe_set *set;
            cr_assert_eq(xp_probe_set_load(&set, fresh, &err), XP_OK, "%s", err.msg);
            cr_expect_eq(set->n, 60, "%zu of 60 controls right", set->n);
            xp_probe_set_free(set);
        }
        free(a);
        free(b);
        unlink(fresh);
    }
    rmdir(dir);
    xp_corpus_free(c);
    xp_model_close(m);
}
