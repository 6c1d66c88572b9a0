/* The search job's iteration log (search_log.h): JSON lines with the documented keys
 * {"iter", "layer", "proj", "kind", "index", "bit", "fitness", "best", "accepted",
 * "screened", "probes", "seconds", "flips"}, fitness null when screening rejected the
 * candidate; with validation probes also "validation" (the candidate's objective, null
 * when not measured), "validation_now" (the kept flips'), "validation_rejected" and, under
 * early-stop, "validation_best_flips"; with flip detail, per kept flip "moved" (probes
 * whose gap changed), "largest" (the largest moves) and "crossed" (every probe whose gap
 * crossed zero: role, probe index and name, "up" to right or "down" to wrong); gradient
 * proposals add "estimate" and the measured "change" (null when screened out). The file is created
 * at the first line, so a run refused before it starts leaves none, and each line goes in one write
 * that is cut off again should the disk take only part of it: every line in the file is whole. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "job/search_log.h"

static cJSON *move_json(const search_log *l, const xp_probe_move *mv, bool direction)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", xp_search_role_name(mv->role));
    cJSON_AddNumberToObject(o, "probe", (double)mv->index);
    const char *const *names = mv->role >= 0 && mv->role < 3 ? l->names[mv->role] : NULL;
    if (names && names[mv->index])
        cJSON_AddStringToObject(o, "name", names[mv->index]);
    cJSON_AddNumberToObject(o, "before", mv->before);
    cJSON_AddNumberToObject(o, "after", mv->after);
    if (direction)
        cJSON_AddStringToObject(o, "direction", mv->after > 0 ? "up" : "down");
    return o;
}

static void add_number_or_null(cJSON *o, const char *key, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

/* What the validation and flip detail add to a line (nothing without them). */
static void add_validation_and_detail(const search_log *l, cJSON *o, const xp_search_iter *it)
{
    if (l->validation) {
        add_number_or_null(o, "validation", it->validation);
        add_number_or_null(o, "validation_now", it->validation_now);
        cJSON_AddBoolToObject(o, "validation_rejected", it->validation_rejected);
        if (l->early_stop)
            cJSON_AddNumberToObject(o, "validation_best_flips", (double)it->validation_best_flips);
    }
    if (l->detail && it->accepted && it->effect) {
        const xp_flip_effect *e = it->effect;
        cJSON_AddNumberToObject(o, "moved", (double)e->moved);
        cJSON *largest = cJSON_AddArrayToObject(o, "largest");
        for (size_t i = 0; i < e->n_largest; i++)
            cJSON_AddItemToArray(largest, move_json(l, &e->largest[i], false));
        cJSON *crossed = cJSON_AddArrayToObject(o, "crossed");
        for (size_t i = 0; i < e->n_crossings; i++)
            cJSON_AddItemToArray(crossed, move_json(l, &e->crossings[i], true));
    }
}

static cJSON *iter_json(const xp_search_iter *it)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iter", (double)it->iter);
    cJSON_AddNumberToObject(o, "layer", it->cand.layer);
    cJSON_AddStringToObject(o, "proj", xp_proj_name(it->cand.proj));
    cJSON_AddStringToObject(o, "kind",
                            it->cand.kind == XP_FLIP_ROW     ? "row"
                            : it->cand.kind == XP_FLIP_BLOCK ? "block"
                                                             : "scale");
    cJSON_AddNumberToObject(o, "index", (double)it->cand.index);
    if (it->cand.kind == XP_FLIP_SCALE)
        cJSON_AddNumberToObject(o, "bit", it->cand.bit);
    if (isnan(it->fitness))
        cJSON_AddNullToObject(o, "fitness");
    else
        cJSON_AddNumberToObject(o, "fitness", it->fitness);
    if (isnan(it->best))
        cJSON_AddNullToObject(o, "best");
    else
        cJSON_AddNumberToObject(o, "best", it->best);
    cJSON_AddBoolToObject(o, "accepted", it->accepted);
    cJSON_AddBoolToObject(o, "screened", it->screened);
    cJSON_AddNumberToObject(o, "probes", (double)it->probes_run);
    cJSON_AddNumberToObject(o, "seconds", it->seconds);
    cJSON_AddNumberToObject(o, "flips", (double)it->n_flips);
    if (isfinite(it->estimate)) {
        cJSON_AddNumberToObject(o, "estimate", it->estimate);
        if (isnan(it->change))
            cJSON_AddNullToObject(o, "change");
        else
            cJSON_AddNumberToObject(o, "change", it->change);
    }
    return o;
}

static void remember(search_log *l, const xp_search_iter *it)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        xp_search_iter *v = realloc(l->iters, cap * sizeof *v);
        if (!v)
            return;
        l->iters = v;
        l->cap = cap;
    }
    l->iters[l->n] = *it;
    l->iters[l->n++].effect = NULL; /* the detail lives during the callback only */
}

