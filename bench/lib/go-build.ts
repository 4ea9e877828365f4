/**
 * Builds a Go program against etcd's own Go client, offline: GOPATH mode on Debian's etcd 3.4
 * sources (golang-etcd-server-dev), no module download. The interop tests (test/support/go.ts) and
 * the bench's Go row (bench/go/mutex) both build this way. Missing Go or sources is an Error saying
 * what to install. The build cache lives in the OS temp dir and outlives the process, so only the
 * first build on a machine pays for compiling grpc and clientv3.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { findBinary, tempDir } from '../../src/testing/process.js';

const run = promisify(execFile);

const GOPATH = '/usr/share/gocode';
/** The package the programs import; a directory, since golang-etcd-server-dev installs no binary. */
const ETCD_SOURCES = path.join(GOPATH, 'src/go.etcd.io/etcd/clientv3/concurrency');
const INSTALL = 'apt-get install -y golang-go golang-etcd-server-dev';

/** `go build`s the package in `source` into a temp dir (removed at exit); resolves with the binary. `label` names it in errors. */
export async function goBuild(source: string, label: string): Promise<string> {
  let go: string;
  try {
    go = findBinary('go', 'golang-go');
  } catch {
    throw new Error(`go not found on PATH: install the Go toolchain and etcd's Go sources with \`${INSTALL}\``);
  }
  if (!existsSync(ETCD_SOURCES)) {
    throw new Error(`etcd's Go sources are missing (no ${ETCD_SOURCES}): install them with \`${INSTALL}\``);
  }
  const binary = path.join(tempDir('go'), path.basename(source));
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH,
    GOCACHE: path.join(os.tmpdir(), 'wirelock-go-cache'),
    GOFLAGS: '', // a -mod=… from the caller's environment is an error in GOPATH mode
  };
  try {
    await run(go, ['build', '-o', binary, '.'], { cwd: source, env, timeout: 300_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`go build of ${label} failed:\n${stderr || String(err)}`, { cause: err });
  }
  return binary;
}
