//! Memory per allocation: start the `turn-relay` binary on loopback, create N
//! UDP allocations (each from its own client socket, each with one channel bound
//! to a peer, which also installs a permission), and report the server's RSS
//! growth per allocation.
//!
//! ```sh
//! cargo build --release -p turn-relay --examples
//! target/release/examples/alloc_mem [--count 50000] [--bin target/release/turn-relay]
//! ```
//!
//! Every allocation costs one file descriptor in the server (its relay socket)
//! and one in this client, so N is capped by RLIMIT_NOFILE: both processes raise
//! their soft limit to the hard limit, and N is lowered (with a note) if the
//! hard limit is below N + 200. Client sockets are spread over 127.0.0.2..
//! so that the client's ports and the relay's port range (10000–65000 on
//! 127.0.0.1) do not compete. RSS is the server's VmRSS; the kernel's own socket
//! memory is not in it and is reported separately from /proc/meminfo's Slab
//! (system-wide, so only indicative on a shared machine).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use turn_relay::stun::attributes as attr;
use turn_relay::stun::integrity::long_term_key;
use turn_relay::stun::{Class, Message, MessageWriter, Method};

const REALM: &str = "mem.local";
const USER: &str = "mem";
const PASS: &str = "pw";
/// Client sockets per source address (below the 28k ephemeral ports).
const PER_IP: usize = 20_000;
/// Requests in flight at once.
const WINDOW: usize = 256;

struct Args {
    count: usize,
    bin: String,
}

fn args() -> Args {
    let mut a = Args {
        count: 50_000,
        bin: "target/release/turn-relay".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--count" => a.count = v.parse().expect("--count N"),
            "--bin" => a.bin = v,
            _ => panic!("usage: alloc_mem [--count N] [--bin PATH]"),
        }
    }
    a
}

/// Soft RLIMIT_NOFILE raised to the hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&s, key)
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn slab_kib() -> u64 {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "Slab:",
    )
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tid(n: u32, kind: u8) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[0] = kind;
    t[8..].copy_from_slice(&n.to_be_bytes());
    t
}

fn request(
    method: Method,
    t: [u8; 12],
    nonce: Option<&[u8]>,
    key: &[u8; 16],
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut req = Vec::new();
    let mut w = MessageWriter::new(&mut req, method, Class::Request, t);
    for (k, v) in attrs {
        w.add(*k, v);
    }
    if let Some(nonce) = nonce {
        w.add(attr::USERNAME, USER.as_bytes());
        w.add(attr::REALM, REALM.as_bytes());
        w.add(attr::NONCE, nonce);
        w.add_integrity(key);
    }
    req
}

