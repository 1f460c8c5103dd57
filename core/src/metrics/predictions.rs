//! Predictions in the tables (SPEC §4 "Predictions"): the fit groups' summaries gathered from
//! the customer rows, one fit per group, and each acquired customer's predictions from the fit
//! of their `predict.fit_by` group.

use rayon::prelude::*;

use crate::config::{PredictConfig, TransactionModel};
use btyd::{GroupFit, ModelKind, Predictor, Settings, Summary};

use super::{Ctx, CustomerRow};

/// What the fits need from the configuration, and whose fit each customer uses.
#[derive(Debug, Clone)]
pub struct PredictCtx {
    pub settings: Settings,
    /// The dimension of `predict.fit_by`; None = `all`.
    pub fit_by: Option<usize>,
    /// `predict.holdout_days` when a backtest is configured.
    pub holdout_days: Option<u32>,
}

impl PredictCtx {
    /// None when predictions are off.
    pub fn new(cfg: &PredictConfig, dims: &[String], money_scale: f64) -> Option<Self> {
        if !cfg.enabled {
            return None;
        }
        Some(PredictCtx {
            settings: Settings {
                model: match cfg.model {
                    TransactionModel::BgNbd => ModelKind::BgNbd,
                    TransactionModel::MbgNbd => ModelKind::MbgNbd,
                    TransactionModel::ParetoNbd => ModelKind::ParetoNbd,
                },
                unit_days: cfg.time_unit_days,
                penalizer: cfg.penalizer,
                min_customers: cfg.min_customers,
                horizon_months: cfg.horizon_months,
                discount_rate_monthly: cfg.discount_rate_monthly,
                money_scale: 1.0 / money_scale,
            },
            fit_by: dims.iter().position(|d| *d == cfg.fit_by),
            holdout_days: (cfg.holdout_days > 0).then_some(cfg.holdout_days),
        })
    }
}

/// The fit groups of a row: slot 0 (`all`) and its value's slot in every dimension.
fn groups_of<'a>(r: &'a CustomerRow, ctx: &'a Ctx) -> impl Iterator<Item = usize> + 'a {
    std::iter::once(0).chain((0..ctx.n_dims).map(|d| (ctx.slots.base[d] + r.segs[d]) as usize))
}

/// What the fits of one group need, merged exactly across partitions.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSummary {
    /// The customers acquired by as_of.
    pub fit: Summary,
    /// With a holdout backtest: the customers acquired by its calibration end, as of then.
    pub calibration: Summary,
    /// Their purchase days after the calibration end, up to as_of.
    pub holdout_actual: u64,
}

impl GroupSummary {
    pub fn merge(&mut self, other: &GroupSummary) {
        self.fit.merge(&other.fit);
        self.calibration.merge(&other.calibration);
        self.holdout_actual += other.holdout_actual;
    }
}

/// The summaries of every fit group (indexed by slot) over the acquired customers of `parts`.
pub fn summarize(parts: &[Vec<CustomerRow>], ctx: &Ctx) -> Vec<GroupSummary> {
    let n = ctx.slots.len();
    parts
        .par_iter()
        .map(|rows| {
            let mut out = vec![GroupSummary::default(); n];
            for r in rows {
                let (Some(x), Some(recency), Some(t), Some(m)) =
                    (r.frequency, r.recency, r.t, r.monetary)
                else {
                    continue;
                };
                let repeat = (m * x as f64).round() as i64;
                for g in groups_of(r, ctx) {
                    out[g].fit.add(x, recency, t, repeat);
                    if let Some(h) = &r.holdout {
                        // The backtest needs no spend: repeat revenue 0 keeps its summary
                        // out of the Gamma-Gamma fit.
                        out[g].calibration.add(h.frequency, h.recency, h.t, 0);
                        out[g].holdout_actual += h.actual as u64;
                    }
                }
            }
            out
        })
        .reduce(
            || vec![GroupSummary::default(); n],
            |mut a, b| {
                merge(&mut a, &b);
                a
            },
        )
}

/// Merges `other` (another set of customers' summaries) into `into`.
pub fn merge(into: &mut Vec<GroupSummary>, other: &[GroupSummary]) {
    if into.is_empty() {
        into.resize(other.len(), GroupSummary::default());
    }
    for (a, b) in into.iter_mut().zip(other) {
        a.merge(b);
    }
}

