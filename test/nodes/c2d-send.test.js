'use strict';
// c2d send and c2d feedback in a real Node-RED runtime: official SDK devices on the other side of the local hub.
const test = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');
const { createSasToken } = require('../../nodes/core/sas.js');
const { helper, nodeModules, startHub, configNode, collect, waitFor } = require('../support/flows');

const HOSTILE = 'x & y = z % + # / é 漢字';

function sendFlow(hub, send = {}) {
  const { node: cfg, credentials } = configNode(hub);
  // Flow nodes need a position: without x and y the runtime takes a node for a config node.
  const placed = (nodes) => nodes.map((n) => (n.z ? { x: 100, y: 100, ...n } : n));
  return {
    credentials,
    flow: placed([
      { id: 'tab', type: 'tab', label: 'test' },
      cfg,
      {
        id: 'send',
        z: 'tab',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        trackDelivery: true,
        trackTimeout: 30,
        mappings: [],
        wires: [['delivery']],
        ...send,
      },
      { id: 'fb', z: 'tab', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['feedback']] },
      { id: 'catch', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'delivery', z: 'tab', type: 'helper' },
      { id: 'feedback', z: 'tab', type: 'helper' },
      { id: 'caught', z: 'tab', type: 'helper' },
    ]),
  };
}

async function sdkDevice(hub, id, transport, onMessage) {
  await hub.registerDevice(id);
  let str = hub.deviceConnectionString(id);
  if (transport === Amqp) str = str.replace(/HostName=[^;]+/, `HostName=localhost:${hub.ports.amqps}`);
  const dev = DeviceClient.fromConnectionString(str, transport);
  dev.setOptions({ ca: hub.caPem });
  dev.on('error', () => undefined);
  dev.on('message', (m) => onMessage(m, dev));
  await dev.open();
  return dev;
}

