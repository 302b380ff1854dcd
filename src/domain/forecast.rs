//! Forecasts with an uncertainty band: the distribution of an allocation's exhaustion instant
//! and of the hours it will have consumed by its period end, from its own recent daily charged
//! hours. Pure and deterministic (seeded by the allocation and the instant); table-tested below.
//!
//! **Method: a block bootstrap in regimes, mixed with the plan, at an uncertain level.** The
//! last `history_days` complete days before the instant (within the period) are cut into every
//! run of `block_days` consecutive days (the overlapping blocks of a moving-block bootstrap,
//! which keep a week's shape: weekends, a campaign's burst). Each of `paths` simulated futures
//! is a sequence of regimes of `regime_blocks` blocks (by default a regime lasts up to a year,
//! so a path is one regime). A regime repeats one drawn block — or follows **the plan**, the
//! expected profile's hours day by day: usage that has not started yet, or a lull, says little
//! about a project that was granted hours to use them; it follows the history with probability
//! known days / (known days + `plan_days`), so the plan weighs most early in the period. Its
//! hours are scaled by a log-normal **level** of median 1 and spread `level_sigma`: the
//! recent weeks' rate is an uncertain guide to the coming months' (a machine ramps up, a
//! campaign starts or ends).
//!
//! Why these choices, measured (`allocwatch replay --forecast-calibration` on the CEA Curie and
//! RIKEN RICC traces; `benches/calibrate.py`; README, Forecasts): drawing every week afresh
//! averages bursts out and gave bands that held 12 % of the outcomes on Curie; regimes of four
//! weeks 17 %; a whole-path regime with the plan and a level of σ = 1, 73 % on Curie and 88 % on
//! RICC (the target is 80 %: Curie's year is the machine's ramp-up, when every group used more
//! later than early). With fewer than `min_history_days` days there is no forecast (one week
//! at least says something about a project's rhythm, less says nothing).
//!
//! The result keeps, for the exhaustion instant, the consumed hours at the period end and the
//! consumed hours at up to [`FAN_POINTS`] instants between now and then (the band), the
//! 21 quantiles 0 %, 5 %, … 100 % of the paths. Probabilities (the forecast rules') are read
//! from those quantiles by linear interpolation, so to about 5 %.

use super::reconcile::{sum_overlap, AllocationWindow, Bucket};
use super::time::DAY_S;

/// `[forecast]`: how forecasts are made (documented defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastSettings {
    /// Make forecasts (default true).
    pub enabled: bool,
    /// Simulated futures per allocation (default 128).
    pub paths: u32,
    /// Days of recent history resampled (default 28).
    pub history_days: u32,
    /// Fewer days of history than this: no forecast (default 7).
    pub min_history_days: u32,
    /// Days per resampled block (default 7: weeks).
    pub block_days: u32,
    /// A drawn block is kept for this many consecutive blocks of the future (default 52: a
    /// regime lasts up to a year).
    pub regime_blocks: u32,
    /// The plan (the expected profile) weighs as much as this many days of history (default
    /// 56): each regime follows the history with probability known days / (known days +
    /// `plan_days`), the plan otherwise.
    pub plan_days: u32,
    /// Spread of a regime's level: its hours (the drawn history's or the plan's) are scaled by
    /// a log-normal factor of median 1 and this σ (default 1.0).
    pub level_sigma: f64,
    /// Seed mixed with each allocation's subject and the instant (default 0).
    pub seed: u64,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        ForecastSettings { enabled: true, paths: 128, history_days: 28, min_history_days: 7, block_days: 7, regime_blocks: 52, plan_days: 56, level_sigma: 1.0, seed: 0 }
    }
}

/// Quantile levels kept: 0 %, 5 %, … 100 %.
pub const LEVELS: usize = 21;

/// Most instants of the band between now and the period end (the end included).
pub const FAN_POINTS: usize = 8;

/// The 21 quantiles (0 %, 5 %, … 100 %) of a simulated quantity; `f64::INFINITY` stands for
/// "never" (an exhaustion that does not happen within the period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles(pub [f64; LEVELS]);

impl Quantiles {
    /// The quantiles of `values` (sorted in place; not empty).
    fn of(values: &mut [f64]) -> Quantiles {
        values.sort_unstable_by(f64::total_cmp);
        let n = values.len();
        let mut q = [0.0; LEVELS];
        for (l, v) in q.iter_mut().enumerate() {
            *v = values[((l * (n - 1)) as f64 / (LEVELS - 1) as f64).round() as usize];
        }
        Quantiles(q)
    }

