// sgemm.cu: fp32 GEMM, C = act(alpha * A B + beta * C + bias), as a ladder of versions.
//
// Every operand is addressed through a row stride and a column stride (in elements), so any
// transposition or slice is passed as it lies in memory. beta == 0 makes C write-only (its old
// contents, even NaN, are ignored, as in BLAS). The epilogue (bias per column, then an
// activation) is fused into the store: a whole Dense forward in one kernel.
//
// The ladder, each version one step from the previous, kept so the gain of each idea can be
// re-measured (`ember bench --device cuda gemm`):
//   v0 naive      one thread per C element, K loop straight from global memory.
//   v1 tiled      32x32 tiles of A and B staged in shared memory; one C element per thread.
//   v2 regblock   block tile BM x BN x 8 in shared memory (A stored k-major so a thread's rows
//                 are contiguous), each of 256 threads accumulates a TM x TN register tile as
//                 outer products: per k it reads TM + TN values from shared memory for TM*TN FMAs.
//   v3 vec        v2 plus 16-byte (float4) global loads when the layout allows (A contiguous
//                 along k or along m, B along n or along k, aligned, full tile), and double
//                 buffering: the next k-tile is fetched into registers while the current one is
//                 computed, so one barrier per k-tile instead of two.
// v2 and v3 come in two block tiles: 128x128 (8x8 per thread) for large C, 64x64 (4x4 per
// thread) when 128x128 tiles would leave SMs idle; the host chooses by shape.

struct GemmParams {
    i64 m, n, k;
    i64 rsa, csa, rsb, csb, rsc, csc;
    const float* a;
    const float* b;
    float* c;
    const float* bias;  // null: no bias
    float alpha, beta;
    int act;            // ACT_* code
    int vec_a;          // 1 = A contiguous along k (csa == 1), 16-byte aligned rows
                        // 2 = A contiguous along m (rsa == 1), 16-byte aligned columns; 0 = scalar
    int vec_b;          // 1 = B contiguous along n (csb == 1); 2 = along k (rsb == 1); 0 = scalar
    int pad_;
};

// The fused epilogue for one element; `acc` is the finished dot product.
__device__ __forceinline__ void store_c(const GemmParams& p, i64 i, i64 j, float acc) {
    float v = p.alpha * acc;
    float* cp = p.c + i * p.rsc + j * p.csc;
    if (p.beta != 0.0f) v += p.beta * *cp;
    if (p.bias) v += p.bias[j];
    *cp = (p.act == ACT_NONE ? v : apply_act_f32(p.act, v));
}

// ---- v0: naive ---------------------------------------------------------------------------------

extern "C" __global__ void sgemm_naive(GemmParams p) {
    i64 j = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    i64 i = blockIdx.y * (i64)blockDim.y + threadIdx.y;
    if (i >= p.m || j >= p.n) return;
    float acc = 0.0f;
    for (i64 q = 0; q < p.k; ++q) acc += p.a[i * p.rsa + q * p.csa] * p.b[q * p.rsb + j * p.csb];
    store_c(p, i, j, acc);
}

// ---- v1: shared-memory tiles --------------------------------------------------------------------

