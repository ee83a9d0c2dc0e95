'use strict';

// The other seed APIs: Supabase/MemFire functions.invoke (seed 002),
// 知晓云 BaaS.invoke (seed 003) and WeChat cloud.callFunction (seed 004),
// as callers and as callees, against a real runtime. Each caller style
// calls each callee flavor.

const assert = require('assert/strict');
const { execFile } = require('child_process');
const path = require('path');
const { after, before, describe, it } = require('node:test');

const { FCClient } = require('..');
const supabaseApi = require('../lib/supabase');
const minapp = require('../lib/minapp');
const cloud = require('../lib/wechat');
const { FIXTURES, ROOT, startRuntimeProcess } = require('./helpers');

const COMPAT = path.join(FIXTURES, 'compat');

function compatFunction(functionName, dir, overrides = {}) {
  return {
    serviceName: 'Compat', functionName, codeDir: path.join(COMPAT, dir), ...overrides,
  };
}

const FLAVORS = ['linkedge', 'wechat', 'minapp', 'supabase'];

function functions() {
  return [
    ...FLAVORS.map((flavor) => compatFunction(`echo-${flavor}`, `echo-${flavor}`, { flavor })),
    compatFunction('add', 'seed-add', { flavor: 'wechat', handler: 'index.add' }),
    compatFunction('caller', 'seed-caller', { flavor: 'wechat' }),
    compatFunction('helloWorld', 'seed-hello', { flavor: 'minapp' }),
    compatFunction('minapp-caller', 'minapp-caller', { flavor: 'minapp' }),
    compatFunction('own-sdk', 'own-sdk', { flavor: 'wechat' }),
    compatFunction('esm-supabase', 'esm-supabase', { flavor: 'supabase' }),
    compatFunction('cjs-supabase', 'cjs-supabase', { flavor: 'supabase' }),
    compatFunction('binary-inside', 'binary-inside', { flavor: 'wechat' }),
    compatFunction('thrower', 'thrower-supabase', { flavor: 'supabase' }),
    // No timeoutMs: the runtime's default (5 s), or what the caller's API implies.
    compatFunction('slow-minapp', 'slow-minapp', { flavor: 'minapp' }),
    // Two functions of one name in two other services: a bare name is ambiguous.
    { ...compatFunction('twin', 'echo-wechat', { flavor: 'wechat' }), serviceName: 'Left' },
    { ...compatFunction('twin', 'echo-wechat', { flavor: 'wechat' }), serviceName: 'Right' },
  ];
}

/** Resolves with the first of `texts` the runtime's output (its and its functions' logs) includes. */
function outputIncludes(runtime, ...texts) {
  return new Promise((resolve) => {
    const streams = [runtime.child.stdout, runtime.child.stderr];
    const look = () => {
      const found = texts.find((text) => runtime.output().includes(text));
      if (found !== undefined) {
        streams.forEach((stream) => stream.off('data', look));
        resolve(found);
      }
    };
    streams.forEach((stream) => stream.on('data', look));
    look();
  });
}

