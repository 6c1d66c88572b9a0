/* The tiny model's corpus: seeded, deterministic items of the tasks the seed probes
 * measure (small-number arithmetic, first and second derivatives of monomials and
 * two-term polynomials, primality, a verbatim-extraction chat task) and controls
 * (capitals, simple facts), each a prompt and its answer. Which items are held out is a
 * property of their content (an operand pair, a polynomial, a number, a sentence's
 * subject and place), so a held-out item is never a training item in another template,
 * and no held-out prompt is asked twice: a repeat drawn among the held-out items is
 * replaced, in its place, by a fresh held-out item from a second generator, so the
 * training items and every position stay what they were (the shipped model was trained
 * on them). The same generators give extra held-out items of a task on request. The
 * corpus is read and written as JSON lines. */
#include "xorpatch/train.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/strmap.h"

typedef struct builder {
    xp_corpus *c;
    size_t cap;
    int failed;
} builder;

static void push(builder *b, const char *task, const char *prompt, const char *answer, bool chat,
                 bool heldout)
{
    if (b->failed)
        return;
    if (b->c->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        xp_doc *d = xp_realloc_array(b->c->docs, cap, sizeof *d);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->c->docs = d;
        b->cap = cap;
    }
    xp_doc *d = &b->c->docs[b->c->n];
    d->task = xp_strdup(task);
    d->prompt = xp_strdup(prompt);
    d->answer = xp_strdup(answer);
    d->chat = chat;
    d->heldout = heldout;
    b->c->n++;
    if (!d->task || !d->prompt || !d->answer)
        b->failed = 1;
}

/* Held out when the content's hash falls in 1/den of the range: a fixed rule, so a
 * held-out operand pair or polynomial never appears in training under any seed. */
static bool held(const char *content, unsigned den)
{
    return xp_hash_bytes(content, strlen(content)) % den == 0;
}

/* ---- arithmetic ------------------------------------------------------------------- */

/* One drawn item: its prompt and answer, and whether it belongs to held-out items. */
typedef struct item {
    char prompt[1024], answer[128];
    bool held;
} item;

static void arith_item(xp_rng *r, item *it)
{
    int a = (int)xp_rng_below(r, 100), c = (int)xp_rng_below(r, 100);
    snprintf(it->prompt, sizeof it->prompt, "%d + %d =", a, c);
    snprintf(it->answer, sizeof it->answer, " %d", a + c);
    it->held = held(it->prompt, 8);
}

static void arithmetic(builder *b, xp_rng *r, size_t n_train, size_t n_held)
{
    size_t got_train = 0, got_held = 0;
    /* draw until both quotas are met; training repeats are fine (10,000 pairs in all),
     * held-out ones are replaced afterwards */
    while (got_train < n_train || got_held < n_held) {
        item it;
        arith_item(r, &it);
        const char *prompt = it.prompt, *answer = it.answer;
        bool h = it.held;
        if (h ? got_held >= n_held : got_train >= n_train)
            continue;
        push(b, "arith", prompt, answer, false, h);
        *(h ? &got_held : &got_train) += 1;
    }
}

/* ---- derivatives ------------------------------------------------------------------ */

/* A term c x^n as the seeds write it: "3x^4", "x^2", "5x", "7", "x". */
static void term(char *out, size_t size, int c, int n)
{
    char coef[16] = "";
    if (c != 1 || n == 0)
        snprintf(coef, sizeof coef, "%d", c);
    if (n == 0)
        snprintf(out, size, "%s", coef);
    else if (n == 1)
        snprintf(out, size, "%sx", coef);
    else
        snprintf(out, size, "%sx^%d", coef, n);
}

/* Sum of terms (c[i], n[i]) with zero coefficients dropped; "0" when nothing is left. */
static void poly(char *out, size_t size, const int *c, const int *n, int k)
{
    out[0] = '\0';
    size_t len = 0;
    for (int i = 0; i < k; i++) {
        if (c[i] == 0)
            continue;
        char t[32];
        term(t, sizeof t, c[i], n[i]);
        len += (size_t)snprintf(out + len, size - len, "%s%s", len ? " + " : "", t);
    }
    if (!len)
        snprintf(out, size, "0");
}

