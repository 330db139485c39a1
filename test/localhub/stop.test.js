'use strict';
// A hub stops while clients are still in their TLS handshake (a restart on a busy machine): stop() ends those sockets
// too, and the same ports serve again at once. Before, server.close() waited for them until the handshake timed
// out (120 s), which held a hub restart (and the 10,000-message restart test) for minutes.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startHub } = require('../support/flows');

/** A TCP connection that never sends its TLS ClientHello (or AMQP header): the server holds it, mid-handshake. */
function silentClient(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

test(
  'stop() ends connections still in their TLS handshake, and the ports serve again',
  { timeout: 60_000 },
  async () => {
    let hub = await startHub();
    const { dataDir, ports } = hub;
    const names = ['mqtts', 'amqps', 'amqp', 'https', 'dps'];
    const clients = await Promise.all(names.map((n) => silentClient(ports[n])));
    const ended = clients.map((s) => new Promise((r) => s.once('close', r)));
    // Every server has accepted its socket before the stop.
    await new Promise((r) => setImmediate(r));
    await hub.stop();
    await Promise.all(ended);
    for (const s of clients) assert.ok(s.destroyed, 'the hub ended the half-open connection');
    hub = await startHub({ dataDir, ports });
    try {
      assert.deepEqual(
        names.map((n) => hub.ports[n]),
        names.map((n) => ports[n]),
      );
      const again = await Promise.all(names.map((n) => silentClient(hub.ports[n])));
      const endedAgain = again.map((s) => new Promise((r) => s.once('close', r)));
      await hub.stop();
      await Promise.all(endedAgain);
    } finally {
      await hub.stop();
    }
  },
);
