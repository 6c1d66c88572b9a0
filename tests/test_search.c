/* The search: fitness rules on hand-made gaps, proposals without repetition weighted by
 * scale, and whole searches on a small random model: fitness never falls, the patch is
 * exactly the kept flips, the fast gauge and the naive one find the same patch with the
 * same gaps, thread count changes nothing, and a run resumed from its checkpoint ends
 * with the patch an uninterrupted run makes, for every granularity and fitness. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "model/model.h"
#include "search/search_int.h"
#include "testutil.h"
#include "xorpatch.h"

Test(fitness, rules_of_spec_section_8)
{
    double base[] = {-1.0, 0.5, 2.0, 1.0}; /* targets 0,1; controls 2,3 */
    double g[] = {-0.5, 1.5, 1.0, 1.5};
    bool solved[2] = {false, true};
    xp_fitness_ctx f = {XP_FITNESS_MEAN, 2.0, 0.5, 2, 2, base, solved};
    /* mean: ((0.5) + (1.0)) / 2 - 2 * (1.0 + 0) / 2 */
    cr_expect_float_eq(xp_fitness_value(&f, g), 0.75 - 1.0, 1e-12);
    f.kind = XP_FITNESS_MIN; /* min(0.5, 1.0) - 1.0 */
    cr_expect_float_eq(xp_fitness_value(&f, g), 0.5 - 1.0, 1e-12);
    f.kind = XP_FITNESS_BORDERLINE;
    double g2[] = {0.3, -0.2, -1.0, 1.5}; /* target 0 fixed, 1 broke, control 2 broke */
    double want = 0.3 / 0.4 + -0.2 / 0.3 + 0.5 * (1 - 1) - 2.0 * 1;
    cr_expect_float_eq(xp_fitness_value(&f, g2), want, 1e-12);
    f.kind = XP_FITNESS_FOCUSED;
    double cur[] = {-0.4, 0.5, 2.0, 1.0};
    cr_expect_eq(xp_focused_target(&f, cur), 0);
    double up[] = {-0.3, 0.6, 1.6, 1.0}, down[] = {-0.5, 0.6, 2.0, 1.0};
    double hurt[] = {-0.3, 0.6, 1.4, 1.0}, broke[] = {-0.3, 0.0, 2.0, 1.0};
    cr_expect(xp_focused_accept(&f, cur, up, 0), "improves p*, control within epsilon");
    cr_expect(!xp_focused_accept(&f, cur, down, 0), "p* gets worse");
    cr_expect(!xp_focused_accept(&f, cur, hurt, 0), "a control falls more than epsilon");
    cr_expect(!xp_focused_accept(&f, cur, broke, 0), "a solved target is lost");
    solved[0] = true;
    cr_expect_eq(xp_focused_target(&f, cur), -1, "every target solved");
}

/* Focused's control slack lets a control fall by up to epsilon, but never across zero: a
 * control of small positive margin stays positive whatever epsilon is. */
Test(fitness, focused_slack_never_lets_a_control_cross_zero)
{
    double base[] = {-0.4, 0.1, -0.2}; /* target 0; controls: margin 0.1, and one already wrong */
    bool solved[1] = {false};
    xp_fitness_ctx f = {XP_FITNESS_FOCUSED, 2.0, 0.5, 1, 2, base, solved};
    double cur[] = {-0.4, 0.1, -0.2};
    double fall[] = {-0.3, 0.05, -0.2}, cross[] = {-0.3, -0.05, -0.2}, zero[] = {-0.3, 0, -0.2};
    double wrong_falls[] = {-0.3, 0.1, -0.8}, wrong_within[] = {-0.3, 0.1, -0.6};
    cr_expect(xp_focused_accept(&f, cur, fall, 0), "a fall within epsilon that stays above 0");
    cr_expect(!xp_focused_accept(&f, cur, cross, 0), "within epsilon, but across zero");
    cr_expect(!xp_focused_accept(&f, cur, zero, 0), "onto zero is no longer right");
    cr_expect(xp_focused_accept(&f, cur, wrong_within, 0), "a wrong control keeps its slack");
    cr_expect(!xp_focused_accept(&f, cur, wrong_falls, 0), "and no more");
    f.epsilon = 1e6;
    cr_expect(!xp_focused_accept(&f, cur, cross, 0), "whatever epsilon");
}

