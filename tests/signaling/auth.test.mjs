// Join tokens (docs/security.md) against the real server: `signal token` mints them, the
// official socket.io clients v4 (handshake `auth`) and v2 (`?token=`) present them, and the
// server refuses what a token does not allow: no token, a bad or expired one, another room,
// publishing without the grant, TURN credentials without a token.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';

import { offer } from '../lib/sdp.mjs';
import { signalBin, startServer } from '../lib/server.mjs';

const require = createRequire(import.meta.url);
const clients = { v4: require('socket.io-client'), v2: require('socket.io-client-v2') };
const SECRET = 'a-secret-for-the-token-tests-0123456789';

let server;
const sockets = [];

before(async () => {
  server = await startServer({ args: ['--auth-secret', SECRET] });
});
after(async () => {
  for (const s of sockets) s.close();
  await server?.stop();
});

/** A token from the CLI, as an operator would mint one. */
function cliToken(...args) {
  return execFileSync(signalBin, ['token', '--secret', SECRET, ...args], { encoding: 'utf8' }).trim();
}

/** A token minted here (HS256 by hand), for claims the CLI would not produce. */
function craftedToken(claims, secret = SECRET) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
const now = () => Math.floor(Date.now() / 1000);

/** Connects (v4: `auth.token`; v2: `?token=`); resolves with the socket or the refusal's message. */
function connect(version, path, token) {
  const options = { transports: ['websocket'], forceNew: true, reconnection: false };
  if (token && version === 'v4') options.auth = { token };
  if (token && version === 'v2') options.query = { token };
  const socket = clients[version](`${server.url}${path}`, options);
  sockets.push(socket);
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ socket }));
    socket.once('connect_error', (err) => resolve({ refused: err?.message ?? String(err) }));
    socket.once('error', (err) => resolve({ refused: err?.message ?? String(err) })); // v2
  });
}

const ack = (socket, event, data) => socket.timeout(5000).emitWithAck(event, data);

