'use strict';

// Cross-gateway invoke as users run it: the two-gateways example starts a
// real Mosquitto and two runtimes whose Node functions call each other
// through it (the Rust tests cover bridged brokers, repeats and refusals).

const assert = require('assert/strict');
const { execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { describe, it } = require('node:test');

const { FCClient } = require('..');
const { ROOT, startRuntimeProcess } = require('./helpers');

const HAS_MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].some((file) => fs.existsSync(file));

describe('examples/two-gateways', () => {
  it('runs with its one command: a function on gw1 calls one on gw2 through the broker', {
    skip: HAS_MOSQUITTO ? false : 'mosquitto is not installed (bash scripts/services.sh installs it)',
  }, async () => {
    const output = await new Promise((resolve, reject) => {
      const script = path.join(ROOT, 'examples', 'two-gateways', 'run.js');
      execFile(process.execPath, [script], { timeout: 60000 }, (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${err.message}\n${stdout}${stderr}`));
        } else {
          resolve(stdout);
        }
      });
    });
    const expected = [
      'gw1 Site1/sensor -> gw2 answered: gw1/sensor reported 21.5 °C on gw2',
      'gw1 -> gw2 Site2/report with a Buffer -> <Buffer 62 79 74 65 73 20 62 61 63 6b 3a 20 01 02 03>',
      "gw1 -> gw2 Site2/report, a function error -> Handled {\"errorMessage\":\"a report needs a number of degrees\"",
      'gw1 -> gw2 Async, accepted by gw2 as',
      'invokeFunction with gatewayId gw2 -> gatewayId reported 0 °C on gw2',
      'gw1 -> gw2 while gw2 is offline -> ERR_GATEWAY_OFFLINE',
    ];
    for (const line of expected) {
      assert.ok(output.includes(line), `${line} in:\n${output}`);
    }
  });
});

describe('a call to another gateway', () => {
  it('waits as long as the caller does: FCClient\'s timeoutMs reaches the runtime', {
    skip: HAS_MOSQUITTO ? false : 'mosquitto is not installed (bash scripts/services.sh installs it)',
  }, async () => {
    const { startBroker } = require('../examples/two-gateways/broker');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-remote-'));
    const { port, broker } = await startBroker(dir);
    // remoteTimeoutMs is a minute: only the client's 200 ms can end the runtime's wait sooner.
    const runtime = await startRuntimeProcess({
      gatewayId: 'gw1',
      remoteTimeoutMs: 60000,
      functions: [],
      mqtt: { brokers: { site: { url: `mqtt://127.0.0.1:${port}` } } },
    });
    try {
      const options = { config: runtime.configPath };
      const fc = new FCClient({ ...options, timeoutMs: 200 });
      await assert.rejects(
        fc.invokeFunction({ gatewayId: 'nowhere', serviceName: 'S', functionName: 'f', payload: 'x' }),
        { code: 'ERR_TIMEOUT' },
      );
      // The runtime gave up at the same 200 ms (its own timer, counted), not a minute later.
      const admin = new FCClient(options);
      const { RuntimeLink } = require('../lib/core/link');
      const link = new RuntimeLink(options);
      const deadline = Date.now() + 20000;
      for (;;) {
        const { remote } = await link.call((session) => session.query('stats'));
        if (remote.timedOut === 1) break;
        assert.ok(Date.now() < deadline, `the runtime still waits: ${JSON.stringify(remote)}`);
        await new Promise((resolve) => { setTimeout(resolve, 20); });
      }
      // A gatewayId of the wrong type never leaves the client.
      await assert.rejects(admin.invokeFunction({ gatewayId: 7, serviceName: 'S', functionName: 'f' }), { code: 'ERR_INVALID_PARAMS' });
    } finally {
      await runtime.stop();
      broker.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