Test(propose, no_candidate_twice_and_high_scales_drawn_more)
{
    xp_model *m = xp_test_open_tiny();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.projs = 1u << XP_PROJ_DOWN; /* 256 rows of 768 */
    uint32_t layer = 1;
    xp_proposer p;
    xp_err err = {0};
    cr_assert_eq(xp_proposer_init(&p, m, &o, &layer, 1, &err), XP_OK, "%s", err.msg);
    size_t rows = (size_t)m->layers[1].down.ne1, n = 0;
    bool *seen = calloc(rows, 1);
    xp_candidate c;
    while (xp_proposer_next(&p, &c)) {
        cr_assert_eq(c.kind, XP_FLIP_ROW);
        cr_assert_eq(c.layer, 1);
        cr_assert(!seen[c.index], "row %lld proposed twice", (long long)c.index);
        seen[c.index] = true;
        n++;
    }
    cr_expect_eq(n, rows, "every row once, then the space is used up");
    xp_proposer_free(&p);
    /* scale-weighted: give the first half of the rows 8x the scale; they should be
     * drawn 8 times in 9 */
    xp_weight *w = &m->layers[1].down;
    int64_t per_row = w->ne0 / 128;
    for (int64_t r = 0; r < w->ne1 / 2; r++)
        for (int64_t b = 0; b < per_row; b++) {
            uint8_t *blk = w->data + (uint64_t)(r * per_row + b) * 18;
            uint16_t d = (uint16_t)(blk[0] | blk[1] << 8);
            d = xp_f32_to_fp16(8 * xp_fp16_to_f32(d));
            blk[0] = (uint8_t)d, blk[1] = (uint8_t)(d >> 8);
        }
    o.seed = 9;
    cr_assert_eq(xp_proposer_init(&p, m, &o, &layer, 1, &err), XP_OK);
    size_t high = 0;
    for (int i = 0; i < 90; i++) {
        cr_assert(xp_proposer_next(&p, &c));
        high += c.index < w->ne1 / 2;
    }
    cr_expect_geq(high, 70, "%zu of 90 draws from the high-scale rows (expected about 80)", high);
    xp_proposer_free(&p);
    o.proposal = XP_PROPOSE_UNIFORM;
    cr_assert_eq(xp_proposer_init(&p, m, &o, &layer, 1, &err), XP_OK);
    high = 0;
    for (int i = 0; i < 90; i++) {
        cr_assert(xp_proposer_next(&p, &c));
        high += c.index < w->ne1 / 2;
    }
    cr_expect(high > 30 && high < 60, "uniform: %zu of 90 from either half", high);
    xp_proposer_free(&p);
    free(seen);
    xp_model_close(m);
}

/* A gradient ranking over the blocks of one tensor, in a shuffled order with falling
 * estimates, some candidates already tried (as a resumed search marks its flips). */
static void ranked_proposer(xp_proposer *p, xp_model *m, uint32_t *layer)
{
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.granularity = XP_GRAN_BLOCK;
    o.proposal = XP_PROPOSE_GRADIENT;
    o.projs = 1u << XP_PROJ_DOWN;
    xp_err err = {0};
    cr_assert_eq(xp_proposer_init(p, m, &o, layer, 1, &err), XP_OK, "%s", err.msg);
    size_t n = (size_t)p->units[0].n_items;
    p->ranked = calloc(n, sizeof *p->ranked);
    xp_rng rng;
    xp_rng_seed(&rng, 5);
    for (size_t i = 0; i < n; i++)
        p->ranked[i] = (xp_ranked){{*layer, XP_PROJ_DOWN, XP_FLIP_BLOCK, 0, (int64_t)i}, 0, i};
    for (size_t i = n; i-- > 1;) { /* Fisher-Yates */
        size_t j = (size_t)xp_rng_below(&rng, i + 1);
        xp_candidate c = p->ranked[i].c;
        p->ranked[i].c = p->ranked[j].c, p->ranked[j].c = c;
    }
    for (size_t i = 0; i < n; i++)
        p->ranked[i].estimate = (double)(n - i);
    p->n_ranked = n;
    p->stale = false;
    for (size_t i = 0; i < n; i += 7)
        xp_proposer_mark(p, &p->ranked[i].c);
}

/* A team's leader draws ahead and gives back what a kept flip made stale: from a ranking,
 * the draws after any number of give-backs (newest first) are the draws of a proposer
 * that never drew them, estimates included, and the set of tried candidates stays whole
 * (every candidate comes exactly once, across thousands of removals from it). */
