/* The OpenAI protocol of the server: completion and chat requests read from their JSON
 * bodies (each known field checked for its type and range, the error as OpenAI words
 * it), and the answers written as OpenAI's clients read them: the whole response, or
 * server-sent event chunks that end with "data: [DONE]". */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xorpatch/serve.h"

int xp_api_error_set(xp_api_error *e, int status, const char *type, const char *param,
                     const char *code, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* cJSON takes the bytes of a string as they are: invalid UTF-8 (a token may end inside a
 * character) becomes U+FFFD first, so every body is valid JSON text. */
static cJSON *add_text(cJSON *o, const char *key, const char *s, size_t len)
{
    char *clean = NULL, *nul = NULL;
    size_t n;
    if (xp_tok_utf8_sanitize(s, len, &clean, &n))
        return NULL;
    if (!clean && (nul = malloc(len + 1))) {
        memcpy(nul, s, len);
        nul[len] = '\0';
    }
    cJSON *v = clean || nul ? cJSON_AddStringToObject(o, key, clean ? clean : nul) : NULL;
    free(clean);
    free(nul);
    return v;
}

char *xp_api_error_body(const xp_api_error *e)
{
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    add_text(err, "message", e->message, strlen(e->message));
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param)
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- requests ------------------------------------------------------------------ */

static int bad(xp_api_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(xp_api_error *e, const char *param, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xp_api_error_set(e, 400, "invalid_request_error", param, NULL, "%s", msg);
}

/* A field that must be a number in [lo, hi] (integer when whole): 1 when present. */
static int number(const cJSON *root, const char *key, double lo, double hi, bool whole, double *out,
                  xp_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || (whole && v->valuedouble != (double)(long long)v->valuedouble))
        return bad(e, key, "'%s' must be %s", key, whole ? "an integer" : "a number");
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(e, key, "'%s' must be from %g to %g (got %g)", key, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 1;
}

static int boolean(const cJSON *root, const char *key, bool *out, xp_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return bad(e, key, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int tokenize(const xp_tokenizer *tok, const char *s, int32_t **ids, size_t *n,
                    xp_api_error *e)
{
    xp_err err = {0};
    if (xp_tokenize(tok, s, strlen(s), false, ids, n, &err))
        return xp_api_error_set(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    return 0;
}

static int parse_prompt(xp_api_request *rq, const cJSON *root, const xp_tokenizer *tok,
                        xp_api_error *e)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p)
        return bad(e, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child))
        p = p->child; /* a list of one prompt */
    if (cJSON_IsString(p))
        return tokenize(tok, p->valuestring, &rq->prompt, &rq->n_prompt, e);
    if (!cJSON_IsArray(p) || !cJSON_GetArraySize(p))
        return bad(e, "prompt", "'prompt' must be a string, or an array of token ids");
    size_t n = (size_t)cJSON_GetArraySize(p), i = 0;
    if (!(rq->prompt = malloc(n * sizeof *rq->prompt)))
        return xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (const cJSON *t = p->child; t; t = t->next, i++) {
        if (cJSON_IsString(t))
            return bad(e, "prompt", "one prompt per request: give one string");
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 ||
            t->valuedouble >= (double)xp_tokenizer_n_vocab(tok) ||
            t->valuedouble != (double)(int32_t)t->valuedouble)
            return bad(e, "prompt", "prompt[%zu]: not a token id of the vocabulary", i);
        rq->prompt[i] = (int32_t)t->valuedouble;
    }
    rq->n_prompt = n;
    return 0;
}

static const char *message_text(const cJSON *content)
{
    if (cJSON_IsString(content))
        return content->valuestring;
    return NULL;
}

static int parse_messages(xp_api_request *rq, const cJSON *root, const xp_tokenizer *tok,
                          xp_api_error *e)
{
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!ms)
        return bad(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(ms) || !cJSON_GetArraySize(ms))
        return bad(e, "messages", "'messages' must be a non-empty array");
    size_t n = (size_t)cJSON_GetArraySize(ms), i = 0;
    xp_chat_message *msgs = calloc(n, sizeof *msgs);
    char **joined = calloc(n, sizeof *joined); /* contents given as lists of text parts */
    if (!msgs || !joined) {
        free(msgs), free(joined);
        return xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    int rc = 0;
    for (const cJSON *m = ms->child; m && !rc; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            rc = bad(e, "messages", "messages[%zu] must be an object with a string 'role'", i);
            break;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer"))
            r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            rc = bad(e, "messages",
                     "messages[%zu]: role '%.40s' is not system, developer, "
                     "user or assistant",
                     i, role->valuestring);
            break;
        }
        const char *text = message_text(content);
        if (!text && cJSON_IsArray(content)) { /* [{"type": "text", "text": "..."}] */
            size_t len = 0;
            for (const cJSON *part = content->child; part && !rc; part = part->next) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(t))
                    rc = bad(e, "messages", "messages[%zu]: only text content parts are read", i);
                else
                    len += strlen(t->valuestring);
            }
            if (!rc && (joined[i] = calloc(len + 1, 1)))
                for (const cJSON *part = content->child; part; part = part->next)
                    strcat(joined[i], cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
            else if (!rc)
                rc = xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            text = joined[i];
        }
        if (!rc && !text)
            rc = bad(e, "messages", "messages[%zu]: 'content' must be a string", i);
        msgs[i] = (xp_chat_message){r, text};
    }
    xp_err err = {0};
    if (!rc && xp_chat_encode_messages(tok, msgs, n, false, &rq->prompt, &rq->n_prompt, &err))
        rc = xp_api_error_set(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    for (size_t k = 0; k < n; k++)
        free(joined[k]);
    free(joined);
    free(msgs);
    return rc;
}

