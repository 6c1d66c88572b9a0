/* The logits report (job.h): a sequence's next-token logits, per position shown the top
 * candidates (highest first, ties to the lower id) as text with the tokens' texts or as
 * one JSON object. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

typedef struct top_entry {
    int32_t id;
    float logit;
} top_entry;

/* The k largest logits, highest first (ties: lower id first). */
static void top_k(const float *logits, size_t n, size_t k, top_entry *out)
{
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        float v = logits[i];
        if (have == k && !(v > out[k - 1].logit))
            continue;
        size_t j = have < k ? have++ : k - 1;
        while (j > 0 && v > out[j - 1].logit) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (top_entry){(int32_t)i, v};
    }
}

static void print_piece(FILE *out, const xp_tokenizer *tok, int32_t id)
{
    char *text;
    size_t len;
    if (!tok || xp_detokenize(tok, &id, 1, &text, &len, NULL)) {
        fprintf(out, "?");
        return;
    }
    cJSON *s = xp_json_string(text);
    char *quoted = s ? cJSON_PrintUnformatted(s) : NULL;
    fprintf(out, "%s", quoted ? quoted : "?");
    free(quoted);
    cJSON_Delete(s);
    free(text);
}

/* Position p's row: its place in the sequence, and its top candidates into top. */
static size_t position(const xp_logits_report *r, size_t p, top_entry *top, size_t *kk)
{
    *kk = r->top < r->n_vocab ? r->top : r->n_vocab;
    top_k(r->logits + p * r->n_vocab, r->n_vocab, *kk, top);
    return r->all_positions ? p : r->n - 1;
}

int xp_logits_report_print(FILE *out, const xp_logits_report *r, xp_err *err)
{
    top_entry *top = malloc((r->top ? r->top : 1) * sizeof *top);
    if (!top)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t p = 0; p < (r->all_positions ? r->n : 1); p++) {
        size_t kk, pos = position(r, p, top, &kk);
        fprintf(out, "position %zu, token %d ", pos, r->ids[pos]);
        print_piece(out, r->tok, r->ids[pos]);
        fprintf(out, "\n");
        for (size_t j = 0; j < kk; j++) {
            fprintf(out, "  %8d %10.4f  ", top[j].id, (double)top[j].logit);
            print_piece(out, r->tok, top[j].id);
            fprintf(out, "\n");
        }
    }
    free(top);
    return XP_OK;
}

cJSON *xp_logits_report_json(const xp_logits_report *r)
{
    top_entry *top = malloc((r->top ? r->top : 1) * sizeof *top);
    if (!top)
        return NULL;
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(o, "tokens");
    cJSON *positions = cJSON_AddArrayToObject(o, "positions");
    for (size_t i = 0; i < r->n; i++)
        cJSON_AddItemToArray(toks, cJSON_CreateNumber(r->ids[i]));
    for (size_t p = 0; p < (r->all_positions ? r->n : 1); p++) {
        size_t kk, pos = position(r, p, top, &kk);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "pos", (double)pos);
        cJSON *arr = cJSON_AddArrayToObject(e, "top");
        for (size_t j = 0; j < kk; j++) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(top[j].id));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(top[j].logit));
            cJSON_AddItemToArray(arr, pair);
        }
        cJSON_AddItemToArray(positions, e);
    }
    free(top);
    return o;
}
