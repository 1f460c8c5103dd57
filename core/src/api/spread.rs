//! A run spread over machines (a Spark job) in two passes, so that no process but the task
//! that folded a customer ever holds that customer's row:
//!
//! 1. Each task folds its customer partition ([`Computation::fold_rows`]) and takes a
//!    [census](Computation::census) of it: the rows leave the partial, which keeps its sums,
//!    rejects and accounting, and the [`Census`] keeps what the whole base's RFM scores and
//!    model fits need (the RFM measures counted by value, the prediction summaries per group).
//! 2. The driver merges the partials and the censuses and [plans](Computation::plan) the second
//!    pass: the whole base's segment values and earliest order (so every task lays its sums out
//!    alike), the RFM cut points and the fitted models. The [`Plan`] is small; every task gets it.
//! 3. Each task folds its partition again and [scores](Computation::score) it against the plan:
//!    its customers table (which the task writes) and its ltv sums ([`LtvSums`]).
//! 4. The driver merges the ltv sums and [finishes](Computation::finish_planned) every table but
//!    customers. The tables equal [`Computation::finish`]'s over the same partitions.
//!
//! Censuses, plans and ltv sums cross processes as bytes (`to_bytes`, `from_bytes`).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ApiError, Computation, Partial, Tables};
use crate::compute;
use crate::metrics::predictions::{self, FitParts, Fits, GroupSummary};
use crate::metrics::{self, ltv, rfm};

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("plain data serializes")
}

fn from_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    postcard::from_bytes(bytes).map_err(|e| {
        ApiError::Partial(format!(
            "{what}: cannot be read ({e}); it comes from another version or was cut short"
        ))
    })
}

/// What pass 2 needs of one partition's customers, besides its partial: merges with any other
/// partition's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Census {
    /// Customers in the partition.
    pub customers: u64,
    /// Per segment column, the values its customers have.
    values: Vec<BTreeSet<String>>,
    keys: rfm::KeyCounts,
    /// Prediction summaries per fit group, by (segment_by, segment) (empty with predictions
    /// off).
    summaries: BTreeMap<(String, String), GroupSummary>,
}

impl Census {
    /// Adds another partition's census.
    pub fn merge(&mut self, other: Census) {
        self.customers += other.customers;
        if self.values.len() < other.values.len() {
            self.values.resize(other.values.len(), BTreeSet::new());
        }
        for (mine, theirs) in self.values.iter_mut().zip(other.values) {
            mine.extend(theirs);
        }
        self.keys.merge(other.keys);
        for (group, s) in other.summaries {
            let mine = self.summaries.entry(group).or_default();
            mine.merge(&s);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Census, ApiError> {
        from_bytes(bytes, "census")
    }
}

/// The second pass of one date: the same for every task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    as_of: NaiveDate,
    /// The values the whole base's customers have of each segment column, sorted (they
    /// number the slots).
    values: Vec<Vec<String>>,
    earliest: Option<i64>,
    cuts: rfm::Cuts,
    fits: Option<FitParts>,
    /// Customers of the whole base.
    customers: u64,
}

impl Plan {
    /// Customers of the whole base.
    pub fn customers(&self) -> u64 {
        self.customers
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Plan, ApiError> {
        from_bytes(bytes, "plan")
    }
}

/// The ltv sums of scored customers (every partition's add up to the whole base's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LtvSums {
    sums: ltv::Sums,
    customers: u64,
}

impl LtvSums {
    /// Adds another partition's sums (of the same plan: sums laid out for another refuse).
    pub fn merge(&mut self, other: &LtvSums) -> Result<(), ApiError> {
        if !self.sums.same_layout(&other.sums) {
            return Err(ApiError::Mismatch(
                "ltv sums of different plans cannot be merged".into(),
            ));
        }
        self.sums.merge(&other.sums);
        self.customers += other.customers;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LtvSums, ApiError> {
        from_bytes(bytes, "ltv sums")
    }
}

/// One partition scored against a plan: its customers table and its ltv sums.
#[derive(Debug, Clone)]
pub struct Scored {
    pub customers: RecordBatch,
    pub sums: LtvSums,
}

impl Computation {
    /// Pass 1, in a task: takes the customer rows out of `partial` (a partition folded by
    /// [`fold_rows`](Self::fold_rows) or [`fold`](Self::fold)) and returns what the plan
    /// needs of them.
    pub fn census(&self, partial: &mut Partial) -> Census {
        let rows = std::mem::take(&mut partial.rows);
        partial.customer_ids = Vec::new();
        let mut keys = rfm::KeyCounts::default();
        keys.add(&rows);
        let values = partial
            .values
            .iter()
            .enumerate()
            .map(|(d, all)| {
                let mut used = vec![false; all.len()];
                for r in &rows {
                    used[r.segs[d] as usize] = true;
                }
                all.iter()
                    .zip(used)
                    .filter(|(_, u)| *u)
                    .map(|(v, _)| v.clone())
                    .collect()
            })
            .collect();
        let (_, ctx) = self.context(&partial.values, partial.earliest);
        let summaries = match ctx.predict {
            Some(_) => ctx
                .slots
                .names
                .iter()
                .cloned()
                .zip(predictions::summarize(std::slice::from_ref(&rows), &ctx))
                .filter(|(_, s)| *s != GroupSummary::default())
                .collect(),
            None => BTreeMap::new(),
        };
        Census {
            customers: rows.len() as u64,
            values,
            keys,
            summaries,
        }
    }