static int parse_stop(xp_api_request *rq, const cJSON *root, const xp_api_limits *lim,
                      xp_api_error *e)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    size_t n = !s || cJSON_IsNull(s) ? 0 : cJSON_IsString(s) ? 1 : (size_t)cJSON_GetArraySize(s);
    if (s && !cJSON_IsNull(s) && !cJSON_IsString(s) && !cJSON_IsArray(s))
        return bad(e, "stop", "'stop' must be a string or an array of strings");
    if (n > lim->max_stop)
        return bad(e, "stop", "at most %zu stop strings", lim->max_stop);
    if (!(rq->stop = calloc(n + 1, sizeof *rq->stop)))
        return xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *item = cJSON_IsString(s) ? s : s ? s->child : NULL;
    for (size_t i = 0; i < n; i++, item = item->next) {
        if (!cJSON_IsString(item) || !*item->valuestring)
            return bad(e, "stop", "stop[%zu] must be a non-empty string", i);
        if (!(rq->stop[i] = strdup(item->valuestring)))
            return xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

/* The model id: "model" (default "base") and "+PATCH" for a "patch" field. */
static int parse_model(xp_api_request *rq, const cJSON *root, xp_api_error *e)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "patch");
    if (m && !cJSON_IsNull(m) && !cJSON_IsString(m))
        return bad(e, "model", "'model' must be a string");
    if (p && !cJSON_IsNull(p) && !cJSON_IsString(p))
        return bad(e, "patch", "'patch' must be a string");
    const char *id = cJSON_IsString(m) && *m->valuestring ? m->valuestring : "base";
    const char *patch = cJSON_IsString(p) && *p->valuestring ? p->valuestring : NULL;
    size_t len = strlen(id) + (patch ? strlen(patch) + 1 : 0) + 1;
    if (len > 1024)
        return bad(e, "model", "the model id is too long");
    if (!(rq->model = malloc(len)))
        return xp_api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    snprintf(rq->model, len, "%s%s%s", id, patch ? "+" : "", patch ? patch : "");
    return 0;
}

