/* Error values: a code plus a message that names the file, offset or field and what
 * was expected. Library functions fill an xp_err and return the code; only the CLI
 * prints it. */
#include "xorpatch/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int xp_err_set(xp_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int xp_err_wrap(xp_err *err, const char *fmt, ...)
{
    if (!err)
        return XP_EINTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 >= sizeof err->msg)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

const char *xp_err_code_name(int code)
{
    switch (code) {
    case XP_OK: return "ok";
    case XP_EIO: return "i/o error";
    case XP_EFORMAT: return "bad format";
    case XP_ENOMEM: return "out of memory";
    case XP_EINVAL: return "invalid argument";
    case XP_ENOTFOUND: return "not found";
    case XP_ETYPE: return "wrong type";
    default: return "internal error";
    }
}