#define T1 32
extern "C" __global__ void __launch_bounds__(T1 * T1) sgemm_tiled(GemmParams p) {
    __shared__ float As[T1][T1];
    __shared__ float Bs[T1][T1 + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    i64 i = blockIdx.y * (i64)T1 + ty, j = blockIdx.x * (i64)T1 + tx;
    float acc = 0.0f;
    for (i64 k0 = 0; k0 < p.k; k0 += T1) {
        // Block level: stage A[i0.., k0..] and B[k0.., j0..], zero outside the matrices.
        i64 ka = k0 + tx, kb = k0 + ty;
        As[ty][tx] = (i < p.m && ka < p.k) ? p.a[i * p.rsa + ka * p.csa] : 0.0f;
        Bs[ty][tx] = (kb < p.k && j < p.n) ? p.b[kb * p.rsb + j * p.csb] : 0.0f;
        __syncthreads();
        // Thread level: one dot product of length 32 out of shared memory.
#pragma unroll
        for (int q = 0; q < T1; ++q) acc += As[ty][q] * Bs[q][tx];
        __syncthreads();
    }
    if (i < p.m && j < p.n) store_c(p, i, j, acc);
}

// ---- v2 / v3: register blocking, then vector loads and double buffering -----------------------

#define BK 8
#define NTHREADS 256

// Loads the A k-tile [m0, m0+BM) x [k0, k0+BK) into registers `ra` (BM*BK/256 floats per thread),
// in the order `store_a` writes them to shared memory. VEC selects 16-byte loads when the layout
// and the tile allow; the scalar path handles every other case with bounds checks (zero fill).
template <int BM, bool VEC>
__device__ __forceinline__ void load_a(const GemmParams& p, i64 m0, i64 k0, float* ra) {
    const int NV = BM * BK / 4 / NTHREADS;  // float4 per thread (1 for BM=128; 0.5 -> see below)
    const int t = threadIdx.x;
    bool full = (m0 + BM <= p.m) && (k0 + BK <= p.k);
    if (VEC && full && p.vec_a == 1) {
        // A contiguous along k: thread t reads row t/2 (or t/2 within 64), k-half (t%2)*4.
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
            if (idx < BM * BK / 4) {
                int r = idx >> 1, kq = (idx & 1) * 4;
                float4 x = *reinterpret_cast<const float4*>(p.a + (m0 + r) * p.rsa + k0 + kq);
                ra[v * 4 + 0] = x.x; ra[v * 4 + 1] = x.y; ra[v * 4 + 2] = x.z; ra[v * 4 + 3] = x.w;
            }
        }
    } else if (VEC && full && p.vec_a == 2) {
        // A contiguous along m: thread t reads k-row idx/(BM/4), m-quad (idx%(BM/4))*4.
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
            if (idx < BM * BK / 4) {
                int kk = idx / (BM / 4), mq = (idx % (BM / 4)) * 4;
                float4 x = *reinterpret_cast<const float4*>(p.a + (k0 + kk) * p.csa + m0 + mq);
                ra[v * 4 + 0] = x.x; ra[v * 4 + 1] = x.y; ra[v * 4 + 2] = x.z; ra[v * 4 + 3] = x.w;
            }
        }
    } else {
        // Scalar: element e = idx*4 + w in the k-contiguous order of the first branch.
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                float x = 0.0f;
                if (idx < BM * BK / 4) {
                    int r, kk;
                    if (p.vec_a == 2) { kk = idx / (BM / 4); r = (idx % (BM / 4)) * 4 + w; }
                    else { r = idx >> 1; kk = (idx & 1) * 4 + w; }
                    i64 gi = m0 + r, gk = k0 + kk;
                    if (gi < p.m && gk < p.k) x = p.a[gi * p.rsa + gk * p.csa];
                }
                ra[v * 4 + w] = x;
            }
        }
    }
}

// Writes the registers of load_a into As[k][m] (k-major, so a thread's rows are contiguous).
template <int BM>
__device__ __forceinline__ void store_a(const GemmParams& p, float (*As)[BM + 4], const float* ra) {
    const int NV = BM * BK / 4 / NTHREADS;
#pragma unroll
    for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
        int idx = threadIdx.x + v * NTHREADS;
        if (idx < BM * BK / 4) {
            if (p.vec_a == 2) {
                int kk = idx / (BM / 4), mq = (idx % (BM / 4)) * 4;
                *reinterpret_cast<float4*>(&As[kk][mq]) =
                    make_float4(ra[v * 4], ra[v * 4 + 1], ra[v * 4 + 2], ra[v * 4 + 3]);
            } else {
                int r = idx >> 1, kq = (idx & 1) * 4;
#pragma unroll
                for (int w = 0; w < 4; ++w) As[kq + w][r] = ra[v * 4 + w];
            }
        }
    }
}

