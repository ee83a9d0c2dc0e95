'use strict';

// No process escapes: what a function starts ends with its worker, workers
// end with the runtime, and the runtime ends with the `edgefc run` wrapper,
// however each of them ends.

const assert = require('assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { describe, it } = require('node:test');

const { FCClient } = require('..');
const { FIXTURES, fixture, startRuntimeProcess } = require('./helpers');

/** False once `pid` has ended (a zombie has ended too). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Whether `pid` ends within `ms`. */
async function endsWithin(pid, ms) {
  const deadline = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => { setTimeout(resolve, 20); });
  }
  return true;
}

function runtimePid(runtime) {
  return Number(fs.readFileSync(path.join(path.dirname(runtime.configPath), 'state', 'edgefc.lock'), 'utf8'));
}

async function started() {
  const runtime = await startRuntimeProcess({ functions: [fixture('spawner', { functionId: 'spawner' })] });
  const fc = new FCClient({ config: runtime.configPath });
  const call = async (payload) => Number((await fc.invokeFunction({ functionId: 'spawner', payload })).payload);
  return { runtime, call };
}

describe('process lifetime', () => {
  it('ends what a function started when its worker is stopped', async () => {
    const { runtime, call } = await started();
    const child = await call('spawn');
    assert.ok(alive(child));
    await runtime.stop();
    assert.ok(await endsWithin(child, 2000), `the function's child ${child} outlived the runtime`);
  });

  const groupsAvailable = process.getuid() === 0 && fs.existsSync('/sys/fs/cgroup');
  it('ends what a function started in a session of its own (setsid), as root', {
    skip: groupsAvailable ? false : 'needs root and /sys/fs/cgroup: workers get a control group only then',
  }, async () => {
    const { runtime, call } = await started();
    const child = await call('setsid');
    assert.ok(alive(child));
    await runtime.stop();
    assert.ok(await endsWithin(child, 2000), `the function's setsid child ${child} outlived the runtime`);
  });

  it('ends what a function started in a session of its own when the runtime is killed, as root', {
    skip: process.getuid() === 0 ? false : 'needs root: workers get a PID namespace of their own only then',
  }, async () => {
    const { runtime, call } = await started();
    const child = await call('setsid');
    process.kill(runtimePid(runtime), 'SIGKILL');
    assert.ok(await endsWithin(child, 2000), `the function's setsid child ${child} outlived the killed runtime`);
    await runtime.stop();
  });

  it('ends the workers when the runtime is killed', async () => {
    const { runtime, call } = await started();
    const worker = await call('pid');
    process.kill(runtimePid(runtime), 'SIGKILL');
    assert.ok(await endsWithin(worker, 2000), `worker ${worker} outlived the runtime`);
    await runtime.stop();
  });

  it('ends the runtime when the edgefc run wrapper is killed', async () => {
    const { runtime } = await started();
    const pid = runtimePid(runtime);
    runtime.child.kill('SIGKILL');
    assert.ok(await endsWithin(pid, 2000), `runtime ${pid} outlived its wrapper`);
  });
});

/**
 * Who runs a runtime without root's powers in this test: this user when it
 * is not root; as root, an unprivileged user, if that user can reach this
 * checkout (else null).
 */
function unprivilegedRunner() {
  if (process.getuid() !== 0) return { uid: process.getuid(), gid: process.getgid() };
  const user = unprivilegedUser();
  try {
    execFileSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, '..'))})`], { ...user, stdio: 'ignore' });
    return user;
  } catch {
    return null;
  }
}

describe('process lifetime without root', () => {
  const runner = unprivilegedRunner();
  it('ends, when the runtime stops, what a function started in a session of its own', {
    skip: runner ? false : 'this checkout is out of reach of an unprivileged user',
  }, async () => {
    const runtime = await startRuntimeProcess({ functions: [publicFixture('spawner', { functionId: 'spawner' })] }, {
      user: process.getuid() === 0 ? runner : undefined,
    });
    const fc = new FCClient({ config: runtime.configPath });
    const child = Number((await fc.invokeFunction({ functionId: 'spawner', payload: 'setsid' })).payload);
    assert.ok(alive(child));
    await runtime.stop();
    assert.ok(await endsWithin(child, 2000), `the function's setsid child ${child} outlived the runtime`);
  });
});

describe('memorySize', () => {
  it('stops a leaking function before twice its limit; the next call gets a fresh worker', { timeout: 60000 }, async () => {
    const memorySize = 128;
    const runtime = await startRuntimeProcess({ functions: [fixture('leaky', { functionId: 'leaky', memorySize })] });
    const fc = new FCClient({ config: runtime.configPath });
    let most = 0;
    let leakingPid;
    let failure;
    while (!failure) {
      const result = await fc.invokeFunction({ functionId: 'leaky', payload: 'leak' });
      if (result.functionError) {
        failure = JSON.parse(result.payload);
      } else {
        const { pid, rssMb } = JSON.parse(result.payload);
        leakingPid = pid;
        most = Math.max(most, rssMb);
      }
    }
    assert.equal(failure.errorType, 'MemoryLimitExceeded');
    assert.ok(most < 2 * memorySize, `the worker reached ${most} MB`);
    const fresh = JSON.parse((await fc.invokeFunction({ functionId: 'leaky', payload: 'fresh' })).payload);
    assert.notEqual(fresh.pid, leakingPid);
    await runtime.stop();
  });
});

/** Whether this runtime can cap a worker's memory with the kernel's memory controller. */
function memoryGroupsAvailable() {
  if (process.getuid() !== 0) return false;
  if (fs.existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) return true;
  try {
    return fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').split(/\s+/).includes('memory');
  } catch {
    return false;
  }
}

