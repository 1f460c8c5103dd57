//! The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way") and its
//! MBG/NBD variant: while alive a customer buys at rate λ ~ Gamma(r, α); after each purchase
//! they drop out with probability p ~ Beta(a, b). Everything is written in logs, so customers with hundreds of
//! purchases or years of history neither overflow nor lose precision.

use statrs::function::gamma::{digamma, ln_gamma};

use super::special::{hyp2f1, log_add_exp};
use super::{sum_by_x, Model, Triple};

/// The four parameters, all positive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// The MBG/NBD model (Batislam, Denizel & Filiztekin 2007): BG/NBD's parameters, but a
/// customer may also drop out right after their first purchase, so one without repeat
/// purchases is not certainly alive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MbgNbd(pub BgNbd);

fn from_log(p: &[f64]) -> BgNbd {
    BgNbd {
        r: p[0].exp(),
        alpha: p[1].exp(),
        a: p[2].exp(),
        b: p[3].exp(),
    }
}

fn to_log(m: &BgNbd) -> [f64; 4] {
    [m.r.ln(), m.alpha.ln(), m.a.ln(), m.b.ln()]
}

impl Model for BgNbd {
    type Obs = Triple;
    const N: usize = 4;

    fn from_log(p: &[f64]) -> Self {
        from_log(p)
    }

    fn to_log(&self) -> [f64; 4] {
        to_log(self)
    }

    fn weight(obs: &Triple) -> f64 {
        obs.n
    }

    /// ln L of one customer (FHL 2005, eq. 6):
    /// L = B(a, b+x)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+T)^(r+x) plus, when x > 0,
    /// B(a+1, b+x−1)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+t_x)^(r+x),
    /// and its gradient in (ln r, ln α, ln a, ln b).
    fn log_likelihood(&self, obs: &Triple) -> (f64, [f64; 4]) {
        log_likelihood(self, &XTerms::new(self, 0.0, obs.x), obs)
    }

    fn log_likelihood_sum(&self, obs: &[Triple]) -> (f64, [f64; 4]) {
        log_likelihood_sum(self, 0.0, obs)
    }
}

impl Model for MbgNbd {
    type Obs = Triple;
    const N: usize = 4;

    fn from_log(p: &[f64]) -> Self {
        MbgNbd(from_log(p))
    }

    fn to_log(&self) -> [f64; 4] {
        to_log(&self.0)
    }

    fn weight(obs: &Triple) -> f64 {
        obs.n
    }

    /// ln L of one customer (Batislam et al. 2007):
    /// L = B(a, b+x+1)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+T)^(r+x) plus
    /// B(a+1, b+x)/B(a, b) · Γ(r+x)/Γ(r) · α^r / (α+t_x)^(r+x),
    /// and its gradient in (ln r, ln α, ln a, ln b).
    fn log_likelihood(&self, obs: &Triple) -> (f64, [f64; 4]) {
        log_likelihood(&self.0, &XTerms::new(&self.0, 1.0, obs.x), obs)
    }

    fn log_likelihood_sum(&self, obs: &[Triple]) -> (f64, [f64; 4]) {
        log_likelihood_sum(&self.0, 1.0, obs)
    }
}

/// The terms of ln L and its gradient that depend on x but not on t_x or T: customers with
/// the same x share them (triples come sorted by x, so a fit computes them once per x).
struct XTerms {
    /// ln A1 + ln A2.
    a12: f64,
    /// ln(a / (b+x+k−1)); −∞ without a dropout chance (BG/NBD, x = 0).
    ln_drop: f64,
    /// ∂(ln A1)/∂r.
    d_r: f64,
    /// ∂(ln A2)/∂a and ∂(ln A2)/∂b.
    d_a: f64,
    d_b: f64,
    /// 1 / (b+x+k−1).
    inv_b: f64,
}

impl XTerms {
    /// For model `m` with `k` = 0 (BG/NBD: a dropout chance after each repeat purchase) or 1
    /// (MBG/NBD: also after the first).
    fn new(m: &BgNbd, k: f64, x: f64) -> Self {
        let BgNbd { r, alpha, a, b } = *m;
        let dropped = x + k > 0.0;
        let d_ab = digamma(a + b) - digamma(a + b + x + k);
        XTerms {
            a12: ln_gamma(r + x) - ln_gamma(r)
                + r * alpha.ln()
                + ln_gamma(a + b)
                + ln_gamma(b + x + k)
                - ln_gamma(b)
                - ln_gamma(a + b + x + k),
            ln_drop: if dropped {
                a.ln() - (b + x + k - 1.0).ln()
            } else {
                f64::NEG_INFINITY
            },
            d_r: digamma(r + x) - digamma(r) + alpha.ln(),
            d_a: d_ab,
            d_b: d_ab + digamma(b + x + k) - digamma(b),
            inv_b: if dropped {
                1.0 / (b + x + k - 1.0)
            } else {
                0.0
            },
        }
    }
}