/** The first `event` on `socket` (its first argument); rejects after `ms`. */
function next(socket, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (arg) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

describe('signaling connections need a valid token', () => {
  // socket.io v2 clients are the course's 1-to-1 pages, on `/`; a v2 client that sends a query
  // on another namespace is never connected by socketioxide (with or without tokens), so
  // `/sfu` is for clients from v3 on, which send the token in `auth`.
  for (const [version, paths] of [['v4', ['/', '/sfu']], ['v2', ['/']]]) {
    for (const path of paths) {
      test(`${version} ${path}: refused without one, a bad one or an expired one; accepted with one`, async () => {
        assert.match((await connect(version, path)).refused, /^token_required: /);
        assert.match((await connect(version, path, 'not.a.token')).refused, /^invalid_token: /);
        const otherSecret = craftedToken({ sub: 'eve', room: 'r', exp: now() + 600 }, 'another-secret-of-enough-length-0123456');
        assert.match((await connect(version, path, otherSecret)).refused, /^invalid_token: /);
        const expired = craftedToken({ sub: 'al', room: 'r', exp: now() - 120 });
        assert.match((await connect(version, path, expired)).refused, /^token_expired: /);
        const { socket } = await connect(version, path, cliToken('--room', 'r', '--identity', 'al'));
        assert.ok(socket?.connected);
      });
    }
  }
});

describe('what a token allows', () => {
  test('1-to-1: the token\'s room only', async () => {
    const { socket } = await connect('v4', '/', cliToken('--room', 'team-*', '--identity', 'al'));
    const refused = next(socket, 'signal_error');
    socket.emit('join', 'elsewhere');
    assert.equal((await refused).code, 'room_not_allowed');
    const joined = next(socket, 'joined');
    socket.emit('join', 'team-a');
    assert.equal(await joined, 'team-a');
  });

  test('SFU: the token\'s room only, and publishing only with the grant', async () => {
    const { socket: publisher } = await connect('v4', '/sfu', cliToken('--room', 'r-sfu', '--identity', 'pub'));
    assert.equal((await ack(publisher, 'join', { room: 'other', name: 'Pub', sdp: offer() })).error?.code, 'room_not_allowed');
    assert.ok((await ack(publisher, 'join', { room: 'r-sfu', name: 'Pub', sdp: offer() })).id);

    const { socket: viewer } = await connect('v4', '/sfu', cliToken('--room', 'r-sfu', '--identity', 'view', '--no-publish'));
    const refused = await ack(viewer, 'join', { room: 'r-sfu', name: 'View', sdp: offer() });
    assert.equal(refused.error?.code, 'publish_not_allowed');
    assert.match(refused.error.message, /receive-only offer/);
    const joined = await ack(viewer, 'join', { room: 'r-sfu', name: 'View', sdp: offer(2, 'recvonly') });
    assert.ok(joined.id, JSON.stringify(joined));
    assert.equal((await ack(viewer, 'share', { on: true })).error?.code, 'publish_not_allowed');
  });
});

describe('recording a room needs its grant', () => {
  test('SFU: `record` refused without the grant, let through with it', async () => {
    const { socket: plain } = await connect('v4', '/sfu', cliToken('--room', 'r-rec', '--identity', 'plain'));
    assert.ok((await ack(plain, 'join', { room: 'r-rec', name: 'Plain', sdp: offer() })).id);
    assert.equal((await ack(plain, 'record', { on: true })).error?.code, 'record_not_allowed');
    assert.equal((await ack(plain, 'record', { on: false })).error?.code, 'record_not_allowed');
    const { socket: host } = await connect('v4', '/sfu', cliToken('--room', 'r-rec', '--identity', 'host', '--record'));
    const joined = await ack(host, 'join', { room: 'r-rec', name: 'Host', sdp: offer() });
    assert.deepEqual(joined.recording, { on: false });
    // Past the grant: the room has publications from the joins' offers, though no media
    // ever connects here (a browser test records a real room:
    // tests/browser/room-recording.test.mjs).
    const started = await ack(host, 'record', { on: true });
    assert.equal(started.recording?.on, true, JSON.stringify(started));
    assert.equal(started.recording.by, 'Host');
    assert.deepEqual((await ack(host, 'record', { on: false })).recording, { on: false });
  });
});

describe('going live needs its grant', () => {
  test('SFU: `live` refused without the grant, let through with it', async () => {
    const { socket: plain } = await connect('v4', '/sfu', cliToken('--room', 'r-live', '--identity', 'plain'));
    assert.ok((await ack(plain, 'join', { room: 'r-live', name: 'Plain', sdp: offer(), live: true })).id);
    assert.equal((await ack(plain, 'live', { on: true })).error?.code, 'live_not_allowed');
    const { socket: host } = await connect('v4', '/sfu', cliToken('--room', 'r-live', '--identity', 'host', '--live'));
    const joined = await ack(host, 'join', { room: 'r-live', name: 'Host', sdp: offer() });
    assert.equal(joined.live_room, true);
    // Past the grant the room goes on air: the join offered to publish, so there is something
    // to stream (no media ever flows here; a browser test streams a real room:
    // tests/browser/live.test.mjs). The decision sees the join answered just before: an
    // earlier test's report, reused, once made this `nothing_to_stream` now and then.
    const live = await ack(host, 'live', { on: true });
    assert.equal(live.live?.on, true, JSON.stringify(live));
    assert.equal(live.live.by, 'Host');
    assert.deepEqual((await ack(host, 'live', { on: false })).live?.on, false);
  });
});

describe('moderating a room needs its grant', () => {
  test('SFU: `moderate` refused without the grant, even to the room\'s first participant; done with it', async () => {
    const { socket: first } = await connect('v4', '/sfu', cliToken('--room', 'r-mod', '--identity', 'first'));
    const joined = await ack(first, 'join', { room: 'r-mod', name: 'First', sdp: offer() });
    assert.equal(joined.moderation, 'none');
    assert.equal((await ack(first, 'moderate', { action: 'end' })).error?.code, 'not_moderator');
    const { socket: mod } = await connect('v4', '/sfu', cliToken('--room', 'r-mod', '--identity', 'mod', '--moderate'));
    const modJoined = await ack(mod, 'join', { room: 'r-mod', name: 'Mod', sdp: offer() });
    assert.equal(modJoined.moderation, 'granted');
    const out = next(first, 'removed');
    assert.deepEqual(await ack(mod, 'moderate', { action: 'remove', participant: joined.id }), { ok: true });
    assert.deepEqual(await out, { by: 'Mod', reason: 'removed' });
  });
});

describe('TURN credentials need a token too', () => {
  test('/api/ice-servers', async () => {
    const none = await fetch(`${server.url}/api/ice-servers`);
    assert.equal(none.status, 401);
    assert.match(await none.text(), /^token_required: /);
    const token = cliToken('--room', 'r', '--identity', 'al');
    assert.equal((await fetch(`${server.url}/api/ice-servers`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.equal((await fetch(`${server.url}/api/ice-servers?token=${token}`)).status, 200);
    const expired = craftedToken({ sub: 'al', room: 'r', exp: now() - 120 });
    assert.equal((await fetch(`${server.url}/api/ice-servers?token=${expired}`)).status, 401);
  });

  test('/api/ice-servers: bad tokens are refused with the reason, and give nothing away', async () => {
    const ask = async (token) => {
      const res = await fetch(`${server.url}/api/ice-servers`, { headers: { authorization: `Bearer ${token}` } });
      const text = await res.text();
      assert.doesNotMatch(text, /turn:|credential/, 'no TURN credentials in a refusal');
      return `${res.status} ${text.split(':')[0]}`;
    };
    const later = now() + 600;
    assert.equal(await ask('x'.repeat(5000)), '401 invalid_token', 'oversized');
    assert.equal(await ask('not.a.token'), '401 invalid_token', 'malformed');
    assert.equal(await ask(craftedToken({ sub: 'eve', room: 'r', exp: later }, 'another-secret-of-enough-length-0123456')), '401 invalid_token', 'another secret');
    assert.equal(await ask(craftedToken({ room: 'r', exp: later })), '401 invalid_token', 'no identity');
    assert.equal(await ask(craftedToken({ sub: 'al', room: 'r', exp: now() - 120 })), '401 token_expired');
    assert.equal(await ask(craftedToken({ sub: 'al', room: 'r', exp: later + 3600, nbf: later })), '401 token_not_yet_valid');
    // alg "none" with the signature stripped: not a token we accept.
    const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    assert.equal(await ask(`${part({ alg: 'none', typ: 'JWT' })}.${part({ sub: 'al', room: 'r', exp: later })}.`), '401 invalid_token', 'alg none');
  });
});

describe('signal token', () => {
  test('says what is wrong', () => {
    const run = (...args) => spawnSync(signalBin, ['token', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    const short = run('--room', 'r', '--identity', 'a', '--secret', 'short');
    assert.notEqual(short.status, 0);
    assert.match(short.stderr, /at least 32 characters/);
    const none = run('--room', 'r', '--identity', 'a');
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /no auth secret/);
    assert.notEqual(run('--room', 'r', '--identity', 'a', '--secret', SECRET, '--ttl', '0').status, 0);
    const claims = JSON.parse(Buffer.from(cliToken('--room', 'r', '--identity', 'a', '--ttl', '2h').split('.')[1], 'base64url'));
    assert.equal(claims.sub, 'a');
    assert.ok(Math.abs(claims.exp - now() - 7200) <= 5, JSON.stringify(claims));
    assert.equal(claims.grants.publish, true);
  });
});
