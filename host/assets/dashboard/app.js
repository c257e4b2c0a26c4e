// The stratbox dashboard: renders what the host pushes over server-sent
// events (GET /api/v1/events) and drives the control API under /api/v1.
// Every text from the host goes in with textContent, never as HTML: much of
// it (errors, symbols, journal lines) comes from strategies.
'use strict';

const JOURNAL_LINES = 200;
const FILL_ROWS = 15;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (selector, root = document) => root.querySelector(selector);

// An element with `attrs` set and `children` (text or nodes) appended.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ''));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const time = (ms) => (ms === null || ms === undefined ? '' : new Date(ms).toISOString().slice(0, 19).replace('T', ' '));

function notice(text, isError) {
  const box = $('#notice');
  box.textContent = text;
  box.className = isError ? 'notice error' : 'notice';
  box.hidden = !text;
}

// A request that changes something; the header proves it comes from this
// page (another site's page cannot add it).
async function act(method, url, body, contentType) {
  const headers = { 'x-stratbox-request': '1' };
  if (contentType) headers['content-type'] = contentType;
  try {
    const response = await fetch(url, { method, headers, body, credentials: 'same-origin' });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      notice(`${method} ${url}: ${answer.error || response.status}`, true);
      return null;
    }
    return answer;
  } catch (error) {
    notice(`${method} ${url}: ${error.message}`, true);
    return null;
  }
}

// Replaces a table's rows with one per item.
function fill(table, items, cells) {
  const body = $(`#${table} tbody`);
  body.replaceChildren(...items.map((item) => el('tr', {}, ...cells(item).map((c) => (c instanceof Node ? c : el('td', {}, c))))));
}

const cell = (text, className) => el('td', { class: className }, text);

// ---- instances: rows kept across updates, so a chosen file and a pending
// click survive the next snapshot.

const instanceRows = new Map();

function instanceRow(name) {
  const button = (action, label, className) => el('button', { type: 'button', 'data-action': action, class: className }, label);
  const file = el('input', { type: 'file', accept: '.wasm,application/wasm', 'data-action': 'swap-file', 'aria-label': `new build for ${name}` });
  const actions = el('div', { class: 'actions' },
    button('pause', 'pause'), button('resume', 'resume'), file, button('swap', 'swap'), button('remove', 'remove', 'danger'));
  const fields = ['name', 'plugin', 'sha256', 'state', 'position', 'realized', 'unrealized', 'bars', 'error'];
  const row = el('tr', { 'data-instance': name },
    ...fields.map((f) => el('td', { 'data-field': f, class: f === 'error' ? 'error' : undefined })),
    el('td', {}, actions));
  const path = `/api/v1/instances/${encodeURIComponent(name)}`;
  actions.addEventListener('click', async (event) => {
    const action = event.target.closest('button')?.dataset.action;
    if (!action) return;
    if (action === 'pause' || action === 'resume') {
      const answer = await act('POST', `${path}/${action}`);
      if (answer) notice(`${name}: ${answer.state}`);
    } else if (action === 'swap') {
      const build = file.files[0];
      if (!build) { notice(`choose a .wasm build for ${name} first`, true); return; }
      notice(`${name}: compiling ${build.name}…`);
      const answer = await act('POST', `${path}/swap`, await build.arrayBuffer(), 'application/wasm');
      if (answer) { notice(`${name}: now running ${answer.sha256.slice(0, 12)}`); file.value = ''; }
    } else if (action === 'remove') {
      const target = event.target;
      if (target.dataset.armed !== 'yes') {
        target.dataset.armed = 'yes';
        target.textContent = 'confirm';
        setTimeout(() => { target.dataset.armed = ''; target.textContent = 'remove'; }, 3000);
        return;
      }
      const answer = await act('DELETE', path);
      if (answer) notice(`${name}: removed (open orders canceled)`);
    }
  });
  return row;
}

function set(row, field, text, className) {
  const td = $(`[data-field="${field}"]`, row);
  if (td.textContent !== String(text)) td.textContent = text;
  if (className !== undefined) td.className = className;
}

function renderInstances(instances) {
  const body = $('#instances tbody');
  const names = new Set(instances.map((i) => i.name));
  for (const [name, row] of instanceRows) {
    if (!names.has(name)) { row.remove(); instanceRows.delete(name); }
  }
  for (const i of instances) {
    let row = instanceRows.get(i.name);
    if (!row) { row = instanceRow(i.name); instanceRows.set(i.name, row); body.append(row); }
    const position = Object.entries(i.positions || {}).map(([s, q]) => `${s} ${q}`).join(', ');
    const error = i.error || (i.last_error ? `${time(i.last_error.at_ms)} ${i.last_error.message}` : '');
    set(row, 'name', i.name);
    set(row, 'plugin', i.plugin ? `${i.plugin.name} ${i.plugin.version}` : '');
    set(row, 'sha256', (i.sha256 || '').slice(0, 12));
    $('[data-field="sha256"]', row).title = i.sha256 || '';
    set(row, 'state', i.state, i.state);
    set(row, 'position', position || 'flat');
    set(row, 'realized', i.realized_pnl, 'num');
    set(row, 'unrealized', i.unrealized_pnl, 'num');
    set(row, 'bars', i.bars_dropped ? `${i.bars} (${i.bars_dropped} dropped)` : i.bars, 'num');
    set(row, 'error', error, 'error');
  }
}

