// The network lab: a public server, homes behind NAT routers, and links that lose, delay and
// cap packets, built from Linux network namespaces inside the sandbox namespace that
// `scripts/test` creates. Nothing here touches the machine's real interfaces: the lab refuses
// to start in a namespace that has any interface besides loopback.
//
//                         "the internet" 198.51.100.0/24 (a bridge in the sandbox namespace,
//                          which is also the observer at .1: it can reach the server)
//        ┌───────────────────────┼─────────────────────────┐
//   server .10             router A .21 (nft NAT)     router B .22 (nft NAT)
//   signal: HTTPS 443,       │ DNS on 10.0.1.1           │ DNS on 10.0.2.1
//   TURN 3478, TURNS 5349, home A 10.0.1.2           home B 10.0.2.2
//   SFU media (UDP)        (Chromium)                (Chromium)
//
// Browsers reach the server by its name (`call.test`) through the home router's DNS, over
// HTTPS with a certificate from the lab's own CA, which each home's browser trusts (as a real
// user's browser trusts a real CA). They get no help a user's browser would not have: no
// loopback candidates, no forced relay, no ignored certificate errors.
//
// Needs root, iproute2, nftables, conntrack, openssl, certutil (libnss3-tools), python3, and
// /run/netns (scripts/test mounts a tmpfs on /run for the lab's own mount namespace). The
// access links are a userspace cable (linkem.py): the kernel here has no netem.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

import { CHROMIUM, chromiumArgs } from '../lib/browser.mjs';
import { OPERATOR_TOKEN, repoRoot, signalBin } from '../lib/server.mjs';

const run = promisify(execFile);

export const SERVER_NAME = 'call.test';
/** A second name for the same server: TURN over TLS on 443 behind nginx (docs/deploy.md). */
export const TURN_NAME = 'turn.call.test';
export const SERVER_IP = '198.51.100.10';
const OBSERVER_IP = '198.51.100.1';
export const WEB_PORT = 443;
export const TURNS_PORT = 5349;
const HOMES = { a: 1, b: 2, c: 3 };

/** Runs a command; rejects with its stderr. */
async function sh(cmd, args, { input, timeout = 10_000 } = {}) {
  if (input === undefined) {
    const { stdout } = await run(cmd, args, { timeout }).catch((err) => {
      throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr || err.message}`);
    });
    return stdout;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`))));
    child.stdin.end(input);
  });
}

/** The lab refuses to run where it could reach a real network. */
async function assertSandbox() {
  if (process.getuid?.() !== 0) throw new Error('the network lab needs root (run it through scripts/test)');
  const links = (await sh('ip', ['-o', 'link', 'show'])).split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]);
  const foreign = links.filter((name) => name !== 'lo');
  if (foreign.length) {
    throw new Error(`refusing to build the lab in a namespace with real interfaces (${foreign.join(', ')}); run it through scripts/test`);
  }
  if (!existsSync('/run/netns')) {
    throw new Error('/run/netns is missing: scripts/test runs the lab with a tmpfs on /run in its own mount namespace');
  }
}

/** nftables for a home router: NAT on the WAN side, nothing unsolicited in, optional firewall. */
export function routerRules({ nat = 'cone', firewall = 'open' } = {}) {
  const masquerade = { cone: 'masquerade', symmetric: 'masquerade fully-random' }[nat];
  if (!masquerade) throw new Error(`unknown NAT kind ${nat}`);
  // Both ways, flows already open included (the rule comes before `ct state established`):
  // a firewall that starts dropping UDP mid-call stops the media the home receives too.
  const noUdp = 'meta l4proto udp drop';
  const block = {
    open: [],
    // A firewall that drops every UDP packet through the router (DNS to the router is input,
    // not forwarded, so the home still resolves names).
    'no-udp': [noUdp],
    // No UDP, and TCP only to the TLS ports (web and TURN over TLS).
    'tls-only': [noUdp, `iifname "lan" tcp dport != { ${WEB_PORT}, ${TURNS_PORT} } drop`],
    // Only TCP 443 gets out: the strictest corporate networks.
    'https-only': [noUdp, 'iifname "lan" tcp dport != 443 drop'],
  }[firewall];
  if (!block) throw new Error(`unknown firewall ${firewall}`);
  return `flush ruleset
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ${masquerade}
  }
}
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
    iifname "lan" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
${block.map((rule) => `    ${rule}\n`).join('')}    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
`;
}

