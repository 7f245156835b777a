// The server's layer asks kept and applied around negotiations (public/lib/layer-asks.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLayerAsks } from '../../public/lib/layer-asks.js';

/** A peer connection with one simulcast sender on m-line '0', recording what was set. */
function fakePc() {
  const sender = {
    encodings: ['q', 'h', 'f'].map((rid) => ({ rid, active: true })),
    sets: [],
    getParameters() { return { encodings: this.encodings.map((e) => ({ ...e })) }; },
    async setParameters(params) {
      this.sets.push(params.encodings.map((e) => e.active));
      this.encodings = params.encodings;
    },
  };
  return { sender, getTransceivers: () => [{ mid: '0', sender }] };
}

const active = (sender) => sender.encodings.map((e) => e.active);

test('an ask switches the layers it names; one that changes nothing sets nothing', async () => {
  const pc = fakePc();
  const events = [];
  const asks = createLayerAsks({ getPc: () => pc, log: (event, detail) => events.push([event, detail]) });
  asks.ask({ mid: '0', active: { q: true, h: false, f: false } });
  await asks.settled();
  assert.deepEqual(active(pc.sender), [true, false, false]);
  asks.ask({ mid: '0', active: { q: true, h: false, f: false } });
  await asks.settled();
  assert.equal(pc.sender.sets.length, 1);
  assert.deepEqual(events.at(-1), ['publish-layers', { q: true, h: false, f: false }]);
  assert.ok(events.some(([event, detail]) => event === 'sending-layers' && detail.f === false));
});

test('an ask made during a negotiation waits for its end', async () => {
  const pc = fakePc();
  const asks = createLayerAsks({ getPc: () => pc, log: () => {} });
  await asks.around(async () => {
    asks.ask({ mid: '0', active: { q: true, h: true, f: false } });
    await asks.settled();
    assert.equal(pc.sender.sets.length, 0, 'nothing set while negotiating');
  });
  await asks.settled();
  assert.deepEqual(active(pc.sender), [true, true, false]);
});

test('after a negotiation that switched every layer back on, the last ask is applied again', async () => {
  const pc = fakePc();
  const asks = createLayerAsks({ getPc: () => pc, log: () => {} });
  asks.ask({ mid: '0', active: { q: true, h: false, f: false } });
  const answer = await asks.around(async () => {
    // What Chromium does in applying a remote offer.
    pc.sender.encodings = pc.sender.encodings.map((e) => ({ ...e, active: true }));
    return 'answer';
  });
  assert.equal(answer, 'answer');
  await asks.settled();
  assert.deepEqual(active(pc.sender), [true, false, false]);
});

test('a negotiation first lets a setParameters() in flight finish', async () => {
  const pc = fakePc();
  let release;
  const slow = pc.sender.setParameters.bind(pc.sender);
  pc.sender.setParameters = (params) => new Promise((resolve) => { release = () => resolve(slow(params)); });
  const asks = createLayerAsks({ getPc: () => pc, log: () => {} });
  asks.ask({ mid: '0', active: { q: true, h: false, f: true } });
  await new Promise((r) => setTimeout(r, 0));
  let negotiated = false;
  const round = asks.around(async () => { negotiated = true; });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(negotiated, false, 'the description waits for the setParameters()');
  release();
  await round;
  assert.equal(negotiated, true);
});

test('asks are for their media session only', async () => {
  const first = fakePc();
  let pc = first;
  const asks = createLayerAsks({ getPc: () => pc, log: () => {} });
  asks.ask({ mid: '0', active: { q: true, h: false, f: false } });
  asks.clear();
  pc = fakePc();
  await asks.around(async () => {});
  await asks.settled();
  assert.equal(pc.sender.sets.length, 0, 'a cleared ask is not applied to the next session');
  asks.ask({ mid: '1', active: { q: false } });
  asks.ask({ mid: 7, active: {} });
  asks.ask({ mid: '0', active: null });
  await asks.settled();
  assert.equal(pc.sender.sets.length, 0, 'unknown m-lines and malformed asks change nothing');
});
