// wgmma.cu: Hopper (sm_90a) GEMM for f16/bf16 inputs with f32 accumulation through the
// warpgroup-level `wgmma.mma_async` instruction. EXPERIMENTAL: it compiles for sm_90a and its SASS
// shows HGMMA, but it has not yet been run on a GPU; the GPU tests check it against the same f64
// reference as the mma.sync kernel, and the kernel lab times it, when an H100/H200 is available.
//
// Why it is built this way: wgmma reads both operands straight from shared memory through 64-bit
// "matrix descriptors" (start address, leading- and stride-dimension byte offsets, swizzle mode),
// and a warpgroup of 4 warps computes a 64 x N tile per instruction. This first version keeps the
// simplest legal layout, no swizzle ("interleaved" core matrices), and plain synchronous loads,
// to make the descriptor arithmetic easy to check by reading. It is a starting point, not the
// fast Hopper kernel: that needs TMA loads, 128-byte swizzle, a multi-stage mbarrier pipeline and
// producer/consumer warp specialisation.
//
// Tiling:
//   block      128 x 128 output, K in 32-deep tiles; 256 threads = 2 warpgroups;
//   warpgroup  64 rows x 128 columns: one m64n128k16 wgmma per 16-deep k step (64 f32
//              accumulators per thread);
//   shared     both operands "K-major" in 8 x 8 core matrices of 128 contiguous bytes (8 rows of
//              8 elements): core (ki, ri) of a tile with R rows sits at ((ki * R/8) + ri) * 128
//              bytes, so core matrices adjacent along K are R*16 bytes apart (the descriptor's
//              leading byte offset) and along M or N 128 bytes apart (its stride byte offset).
// A (row-major, k contiguous) is copied 16 bytes at a time; B (k x n, n contiguous) is
// transposed on the way into its K-major tile element by element.

#define WBM 128
#define WBN 128
#define WBK 32

// Eight accumulator operands of the wgmma asm, d[i..i+8).
#define WG_D(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
    "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])

struct WgmmaParams {  // identical to HgemmParams in hgemm.cu
    i64 m, n, k;
    i64 rsa, csa, rsb, csb, rsc, csc;
    const u16* a;
    const u16* b;
    void* c;
    const void* bias;
    float alpha, beta;
    int act;
    int vec_a;
    int vec_b;
    int out_f32;
};

__device__ __forceinline__ u32 wg_smem_addr(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}

// Descriptor of a no-swizzle K-major operand starting at `p`, with core matrices `lbo` bytes
// apart along K and `sbo` bytes apart along M/N (fields hold byte values >> 4).
__device__ __forceinline__ u64 wg_desc(const void* p, u32 lbo, u32 sbo) {
    u64 d = 0;
    d |= (u64)((wg_smem_addr(p) & 0x3FFFF) >> 4);
    d |= (u64)((lbo & 0x3FFFF) >> 4) << 16;
    d |= (u64)((sbo & 0x3FFFF) >> 4) << 32;
    // base offset (bits 49-51) 0 and swizzle mode (bits 62-63) 0: no swizzle.
    return d;
}

// d += A(64x16) * B(16x128) for this warpgroup; scale-d = 1, no negation, no transposes.
template <bool BF16> __device__ __forceinline__ void wgmma_m64n128k16(float* d, u64 da, u64 db) {
    if (BF16) {
        asm volatile(
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, "
            "%8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, "
            "%24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, "
            "%40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, "
            "%56, %57, %58, %59, %60, %61, %62, %63"
            "}, %64, %65, 1, 1, 1, 0, 0;\n"
            : WG_D(0), WG_D(8), WG_D(16), WG_D(24), WG_D(32), WG_D(40), WG_D(48), WG_D(56)
            : "l"(da), "l"(db));
    } else {
        asm volatile(
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
            "%0, %1, %2, %3, %4, %5, %6, %7, "
            "%8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, "
            "%24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, "
            "%40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, "
            "%56, %57, %58, %59, %60, %61, %62, %63"
            "}, %64, %65, 1, 1, 1, 0, 0;\n"
            : WG_D(0), WG_D(8), WG_D(16), WG_D(24), WG_D(32), WG_D(40), WG_D(48), WG_D(56)
            : "l"(da), "l"(db));
    }
}

template <bool BF16> __device__ __forceinline__ float wg_h2f(u16 h) {
    return BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}
template <bool BF16> __device__ __forceinline__ u16 wg_f2h(float f) {
    return BF16 ? f32_to_bf16(f) : f32_to_f16(f);
}

