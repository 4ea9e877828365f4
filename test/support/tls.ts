/**
 * Throwaway TLS material for the Redis and etcd tests, made with the openssl command line in a temp
 * dir (EC keys: much faster to generate than RSA):
 * - a CA, and a server certificate it signed for 127.0.0.1 and localhost (also usable as a client
 *   certificate, which etcd's own gateway needs when it dials itself);
 * - a client certificate signed by the CA;
 * - a second CA that signed nothing we use, and a self-signed certificate for the same names that no
 *   client should trust.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TlsFiles {
  dir: string;
  caFile: string;
  /** PEM of the CA certificate, for `tls: { ca }`. */
  ca: Buffer;
  serverCertFile: string;
  serverKeyFile: string;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A CA that signed neither the server nor the client. */
  otherCa: Buffer;
  selfSignedCertFile: string;
  selfSignedKeyFile: string;
  remove(): void;
}

export function makeTlsFiles(): TlsFiles {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-tls-'));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const key = (name: string): void => openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file(`${name}.key`));
  const san = 'subjectAltName=IP:127.0.0.1,DNS:localhost';
  const selfSigned = (name: string, ...ext: string[]): void => {
    key(name);
    openssl('req', '-x509', '-new', '-key', file(`${name}.key`), '-days', '2', '-subj', `/CN=${name}`, ...ext, '-out', file(`${name}.crt`));
  };
  const signed = (name: string, ext: string): void => {
    key(name);
    openssl('req', '-new', '-key', file(`${name}.key`), '-subj', `/CN=${name}`, '-out', file(`${name}.csr`));
    writeFileSync(file(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', file(`${name}.ext`), '-out', file(`${name}.crt`));
  };
  try {
    selfSigned('ca');
    selfSigned('other-ca');
    signed('server', `${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    signed('client', 'extendedKeyUsage=clientAuth\n');
    selfSigned('self', '-addext', san);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl failed (is the openssl package installed?): ${stderr || String(err)}`);
  }
  return {
    dir,
    caFile: file('ca.crt'),
    ca: readFileSync(file('ca.crt')),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    clientCert: readFileSync(file('client.crt')),
    clientKey: readFileSync(file('client.key')),
    otherCa: readFileSync(file('other-ca.crt')),
    selfSignedCertFile: file('self.crt'),
    selfSignedKeyFile: file('self.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
