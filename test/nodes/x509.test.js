'use strict';
// device receive with an X.509 device (certificate and key held as config node credentials) over MQTT and AMQP, the
// refusals it explains in its status, and devices behind an IoT Edge gateway (GatewayHostName, the gateway's CA).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Message } = require('azure-iot-common');
const { ServiceClient: OurServiceClient } = require('../../nodes/core/service-client.js');
const { parseConnectionString } = require('../../nodes/core/connection-string.js');
const { helper, nodeModules, startHub, collect, waitFor } = require('../support/flows');
const { CertFactory } = require('../support/certs');

const certs = new CertFactory();
test.after(() => certs.remove());

const TRANSPORTS = ['mqtt', 'amqp'];

/** A config node for one device string, with TLS credentials, and a device receive node for that device. */
function flow(hub, { connectionString, transport, ca, cert, key, passphrase, deviceId }) {
  return {
    flow: [
      { id: 'tab', type: 'tab' },
      {
        id: 'cfg',
        type: 'iothub-connection',
        name: 'x509',
        mode: 'azure',
        deviceTransport: transport,
        serviceTransport: 'amqp',
        mqttPort: hub.ports.mqtts,
        amqpPort: hub.ports.amqps,
        wsPort: hub.ports.https,
      },
      {
        id: 'recv',
        z: 'tab',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId,
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      },
      { id: 'out', z: 'tab', type: 'helper' },
    ],
    credentials: { cfg: { connectionString, ca, cert, key, ...(passphrase ? { passphrase } : {}) } },
  };
}

/** Status and warnings of the receive node since it was made (the test helper's spies record every call). */
function watch(node) {
  return {
    get statuses() {
      return node.status.args.map((a) => a[0]);
    },
    get warnings() {
      return node.warn.args.map((a) => String(a[0]));
    },
    get errors() {
      return node.error.args.map((a) => String(a[0]?.message ?? a[0]));
    },
  };
}

