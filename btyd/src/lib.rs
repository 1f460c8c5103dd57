//! Predictions (SPEC §4 "Predictions"): buy-till-you-die models fitted by maximum likelihood on
//! a fit group's unique (x, t_x, T) triples with their counts, and each customer's conditional
//! expectations. The sums run over the observations in a fixed order, in fixed chunks, so a fit
//! gives the same bits whatever the thread count or how customers were partitioned.
//!
//! The models and fits are tested against the published CDNOW results (Fader, Hardie & Lee
//! 2005; Batislam et al. 2007; Fader & Hardie's Pareto/NBD note) and on data drawn from the models' own process.

mod bgnbd;
mod clv;
mod gamma_gamma;
mod groups;
mod pareto;
#[cfg(test)]
mod recovery;
mod special;
mod summary;

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;

pub use bgnbd::{BgNbd, MbgNbd};
pub use clv::{Prediction, Predictor, Transactions, MONTH_DAYS};
pub use gamma_gamma::{GammaGamma, Spend};
pub use groups::{fit_group, predictor, GroupFit, ModelKind, Settings};
pub use pareto::ParetoNbd;
pub use summary::Summary;

/// Customers who share x repeat purchase periods, recency t_x and age T (in the model's time
/// unit): `n` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Triple {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
    pub n: f64,
}

/// An observation that can stand for `factor` times as many customers (a fit's sample).
pub trait Scaled: Copy {
    fn scaled(&self, factor: f64) -> Self;
}

impl Scaled for Triple {
    fn scaled(&self, factor: f64) -> Self {
        Triple {
            n: self.n * factor,
            ..*self
        }
    }
}

/// A model fitted by maximum likelihood on log-parameters.
pub trait Model: Sized + Copy + Send + Sync {
    /// What one observation (with its count) is.
    type Obs: Sync + Scaled;
    /// Number of parameters (at most 4).
    const N: usize;
    fn from_log(p: &[f64]) -> Self;
    /// The log-parameters (the first `N` entries).
    fn to_log(&self) -> [f64; 4];
    /// How many customers the observation stands for.
    fn weight(obs: &Self::Obs) -> f64;
    /// ln L of one customer of the observation, and its gradient in the log-parameters (the
    /// first `N` entries).
    fn log_likelihood(&self, obs: &Self::Obs) -> (f64, [f64; 4]);

    /// Σ n ln L over `obs` and its gradient, in order (models override it to share work
    /// between neighbouring observations).
    fn log_likelihood_sum(&self, obs: &[Self::Obs]) -> (f64, [f64; 4]) {
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        for o in obs {
            let n = Self::weight(o);
            let (l, d) = self.log_likelihood(o);
            ll += n * l;
            for i in 0..Self::N {
                g[i] += n * d[i];
            }
        }
        (ll, g)
    }
}

/// Σ n ln L and its gradient over observations sorted by x, the terms that depend on x alone
/// (`terms`) computed once per run of equal x; `x_n` gives an observation's x and count.
fn sum_by_x<O, T>(
    obs: &[O],
    x_n: impl Fn(&O) -> (f64, f64),
    terms: impl Fn(f64) -> T,
    one: impl Fn(&T, &O) -> (f64, [f64; 4]),
) -> (f64, [f64; 4]) {
    let mut ll = 0.0;
    let mut g = [0.0; 4];
    let mut cached: Option<(f64, T)> = None;
    for o in obs {
        let (x, n) = x_n(o);
        let t = match &cached {
            Some((cx, t)) if *cx == x => t,
            _ => &cached.insert((x, terms(x))).1,
        };
        let (l, d) = one(t, o);
        ll += n * l;
        for i in 0..4 {
            g[i] += n * d[i];
        }
    }
    (ll, g)
}

/// What a fit found.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Fitted<M> {
    pub model: M,
    /// Σ n ln L at the estimate (without the penalty).
    pub log_likelihood: f64,
    pub iterations: u64,
    /// The optimizer stopped at a stationary point with every parameter finite and within
    /// e^±LOG_BOUND; false when it ran out of iterations or the parameters ran off (a
    /// likelihood without a finite maximum).
    pub converged: bool,
}

/// Observations summed per chunk, in order: the chunks' sums are then added in order, so the
/// result does not depend on how rayon schedules them.
const CHUNK: usize = 1024;

/// Log-parameters beyond ±LOG_BOUND (1e±13) mean the estimate ran off.
const LOG_BOUND: f64 = 30.0;

/// Largest |∂ objective / ∂ ln θ| (the objective is the mean −ln L) at a converged estimate.
const GRADIENT_TOLERANCE: f64 = 1e-6;

/// Largest standard error of a log-parameter at a converged estimate: beyond it the data do
/// not pin the parameter down (a factor e^5 ≈ 150 either way at one standard error).
const MAX_LOG_STANDARD_ERROR: f64 = 5.0;

/// Iterations before a fit gives up.
const MAX_ITERS: u64 = 1000;

