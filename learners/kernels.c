/* Fused element-wise passes of the fast path (learners/fastpath.py), float32, one CPU thread.

   Each function does in one pass over memory what took the torch path three to seven kernels;
   on the small bases this project trains on CPU those passes stream through L3, so the number of
   passes is what costs. Built on first use by learners/kernels.py (cc -O3 -march=native) and called
   through ctypes, which releases the GIL. No libm, no OpenMP: plain loops the compiler vectorizes,
   and for the attention, register tiles written with GCC's vector extension (clang has it too).

   NaN and inf propagate as in the torch ops they replace (a diverging learner must still read as
   failed). */

#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));  /* 8 floats: GCC/Clang vector extension */

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, 32); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, 32); }

#if defined(__AVX__)
#include <immintrin.h>
/* a streaming store (32-byte aligned p): the line goes to memory without being read first */
static inline void put(float *p, v8 v) { _mm256_stream_ps(p, (__m256)v); }
static inline void fence(void) { _mm_sfence(); }
#else
static inline void put(float *p, v8 v) { st(p, v); }
static inline void fence(void) {}
#endif

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

/* SwiGLU forward from the gate and up GEMMs' outputs g, u (a chunk, still in cache):
   y = silu(g)*u (in cache, for the down GEMM), and g, u copied out to g_save, u_save for the
   backward. Those are read again only after the rest of the pass has evicted them, so they are
   written with streaming stores where the CPU has them and they are 32-byte aligned (no read of
   the line first: half the memory traffic). */
void swiglu_fwd(const float *restrict g, const float *restrict u, float *restrict g_save,
                float *restrict u_save, float *restrict y, int64_t n) {
    int64_t i = 0;
    if (!(((uintptr_t)g_save | (uintptr_t)u_save) & 31)) {
        for (; i + 64 <= n; i += 64) {
            for (int j = 0; j < 64; j++) {
                float gi = g[i + j];
                y[i + j] = gi / (1.0f + exp_f(-gi)) * u[i + j];
            }
            for (int j = 0; j < 64; j += 8) {
                put(g_save + i + j, ld(g + i + j));
                put(u_save + i + j, ld(u + i + j));
            }
        }
        fence();
    }
    for (; i < n; i++) {
        float gi = g[i];
        g_save[i] = gi;
        u_save[i] = u[i];
        y[i] = gi / (1.0f + exp_f(-gi)) * u[i];
    }
}

/* SwiGLU backward from g, u and dy = d(silu(g)*u), recomputing sig = sigmoid(g) (an exp per
   element costs less than reading a saved third tensor back from memory):
   du = silu(g)*dy;  dy <- dg = dy*u * dsilu/dg = dy*u * (sig + silu(g)*(1 - sig)). */
