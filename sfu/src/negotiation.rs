//! One negotiation at a time per participant (sans-IO).
//!
//! The browser makes exactly one offer (in `join`); after that the server is the only
//! offerer, so there is no glare to resolve — only changes that arrive while an `update` is in
//! flight. They are folded into one more round once it completes.

#[derive(Debug, Default, Clone)]
pub struct Negotiation {
    /// The browser's own offer has been answered.
    ready: bool,
    busy: bool,
    dirty: bool,
    /// Completed server-initiated rounds.
    pub rounds: u64,
}

impl Negotiation {
    /// The participant's subscriptions changed. Returns true if the caller must start a round
    /// now (otherwise one is already running or the join has not been answered yet, and the
    /// change is picked up later).
    pub fn request(&mut self) -> bool {
        self.dirty = true;
        self.try_start()
    }

    /// The browser's offer was answered. Returns true if a round must start now.
    pub fn joined(&mut self) -> bool {
        self.ready = true;
        self.try_start()
    }

    /// The round in flight ended (answered, refused or timed out). Returns true if changes
    /// arrived meanwhile and another round must start now.
    pub fn finished(&mut self) -> bool {
        self.busy = false;
        self.rounds += 1;
        self.try_start()
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    fn try_start(&mut self) -> bool {
        if self.ready && !self.busy && self.dirty {
            self.busy = true;
            self.dirty = false;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_before_the_join_is_answered() {
        let mut n = Negotiation::default();
        assert!(!n.request());
        assert!(n.joined());
        assert!(n.is_busy());
    }

    #[test]
    fn changes_during_a_round_make_exactly_one_more() {
        let mut n = Negotiation::default();
        assert!(!n.joined());
        assert!(n.request());
        assert!(!n.request());
        assert!(!n.request());
        assert!(n.finished());
        assert!(!n.finished());
        assert_eq!(n.rounds, 2);
        assert!(!n.is_busy());
    }
}
