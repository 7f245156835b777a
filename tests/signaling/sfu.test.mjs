// The `/sfu` namespace driven by the official socket.io client (no browser): join answers,
// capacity, participant lists, leave/disconnect, and refusal of bad input with a clear error
// that leaves other rooms alone (docs/protocol.md, "SFU rooms"). Media never connects here:
// the offers are well-formed SDP with made-up ICE/DTLS parameters, which is all a join needs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { io } from 'socket.io-client';

import { offer } from '../lib/sdp.mjs';
import { startServer } from '../lib/server.mjs';
import { until } from '../lib/browser.mjs';

const CAPACITY = 3;

/** A Chromium-shaped offer: `media` sections alternating audio (Opus) and video (VP8). */

let server;
const sockets = [];

function client() {
  const socket = io(`${server.url}/sfu`, { transports: ['websocket'], forceNew: true, reconnection: false });
  socket.participants = [];
  socket.on('participants', (list) => socket.participants.push(list));
  sockets.push(socket);
  return socket;
}

function ack(socket, event, data, ms = 5000) {
  return socket.timeout(ms).emitWithAck(event, data);
}

async function room(name) {
  const report = await server.operator('/api/rooms');
  return report.rooms.find((r) => r.room === name);
}

before(async () => {
  server = await startServer({ args: ['--sfu-room-capacity', String(CAPACITY)] });
});

after(async () => {
  for (const socket of sockets) socket.close();
  await server?.stop();
});

