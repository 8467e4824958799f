// qgemm_emu.cpp: runs kernels/qgemm.cu (the dp4a int8 GEMM) on the CPU through cuda_emu.h and
// compares it with a direct reading of its contract: C = act(f32(Σ (a − za)·b) · (sa·sb[j]) +
// bias[j]), exactly (same i32 sums, same unfused f32 operations). Shapes cover partial 64×64
// tiles, K not a multiple of 4 or 32, zero points and the full u8 range.
// Build and run: scripts/cuda-emu/run.sh qgemm
#include "cuda_emu.h"
#include <cstdio>
#include <random>
#define EMBER_CUDA_EMU
// dp4a.u32.s32: four u8 × s8 products added to c.
static int dp4a_us(u32 a, u32 b, int c) {
    for (int i = 0; i < 4; ++i) c += (int)((a >> (8 * i)) & 0xff) * (int)(signed char)((b >> (8 * i)) & 0xff);
    return c;
}
static float __int2float_rn(int v) { return (float)v; }
static float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
#include "../../crates/ember-cuda/kernels/qgemm.cu"
static int fails = 0;
int main() {
    std::mt19937_64 rng(3);
    struct S { int m, n, k, za, relu, bias; };
    for (S s : {S{1, 1, 1, 0, 0, 0}, S{64, 64, 32, 0, 0, 1}, S{65, 63, 33, 11, 1, 1}, S{7, 10, 9, 127, 0, 1}, S{70, 130, 100, 200, 1, 0}}) {
        int kw = (s.k + 3) / 4;
        std::vector<unsigned char> a((size_t)s.m * s.k);
        std::vector<signed char> b((size_t)s.n * s.k);
        for (auto& v : a) v = rng() & 0xff;
        for (auto& v : b) v = (signed char)((int)(rng() % 255) - 127);
        std::vector<float> sb(s.n), bias(s.n);
        for (int j = 0; j < s.n; ++j) { sb[j] = 1e-4f + (rng() % 1000) * 1e-5f; bias[j] = (int)(rng() % 2001 - 1000) * 1e-3f; }
        auto pack = [&](const unsigned char* src, int rows) {
            std::vector<u32> w((size_t)rows * kw, 0);
            for (int r = 0; r < rows; ++r) for (int q = 0; q < s.k; ++q) w[(size_t)r * kw + q / 4] |= (u32)src[(size_t)r * s.k + q] << (8 * (q % 4));
            return w;
        };
        auto aw = pack(a.data(), s.m);
        auto bw = pack((const unsigned char*)b.data(), s.n);
        std::vector<int> colsum(s.n, 0);
        for (int j = 0; j < s.n; ++j) for (int q = 0; q < s.k; ++q) colsum[j] += b[(size_t)j * s.k + q];
        float sa = 0.013f;
        std::vector<float> c((size_t)s.m * s.n, NAN);
        dim3e G{(unsigned)((s.n + 63) / 64), (unsigned)((s.m + 63) / 64), 1}, B{256, 1, 1};
        launch(G, B, [&] { qgemm_dp4a_f32(aw.data(), bw.data(), colsum.data(), s.m, s.n, kw, s.za, sa, sb.data(), bias.data(), s.bias, s.relu, c.data(), s.n); });
        for (int i = 0; i < s.m && fails < 10; ++i) for (int j = 0; j < s.n; ++j) {
            int acc = 0;
            for (int q = 0; q < s.k; ++q) acc += ((int)a[(size_t)i * s.k + q] - s.za) * (int)b[(size_t)j * s.k + q];
            volatile float scale = sa * sb[j];
            volatile float v = (float)acc * scale;
            if (s.bias) v = v + bias[j];
            float want = (s.relu && !(v > 0.0f)) ? 0.0f : v;
            float got = c[(size_t)i * s.n + j];
            if (!(got == want)) { printf("FAIL m%d n%d k%d za%d: C[%d,%d] = %.9g want %.9g\n", s.m, s.n, s.k, s.za, i, j, got, want); ++fails; break; }
        }
    }
    printf("%d failures\n", fails);
    return fails ? 1 : 0;
}
