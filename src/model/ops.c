/* Shared fp32 layer operations (see ops.h). Loops run in index order without reassociation
 * (the build forbids contraction and fast-math), so each result is fixed by its inputs. */
#include "model/ops.h"

#include <math.h>

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

void xp_attend(const float *q, const float *k, const float *v, size_t n, size_t stride,
               size_t head_dim, float scale, float *scores, float *out)
{
    float max = -INFINITY;
    for (size_t p = 0; p < n; p++) {
        scores[p] = xp_dot_f32(q, k + p * stride, head_dim) * scale;
        max = fmaxf(max, scores[p]);
    }
    float sum = 0;
    for (size_t p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    for (size_t i = 0; i < head_dim; i++)
        out[i] = 0;
    for (size_t p = 0; p < n; p++) {
        float w = scores[p] / sum;
        const float *vp = v + p * stride;
        for (size_t i = 0; i < head_dim; i++)
            out[i] += w * vp[i];
    }
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
