'use strict';
// Our AMQP frame writer (src/core/amqp-frames.ts) writes exactly the bytes rhea's frames.write_frame writes: for every
// kind of frame, after a frame big enough to grow the scratch buffer (its stale bytes must never leak), and on a real
// connection to the local hub, where every byte the socket got is compared with rhea's encoding of the same frames.
const test = require('node:test');
const assert = require('node:assert/strict');
const frames = require('rhea/lib/frames.js');
const rhea = require('rhea');
const { encodeFrames } = require('../../nodes/core/amqp-frames.js');
const { openAmqpConnection, whenOpen, Cbs, closeAmqpConnection } = require('../../nodes/core/amqp-connection.js');
const { resolveEndpoint } = require('../../nodes/core/endpoint.js');
const { parseConnectionString } = require('../../nodes/core/connection-string.js');
const { createSasToken } = require('../../nodes/core/sas.js');
const { startHub } = require('../support/flows');

const rheaBytes = (fs) => Buffer.concat(fs.map((f) => frames.write_frame(f)));

function sample(bodyBytes) {
  const message = rhea.message.encode({
    message_id: 'm1',
    to: '/devices/d/messages/devicebound',
    application_properties: { a: 'b', n: 7 },
    body: rhea.message.data_section(Buffer.alloc(bodyBytes, 0x61)),
  });
  return [
    frames.amqp_frame(
      0,
      frames.open({ container_id: 'c', hostname: 'h', idle_time_out: 90000, properties: { x: 'y' } }),
    ),
    frames.amqp_frame(1, frames.begin({ next_outgoing_id: 0, incoming_window: 2048, outgoing_window: 4096 })),
    frames.amqp_frame(
      1,
      frames.attach({ name: 'l', handle: 0, role: false, source: { address: 's' }, target: { address: 't' } }),
    ),
    frames.amqp_frame(
      1,
      frames.flow({ incoming_window: 10, next_incoming_id: 1, outgoing_window: 5, next_outgoing_id: 3 }),
    ),
    frames.amqp_frame(
      1,
      frames.transfer({ handle: 0, delivery_id: 9, delivery_tag: Buffer.from('9'), message_format: 0 }),
      message,
    ),
    frames.amqp_frame(1, frames.disposition({ role: true, first: 9, settled: true })),
    frames.amqp_frame(1, frames.detach({ handle: 0, closed: true, error: { condition: 'amqp:x', description: 'd' } })),
    frames.amqp_frame(0, frames.close({})),
    frames.amqp_frame(0),
    frames.sasl_frame(frames.sasl_init({ mechanism: 'ANONYMOUS' })),
  ];
}

test("every kind of frame: rhea's bytes, one by one and together", () => {
  for (const f of sample(10)) assert.deepEqual(encodeFrames([f]), frames.write_frame(f));
  assert.deepEqual(encodeFrames(sample(10)), rheaBytes(sample(10)));
});

test('after a frame that grew the buffer, small frames carry none of its bytes', () => {
  const big = sample(200_000);
  assert.deepEqual(encodeFrames(big), rheaBytes(big));
  // The scratch now holds 200,000 bytes of 'a': a byte the writer skipped and did not write would show.
  const small = sample(3);
  assert.deepEqual(encodeFrames(small), rheaBytes(small));
});

test(
  'on a real connection: every byte the socket gets is rhea encoding of the frames sent',
  { timeout: 30_000 },
  async () => {
    const hub = await startHub({ devices: ['frames-d'] });
    const c = parseConnectionString(hub.hubConnectionString);
    const e = resolveEndpoint({ hostName: c.hostName, ca: hub.caPem }, 5671);
    const connection = openAmqpConnection(e, false);
    const t = connection.amqp_transport;
    const ours = t.write;
    assert.notEqual(ours, Object.getPrototypeOf(t).write, 'our writer is installed');
    const expected = [];
    const written = [];
    t.write = function (socket) {
      // The first write (protocol header and open) is rhea's own; every later one is ours.
      const afterHeader = Boolean(this.header_sent);
      if (afterHeader) expected.push(rheaBytes(this.pending));
      const w = socket.write;
      socket.write = (b, ...rest) => {
        if (afterHeader) written.push(Buffer.from(b));
        return w.call(socket, b, ...rest);
      };
      try {
        return ours.call(this, socket);
      } finally {
        socket.write = w;
      }
    };
    try {
      await whenOpen(connection);
      const cbs = new Cbs(connection);
      const token = createSasToken({
        resourceUri: c.hostName,
        key: c.sharedAccessKey,
        keyName: c.sharedAccessKeyName,
        expiresAt: Math.floor(Date.now() / 1000) + 300,
      });
      await cbs.putToken(c.hostName, token);
      const sender = connection.open_sender({ target: { address: '/messages/devicebound' } });
      await new Promise((r) => sender.once('sendable', r));
      const accepted = new Promise((r) => sender.once('accepted', r));
      sender.send({ to: '/devices/frames-d/messages/devicebound', message_id: 'f1', body: 'hello' });
      await accepted;
      cbs.close();
      assert.ok(expected.length >= 5, `frames written: ${expected.length}`);
      assert.deepEqual(Buffer.concat(written), Buffer.concat(expected));
      assert.equal(hub.queueLength('frames-d'), 1, 'the hub took the message');
    } finally {
      await closeAmqpConnection(connection);
      await hub.stop();
    }
  },
);
