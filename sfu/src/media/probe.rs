//! Finding room above a receiver's own estimate by sending more (sans-IO).
//!
//! A browser that estimates what reaches it and says so in REMB (Chromium's receive-side
//! AIMD) raises its estimate by about 8 % a second, and never above 1.5× what it receives
//! (+10 kbit/s). An allocation kept inside that estimate steps up only by what fits in the
//! margin, and a simulcast step (q → h, h → f) is 2–3× the layer below: without help a
//! subscriber that once went down would stay down. So while videos are held below their
//! wish, now and then the budget is raised by one step (a probe): the layer goes up, the
//! browser receives more and its estimate climbs after it. A probe starts only when what is
//! sent fits the estimate (nothing is on its way down) and has for a while, and ends
//! - **confirmed** once the estimate covers it, and what is sent, by itself (the next may
//!   follow soon);
//! - **failed** when the estimate falls (the browser saw its queue grow: the path is full),
//!   the subscriber loses heavily, the estimate has not risen within [`RISE_WITHIN`] (the
//!   browser gets no more than before), or it is not confirmed within [`PROBE_LIMIT`]; the
//!   allocation then goes down at once and the next probe waits twice as long as the last
//!   (up to [`MAX_WAIT`]).
//!
//! str0m's send-side estimator probes with padding instead; this is for the REMB mode, where
//! str0m's estimator (and its pacer) stays off.

use std::time::{Duration, Instant};

/// How long what is sent must have fitted the estimate before the first probe, and after a
/// confirmed one.
pub const FIRST_WAIT: Duration = Duration::from_secs(2);
/// The longest wait between probes, after failures in a row.
pub const MAX_WAIT: Duration = Duration::from_secs(32);
/// The estimate must have risen by [`RISE_PERCENT`] this soon after a probe starts: the
/// keyframe the new layer starts on, then a few seconds of the browser's estimator.
pub const RISE_WITHIN: Duration = Duration::from_secs(6);
const RISE_PERCENT: u64 = 5;
/// How long a probe may go unconfirmed.
pub const PROBE_LIMIT: Duration = Duration::from_secs(12);
/// An estimate this far (per cent) below the probe's best so far means the path is full.
const FALL_PERCENT: u64 = 5;
/// What a probe holds above the step it probes for, per cent: layer bitrates move by a
/// tenth from one tick to the next (and a keyframe swells its layer's for a second), so a
/// budget of exactly the step would take it back on the next tick.
const MARGIN_PERCENT: u64 = 15;

/// What one subscriber's allocation looks like on a tick, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The browser's estimate.
    pub estimate: u64,
    /// What the estimate leaves for video.
    pub budget: u64,
    /// What the video layers in use take now.
    pub sending: u64,
    /// What the allocation made with `budget` takes.
    pub used: u64,
    /// The least one more layer would add to it (`None`: every video has what it wants,
    /// nothing to probe for).
    pub step: Option<u64>,
    /// The subscriber reports heavy loss.
    pub congested: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    /// What it probes for: the allocation with one more step when it started. The estimate
    /// leaving this much confirms it.
    floor: u64,
    started: Instant,
    /// The estimate when it started, and the highest since.
    start: u64,
    peak: u64,
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    /// The estimate fell or did not rise, heavy loss, or not confirmed in time.
    Failed,
}

/// What to allocate with on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub budget: u64,
    /// A probe starts now: its step should be taken at once (the hold before a step up is
    /// for an estimate that rose by itself; a probe is the step that makes it rise).
    pub started: bool,
    /// How a probe that ended on this tick ended.
    pub ended: Option<Outcome>,
}

/// One subscriber's probing state.
#[derive(Debug, Clone)]
pub struct MediaProbe {
    probe: Option<Probe>,
    next_at: Option<Instant>,
    wait: Duration,
}

impl Default for MediaProbe {
    fn default() -> Self {
        MediaProbe {
            probe: None,
            next_at: None,
            wait: FIRST_WAIT,
        }
    }
}

