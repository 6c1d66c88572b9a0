/* The Q1_0 quantiser of the latent weights, as the exported file stores them: each
 * 128-weight block becomes its sign bits and an fp16 scale = mean |w|. It gives each
 * step's forward weights (dequantised, and every matrix transposed for the forward
 * product) and the bytes of the exported tensors. */
#include "train/train.h"

#include <math.h>
#include <string.h>

/* The Q1_0 quantiser of one 128-weight block: scale = fp16(mean |w|), sign bit set for
 * w >= 0. Writes the dequantised weights (what the engine reads) and, when asked, the
 * 18 stored bytes. */
static void quantise_block(const float *w, float *deq, uint8_t *bytes)
{
    float sum = 0;
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
        sum += fabsf(w[j]);
    uint16_t h = xp_f32_to_fp16(sum / XP_Q1_0_WEIGHTS);
    float d = xp_fp16_to_f32(h);
    if (bytes) {
        bytes[0] = (uint8_t)h;
        bytes[1] = (uint8_t)(h >> 8);
        memset(bytes + 2, 0, XP_Q1_0_QS);
    }
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++) {
        bool pos = w[j] >= 0;
        if (deq)
            deq[j] = pos ? d : -d;
        if (bytes && pos)
            bytes[2 + j / 8] |= (uint8_t)(1u << (j % 8));
    }
}

/* The forward weights of this step: quantised (or the latent ones), plus every matrix
 * transposed so the forward product runs along contiguous output rows. */
void xpt_prepare_weights(xp_trainer *t)
{
    for (size_t i = 0; i < t->n_tens; i++) {
        const xpt_tensor *x = &t->tens[i];
        const float *src = t->p + x->off;
        float *dst = t->w + x->off;
        if (x->quantised && t->o.quantise) {
            int64_t nb = (int64_t)(x->n / XP_Q1_0_WEIGHTS);
#pragma omp parallel for schedule(static)
            for (int64_t b = 0; b < nb; b++)
                quantise_block(src + b * XP_Q1_0_WEIGHTS, dst + b * XP_Q1_0_WEIGHTS, NULL);
        } else {
            memcpy(dst, src, x->n * sizeof *dst);
        }
        if (x->quantised) {
            float *tr = t->wt + x->off;
            int64_t rows = x->ne1, cols = x->ne0;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < cols; c++)
                for (int64_t r = 0; r < rows; r++)
                    tr[c * rows + r] = dst[r * cols + c];
        }
    }
}

/* Q1_0 bytes of a latent matrix (rows of ne0 weights). */
void xpt_quantise_tensor(const float *w, size_t n, uint8_t *out)
{
    int64_t nb = (int64_t)(n / XP_Q1_0_WEIGHTS);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++)
        quantise_block(w + b * XP_Q1_0_WEIGHTS, NULL, out + b * XP_Q1_0_BYTES);
}
