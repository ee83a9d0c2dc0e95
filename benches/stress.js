'use strict';

// npm run stress
//
// Replays, against the standalone runtime with the default configuration,
// what a careless or hostile peer does to a gateway: each scenario runs on a
// fresh runtime while a well-behaved client keeps calling an echo function.
// Prints one Markdown table (also written to benches/results/stress.md and
// stress.json): the runtime's peak RSS (VmHWM), the good client's worst
// latency, and the counters that say what the runtime refused or dropped.
// The peers are crates/edgefc-core/examples/hostile_peer.rs.

const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const { FCClient } = require('..');
const { RuntimeLink } = require('../lib/core/link');
const { runtimeCommand } = require('../lib/runtime');

const ROOT = path.join(__dirname, '..');
const FIXTURES = path.join(ROOT, '__test__', 'fixtures');
const PEER = path.join(ROOT, 'target', 'release', 'examples', 'hostile_peer');
const MIB = 1024 * 1024;
/** How often the good client calls while a scenario runs. */
const GOOD_CALL_INTERVAL_MS = 20;

function writeConfig(extra = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-stress-'));
  const configPath = path.join(dir, 'edgefc.json');
  const functions = [
    { serviceName: 'Stress', functionName: 'echo', functionId: 'echo', codeDir: path.join(FIXTURES, 'echo') },
    { serviceName: 'Stress', functionName: 'busy', functionId: 'busy', codeDir: path.join(FIXTURES, 'slow'), maxConcurrency: 1, timeoutMs: 600000 },
    // Room for the 256 MiB string it prints and Node's copy of it on the way out (the default 256 MB is not).
    { serviceName: 'Stress', functionName: 'chatty', functionId: 'chatty', codeDir: path.join(FIXTURES, 'chatty'), timeoutMs: 600000, memorySize: 1024 },
  ];
  fs.writeFileSync(configPath, JSON.stringify({ stateDir: 'state', runAs: 'runtime', functions, ...extra }));
  return configPath;
}

/** Peak and current RSS of a process, in MiB, from /proc. */
function memory(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field) => Number((status.match(new RegExp(`^${field}:\\s+(\\d+)`, 'm')) || [0, 0])[1]);
    return { peak: kib('VmHWM') / 1024, now: kib('VmRSS') / 1024 };
  } catch {
    return { peak: NaN, now: NaN };
  }
}

/**
 * Starts the standalone runtime; `stdout: 'stalled'` stops reading its stdout
 * once it is listening. `nofile` runs it under that open-file limit.
 */
async function startRuntime(configPath, { stdout = 'read', nofile } = {}) {
  const [binary, args] = runtimeCommand(configPath);
  const command = nofile ? ['prlimit', [`--nofile=${nofile}:${nofile}`, binary, ...args]] : [binary, args];
  const child = spawn(command[0], command[1], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => { child.on('exit', (code, signal) => resolve({ code, signal })); });
  await new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk) => {
      output += chunk;
      if (!output.includes('listening on')) return;
      child.stdout.off('data', onData);
      if (stdout === 'stalled') {
        child.stdout.pause();
      } else {
        child.stdout.resume();
      }
      resolve();
    };
    child.stdout.on('data', onData);
    exited.then(({ code }) => reject(new Error(`runtime exited with ${code}: ${output}`)));
  });
  const token = fs.readFileSync(path.join(path.dirname(configPath), 'state', 'admin.token'), 'utf8').trim();
  const socket = path.join(path.dirname(configPath), 'state', 'edgefc.sock');
  return { child, exited, token, socket, configPath };
}

async function stopRuntime(runtime) {
  const begun = process.hrtime.bigint();
  runtime.child.kill('SIGTERM');
  await runtime.exited;
  return Number(process.hrtime.bigint() - begun) / 1e6;
}

function stats(runtime) {
  return new RuntimeLink({ config: runtime.configPath }).call((session) => session.query('stats'));
}

/**
 * Calls echo every GOOD_CALL_INTERVAL_MS until stopped; the worst latency in
 * ms, and failures. The first call, which starts the worker, is not counted.
 */
