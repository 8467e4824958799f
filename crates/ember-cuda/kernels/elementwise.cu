// elementwise.cu: unary maps (math and activations) forward and backward, binary maps with
// broadcasting, strided copies and 16-bit casts.
//
// Why it is built this way: these kernels are memory-bound, so the only things that matter are
// touching each byte once and issuing wide, coalesced accesses. Contiguous operands take a
// grid-stride loop over 16-byte vectors (float4 / double2) with a scalar tail; any other view
// (transposed, sliced, broadcast with stride 0) takes a grid-stride loop that decodes each
// element's offset from the `View` struct. The op is a run-time code (uniform across the grid, so
// the switch costs no divergence) to keep one kernel per layout and type rather than one per op.

// Op codes (U_*, B_*) come from the ember-ops crate, generated into the NVRTC prelude.

// ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): stable for any x.
template <typename T> __device__ __forceinline__ T softplus(T x) {
    if (m_isnan(x)) return x;
    T pos = x > T(0) ? x : T(0);
    return pos + m_log1p(m_exp(-m_abs(x)));
}

template <typename T> __device__ __forceinline__ T unary_apply(int op, T x, T p0, T p1) {
    switch (op) {
    case U_NEG: return -x;
    case U_ABS: return m_abs(x);
    case U_EXP: return m_exp(x);
    case U_LOG: return m_log(x);
    case U_SQRT: return m_sqrt(x);
    case U_SQR: return x * x;
    case U_RECIP: return T(1) / x;
    case U_SIN: return m_sin(x);
    case U_COS: return m_cos(x);
    case U_TANH: return m_tanh(x);
    case U_SIGMOID: return act_sigmoid(x);
    case U_RELU: return (x > T(0) || m_isnan(x)) ? x : T(0);
    case U_LEAKY_RELU: return x > T(0) ? x : x * p0;
    case U_ELU: return x > T(0) ? x : p0 * (m_exp(x) - T(1));
    case U_GELU_TANH: return act_gelu_tanh(x);
    case U_GELU_ERF: return act_gelu_erf(x);
    case U_SOFTPLUS: return softplus(x);
    case U_CLAMP: return x < p0 ? p0 : (x > p1 ? p1 : x);
    case U_POWF: return m_pow(x, p0);
    case U_ADD_SCALAR: return x + p0;
    case U_MUL_SCALAR: return x * p0;
    case U_SILU: return x * act_sigmoid(x);
    default: return x;  // U_IDENTITY
    }
}

// dy/dx of op at x, given y = op(x) (some rules are cheaper from y).
template <typename T> __device__ __forceinline__ T unary_deriv(int op, T x, T y, T p0, T p1) {
    switch (op) {
    case U_NEG: return T(-1);
    case U_ABS: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case U_EXP: return y;
    case U_LOG: return T(1) / x;
    case U_SQRT: return T(0.5) / y;
    case U_SQR: return T(2) * x;
    case U_RECIP: return -y * y;
    case U_SIN: return m_cos(x);
    case U_COS: return -m_sin(x);
    case U_TANH: return T(1) - y * y;
    case U_SIGMOID: return y * (T(1) - y);
    case U_RELU: return x > T(0) ? T(1) : T(0);
    case U_LEAKY_RELU: return x > T(0) ? T(1) : p0;
    case U_ELU: return x > T(0) ? T(1) : y + p0;
    case U_GELU_TANH: {
        const T c = T(0.7978845608028654), k = T(0.044715);
        T t = m_tanh(c * (x + k * x * x * x));
        T dinner = c * (T(1) + T(3) * k * x * x);
        return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
    }
    case U_GELU_ERF: {
        T cdf = T(0.5) * (T(1) + m_erf(x * T(0.7071067811865476)));
        T pdf = m_exp(-(x * x) * T(0.5)) * T(0.3989422804014327);
        // At ±inf the limits 1 and 0 (x·φ(x) would be ±inf·0 = NaN), as on the CPU.
        if (m_isnan(x - x)) return cdf;
        return cdf + x * pdf;
    }
    case U_SOFTPLUS: return act_sigmoid(x);
    case U_CLAMP: return (x >= p0 && x <= p1) ? T(1) : T(0);
    case U_POWF: return p0 == T(0) ? T(0) : p0 * m_pow(x, p0 - T(1));  // no 0*inf at p = 0
    case U_ADD_SCALAR: return T(1);
    case U_MUL_SCALAR: return p0;
    case U_SILU: { T s = act_sigmoid(x); return s + x * s * (T(1) - s); }
    default: return T(1);
    }
}

