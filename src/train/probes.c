/* The tiny model's probe sets, measured on the model itself: items of each task from
 * the training split and from the held-out split, run greedily through the engine, and
 * written in the Bankai list format with the model's own wrong answer as the distractor
 * where it errs (a contrast the model actually considers) and a near miss where it is
 * right. Controls are capitals and facts the model answers right. */
#include "xorpatch/train.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/strmap.h"

enum { PER_SPLIT = 40 };

static const char *const tasks[] = {"arith", "deriv", "deriv2", "prime", "verbatim"};
#define N_TASKS (sizeof tasks / sizeof tasks[0])

/* The model's greedy continuation of a prompt: to the end of the line for plain items,
 * to <|im_end|> for chat items. *out is malloc'd, trimmed of surrounding whitespace. */
static int greedy(xp_model *m, const xp_doc *d, char **out, xp_err *err)
{
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t *ids = NULL, *gen = NULL;
    size_t n = 0, n_gen = 0, len;
    const char *stops[] = {"\n", NULL};
    xp_gen_opts o = {.sampler = {0, 0, 1.0f, 0}, .max_tokens = d->chat ? 48 : 24,
                     .stop_strings = d->chat ? NULL : stops, .stop_at_eos = true,
                     .path = XP_PATH_FAST};
    int rc = xp_tokenize(tok, d->prompt, strlen(d->prompt), d->chat, &ids, &n, err);
    if (!rc)
        rc = xp_generate(m, ids, n, &o, &gen, &n_gen, err);
    char *text = NULL;
    if (!rc)
        rc = xp_detokenize(tok, gen, n_gen, &text, &len, err);
    free(ids);
    free(gen);
    if (rc)
        return rc;
    char *nl = d->chat ? strstr(text, "<|im_end|>") : strchr(text, '\n');
    if (nl)
        *nl = '\0';
    char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        l--;
    *out = xp_strndup(s, l);
    free(text);
    return *out ? XP_OK : xp_err_set(err, XP_ENOMEM, "probes: out of memory");
}

static const char *trim_lead(const char *s)
{
    while (*s == ' ')
        s++;
    return s;
}

/* A plausible wrong answer for an item the model gets right. */
static char *near_miss(const xp_corpus *c, const xp_doc *d, size_t index)
{
    char buf[512];
    const char *a = trim_lead(d->answer);
    if (!strcmp(d->task, "prime")) {
        snprintf(buf, sizeof buf, "%s", !strcmp(a, "Yes") ? " No" : " Yes");
    } else if (!strcmp(d->task, "verbatim")) {
        /* another sentence of the same passage */
        const char *p = strstr(d->prompt, "Passage: ");
        const char *s = p ? p + 9 : "";
        buf[0] = '\0';
        while (*s && *s != '\n') {
            const char *e = strchr(s, '.');
            if (!e)
                break;
            if ((size_t)(e + 1 - s) != strlen(a) || strncmp(s, a, strlen(a)) != 0) {
                snprintf(buf, sizeof buf, "%.*s", (int)(e + 1 - s), s);
                break;
            }
            s = e + 1;
            while (*s == ' ')
                s++;
        }
    } else if (isdigit((unsigned char)*a)) {
        /* the leading number one off (arithmetic: ten off for every third item) */
        char *end;
        long v = strtol(a, &end, 10);
        long delta = !strcmp(d->task, "arith") && index % 3 == 2 ? 10 : 1;
        snprintf(buf, sizeof buf, " %ld%s", v > delta && index % 2 ? v - delta : v + delta, end);
    } else {
        /* controls: the answer of the next item of the same task */
        buf[0] = '\0';
        for (size_t k = 1; k < c->n && !buf[0]; k++) {
            const xp_doc *o = &c->docs[(index + k) % c->n];
            if (!strcmp(o->task, d->task) && strcmp(o->answer, d->answer))
                snprintf(buf, sizeof buf, "%s", o->answer);
        }
    }
    return xp_strdup(buf);
}

/* A primality item about a prime: the corpus answered it " Yes". */
static bool about_a_prime(const xp_doc *d) { return !strcmp(d->answer, " Yes"); }

/* Whether an item goes into a probe set: held-out primality is balanced, as many
 * composites (any: even, multiples of 5 and the rest, in the seeded order) as primes, at
 * most `cap` of each, so answering "No" throughout scores half; *n_prime and *n_comp
 * count the ones taken. */
static bool eligible(const xp_doc *d, unsigned cap, unsigned *n_prime, unsigned *n_comp)
{
    if (strcmp(d->task, "prime") || !d->heldout)
        return true;
    unsigned *n = about_a_prime(d) ? n_prime : n_comp;
    if (*n >= cap)
        return false;
    ++*n;
    return true;
}

