'use strict';

// npm run bench [-- --quick]
//
// One run, one process tree, three designs measured side by side:
//   edgefc        a Node caller (FCClient) -> the edgefc runtime (standalone
//                 Rust process) -> a Node echo worker, over the binary transport
//   HTTP baseline the Greengrass-style HTTP design (benches/http-baseline), the
//                 same echo handler, JSON/base64 bodies over HTTP/1.1 keep-alive
//   wire floor    a Rust client -> Rust broker -> Rust worker, three processes,
//                 exchanging edgefc frames (crates/edgefc-core/examples/wire_floor.rs)
// Beside them: cross-gateway calls through a local Mosquitto, and what
// metrics cost (observe listener off and on, and recording in-process).
// The 1-in-flight cases are measured twice: as they come, and with every
// process pinned to one CPU (a child run under `taskset -c 0`, `--pinned`),
// since on a small VM unpinned figures swing with cross-CPU wake-ups.
// Prints Markdown tables and writes benches/results/latest.json and latest.svg.
// Ratios compare figures of this one run; the machine is shared and noisy.

const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const QUICK = process.argv.includes('--quick');
/** A child run under `taskset -c 0`: 1 in flight only, results as JSON on stdout. */
const PINNED = process.argv.includes('--pinned');
const RUNS = QUICK ? 1 : 3;
const DURATION_MS = QUICK ? 150 : 1000;
const MESSAGES = QUICK ? 2000 : 20000;
const PAYLOADS = [['64 B', 64], ['64 KiB', 64 * 1024], ['1 MiB', 1024 * 1024]];
const IN_FLIGHT = PINNED ? [1] : [1, 16, 256];
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Runs `callOnce` from `inFlight` lanes for DURATION_MS; latency in µs. */
async function measure(callOnce, inFlight) {
  const samples = [];
  const deadline = Date.now() + DURATION_MS;
  const started = process.hrtime.bigint();
  const lane = async () => {
    while (Date.now() < deadline) {
      const begun = process.hrtime.bigint();
      await callOnce();
      samples.push(Number(process.hrtime.bigint() - begun) / 1000);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  samples.sort((a, b) => a - b);
  return { calls: samples.length, perSecond: samples.length / seconds, p50: percentile(samples, 0.5), p99: percentile(samples, 0.99) };
}

/** The median of each figure over RUNS runs. */
async function repeated(run) {
  const runs = [];
  for (let i = 0; i < RUNS; i += 1) runs.push(await run());
  return Object.fromEntries(Object.keys(runs[0]).map((key) => [key, median(runs.map((r) => r[key]))]));
}

function startProcess(command, args, readyText) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let output = '';
    child.output = () => output;
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes(readyText)) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`${command} exited with ${code}: ${output}`)));
  });
}

function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.on('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** CPU time (µs) a process has used, from /proc. */
function cpuMicros(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** Context switches of every thread of a process, from /proc. */
function switches(pid) {
  return fs.readdirSync(`/proc/${pid}/task`).reduce((sum, task) => {
    const status = fs.readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
    return sum + Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]);
  }, 0);
}

/** What `run` costs each of `pids` per call: CPU µs and context switches. */
async function perCall(pids, run) {
  const before = pids.map((pid) => [cpuMicros(pid), switches(pid)]);
  const result = await run();
  const calls = result.calls * RUNS;
  return { result, cost: pids.map((pid, i) => ({ cpuMicros: (cpuMicros(pid) - before[i][0]) / calls, switches: (switches(pid) - before[i][1]) / calls })) };
}

function rssMiB(pid) {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** Samples a process's RSS until stopped; gives the peak. */
function rssPeak(pid) {
  let peak = rssMiB(pid);
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB(pid)); }, 25);
  return () => {
    clearInterval(timer);
    return Math.max(peak, rssMiB(pid));
  };
}

