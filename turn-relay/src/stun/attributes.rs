//! Attribute types we understand and the address codecs (RFC 8489 §14, RFC 8656 §18).

use super::message::{TransactionId, MAGIC_COOKIE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub type AttrType = u16;

pub const MAPPED_ADDRESS: AttrType = 0x0001;
pub const USERNAME: AttrType = 0x0006;
pub const MESSAGE_INTEGRITY: AttrType = 0x0008;
pub const ERROR_CODE: AttrType = 0x0009;
pub const UNKNOWN_ATTRIBUTES: AttrType = 0x000A;
pub const CHANNEL_NUMBER: AttrType = 0x000C;
pub const LIFETIME: AttrType = 0x000D;
pub const XOR_PEER_ADDRESS: AttrType = 0x0012;
pub const DATA: AttrType = 0x0013;
pub const REALM: AttrType = 0x0014;
pub const NONCE: AttrType = 0x0015;
pub const XOR_RELAYED_ADDRESS: AttrType = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: AttrType = 0x0017;
pub const EVEN_PORT: AttrType = 0x0018;
pub const REQUESTED_TRANSPORT: AttrType = 0x0019;
pub const DONT_FRAGMENT: AttrType = 0x001A;
pub const MESSAGE_INTEGRITY_SHA256: AttrType = 0x001C;
pub const PASSWORD_ALGORITHM: AttrType = 0x001D;
pub const USERHASH: AttrType = 0x001E;
pub const XOR_MAPPED_ADDRESS: AttrType = 0x0020;
pub const RESERVATION_TOKEN: AttrType = 0x0022;
pub const PRIORITY: AttrType = 0x0024;
pub const USE_CANDIDATE: AttrType = 0x0025;
pub const PADDING: AttrType = 0x0026;
pub const RESPONSE_PORT: AttrType = 0x0027;
/// RFC 6062: names a peer data connection of a TCP allocation.
pub const CONNECTION_ID: AttrType = 0x002A;
// Comprehension-optional range.
pub const ADDITIONAL_ADDRESS_FAMILY: AttrType = 0x8000;
pub const PASSWORD_ALGORITHMS: AttrType = 0x8002;
pub const ALTERNATE_DOMAIN: AttrType = 0x8003;
pub const SOFTWARE: AttrType = 0x8022;
pub const ALTERNATE_SERVER: AttrType = 0x8023;
pub const FINGERPRINT: AttrType = 0x8028;
pub const ICE_CONTROLLED: AttrType = 0x8029;
pub const ICE_CONTROLLING: AttrType = 0x802A;
pub const RESPONSE_ORIGIN: AttrType = 0x802B;
pub const OTHER_ADDRESS: AttrType = 0x802C;

/// Comprehension-required attributes this server accepts. Anything else below
/// 0x8000 in a request earns a 420 (RFC 8489 §7.3.1).
pub fn is_known(t: AttrType) -> bool {
    matches!(
        t,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | CONNECTION_ID
            | PRIORITY
            | USE_CANDIDATE
            | PADDING
            | RESPONSE_PORT
            // coturn clients send these (ORIGIN-ish and bandwidth); harmless to accept.
            | 0x0010 // BANDWIDTH (RFC 5766 draft, sent by turnutils_uclient -a)
            | 0x0030 // CONNECTION-ID region / legacy
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("malformed address attribute")]
    BadAddress,
    #[error("malformed attribute value")]
    BadValue,
}

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// Writes the XOR-encoded address into `out`, returns the value length (8 or 20).
pub fn encode_xor_address(addr: SocketAddr, tid: &TransactionId, out: &mut [u8; 20]) -> usize {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out[0] = 0;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_V4;
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            out[4..8].copy_from_slice(&x.to_be_bytes());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_V6;
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(tid);
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ mask[i];
            }
            20
        }
    }
}

pub fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Result<SocketAddr, AttrError> {
    if v.len() < 4 {
        return Err(AttrError::BadAddress);
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (v[1], v.len()) {
        (FAMILY_V4, 8) => {
            let x = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC_COOKIE;
            Ok(SocketAddr::new(Ipv4Addr::from(x).into(), port))
        }
        (FAMILY_V6, 20) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(tid);
            let mut o = [0u8; 16];
            for i in 0..16 {
                o[i] = v[4 + i] ^ mask[i];
            }
            Ok(SocketAddr::new(Ipv6Addr::from(o).into(), port))
        }
        _ => Err(AttrError::BadAddress),
    }
}

/// Plain (non-XOR) MAPPED-ADDRESS, still sent for RFC 3489-era clients.
pub fn encode_address(addr: SocketAddr, out: &mut [u8; 20]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_V4;
            out[4..8].copy_from_slice(&ip.octets());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_V6;
            out[4..20].copy_from_slice(&ip.octets());
            20
        }
    }
}

pub fn decode_u32(v: &[u8]) -> Result<u32, AttrError> {
    match v {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(AttrError::BadValue),
    }
}

/// CHANNEL-NUMBER: 16-bit number followed by RFFU.
pub fn decode_channel_number(v: &[u8]) -> Result<u16, AttrError> {
    match v {
        [a, b, _, _] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(AttrError::BadValue),
    }
}

/// ERROR-CODE value → (code, reason).
pub fn decode_error(v: &[u8]) -> Result<(u16, &str), AttrError> {
    if v.len() < 4 {
        return Err(AttrError::BadValue);
    }
    let code = (v[2] & 0x7) as u16 * 100 + v[3] as u16;
    let reason = std::str::from_utf8(&v[4..]).map_err(|_| AttrError::BadValue)?;
    Ok((code, reason))
}

/// Address family codes of REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.11).
pub fn decode_family(v: &[u8]) -> Result<u8, AttrError> {
    match v {
        [f @ (FAMILY_V4 | FAMILY_V6), _, _, _] => Ok(*f),
        _ => Err(AttrError::BadValue),
    }
}

pub const FAMILY_IPV4: u8 = FAMILY_V4;
pub const FAMILY_IPV6: u8 = FAMILY_V6;

/// Short reason phrases; error responses stay small (no amplification).
pub fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        446 => "Connection Already Exists",
        447 => "Connection Timeout or Failure",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_roundtrip_v4_v6() {
        let tid = [0xA5; 12];
        for a in [
            "192.0.2.1:32853".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:40000".parse().unwrap(),
        ] {
            let mut v = [0u8; 20];
            let n = encode_xor_address(a, &tid, &mut v);
            assert_eq!(decode_xor_address(&v[..n], &tid).unwrap(), a);
        }
    }

    #[test]
    fn rfc5769_xor_mapped_v4() {
        // RFC 5769 §2.2: 192.0.2.1:32853 encodes as 0x0001 a147 e112a643.
        let v = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(
            decode_xor_address(&v, &[0; 12]).unwrap(),
            "192.0.2.1:32853".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn bad_address_lengths() {
        assert!(decode_xor_address(&[0, 1, 0, 0, 1], &[0; 12]).is_err());
        assert!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &[0; 12]).is_err());
        assert!(decode_xor_address(&[0, 9, 0, 0, 1, 2, 3, 4], &[0; 12]).is_err());
        assert!(decode_u32(&[1, 2, 3]).is_err());
        assert!(decode_channel_number(&[0x40]).is_err());
        assert!(decode_family(&[3, 0, 0, 0]).is_err());
    }
}
