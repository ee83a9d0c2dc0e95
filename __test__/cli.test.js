'use strict';

// The README's demo, and the `edgefc` command line as a user runs it.

const assert = require('assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const { after, before, describe, it } = require('node:test');

const {
  ROOT, fixture, runCli, startRuntimeProcess, track, writeConfig,
} = require('./helpers');

describe('the seed demo (npm run demo)', () => {
  it('runs Invoker, which calls helloworld of service EdgeFC Sync', { timeout: 30000 }, async () => {
    const output = await new Promise((resolve) => {
      const child = track(spawn(process.execPath, [path.join(ROOT, 'examples', 'demo.js')], { stdio: ['ignore', 'pipe', 'pipe'] }));
      let text = '';
      child.stdout.on('data', (chunk) => { text += chunk; });
      child.stderr.on('data', (chunk) => { text += chunk; });
      child.on('close', (code) => resolve({ code, text }));
    });
    assert.equal(output.code, 0, output.text);
    assert.match(output.text, /^\[helloworld\] String message from Invoker\.$/m);
    assert.match(output.text, /^\[helloworld\] {3}invokerContext: { custom: { data: 'Custom context from Invoker' } },$/m);
    assert.match(output.text, /^\[helloworld\] Custom context from Invoker$/m);
    assert.match(output.text, /^\[Invoker\] Message from helloworld$/m);
    assert.doesNotMatch(output.text, /\bError:|ERR_/);
  });
});

describe('edgefc invoke', () => {
  let runtime;

  before(async () => {
    runtime = await startRuntimeProcess({ functions: [fixture('echo'), fixture('context'), fixture('handled')] });
  });

  after(async () => {
    await runtime.stop();
  });

  it('prints the result payload and exits 0', async () => {
    const result = await runCli(['invoke', 'Test/echo', '--payload', 'hi there', '--config', runtime.configPath]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'hi there');
  });

  it('sends a file as a binary payload, byte-exact', async () => {
    const file = path.join(path.dirname(runtime.configPath), 'payload.bin');
    const bytes = Buffer.from([0, 255, 1, 254, 10, 13]);
    fs.writeFileSync(file, bytes);
    const result = await runCli(['invoke', 'acs:fc:::service:Test:function:echo', '--payload-file', file, '--config', runtime.configPath]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.equals(bytes));
  });

  it('passes --context as the invoker context', async () => {
    const result = await runCli(['invoke', 'Test/context', '--context', '{"custom":{"n":1}}', '--config', runtime.configPath]);
    assert.deepEqual(JSON.parse(result.stdout).context.invokerContext, { custom: { n: 1 } });
  });

  it('prints the invocation id of an --async call', async () => {
    const result = await runCli(['invoke', 'Test/echo', '--async', '--config', runtime.configPath]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.toString(), /^[0-9a-f-]{36}\n$/);
  });

  it('prints a function error and exits 3', async () => {
    const result = await runCli(['invoke', 'Test/handled', '--config', runtime.configPath]);
    assert.equal(result.code, 3);
    assert.match(result.stderr, /function error \(Handled\): .*the device is out of range/);
  });

  it('prints the error code of a failed call and exits 1', async () => {
    const result = await runCli(['invoke', 'Test/missing', '--config', runtime.configPath]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ERR_FUNCTION_NOT_FOUND/);
  });

  it('explains bad usage and exits 2', async () => {
    for (const args of [['invoke', 'Test/echo'], ['frobnicate', '--config', runtime.configPath], ['invoke', '--config', runtime.configPath],
      ['invoke', 'Test/echo', '--context', '{not json', '--config', runtime.configPath]]) {
      const result = await runCli(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /Usage:/);
    }
  });
});

describe('edgefc publish and subscribe', () => {
  it('prints each message published on a matching topic until interrupted', { timeout: 30000 }, async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo')] });
    try {
      const subscriber = track(spawn(process.execPath, [path.join(ROOT, 'bin', 'edgefc.js'), 'subscribe', '/cli/+', '--config', runtime.configPath],
        { stdio: ['ignore', 'pipe', 'pipe'] }));
      let stdout = '';
      subscriber.stdout.on('data', (chunk) => { stdout += chunk; });
      const exited = new Promise((resolve) => subscriber.on('exit', resolve));
      await new Promise((resolve) => {
        let stderr = '';
        subscriber.stderr.on('data', (chunk) => {
          stderr += chunk;
          if (stderr.includes('subscribed to /cli/+')) resolve();
        });
      });
      const published = await runCli(['publish', '/cli/text', '--payload', 'hello there', '--config', runtime.configPath]);
      assert.equal(published.code, 0, published.stderr);
      assert.match(published.stdout.toString(), /^[0-9a-f-]{36}\n$/);
      await runCli(['publish', '/elsewhere', '--payload', 'not shown', '--config', runtime.configPath]);
      const file = path.join(path.dirname(runtime.configPath), 'bytes.bin');
      fs.writeFileSync(file, Buffer.from([0, 1, 255]));
      await runCli(['publish', '/cli/binary', '--payload-file', file, '--config', runtime.configPath]);
      await new Promise((resolve) => {
        const check = () => (stdout.includes('/cli/binary') ? resolve() : subscriber.stdout.once('data', check));
        check();
      });
      subscriber.kill('SIGINT');
      assert.equal(await exited, 0);
      assert.equal(stdout, '/cli/text local hello there\n/cli/binary local base64:AAH/\n');
      const stats = await runCli(['stats', '--config', runtime.configPath]);
      const counted = JSON.parse(stats.stdout);
      assert.deepEqual(
        {
          published: counted.published,
          delivered: counted.delivered,
          droppedNoRoute: counted.droppedNoRoute,
          refusedQueueFull: counted.refusedQueueFull,
          droppedSlowSubscriber: counted.droppedSlowSubscriber,
          subscriptions: counted.subscriptions,
        },
        { published: 3, delivered: 0, droppedNoRoute: 3, refusedQueueFull: 0, droppedSlowSubscriber: 0, subscriptions: 0 },
      );
      assert.equal(counted.connections.max, 1000);
      assert.equal(counted.queues.functions.length, 1);
    } finally {
      await runtime.stop();
    }
  });

  it('refuses to publish to a wildcard topic', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo')] });
    const result = await runCli(['publish', '/a/#', '--payload', 'x', '--config', runtime.configPath]);
    await runtime.stop();
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ERR_INVALID_PARAMS/);
  });
});