Test(propose, a_ranking_gives_back_what_was_drawn_as_if_never_drawn)
{
    xp_model *m = xp_test_open_tiny();
    uint32_t layer = 2;
    xp_proposer a, b;
    ranked_proposer(&a, m, &layer);
    ranked_proposer(&b, m, &layer);
    size_t n = a.n_ranked, n_seq = 0;
    xp_candidate *seq = calloc(n, sizeof *seq), held[64], c;
    double *est = calloc(n, sizeof *est);
    while (xp_proposer_next(&a, &c)) {
        est[n_seq] = a.estimate;
        seq[n_seq++] = c;
    }
    cr_assert_eq(n_seq, n - (n + 6) / 7, "every candidate not marked, once");
    xp_rng rng;
    xp_rng_seed(&rng, 17);
    size_t pos = 0, rounds = 0, given_back = 0;
    while (pos < n_seq) {
        size_t k = 1 + (size_t)xp_rng_below(&rng, 40), got = 0;
        while (got < k && xp_proposer_next(&b, &held[got])) {
            cr_assert(!memcmp(&held[got], &seq[pos + got], sizeof c),
                      "round %zu: draw %zu is not the lone proposer's %zu", rounds, got, pos + got);
            cr_assert_eq(b.estimate, est[pos + got]);
            got++;
        }
        cr_assert_eq(got, k < n_seq - pos ? k : n_seq - pos);
        size_t back = pos + got == n_seq ? 0 : (size_t)xp_rng_below(&rng, got + 1);
        for (size_t i = got; i-- > got - back;)
            cr_assert_eq(xp_proposer_unget(&b, &held[i]), XP_OK);
        given_back += back;
        pos += got - back;
        rounds++;
    }
    cr_assert(!xp_proposer_next(&b, &c), "nothing is left once the lone proposer is done");
    cr_expect_eq(b.n_tried, a.n_tried);
    cr_expect_gt(given_back, 500, "%zu given back in %zu rounds", given_back, rounds);
    /* what was not drawn from the ranking cannot be given back */
    xp_candidate other = {layer + 1, XP_PROJ_DOWN, XP_FLIP_BLOCK, 0, 0};
    cr_expect_eq(xp_proposer_unget(&b, &other), XP_EINVAL);
    free(seq), free(est);
    xp_proposer_free(&a);
    xp_proposer_free(&b);
    xp_model_close(m);
}

/* Random probes on the model's vocabulary: a prompt and two answers of 1-4 tokens; in
 * two probes of three the answers start alike (one is sometimes the other's prefix), as
 * " 4x^3 + 6x" and " 4x^3 + 3x" do; half the prompts start with the same two or three
 * tokens, as prompts made from one template do. */
static xp_probe_tokens *random_probes(size_t n, uint64_t seed, uint64_t vocab)
{
    xp_rng r;
    xp_rng_seed(&r, seed);
    xp_probe_tokens *pt = calloc(n, sizeof *pt);
    for (size_t i = 0; i < n; i++) {
        pt[i].n_prompt = 3 + xp_rng_below(&r, 6);
        pt[i].prompt = malloc(pt[i].n_prompt * sizeof(int32_t));
        for (size_t j = 0; j < pt[i].n_prompt; j++)
            pt[i].prompt[j] = i % 2 == 0 && j < 2 + i % 4 / 2 ? (int32_t)(100 + j)
                                                              : (int32_t)xp_rng_below(&r, vocab);
        for (int a = 0; a < 2; a++) {
            pt[i].n_answer[a] = 1 + xp_rng_below(&r, 4);
            pt[i].answer[a] = malloc(pt[i].n_answer[a] * sizeof(int32_t));
            for (size_t j = 0; j < pt[i].n_answer[a]; j++)
                pt[i].answer[a][j] = (int32_t)xp_rng_below(&r, vocab);
        }
        size_t n0 = pt[i].n_answer[0], n1 = pt[i].n_answer[1];
        size_t alike = n0 < n1 ? n0 : n1;
        alike -= n0 == n1 || i % 2 ? 1 : 0; /* never the same answer twice */
        if (i % 3)
            memcpy(pt[i].answer[1], pt[i].answer[0], alike * sizeof(int32_t));
        for (int a = 0; a < 2; a++)
            pt[i].gap_id[a] = pt[i].answer[a][0];
    }
    return pt;
}

typedef struct setup {
    xp_model *m;
    xp_probe_tokens *t, *c, *v;
    size_t nt, nc, nv;
} setup;

static setup make_setup(void)
{
    setup s = {xp_test_open_tiny(), NULL, NULL, NULL, 6, 2, 4};
    s.t = random_probes(s.nt, 1, 5000);
    s.c = random_probes(s.nc, 2, 5000);
    s.v = random_probes(s.nv, 3, 5000);
    return s;
}

static void free_setup(setup *s)
{
    xp_probe_tokens_free(s->t, s->nt);
    xp_probe_tokens_free(s->c, s->nc);
    xp_probe_tokens_free(s->v, s->nv);
    xp_model_close(s->m);
}

typedef struct trace {
    double last_best;
    bool best_fell;
    size_t calls, accepted;
} trace;

static void on_iter(void *ctx, const xp_search_iter *it)
{
    trace *t = ctx;
    if (t->calls++ && it->best < t->last_best)
        t->best_fell = true;
    t->last_best = it->best;
    t->accepted += it->accepted;
}

static void search(setup *s, xp_search_opts *o, xp_patch *resume, xp_search_result *r)
{
    xp_err err = {0};
    cr_assert_eq(xp_search_run(s->m, s->t, s->nt, s->c, s->nc, o, resume, r, &err), XP_OK, "%s",
                 err.msg);
}

