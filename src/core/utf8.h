/* UTF-8 validity, the one rule every reader and writer of text follows: the WHATWG
 * decoder's (maximal ill-formed subparts become U+FFFD), and text put into JSON, JSONL
 * and HTML outputs as valid UTF-8 with its exact bytes beside it when they were not. */
#ifndef XP_CORE_UTF8_H
#define XP_CORE_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Bytes of s before its first ill-formed sequence (len when s is valid UTF-8). */
size_t xp_utf8_valid_len(const char *s, size_t len);
static inline bool xp_utf8_valid(const char *s, size_t len)
{
    return xp_utf8_valid_len(s, len) == len;
}

/* Length of the well-formed character at s[0] (1 to 4), or 0 when it is ill-formed;
 * *bad receives the length of the maximal ill-formed subpart then (at least 1). */
size_t xp_utf8_char_len(const char *s, size_t n, size_t *bad);

/* Replaces each maximal ill-formed subsequence with U+FFFD. When s is already valid,
 * *out is NULL and nothing is allocated; otherwise *out is a malloc'd copy of *out_len
 * bytes (plus a NUL). Returns 0 or XP_ENOMEM. */
int xp_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len);

/* Text of unknown origin (a generated output, a path, a name from a file) as a JSON
 * string: valid UTF-8, ill-formed sequences as U+FFFD; NULL on a NULL s or no memory.
 * xp_json_add_string adds it to object o under key and, when s was not valid UTF-8, its
 * exact bytes in lowercase hex under KEY_bytes (e.g. "output" and "output_bytes").
 * xp_json_add_strings does the same for an array of n strings (NULL ones as JSON null):
 * KEY_bytes is then an array with the hex of each ill-formed item and null for the
 * others. Both return false only when out of memory. */
struct cJSON;
struct cJSON *xp_json_string(const char *s);
bool xp_json_add_string(struct cJSON *o, const char *key, const char *s);
bool xp_json_add_strings(struct cJSON *o, const char *key, const char *const *s, size_t n);
/* Writes text of unknown origin into HTML: &, <, > and " escaped, ill-formed UTF-8 as
 * U+FFFD. */
void xp_html_put(FILE *f, const char *s);
#endif
