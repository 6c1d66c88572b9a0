/* libFuzzer harness for the probe reader: Bankai lists, Neagari calibrated and verbatim
 * sets, plain {"prompt", "answer"} items as an array or JSONL. Any input must either be
 * refused with a format error whose message names the input, or read into a non-empty
 * set whose every probe has a name, a category, a prompt and a non-empty correct answer
 * different from the wrong one, whose every text is valid UTF-8 (it goes into JSON
 * reports), that splits by ratio and by role into parts that add up to the whole, and
 * whose matcher and metric checks answer without failing. Any other outcome aborts, so
 * libFuzzer records the input. */
#include "xorpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_probe: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Valid UTF-8, checked here on its own terms (not with the reader's code). */
static int valid_utf8(const char *s)
{
    char *clean;
    size_t n;
    if (!s)
        return 1;
    CHECK(xp_tok_utf8_sanitize(s, strlen(s), &clean, &n) == 0);
    free(clean);
    return clean == NULL;
}

static void check_probe(const xp_probe *p)
{
    CHECK(p->name && p->category && p->prompt && p->correct && *p->correct);
    CHECK(!p->wrong || (*p->wrong && strcmp(p->wrong, p->correct)));
    CHECK(p->role == XP_ROLE_TARGET || p->role == XP_ROLE_CONTROL);
    const char *texts[] = {p->name,    p->category,    p->system,  p->prompt,
                           p->correct, p->target_span, p->passage, p->wrong};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CHECK(valid_utf8(texts[i]));
    for (size_t i = 0; i < p->n_alternates; i++)
        CHECK(p->alternates[i] && valid_utf8(p->alternates[i]));
}

static void check_set(const xp_probe_set *s)
{
    CHECK(s->n > 0 && s->domain && valid_utf8(s->domain) && valid_utf8(s->search_config));
    for (size_t i = 0; i < s->n; i++) {
        check_probe(&s->probes[i]);
        (void)xp_probe_output_correct(s, i, s->probes[i].prompt);
    }
    size_t first;
    CHECK(xp_probe_set_repeats(s, &first) < s->n);
    xp_err err = {0};
    for (int m = XP_METRIC_SEQ_LOGPROB; m <= XP_METRIC_MARGIN; m++) {
        int rc = xp_probe_set_check_metric(s, (xp_metric)m, &err);
        CHECK(rc == XP_OK || rc == XP_EINVAL || rc == XP_EFORMAT);
    }
    xp_probe_split how = {.ratio = 0.5, .seed = s->n};
    xp_probe_set *train, *held;
    CHECK(xp_probe_set_split(s, &how, &train, &held, &err) == XP_OK);
    CHECK(train->n + held->n == s->n);
    xp_probe_set_free(train);
    xp_probe_set_free(held);
    xp_probe_set *t, *c;
    CHECK(xp_probe_set_select_role(s, XP_ROLE_TARGET, &t, &err) == XP_OK);
    CHECK(xp_probe_set_select_role(s, XP_ROLE_CONTROL, &c, &err) == XP_OK);
    CHECK(t->n + c->n == s->n);
    xp_probe_set_free(t);
    xp_probe_set_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xp_probe_set *s = NULL;
    xp_err err = {0};
    int rc = xp_probe_set_parse(&s, (const char *)data, size, "fuzz-input", &err);
    if (rc) {
        CHECK(!s);
        CHECK(rc == XP_EFORMAT);
        CHECK(strstr(err.msg, "fuzz-input") != NULL);
        return 0;
    }
    check_set(s);
    xp_probe_set_free(s);
    return 0;
}
