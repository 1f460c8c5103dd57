//! Parameter recovery: customers drawn from the models' own generative processes with known
//! parameters, summarized as the job does (times in whole days), and fitted again. Each
//! estimate must land within 3 standard errors (from the observed information, the Hessian of
//! the log-likelihood at the estimate) of the truth.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use super::{
    fit, fit_exactly, log_standard_errors, BgNbd, GammaGamma, Model, ParetoNbd, Summary, Triple,
};

/// How many standard errors each estimate lies from the truth (on the log scale).
fn distances<M: Model>(data: &[M::Obs], estimate: &[f64], truth: &[f64]) -> Vec<f64> {
    let logp: Vec<f64> = estimate.iter().map(|v| v.ln()).collect();
    log_standard_errors::<M>(data, &logp)
        .iter()
        .enumerate()
        .map(|(i, se)| (estimate[i].ln() - truth[i].ln()).abs() / se)
        .collect()
}

/// Spend per transaction: Gamma(p, ν) with ν ~ Gamma(q, v), a mean of p v / (q − 1) = 50.
const SPEND: (f64, f64, f64) = (5.0, 3.0, 20.0);

/// `n` customers acquired uniformly over two years from the BG/NBD process with `truth`
/// (weeks), with Gamma-Gamma spend: their exact (x, t_x, T) in weeks, and the summary the job
/// builds from their purchase days (purchases merged per day, T in whole days to as_of).
fn simulate(truth: BgNbd, n: usize, seed: u64) -> (Vec<Triple>, Summary) {
    let (p, q, v) = SPEND;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rates = Gamma::new(truth.r, 1.0 / truth.alpha).unwrap();
    let dropout = Beta::new(truth.a, truth.b).unwrap();
    let scales = Gamma::new(q, 1.0 / v).unwrap();
    let mut summary = Summary::default();
    let mut exact = Vec::new();
    for _ in 0..n {
        // The first purchase at time u of its day; observed to the end of as_of's day,
        // `age_days` whole days later.
        let age_days = rng.random_range(0..730_i64);
        let u: f64 = rng.random();
        let t = (age_days as f64 + 1.0 - u) / 7.0;
        let (lambda, pd) = (rates.sample(&mut rng), dropout.sample(&mut rng));
        let gaps = Exp::new(lambda).unwrap();
        let value = Gamma::new(p, 1.0 / scales.sample(&mut rng)).unwrap();
        // Repeat purchases while alive and before T; after each, dropout with probability pd.
        let (mut now, mut x, mut last) = (0.0, 0.0, 0.0);
        let (mut days, mut revenue) = (Vec::<i64>::new(), 0.0_f64);
        loop {
            now += gaps.sample(&mut rng);
            if now >= t {
                break;
            }
            (x, last) = (x + 1.0, now);
            revenue += value.sample(&mut rng);
            let day = (u + now * 7.0) as i64;
            if days.last() != Some(&day) {
                days.push(day);
            }
            if rng.random::<f64>() < pd {
                break;
            }
        }
        exact.push(Triple {
            x,
            t_x: last,
            t,
            n: 1.0,
        });
        // Purchase days after the first purchase's day.
        let repeat_days = days.iter().filter(|&&d| d > 0).count() as i64;
        let recency = days.last().copied().unwrap_or(0);
        summary.add(
            repeat_days,
            recency,
            age_days,
            (revenue * 100.0).round() as i64,
        );
    }
    (exact, summary)
}

fn params(m: &BgNbd) -> [f64; 4] {
    [m.r, m.alpha, m.a, m.b]
}

#[test]
fn bg_nbd_recovers_its_parameters_from_exact_times() {
    // 50 000 customers, r 0.6, α 4 (a mean of 0.15 purchases a week), a 0.8, b 2.5.
    let truth = BgNbd {
        r: 0.6,
        alpha: 4.0,
        a: 0.8,
        b: 2.5,
    };
    let (exact, _) = simulate(truth, 50_000, 7);
    let fitted = fit::<BgNbd>(&exact, 0.0);
    assert!(fitted.converged, "{fitted:?}");
    let far = distances::<BgNbd>(&exact, &params(&fitted.model), &params(&truth));
    eprintln!(
        "BG/NBD on exact times: {:?}, standard errors from the truth {far:.2?}",
        fitted.model
    );
    assert!(far.iter().all(|d| *d < 3.0), "{fitted:?} {far:?}");
}

