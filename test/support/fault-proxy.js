'use strict';
// A TCP proxy on 127.0.0.1 that can cut every connection through it, for fault-injection tests.
const net = require('node:net');

async function faultProxy(targetPort) {
  const pairs = new Set();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    /** Destroys every connection through the proxy; returns how many were cut. */
    cut() {
      const n = pairs.size;
      for (const p of [...pairs]) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      return n;
    },
    get connections() {
      return pairs.size;
    },
    /** Connections accepted since the proxy started. */
    get accepted() {
      return accepted;
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(r));
    },
  };
}

module.exports = { faultProxy };
