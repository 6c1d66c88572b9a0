/* Text clean-up before tokenisation and GPT-2's byte alphabet. Input bytes are first
 * made valid UTF-8 the way a browser's TextDecoder does (core/utf8.c) (the JavaScript reference
 * tokenizer only ever sees decoded strings, so this is what agreeing with it means),
 * then brought to NFC with utf8proc, then each byte of a pre-token is spelled in the
 * byte-to-unicode alphabet the vocabulary is written in. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/utf8.h"
#include "tok/tok_internal.h"

int xp_tok_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len)
{
    return xp_utf8_sanitize(s, len, out, out_len);
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
    size_t bad, k = xp_utf8_char_len(s, n, &bad);
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
