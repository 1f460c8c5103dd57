//! A customer's predictions from fitted models (SPEC §4 "Predictions"): p_alive, expected
//! purchases over the horizon, the expected value of a purchase, and the discounted CLV.

use super::{BgNbd, GammaGamma, MbgNbd, ParetoNbd, Triple};

/// Days in a month of the CLV sum (365.25 / 12).
pub const MONTH_DAYS: f64 = 30.4375;

/// A fitted transaction model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Transactions {
    BgNbd(BgNbd),
    MbgNbd(MbgNbd),
    ParetoNbd(ParetoNbd),
}

impl Transactions {
    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        match self {
            Transactions::BgNbd(m) => m.p_alive(x, t_x, t),
            Transactions::MbgNbd(m) => m.p_alive(x, t_x, t),
            Transactions::ParetoNbd(m) => m.p_alive(x, t_x, t),
        }
    }

    /// E[X(h) | x, t_x, T], everything in the model's time unit.
    pub fn expected_purchases(&self, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
        match self {
            Transactions::BgNbd(m) => m.expected_purchases(h, x, t_x, t),
            Transactions::MbgNbd(m) => m.expected_purchases(h, x, t_x, t),
            Transactions::ParetoNbd(m) => m.expected_purchases(h, x, t_x, t),
        }
    }

    /// Σ n · E[X(h) | x, t_x, T] over `triples` (in their order, so the same bits every time):
    /// the repeat purchases the model expects of those customers in the next `h` units.
    pub fn expected_total(&self, h: f64, triples: &[Triple]) -> f64 {
        triples
            .iter()
            .map(|o| o.n * self.expected_purchases(h, o.x, o.t_x, o.t))
            .sum()
    }
}

/// One customer's predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub p_alive: f64,
    pub expected_purchases: f64,
    /// None without a converged spend model (or one whose mean is infinite).
    pub expected_avg_value: Option<f64>,
    pub predicted_clv: Option<f64>,
}

/// The models of a fit group and the settings that turn them into predictions.
#[derive(Debug, Clone, Copy)]
pub struct Predictor {
    pub transactions: Transactions,
    pub spend: Option<GammaGamma>,
    /// The models' time unit in days.
    pub unit_days: f64,
    pub horizon_months: u32,
    pub discount_rate_monthly: f64,
}

