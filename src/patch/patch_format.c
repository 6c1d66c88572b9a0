/* Patch files in any format, by format: reading a file or a buffer (the format found by
 * content: a GGUF is refused; the binary magic, a cut part of it, or a .xpb name on what
 * is not JSON go to the binary codec; JSON to the codec its "format" key, or for older
 * Bankai and Neagari files its "version", names),
 * a Neagari directory of patches in its manifest's order, and serialising or writing
 * in the format asked for. What every JSON format shares is checked here: the text is
 * one JSON value (else the line and column where it breaks), no string holds an escaped
 * NUL, no flip is listed twice (it would cancel itself silently), a "flips_sha256" must
 * match the flips, and a patch must keep some flips once normalised unless it is a
 * search's checkpoint in the project's own format (its "search" record). In every format,
 * text that is not valid UTF-8 is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "patch/patch_internal.h"

/* the largest patch file read: 4M flips as JSON stay well below it */
#define MAX_FILE (512 << 20)

/* Reads root into p with the codec its "format" (or "version") names, or a list of
 * triples with Neagari's list codec. */
static int read_root(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    if (cJSON_IsArray(root) && (!root->child || cJSON_IsArray(root->child)))
        return xp_patch_neagari_list_read(p, root, where, err);
    if (!cJSON_IsObject(root))
        return xp_json_fail(err, where,
                            "expected a JSON object (a patch) or a list of [layer, "
                            "\"ffn_gate.weight\", group] triples, found another JSON value");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (format) {
        if (!cJSON_IsString(format))
            return xp_json_fail(err, where, "\"format\" must be a string");
        const char *f = format->valuestring;
        if (strcmp(f, XP_PATCH_FORMAT_OWN) == 0)
            return xp_patch_own_read(p, root, where, err);
        if (strcmp(f, XP_PATCH_FORMAT_BANKAI) == 0)
            return xp_patch_bankai_read(p, root, where, err);
        if (strcmp(f, XP_PATCH_FORMAT_NEAGARI) == 0)
            return xp_patch_neagari_read(p, root, where, err);
        if (strncmp(f, "xorpatch/", 9) == 0)
            return xp_json_fail(err, where, "format \"%s\" is newer than this xorpatch reads (%s)",
                                f, XP_PATCH_FORMAT_OWN);
        return xp_json_fail(err, where, "unknown patch format \"%s\" (expected %s, %s or %s)", f,
                            XP_PATCH_FORMAT_OWN, XP_PATCH_FORMAT_BANKAI, XP_PATCH_FORMAT_NEAGARI);
    }
    uint64_t v = 1;
    if (version && !xp_json_uint(version, 1000, &v))
        return xp_json_fail(err, where, "\"version\" must be a small integer");
    if (v == 1 || v == 2) {
        if (cJSON_GetObjectItemCaseSensitive(root, "steps") &&
            !cJSON_GetObjectItemCaseSensitive(root, "flips"))
            return xp_json_fail(err, where,
                                "a Neagari manifest, not a patch: give the directory that "
                                "holds it and its patch_*.json files");
        if (!cJSON_GetObjectItemCaseSensitive(root, "flips"))
            return xp_json_fail(err, where, "not a patch: no \"flips\" (and no \"format\")");
        return v == 2 ? xp_patch_neagari_read(p, root, where, err)
                      : xp_patch_bankai_read(p, root, where, err);
    }
    return xp_json_fail(err, where,
                        "patch version %llu is not one xorpatch reads (1: Bankai rows, 2: "
                        "Neagari blocks)",
                        (unsigned long long)v);
}