template <typename T> __device__ __forceinline__ T binary_apply(int op, T a, T b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return m_pow(a, b);
    case B_MAXIMUM: return (m_isnan(a) || m_isnan(b)) ? a + b : (a >= b ? a : b);
    case B_MINIMUM: return (m_isnan(a) || m_isnan(b)) ? a + b : (a <= b ? a : b);
    case B_EQ: return a == b ? T(1) : T(0);
    case B_NE: return a != b ? T(1) : T(0);
    case B_LT: return a < b ? T(1) : T(0);
    case B_LE: return a <= b ? T(1) : T(0);
    case B_GT: return a > b ? T(1) : T(0);
    case B_GE: return a >= b ? T(1) : T(0);
    default: return a + b + m_inf<T>() - m_inf<T>();  // unknown code: NaN, never a silent op
    }
}

// 16-byte vector of T: four floats or two doubles.
template <typename T> struct Vec16;
template <> struct Vec16<float> { typedef float4 type; static const int N = 4; };
template <> struct Vec16<double> { typedef double2 type; static const int N = 2; };

__device__ __forceinline__ bool aligned16(const void* p) { return (((u64)p) & 15) == 0; }

// ---- Unary forward ----------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void unary_contig(int op, T p0, T p1, const T* __restrict__ x,
                                             T* __restrict__ out, i64 n) {
    typedef typename Vec16<T>::type V;
    const int W = Vec16<T>::N;
    i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    i64 step = (i64)gridDim.x * blockDim.x;
    i64 nv = (aligned16(x) && aligned16(out)) ? n / W : 0;
    for (i64 i = tid; i < nv; i += step) {
        V v = reinterpret_cast<const V*>(x)[i];
        T* e = reinterpret_cast<T*>(&v);
#pragma unroll
        for (int w = 0; w < W; ++w) e[w] = unary_apply(op, e[w], p0, p1);
        reinterpret_cast<V*>(out)[i] = v;
    }
    for (i64 i = nv * W + tid; i < n; i += step) out[i] = unary_apply(op, x[i], p0, p1);
}

template <typename T>
__device__ __forceinline__ void unary_strided(int op, T p0, T p1, const T* __restrict__ x, View xv,
                                              T* __restrict__ out, i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = unary_apply(op, x[view_offset(xv, i)], p0, p1);
}

// ---- Unary backward: dx = dy * op'(x), all four contiguous -------------------------------------

template <typename T>
__device__ __forceinline__ void unary_bwd(int op, T p0, T p1, const T* __restrict__ x,
                                          const T* __restrict__ y, const T* __restrict__ dy,
                                          T* __restrict__ dx, i64 n) {
    typedef typename Vec16<T>::type V;
    const int W = Vec16<T>::N;
    i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    i64 step = (i64)gridDim.x * blockDim.x;
    bool al = aligned16(x) && aligned16(y) && aligned16(dy) && aligned16(dx);
    i64 nv = al ? n / W : 0;
    for (i64 i = tid; i < nv; i += step) {
        V xv = reinterpret_cast<const V*>(x)[i];
        V yv = reinterpret_cast<const V*>(y)[i];
        V gv = reinterpret_cast<const V*>(dy)[i];
        T* xe = reinterpret_cast<T*>(&xv);
        T* ye = reinterpret_cast<T*>(&yv);
        T* ge = reinterpret_cast<T*>(&gv);
#pragma unroll
        for (int w = 0; w < W; ++w) ge[w] = ge[w] * unary_deriv(op, xe[w], ye[w], p0, p1);
        reinterpret_cast<V*>(dx)[i] = gv;
    }
    for (i64 i = nv * W + tid; i < n; i += step)
        dx[i] = dy[i] * unary_deriv(op, x[i], y[i], p0, p1);
}

