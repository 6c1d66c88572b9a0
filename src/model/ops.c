/* Shared fp32 layer operations (declared in xorpatch/model.h). Loops run in index order
 * without reassociation (the build forbids contraction and fast-math), so each result is
 * fixed by its inputs. */
#include "xorpatch/model.h"

#include <math.h>
#include <string.h>

void xp_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    float ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

void xp_rope_angles(int64_t pos, size_t half, float base, float *cos_out, float *sin_out)
{
    for (size_t i = 0; i < half; i++) {
        double theta = (double)pos * pow((double)base, -(double)(2 * i) / (double)(2 * half));
        cos_out[i] = (float)cos(theta);
        sin_out[i] = (float)sin(theta);
    }
}

void xp_rope_apply(float *head, size_t half, const float *cos_v, const float *sin_v)
{
    for (size_t i = 0; i < half; i++) {
        float a = head[i], b = head[i + half];
        head[i] = a * cos_v[i] - b * sin_v[i];
        head[i + half] = a * sin_v[i] + b * cos_v[i];
    }
}

/* 16 floats as one value: GCC and clang lower it to whatever vectors the target has. */
typedef float f32x16 __attribute__((vector_size(64)));

/* o += w * v; the pointers never overlap, which lets the loop vectorise. */
static void axpy(float *restrict o, float w, const float *restrict v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        o[i] += w * v[i];
}

void xp_attend(const float *q, const float *k, const float *v, size_t n, size_t stride,
               size_t head_dim, float scale, float *scores, float *out)
{
    float max = -INFINITY;
    for (size_t p = 0; p < n; p++) {
        scores[p] = xp_dot_f32(q, k + p * stride, head_dim) * scale;
        max = scores[p] > max ? scores[p] : max;
    }
    float sum = 0;
    for (size_t p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    for (size_t i = 0; i < head_dim; i++)
        out[i] = 0;
    for (size_t p = 0; p < n; p++)
        axpy(out, scores[p] / sum, v + p * stride, head_dim);
}

/* Cloned per instruction set (chosen at load time): the lanes are independent and every
 * lane does the same multiply-then-add, so each clone computes the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void xp_attend_block(const float *const *q, const size_t *n, size_t nq, const float *k,
                     const float *v, size_t stride, size_t head_dim, float scale, float *scores,
                     float *const *out)
{
    enum { B = XP_ATTEND_BLOCK };
    size_t max_n = 0;
    for (size_t j = 0; j < nq; j++)
        max_n = n[j] > max_n ? n[j] : max_n;
    /* queries transposed, so one key element meets B queries in one vector step */
    float qt[B * 256];
    float *qtp = head_dim <= 256 ? qt : NULL;
    if (!qtp) { /* heads wider than the stack buffer take the one-query path */
        for (size_t j = 0; j < nq; j++)
            xp_attend(q[j], k, v, n[j], stride, head_dim, scale, scores, out[j]);
        return;
    }
    for (size_t i = 0; i < head_dim; i++)
        for (size_t j = 0; j < B; j++)
            qtp[i * B + j] = j < nq ? q[j][i] : 0.0f;
    /* one lane per query: each lane's sum runs in index order, mul then add; four
     * positions go side by side so four independent chains hide the add latency */
    size_t p = 0;
    for (; p + 4 <= max_n; p += 4) {
        const float *k0 = k + p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        f32x16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (size_t i = 0; i < head_dim; i++) {
            f32x16 qi;
            memcpy(&qi, qtp + i * B, sizeof qi);
            a0 += qi * k0[i];
            a1 += qi * k1[i];
            a2 += qi * k2[i];
            a3 += qi * k3[i];
        }
        for (size_t j = 0; j < nq; j++) {
            scores[j * max_n + p] = a0[j] * scale;
            scores[j * max_n + p + 1] = a1[j] * scale;
            scores[j * max_n + p + 2] = a2[j] * scale;
            scores[j * max_n + p + 3] = a3[j] * scale;
        }
    }
    for (; p < max_n; p++) {
        const float *kp = k + p * stride;
        f32x16 acc = {0};
        for (size_t i = 0; i < head_dim; i++) {
            f32x16 qi;
            memcpy(&qi, qtp + i * B, sizeof qi);
            acc += qi * kp[i];
        }
        for (size_t j = 0; j < nq; j++)
            scores[j * max_n + p] = acc[j] * scale;
    }
    float sum[B];
    for (size_t j = 0; j < nq; j++) {
        float *sc = scores + j * max_n, max = -INFINITY;
        for (size_t p = 0; p < n[j]; p++)
            max = sc[p] > max ? sc[p] : max;
        sum[j] = 0;
        for (size_t p = 0; p < n[j]; p++) {
            sc[p] = expf(sc[p] - max);
            sum[j] += sc[p];
        }
    }
    /* sums build in a local buffer: the outputs of one token's heads share cache lines
     * with other threads' heads, and a store per position there would bounce them */
    float acc[B * 256];
    memset(acc, 0, nq * head_dim * sizeof *acc);
    for (p = 0; p < max_n; p++) {
        const float *vp = v + p * stride;
        for (size_t j = 0; j < nq; j++) {
            if (p >= n[j])
                continue;
            axpy(acc + j * head_dim, scores[j * max_n + p] / sum[j], vp, head_dim);
        }
    }
    for (size_t j = 0; j < nq; j++)
        memcpy(out[j], acc + j * head_dim, head_dim * sizeof *acc);
}

void xp_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

float xp_dot_f32(const float *a, const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}
