//! `[predict]` (SPEC §5): the buy-till-you-die models and what they predict.

use serde::{Deserialize, Serialize};

/// `[predict]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// False: no predictions (their columns are null) and no models table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Transaction model: `bg_nbd`, `mbg_nbd` or `pareto_nbd`.
    #[serde(default)]
    pub model: TransactionModel,
    /// `all` or a segment column: whose fit a customer's predictions use.
    #[serde(default = "all")]
    pub fit_by: String,
    /// Months ahead that expected_purchases and predicted_clv cover.
    #[serde(default = "twelve")]
    pub horizon_months: u32,
    /// Monthly discount rate d of predicted_clv.
    #[serde(default = "one_percent")]
    pub discount_rate_monthly: f64,
    /// The models' time unit, in days (7: weeks, as in the papers).
    #[serde(default = "week")]
    pub time_unit_days: f64,
    /// Groups with fewer customers use the `all` fit.
    #[serde(default = "hundred")]
    pub min_customers: u64,
    /// L2 penalty on the parameters (as lifetimes' penalizer_coef).
    #[serde(default)]
    pub penalizer: f64,
    /// > 0: backtest the transaction model on the last N days (SPEC §4 models table).
    #[serde(default)]
    pub holdout_days: u32,
}

/// The transaction model (named as in the papers, hence the common suffix).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TransactionModel {
    #[default]
    BgNbd,
    MbgNbd,
    ParetoNbd,
}

fn yes() -> bool {
    true
}
fn all() -> String {
    "all".into()
}
fn twelve() -> u32 {
    12
}
fn one_percent() -> f64 {
    0.01
}
fn week() -> f64 {
    7.0
}
fn hundred() -> u64 {
    100
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            enabled: yes(),
            model: TransactionModel::default(),
            fit_by: all(),
            horizon_months: twelve(),
            discount_rate_monthly: one_percent(),
            time_unit_days: week(),
            min_customers: hundred(),
            penalizer: 0.0,
            holdout_days: 0,
        }
    }
}

impl PredictConfig {
    /// The problems of these settings, each naming its key; `segments` are the configured
    /// segment columns.
    pub fn problems(&self, segments: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.fit_by != "all" && !segments.contains(&self.fit_by) {
            out.push(format!(
                "predict.fit_by: '{}' is neither \"all\" nor a column of input.columns.segments",
                super::short(&self.fit_by)
            ));
        }
        if !(1..=1200).contains(&self.horizon_months) {
            out.push(format!(
                "predict.horizon_months: {} is out of range (1–1200)",
                self.horizon_months
            ));
        }
        if !(0.0..1.0).contains(&self.discount_rate_monthly) {
            out.push(format!(
                "predict.discount_rate_monthly: {} is out of range (0 to below 1)",
                self.discount_rate_monthly
            ));
        }
        if !(self.time_unit_days > 0.0 && self.time_unit_days <= 366.0) {
            out.push(format!(
                "predict.time_unit_days: {} is out of range (above 0, at most 366)",
                self.time_unit_days
            ));
        }
        if self.min_customers == 0 {
            out.push("predict.min_customers: must be at least 1".into());
        }
        if !(self.penalizer >= 0.0 && self.penalizer.is_finite()) {
            out.push(format!(
                "predict.penalizer: {} must be 0 or more",
                self.penalizer
            ));
        }
        if self.holdout_days > 36_600 {
            out.push(format!(
                "predict.holdout_days: {} is out of range (0–36600)",
                self.holdout_days
            ));
        }
        out
    }
}
