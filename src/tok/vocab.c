/* The vocabulary as data: read from a GGUF's tokenizer.* keys, read from a Hugging
 * Face tokenizer.json (+ tokenizer_config.json), written back to a GGUF. The result of
 * reading tokenizer.json is meant to equal, field by field, what llama.cpp's
 * convert_hf_to_gguf.py stores for Qwen3, so a synthetic model made from the npm
 * package carries the same tokenizer metadata as a real Bonsai file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/file.h"
#include "xorpatch/tok.h"

/* The pre-tokenizer split of Qwen2 and Qwen3, the only one this tokenizer implements;
 * tokenizer.json must carry exactly this pattern. */
static const char QWEN2_SPLIT[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

void xp_vocab_free(xp_vocab *v)
{
    if (!v)
        return;
    if (v->tokens)
        for (size_t i = 0; i < v->n_tokens; i++)
            free(v->tokens[i]);
    if (v->merges)
        for (size_t i = 0; i < v->n_merges; i++)
            free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    free(v->model);
    free(v->pre);
    free(v->chat_template);
    free(v);
}

static xp_vocab *vocab_new(void)
{
    xp_vocab *v = calloc(1, sizeof *v);
    if (v)
        v->eos_id = v->pad_id = v->bos_id = -1;
    return v;
}

/* ---- from tokenizer.json ----------------------------------------------------- */

static int parse_json_file(const char *path, cJSON **out, xp_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    size_t at = end ? (size_t)(end - buf) : 0;
    free(buf);
    if (!*out)
        return xp_err_set(err, XP_EFORMAT, "%s: not valid JSON (parsing stopped at byte %zu)", path,
                          at);
    return XP_OK;
}

/* A whole number in [0, INT32_MAX), or -1. */
static int64_t json_id(const cJSON *x)
{
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0 && x->valuedouble < INT32_MAX) ||
        x->valuedouble != (double)(int64_t)x->valuedouble)
        return -1;
    return (int64_t)x->valuedouble;
}

/* A special token in tokenizer_config.json is a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(x))
        x = cJSON_GetObjectItemCaseSensitive(x, "content");
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int32_t find_token(const xp_vocab *v, const char *text)
{
    for (size_t i = 0; i < v->n_tokens; i++)
        if (strcmp(v->tokens[i], text) == 0)
            return (int32_t)i;
    return -1;
}

/* The converter types an added token as control when it is special or looks like one
 * ("<|...|>"), else as user-defined. */
static int32_t added_token_type(const char *text, bool special)
{
    size_t n = strlen(text);
    bool looks = n >= 4 && memcmp(text, "<|", 2) == 0 && memcmp(text + n - 2, "|>", 2) == 0;
    return special || looks ? XP_TOKEN_CONTROL : XP_TOKEN_USER_DEFINED;
}

static int check_qwen2_pipeline(const cJSON *root, const char *path, xp_err *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return xp_err_set(err, XP_EFORMAT, "%s: model.type is \"%s\"; only BPE is supported", path,
                          type->valuestring);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *ntype = cJSON_GetObjectItemCaseSensitive(norm, "type");
    if (!cJSON_IsString(ntype) || strcmp(ntype->valuestring, "NFC") != 0)
        return xp_err_set(err, XP_EFORMAT,
                          "%s: normalizer: expected {\"type\": \"NFC\"} (Qwen2/Qwen3)", path);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(item, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        if (cJSON_IsString(re) && strcmp(re->valuestring, QWEN2_SPLIT) == 0)
            return XP_OK;
    }
    return xp_err_set(err, XP_EFORMAT,
                      "%s: pre_tokenizer: expected a Sequence holding the Qwen2 Split regex; "
                      "only the Qwen2/Qwen3 pre-tokenizer is supported",
                      path);
}

static int put_token(xp_vocab *v, int64_t id, const char *text, int32_t type, xp_err *err)
{
    char *copy = xp_strdup(text);
    if (!copy)
        return xp_err_set(err, XP_ENOMEM, "out of memory copying token %lld", (long long)id);
    free(v->tokens[id]);
    v->tokens[id] = copy;
    v->types[id] = type;
    return XP_OK;
}

