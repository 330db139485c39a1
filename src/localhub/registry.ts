/**
 * The local hub's identity registry: devices with symmetric keys (or X.509 thumbprints), hub-level
 * shared access policies with permissions, and SAS verification against them (docs/PROTOCOL.md section 2).
 */
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { IotHubError } from '../core/errors';
import { checkDeviceId } from '../core/message';
import { parseSasToken, ParsedSasToken, scopeCovers, verifySasToken } from '../core/sas';
import {
  CaCertificate,
  chainProblem,
  checkThumbprint,
  commonName,
  normalizeThumbprint,
  thumbprintsOf,
  validityProblem,
} from './x509-auth';

export type Permission = 'registryRead' | 'registryWrite' | 'serviceConnect' | 'deviceConnect';

export interface Policy {
  name: string;
  primaryKey: string;
  secondaryKey: string;
  permissions: Permission[];
}

export interface Device {
  deviceId: string;
  generationId: string;
  etag: string;
  status: 'enabled' | 'disabled';
  primaryKey?: string;
  secondaryKey?: string;
  /** X.509 self-signed: the primary thumbprint (SHA-1 or SHA-256 hex), and the secondary. */
  x509Thumbprint?: string;
  x509SecondaryThumbprint?: string;
  /** Absent: SAS keys, or selfSigned when a thumbprint is set (older state files). */
  authType?: AuthType;
}

/** IoT Hub's authentication types for a device identity. */
export type AuthType = 'sas' | 'selfSigned' | 'certificateAuthority';

export interface CreateDeviceOptions {
  status?: 'enabled' | 'disabled';
  authType?: AuthType;
  /** selfSigned: the primary and secondary thumbprints (either may be SHA-1 or SHA-256). */
  x509Thumbprint?: string;
  x509SecondaryThumbprint?: string;
  primaryKey?: string;
  secondaryKey?: string;
}

/** Who a credential is, and until when (the SAS token's `se`, in seconds; Infinity for a certificate). */
export type Identity = (
  { kind: 'device'; deviceId: string; via?: string } | { kind: 'service'; policy: string; permissions: Permission[] }
) & { expiresAt: number };

export interface RegistryData {
  devices: Device[];
  policies: Policy[];
  /** CA certificates registered with the hub (X.509 CA-signed devices). */
  certificates?: CaCertificate[];
}

export function authTypeOf(d: Device): AuthType {
  return d.authType ?? (d.x509Thumbprint ? 'selfSigned' : 'sas');
}

export const newKey = (): string => randomBytes(32).toString('base64');

export function defaultPolicies(): Policy[] {
  return [
    { name: 'iothubowner', permissions: ['registryRead', 'registryWrite', 'serviceConnect', 'deviceConnect'] },
    { name: 'service', permissions: ['serviceConnect'] },
    { name: 'device', permissions: ['deviceConnect'] },
    { name: 'registryReadWrite', permissions: ['registryRead', 'registryWrite'] },
  ].map((p) => ({ ...p, primaryKey: newKey(), secondaryKey: newKey() }) as Policy);
}

function unauthorized(text: string): IotHubError {
  return new IotHubError('UNAUTHORIZED', text);
}

/** `host[:port]/rest` -> lower-cased host without port, and the rest. */
function splitResource(resource: string): { host: string; rest: string } {
  const i = resource.indexOf('/');
  const host = (i < 0 ? resource : resource.slice(0, i)).replace(/:\d+$/, '').toLowerCase();
  return { host, rest: i < 0 ? '' : resource.slice(i) };
}

export class Registry {
  readonly devices = new Map<string, Device>();
  readonly policies = new Map<string, Policy>();
  readonly certificates = new Map<string, CaCertificate>();
  onChange: () => void = () => undefined;

  constructor(
    readonly hostName: string,
    data?: RegistryData,
    readonly autoRegister = false,
  ) {
    for (const p of data?.policies ?? defaultPolicies()) this.policies.set(p.name, p);
    for (const d of data?.devices ?? []) this.devices.set(d.deviceId, d);
    for (const c of data?.certificates ?? []) this.certificates.set(c.name, c);
  }

