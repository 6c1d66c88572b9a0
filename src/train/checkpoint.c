/* Training checkpoints: the weights, the optimiser's moments and the step, with the
 * shape, the trained vocabulary, the seed and the schedule's hash, so that resuming gives
 * the same bits as a run that never stopped and a checkpoint of another run is
 * refused. */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"

static const char ckpt_magic[8] = {'X', 'P', 'T', 'R', 'A', 'I', 'N', '2'};

typedef struct ckpt_head {
    char magic[8];
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, step, pad;
    uint64_t n_vocab, n_used, n_par, seed;
    uint64_t schedule; /* xpt_schedule_hash of the options */
} ckpt_head;

int xp_trainer_save(const xp_trainer *t, const char *path, xp_err *err)
{
    ckpt_head h = {{0}, t->s.n_layer, t->s.n_embd, t->s.n_ff, t->s.n_head, t->s.n_head_kv,
                   t->s.head_dim, t->step, 0, t->s.n_vocab, t->n_used, t->n_par, t->o.seed,
                   xpt_schedule_hash(&t->o)};
    memcpy(h.magic, ckpt_magic, 8);
    size_t len = sizeof h + t->n_used * sizeof(int32_t) + 3 * t->n_par * sizeof(float);
    uint8_t *buf = malloc(len);
    if (!buf)
        return xp_err_set(err, XP_ENOMEM, "train: out of memory for a checkpoint");
    uint8_t *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, t->used, t->n_used * sizeof(int32_t));
    p += t->n_used * sizeof(int32_t);
    const float *parts[] = {t->p, t->m, t->v};
    for (int i = 0; i < 3; i++, p += t->n_par * sizeof(float))
        memcpy(p, parts[i], t->n_par * sizeof(float));
    int rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int xp_trainer_load(xp_trainer *t, const char *path, xp_err *err)
{
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    ckpt_head h;
    size_t want = sizeof h + t->n_used * sizeof(int32_t) + 3 * t->n_par * sizeof(float);
    if (len < sizeof h || memcmp(buf, ckpt_magic, 8) != 0) {
        free(buf);
        return xp_err_set(err, XP_EFORMAT, "%s: not an xorpatch training checkpoint of this "
                          "version", path);
    }
    memcpy(&h, buf, sizeof h);
    if (h.n_layer != t->s.n_layer || h.n_embd != t->s.n_embd || h.n_ff != t->s.n_ff ||
        h.n_head != t->s.n_head || h.n_head_kv != t->s.n_head_kv ||
        h.head_dim != t->s.head_dim || h.n_vocab != t->s.n_vocab || h.n_used != t->n_used ||
        h.n_par != t->n_par || len != want ||
        memcmp(buf + sizeof h, t->used, t->n_used * sizeof(int32_t)) != 0) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint is of another shape or corpus "
                          "vocabulary (%u layers, n_embd %u, %llu trained rows)", path,
                          h.n_layer, h.n_embd, (unsigned long long)h.n_used);
    }
    if (h.seed != t->o.seed) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint was trained with seed %llu, not "
                          "%llu (its batches would not continue)", path,
                          (unsigned long long)h.seed, (unsigned long long)t->o.seed);
    }
    if (h.schedule != xpt_schedule_hash(&t->o)) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint was trained with other steps, "
                          "batch, learning-rate schedule or focus (resuming would mix two "
                          "schedules)", path);
    }
    const uint8_t *p = (const uint8_t *)buf + sizeof h + t->n_used * sizeof(int32_t);
    float *parts[] = {t->p, t->m, t->v};
    for (int i = 0; i < 3; i++, p += t->n_par * sizeof(float))
        memcpy(parts[i], p, t->n_par * sizeof(float));
    t->step = h.step;
    free(buf);
    return XP_OK;
}