void swiglu_bwd(float *restrict dy, const float *restrict g, const float *restrict u,
                float *restrict du, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float d = dy[i], gi = g[i];
        float sg = 1.0f / (1.0f + exp_f(-gi));
        float si = gi * sg;
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

/* --- attention: register tiles of 4 x 8 (scores) and 2 x d (products with values) ------- */

/* out[i][0:cols(i)] = alpha * sum_c a[i][c] * bt[c][:], a [m][k] (row stride lda), bt [k][ldb],
   out [m][ldo]; cols per 4-row block: up to lim(i_last) rounded up to 8 (<= ldb). */
static inline void tile_nt(const float *a, int64_t lda, const float *bt, int64_t ldb, float *out,
                           int64_t ldo, int64_t m, int64_t k, float alpha, int64_t t0, int64_t t) {
    for (int64_t i = 0; i < m; i += 4) {
        int64_t rows = m - i < 4 ? m - i : 4;
        int64_t lim = t0 + i + rows;                /* keys needed by the block's last row */
        lim = lim < t ? lim : t;
        for (int64_t j = 0; j < lim; j += 8) {
            v8 acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
            const float *a0 = a + i * lda, *a1 = a0 + (rows > 1) * lda, *a2 = a0 + (rows > 2) * 2 * lda,
                        *a3 = a0 + (rows > 3) * 3 * lda;
            for (int64_t c = 0; c < k; c++) {
                v8 b = ld(bt + c * ldb + j);
                acc0 += a0[c] * b; acc1 += a1[c] * b; acc2 += a2[c] * b; acc3 += a3[c] * b;
            }
            st(out + i * ldo + j, acc0 * alpha);
            if (rows > 1) st(out + (i + 1) * ldo + j, acc1 * alpha);
            if (rows > 2) st(out + (i + 2) * ldo + j, acc2 * alpha);
            if (rows > 3) st(out + (i + 3) * ldo + j, acc3 * alpha);
        }
    }
}

/* out[i][:] = sum_j a(i, j) * b[j][:] for j < kn, with a(i, j) = a[i * ars + j * acs] (so a
   transposed operand needs no copy), b [kn][NV*8] rows ldb floats apart, out [m][NV*8] rows ldo
   floats apart; 2 rows at a time with NV vector accumulators each. */
#define TILE_NN(NV)                                                                              \
static inline void tile_nn_##NV(const float *a, int64_t ars, int64_t acs, const float *b,         \
                                int64_t ldb, float *out, int64_t ldo, int64_t m, int64_t kn) {    \
    const int64_t d = NV * 8;                                                                     \
    for (int64_t i = 0; i < m; i += 2) {                                                          \
        int two = m - i > 1;                                                                      \
        const float *a0 = a + i * ars, *a1 = a0 + two * ars;                                      \
        v8 x0[NV], x1[NV];                                                                        \
        for (int v = 0; v < NV; v++) { x0[v] = (v8){0}; x1[v] = (v8){0}; }                        \
        for (int64_t j = 0; j < kn; j++) {                                                        \
            float s0 = a0[j * acs], s1 = a1[j * acs];                                             \
            for (int v = 0; v < NV; v++) {                                                        \
                v8 bv = ld(b + j * ldb + v * 8);                                                  \
                x0[v] += s0 * bv; x1[v] += s1 * bv;                                               \
            }                                                                                     \
        }                                                                                         \
        for (int v = 0; v < NV; v++) {                                                            \
            st(out + i * ldo + v * 8, x0[v]);                                                     \
            if (two) st(out + (i + 1) * ldo + v * 8, x1[v]);                                      \
        }                                                                                         \
    }                                                                                             \
}
TILE_NN(1)
TILE_NN(2)
TILE_NN(3)
TILE_NN(4)

static inline void tile_nn(const float *a, int64_t ars, int64_t acs, const float *b, int64_t ldb,
                           float *out, int64_t ldo, int64_t m, int64_t kn, int64_t d) {
    switch (d / 8) {
    case 1: tile_nn_1(a, ars, acs, b, ldb, out, ldo, m, kn); break;
    case 2: tile_nn_2(a, ars, acs, b, ldb, out, ldo, m, kn); break;
    case 3: tile_nn_3(a, ars, acs, b, ldb, out, ldo, m, kn); break;
    default: tile_nn_4(a, ars, acs, b, ldb, out, ldo, m, kn); break;
    }
}

/* The start of (row, head) b's [t, d] matrix in a tensor of strides s = {row, head, position}
   (floats): [rows, heads, t, d] contiguous, or [rows, t, heads, d] (the projections' layout). */
static inline int64_t at(const int64_t *s, int64_t b, int64_t heads) {
    return (b / heads) * s[0] + (b % heads) * s[1];
}

#if defined(__AVX__)
/* xt[c][r] = x[r][c] for an 8 x 8 block: unpack, shuffle and swap lanes (24 shuffles for 64
   floats; the scalar loop's strided stores took a third of the attention backward) */
