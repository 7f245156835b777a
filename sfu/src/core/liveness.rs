//! Is a participant's media path alive, and what to do when it is not (sans-IO).
//!
//! ```text
//!  Connecting ──DTLS up──▶ Up ──ICE Disconnected, silence, or `restart`──▶ RestartWanted
//!      │                   ▲                                                   │ offer sent
//!      │ connect_timeout   │ ICE Connected                                     ▼
//!      ▼                   └──────────────── Reconnecting ◀──answered──── Restarting
//!    Failed ◀──────────── restart_timeout ─────────┘       (update_timeout: the core fails it)
//! ```
//!
//! A lost path is repaired by an ICE restart (new credentials, fresh checks from whatever
//! address the browser now has) rather than by dropping the participant: only if media is
//! not back `restart_timeout` after the browser answered the restart offer is it failed.
//! A path that comes back by itself before the offer is built (ICE flapping) cancels it.

use std::time::{Duration, Instant};

use str0m::IceConnectionState;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub silence_limit: Duration,
    pub restart_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Joined; DTLS not up yet.
    Connecting,
    /// Media flows.
    Up,
    /// The path is lost (or the browser asked): an ICE-restart offer is to be made.
    RestartWanted,
    /// The ICE-restart offer is out; its answer's deadline is the negotiation's.
    Restarting,
    /// The browser answered the restart; media must be back by then.
    Reconnecting {
        by: Instant,
    },
    Failed,
}

/// What the core must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Offer an ICE restart (the next round).
    RestartIce,
    /// Give up: the participant gets `media_failed`.
    Failed(&'static str),
}

#[derive(Debug, Clone)]
pub struct Liveness {
    limits: Limits,
    joined_at: Instant,
    last_received: Instant,
    phase: Phase,
    /// A restart was decided and not yet handed to the core.
    restart_due: bool,
    /// DTLS came up at least once.
    connected_once: bool,
}

impl Liveness {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Liveness {
            limits,
            joined_at: now,
            last_received: now,
            phase: Phase::Connecting,
            restart_due: false,
            connected_once: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A datagram from the browser was accepted.
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// DTLS is up: media can flow.
    pub fn connected(&mut self) {
        self.connected_once = true;
        if self.phase == Phase::Connecting {
            self.phase = Phase::Up;
        }
    }

    /// str0m's ICE agent changed state.
    pub fn ice_state(&mut self, state: IceConnectionState) {
        match (self.phase, state) {
            (Phase::Up, IceConnectionState::Disconnected) => self.want_restart(),
            // Came back before the restart was offered: nothing to repair.
            (
                Phase::RestartWanted,
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.connected_once => {
                self.restart_due = false;
                self.phase = Phase::Up;
            }
            (
                Phase::Reconnecting { .. },
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => {
                self.phase = if self.connected_once {
                    Phase::Up
                } else {
                    Phase::Connecting
                };
            }
            _ => {}
        }
    }

    /// The browser asked for an ICE restart (`restart`). Ignored while one is under way.
    pub fn restart_requested(&mut self) {
        if matches!(self.phase, Phase::Connecting | Phase::Up) {
            self.want_restart();
        }
    }

    /// The ICE-restart offer went out.
    pub fn restart_offered(&mut self) {
        if self.phase != Phase::Failed {
            self.phase = Phase::Restarting;
        }
    }

    /// The browser answered the ICE-restart offer.
    pub fn restart_answered(&mut self, now: Instant) {
        if self.phase == Phase::Restarting {
            self.phase = Phase::Reconnecting {
                by: now + self.limits.restart_timeout,
            };
        }
    }

    /// What to do now; call after the participant's events and on its deadline.
    pub fn verdict(&mut self, now: Instant) -> Verdict {
        match self.phase {
            Phase::Failed => Verdict::Fine,
            Phase::Connecting if now >= self.joined_at + self.limits.connect_timeout => {
                self.fail("media never connected")
            }
            Phase::Up if now >= self.last_received + self.limits.silence_limit => {
                self.want_restart();
                self.take_restart()
            }
            Phase::Reconnecting { by } if now >= by => {
                self.fail("media did not come back after an ICE restart")
            }
            _ => self.take_restart(),
        }
    }

    /// When [`verdict`](Self::verdict) may change without any other input.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting => Some(self.joined_at + self.limits.connect_timeout),
            Phase::Up => Some(self.last_received + self.limits.silence_limit),
            Phase::Reconnecting { by } => Some(by),
            Phase::RestartWanted | Phase::Restarting | Phase::Failed => None,
        }
    }

