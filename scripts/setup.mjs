#!/usr/bin/env node
// Installs what `npm test` and `npm run demo` need and is missing: npm packages (npm ci), and from
// Debian the redis/etcd servers, the test tools, and Go with etcd's Go sources (apt-get, when running as
// root; otherwise it prints the exact command).
// Plain JavaScript with Node built-ins only, because it runs before node_modules exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// binary -> Debian package: the servers, and the tools the tests drive (TLS material, clock jumps,
// the Go toolchain that builds etcd's own client recipes in test/go)
const servers = [
  ['redis-server', 'redis-server'],
  ['redis-sentinel', 'redis-sentinel'], // the demo's Sentinel scene and the Sentinel tests
  ['etcd', 'etcd-server'],
  ['etcdctl', 'etcd-client'],
  ['openssl', 'openssl'],
  ['faketime', 'faketime'],
];
// `--tests`: what only the tests need. Go builds the interop programs in test/go against etcd's Go
// sources (a directory -> Debian package: it installs sources rather than a binary).
const forTests = process.argv.includes('--tests');
// tmux: the terminal `status --watch` is tested in
if (forTests) servers.push(['go', 'golang-go'], ['tmux', 'tmux']);
const sources = forTests ? [['/usr/share/gocode/src/go.etcd.io/etcd/clientv3/concurrency', 'golang-etcd-server-dev']] : [];

function onPath(binary) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir, binary), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(cmd, args) {
  console.error(`setup: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) {
    console.error(`setup: \`${cmd} ${args.join(' ')}\` failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) {
  console.error(`setup: wirelock needs Node >= 20 (this is ${process.versions.node})`);
  process.exit(1);
}

// npm packages: the dev tools the tests and demo run on must all be there.
const needed = ['redis-parser', '@grpc/grpc-js', 'protobufjs', 'typescript', 'tsx', 'mocha', 'chai'];
if (!needed.every((p) => existsSync(path.join(root, 'node_modules', p, 'package.json')))) {
  run('npm', existsSync(path.join(root, 'package-lock.json')) ? ['ci', '--no-audit', '--no-fund'] : ['install']);
}

const missing = [
  ...servers.filter(([binary]) => !onPath(binary)).map(([, pkg]) => pkg),
  ...sources.filter(([dir]) => !existsSync(dir)).map(([, pkg]) => pkg),
];
if (missing.length > 0) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  if (!isRoot) {
    console.error(`setup: missing ${missing.join(', ')}. Install them as root, then run this again:\n\n  sudo sh -c '${cmd}'\n`);
    process.exit(1);
  }
  run('apt-get', ['update', '-qq']);
  run('apt-get', ['install', '-y', '-qq', ...missing]);
  // Debian starts the packaged services on install; ours start their own servers on free ports.
  for (const svc of ['redis-server', 'redis-sentinel', 'etcd']) {
    try {
      execFileSync('sh', ['-c', `command -v systemctl >/dev/null && systemctl stop ${svc} 2>/dev/null || true`]);
    } catch {
      // no systemd here: nothing was started
    }
  }
}
