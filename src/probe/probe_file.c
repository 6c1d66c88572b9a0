/* Probe files as they exist in the wild, read as they are: Bankai lists (correct/wrong
 * or the older correct_token/wrong_token, alternates, category), Neagari calibrated
 * sets (targets and promoted controls, search_config, stored base ids) and Neagari
 * verbatim sets (system + user through the chat template, target span, passage), plain
 * {"prompt", "answer"} items with no wrong answer (an array, or JSONL lines). One
 * in-memory shape for all of them, each set with its generation rule; and the ways a
 * set is cut into train and held-out probes. Every error names the file, the probe and
 * the field; text that is not valid UTF-8 is refused. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/utf8.h"
#include "xorpatch/probe.h"

#define MAX_PROBE_FILE (64 << 20)

/* Generation rules by kind of set (SPEC §2): math answers end at a newline; verbatim
 * extraction is a chat turn that ends at <|im_end|>. */
#define MATH_MAX_TOKENS 24
#define CHAT_MAX_TOKENS 80

const char *xp_metric_name(xp_metric m)
{
    switch (m) {
    case XP_METRIC_SEQ_LOGPROB: return "seq_logprob";
    case XP_METRIC_TOKEN_GAP: return "token_gap";
    case XP_METRIC_GENERATION: return "generation";
    case XP_METRIC_ANSWER_LOGPROB: return "answer_logprob";
    case XP_METRIC_MARGIN: return "margin";
    }
    return "?";
}

int xp_metric_from_name(const char *name)
{
    for (int m = XP_METRIC_SEQ_LOGPROB; m <= XP_METRIC_MARGIN; m++)
        if (!strcmp(name, xp_metric_name((xp_metric)m)))
            return m;
    return -1;
}

bool xp_metric_pair(xp_metric m) { return m != XP_METRIC_ANSWER_LOGPROB && m != XP_METRIC_MARGIN; }

int xp_probe_set_check_metric(const xp_probe_set *s, xp_metric metric, xp_err *err)
{
    for (size_t i = 0; i < s->n && xp_metric_pair(metric); i++)
        if (!s->probes[i].wrong)
            return xp_err_set(err, XP_EINVAL,
                              "%s: probe \"%s\" has no wrong answer, and %s "
                              "compares the correct answer with one: use --metric margin or "
                              "answer_logprob, which read the correct answer alone",
                              s->path, s->probes[i].name, xp_metric_name(metric));
    return XP_OK;
}

/* Whether probes i and j ask the same: the same prompt after the same system text. */
static bool same_prompt(const xp_probe *a, const xp_probe *b)
{
    return !strcmp(a->prompt, b->prompt) &&
           !strcmp(a->system ? a->system : "", b->system ? b->system : "") && a->chat == b->chat;
}

size_t xp_probe_set_repeats(const xp_probe_set *s, size_t *first_repeat)
{
    size_t n = 0;
    /* quadratic, but sets are thousands of probes at most and this runs once */
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = 0; j < i; j++)
            if (same_prompt(&s->probes[i], &s->probes[j])) {
                if (!n++ && first_repeat)
                    *first_repeat = i;
                break;
            }
    return n;
}

static void probe_clear(xp_probe *p)
{
    free(p->name), free(p->category), free(p->system), free(p->prompt);
    free(p->correct), free(p->wrong), free(p->target_span), free(p->passage);
    for (size_t i = 0; i < p->n_alternates; i++)
        free(p->alternates[i]);
    free(p->alternates);
}

void xp_probe_set_free(xp_probe_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        probe_clear(&s->probes[i]);
    free(s->probes), free(s->domain), free(s->path), free(s->search_config);
    free(s);
}

/* Where a probe is, for messages: its name when it has one, else its place. */
typedef struct where {
    const char *file, *list;
    size_t index;
    const char *name;
} where;

