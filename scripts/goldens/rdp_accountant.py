"""Expected epsilons of the RDP accountant for DP-SGD, made once with Opacus.

Run: python scripts/goldens/rdp_accountant.py > crates/ember-nn/tests/goldens/rdp_epsilon.txt
(needs `pip install opacus` with torch, numpy and scipy). Each line: sample_rate noise_multiplier
steps delta epsilon, from Opacus's RDPAccountant with its default orders.
"""
from opacus.accountants import RDPAccountant
import opacus

settings = [
    # (sampling rate q, noise multiplier sigma, steps, delta)
    (256 / 60000, 1.1, 1000, 1e-5),
    (256 / 60000, 1.1, 14070, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.01, 0.5, 100, 1e-5),
    (0.02, 2.0, 5000, 1e-6),
    (0.1, 1.5, 300, 1e-5),
    (64 / 455, 1.0, 350, 1e-5),     # breast-cancer-sized data, batch 64, ~50 epochs
    (0.001, 0.8, 10000, 1e-5),
    (0.05, 4.0, 2000, 1e-5),
    (1.0, 5.0, 10, 1e-5),           # full batch: the plain Gaussian mechanism
]
print(f"# Opacus {opacus.__version__} RDPAccountant, default orders; q sigma steps delta epsilon")
for q, sigma, steps, delta in settings:
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    print(f"{q!r} {sigma!r} {steps} {delta!r} {acc.get_epsilon(delta)!r}")
