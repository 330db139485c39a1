'use strict';
// A hostile MQTT hub (issue 15, part 4): a raw TLS server speaking MQTT 3.1.1 byte by byte (mqtt-packet), sending what a
// broken or malicious hub could: topics that are not C2D topics, property bags that do not decode, odd but readable bags,
// a body over 256 KB, packets with bits no MQTT peer may set, frames cut in half, a peer that closes mid-frame, a CONNACK or
// SUBACK that never comes. Each case: the device receive node reports it (Catch with what came, status) or delivers what
// can be read, the runtime stays up (no uncaught exception, no unhandled rejection), and the next good message arrives.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const tls = require('node:tls');
const mqttPacket = require('mqtt-packet');
const { watchCrashes } = require('../support/crash-watch');
const { helper, nodeModules, waitFor } = require('../support/flows');
const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');

// Anything that escapes a handler fails the case it happened in (and keeps the process up long enough to say so).
const crashes = watchCrashes();

const DEVICE = 'hostile-m';
const PREFIX = `devices/${DEVICE}/messages/devicebound/`;
const KEEPALIVE_S = 3;

/** A PUBLISH written by hand: any topic bytes, any flags. */
function rawPublish(topicBytes, payload, { qos = 1, messageId = 1, flags } = {}) {
  const head = flags ?? 0x30 | (qos << 1);
  const body = Buffer.concat([
    Buffer.from([topicBytes.length >> 8, topicBytes.length & 0xff]),
    topicBytes,
    qos > 0 ? Buffer.from([messageId >> 8, messageId & 0xff]) : Buffer.alloc(0),
    payload,
  ]);
  const len = [];
  let n = body.length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    len.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from([head, ...len]), body]);
}