static int bad(xp_err *err, const where *w, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(xp_err *err, const where *w, const char *field, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (w->name)
        return xp_err_set(err, XP_EFORMAT, "%s: probe \"%s\" (%s[%zu]): field \"%s\" %s", w->file,
                          w->name, w->list, w->index, field, what);
    return xp_err_set(err, XP_EFORMAT, "%s: probe %s[%zu]: field \"%s\" %s", w->file, w->list,
                      w->index, field, what);
}

/* Text read from a file goes into reports and JSON outputs: ill-formed UTF-8 is refused,
 * naming the field and the byte. */
static bool utf8_ok(const char *s, const where *w, const char *field, xp_err *err)
{
    size_t n = strlen(s), at = xp_utf8_valid_len(s, n);
    if (at == n)
        return true;
    bad(err, w, field, "is not valid UTF-8 (byte %zu of %zu): refused", at + 1, n);
    return false;
}

/* The first of keys present, as a string copy; absent: NULL and, when required, an error. */
static int str_field(const cJSON *o, const char *const *keys, bool required, char **dst,
                     const where *w, xp_err *err)
{
    *dst = NULL;
    for (size_t k = 0; keys[k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        if (!v)
            continue;
        if (!cJSON_IsString(v))
            return bad(err, w, keys[k], "must be a string");
        if (!utf8_ok(v->valuestring, w, keys[k], err))
            return XP_EFORMAT;
        if (!(*dst = xp_strdup(v->valuestring)))
            return xp_err_set(err, XP_ENOMEM, "%s: out of memory", w->file);
        return XP_OK;
    }
    if (required)
        return bad(err, w, keys[0], "is missing");
    return XP_OK;
}

static int id_field(const cJSON *o, const char *key, int32_t *dst, const where *w, xp_err *err)
{
    *dst = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return XP_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return bad(err, w, key, "must be a token id (a non-negative integer)");
    *dst = (int32_t)v->valuedouble;
    return XP_OK;
}

static int read_probe(const cJSON *o, xp_probe *p, int format, int role, const where *w0,
                      xp_err *err)
{
    static const char *const k_name[] = {"name", NULL}, *const k_prompt[] = {"prompt", NULL},
                             *const k_correct[] = {"correct", "correct_token", "answer", NULL},
                             *const k_wrong[] = {"wrong", "wrong_token", NULL},
                             *const k_cat[] = {"category", "domain", NULL},
                             *const k_system[] = {"system", NULL},
                             *const k_span[] = {"target_span", NULL},
                             *const k_passage[] = {"passage", NULL};
    where w = *w0;
    memset(p, 0, sizeof *p);
    p->base_id[0] = p->base_id[1] = -1;
    p->role = role;
    if (!cJSON_IsObject(o))
        return xp_err_set(err, XP_EFORMAT, "%s: probe %s[%zu] must be a JSON object", w.file,
                          w.list, w.index);
    int rc = str_field(o, k_name, false, &p->name, &w, err);
    if (rc)
        return rc;
    w.name = p->name;
    bool verbatim = format == XP_PROBES_VERBATIM;
    if ((rc = str_field(o, k_prompt, true, &p->prompt, &w, err)) ||
        (rc = str_field(o, k_correct, true, &p->correct, &w, err)) ||
        (rc = str_field(o, k_wrong, false, &p->wrong, &w, err)) ||
        (rc = str_field(o, k_cat, false, &p->category, &w, err)) ||
        (rc = str_field(o, k_system, false, &p->system, &w, err)) ||
        (rc = str_field(o, k_span, verbatim, &p->target_span, &w, err)) ||
        (rc = str_field(o, k_passage, verbatim, &p->passage, &w, err)) ||
        (rc = id_field(o, "base_correct_id", &p->base_id[0], &w, err)) ||
        (rc = id_field(o, "base_wrong_id", &p->base_id[1], &w, err)))
        return rc;
    if (!*p->correct)
        return bad(err, &w, "correct", "is empty");
    if (p->wrong && !*p->wrong)
        return bad(err, &w, "wrong", "is empty");
    if (p->wrong && !strcmp(p->correct, p->wrong))
        return bad(err, &w, "wrong", "equals the correct answer \"%s\"", p->correct);
    if (verbatim && !*p->target_span)
        return bad(err, &w, "target_span", "is empty");
    p->chat = verbatim;
    if (!p->name) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s_%zu", w.list, w.index);
        if (!(p->name = xp_strdup(buf)))
            return xp_err_set(err, XP_ENOMEM, "%s: out of memory", w.file);
    }
    if (!p->category && !(p->category = xp_strdup("")))
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", w.file);
    const cJSON *alt = cJSON_GetObjectItemCaseSensitive(o, "alternates");
    if (alt) {
        if (!cJSON_IsArray(alt))
            return bad(err, &w, "alternates", "must be an array of strings");
        size_t n = (size_t)cJSON_GetArraySize(alt);
        if (!(p->alternates = xp_calloc(n, sizeof *p->alternates)))
            return xp_err_set(err, XP_ENOMEM, "%s: out of memory", w.file);
        const cJSON *a;
        cJSON_ArrayForEach(a, alt)
        {
            if (!cJSON_IsString(a))
                return bad(err, &w, "alternates", "item %zu must be a string", p->n_alternates);
            if (!utf8_ok(a->valuestring, &w, "alternates", err))
                return XP_EFORMAT;
            if (!(p->alternates[p->n_alternates] = xp_strdup(a->valuestring)))
                return xp_err_set(err, XP_ENOMEM, "%s: out of memory", w.file);
            p->n_alternates++;
        }
    }
    return XP_OK;
}

static int read_list(const cJSON *arr, xp_probe_set *s, int role, const char *list, xp_err *err)
{
    if (!cJSON_IsArray(arr))
        return xp_err_set(err, XP_EFORMAT, "%s: \"%s\" must be an array of probes", s->path, list);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    xp_probe *grown = xp_realloc_array(s->probes, s->n + n, sizeof *grown);
    if (!grown)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", s->path);
    s->probes = grown;
    size_t i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        where w = {s->path, list, i++, NULL};
        int rc = read_probe(o, &s->probes[s->n], s->format, role, &w, err);
        s->n++; /* counted even when half-read, so free releases what it holds */
        if (rc)
            return rc;
    }
    return XP_OK;
}

