#!/usr/bin/env node
/**
 * iothub-local-hub [--host NAME] [--mqtt-port N] [--amqps-port N] [--amqp-port N] [--https-port N] [--dps-port N]
 *                  [--data-dir DIR] [--device ID]... [--enrollment REGID[:KEY]]... [--enrollment-group ID[:KEY]]...
 *                  [--auto-register] [--tier F1|S1|S2|S3 [--units N]] [--json]
 *                  [--x509-device ID=THUMBPRINT[,THUMBPRINT]]... [--ca-device ID]... [--ca-cert FILE]...
 *                  [--tls-host NAME]... [--tls-ca-cert FILE --tls-ca-key FILE]
 */
import * as fs from 'node:fs';
import { C2D_SENDS_PER_MINUTE, checkTier } from './tiers';
import * as path from 'node:path';
import { checkKey, checkRegistrationId } from './dps';
import { start, LocalHubOptions } from './index';

const USAGE =
  'usage: iothub-local-hub [--host NAME] [--mqtt-port N] [--amqps-port N] [--amqp-port N] [--https-port N] [--dps-port N] [--data-dir DIR] [--device ID]... [--enrollment REGID[:KEY]]... [--enrollment-group ID[:KEY]]... [--auto-register] [--tier F1|S1|S2|S3 [--units N]] [--json]\n' +
  '         [--x509-device ID=THUMBPRINT[,THUMBPRINT]]... [--ca-device ID]... [--ca-cert FILE]... [--tls-host NAME]... [--tls-ca-cert FILE --tls-ca-key FILE]';

interface X509Setup {
  selfSigned: { id: string; thumbprints: string[] }[];
  caDevices: string[];
  caCerts: string[];
}

/** `id[:key]`: a base64 key holds no ':', so a tail after the last ':' that reads as a key is the key (ids may hold ':'). */
function idAndKey(v: string | undefined, flag: string, what: string): { id: string; key?: string } {
  if (!v) throw new Error(`${flag} needs a ${what}, optionally followed by :KEY (a base64 key)`);
  const i = v.lastIndexOf(':');
  const tail = i > 0 ? v.slice(i + 1) : '';
  const parsed = /^[A-Za-z0-9+/]{20,}={0,2}$/.test(tail) ? { id: v.slice(0, i), key: tail } : { id: v };
  try {
    checkRegistrationId(parsed.id, what);
    checkKey(parsed.key, 'the key');
  } catch (err) {
    throw new Error(`${flag}: ${(err as Error).message}`);
  }
  return parsed;
}

