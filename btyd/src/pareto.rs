//! The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987): while alive a customer buys at
//! rate λ ~ Gamma(r, α) and dies at rate μ ~ Gamma(s, β), at any time rather than only after a
//! purchase. The likelihood is Fader & Hardie's ("A Note on Deriving the Pareto/NBD Model and
//! Related Expressions", 2005) with its Gaussian hypergeometric terms, in logs.

use statrs::function::gamma::{digamma, ln_gamma};

use super::special::gauss_legendre_16;
use super::{sum_by_x, Model, Triple};

/// The four parameters, all positive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

impl Model for ParetoNbd {
    type Obs = Triple;
    const N: usize = 4;

    fn from_log(p: &[f64]) -> Self {
        ParetoNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            s: p[2].exp(),
            beta: p[3].exp(),
        }
    }

    fn to_log(&self) -> [f64; 4] {
        [self.r.ln(), self.alpha.ln(), self.s.ln(), self.beta.ln()]
    }

    fn weight(obs: &Triple) -> f64 {
        obs.n
    }

    fn log_likelihood(&self, obs: &Triple) -> (f64, [f64; 4]) {
        self.terms(&XTerms::new(self, obs.x), obs).ll
    }

    fn log_likelihood_sum(&self, obs: &[Triple]) -> (f64, [f64; 4]) {
        sum_by_x(
            obs,
            |o| (o.x, o.n),
            |x| XTerms::new(self, x),
            |t, o| self.terms(t, o).ll,
        )
    }
}

/// ln Γ(r+x) − ln Γ(r) and its r-derivative: customers with the same x share them.
struct XTerms {
    ln_gamma_ratio: f64,
    digamma_diff: f64,
}

impl XTerms {
    fn new(m: &ParetoNbd, x: f64) -> Self {
        XTerms {
            ln_gamma_ratio: ln_gamma(m.r + x) - ln_gamma(m.r),
            digamma_diff: digamma(m.r + x) - digamma(m.r),
        }
    }
}

/// One customer's ln L with its gradient in the log-parameters, and P(alive).
struct Terms {
    ll: (f64, [f64; 4]),
    p_alive: f64,
}

/// A logarithm and its gradient in (r, α, s, β) (the parameters, not their logs).
type LogTerm = (f64, [f64; 4]);

impl ParetoNbd {
    /// L = Γ(r+x) α^r β^s / Γ(r) · [(α+T)^−(r+x) (β+T)^−s + s (I(t_x) − I(T))], where
    /// I(y) = ∫_y^∞ (α+τ)^−(r+x) (β+τ)^−(s+1) dτ is the chance density of dying at τ > y
    /// with x purchases by then (Fader & Hardie 2005, eq. 22: their (s / (r+s+x)) A₀ is
    /// s (I(t_x) − I(T))). β^s goes inside the bracket, as (1 + T/β)^−s and
    /// (s/β) ∫ (1 + τ/β)^−(s+1), so that no large s ln β cancels against another. The two
    /// terms are summed in logs; the first one's share of the bracket is P(alive) (their
    /// eq. 18).
    fn terms(&self, xt: &XTerms, obs: &Triple) -> Terms {
        let ParetoNbd { r, alpha, s, beta } = *self;
        let Triple { x, t_x, t, .. } = *obs;
        let (la, lb) = ((alpha + t).ln(), (t / beta).ln_1p());
        let alive: LogTerm = (
            -(r + x) * la - s * lb,
            [
                -la,
                -(r + x) / (alpha + t),
                -lb,
                s * t / (beta * (beta + t)),
            ],
        );
        let dead = self.ln_dead_between(x, t_x, t);
        let (ln_dead, dead_gradient) = dead.unwrap_or((f64::NEG_INFINITY, [0.0; 4]));
        let top = alive.0.max(ln_dead);
        let (ea, ed) = ((alive.0 - top).exp(), (ln_dead - top).exp());
        let bracket = ea + ed;
        let (wa, wd) = (ea / bracket, ed / bracket);
        let ll = xt.ln_gamma_ratio + r * alpha.ln() + top + bracket.ln();
        let fixed = [xt.digamma_diff + alpha.ln(), r / alpha, 0.0, 0.0];
        let mut g = [0.0; 4];
        let theta = [r, alpha, s, beta];
        for i in 0..4 {
            let d = fixed[i] + wa * alive.1[i] + wd * dead_gradient[i];
            g[i] = d * theta[i];
        }
        Terms {
            ll: (ll, g),
            p_alive: wa.min(1.0),
        }
    }