/* The domain when the file does not say: its base name without extension. */
static char *domain_from_path(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strcspn(base, ".");
    return xp_strndup(base, len);
}

static void set_rule(xp_probe_set *s)
{
    if (s->format == XP_PROBES_VERBATIM) {
        s->max_tokens = CHAT_MAX_TOKENS;
        s->stop_newline = false;
        s->matcher = XP_MATCH_VERBATIM;
        return;
    }
    s->max_tokens = MATH_MAX_TOKENS;
    s->stop_newline = true;
    bool math = s->format == XP_PROBES_BANKAI || !strcmp(s->domain, "math");
    s->matcher = math ? XP_MATCH_MATH : XP_MATCH_PREFIX;
}

/* JSONL: plain items, one object per line (blank lines skipped). */
static int parse_lines(const char *json, size_t len, xp_probe_set *s, xp_err *err)
{
    s->format = XP_PROBES_BANKAI;
    size_t line = 0;
    for (const char *at = json, *end = json + len; at < end; line++) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        size_t n = nl ? (size_t)(nl - at) : (size_t)(end - at);
        const char *next = nl ? nl + 1 : end;
        size_t k = 0;
        while (k < n && (at[k] == ' ' || at[k] == '\t' || at[k] == '\r'))
            k++;
        if (k == n) {
            at = next;
            continue;
        }
        cJSON *o = cJSON_ParseWithLength(at, n);
        if (!o)
            return xp_err_set(err, XP_EFORMAT, "%s: line %zu is not a JSON object", s->path,
                              line + 1);
        xp_probe *grown = xp_realloc_array(s->probes, s->n + 1, sizeof *grown);
        int rc = grown ? XP_OK : xp_err_set(err, XP_ENOMEM, "%s: out of memory", s->path);
        if (!rc) {
            s->probes = grown;
            where w = {s->path, "line", line + 1, NULL};
            rc = read_probe(o, &s->probes[s->n], s->format, XP_ROLE_TARGET, &w, err);
            s->n++;
        }
        cJSON_Delete(o);
        if (rc)
            return rc;
        at = next;
    }
    return XP_OK;
}

