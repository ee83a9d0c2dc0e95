'use strict';

// BASELINE worker: long-polls the baseline runtime for work and runs the same
// echo handler edgefc hosts, with as many polls in flight as `lanes`.
// Usage: node worker.js <socket path> <handler module> <lanes>

const http = require('http');

const [socketPath, handlerPath, lanesText] = process.argv.slice(2);
const { handler } = require(handlerPath);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(lanesText) });

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, agent, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function lane() {
  for (;;) {
    const job = JSON.parse(await request('GET', '/work'));
    const event = Buffer.from(job.payload, 'base64');
    const result = await new Promise((resolve) => handler(event, { requestId: job.id }, (err, value) => resolve(value)));
    await request('POST', `/result/${job.id}`, JSON.stringify({ payload: Buffer.from(result).toString('base64') }));
  }
}

for (let i = 0; i < Number(lanesText); i += 1) {
  lane().catch(() => process.exit(0));
}