/// Send `make(i)` on every socket in `socks` and wait for a success response
/// to each (two retransmissions); returns how many succeeded.
fn transact(
    socks: &[UdpSocket],
    server: SocketAddr,
    make: impl Fn(usize) -> Vec<u8>,
) -> (usize, Vec<u16>) {
    let mut ok = 0;
    let mut errors = Vec::new();
    let mut buf = [0u8; 1500];
    for (base, chunk) in socks.chunks(WINDOW).enumerate() {
        let mut done = vec![false; chunk.len()];
        for _attempt in 0..3 {
            for (j, s) in chunk.iter().enumerate() {
                if !done[j] {
                    let _ = s.send_to(&make(base * WINDOW + j), server);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while done.iter().any(|d| !d) && Instant::now() < deadline {
                let mut progress = false;
                for (j, s) in chunk.iter().enumerate() {
                    if done[j] {
                        continue;
                    }
                    if let Ok(n) = s.recv(&mut buf) {
                        progress = true;
                        done[j] = true;
                        match Message::parse(&buf[..n]) {
                            Ok(m) if m.class == Class::Success => ok += 1,
                            Ok(m) => errors.push(
                                m.get(attr::ERROR_CODE)
                                    .and_then(|v| attr::decode_error(v).ok())
                                    .map_or(0, |e| e.0),
                            ),
                            Err(_) => errors.push(0),
                        }
                    }
                }
                if !progress {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
    }
    (ok, errors)
}

fn main() {
    let a = args();
    let limit = raise_nofile() as usize;
    let count = a.count.min(limit.saturating_sub(200));
    if count < a.count {
        println!(
            "note: RLIMIT_NOFILE hard limit is {limit}; each allocation needs one fd in \
             the server and one here, so measuring {count} allocations, not {}",
            a.count
        );
    }
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let conf = std::env::temp_dir().join(format!("alloc-mem-{}.conf", std::process::id()));
    let mut f = std::fs::File::create(&conf).unwrap();
    writeln!(
        f,
        "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\nrealm={REALM}\n\
         min-port=10000\nmax-port=65000\nuser={USER}:{PASS}\nlt-cred-mech\n\
         user-quota=0\ntotal-quota=0\nallow-loopback-peers\nno-tls\nno-dtls\nno-tcp\n\
         stale-nonce=3600\nmax-allocate-lifetime=3600"
    )
    .unwrap();
    drop(f);
    let server = Server(
        Command::new(&a.bin)
            .arg("-c")
            .arg(&conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", a.bin)),
    );
    let pid = server.0.id();
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let key = long_term_key(USER, REALM, PASS);

    // Ready, and a nonce per source address (nonces are bound to the client IP).
    let n_ips = count.div_ceil(PER_IP).max(1);
    let mut nonces = Vec::new();
    for ip in 0..n_ips {
        let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2 + ip as u8), 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let nonce = loop {
            assert!(Instant::now() < deadline, "turn-relay did not answer");
            let req = request(
                Method::ALLOCATE,
                tid(0, 9),
                None,
                &key,
                &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
            );
            let _ = s.send_to(&req, addr);
            let mut buf = [0u8; 1500];
            if let Ok(n) = s.recv(&mut buf) {
                let m = Message::parse(&buf[..n]).expect("STUN reply");
                break m.get(attr::NONCE).expect("401 with NONCE").to_vec();
            }
        };
        nonces.push(nonce);
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = status_kib(pid, "VmRSS:");
    let slab0 = slab_kib();
    println!("server pid {pid}: VmRSS {rss0} KiB before; creating {count} allocations");

    let socks: Vec<UdpSocket> = (0..count)
        .map(|i| {
            let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2 + (i / PER_IP) as u8), 0))
                .expect("client socket (fd limit?)");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // Channel peer: nothing listens there, the binding is all that is measured.
    let peer_v: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let t0 = Instant::now();
    let quarter = count.div_ceil(4).max(1);
    let mut created = 0;
    let mut bound = 0;
    let mut all_errors = Vec::new();
    for (qi, q) in socks.chunks(quarter).enumerate() {
        let off = qi * quarter;
        let (ok, errs) = transact(q, addr, |i| {
            let i = off + i;
            request(
                Method::ALLOCATE,
                tid(i as u32, 1),
                Some(&nonces[i / PER_IP]),
                &key,
                &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])],
            )
        });
        created += ok;
        all_errors.extend(errs);
        let (ok, errs) = transact(q, addr, |i| {
            let i = off + i;
            let t = tid(i as u32, 2);
            let mut pa = [0u8; 20];
            let n = attr::encode_xor_address(peer_v, &t, &mut pa);
            request(
                Method::CHANNEL_BIND,
                t,
                Some(&nonces[i / PER_IP]),
                &key,
                &[
                    (attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]),
                    (attr::XOR_PEER_ADDRESS, &pa[..n]),
                ],
            )
        });
        bound += ok;
        all_errors.extend(errs);
        std::thread::sleep(Duration::from_millis(300));
        let rss = status_kib(pid, "VmRSS:");
        println!(
            "  {created:>6} allocations ({bound} with a channel): VmRSS {rss} KiB, \
             {:.0} B/allocation",
            (rss.saturating_sub(rss0) * 1024) as f64 / created.max(1) as f64
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = status_kib(pid, "VmRSS:");
    let slab1 = slab_kib();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    all_errors.sort_unstable();
    all_errors.dedup();
    println!(
        "allocations created {created}/{count} in {secs:.1} s, channels bound {bound}; \
         error codes seen {all_errors:?}; server fds {fds}"
    );
    println!(
        "server VmRSS {rss0} -> {rss1} KiB: {:.0} bytes per allocation (user space); \
         system Slab {slab0} -> {slab1} KiB: ~{:.0} bytes per allocation pair of sockets \
         (kernel, indicative only)",
        (rss1.saturating_sub(rss0) * 1024) as f64 / created.max(1) as f64,
        (slab1.saturating_sub(slab0) * 1024) as f64 / created.max(1) as f64,
    );
    drop(socks);
    drop(server);
    let _ = std::fs::remove_file(&conf);
}
