'use strict';
// A device's PUBACKs leave in few writes, and none is lost or held back by the cork that gathers them
// (src/core/mqtt-device.ts, coalesceWritesPerRead). Judged on the wire: a TLS server sends 1,000 C2D publishes of 600 bytes,
// each in a TLS record of its own, held back by a relay and written at once (600 KB: the device reads them over several
// reads and turns of its event loop), and counts the TLS records that bring the PUBACKs back. Measured in the bench hub's
// receive case (10,000 messages): 377 socket writes before the cork, 140 with it; in this test 8-14 records before and
// 5-7 with it, so the bound below guards against one write per PUBACK (1,000), not the cork's last gain.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const tls = require('node:tls');
const mqttPacket = require('mqtt-packet');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');
const { waitFor } = require('../support/flows');

const DEVICE = 'acks-dev';
const BURST = 1000;

/**
 * A TLS MQTT server behind a TCP relay that counts the TLS records the client sends (its bytes as they go on the wire).
 */
async function countingServer(material) {
  const state = { records: 0, acked: new Set(), socket: undefined, holdFor: 0, held: [] };
  const server = tls.createServer({ key: material.keyPem, cert: material.certPem }, (socket) => {
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const write = (p) => socket.write(mqttPacket.generate(p));
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') write({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      else if (p.cmd === 'subscribe') {
        write({ cmd: 'suback', messageId: p.messageId, granted: [1] });
        state.socket = socket;
      } else if (p.cmd === 'puback') state.acked.add(p.messageId);
    });
    socket.on('data', (b) => parser.parse(b));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  /** TLS records as they go by in one direction of the relay (type 23 is application data, after the handshake). */
  const records = (onRecord) => {
    let pending = Buffer.alloc(0);
    return (b) => {
      pending = Buffer.concat([pending, b]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        const end = 5 + pending.readUInt16BE(3);
        onRecord(pending.subarray(0, end), pending[0] === 23);
        pending = pending.subarray(end);
      }
    };
  };
  const relay = net.createServer((client) => {
    const up = net.connect(server.address().port, '127.0.0.1');
    for (const s of [client, up]) s.on('error', () => undefined);
    const countUp = records((_, data) => data && state.records++);
    client.on('data', (b) => {
      up.write(b);
      countUp(b);
    });
    // Down, until the burst: as it comes. The burst's records are held until all have come, then written at once, so
    // the device reads them together (as it does from a busy hub).
    const countDown = records((record, data) => {
      if (!state.holdFor || !data) return client.write(record);
      state.held.push(record);
      if (state.held.length === state.holdFor) {
        state.holdFor = 0;
        client.write(Buffer.concat(state.held.splice(0)));
      }
    });
    up.on('data', (b) => countDown(b));
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  const close = () => {
    relay.close();
    server.close();
  };
  return { close, state, port: relay.address().port };
}

test('1,000 publishes read together: every PUBACK comes back, in a handful of writes, not one each', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-acks-'));
  const material = ensureTlsMaterial(dir, ['localhost']);
  const { close, state, port } = await countingServer(material);
  const device = new DeviceClient({
    hostName: 'localhost',
    connectHost: '127.0.0.1',
    port,
    ca: material.caPem,
    deviceId: DEVICE,
    transport: 'mqtt',
    credentials: { sharedAccessKey: Buffer.from('k').toString('base64'), sharedAccessKeyName: 'p' },
  });
  const got = [];
  device.on('message', (m) => got.push(m));
  try {
    device.open();
    await waitFor(() => state.socket !== undefined, 'the device subscribed');
    // Let the connection's own records (the SUBSCRIBE and anything after it) land before counting.
    const before = state.records;
    // One TLS record per publish (each written in a turn of its own, as the local hub writes them as they come), all
    // written to the device at once.
    state.holdFor = BURST;
    for (let i = 0; i < BURST; i++) {
      state.socket.write(
        mqttPacket.generate({
          cmd: 'publish',
          qos: 1,
          messageId: i + 1,
          topic: `devices/${DEVICE}/messages/devicebound/%24.mid=m${i}&k=v`,
          payload: Buffer.alloc(600, `body ${i} `),
        }),
      );
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => state.acked.size === BURST, `all ${BURST} PUBACKs`);
    assert.equal(got.length, BURST);
    assert.deepEqual(
      got.map((m) => m.messageId),
      Array.from({ length: BURST }, (_, i) => `m${i}`),
    );
    const records = state.records - before;
    console.log(`# ${BURST} PUBACKs came in ${records} TLS record(s)`);
    assert.ok(records <= BURST / 20, `${BURST} PUBACKs came in ${records} TLS records`);
  } finally {
    await device.close();
    close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