int search_log_open(search_log *l, const char *path, bool resume, xp_err *err)
{
    memset(l, 0, sizeof *l);
    l->fd = -1;
    l->path = path;
    l->resume = l->trim = resume;
    return xp_check_output_path(path, err);
}

/* The file, opened at the first line (afresh, or to append when resuming). */
static bool open_file(search_log *l)
{
    if (l->fd < 0 && !l->failed) {
        l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (l->resume ? 0 : O_TRUNC),
                     0644);
        if (l->fd < 0)
            l->failed = errno;
    }
    return l->fd >= 0;
}

/* Keeps the lines of the log before iteration `first` (a resumed run repeats the ones
 * after its checkpoint; a run started afresh from a patch repeats them all). */
static void trim(search_log *l, size_t first)
{
    FILE *in = fopen(l->path, "r");
    char *buf = NULL, *line = NULL;
    size_t len = 0, cap = 0;
    FILE *out = open_memstream(&buf, &len);
    while (in && out && getline(&line, &cap, in) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "iter");
        if (cJSON_IsNumber(it) && it->valuedouble < (double)first)
            fputs(line, out);
        cJSON_Delete(o);
    }
    free(line);
    if (in)
        fclose(in);
    xp_err err = {0};
    if (!out || fclose(out))
        l->failed = ENOMEM;
    else if (xp_write_file_atomic(l->path, buf ? buf : "", len, &err))
        l->failed = errno ? errno : EIO;
    free(buf);
}

void search_log_write(search_log *l, const xp_search_iter *it)
{
    if (l->trim) {
        trim(l, it->iter);
        l->trim = false;
    }
    remember(l, it);
    if (!open_file(l))
        return;
    cJSON *o = iter_json(it);
    add_validation_and_detail(l, o, it);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = line ? strlen(line) : 0;
    struct stat st;
    if (line && fstat(l->fd, &st) == 0) {
        /* one write per line; a line the disk took only part of is cut off again */
        line[n] = '\n';
        if (xp_write_all(l->fd, line, n + 1) != 0) {
            l->failed = errno;
            if (ftruncate(l->fd, st.st_size) != 0)
                l->failed = errno;
        }
    } else {
        l->failed = line ? errno : ENOMEM;
    }
    free(line);
}

int search_log_close(search_log *l, bool complete, xp_err *err)
{
    if (complete)
        open_file(l); /* a run of no iteration has an empty log */
    if (l->fd >= 0 && !l->failed && (fsync(l->fd) != 0 || close(l->fd) != 0))
        l->failed = errno;
    else if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->failed)
        return xp_err_set(err, XP_EIO, "%s: cannot write the log: %s", l->path,
                          strerror(l->failed));
    return XP_OK;
}

static double number(const cJSON *o, const char *key, double missing)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : missing;
}

void search_log_reread(search_log *l, size_t upto)
{
    FILE *f = fopen(l->path, "r");
    if (!f)
        return;
    search_log old = {0};
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "iter");
        if (cJSON_IsNumber(it) && it->valuedouble >= 1 && (size_t)it->valuedouble <= upto) {
            xp_search_iter r = {.iter = (size_t)it->valuedouble};
            r.fitness = number(o, "fitness", NAN);
            r.best = number(o, "best", NAN);
            r.accepted = cJSON_IsTrue(cJSON_GetObjectItem(o, "accepted"));
            r.screened = cJSON_IsTrue(cJSON_GetObjectItem(o, "screened"));
            r.seconds = number(o, "seconds", 0);
            r.n_flips = (size_t)number(o, "flips", 0);
            r.estimate = number(o, "estimate", NAN);
            r.change = number(o, "change", NAN);
            r.cand.layer = (uint32_t)number(o, "layer", 0);
            const cJSON *v = cJSON_GetObjectItem(o, "proj");
            int proj = cJSON_IsString(v) ? xp_proj_from_name(v->valuestring) : -1;
            r.cand.proj = (uint8_t)(proj >= 0 ? proj : 0);
            r.validation = number(o, "validation", NAN);
            r.validation_now = number(o, "validation_now", NAN);
            r.validation_rejected = cJSON_IsTrue(cJSON_GetObjectItem(o, "validation_rejected"));
            r.validation_best_flips = (size_t)number(o, "validation_best_flips", 0);
            r.moved = (size_t)number(o, "moved", 0);
            const cJSON *c;
            cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "crossed"))
            {
                const cJSON *role = cJSON_GetObjectItem(c, "role");
                for (int k = 0; k < 3 && cJSON_IsString(role); k++)
                    r.crossed[k] += !strcmp(role->valuestring, xp_search_role_name(k));
            }
            remember(&old, &r);
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < l->n; i++)
        remember(&old, &l->iters[i]);
    free(l->iters);
    l->iters = old.iters;
    l->n = old.n;
    l->cap = old.cap;
}

void search_log_free(search_log *l)
{
    if (l->path && l->fd >= 0)
        close(l->fd);
    free(l->iters);
    memset(l, 0, sizeof *l);
}
