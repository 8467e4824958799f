// conv.cu: 2-D convolution over NCHW input and OIHW weights (f32 and f64): forward,
// backward-data (dx) and backward-weight (dw, db), as implicit GEMMs and as direct kernels.
//
// Geometry (ember_ops::Conv2dSpec, flattened by the host into `ConvGeom`): input [n, c, h, w],
// weight [o, cg, kh, kw] with cg = c / groups and og = o / groups, output [n, o, oh, ow];
// per axis a stride, a dilation and the begin padding (the end padding is implied by oh / ow,
// which the host computed with PyTorch's formula). Output pixel (y, x) reads input row
// y*sh - ph + ky*dh and column x*sw - pw + kx*dw; taps outside the input read zero.
//
// ---- Implicit GEMM ---------------------------------------------------------------------------
// Each pass is one matrix product per group (blockIdx.z), C[M x N] = A[M x K] * B[K x N], whose
// operands are never materialised: the loaders compute, for each element of a tile, where it
// lives in the weight or image buffers (bounds-checked, zero for padding taps) and stage the
// tile in shared memory. No im2col buffer exists.
//
//   pass             M        N (columns)         K (reduction)       A           B (gathered)
//   forward          og       n*oh*ow  (n,y,x)    cg*kh*kw (c,ky,kx)  w[o][c,ky,kx] x[n][c][iy][ix]
//   backward-data    cg       n*h*w    (n,iy,ix)  og*kh*kw (o,ky,kx)  w[o][c,ky,kx] dy[n][o][y][x]
//   backward-weight  og       cg*kh*kw (c,ky,kx)  n*oh*ow  (n,y,x)    dy[n][o][y][x] x[n][c][iy][ix]
//
// Backward-data is written as a gather: dx[n, c, iy, ix] sums w[o, c, ky, kx] * dy[n, o, y, x]
// over the (o, ky, kx) with iy = y*sh - ph + ky*dh for an integer y in [0, oh) (and the same for
// x). The B loader tests that divisibility and reads zero otherwise, so every dx element is
// produced by exactly one thread and nothing is scattered with atomics. (With stride s only 1/s²
// of those taps are real: the price of the simple, deterministic form.)
//
// Blocking: 64 x 64 block tile, 16-deep K tile, 256 threads, each accumulating a 4 x 4 register
// tile (rows ty + 16i, columns tx + 16j, so a half-warp reads 16 consecutive B values from shared
// memory and the A values are broadcast). The next K tile is fetched into registers while the
// current one is multiplied out of shared memory (one barrier pair per tile). Every thread of
// the B loader owns one fixed column for the whole K loop, so the column's decoding (batch index,
// window origin) is done once; only the K index is decoded per element.
//
// Determinism: every output element is one thread's dot product in a fixed K order. The
// backward-weight reduction (K = n*oh*ow, often long while M x N is small) is split into
// `kchunk`-long K ranges (blockIdx.z = group + groups * split); each split writes its partial
// tile to a workspace slab and `conv_splitk_reduce` adds the slabs in split order. The number of
// splits is chosen by the host from the shape alone, so a given problem is summed in the same
// order on every run and every GPU. No atomics anywhere.
//
// ---- Direct kernels --------------------------------------------------------------------------
// One thread per output element looping over its window (forward: c, ky, kx; backward-data:
// o, ky, kx with the divisibility test above), and one block per weight element for
// backward-weight (threads fold fixed strided subsets of n*oh*ow, then a fixed shuffle tree).
// They serve depthwise convolutions (cg == 1), where a GEMM tile would be mostly empty, and are
// the second implementation the tests compare the GEMM with. `conv_bias_grad` sums dy per
// output channel the same way (and, given the input geometry, sums per input channel: the
// bias gradient of conv_transpose2d).
//
// conv_transpose2d is the adjoint of a convolution and needs no kernel of its own: its forward
// is backward-data (which therefore takes an optional bias, per conv input channel), its
// input gradient the forward, its weight gradient backward-weight with x and dy exchanged.

struct ConvGeom {
    int n, c, h, w;
    int o, oh, ow;
    int kh, kw;
    int sh, sw, dh, dw, ph, pw;
    int groups, cg, og;
    int kchunk;  // backward-weight GEMM: K elements per split (a multiple of CBK); else unused
    int pad_;
};

#define CBM 64
#define CBN 64
#define CBK 16
#define CTHREADS 256

