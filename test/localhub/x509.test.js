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
const https = require('node:https');
const { createSasToken } = require('../../nodes/core/sas.js');
const { spawn } = require('node:child_process');
const path = require('node:path');
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

/** A registry REST call as azure-iothub's Registry makes it (PUT or GET /devices/{id}, a back-end SAS token). */
function rest(hub, method, id, body) {
  const owner = parseConnectionString(hub.policyConnectionString('iothubowner'));
  const auth = createSasToken({
    resourceUri: hub.hostName,
    key: owner.sharedAccessKey,
    keyName: 'iothubowner',
    expiresAt: Date.now() / 1000 + 600,
  });
  const data = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: hub.ports.https,
        servername: 'localhost',
        method,
        path: `/devices/${encodeURIComponent(id)}?api-version=2021-04-12`,
        headers: { authorization: auth, 'content-type': 'application/json' },
        ca: hub.caPem,
      },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

test('the registry REST API creates selfSigned and certificateAuthority devices (the body azure-iothub sends) that then connect', async () => {
  const a = certs.make('rest-ss');
  const root = certs.make('REST Root', { ca: true });
  const leaf = certs.make('rest-ca', { issuer: root });
  await withHub({}, async (hub) => {
    hub.addCaCertificate('root', root.certPem, true);
    const put = await rest(hub, 'PUT', 'rest-ss', {
      deviceId: 'rest-ss',
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: a.sha256, secondaryThumbprint: a.sha1 },
      },
    });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.equal(
      (await rest(hub, 'PUT', 'rest-ca', { deviceId: 'rest-ca', authentication: { type: 'certificateAuthority' } }))
        .status,
      200,
    );
    const bad = await rest(hub, 'PUT', 'rest-bad', {
      deviceId: 'rest-bad',
      authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: 'not hex' } },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.json.Message, /primaryThumbprint must be a SHA-1/);
    const got = (await rest(hub, 'GET', 'rest-ss')).json;
    assert.equal(got.authentication.type, 'selfSigned');
    assert.equal(got.authentication.x509Thumbprint.primaryThumbprint, a.sha256);
    assert.equal(got.authentication.x509Thumbprint.secondaryThumbprint, a.sha1);
    assert.equal((await rest(hub, 'GET', 'rest-ca')).json.authentication.type, 'certificateAuthority');
    for (const [id, c] of [
      ['rest-ss', a],
      ['rest-ca', leaf],
    ]) {
      const { dev } = await x509Device(x509String(`localhost:${hub.ports.mqtts}`, id), Mqtt, {
        cert: c.certPem,
        key: c.keyPem,
        ca: hub.caPem,
      });
      await waitFor(() => hub.isDeviceConnected(id), `${id} connected`);
      await dev.close();
    }
  });
});

test('the command line: --x509-device, --ca-cert with --ca-device, and serving as a gateway (--tls-host, --tls-ca-cert, --tls-ca-key)', async () => {
  const ss = certs.make('cli-ss');
  const root = certs.make('CLI Root', { ca: true });
  const leaf = certs.make('cli-ca', { issuer: root });
  const gwCa = certs.make('CLI gateway CA', { ca: true });
  const cli = path.join(__dirname, '..', '..', 'nodes', 'localhub', 'cli.js');
  const child = spawn(
    process.execPath,
    [
      cli,
      '--json',
      '--data-dir',
      hubDataDir(),
      ...['--mqtt-port', '0', '--amqps-port', '0', '--amqp-port', '0', '--https-port', '0'],
      ...['--x509-device', `cli-ss=${ss.sha1}`, '--ca-device', 'cli-ca', '--ca-cert', root.certFile],
      ...['--tls-host', 'localhost', '--tls-ca-cert', gwCa.certFile, '--tls-ca-key', gwCa.keyFile],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const line = await new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}`)));
    });
    const info = JSON.parse(line);
    assert.match(info.devices['cli-ss'], /;DeviceId=cli-ss;x509=true$/);
    assert.match(info.devices['cli-ca'], /;DeviceId=cli-ca;x509=true$/);
    for (const [id, c] of [
      ['cli-ss', ss],
      ['cli-ca', leaf],
    ]) {
      // Trusting the gateway CA only: the served certificate comes from it. open() resolving means CONNACK 0.
      const { dev } = await x509Device(info.devices[id], Mqtt, { cert: c.certPem, key: c.keyPem, ca: gwCa.certPem });
      await dev.close();
    }
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
});

test('our AMQP device client: a refused C2D attach (null source, then the detach) is never "connected", so the backoff grows', async () => {
  const { DeviceClient: OurDeviceClient } = require('../../nodes/core/device-client.js');
  const own = certs.make('backoff');
  const wrong = certs.make('backoff');
  await withHub({}, async (hub, logs) => {
    await hub.registerDevice('backoff', { x509Thumbprint: own.sha1 });
    const states = [];
    const d = new OurDeviceClient({
      hostName: 'localhost',
      port: hub.ports.amqps,
      ca: hub.caPem,
      deviceId: 'backoff',
      transport: 'amqp',
      credentials: { cert: wrong.certPem, key: wrong.keyPem },
      retry: { unauthorizedInitialDelayMs: 50, unauthorizedMaxDelayMs: 1000, jitter: 0 },
    });
    d.on('status', (ev) => states.push(ev));
    d.open();
    try {
      await waitFor(() => states.filter((s) => s.state === 'unauthorized').length >= 3, 'three refusals');
    } finally {
      await d.close();
    }
    const refused = states.filter((s) => s.state === 'unauthorized');
    assert.deepEqual(
      refused.slice(0, 3).map((s) => [s.attempt, s.nextRetryMs]),
      [
        [1, 50],
        [2, 100],
        [3, 200],
      ],
    );
    assert.ok(!states.some((s) => s.state === 'connected'), JSON.stringify(states.map((s) => s.state)));
    assert.match(refused[0].error.message, /^certificate refused: the hub does not accept it;/);
    assert.ok(logs.filter((l) => l.startsWith('AMQP device backoff refused')).length >= 3);
  });
});
