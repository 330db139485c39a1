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
const { cliArgs, checkJsonLine } = require('../support/hub-cli');

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
    const { child, firstLine, exited } = runCli(
      cliArgs(
        hubDataDir(),
        '--enrollment',
        'cli-enrolled',
        '--enrollment-group',
        `cli-group:${Buffer.alloc(32, 3).toString('base64')}`,
      ),
    );
    const info = checkJsonLine(await firstLine);
    assert.match(info.enrollments['cli-enrolled'], /^[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(info.enrollmentGroups, { 'cli-group': Buffer.alloc(32, 3).toString('base64') });
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
      // The DPS the line names: the official provisioning SDK registers the enrollment given by --enrollment.
      const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
      const { Mqtt: ProvisioningMqtt } = require('azure-iot-provisioning-device-mqtt');
      const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
      const security = new SymmetricKeySecurityClient('cli-enrolled', info.enrollments['cli-enrolled']);
      const reg = ProvisioningDeviceClient.create(
        info.provisioningHost,
        info.idScope,
        new ProvisioningMqtt(),
        security,
      );
      const result = await reg.register();
      assert.equal(result.status, 'assigned');
      assert.equal(result.assignedHub, `localhost:${info.ports.mqtts}`);
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

test('a bad --enrollment is refused, naming the flag and the rule', async () => {
  const { child, exited } = runCli(['--enrollment', 'no spaces allowed']);
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  const end = await exited;
  assert.equal(end.code, 2);
  assert.match(err, /--enrollment: the registration id "no spaces allowed" must be 1 to 128 characters/);
});
