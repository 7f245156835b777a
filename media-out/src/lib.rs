//! Media leaving the calls, sans-IO: what the SFU forwards to a tap becomes files.
//!
//! - [`codec`]: RTP payload descriptors stripped (VP8, VP9, Opus), keyframe sizes.
//! - [`assembler`]: one stream's packets back into whole frames, in order, holes waited for
//!   and given up on.
//! - [`recording`]: a participant's audio and video on one timeline (RTCP sender reports),
//!   written as a live WebM.
//! - [`webm`]: the live WebM writer, and the rewrite that makes a live WebM seekable.
//! - [`mp4`]: a fragmented MP4 writer, for H.264 (which WebM does not take) with Opus.
//! - [`hls`]: Low-Latency HLS: CMAF parts and segments, the media playlist, blocking reloads.
//! - [`clock`]: wall-clock dates as text.
//!
//! No I/O and no clock inside: time is passed in, bytes come out; the drivers (in `signal`)
//! own the files.

pub mod assembler;
pub mod clock;
pub mod codec;
pub mod hls;
pub mod mp4;
pub mod recording;
pub mod webm;
