// EtcdElection against etcd's own: a Go program on concurrency.Election (test/go/election) and
// `etcdctl elect`. They must elect one leader among them, queue behind each other in creation order,
// and each side must observe the other's proclamations.
import { expect } from 'chai';
import { EtcdClient, EtcdElection, type Leader, type Leadership } from '../src/index.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { etcdctlElect, eventually, queuedKeys, sleep, type EtcdctlElect } from './support/etcd.js';
import { buildGoProgram, startGoElection, type GoElection } from './support/go.js';

describe('election interop: EtcdElection with Go concurrency.Election and etcdctl elect', function () {
  this.timeout(40_000);
  let etcd: EtcdServer;
  let client: EtcdClient;
  const running: Array<GoElection | EtcdctlElect> = [];
  const elections: EtcdElection[] = [];
  let n = 0;
  const fresh = (name: string): string => `interop/${name}-${++n}`;
  const go = async (name: string): Promise<GoElection> => {
    const c = await startGoElection({ endpoints: etcd.endpoints, name });
    running.push(c);
    return c;
  };
  const ctl = (name: string, proposal?: string): EtcdctlElect => {
    const e = etcdctlElect(etcd.endpoints, name, proposal === undefined ? {} : { proposal });
    running.push(e);
    return e;
  };
  const ours = (name: string): EtcdElection => {
    const e = new EtcdElection(client, name, { ttlMs: 5000 });
    elections.push(e);
    return e;
  };
  /** Everything a wirelock observer has seen, as "key=value" (or "none"). */
  const observe = (e: EtcdElection): string[] => {
    const seen: string[] = [];
    void (async () => {
      for await (const l of e.observe()) seen.push(l ? `${l.key}=${l.value.toString()}` : 'none');
    })().catch(() => {});
    return seen;
  };

  before(async function () {
    this.timeout(300_000); // a first build compiles grpc and clientv3 from Debian's sources
    [etcd] = await Promise.all([startEtcd(), buildGoProgram('election')]);
    client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  after(async () => {
    await Promise.all(elections.map((e) => e.close()));
    await Promise.all(running.map((r) => r.stop()));
    await client?.close();
    await etcd?.stop();
  });

  it('a Go leader holds off a wirelock candidate; each observes the other; Go resigns and wirelock leads', async () => {
    const name = fresh('go-first');
    const g = await go(name);
    g.send('campaign go-1');
    const goKey = (await g.next(/^leader /)).split(' ')[1]!;
    expect(goKey).to.equal(`${name}/${g.lease}`);

    const e = ours(name);
    const seen = observe(e);
    await eventually(() => seen.includes(`${goKey}=go-1`), 3000, 'wirelock observes the Go leader');
    expect((await e.leader())?.key).to.equal(goKey);
    let led: Leadership | undefined;
    const campaign = e.campaign('wl-1').then((l) => (led = l));
    await sleep(300);
    expect(led, 'wirelock leads beside a Go leader').to.equal(undefined);

    g.send('proclaim go-2');
    expect(await g.next()).to.equal('ok');
    await eventually(() => seen.includes(`${goKey}=go-2`), 3000, "wirelock observes Go's proclaim");

    g.send('observe');
    await g.next(/^ok$/);
    g.send('resign');
    await g.next(/^ok$/);
    const l = await campaign;
    expect(l.key).to.match(new RegExp(`^${name}/[0-9a-f]+$`));
    await g.next((line) => line === `observed ${l.key} wl-1`);
    await l.proclaim('wl-2');
    await g.next((line) => line === `observed ${l.key} wl-2`);
    await l.resign();
  });

  it('a wirelock leader holds off a Go candidate, which leads once wirelock resigns; fences follow create revisions', async () => {
    const name = fresh('wl-first');
    const e = ours(name);
    const l = await e.campaign('wl');
    const g = await go(name);
    g.send('campaign go');
    await eventually(async () => (await queuedKeys(client, name)).length === 2, 3000, 'the Go candidate queues');
    await sleep(300);
    expect(g.lines().some((line) => line.startsWith('leader ')), 'Go leads beside wirelock').to.equal(false);
    await l.resign();
    const [, key, rev] = (await g.next(/^leader /)).split(' ');
    expect(key).to.equal(`${name}/${g.lease}`);
    expect(BigInt(rev!) > l.fence, 'the next term is higher').to.equal(true);
    const leader = (await e.leader()) as Leader;
    expect(leader.key).to.equal(key);
    expect(leader.fence).to.equal(BigInt(rev!));
    expect(leader.value.toString()).to.equal('go');
    g.send('resign');
    await g.next(/^ok$/);
  });

  it('`etcdctl elect` and wirelock: one leader among them, observed by `etcdctl elect -l` and by wirelock', async () => {
    const name = fresh('etcdctl');
    const e = ours(name);
    const watcher = ctl(name); // etcdctl elect -l
    const seen = observe(ours(name));
    const l = await e.campaign('wl-a');
    await eventually(() => watcher.leaders().some((x) => x.key === l.key && x.value === 'wl-a'), 5000, 'etcdctl observes wirelock');
    const cand = ctl(name, 'ctl-b');
    await eventually(async () => (await queuedKeys(client, name)).length === 2, 5000, 'etcdctl queues');
    await sleep(300);
    expect(cand.leaders(), 'etcdctl leads beside wirelock').to.deep.equal([]);
    await l.proclaim('wl-a2');
    await eventually(() => watcher.leaders().some((x) => x.value === 'wl-a2'), 5000, "etcdctl observes wirelock's proclaim");
    await l.resign();
    await eventually(() => cand.leaders().length === 1, 5000, 'etcdctl leads after wirelock resigns');
    const ctlKey = cand.leaders()[0]!.key;
    await eventually(() => seen.includes(`${ctlKey}=ctl-b`), 5000, 'wirelock observes the etcdctl leader');
    await eventually(() => watcher.leaders().some((x) => x.key === ctlKey), 5000, 'etcdctl -l sees the handover');
    // wirelock campaigns behind etcdctl and leads when etcdctl stops (its lease is revoked on exit).
    let led = false;
    const again = e.campaign('wl-c').then((x) => ((led = true), x));
    await sleep(300);
    expect(led).to.equal(false);
    await cand.stop();
    const l2 = await again;
    await eventually(() => seen.at(-1) === `${l2.key}=wl-c`, 5000, 'wirelock observes itself again');
    const order = seen.filter((s) => s !== 'none').map((s) => s.slice(s.indexOf('=') + 1));
    expect(order).to.deep.equal(['wl-a', 'wl-a2', 'ctl-b', 'wl-c']);
    await l2.resign();
  });

  it('two Go and two wirelock candidates, queued alternately, lead one at a time in creation order', async () => {
    const name = fresh('mixed');
    const g1 = await go(name);
    const g2 = await go(name);
    const [w1, w2] = [ours(name), ours(name)];
    const seen = observe(ours(name));
    const leads: Record<string, Leadership> = {};
    g1.send('campaign g1');
    await g1.next(/^leader /);
    const p1 = w1.campaign('w1').then((l) => (leads.w1 = l));
    await eventually(async () => (await queuedKeys(client, name)).length === 2, 3000, 'w1 queued');
    g2.send('campaign g2');
    await eventually(async () => (await queuedKeys(client, name)).length === 3, 3000, 'g2 queued');
    const p2 = w2.campaign('w2').then((l) => (leads.w2 = l));
    await eventually(async () => (await queuedKeys(client, name)).length === 4, 3000, 'w2 queued');

    g1.send('resign');
    await g1.next(/^ok$/);
    await p1;
    expect(leads.w2, 'w2 jumped the queue').to.equal(undefined);
    expect(g2.lines().some((line) => line.startsWith('leader '))).to.equal(false);
    await leads.w1!.resign();
    await g2.next(/^leader /);
    await sleep(200);
    expect(leads.w2).to.equal(undefined);
    g2.send('resign');
    await g2.next(/^ok$/);
    await p2;
    await leads.w2!.resign();
    await eventually(() => seen.at(-1) === 'none', 3000, 'no leader at the end');
    expect(seen.filter((s) => s !== 'none').map((s) => s.slice(s.indexOf('=') + 1))).to.deep.equal(['g1', 'w1', 'g2', 'w2']);
  });
});