/// Both models' ln L of one customer, as ln A1 + ln A2 + ln(e^A3 + e^A4) (A4 only with a
/// dropout chance), and its gradient in (ln r, ln α, ln a, ln b), given the terms of its x.
fn log_likelihood(m: &BgNbd, xt: &XTerms, obs: &Triple) -> (f64, [f64; 4]) {
    let BgNbd { r, alpha, a, b } = *m;
    let Triple { x, t_x, t, .. } = *obs;
    let (ln_t, ln_tx) = ((alpha + t).ln(), (alpha + t_x).ln());
    let a3 = -(r + x) * ln_t;
    let a4 = xt.ln_drop - (r + x) * ln_tx;
    let sum = log_add_exp(a3, a4);
    // Shares of the two terms in L.
    let w3 = (a3 - sum).exp();
    let w4 = (a4 - sum).exp();
    let d_r = xt.d_r - w3 * ln_t - w4 * ln_tx;
    let d_alpha = r / alpha - (r + x) * (w3 / (alpha + t) + w4 / (alpha + t_x));
    let d_a = xt.d_a + w4 / a;
    let d_b = xt.d_b - w4 * xt.inv_b;
    (xt.a12 + sum, [d_r * r, d_alpha * alpha, d_a * a, d_b * b])
}

/// Σ n ln L and its gradient over `obs`, the x terms computed once per run of equal x.
fn log_likelihood_sum(m: &BgNbd, k: f64, obs: &[Triple]) -> (f64, [f64; 4]) {
    sum_by_x(
        obs,
        |o| (o.x, o.n),
        |x| XTerms::new(m, k, x),
        |t, o| log_likelihood(m, t, o),
    )
}

/// P(alive at T | x, t_x, T) (FHL 2005, eq. 11; Batislam et al. 2007):
/// 1 / (1 + a/(b+x+k−1) · ((α+T)/(α+t_x))^(r+x)); 1 for BG/NBD without repeat purchases.
fn p_alive(m: &BgNbd, k: f64, x: f64, t_x: f64, t: f64) -> f64 {
    if x + k == 0.0 {
        return 1.0;
    }
    let ln_odds = m.a.ln() - (m.b + x + k - 1.0).ln()
        + (m.r + x) * ((m.alpha + t).ln() - (m.alpha + t_x).ln());
    1.0 / (1.0 + ln_odds.exp())
}

/// E[purchases in (T, T + h] | x, t_x, T] (FHL 2005, eq. 10; Batislam et al. 2007), c = a+b+x+k−1:
/// c/(a−1) · [1 − ((α+T)/(α+T+h))^(r+x) · 2F1(r+x, b+x+k; c; z)] · P(alive), z = h/(α+T+h).
/// Euler's transformation 2F1(A, B; C; z) = (1−z)^(C−A−B) 2F1(C−A, C−B; C; z) turns the
/// bracket into 1 − (1−z)^(a−1) · 2F1(a+b+k−1−r, a−1; c; z), whose series has small numerator
/// parameters however large x is.
fn expected_purchases(m: &BgNbd, k: f64, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
    if h <= 0.0 {
        return 0.0;
    }
    let BgNbd { r, alpha, b, .. } = *m;
    // The formula's limit at a = 1 is approached from nearby (a − 1 divides).
    let a = if (m.a - 1.0).abs() < 1e-9 {
        1.0 + 1e-9
    } else {
        m.a
    };
    let z = h / (alpha + t + h);
    let c = a + b + x + k - 1.0;
    let f = hyp2f1(a + b + k - 1.0 - r, a - 1.0, c, z);
    let bracket = 1.0 - (1.0 - z).powf(a - 1.0) * f;
    c / (a - 1.0) * bracket * p_alive(m, k, x, t_x, t)
}

impl BgNbd {
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        p_alive(self, 0.0, x, t_x, t)
    }

    pub fn expected_purchases(&self, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
        expected_purchases(self, 0.0, h, x, t_x, t)
    }
}

