//! Simulcast layers of a video publication (sans-IO).
//!
//! A browser sending simulcast sends each layer as its own RTP stream, named by a RID
//! (`a=simulcast:send q;h;f`, RFC 8853); str0m makes one receive stream per RID. Layers are
//! numbered in the order the offer lists them, lowest first: that is the order of the
//! `sendEncodings` our page gives (`q` ¼, `h` ½, `f` full resolution) and the order
//! Chromium, LiveKit's and mediasoup's clients use. A publication without simulcast has one
//! layer, 0.
//!
//! A layer is *active* while its packets arrive: a browser stops sending a layer its
//! encoder cannot afford (CPU or uplink), and one whose subscribers asked for nothing higher
//! would be wasted. Subscriptions forward the layer [`pick`] chooses from what they want and
//! what is active.

use std::time::{Duration, Instant};

use str0m::media::Rid;

use crate::media::{keyframe::KeyframeThrottle, publication::LossCounter};

/// Most layers a publication may have (a bit each in a [`LayerMask`]).
pub const MAX_LAYERS: usize = 4;

/// A layer whose last packet is older than this is taken for stopped (video sends at least
/// a few frames a second; Chromium pauses a layer for seconds when it drops it).
pub const ACTIVE_WINDOW: Duration = Duration::from_millis(1000);

/// A set of layers, bit `n` = layer `n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerMask(pub u8);

impl LayerMask {
    pub fn with(self, layer: u8) -> Self {
        LayerMask(self.0 | 1 << layer)
    }

    pub fn contains(self, layer: u8) -> bool {
        layer < 8 && self.0 & 1 << layer != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..8u8).filter(move |l| self.contains(*l))
    }
}

#[derive(Debug)]
pub struct Layer {
    /// `None` for a publication without simulcast.
    pub rid: Option<Rid>,
    pub keyframes: KeyframeThrottle,
    pub last_packet: Option<Instant>,
    pub loss: LossCounter,
    /// Payload bytes received, all time.
    bytes: u64,
    /// `bytes` when the bitrate was last measured.
    bytes_measured: u64,
    /// Smoothed payload bits per second (what forwarding this layer costs a subscriber).
    bitrate: u64,
}

impl Layer {
    fn new(rid: Option<Rid>, keyframes: KeyframeThrottle) -> Self {
        Layer {
            rid,
            keyframes,
            last_packet: None,
            loss: LossCounter::default(),
            bytes: 0,
            bytes_measured: 0,
            bitrate: 0,
        }
    }

    pub fn packet(&mut self, now: Instant, payload_len: usize) {
        self.last_packet = Some(now);
        self.bytes += payload_len as u64;
    }

    /// Folds the bytes received over the last `elapsed` into the smoothed bitrate (an
    /// exponential average over about four calls: keyframes make single intervals jumpy).
    pub fn measure(&mut self, elapsed: Duration) {
        let bytes = self.bytes - std::mem::replace(&mut self.bytes_measured, self.bytes);
        let Some(sample) = (bytes * 8 * 1000).checked_div(elapsed.as_millis() as u64) else {
            return;
        };
        self.bitrate = if self.bitrate == 0 {
            sample
        } else {
            (3 * self.bitrate + sample) / 4
        };
    }

    /// Bits per second, while the layer is sent.
    pub fn bitrate(&self, now: Instant) -> Option<u64> {
        self.is_active(now).then_some(self.bitrate)
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|at| now.saturating_duration_since(at) < ACTIVE_WINDOW)
    }
}

/// The layers of one publication.
#[derive(Debug)]
pub struct Layers(Vec<Layer>);

impl Layers {
    /// One layer per RID (lowest first), or a single layer without one.
    pub fn new(rids: &[Rid], keyframes: KeyframeThrottle) -> Self {
        if rids.is_empty() {
            return Layers(vec![Layer::new(None, keyframes)]);
        }
        Layers(
            rids.iter()
                .take(MAX_LAYERS)
                .map(|rid| Layer::new(Some(*rid), keyframes.clone()))
                .collect(),
        )
    }

