//! STUN message header, attribute walking and encoding.

use super::attributes::{self, AttrType};
use super::integrity;
use std::net::SocketAddr;

pub const HEADER_LEN: usize = 20;
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

pub type TransactionId = [u8; 12];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    pub const BINDING: Method = Method(0x001);
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// RFC 6062 (TCP allocations).
    pub const CONNECT: Method = Method(0x00a);
    pub const CONNECTION_BIND: Method = Method(0x00b);
    pub const CONNECTION_ATTEMPT: Method = Method(0x00c);
}

/// Interleave method and class bits into the 14-bit message type (RFC 8489 §5).
pub fn encode_type(method: Method, class: Class) -> u16 {
    let m = method.0 & 0x0FFF;
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

pub fn decode_type(t: u16) -> (Method, Class) {
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::Success,
        _ => Class::Error,
    };
    (Method(m), class)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message")]
    NotStun,
    #[error("length field does not match the packet")]
    BadLength,
    #[error("attribute runs past the end of the message")]
    BadAttribute,
    #[error("attribute after FINGERPRINT")]
    AfterFingerprint,
}

/// A parsed view over a STUN message. Attributes are walked lazily; parsing only
/// checks that the attribute TLVs tile the message exactly, so later lookups can
/// slice without bounds surprises.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    pub method: Method,
    pub class: Class,
    pub transaction_id: TransactionId,
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    integrity_at: Option<usize>,
    /// Offset of the FINGERPRINT attribute header, if present (always last).
    fingerprint_at: Option<usize>,
}

impl<'a> Message<'a> {
    /// Parse one complete STUN message; `buf` must be exactly the message
    /// (the UDP datagram, or one frame cut by the stream framer).
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort);
        }
        let t = u16::from_be_bytes([buf[0], buf[1]]);
        if t & 0xC000 != 0 || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
            return Err(DecodeError::NotStun);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if len % 4 != 0 || HEADER_LEN + len != buf.len() {
            return Err(DecodeError::BadLength);
        }
        let (method, class) = decode_type(t);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);

        let mut integrity_at = None;
        let mut fingerprint_at = None;
        let mut off = HEADER_LEN;
        while off < buf.len() {
            if fingerprint_at.is_some() {
                return Err(DecodeError::AfterFingerprint);
            }
            if off + 4 > buf.len() {
                return Err(DecodeError::BadAttribute);
            }
            let at = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let alen = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
            let end = off + 4 + alen;
            if end > buf.len() {
                return Err(DecodeError::BadAttribute);
            }
            match at {
                attributes::MESSAGE_INTEGRITY if integrity_at.is_none() => integrity_at = Some(off),
                attributes::FINGERPRINT => fingerprint_at = Some(off),
                _ => {}
            }
            off = end + pad4(alen);
        }
        if off != buf.len() {
            return Err(DecodeError::BadAttribute);
        }
        Ok(Message {
            buf,
            method,
            class,
            transaction_id,
            integrity_at,
            fingerprint_at,
        })
    }

    pub fn raw(&self) -> &'a [u8] {
        self.buf
    }

    pub fn integrity_offset(&self) -> Option<usize> {
        self.integrity_at
    }

    pub fn fingerprint_offset(&self) -> Option<usize> {
        self.fingerprint_at
    }

    /// Attributes covered by MESSAGE-INTEGRITY (RFC 8489 §14.5: anything after it
    /// except FINGERPRINT must be ignored). MESSAGE-INTEGRITY itself is yielded.
    pub fn attributes(&self) -> Attributes<'a> {
        let end = match (self.integrity_at, self.fingerprint_at) {
            (Some(mi), _) => mi + 4 + 20,
            (None, Some(fp)) => fp,
            (None, None) => self.buf.len(),
        };
        Attributes {
            buf: &self.buf[..end.min(self.buf.len())],
            off: HEADER_LEN,
        }
    }

    /// First value of attribute type `t`.
    pub fn get(&self, t: AttrType) -> Option<&'a [u8]> {
        self.attributes().find(|(at, _)| *at == t).map(|(_, v)| v)
    }

    pub fn get_xor_address(
        &self,
        t: AttrType,
    ) -> Option<Result<SocketAddr, attributes::AttrError>> {
        self.get(t)
            .map(|v| attributes::decode_xor_address(v, &self.transaction_id))
    }

    /// Comprehension-required attributes (type < 0x8000) that we do not know.
    pub fn unknown_required(&self) -> impl Iterator<Item = AttrType> + 'a {
        self.attributes()
            .map(|(t, _)| t)
            .filter(|t| *t < 0x8000 && !attributes::is_known(*t))
    }

    /// Verify MESSAGE-INTEGRITY with the long-term key.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        match self.integrity_at {
            Some(at) => integrity::verify_integrity(self.buf, at, key),
            None => false,
        }
    }

    /// Verify FINGERPRINT if present; messages without one pass.
    pub fn check_fingerprint(&self) -> bool {
        match self.fingerprint_at {
            Some(at) => integrity::verify_fingerprint(self.buf, at),
            None => true,
        }
    }
}

pub struct Attributes<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (AttrType, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        if self.off + 4 > b.len() {
            return None;
        }
        let t = u16::from_be_bytes([b[self.off], b[self.off + 1]]);
        let len = u16::from_be_bytes([b[self.off + 2], b[self.off + 3]]) as usize;
        let start = self.off + 4;
        let end = start.checked_add(len).filter(|e| *e <= b.len())?;
        self.off = end + pad4(len);
        Some((t, &b[start..end]))
    }
}

pub(crate) fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Appends a STUN message to a caller-owned buffer. The header's length field is
/// kept current after every attribute, which is what MESSAGE-INTEGRITY and
/// FINGERPRINT need when they are computed.
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    tid: TransactionId,
}