  toJSON(): RegistryData {
    return {
      devices: [...this.devices.values()],
      policies: [...this.policies.values()],
      certificates: [...this.certificates.values()],
    };
  }

  /** Registers (or replaces) a CA certificate; verified: its possession was proven (IoT Hub's verification step). */
  addCertificate(name: string, pem: string, isVerified = true): CaCertificate {
    let x: X509Certificate;
    try {
      x = new X509Certificate(pem);
    } catch {
      throw new IotHubError('INVALID_ARGUMENT', `certificate ${name}: not a PEM certificate`);
    }
    const c: CaCertificate = { name, pem: x.toString(), thumbprint: normalizeThumbprint(x.fingerprint), isVerified };
    this.certificates.set(name, c);
    this.onChange();
    return c;
  }

  create(deviceId: string, opts: CreateDeviceOptions = {}): Device {
    checkDeviceId(deviceId);
    if (this.devices.has(deviceId)) throw new IotHubError('PRECONDITION_FAILED', `device ${deviceId} already exists`);
    const d: Device = {
      deviceId,
      generationId: String(Date.now()) + String(Math.floor(Math.random() * 1000)),
      etag: randomUUID(),
      status: opts.status ?? 'enabled',
    };
    const authType = opts.authType ?? (opts.x509Thumbprint || opts.x509SecondaryThumbprint ? 'selfSigned' : undefined);
    if (authType === 'selfSigned') {
      const bad = (e: unknown) => new IotHubError('INVALID_ARGUMENT', (e as Error).message);
      try {
        if (opts.x509Thumbprint) d.x509Thumbprint = checkThumbprint(opts.x509Thumbprint, 'primaryThumbprint');
        if (opts.x509SecondaryThumbprint)
          d.x509SecondaryThumbprint = checkThumbprint(opts.x509SecondaryThumbprint, 'secondaryThumbprint');
      } catch (e) {
        throw bad(e);
      }
      if (!d.x509Thumbprint && !d.x509SecondaryThumbprint)
        throw new IotHubError('INVALID_ARGUMENT', 'a selfSigned device needs a primary or secondary thumbprint');
      d.authType = 'selfSigned';
    } else if (authType === 'certificateAuthority') {
      d.authType = 'certificateAuthority';
    } else {
      d.primaryKey = opts.primaryKey || newKey();
      d.secondaryKey = opts.secondaryKey || newKey();
    }
    this.devices.set(deviceId, d);
    this.onChange();
    return d;
  }

