/**
 * Throwaway TLS material for tests, made with the openssl command line in a temp dir:
 * a CA, a server certificate it signed (for 127.0.0.1 and localhost), and an unrelated self-signed
 * certificate that no client should trust.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TlsFiles {
  dir: string;
  caFile: string;
  /** PEM of the CA certificate, for `tls: { ca }`. */
  ca: string;
  serverCertFile: string;
  serverKeyFile: string;
  selfSignedCertFile: string;
  selfSignedKeyFile: string;
  remove(): void;
}

export function makeTlsFiles(): TlsFiles {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-tls-'));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const san = 'subjectAltName=IP:127.0.0.1,DNS:localhost';
  try {
    // The CA.
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=wirelock test CA',
      '-keyout', file('ca.key'), '-out', file('ca.crt'));
    // The server certificate, signed by the CA.
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
      '-keyout', file('server.key'), '-out', file('server.csr'));
    writeFileSync(file('server.ext'), `${san}\nextendedKeyUsage=serverAuth\n`);
    openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
      '-CAcreateserial', '-days', '2', '-extfile', file('server.ext'), '-out', file('server.crt'));
    // A self-signed certificate for the same names, trusted by nobody.
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', san, '-keyout', file('self.key'), '-out', file('self.crt'));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl failed (is the openssl package installed?): ${stderr || String(err)}`);
  }
  return {
    dir,
    caFile: file('ca.crt'),
    ca: readFileSync(file('ca.crt'), 'utf8'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    selfSignedCertFile: file('self.crt'),
    selfSignedKeyFile: file('self.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
