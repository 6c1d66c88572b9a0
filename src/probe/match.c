/* Judging generated text: the math matcher (an answer counts when the output starts
 * with an accepted form and does not go on to make it a different expression), the
 * prefix matcher for other short-answer sets, the verbatim-extraction classifier
 * (PASS / COPY / PARTIAL / OTHER) and the scoring of task benchmarks (final number as
 * GSM8K scores it, or a letter choice). Rules are SPEC §2's, exactly. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "xorpatch/probe.h"

/* SPEC §2 normalisation: whitespace dropped, lowercase, ()[]{}* dropped, √ → sqrt. */
static char *math_normalise(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1); /* √ (3 bytes) becomes 4 */
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x88 &&
            (unsigned char)s[i + 2] == 0x9A) {
            memcpy(o + k, "sqrt", 4);
            k += 4;
            i += 2;
        } else if (!isspace(c) && !strchr("(){}[]*", c)) {
            o[k++] = (char)tolower(c);
        }
    }
    o[k] = '\0';
    return o;
}

static bool math_accepts(const char *out, const char *form)
{
    char *f = math_normalise(form);
    if (!f)
        return false;
    size_t n = strlen(f);
    bool ok = n > 0 && strncmp(out, f, n) == 0;
    if (ok) {
        const char *rest = out + n;
        ok = !*rest || !strncmp(rest, "+c", 2) || !strchr("0123456789abcdefghijklmnopqrstuvwxyz^/*+-(", *rest);
    }
    free(f);
    return ok;
}

bool xp_math_match(const char *output, const char *answer, const char *const *alternates,
                   size_t n_alternates)
{
    char *out = math_normalise(output);
    if (!out)
        return false;
    bool ok = math_accepts(out, answer);
    for (size_t i = 0; !ok && i < n_alternates; i++)
        ok = math_accepts(out, alternates[i]);
    free(out);
    return ok;
}

