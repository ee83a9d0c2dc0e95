'use strict';

// Nothing accepted is lost: Async invocations answered Accepted run at
// least once, whatever happens to the runtime (SIGTERM, kill -9), and
// clients of every kind carry on once it is back.

const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { describe, it } = require('node:test');

const { FCClient, startRuntime } = require('..');
const { RuntimeLink } = require('../lib/core/link');
const {
  fixture, runCli, runRuntimeProcess, startRuntimeProcess, writeConfig,
} = require('./helpers');

/** A small seeded generator (mulberry32), so that a failing run can be replayed with its seed. */
function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function newLedger() {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'efc-ledger-')), 'ledger');
}

/** The ledger's lines as {entry, invocationId, attempt}. */
function readLedger(ledger) {
  if (!fs.existsSync(ledger)) return [];
  return fs.readFileSync(ledger, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [entry, invocationId, attempt] = line.split(' ');
    return { entry, invocationId, attempt: Number(attempt) };
  });
}

/** Resolves once no Async invocation is pending in the runtime of `configPath`. */
async function drained(configPath) {
  const link = new RuntimeLink({ config: configPath });
  for (;;) {
    const stats = await link.call((session) => session.query('stats'));
    if (stats.queues.functions.every((queue) => queue.asyncPending === 0)) return stats;
    await new Promise((resolve) => { setImmediate(resolve); });
  }
}

const ledgerFunction = (overrides) => fixture('ledger', { functionId: 'ledger', ...overrides });

describe('Async invocations across a kill -9', () => {
  it('runs every accepted invocation at least once while the runtime is killed at seeded points', { timeout: 600000 }, async (t) => {
    const total = 10000;
    const inFlight = 64;
    const seed = Number(process.env.EDGEFC_CRASH_SEED) || (Date.now() % 1000000);
    const random = seeded(seed);
    const killAt = Array.from({ length: 5 }, () => Math.floor(random() * total)).sort((a, b) => a - b);
    const ledger = newLedger();
    let runtime = await startRuntimeProcess({ functions: [ledgerFunction({ maxConcurrency: 64 })] });
    const { configPath } = runtime;
    const fc = new FCClient({ config: configPath, connectTimeoutMs: 10000 });
    const acked = new Set();
    const todo = Array.from({ length: total }, (_, seq) => total - 1 - seq);
    let restarting = null;
    const crash = async () => {
      process.kill(runtime.pid(), 'SIGKILL');
      await runtime.exited;
      runtime = await runRuntimeProcess(configPath);
    };
    await new Promise((resolve, reject) => {
      let running = 0;
      const pump = () => {
        while (running < inFlight && todo.length > 0) {
          const seq = todo.pop();
          running += 1;
          // Each run takes 20 ms: accepts outpace runs, so there is a backlog for each kill to hit.
          fc.invokeFunction({ functionId: 'ledger', invocationType: 'Async', payload: `${ledger} slow${seq}` }).then(() => {
            acked.add(seq);
            if (killAt.length > 0 && acked.size >= killAt[0] && restarting === null) {
              killAt.shift();
              restarting = crash().finally(() => { restarting = null; });
            }
          }, () => {
            // Not acknowledged (the runtime died under it): the caller sends it again.
            todo.push(seq);
          }).finally(() => {
            running -= 1;
            if (acked.size === total) resolve();
            else if (restarting) restarting.then(pump, reject);
            else pump();
          });
        }
      };
      pump();
    });
    assert.deepEqual(killAt, [], 'every kill happened');
    await drained(configPath);
    await runtime.stop();
    const lines = readLedger(ledger);
    const ran = new Set(lines.map((line) => Number(line.entry.slice(4))));
    const lost = [...acked].filter((seq) => !ran.has(seq));
    t.diagnostic(`seed ${seed}: ${total} accepted, ${lines.length} runs, ${lines.length - ran.size} duplicates, ${lost.length} lost`);
    assert.deepEqual(lost, [], `seed ${seed}: accepted invocations never ran`);
    assert.ok([...ran].every((seq) => seq >= 0 && seq < total), 'nothing ran that was not sent');
  });
});

describe('Async invocations across a graceful stop', () => {
  it('keeps what is still pending at SIGTERM and runs it after the next start, with the same ids', { timeout: 120000 }, async () => {
    const ledger = newLedger();
    let runtime = await startRuntimeProcess({ functions: [ledgerFunction({ maxConcurrency: 1 })] });
    const fc = new FCClient({ config: runtime.configPath });
    const ids = [];
    for (let seq = 0; seq < 200; seq += 1) {
      ids.push(await fc.invokeFunction({ functionId: 'ledger', invocationType: 'Async', payload: `${ledger} slow${seq}` }));
    }
    assert.equal((await runtime.stop()).code, 0);
    const ranBefore = readLedger(ledger).length;
    assert.ok(ranBefore < 200, `${200 - ranBefore} were still pending at the stop`);
    runtime = await runRuntimeProcess(runtime.configPath);
    await drained(runtime.configPath);
    await runtime.stop();
    const lines = readLedger(ledger);
    assert.deepEqual([...new Set(lines.map((line) => Number(line.entry.slice(4))))].sort((a, b) => a - b), ids.map((_, seq) => seq));
    assert.deepEqual(new Set(lines.map((line) => line.invocationId)), new Set(ids), 'the ids they were accepted with');
  });

  it('lets Sync calls in flight at SIGTERM finish, and exits 0', async () => {
    const runtime = await startRuntimeProcess({ shutdownGraceMs: 10000, functions: [fixture('slow', { functionId: 'slow' })] });
    const fc = new FCClient({ config: runtime.configPath });
    const calls = Array.from({ length: 20 }, () => fc.invokeFunction({ functionId: 'slow', payload: '300' }));
    // Every call has reached the worker once each is running there.
    const link = new RuntimeLink({ config: runtime.configPath });
    while ((await link.call((session) => session.query('stats'))).queues.functions[0].running < 20) {
      await new Promise((resolve) => { setImmediate(resolve); });
    }
    runtime.child.kill('SIGTERM');
    const results = await Promise.all(calls);
    assert.deepEqual(results.map((result) => result.payload), Array(20).fill('slept 300'));
    assert.equal((await runtime.exited).code, 0);
  });
});

