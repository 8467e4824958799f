"""Fits the polynomials behind ember's vectorised f32 erf and exact GELU (crates/ember-cpu/src/verf.rs).

Two pieces, each a minimax fit of our own (Lawson's iteratively reweighted least squares on a
dense grid, which converges to the minimax polynomial), in f64, then rounded to f32:

  * small |x| <= C:   erf(x) = x * P(x^2),  P(z) ~ erf(sqrt z)/sqrt z, relative error minimised;
  * large |x| >= CT:  erfc(a) = exp(-a^2) * R(u) / (a + K),  u = (a - K)/(a + K) = 1 - 2K/(a + K),
                      R(u) ~ erfcx(a) (a + K) on u in [(CT - K)/(CT + K), 1), relative error
                      minimised. The map a -> u folds [C, inf) onto a finite interval on which
                      R is smooth (a plain polynomial in 1/a converges far more slowly: degree
                      12 still misses 1e-8), and q = 1/(a + K) is the only division. erf takes P below 1 and
                      1 - erfc above; Phi(x) = erfc(-x/sqrt 2)/2 takes the tail from a = 0.5 up
                      (below 0.5, 1 -+ erf(a) cancels less than one bit).

Run: /work/venv-torch/bin/python scripts/fit/erf_fit.py  (prints the coefficients, highest degree
first, as the Rust source writes them, and the fit's error before and after rounding to f32).
"""

import numpy as np
from scipy.special import erf, erfcx

C = 1.0  # the end of P's interval, in |x|
CT = 0.5  # the start of R's interval
K = 2.0  # the centre of the map a -> u (a power of two, so 2K q is exact)


def lawson(xs, f, basis, iters=400):
    """Minimax (relative) fit of f on xs in the span of basis(xs) columns."""
    A = basis(xs)
    w = np.ones_like(xs) / len(xs)
    for _ in range(iters):
        sw = np.sqrt(w)
        c, *_ = np.linalg.lstsq(A * sw[:, None], f * sw, rcond=None)
        err = np.abs(A @ c - f) / np.abs(f)
        w = w * err
        w /= w.sum()
    return c, np.max(np.abs(A @ c - f) / np.abs(f))


def horner_f32(coeffs_high_first, z):
    z = z.astype(np.float32)
    acc = np.float32(coeffs_high_first[0])
    for c in coeffs_high_first[1:]:
        acc = (acc * z + np.float32(c)).astype(np.float32)
    return acc


def fit_small(deg):
    z = np.linspace(0, C * C, 20001)
    target = np.where(z > 0, erf(np.sqrt(z)) / np.sqrt(np.maximum(z, 1e-300)), 2 / np.sqrt(np.pi))
    c, e = lawson(z, target, lambda z: np.vander(z, deg + 1, increasing=True))
    hi = [np.float32(v) for v in c[::-1]]
    e32 = np.max(np.abs(horner_f32(hi, z).astype(np.float64) - target) / target)
    return hi, e, e32


def fit_large(deg):
    u = np.linspace((CT - K) / (CT + K), 1, 20001)
    a = K * (1 + u) / np.maximum(1 - u, 1e-300)
    target = np.where(u < 1, erfcx(a) * (a + K), 1 / np.sqrt(np.pi))
    c, e = lawson(u, target, lambda u: np.vander(u, deg + 1, increasing=True))
    hi = [np.float32(v) for v in c[::-1]]
    e32 = np.max(np.abs(horner_f32(hi, u).astype(np.float64) - target) / target)
    return hi, e, e32


if __name__ == "__main__":
    for name, fit, degs in [("P (small)", fit_small, range(4, 8)), ("R (large)", fit_large, range(8, 12))]:
        for d in degs:
            hi, e, e32 = fit(d)
            print(f"{name} degree {d}: rel err f64 {e:.3e}, f32 coeffs {e32:.3e}")
            print("   ", ", ".join(f"{float(v):.8e}" for v in hi))