test('c2d send', async (t) => {
  await helper.startServer();
  t.after(() => helper.stopServer());
  process.env.IOTHUB_TEST_PLANT = 'plant 7 / hall #2';

  for (const [name, transport] of [
    ['MQTT', Mqtt],
    ['AMQP', Amqp],
  ]) {
    await t.test(
      `three mapping rows reach an official ${name} device exactly; feedback Success; delivery delivered`,
      async () => {
        const hub = await startHub();
        const got = [];
        const dev = await sdkDevice(hub, `sdk-${name}`, transport, (m, d) => {
          got.push(m);
          d.complete(m, () => undefined);
        });
        try {
          const { flow, credentials } = sendFlow(hub, {
            deviceId: `sdk-${name}`,
            mappings: [
              { name: 'correlationId', value: 'corr', valueType: 'msg' },
              { name: 'messageId', value: 'order-{{payload.id}}', valueType: 'template' },
              { name: 'plant', value: 'IOTHUB_TEST_PLANT', valueType: 'env' },
              { name: 'hostile & name', value: HOSTILE, valueType: 'str' },
            ],
          });
          await helper.load(nodeModules, flow, credentials);
          const feedback = collect(helper.getNode('feedback'), 3);
          const delivery = collect(helper.getNode('delivery'), 3);
          for (let i = 1; i <= 3; i++)
            helper.getNode('send').receive({ payload: { id: i, text: HOSTILE }, corr: `c-${i}` });
          await waitFor(() => got.length === 3, 'the device receives 3');
          got.sort((a, b) => a.messageId.localeCompare(b.messageId));
          got.forEach((m, i) => {
            assert.deepEqual(JSON.parse(m.data.toString()), { id: i + 1, text: HOSTILE });
            assert.equal(m.messageId, `order-${i + 1}`);
            assert.equal(m.correlationId, `c-${i + 1}`);
            assert.equal(m.contentType, 'application/json');
            const props = Object.fromEntries(
              m.properties.propertyList.filter((p) => p.key !== 'iothub-ack').map((p) => [p.key, p.value]),
            );
            assert.deepEqual(props, { plant: 'plant 7 / hall #2', 'hostile & name': HOSTILE });
          });
          const records = await feedback;
          assert.deepEqual(records.map((r) => `${r.originalMessageId}:${r.statusCode}`).sort(), [
            'order-1:Success',
            'order-2:Success',
            'order-3:Success',
          ]);
          const outcomes = await delivery;
          assert.deepEqual(outcomes.map((o) => `${o.messageId}:${o.delivery}`).sort(), [
            'order-1:delivered',
            'order-2:delivered',
            'order-3:delivered',
          ]);
          assert.ok(
            outcomes.every((o) => o.feedback.statusCode === 'Success' && o.corr.startsWith('c-')),
            'the original msg comes back',
          );
        } finally {
          await helper.unload().catch(() => undefined);
          await dev.close();
          await hub.stop();
        }
      },
    );
  }

  await t.test(
    'rejected, expired, purged, queue full on exactly the 51st, device not found, 70 KB refused before sending',
    async () => {
      const hub = await startHub();
      const rejecter = await sdkDevice(hub, 'rejecter', Amqp, (m, d) => d.reject(m, () => undefined));
      await hub.registerDevice('sleepy');
      await hub.registerDevice('purged');
      await hub.registerDevice('full');
      try {
        const { flow, credentials } = sendFlow(hub, { ttl: '' });
        await helper.load(nodeModules, flow, credentials);
        const send = helper.getNode('send');
        const outcomes = [];
        helper.getNode('delivery').on('input', (msg) => outcomes.push(msg));
        const caught = [];
        helper.getNode('caught').on('input', (msg) => caught.push(msg));

        send.receive({ payload: 'no', deviceId: 'rejecter', messageId: 'x' });
        await waitFor(() => outcomes.length === 1, 'rejected outcome');
        assert.equal(outcomes[0].delivery, 'rejected');

        send.receive({ payload: 'late', deviceId: 'sleepy', expiryTimeUtc: Date.now() + 2000 });
        await waitFor(() => outcomes.length === 2, 'expired outcome', 8000);
        assert.equal(outcomes[1].delivery, 'expired');

        send.receive({ payload: 'gone', deviceId: 'purged' });
        await waitFor(() => hub.queueLength('purged') === 1, 'queued');
        const owner = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
        const auth = createSasToken({
          resourceUri: 'localhost',
          key: owner,
          keyName: 'iothubowner',
          expiresAt: Date.now() / 1000 + 600,
        });
        await new Promise((resolve, reject) => {
          https
            .request(
              {
                host: '127.0.0.1',
                port: hub.ports.https,
                servername: 'localhost',
                method: 'DELETE',
                path: '/devices/purged/commands',
                headers: { authorization: auth },
                ca: hub.caPem,
              },
              (res) => res.resume().on('end', resolve),
            )
            .on('error', reject)
            .end();
        });
        await waitFor(() => outcomes.length === 3, 'purged outcome');
        assert.equal(outcomes[2].delivery, 'purged');

        for (let i = 1; i <= 51; i++) send.receive({ payload: `q${i}`, deviceId: 'full', n: i });
        await waitFor(() => hub.queueLength('full') === 50 && caught.length === 1, 'queue full error');
        assert.equal(caught[0].n, 51, 'exactly the 51st fails');
        assert.match(caught[0].error.message, /queue is full|queue limit/);

        send.receive({ payload: 'who', deviceId: 'ghost', n: 'ghost' });
        await waitFor(() => caught.length === 2, 'device not found');
        assert.equal(caught[1].n, 'ghost');
        assert.match(caught[1].error.message, /not found/i);

        send.receive({ payload: Buffer.alloc(70 * 1024), deviceId: 'sleepy', n: 'big' });
        await waitFor(() => caught.length === 3, 'too large');
        assert.equal(caught[2].n, 'big');
        assert.match(caught[2].error.message, /65536/);
        assert.equal(hub.queueLength('sleepy'), 0, 'nothing was sent');
      } finally {
        await helper.unload().catch(() => undefined);
        await rejecter.close();
        await hub.stop();
      }
    },
  );

  await t.test(
    'a burst of 3,000 msgs reaches the device whole and in order, each completed once; at a stop the msgs still held fail with a message that says so',
    async () => {
      const hub = await startHub({ queueDepth: 20_000 });
      const got = [];
      const dev = await sdkDevice(hub, 'burst', Mqtt, (m, d) => {
        got.push(Number(m.data.toString()));
        d.complete(m, () => undefined);
      });
      try {
        const { flow, credentials } = sendFlow(hub, { deviceId: 'burst', ack: 'none', trackDelivery: false });
        flow.push(
          { id: 'complete', z: 'tab', x: 1, y: 1, type: 'complete', scope: ['send'], uncaught: false, wires: [['ok']] },
          { id: 'ok', z: 'tab', x: 1, y: 1, type: 'helper' },
        );
        await helper.load(nodeModules, flow, credentials);
        const send = helper.getNode('send');
        const completed = [];
        helper.getNode('ok').on('input', (msg) => completed.push(msg.payload));
        const caught = [];
        helper.getNode('caught').on('input', (msg) => caught.push(msg));
        // Connected first: a burst while connecting goes to the connection's own queue instead.
        send.receive({ payload: '0' });
        await waitFor(() => completed.length === 1, 'the first msg sent');
        for (let i = 1; i <= 3000; i++) send.receive({ payload: String(i) });
        await waitFor(() => completed.length === 3001 && got.length === 3001, 'the burst sent and received', 60_000);
        assert.deepEqual(caught, []);
        assert.deepEqual(
          got,
          Array.from({ length: 3001 }, (_, i) => i),
          'in order, none twice',
        );
        assert.deepEqual(
          completed,
          Array.from({ length: 3001 }, (_, i) => String(i)),
          'each completed once, in order',
        );

        // 5,000 more and a stop at once: those not yet on their way fail, naming the stop; none is lost without a word.
        // Every done of the send node, errors included, through the runtime's own hook (the helper's spies are gone
        // once unload begins). The helper loads no message catalog: the text is its key there.
        const stopped = [];
        // The runtime's hooks, not those of another copy of @node-red/util (CI also runs this on Node-RED 5).
        const { hooks } = helper._RED;
        hooks.add('onComplete.burst-test', (ev) => {
          if (
            ev.node.id === 'send' &&
            /stopped .* before this msg was sent|closedBeforeSent/.test(ev.error?.message ?? '')
          )
            stopped.push(ev.msg.n);
        });
        t.after(() => hooks.remove('*.burst-test'));
        const before = got.length;
        for (let i = 1; i <= 5000; i++) send.receive({ payload: `s${i}`, n: i });
        await helper.unload();
        // The service connection is closed: once the device has taken what reached the hub, that is all there is.
        await waitFor(() => hub.queueLength('burst') === 0, 'the device drains its queue', 30_000);
        assert.ok(got.length - before <= 5000 - stopped.length, 'no held msg was sent');
        assert.ok(stopped.length >= 1, 'some msgs were still held at the stop');
        const first = 5001 - stopped.length;
        assert.deepEqual(
          stopped,
          Array.from({ length: stopped.length }, (_, i) => first + i),
          "the held ones are the burst's tail, in order",
        );
      } finally {
        await helper.unload().catch(() => undefined);
        await dev.close();
        await hub.stop();
      }
    },
  );
});
