/**
 * A child process that takes one permit and keeps it until it is killed: the crashed holder of the
 * semaphore tests. argv: redis URL, key, limit, ttl ms. It prints `held <fence> <token>` once it holds,
 * and never extends (autoExtend false), so its permit ends when its TTL does, by the server's clock.
 * Run it under `faketime` to give it a wrong wall clock. It also ends when its stdin closes, so a
 * parent that dies (or kills only the `faketime` wrapper) leaves no holder behind.
 */
import { RedisClient, RedisSemaphore } from '../../src/index.js';

const [url, key, limit, ttl] = process.argv.slice(2);
const client = await RedisClient.connect(url!);
const semaphore = new RedisSemaphore(client, { limit: Number(limit) });
const permit = await semaphore.acquire(key!, { ttlMs: Number(ttl), autoExtend: false });
process.stdout.write(`held ${permit.fence} ${permit.token} ${Date.now()}\n`);
// Hold on until killed, or until the parent goes: the open stdin keeps the process alive.
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
