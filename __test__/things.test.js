'use strict';

// Thing operations through the example thing service, credentials, and the
// on-demand idle stop.

const assert = require('assert/strict');
const path = require('path');
const { after, before, describe, it } = require('node:test');

const { CredentialProviderChain, FCClient, IoTData } = require('..');
const { ROOT, fixture, runCli, startRuntimeProcess } = require('./helpers');

const THINGS = path.join(ROOT, 'examples', 'things');
const lamp = { productKey: 'a1LampDemo', deviceName: 'kitchen-lamp' };

function thingFunctions() {
  return [
    { serviceName: 'Examples', functionName: 'thing-service', functionId: 'thing-service', codeDir: path.join(THINGS, 'thing-service') },
    { serviceName: 'Examples', functionName: 'thing-operations', codeDir: path.join(THINGS, 'thing-operations') },
  ];
}

describe('thing operations', () => {
  let runtime;
  let iot;

  before(async () => {
    runtime = await startRuntimeProcess({ thingFunction: 'thing-service', functions: thingFunctions() });
    iot = new IoTData({ config: runtime.configPath });
  });

  after(() => runtime.stop());

  it('validates parameters as upstream does', async () => {
    const cases = [
      [(p, cb) => iot.getThingProperties(p, cb), { ...lamp }, /"payload"/],
      [(p, cb) => iot.getThingProperties(p, cb), { ...lamp, payload: '' }, /"payload"/],
      [(p, cb) => iot.getThingProperties(p, cb), { deviceName: 'd', payload: ['x'] }, /"productKey"/],
      [(p, cb) => iot.setThingProperties(p, cb), { productKey: 'p', deviceName: null, payload: { x: 1 } }, /"deviceName"/],
      [(p, cb) => iot.callThingService(p, cb), { ...lamp }, /"service"/],
      [(p, cb) => iot.callThingService(p, cb), { productKey: undefined, deviceName: 'd', service: 's' }, /"productKey"/],
      [(p, cb) => iot.getThingsWithTags(p, cb), { payload: null }, /"payload"/],
    ];
    for (const [call, params, message] of cases) {
      const err = await new Promise((resolve) => call(params, resolve));
      assert.equal(err.code, 'ERR_INVALID_PARAMS');
      assert.match(err.message, message);
    }
  });

  it('gets and sets properties', async () => {
    const before = await iot.getThingProperties({ ...lamp, payload: ['LightSwitch', 'Brightness'] });
    assert.deepEqual(before, { LightSwitch: 0, Brightness: 40 });
    await new Promise((resolve, reject) => {
      iot.setThingProperties({ ...lamp, payload: { Brightness: 90 } }, (err) => (err ? reject(err) : resolve()));
    });
    assert.deepEqual(await iot.getThingProperties({ ...lamp, payload: ['Brightness'] }), { Brightness: 90 });
  });

  it('calls a service with arguments', async () => {
    const output = await iot.callThingService({ ...lamp, service: 'Blink', payload: { times: 2 } });
    assert.deepEqual(output, { blinked: true, arguments: { times: 2 } });
  });

  it('finds things by tags', async () => {
    const kitchen = await iot.getThingsWithTags({ payload: [{ room: 'kitchen' }] });
    assert.deepEqual(kitchen.map((t) => t.deviceName), ['kitchen-lamp', 'kitchen-thermometer']);
    const lamps = await iot.getThingsWithTags({ payload: [{ room: 'kitchen' }, { kind: 'lamp' }] });
    assert.deepEqual(lamps.map((t) => t.deviceName), ['kitchen-lamp']);
  });

  it('gives an Error with the service\'s message for an unknown device or a failing service', async () => {
    await assert.rejects(iot.getThingProperties({ productKey: 'a1LampDemo', deviceName: 'nope', payload: ['LightSwitch'] }), (err) => {
      assert.equal(err.code, 'ERR_FUNCTION_FAILED');
      assert.match(err.message, /thing a1LampDemo\/nope does not exist/);
      return true;
    });
    await assert.rejects(iot.callThingService({ ...lamp, service: 'Reboot' }), (err) => {
      assert.equal(err.code, 'ERR_FUNCTION_FAILED');
      assert.match(err.message, /refused to reboot/);
      return true;
    });
  });

  it('goes through its own fc.invokeFunction, as upstream, so a replaced fc sees every call', async () => {
    const iotData = new IoTData({ config: runtime.configPath });
    const calls = [];
    iotData.fc = {
      invokeFunction(params, callback) {
        calls.push(params);
        const data = params.invocationType === 'Async' ? 'message-id' : { statusCode: 200, payload: JSON.stringify({ done: true }) };
        setImmediate(() => callback(null, data));
      },
    };
    const context = (params) => JSON.parse(Buffer.from(params.invokerContext, 'base64').toString()).custom;
    assert.equal(await iotData.publish({ topic: '/kitchen/lamp', payload: 'on' }), 'message-id');
    assert.equal(calls[0].functionId, 'edgefc:router');
    assert.equal(calls[0].invocationType, 'Async');
    assert.equal(calls[0].payload, 'on');
    assert.equal(context(calls[0]).topic, '/kitchen/lamp');
    assert.deepEqual(await iotData.callThingService({ ...lamp, service: 'toggle', payload: { to: 1 } }), { done: true });
    assert.equal(context(calls[1]).topic, `/sys/things/${lamp.productKey}/${lamp.deviceName}/services/toggle`);
    assert.equal(calls[1].payload, JSON.stringify({ to: 1 }));

    iotData.fc = { invokeFunction: (params, callback) => callback(new Error('Connection has broken.')) };
    await assert.rejects(iotData.getThingProperties({ ...lamp, payload: ['LightSwitch'] }), /Connection has broken/);
    iotData.fc = { invokeFunction: (params, callback) => callback(null, { functionError: 'Unhandled', statusCode: 200, payload: 'Internal error!' }) };
    await assert.rejects(iotData.setThingProperties({ ...lamp, payload: { LightSwitch: 0 } }), { message: 'Internal error!' });
  });

  it('publishes through the router function for real', async () => {
    const id = await iot.publish({ topic: '/things/test', payload: 'hello' });
    assert.match(id, /^[0-9a-f-]{36}$/);
  });

  it('runs the ThingOperations example end to end inside the runtime', async () => {
    const result = await runCli(['invoke', 'Examples/thing-operations', '--config', runtime.configPath]);
    assert.equal(result.code, 0, result.stderr);
    const walk = JSON.parse(result.stdout);
    assert.deepEqual(walk.after, { LightSwitch: 1 });
    assert.deepEqual(walk.kitchen.map((t) => t.deviceName), ['kitchen-lamp', 'kitchen-thermometer']);
  });
});

