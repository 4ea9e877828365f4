/**
 * Command-line parsing for `wirelock`: flags, durations, and the usage texts.
 * Bad input is a UsageError (exit 2 with the usage), never a stack trace.
 */

export class UsageError extends Error {
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** Which servers, and how to reach them: what every command takes. */
export interface ConnectionFlags {
  redis?: string[];
  /** --redis-cluster: seeds of one Redis Cluster (the lockers run on the cluster; never Redlock). */
  redisCluster?: string[];
  etcd?: string[];
  prefix?: string;
  user?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  help: boolean;
}

export interface CommonFlags extends ConnectionFlags {
  key: string;
}

export interface StatusFlags extends CommonFlags {
  /** Read the key as a semaphore with this many permits (undefined: a lock). */
  permits: number | undefined;
  /** Read the key as a read-write lock (--rw). */
  rw: boolean;
  /** Redraw until a signal ends it. */
  watch: boolean;
  /** How often the watched view is read again, besides the wake-ups on a change. */
  intervalMs: number;
}

export interface RunFlags extends CommonFlags {
  /** Take one of this many permits of a semaphore instead of the lock (undefined: the lock). */
  permits: number | undefined;
  /** Hold the read-write lock NAME: 'read' (--shared) or 'write' (--exclusive); undefined: the lock. */
  rw: 'read' | 'write' | undefined;
  ttlMs: number;
  /** Infinity = wait forever; 0 = try once. */
  waitMs: number;
  graceMs: number;
  command: string[];
}

/** `elect`: campaign (`value` set, `observe` false) or observe; never both. */
export interface ElectFlags extends ConnectionFlags {
  name: string;
  /** What observers see as our value; undefined with --observe. */
  value: string | undefined;
  observe: boolean;
  ttlMs: number;
  /** Infinity = wait forever. */
  waitMs: number;
  graceMs: number;
  /** Empty: lead until a signal. */
  command: string[];
}

export const USAGE: Record<string, string> = {
  main: `wirelock: distributed locks for Redis, Redlock and etcd, from the command line

usage:
  wirelock run    (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME [options] -- CMD [ARGS…]
  wirelock status (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME [--watch]
  wirelock trace  (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME
  wirelock elect  (--redis URL | --etcd URL[,URL…]) --name NAME --value V [options] [--] [CMD [ARGS…]]
  wirelock elect  (--redis URL | --etcd URL[,URL…]) --name NAME --observe
  wirelock --version

One Redis URL is a single-server lock, several are Redlock over independent masters; etcd URLs are
one cluster. 'wirelock COMMAND --help' tells more.`,
  run: `usage: wirelock run (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME
                    [--ttl 10s] [--wait 30s] [--grace 5s] [--permits N | --shared | --exclusive]
                    -- CMD [ARGS…]

Runs CMD while holding the lock NAME, keeping the lock alive, and releases it when CMD exits.
CMD gets WIRELOCK_KEY and WIRELOCK_FENCE in its environment (pass the fence to what it writes).

  --ttl D      lease length (default 10s; etcd rounds up to whole seconds, min 2s)
  --wait D     how long to wait for the lock (default: forever); --wait 0 tries once
  --grace D    after a lost lock: time between SIGTERM and SIGKILL to CMD (default 5s)
  --permits N  take one of N permits of the semaphore NAME instead of the lock: up to N
               commands run at once (one --redis URL, or --etcd)
  --shared     hold the read side of the read-write lock NAME: any number of --shared
               runs at once, none beside an --exclusive one (one --redis URL, or --etcd)
  --exclusive  hold the write side of that read-write lock: alone, and before any --shared
               run that asks after it
  --prefix P   key prefix (default: 'wirelock:' for Redis; none for etcd, so that
               'wirelock run --etcd … --key NAME' and 'etcdctl lock NAME' exclude each other)
  --user U     user name (Redis ACL user / etcd user), if not in the URL
  --tls-ca F, --tls-cert F, --tls-key F   PEM files for TLS (rediss:// or https:// URLs)

Passwords come from the URL or from WIRELOCK_REDIS_PASSWORD / WIRELOCK_ETCD_PASSWORD; they are never printed.
Redis Cluster: --redis-cluster redis://seed1:7000,redis://seed2:7001 (any nodes of one cluster; the lock,
semaphore and read-write lock run on the master of the key's slot).
Redis Sentinel: --redis redis+sentinel://host1:26379,host2:26379/masterName (one URL); the sentinels'
own password from WIRELOCK_SENTINEL_PASSWORD.
Durations: 500ms, 10s, 2m, 1h (a bare number is seconds).

Exit status: CMD's own (128+N if a signal N ended it); 75 the lock is held elsewhere (--wait 0) or
the wait timed out; 76 the lock was lost while CMD ran (CMD was stopped); 69 the servers could
not be reached or refused the credentials; 2 bad usage.`,
  status: `usage: wirelock status (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME [--prefix P]
                       [--permits N | --rw] [--watch [--interval 1s]]

Shows who holds the lock NAME (token or lease), how long it has left, the last fence, and the
waiters in the order they will be served, with how long each has waited. Nothing is written.

--permits N reads NAME as the semaphore of N permits that 'wirelock run --permits N' takes;
--rw as the read-write lock that 'wirelock run --shared' and '--exclusive' take.
--watch keeps the view on screen, redrawn in place every --interval (default 1s) and at once when
the lock is released (Redis) or any of its keys changes (etcd), until Ctrl-C.`,
  trace: `usage: wirelock trace (--redis URL[,URL…] | --etcd URL[,URL…]) --key NAME [--prefix P] [--ttl D]

Acquires and releases NAME once and prints every command, reply, gRPC call and stream message on
the way, with timings: what a lock client puts on the wire. Secrets are redacted.`,
  elect: `usage: wirelock elect (--redis URL | --etcd URL[,URL…]) --name NAME --value V
                      [--ttl 10s] [--wait D] [--grace 5s] [--] [CMD [ARGS…]]
       wirelock elect (--redis URL | --etcd URL[,URL…]) --name NAME --observe

Campaigns to lead the election NAME with the value V (what observers see). Once leading, prints
  leading <key> fence <fence>
then runs CMD while leading, as 'wirelock run' runs one under a lock (stopped if the leadership is
lost), and resigns when CMD exits. Without CMD it leads until SIGINT, SIGTERM or SIGHUP, then resigns.
CMD gets WIRELOCK_ELECTION, WIRELOCK_LEADER_KEY and WIRELOCK_FENCE (the term) in its environment.

With --observe it prints the leader now, then each change, one line each, until SIGINT, SIGTERM or SIGHUP:
  leader <key> fence <fence> value <value>
  no leader
A value is printed as is when it is plain text: UTF-8 without control, format or separator characters,
no space at either end, not empty, not starting with " or hex:. Other text is printed as a JSON
string ("a\\nb"), and bytes that are not UTF-8 as hex:<the bytes in hex>.

  --ttl D      the leader's lease (default 10s; etcd rounds up to whole seconds, min 2s)
  --wait D     how long to wait to lead (default: forever); --wait 0 tries once
  --grace D    after a lost leadership: time between SIGTERM and SIGKILL to CMD (default 5s)
  --prefix P   key prefix (default: 'wirelock:' for Redis; none for etcd, so that
               'wirelock elect --etcd … --name NAME' and 'etcdctl elect NAME' are one election)
  --user U, --tls-ca F, --tls-cert F, --tls-key F   as for 'wirelock run'

One --redis URL only: an election is not built on Redlock.

Exit status: CMD's own (128+N if a signal N ended it); 0 without CMD, or with --observe, once a
signal ended it; 75 --wait ran out before leading; 76 the leadership was lost (CMD was stopped);
128+N a signal N ended the wait to lead; 69 the servers could not be reached; 2 bad usage.`,
};

/** '10s', '500ms', '2m', '1h', '0', or a bare number of seconds → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: "${text}" is not a duration (like 500ms, 10s, 2m)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
}

const VALUE_FLAGS = new Set(['--redis', '--redis-cluster', '--etcd', '--key', '--name', '--value', '--prefix', '--user', '--tls-ca', '--tls-cert', '--tls-key', '--ttl', '--wait', '--grace', '--interval', '--permits']);
/** Flags that take no value. */
const SWITCHES = new Set(['--observe', '--watch', '--shared', '--exclusive', '--rw']);
const CONNECTION_FLAGS = ['--redis', '--redis-cluster', '--etcd', '--prefix', '--user', '--tls-ca', '--tls-cert', '--tls-key'];

export interface ParseOptions {
  /** The first word that is not a flag starts the command, as after `--` (elect's `[--] [CMD…]`). */
  commandWithoutDashes?: boolean;
}

/**
 * Parses `argv` (after the subcommand). `allowed` lists the flags the subcommand takes. Switches
 * are in `switches`, value flags in `values`; `rest` is what follows `--`.
 */
export function parseFlags(
  command: string,
  argv: string[],
  allowed: string[],
  opts: ParseOptions = {},
): { values: Map<string, string>; switches: Set<string>; help: boolean; rest: string[] } {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  let help = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (opts.commandWithoutDashes && !arg.startsWith('-')) break;
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!allowed.includes(name) || !(VALUE_FLAGS.has(name) || SWITCHES.has(name))) throw new UsageError(`unknown option ${JSON.stringify(name)}`, command);
    if (SWITCHES.has(name)) {
      if (eq > 0) throw new UsageError(`${name} takes no value`, command);
      if (switches.has(name)) throw new UsageError(`${name} given twice`, command);
      switches.add(name);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`${name} needs a value`, command);
    if (values.has(name)) throw new UsageError(`${name} given twice`, command);
    values.set(name, value);
  }
  return { values, switches, help, rest: argv.slice(i) };
}