static int parse_fields(xp_api_request *rq, const cJSON *root, const xp_api_limits *lim,
                        xp_api_error *e)
{
    double v;
    int got;
    if ((got = number(root, "n", 1, 1, true, &v, e)) < 0)
        return bad(e, "n", "'n' must be 1: one choice per request");
    rq->max_tokens = lim->default_tokens;
    const char *mt = rq->chat && cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens")
                         ? "max_completion_tokens"
                         : "max_tokens";
    if ((got = number(root, mt, 1, 1e15, true, &v, e)) < 0)
        return -1;
    if (got && v > (double)lim->max_tokens)
        return bad(e, mt, "'%s' is %.0f; this server gives at most %zu tokens per request", mt, v,
                   lim->max_tokens);
    if (got)
        rq->max_tokens = (size_t)v;
    rq->sampler = (xp_sampler){0, 0, 1.0f, 0};
    if ((got = number(root, "temperature", 0, 2, false, &v, e)) < 0)
        return -1;
    rq->sampler.temperature = got ? (float)v : 0; /* greedy unless asked */
    if ((got = number(root, "top_p", 0, 1, false, &v, e)) < 0)
        return -1;
    if (got && v == 0)
        return bad(e, "top_p", "'top_p' must be above 0");
    rq->sampler.top_p = got ? (float)v : 1.0f;
    if ((got = number(root, "top_k", 0, 1e6, true, &v, e)) < 0)
        return -1;
    rq->sampler.top_k = got ? (int)v : 0;
    if ((got = number(root, "seed", -9.2e18, 9.2e18, true, &v, e)) < 0)
        return -1;
    rq->sampler.seed = got ? (uint64_t)(long long)v : 0;
    if (boolean(root, "stream", &rq->stream, e) < 0)
        return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so) &&
        (!cJSON_IsObject(so) || boolean(so, "include_usage", &rq->include_usage, e) < 0))
        return bad(e, "stream_options", "'stream_options' must be {\"include_usage\": bool}");
    if (rq->chat) {
        if (boolean(root, "logprobs", &rq->logprobs, e) < 0 ||
            (got = number(root, "top_logprobs", 0, XP_TOP_LOGPROBS_MAX, true, &v, e)) < 0)
            return -1;
        rq->top_logprobs = got ? (size_t)v : 0;
    } else {
        if ((got = number(root, "logprobs", 0, 5, true, &v, e)) < 0)
            return -1;
        rq->logprobs = got > 0;
        rq->top_logprobs = got ? (size_t)v : 0;
    }
    bool echo = false;
    if (boolean(root, "echo", &echo, e) < 0)
        return -1;
    if (echo)
        return bad(e, "echo", "'echo' is not supported");
    return parse_stop(rq, root, lim, e);
}

int xp_api_request_parse(xp_api_request *rq, bool chat, const char *body, size_t len,
                         const xp_tokenizer *tok, const xp_api_limits *lim, xp_api_error *e)
{
    memset(rq, 0, sizeof *rq);
    rq->chat = chat;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return bad(e, NULL, "the body is not valid JSON (near byte %zu)", at);
    }
    int rc = 0;
    if (!cJSON_IsObject(root))
        rc = bad(e, NULL, "the body must be a JSON object");
    if (!rc)
        rc = parse_model(rq, root, e);
    if (!rc)
        rc = parse_fields(rq, root, lim, e);
    if (!rc && !tok)
        rc = xp_api_error_set(e, 500, "server_error", NULL, NULL, "the model has no tokenizer");
    if (!rc)
        rc = chat ? parse_messages(rq, root, tok, e) : parse_prompt(rq, root, tok, e);
    if (!rc && rq->n_prompt == 0)
        rc = bad(e, chat ? "messages" : "prompt", "the prompt has no tokens");
    cJSON_Delete(root);
    if (rc)
        xp_api_request_free(rq);
    return rc;
}

void xp_api_request_free(xp_api_request *rq)
{
    for (char **s = rq->stop; s && *s; s++)
        free(*s);
    free(rq->stop);
    free(rq->prompt);
    free(rq->model);
    memset(rq, 0, sizeof *rq);
}

/* ---- answers --------------------------------------------------------------------- */

struct xp_api_answer {
    const xp_api_request *rq;
    char *id, *model;
    long long created;
    const xp_tokenizer *tok;
    char *text; /* all the text (without stream), or the bytes of a cut character */
    size_t len, cap;
    cJSON *logprobs; /* the tokens' log-probabilities so far */
};

static bool grow_text(xp_api_answer *a, const char *s, size_t n)
{
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        while (cap < a->len + n + 1)
            cap *= 2;
        char *t = realloc(a->text, cap);
        if (!t)
            return false;
        a->text = t, a->cap = cap;
    }
    memcpy(a->text + a->len, s, n);
    a->len += n;
    a->text[a->len] = '\0';
    return true;
}

