//! Allocation, permission and channel tables (RFC 8656 §5–§12).
//!
//! Allocations live in a slab indexed by [`AllocId`]; the relay socket's receive
//! path carries its `AllocId`, so peer→client traffic costs one array index, and
//! client→relay traffic costs one hash lookup on the 5-tuple. Permissions and
//! channels are short vectors scanned linearly: a WebRTC allocation has one or two
//! peers, and the per-allocation caps keep worst-case memory bounded.

use crate::quota::TokenBucket;
use crate::stun::TransactionId;
use crate::Transport;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Caps per allocation; beyond them requests get 508 Insufficient Capacity.
pub const MAX_PERMISSIONS: usize = 64;
pub const MAX_CHANNELS: usize = 64;
/// After a channel binding expires, neither its number nor its peer may be bound
/// to something else for this long (RFC 8656 §12).
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocId {
    index: u32,
    generation: u32,
}

impl AllocId {
    /// Packs the id into a `u64` (e.g. an epoll token); the index is the high half,
    /// so `u32::MAX << 32 | n` is never an allocation and can tag other sources.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }

    pub fn from_u64(v: u64) -> AllocId {
        AllocId {
            index: (v >> 32) as u32,
            generation: v as u32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
}

#[derive(Clone, Copy, Debug)]
pub struct Channel {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// Number bound to another peer, or peer bound to another number.
    Conflict,
    Full,
}

pub struct Allocation<R, C> {
    pub five_tuple: FiveTuple,
    pub username: Box<str>,
    pub key: [u8; 16],
    /// Address the relay socket is bound to.
    pub local: SocketAddr,
    /// Address advertised in XOR-RELAYED-ADDRESS (after external-ip mapping).
    pub relayed: SocketAddr,
    pub expires: Instant,
    pub alloc_tid: TransactionId,
    pub permissions: Vec<Permission>,
    pub channels: Vec<Channel>,
    pub relay: R,
    pub client: C,
    pub bucket: Option<TokenBucket>,
    /// A TCP allocation (RFC 6062): peers connect and are connected to over TCP, each
    /// connection piped to its own client data connection; no channels, no Send.
    pub tcp: bool,
}

impl<R, C> Allocation<R, C> {
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }

    pub fn add_permission(&mut self, ip: IpAddr, expires: Instant) -> Result<(), BindError> {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = expires;
            return Ok(());
        }
        if self.permissions.len() >= MAX_PERMISSIONS {
            return Err(BindError::Full);
        }
        self.permissions.push(Permission { ip, expires });
        Ok(())
    }

    /// Peer of an active channel.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
            .map(|c| c.peer)
    }

    /// Number of the active channel bound to `peer`.
    pub fn channel_for(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
            .map(|c| c.number)
    }

    /// Bind or refresh a channel. Entries in cooldown still block conflicting binds.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        expires: Instant,
    ) -> Result<(), BindError> {
        for c in &mut self.channels {
            match (c.number == number, c.peer == peer) {
                (true, true) => {
                    c.expires = expires;
                    return Ok(());
                }
                (false, false) => {}
                _ => return Err(BindError::Conflict),
            }
        }
        if self.channels.len() >= MAX_CHANNELS {
            return Err(BindError::Full);
        }
        self.channels.push(Channel {
            number,
            peer,
            expires,
        });
        Ok(())
    }

    /// Drop expired permissions and channels whose cooldown has passed.
    pub fn expire(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
    }
}

struct Slot<R, C> {
    generation: u32,
    alloc: Option<Allocation<R, C>>,
}

pub struct AllocationTable<R, C> {
    slots: Vec<Slot<R, C>>,
    free: Vec<u32>,
    by_client: HashMap<FiveTuple, AllocId>,
}

impl<R, C> Default for AllocationTable<R, C> {
    fn default() -> Self {
        AllocationTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_client: HashMap::new(),
        }
    }
}

impl<R, C> AllocationTable<R, C> {
    /// The id the next `insert` will return (the relay socket is bound, and told
    /// its id, before the allocation exists).
    pub fn next_id(&self) -> AllocId {
        match self.free.last() {
            Some(&i) => AllocId {
                index: i,
                generation: self.slots[i as usize].generation,
            },
            None => AllocId {
                index: self.slots.len() as u32,
                generation: 0,
            },
        }
    }

    pub fn insert(&mut self, a: Allocation<R, C>) -> AllocId {
        let id = self.next_id();
        self.by_client.insert(a.five_tuple, id);
        match self.free.pop() {
            Some(i) => self.slots[i as usize].alloc = Some(a),
            None => self.slots.push(Slot {
                generation: 0,
                alloc: Some(a),
            }),
        }
        id
    }

    pub fn find(&self, ft: &FiveTuple) -> Option<AllocId> {
        self.by_client.get(ft).copied()
    }