    /// The layer a stream with `rid` belongs to. A stream without a RID belongs to the one
    /// layer of a publication without simulcast.
    pub fn index_of(&self, rid: Option<Rid>) -> Option<u8> {
        match rid {
            None => (self.0.len() == 1).then_some(0),
            Some(rid) => self
                .0
                .iter()
                .position(|l| l.rid == Some(rid))
                .map(|i| i as u8),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_simulcast(&self) -> bool {
        self.0.len() > 1
    }

    /// The top layer's number.
    pub fn top(&self) -> u8 {
        (self.0.len() - 1) as u8
    }

    pub fn get(&self, layer: u8) -> Option<&Layer> {
        self.0.get(usize::from(layer))
    }

    pub fn get_mut(&mut self, layer: u8) -> Option<&mut Layer> {
        self.0.get_mut(usize::from(layer))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Layer> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.0.iter_mut()
    }

    pub fn active(&self, now: Instant) -> LayerMask {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_active(now))
            .fold(LayerMask::default(), |m, (i, _)| m.with(i as u8))
    }

    /// See [`Layer::measure`].
    pub fn measure(&mut self, elapsed: Duration) {
        self.0.iter_mut().for_each(|l| l.measure(elapsed));
    }

    /// What each layer costs now (`None`: not sent).
    pub fn bitrates(&self, now: Instant) -> [Option<u64>; MAX_LAYERS] {
        let mut rates = [None; MAX_LAYERS];
        for (rate, layer) in rates.iter_mut().zip(&self.0) {
            *rate = layer.bitrate(now);
        }
        rates
    }

    /// The earliest instant a remembered keyframe request of any layer becomes due.
    pub fn keyframe_deadline(&self) -> Option<Instant> {
        self.0.iter().filter_map(|l| l.keyframes.deadline()).min()
    }

    /// Packets lost upstream and not repaired, all layers.
    pub fn lost(&self) -> i64 {
        self.0.iter().map(|l| l.loss.lost()).sum()
    }

    /// Keyframe requests sent upstream, all layers.
    pub fn keyframes_sent(&self) -> u64 {
        self.0.iter().map(|l| l.keyframes.sent).sum()
    }
}

/// A layer nobody has needed for this long is switched off at the publisher (LiveKit's
/// `dynacast_pause_delay`); a needed one is switched on at once. See also
/// [`PublisherLayers::new`]'s `lean_start`.
pub const PAUSE_DELAY: Duration = Duration::from_secs(5);

/// The layers subscribers need of a publication: each subscription's wish (clamped to the
/// layers there are), and always the lowest, so a subscriber that loses its layer has one to
/// fall back on at once.
pub fn needed(wishes: impl IntoIterator<Item = Option<u8>>, layers: usize) -> LayerMask {
    let top = layers.saturating_sub(1) as u8;
    wishes
        .into_iter()
        .flatten()
        .fold(LayerMask::default().with(0), |mask, wish| {
            mask.with(wish.min(top))
        })
}

/// Which layers the publisher is asked to send ("dynacast"): it stops encoding and sending a
/// layer nobody needs, so an idle high layer costs no uplink and no CPU.
#[derive(Debug, Clone)]
pub struct PublisherLayers {
    /// What the publisher was last told (all layers until told otherwise: a browser starts
    /// every layer its offer lists).
    asked: LayerMask,
    /// Every layer the publication has.
    all: LayerMask,
    /// Layers someone has needed since the publication began.
    ever_needed: LayerMask,
    lean_start: bool,
    unneeded_since: [Option<Instant>; MAX_LAYERS],
}

impl PublisherLayers {
    /// With `lean_start`, a layer nobody has needed since the publication began is switched
    /// off at once, not after [`PAUSE_DELAY`]: the delay keeps a layer someone watched from
    /// flapping, and a page joining a grid of small tiles would otherwise encode its top
    /// layer through the first seconds of its join, when the machine is busiest. Not with
    /// bandwidth estimation on: the subscribers' estimates grow on what the join sends, and
    /// the lab's slow-downlink case failed 2 runs of 8 after a lean start (docs/sfu.md).
    pub fn new(layers: usize, lean_start: bool) -> Self {
        let all = LayerMask((1u8 << layers.min(MAX_LAYERS)) - 1);
        PublisherLayers {
            asked: all,
            all,
            ever_needed: LayerMask::default(),
            lean_start,
            unneeded_since: [None; MAX_LAYERS],
        }
    }

