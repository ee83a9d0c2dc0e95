'use strict';

// The seed example on an embedded runtime: `Invoker` calls `helloworld` of
// service `EdgeFC` Sync. Lines prefixed [Invoker] and [helloworld] are the
// functions' own console output, forwarded by the runtime.

const path = require('path');

const { startRuntime } = require('..');

async function main() {
  const runtime = await startRuntime(path.join(__dirname, 'seed', 'edgefc.json'));
  console.log(`edgefc runtime listening on ${runtime.socketPath}`);
  try {
    const fc = runtime.client();
    const started = process.hrtime.bigint();
    const result = await fc.invokeFunction({ serviceName: 'EdgeFC', functionName: 'Invoker' });
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`Invoker finished in ${elapsedMs.toFixed(1)} ms (worker start-up included):`,
      { functionError: result.functionError, statusCode: result.statusCode });
  } finally {
    await runtime.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
