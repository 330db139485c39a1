/**
 * IoT Hub connection strings (docs/PROTOCOL.md section 1): `key=value` pairs joined by `;`, split at the first `=`.
 * Errors name the key at fault and the fix, and never contain a key's value.
 */
import { IotHubError } from './errors';

export interface ConnectionInfo {
  kind: 'device' | 'service';
  hostName: string;
  /** The first label of the host name: the hub's name. */
  hubName: string;
  deviceId?: string;
  moduleId?: string;
  sharedAccessKeyName?: string;
  sharedAccessKey?: string;
  sharedAccessSignature?: string;
  x509?: boolean;
  gatewayHostName?: string;
}

const KNOWN = [
  'HostName',
  'DeviceId',
  'ModuleId',
  'SharedAccessKeyName',
  'SharedAccessKey',
  'SharedAccessSignature',
  'x509',
  'GatewayHostName',
] as const;
type Key = (typeof KNOWN)[number];

function bad(field: string, text: string): IotHubError {
  return new IotHubError('INVALID_CONNECTION_STRING', `connection string: ${text}`, { field });
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// Host names, optionally with a port (the local hub and tests use host:port).
const HOST = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:\d{1,5})?$/;

export function parseConnectionString(text: string): ConnectionInfo {
  if (typeof text !== 'string' || !text.trim()) {
    throw bad('connectionString', 'it is empty: paste the string from the Azure portal (HostName=...;...)');
  }
  const values: Partial<Record<Key, string>> = {};
  // A trailing ';' (Azure CLI output sometimes has one) is tolerated; empty pairs elsewhere are not.
  const parts = text.trim().replace(/;$/, '').split(';');
  for (const [i, raw] of parts.entries()) {
    const part = raw.trim();
    const eq = part.indexOf('=');
    if (!part) throw bad('connectionString', 'it has an empty part (";;"): remove the extra ";"');
    // The part itself is never shown: it may be a fragment of a key.
    if (eq <= 0) throw bad('connectionString', `part ${i + 1} is not key=value: check the string was copied whole`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!(KNOWN as readonly string[]).includes(key)) {
      const hint = KNOWN.find((k) => k.toLowerCase() === key.toLowerCase());
      if (hint) throw bad(key, `"${key}" must be spelled "${hint}" (keys are case-sensitive)`);
      // Only a name-shaped key is shown: anything else may be a pasted key ending in '='.
      if (/^[A-Za-z][A-Za-z0-9]{0,30}$/.test(key)) throw bad(key, `unknown key "${key}": expected ${KNOWN.join(', ')}`);
      throw bad('connectionString', `part ${i + 1} has no known key: expected ${KNOWN.join(', ')}`);
    }
    if (values[key as Key] !== undefined) throw bad(key, `${key} appears twice: keep one`);
    if (!value) throw bad(key, `${key} is empty: give it a value or remove it`);
    values[key as Key] = value;
  }
  const host = values.HostName;
  if (!host) throw bad('HostName', 'HostName is missing: it looks like HostName=<hub>.azure-devices.net');
  if (!HOST.test(host)) throw bad('HostName', 'HostName is not a valid host name (e.g. myhub.azure-devices.net)');
  if (values.GatewayHostName && !HOST.test(values.GatewayHostName))
    throw bad('GatewayHostName', 'GatewayHostName is not a valid host name');
  const info: ConnectionInfo = {
    kind: values.DeviceId !== undefined ? 'device' : 'service',
    hostName: host,
    hubName: host.split(/[.:]/)[0],
  };
  if (values.SharedAccessKey !== undefined && !BASE64.test(values.SharedAccessKey)) {
    throw bad('SharedAccessKey', 'SharedAccessKey is not base64: copy the key again from the Azure portal');
  }
  if (values.SharedAccessSignature !== undefined && !/^SharedAccessSignature\s+\S/.test(values.SharedAccessSignature)) {
    throw bad('SharedAccessSignature', 'SharedAccessSignature must start with "SharedAccessSignature sr="');
  }
  if (values.x509 !== undefined && values.x509.toLowerCase() !== 'true') throw bad('x509', 'x509 can only be "true"');

  if (info.kind === 'device') {
    info.deviceId = values.DeviceId;
    if (values.ModuleId) info.moduleId = values.ModuleId;
    if (values.GatewayHostName) info.gatewayHostName = values.GatewayHostName;
    const creds = [values.SharedAccessKey, values.SharedAccessSignature, values.x509].filter(
      (v) => v !== undefined,
    ).length;
    if (creds === 0)
      throw bad('SharedAccessKey', 'a device string needs SharedAccessKey, SharedAccessSignature or x509=true');
    if (creds > 1) throw bad('SharedAccessKey', 'use only one of SharedAccessKey, SharedAccessSignature and x509=true');
    if (values.SharedAccessKeyName !== undefined && values.SharedAccessKey === undefined) {
      throw bad('SharedAccessKeyName', "SharedAccessKeyName needs the policy's SharedAccessKey");
    }
    if (values.SharedAccessKeyName) info.sharedAccessKeyName = values.SharedAccessKeyName;
    if (values.SharedAccessKey) info.sharedAccessKey = values.SharedAccessKey;
    if (values.SharedAccessSignature) info.sharedAccessSignature = values.SharedAccessSignature;
    if (values.x509) info.x509 = true;
  } else {
    if (values.ModuleId) throw bad('ModuleId', 'ModuleId needs a DeviceId');
    if (!values.SharedAccessKeyName) {
      throw bad(
        'SharedAccessKeyName',
        'SharedAccessKeyName is missing: a hub string names its policy (e.g. service or iothubowner); a device string needs DeviceId',
      );
    }
    if (!values.SharedAccessKey)
      throw bad('SharedAccessKey', "SharedAccessKey is missing: copy the policy's primary connection string");
    if (values.SharedAccessSignature || values.x509)
      throw bad('SharedAccessKey', 'a hub policy string uses SharedAccessKey only');
    info.sharedAccessKeyName = values.SharedAccessKeyName;
    info.sharedAccessKey = values.SharedAccessKey;
    if (values.GatewayHostName) info.gatewayHostName = values.GatewayHostName;
  }
  return info;
}

/** The canonical text: standard key order, no trailing ';'. */
export function formatConnectionString(info: Omit<ConnectionInfo, 'kind' | 'hubName'>): string {
  const pairs: [string, string | undefined][] = [
    ['HostName', info.hostName],
    ['DeviceId', info.deviceId],
    ['ModuleId', info.moduleId],
    ['SharedAccessKeyName', info.sharedAccessKeyName],
    ['SharedAccessKey', info.sharedAccessKey],
    ['SharedAccessSignature', info.sharedAccessSignature],
    ['x509', info.x509 ? 'true' : undefined],
    ['GatewayHostName', info.gatewayHostName],
  ];
  return pairs
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}