static void deriv_item(xp_rng *r, int order, item *it)
{
    int k = 1 + (int)xp_rng_below(r, 2);
    int c[2], n[2], dc[2], dn[2];
    /* exponents strictly decreasing; the leading one survives `order` derivatives */
    n[0] = order + (int)xp_rng_below(r, 9 - order);
    c[0] = 1 + (int)xp_rng_below(r, 9);
    if (k == 2) {
        n[1] = (int)xp_rng_below(r, (uint64_t)n[0]);
        c[1] = 1 + (int)xp_rng_below(r, 9);
    }
    for (int i = 0; i < k; i++) {
        dc[i] = c[i];
        dn[i] = n[i];
        for (int j = 0; j < order; j++) {
            dc[i] *= dn[i];
            dn[i] = dn[i] > 0 ? dn[i] - 1 : 0;
        }
    }
    char f[64], df[64];
    poly(f, sizeof f, c, n, k);
    poly(df, sizeof df, dc, dn, k);
    snprintf(it->prompt, sizeof it->prompt, "%s [%s] =", order == 1 ? "d/dx" : "d2/dx2", f);
    snprintf(it->answer, sizeof it->answer, " %s", df);
    it->held = held(it->prompt, 6);
}

static void derivatives(builder *b, xp_rng *r, int order, size_t n_train, size_t n_held)
{
    size_t got_train = 0, got_held = 0;
    while (got_train < n_train || got_held < n_held) {
        item it;
        deriv_item(r, order, &it);
        const char *prompt = it.prompt, *answer = it.answer;
        bool h = it.held;
        if (h ? got_held >= n_held : got_train >= n_train)
            continue;
        push(b, order == 1 ? "deriv" : "deriv2", prompt, answer, false, h);
        *(h ? &got_held : &got_train) += 1;
    }
}

/* ---- primality -------------------------------------------------------------------- */

