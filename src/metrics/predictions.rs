//! Predictions in the tables (SPEC §4 "Predictions"): the fit groups' summaries gathered from
//! the customer rows, one fit per group, and each acquired customer's predictions from the fit
//! of their `predict.fit_by` group.

use rayon::prelude::*;

use crate::config::{PredictConfig, TransactionModel};
use btyd::{GroupFit, ModelKind, Predictor, Settings, Summary};

use super::{Ctx, CustomerRow};

/// What the fits need from the configuration, and whose fit each customer uses.
#[derive(Debug, Clone)]
pub(crate) struct PredictCtx {
    pub(crate) settings: Settings,
    /// The dimension of `predict.fit_by`; None = `all`.
    pub(crate) fit_by: Option<usize>,
}

impl PredictCtx {
    /// None when predictions are off.
    pub(crate) fn new(cfg: &PredictConfig, dims: &[String], money_scale: f64) -> Option<Self> {
        if !cfg.enabled {
            return None;
        }
        Some(PredictCtx {
            settings: Settings {
                model: match cfg.model {
                    TransactionModel::MbgNbd => ModelKind::MbgNbd,
                    // pareto_nbd is refused by the config check.
                    TransactionModel::BgNbd | TransactionModel::ParetoNbd => ModelKind::BgNbd,
                },
                unit_days: cfg.time_unit_days,
                penalizer: cfg.penalizer,
                min_customers: cfg.min_customers,
                horizon_months: cfg.horizon_months,
                discount_rate_monthly: cfg.discount_rate_monthly,
                money_scale: 1.0 / money_scale,
            },
            fit_by: dims.iter().position(|d| *d == cfg.fit_by),
        })
    }
}

/// The fit groups of a row: slot 0 (`all`) and its value's slot in every dimension.
fn groups_of<'a>(r: &'a CustomerRow, ctx: &'a Ctx) -> impl Iterator<Item = usize> + 'a {
    std::iter::once(0).chain((0..ctx.n_dims).map(|d| (ctx.slots.base[d] + r.segs[d]) as usize))
}

/// The summaries of every fit group (indexed by slot) over the acquired customers of `parts`.
pub(crate) fn summarize(parts: &[Vec<CustomerRow>], ctx: &Ctx) -> Vec<Summary> {
    let n = ctx.slots.len();
    parts
        .par_iter()
        .map(|rows| {
            let mut out = vec![Summary::default(); n];
            for r in rows {
                let (Some(x), Some(recency), Some(t), Some(m)) =
                    (r.frequency, r.recency, r.t, r.monetary)
                else {
                    continue;
                };
                let repeat = (m * x as f64).round() as i64;
                for g in groups_of(r, ctx) {
                    out[g].add(x, recency, t, repeat);
                }
            }
            out
        })
        .reduce(
            || vec![Summary::default(); n],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    x.merge(y);
                }
                a
            },
        )
}

/// Merges `other` (another set of customers' summaries) into `into`.
pub(crate) fn merge(into: &mut Vec<Summary>, other: &[Summary]) {
    if into.is_empty() {
        into.resize(other.len(), Summary::default());
    }
    for (a, b) in into.iter_mut().zip(other) {
        a.merge(b);
    }
}

/// One date's fits: every group's models and the predictor its customers use.
#[derive(Debug, Clone)]
pub(crate) struct Fits {
    /// Per slot.
    pub(crate) groups: Vec<GroupFit>,
    predictors: Vec<Option<Predictor>>,
    fit_by: Option<usize>,
}

