// The operator page's data (public/lib/operator.js): /api/rooms reports become totals and
// per-participant series, counters become rates, the window keeps the last minutes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addRoomsReport, createOperatorHistory, OPERATOR_CHARTS, OPERATOR_WINDOW_SECONDS, operatorChartData, participantRows, roomRecordingRows } from '../../public/lib/operator.js';

const chart = (id) => OPERATOR_CHARTS.find((c) => c.id === id);

function participant(id, name, t, extra = {}) {
  return {
    id, name, seconds: t, publishing: ['audio', 'video'], subscriptions: 1,
    bitrate_in_bps: 300_000, bitrate_out_bps: 250_000, packets_in: 100 * t, packets_out: 90 * t,
    packets_lost_inbound: 0, packets_lost_outbound: 2, rtt_ms: 12.4, quality: 'good', ...extra,
  };
}

function report(t, rooms) {
  return {
    rooms, participants: rooms.reduce((n, r) => n + r.participants.length, 0),
    forwarded_bytes: 125_000 * t, keyframe_requests_sent: t, dropped_packets: 0, ice_restarts: 0,
  };
}

test('totals: counters become rates from the second report on', () => {
  let h = createOperatorHistory();
  for (const t of [10, 12, 14]) h = addRoomsReport(h, report(t, [{ room: 'r', participants: [participant('p1', 'Ann', t)] }]), t);
  assert.deepEqual(operatorChartData(h, chart('forwarded')), { labels: ['forwarded RTP'], data: [[10, 12, 14], [null, 1, 1]] });
  const events = operatorChartData(h, chart('events'));
  assert.deepEqual(events.data[1], [null, 1, 1], 'one keyframe request a second');
  assert.deepEqual(operatorChartData(h, chart('people')).data.slice(1), [[1, 1, 1], [1, 1, 1]]);
});

test('a series per participant, padded before it joined and after it left', () => {
  let h = createOperatorHistory();
  h = addRoomsReport(h, report(1, [{ room: 'r', participants: [participant('p1', 'Ann', 1)] }]), 1);
  h = addRoomsReport(h, report(2, [{ room: 'r', participants: [participant('p1', 'Ann', 2), participant('p2', 'Bob', 2)] }]), 2);
  h = addRoomsReport(h, report(3, [{ room: 'r', participants: [participant('p2', 'Bob', 3, { packets_lost_inbound: 25, packets_in: 275 })] }]), 3);
  const incoming = operatorChartData(h, chart('in'));
  assert.deepEqual(incoming.labels, ['Ann (r)', 'Bob (r)']);
  assert.deepEqual(incoming.data.slice(1), [[300, 300, null], [null, 300, 300]]);
  assert.deepEqual(operatorChartData(h, chart('loss')).data[2], [null, null, 25], '25 lost of 100 sent in that interval');
  assert.deepEqual(operatorChartData(h, chart('rtt')).data[1], [12.4, 12.4, null]);
});

test('the window keeps the last minutes; an old report is ignored', () => {
  let h = createOperatorHistory();
  const step = 2;
  const last = OPERATOR_WINDOW_SECONDS + 100;
  for (let t = step; t <= last; t += step) h = addRoomsReport(h, report(t, [{ room: 'r', participants: [participant('p1', 'Ann', t)] }]), t);
  assert.ok(h.times[0] > last - OPERATOR_WINDOW_SECONDS);
  assert.equal(h.times.length, OPERATOR_WINDOW_SECONDS / step);
  for (const values of Object.values(h.totals)) assert.equal(values.length, h.times.length);
  assert.equal(h.participants.get('p1').points.length, h.times.length);
  assert.equal(addRoomsReport(h, report(3, []), 3), h);
});

test('table rows in readable units', () => {
  const rows = participantRows(report(75, [{ room: 'r', participants: [participant('p1', 'Ann', 75, { bitrate_in_bps: 1_500_000, rtt_ms: null, quality: null, publishing: [] })] }]));
  assert.deepEqual(rows, [{ room: 'r', id: 'p1', name: 'Ann', since: '1:15', publishing: 'nothing', in: '1.5 Mbit/s', out: '250 kbit/s', rtt: '—', lost: '0 / 2', quality: 'unknown' }]);
});

test('room recordings: a row per session, a link per file, lengths and sizes readable', () => {
  const started = Date.UTC(2026, 10, 28, 9, 30, 0);
  const rows = roomRecordingRows({ sessions: [
    { dir: 'r/20261128T093000Z-0a1b2c', room: 'r', started_by: 'Ann', started, stopped: started + 75_000, stop_reason: 'size_limit', files: [
      { name: 'Ann', part: 1, video: 'vp8', duration_ms: 74_500, bytes: 3 << 20, finished: true, url: '/api/room-recordings/r/x/Ann-p1.webm?expires=1&sig=a' },
      { name: 'Ann', part: 2, video: 'vp8', duration_ms: 500, bytes: 2000, finished: false, url: '/u2' },
      { name: '<b>Bob</b>', part: 1, finished: true },
    ] },
    { dir: 'q/20261128T080000Z-000000', room: 'q', started_by: 'Cy', started, stopped: null, files: [] },
  ] });
  assert.equal(rows.length, 2);
  assert.deepEqual({ ...rows[0], files: undefined }, { key: 'r/20261128T093000Z-0a1b2c', room: 'r', started: '2026-11-28 09:30:00 UTC', by: 'Ann', length: '1:15', status: 'size limit', files: undefined });
  assert.deepEqual(rows[0].files.map((f) => f.label), ['Ann · 1:14 · 3.0 MiB', 'Ann (2) · 0:00 · 2 KiB'], 'a file the server gives no link for is not listed');
  assert.equal(rows[0].files[0].problem, null);
  assert.equal(rows[0].files[1].problem, 'not finished');
  assert.deepEqual([rows[1].length, rows[1].status], ['recording', 'on']);
  assert.deepEqual(roomRecordingRows(null), []);
});
