/* UTF-8 validity as the WHATWG decoder (a browser's TextDecoder) has it, and text of
 * unknown origin made valid for the JSON and HTML outputs: ill-formed sequences become
 * U+FFFD, and JSON keeps the exact bytes in hex beside the text. */
#include "core/utf8.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xorpatch/core.h"

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* The bounds of the WHATWG decoder: E0 needs A0..BF next, ED 80..9F, F0 90..BF, F4
 * 80..8F, every other continuation 80..BF. */
size_t xp_utf8_char_len(const char *str, size_t n, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *bad = 1;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

size_t xp_utf8_valid_len(const char *s, size_t len)
{
    size_t i = 0, bad;
    while (i < len) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = xp_utf8_char_len(s + i, len - i, &bad);
        if (!k)
            break;
        i += k;
    }
    return i;
}

int xp_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = len;
    size_t i = xp_utf8_valid_len(s, len), bad;
    if (i == len)
        return XP_OK;
    /* Each ill-formed subpart is at least one byte and becomes three. */
    size_t cap;
    if (__builtin_mul_overflow(len, 3, &cap) || cap == SIZE_MAX)
        return XP_ENOMEM;
    char *o = malloc(cap + 1);
    if (!o)
        return XP_ENOMEM;
    memcpy(o, s, i);
    size_t w = i;
    while (i < len) {
        size_t k = xp_utf8_char_len(s + i, len - i, &bad);
        if (k) {
            memcpy(o + w, s + i, k);
            w += k;
            i += k;
        } else {
            memcpy(o + w, REPLACEMENT, 3);
            w += 3;
            i += bad;
        }
    }
    o[w] = '\0';
    *out = o;
    *out_len = w;
    return XP_OK;
}

cJSON *xp_json_string(const char *s)
{
    if (!s)
        return NULL;
    char *clean;
    size_t n;
    if (xp_utf8_sanitize(s, strlen(s), &clean, &n))
        return NULL;
    cJSON *j = cJSON_CreateString(clean ? clean : s);
    free(clean);
    return j;
}

/* The exact bytes of s in hex, or NULL when s is valid UTF-8 (or NULL). */
static cJSON *bytes_hex(const char *s, bool *oom)
{
    size_t n = s ? strlen(s) : 0;
    if (!s || xp_utf8_valid(s, n))
        return NULL;
    char *hex = malloc(2 * n + 1);
    if (!hex) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
    cJSON *j = cJSON_CreateString(hex);
    free(hex);
    *oom |= !j;
    return j;
}

static char *bytes_key(const char *key)
{
    size_t n = strlen(key);
    char *k = malloc(n + sizeof "_bytes");
    if (k) {
        memcpy(k, key, n);
        memcpy(k + n, "_bytes", sizeof "_bytes");
    }
    return k;
}

bool xp_json_add_string(cJSON *o, const char *key, const char *s)
{
    cJSON *text = s ? xp_json_string(s) : cJSON_CreateNull();
    if (!text || !cJSON_AddItemToObject(o, key, text)) {
        cJSON_Delete(text);
        return false;
    }
    bool oom = false;
    cJSON *hex = bytes_hex(s, &oom);
    if (!hex)
        return !oom;
    char *k = bytes_key(key);
    bool ok = k && cJSON_AddItemToObject(o, k, hex);
    if (!ok)
        cJSON_Delete(hex);
    free(k);
    return ok;
}

bool xp_json_add_strings(cJSON *o, const char *key, const char *const *s, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    if (!arr)
        return false;
    bool ill = false;
    for (size_t i = 0; i < n; i++) {
        cJSON *t = s[i] ? xp_json_string(s[i]) : cJSON_CreateNull();
        if (!t || !cJSON_AddItemToArray(arr, t)) {
            cJSON_Delete(t);
            return false;
        }
        ill |= s[i] && !xp_utf8_valid(s[i], strlen(s[i]));
    }
    if (!ill)
        return true;
    char *k = bytes_key(key);
    cJSON *hexes = k ? cJSON_AddArrayToObject(o, k) : NULL;
    free(k);
    if (!hexes)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool oom = false;
        cJSON *h = bytes_hex(s[i], &oom);
        if (oom || !cJSON_AddItemToArray(hexes, h ? h : cJSON_CreateNull()))
            return false;
    }
    return true;
}

void xp_html_put(FILE *f, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    for (size_t i = 0; i < len;) {
        size_t bad, k = xp_utf8_char_len(s + i, len - i, &bad);
        if (!k) {
            fwrite(REPLACEMENT, 1, 3, f);
            i += bad;
            continue;
        }
        switch (s[i]) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fwrite(s + i, 1, k, f);
        }
        i += k;
    }
}
