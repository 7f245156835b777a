//! Screen sharing: a participant's second video publication.
//!
//! Only the server offers after the join (docs/protocol.md), so a page that wants to share
//! its screen asks (`share`), and the participant's next round offers an m-line on which
//! the server receives (`a=recvonly` from our side). The page answers `sendonly` with its
//! screen track on it; the m-line then becomes a publication like the camera's (str0m's
//! `MediaAdded`), with [`Source::Screen`](crate::api::Source). When sharing stops, the
//! publication ends at once (the others' m-lines for it are stopped in their next rounds)
//! and the participant's own m-line is stopped in its next round. [`ScreenShare`] keeps
//! what the page wants and what the session has apart, so a change asked during a round
//! is folded into the next one.

use std::time::Instant;

use str0m::media::Mid;

use super::SfuCore;
use crate::{
    api::{SfuError, Source},
    ids::ParticipantId,
};

/// A participant's screen m-line: what the page wants, and where the session stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScreenShare {
    /// The page shares (or wants to).
    pub wanted: bool,
    pub line: ScreenLine,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ScreenLine {
    /// No m-line.
    #[default]
    None,
    /// Offered to receive on; waiting for the answer.
    Offering(Mid),
    /// Negotiated: the page sends on it (or answered `inactive`, having stopped meanwhile).
    Open(Mid),
    /// Offered as stopped; gone once answered.
    Stopping(Mid),
}

/// What an answer did to the screen m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub opened: Option<Mid>,
    pub again: bool,
}

/// What the next round must do to the screen m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenChange {
    Open,
    Stop(Mid),
}

impl ScreenShare {
    /// The page's wish; true if the session must change (a round is needed).
    pub fn want(&mut self, on: bool) -> bool {
        self.wanted = on;
        self.change().is_some()
    }

    /// What the next offer should do, if anything (nothing while an offer is out).
    pub fn change(&self) -> Option<ScreenChange> {
        match (self.wanted, self.line) {
            (true, ScreenLine::None) => Some(ScreenChange::Open),
            (false, ScreenLine::Open(mid)) => Some(ScreenChange::Stop(mid)),
            _ => None,
        }
    }

    /// The change went into an offer (on `mid` when opening).
    pub fn offered(&mut self, change: ScreenChange, mid: Mid) {
        self.line = match change {
            ScreenChange::Open => ScreenLine::Offering(mid),
            ScreenChange::Stop(mid) => ScreenLine::Stopping(mid),
        };
    }

    /// The offer was answered: the m-line it opened, if any (str0m announces no
    /// `MediaAdded` for m-lines of our offers, so the caller publishes it), and whether the
    /// page changed its mind meanwhile (another round).
    pub fn answered(&mut self) -> Answered {
        let opened = match self.line {
            ScreenLine::Offering(mid) => Some(mid),
            _ => None,
        };
        self.line = match self.line {
            ScreenLine::Offering(mid) => ScreenLine::Open(mid),
            ScreenLine::Stopping(_) => ScreenLine::None,
            line => line,
        };
        Answered {
            opened,
            again: self.change().is_some(),
        }
    }

    /// Whether the browser's m-line `mid` is the screen's.
    pub fn carries(&self, mid: Mid) -> bool {
        matches!(self.line, ScreenLine::Offering(m) | ScreenLine::Open(m) if m == mid)
    }
}

impl SfuCore {
    /// `id`'s page starts (`on`) or stops sharing its screen. Stopping ends the screen
    /// publication at once; the m-lines follow in the next rounds.
    pub(super) fn share(
        &mut self,
        now: Instant,
        id: ParticipantId,
        on: bool,
    ) -> Result<(), SfuError> {
        let slot = self.slot(id)?;
        let participant = &mut self.participants[slot.0];
        tracing::info!(parent: &participant.span, on, "screen sharing");
        if participant.screen.want(on) {
            participant.negotiation.request(now);
        }
        if !on {
            let publications = &self.publications;
            let ended: Vec<_> = participant
                .publications
                .iter()
                .copied()
                .filter(|p| publications[p.0].source == Source::Screen)
                .collect();
            if !ended.is_empty() {
                participant.publications.retain(|p| !ended.contains(p));
                // Its packets may still come until the m-line is stopped: they must not
                // reach a publication that takes its slot.
                participant.ssrcs.retain(|(_, p, _)| !ended.contains(p));
                for publication in ended {
                    self.end_publication(now, publication);
                }
                let room = self.participants[slot.0].room.clone();
                self.broadcast_participants(&room);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(s: &str) -> Mid {
        Mid::from(s)
    }

    #[test]
    fn sharing_opens_a_line_and_stopping_stops_it() {
        let mut screen = ScreenShare::default();
        assert_eq!(screen.change(), None);
        assert!(screen.want(true));
        assert_eq!(screen.change(), Some(ScreenChange::Open));
        screen.offered(ScreenChange::Open, mid("3"));
        assert!(screen.carries(mid("3")));
        assert!(!screen.carries(mid("1")));
        assert_eq!(screen.change(), None, "nothing more while the offer is out");
        assert_eq!(
            screen.answered(),
            Answered {
                opened: Some(mid("3")),
                again: false
            }
        );
        assert_eq!(screen.line, ScreenLine::Open(mid("3")));
        assert!(screen.want(false));
        assert_eq!(screen.change(), Some(ScreenChange::Stop(mid("3"))));
        screen.offered(ScreenChange::Stop(mid("3")), mid("3"));
        assert!(!screen.carries(mid("3")));
        assert_eq!(
            screen.answered(),
            Answered {
                opened: None,
                again: false
            }
        );
        assert_eq!(screen, ScreenShare::default());
    }

    #[test]
    fn a_change_of_mind_during_a_round_makes_one_more_round() {
        let mut screen = ScreenShare::default();
        screen.want(true);
        screen.offered(ScreenChange::Open, mid("3"));
        assert!(!screen.want(false), "no round while one is out");
        assert!(screen.answered().again, "stopping needs another round");
        assert_eq!(screen.change(), Some(ScreenChange::Stop(mid("3"))));
        screen.offered(ScreenChange::Stop(mid("3")), mid("3"));
        assert!(!screen.want(true));
        assert!(screen.answered().again, "sharing again needs another round");
        assert_eq!(screen.change(), Some(ScreenChange::Open));
    }

    #[test]
    fn asking_twice_changes_nothing() {
        let mut screen = ScreenShare::default();
        assert!(!screen.want(false));
        screen.want(true);
        screen.offered(ScreenChange::Open, mid("3"));
        screen.answered();
        assert!(!screen.want(true));
        assert_eq!(screen.line, ScreenLine::Open(mid("3")));
    }
}
