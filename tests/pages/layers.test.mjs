// What layer a tile asks the SFU for (public/lib/layers.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyLayerAsk, tileQuality } from '../../public/lib/layers.js';

test('the layer follows the rendered height', () => {
  assert.equal(tileQuality({ height: 120, visible: true }), 'low');
  assert.equal(tileQuality({ height: 180, visible: true }), 'low');
  assert.equal(tileQuality({ height: 181, visible: true }), 'medium');
  assert.equal(tileQuality({ height: 360, visible: true }), 'medium');
  assert.equal(tileQuality({ height: 1080, visible: true }), 'high');
});

test('a tile nobody can see needs nothing', () => {
  assert.equal(tileQuality({ height: 720, visible: false }), 'off');
  assert.equal(tileQuality({ height: 0, visible: true }), 'off', 'collapsed');
  assert.equal(tileQuality({ height: Number.NaN, visible: true }), 'off');
});

test('a publish_layers ask switches the named layers on and off, nothing else', () => {
  const encodings = [{ rid: 'q', active: true }, { rid: 'h', active: true }, { rid: 'f', active: true, maxBitrate: 800_000 }];
  const { encodings: next, changed } = applyLayerAsk(encodings, { q: true, h: false, f: false });
  assert.equal(changed, true);
  assert.deepEqual(next.map((e) => e.active), [true, false, false]);
  assert.equal(next[2].maxBitrate, 800_000, 'other fields kept');
  assert.equal(applyLayerAsk(next, { q: true, h: false, f: false }).changed, false, 'already so');
  assert.equal(applyLayerAsk(next, { x: true, h: 'yes' }).changed, false, 'unknown rids and non-booleans ignored');
  assert.equal(applyLayerAsk([{ active: true }], { q: false }).changed, false, 'a stream without simulcast');
  assert.equal(applyLayerAsk(undefined, { q: false }).changed, false);
});
