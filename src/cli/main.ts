#!/usr/bin/env node
/**
 * The `wirelock` command. Every error is one line with its code; bad usage prints the usage and
 * exits 2. Nothing here prints a password: errors from the library never contain one.
 */
import { readFileSync } from 'node:fs';
import { ConnectionError, EtcdError, RespError, TimeoutError, WirelockError } from '../errors.js';
import { commonFlags, electFlags, parseDuration, parseFlags, runFlags, statusFlags, USAGE, UsageError } from './args.js';
import { elect } from './elect.js';
import { CliExit, EXIT, describe } from './exit.js';
import { run } from './run.js';
import { status } from './status.js';
import { trace } from './trace.js';

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const err = (line: string): void => void process.stderr.write(`wirelock: ${line}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    out(USAGE.main!);
    return command === undefined ? EXIT.usage : 0;
  }
  if (command === '--version' || command === '-v') return out(version()), 0;
  switch (command) {
    case 'run': {
      const flags = runFlags(rest);
      if (flags.help) return out(USAGE.run!), 0;
      return await run(flags, err);
    }
    case 'status': {
      const flags = statusFlags(rest);
      if (flags.help) return out(USAGE.status!), 0;
      await status(flags, out, process.stdout);
      return 0;
    }
    case 'trace': {
      const { values, help } = parseFlags('trace', rest, ['--redis', '--redis-cluster', '--etcd', '--key', '--prefix', '--user', '--tls-ca', '--tls-cert', '--tls-key', '--ttl']);
      if (help) return out(USAGE.trace!), 0;
      const flags = commonFlags('trace', values, help);
      await trace({ ...flags, ttlMs: values.has('--ttl') ? parseDuration(values.get('--ttl')!, '--ttl') : undefined }, out);
      return 0;
    }
    case 'elect': {
      const flags = electFlags(rest);
      if (flags.help) return out(USAGE.elect!), 0;
      return await elect(flags, out, err);
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

/**
 * The version in the package's own package.json, read when asked: two levels up from this file is
 * the package root both from src/cli (tsx) and from dist/cli (built, or installed under node_modules).
 */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function exitCodeFor(e: unknown): number {
  if (e instanceof CliExit) return e.code;
  if (e instanceof UsageError) return EXIT.usage;
  if (e instanceof ConnectionError || e instanceof TimeoutError || e instanceof EtcdError || e instanceof RespError) return EXIT.unavailable;
  if (e instanceof WirelockError) return EXIT.unavailable;
  return 1;
}

main(process.argv.slice(2))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof UsageError) {
        err(e.message);
        process.stderr.write(`\n${USAGE[e.command ?? 'main']}\n`);
      } else if (e instanceof TypeError || e instanceof RangeError) {
        err(e.message); // bad values the library caught: a malformed URL, a bad TTL…
        process.exitCode = EXIT.usage;
        return;
      } else {
        err(e instanceof CliExit ? e.message : describe(e));
      }
      process.exitCode = exitCodeFor(e);
    },
  )
  // Exit now rather than when the last socket or timer lets go (stdout/stderr are synchronous here).
  .finally(() => process.exit());
