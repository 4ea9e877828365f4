/**
 * TLS material for the etcd tests, made with the openssl command line: a CA, a server certificate
 * for 127.0.0.1 (also usable as a client certificate, which etcd's own gateway needs when it dials
 * itself), a client certificate, and a second CA that signed nothing we use.
 * EC keys: much faster to generate than RSA.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface EtcdCerts {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A CA that signed neither the server nor the client. */
  otherCa: Buffer;
  remove(): void;
}

export function makeEtcdCerts(): EtcdCerts {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-etcd-tls-'));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const key = (name: string): void => openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file(name));
  const ca = (name: string): void => {
    key(`${name}.key`);
    openssl('req', '-x509', '-new', '-key', file(`${name}.key`), '-days', '2', '-subj', `/CN=${name}`, '-out', file(`${name}.crt`));
  };
  const signed = (name: string, ext: string): void => {
    key(`${name}.key`);
    openssl('req', '-new', '-key', file(`${name}.key`), '-subj', `/CN=${name}`, '-out', file(`${name}.csr`));
    writeFileSync(file(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', file(`${name}.ext`), '-out', file(`${name}.crt`));
  };
  try {
    ca('ca');
    ca('other-ca');
    signed('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    signed('client', 'extendedKeyUsage=clientAuth\n');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl failed (is the openssl package installed?): ${stderr || String(err)}`);
  }
  return {
    dir,
    caFile: file('ca.crt'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    ca: readFileSync(file('ca.crt')),
    clientCert: readFileSync(file('client.crt')),
    clientKey: readFileSync(file('client.key')),
    otherCa: readFileSync(file('other-ca.crt')),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
