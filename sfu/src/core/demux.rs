//! Which participant a datagram belongs to (sans-IO).
//!
//! All participants share one UDP port. A known source address maps to its participant; a
//! new one is considered only for an ICE connectivity check, a STUN Binding request whose
//! USERNAME is `<our ufrag>:<their ufrag>` (RFC 8445 §7.2.2), and only accepted once the
//! participant's `Rtc` has verified its integrity (the caller's job). Looking the ufrag up
//! in a map keeps the cost of a stray or hostile datagram constant, whatever the number of
//! participants. A participant whose address changes (NAT rebinding, a new network) is
//! found again by its next check; so is one after an ICE restart (new ufrag). When each
//! address was last heard from is kept, so the core can tell a path that went quiet.

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use str0m::ice::StunMessage;

use crate::ids::ParticipantSlot;

/// Source addresses remembered per participant (one per candidate pair it uses); the
/// oldest is forgotten first.
pub const MAX_ADDRS_PER_PARTICIPANT: usize = 8;

#[derive(Debug, Default)]
pub struct Demux {
    /// Each known address: whose it is and when it was last heard from.
    by_addr: HashMap<SocketAddr, (ParticipantSlot, Instant)>,
    /// Our ICE ufrag(s) of each participant: one, or two during an ICE restart.
    by_ufrag: HashMap<String, ParticipantSlot>,
    owned: HashMap<ParticipantSlot, Owned>,
}

#[derive(Debug, Default)]
struct Owned {
    addrs: Vec<SocketAddr>,
    ufrags: Vec<String>,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// From a known address.
    Known(ParticipantSlot),
    /// From a new address, a check naming this participant: accept it only if the
    /// participant's `Rtc` does, then [`Demux::learn`] the address. `nominating`: it
    /// carries USE-CANDIDATE (the browser sends on this path).
    Check {
        slot: ParticipantSlot,
        nominating: bool,
    },
    /// For nobody.
    Unknown,
}

impl Demux {
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8], now: Instant) -> Route {
        if let Some((slot, seen)) = self.by_addr.get_mut(&source) {
            *seen = now;
            return Route::Known(*slot);
        }
        let Some(check) = parse_check(datagram) else {
            return Route::Unknown;
        };
        match self.by_ufrag.get(check.ufrag) {
            Some(slot) => Route::Check {
                slot: *slot,
                nominating: check.nominating,
            },
            None => Route::Unknown,
        }
    }

    /// When `addr` was last heard from, if it is known.
    pub fn last_seen(&self, addr: SocketAddr) -> Option<Instant> {
        self.by_addr.get(&addr).map(|(_, seen)| *seen)
    }

    /// `source` belongs to `slot` from now on.
    pub fn learn(&mut self, source: SocketAddr, slot: ParticipantSlot, now: Instant) {
        let owned = self.owned.entry(slot).or_default();
        if owned.addrs.len() >= MAX_ADDRS_PER_PARTICIPANT {
            let oldest = owned.addrs.remove(0);
            self.by_addr.remove(&oldest);
        }
        owned.addrs.push(source);
        if let Some((previous, _)) = self.by_addr.insert(source, (slot, now)) {
            // The address moved to another participant (a NAT reusing a port).
            if previous != slot {
                if let Some(other) = self.owned.get_mut(&previous) {
                    other.addrs.retain(|a| *a != source);
                }
            }
        }
    }

    /// Checks naming `ufrag` go to `slot`.
    pub fn add_ufrag(&mut self, ufrag: String, slot: ParticipantSlot) {
        self.owned
            .entry(slot)
            .or_default()
            .ufrags
            .push(ufrag.clone());
        self.by_ufrag.insert(ufrag, slot);
    }

    /// `ufrag` is no longer ours (replaced by an ICE restart).
    pub fn remove_ufrag(&mut self, ufrag: &str, slot: ParticipantSlot) {
        if self.by_ufrag.get(ufrag) == Some(&slot) {
            self.by_ufrag.remove(ufrag);
        }
        if let Some(owned) = self.owned.get_mut(&slot) {
            owned.ufrags.retain(|u| u != ufrag);
        }
    }

    /// Forgets everything about `slot` (it left).
    pub fn forget(&mut self, slot: ParticipantSlot) {
        let Some(owned) = self.owned.remove(&slot) else {
            return;
        };
        for addr in owned.addrs {
            if self.by_addr.get(&addr).is_some_and(|(s, _)| *s == slot) {
                self.by_addr.remove(&addr);
            }
        }
        for ufrag in owned.ufrags {
            if self.by_ufrag.get(&ufrag) == Some(&slot) {
                self.by_ufrag.remove(&ufrag);
            }
        }
    }

    #[cfg(test)]
    pub fn addrs(&self, slot: ParticipantSlot) -> &[SocketAddr] {
        self.owned.get(&slot).map_or(&[], |o| o.addrs.as_slice())
    }

    /// Nothing remembered (every participant left).
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty() && self.by_ufrag.is_empty() && self.owned.is_empty()
    }
}

/// An ICE connectivity check: our ufrag from its USERNAME, and whether it nominates.
struct Check<'a> {
    ufrag: &'a str,
    nominating: bool,
}