/// A group's holdout backtest (SPEC §4): the customers acquired by the calibration end, the
/// repeat purchases the calibration fit expects of them in the holdout days, and theirs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Backtest {
    pub customers: u64,
    /// None when no calibration fit converged (not even `all`'s).
    pub predicted: Option<f64>,
    pub actual: u64,
}

/// One date's fits: every group's models and the predictor its customers use.
#[derive(Debug, Clone)]
pub struct Fits {
    /// Per slot.
    pub groups: Vec<GroupFit>,
    /// Per slot, with a holdout backtest.
    pub backtests: Option<Vec<Backtest>>,
    predictors: Vec<Option<Predictor>>,
    fit_by: Option<usize>,
}

/// The fitted parameters of a date, without the predictors built from them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FitParts {
    groups: Vec<GroupFit>,
    backtests: Option<Vec<Backtest>>,
    fit_by: Option<usize>,
}

/// Every group's fits on `summaries` (per slot): `all` first, as the segments start from its
/// estimates, then the segments in parallel; each fit is deterministic. Each fit's time is
/// logged at debug level (`what` says which fits these are).
fn fit_groups(summaries: &[&Summary], s: &Settings, ctx: &Ctx, what: &str) -> Vec<GroupFit> {
    let fit = |slot: usize, all: Option<&GroupFit>| {
        let started = std::time::Instant::now();
        let g = btyd::fit_group(summaries[slot], s, all);
        let (segment_by, segment) = &ctx.slots.names[slot];
        tracing::debug!(
            fits = what,
            segment_by = segment_by.as_str(),
            segment = segment.as_str(),
            customers = g.customers,
            unique_triples = g.unique_triples,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "Fitted a group."
        );
        g
    };
    if summaries.is_empty() {
        return Vec::new();
    }
    let all = fit(0, None);
    let rest: Vec<GroupFit> = (1..summaries.len())
        .into_par_iter()
        .map(|slot| fit(slot, Some(&all)))
        .collect();
    std::iter::once(all).chain(rest).collect()
}

/// The predictor of every group (per slot): its own fits or `all`'s.
fn predictors(groups: &[GroupFit], s: &Settings) -> Vec<Option<Predictor>> {
    match groups.first() {
        Some(all) => groups.iter().map(|g| btyd::predictor(g, all, s)).collect(),
        None => Vec::new(),
    }
}

impl Fits {
    /// Fits every group of `summaries` (per slot), and with a holdout backtest every group
    /// again on its calibration summary.
    pub fn new(summaries: &[GroupSummary], p: &PredictCtx, ctx: &Ctx) -> Fits {
        let s = &p.settings;
        let fit: Vec<&Summary> = summaries.iter().map(|g| &g.fit).collect();
        let groups = fit_groups(&fit, s, ctx, "as_of");
        warn_unconverged(&groups, s.model, ctx);
        let backtests = p.holdout_days.map(|days| {
            let calibration: Vec<&Summary> = summaries.iter().map(|g| &g.calibration).collect();
            let calibration = fit_groups(&calibration, s, ctx, "holdout calibration");
            let h = days as f64 / s.unit_days;
            predictors(&calibration, s)
                .iter()
                .zip(summaries)
                .map(|(predictor, g)| Backtest {
                    customers: g.calibration.customers(),
                    predicted: predictor.as_ref().map(|p| {
                        p.transactions
                            .expected_total(h, &g.calibration.triples(s.unit_days))
                    }),
                    actual: g.holdout_actual,
                })
                .collect()
        });
        Fits {
            predictors: predictors(&groups, s),
            groups,
            backtests,
            fit_by: p.fit_by,
        }
    }

    /// What travels of the fits (to the tasks of a spread run): the parameters; each
    /// process rebuilds the predictors from them.
    pub fn to_parts(&self) -> FitParts {
        FitParts {
            groups: self.groups.clone(),
            backtests: self.backtests.clone(),
            fit_by: self.fit_by,
        }
    }

