// reduce.cu: reductions over any set of axes (sum, mean, max, min, argmax, argmin), and softmax /
// log-softmax along the rows of a contiguous matrix.
//
// Determinism: no atomics anywhere. Every output is combined in an order fixed by the sizes
// alone: each thread folds a fixed, strided subset of elements in increasing order, the block
// combines thread results through a fixed butterfly (warp shuffles) and a fixed shared-memory
// step, and when one output's elements are split over several blocks ("chunks") the partial
// results are written to a scratch buffer and combined by a second kernel in chunk order. The
// same input therefore gives bit-identical output on every run and every GPU of the same arch.
//
// Layout: the host permutes the input view so the kept axes come first and the reduced axes last,
// and passes them as two Views: `kv` addresses output o's first element, `rv` the r-th element of
// the reduction relative to it. Two strategies, chosen on the host by size:
//   - one thread per output, folding all its elements sequentially (many outputs: column sums
//     over a batch are coalesced because neighbouring threads read neighbouring columns);
//   - one block per (output, chunk), tree-reduced, then a second pass over chunks.
// Op codes (R_*) come from ember_ops::ReduceOp, generated into the NVRTC prelude.

// A running reduction state: value and (for arg-reductions) the index it came from.
template <typename T> struct Acc {
    T v;
    i64 i;
};

template <typename T> __device__ __forceinline__ Acc<T> acc_init(int op) {
    Acc<T> a;
    a.i = -1;
    if (op == R_MAX || op == R_ARGMAX) a.v = -m_inf<T>();
    else if (op == R_MIN || op == R_ARGMIN) a.v = m_inf<T>();
    else a.v = T(0);
    return a;
}

// Combines two states. For arg-reductions the rule is commutative and associative (NaN with the
// lowest index wins; else the best value; ties go to the lowest index), so any fixed tree gives
// the CPU's "first occurrence" answer. i == -1 marks an empty state.
template <typename T> __device__ __forceinline__ Acc<T> acc_combine(int op, Acc<T> a, Acc<T> b) {
    if (op == R_SUM || op == R_MEAN) {
        a.v += b.v;
        return a;
    }
    if (op == R_MAX) { a.v = nan_max(a.v, b.v); return a; }
    if (op == R_MIN) {
        if (m_isnan(a.v)) return a;
        if (m_isnan(b.v)) return b;
        a.v = a.v <= b.v ? a.v : b.v;
        return a;
    }
    if (b.i < 0) return a;
    if (a.i < 0) return b;
    bool an = m_isnan(a.v), bn = m_isnan(b.v);
    if (an || bn) {
        if (an && bn) return a.i <= b.i ? a : b;
        return an ? a : b;
    }
    bool b_better = (op == R_ARGMAX) ? (b.v > a.v) : (b.v < a.v);
    bool a_better = (op == R_ARGMAX) ? (a.v > b.v) : (a.v < b.v);
    if (b_better) return b;
    if (a_better) return a;
    return a.i <= b.i ? a : b;
}

template <typename T> __device__ __forceinline__ Acc<T> acc_shfl(Acc<T> a, int lane_mask) {
    Acc<T> o;
    o.v = __shfl_xor_sync(0xffffffffu, a.v, lane_mask);
    o.i = __shfl_xor_sync(0xffffffffu, a.i, lane_mask);
    return o;
}

// Block-wide combine (blockDim.x a multiple of 32, at most 1024). Result valid in thread 0.
template <typename T> __device__ __forceinline__ Acc<T> block_combine(int op, Acc<T> a) {
    __shared__ T sv[32];
    __shared__ i64 si[32];
    for (int o = 16; o > 0; o >>= 1) a = acc_combine(op, a, acc_shfl(a, o));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int nwarps = blockDim.x >> 5;
    if (lane == 0) { sv[warp] = a.v; si[warp] = a.i; }
    __syncthreads();
    if (warp == 0) {
        Acc<T> b = acc_init<T>(op);
        if (lane < nwarps) { b.v = sv[lane]; b.i = si[lane]; }
        for (int o = 16; o > 0; o >>= 1) b = acc_combine(op, b, acc_shfl(b, o));
        a = b;
    }
    return a;
}

