// EtcdRWLock against etcd's own: a Go program on contrib/recipes RWMutex (test/go/rwmutex) on the
// same name. Their keys share one layout (<name>/read/…, <name>/write/…), so each side's readers and
// writers exclude the other's, readers of both share, and one queue in create-revision order serves them
// all. The Go program is built from Debian's sources; a missing toolchain fails the suite in `before`.
import { expect } from 'chai';
import { EtcdClient, EtcdRWLock, type Lock } from '../src/index.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { eventually, queuedKeys, sleep } from './support/etcd.js';
import { buildGoProgram, startGoRWMutex, type GoRWMutex } from './support/go.js';

/** A Go hold as the program reports it: `rlocked|locked <key> <createRevision>`. */
interface GoHold {
  mode: 'rlocked' | 'locked';
  key: string;
  rev: bigint;
}

function parseHold(line: string): GoHold {
  const [mode, key, rev] = line.split(' ');
  return { mode: mode as GoHold['mode'], key: key!, rev: BigInt(rev!) };
}

describe('RW lock interop: EtcdRWLock with Go recipe.RWMutex', function () {
  this.timeout(40_000);
  let etcd: EtcdServer;
  let client: EtcdClient;
  const running: GoRWMutex[] = [];
  const rwlocks: EtcdRWLock[] = [];
  const clients: EtcdClient[] = [];
  let n = 0;
  /** A fresh key, and the name both sides use for it (wirelock's default prefix + key). */
  const fresh = (key: string): { key: string; name: string } => {
    const k = `${key}-${++n}`;
    return { key: k, name: `wirelock/${k}` };
  };
  const go = async (name: string): Promise<GoRWMutex> => {
    const g = await startGoRWMutex({ endpoints: etcd.endpoints, name });
    running.push(g);
    return g;
  };
  /** A wirelock RW lock on a client of its own, as another process would have. */
  const ours = async (): Promise<EtcdRWLock> => {
    const c = await EtcdClient.connect({ endpoints: etcd.endpoints });
    clients.push(c);
    const l = new EtcdRWLock(c);
    rwlocks.push(l);
    return l;
  };
  /** Sends rlock/lock and resolves with the hold once the program reports it. */
  const goLock = async (g: GoRWMutex, cmd: 'rlock' | 'lock'): Promise<GoHold> => {
    g.send(cmd);
    return parseHold(await g.next(/^(r?locked|error) /));
  };
  const goUnlock = async (g: GoRWMutex, cmd: 'runlock' | 'unlock'): Promise<void> => {
    g.send(cmd);
    expect(await g.next()).to.equal('ok');
  };
  const held = (g: GoRWMutex): boolean => g.lines().some((line) => /^r?locked /.test(line));
  const inLine = (name: string, count: number, what: string): Promise<void> =>
    eventually(async () => (await queuedKeys(client, name)).length === count, 3000, what);

  before(async function () {
    this.timeout(300_000); // a first build compiles grpc and clientv3 from Debian's sources
    [etcd] = await Promise.all([startEtcd(), buildGoProgram('rwmutex')]);
    client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  afterEach(async () => {
    await Promise.all(rwlocks.splice(0).map((l) => l.close()));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(running.splice(0).map((g) => g.stop()));
  });
  after(async () => {
    await client?.close();
    await etcd?.stop();
  });

  it('a Go writer holds off a wirelock reader and writer; they go after it, the writer after the reader', async () => {
    const { key, name } = fresh('go-writes');
    const g = await go(name);
    const gw = await goLock(g, 'lock');
    expect(gw.mode).to.equal('locked');
    expect(gw.key).to.match(new RegExp(`^${name}/write/\\d+$`));

    const [a, b] = [await ours(), await ours()];
    const got: string[] = [];
    const reading = a.read.acquire(key).then((l) => (got.push('read'), l));
    await inLine(name, 2, 'the wirelock reader in line');
    const writing = b.write.acquire(key).then((l) => (got.push('write'), l));
    await inLine(name, 3, 'the wirelock writer in line');
    expect(await a.read.tryAcquire(key), 'a wirelock reader beside the Go writer').to.equal(null);
    await sleep(300);
    expect(got).to.deep.equal([]);

    await goUnlock(g, 'unlock');
    const r = await reading;
    await sleep(300);
    expect(got, 'the writer waits for the reader').to.deep.equal(['read']);
    expect(r.fence > gw.rev).to.equal(true);
    await r.release();
    const w = await writing;
    expect(w.fence > r.fence).to.equal(true);
    await w.release();
  });

  it('a wirelock writer holds off a Go reader, which reads once wirelock releases', async () => {
    const { key, name } = fresh('wl-writes');
    const w = await (await ours()).write.acquire(key);
    expect(w.token).to.match(new RegExp(`^${name}/write/`));
    const g = await go(name);
    g.send('rlock');
    await inLine(name, 2, 'the Go reader in line');
    await sleep(300);
    expect(held(g), 'Go reads beside the wirelock writer').to.equal(false);
    await w.release();
    const gr = parseHold(await g.next(/^(rlocked|error) /));
    expect(gr.mode).to.equal('rlocked');
    expect(gr.key).to.match(new RegExp(`^${name}/read/\\d+$`));
    expect(gr.rev > w.fence).to.equal(true);
    await goUnlock(g, 'runlock');
  });

  it('Go and wirelock readers share, and a writer of either side waits for both', async () => {
    const { key, name } = fresh('share');
    const g = await go(name);
    const gr = await goLock(g, 'rlock');
    expect(gr.mode).to.equal('rlocked');
    const l = await ours();
    const r = await l.read.acquire(key, { waitTimeoutMs: 2000 });
    const g2 = await go(name);
    expect((await goLock(g2, 'rlock')).mode, 'a Go reader beside a wirelock reader').to.equal('rlocked');

    // A wirelock writer waits for the three readers; a Go writer behind it for all four.
    let w: Lock | undefined;
    const writing = (await ours()).write.acquire(key).then((x) => (w = x));
    await inLine(name, 4, 'the wirelock writer in line');
    const g3 = await go(name);
    g3.send('lock');
    await inLine(name, 5, 'the Go writer in line');
    await goUnlock(g, 'runlock');
    await r.release();
    await sleep(300);
    expect(w, 'the writer beside a Go reader').to.equal(undefined);
    await goUnlock(g2, 'runlock');
    await writing;
    await sleep(300);
    expect(held(g3), 'the Go writer beside the wirelock writer').to.equal(false);
    await w!.release();
    expect(parseHold(await g3.next(/^(locked|error) /)).mode).to.equal('locked');
    await goUnlock(g3, 'unlock');
  });

  it('a mixed queue is served in create-revision order: Go W1, wl R2, Go R3, wl W4, Go W5, wl R6', async () => {
    const { key, name } = fresh('mixed');
    const [g1, g3, g5] = [await go(name), await go(name), await go(name)];
    const [l2, l4, l6] = [await ours(), await ours(), await ours()];
    const got: string[] = [];
    const track = (who: string) => (l: Lock): Lock => (got.push(who), l);

    await goLock(g1, 'lock');
    const r2 = l2.read.acquire(key).then(track('R2'));
    await inLine(name, 2, 'R2 in line');
    g3.send('rlock');
    await inLine(name, 3, 'R3 in line');
    const w4 = l4.write.acquire(key).then(track('W4'));
    await inLine(name, 4, 'W4 in line');
    g5.send('lock');
    await inLine(name, 5, 'W5 in line');
    const r6 = l6.read.acquire(key).then(track('R6'));
    await inLine(name, 6, 'R6 in line');
    const order = await queuedKeys(client, name);
    expect(order.map((k) => k.slice(name.length + 1).split('/')[0])).to.deep.equal(['write', 'read', 'read', 'write', 'write', 'read']);

    // W1 goes: both readers behind it read together, nobody else.
    await goUnlock(g1, 'unlock');
    const [reader2, reader3] = await Promise.all([r2, g3.next(/^(rlocked|error) /).then(parseHold)]);
    expect(reader3.mode).to.equal('rlocked');
    await sleep(300);
    expect(got).to.deep.equal(['R2']);
    expect(held(g5)).to.equal(false);

    // W4 waits for both readers, Go's and ours.
    await reader2.release();
    await sleep(300);
    expect(got).to.deep.equal(['R2']);
    await goUnlock(g3, 'runlock');
    const writer4 = await w4;
    await sleep(300);
    expect(held(g5), 'the Go writer beside W4').to.equal(false);
    expect(got).to.deep.equal(['R2', 'W4']);

    // W4 goes: the Go writer; then R6.
    await writer4.release();
    const writer5 = parseHold(await g5.next(/^(locked|error) /));
    expect(writer5.mode).to.equal('locked');
    expect(writer5.rev > writer4.fence).to.equal(true);
    await sleep(300);
    expect(got).to.deep.equal(['R2', 'W4']);
    await goUnlock(g5, 'unlock');
    const reader6 = await r6;
    expect(got).to.deep.equal(['R2', 'W4', 'R6']);
    expect(reader6.fence > writer5.rev).to.equal(true);
    await reader6.release();
  });
});
