'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { parseConnectionString, formatConnectionString } = require('../../nodes/core/connection-string.js');

const KEY = 'c2VjcmV0LWtleS1ub3QtcmVhbC0wMTIzNDU2Nzg5QUJDREVGPT0=';
const SIG =
  'SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd1&sig=QUJDREVGR0hJSktMTU5PUA%3D%3D&se=4102444800';

test('device, module, gateway, token and x509 forms', () => {
  assert.deepEqual(parseConnectionString(`HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessKey=${KEY}`), {
    kind: 'device',
    hostName: 'hub.azure-devices.net',
    hubName: 'hub',
    deviceId: 'd1',
    sharedAccessKey: KEY,
  });
  const m = parseConnectionString(
    `HostName=hub.azure-devices.net;DeviceId=d1;ModuleId=m1;GatewayHostName=edge.local;SharedAccessKey=${KEY}`,
  );
  assert.equal(m.moduleId, 'm1');
  assert.equal(m.gatewayHostName, 'edge.local');
  assert.equal(
    parseConnectionString(`HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessSignature=${SIG}`)
      .sharedAccessSignature,
    SIG,
  );
  assert.equal(parseConnectionString('HostName=hub.azure-devices.net;DeviceId=d1;x509=true').x509, true);
  const p = parseConnectionString(
    `HostName=hub.azure-devices.net;DeviceId=d 1/é;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`,
  );
  assert.equal(p.sharedAccessKeyName, 'iothubowner');
  assert.equal(p.deviceId, 'd 1/é');
});

test('service form; host with port; values containing "="; trailing ";" tolerated', () => {
  const s = parseConnectionString(`HostName=localhost:5671;SharedAccessKeyName=service;SharedAccessKey=${KEY};`);
  assert.deepEqual(s, {
    kind: 'service',
    hostName: 'localhost:5671',
    hubName: 'localhost',
    sharedAccessKeyName: 'service',
    sharedAccessKey: KEY,
  });
});

test('format is canonical and parses back', () => {
  const text = `HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=${KEY}`;
  const info = parseConnectionString(text);
  assert.equal(formatConnectionString(info), text);
  assert.deepEqual(parseConnectionString(formatConnectionString(info)), info);
});

// Each malformed string gets an IotHubError that names a field, says what to do, and never holds the key or signature.
const corpus = [
  ['', 'connectionString'],
  ['   ', 'connectionString'],
  [KEY, 'connectionString'],
  ['HostName', 'connectionString'],
  [`=${KEY}`, 'connectionString'],
  [`HostName=h.net;;DeviceId=d;SharedAccessKey=${KEY}`, 'connectionString'],
  [`DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=bad host;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=-h.net;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=h..net;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=https://h.net;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`hostname=h.net;DeviceId=d;SharedAccessKey=${KEY}`, 'hostname'],
  [`HostName=h.net;deviceId=d;SharedAccessKey=${KEY}`, 'deviceId'],
  [`HostName=h.net;DeviceId=d;SharedAccesKey=${KEY}`, 'SharedAccesKey'],
  [`HostName=h.net;HostName=h2.net;DeviceId=d;SharedAccessKey=${KEY}`, 'HostName'],
  [`HostName=h.net;DeviceId=;SharedAccessKey=${KEY}`, 'DeviceId'],
  ['HostName=h.net;DeviceId=d', 'SharedAccessKey'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=not base64!${KEY}`, 'SharedAccessKey'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=${KEY};SharedAccessSignature=${SIG}`, 'SharedAccessKey'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=${KEY};x509=true`, 'SharedAccessKey'],
  ['HostName=h.net;DeviceId=d;x509=yes', 'x509'],
  [`HostName=h.net;DeviceId=d;SharedAccessSignature=sr=x&sig=${KEY}`, 'SharedAccessSignature'],
  ['HostName=h.net;DeviceId=d;SharedAccessKeyName=device;x509=true', 'SharedAccessKeyName'],
  [`HostName=h.net;SharedAccessKey=${KEY}`, 'SharedAccessKeyName'],
  ['HostName=h.net;SharedAccessKeyName=service', 'SharedAccessKey'],
  [`HostName=h.net;ModuleId=m;SharedAccessKeyName=s;SharedAccessKey=${KEY}`, 'ModuleId'],
  [`HostName=h.net;SharedAccessKeyName=s;SharedAccessSignature=${SIG}`, 'SharedAccessKey'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=${KEY};GatewayHostName=bad gw`, 'GatewayHostName'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=${KEY};Extra=1`, 'Extra'],
  [`HostName=h.net;DeviceId=d;SharedAccessKey=${KEY};SharedAccessKey=${KEY}`, 'SharedAccessKey'],
  [`HostName=h.net DeviceId=d SharedAccessKey=${KEY}`, 'HostName'],
];

test(`${corpus.length} malformed connection strings: clear errors naming the field, never the key`, () => {
  assert.ok(corpus.length >= 30);
  for (const [text, field] of corpus) {
    assert.throws(
      () => parseConnectionString(text),
      (e) => {
        assert.equal(e.code, 'INVALID_CONNECTION_STRING', text);
        assert.equal(e.field, field, `${JSON.stringify(text.slice(0, 50))}: ${e.message}`);
        assert.ok(!e.message.includes(KEY) && !e.message.includes(KEY.slice(0, 12)), `key leaked: ${e.message}`);
        assert.ok(!e.message.includes('QUJDREVGR0hJSktMTU5PUA'), `signature leaked: ${e.message}`);
        assert.match(e.message, /^connection string: .{10,}/);
        return true;
      },
    );
  }
  assert.throws(
    () => parseConnectionString(undefined),
    (e) => e.code === 'INVALID_CONNECTION_STRING',
  );
});
