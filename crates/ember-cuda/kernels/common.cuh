// common.cuh: the few definitions every ember kernel module shares.
//
// ember compiles each kernels/*.cu at run time with NVRTC and no include path, so nothing here
// includes a CUDA header: 16-bit floats are raw `u16` bit patterns converted with inline PTX,
// and the integer/limit constants are spelled out. The host prepends this file to every module.
//
// Contents: integer typedefs, f16/bf16 <-> f32 conversions, the `View` struct that carries a
// strided operand (shape, strides, offset) by value, float/double math overloads, the stable
// activation functions shared by the elementwise kernels and the GEMM epilogue, and warp-level
// reductions.

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

#define EMBER_MAX_RANK 8

// ---- 16-bit float conversions (inline PTX; sm_80+ for bf16 rounding) ----------------------

__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// ---- Strided operands -----------------------------------------------------------------------

// A strided view passed by value as a kernel parameter (144 bytes). Element i of the view (in
// row-major order of `shape`) lives at `offset + sum_d idx_d * strides[d]`.
struct View {
    int rank;
    int pad_;
    i64 offset;
    i64 shape[EMBER_MAX_RANK];
    i64 strides[EMBER_MAX_RANK];
};

// Buffer offset of the i-th element (row-major) of view v: peel indices from the last axis.
__device__ __forceinline__ i64 view_offset(const View& v, i64 i) {
    i64 off = v.offset;
    for (int d = v.rank - 1; d >= 0; --d) {
        i64 n = v.shape[d];
        i64 q = i / n;
        off += (i - q * n) * v.strides[d];
        i = q;
    }
    return off;
}

// ---- Math overloads so templates work for float and double ----------------------------------

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_sin(float x) { return sinf(x); }
__device__ __forceinline__ double m_sin(double x) { return sin(x); }
__device__ __forceinline__ float m_cos(float x) { return cosf(x); }
__device__ __forceinline__ double m_cos(double x) { return cos(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
template <typename T> __device__ __forceinline__ bool m_isnan(T x) { return x != x; }
template <typename T> __device__ __forceinline__ T m_inf();
template <> __device__ __forceinline__ float m_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double m_inf<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}

// ---- Activations shared by elementwise kernels and GEMM epilogues ---------------------------

// Logistic sigmoid through e^-|x|: nothing overflows, exact 0 and 1 at the extremes.
template <typename T> __device__ __forceinline__ T act_sigmoid(T x) {
    if (x >= T(0)) return T(1) / (T(1) + m_exp(-x));
    T e = m_exp(x);
    return e / (T(1) + e);
}

// GELU, tanh approximation (the form Keras and PyTorch's approximate="tanh" use).
template <typename T> __device__ __forceinline__ T act_gelu_tanh(T x) {
    const T c = T(0.7978845608028654);
    T inner = c * (x + T(0.044715) * x * x * x);
    return T(0.5) * x * (T(1) + m_tanh(inner));
}

// GELU, exact: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's and Keras's default). At -inf
// the limit -0 (the formula gives -inf * 0 = NaN), as the CPU kernels (ember-cpu's verf and
// unary.rs) do; PyTorch gives NaN there. (x - x is NaN exactly for infinities and NaN.)
template <typename T> __device__ __forceinline__ T act_gelu_erf(T x) {
    if (x < T(0) && m_isnan(x - x)) return -T(0);
    return T(0.5) * x * (T(1) + m_erf(x * T(0.7071067811865476)));
}

// Epilogue activation codes (ACT_*) come from ember_ops::Activation, generated into the prelude.

template <typename T> __device__ __forceinline__ T apply_act(int act, T v) {
    switch (act) {
    case ACT_RELU: return (v > T(0) || m_isnan(v)) ? v : T(0);
    case ACT_SIGMOID: return act_sigmoid(v);
    case ACT_TANH: return m_tanh(v);
    case ACT_GELU: return act_gelu_erf(v);
    case ACT_GELU_TANH: return act_gelu_tanh(v);
    default: return v;
    }
}

// The same, out of line: GEMM epilogues call it once per output element, and inlining the
// transcendental branches at every one of a thread's 64 accumulators multiplies code size (and
// compile time) for no speed: the epilogue runs once per K loop.
__device__ __noinline__ float apply_act_f32(int act, float v) { return apply_act(act, v); }

// ---- Warp reductions (fixed butterfly order: deterministic) ---------------------------------

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Max that lets NaN win, so a NaN anywhere in a row propagates like the CPU kernels.
template <typename T> __device__ __forceinline__ T nan_max(T a, T b) {
    if (m_isnan(a)) return a;
    if (m_isnan(b)) return b;
    return a >= b ? a : b;
}

template <typename T> __device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
