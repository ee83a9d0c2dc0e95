'use strict';

// The bounds a user meets through the CLI and the SDK: function output split
// into bounded lines, a runtime whose stdout nobody reads, and an `edgefc
// subscribe` whose stdout nobody reads. The socket-level bounds are tested
// in crates/edgefc-core/tests/bounds.rs.

const assert = require('assert/strict');
const { spawn } = require('child_process');
const { after, before, describe, it } = require('node:test');

const { FCClient, IoTData } = require('..');
const { RuntimeLink } = require('../lib/core/link');
const {
  CLI, fixture, startRuntimeProcess, track, writeConfig,
} = require('./helpers');

const stats = (configPath) => new RuntimeLink({ config: configPath }).call((session) => session.query('stats'));

/** Asks for the runtime's stats until `ready(stats)` holds. */
async function statsWhen(configPath, ready) {
  for (;;) {
    const counted = await stats(configPath);
    if (ready(counted)) return counted;
  }
}

describe('function output', () => {
  let runtime;

  before(async () => {
    runtime = await startRuntimeProcess({ functions: [fixture('chatty', { functionId: 'chatty' })], log: { maxLineBytes: 4096 } });
  });

  after(async () => {
    await runtime.stop();
  });

  it('is read in bounded lines: a longer one is split, each piece marked', async () => {
    const fc = new FCClient({ config: runtime.configPath });
    const result = (await fc.invokeFunction({ functionId: 'chatty', payload: JSON.stringify({ unbroken: 10000 }) })).payload;
    assert.equal(result, 'done');
    // The output is forwarded beside the reply: wait until the runtime has read it all.
    await statsWhen(runtime.configPath, (counted) => counted.log.splitLines === 2);
    const lastPiece = `[chatty] ${'x'.repeat(10000 - 8192)}\n`;
    while (!runtime.output().includes(lastPiece)) {
      await stats(runtime.configPath);
    }
    const pieces = runtime.output().split('\n').filter((line) => line.startsWith('[chatty] xxx'));
    assert.deepEqual(pieces.map((line) => line.length), [9 + 4096 + 17, 9 + 4096 + 17, 9 + 10000 - 8192]);
    assert.ok(pieces[0].endsWith(' [line continues]'));
  });
});

/** Starts `edgefc run`, and stops reading its stdout once it is listening. */
async function startWithStalledStdout(config) {
  const configPath = writeConfig(config);
  const child = track(spawn(process.execPath, [CLI, 'run', '--config', configPath], { stdio: ['ignore', 'pipe', 'ignore'] }));
  const exited = new Promise((resolve) => { child.on('exit', (code, signal) => resolve({ code, signal })); });
  await new Promise((resolve) => {
    let output = '';
    const onData = (chunk) => {
      output += chunk;
      if (output.includes('listening on')) {
        child.stdout.off('data', onData);
        child.stdout.pause();
        resolve();
      }
    };
    child.stdout.on('data', onData);
  });
  return { configPath, child, exited };
}

describe('a runtime whose stdout nobody reads', () => {
  it('drops and counts its log lines, keeps answering, and stops on SIGTERM', async () => {
    const runtime = await startWithStalledStdout({ functions: [fixture('chatty', { functionId: 'chatty' })] });
    const fc = new FCClient({ config: runtime.configPath });
    for (let round = 0; round < 10; round += 1) {
      assert.equal((await fc.invokeFunction({ functionId: 'chatty', payload: JSON.stringify({ lines: 2000 }) })).payload, 'done');
    }
    await statsWhen(runtime.configPath, (counted) => counted.log.droppedLines > 0);
    assert.equal((await fc.invokeFunction({ functionId: 'chatty', payload: '{}' })).payload, 'done');
    runtime.child.kill('SIGTERM');
    assert.deepEqual(await runtime.exited, { code: 0, signal: null });
  });
});

describe('edgefc subscribe whose stdout nobody reads', () => {
  let runtime;

  before(async () => {
    runtime = await startRuntimeProcess({ functions: [fixture('echo', { functionId: 'echo' })] });
  });

  after(async () => {
    await runtime.stop();
  });

  it('takes no more than it can write, and says how many messages it dropped', async () => {
    const subscriber = track(spawn(process.execPath, [CLI, 'subscribe', '#', '--config', runtime.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
    let stderr = '';
    await new Promise((resolve) => {
      subscriber.stderr.on('data', (chunk) => {
        stderr += chunk;
        if (stderr.includes('subscribed to')) resolve();
      });
    });
    subscriber.stdout.pause();
    const iot = new IoTData({ config: runtime.configPath });
    const payload = Buffer.alloc(1024, 7);
    while (!/\d+ messages dropped so far: stdout is not keeping up/.test(stderr)) {
      await Promise.all(Array.from({ length: 256 }, () => iot.publish({ topic: '/load', payload })));
    }
    const fc = new FCClient({ config: runtime.configPath });
    assert.equal((await fc.invokeFunction({ functionId: 'echo', payload: 'still answered' })).payload, 'still answered');
    subscriber.kill('SIGTERM');
  });
});
