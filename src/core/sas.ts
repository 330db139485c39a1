/**
 * SAS tokens (docs/PROTOCOL.md section 2): the one signer and verifier, used by the clients and the local hub.
 * `SharedAccessSignature sr={url-encoded resource}&sig={url-encoded base64 HMAC}&se={expiry}[&skn={policy}]`
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { IotHubError } from './errors';

function sign(stringToSign: string, key: string): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(stringToSign, 'utf8').digest('base64');
}

/** encodeURIComponent plus `! ' ( ) *`, as azure-iot-common's encodeUriComponentStrict. */
export function encodeStrict(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
}

/**
 * Creates a token exactly as the Node SDKs do: `sr` url-encoded (strict), signed as encoded. rawResource: `sr` as given,
 * as the SDKs' DPS security clients write it (SharedAccessSignature.create, test/unit/dps-client.test.js).
 */
export function createSasToken(opts: {
  resourceUri: string;
  key: string;
  keyName?: string;
  expiresAt: number;
  rawResource?: boolean;
}): string {
  const sr = opts.rawResource ? opts.resourceUri : encodeStrict(opts.resourceUri);
  const se = Math.floor(opts.expiresAt);
  const sig = encodeStrict(sign(`${sr}\n${se}`, opts.key));
  return `SharedAccessSignature sr=${sr}&sig=${sig}${opts.keyName ? `&skn=${encodeStrict(opts.keyName)}` : ''}&se=${se}`;
}

export interface ParsedSasToken {
  /** `sr` exactly as written: what was signed. */
  sr: string;
  /** `sr` decoded, with any scheme stripped. */
  resource: string;
  /** The signature, percent-decoded (base64). */
  sig: string;
  se: number;
  skn?: string;
}

function invalid(text: string): IotHubError {
  return new IotHubError('INVALID_TOKEN', `SAS token: ${text}`);
}

function decode(v: string, field: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw invalid(`${field} is not valid percent-encoding`);
  }
}

export function parseSasToken(token: string): ParsedSasToken {
  if (typeof token !== 'string') throw invalid('not a string');
  const m = /^\s*SharedAccessSignature\s+(.*)$/s.exec(token);
  if (!m) throw invalid('it must start with "SharedAccessSignature "');
  const fields: Record<string, string> = {};
  for (const pair of m[1].trim().split('&')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid('a field is not name=value');
    const name = pair.slice(0, eq);
    if (fields[name] !== undefined) throw invalid(`${name} appears twice`);
    fields[name] = pair.slice(eq + 1);
  }
  for (const f of ['sr', 'sig', 'se']) if (!fields[f]) throw invalid(`${f} is missing`);
  if (!/^\d{1,12}$/.test(fields.se)) throw invalid('se must be an expiry time in seconds since 1970');
  const resource = decode(fields.sr, 'sr').replace(/^[a-z]+:\/\//i, '');
  const out: ParsedSasToken = { sr: fields.sr, resource, sig: decode(fields.sig, 'sig'), se: Number(fields.se) };
  if (fields.skn !== undefined) out.skn = decode(fields.skn, 'skn');
  return out;
}

/**
 * Verifies the signature over the raw `sr` as received (accepts Node/Python encoded and C raw forms)
 * and the expiry. False for a bad signature or an expired token; throws only for a malformed token.
 */
export function verifySasToken(token: string | ParsedSasToken, key: string, nowSec = Date.now() / 1000): boolean {
  const t = typeof token === 'string' ? parseSasToken(token) : token;
  if (t.se < nowSec) return false;
  const expected = Buffer.from(sign(`${t.sr}\n${t.se}`, key), 'base64');
  const given = Buffer.from(t.sig, 'base64');
  return expected.length === given.length && timingSafeEqual(expected, given);
}

function segments(resource: string): string[] {
  let r = resource.replace(/^[a-z]+:\/\//i, '').toLowerCase();
  try {
    r = decodeURIComponent(r);
  } catch {
    // Already decoded text with a literal '%': compare as is.
  }
  return r.split('/').filter((s) => s.length > 0);
}

/** True when a token for `tokenResource` may act on `wanted`: by path segment, case-insensitive. */
export function scopeCovers(tokenResource: string, wanted: string): boolean {
  const have = segments(tokenResource);
  const want = segments(wanted);
  if (have.length === 0 || have.length > want.length) return false;
  return have.every((s, i) => s === want[i]);
}

/** Unencoded, as the SDKs build it: createSasToken encodes the whole URI once. */
export function deviceResourceUri(hostName: string, deviceId: string): string {
  return `${hostName}/devices/${deviceId}`;
}

export function secondsToExpiry(token: string, nowSec = Date.now() / 1000): number {
  return parseSasToken(token).se - nowSec;
}
