/* The fp32 operations of a Qwen3 layer that both forward paths share: RMSNorm, RoPE
 * (NeoX style: the halves of a head are rotated against each other), causal attention
 * of one query head over a sequence's cache, SwiGLU, and the sequential dot product of
 * the plain path. Each is written once so that the two paths differ only in how they
 * multiply by a weight matrix. */
#ifndef XP_OPS_H
#define XP_OPS_H
#include <stddef.h>
#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * w, n values (out may alias x). */
void xp_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);
/* cos and sin of the rotation angles of position pos: half = head_dim / 2 values each,
 * angle i = pos * base^(-2i / head_dim), computed in double. */
void xp_rope_angles(int64_t pos, size_t half, float base, float *cos_out, float *sin_out);
/* Rotates one head in place with the angles of its position. */
void xp_rope_apply(float *head, size_t half, const float *cos_v, const float *sin_v);
/* One query head q attends to positions 0..n-1 of a cache laid out with `stride` floats
 * between positions (keys k, values v, head_dim values each); out gets head_dim values;
 * scores is scratch for n floats. */
void xp_attend(const float *q, const float *k, const float *v, size_t n, size_t stride,
               size_t head_dim, float scale, float *scores, float *out);
/* Up to XP_ATTEND_BLOCK query heads that share one KV head and one cache, query j seeing
 * positions 0..n[j]-1, each with exactly xp_attend's arithmetic: the block only lets
 * them share every key and value read. scores is scratch for XP_ATTEND_BLOCK * max(n). */
#define XP_ATTEND_BLOCK 16
void xp_attend_block(const float *const *q, const size_t *n, size_t nq, const float *k,
                     const float *v, size_t stride, size_t head_dim, float scale, float *scores,
                     float *const *out);
/* out[i] = silu(gate[i]) * up[i]. */
void xp_swiglu(float *out, const float *gate, const float *up, size_t n);
/* Sum of a[i] * b[i] in index order, in fp32. */
float xp_dot_f32(const float *a, const float *b, size_t n);
#endif