static const char *skip_space(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

bool xp_prefix_match(const char *output, const char *answer, const char *const *alternates,
                     size_t n_alternates)
{
    const char *out = skip_space(output);
    for (size_t i = 0; i <= n_alternates; i++) {
        const char *form = skip_space(i == 0 ? answer : alternates[i - 1]);
        if (*form && !strncmp(out, form, strlen(form)))
            return true;
    }
    return false;
}

/* ---- verbatim ------------------------------------------------------------------ */

#define FRAGMENT_CHARS 15

/* Byte length of the n code points starting at s, or 0 when fewer remain. */
static size_t span_of_chars(const char *s, size_t n)
{
    size_t b = 0;
    for (size_t c = 0; c < n; c++) {
        if (!s[b])
            return 0;
        b++;
        while ((s[b] & 0xC0) == 0x80)
            b++;
    }
    return b;
}

/* Whether hay contains some 15-code-point window of text that lies wholly outside every
 * occurrence of span in text (span NULL: any window). */
static bool has_fragment(const char *hay, const char *text, const char *span)
{
    size_t slen = span ? strlen(span) : 0;
    for (const char *p = text; *p;) {
        size_t w = span_of_chars(p, FRAGMENT_CHARS);
        if (!w)
            break;
        bool inside = false;
        for (const char *h = slen ? strstr(text, span) : NULL; h && !inside;
             h = strstr(h + 1, span))
            inside = p < h + slen && p + w > h; /* the window overlaps this occurrence */
        if (!inside) {
            char *frag = xp_strndup(p, w);
            bool found = frag && strstr(hay, frag);
            free(frag);
            if (found)
                return true;
        }
        p += span_of_chars(p, 1);
    }
    return false;
}

/* The output with every occurrence of span cut out (each replaced by a byte that no
 * fragment holds, so text on both sides of it cannot join into a fragment). */
static char *without_span(const char *out, const char *span)
{
    size_t slen = strlen(span), k = 0;
    char *o = malloc(strlen(out) + 1);
    if (!o)
        return NULL;
    for (const char *p = out; *p;) {
        if (slen && !strncmp(p, span, slen)) {
            o[k++] = '\x01';
            p += slen;
        } else {
            o[k++] = *p++;
        }
    }
    o[k] = '\0';
    return o;
}

int xp_verbatim_classify(const char *output, const char *target_span, const char *passage)
{
    bool span = *target_span && strstr(output, target_span);
    char *rest = without_span(output, target_span);
    bool copy = rest && has_fragment(rest, passage, target_span);
    free(rest);
    if (span && !copy)
        return XP_VERBATIM_PASS;
    if (copy)
        return XP_VERBATIM_COPY;
    return has_fragment(output, passage, NULL) ? XP_VERBATIM_PARTIAL : XP_VERBATIM_OTHER;
}

const char *xp_verbatim_name(int cls)
{
    static const char *const names[] = {"PASS", "COPY", "PARTIAL", "OTHER"};
    return cls >= 0 && cls < 4 ? names[cls] : "?";
}

bool xp_probe_output_correct(const xp_probe_set *s, size_t i, const char *output)
{
    const xp_probe *p = &s->probes[i];
    const char *const *alt = (const char *const *)p->alternates;
    switch (s->matcher) {
    case XP_MATCH_VERBATIM:
        return p->target_span && p->passage &&
               xp_verbatim_classify(output, p->target_span, p->passage) == XP_VERBATIM_PASS;
    case XP_MATCH_MATH: return xp_math_match(output, p->correct, alt, p->n_alternates);
    default: return xp_prefix_match(output, p->correct, alt, p->n_alternates);
    }
}

/* ---- task scoring ---------------------------------------------------------------- */

/* The last number of s (after "####" when present), commas dropped, as a canonical
 * string: sign, digits, and a fraction without trailing zeros ("72.50" → "72.5",
 * "3.0" → "3"). Empty when there is none. */
static void final_number(const char *s, char *out, size_t size)
{
    const char *hash = strstr(s, "####");
    if (hash)
        s = hash + 4;
    out[0] = '\0';
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            continue;
        bool neg = p > s && p[-1] == '-' && (p - 1 == s || !isalnum((unsigned char)p[-2]));
        size_t k = 0;
        if (neg && k + 1 < size)
            out[k++] = '-';
        const char *q = p;
        bool dot = false;
        while (*q && (isdigit((unsigned char)*q) || (*q == ',' && isdigit((unsigned char)q[1])) ||
                      (*q == '.' && !dot && isdigit((unsigned char)q[1])))) {
            dot = dot || *q == '.';
            if (*q != ',' && k + 1 < size)
                out[k++] = *q;
            q++;
        }
        out[k] = '\0';
        if (dot) {
            while (k && out[k - 1] == '0')
                out[--k] = '\0';
            if (k && out[k - 1] == '.')
                out[--k] = '\0';
        }
        /* leading zeros carry no value: "007" is 7 */
        char *digits = out + (neg ? 1 : 0);
        while (digits[0] == '0' && isdigit((unsigned char)digits[1]))
            memmove(digits, digits + 1, strlen(digits));
        if (!strcmp(out, "-0"))
            memmove(out, out + 1, 2);
        p = q - 1;
        if (hash)
            break; /* after "####" the first number is the answer */
    }
}

/* The first standalone letter A–J: not inside a word ("Answer: B", "(C)", "D."). */
static char first_choice(const char *s)
{
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool before = p == s || !isalnum((unsigned char)p[-1]);
        bool after = !isalnum((unsigned char)p[1]);
        if (c >= 'A' && c <= 'J' && before && after)
            return c;
    }
    return 0;
}

bool xp_task_score(int kind, const char *output, const char *answer)
{
    if (kind == XP_TASK_CHOICE) {
        char want = first_choice(answer), got = first_choice(output);
        return want && got == want;
    }
    char want[128], got[128];
    final_number(answer, want, sizeof want);
    final_number(output, got, sizeof got);
    return want[0] && !strcmp(want, got);
}