describe('the other seed APIs', () => {
  let runtime;

  before(async () => {
    runtime = await startRuntimeProcess({ functions: functions() });
    // Each facade finds the runtime as FCClient does; here through EDGEFC_CONFIG.
    process.env.EDGEFC_CONFIG = runtime.configPath;
  });

  after(async () => {
    delete process.env.EDGEFC_CONFIG;
    await runtime.stop();
  });

  describe('seed 003: 知晓云 BaaS.invoke', () => {
    const { wx } = minapp;

    it('calls helloWorld synchronously, as the seed shows', async () => {
      const callback = (err) => assert.fail(err);
      const logged = [];
      await wx.BaaS.invoke('helloWorld', { name: 'allen' }).then((res) => {
        if (res.code === 0) {
          // success
          logged.push(res.data);
        } else {
          // fail
          logged.push(res.error.message);
        }
      }, (err) => {
        // HError 对象
        callback(err);
      });
      assert.deepEqual(logged, ['hello allen']);
      assert.deepEqual(await wx.BaaS.invoke('helloWorld', { name: 'allen' }), { error: {}, code: 0, data: 'hello allen' });
    });

    it('calls helloWorld asynchronously: {status: "ok"} once accepted, and the function runs', async () => {
      const res = await wx.BaaS.invoke('helloWorld', { name: 'async-allen' }, false);
      assert.deepEqual(res, { error: {}, code: 0, data: { status: 'ok' } });
      // The function logs its event; the runtime forwards the line.
      await outputIncludes(runtime, 'async-allen');
    });

    it('keeps the deprecated invokeFunction', async () => {
      const res = await wx.BaaS.invokeFunction('helloWorld', { name: 'allen' });
      assert.deepEqual(res, { error: {}, code: 0, data: 'hello allen' });
    });

    it('throws at once without a function name, and rejects with HError codes for refusals', async () => {
      for (const name of [undefined, '', null]) {
        assert.throws(() => wx.BaaS.invoke(name, {}), (err) => err.code === 605 && err.message === '605: incorrect parameter type');
      }
      await assert.rejects(wx.BaaS.invoke('nobody', {}), (err) => err.code === 404 && err.message === '404: not found');
      await assert.rejects(wx.BaaS.invoke('twin', {}), (err) => err.code === 404 && /ambiguous/.test(err.cause.message));
    });

    it('lets an Async call run for the platform\'s 300 s, past the runtime\'s default 5 s', async () => {
      const res = await minapp.BaaS.invoke('slow-minapp', { ms: 5500, tag: 'past-five-seconds' }, false);
      assert.equal(res.code, 0);
      const seen = await outputIncludes(runtime, 'slow done past-five-seconds', 'slow-minapp timed out');
      assert.equal(seen, 'slow done past-five-seconds');
    });

    it('gives hosted 知晓云 functions a global BaaS', async () => {
      const res = await wx.BaaS.invoke('minapp-caller', { name: 'global' });
      assert.deepEqual(res, { error: {}, code: 0, data: 'hello global' });
    });
  });

  describe('seed 004: WeChat cloud.callFunction', () => {
    it('calls add from a mini program, Promise style', async () => {
      const { wx } = cloud;
      let output;
      await wx.cloud.callFunction({
        // 要调用的云函数名称
        name: 'add',
        // 传递给云函数的event参数
        data: {
          x: 1,
          y: 2,
        },
      }).then((res) => {
        output = res;
      }).catch((err) => {
        assert.fail(err);
      });
      assert.equal(output.result, 3);
      assert.equal(output.errMsg, 'cloud.callFunction:ok');
      assert.match(output.requestID, /^[0-9a-f-]{36}$/);
    });

    it('calls add from a mini program, callback style', async () => {
      const { wx } = cloud;
      const seen = [];
      await new Promise((resolve) => {
        wx.cloud.callFunction({
          name: 'add',
          data: { x: 1, y: 2 },
          success: (res) => seen.push(['success', res.result]),
          fail: (err) => seen.push(['fail', err.errMsg]),
          complete: () => resolve(seen.push(['complete'])),
        });
      });
      assert.deepEqual(seen, [['success', 3], ['complete']]);
    });

    it('runs the seed\'s complete cloud function, which calls add through wx-server-sdk', async () => {
      const res = await cloud.callFunction({ name: 'caller' });
      assert.equal(res.result, 3);
      assert.equal(res.errMsg, 'callFunction:ok');
    });

    it('carries a Buffer inside data byte-exact, and a large one needs no detour', async () => {
      const large = Buffer.alloc(2 << 20, 7);
      large[12345] = 1;
      const res = await cloud.callFunction({ name: 'echo-wechat', data: { small: Buffer.from([0, 255]), large } });
      assert.ok(Buffer.isBuffer(res.result.small) && res.result.small.equals(Buffer.from([0, 255])));
      assert.ok(res.result.large.equals(large));
    });

    it('fails with WeChat\'s codes and messages', async () => {
      await assert.rejects(cloud.callFunction(), (err) => err.errCode === -1
        && err.message === 'callFunction:fail undefined . Params for callFunction must be an object instead of undefined');
      await assert.rejects(cloud.callFunction({ data: {} }), (err) => err.errCode === -1 && err.name === 'CloudSDKError'
        && err.errMsg === 'parameter.name should be string instead of undefined;');
      await assert.rejects(cloud.callFunction({ name: 'add', data: 'x' }), (err) => err.errCode === -1
        && err.errMsg === 'parameter.data should be object instead of string;');
      await assert.rejects(cloud.callFunction({ name: 'nobody' }), (err) => err.errCode === -501000
        && err.errMsg.startsWith('callFunction:fail -501000 FunctionName parameter could not be found.'));
      await assert.rejects(cloud.callFunction({ name: 'twin' }), (err) => err.errCode === -501000 && /ambiguous/.test(err.errMsg));
      await assert.rejects(cloud.wx.cloud.callFunction({ name: 'echo-wechat', data: { throw: true } }), (err) => err.errCode === -504002
        && err.errMsg.startsWith('cloud.callFunction:fail Error: errCode: -504002 functions execute fail | errMsg: Error: boom from wechat'));
    });

    it('lets a function\'s own node_modules win over the facades', async () => {
      const res = await cloud.callFunction({ name: 'own-sdk' });
      assert.deepEqual(res.result, {
        wechat: true, supabase: 'function', memfire: 'function', linkedge: 'function',
      }, 'upstream\'s linkedge-core-sdk could not reach the runtime: edgefc\'s always wins');
    });

    it('survives a callback that throws', async () => {
      const reported = [];
      const consoleError = console.error;
      console.error = (...args) => reported.push(args.join(' '));
      try {
        await new Promise((resolve) => {
          cloud.callFunction({
            name: 'add',
            data: { x: 1, y: 2 },
            success: () => { throw new Error('a careless success callback'); },
            complete: resolve,
          });
        });
      } finally {
        console.error = consoleError;
      }
      assert.match(reported.join('\n'), /a careless success callback/);
    });

    it('gives a linkedge caller JSON where binary sits inside an answer, and a WeChat caller the bytes', async () => {
      const out = await new FCClient().invokeFunction({ serviceName: 'Compat', functionName: 'binary-inside' });
      assert.deepEqual(JSON.parse(out.payload), { bytes: { type: 'Buffer', data: [1, 2, 255] } });
      const res = await cloud.callFunction({ name: 'binary-inside' });
      assert.ok(res.result.bytes.equals(Buffer.from([1, 2, 255])));
    });
  });

  describe('seed 002: Supabase/MemFire functions.invoke', () => {
    const supabaseUrl = 'https://gateway.example';
    const supabaseAnonKey = 'anon-key';
    const supabase = supabaseApi.createClient(supabaseUrl, supabaseAnonKey);

    /** The seed's error handling, verbatim but for the address it calls; returns what it logged. */
    async function seedErrorHandling(client, address) {
      const { FunctionsHttpError, FunctionsRelayError, FunctionsFetchError } = supabaseApi;
      const logged = [];
      const console = { log: (...args) => logged.push(args.join(' ')) };
      const supabase = client;

      const { data, error } = await supabase.functions.invoke(address, {
        headers: {
          "my-custom-header": 'my-custom-header-value'
        },
        body: { foo: 'bar' },

      })

      if (error instanceof FunctionsHttpError) {
        console.log('Function returned an error', error.message)
      } else if (error instanceof FunctionsRelayError) {
        console.log('Relay error:', error.message)
      } else if (error instanceof FunctionsFetchError) {
        console.log('Fetch error:', error.message)
      }
      return { logged, data, error };
    }

    it('runs the seed\'s error handling against each error class, made for real', async () => {
      const thrown = await seedErrorHandling(supabase, 'thrower');
      assert.deepEqual(thrown.logged, ['Function returned an error Edge Function returned a non-2xx status code']);
      assert.equal((await thrown.error.context.json()).errorMessage, 'boom from supabase');
      const missing = await seedErrorHandling(supabase, 'https://functions1.memfiredb.com/xxxxxxxxx/nobody');
      assert.deepEqual(missing.logged, ['Relay error: Relay Error invoking the Edge Function']);
      const nowhere = supabaseApi.createClient(supabaseUrl, supabaseAnonKey, {
        edgefc: { socketPath: path.join(path.dirname(runtime.configPath), 'no.sock'), token: 'x' },
      });
      const unreachable = await seedErrorHandling(nowhere, 'echo-supabase');
      assert.deepEqual(unreachable.logged, ['Fetch error: Failed to send a request to the Edge Function']);
      const fine = await seedErrorHandling(supabase, 'echo-supabase');
      assert.deepEqual([fine.logged, fine.data, fine.error], [[], { foo: 'bar' }, null]);
    });

    it('loads a handler given as export default { fetch } (an .mjs module) or as module.exports', async () => {
      const esm = await supabase.functions.invoke('esm-supabase', { body: 'hi' });
      assert.deepEqual(esm.data, { form: 'export default { fetch }', method: 'POST', body: 'hi' });
      const cjs = await supabase.functions.invoke('cjs-supabase', { method: 'PATCH', body: 'there' });
      assert.deepEqual(cjs.data, { form: 'module.exports', method: 'PATCH', body: 'there' });
    });

    it('tells the runtime\'s refusals from the handler\'s own errors, and refuses what fetch would', async () => {
      const own = await supabase.functions.invoke('echo-supabase', { body: 'timeout-error' });
      assert.ok(own.error instanceof supabaseApi.FunctionsHttpError, 'a TimeoutError the handler threw is its own');
      assert.equal(own.response.status, 500);
      const badHeader = await supabase.functions.invoke('echo-supabase', { headers: { 'x-bad': 'a\nb' }, body: 'x' });
      assert.ok(badHeader.error instanceof supabaseApi.FunctionsFetchError);
      const badMethod = await supabase.functions.invoke('echo-supabase', { method: 'CONNECT', body: 'x' });
      assert.ok(badMethod.error instanceof supabaseApi.FunctionsFetchError);
    });

    it('makes the basic call with an address and a method; the query reaches the callee', async () => {
      const { functions } = supabase;
      const { data, error, response } = await functions.invoke(
        'https://functions1.memfiredb.com/xxxxxxxxx/echo-supabase?action=pay', { method: 'PUT', body: 'ping' },
      );
      assert.equal(error, null);
      assert.equal(data, 'ping');
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-method'), 'PUT');
      assert.equal(response.headers.get('x-path'), '/echo-supabase');
      const sub = await functions.invoke('echo-supabase/orders/7?status=201', { method: 'GET' });
      assert.equal(sub.response.status, 201);
      assert.equal(sub.response.headers.get('x-path'), '/echo-supabase/orders/7');
    });

    it('produces each of the three error classes, as the seed\'s error handling expects', async () => {
      const { FunctionsHttpError, FunctionsRelayError, FunctionsFetchError } = supabaseApi;
      const classify = (error) => {
        if (error instanceof FunctionsHttpError) {
          return `Function returned an error ${error.message}`;
        } else if (error instanceof FunctionsRelayError) {
          return `Relay error: ${error.message}`;
        } else if (error instanceof FunctionsFetchError) {
          return `Fetch error: ${error.message}`;
        }
        return 'no error';
      };
      const thrown = await supabase.functions.invoke('echo-supabase', {
        headers: {
          'my-custom-header': 'my-custom-header-value',
        },
        body: { foo: 'bar', throw: true },
      });
      assert.equal(classify(thrown.error), 'Function returned an error Edge Function returned a non-2xx status code');
      assert.equal(thrown.response.status, 500);
      assert.equal((await thrown.error.context.json()).errorMessage, 'boom from supabase');

      const missing = await supabase.functions.invoke('nobody', { body: { foo: 'bar' } });
      assert.equal(classify(missing.error), 'Relay error: Relay Error invoking the Edge Function');
      assert.equal(missing.error.context.status, 404);
      assert.equal(missing.error.context.headers.get('x-relay-error'), 'true');
      assert.equal((await missing.error.context.json()).code, 'ERR_FUNCTION_NOT_FOUND');

      const nowhere = supabaseApi.createClient(supabaseUrl, supabaseAnonKey, {
        edgefc: { socketPath: path.join(path.dirname(runtime.configPath), 'no.sock'), token: 'x' },
      });
      const unreachable = await nowhere.functions.invoke('echo-supabase', { body: { foo: 'bar' } });
      assert.equal(classify(unreachable.error), 'Fetch error: Failed to send a request to the Edge Function');
      assert.equal(unreachable.error.context.code, 'ERR_RUNTIME_UNAVAILABLE');
      assert.equal(unreachable.response, undefined);
    });

    it('passes custom headers, and a non-2xx answer is an HTTP error with a readable body', async () => {
      const { data, error, response } = await supabase.functions.invoke('echo-supabase?status=418', {
        headers: { 'content-type': 'application/json' }, body: { teapot: true },
      });
      assert.equal(data, null);
      assert.ok(error instanceof supabaseApi.FunctionsHttpError);
      assert.equal(response.status, 418);
      assert.deepEqual(await error.context.json(), { teapot: true });
      const bad = await supabase.functions.invoke('echo-supabase', { method: 'GET', body: 'x' });
      assert.ok(bad.error instanceof supabaseApi.FunctionsFetchError);
    });
  });

  describe('every caller style against every callee flavor', () => {
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);

    /** Each caller sends each value and says what came back: {value} or {error}. */
    const callers = {
      async linkedge(target, kind) {
        const payload = { string: 'hello', json: JSON.stringify({ a: 1, list: [1, 'x'] }), binary: bytes, thrown: 'throw' }[kind];
        const out = await new FCClient().invokeFunction({ serviceName: 'Compat', functionName: target, payload });
        if (out.functionError) {
          return { error: JSON.parse(out.payload).errorMessage };
        }
        return { value: kind === 'json' ? JSON.parse(out.payload) : out.payload };
      },
      async supabase(target, kind) {
        const body = {
          string: 'hello', json: { a: 1, list: [1, 'x'] }, binary: new Uint8Array(bytes), thrown: 'throw',
        }[kind];
        const { data, error } = await supabaseApi.createClient('http://x', 'k').functions.invoke(target, { body });
        if (error) {
          assert.ok(error instanceof supabaseApi.FunctionsHttpError, `${error.name}: ${error.message}`);
          return { error: (await error.context.json()).errorMessage };
        }
        return { value: data instanceof Blob ? Buffer.from(await data.arrayBuffer()) : data };
      },
      async minapp(target, kind) {
        const params = { string: 'hello', json: { a: 1, list: [1, 'x'] }, binary: bytes, thrown: 'throw' }[kind];
        const res = await minapp.BaaS.invoke(target, params);
        return res.code === 0 ? { value: res.data } : { error: res.error.message };
      },
      async wechat(target, kind) {
        // WeChat's data is always an object.
        const data = {
          string: { text: 'hello' }, json: { a: 1, list: [1, 'x'] }, binary: { bytes }, thrown: { throw: true },
        }[kind];
        try {
          return { value: (await cloud.callFunction({ name: target, data })).result };
        } catch (err) {
          assert.equal(err.errCode, -504002);
          return { error: err.errMsg.replace(/^.*, Error: /, '') };
        }
      },
    };

    /** What a caller gets back, by what it sent. */
    function expected(caller, flavor, kind) {
      if (kind === 'thrown') {
        return { error: `boom from ${flavor}` };
      }
      if (caller === 'wechat') {
        // A Buffer inside data: byte-exact for callees that take JS values,
        // as JSON makes it for callees that read JSON (a linkedge payload, a Request body).
        const binary = flavor === 'wechat' || flavor === 'minapp' ? bytes : JSON.parse(JSON.stringify(bytes));
        return { value: { string: { text: 'hello' }, json: { a: 1, list: [1, 'x'] }, binary: { bytes: binary } }[kind] };
      }
      return { value: { string: 'hello', json: { a: 1, list: [1, 'x'] }, binary: bytes }[kind] };
    }

    for (const caller of Object.keys(callers)) {
      for (const flavor of FLAVORS) {
        it(`${caller} -> ${flavor}`, async () => {
          for (const kind of ['string', 'json', 'binary', 'thrown']) {
            const got = await callers[caller](`echo-${flavor}`, kind);
            assert.deepEqual(got, expected(caller, flavor, kind), `${caller} -> ${flavor}, ${kind}`);
          }
        });
      }
    }
  });
});

describe('the examples of the other APIs', () => {
  const examples = {
    wechat: ['wx.cloud.callFunction add -> 3 cloud.callFunction:ok', 'sum: 42', 'unknown function -> -501000'],
    minapp: ["sync -> { error: {}, code: 0, data: 'hello allen' }", "data: { greeting: 'hello gateway' }", 'unknown function -> 404'],
    supabase: ["invoke hello -> { message: 'Hello Functions!', action: null }", "action: 'pay'", 'non-2xx -> 400', 'unknown function -> 404'],
  };
  for (const [name, lines] of Object.entries(examples)) {
    it(`examples/${name} runs with its one command`, async () => {
      const output = await new Promise((resolve, reject) => {
        execFile(process.execPath, [path.join(ROOT, 'examples', name, 'run.js')], { timeout: 60000 }, (err, stdout, stderr) => {
          if (err) {
            reject(new Error(`${err.message}\n${stdout}${stderr}`));
          } else {
            resolve(stdout);
          }
        });
      });
      for (const line of lines) {
        assert.ok(output.includes(line), `${line} in:\n${output}`);
      }
    });
  }
});

