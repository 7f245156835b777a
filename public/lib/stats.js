// The statistics panel's data: `RTCPeerConnection.getStats()` reports, read once a second,
// become per-stream time series over the last minutes (docs/metrics.md). Pure functions, so
// `node --test` checks them with hand-made reports; lib/stats-panel.js draws the charts.

/** How much history the charts keep, in seconds (one reading a second). */
export const WINDOW_SECONDS = 300;

/** The charts, in the panel's order: which field of a point each draws, and how. */
export const CHARTS = [
  { id: 'bitrate', title: 'Bit rate', unit: 'kbit/s', field: 'kbps' },
  { id: 'loss', title: 'Packet loss', unit: '%', field: 'lossPct' },
  { id: 'rtt', title: 'Round-trip time', unit: 'ms', field: 'rttMs' },
  { id: 'jitter', title: 'Jitter', unit: 'ms', field: 'jitterMs' },
  { id: 'fps', title: 'Frames per second', unit: 'fps', field: 'fps', video: true },
  { id: 'height', title: 'Resolution (height)', unit: 'px', field: 'height', video: true },
];

/**
 * The counters of one report that the charts need, keyed per RTP stream.
 * @param {Map<string, any> | RTCStatsReport} report
 * @param {(mid: string | undefined, kind: string) => string} [nameOfMid] who a received stream
 *   is from (the SFU page knows which participant each m-line carries)
 * @returns {{t: number, streams: Map<string, object>, pair: object | null}} `t` in seconds
 */
export function readReport(report, nameOfMid = () => 'remote') {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const streams = new Map();
  let t = 0;
  for (const s of byId.values()) {
    t = Math.max(t, (s.timestamp ?? 0) / 1000);
    if (s.type === 'inbound-rtp' && (s.kind === 'audio' || s.kind === 'video')) {
      streams.set(`in:${s.kind}:${s.mid ?? s.ssrc}`, {
        direction: 'in',
        kind: s.kind,
        label: `↓ ${nameOfMid(s.mid, s.kind)} ${s.kind}`,
        bytes: s.bytesReceived ?? 0,
        packets: s.packetsReceived ?? 0,
        lost: s.packetsLost ?? 0,
        jitterMs: s.jitter === undefined ? null : s.jitter * 1000,
        fps: s.framesPerSecond ?? null,
        height: s.frameHeight ?? null,
      });
    } else if (s.type === 'outbound-rtp' && (s.kind === 'audio' || s.kind === 'video')) {
      // What the other end reports about our stream: its loss, jitter and round trip.
      const remote = [...byId.values()].find((r) => r.type === 'remote-inbound-rtp' && r.localId === s.id);
      streams.set(`out:${s.kind}:${s.mid ?? ''}:${s.rid ?? s.ssrc}`, {
        direction: 'out',
        kind: s.kind,
        label: `↑ ${s.kind}${s.rid ? ` ${s.rid}` : ''}`,
        bytes: s.bytesSent ?? 0,
        packets: s.packetsSent ?? 0,
        lossPct: remote?.fractionLost === undefined ? null : remote.fractionLost * 100,
        jitterMs: remote?.jitter === undefined ? null : remote.jitter * 1000,
        fps: s.framesPerSecond ?? null,
        height: s.frameHeight ?? null,
      });
    }
  }
  return { t, streams, pair: selectedPair(byId) };
}

/** The candidate pair in use: what kind of path the call takes (host, srflx, relay; UDP/TCP). */
function selectedPair(byId) {
  const transport = [...byId.values()].find((s) => s.type === 'transport' && s.selectedCandidatePairId);
  const pair = transport
    ? byId.get(transport.selectedCandidatePairId)
    : [...byId.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId);
  const remote = byId.get(pair.remoteCandidateId);
  return {
    local: local?.candidateType ?? '?',
    remote: remote?.candidateType ?? '?',
    protocol: (local?.protocol ?? '?').toUpperCase(),
    // How our end reaches its TURN server, when the local candidate is a relayed one.
    relayProtocol: local?.relayProtocol ? local.relayProtocol.toUpperCase() : null,
    rttMs: pair.currentRoundTripTime === undefined ? null : pair.currentRoundTripTime * 1000,
  };
}