static int load_tokens(xp_vocab *v, const cJSON *vocab, const cJSON *added, const char *path,
                       xp_err *err)
{
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        int64_t id = json_id(e);
        if (id < 0)
            return xp_err_set(err, XP_EFORMAT,
                              "%s: model.vocab[\"%s\"]: expected a token id in [0, 2^31)", path,
                              e->string);
        max_id = id > max_id ? id : max_id;
    }
    cJSON_ArrayForEach(e, added)
    {
        int64_t id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        if (id < 0 || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "content")))
            return xp_err_set(err, XP_EFORMAT,
                              "%s: added_tokens: expected objects with an integer \"id\" and a "
                              "string \"content\"",
                              path);
        max_id = id > max_id ? id : max_id;
    }
    if (max_id < 0)
        return xp_err_set(err, XP_EFORMAT, "%s: model.vocab is empty or missing", path);

    v->n_tokens = (size_t)max_id + 1;
    v->tokens = xp_calloc(v->n_tokens, sizeof *v->tokens);
    v->types = xp_calloc(v->n_tokens, sizeof *v->types);
    if (!v->tokens || !v->types)
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu tokens", v->n_tokens);
    cJSON_ArrayForEach(e, vocab)
    {
        int64_t id = json_id(e);
        if (v->tokens[id])
            return xp_err_set(err, XP_EFORMAT, "%s: model.vocab: id %lld is given twice", path,
                              (long long)id);
        int rc = put_token(v, id, e->string, XP_TOKEN_NORMAL, err);
        if (rc)
            return rc;
    }
    cJSON_ArrayForEach(e, added)
    {
        int64_t id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        const char *text = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        int rc = put_token(v, id, text, added_token_type(text, special), err);
        if (rc)
            return rc;
    }
    /* Ids nobody claims become "[PADn]" placeholders, as the converter writes them. */
    for (size_t i = 0; i < v->n_tokens; i++) {
        if (v->tokens[i])
            continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        int rc = put_token(v, (int64_t)i, pad, XP_TOKEN_UNUSED, err);
        if (rc)
            return rc;
    }
    return XP_OK;
}

static int load_merges(xp_vocab *v, const cJSON *merges, const char *path, xp_err *err)
{
    if (!cJSON_IsArray(merges))
        return xp_err_set(err, XP_EFORMAT, "%s: model.merges: expected an array", path);
    size_t n = (size_t)cJSON_GetArraySize(merges);
    v->merges = xp_calloc(n, sizeof *v->merges);
    if (!v->merges)
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu merges", n);
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        size_t i = v->n_merges;
        char *s = NULL;
        if (cJSON_IsString(m)) {
            s = xp_strdup(m->valuestring);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            const char *a = cJSON_GetArrayItem(m, 0)->valuestring;
            const char *b = cJSON_GetArrayItem(m, 1)->valuestring;
            size_t la = strlen(a), lb = strlen(b);
            s = malloc(la + lb + 2);
            if (s) {
                memcpy(s, a, la);
                s[la] = ' ';
                memcpy(s + la + 1, b, lb + 1);
            }
        } else {
            return xp_err_set(err, XP_EFORMAT,
                              "%s: model.merges[%zu]: expected \"left right\" or [left, right]",
                              path, i);
        }
        if (!s)
            return xp_err_set(err, XP_ENOMEM, "out of memory copying merge %zu", i);
        v->merges[v->n_merges++] = s;
    }
    return XP_OK;
}

static int set_special(const xp_vocab *v, int32_t *id, const char *text, const char *what,
                       const char *path, xp_err *err)
{
    if (!text)
        return XP_OK;
    *id = find_token(v, text);
    if (*id < 0)
        return xp_err_set(err, XP_EFORMAT, "%s: %s \"%s\" is not a token of tokenizer.json", path,
                          what, text);
    return XP_OK;
}

/* A malloc'd path to file `name` in the folder of `path`. */
static char *sibling_path(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0, nl = strlen(name);
    char *p = malloc(dir + nl + 1);
    if (p) {
        memcpy(p, path, dir);
        memcpy(p + dir, name, nl + 1);
    }
    return p;
}

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* tokenizer_config.json beside tokenizer.json: special tokens, add_bos_token and the
 * chat template. config.json beside them is read for bos_token_id only, the one value
 * the converter takes from it when tokenizer_config.json has no bos_token. */
