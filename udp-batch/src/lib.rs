//! `recvmmsg(2)` / `sendmmsg(2)` batching for the server's UDP data planes: turn-relay's
//! epoll threads and the SFU's media loop both read and write many datagrams per wake-up,
//! and one system call per batch instead of one per datagram is most of what batching
//! buys on a busy host.
//!
//! [`MmsgBatch`] holds the kernel-facing arrays (`mmsghdr`, `iovec`, `sockaddr_storage`)
//! for up to `capacity` datagrams, allocated once; callers keep their own payload buffers
//! and lend them per call. Linux only (like turn-relay's epoll data plane).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::RawFd,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Reusable arrays for one `recvmmsg` or `sendmmsg` call at a time.
pub struct MmsgBatch {
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Ancillary data of each received datagram (its kernel timestamp, when asked for).
    controls: Vec<Control>,
}

/// Room for one `SCM_TIMESTAMPNS` message (`CMSG_SPACE` of a `timespec`: 32 bytes on
/// 64-bit Linux), aligned as `cmsghdr` wants.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Asks the kernel to stamp each datagram `fd` receives with its arrival time (wall clock,
/// `SO_TIMESTAMPNS`); [`MmsgBatch::received_at`] reads it. A batch read after a busy spell
/// then still knows when each datagram came, which delay-based bandwidth estimation needs.
/// (The kernel turns stamping on in deferred work: the first datagrams after the first socket
/// asks may be stamped when read.)
pub fn enable_receive_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid option pointer and length for an int option.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// SAFETY: the raw pointers inside are only set and read during one `&mut self` call; in
// between they are dangling and never dereferenced.
unsafe impl Send for MmsgBatch {}

/// What became of a batch handed to [`MmsgBatch::send`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    /// Refused because the socket's send buffer was full (the rest of that system call's
    /// datagrams are dropped, as a plain UDP send would drop them).
    pub dropped_full: usize,
    /// Refused individually (unreachable destination and the like) and skipped.
    pub failed: usize,
}

impl MmsgBatch {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        // SAFETY: all-zero is a valid value of these plain C structs.
        let (name, iov, hdr) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        MmsgBatch {
            names: vec![name; capacity],
            iovs: vec![iov; capacity],
            hdrs: vec![hdr; capacity],
            controls: vec![Control([0; 64]); capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives at most one datagram into each of `bufs` (at most [`capacity`](Self::capacity)
    /// of them), without blocking. Returns how many arrived: 0 when the socket was empty.
    /// Read each with [`received`](Self::received).
    pub fn recv<'a>(
        &mut self,
        fd: RawFd,
        bufs: impl IntoIterator<Item = &'a mut [u8]>,
    ) -> io::Result<usize> {
        let mut count = 0;
        for (k, buf) in bufs.into_iter().take(self.capacity()).enumerate() {
            self.iovs[k] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: zeroed msghdr is valid; fields are then set.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[k].0.as_mut_ptr().cast();
            h.msg_controllen = size_of::<Control>();
            self.hdrs[k] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
            count = k + 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: hdrs[..count] point into `bufs` (borrowed for this call), iovs, names and
        // controls.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(r as usize)
    }

    /// The `k`-th datagram of the last [`recv`](Self::recv): its length and source; the
    /// source is `None` when the datagram was truncated (larger than its buffer) or not IP.
    pub fn received(&self, k: usize) -> (usize, Option<SocketAddr>) {
        let h = &self.hdrs[k];
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let from = if truncated {
            None
        } else {
            from_storage(&self.names[k])
        };
        (h.msg_len as usize, from)
    }

    /// When the `k`-th datagram of the last [`recv`](Self::recv) arrived, as the kernel
    /// stamped it (wall clock); `None` unless [`enable_receive_timestamps`] was called.
    pub fn received_at(&self, k: usize) -> Option<SystemTime> {
        let h = &self.hdrs[k].msg_hdr;
        // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed cmsgs into
        // `controls[k]`, which `msg_control` still points to (nothing moved since `recv`).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(h);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    let since_epoch = Duration::new(
                        u64::try_from(ts.tv_sec).ok()?,
                        u32::try_from(ts.tv_nsec).ok()?,
                    );
                    return UNIX_EPOCH.checked_add(since_epoch);
                }
                cmsg = libc::CMSG_NXTHDR(h, cmsg);
            }
        }
        None
    }

    /// Sends every item of `items` on `fd`, `datagram` giving each one's bytes and
    /// destination: one `sendmmsg` per [`capacity`](Self::capacity) items. `dropped` is
    /// called with the index of each item that was not sent.
    pub fn send<'a, T>(
        &mut self,
        fd: RawFd,
        items: &'a [T],
        datagram: impl Fn(&'a T) -> (&'a [u8], SocketAddr),
        mut dropped: impl FnMut(usize),
    ) -> Sent {
        let mut result = Sent::default();
        let mut base = 0;
        for chunk in items.chunks(self.capacity()) {
            for (k, item) in chunk.iter().enumerate() {
                let (bytes, to) = datagram(item);
                let namelen = to_storage(&to, &mut self.names[k]);
                self.iovs[k] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                // SAFETY: zeroed msghdr is valid; fields are then set.
                let mut h: libc::msghdr = unsafe { zeroed() };
                h.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = namelen;
                h.msg_iov = &mut self.iovs[k];
                h.msg_iovlen = 1;
                self.hdrs[k] = libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                };
            }
            let n = chunk.len();
            let mut done = 0;
            while done < n {
                // SAFETY: hdrs[done..n] point into `items`' bytes (borrowed for this call),
                // iovs and names, all alive and unchanged during the call; the kernel only
                // reads them (and writes msg_len).
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(done),
                        (n - done) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    done += r as usize;
                    result.sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // Full send buffer: drop the rest, as a UDP send would.
                    io::ErrorKind::WouldBlock => {
                        for k in done..n {
                            dropped(base + k);
                        }
                        result.dropped_full += n - done;
                        break;
                    }
                    // This datagram cannot be sent (unreachable, ...): skip it.
                    _ => {
                        dropped(base + done);
                        result.failed += 1;
                        done += 1;
                    }
                }
            }
            base += n;
        }
        result
    }
}

