'use strict';

// A Mosquitto of its own for the two-gateways example and the benchmark:
// on a free port of 127.0.0.1, no persistence, stopped with kill().

const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((file) => fs.existsSync(file));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function accepting(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A Mosquitto of its own, on a free port of 127.0.0.1; resolves once it listens. */
async function startBroker(dir) {
  const port = await freePort();
  const config = path.join(dir, 'mosquitto.conf');
  // set_tcp_nodelay: without it, Nagle's algorithm delays each small answer by the peer's delayed ack (40 ms).
  fs.writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nset_tcp_nodelay true\n`);
  fs.chmodSync(dir, 0o755);
  const broker = childProcess.spawn(MOSQUITTO, ['-c', config], { stdio: 'ignore' });
  for (let tries = 0; !(await accepting(port)); tries += 1) {
    if (tries === 500 || broker.exitCode !== null) {
      throw new Error(`mosquitto did not start on port ${port}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { port, broker };
}

module.exports = { MOSQUITTO, startBroker };
