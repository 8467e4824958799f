// pool_emu.cpp: runs kernels/pool.cu (f64 entry points) on the CPU through cuda_emu.h and
// compares max/avg/adaptive pooling, nearest upsampling and padding, forward and backward, with
// naive references (max pooling: values, argmax indices and the routed gradient exactly, on
// inputs full of ties and NaNs). Build and run: scripts/cuda-emu/run.sh
#include "cuda_emu.h"
#include <cstdio>
#include <random>
#include "../../crates/ember-cuda/kernels/pool.cu"
static int fails = 0;
static void check(const char* what, const std::vector<double>& got, const std::vector<double>& want, double rel) {
    for (size_t i = 0; i < got.size(); ++i) {
        bool ok = (std::isnan(want[i]) && std::isnan(got[i])) || std::fabs(got[i] - want[i]) <= rel * (1 + std::fabs(want[i]));
        if (!ok) { printf("FAIL %s [%zu]: got %g want %g\n", what, i, got[i], want[i]); ++fails; return; }
    }
}
struct P { int planes, h, w, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1; bool ceil; int include; };
static int out1(int in, int k, int s, int d, int p0, int p1, bool ceil) {
    int span = d * (k - 1) + 1, padded = in + p0 + p1; if (padded < span) return 0;
    if (!ceil) return (padded - span) / s + 1;
    int o = (padded - span + s - 1) / s + 1; if ((o - 1) * s >= in + p0) --o; return o;
}
static PoolGeom geom(const P& p) {
    PoolGeom g{}; g.h = p.h; g.w = p.w; g.oh = out1(p.h, p.kh, p.sh, p.dh, p.ph0, p.ph1, p.ceil); g.ow = out1(p.w, p.kw, p.sw, p.dw, p.pw0, p.pw1, p.ceil);
    g.kh = p.kh; g.kw = p.kw; g.sh = p.sh; g.sw = p.sw; g.dh = p.dh; g.dw = p.dw; g.ph = p.ph0; g.pw = p.pw0; g.include_pad = p.include; g.pad_end_h = p.ph1; g.pad_end_w = p.pw1; return g;
}
std::mt19937_64 rng(7);
static std::vector<double> rnd(long n, bool ints) { std::uniform_real_distribution<double> U(-1, 1); std::uniform_int_distribution<int> I(-2, 2); std::vector<double> v(n); for (auto& e : v) e = ints ? I(rng) : U(rng); return v; }
dim3e B{256, 1, 1}, G{3, 1, 1};
void test_max(const P& p, bool nans) {
    PoolGeom g = geom(p); long nx = (long)p.planes * p.h * p.w, ny = (long)p.planes * g.oh * g.ow;
    auto x = rnd(nx, true); if (nans) for (int i = 0; i < nx / 10 + 1; ++i) x[rng() % nx] = NAN;
    auto dy = rnd(ny, false);
    std::vector<double> ry(ny), rdx(nx, 0); std::vector<u32> ri(ny);
    for (int q = 0; q < p.planes; ++q) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        long o = ((long)q * g.oh + oy) * g.ow + ox; double best = -INFINITY; long bi = -1;
        for (int ky = 0; ky < p.kh; ++ky) { int iy = oy * p.sh - p.ph0 + ky * p.dh; if (iy < 0 || iy >= p.h) continue;
            for (int kx = 0; kx < p.kw; ++kx) { int ix = ox * p.sw - p.pw0 + kx * p.dw; if (ix < 0 || ix >= p.w) continue;
                double v = x[((long)q * p.h + iy) * p.w + ix]; if (bi < 0 || v > best || std::isnan(v)) { best = v; bi = iy * p.w + ix; } } }
        ry[o] = best; ri[o] = bi < 0 ? 0xffffffffu : (u32)bi; if (bi >= 0) rdx[(long)q * p.h * p.w + bi] += dy[o]; }
    std::vector<double> y(ny, NAN), dx(nx, NAN); std::vector<u32> idx(ny, 7);
    launch(G, B, [&] { max_pool2d_fwd_f64(g, x.data(), y.data(), idx.data(), ny); });
    launch(G, B, [&] { max_pool2d_bwd_f64(g, dy.data(), idx.data(), dx.data(), nx); });
    check("max y", y, ry, 0); check("max dx", dx, rdx, 1e-14);
    for (long i = 0; i < ny; ++i) if (idx[i] != ri[i]) { printf("FAIL max idx [%ld]: %u vs %u\n", i, idx[i], ri[i]); ++fails; break; }
}
void test_avg(const P& p) {
    PoolGeom g = geom(p); long nx = (long)p.planes * p.h * p.w, ny = (long)p.planes * g.oh * g.ow;
    auto x = rnd(nx, false), dy = rnd(ny, false); std::vector<double> ry(ny, 0), rdx(nx, 0);
    for (int q = 0; q < p.planes; ++q) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        long o = ((long)q * g.oh + oy) * g.ow + ox;
        int y0 = oy * p.sh - p.ph0, x0 = ox * p.sw - p.pw0; int y1 = std::min(y0 + p.kh, p.h + p.ph1), x1 = std::min(x0 + p.kw, p.w + p.pw1);
        int pad = (y1 - y0) * (x1 - x0); int ys = std::max(y0, 0), xs = std::max(x0, 0), ye = std::min(y1, p.h), xe = std::min(x1, p.w);
        double div = p.include ? pad : (ye - ys) * (xe - xs);
        for (int iy = ys; iy < ye; ++iy) for (int ix = xs; ix < xe; ++ix) { long i = ((long)q * p.h + iy) * p.w + ix; ry[o] += x[i]; rdx[i] += dy[o] / div; }
        ry[o] /= div; }
    std::vector<double> y(ny, NAN), dx(nx, NAN);
    launch(G, B, [&] { avg_pool2d_fwd_f64(g, x.data(), y.data(), ny); });
    launch(G, B, [&] { avg_pool2d_bwd_f64(g, dy.data(), dx.data(), nx); });
    check("avg y", y, ry, 1e-13); check("avg dx", dx, rdx, 1e-13);
}
void test_adaptive(int h, int w, int oh, int ow) {
    PoolGeom g{}; g.h = h; g.w = w; g.oh = oh; g.ow = ow; int planes = 3;
    long nx = (long)planes * h * w, ny = (long)planes * oh * ow; auto x = rnd(nx, false), dy = rnd(ny, false);
    std::vector<double> ry(ny, 0), rdx(nx, 0);
    for (int q = 0; q < planes; ++q) for (int oy = 0; oy < oh; ++oy) for (int ox = 0; ox < ow; ++ox) {
        int y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh, x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow; double cnt = (y1 - y0) * (x1 - x0);
        long o = ((long)q * oh + oy) * ow + ox;
        for (int iy = y0; iy < y1; ++iy) for (int ix = x0; ix < x1; ++ix) { long i = ((long)q * h + iy) * w + ix; ry[o] += x[i]; rdx[i] += dy[o] / cnt; }
        ry[o] /= cnt; }
    std::vector<double> y(ny, NAN), dx(nx, NAN);
    launch(G, B, [&] { adaptive_avg_pool2d_fwd_f64(g, x.data(), y.data(), ny); });
    launch(G, B, [&] { adaptive_avg_pool2d_bwd_f64(g, dy.data(), dx.data(), nx); });
    check("adaptive y", y, ry, 1e-13); check("adaptive dx", dx, rdx, 1e-13);
}
void test_upsample(int h, int w, int sh, int sw) {
    PoolGeom g{}; g.h = h; g.w = w; g.oh = h * sh; g.ow = w * sw; g.sh = sh; g.sw = sw; int planes = 2;
    long nx = (long)planes * h * w, ny = (long)planes * g.oh * g.ow; auto x = rnd(nx, false), dy = rnd(ny, false);
    std::vector<double> ry(ny), rdx(nx, 0);
    for (int q = 0; q < planes; ++q) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        long o = ((long)q * g.oh + oy) * g.ow + ox, i = ((long)q * h + oy / sh) * w + ox / sw; ry[o] = x[i]; rdx[i] += dy[o]; }
    std::vector<double> y(ny, NAN), dx(nx, NAN);
    launch(G, B, [&] { upsample_nearest2d_fwd_f64(g, x.data(), y.data(), ny); });
    launch(G, B, [&] { upsample_nearest2d_bwd_f64(g, dy.data(), dx.data(), nx); });
    check("up y", y, ry, 0); check("up dx", dx, rdx, 1e-13);
}
static int refl(int j, int n) { if (j < 0) j = -j; if (j >= n) j = 2 * (n - 1) - j; return j; }
void test_pad(int h, int w, int top, int bottom, int left, int right, bool reflect_mode, double value) {
    PoolGeom g{}; g.h = h; g.w = w; g.oh = h + top + bottom; g.ow = w + left + right; g.ph = top; g.pw = left; g.pad_end_h = bottom; g.pad_end_w = right; int planes = 2;
    long nx = (long)planes * h * w, ny = (long)planes * g.oh * g.ow; auto x = rnd(nx, false), dy = rnd(ny, false);
    std::vector<double> ry(ny), rdx(nx, 0);
    for (int q = 0; q < planes; ++q) for (int oy = 0; oy < g.oh; ++oy) for (int ox = 0; ox < g.ow; ++ox) {
        long o = ((long)q * g.oh + oy) * g.ow + ox; int jy = oy - top, jx = ox - left;
        if (reflect_mode) { jy = refl(jy, h); jx = refl(jx, w); }
        else if (jy < 0 || jx < 0 || jy >= h || jx >= w) { ry[o] = value; continue; }
        long i = ((long)q * h + jy) * w + jx; ry[o] = x[i]; rdx[i] += dy[o]; }
    std::vector<double> y(ny, NAN), dx(nx, NAN);
    launch(G, B, [&] { pad2d_fwd_f64(g, reflect_mode, value, x.data(), y.data(), ny); });
    launch(G, B, [&] { pad2d_bwd_f64(g, reflect_mode, dy.data(), dx.data(), nx); });
    check("pad y", y, ry, 0); check("pad dx", dx, rdx, 1e-13);
}
int main() {
    P maxs[] = {{6, 9, 8, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, false, 0}, {4, 10, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, 0},
                {3, 11, 9, 3, 2, 1, 2, 2, 1, 1, 0, 0, 1, false, 0}, {3, 5, 26, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, true, 0},
                {4, 13, 6, 3, 1, 3, 1, 1, 1, 1, 1, 0, 0, false, 0}, {2, 2, 2, 2, 2, 1, 1, 3, 3, 1, 0, 1, 0, false, 0}};
    for (auto& p : maxs) { test_max(p, false); test_max(p, true); }
    for (int inc = 0; inc < 2; ++inc) {
        P avgs[] = {{6, 9, 8, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, false, inc}, {4, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, inc},
                    {2, 6, 5, 2, 3, 1, 2, 1, 1, 1, 0, 0, 1, false, inc}, {2, 5, 6, 3, 2, 3, 2, 1, 1, 1, 1, 1, 1, true, inc}};
        for (auto& p : avgs) test_avg(p);
    }
    test_adaptive(7, 5, 3, 2); test_adaptive(5, 5, 5, 5); test_adaptive(4, 6, 1, 1); test_adaptive(3, 3, 5, 4); test_adaptive(10, 13, 4, 6);
    test_upsample(5, 7, 2, 2); test_upsample(3, 4, 3, 1); test_upsample(1, 1, 4, 5);
    for (int r = 0; r < 2; ++r) { test_pad(5, 6, 3, 0, 1, 2, r, 1.5); test_pad(7, 5, 4, 4, 4, 4, r, 0); test_pad(3, 5, 2, 2, 4, 4, r, -2); }
    printf("%d failures\n", fails); return fails != 0;
}
