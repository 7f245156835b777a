//! MESSAGE-INTEGRITY (HMAC-SHA1), FINGERPRINT (CRC-32) and the long-term key.

use super::attributes::FINGERPRINT;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Checks the MESSAGE-INTEGRITY attribute whose header starts at `at`. The HMAC
/// covers the message up to the attribute, with the header length rewritten to end
/// just after MESSAGE-INTEGRITY (so a trailing FINGERPRINT is excluded).
pub fn verify_integrity(msg: &[u8], at: usize, key: &[u8]) -> bool {
    if at + 24 > msg.len() || msg[at + 2..at + 4] != [0, 20] {
        return false;
    }
    let mut header = [0u8; 20];
    header.copy_from_slice(&msg[..20]);
    let len = (at + 24 - 20) as u16;
    header[2..4].copy_from_slice(&len.to_be_bytes());
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&header);
    mac.update(&msg[20..at]);
    // Constant-time comparison.
    mac.verify_slice(&msg[at + 4..at + 24]).is_ok()
}

const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// FINGERPRINT value for a message whose bytes (with the length field already
/// counting the FINGERPRINT attribute) are `prefix`.
pub fn fingerprint(prefix: &[u8]) -> u32 {
    crc32(prefix) ^ FINGERPRINT_XOR
}

pub fn verify_fingerprint(msg: &[u8], at: usize) -> bool {
    if at + 8 != msg.len() || u16::from_be_bytes([msg[at], msg[at + 1]]) != FINGERPRINT {
        return false;
    }
    let got = u32::from_be_bytes([msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]]);
    fingerprint(&msg[..at]) == got
}

/// CRC-32 (IEEE 802.3), table-driven. FINGERPRINT is only on requests and
/// responses, never on relayed data, so a table is fast enough.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::Message;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// RFC 5769 §2.4: request with long-term authentication.
    #[test]
    fn rfc5769_long_term_request() {
        let msg: [u8; 116] = [
            0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
            0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3,
            0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9,
            0x00, 0x00, 0x00, 0x15, 0x00, 0x1c, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39,
            0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54,
            0x76, 0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d,
            0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14, 0xf6, 0x70,
            0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
            0x8c, 0xa8, 0x96, 0x66,
        ];
        let m = Message::parse(&msg).unwrap();
        let user = std::str::from_utf8(m.get(crate::stun::attributes::USERNAME).unwrap()).unwrap();
        assert_eq!(user, "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}");
        // SASLprep("TheMatrIX") is itself; realm example.org.
        let key = long_term_key(user, "example.org", "TheMatrIX");
        assert!(m.check_integrity(&key));
        let wrong = long_term_key(user, "example.org", "TheMatrix");
        assert!(!m.check_integrity(&wrong));
    }

    /// RFC 5769 §2.1 sample request: checks FINGERPRINT.
    #[test]
    fn rfc5769_fingerprint() {
        let msg: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
            0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
            0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
            0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
            0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
            0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
            0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        let m = Message::parse(&msg).unwrap();
        assert!(m.check_fingerprint());
        // Short-term credential: key is the password itself.
        assert!(m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        let mut bad = msg;
        bad[30] ^= 1;
        assert!(!Message::parse(&bad).unwrap().check_fingerprint());
    }
}
