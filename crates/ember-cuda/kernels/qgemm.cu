// qgemm.cu: the int8 GEMM with exact i32 accumulation and a dequantizing epilogue — the CUDA
// twin of ember-cpu's `qgemm` with `QOut::F32` (a dynamically or statically quantized Dense or
// Conv2d layer):
//
//   C[i, j] = act( f32(Σ_k (A[i,k] − za)·B[k,j]) · (sa · sb[j]) + bias[j] )
//
// with A the u8 activation codes and B the i8 weight codes.
//
// Layouts (prepared by the host, crates/ember-cuda/src/qgemm.rs):
// - K is padded to a multiple of 4, `kw = K/4` 32-bit words per row; B's padding is zero, so
//   whatever A holds there is multiplied by 0.
// - A: u8 row-major [m, 4·kw], read as words (4 consecutive k of one row).
// - B: i8 "transposed", [n, 4·kw] (the K codes of one output column contiguous: a PyTorch
//   Linear weight [out, in] as it is), read as words.
// - colsum[j] = Σ_k B[k, j] (i32): the zero point enters as Σ a·b − za·colsum[j], exact in i32
//   for K up to ember-cpu's MAX_K, exactly as on the CPU.
//
// Arithmetic: `dp4a.u32.s32` (four u8 × s8 products added to an i32 accumulator, exact). The
// epilogue multiplies once by (sa · sb[j]) and adds the bias with __fmul_rn/__fadd_rn (never
// fused into an FMA), the CPU's order, so the results are bit-identical to the CPU kernel's.
//
// Tiling: a block of 256 threads owns a 64×64 tile of C; each thread a 4×4 sub-tile (rows
// 4·(t/16).., columns 4·(t%16)..). The block stages 64 rows of A and 64 columns of B, 8 words
// (32 k) at a time, in shared memory (padded by one word per row against bank conflicts); each
// stage is 4·4·8 dp4a per thread. Every output is computed by one thread in one fixed order,
// so results are identical on every run.

#ifndef EMBER_CUDA_EMU
__device__ __forceinline__ int dp4a_us(u32 a, u32 b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
#endif

#define Q_TILE 64
#define Q_KW 8

// act: 0 none, 1 relu (the activations the host lets through).
extern "C" __global__ void __launch_bounds__(256) qgemm_dp4a_f32(
    const u32* __restrict__ a, const u32* __restrict__ b, const int* __restrict__ colsum,
    int m, int n, int kw, int za, float sa, const float* __restrict__ sb,
    const float* __restrict__ bias, int has_bias, int act, float* __restrict__ c, int ldc) {
    __shared__ u32 as_[Q_TILE][Q_KW + 1];
    __shared__ u32 bs_[Q_TILE][Q_KW + 1];
    const int t = threadIdx.x;
    const int tr = t / 16, tc = t % 16;
    const int row0 = blockIdx.y * Q_TILE, col0 = blockIdx.x * Q_TILE;
    int acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;
    for (int k0 = 0; k0 < kw; k0 += Q_KW) {
        for (int e = t; e < Q_TILE * Q_KW; e += 256) {
            const int r = e / Q_KW, w = e % Q_KW, gk = k0 + w;
            const int gr = row0 + r, gc = col0 + r;
            as_[r][w] = (gr < m && gk < kw) ? a[(i64)gr * kw + gk] : 0u;
            bs_[r][w] = (gc < n && gk < kw) ? b[(i64)gc * kw + gk] : 0u;
        }
        __syncthreads();
        for (int w = 0; w < Q_KW; ++w) {
            u32 av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = as_[tr * 4 + i][w];
            for (int j = 0; j < 4; ++j) bv[j] = bs_[tc * 4 + j][w];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = dp4a_us(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int r = row0 + tr * 4 + i;
        if (r >= m) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = col0 + tc * 4 + j;
            if (col >= n) continue;
            const int s = acc[i][j] - za * colsum[col];
            float v = __fmul_rn(__int2float_rn(s), __fmul_rn(sa, sb[col]));
            if (has_bias) v = __fadd_rn(v, bias[col]);
            if (act == 1) v = v > 0.0f ? v : 0.0f;
            c[(i64)r * ldc + col] = v;
        }
    }
}