describe('memorySize, as root', { skip: memoryGroupsAvailable() ? false : 'needs root and the memory controller' }, () => {
  it('counts what a function\'s children hold: a leaking child takes the worker down with MemoryLimitExceeded', { timeout: 60000 }, async () => {
    const runtime = await startRuntimeProcess({
      functions: [fixture('leaky', { functionId: 'leaky', memorySize: 64, timeoutMs: 30000 })],
    });
    const fc = new FCClient({ config: runtime.configPath });
    const before = JSON.parse((await fc.invokeFunction({ functionId: 'leaky', payload: 'fresh' })).payload);
    const leaked = await fc.invokeFunction({ functionId: 'leaky', payload: 'child' });
    assert.equal(leaked.functionError, 'Unhandled', leaked.payload);
    assert.equal(JSON.parse(leaked.payload).errorType, 'MemoryLimitExceeded');
    const after = JSON.parse((await fc.invokeFunction({ functionId: 'leaky', payload: 'fresh' })).payload);
    assert.notEqual(after.pid, before.pid, 'a fresh worker');
    await runtime.stop();
  });
});

describe('credentials', () => {
  it('gives a worker no token and no socket path: its connection is handed over, already known', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('environ', { functionId: 'environ' })] });
    const fc = new FCClient({ config: runtime.configPath });
    const seen = JSON.parse((await fc.invokeFunction({ functionId: 'environ', payload: '' })).payload);
    await runtime.stop();
    assert.deepEqual(seen, { tokenInEnviron: false, tokenInProcess: false });
  });
});

/** A copy of a fixture in a new directory anyone may read, as a gateway's function code is. */
function publicFixture(name, overrides = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-public-'));
  fs.cpSync(path.join(FIXTURES, name), dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  return fixture(name, { codeDir: dir, ...overrides });
}

/** The user workers run as by default when the runtime is root. */
function unprivilegedUser() {
  for (const name of ['edgefc', 'nobody']) {
    try {
      return { uid: Number(execFileSync('id', ['-u', name])), gid: Number(execFileSync('id', ['-g', name])) };
    } catch {
      // no such user: try the next
    }
  }
  return null;
}

describe('runAs', { skip: process.getuid() === 0 ? false : 'needs root: only a root runtime switches users' }, () => {
  it('runs a function as an unprivileged user, with no supplementary group, when the config names none', async () => {
    const runtime = await startRuntimeProcess({ runAs: undefined, functions: [publicFixture('intruder', { functionId: 'f' })] });
    const fc = new FCClient({ config: runtime.configPath });
    const who = JSON.parse((await fc.invokeFunction({ functionId: 'f', payload: 'who' })).payload);
    await runtime.stop();
    const expected = unprivilegedUser();
    assert.deepEqual({ uid: who.uid, gid: who.gid, groups: who.groups }, { ...expected, groups: [expected.gid] });
  });

  it('runs a function as the user its runAs names, and as root only when told', async () => {
    const runtime = await startRuntimeProcess({
      runAs: undefined,
      functions: [
        publicFixture('intruder', { functionName: 'named', functionId: 'named', runAs: { uid: 4321, gid: 4322 } }),
        publicFixture('intruder', { functionName: 'root', functionId: 'root', runAs: 'runtime' }),
      ],
    });
    const fc = new FCClient({ config: runtime.configPath });
    const named = JSON.parse((await fc.invokeFunction({ functionId: 'named', payload: 'who' })).payload);
    const root = JSON.parse((await fc.invokeFunction({ functionId: 'root', payload: 'who' })).payload);
    await runtime.stop();
    assert.deepEqual([named.uid, named.gid], [4321, 4322]);
    assert.equal(root.uid, 0);
  });

  it('refuses to start when the user a function runs as cannot read its code', async () => {
    const hidden = fs.mkdtempSync(path.join(os.tmpdir(), 'efc-hidden-'));
    fs.cpSync(path.join(FIXTURES, 'echo'), path.join(hidden, 'echo'), { recursive: true });
    const started = startRuntimeProcess({ runAs: undefined, functions: [fixture('echo', { codeDir: path.join(hidden, 'echo') })] });
    await assert.rejects(started, (err) => {
      assert.match(err.message, new RegExp(`${hidden} is not searchable by .*set runAs`));
      return true;
    });
  });

  it('keeps a function from the runtime\'s state, the runtime\'s memory and its sibling of the same user', async () => {
    const runtime = await startRuntimeProcess({
      runAs: undefined,
      functions: [publicFixture('intruder', { functionName: 'victim', functionId: 'victim' }), publicFixture('intruder', { functionName: 'intruder', functionId: 'intruder' })],
    });
    const fc = new FCClient({ config: runtime.configPath });
    const victim = JSON.parse((await fc.invokeFunction({ functionId: 'victim', payload: 'who' })).payload);
    const intruder = JSON.parse((await fc.invokeFunction({ functionId: 'intruder', payload: 'who' })).payload);
    assert.equal(intruder.uid, victim.uid, 'both run as the same user');
    const stateDir = path.join(path.dirname(runtime.configPath), 'state');
    const targets = [
      path.join(stateDir, 'admin.token'),
      `/proc/${runtimePid(runtime)}/environ`,
      `/proc/${victim.pid}/environ`,
      `/proc/${victim.pid}/mem`,
    ];
    const tried = JSON.parse((await fc.invokeFunction({ functionId: 'intruder', payload: JSON.stringify(targets) })).payload);
    await runtime.stop();
    assert.deepEqual(tried, Object.fromEntries(targets.map((target) => [target, 'EACCES'])));
  });
});
