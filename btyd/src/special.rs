//! The few special functions the models need beyond `statrs` (ln Γ, ψ): a stable log-sum-exp
//! and the Gaussian hypergeometric series 2F1, which no maintained pure-Rust crate offers (the
//! bindings that do need the C GSL or BLAS/LAPACK).

/// ln(e^a + e^b) without overflow.
pub(super) fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Terms summed at most: the series' terms shrink like z^k once k exceeds the parameters, so
/// for z ≤ 0.998 the tail is below 1e-16 long before.
const MAX_TERMS: usize = 20_000;

/// The Gaussian hypergeometric function 2F1(a, b; c; z) for 0 ≤ z < 1 (c not 0, −1, −2, …), by
/// its power series Σ_k (a)_k (b)_k / ((c)_k k!) z^k, summed until a term no longer changes the
/// sum. Once k exceeds |a|, |b| and |c| the ratio of consecutive terms is below 1 and tends to
/// z, so the stop is only taken from there. Callers keep `a` and `b` small next to `c` (Euler's
/// transformation, see `bgnbd`), where the terms shrink from the start.
pub(super) fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    debug_assert!((0.0..1.0).contains(&z));
    let settled = a.abs().max(b.abs()).max(c.abs()) + 1.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..MAX_TERMS {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        let next = sum + term;
        if term == 0.0 || (next == sum && k > settled) {
            return next;
        }
        sum = next;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = −ln(1 − z) / z.
        for z in [0.0001, 0.3, 0.9, 0.99] {
            let want = -(1.0f64 - z).ln() / z;
            assert!(
                (hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-12 * want,
                "z {z}"
            );
        }
        // 2F1(a, b; b; z) = (1 − z)^(−a).
        let (a, z) = (0.7, 0.6);
        assert!((hyp2f1(a, 3.5, 3.5, z) - (1.0f64 - z).powf(-a)).abs() < 1e-12);
        // A terminating series: 2F1(−2, b; c; z) = 1 − 2bz/c + b(b+1)z²/(c(c+1)).
        let (b, c, z) = (1.5, 4.0, 0.5);
        let want = 1.0 - 2.0 * b * z / c + b * (b + 1.0) * z * z / (c * (c + 1.0));
        assert!((hyp2f1(-2.0, b, c, z) - want).abs() < 1e-15);
    }

    #[test]
    fn log_add_exp_is_stable() {
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_add_exp(1000.0, f64::NEG_INFINITY), 1000.0);
        assert!((log_add_exp(1000.0, 1000.0) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!((log_add_exp(-1000.0, 0.0)).abs() < 1e-300 + f64::EPSILON);
    }
}