/** The backend and how to reach it: exactly one of --redis or --etcd, with at least one URL. */
export function connectionFlags(command: string, values: Map<string, string>, help: boolean): ConnectionFlags {
  const list = (v: string | undefined): string[] | undefined => v?.split(',').map((s) => s.trim()).filter(Boolean);
  // A Sentinel URL lists its sentinels with commas itself: it is one URL, and the only one.
  const redisUrls = (v: string | undefined): string[] | undefined => (v !== undefined && /^rediss?\+sentinel:/i.test(v.trim()) ? [v.trim()] : list(v));
  const flags: ConnectionFlags = {
    redis: redisUrls(values.get('--redis')),
    redisCluster: list(values.get('--redis-cluster')),
    etcd: list(values.get('--etcd')),
    prefix: values.get('--prefix'),
    user: values.get('--user'),
    tlsCa: values.get('--tls-ca'),
    tlsCert: values.get('--tls-cert'),
    tlsKey: values.get('--tls-key'),
    help,
  };
  if (help) return flags;
  if ([flags.redis, flags.redisCluster, flags.etcd].filter((f) => f !== undefined).length !== 1) {
    throw new UsageError('give exactly one of --redis, --redis-cluster or --etcd', command);
  }
  if ((flags.redis ?? flags.redisCluster ?? flags.etcd)!.length === 0) throw new UsageError('no URL given', command);
  return flags;
}

