// pool.cu: pooling, nearest upsampling and padding over NCHW planes (f32 and f64), forward
// and backward.
//
// Every kernel is one thread per output element of its pass (a grid-stride loop), and every
// backward is written as a gather: the thread that owns dx[n, c, iy, ix] finds the outputs whose
// windows contain (iy, ix) and adds their contributions itself, in a fixed order. Nothing is
// scattered with atomics, so results are identical on every run.
//
// Geometry (ember_ops::Pool2dSpec, flattened by the host into `PoolGeom`): input planes h x w,
// output planes oh x ow (the host computed them, with ceil_mode if asked), window kh x kw,
// stride, dilation, begin padding. Window (y, x) covers rows y*sh - ph + ky*dh.
//
// - max_pool2d: the maximum over the window's taps that lie in the input (padding is -inf, so
//   never wins). The index of the winner (iy*w + ix within the plane, PyTorch's convention) is
//   written for the backward. Rule (PyTorch's CPU kernel): scan taps in row-major window order,
//   take a tap when it is greater than the best so far or is NaN; so ties go to the first
//   maximum, and a NaN anywhere makes the output NaN (routed to the last NaN). A window with no
//   tap inside the input (possible only with dilation) gives -inf and index 0xffffffff, which
//   the backward routes nowhere. Backward: dx[i] = sum of dy over the windows whose stored
//   index is i.
// - avg_pool2d (PyTorch's rules): the window is clipped to the padded input
//   [-ph, h + pad_end); with count_include_pad the divisor is that clipped window's size,
//   otherwise the number of taps inside the input. Backward: dx[i] = sum of dy / divisor over the
//   windows containing i. (No dilation, as in PyTorch; the host rejects it.)
// - adaptive_avg_pool2d: output bin y covers rows [floor(y*h/oh), ceil((y+1)*h/oh)) (PyTorch's
//   bins); backward: row iy lies in the bins floor(iy*oh/h) ..= ceil((iy+1)*oh/h) - 1.
// - upsample_nearest2d by integer scales (sh, sw): y[oy, ox] = x[oy / sh, ox / sw]; backward sums
//   the sh x sw block.
// - pad2d, constant or reflect, on the last two dims (top, bottom, left, right): forward reads
//   the mapped input element (or the constant); backward adds, for each input element, the
//   padded outputs that map to it (one for constant; up to three per axis for reflect).

struct PoolGeom {
    int h, w, oh, ow;
    int kh, kw, sh, sw, dh, dw, ph, pw;
    int include_pad;  // avg: count_include_pad
    int pad_end_h;    // avg: end padding (the clip bound of the window)
    int pad_end_w;
    int pad_;
};

#define POOL_LOOP(k, n)                                                                            \
    for (i64 k = blockIdx.x * (i64)blockDim.x + threadIdx.x; k < (n);                              \
         k += (i64)gridDim.x * blockDim.x)

// ---- max pooling ------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void max_pool_fwd_k(const PoolGeom g, const T* __restrict__ x,
                                               T* __restrict__ y, u32* __restrict__ idx,
                                               i64 total) {
    POOL_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        i64 plane = r / g.oh;
        const T* xp = x + plane * g.h * g.w;
        int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
        T best = -m_inf<T>();
        int bi = -1;
        for (int ky = 0; ky < g.kh; ++ky) {
            int iy = y0 + ky * g.dh;
            if ((unsigned)iy >= (unsigned)g.h) continue;
            for (int kx = 0; kx < g.kw; ++kx) {
                int ix = x0 + kx * g.dw;
                if ((unsigned)ix >= (unsigned)g.w) continue;
                int i = iy * g.w + ix;
                T v = xp[i];
                if (bi < 0 || v > best || m_isnan(v)) {
                    best = v;
                    bi = i;
                }
            }
        }
        y[e] = best;
        idx[e] = bi < 0 ? 0xffffffffu : (u32)bi;  // no tap in the input: routes nothing
    }
}