template <typename T> __device__ __forceinline__ T acc_finish(int op, Acc<T> a, i64 inner) {
    if (op == R_MEAN) return a.v / T(inner);
    if (op == R_ARGMAX || op == R_ARGMIN) return T(a.i < 0 ? 0 : a.i);
    return a.v;
}

// Strategy 1: one thread per output, elements folded sequentially in index order.
template <typename T>
__device__ __forceinline__ void reduce_thread(int op, const T* __restrict__ x, View kv, View rv,
                                              i64 outer, i64 inner, T* __restrict__ out) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 o = blockIdx.x * (i64)blockDim.x + threadIdx.x; o < outer; o += step) {
        i64 base = view_offset(kv, o);
        Acc<T> a = acc_init<T>(op);
        for (i64 r = 0; r < inner; ++r) {
            Acc<T> e;
            e.v = x[base + view_offset(rv, r)];
            e.i = r;
            a = acc_combine(op, a, e);
        }
        out[o] = acc_finish(op, a, inner);
    }
}

// Strategy 2, pass 1: block b reduces chunk (b % nchunks) of output (b / nchunks). With one
// chunk it writes the finished output; otherwise it writes a partial state.
template <typename T>
__device__ __forceinline__ void reduce_block(int op, const T* __restrict__ x, View kv, View rv,
                                             i64 outer, i64 inner, i64 chunk, i64 nchunks,
                                             T* __restrict__ out, T* __restrict__ part_v,
                                             i64* __restrict__ part_i) {
    for (i64 b = blockIdx.x; b < outer * nchunks; b += gridDim.x) {
        i64 o = b / nchunks, c = b - o * nchunks;
        i64 base = view_offset(kv, o);
        i64 lo = c * chunk;
        i64 hi = lo + chunk < inner ? lo + chunk : inner;
        Acc<T> a = acc_init<T>(op);
        for (i64 r = lo + threadIdx.x; r < hi; r += blockDim.x) {
            Acc<T> e;
            e.v = x[base + view_offset(rv, r)];
            e.i = r;
            a = acc_combine(op, a, e);
        }
        a = block_combine(op, a);
        if (threadIdx.x == 0) {
            if (nchunks == 1) {
                out[o] = acc_finish(op, a, inner);
            } else {
                part_v[b] = a.v;
                part_i[b] = a.i;
            }
        }
        __syncthreads();  // the shared scratch of block_combine is reused by the next b
    }
}

// Strategy 2, pass 2: one warp per output combines its nchunks partial states in a fixed order.
template <typename T>
__device__ __forceinline__ void reduce_final(int op, const T* __restrict__ part_v,
                                             const i64* __restrict__ part_i, i64 outer,
                                             i64 inner, i64 nchunks, T* __restrict__ out) {
    int lane = threadIdx.x & 31;
    i64 warps_total = ((i64)gridDim.x * blockDim.x) >> 5;
    for (i64 o = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5; o < outer; o += warps_total) {
        Acc<T> a = acc_init<T>(op);
        for (i64 c = lane; c < nchunks; c += 32) {
            Acc<T> e;
            e.v = part_v[o * nchunks + c];
            e.i = part_i[o * nchunks + c];
            a = acc_combine(op, a, e);
        }
        for (int s = 16; s > 0; s >>= 1) a = acc_combine(op, a, acc_shfl(a, s));
        if (lane == 0) out[o] = acc_finish(op, a, inner);
    }
}

// ---- Softmax / log-softmax of each row of a contiguous [rows, cols] matrix -------------------
// Max first (NaN wins; an all -inf row uses 0), then the sum of exp(x - max), then the write:
// exp(x - max) * (1/sum) or x - max - ln(sum), the CPU kernel's formulas.