static int load_config(xp_vocab *v, const char *tokenizer_json, xp_err *err)
{
    char *path = sibling_path(tokenizer_json, "tokenizer_config.json");
    if (!path)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    cJSON *cfg = NULL;
    int rc = file_exists(path) ? parse_json_file(path, &cfg, err) : XP_OK;
    if (rc || !cfg) {
        free(path);
        return rc;
    }
    rc = set_special(v, &v->eos_id, config_token(cfg, "eos_token"), "eos_token", path, err);
    if (!rc)
        rc = set_special(v, &v->pad_id, config_token(cfg, "pad_token"), "pad_token", path, err);
    if (!rc)
        rc = set_special(v, &v->bos_id, config_token(cfg, "bos_token"), "bos_token", path, err);
    v->add_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"));

    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsArray(tpl)) {
        /* The list form names its templates; the converter's main one is "default". */
        const cJSON *e, *found = NULL;
        cJSON_ArrayForEach(e, tpl)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0)
                found = cJSON_GetObjectItemCaseSensitive(e, "template");
        }
        tpl = found;
    }
    if (!rc && cJSON_IsString(tpl) && !(v->chat_template = xp_strdup(tpl->valuestring)))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory copying the chat template");
    cJSON_Delete(cfg);
    free(path);
    if (rc || v->bos_id >= 0)
        return rc;

    path = sibling_path(tokenizer_json, "config.json");
    if (!path)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    cJSON *conf = NULL;
    rc = file_exists(path) ? parse_json_file(path, &conf, err) : XP_OK;
    free(path);
    if (rc)
        return rc;
    int64_t id = json_id(cJSON_GetObjectItemCaseSensitive(conf, "bos_token_id"));
    cJSON_Delete(conf);
    if (id >= 0 && (size_t)id < v->n_tokens)
        v->bos_id = (int32_t)id;
    else
        /* Without config.json: every Qwen2/Qwen3 config.json gives <|endoftext|> as
         * bos_token_id, and that is what their GGUF files carry. */
        v->bos_id = find_token(v, "<|endoftext|>");
    return XP_OK;
}

int xp_vocab_from_hf_json(xp_vocab **out, const char *tokenizer_json, xp_err *err)
{
    *out = NULL;
    cJSON *root;
    int rc = parse_json_file(tokenizer_json, &root, err);
    if (rc)
        return rc;
    xp_vocab *v = vocab_new();
    if (!v) {
        cJSON_Delete(root);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    rc = check_qwen2_pipeline(root, tokenizer_json, err);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!rc && !cJSON_IsObject(vocab))
        rc = xp_err_set(err, XP_EFORMAT, "%s: model.vocab: expected an object", tokenizer_json);
    if (!rc)
        rc = load_tokens(v, vocab, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"),
                         tokenizer_json, err);
    if (!rc)
        rc = load_merges(v, cJSON_GetObjectItemCaseSensitive(model, "merges"), tokenizer_json, err);
    cJSON_Delete(root);
    if (!rc && (!(v->model = xp_strdup("gpt2")) || !(v->pre = xp_strdup("qwen2"))))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = load_config(v, tokenizer_json, err);
    if (rc) {
        xp_vocab_free(v);
        return rc;
    }
    *out = v;
    return XP_OK;
}

/* ---- from a GGUF ----------------------------------------------------------------- */

static int copy_str_array(const xp_gguf *g, const char *key, char ***out, size_t *n_out,
                          xp_err *err)
{
    const xp_gguf_value *items;
    uint64_t n;
    int rc = xp_gguf_get_str_array(g, key, &items, &n, err);
    if (rc)
        return rc;
    if (n > INT32_MAX)
        return xp_err_set(err, XP_EFORMAT, "%s: %llu entries, more than 2^31-1", key,
                          (unsigned long long)n);
    char **a = xp_calloc((size_t)n, sizeof *a);
    if (!a)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory for %llu strings", key,
                          (unsigned long long)n);
    *out = a;
    *n_out = (size_t)n;
    for (size_t i = 0; i < n; i++) {
        if (memchr(items[i].data, '\0', items[i].n))
            return xp_err_set(err, XP_EFORMAT, "%s[%zu]: contains a NUL byte", key, i);
        if (!(a[i] = xp_strndup((const char *)items[i].data, items[i].n)))
            return xp_err_set(err, XP_ENOMEM, "%s[%zu]: out of memory", key, i);
    }
    return XP_OK;
}

/* An optional special-token id: -1 when the key is absent. */
static int optional_id(const xp_gguf *g, const char *key, size_t n_tokens, int32_t *out,
                       xp_err *err)
{
    *out = -1;
    if (!xp_gguf_get(g, key))
        return XP_OK;
    uint32_t id;
    int rc = xp_gguf_get_u32(g, key, &id, err);
    if (rc)
        return rc;
    if (id >= n_tokens)
        return xp_err_set(err, XP_EFORMAT, "%s is %u but the vocabulary has %zu tokens", key, id,
                          n_tokens);
    *out = (int32_t)id;
    return XP_OK;
}

