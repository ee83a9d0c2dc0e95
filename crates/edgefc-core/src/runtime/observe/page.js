// The status page: draws /api/stats every 2 s. Values are written with
// textContent only, so nothing from the runtime is ever parsed as HTML.
'use strict';

const REFRESH_MS = 2000;
// On a listener that needs a token, open the page as /#token=<observe.token>:
// a URL fragment never leaves the browser.
const token = new URLSearchParams(location.hash.slice(1)).get('token');

const $ = (selector) => document.querySelector(selector);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return '–';
  if (value < 0.001) return `${Math.round(value * 1e6)} µs`;
  if (value < 1) return `${(value * 1000).toFixed(value < 0.01 ? 2 : 1)} ms`;
  return `${value.toFixed(2)} s`;
}

function duration(value) {
  const s = Math.floor(value);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function bytes(value) {
  if (value === null || value === undefined) return '–';
  if (value < 1024) return `${value} B`;
  if (value < 1 << 20) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / (1 << 20)).toFixed(1)} MiB`;
}

const sum = (values) => values.reduce((total, value) => total + value, 0);
const totalOf = (byOutcome) => sum(Object.values(byOutcome || {}));
const invocationsOf = (fn) => sum(Object.values(fn.invocations).map(totalOf));

/** Replaces the rows of `table` with one per item; `cells` gives [label, text, class?, field?] per cell. */
function fill(table, items, cells, key) {
  const body = $(`${table} tbody`);
  const header = [...document.querySelectorAll(`${table} thead th`)].map((th) => th.textContent);
  body.replaceChildren(
    ...items.map((item) => {
      const row = element('tr');
      if (key) row.dataset.key = key(item);
      cells(item).forEach(([text, className, field], index) => {
        const cell = element('td', text, className);
        cell.dataset.label = header[index];
        if (field) cell.dataset.field = field;
        row.append(cell);
      });
      return row;
    }),
  );
}

function card(label, value, className) {
  const node = element('div', undefined, 'card');
  node.append(element('b', value, className), element('span', label));
  return node;
}

function render(stats) {
  $('#gateway').textContent = `· ${stats.gatewayId}`;
  $('#summary').textContent =
    `v${stats.version} · up ${duration(stats.uptimeSeconds)} · updated ${new Date().toLocaleTimeString()}`;
  const fns = stats.functions;
  const perSecond = sum(fns.map((fn) => fn.lastMinute.perSecond));
  const errors = sum(fns.map((fn) => fn.lastMinute.errors));
  const asyncPending = sum(stats.queues.functions.map((queue) => queue.asyncPending));
  $('#totals').replaceChildren(
    card('calls/s (1 min)', perSecond.toFixed(perSecond < 10 ? 2 : 0)),
    card('errors (1 min)', String(errors), errors > 0 ? 'bad' : ''),
    card('functions', String(fns.length)),
    card('connections', `${stats.connections.open} / ${stats.connections.max}`),
    card('queued', `${stats.queues.total.count} / ${stats.queues.total.maxCount}`),
    card('async pending', String(asyncPending)),
    card('dead letters', String(stats.store.deadLetters), stats.store.deadLetters > 0 ? 'bad' : ''),
    card('store', `${bytes(stats.store.heldBytes)} / ${bytes(stats.store.maxBytes)}`),
  );
  const queues = new Map(stats.queues.functions.map((queue) => [queue.function, queue]));
  fill(
    '#functions',
    fns,
    (fn) => {
      const queue = queues.get(fn.function);
      const worker = fn.workers[0];
      const workerText = worker
        ? `pid ${worker.pid} · ${bytes(worker.rssBytes)} · up ${duration(worker.uptimeSeconds)} · ${worker.inFlight} in flight`
        : fn.runMode === 'longLived' ? 'starting' : 'none (on demand)';
      const minute = fn.lastMinute;
      return [
        [fn.function, 'id', 'function'],
        [workerText, '', 'worker'],
        [minute.perSecond.toFixed(minute.perSecond < 10 ? 2 : 0), '', 'rate'],
        [seconds(minute.runP50Seconds), '', 'p50'],
        [seconds(minute.runP99Seconds), '', 'p99'],
        [String(minute.errors), minute.errors > 0 ? 'bad' : '', 'errors'],
        [String(invocationsOf(fn)), '', 'invocations'],
        [queue ? `${queue.admitted.count} / ${queue.admitted.maxCount}` : '–', '', 'queued'],
        [queue ? String(queue.asyncPending) : '–', '', 'asyncPending'],
      ];
    },
    (fn) => fn.function,
  );
  fill('#errors', stats.recentErrors, (error) => [
    [new Date(error.atMs).toLocaleTimeString()],
    [error.function, 'id'],
    [error.type],
    [error.outcome, 'bad'],
    [error.errorType || '–'],
    [error.invocationId || '–', 'id'],
  ]);
  $('#no-errors').hidden = stats.recentErrors.length > 0;
  fill('#routes', stats.routes, (route) => [[route.source, 'id'], [route.filter, 'id'], [route.target, 'id'], [String(route.qos)]]);
  fill('#links', stats.mqtt, (link) => [
    [link.broker, 'id'],
    [link.connected ? 'connected' : 'disconnected', link.connected ? 'good' : 'bad'],
    [`${link.outboxMessages} (${bytes(link.outboxBytes)})`],
    [`${link.sent} / ${link.acknowledged}`],
    [String(link.received)],
    [String(link.connects)],
    [String(link.refusedByBroker + link.droppedInbound + link.droppedQos0 + link.droppedOldest + link.rejectedFull + link.droppedUnsendable)],
  ]);
  $('#links').hidden = stats.mqtt.length === 0;
  const remote = stats.remote;
  $('#remote').textContent = stats.mqtt.length
    ? `Other gateways: ${remote.gatewaysOnline} online, ${remote.gatewaysOffline} offline · calls out ${remote.calls} · requests in ${remote.requests}`
    : 'No MQTT broker is configured.';
}

async function refresh() {
  try {
    const response = await fetch('/api/stats', { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
    if (response.status === 401) {
      throw new Error('this listener needs a token: open the page as /#token=<the state directory\'s observe.token>');
    }
    if (!response.ok) throw new Error(`the runtime answered ${response.status}`);
    render(await response.json());
    $('#problem').hidden = true;
  } catch (err) {
    $('#problem').textContent = err.message;
    $('#problem').hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
