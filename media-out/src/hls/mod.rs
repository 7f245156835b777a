//! Low-Latency HLS (RFC 8216bis), sans-IO: a live stream's CMAF parts and segments
//! ([`packager`]) and its media playlist with blocking reloads and delta updates
//! ([`playlist`]). The driver (in `signal`) keeps the bytes and answers HTTP.

pub mod packager;
pub mod playlist;
