/* The patch library: a folder of patch files read into memory, each checked against the
 * served model's file as `apply` checks it, and the served models built from them on
 * first use (a stack "base+a+b" is one overlay with a's flips and then b's). Ids are
 * matched against the names in memory only; a reload builds a new list and drops the
 * library's hold on the old served models, which live on while requests hold them. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "xorpatch/serve.h"

struct xp_served {
    atomic_int refs;
    char *id;
    xp_overlay *ov;
};

typedef struct entry {
    xp_library_item item;
    xp_patch **ps; /* NULL when refused */
    size_t n;
} entry;

#define MAX_STACK 16   /* patches in one model id at most */
#define MAX_CACHED 256 /* stacks kept built; others are built for their requests alone */

struct xp_library {
    pthread_mutex_t mu;
    xp_model *m;
    char *dir;
    char base[65]; /* the file's base fingerprint, once a patch names a base */
    entry *e;
    size_t n;
    xp_served *base_model;
    xp_served **cache; /* stacks built so far */
    size_t n_cache, cap_cache;
};

const char *xp_served_id(const xp_served *s) { return s->id; }
const xp_overlay *xp_served_overlay(const xp_served *s) { return s->ov; }

xp_served *xp_served_retain(xp_served *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void xp_served_release(xp_served *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    xp_overlay_free(s->ov);
    free(s->id);
    free(s);
}

static xp_served *served_new(const char *id)
{
    xp_served *s = calloc(1, sizeof *s);
    if (s && !(s->id = strdup(id)))
        free(s), s = NULL;
    if (s)
        atomic_init(&s->refs, 1);
    return s;
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static void item_free(xp_library_item *it)
{
    free(it->name), free(it->file), free(it->format), free(it->refused);
}

static void entries_free(entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item_free(&e[i].item);
        xp_patch_list_free(e[i].ps, e[i].n);
    }
    free(e);
}

static void refuse(entry *en, const char *why)
{
    xp_patch_list_free(en->ps, en->n);
    en->ps = NULL;
    en->n = 0;
    free(en->item.refused);
    en->item.refused = strdup(why);
}

/* Reads and checks one file or folder into en (refused with its reason on failure). */
static void load_entry(xp_library *lib, entry *en, const char *path)
{
    xp_err err = {0};
    size_t missing;
    if (xp_patch_read_all(&en->ps, &en->n, &missing, path, &err)) {
        en->ps = NULL, en->n = 0;
        refuse(en, err.msg);
        return;
    }
    bool named = false;
    for (size_t i = 0; i < en->n; i++) {
        named |= en->ps[i]->base_sha256[0] != 0;
        en->item.flips += en->ps[i]->n_flips;
    }
    en->item.format = strdup(xp_patch_format_name(en->ps[0]->format));
    xp_gguf *g = xp_model_gguf(lib->m);
    int rc = named && !lib->base[0] ? xp_patch_file_base(g, lib->base, &err) : XP_OK;
    if (!rc)
        rc = xp_patch_file_check(g, lib->base, en->ps, en->n, false, &err);
    if (rc)
        refuse(en, err.msg);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->item.name, ((const entry *)b)->item.name);
}

