//! Shared helpers for the integration tests: spawn the built `turn-relay` binary on
//! loopback with a generated config, a minimal blocking STUN client, and bounded
//! child-process runs.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use turn_relay::stun::attributes as attr;
use turn_relay::stun::integrity::long_term_key;
use turn_relay::stun::{Class, Message, MessageWriter, Method};

pub const REALM: &str = "rtc.local";
pub const SECRET: &str = "integration-secret";

/// coturn's client tools are required: a missing tool fails the test with the
/// package to install instead of letting it pass without having run.
pub fn require_coturn_tools(test: &str) {
    let missing: Vec<&str> = [
        "turnutils_uclient",
        "turnutils_peer",
        "turnutils_stunclient",
    ]
    .into_iter()
    .filter(|t| which(t).is_none())
    .collect();
    assert!(
        missing.is_empty(),
        "{test}: coturn's client tools {missing:?} are not on PATH; \
         install the Debian package `coturn` (apt-get install coturn)"
    );
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// A port free for both UDP and TCP on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// The relay binary, killed on drop.
pub struct Relay {
    child: Child,
    pub port: u16,
    pub addr: SocketAddr,
    conf: PathBuf,
    log: PathBuf,
}

impl Relay {
    /// Start with the given extra config lines on a fresh port.
    pub fn start(extra: &str) -> Relay {
        let port = free_port();
        let dir = std::env::temp_dir();
        let tag = format!("turn-relay-test-{}-{port}", std::process::id());
        let conf = dir.join(format!("{tag}.conf"));
        let log = dir.join(format!("{tag}.log"));
        let mut f = std::fs::File::create(&conf).unwrap();
        writeln!(
            f,
            "listening-ip=127.0.0.1\nlistening-port={port}\nrealm={REALM}\n\
             min-port=41000\nmax-port=42999\nuser=test:pw\n\
             use-auth-secret\nstatic-auth-secret={SECRET}\nno-tls\nno-dtls\n{extra}"
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_turn-relay"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn turn-relay");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut r = Relay {
            child,
            port,
            addr,
            conf,
            log,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let c = StunClient::new(self.addr);
        c.sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("turn-relay exited early ({status}): {}", self.log_text());
            }
            if c.try_binding().is_some() {
                return;
            }
        }
        panic!("turn-relay did not answer within 10 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.conf);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A child killed on drop (turnutils_peer).
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_peer(port: u16) -> Bg {
    let c = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    // It binds immediately; give it a moment to be scheduled.
    std::thread::sleep(Duration::from_millis(200));
    Bg(c)
}

/// coturn's own server on loopback `port`, with the test user (`test`/`pw`), for what is
/// compared with it in the same run.
pub fn spawn_coturn(port: u16) -> Bg {
    let c = Command::new("turnserver")
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args([
            "--listening-port",
            &port.to_string(),
            "--min-port",
            "43000",
            "--max-port",
            "44999",
        ])
        .args([
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--user",
            "test:pw",
            "--realm",
            REALM,
        ])
        .args([
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-stdout-log",
            "--log-file",
            "/dev/null",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnserver");
    let coturn = Bg(c);
    let probe = StunClient::new(([127, 0, 0, 1], port).into());
    probe
        .sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.try_binding().is_none() {
        assert!(
            Instant::now() < deadline,
            "coturn did not answer within 10 s"
        );
    }
    coturn
}

/// Run a command, killing it after `limit`. Returns its combined output.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&stderr));
    (status.code(), s)
}

/// Figures from turnutils_uclient's summary lines.
#[derive(Debug, Default)]
pub struct UclientReport {
    pub sent: u64,
    pub received: u64,
    pub lost_pct: f64,
    pub rtt_ms: f64,
}

pub fn parse_uclient(out: &str) -> Option<UclientReport> {
    let mut r = UclientReport::default();
    let mut seen = 0;
    for line in out.lines() {
        if let Some(i) = line.find("start_mclient: tot_send_msgs=") {
            let rest = &line[i + "start_mclient: tot_send_msgs=".len()..];
            let (s, rest) = rest.split_once(',')?;
            r.sent = s.trim().parse().ok()?;
            r.received = rest
                .trim()
                .strip_prefix("tot_recv_msgs=")?
                .trim()
                .parse()
                .ok()?;
            seen |= 1;
        }
        if let Some(i) = line.find("Total lost packets") {
            let pct = line[i..].split('(').nth(1)?.split('%').next()?;
            r.lost_pct = pct.trim().parse().ok()?;
            seen |= 2;
        }
        if let Some(i) = line.find("Average round trip delay") {
            let v = line[i + "Average round trip delay".len()..]
                .split_whitespace()
                .next()?;
            r.rtt_ms = v.parse().ok()?;
            seen |= 4;
        }
    }
    (seen == 7).then_some(r)
}

/// Minimal blocking STUN/TURN client over UDP (or TCP, [`StunClient::new_tcp`]), built on
/// the crate's codec.
/// The Prometheus text the relay serves on `port` (config `prometheus`).
pub fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// A counter's value in Prometheus text.
pub fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub struct StunClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    tid: u32,
    pub nonce: Vec<u8>,
    /// Requests go over this connection instead of `sock`.
    tcp: Option<std::net::TcpStream>,
}

pub struct Reply {
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn msg(&self) -> Message<'_> {
        Message::parse(&self.raw).expect("valid STUN reply")
    }
    /// 0 for a success response, else the ERROR-CODE.
    pub fn code(&self) -> u16 {
        let m = self.msg();
        match m.class {
            Class::Success => 0,
            Class::Error => {
                attr::decode_error(m.get(attr::ERROR_CODE).unwrap())
                    .unwrap()
                    .0
            }
            c => panic!("unexpected {c:?}"),
        }
    }
}

impl StunClient {
    pub fn new(server: SocketAddr) -> StunClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        StunClient {
            sock,
            server,
            tid: 0,
            nonce: Vec::new(),
            tcp: None,
        }
    }

    /// A client on its own TCP connection to `server` (a control connection of its own).
    pub fn new_tcp(server: SocketAddr) -> StunClient {
        let tcp = std::net::TcpStream::connect(server).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        StunClient {
            tcp: Some(tcp),
            ..StunClient::new(server)
        }
    }

    fn send(&mut self, message: &[u8]) {
        match &mut self.tcp {
            Some(tcp) => tcp.write_all(message).unwrap(),
            None => {
                self.sock.send_to(message, self.server).unwrap();
            }
        }
    }

    /// The next message (a datagram, or one STUN message off the stream).
    fn recv_message(&mut self) -> Vec<u8> {
        match &mut self.tcp {
            Some(tcp) => {
                let mut header = [0u8; 20];
                tcp.read_exact(&mut header).expect("reply within 2 s");
                let len = u16::from_be_bytes([header[2], header[3]]) as usize;
                let mut message = header.to_vec();
                message.resize(20 + len, 0);
                tcp.read_exact(&mut message[20..]).expect("a whole message");
                message
            }
            None => {
                let mut buf = [0u8; 1500];
                let (n, _) = self.sock.recv_from(&mut buf).expect("reply within 2 s");
                buf[..n].to_vec()
            }
        }
    }

    pub fn next_tid(&mut self) -> [u8; 12] {
        self.tid += 1;
        let mut t = [0u8; 12];
        t[8..].copy_from_slice(&self.tid.to_be_bytes());
        t[0] = 0xAB;
        t
    }

    pub fn try_binding(&self) -> Option<Reply> {
        let mut req = Vec::new();
        MessageWriter::new(&mut req, Method::BINDING, Class::Request, [1; 12]);
        self.sock.send_to(&req, self.server).ok()?;
        let mut buf = [0u8; 1500];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(Reply {
            raw: buf[..n].to_vec(),
        })
    }

    /// Send a request (authenticated if `creds` and a nonce are known) and wait
    /// for its response. A 401/438 refreshes the stored nonce.
    pub fn request(
        &mut self,
        method: Method,
        creds: Option<(&str, &str)>,
        attrs: &[(u16, Vec<u8>)],
    ) -> Reply {
        let tid = self.next_tid();
        self.request_with_tid(tid, method, creds, attrs)
    }

    pub fn request_with_tid(
        &mut self,
        tid: [u8; 12],
        method: Method,
        creds: Option<(&str, &str)>,
        attrs: &[(u16, Vec<u8>)],
    ) -> Reply {
        let mut req = Vec::new();
        let mut w = MessageWriter::new(&mut req, method, Class::Request, tid);
        for (t, v) in attrs {
            w.add(*t, v);
        }
        if let Some((u, p)) = creds {
            if !self.nonce.is_empty() {
                w.add(attr::USERNAME, u.as_bytes());
                w.add(attr::REALM, REALM.as_bytes());
                w.add(attr::NONCE, &self.nonce);
                w.add_integrity(&long_term_key(u, REALM, p));
            }
        }
        w.add_fingerprint();
        self.send(&req);
        loop {
            let raw = self.recv_message();
            let Ok(m) = Message::parse(&raw) else {
                continue;
            };
            if m.transaction_id != tid {
                continue;
            }
            if let Some(nonce) = m.get(attr::NONCE) {
                self.nonce = nonce.to_vec();
            }
            return Reply { raw };
        }
    }

    /// Request with the usual 401 → retry dance.
    pub fn authed(
        &mut self,
        method: Method,
        creds: (&str, &str),
        attrs: &[(u16, Vec<u8>)],
    ) -> Reply {
        if self.nonce.is_empty() {
            let r = self.request(method, None, attrs);
            if r.code() != 401 {
                return r;
            }
        }
        self.request(method, Some(creds), attrs)
    }

    pub fn allocate(&mut self, creds: (&str, &str)) -> Result<SocketAddr, u16> {
        self.allocate_transport(creds, 17)
    }

    /// Allocate with REQUESTED-TRANSPORT `protocol` (17 UDP, 6 TCP).
    pub fn allocate_transport(
        &mut self,
        creds: (&str, &str),
        protocol: u8,
    ) -> Result<SocketAddr, u16> {
        let r = self.authed(
            Method::ALLOCATE,
            creds,
            &[(attr::REQUESTED_TRANSPORT, vec![protocol, 0, 0, 0])],
        );
        match r.code() {
            0 => Ok(r
                .msg()
                .get_xor_address(attr::XOR_RELAYED_ADDRESS)
                .unwrap()
                .unwrap()),
            c => Err(c),
        }
    }

    /// XOR-PEER-ADDRESS for the next request this client sends.
    pub fn peer_attr(&self, peer: SocketAddr) -> (u16, Vec<u8>) {
        let mut t = [0u8; 12];
        t[8..].copy_from_slice(&(self.tid + 1).to_be_bytes());
        t[0] = 0xAB;
        let mut v = [0u8; 20];
        let n = attr::encode_xor_address(peer, &t, &mut v);
        (attr::XOR_PEER_ADDRESS, v[..n].to_vec())
    }

    /// The TCP connection itself (after a ConnectionBind, a byte pipe to the peer).
    pub fn into_stream(self) -> std::net::TcpStream {
        self.tcp.expect("a TCP client")
    }

    /// Next datagram from the relay, or None after `wait`.
    pub fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 1500];
        let r = self
            .sock
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec());
        self.sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        r
    }
}