/// Evaluations of the likelihood before a fit gives up: the line search has no limit of its
/// own, and where the likelihood is infinite or flat in every direction it can search forever.
const MAX_EVALUATIONS: u64 = 20 * MAX_ITERS;

/// The negative mean log-likelihood plus lifetimes' L2 penalty (penalizer × Σ θ², θ the
/// parameters themselves), and its gradient in the log-parameters.
struct Objective<'a, M: Model> {
    data: &'a [M::Obs],
    total: f64,
    penalizer: f64,
    /// The last point's sums: the line search asks for the cost and then the gradient at the
    /// same point, and one pass gives both.
    last: std::sync::Mutex<Option<Point>>,
    /// Passes over the data so far (see MAX_EVALUATIONS).
    evaluations: std::sync::atomic::AtomicU64,
}

/// Log-parameters with Σ n ln L and its gradient there.
type Point = (Vec<f64>, f64, [f64; 4]);

impl<'a, M: Model> Objective<'a, M> {
    fn new(data: &'a [M::Obs], total: f64, penalizer: f64) -> Self {
        Objective {
            data,
            total,
            penalizer,
            last: std::sync::Mutex::new(None),
            evaluations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `sums`, remembered for the last point; an error once the fit has used up its
    /// evaluations.
    fn sums_at(&self, logp: &[f64]) -> Result<(f64, [f64; 4]), argmin::core::Error> {
        let mut last = self.last.lock().expect("objective cache");
        if let Some((p, ll, g)) = last.as_ref() {
            if p.as_slice() == logp {
                return Ok((*ll, *g));
            }
        }
        let n = self
            .evaluations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n >= MAX_EVALUATIONS {
            return Err(argmin::core::Error::msg(
                "the likelihood was evaluated too often without convergence",
            ));
        }
        let (ll, g) = self.sums(logp);
        *last = Some((logp.to_vec(), ll, g));
        Ok((ll, g))
    }

    /// Σ n ln L and its gradient, in fixed chunks added in order.
    fn sums(&self, logp: &[f64]) -> (f64, [f64; 4]) {
        let model = M::from_log(logp);
        let parts: Vec<(f64, [f64; 4])> = self
            .data
            .par_chunks(CHUNK)
            .map(|chunk| model.log_likelihood_sum(chunk))
            .collect();
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        for (l, d) in parts {
            ll += l;
            for i in 0..M::N {
                g[i] += d[i];
            }
        }
        (ll, g)
    }
}

impl<M: Model> CostFunction for Objective<'_, M> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, logp: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        if logp.iter().any(|v| v.abs() > 2.0 * LOG_BOUND) {
            return Ok(f64::INFINITY);
        }
        let (ll, _) = self.sums_at(logp)?;
        let penalty: f64 = logp.iter().map(|v| (2.0 * v).exp()).sum();
        Ok(-ll / self.total + self.penalizer * penalty)
    }
}

impl<M: Model> Gradient for Objective<'_, M> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, logp: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let (_, g) = self.sums_at(logp)?;
        Ok((0..M::N)
            .map(|i| -g[i] / self.total + self.penalizer * 2.0 * (2.0 * logp[i]).exp())
            .collect())
    }
}

