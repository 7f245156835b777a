// Prometheus `/metrics` (docs/metrics.md): the exposition parses, follows 1-to-1 calls and SFU
// rooms as they happen, carries the embedded relay's figures, and has every series the shipped
// Grafana dashboard (docs/grafana/rtc-call.json) queries.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';

import { offer } from '../lib/sdp.mjs';
import { operatorHeaders, repoRoot, startServer } from '../lib/server.mjs';
import { until } from '../lib/browser.mjs';

let server;
let confDir;
const sockets = [];

before(async () => {
  // The embedded relay on ephemeral ports, so this file does not compete for 3478.
  confDir = mkdtempSync(path.join(tmpdir(), 'metrics-test-'));
  const conf = path.join(confDir, 'turnserver.conf');
  writeFileSync(conf, 'listening-ip=127.0.0.1\nlistening-port=0\nrealm=test.local\nuse-auth-secret\nstatic-auth-secret=metrics-test-secret\nno-tls\nno-dtls\n');
  server = await startServer({ turnConfig: conf });
});

after(async () => {
  for (const socket of sockets) socket.disconnect();
  await server?.stop();
  if (confDir) rmSync(confDir, { recursive: true, force: true });
});

/** `name{labels}` → value, checking the text format on the way. */
function parse(text) {
  const samples = new Map();
  let family = null;
  for (const line of text.trimEnd().split('\n')) {
    const typed = line.match(/^# TYPE ([a-z_]+) (gauge|counter)$/);
    if (typed) {
      family = typed[1];
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const sample = line.match(/^([a-z_]+)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+)$/);
    assert.ok(sample, `not a sample line: ${line}`);
    assert.equal(sample[1], family, `${line} is not under its own # TYPE`);
    samples.set(sample[1] + (sample[2] ?? ''), Number(sample[3]));
  }
  return samples;
}

async function scrape() {
  const res = await fetch(`${server.url}/metrics`, { headers: operatorHeaders });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parse(await res.text());
}

function connect(namespace = '') {
  const socket = io(`${server.url}${namespace}`, { transports: ['websocket'], forceNew: true, reconnection: false });
  sockets.push(socket);
  return socket;
}

describe('/metrics', () => {
  test('1-to-1 calls: clients, rooms and calls follow joins and leaves', async () => {
    const before = await scrape();
    assert.equal(before.get('signaling_calls'), 0);
    const [ann, bob] = [connect(), connect()];
    ann.emit('join', 'metrics-call');
    await until('a room with one member', async () => (await scrape()).get('signaling_rooms') === 1);
    assert.equal((await scrape()).get('signaling_calls'), 0, 'one member is not a call');
    bob.emit('join', 'metrics-call');
    await until('a call', async () => (await scrape()).get('signaling_calls') === 1);
    assert.equal((await scrape()).get('signaling_clients'), 2);
    bob.emit('leave', 'metrics-call');
    await until('the call over', async () => (await scrape()).get('signaling_calls') === 0);
  });

  test('SFU rooms: participants, joins and leaves', async () => {
    const sfu = connect('/sfu');
    const joined = await sfu.timeout(5000).emitWithAck('join', { room: 'metrics-room', name: 'Ann', sdp: offer() });
    assert.ok(joined.id, JSON.stringify(joined));
    // The SFU's report is refreshed in the background: wait for the join to show.
    await until('the participant counted', async () => (await scrape()).get('sfu_participants') === 1);
    let samples = await scrape();
    assert.equal(samples.get('sfu_rooms'), 1);
    assert.equal(samples.get('sfu_participants'), 1);
    assert.equal(samples.get('sfu_joins_total'), 1);
    const byQuality = ['good', 'fair', 'poor', 'unknown'].map((q) => samples.get(`sfu_participants_by_quality{quality="${q}"}`));
    assert.deepEqual(byQuality, [0, 0, 0, 1], 'no statistics yet: quality unknown');
    sfu.disconnect();
    await until('the participant gone', async () => (await scrape()).get('sfu_participants') === 0);
    samples = await scrape();
    assert.equal(samples.get('sfu_leaves_total'), 1);
    assert.equal(samples.get('sfu_rooms'), 0);
  });

  test('the embedded relay adds its own families', async () => {
    const samples = await scrape();
    for (const name of ['turn_allocations', 'turn_allocations_created_total', 'turn_bytes_to_peer_total']) {
      assert.equal(samples.get(name), 0, name);
    }
  });

  test('every series the Grafana dashboard queries is exposed', async () => {
    const dashboard = JSON.parse(readFileSync(path.join(repoRoot, 'docs/grafana/rtc-call.json'), 'utf8'));
    const exprs = [];
    const walk = (panels) => panels.forEach((p) => {
      for (const t of p.targets ?? []) exprs.push(t.expr);
      walk(p.panels ?? []);
    });
    walk(dashboard.panels);
    assert.ok(exprs.length >= 10, `${exprs.length} queries`);
    const exposed = new Set([...(await scrape()).keys()].map((k) => k.split('{')[0]));
    const queried = new Set(exprs.flatMap((e) => e.match(/\b(?:process|signaling|sfu|turn)_[a-z_]+/g) ?? []));
    for (const name of queried) assert.ok(exposed.has(name), `the dashboard queries ${name}, which /metrics does not expose`);
  });
});