    /// The quantile at probability `p` (0–1), at the nearest kept level (P10, P50 and P90 are
    /// kept exactly).
    pub fn at(&self, p: f64) -> f64 {
        self.0[(p.clamp(0.0, 1.0) * (LEVELS - 1) as f64).round() as usize]
    }

    /// P(X ≤ x): the share of the distribution at or below `x`, interpolated linearly between
    /// the kept levels.
    pub fn cdf(&self, x: f64) -> f64 {
        let q = &self.0;
        if x < q[0] {
            return 0.0;
        }
        let step = 1.0 / (LEVELS - 1) as f64;
        // The last level at or below x.
        let l = q.partition_point(|v| *v <= x) - 1;
        if l == LEVELS - 1 {
            return 1.0;
        }
        let (lo, hi) = (q[l], q[l + 1]);
        let frac = if hi.is_finite() && hi > lo { (x - lo) / (hi - lo) } else { 0.0 };
        (l as f64 + frac) * step
    }
}

/// The band at one instant: quantiles of the hours consumed in the period by then.
#[derive(Debug, Clone, PartialEq)]
pub struct FanPoint {
    /// The instant, epoch seconds.
    pub t: i64,
    /// Consumed hours by then.
    pub consumed: Quantiles,
}

/// An allocation's forecast at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The instant it was made, epoch seconds.
    pub at: i64,
    /// Days of history it was made from.
    pub history_days: u32,
    /// Share of the simulated regimes that follow the history (the others follow the plan).
    pub history_weight: f64,
    /// Exhaustion instant, epoch seconds (infinite: not within the period).
    pub exhaustion: Quantiles,
    /// Hours consumed in the period by its end.
    pub end_consumed: Quantiles,
    /// The band from now to the period end (the last point is the end).
    pub fan: Vec<FanPoint>,
}

impl Forecast {
    /// The exhaustion instant at probability `p`, or none when not within the period.
    pub fn exhaustion_at(&self, p: f64) -> Option<i64> {
        let t = self.exhaustion.at(p);
        t.is_finite().then_some(t as i64)
    }

    /// P(the grant runs out at or before `t`).
    pub fn prob_exhausted_by(&self, t: i64) -> f64 {
        self.exhaustion.cdf(t as f64)
    }

    /// The consumed hours' quantiles at `t` (between now and the period end), interpolated
    /// between the band's instants; `consumed_now` before the first.
    pub fn consumed_at(&self, t: i64, consumed_now: f64) -> Quantiles {
        let mut prev = (self.at, Quantiles([consumed_now; LEVELS]));
        for p in &self.fan {
            if t <= p.t {
                let w = if p.t > prev.0 { (t - prev.0) as f64 / (p.t - prev.0) as f64 } else { 1.0 };
                let mut q = [0.0; LEVELS];
                for (l, v) in q.iter_mut().enumerate() {
                    *v = prev.1 .0[l] + w.clamp(0.0, 1.0) * (p.consumed.0[l] - prev.1 .0[l]);
                }
                return Quantiles(q);
            }
            prev = (p.t, p.consumed);
        }
        prev.1
    }
}

/// A standard normal draw (Box–Muller): a regime's level is exp(σ·z), of median 1.
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u1, u2) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Whether the band `[p10, p90]` holds `actual` hours: the one test of a band against what
/// happened (the calibration, the quality report), with a relative tolerance of 1e-9 (sums of
/// the same hours in another order differ in their last bits).
pub fn band_holds(p10: f64, p90: f64, actual: f64) -> bool {
    let tol = 1e-9 * actual.abs().max(1.0);
    p10 <= actual + tol && actual <= p90 + tol
}

/// A deterministic seed from the allocation's subject, the instant and the settings' seed.
pub fn seed_of(subject: &str, at: i64, seed: u64) -> u64 {
    use std::hash::Hasher;
    let mut h = super::fxhash::FxHasher::default();
    h.write(subject.as_bytes());
    h.write_u64(at as u64);
    h.write_u64(seed);
    h.finish()
}