#define MODE_FWD 0
#define MODE_BWD_DATA 1
#define MODE_BWD_WEIGHT 2

// Grid-stride loop over n items.
#define CONV_LOOP(k, n)                                                                            \
    for (i64 k = blockIdx.x * (i64)blockDim.x + threadIdx.x; k < (n);                              \
         k += (i64)gridDim.x * blockDim.x)

// The GEMM view of one pass: sizes, and the per-column state of the B loader.
template <int MODE> struct ColState {
    bool valid;
    i64 base;   // buffer offset shared by the column's elements
    int a0, a1; // mode-specific: window origin (forward), target row/col (backward-data),
                // tap offsets (backward-weight)
};

template <int MODE> __device__ __forceinline__ int gemm_m(const ConvGeom& g) {
    return MODE == MODE_BWD_DATA ? g.cg : g.og;
}
template <int MODE> __device__ __forceinline__ int gemm_n(const ConvGeom& g) {
    if (MODE == MODE_FWD) return g.n * g.oh * g.ow;
    if (MODE == MODE_BWD_DATA) return g.n * g.h * g.w;
    return g.cg * g.kh * g.kw;
}
template <int MODE> __device__ __forceinline__ int gemm_k(const ConvGeom& g) {
    if (MODE == MODE_FWD) return g.cg * g.kh * g.kw;
    if (MODE == MODE_BWD_DATA) return g.og * g.kh * g.kw;
    return g.n * g.oh * g.ow;
}

// Decodes column `col` of B once (see the table in the header).
template <int MODE>
__device__ __forceinline__ ColState<MODE> col_state(const ConvGeom& g, int grp, int col) {
    ColState<MODE> s;
    s.valid = col < gemm_n<MODE>(g);
    if (!s.valid) col = 0;
    if (MODE == MODE_FWD) {
        int hw = g.oh * g.ow;
        int nn = col / hw, r = col - nn * hw;
        int y = r / g.ow, x = r - y * g.ow;
        s.a0 = y * g.sh - g.ph;
        s.a1 = x * g.sw - g.pw;
        s.base = ((i64)nn * g.c + (i64)grp * g.cg) * g.h * g.w;
    } else if (MODE == MODE_BWD_DATA) {
        int hw = g.h * g.w;
        int nn = col / hw, r = col - nn * hw;
        int iy = r / g.w, ix = r - iy * g.w;
        s.a0 = iy + g.ph;
        s.a1 = ix + g.pw;
        s.base = ((i64)nn * g.o + (i64)grp * g.og) * g.oh * g.ow;
    } else {
        int khw = g.kh * g.kw;
        int ci = col / khw, r = col - ci * khw;
        int ky = r / g.kw, kx = r - ky * g.kw;
        s.a0 = ky * g.dh - g.ph;
        s.a1 = kx * g.dw - g.pw;
        s.base = ((i64)grp * g.cg + ci) * g.h * g.w;
    }
    return s;
}