static void flips_id(xp_patch *p, char hex[65])
{
    xp_err err = {0};
    cr_assert_eq(xp_patch_flips_sha256(p, hex, &err), XP_OK, "%s", err.msg);
}

/* The gaps of every probe with the patch applied, measured from scratch. */
static void check_patch_gives_final_gaps(setup *s, xp_search_result *r, xp_metric metric)
{
    xp_err err = {0};
    size_t nv = r->n_validation;
    double *g = malloc((s->nt + s->nc + nv) * sizeof *g);
    cr_assert_eq(xp_model_patch_apply(s->m, r->patch, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(s->m, s->t, s->nt, metric, g, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(s->m, s->c, s->nc, metric, g + s->nt, &err), XP_OK);
    if (nv)
        cr_assert_eq(xp_probe_gaps(s->m, s->v, nv, metric, g + s->nt + s->nc, &err), XP_OK);
    cr_expect(memcmp(g, r->final_gaps, (s->nt + s->nc + nv) * sizeof *g) == 0,
              "the patch is exactly the kept flips: its gaps are the search's final gaps");
    cr_assert_eq(xp_model_patch_revert(s->m, r->patch, &err), XP_OK);
    free(g);
}

Test(search, improves_and_the_patch_is_the_kept_flips, .timeout = 180)
{
    setup s = make_setup();
    int fits[] = {XP_FITNESS_MEAN, XP_FITNESS_MIN, XP_FITNESS_BORDERLINE, XP_FITNESS_FOCUSED};
    int grans[] = {XP_GRAN_BLOCK, XP_GRAN_ROW, XP_GRAN_SCALE_BIT, XP_GRAN_ROW};
    for (int i = 0; i < 4; i++) {
        xp_search_opts o;
        xp_search_opts_default(&o);
        o.fitness = fits[i];
        o.granularity = grans[i];
        o.iterations = 25;
        o.seed = 5 + (uint64_t)i;
        o.metric = i == 0 ? XP_METRIC_TOKEN_GAP : XP_METRIC_SEQ_LOGPROB;
        o.projs = i == 2 ? (1u << XP_PROJ_DOWN) | (1u << XP_PROJ_Q) : 0;
        trace t = {0};
        o.on_iter = on_iter;
        o.ctx = &t;
        xp_search_result r;
        size_t nt = s.nt;
        if (fits[i] == XP_FITNESS_MIN) /* every target must gain: two can, in a few tries */
            s.nt = 2;
        search(&s, &o, NULL, &r);
        cr_expect_eq(t.calls, r.iterations, "%s", xp_fitness_name(fits[i]));
        if (fits[i] != XP_FITNESS_FOCUSED) /* focused's best is its focal target's gap */
            cr_expect(!t.best_fell, "%s: the best fitness never falls", xp_fitness_name(fits[i]));
        cr_expect_gt(r.accepted, 0, "%s/%s: some flip is kept", xp_fitness_name(fits[i]),
                     xp_granularity_name(grans[i]));
        cr_expect_eq(r.patch->n_flips, r.accepted);
        if (fits[i] != XP_FITNESS_FOCUSED) {
            bool solved[8] = {0};
            xp_fitness_ctx f = {fits[i], o.lambda, o.epsilon, s.nt, s.nc, r.base_gaps, solved};
            double start = xp_fitness_value(&f, r.base_gaps);
            cr_expect_gt(r.best, start, "%s: fitness rises from %g", xp_fitness_name(fits[i]),
                         start);
        }
        check_patch_gives_final_gaps(&s, &r, o.metric);
        s.nt = nt;
        xp_search_result_free(&r);
    }
    free_setup(&s);
}

Test(search, naive_gauge_threads_and_resume_give_the_same_patch, .timeout = 240)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.iterations = 16;
    o.granularity = XP_GRAN_BLOCK;
    o.projs = (1u << XP_PROJ_GATE) | (1u << XP_PROJ_UP) | (1u << XP_PROJ_DOWN);
    xp_search_result a, b;
    char ida[65], idb[65];
    omp_set_num_threads(2);
    search(&s, &o, NULL, &a);
    flips_id(a.patch, ida);
    cr_assert_gt(a.accepted, 1);

    o.naive = true;
    search(&s, &o, NULL, &b);
    flips_id(b.patch, idb);
    cr_expect_str_eq(idb, ida, "the naive gauge finds the same patch");
    cr_expect(memcmp(a.final_gaps, b.final_gaps, (s.nt + s.nc) * sizeof(double)) == 0);
    xp_search_result_free(&b);
    o.naive = false;

    omp_set_num_threads(1);
    search(&s, &o, NULL, &b);
    flips_id(b.patch, idb);
    cr_expect_str_eq(idb, ida, "one thread finds the same patch");
    xp_search_result_free(&b);
    omp_set_num_threads(2);

    /* stopped after 7 iterations (the checkpoint of a killed run), then resumed */
    char ckpt[512];
    xp_test_tmp_path(ckpt, sizeof ckpt, "search-ckpt.json");
    o.iterations = 7;
    o.checkpoint = ckpt;
    o.checkpoint_every = 7;
    search(&s, &o, NULL, &b);
    xp_search_result_free(&b);
    xp_patch *saved;
    xp_err err = {0};
    cr_assert_eq(xp_patch_read(&saved, ckpt, &err), XP_OK, "%s", err.msg);
    o.iterations = 16;
    o.checkpoint = NULL;
    search(&s, &o, saved, &b);
    cr_expect_eq(b.resumed_at, 7);
    flips_id(b.patch, idb);
    cr_expect_str_eq(idb, ida, "resumed from the checkpoint: the same final patch");
    cr_expect(memcmp(a.final_gaps, b.final_gaps, (s.nt + s.nc) * sizeof(double)) == 0);
    xp_search_result_free(&b);
    xp_patch_free(saved);
    xp_search_result_free(&a);
    free_setup(&s);
}

/* Stopped at iteration `at` (its checkpoint read back), then resumed: the same patch, the
 * same gaps and the same counts as the uninterrupted run. */
static void check_resume(setup *s, xp_search_opts o, size_t at)
{
    xp_search_result a, b;
    char ida[65], idb[65], ckpt[512];
    search(s, &o, NULL, &a);
    xp_test_tmp_path(ckpt, sizeof ckpt, "search-resume.json");
    xp_search_opts part = o;
    part.iterations = at;
    part.checkpoint = ckpt;
    part.checkpoint_every = at;
    search(s, &part, NULL, &b);
    bool wrote = b.patch->n_flips > 0;
    xp_search_result_free(&b);
    xp_patch *saved = NULL;
    xp_err err = {0};
    if (wrote)
        cr_assert_eq(xp_patch_read(&saved, ckpt, &err), XP_OK, "%s", err.msg);
    search(s, &o, saved, &b);
    cr_expect_eq(b.resumed_at, wrote ? at : 0);
    if (a.patch->n_flips) {
        flips_id(a.patch, ida);
        flips_id(b.patch, idb);
        cr_expect_str_eq(idb, ida, "%s/%s resumed at %zu: the same patch",
                         xp_fitness_name(o.fitness), xp_granularity_name(o.granularity), at);
    }
    cr_expect_eq(b.accepted, a.accepted);
    cr_expect_eq(b.iterations, a.iterations);
    cr_expect_eq(b.auto_stopped, a.auto_stopped);
    cr_expect(memcmp(&a.best, &b.best, sizeof a.best) == 0, "best %a vs %a", a.best, b.best);
    cr_expect(
        memcmp(a.final_gaps, b.final_gaps, (s->nt + s->nc + a.n_validation) * sizeof(double)) == 0);
    cr_expect_eq(b.validation_best_flips, a.validation_best_flips);
    cr_expect_eq(b.validation_rejected, a.validation_rejected);
    xp_search_result_free(&a);
    xp_search_result_free(&b);
    xp_patch_free(saved);
}

Test(search, resume_for_every_fitness_and_after_an_auto_stop, .timeout = 240)
{
    setup s = make_setup();
    int fits[] = {XP_FITNESS_FOCUSED, XP_FITNESS_BORDERLINE, XP_FITNESS_MIN};
    int grans[] = {XP_GRAN_SCALE_BIT, XP_GRAN_ROW, XP_GRAN_BLOCK};
    for (int i = 0; i < 3; i++) {
        xp_search_opts o;
        xp_search_opts_default(&o);
        o.fitness = fits[i];
        o.granularity = grans[i];
        o.scale_bit_min = 8, o.scale_bit_max = 14;
        o.iterations = 12;
        o.seed = 30 + (uint64_t)i;
        check_resume(&s, o, 5);
    }
    /* the window rule stopped the run before its checkpoint: resuming must not go on */
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.granularity = XP_GRAN_ROW;
    o.iterations = 30;
    o.stop_window = 4;
    o.stop_rate = 0.99;
    xp_search_result r;
    search(&s, &o, NULL, &r);
    cr_assert(r.auto_stopped && r.iterations < 30);
    size_t stopped_at = r.iterations;
    xp_search_result_free(&r);
    check_resume(&s, o, stopped_at);
    free_setup(&s);
}

Test(search, naive_and_fast_agree_on_token_gap, .timeout = 120)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.metric = XP_METRIC_TOKEN_GAP;
    o.iterations = 10;
    xp_search_result a, b;
    search(&s, &o, NULL, &a);
    o.naive = true;
    search(&s, &o, NULL, &b);
    cr_expect(memcmp(a.base_gaps, b.base_gaps, (s.nt + s.nc) * sizeof(double)) == 0);
    cr_expect(memcmp(a.final_gaps, b.final_gaps, (s.nt + s.nc) * sizeof(double)) == 0);
    cr_expect_eq(a.accepted, b.accepted);
    xp_search_result_free(&a);
    xp_search_result_free(&b);
    free_setup(&s);
}

