/* Probes as token batches and the gaps measured on them. A set is tokenised once
 * (prompt, both continuations in context, the token_gap ids) and reused for every
 * measurement; gaps are computed from logits in exactly one function (xp_probe_gap),
 * and measured through packed fast-path batches whose logits are bit-identical to
 * running each probe alone, so a search never mistakes batching for an effect. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/lse.h"
#include "xorpatch/probe.h"

/* Batch limits: logits rows cost n_vocab floats each (600 KB on Qwen3), so a chunk of
 * probes is cut at ROWS wanted rows (150 MB) or TOKENS tokens, whichever comes first;
 * bigger chunks read every weight fewer times. */
#define CHUNK_ROWS 256
#define CHUNK_TOKENS 4096

void xp_probe_tokens_free(xp_probe_tokens *pt, size_t n)
{
    if (!pt)
        return;
    for (size_t i = 0; i < n; i++) {
        free(pt[i].prompt);
        free(pt[i].answer[0]);
        free(pt[i].answer[1]);
    }
    free(pt);
}

/* An answer's tokens in context. A continuation holding a special token's text (Neagari
 * editing probes answer "</think>", and store its special id as the base id) is
 * encoded with that token, alone; any other answer in context after a plain prompt. */
static int answer_tokens(const xp_tokenizer *t, const xp_probe *p, const char *answer,
                         const int32_t *prompt, size_t n_prompt, int32_t **ids, size_t *n,
                         xp_err *err)
{
    size_t alen = strlen(answer);
    int32_t *plain, *special;
    size_t np, ns;
    int rc = xp_tokenize(t, answer, alen, false, &plain, &np, err);
    if (rc)
        return rc;
    if ((rc = xp_tokenize(t, answer, alen, true, &special, &ns, err))) {
        free(plain);
        return rc;
    }
    bool has_special = np != ns || memcmp(plain, special, np * sizeof *plain) != 0;
    if (has_special || p->chat) {
        /* a chat template ends at a token boundary ("</think>\n\n"), so the answer is
         * encoded on its own there */
        free(has_special ? plain : special);
        *ids = has_special ? special : plain;
        *n = has_special ? ns : np;
        return XP_OK;
    }
    free(special);
    size_t plen = strlen(p->prompt);
    char *joined = malloc(plen + alen + 1);
    if (!joined) {
        free(plain);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    memcpy(joined, p->prompt, plen);
    memcpy(joined + plen, answer, alen + 1);
    int32_t *all;
    size_t na;
    rc = xp_tokenize(t, joined, plen + alen, false, &all, &na, err);
    free(joined);
    if (rc) {
        free(plain);
        return rc;
    }
    if (na > n_prompt && memcmp(all, prompt, n_prompt * sizeof *all) == 0) {
        free(plain);
        memmove(all, all + n_prompt, (na - n_prompt) * sizeof *all);
        *ids = all;
        *n = na - n_prompt;
    } else {
        free(all);
        *ids = plain;
        *n = np;
    }
    return XP_OK;
}

static int tokenize_one(const xp_probe_set *s, size_t i, const xp_tokenizer *t, xp_probe_tokens *o,
                        xp_err *err)
{
    const xp_probe *p = &s->probes[i];
    int rc = p->chat ? xp_chat_encode(t, p->system, p->prompt, false, &o->prompt, &o->n_prompt, err)
                     : xp_tokenize(t, p->prompt, strlen(p->prompt), false, &o->prompt, &o->n_prompt,
                                   err);
    if (!rc && o->n_prompt == 0)
        rc = xp_err_set(err, XP_EFORMAT, "field \"prompt\" has no tokens");
    const char *const answers[2] = {p->correct, p->wrong};
    static const char *const fields[2] = {"correct", "wrong"};
    for (int a = 0; !rc && a < (p->wrong ? 2 : 1); a++) {
        rc = answer_tokens(t, p, answers[a], o->prompt, o->n_prompt, &o->answer[a], &o->n_answer[a],
                           err);
        if (!rc && o->n_answer[a] == 0)
            rc = xp_err_set(err, XP_EFORMAT, "field \"%s\" has no tokens", fields[a]);
    }
    size_t V = xp_tokenizer_n_vocab(t);
    for (int a = 0; !rc && a < 2; a++) {
        static const char *const ids[2] = {"base_correct_id", "base_wrong_id"};
        if (p->base_id[a] >= 0 && (size_t)p->base_id[a] >= V)
            rc = xp_err_set(err, XP_EFORMAT,
                            "field \"%s\": id %d is not in the vocabulary of "
                            "%zu tokens",
                            ids[a], p->base_id[a], V);
    }
    if (!rc) {
        bool stored = p->base_id[0] >= 0 && p->base_id[1] >= 0;
        for (int a = 0; a < 2; a++)
            o->gap_id[a] = stored ? p->base_id[a] : o->n_answer[a] ? o->answer[a][0] : -1;
    }
    if (rc)
        xp_err_wrap(err, "%s: probe \"%s\"", s->path, p->name);
    return rc;
}

const char *xp_token_rule_name(int rule)
{
    return rule == XP_TOKEN_RULE_FIRST ? "first" : rule == XP_TOKEN_RULE_LAST ? "last" : "?";
}

int xp_token_rule_from_name(const char *name)
{
    for (int r = XP_TOKEN_RULE_FIRST; r <= XP_TOKEN_RULE_LAST && name; r++)
        if (!strcmp(name, xp_token_rule_name(r)))
            return r;
    return -1;
}

int xp_probe_tokens_token_rule(const xp_probe_set *s, const xp_tokenizer *t, int rule,
                               xp_probe_tokens *pt, xp_err *err)
{
    if (rule != XP_TOKEN_RULE_FIRST && rule != XP_TOKEN_RULE_LAST)
        return xp_err_set(err, XP_EINVAL, "unknown token rule %d", rule);
    for (size_t i = 0; i < s->n; i++) {
        const xp_probe *p = &s->probes[i];
        const char *const answers[2] = {p->correct, p->wrong};
        if (p->base_id[0] >= 0 && p->base_id[1] >= 0)
            continue; /* the file's own ids */
        for (int a = 0; a < 2; a++) {
            if (!answers[a] || rule == XP_TOKEN_RULE_FIRST) {
                pt[i].gap_id[a] = pt[i].n_answer[a] ? pt[i].answer[a][0] : -1;
                continue;
            }
            int32_t *ids;
            size_t n;
            int rc = xp_tokenize(t, answers[a], strlen(answers[a]), false, &ids, &n, err);
            if (rc) {
                xp_err_wrap(err, "%s: probe \"%s\"", s->path, p->name);
                return rc;
            }
            pt[i].gap_id[a] = n ? ids[n - 1] : -1;
            free(ids);
        }
    }
    return XP_OK;
}

int xp_probe_tokenize(const xp_probe_set *s, const xp_tokenizer *t, xp_probe_tokens **out,
                      xp_err *err)
{
    *out = NULL;
    if (!t)
        return xp_err_set(err, XP_EINVAL, "%s: probes need a tokenizer; the model has none",
                          s->path);
    xp_probe_tokens *pt = xp_calloc(s->n, sizeof *pt);
    if (!pt)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        int rc = tokenize_one(s, i, t, &pt[i], err);
        if (rc) {
            xp_probe_tokens_free(pt, s->n);
            return rc;
        }
    }
    *out = pt;
    return XP_OK;
}

