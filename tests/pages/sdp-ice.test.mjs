// Small pure helpers of the pages: SDP session ids (public/lib/sdp.js) and the ICE server
// configuration (public/lib/ice.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sameSession, sessionId } from '../../public/lib/sdp.js';
import { isStale, loadIceServers, parseIceServers } from '../../public/lib/ice.js';

const sdp = (id, version) => `v=0\r\no=- ${id} ${version} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n`;

test('session ids', () => {
  assert.equal(sessionId(sdp('4611731400430051336', 2)), '4611731400430051336');
  assert.equal(sessionId('v=0\r\n'), null);
  assert.equal(sessionId(undefined), null);
  assert.equal(sameSession(sdp('1', 2), sdp('1', 3)), true, 'a renegotiation bumps the version only');
  assert.equal(sameSession(sdp('1', 2), sdp('2', 2)), false, 'a new connection has a new id');
  assert.equal(sameSession('', sdp('1', 2)), false);
});

test('ICE servers: lifetime and refresh', () => {
  const body = { iceServers: [{ urls: ['turn:call.test:3478'], username: 'u', credential: 'c' }, { bogus: true }], ttl: 600 };
  const config = parseIceServers(body, 1_000);
  assert.deepEqual(config.iceServers, [body.iceServers[0]], 'entries without urls are dropped');
  assert.equal(config.expiresAt, 1_000 + 540_000, 'refreshed at 90 % of the ttl');
  assert.equal(isStale(config, 540_999), false);
  assert.equal(isStale(config, 541_000), true);
  assert.equal(isStale(null, 0), true);
  assert.equal(parseIceServers({ iceServers: [], ttl: 0 }, 0).expiresAt, 3_240_000, 'no credentials: hourly');
});

test('ICE servers: a failed request keeps what we had', async () => {
  const previous = { iceServers: [{ urls: 'stun:x' }], expiresAt: 5 };
  const errors = [];
  const failing = async () => ({ ok: false, status: 503 });
  const got = await loadIceServers({ fetchFn: failing, fallback: previous, onError: (e) => errors.push(e.message) });
  assert.equal(got, previous);
  assert.deepEqual(errors, ['HTTP 503']);
  const none = await loadIceServers({ fetchFn: failing });
  assert.deepEqual(none.iceServers, []);
  const ok = await loadIceServers({ fetchFn: async () => ({ ok: true, json: async () => ({ iceServers: [{ urls: 'stun:y' }], ttl: 10 }) }), now: 0 });
  assert.deepEqual(ok, { iceServers: [{ urls: 'stun:y' }], expiresAt: 9000 });
});
