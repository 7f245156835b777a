//! RTP payloads back into codec frames: the payload descriptors of VP8 (RFC 7741) and VP9
//! (RFC 9628) stripped, Opus as it is (RFC 7587: one packet, one frame), and what a
//! keyframe says about the picture's size.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
}

impl Codec {
    pub fn is_video(self) -> bool {
        self != Codec::Opus
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::Vp9 => 90_000,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DepacketizeError {
    #[error("empty RTP payload")]
    Empty,
    #[error("the payload descriptor runs past the end of the payload")]
    Truncated,
}

/// One RTP payload's share of a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub data: &'a [u8],
    /// The first packet of a frame.
    pub starts_frame: bool,
    /// VP9 with spatial layers: a layer above the base, left out (see [`depacketize`]).
    pub upper_spatial_layer: bool,
}

/// Strips `payload`'s descriptor. VP9 spatial layers above the base are marked rather than
/// joined: a recording keeps the base layer of an SVC stream (Chromium sends one spatial
/// layer unless told otherwise).
pub fn depacketize(codec: Codec, payload: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    if payload.is_empty() {
        return Err(DepacketizeError::Empty);
    }
    match codec {
        Codec::Opus => Ok(Fragment {
            data: payload,
            starts_frame: true,
            upper_spatial_layer: false,
        }),
        Codec::Vp8 => vp8(payload),
        Codec::Vp9 => vp9(payload),
    }
}

fn byte(payload: &[u8], at: usize) -> Result<u8, DepacketizeError> {
    payload.get(at).copied().ok_or(DepacketizeError::Truncated)
}

fn vp8(p: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    let first = p[0];
    let mut at = 1;
    if first & 0x80 != 0 {
        let x = byte(p, 1)?;
        at = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 bits, or 15 with the M bit.
            at += if byte(p, at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID / Y / KEYIDX
        }
    }
    let data = p.get(at..).ok_or(DepacketizeError::Truncated)?;
    Ok(Fragment {
        data,
        // S bit, partition 0.
        starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
        upper_spatial_layer: false,
    })
}

fn vp9(p: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    let first = p[0];
    let (picture_id, layers, flexible) = (first & 0x80 != 0, first & 0x20 != 0, first & 0x10 != 0);
    let (predicted, begins, scalability) =
        (first & 0x40 != 0, first & 0x08 != 0, first & 0x02 != 0);
    let mut at = 1;
    if picture_id {
        at += if byte(p, at)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial_id = 0;
    if layers {
        spatial_id = (byte(p, at)? >> 1) & 0x07;
        at += if flexible { 1 } else { 2 }; // TID|U|SID|D, and TL0PICIDX unless flexible
    }
    if flexible && predicted {
        // Up to three reference indices, each with an N bit saying another follows.
        for _ in 0..3 {
            let more = byte(p, at)? & 0x01 != 0;
            at += 1;
            if !more {
                break;
            }
        }
    }
    if scalability {
        let ss = byte(p, at)?;
        at += 1;
        let spatial_layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            at += 4 * spatial_layers; // WIDTH and HEIGHT of each
        }
        if ss & 0x08 != 0 {
            let pictures = byte(p, at)?;
            at += 1;
            for _ in 0..pictures {
                let references = usize::from((byte(p, at)? >> 2) & 0x03);
                at += 1 + references;
            }
        }
    }
    let data = p.get(at..).ok_or(DepacketizeError::Truncated)?;
    Ok(Fragment {
        data,
        starts_frame: begins,
        upper_spatial_layer: spatial_id > 0,
    })
}

/// A keyframe's picture size, `None` for an inter frame (or what is not a frame of `codec`).
pub fn keyframe_size(codec: Codec, frame: &[u8]) -> Option<(u16, u16)> {
    match codec {
        Codec::Opus => None,
        Codec::Vp8 => vp8_keyframe_size(frame),
        Codec::Vp9 => vp9_keyframe_size(frame),
    }
}

/// RFC 6386 9.1: the frame tag's P bit is 0 on a keyframe, then the start code and the
/// 14-bit width and height (little-endian, two scaling bits above them).
fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// VP9's uncompressed header (VP9 bitstream specification 6.2) up to the frame size.
fn vp9_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut bits = Bits { data: frame, at: 0 };
    if bits.read(2)? != 2 {
        return None; // frame_marker
    }
    let profile = bits.read(1)? | bits.read(1)? << 1;
    if profile == 3 {
        bits.read(1)?;
    }
    if bits.read(1)? == 1 {
        return None; // show_existing_frame
    }
    if bits.read(1)? != 0 {
        return None; // frame_type: not a keyframe
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    if bits.read(24)? != 0x49_8342 {
        return None; // sync code
    }
    if profile >= 2 {
        bits.read(1)?; // ten_or_twelve_bit
    }
    let rgb = bits.read(3)? == 7;
    if !rgb {
        bits.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            bits.read(3)?; // subsampling_x, subsampling_y, reserved
        }
    } else if profile == 1 || profile == 3 {
        bits.read(1)?;
    }
    let width = bits.read(16)? + 1;
    let height = bits.read(16)? + 1;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.at / 8)?;
            value = value << 1 | u32::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 keyframe's first bytes: frame tag (P = 0), start code, 640×480.
    pub(crate) const VP8_KEY_640X480: [u8; 10] =
        [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];

    #[test]
    fn vp8_descriptors_of_every_shape() {
        // Minimal: S = 1, PID = 0.
        let f = depacketize(Codec::Vp8, &[0x10, 0xAA]).unwrap();
        assert_eq!((f.data, f.starts_frame), (&[0xAA][..], true));
        // X, I with a 15-bit picture id, L, T: 1 + 1 + 2 + 1 + 1 bytes of descriptor.
        let f = depacketize(Codec::Vp8, &[0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0xBB]).unwrap();
        assert_eq!((f.data, f.starts_frame), (&[0xBB][..], true));
        // A continuation packet, and a later partition's start: not a frame start.
        assert!(!depacketize(Codec::Vp8, &[0x00, 1]).unwrap().starts_frame);
        assert!(!depacketize(Codec::Vp8, &[0x11, 1]).unwrap().starts_frame);
        assert_eq!(
            depacketize(Codec::Vp8, &[0x90, 0x80]),
            Err(DepacketizeError::Truncated)
        );
        assert_eq!(depacketize(Codec::Vp8, &[]), Err(DepacketizeError::Empty));
    }

    #[test]
    fn vp9_descriptors_of_every_shape() {
        // I (7-bit id), B: a non-flexible single-layer picture's first packet.
        let f = depacketize(Codec::Vp9, &[0x88, 0x05, 0xAA]).unwrap();
        assert_eq!(
            (f.data, f.starts_frame, f.upper_spatial_layer),
            (&[0xAA][..], true, false)
        );
        // I (15-bit), L (SID 1) + TL0PICIDX, E only: an upper layer's last packet.
        let f = depacketize(Codec::Vp9, &[0xA4, 0x80, 0x01, 0x02, 0x07, 0xBB]).unwrap();
        assert_eq!(
            (f.data, f.starts_frame, f.upper_spatial_layer),
            (&[0xBB][..], false, true)
        );
        // Flexible, predicted: two reference indices (N set on the first).
        let f = depacketize(Codec::Vp9, &[0x58, 0x03, 0x02, 0xCC]).unwrap();
        assert_eq!(f.data, &[0xCC]);
        // B and V: a scalability structure with one layer's size and one picture group entry
        // with one reference.
        let f = depacketize(
            Codec::Vp9,
            &[0x0A, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x04, 0x01, 0xDD],
        )
        .unwrap();
        assert_eq!(f.data, &[0xDD]);
        assert_eq!(
            depacketize(Codec::Vp9, &[0x8A, 0x80]),
            Err(DepacketizeError::Truncated)
        );
    }

    #[test]
    fn keyframe_sizes() {
        assert_eq!(
            keyframe_size(Codec::Vp8, &VP8_KEY_640X480),
            Some((640, 480))
        );
        let mut inter = VP8_KEY_640X480;
        inter[0] |= 1;
        assert_eq!(keyframe_size(Codec::Vp8, &inter), None);
        assert_eq!(keyframe_size(Codec::Vp8, &VP8_KEY_640X480[..8]), None);
        // VP9 profile 0 keyframe: marker 10, profile 00, show_existing 0, frame_type 0,
        // show_frame 1, error_res 0, sync code, color space 001 (BT.601), color_range 0,
        // then width-1 = 319 and height-1 = 179 in 16 bits each.
        let mut bits = String::from("10000010");
        bits += "010010011000001101000010";
        bits += "0010";
        bits += &format!("{:016b}{:016b}", 319, 179);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        assert_eq!(keyframe_size(Codec::Vp9, &bytes), Some((320, 180)));
        let mut inter = bytes.clone();
        inter[0] |= 0x04; // frame_type 1
        assert_eq!(keyframe_size(Codec::Vp9, &inter), None);
    }
}