static int parse_root(const cJSON *root, xp_probe_set *s, xp_err *err)
{
    if (cJSON_IsArray(root)) {
        s->format = XP_PROBES_BANKAI;
        return read_list(root, s, XP_ROLE_TARGET, "probes", err);
    }
    if (!cJSON_IsObject(root))
        return xp_err_set(err, XP_EFORMAT,
                          "%s: a probe file is a JSON array of probes or an "
                          "object with \"probes\"",
                          s->path);
    const cJSON *dom = cJSON_GetObjectItemCaseSensitive(root, "domain");
    if (cJSON_IsString(dom)) {
        if (!xp_utf8_valid(dom->valuestring, strlen(dom->valuestring)))
            return xp_err_set(err, XP_EFORMAT, "%s: field \"domain\" is not valid UTF-8: refused",
                              s->path);
        free(s->domain);
        if (!(s->domain = xp_strdup(dom->valuestring)))
            return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "search_config");
    if (cfg && !cJSON_IsObject(cfg))
        return xp_err_set(err, XP_EFORMAT, "%s: \"search_config\" must be an object", s->path);
    if (cfg && !(s->search_config = cJSON_PrintUnformatted(cfg)))
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    if (cfg && !xp_utf8_valid(s->search_config, strlen(s->search_config)))
        return xp_err_set(err, XP_EFORMAT,
                          "%s: field \"search_config\" holds text that is not valid UTF-8: "
                          "refused",
                          s->path);
    const cJSON *probes = cJSON_GetObjectItemCaseSensitive(root, "probes");
    if (!probes)
        return xp_err_set(err, XP_EFORMAT, "%s: field \"probes\" is missing", s->path);
    if (cJSON_IsArray(probes)) {
        s->format = XP_PROBES_VERBATIM;
        return read_list(probes, s, XP_ROLE_TARGET, "probes", err);
    }
    if (!cJSON_IsObject(probes))
        return xp_err_set(err, XP_EFORMAT,
                          "%s: \"probes\" must be an array or an object with "
                          "\"target\" and \"promoted_controls\"",
                          s->path);
    s->format = XP_PROBES_NEAGARI;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(probes, "target");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(probes, "promoted_controls");
    if (!t)
        return xp_err_set(err, XP_EFORMAT, "%s: field \"probes.target\" is missing", s->path);
    int rc = read_list(t, s, XP_ROLE_TARGET, "probes.target", err);
    if (!rc && c)
        rc = read_list(c, s, XP_ROLE_CONTROL, "probes.promoted_controls", err);
    return rc;
}

int xp_probe_set_parse(xp_probe_set **out, const char *json, size_t len, const char *where,
                       xp_err *err)
{
    *out = NULL;
    xp_probe_set *s = calloc(1, sizeof *s);
    if (!s || !(s->path = xp_strdup(where)) || !(s->domain = domain_from_path(where))) {
        xp_probe_set_free(s);
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", where);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    int rc;
    /* an object with a prompt and no probes, or objects one after another: JSONL items */
    bool lines = root && cJSON_IsObject(root) &&
                 !cJSON_GetObjectItemCaseSensitive(root, "probes") &&
                 cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (lines) {
        cJSON_Delete(root);
        root = NULL;
        rc = parse_lines(json, len, s, err);
    } else if (!root)
        rc = xp_err_set(err, XP_EFORMAT, "%s: not valid JSON near byte %zu", where,
                        end ? (size_t)(end - json) : (size_t)0);
    else
        rc = parse_root(root, s, err);
    cJSON_Delete(root);
    if (!rc && s->n == 0)
        rc = xp_err_set(err, XP_EFORMAT, "%s: the file holds no probes", where);
    if (rc) {
        xp_probe_set_free(s);
        return rc;
    }
    set_rule(s);
    *out = s;
    return XP_OK;
}

int xp_probe_set_load(xp_probe_set **out, const char *path, xp_err *err)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    if (len > MAX_PROBE_FILE)
        rc = xp_err_set(err, XP_EFORMAT, "%s: %zu bytes is larger than a probe file can be (%d)",
                        path, len, MAX_PROBE_FILE);
    else
        rc = xp_probe_set_parse(out, buf, len, path, err);
    free(buf);
    return rc;
}

/* ---- copies and splits -------------------------------------------------------- */

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = xp_strdup(s);
    *ok = *ok && d;
    return d;
}

static bool probe_copy(xp_probe *d, const xp_probe *p)
{
    bool ok = true;
    *d = *p;
    d->name = dup_or_null(p->name, &ok), d->category = dup_or_null(p->category, &ok);
    d->system = dup_or_null(p->system, &ok), d->prompt = dup_or_null(p->prompt, &ok);
    d->correct = dup_or_null(p->correct, &ok), d->wrong = dup_or_null(p->wrong, &ok);
    d->target_span = dup_or_null(p->target_span, &ok);
    d->passage = dup_or_null(p->passage, &ok);
    d->alternates = p->n_alternates ? xp_calloc(p->n_alternates, sizeof *d->alternates) : NULL;
    d->n_alternates = d->alternates ? p->n_alternates : 0;
    ok = ok && (d->alternates || !p->n_alternates);
    for (size_t i = 0; i < d->n_alternates; i++)
        d->alternates[i] = dup_or_null(p->alternates[i], &ok);
    return ok;
}

