/* Q1_0 block operations: 128 weights in 18 bytes (fp16 scale d, then 16 bytes of sign
 * bits, LSB first; a set bit is +d). These are the only primitives a patch needs:
 * because a weight is one bit, flipping a row negates that row's dot product exactly,
 * and applying any flip twice restores the bytes. */
#include "xorpatch/gguf.h"

#include <math.h>
#include <string.h>

static uint16_t block_d(const uint8_t *block)
{
    return (uint16_t)(block[0] | (block[1] << 8));
}

float xp_q1_0_weight(const uint8_t *block, int j)
{
    float d = xp_fp16_to_f32(block_d(block));
    return (block[2 + j / 8] >> (j % 8)) & 1 ? d : -d;
}

void xp_q1_0_dequant_row(const uint8_t *row, int64_t ne0, float *out)
{
    for (int64_t b = 0; b < ne0 / XP_Q1_0_WEIGHTS; b++) {
        const uint8_t *block = row + b * XP_Q1_0_BYTES;
        float d = xp_fp16_to_f32(block_d(block));
        const float sign[2] = {-d, d}; /* indexed, not branched: the bits are random */
        for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
            out[b * XP_Q1_0_WEIGHTS + j] = sign[(block[2 + j / 8] >> (j % 8)) & 1];
    }
}

void xp_q1_0_flip_block(uint8_t *tensor, int64_t block)
{
    uint8_t *qs = tensor + block * XP_Q1_0_BYTES + 2;
    for (int i = 0; i < XP_Q1_0_QS; i++)
        qs[i] ^= 0xff;
}

void xp_q1_0_flip_row(uint8_t *tensor, int64_t ne0, int64_t row)
{
    int64_t per_row = ne0 / XP_Q1_0_WEIGHTS;
    for (int64_t b = 0; b < per_row; b++)
        xp_q1_0_flip_block(tensor, row * per_row + b);
}

void xp_q1_0_flip_scale_bit(uint8_t *tensor, int64_t block, int bit)
{
    tensor[block * XP_Q1_0_BYTES + bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

float xp_q1_0_block_scale(const uint8_t *tensor, int64_t block)
{
    return fabsf(xp_fp16_to_f32(block_d(tensor + block * XP_Q1_0_BYTES)));
}

float xp_q1_0_row_mean_scale(const uint8_t *tensor, int64_t ne0, int64_t row)
{
    int64_t per_row = ne0 / XP_Q1_0_WEIGHTS;
    double sum = 0;
    for (int64_t b = 0; b < per_row; b++)
        sum += xp_q1_0_block_scale(tensor, row * per_row + b);
    return per_row ? (float)(sum / (double)per_row) : 0.0f;
}
