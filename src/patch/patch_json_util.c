/* What the JSON codecs share: printing, integers checked on cJSON numbers (JSON has only
 * doubles), members taken into a patch with an error that names the file and the key,
 * strict key lists, the check of a SHA-256 in hex, and the refusal of a NUL escaped
 * inside a string (which cJSON's C strings would silently cut short). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

char *xp_json_print(const cJSON *item) { return item ? cJSON_PrintUnformatted(item) : NULL; }

int xp_json_uint(const cJSON *item, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    /* doubles hold integers exactly up to 2^53 */
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0 || d > (double)max)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

bool xp_hex64_valid(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int xp_json_fail(xp_err *err, const char *where, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return xp_err_set(err, XP_EFORMAT, "%s: %s", where, what);
}

int xp_json_oom(xp_err *err, const char *where)
{
    return xp_err_set(err, XP_ENOMEM, "%s: out of memory", where);
}

int xp_json_take_string(const cJSON *o, const char *key, char **dst, const char *where, xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return XP_OK;
    if (!cJSON_IsString(v))
        return xp_json_fail(err, where, "\"%s\" must be a string", key);
    free(*dst);
    if (!(*dst = xp_strdup(v->valuestring)))
        return xp_json_oom(err, where);
    return XP_OK;
}

int xp_json_take_object(const cJSON *o, const char *key, char **dst, const char *where, xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return XP_OK;
    if (!cJSON_IsObject(v))
        return xp_json_fail(err, where, "\"%s\" must be an object", key);
    free(*dst);
    if (!(*dst = xp_json_print(v)))
        return xp_json_oom(err, where);
    return XP_OK;
}

int xp_json_member_uint(const cJSON *o, const char *key, uint64_t max, uint64_t *out,
                        const char *where, const char *path, xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return xp_json_fail(err, where, "%s: \"%s\" is missing", path, key);
    if (!xp_json_uint(v, max, out))
        return xp_json_fail(err, where, "%s: \"%s\" must be an integer from 0 to %llu", path, key,
                            (unsigned long long)max);
    return XP_OK;
}

int xp_json_check_keys(const cJSON *o, const char *const *allowed, const char *where,
                       const char *path, xp_err *err)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(c->string, allowed[i]) == 0;
        if (!ok)
            return xp_json_fail(err, where, "%s: unknown key \"%s\"", path, c->string);
    }
    return XP_OK;
}

void xp_json_add_text(cJSON *o, const char *key, const char *text)
{
    cJSON *v = text ? cJSON_Parse(text) : NULL;
    if (v)
        cJSON_AddItemToObject(o, key, v);
}

void xp_json_line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1, *col = 1;
    for (const char *c = text; c < at; c++) {
        if (*c == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}

static bool json_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

int xp_json_refuse_nul(const char *text, size_t len, const char *where, xp_err *err)
{
    const char *key = NULL; /* the last key read: the field a string belongs to */
    int key_len = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '"')
            continue;
        size_t start = ++i;
        const char *nul = NULL;
        for (; i < len && text[i] != '"'; i++)
            if (text[i] == '\\' && i + 1 < len) {
                if (!nul && len - i >= 6 && memcmp(text + i + 1, "u0000", 5) == 0)
                    nul = text + i;
                i++;
            }
        size_t next = i + 1;
        while (next < len && json_space(text[next]))
            next++;
        bool is_key = next < len && text[next] == ':';
        int n = (int)(i - start) < 60 ? (int)(i - start) : 60;
        if (nul) {
            int line, col;
            xp_json_line_col(text, nul, &line, &col);
            if (is_key)
                return xp_json_fail(err, where,
                                    "line %d, column %d: the key \"%.*s\" holds a NUL "
                                    "(\\u0000), which would cut it short: refused",
                                    line, col, n, text + start);
            if (key)
                return xp_json_fail(err, where,
                                    "line %d, column %d: \"%.*s\": a string holds a NUL "
                                    "(\\u0000), which would cut it short: refused",
                                    line, col, key_len, key);
            return xp_json_fail(err, where,
                                "line %d, column %d: a string holds a NUL (\\u0000), which "
                                "would cut it short: refused",
                                line, col);
        }
        if (is_key)
            key = text + start, key_len = n;
    }
    return XP_OK;
}
