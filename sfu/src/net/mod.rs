//! The network edge, used by the driver only: binding the shared media socket
//! ([`bind`]) and moving datagrams through it in batches ([`outbox`]).

pub mod bind;
pub mod outbox;

pub use bind::{announced_addr, bind, parse_port_range, PortRangeError};
