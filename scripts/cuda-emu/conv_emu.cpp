// conv_emu.cpp: runs kernels/conv.cu on the CPU through cuda_emu.h and compares every pass
// (implicit GEMM and direct; forward, backward-data, backward-weight with split-K, bias grad;
// f32 and f64) with a naive f64 reference, over the specs of crates/ember-cuda/tests/conv.rs.
// The launch logic (grids, split-K plan) mirrors src/conv.rs by hand: keep them in step.
// Build and run: scripts/cuda-emu/run.sh
#include "cuda_emu.h"
#include <cstdio>
#include <random>
#include "../../crates/ember-cuda/kernels/conv.cu"
// ---- harness: mirrors ember_cuda::conv's launch logic ----
struct Spec { int n, c, o, groups, h, w, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1; };
static int outx(int in, int k, int s, int d, int p0, int p1) { int span = d * (k - 1) + 1; int padded = in + p0 + p1; return padded < span ? 0 : (padded - span) / s + 1; }
static ConvGeom geom(const Spec& s) {
    ConvGeom g{}; g.n = s.n; g.c = s.c; g.h = s.h; g.w = s.w; g.o = s.o;
    g.oh = outx(s.h, s.kh, s.sh, s.dh, s.ph0, s.ph1); g.ow = outx(s.w, s.kw, s.sw, s.dw, s.pw0, s.pw1);
    g.kh = s.kh; g.kw = s.kw; g.sh = s.sh; g.sw = s.sw; g.dh = s.dh; g.dw = s.dw; g.ph = s.ph0; g.pw = s.pw0;
    g.groups = s.groups; g.cg = s.c / s.groups; g.og = s.o / s.groups; return g;
}
static void splitk_plan(long k, long tiles, long* splits, long* chunk) {
    long want = std::max(256 / std::max(tiles, 1L), 1L);
    long most = std::max((k + 255) / 256, 1L);
    long sp = std::min(std::min(want, most), 64L);
    long ch = std::max(((k + sp - 1) / sp + 15) / 16, 1L) * 16;
    *chunk = ch; *splits = std::max((k + ch - 1) / ch, 1L);
}
template <typename T> struct K;
template <> struct K<float> {
    static constexpr auto fwd = conv_igemm_fwd_f32; static constexpr auto bd = conv_igemm_bwd_data_f32; static constexpr auto bw = conv_igemm_bwd_weight_f32;
    static constexpr auto dfwd = conv_direct_fwd_f32; static constexpr auto dbd = conv_direct_bwd_data_f32; static constexpr auto dbw = conv_direct_bwd_weight_f32;
    static constexpr auto bias = conv_bias_grad_f32; static constexpr auto red = conv_splitk_reduce_f32; static constexpr double rel = 3e-5; };
template <> struct K<double> {
    static constexpr auto fwd = conv_igemm_fwd_f64; static constexpr auto bd = conv_igemm_bwd_data_f64; static constexpr auto bw = conv_igemm_bwd_weight_f64;
    static constexpr auto dfwd = conv_direct_fwd_f64; static constexpr auto dbd = conv_direct_bwd_data_f64; static constexpr auto dbw = conv_direct_bwd_weight_f64;
    static constexpr auto bias = conv_bias_grad_f64; static constexpr auto red = conv_splitk_reduce_f64; static constexpr double rel = 1e-12; };
