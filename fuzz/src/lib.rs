//! What the fuzz targets share.

use std::{net::SocketAddr, time::Instant};

use sfu::{core::SfuCore, NetConfig, SfuConfig};

/// A sans-IO SFU core on a documentation address, with the default configuration, and the
/// instant it starts at.
pub fn sfu_core() -> (SfuCore, Instant) {
    let local: SocketAddr = "192.0.2.10:4000".parse().unwrap();
    let config = SfuConfig::new(NetConfig {
        bind_ip: local.ip(),
        public_ip: None,
    });
    let now = Instant::now();
    (SfuCore::new(config, local, 1, now), now)
}