async function goodClient(configPath) {
  const fc = new FCClient({ config: configPath, connectTimeoutMs: 5000 });
  await fc.invokeFunction({ functionId: 'echo', payload: 'warm up' });
  let running = true;
  let worst = 0;
  let failures = 0;
  const done = (async () => {
    while (running) {
      const begun = process.hrtime.bigint();
      try {
        const result = await fc.invokeFunction({ functionId: 'echo', payload: 'ping' });
        if (result.payload !== 'ping') failures += 1;
      } catch {
        failures += 1;
      }
      worst = Math.max(worst, Number(process.hrtime.bigint() - begun) / 1e6);
      await new Promise((resolve) => { setTimeout(resolve, GOOD_CALL_INTERVAL_MS); });
    }
  })();
  return async () => {
    running = false;
    await done;
    return { worst, failures };
  };
}

function peer(runtime, mode, options = {}) {
  const args = [mode, '--socket', runtime.socket, '--token', runtime.token];
  for (const [key, value] of Object.entries(options)) args.push(`--${key}`, String(value));
  return new Promise((resolve, reject) => {
    const child = spawn(PEER, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(output)) : reject(new Error(`${mode} exited with ${code}`))));
  });
}

/** Spawns `edgefc subscribe '#'` and stops reading its stdout once it has subscribed. */
async function stalledCliSubscriber(runtime) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'edgefc.js'), 'subscribe', '#', '--config', runtime.configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  await new Promise((resolve) => {
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      if (stderr.includes('subscribed to')) resolve();
    });
  });
  child.stdout.pause();
  /** What its last "N messages dropped" line said. */
  child.dropped = () => Number((stderr.match(/(\d+) messages dropped so far(?![\s\S]*messages dropped)/) || [0, 0])[1]);
  return child;
}

const SCENARIOS = [
  {
    name: 'a subscriber to # stops reading while 1 KiB messages are published',
    async run(runtime) {
      return peer(runtime, 'stalled-subscriber', { seconds: 10 });
    },
    counters: ['droppedSlowSubscriber', 'connections.readPauses'],
  },
  {
    name: '`edgefc subscribe \'#\'` whose stdout nobody reads',
    async run(runtime) {
      const subscriber = await stalledCliSubscriber(runtime);
      const published = await peer(runtime, 'publish', { seconds: 10 });
      const cli = memory(subscriber.pid);
      subscriber.kill('SIGKILL');
      return { ...published, cliPeakMiB: Math.round(cli.peak), cliDropped: subscriber.dropped() };
    },
    counters: ['droppedSlowSubscriber'],
  },
  {
    name: 'a caller pipelines 64 KiB Sync invokes and never reads the replies',
    async run(runtime) {
      return peer(runtime, 'pipeline', { seconds: 10, size: 65536, target: 'echo' });
    },
    counters: ['connections.readPauses', 'connections.closedSlowReader', 'connections.refusedInFlight'],
  },
  {
    name: '6 MiB Async payloads queued behind a busy function',
    async run(runtime) {
      const fc = new FCClient({ config: runtime.configPath });
      await fc.invokeFunction({ functionId: 'busy', invocationType: 'Async', payload: '600000' });
      return peer(runtime, 'async-flood', { count: 701, size: 6 * MIB - 1024, target: 'busy' });
    },
    counters: ['queues.functions.1.admitted.refused', 'queues.functions.1.admitted.bytes'],
  },
  {
    name: '534 unauthenticated connections each send a 6 MiB Hello',
    async run(runtime) {
      return peer(runtime, 'big-hellos', { count: 534, size: 6 * MIB, seconds: 5 });
    },
    counters: ['connections.helloRefused', 'connections.evictedUnauthenticated'],
  },
  {
    name: 'a function writes 256 MiB to stdout without a newline',
    async run(runtime) {
      const fc = new FCClient({ config: runtime.configPath });
      const printed = await fc.invokeFunction({ functionId: 'chatty', payload: JSON.stringify({ unbroken: 256 * MIB }) });
      if (printed.functionError) {
        throw new Error(`the printing function failed: ${printed.payload}`);
      }
      // The function returns once Node has taken the output; wait until the runtime has read it all.
      // 4,096 pieces of 64 KiB; the last ends the line, so it is not a split.
      const splits = (256 * MIB) / (64 * 1024) - 1;
      while ((await stats(runtime)).log.splitLines < splits) { /* the runtime is still reading */ }
      return {};
    },
    counters: ['log.splitLines', 'log.droppedLines'],
  },
  {
    name: 'idle connections try to exhaust the runtime\'s fds (limit 1,024)',
    nofile: 1024,
    async run(runtime) {
      return peer(runtime, 'idle', { count: 2000, seconds: 8 });
    },
    counters: ['connections.evictedUnauthenticated', 'connections.helloTimeouts', 'connections.acceptErrors'],
  },
  {
    name: 'ten bursts of 10,000 connections opened and closed',
    async run(runtime) {
      const before = memory(runtime.child.pid).now;
      const result = await peer(runtime, 'bursts', { count: 10 });
      await stats(runtime);
      return { ...result, rssBeforeMiB: Math.round(before * 10) / 10, rssAfterMiB: Math.round(memory(runtime.child.pid).now * 10) / 10 };
    },
    counters: ['connections.evictedUnauthenticated', 'connections.refusedTooMany'],
  },
  {
    name: 'the runtime\'s stdout is a pipe nobody drains; a function logs 20k lines',
    stdout: 'stalled',
    async run(runtime) {
      const fc = new FCClient({ config: runtime.configPath });
      await fc.invokeFunction({ functionId: 'chatty', payload: JSON.stringify({ lines: 20000 }) });
      while ((await stats(runtime)).log.functionLines < 20000) { /* the runtime is still reading */ }
      return {};
    },
    counters: ['log.functionLines', 'log.droppedLines'],
  },
];

