/**
 * One process of the demo's election scene (forked by scripts/demo-election.ts): a service, or the
 * observer. Run as `demo-election-worker.ts <name> service|observer`.
 *
 * Both connect to the backend they are told and observe the election, reporting every leader they
 * see. A service also campaigns, with its name as the value; while it leads, it does its leader work:
 * every `beatMs` a heartbeat with its term, which the parent writes to a fenced store, as a leader
 * would pass its term with every write. Each heartbeat carries the leadership's validUntil, and the
 * parent SIGKILLs a leader in the tick one arrives, so it knows the dead leader's last guarantee: no
 * one else may lead before it. Stamps are process.hrtime.bigint(), as in demo-worker.ts.
 */
import { EtcdClient, EtcdElection, LockLostError, RedisClient, RedisElection, type Election, type Leadership } from '../src/index.js';
import type { ElectionConfig, FromElector, ToElector } from './demo-protocol.js';
import { answerMetricsOverIpc } from './demo-metrics.js';

answerMetricsOverIpc(); // only when the demo runs with --metrics

const name = process.argv[2] ?? 'service';
const role = process.argv[3] === 'observer' ? 'observer' : 'service';

const send = (msg: FromElector): void => void process.send!(msg);
const hr = (): bigint => process.hrtime.bigint();
/** A performance.now() deadline on the hrtime clock (both monotonic, with different origins). */
const onHrClock = (t: number): string => String(hr() + BigInt(Math.round((t - performance.now()) * 1e6)));

interface Scene {
  config: ElectionConfig;
  election: Election;
  close(): Promise<void>;
  /** Aborted by 'stop': ends the observation and a pending campaign. */
  stop: AbortController;
  leadership?: Leadership;
  watching?: Promise<void>;
}

async function connect(config: ElectionConfig): Promise<Scene> {
  const stop = new AbortController();
  if (config.backend === 'etcd') {
    // As the lock workers: a call lost with a dying etcd member is given up on after 1 s, not 5.
    const client = await EtcdClient.connect({ endpoints: config.urls, callTimeoutMs: 1000 });
    const election = new EtcdElection(client, config.name, { ttlMs: config.ttlMs });
    return { config, election, stop, close: async () => (await election.close(), await client.close()) };
  }
  const u = new URL(config.urls[0]!);
  const client = await RedisClient.connect({ host: u.hostname, port: Number(u.port), reconnect: () => 50 });
  const election = new RedisElection(client, config.name, { ttlMs: config.ttlMs });
  return { config, election, stop, close: async () => (await election.close(), await client.close()) };
}

/** Reports every leader seen; resolves `first` with the first observation (the state at the start). */
async function watch(scene: Scene, first: () => void): Promise<void> {
  try {
    for await (const leader of scene.election.observe({ signal: scene.stop.signal })) {
      send({ type: 'observed', at: String(hr()), seen: leader && { fence: String(leader.fence), value: leader.value.toString() } });
      first();
    }
  } catch (err) {
    if (!scene.stop.signal.aborted) send({ type: 'error', message: `observe: ${describe(err)}` });
  }
}

async function campaign(scene: Scene): Promise<void> {
  send({ type: 'campaigning', at: String(hr()) });
  let leadership: Leadership;
  try {
    leadership = await scene.election.campaign(name, { signal: scene.stop.signal });
  } catch (err) {
    if (!scene.stop.signal.aborted) send({ type: 'error', message: `campaign: ${describe(err)}` });
    return;
  }
  scene.leadership = leadership;
  const fence = String(leadership.fence);
  send({ type: 'leading', fence, at: String(hr()), validUntil: onHrClock(leadership.validUntil) });
  // The leader work. A careful leader looks at its signal before each write; the store's fence
  // check is what protects the writes of a leader that is paused past its lease (docs/election.md).
  const beat = setInterval(() => {
    if (!leadership.signal.aborted) send({ type: 'beat', fence, at: String(hr()), validUntil: onHrClock(leadership.validUntil) });
  }, scene.config.beatMs);
  leadership.signal.addEventListener(
    'abort',
    () => {
      clearInterval(beat);
      const reason: unknown = leadership.signal.reason;
      if (reason instanceof LockLostError) send({ type: 'lost', fence, at: String(hr()), reason: reason.reason });
    },
    { once: true },
  );
}

/** Ends the observation and a pending campaign; a leader resigns. */
async function stop(scene: Scene): Promise<void> {
  scene.stop.abort(new Error('stopped'));
  const leadership = scene.leadership;
  if (leadership && !leadership.signal.aborted) {
    const at = String(hr());
    await leadership.resign();
    send({ type: 'resigned', fence: String(leadership.fence), at });
  }
  await scene.watching;
  // close() waits for the given-up campaign to withdraw (its etcd key to be gone), so the last
  // leader's resignation, which comes after our 'stopped', hands over to nobody.
  await scene.close();
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

let scene: Scene | undefined;

const fail = (what: string) => (err: unknown): never => {
  process.stderr.write(`${name}: ${what}: ${describe(err)}\n`);
  process.exit(1);
};

process.on('message', (msg: ToElector) => {
  switch (msg.type) {
    case 'start':
      connect(msg.config).then((s) => {
        scene = s;
        let ready = false;
        s.watching = watch(s, () => {
          if (ready) return;
          ready = true;
          send({ type: 'ready' });
        });
      }, fail('cannot connect'));
      break;
    case 'campaign':
      if (role === 'service' && scene) void campaign(scene);
      break;
    case 'stop': {
      const s = scene;
      scene = undefined;
      if (s) stop(s).then(() => send({ type: 'stopped' }), fail('stop failed'));
      else send({ type: 'stopped' });
      break;
    }
    case 'exit':
      process.disconnect();
      break;
  }
});