/// Forecast allocation `w` at instant `at` from its charged `buckets` (`consumed`: the hours
/// consumed in the period by `at`, as reconciled), seeded by `seed` ([`seed_of`]). None outside
/// the period, with less than `min_history_days` of history, or when disabled.
pub fn forecast(w: &AllocationWindow, buckets: &[Bucket], consumed: f64, at: i64, s: &ForecastSettings, seed: u64) -> Option<Forecast> {
    if !s.enabled || at < w.start_s || at >= w.end_s || s.paths == 0 {
        return None;
    }
    let known = ((at - w.start_s) / DAY_S) as u32;
    let h = known.min(s.history_days) as usize;
    if h == 0 || h < s.min_history_days as usize {
        return None;
    }
    // Daily hours of the history, oldest first: day j covers [at − (h − j) days, at − (h − j − 1) days).
    let from = at - h as i64 * DAY_S;
    let recent: Vec<Bucket> = buckets.iter().filter(|b| b.end_s > from && b.start_s < at).copied().collect();
    let hist: Vec<f64> = (0..h).map(|j| sum_overlap(&recent, from + j as i64 * DAY_S, from + (j as i64 + 1) * DAY_S)).collect();
    let mut prefix = vec![0.0; h + 1];
    for j in 0..h {
        prefix[j + 1] = prefix[j] + hist[j];
    }
    // The share of futures (by regime) that follow the history rather than the plan.
    let weight = known as f64 / (known as f64 + s.plan_days as f64);
    let block = (s.block_days.max(1) as usize).min(h);
    let starts = h - block + 1;
    let regime = s.regime_blocks.max(1) as usize;

    // The future, in blocks of `block` days from `at`; the last day may be partial.
    let horizon = w.end_s - at;
    let days = ((horizon + DAY_S - 1) / DAY_S) as usize;
    let last_frac = (horizon - (days as i64 - 1) * DAY_S) as f64 / DAY_S as f64;
    let period = (w.end_s - w.start_s).max(1) as f64;
    let expected_by = |t: i64| w.granted_hours * w.profile.at((t - w.start_s) as f64 / period);
    // The plan: the profile's hours of each future day (the last one whole: scaled below like
    // the history's).
    let plan: Vec<f64> = (0..days)
        .map(|k| {
            let t0 = at + k as i64 * DAY_S;
            (expected_by((t0 + DAY_S).min(w.end_s)) - expected_by(t0)) / if k + 1 == days { last_frac } else { 1.0 }
        })
        .collect();
    let mut plan_prefix = vec![0.0; days + 1];
    for k in 0..days {
        plan_prefix[k + 1] = plan_prefix[k] + plan[k];
    }
    let nblocks = days.div_ceil(block);
    let fan_every = nblocks.div_ceil(FAN_POINTS).max(1);
    let fan_blocks: Vec<usize> = (0..nblocks).filter(|b| (b + 1) % fan_every == 0 || b + 1 == nblocks).collect();
    let paths = s.paths as usize;
    let mut fan_values: Vec<Vec<f64>> = vec![Vec::with_capacity(paths); fan_blocks.len()];
    let mut exhaustion = Vec::with_capacity(paths);
    let mut end = Vec::with_capacity(paths);
    let granted = w.granted_hours;
    let mut rng = fastrand::Rng::with_seed(seed);
    // Hours of future day `k` (whole) under a regime: history block `Some(b)`, or the plan.
    let day_hours = |(src, m): (Option<usize>, f64), k: usize| {
        m * match src {
            Some(b) => hist[b + k % block],
            None => plan[k],
        }
    };
    let sigma = s.level_sigma;
    let already = if granted > 0.0 { consumed >= granted } else { consumed > 0.0 };
    // Hours of block `j` (whole days but the period's last, partial one) under a regime's
    // source, before its level: the history repeats its drawn block, the plan goes on.
    let block_hours = |src: Option<usize>, j: usize| {
        let (k0, k1) = (j * block, ((j + 1) * block).min(days));
        let whole = match src {
            Some(b) => prefix[b + (k1 - k0)] - prefix[b],
            None => plan_prefix[k1] - plan_prefix[k0],
        };
        if k1 == days {
            whole - (1.0 - last_frac) * day_hours((src, 1.0), k1 - 1)
        } else {
            whole
        }
    };
    let mut fan_i;
    // Paths go in antithetic pairs: the second of a pair draws the same blocks at the opposite
    // levels (z and −z), which halves the noise of the band's middle for the same cost.
    let mut draws: Vec<(Option<usize>, f64)> = Vec::new();
    for path in 0..paths {
        let mirror = path % 2 == 1;
        if !mirror {
            draws.clear();
        }
        let mut cum = consumed;
        let mut exhausted = already.then_some(at as f64);
        fan_i = 0;
        let mut r0 = 0;
        let mut regime_i = 0;
        while r0 < nblocks {
            let (block_of, z) = if mirror {
                let (b, z) = draws[regime_i];
                (b, -z)
            } else {
                let d = ((rng.f64() < weight).then(|| rng.usize(0..starts)), if sigma > 0.0 { normal(&mut rng) } else { 0.0 });
                draws.push(d);
                d
            };
            regime_i += 1;
            let src = (block_of, (sigma * z).exp());
            let r1 = (r0 + regime).min(nblocks);
            // Hours of the regime's blocks r0..=j: a drawn block repeats, so its whole blocks
            // all weigh the same (closed form); the plan is read from its prefix sums.
            let repeated = src.0.map(|b| prefix[b + block] - prefix[b]);
            let through = |j: usize| {
                src.1
                    * match repeated {
                        Some(s) if j + 1 < nblocks => (j + 1 - r0) as f64 * s,
                        Some(s) => (j - r0) as f64 * s + block_hours(src.0, j),
                        None => plan_prefix[((j + 1) * block).min(days)] - plan_prefix[r0 * block] - if j + 1 == nblocks { (1.0 - last_frac) * plan[days - 1] } else { 0.0 },
                    }
            };
            let base = cum;
            if exhausted.is_none() && granted > 0.0 && base + through(r1 - 1) >= granted {
                // The first block that crosses the grant, then the day within it.
                let j = (r0..r1).find(|&j| base + through(j) >= granted).unwrap_or(r1 - 1);
                let mut c = if j > r0 { base + through(j - 1) } else { base };
                for k in j * block..((j + 1) * block).min(days) {
                    let day_len = if k + 1 == days { last_frac } else { 1.0 };
                    let v = day_hours(src, k) * day_len;
                    if c + v >= granted && v > 0.0 {
                        let t = at as f64 + (k as f64 + day_len * (granted - c) / v) * DAY_S as f64;
                        exhausted = Some(t.min(w.end_s as f64));
                        break;
                    }
                    c += v;
                }
            }
            while fan_i < fan_blocks.len() && fan_blocks[fan_i] < r1 {
                fan_values[fan_i].push(base + through(fan_blocks[fan_i]));
                fan_i += 1;
            }
            cum = base + through(r1 - 1);
            r0 = r1;
        }
        exhaustion.push(exhausted.unwrap_or(f64::INFINITY));
        end.push(cum);
    }
    let fan = fan_blocks
        .iter()
        .zip(fan_values.iter_mut())
        .map(|(&b, v)| FanPoint { t: (at + ((b + 1) * block) as i64 * DAY_S).min(w.end_s), consumed: Quantiles::of(v) })
        .collect();
    Some(Forecast {
        at,
        history_days: h as u32,
        history_weight: weight,
        exhaustion: Quantiles::of(&mut exhaustion),
        end_consumed: Quantiles::of(&mut end),
        fan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reconcile::Profile;

    const DAY: i64 = 86400;

    fn days(hours: &[f64]) -> Vec<Bucket> {
        hours.iter().enumerate().map(|(d, &h)| Bucket { start_s: d as i64 * DAY, end_s: (d as i64 + 1) * DAY, hours: h }).collect()
    }

    /// The method without its level spread and plan: what is drawn is exactly the history.
    fn exact() -> ForecastSettings {
        ForecastSettings { level_sigma: 0.0, plan_days: 0, ..Default::default() }
    }

    /// A 100-day period from 0 granted `granted`, forecast at day `at_day` from `hours` per day.
    fn run_with(hours: &[f64], at_day: i64, granted: f64, s: &ForecastSettings) -> Option<Forecast> {
        let lin = Profile::linear();
        let w = AllocationWindow { start_s: 0, end_s: 100 * DAY, granted_hours: granted, profile: &lin };
        let b = days(hours);
        let consumed = sum_overlap(&b, 0, at_day * DAY);
        forecast(&w, &b, consumed, at_day * DAY, s, seed_of("c/p/r/2026-01-01", at_day * DAY, 0))
    }

    fn run(hours: &[f64], at_day: i64, granted: f64) -> Option<Forecast> {
        run_with(hours, at_day, granted, &exact())
    }

    #[test]
    fn steady_usage_gives_a_tight_band_on_the_straight_line() {
        // 10 h/day every day for 50 days: the future is 10 h/day whatever is drawn.
        let f = run(&[10.0; 50], 50, 1000.0).unwrap();
        for p in [0.1, 0.5, 0.9] {
            assert!((f.end_consumed.at(p) - 1000.0).abs() < 1e-6, "{:?}", f.end_consumed);
        }
        // Exactly used up at the end: exhaustion at the end instant, on every path.
        assert_eq!(f.exhaustion_at(0.5), Some(100 * DAY));
        // 10 h/day then 20 h/day: the 250 h left at day 50 run out 12.5 days later at 20 h/day.
        let f = run(&[10.0; 25].iter().chain([20.0; 25].iter()).copied().collect::<Vec<_>>(), 50, 1000.0).unwrap();
        assert_eq!(f.history_days, 28);
        // The history (days 22–49) holds three days of 10 h: a path that draws them runs out
        // later, at most on day 66 (a week of 3 × 10 h + 4 × 20 h: 250 h in 15.9 days).
        let (p10, p90) = (f.exhaustion_at(0.1).unwrap(), f.exhaustion_at(0.9).unwrap());
        assert_eq!(p10, 62 * DAY + DAY / 2, "{:?}", f.exhaustion);
        assert!(p90 > p10 && p90 <= 66 * DAY, "{:?}", f.exhaustion);
        assert!(f.prob_exhausted_by(100 * DAY - 1) > 0.99);
    }

    #[test]
    fn bursty_usage_gives_a_wide_band() {
        // One week in four at 100 h/day, the rest idle: 25 h/day on average; regimes of one week.
        let h: Vec<f64> = (0..56).map(|d| if (d / 7) % 4 == 0 { 100.0 } else { 0.0 }).collect();
        let f = run_with(&h, 56, 3000.0, &ForecastSettings { regime_blocks: 1, ..exact() }).unwrap();
        let (p10, p50, p90) = (f.end_consumed.at(0.1), f.end_consumed.at(0.5), f.end_consumed.at(0.9));
        assert!(p10 < p50 && p50 < p90, "{:?}", f.end_consumed);
        // Some futures are all idle weeks, some burst for a month at least.
        assert!(p90 - p10 > 1000.0, "{p10} {p90}");
        // Quantiles never decrease along the band, and the band ends at the end quantiles.
        for w in f.fan.windows(2) {
            for l in 0..LEVELS {
                assert!(w[1].consumed.0[l] >= w[0].consumed.0[l]);
            }
        }
        assert_eq!(f.fan.last().unwrap().t, 100 * DAY);
        assert_eq!(f.fan.last().unwrap().consumed, f.end_consumed);
        assert!(f.fan.len() <= FAN_POINTS);
    }

    #[test]
    fn deterministic_for_the_same_inputs_and_seeded() {
        let h: Vec<f64> = (0..40).map(|d| ((d * 37) % 11) as f64).collect();
        assert_eq!(run(&h, 40, 800.0), run(&h, 40, 800.0));
        let lin = Profile::linear();
        let w = AllocationWindow { start_s: 0, end_s: 100 * DAY, granted_hours: 800.0, profile: &lin };
        let b = days(&h);
        let s = ForecastSettings::default();
        let a = forecast(&w, &b, 200.0, 40 * DAY, &s, 1).unwrap();
        let c = forecast(&w, &b, 200.0, 40 * DAY, &s, 2).unwrap();
        assert_ne!(a.end_consumed, c.end_consumed, "another seed draws other futures");
    }

    #[test]
    fn no_forecast_without_enough_history_or_outside_the_period() {
        assert!(run(&[10.0; 6], 6, 1000.0).is_none(), "six days are too few");
        assert!(run(&[10.0; 7], 7, 1000.0).is_some());
        assert!(run(&[10.0; 100], 100, 1000.0).is_none(), "the period is over");
        let off = ForecastSettings { enabled: false, ..Default::default() };
        let lin = Profile::linear();
        let w = AllocationWindow { start_s: 0, end_s: 100 * DAY, granted_hours: 1.0, profile: &lin };
        assert!(forecast(&w, &[], 0.0, 50 * DAY, &off, 0).is_none());
    }

    #[test]
    fn early_in_the_period_the_plan_weighs_most() {
        // 14 idle days, the plan weighing 28 days: a third of the paths stay idle, two thirds
        // follow the plan (10 h/day on 1000 h over 100 days, 860 h for the 86 days left).
        let f = run_with(&[0.0; 14], 14, 1000.0, &ForecastSettings { plan_days: 28, ..exact() }).unwrap();
        assert!((f.history_weight - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(f.end_consumed.at(0.1), 0.0, "{:?}", f.end_consumed);
        assert!((f.end_consumed.at(0.9) - 860.0).abs() < 1e-6, "{:?}", f.end_consumed);
        // No path runs out.
        assert_eq!(f.exhaustion_at(0.9), None);
        assert_eq!(f.prob_exhausted_by(100 * DAY), 0.0);
    }

    #[test]
    fn the_level_spreads_steady_usage_around_its_rate() {
        // Steady 10 h/day: with the default level spread (σ = 1) the median stays on the
        // straight line (the level's median is 1) and the band opens to both sides.
        let f = run_with(&[10.0; 50], 50, 2000.0, &ForecastSettings { plan_days: 0, ..Default::default() }).unwrap();
        let (p10, p50, p90) = (f.end_consumed.at(0.1), f.end_consumed.at(0.5), f.end_consumed.at(0.9));
        assert!((p50 - 1000.0).abs() < 100.0, "{:?}", f.end_consumed);
        // exp(±1.28) of the 500 h to come: about 140 h and 1800 h.
        assert!(p10 < 700.0 && p90 > 1800.0, "{p10} {p90}");
        // Running out needs 30 h/day, a level of 3 or more: P(z ≥ ln 3) ≈ 14 %.
        let p = f.prob_exhausted_by(100 * DAY);
        assert!(p > 0.05 && p < 0.3, "{p}");
    }

    #[test]
    fn already_exhausted_and_partial_last_day() {
        let f = run(&[30.0; 40], 40, 1000.0).unwrap();
        assert_eq!(f.exhaustion_at(0.1), Some(40 * DAY), "ran out before the instant: exhausted now");
        // Half a day before the end at 10 h/day: 5 h more.
        let lin = Profile::linear();
        let w = AllocationWindow { start_s: 0, end_s: 100 * DAY, granted_hours: 2000.0, profile: &lin };
        let b = days(&[10.0; 100]);
        let at = 99 * DAY + DAY / 2;
        let f = forecast(&w, &b, 995.0, at, &exact(), 0).unwrap();
        assert!((f.end_consumed.at(0.5) - 1000.0).abs() < 1e-6, "{:?}", f.end_consumed);
    }

    #[test]
    fn quantiles_cdf_table() {
        let mut v: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        let q = Quantiles::of(&mut v);
        // (x, P(X ≤ x))
        for (x, p) in [(-1.0, 0.0), (0.0, 0.0), (10.0, 0.1), (12.5, 0.125), (90.0, 0.9), (100.0, 1.0), (1e9, 1.0)] {
            assert!((q.cdf(x) - p).abs() < 1e-9, "cdf({x}) = {} not {p}", q.cdf(x));
        }
        assert_eq!(q.at(0.1), 10.0);
        assert_eq!(q.at(0.9), 90.0);
        let mut never = vec![5.0, f64::INFINITY, f64::INFINITY, f64::INFINITY];
        let q = Quantiles::of(&mut never);
        assert!(q.cdf(5.0) > 0.0 && q.cdf(1e12) < 0.5, "one path in four exhausts: {:?}", q);
    }

    #[test]
    fn consumed_at_interpolates_the_band() {
        let f = run(&[10.0; 50], 50, 2000.0).unwrap();
        let mid = f.consumed_at(75 * DAY, 500.0);
        assert!((mid.at(0.5) - 750.0).abs() < 1e-6, "{:?}", mid);
        assert_eq!(f.consumed_at(50 * DAY, 500.0).at(0.5), 500.0);
        assert_eq!(f.consumed_at(200 * DAY, 500.0).at(0.5), 1000.0);
    }
}