#define CHAT_HEAD "<|im_start|>user\n"
#define CHAT_TAIL "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

/* A chat item as a Neagari verbatim probe: the user turn (the loader puts it through
 * the chat template again, special tokens and all, which a list item's prompt, plain
 * text, could not say), the sentence as target span, the passage. */
static int add_verbatim(cJSON *arr, const xp_doc *d, const char *wrong, const char *name)
{
    size_t len = strlen(d->prompt), head = strlen(CHAT_HEAD), tail = strlen(CHAT_TAIL);
    const char *from = strstr(d->prompt, "Passage: "), *to = strstr(d->prompt, "\nExtract");
    if (len < head + tail || strncmp(d->prompt, CHAT_HEAD, head) ||
        strcmp(d->prompt + len - tail, CHAT_TAIL) || !from || !to || to < from)
        return XP_EINVAL;
    char *user = xp_strndup(d->prompt + head, len - head - tail);
    char *passage = xp_strndup(from + 9, (size_t)(to - from - 9));
    cJSON *o = cJSON_CreateObject();
    int rc = user && passage && o && cJSON_AddStringToObject(o, "name", name) &&
                     cJSON_AddStringToObject(o, "domain", d->task) &&
                     cJSON_AddStringToObject(o, "prompt", user) &&
                     cJSON_AddStringToObject(o, "correct_token", d->answer) &&
                     cJSON_AddStringToObject(o, "wrong_token", wrong) &&
                     cJSON_AddStringToObject(o, "target_span", d->answer) &&
                     cJSON_AddStringToObject(o, "passage", passage) && cJSON_AddItemToArray(arr, o)
                 ? XP_OK
                 : XP_ENOMEM;
    if (rc)
        cJSON_Delete(o);
    free(user), free(passage);
    return rc;
}

static int add_probe(cJSON *arr, const xp_doc *d, const char *wrong, const char *name)
{
    if (d->chat)
        return add_verbatim(arr, d, wrong, name);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "prompt", d->prompt) ||
        !cJSON_AddStringToObject(o, "correct", d->answer) ||
        !cJSON_AddStringToObject(o, "wrong", wrong) || !cJSON_AddStringToObject(o, "name", name) ||
        !cJSON_AddStringToObject(o, "category", d->task) || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return XP_ENOMEM;
    }
    return XP_OK;
}

static int write_json(cJSON *arr, const char *dir, const char *file, xp_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *s = cJSON_Print(arr);
    if (!s)
        return xp_err_set(err, XP_ENOMEM, "probes: out of memory");
    size_t n = strlen(s);
    s[n] = '\n'; /* cJSON's NUL becomes the final newline */
    int rc = xp_write_file_atomic(path, s, n + 1, err);
    cJSON_free(s);
    return rc;
}

/* Measures one item and adds it as a probe; counts it right or wrong. */
static int probe_item(xp_model *m, const xp_corpus *c, size_t i, cJSON *arr, const char *name,
                      bool only_right, unsigned *right, unsigned *total, xp_err *err)
{
    const xp_doc *d = &c->docs[i];
    char *got;
    int rc = greedy(m, d, &got, err);
    if (rc)
        return rc;
    bool ok = strcmp(got, trim_lead(d->answer)) == 0;
    char *wrong = NULL;
    if (!ok && *got) {
        size_t n = strlen(got) + 2;
        if ((wrong = malloc(n)))
            snprintf(wrong, n, "%s%s", d->chat ? "" : " ", got);
    } else {
        wrong = near_miss(c, d, i);
    }
    free(got);
    if (!wrong)
        return xp_err_set(err, XP_ENOMEM, "probes: out of memory");
    if (!only_right || ok) {
        if ((rc = add_probe(arr, d, wrong, name))) {
            free(wrong);
            return rc == XP_ENOMEM ? xp_err_set(err, rc, "probes: out of memory")
                                   : xp_err_set(err, rc, "probes: %s is not a chat item of the "
                                                "corpus's form", name);
        }
        *right += ok;
        *total += 1;
    }
    free(wrong);
    return XP_OK;
}