/// Standard errors of the log-parameters: √diag((−H)⁻¹), H the Hessian of Σ n ln L in the
/// log-parameters, by central differences of the analytic gradient.
pub fn log_standard_errors<M: Model>(data: &[M::Obs], logp: &[f64]) -> Vec<f64> {
    let n = M::N;
    let objective = Objective::<M>::new(data, 1.0, 0.0);
    let grad = |p: &[f64]| objective.sums(p).1;
    let h = 1e-5;
    let mut info = vec![vec![0.0; n]; n];
    for j in 0..n {
        let (mut up, mut down) = (logp.to_vec(), logp.to_vec());
        up[j] += h;
        down[j] -= h;
        let (gu, gd) = (grad(&up), grad(&down));
        for i in 0..n {
            info[i][j] = -(gu[i] - gd[i]) / (2.0 * h);
        }
    }
    // Invert the (symmetric) information by Gauss-Jordan elimination; a pivot that is not
    // positive means no finite maximum there (NaN standard errors).
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for c in 0..n {
        let pivot = info[c][c];
        if pivot.is_nan() || pivot <= 0.0 {
            return vec![f64::NAN; n];
        }
        for j in 0..n {
            info[c][j] /= pivot;
            inv[c][j] /= pivot;
        }
        for r in 0..n {
            if r != c {
                let f = info[r][c];
                for j in 0..n {
                    info[r][j] -= f * info[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    (0..n).map(|i| inv[i][i].sqrt()).collect()
}

/// Fits model `M` to `data` by L-BFGS on the log-parameters from 1 for every parameter.
pub fn fit<M: Model>(data: &[M::Obs], penalizer: f64) -> Fitted<M> {
    fit_from(data, penalizer, &[0.0; 4])
}

/// `fit` from the log-parameters `start` (e.g. another group's estimate, which a segment's
/// usually lies near). Above `SAMPLE_ABOVE` observations the start is first moved to the
/// estimate on a systematic sample of them (every k-th in their sorted order, each counted k
/// times), so the passes over all of them begin near the optimum: a few instead of ~25. The
/// sample depends only on the data, so the result stays the same whatever the partitioning.
pub fn fit_from<M: Model>(data: &[M::Obs], penalizer: f64, start: &[f64]) -> Fitted<M> {
    if data.len() <= SAMPLE_ABOVE {
        return fit_exactly(data, penalizer, start);
    }
    let k = data.len() / SAMPLE;
    let sample: Vec<M::Obs> = data.iter().step_by(k).map(|o| o.scaled(k as f64)).collect();
    let rough = fit_exactly::<M>(&sample, penalizer, start);
    let rough_start = rough.model.to_log();
    let moved =
        rough.log_likelihood.is_finite() && rough_start[..M::N].iter().all(|v| v.abs() < LOG_BOUND);
    fit_exactly(data, penalizer, if moved { &rough_start } else { start })
}

/// Observations above which `fit_from` starts from a sample's estimate, and the sample's size.
const SAMPLE_ABOVE: usize = 100_000;
const SAMPLE: usize = 20_000;

/// L-BFGS on all of `data` from `start`, and the checks that tell a real optimum.
fn fit_exactly<M: Model>(data: &[M::Obs], penalizer: f64, start: &[f64]) -> Fitted<M> {
    let total: f64 = data.iter().map(M::weight).sum();
    let objective = Objective::<M>::new(data, total.max(1.0), penalizer);
    let start = start[..M::N].to_vec();
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(1e-14))
        .expect("valid tolerances");
    let result = Executor::new(objective, solver)
        .configure(|state| state.param(start.clone()).max_iters(MAX_ITERS))
        .run();
    // L-BFGS stops either by its own tests or when, at the optimum, rounding leaves no descent
    // direction for the line search; both are convergence when the gradient there is ~0.
    // Running out of iterations is not.
    let (logp, iterations, stopped) = match &result {
        Ok(r) => {
            let state = r.state();
            let logp = state.get_best_param().cloned().unwrap_or(start.clone());
            let stopped = matches!(
                state.get_termination_status(),
                TerminationStatus::Terminated(
                    TerminationReason::SolverConverged | TerminationReason::SolverExit(_)
                )
            );
            (logp, state.get_iter(), stopped)
        }
        Err(_) => (start.clone(), 0, false),
    };
    let model = M::from_log(&logp);
    let at_end = Objective::<M>::new(data, total.max(1.0), penalizer);
    let (log_likelihood, _) = at_end.sums(&logp);
    let flat = at_end
        .gradient(&logp)
        .is_ok_and(|g| g.iter().all(|d| d.abs() < GRADIENT_TOLERANCE));
    let finite = log_likelihood.is_finite() && logp.iter().all(|v| v.abs() < LOG_BOUND);
    // A ridge (parameters that run off together, e.g. Gamma-Gamma's q and v on spend without
    // heterogeneity) can stop the optimizer with a flat gradient; its curvature gives it away.
    let identified = finite
        && log_standard_errors::<M>(data, &logp)
            .iter()
            .all(|se| *se < MAX_LOG_STANDARD_ERROR);
    Fitted {
        model,
        log_likelihood,
        iterations,
        converged: stopped && flat && identified,
    }
}

/// The CDNOW summary published with the BG/NBD paper, as shipped in the `lifetimes` wheel
/// (`cdnow_customers_summary_with_transactions.csv`): x, t_x, T in weeks as of 1997-09-30,
/// and the mean value of the repeat transactions.
#[cfg(test)]
fn cdnow() -> Vec<(f64, f64, f64, f64)> {
    include_str!("../tests/data/cdnow_customers_summary.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            (f[1], f[2], f[3], f[4])
        })
        .collect()
}

/// CDNOW's customers as (x, t_x, T) triples of one customer each.
#[cfg(test)]
fn cdnow_triples() -> Vec<Triple> {
    cdnow()
        .into_iter()
        .map(|(x, t_x, t, _)| Triple { x, t_x, t, n: 1.0 })
        .collect()
}

/// Checks a model's analytic gradient at `logp` against central differences of its
/// log-likelihood.
#[cfg(test)]
fn assert_gradient<M: Model + std::fmt::Debug>(logp: &[f64], obs: &M::Obs)
where
    M::Obs: std::fmt::Debug,
{
    let (_, g) = M::from_log(logp).log_likelihood(obs);
    for i in 0..M::N {
        let h = 1e-6;
        let (mut up, mut down) = (logp.to_vec(), logp.to_vec());
        up[i] += h;
        down[i] -= h;
        let slope = (M::from_log(&up).log_likelihood(obs).0
            - M::from_log(&down).log_likelihood(obs).0)
            / (2.0 * h);
        assert!(
            (g[i] - slope).abs() < 1e-5 * slope.abs().max(1.0),
            "{obs:?} parameter {i}: {} vs {slope}",
            g[i]
        );
    }
}
