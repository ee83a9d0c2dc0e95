#!/usr/bin/env node
'use strict';

const fs = require('fs');
const { parseArgs } = require('util');

const { FCClient, EdgeFCError, startRuntime } = require('..');

const USAGE = `Usage:
  edgefc run --config edgefc.json
      Runs the local runtime in the foreground until SIGINT or SIGTERM.
  edgefc invoke <functionId | service/function> --config edgefc.json
         [--payload S | --payload-file F] [--async] [--context JSON]
      Invokes a function of the running runtime and prints its result.

The config may also come from the EDGEFC_CONFIG environment variable.`;

/** Exit codes: 0 ok, 1 the call failed, 2 bad usage, 3 the function reported an error. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_FUNCTION_ERROR = 3;

class UsageError extends Error {}

function parse(argv) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        payload: { type: 'string' },
        'payload-file': { type: 'string' },
        async: { type: 'boolean', default: false },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
}

function configPath(values) {
  const config = values.config || process.env.EDGEFC_CONFIG;
  if (!config) {
    throw new UsageError('--config edgefc.json is required');
  }
  return config;
}

async function run(values) {
  const runtime = await startRuntime(configPath(values));
  console.log(`edgefc runtime listening on ${runtime.socketPath}`);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await runtime.stop();
  console.log('edgefc runtime stopped');
}

/** `service/function` names a function by its names; anything else is a function id. */
function target(name) {
  const slash = name.indexOf('/');
  if (slash > 0 && slash < name.length - 1 && !name.startsWith('acs:')) {
    return { serviceName: name.slice(0, slash), functionName: name.slice(slash + 1) };
  }
  return { functionId: name };
}

function invokerContext(json) {
  if (json === undefined) {
    return undefined;
  }
  try {
    JSON.parse(json);
  } catch (err) {
    throw new UsageError(`--context must be JSON: ${err.message}`);
  }
  return Buffer.from(json).toString('base64');
}

async function invoke(values, positionals) {
  if (positionals.length !== 1) {
    throw new UsageError('invoke takes exactly one function: <functionId | service/function>');
  }
  if (values.payload !== undefined && values['payload-file'] !== undefined) {
    throw new UsageError('give --payload or --payload-file, not both');
  }
  const payload = values['payload-file'] !== undefined
    ? fs.readFileSync(values['payload-file'])
    : values.payload;
  const fc = new FCClient({ config: configPath(values) });
  const result = await fc.invokeFunction({
    ...target(positionals[0]),
    invocationType: values.async ? 'Async' : 'Sync',
    invokerContext: invokerContext(values.context),
    payload,
  });
  if (values.async) {
    process.stdout.write(`${result}\n`);
    return 0;
  }
  if (result.functionError) {
    process.stderr.write(`function error (${result.functionError}): `);
    process.stderr.write(result.payload);
    process.stderr.write('\n');
    return EXIT_FUNCTION_ERROR;
  }
  process.stdout.write(result.payload);
  if (typeof result.payload === 'string' && process.stdout.isTTY) {
    process.stdout.write('\n');
  }
  return 0;
}

async function main(argv) {
  const { values, positionals } = parse(argv);
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return values.help || command === 'help' ? 0 : EXIT_USAGE;
  }
  if (command === 'run') {
    await run(values);
    return 0;
  }
  if (command === 'invoke') {
    return invoke(values, rest);
  }
  throw new UsageError(`unknown command "${command}"`);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    if (err instanceof UsageError) {
      console.error(`edgefc: ${err.message}\n\n${USAGE}`);
      process.exitCode = EXIT_USAGE;
    } else if (err instanceof EdgeFCError) {
      console.error(`edgefc: ${err.code}: ${err.message}`);
      process.exitCode = EXIT_FAILED;
    } else {
      console.error(err);
      process.exitCode = EXIT_FAILED;
    }
  },
);