export function commonFlags(command: string, values: Map<string, string>, help: boolean): CommonFlags {
  const flags: CommonFlags = { ...connectionFlags(command, values, help), key: values.get('--key') ?? '' };
  if (!help && !flags.key) throw new UsageError('--key NAME is required', command);
  return flags;
}

/** --permits N: a whole number >= 1, with one --redis URL or with --etcd (Redlock has no semaphore). */
function permitsFlag(command: string, values: Map<string, string>): number | undefined {
  const text = values.get('--permits');
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 0x7fffffff) throw new UsageError(`--permits: "${text}" is not a whole number >= 1`, command);
  const redis = values.get('--redis');
  if (redis !== undefined && redis.includes(',')) throw new UsageError('--permits takes one --redis URL or --etcd: there is no semaphore over Redlock', command);
  return Number(text);
}

/** --shared / --exclusive: a side of the read-write lock NAME, with one --redis URL or with --etcd. */
function rwFlag(command: string, values: Map<string, string>, switches: Set<string>): 'read' | 'write' | undefined {
  const shared = switches.has('--shared');
  const exclusive = switches.has('--exclusive');
  if (!shared && !exclusive) return undefined;
  if (shared && exclusive) throw new UsageError('--shared and --exclusive are the two sides of one read-write lock: give one', command);
  if (values.has('--permits')) throw new UsageError(`--permits and --${shared ? 'shared' : 'exclusive'} are different primitives: give one`, command);
  if (values.get('--redis')?.includes(',')) throw new UsageError('--shared/--exclusive take one --redis URL or --etcd: there is no read-write lock over Redlock', command);
  return shared ? 'read' : 'write';
}

