// Signaling integration tests: the real `signal` server driven by the official socket.io
// clients, v4 and v2 (docs/protocol.md is the spec).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { startServer } from '../lib/server.mjs';

const require = createRequire(import.meta.url);
const clients = {
  v4: require('socket.io-client'),
  v2: require('socket.io-client-v2'),
};
const SERVER_EVENTS = ['joined', 'other_joined', 'otherjoin', 'full', 'leaved', 'bye', 'message', 'signal_error'];

/** A socket.io client that records every server event, in order. */
class Peer {
  constructor(io, url, name) {
    this.name = name;
    this.events = [];
    this.waiters = [];
    this.socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, rejectUnauthorized: false });
    for (const event of SERVER_EVENTS) {
      this.socket.on(event, (...args) => this.#record(event, args));
    }
    this.socket.on('disconnect', (reason) => this.#record('disconnect', [reason]));
  }

  #record(event, args) {
    this.events.push({ event, args });
    for (const waiter of [...this.waiters]) waiter();
  }

  connected() {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('connect_error', reject);
    });
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /** Resolves with the args of the first not-yet-consumed `event`; fails after `ms`. */
  next(event, ms = 3000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.events.findIndex((e) => e.event === event);
        if (index < 0) return false;
        const [found] = this.events.splice(index, 1);
        this.waiters = this.waiters.filter((w) => w !== check);
        clearTimeout(timer);
        resolve(found.args);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`${this.name}: no '${event}' within ${ms} ms; got ${JSON.stringify(this.events.map((e) => e.event))}`));
      }, ms);
      if (!check()) this.waiters.push(check);
    });
  }

  /** Asserts that no `event` arrives within `ms`. */
  async none(event, ms = 300) {
    await new Promise((r) => setTimeout(r, ms));
    const got = this.events.filter((e) => e.event === event);
    assert.deepEqual(got, [], `${this.name} must not receive '${event}'`);
  }

  async error(code) {
    const [report] = await this.next('signal_error');
    assert.equal(report.code, code, JSON.stringify(report));
    assert.equal(typeof report.message, 'string');
    return report;
  }

  close() {
    this.socket.close();
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

/** Joins `peers` to `room` one after the other, each waiting for its `joined`. */
async function joinAll(room, ...peers) {
  for (const p of peers) {
    p.emit('join', room);
    await p.next('joined');
  }
}

let server;
let roomCounter = 0;
const freshRoom = () => `room-${process.pid}-${++roomCounter}`;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

for (const [version, io] of Object.entries(clients)) {
  describe(`socket.io-client ${version}`, () => {
    const peers = [];
    const peer = async (name) => {
      const p = new Peer(io, server.url, `${version}:${name}`);
      peers.push(p);
      await p.connected();
      return p;
    };
    after(() => peers.forEach((p) => p.close()));

    test('every transition: joined, other_joined, message both ways, leaved, bye, rejoin', async () => {
      const room = freshRoom();
      const a = await peer('A');
      const b = await peer('B');

      a.emit('join', room);
      const [joinedRoom, aId, aInfo] = await a.next('joined');
      assert.equal(joinedRoom, room);
      assert.equal(aId, a.socket.id);
      assert.deepEqual(aInfo, { peers: [], capacity: 2 });

      // Alone: nobody to talk to yet.
      a.emit('message', room, { type: 'offer', sdp: 'v=0' });
      await a.error('no_peer');

      b.emit('join', room);
      const [, bId, bInfo] = await b.next('joined');
      assert.equal(bId, b.socket.id);
      assert.deepEqual(bInfo.peers, [a.socket.id]);
      assert.deepEqual(await a.next('other_joined'), [room, b.socket.id]);
      assert.deepEqual(await a.next('otherjoin'), [room, b.socket.id], 'alias for the course client');

      const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
      a.emit('message', room, offer);
      assert.deepEqual(await b.next('message'), [room, offer]);
      const answer = { type: 'answer', sdp: 'v=0\r\n' };
      b.emit('message', room, answer);
      assert.deepEqual(await a.next('message'), [room, answer]);
      const candidate = { type: 'candidate', label: 0, id: '0', candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host' };
      b.emit('message', room, candidate);
      assert.deepEqual(await a.next('message'), [room, candidate]);

      b.emit('leave', room);
      assert.deepEqual(await b.next('leaved'), [room, b.socket.id]);
      assert.deepEqual(await a.next('bye'), [room, b.socket.id]);
      // joined_unbind: relaying is refused again.
      a.emit('message', room, offer);
      await a.error('no_peer');

      // A new peer reconnects the waiting member.
      const c = await peer('C');
      c.emit('join', room);
      assert.deepEqual((await c.next('joined'))[2].peers, [a.socket.id]);
      assert.deepEqual(await a.next('other_joined'), [room, c.socket.id]);
      a.emit('message', room, offer);
      assert.deepEqual(await c.next('message'), [room, offer]);
      await b.none('message');
    });

    test('a third joiner gets full and is not in the room', async () => {
      const room = freshRoom();
      const [a, b, c] = await Promise.all([peer('A'), peer('B'), peer('C')]);
      await joinAll(room, a, b);
      await a.next('other_joined');
      c.emit('join', room);
      assert.deepEqual(await c.next('full'), [room, c.socket.id]);
      c.emit('message', room, { type: 'offer', sdp: 'v=0' });
      await c.error('not_in_room');
      await a.none('other_joined', 100);
      await a.none('message', 100);
      await b.none('message', 0);
      // The refused client is free to join another room.
      const other = freshRoom();
      c.emit('join', other);
      assert.equal((await c.next('joined'))[0], other);
    });

    test('passcodes: join(room, passcode); the opener sets one, the other needs it; wrong ones are refused, then rate limited; an emptied room forgets it', async () => {
      const room = freshRoom();
      const [a, b] = await Promise.all([peer('A'), peer('B')]);
      a.emit('join', room, 1234);
      await a.error('invalid_passcode');
      a.emit('join', room, 'open sesame');
      await a.next('joined');
      b.emit('join', room);
      assert.match((await b.error('passcode_required')).message, /has a passcode/);
      b.emit('join', room, 'open sesame!');
      await b.error('wrong_passcode');
      await a.none('other_joined', 100);
      b.emit('join', room, 'open sesame');
      assert.equal((await b.next('joined'))[0], room);
      await a.next('other_joined');
      b.emit('leave', room);
      await b.next('leaved');
      await a.next('bye');
      // Once empty, the room is forgotten, passcode and all: the next opener sets its own.
      a.emit('leave', room);
      await a.next('leaved');
      b.emit('join', room);
      assert.equal((await b.next('joined'))[0], room);
      b.emit('leave', room);
      await b.next('leaved');
      a.emit('join', room, 'open sesame');
      await a.next('joined');
      // Five failures from this address (the two above, three more), then even the right
      // passcode waits: guessing is slow. Other rooms stay open to the address.
      for (let i = 0; i < 3; i++) {
        b.emit('join', room, `guess ${i}`);
        await b.error('wrong_passcode');
      }
      b.emit('join', room, 'open sesame');
      await b.error('passcode_rate_limited');
      const other = freshRoom();
      b.emit('join', other);
      assert.equal((await b.next('joined'))[0], other);
      b.emit('leave', other);
      await b.next('leaved');
    });

    test('bye when the peer disconnects', async () => {
      const room = freshRoom();
      const [a, b] = await Promise.all([peer('A'), peer('B')]);
      await joinAll(room, a, b);
      const bId = b.socket.id;
      b.close();
      assert.deepEqual(await a.next('bye'), [room, bId]);
      // The seat is free again.
      const c = await peer('C');
      c.emit('join', room);
      assert.equal((await c.next('joined'))[2].peers.length, 1);
    });

    test('messages stay in their room', async () => {
      const [r1, r2] = [freshRoom(), freshRoom()];
      const [a, b, c, d] = await Promise.all(['A', 'B', 'C', 'D'].map(peer));
      await joinAll(r1, a, b);
      await joinAll(r2, c, d);
      a.emit('message', r1, { type: 'offer', sdp: 'for-b' });
      c.emit('message', r2, { type: 'offer', sdp: 'for-d' });
      // C names A's room: refused, and A/B hear nothing of it.
      c.emit('message', r1, { type: 'offer', sdp: 'intruder' });
      await c.error('not_in_room');
      assert.equal((await b.next('message'))[1].sdp, 'for-b');
      assert.equal((await d.next('message'))[1].sdp, 'for-d');
      await a.none('message', 200);
      await b.none('message', 0);
      await c.none('message', 0);
    });

    test('malformed and out-of-state input gets a clear error and changes nothing', async () => {
      const room = freshRoom();
      const [a, b] = await Promise.all([peer('A'), peer('B')]);
      a.emit('join');
      assert.equal((await a.error('invalid_room')).event, 'join');
      a.emit('join', 42);
      await a.error('invalid_room');
      a.emit('join', { room });
      await a.error('invalid_room');
      a.emit('join', 'bad room name!');
      await a.error('invalid_room');
      a.emit('join', 'x'.repeat(65));
      await a.error('invalid_room');
      a.emit('leave', room);
      await a.error('not_in_room');
      a.emit('message', room, { type: 'offer', sdp: 'v=0' });
      await a.error('not_in_room');
      a.emit('launch-missiles', room);
      assert.equal((await a.error('unknown_event')).event, 'launch-missiles');

      a.emit('join', room);
      await a.next('joined');
      a.emit('join', room);
      await a.error('already_joined');
      b.emit('join', room);
      await b.next('joined');
      await a.next('other_joined');

      for (const bad of [undefined, 7, null, [], { sdp: 'v=0' }, { type: 'bye' }, { type: 'offer', sdp: 1 }, { type: 'candidate', label: 'x', candidate: 'c' }]) {
        a.emit('message', room, bad);
        await a.error('invalid_message');
      }
      a.emit('message', room, { type: 'offer', sdp: 'a'.repeat(70 * 1024) });
      await a.error('payload_too_large');
      // None of it reached the peer, and the room still works.
      await b.none('message', 100);
      a.emit('message', room, { type: 'offer', sdp: 'ok' });
      assert.equal((await b.next('message'))[1].sdp, 'ok');
    });

    test('data is relayed exactly as sent: key order kept, plain text passed on', async () => {
      const room = freshRoom();
      const [a, b] = await Promise.all([peer('A'), peer('B')]);
      a.emit('join', room);
      await a.next('joined');
      b.emit('join', room);
      await b.next('joined');
      await a.next('other_joined');
      // The course's candidate shape, keys in its order (not sorted).
      a.emit('message', room, { type: 'candidate', label: 0, id: '0', candidate: 'candidate:1 1 udp 1 192.0.2.1 9 typ host' });
      const [, candidate] = await b.next('message');
      assert.deepEqual(Object.keys(candidate), ['type', 'label', 'id', 'candidate']);
      // The course's chat chapters send plain text through `message`.
      a.emit('message', room, 'hello, 你好');
      assert.equal((await b.next('message'))[1], 'hello, 你好');
    });

    test('four simultaneous joins: exactly two joined, two full', async () => {
      for (let round = 0; round < 5; round++) {
        const room = freshRoom();
        const four = await Promise.all([0, 1, 2, 3].map((i) => peer(`J${round}.${i}`)));
        four.forEach((p) => p.emit('join', room));
        const outcomes = await Promise.all(
          four.map((p) => Promise.race([p.next('joined').then(() => 'joined'), p.next('full').then(() => 'full')])),
        );
        assert.deepEqual(outcomes.toSorted(), ['full', 'full', 'joined', 'joined'], `round ${round}`);
        four.forEach((p) => p.close());
      }
    });

    test('an offer followed by 100 candidates arrives in order', async () => {
      const room = freshRoom();
      const [a, b] = await Promise.all([peer('A'), peer('B')]);
      await joinAll(room, a, b);
      const received = [];
      const done = new Promise((resolve) => {
        b.socket.on('message', (_room, data) => {
          received.push(data);
          if (received.length === 101) resolve();
        });
      });
      a.emit('message', room, { type: 'offer', sdp: 'v=0' });
      for (let i = 0; i < 100; i++) {
        a.emit('message', room, { type: 'candidate', label: 0, id: '0', candidate: `candidate:${i} 1 udp 1 127.0.0.1 ${40000 + i} typ host` });
      }
      await done;
      assert.equal(received[0].type, 'offer');
      assert.deepEqual(
        received.slice(1).map((c) => Number(c.candidate.split(' ')[0].split(':')[1])),
        [...Array(100).keys()],
      );
    });
  });
}

describe('limits and liveness', () => {
  const io = clients.v4;
  const peers = [];
  const peer = async (name) => {
    const p = new Peer(io, server.url, name);
    peers.push(p);
    await p.connected();
    return p;
  };
  after(() => peers.forEach((p) => p.close()));

  test('a flooding client is rate limited without disturbing another room', async () => {
    const [r1, r2] = [freshRoom(), freshRoom()];
    const [flooder, victim, x, y] = await Promise.all(['flooder', 'victim', 'X', 'Y'].map(peer));
    flooder.emit('join', r1);
    await flooder.next('joined');
    victim.emit('join', r1);
    await victim.next('joined');
    await joinAll(r2, x, y);

    for (let i = 0; i < 600; i++) flooder.emit('message', r1, { type: 'candidate', candidate: `c${i}` });
    const report = await flooder.next('signal_error');
    assert.equal(report[0].code, 'rate_limited');
    // The other room is served promptly meanwhile.
    const started = Date.now();
    x.emit('message', r2, { type: 'offer', sdp: 'unaffected' });
    assert.equal((await y.next('message'))[1].sdp, 'unaffected');
    assert.ok(Date.now() - started < 1000);
    // The burst allowance went through, the excess did not. Wait until the victim's count
    // stops growing (delivery lags on a busy machine), at most 5 s.
    const count = () => victim.events.filter((e) => e.event === 'message').length;
    let relayed = -1;
    for (let waited = 0; waited < 5000 && count() !== relayed; waited += 300) {
      relayed = count();
      await new Promise((r) => setTimeout(r, 300));
    }
    relayed = count();
    assert.ok(relayed >= 256 && relayed < 600, `relayed ${relayed} of 600`);
  });

  test('a 2 MiB frame closes only its own connection', async () => {
    const room = freshRoom();
    const [a, b, big] = await Promise.all([peer('A'), peer('B'), peer('big')]);
    await joinAll(room, a, b);
    big.emit('message', room, { type: 'offer', sdp: 'a'.repeat(2 * 1024 * 1024) });
    await big.next('disconnect', 5000);
    a.emit('message', room, { type: 'offer', sdp: 'still here' });
    assert.equal((await b.next('message'))[1].sdp, 'still here');
  });

  test('a vanished peer (frozen process, no FIN) gets bye within 5 s', async (t) => {
    const room = freshRoom();
    const a = await peer('A');
    a.emit('join', room);
    await a.next('joined');
    // A child process joins, then is frozen with SIGSTOP: its TCP connection stays open
    // but it stops answering pings, like a laptop whose lid was closed.
    const child = spawn(process.execPath, [fileURLToPath(new URL('./frozen-peer.mjs', import.meta.url)), server.url, room], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise((resolve, reject) => {
        child.stdout.on('data', (d) => String(d).includes('joined') && resolve());
        child.on('exit', (code) => reject(new Error(`frozen-peer exited with ${code}`)));
      });
      await a.next('other_joined');
      child.kill('SIGSTOP');
      const frozenAt = Date.now();
      await a.next('bye', 8000);
      const detectedIn = Date.now() - frozenAt;
      t.diagnostic(`bye ${detectedIn} ms after the peer froze`);
      assert.ok(detectedIn <= 5000, `bye after ${detectedIn} ms`);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('HTTP', () => {
  test('ICE servers come from the server, never from page source', async () => {
    const response = await fetch(`${server.url}/api/ice-servers`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const body = await response.json();
    assert.ok(Array.isArray(body.iceServers));
    assert.equal(typeof body.ttl, 'number');
  });

  test('health, stats, and no npm tree exposed', async () => {
    assert.equal(await (await fetch(`${server.url}/healthz`)).text(), 'ok');
    const stats = await server.operator('/api/stats');
    assert.equal(typeof stats.clients, 'number');
    assert.equal(typeof stats.rooms, 'number');
    assert.equal((await fetch(`${server.url}/node_modules/socket.io-client/package.json`)).status, 404);
    const script = await fetch(`${server.url}/vendor/socket.io.min.js`);
    assert.equal(script.status, 200, 'run `npm ci --prefix public` first');
    assert.match(await script.text(), /socket\.io/i);
  });

  test('HTTPS with a generated certificate, socket.io over TLS, HTTP redirect', async () => {
    const redirectPort = await freePort();
    const tlsServer = await startServer({ tls: true, args: ['--http-redirect-port', String(redirectPort)] });
    try {
      const p = new Peer(clients.v4, tlsServer.url, 'tls');
      await p.connected();
      p.emit('join', freshRoom());
      await p.next('joined');
      p.close();
      const redirect = await fetch(`http://127.0.0.1:${redirectPort}/call?room=1`, { redirect: 'manual' });
      assert.equal(redirect.status, 308);
      assert.equal(redirect.headers.get('location'), `https://127.0.0.1:${tlsServer.port}/call?room=1`);
    } finally {
      await tlsServer.stop();
    }
  });
});
