/* Text clean-up before tokenisation and GPT-2's byte alphabet. Input bytes are first
 * made valid UTF-8 the way a browser's TextDecoder does (the JavaScript reference
 * tokenizer only ever sees decoded strings, so this is what agreeing with it means),
 * then brought to NFC with utf8proc, then each byte of a pre-token is spelled in the
 * byte-to-unicode alphabet the vocabulary is written in. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_internal.h"

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Length of the well-formed sequence starting at s[i], or 0 when the bytes there are
 * ill-formed; *bad receives how many bytes form the maximal ill-formed subpart (at
 * least 1), following the bounds of the WHATWG decoder: E0 needs A0..BF next, ED
 * 80..9F, F0 90..BF, F4 80..8F, every other continuation 80..BF. */
static size_t well_formed(const unsigned char *s, size_t n, size_t i, size_t *bad)
{
    unsigned char b = s[i];
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
        if (i + k >= n || s[i + k] < lo || s[i + k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

int xp_tok_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad;
    *out = NULL;
    *out_len = len;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = well_formed(u, len, i, &bad);
        if (!k)
            break;
        i += k;
    }
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
        size_t k = well_formed(u, len, i, &bad);
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

int xp_tok_nfc(const char *s, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = len;
    /* Lead bytes below 0xCC encode code points below U+0300, none of which changes
     * under NFC or composes with its neighbour: most text skips utf8proc entirely. */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0xCC)
        i++;
    if (i == len)
        return XP_OK;
    if (len > PTRDIFF_MAX)
        return XP_ENOMEM;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (n < 0)
        return n == UTF8PROC_ERROR_NOMEM ? XP_ENOMEM : XP_EINTERNAL;
    *out = (char *)dst;
    *out_len = (size_t)n;
    return XP_OK;
}

uint32_t xp_tok_byte_cp(uint8_t b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    /* The remaining 68 bytes, in byte order, take U+0100, U+0101, ... */
    uint32_t k;
    if (b <= 32)
        k = b;
    else if (b <= 160)
        k = 33 + (uint32_t)(b - 127);
    else
        k = 67; /* 173, the soft hyphen */
    return 256 + k;
}

int xp_tok_cp_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp > 256 + 67)
        return -1;
    uint32_t k = cp - 256;
    if (k <= 32)
        return (int)k;
    if (k <= 66)
        return (int)(127 + k - 33);
    return 173;
}

size_t xp_tok_utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t xp_tok_utf8_get(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t bad, k = well_formed(u, n, 0, &bad);
    if (k == 0) {
        /* Callers pass valid UTF-8; report the ill-formed part as U+FFFD anyway. */
        *cp = 0xFFFD;
        return bad;
    }
    uint32_t c = u[0];
    if (k == 2)
        c = ((c & 0x1F) << 6) | (u[1] & 0x3F);
    else if (k == 3)
        c = ((c & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    else if (k == 4)
        c = ((c & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
            (u[3] & 0x3F);
    *cp = c;
    return k;
}