export function statusFlags(argv: string[]): StatusFlags {
  const { values, switches, help } = parseFlags('status', argv, [...CONNECTION_FLAGS, '--key', '--watch', '--interval', '--permits', '--rw']);
  const flags: StatusFlags = {
    ...commonFlags('status', values, help),
    permits: permitsFlag('status', values),
    rw: switches.has('--rw'),
    watch: switches.has('--watch'),
    intervalMs: parseDuration(values.get('--interval') ?? '1s', '--interval'),
  };
  if (help) return flags;
  if (values.has('--interval') && !flags.watch) throw new UsageError('--interval goes with --watch', 'status');
  if (flags.rw && flags.permits !== undefined) throw new UsageError('--rw and --permits are different primitives: give one', 'status');
  if (flags.rw && values.get('--redis')?.includes(',')) throw new UsageError('--rw takes one --redis URL or --etcd: there is no read-write lock over Redlock', 'status');
  if (!(flags.intervalMs >= 100)) throw new UsageError('--interval must be at least 100ms', 'status');
  return flags;
}

export function runFlags(argv: string[]): RunFlags {
  const { values, switches, help, rest } = parseFlags('run', argv, [...CONNECTION_FLAGS, '--key', '--ttl', '--wait', '--grace', '--permits', '--shared', '--exclusive']);
  const common = commonFlags('run', values, help);
  const flags: RunFlags = {
    ...common,
    permits: permitsFlag('run', values),
    rw: rwFlag('run', values, switches),
    ttlMs: parseDuration(values.get('--ttl') ?? '10s', '--ttl'),
    waitMs: values.has('--wait') ? parseDuration(values.get('--wait')!, '--wait') : Infinity,
    graceMs: parseDuration(values.get('--grace') ?? '5s', '--grace'),
    command: rest,
  };
  if (help) return flags;
  if (!(flags.ttlMs > 0)) throw new UsageError('--ttl must be more than 0', 'run');
  if (flags.command.length === 0) throw new UsageError('no command to run (put it after --)', 'run');
  return flags;
}

export function electFlags(argv: string[]): ElectFlags {
  const campaignFlags = ['--value', '--ttl', '--wait', '--grace'];
  const { values, switches, help, rest } = parseFlags('elect', argv, [...CONNECTION_FLAGS, '--name', ...campaignFlags, '--observe'], {
    commandWithoutDashes: true,
  });
  const flags: ElectFlags = {
    ...connectionFlags('elect', values, help),
    name: values.get('--name') ?? '',
    value: values.get('--value'),
    observe: switches.has('--observe'),
    ttlMs: parseDuration(values.get('--ttl') ?? '10s', '--ttl'),
    waitMs: values.has('--wait') ? parseDuration(values.get('--wait')!, '--wait') : Infinity,
    graceMs: parseDuration(values.get('--grace') ?? '5s', '--grace'),
    command: rest,
  };
  if (help) return flags;
  if (!flags.name) throw new UsageError('--name NAME is required', 'elect');
  if (flags.redis && flags.redis.length > 1) throw new UsageError('elect takes one --redis URL: an election is not built on Redlock', 'elect');
  if (flags.observe) {
    if (flags.command.length > 0) throw new UsageError('--observe runs no command: give either --observe or a command', 'elect');
    const misplaced = campaignFlags.find((f) => values.has(f));
    if (misplaced) throw new UsageError(`${misplaced} is for campaigning, not for --observe`, 'elect');
    return flags;
  }
  if (flags.value === undefined) throw new UsageError('--value V is required to campaign (what observers see), unless --observe', 'elect');
  if (!(flags.ttlMs > 0)) throw new UsageError('--ttl must be more than 0', 'elect');
  return flags;
}