Test(search, bad_settings_are_refused)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    xp_search_result r;
    xp_err err = {0};
    uint32_t layer = 99;
    o.layers = &layer;
    o.n_layers = 1;
    cr_expect_eq(xp_search_run(s.m, s.t, s.nt, s.c, s.nc, &o, NULL, &r, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "layer 99"), "%s", err.msg);
    xp_search_opts_default(&o);
    o.scale_bit_min = 9, o.scale_bit_max = 4;
    cr_expect_eq(xp_search_run(s.m, s.t, s.nt, s.c, s.nc, &o, NULL, &r, &err), XP_EINVAL);
    xp_search_opts_default(&o);
    o.metric = XP_METRIC_GENERATION;
    cr_expect_eq(xp_search_run(s.m, s.t, s.nt, s.c, s.nc, &o, NULL, &r, &err), XP_EINVAL);
    xp_search_opts_default(&o);
    cr_expect_eq(xp_search_run(s.m, s.t, 0, s.c, s.nc, &o, NULL, &r, &err), XP_EINVAL);
    free_setup(&s);
}

Test(search, screening_auto_stop_min_gain_and_uniform_proposals, .timeout = 180)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_result r;
    /* screening off: every candidate is measured on every probe */
    xp_search_opts_default(&o);
    o.iterations = 6;
    o.screen = 0;
    o.proposal = XP_PROPOSE_UNIFORM;
    search(&s, &o, NULL, &r);
    cr_expect_eq(r.screened_out, 0);
    cr_expect_eq(r.probes_run, (1 + r.iterations) * (s.nt + s.nc),
                 "baseline + every probe "
                 "each iteration");
    xp_search_result_free(&r);
    /* a gain no flip reaches: nothing is kept */
    o.min_gain = 1e9;
    search(&s, &o, NULL, &r);
    cr_expect_eq(r.accepted, 0);
    cr_expect_eq(r.patch->n_flips, 0);
    xp_search_result_free(&r);
    /* auto-stop: with a window of 3 and a rate of 1, the first window with a rejection
     * ends the run */
    xp_search_opts_default(&o);
    o.iterations = 40;
    o.stop_window = 3;
    o.stop_rate = 1.0;
    trace t = {0};
    o.on_iter = on_iter;
    o.ctx = &t;
    search(&s, &o, NULL, &r);
    cr_expect(r.auto_stopped);
    cr_expect_lt(r.iterations, 40);
    cr_expect_geq(r.iterations, 3);
    xp_search_result_free(&r);
    free_setup(&s);
}