/* A new set with s's settings and the probes where keep[i] equals want. */
static int subset(const xp_probe_set *s, const bool *keep, bool want, xp_probe_set **out,
                  xp_err *err)
{
    xp_probe_set *d = calloc(1, sizeof *d);
    bool ok = d != NULL;
    if (ok) {
        *d = *s;
        d->n = 0;
        d->probes = xp_calloc(s->n, sizeof *d->probes);
        d->domain = dup_or_null(s->domain, &ok), d->path = dup_or_null(s->path, &ok);
        d->search_config = dup_or_null(s->search_config, &ok);
        ok = ok && d->probes;
    }
    for (size_t i = 0; ok && i < s->n; i++)
        if (keep[i] == want)
            ok = probe_copy(&d->probes[d->n++], &s->probes[i]);
    if (!ok) {
        if (d && !d->probes)
            d->n = 0;
        xp_probe_set_free(d);
        return xp_err_set(err, XP_ENOMEM, "out of memory splitting %s", s->path);
    }
    *out = d;
    return XP_OK;
}

int xp_probe_split_parse(const char *spec, xp_probe_split *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(spec, "ratio:", 6)) {
        char *end;
        out->ratio = strtod(spec + 6, &end);
        if (end != spec + 6 && *end == ':') {
            char *e2;
            out->seed = strtoull(end + 1, &e2, 10);
            end = e2 == end + 1 ? end : e2;
        }
        if (end == spec + 6 || *end || !(out->ratio > 0 && out->ratio < 1))
            return xp_err_set(err, XP_EINVAL, "split '%s': expected ratio:R[:SEED] with 0 < R < 1",
                              spec);
        return XP_OK;
    }
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return xp_err_set(err, XP_EINVAL,
                          "split '%s': expected FIELD=VALUE (category, role, "
                          "name) or ratio:R[:SEED]",
                          spec);
    size_t flen = (size_t)(eq - spec);
    static const char *const fields[] = {"category", "role", "name"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(fields[i]) == flen && !strncmp(spec, fields[i], flen))
            out->field = fields[i];
    if (!out->field)
        return xp_err_set(err, XP_EINVAL, "split '%s': the field must be category, role or name",
                          spec);
    out->value = eq + 1;
    return XP_OK;
}

static bool field_matches(const xp_probe *p, const char *field, const char *value)
{
    const char *v = !strcmp(field, "category")   ? p->category
                    : !strcmp(field, "name")     ? p->name
                    : p->role == XP_ROLE_CONTROL ? "control"
                                                 : "target";
    size_t n = strlen(value);
    if (n && value[n - 1] == '*')
        return !strncmp(v, value, n - 1);
    return !strcmp(v, value);
}

int xp_probe_set_split(const xp_probe_set *s, const xp_probe_split *how, xp_probe_set **train,
                       xp_probe_set **heldout, xp_err *err)
{
    *train = *heldout = NULL;
    bool *held = xp_calloc(s->n, sizeof *held);
    size_t *order = xp_calloc(s->n, sizeof *order);
    int rc = held && order ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && how->field) {
        for (size_t i = 0; i < s->n; i++)
            held[i] = field_matches(&s->probes[i], how->field, how->value);
    } else if (!rc) {
        if (!(how->ratio > 0 && how->ratio < 1))
            rc = xp_err_set(err, XP_EINVAL, "split ratio %g is not between 0 and 1", how->ratio);
        /* Fisher-Yates with the seeded generator: the same seed holds out the same probes */
        xp_rng rng;
        xp_rng_seed(&rng, how->seed);
        for (size_t i = 0; !rc && i < s->n; i++)
            order[i] = i;
        for (size_t i = s->n; !rc && i > 1; i--) {
            size_t j = (size_t)xp_rng_below(&rng, i), t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        size_t k = (size_t)(how->ratio * (double)s->n + 0.5);
        for (size_t i = 0; !rc && i < k; i++)
            held[order[i]] = true;
    }
    if (!rc)
        rc = subset(s, held, false, train, err);
    if (!rc)
        rc = subset(s, held, true, heldout, err);
    if (rc) {
        xp_probe_set_free(*train);
        *train = NULL;
    }
    free(held);
    free(order);
    return rc;
}

int xp_probe_set_select_role(const xp_probe_set *s, int role, xp_probe_set **out, xp_err *err)
{
    bool *keep = xp_calloc(s->n, sizeof *keep);
    if (!keep)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++)
        keep[i] = s->probes[i].role == role;
    int rc = subset(s, keep, true, out, err);
    free(keep);
    return rc;
}