    pub fn get(&self, id: AllocId) -> Option<&Allocation<R, C>> {
        let s = self.slots.get(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.alloc.as_ref()
    }

    pub fn get_mut(&mut self, id: AllocId) -> Option<&mut Allocation<R, C>> {
        let s = self.slots.get_mut(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.alloc.as_mut()
    }

    pub fn remove(&mut self, id: AllocId) -> Option<Allocation<R, C>> {
        let s = self.slots.get_mut(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        let a = s.alloc.take()?;
        // A new generation makes stale ids (e.g. a relay task still draining its
        // socket) miss instead of hitting the slot's next tenant.
        s.generation = s.generation.wrapping_add(1);
        self.free.push(id.index);
        self.by_client.remove(&a.five_tuple);
        Some(a)
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Ids of allocations matching `f` (used by the expiry sweep).
    pub fn ids_where(&self, mut f: impl FnMut(&Allocation<R, C>) -> bool) -> Vec<AllocId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.alloc {
                Some(a) if f(a) => Some(AllocId {
                    index: i as u32,
                    generation: s.generation,
                }),
                _ => None,
            })
            .collect()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Allocation<R, C>> {
        self.slots.iter_mut().filter_map(|s| s.alloc.as_mut())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Allocation<R, C>> {
        self.slots.iter().filter_map(|s| s.alloc.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(now: Instant, port: u16) -> Allocation<(), ()> {
        Allocation {
            five_tuple: FiveTuple {
                transport: Transport::Udp,
                client: SocketAddr::from(([192, 0, 2, 1], port)),
                server: SocketAddr::from(([192, 0, 2, 100], 3478)),
            },
            username: "u".into(),
            key: [0; 16],
            local: SocketAddr::from(([192, 0, 2, 100], 50000)),
            relayed: SocketAddr::from(([192, 0, 2, 100], 50000)),
            expires: now + Duration::from_secs(600),
            alloc_tid: [0; 12],
            permissions: Vec::new(),
            channels: Vec::new(),
            relay: (),
            client: (),
            bucket: None,
            tcp: false,
        }
    }

    #[test]
    fn slab_reuse_bumps_generation() {
        let now = Instant::now();
        let mut t = AllocationTable::default();
        let a = t.insert(alloc(now, 1));
        assert_eq!(t.len(), 1);
        assert!(t.remove(a).is_some());
        assert!(t.get(a).is_none());
        let b = t.insert(alloc(now, 2));
        assert_ne!(a, b, "reused slot must carry a new generation");
        assert!(t.get(a).is_none());
        assert!(t.remove(a).is_none());
        assert!(t.get(b).is_some());
        assert_eq!(t.find(&alloc(now, 2).five_tuple), Some(b));
        assert_eq!(t.find(&alloc(now, 1).five_tuple), None);
    }

    #[test]
    fn permissions_expire() {
        let now = Instant::now();
        let mut a = alloc(now, 1);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        a.add_permission(ip, now + Duration::from_secs(300))
            .unwrap();
        assert!(a.has_permission(ip, now));
        assert!(!a.has_permission(ip, now + Duration::from_secs(300)));
        a.expire(now + Duration::from_secs(301));
        assert!(a.permissions.is_empty());
    }

    #[test]
    fn permission_cap() {
        let now = Instant::now();
        let mut a = alloc(now, 1);
        for i in 0..MAX_PERMISSIONS {
            a.add_permission(IpAddr::from([10, 0, 0, i as u8]), now)
                .unwrap();
        }
        assert_eq!(
            a.add_permission(IpAddr::from([10, 0, 1, 0]), now),
            Err(BindError::Full)
        );
        // Refreshing an existing one still works at the cap.
        a.add_permission(IpAddr::from([10, 0, 0, 0]), now).unwrap();
    }

    #[test]
    fn channel_rules() {
        let now = Instant::now();
        let mut a = alloc(now, 1);
        let p1: SocketAddr = "192.0.2.9:1000".parse().unwrap();
        let p2: SocketAddr = "192.0.2.9:1001".parse().unwrap();
        let exp = now + Duration::from_secs(600);
        a.bind_channel(0x4000, p1, exp).unwrap();
        assert_eq!(a.channel_peer(0x4000, now), Some(p1));
        assert_eq!(a.channel_for(p1, now), Some(0x4000));
        // Same pair refreshes.
        a.bind_channel(0x4000, p1, exp + Duration::from_secs(10))
            .unwrap();
        // Number to another peer, or peer to another number: conflict.
        assert_eq!(a.bind_channel(0x4000, p2, exp), Err(BindError::Conflict));
        assert_eq!(a.bind_channel(0x4001, p1, exp), Err(BindError::Conflict));
        a.bind_channel(0x4001, p2, exp).unwrap();
        // Expired channel carries no data but still blocks rebinding during cooldown.
        let later = exp + Duration::from_secs(11);
        assert_eq!(a.channel_peer(0x4000, later), None);
        a.expire(later);
        assert_eq!(a.bind_channel(0x4000, p2, later), Err(BindError::Conflict));
        let after = later + CHANNEL_COOLDOWN;
        a.expire(after);
        assert!(a.channels.is_empty());
        a.bind_channel(0x4000, p2, after + Duration::from_secs(1))
            .unwrap();
    }
}
