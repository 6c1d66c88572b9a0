/* xorpatch's core: the version, errors, fp16 / bf16 conversion and SHA-256, which every
 * other layer builds on. Every function of the library that can fail returns 0 or a
 * negative XP_E* code and fills an xp_err; nothing in the library prints or exits. */
#ifndef XORPATCH_CORE_H
#define XORPATCH_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XP_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------------- */

enum {
    XP_OK = 0,
    XP_EIO = -1,       /* a file could not be opened, read, written or renamed */
    XP_EFORMAT = -2,   /* input bytes do not follow the format */
    XP_ENOMEM = -3,    /* an allocation failed */
    XP_EINVAL = -4,    /* a caller passed an argument outside the contract */
    XP_ENOTFOUND = -5, /* a key, tensor or token does not exist */
    XP_ETYPE = -6,     /* a value exists but has another type */
    XP_EINTERNAL = -7, /* a bug: an invariant of the library broke */
};

typedef struct xp_err {
    int code;
    char msg[1024];
} xp_err;

/* Fills err (when not NULL) and returns code, so a failure reads
 * `return xp_err_set(err, XP_EFORMAT, "...", ...);`. */
int xp_err_set(xp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends context ("reading X: ") to an error already set; returns its code. */
int xp_err_wrap(xp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *xp_err_code_name(int code);

/* ---- fp16 / bf16 ------------------------------------------------------------- */

float xp_fp16_to_f32(uint16_t h);
uint16_t xp_f32_to_fp16(float f); /* round to nearest even; overflow to inf */
float xp_bf16_to_f32(uint16_t h);
uint16_t xp_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

/* ---- SHA-256 ----------------------------------------------------------------- */

/* Hex digest (64 chars + NUL) of a whole file, streamed. */
int xp_sha256_file(const char *path, char hex[65], xp_err *err);
void xp_sha256_hex(const void *data, size_t len, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