static int parse_json(xp_patch **out, const char *text, size_t len, const char *where, xp_err *err)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        int line, col;
        xp_json_line_col(text, end && end >= text && end <= text + len ? end : text, &line, &col);
        return xp_json_fail(err, where, "line %d, column %d: malformed JSON", line, col);
    }
    for (const char *c = end; c < text + len; c++)
        if (*c != ' ' && *c != '\n' && *c != '\r' && *c != '\t') {
            int line, col;
            xp_json_line_col(text, c, &line, &col);
            cJSON_Delete(root);
            return xp_json_fail(
                err, where, "line %d, column %d: unexpected text after the JSON value", line, col);
        }
    int rc = xp_json_refuse_nul(text, len, where, err);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    xp_patch *p;
    rc = xp_patch_new(&p, err);
    if (!rc && !(p->path = xp_strdup(where)))
        rc = xp_json_oom(err, where);
    if (!rc)
        rc = read_root(p, root, where, err);
    const cJSON *sum =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "flips_sha256") : NULL;
    char want[65] = "";
    if (!rc && sum) {
        if (!cJSON_IsString(sum) || !xp_hex64_valid(sum->valuestring))
            rc = xp_json_fail(err, where, "\"flips_sha256\" must be 64 lowercase hex digits");
        else
            memcpy(want, sum->valuestring, 65);
    }
    cJSON_Delete(root);
    size_t listed = rc ? 0 : p->n_flips;
    if (!rc && !listed && !xp_patch_checkpoint_empty(p))
        rc = xp_json_fail(err, where,
                          "the patch has no flips (only a search's checkpoint in the xorpatch "
                          "format, with its \"search\" record, may be empty)");
    if (!rc)
        rc = xp_patch_refuse_repeats(p, err);
    if (!rc)
        rc = xp_patch_normalize(p, err);
    if (!rc && listed && !p->n_flips)
        rc = xp_json_fail(err, where, "all %zu flips cancel in pairs: the patch is empty", listed);
    char have[65];
    if (!rc && want[0] && !(rc = xp_patch_flips_sha256(p, have, err)) && strcmp(want, have))
        rc = xp_json_fail(err, where,
                          "the flips do not match \"flips_sha256\" (%.12s..., computed "
                          "%.12s...): the file was edited or damaged",
                          want, have);
    if (rc) {
        xp_patch_free(p);
        return rc;
    }
    *out = p;
    return XP_OK;
}

/* A name ending in .xpb: the binary format's, so its errors are the binary format's. */
static bool has_binary_name(const char *where)
{
    size_t n = strlen(where);
    return n > 4 && strcmp(where + n - 4, ".xpb") == 0;
}

/* Text that begins (after white space) as a JSON object or array does. */
static bool json_like(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t'))
        i++;
    return i < len && (buf[i] == '{' || buf[i] == '[');
}

bool xp_patch_checkpoint_empty(const xp_patch *p)
{
    return !p->n_flips && p->search &&
           (p->format == XP_PATCH_JSON || p->format == XP_PATCH_BINARY ||
            p->format == XP_PATCH_BINARY_COMPACT);
}

/* The patch's text goes into reports, JSON outputs and a model's xorpatch.applied key:
 * ill-formed UTF-8 in any of it is refused, naming the field. */
static int refuse_bad_text(const xp_patch *p, const char *where, xp_err *err)
{
    const struct {
        const char *field, *text;
    } fields[] = {
        {"name", p->name},     {"description", p->description}, {"base model", p->base_model},
        {"tool", p->tool},     {"created", p->created},         {"architecture", p->architecture},
        {"search", p->search}, {"source", p->source},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *t = fields[i].text;
        size_t n = t ? strlen(t) : 0, at = t ? xp_utf8_valid_len(t, n) : 0;
        if (at != n)
            return xp_json_fail(err, where, "%s: not valid UTF-8 (byte %zu of %zu): refused",
                                fields[i].field, at + 1, n);
    }
    return XP_OK;
}

