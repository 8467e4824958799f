// optim.cu: fused optimizer steps, SGD (with momentum / Nesterov), Adam / AdamW, AdaGrad and
// RMSProp (plain, with momentum, centered).
//
// One launch updates a whole parameter and its state buffers in a single pass: each element is
// read once and written once, with no temporaries. The update rules are Keras 3's, exactly as in
// ember-cpu/src/optim.rs (decoupled weight decay applied first; Adam adds epsilon to sqrt(v)
// after the bias corrections are folded into the step size lr_t, which the host computes in
// double). Every arithmetic step uses the round-to-nearest intrinsics (__fmul_rn, __fadd_rn,
// ...), which the compiler may not fuse into FMAs, so each operation rounds exactly as the CPU's
// separate multiply and add do: the GPU step is bit-identical to the CPU step.

__device__ __forceinline__ float r_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float r_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float r_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float r_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float r_sqrt(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double r_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double r_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double r_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double r_div(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ double r_sqrt(double a) { return __dsqrt_rn(a); }

// SGD: with momentum, v = mom*v - lr*g; p += v (Nesterov: p += mom*v - lr*g).
// Without momentum (has_mom == 0), p -= lr*g and `vel` is not touched.
template <typename T>
__device__ __forceinline__ void sgd_step(T* __restrict__ p, const T* __restrict__ g,
                                         T* __restrict__ vel, i64 n, T lr, T mom, T decay,
                                         int use_wd, int has_mom, int nesterov) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T pi = p[i], gi = g[i];
        if (use_wd) pi = r_sub(pi, r_mul(decay, pi));
        if (!has_mom) {
            pi = r_sub(pi, r_mul(lr, gi));
        } else {
            T v = r_sub(r_mul(mom, vel[i]), r_mul(lr, gi));
            vel[i] = v;
            pi = nesterov ? r_add(pi, r_sub(r_mul(mom, v), r_mul(lr, gi))) : r_add(pi, v);
        }
        p[i] = pi;
    }
}

// Adam (Keras form): m += (1-b1)(g - m); v += (1-b2)(g^2 - v); p -= lr_t * m / (sqrt(v) + eps).
template <typename T>
__device__ __forceinline__ void adam_step(T* __restrict__ p, const T* __restrict__ g,
                                          T* __restrict__ m, T* __restrict__ v, i64 n, T lr_t,
                                          T one_b1, T one_b2, T eps, T decay, int use_wd) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T pi = p[i], gi = g[i], mi = m[i], vi = v[i];
        if (use_wd) pi = r_sub(pi, r_mul(decay, pi));
        mi = r_add(mi, r_mul(one_b1, r_sub(gi, mi)));
        vi = r_add(vi, r_mul(one_b2, r_sub(r_mul(gi, gi), vi)));
        pi = r_sub(pi, r_div(r_mul(lr_t, mi), r_add(r_sqrt(vi), eps)));
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
    }
}

// AdaGrad: acc += g^2; p -= lr * g / sqrt(acc + eps).
template <typename T>
__device__ __forceinline__ void adagrad_step(T* __restrict__ p, const T* __restrict__ g,
                                             T* __restrict__ acc, i64 n, T lr, T eps, T decay,
                                             int use_wd) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T pi = p[i], gi = g[i];
        if (use_wd) pi = r_sub(pi, r_mul(decay, pi));
        T a = r_add(acc[i], r_mul(gi, gi));
        acc[i] = a;
        p[i] = r_sub(pi, r_div(r_mul(lr, gi), r_sqrt(r_add(a, eps))));
    }
}

// RMSProp (Keras form): s = rho*s + (1-rho)*g*g; centered: a = rho*a + (1-rho)*g, s' = s - a*a;
// inc = lr*g / sqrt(s' + eps); with momentum b = mom*b + inc, p -= b; else p -= inc.
// `mb` is touched only when has_mom, `ga` only when centered.
template <typename T>
__device__ __forceinline__ void rmsprop_step(T* __restrict__ p, const T* __restrict__ g,
                                             T* __restrict__ sq, T* __restrict__ mb,
                                             T* __restrict__ ga, i64 n, T lr, T rho, T one_rho,
                                             T eps, T mom, T decay, int use_wd, int has_mom,
                                             int centered) {
    i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += step) {
        T pi = p[i], gi = g[i];
        if (use_wd) pi = r_sub(pi, r_mul(decay, pi));
        T s = r_add(r_mul(rho, sq[i]), r_mul(r_mul(one_rho, gi), gi));
        sq[i] = s;
        T denom = s;
        if (centered) {
            T a = r_add(r_mul(rho, ga[i]), r_mul(one_rho, gi));
            ga[i] = a;
            denom = r_sub(denom, r_mul(a, a));
        }
        T inc = r_div(r_mul(lr, gi), r_sqrt(r_add(denom, eps)));
        if (has_mom) {
            T b = r_add(r_mul(mom, mb[i]), inc);
            mb[i] = b;
            pi = r_sub(pi, b);
        } else {
            pi = r_sub(pi, inc);
        }
        p[i] = pi;
    }
}

#define EMBER_OPTIM(T, S)                                                                          \
    extern "C" __global__ void sgd_step_##S(T* p, const T* g, T* vel, i64 n, T lr, T mom, T decay, \
                                            int use_wd, int has_mom, int nesterov) {               \
        sgd_step<T>(p, g, vel, n, lr, mom, decay, use_wd, has_mom, nesterov);                      \
    }                                                                                              \
    extern "C" __global__ void adam_step_##S(T* p, const T* g, T* m, T* v, i64 n, T lr_t,          \
                                             T one_b1, T one_b2, T eps, T decay, int use_wd) {     \
        adam_step<T>(p, g, m, v, n, lr_t, one_b1, one_b2, eps, decay, use_wd);                     \
    }                                                                                              \
    extern "C" __global__ void adagrad_step_##S(T* p, const T* g, T* acc, i64 n, T lr, T eps,      \
                                                T decay, int use_wd) {                             \
        adagrad_step<T>(p, g, acc, n, lr, eps, decay, use_wd);                                     \
    }                                                                                              \
    extern "C" __global__ void rmsprop_step_##S(T* p, const T* g, T* sq, T* mb, T* ga, i64 n,      \
                                                T lr, T rho, T one_rho, T eps, T mom, T decay,     \
                                                int use_wd, int has_mom, int centered) {           \
        rmsprop_step<T>(p, g, sq, mb, ga, n, lr, rho, one_rho, eps, mom, decay, use_wd, has_mom,   \
                        centered);                                                                 \
    }

EMBER_OPTIM(float, f32)
EMBER_OPTIM(double, f64)
