/**
 * TLS material for the local hub, made with node:crypto alone: a CA and a server certificate
 * (EC P-256, X.509 v3 written in DER by hand) kept in the data directory and reused.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export interface TlsMaterial {
  caPem: string;
  caCertPath: string;
  certPem: string;
  keyPem: string;
}

// Minimal DER: tag + length + content.
function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...c: Buffer[]) => der(0x30, ...c);
const set = (...c: Buffer[]) => der(0x31, ...c);
const octets = (b: Buffer) => der(0x04, b);
const bits = (b: Buffer, unused = 0) => der(0x03, Buffer.from([unused]), b);
const bool = (v: boolean) => der(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s: string) => der(0x0c, Buffer.from(s, 'utf8'));
function int(b: Buffer): Buffer {
  return der(0x02, b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}
function oid(text: string): Buffer {
  const arcs = text.split('.').map(Number);
  const out = [arcs[0] * 40 + arcs[1]];
  for (const a of arcs.slice(2)) {
    const stack = [a & 0x7f];
    for (let v = a >> 7; v > 0; v >>= 7) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return der(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return der(0x17, Buffer.from(s, 'ascii'));
}
const name = (cn: string) => seq(set(seq(oid('2.5.4.3'), utf8(cn))));
const ext = (id: string, critical: boolean, value: Buffer) =>
  seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function keyId(pub: KeyObject): Buffer {
  return createHash('sha1')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest();
}

function certificate(o: {
  subject: string;
  issuer: string;
  pub: KeyObject;
  signer: KeyObject;
  issuerKeyId: Buffer;
  days: number;
  extensions: Buffer[];
}): string {
  const serial = randomBytes(16);
  // Positive and without a leading zero byte: DER rejects non-minimal INTEGERs ("illegal padding").
  serial[0] = (serial[0] & 0x7f) | 0x40;
  const now = Date.now();
  const tbs = seq(
    der(0xa0, int(Buffer.from([2]))),
    int(serial),
    ECDSA_SHA256,
    name(o.issuer),
    seq(time(new Date(now - 3600_000)), time(new Date(now + o.days * 86400_000))),
    name(o.subject),
    o.pub.export({ type: 'spki', format: 'der' }),
    der(
      0xa3,
      seq(
        ...o.extensions,
        ext('2.5.29.14', false, octets(keyId(o.pub))),
        ext('2.5.29.35', false, seq(der(0x80, o.issuerKeyId))),
      ),
    ),
  );
  const signature = sign('sha256', tbs, o.signer);
  const cert = seq(tbs, ECDSA_SHA256, bits(signature));
  return `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
}

function subjectAltName(names: string[]): Buffer {
  return seq(
    ...names.map((n) => {
      if (net.isIPv4(n)) return der(0x87, Buffer.from(n.split('.').map(Number)));
      return der(0x82, Buffer.from(n, 'ascii'));
    }),
  );
}

function newKey(): { pub: KeyObject; key: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { pub: publicKey, key: privateKey };
}

function writeSecret(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: 0o600 });
}

function stillGood(certPem: string, caPem: string, hostNames: string[]): boolean {
  try {
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    const soon = Date.now() + 7 * 86400_000;
    if (Date.parse(cert.validTo) < soon || Date.parse(ca.validTo) < soon) return false;
    if (!cert.verify(ca.publicKey)) return false;
    return hostNames.every((h) => (net.isIP(h) ? cert.checkIP(h) : cert.checkHost(h)) !== undefined);
  } catch {
    return false;
  }
}

/** Creates (first time) or reuses the CA and server certificate in dataDir. */
export function ensureTlsMaterial(dataDir: string, hostNames: string[]): TlsMaterial {
  fs.mkdirSync(dataDir, { recursive: true });
  const names = [...new Set(['localhost', '127.0.0.1', ...hostNames.filter(Boolean)])];
  const files = {
    ca: path.join(dataDir, 'ca.pem'),
    caKey: path.join(dataDir, 'ca.key'),
    cert: path.join(dataDir, 'server.pem'),
    key: path.join(dataDir, 'server.key'),
  };
  let caPem = fs.existsSync(files.ca) ? fs.readFileSync(files.ca, 'utf8') : '';
  let caKey: KeyObject | undefined;
  try {
    caKey = caPem && fs.existsSync(files.caKey) ? createPrivateKey(fs.readFileSync(files.caKey, 'utf8')) : undefined;
    if (caKey && Date.parse(new X509Certificate(caPem).validTo) < Date.now() + 30 * 86400_000) caKey = undefined;
  } catch {
    caKey = undefined;
  }
  if (!caKey) {
    const ca = newKey();
    caKey = ca.key;
    caPem = certificate({
      subject: 'IoT Hub local CA',
      issuer: 'IoT Hub local CA',
      pub: ca.pub,
      signer: ca.key,
      issuerKeyId: keyId(ca.pub),
      days: 3650,
      extensions: [ext('2.5.29.19', true, seq(bool(true))), ext('2.5.29.15', true, bits(Buffer.from([0x86]), 1))],
    });
    writeSecret(files.caKey, ca.key.export({ type: 'pkcs8', format: 'pem' }) as string);
    fs.writeFileSync(files.ca, caPem);
  }
  const certPem = fs.existsSync(files.cert) ? fs.readFileSync(files.cert, 'utf8') : '';
  if (certPem && fs.existsSync(files.key) && stillGood(certPem, caPem, names)) {
    return { caPem, caCertPath: files.ca, certPem, keyPem: fs.readFileSync(files.key, 'utf8') };
  }
  const server = newKey();
  const newCert = certificate({
    subject: names[0],
    issuer: 'IoT Hub local CA',
    pub: server.pub,
    signer: caKey,
    issuerKeyId: keyId(createPublicKey(caKey)),
    days: 820,
    extensions: [
      ext('2.5.29.19', true, seq()),
      ext('2.5.29.15', true, bits(Buffer.from([0xa0]), 5)),
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))),
      ext('2.5.29.17', false, subjectAltName(names)),
    ],
  });
  const keyPem = server.key.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeSecret(files.key, keyPem);
  fs.writeFileSync(files.cert, newCert);
  return { caPem, caCertPath: files.ca, certPem: newCert, keyPem };
}
