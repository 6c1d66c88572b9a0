/* xorpatch's probe layer: probe sets and their file formats, the metrics and the one
 * place a gap is computed, batched generation, the matchers that judge generated text
 * (and task benchmarks' outputs), and the probe audit. */
#ifndef XORPATCH_PROBE_H
#define XORPATCH_PROBE_H

#include "xorpatch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- probes and metrics --------------------------------------------------------- */

/* A probe is a prompt with a correct answer and, for the pair metrics, a wrong one (the
 * distractor); its gap is positive when the model prefers the correct answer.
 * seq_logprob (the default): summed teacher-forced log-probability of the correct
 * continuation minus the wrong one's. token_gap (legacy, for reproducing old results
 * only): logit(correct) − logit(wrong) at the last prompt position with each answer
 * reduced to one id (the stored base ids when the file has them, else the first token of
 * the in-context continuation), so multi-token answers such as " 20" and " 0" share an id
 * and the probe is dead. generation: greedy output judged by the set's matcher; its gap
 * is the seq_logprob gap.
 * The correctness metrics read the correct continuation alone (no wrong answer needed):
 * answer_logprob is its teacher-forced log-probability (≤ 0; its sign says nothing);
 * margin is, over its tokens, the least of (the correct token's logit − the strongest
 * other token's logit) at that position, so the distractor is whatever the model would
 * say now. margin > 0 exactly when greedy decoding, fed the prompt, emits the answer's
 * tokens (in its in-context tokenisation) one after another; a tie (margin 0) counts as
 * not right. What greedy generation emits after the answer is not measured: the matcher
 * may still reject " 86" followed by "0". */
typedef enum {
    XP_METRIC_SEQ_LOGPROB = 0,
    XP_METRIC_TOKEN_GAP,
    XP_METRIC_GENERATION,
    XP_METRIC_ANSWER_LOGPROB,
    XP_METRIC_MARGIN
} xp_metric;
/* "seq_logprob", "token_gap", "generation", "answer_logprob", "margin" */
const char *xp_metric_name(xp_metric m);
int xp_metric_from_name(const char *name);    /* -1 when unknown */
/* Whether the metric compares the correct answer with a wrong one (seq_logprob,
 * token_gap, generation) rather than reading the correct continuation alone. */
bool xp_metric_pair(xp_metric m);
/* Targets are probes to improve; controls (Neagari's promoted_controls) are to keep. */
enum xp_probe_role { XP_ROLE_TARGET = 0, XP_ROLE_CONTROL = 1 };
/* How a set's generations are judged: the math matcher (SPEC §2), the verbatim
 * PASS/COPY/PARTIAL/OTHER classifier (correct = PASS), or a prefix match (the output,
 * leading whitespace dropped, starts with the answer or an alternate, likewise). */
enum xp_matcher { XP_MATCH_MATH = 0, XP_MATCH_VERBATIM = 1, XP_MATCH_PREFIX = 2 };
/* The formats a probe file comes in. */
enum xp_probe_format { XP_PROBES_BANKAI = 0, XP_PROBES_NEAGARI = 1, XP_PROBES_VERBATIM = 2 };

typedef struct xp_probe {
    char *name, *category, *system, *prompt, *correct, *target_span, *passage;
    char *wrong;        /* NULL for a plain {"prompt", "answer"} item */
    char **alternates;  /* other accepted forms of the correct answer */
    size_t n_alternates;
    bool chat;          /* system + prompt go through the chat template (verbatim sets) */
    int32_t base_id[2]; /* stored token_gap ids (correct, wrong); -1 absent */
    int role;           /* enum xp_probe_role */
} xp_probe;

typedef struct xp_probe_set {
    xp_probe *probes;
    size_t n;
    char *domain;        /* "math", "coding", ... from the file, else its base name
                            ("calculus_train") */
    char *path;          /* the file, for messages */
    char *search_config; /* Neagari's "search_config" as JSON text, or NULL */
    int format;          /* enum xp_probe_format */
    /* generation rule: at most max_tokens new tokens; stop at a newline (math) or only
     * at <|im_end|> / <|endoftext|> (always); judged by matcher */
    size_t max_tokens;
    bool stop_newline;
    int matcher;         /* enum xp_matcher */
} xp_probe_set;