  update(deviceId: string, patch: Partial<Pick<Device, 'status' | 'primaryKey' | 'secondaryKey'>>): Device {
    const d = this.devices.get(deviceId);
    if (!d) throw new IotHubError('DEVICE_NOT_FOUND', `device ${deviceId} not found`);
    Object.assign(d, Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)), {
      etag: randomUUID(),
    });
    this.onChange();
    return d;
  }

  remove(deviceId: string): boolean {
    const had = this.devices.delete(deviceId);
    if (had) this.onChange();
    return had;
  }

  private parse(token: string): ParsedSasToken {
    try {
      return parseSasToken(token);
    } catch {
      throw unauthorized('the token is not a valid SAS token');
    }
  }

  private checkHost(resource: string): { host: string; rest: string } {
    const r = splitResource(resource);
    if (r.host !== splitResource(this.hostName).host)
      throw unauthorized(`the token is for another hub (${r.host || 'none'})`);
    return r;
  }

  private policyFor(t: ParsedSasToken, need: Permission): Policy {
    const p = t.skn ? this.policies.get(t.skn) : undefined;
    if (!p) throw unauthorized(`unknown shared access policy "${t.skn}"`);
    if (!verifySasToken(t, p.primaryKey) && !verifySasToken(t, p.secondaryKey)) {
      throw unauthorized(
        t.se < Date.now() / 1000 ? 'the token has expired' : 'the token signature does not match the policy key',
      );
    }
    if (!p.permissions.includes(need)) throw unauthorized(`policy "${p.name}" lacks the ${need} permission`);
    return p;
  }

  /** A device (or a policy with DeviceConnect acting for it) may connect as deviceId. */
  authenticateDevice(token: string, deviceId: string): Identity {
    const t = this.parse(token);
    const { host, rest } = this.checkHost(t.resource);
    const wanted = `${host}/devices/${deviceId}`;
    if (!scopeCovers(`${host}${rest}`, wanted))
      throw unauthorized(`the token's scope does not cover device ${deviceId}`);
    if (t.skn) {
      const p = this.policyFor(t, 'deviceConnect');
      let d = this.devices.get(deviceId);
      if (!d && this.autoRegister) d = this.create(deviceId);
      if (!d) throw unauthorized(`device ${deviceId} is not registered`);
      if (d.status !== 'enabled') throw unauthorized(`device ${deviceId} is disabled`);
      return { kind: 'device', deviceId, via: p.name, expiresAt: t.se };
    }
    const d = this.devices.get(deviceId);
    if (!d) throw unauthorized(`device ${deviceId} is not registered`);
    if (!d.primaryKey || (!verifySasToken(t, d.primaryKey) && !verifySasToken(t, d.secondaryKey ?? ''))) {
      throw unauthorized(
        t.se < Date.now() / 1000 ? 'the token has expired' : 'the token signature does not match the device key',
      );
    }
    if (d.status !== 'enabled') throw unauthorized(`device ${deviceId} is disabled`);
    return { kind: 'device', deviceId, expiresAt: t.se };
  }

  /** A back-end token (with skn) carrying `need`. */
  authenticateService(token: string, need: Permission = 'serviceConnect'): Identity {
    const t = this.parse(token);
    const { host, rest } = this.checkHost(t.resource);
    if (!t.skn) throw unauthorized('a back-end token needs a shared access policy (skn)');
    if (rest && rest !== '/') throw unauthorized('a back-end token must be scoped to the hub');
    void host;
    const p = this.policyFor(t, need);
    return { kind: 'service', policy: p.name, permissions: p.permissions, expiresAt: t.se };
  }

  /** A CBS put-token: the audience says what the token is for. */
  authenticateAudience(token: string, audience: string): Identity {
    const t = this.parse(token);
    // Node sends the audience url-encoded, C raw, Python with https://.
    const aud = splitResource(safeDecode(audience).replace(/^[a-z]+:\/\//i, ''));
    const m = /^\/devices\/([^/]+)(?:\/modules\/[^/]+)?\/?$/.exec(aud.rest);
    if (m) return this.authenticateDevice(token, m[1]);
    void t;
    return this.authenticateService(token);
  }

  /**
   * A device that presented a client certificate in the TLS handshake: chain[0] is its certificate, the rest what it
   * sent along (intermediates). Self-signed devices match a thumbprint, CA-signed ones chain to a verified CA with CN =
   * device id; both must be within their validity period (docs/PROTOCOL.md section 12).
   */
  authenticateCertificate(deviceId: string, chain: X509Certificate[], now = Date.now()): Identity {
    const d = this.devices.get(deviceId);
    if (!d) throw unauthorized(`device ${deviceId} is not registered`);
    const leaf = chain[0];
    if (!leaf) throw unauthorized('no client certificate was presented');
    const type = authTypeOf(d);
    if (type === 'sas') throw unauthorized(`device ${deviceId} authenticates with SAS keys, not a certificate`);
    const expired = validityProblem(leaf, now);
    if (expired) throw unauthorized(expired);
    if (type === 'selfSigned') {
      const { sha1, sha256 } = thumbprintsOf(leaf);
      const ok = [d.x509Thumbprint, d.x509SecondaryThumbprint].some((t) => t === sha1 || t === sha256);
      if (!ok)
        throw unauthorized(
          `the client certificate's thumbprint (SHA-1 ${sha1}) matches neither thumbprint registered for device ${deviceId}`,
        );
    } else {
      const cn = commonName(leaf);
      if (cn !== deviceId) throw unauthorized(`the client certificate is for "${cn}" (its CN), not device ${deviceId}`);
      const bad = chainProblem(chain, [...this.certificates.values()], now);
      if (bad) throw unauthorized(bad);
    }
    if (d.status !== 'enabled') throw unauthorized(`device ${deviceId} is disabled`);
    return { kind: 'device', deviceId, expiresAt: Infinity };
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
