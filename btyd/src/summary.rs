//! What a fit needs from a fit group, in a form that merges exactly: counts of the customers'
//! BTYD summaries in days and minor units. A partition's summaries add key by key to any
//! other's, so the triples, and with them the fit, do not depend on how customers were split.

use rustc_hash::FxHashMap;

use super::{Spend, Triple};

/// One fit group's customers (those acquired by as_of). Kept in hash maps while customers are
/// added; a fit reads them in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// (frequency x, recency t_x, age T) in days → customers.
    triples: FxHashMap<(i64, i64, i64), u64>,
    /// Repeat customers with a positive repeat revenue: (x, Σ revenue of the repeat purchase
    /// days in minor units) → customers.
    spend: FxHashMap<(i64, i64), u64>,
}

impl Summary {
    /// Adds a customer: frequency, recency and T in days, and the revenue of their repeat
    /// purchase days (frequency × monetary_value) in minor units.
    pub fn add(&mut self, frequency: i64, recency: i64, t: i64, repeat_revenue: i64) {
        *self.triples.entry((frequency, recency, t)).or_default() += 1;
        // Gamma-Gamma models positive spend: repeaters whose repeat days net to ≤ 0 (refunds)
        // have no place in it.
        if frequency > 0 && repeat_revenue > 0 {
            *self.spend.entry((frequency, repeat_revenue)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Summary) {
        for (k, n) in &other.triples {
            *self.triples.entry(*k).or_default() += n;
        }
        for (k, n) in &other.spend {
            *self.spend.entry(*k).or_default() += n;
        }
    }

    pub fn customers(&self) -> u64 {
        self.triples.values().sum()
    }

    /// Customers in the spend fit.
    pub fn repeaters(&self) -> u64 {
        self.spend.values().sum()
    }

    /// Unique triples (the size of a transaction-model fit).
    pub fn unique_triples(&self) -> usize {
        self.triples.len()
    }

    /// The triples in the model's time unit of `unit_days` days, in key order.
    pub fn triples(&self, unit_days: f64) -> Vec<Triple> {
        let mut keys: Vec<(&(i64, i64, i64), &u64)> = self.triples.iter().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|(&(x, t_x, t), &n)| Triple {
                x: x as f64,
                t_x: t_x as f64 / unit_days,
                t: t as f64 / unit_days,
                n: n as f64,
            })
            .collect()
    }

    /// The repeaters' mean repeat-day values in currency units (minor units × `scale`), in key
    /// order.
    pub fn spend(&self, scale: f64) -> Vec<Spend> {
        let mut keys: Vec<(&(i64, i64), &u64)> = self.spend.iter().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|(&(x, revenue), &n)| Spend {
                x: x as f64,
                mean: revenue as f64 * scale / x as f64,
                n: n as f64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{fit, BgNbd, GammaGamma, ParetoNbd};
    use super::*;

    /// (frequency, recency, T, repeat revenue) of a customer, consistent with each other.
    fn customer() -> impl Strategy<Value = (i64, i64, i64, i64)> {
        (0i64..12, 0i64..400, 0i64..300, -2_000i64..40_000).prop_map(|(x, a, b, rev)| {
            let t = a.max(b);
            let recency = if x == 0 { 0 } else { a.min(b) };
            (x, recency, t, if x == 0 { 0 } else { rev })
        })
    }

    fn bits<M: std::fmt::Debug>(m: &M) -> String {
        format!("{m:?}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Split into parts, merged in any order: the same summary, and fits with the same
        /// bits on one thread as on four.
        #[test]
        fn partitions_merge_to_the_same_summary_and_fit(
            customers in proptest::collection::vec(customer(), 150..400),
            parts in 1usize..6,
            seed in any::<u64>(),
        ) {
            let mut whole = Summary::default();
            let mut pieces = vec![Summary::default(); parts];
            for (i, &(x, r, t, rev)) in customers.iter().enumerate() {
                whole.add(x, r, t, rev);
                let p = (i as u64).wrapping_mul(seed | 1).rotate_left(17) as usize % parts;
                pieces[p].add(x, r, t, rev);
            }
            let mut merged = Summary::default();
            for p in pieces.iter().rev() {
                merged.merge(p);
            }
            prop_assert_eq!(&merged, &whole);
            prop_assert_eq!(merged.customers(), customers.len() as u64);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    (
                        bits(&fit::<BgNbd>(&merged.triples(7.0), 0.0)),
                        bits(&fit::<ParetoNbd>(&merged.triples(7.0), 0.0)),
                        bits(&fit::<GammaGamma>(&merged.spend(0.01), 0.0)),
                    )
                })
            };
            prop_assert_eq!(on(1), on(4));
        }
    }

    #[test]
    fn days_become_model_units_and_minor_units_money() {
        let mut s = Summary::default();
        s.add(0, 0, 14, 0);
        s.add(2, 70, 140, 5_000);
        s.add(2, 70, 140, 5_000);
        s.add(3, 7, 21, -100);
        assert_eq!(
            (s.customers(), s.repeaters(), s.unique_triples()),
            (4, 2, 3)
        );
        let t = s.triples(7.0);
        assert_eq!(
            t[1],
            Triple {
                x: 2.0,
                t_x: 10.0,
                t: 20.0,
                n: 2.0
            }
        );
        // 5 000 cents over 2 repeat days: a mean of 25.00.
        assert_eq!(
            s.spend(0.01),
            vec![Spend {
                x: 2.0,
                mean: 25.0,
                n: 2.0
            }]
        );
    }
}
