//! The RDP accountant against Opacus's: ε for ten (sampling rate, σ, steps, δ) settings,
//! made once with Opacus (`scripts/goldens/rdp_accountant.py`), must agree within 1 %.

use ember_nn::privacy::RdpAccountant;

#[test]
fn epsilon_matches_opacus_within_one_percent() {
    let text = include_str!("goldens/rdp_epsilon.txt");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let (q, sigma, steps, delta, want) = (f[0], f[1], f[2] as u64, f[3], f[4]);
        let mut acc = RdpAccountant::new();
        acc.record(sigma, q, steps).unwrap();
        let (eps, order) = acc.epsilon(delta).unwrap();
        let rel = (eps - want).abs() / want;
        println!(
            "q {q:.5} σ {sigma} steps {steps} δ {delta}: ember {eps:.6} (α {order}), Opacus {want:.6}, rel {rel:.2e}"
        );
        assert!(rel < 0.01, "{line}: ember ε {eps} vs Opacus {want}");
        n += 1;
    }
    assert_eq!(n, 10);
}