int xp_patch_parse(xp_patch **out, const void *buf, size_t len, const char *where, xp_err *err)
{
    *out = NULL;
    if (len >= 4 && memcmp(buf, "GGUF", 4) == 0)
        return xp_json_fail(err, where, "a GGUF model, not a patch");
    int rc = xp_patch_binary_prefix(buf, len) || (has_binary_name(where) && !json_like(buf, len))
                 ? xp_patch_decode(out, buf, len, where, err)
                 : parse_json(out, buf, len, where, err);
    if (!rc && (rc = refuse_bad_text(*out, where, err))) {
        xp_patch_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The file's name without folder and extension, as valid UTF-8: a patch's name when it
 * gives none. */
static char *stem(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    size_t n = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    char *clean;
    if (xp_utf8_sanitize(b, n, &clean, &n))
        return NULL;
    return clean ? clean : xp_strndup(b, n);
}

int xp_patch_read(xp_patch **out, const char *path, xp_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > MAX_FILE)
        return xp_json_fail(err, path, "%lld bytes: larger than any patch (at most %d MiB)",
                            (long long)st.st_size, MAX_FILE >> 20);
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = xp_patch_parse(out, buf, len, path, err);
    free(buf);
    if (!rc && !(*out)->name && !((*out)->name = stem(path))) {
        xp_patch_free(*out);
        *out = NULL;
        return xp_json_oom(err, path);
    }
    return rc;
}

int xp_patch_read_all(xp_patch ***out, size_t *n, size_t *n_missing, const char *path, xp_err *err)
{
    *out = NULL;
    *n = 0;
    *n_missing = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return xp_err_set(err, XP_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        xp_patch **one = malloc(sizeof *one);
        if (!one)
            return xp_json_oom(err, path);
        int rc = xp_patch_read(&one[0], path, err);
        if (rc) {
            free(one);
            return rc;
        }
        *out = one;
        *n = 1;
        return XP_OK;
    }
    char **names;
    size_t k;
    int rc = xp_patch_neagari_dir(path, &names, &k, n_missing, err);
    if (rc)
        return rc;
    xp_patch **ps = xp_calloc(k, sizeof *ps);
    if (!ps)
        rc = xp_json_oom(err, path);
    for (size_t i = 0; i < k && !rc; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        rc = xp_patch_read(&ps[i], file, err);
    }
    for (size_t i = 0; i < k; i++)
        free(names[i]);
    free(names);
    if (rc) {
        xp_patch_list_free(ps, k);
        return rc;
    }
    *out = ps;
    *n = k;
    return XP_OK;
}

/* A JSON format's text: the codec's object, printed, with a final newline as text files
 * have. */
static int json_text(const xp_patch *p, int format, char **text, xp_err *err)
{
    cJSON *o = NULL;
    int rc;
    if (format == XP_PATCH_JSON)
        rc = xp_patch_own_write(p, &o, err);
    else if (format == XP_PATCH_BANKAI_V1)
        rc = xp_patch_bankai_write(p, &o, err);
    else if (format == XP_PATCH_NEAGARI_V2)
        rc = xp_patch_neagari_write(p, &o, err);
    else if (format == XP_PATCH_NEAGARI_LIST)
        rc = xp_patch_neagari_list_write(p, &o, err);
    else
        return xp_err_set(err, XP_EINVAL, "patch: format %d is not a JSON format", format);
    if (rc)
        return rc;
    char *s = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return xp_json_oom(err, xp_patch_where(p));
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return xp_json_oom(err, xp_patch_where(p));
    }
    t[n] = '\n', t[n + 1] = '\0';
    *text = t;
    return XP_OK;
}

int xp_patch_serialize(const xp_patch *p, int format, uint8_t **buf, size_t *len, xp_err *err)
{
    if (!p->canonical)
        return xp_err_set(err, XP_EINVAL, "%s: normalise the patch before writing it",
                          xp_patch_where(p));
    if (!p->n_flips && !p->search)
        return xp_err_set(err, XP_EINVAL, "%s: the patch is empty: nothing to write",
                          xp_patch_where(p));
    if (!p->n_flips && format != XP_PATCH_JSON && format != XP_PATCH_BINARY)
        return xp_err_set(err, XP_EINVAL,
                          "%s: a search's checkpoint without flips is written in the xorpatch "
                          "JSON or binary format only (.json or .xpb), which keep its record",
                          xp_patch_where(p));
    if (format == XP_PATCH_BINARY)
        return xp_patch_encode(p, XP_BIN_BASE | XP_BIN_NAME | XP_BIN_PROVENANCE | XP_BIN_SHAPES,
                               buf, len, err);
    if (format == XP_PATCH_BINARY_COMPACT)
        return xp_patch_encode(p, XP_BIN_BASE | XP_BIN_NAME | XP_BIN_SHAPES, buf, len, err);
    char *text = NULL;
    int rc = json_text(p, format, &text, err);
    if (rc)
        return rc;
    *buf = (uint8_t *)text;
    *len = strlen(text);
    return XP_OK;
}

int xp_patch_write(const xp_patch *p, int format, const char *path, xp_err *err)
{
    uint8_t *buf;
    size_t len;
    int rc = xp_patch_serialize(p, format, &buf, &len, err);
    if (rc)
        return rc;
    rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* by enum xp_patch_format */
static const char *const format_names[] = {"xorpatch",  "binary",     "binary-compact",
                                           "bankai-v1", "neagari-v2", "neagari-list"};
#define N_FORMATS (int)(sizeof format_names / sizeof *format_names)
_Static_assert(XP_PATCH_NEAGARI_LIST + 1 == N_FORMATS, "every patch format has a name");

const char *xp_patch_format_name(int format)
{
    return format >= 0 && format < N_FORMATS ? format_names[format] : "?";
}

int xp_patch_format_from_name(const char *name)
{
    for (int i = 0; i < N_FORMATS; i++)
        if (strcmp(name, format_names[i]) == 0)
            return i;
    return -1;
}