impl MbgNbd {
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        p_alive(&self.0, 1.0, x, t_x, t)
    }

    pub fn expected_purchases(&self, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
        expected_purchases(&self.0, 1.0, h, x, t_x, t)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_gradient, cdnow_triples, fit};
    use super::*;

    const PUBLISHED: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn cdnow_log_likelihood_at_the_published_parameters_is_the_published_one() {
        // FHL 2005, section 5: LL = −9582.4 at r 0.243, α 4.414, a 0.793, b 2.426 (the
        // parameters rounded to 3 decimals move it by less than 0.05).
        let ll: f64 = cdnow_triples()
            .iter()
            .map(|c| PUBLISHED.log_likelihood(c).0)
            .sum();
        assert!((ll - -9582.4).abs() < 0.05, "{ll}");
    }

    #[test]
    fn cdnow_fit_is_the_published_maximum() {
        let data = cdnow_triples();
        let fitted = fit::<BgNbd>(&data, 0.0);
        assert!(fitted.converged, "{fitted:?}");
        let m = fitted.model;
        // At least as good as the published optimum, and the same one to its 3 decimals;
        // lifetimes 0.11.3's BetaGeoFitter on the same summary finds r 0.242593, α 4.413532,
        // a 0.792886, b 2.425752, held to 1e-5.
        assert!(fitted.log_likelihood >= -9582.45, "{fitted:?}");
        for (got, published, lifetimes) in [
            (m.r, PUBLISHED.r, 0.242593),
            (m.alpha, PUBLISHED.alpha, 4.413532),
            (m.a, PUBLISHED.a, 0.792886),
            (m.b, PUBLISHED.b, 2.425752),
        ] {
            assert!(
                (got - published).abs() < 0.0006 * published.max(1.0),
                "{m:?}"
            );
            assert!((got - lifetimes).abs() < 1e-5 * lifetimes, "{m:?}");
        }
    }

    #[test]
    fn gradient_is_the_slope_of_the_log_likelihood() {
        let m = PUBLISHED;
        let logp = [m.r.ln(), m.alpha.ln(), m.a.ln(), m.b.ln()];
        for c in [
            Triple {
                x: 0.0,
                t_x: 0.0,
                t: 38.86,
                n: 1.0,
            },
            Triple {
                x: 2.0,
                t_x: 30.43,
                t: 38.86,
                n: 1.0,
            },
            Triple {
                x: 500.0,
                t_x: 519.0,
                t: 521.0,
                n: 1.0,
            },
        ] {
            assert_gradient::<BgNbd>(&logp, &c);
        }
    }

    #[test]
    fn many_purchases_and_long_histories_stay_finite() {
        // 500 repeat purchases, 10 years in weeks.
        let (ll, g) = PUBLISHED.log_likelihood(&Triple {
            x: 500.0,
            t_x: 519.0,
            t: 521.7,
            n: 1.0,
        });
        assert!(
            ll.is_finite() && g.iter().all(|v| v.is_finite()),
            "{ll} {g:?}"
        );
        let p = PUBLISHED.p_alive(500.0, 100.0, 521.7);
        assert!((0.0..=1.0).contains(&p));
        let e = PUBLISHED.expected_purchases(52.0, 500.0, 519.0, 521.7);
        assert!(e.is_finite() && e > 0.0, "{e}");
    }

    #[test]
    fn p_alive_by_hand() {
        // x = 0: alive for sure.
        assert_eq!(PUBLISHED.p_alive(0.0, 0.0, 38.86), 1.0);
        // r 1, α 2, a 1, b 3; x 2, t_x 4, T 6:
        // a/(b+x−1) = 1/4; ((α+T)/(α+t_x))^(r+x) = (8/6)^3 = 64/27;
        // P = 1 / (1 + 64/108) = 108/172 = 0.627906976744186.
        let m = BgNbd {
            r: 1.0,
            alpha: 2.0,
            a: 1.0,
            b: 3.0,
        };
        assert!((m.p_alive(2.0, 4.0, 6.0) - 108.0 / 172.0).abs() < 1e-14);
        // Bought at T: (α+T)/(α+t_x) = 1, P = 1/(1 + 1/4) = 0.8.
        assert!((m.p_alive(2.0, 6.0, 6.0) - 0.8).abs() < 1e-14);
    }

    #[test]
    fn expected_purchases_by_hand() {
        // With r = a + b − 1 the series is 2F1(0, a−1; c; z) = 1, and the bracket is
        // 1 − (1−z)^(a−1). r 1.5, α 2, a 2, b 0.5; x 0, T 6, h 10: z = 10/18;
        // E = (a+b+x−1)/(a−1) · (1 − (1−z)) · 1 = 1.5 · 10/18 = 0.8333….
        let m = BgNbd {
            r: 1.5,
            alpha: 2.0,
            a: 2.0,
            b: 0.5,
        };
        assert!((m.expected_purchases(10.0, 0.0, 0.0, 6.0) - 1.5 * 10.0 / 18.0).abs() < 1e-14);
        // x 2, t_x 4, T 6: c = 3.5, bracket z = 10/18, times P(alive) = 1 / (1 + a/(b+x−1) ·
        // (8/6)^(3.5)) = 1 / (1 + 2/1.5 · 2.7372…); (4/3)^3.5 = 2.737117…
        let odds = 2.0 / 1.5 * (8.0f64 / 6.0).powf(3.5);
        let want = 3.5 * 10.0 / 18.0 / (1.0 + odds);
        assert!((m.expected_purchases(10.0, 2.0, 4.0, 6.0) - want).abs() < 1e-13);
    }

    #[test]
    fn conditional_expectations_match_the_paper_and_lifetimes() {
        // FHL 2005, section 5: the customer with x 2, t_x 30.43, T 38.86 is expected to make
        // 1.226 purchases in the next 39 weeks. All values: lifetimes 0.11.3's BetaGeoFitter
        // with its params_ set to the published ones (an independent implementation: scipy's
        // hyp2f1 on the untransformed series), h in weeks.
        // (x, t_x, T, h, E[purchases in h], P(alive))
        let cases = [
            (2.0, 30.43, 38.86, 39.0, 1.226028174767135, 0.72657857),
            (0.0, 0.0, 38.86, 39.0, 0.19509805201125396, 1.0),
            (500.0, 519.0, 521.7, 52.0, 46.65154711884452, 0.97967854),
            (2.0, 4.0, 6.0, 10.0, 1.2963757892696497, 0.72809852),
            (7.0, 35.0, 38.5, 1.0, 0.1426699864730189, 0.85157923),
        ];
        for (x, t_x, t, h, e, p) in cases {
            let got = PUBLISHED.expected_purchases(h, x, t_x, t);
            assert!(
                (got - e).abs() < 1e-10 * e,
                "{x} {t_x} {t} {h}: {got} vs {e}"
            );
            assert!(
                (PUBLISHED.p_alive(x, t_x, t) - p).abs() < 1e-8,
                "{x} {t_x} {t}"
            );
        }
        assert_eq!(
            (PUBLISHED.expected_purchases(39.0, 2.0, 30.43, 38.86) * 1000.0).round(),
            1226.0
        );
    }

    #[test]
    fn mbg_nbd_matches_lifetimes() {
        // lifetimes 0.11.3's ModifiedBetaGeoFitter: on the CDNOW summary it finds r 0.524838,
        // α 6.182988, a 0.891356, b 1.614000; with params_ set to r 0.25, α 4.5, a 0.8, b 2.5
        // it gives these (x, t_x, T, h, E[purchases in h], P(alive)).
        let fitted = fit::<MbgNbd>(&cdnow_triples(), 0.0);
        assert!(fitted.converged, "{fitted:?}");
        let MbgNbd(m) = fitted.model;
        for (got, want) in [
            (m.r, 0.524838),
            (m.alpha, 6.182988),
            (m.a, 0.891356),
            (m.b, 1.614000),
        ] {
            assert!((got - want).abs() < 2e-5 * want, "{m:?}");
        }
        let m = MbgNbd(BgNbd {
            r: 0.25,
            alpha: 4.5,
            a: 0.8,
            b: 2.5,
        });
        for (x, t_x, t, h, e, p) in [
            (
                2.0,
                30.43,
                38.86,
                39.0,
                1.3447692437944614,
                0.7757015869397772,
            ),
            (
                0.0,
                0.0,
                38.86,
                39.0,
                0.13138922845202883,
                0.6394710964507425,
            ),
            (
                500.0,
                519.0,
                521.7,
                52.0,
                46.627151620179056,
                0.9795534764059433,
            ),
            (7.0, 35.0, 38.5, 1.0, 0.14489132293490464, 0.865170360299223),
        ] {
            let got = m.expected_purchases(h, x, t_x, t);
            assert!(
                (got - e).abs() < 1e-10 * e,
                "{x} {t_x} {t} {h}: {got} vs {e}"
            );
            assert!((m.p_alive(x, t_x, t) - p).abs() < 1e-12, "{x} {t_x} {t}");
        }
    }

    #[test]
    fn mbg_nbd_gradient_is_the_slope_of_the_log_likelihood() {
        let logp = [
            PUBLISHED.r.ln(),
            PUBLISHED.alpha.ln(),
            PUBLISHED.a.ln(),
            PUBLISHED.b.ln(),
        ];
        for c in [
            Triple {
                x: 0.0,
                t_x: 0.0,
                t: 38.86,
                n: 1.0,
            },
            Triple {
                x: 3.0,
                t_x: 20.0,
                t: 38.86,
                n: 1.0,
            },
        ] {
            assert_gradient::<MbgNbd>(&logp, &c);
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
}
