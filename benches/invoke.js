'use strict';

// Sync invoke round trip through the embedded runtime: a caller in this
// process, the echo function in a Node worker. Prints p50/p99 latency at one
// call in flight and the throughput at 16 and 256 in flight.
// Usage: npm run bench [-- --quick]

const path = require('path');

const { startRuntime } = require('..');

const quick = process.argv.includes('--quick');

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function latency(fc, payload, calls) {
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i += 1) {
    const started = process.hrtime.bigint();
    await fc.invokeFunction({ functionId: 'echo', payload });
    samples[i] = Number(process.hrtime.bigint() - started) / 1000;
  }
  samples.sort();
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

async function throughput(fc, payload, inFlight, calls) {
  let next = 0;
  const started = process.hrtime.bigint();
  const lane = async () => {
    while (next < calls) {
      next += 1;
      await fc.invokeFunction({ functionId: 'echo', payload });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return calls / seconds;
}

async function main() {
  const runtime = await startRuntime(path.join(__dirname, 'fixtures', 'edgefc.json'));
  try {
    const fc = runtime.client();
    const rows = [];
    for (const [label, payload] of [['64 B', 'x'.repeat(64)], ['64 KiB', Buffer.alloc(64 * 1024, 7)], ['1 MiB', Buffer.alloc(1 << 20, 7)]]) {
      const calls = quick ? 50 : (payload.length > 100000 ? 300 : 3000);
      await latency(fc, payload, Math.min(calls, 100)); // warm-up: worker start, JIT
      const { p50, p99 } = await latency(fc, payload, calls);
      const t16 = await throughput(fc, payload, 16, calls * 2);
      const t256 = await throughput(fc, payload, 256, calls * 4);
      rows.push(`| ${label} | ${p50.toFixed(1)} | ${p99.toFixed(1)} | ${Math.round(t16)} | ${Math.round(t256)} |`);
    }
    console.log('| payload | p50 µs (1 in flight) | p99 µs | invokes/s (16 in flight) | invokes/s (256 in flight) |');
    console.log('|---|---|---|---|---|');
    console.log(rows.join('\n'));
  } finally {
    await runtime.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