static inline void transpose8(const float *x, int64_t ldx, float *xt, int64_t ldt) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * ldx);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 2 * j + 1] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(3, 2, 3, 2));
        }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(xt + i * ldt, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(xt + (i + 4) * ldt, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}
#endif

/* xt[c][r] = x[r][c] for r < rows, c < cols (row strides ldx, ldt) */
static inline void transpose(const float *x, int64_t rows, int64_t cols, int64_t ldx, float *xt,
                             int64_t ldt) {
    int64_t r = 0;
#if defined(__AVX__)
    if (cols % 8 == 0)
        for (; r + 8 <= rows; r += 8)
            for (int64_t c = 0; c < cols; c += 8) transpose8(x + r * ldx + c, ldx, xt + c * ldt + r, ldt);
#endif
    for (; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) xt[c * ldt + r] = x[r * ldx + c];
}

/* Causal attention, one (row, head) at a time in L1, the causal half of the scores only: for
   b < nb (rows x heads), queries i < tq at absolute positions t0 + i see keys j <= t0 + i:
   p[b, i] = softmax(scale * q_i . k_j) (0 past the diagonal), o[b, i] = sum_j p_ij v_j.
   q [nb, tq, d], k [nb, t, d], p [nb, tq, t] contiguous; v and o of any strides vs, os (see `at`),
   so they can stay in the projections' [rows, t, heads, d] layout; d in {8, 16, 24, 32}.
   scratch: d*tp + tq*tp floats, tp = t rounded up to 8. */
void attention_fwd(const float *restrict q, const float *restrict k, const float *restrict v,
                   const int64_t *vs, float *restrict o, const int64_t *os, float *restrict p,
                   float *restrict scratch, int64_t nb, int64_t heads, int64_t tq, int64_t t,
                   int64_t d, int64_t t0, float scale) {
    int64_t tp = (t + 7) / 8 * 8;
    float *kt = scratch, *s = scratch + d * tp;
    memset(kt, 0, sizeof(float) * d * tp);
    for (int64_t b = 0; b < nb; b++) {
        const float *qb = q + b * tq * d, *kb = k + b * t * d, *vb = v + at(vs, b, heads);
        float *pb = p + b * tq * t;
        transpose(kb, t, d, d, kt, tp);
        tile_nt(qb, d, kt, tp, s, tp, tq, d, scale, t0, t);
        for (int64_t i = 0; i < tq; i++) {
            float *si = s + i * tp, *pi = pb + i * t;
            int64_t n = t0 + i + 1 < t ? t0 + i + 1 : t;
            int64_t n8 = (n + 7) / 8 * 8;           /* whole vectors; the rest of the row is 0 */
            for (int64_t j = n; j < n8; j++) si[j] = -__builtin_inff();   /* exp(-inf) = 0 */
            float m = si[0];
#pragma omp simd reduction(max : m)
            for (int64_t j = 0; j < n8; j++) m = si[j] > m ? si[j] : m;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < n8; j++) { float e = exp_f(si[j] - m); si[j] = e; sum += e; }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j < n; j++) pi[j] = si[j] * inv;
            for (int64_t j = n; j < t; j++) pi[j] = 0.0f;
        }
        tile_nn(pb, t, 1, vb, vs[2], o + at(os, b, heads), os[2], tq, t, d);
    }
}

/* The backward of attention_fwd from its p: dp = do v^T; ds = p (dp - rowsum(p dp)) * scale;
   dq = ds k; dk = ds^T q (skipped where dk is NULL); dv = p^T do. dq [nb, tq, d] and dk [nb, t, d]
   contiguous; v, do and dv of any strides vs, ds_, dvs (see `at`). scratch: d*tp + tq*tp floats. */
void attention_bwd(const float *restrict q, const float *restrict k, const float *restrict v,
                   const int64_t *vs, const float *restrict p, const float *restrict dout,
                   const int64_t *ds_, float *restrict dq, float *restrict dk, float *restrict dv,
                   const int64_t *dvs, float *restrict scratch, int64_t nb, int64_t heads,
                   int64_t tq, int64_t t, int64_t d, int64_t t0, float scale) {
    int64_t tp = (t + 7) / 8 * 8;
    float *vt = scratch, *ds = vt + d * tp;
    memset(vt, 0, sizeof(float) * d * tp);
    for (int64_t b = 0; b < nb; b++) {
        const float *qb = q + b * tq * d, *kb = k + b * t * d, *vb = v + at(vs, b, heads);
        const float *pb = p + b * tq * t, *db = dout + at(ds_, b, heads);
        transpose(vb, t, d, vs[2], vt, tp);
        tile_nt(db, ds_[2], vt, tp, ds, tp, tq, d, 1.0f, t0, t);      /* dp = do v^T */
        for (int64_t i = 0; i < tq; i++) {
            float *di = ds + i * tp;
            const float *pi = pb + i * t;
            int64_t n = t0 + i + 1 < t ? t0 + i + 1 : t;
            float rs = 0.0f;
#pragma omp simd reduction(+ : rs)
            for (int64_t j = 0; j < n; j++) rs += pi[j] * di[j];
            for (int64_t j = 0; j < n; j++) di[j] = pi[j] * (di[j] - rs) * scale;
            for (int64_t j = n; j < tp; j++) di[j] = 0.0f;
        }
        tile_nn(ds, tp, 1, kb, d, dq + b * tq * d, d, tq, t, d);          /* dq = ds k */
        if (dk) tile_nn(ds, 1, tp, qb, d, dk + b * t * d, d, t, tq, d);   /* dk = ds^T q */
        tile_nn(pb, 1, t, db, ds_[2], dv + at(dvs, b, heads), dvs[2], t, tq, d);  /* dv = p^T do */
    }
}
