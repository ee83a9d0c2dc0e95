'use strict';

// What the examples of the other APIs share: an embedded runtime on the
// example's edgefc.json, found by the facades through EDGEFC_CONFIG, for
// as long as `body` runs.

const path = require('path');

const { startRuntime } = require('..');

async function onEmbeddedRuntime(exampleDir, body) {
  const config = path.join(exampleDir, 'edgefc.json');
  const runtime = await startRuntime(config);
  // The facades find the runtime as FCClient does: here through its config.
  process.env.EDGEFC_CONFIG = config;
  try {
    await body();
  } finally {
    await runtime.stop();
  }
}

/** Runs an example, exiting 1 with the error if it fails. */
function runExample(exampleDir, body) {
  onEmbeddedRuntime(exampleDir, body).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { runExample };