bool xp_probe_dead(const xp_probe_tokens *pt, xp_metric metric)
{
    if (!xp_metric_pair(metric))
        return false; /* the correct answer against everything else: never blind */
    if (metric == XP_METRIC_TOKEN_GAP)
        return pt->gap_id[0] == pt->gap_id[1];
    return pt->n_answer[0] == pt->n_answer[1] &&
           !memcmp(pt->answer[0], pt->answer[1], pt->n_answer[0] * sizeof *pt->answer[0]);
}

/* log p of answer a's tokens from..n_answer[a]-1, rows[i] predicting token from + i:
 * log Σ exp(row) max-shifted, summed in index order, accumulated in double. */
static double answer_logprob(const xp_probe_tokens *pt, int a, size_t from, const float *rows,
                             size_t V)
{
    double lp = 0;
    for (size_t i = from; i < pt->n_answer[a]; i++) {
        const float *r = rows + (i - from) * V;
        lp += (double)r[pt->answer[a][i]] - xp_log_sum_exp(r, V);
    }
    return lp;
}

/* log p of all of answer a (row_last predicts its first token, rows the others). */
static double whole_logprob(const xp_probe_tokens *pt, int a, const float *row_last,
                            const float *rows, size_t V)
{
    double lp = (double)row_last[pt->answer[a][0]] - xp_log_sum_exp(row_last, V);
    return pt->n_answer[a] > 1 ? lp + answer_logprob(pt, a, 1, rows, V) : lp;
}

size_t xp_probe_shared(const xp_probe_tokens *pt)
{
    size_t s = 0;
    while (s + 1 < pt->n_answer[0] && s + 1 < pt->n_answer[1] &&
           pt->answer[0][s] == pt->answer[1][s])
        s++;
    return s;
}

double xp_probe_gap_parts(const xp_probe_tokens *pt, xp_metric metric, const float first[2],
                          const float *const own[2], size_t n_vocab)
{
    double lp[2] = {0, 0};
    size_t s = xp_probe_shared(pt);
    for (int a = 0; a < 2 && metric != XP_METRIC_TOKEN_GAP; a++)
        if (s + 1 < pt->n_answer[a])
            lp[a] = answer_logprob(pt, a, s + 1, own[a], n_vocab);
    return ((double)first[0] - (double)first[1]) + (lp[0] - lp[1]);
}