static int read_token_types(const xp_gguf *g, xp_vocab *v, xp_err *err)
{
    static const char key[] = "tokenizer.ggml.token_type";
    const xp_gguf_value *tv = xp_gguf_get(g, key);
    if (!tv)
        return xp_err_set(err, XP_ENOTFOUND, "%s: missing", key);
    if (tv->type != XP_GGUF_ARRAY || tv->elem_type != XP_GGUF_INT32)
        return xp_err_set(err, XP_ETYPE, "%s: expected an array of int32, found %s of %s", key,
                          xp_gguf_type_name(tv->type),
                          tv->type == XP_GGUF_ARRAY ? xp_gguf_type_name(tv->elem_type) : "-");
    if (tv->n != v->n_tokens)
        return xp_err_set(err, XP_EFORMAT, "%s: %llu entries for %zu tokens", key,
                          (unsigned long long)tv->n, v->n_tokens);
    v->types = xp_calloc(v->n_tokens, sizeof *v->types);
    if (!v->types)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", key);
    for (size_t i = 0; i < v->n_tokens; i++) {
        const uint8_t *p = tv->data + 4 * i;
        v->types[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                (uint32_t)p[3] << 24);
    }
    return XP_OK;
}

static int vocab_read_gguf(xp_vocab *v, const xp_gguf *g, xp_err *err)
{
    int rc = xp_gguf_get_str(g, "tokenizer.ggml.model", &v->model, err);
    if (rc)
        return rc;
    if (strcmp(v->model, "gpt2") != 0)
        return xp_err_set(err, XP_EFORMAT,
                          "tokenizer.ggml.model is \"%s\"; only \"gpt2\" (byte-level BPE, as "
                          "Qwen2/Qwen3 use) is supported",
                          v->model);
    if ((rc = xp_gguf_get_str(g, "tokenizer.ggml.pre", &v->pre, err)) ||
        (rc = copy_str_array(g, "tokenizer.ggml.tokens", &v->tokens, &v->n_tokens, err)) ||
        (rc = read_token_types(g, v, err)) ||
        (rc = copy_str_array(g, "tokenizer.ggml.merges", &v->merges, &v->n_merges, err)) ||
        (rc = optional_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos_id, err)) ||
        (rc = optional_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad_id, err)) ||
        (rc = optional_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos_id, err)))
        return rc;
    if (xp_gguf_get(g, "tokenizer.ggml.add_bos_token") &&
        (rc = xp_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)))
        return rc;
    if (xp_gguf_get(g, "tokenizer.chat_template") &&
        (rc = xp_gguf_get_str(g, "tokenizer.chat_template", &v->chat_template, err)))
        return rc;
    return XP_OK;
}

int xp_vocab_from_gguf(xp_vocab **out, const xp_gguf *g, xp_err *err)
{
    *out = NULL;
    xp_vocab *v = vocab_new();
    if (!v)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int rc = vocab_read_gguf(v, g, err);
    if (rc) {
        xp_vocab_free(v);
        return rc;
    }
    *out = v;
    return XP_OK;
}

/* ---- to a GGUF ------------------------------------------------------------------- */

static int write_str_array(xp_gguf_writer *w, const char *key, char *const *strs, size_t n,
                           xp_err *err)
{
    size_t *lens = xp_calloc(n, sizeof *lens);
    if (!lens)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", key);
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(strs[i]);
    int rc = xp_gguf_writer_set_str_arr(w, key, n, (const char *const *)strs, lens, err);
    free(lens);
    return rc;
}

int xp_vocab_write_gguf(const xp_vocab *v, xp_gguf_writer *w, xp_err *err)
{
    if (!v || !v->model || !v->pre || !v->tokens || !v->types || (v->n_merges && !v->merges))
        return xp_err_set(err, XP_EINVAL,
                          "xp_vocab_write_gguf: the vocabulary needs model, pre, tokens, "
                          "types and merges");
    int rc;
    /* Order and types as llama.cpp's converter writes them. */
    if ((rc = xp_gguf_writer_set_str(w, "tokenizer.ggml.model", v->model, err)) ||
        (rc = xp_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre, err)) ||
        (rc = write_str_array(w, "tokenizer.ggml.tokens", v->tokens, v->n_tokens, err)) ||
        (rc = xp_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", XP_GGUF_INT32, v->n_tokens,
                                     v->types, err)) ||
        (rc = write_str_array(w, "tokenizer.ggml.merges", v->merges, v->n_merges, err)))
        return rc;
    if (v->eos_id >= 0 &&
        (rc = xp_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos_id, err)))
        return rc;
    if (v->pad_id >= 0 && (rc = xp_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id",
                                                       (uint32_t)v->pad_id, err)))
        return rc;
    if (v->bos_id >= 0 &&
        (rc = xp_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos_id, err)))
        return rc;
    if ((rc = xp_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos, err)))
        return rc;
    if (v->chat_template &&
        (rc = xp_gguf_writer_set_str(w, "tokenizer.chat_template", v->chat_template, err)))
        return rc;
    return XP_OK;
}
