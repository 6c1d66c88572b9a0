/* The schedule of a run, a function of its options and the step number alone, so a
 * resumed run continues exactly where it stopped: each step's learning rate (linear
 * warm-up, then cosine decay), the documents of each step's batch (the focus task's
 * first), and a hash of the options they depend on, which checkpoints carry. */
#include "train/train.h"

#include <math.h>
#include <string.h>

#include "core/strmap.h"

/* splitmix64's finaliser: every draw of the trainer is this mixer of a counter, so it
 * depends on the seed and the counter alone. */
uint64_t xpt_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float xpt_lr_at(const xp_train_opts *o, uint32_t step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    double span = o->steps > o->warmup ? (double)(o->steps - o->warmup) : 1;
    double f = (double)(step - o->warmup) / span;
    if (f > 1)
        f = 1;
    return (float)(o->lr_min + (o->lr - o->lr_min) * 0.5 * (1 + cos(3.141592653589793 * f)));
}

/* Document j of step s's batch: a function of the seed and the step only, so a resumed
 * run draws the same batches as one that never stopped. */
size_t xpt_batch_doc(const xp_trainer *t, uint32_t step, uint32_t j)
{
    uint64_t h = xpt_mix64(t->o.seed ^ xpt_mix64(((uint64_t)step << 20) ^ j ^ 0x62617463680000ull));
    if (step < t->o.focus_steps)
        return t->focus[h % t->n_focus];
    return (size_t)(h % t->n_docs);
}

/* A hash of every option the batches and learning rates of later steps depend on
 * besides the seed, so a run resumed with other options is refused rather than left to
 * continue a schedule it did not start. */
uint64_t xpt_schedule_hash(const xp_train_opts *o)
{
    const uint32_t u[] = {o->steps, o->batch, o->warmup, o->focus_steps};
    const float f[] = {o->lr, o->lr_min, o->weight_decay, o->clip, o->beta1, o->beta2};
    uint8_t buf[sizeof u + sizeof f];
    memcpy(buf, u, sizeof u);
    memcpy(buf + sizeof u, f, sizeof f);
    uint64_t h = xp_hash_bytes(buf, sizeof buf);
    const char *task = o->focus_steps && o->focus_task ? o->focus_task : "";
    return h ^ xpt_mix64(xp_hash_bytes(task, strlen(task)));
}