/** "relay (TURN over TCP) → host, UDP": the path in words. */
export function describePair(pair) {
  if (!pair) return 'no connection yet';
  const local = pair.relayProtocol ? `${pair.local} (TURN over ${pair.relayProtocol})` : pair.local;
  return `${local} → ${pair.remote}, ${pair.protocol}`;
}

/** An empty history. */
export function createHistory() {
  return { times: [], series: new Map(), rtt: [], pair: null, last: null };
}

/**
 * The history with one more reading: rates from the difference to the previous one, every
 * series padded with `null` where a stream did not exist, and at most WINDOW_SECONDS points.
 * A reading not newer than the last one is ignored.
 */
export function addReading(history, reading) {
  const last = history.last;
  if (last && reading.t <= last.t) return history;
  const times = [...history.times, reading.t];
  const series = new Map();
  const pad = () => Array(history.times.length).fill(null);
  for (const [key, old] of history.series) series.set(key, { ...old, points: [...old.points] });
  for (const [key, now] of reading.streams) {
    if (!series.has(key)) series.set(key, { key, direction: now.direction, kind: now.kind, label: now.label, points: pad() });
    const entry = series.get(key);
    entry.label = now.label;
    entry.points.push(point(now, last?.streams.get(key), last ? reading.t - last.t : 0));
  }
  for (const entry of series.values()) if (entry.points.length < times.length) entry.points.push(null);
  const rtt = [...history.rtt, reading.pair?.rttMs ?? null];
  const drop = Math.max(0, times.length - WINDOW_SECONDS);
  if (drop) {
    times.splice(0, drop);
    rtt.splice(0, drop);
    for (const [key, entry] of series) {
      entry.points.splice(0, drop);
      if (entry.points.every((p) => p === null)) series.delete(key);
    }
  }
  return { times, series, rtt, pair: reading.pair, last: reading };
}

/** One stream's figures at one reading; rates need the previous reading of the same stream. */
function point(now, before, dt) {
  const rate = before && dt > 0;
  let lossPct = now.lossPct ?? null;
  if (now.direction === 'in') {
    const lost = rate ? Math.max(0, now.lost - before.lost) : 0;
    const got = rate ? Math.max(0, now.packets - before.packets) : 0;
    lossPct = rate && lost + got > 0 ? (100 * lost) / (lost + got) : null;
  }
  return {
    kbps: rate && now.bytes >= before.bytes ? ((now.bytes - before.bytes) * 8) / dt / 1000 : null,
    lossPct,
    jitterMs: now.jitterMs,
    fps: now.kind === 'video' ? now.fps : null,
    height: now.kind === 'video' ? now.height : null,
  };
}

/**
 * What one chart draws, in uPlot's shape: `data[0]` the times, then one array per series.
 * Round-trip time is the connection's (one series); the others have one series per stream
 * that ever had a value for this chart.
 * @returns {{labels: string[], data: (number | null)[][]}}
 */
export function chartData(history, chart) {
  if (chart.id === 'rtt') return { labels: ['connection'], data: [history.times, history.rtt] };
  const labels = [];
  const data = [history.times];
  const ordered = [...history.series.values()].sort((a, b) => order(a) - order(b) || a.label.localeCompare(b.label));
  for (const entry of ordered) {
    if (chart.video && entry.kind !== 'video') continue;
    const values = entry.points.map((p) => (p ? p[chart.field] : null));
    if (values.every((v) => v === null || v === undefined)) continue;
    labels.push(entry.label);
    data.push(values.map((v) => v ?? null));
  }
  return { labels, data };
}

const order = (entry) => (entry.direction === 'in' ? 0 : 1) * 2 + (entry.kind === 'video' ? 0 : 1);
