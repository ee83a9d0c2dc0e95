'use strict';

// FCClient.invokeFunction against a real runtime (`edgefc run`) hosting real
// Node worker processes.

const assert = require('assert/strict');
const crypto = require('crypto');
const net = require('net');
const os = require('os');
const path = require('path');
const fs = require('fs');
const v8 = require('v8');
const vm = require('vm');
const { Worker } = require('worker_threads');
const { after, before, describe, it } = require('node:test');

const { FCClient, EdgeFCError } = require('..');
const { fixture, startRuntimeProcess } = require('./helpers');

const MAX_PAYLOAD = 6 * 1024 * 1024;
const ARN = (fn) => `acs:fc:::service:Test:function:${fn}`;

describe('invokeFunction through a running runtime', () => {
  let runtime;
  let fc;

  before(async () => {
    runtime = await startRuntimeProcess({
      functions: [
        fixture('echo', { functionId: 'echo-id' }),
        fixture('context'),
        fixture('handled'),
        fixture('throws'),
        fixture('rejects'),
        fixture('asyncvalue'),
        fixture('slow', { timeoutMs: 500 }),
        fixture('exit'),
        fixture('twice'),
        fixture('recorder'),
        fixture('broken'),
      ],
    });
    fc = new FCClient({ config: runtime.configPath });
  });

  after(async () => {
    const { code } = await runtime.stop();
    assert.equal(code, 0, runtime.output());
  });

  const sync = (params) => fc.invokeFunction({ serviceName: 'Test', ...params });

  it('answers a Sync call through the callback with {functionError, statusCode, payload}', async () => {
    const data = await new Promise((resolve, reject) => {
      fc.invokeFunction({ serviceName: 'Test', functionName: 'echo', payload: 'hello' }, (err, result) => {
        if (err) reject(err); else resolve(result);
      });
    });
    assert.deepEqual(data, { functionError: undefined, statusCode: 200, payload: 'hello' });
  });

  it('finds a function by functionId, by ARN, and by serviceName + functionName', async () => {
    for (const params of [{ functionId: 'echo-id' }, { functionId: ARN('echo') }, { serviceName: 'Test', functionName: 'echo' }]) {
      const data = await fc.invokeFunction({ ...params, invocationType: 'Sync', payload: 'found' });
      assert.equal(data.payload, 'found');
    }
  });

  it('defaults invocationType to Sync when undefined or null', async () => {
    for (const invocationType of [undefined, null]) {
      const data = await sync({ functionName: 'echo', invocationType, payload: 'x' });
      assert.equal(data.payload, 'x');
    }
  });

  it('round-trips strings exactly, keeping them strings', async () => {
    for (const text of ['', 'plain', '中文 ✓ emoji 🚀 and \u0000 nul', 'x'.repeat(100000)]) {
      const data = await sync({ functionName: 'echo', payload: text });
      assert.equal(typeof data.payload, 'string');
      assert.equal(data.payload, text);
    }
  });

  it('round-trips binary payloads byte-exact, keeping them Buffers, from 0 bytes to the maximum', async () => {
    for (const size of [0, 1, 255, 65536, 1024 * 1024 + 7, MAX_PAYLOAD]) {
      const bytes = crypto.randomBytes(size);
      const data = await sync({ functionName: 'echo', payload: bytes });
      assert.ok(Buffer.isBuffer(data.payload), `size ${size} came back as ${typeof data.payload}`);
      assert.ok(bytes.equals(data.payload), `size ${size} differs`);
    }
  });

  it('keeps a large received Buffer intact through later calls and garbage collection', async () => {
    // Large payloads reach JavaScript as Buffers over the bytes as read, freed when collected.
    v8.setFlagsFromString('--expose-gc');
    const collectGarbage = vm.runInNewContext('gc');
    const first = crypto.randomBytes(512 * 1024);
    const kept = (await sync({ functionName: 'echo', payload: first })).payload;
    for (let i = 0; i < 20; i += 1) {
      const other = (await sync({ functionName: 'echo', payload: crypto.randomBytes(256 * 1024) })).payload;
      other.fill(0);
      collectGarbage();
    }
    assert.ok(kept.equals(first));
  });

  it('works from worker threads, each with its own connection, and outlives them', async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const { FCClient } = require(workerData.root);
      const fc = new FCClient({ config: workerData.configPath });
      (async () => {
        const answers = [];
        for (let i = 0; i < 20; i += 1) {
          const data = await fc.invokeFunction({ serviceName: 'Test', functionName: 'echo', payload: 'thread ' + i });
          answers.push(data.payload);
        }
        const big = Buffer.alloc(300 * 1024, 3);
        const echoed = (await fc.invokeFunction({ serviceName: 'Test', functionName: 'echo', payload: big })).payload;
        parentPort.postMessage({ answers, bigIntact: big.equals(echoed) });
      })();`;
    const runThread = () => new Promise((resolve, reject) => {
      const thread = new Worker(code, { eval: true, workerData: { root: path.join(__dirname, '..'), configPath: runtime.configPath } });
      let message = null;
      thread.on('message', (value) => { message = value; });
      thread.on('error', reject);
      thread.on('exit', (exitCode) => resolve({ exitCode, message }));
    });
    const results = await Promise.all([runThread(), runThread()]);
    for (const { exitCode, message } of results) {
      assert.equal(exitCode, 0);
      assert.deepEqual(message.answers, Array.from({ length: 20 }, (_, i) => `thread ${i}`));
      assert.equal(message.bigIntact, true);
    }
    // The threads' connections ended with them; this thread's still works.
    assert.equal((await sync({ functionName: 'echo', payload: 'after threads' })).payload, 'after threads');
  });

  it('accepts a Uint8Array payload as binary', async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 251]);
    const data = await sync({ functionName: 'echo', payload: bytes.subarray(1, 4) });
    assert.deepEqual([...data.payload], [1, 2, 250]);
  });

  it('sends an empty string when no payload is given', async () => {
    const data = await sync({ functionName: 'echo' });
    assert.equal(data.payload, '');
  });

  it('gives the handler the event as sent and the decoded context', async () => {
    const ctx = { custom: { data: 'Custom context from Invoker' } };
    const invokerContext = Buffer.from(JSON.stringify(ctx)).toString('base64');
    const seen = JSON.parse((await sync({ functionName: 'context', invokerContext, payload: 'text' })).payload);
    assert.equal(seen.event, 'text');
    assert.equal(seen.eventIsBuffer, false);
    assert.deepEqual(seen.context.invokerContext, ctx);
    assert.equal(seen.context.functionId, ARN('context'));
    assert.equal(seen.context.serviceName, 'Test');
    assert.equal(seen.context.functionName, 'context');
    assert.match(seen.context.requestId, /^[0-9a-f-]{36}$/);

    const binary = JSON.parse((await sync({ functionName: 'context', payload: Buffer.from([1, 2]) })).payload);
    assert.equal(binary.eventIsBuffer, true);
    assert.deepEqual(binary.context.invokerContext, {});
  });

  it('gives every invocation its own requestId', async () => {
    const ids = new Set();
    for (let i = 0; i < 5; i += 1) {
      ids.add(JSON.parse((await sync({ functionName: 'context' })).payload).context.requestId);
    }
    assert.equal(ids.size, 5);
  });

  it('reports callback(err) as a Handled function error', async () => {
    const data = await sync({ functionName: 'handled' });
    assert.equal(data.functionError, 'Handled');
    assert.equal(data.statusCode, 200);
    const body = JSON.parse(data.payload);
    assert.equal(body.errorMessage, 'the device is out of range');
    assert.equal(body.errorType, 'RangeError');

    const plain = JSON.parse((await sync({ functionName: 'handled', payload: 'string' })).payload);
    assert.equal(plain.errorMessage, 'a plain string error');
  });

  it('reports a throw and a rejected Promise as Unhandled', async () => {
    const thrown = await sync({ functionName: 'throws' });
    assert.equal(thrown.functionError, 'Unhandled');
    assert.equal(JSON.parse(thrown.payload).errorMessage, 'thrown by the handler');

    const rejected = await sync({ functionName: 'rejects', payload: 'reason' });
    assert.equal(rejected.functionError, 'Unhandled');
    assert.deepEqual(
      [JSON.parse(rejected.payload).errorType, JSON.parse(rejected.payload).errorMessage],
      ['TypeError', 'rejected with reason'],
    );
  });

  it('completes a call with the value an async handler resolves', async () => {
    const data = await sync({ functionName: 'asyncvalue', payload: 'ab' });
    assert.equal(data.functionError, undefined);
    assert.equal(JSON.parse(data.payload).doubled, 'abab');
  });

  it('completes a call whose result serializes to nothing with an empty payload', async () => {
    const data = await sync({ functionName: 'asyncvalue', payload: 'function' });
    assert.deepEqual([data.functionError, data.payload], [undefined, '']);
  });

  it('refuses strings longer than the wire carries instead of hanging', async () => {
    await assert.rejects(sync({ functionName: 'echo', invokerContext: 'a'.repeat(70000) }), { code: 'ERR_INVALID_PARAMS' });
    await assert.rejects(fc.invokeFunction({ functionId: 'z'.repeat(65530) }), { code: 'ERR_FUNCTION_NOT_FOUND' });
  });

  it('ignores a second callback call', async () => {
    const data = await sync({ functionName: 'twice' });
    assert.equal(data.payload, 'first');
    assert.equal((await sync({ functionName: 'twice' })).payload, 'first');
  });

  it('explains a handler that cannot be loaded', async () => {
    const data = await sync({ functionName: 'broken' });
    assert.equal(data.functionError, 'Unhandled');
    const body = JSON.parse(data.payload);
    assert.equal(body.errorType, 'ImportModuleError');
    assert.match(body.errorMessage, /does not export a function named "handler"/);
  });

  it('fails a call that runs past timeoutMs and restarts that worker', async () => {
    const before = (await sync({ functionName: 'slow', payload: 'pid' })).payload;
    const data = await sync({ functionName: 'slow', payload: 'spin' });
    assert.equal(data.functionError, 'Unhandled');
    const body = JSON.parse(data.payload);
    assert.equal(body.errorType, 'TimeoutError');
    assert.match(body.errorMessage, /timed out after 500 ms/);
    const afterPid = (await sync({ functionName: 'slow', payload: 'pid' })).payload;
    assert.notEqual(afterPid, before, 'a new worker process answers');
    assert.equal((await sync({ functionName: 'slow', payload: '10' })).payload, 'slept 10');
  });

  it('fails the call of a handler that calls process.exit, and the next call works', async () => {
    const first = (await sync({ functionName: 'exit', payload: 'alive' })).payload;
    const data = await sync({ functionName: 'exit', payload: 'exit' });
    assert.equal(data.functionError, 'Unhandled');
    assert.equal(JSON.parse(data.payload).errorType, 'WorkerExited');
    const next = (await sync({ functionName: 'exit', payload: 'alive' })).payload;
    assert.match(next, /^alive in \d+$/);
    assert.notEqual(next, first);
  });

  it('runs Async invocations and answers with their invocation id', async () => {
    const id = await fc.invokeFunction({ serviceName: 'Test', functionName: 'recorder', invocationType: 'Async', payload: 'job-1' });
    assert.match(id, /^[0-9a-f-]{36}$/);
    const callbackId = await new Promise((resolve, reject) => {
      fc.invokeFunction({ functionId: ARN('recorder'), invocationType: 'Async', payload: 'job-2' }, (err, data) => {
        if (err) reject(err); else resolve(data);
      });
    });
    assert.notEqual(callbackId, id);
    assert.equal((await sync({ functionName: 'recorder', payload: 'wait:job-1' })).payload, 'recorded job-1');
    assert.equal((await sync({ functionName: 'recorder', payload: 'wait:job-2' })).payload, 'recorded job-2');
  });

  it('fails with ERR_FUNCTION_NOT_FOUND for an unknown function, Sync or Async', async () => {
    for (const params of [{ functionId: 'nope' }, { serviceName: 'Test', functionName: 'nope', invocationType: 'Async' }]) {
      await assert.rejects(fc.invokeFunction(params), (err) => {
        assert.ok(err instanceof EdgeFCError);
        assert.equal(err.code, 'ERR_FUNCTION_NOT_FOUND');
        assert.match(err.message, /does not exist/);
        return true;
      });
    }
  });

  it('rejects an oversized payload with ERR_PAYLOAD_TOO_LARGE and harms nothing else', async () => {
    const inFlight = sync({ functionName: 'slow', payload: '50' });
    await assert.rejects(sync({ functionName: 'echo', payload: Buffer.alloc(MAX_PAYLOAD + 1) }), { code: 'ERR_PAYLOAD_TOO_LARGE' });
    await assert.rejects(sync({ functionName: 'echo', payload: 'é'.repeat(MAX_PAYLOAD / 2 + 1) }), { code: 'ERR_PAYLOAD_TOO_LARGE' });
    assert.equal((await inFlight).payload, 'slept 50');
    assert.equal((await sync({ functionName: 'echo', payload: 'still fine' })).payload, 'still fine');
  });

  it('answers 1,000 concurrent invocations, each with its own payload', async () => {
    const calls = Array.from({ length: 1000 }, (_, i) => sync({ functionName: 'echo', payload: `call-${i}` }));
    const results = await Promise.all(calls);
    results.forEach((data, i) => assert.equal(data.payload, `call-${i}`));
  });

  it('hands over replies arriving together, of every size, each to its own call and none sharing memory', async () => {
    // Small fields are copied through one buffer shared with the addon,
    // large ones lent; 400 replies of up to 20 KB take several batches.
    const sizes = [0, 1, 100, 8191, 8192, 8193, 20000];
    const payloads = Array.from({ length: 400 }, (_, i) => {
      const size = sizes[i % sizes.length];
      return i % 2 === 0 ? crypto.randomBytes(size) : `${i}:`.padEnd(size + 8, String.fromCharCode(0x61 + (i % 26)));
    });
    const results = await Promise.all(payloads.map((payload) => sync({ functionName: 'echo', payload })));
    const copies = results.map((data) => (Buffer.isBuffer(data.payload) ? Buffer.from(data.payload) : data.payload));
    results.forEach((data, i) => {
      assert.equal(Buffer.isBuffer(data.payload), Buffer.isBuffer(payloads[i]), `reply ${i} changed type`);
      assert.deepEqual(data.payload, payloads[i], `reply ${i} differs`);
    });
    await Promise.all(payloads.map(() => sync({ functionName: 'echo', payload: Buffer.alloc(100, 0xee) })));
    results.forEach((data, i) => assert.deepEqual(data.payload, copies[i], `reply ${i} changed after later replies`));
  });

  it('refuses a wrong token with ERR_UNAUTHORIZED', async () => {
    const socketPath = path.join(path.dirname(runtime.configPath), 'state', 'edgefc.sock');
    const intruder = new FCClient({ socketPath, token: 'not-the-token' });
    await assert.rejects(intruder.invokeFunction({ functionId: 'echo-id' }), { code: 'ERR_UNAUTHORIZED' });
  });

  it('finds the runtime from EDGEFC_SOCKET and EDGEFC_TOKEN', async () => {
    const stateDir = path.join(path.dirname(runtime.configPath), 'state');
    process.env.EDGEFC_SOCKET = path.join(stateDir, 'edgefc.sock');
    process.env.EDGEFC_TOKEN = fs.readFileSync(path.join(stateDir, 'admin.token'), 'utf8');
    try {
      const data = await new FCClient().invokeFunction({ functionId: 'echo-id', payload: 'from env' });
      assert.equal(data.payload, 'from env');
    } finally {
      delete process.env.EDGEFC_SOCKET;
      delete process.env.EDGEFC_TOKEN;
    }
  });

  it('gives up waiting after the client timeoutMs with ERR_TIMEOUT', async () => {
    const impatient = new FCClient({ config: runtime.configPath, timeoutMs: 50 });
    await assert.rejects(impatient.invokeFunction({ serviceName: 'Test', functionName: 'slow', payload: '400' }), { code: 'ERR_TIMEOUT' });
  });
});

describe('invokeFunction without a runtime', () => {
  it('fails with ERR_RUNTIME_UNAVAILABLE when no runtime listens', { timeout: 5000 }, async () => {
    const fc = new FCClient({ socketPath: path.join(os.tmpdir(), 'edgefc-no-such.sock'), token: 't' });
    await assert.rejects(fc.invokeFunction({ functionId: 'f' }), { code: 'ERR_RUNTIME_UNAVAILABLE' });
  });

  it('fails with ERR_RUNTIME_UNAVAILABLE when the socket never answers, instead of hanging', { timeout: 5000 }, async () => {
    const socketPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'efc-')), 'mute.sock');
    const mute = net.createServer(() => {}).listen(socketPath);
    await new Promise((resolve) => mute.once('listening', resolve));
    try {
      const fc = new FCClient({ socketPath, token: 't' });
      await assert.rejects(fc.invokeFunction({ functionId: 'f' }), { code: 'ERR_RUNTIME_UNAVAILABLE' });
    } finally {
      mute.close();
    }
  });

  it('refuses a token longer than the wire carries', async () => {
    const fc = new FCClient({ socketPath: path.join(os.tmpdir(), 'edgefc-no-such.sock'), token: 't'.repeat(70000) });
    await assert.rejects(fc.invokeFunction({ functionId: 'f' }), { code: 'ERR_INVALID_PARAMS' });
  });

  it('says how to configure a client when nothing is configured', async () => {
    await assert.rejects(new FCClient().invokeFunction({ functionId: 'f' }), (err) => {
      assert.equal(err.code, 'ERR_RUNTIME_UNAVAILABLE');
      assert.match(err.message, /EDGEFC_SOCKET/);
      return true;
    });
  });
});