    fn want_restart(&mut self) {
        self.phase = Phase::RestartWanted;
        self.restart_due = true;
    }

    fn take_restart(&mut self) -> Verdict {
        if std::mem::take(&mut self.restart_due) {
            Verdict::RestartIce
        } else {
            Verdict::Fine
        }
    }

    fn fail(&mut self, reason: &'static str) -> Verdict {
        self.phase = Phase::Failed;
        Verdict::Failed(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        connect_timeout: Duration::from_secs(20),
        silence_limit: Duration::from_secs(8),
        restart_timeout: Duration::from_secs(10),
    };

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn up(t0: Instant) -> Liveness {
        let mut l = Liveness::new(LIMITS, t0);
        l.connected();
        assert_eq!(l.phase(), Phase::Up);
        l
    }

    #[test]
    fn a_connection_that_never_comes_up_fails_after_the_connect_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LIMITS, t0);
        l.received(t0 + s(5));
        assert_eq!(l.verdict(t0 + s(19)), Verdict::Fine);
        assert_eq!(l.deadline(), Some(t0 + s(20)));
        assert!(matches!(l.verdict(t0 + s(20)), Verdict::Failed(_)));
        assert_eq!(l.verdict(t0 + s(21)), Verdict::Fine, "failed once");
    }

    #[test]
    fn silence_asks_for_one_restart_and_then_waits() {
        let t0 = Instant::now();
        let mut l = up(t0);
        l.received(t0 + s(1));
        assert_eq!(l.deadline(), Some(t0 + s(9)));
        assert_eq!(l.verdict(t0 + s(8)), Verdict::Fine);
        assert_eq!(l.verdict(t0 + s(9)), Verdict::RestartIce);
        assert_eq!(
            l.verdict(t0 + s(30)),
            Verdict::Fine,
            "one restart, not one per tick"
        );
        assert_eq!(l.deadline(), None, "the update timeout bounds the offer");
        l.restart_offered();
        l.restart_answered(t0 + s(10));
        assert_eq!(l.deadline(), Some(t0 + s(20)));
        assert_eq!(l.verdict(t0 + s(19)), Verdict::Fine);
        assert!(matches!(l.verdict(t0 + s(20)), Verdict::Failed(_)));
    }

    #[test]
    fn ice_disconnected_restarts_and_connected_after_the_answer_is_recovery() {
        let t0 = Instant::now();
        let mut l = up(t0);
        l.ice_state(IceConnectionState::Disconnected);
        assert_eq!(l.verdict(t0), Verdict::RestartIce);
        l.restart_offered();
        l.restart_answered(t0 + s(1));
        l.ice_state(IceConnectionState::Checking);
        assert!(matches!(l.phase(), Phase::Reconnecting { .. }));
        l.ice_state(IceConnectionState::Connected);
        assert_eq!(l.phase(), Phase::Up);
        l.received(t0 + s(2));
        // Up again: the restart's deadline (t0 + 11 s) is gone, silence is watched again.
        assert_eq!(l.verdict(t0 + s(9)), Verdict::Fine);
        assert_eq!(l.deadline(), Some(t0 + s(10)));
    }

    #[test]
    fn a_flap_before_the_offer_cancels_the_restart() {
        let t0 = Instant::now();
        let mut l = up(t0);
        l.ice_state(IceConnectionState::Disconnected);
        l.ice_state(IceConnectionState::Connected);
        assert_eq!(l.phase(), Phase::Up);
        assert_eq!(l.verdict(t0), Verdict::Fine);
    }

    #[test]
    fn a_requested_restart_is_coalesced_with_one_under_way() {
        let t0 = Instant::now();
        let mut l = up(t0);
        l.restart_requested();
        assert_eq!(l.verdict(t0), Verdict::RestartIce);
        l.restart_requested();
        assert_eq!(l.verdict(t0), Verdict::Fine);
        l.restart_offered();
        l.restart_requested();
        assert_eq!(l.verdict(t0), Verdict::Fine);
        assert_eq!(l.phase(), Phase::Restarting);
    }
}