    /// Folds in what is `needed` now; returns the layers to ask for when that changes.
    pub fn update(&mut self, needed: LayerMask, now: Instant) -> Option<LayerMask> {
        let mut asked = self.asked;
        for layer in 0..MAX_LAYERS as u8 {
            let since = &mut self.unneeded_since[usize::from(layer)];
            if needed.contains(layer) {
                *since = None;
                asked = asked.with(layer);
                self.ever_needed = self.ever_needed.with(layer);
            } else if self.asked.contains(layer) {
                let since = *since.get_or_insert(now);
                if (self.lean_start && !self.ever_needed.contains(layer))
                    || now.saturating_duration_since(since) >= PAUSE_DELAY
                {
                    asked = LayerMask(asked.0 & !(1 << layer));
                }
            }
        }
        (asked != self.asked).then(|| {
            self.asked = asked;
            asked
        })
    }

    pub fn asked(&self) -> LayerMask {
        self.asked
    }

    /// The publisher applied an offer of ours: Chromium then switches every simulcast layer
    /// back on (measured, docs/protocol.md `publish_layers`), so what it was told no longer
    /// holds. The next [`update`](Self::update) tells it again what is needed, at once for a
    /// layer already unneeded long enough.
    pub fn renegotiated(&mut self) {
        self.asked = self.all;
    }
}

/// The layer to forward to a subscription that wants at most `wanted` (`None` = nothing):
/// the highest active layer not above it, else the lowest active one above it (a picture
/// too large beats none). With nothing active yet (a publisher still starting), `wanted`
/// itself, clamped to the layers there are, so the subscription waits for it.
pub fn pick(wanted: Option<u8>, active: LayerMask, layers: usize) -> Option<u8> {
    let wanted = wanted?.min(layers.saturating_sub(1) as u8);
    if active.is_empty() {
        return Some(wanted);
    }
    active
        .iter()
        .filter(|l| *l <= wanted)
        .last()
        .or_else(|| active.iter().find(|l| *l > wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(layers: &[u8]) -> LayerMask {
        layers.iter().fold(LayerMask::default(), |m, l| m.with(*l))
    }

    #[test]
    fn pick_prefers_the_highest_active_layer_up_to_the_wanted_one() {
        assert_eq!(pick(Some(2), mask(&[0, 1, 2]), 3), Some(2));
        assert_eq!(pick(Some(1), mask(&[0, 1, 2]), 3), Some(1));
        // The browser stopped sending its top layer.
        assert_eq!(pick(Some(2), mask(&[0, 1]), 3), Some(1));
        // Only a higher layer is there: better too large than nothing.
        assert_eq!(pick(Some(0), mask(&[2]), 3), Some(2));
        assert_eq!(pick(Some(0), mask(&[1, 2]), 3), Some(1));
        // Paused.
        assert_eq!(pick(None, mask(&[0, 1, 2]), 3), None);
        // Nothing active yet: wait for what is wanted, within the layers there are.
        assert_eq!(pick(Some(2), LayerMask::default(), 3), Some(2));
        assert_eq!(pick(Some(u8::MAX), LayerMask::default(), 1), Some(0));
    }

    #[test]
    fn the_lowest_layer_is_always_needed_and_wishes_are_clamped() {
        assert_eq!(needed([], 3), mask(&[0]));
        assert_eq!(needed([None, Some(1)], 3), mask(&[0, 1]));
        assert_eq!(needed([Some(u8::MAX), Some(0)], 3), mask(&[0, 2]));
        assert_eq!(needed([Some(u8::MAX)], 1), mask(&[0]));
    }

    #[test]
    fn unneeded_layers_stop_after_a_delay_and_needed_ones_start_at_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PublisherLayers::new(3, false);
        assert_eq!(p.asked(), mask(&[0, 1, 2]));
        assert_eq!(p.update(mask(&[0, 1, 2]), t0), None);
        // Nobody wants the top layer any more…
        assert_eq!(p.update(mask(&[0, 1]), t0), None);
        assert_eq!(p.update(mask(&[0, 1]), t0 + s(4)), None, "not yet");
        // …a wish that comes and goes within the delay does not restart it early.
        assert_eq!(p.update(mask(&[0]), t0 + s(4)), None);
        assert_eq!(p.update(mask(&[0, 1]), t0 + s(5)), Some(mask(&[0, 1])));
        assert_eq!(p.update(mask(&[0]), t0 + s(6)), None);
        assert_eq!(p.update(mask(&[0]), t0 + s(11)), Some(mask(&[0])));
        // Someone pins the tile: the top layer is asked for at once.
        assert_eq!(p.update(mask(&[0, 2]), t0 + s(12)), Some(mask(&[0, 2])));
    }

    #[test]
    fn after_a_renegotiation_the_publisher_is_told_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PublisherLayers::new(3, true);
        assert_eq!(p.update(mask(&[0, 1]), t0), Some(mask(&[0, 1])));
        assert_eq!(p.update(mask(&[0, 1]), t0 + s(1)), None);
        // The browser applied an offer of ours and runs every layer again: told at once.
        p.renegotiated();
        assert_eq!(p.asked(), mask(&[0, 1, 2]));
        assert_eq!(p.update(mask(&[0, 1]), t0 + s(2)), Some(mask(&[0, 1])));
        // A layer watched until a moment ago keeps the rest of its delay.
        assert_eq!(p.update(mask(&[0]), t0 + s(3)), None);
        p.renegotiated();
        assert_eq!(p.update(mask(&[0]), t0 + s(4)), Some(mask(&[0, 1])));
        assert_eq!(p.update(mask(&[0]), t0 + s(8)), Some(mask(&[0])));
        // Nothing to tell when every layer is needed.
        p.renegotiated();
        assert_eq!(p.update(mask(&[0, 1, 2]), t0 + s(9)), None);
    }

    #[test]
    fn layers_nobody_has_needed_yet_stop_at_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PublisherLayers::new(3, true);
        // A publisher joins a room whose tiles are small: its top two layers stop at once.
        assert_eq!(p.update(mask(&[0]), t0), Some(mask(&[0])));
        // A subscriber's tile wants the middle one: back on at once…
        assert_eq!(p.update(mask(&[0, 1]), t0 + s(1)), Some(mask(&[0, 1])));
        // …and, having been watched, it stops only after the delay.
        assert_eq!(p.update(mask(&[0]), t0 + s(2)), None);
        assert_eq!(p.update(mask(&[0]), t0 + s(6)), None, "not yet");
        assert_eq!(p.update(mask(&[0]), t0 + s(7)), Some(mask(&[0])));
        // The top layer, still never needed, was never asked for again.
        assert_eq!(p.update(mask(&[0, 2]), t0 + s(8)), Some(mask(&[0, 2])));

        // Without a lean start, the delay applies from the first update.
        let mut p = PublisherLayers::new(3, false);
        assert_eq!(p.update(mask(&[0]), t0), None);
        assert_eq!(p.update(mask(&[0]), t0 + s(5)), Some(mask(&[0])));
    }