/* The least, over the correct answer's tokens, of its logit minus the strongest other
 * logit at that position (row_last predicts token 0, rows the others). */
static double answer_margin(const xp_probe_tokens *pt, const float *row_last, const float *rows,
                            size_t V)
{
    double least = INFINITY;
    for (size_t i = 0; i < pt->n_answer[0]; i++) {
        const float *r = i ? rows + (i - 1) * V : row_last;
        int32_t c = pt->answer[0][i];
        float other = -INFINITY;
        for (size_t j = 0; j < V; j++)
            other = (int32_t)j != c && r[j] > other ? r[j] : other;
        double m = (double)r[c] - (double)other;
        least = m < least ? m : least;
    }
    return least;
}

double xp_probe_gap(const xp_probe_tokens *pt, xp_metric metric, const float *row_last,
                    const float *const rows[2], size_t n_vocab)
{
    if (metric == XP_METRIC_ANSWER_LOGPROB)
        return whole_logprob(pt, 0, row_last, rows[0], n_vocab);
    if (metric == XP_METRIC_MARGIN)
        return answer_margin(pt, row_last, rows[0], n_vocab);
    if (metric == XP_METRIC_TOKEN_GAP) {
        float first[2] = {row_last[pt->gap_id[0]], row_last[pt->gap_id[1]]};
        return xp_probe_gap_parts(pt, metric, first, NULL, n_vocab);
    }
    size_t s = xp_probe_shared(pt), V = n_vocab;
    const float *part = s ? rows[0] + (s - 1) * V : row_last;
    float first[2] = {part[pt->answer[0][s]], part[pt->answer[1][s]]};
    const float *own[2];
    for (int a = 0; a < 2; a++)
        own[a] = s + 1 < pt->n_answer[a] ? rows[a] + s * V : NULL;
    return xp_probe_gap_parts(pt, metric, first, own, V);
}

/* 1-based rank of id in row: 1 + the ids ahead of it (higher logit, or equal and lower id). */
static size_t rank_of(const float *row, size_t V, int32_t id)
{
    size_t r = 1;
    float v = row[id];
    for (size_t i = 0; i < V; i++)
        r += row[i] > v || (row[i] == v && (int32_t)i < id);
    return r;
}

static int32_t argmax(const float *row, size_t V)
{
    size_t b = 0;
    for (size_t i = 1; i < V; i++)
        b = row[i] > row[b] ? i : b;
    return (int32_t)b;
}

static void fill_score(const xp_probe_tokens *pt, xp_metric metric, const float *row_last,
                       const float *const rows[2], size_t V, xp_probe_score *sc)
{
    bool seq = metric != XP_METRIC_TOKEN_GAP, pair = xp_metric_pair(metric);
    sc->gap = xp_probe_gap(pt, metric, row_last, rows, V);
    for (int a = 0; a < 2; a++) {
        bool read = seq && pt->n_answer[a] && (a == 0 || pair);
        sc->logprob[a] = read ? whole_logprob(pt, a, row_last, rows[a], V) : NAN;
        sc->measured[a] = !seq ? pt->gap_id[a] : pt->n_answer[a] ? pt->answer[a][0] : -1;
    }
    sc->margin = seq ? answer_margin(pt, row_last, rows[0], V) : NAN;
    sc->emitted = argmax(row_last, V);
    sc->distractor_rank = 0;
    if (!pair || xp_probe_dead(pt, metric))
        return;
    if (!seq) {
        sc->distractor_rank = rank_of(row_last, V, pt->gap_id[1]);
        return;
    }
    size_t k = 0, common = pt->n_answer[0] < pt->n_answer[1] ? pt->n_answer[0] : pt->n_answer[1];
    while (k < common && pt->answer[0][k] == pt->answer[1][k])
        k++;
    if (k < common) /* where the answers part; a prefix pair has no distractor token */
        sc->distractor_rank = rank_of(k ? rows[1] + (k - 1) * V : row_last, V, pt->answer[1][k]);
}

/* The sequences of one probe: A = prompt + correct (minus its last token), with logits at
 * the last prompt position and at each answer token; B = prompt + wrong likewise without
 * the last prompt position (A has it), for the pair metrics only. token_gap needs A's
 * last prompt row only. */
typedef enum { READ_LAST, READ_CORRECT, READ_BOTH } reading;

static reading reading_of(xp_metric metric)
{
    return metric == XP_METRIC_TOKEN_GAP ? READ_LAST
           : xp_metric_pair(metric)      ? READ_BOTH
                                         : READ_CORRECT;
}

