//! How a subscriber's bandwidth is shared between the videos it receives (sans-IO).
//!
//! [`allocate`] is a pure function from a budget (the send-side estimate toward this
//! subscriber, less its audio) and the video subscriptions (priority, what each layer costs,
//! the highest layer wanted) to one layer per subscription. It follows LiveKit's stream
//! allocator: the lowest layer for everyone first, in order of priority then of the layer
//! wanted (a pinned tile before a thumbnail), then one step up at a time, round after round,
//! in the same order, while the budget allows. A video whose lowest layer does not fit is
//! paused (audio is never allocated: it is taken off the budget first).
//!
//! [`Hysteresis`] keeps layers from flapping: a step down is taken at once (the link is
//! congested now), a step up only once the budget has allowed it for [`UP_HOLD`], and a pause
//! only once it has been wanted for [`PAUSE_HOLD`] (the lowest layer meanwhile), unless the
//! subscriber's feedback says even that is not getting through ([`Hysteresis::settle_congested`]).

use std::time::{Duration, Instant};

use crate::media::layers::MAX_LAYERS;

/// How long an allocation must have allowed a step up before it is taken.
pub const UP_HOLD: Duration = Duration::from_secs(3);
/// How long an allocation must have wanted a playing video paused before it is.
pub const PAUSE_HOLD: Duration = Duration::from_secs(3);

/// A video subscription as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// Higher goes first (the active speaker's video before the others).
    pub priority: u8,
    /// Bits per second of each layer the publisher sends now, lowest first (`None`: not
    /// sent).
    pub rates: [Option<u64>; MAX_LAYERS],
    /// The highest layer wanted (the subscriber's wish, within what is sent); `None`:
    /// nothing (a hidden tile).
    pub max: Option<u8>,
}

impl Track {
    fn rate(&self, layer: u8) -> u64 {
        self.rates[usize::from(layer)].unwrap_or(0)
    }

    /// The lowest layer it may get (`None`: nothing is wanted or sent).
    pub fn lowest(&self) -> Option<u8> {
        self.choices().next()
    }

    /// The layers it may get, lowest first.
    fn choices(&self) -> impl Iterator<Item = u8> + '_ {
        let max = self.max;
        (0..MAX_LAYERS as u8).filter(move |l| {
            max.is_some_and(|max| *l <= max) && self.rates[usize::from(*l)].is_some()
        })
    }

    /// What it costs at `layer` (`None`: paused, nothing).
    pub fn cost(&self, layer: Option<u8>) -> u64 {
        layer.map_or(0, |l| self.rate(l))
    }

    /// What it costs when nothing limits it.
    pub fn optimal(&self) -> u64 {
        self.choices().last().map_or(0, |l| self.rate(l))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One per track, in the order given; `None`: paused (or nothing wanted).
    pub layers: Vec<Option<u8>>,
    /// Bits per second the chosen layers take.
    pub used: u64,
    /// Bits per second every track at its best would take.
    pub optimal: u64,
}

impl Allocation {
    /// The least one more layer would add: a paused video's lowest, or one step up for a
    /// video below its best (`None`: every video has the most it may get).
    pub fn next_step(&self, tracks: &[Track]) -> Option<u64> {
        self.layers
            .iter()
            .zip(tracks)
            .filter_map(|(layer, track)| match layer {
                None => track.lowest().map(|l| track.rate(l)),
                Some(current) => track
                    .choices()
                    .find(|l| l > current)
                    .map(|next| track.rate(next).saturating_sub(track.rate(*current))),
            })
            .min()
    }
}