// ---- venues, books, orders, fills, edges

const venueRows = new Map();

function venueRow(venue) {
  const row = el('tr', { 'data-venue': venue },
    ...['venue', 'trading', 'reason', 'sync', 'last-sync', 'error'].map((f) => el('td', { 'data-field': f })),
    el('td', {}, el('div', { class: 'actions' },
      el('button', { type: 'button', 'data-action': 'halt', class: 'danger' }, 'halt'),
      el('button', { type: 'button', 'data-action': 'resume' }, 'resume'))));
  row.addEventListener('click', async (event) => {
    const action = event.target.closest('button')?.dataset.action;
    if (!action) return;
    const body = JSON.stringify({ venue, note: 'from the dashboard' });
    const answer = await act('POST', `/api/v1/${action}`, body, 'application/json');
    if (answer) notice(`${venue}: ${answer.map((v) => v.state).join(', ')}`);
  });
  return row;
}

function renderVenues(host) {
  const body = $('#venues tbody');
  const names = new Set(host.venues.map((v) => v.venue));
  for (const [name, row] of venueRows) {
    if (!names.has(name)) { row.remove(); venueRows.delete(name); }
  }
  for (const v of host.venues) {
    let row = venueRows.get(v.venue);
    if (!row) { row = venueRow(v.venue); venueRows.set(v.venue, row); body.append(row); }
    const sync = host.sync[v.venue] || {};
    set(row, 'venue', v.venue);
    set(row, 'trading', v.state, v.state);
    set(row, 'reason', v.reason ? JSON.stringify(v.reason) : '');
    const stream = sync.stream ? ` · stream ${sync.stream}` : '';
    set(row, 'sync', `${sync.state || 'pending'}${stream}`, sync.state || 'pending');
    set(row, 'last-sync', time(sync.last_sync_ms));
    set(row, 'error', sync.last_error ? `${time(sync.last_error.at_ms)} ${sync.last_error.message}` : '', 'error');
  }
  if (host.venues.length === 0 && !body.querySelector('.empty')) {
    body.append(el('tr', { class: 'empty' }, el('td', { colspan: 7, class: 'muted' }, 'paper broker: nothing to halt')));
  } else if (host.venues.length > 0) {
    body.querySelector('.empty')?.remove();
  }
}

function renderBooks(positions) {
  const rows = [];
  if (positions.venue) {
    for (const p of positions.venue.positions) rows.push([positions.venue.venue, p.symbol, p.qty, p.avg_price]);
  }
  for (const [name, book] of Object.entries(positions.instances || {})) {
    for (const [symbol, qty] of Object.entries(book)) rows.push([name, symbol, qty, '']);
  }
  $('#positions-venue').textContent = positions.venue ? positions.venue.venue : 'paper';
  fill('positions', rows, (r) => [r[0], r[1], cell(r[2], 'num'), cell(r[3], 'num')]);
}

function renderEdges(host) {
  fill('webhooks', Object.entries(host.webhooks), ([route, t]) => [
    route, cell(t.accepted, 'num'), cell(t.duplicate, 'num'),
    Object.entries(t.refused).map(([status, n]) => `${status}: ${n}`).join(', ') || '0',
  ]);
  fill('sinks', Object.entries(host.sinks), ([sink, t]) => [
    sink, cell(t.pending, 'num'), cell(t.sent, 'num'), cell(t.retried, 'num'), cell(t.dropped, 'num'),
    cell(t.disabled ? 'disabled' : 'enabled', t.disabled ? 'disabled' : 'active'),
    cell(t.last_error ? `${time(t.last_error.at_ms)} ${t.last_error.message}` : '', 'error'),
  ]);
  fill('feeds', Object.entries(host.feeds), ([feed, t]) => [
    feed, time(t.last_bar_ms), cell(t.stream || 'polled', t.stream || ''),
    cell(t.last_error ? `${time(t.last_error.at_ms)} ${t.last_error.message}` : '', 'error'),
  ]);
}

// ---- charts: plain SVG, scaled to the series

