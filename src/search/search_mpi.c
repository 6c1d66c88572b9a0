/* A search on the ranks of an MPI job with the result of a lone process (search.h, "a
 * search on several processes"). Every rank sets the run up itself (model, probes,
 * baseline); rank 0, the leader, draws the candidates ahead of the iteration it is at and
 * hands each to a free rank (a follower holds two: one it evaluates, one waiting, so it
 * never idles while the leader is busy; the leader evaluates one itself between
 * messages). Each result names the state version (the count of kept flips) it was
 * measured on and a digest of that state's gaps. The leader takes the results in the
 * sequence's order, exactly as step() would; when one is kept it sends the flip to every
 * follower, each applies it (and measures every probe once more, unless it evaluated
 * that very flip last), the version moves on, and the candidates drawn after it are given
 * back to the proposer and handed out again; a result of an older version is thrown
 * away. Waiting ranks sleep between looks at their messages, so they leave the cores to
 * the ranks that compute. Without MPI (no XP_MPI) only the stubs at the end are built. */
#include <string.h>

#include "search/search_run.h"

#ifdef XP_MPI
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FOLLOWER_DEPTH 2 /* candidates a follower holds */
#define TEXT_MAX 512     /* an error's text between ranks */

enum { TAG_WORK = 1, TAG_REPLY, TAG_TEXT };
enum { MSG_EVAL = 1, MSG_COMMIT, MSG_END, MSG_RESULT, MSG_STALE, MSG_ERROR };
enum { F_ACCEPTED = 1, F_SCREENED = 2, F_CONTROL = 4, F_FOR_EVAL = 8, F_VALIDATION = 16 };

/* What the ranks send each other, in either direction: 88 bytes (the ranks share one
 * byte order and ABI; a cluster's machines do). */
typedef struct msg {
    uint32_t type, flags;
    uint64_t seq, version; /* the iteration; the state's kept-flip count */
    uint32_t layer;
    uint8_t proj, kind, bit, pad;
    int64_t index;
    double fitness, change, validation, seconds; /* as xp_search_iter has them */
    uint64_t probes, digest; /* probes measured (an error: its code, negated); the
                                digest of the state's gaps */
} msg;
_Static_assert(sizeof(msg) == 88, "a message is 88 bytes");

/* A candidate of the sequence the leader has drawn and not yet taken. */
typedef struct slot {
    xp_candidate c;
    double estimate; /* the proposer's, when it was drawn */
    size_t seq;
    int owner; /* the rank evaluating it, -1 while none */
    bool done;
    msg res;
} slot;