/* ---- validation inside the search ---- */

typedef struct vtrace {
    size_t n, screen;
    size_t most_written; /* the most flips a written patch held */
    xp_search_iter it[64];
    xp_candidate kept[64];
    size_t n_kept;
    bool probes_ok;
    size_t n_all;
} vtrace;

static void on_viter(void *ctx, const xp_search_iter *it)
{
    vtrace *t = ctx;
    if (t->n < 64)
        t->it[t->n++] = *it;
    if (it->accepted && t->n_kept < 64)
        t->kept[t->n_kept++] = it->cand;
    /* the validation probes are measured with the others, never in screening */
    if (it->probes_run != (it->screened ? t->screen : t->screen + t->n_all))
        t->probes_ok = false;
}

static int note_written(void *ctx, xp_patch *p, xp_err *err)
{
    vtrace *t = ctx;
    (void)err;
    t->most_written = p->n_flips > t->most_written ? p->n_flips : t->most_written;
    return XP_OK;
}

static void with_validation(setup *s, xp_search_opts *o, int rule, vtrace *t)
{
    o->validation = s->v;
    o->n_validation = s->nv;
    o->validation_rule = rule;
    *t = (vtrace){.screen = o->screen, .probes_ok = true, .n_all = s->nt + s->nc + s->nv};
    o->on_iter = on_viter;
    o->ctx = t;
}

Test(search, validation_keep_never_lowers_the_validation_objective, .timeout = 180)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.iterations = 40;
    o.seed = 11;
    vtrace t;
    with_validation(&s, &o, XP_VALIDATION_KEEP, &t);
    xp_search_result r;
    search(&s, &o, NULL, &r);
    cr_expect(t.probes_ok, "validation probes measured at every full measurement, never "
                           "screened");
    double now = r.validation_base;
    size_t rejected = 0;
    for (size_t i = 0; i < t.n; i++) {
        const xp_search_iter *it = &t.it[i];
        if (it->accepted) {
            cr_expect_geq(it->validation, now, "a kept flip does not lower the validation");
            now = it->validation;
        }
        cr_expect(it->validation_now == now, "iteration %zu: the kept flips' value", it->iter);
        rejected += it->validation_rejected;
        if (it->validation_rejected)
            cr_expect_lt(it->validation, now);
    }
    cr_expect_eq(rejected, r.validation_rejected);
    cr_expect_gt(rejected, 0, "the validation refused some flip the fitness took");
    cr_expect(r.validation_final == now);
    cr_expect_gt(r.accepted, 0);
    cr_expect_eq(r.patch->n_flips, r.accepted);
    check_patch_gives_final_gaps(&s, &r, o.metric);
    xp_search_result_free(&r);
    free_setup(&s);
}

