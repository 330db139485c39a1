'use strict';
// A TCP proxy on 127.0.0.1 that can cut, stall or slow every connection through it, for fault-injection tests.
const net = require('node:net');

async function faultProxy(targetPort) {
  const pairs = new Set();
  let accepted = 0;
  let stalled = false;
  let delayMs = 0;
  // Same delay for every chunk, so order is kept.
  const forward = (src, dst) =>
    src.on('data', (chunk) => {
      if (delayMs === 0) dst.write(chunk);
      else
        setTimeout(() => {
          if (!dst.destroyed) dst.write(chunk);
        }, delayMs);
    });
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
    forward(client, upstream);
    forward(upstream, client);
    if (stalled) upstream.pause();
    else client.resume();
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
        p.client.pause();
        p.upstream.pause();
      }
    },
    /** Moves bytes again; what waited is delivered, as after a hub's long pause. */
    resume() {
      stalled = false;
      for (const p of pairs) {
        p.client.resume();
        p.upstream.resume();
      }
    },
    /** Adds this much latency to every chunk, each way (0: none). */
    slow(ms) {
      delayMs = ms;
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