describe('edgefc run', () => {
  it('keeps its state owner-only, and on SIGTERM removes its socket but keeps its admin token for clients to come back with', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo')] });
    const stateDir = path.join(path.dirname(runtime.configPath), 'state');
    assert.equal(fs.statSync(stateDir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(stateDir, 'edgefc.sock')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(stateDir, 'admin.token')).mode & 0o777, 0o600);
    assert.equal((await runCli(['invoke', 'Test/echo', '--payload', 'up', '--config', runtime.configPath])).code, 0);
    const { code } = await runtime.stop();
    assert.equal(code, 0);
    assert.match(runtime.output(), /edgefc runtime stopped/);
    assert.equal(fs.existsSync(path.join(stateDir, 'edgefc.sock')), false);
    assert.equal(fs.statSync(path.join(stateDir, 'admin.token')).mode & 0o777, 0o600);
  });

  it('prefixes each line a function prints with its name', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('context')] });
    await runCli(['invoke', 'Test/context', '--payload', 'x', '--config', runtime.configPath]);
    await runtime.stop();
    assert.doesNotMatch(runtime.output(), /^\[context\]/m, 'context prints nothing');
    const loud = await startRuntimeProcess({ functions: [{ ...fixture('echo'), codeDir: path.join(ROOT, 'examples', 'seed', 'helloworld'), functionName: 'hello' }] });
    await runCli(['invoke', 'Test/hello', '--payload', 'printed line', '--context', '{"custom":{"data":"d"}}', '--config', loud.configPath]);
    await loud.stop();
    assert.match(loud.output(), /^\[hello\] printed line$/m);
    assert.match(loud.output(), /^\[hello\] -- hello world$/m);
  });

  it('writes JSON lines with EDGEFC_LOG_FORMAT=json: a function\'s with its id, worker pid and invocation; EDGEFC_LOG selects by part', async () => {
    const hello = { ...fixture('echo'), codeDir: path.join(ROOT, 'examples', 'seed', 'helloworld'), functionName: 'hello', functionId: 'hello-id' };
    const runtime = await startRuntimeProcess(
      { functions: [hello] },
      { env: { EDGEFC_LOG_FORMAT: 'json', EDGEFC_LOG: 'info,edgefc::host=debug' } },
    );
    const invoked = await runCli(['invoke', 'Test/hello', '--payload', 'printed line', '--context', '{"custom":{"data":"d"}}', '--config', runtime.configPath]);
    assert.equal(invoked.code, 0, invoked.stderr);
    await runtime.stop();
    const lines = runtime.output().split('\n').filter((line) => line !== '');
    const records = lines.map((line) => JSON.parse(line));
    const printed = records.find((record) => record.message === 'printed line');
    assert.ok(printed, runtime.output());
    assert.equal(printed.target, 'edgefc::function');
    assert.equal(printed.level, 'INFO');
    assert.equal(printed.function, 'hello-id');
    assert.equal(printed.stream, 'stdout');
    assert.equal(typeof printed.pid, 'number');
    assert.match(printed.invocation, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // Every line the handler printed in that invocation carries its id, and only the tag was taken off.
    const ofInvocation = records.filter((record) => record.invocation === printed.invocation);
    assert.ok(ofInvocation.some((record) => record.message === '-- hello world'), runtime.output());
    assert.ok(records.every((record) => !String(record.message).includes('\x1e')));
    // edgefc::host=debug: the worker's start and end; the runtime's own lines never carry a payload.
    assert.ok(records.some((record) => record.target === 'edgefc::host' && record.level === 'DEBUG' && /the worker of hello-id started \(pid \d+\)/.test(record.message)), runtime.output());
    assert.ok(records.some((record) => record.target === 'edgefc::runtime' && /listening on/.test(record.message)));
    const own = records.filter((record) => record.target !== 'edgefc::function');
    assert.ok(own.every((record) => !JSON.stringify(record).includes('printed line')));
  });

  it('top --once shows each function\'s last minute', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo'), fixture('throws')] });
    for (const target of ['Test/echo', 'Test/echo', 'Test/throws']) {
      await runCli(['invoke', target, '--payload', 'x', '--config', runtime.configPath]);
    }
    const shown = await runCli(['top', '--once', '--config', runtime.configPath]);
    await runtime.stop();
    assert.equal(shown.code, 0, shown.stderr);
    const screen = shown.stdout.toString();
    const lines = screen.split('\n');
    assert.match(lines[0], /^edgefc \S+ · gateway \S+ · up \d+s · connections \d+\/\d+ · dead letters 0/);
    assert.match(lines[2], /^FUNCTION +CALLS\/S +P50 +P99 +ERRORS +INVOCATIONS/);
    // function, calls/s, p50, p99, errors, invocations, running, queued, async, pid, rss
    assert.match(screen, /^acs:fc:::service:Test:function:echo +[\d.]+ +\S+ +\S+ +0 +2 +0 +0 +0 +\d+ +[\d.]+M$/m);
    assert.match(screen, /^acs:fc:::service:Test:function:throws +[\d.]+ +\S+ +\S+ +1 +1 +0 +0 +0 +\d+ +[\d.]+M$/m);
  });

  it('refuses a second runtime on the same socket', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo')] });
    const second = await runCli(['run', '--config', runtime.configPath]);
    await runtime.stop();
    assert.equal(second.code, 1);
    assert.match(second.stderr, /ERR_CONFIG: .*another edgefc runtime \(pid \d+\) is already listening/);
  });

  it('refuses a second runtime while the first is frozen, and leaves its socket alone', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('echo')] });
    const stateDir = path.join(path.dirname(runtime.configPath), 'state');
    // The runtime process itself (the lock file holds its pid), not the `edgefc run` wrapper.
    const pid = Number(fs.readFileSync(path.join(stateDir, 'edgefc.lock'), 'utf8'));
    process.kill(pid, 'SIGSTOP');
    const second = await runCli(['run', '--config', runtime.configPath]);
    const socketStayed = fs.existsSync(path.join(stateDir, 'edgefc.sock'));
    process.kill(pid, 'SIGCONT');
    await runtime.stop();
    assert.equal(second.code, 1);
    assert.match(second.stderr, /another edgefc runtime \(pid \d+\) is already listening/);
    assert.ok(socketStayed);
  });

  it('reports configuration mistakes with ERR_CONFIG', async () => {
    const cases = [
      [{ functions: [fixture('echo', { codeDir: '/no/such/dir' })] }, /codeDir .* is not a directory/],
      [{ functions: [fixture('echo', { handler: 'nodot' })] }, /handler must look like/],
      [{ functions: [fixture('echo'), fixture('echo')] }, /two functions are both named/],
      [{ functions: [fixture('echo', { timeoutMs: 0 })] }, /timeoutMs must be between 1 and 3600000; got 0/],
      [{ functions: [fixture('echo')], unknownSetting: 1 }, /unknown field `unknownSetting`/],
      [{ functions: [fixture('echo')], stateDir: `/tmp/${'d'.repeat(120)}` }, /longer than 107 bytes/],
    ];
    for (const [config, message] of cases) {
      const result = await runCli(['run', '--config', writeConfig(config)]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /ERR_CONFIG/);
      assert.match(result.stderr, message);
    }
  });
});
