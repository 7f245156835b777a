//! Retransmission buffer of one publisher track (sans-IO).
//!
//! The last `capacity` packets of a track, indexed by their sequence number. A subscriber's
//! NACK is mapped back to the publisher's sequence number (see
//! [`Rewriter::original_sequence`](crate::rewrite::Rewriter::original_sequence)) and answered
//! from here. One buffer per publisher track serves every subscriber of that track.

#[derive(Debug)]
pub struct NackBuffer<T> {
    slots: Vec<Option<(u16, T)>>,
    mask: usize,
}

impl<T: Clone> NackBuffer<T> {
    /// `capacity` is rounded up to a power of two (at least 16, at most 32768).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(16, 32768).next_power_of_two();
        NackBuffer {
            slots: vec![None; capacity],
            mask: capacity - 1,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Stores a packet; it replaces whatever was `capacity` sequence numbers ago.
    pub fn push(&mut self, seq: u16, packet: T) {
        self.slots[usize::from(seq) & self.mask] = Some((seq, packet));
    }

    /// The packet with this sequence number, if it is still buffered.
    pub fn get(&self, seq: u16) -> Option<&T> {
        match &self.slots[usize::from(seq) & self.mask] {
            Some((stored, packet)) if *stored == seq => Some(packet),
            _ => None,
        }
    }
}

/// Expands an RTCP generic NACK item (RFC 4585 §6.2.1: PID + 16-bit BLP) into sequence numbers.
pub fn nack_sequences(pid: u16, blp: u16) -> impl Iterator<Item = u16> {
    std::iter::once(pid).chain(
        (0..16u16)
            .filter(move |bit| blp & (1 << bit) != 0)
            .map(move |bit| pid.wrapping_add(bit + 1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_capacity_packets() {
        let mut b = NackBuffer::new(20);
        assert_eq!(b.capacity(), 32);
        for seq in 65500u16..=65535 {
            b.push(seq, seq);
        }
        for seq in 0u16..10 {
            b.push(seq, seq);
        }
        // 46 pushed, 32 kept: 65514..=65535 and 0..=9.
        assert_eq!(b.get(65513), None);
        assert_eq!(b.get(65514), Some(&65514));
        assert_eq!(b.get(9), Some(&9));
        assert_eq!(b.get(10), None);
    }

    #[test]
    fn a_stale_slot_is_not_returned_for_another_sequence() {
        let mut b = NackBuffer::new(16);
        b.push(3, "a");
        assert_eq!(b.get(3 + 16), None);
        assert_eq!(b.get(3), Some(&"a"));
    }

    #[test]
    fn generic_nack_items() {
        assert_eq!(nack_sequences(100, 0).collect::<Vec<_>>(), [100]);
        assert_eq!(
            nack_sequences(65535, 0b1000_0000_0000_0101).collect::<Vec<_>>(),
            [65535, 0, 2, 15]
        );
    }
}
