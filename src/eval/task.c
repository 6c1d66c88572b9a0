/* Task benchmarks as JSONL files, one {"prompt", "answer"} object per line (GSM8K-style
 * word problems with a final number, or multiple choice with a letter), read strictly:
 * a bad line is an error naming the file, the line and the field. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "xorpatch/eval.h"

void xp_task_set_free(xp_task_set *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->prompts[i]), free(t->answers[i]);
    free(t->prompts), free(t->answers), free(t->path);
    free(t);
}

static bool is_letter_answer(const char *a)
{
    while (isspace((unsigned char)*a) || *a == '(')
        a++;
    if (!(*a >= 'A' && *a <= 'J'))
        return false;
    a++;
    while (*a == ')' || *a == '.' || isspace((unsigned char)*a))
        a++;
    return !*a;
}

static int take_line(xp_task_set *t, const char *line, size_t len, size_t lineno, xp_err *err)
{
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return xp_err_set(err, XP_EFORMAT, "%s:%zu: not a JSON object", t->path, lineno);
    }
    static const char *const keys[2] = {"prompt", "answer"};
    char *v[2] = {NULL, NULL};
    int rc = XP_OK;
    for (int k = 0; !rc && k < 2; k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        if (cJSON_IsNumber(f) && k == 1) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.17g", f->valuedouble);
            v[k] = xp_strdup(buf);
        } else if (cJSON_IsString(f)) {
            v[k] = xp_strdup(f->valuestring);
        } else {
            rc = xp_err_set(err, XP_EFORMAT, "%s:%zu: field \"%s\" %s", t->path, lineno, keys[k],
                            f ? "must be a string" : "is missing");
            break;
        }
        if (!v[k])
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    cJSON_Delete(o);
    char **p = rc ? NULL : xp_realloc_array(t->prompts, t->n + 1, sizeof *p);
    if (p)
        t->prompts = p;
    char **a = p ? xp_realloc_array(t->answers, t->n + 1, sizeof *a) : NULL;
    if (a)
        t->answers = a;
    if (!rc && (!p || !a))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (rc) {
        free(v[0]), free(v[1]);
        return rc;
    }
    t->prompts[t->n] = v[0];
    t->answers[t->n++] = v[1];
    return XP_OK;
}

int xp_task_set_load(xp_task_set **out, const char *path, int kind, xp_err *err)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    xp_task_set *t = calloc(1, sizeof *t);
    if (!t || !(t->path = xp_strdup(path)))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    size_t lineno = 0;
    for (char *line = buf; !rc && line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
        lineno++;
        size_t k = 0;
        while (k < n && isspace((unsigned char)line[k]))
            k++;
        if (k < n)
            rc = take_line(t, line, n, lineno, err);
        line += n + 1;
    }
    free(buf);
    if (!rc && t->n == 0)
        rc = xp_err_set(err, XP_EFORMAT, "%s: no tasks (expected one {\"prompt\", \"answer\"} "
                        "object per line)", path);
    if (!rc) {
        bool letters = true;
        for (size_t i = 0; i < t->n && letters; i++)
            letters = is_letter_answer(t->answers[i]);
        t->kind = kind != XP_TASK_AUTO ? kind : letters ? XP_TASK_CHOICE : XP_TASK_NUMBER;
    }
    if (rc) {
        xp_task_set_free(t);
        return rc;
    }
    *out = t;
    return XP_OK;
}

void xp_task_result_free(xp_task_result *r)
{
    if (!r)
        return;
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; r->output[s] && i < r->n; i++)
            free(r->output[s][i]);
        free(r->output[s]);
        free(r->right[s]);
    }
    *r = (xp_task_result){0};
}

static int generate_side(xp_model *m, const xp_task_set *t, int32_t **prompts,
                         const size_t *lens, const xp_task_opts *o, xp_task_result *r, int side,
                         xp_err *err)
{
    xp_batch_gen_opts g = {o->max_tokens, o->stop_newline, o->progress, o->progress_ctx};
    int rc = xp_generate_batch(m, (const int32_t *const *)prompts, lens, t->n, &g, r->output[side],
                               err);
    for (size_t i = 0; !rc && i < t->n; i++)
        r->right[side][i] = xp_task_score(t->kind, r->output[side][i], t->answers[i]);
    return rc;
}

int xp_task_run(xp_model *m, const xp_task_set *t, xp_patch *const *ps, size_t n_ps,
                const xp_task_opts *o, xp_task_result *r, xp_err *err)
{
    *r = (xp_task_result){0};
    r->n = t->n;
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t **prompts = xp_calloc(t->n, sizeof *prompts);
    size_t *lens = xp_calloc(t->n, sizeof *lens);
    int rc = prompts && lens ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (int s = 0; !rc && s < 2; s++) {
        r->output[s] = xp_calloc(t->n, sizeof *r->output[s]);
        r->right[s] = xp_calloc(t->n, sizeof *r->right[s]);
        if (!r->output[s] || !r->right[s])
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    if (!rc && !tok)
        rc = xp_err_set(err, XP_EINVAL, "tasks need a tokenizer; the model has none");
    for (size_t i = 0; !rc && i < t->n; i++) {
        rc = o->chat ? xp_chat_encode(tok, o->system, t->prompts[i], false, &prompts[i], &lens[i], err)
                     : xp_tokenize(tok, t->prompts[i], strlen(t->prompts[i]), false, &prompts[i],
                                   &lens[i], err);
        if (rc)
            xp_err_wrap(err, "%s: task %zu", t->path, i + 1);
    }
    if (!rc)
        rc = generate_side(m, t, prompts, lens, o, r, 0, err);
    size_t applied = 0;
    while (!rc && applied < n_ps && !(rc = xp_model_patch_apply(m, ps[applied], err)))
        applied++;
    if (!rc && n_ps)
        rc = generate_side(m, t, prompts, lens, o, r, 1, err);
    while (applied > 0) {
        xp_err e2 = {0};
        int r2 = xp_model_patch_revert(m, ps[--applied], &e2);
        if (r2 && !rc) {
            rc = r2;
            if (err)
                *err = e2;
        }
    }
    if (!rc && !n_ps) /* without a patch both sides are the base */
        for (size_t i = 0; i < t->n; i++) {
            r->right[1][i] = r->right[0][i];
            rc = (r->output[1][i] = xp_strdup(r->output[0][i])) ? rc
                                                                 : xp_err_set(err, XP_ENOMEM, "out of memory");
        }
    if (!rc)
        xp_paired_tally(r->right[0], r->right[1], NULL, t->n, &r->paired);
    for (size_t i = 0; prompts && i < t->n; i++)
        free(prompts[i]);
    free(prompts), free(lens);
    if (rc)
        xp_task_result_free(r);
    return rc;
}