/* The folder's entries, read, checked and sorted. */
static int scan(xp_library *lib, entry **out, size_t *n_out, xp_err *err)
{
    *out = NULL, *n_out = 0;
    if (!lib->dir)
        return XP_OK;
    DIR *d = opendir(lib->dir);
    if (!d)
        return xp_err_set(err, XP_EIO, "%s: cannot read the patch folder", lib->dir);
    entry *e = NULL;
    size_t n = 0, cap = 0;
    int rc = XP_OK;
    for (struct dirent *de; !rc && (de = readdir(d));) {
        const char *fn = de->d_name;
        if (fn[0] == '.')
            continue;
        size_t len = strlen(fn), path_len = strlen(lib->dir) + len + 2;
        char *path = malloc(path_len);
        struct stat st;
        if (!path)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        else
            snprintf(path, path_len, "%s/%s", lib->dir, fn);
        bool is_dir = !rc && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        bool is_file = !rc && !is_dir && stat(path, &st) == 0 && S_ISREG(st.st_mode);
        const char *dot = is_file ? strchr(fn, '.') : NULL;
        size_t stem = dot ? (size_t)(dot - fn) : len;
        /* reports and logs a search writes beside its patch are no patches */
        bool side = is_file && (strstr(fn, ".log.jsonl") || strstr(fn, ".html") ||
                                strstr(fn, ".xpjournal") || strstr(fn, ".gguf"));
        if (!rc && (is_dir || is_file) && !side) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                entry *grown = realloc(e, cap * sizeof *grown);
                if (!grown) {
                    rc = xp_err_set(err, XP_ENOMEM, "out of memory");
                    free(path);
                    break;
                }
                e = grown;
            }
            entry *en = &e[n++];
            memset(en, 0, sizeof *en);
            en->item.name = strndup(fn, stem);
            en->item.file = strdup(fn);
            if (!en->item.name || !en->item.file)
                rc = xp_err_set(err, XP_ENOMEM, "out of memory");
            else if (!name_ok(fn, stem))
                refuse(en, "its name is not a patch name (letters, digits, '_', '-', '.')");
            else
                load_entry(lib, en, path);
        }
        free(path);
    }
    closedir(d);
    if (rc) {
        entries_free(e, n);
        return rc;
    }
    qsort(e, n, sizeof *e, by_name);
    for (size_t i = 1; i < n; i++) /* two files of one name: neither is served */
        if (strcmp(e[i].item.name, e[i - 1].item.name) == 0) {
            refuse(&e[i], "another file of the folder has the same name");
            refuse(&e[i - 1], "another file of the folder has the same name");
        }
    *out = e, *n_out = n;
    return XP_OK;
}

static void cache_clear(xp_library *lib)
{
    for (size_t i = 0; i < lib->n_cache; i++)
        xp_served_release(lib->cache[i]);
    lib->n_cache = 0;
}

int xp_library_open(xp_library **out, xp_model *m, const char *dir, xp_err *err)
{
    xp_library *lib = calloc(1, sizeof *lib);
    *out = NULL;
    if (!lib || !(lib->base_model = served_new("base")) || (dir && !(lib->dir = strdup(dir)))) {
        xp_library_free(lib);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&lib->mu, NULL);
    lib->m = m;
    int rc = scan(lib, &lib->e, &lib->n, err);
    if (rc) {
        xp_library_free(lib);
        return rc;
    }
    *out = lib;
    return XP_OK;
}

void xp_library_free(xp_library *lib)
{
    if (!lib)
        return;
    cache_clear(lib);
    free(lib->cache);
    entries_free(lib->e, lib->n);
    xp_served_release(lib->base_model);
    free(lib->dir);
    pthread_mutex_destroy(&lib->mu);
    free(lib);
}

int xp_library_reload(xp_library *lib, xp_err *err)
{
    entry *e;
    size_t n;
    pthread_mutex_lock(&lib->mu);
    int rc = scan(lib, &e, &n, err);
    if (!rc) {
        entries_free(lib->e, lib->n);
        lib->e = e, lib->n = n;
        cache_clear(lib);
    }
    pthread_mutex_unlock(&lib->mu);
    return rc;
}

int xp_library_items(xp_library *lib, xp_library_item **items, size_t *n, xp_err *err)
{
    pthread_mutex_lock(&lib->mu);
    *items = calloc(lib->n ? lib->n : 1, sizeof **items);
    *n = 0;
    int rc = *items ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < lib->n; i++) {
        const xp_library_item *s = &lib->e[i].item;
        xp_library_item *d = &(*items)[(*n)++];
        d->name = strdup(s->name), d->file = strdup(s->file);
        d->format = s->format ? strdup(s->format) : NULL;
        d->refused = s->refused ? strdup(s->refused) : NULL;
        d->flips = s->flips;
        if (!d->name || !d->file || (s->format && !d->format) || (s->refused && !d->refused))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&lib->mu);
    if (rc)
        xp_library_items_free(*items, *n), *items = NULL, *n = 0;
    return rc;
}

void xp_library_items_free(xp_library_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        item_free(&items[i]);
    free(items);
}

