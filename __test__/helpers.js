'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { after } = require('node:test');

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'edgefc.js');
const FIXTURES = path.join(__dirname, 'fixtures');

/** Every process a test file started; whatever is still running when its tests end is killed. */
const children = new Set();
after(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** A fixture function; `overrides` may set timeoutMs, maxConcurrency, functionId... */
function fixture(functionName, overrides = {}) {
  return {
    serviceName: 'Test',
    functionName,
    codeDir: path.join(FIXTURES, functionName),
    handler: 'index.handler',
    ...overrides,
  };
}

/**
 * Writes an edgefc.json (and its state dir) into a new temporary directory.
 * Functions run as the runtime's own user unless the config says otherwise:
 * the fixtures live in this checkout, which other users may not be able to
 * read (the tests of `runAs` itself set it).
 */
function writeConfig(config) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-'));
  const configPath = path.join(dir, 'edgefc.json');
  // A short grace: calls that never end (a spinning handler) would hold every stop for the default 10 s.
  fs.writeFileSync(configPath, JSON.stringify({ stateDir: 'state', runAs: 'runtime', shutdownGraceMs: 500, ...config }, null, 2));
  return configPath;
}

/**
 * Runs `edgefc run --config` as a child process, as a user would (as
 * `user`, `{uid, gid}`, when given: the test then runs as root), and
 * resolves once it says it is listening.
 */
async function startRuntimeProcess(config, { user, env } = {}) {
  const configPath = writeConfig(config);
  if (user) {
    fs.chownSync(path.dirname(configPath), user.uid, user.gid);
    fs.chownSync(configPath, user.uid, user.gid);
  }
  return runRuntimeProcess(configPath, user, env);
}

/** Runs `edgefc run` on an existing config (a runtime started again), resolving once it listens; `env` adds to the environment. */
async function runRuntimeProcess(configPath, user, env) {
  const child = track(spawn(process.execPath, [CLI, 'run', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
    ...user,
  }));
  let output = '';
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stdout.on('data', (chunk) => { output += chunk; });
  child.stderr.on('data', (chunk) => { output += chunk; });
  await new Promise((resolve, reject) => {
    const onData = () => {
      if (output.includes('listening on')) {
        child.stdout.off('data', onData);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    exited.then(({ code }) => reject(new Error(`runtime exited with ${code}:\n${output}`)));
  });
  return {
    configPath,
    child,
    exited,
    output: () => output,
    /** The runtime's own pid (the child is the `edgefc run` wrapper). */
    pid: () => Number(fs.readFileSync(path.join(path.dirname(configPath), 'state', 'edgefc.lock'), 'utf8')),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
      }
      return exited;
    },
  };
}

/** Runs the CLI to completion. */
function runCli(args, options = {}) {
  return new Promise((resolve) => {
    const child = track(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
    const stdout = [];
    let stderr = '';
    child.stdout.on('data', (chunk) => stdout.push(chunk));
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr }));
  });
}

module.exports = { ROOT, CLI, FIXTURES, fixture, writeConfig, startRuntimeProcess, runRuntimeProcess, runCli, track };