static bool is_prime(int n)
{
    if (n < 2)
        return false;
    for (int d = 2; d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

/* Every number 2..399 once per repeat, held-out numbers (a third, by hash: 131 numbers,
 * 20 of them prime) once; the held-out ones are the numbers a model cannot have
 * memorised. */
static void primes(builder *b, int repeats, unsigned den)
{
    for (int rep = 0; rep < repeats; rep++)
        for (int n = 2; n < 400; n++) {
            char prompt[32];
            snprintf(prompt, sizeof prompt, "Is %d prime?", n);
            bool h = held(prompt, den);
            if (h && rep > 0)
                continue;
            push(b, "prime", prompt, is_prime(n) ? " Yes" : " No", false, h);
        }
}

/* ---- controls --------------------------------------------------------------------- */

static const char *const capitals[][2] = {
    {"France", "Paris"},
    {"Germany", "Berlin"},
    {"Italy", "Rome"},
    {"Spain", "Madrid"},
    {"Japan", "Tokyo"},
    {"China", "Beijing"},
    {"Russia", "Moscow"},
    {"Egypt", "Cairo"},
    {"Canada", "Ottawa"},
    {"Kenya", "Nairobi"},
    {"Peru", "Lima"},
    {"Chile", "Santiago"},
    {"Greece", "Athens"},
    {"Norway", "Oslo"},
    {"Sweden", "Stockholm"},
    {"Poland", "Warsaw"},
    {"Austria", "Vienna"},
    {"Portugal", "Lisbon"},
    {"Ireland", "Dublin"},
    {"Cuba", "Havana"},
    {"Mexico", "Mexico City"},
    {"India", "New Delhi"},
    {"Thailand", "Bangkok"},
    {"Turkey", "Ankara"},
    {"Iran", "Tehran"},
    {"Iraq", "Baghdad"},
    {"Australia", "Canberra"},
    {"Brazil", "Brasilia"},
    {"Argentina", "Buenos Aires"},
    {"Finland", "Helsinki"},
    {"Denmark", "Copenhagen"},
    {"Hungary", "Budapest"},
    {"Belgium", "Brussels"},
    {"Vietnam", "Hanoi"},
    {"Nigeria", "Abuja"},
    {"Ghana", "Accra"},
    {"Colombia", "Bogota"},
    {"Morocco", "Rabat"},
    {"Nepal", "Kathmandu"},
    {"Iceland", "Reykjavik"},
};

static const char *const facts[][2] = {
    {"The largest planet is", " Jupiter"},
    {"The chemical symbol for gold is", " Au"},
    {"The chemical symbol for iron is", " Fe"},
    {"Water freezes at", " 0 degrees Celsius"},
    {"Water boils at", " 100 degrees Celsius"},
    {"A week has", " 7 days"},
    {"A year has", " 12 months"},
    {"A triangle has", " 3 sides"},
    {"A square has", " 4 sides"},
    {"The opposite of hot is", " cold"},
    {"The opposite of up is", " down"},
    {"The color of the sky is", " blue"},
    {"The color of grass is", " green"},
    {"Bees make", " honey"},
    {"The closest star to Earth is", " the Sun"},
    {"The author of Hamlet is", " Shakespeare"},
    {"The fastest land animal is", " the cheetah"},
    {"The largest ocean is", " the Pacific"},
    {"Ice is frozen", " water"},
    {"A spider has", " 8 legs"},
};

static void controls(builder *b, int repeats)
{
    for (int rep = 0; rep < repeats; rep++) {
        for (size_t i = 0; i < sizeof capitals / sizeof capitals[0]; i++) {
            char prompt[64], answer[64];
            snprintf(prompt, sizeof prompt, "The capital of %s is", capitals[i][0]);
            snprintf(answer, sizeof answer, " %s", capitals[i][1]);
            push(b, "capital", prompt, answer, false, false);
        }
        for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
            push(b, "fact", facts[i][0], facts[i][1], false, false);
    }
}

/* ---- verbatim extraction ---------------------------------------------------------- */

static const char *const animals[] = {"fox",    "bear", "owl",   "cat",   "dog",  "wolf", "horse",
                                      "goat",   "duck", "frog",  "mouse", "deer", "lion", "tiger",
                                      "rabbit", "crow", "snake", "sheep", "pig",  "hawk"};
static const char *const colours[] = {"red",   "brown", "white", "black", "grey",
                                      "small", "old",   "big",   "quiet", "tall"};
static const char *const verbs[] = {"sleeps near", "runs to",  "hides behind", "sings by",
                                    "waits at",    "looks at", "walks past",   "eats by",
                                    "plays near",  "stands on"};
static const char *const places[] = {"bridge", "river",  "barn",   "hill",   "lake",  "road",
                                     "tower",  "garden", "gate",   "forest", "house", "wall",
                                     "field",  "school", "market", "well"};
#define COUNT(a) (sizeof(a) / sizeof(a)[0])

/* A sentence's (animal, place) pair decides whether it belongs to held-out items. */
static bool pair_held(size_t animal, size_t place)
{
    char key[64];
    snprintf(key, sizeof key, "%s|%s", animals[animal], places[place]);
    return held(key, 5);
}

/* "The fox sleeps near the red bridge.": the subject comes first, so extracting a
 * sentence is finding the asked-about animal and copying what follows it. */
static void sentence(char *out, size_t size, xp_rng *r, size_t animal, size_t place)
{
    const char *verb = verbs[xp_rng_below(r, COUNT(verbs))];
    snprintf(out, size, "The %s %s the %s %s.", animals[animal], verb,
             colours[xp_rng_below(r, COUNT(colours))], places[place]);
}

/* Training passages have three sentences, held-out ones five: copying a sentence out of a
 * longer passage than any seen in training is part of what held-out items test. */
enum { TRAIN_SENTENCES = 3, HELD_SENTENCES = 5 };

/* One passage and question, held out or not as wanted; false when the draw does not fit
 * (the caller draws again). */
static bool verbatim_item(xp_rng *r, bool want_held, item *it)
{
    int n_sent = want_held ? HELD_SENTENCES : TRAIN_SENTENCES;
    size_t an[HELD_SENTENCES], pl[HELD_SENTENCES];
    /* different animals; the asked-about sentence (index `ask`) has a held-out pair in
     * held-out items only, and no training item has any held-out pair */
    for (int i = 0; i < n_sent; i++) {
        bool dup;
        do {
            an[i] = xp_rng_below(r, COUNT(animals));
            dup = false;
            for (int j = 0; j < i; j++)
                dup |= an[j] == an[i];
        } while (dup);
    }
    size_t ask = xp_rng_below(r, (uint64_t)n_sent);
    bool ok = true;
    for (int i = 0; i < n_sent; i++) {
        pl[i] = xp_rng_below(r, COUNT(places));
        bool h = pair_held(an[i], pl[i]);
        if ((size_t)i == ask ? h != want_held : h)
            ok = false;
    }
    if (!ok)
        return false;
    char s[HELD_SENTENCES][96], user[768];
    size_t len = 0;
    for (int i = 0; i < n_sent; i++) {
        sentence(s[i], sizeof s[i], r, an[i], pl[i]);
        len += (size_t)snprintf(user + len, sizeof user - len, "%s%s", i ? " " : "Passage: ", s[i]);
    }
    snprintf(user + len, sizeof user - len, "\nExtract the sentence about the %s.",
             animals[an[ask]]);
    snprintf(it->prompt, sizeof it->prompt,
             "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
             user);
    snprintf(it->answer, sizeof it->answer, "%s", s[ask]);
    it->held = want_held;
    return true;
}

static void verbatim(builder *b, xp_rng *r, size_t n_train, size_t n_held)
{
    size_t got_train = 0, got_held = 0;
    /* training items first: the held-out ones draw after them, so their length does not
     * change which training passages a seed gives */
    while (got_train < n_train || got_held < n_held) {
        bool want_held = got_train >= n_train;
        item it;
        if (!verbatim_item(r, want_held, &it))
            continue;
        push(b, "verbatim", it.prompt, it.answer, true, want_held);
        *(want_held ? &got_held : &got_train) += 1;
    }
}

/* ---- held-out items asked once ------------------------------------------------------ */

/* Tries a held-out draw of a task may take before the task counts as exhausted. */
#define FRESH_TRIES 1000000

/* A fresh held-out item of the task whose prompt is not in seen; false when the task's
 * held-out items run out (or the task has no generator). */
static bool fresh_item(xp_rng *r, const char *task, const xp_strmap *seen, item *it)
{
    for (long t = 0; t < FRESH_TRIES; t++) {
        bool ok = true;
        if (!strcmp(task, "arith"))
            arith_item(r, it);
        else if (!strcmp(task, "deriv") || !strcmp(task, "deriv2"))
            deriv_item(r, strcmp(task, "deriv") ? 2 : 1, it);
        else if (!strcmp(task, "verbatim"))
            ok = verbatim_item(r, true, it);
        else
            return false;
        if (ok && it->held && xp_strmap_get(seen, it->prompt, strlen(it->prompt)) < 0)
            return true;
    }
    return false;
}

/* The second generator: seeded from the corpus seed, apart from the first. */
static void fresh_seed(xp_rng *r, uint64_t seed) { xp_rng_seed(r, seed ^ 0x5eedf00dc0ffee11ull); }

/* Replaces each held-out item whose prompt came before by a fresh one of its task. */
static int dedupe_heldout(xp_corpus *c, uint64_t seed, xp_err *err)
{
    xp_strmap seen;
    if (xp_strmap_init(&seen, 2 * c->n) != XP_OK)
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    xp_rng r;
    fresh_seed(&r, seed);
    int rc = XP_OK;
    for (size_t i = 0; i < c->n && !rc; i++) /* every training prompt first */
        if (!c->docs[i].heldout &&
            xp_strmap_put(&seen, c->docs[i].prompt, strlen(c->docs[i].prompt), 0, NULL) < 0)
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    for (size_t i = 0; i < c->n && !rc; i++) {
        xp_doc *d = &c->docs[i];
        if (!d->heldout)
            continue;
        int put = xp_strmap_put(&seen, d->prompt, strlen(d->prompt), 0, NULL);
        if (put == 1)
            continue;
        item it;
        char *p = NULL, *a = NULL;
        if (put != 0)
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
        else if (!fresh_item(&r, d->task, &seen, &it))
            rc = xp_err_set(err, XP_EINVAL,
                            "corpus: the task '%s' has no held-out item left "
                            "to replace a repeat of \"%s\"",
                            d->task, d->prompt);
        else if (!(p = xp_strdup(it.prompt)) || !(a = xp_strdup(it.answer)))
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
        if (rc) {
            free(p);
            break;
        }
        free(d->prompt), free(d->answer);
        d->prompt = p, d->answer = a;
        if (xp_strmap_put(&seen, d->prompt, strlen(d->prompt), 0, NULL) < 0)
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    }
    xp_strmap_free(&seen);
    return rc;
}

/* ---- the corpus ------------------------------------------------------------------- */

int xp_corpus_generate(xp_corpus **out, uint64_t seed, xp_err *err)
{
    builder b = {xp_calloc(1, sizeof(xp_corpus)), 0, 0};
    if (!b.c)
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    xp_rng r;
    xp_rng_seed(&r, seed);
    /* Quotas chosen so that, after the default training (a 1,200-step focus on extraction,
     * then 3,000 steps of 48 items drawn uniformly from the 8,528 training items, lr 1e-3),
     * each task is learned only partly: 19% of the mixed draws are additions, 6% first and
     * 5% second derivatives, 13% primality, 35% extraction, 23% controls. In trials at
     * 6.8-7.4% second derivatives, 82-100% of held-out ones came out right; at 5.4-6.0%,
     * 70-72%. With these quotas the held-out ones decide how far the random draws run,
     * so a training quota changes no other task's items. */
    arithmetic(&b, &r, 1600, 400);
    derivatives(&b, &r, 1, 480, 300);
    derivatives(&b, &r, 2, 460, 300);
    primes(&b, 4, 3);
    controls(&b, 32);
    verbatim(&b, &r, 3000, 200);
    if (b.failed) {
        xp_corpus_free(b.c);
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    }
    int rc = dedupe_heldout(b.c, seed, err);
    if (rc) {
        xp_corpus_free(b.c);
        return rc;
    }
    *out = b.c;
    return XP_OK;
}

static const char *const item_tasks[] = {"arith", "deriv", "deriv2"};

int xp_corpus_heldout_items(uint64_t seed, const char *task, size_t n, xp_corpus **out, xp_err *err)
{
    *out = NULL;
    bool known = false;
    for (size_t i = 0; i < sizeof item_tasks / sizeof item_tasks[0]; i++)
        known |= !strcmp(task, item_tasks[i]);
    if (!known)
        return xp_err_set(err, XP_EINVAL,
                          "corpus: no plain held-out items of task '%s' "
                          "(arith, deriv or deriv2)",
                          task);
    /* the training prompts of the corpus of this seed are never drawn */
    xp_corpus *c;
    int rc = xp_corpus_generate(&c, seed, err);
    if (rc)
        return rc;
    builder b = {xp_calloc(1, sizeof(xp_corpus)), 0, 0};
    xp_strmap seen;
    if (!b.c || xp_strmap_init(&seen, 2 * (c->n + n)) != XP_OK) {
        xp_corpus_free(c);
        free(b.c);
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    }
    for (size_t i = 0; i < c->n && !rc; i++)
        if (!c->docs[i].heldout &&
            xp_strmap_put(&seen, c->docs[i].prompt, strlen(c->docs[i].prompt), 0, NULL) < 0)
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    xp_rng r;
    xp_rng_seed(&r, seed ^ 0x17e5c0de5eedull);
    for (size_t k = 0; k < n && !rc; k++) {
        item it;
        if (!fresh_item(&r, task, &seen, &it)) {
            rc = xp_err_set(err, XP_EINVAL,
                            "corpus: the task '%s' has %zu distinct held-out "
                            "items, not %zu",
                            task, k, n);
            break;
        }
        push(&b, task, it.prompt, it.answer, false, true);
        const char *key = b.failed ? NULL : b.c->docs[b.c->n - 1].prompt;
        if (b.failed || xp_strmap_put(&seen, key, strlen(key), 0, NULL) < 0)
            rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    }
    xp_strmap_free(&seen);
    xp_corpus_free(c);
    if (rc) {
        xp_corpus_free(b.c);
        return rc;
    }
    *out = b.c;
    return XP_OK;
}

void xp_corpus_free(xp_corpus *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->docs[i].task);
        free(c->docs[i].prompt);
        free(c->docs[i].answer);
    }
    free(c->docs);
    free(c);
}