describe('/sfu signaling', () => {
  test('join answers the offer, lists participants and tells the others; full room refused', async () => {
    const first = client();
    const reply = await ack(first, 'join', { room: 'r-cap', name: 'Ada', sdp: offer() });
    assert.equal(reply.type, 'answer');
    assert.match(reply.id, /^p[0-9a-f]{12}$/);
    assert.match(reply.sdp, /^v=0/);
    assert.equal((reply.sdp.match(/^m=/gm) ?? []).length, 2, 'one answer section per offered one');
    assert.match(reply.sdp, /a=setup:passive/);
    assert.deepEqual(reply.participants.map((p) => p.name), ['Ada']);
    assert.equal(reply.capacity, CAPACITY);

    const others = [];
    for (const name of ['Brian', 'Chen']) {
      const socket = client();
      const joined = await ack(socket, 'join', { room: 'r-cap', name, sdp: offer() });
      assert.ok(joined.id, `${name} joined: ${JSON.stringify(joined)}`);
      others.push(socket);
    }
    await until('Ada sees three participants', () => first.participants.at(-1)?.length === 3, 5000);
    assert.deepEqual(first.participants.at(-1).map((p) => p.name).sort(), ['Ada', 'Brian', 'Chen']);

    const fourth = client();
    const refused = await ack(fourth, 'join', { room: 'r-cap', name: 'Dora', sdp: offer() });
    assert.equal(refused.error?.code, 'full');
    // Another room is not affected by this one being full.
    const elsewhere = await ack(fourth, 'join', { room: 'r-other', name: 'Dora', sdp: offer() });
    assert.ok(elsewhere.id);

    // A leave and a disconnect both free a seat and update the others' lists.
    assert.deepEqual(await ack(others[0], 'leave', {}), { ok: true });
    others[1].close();
    await until('Ada alone again', () => first.participants.at(-1)?.length === 1, 5000);
    await until('the report agrees', async () => (await room('r-cap'))?.participants.length === 1, 5000);
  });

  test('bad input gets a clear error and changes nothing', async () => {
    const socket = client();
    // Payload type 96 for VP8 in one m-line and VP9 in another: str0m panicked on it, which
    // ended the media thread and the server process (found by fuzzing, docs/fuzzing.md).
    const vp8 = 'a=rtpmap:96 VP8/90000';
    const four = offer(4);
    const at = four.lastIndexOf(vp8);
    const twoCodecs = `${four.slice(0, at)}a=rtpmap:96 VP9/90000${four.slice(at + vp8.length)}`;
    const cases = [
      [{ room: 'bad room!', name: 'x', sdp: offer() }, 'invalid_room'],
      [{ room: 'r-bad', name: '', sdp: offer() }, 'invalid_name'],
      [{ room: 'r-bad', name: 'x' }, 'invalid_sdp'],
      [{ room: 'r-bad', name: 'x', sdp: 'v=0\r\nnot an offer' }, 'media_error'],
      // A real browser sends 2-3 sections; hundreds would make every other member renegotiate.
      [{ room: 'r-bad', name: 'x', sdp: offer(5) }, 'media_error'],
      [{ room: 'r-bad', name: 'x', sdp: twoCodecs }, 'media_error'],
      [{ room: 'r-bad', name: 'x', sdp: `${offer()}a=x:${'y'.repeat(70 * 1024)}\r\n` }, 'payload_too_large'],
    ];
    for (const [data, code] of cases) {
      const reply = await ack(socket, 'join', data);
      assert.equal(reply.error?.code, code, JSON.stringify(reply).slice(0, 200));
      assert.ok(reply.error.message.length > 0);
    }
    assert.equal((await ack(socket, 'leave', {})).error?.code, 'not_joined');
    assert.equal((await ack(socket, 'candidate', { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host' })).error?.code, 'not_joined');
    assert.equal(await room('r-bad'), undefined, 'no room was created');
    // The same connection can still join properly afterwards.
    const reply = await ack(socket, 'join', { room: 'r-bad', name: 'x', sdp: offer() });
    assert.ok(reply.id, JSON.stringify(reply));
    assert.equal((await ack(socket, 'join', { room: 'r-bad', name: 'x', sdp: offer() })).error?.code, 'already_joined');
    const garbage = await ack(socket, 'candidate', { candidate: 'candidate:garbage' });
    assert.ok(garbage.error, 'a malformed candidate is refused');
  });

  test('a candidate emitted right after join, without waiting, is applied after it', async () => {
    const socket = client();
    // No await between the two: the server must handle them in order.
    const joined = ack(socket, 'join', { room: 'r-order', name: 'Ada', sdp: offer() });
    const candidate = ack(socket, 'candidate', { candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 });
    const [reply, candidateReply] = await Promise.all([joined, candidate]);
    assert.ok(reply.id, JSON.stringify(reply));
    assert.deepEqual(candidateReply, { ok: true }, 'not refused as not_joined, not lost');
    // Leave right after a join, then join again at once: both in order as well.
    const again = client();
    const first = ack(again, 'join', { room: 'r-order', name: 'Bo', sdp: offer() });
    const left = ack(again, 'leave', {});
    const second = ack(again, 'join', { room: 'r-order', name: 'Bo', sdp: offer() });
    const [firstReply, leftReply, secondReply] = await Promise.all([first, left, second]);
    // The media plane answers a join on its own thread, so the leave may be handled before
    // or after that answer comes back; either way the leave applies to that first join.
    if (firstReply.error) assert.equal(firstReply.error.code, 'not_joined', 'the first join was left before its answer');
    else assert.ok(firstReply.id, JSON.stringify(firstReply));
    assert.deepEqual(leftReply, { ok: true });
    assert.ok(secondReply.id, JSON.stringify(secondReply));
    assert.notEqual(secondReply.id, firstReply.id, 'the second join is a new participant');
    await until('two in the room', async () => (await room('r-order'))?.participants.length === 2, 5000);
  });

  test('restart: acked for a joined participant, refused otherwise, rate-limited', async () => {
    const socket = client();
    assert.equal((await ack(socket, 'restart', {})).error?.code, 'not_joined');
    const reply = await ack(socket, 'join', { room: 'r-restart', name: 'Ada', sdp: offer() });
    assert.ok(reply.id, JSON.stringify(reply));
    assert.deepEqual(await ack(socket, 'restart', {}), { ok: true });
    const again = await ack(socket, 'restart', {});
    assert.equal(again.error?.code, 'rate_limited', JSON.stringify(again));
  });

  test('layer: a joined participant says which video layer a tile needs', async () => {
    const socket = client();
    const ann = { participant: 'p000000000001', quality: 'low' };
    assert.equal((await ack(socket, 'layer', ann)).error?.code, 'not_joined');
    const reply = await ack(socket, 'join', { room: 'r-layer', name: 'Ada', sdp: offer() });
    assert.ok(reply.id, JSON.stringify(reply));
    for (const quality of ['off', 'low', 'medium', 'high']) {
      // A publisher that is not (or no longer) in the room is ignored, not an error.
      assert.deepEqual(await ack(socket, 'layer', { participant: reply.id, quality }), { ok: true }, quality);
    }
    for (const bad of [{ participant: reply.id, quality: 'ultra' }, { participant: 'alice', quality: 'low' }, { quality: 'low' }, 'low']) {
      const refused = await ack(socket, 'layer', bad);
      assert.equal(refused.error?.code, 'invalid_layer', JSON.stringify(bad));
      assert.match(refused.error.message, /off, low, medium, high/);
    }
  });

  test('share: the server offers an m-line to receive the screen on', async () => {
    const socket = client();
    assert.equal((await ack(socket, 'share', { on: true })).error?.code, 'not_joined');
    const reply = await ack(socket, 'join', { room: 'r-share', name: 'Ada', sdp: offer() });
    assert.ok(reply.id, JSON.stringify(reply));
    for (const bad of [{}, { on: 'yes' }, true]) {
      const refused = await ack(socket, 'share', bad);
      assert.equal(refused.error?.code, 'invalid_share', JSON.stringify(bad));
    }
    const update = new Promise((resolve) => socket.once('update', (o, answer) => resolve({ o, answer })));
    assert.deepEqual(await ack(socket, 'share', { on: true }), { ok: true });
    const { o } = await update;
    const sections = o.sdp.split('\r\nm=').slice(1);
    assert.equal(sections.length, 3, 'one more m-line');
    assert.match(sections[2], /^video /);
    assert.match(sections[2], /\r\na=recvonly\r\n/, 'the server receives on it');
    assert.deepEqual(await ack(socket, 'share', { on: false }), { ok: true });
  });

  test('record: refused before joining, for bad input, and in a room where nobody publishes', async () => {
    const viewer = client();
    assert.equal((await ack(viewer, 'record', { on: true })).error?.code, 'not_joined');
    const joined = await ack(viewer, 'join', { room: 'r-rec-empty', name: 'Vee', sdp: offer(2, 'recvonly') });
    assert.deepEqual(joined.recording, { on: false }, 'the join answer says whether the room is recorded');
    for (const bad of [true, {}, { on: 'yes' }]) assert.equal((await ack(viewer, 'record', bad)).error?.code, 'invalid_record');
    const refused = await ack(viewer, 'record', { on: true });
    assert.equal(refused.error?.code, 'nothing_to_record');
    assert.match(refused.error.message, /nobody in the room publishes/);
    assert.deepEqual((await ack(viewer, 'record', { on: false })).recording, { on: false }, 'stopping what is not on is fine');
  });

  test('live: refused before joining, for bad input, in a room not opened live, and with nothing to stream', async () => {
    const plain = client();
    assert.equal((await ack(plain, 'live', { on: true })).error?.code, 'not_joined');
    const joined = await ack(plain, 'join', { room: 'r-live-plain', name: 'Pat', sdp: offer(2, 'recvonly') });
    assert.equal(joined.live_room, false, 'a room is not live-ready unless its opener asks');
    assert.deepEqual(joined.live, { on: false }, 'the join answer says whether the room is on air');
    for (const bad of [true, {}, { on: 'yes' }]) assert.equal((await ack(plain, 'live', bad)).error?.code, 'invalid_live');
    const refused = await ack(plain, 'live', { on: true });
    assert.equal(refused.error?.code, 'not_live_room');
    assert.match(refused.error.message, /not H\.264/);

    assert.equal((await ack(client(), 'join', { room: 'r-live', name: 'Odd', sdp: offer(2, 'recvonly'), live: 'yes' })).error?.code, 'invalid_live');
    const host = client();
    const opened = await ack(host, 'join', { room: 'r-live', name: 'Hal', sdp: offer(2, 'recvonly'), live: true });
    assert.equal(opened.live_room, true);
    // A later joiner takes the room as it is.
    const late = await ack(client(), 'join', { room: 'r-live', name: 'Lou', sdp: offer(2, 'recvonly') });
    assert.equal(late.live_room, true);
    const empty = await ack(host, 'live', { on: true });
    assert.equal(empty.error?.code, 'nothing_to_stream');
    assert.deepEqual((await ack(host, 'live', { on: false })).live, { on: false }, 'taking off air what is not on is fine');
  });

  test('passcodes: the opener sets one; others need it; wrong ones are refused, then rate limited; an emptied room forgets it', async () => {
    const opener = client();
    assert.equal((await ack(opener, 'join', { room: 'r-pass', name: 'Olga', sdp: offer(2, 'recvonly'), passcode: 1234 })).error?.code, 'invalid_passcode');
    assert.ok((await ack(opener, 'join', { room: 'r-pass', name: 'Olga', sdp: offer(2, 'recvonly'), passcode: 'open sesame' })).id);
    const guest = client();
    const join = (passcode) => ack(guest, 'join', { room: 'r-pass', name: 'Gus', sdp: offer(2, 'recvonly'), ...(passcode === undefined ? {} : { passcode }) });
    const none = await join();
    assert.equal(none.error?.code, 'passcode_required');
    assert.match(none.error.message, /has a passcode/);
    assert.equal((await join('open sesame!')).error?.code, 'wrong_passcode');
    const right = await join('open sesame');
    assert.ok(right.id, JSON.stringify(right));
    assert.deepEqual(await ack(guest, 'leave', {}), { ok: true });
    // Five failures from this address (one above, one with none, three more), then even the
    // right passcode waits: guessing is slow.
    for (let i = 0; i < 3; i++) assert.equal((await join(`guess ${i}`)).error?.code, 'wrong_passcode');
    const blocked = await join('open sesame');
    assert.equal(blocked.error?.code, 'passcode_rate_limited', JSON.stringify(blocked));
    // Other rooms stay open to this address.
    const elsewhere = await ack(guest, 'join', { room: 'r-pass-other', name: 'Gus', sdp: offer(2, 'recvonly') });
    assert.ok(elsewhere.id, JSON.stringify(elsewhere));
    assert.deepEqual(await ack(guest, 'leave', {}), { ok: true });
    // The room is forgotten once empty; a new opener sets what it likes (rate limit aside,
    // which is per address: a fresh server starts clean).
    assert.deepEqual(await ack(opener, 'leave', {}), { ok: true });
    await until('the room is gone', async () => !(await room('r-pass')), 5000);
  });

  test('moderation without tokens: the longest-present participant removes, mutes and ends the room; nobody else may', async () => {
    const removed = (socket) => new Promise((resolve) => socket.once('removed', resolve));
    const [ada, bob, cy] = [client(), client(), client()];
    const joined = {};
    for (const [socket, name] of [[ada, 'Ada'], [bob, 'Bob'], [cy, 'Cy']]) {
      joined[name] = await ack(socket, 'join', { room: 'r-mod', name, sdp: offer() });
      assert.equal(joined[name].moderation, 'host', JSON.stringify(joined[name]));
    }
    const id = (name) => joined[name].id;
    // Only Ada, first in the list, moderates.
    const refused = await ack(bob, 'moderate', { action: 'remove', participant: id('Cy') });
    assert.equal(refused.error?.code, 'not_moderator', JSON.stringify(refused));
    assert.match(refused.error.message, /moderator/);
    assert.equal((await ack(bob, 'moderate', { action: 'end' })).error?.code, 'not_moderator');
    for (const bad of [{ action: 'remove' }, { action: 'kick', participant: id('Cy') }, 'end', null]) {
      assert.equal((await ack(ada, 'moderate', bad)).error?.code, 'invalid_moderate', JSON.stringify(bad));
    }
    assert.equal((await ack(ada, 'moderate', { action: 'remove', participant: 'p000000000000' })).error?.code, 'no_such_participant');
    // Muting shows in everyone's list; the media plane drops the audio (tests in sfu/tests/core).
    assert.deepEqual(await ack(ada, 'moderate', { action: 'mute', participant: id('Bob') }), { ok: true });
    await until('Cy sees Bob muted', () => cy.participants.at(-1)?.find((p) => p.name === 'Bob')?.muted === true, 3000);
    assert.deepEqual(await ack(ada, 'moderate', { action: 'unmute', participant: id('Bob') }), { ok: true });
    await until('Cy sees Bob unmuted', () => cy.participants.at(-1)?.find((p) => p.name === 'Bob')?.muted === false, 3000);
    // Removing: Bob hears who did it and is out of the room (he may join again).
    const bobOut = removed(bob);
    assert.deepEqual(await ack(ada, 'moderate', { action: 'remove', participant: id('Bob') }), { ok: true });
    assert.deepEqual(await bobOut, { by: 'Ada', reason: 'removed' });
    await until('Bob is gone', async () => (await room('r-mod'))?.participants.length === 2, 3000);
    assert.equal((await ack(bob, 'moderate', { action: 'end' })).error?.code, 'not_joined');
    assert.equal((await ack(bob, 'leave', {})).error?.code, 'not_joined', 'his session is over');
    // Ada leaves: Cy has been there longest and moderates now.
    assert.ok((await ack(bob, 'join', { room: 'r-mod', name: 'Bob', sdp: offer() })).id);
    assert.deepEqual(await ack(ada, 'leave', {}), { ok: true });
    const ends = [removed(bob), removed(cy)];
    assert.deepEqual(await ack(cy, 'moderate', { action: 'end' }), { ok: true });
    assert.deepEqual(await Promise.all(ends), [{ by: 'Cy', reason: 'room_ended' }, { by: 'Cy', reason: 'room_ended' }]);
    await until('the room is gone', async () => !(await room('r-mod')), 3000);
  });

  test('a media port that cannot be bound stops the server with a clear message', async () => {
    const taken = createSocket('udp4');
    await new Promise((resolve) => taken.bind(0, '127.0.0.1', resolve));
    const port = taken.address().port;
    try {
      await assert.rejects(
        startServer({ args: ['--rtc-ports', `${port}-${port}`] }),
        (error) => /exited with [1-9]/.test(error.message) && /cannot bind the SFU's media socket.*ports \d+-\d+/.test(error.message),
      );
    } finally {
      taken.close();
    }
  });
});
