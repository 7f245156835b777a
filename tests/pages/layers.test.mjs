// What layer a tile asks the SFU for (public/lib/layers.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tileQuality } from '../../public/lib/layers.js';

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