// Element (k, column) of B; zero outside the image, for padding taps and past K.
template <typename T, int MODE>
__device__ __forceinline__ T load_b_elem(const ConvGeom& g, const ColState<MODE>& s,
                                         const T* __restrict__ b, int k, int kend) {
    if (!s.valid || k >= kend) return T(0);
    if (MODE == MODE_FWD) {
        int khw = g.kh * g.kw;
        int ci = k / khw, r = k - ci * khw;
        int ky = r / g.kw, kx = r - ky * g.kw;
        int iy = s.a0 + ky * g.dh, ix = s.a1 + kx * g.dw;
        if ((unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) return T(0);
        return b[s.base + ((i64)ci * g.h + iy) * g.w + ix];
    } else if (MODE == MODE_BWD_DATA) {
        int khw = g.kh * g.kw;
        int oc = k / khw, r = k - oc * khw;
        int ky = r / g.kw, kx = r - ky * g.kw;
        int ty = s.a0 - ky * g.dh, tx = s.a1 - kx * g.dw;
        if (ty < 0 || tx < 0) return T(0);
        int y = ty / g.sh, x = tx / g.sw;
        if (y * g.sh != ty || x * g.sw != tx || y >= g.oh || x >= g.ow) return T(0);
        return b[s.base + ((i64)oc * g.oh + y) * g.ow + x];
    } else {
        int hw = g.oh * g.ow;
        int nn = k / hw, r = k - nn * hw;
        int y = r / g.ow, x = r - y * g.ow;
        int iy = y * g.sh + s.a0, ix = x * g.sw + s.a1;
        if ((unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) return T(0);
        return b[(i64)nn * g.c * g.h * g.w + s.base + (i64)iy * g.w + ix];
    }
}

// Element (m, k) of A; zero past M or K.
template <typename T, int MODE>
__device__ __forceinline__ T load_a_elem(const ConvGeom& g, const T* __restrict__ a, int grp,
                                         int m, int k, int kend) {
    if (m >= gemm_m<MODE>(g) || k >= kend) return T(0);
    if (MODE == MODE_FWD) {
        return a[((i64)grp * g.og + m) * gemm_k<MODE>(g) + k];
    } else if (MODE == MODE_BWD_DATA) {
        int khw = g.kh * g.kw;
        int oc = k / khw, r = k - oc * khw;
        return a[(((i64)grp * g.og + oc) * g.cg + m) * khw + r];
    } else {
        int hw = g.oh * g.ow;
        int nn = k / hw, r = k - nn * hw;
        return a[((i64)nn * g.o + (i64)grp * g.og + m) * hw + r];
    }
}

// Stores one finished element of C (forward adds the bias).
template <typename T, int MODE>
__device__ __forceinline__ void store_c_elem(const ConvGeom& g, T* __restrict__ out,
                                             const T* __restrict__ bias, int grp, int split,
                                             int m, int col, T acc) {
    if (MODE == MODE_FWD) {
        int hw = g.oh * g.ow;
        int nn = col / hw, r = col - nn * hw;
        int oc = grp * g.og + m;
        if (bias) acc += bias[oc];
        out[((i64)nn * g.o + oc) * hw + r] = acc;
    } else if (MODE == MODE_BWD_DATA) {
        int hw = g.h * g.w;
        int nn = col / hw, r = col - nn * hw;
        int cc = grp * g.cg + m;
        if (bias) acc += bias[cc];  // conv_transpose2d's bias, per output (= conv input) channel
        out[((i64)nn * g.c + cc) * hw + r] = acc;
    } else {
        i64 ncols = gemm_n<MODE>(g);
        out[(i64)split * g.o * ncols + ((i64)grp * g.og + m) * ncols + col] = acc;
    }
}

template <typename T, int MODE>
__device__ __forceinline__ void conv_igemm(const ConvGeom& g, const T* __restrict__ a,
                                           const T* __restrict__ b, T* __restrict__ out,
                                           const T* __restrict__ bias) {
    __shared__ T As[CBK][CBM + 1];
    __shared__ T Bs[CBK][CBN];
    const int t = threadIdx.x;
    const int grp = blockIdx.z % g.groups, split = blockIdx.z / g.groups;
    const int m0 = blockIdx.y * CBM, n0 = blockIdx.x * CBN;
    const int K = gemm_k<MODE>(g);
    const int kbeg = MODE == MODE_BWD_WEIGHT ? split * g.kchunk : 0;
    const int kend = MODE == MODE_BWD_WEIGHT ? min(K, kbeg + g.kchunk) : K;

    // Loader assignment: A element (m, k) = (idx >> 4, idx & 15) for idx = t + 256 i, so a
    // half-warp reads 16 consecutive k of one row; B column t & 63, k rows (t >> 6) + 4 i.
    const int bcol = t & (CBN - 1), brow = t >> 6;
    const ColState<MODE> cs = col_state<MODE>(g, grp, n0 + bcol);

    T ra[4], rb[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int idx = t + CTHREADS * i;
        ra[i] = load_a_elem<T, MODE>(g, a, grp, m0 + (idx >> 4), kbeg + (idx & 15), kend);
        rb[i] = load_b_elem<T, MODE>(g, cs, b, kbeg + brow + 4 * i, kend);
    }

    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
    const int tx = t & 15, ty = t >> 4;

    for (int k0 = kbeg; k0 < kend; k0 += CBK) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int idx = t + CTHREADS * i;
            As[idx & 15][idx >> 4] = ra[i];
            Bs[brow + 4 * i][bcol] = rb[i];
        }
        __syncthreads();
        bool more = k0 + CBK < kend;
        if (more) {  // next tile's global loads overlap this tile's arithmetic
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                int idx = t + CTHREADS * i;
                ra[i] = load_a_elem<T, MODE>(g, a, grp, m0 + (idx >> 4), k0 + CBK + (idx & 15),
                                             kend);
                rb[i] = load_b_elem<T, MODE>(g, cs, b, k0 + CBK + brow + 4 * i, kend);
            }
        }
#pragma unroll
        for (int kk = 0; kk < CBK; ++kk) {
            T av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();  // all reads done before the next tile is stored
    }

    const int M = gemm_m<MODE>(g), N = gemm_n<MODE>(g);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int col = n0 + tx + 16 * j;
            if (col < N) store_c_elem<T, MODE>(g, out, bias, grp, split, m, col, acc[i][j]);
        }
    }
}