async function hostileMqttHub(material) {
  const conns = [];
  const behaviour = { connack: true, suback: true, subackCode: 1, connackCode: 0 };
  let nextId = 1;
  const secureContext = tls.createSecureContext({ key: material.keyPem, cert: material.certPem });
  // TLS over a socket of our own, so a case can reset the TCP connection under it.
  const server = net.createServer((raw) => {
    raw.on('error', () => undefined);
    const socket = new tls.TLSSocket(raw, { isServer: true, secureContext });
    const c = { socket, raw, subscribed: false, closed: false, acked: new Set(), parserErrors: [] };
    conns.push(c);
    const write = (packet) => {
      if (!socket.destroyed) socket.write(mqttPacket.generate(packet));
    };
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') {
        c.clientId = p.clientId;
        if (behaviour.connack) write({ cmd: 'connack', returnCode: behaviour.connackCode, sessionPresent: false });
      } else if (p.cmd === 'subscribe') {
        if (!behaviour.suback) return;
        write({ cmd: 'suback', messageId: p.messageId, granted: [behaviour.subackCode] });
        c.subscribed = behaviour.subackCode < 0x80;
      } else if (p.cmd === 'pingreq') write({ cmd: 'pingresp' });
      else if (p.cmd === 'puback' || p.cmd === 'pubcomp') c.acked.add(p.messageId);
      else if (p.cmd === 'pubrec') write({ cmd: 'pubrel', messageId: p.messageId });
    });
    parser.on('error', (e) => c.parserErrors.push(e.message));
    socket.on('data', (b) => parser.parse(b));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      c.closed = true;
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    conns,
    behaviour,
    /** The connection the device is subscribed on, if any. */
    live: () => conns.findLast((c) => c.subscribed && !c.closed),
    id: () => (nextId = (nextId % 65535) + 1),
    publish(c, topic, payload, qos = 1) {
      const messageId = this.id();
      c.socket.write(
        mqttPacket.generate({ cmd: 'publish', topic, payload, qos, messageId, retain: false, dup: false }),
      );
      return messageId;
    },
    close: () => {
      for (const c of conns) c.raw.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

const text = (m) =>
  Buffer.isBuffer(m.payload)
    ? m.payload.toString('utf8')
    : typeof m.payload === 'string'
      ? m.payload
      : JSON.stringify(m.payload);

// Each case: what the hub does (act) and what the node must show for it (expect):
//  'arrives': a message is delivered with its fields as read (check);
//  'unreadable': no msg can be made: the Catch node gets the topic and body as they came, the status counts it, the PUBLISH is
//    acknowledged (the hub would only send it again);
//  'reconnect': the connection is unusable (a protocol violation, a cut, a handshake that never ends): the status says so and the
//    device connects again.
const CASES = [
  // Odd but readable bags: delivered as read, as the official SDK does.
  {
    name: 'topic without the trailing /',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `devices/${DEVICE}/messages/devicebound`, 'a'),
    check: (m) => assert.deepEqual(m.properties, {}),
  },
  {
    name: 'bare key, empty pairs, empty key',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}&&bare&&=v&k=1&`, 'a'),
    check: (m) => assert.deepEqual({ ...m.properties }, { bare: '', '': 'v', k: '1' }),
  },
  {
    name: 'a key twice: the last one wins',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}k=1&k=2`, 'a'),
    check: (m) => assert.equal(m.properties.k, '2'),
  },
  {
    name: '$.exp that is not a date',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}%24.exp=tomorrow&%24.mid=x`, 'a'),
    check: (m) => {
      assert.equal(m.expiryTimeUtc, undefined);
      assert.equal(m.systemProperties['$.exp'], 'tomorrow');
      assert.equal(m.messageId, 'x');
    },
  },
  {
    name: 'iothub-ack that is no ack mode',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}iothub-ack=sometimes`, 'a'),
    check: (m) => {
      assert.equal(m.ack, undefined);
      assert.equal(m.systemProperties['iothub-ack'], 'sometimes');
    },
  },
  {
    name: 'unknown system keys',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}%24.zz=1&%24.=2&%24.mid`, 'a'),
    check: (m) => {
      assert.equal(m.systemProperties['$.zz'], '1');
      assert.equal(m.messageId, '');
    },
  },
  {
    name: '__proto__, constructor and toString as keys',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}__proto__=p&constructor=c&toString=t`, 'a'),
    check: (m) => {
      assert.ok(Object.hasOwn(m.properties, '__proto__'));
      assert.equal(m.properties.constructor, 'c');
      assert.equal(m.properties.toString, 't');
    },
  },
  {
    name: 'escaped UTF-8, + and %2B',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}%E2%9C%93=a+b%2B%20`, 'a'),
    check: (m) => assert.equal(m.properties['✓'], 'a+b+ '),
  },
  {
    name: 'a topic of 60,000 bytes',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}big=${'x'.repeat(60_000)}`, 'a'),
    check: (m) => assert.equal(m.properties.big.length, 60_000),
  },
  {
    name: 'a body of 300 KB (over 256 KB)',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}%24.mid=big`, Buffer.alloc(300 * 1024, 0x61)),
    check: (m) => assert.equal(text(m).length, 300 * 1024),
  },
  {
    name: 'a body that is not UTF-8',
    expect: 'arrives',
    act: (h, c) => h.publish(c, PREFIX, Buffer.from([0xff, 0xfe, 0x00, 0xc3])),
    check: (m) => assert.deepEqual(m.payload, Buffer.from([0xff, 0xfe, 0x00, 0xc3])),
  },
  {
    name: 'JSON content type, body not JSON',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}%24.ct=application%2Fjson`, '{nope'),
    check: (m) => assert.equal(m.payload, '{nope'),
  },
  {
    name: 'QoS 0 publish',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}q=0`, 'a', 0),
    check: (m) => assert.equal(m.properties.q, '0'),
  },
  {
    name: 'QoS 2 publish',
    expect: 'arrives',
    act: (h, c) => h.publish(c, `${PREFIX}q=2`, 'a', 2),
    check: (m) => assert.equal(m.properties.q, '2'),
  },
  {
    name: 'a topic that is not valid UTF-8',
    expect: 'arrives',
    act: (h, c) =>
      c.socket.write(
        rawPublish(Buffer.concat([Buffer.from(PREFIX), Buffer.from([0x6b, 0x3d, 0xff, 0xfe])]), Buffer.from('a'), {
          messageId: h.id(),
        }),
      ),
    check: (m) => assert.equal(m.properties.k, '\ufffd\ufffd'),
  },
  {
    name: 'a C2D topic for another device (the SDK takes it too)',
    expect: 'arrives',
    act: (h, c) => h.publish(c, 'devices/other/messages/devicebound/o=1', 'a'),
    check: (m) => {
      assert.equal(m.properties.o, '1');
      assert.equal(m.deviceId, DEVICE);
    },
  },
  {
    name: 'a PUBLISH cut in two TCP writes 200 ms apart',
    expect: 'arrives',
    act: async (h, c) => {
      const bytes = rawPublish(Buffer.from(`${PREFIX}split=1`), Buffer.from('halves'), { messageId: h.id() });
      c.socket.write(bytes.subarray(0, 7));
      await new Promise((r) => setTimeout(r, 200));
      c.socket.write(bytes.subarray(7));
    },
    check: (m) => assert.equal(m.properties.split, '1'),
  },

  // Not C2D messages at all: nothing to deliver; Catch gets what came.
  { name: 'a telemetry topic', expect: 'unreadable', topic: `devices/${DEVICE}/messages/events/a=1` },
  { name: 'a twin topic', expect: 'unreadable', topic: '$iothub/twin/res/200/?$rid=1' },
  { name: 'an empty topic', expect: 'unreadable', topic: '' },
  { name: 'a topic with a wildcard', expect: 'unreadable', topic: `devices/${DEVICE}/messages/+/x` },
  { name: 'malformed percent-encoding (%ZZ)', expect: 'unreadable', topic: `${PREFIX}a=%ZZ` },
  { name: 'a truncated UTF-8 escape', expect: 'unreadable', topic: `${PREFIX}%E2%9C=1` },
  { name: 'a key with a lone %', expect: 'unreadable', topic: `${PREFIX}%=1` },

  // Packets no MQTT peer may send, and broken connections: reconnect.
  {
    name: 'a PUBLISH with both QoS bits set',
    expect: 'reconnect',
    act: (h, c) =>
      c.socket.write(rawPublish(Buffer.from(`${PREFIX}q=3`), Buffer.from('a'), { flags: 0x36, messageId: h.id() })),
  },
  {
    name: 'a remaining length of five bytes',
    expect: 'reconnect',
    act: (h, c) => c.socket.write(Buffer.from([0x32, 0xff, 0xff, 0xff, 0xff, 0x7f])),
  },
  {
    name: 'a PUBACK with reserved flags set',
    expect: 'reconnect',
    act: (h, c) => c.socket.write(Buffer.from([0x4f, 0x02, 0x00, 0x01])),
  },
  {
    name: 'a CONNECT sent to the device (a server-bound packet)',
    expect: 'reconnect',
    act: (h, c) =>
      c.socket.write(
        mqttPacket.generate({ cmd: 'connect', clientId: 'x', protocolVersion: 4, keepalive: 0, clean: true }),
      ),
  },
  {
    name: 'a DISCONNECT sent to the device (MQTT 3.1.1 has none from a server)',
    expect: 'reconnect',
    act: (h, c) => c.socket.write(Buffer.from([0xe0, 0x00])),
  },
  {
    name: 'a SUBSCRIBE sent to the device',
    expect: 'reconnect',
    act: (h, c) =>
      c.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: '#', qos: 1 }] })),
  },
  {
    name: 'half a PUBLISH, then the hub closes',
    expect: 'reconnect',
    act: (h, c) => {
      const b = rawPublish(Buffer.from(`${PREFIX}half=1`), Buffer.from('lost'), { messageId: h.id() });
      c.socket.end(b.subarray(0, b.length >> 1));
    },
  },
  {
    name: 'half a PUBLISH, then the hub resets the connection',
    expect: 'reconnect',
    act: (h, c) => {
      const b = rawPublish(Buffer.from(`${PREFIX}half=2`), Buffer.from('lost'), { messageId: h.id() });
      c.socket.write(b.subarray(0, 5), () => setTimeout(() => c.raw.resetAndDestroy(), 50));
    },
  },
  {
    name: 'the hub closes mid-header (one byte of a PUBLISH)',
    expect: 'reconnect',
    act: (h, c) => c.socket.end(Buffer.from([0x32])),
  },
  {
    name: 'a CONNACK that never comes',
    expect: 'reconnect',
    slow: true,
    act: (h, c) => {
      h.behaviour.connack = false;
      c.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((x) => x.clientId && x.closed),
        'the client to give up on a silent CONNECT',
        20_000,
      );
      h.behaviour.connack = true;
    },
  },
  {
    name: 'a SUBACK that never comes',
    expect: 'reconnect',
    slow: true,
    act: (h, c) => {
      h.behaviour.suback = false;
      c.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((x) => x.closed),
        'the client to give up on a silent SUBSCRIBE',
        20_000,
      );
      h.behaviour.suback = true;
    },
  },
  {
    name: 'a SUBACK refusing the subscription (0x80)',
    expect: 'reconnect',
    act: (h, c) => {
      h.behaviour.subackCode = 0x80;
      c.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((x) => x.closed),
        'the client to close on a refused subscription',
        20_000,
      );
      h.behaviour.subackCode = 1;
    },
  },
  {
    name: 'a CONNACK with return code 77',
    expect: 'reconnect',
    act: (h, c) => {
      h.behaviour.connackCode = 77;
      c.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((x) => x.closed),
        'the client to close on a bad CONNACK',
        20_000,
      );
      h.behaviour.connackCode = 0;
    },
  },
];

test(
  `hostile MQTT hub: ${CASES.length} cases, each reported or delivered as read, no crash, the next good message arrives`,
  { timeout: 150_000 },
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-hostile-mqtt-'));
    const material = ensureTlsMaterial(dir, ['localhost']);
    const hub = await hostileMqttHub(material);
    await helper.startServer();
    const key = Buffer.alloc(32, 9).toString('base64');
    const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
    const flow = [
      { id: 'tab', type: 'tab' },
      {
        id: 'cfg',
        type: 'iothub-connection',
        mode: 'azure',
        deviceTransport: 'mqtt',
        serviceTransport: 'amqp',
        mqttPort: hub.port,
        keepAlive: KEEPALIVE_S,
      },
      at({
        id: 'rm',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: DEVICE,
        output: 'auto',
        settle: 'auto',
        wires: [['out']],
      }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ];
    const results = [];
    try {
      await helper.load(nodeModules, flow, {
        cfg: {
          connectionString: `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
          ca: material.caPem,
        },
      });
      const out = [];
      const caught = [];
      const statuses = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      helper.getNode('caught').on('input', (m) => caught.push(m));
      helper.getNode('rm').on('call:status', (c) => statuses.push(c.args[0]));
      await waitFor(() => hub.live(), 'the device subscribed', 20_000);

      for (const [i, c] of CASES.entries()) {
        const started = Date.now();
        const conn = await waitFor(() => hub.live(), `a subscribed connection before case ${i}`, 20_000);
        const mark = { out: out.length, caught: caught.length, statuses: statuses.length, conns: hub.conns.length };
        const since = (list, n) => list.slice(n);
        try {
          if (c.expect === 'unreadable') {
            const messageId = hub.publish(conn, c.topic, `body ${i}`);
            const got = await waitFor(() => since(caught, mark.caught)[0], 'the unreadable message on the Catch node');
            assert.equal(got.topic, c.topic, 'Catch gets the topic as it came');
            assert.equal(text(got), `body ${i}`, 'and the body as it came');
            assert.match(got.error.message, /unreadable/i);
            assert.equal(got.error.source.id, 'rm');
            await waitFor(
              () => conn.acked.has(messageId),
              'the unreadable PUBLISH acknowledged (the hub would only resend it)',
            );
            assert.ok(
              since(statuses, mark.statuses).some((s) => /unreadable/.test(s.text)),
              `the status counts it: ${JSON.stringify(since(statuses, mark.statuses))}`,
            );
            assert.equal(out.length, mark.out, 'nothing delivered for it');
            assert.equal(conn.closed, false, 'the connection stays up');
          } else if (c.expect === 'arrives') {
            await c.act(hub, conn);
            const m = await waitFor(() => since(out, mark.out)[0], 'the odd message delivered');
            c.check(m);
            assert.equal(caught.length, mark.caught, 'no error for it');
          } else {
            await c.act(hub, conn);
            await waitFor(() => conn.closed, 'the unusable connection closed', 10_000);
            if (c.after) await c.after(hub, mark);
            await waitFor(
              () => since(statuses, mark.statuses).some((s) => /reconnecting/.test(s.text)),
              'a reconnecting status',
              20_000,
            );
            assert.ok(conn.closed);
          }
          // The next good message arrives.
          const good = `good-${i}`;
          const live = await waitFor(() => hub.live(), 'the device subscribed again', 30_000);
          hub.publish(live, `${PREFIX}%24.mid=${good}`, 'good');
          await waitFor(
            () => out.some((m) => m.messageId === good && m.payload === 'good'),
            `${good} delivered`,
            15_000,
          );
          crashes.assertNone();
          results.push({ i, name: c.name, expect: c.expect, ok: true, ms: Date.now() - started });
        } catch (err) {
          results.push({ i, name: c.name, expect: c.expect, ok: false, err: err.message.split('\n')[0] });
          crashes.clear();
          // The next case needs a live connection: put the behaviour back.
          Object.assign(hub.behaviour, { connack: true, suback: true, subackCode: 1, connackCode: 0 });
        }
      }
      const failed = results.filter((r) => !r.ok);
      console.log(
        `# hostile MQTT hub: ${results.length} cases tried, ${failed.length} failed; crashes 0, unhandled rejections 0 (checked per case); next good message arrived ${results.filter((r) => r.ok).length}/${results.length}`,
      );
      for (const r of results)
        console.log(`#  ${r.ok ? 'ok ' : 'FAIL'} [${r.expect}] ${r.name}${r.ok ? ` (${r.ms} ms)` : `: ${r.err}`}`);
      assert.deepEqual(failed, []);
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.close();
      fs.rmSync(dir, { recursive: true, force: true });
      crashes.stop();
    }
  },
);