function parseArgs(argv: string[]): { options: LocalHubOptions; json: boolean; x509: X509Setup } {
  const options: LocalHubOptions = {
    ports: { dps: 8884 },
    devices: [],
    enrollments: [],
    enrollmentGroups: [],
    dataDir: path.resolve('.iothub-local-hub'),
  };
  const x509: X509Setup = { selfSigned: [], caDevices: [], caCerts: [] };
  const tlsHosts: string[] = [];
  let tlsCa: { cert?: string; key?: string } = {};
  let json = false;
  const file = (v: string | undefined, flag: string): string => {
    if (!v) throw new Error(`${flag} needs a file`);
    try {
      return fs.readFileSync(path.resolve(v), 'utf8');
    } catch (err) {
      throw new Error(`${flag}: cannot read ${v} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const port = (v: string | undefined, flag: string): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0 || n > 65535)
      throw new Error(`${flag} needs a port number (0 picks a free one)`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--host':
        options.host = next();
        break;
      case '--mqtt-port':
        options.ports!.mqtts = port(next(), a);
        break;
      case '--amqps-port':
        options.ports!.amqps = port(next(), a);
        break;
      case '--amqp-port':
        options.ports!.amqp = port(next(), a);
        break;
      case '--https-port':
        options.ports!.https = port(next(), a);
        break;
      case '--dps-port':
        options.ports!.dps = port(next(), a);
        break;
      case '--enrollment': {
        const { id, key } = idAndKey(next(), a, 'registration id');
        options.enrollments!.push({ registrationId: id, primaryKey: key });
        break;
      }
      case '--enrollment-group': {
        const { id, key } = idAndKey(next(), a, 'enrollment group id');
        options.enrollmentGroups!.push({ groupId: id, primaryKey: key });
        break;
      }
      case '--data-dir':
        options.dataDir = path.resolve(next() ?? '');
        break;
      case '--device': {
        const id = next();
        if (!id) throw new Error('--device needs a device id');
        options.devices!.push(id);
        break;
      }
      case '--x509-device': {
        const m = /^([^=]+)=(.+)$/.exec(next() ?? '');
        if (!m) throw new Error('--x509-device needs ID=THUMBPRINT (a second thumbprint after a comma)');
        x509.selfSigned.push({ id: m[1], thumbprints: m[2].split(',') });
        break;
      }
      case '--ca-device': {
        const id = next();
        if (!id) throw new Error('--ca-device needs a device id');
        x509.caDevices.push(id);
        break;
      }
      case '--ca-cert':
        x509.caCerts.push(file(next(), a));
        break;
      case '--tls-host': {
        const h = next();
        if (!h) throw new Error('--tls-host needs a host name');
        tlsHosts.push(h);
        break;
      }
      case '--tls-ca-cert':
        tlsCa = { ...tlsCa, cert: file(next(), a) };
        break;
      case '--tls-ca-key':
        tlsCa = { ...tlsCa, key: file(next(), a) };
        break;
      case '--auto-register':
        options.autoRegister = true;
        break;
      case '--tier':
        options.tier = next() as LocalHubOptions['tier'];
        break;
      case '--units':
        options.units = Number(next());
        break;
      case '--json':
        json = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  if (!tlsCa.cert !== !tlsCa.key) throw new Error('--tls-ca-cert and --tls-ca-key go together');
  if (tlsHosts.length || tlsCa.cert)
    options.tls = {
      hostNames: tlsHosts,
      ca: tlsCa.cert && tlsCa.key ? { certPem: tlsCa.cert, keyPem: tlsCa.key } : undefined,
    };
  if (options.units !== undefined && !options.tier) throw new Error('--units needs --tier');
  // Checked here so a typo stops the command with the fix, before any port is opened.
  if (options.tier) Object.assign(options, checkTier(options.tier, options.units));
  return { options, json, x509 };
}

async function main(): Promise<void> {
  const { options, json, x509 } = parseArgs(process.argv.slice(2));
  if (!json) options.log = (level, text) => process.stderr.write(`[${level}] ${text}\n`);
  const hub = await start(options);
  try {
    x509.caCerts.forEach((pem, i) => hub.addCaCertificate(`ca-${i + 1}`, pem, true));
    for (const { id, thumbprints } of x509.selfSigned) {
      await hub.registerDevice(id, {
        authType: 'selfSigned',
        x509Thumbprint: thumbprints[0],
        x509SecondaryThumbprint: thumbprints[1],
      });
      options.devices!.push(id);
    }
    for (const id of x509.caDevices) {
      await hub.registerDevice(id, { authType: 'certificateAuthority' });
      options.devices!.push(id);
    }
  } catch (err) {
    await hub.stop();
    throw err;
  }
  // Handlers first: a signal right after the line is printed must still shut down cleanly.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    hub.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const devices: Record<string, string> = {};
  for (const id of options.devices ?? []) devices[id] = hub.deviceConnectionString(id);
  // The keys of the enrollments named on the command line, as the device strings above carry theirs.
  const enrollments: Record<string, string> = {};
  for (const e of options.enrollments ?? [])
    enrollments[e.registrationId] = (await hub.addEnrollment({ registrationId: e.registrationId })).primaryKey;
  const enrollmentGroups: Record<string, string> = {};
  for (const g of options.enrollmentGroups ?? [])
    enrollmentGroups[g.groupId] = (await hub.addEnrollmentGroup({ groupId: g.groupId })).primaryKey;
  if (json) {
    process.stdout.write(
      JSON.stringify({
        hostName: hub.hostName,
        hubConnectionString: hub.hubConnectionString,
        devices,
        caCertPath: hub.caCertPath,
        ports: hub.ports,
        idScope: hub.idScope,
        provisioningHost: hub.provisioningHost,
        enrollments,
        enrollmentGroups,
        ...(options.tier ? { tier: options.tier, units: options.units } : {}),
      }) + '\n',
    );
  } else {
    const lines = [
      `IoT Hub local hub "${hub.hostName}" is running (data in ${hub.dataDir})`,
      `  CA certificate: ${hub.caCertPath}   (official SDKs: NODE_EXTRA_CA_CERTS=${hub.caCertPath})`,
      `  ports: MQTT ${hub.ports.mqtts}, AMQP ${hub.ports.amqps} (plain ${hub.ports.amqp}), HTTPS and WebSockets ${hub.ports.https}, DPS ${hub.ports.dps}`,
      ...(options.tier
        ? [
            `  tier ${options.tier}, ${options.units} unit(s): at most ${C2D_SENDS_PER_MINUTE[options.tier] * (options.units ?? 1)} C2D sends per minute`,
          ]
        : []),
      `  hub (iothubowner): ${hub.hubConnectionString}`,
      ...Object.entries(devices).map(([id, s]) => `  device ${id}: ${s}`),
      `  DPS: ID scope ${hub.idScope}, provisioning host ${hub.provisioningHost} (MQTT and HTTPS)`,
      ...Object.entries(enrollments).map(([id, k]) => `  enrollment ${id}: key ${k}`),
      ...Object.entries(enrollmentGroups).map(([id, k]) => `  enrollment group ${id}: key ${k}`),
      'Ctrl-C stops it.',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
}

main().catch((err: Error) => {
  process.stderr.write(`iothub-local-hub: ${err.message}\n`);
  process.exit(2);
});