    /// ln((s/β) ∫_{t_x}^{T} f(τ) dτ), f(τ) = (α+τ)^−(r+x) (1 + τ/β)^−(s+1), and its gradient
    /// in (r, α, s, β); None when t_x = T. That is β^s s (I(t_x) − I(T)), by Gauss–Legendre
    /// quadrature rather than as a difference of two closed-form series: those need ~1/(1 − z)
    /// terms, and z runs to 1 where dropout is nearly homogeneous (s and β large together) or
    /// one of α, β is tiny, while the difference cancels when t_x is close to T.
    ///
    /// In u = ln(c₀ + τ), c₀ = min(α, β), the log-integrand ψ(u) = u − (r+x) ln(α+τ)
    /// − (s+1) ln(1 + τ/β) is concave: its slope ψ'(u) = 1 − (r+x)(c₀+τ)/(α+τ)
    /// − (s+1)(c₀+τ)/(β+τ) falls monotonically, so on a panel it is largest in size at an end.
    /// Panels are cut so ψ changes by at most `PANEL_RISE` across one (16 nodes then integrate
    /// e^ψ to rounding) and are at most `PANEL_WIDTH` wide (the nearest singularity of ψ is π
    /// off the real axis); once ψ falls, the rest is below e^ψ(b)/|ψ'(b)| and the sum stops
    /// when that is negligible.
    fn ln_dead_between(&self, x: f64, t_x: f64, t: f64) -> Option<LogTerm> {
        if t_x >= t {
            return None;
        }
        let ParetoNbd { r, alpha, s, beta } = *self;
        let (p, q) = (r + x, s + 1.0);
        let c0 = alpha.min(beta);
        let da = alpha - c0;
        // (ψ, ψ', ln(α+τ), ln(1 + τ/β), 1/(α+τ), τ/(β+τ)) at u.
        let at = |u: f64| {
            let e = u.exp();
            let tau = e - c0;
            let (at, bt) = (da + e, beta + tau);
            let (la, lb) = (at.ln(), (tau / beta).ln_1p());
            (
                u - p * la - q * lb,
                1.0 - p * e / at - q * e / bt,
                la,
                lb,
                1.0 / at,
                tau / bt,
            )
        };
        let (u0, u1) = ((c0 + t_x).ln(), (c0 + t).ln());
        let first = at(u0);
        let reference = first.0;
        // Σ w e^(ψ−ψ(u₀)) × [1, ln(α+τ), ln(1 + τ/β), 1/(α+τ), τ/(β+τ)].
        let mut sums = [0.0; 5];
        let (mut a, mut slope_a) = (u0, first.1);
        for _ in 0..MAX_PANELS {
            let reach = (u1 - a).min(PANEL_WIDTH).min(PANEL_RISE / slope_a.abs());
            let slope_reach = at(a + reach).1;
            let h = reach.min(PANEL_RISE / slope_reach.abs());
            let (mid, half) = (a + 0.5 * h, 0.5 * h);
            for &(node, weight) in gauss_legendre_16() {
                let (psi, _, la, lb, ia, fb) = at(mid + half * node);
                let w = weight * half * (psi - reference).exp();
                sums[0] += w;
                sums[1] += w * la;
                sums[2] += w * lb;
                sums[3] += w * ia;
                sums[4] += w * fb;
            }
            a += h;
            if a >= u1 {
                break;
            }
            let (psi_b, slope_b, ..) = at(a);
            slope_a = slope_b;
            if slope_b < 0.0 && (psi_b - reference).exp() / -slope_b < 1e-17 * sums[0] {
                break;
            }
        }
        let n = sums[0];
        Some((
            s.ln() - beta.ln() + reference + n.ln(),
            [
                -sums[1] / n,
                -p * sums[3] / n,
                1.0 / s - sums[2] / n,
                (q * sums[4] / n - 1.0) / beta,
            ],
        ))
    }

    /// P(alive at T | x, t_x, T) (Fader & Hardie 2005, eq. 18).
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let obs = Triple { x, t_x, t, n: 1.0 };
        self.terms(&XTerms::new(self, x), &obs).p_alive
    }

    /// E[purchases in (T, T + h] | x, t_x, T] (Fader & Hardie 2005, eq. 19):
    /// (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+h))^(s−1)] · P(alive); at s = 1 the
    /// bracket over s − 1 is its limit ln((β+T+h)/(β+T)).
    pub fn expected_purchases(&self, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
        if h <= 0.0 {
            return 0.0;
        }
        let ParetoNbd { r, alpha, s, beta } = *self;
        let ln_ratio = ((beta + t) / (beta + t + h)).ln();
        let bracket = if (s - 1.0).abs() < 1e-12 {
            -ln_ratio
        } else {
            -((s - 1.0) * ln_ratio).exp_m1() / (s - 1.0)
        };
        (r + x) * (beta + t) / (alpha + t) * bracket * self.p_alive(x, t_x, t)
    }
}

/// The most ψ (the log-integrand of `ln_dead_between`) changes across one panel, and the
/// widest a panel is in u: with both, the 16-point rule's error is at rounding.
const PANEL_RISE: f64 = 8.0;
const PANEL_WIDTH: f64 = 2.0;
/// A bound that is never reached (ψ rises at slope ≤ 1 over u₁ − u₀ < 200 and, once falling,
/// drops by about `PANEL_RISE` a panel until the rest is negligible); it only guards the loop.
const MAX_PANELS: usize = 1000;

#[cfg(test)]
mod tests;
