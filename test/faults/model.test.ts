/**
 * The fault suite's checker, on hand-made histories: replayMutex must accept a correct history and
 * name what breaks a wrong one (otherwise every scenario that "passes" it would prove nothing).
 */
import { expect } from 'chai';
import { replayMutex, type MutexEvent } from '../../src/testing/history.js';

const enter = (worker: string, at: number, fence: number): MutexEvent => ({ kind: 'enter', worker, at: BigInt(at), fence: BigInt(fence) });
const end = (kind: 'exit' | 'lost' | 'crash', worker: string, at: number): MutexEvent => ({ kind, worker, at: BigInt(at) });

describe('faults (fast): the mutex model replay', () => {
  it('accepts handoffs, a loss followed by the exit of the same section, a crash, and events out of order', () => {
    const r = replayMutex([
      end('exit', 'b', 40), enter('b', 30, 2), // given out of order: sorted by time
      enter('a', 10, 1), end('lost', 'a', 20), end('exit', 'a', 25),
      enter('c', 50, 3), end('crash', 'c', 60),
      enter('a', 60, 4), end('exit', 'a', 70), // a handoff within one nanosecond is not an overlap
    ]);
    expect(r.violations).to.deep.equal([]);
    expect(r.holds).to.equal(4);
    expect(r.maxFence).to.equal(4n);
  });

  it('names an overlap, a fence that does not increase, a double entry and an exit without an entry', () => {
    const r = replayMutex([
      enter('a', 10, 5), enter('b', 15, 6), end('exit', 'a', 20), end('exit', 'b', 30), // overlap
      enter('c', 40, 6), end('exit', 'c', 50), // fence not above 6
      enter('d', 60, 7), enter('d', 65, 8), end('exit', 'd', 70), // entered twice
      end('exit', 'e', 80), // never entered
    ]);
    expect(r.violations.some((v) => v.startsWith('b entered (fence 6) at 15 while a'))).to.equal(true);
    expect(r.violations.some((v) => v.includes('c entered with fence 6, not above'))).to.equal(true);
    expect(r.violations.some((v) => v.startsWith('d entered again'))).to.equal(true);
    expect(r.violations.some((v) => v.startsWith('e exited at 80 without having entered'))).to.equal(true);
  });
});