impl<'b> MessageWriter<'b> {
    /// Clears `buf` and writes the header.
    pub fn new(buf: &'b mut Vec<u8>, method: Method, class: Class, tid: TransactionId) -> Self {
        buf.clear();
        buf.extend_from_slice(&encode_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        MessageWriter { buf, tid }
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn add(&mut self, t: AttrType, value: &[u8]) -> &mut Self {
        debug_assert!(value.len() <= u16::MAX as usize);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = pad4(value.len());
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    pub fn add_u32(&mut self, t: AttrType, v: u32) -> &mut Self {
        self.add(t, &v.to_be_bytes())
    }

    pub fn add_xor_address(&mut self, t: AttrType, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = attributes::encode_xor_address(addr, &self.tid, &mut v);
        self.add(t, &v[..n])
    }

    pub fn add_address(&mut self, t: AttrType, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = attributes::encode_address(addr, &mut v);
        self.add(t, &v[..n])
    }

    pub fn add_error(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = [0u8; 4 + 64];
        let r = &reason.as_bytes()[..reason.len().min(64)];
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        v[4..4 + r.len()].copy_from_slice(r);
        self.add(attributes::ERROR_CODE, &v[..4 + r.len()])
    }

    /// MESSAGE-INTEGRITY over everything written so far.
    pub fn add_integrity(&mut self, key: &[u8]) -> &mut Self {
        // The length must already count the MI attribute when the HMAC is taken.
        let at = self.buf.len();
        self.add(attributes::MESSAGE_INTEGRITY, &[0u8; 20]);
        let mac = integrity::hmac_sha1(key, &[&self.buf[..at]]);
        self.buf[at + 4..at + 24].copy_from_slice(&mac);
        self
    }

    /// Closes a response: MESSAGE-INTEGRITY when the request was authenticated (`key`),
    /// then FINGERPRINT when asked for; both must come last, in that order.
    pub fn seal(&mut self, key: Option<&[u8]>, fingerprint: bool) -> &mut Self {
        if let Some(key) = key {
            self.add_integrity(key);
        }
        if fingerprint {
            self.add_fingerprint();
        }
        self
    }

    pub fn add_fingerprint(&mut self) -> &mut Self {
        let at = self.buf.len();
        self.add_u32(attributes::FINGERPRINT, 0);
        let fp = integrity::fingerprint(&self.buf[..at]);
        self.buf[at + 4..at + 8].copy_from_slice(&fp.to_be_bytes());
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_roundtrip() {
        for m in [
            Method::BINDING,
            Method::ALLOCATE,
            Method::CHANNEL_BIND,
            Method(0xABC),
        ] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(decode_type(encode_type(m, c)), (m, c));
            }
        }
        assert_eq!(encode_type(Method::BINDING, Class::Request), 0x0001);
        assert_eq!(encode_type(Method::BINDING, Class::Success), 0x0101);
        assert_eq!(encode_type(Method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(encode_type(Method::SEND, Class::Indication), 0x0016);
        assert_eq!(encode_type(Method::DATA, Class::Indication), 0x0017);
    }

    #[test]
    fn write_then_parse() {
        let mut buf = Vec::new();
        let tid = [7u8; 12];
        let mut w = MessageWriter::new(&mut buf, Method::ALLOCATE, Class::Request, tid);
        w.add(attributes::USERNAME, b"alice");
        w.add_u32(attributes::LIFETIME, 600);
        w.add_integrity(b"key");
        w.add_fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.method, Method::ALLOCATE);
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.transaction_id, tid);
        assert_eq!(m.get(attributes::USERNAME), Some(&b"alice"[..]));
        assert!(m.check_integrity(b"key"));
        assert!(!m.check_integrity(b"other"));
        assert!(m.check_fingerprint());
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        assert_eq!(
            Message::parse(&[0u8; 5]).unwrap_err(),
            DecodeError::TooShort
        );
        let mut buf = Vec::new();
        MessageWriter::new(&mut buf, Method::BINDING, Class::Request, [1; 12])
            .add(attributes::SOFTWARE, b"abcde");
        // Length field says more than there is.
        let mut short = buf.clone();
        short.truncate(buf.len() - 4);
        assert!(Message::parse(&short).is_err());
        // Attribute length pointing past the end while header length is right.
        let mut bad = buf.clone();
        bad[22..24].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(Message::parse(&bad).unwrap_err(), DecodeError::BadAttribute);
        // Wrong cookie.
        let mut nc = buf.clone();
        nc[4] ^= 1;
        assert_eq!(Message::parse(&nc).unwrap_err(), DecodeError::NotStun);
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, Method::REFRESH, Class::Request, [2; 12]);
        w.add_integrity(b"k");
        w.add(attributes::USERNAME, b"mallory");
        let m = Message::parse(&buf).unwrap();
        assert!(m.get(attributes::USERNAME).is_none());
    }

    #[test]
    fn fuzzish_never_panics() {
        // Deterministic pseudo-random inputs, including ones with a valid header.
        let mut x: u32 = 12345;
        for _ in 0..20000 {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            let len = (x % 64) as usize;
            let mut b: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32) >> 24) as u8)
                .collect();
            if b.len() >= 20 {
                b[0] &= 0x3F;
                b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                let l = (b.len() - 20) as u16;
                b[2..4].copy_from_slice(&l.to_be_bytes());
            }
            if let Ok(m) = Message::parse(&b) {
                let _ = m.attributes().count();
                let _ = m.check_integrity(b"k");
                let _ = m.check_fingerprint();
                let _ = m.get_xor_address(attributes::XOR_PEER_ADDRESS);
            }
        }
    }
}
