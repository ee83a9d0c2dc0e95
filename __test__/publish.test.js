'use strict';

// IoTData.publish / FCClient.publish and the runtime's message router, with
// long-lived and on-demand functions in real worker processes.

const assert = require('assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { after, before, describe, it } = require('node:test');

const { FCClient, IoTData, EdgeFCError } = require('..');
const { fixture, startRuntimeProcess } = require('./helpers');

describe('publish parameter validation (upstream cases)', () => {
  const iot = new IoTData({ socketPath: '/nonexistent/edgefc.sock', token: 'unused' });
  const cases = [
    ['topic undefined', { topic: undefined, payload: 'p' }, /^Can't find required parameter "topic"\.$/],
    ['topic null', { topic: null, payload: 'p' }, /"topic"/],
    ['topic empty', { topic: '', payload: 'p' }, /"topic"/],
    ['payload undefined', { topic: '/t', payload: undefined }, /^Can't find required parameter "payload"\.$/],
    ['payload null', { topic: '/t', payload: null }, /"payload"/],
    ['payload empty', { topic: '/t', payload: '' }, /"payload"/],
    ['topic not a string', { topic: 7, payload: 'p' }, /"topic" must be a String/],
    ['payload an object', { topic: '/t', payload: { a: 1 } }, /"payload" must be a String or a Buffer/],
  ];
  for (const [name, params, message] of cases) {
    it(`fails through the callback when ${name}`, async () => {
      const err = await new Promise((resolve) => iot.publish(params, resolve));
      assert.ok(err instanceof EdgeFCError);
      assert.equal(err.code, 'ERR_INVALID_PARAMS');
      assert.match(err.message, message);
    });
    it(`FCClient.publish rejects the same when ${name}`, async () => {
      await assert.rejects(new FCClient({ socketPath: '/nonexistent', token: 't' }).publish(params), { code: 'ERR_INVALID_PARAMS' });
    });
  }
});

describe('the message router', () => {
  let runtime;
  let fc;
  let gateDir;

  before(async () => {
    gateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-gate-'));
    runtime = await startRuntimeProcess({
      functions: [
        fixture('heartbeat', { functionId: 'heartbeat', runMode: 'longLived' }),
        fixture('collector', { functionId: 'collector' }),
        fixture('echo', { functionId: 'echo' }),
        fixture('sink', { functionId: 'sink', maxConcurrency: 1, maxQueuedInvocations: 1 }),
      ],
      routes: [
        { source: 'function:heartbeat', topicFilter: '/heartbeat/+', target: 'function:collector' },
        { source: 'any', topicFilter: '/test/#', target: 'function:collector' },
        { source: 'any', topicFilter: '/test/+', target: 'function:collector' },
        { source: 'function:echo', topicFilter: '/heartbeat/#', target: 'function:collector' },
        { source: 'any', topicFilter: '/slow', target: 'function:sink' },
      ],
    });
    fc = new FCClient({ config: runtime.configPath });
  });

  after(async () => {
    // Release whatever the sink still holds, so the runtime stops promptly.
    for (let i = 0; i < 5; i += 1) fs.writeFileSync(path.join(gateDir, `gate-${i}`), '');
    const { code } = await runtime.stop();
    assert.equal(code, 0, runtime.output());
  });

  const collected = async (count) => JSON.parse((await fc.invokeFunction({ functionId: 'collector', payload: `wait:${count}` })).payload);
  const stats = () => new (require('../lib/core/link').RuntimeLink)({ config: runtime.configPath })
    .call((session) => session.query('stats'));

  it('delivers what a long-lived function publishes at start to an on-demand subscriber', async () => {
    const [first] = await collected(1);
    assert.match(first.event, /^started \d+$/);
    assert.deepEqual(first.custom, { source: 'heartbeat', topic: `/heartbeat/${first.event.split(' ')[1]}` });
  });

  it('restarts a long-lived function that crashes, running its top-level code again', async () => {
    const [first] = await collected(1);
    const crashed = await fc.invokeFunction({ functionId: 'heartbeat', payload: 'crash' });
    assert.equal(crashed.functionError, 'Unhandled');
    const [, second] = await collected(2);
    assert.match(second.event, /^started \d+$/);
    assert.notEqual(second.event, first.event, 'a new process started');
    assert.match((await fc.invokeFunction({ functionId: 'heartbeat', payload: 'hi' })).payload, /^running \d+$/);
  });

  it('delivers binary payloads byte-exact and strings as strings', async () => {
    const bytes = crypto.randomBytes(4096);
    const id = await fc.publish({ topic: '/test/binary', payload: bytes });
    assert.match(id, /^[0-9a-f-]{36}$/);
    await fc.publish({ topic: '/test/text', payload: 'plain text' });
    const messages = await collected(4);
    const binary = messages.find((m) => m.custom.topic === '/test/binary');
    assert.equal(binary.isBuffer, true);
    assert.ok(Buffer.from(binary.event, 'base64').equals(bytes));
    const text = messages.find((m) => m.custom.topic === '/test/text');
    assert.deepEqual([text.isBuffer, text.event, text.custom.source], [false, 'plain text', 'local']);
  });

  it('delivers a message once to a target that several routes match', async () => {
    const before = await stats();
    await fc.publish({ topic: '/test/once', payload: 'once' });
    await fc.publish({ topic: '/test/deep/er', payload: 'deep' });
    const messages = await collected(6);
    assert.deepEqual(messages.slice(4).map((m) => m.event).sort(), ['deep', 'once']);
    const afterStats = await stats();
    assert.equal(afterStats.delivered - before.delivered, 2);
    assert.equal(afterStats.published - before.published, 2);
  });

  it('routes by source: a route for one function does not carry another\'s messages', async () => {
    const before = await stats();
    await fc.publish({ topic: '/heartbeat/fake', payload: 'not from heartbeat' });
    const afterStats = await stats();
    assert.equal(afterStats.droppedNoRoute - before.droppedNoRoute, 1);
    assert.equal(afterStats.delivered, before.delivered);
  });

  it('accepts and counts a message that no route wants', async () => {
    const before = await stats();
    const iot = new IoTData({ config: runtime.configPath });
    const id = await new Promise((resolve, reject) => {
      iot.publish({ topic: '/nobody/listens', payload: 'dropped' }, (err, data) => (err ? reject(err) : resolve(data)));
    });
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal((await stats()).droppedNoRoute - before.droppedNoRoute, 1);
  });

  it('never blocks the publisher on a slow subscriber: a full queue gives ERR_QUEUE_FULL', async () => {
    const before = await stats();
    // The sink runs one message and queues one; both wait for their gate file.
    await fc.publish({ topic: '/slow', payload: path.join(gateDir, 'gate-0') });
    await fc.publish({ topic: '/slow', payload: path.join(gateDir, 'gate-1') });
    await assert.rejects(fc.publish({ topic: '/slow', payload: path.join(gateDir, 'gate-2') }), (err) => {
      assert.equal(err.code, 'ERR_QUEUE_FULL');
      assert.match(err.message, /sink/);
      return true;
    });
    assert.equal((await stats()).refusedQueueFull - before.refusedQueueFull, 1);
    // Other publishes still flow while the sink is stuck.
    await fc.publish({ topic: '/test/meanwhile', payload: 'meanwhile' });
    const messages = await collected(7);
    assert.equal(messages[6].event, 'meanwhile');
    fs.writeFileSync(path.join(gateDir, 'gate-0'), '');
    fs.writeFileSync(path.join(gateDir, 'gate-1'), '');
  });

  it('keeps the order of calls started before the connection is up', async () => {
    const { RuntimeLink } = require('../lib/core/link');
    const subscriber = new RuntimeLink({ config: runtime.configPath, connectTimeoutMs: 999 });
    let channel;
    await subscriber.call(async (ch) => {
      channel = ch;
      return (await ch.subscribe('/order/+')) || {};
    });
    const fresh = new FCClient({ config: runtime.configPath, connectTimeoutMs: 998 });
    const sent = Array.from({ length: 50 }, (_, i) => `m${i}`);
    await Promise.all(sent.map((payload) => fresh.publish({ topic: '/order/x', payload })));
    const received = [];
    while (received.length < sent.length) {
      received.push(...(await channel.nextMessages()).map((m) => m.payload));
    }
    assert.deepEqual(received, sent);
  });

  it('rejects a topic with wildcards', async () => {
    await assert.rejects(fc.publish({ topic: '/test/+', payload: 'x' }), { code: 'ERR_INVALID_PARAMS' });
  });

  it('publishes through the router function id, as upstream code that invokes it directly does', async () => {
    const invokerContext = Buffer.from(JSON.stringify({ custom: { source: 'ignored', topic: '/test/legacy' } })).toString('base64');
    const id = await fc.invokeFunction({ functionId: 'edgefc:router', invocationType: 'Async', invokerContext, payload: 'legacy' });
    assert.match(id, /^[0-9a-f-]{36}$/);
    const messages = await collected(8);
    assert.deepEqual([messages[7].event, messages[7].custom], ['legacy', { source: 'local', topic: '/test/legacy' }]);
  });
});