impl MediaProbe {
    /// The budget to allocate with now: the tick's, or what a probe under way or starting
    /// now holds (one step above the allocation the tick's budget makes, and at least what
    /// is sent, with a margin).
    pub fn budget(&mut self, now: Instant, tick: Tick) -> Decision {
        let hold =
            |target: u64, tick: &Tick| target.max(tick.sending) * (100 + MARGIN_PERCENT) / 100;
        let keep = |budget| Decision {
            budget,
            started: false,
            ended: None,
        };
        if let Some(probe) = &mut self.probe {
            probe.peak = probe.peak.max(tick.estimate);
            let age = now.saturating_duration_since(probe.started);
            let fell = tick.estimate < probe.peak * (100 - FALL_PERCENT) / 100;
            let flat = age >= RISE_WITHIN && probe.peak < probe.start * (100 + RISE_PERCENT) / 100;
            // Confirmed by an estimate that covers what is sent now (the step's layer may
            // cost more than when the probe started).
            let outcome = if tick.budget >= probe.floor.max(tick.sending) {
                Some(Outcome::Confirmed)
            } else if fell || flat || tick.congested || age >= PROBE_LIMIT {
                Some(Outcome::Failed)
            } else {
                None
            };
            let Some(outcome) = outcome else {
                let target = probe.floor.max(tick.used + tick.step.unwrap_or(0));
                return keep(tick.budget.max(hold(target, &tick)));
            };
            self.probe = None;
            self.wait = match outcome {
                Outcome::Confirmed => FIRST_WAIT,
                Outcome::Failed => (self.wait * 2).min(MAX_WAIT),
            };
            self.next_at = Some(now + self.wait);
            return Decision {
                ended: Some(outcome),
                ..keep(tick.budget)
            };
        }
        let Some(step) = tick.step else {
            return keep(tick.budget);
        };
        // Something on its way down, or losing: the wait starts again once it has settled.
        if tick.sending > tick.budget || tick.congested {
            self.next_at = Some(now + self.wait);
            return keep(tick.budget);
        }
        if *self.next_at.get_or_insert(now + self.wait) > now {
            return keep(tick.budget);
        }
        self.probe = Some(Probe {
            floor: tick.used + step,
            started: now,
            start: tick.estimate,
            peak: tick.estimate,
        });
        Decision {
            started: true,
            ..keep(tick.budget.max(hold(tick.used + step, &tick)))
        }
    }

    /// Whether a probe is under way.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1000;
    /// 300 + a 200 step, and the margin.
    const PROBED: u64 = 575 * K;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A subscriber sending `used` (its allocation), a step of `step` short of its wish.
    fn tick(estimate: u64, used: u64, step: Option<u64>, congested: bool) -> Tick {
        Tick {
            estimate,
            budget: estimate * 9 / 10,
            sending: used,
            used,
            step,
            congested,
        }
    }

