/* libFuzzer harness for the patch readers: xorpatch JSON, Bankai v1, Neagari v2,
 * Neagari's list of triples and the binary encoding. Any input must either be refused with a format
 * or argument error whose message names the input, or read into a canonical patch (non-empty, or a
 * search's empty checkpoint with its record) that survives every writer: its binary and JSON forms
 * read back with the same identity (flips_sha256) and the binary form is a fixed point of decode ∘
 * encode. Binding it to a small model shape must succeed or fail cleanly, and so must the Bankai /
 * Neagari writers. Because the binary format ends with a checksum the fuzzer cannot forge, binary
 * inputs are also decoded with the checksum recomputed, so the decoder's deeper checks are reached.
 * Any other outcome aborts, so libFuzzer records the input. */
#include "xorpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_patch: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void id(xp_patch *p, char hex[65])
{
    xp_err err = {0};
    CHECK(xp_patch_flips_sha256(p, hex, &err) == XP_OK);
}

/* Serialises p in a format and reads it back (bound to shape, when given) with the same
 * identity. */
static void round_trip(xp_patch *p, int format, const char *want, const xp_shape *shape)
{
    uint8_t *buf;
    size_t len;
    xp_err err = {0};
    int rc = xp_patch_serialize(p, format, &buf, &len, &err);
    if (rc &&
        (format == XP_PATCH_BANKAI_V1 || format == XP_PATCH_NEAGARI_V2 ||
         format == XP_PATCH_NEAGARI_LIST || (format == XP_PATCH_BINARY_COMPACT && !p->n_flips))) {
        /* a flip these formats cannot hold is refused, never mangled; so is an empty
         * checkpoint in a format that drops its search record */
        CHECK(rc == XP_EINVAL);
        return;
    }
    if (rc)
        fprintf(stderr, "fuzz_patch: serialize: %s\n", err.msg);
    CHECK(rc == XP_OK);
    xp_patch *q = NULL;
    rc = xp_patch_parse(&q, buf, len, "round-trip", &err);
    if (!rc && shape)
        rc = xp_patch_bind_shape(q, shape, &err);
    if (rc)
        fprintf(stderr, "fuzz_patch: re-read as %s: %s\n", xp_patch_format_name(format), err.msg);
    CHECK(rc == XP_OK);
    char have[65];
    id(q, have);
    CHECK(strcmp(have, want) == 0);
    if (format == XP_PATCH_BINARY) {
        uint8_t *again;
        size_t n;
        CHECK(xp_patch_serialize(q, format, &again, &n, &err) == XP_OK);
        CHECK(n == len && memcmp(again, buf, n) == 0);
        free(again);
    }
    free(buf);
    xp_patch_free(q);
}

static void check_patch(xp_patch *p)
{
    CHECK(p->canonical && (p->n_flips ? p->n_tensors > 0 : xp_patch_checkpoint_empty(p)));
    for (size_t i = 1; i < p->n_tensors; i++)
        CHECK(strcmp(p->tensors[i - 1].name, p->tensors[i].name) < 0);
    char want[65];
    id(p, want);
    round_trip(p, XP_PATCH_BINARY, want, NULL);
    round_trip(p, XP_PATCH_BINARY_COMPACT, want, NULL);
    round_trip(p, XP_PATCH_JSON, want, NULL);
    /* the tiny shape's tensor table: bind succeeds or says why */
    xp_shape s;
    xp_err err = {0};
    CHECK(xp_shape_preset("tiny", &s, NULL) == XP_OK);
    int rc = xp_patch_bind_shape(p, &s, &err);
    CHECK(rc == XP_OK || rc == XP_EINVAL || rc == XP_ENOTFOUND);
    CHECK(rc == XP_OK || strlen(err.msg) > 0);
    if (rc == XP_OK && p->n_flips) {
        CHECK(p->bound);
        char bound[65];
        id(p, bound);
        round_trip(p, XP_PATCH_BINARY, bound, NULL);
        round_trip(p, XP_PATCH_BANKAI_V1, bound, &s);
        round_trip(p, XP_PATCH_NEAGARI_V2, bound, &s);
        round_trip(p, XP_PATCH_NEAGARI_LIST, bound, &s);
    }
}

static void parse_one(const uint8_t *data, size_t size)
{
    xp_patch *p = NULL;
    xp_err err = {0};
    int rc = xp_patch_parse(&p, data, size, "fuzz-input", &err);
    if (rc) {
        CHECK(!p);
        CHECK(rc == XP_EFORMAT || rc == XP_EINVAL || rc == XP_ENOTFOUND);
        CHECK(strstr(err.msg, "fuzz-input") != NULL);
        return;
    }
    check_patch(p);
    xp_patch_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_one(data, size);
    if (xp_patch_is_binary(data, size) && size >= 16) {
        uint8_t *copy = malloc(size);
        CHECK(copy);
        memcpy(copy, data, size);
        char hex[65];
        xp_sha256_hex(copy, size - 8, hex);
        for (int i = 0; i < 8; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            copy[size - 8 + (size_t)i] = (uint8_t)v;
        }
        parse_one(copy, size);
        free(copy);
    }
    return 0;
}
