'use strict';

// No process escapes: what a function starts ends with its worker, workers
// end with the runtime, and the runtime ends with the `edgefc run` wrapper,
// however each of them ends.

const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { describe, it } = require('node:test');

const { FCClient } = require('..');
const { fixture, startRuntimeProcess } = require('./helpers');

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

describe('credentials', () => {
  it('gives a worker no token and no socket path: its connection is handed over, already known', async () => {
    const runtime = await startRuntimeProcess({ functions: [fixture('environ', { functionId: 'environ' })] });
    const fc = new FCClient({ config: runtime.configPath });
    const seen = JSON.parse((await fc.invokeFunction({ functionId: 'environ', payload: '' })).payload);
    await runtime.stop();
    assert.deepEqual(seen, { tokenInEnviron: false, tokenInProcess: false });
  });
});
