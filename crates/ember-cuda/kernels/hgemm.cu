// hgemm.cu: GEMM on tensor cores for f16 and bf16 inputs with f32 accumulation (sm_80+),
// C = act(alpha * A B + beta * C + bias), C in f32 or in the inputs' 16-bit type.
//
// Why it is built this way: the tensor cores are reached with the warp-level `mma.sync`
// instruction through inline PTX (no cuda_fp16.h / mma.h, so NVRTC needs no include path), fed
// by `ldmatrix`, which loads the exact fragment layout `mma` wants from shared memory in one
// instruction per 8x8 matrix. Tiling levels:
//   block   128 x 128 output tile, K walked in 32-deep tiles through a 3-stage shared-memory
//           ring filled with `cp.async` (global -> shared without registers), so the loads of
//           tile k+2 overlap the math of tile k;
//   warp    8 warps as 2 (M) x 4 (N), each owning 64 x 32 of the output;
//   mma     m16n8k16: per 16-deep k step a warp issues 4 x 4 = 16 mma.sync on fragments loaded
//           by 4 ldmatrix.x4 (A) and 2 ldmatrix.x4.trans (B).
// Shared rows are padded by 8 halves (16 bytes) so the 8 row addresses of each ldmatrix phase
// fall in distinct banks.
// Layouts: A contiguous along K (row-major) or along M (a transposed view, "AT"), B contiguous
// along N (row-major) or along K ("BT"). Each is staged in shared memory as it lies in global
// memory (16-byte cp.async chunks), and the transposition happens in ldmatrix: row-major A uses
// ldmatrix, AT uses ldmatrix.trans; row-major B uses ldmatrix.trans, BT uses ldmatrix. Kernels
// exist for NN, AT-N and N-BT (the Dense forward and its two backward products); other strides,
// misaligned bases and tiles that overhang the matrix take a bounds-checked scalar staging path:
// every layout is correct, these three are fast.

#define HBM 128
#define HBN 128
#define HBK 32
#define HSTAGES 3
#define HTHREADS 256
#define A_LD (HBK + 8)   // halves per shared A row, A row-major: [128 m][32 k]
#define AT_LD (HBM + 8)  // halves per shared A row, A transposed: [32 k][128 m]
#define B_LD (HBN + 8)   // halves per shared B row, B row-major: [32 k][128 n]
#define BT_LD (HBK + 8)  // halves per shared B row, B transposed: [128 n][32 k]
#define A_STAGE (HBM * A_LD)  // = max(HBM * A_LD, HBK * AT_LD)
#define B_STAGE (HBN * BT_LD) // = max(HBK * B_LD, HBN * BT_LD)

struct HgemmParams {
    i64 m, n, k;
    i64 rsa, csa, rsb, csb, rsc, csc;
    const u16* a;
    const u16* b;
    void* c;             // float* when out_f32, else u16* of the input type
    const void* bias;    // same type as C; null: no bias
    float alpha, beta;
    int act;
    int vec_a;           // 1: 16-byte cp.async allowed for A in the kernel's layout (contiguous
                         //    axis stride 1, the other stride % 8 == 0, 16-byte aligned base)
    int vec_b;           // 1: the same for B
    int out_f32;         // 1: C is f32; 0: C has the inputs' 16-bit type
};