function pick(object, dotted) {
  return dotted.split('.').reduce((value, key) => (value === undefined ? undefined : value[key]), object);
}

async function runScenario(scenario) {
  const configPath = writeConfig();
  const runtime = await startRuntime(configPath, { stdout: scenario.stdout, nofile: scenario.nofile });
  const stopGoodClient = await goodClient(configPath);
  const outcome = await scenario.run(runtime);
  const good = await stopGoodClient();
  const counted = await stats(runtime);
  const peak = memory(runtime.child.pid).peak;
  const stopMs = await stopRuntime(runtime);
  return {
    scenario: scenario.name,
    runtimePeakMiB: Math.round(peak * 10) / 10,
    goodWorstMs: Math.round(good.worst * 10) / 10,
    goodFailures: good.failures,
    stopMs: Math.round(stopMs),
    counters: Object.fromEntries(scenario.counters.map((name) => [name, pick(counted, name)])),
    outcome,
  };
}

/** `maxConcurrency` 2^61: refused at load, in one line, with no socket left behind. */
function hugeConfigNumber() {
  const configPath = writeConfig();
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  config.functions[0].maxConcurrency = 2 ** 61;
  fs.writeFileSync(configPath, JSON.stringify(config));
  const [binary, args] = runtimeCommand(configPath);
  let stderr = '';
  try {
    execFileSync(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    stderr = err.stderr.toString().trim();
  }
  return { stderr, socketLeft: fs.existsSync(path.join(path.dirname(configPath), 'state', 'edgefc.sock')) };
}

function table(results, huge) {
  const lines = [
    '| scenario (default config) | runtime peak RSS | good client worst | SIGTERM to exit | counters | peer saw |',
    '|---|---|---|---|---|---|',
  ];
  for (const result of results) {
    const counters = Object.entries(result.counters).map(([name, value]) => `${name} ${value}`).join(', ');
    const failures = result.goodFailures ? ` (${result.goodFailures} failed)` : '';
    lines.push(`| ${result.scenario} | ${result.runtimePeakMiB} MiB | ${result.goodWorstMs} ms${failures} | ${result.stopMs} ms | ${counters} | ${JSON.stringify(result.outcome).replace(/\|/g, '/')} |`);
  }
  lines.push(`| \`maxConcurrency\` 2^61 in the config | – | – | – | – | \`${huge.stderr.replace(/^.*?ERR_CONFIG: [^:]*: /, '')}\`; socket left behind: ${huge.socketLeft} |`);
  return lines.join('\n');
}

async function main() {
  execFileSync('cargo', ['build', '--release', '-q', '-p', 'edgefc-core', '--example', 'hostile_peer'], { cwd: ROOT, stdio: 'inherit' });
  const only = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
  const results = [];
  for (const scenario of SCENARIOS.filter((s) => !only || s.name.includes(only))) {
    process.stderr.write(`stress: ${scenario.name}\n`);
    results.push(await runScenario(scenario));
  }
  const huge = hugeConfigNumber();
  const markdown = table(results, huge);
  console.log(markdown);
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'stress.md'), `${markdown}\n`);
  fs.writeFileSync(path.join(dir, 'stress.json'), `${JSON.stringify({ date: new Date().toISOString(), results, huge }, null, 2)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