impl Predictor {
    /// Predictions for a customer with `frequency` repeat purchase days, `recency` and `t` in
    /// days, mean repeat-day value `monetary` (currency units), under margin `margin`:
    /// expected_purchases = E[X(HΔ)], expected_avg_value = E[M | x, m̄] (the population mean
    /// when x = 0), predicted_clv = margin × Σ_{k=1..H} value × (E[X(kΔ)] − E[X((k−1)Δ)]) /
    /// (1 + d)^k, Δ = one month in the model's unit.
    pub fn predict(
        &self,
        frequency: i64,
        recency: i64,
        t: i64,
        monetary: f64,
        margin: f64,
    ) -> Prediction {
        let (x, t_x, t) = (
            frequency as f64,
            recency as f64 / self.unit_days,
            t as f64 / self.unit_days,
        );
        let month = MONTH_DAYS / self.unit_days;
        let m = &self.transactions;
        let value = self.spend.and_then(|g| {
            // A repeater whose repeat days net to ≤ 0 has no mean spend of their own.
            let (x, mean) = if frequency > 0 && monetary > 0.0 {
                (x, monetary)
            } else {
                (0.0, 0.0)
            };
            g.expected_value(x, mean)
        });
        // The CLV sum's last month ends at the horizon: its E[X] is expected_purchases.
        let (expected_purchases, predicted_clv) = match value {
            None => (
                m.expected_purchases(self.horizon_months as f64 * month, x, t_x, t),
                None,
            ),
            Some(value) => {
                let mut clv = 0.0;
                let mut before = 0.0;
                let mut discount = 1.0;
                for k in 1..=self.horizon_months {
                    let upto = m.expected_purchases(k as f64 * month, x, t_x, t);
                    discount /= 1.0 + self.discount_rate_monthly;
                    clv += value * (upto - before) * discount;
                    before = upto;
                }
                (before, Some(margin * clv))
            }
        };
        Prediction {
            p_alive: m.p_alive(x, t_x, t),
            expected_purchases,
            expected_avg_value: value,
            predicted_clv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clv_of_one_customer_by_hand() {
        // BG/NBD r 1.5, α 2, a 2, b 0.5: with r = a + b − 1 the hypergeometric series is 1 and
        // E[X(h)] = (a+b+x−1)/(a−1) · h/(α+T+h) · P(alive). Weeks (7 days); a customer with
        // no repeat purchase (x 0, P(alive) 1) first seen 42 days = 6 weeks ago: α + T = 8,
        // and E[X(h)] = 1.5 h / (8 + h). One month Δ = 30.4375 / 7 = 4.348214… weeks:
        //   E[X(Δ)]  = 1.5 × 4.348214 / 12.348214 = 0.528200…
        //   E[X(2Δ)] = 1.5 × 8.696429 / 16.696429 = 0.781283…
        // Gamma-Gamma p 6, q 4, v 15: a purchase is worth p v / (q − 1) = 30 (x = 0).
        // Margin 0.5, d 1% a month, H 2 months:
        //   clv = 0.5 × 30 × (0.528200 / 1.01 + (0.781283 − 0.528200) / 1.01²) = 11.566…
        let d: f64 = 30.4375 / 7.0;
        let e1 = 1.5 * d / (8.0 + d);
        let e2 = 1.5 * 2.0 * d / (8.0 + 2.0 * d);
        let want = 0.5 * 30.0 * (e1 / 1.01 + (e2 - e1) / (1.01 * 1.01));
        assert!((want - 11.566).abs() < 0.001, "{want}");
        let p = Predictor {
            transactions: Transactions::BgNbd(BgNbd {
                r: 1.5,
                alpha: 2.0,
                a: 2.0,
                b: 0.5,
            }),
            spend: Some(GammaGamma {
                p: 6.0,
                q: 4.0,
                v: 15.0,
            }),
            unit_days: 7.0,
            horizon_months: 2,
            discount_rate_monthly: 0.01,
        };
        let got = p.predict(0, 0, 42, 0.0, 0.5);
        assert_eq!(got.p_alive, 1.0);
        assert!((got.expected_purchases - e2).abs() < 1e-12, "{got:?}");
        assert_eq!(got.expected_avg_value, Some(30.0));
        assert!((got.predicted_clv.unwrap() - want).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn expected_total_of_a_holdout_by_hand() {
        // The model of the test above, x = 0: E[X(h)] = 1.5 h / (α + T + h), α = 2, h = 4
        // weeks. Three customers of T = 6: 3 × 1.5 × 4 / 12 = 1.5; one of T = 2:
        // 1.5 × 4 / 8 = 0.75. Total 2.25.
        let m = Transactions::BgNbd(BgNbd {
            r: 1.5,
            alpha: 2.0,
            a: 2.0,
            b: 0.5,
        });
        let triples = [
            Triple {
                x: 0.0,
                t_x: 0.0,
                t: 2.0,
                n: 1.0,
            },
            Triple {
                x: 0.0,
                t_x: 0.0,
                t: 6.0,
                n: 3.0,
            },
        ];
        assert!((m.expected_total(4.0, &triples) - 2.25).abs() < 1e-12);
    }

    #[test]
    fn no_spend_model_means_no_value_and_no_clv() {
        let p = Predictor {
            transactions: Transactions::MbgNbd(MbgNbd(BgNbd {
                r: 0.25,
                alpha: 4.5,
                a: 0.8,
                b: 2.5,
            })),
            spend: None,
            unit_days: 7.0,
            horizon_months: 12,
            discount_rate_monthly: 0.01,
        };
        let got = p.predict(2, 200, 270, 35.0, 1.0);
        assert!(got.p_alive > 0.0 && got.p_alive < 1.0 && got.expected_purchases > 0.0);
        assert_eq!((got.expected_avg_value, got.predicted_clv), (None, None));
    }
}
