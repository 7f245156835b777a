//! ChannelData framing (RFC 8656 §12.4).

/// Channel numbers a client may bind. RFC 8656 narrowed the range to
/// 0x4000..=0x4FFF; we accept the RFC 5766 range 0x4000..=0x7FFF because deployed
/// clients (and coturn) still use it.
pub const MIN_CHANNEL: u16 = 0x4000;
pub const MAX_CHANNEL: u16 = 0x7FFF;

pub fn is_valid_channel(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL).contains(&n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses a ChannelData message. Over UDP the datagram may carry padding after
    /// the data (some clients always pad), so trailing bytes up to the next 4-byte
    /// boundary are tolerated; anything shorter than the length field is rejected.
    pub fn parse(buf: &'a [u8]) -> Option<Self> {
        if buf.len() < 4 {
            return None;
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if !is_valid_channel(channel) || 4 + len > buf.len() || buf.len() > 4 + len + 3 {
            return None;
        }
        Some(ChannelData {
            channel,
            data: &buf[4..4 + len],
        })
    }
}

/// Writes the 4-byte ChannelData header in front of `len` bytes of data.
pub fn write_header(out: &mut [u8; 4], channel: u16, len: usize) {
    out[..2].copy_from_slice(&channel.to_be_bytes());
    out[2..].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Length of a whole frame on a stream transport, where ChannelData is padded to
/// a multiple of four (RFC 8656 §12.5). `None` if the header is not yet complete.
pub fn stream_frame_len(header: &[u8]) -> Option<usize> {
    if header.len() < 4 {
        return None;
    }
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    Some(4 + len + (4 - len % 4) % 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_padding() {
        let b = [0x40, 0x01, 0x00, 0x03, 1, 2, 3];
        let cd = ChannelData::parse(&b).unwrap();
        assert_eq!(cd.channel, 0x4001);
        assert_eq!(cd.data, &[1, 2, 3]);
        let padded = [0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0];
        assert_eq!(ChannelData::parse(&padded).unwrap().data, &[1, 2, 3]);
        assert!(ChannelData::parse(&[0x40, 0x01, 0x00, 0x05, 1, 2]).is_none());
        assert!(ChannelData::parse(&[0x80, 0x01, 0x00, 0x00]).is_none());
        assert!(ChannelData::parse(&[0x40, 0x01, 0x00, 0x00, 0, 0, 0, 0, 0]).is_none());
        assert_eq!(stream_frame_len(&b), Some(8));
    }
}
