/**
 * X.509 on the device side: reading the certificate and key a user pasted, explaining a hub's refusal of them, and
 * naming a server certificate we do not trust (a gateway's CA missing). The status shows the text before the first
 * ";" of these messages; the log gets all of it, with the fix.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { IotHubError } from './errors';

/**
 * PEM text as pasted: a one-line password field drops the line breaks, a hand copy may add spaces or CRs. Each
 * -----BEGIN X----- block is rewrapped at 64 columns; anything that is not PEM is returned as it is.
 */
export function normalizePem(text: string): string {
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)];
  if (!blocks.length) return text;
  return blocks
    .map(([, label, body]) => {
      // Legacy encrypted PEM carries "Proc-Type:" headers: leave such a block as it came.
      if (/:/.test(body)) return `-----BEGIN ${label}-----${body}-----END ${label}-----\n`;
      const b64 = body.replace(/\s+/g, '');
      return `-----BEGIN ${label}-----\n${b64.replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;
    })
    .join('');
}

export interface ClientCertificate {
  cert: string;
  key: string;
  passphrase?: string;
}

function bad(field: string, text: string): IotHubError {
  return new IotHubError('INVALID_ARGUMENT', text, { field });
}

/**
 * The certificate and key as TLS will take them, or a clear error naming the setting at fault: not PEM, a key that
 * needs a passphrase (or a wrong one), a key that is not the certificate's. Never echoes the key.
 */
export function readClientCertificate(c: ClientCertificate): ClientCertificate {
  const cert = normalizePem(c.cert.trim());
  const key = normalizePem(c.key.trim());
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch {
    throw bad('cert', 'the client certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----…)');
  }
  let k;
  try {
    k = createPrivateKey({ key, passphrase: c.passphrase || undefined, format: 'pem' });
  } catch {
    if (/ENCRYPTED/.test(key))
      throw bad(
        'passphrase',
        c.passphrase ? 'the client key passphrase is wrong' : 'the client key is encrypted: give its passphrase',
      );
    throw bad('key', 'the client key is not a PEM private key (-----BEGIN PRIVATE KEY-----…)');
  }
  if (!x.checkPrivateKey(k)) throw bad('key', 'the client key does not belong to the client certificate');
  return { cert, key, ...(c.passphrase ? { passphrase: c.passphrase } : {}) };
}

/**
 * Why a hub that refused this certificate (MQTT CONNACK 5, AMQP unauthorized-access: neither says why) most likely did,
 * as far as the certificate itself tells: out of its validity period, or not registered for this device.
 */
export function certificateRefused(certPem: string, deviceId: string, now = Date.now()): IotHubError {
  let why: string;
  try {
    const x = new X509Certificate(certPem);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1] ?? '';
    const to = Date.parse(x.validTo);
    const from = Date.parse(x.validFrom);
    const thumb = x.fingerprint.replace(/:/g, '');
    if (now > to)
      why = `certificate refused: it expired on ${new Date(to).toISOString().slice(0, 10)}; install a new certificate for ${deviceId} and register its thumbprint (or have it issued by the device's CA)`;
    else if (now < from)
      why = `certificate refused: it is not valid before ${new Date(from).toISOString()}; check the device clock`;
    else
      why = `certificate refused: the hub does not accept it; register its thumbprint (SHA-1 ${thumb}) on device ${deviceId}, or issue it from a verified CA with CN=${deviceId} (its CN is "${cn}")`;
  } catch {
    why = 'certificate refused: the hub does not accept the client certificate';
  }
  return new IotHubError('UNAUTHORIZED', why, { reason: shortCause(why) });
}

/** Node's codes for a server certificate it cannot verify. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A TLS error about the server's certificate, explained with its fix; undefined for any other error. */
export function untrustedServer(err: unknown, host: string): IotHubError | undefined {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (!UNTRUSTED.has(code)) return undefined;
  const fix =
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? `its certificate is not for the name dialled; a gateway must be dialled by the name in its certificate (GatewayHostName)`
      : code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID'
        ? 'its certificate is out of its validity period; check the clock, or renew the certificate'
        : "its certificate is not issued by a CA this runtime trusts; give the gateway's CA certificate (PEM) in the config node or in NODE_EXTRA_CA_CERTS";
  const text = `certificate not trusted: ${host}; ${fix} (${code})`;
  return new IotHubError('CONNECTION_LOST', text, { cause: err, reason: shortCause(text) });
}

/** A certificate's cause for the status (errors.ts reasonOf): the text before its first ";", at most 60 characters. */
function shortCause(text: string): string {
  const head = text.split(';')[0];
  return head.length > 60 ? `${head.slice(0, 57)}...` : head;
}
