//! Pareto/NBD against the published CDNOW fit, lifetimes, its closed form and the integral.

use super::super::special::hyp2f1_unit;
use super::super::{assert_gradient, cdnow_triples, fit};
use super::*;
use proptest::prelude::*;

const PUBLISHED: ParetoNbd = ParetoNbd {
    r: 0.553,
    alpha: 10.58,
    s: 0.606,
    beta: 11.67,
};

/// α > β, the other branch of the hypergeometric terms.
const ALPHA_ABOVE_BETA: ParetoNbd = ParetoNbd {
    r: 0.553,
    alpha: 20.0,
    s: 0.606,
    beta: 3.0,
};

#[test]
fn cdnow_log_likelihood_at_the_published_parameters_is_the_published_one() {
    // Fader & Hardie's note and FHL 2005: LL = −9595.0 at r 0.553, α 10.58, s 0.606,
    // β 11.67 on all 2,357 customers.
    let ll: f64 = cdnow_triples()
        .iter()
        .map(|c| PUBLISHED.log_likelihood(c).0)
        .sum();
    assert!((ll - -9595.0).abs() < 0.05, "{ll}");
}

#[test]
fn cdnow_fit_is_the_published_maximum() {
    let fitted = fit::<ParetoNbd>(&cdnow_triples(), 0.0);
    assert!(fitted.converged, "{fitted:?}");
    let m = fitted.model;
    // At least as good as the published optimum and the same one to its digits;
    // lifetimes 0.11.3's ParetoNBDFitter (tol 1e-10) on the same summary finds r 0.553275,
    // α 10.577612, s 0.606213, β 11.667909 with LL −9594.97393, held to 1e-4.
    assert!(fitted.log_likelihood >= -9594.9740, "{fitted:?}");
    for (got, published, lifetimes) in [
        (m.r, PUBLISHED.r, 0.553275),
        (m.alpha, PUBLISHED.alpha, 10.577612),
        (m.s, PUBLISHED.s, 0.606213),
        (m.beta, PUBLISHED.beta, 11.667909),
    ] {
        assert!(
            (got - published).abs() < 0.006 * published.max(1.0),
            "{m:?}"
        );
        assert!((got - lifetimes).abs() < 1e-4 * lifetimes, "{m:?}");
    }
}

#[test]
fn log_likelihood_by_hand_where_alpha_equals_beta() {
    // With α = β the integral is elementary:
    // I(y) = ∫_y^∞ (α+τ)^−(r+s+x+1) dτ = (α+y)^−(r+s+x) / (r+s+x).
    // r 1, α = β = 2, s 1, x 1, t_x 2, T 6: r+s+x = 3,
    // L = Γ(2)/Γ(1) · 2 · 2 · [8^−3 + (4^−3 − 8^−3) / 3]
    //   = 4 · [1/512 + (8/512 − 1/512) / 3] = 4 · (3 + 7) / 1536 = 40 / 1536.
    let m = ParetoNbd {
        r: 1.0,
        alpha: 2.0,
        s: 1.0,
        beta: 2.0,
    };
    let c = Triple {
        x: 1.0,
        t_x: 2.0,
        t: 6.0,
        n: 1.0,
    };
    let (ll, _) = m.log_likelihood(&c);
    assert!((ll - (40.0f64 / 1536.0).ln()).abs() < 1e-14, "{ll}");
    // P(alive) is the first term's share: 3 / 10.
    assert!((m.p_alive(1.0, 2.0, 6.0) - 0.3).abs() < 1e-15);
    // E[X(h)], h 8, s = 1: (r+x)(β+T)/(α+T) · ln((β+T+h)/(β+T)) · P(alive)
    //   = 2 · 1 · ln(16/8) · 0.3 = 0.6 ln 2.
    let e = m.expected_purchases(8.0, 1.0, 2.0, 6.0);
    assert!((e - 0.6 * 2f64.ln()).abs() < 1e-14, "{e}");
}