static const entry *find(const xp_library *lib, const char *name, size_t len)
{
    for (size_t i = 0; i < lib->n; i++)
        if (strlen(lib->e[i].item.name) == len && !memcmp(lib->e[i].item.name, name, len))
            return &lib->e[i];
    return NULL;
}

/* Builds the stack of the names of id (after "base+"), checked as one apply. */
static int build(xp_library *lib, const char *id, const char *names, xp_served **out, xp_err *err)
{
    xp_patch **all = NULL;
    size_t n_all = 0;
    int rc = XP_OK;
    size_t n_names = 0;
    for (const char *p = names; !rc && *p; n_names++) {
        if (n_names == MAX_STACK) {
            rc = xp_err_set(err, XP_EINVAL, "'%.200s' stacks more than %d patches", id, MAX_STACK);
            break;
        }
        const char *plus = strchr(p, '+');
        size_t len = plus ? (size_t)(plus - p) : strlen(p);
        const entry *en = name_ok(p, len) ? find(lib, p, len) : NULL;
        if (!name_ok(p, len))
            rc = xp_err_set(err, XP_EINVAL,
                            "'%s' is not a model id: 'base' or 'base+PATCH', "
                            "patches joined by '+'",
                            id);
        else if (!en)
            rc = xp_err_set(err, XP_ENOTFOUND, "no patch '%.*s' in the library", (int)len, p);
        else if (en->item.refused)
            rc = xp_err_set(err, XP_ENOTFOUND, "the patch '%.*s' is not served: %s", (int)len, p,
                            en->item.refused);
        xp_patch **grown = rc ? NULL : realloc(all, (n_all + en->n) * sizeof *all);
        if (!rc && !grown)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        if (!rc) {
            all = grown;
            memcpy(all + n_all, en->ps, en->n * sizeof *all);
            n_all += en->n;
        }
        p += len + (plus != NULL);
        if (!rc && plus && !*p)
            rc = xp_err_set(err, XP_EINVAL, "'%s' ends with '+'", id);
    }
    if (!rc && n_all > 1) /* no patch twice: the flips would cancel */
        rc = xp_patch_file_check(xp_model_gguf(lib->m), lib->base, all, n_all, true, err);
    xp_served *s = rc ? NULL : served_new(id);
    if (!rc && !s)
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = xp_overlay_new(&s->ov, lib->m, err);
    for (size_t i = 0; !rc && i < n_all; i++)
        rc = xp_patch_overlay(all[i], lib->m, s->ov, err);
    free(all);
    if (rc) {
        xp_served_release(s);
        return rc;
    }
    *out = s;
    return XP_OK;
}

int xp_library_get(xp_library *lib, const char *id, xp_served **out, xp_err *err)
{
    *out = NULL;
    if (strcmp(id, "base") == 0) {
        *out = xp_served_retain(lib->base_model);
        return XP_OK;
    }
    if (strncmp(id, "base+", 5) != 0)
        return xp_err_set(err, XP_ENOTFOUND,
                          "no model '%.200s': the ids are 'base' and "
                          "'base+PATCH' (GET /v1/models lists them)",
                          id);
    pthread_mutex_lock(&lib->mu);
    int rc = XP_OK;
    for (size_t i = 0; i < lib->n_cache && !*out; i++)
        if (strcmp(lib->cache[i]->id, id) == 0)
            *out = xp_served_retain(lib->cache[i]);
    xp_served *s = NULL;
    if (!*out && !(rc = build(lib, id, id + 5, &s, err))) {
        if (lib->n_cache == lib->cap_cache && lib->cap_cache < MAX_CACHED) {
            size_t cap = lib->cap_cache ? 2 * lib->cap_cache : 16;
            xp_served **grown = realloc(lib->cache, cap * sizeof *grown);
            if (grown)
                lib->cache = grown, lib->cap_cache = cap;
        }
        if (lib->n_cache < lib->cap_cache)
            lib->cache[lib->n_cache++] = xp_served_retain(s);
        *out = s;
    }
    pthread_mutex_unlock(&lib->mu);
    return rc;
}
