// The few members of redlock 4.x (an anchor in bench/ only) that the benchmarks call.
declare module 'redlock' {
  interface RedlockV4Lock {
    unlock(): Promise<void>;
  }
  class RedlockV4 {
    constructor(clients: unknown[], options?: { retryCount?: number; retryDelay?: number; retryJitter?: number; driftFactor?: number });
    lock(resource: string, ttl: number): Promise<RedlockV4Lock>;
  }
  export default RedlockV4;
}