// B k-tile [k0, k0+BK) x [n0, n0+BN) into registers, same scheme as load_a.
template <int BN, bool VEC>
__device__ __forceinline__ void load_b(const GemmParams& p, i64 k0, i64 n0, float* rb) {
    const int NV = BN * BK / 4 / NTHREADS;
    const int t = threadIdx.x;
    bool full = (n0 + BN <= p.n) && (k0 + BK <= p.k);
    if (VEC && full && p.vec_b == 1) {
        // B contiguous along n: thread reads k-row idx/(BN/4), n-quad (idx%(BN/4))*4.
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
            if (idx < BN * BK / 4) {
                int kk = idx / (BN / 4), nq = (idx % (BN / 4)) * 4;
                float4 x = *reinterpret_cast<const float4*>(p.b + (k0 + kk) * p.rsb + n0 + nq);
                rb[v * 4 + 0] = x.x; rb[v * 4 + 1] = x.y; rb[v * 4 + 2] = x.z; rb[v * 4 + 3] = x.w;
            }
        }
    } else if (VEC && full && p.vec_b == 2) {
        // B contiguous along k: thread reads column idx/2, k-half (idx%2)*4.
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
            if (idx < BN * BK / 4) {
                int c = idx >> 1, kq = (idx & 1) * 4;
                float4 x = *reinterpret_cast<const float4*>(p.b + (n0 + c) * p.csb + k0 + kq);
                rb[v * 4 + 0] = x.x; rb[v * 4 + 1] = x.y; rb[v * 4 + 2] = x.z; rb[v * 4 + 3] = x.w;
            }
        }
    } else {
#pragma unroll
        for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
            int idx = t + v * NTHREADS;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                float x = 0.0f;
                if (idx < BN * BK / 4) {
                    int c, kk;
                    if (p.vec_b == 2) { c = idx >> 1; kk = (idx & 1) * 4 + w; }
                    else { kk = idx / (BN / 4); c = (idx % (BN / 4)) * 4 + w; }
                    i64 gk = k0 + kk, gj = n0 + c;
                    if (gk < p.k && gj < p.n) x = p.b[gk * p.rsb + gj * p.csb];
                }
                rb[v * 4 + w] = x;
            }
        }
    }
}

// Writes the registers of load_b into Bs[k][n].
template <int BN>
__device__ __forceinline__ void store_b(const GemmParams& p, float (*Bs)[BN + 4], const float* rb) {
    const int NV = BN * BK / 4 / NTHREADS;
#pragma unroll
    for (int v = 0; v < (NV > 0 ? NV : 1); ++v) {
        int idx = threadIdx.x + v * NTHREADS;
        if (idx < BN * BK / 4) {
            if (p.vec_b == 2) {
                int c = idx >> 1, kq = (idx & 1) * 4;
#pragma unroll
                for (int w = 0; w < 4; ++w) Bs[kq + w][c] = rb[v * 4 + w];
            } else {
                int kk = idx / (BN / 4), nq = (idx % (BN / 4)) * 4;
                *reinterpret_cast<float4*>(&Bs[kk][nq]) =
                    make_float4(rb[v * 4], rb[v * 4 + 1], rb[v * 4 + 2], rb[v * 4 + 3]);
            }
        }
    }
}