async function benchEdgefc(results) {
  const { FCClient } = require(ROOT);
  const configPath = path.join(__dirname, 'fixtures', 'edgefc.json');
  const { runtimeCommand } = require(path.join(ROOT, 'lib', 'runtime'));
  const [binary, args] = runtimeCommand(configPath);
  const runtime = await startProcess(binary, args, 'listening on');
  try {
    const stateDir = '/tmp/edgefc-bench';
    const endpoint = { socketPath: path.join(stateDir, 'edgefc.sock'), token: fs.readFileSync(path.join(stateDir, 'admin.token'), 'utf8') };
    const fc = new FCClient(endpoint);
    const rssIdle = rssMiB(runtime.pid);
    const workerPid = Number((await fc.invokeFunction({ functionId: 'echo', payload: 'pid' })).payload);
    for (const [label, size] of PAYLOADS) {
      const payload = Buffer.alloc(size, 7);
      const callOnce = () => fc.invokeFunction({ functionId: 'echo', payload });
      await measure(callOnce, 16); // warm-up: JIT, buffers
      for (const inFlight of IN_FLIGHT) {
        // At 64 B, where the time goes: each process's CPU and wake-ups per
        // call, one at a time and under load (with the runtime's peak RSS).
        const watched = size === 64 && (inFlight === 1 || inFlight === 256) ? [process.pid, runtime.pid, workerPid] : [];
        const peak = size === 64 && inFlight === 256 && rssPeak(runtime.pid);
        const { result, cost } = await perCall(watched, () => repeated(() => measure(callOnce, inFlight)));
        results.sync.push({ design: 'edgefc', payload: label, size, inFlight, ...result });
        if (watched.length > 0 && inFlight === 1) {
          results.roundTrip.push({ pinned: PINNED, caller: cost[0], runtime: cost[1], worker: cost[2] });
        }
        if (peak) {
          results.cost.runtimeRssUnderLoadMiB = peak();
          results.cost.callerCpuMicrosPerInvoke = cost[0].cpuMicros;
          results.cost.runtimeCpuMicrosPerInvoke = cost[1].cpuMicros;
          results.cost.workerCpuMicrosPerInvoke = cost[2].cpuMicros;
        }
      }
    }
    results.cost.runtimeRssIdleMiB = rssIdle;
    if (PINNED) return;
    const deliveries = [
      ['Async invoke (durable)', (i) => fc.invokeFunction({ functionId: 'counter', invocationType: 'Async', payload: `m${i}`.padEnd(64, '.') })],
      ['publish, qos 0 route (in memory)', (i) => fc.publish({ topic: '/bench/x', payload: `m${i}`.padEnd(64, '.') })],
      ['publish, qos 1 route (durable)', (i) => fc.publish({ topic: '/bench-durable/x', payload: `m${i}`.padEnd(64, '.') })],
    ];
    for (const [kind, send] of deliveries) {
      await deliveryRate(fc, kind, send); // warm-up, as for the Sync cases: JIT, buffers, the store's file
      results.throughput.push(await repeated(() => deliveryRate(fc, kind, send)));
    }
    results.cost.addon = addonLoadTime(endpoint);
  } finally {
    await stopProcess(runtime);
  }
}

/**
 * 64 B Sync calls from a caller on gateway gw1 to the echo function on
 * gateway gw2, through one local Mosquitto: two runtime processes, each
 * reaching the other only through the broker.
 */