/// A STUN Binding request with a USERNAME; `None` for anything else.
fn parse_check(datagram: &[u8]) -> Option<Check<'_>> {
    // A cheap look at the type and magic cookie first: RTP, RTCP and DTLS never start like
    // this, and str0m's parser allocates on errors.
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    if datagram.len() < 20 || datagram[0..2] != BINDING_REQUEST || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let message = StunMessage::parse(datagram).ok()?;
    if !message.is_binding_request() {
        return None;
    }
    let (ufrag, _) = message.username()?.split_once(':')?;
    Some(Check {
        ufrag,
        nominating: message.use_candidate(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use str0m::ice::TransId;

    use super::*;

    /// A Binding request as a browser sends it (integrity computed with a dummy HMAC: the
    /// demux only reads, the participant's `Rtc` verifies).
    fn request(username: &str, nominating: bool) -> Vec<u8> {
        let message =
            StunMessage::binding_request(username, TransId::new(), true, 7, 100, nominating);
        let mut buf = vec![0u8; 1500];
        let n = message
            .to_bytes(Some(b"password"), &mut buf, |_, _| [0u8; 20])
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn binding_request(username: &str) -> Vec<u8> {
        request(username, false)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn stun_username_ufrag(datagram: &[u8]) -> Option<&str> {
        parse_check(datagram).map(|check| check.ufrag)
    }

    fn check(slot: ParticipantSlot) -> Route {
        Route::Check {
            slot,
            nominating: false,
        }
    }

    #[test]
    fn finds_our_ufrag_in_a_binding_request() {
        assert_eq!(
            stun_username_ufrag(&binding_request("srvA:brw")),
            Some("srvA")
        );
        assert_eq!(stun_username_ufrag(&binding_request("s1:b22x")), Some("s1"));
    }

    #[test]
    fn ignores_everything_but_a_binding_request_with_a_username() {
        assert_eq!(stun_username_ufrag(&[]), None);
        assert_eq!(stun_username_ufrag(&[0x80; 100]), None, "RTP/DTLS");
        let mut response = binding_request("a:b");
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(stun_username_ufrag(&response), None, "a response");
        let mut no_cookie = binding_request("a:b");
        no_cookie[4] = 0;
        assert_eq!(stun_username_ufrag(&no_cookie), None);
        assert_eq!(stun_username_ufrag(&binding_request("nocolon")), None);
    }

    #[test]
    fn truncated_or_lying_lengths_are_refused() {
        let packet = binding_request("srvA:brw");
        for cut in 0..packet.len() {
            assert_eq!(stun_username_ufrag(&packet[..cut]), None, "cut at {cut}");
        }
        let mut long = packet.clone();
        long[2..4].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(stun_username_ufrag(&long), None);
    }

    #[test]
    fn routes_known_addresses_and_checks_naming_a_participant() {
        let t0 = Instant::now();
        let mut demux = Demux::default();
        let (a, b) = (ParticipantSlot(0), ParticipantSlot(1));
        demux.add_ufrag("ufA".into(), a);
        demux.add_ufrag("ufB".into(), b);
        assert_eq!(
            demux.route(addr(1), &binding_request("ufB:x"), t0),
            check(b)
        );
        assert_eq!(
            demux.route(addr(1), &binding_request("nobody:x"), t0),
            Route::Unknown
        );
        assert_eq!(demux.route(addr(1), &[0x80; 50], t0), Route::Unknown);
        demux.learn(addr(1), b, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(demux.route(addr(1), &[0x80; 50], t1), Route::Known(b));
        assert_eq!(demux.last_seen(addr(1)), Some(t1));
        // NAT rebinding: b's next check comes from a new address and is routed to it too,
        // and says whether the browser nominates that path.
        assert_eq!(
            demux.route(addr(2), &request("ufB:x", true), t1),
            Route::Check {
                slot: b,
                nominating: true
            }
        );
        demux.learn(addr(2), b, t1);
        assert_eq!(demux.addrs(b), &[addr(1), addr(2)]);
    }

    #[test]
    fn at_most_eight_addresses_each_oldest_forgotten() {
        let t0 = Instant::now();
        let mut demux = Demux::default();
        let a = ParticipantSlot(3);
        for port in 1..=10 {
            demux.learn(addr(port), a, t0);
        }
        assert_eq!(demux.addrs(a).len(), MAX_ADDRS_PER_PARTICIPANT);
        assert_eq!(demux.route(addr(1), &[0x80], t0), Route::Unknown);
        assert_eq!(demux.route(addr(10), &[0x80], t0), Route::Known(a));
    }

    #[test]
    fn an_ice_restart_swaps_the_ufrag_and_leaving_forgets_everything() {
        let t0 = Instant::now();
        let mut demux = Demux::default();
        let a = ParticipantSlot(0);
        demux.add_ufrag("old".into(), a);
        demux.add_ufrag("new".into(), a);
        assert_eq!(
            demux.route(addr(5), &binding_request("old:x"), t0),
            check(a)
        );
        demux.remove_ufrag("old", a);
        assert_eq!(
            demux.route(addr(5), &binding_request("old:x"), t0),
            Route::Unknown
        );
        assert_eq!(
            demux.route(addr(5), &binding_request("new:x"), t0),
            check(a)
        );
        demux.learn(addr(5), a, t0);
        demux.forget(a);
        assert!(demux.is_empty());
        assert_eq!(
            demux.route(addr(5), &binding_request("new:x"), t0),
            Route::Unknown
        );
    }

    #[test]
    fn an_address_taken_over_by_another_participant_moves() {
        let t0 = Instant::now();
        let mut demux = Demux::default();
        let (a, b) = (ParticipantSlot(0), ParticipantSlot(1));
        demux.learn(addr(1), a, t0);
        demux.learn(addr(1), b, t0);
        assert_eq!(demux.addrs(a), &[] as &[SocketAddr]);
        demux.forget(a);
        assert_eq!(demux.route(addr(1), &[0x80], t0), Route::Known(b));
    }
}