// Narrow rows: one warp per row, each lane strides over the columns.
template <typename T>
__device__ __forceinline__ void softmax_warp(const T* __restrict__ x, T* __restrict__ out,
                                             i64 rows, i64 cols, int log_mode) {
    int lane = threadIdx.x & 31;
    i64 warps_total = ((i64)gridDim.x * blockDim.x) >> 5;
    for (i64 r = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5; r < rows; r += warps_total) {
        const T* xr = x + r * cols;
        T* orow = out + r * cols;
        T m = -m_inf<T>();
        for (i64 c = lane; c < cols; c += 32) m = nan_max(m, xr[c]);
        m = warp_max(m);
        if (m == -m_inf<T>()) m = T(0);
        T s = T(0);
        for (i64 c = lane; c < cols; c += 32) s += m_exp(xr[c] - m);
        s = warp_sum(s);
        if (log_mode) {
            T ls = m_log(s);
            for (i64 c = lane; c < cols; c += 32) orow[c] = xr[c] - m - ls;
        } else {
            T inv = T(1) / s;
            for (i64 c = lane; c < cols; c += 32) orow[c] = m_exp(xr[c] - m) * inv;
        }
    }
}

// Wide rows: one block per row; warp results meet in shared memory.
template <typename T>
__device__ __forceinline__ void softmax_block(const T* __restrict__ x, T* __restrict__ out,
                                              i64 rows, i64 cols, int log_mode) {
    __shared__ T red[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        T* orow = out + r * cols;
        T m = -m_inf<T>();
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) m = nan_max(m, xr[c]);
        m = warp_max(m);
        if (lane == 0) red[warp] = m;
        __syncthreads();
        m = lane < nwarps ? red[lane] : -m_inf<T>();
        m = warp_max(m);
        if (m == -m_inf<T>()) m = T(0);
        __syncthreads();
        T s = T(0);
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) s += m_exp(xr[c] - m);
        s = warp_sum(s);
        if (lane == 0) red[warp] = s;
        __syncthreads();
        s = lane < nwarps ? red[lane] : T(0);
        s = warp_sum(s);
        __syncthreads();
        if (log_mode) {
            T ls = m_log(s);
            for (i64 c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = xr[c] - m - ls;
        } else {
            T inv = T(1) / s;
            for (i64 c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = m_exp(xr[c] - m) * inv;
        }
    }
}

#define EMBER_REDUCE(T, S)                                                                         \
    extern "C" __global__ void reduce_thread_##S(int op, const T* x, View kv, View rv, i64 outer,  \
                                                 i64 inner, T* out) {                              \
        reduce_thread<T>(op, x, kv, rv, outer, inner, out);                                        \
    }                                                                                              \
    extern "C" __global__ void reduce_block_##S(int op, const T* x, View kv, View rv, i64 outer,   \
                                                i64 inner, i64 chunk, i64 nchunks, T* out,         \
                                                T* part_v, i64* part_i) {                          \
        reduce_block<T>(op, x, kv, rv, outer, inner, chunk, nchunks, out, part_v, part_i);         \
    }                                                                                              \
    extern "C" __global__ void reduce_final_##S(int op, const T* part_v, const i64* part_i,        \
                                                i64 outer, i64 inner, i64 nchunks, T* out) {       \
        reduce_final<T>(op, part_v, part_i, outer, inner, nchunks, out);                           \
    }                                                                                              \
    extern "C" __global__ void softmax_warp_##S(const T* x, T* out, i64 rows, i64 cols, int lg) {  \
        softmax_warp<T>(x, out, rows, cols, lg);                                                   \
    }                                                                                              \
    extern "C" __global__ void softmax_block_##S(const T* x, T* out, i64 rows, i64 cols, int lg) { \
        softmax_block<T>(x, out, rows, cols, lg);                                                  \
    }

EMBER_REDUCE(float, f32)
EMBER_REDUCE(double, f64)