template <typename T>
__device__ __forceinline__ void max_pool_bwd_k(const PoolGeom g, const T* __restrict__ dy,
                                               const u32* __restrict__ idx, T* __restrict__ dx,
                                               i64 total) {
    POOL_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        i64 plane = r / g.h;
        const i64 obase = plane * g.oh * g.ow;
        const u32 me = (u32)(iy * g.w + ix);
        T acc = T(0);
        for (int ky = 0; ky < g.kh; ++ky) {
            int ty = iy + g.ph - ky * g.dh;
            if (ty < 0) continue;
            int oy = ty / g.sh;
            if (oy * g.sh != ty || oy >= g.oh) continue;
            for (int kx = 0; kx < g.kw; ++kx) {
                int tx = ix + g.pw - kx * g.dw;
                if (tx < 0) continue;
                int ox = tx / g.sw;
                if (ox * g.sw != tx || ox >= g.ow) continue;
                i64 o = obase + (i64)oy * g.ow + ox;
                if (idx[o] == me) acc += dy[o];
            }
        }
        dx[e] = acc;
    }
}

// ---- average pooling --------------------------------------------------------------------------

// The divisor of window (oy, ox) and its clipped row/column range in the input.
__device__ __forceinline__ int avg_window(const PoolGeom& g, int oy, int ox, int* ys, int* ye,
                                          int* xs, int* xe) {
    int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    int y1 = min(y0 + g.kh, g.h + g.pad_end_h), x1 = min(x0 + g.kw, g.w + g.pad_end_w);
    int padded = (y1 - y0) * (x1 - x0);
    *ys = max(y0, 0);
    *xs = max(x0, 0);
    *ye = min(y1, g.h);
    *xe = min(x1, g.w);
    return g.include_pad ? padded : (*ye - *ys) * (*xe - *xs);
}

template <typename T>
__device__ __forceinline__ void avg_pool_fwd_k(const PoolGeom g, const T* __restrict__ x,
                                               T* __restrict__ y, i64 total) {
    POOL_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        i64 plane = r / g.oh;
        const T* xp = x + plane * g.h * g.w;
        int ys, ye, xs, xe;
        int div = avg_window(g, oy, ox, &ys, &ye, &xs, &xe);
        T acc = T(0);
        for (int iy = ys; iy < ye; ++iy)
            for (int ix = xs; ix < xe; ++ix) acc += xp[iy * g.w + ix];
        y[e] = div > 0 ? acc / T(div) : T(0);
    }
}

template <typename T>
__device__ __forceinline__ void avg_pool_bwd_k(const PoolGeom g, const T* __restrict__ dy,
                                               T* __restrict__ dx, i64 total) {
    POOL_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        i64 plane = r / g.h;
        const T* dyp = dy + plane * g.oh * g.ow;
        T acc = T(0);
        for (int ky = 0; ky < g.kh; ++ky) {
            int ty = iy + g.ph - ky;
            if (ty < 0) continue;
            int oy = ty / g.sh;
            if (oy * g.sh != ty || oy >= g.oh) continue;
            for (int kx = 0; kx < g.kw; ++kx) {
                int tx = ix + g.pw - kx;
                if (tx < 0) continue;
                int ox = tx / g.sw;
                if (ox * g.sw != tx || ox >= g.ow) continue;
                int ys, ye, xs, xe;
                int div = avg_window(g, oy, ox, &ys, &ye, &xs, &xe);
                acc += dyp[oy * g.ow + ox] / T(div);
            }
        }
        dx[e] = acc;
    }
}

// ---- adaptive average pooling -----------------------------------------------------------------

__device__ __forceinline__ int bin_start(int i, int in, int out) {
    return (int)(((i64)i * in) / out);
}
__device__ __forceinline__ int bin_end(int i, int in, int out) {
    return (int)(((i64)(i + 1) * in + out - 1) / out);
}

template <typename T>
__device__ __forceinline__ void adaptive_avg_fwd_k(const PoolGeom g, const T* __restrict__ x,
                                                   T* __restrict__ y, i64 total) {
    POOL_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        i64 plane = r / g.oh;
        const T* xp = x + plane * g.h * g.w;
        int ys = bin_start(oy, g.h, g.oh), ye = bin_end(oy, g.h, g.oh);
        int xs = bin_start(ox, g.w, g.ow), xe = bin_end(ox, g.w, g.ow);
        T acc = T(0);
        for (int iy = ys; iy < ye; ++iy)
            for (int ix = xs; ix < xe; ++ix) acc += xp[iy * g.w + ix];
        int cnt = (ye - ys) * (xe - xs);
        y[e] = cnt > 0 ? acc / T(cnt) : T(0);
    }
}

