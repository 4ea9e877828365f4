// The Go reference candidate (test/go/election: etcd's own concurrency.Election) checked on its own,
// against a real etcd and etcdctl, before interop tests trust it as the other side.
import { expect } from 'chai';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { etcdctl, etcdctlElect, eventually, type EtcdctlElect } from './support/etcd.js';
import { buildGoProgram, startGoElection, type GoElection } from './support/go.js';

describe('Go concurrency.Election (test/go/election)', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  const running: Array<GoElection | EtcdctlElect> = [];
  let n = 0;
  const fresh = (name: string): string => `${name}-${++n}`;
  const candidate = async (name: string): Promise<GoElection> => {
    const c = await startGoElection({ endpoints: etcd.endpoints, name });
    running.push(c);
    return c;
  };
  const elect = (name: string, opts: { proposal?: string } = {}): EtcdctlElect => {
    const e = etcdctlElect(etcd.endpoints, name, opts);
    running.push(e);
    return e;
  };
  /** The keys under `name/`, oldest first: the leader, then the queue. */
  const keysUnder = async (name: string): Promise<string[]> =>
    (await etcdctl(etcd.endpoints, ['get', '--prefix', '--keys-only', '--sort-by', 'CREATE', `${name}/`])).split('\n').filter(Boolean);
  /** A won campaign's reply, `leader <key> <createRevision>`. */
  const won = (line: string): { key: string; rev: number } => {
    const [verb, key, rev] = line.split(' ');
    expect(verb, line).to.equal('leader');
    expect(rev, line).to.match(/^\d+$/);
    return { key: key!, rev: Number(rev) };
  };

  before(async function () {
    this.timeout(300_000); // a first build on a machine compiles grpc and clientv3
    [etcd] = await Promise.all([startEtcd(), buildGoProgram('election')]);
  });
  after(async () => {
    await Promise.all(running.map((r) => r.stop()));
    await etcd?.stop();
  });

  it('elects the first candidate, queues the second (which observes the proclaim), and hands over on resign', async () => {
    const name = fresh('handover');
    const [a, b] = await Promise.all([candidate(name), candidate(name)]);
    a.send('campaign a1');
    const first = won(await a.next(/^leader /));
    expect(first.key).to.equal(`${name}/${a.lease}`);

    b.send('campaign b1');
    b.send('observe');
    expect(await b.next(/^ok$/)).to.equal('ok');
    expect(await b.next(/^observed /)).to.equal(`observed ${first.key} a1`);
    a.send('proclaim a2');
    expect(await a.next()).to.equal('ok');
    expect(await b.next(/^observed /)).to.equal(`observed ${first.key} a2`);
    b.send('leader');
    expect(await b.next(/^leader /)).to.equal(`leader ${first.key} a2`);
    expect(await keysUnder(name)).to.deep.equal([first.key, `${name}/${b.lease}`]);

    a.send('resign');
    expect(await a.next()).to.equal('ok');
    const second = won(await b.next(/^leader /));
    expect(second.key).to.equal(`${name}/${b.lease}`);
    expect(second.rev).to.be.greaterThan(first.rev);
    expect(await b.next(/^observed /)).to.equal(`observed ${second.key} b1`);
    a.send('leader');
    expect(await a.next()).to.equal(`leader ${second.key} b1`);
  });

  it('withdraws a pending campaign on cancel, and revokes the lease on close', async () => {
    const name = fresh('cancel');
    const [a, b] = await Promise.all([candidate(name), candidate(name)]);
    a.send('campaign a');
    const { key } = won(await a.next(/^leader /));
    b.send('campaign b');
    await eventually(async () => (await keysUnder(name)).length === 2, 5000, "b's key in the queue");

    b.send('cancel');
    expect(await b.next()).to.equal('ok');
    expect(await b.next()).to.equal('error context canceled');
    expect(await keysUnder(name)).to.deep.equal([key]);

    const timeToLive = (): Promise<string> => etcdctl(etcd.endpoints, ['lease', 'timetolive', a.lease]);
    expect(await timeToLive()).to.include('granted with TTL(5s)');
    a.send('close');
    expect(await a.next()).to.equal('closed');
    expect(await timeToLive()).to.include('already expired');
    expect(await keysUnder(name)).to.deep.equal([]);
  });

  it('is seen by `etcdctl elect -l` as leader, with each value it proclaims', async () => {
    const name = fresh('observed');
    const go = await candidate(name);
    go.send('campaign go1');
    const { key } = won(await go.next(/^leader /));
    const observer = elect(name);
    await eventually(() => observer.leaders().length === 1, 5000, 'etcdctl to print the leader');
    go.send('proclaim go2');
    expect(await go.next()).to.equal('ok');
    await eventually(() => observer.leaders().length === 2, 5000, 'etcdctl to print the new value');
    expect(observer.leaders()).to.deep.equal([{ key, value: 'go1' }, { key, value: 'go2' }]);
  });

  it('observes an `etcdctl elect` leader and waits behind it until it resigns', async () => {
    const name = fresh('behind-etcdctl');
    const ctl = elect(name, { proposal: 'ctl1' });
    await eventually(() => ctl.leaders().length === 1, 5000, 'etcdctl to lead');
    const ctlKey = ctl.leaders()[0]!.key;

    const go = await candidate(name);
    go.send('observe');
    expect(await go.next(/^ok$/)).to.equal('ok');
    expect(await go.next(/^observed /)).to.equal(`observed ${ctlKey} ctl1`);
    go.send('campaign go1');
    go.send('leader');
    expect(await go.next(/^leader /)).to.equal(`leader ${ctlKey} ctl1`);

    await ctl.stop(); // SIGINT: etcdctl resigns
    expect(await ctl.exited).to.equal(0);
    const { key } = won(await go.next(/^leader /));
    expect(key).to.equal(`${name}/${go.lease}`);
    expect(await go.next(/^observed /)).to.equal(`observed ${key} go1`);
  });
});