/// Shares `budget` (bits per second) between `tracks`.
pub fn allocate(budget: u64, tracks: &[Track]) -> Allocation {
    let mut order: Vec<usize> = (0..tracks.len()).collect();
    // Priority first, then the larger wish (a pinned or large tile before a thumbnail, as
    // LiveKit orders by max spatial layer); stable, so ties keep the caller's order.
    order.sort_by_key(|i| std::cmp::Reverse((tracks[*i].priority, tracks[*i].max)));
    let mut layers = vec![None; tracks.len()];
    let mut used = 0u64;
    for &i in &order {
        let Some(lowest) = tracks[i].choices().next() else {
            continue;
        };
        let cost = tracks[i].rate(lowest);
        if used + cost <= budget {
            layers[i] = Some(lowest);
            used += cost;
        }
    }
    loop {
        let mut stepped = false;
        for &i in &order {
            let track = &tracks[i];
            let Some(current) = layers[i] else {
                continue;
            };
            let Some(next) = track.choices().find(|l| *l > current) else {
                continue;
            };
            let more = track.rate(next).saturating_sub(track.rate(current));
            if used + more <= budget {
                layers[i] = Some(next);
                used += more;
                stepped = true;
            }
        }
        if !stepped {
            break;
        }
    }
    Allocation {
        layers,
        used,
        optimal: tracks.iter().map(Track::optimal).sum(),
    }
}

/// Down at once, up only after the allocation has wanted it for [`UP_HOLD`]; a video that
/// plays is paused only after the allocation has wanted that for [`PAUSE_HOLD`] (meanwhile it
/// gets its lowest layer): a pause costs the viewer the picture, and an estimate dips for a
/// second or two on a busy path that carries the lowest layers well.
#[derive(Debug, Clone, Default)]
pub struct Hysteresis {
    up_wanted_since: Option<Instant>,
    pause_wanted_since: Option<Instant>,
}

impl Hysteresis {
    /// The layers to use now, given those in use (`current`, one per track; `Some(None)` =
    /// paused), the new allocation's (`planned`) and each track's lowest layer (`lowest`). A
    /// track new to the allocation (`None` in `current`) takes its plan at once.
    pub fn settle(
        &mut self,
        now: Instant,
        current: &[Option<Option<u8>>],
        planned: &[Option<u8>],
        lowest: &[Option<u8>],
    ) -> Vec<Option<u8>> {
        self.settle_congested(now, current, planned, lowest, false)
    }

    /// The next [`settle`](Self::settle) takes the steps up it is given at once (a probe's:
    /// the step is what makes the estimate rise).
    pub fn step_up_now(&mut self, now: Instant) {
        self.up_wanted_since = Some(now.checked_sub(UP_HOLD).unwrap_or(now));
    }