/// Fader & Hardie's closed form, an evaluation independent of the quadrature:
/// ln(s I(y)) and its gradient in (r, α, s, β). With Euler's transformation Fader &
/// Hardie's 2F1(r+s+x, s+1; r+s+x+1; z) (α ≥ β) and 2F1(r+s+x, r+x; r+s+x+1; z) (α < β)
/// become series 2F1(1, b; c; z) with b < c, whose terms shrink from the first:
/// - α ≥ β: (r+s+x) I(y) = (α+y)^−(r+x) (β+y)^−s 2F1(1, r+x; r+s+x+1; (α−β)/(α+y));
/// - α < β: (r+s+x) I(y) = (α+y)^−(r+x−1) (β+y)^−(s+1) 2F1(1, s+1; r+s+x+1; (β−α)/(β+y)).
fn ln_s_i(m: &ParetoNbd, x: f64, y: f64) -> LogTerm {
    let ParetoNbd { r, alpha, s, beta } = *m;
    let (ay, by) = (alpha + y, beta + y);
    let (la, lb) = (ay.ln(), by.ln());
    let c = r + s + x + 1.0;
    let (ln_k, dk) = if alpha >= beta {
        let z = (alpha - beta) / ay;
        let [f, fb, fc, fz] = hyp2f1_unit(r + x, c, z);
        (
            -(r + x) * la - s * lb + f.ln(),
            [
                -la + (fb + fc) / f,
                -(r + x) / ay + fz / f * by / (ay * ay),
                -lb + fc / f,
                -s / by - fz / f / ay,
            ],
        )
    } else {
        let z = (beta - alpha) / by;
        let [f, fb, fc, fz] = hyp2f1_unit(s + 1.0, c, z);
        (
            -(r + x - 1.0) * la - (s + 1.0) * lb + f.ln(),
            [
                -la + fc / f,
                -(r + x - 1.0) / ay - fz / f / by,
                -lb + (fb + fc) / f,
                -(s + 1.0) / by + fz / f * ay / (by * by),
            ],
        )
    };
    let n = r + s + x;
    (
        s.ln() - n.ln() + ln_k,
        [dk[0] - 1.0 / n, dk[1], dk[2] + 1.0 / s - 1.0 / n, dk[3]],
    )
}

/// ln(β^s s (I(t_x) − I(T))) from the closed form, where the difference does not cancel.
fn series_between(m: &ParetoNbd, x: f64, t_x: f64, t: f64) -> LogTerm {
    let ((a, ga), (b, gb)) = (ln_s_i(m, x, t_x), ln_s_i(m, x, t));
    let share = (b - a).exp();
    assert!(share < 0.9, "the difference cancels: {share}");
    let mut g = [0.0; 4];
    for i in 0..4 {
        g[i] = (ga[i] - share * gb[i]) / (1.0 - share);
    }
    g[2] += m.beta.ln();
    g[3] += m.s / m.beta;
    (a + (-share).ln_1p() + m.s * m.beta.ln(), g)
}