/* Reads a Bankai list, a Neagari calibrated set (targets, then promoted controls with
 * role XP_ROLE_CONTROL) or a Neagari verbatim set. Every error names the file, the
 * probe (by name, else index) and the field. Generation rules: verbatim sets stop at
 * <|im_end|> after 80 tokens and use the verbatim classifier; math sets (Bankai lists,
 * Neagari "math") stop at a newline after 24 tokens and use the math matcher; other
 * domains stop at a newline after 24 tokens with the prefix matcher. Names may repeat
 * (Neagari's editing set keeps a target as a promoted control under the same name). */
int xp_probe_set_load(xp_probe_set **out, const char *path, xp_err *err);
/* Plain items are probes too: a list of {"prompt", "answer"} (or "correct") objects, as
 * an array or as JSONL (one object per line, the bench-task files), read as a Bankai list
 * with no wrong answer. */
/* Refuses a set under a pair metric when a probe has no wrong answer, naming it. */
int xp_probe_set_check_metric(const xp_probe_set *s, xp_metric metric, xp_err *err);
/* Probes whose prompt (with its system text) repeats an earlier one's. */
size_t xp_probe_set_repeats(const xp_probe_set *s, size_t *first_repeat);
/* The same from a buffer; where names it in messages. */
int xp_probe_set_parse(xp_probe_set **out, const char *json, size_t len, const char *where,
                       xp_err *err);
void xp_probe_set_free(xp_probe_set *s);

/* Splitting a set into train and held-out: by a field (probes whose "category", "role"
 * ("target"/"control") or "name" equals value, or starts with it when value ends with
 * '*', are held out), or by a ratio (that fraction, rounded, held out; chosen by a
 * seeded shuffle). A held-out set from a second file needs no split: load it. */
typedef struct xp_probe_split {
    const char *field, *value; /* field split when field is set */
    double ratio;              /* else ratio split, 0 < ratio < 1 */
    uint64_t seed;
} xp_probe_split;
/* Parses "FIELD=VALUE" or "ratio:R[:SEED]" (seed default 0). */
int xp_probe_split_parse(const char *spec, xp_probe_split *out, xp_err *err);
/* Both outputs are new sets (deep copies, order kept); either may be empty. */
int xp_probe_set_split(const xp_probe_set *s, const xp_probe_split *how, xp_probe_set **train,
                       xp_probe_set **heldout, xp_err *err);
/* A new set with the probes whose role is role (deep copies). */
int xp_probe_set_select_role(const xp_probe_set *s, int role, xp_probe_set **out, xp_err *err);

/* A probe as tokens, built once per set and reused. */
typedef struct xp_probe_tokens {
    int32_t *prompt; size_t n_prompt;        /* chat-formatted where the probe is a chat probe */
    int32_t *answer[2]; size_t n_answer[2];  /* [0] correct, [1] wrong: continuation tokenised in
                                                context (n_answer[1] 0 with no wrong answer) */
    int32_t gap_id[2];                       /* token_gap ids */
} xp_probe_tokens;

/* Tokenises every probe: the prompt (chat template for chat probes), each answer in
 * context (encode(prompt + answer) minus the prefix encode(prompt), or encode(answer)
 * when the prefix does not match; after a chat template, which ends at a token
 * boundary, encode(answer)). An answer with no tokens or a stored id outside the
 * vocabulary is an error naming the probe and the field. */
int xp_probe_tokenize(const xp_probe_set *s, const xp_tokenizer *t, xp_probe_tokens **out, xp_err *err);
void xp_probe_tokens_free(xp_probe_tokens *pt, size_t n);
/* The one token token_gap reduces an answer to: the first of its continuation in
 * context (xp_probe_tokenize's, the default) or the last of the answer encoded alone
 * (the rule of Bankai's published measurements). */