#[test]
fn a_start_from_a_sample_reaches_the_same_optimum() {
    // 150 000 distinct exact triples, above SAMPLE_ABOVE: `fit` first fits every 7th of them
    // counted 7 times. It must end where the fit from the default start ends (the same
    // optimum to the optimizer's tolerance), in fewer passes over all of them.
    let truth = BgNbd {
        r: 0.6,
        alpha: 4.0,
        a: 0.8,
        b: 2.5,
    };
    let (exact, _) = simulate(truth, 150_000, 11);
    let staged = fit::<BgNbd>(&exact, 0.0);
    let direct = fit_exactly::<BgNbd>(&exact, 0.0, &[0.0; 4]);
    assert!(
        staged.converged && direct.converged,
        "{staged:?} {direct:?}"
    );
    let (a, b) = (staged.model.to_log(), direct.model.to_log());
    for i in 0..4 {
        assert!((a[i] - b[i]).abs() < 1e-5, "{staged:?} vs {direct:?}");
    }
    assert!(
        (staged.log_likelihood - direct.log_likelihood).abs() < 1e-9 * direct.log_likelihood.abs(),
        "{staged:?} vs {direct:?}"
    );
    assert!(
        staged.iterations < direct.iterations,
        "{} passes from the sample's estimate, {} from the default start",
        staged.iterations,
        direct.iterations
    );
}

#[test]
fn daily_summaries_recover_the_parameters_of_slow_buyers() {
    // The job's summary merges purchases per day, which the model does not know: fewer
    // purchases counted look like lower rates, a larger α. For the buyers above (α 4, a mean
    // of 0.15 a week, some several times a week) α lands ~7% high, 5 standard errors at
    // 50 000 customers. For customers buying ~0.05 times a week (α 12), 50 000 of them
    // through `Summary` land within 3 standard errors (α 2.5, 3.7% high; r, a, b within
    // 1.2), and so do the Gamma-Gamma parameters of their spend (within 1.0).
    let truth = BgNbd {
        r: 0.6,
        alpha: 12.0,
        a: 0.8,
        b: 2.5,
    };
    let (_, summary) = simulate(truth, 50_000, 11);
    let triples = summary.triples(7.0);
    let fitted = fit::<BgNbd>(&triples, 0.0);
    assert!(fitted.converged, "{fitted:?}");
    let far = distances::<BgNbd>(&triples, &params(&fitted.model), &params(&truth));
    eprintln!(
        "BG/NBD on daily summaries: {:?}, standard errors from the truth {far:.2?}, {} unique triples",
        fitted.model,
        summary.unique_triples()
    );
    assert!(far.iter().all(|d| *d < 3.0), "{fitted:?} {far:?}");

    let spend = summary.spend(0.01);
    let gg = fit::<GammaGamma>(&spend, 0.0);
    assert!(gg.converged, "{gg:?}");
    let g = gg.model;
    let (p, q, v) = SPEND;
    let far = distances::<GammaGamma>(&spend, &[g.p, g.q, g.v], &[p, q, v]);
    eprintln!(
        "Gamma-Gamma: {g:?}, standard errors from the truth {far:.2?}, {} repeaters",
        summary.repeaters()
    );
    assert!(far.iter().all(|d| *d < 3.0), "{g:?} {far:?}");
}

#[test]
fn pareto_nbd_recovers_its_parameters_from_exact_times() {
    // 50 000 customers acquired uniformly over two years (weeks): purchase rate
    // λ ~ Gamma(r 0.6, α 4), lifetime ~ Exp(μ) with μ ~ Gamma(s 0.8, β 12), purchases a
    // Poisson process while alive and before T.
    let truth = ParetoNbd {
        r: 0.6,
        alpha: 4.0,
        s: 0.8,
        beta: 12.0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let rates = Gamma::new(truth.r, 1.0 / truth.alpha).unwrap();
    let deaths = Gamma::new(truth.s, 1.0 / truth.beta).unwrap();
    let exact: Vec<Triple> = (0..50_000)
        .map(|_| {
            let t: f64 = rng.random_range(0.0..104.0);
            let life = Exp::new(deaths.sample(&mut rng)).unwrap().sample(&mut rng);
            let gaps = Exp::new(rates.sample(&mut rng)).unwrap();
            let (mut now, mut x, mut last) = (0.0, 0.0, 0.0);
            loop {
                now += gaps.sample(&mut rng);
                if now >= t.min(life) {
                    break;
                }
                (x, last) = (x + 1.0, now);
            }
            Triple {
                x,
                t_x: last,
                t,
                n: 1.0,
            }
        })
        .collect();
    let fitted = fit::<ParetoNbd>(&exact, 0.0);
    assert!(fitted.converged, "{fitted:?}");
    let m = fitted.model;
    let far = distances::<ParetoNbd>(
        &exact,
        &[m.r, m.alpha, m.s, m.beta],
        &[truth.r, truth.alpha, truth.s, truth.beta],
    );
    eprintln!("Pareto/NBD on exact times: {m:?}, standard errors from the truth {far:.2?}");
    assert!(far.iter().all(|d| *d < 3.0), "{fitted:?} {far:?}");
}