int xp_api_answer_new(xp_api_answer **out, const xp_api_request *rq, const char *id,
                      long long created, const char *model, const xp_tokenizer *tok, xp_err *err)
{
    xp_api_answer *a = calloc(1, sizeof *a);
    if (a) {
        a->rq = rq, a->created = created, a->tok = tok;
        a->id = strdup(id), a->model = strdup(model);
        a->logprobs = rq->logprobs ? cJSON_CreateArray() : NULL;
    }
    if (!a || !a->id || !a->model || (rq->logprobs && !a->logprobs)) {
        xp_api_answer_free(a);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    *out = a;
    return XP_OK;
}

void xp_api_answer_free(xp_api_answer *a)
{
    if (!a)
        return;
    free(a->id), free(a->model), free(a->text);
    cJSON_Delete(a->logprobs);
    free(a);
}

/* How much of s ends on a whole UTF-8 character (the rest may be completed later). */
static size_t whole_chars(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--, back++;
    if (i == 0)
        return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 ? i - 1 : n;
}

/* The text of one token as JSON wants it, and its bytes. */
static cJSON *token_entry(const xp_api_answer *a, int32_t id, float lp, bool chat)
{
    char *piece = NULL;
    size_t len = 0;
    xp_err err = {0};
    if (xp_detokenize(a->tok, &id, 1, &piece, &len, &err))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    add_text(o, "token", piece, len);
    cJSON_AddNumberToObject(o, "logprob", lp);
    if (chat) {
        cJSON *bytes = cJSON_AddArrayToObject(o, "bytes");
        for (size_t i = 0; i < len; i++)
            cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    }
    free(piece);
    return o;
}

/* The log-probabilities of ev's tokens: chat's list of {token, logprob, bytes,
 * top_logprobs}, or completions' parallel lists (tokens, token_logprobs, top_logprobs). */
static void add_logprobs(xp_api_answer *a, cJSON *list, const xp_gen_event *ev)
{
    for (size_t i = 0; i < ev->n_tokens; i++) {
        cJSON *t = token_entry(a, ev->ids[i], ev->logprob[i], true);
        if (!t)
            continue;
        cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
        for (size_t j = 0; j < ev->n_top; j++)
            cJSON_AddItemToArray(top, token_entry(a, ev->top_ids[i * ev->n_top + j],
                                                  ev->top_logprob[i * ev->n_top + j], true));
        cJSON_AddItemToArray(list, t);
    }
}

/* Completions' logprobs object from the chat-shaped list. */
static cJSON *completion_logprobs(const cJSON *list)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = 0;
    for (const cJSON *t = list->child; t; t = t->next) {
        const char *tok = cJSON_GetObjectItem(t, "token")->valuestring;
        cJSON_AddItemToArray(tokens, cJSON_CreateString(tok));
        cJSON_AddItemToArray(lps, cJSON_Duplicate(cJSON_GetObjectItem(t, "logprob"), 1));
        cJSON *top = cJSON_CreateObject();
        for (const cJSON *alt = cJSON_GetObjectItem(t, "top_logprobs")->child; alt; alt = alt->next)
            cJSON_AddNumberToObject(top, cJSON_GetObjectItem(alt, "token")->valuestring,
                                    cJSON_GetObjectItem(alt, "logprob")->valuedouble);
        cJSON_AddItemToArray(tops, top);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(tok);
    }
    return o;
}

static cJSON *envelope(const xp_api_answer *a, bool chunk)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "object",
                            a->rq->chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                        : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)a->created);
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "xorpatch-" XP_VERSION);
    return o;
}

/* A choice's "logprobs" from the chat-shaped list (taken): chat's {"content": list},
 * completions' parallel lists, or null. */
static void add_logprobs_field(const xp_api_answer *a, cJSON *choice, cJSON *list)
{
    if (!list) {
        cJSON_AddNullToObject(choice, "logprobs");
    } else if (a->rq->chat) {
        cJSON_AddItemToObject(cJSON_AddObjectToObject(choice, "logprobs"), "content", list);
    } else {
        cJSON_AddItemToObject(choice, "logprobs", completion_logprobs(list));
        cJSON_Delete(list);
    }
}

/* A stream chunk with one choice: text (content delta for chat), or the role. */
static cJSON *chunk(const xp_api_answer *a, const char *text, size_t len, bool role,
                    const char *finish, cJSON *logprobs)
{
    cJSON *o = envelope(a, true);
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    if (a->rq->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (role)
            cJSON_AddStringToObject(delta, "role", "assistant");
        if (text)
            add_text(delta, "content", text, len);
    } else {
        add_text(choice, "text", text ? text : "", text ? len : 0);
    }
    add_logprobs_field(a, choice, logprobs);
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    return o;
}

/* "data: JSON\n\n" appended to out; the JSON freed. */
static bool frame(char **out, size_t *len, cJSON *o)
{
    char *js = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!js)
        return false;
    size_t n = strlen(js);
    char *grown = realloc(*out, *len + n + 9);
    if (grown) {
        memcpy(grown + *len, "data: ", 6);
        memcpy(grown + *len + 6, js, n);
        memcpy(grown + *len + 6 + n, "\n\n", 3);
        *out = grown;
        *len += n + 8;
    }
    free(js);
    return grown != NULL;
}

char *xp_api_answer_start(xp_api_answer *a)
{
    char *out = strdup("");
    size_t len = 0;
    if (out && a->rq->stream && a->rq->chat &&
        !frame(&out, &len, chunk(a, "", 0, true, NULL, NULL)))
        free(out), out = NULL;
    return out;
}