    /// Pass 2's plan, on the driver: from the merge of every partition's partial (taken a
    /// census of) and the merge of their censuses. Fits the prediction models.
    pub fn plan(&self, partial: &Partial, census: &Census) -> Result<Plan, ApiError> {
        self.same_head(partial)?;
        if !partial.rows.is_empty() {
            return Err(ApiError::Mismatch(
                "plan: the partial still holds customer rows; take its census first".into(),
            ));
        }
        let mut values: Vec<Vec<String>> = census
            .values
            .iter()
            .map(|v| v.iter().cloned().collect())
            .collect();
        values.resize(partial.head.dims.len(), Vec::new());
        let (_, ctx) = self.context(&values, partial.earliest);
        let fits = ctx.predict.as_ref().map(|p| {
            let summaries: Vec<GroupSummary> = ctx
                .slots
                .names
                .iter()
                .map(|group| census.summaries.get(group).cloned().unwrap_or_default())
                .collect();
            let started = std::time::Instant::now();
            let fits = Fits::new(&summaries, p, &ctx);
            tracing::info!(
                groups = summaries.len(),
                ms = started.elapsed().as_millis() as u64,
                "Fitted the prediction models."
            );
            fits.to_parts()
        });
        Ok(Plan {
            as_of: self.as_of,
            values,
            earliest: partial.earliest,
            cuts: census.keys.cuts(),
            fits,
            customers: census.customers,
        })
    }

    /// Pass 2, in a task: `partial` (the same partition folded again) scored against `plan`.
    pub fn score(&self, plan: &Plan, partial: Partial) -> Result<Scored, ApiError> {
        self.same_plan(plan)?;
        self.same_head(&partial)?;
        // Into the plan's frame and segment values: an empty partial of the whole base, merged
        // with this one, renumbers its rows.
        let mut base = Partial {
            head: self.head(),
            earliest: plan.earliest,
            money_abs: 0,
            sums: BTreeMap::new(),
            customer_ids: Vec::new(),
            values: plan.values.clone(),
            rows: Vec::new(),
            accounting: Default::default(),
        };
        base.merge(partial)?;
        // Values only lines after as_of have (no customer's segment) are not in the plan:
        // they are appended last and dropped; one a customer has means another base.
        for (d, (mine, planned)) in base.values.iter_mut().zip(&plan.values).enumerate() {
            let known = planned.len();
            if base.rows.iter().all(|r| (r.segs[d] as usize) < known) {
                mine.truncate(known);
            }
        }
        if base.values != plan.values || base.earliest != plan.earliest {
            return Err(ApiError::Mismatch(
                "score: the partition has a segment value or an order its plan does not know; \
                 it was planned on other rows"
                    .into(),
            ));
        }
        let (mut ing, ctx) = self.context(&plan.values, plan.earliest);
        let mut rows = base.rows;
        super::intern_customers(&mut ing, &mut rows, &base.customer_ids)?;
        let fits = self.fits(plan, &ctx)?;
        let mut parts = vec![rows];
        let sums = metrics::score_and_sum(&mut parts, &plan.cuts.scorer(), fits.as_ref(), &ctx);
        let rows = parts.pop().unwrap_or_default();
        Ok(Scored {
            customers: metrics::customers::table(rows.iter().collect(), &ing, &ctx),
            sums: LtvSums {
                sums,
                customers: rows.len() as u64,
            },
        })
    }

    /// Every table but customers (empty: the tasks wrote its files), on the driver: from the
    /// merged partial that was planned, its plan, and the merge of every partition's ltv sums.
    pub fn finish_planned(
        &self,
        partial: Partial,
        plan: &Plan,
        sums: LtvSums,
    ) -> Result<Tables, ApiError> {
        self.same_plan(plan)?;
        self.same_head(&partial)?;
        if partial.earliest != plan.earliest {
            return Err(ApiError::Mismatch(
                "finish: the partial is not the one the plan was made of".into(),
            ));
        }
        if sums.customers != plan.customers {
            return Err(ApiError::Mismatch(format!(
                "finish: the ltv sums cover {} customers, the plan {}: a partition is missing or \
                 was counted twice",
                sums.customers, plan.customers
            )));
        }
        let (ing, ctx) = self.context(&plan.values, plan.earliest);
        if !sums.sums.same_layout(&ltv::Sums::new(&ctx)) {
            return Err(ApiError::Mismatch(
                "finish: the ltv sums were scored against another plan".into(),
            ));
        }
        let acc = partial.acc(&ctx)?;
        let merged = compute::Merged {
            acc,
            sums: sums.sums,
            n_customers: plan.customers,
            fits: self.fits(plan, &ctx)?,
            fit_ms: None,
        };
        let customers = metrics::customers::table(Vec::new(), &ing, &ctx);
        Ok(Self::tables(merged, &ctx, partial.accounting, customers))
    }

    fn same_plan(&self, plan: &Plan) -> Result<(), ApiError> {
        if plan.as_of != self.as_of {
            return Err(ApiError::Mismatch(format!(
                "the plan is of as_of {}, not {}",
                plan.as_of, self.as_of
            )));
        }
        Ok(())
    }

    fn fits(&self, plan: &Plan, ctx: &metrics::Ctx) -> Result<Option<Fits>, ApiError> {
        match (&plan.fits, &ctx.predict) {
            (Some(f), Some(p)) => Ok(Some(Fits::from_parts(f.clone(), p))),
            (None, None) => Ok(None),
            _ => Err(ApiError::Mismatch(
                "the plan was made under another [predict] setting".into(),
            )),
        }
    }
}
