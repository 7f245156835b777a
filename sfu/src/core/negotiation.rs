//! One negotiation at a time per participant, with its deadlines (sans-IO).
//!
//! The browser makes exactly one offer (in `join`); after that the server is the only
//! offerer, so there is no glare to resolve — only changes that arrive while an `update` is
//! in flight. They are folded into one more round once it completes. An ICE restart is one
//! more kind of change: it rides on the next round.
//!
//! Time is passed in: a round due later (debounce) and the answer's deadline are instants
//! the core compares with `now`, not tasks.

use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;

use crate::ids::Round;

/// A publisher's audio and video m-lines appear together; other changes a few ms apart are
/// folded into one offer.
pub const DEBOUNCE: Duration = Duration::from_millis(40);

#[derive(Debug, Default)]
pub struct Negotiation {
    /// The browser's own offer has been answered (`ready`): we may offer.
    ready: bool,
    /// A round is in flight (or about to be built).
    busy: bool,
    /// Something changed since the last round was built.
    dirty: bool,
    /// The next round also restarts ICE.
    restart_ice: bool,
    /// When the next round is built, if one is due.
    start_at: Option<Instant>,
    /// The offer in flight.
    pending: Option<PendingRound>,
    last_round: u64,
    /// Completed server-initiated rounds.
    pub rounds: u64,
}

/// An offer sent and not yet answered.
#[derive(Debug)]
pub struct PendingRound {
    pub round: Round,
    pub offer: SdpPendingOffer,
    pub deadline: Instant,
    /// The round restarts ICE: our ufrag before it (forgotten once answered).
    pub replaced_ufrag: Option<String>,
}

impl Negotiation {
    /// The participant's subscriptions changed; a round follows after [`DEBOUNCE`] unless
    /// one is running or the join has not been answered yet (it is picked up later).
    pub fn request(&mut self, now: Instant) {
        self.dirty = true;
        self.try_start(now + DEBOUNCE);
    }

    /// The next round must restart ICE; it starts at once if nothing is in flight.
    pub fn request_ice_restart(&mut self, now: Instant) {
        self.restart_ice = true;
        self.dirty = true;
        self.try_start(now);
    }

    /// The join answer reached the browser: subscribe it to what the room has, now.
    pub fn ready(&mut self, now: Instant) {
        self.ready = true;
        self.dirty = true;
        self.try_start(now);
    }

    /// A round is due: the caller builds it now. Returns whether it must restart ICE.
    pub fn take_due(&mut self, now: Instant) -> Option<bool> {
        if self.start_at.is_some_and(|at| at <= now) {
            self.start_at = None;
            Some(std::mem::take(&mut self.restart_ice))
        } else {
            None
        }
    }

    /// The round built had nothing to offer.
    pub fn nothing_to_offer(&mut self, now: Instant) {
        self.busy = false;
        self.try_start(now);
    }

    /// An offer went out.
    pub fn offered(
        &mut self,
        offer: SdpPendingOffer,
        now: Instant,
        timeout: Duration,
        replaced_ufrag: Option<String>,
    ) -> Round {
        self.last_round += 1;
        let round = Round(self.last_round);
        self.pending = Some(PendingRound {
            round,
            offer,
            deadline: now + timeout,
            replaced_ufrag,
        });
        round
    }

    /// The pending round if `round` is it (a late answer to an abandoned round is not).
    pub fn take_pending(&mut self, round: Round) -> Option<PendingRound> {
        self.pending.take_if(|p| p.round == round)
    }

    /// The pending round if its answer is overdue.
    pub fn take_overdue(&mut self, now: Instant) -> Option<PendingRound> {
        self.pending.take_if(|p| p.deadline <= now)
    }

    /// The round in flight was answered; changes that arrived meanwhile start another now.
    pub fn finished(&mut self, now: Instant) {
        self.busy = false;
        self.rounds += 1;
        self.try_start(now);
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The next instant this negotiation needs attention.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.start_at, &self.pending) {
            (Some(a), Some(p)) => Some(a.min(p.deadline)),
            (a, p) => a.or(p.as_ref().map(|p| p.deadline)),
        }
    }

    fn try_start(&mut self, at: Instant) {
        if self.ready && !self.busy && self.dirty {
            self.busy = true;
            self.dirty = false;
            self.start_at = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> SdpPendingOffer {
        // A real pending offer, from a throwaway connection.
        let mut rtc = str0m::Rtc::new(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Audio,
            str0m::media::Direction::SendOnly,
            None,
            None,
            None,
        );
        api.apply().unwrap().1
    }

    #[test]
    fn nothing_is_offered_before_the_join_is_answered() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        n.request(t0);
        assert_eq!(n.take_due(t0 + Duration::from_secs(1)), None);
        n.ready(t0);
        assert_eq!(n.take_due(t0), Some(false), "at once, no debounce");
    }

    #[test]
    fn changes_are_debounced_and_folded_into_one_more_round() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        n.ready(t0);
        n.take_due(t0).unwrap();
        let round = n.offered(pending(), t0, Duration::from_secs(10), None);
        // Three changes while the round is in flight…
        n.request(t0);
        n.request(t0);
        n.request(t0);
        assert_eq!(n.take_due(t0 + Duration::from_secs(1)), None);
        assert!(n.take_pending(round).is_some());
        n.finished(t0 + Duration::from_millis(5));
        // …make exactly one more, at once.
        assert_eq!(n.take_due(t0 + Duration::from_millis(5)), Some(false));
        assert_eq!(n.take_due(t0 + Duration::from_secs(1)), None);
        n.nothing_to_offer(t0);
        assert_eq!(n.rounds, 1);
        // A change when idle waits for the debounce.
        n.request(t0);
        assert_eq!(n.deadline(), Some(t0 + DEBOUNCE));
        assert_eq!(n.take_due(t0 + DEBOUNCE - Duration::from_millis(1)), None);
        assert_eq!(n.take_due(t0 + DEBOUNCE), Some(false));
    }

    #[test]
    fn an_ice_restart_rides_on_the_next_round() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        n.ready(t0);
        n.take_due(t0).unwrap();
        let round = n.offered(pending(), t0, Duration::from_secs(10), None);
        n.request_ice_restart(t0);
        assert_eq!(n.take_due(t0), None, "one round at a time");
        n.take_pending(round).unwrap();
        n.finished(t0);
        assert_eq!(n.take_due(t0), Some(true));
    }

    #[test]
    fn answers_are_matched_to_their_round_and_overdue_ones_found() {
        let t0 = Instant::now();
        let mut n = Negotiation::default();
        n.ready(t0);
        n.take_due(t0).unwrap();
        let round = n.offered(pending(), t0, Duration::from_secs(10), None);
        assert!(n.take_pending(Round(round.0 + 1)).is_none());
        assert!(n.take_overdue(t0 + Duration::from_secs(9)).is_none());
        assert_eq!(n.deadline(), Some(t0 + Duration::from_secs(10)));
        let overdue = n.take_overdue(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(overdue.round, round);
        assert!(
            n.take_pending(round).is_none(),
            "a late answer finds nothing"
        );
    }
}