__device__ __forceinline__ u32 smem_addr(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a * b for one m16n8k16 tile; BF16 selects the input type.
template <bool BF16> __device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b) {
    if (BF16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
}

template <bool BF16> __device__ __forceinline__ float h2f(u16 h) {
    return BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}
template <bool BF16> __device__ __forceinline__ u16 f2h(float f) {
    return BF16 ? f32_to_bf16(f) : f32_to_f16(f);
}

// Stages the A tile [m0, m0+128) x [k0, k0+32) and the B tile [k0, k0+32) x [n0, n0+128) into
// one ring slot: 512 16-byte chunks each, two per thread, along each operand's contiguous axis.
template <bool AT, bool BT>
__device__ __forceinline__ void load_tiles(const HgemmParams& p, u16* As, u16* Bs, i64 m0,
                                           i64 n0, i64 k0) {
    bool a_fast = p.vec_a && m0 + HBM <= p.m && k0 + HBK <= p.k;
    bool b_fast = p.vec_b && n0 + HBN <= p.n && k0 + HBK <= p.k;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        int c = threadIdx.x + i * HTHREADS;
        if (!AT) {  // [128 m][32 k]: 4 chunks per row
            int r = c >> 2, col = (c & 3) * 8;
            u16* dst = As + r * A_LD + col;
            if (a_fast) {
                cp_async16(dst, p.a + (m0 + r) * p.rsa + k0 + col);
            } else {
#pragma unroll 1  // slow path: keep it compact
                for (int e = 0; e < 8; ++e) {
                    i64 gi = m0 + r, gk = k0 + col + e;
                    dst[e] = (gi < p.m && gk < p.k) ? p.a[gi * p.rsa + gk * p.csa] : (u16)0;
                }
            }
        } else {  // [32 k][128 m]: 16 chunks per row
            int r = c >> 4, col = (c & 15) * 8;
            u16* dst = As + r * AT_LD + col;
            if (a_fast) {
                cp_async16(dst, p.a + (k0 + r) * p.csa + m0 + col);
            } else {
#pragma unroll 1  // slow path: keep it compact
                for (int e = 0; e < 8; ++e) {
                    i64 gi = m0 + col + e, gk = k0 + r;
                    dst[e] = (gi < p.m && gk < p.k) ? p.a[gi * p.rsa + gk * p.csa] : (u16)0;
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        int c = threadIdx.x + i * HTHREADS;
        if (!BT) {  // [32 k][128 n]: 16 chunks per row
            int r = c >> 4, col = (c & 15) * 8;
            u16* dst = Bs + r * B_LD + col;
            if (b_fast) {
                cp_async16(dst, p.b + (k0 + r) * p.rsb + n0 + col);
            } else {
#pragma unroll 1  // slow path: keep it compact
                for (int e = 0; e < 8; ++e) {
                    i64 gk = k0 + r, gj = n0 + col + e;
                    dst[e] = (gk < p.k && gj < p.n) ? p.b[gk * p.rsb + gj * p.csb] : (u16)0;
                }
            }
        } else {  // [128 n][32 k]: 4 chunks per row
            int r = c >> 2, col = (c & 3) * 8;
            u16* dst = Bs + r * BT_LD + col;
            if (b_fast) {
                cp_async16(dst, p.b + (n0 + r) * p.csb + k0 + col);
            } else {
#pragma unroll 1  // slow path: keep it compact
                for (int e = 0; e < 8; ++e) {
                    i64 gk = k0 + col + e, gj = n0 + r;
                    dst[e] = (gk < p.k && gj < p.n) ? p.b[gk * p.rsb + gj * p.csb] : (u16)0;
                }
            }
        }
    }
}

template <bool BF16, bool AT, bool BT>
__device__ __forceinline__ void hgemm_mma(const HgemmParams& p) {
    extern __shared__ __align__(16) u16 smem[];
    u16* As = smem;                        // HSTAGES slots of A_STAGE halves
    u16* Bs = smem + HSTAGES * A_STAGE;    // HSTAGES slots of B_STAGE halves
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp >> 2, wn = warp & 3;  // warp grid 2 x 4
    const i64 m0 = blockIdx.y * (i64)HBM, n0 = blockIdx.x * (i64)HBN;
    const i64 ktiles = (p.k + HBK - 1) / HBK;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: fill the first HSTAGES-1 slots.
#pragma unroll
    for (int s = 0; s < HSTAGES - 1; ++s) {
        if (s < ktiles) load_tiles<AT, BT>(p, As + s * A_STAGE, Bs + s * B_STAGE, m0, n0, s * (i64)HBK);
        cp_async_commit();
    }

    for (i64 kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<HSTAGES - 2>();  // tile kt has landed (this thread's copies)
        __syncthreads();               // ... everyone's, and slot (kt-1) is free to refill
        i64 next = kt + HSTAGES - 1;
        if (next < ktiles) {
            int s = (int)(next % HSTAGES);
            load_tiles<AT, BT>(p, As + s * A_STAGE, Bs + s * B_STAGE, m0, n0, next * HBK);
        }
        cp_async_commit();

        const u16* a_t = As + (kt % HSTAGES) * A_STAGE;
        const u16* b_t = Bs + (kt % HSTAGES) * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < HBK; kk += 16) {
            u32 af[4][4], bfr[4][2];
            // A fragments a0..a3 = (m 0-7 | 8-15) x (k 0-7 | 8-15) of each 16 x 16 block; lanes
            // 8j..8j+7 address the rows of matrix j.
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                if (!AT) {
                    int row = wm * 64 + mi * 16 + (lane & 15);
                    ldmatrix_x4(af[mi], a_t + row * A_LD + kk + (lane >> 4) * 8);
                } else {  // stored [k][m]: transpose while loading
                    int krow = kk + (lane & 7) + ((lane >> 4) << 3);
                    int mcol = wm * 64 + mi * 16 + ((lane >> 3) & 1) * 8;
                    ldmatrix_x4_trans(af[mi], a_t + krow * AT_LD + mcol);
                }
            }
            // B fragments for two n8 tiles at a time: (k 0-7, k 8-15) of tile 0, then of tile 1.
#pragma unroll
            for (int nj = 0; nj < 2; ++nj) {
                u32 r[4];
                if (!BT) {  // stored [k][n]: transpose while loading
                    int krow = kk + (lane & 15);
                    ldmatrix_x4_trans(r, b_t + krow * B_LD + wn * 32 + nj * 16 + (lane >> 4) * 8);
                } else {    // stored [n][k]
                    int nrow = wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldmatrix_x4(r, b_t + nrow * BT_LD + kk + ((lane >> 3) & 1) * 8);
                }
                bfr[nj * 2][0] = r[0];
                bfr[nj * 2][1] = r[1];
                bfr[nj * 2 + 1][0] = r[2];
                bfr[nj * 2 + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mma16816<BF16>(acc[mi][ni], af[mi], bfr[ni]);
        }
    }
    cp_async_wait<0>();

    // Epilogue: accumulator element e of tile (mi, ni) sits at row lane/4 (+8 for e >= 2),
    // column (lane%4)*2 + e%2 of that 16x8 tile.
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                i64 i = m0 + wm * 64 + mi * 16 + (lane >> 2) + (e >> 1) * 8;
                i64 j = n0 + wn * 32 + ni * 8 + (lane & 3) * 2 + (e & 1);
                if (i >= p.m || j >= p.n) continue;
                float v = p.alpha * acc[mi][ni][e];
                i64 ci = i * p.rsc + j * p.csc;
                if (p.out_f32) {
                    float* c = (float*)p.c;
                    if (p.beta != 0.0f) v += p.beta * c[ci];
                    if (p.bias) v += ((const float*)p.bias)[j];
                    c[ci] = (p.act == ACT_NONE ? v : apply_act_f32(p.act, v));
                } else {
                    u16* c = (u16*)p.c;
                    if (p.beta != 0.0f) v += p.beta * h2f<BF16>(c[ci]);
                    if (p.bias) v += h2f<BF16>(((const u16*)p.bias)[j]);
                    c[ci] = f2h<BF16>((p.act == ACT_NONE ? v : apply_act_f32(p.act, v)));
                }
            }
        }
    }
}

// Dynamic shared memory needed by the kernels below (the host sets the function attribute).
#define HGEMM_SMEM_BYTES (HSTAGES * (A_STAGE + B_STAGE) * 2)

#define EMBER_HGEMM(NAME, BF16, AT, BT)                                                            \
    extern "C" __global__ void __launch_bounds__(HTHREADS) NAME(HgemmParams p) {                   \
        hgemm_mma<BF16, AT, BT>(p);                                                                \
    }

EMBER_HGEMM(hgemm_mma_bf16, true, false, false)
EMBER_HGEMM(hgemm_mma_at_bf16, true, true, false)
EMBER_HGEMM(hgemm_mma_bt_bf16, true, false, true)
EMBER_HGEMM(hgemm_mma_f16, false, false, false)
EMBER_HGEMM(hgemm_mma_at_f16, false, true, false)
EMBER_HGEMM(hgemm_mma_bt_f16, false, false, true)
