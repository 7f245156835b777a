//! Identifiers: one newtype per thing named across the API, and one generator.
//!
//! A participant id is what the signaling side and the page see (`p` + 12 hex digits,
//! docs/protocol.md). Its first hex digit is the shard (the media core that holds the
//! participant), so a façade in front of several cores can route a command without a
//! table; the other 44 bits are a scrambled counter, unique per generator and not
//! guessable from a neighbour's id.

use std::{fmt, str::FromStr};

/// A participant of an SFU room, e.g. `p0a3f91c2d7e4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(u64);

/// The 48 bits shown as 12 hex digits.
const ID_BITS: u32 = 48;
const SHARD_SHIFT: u32 = ID_BITS - 4;
const UNIQUE_MASK: u64 = (1 << SHARD_SHIFT) - 1;

impl ParticipantId {
    /// The media core holding this participant.
    pub fn shard(self) -> u8 {
        (self.0 >> SHARD_SHIFT) as u8
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{:012x}", self.0)
    }
}

impl serde::Serialize for ParticipantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a participant id is `p` followed by 12 hex digits")]
pub struct InvalidParticipantId;

impl FromStr for ParticipantId {
    type Err = InvalidParticipantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix('p').ok_or(InvalidParticipantId)?;
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidParticipantId);
        }
        u64::from_str_radix(hex, 16)
            .map(ParticipantId)
            .map_err(|_| InvalidParticipantId)
    }
}

/// One `update` round of a participant: the answer names the round it answers, so a late
/// answer to a round that already timed out is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Round(pub u64);

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A publisher track (one m-line a browser sends on), unique within its core. Appears in
/// the track ids of the m-lines that carry it to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicationId(pub u64);

impl fmt::Display for PublicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tap (recorder, live packager) attached to one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TapId(pub u64);

/// Where a participant, publication, subscription or tap is stored in its core (an index
/// into a slab). The hot path follows these instead of hashing ids; a slot is reused only
/// after every reference to its previous occupant has been removed.
macro_rules! slot {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(pub usize);
    )*};
}

slot!(
    /// A participant's place in its core.
    ParticipantSlot,
    /// A publication's place in its core.
    PublicationSlot,
    /// A subscription's place in its subscriber.
    SubscriptionSlot,
    /// A tap's place in its core.
    TapSlot
);

/// Makes every id of one shard: participants (scrambled, shard-tagged), publications and
/// taps (sequential). Nothing else hands out ids.
#[derive(Debug, Clone)]
pub struct IdGen {
    shard: u8,
    seed: u64,
    participants: u64,
    publications: u64,
    taps: u64,
}

impl IdGen {
    /// `seed` makes participant ids unpredictable across restarts; `shard` < 16.
    pub fn new(shard: u8, seed: u64) -> Self {
        assert!(shard < 16, "a shard is one hex digit");
        IdGen {
            shard,
            seed,
            participants: 0,
            publications: 0,
            taps: 0,
        }
    }

    pub fn participant(&mut self) -> ParticipantId {
        self.participants += 1;
        // A bijection on 44 bits (xorshift-multiply rounds, each invertible modulo 2^44),
        // so distinct counters give distinct ids for 2^44 joins.
        let mut x = (self.participants ^ self.seed) & UNIQUE_MASK;
        for _ in 0..2 {
            x ^= x >> 21;
            x = x.wrapping_mul(0x9E37_79B9_7F4B) & UNIQUE_MASK;
        }
        ParticipantId((u64::from(self.shard) << SHARD_SHIFT) | x)
    }

    pub fn publication(&mut self) -> PublicationId {
        self.publications += 1;
        PublicationId(self.publications)
    }

    pub fn tap(&mut self) -> TapId {
        self.taps += 1;
        TapId(self.taps)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn participant_ids_are_unique_shard_tagged_and_round_trip() {
        let mut ids = IdGen::new(3, 0xdead_beef);
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = ids.participant();
            assert!(seen.insert(id), "{id} twice");
            assert_eq!(id.shard(), 3);
            let text = id.to_string();
            assert_eq!(text.len(), 13);
            assert!(text.starts_with("p3"), "{text}");
            assert_eq!(text.parse::<ParticipantId>(), Ok(id));
        }
    }

    #[test]
    fn neighbours_do_not_look_alike() {
        let mut ids = IdGen::new(0, 1);
        let (a, b) = (ids.participant(), ids.participant());
        let differing = (a.0 ^ b.0).count_ones();
        assert!(differing > 8, "{a} and {b} differ in {differing} bits");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "p",
            "x0123456789ab",
            "p0123456789a",
            "p0123456789abc",
            "p0123456789ag",
        ] {
            assert_eq!(
                bad.parse::<ParticipantId>(),
                Err(InvalidParticipantId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_ids_count_up_separately() {
        let mut ids = IdGen::new(0, 0);
        ids.participant();
        assert_eq!(ids.publication(), PublicationId(1));
        assert_eq!(ids.publication(), PublicationId(2));
        assert_eq!(ids.tap(), TapId(1));
    }
}