enum xp_token_rule { XP_TOKEN_RULE_FIRST = 0, XP_TOKEN_RULE_LAST };
const char *xp_token_rule_name(int rule); /* "first", "last" */
int xp_token_rule_from_name(const char *name); /* -1 when unknown */
/* Sets the token_gap ids of s's probes, tokenised into pt, by rule; ids the file stores
 * (base_correct_id, base_wrong_id) are kept under either rule. */
int xp_probe_tokens_token_rule(const xp_probe_set *s, const xp_tokenizer *t, int rule,
                               xp_probe_tokens *pt, xp_err *err);
/* Dead: the metric cannot tell the answers apart (token_gap: one id for both;
 * seq_logprob and generation: identical continuations). */
bool xp_probe_dead(const xp_probe_tokens *pt, xp_metric metric);

/* The ONE place a gap is computed from logits (log-softmax in a fixed summation order, double accumulation):
 * row_last = logits at the last prompt position (n_vocab floats); rows[a] = logits at the positions of
 * answer a's tokens 0..n_answer[a]-2 (row i predicts token i+1), consecutive rows of n_vocab. token_gap
 * uses row_last only. seq_logprob leaves out what is the same on both sides: the terms of the answers'
 * shared start (xp_probe_shared tokens, predicted by the same context under either answer), and at the
 * position where they part, the one log-sum-exp both answers' terms subtract. What is left is the
 * difference of the two parting tokens' logits plus each answer's later log-probabilities: the same
 * quantity with less rounding, read from fewer rows (xp_probe_gap_parts takes just those). */
/* answer_logprob and margin read answer 0's rows alone: row_last predicts its first token
 * and rows[0] the others (rows[1] unused). */
double xp_probe_gap(const xp_probe_tokens *pt, xp_metric metric, const float *row_last,
                    const float *const rows[2], size_t n_vocab);
/* Answer tokens both answers start with, each answer keeping at least one of its own. */
size_t xp_probe_shared(const xp_probe_tokens *pt);
/* The gap from just the logits it reads: first[a] = the logit of the id the metric compares
 * (token_gap: gap_id[a] at the prompt's end; seq_logprob: answer a's token s = xp_probe_shared(pt),
 * where the answers part); own[a] (seq_logprob) = n_answer[a] - s - 1 consecutive rows predicting
 * answer a's tokens s+1.. (NULL when there are none). */
double xp_probe_gap_parts(const xp_probe_tokens *pt, xp_metric metric, const float first[2],
                          const float *const own[2], size_t n_vocab);
/* Gaps of n probes with the model as it is now (fast path, packed batch; bit-identical to evaluating any probe alone). */
int  xp_probe_gaps(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric, double *gaps, xp_err *err);

/* What the audit needs beyond the gap, from the same forward passes. */
typedef struct xp_probe_score {
    double gap;            /* under the metric */
    double logprob[2];     /* teacher-forced log-probability of each continuation (NAN
                              under token_gap, and [1] when there is no wrong answer) */
    double margin;         /* the correct continuation's margin (NAN under token_gap) */
    int32_t emitted;       /* the model's next token after the prompt (argmax; lowest id on ties) */
    int32_t measured[2];   /* the ids the metric reads first: gap_id (token_gap) or each
                              continuation's first token (-1 for an absent wrong answer) */
    size_t distractor_rank; /* 1-based rank of the wrong answer's token among the model's
                               choices where the answers first differ (token_gap: the gap
                               ids at the last prompt position); 0 when dead */
} xp_probe_score;
int xp_probe_scores(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_probe_score *out, xp_err *err);

/* ---- generation for evaluation ---------------------------------------------- */

typedef struct xp_batch_gen_opts {
    size_t max_tokens;
    bool stop_newline; /* end at the first '\n' (which is not kept) */
    /* called after each decode step with the number of finished sequences */
    xp_progress_fn progress;
    void *progress_ctx;
} xp_batch_gen_opts;

