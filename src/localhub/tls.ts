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
const RSA_SHA256 = seq(oid('1.2.840.113549.1.1.11'), der(0x05));
/** The signature algorithm a CA key signs with (a given CA may be RSA; the hub's own keys are EC). */
const algorithmOf = (signer: KeyObject) => (signer.asymmetricKeyType === 'rsa' ? RSA_SHA256 : ECDSA_SHA256);

function keyId(pub: KeyObject): Buffer {
  return createHash('sha1')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest();
}

function certificate(o: {
  subject: string;
  /** The issuer's name: a CN, or the issuer's whole DER Name (a CA given from outside, whose name may be any). */
  issuer: string | Buffer;
  pub: KeyObject;
  signer: KeyObject;
  /** Absent: no authority key identifier (a given CA's own key id is not known here, and a wrong one breaks chains). */
  issuerKeyId?: Buffer;
  days: number;
  extensions: Buffer[];
}): string {
  const serial = randomBytes(16);
  // Positive and without a leading zero byte: DER rejects non-minimal INTEGERs ("illegal padding").
  serial[0] = (serial[0] & 0x7f) | 0x40;
  const now = Date.now();
  const alg = algorithmOf(o.signer);
  const tbs = seq(
    der(0xa0, int(Buffer.from([2]))),
    int(serial),
    alg,
    typeof o.issuer === 'string' ? name(o.issuer) : o.issuer,
    seq(time(new Date(now - 3600_000)), time(new Date(now + o.days * 86400_000))),
    name(o.subject),
    o.pub.export({ type: 'spki', format: 'der' }),
    der(
      0xa3,
      seq(
        ...o.extensions,
        ext('2.5.29.14', false, octets(keyId(o.pub))),
        ...(o.issuerKeyId ? [ext('2.5.29.35', false, seq(der(0x80, o.issuerKeyId)))] : []),
      ),
    ),
  );
  const signature = sign('sha256', tbs, o.signer);
  const cert = seq(tbs, alg, bits(signature));
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

/** A CA from outside (an IoT Edge gateway's, say) that the hub's server certificate is to be issued by. */
export interface GivenCa {
  certPem: string;
  keyPem: string;
}

/** The issuer Name of certificates a CA signs: the CA's subject, as DER, read from its certificate. */
function subjectDer(caPem: string): Buffer {
  const raw = new X509Certificate(caPem).raw;
  // Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version, serial, sigAlg, issuer, validity, subject, ... } }
  const read = (buf: Buffer, at: number): { start: number; end: number; next: number } => {
    let len = buf[at + 1];
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[at + 2 + i];
      head = 2 + n;
    }
    return { start: at, end: at + head + len, next: at + head };
  };
  const tbs = read(raw, read(raw, 0).next);
  let at = tbs.next;
  for (let i = 0; i < 5; i++) at = read(raw, at).end; // version, serial, signature, issuer, validity
  const subject = read(raw, at);
  return raw.subarray(subject.start, subject.end);
}

/**
 * Creates (first time) or reuses the CA and server certificate in dataDir. hostNames: the names the server certificate
 * is for (besides localhost and 127.0.0.1): the hub's, and a gateway's. given: issue it from this CA instead of the
 * hub's own, for exactly hostNames (its certificate goes to served-ca.pem; the hub's own CA stays for later runs).
 */
export function ensureTlsMaterial(dataDir: string, hostNames: string[], given?: GivenCa): TlsMaterial {
  fs.mkdirSync(dataDir, { recursive: true });
  // A given CA's certificate is for exactly the names given (a gateway's); the hub's own also for localhost.
  if (given) return issueFromGivenCa(dataDir, [...new Set(hostNames.filter(Boolean))], given);
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
  const { certPem: newCert, keyPem } = serverCertificate(names, 'IoT Hub local CA', caKey);
  writeSecret(files.key, keyPem);
  fs.writeFileSync(files.cert, newCert);
  return { caPem, caCertPath: files.ca, certPem: newCert, keyPem };
}

function serverCertificate(
  names: string[],
  issuer: string | Buffer,
  caKey: KeyObject,
  ownCa = true,
): { certPem: string; keyPem: string } {
  const server = newKey();
  const certPem = certificate({
    subject: names.find((n) => !net.isIP(n) && n !== 'localhost') ?? names[0],
    issuer,
    pub: server.pub,
    signer: caKey,
    issuerKeyId: ownCa ? keyId(createPublicKey(caKey)) : undefined,
    days: 820,
    extensions: [
      ext('2.5.29.19', true, seq()),
      ext('2.5.29.15', true, bits(Buffer.from([0xa0]), 5)),
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))),
      ext('2.5.29.17', false, subjectAltName(names)),
    ],
  });
  return { certPem, keyPem: server.key.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** The server certificate from a CA given from outside: made each start (it is cheap), never stored with the hub's. */
function issueFromGivenCa(dataDir: string, names: string[], given: GivenCa): TlsMaterial {
  let caKey: KeyObject;
  let issuer: Buffer;
  try {
    caKey = createPrivateKey(given.keyPem);
    issuer = subjectDer(given.certPem);
    if (!new X509Certificate(given.certPem).checkPrivateKey(caKey)) throw new Error("the key is not the certificate's");
  } catch (err) {
    throw new Error(`the TLS CA given to the local hub cannot be used: ${(err as Error).message}`);
  }
  const caCertPath = path.join(dataDir, 'served-ca.pem');
  fs.writeFileSync(caCertPath, given.certPem);
  const { certPem, keyPem } = serverCertificate(names, issuer, caKey, false);
  return { caPem: given.certPem, caCertPath, certPem, keyPem };
}