// ---- Direct kernels ---------------------------------------------------------------------------

// y[n, oc, y, x] = bias[oc] + sum over (ci, ky, kx) of w[oc, ci, ky, kx] * x[n, grp*cg + ci, iy, ix].
template <typename T>
__device__ __forceinline__ void conv_direct_fwd_k(const ConvGeom& g, const T* __restrict__ x,
                                                  const T* __restrict__ w, T* __restrict__ y,
                                                  const T* __restrict__ bias) {
    const i64 total = (i64)g.n * g.o * g.oh * g.ow;
    CONV_LOOP(e, total) {
        int ox = (int)(e % g.ow);
        i64 r = e / g.ow;
        int oy = (int)(r % g.oh);
        r /= g.oh;
        int oc = (int)(r % g.o);
        i64 nn = r / g.o;
        int grp = oc / g.og;
        T acc = T(0);
        for (int ci = 0; ci < g.cg; ++ci) {
            const T* xp = x + (nn * g.c + (i64)grp * g.cg + ci) * g.h * g.w;
            const T* wp = w + ((i64)oc * g.cg + ci) * g.kh * g.kw;
            for (int ky = 0; ky < g.kh; ++ky) {
                int iy = oy * g.sh - g.ph + ky * g.dh;
                if ((unsigned)iy >= (unsigned)g.h) continue;
                for (int kx = 0; kx < g.kw; ++kx) {
                    int ix = ox * g.sw - g.pw + kx * g.dw;
                    if ((unsigned)ix >= (unsigned)g.w) continue;
                    acc += wp[ky * g.kw + kx] * xp[(i64)iy * g.w + ix];
                }
            }
        }
        if (bias) acc += bias[oc];
        y[e] = acc;
    }
}

// dx[n, c, iy, ix] = bias[c] (if any) + sum over (o in the group, ky, kx) with an integer
// output position y, x.
template <typename T>
__device__ __forceinline__ void conv_direct_bwd_data_k(const ConvGeom& g, const T* __restrict__ dy,
                                                       const T* __restrict__ w,
                                                       T* __restrict__ dx,
                                                       const T* __restrict__ bias) {
    const i64 total = (i64)g.n * g.c * g.h * g.w;
    CONV_LOOP(e, total) {
        int ix = (int)(e % g.w);
        i64 r = e / g.w;
        int iy = (int)(r % g.h);
        r /= g.h;
        int cc = (int)(r % g.c);
        i64 nn = r / g.c;
        int grp = cc / g.cg, ci = cc - grp * g.cg;
        T acc = T(0);
        for (int j = 0; j < g.og; ++j) {
            int oc = grp * g.og + j;
            const T* dyp = dy + (nn * g.o + oc) * g.oh * g.ow;
            const T* wp = w + ((i64)oc * g.cg + ci) * g.kh * g.kw;
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
                    acc += wp[ky * g.kw + kx] * dyp[(i64)oy * g.ow + ox];
                }
            }
        }
        if (bias) acc += bias[cc];
        dx[e] = acc;
    }
}