function chart(node, series, markers = []) {
  const [w, h, left, right, top, bottom] = [600, 220, 64, 10, 10, 22];
  node.replaceChildren();
  if (series.length === 0) {
    node.append(svg('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', class: 'label' }, 'no data yet'));
    return;
  }
  const xs = series.map((p) => p[0]);
  const ys = series.map((p) => p[1]).concat(markers.map((m) => m.price));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const x = (t) => left + ((t - x0) / (x1 - x0)) * (w - left - right);
  const y = (v) => top + (1 - (v - y0) / (y1 - y0)) * (h - top - bottom);
  node.append(svg('line', { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, class: 'axis' }));
  node.append(svg('line', { x1: left, y1: top, x2: left, y2: h - bottom, class: 'axis' }));
  for (const v of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    node.append(svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'label' }, v.toFixed(2)));
  }
  node.append(svg('text', { x: left, y: h - 6, class: 'label' }, time(x0).slice(0, 16)));
  node.append(svg('text', { x: w - right, y: h - 6, 'text-anchor': 'end', class: 'label' }, time(x1).slice(0, 16)));
  if (y0 < 0 && y1 > 0) node.append(svg('line', { x1: left, y1: y(0), x2: w - right, y2: y(0), class: 'zero' }));
  const points = series.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
  node.append(svg('polyline', { points, class: 'series' }));
  for (const m of markers) {
    if (m.time < x0 || m.time > x1) continue;
    const [cx, cy] = [x(m.time), y(m.price)];
    const d = m.side === 'buy' ? `M${cx},${cy - 6} l5,9 l-10,0 z` : `M${cx},${cy + 6} l5,-9 l-10,0 z`;
    const mark = svg('path', { d, class: m.side === 'buy' ? 'buy' : 'sell' });
    mark.append(svg('title', {}, `${m.side} ${m.qty} @ ${m.price} (${m.instance})`));
    node.append(mark);
  }
}

function renderCharts(snapshot) {
  chart($('#pnl-chart'), snapshot.charts.pnl);
  const select = $('#symbol');
  const symbols = Object.keys(snapshot.charts.prices);
  const listed = [...select.options].map((o) => o.value);
  if (symbols.join('\n') !== listed.join('\n')) {
    const chosen = select.value;
    select.replaceChildren(...symbols.map((s) => el('option', { value: s }, s)));
    if (symbols.includes(chosen)) select.value = chosen;
  }
  const symbol = select.value;
  const markers = snapshot.fills.fills
    .filter((f) => f.symbol === symbol)
    .map((f) => ({ time: f.time_ms, price: Number(f.price), side: f.side, qty: f.qty, instance: f.instance }));
  chart($('#price-chart'), snapshot.charts.prices[symbol] || [], markers);
}

// ---- the whole page

let latest = null;

function render(snapshot) {
  latest = snapshot;
  const host = snapshot.host;
  const status = $('#host-status');
  status.textContent = host.status;
  status.className = `badge ${host.status}`;
  $('#feed-status').textContent = host.feed_done ? 'feed finished' : '';
  renderInstances(host.strategies);
  renderVenues(host);
  renderBooks(snapshot.positions);
  $('#orders-venue').textContent = snapshot.orders.venue;
  fill('orders', snapshot.orders.orders, (o) => [
    time(o.created_ms), o.instance, o.symbol, cell(o.side, o.side), cell(o.qty, 'num'), o.type, o.status,
  ]);
  $('#fills-venue').textContent = snapshot.fills.venue;
  fill('fills', snapshot.fills.fills.slice(0, FILL_ROWS), (f) => [
    time(f.time_ms), f.instance, f.symbol, cell(f.side, f.side), cell(f.qty, 'num'), cell(f.price, 'num'),
  ]);
  renderEdges(host);
  renderCharts(snapshot);
  if (!snapshot.journal && !$('#journal').children.length) {
    $('#journal').append(el('li', { class: 'muted' }, 'no journal: a paper replay keeps no store'));
  }
}

function appendJournal(lines) {
  const list = $('#journal');
  for (const line of lines) {
    list.prepend(el('li', {}, time(line.time_ms), el('span', { class: 'kind' }, line.kind),
      line.venue ? `${line.venue} ` : '', JSON.stringify(line.data)));
  }
  while (list.children.length > JOURNAL_LINES) list.lastChild.remove();
}

function connect() {
  const connection = $('#connection');
  const events = new EventSource('/api/v1/events');
  events.onopen = () => { connection.textContent = 'live'; connection.className = 'badge live'; };
  events.onerror = () => { connection.textContent = 'offline'; connection.className = 'badge offline'; };
  events.addEventListener('snapshot', (event) => render(JSON.parse(event.data)));
  events.addEventListener('journal', (event) => appendJournal(JSON.parse(event.data)));
}

document.addEventListener('DOMContentLoaded', () => {
  $('#symbol').addEventListener('change', () => latest && renderCharts(latest));
  connect();
});
