// docs/deploy.md, exercised: the files in docs/deploy/ as shipped, with only what an operator
// edits replaced (the domain, certificate paths, the secret, install paths), run on the lab's
// public server:
//   - signal behind nginx, which shares 443 between the web app and TURN over TLS (SNI), for
//     a home whose firewall lets nothing out but TCP 443: a 1-to-1 call and an SFU room;
//   - signal behind Caddy, for a home without UDP;
//   - the systemd unit passes `systemd-analyze verify`.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { until } from '../lib/browser.mjs';
import { repoRoot, signalBin } from '../lib/server.mjs';
import { Lab, SERVER_IP } from './lab.mjs';
import { joinCall, joinRoom, openPage, waitForMedia } from './calls.mjs';

const DEPLOY = path.join(repoRoot, 'docs/deploy');
let lab;
let dir;
const browsers = {};
const open = [];
const figures = {};

/** A file of docs/deploy with the operator's edits applied, written into the lab. */
function install(name, extra = []) {
  let text = readFileSync(path.join(DEPLOY, name), 'utf8');
  const edits = [
    ['call.example.org', 'call.test'],
    ['/etc/letsencrypt/live/call.test/fullchain.pem', lab.cert],
    ['/etc/letsencrypt/live/call.test/privkey.pem', lab.key],
    ['/etc/rtc-call/turnserver.conf', path.join(dir, 'turnserver.conf')],
    ['/usr/local/share/rtc-call/public', path.join(repoRoot, 'public')],
    ['static-auth-secret=CHANGE-ME-openssl-rand-base64-32', 'static-auth-secret=lab-deploy-secret'],
    ['/var/www/html', path.join(dir, 'www')],
    ...extra,
  ];
  for (const [from, to] of edits) text = text.replaceAll(from, to);
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Polls the server's HTTPS port from the internet until it answers. */
async function waitForWeb() {
  await until('the web app answers on 443', () => lab.serverJson('/api/stats').then(() => true, () => false), 15_000, 200);
}

async function startSignal() {
  install('turnserver.conf');
  return lab.startSignal(['-c', install('signal.toml')], '127.0.0.1:8080');
}

before(async () => {
  lab = await Lab.create({ homes: ['a', 'b'] });
  dir = path.join(lab.dir, 'deploy');
  mkdirSync(path.join(dir, 'www'), { recursive: true });
  for (const home of ['a', 'b']) browsers[home] = await lab.browser(home);
});

afterEach(async () => {
  for (const page of open.splice(0)) await page.context().close().catch(() => {});
  await Promise.all([...lab.processes].filter((c) => ['nginx', 'caddy'].includes(c.label)).map((c) => lab.stop(c)));
  await lab.stopServer();
});

after(async () => {
  console.log(`lab figures (deploy): ${JSON.stringify(figures)}`);
  await lab?.down();
  assert.deepEqual(await lab?.leftovers(), { namespaces: [], links: [], processes: 0, dir: false }, 'the lab cleans up after itself');
});

describe('docs/deploy.md on the lab', { timeout: 300_000 }, () => {
  it('behind nginx, a home that can only reach TCP 443 calls and joins rooms (TURN over TLS on 443)', async (t) => {
    await lab.setRouter('a', { nat: 'cone', firewall: 'https-only' });
    await lab.setRouter('b', { nat: 'cone' });
    await startSignal();
    const site = install('nginx-site.conf');
    const stream = install('nginx-stream.conf');
    // Debian's nginx.conf in miniature: modules, events, http with the site, then the stream.
    const main = path.join(dir, 'nginx.conf');
    writeFileSync(main, `pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
include /etc/nginx/modules-enabled/*.conf;
events {}
http {
    include /etc/nginx/mime.types;
    access_log off;
    include ${site};
}
include ${stream};
`);
    await lab.spawn('nginx', 'ip', ['netns', 'exec', lab.ns('srv'), 'nginx', '-c', main, '-g', 'daemon off;'], null);
    await waitForWeb();
    const ice = await lab.serverJson('/api/ice-servers');
    assert.ok(ice.iceServers[0].urls.includes('turns:turn.call.test:443?transport=tcp'), JSON.stringify(ice));

    // 1-to-1.
    const a = await openPage(browsers.a, 'https://call.test/?room=deploy', 'A');
    const b = await openPage(browsers.b, 'https://call.test/?room=deploy', 'B');
    open.push(a, b);
    await joinCall(a, 'deploy');
    await until('A waits in the room', async () => (await a.getByTestId('state').textContent()) === 'joined');
    const t0 = await joinCall(b, 'deploy');
    const [sa] = await Promise.all([waitForMedia(a), waitForMedia(b)]);
    figures.nginxCallSetupMs = Date.now() - t0;
    assert.equal(sa.pair.local.type, 'relay', JSON.stringify(sa.pair));
    assert.equal(sa.pair.local.relayProtocol, 'tls', JSON.stringify(sa.pair));
    t.diagnostic(`1-to-1 through nginx: A ${sa.pair.local.type}/${sa.pair.local.relayProtocol}; media both ways ${figures.nginxCallSetupMs} ms after B joined`);

    // An SFU room: A's media reaches the SFU through the relay, over TLS on 443.
    const ra = await openPage(browsers.a, 'https://call.test/sfu.html?res=320x240&fps=15', 'Ann');
    const rb = await openPage(browsers.b, 'https://call.test/sfu.html?res=320x240&fps=15', 'Bob');
    open.push(ra, rb);
    const r0 = await joinRoom(ra, 'deploy', 'Ann');
    await joinRoom(rb, 'deploy', 'Bob');
    const [room, roomB] = await Promise.all([waitForMedia(ra, { streams: 1, timeout: 45_000 }), waitForMedia(rb, { streams: 1, timeout: 45_000 })]);
    figures.nginxRoomSetupMs = Date.now() - r0;
    assert.equal(room.pair.local.relayProtocol, 'tls', JSON.stringify(room.pair));
    // The web listener is on loopback behind nginx; the media socket must not be. Bob (cone
    // NAT, UDP open) reaches it directly at the server's public address.
    assert.equal(roomB.pair.remote.address, `${SERVER_IP}:40000`, JSON.stringify(roomB.pair));
    assert.notEqual(roomB.pair.local.type, 'relay', JSON.stringify(roomB.pair));
    t.diagnostic(`SFU room through nginx: Ann ${room.pair.local.type}/${room.pair.local.relayProtocol} ⇄ ${room.pair.remote.address}; Bob ${roomB.pair.local.type}/${roomB.pair.local.protocol} ⇄ ${roomB.pair.remote.address}`);
  });

  it('behind Caddy, a home without UDP calls through the relay over TCP', async (t) => {
    await lab.setRouter('a', { nat: 'cone', firewall: 'no-udp' });
    await lab.setRouter('b', { nat: 'cone' });
    // With Caddy the relay does not share 443 (docs/deploy.md): no turns: URL.
    install('turnserver.conf');
    await lab.startSignal(['-c', install('signal.toml', [['  "turns:turn.call.test:443?transport=tcp",\n', '']])], '127.0.0.1:8080');
    // The lab has no ACME CA: Caddy gets the lab certificate instead of fetching one.
    const caddyfile = install('Caddyfile', [['reverse_proxy 127.0.0.1:8080', `reverse_proxy 127.0.0.1:8080\n\ttls ${lab.cert} ${lab.key}`]]);
    const home = path.join(dir, 'caddy-home');
    mkdirSync(home, { recursive: true });
    const env = { ...process.env, HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home };
    await lab.spawn('caddy', 'ip', ['netns', 'exec', lab.ns('srv'), 'caddy', 'run', '--config', caddyfile, '--adapter', 'caddyfile'], null, { env });
    await waitForWeb();
    const a = await openPage(browsers.a, 'https://call.test/?room=caddy', 'A');
    const b = await openPage(browsers.b, 'https://call.test/?room=caddy', 'B');
    open.push(a, b);
    await joinCall(a, 'caddy');
    await until('A waits in the room', async () => (await a.getByTestId('state').textContent()) === 'joined');
    const t0 = await joinCall(b, 'caddy');
    const [sa] = await Promise.all([waitForMedia(a), waitForMedia(b)]);
    figures.caddyCallSetupMs = Date.now() - t0;
    assert.equal(sa.pair.local.relayProtocol, 'tcp', JSON.stringify(sa.pair));
    t.diagnostic(`1-to-1 through Caddy: A ${sa.pair.local.type}/${sa.pair.local.relayProtocol}; media both ways ${figures.caddyCallSetupMs} ms after B joined`);
  });

  it('the systemd unit is valid', async () => {
    const unit = install('rtc-call.service', [['/usr/local/bin/signal', signalBin]]);
    const { stdout, stderr } = await promisify(execFile)('systemd-analyze', ['verify', unit]);
    assert.equal(`${stdout}${stderr}`.trim(), '', 'systemd-analyze verify reports nothing');
  });
});
