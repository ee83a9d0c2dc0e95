'use strict';

// Two gateways and one MQTT broker: a function on gateway gw1 calls a
// function on gateway gw2 by its names, through the broker.
// Run: node examples/two-gateways/run.js   (needs mosquitto: scripts/services.sh installs it)
//
// The two runtimes are embedded in this one process for the demo; each has
// its own state directory and socket, and they reach each other only
// through the broker, as two gateways on two boxes would.

const fs = require('fs');
const os = require('os');
const path = require('path');

const { startRuntime } = require('../..');
const { MOSQUITTO, startBroker } = require('./broker');

/** A gateway's edgefc.json: its functions, the broker, and what it calls or exposes. */
function writeConfig(dir, name, port, settings) {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    gatewayId: name,
    stateDir: path.join(dir, name),
    runAs: 'runtime',
    mqtt: { brokers: { site: { url: `mqtt://127.0.0.1:${port}` } } },
    ...settings,
  }, null, 2));
  return file;
}

async function gatewayOnline(runtime) {
  for (;;) {
    const { remote } = await runtime.stats();
    if (remote.gatewaysOnline > 0) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function main() {
  if (MOSQUITTO === undefined) {
    throw new Error('mosquitto is not installed; bash scripts/services.sh installs it');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefc-two-gateways-'));
  const { port, broker } = await startBroker(dir);
  const runtimes = [];
  try {
    const gw2 = await startRuntime(writeConfig(dir, 'gw2', port, {
      functions: [{ serviceName: 'Site2', functionName: 'report', codeDir: path.join(__dirname, 'site2', 'report') }],
      exposedFunctions: [{ serviceName: 'Site2', functionName: 'report' }],
    }));
    runtimes.push(gw2);
    const gw1 = await startRuntime(writeConfig(dir, 'gw1', port, {
      functions: [{ serviceName: 'Site1', functionName: 'sensor', codeDir: path.join(__dirname, 'site1', 'sensor') }],
      remoteFunctions: [{ serviceName: 'Site2', functionName: 'report', gatewayId: 'gw2' }],
    }));
    runtimes.push(gw1);
    console.log(`broker on port ${port}; gateways gw1 and gw2 started`);
    await gatewayOnline(gw1);

    const client = gw1.client();
    const sensor = await client.invokeFunction({
      serviceName: 'Site1', functionName: 'sensor', payload: JSON.stringify({ celsius: 21.5 }),
    });
    console.log('gw1 Site1/sensor ->', sensor.payload);

    const bytes = await client.invokeFunction({ serviceName: 'Site2', functionName: 'report', payload: Buffer.from([1, 2, 3]) });
    console.log('gw1 -> gw2 Site2/report with a Buffer ->', bytes.payload);

    const failed = await client.invokeFunction({ serviceName: 'Site2', functionName: 'report', payload: '{}' });
    console.log('gw1 -> gw2 Site2/report, a function error ->', failed.functionError, failed.payload);

    const accepted = await client.invokeFunction({
      serviceName: 'Site2', functionName: 'report', invocationType: 'Async', payload: '{"from":"gw1","celsius":3}',
    });
    console.log('gw1 -> gw2 Async, accepted by gw2 as', accepted);

    const explicit = await client.invokeFunction({
      gatewayId: 'gw2', serviceName: 'Site2', functionName: 'report', payload: '{"from":"gatewayId","celsius":0}',
    });
    console.log('invokeFunction with gatewayId gw2 ->', explicit.payload);

    await runtimes.shift().stop();
    console.log('gw2 stopped');
    await client.invokeFunction({ serviceName: 'Site2', functionName: 'report', payload: '{}' })
      .catch((err) => console.log('gw1 -> gw2 while gw2 is offline ->', err.code));
  } finally {
    for (const runtime of runtimes) {
      await runtime.stop();
    }
    broker.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