static size_t probe_rows(const xp_probe_tokens *pt, reading r)
{
    size_t both = r == READ_BOTH && pt->n_answer[1] > 1 ? pt->n_answer[1] - 1 : 0;
    return r == READ_LAST ? 1 : pt->n_answer[0] + both;
}

static size_t probe_tokens(const xp_probe_tokens *pt, reading r)
{
    size_t both = r == READ_BOTH ? pt->n_prompt + pt->n_answer[1] - 1 : 0;
    return r == READ_LAST ? pt->n_prompt : pt->n_prompt + pt->n_answer[0] - 1 + both;
}

static int run_chunk(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                     xp_probe_score *out, double *gaps, float *logits, xp_err *err)
{
    reading rd = reading_of(metric);
    bool seq = rd != READ_LAST;
    size_t V = xp_model_shape(m)->n_vocab, n_seqs = 0, n_tok = 0;
    for (size_t i = 0; i < n; i++)
        n_tok += probe_tokens(&pt[i], rd);
    xp_seq *seqs = xp_calloc(2 * n, sizeof *seqs);
    int32_t *tok = xp_calloc(n_tok, sizeof *tok);
    uint8_t *want = xp_calloc(n_tok, 1);
    if (!seqs || !tok || !want) {
        free(seqs), free(tok), free(want);
        return xp_err_set(err, XP_ENOMEM, "out of memory for a batch of %zu tokens", n_tok);
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        for (int a = 0; a < (rd == READ_BOTH ? 2 : 1); a++) {
            size_t np = pt[i].n_prompt, na = seq ? pt[i].n_answer[a] - 1 : 0;
            if (a == 1 && na == 0)
                continue; /* a one-token wrong answer needs no row of its own */
            memcpy(tok + at, pt[i].prompt, np * sizeof *tok);
            memcpy(tok + at + np, pt[i].answer[a], na * sizeof *tok);
            want[at + np - 1] = a == 0;
            memset(want + at + np, 1, na);
            seqs[n_seqs++] = (xp_seq){NULL, tok + at, np + na, want + at};
            at += np + na;
        }
    }
    int rc = xp_forward(m, XP_PATH_FAST, seqs, n_seqs, logits, err);
    const float *row = logits;
    for (size_t i = 0; !rc && i < n; i++) {
        const float *last = row, *rows[2] = {row + V, row + V};
        row += (seq ? pt[i].n_answer[0] : 1) * V;
        if (rd == READ_BOTH) {
            rows[1] = row;
            row += (pt[i].n_answer[1] - 1) * V;
        }
        if (out)
            fill_score(&pt[i], metric, last, rows, V, &out[i]);
        if (gaps)
            gaps[i] = out ? out[i].gap : xp_probe_gap(&pt[i], metric, last, rows, V);
    }
    free(seqs), free(tok), free(want);
    return rc;
}

/* Scores and / or gaps of n probes, in chunks that bound the logits memory. */
static int measure(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                   xp_probe_score *out, double *gaps, xp_err *err)
{
    reading rd = reading_of(metric);
    size_t V = xp_model_shape(m)->n_vocab, max_rows = CHUNK_ROWS;
    for (size_t i = 0; i < n; i++) {
        if (rd != READ_CORRECT && pt[i].n_answer[1] == 0)
            return xp_err_set(err, XP_EINVAL,
                              "probe %zu has no wrong answer, and %s compares "
                              "with one (margin and answer_logprob do not)",
                              i, xp_metric_name(metric));
        max_rows = probe_rows(&pt[i], rd) > max_rows ? probe_rows(&pt[i], rd) : max_rows;
    }
    float *logits = xp_calloc(max_rows, V * sizeof *logits);
    if (!logits)
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu logits rows", max_rows);
    int rc = XP_OK;
    for (size_t i = 0; !rc && i < n;) {
        size_t j = i, rows = 0, toks = 0;
        while (j < n && (j == i || (rows + probe_rows(&pt[j], rd) <= CHUNK_ROWS &&
                                    toks + probe_tokens(&pt[j], rd) <= CHUNK_TOKENS))) {
            rows += probe_rows(&pt[j], rd);
            toks += probe_tokens(&pt[j], rd);
            j++;
        }
        rc = run_chunk(m, pt + i, j - i, metric, out ? out + i : NULL, gaps ? gaps + i : NULL,
                       logits, err);
        if (rc)
            xp_err_wrap(err, "probes %zu..%zu", i, j - 1);
        i = j;
    }
    free(logits);
    return rc;
}

int xp_probe_gaps(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric, double *gaps,
                  xp_err *err)
{
    return measure(m, pt, n, metric, NULL, gaps, err);
}

int xp_probe_scores(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_probe_score *out, xp_err *err)
{
    return measure(m, pt, n, metric, out, NULL, err);
}