// Block-wide sum of one value per thread (blockDim.x == CTHREADS), fixed order; valid in thread 0.
template <typename T> __device__ __forceinline__ T conv_block_sum(T v) {
    __shared__ T part[CTHREADS / 32];
    v = warp_sum(v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    T s = T(0);
    if (threadIdx.x == 0)
        for (int i = 0; i < CTHREADS / 32; ++i) s += part[i];
    return s;
}

// One block per weight element (oc, ci, ky, kx): dw = sum over (n, y, x) of dy * x.
template <typename T>
__device__ __forceinline__ void conv_direct_bwd_weight_k(const ConvGeom& g,
                                                         const T* __restrict__ x,
                                                         const T* __restrict__ dy,
                                                         T* __restrict__ dw) {
    const int khw = g.kh * g.kw;
    const i64 e = blockIdx.x;  // grid = o * cg * kh * kw, one block each
    int r = (int)(e % khw);
    int ky = r / g.kw, kx = r - ky * g.kw;
    int rest = (int)(e / khw);
    int ci = rest % g.cg, oc = rest / g.cg;
    int grp = oc / g.og;
    const int hw = g.oh * g.ow;
    const i64 total = (i64)g.n * hw;
    T acc = T(0);
    for (i64 k = threadIdx.x; k < total; k += CTHREADS) {
        i64 nn = k / hw;
        int q = (int)(k - nn * hw);
        int oy = q / g.ow, ox = q - oy * g.ow;
        int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
        if ((unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) continue;
        acc += dy[(nn * g.o + oc) * hw + q] *
               x[((nn * g.c + (i64)grp * g.cg + ci) * g.h + iy) * g.w + ix];
    }
    acc = conv_block_sum(acc);
    if (threadIdx.x == 0) dw[e] = acc;
}

// One block per output channel: db[oc] = sum over (n, y, x) of dy.
template <typename T>
__device__ __forceinline__ void conv_bias_grad_k(const ConvGeom& g, const T* __restrict__ dy,
                                                 T* __restrict__ db) {
    const int oc = blockIdx.x;
    const i64 hw = (i64)g.oh * g.ow;
    const i64 total = (i64)g.n * hw;
    T acc = T(0);
    for (i64 k = threadIdx.x; k < total; k += CTHREADS) {
        i64 nn = k / hw;
        acc += dy[(nn * g.o + oc) * hw + (k - nn * hw)];
    }
    acc = conv_block_sum(acc);
    if (threadIdx.x == 0) db[oc] = acc;
}

// out[i] = sum over s < splits of ws[s * len + i], in split order.
template <typename T>
__device__ __forceinline__ void conv_splitk_reduce_k(const T* __restrict__ ws, T* __restrict__ out,
                                                     i64 len, int splits) {
    CONV_LOOP(i, len) {
        T acc = T(0);
        for (int s = 0; s < splits; ++s) acc += ws[(i64)s * len + i];
        out[i] = acc;
    }
}

// ---- Entry points (f32 and f64) ---------------------------------------------------------------

#define CONV_ENTRIES(T, SFX)                                                                       \
    extern "C" __global__ void __launch_bounds__(CTHREADS)                                         \
        conv_igemm_fwd_##SFX(ConvGeom g, const T* w, const T* x, T* y, const T* bias) {            \
        conv_igemm<T, MODE_FWD>(g, w, x, y, bias);                                                 \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(CTHREADS)                                         \
        conv_igemm_bwd_data_##SFX(ConvGeom g, const T* w, const T* dy, T* dx, const T* bias) {     \
        conv_igemm<T, MODE_BWD_DATA>(g, w, dy, dx, bias);                                          \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(CTHREADS)                                         \
        conv_igemm_bwd_weight_##SFX(ConvGeom g, const T* dy, const T* x, T* dw) {                  \
        conv_igemm<T, MODE_BWD_WEIGHT>(g, dy, x, dw, nullptr);                                     \
    }                                                                                              \
    extern "C" __global__ void conv_direct_fwd_##SFX(ConvGeom g, const T* x, const T* w, T* y,     \
                                                     const T* bias) {                              \
        conv_direct_fwd_k<T>(g, x, w, y, bias);                                                    \
    }                                                                                              \
    extern "C" __global__ void conv_direct_bwd_data_##SFX(ConvGeom g, const T* dy, const T* w,     \
                                                          T* dx, const T* bias) {                  \
        conv_direct_bwd_data_k<T>(g, dy, w, dx, bias);                                             \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(CTHREADS)                                         \
        conv_direct_bwd_weight_##SFX(ConvGeom g, const T* x, const T* dy, T* dw) {                 \
        conv_direct_bwd_weight_k<T>(g, x, dy, dw);                                                 \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(CTHREADS)                                         \
        conv_bias_grad_##SFX(ConvGeom g, const T* dy, T* db) {                                     \
        conv_bias_grad_k<T>(g, dy, db);                                                            \
    }                                                                                              \
    extern "C" __global__ void conv_splitk_reduce_##SFX(const T* ws, T* out, i64 len,              \
                                                        int splits) {                              \
        conv_splitk_reduce_k<T>(ws, out, len, splits);                                             \
    }

CONV_ENTRIES(float, f32)
CONV_ENTRIES(double, f64)