describe('CredentialProviderChain', () => {
  it('resolves the configured credentials inside a hosted function', async () => {
    const credentials = { accessKeyId: 'AKID', accessKeySecret: 'secret', securityToken: 'sts' };
    const runtime = await startRuntimeProcess({ credentials, functions: [fixture('creds')] });
    try {
      const fc = new FCClient({ config: runtime.configPath });
      const data = await fc.invokeFunction({ serviceName: 'Test', functionName: 'creds' });
      assert.deepEqual(JSON.parse(data.payload), credentials);
      // Callers with the admin token are not hosted functions.
      const admin = new CredentialProviderChain({ config: runtime.configPath });
      await assert.rejects(admin.resolvePromise(), { code: 'ERR_UNAUTHORIZED' });
    } finally {
      await runtime.stop();
    }
  });

  it('throws as upstream does when built without arguments outside a hosted function', () => {
    const saved = process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI;
    delete process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI;
    try {
      assert.throws(() => new CredentialProviderChain(), /Can not construct default credential provider!/);
      process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI = '/test/credentialprovider';
      assert.ok(new CredentialProviderChain() instanceof CredentialProviderChain);
    } finally {
      if (saved === undefined) delete process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI;
      else process.env.DEFFAULT_CREDENTIALS_RELATIVE_URI = saved;
    }
  });

  it('rejects with a clear Error when none are configured', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('creds')] });
    try {
      const data = await new FCClient({ config: runtime.configPath }).invokeFunction({ serviceName: 'Test', functionName: 'creds' });
      const failure = JSON.parse(data.payload);
      assert.equal(failure.code, 'ERR_CREDENTIALS_UNAVAILABLE');
      assert.match(failure.message, /no credentials are configured/);
    } finally {
      await runtime.stop();
    }
  });
});

describe('run modes', () => {
  it('stops an idle on-demand worker and starts a new one on the next event', { timeout: 20000 }, async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('slow', { idleTimeoutMs: 200 })] });
    try {
      const fc = new FCClient({ config: runtime.configPath });
      const first = Number((await fc.invokeFunction({ serviceName: 'Test', functionName: 'slow', payload: 'pid' })).payload);
      // Wait for the worker process to be gone (the test's timeout bounds this).
      await new Promise((resolve) => {
        const check = setInterval(() => {
          try {
            process.kill(first, 0);
          } catch (err) {
            clearInterval(check);
            resolve();
          }
        }, 20);
      });
      const second = Number((await fc.invokeFunction({ serviceName: 'Test', functionName: 'slow', payload: 'pid' })).payload);
      assert.notEqual(second, first);
    } finally {
      await runtime.stop();
    }
  });

  it('gives hosted functions the upstream environment variables', async () => {
    const runtime = await startRuntimeProcess({
      thingFunction: 'thing-service',
      functions: [...thingFunctions(), fixture('context', { functionId: 'ctx' })],
    });
    try {
      const fc = new FCClient({ config: runtime.configPath });
      const env = JSON.parse((await fc.invokeFunction({ functionId: 'ctx', payload: 'env' })).payload).env;
      assert.equal(env.FUNCTION_ID, 'ctx');
      assert.equal(env.MY_FUNCTION_ID, 'ctx');
      assert.equal(env.THING_FUNCTION_ID, 'thing-service');
      assert.equal(env.ROUTER_FUNCTION_ID, 'edgefc:router');
      // Upstream's CredentialProviderChain needs it to be built at all.
      assert.ok(env.DEFFAULT_CREDENTIALS_RELATIVE_URI);
      // Upstream's AUTH_TOKEN is not set: a worker's connection is handed to it, with no token to steal.
      assert.equal(env.AUTH_TOKEN, undefined);
    } finally {
      await runtime.stop();
    }
  });
});
