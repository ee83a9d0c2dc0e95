#!/usr/bin/env node
'use strict';

const { spawn } = require('child_process');
const { once } = require('events');
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');

const { FCClient, EdgeFCError } = require('..');
const { RuntimeLink } = require('../lib/core/link');
const { runtimeCommand } = require('../lib/runtime');
const native = require('../native.js');

const USAGE = `Usage:
  edgefc run --config edgefc.json
      Runs the local runtime in the foreground until SIGINT or SIGTERM.
  edgefc invoke <functionId | service/function> --config edgefc.json
         [--payload S | --payload-file F] [--async] [--context JSON]
      Invokes a function of the running runtime and prints its result.
  edgefc publish <topic> --config edgefc.json [--payload S | --payload-file F]
      Publishes a message to the runtime's router and prints its id.
  edgefc subscribe <topicFilter> --config edgefc.json
      Prints every message published on a matching topic until interrupted.
  edgefc stats --config edgefc.json
      Prints every number the runtime keeps as JSON.
  edgefc top --config edgefc.json [--once]
      Shows each function's last minute, refreshed every 2 s (--once: one screen).
  edgefc dlq list --config edgefc.json
  edgefc dlq show <invocationId> --config edgefc.json
  edgefc dlq replay <invocationId | --all> --config edgefc.json
  edgefc dlq purge <invocationId | --all> --config edgefc.json
      Lists, shows, replays (same invocation id, first attempt again) or
      removes the Async invocations that failed their last attempt.
  edgefc token rotate --config edgefc.json
      Replaces the admin token (clients using --config pick the new one up).

The config may also come from the EDGEFC_CONFIG environment variable.`;

/** Exit codes: 0 ok, 1 the call failed, 2 bad usage, 3 the function reported an error. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_FUNCTION_ERROR = 3;
/** What the signal promise of `subscribe` resolves to. */
const INTERRUPTED = Symbol('interrupted');

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
        all: { type: 'boolean', default: false },
        once: { type: 'boolean', default: false },
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