Test(search, validation_early_stop_keeps_the_prefix_at_the_best_point, .timeout = 180)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.iterations = 40;
    o.seed = 13; /* a run whose validation peaks before its last kept flip */
    vtrace plain = {0}, t;
    o.on_iter = on_viter;
    o.ctx = &plain;
    xp_search_result a, r;
    search(&s, &o, NULL, &a);
    with_validation(&s, &o, XP_VALIDATION_EARLY_STOP, &t);
    o.write_patch = note_written;
    o.checkpoint_every = 5;
    search(&s, &o, NULL, &r);
    cr_expect(t.probes_ok);
    /* the training fitness alone decides: the same flips kept, in the same order */
    cr_assert_eq(t.n_kept, plain.n_kept);
    cr_expect(memcmp(t.kept, plain.kept, t.n_kept * sizeof *t.kept) == 0);
    cr_expect_eq(r.accepted, a.accepted);
    /* the best validation point (the first of equals), the start included */
    double best = r.validation_base;
    size_t at = 0, kept = 0;
    for (size_t i = 0; i < t.n; i++)
        if (t.it[i].accepted && (kept++, t.it[i].validation_now > best))
            best = t.it[i].validation_now, at = kept;
    cr_expect_eq(r.validation_best_flips, at);
    cr_expect(at < kept && at > 0, "stopped early: %zu of %zu", at, kept);
    cr_expect_eq(r.patch->n_flips, at, "the final patch is the prefix of %zu flips", at);
    cr_expect(r.validation_final == best);
    cr_expect_eq(t.most_written, at, "no checkpoint holds a flip past the best point");
    if (at)
        check_patch_gives_final_gaps(&s, &r, o.metric);
    xp_search_result_free(&a);
    xp_search_result_free(&r);
    free_setup(&s);
}

Test(search, validation_resumes_exactly_under_both_rules, .timeout = 240)
{
    setup s = make_setup();
    for (int rule = 0; rule < 2; rule++) {
        xp_search_opts o;
        xp_search_opts_default(&o);
        o.iterations = 40;
        o.seed = rule == XP_VALIDATION_KEEP ? 11 : 13; /* as above: rejections, an early stop */
        o.validation = s.v;
        o.n_validation = s.nv;
        o.validation_rule = rule;
        check_resume(&s, o, 13);
    }
    free_setup(&s);
}

Test(search, flip_effect_counts_moves_and_crossings)
{
    double before[] = {-1.0, 0.5, 2.0, 0.1, -0.2, 0.3};
    double after[] = {0.5, 0.5, 1.0, -0.1, 0.4, 0.3};
    size_t ends[3] = {2, 4, 6}; /* targets 0-1, controls 2-3, validation 4-5 */
    xp_probe_move room[6];
    xp_flip_effect e = {.crossings = room};
    xp_flip_effect_measure(&e, before, after, ends);
    cr_expect_eq(e.moved, 4);
    cr_expect_eq(e.crossed[0], 1);
    cr_expect_eq(e.crossed[1], 1);
    cr_expect_eq(e.crossed[2], 1);
    cr_assert_eq(e.n_crossings, 3);
    cr_expect(e.crossings[1].role == XP_SEARCH_CONTROL && e.crossings[1].index == 1);
    cr_expect(e.crossings[2].role == XP_SEARCH_VALIDATION && e.crossings[2].index == 0);
    cr_assert_eq(e.n_largest, 4);
    cr_expect(e.largest[0].role == XP_SEARCH_TARGET && e.largest[0].index == 0, "1.5 first");
    cr_expect(e.largest[1].role == XP_SEARCH_CONTROL && e.largest[1].index == 0, "then 1.0");
}

/* token_gap ids for each probe that the model as it is scores nearly alike (the two
 * closest logits among its top 64 at the prompt's end), so small changes cross zero. */