char *xp_api_answer_text(xp_api_answer *a, const xp_gen_event *ev)
{
    if (!a->rq->stream) {
        if (a->logprobs)
            add_logprobs(a, a->logprobs, ev);
        return grow_text(a, ev->text, ev->len) ? strdup("") : NULL;
    }
    if (!grow_text(a, ev->text, ev->len))
        return NULL;
    size_t whole = whole_chars(a->text, a->len);
    char *out = strdup("");
    size_t len = 0;
    cJSON *lp = a->logprobs ? cJSON_CreateArray() : NULL;
    if (lp)
        add_logprobs(a, lp, ev);
    if (!out)
        cJSON_Delete(lp);
    else if ((whole || lp) && !frame(&out, &len, chunk(a, a->text, whole, false, NULL, lp)))
        free(out), out = NULL;
    memmove(a->text, a->text + whole, a->len - whole);
    a->len -= whole;
    return out;
}

static const char *finish_reason(int finish)
{
    return finish == XP_FINISH_LENGTH ? "length" : "stop";
}

static cJSON *usage(const xp_gen_result *res)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)res->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)res->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens",
                            (double)(res->prompt_tokens + res->completion_tokens));
    return u;
}

char *xp_api_answer_end(xp_api_answer *a, const xp_gen_result *res)
{
    if (!a->rq->stream) {
        cJSON *o = envelope(a, false);
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
        cJSON_AddNumberToObject(choice, "index", 0);
        if (a->rq->chat) {
            cJSON *msg = cJSON_AddObjectToObject(choice, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            add_text(msg, "content", a->text ? a->text : "", a->len);
        } else {
            add_text(choice, "text", a->text ? a->text : "", a->len);
        }
        add_logprobs_field(a, choice, a->logprobs);
        a->logprobs = NULL;
        cJSON_AddStringToObject(choice, "finish_reason", finish_reason(res->finish));
        cJSON_AddItemToObject(o, "usage", usage(res));
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return text;
    }
    char *out = strdup("");
    size_t len = 0;
    bool ok = out != NULL;
    if (ok && (res->rc || res->finish == XP_FINISH_CANCELLED)) {
        xp_api_error e;
        xp_api_error_set(&e, 500, "server_error", NULL, NULL, "%s",
                         res->rc ? res->error : "the request was cancelled");
        char *body = xp_api_error_body(&e);
        ok = body && frame(&out, &len, cJSON_Parse(body));
        free(body);
    } else if (ok) {
        if (a->len) /* the bytes of a character never completed */
            ok = frame(&out, &len, chunk(a, a->text, a->len, false, NULL, NULL));
        ok = ok && frame(&out, &len, chunk(a, NULL, 0, false, finish_reason(res->finish), NULL));
        if (ok && a->rq->include_usage) {
            cJSON *u = envelope(a, true);
            cJSON_AddArrayToObject(u, "choices");
            cJSON_AddItemToObject(u, "usage", usage(res));
            ok = frame(&out, &len, u);
        }
    }
    char *grown = ok ? realloc(out, len + 15) : NULL;
    if (!grown) {
        free(out);
        return NULL;
    }
    memcpy(grown + len, "data: [DONE]\n\n", 15);
    return grown;
}

char *xp_api_models(xp_library *lib, long long created)
{
    xp_library_item *items;
    size_t n;
    xp_err err = {0};
    if (xp_library_items(lib, &items, &n, &err))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i <= n; i++) {
        if (i > 0 && items[i - 1].refused)
            continue;
        char id[160];
        snprintf(id, sizeof id, "%s%s", i ? "base+" : "base", i ? items[i - 1].name : "");
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)created);
        cJSON_AddStringToObject(m, "owned_by", "xorpatch");
        if (i) {
            cJSON_AddStringToObject(m, "file", items[i - 1].file);
            cJSON_AddStringToObject(m, "format", items[i - 1].format);
            cJSON_AddNumberToObject(m, "flips", (double)items[i - 1].flips);
        }
        cJSON_AddItemToArray(data, m);
    }
    cJSON *refused = cJSON_AddArrayToObject(o, "refused");
    for (size_t i = 0; i < n; i++)
        if (items[i].refused) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "file", items[i].file);
            add_text(r, "reason", items[i].refused, strlen(items[i].refused));
            cJSON_AddItemToArray(refused, r);
        }
    xp_library_items_free(items, n);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}