/* Greedy generation of n prompts at once on the fast path with KV caches: prefill as
 * one packed batch, then one xp_forward per decode step with one xp_seq per unfinished
 * prompt. Stops at <|im_end|> / <|endoftext|> (not kept), at a newline when asked, or
 * after max_tokens (capped by the context). Bit-identical to xp_generate greedy on each
 * prompt alone. texts[i] is malloc'd UTF-8; prompts run in chunks of at most 128 that
 * keep the caches under 4 GiB. */
int xp_generate_batch(xp_model *m, const int32_t *const *prompts, const size_t *n_prompts,
                      size_t n, const xp_batch_gen_opts *o, char **texts, xp_err *err);
/* The set's generations: its rule (max_tokens 0: the set's own); progress may be NULL. */
int xp_probe_generate(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                      size_t max_tokens, xp_progress_fn progress, void *progress_ctx,
                      char **texts, xp_err *err);

/* Math matcher (SPEC §2): both sides normalised (whitespace dropped, lowercase, ()[]{}*
 * dropped, √ → sqrt); correct when the output starts with an accepted form and what
 * follows is empty, starts with "+c", or starts with none of 0-9 a-z ^ / * + - (. */
bool xp_math_match(const char *output, const char *answer, const char *const *alternates,
                   size_t n_alternates);
bool xp_prefix_match(const char *output, const char *answer, const char *const *alternates,
                     size_t n_alternates);
/* Verbatim classes, in order of merit. PASS: the output contains the target span and no
 * 15-character fragment of the passage outside the span; COPY: it contains such a
 * fragment; PARTIAL: it contains some 15-character fragment of the passage; else OTHER.
 * Characters are Unicode code points. */
enum xp_verbatim { XP_VERBATIM_PASS = 0, XP_VERBATIM_COPY, XP_VERBATIM_PARTIAL, XP_VERBATIM_OTHER };
int xp_verbatim_classify(const char *output, const char *target_span, const char *passage);
const char *xp_verbatim_name(int cls); /* "PASS", "COPY", "PARTIAL", "OTHER" */
/* Whether a generation is right by the set's matcher (verbatim: PASS). */
bool xp_probe_output_correct(const xp_probe_set *s, size_t i, const char *output);

/* A JSONL task file: one {"prompt", "answer"} per line. Scoring: XP_TASK_NUMBER takes
 * the final number of the output (commas dropped; after "####" when present) and
 * compares it with the answer's final number exactly; XP_TASK_CHOICE takes the first
 * standalone letter A–J of the output ("B", "(B)", "B.", "Answer: B") and compares it
 * with the answer's letter. Auto: CHOICE when every answer is a single letter. */
enum xp_task_kind { XP_TASK_AUTO = 0, XP_TASK_NUMBER, XP_TASK_CHOICE };
bool xp_task_score(int kind, const char *output, const char *answer);

/* ---- probe audit ------------------------------------------------------------- */

typedef struct xp_audit_probe {
    xp_probe_score score;
    bool dead;            /* under the chosen metric */
    bool dead_token_gap;  /* under the legacy single-token rule */
    bool emitted_measured; /* the emitted token is one of the measured ones */
    char *output;         /* greedy generation (NULL when not asked for) */
    bool solved;          /* gap > 0, and with generation the output is right */
} xp_audit_probe;
typedef struct xp_audit_category {
    char *name;
    size_t n, contrasts;  /* probes, distinct (correct, wrong) pairs */
    size_t duplicates;    /* probes repeating a contrast already seen in the category */
    bool one_contrast;    /* more than one probe, one contrast repeated */
} xp_audit_category;
typedef struct xp_audit {
    xp_metric metric;
    size_t n;
    xp_audit_probe *probes;
    size_t n_categories;
    xp_audit_category *categories;
    size_t dead, dead_token_gap, solved, not_emitted, one_contrast_categories;
    size_t contrasts;     /* distinct (correct, wrong) pairs in the whole set */
} xp_audit;
/* Audits a tokenised set on the model as it is; with generate also greedy outputs. */
int xp_probe_audit(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                   xp_metric metric, bool generate, xp_audit *out, xp_err *err);
void xp_audit_free(xp_audit *a);

#ifdef __cplusplus
}
#endif
#endif