/** Runs the standalone runtime in the foreground, passing signals on. */
async function run(values) {
  const [binary, args] = runtimeCommand(configPath(values));
  if (!fs.existsSync(binary)) {
    throw new EdgeFCError('ERR_CONFIG', `${binary} is missing: build it with "npm run build"`);
  }
  const child = spawn(binary, args, { stdio: 'inherit' });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const [code, signal] = await new Promise((resolve) => child.on('exit', (...how) => resolve(how)));
  return signal ? 1 : code;
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

function payloadOption(values) {
  if (values.payload !== undefined && values['payload-file'] !== undefined) {
    throw new UsageError('give --payload or --payload-file, not both');
  }
  return values['payload-file'] !== undefined ? fs.readFileSync(values['payload-file']) : values.payload;
}

function onlyArgument(positionals, what) {
  if (positionals.length !== 1) {
    throw new UsageError(`expected exactly one ${what}`);
  }
  return positionals[0];
}

async function invoke(values, positionals) {
  const name = onlyArgument(positionals, 'function: <functionId | service/function>');
  const payload = payloadOption(values);
  const fc = new FCClient({ config: configPath(values) });
  const result = await fc.invokeFunction({
    ...target(name),
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

async function publish(values, positionals) {
  const topic = onlyArgument(positionals, 'topic');
  const fc = new FCClient({ config: configPath(values) });
  const messageId = await fc.publish({ topic, payload: payloadOption(values) });
  process.stdout.write(`${messageId}\n`);
  return 0;
}

/** One line per message: `<topic> <source> <payload>`; binary payloads as base64. */
function formatMessage(message) {
  const payload = typeof message.payload === 'string' ? message.payload : `base64:${message.payload.toString('base64')}`;
  return `${message.topic} ${message.source} ${payload}\n`;
}

async function subscribe(values, positionals) {
  const topicFilter = onlyArgument(positionals, 'topic filter');
  const link = new RuntimeLink({ config: configPath(values) });
  let session;
  await link.call((s) => {
    session = s;
    return s.subscribe(topicFilter);
  });
  console.error(`edgefc: subscribed to ${topicFilter}`);
  // Says on stderr, when it grew, how many messages stdout was too slow for.
  let reportedDrops = 0;
  setInterval(() => {
    const dropped = session.droppedMessages();
    if (dropped > reportedDrops) {
      console.error(`edgefc: ${dropped} messages dropped so far: stdout is not keeping up`);
      reportedDrops = dropped;
    }
  }, 1000).unref();
  const interrupted = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  }).then(() => INTERRUPTED);
  for (;;) {
    const messages = await Promise.race([session.nextMessages(), interrupted]);
    if (messages === INTERRUPTED) {
      // The pending nextMessages() call would keep the process alive.
      process.exit(0);
    }
    if (messages === null) {
      console.error('edgefc: the runtime closed the subscription');
      process.exit(1);
    }
    let room = true;
    for (const message of messages) {
      room = process.stdout.write(formatMessage(message));
    }
    // Take no more messages than stdout can hold: the rest wait in the
    // connection's bounded queue, which drops (and counts) what does not fit.
    if (!room && (await Promise.race([once(process.stdout, 'drain'), interrupted])) === INTERRUPTED) {
      process.exit(0);
    }
  }
}

async function stats(values) {
  const link = new RuntimeLink({ config: configPath(values) });
  const stats = await link.call((session) => session.query('stats'));
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  return 0;
}

function seconds(value) {
  if (value === null || value === undefined) return '-';
  if (value < 0.001) return `${Math.round(value * 1e6)}us`;
  if (value < 1) return `${(value * 1000).toFixed(1)}ms`;
  return `${value.toFixed(2)}s`;
}

/** One screen of `edgefc top`: the gateway, then a row per function. */
function topScreen(stats) {
  const sum = (values) => values.reduce((total, value) => total + value, 0);
  const queues = new Map(stats.queues.functions.map((queue) => [queue.function, queue]));
  const rows = [['FUNCTION', 'CALLS/S', 'P50', 'P99', 'ERRORS', 'INVOCATIONS', 'RUNNING', 'QUEUED', 'ASYNC', 'PID', 'RSS']];
  for (const fn of stats.functions) {
    const minute = fn.lastMinute;
    const queue = queues.get(fn.function);
    const worker = fn.workers[0];
    const invocations = sum(Object.values(fn.invocations).map((outcomes) => sum(Object.values(outcomes))));
    rows.push([
      fn.function, minute.perSecond.toFixed(1), seconds(minute.runP50Seconds), seconds(minute.runP99Seconds), String(minute.errors),
      String(invocations), String(queue.running), String(queue.admitted.count - queue.running), String(queue.asyncPending),
      worker ? String(worker.pid) : '-', worker && worker.rssBytes !== null ? `${(worker.rssBytes / 2 ** 20).toFixed(1)}M` : '-',
    ]);
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const table = rows.map((row) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join('  '));
  const header = `edgefc ${stats.version} · gateway ${stats.gatewayId} · up ${Math.floor(stats.uptimeSeconds)}s · `
    + `connections ${stats.connections.open}/${stats.connections.max} · dead letters ${stats.store.deadLetters} · last minute per function:`;
  return `${header}\n\n${table.join('\n')}\n`;
}

async function top(values) {
  const link = new RuntimeLink({ config: configPath(values) });
  for (;;) {
    const screen = topScreen(await link.call((session) => session.query('stats')));
    if (values.once) {
      process.stdout.write(screen);
      return 0;
    }
    process.stdout.write(`\x1b[H\x1b[2J${screen}`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** Asks the running runtime for `operation` and prints its JSON answer. */
async function ask(values, operation) {
  const link = new RuntimeLink({ config: configPath(values) });
  const answer = await link.call((session) => session.query(operation));
  process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  return 0;
}

const DLQ_COMMANDS = new Set(['list', 'show', 'replay', 'purge']);

function dlq(values, [action, id]) {
  if (!DLQ_COMMANDS.has(action)) {
    throw new UsageError('dlq needs list, show, replay or purge');
  }
  if (action === 'list') {
    return ask(values, 'dlq.list');
  }
  const which = values.all && action !== 'show' ? 'all' : id;
  if (!which) {
    throw new UsageError(`dlq ${action} needs an invocation id${action === 'show' ? '' : ' or --all'}`);
  }
  return ask(values, `dlq.${action} ${which}`);
}

async function token(values, [action]) {
  if (action !== 'rotate') {
    throw new UsageError('token needs rotate');
  }
  try {
    return await ask(values, 'token.rotate');
  } catch (err) {
    if (!(err instanceof EdgeFCError) || err.code !== 'ERR_RUNTIME_UNAVAILABLE') throw err;
    // Not running: the next start makes a new token.
    const { adminTokenPath } = native.runtimeEndpoint(path.resolve(configPath(values)));
    fs.rmSync(adminTokenPath, { force: true });
    process.stdout.write(`the runtime is not running; it makes a new admin token at its next start (${adminTokenPath} removed)\n`);
    return 0;
  }
}

async function main(argv) {
  const { values, positionals } = parse(argv);
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return values.help || command === 'help' ? 0 : EXIT_USAGE;
  }
  if (command === 'run') {
    return run(values);
  }
  if (command === 'invoke') {
    return invoke(values, rest);
  }
  if (command === 'publish') {
    return publish(values, rest);
  }
  if (command === 'subscribe') {
    return subscribe(values, rest);
  }
  if (command === 'stats') {
    return stats(values);
  }
  if (command === 'top') {
    return top(values);
  }
  if (command === 'dlq') {
    return dlq(values, rest);
  }
  if (command === 'token') {
    return token(values, rest);
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