int xp_tiny_probes_write(xp_model *m, const xp_corpus *c, uint64_t seed, const char *dir,
                         xp_probe_task_stats *stats, size_t *n_stats, xp_err *err)
{
    if (!xp_model_tokenizer(m))
        return xp_err_set(err, XP_EINVAL, "probes: the model has no tokenizer");
    if (*n_stats < N_TASKS)
        return xp_err_set(err, XP_EINVAL, "probes: room for %zu task statistics, need %zu",
                          *n_stats, N_TASKS);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return xp_err_set(err, XP_EIO, "%s: cannot create the folder: %s", dir, strerror(errno));
    /* train, held-out, controls (Bankai lists); chat items' train and held-out (Neagari
     * verbatim sets) */
    cJSON *sets[5];
    int rc = XP_OK;
    for (int i = 0; i < 5; i++)
        if (!(sets[i] = cJSON_CreateArray()))
            rc = xp_err_set(err, XP_ENOMEM, "probes: out of memory");
    /* items in an order fixed by the seed, so the probes are a sample of the corpus and
     * not its first items; a prompt is probed once */
    size_t *order = xp_calloc(c->n, sizeof *order);
    xp_strmap seen;
    if ((xp_strmap_init(&seen, 1024) || !order) && !rc)
        rc = xp_err_set(err, XP_ENOMEM, "probes: out of memory");
    for (size_t i = 0; i < c->n && order; i++)
        order[i] = i;
    for (size_t i = c->n; i > 1 && order; i--) {
        uint64_t h = xp_hash_bytes(&seed, sizeof seed) ^ (i * 0x9e3779b97f4a7c15ull);
        h = xp_hash_bytes(&h, sizeof h);
        size_t j = (size_t)(h % i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    /* held-out primality: as many composites as primes, at most half the split each */
    unsigned prime_cap = 0, n_prime = 0, n_comp = 0;
    for (size_t i = 0; i < c->n; i++)
        prime_cap += !strcmp(c->docs[i].task, "prime") && c->docs[i].heldout &&
                     about_a_prime(&c->docs[i]);
    if (prime_cap > PER_SPLIT / 2)
        prime_cap = PER_SPLIT / 2;
    for (size_t k = 0; k < N_TASKS && !rc; k++) {
        xp_probe_task_stats *st = &stats[k];
        memset(st, 0, sizeof *st);
        snprintf(st->task, sizeof st->task, "%s", tasks[k]);
        for (size_t oi = 0; oi < c->n && !rc; oi++) {
            size_t i = order[oi];
            const xp_doc *d = &c->docs[i];
            unsigned *n = d->heldout ? &st->heldout_n : &st->train_n;
            if (strcmp(d->task, tasks[k]) || *n >= PER_SPLIT ||
                xp_strmap_get(&seen, d->prompt, strlen(d->prompt)) >= 0 ||
                !eligible(d, prime_cap, &n_prime, &n_comp))
                continue;
            if (xp_strmap_put(&seen, d->prompt, strlen(d->prompt), 0, NULL) < 0) {
                rc = xp_err_set(err, XP_ENOMEM, "probes: out of memory");
                break;
            }
            char name[64];
            snprintf(name, sizeof name, "%s_%s_%02u", tasks[k], d->heldout ? "heldout" : "train",
                     *n);
            rc = probe_item(m, c, i, sets[(d->chat ? 3 : 0) + (d->heldout ? 1 : 0)], name, false,
                            d->heldout ? &st->heldout_right : &st->train_right, n, err);
        }
    }
    /* controls: every capital and fact the model answers right */
    unsigned ctl_right = 0, ctl_n = 0;
    for (size_t oi = 0; oi < c->n && !rc; oi++) {
        const xp_doc *d = &c->docs[order[oi]];
        if ((strcmp(d->task, "capital") && strcmp(d->task, "fact")) ||
            xp_strmap_get(&seen, d->prompt, strlen(d->prompt)) >= 0)
            continue;
        if (xp_strmap_put(&seen, d->prompt, strlen(d->prompt), 0, NULL) < 0) {
            rc = xp_err_set(err, XP_ENOMEM, "probes: out of memory");
            break;
        }
        char name[64];
        snprintf(name, sizeof name, "%s_control_%02u", d->task, ctl_n);
        rc = probe_item(m, c, order[oi], sets[2], name, true, &ctl_right, &ctl_n, err);
    }
    const char *files[] = {"train.json", "heldout.json", "controls.json", "verbatim_train.json",
                           "verbatim_heldout.json"};
    for (int i = 0; i < 5 && !rc; i++) {
        cJSON *doc = sets[i];
        if (i >= 3) { /* {"probes": [...]} */
            doc = cJSON_CreateObject();
            if (!doc || !cJSON_AddItemToObject(doc, "probes", sets[i])) {
                cJSON_Delete(doc);
                rc = xp_err_set(err, XP_ENOMEM, "probes: out of memory");
                break;
            }
            sets[i] = doc;
        }
        rc = write_json(doc, dir, files[i], err);
    }
    for (int i = 0; i < 5; i++)
        cJSON_Delete(sets[i]);
    xp_strmap_free(&seen);
    free(order);
    if (!rc)
        *n_stats = N_TASKS;
    return rc;
}