    /// [`settle`](Self::settle), where `congested` (the subscriber lost heavily: the lowest
    /// layers do not get through either) pauses at once what the allocation wants paused.
    pub fn settle_congested(
        &mut self,
        now: Instant,
        current: &[Option<Option<u8>>],
        planned: &[Option<u8>],
        lowest: &[Option<u8>],
        congested: bool,
    ) -> Vec<Option<u8>> {
        let is_up = |current: Option<u8>, planned: Option<u8>| match (current, planned) {
            (None, Some(_)) => true,
            (Some(c), Some(p)) => p > c,
            _ => false,
        };
        let is_pause =
            |current: Option<u8>, planned: Option<u8>| current.is_some() && planned.is_none();
        let held = |since: &mut Option<Instant>, wanted: bool, hold: Duration| {
            if !wanted {
                *since = None;
                return false;
            }
            let start = *since.get_or_insert(now);
            let due = now.saturating_duration_since(start) >= hold;
            if due {
                *since = None;
            }
            due
        };
        let pairs = || current.iter().zip(planned);
        let wants_up = pairs().any(|(c, p)| c.is_some_and(|c| is_up(c, *p)));
        let wants_pause = pairs().any(|(c, p)| c.is_some_and(|c| is_pause(c, *p)));
        let up_now = held(&mut self.up_wanted_since, wants_up, UP_HOLD);
        let pause_now =
            held(&mut self.pause_wanted_since, wants_pause, PAUSE_HOLD) || congested && wants_pause;
        pairs()
            .zip(lowest)
            .map(|((current, planned), lowest)| match current {
                None => *planned,
                Some(current) if is_up(*current, *planned) && !up_now => *current,
                Some(current) if is_pause(*current, *planned) && !pause_now => lowest.or(*current),
                Some(_) => *planned,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1000;

    /// A simulcast track sending q/h/f at 100/300/900 kbit/s.
    fn camera(priority: u8, max: Option<u8>) -> Track {
        Track {
            priority,
            rates: [Some(100 * K), Some(300 * K), Some(900 * K), None],
            max,
        }
    }

    #[test]
    fn everybody_gets_the_best_when_the_budget_allows() {
        let tracks = [camera(0, Some(2)), camera(0, Some(1))];
        let a = allocate(5_000 * K, &tracks);
        assert_eq!(a.layers, vec![Some(2), Some(1)]);
        assert_eq!(a.used, 1_200 * K);
        assert_eq!(a.optimal, 1_200 * K);
    }

    #[test]
    fn lowest_layers_first_then_steps_up_by_priority() {
        let tracks = [camera(0, Some(2)), camera(1, Some(2)), camera(0, Some(2))];
        // 3 × 100 for everyone, then the speaker (priority 1) steps up first: +200.
        let a = allocate(500 * K, &tracks);
        assert_eq!(a.layers, vec![Some(0), Some(1), Some(0)]);
        // One more step each in the next round: speaker to 300, track 0 to 300 (+200); the
        // last does not fit.
        let a = allocate(800 * K, &tracks);
        assert_eq!(a.layers, vec![Some(1), Some(1), Some(0)]);
        assert_eq!(a.used, 700 * K);
        assert_eq!(a.optimal, 2_700 * K);
    }

    #[test]
    fn the_next_step_is_the_cheapest_one_more_layer() {
        let tracks = [camera(0, Some(2)), camera(1, Some(2)), camera(0, None)];
        // Both at q: +200 to h.
        assert_eq!(allocate(250 * K, &tracks).next_step(&tracks), Some(200 * K));
        // One paused: its q (+100) is cheaper than the other's step up.
        assert_eq!(allocate(150 * K, &tracks).next_step(&tracks), Some(100 * K));
        // Both at f (the hidden tile wants nothing): nothing to step to.
        assert_eq!(allocate(10_000 * K, &tracks).next_step(&tracks), None);
    }

    #[test]
    fn a_video_that_does_not_fit_is_paused_lowest_priority_first() {
        let tracks = [camera(0, Some(2)), camera(1, Some(2))];
        let a = allocate(150 * K, &tracks);
        assert_eq!(a.layers, vec![None, Some(0)]);
        let a = allocate(50 * K, &tracks);
        assert_eq!(a.layers, vec![None, None]);
        assert_eq!(a.used, 0);
    }

    #[test]
    fn at_equal_priority_the_larger_tile_goes_first() {
        // Room for one lowest layer: the pinned tile (wants the top layer) keeps its video,
        // the thumbnail is paused, whatever their order.
        let tracks = [camera(0, Some(0)), camera(0, Some(2))];
        assert_eq!(allocate(150 * K, &tracks).layers, vec![None, Some(0)]);
        // The speaker still comes first.
        let tracks = [camera(1, Some(0)), camera(0, Some(2))];
        assert_eq!(allocate(150 * K, &tracks).layers, vec![Some(0), None]);
    }

    #[test]
    fn a_wish_caps_the_layer_and_a_hidden_tile_costs_nothing() {
        let tracks = [camera(0, Some(0)), camera(0, None), camera(0, Some(2))];
        let a = allocate(5_000 * K, &tracks);
        assert_eq!(a.layers, vec![Some(0), None, Some(2)]);
        assert_eq!(a.optimal, 1_000 * K);
    }

    #[test]
    fn layers_the_publisher_does_not_send_are_skipped() {
        // The publisher stopped its middle layer (dynacast or its own CPU limit).
        let mut track = camera(0, Some(2));
        track.rates[1] = None;
        let a = allocate(950 * K, &[track]);
        assert_eq!(a.layers, vec![Some(2)]);
        let a = allocate(500 * K, &[track]);
        assert_eq!(a.layers, vec![Some(0)]);
        // Nothing sent at all yet: nothing to allocate.
        let silent = Track {
            priority: 0,
            rates: [None; MAX_LAYERS],
            max: Some(2),
        };
        assert_eq!(allocate(5_000 * K, &[silent]).layers, vec![None]);
    }

    #[test]
    fn steps_down_at_once_and_up_only_after_the_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Hysteresis::default();
        let lowest = [Some(0), Some(0)];
        // New tracks take their plan.
        assert_eq!(
            h.settle(t0, &[None, None], &[Some(2), Some(1)], &lowest),
            vec![Some(2), Some(1)]
        );
        // Congestion: down at once.
        assert_eq!(
            h.settle(
                t0,
                &[Some(Some(2)), Some(Some(1))],
                &[Some(0), Some(0)],
                &lowest
            ),
            vec![Some(0), Some(0)]
        );
        // Room again: not before the hold…
        let current = [Some(Some(0)), Some(Some(0))];
        let up = [Some(2), Some(1)];
        assert_eq!(
            h.settle(t0 + ms(100), &current, &up, &lowest),
            vec![Some(0), Some(0)]
        );
        assert_eq!(
            h.settle(t0 + ms(3000), &current, &up, &lowest),
            vec![Some(0), Some(0)]
        );
        // …a dip restarts it…
        let flat = [Some(0), Some(0)];
        assert_eq!(
            h.settle(t0 + ms(3050), &current, &flat, &lowest),
            vec![Some(0), Some(0)]
        );
        assert_eq!(
            h.settle(t0 + ms(3100), &current, &up, &lowest),
            vec![Some(0), Some(0)]
        );
        assert_eq!(
            h.settle(t0 + ms(6000), &current, &up, &lowest),
            vec![Some(0), Some(0)]
        );
        // …and it holds for UP_HOLD: both step up together.
        assert_eq!(
            h.settle(t0 + ms(6100), &current, &up, &lowest),
            vec![Some(2), Some(1)]
        );
        // A probe's step is taken at once.
        let mut h = Hysteresis::default();
        h.step_up_now(t0 + ms(10_000));
        assert_eq!(
            h.settle(t0 + ms(10_000), &current, &up, &lowest),
            vec![Some(2), Some(1)]
        );
    }

    #[test]
    fn a_playing_video_is_paused_only_after_the_pause_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Hysteresis::default();
        let lowest = [Some(0), Some(0)];
        let current = [Some(Some(2)), Some(Some(1))];
        let plan = [Some(0), None];
        // Meanwhile the lowest layer.
        assert_eq!(
            h.settle(t0, &current, &plan, &lowest),
            vec![Some(0), Some(0)]
        );
        let current = [Some(Some(0)), Some(Some(0))];
        assert_eq!(
            h.settle(t0 + ms(2900), &current, &plan, &lowest),
            vec![Some(0), Some(0)]
        );
        // A dip that ends restarts the hold.
        assert_eq!(
            h.settle(t0 + ms(2950), &current, &[Some(0), Some(0)], &lowest),
            vec![Some(0), Some(0)]
        );
        assert_eq!(
            h.settle(t0 + ms(3000), &current, &plan, &lowest),
            vec![Some(0), Some(0)]
        );
        assert_eq!(
            h.settle(t0 + ms(6000), &current, &plan, &lowest),
            vec![Some(0), None]
        );
        // Paused: a track already paused stays so at once, and comes back after UP_HOLD.
        let paused = [Some(Some(0)), Some(None)];
        assert_eq!(
            h.settle(t0 + ms(6100), &paused, &plan, &lowest),
            vec![Some(0), None]
        );
        // A new track is paused at once if it does not fit (nothing to take away).
        assert_eq!(
            h.settle(t0 + ms(6200), &[None], &[None], &[Some(0)]),
            vec![None]
        );
    }

    #[test]
    fn heavy_loss_pauses_at_once() {
        let t0 = Instant::now();
        let mut h = Hysteresis::default();
        let lowest = [Some(0), Some(0)];
        let current = [Some(Some(2)), Some(Some(1))];
        let plan = [Some(0), None];
        assert_eq!(
            h.settle_congested(t0, &current, &plan, &lowest, true),
            vec![Some(0), None]
        );
        // Loss alone pauses nothing the allocation keeps.
        assert_eq!(
            h.settle_congested(t0, &current, &[Some(2), Some(1)], &lowest, true),
            vec![Some(2), Some(1)]
        );
    }

    #[test]
    fn a_step_down_elsewhere_does_not_wait_for_a_pending_step_up() {
        let t0 = Instant::now();
        let mut h = Hysteresis::default();
        let out = h.settle(
            t0,
            &[Some(Some(0)), Some(Some(2))],
            &[Some(1), Some(1)],
            &[Some(0), Some(0)],
        );
        assert_eq!(out, vec![Some(0), Some(1)]);
    }
}