    /// The fits of `parts` (from [`to_parts`](Self::to_parts)) under the settings `p`.
    pub fn from_parts(parts: FitParts, p: &PredictCtx) -> Fits {
        Fits {
            predictors: predictors(&parts.groups, &p.settings),
            groups: parts.groups,
            backtests: parts.backtests,
            fit_by: parts.fit_by,
        }
    }

    /// Sets the predictions of the acquired customers of `rows`.
    pub fn apply(&self, rows: &mut [CustomerRow], ctx: &Ctx) {
        for r in rows.iter_mut() {
            let (Some(x), Some(recency), Some(t), Some(m)) =
                (r.frequency, r.recency, r.t, r.monetary)
            else {
                continue;
            };
            let slot = match self.fit_by {
                None => 0,
                Some(d) => (ctx.slots.base[d] + r.segs[d]) as usize,
            };
            let Some(Some(predictor)) = self.predictors.get(slot) else {
                continue;
            };
            r.prediction =
                Some(predictor.predict(x, recency, t, m / ctx.money_scale, margin(r, ctx)));
        }
    }
}

/// The spend model's name in the models table.
pub const GAMMA_GAMMA: &str = "gamma_gamma";

/// Every value of the models table's `model` column.
pub const MODEL_NAMES: [&str; 4] = [
    model_name(ModelKind::BgNbd),
    model_name(ModelKind::MbgNbd),
    model_name(ModelKind::ParetoNbd),
    GAMMA_GAMMA,
];

/// The transaction model's name in the models table.
const fn model_name(m: ModelKind) -> &'static str {
    match m {
        ModelKind::BgNbd => "bg_nbd",
        ModelKind::MbgNbd => "mbg_nbd",
        ModelKind::ParetoNbd => "pareto_nbd",
    }
}

/// Warns of every fitted model that did not converge: its group predicts with `all`'s (or,
/// for `all`, without that model).
fn warn_unconverged(groups: &[GroupFit], model: ModelKind, ctx: &Ctx) {
    for (slot, g) in groups.iter().enumerate() {
        let (segment_by, segment) = &ctx.slots.names[slot];
        let models = [
            (model_name(model), g.transactions.map(|f| f.converged)),
            (GAMMA_GAMMA, g.spend.map(|f| f.converged)),
        ];
        for (model, converged) in models {
            if converged == Some(false) {
                let fallback = if slot == 0 {
                    "its predictions are null"
                } else {
                    "the segment uses the all fit"
                };
                tracing::warn!(
                    segment_by = segment_by.as_str(),
                    segment = segment.as_str(),
                    model,
                    customers = g.customers,
                    "A prediction model did not converge (the data do not pin its parameters \
                     down); {fallback}."
                );
            }
        }
    }
}

/// The margin of a customer's predicted CLV: the configured one, or their own
/// (revenue − cost) / revenue with a cost column (0 when their revenue nets to 0).
fn margin(r: &CustomerRow, ctx: &Ctx) -> f64 {
    if ctx.has_cost {
        if r.revenue == 0 {
            0.0
        } else {
            (r.revenue - r.cost) as f64 / r.revenue as f64
        }
    } else {
        ctx.margin
    }
}

