// The queue between an election's events and observe()'s consumer (pure: no server).
import { expect } from 'chai';
import { LeaderFeed, sameLeader, type Leader } from '../src/locks/election.js';

const leader = (fence: bigint, value: string, key = 'k'): Leader => ({ name: 'n', key, fence, value: Buffer.from(value) });
const take = async (feed: LeaderFeed, n: number): Promise<string[]> => {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await feed.next();
    out.push(r.done ? 'done' : r.value ? `${r.value.fence}:${r.value.value.toString()}` : 'none');
  }
  return out;
};

describe('LeaderFeed (observe()\'s queue)', () => {
  it('coalesces values of one term that the consumer has not read, and keeps every change of leader', async () => {
    const feed = new LeaderFeed(() => {});
    feed.push(null);
    feed.push(leader(1n, 'a'));
    feed.push(leader(1n, 'a2'));
    feed.push(leader(1n, 'a3'));
    feed.push(null);
    feed.push(leader(2n, 'b'));
    feed.push(leader(3n, 'c'));
    feed.push(leader(3n, 'c')); // the same state again: not news
    expect(await take(feed, 5)).to.deep.equal(['none', '1:a3', 'none', '2:b', '3:c']);
  });

  it('hands a pushed state straight to a waiting next(), and never repeats the last state', async () => {
    const feed = new LeaderFeed(() => {});
    const pending = feed.next();
    feed.push(leader(5n, 'x'));
    expect(((await pending).value as Leader).fence).to.equal(5n);
    feed.push(leader(5n, 'x'));
    feed.push(leader(6n, 'y'));
    expect(await take(feed, 1)).to.deep.equal(['6:y']);
  });

  it('ends: what is queued first, then the error once, then done; onStop runs once', async () => {
    let stops = 0;
    const feed = new LeaderFeed(() => stops++);
    feed.push(leader(1n, 'a'));
    feed.end(new Error('boom'));
    feed.end(new Error('again'));
    expect(await take(feed, 1)).to.deep.equal(['1:a']);
    const err = await feed.next().then(() => undefined, (e: Error) => e);
    expect(err?.message).to.equal('boom');
    expect(await take(feed, 1)).to.deep.equal(['done']);
    expect(stops).to.equal(1);
  });

  it('rejects a pending next() with the error it ends with, and is done afterwards; return() ends it too', async () => {
    const feed = new LeaderFeed(() => {});
    const pending = feed.next();
    feed.end(new Error('aborted'));
    expect(await pending.then(() => 'resolved', (e: Error) => e.message)).to.equal('aborted');
    expect((await feed.next()).done).to.equal(true);
    let stopped = false;
    const other = new LeaderFeed(() => (stopped = true));
    other.push(leader(1n, 'a'));
    expect((await other.return()).done).to.equal(true);
    expect(stopped).to.equal(true);
    expect((await other.next()).done).to.equal(true);
  });

  it('refuses a second next() while one is pending', async () => {
    const feed = new LeaderFeed(() => {});
    void feed.next();
    expect(await feed.next().then(() => 'ok', (e: Error) => e.message)).to.match(/before the previous one settled/);
    feed.end();
  });

  it('sameLeader compares term, key and value', () => {
    expect(sameLeader(null, null)).to.equal(true);
    expect(sameLeader(leader(1n, 'a'), null)).to.equal(false);
    expect(sameLeader(leader(1n, 'a'), leader(1n, 'a'))).to.equal(true);
    expect(sameLeader(leader(1n, 'a'), leader(1n, 'b'))).to.equal(false);
    expect(sameLeader(leader(1n, 'a'), leader(2n, 'a'))).to.equal(false);
    expect(sameLeader(leader(1n, 'a', 'x'), leader(1n, 'a', 'y'))).to.equal(false);
  });
});
