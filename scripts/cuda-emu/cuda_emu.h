// cuda_emu.h: a CPU emulation of the small CUDA subset kernels/conv.cu and kernels/pool.cu use,
// so their index arithmetic can be run and checked on a machine with no GPU.
//
// Each CUDA thread of a block is a ucontext fiber on one OS thread; __syncthreads() yields to a
// round-robin scheduler, so a barrier completes once every fiber has yielded; blocks run one
// after another; __shared__ becomes `static` (one block at a time); warp shuffles go through a
// slot array between two barriers (valid where whole blocks call them, as conv.cu's block sum
// does). Not emulated: warp divergence, memory ordering, races, speed. It checks what a kernel
// computes, not how fast or how safely (compute-sanitizer on a GPU does that).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;
#include <functional>
#include <ucontext.h>
struct dim3e { unsigned x = 1, y = 1, z = 1; };
// Single OS thread: every CUDA thread of a block is a fiber; __syncthreads yields to the
// scheduler, which resumes fibers round-robin, so a barrier round completes when every fiber
// has yielded once.
dim3e threadIdx, blockIdx, gridDim, blockDim;
static ucontext_t sched_ctx;
static std::vector<ucontext_t> fctx;
static std::vector<std::vector<char>> fstack;
static std::vector<char> fdone;
static int cur;
static std::function<void()> kbody;
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__
#define __restrict__
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(x)
inline void __syncthreads() { swapcontext(&fctx[cur], &sched_ctx); }
template <typename T> inline bool m_isnan(T x) { return x != x; }
template <typename T> inline T m_inf();
template <> inline float m_inf<float>() { return INFINITY; }
template <> inline double m_inf<double>() { return (double)INFINITY; }
using std::max;
using std::min;
static double shfl_slots[1024];
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) {
    int t = threadIdx.x;
    shfl_slots[t] = (double)v;
    __syncthreads();
    T r = (T)shfl_slots[t ^ o];
    __syncthreads();
    return r;
}
template <typename T> T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static void trampoline() { kbody(); fdone[cur] = 1; }
template <typename F> void launch(dim3e grid, dim3e block, F f) {
    gridDim = grid;
    blockDim = block;
    unsigned nt = block.x;
    kbody = f;
    fctx.assign(nt, ucontext_t{});
    fstack.resize(nt);
    for (auto& s : fstack) s.resize(256 * 1024);
    fdone.assign(nt, 0);
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx.x = x; blockIdx.y = y; blockIdx.z = z;
                for (unsigned t = 0; t < nt; ++t) {
                    getcontext(&fctx[t]);
                    fctx[t].uc_stack.ss_sp = fstack[t].data();
                    fctx[t].uc_stack.ss_size = fstack[t].size();
                    fctx[t].uc_link = &sched_ctx;
                    makecontext(&fctx[t], trampoline, 0);
                    fdone[t] = 0;
                }
                bool any = true;
                while (any) {
                    any = false;
                    for (unsigned t = 0; t < nt; ++t) {
                        if (fdone[t]) continue;
                        cur = t;
                        threadIdx.x = t;
                        swapcontext(&sched_ctx, &fctx[t]);
                        any = true;
                    }
                }
            }
}