/// A `sockaddr_storage` the kernel filled in, as a Rust address (`None` if not IPv4/IPv6).
pub fn from_storage(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match st.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET).
            let a = unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6).
            let a = unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `a` into `st`; returns the length to pass as the address length.
pub fn to_storage(a: &SocketAddr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd};

    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        // SAFETY: all-zero sockaddr_storage is valid.
        let mut st: libc::sockaddr_storage = unsafe { zeroed() };
        for a in [
            "192.0.2.7:3478",
            "[2001:db8::1]:49152",
            "[::ffff:10.0.0.1]:1",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            to_storage(&a, &mut st);
            assert_eq!(from_storage(&st), Some(a));
        }
    }

    #[test]
    fn sends_and_receives_in_batches_larger_than_the_capacity() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let mut batch = MmsgBatch::new(16);
        let mut dropped = Vec::new();
        let sent = batch.send(
            sender.as_raw_fd(),
            &payloads,
            |p| (p.as_slice(), to),
            |i| dropped.push(i),
        );
        assert_eq!((sent.sent, sent.dropped_full, sent.failed), (100, 0, 0));
        assert!(dropped.is_empty());

        let mut arena = vec![0u8; 16 * 256];
        let mut got = Vec::new();
        loop {
            let n = batch
                .recv(receiver.as_raw_fd(), arena.chunks_mut(256))
                .unwrap();
            for k in 0..n {
                let (len, from) = batch.received(k);
                assert_eq!(from, Some(sender.local_addr().unwrap()));
                got.push(arena[k * 256..k * 256 + len].to_vec());
            }
            if n < 16 {
                break;
            }
        }
        assert_eq!(got, payloads, "all, in order");
        assert_eq!(
            batch
                .recv(receiver.as_raw_fd(), arena.chunks_mut(256))
                .unwrap(),
            0
        );
    }

    #[test]
    fn each_datagram_of_a_batch_keeps_its_own_arrival_time() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let mut arena = vec![0u8; 4 * 64];
        let mut batch = MmsgBatch::new(4);

        sender.send_to(&[1], to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let n = batch
            .recv(receiver.as_raw_fd(), arena.chunks_mut(64))
            .unwrap();
        assert_eq!((n, batch.received_at(0)), (1, None), "not asked for");

        enable_receive_timestamps(receiver.as_raw_fd()).unwrap();
        // The kernel turns stamping on in deferred work: a datagram that comes before it is
        // stamped when read (as without). One to wait that out.
        sender.send_to(&[9], to).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        batch
            .recv(receiver.as_raw_fd(), arena.chunks_mut(64))
            .unwrap();
        let before = SystemTime::now();
        for i in 0..3u8 {
            sender.send_to(&[i], to).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let n = batch
            .recv(receiver.as_raw_fd(), arena.chunks_mut(64))
            .unwrap();
        let read = SystemTime::now();
        assert_eq!(n, 3, "one batch");
        let at: Vec<SystemTime> = (0..n).map(|k| batch.received_at(k).unwrap()).collect();
        assert!(
            at[0] >= before && at[2] <= read,
            "{at:?} within {before:?}..{read:?}"
        );
        for pair in at.windows(2) {
            let gap = pair[1].duration_since(pair[0]).unwrap();
            assert!(
                gap >= Duration::from_millis(25),
                "arrivals 30 ms apart, not {gap:?}"
            );
        }
    }

    #[test]
    fn a_truncated_datagram_has_no_source() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(&[7u8; 100], receiver.local_addr().unwrap())
            .unwrap();
        let mut small = [0u8; 10];
        let mut batch = MmsgBatch::new(4);
        let n = batch
            .recv(receiver.as_raw_fd(), std::iter::once(&mut small[..]))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(batch.received(0).1, None);
    }

    #[test]
    fn an_unsendable_datagram_is_skipped_and_the_rest_go() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        // An IPv6 destination from an IPv4 socket fails on its own.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let items = [(vec![1u8], to), (vec![2u8], v6), (vec![3u8], to)];
        let mut batch = MmsgBatch::new(8);
        let mut dropped = Vec::new();
        let sent = batch.send(
            sender.as_raw_fd(),
            &items,
            |(p, to)| (p.as_slice(), *to),
            |i| dropped.push(i),
        );
        assert_eq!((sent.sent, sent.failed), (2, 1));
        assert_eq!(dropped, vec![1]);
        let mut buf = [0u8; 4];
        assert_eq!(receiver.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 1);
        assert_eq!(receiver.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 3);
    }
}