impl Fits {
    /// Fits every group of `summaries` (per slot), in parallel; each fit is deterministic.
    pub(crate) fn new(summaries: &[Summary], p: &PredictCtx, ctx: &Ctx) -> Fits {
        let s = &p.settings;
        // `all` first: the segments start from its estimates.
        let Some(all) = summaries.first().map(|a| btyd::fit_group(a, s, None)) else {
            return Fits {
                groups: Vec::new(),
                predictors: Vec::new(),
                fit_by: p.fit_by,
            };
        };
        let rest: Vec<GroupFit> = summaries[1..]
            .par_iter()
            .map(|summary| btyd::fit_group(summary, s, Some(&all)))
            .collect();
        let groups: Vec<GroupFit> = std::iter::once(all).chain(rest).collect();
        warn_unconverged(&groups, ctx);
        let predictors = match groups.first() {
            Some(all) => groups.iter().map(|g| btyd::predictor(g, all, s)).collect(),
            None => Vec::new(),
        };
        Fits {
            groups,
            predictors,
            fit_by: p.fit_by,
        }
    }

    /// Sets the predictions of the acquired customers of `rows`.
    pub(crate) fn apply(&self, rows: &mut [CustomerRow], ctx: &Ctx) {
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

/// The transaction model's name in the models table.
fn model_name(m: ModelKind) -> &'static str {
    match m {
        ModelKind::BgNbd => "bg_nbd",
        ModelKind::MbgNbd => "mbg_nbd",
    }
}

fn transaction_model_name(ctx: &Ctx) -> &'static str {
    ctx.predict
        .as_ref()
        .map_or("bg_nbd", |p| model_name(p.settings.model))
}

/// Warns of every fitted model that did not converge: its group predicts with `all`'s (or,
/// for `all`, without that model).
fn warn_unconverged(groups: &[GroupFit], ctx: &Ctx) {
    for (slot, g) in groups.iter().enumerate() {
        let (segment_by, segment) = &ctx.slots.names[slot];
        let models = [
            (
                transaction_model_name(ctx),
                g.transactions.map(|f| f.converged),
            ),
            ("gamma_gamma", g.spend.map(|f| f.converged)),
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
pub(crate) fn models_table(fits: &Fits, ctx: &Ctx, s: &Settings) -> arrow::array::RecordBatch {
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
    // (fitted, converged, iterations, log_likelihood, [r, α, a, b, p, q, v])
    type Fit = (
        bool,
        Option<bool>,
        Option<i64>,
        Option<f64>,
        [Option<f64>; 7],
    );
    let fit_of = |&(slot, transactions): &(usize, bool)| -> Fit {
        let g = group(slot);
        if transactions {
            match &g.transactions {
                None => (false, None, None, None, [None; 7]),
                Some(f) => {
                    let m = match f.model {
                        Transactions::BgNbd(m) | Transactions::MbgNbd(btyd::MbgNbd(m)) => m,
                    };
                    // A fit that did not converge has no estimate to show.
                    let p = if f.converged {
                        [
                            Some(m.r),
                            Some(m.alpha),
                            Some(m.a),
                            Some(m.b),
                            None,
                            None,
                            None,
                        ]
                    } else {
                        [None; 7]
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
                None => (false, None, None, None, [None; 7]),
                Some(f) => {
                    let m = f.model;
                    let p = if f.converged {
                        [None, None, None, None, Some(m.p), Some(m.q), Some(m.v)]
                    } else {
                        [None; 7]
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
    let param = |i: usize| {
        arc(Float64Array::from(
            fits_.iter().map(|f| f.4[i]).collect::<Vec<_>>(),
        ))
    };
    let nulls_f = || arc(Float64Array::from(vec![None::<f64>; rows.len()]));
    let nulls_i = || arc(Int64Array::from(vec![None::<i64>; rows.len()]));
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
                    "gamma_gamma"
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
        ("s", nulls_f()),
        ("beta", nulls_f()),
        ("p", param(4)),
        ("q", param(5)),
        ("v", param(6)),
        (
            "time_unit_days",
            arc(Float64Array::from(vec![s.unit_days; rows.len()])),
        ),
        ("holdout_customers", nulls_i()),
        ("holdout_predicted_purchases", nulls_f()),
        ("holdout_actual_purchases", nulls_i()),
    ];
    crate::schema::Table::Models.batch(&[], cols)
}
