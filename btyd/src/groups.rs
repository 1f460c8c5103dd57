//! Fits per group (SPEC §4: per `all` and per value of every segment dimension) and the
//! fallback rule: a group with fewer than `min_customers` customers, or whose fit does not
//! converge, predicts with the `all` fit.

use super::{
    fit_from, BgNbd, Fitted, GammaGamma, MbgNbd, Model, ParetoNbd, Predictor, Summary, Transactions,
};

/// Which transaction model is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    BgNbd,
    MbgNbd,
    ParetoNbd,
}

/// How groups are fitted and predicted (SPEC §5 `[predict]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub model: ModelKind,
    pub unit_days: f64,
    pub penalizer: f64,
    pub min_customers: u64,
    pub horizon_months: u32,
    pub discount_rate_monthly: f64,
    /// Minor units → currency units.
    pub money_scale: f64,
}

/// A group's fits: the rows of the models table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupFit {
    pub customers: u64,
    pub repeaters: u64,
    pub unique_triples: usize,
    /// False: too few customers to fit; the group predicts with `all`'s fits.
    pub fitted: bool,
    pub transactions: Option<Fitted<Transactions>>,
    pub spend: Option<Fitted<GammaGamma>>,
}

/// Fits a group's transaction and spend models (none when it has fewer than
/// `min_customers`). The `all` group (`all` = None) is always fitted when it has customers,
/// from every parameter at 1; a segment starts from `all`'s converged estimates.
pub fn fit_group(summary: &Summary, s: &Settings, all: Option<&GroupFit>) -> GroupFit {
    let customers = summary.customers();
    let fitted = customers > 0 && (all.is_none() || customers >= s.min_customers);
    let start_t = all
        .and_then(|a| a.transactions.filter(|f| f.converged))
        .map_or([0.0; 4], |f| match f.model {
            Transactions::BgNbd(m) => m.to_log(),
            Transactions::MbgNbd(m) => m.to_log(),
            Transactions::ParetoNbd(m) => m.to_log(),
        });
    let start_s = all
        .and_then(|a| a.spend.filter(|f| f.converged))
        .map_or([0.0; 4], |f| f.model.to_log());
    let transactions = fitted.then(|| {
        let triples = summary.triples(s.unit_days);
        match s.model {
            ModelKind::BgNbd => wrap(
                fit_from::<BgNbd>(&triples, s.penalizer, &start_t),
                Transactions::BgNbd,
            ),
            ModelKind::MbgNbd => wrap(
                fit_from::<MbgNbd>(&triples, s.penalizer, &start_t),
                Transactions::MbgNbd,
            ),
            ModelKind::ParetoNbd => wrap(
                fit_from::<ParetoNbd>(&triples, s.penalizer, &start_t),
                Transactions::ParetoNbd,
            ),
        }
    });
    let spend = (fitted && summary.repeaters() > 0)
        .then(|| fit_from::<GammaGamma>(&summary.spend(s.money_scale), s.penalizer, &start_s));
    GroupFit {
        customers,
        repeaters: summary.repeaters(),
        unique_triples: summary.unique_triples(),
        fitted,
        transactions,
        spend,
    }
}

fn wrap<M>(f: Fitted<M>, into: impl Fn(M) -> Transactions) -> Fitted<Transactions> {
    Fitted {
        model: into(f.model),
        log_likelihood: f.log_likelihood,
        iterations: f.iterations,
        converged: f.converged,
    }
}

/// The predictor of a group's customers: the group's own converged fits, else `all`'s (per
/// model: a group whose spend fit did not converge keeps its own transaction fit). None when
/// no transaction fit converged, not even `all`'s.
pub fn predictor(group: &GroupFit, all: &GroupFit, s: &Settings) -> Option<Predictor> {
    let converged = |g: &GroupFit| g.transactions.filter(|t| t.converged).map(|t| t.model);
    let transactions = converged(group).or_else(|| converged(all))?;
    let spend = |g: &GroupFit| g.spend.filter(|f| f.converged).map(|f| f.model);
    Some(Predictor {
        transactions,
        spend: spend(group).or_else(|| spend(all)),
        unit_days: s.unit_days,
        horizon_months: s.horizon_months,
        discount_rate_monthly: s.discount_rate_monthly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            model: ModelKind::BgNbd,
            unit_days: 7.0,
            penalizer: 0.0,
            min_customers: 100,
            horizon_months: 12,
            discount_rate_monthly: 0.01,
            money_scale: 0.01,
        }
    }

    /// The first `n` CDNOW customers (days = weeks × 7, rounded) with their repeat revenue in
    /// cents, or with every repeat purchase worth 25.00 when `flat`.
    fn cdnow(n: usize, flat: bool) -> Summary {
        let mut s = Summary::default();
        let rows = include_str!("../tests/data/cdnow_customers_summary.csv").lines();
        for l in rows.skip(1).take(n) {
            let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            let days = |w: f64| (w * 7.0).round() as i64;
            let mean = if flat { 25.0 } else { f[4] };
            let revenue = (f[1] * mean * 100.0).round() as i64;
            s.add(f[1] as i64, days(f[2]), days(f[3]), revenue);
        }
        s
    }

    #[test]
    fn small_groups_use_the_all_fit() {
        let all = fit_group(&cdnow(usize::MAX, false), &settings(), None);
        assert!(all.fitted && all.transactions.unwrap().converged && all.spend.unwrap().converged);
        assert_eq!((all.customers, all.repeaters), (2357, 946));
        let mut few = Summary::default();
        for i in 0..99 {
            few.add(i % 3, (i % 3) * 20, 200, (i % 3) * 5_000);
        }
        let small = fit_group(&few, &settings(), Some(&all));
        assert!(!small.fitted && small.transactions.is_none() && small.spend.is_none());
        let p = predictor(&small, &all, &settings()).unwrap();
        assert_eq!(p.transactions, all.transactions.unwrap().model);
        assert_eq!(p.spend, Some(all.spend.unwrap().model));
    }

    #[test]
    fn a_spend_fit_without_optimum_falls_back_per_model() {
        let all = fit_group(&cdnow(usize::MAX, false), &settings(), None);
        // 1 000 customers whose repeat purchases all have the same value: the transaction
        // model fits, the spend model has no finite optimum and `all`'s is used instead.
        let own = fit_group(&cdnow(1000, true), &settings(), Some(&all));
        assert!(own.fitted && own.transactions.unwrap().converged, "{own:?}");
        assert!(!own.spend.unwrap().converged, "{own:?}");
        let p = predictor(&own, &all, &settings()).unwrap();
        assert_eq!(p.transactions, own.transactions.unwrap().model);
        assert_eq!(p.spend, Some(all.spend.unwrap().model));
    }
}
