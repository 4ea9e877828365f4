import { expect } from 'chai';
import { RedisClient, RedisLocker } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';

describe('smoke', () => {
  let server: RedisServer;
  before(async () => { server = await startRedis(); });
  after(async () => { await server?.stop(); });
  it('acquires and releases', async () => {
    const client = await RedisClient.connect(server.url);
    expect(await client.send(['PING'])).to.equal('PONG');
    const locker = new RedisLocker(client);
    const lock = await locker.acquire('a', { ttlMs: 1000 });
    expect(lock.fence).to.equal(1n);
    const other = await locker.tryAcquire('a');
    expect(other).to.equal(null);
    const t = performance.now();
    const waiting = locker.acquire('a');
    setTimeout(() => void lock.release(), 50);
    const l2 = await waiting;
    console.log('handoff after', performance.now() - t);
    expect(l2.fence).to.equal(2n);
    await l2.release();
    await locker.close();
    await client.close();
  });
});