async function benchCrossGateway(results) {
  const { MOSQUITTO, startBroker } = require(path.join(ROOT, 'examples', 'two-gateways', 'broker'));
  if (MOSQUITTO === undefined) {
    console.error('cross-gateway: skipped (mosquitto is not installed; bash scripts/services.sh installs it)');
    return;
  }
  const { FCClient } = require(ROOT);
  const { runtimeCommand } = require(path.join(ROOT, 'lib', 'runtime'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefc-bench-remote-'));
  const { port, broker } = await startBroker(dir);
  const gateways = [];
  const gateway = async (name, settings) => {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({
      gatewayId: name,
      stateDir: path.join(dir, name),
      runAs: 'runtime',
      mqtt: { brokers: { site: { url: `mqtt://127.0.0.1:${port}`, maxInflight: 256 } } },
      ...settings,
    }));
    const [binary, args] = runtimeCommand(file);
    gateways.push(await startProcess(binary, args, 'listening on'));
  };
  try {
    await gateway('gw2', {
      functions: [{ serviceName: 'Bench', functionName: 'echo', codeDir: path.join(__dirname, 'fixtures', 'echo'), maxConcurrency: 256 }],
      exposedFunctions: [{ serviceName: 'Bench', functionName: 'echo' }],
    });
    await gateway('gw1', {
      functions: [],
      remoteFunctions: [{ serviceName: 'Bench', functionName: 'echo', gatewayId: 'gw2', functionId: 'far-echo' }],
    });
    const token = fs.readFileSync(path.join(dir, 'gw1', 'admin.token'), 'utf8');
    const fc = new FCClient({ socketPath: path.join(dir, 'gw1', 'edgefc.sock'), token, timeoutMs: 5000 });
    const payload = Buffer.alloc(64, 7);
    const callOnce = () => fc.invokeFunction({ functionId: 'far-echo', payload });
    // Until gw2 has subscribed to its requests, a call finds nobody there.
    for (let tries = 0; ; tries += 1) {
      const answered = await callOnce().then(() => true, (err) => {
        if (tries === 50) throw err;
        return false;
      });
      if (answered) break;
    }
    await measure(callOnce, 16);
    for (const inFlight of [1, 256]) {
      results.crossGateway.push({ inFlight, ...(await repeated(() => measure(callOnce, inFlight))) });
    }
  } finally {
    for (const child of gateways.reverse()) await stopProcess(child);
    broker.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What metrics cost the 64 B Sync path. Every runtime counts each
 * invocation (there is no switch to turn that off), so two figures: what
 * recording one invocation's metrics costs, measured in-process
 * (examples/metrics_cost.rs); and the same runtime without an observe
 * listener and with one scraped every second, measured in alternation.
 */
async function benchObserve(results) {
  execFileSync('cargo', ['build', '--release', '-q', '-p', 'edgefc-core', '--example', 'metrics_cost'], { cwd: ROOT, stdio: 'inherit' });
  results.observe.recording = JSON.parse(execFileSync(path.join(ROOT, 'target', 'release', 'examples', 'metrics_cost')).toString());
  const { FCClient } = require(ROOT);
  const { runtimeCommand } = require(path.join(ROOT, 'lib', 'runtime'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefc-bench-observe-'));
  const start = async (name, observe) => {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({
      stateDir: path.join(dir, name),
      runAs: 'runtime',
      functions: [{ serviceName: 'Bench', functionName: 'echo', functionId: 'echo', codeDir: path.join(__dirname, 'fixtures', 'echo'), maxConcurrency: 256 }],
      ...(observe ? { observe: { listen: '127.0.0.1:0' } } : {}),
    }));
    const [binary, args] = runtimeCommand(file);
    const child = await startProcess(binary, args, 'runtime listening on');
    const token = fs.readFileSync(path.join(dir, name, 'admin.token'), 'utf8');
    const fc = new FCClient({ socketPath: path.join(dir, name, 'edgefc.sock'), token });
    const address = /observe listening on (http:\/\/\S+)/.exec(child.output());
    return { child, fc, metricsUrl: address && new URL('/metrics', address[1]) };
  };
  const runtimes = [await start('off', false), await start('on', true)];
  const payload = Buffer.alloc(64, 7);
  try {
    const figures = { off: [], on: [] };
    for (const { fc } of runtimes) await measure(() => fc.invokeFunction({ functionId: 'echo', payload }), 16);
    for (let run = 0; run < RUNS; run += 1) {
      // Which goes first alternates, so that neither always follows the other's load.
      const order = run % 2 === 0 ? [['off', runtimes[0]], ['on', runtimes[1]]] : [['on', runtimes[1]], ['off', runtimes[0]]];
      for (const [label, { fc, metricsUrl }] of order) {
        // Scraped at once and every second after, as a (very eager) Prometheus would.
        const scrape = () => fetch(metricsUrl).then((response) => response.text()).catch(() => {});
        const scraper = metricsUrl && (scrape(), setInterval(scrape, 1000));
        const callOnce = () => fc.invokeFunction({ functionId: 'echo', payload });
        const busy = await measure(callOnce, 256);
        const alone = await measure(callOnce, 1);
        if (scraper) clearInterval(scraper);
        figures[label].push({ perSecond: busy.perSecond, p50: alone.p50 });
      }
    }
    for (const label of ['off', 'on']) {
      results.observe[label] = { perSecond: median(figures[label].map((f) => f.perSecond)), p50: median(figures[label].map((f) => f.p50)) };
    }
  } finally {
    for (const { child } of runtimes) await stopProcess(child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Sends MESSAGES with 256 in flight: accepted/s counts until every send is
 * acknowledged, delivered/s until the receiving function has them all.
 */
async function deliveryRate(fc, kind, send) {
  await fc.invokeFunction({ functionId: 'counter', payload: 'reset' });
  const done = fc.invokeFunction({ functionId: 'counter', payload: `wait:${MESSAGES}` });
  const started = process.hrtime.bigint();
  let next = 0;
  const lane = async () => {
    while (next < MESSAGES) {
      next += 1;
      await send(next);
    }
  };
  await Promise.all(Array.from({ length: 256 }, lane));
  const acceptedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { kind, acceptedPerSecond: MESSAGES / acceptedSeconds, perSecond: MESSAGES / seconds };
}

/** `require('edgefc')` and the first call, in a fresh Node process. */
function addonLoadTime(endpoint) {
  const script = `
    const t0 = process.hrtime.bigint();
    const { FCClient } = require(${JSON.stringify(ROOT)});
    const t1 = process.hrtime.bigint();
    new FCClient(${JSON.stringify(endpoint)}).invokeFunction({ functionId: 'echo', payload: 'x' }).then(() => {
      const t2 = process.hrtime.bigint();
      console.log(JSON.stringify({ requireMs: Number(t1 - t0) / 1e6, firstCallReadyMs: Number(t2 - t0) / 1e6 }));
    });`;
  const runs = Array.from({ length: RUNS }, () => JSON.parse(execFileSync(process.execPath, ['-e', script]).toString()));
  return { requireMs: median(runs.map((r) => r.requireMs)), firstCallReadyMs: median(runs.map((r) => r.firstCallReadyMs)) };
}

async function benchBaseline(results) {
  const socketPath = path.join(os.tmpdir(), `edgefc-baseline-${process.pid}.sock`);
  fs.rmSync(socketPath, { force: true });
  const server = await startProcess(process.execPath, [path.join(__dirname, 'http-baseline', 'runtime.js'), socketPath], 'listening');
  const worker = spawn(process.execPath, [path.join(__dirname, 'http-baseline', 'worker.js'), socketPath,
    path.join(__dirname, 'fixtures', 'echo', 'index.js'), '64'], { stdio: 'inherit' });
  try {
    for (const [label, size] of PAYLOADS) {
      const body = JSON.stringify({ functionId: 'echo', payload: Buffer.alloc(size, 7).toString('base64') });
      for (const inFlight of IN_FLIGHT) {
        const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight * 2 });
        const request = (method, urlPath, data) => new Promise((resolve, reject) => {
          const req = http.request({ socketPath, method, path: urlPath, agent }, (res) => {
            const chunks = [];
            res.on('data', (chunk) => chunks.push(chunk));
            res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          });
          req.on('error', reject);
          req.end(data);
        });
        const callOnce = async () => {
          const { id } = JSON.parse(await request('POST', '/invoke', body));
          const result = JSON.parse(await request('GET', `/result/${id}`));
          return Buffer.from(result.payload, 'base64');
        };
        await measure(callOnce, inFlight);
        results.sync.push({ design: 'HTTP baseline', payload: label, size, inFlight, ...(await repeated(() => measure(callOnce, inFlight))) });
        agent.destroy();
      }
    }
  } finally {
    worker.kill('SIGTERM');
    await stopProcess(server);
    fs.rmSync(socketPath, { force: true });
  }
}

function benchFloor(results) {
  const binary = path.join(ROOT, 'target', 'release', 'examples', 'wire_floor');
  execFileSync('cargo', ['build', '--release', '-q', '-p', 'edgefc-core', '--example', 'wire_floor'], { cwd: ROOT, stdio: 'inherit' });
  for (const [label, size] of PAYLOADS) {
    for (const inFlight of IN_FLIGHT) {
      const runs = Array.from({ length: RUNS }, () => {
        const r = JSON.parse(execFileSync(binary, [String(size), String(inFlight), String(DURATION_MS)]).toString());
        return { calls: r.calls, perSecond: r.calls / r.seconds, p50: r.p50_us, p99: r.p99_us };
      });
      const figures = Object.fromEntries(Object.keys(runs[0]).map((key) => [key, median(runs.map((r) => r[key]))]));
      results.sync.push({ design: 'wire floor', payload: label, size, inFlight, ...figures });
    }
  }
}

const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function tables(results) {
  const find = (design, payload, inFlight) => results.sync.find((r) => r.design === design && r.payload === payload && r.inFlight === inFlight);
  const lines = [];
  const latency = (title, rows) => {
    const at = (design, payload) => rows.find((r) => r.design === design && r.payload === payload && r.inFlight === 1);
    lines.push(title, '');
    lines.push('| payload | edgefc p50 | edgefc p99 | HTTP baseline p50 | baseline p99 | wire floor p50 | floor p99 | baseline ÷ edgefc (p50) | edgefc ÷ floor (p50) |');
    lines.push('|---|---|---|---|---|---|---|---|---|');
    for (const [label] of PAYLOADS) {
      const [e, b, f] = ['edgefc', 'HTTP baseline', 'wire floor'].map((d) => at(d, label));
      lines.push(`| ${label} | ${fmt(e.p50, 1)} | ${fmt(e.p99, 1)} | ${fmt(b.p50, 1)} | ${fmt(b.p99, 1)} | ${fmt(f.p50, 1)} | ${fmt(f.p99, 1)} | ${fmt(b.p50 / e.p50, 1)}× | ${fmt(e.p50 / f.p50, 1)}× |`);
    }
  };
  latency('Sync invoke round trip, 1 in flight, every process pinned to CPU 0 (µs):', results.pinned);
  lines.push('');
  latency('Sync invoke round trip, 1 in flight, unpinned (µs):', results.sync);
  lines.push('', 'Sync invoke throughput (invokes/s, p99 µs):', '');
  lines.push('| payload | in flight | edgefc /s | edgefc p99 | HTTP baseline /s | baseline p99 | wire floor /s | floor p99 | edgefc ÷ baseline | edgefc ÷ floor |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const [label] of PAYLOADS) {
    for (const inFlight of IN_FLIGHT.slice(1)) {
      const [e, b, f] = ['edgefc', 'HTTP baseline', 'wire floor'].map((d) => find(d, label, inFlight));
      lines.push(`| ${label} | ${inFlight} | ${fmt(e.perSecond)} | ${fmt(e.p99)} | ${fmt(b.perSecond)} | ${fmt(b.p99)} | ${fmt(f.perSecond)} | ${fmt(f.p99)} | ${fmt(e.perSecond / b.perSecond, 1)}× | ${fmt(e.perSecond / f.perSecond, 2)}× |`);
    }
  }
  if (results.crossGateway.length > 0) {
    lines.push('', 'Cross-gateway Sync, 64 B: gw1 → one local Mosquitto → gw2 → Mosquitto → gw1 (MQTT 5, QoS 1), beside local calls:', '');
    lines.push('| in flight | cross-gateway p50 µs | p99 µs | calls/s | local edgefc p50 µs | calls/s |', '|---|---|---|---|---|---|');
    for (const r of results.crossGateway) {
      const local = results.sync.find((row) => row.design === 'edgefc' && row.payload === '64 B' && row.inFlight === r.inFlight);
      lines.push(`| ${r.inFlight} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${fmt(r.perSecond)} | ${fmt(local.p50, 1)} | ${fmt(local.perSecond)} |`);
    }
  }
  const o = results.observe;
  if (o.on) {
    lines.push('', 'Metrics, 64 B Sync (every runtime counts each invocation; "on" adds the observe listener, /metrics scraped every second):', '');
    lines.push('| figure | observe off | observe on | on ÷ off |', '|---|---|---|---|');
    lines.push(`| calls/s, 256 in flight | ${fmt(o.off.perSecond)} | ${fmt(o.on.perSecond)} | ${fmt(o.on.perSecond / o.off.perSecond, 3)} |`);
    lines.push(`| p50 µs, 1 in flight | ${fmt(o.off.p50, 1)} | ${fmt(o.on.p50, 1)} | ${fmt(o.on.p50 / o.off.p50, 3)} |`);
    const perInvoke = results.cost;
    const wholeCall = perInvoke.callerCpuMicrosPerInvoke + perInvoke.runtimeCpuMicrosPerInvoke + perInvoke.workerCpuMicrosPerInvoke;
    const share = (nanos) => `${fmt((nanos / 1000 / perInvoke.runtimeCpuMicrosPerInvoke) * 100, 2)}% of the runtime's CPU per invoke, ${fmt((nanos / 1000 / wholeCall) * 100, 2)}% of a call's CPU in caller, runtime and worker`;
    lines.push('', `Recording one invocation's metrics (3 clock reads, 2 histogram observations, 1 count): ${fmt(o.recording.aloneNanos)} ns on one thread (${share(o.recording.aloneNanos)}); ${fmt(o.recording.contendedNanos)} ns with ${o.recording.threads} threads recording into one function at once (${share(o.recording.contendedNanos)}); CPU per invoke measured at 64 B, 256 in flight.`);
  }
  lines.push('', 'Delivery throughput, 64 B, 256 in flight, counted at the receiving function:', '');
  lines.push('| edgefc | accepted/s | delivered/s |', '|---|---|---|');
  for (const t of results.throughput) lines.push(`| ${t.kind} | ${fmt(t.acceptedPerSecond)} | ${fmt(t.perSecond)} |`);
  const c = results.cost;
  lines.push('', 'Cost:', '', '| figure | value |', '|---|---|');
  lines.push(`| runtime RSS, idle | ${fmt(c.runtimeRssIdleMiB, 1)} MiB |`);
  lines.push(`| runtime RSS, peak at 256 in flight (64 B) | ${fmt(c.runtimeRssUnderLoadMiB, 1)} MiB |`);
  lines.push(`| caller CPU per invoke (64 B, 256 in flight) | ${fmt(c.callerCpuMicrosPerInvoke, 1)} µs |`);
  lines.push(`| runtime CPU per invoke (64 B, 256 in flight) | ${fmt(c.runtimeCpuMicrosPerInvoke, 1)} µs |`);
  lines.push(`| worker CPU per invoke (64 B, 256 in flight) | ${fmt(c.workerCpuMicrosPerInvoke, 1)} µs |`);
  for (const r of results.roundTrip) {
    const where = r.pinned ? 'pinned' : 'unpinned';
    lines.push(`| CPU per 64 B call at 1 in flight, ${where}: caller / runtime / worker | ${fmt(r.caller.cpuMicros, 1)} / ${fmt(r.runtime.cpuMicros, 1)} / ${fmt(r.worker.cpuMicros, 1)} µs |`);
    lines.push(`| context switches per 64 B call at 1 in flight, ${where}: caller / runtime / worker | ${fmt(r.caller.switches, 2)} / ${fmt(r.runtime.switches, 2)} / ${fmt(r.worker.switches, 2)} |`);
  }
  lines.push(`| addon require | ${fmt(c.addon.requireMs, 1)} ms |`);
  lines.push(`| require to first call answered | ${fmt(c.addon.firstCallReadyMs, 1)} ms |`);
  return lines.join('\n');
}

/** p50 and p99 at 1 in flight per payload size, three designs, log scale. */
function chart(results) {
  const designs = [['edgefc', '#1f77b4'], ['HTTP baseline', '#d62728'], ['wire floor', '#2ca02c']];
  const width = 760;
  const height = 380;
  const left = 70;
  const bottom = 320;
  const top = 40;
  const rows = results.pinned;
  const maxLog = Math.ceil(Math.log10(Math.max(...rows.map((r) => r.p99))));
  const minLog = Math.floor(Math.log10(Math.min(...rows.map((r) => r.p50))));
  const y = (v) => bottom - ((Math.log10(v) - minLog) / (maxLog - minLog)) * (bottom - top);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">Sync invoke latency, 1 in flight, pinned to one CPU (µs, log scale): bar = p50, whisker = p99</text>`];
  for (let e = minLog; e <= maxLog; e += 1) {
    parts.push(`<line x1="${left}" x2="${width - 20}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${y(10 ** e) + 4}" text-anchor="end">${fmt(10 ** e)}</text>`);
  }
  const groupWidth = (width - left - 40) / PAYLOADS.length;
  PAYLOADS.forEach(([label], g) => {
    const x0 = left + g * groupWidth + 30;
    parts.push(`<text x="${x0 + 90}" y="${bottom + 20}" text-anchor="middle">${label}</text>`);
    designs.forEach(([design, color], d) => {
      const r = rows.find((row) => row.design === design && row.payload === label);
      const x = x0 + d * 60;
      parts.push(`<rect x="${x}" y="${y(r.p50)}" width="44" height="${bottom - y(r.p50)}" fill="${color}"/>`);
      parts.push(`<line x1="${x + 22}" x2="${x + 22}" y1="${y(r.p50)}" y2="${y(r.p99)}" stroke="black"/>`);
      parts.push(`<line x1="${x + 14}" x2="${x + 30}" y1="${y(r.p99)}" y2="${y(r.p99)}" stroke="black"/>`);
    });
  });
  designs.forEach(([design, color], d) => {
    parts.push(`<rect x="${left + d * 150}" y="${height - 28}" width="12" height="12" fill="${color}"/>`);
    parts.push(`<text x="${left + d * 150 + 18}" y="${height - 18}">${design === 'wire floor' ? 'wire floor (3 processes)' : design}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function commit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  } catch (err) {
    return 'unknown';
  }
}

/** The 1-in-flight cases again, every process on CPU 0. */
function benchPinned(results) {
  const child = execFileSync('taskset', ['-c', '0', process.execPath, __filename, '--pinned', ...(QUICK ? ['--quick'] : [])],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const pinned = JSON.parse(child);
  results.pinned = pinned.sync;
  results.roundTrip.push(...pinned.roundTrip);
}

async function main() {
  const started = Date.now();
  const results = { sync: [], throughput: [], cost: {}, pinned: [], roundTrip: [], crossGateway: [], observe: {} };
  benchFloor(results);
  await benchEdgefc(results);
  if (!PINNED) await benchCrossGateway(results);
  if (!PINNED) await benchObserve(results);
  await benchBaseline(results);
  if (PINNED) {
    process.stdout.write(JSON.stringify(results));
    return;
  }
  benchPinned(results);
  const report = {
    machine: { cpus: os.cpus().length, model: os.cpus()[0].model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` },
    date: new Date().toISOString(),
    commit: commit(),
    quick: QUICK,
    runsPerFigure: RUNS,
    durationPerRunMs: DURATION_MS,
    ...results,
  };
  const table = tables(results);
  console.log(table);
  console.log(`\n(${QUICK ? 'quick smoke run' : `median of ${RUNS} runs of ${DURATION_MS} ms each`}; ${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
  if (!QUICK) {
    fs.writeFileSync(path.join(__dirname, 'results', 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
    fs.writeFileSync(path.join(__dirname, 'results', 'latest.svg'), chart(results));
    fs.writeFileSync(path.join(__dirname, 'results', 'latest.md'), `${table}\n`);
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
