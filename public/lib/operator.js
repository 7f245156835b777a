// The operator page's data: `GET /api/rooms` reports, polled every few seconds, become time
// series of the server's totals and of every participant's figures (docs/metrics.md). Pure
// functions, tested with `node --test`; operator.js polls and draws.

import { duration } from './format.js';

/** History kept, in seconds. */
export const OPERATOR_WINDOW_SECONDS = 900;

/** The charts, in the page's order. Totals have fixed series; the others one per participant. */
export const OPERATOR_CHARTS = [
  { id: 'people', title: 'Rooms and participants', unit: '', totals: ['rooms', 'participants'] },
  { id: 'forwarded', title: 'Forwarded', unit: 'Mbit/s', totals: ['forwardedMbps'] },
  { id: 'events', title: 'Keyframe requests, drops, ICE restarts', unit: 'per s', totals: ['keyframesPerS', 'droppedPerS', 'restartsPerS'] },
  { id: 'in', title: 'Received from each participant', unit: 'kbit/s', field: 'inKbps' },
  { id: 'out', title: 'Sent to each participant', unit: 'kbit/s', field: 'outKbps' },
  { id: 'rtt', title: 'Round-trip time to each participant', unit: 'ms', field: 'rttMs' },
  { id: 'loss', title: 'Loss from each participant', unit: '%', field: 'lossInPct' },
];

const TOTAL_LABELS = {
  rooms: 'rooms',
  participants: 'participants',
  forwardedMbps: 'forwarded RTP',
  keyframesPerS: 'keyframe requests',
  droppedPerS: 'dropped packets',
  restartsPerS: 'ICE restarts',
};

export function createOperatorHistory() {
  return { times: [], totals: Object.fromEntries(Object.keys(TOTAL_LABELS).map((k) => [k, []])), participants: new Map(), last: null };
}

/**
 * The history with one more report taken at `t` (seconds): counters become rates against the
 * previous report; a participant's series is padded with null before it joined and after it left.
 */
export function addRoomsReport(history, report, t) {
  const last = history.last;
  if (last && t <= last.t) return history;
  const dt = last ? t - last.t : 0;
  const rate = (now, before) => (last && dt > 0 && now >= before ? (now - before) / dt : null);
  const times = [...history.times, t];
  const totals = {
    rooms: [...history.totals.rooms, report.rooms.length],
    participants: [...history.totals.participants, report.participants],
    forwardedMbps: [...history.totals.forwardedMbps, scale(rate(report.forwarded_bytes, last?.report.forwarded_bytes), 8 / 1e6)],
    keyframesPerS: [...history.totals.keyframesPerS, rate(report.keyframe_requests_sent, last?.report.keyframe_requests_sent)],
    droppedPerS: [...history.totals.droppedPerS, rate(report.dropped_packets, last?.report.dropped_packets)],
    restartsPerS: [...history.totals.restartsPerS, rate(report.ice_restarts, last?.report.ice_restarts)],
  };
  const participants = new Map();
  for (const [id, old] of history.participants) participants.set(id, { ...old, points: [...old.points] });
  const before = new Map((last?.report.rooms ?? []).flatMap((room) => room.participants.map((p) => [p.id, p])));
  for (const room of report.rooms) {
    for (const p of room.participants) {
      if (!participants.has(p.id)) participants.set(p.id, { id: p.id, label: `${p.name} (${room.room})`, points: Array(history.times.length).fill(null) });
      const prev = before.get(p.id);
      const lost = prev ? p.packets_lost_inbound - prev.packets_lost_inbound : 0;
      const got = prev ? p.packets_in - prev.packets_in : 0;
      participants.get(p.id).points.push({
        inKbps: p.bitrate_in_bps / 1000,
        outKbps: p.bitrate_out_bps / 1000,
        rttMs: p.rtt_ms ?? null,
        lossInPct: prev && lost >= 0 && got >= 0 && lost + got > 0 ? (100 * lost) / (lost + got) : null,
      });
    }
  }
  for (const entry of participants.values()) if (entry.points.length < times.length) entry.points.push(null);
  // Readings older than the window go; the newest is always inside it.
  const n = times.findIndex((x) => x > t - OPERATOR_WINDOW_SECONDS);
  if (n > 0) {
    times.splice(0, n);
    for (const values of Object.values(totals)) values.splice(0, n);
    for (const [id, entry] of participants) {
      entry.points.splice(0, n);
      if (entry.points.every((p) => p === null)) participants.delete(id);
    }
  }
  return { times, totals, participants, last: { t, report } };
}

const scale = (v, factor) => (v === null ? null : v * factor);

/** One chart's labels and data, in uPlot's shape (times first). */
export function operatorChartData(history, chart) {
  if (chart.totals) {
    return { labels: chart.totals.map((k) => TOTAL_LABELS[k]), data: [history.times, ...chart.totals.map((k) => history.totals[k])] };
  }
  const labels = [];
  const data = [history.times];
  for (const entry of history.participants.values()) {
    const values = entry.points.map((p) => p?.[chart.field] ?? null);
    if (values.every((v) => v === null)) continue;
    labels.push(entry.label);
    data.push(values);
  }
  return { labels, data };
}

/** The table rows of a report: one per participant, by room, with figures in readable units. */
export function participantRows(report) {
  return report.rooms.flatMap((room) => room.participants.map((p) => ({
    room: room.room,
    id: p.id,
    name: p.name,
    since: duration(p.seconds),
    publishing: p.publishing.join(' + ') || 'nothing',
    in: kbps(p.bitrate_in_bps),
    out: kbps(p.bitrate_out_bps),
    rtt: p.rtt_ms === null || p.rtt_ms === undefined ? '—' : `${Math.round(p.rtt_ms)} ms`,
    lost: `${p.packets_lost_inbound} / ${p.packets_lost_outbound}`,
    quality: p.quality ?? 'unknown',
  })));
}

const kbps = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`);

const REASONS = {
  stopped: 'stopped',
  room_empty: 'everyone left',
  storage_failed: 'disk failed',
  fell_behind: 'server fell behind',
  size_limit: 'size limit',
};

/**
 * The rows of the room-recordings list (`GET /api/room-recordings`): one per session, newest
 * first as listed, each file a link with its participant, length and size. Names come from
 * participants: the page puts them in as text.
 */
export function roomRecordingRows(listing) {
  return (listing?.sessions ?? []).map((s) => {
    const files = (s.files ?? []).filter((f) => typeof f.url === 'string').map((f) => ({
      label: `${f.name}${f.part > 1 ? ` (${f.part})` : ''} · ${duration((f.duration_ms ?? 0) / 1000)} · ${size(f.bytes)}`,
      url: f.url,
      kind: f.video ?? f.audio ?? '',
      problem: f.error ?? (f.finished ? null : 'not finished'),
    }));
    return {
      key: s.dir,
      room: s.room,
      started: new Date(s.started).toISOString().replace('T', ' ').slice(0, 19) + ' UTC',
      by: s.started_by,
      length: s.stopped ? duration((s.stopped - s.started) / 1000) : 'recording',
      status: s.stopped ? REASONS[s.stop_reason] ?? s.stop_reason ?? 'stopped' : 'on',
      files,
    };
  });
}

function size(bytes) {
  if (typeof bytes !== 'number') return '—';
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}