/// ln((s/β) ∫_{t_x}^{T} (α+τ)^−(r+x) (1 + τ/β)^−(s+1) dτ) by Simpson's rule in
/// v = ln(c + τ), c = min(α, β, 1), which spreads the steep start when α or β is small.
fn simpson_between(m: &ParetoNbd, x: f64, t_x: f64, t: f64) -> f64 {
    let c = m.alpha.min(m.beta).min(1.0);
    let f = |v: f64| {
        let tau = v.exp() - c;
        let ln = -(m.r + x) * (m.alpha + tau).ln() - (m.s + 1.0) * (tau / m.beta).ln_1p();
        (ln + v).exp()
    };
    let (v0, v1) = ((c + t_x).ln(), (c + t).ln());
    let steps = 200_000;
    let h = (v1 - v0) / steps as f64;
    let mut sum = f(v0) + f(v1);
    for k in 1..steps {
        sum += f(v0 + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
    }
    (m.s * sum * h / 3.0).ln() - m.beta.ln()
}

#[test]
fn the_dying_term_is_the_integral() {
    // Both evaluations against Simpson's rule, on both branches of the closed form, and
    // where the closed form's series would need millions of terms: dropout nearly
    // homogeneous (s, β → ∞ with s/β = 0.043 a week) or α tiny.
    let homogeneous = ParetoNbd {
        r: 0.62,
        alpha: 0.6,
        s: 9.7e6,
        beta: 2.25e8,
    };
    let tiny_alpha = ParetoNbd {
        r: 0.3,
        alpha: 1e-5,
        s: 2.0,
        beta: 40.0,
    };
    for m in [PUBLISHED, ALPHA_ABOVE_BETA, homogeneous, tiny_alpha] {
        for (x, t_x, t) in [
            (0.0, 0.0, 38.86),
            (2.0, 30.43, 38.86),
            (7.0, 3.0, 52.0),
            (60.0, 10.0, 200.0),
        ] {
            let want = simpson_between(&m, x, t_x, t);
            let got = m.ln_dead_between(x, t_x, t).unwrap().0;
            assert!(
                (got - want).abs() < 1e-9,
                "{m:?} {x} {t_x} {t}: ln {got} vs {want}"
            );
            if m.s < 100.0 && m.alpha > 0.1 {
                let closed = series_between(&m, x, t_x, t).0;
                assert!(
                    (closed - want).abs() < 1e-9,
                    "{m:?} {x} {t_x} {t}: ln {closed} vs {want}"
                );
            }
        }
    }
    assert!(PUBLISHED.ln_dead_between(3.0, 20.0, 20.0).is_none());
}

proptest! {
    /// Quadrature and closed form agree wherever the closed form is usable (its series
    /// converges in a few thousand terms and the difference keeps a tenth of its digits).
    #[test]
    fn quadrature_matches_the_closed_form(
        logp in proptest::array::uniform4(-3.0f64..3.0),
        x in 0u32..80,
        tx_share in 0.0f64..1.0,
        t in 0.5f64..300.0,
    ) {
        let m = ParetoNbd::from_log(&logp);
        let x = f64::from(x);
        let t_x = if x == 0.0 { 0.0 } else { tx_share * t };
        let z = (m.alpha - m.beta).abs() / (m.alpha.max(m.beta) + t_x);
        let share = (ln_s_i(&m, x, t).0 - ln_s_i(&m, x, t_x).0).exp();
        prop_assume!(z < 0.99 && share < 0.9);
        let (want, want_g) = series_between(&m, x, t_x, t);
        let (got, got_g) = m.ln_dead_between(x, t_x, t).unwrap();
        prop_assert!((got - want).abs() < 1e-11 * want.abs().max(1.0), "{got} vs {want}");
        for i in 0..4 {
            let scale = want_g[i].abs().max(1.0);
            prop_assert!((got_g[i] - want_g[i]).abs() < 1e-8 * scale, "{got_g:?} vs {want_g:?}");
        }
    }
}

#[test]
fn conditional_expectations_match_lifetimes() {
    // lifetimes 0.11.3's ParetoNBDFitter with params_ set (an independent implementation:
    // scipy's hyp2f1 on the untransformed terms), h in weeks:
    // (x, t_x, T, h, E[purchases in h], P(alive), ln L).
    let published = [
        (
            2.0,
            30.43,
            38.86,
            39.0,
            1.455075199265843,
            0.8691714821202603,
            -9.554246553409403,
        ),
        (
            0.0,
            0.0,
            38.86,
            39.0,
            0.10708626479093629,
            0.2953109045978425,
            -0.5210064705683335,
        ),
        (
            500.0,
            519.0,
            521.7,
            52.0,
            46.860223613419045,
            0.9859732786697398,
            -534.976284140102,
        ),
        (
            2.0,
            4.0,
            6.0,
            10.0,
            1.2250184474738988,
            0.9178276908144005,
            -6.1826797541222875,
        ),
        (
            7.0,
            35.0,
            38.5,
            1.0,
            0.1442957148391405,
            0.9432820418245256,
            -21.765229742138075,
        ),
    ];
    let above = [
        (
            2.0,
            30.43,
            38.86,
            39.0,
            1.1563705415521557,
            0.847303270309153,
            -10.331005486877373,
        ),
        (
            0.0,
            0.0,
            38.86,
            39.0,
            0.04107442555461116,
            0.13894375925780955,
            -0.2204838266918694,
        ),
        (
            500.0,
            519.0,
            521.7,
            52.0,
            46.03351781181045,
            0.986167891308682,
            -544.218652928836,
        ),
        (
            2.0,
            4.0,
            6.0,
            10.0,
            0.6487591895720466,
            0.8449331738138195,
            -7.3107505555233265,
        ),
        (
            7.0,
            35.0,
            38.5,
            1.0,
            0.11978614040703987,
            0.9345120212095714,
            -23.43809914839931,
        ),
    ];
    for (m, cases) in [(PUBLISHED, published), (ALPHA_ABOVE_BETA, above)] {
        for (x, t_x, t, h, e, p, ll) in cases {
            let got = m.expected_purchases(h, x, t_x, t);
            assert!(
                (got - e).abs() < 1e-10 * e,
                "{x} {t_x} {t} {h}: {got} vs {e}"
            );
            let got = m.p_alive(x, t_x, t);
            assert!((got - p).abs() < 1e-10, "{x} {t_x} {t}: {got} vs {p}");
            let got = m.log_likelihood(&Triple { x, t_x, t, n: 1.0 }).0;
            assert!(
                (got - ll).abs() < 1e-10 * ll.abs(),
                "{x} {t_x} {t}: {got} vs {ll}"
            );
        }
    }
}

#[test]
fn gradient_is_the_slope_of_the_log_likelihood() {
    let equal = ParetoNbd {
        r: 0.553,
        alpha: 10.58,
        s: 0.606,
        beta: 10.58,
    };
    for m in [PUBLISHED, ALPHA_ABOVE_BETA, equal] {
        for (x, t_x, t) in [
            (0.0, 0.0, 38.86),
            (2.0, 30.43, 38.86),
            (7.0, 38.5, 38.5),
            (500.0, 519.0, 521.0),
        ] {
            assert_gradient::<ParetoNbd>(&m.to_log(), &Triple { x, t_x, t, n: 1.0 });
        }
    }
}

#[test]
fn many_purchases_and_long_histories_stay_finite() {
    // 500 repeat purchases over 10 years in weeks, and 10 years without one.
    for m in [PUBLISHED, ALPHA_ABOVE_BETA] {
        for (x, t_x, t) in [
            (500.0, 519.0, 521.7),
            (500.0, 100.0, 521.7),
            (0.0, 0.0, 521.7),
        ] {
            let (ll, g) = m.log_likelihood(&Triple { x, t_x, t, n: 1.0 });
            assert!(
                ll.is_finite() && g.iter().all(|v| v.is_finite()),
                "{ll} {g:?}"
            );
            let p = m.p_alive(x, t_x, t);
            assert!((0.0..=1.0).contains(&p), "{p}");
            let e = m.expected_purchases(52.0, x, t_x, t);
            assert!(e.is_finite() && e >= 0.0, "{e}");
        }
    }
}

#[test]
fn expected_purchases_grow_with_the_horizon() {
    let mut last = 0.0;
    for h in [1.0, 4.0, 13.0, 26.0, 52.0, 104.0, 520.0] {
        let e = PUBLISHED.expected_purchases(h, 2.0, 30.43, 38.86);
        assert!(e > last, "{h}: {e} after {last}");
        last = e;
    }
}

proptest! {
    /// For any parameters and customer: ln L finite, P(alive) a probability, and expected
    /// purchases that grow with the horizon.
    #[test]
    fn probabilities_and_expectations_are_well_formed(
        logp in proptest::array::uniform4(-4.0f64..4.0),
        x in 0u32..300,
        tx_share in 0.0f64..1.0,
        t in 0.1f64..600.0,
        h in 0.1f64..200.0,
    ) {
        let m = ParetoNbd::from_log(&logp);
        let x = f64::from(x);
        let t_x = if x == 0.0 { 0.0 } else { tx_share * t };
        let (ll, g) = m.log_likelihood(&Triple { x, t_x, t, n: 1.0 });
        prop_assert!(ll.is_finite() && g.iter().all(|v| v.is_finite()), "{ll} {g:?}");
        let p = m.p_alive(x, t_x, t);
        prop_assert!((0.0..=1.0).contains(&p), "{p}");
        let (e1, e2) = (m.expected_purchases(h, x, t_x, t), m.expected_purchases(2.0 * h, x, t_x, t));
        prop_assert!(e1.is_finite() && e1 >= 0.0 && e2 >= e1, "{e1} {e2}");
    }
}
