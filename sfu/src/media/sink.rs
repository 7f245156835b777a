//! The sinks of a publication: where its packets go. A sink is a subscription (a
//! participant's m-line) or a tap (a consumer inside the server), stored by slot so that
//! delivering to N sinks is N direct lookups, never a search.

use crate::ids::{ParticipantSlot, SubscriptionSlot, TapSlot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    Subscriber {
        participant: ParticipantSlot,
        subscription: SubscriptionSlot,
    },
    Tap(TapSlot),
}

/// The sinks of one publication.
#[derive(Debug, Default)]
pub(crate) struct Sinks(Vec<Sink>);

impl Sinks {
    pub fn add(&mut self, sink: Sink) {
        debug_assert!(!self.0.contains(&sink));
        self.0.push(sink);
    }

    pub fn remove(&mut self, sink: Sink) {
        self.0.retain(|s| *s != sink);
    }

    /// Every subscription of `participant` (it is leaving).
    pub fn remove_participant(&mut self, participant: ParticipantSlot) {
        self.0
            .retain(|s| !matches!(s, Sink::Subscriber { participant: p, .. } if *p == participant));
    }

    pub fn iter(&self) -> impl Iterator<Item = Sink> + '_ {
        self.0.iter().copied()
    }
}

/// What became of a packet offered to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the subscriber's connection; `first` = the first packet of this sink.
    Written { bytes: u64, first: bool },
    /// Not a keyframe, and the sink waits for one of this layer: the publisher should be asked.
    WaitingKeyframe(u8),
    /// Not for this sink now (not open, a codec it cannot receive, older than its start).
    Skipped,
}