template <typename T>
__device__ __forceinline__ void adaptive_avg_bwd_k(const PoolGeom g, const T* __restrict__ dy,
                                                   T* __restrict__ dx, i64 total) {
    POOL_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        i64 plane = r / g.h;
        const T* dyp = dy + plane * g.oh * g.ow;
        // Bins containing row iy: floor(iy*oh/h) ..= ceil((iy+1)*oh/h) - 1 (and the same for x);
        // the exact membership test below guards the rounding.
        int oy0 = bin_start(iy, g.oh, g.h), oy1 = bin_end(iy, g.oh, g.h);
        int ox0 = bin_start(ix, g.ow, g.w), ox1 = bin_end(ix, g.ow, g.w);
        T acc = T(0);
        for (int oy = oy0; oy < oy1 && oy < g.oh; ++oy) {
            int ys = bin_start(oy, g.h, g.oh), ye = bin_end(oy, g.h, g.oh);
            if (iy < ys || iy >= ye) continue;
            for (int ox = ox0; ox < ox1 && ox < g.ow; ++ox) {
                int xs = bin_start(ox, g.w, g.ow), xe = bin_end(ox, g.w, g.ow);
                if (ix < xs || ix >= xe) continue;
                acc += dyp[oy * g.ow + ox] / T((ye - ys) * (xe - xs));
            }
        }
        dx[e] = acc;
    }
}

// ---- nearest upsampling by integer scales (g.sh, g.sw); input h x w, output oh x ow ----------

template <typename T>
__device__ __forceinline__ void upsample_fwd_k(const PoolGeom g, const T* __restrict__ x,
                                               T* __restrict__ y, i64 total) {
    POOL_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        i64 plane = r / g.oh;
        y[e] = x[(plane * g.h + oy / g.sh) * g.w + ox / g.sw];
    }
}

template <typename T>
__device__ __forceinline__ void upsample_bwd_k(const PoolGeom g, const T* __restrict__ dy,
                                               T* __restrict__ dx, i64 total) {
    POOL_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        i64 plane = r / g.h;
        const T* dyp = dy + plane * g.oh * g.ow;
        T acc = T(0);
        for (int a = 0; a < g.sh; ++a)
            for (int b = 0; b < g.sw; ++b)
                acc += dyp[(i64)(iy * g.sh + a) * g.ow + ix * g.sw + b];
        dx[e] = acc;
    }
}

// ---- padding: g.ph / g.pw = top / left, g.pad_end_h / g.pad_end_w = bottom / right ------------

// Reflect (no edge repeat): index j of the padded axis, relative to the input start.
__device__ __forceinline__ int reflect(int j, int n) {
    if (j < 0) j = -j;
    if (j >= n) j = 2 * (n - 1) - j;
    return j;
}

template <typename T>
__device__ __forceinline__ void pad_fwd_k(const PoolGeom g, int reflect_mode, T value,
                                          const T* __restrict__ x, T* __restrict__ y, i64 total) {
    POOL_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        i64 plane = r / g.oh;
        int iy = oy - g.ph, ix = ox - g.pw;
        if (reflect_mode) {
            iy = reflect(iy, g.h);
            ix = reflect(ix, g.w);
        } else if ((unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) {
            y[e] = value;
            continue;
        }
        y[e] = x[(plane * g.h + iy) * g.w + ix];
    }
}

// The padded positions (relative to the input start) that map to input index i along an axis of
// n with `before` / `after` padding: `which` 0 is i itself, 1 its mirror in the begin padding
// (-i), 2 its mirror in the end padding (2(n-1) - i); NO_SOURCE where that mirror does not exist
// (constant mode has only the first). Written as a function of `which` so the unrolled loops
// below keep everything in registers.
#define NO_SOURCE (-0x40000000)
__device__ __forceinline__ int pad_source(int which, int i, int n, int before, int after,
                                          int reflect_mode) {
    if (which == 0) return i;
    if (!reflect_mode) return NO_SOURCE;
    if (which == 1) return (i > 0 && i <= before) ? -i : NO_SOURCE;
    int m = 2 * (n - 1) - i;
    return (i < n - 1 && m - (n - 1) <= after) ? m : NO_SOURCE;
}

