/**
 * X.509 device authentication as IoT Hub does it (docs/PROTOCOL.md section 12): a self-signed device is known by the
 * SHA-1 or SHA-256 thumbprint of its certificate (primary or secondary); a CA-signed one by a chain up to a verified CA
 * registered with the hub, with its subject CN equal to the device id. Either way the certificate must be in its
 * validity period.
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/** A CA certificate registered with the hub (IoT Hub's "Certificates" blade); only a verified one vouches for devices. */
export interface CaCertificate {
  name: string;
  pem: string;
  /** SHA-1 thumbprint, upper-case hex without colons. */
  thumbprint: string;
  isVerified: boolean;
}

/** Upper-case hex without colons or spaces: how thumbprints are compared. */
export function normalizeThumbprint(t: string): string {
  return t.replace(/[:\s]/g, '').toUpperCase();
}

/** A thumbprint as IoT Hub's registry takes it: 40 (SHA-1) or 64 (SHA-256) hex digits. */
export function checkThumbprint(t: string, field: string): string {
  const n = normalizeThumbprint(t);
  if (!/^([0-9A-F]{40}|[0-9A-F]{64})$/.test(n))
    throw new Error(`${field} must be a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) thumbprint`);
  return n;
}

export function thumbprintsOf(cert: X509Certificate): { sha1: string; sha256: string } {
  return { sha1: normalizeThumbprint(cert.fingerprint), sha256: normalizeThumbprint(cert.fingerprint256) };
}

/** The subject's common name, or '' when there is none. */
export function commonName(cert: X509Certificate): string {
  const m = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return m ? m[1] : '';
}

/** Why the certificate is outside its validity period at `now`, or undefined when it is inside it. */
export function validityProblem(
  cert: X509Certificate,
  now: number,
  what = 'the client certificate',
): string | undefined {
  const to = Date.parse(cert.validTo);
  const from = Date.parse(cert.validFrom);
  if (now > to) return `${what} expired on ${new Date(to).toISOString()}`;
  if (now < from) return `${what} is not valid before ${new Date(from).toISOString()}`;
  return undefined;
}

/** True when the certificate says it is a CA (basic constraints CA:TRUE). */
function isCa(cert: X509Certificate): boolean {
  return (cert as X509Certificate & { ca?: boolean }).ca === true;
}

const issuedBy = (cert: X509Certificate, issuer: X509Certificate): boolean => {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
};

/**
 * Checks that chain[0] (the device's certificate) leads, through the intermediates the device sent (chain[1..]), to one
 * of the registered CAs. Returns why not, or undefined when it does. A registered CA that is not verified is named.
 */
export function chainProblem(chain: X509Certificate[], cas: CaCertificate[], now: number): string | undefined {
  const registered = cas.map((c) => ({ c, x: new X509Certificate(c.pem) }));
  let cert = chain[0];
  const used = new Set<X509Certificate>([cert]);
  for (let depth = 0; depth < 8; depth++) {
    const anchor = registered.find((r) => issuedBy(cert, r.x));
    if (anchor) {
      if (!anchor.c.isVerified)
        return `the certificate's CA "${anchor.c.name}" is registered but not verified (prove possession of its key first)`;
      return validityProblem(anchor.x, now, `the CA certificate "${anchor.c.name}"`);
    }
    const next = chain.find((c) => !used.has(c) && isCa(c) && issuedBy(cert, c));
    if (!next) break;
    const bad = validityProblem(next, now, `the intermediate certificate "${commonName(next)}"`);
    if (bad) return bad;
    used.add(next);
    cert = next;
  }
  return `the certificate does not chain to a CA registered with this hub (its issuer: ${cert.issuer.replace(/\n/g, ', ')})`;
}

/**
 * What the client sent in its TLS handshake: its certificate first, then the intermediates (OpenSSL's view of the peer
 * chain; the listeners ask for a certificate but verify nothing, that is ours to do). Empty for no certificate.
 */
export function peerChain(socket: unknown): X509Certificate[] {
  const s = socket as Partial<TLSSocket>;
  if (typeof s.getPeerCertificate !== 'function') return [];
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let c = s.getPeerCertificate(true) as
    { raw?: Buffer; fingerprint256?: string; issuerCertificate?: unknown } | undefined;
  while (c && c.raw && !seen.has(c.fingerprint256 ?? '') && out.length < 10) {
    seen.add(c.fingerprint256 ?? '');
    try {
      out.push(new X509Certificate(c.raw));
    } catch {
      break;
    }
    c = c.issuerCertificate as typeof c;
  }
  return out;
}
