'use strict';

// BASELINE, not edgefc: the HTTP design of the original SDKs (Greengrass
// style), kept small. A Node HTTP/1.1 keep-alive server is the local
// runtime: callers POST /invoke (JSON, payload base64) and then GET
// /result/<id>; the worker long-polls GET /work and POSTs /result/<id>.
// Usage: node runtime.js <socket path>

const http = require('http');

const jobs = [];
const idleWorkers = [];
const results = new Map();
const waitingCallers = new Map();
let nextId = 1;

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function sendJson(res, value) {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function dispatch() {
  while (jobs.length > 0 && idleWorkers.length > 0) {
    sendJson(idleWorkers.shift(), jobs.shift());
  }
}

const server = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/invoke') {
    const { functionId, payload } = JSON.parse(await readBody(req));
    const id = String(nextId);
    nextId += 1;
    jobs.push({ id, functionId, payload });
    dispatch();
    sendJson(res, { id });
  } else if (req.method === 'GET' && req.url === '/work') {
    idleWorkers.push(res);
    dispatch();
  } else if (req.method === 'POST' && req.url.startsWith('/result/')) {
    const id = req.url.slice('/result/'.length);
    const result = JSON.parse(await readBody(req));
    res.writeHead(204);
    res.end();
    const caller = waitingCallers.get(id);
    if (caller) {
      waitingCallers.delete(id);
      sendJson(caller, result);
    } else {
      results.set(id, result);
    }
  } else if (req.method === 'GET' && req.url.startsWith('/result/')) {
    const id = req.url.slice('/result/'.length);
    const result = results.get(id);
    if (result) {
      results.delete(id);
      sendJson(res, result);
    } else {
      waitingCallers.set(id, res);
    }
  } else {
    res.writeHead(404);
    res.end();
  }
});
server.keepAliveTimeout = 60000;
server.listen(process.argv[2], () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