static void near_zero_ids(xp_model *m, xp_probe_tokens *pt, size_t n)
{
    size_t V = xp_model_shape(m)->n_vocab;
    float *logits = malloc(V * sizeof *logits);
    for (size_t i = 0; i < n; i++) {
        uint8_t *want = calloc(pt[i].n_prompt, 1);
        want[pt[i].n_prompt - 1] = 1;
        xp_seq sq = {NULL, pt[i].prompt, pt[i].n_prompt, want};
        xp_err err = {0};
        cr_assert_eq(xp_forward(m, XP_PATH_FAST, &sq, 1, logits, &err), XP_OK, "%s", err.msg);
        int32_t top[64];
        for (size_t k = 0; k < 64; k++) { /* the top 64, by selection */
            int32_t best = -1;
            for (size_t v = 0; v < V; v++) {
                bool taken = false;
                for (size_t j = 0; j < k && !taken; j++)
                    taken = top[j] == (int32_t)v;
                if (!taken && (best < 0 || logits[v] > logits[best]))
                    best = (int32_t)v;
            }
            top[k] = best;
        }
        size_t at = 0;
        for (size_t k = 1; k + 1 < 64; k++)
            if (logits[top[k]] - logits[top[k + 1]] < logits[top[at]] - logits[top[at + 1]])
                at = k;
        pt[i].gap_id[0] = top[at + 1]; /* just below: a gap a little under zero */
        pt[i].gap_id[1] = top[at];
        free(want);
    }
    free(logits);
}

/* show --probes: each flip's crossings, applied one after another, against the gaps of
 * each prefix of the patch measured from scratch. */
Test(search, crossings_per_flip_match_each_prefix_measured_alone, .timeout = 180)
{
    setup s = make_setup();
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.projs = (1u << XP_PROJ_GATE) | (1u << XP_PROJ_UP) | (1u << XP_PROJ_DOWN);
    xp_candidate cand[12];
    size_t n_cand;
    xp_err err = {0};
    cr_assert_eq(xp_search_propose(s.m, &o, 12, cand, &n_cand, &err), XP_OK);
    xp_patch *p;
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    for (size_t i = 0; i < n_cand; i++) {
        char tensor[XP_TENSOR_NAME_MAX];
        xp_tensor_name(tensor, sizeof tensor, cand[i].layer, xp_proj_tensor(cand[i].proj));
        xp_flip f = xp_candidate_as_flip(&cand[i]);
        cr_assert_eq(xp_patch_add(p, tensor, &f, &err), XP_OK);
    }
    cr_assert_eq(xp_patch_bind(p, xp_model_gguf(s.m), &err), XP_OK, "%s", err.msg);
    size_t n = s.nt;
    near_zero_ids(s.m, s.t, n);
    xp_metric metric = XP_METRIC_TOKEN_GAP;
    xp_crossings c;
    cr_assert_eq(xp_crossings_run(s.m, p, s.t, n, metric, &c, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(c.n_flips, p->n_flips);
    double *prev = malloc(n * sizeof *prev), *g = malloc(n * sizeof *g);
    cr_assert_eq(xp_probe_gaps(s.m, s.t, n, metric, prev, &err), XP_OK);
    cr_expect(memcmp(prev, c.base, n * sizeof *prev) == 0);
    size_t changed = 0;
    for (size_t k = 0; k < p->n_flips; k++) {
        xp_patch *prefix;
        cr_assert_eq(xp_patch_new(&prefix, &err), XP_OK);
        for (size_t i = 0; i <= k; i++)
            cr_assert_eq(
                xp_patch_add(prefix, p->tensors[p->flips[i].tensor].name, &p->flips[i], &err),
                XP_OK);
        cr_assert_eq(xp_model_patch_apply(s.m, prefix, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_probe_gaps(s.m, s.t, n, metric, g, &err), XP_OK);
        cr_assert_eq(xp_model_patch_revert(s.m, prefix, &err), XP_OK);
        xp_patch_free(prefix);
        size_t crossed = 0, moved = 0;
        for (size_t i = 0; i < n; i++) {
            moved += g[i] != prev[i];
            if ((g[i] > 0) != (prev[i] > 0)) {
                cr_assert_lt(crossed, c.flips[k].n_crossings, "flip %zu: probe %zu crossed", k, i);
                cr_expect_eq(c.flips[k].crossings[crossed].index, i);
                cr_expect(c.flips[k].crossings[crossed].after == g[i]);
                crossed++;
            }
        }
        cr_expect_eq(crossed, c.flips[k].n_crossings, "flip %zu", k);
        cr_expect_eq(moved, c.flips[k].moved, "flip %zu", k);
        changed += crossed > 0;
        memcpy(prev, g, n * sizeof *g);
    }
    cr_expect_eq(changed, c.changed_sign);
    cr_expect_gt(changed, 0, "some flip changed an answer (%zu flips)", p->n_flips);
    cr_expect(memcmp(prev, c.final, n * sizeof *prev) == 0);
    cr_assert_eq(xp_probe_gaps(s.m, s.t, n, metric, g, &err), XP_OK);
    cr_expect(memcmp(g, c.base, n * sizeof *g) == 0, "the model is left as it was");
    free(prev), free(g);
    xp_crossings_free(&c);
    xp_patch_free(p);
    free_setup(&s);
}
