// rtc·call — the operator page: the server's SFU rooms, participants and media figures, live,
// charted from GET /api/rooms (and 1-to-1 counts from GET /api/stats), and the server's
// recordings of rooms (GET /api/room-recordings, each file a signed link the player opens);
// all need the operator token (docs/security.md). The token stays in this tab
// (sessionStorage), never in the URL. lib/operator.js turns reports into series and rows;
// lib/charts.js draws them.
//
// Test hooks: [data-testid] token, sign-in, error, status, figures, participants,
// room-recordings, play-recording, room-recording-player; window.__operator.charts() →
// [{id, labels, points}], .polls (reports read), .recordings (the listed rows).

import { chartSection, createChart, loadCharts } from './lib/charts.js';
import { addRoomsReport, createOperatorHistory, OPERATOR_CHARTS, operatorChartData, participantRows, roomRecordingRows } from './lib/operator.js';

const POLL_MS = 2000;
const RECORDINGS_POLL_MS = 15_000;
const TOKEN_KEY = 'rtc-call-operator-token';
const $ = (id) => document.getElementById(id);

let history = createOperatorHistory();
let timer = 0;
let recordingsTimer = 0;
const slots = OPERATOR_CHARTS.map((chart) => {
  const section = chartSection(chart.id, chart.title, chart.unit);
  $('charts').append(section);
  return { chart, section, plot: createChart(section.querySelector('.stats-plot'), { height: 150 }) };
});
const hooks = { polls: 0, recordings: null, charts: () => slots.map(({ chart }) => {
  const { labels, data } = operatorChartData(history, chart);
  return { id: chart.id, labels, points: data[0].length };
}) };
window.__operator = hooks;

class Refused extends Error {}

async function get(path, token) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
  if (res.status === 401) throw new Refused('The server did not accept this token.');
  if (res.status === 403) throw new Refused(await res.text());
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

async function poll(token) {
  try {
    const [rooms, stats] = await Promise.all([get('/api/rooms', token), get('/api/stats', token)]);
    hooks.polls += 1;
    history = addRoomsReport(history, rooms, Date.now() / 1000);
    show(rooms, stats);
    $('status').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error instanceof Refused) return signOut(error.message);
    $('status').textContent = `Cannot reach the server: ${error.message}`;
  }
}

function show(rooms, stats) {
  $('f-rooms').textContent = rooms.rooms.length;
  $('f-participants').textContent = rooms.participants;
  $('f-calls').textContent = stats.calls;
  $('f-uptime').textContent = uptime(rooms.uptime_seconds);
  $('media-address').textContent = rooms.media_address;
  const rows = participantRows(rooms);
  const body = $('rows');
  body.replaceChildren(...(rows.length ? rows.map(row) : [emptyRow(9, 'Nobody is in a room.')]));
  for (const slot of slots) {
    const { labels, data } = operatorChartData(history, slot.chart);
    slot.section.classList.toggle('empty', labels.length === 0);
    slot.plot.update(labels, data);
  }
}

async function pollRecordings(token) {
  try {
    const rows = roomRecordingRows(await get('/api/room-recordings', token));
    hooks.recordings = rows;
    $('recording-rows').replaceChildren(...(rows.length ? rows.map(recordingRow) : [emptyRow(6, 'No room has been recorded.')]));
  } catch (error) {
    if (error instanceof Refused) return signOut(error.message);
  }
}

function recordingRow(r) {
  const tr = textRow([[r.room], [r.started], [r.by], [r.length], [r.status]]);
  const files = document.createElement('td');
  for (const file of r.files) {
    const play = document.createElement('button');
    play.type = 'button';
    play.className = 'file';
    play.dataset.testid = 'play-recording';
    play.textContent = file.label;
    play.title = file.problem ? `${file.kind} · ${file.problem}` : file.kind;
    play.addEventListener('click', () => {
      const player = $('player');
      player.hidden = false;
      player.src = file.url;
      player.play().catch(() => {});
    });
    files.append(play);
  }
  tr.append(files);
  return tr;
}

function row(r) {
  return textRow([[r.room], [r.name], [r.since], [r.publishing], [r.in], [r.out], [r.rtt], [r.lost], [r.quality, `q-${r.quality}`]]);
}

/** A table row of `[value, class?]` cells, as text: names come from participants, never markup. */
function textRow(cells) {
  const tr = document.createElement('tr');
  for (const [value, cls] of cells) {
    const td = document.createElement('td');
    td.textContent = value;
    if (cls) td.className = cls;
    tr.append(td);
  }
  return tr;
}

/** The row a table shows when it has nothing to list. */
function emptyRow(columns, text) {
  const tr = document.createElement('tr');
  tr.className = 'none';
  const td = document.createElement('td');
  td.colSpan = columns;
  td.textContent = text;
  tr.append(td);
  return tr;
}

function uptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min`;
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  $('error').hidden = true;
  $('sign-in').hidden = true;
  $('dashboard').hidden = false;
  await loadCharts();
  clearInterval(timer);
  history = createOperatorHistory();
  clearInterval(recordingsTimer);
  await Promise.all([poll(token), pollRecordings(token)]);
  if (!$('dashboard').hidden) {
    timer = setInterval(() => poll(token), POLL_MS);
    recordingsTimer = setInterval(() => pollRecordings(token), RECORDINGS_POLL_MS);
  }
}

function signOut(message) {
  clearInterval(timer);
  clearInterval(recordingsTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  $('dashboard').hidden = true;
  $('sign-in').hidden = false;
  $('error').textContent = message;
  $('error').hidden = false;
  $('status').textContent = 'Not signed in';
}

$('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn($('token').value.trim());
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
