//! Which connection a datagram from a new source address belongs to (sans-IO).
//!
//! All participants share one UDP port. A known source address maps to its connection; a new
//! one is accepted only from an ICE connectivity check, a STUN Binding request whose USERNAME
//! is `<our ufrag>:<their ufrag>` (RFC 8445 §7.2.2). Looking the ufrag up in a map keeps the
//! cost of a stray or hostile datagram constant, whatever the number of connections.

const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const ATTR_USERNAME: [u8; 2] = [0x00, 0x06];

/// Our ufrag from the USERNAME of a STUN Binding request; `None` for anything else.
pub fn stun_username_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < STUN_HEADER
        || datagram[0..2] != BINDING_REQUEST
        || datagram[4..8] != MAGIC_COOKIE
    {
        return None;
    }
    let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(STUN_HEADER..STUN_HEADER + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = [body[at], body[at + 1]];
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split_once(':').map(|(ours, _)| ours);
        }
        // Attribute values are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attributes {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut packet = vec![0x00, 0x01];
        packet.extend_from_slice(&(body.len() as u16).to_be_bytes());
        packet.extend_from_slice(&MAGIC_COOKIE);
        packet.extend_from_slice(&[7; 12]);
        packet.extend_from_slice(&body);
        packet
    }

    #[test]
    fn finds_our_ufrag_after_other_attributes() {
        // PRIORITY (4 bytes) then a USERNAME whose length needs padding.
        let packet = binding_request(&[(0x0024, &[1, 2, 3, 4]), (0x0006, b"srvA:brw")]);
        assert_eq!(stun_username_ufrag(&packet), Some("srvA"));
        let packet = binding_request(&[(0x8022, b"x"), (0x0006, b"s1:b22")]);
        assert_eq!(stun_username_ufrag(&packet), Some("s1"));
    }

    #[test]
    fn ignores_everything_but_a_binding_request_with_a_username() {
        assert_eq!(stun_username_ufrag(&[]), None);
        assert_eq!(stun_username_ufrag(&[0x80; 100]), None, "RTP/DTLS");
        let mut response = binding_request(&[(0x0006, b"a:b")]);
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(stun_username_ufrag(&response), None, "a response");
        let mut no_cookie = binding_request(&[(0x0006, b"a:b")]);
        no_cookie[4] = 0;
        assert_eq!(stun_username_ufrag(&no_cookie), None);
        assert_eq!(
            stun_username_ufrag(&binding_request(&[(0x0024, &[0; 4])])),
            None
        );
        assert_eq!(
            stun_username_ufrag(&binding_request(&[(0x0006, b"nocolon")])),
            None
        );
    }

    #[test]
    fn truncated_or_lying_lengths_are_refused() {
        let packet = binding_request(&[(0x0006, b"srvA:brw")]);
        for cut in 0..packet.len() {
            assert_eq!(stun_username_ufrag(&packet[..cut]), None, "cut at {cut}");
        }
        let mut long = packet.clone();
        long[26..28].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(stun_username_ufrag(&long), None);
    }
}