// ---- Binary -------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void binary_contig(int op, const T* __restrict__ a,
                                              const T* __restrict__ b, T* __restrict__ out, i64 n) {
    typedef typename Vec16<T>::type V;
    const int W = Vec16<T>::N;
    i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    i64 step = (i64)gridDim.x * blockDim.x;
    i64 nv = (aligned16(a) && aligned16(b) && aligned16(out)) ? n / W : 0;
    for (i64 i = tid; i < nv; i += step) {
        V av = reinterpret_cast<const V*>(a)[i];
        V bv = reinterpret_cast<const V*>(b)[i];
        T* ae = reinterpret_cast<T*>(&av);
        T* be = reinterpret_cast<T*>(&bv);
#pragma unroll
        for (int w = 0; w < W; ++w) ae[w] = binary_apply(op, ae[w], be[w]);
        reinterpret_cast<V*>(out)[i] = av;
    }
    for (i64 i = nv * W + tid; i < n; i += step) out[i] = binary_apply(op, a[i], b[i]);
}

// Broadcasting is resolved by the host: both views have the output's shape, stride 0 along
// broadcast axes.
template <typename T>
__device__ __forceinline__ void binary_strided(int op, const T* __restrict__ a, View av,
                                               const T* __restrict__ b, View bv,
                                               T* __restrict__ out, i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = binary_apply(op, a[view_offset(av, i)], b[view_offset(bv, i)]);
}

// ---- extern "C" entry points (names are what the host loads) -----------------------------------

#define EMBER_ELEMENTWISE(T, S)                                                                    \
    extern "C" __global__ void unary_contig_##S(int op, T p0, T p1, const T* x, T* out, i64 n) {   \
        unary_contig<T>(op, p0, p1, x, out, n);                                                    \
    }                                                                                              \
    extern "C" __global__ void unary_strided_##S(int op, T p0, T p1, const T* x, View xv, T* out,  \
                                                 i64 n) {                                          \
        unary_strided<T>(op, p0, p1, x, xv, out, n);                                               \
    }                                                                                              \
    extern "C" __global__ void unary_bwd_##S(int op, T p0, T p1, const T* x, const T* y,           \
                                             const T* dy, T* dx, i64 n) {                          \
        unary_bwd<T>(op, p0, p1, x, y, dy, dx, n);                                                 \
    }                                                                                              \
    extern "C" __global__ void binary_contig_##S(int op, const T* a, const T* b, T* out, i64 n) {  \
        binary_contig<T>(op, a, b, out, n);                                                        \
    }                                                                                              \
    extern "C" __global__ void binary_strided_##S(int op, const T* a, View av, const T* b,         \
                                                  View bv, T* out, i64 n) {                        \
        binary_strided<T>(op, a, av, b, bv, out, n);                                               \
    }

EMBER_ELEMENTWISE(float, f32)
EMBER_ELEMENTWISE(double, f64)

// ---- 16-bit casts (contiguous; for feeding the tensor-core GEMM and reading its inputs back) ---

extern "C" __global__ void cast_f32_to_bf16(const float* __restrict__ x, u16* __restrict__ out,
                                            i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = f32_to_bf16(x[i]);
}
extern "C" __global__ void cast_f32_to_f16(const float* __restrict__ x, u16* __restrict__ out,
                                           i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = f32_to_f16(x[i]);
}
extern "C" __global__ void cast_bf16_to_f32(const u16* __restrict__ x, float* __restrict__ out,
                                            i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = bf16_to_f32(x[i]);
}
extern "C" __global__ void cast_f16_to_f32(const u16* __restrict__ x, float* __restrict__ out,
                                           i64 n) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = f16_to_f32(x[i]);
}