struct xp_search_team {
    MPI_Comm comm;
    int rank, size;
    bool failed_together; /* the last search failed on every rank, and each knows it */
    xp_search_team_stats stats;
    /* the search in progress */
    uint64_t version, digest;
    size_t fresh; /* the iteration whose accepted evaluation was this rank's last (0: none) */
    slot *pend;   /* the leader's drawn candidates, in sequence order */
    size_t n_pend, cap_pend;
    int *held;  /* the leader's count of candidates each rank holds */
    msg *queue; /* a follower's messages received, not yet done */
    size_t n_queue, cap_queue;
    bool looping; /* the start went well on every rank: the loop runs */
    double t0;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* FNV-1a over the gaps' bits: equal on two ranks when their states are. */
static uint64_t digest_of(const double *g, size_t n)
{
    const unsigned char *b = (const unsigned char *)g;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n * sizeof *g; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static msg msg_of(int type, size_t seq, uint64_t version, const xp_candidate *c)
{
    msg m = {.type = (uint32_t)type, .seq = seq, .version = version};
    if (c) {
        m.layer = c->layer, m.proj = c->proj, m.kind = c->kind, m.bit = c->bit;
        m.index = c->index;
    }
    return m;
}

static xp_candidate cand_of(const msg *m)
{
    return (xp_candidate){m->layer, m->proj, m->kind, m->bit, m->index};
}

static void send_to(xp_search_team *t, int rank, int tag, const msg *m)
{
    MPI_Send(m, sizeof *m, MPI_BYTE, rank, tag, t->comm);
}

/* Waits for a message (src may be MPI_ANY_SOURCE), sleeping between looks: MPI's own
 * blocking calls spin, and would take the cores from the ranks that compute. */
static void await(xp_search_team *t, int src, int tag, MPI_Status *st)
{
    long ns = 1000;
    for (int flag = 0;;) {
        MPI_Iprobe(src, tag, t->comm, &flag, st);
        if (flag)
            return;
        nanosleep(&(struct timespec){0, ns}, NULL);
        ns = ns < 1000000 ? 2 * ns : ns;
    }
}

static void receive(xp_search_team *t, int src, int tag, msg *m, int *from)
{
    MPI_Status st;
    await(t, src, tag, &st);
    MPI_Recv(m, sizeof *m, MPI_BYTE, st.MPI_SOURCE, tag, t->comm, MPI_STATUS_IGNORE);
    *from = st.MPI_SOURCE;
}

/* Every rank learns whether the step each has just done (rc) went well everywhere. A
 * rank that failed keeps its error; the others take the first failing rank's. */
static int agree(xp_search_team *t, int rc, xp_err *err)
{
    int mine = rc, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, t->comm); /* errors are negative */
    if (!worst)
        return XP_OK;
    char text[TEXT_MAX] = "";
    if (rc)
        snprintf(text, sizeof text, "%.500s", err ? err->msg : "failed");
    char *texts = malloc((size_t)t->size * TEXT_MAX);
    int *codes = malloc((size_t)t->size * sizeof *codes);
    if (!texts || !codes) {
        free(texts), free(codes);
        MPI_Abort(t->comm, 3); /* the others wait in the gathers below */
    }
    MPI_Allgather(text, TEXT_MAX, MPI_CHAR, texts, TEXT_MAX, MPI_CHAR, t->comm);
    MPI_Allgather(&mine, 1, MPI_INT, codes, 1, MPI_INT, t->comm);
    int k = 0;
    while (!codes[k])
        k++;
    if (!rc)
        rc = xp_err_set(err, codes[k], "rank %d of %d: %.500s", k, t->size,
                        texts + (size_t)k * TEXT_MAX);
    free(texts), free(codes);
    t->failed_together = true;
    return rc;
}

/* ---- the start ---- */

bool search_team_follows(const xp_search_opts *o) { return o->team && o->team->rank > 0; }

typedef struct start_msg {
    char fingerprint[72];
    uint64_t base, cur, n_kept;
    double best;
    /* the validation's state, as a resumed leader restored it */
    double val_best;
    uint64_t val_best_flips, val_rejected;
} start_msg;

/* A follower: the leader's kept flips applied, every probe measured from the lowest
 * layer they touch (as resume_from does). */
static int apply_kept(run *r, const msg *kept, size_t n, xp_err *err)
{
    uint32_t n_layer = xp_model_shape(r->m)->n_layer, lowest = n_layer;
    for (size_t i = 0; i < n; i++) {
        xp_candidate c = cand_of(&kept[i]);
        if (c.layer >= n_layer || c.proj >= XP_N_PROJ)
            return xp_err_set(err, XP_EINVAL, "rank 0 sent a flip of layer %u", c.layer);
        if (search_keep(r, &c))
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        xp_candidate_flip(r->m, &c);
        lowest = c.layer < lowest ? c.layer : lowest;
    }
    if (!n)
        return XP_OK;
    xp_tree_change from = {lowest, XP_CHANGE_LAYER, 0};
    int rc = xp_gauge_run(&r->gauge, NULL, 0, &from, r->cur, err);
    if (!rc)
        xp_gauge_commit(&r->gauge);
    return rc;
}

int search_team_start(run *r, int rc, xp_search_result *out, xp_err *err)
{
    xp_search_team *t = r->o->team;
    t->version = t->fresh = t->n_pend = t->n_queue = 0;
    t->looping = t->failed_together = false;
    size_t cap = 2 * (size_t)t->size + 2;
    if (!rc && t->cap_pend < cap) {
        free(t->pend), free(t->held);
        t->pend = calloc(cap, sizeof *t->pend);
        t->held = calloc((size_t)t->size, sizeof *t->held);
        t->cap_pend = t->pend && t->held ? cap : 0;
        if (!t->cap_pend)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    if (t->held)
        memset(t->held, 0, (size_t)t->size * sizeof *t->held);
    if ((rc = agree(t, rc, err)))
        return rc;
    start_msg s = {.base = digest_of(r->base, r->n),
                   .cur = digest_of(r->cur, r->n),
                   .n_kept = r->n_kept,
                   .best = r->best,
                   .val_best = r->val_best,
                   .val_best_flips = r->val_best_flips,
                   .val_rejected = r->val_rejected};
    snprintf(s.fingerprint, sizeof s.fingerprint, "%s", r->fingerprint);
    start_msg lead = s;
    MPI_Bcast(&lead, sizeof lead, MPI_BYTE, 0, t->comm);
    msg *kept = calloc(lead.n_kept + 1, sizeof *kept);
    if (!kept)
        MPI_Abort(t->comm, 3); /* the others wait in the broadcasts below */
    for (size_t i = 0; i < r->n_kept && t->rank == 0; i++)
        kept[i] = msg_of(MSG_COMMIT, 0, 0, &r->kept[i]);
    MPI_Bcast(kept, (int)(lead.n_kept * sizeof *kept), MPI_BYTE, 0, t->comm);
    MPI_Bcast(r->solved, (int)(r->nt * sizeof *r->solved), MPI_BYTE, 0, t->comm);
    if (t->rank > 0) {
        if (strcmp(s.fingerprint, lead.fingerprint))
            rc = xp_err_set(err, XP_EINVAL,
                            "its settings or probes are not rank 0's (run %.12s..., rank 0's "
                            "%.12s...): every rank must run the same command on the same files",
                            s.fingerprint, lead.fingerprint);
        else if (s.base != lead.base)
            rc = xp_err_set(err, XP_EINVAL,
                            "it measures other baseline gaps than rank 0: its model file or "
                            "its build is not rank 0's");
        else if (!(rc = apply_kept(r, kept, lead.n_kept, err)) &&
                 digest_of(r->cur, r->n) != lead.cur)
            rc = xp_err_set(err, XP_EINVAL,
                            "rank 0's %zu resumed flips measure other gaps here than there",
                            (size_t)lead.n_kept);
        r->best = lead.best;
        if (r->nv)
            r->val_now = xp_fitness_value(&r->vfit, r->cur + r->nt + r->nc);
        r->val_best = lead.val_best;
        r->val_best_flips = (size_t)lead.val_best_flips;
        r->val_rejected = (size_t)lead.val_rejected;
    }
    free(kept);
    if ((rc = agree(t, rc, err)))
        return rc;
    t->digest = lead.cur;
    t->looping = true;
    t->t0 = now();
    t->stats.searches++;
    return XP_OK;
}

/* ---- what every rank does to a candidate ---- */

/* Evaluates c on the state as it is and leaves the model so: its result as a message. */
static int evaluate(xp_search_team *t, run *r, const xp_candidate *c, size_t seq, msg *res,
                    xp_err *err)
{
    double t0 = now();
    xp_search_iter it = {.fitness = NAN, .change = NAN, .validation = NAN};
    long focal = search_focal(r);
    t->fresh = 0;
    int rc = search_evaluate(r, c, focal, &it, err);
    if (rc)
        return rc;
    if (it.accepted) { /* kept only if the leader takes it: until then, not */
        xp_candidate_flip(r->m, c);
        t->fresh = seq;
    }
    *res = msg_of(MSG_RESULT, seq, t->version, c);
    res->flags = (it.accepted ? F_ACCEPTED : 0) | (it.screened ? F_SCREENED : 0) |
                 (it.control_changed ? F_CONTROL : 0) | (it.validation_rejected ? F_VALIDATION : 0);
    res->fitness = it.fitness;
    res->change = it.change;
    res->validation = it.validation;
    res->seconds = now() - t0;
    res->probes = it.probes_run;
    res->digest = t->digest;
    return XP_OK;
}

/* Applies the flip the leader kept at iteration seq with fitness: measured again on
 * every probe unless this rank's last evaluation was that very flip, and checked to give
 * the same fitness here. */
static int adopt(xp_search_team *t, run *r, const xp_candidate *c, size_t seq, double fitness,
                 xp_err *err)
{
    long focal = search_focal(r);
    bool fresh = t->fresh == seq;
    t->fresh = 0;
    xp_candidate_flip(r->m, c);
    if (fresh)
        return search_commit(r, c, focal, fitness, NULL, err);
    xp_tree_change change = xp_candidate_change(r->m, c);
    int rc = xp_gauge_run(&r->gauge, NULL, 0, &change, r->g, err);
    double here = focal >= 0 ? r->g[focal] : xp_fitness_value(&r->fit, r->g);
    if (!rc && memcmp(&here, &fitness, sizeof here))
        rc = xp_err_set(err, XP_EINVAL,
                        "the flip kept at iteration %zu measures a fitness of %.17g here and "
                        "%.17g where it was evaluated: the ranks' models or builds differ",
                        seq, here, fitness);
    if (rc) {
        xp_candidate_flip(r->m, c);
        return rc;
    }
    return search_commit(r, c, focal, fitness, NULL, err);
}

/* ---- the leader ---- */

/* Draws the next candidate of the sequence into a new slot (*drawn false when the run's
 * iterations or the proposer are used up). Gradient proposals are ranked (again) first
 * when a lone search's step would: the state is the one every slot is measured on. */
static int draw(xp_search_team *t, run *r, bool *drawn, xp_err *err)
{
    size_t seq = r->iter + t->n_pend + 1;
    xp_candidate c;
    *drawn = false;
    if (seq > r->o->iterations || t->n_pend == t->cap_pend)
        return XP_OK;
    /* a ranking changes only after a kept flip, which gives every drawn slot back: one
     * made while slots are out would leave them from the old ranking */
    if (r->grad && t->n_pend && (r->prop.stale || r->prop.ranked_focal != search_focal(r)))
        return xp_err_set(err, XP_EINVAL,
                          "the gradient would rank again with %zu candidates "
                          "drawn from its old ranking",
                          t->n_pend);
    int rc = r->grad ? xp_gradient_refresh(r->grad, &r->prop, &r->fit, r->cur, search_focal(r), err)
                     : XP_OK;
    if (rc || !xp_proposer_next(&r->prop, &c))
        return rc;
    t->pend[t->n_pend++] = (slot){c, r->prop.estimate, seq, -1, false, {0}};
    *drawn = true;
    return XP_OK;
}

/* A rank that can take a candidate (followers first), or -1. */
static int free_rank(const xp_search_team *t)
{
    for (int k = 1; k <= t->size; k++) {
        int w = k % t->size;
        if (t->held[w] < (w ? FOLLOWER_DEPTH : 1))
            return w;
    }
    return -1;
}

/* Every free rank gets the next candidate nobody evaluates, drawn when none is left. */
static int hand_out(xp_search_team *t, run *r, xp_err *err)
{
    for (int w; (w = free_rank(t)) >= 0;) {
        slot *s = NULL;
        for (size_t i = 0; i < t->n_pend && !s; i++)
            if (t->pend[i].owner < 0)
                s = &t->pend[i];
        bool drawn = false;
        int rc = s ? XP_OK : draw(t, r, &drawn, err);
        if (rc || (!s && !drawn))
            return rc;
        s = s ? s : &t->pend[t->n_pend - 1];
        s->owner = w;
        t->held[w]++;
        if (w) {
            msg m = msg_of(MSG_EVAL, s->seq, t->version, &s->c);
            send_to(t, w, TAG_WORK, &m);
        }
    }
    return XP_OK;
}

/* The text of rank w's error message (its TAG_TEXT part). */
static void receive_text(xp_search_team *t, int w, char *text, size_t size)
{
    MPI_Status st;
    int n;
    MPI_Probe(w, TAG_TEXT, t->comm, &st);
    MPI_Get_count(&st, MPI_CHAR, &n);
    char *buf = malloc((size_t)n + 1);
    MPI_Recv(buf, n, MPI_CHAR, w, TAG_TEXT, t->comm, MPI_STATUS_IGNORE);
    if (buf) {
        buf[n] = 0;
        snprintf(text, size, "%s", buf);
    }
    free(buf);
}

/* One reply from any follower, taken in. */
static int take_reply(xp_search_team *t, xp_err *err)
{
    msg m;
    int w;
    receive(t, MPI_ANY_SOURCE, TAG_REPLY, &m, &w);
    if (m.type == MSG_STALE || m.type == MSG_RESULT || (m.flags & F_FOR_EVAL))
        t->held[w]--;
    if (m.type == MSG_ERROR) {
        char text[TEXT_MAX] = "?";
        receive_text(t, w, text, sizeof text);
        return xp_err_set(err, -(int)m.probes, "rank %d of %d: %s", w, t->size, text);
    }
    if (m.type != MSG_RESULT)
        return XP_OK;
    t->stats.evaluations++;
    if (m.version != t->version) { /* measured before a kept flip */
        t->stats.thrown_away++;
        return XP_OK;
    }
    if (m.digest != t->digest)
        return xp_err_set(err, XP_EINVAL,
                          "rank %d's gaps differ from rank 0's after the same kept flips: "
                          "the ranks' models or builds differ",
                          w);
    for (size_t i = 0; i < t->n_pend; i++)
        if (t->pend[i].seq == m.seq && t->pend[i].owner == w && !t->pend[i].done) {
            t->pend[i].res = m;
            t->pend[i].done = true;
            return XP_OK;
        }
    return xp_err_set(err, XP_EINVAL, "rank %d answered for iteration %zu, which it did not hold",
                      w, (size_t)m.seq);
}

/* The leader keeps the flip of slot s (taken off the sequence): every follower is told,
 * the candidates drawn after it go back to the proposer, and the leader applies it. */
static int commit_everywhere(xp_search_team *t, run *r, const slot *s, xp_err *err)
{
    msg m = msg_of(MSG_COMMIT, s->seq, t->version + 1, &s->c);
    m.fitness = s->res.fitness;
    for (int w = 1; w < t->size; w++)
        send_to(t, w, TAG_WORK, &m);
    int rc = XP_OK;
    for (size_t i = t->n_pend; i-- > 0;) {
        t->stats.thrown_away += t->pend[i].done;
        if (t->pend[i].owner == 0 && !t->pend[i].done)
            t->held[0]--; /* never started */
        int back = rc ? XP_OK : xp_proposer_unget(&r->prop, &t->pend[i].c);
        if (back == XP_ENOMEM)
            rc = xp_err_set(err, back, "out of memory");
        else if (back)
            rc = xp_err_set(err, back, "iteration %zu's candidate is not the proposer's",
                            t->pend[i].seq);
    }
    t->n_pend = 0;
    t->version++;
    t->stats.commits++;
    if (!rc)
        rc = adopt(t, r, &s->c, s->seq, s->res.fitness, err);
    t->digest = digest_of(r->cur, r->n);
    return rc;
}

int search_team_step(run *r, xp_search_result *out, bool *stop, xp_err *err)
{
    xp_search_team *t = r->o->team;
    if (r->o->fitness == XP_FITNESS_FOCUSED && search_focal(r) < 0) {
        *stop = true; /* every target solved */
        return XP_OK;
    }
    int rc = XP_OK;
    while (!rc && !(t->n_pend && t->pend[0].done)) {
        bool drawn = true;
        if (!t->n_pend && ((rc = draw(t, r, &drawn, err)) || !drawn)) {
            out->exhausted = *stop = !rc;
            return rc;
        }
        if ((rc = hand_out(t, r, err)))
            break;
        slot *own = NULL;
        for (size_t i = 0; i < t->n_pend && !own; i++)
            if (t->pend[i].owner == 0 && !t->pend[i].done)
                own = &t->pend[i];
        if (own) {
            if (!(rc = evaluate(t, r, &own->c, own->seq, &own->res, err))) {
                own->done = true;
                t->held[0]--;
                t->stats.evaluations++;
            }
        } else
            rc = take_reply(t, err);
    }
    if (rc)
        return rc;
    slot s = t->pend[0];
    memmove(t->pend, t->pend + 1, --t->n_pend * sizeof *t->pend);
    r->iter++;
    xp_search_iter it = {.iter = r->iter,
                         .cand = s.c,
                         .fitness = s.res.fitness,
                         .estimate = s.estimate,
                         .change = s.res.change,
                         .validation = s.res.validation,
                         .validation_now = r->nv ? r->val_now : NAN,
                         .accepted = s.res.flags & F_ACCEPTED,
                         .screened = s.res.flags & F_SCREENED,
                         .control_changed = s.res.flags & F_CONTROL,
                         .validation_rejected = s.res.flags & F_VALIDATION,
                         .probes_run = s.res.probes,
                         .seconds = s.res.seconds};
    if (it.accepted) {
        if ((rc = commit_everywhere(t, r, &s, err)))
            return rc;
        it.effect = &r->effect;
        it.moved = r->effect.moved;
        memcpy(it.crossed, r->effect.crossed, sizeof it.crossed);
        if (r->nv)
            it.validation_now = r->val_now;
    }
    search_record(r, &it, out);
    return XP_OK;
}

/* ---- a follower ---- */

/* Tells the leader of this rank's error (for_eval: in place of a result). */
static void send_error(xp_search_team *t, int rc, const xp_err *err, size_t seq, bool for_eval)
{
    msg m = msg_of(MSG_ERROR, seq, t->version, NULL);
    m.flags = for_eval ? F_FOR_EVAL : 0;
    m.probes = (uint64_t)-rc;
    send_to(t, 0, TAG_REPLY, &m);
    const char *text = err ? err->msg : "failed";
    MPI_Send(text, (int)strlen(text), MPI_CHAR, 0, TAG_TEXT, t->comm);
}

/* Whether a message after the queue's first changes the state or ends the loop. */
static bool change_queued(const xp_search_team *t)
{
    for (size_t i = 1; i < t->n_queue; i++)
        if (t->queue[i].type != MSG_EVAL)
            return true;
    return false;
}

int search_team_follow(run *r, xp_err *err)
{
    xp_search_team *t = r->o->team;
    int rc = XP_OK;
    for (;;) {
        MPI_Status st;
        int flag = 0;
        do { /* every message already here, so a queued change makes evaluations stale */
            if (t->n_queue == t->cap_queue) {
                size_t cap = t->cap_queue ? 2 * t->cap_queue : 16;
                msg *q = realloc(t->queue, cap * sizeof *q);
                if (!q)
                    MPI_Abort(t->comm, 3); /* the leader would wait for its reply */
                t->queue = q, t->cap_queue = cap;
            }
            MPI_Iprobe(0, TAG_WORK, t->comm, &flag, &st);
            if (flag || !t->n_queue) {
                int from;
                receive(t, 0, TAG_WORK, &t->queue[t->n_queue++], &from);
            }
        } while (flag);
        msg m = t->queue[0];
        bool stale = m.version != t->version || change_queued(t);
        memmove(t->queue, t->queue + 1, --t->n_queue * sizeof *t->queue);
        if (m.type == MSG_END)
            return rc;
        xp_candidate c = cand_of(&m);
        if (m.type == MSG_EVAL && (rc || stale)) {
            msg s = msg_of(MSG_STALE, m.seq, m.version, NULL);
            send_to(t, 0, TAG_REPLY, &s);
        } else if (m.type == MSG_EVAL) {
            msg res;
            if ((rc = evaluate(t, r, &c, m.seq, &res, err)))
                send_error(t, rc, err, m.seq, true);
            else
                send_to(t, 0, TAG_REPLY, &res);
        } else if (m.type == MSG_COMMIT && !rc) {
            t->version = m.version;
            if ((rc = adopt(t, r, &c, m.seq, m.fitness, err)))
                send_error(t, rc, err, m.seq, false);
            t->digest = digest_of(r->cur, r->n);
        }
    }
}

/* ---- the end ---- */

typedef struct end_msg {
    uint64_t iter, accepted, screened_out, val_rejected, window_len;
    double best;
    uint8_t auto_stopped, exhausted, pad[6];
} end_msg;

int search_team_finish(run *r, int rc, xp_search_result *out, xp_err *err)
{
    xp_search_team *t = r->o->team;
    if (!t->looping)
        return rc; /* the start failed, and every rank knows */
    if (t->rank == 0) {
        msg end = msg_of(MSG_END, 0, t->version, NULL);
        for (int w = 1; w < t->size; w++)
            send_to(t, w, TAG_WORK, &end);
        /* every reply still to come, so none is left for the next search */
        for (int w = 1; w < t->size; w++)
            while (t->held[w] > 0) {
                xp_err e2 = {0};
                int rc2 = take_reply(t, &e2);
                if (rc2 && !rc)
                    rc = xp_err_set(err, rc2, "%s", e2.msg);
            }
    }
    t->looping = false;
    t->stats.seconds += now() - t->t0;
    if ((rc = agree(t, rc, err)))
        return rc;
    end_msg e = {r->iter,           r->accepted,       r->screened_out,
                 r->val_rejected,   strlen(r->window), r->best,
                 out->auto_stopped, out->exhausted,    {0}};
    MPI_Bcast(&e, sizeof e, MPI_BYTE, 0, t->comm);
    if (e.window_len > r->o->stop_window)
        MPI_Abort(t->comm, 3); /* every rank has the window's room */
    MPI_Bcast(r->window, (int)e.window_len + 1, MPI_CHAR, 0, t->comm);
    r->iter = e.iter, r->accepted = e.accepted, r->screened_out = e.screened_out;
    r->val_rejected = e.val_rejected;
    r->best = e.best;
    out->auto_stopped = e.auto_stopped, out->exhausted = e.exhausted;
    if (t->rank == 0)
        t->stats.iterations += r->iter - out->resumed_at;
    return XP_OK;
}

/* ---- the team ---- */

bool xp_search_team_built(void) { return true; }

int xp_search_team_open(xp_search_team **out, xp_err *err)
{
    int started = 0, level;
    MPI_Initialized(&started);
    /* MPI is called from the main thread only; the OpenMP threads compute */
    if (!started && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &level) != MPI_SUCCESS)
        return xp_err_set(err, XP_EIO, "MPI could not start");
    xp_search_team *t = calloc(1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    MPI_Comm_dup(MPI_COMM_WORLD, &t->comm);
    MPI_Comm_rank(t->comm, &t->rank);
    MPI_Comm_size(t->comm, &t->size);
    *out = t;
    return XP_OK;
}

int xp_search_team_rank(const xp_search_team *t) { return t->rank; }
int xp_search_team_size(const xp_search_team *t) { return t->size; }

void xp_search_team_stats_get(const xp_search_team *t, xp_search_team_stats *s) { *s = t->stats; }

bool xp_search_team_failed_together(const xp_search_team *t) { return t->failed_together; }

void xp_search_team_close(xp_search_team *t, int exit_code)
{
    if (!t)
        return;
    if (exit_code && !t->failed_together)
        MPI_Abort(t->comm, exit_code);
    MPI_Request req;
    MPI_Ibarrier(t->comm, &req); /* a sleeping wait for the others: MPI_Finalize spins */
    for (int done = 0; !done;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    MPI_Comm_free(&t->comm);
    free(t->pend), free(t->held), free(t->queue);
    free(t);
    MPI_Finalize();
}

#else /* built without MPI: no team can be made, so no search names one */

bool xp_search_team_built(void) { return false; }

int xp_search_team_open(xp_search_team **t, xp_err *err)
{
    *t = NULL;
    return xp_err_set(err, XP_EINVAL,
                      "this xorpatch was built without MPI: install Open MPI (Debian: apt-get "
                      "install libopenmpi-dev openmpi-bin), run make, and start "
                      "build/xorpatch-mpi under mpirun");
}

int xp_search_team_rank(const xp_search_team *t) { return 0; }
int xp_search_team_size(const xp_search_team *t) { return 1; }
void xp_search_team_stats_get(const xp_search_team *t, xp_search_team_stats *s)
{
    memset(s, 0, sizeof *s);
}
bool xp_search_team_failed_together(const xp_search_team *t) { return false; }
void xp_search_team_close(xp_search_team *t, int exit_code) {}
bool search_team_follows(const xp_search_opts *o) { return false; }
int search_team_start(run *r, int rc, xp_search_result *out, xp_err *err) { return rc; }
int search_team_step(run *r, xp_search_result *out, bool *stop, xp_err *err) { return XP_EINVAL; }
int search_team_follow(run *r, xp_err *err) { return XP_EINVAL; }
int search_team_finish(run *r, int rc, xp_search_result *out, xp_err *err) { return rc; }
#endif