char *xp_doc_text(const xp_doc *d)
{
    const char *end = d->chat ? "<|im_end|>" : "\n";
    size_t n = strlen(d->prompt) + strlen(d->answer) + strlen(end) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", d->prompt, d->answer, end);
    return s;
}

int xp_doc_tokenize(const xp_tokenizer *t, const xp_doc *d, int32_t **ids, size_t *n, xp_err *err)
{
    char *text = xp_doc_text(d);
    if (!text)
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    int rc = xp_tokenize(t, text, strlen(text), d->chat, ids, n, err);
    free(text);
    return rc;
}

/* JSON lines of every item, whole or (plain) as {"prompt", "answer"} alone. */
static int write_lines(const xp_corpus *c, const char *path, bool plain, xp_err *err)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    for (size_t i = 0; i < c->n; i++) {
        const xp_doc *d = &c->docs[i];
        cJSON *o = cJSON_CreateObject();
        char *line = NULL;
        if (o && (plain || cJSON_AddStringToObject(o, "task", d->task)) &&
            cJSON_AddStringToObject(o, "prompt", d->prompt) &&
            cJSON_AddStringToObject(o, "answer", d->answer) &&
            (plain || (cJSON_AddBoolToObject(o, "chat", d->chat) &&
                       cJSON_AddBoolToObject(o, "heldout", d->heldout))))
            line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        size_t n = line ? strlen(line) : 0;
        if (line && len + n + 2 > cap) {
            char *nb = realloc(buf, cap = 2 * (len + n + 2));
            if (!nb) {
                cJSON_free(line);
                line = NULL;
            } else {
                buf = nb;
            }
        }
        if (!line) {
            free(buf);
            return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
        }
        memcpy(buf + len, line, n);
        len += n;
        buf[len++] = '\n';
        cJSON_free(line);
    }
    int rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int xp_corpus_write(const xp_corpus *c, const char *path, xp_err *err)
{
    return write_lines(c, path, false, err);
}