template <typename T>
__device__ __forceinline__ void pad_bwd_k(const PoolGeom g, int reflect_mode,
                                          const T* __restrict__ dy, T* __restrict__ dx,
                                          i64 total) {
    POOL_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        i64 plane = r / g.h;
        const T* dyp = dy + plane * g.oh * g.ow;
        T acc = T(0);
#pragma unroll
        for (int a = 0; a < 3; ++a) {
            int jy = pad_source(a, iy, g.h, g.ph, g.pad_end_h, reflect_mode);
            if (jy == NO_SOURCE) continue;
#pragma unroll
            for (int b = 0; b < 3; ++b) {
                int jx = pad_source(b, ix, g.w, g.pw, g.pad_end_w, reflect_mode);
                if (jx == NO_SOURCE) continue;
                acc += dyp[(i64)(jy + g.ph) * g.ow + jx + g.pw];
            }
        }
        dx[e] = acc;
    }
}

// ---- Entry points (f32 and f64) ---------------------------------------------------------------

#define POOL_ENTRIES(T, SFX)                                                                       \
    extern "C" __global__ void max_pool2d_fwd_##SFX(PoolGeom g, const T* x, T* y, u32* idx,        \
                                                    i64 total) {                                   \
        max_pool_fwd_k<T>(g, x, y, idx, total);                                                    \
    }                                                                                              \
    extern "C" __global__ void max_pool2d_bwd_##SFX(PoolGeom g, const T* dy, const u32* idx,       \
                                                    T* dx, i64 total) {                            \
        max_pool_bwd_k<T>(g, dy, idx, dx, total);                                                  \
    }                                                                                              \
    extern "C" __global__ void avg_pool2d_fwd_##SFX(PoolGeom g, const T* x, T* y, i64 total) {     \
        avg_pool_fwd_k<T>(g, x, y, total);                                                         \
    }                                                                                              \
    extern "C" __global__ void avg_pool2d_bwd_##SFX(PoolGeom g, const T* dy, T* dx, i64 total) {   \
        avg_pool_bwd_k<T>(g, dy, dx, total);                                                       \
    }                                                                                              \
    extern "C" __global__ void adaptive_avg_pool2d_fwd_##SFX(PoolGeom g, const T* x, T* y,         \
                                                             i64 total) {                          \
        adaptive_avg_fwd_k<T>(g, x, y, total);                                                     \
    }                                                                                              \
    extern "C" __global__ void adaptive_avg_pool2d_bwd_##SFX(PoolGeom g, const T* dy, T* dx,       \
                                                             i64 total) {                          \
        adaptive_avg_bwd_k<T>(g, dy, dx, total);                                                   \
    }                                                                                              \
    extern "C" __global__ void upsample_nearest2d_fwd_##SFX(PoolGeom g, const T* x, T* y,          \
                                                            i64 total) {                           \
        upsample_fwd_k<T>(g, x, y, total);                                                         \
    }                                                                                              \
    extern "C" __global__ void upsample_nearest2d_bwd_##SFX(PoolGeom g, const T* dy, T* dx,        \
                                                            i64 total) {                           \
        upsample_bwd_k<T>(g, dy, dx, total);                                                       \
    }                                                                                              \
    extern "C" __global__ void pad2d_fwd_##SFX(PoolGeom g, int reflect_mode, T value, const T* x,  \
                                               T* y, i64 total) {                                  \
        pad_fwd_k<T>(g, reflect_mode, value, x, y, total);                                         \
    }                                                                                              \
    extern "C" __global__ void pad2d_bwd_##SFX(PoolGeom g, int reflect_mode, const T* dy, T* dx,   \
                                               i64 total) {                                        \
        pad_bwd_k<T>(g, reflect_mode, dy, dx, total);                                              \
    }

POOL_ENTRIES(float, f32)
POOL_ENTRIES(double, f64)