// Thread level: the 256 threads form a 16 x 16 grid; thread (ty, tx) owns rows
// {g*64 + ty*4 + 0..3 : g < TM/4} and the same pattern of columns, so each quarter-warp's
// float4 reads of a shared-memory row are contiguous (no bank conflicts).
template <int BM, int BN, bool VEC, bool DB>
__device__ __forceinline__ void sgemm_rb(const GemmParams& p) {
    const int TM = BM / 16, TN = BN / 16;
    const int NA = (BM * BK / NTHREADS) > 4 ? (BM * BK / NTHREADS) : 4;
    const int NB = (BN * BK / NTHREADS) > 4 ? (BN * BK / NTHREADS) : 4;
    __shared__ __align__(16) float As[DB ? 2 : 1][BK][BM + 4];
    __shared__ __align__(16) float Bs[DB ? 2 : 1][BK][BN + 4];
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const i64 m0 = blockIdx.y * (i64)BM, n0 = blockIdx.x * (i64)BN;

    float acc[TM][TN];
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int b = 0; b < TN; ++b) acc[a][b] = 0.0f;

    float ra[NA], rb[NB];
    load_a<BM, VEC>(p, m0, 0, ra);
    load_b<BN, VEC>(p, 0, n0, rb);
    store_a<BM>(p, As[0], ra);
    store_b<BN>(p, Bs[0], rb);
    __syncthreads();

    int buf = 0;
    // Block level: walk K in BK-deep tiles.
    for (i64 k0 = 0; k0 < p.k; k0 += BK) {
        bool more = k0 + BK < p.k;
        if (DB && more) {  // fetch the next tile into registers while this one is computed
            load_a<BM, VEC>(p, m0, k0 + BK, ra);
            load_b<BN, VEC>(p, k0 + BK, n0, rb);
        }
        // Thread level: BK outer products of a TM column of A and a TN row of B.
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[TM], bv[TN];
#pragma unroll
            for (int g = 0; g < TM / 4; ++g) {
                float4 x = *reinterpret_cast<const float4*>(&As[buf][kk][g * 64 + ty * 4]);
                av[g * 4] = x.x; av[g * 4 + 1] = x.y; av[g * 4 + 2] = x.z; av[g * 4 + 3] = x.w;
            }
#pragma unroll
            for (int g = 0; g < TN / 4; ++g) {
                float4 x = *reinterpret_cast<const float4*>(&Bs[buf][kk][g * 64 + tx * 4]);
                bv[g * 4] = x.x; bv[g * 4 + 1] = x.y; bv[g * 4 + 2] = x.z; bv[g * 4 + 3] = x.w;
            }
#pragma unroll
            for (int a = 0; a < TM; ++a)
#pragma unroll
                for (int b = 0; b < TN; ++b) acc[a][b] += av[a] * bv[b];
        }
        if (!more) break;
        if (DB) {
            // The other buffer was last read one iteration ago, before the barrier that ended it.
            store_a<BM>(p, As[buf ^ 1], ra);
            store_b<BN>(p, Bs[buf ^ 1], rb);
            __syncthreads();
            buf ^= 1;
        } else {
            __syncthreads();  // everyone is done reading before the tile is overwritten
            load_a<BM, VEC>(p, m0, k0 + BK, ra);
            load_b<BN, VEC>(p, k0 + BK, n0, rb);
            store_a<BM>(p, As[0], ra);
            store_b<BN>(p, Bs[0], rb);
            __syncthreads();
        }
    }

    // Epilogue, fused: alpha, beta*C, bias, activation, bounds-checked strided store.
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        i64 i = m0 + (a / 4) * 64 + ty * 4 + (a % 4);
        if (i >= p.m) continue;
#pragma unroll
        for (int b = 0; b < TN; ++b) {
            i64 j = n0 + (b / 4) * 64 + tx * 4 + (b % 4);
            if (j < p.n) store_c(p, i, j, acc[a][b]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(NTHREADS) sgemm_regblock_128(GemmParams p) {
    sgemm_rb<128, 128, false, false>(p);
}
extern "C" __global__ void __launch_bounds__(NTHREADS) sgemm_regblock_64(GemmParams p) {
    sgemm_rb<64, 64, false, false>(p);
}
extern "C" __global__ void __launch_bounds__(NTHREADS) sgemm_vec_128(GemmParams p) {
    sgemm_rb<128, 128, true, true>(p);
}
extern "C" __global__ void __launch_bounds__(NTHREADS) sgemm_vec_64(GemmParams p) {
    sgemm_rb<64, 64, true, true>(p);
}