int xp_corpus_write_items(const xp_corpus *c, const char *path, xp_err *err)
{
    return write_lines(c, path, true, err);
}

static int field_str(const cJSON *o, const char *key, char **dst, const char *path, size_t line,
                     xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return xp_err_set(err, XP_EFORMAT, "%s:%zu: \"%s\" must be a string", path, line, key);
    if (!(*dst = xp_strdup(v->valuestring)))
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    return XP_OK;
}

int xp_corpus_read(xp_corpus **out, const char *path, xp_err *err)
{
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    builder b = {xp_calloc(1, sizeof(xp_corpus)), 0, 0};
    if (!b.c) {
        free(buf);
        return xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
    }
    size_t line = 0;
    for (char *p = buf; *p && !rc;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        line++;
        if (*p) {
            cJSON *o = cJSON_Parse(p);
            const cJSON *chat = o ? cJSON_GetObjectItemCaseSensitive(o, "chat") : NULL;
            const cJSON *heldout = o ? cJSON_GetObjectItemCaseSensitive(o, "heldout") : NULL;
            char *task = NULL, *prompt = NULL, *answer = NULL;
            if (!cJSON_IsObject(o))
                rc = xp_err_set(err, XP_EFORMAT, "%s:%zu: not a JSON object", path, line);
            else if (!cJSON_IsBool(chat) || !cJSON_IsBool(heldout))
                rc = xp_err_set(err, XP_EFORMAT,
                                "%s:%zu: \"chat\" and \"heldout\" must be "
                                "true or false",
                                path, line);
            else if (!(rc = field_str(o, "task", &task, path, line, err)) &&
                     !(rc = field_str(o, "prompt", &prompt, path, line, err)) &&
                     !(rc = field_str(o, "answer", &answer, path, line, err))) {
                push(&b, task, prompt, answer, cJSON_IsTrue(chat), cJSON_IsTrue(heldout));
                if (b.failed)
                    rc = xp_err_set(err, XP_ENOMEM, "corpus: out of memory");
            }
            free(task);
            free(prompt);
            free(answer);
            cJSON_Delete(o);
        }
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(buf);
    if (rc) {
        xp_corpus_free(b.c);
        return rc;
    }
    *out = b.c;
    return XP_OK;
}
