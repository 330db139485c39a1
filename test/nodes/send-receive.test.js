'use strict';
// inject -> c2d send -> local hub -> device receive, with feedback and delivery tracking, in a real Node-RED runtime.
const test = require('node:test');
const assert = require('node:assert/strict');
const { helper, nodeModules, startHub, configNode, collect } = require('../support/flows');

const HOSTILE = 'a & b = c % d + e # f / g $ h é 漢字 🙂';

test('c2d send to device receive over each device transport, with feedback and delivery tracking', async (t) => {
  const hub = await startHub();
  await helper.startServer();
  t.after(async () => {
    await helper.unload();
    await helper.stopServer();
    await hub.stop();
  });
  process.env.IOTHUB_TEST_SITE = 'plant 7 / hall #2';
  for (const transport of ['mqtt', 'mqtt-ws', 'amqp', 'amqp-ws']) {
    await t.test(transport, async () => {
      const deviceId = `dev-${transport}`;
      // Registered up front: a send that overtakes the device's first connection would rightly get "device not found".
      await hub.registerDevice(deviceId);
      const { node: cfg, credentials } = configNode(hub, { deviceTransport: transport });
      const flow = [
        cfg,
        {
          id: 'send',
          type: 'iothub-c2d-send',
          connection: 'cfg',
          deviceId,
          deviceIdType: 'str',
          ack: 'full',
          ttl: '',
          trackDelivery: true,
          trackTimeout: 30,
          wires: [['delivery']],
          mappings: [
            { name: 'correlationId', value: 'corr', valueType: 'msg' },
            { name: 'messageId', value: 'order-{{payload.id}}', valueType: 'template' },
            { name: 'site', value: 'IOTHUB_TEST_SITE', valueType: 'env' },
            { name: 'hostile & name', value: HOSTILE, valueType: 'str' },
          ],
        },
        {
          id: 'recv',
          type: 'iothub-device-receive',
          connection: 'cfg',
          deviceId,
          output: 'auto',
          settle: 'auto',
          wires: [['received']],
        },
        { id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['feedback']] },
        { id: 'received', type: 'helper' },
        { id: 'feedback', type: 'helper' },
        { id: 'delivery', type: 'helper' },
      ];
      await helper.load(nodeModules, flow, credentials);
      const received = collect(helper.getNode('received'), 3);
      const feedback = collect(helper.getNode('feedback'), 3);
      const delivery = collect(helper.getNode('delivery'), 3);
      const send = helper.getNode('send');
      for (let i = 1; i <= 3; i++) send.receive({ payload: { id: i, text: HOSTILE }, corr: `corr-${i}` });
      const msgs = await received;
      msgs.sort((a, b) => a.payload.id - b.payload.id);
      msgs.forEach((m, i) => {
        assert.deepEqual(m.payload, { id: i + 1, text: HOSTILE });
        assert.equal(m.deviceId, deviceId);
        assert.equal(m.messageId, `order-${i + 1}`);
        assert.equal(m.correlationId, `corr-${i + 1}`);
        assert.equal(m.contentType, 'application/json');
        assert.equal(m.ack, 'full');
        assert.equal(m.topic, `devices/${deviceId}/messages/devicebound`);
        assert.deepEqual(m.properties, { site: 'plant 7 / hall #2', 'hostile & name': HOSTILE });
      });
      const records = await feedback;
      assert.deepEqual(records.map((r) => r.originalMessageId).sort(), ['order-1', 'order-2', 'order-3']);
      assert.ok(records.every((r) => r.topic === 'Success' && r.statusCode === 'Success' && r.deviceId === deviceId));
      const outcomes = await delivery;
      assert.deepEqual(outcomes.map((o) => `${o.messageId}:${o.delivery}`).sort(), [
        'order-1:delivered',
        'order-2:delivered',
        'order-3:delivered',
      ]);
      await helper.unload();
    });
  }
});