test('device receive with an X.509 device', async (t) => {
  await helper.startServer();
  t.after(() => helper.stopServer());

  await t.test(
    'self-signed (key pasted on one line) and CA-signed (encrypted key, passphrase) receive over MQTT, AMQP and both over WebSockets',
    async () => {
      const logs = [];
      const hub = await startHub({ log: (_l, text) => logs.push(text) });
      const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
      await svc.open();
      try {
        const self = certs.make('node-ss');
        const root = certs.make('Node Test Root', { ca: true });
        const leaf = certs.make('node-ca', { issuer: root });
        await hub.registerDevice('node-ss', { x509Thumbprint: self.sha256 });
        await hub.registerDevice('node-ca', { authType: 'certificateAuthority' });
        hub.addCaCertificate('root', root.certPem, true);
        // And over WebSockets: the certificate rides in the TLS handshake under the WebSocket.
        for (const transport of [...TRANSPORTS, 'mqtt-ws', 'amqp-ws']) {
          for (const [id, creds] of [
            // A password field drops line breaks: the key comes as one line.
            ['node-ss', { cert: self.certPem, key: self.keyPem.replace(/\n/g, '') }],
            [
              'node-ca',
              { cert: leaf.certPem, key: certs.encryptedKey(leaf, 'pass phrase'), passphrase: 'pass phrase' },
            ],
          ]) {
            const f = flow(hub, {
              connectionString: hub.deviceConnectionString(id),
              transport,
              ca: hub.caPem,
              deviceId: id,
              ...creds,
            });
            assert.match(f.credentials.cfg.connectionString, /;x509=true$/);
            await helper.load(nodeModules, f.flow, f.credentials);
            const seen = watch(helper.getNode('recv'));
            await waitFor(() => hub.isDeviceConnected(id), `${id} over ${transport}`);
            const out = collect(helper.getNode('out'), 1);
            await svc.send(id, new Message(`x509 ${id} ${transport}`));
            const [msg] = await out;
            assert.equal(msg.payload, `x509 ${id} ${transport}`);
            assert.equal(msg.deviceId, id);
            await waitFor(() => seen.statuses.at(-1)?.fill === 'green', 'green status');
            await helper.unload();
            await waitFor(() => !hub.isDeviceConnected(id), `${id} disconnected`);
          }
        }
        assert.ok(
          logs.includes('AMQP device node-ss authenticated by its client certificate (SASL: none)'),
          logs.join('\n'),
        );
      } finally {
        await helper.unload().catch(() => undefined);
        await svc.close();
        await hub.stop();
      }
    },
  );

  await t.test(
    'a wrong, expired or another device\'s certificate: "certificate refused: ..." in the status, the fix in the log, no retry storm',
    async () => {
      const logs = [];
      const hub = await startHub({ log: (_l, text) => logs.push({ at: Date.now(), text }) });
      try {
        const own = certs.make('refused');
        const wrong = certs.make('refused');
        const expired = certs.expired('refused');
        const other = certs.make('someone-else');
        await hub.registerDevice('refused', { x509Thumbprint: own.sha1 });
        await hub.registerDevice('someone-else', { x509Thumbprint: other.sha1 });
        await hub.registerDevice('expired-dev', { x509Thumbprint: expired.sha1 });
        const cases = [
          ['refused', wrong, /^certificate refused: the hub does not accept it$/],
          ['expired-dev', expired, /^certificate refused: it expired on \d{4}-\d\d-\d\d$/],
          ['refused', other, /^certificate refused: the hub does not accept it$/],
        ];
        for (const transport of TRANSPORTS) {
          for (const [id, c, status] of cases) {
            logs.length = 0;
            const f = flow(hub, {
              connectionString: `HostName=${hub.hostName};DeviceId=${id};x509=true`,
              transport,
              ca: hub.caPem,
              deviceId: id,
              cert: c.certPem,
              key: c.keyPem,
            });
            await helper.load(nodeModules, f.flow, f.credentials);
            const seen = watch(helper.getNode('recv'));
            await waitFor(() => seen.statuses.find((s) => status.test(s.text)), `${transport} ${id}: refused status`);
            const refusals = () =>
              logs.filter(
                (l) =>
                  l.text.startsWith(`MQTT connect refused for ${id}`) || l.text.startsWith(`AMQP device ${id} refused`),
              );
            const first = refusals()[0];
            assert.ok(first, `${transport} ${id}: the hub refused it`);
            // Counted over a window: a refused certificate waits the slow "unauthorized" backoff (10 s ± 50 %).
            await new Promise((r) => setTimeout(r, 3000));
            assert.equal(refusals().length, 1, `${transport} ${id}: attempts within 3 s of the first refusal`);
            const st = seen.statuses.find((s) => status.test(s.text));
            assert.equal(st.fill, 'red');
            assert.ok(
              seen.warnings.some((w) => /register its thumbprint|install a new certificate/.test(w)),
              `the log says the fix: ${seen.warnings.join(' | ')}`,
            );
            assert.ok(!seen.warnings.some((w) => /BEGIN|PRIVATE/.test(w)), 'no key material in the log');
            await helper.unload();
          }
        }
      } finally {
        await helper.unload().catch(() => undefined);
        await hub.stop();
      }
    },
  );

  await t.test('a bad key or missing passphrase is a clear setting error, not a connection attempt', async () => {
    const hub = await startHub();
    try {
      const c = certs.make('badkey');
      const stranger = certs.make('badkey');
      await hub.registerDevice('badkey', { x509Thumbprint: c.sha1 });
      for (const [creds, text] of [
        [{ cert: c.certPem, key: stranger.keyPem }, /the client key does not belong to the client certificate/],
        [{ cert: c.certPem, key: certs.encryptedKey(c, 'pw') }, /the client key is encrypted: give its passphrase/],
        [{ cert: c.certPem, key: certs.encryptedKey(c, 'pw'), passphrase: 'nope' }, /passphrase is wrong/],
        [{ cert: 'not a certificate', key: c.keyPem }, /not a PEM certificate/],
      ]) {
        const f = flow(hub, {
          connectionString: `HostName=${hub.hostName};DeviceId=badkey;x509=true`,
          transport: 'mqtt',
          ca: hub.caPem,
          deviceId: 'badkey',
          ...creds,
        });
        await helper.load(nodeModules, f.flow, f.credentials);
        const seen = watch(helper.getNode('recv'));
        await waitFor(() => seen.errors.some((e) => text.test(e)), `error ${text} (got ${seen.errors.join(' | ')})`);
        assert.ok(
          seen.statuses.some((st) => st.fill === 'red'),
          'a red status',
        );
        assert.equal(hub.isDeviceConnected('badkey'), false);
        await helper.unload();
      }
    } finally {
      await helper.unload().catch(() => undefined);
      await hub.stop();
    }
  });

  await t.test(
    'behind an IoT Edge gateway: the node (SAS and X.509) and the SDK receive through GatewayHostName with the gateway CA; a wrong CA says "certificate not trusted"',
    async () => {
      const gwCa = certs.make('Node test gateway CA', { ca: true });
      const x = certs.make('gw-node-x509');
      const logs = [];
      const hub = await startHub({
        host: 'myhub.azure-devices.net',
        tls: { hostNames: ['localhost'], ca: { certPem: gwCa.certPem, keyPem: gwCa.keyPem } },
        log: (_l, text) => logs.push(text),
      });
      const info = parseConnectionString(hub.hubConnectionString);
      const svc = new OurServiceClient({
        hostName: info.hostName,
        gatewayHostName: `localhost:${hub.ports.amqps}`,
        ca: gwCa.certPem,
        sharedAccessKeyName: info.sharedAccessKeyName,
        sharedAccessKey: info.sharedAccessKey,
      });
      svc.open();
      const sdkGot = [];
      let sdk;
      try {
        const { primaryKey } = await hub.registerDevice('gw-node');
        const { primaryKey: sdkKey } = await hub.registerDevice('gw-sdk');
        await hub.registerDevice('gw-node-x509', { x509Thumbprint: x.sha1 });
        // The official SDK beside the node, through the same gateway.
        sdk = DeviceClient.fromConnectionString(
          `HostName=myhub.azure-devices.net;DeviceId=gw-sdk;SharedAccessKey=${sdkKey};GatewayHostName=localhost:${hub.ports.mqtts}`,
          Mqtt,
        );
        await sdk.setOptions({ ca: gwCa.certPem });
        sdk.on('message', (m) => {
          sdkGot.push(m.data.toString());
          sdk.complete(m, () => undefined);
        });
        await sdk.open();
        for (const transport of TRANSPORTS) {
          for (const [id, creds] of [
            [
              'gw-node',
              {
                connectionString: `HostName=myhub.azure-devices.net;DeviceId=gw-node;SharedAccessKey=${primaryKey};GatewayHostName=localhost`,
              },
            ],
            [
              'gw-node-x509',
              {
                connectionString:
                  'HostName=myhub.azure-devices.net;DeviceId=gw-node-x509;x509=true;GatewayHostName=localhost',
                cert: x.certPem,
                key: x.keyPem,
              },
            ],
          ]) {
            const f = flow(hub, { transport, ca: gwCa.certPem, deviceId: id, ...creds });
            await helper.load(nodeModules, f.flow, f.credentials);
            await waitFor(() => hub.isDeviceConnected(id), `${id} through the gateway over ${transport}`);
            const out = collect(helper.getNode('out'), 1);
            await svc.send(id, { body: Buffer.from(`gateway ${transport}`), properties: {} });
            assert.equal((await out)[0].payload, `gateway ${transport}`);
            await helper.unload();
            await waitFor(() => !hub.isDeviceConnected(id), `${id} gone`);
          }
          await svc.send('gw-sdk', { body: Buffer.from(`sdk ${transport}`), properties: {} });
          await waitFor(() => sdkGot.includes(`sdk ${transport}`), 'the SDK device receives through the gateway');

          // The hub's own CA instead of the gateway's.
          const f = flow(hub, {
            transport,
            ca: certs.make('Not the gateway CA', { ca: true }).certPem,
            deviceId: 'gw-node',
            connectionString: `HostName=myhub.azure-devices.net;DeviceId=gw-node;SharedAccessKey=${primaryKey};GatewayHostName=localhost`,
          });
          await helper.load(nodeModules, f.flow, f.credentials);
          const seen = watch(helper.getNode('recv'));
          await waitFor(
            () => seen.statuses.find((s) => /^certificate not trusted: localhost · /.test(s.text)),
            `${transport}: untrusted status (got ${JSON.stringify(seen.statuses)})`,
          );
          assert.equal(hub.isDeviceConnected('gw-node'), false);
          await helper.unload();
        }
        assert.ok(!logs.some((l) => /another hub/.test(l)), 'every token named the hub');
      } finally {
        await helper.unload().catch(() => undefined);
        await sdk?.close();
        await svc.close();
        await hub.stop();
      }
    },
  );
});