export class Lab {
  /** @param {{homes?: string[]}} options */
  static async create({ homes = ['a', 'b'] } = {}) {
    await assertSandbox();
    const lab = new Lab(homes);
    try {
      await lab.#up();
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  constructor(homes) {
    this.id = `lab${process.pid % 100000}`;
    this.dir = mkdtempSync(path.join(tmpdir(), 'rtc-lab-'));
    this.homes = homes;
    this.namespaces = [];
    this.processes = new Set();
    this.links = {};
    this.rates = {};
    this.downlinkCaps = {};
    this.natKinds = {};
    this.browsers = new Set();
    this.server = null;
    this.bridge = `${this.id}-wan`;
    this.wanIp = Object.fromEntries(homes.map((h) => [h, `198.51.100.${20 + HOMES[h]}`]));
  }

  ns(role) {
    return `${this.id}-${role}`;
  }

  /** Runs `cmd` inside namespace `role` ('srv', 'ra', 'ha', …). */
  exec(role, cmd, args = [], options) {
    return sh('ip', ['netns', 'exec', this.ns(role), cmd, ...args], options);
  }

  async #addNs(role) {
    await sh('ip', ['netns', 'add', this.ns(role)]);
    this.namespaces.push(this.ns(role));
    // The lab is IPv4 only. Left on, IPv6 would give every new interface a link-local address
    // that turns from tentative to valid a second or two later (duplicate address detection),
    // and Chromium takes that address event for a network change: a page loading at that
    // moment fails with ERR_NETWORK_CHANGED (seen in CI on the first call after the lab came up).
    await this.exec(role, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await this.exec(role, 'ip', ['link', 'set', 'lo', 'up']);
  }

  async #up() {
    await this.#pki();
    await sh('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `${OBSERVER_IP}/24`, 'dev', this.bridge]);
    await sh('ip', ['link', 'set', this.bridge, 'up']);

    await this.#addNs('srv');
    await this.#wire('srv', 'eth0', `${SERVER_IP}/24`);
    await this.exec('srv', 'ip', ['route', 'add', 'default', 'via', OBSERVER_IP]);

    for (const home of this.homes) {
      const n = HOMES[home];
      const router = `r${home}`;
      const host = `h${home}`;
      await this.#addNs(router);
      await this.#addNs(host);
      await this.#wire(router, 'wan', `${this.wanIp[home]}/24`);
      await this.exec(router, 'ip', ['route', 'add', 'default', 'via', OBSERVER_IP]);
      // The access link: a userspace cable (linkem.py) between TAP devices, so that it can
      // lose, delay and jitter packets on a kernel without netem.
      this.links[home] = await this.spawn(`link-${home}`, 'python3', [path.join(repoRoot, 'tests/lab/linkem.py'),
        this.ns(host), 'eth0', this.ns(router), 'lan'], /^ready$/m, { stdin: true });
      await this.exec(router, 'ip', ['addr', 'add', `10.0.${n}.1/24`, 'dev', 'lan']);
      await this.exec(router, 'ip', ['link', 'set', 'lan', 'up']);
      await this.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      await this.exec(host, 'ip', ['addr', 'add', `10.0.${n}.2/24`, 'dev', 'eth0']);
      await this.exec(host, 'ip', ['link', 'set', 'eth0', 'up']);
      await this.exec(host, 'ip', ['route', 'add', 'default', 'via', `10.0.${n}.1`]);
      await this.setRouter(home, {});
      await this.#startDns(home);
      this.#browserWrapper(home);
    }
  }

  /** A veth from the internet bridge to `role`'s `ifname`. */
  async #wire(role, ifname, cidr) {
    const outside = `${this.id}-${role}`;
    await sh('ip', ['link', 'add', outside, 'type', 'veth', 'peer', 'name', ifname, 'netns', this.ns(role)]);
    await sh('ip', ['link', 'set', outside, 'master', this.bridge, 'up']);
    await this.exec(role, 'ip', ['addr', 'add', cidr, 'dev', ifname]);
    await this.exec(role, 'ip', ['link', 'set', ifname, 'up']);
  }

  /** The lab's CA, a certificate for the server's name, and an NSS database per home that trusts the CA. */
  async #pki() {
    const d = this.dir;
    this.caCert = path.join(d, 'ca.pem');
    this.cert = path.join(d, 'server.pem');
    this.key = path.join(d, 'server-key.pem');
    await sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', '/CN=rtc-call lab CA', '-keyout', path.join(d, 'ca-key.pem'), '-out', this.caCert,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
    await sh('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${SERVER_NAME}`,
      '-keyout', this.key, '-out', path.join(d, 'server.csr')]);
    writeFileSync(path.join(d, 'server.ext'), `subjectAltName=DNS:${SERVER_NAME},DNS:${TURN_NAME}\nextendedKeyUsage=serverAuth\n`);
    await sh('openssl', ['x509', '-req', '-in', path.join(d, 'server.csr'), '-CA', this.caCert, '-CAkey', path.join(d, 'ca-key.pem'),
      '-CAcreateserial', '-days', '2', '-extfile', path.join(d, 'server.ext'), '-out', this.cert]);
  }

  async #startDns(home) {
    const n = HOMES[home];
    await this.spawn(`dns-${home}`, 'ip', ['netns', 'exec', this.ns(`r${home}`), process.execPath,
      path.join(repoRoot, 'tests/lab/dns.mjs'), `10.0.${n}.1`, `${SERVER_NAME}=${SERVER_IP}`, `${TURN_NAME}=${SERVER_IP}`], /dns ready/);
    writeFileSync(path.join(this.dir, `resolv-${home}.conf`), `nameserver 10.0.${n}.1\noptions timeout:1 attempts:2\n`);
  }

  /** An executable that starts Chromium inside home `home`, resolving names through its router. */
  #browserWrapper(home) {
    const nss = path.join(this.dir, `home-${home}`);
    mkdirSync(path.join(nss, '.pki/nssdb'), { recursive: true });
    const wrapper = path.join(this.dir, `chromium-${home}`);
    writeFileSync(wrapper, `#!/bin/sh
# Chromium in lab home ${home}: its network namespace, its router's DNS, a HOME whose NSS
# database trusts the lab CA.
exec ip netns exec ${this.ns(`h${home}`)} sh -c 'mount --bind "$1" /etc/resolv.conf && export HOME="$2" && shift 2 && exec "$@"' \\
  sh ${path.join(this.dir, `resolv-${home}.conf`)} ${nss} ${CHROMIUM} "$@"
`);
    chmodSync(wrapper, 0o755);
  }

  async #trustCa(home) {
    const db = `sql:${path.join(this.dir, `home-${home}`, '.pki/nssdb')}`;
    if (existsSync(path.join(this.dir, `home-${home}`, '.pki/nssdb/cert9.db'))) return;
    await sh('certutil', ['-N', '-d', db, '--empty-password']);
    await sh('certutil', ['-A', '-d', db, '-n', 'rtc-call lab CA', '-t', 'C,,', '-i', this.caCert]);
  }

  /** Spawns a long-lived process; resolves once its output matches `ready` (at once if null). */
  spawn(label, cmd, args, ready, { timeout = 15_000, env, stdin = false } = {}) {
    const child = spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: env ?? process.env });
    child.label = label;
    child.output = '';
    this.processes.add(child);
    child.on('exit', () => this.processes.delete(child));
    if (ready === null) {
      const collect = (chunk) => { child.output += chunk; };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      return Promise.resolve(child);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} not ready within ${timeout} ms:\n${child.output}`)), timeout);
      const onData = (chunk) => {
        child.output += chunk;
        if (child.output.length > 2_000_000) child.output = child.output.slice(-1_000_000);
        if (ready.test(child.output)) {
          clearTimeout(timer);
          resolve(child);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${label} exited (${code ?? signal}):\n${child.output}`));
      });
    });
  }

  /**
   * Stops a process started by `spawn`: SIGTERM, so that a daemon's own children go with it
   * (nginx's workers outlive a SIGKILLed master and hold our pipes open), then SIGKILL.
   */
  stop(child) {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      const give = setTimeout(resolve, 6000);
      child.once('exit', () => {
        clearTimeout(kill);
        clearTimeout(give);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  /**
   * NAT kind ('cone' | 'symmetric') and firewall ('open' | 'no-udp' | 'tls-only' | 'https-only')
   * of a home's router. A firewall change keeps the connections the router tracks, as new
   * nftables rules do on a real router: a call's TCP signaling that the new rules still allow
   * stays up both ways (tests/lab/routers.test.mjs). A new NAT kind forgets the mappings, so
   * that every flow is mapped the new way.
   */
  async setRouter(home, { nat = 'cone', firewall = 'open' }) {
    await this.exec(`r${home}`, 'nft', ['-f', '-'], { input: routerRules({ nat, firewall }) });
    if (this.natKinds[home] !== nat) await this.flushMappings(home);
    this.natKinds[home] = nat;
  }

  /** Forgets every NAT mapping of a home's router (what a router reboot or a timeout does). */
  async flushMappings(home) {
    await this.exec(`r${home}`, 'conntrack', ['-F']).catch(() => {}); // exits 1 when the table is empty
  }

  /** Gives a home's router a new public address, as an ISP does; old mappings die with it. */
  async renumber(home) {
    const old = this.wanIp[home];
    const next = `198.51.100.${Number(old.split('.')[3]) + 100}`;
    const router = `r${home}`;
    await this.exec(router, 'ip', ['addr', 'del', `${old}/24`, 'dev', 'wan']);
    await this.exec(router, 'ip', ['addr', 'add', `${next}/24`, 'dev', 'wan']);
    await this.exec(router, 'ip', ['route', 'replace', 'default', 'via', OBSERVER_IP]);
    await this.flushMappings(home);
    this.wanIp[home] = next;
    return next;
  }

  /**
   * Impairs the link between a home and its router, both ways: `lossPct` and `delayMs`
   * (one way; the round trip adds both directions) with `jitterMs` (normal, no reordering) in
   * the link emulator, and a `rateKbit` cap with the kernel's token bucket filter.
   */
  async impair(home, { delayMs = 0, jitterMs = 0, lossPct = 0, rateKbit = 0 } = {}) {
    await this.#configureLink(home, { delay_ms: delayMs, jitter_ms: jitterMs, loss_pct: lossPct });
    // Touch the qdiscs only when the cap changes: Chromium takes a qdisc change on its
    // interface for a network change (ERR_NETWORK_CHANGED on requests in flight).
    if ((this.rates[home] ?? 0) === rateKbit) return;
    this.rates[home] = rateKbit;
    for (const [role, dev] of [[`h${home}`, 'eth0'], [`r${home}`, 'lan']]) {
      if (rateKbit) {
        // A home router's buffer: ~300 ms at the capped rate.
        await this.exec(role, 'tc', ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '6000', 'latency', '300ms']);
      } else {
        await this.exec(role, 'tc', ['qdisc', 'del', 'dev', dev, 'root']).catch(() => {});
      }
    }
  }

  /**
   * Caps only what reaches a home (its router's LAN side) with the kernel's token bucket
   * filter and a home router's ~300 ms buffer; its uplink stays as it is. 0 lifts the cap.
   * Not combined with `impair`'s `rateKbit` (both use the router's LAN qdisc).
   */
  async capDownlink(home, rateKbit) {
    if ((this.downlinkCaps[home] ?? 0) === rateKbit) return;
    this.downlinkCaps[home] = rateKbit;
    if (rateKbit) {
      await this.exec(`r${home}`, 'tc', ['qdisc', 'replace', 'dev', 'lan', 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '6000', 'latency', '300ms']);
    } else {
      await this.exec(`r${home}`, 'tc', ['qdisc', 'del', 'dev', 'lan', 'root']).catch(() => {});
    }
  }

  async clearImpairment(home) {
    await this.impair(home, {});
    await this.capDownlink(home, 0);
  }

  async #configureLink(home, config) {
    const link = this.links[home];
    const seen = (link.output.match(/^configured$/gm) ?? []).length;
    link.stdin.write(`${JSON.stringify({ ...config, seed: 1 })}\n`);
    const deadline = Date.now() + 5000;
    while ((link.output.match(/^configured$/gm) ?? []).length <= seen) {
      if (Date.now() > deadline) throw new Error(`link emulator of home ${home} did not take its configuration:\n${link.output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Starts `signal` on the server, reachable as https://call.test/. Embedded TURN on UDP/TCP
   * 3478 and, with `turnTls`, TURN over TLS on 5349 (the lab certificate).
   * @param {{turn?: boolean, turnTls?: boolean, args?: string[], publicDir?: string}} options
   */
  async startServer({ turn = true, turnTls = false, args = [], publicDir, config } = {}) {
    const flags = ['--listen', `0.0.0.0:${WEB_PORT}`, '--cert', this.cert, '--key', this.key,
      '--public-dir', publicDir ?? path.join(repoRoot, 'public'), '--cert-dir', path.join(this.dir, 'certs'), ...args];
    if (config) {
      // A signal.toml (docs/deploy/signal.toml's format) for what has no flag.
      const file = path.join(this.dir, 'signal.toml');
      writeFileSync(file, config);
      flags.push('--config', file);
    }
    if (!turn) flags.push('--no-turn');
    else flags.push('--turn-config', this.#turnConfig({ tls: turnTls }));
    return this.startSignal(flags, `0.0.0.0:${WEB_PORT}`);
  }

  /** Starts `signal` on the server with exactly `flags`; ready when it listens on `listen`. */
  async startSignal(flags, listen) {
    this.serverFlags = flags;
    this.serverListen = listen;
    return this.#launchServer();
  }

  async #launchServer() {
    // The operator token as an operator would give it (docs/security.md): serverJson() uses it.
    const env = { ...process.env, SIGNAL_LOG: process.env.SIGNAL_LOG ?? 'info', SIGNAL_OPERATOR_TOKEN: OPERATOR_TOKEN };
    const listening = new RegExp(`listening on ${this.serverListen.replaceAll('.', '\\.')}`);
    const proc = await this.spawn('signal', 'ip', ['netns', 'exec', this.ns('srv'), signalBin, ...this.serverFlags], listening, { env });
    this.server = proc;
    return { url: `https://${SERVER_NAME}`, proc, logs: () => proc.output };
  }

  /** Stops the server (SIGTERM, or `signal` as given) and starts it again with the same flags. */
  async restartServer({ downMs = 0, signal = 'SIGTERM' } = {}) {
    await this.stopServer(signal);
    if (downMs) await new Promise((r) => setTimeout(r, downMs));
    return this.#launchServer();
  }

  async stopServer(signal = 'SIGTERM') {
    const proc = this.server;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    if (signal === 'SIGTERM') return this.stop(proc);
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
  }

  /**
   * Starts coturn (Debian's `turnserver`, the relay ours stands in for) on the server, on
   * UDP/TCP `port`, with REST-API credentials signed with `secret`: the peer in side-by-side
   * measurements.
   */
  async startCoturn({ port = 3479, secret }) {
    return this.spawn('coturn', 'ip', ['netns', 'exec', this.ns('srv'), 'turnserver', '-n', '--listening-port', String(port),
      '--listening-ip', SERVER_IP, '--relay-ip', SERVER_IP, '--min-port', '30000', '--max-port', '39999',
      '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm', SERVER_NAME, '--no-tls', '--no-dtls', '--fingerprint',
      '--no-cli', '--no-multicast-peers', '--log-file', 'stdout', '--simple-log', '--pidfile', path.join(this.dir, 'turnserver.pid')],
    /Total General servers/);
  }

  /** A coturn-style config for the embedded relay: a fixed secret, so restarts keep credentials valid. */
  #turnConfig({ tls }) {
    const file = path.join(this.dir, `turn${tls ? '-tls' : ''}.conf`);
    const lines = ['listening-port=3478', 'use-auth-secret', 'static-auth-secret=lab-secret-not-for-production',
      'fingerprint', 'realm=call.test', 'no-dtls', 'no-multicast-peers', 'user-quota=12', 'total-quota=1200'];
    if (tls) lines.push(`tls-listening-port=${TURNS_PORT}`, `cert=${this.cert}`, `pkey=${this.key}`);
    else lines.push('no-tls');
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  /** Headless Chromium inside home `home` (fake camera and microphone). */
  async browser(home) {
    await this.#trustCa(home);
    const browser = await chromium.launch({
      executablePath: path.join(this.dir, `chromium-${home}`),
      args: chromiumArgs({ loopback: false }),
      timeout: 30_000,
    });
    this.browsers.add(browser);
    browser.on('disconnected', () => this.browsers.delete(browser));
    return browser;
  }

  /** What the observer (on the internet) sees of the server: GET over HTTPS by IP, with the operator token. */
  async serverJson(pathname) {
    const out = await sh('curl', ['-sS', '--fail-with-body', '--max-time', '5', '--cacert', this.caCert, '--resolve', `${SERVER_NAME}:${WEB_PORT}:${SERVER_IP}`,
      '-H', `Authorization: Bearer ${OPERATOR_TOKEN}`, `https://${SERVER_NAME}${pathname}`]);
    return JSON.parse(out);
  }

  /** Tears everything down: browsers, processes, namespaces, the bridge, the files. Safe to call twice. */
  async down() {
    await Promise.all([...this.browsers].map((b) => b.close().catch(() => {})));
    await Promise.all([...this.processes].map((child) => this.stop(child)));
    // Anything still inside a lab namespace (a daemon's orphaned child) goes too.
    for (const ns of this.namespaces) {
      const pids = (await sh('ip', ['netns', 'pids', ns]).catch(() => '')).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone already */
        }
      }
    }
    // The outside ends of the veths go first: a namespace whose sockets linger (TCP in
    // TIME_WAIT) is destroyed later by the kernel, and its veth with it.
    for (const ns of this.namespaces) await sh('ip', ['link', 'del', ns]).catch(() => {});
    for (const ns of this.namespaces.splice(0)) await sh('ip', ['netns', 'del', ns]).catch(() => {});
    await sh('ip', ['link', 'del', this.bridge]).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** What the lab left behind (for the clean-up check): namespaces and links of this lab. */
  async leftovers() {
    const nsList = existsSync('/run/netns') ? (await sh('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(this.id)) : [];
    const links = (await sh('ip', ['-o', 'link', 'show'])).split('\n').filter((l) => l.includes(this.id));
    return { namespaces: nsList, links, processes: this.processes.size, dir: existsSync(this.dir) };
  }
}
