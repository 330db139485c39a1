'use strict';
// A TCP proxy on 127.0.0.1 that can cut or stall every connection through it, for fault-injection tests.
const net = require('node:net');

async function faultProxy(targetPort) {
  const pairs = new Set();
  let accepted = 0;
  let stalled = false;
  const flow = (p) => {
    p.client.pipe(p.upstream);
    p.upstream.pipe(p.client);
  };
  const server = net.createServer((client) => {
    accepted++;
    // A stalled hub still accepts (the kernel does) but answers nothing: hold the bytes until resume.
    client.pause();
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
    if (!stalled) flow(pair);
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
    /** Stops moving bytes either way, on every connection and on new ones, as a hub that hangs. */
    stall() {
      stalled = true;
      for (const p of pairs) {
        p.client.unpipe(p.upstream);
        p.upstream.unpipe(p.client);
        p.client.pause();
        p.upstream.pause();
      }
    },
    /** Moves bytes again; what waited is delivered, as after a hub's long pause. */
    resume() {
      stalled = false;
      for (const p of pairs) flow(p);
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
