//! The few special functions the models need beyond `statrs` (ln Γ, ψ): a stable log-sum-exp,
//! the Gaussian hypergeometric series 2F1, which no maintained pure-Rust crate offers (the
//! bindings that do need the C GSL or BLAS/LAPACK), and a 16-point Gauss–Legendre rule (the
//! crate that offers one brings nalgebra along for sixteen constants).

use std::sync::OnceLock;

/// ln(e^a + e^b) without overflow.
pub(super) fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Nodes and weights of the 16-point Gauss–Legendre rule on [−1, 1], which integrates
/// polynomials up to degree 31 exactly: the roots of the Legendre polynomial P₁₆ by Newton's
/// method from Tricomi's first guesses cos(π(k − ¼)/(n + ½)), and w = 2 / ((1 − x²) P₁₆'(x)²).
pub(super) fn gauss_legendre_16() -> &'static [(f64, f64); 16] {
    static RULE: OnceLock<[(f64, f64); 16]> = OnceLock::new();
    RULE.get_or_init(|| {
        const N: usize = 16;
        let mut rule = [(0.0, 0.0); N];
        for (k, slot) in rule.iter_mut().enumerate() {
            let mut x = (std::f64::consts::PI * (k as f64 + 0.75) / (N as f64 + 0.5)).cos();
            let mut derivative = 0.0;
            for _ in 0..100 {
                // P_n(x) by the three-term recurrence, and P_n'(x) from P_n and P_{n−1}.
                let (mut p0, mut p1) = (1.0, x);
                for j in 2..=N {
                    let j = j as f64;
                    (p0, p1) = (p1, ((2.0 * j - 1.0) * x * p1 - (j - 1.0) * p0) / j);
                }
                derivative = N as f64 * (x * p1 - p0) / (x * x - 1.0);
                let step = p1 / derivative;
                x -= step;
                if step.abs() < 1e-16 {
                    break;
                }
            }
            *slot = (x, 2.0 / ((1.0 - x * x) * derivative * derivative));
        }
        rule
    })
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

/// 2F1(1, b; c; z) = Σ_k (b)_k / (c)_k z^k for 0 ≤ z < 1 and 0 < b < c, with its partial
/// derivatives in b, c and z: [F, ∂F/∂b, ∂F/∂c, ∂F/∂z]. With b < c every term is smaller than
/// the last, so the sum stops at the first term that no longer changes any of the four.
/// Term k's derivatives are term × Σ_{j<k} 1/(b+j), −term × Σ_{j<k} 1/(c+j) and k × term / z.
/// The Pareto/NBD tests check its quadrature against this closed form.
#[cfg(test)]
pub(super) fn hyp2f1_unit(b: f64, c: f64, z: f64) -> [f64; 4] {
    debug_assert!((0.0..1.0).contains(&z) && b > 0.0 && b < c);
    // Term k without its last factor z (so ∂/∂z needs no division by z).
    let mut before_z = 1.0;
    let (mut sum_b, mut sum_c) = (0.0, 0.0);
    let mut f = [1.0, 0.0, 0.0, 0.0];
    for k in 0..MAX_UNIT_TERMS {
        let k = k as f64;
        before_z *= (b + k) / (c + k);
        if k > 0.0 {
            before_z *= z;
        }
        sum_b += 1.0 / (b + k);
        sum_c += 1.0 / (c + k);
        let term = before_z * z;
        let next = [
            f[0] + term,
            f[1] + term * sum_b,
            f[2] - term * sum_c,
            f[3] + (k + 1.0) * before_z,
        ];
        if next == f {
            break;
        }
        f = next;
    }
    f
}

/// Terms of `hyp2f1_unit` summed at most: its terms shrink at least like z^k, and faster by
/// k^(b−c); at z = 0.999 and c − b = 1 that takes ~45,000 terms to reach 1e-17.
#[cfg(test)]
const MAX_UNIT_TERMS: usize = 200_000;

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
    fn gauss_legendre_integrates_polynomials_to_degree_31() {
        let rule = gauss_legendre_16();
        // ∫_{−1}^{1} x^k dx = 2 / (k + 1) for even k, 0 for odd k.
        for k in 0..32 {
            let got: f64 = rule.iter().map(|(x, w)| w * x.powi(k)).sum();
            let want = if k % 2 == 0 {
                2.0 / f64::from(k + 1)
            } else {
                0.0
            };
            assert!((got - want).abs() < 1e-14, "x^{k}: {got} vs {want}");
        }
        // Distinct nodes inside (−1, 1), positive weights.
        for pair in rule.windows(2) {
            assert!(pair[0].0 > pair[1].0, "{pair:?}");
        }
        assert!(rule.iter().all(|(x, w)| x.abs() < 1.0 && *w > 0.0));
    }

    #[test]
    fn log_add_exp_is_stable() {
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_add_exp(1000.0, f64::NEG_INFINITY), 1000.0);
        assert!((log_add_exp(1000.0, 1000.0) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!((log_add_exp(-1000.0, 0.0)).abs() < 1e-300 + f64::EPSILON);
    }

    #[test]
    fn hyp2f1_unit_and_its_derivatives() {
        // 2F1(1, 1; 2; z) = −ln(1 − z) / z, whose z-derivative is
        // 1/(z(1 − z)) + ln(1 − z)/z².
        for z in [0.0, 0.3, 0.9, 0.999] {
            let [f, _, _, dz] = hyp2f1_unit(1.0, 2.0, z);
            let (want, dwant) = if z == 0.0 {
                (1.0, 0.5)
            } else {
                let l = (1.0f64 - z).ln();
                (-l / z, 1.0 / (z * (1.0 - z)) + l / (z * z))
            };
            assert!((f - want).abs() < 1e-12 * want, "z {z}: {f} vs {want}");
            assert!((dz - dwant).abs() < 1e-9 * dwant, "z {z}: {dz} vs {dwant}");
        }
        // The general series agrees, and the b and c derivatives are its slopes.
        let (b, c, z) = (3.7, 5.2, 0.8);
        let [f, db, dc, _] = hyp2f1_unit(b, c, z);
        assert!((f - hyp2f1(1.0, b, c, z)).abs() < 1e-13 * f);
        let h = 1e-6;
        let slope = |g: &dyn Fn(f64) -> f64, v: f64| (g(v + h) - g(v - h)) / (2.0 * h);
        let sb = slope(&|v| hyp2f1_unit(v, c, z)[0], b);
        let sc = slope(&|v| hyp2f1_unit(b, v, z)[0], c);
        assert!((db - sb).abs() < 1e-7 * sb.abs(), "{db} vs {sb}");
        assert!((dc - sc).abs() < 1e-7 * sc.abs(), "{dc} vs {sc}");
    }
}