    /// Runs the probe at 250 ms ticks from `t0` for `span`, with the estimate and loss given
    /// by `at(elapsed)`; returns the budgets handed out and the outcomes.
    fn run(
        probe: &mut MediaProbe,
        t0: Instant,
        span: Duration,
        used: u64,
        step: Option<u64>,
        at: impl Fn(Duration) -> (u64, bool),
    ) -> Vec<(Duration, u64, Option<Outcome>)> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        while t <= span {
            let (estimate, congested) = at(t);
            let decision = probe.budget(t0 + t, tick(estimate, used, step, congested));
            out.push((t, decision.budget, decision.ended));
            t += Duration::from_millis(250);
        }
        out
    }

    #[test]
    fn nothing_to_probe_for_when_every_video_has_its_wish() {
        let mut probe = MediaProbe::default();
        let t0 = Instant::now();
        let out = run(&mut probe, t0, secs(30.0), 500 * K, None, |_| {
            (600 * K, false)
        });
        assert!(out.iter().all(|(_, b, o)| *b == 540 * K && o.is_none()));
    }

    #[test]
    fn a_probe_raises_the_budget_by_one_step_and_is_confirmed_by_the_estimate() {
        let mut probe = MediaProbe::default();
        let t0 = Instant::now();
        // Held at 300 kbit/s below a 200 kbit/s step; the estimate climbs 8 % a second
        // once the probe has started (at 2 s).
        let out = run(&mut probe, t0, secs(10.0), 300 * K, Some(200 * K), |t| {
            let climbing = t.saturating_sub(secs(2.0)).as_secs_f64();
            ((350.0 * 1.08f64.powf(climbing)) as u64 * K, false)
        });
        let start = out.iter().position(|(_, b, _)| *b == PROBED).unwrap();
        assert_eq!(out[start].0, FIRST_WAIT, "the first probe after FIRST_WAIT");
        assert!(out[..start].iter().all(|(_, b, _)| *b < PROBED));
        let (confirmed_at, _, _) = out
            .iter()
            .find(|(_, _, o)| *o == Some(Outcome::Confirmed))
            .expect("confirmed");
        // 0.9 × 350 × 1.08^t ≥ 500 at t ≈ 6.0 s.
        assert!(
            *confirmed_at > secs(7.9) && *confirmed_at < secs(8.6),
            "{confirmed_at:?}"
        );
        assert!(out
            .iter()
            .filter(|(t, _, _)| *t >= FIRST_WAIT && t < confirmed_at)
            .all(|(_, b, _)| *b == PROBED));
    }

    #[test]
    fn confirmed_only_once_the_estimate_covers_what_is_sent() {
        let mut probe = MediaProbe::default();
        let t0 = Instant::now();
        let start = tick(340 * K, 300 * K, Some(200 * K), false);
        assert!(!probe.budget(t0, start).started);
        assert!(probe.budget(t0 + FIRST_WAIT, start).started);
        // The step taken: its layer costs 540, not 500; the budget (0.9 × estimate) reaches
        // 500 first.
        let at = |estimate: u64| Tick {
            sending: 540 * K,
            ..tick(estimate, 300 * K, Some(200 * K), false)
        };
        let held = probe.budget(t0 + secs(3.0), at(560 * K));
        assert_eq!(
            (held.budget, held.ended),
            (621 * K, None),
            "540 and the margin"
        );
        let done = probe.budget(t0 + secs(4.0), at(600 * K));
        assert_eq!(
            (done.budget, done.ended),
            (540 * K, Some(Outcome::Confirmed))
        );
    }

    #[test]
    fn a_falling_estimate_ends_the_probe_and_the_next_waits_twice_as_long() {
        let mut probe = MediaProbe::default();
        let t0 = Instant::now();
        // The path is full: 3 s into each probe the browser's estimate drops.
        let mut started = None::<Duration>;
        let mut starts = Vec::new();
        let mut t = Duration::ZERO;
        while t <= secs(60.0) {
            let estimate = match started {
                Some(s) if t >= s + secs(3.0) => 300 * K,
                _ => 340 * K,
            };
            let decision = probe.budget(t0 + t, tick(estimate, 300 * K, Some(200 * K), false));
            let (b, outcome) = (decision.budget, decision.ended);
            if b == PROBED && started.is_none() {
                started = Some(t);
                starts.push(t);
            }
            if outcome.is_some() {
                assert_eq!(outcome, Some(Outcome::Failed));
                assert_eq!(t, started.unwrap() + secs(3.0), "ends on the fall");
                started = None;
            }
            t += Duration::from_millis(250);
        }
        let waits: Vec<f64> = starts
            .windows(2)
            .map(|w| (w[1] - w[0] - secs(3.0)).as_secs_f64())
            .collect();
        assert_eq!(waits, vec![4.0, 8.0, 16.0]);
    }

    #[test]
    fn heavy_loss_a_flat_estimate_or_no_confirmation_in_time_fails_the_probe() {
        let t0 = Instant::now();
        let mut probe = MediaProbe::default();
        let out = run(&mut probe, t0, secs(5.0), 300 * K, Some(200 * K), |t| {
            (340 * K, t >= secs(3.0))
        });
        let failed = out.iter().find(|(_, _, o)| o.is_some()).unwrap();
        assert_eq!((failed.0, failed.2), (secs(3.0), Some(Outcome::Failed)));
        assert!(!probe.probing());
        // Heavy loss: no new probe starts while it lasts.
        let out = run(
            &mut probe,
            t0 + secs(5.25),
            secs(20.0),
            300 * K,
            Some(200 * K),
            |_| (340 * K, true),
        );
        assert!(out.iter().all(|(_, b, o)| *b == 306 * K && o.is_none()));

        // The browser's estimate does not move: it gets no more than before.
        let mut probe = MediaProbe::default();
        let out = run(&mut probe, t0, secs(20.0), 300 * K, Some(200 * K), |_| {
            (340 * K, false)
        });
        let failed = out.iter().find(|(_, _, o)| o.is_some()).unwrap();
        assert_eq!(
            (failed.0, failed.2),
            (FIRST_WAIT + RISE_WITHIN, Some(Outcome::Failed))
        );

        // It rises, but never enough.
        let mut probe = MediaProbe::default();
        let out = run(&mut probe, t0, secs(20.0), 300 * K, Some(200 * K), |t| {
            (if t > secs(3.0) { 400 * K } else { 340 * K }, false)
        });
        let failed = out.iter().find(|(_, _, o)| o.is_some()).unwrap();
        assert_eq!(
            (failed.0, failed.2),
            (FIRST_WAIT + PROBE_LIMIT, Some(Outcome::Failed))
        );
    }

    #[test]
    fn no_probe_while_more_is_sent_than_the_estimate_allows_nor_soon_after() {
        let t0 = Instant::now();
        let mut probe = MediaProbe::default();
        // 5 s of sending 400 over a budget of 306 (a step down on its hold), then 250.
        let mut first = None;
        for i in 0..80 {
            let t = Duration::from_millis(250 * i);
            let sending = if t < secs(5.0) { 400 * K } else { 250 * K };
            let tick = Tick {
                sending,
                ..tick(340 * K, 250 * K, Some(120 * K), false)
            };
            if probe.budget(t0 + t, tick).budget > 306 * K && first.is_none() {
                first = Some(t);
            }
        }
        assert_eq!(
            first,
            Some(secs(5.0) + FIRST_WAIT - Duration::from_millis(250))
        );
    }
}