/// The models table of a date: per fit group (sorted by segment_by, segment), a row for the
/// transaction model and one for Gamma-Gamma.
pub fn models_table(fits: &Fits, ctx: &Ctx, s: &Settings) -> arrow::array::RecordBatch {
    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};

    use super::arc;
    use btyd::Transactions;

    // (slot, transaction model row?)
    let rows: Vec<(usize, bool)> = ctx
        .slots
        .sorted()
        .into_iter()
        .filter(|&slot| fits.groups.get(slot).is_some_and(|g| g.customers > 0))
        .flat_map(|slot| [(slot, true), (slot, false)])
        .collect();
    let group = |slot: usize| &fits.groups[slot];
    let name = model_name(s.model);
    // (fitted, converged, iterations, log_likelihood, [r, α, a, b, s, β, p, q, v])
    type Fit = (
        bool,
        Option<bool>,
        Option<i64>,
        Option<f64>,
        [Option<f64>; 9],
    );
    let fit_of = |&(slot, transactions): &(usize, bool)| -> Fit {
        let g = group(slot);
        if transactions {
            match &g.transactions {
                None => (false, None, None, None, [None; 9]),
                Some(f) => {
                    // A fit that did not converge has no estimate to show.
                    let p = match f.model {
                        _ if !f.converged => [None; 9],
                        Transactions::BgNbd(m) | Transactions::MbgNbd(btyd::MbgNbd(m)) => {
                            let p = [m.r, m.alpha, m.a, m.b];
                            std::array::from_fn(|i| p.get(i).copied())
                        }
                        Transactions::ParetoNbd(m) => {
                            let p = [
                                Some(m.r),
                                Some(m.alpha),
                                None,
                                None,
                                Some(m.s),
                                Some(m.beta),
                            ];
                            std::array::from_fn(|i| p.get(i).copied().flatten())
                        }
                    };
                    (
                        true,
                        Some(f.converged),
                        Some(f.iterations as i64),
                        Some(f.log_likelihood),
                        p,
                    )
                }
            }
        } else {
            match &g.spend {
                None => (false, None, None, None, [None; 9]),
                Some(f) => {
                    let m = f.model;
                    let p = if f.converged {
                        [
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            Some(m.p),
                            Some(m.q),
                            Some(m.v),
                        ]
                    } else {
                        [None; 9]
                    };
                    (
                        true,
                        Some(f.converged),
                        Some(f.iterations as i64),
                        Some(f.log_likelihood),
                        p,
                    )
                }
            }
        }
    };
    let fits_: Vec<Fit> = rows.iter().map(fit_of).collect();
    // The backtest is the transaction model's.
    let backtest: Vec<Option<Backtest>> = rows
        .iter()
        .map(|&(slot, transactions)| {
            let b = fits.backtests.as_ref()?;
            transactions.then(|| b[slot])
        })
        .collect();
    let param = |i: usize| {
        arc(Float64Array::from(
            fits_.iter().map(|f| f.4[i]).collect::<Vec<_>>(),
        ))
    };
    let cols = vec![
        (
            "segment_by",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| ctx.slots.names[r.0].0.as_str()),
            )),
        ),
        (
            "segment",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| ctx.slots.names[r.0].1.as_str()),
            )),
        ),
        (
            "model",
            arc(StringArray::from_iter_values(rows.iter().map(|r| {
                if r.1 {
                    name
                } else {
                    GAMMA_GAMMA
                }
            }))),
        ),
        (
            "customers",
            arc(Int64Array::from_iter_values(
                rows.iter().map(|r| group(r.0).customers as i64),
            )),
        ),
        (
            "repeaters",
            arc(Int64Array::from_iter_values(
                rows.iter().map(|r| group(r.0).repeaters as i64),
            )),
        ),
        (
            "fitted",
            arc(BooleanArray::from(
                fits_.iter().map(|f| f.0).collect::<Vec<_>>(),
            )),
        ),
        (
            "converged",
            arc(BooleanArray::from(
                fits_.iter().map(|f| f.1).collect::<Vec<_>>(),
            )),
        ),
        (
            "iterations",
            arc(Int64Array::from(
                fits_.iter().map(|f| f.2).collect::<Vec<_>>(),
            )),
        ),
        (
            "log_likelihood",
            arc(Float64Array::from(
                fits_.iter().map(|f| f.3).collect::<Vec<_>>(),
            )),
        ),
        ("r", param(0)),
        ("alpha", param(1)),
        ("a", param(2)),
        ("b", param(3)),
        ("s", param(4)),
        ("beta", param(5)),
        ("p", param(6)),
        ("q", param(7)),
        ("v", param(8)),
        (
            "time_unit_days",
            arc(Float64Array::from(vec![s.unit_days; rows.len()])),
        ),
        (
            "holdout_customers",
            arc(Int64Array::from(
                backtest
                    .iter()
                    .map(|b| b.map(|b| b.customers as i64))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "holdout_predicted_purchases",
            arc(Float64Array::from(
                backtest
                    .iter()
                    .map(|b| b.and_then(|b| b.predicted))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "holdout_actual_purchases",
            arc(Int64Array::from(
                backtest
                    .iter()
                    .map(|b| b.map(|b| b.actual as i64))
                    .collect::<Vec<_>>(),
            )),
        ),
    ];
    crate::schema::Table::Models.batch(&[], cols)
}
