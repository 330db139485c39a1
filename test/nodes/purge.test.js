'use strict';
// Purge from a flow: msg.action "purge" on c2d send empties a device's C2D queue over IoT Hub's REST API; the official
// azure-iothub Registry, beside the node, reads the queue depth (cloudToDeviceMessageCount) before and after.
const test = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const tls = require('node:tls');
const { Registry } = require('azure-iothub');
const { helper, nodeModules, startHub, configNode, waitFor } = require('../support/flows');

function flow(hub) {
  const { node: cfg, credentials } = configNode(hub);
  const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
  return {
    credentials,
    flow: [
      { id: 'tab', type: 'tab' },
      cfg,
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        trackDelivery: true,
        trackTimeout: 60,
        mappings: [],
        wires: [['out']],
      }),
      at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['feedback']] }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'feedback', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ],
  };
}

/**
 * The official registry client for HostName=localhost. It always dials port 443, so its agent's sockets go to the local
 * hub's ephemeral HTTPS port instead (as a DNS entry would); the SDK writes and reads every request itself.
 */
function registryOf(hub) {
  const registry = Registry.fromConnectionString(
    hub.hubConnectionString.replace(/HostName=[^;]+/, 'HostName=localhost'),
  );
  const agent = new https.Agent({ keepAlive: false, ca: hub.caPem });
  agent.createConnection = (opts, cb) =>
    tls.connect({ ...opts, host: '127.0.0.1', port: hub.ports.https, servername: 'localhost', ca: hub.caPem }, cb);
  registry._restApiClient.setOptions({ http: { agent } });
  return { registry, agent };
}

async function c2dCount(registry, id) {
  const { responseBody } = await registry.get(id);
  return responseBody.cloudToDeviceMessageCount;
}

test('purge from a flow', async (t) => {
  await helper.startServer();
  t.after(() => helper.stopServer());

  await t.test(
    'msg.action "purge": 7 queued messages purged, { totalMessagesPurged, deviceId } out, the 7 tracked sends end purged, feedback Purged; the official Registry sees 7 then 0',
    async () => {
      const hub = await startHub({ devices: ['sleeper', 'other'] });
      const { registry, agent } = registryOf(hub);
      try {
        const { flow: f, credentials } = flow(hub);
        await helper.load(nodeModules, f, credentials);
        const send = helper.getNode('send');
        const out = [];
        const feedback = [];
        const caught = [];
        helper.getNode('out').on('input', (m) => out.push(m));
        helper.getNode('feedback').on('input', (m) => feedback.push(m));
        helper.getNode('caught').on('input', (m) => caught.push(m));

        for (let i = 0; i < 7; i++) send.receive({ payload: `m${i}`, deviceId: 'sleeper' });
        send.receive({ payload: 'stays', deviceId: 'other' });
        await waitFor(() => hub.queueLength('sleeper') === 7 && hub.queueLength('other') === 1, '8 queued');
        assert.equal(await c2dCount(registry, 'sleeper'), 7, 'the official Registry reads 7 queued');

        send.receive({ action: 'purge', deviceId: 'sleeper', tag: 'p' });
        await waitFor(() => out.some((m) => m.tag === 'p'), 'the purge result');
        const result = out.find((m) => m.tag === 'p');
        assert.deepEqual(result.payload, { totalMessagesPurged: 7, deviceId: 'sleeper' });
        assert.equal(await c2dCount(registry, 'sleeper'), 0, 'the official Registry reads 0 queued');
        assert.equal(await c2dCount(registry, 'other'), 1, "another device's queue is untouched");

        await waitFor(() => out.filter((m) => m.delivery === 'purged').length === 7, '7 tracked sends end purged');
        await waitFor(
          () => feedback.filter((m) => m.payload.statusCode === 'Purged').length === 7,
          '7 Purged feedback records',
        );
        assert.ok(out.filter((m) => m.delivery).every((m) => m.deviceId === 'sleeper' && m.delivery === 'purged'));

        // An empty queue purges to 0, not an error.
        send.receive({ action: 'purge', deviceId: 'sleeper', tag: 'again' });
        await waitFor(() => out.some((m) => m.tag === 'again'), 'the second purge');
        assert.equal(out.find((m) => m.tag === 'again').payload.totalMessagesPurged, 0);

        // A device the hub does not know, and an action nobody knows: both reach Catch with what to fix.
        send.receive({ action: 'purge', deviceId: 'nobody', tag: 'ghost' });
        send.receive({ action: 'delete', deviceId: 'sleeper', tag: 'bad' });
        await waitFor(() => caught.length === 2, 'two errors on Catch');
        const ghost = caught.find((m) => m.tag === 'ghost');
        assert.match(ghost.error.message, /not found/i);
        const bad = caught.find((m) => m.tag === 'bad');
        assert.match(bad.error.message, /msg\.action "delete".*"purge"/);
        assert.equal(out.filter((m) => m.tag === 'bad' || m.tag === 'ghost').length, 0);
        for (const m of [...out, ...caught]) assert.doesNotMatch(JSON.stringify(m), /SharedAccess|sig=/);
      } finally {
        await helper.unload().catch(() => undefined);
        agent.destroy();
        await hub.stop();
      }
    },
  );
});
