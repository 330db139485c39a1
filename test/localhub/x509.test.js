'use strict';
// X.509 devices and an IoT Edge gateway on the local hub, judged by the official device SDK (azure-iot-device with its
// x509 options, over MQTT and AMQP). Certificates are made here with openssl, in a temp dir (test/support/certs.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: DeviceClient, X509AuthenticationProvider } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');
const mqtt = require('mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { Message, NoRetry } = require('azure-iot-common');
const { start } = require('../../nodes/localhub/index.js');
const { ServiceClient: OurServiceClient } = require('../../nodes/core/service-client.js');
const { parseConnectionString } = require('../../nodes/core/connection-string.js');
const { hubDataDir, waitFor } = require('../support/flows');
const { CertFactory } = require('../support/certs');

const certs = new CertFactory();
test.after(() => certs.remove());

const TRANSPORTS = [
  ['MQTT', Mqtt, (hub) => hub.ports.mqtts],
  ['AMQP', Amqp, (hub) => hub.ports.amqps],
];

function x509String(host, id, gateway) {
  return `HostName=${host};DeviceId=${id};x509=true${gateway ? `;GatewayHostName=${gateway}` : ''}`;
}

/** An SDK device with a certificate; it connects and listens for C2D, completing each message. */
async function x509Device(connectionString, transport, { cert, key, passphrase, ca }, got) {
  const dev = DeviceClient.fromConnectionString(connectionString, transport);
  dev.setRetryPolicy(new NoRetry());
  await dev.setOptions({ cert, key, ...(passphrase ? { passphrase } : {}), ca });
  const errors = [];
  dev.on('error', (e) => errors.push(e));
  // Where the SDK reports a C2D link the hub refused: a 'disconnect' event carrying the translated error.
  dev.on('disconnect', (d) => errors.push(d.transportObj ?? d));
  if (got)
    dev.on('message', (m) => {
      got.push(m.data.toString());
      dev.complete(m, () => undefined);
    });
  await dev.open();
  return { dev, errors };
}

async function withHub(options, fn) {
  const logs = [];
  const hub = await start({
    dataDir: hubDataDir(),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    feedbackBatchMs: 20,
    log: (_level, text) => logs.push(text),
    ...options,
  });
  try {
    await fn(hub, logs);
  } finally {
    await hub.stop();
  }
}

test('self-signed (SHA-1 primary, SHA-256 secondary) and CA-signed devices: the SDK connects over MQTT and AMQP and receives C2D', async () => {
  const a = certs.make('ss-a');
  const b = certs.make('ss-b');
  const root = certs.make('Test Root CA', { ca: true });
  const inter = certs.make('Test Intermediate CA', { ca: true, issuer: root });
  const caDev = certs.make('ca-dev', { issuer: inter });
  await withHub({}, async (hub, logs) => {
    await hub.registerDevice('ss-a', { x509Thumbprint: a.sha1 });
    // The secondary thumbprint, given as SHA-256 with colons as the portal shows it.
    await hub.registerDevice('ss-b', {
      x509Thumbprint: a.sha256,
      x509SecondaryThumbprint: b.sha256.replace(/(..)(?!$)/g, '$1:'),
    });
    await hub.registerDevice('ca-dev', { authType: 'certificateAuthority' });
    hub.addCaCertificate('root', root.certPem, true);
    assert.match(hub.deviceConnectionString('ss-a'), /x509=true/);
    const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
    await svc.open();
    try {
      for (const [name, transport, port] of TRANSPORTS) {
        const host = `localhost:${port(hub)}`;
        const cases = [
          ['ss-a', a],
          ['ss-b', b],
          // The device sends its chain: its certificate, then the intermediate; the hub knows the root only.
          ['ca-dev', { certPem: caDev.certPem + inter.certPem, keyPem: caDev.keyPem }],
        ];
        for (const [id, c] of cases) {
          const got = [];
          const { dev } = await x509Device(
            x509String(host, id),
            transport,
            { cert: c.certPem, key: c.keyPem, ca: hub.caPem },
            got,
          );
          try {
            await waitFor(() => hub.isDeviceConnected(id), `${id} over ${name}: C2D attached`);
            await svc.send(id, new Message(`hello ${id} over ${name}`));
            await waitFor(() => got.length === 1, `${id} over ${name}: C2D received`);
            assert.equal(got[0], `hello ${id} over ${name}`);
          } finally {
            await dev.close();
          }
          await waitFor(() => !hub.isDeviceConnected(id), `${id} disconnected`);
        }
      }
    } finally {
      await svc.close();
    }
    // What the SDK sends over AMQP with x509: no SASL layer at all (the AMQP header right after TLS), no put-token.
    for (const id of ['ss-a', 'ss-b', 'ca-dev'])
      assert.ok(
        logs.includes(`AMQP device ${id} authenticated by its client certificate (SASL: none)`),
        `${id}: ${logs.join('\n')}`,
      );
  });
});

test('an encrypted key with its passphrase connects (SDK passphrase option)', async () => {
  const c = certs.make('enc-dev');
  await withHub({}, async (hub) => {
    await hub.registerDevice('enc-dev', { x509Thumbprint: c.sha1 });
    const key = certs.encryptedKey(c, 'secret words');
    const { dev } = await x509Device(x509String(`localhost:${hub.ports.mqtts}`, 'enc-dev'), Mqtt, {
      cert: c.certPem,
      key,
      passphrase: 'secret words',
      ca: hub.caPem,
    });
    assert.ok(hub.isDeviceConnected('enc-dev') || (await waitFor(() => hub.isDeviceConnected('enc-dev'), 'connected')));
    await dev.close();
  });
});

test('refused: wrong thumbprint, expired, another device, CN not the device id, unverified CA, SAS device; MQTT CONNACK 5, AMQP unauthorized-access on the C2D attach', async () => {
  const own = certs.make('victim');
  const stranger = certs.make('victim'); // same CN, another key: another thumbprint
  const other = certs.make('other');
  const expired = certs.expired('old');
  const root = certs.make('Refusal Root', { ca: true });
  const wrongCn = certs.make('not-ca-victim', { issuer: root });
  const pending = certs.make('Pending CA', { ca: true });
  const byPending = certs.make('ca-pending', { issuer: pending });
  await withHub({}, async (hub, logs) => {
    await hub.registerDevice('victim', { x509Thumbprint: own.sha1 });
    await hub.registerDevice('other', { x509Thumbprint: other.sha1 });
    await hub.registerDevice('old', { x509Thumbprint: expired.sha1 });
    await hub.registerDevice('ca-victim', { authType: 'certificateAuthority' });
    await hub.registerDevice('ca-pending', { authType: 'certificateAuthority' });
    await hub.registerDevice('sas-dev');
    hub.addCaCertificate('root', root.certPem, true);
    hub.addCaCertificate('pending', pending.certPem, false);
    const cases = [
      ['victim', stranger, /matches neither thumbprint registered for device victim/],
      ['old', expired, /the client certificate expired on/],
      ['victim', other, /matches neither thumbprint registered for device victim/],
      ['ca-victim', wrongCn, /is for "not-ca-victim" \(its CN\), not device ca-victim/],
      ['ca-pending', byPending, /registered but not verified/],
      ['sas-dev', other, /authenticates with SAS keys, not a certificate/],
    ];
    for (const [name, transport, port] of TRANSPORTS) {
      for (const [id, c, why] of cases) {
        logs.length = 0;
        const str = x509String(`localhost:${port(hub)}`, id);
        const opts = { cert: c.certPem, key: c.keyPem, ca: hub.caPem };
        if (transport === Mqtt) {
          // On the wire: CONNACK return code 5, "not authorized", as IoT Hub answers a certificate it does not accept.
          const raw = mqtt.connect(`mqtts://localhost:${port(hub)}`, {
            clientId: id,
            username: `${hub.hostName}/${id}/?api-version=2021-04-12`,
            protocolVersion: 4,
            reconnectPeriod: 0,
            cert: c.certPem,
            key: c.keyPem,
            ca: hub.caPem,
          });
          const rc = await new Promise((resolve) => raw.once('error', (e) => resolve(e.code)));
          raw.end(true);
          assert.equal(rc, 5, `${id}: CONNACK return code`);
          // CONNACK 5: mqtt.js "Connection refused: Not authorized", which the SDK reports as UnauthorizedError.
          await assert.rejects(x509Device(str, transport, opts), (err) => {
            assert.equal(err.constructor.name, 'UnauthorizedError', `${id}: ${err.message}`);
            return true;
          });
        } else {
          // AMQP with x509 authenticates nothing at connect: the refusal comes when the C2D link attaches.
          const got = [];
          const { dev, errors } = await x509Device(str, transport, opts, got);
          try {
            await waitFor(() => errors.length > 0, `${id}: the SDK reports the refused C2D link`);
            assert.equal(errors[0].constructor.name, 'UnauthorizedError', `${id}: ${errors[0].message}`);
            assert.equal(got.length, 0);
          } finally {
            await dev.close();
          }
        }
        assert.ok(
          logs.some((l) => why.test(l)),
          `${name} ${id}: the hub says why (${logs.join(' | ')})`,
        );
        assert.equal(hub.isDeviceConnected(id), false);
      }
    }
  });
});

test('IoT Edge gateway: GatewayHostName dials the gateway (its own CA, its name in the certificate) while tokens and user names name the hub; a wrong CA fails on the certificate', async () => {
  const gwCa = certs.make('Edge gateway root CA', { ca: true });
  const x = certs.make('gw-x509');
  await withHub(
    // The hub's name is never dialled (it does not resolve); the gateway is served as localhost, from its own CA.
    {
      host: 'myhub.azure-devices.net',
      tls: { hostNames: ['localhost'], ca: { certPem: gwCa.certPem, keyPem: gwCa.keyPem } },
    },
    async (hub, logs) => {
      const { primaryKey } = await hub.registerDevice('gw-sas');
      await hub.registerDevice('gw-x509', { x509Thumbprint: x.sha1 });
      // The back end reaches the hub directly in real life; here it dials the same listener by the gateway's name.
      const hubInfo = parseConnectionString(hub.hubConnectionString);
      const svc = new OurServiceClient({
        hostName: hubInfo.hostName,
        gatewayHostName: `localhost:${hub.ports.amqps}`,
        ca: gwCa.certPem,
        sharedAccessKeyName: hubInfo.sharedAccessKeyName,
        sharedAccessKey: hubInfo.sharedAccessKey,
      });
      svc.open();
      try {
        for (const [name, transport, port] of TRANSPORTS) {
          const gateway = `localhost:${port(hub)}`;
          const sas = `HostName=myhub.azure-devices.net;DeviceId=gw-sas;SharedAccessKey=${primaryKey};GatewayHostName=${gateway}`;
          for (const [id, make] of [
            ['gw-sas', () => DeviceClient.fromConnectionString(sas, transport)],
            // The SDK drops GatewayHostName from an x509=true connection string (device_client.js fromConnectionString
            // builds its X509AuthenticationProvider from HostName and DeviceId only): given in the provider, it is used.
            [
              'gw-x509',
              () =>
                DeviceClient.fromAuthenticationProvider(
                  new X509AuthenticationProvider({
                    host: 'myhub.azure-devices.net',
                    gatewayHostName: gateway,
                    deviceId: 'gw-x509',
                    x509: { cert: x.certPem, key: x.keyPem },
                  }),
                  transport,
                ),
            ],
          ]) {
            const dev = make();
            dev.setRetryPolicy(new NoRetry());
            await dev.setOptions({ ca: gwCa.certPem });
            const got = [];
            dev.on('error', () => undefined);
            dev.on('message', (m) => {
              got.push(m.data.toString());
              dev.complete(m, () => undefined);
            });
            await dev.open();
            try {
              await waitFor(() => hub.isDeviceConnected(id), `${id} via the gateway over ${name}`);
              await svc.send(id, { body: Buffer.from(`via gateway ${name}`), properties: {} });
              await waitFor(() => got.length === 1, `${id}: C2D through the gateway over ${name}`);
              assert.equal(got[0], `via gateway ${name}`);
            } finally {
              await dev.close();
            }
            await waitFor(() => !hub.isDeviceConnected(id), `${id} gone`);
          }
          // Another CA than the gateway's: the TLS handshake fails on the certificate. The SDK says so over MQTT
          // (mqtt.js passes Node's TLS error on); over AMQP it reports only "rhea: connection disconnected".
          const wrong = DeviceClient.fromConnectionString(sas, transport);
          wrong.setRetryPolicy(new NoRetry());
          await wrong.setOptions({ ca: certs.make('Some other CA', { ca: true }).certPem });
          wrong.on('error', () => undefined);
          await assert.rejects(wrong.open(), (err) => {
            const text = `${err.message} ${err.transportError?.message ?? ''}`;
            if (transport === Mqtt) assert.match(text, /unable to verify the first certificate/i, text);
            else assert.match(text, /connection disconnected/, text);
            return true;
          });
          assert.equal(hub.isDeviceConnected('gw-sas'), false);
          await wrong.close().catch(() => undefined);
        }
      } finally {
        await svc.close();
      }
      assert.ok(!logs.some((l) => /another hub/.test(l)), 'every token named the hub');
    },
  );
});
