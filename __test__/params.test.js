'use strict';

// Every validation case of the upstream SDK's test/unit/fc.test.js, plus the
// type checks it lacked. Validation happens before any connection, so no
// runtime is needed: errors must reach the callback (never be thrown) and
// reject the Promise form.

const assert = require('assert/strict');
const { describe, it } = require('node:test');

const { FCClient, EdgeFCError, ErrorCode } = require('..');

const fc = new FCClient({ socketPath: '/nonexistent/edgefc.sock', token: 'unused' });

function viaCallback(params) {
  return new Promise((resolve) => {
    const returned = fc.invokeFunction(params, (err, data) => resolve({ err, data }));
    assert.equal(returned, undefined, 'the callback form returns nothing');
  });
}

const invalid = [
  ['serviceName undefined', { serviceName: undefined, functionName: 'f' }, /"functionId" or "serviceName"/],
  ['serviceName null', { serviceName: null, functionName: 'f' }, /"functionId" or "serviceName"/],
  ['serviceName empty', { serviceName: '', functionName: 'f' }, /"functionId" or "serviceName"/],
  ['functionName undefined', { serviceName: 's', functionName: undefined }, /"functionId" or "functionName"/],
  ['functionName null', { serviceName: 's', functionName: null }, /"functionId" or "functionName"/],
  ['functionId undefined', { functionId: undefined }, /"functionId" or "serviceName"/],
  ['functionId null', { functionId: null }, /"functionId" or "serviceName"/],
  ['no identifier at all', {}, /"functionId" or "serviceName"/],
  ['invocationType DryRun', { serviceName: 's', functionName: 'f', invocationType: 'DryRun' },
    /^Incorrect invocationType DryRun\. It should be "Sync" or "Async"\.$/],
  ['invocationType lower case', { functionId: 'f', invocationType: 'sync' }, /Incorrect invocationType sync/],
  ['functionId not a string', { functionId: 42 }, /"functionId" must be a String/],
  ['serviceName not a string', { serviceName: {}, functionName: 'f' }, /"serviceName" must be a String/],
  ['invokerContext not a string', { functionId: 'f', invokerContext: { custom: 1 } }, /"invokerContext" must be a String/],
  ['payload a number', { functionId: 'f', payload: 42 }, /"payload" must be a String or a Buffer/],
  ['payload an object', { functionId: 'f', payload: { a: 1 } }, /"payload" must be a String or a Buffer/],
  ['gatewayId not a string', { serviceName: 's', functionName: 'f', gatewayId: 2 }, /"gatewayId" must be a String/],
];

describe('invokeFunction parameter validation', () => {
  for (const [name, params, message] of invalid) {
    it(`fails through the callback when ${name}`, async () => {
      const { err, data } = await viaCallback(params);
      assert.ok(err instanceof EdgeFCError);
      assert.ok(err instanceof Error);
      assert.equal(err.code, ErrorCode.INVALID_PARAMS);
      assert.match(err.message, message);
      assert.equal(data, undefined);
    });

    it(`rejects the Promise when ${name}`, async () => {
      await assert.rejects(fc.invokeFunction(params), (err) => err.code === 'ERR_INVALID_PARAMS' && message.test(err.message));
    });
  }

  it('rejects params that are not an object', async () => {
    for (const params of [undefined, null, 'EdgeFC/helloworld', 7]) {
      const { err } = await viaCallback(params);
      assert.equal(err.code, ErrorCode.INVALID_PARAMS);
      assert.match(err.message, /"params" must be an object/);
    }
  });

  it('never calls the callback synchronously', () => {
    let called = false;
    fc.invokeFunction({}, () => { called = true; });
    assert.equal(called, false);
  });

  it('throws for a callback that is not a function', () => {
    assert.throws(() => fc.invokeFunction({ functionId: 'f' }, 'not a function'), { code: 'ERR_INVALID_PARAMS' });
  });

  it('exposes every error code', () => {
    assert.deepEqual(Object.values(ErrorCode).sort(), [
      'ERR_CONFIG', 'ERR_CREDENTIALS_UNAVAILABLE', 'ERR_FUNCTION_FAILED', 'ERR_FUNCTION_NOT_FOUND', 'ERR_GATEWAY_OFFLINE',
      'ERR_INTERNAL',
      'ERR_INVALID_PARAMS', 'ERR_PAYLOAD_TOO_LARGE',
      'ERR_PROTOCOL', 'ERR_QUEUE_FULL', 'ERR_RUNTIME_UNAVAILABLE', 'ERR_SHUTTING_DOWN', 'ERR_TIMEOUT',
      'ERR_TOO_MANY_CONNECTIONS', 'ERR_UNAUTHORIZED',
    ]);
  });
});
