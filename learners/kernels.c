/* Fused element-wise passes of the fast path (learners/fastpath.py), float32, one CPU thread.

   Each function does in one pass over memory what took the torch path three to seven kernels;
   on the small bases this project trains on CPU those passes stream through L3, so the number of
   passes is what costs. Built on first use by learners/kernels.py (cc -O3 -march=native) and called
   through ctypes, which releases the GIL. No libm, no OpenMP: plain loops the compiler vectorizes.

   NaN and inf propagate as in the torch ops they replace (a diverging learner must still read as
   failed). */

#include <stdint.h>

/* exp(x), vectorizable: Cephes' range reduction and degree-6 polynomial on [-87.3, 88]; 0 below,
   inf above (expf overflows at 88.7; callers take sigmoids, for which the two agree), NaN for NaN.
   Conditionals are selects (-fno-trapping-math lets the compiler vectorize them). */
static inline float exp_f(float x) {
    const float hi = 88.0f, lo = -87.3365478515625f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    float fl = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fl * 0.693359375f;
    r = r + fl * 2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500E-4f;
    y = y * r + 1.3981999507E-3f;
    y = y * r + 8.3334519073E-3f;
    y = y * r + 4.1665795894E-2f;
    y = y * r + 1.6666665459E-1f;
    y = y * r + 5.0000001201E-1f;
    y = y * z + r + 1.0f;
    int32_t bits = ((int32_t)fl + 127) << 23;
    float p;
    __builtin_memcpy(&p, &bits, 4);
    float out = y * p;
    out = x > hi ? __builtin_inff() : out;
    out = x < lo ? 0.0f : out;
    return x != x ? x : out;
}

/* SwiGLU forward epilogue over n elements: sig = sigmoid(g); g <- silu(g) = g*sig; y = g*u. */
void swiglu_fwd(float *restrict g, const float *restrict u, float *restrict sig,
                float *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float sg = 1.0f / (1.0f + exp_f(-gi));
        float s = gi * sg;
        sig[i] = sg;
        g[i] = s;
        y[i] = s * u[i];
    }
}

/* SwiGLU backward, from s = silu(g), sig = sigmoid(g), u and dy = d(s*u):
   du = s*dy;  dy <- dg = dy*u * dsilu/dg = dy*u * (sig + s*(1 - sig)). */
void swiglu_bwd(float *restrict dy, const float *restrict s, const float *restrict sig,
                const float *restrict u, float *restrict du, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float d = dy[i], si = s[i], sg = sig[i];
        du[i] = si * d;
        dy[i] = d * u[i] * (sg + si - si * sg);
    }
}

/* RMSNorm forward over rows of width h: r[m] = 1/sqrt(mean(x[m]^2) + eps); y[m] = x[m]*r[m]*w.
   x rows `xs` floats apart, y contiguous. */
void rmsnorm_fwd(const float *restrict x, int64_t xs, const float *restrict w, float *restrict y,
                 float *restrict r, int64_t rows, int64_t h, float eps) {
    for (int64_t m = 0; m < rows; m++) {
        const float *xr = x + m * xs;
        float *yr = y + m * h;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < h; j++) ss += xr[j] * xr[j];
        float rm = 1.0f / __builtin_sqrtf(ss / (float)h + eps);
        r[m] = rm;
        for (int64_t j = 0; j < h; j++) yr[j] = xr[j] * rm * w[j];
    }
}

/* RMSNorm backward: g = dy*w; dx = g*r - x * (g.x) * r^3 / h. dy, dx contiguous. */
void rmsnorm_bwd(const float *restrict x, int64_t xs, const float *restrict w,
                 const float *restrict r, const float *restrict dy, float *restrict dx,
                 int64_t rows, int64_t h) {
    for (int64_t m = 0; m < rows; m++) {
        const float *xr = x + m * xs, *dr = dy + m * h;
        float *o = dx + m * h;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < h; j++) dot += dr[j] * w[j] * xr[j];
        float rm = r[m], c = dot * rm * rm * rm / (float)h;
        for (int64_t j = 0; j < h; j++) o[j] = dr[j] * w[j] * rm - xr[j] * c;
    }
}

/* RoPE (transformers' half-split layout) of x [n, t, heads, d] into out, any strides but the
   last (1): out[..., :d/2] = x1*cos - x2*sin, out[..., d/2:] = x2*cos + x1*sin, with cos/sin
   [t, d/2] contiguous. sign = -1 rotates back (the backward). Strides in floats, per axis. */
void rope(const float *restrict x, int64_t xn, int64_t xt, int64_t xh,
          float *restrict out, int64_t on, int64_t ot, int64_t oh,
          const float *restrict cos, const float *restrict sin, float sign,
          int64_t n, int64_t t, int64_t heads, int64_t d) {
    int64_t half = d / 2;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < t; b++) {
            const float *c = cos + b * half, *s = sin + b * half;
            for (int64_t k = 0; k < heads; k++) {
                const float *x1 = x + a * xn + b * xt + k * xh, *x2 = x1 + half;
                float *o1 = out + a * on + b * ot + k * oh, *o2 = o1 + half;
                for (int64_t j = 0; j < half; j++) {
                    float sj = sign * s[j];
                    o1[j] = x1[j] * c[j] - x2[j] * sj;
                    o2[j] = x2[j] * c[j] + x1[j] * sj;
                }
            }
        }
}
