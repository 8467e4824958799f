// loss.cu: binary cross-entropy on probabilities and on logits, forward and backward.
//
// Forward: each element's loss is computed in the input type and accumulated in double; the
// reduction is deterministic (no atomics): pass 1 has a grid whose size depends only on n (never
// on the device), each thread folds a fixed strided subset, each block combines its threads in a
// fixed tree and writes one partial; pass 2 (one block) folds the partials in a fixed tree and
// writes `scale * sum` to a one-element device buffer, so a training loop never has to read the
// loss back to the host. Backward: one fused elementwise pass writing `scale * dloss/dinput`.
// The formulas are the CPU kernels' (ember-cpu/src/loss.rs): probabilities are clamped to
// [eps, 1 - eps] with zero gradient outside; logits use max(x,0) - x*y + ln(1 + e^-|x|).

template <typename T> __device__ __forceinline__ T bce_prob_elem(T p, T y, T eps) {
    if (!m_isnan(p)) p = p < eps ? eps : (p > T(1) - eps ? T(1) - eps : p);
    return -(y * m_log(p) + (T(1) - y) * m_log(T(1) - p));
}

template <typename T> __device__ __forceinline__ T bce_logit_elem(T x, T y) {
    T pos = x > T(0) ? x : T(0);
    return pos - x * y + m_log1p(m_exp(-m_abs(x)));
}

// Fixed-tree sum of one double per thread over the block (blockDim.x = 256); valid in thread 0.
__device__ __forceinline__ double block_sum_f64(double v) {
    __shared__ double red[32];
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = (lane < (int)(blockDim.x >> 5)) ? red[lane] : 0.0;
    if (warp == 0) v = warp_sum(v);
    return v;
}

// Pass 1. logits != 0 selects the logits form.
template <typename T>
__device__ __forceinline__ void bce_partial(const T* __restrict__ x, const T* __restrict__ y, i64 n,
                                            T eps, int logits, double* __restrict__ part) {
    double s = 0.0;
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T l = logits ? bce_logit_elem(x[i], y[i]) : bce_prob_elem(x[i], y[i], eps);
        s += (double)l;
    }
    s = block_sum_f64(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Pass 2: one block folds `nparts` partials and writes scale * total.
template <typename T>
__device__ __forceinline__ void bce_finish(const double* __restrict__ part, int nparts,
                                           double scale, T* __restrict__ out) {
    double s = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) out[0] = (T)(scale * s);
}

// dp = scale * (p - y) / (p (1 - p)) inside the clamp range, 0 outside; NaN stays NaN.
template <typename T>
__device__ __forceinline__ void bce_probs_grad(const T* __restrict__ p, const T* __restrict__ y,
                                               i64 n, T eps, T scale, T* __restrict__ dp) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T pv = p[i], yv = y[i], g;
        if (m_isnan(pv)) g = pv;
        else if (pv < eps || pv > T(1) - eps) g = T(0);
        else g = (pv - yv) / (pv * (T(1) - pv));
        dp[i] = scale * g;
    }
}

// dx = scale * (sigmoid(x) - y).
template <typename T>
__device__ __forceinline__ void bce_logits_grad(const T* __restrict__ x, const T* __restrict__ y,
                                                i64 n, T scale, T* __restrict__ dx) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        dx[i] = scale * (act_sigmoid(x[i]) - y[i]);
}

#define EMBER_LOSS(T, S)                                                                           \
    extern "C" __global__ void bce_partial_##S(const T* x, const T* y, i64 n, T eps, int logits,   \
                                               double* part) {                                     \
        bce_partial<T>(x, y, n, eps, logits, part);                                                \
    }                                                                                              \
    extern "C" __global__ void bce_finish_##S(const double* part, int nparts, double scale,        \
                                              T* out) {                                            \
        bce_finish<T>(part, nparts, scale, out);                                                   \
    }                                                                                              \
    extern "C" __global__ void bce_probs_grad_##S(const T* p, const T* y, i64 n, T eps, T scale,   \
                                                  T* dp) {                                         \
        bce_probs_grad<T>(p, y, n, eps, scale, dp);                                                \
    }                                                                                              \
    extern "C" __global__ void bce_logits_grad_##S(const T* x, const T* y, i64 n, T scale,         \
                                                   T* dx) {                                        \
        bce_logits_grad<T>(x, y, n, scale, dx);                                                    \
    }

EMBER_LOSS(float, f32)
EMBER_LOSS(double, f64)