describe('clients across a restart of the runtime', () => {
  it('carry on in every mode: {config}, {socketPath, token} and the environment', async () => {
    let runtime = await startRuntimeProcess({ functions: [fixture('echo', { functionId: 'echo' })] });
    const stateDir = path.join(path.dirname(runtime.configPath), 'state');
    const socketPath = path.join(stateDir, 'edgefc.sock');
    const token = fs.readFileSync(path.join(stateDir, 'admin.token'), 'utf8');
    const saved = { EDGEFC_SOCKET: process.env.EDGEFC_SOCKET, EDGEFC_TOKEN: process.env.EDGEFC_TOKEN };
    Object.assign(process.env, { EDGEFC_SOCKET: socketPath, EDGEFC_TOKEN: token });
    try {
      const clients = {
        config: new FCClient({ config: runtime.configPath }),
        socket: new FCClient({ socketPath, token }),
        environment: new FCClient(),
      };
      const callEach = () => Promise.all(Object.entries(clients).map(async ([mode, fc]) => [mode,
        (await fc.invokeFunction({ functionId: 'echo', payload: mode })).payload]));
      assert.deepEqual(Object.fromEntries(await callEach()), { config: 'config', socket: 'socket', environment: 'environment' });
      await runtime.stop();
      runtime = await runRuntimeProcess(runtime.configPath);
      assert.deepEqual(Object.fromEntries(await callEach()), { config: 'config', socket: 'socket', environment: 'environment' });
    } finally {
      Object.assign(process.env, saved);
      for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name];
      await runtime.stop();
    }
  });
});

describe('an embedded runtime\'s admin token', () => {
  it('follows edgefc token rotate', async () => {
    const configPath = writeConfig({ functions: [fixture('echo')] });
    const runtime = await startRuntime(configPath);
    try {
      const before = runtime.adminToken;
      const rotated = await runCli(['token', 'rotate', '--config', configPath]);
      assert.equal(rotated.code, 0, rotated.stderr);
      const onFile = fs.readFileSync(path.join(path.dirname(configPath), 'state', 'admin.token'), 'utf8').trim();
      assert.notEqual(onFile, before);
      assert.equal(runtime.adminToken, onFile);
      // What the runtime hands out after the rotation works.
      const result = await runtime.client().invokeFunction({ functionId: 'acs:fc:::service:Test:function:echo', payload: 'x' });
      assert.equal(result.functionError, undefined);
      assert.equal((await runtime.stats()).store.deadLetters, 0);
    } finally {
      await runtime.stop();
    }
  });
});

describe('edgefc dlq', () => {
  it('lists, replays and purges the invocations that failed their last attempt', async () => {
    const ledger = newLedger();
    const runtime = await startRuntimeProcess({ functions: [ledgerFunction({ retry: { maxAttempts: 2, backoffMs: 10 } })] });
    const fc = new FCClient({ config: runtime.configPath });
    const id = await fc.invokeFunction({ functionId: 'ledger', invocationType: 'Async', payload: `${ledger} fail-1` });
    const config = ['--config', runtime.configPath];
    let listed;
    do {
      listed = JSON.parse((await runCli(['dlq', 'list', ...config])).stdout);
    } while (listed.length === 0);
    assert.equal(listed[0].invocationId, id);
    assert.equal(listed[0].attempts, 2);
    assert.deepEqual(readLedger(ledger).map((line) => [line.invocationId, line.attempt]), [[id, 1], [id, 2]]);
    const replayed = await runCli(['dlq', 'replay', '--all', ...config]);
    assert.deepEqual(JSON.parse(replayed.stdout), { replayed: 1, skipped: 0 });
    while (readLedger(ledger).length < 4 || JSON.parse((await runCli(['dlq', 'list', ...config])).stdout).length === 0) {
      await new Promise((resolve) => { setImmediate(resolve); });
    }
    assert.deepEqual(JSON.parse((await runCli(['dlq', 'purge', id, ...config])).stdout), { purged: 1 });
    assert.deepEqual(JSON.parse((await runCli(['dlq', 'list', ...config])).stdout), []);
    await runtime.stop();
  });
});
