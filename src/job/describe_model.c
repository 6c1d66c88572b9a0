/* A GGUF file described for a person or a program (job.h): its format, the model's shape
 * and architecture, the tokenizer, every tensor (name, type, shape, bytes, offset) and
 * the totals by type. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

typedef struct tok_summary {
    bool present;
    char model[32], pre[32];
    uint64_t n_tokens, n_merges, by_type[8];
    int64_t eos;
    bool chat_template;
} tok_summary;

static void summarise_tokenizer(const xp_gguf *g, tok_summary *t)
{
    memset(t, 0, sizeof *t);
    t->eos = -1;
    char *s = NULL;
    if (xp_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL) == XP_OK) {
        t->present = true;
        snprintf(t->model, sizeof t->model, "%s", s);
        free(s);
    }
    if (xp_gguf_get_str(g, "tokenizer.ggml.pre", &s, NULL) == XP_OK) {
        snprintf(t->pre, sizeof t->pre, "%s", s);
        free(s);
    }
    const xp_gguf_value *items;
    if (xp_gguf_get_str_array(g, "tokenizer.ggml.tokens", &items, &t->n_tokens, NULL) != XP_OK)
        t->n_tokens = 0;
    if (xp_gguf_get_str_array(g, "tokenizer.ggml.merges", &items, &t->n_merges, NULL) != XP_OK)
        t->n_merges = 0;
    const xp_gguf_value *types = xp_gguf_get(g, "tokenizer.ggml.token_type");
    if (types && types->type == XP_GGUF_ARRAY && types->elem_type == XP_GGUF_INT32)
        for (uint64_t i = 0; i < types->n; i++) {
            int32_t ty;
            memcpy(&ty, types->data + 4 * i, 4);
            t->by_type[ty >= 0 && ty < 8 ? ty : 0]++;
        }
    uint64_t eos;
    if (xp_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &eos, NULL) == XP_OK)
        t->eos = (int64_t)eos;
    t->chat_template = xp_gguf_get(g, "tokenizer.chat_template") != NULL;
}

static void shape_text(const xp_gguf_tensor *t, char *out, size_t size)
{
    int n = snprintf(out, size, "[");
    for (uint32_t d = 0; d < t->n_dims; d++)
        n += snprintf(out + n, size - (size_t)n, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    snprintf(out + n, size - (size_t)n, "]");
}

static const char *type_name(uint32_t type)
{
    const char *n = xp_tensor_type_name(type);
    return n ? n : "?";
}

static void print_text(FILE *out, const char *path, const xp_gguf *g, const char *sha,
                       const xp_shape *s, const char *arch, const xp_err *shape_err,
                       const tok_summary *tk, bool tensors)
{
    fprintf(out, "file          %s\n", path);
    fprintf(out, "sha256        %s\n", sha);
    fprintf(out,
            "format        GGUF v%u, %zu keys, %zu tensors, alignment %llu, data at byte %llu, "
            "%llu bytes\n",
            g->version, g->n_kv, g->n_tensors, (unsigned long long)g->alignment,
            (unsigned long long)g->data_offset, (unsigned long long)g->file_size);
    fprintf(out, "architecture  %s\n", arch ? arch : "(none)");
    if (s)
        fprintf(out,
                "shape         %u layers, n_embd %u, n_ff %u, heads %u / KV %u, head_dim %u, "
                "vocab %llu, %s output\n"
                "              rope base %g, rms eps %g, context %u\n",
                s->n_layer, s->n_embd, s->n_ff, s->n_head, s->n_head_kv, s->head_dim,
                (unsigned long long)s->n_vocab, s->tied_output ? "tied" : "separate",
                (double)s->rope_base, (double)s->rms_eps, s->n_ctx);
    else
        fprintf(out, "shape         not a model xorpatch runs: %s\n", shape_err->msg);
    if (tk->present)
        fprintf(out,
                "tokenizer     %s / %s, %llu tokens (%llu normal, %llu control, %llu "
                "user-defined), %llu merges, eos %lld, chat template %s\n",
                tk->model, tk->pre[0] ? tk->pre : "-", (unsigned long long)tk->n_tokens,
                (unsigned long long)tk->by_type[XP_TOKEN_NORMAL],
                (unsigned long long)tk->by_type[XP_TOKEN_CONTROL],
                (unsigned long long)tk->by_type[XP_TOKEN_USER_DEFINED],
                (unsigned long long)tk->n_merges, (long long)tk->eos,
                tk->chat_template ? "yes" : "no");
    else
        fprintf(out, "tokenizer     none\n");
    uint64_t bytes_by_type[64] = {0}, count_by_type[64] = {0}, total = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        const xp_gguf_tensor *t = &g->tensors[i];
        bytes_by_type[t->type % 64] += t->nbytes;
        count_by_type[t->type % 64]++;
        total += t->nbytes;
    }
    if (tensors && g->n_tensors) {
        fprintf(out, "\n%-32s %-6s %-16s %14s %14s\n", "tensor", "type", "shape", "bytes",
                "offset");
        for (size_t i = 0; i < g->n_tensors; i++) {
            const xp_gguf_tensor *t = &g->tensors[i];
            char shape[96];
            shape_text(t, shape, sizeof shape);
            fprintf(out, "%-32s %-6s %-16s %14llu %14llu\n", t->name, type_name(t->type), shape,
                    (unsigned long long)t->nbytes, (unsigned long long)t->offset);
        }
    }
    fprintf(out, "\ntotals        %zu tensors, %llu bytes (%.2f MiB)", g->n_tensors,
            (unsigned long long)total, (double)total / (1 << 20));
    for (int ty = 0; ty < 64; ty++)
        if (count_by_type[ty])
            fprintf(out, "; %s: %llu (%.2f MiB)", type_name((uint32_t)ty),
                    (unsigned long long)count_by_type[ty], (double)bytes_by_type[ty] / (1 << 20));
    fprintf(out, "\n");
}

static cJSON *shape_number(const xp_shape *s, double v)
{
    return s ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *to_json(const xp_gguf *g, const char *sha, const xp_shape *s, const char *arch,
                      const tok_summary *tk)
{
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "architecture", arch);
    cJSON_AddItemToObject(o, "n_layer", shape_number(s, s ? s->n_layer : 0));
    cJSON_AddItemToObject(o, "n_embd", shape_number(s, s ? s->n_embd : 0));
    cJSON_AddItemToObject(o, "n_ff", shape_number(s, s ? s->n_ff : 0));
    cJSON_AddItemToObject(o, "n_head", shape_number(s, s ? s->n_head : 0));
    cJSON_AddItemToObject(o, "n_head_kv", shape_number(s, s ? s->n_head_kv : 0));
    cJSON_AddItemToObject(o, "head_dim", shape_number(s, s ? s->head_dim : 0));
    cJSON_AddItemToObject(o, "n_vocab", shape_number(s, s ? (double)s->n_vocab : 0));
    cJSON_AddItemToObject(o, "tied_output",
                          s ? cJSON_CreateBool(s->tied_output) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "rope_base", shape_number(s, s ? s->rope_base : 0));
    cJSON_AddItemToObject(o, "rms_eps", shape_number(s, s ? s->rms_eps : 0));
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddNumberToObject(o, "version", g->version);
    cJSON_AddNumberToObject(o, "alignment", (double)g->alignment);
    cJSON_AddNumberToObject(o, "file_size", (double)g->file_size);
    if (tk->present) {
        cJSON *t = cJSON_AddObjectToObject(o, "tokenizer");
        xp_json_add_string(t, "model", tk->model);
        xp_json_add_string(t, "pre", tk->pre);
        cJSON_AddNumberToObject(t, "n_tokens", (double)tk->n_tokens);
        cJSON_AddNumberToObject(t, "n_merges", (double)tk->n_merges);
        cJSON_AddNumberToObject(t, "eos_token_id", (double)tk->eos);
        cJSON_AddBoolToObject(t, "chat_template", tk->chat_template);
    } else {
        cJSON_AddNullToObject(o, "tokenizer");
    }
    cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < g->n_tensors; i++) {
        const xp_gguf_tensor *t = &g->tensors[i];
        cJSON *e = cJSON_CreateObject();
        xp_json_add_string(e, "name", t->name);
        cJSON_AddStringToObject(e, "type", type_name(t->type));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (uint32_t d = 0; d < t->n_dims; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
        cJSON_AddNumberToObject(e, "offset", (double)t->offset);
        cJSON_AddNumberToObject(e, "bytes", (double)t->nbytes);
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}

/* What both forms show besides the file: its shape (when it is a model xorpatch runs),
 * architecture and tokenizer. */
typedef struct described {
    xp_shape shape;
    bool is_model;
    xp_err shape_err;
    char *arch;
    tok_summary tk;
} described;

static void describe(const xp_gguf *g, described *d)
{
    memset(d, 0, sizeof *d);
    d->is_model = xp_shape_from_gguf(g, &d->shape, &d->shape_err) == XP_OK;
    xp_gguf_get_str(g, "general.architecture", &d->arch, NULL);
    summarise_tokenizer(g, &d->tk);
}

void xp_model_describe_print(FILE *out, const char *path, const xp_gguf *g, const char *sha256,
                             bool tensors)
{
    described d;
    describe(g, &d);
    print_text(out, path, g, sha256, d.is_model ? &d.shape : NULL, d.arch, &d.shape_err, &d.tk,
               tensors);
    free(d.arch);
}

cJSON *xp_model_describe_json(const xp_gguf *g, const char *sha256)
{
    described d;
    describe(g, &d);
    cJSON *o = to_json(g, sha256, d.is_model ? &d.shape : NULL, d.arch, &d.tk);
    free(d.arch);
    return o;
}