static int fails = 0;
static void check(const char* what, const char* name, int algo, const std::vector<double>& got, const std::vector<double>& want, const std::vector<double>& sc, double rel) {
    for (size_t i = 0; i < got.size(); ++i) {
        double tol = rel * sc[i] + 1e-30;
        if (!(std::fabs(got[i] - want[i]) <= tol)) { printf("FAIL %s %s algo %d [%zu]: got %g want %g\n", name, what, algo, i, got[i], want[i]); ++fails; return; }
    }
}
template <typename T> void run(const char* name, const Spec& s, std::mt19937_64& rng) {
    ConvGeom g = geom(s);
    long nx = (long)s.n * s.c * s.h * s.w, nw = (long)s.o * g.cg * s.kh * s.kw, ny = (long)s.n * s.o * g.oh * g.ow;
    std::uniform_real_distribution<double> U(-1, 1);
    auto rnd = [&](long n) { std::vector<T> v(n); for (auto& e : v) e = (T)U(rng); return v; };
    auto x = rnd(nx), w = rnd(nw), b = rnd(s.o), dy = rnd(ny), bc = rnd(s.c);  // bc: bias of backward-data (conv_transpose2d)
    // reference
    std::vector<double> ry(ny), rys(ny), rdx(nx), rdxs(nx), rdw(nw), rdws(nw), rdb(s.o), rdbs(s.o);
    long per_o = (long)g.oh * g.ow;
    for (long i = 0; i < ny; ++i) { int oc = (i / per_o) % s.o; ry[i] = b[oc]; rys[i] = std::fabs((double)b[oc]); rdb[oc] += dy[i]; rdbs[oc] += std::fabs((double)dy[i]); }
    for (int nn = 0; nn < s.n; ++nn) for (int oc = 0; oc < s.o; ++oc) for (int y = 0; y < g.oh; ++y) for (int xx = 0; xx < g.ow; ++xx) {
        long yi = (((long)nn * s.o + oc) * g.oh + y) * g.ow + xx; int grp = oc / g.og;
        for (int ci = 0; ci < g.cg; ++ci) for (int ky = 0; ky < s.kh; ++ky) { int iy = y * s.sh - s.ph0 + ky * s.dh; if (iy < 0 || iy >= s.h) continue;
            for (int kx = 0; kx < s.kw; ++kx) { int ix = xx * s.sw - s.pw0 + kx * s.dw; if (ix < 0 || ix >= s.w) continue;
                long wi = (((long)oc * g.cg + ci) * s.kh + ky) * s.kw + kx; long xi = (((long)nn * s.c + grp * g.cg + ci) * s.h + iy) * s.w + ix;
                double a = (double)w[wi] * x[xi]; ry[yi] += a; rys[yi] += std::fabs(a);
                a = (double)w[wi] * dy[yi]; rdx[xi] += a; rdxs[xi] += std::fabs(a);
                a = (double)dy[yi] * x[xi]; rdw[wi] += a; rdws[wi] += std::fabs(a); } } }
    for (long i = 0; i < nx; ++i) { int cc = (i / ((long)s.h * s.w)) % s.c; rdx[i] += bc[cc]; rdxs[i] += std::fabs((double)bc[cc]); }
    // Channel sums of x (conv_transpose2d's bias gradient: conv_bias_grad over input geometry).
    std::vector<double> rcs(s.c), rcss(s.c);
    for (long i = 0; i < nx; ++i) { int cc = (i / ((long)s.h * s.w)) % s.c; rcs[cc] += x[i]; rcss[cc] += std::fabs((double)x[i]); }
    auto todbl = [](const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); };
    for (int algo = 0; algo < 2; ++algo) {  // 0 = implicit GEMM, 1 = direct
        std::vector<T> y(ny, (T)NAN), dx(nx, (T)NAN), dw(nw, (T)NAN), db(s.o, (T)NAN);
        dim3e blk{256, 1, 1};
        if (algo == 0) {
            long m = g.og, n = (long)s.n * g.oh * g.ow;
            launch({(unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), (unsigned)s.groups}, blk, [&] { K<T>::fwd(g, w.data(), x.data(), y.data(), b.data()); });
            m = g.cg; n = (long)s.n * s.h * s.w;
            launch({(unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), (unsigned)s.groups}, blk, [&] { K<T>::bd(g, w.data(), dy.data(), dx.data(), bc.data()); });
            m = g.og; n = nw / s.o; long k = (long)s.n * g.oh * g.ow; long tiles = ((m + 63) / 64) * ((n + 63) / 64) * s.groups, sp, ch;
            splitk_plan(k, tiles, &sp, &ch); ConvGeom g2 = g; g2.kchunk = (int)ch;
            std::vector<T> ws(sp * nw, (T)NAN);
            T* out = sp == 1 ? dw.data() : ws.data();
            launch({(unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), (unsigned)(s.groups * sp)}, blk, [&] { K<T>::bw(g2, dy.data(), x.data(), out); });
            if (sp > 1) launch({4, 1, 1}, blk, [&] { K<T>::red(ws.data(), dw.data(), nw, (int)sp); });
            printf("  %s splits %ld chunk %ld\n", name, sp, ch);
        } else {
            launch({4, 1, 1}, blk, [&] { K<T>::dfwd(g, x.data(), w.data(), y.data(), b.data()); });
            launch({4, 1, 1}, blk, [&] { K<T>::dbd(g, dy.data(), w.data(), dx.data(), bc.data()); });
            launch({(unsigned)nw, 1, 1}, blk, [&] { K<T>::dbw(g, x.data(), dy.data(), dw.data()); });
        }
        launch({(unsigned)s.o, 1, 1}, blk, [&] { K<T>::bias(g, dy.data(), db.data()); });
        std::vector<T> cs(s.c, (T)NAN);
        ConvGeom gc{}; gc.n = s.n; gc.o = s.c; gc.oh = s.h * s.w; gc.ow = 1;
        launch({(unsigned)s.c, 1, 1}, blk, [&] { K<T>::bias(gc, x.data(), cs.data()); });
        check("channel sums", name, algo, todbl(cs), rcs, rcss, K<T>::rel);
        check("y", name, algo, todbl(y), ry, rys, K<T>::rel);
        check("dx", name, algo, todbl(dx), rdx, rdxs, K<T>::rel);
        check("dw", name, algo, todbl(dw), rdw, rdws, K<T>::rel);
        check("db", name, algo, todbl(db), rdb, rdbs, K<T>::rel);
    }
}
int main(int argc, char** argv) {
    // Optional argument: run only the specs whose name contains it.
    const char* only = argc > 1 ? argv[1] : nullptr;
    setvbuf(stdout, nullptr, _IONBF, 0);
    std::mt19937_64 rng(42);
    struct { const char* name; Spec s; } specs[] = {
        {"3x3 valid", {2, 3, 5, 1, 7, 9, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0}},
        {"s2 p1", {3, 4, 6, 1, 11, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}},
        {"4x2 d2 asym", {2, 5, 7, 1, 9, 8, 4, 2, 1, 2, 2, 2, 1, 2, 2, 0}},
        {"groups 2", {2, 6, 4, 2, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
        {"depthwise", {2, 8, 8, 8, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
        {"depthwise x2 s2", {2, 4, 8, 4, 9, 11, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}},
        {"1x1 s2", {3, 17, 33, 1, 9, 9, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0}},
        {"window > input", {1, 2, 3, 1, 2, 3, 3, 4, 1, 1, 1, 1, 2, 2, 1, 2}},
        {"tiles split-K", {4, 70, 67, 1, 13, 15, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
        {"long reduction", {8, 16, 16, 1, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
        {"g3 s(2,1) d(1,3)", {2, 9, 12, 3, 12, 13, 3, 2, 2, 1, 1, 3, 1, 0, 1, 1}},
    };
    for (auto& sp : specs) {
        if (only && !strstr(sp.name, only)) continue;
        run<float>(sp.name, sp.s, rng);
        run<double>(sp.name, sp.s, rng);
        printf("%s done\n", sp.name);
    }
    printf("%d failures\n", fails);
    return fails != 0;
}