template <bool BF16> __device__ __forceinline__ void hgemm_wgmma(const WgmmaParams& p) {
    __shared__ __align__(128) u16 As[WBM * WBK];  // K-major core matrices, 8 KiB
    __shared__ __align__(128) u16 Bs[WBN * WBK];  // K-major core matrices, 8 KiB
    const int t = threadIdx.x;
    const int group = t >> 7, warp = (t >> 5) & 3, lane = t & 31;
    const i64 m0 = blockIdx.y * (i64)WBM, n0 = blockIdx.x * (i64)WBN;

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) d[i] = 0.0f;

    for (i64 k0 = 0; k0 < p.k; k0 += WBK) {
        // A tile: 128 rows x 32 k = 512 chunks of 8 elements; chunk (r, kc) is row r%8 of core
        // matrix (kc, r/8).
        bool a_fast = p.vec_a && m0 + WBM <= p.m && k0 + WBK <= p.k;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            int c = t + i * 256;
            int r = c >> 2, kc = c & 3;
            u16* dst = As + ((kc * (WBM / 8) + (r >> 3)) * 64) + (r & 7) * 8;
            if (a_fast) {
                *reinterpret_cast<uint4*>(dst) =
                    *reinterpret_cast<const uint4*>(p.a + (m0 + r) * p.rsa + k0 + kc * 8);
            } else {
#pragma unroll 1  // slow path: keep it compact
                for (int e = 0; e < 8; ++e) {
                    i64 gi = m0 + r, gk = k0 + kc * 8 + e;
                    dst[e] = (gi < p.m && gk < p.k) ? p.a[gi * p.rsa + gk * p.csa] : (u16)0;
                }
            }
        }
        // B tile: 32 k x 128 n; element (k, n) goes to row n%8, column k%8 of core matrix
        // (k/8, n/8). Each thread reads 16 consecutive n of one k row and scatters them.
        {
            int kk = t >> 3, nb = (t & 7) * 16;
            i64 gk = k0 + kk;
#pragma unroll
            for (int e = 0; e < 16; ++e) {
                int nn = nb + e;
                i64 gj = n0 + nn;
                u16 v = (gk < p.k && gj < p.n) ? p.b[gk * p.rsb + gj * p.csb] : (u16)0;
                Bs[((kk >> 3) * (WBN / 8) + (nn >> 3)) * 64 + (nn & 7) * 8 + (kk & 7)] = v;
            }
        }
        // Generic-proxy stores must be visible to the async proxy that wgmma reads through.
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();

        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int s = 0; s < WBK / 16; ++s) {
            // k step s covers core-matrix columns 2s and 2s+1; this warpgroup's rows start at
            // core row 8*group.
            u64 da = wg_desc(As + ((2 * s) * (WBM / 8) + group * 8) * 64, (WBM / 8) * 128, 128);
            u64 db = wg_desc(Bs + ((2 * s) * (WBN / 8)) * 64, (WBN / 8) * 128, 128);
            wgmma_m64n128k16<BF16>(d, da, db);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        __syncthreads();  // the tiles are rewritten next iteration
    }

    // Epilogue: warp w of the warpgroup owns rows 16w..16w+15 of its 64; accumulator 4j+e sits
    // at row lane/4 (+8 for e >= 2), column 8j + (lane%4)*2 + e%2.
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            i64 i = m0 + group * 64 + warp * 16 + (lane >> 2) + (e >> 1) * 8;
            i64 jj = n0 + j * 8 + (lane & 3) * 2 + (e & 1);
            if (i >= p.m || jj >= p.n) continue;
            float v = p.alpha * d[j * 4 + e];
            i64 ci = i * p.rsc + jj * p.csc;
            if (p.out_f32) {
                float* c = (float*)p.c;
                if (p.beta != 0.0f) v += p.beta * c[ci];
                if (p.bias) v += ((const float*)p.bias)[jj];
                c[ci] = (p.act == ACT_NONE ? v : apply_act_f32(p.act, v));
            } else {
                u16* c = (u16*)p.c;
                if (p.beta != 0.0f) v += p.beta * wg_h2f<BF16>(c[ci]);
                if (p.bias) v += wg_h2f<BF16>(((const u16*)p.bias)[jj]);
                c[ci] = wg_f2h<BF16>(p.act == ACT_NONE ? v : apply_act_f32(p.act, v));
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) hgemm_wgmma_bf16(WgmmaParams p) {
    hgemm_wgmma<true>(p);
}
extern "C" __global__ void __launch_bounds__(256) hgemm_wgmma_f16(WgmmaParams p) {
    hgemm_wgmma<false>(p);
}
