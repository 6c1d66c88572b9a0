/* The matrix products of the trainer's forward and backward passes. Every output is a
 * sum in index order from 0, as the engine's plain matvec sums a row, and threads only
 * split independent outputs, so the products give the same bits on any number of
 * threads and any instruction set. */
#include "train/train.h"

#include <string.h>

/* Cloned per instruction set like the engine's attention: lanes are independent and each
 * does multiply-then-add, so every clone gives the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

CLONES void xpt_axpy(float *restrict y, float a, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* y_i += a_i * x for four rows at once: x is read once for the four, and each y_i gets
 * exactly the multiply-then-add it would get alone. */
static CLONES void axpy4(float *restrict y0, float *restrict y1, float *restrict y2,
                         float *restrict y3, float a0, float a1, float a2, float a3,
                         const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        y0[i] += a0 * x[i];
        y1[i] += a1 * x[i];
        y2[i] += a2 * x[i];
        y3[i] += a3 * x[i];
    }
}

/* Tokens go four at a time so each weight row is read once per four tokens (the weights
 * do not fit in L1; the four outputs do). */
enum { TOK_TILE = 4 };

/* out[t] (+)= sum over i, in index order from 0, of in[t][i] m[i] for T tokens: in is
 * [T][n_in], m [n_in][n_out], out [T][n_out], cleared first when `clear`. */
static void rows_accumulate(float *out, const float *in, const float *m, size_t T, size_t n_in,
                            size_t n_out, bool clear)
{
    size_t tiles = (T + TOK_TILE - 1) / TOK_TILE;
#pragma omp parallel for schedule(static)
    for (size_t tile = 0; tile < tiles; tile++) {
        size_t t0 = tile * TOK_TILE, nt = T - t0 < TOK_TILE ? T - t0 : TOK_TILE;
        if (clear)
            memset(out + t0 * n_out, 0, nt * n_out * sizeof *out);
        if (nt == TOK_TILE) {
            const float *i0 = in + t0 * n_in, *i1 = i0 + n_in, *i2 = i1 + n_in, *i3 = i2 + n_in;
            float *o0 = out + t0 * n_out;
            for (size_t i = 0; i < n_in; i++)
                axpy4(o0, o0 + n_out, o0 + 2 * n_out, o0 + 3 * n_out, i0[i], i1[i], i2[i],
                      i3[i], m + i * n_out, n_out);
        } else {
            for (size_t t = t0; t < T; t++)
                for (size_t i = 0; i < n_in; i++)
                    xpt_axpy(out + t * n_out, in[t * n_in + i], m + i * n_out, n_out);
        }
    }
}

/* Y[t] = W X[t] for T tokens, W given transposed (wt: [k][n]). Each output is summed
 * over k in index order from 0, exactly as the engine's plain matvec sums a row. */
void xpt_mm_fwd(float *y, const float *x, const float *wt, size_t T, size_t k, size_t n)
{
    rows_accumulate(y, x, wt, T, k, n, true);
}

/* dX[t] += W^T dY[t] (w: [n][k]), each sum over r in index order. */
void xpt_mm_bwd_x(float *dx, const float *dy, const float *w, size_t T, size_t k, size_t n)
{
    rows_accumulate(dx, dy, w, T, n, k, false);
}

/* y += a0 x0, then += a1 x1, += a2 x2, += a3 x3: the four updates of four separate
 * xpt_axpy calls, in their order, with y loaded and stored once. */
static CLONES void axpy_seq4(float *restrict y, float a0, float a1, float a2, float a3,
                             const float *restrict x0, const float *restrict x1,
                             const float *restrict x2, const float *restrict x3, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = y[i];
        v += a0 * x0[i];
        v += a1 * x1[i];
        v += a2 * x2[i];
        v += a3 * x3[i];
        y[i] = v;
    }
}

/* dW[r] += sum over t (in order) of dY[t][r] X[t]. Rows go to threads in blocks, so a
 * token's inputs are read once per block of rows. */
enum { ROW_BLOCK = 8 };
void xpt_mm_bwd_w(float *dw, const float *dy, const float *x, size_t T, size_t k, size_t n)
{
    size_t blocks = (n + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        size_t r0 = b * ROW_BLOCK, r1 = r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n, t = 0;
        for (; t + 4 <= T; t += 4)
            for (size_t r = r0; r < r1; r++)
                axpy_seq4(dw + r * k, dy[t * n + r], dy[(t + 1) * n + r], dy[(t + 2) * n + r],
                          dy[(t + 3) * n + r], x + t * k, x + (t + 1) * k, x + (t + 2) * k,
                          x + (t + 3) * k, k);
        for (; t < T; t++)
            for (size_t r = r0; r < r1; r++)
                xpt_axpy(dw + r * k, dy[t * n + r], x + t * k, k);
    }
}
