'use strict';
// The command line as docs/ARCHITECTURE.md specifies it: one JSON line, working strings, clean exit on SIGTERM and SIGINT.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { hubDataDir } = require('../support/flows');

const CLI = path.join(__dirname, '..', '..', 'nodes', 'localhub', 'cli.js');

function runCli(args) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const firstLine = new Promise((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before printing`)));
  });
  firstLine.catch(() => undefined);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })));
  return { child, firstLine, exited };
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`--json prints one line that official SDKs can use; ${signal} exits 0`, async () => {
    const { child, firstLine, exited } = runCli([
      '--json',
      '--data-dir',
      hubDataDir(),
      '--mqtt-port',
      '0',
      '--amqps-port',
      '0',
      '--amqp-port',
      '0',
      '--https-port',
      '0',
      '--device',
      'cli-dev',
    ]);
    const info = JSON.parse(await firstLine);
    assert.deepEqual(Object.keys(info).sort(), ['caCertPath', 'devices', 'hostName', 'hubConnectionString', 'ports']);
    assert.deepEqual(Object.keys(info.ports).sort(), ['amqp', 'amqps', 'https', 'mqtts']);
    assert.ok(Object.values(info.ports).every((p) => Number.isInteger(p) && p > 0));
    assert.equal(info.hostName, 'localhost');
    assert.match(
      info.hubConnectionString,
      /^HostName=localhost:\d+;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]+$/,
    );
    if (signal === 'SIGTERM') {
      const got = new Promise((resolve) => {
        const dev = DeviceClient.fromConnectionString(info.devices['cli-dev'], Mqtt);
        dev.setOptions({ ca: require('node:fs').readFileSync(info.caCertPath, 'utf8') });
        dev.on('message', (m) => dev.complete(m, () => dev.close().then(() => resolve(m.data.toString()))));
        dev.open();
      });
      const svc = ServiceClient.fromConnectionString(info.hubConnectionString);
      await svc.open();
      await svc.send('cli-dev', new Message('via the command line'));
      await svc.close();
      assert.equal(await got, 'via the command line');
    }
    child.kill(signal);
    const end = await exited;
    assert.equal(end.code, 0);
    assert.equal(end.out.trim().split('\n').length, 1, 'exactly one line on stdout');
  });
}

test('bad flags are refused with the usage', async () => {
  const { child, exited } = runCli(['--mqtt-port', 'abc']);
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  const end = await exited;
  assert.equal(end.code, 2);
  assert.match(err, /--mqtt-port needs a port number/);
});
