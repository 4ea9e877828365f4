/**
 * The subscriber connection across losses, against a real redis-server. The client talks to it through
 * a FaultProxy, so the test decides how long the connection stays down (refuse) or how long the
 * server's answers take (delay); the admin connection goes straight to the server.
 *
 * The question each test asks the server is PUBSUB NUMSUB: a subscription that nobody listens to any
 * more costs the server a channel entry and every PUBLISH on it a write, for the life of the client.
 */
import { expect } from 'chai';
import { RedisClient } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { FaultProxy } from './support/proxy.js';
import { rejection, waitFor } from './support/wait.js';

describe('RedisClient pub/sub across a lost subscriber connection', () => {
  let server: RedisServer;
  let admin: RedisClient;
  let proxy: FaultProxy;
  let client: RedisClient;
  /** What the `alive` listener got: it stays subscribed in every test and sees each reconnect as null. */
  let alive: unknown[];
  let offAlive: () => void;

  const numsub = async (channel: string): Promise<number> =>
    ((await admin.send(['PUBSUB', 'NUMSUB', channel])) as [string, number])[1];

  /**
   * Waits for the subscriber connection to be back (the `alive` listener's null), then confirms one
   * more subscription on it: the server has then processed everything the client wrote before it.
   */
  async function settled(): Promise<void> {
    await waitFor(() => alive.includes(null), 5000, 'the reconnect (a null wake-up)');
    const off = await client.subscribe('marker', () => {});
    off();
  }

  before(async () => {
    server = await startRedis();
    admin = await RedisClient.connect(server.url);
  });
  beforeEach(async () => {
    proxy = await FaultProxy.start({ port: server.port });
    // A fast, steady reconnect: the test, not the backoff, decides when the connection is back.
    client = await RedisClient.connect({ port: proxy.port, commandTimeoutMs: 3000, connectTimeoutMs: 1000, reconnect: () => 20 });
    alive = [];
    offAlive = await client.subscribe('alive', (m) => alive.push(m));
  });
  afterEach(async () => {
    offAlive();
    await client.close();
    await proxy.stop();
  });
  after(async () => {
    await admin?.close();
    await server?.stop();
  });

  it('a subscribe aborted while the connection is down is not sent when it comes back', async () => {
    proxy.refuse().reset(); // the connection drops and cannot come back until pass()
    await waitFor(async () => (await numsub('alive')) === 0, 2000, 'the server to drop the subscriber');
    const ac = new AbortController();
    const subscribing = client.subscribe('orphan', () => {}, ac.signal);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error('gave up'));
    expect((await rejection(subscribing)).message).to.equal('gave up');

    proxy.pass();
    await settled();
    expect(await numsub('orphan')).to.equal(0);
    // The live listener was subscribed again and still gets messages.
    expect(await numsub('alive')).to.equal(1);
    expect(await admin.send(['PUBLISH', 'alive', 'hi'])).to.equal(1);
    await waitFor(() => alive.includes('hi'), 2000, 'delivery after the reconnect');
  });

  it('two subscribers of one channel abort while the connection is down: nothing is left subscribed', async () => {
    proxy.refuse().reset();
    await waitFor(async () => (await numsub('alive')) === 0, 2000, 'the server to drop the subscriber');
    const [a, b] = [new AbortController(), new AbortController()];
    const subs = [client.subscribe('shared', () => {}, a.signal), client.subscribe('shared', () => {}, b.signal)];
    await new Promise((r) => setTimeout(r, 50));
    a.abort(new Error('a'));
    b.abort(new Error('b'));
    expect((await Promise.all(subs.map((s) => rejection(s)))).map((e) => e.message)).to.deep.equal(['a', 'b']);

    proxy.pass();
    await settled();
    expect(await numsub('shared')).to.equal(0);
  });

  it('one of two subscribers aborts while the connection is down: the other is subscribed when it comes back', async () => {
    proxy.refuse().reset();
    await waitFor(async () => (await numsub('alive')) === 0, 2000, 'the server to drop the subscriber');
    const ac = new AbortController();
    const got: unknown[] = [];
    const quitter = client.subscribe('half', () => {}, ac.signal);
    const stayer = client.subscribe('half', (m) => got.push(m));
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error('quit'));
    await rejection(quitter);

    proxy.pass();
    const off = await stayer;
    expect(await numsub('half')).to.equal(1);
    await admin.send(['PUBLISH', 'half', 'kept']);
    await waitFor(() => got.includes('kept'), 2000, 'delivery to the remaining subscriber');
    off();
    await waitFor(async () => (await numsub('half')) === 0, 2000, 'the UNSUBSCRIBE');
  });

  it('the last listener leaves while the connection is down: the channel is not subscribed again', async () => {
    const off = await client.subscribe('left', () => {});
    expect(await numsub('left')).to.equal(1);
    proxy.refuse().reset();
    await waitFor(async () => (await numsub('left')) === 0, 2000, 'the server to drop the subscriber');
    off();
    proxy.pass();
    await settled();
    expect(await numsub('left')).to.equal(0);
    expect(await numsub('alive')).to.equal(1);
  });

  it('the last listener leaves while the reconnect is subscribing again: the channel is unsubscribed', async () => {
    const got: unknown[] = [];
    const off = await client.subscribe('leaving', (m) => got.push(m));
    // The server's answers take 600 ms to reach the client: the reconnect's re-SUBSCRIBE reaches the
    // server at once, but the client is still waiting for its confirmation when the listener leaves.
    proxy.delay({ up: 0, down: 600 });
    await admin.send(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    expect(await numsub('leaving')).to.equal(0);
    await waitFor(async () => (await numsub('leaving')) === 1, 5000, 'the re-SUBSCRIBE on the new connection');
    expect(alive).to.not.include(null); // not confirmed yet: the reconnect is still in its handshake
    off();
    proxy.delay(0);
    await settled();
    expect(got).to.deep.equal([]); // it had left before the wake-up
    expect(await numsub('leaving')).to.equal(0);
    expect(await numsub('alive')).to.equal(1);
  });
});
