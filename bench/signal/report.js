'use strict';
// Aggregates the signal-load JSON results of one bench/signal/run.sh run: medians per
// (server, clients) over the repetitions, the ours/node ratio, and the targets.
// Usage: node report.js RESULTS_DIR   (reads RESULTS_DIR/*.json, writes summary.{json,md})

const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node report.js RESULTS_DIR');
  process.exit(2);
}

// Issue 2's targets.
const CPU_RATIO_TARGET = 0.2;
const RSS_PER_CONN_TARGET_KIB = 20;

const runs = fs
  .readdirSync(dir)
  .filter((f) => /^(node|signal)-\d+-\d+\.json$/.test(f))
  .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const METRICS = {
  cpu_us_per_msg: (r) => r.server && r.server.cpu_us_per_msg,
  msgs_per_s: (r) => r.relay.msgs_per_s,
  rtt_p50_ms: (r) => r.relay.rtt_p50_ms,
  rtt_p99_ms: (r) => r.relay.rtt_p99_ms,
  join_p50_ms: (r) => r.join.p50_ms,
  join_p99_ms: (r) => r.join.p99_ms,
  peak_rss_mib: (r) => r.server && r.server.hwm_kib / 1024,
  rss_per_conn_kib: (r) => r.server && r.server.rss_per_conn_kib,
  client_cpu_us_per_msg: (r) => r.client.cpu_us_per_msg,
  // CPU used by other programs on the shared machine during the relay phase.
  others_busy_pct: (r) => r.machine && r.machine.others_busy_pct,
};

const groups = new Map();
for (const r of runs) {
  const key = `${r.label}/${r.clients}`;
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(r);
}

const sizes = [...new Set(runs.map((r) => r.clients))].sort((a, b) => a - b);
const summary = [];
for (const clients of sizes) {
  const row = { clients };
  for (const label of ['node', 'signal']) {
    const rs = groups.get(`${label}/${clients}`) || [];
    const m = { runs: rs.length };
    for (const [name, get] of Object.entries(METRICS)) m[name] = median(rs.map(get));
    // Errors are summed, not averaged: the target is zero in every run.
    m.errors = rs.reduce((s, r) => s + r.errors.total, 0);
    m.error_samples = rs.flatMap((r) => r.errors.samples).slice(0, 5);
    row[label] = m;
  }
  row.ratio = {};
  for (const name of Object.keys(METRICS)) {
    const a = row.signal[name];
    const b = row.node[name];
    row.ratio[name] = a != null && b ? a / b : null;
  }
  summary.push(row);
}

const f = (x, d = 1) => (x == null ? '—' : x.toFixed(d));
const lines = [];
lines.push(
  "| clients | server | CPU µs/msg | msgs/s | RTT p50 / p99 ms | join p50 / p99 ms | peak RSS MiB | RSS/conn KiB | errors | others' CPU % |",
);
lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const row of summary) {
  for (const label of ['node', 'signal']) {
    const m = row[label];
    lines.push(
      `| ${row.clients} | ${label} | ${f(m.cpu_us_per_msg)} | ${f(m.msgs_per_s, 0)} | ` +
        `${f(m.rtt_p50_ms, 2)} / ${f(m.rtt_p99_ms, 1)} | ${f(m.join_p50_ms, 2)} / ${f(m.join_p99_ms, 2)} | ` +
        `${f(m.peak_rss_mib)} | ${f(m.rss_per_conn_kib)} | ${m.errors} | ${f(m.others_busy_pct, 0)} |`,
    );
  }
  const r = row.ratio;
  lines.push(
    `| ${row.clients} | **ours/node** | **${f(r.cpu_us_per_msg, 2)}×** | ${f(r.msgs_per_s, 2)}× | ` +
      `${f(r.rtt_p50_ms, 2)}× / ${f(r.rtt_p99_ms, 2)}× | ${f(r.join_p50_ms, 2)}× / ${f(r.join_p99_ms, 2)}× | ` +
      `${f(r.peak_rss_mib, 2)}× | ${f(r.rss_per_conn_kib, 2)}× | | |`,
  );
}

const verdicts = [];
for (const row of summary) {
  const cpu = row.ratio.cpu_us_per_msg;
  const rss = row.signal.rss_per_conn_kib;
  verdicts.push(
    `${row.clients} clients: CPU/msg ratio ${f(cpu, 2)} (target ≤ ${CPU_RATIO_TARGET}: ` +
      `${cpu != null && cpu <= CPU_RATIO_TARGET ? 'met' : 'MISSED'}), ` +
      `RSS/conn ${f(rss)} KiB (target ≤ ${RSS_PER_CONN_TARGET_KIB}: ` +
      `${rss != null && rss <= RSS_PER_CONN_TARGET_KIB ? 'met' : 'MISSED'}), ` +
      `errors ${row.signal.errors} (target 0: ${row.signal.errors === 0 ? 'met' : 'MISSED'})`,
  );
}

const setAside = fs.readdirSync(dir).filter((f) => /\.(noisy|failed)-\d+\.json$/.test(f));
if (setAside.length > 0) {
  verdicts.push(
    `${setAside.length} measurement(s) set aside and repeated (other programs busy, or a ` +
      `failed run): ${setAside.join(', ')}`,
  );
}

const md = lines.join('\n') + '\n\n' + verdicts.map((v) => `- ${v}`).join('\n') + '\n';
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
fs.writeFileSync(path.join(dir, 'summary.md'), md);
process.stdout.write(md);
for (const row of summary) {
  for (const label of ['node', 'signal']) {
    for (const s of row[label].error_samples) console.log(`  ${label} ${row.clients}: ${s}`);
  }
}
