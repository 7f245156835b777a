// The statistics panel's data (public/lib/stats.js): getStats() reports in the shape Chromium
// gives them become per-stream series of rates, loss, jitter, frame rate and size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addReading, chartData, CHARTS, createHistory, describePair, readReport, WINDOW_SECONDS } from '../../public/lib/stats.js';
import { latest } from '../../public/lib/charts.js';

const chart = (id) => CHARTS.find((c) => c.id === id);

/** A report at `seconds`, with the counters a call has after that long at steady rates. */
function report(seconds, { relay = false, lost = 0 } = {}) {
  const timestamp = seconds * 1000;
  const stats = [
    { id: 'T', type: 'transport', timestamp, selectedCandidatePairId: 'CP' },
    { id: 'CP', type: 'candidate-pair', timestamp, localCandidateId: 'L', remoteCandidateId: 'R', currentRoundTripTime: 0.042, nominated: true, state: 'succeeded' },
    relay
      ? { id: 'L', type: 'local-candidate', timestamp, candidateType: 'relay', protocol: 'udp', relayProtocol: 'tcp' }
      : { id: 'L', type: 'local-candidate', timestamp, candidateType: 'srflx', protocol: 'udp' },
    { id: 'R', type: 'remote-candidate', timestamp, candidateType: 'host', protocol: 'udp' },
    // 500 kbit/s of video at 30 fps, 360p; 100 packets a second, `lost` of them lost so far.
    { id: 'IV', type: 'inbound-rtp', kind: 'video', mid: '1', timestamp, bytesReceived: 62_500 * seconds, packetsReceived: 100 * seconds - lost, packetsLost: lost, jitter: 0.004, framesPerSecond: 30, frameHeight: 360 },
    { id: 'IA', type: 'inbound-rtp', kind: 'audio', mid: '0', timestamp, bytesReceived: 4_000 * seconds, packetsReceived: 50 * seconds, packetsLost: 0, jitter: 0.002 },
    { id: 'OV', type: 'outbound-rtp', kind: 'video', mid: '1', rid: 'h', timestamp, bytesSent: 25_000 * seconds, packetsSent: 40 * seconds, framesPerSecond: 15, frameHeight: 180 },
    { id: 'RIV', type: 'remote-inbound-rtp', kind: 'video', localId: 'OV', timestamp, fractionLost: 0.25, jitter: 0.01, roundTripTime: 0.05 },
  ];
  return new Map(stats.map((s) => [s.id, s]));
}

function history(seconds, options) {
  let h = createHistory();
  for (let s = 1; s <= seconds; s++) h = addReading(h, readReport(report(s, options), (mid) => (mid === '1' ? 'Bob' : 'Ann')));
  return h;
}

test('rates come from the difference between readings; the first reading has none', () => {
  const h = history(3);
  const bitrate = chartData(h, chart('bitrate'));
  assert.deepEqual(bitrate.labels, ['↓ Bob video', '↓ Ann audio', '↑ video h']);
  assert.deepEqual(bitrate.data[0], [1, 2, 3]);
  assert.deepEqual(bitrate.data[1], [null, 500, 500]);
  assert.deepEqual(bitrate.data[2], [null, 32, 32]);
  assert.deepEqual(bitrate.data[3], [null, 200, 200]);
});

test('loss: received streams from their own counters, sent streams from the receiver\'s report', () => {
  let h = createHistory();
  h = addReading(h, readReport(report(1)));
  h = addReading(h, readReport(report(2, { lost: 10 })));
  const loss = chartData(h, chart('loss'));
  assert.deepEqual(loss.labels, ['↓ remote video', '↓ remote audio', '↑ video h']);
  assert.deepEqual(loss.data[1], [null, 10], '10 of 100 packets in that second');
  assert.deepEqual(loss.data[2], [null, 0]);
  assert.deepEqual(loss.data[3], [25, 25], 'fractionLost 0.25 as reported');
});

test('frame rate and size only for video; jitter in ms; the connection\'s round trip', () => {
  const h = history(2);
  assert.deepEqual(chartData(h, chart('fps')).labels, ['↓ Bob video', '↑ video h']);
  assert.deepEqual(chartData(h, chart('height')).data.slice(1), [[360, 360], [180, 180]]);
  const jitter = chartData(h, chart('jitter'));
  assert.deepEqual(jitter.data.slice(1), [[4, 4], [2, 2], [10, 10]]);
  assert.deepEqual(chartData(h, chart('rtt')), { labels: ['connection'], data: [[1, 2], [42, 42]] });
});

test('the path in use, in words', () => {
  assert.equal(describePair(history(1).pair), 'srflx → host, UDP');
  assert.equal(describePair(history(1, { relay: true }).pair), 'relay (TURN over TCP) → host, UDP');
  assert.equal(describePair(null), 'no connection yet');
});

test('a stream that appears later is padded; one that ends keeps its past', () => {
  let h = addReading(createHistory(), readReport(new Map([['x', { id: 'x', type: 'transport', timestamp: 1000 }]])));
  h = addReading(h, readReport(report(2)));
  h = addReading(h, readReport(report(3)));
  const gone = report(4);
  gone.delete('IA');
  h = addReading(h, readReport(gone));
  const bitrate = chartData(h, chart('bitrate'));
  assert.equal(bitrate.data[0].length, 4);
  for (const series of bitrate.data) assert.equal(series.length, 4, 'every series as long as the time axis');
  assert.deepEqual(bitrate.data[2], [null, null, 32, null], 'audio came at 2, went at 4');
  assert.equal(latest(bitrate.data[2]), 32);
});

test('the window keeps the last minutes; stale and repeated readings are ignored', () => {
  const h = history(WINDOW_SECONDS + 20);
  assert.equal(h.times.length, WINDOW_SECONDS);
  assert.equal(h.times[0], 21);
  for (const entry of h.series.values()) assert.equal(entry.points.length, WINDOW_SECONDS);
  assert.equal(addReading(h, readReport(report(5))), h);
});