    #[test]
    fn layers_are_found_by_rid_in_the_order_offered() {
        let throttle = KeyframeThrottle::new(Duration::from_millis(500));
        let rids = [Rid::from("q"), Rid::from("h"), Rid::from("f")];
        let layers = Layers::new(&rids, throttle.clone());
        assert_eq!(layers.index_of(Some(Rid::from("h"))), Some(1));
        assert_eq!(layers.index_of(Some(Rid::from("x"))), None);
        assert_eq!(
            layers.index_of(None),
            None,
            "a simulcast stream names its rid"
        );
        assert_eq!(layers.top(), 2);
        let single = Layers::new(&[], throttle);
        assert_eq!(single.index_of(None), Some(0));
        assert!(!single.is_simulcast());
    }

    #[test]
    fn a_layer_is_active_while_its_packets_arrive() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut layers = Layers::new(
            &[Rid::from("q"), Rid::from("f")],
            KeyframeThrottle::new(ms(500)),
        );
        assert!(layers.active(t0).is_empty());
        for i in 0..=10 {
            layers.get_mut(1).unwrap().packet(t0 + ms(i * 100), 1000);
        }
        assert_eq!(layers.active(t0 + ms(1000)), mask(&[1]));
        assert_eq!(layers.active(t0 + ms(2000)), LayerMask::default());
    }

    #[test]
    fn bitrates_are_smoothed_and_only_for_layers_being_sent() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut layers = Layers::new(
            &[Rid::from("q"), Rid::from("f")],
            KeyframeThrottle::new(ms(500)),
        );
        // 25 kB in 250 ms: 800 kbit/s.
        layers.get_mut(1).unwrap().packet(t0, 25_000);
        layers.measure(ms(250));
        assert_eq!(layers.bitrates(t0), [None, Some(800_000), None, None]);
        // A quiet interval pulls it a quarter of the way down.
        layers.measure(ms(250));
        assert_eq!(layers.bitrates(t0)[1], Some(600_000));
        // Stopped: not offered.
        assert_eq!(layers.bitrates(t0 + ms(1500))[1], None);
    }
}
