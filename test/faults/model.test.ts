/**
 * The fault suite's checkers, on hand-made and generated histories: replayMutex, checkPermits and checkReadWrite must
 * accept a correct history and name what breaks a wrong one (otherwise every scenario that "passes"
 * them would prove nothing).
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { checkPermits, checkReadWrite, replayMutex, type Hold, type MutexEvent, type RWHold } from '../../src/testing/history.js';

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

const hold = (worker: string, enter: number, exit: number, fence: number, requested?: number): Hold => ({
  worker, enter: BigInt(enter), exit: BigInt(exit), fence: BigInt(fence), ...(requested === undefined ? {} : { requested: BigInt(requested) }),
});

/**
 * A history a correct semaphore of `limit` could give: each of `limit` slots is held by one hold after
 * another (gaps of 0 allowed: a handoff within one nanosecond), fences handed out in grant order, and
 * each hold asked for its permit some time before it entered, but not before the previous hold of its
 * slot was granted (it may have waited for that hold's exit).
 */
const validHistory = fc.integer({ min: 1, max: 4 }).chain((limit) =>
  fc.tuple(
    fc.constant(limit),
    fc.array(fc.array(fc.record({ gap: fc.nat(20), length: fc.integer({ min: 1, max: 30 }), asked: fc.nat(40) }), { maxLength: 8 }), { minLength: limit, maxLength: limit }),
  ),
).map(([limit, slots]) => {
  const holds: Hold[] = [];
  slots.forEach((slot, s) => {
    let t = 0;
    for (const { gap, length, asked } of slot) {
      const enter = t + gap;
      holds.push(hold(`slot${s}`, enter, enter + length, 0, Math.max(0, enter - asked)));
      t = enter + length;
    }
  });
  // Grant order is enter order; a hold that asked before another's exit may be granted after it, which is fine.
  holds.sort((a, b) => (a.enter < b.enter ? -1 : a.enter > b.enter ? 1 : 0)).forEach((h, i) => (h.fence = BigInt(i + 1)));
  return { limit, holds };
});

/** How many of `holds` are inside at `t` ([enter, exit)): the brute-force oracle for the sweep. */
const insideAt = (holds: Hold[], t: bigint): number => holds.filter((h) => h.enter <= t && t < h.exit).length;

describe('faults (fast): the semaphore model check (checkPermits)', () => {
  it('passes a valid 2-overlap: two holders at once, handoffs in the same nanosecond, fences out of order while overlapping', () => {
    const r = checkPermits([
      hold('a', 10, 50, 1), hold('b', 20, 60, 2),
      hold('c', 50, 80, 3, 15), // asked while a held (15 < 50): granted at a's exit, same ns
      hold('d', 60, 90, 5, 55), hold('e', 80, 95, 4, 55), // d and e asked at once; e granted the lower fence later: no order between them
    ], 2);
    expect(r.excess).to.deep.equal([]);
    expect(r.repeatedFences).to.deep.equal([]);
    expect(r.fenceRegressions).to.deep.equal([]);
    expect(r.maxInside).to.equal(2);
    expect(r.holds).to.equal(5);
  });

  it('catches a constructed excess: a third holder inside beside two, and names the three', () => {
    const a = hold('a', 10, 50, 1);
    const b = hold('b', 20, 60, 2);
    const c = hold('c', 30, 40, 3);
    const r = checkPermits([a, b, c, hold('d', 60, 70, 4)], 2);
    expect(r.excess).to.have.length(1);
    expect(r.excess[0]!.at).to.equal(30n);
    expect(r.excess[0]!.holds).to.have.members([a, b, c]);
    expect(r.maxInside).to.equal(3);
    expect(checkPermits([a, b, c], 3).excess, 'the same history under limit 3').to.deep.equal([]);
    expect(checkPermits([a, b], 1).excess.map((e) => e.at), 'limit 1 is a mutex').to.deep.equal([20n]);
  });

  it('reports every moment over the limit, not just the first', () => {
    // A paused holder p "holds" throughout while x and y each overlap the one legal holder q.
    const r = checkPermits([hold('p', 0, 100, 1), hold('q', 5, 100, 2), hold('x', 10, 20, 3), hold('y', 30, 40, 4)], 2);
    expect(r.excess.map((e) => [e.at, e.holds.map((h) => h.worker).sort()])).to.deep.equal([
      [10n, ['p', 'q', 'x']],
      [30n, ['p', 'q', 'y']],
    ]);
  });

  it('catches repeated fences and causal fence regressions, using requested when recorded', () => {
    const a = hold('a', 10, 20, 7);
    const b = hold('b', 30, 40, 7);
    const c = hold('c', 50, 60, 5); // entered after a and b exited, with a lower fence
    const r = checkPermits([a, b, c], 2);
    expect(r.repeatedFences).to.deep.equal([{ fence: 7n, holds: [a, b] }]);
    expect(r.fenceRegressions).to.deep.equal([[a, b], [a, c]]);
    // Asked before a exited: no order between a and d, whatever the fences.
    expect(checkPermits([a, hold('d', 30, 40, 6, 15)], 2).fenceRegressions).to.deep.equal([]);
    // Without requested, d's enter is when it asked: a exited before, so its lower fence regresses.
    expect(checkPermits([a, hold('d', 30, 40, 6)], 2).fenceRegressions).to.have.length(1);
  });

  it('a hold with no length is never inside; limit must be a positive integer', () => {
    expect(checkPermits([hold('a', 10, 10, 1), hold('b', 10, 20, 2)], 1).excess).to.deep.equal([]);
    expect(() => checkPermits([], 0)).to.throw(RangeError);
    expect(() => checkPermits([], 1.5)).to.throw(RangeError);
  });

  it('property: a history a correct semaphore could give passes at its limit, and fails below its peak', () => {
    fc.assert(
      fc.property(validHistory, ({ limit, holds }) => {
        const r = checkPermits(holds, limit);
        expect(r.excess).to.deep.equal([]);
        expect(r.repeatedFences).to.deep.equal([]);
        expect(r.fenceRegressions).to.deep.equal([]);
        expect(r.maxInside).to.be.at.most(limit);
        if (r.maxInside > 1) expect(checkPermits(holds, r.maxInside - 1).excess).to.not.deep.equal([]);
      }),
      { numRuns: 300 },
    );
  });

  it('property: on any history, maxInside and every excess agree with a brute-force count', () => {
    const anyHold = fc.record({ enter: fc.nat(50), length: fc.nat(30), fence: fc.nat(20) });
    fc.assert(
      fc.property(fc.array(anyHold, { maxLength: 12 }), fc.integer({ min: 1, max: 4 }), (raw, limit) => {
        const holds = raw.map((h, i) => hold(`w${i}`, h.enter, h.enter + h.length, h.fence));
        const r = checkPermits(holds, limit);
        const peak = Math.max(0, ...holds.map((h) => insideAt(holds, h.enter)));
        expect(r.maxInside).to.equal(peak);
        expect(r.excess.length > 0).to.equal(peak > limit);
        for (const e of r.excess) {
          expect(e.holds.length).to.be.above(limit);
          for (const h of e.holds) expect(h.enter <= e.at && e.at < h.exit).to.equal(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('faults (fast): the read-write model check (checkReadWrite)', () => {
  const rw = (worker: string, mode: 'read' | 'write', enter: number, exit: number, fence: number): RWHold => ({ ...hold(worker, enter, exit, fence), mode });

  it('passes readers together and writers alone, handoffs in the same nanosecond; names a writer beside a reader and beside a writer', () => {
    const ok = checkReadWrite([rw('r1', 'read', 0, 10, 1), rw('r2', 'read', 5, 20, 2), rw('w', 'write', 20, 30, 3), rw('r3', 'read', 30, 40, 4), rw('w0', 'write', 50, 50, 5)]);
    expect(ok).to.include({ holds: 5, maxReaders: 2 });
    expect(ok.writerBeside).to.deep.equal([]);
    const w = rw('w', 'write', 10, 30, 3);
    const bad = checkReadWrite([rw('r', 'read', 0, 11, 1), w, rw('w2', 'write', 29, 40, 4), rw('r2', 'read', 30, 31, 5)]);
    expect(bad.writerBeside.map(([a, b]) => `${a.worker}/${b.worker}`)).to.deep.equal(['r/w', 'w/w2', 'w2/r2']);
  });

  it('property: writerBeside is exactly the overlapping pairs with a writer, by brute force', () => {
    const anyHold = fc.record({ enter: fc.nat(50), length: fc.nat(30), write: fc.boolean() });
    fc.assert(
      fc.property(fc.array(anyHold, { maxLength: 12 }), (raw) => {
        const holds = raw.map((h, i) => rw(`w${i}`, h.write ? 'write' : 'read', h.enter, h.enter + h.length, i));
        const key = ([a, b]: [RWHold, RWHold]): string => [a.worker, b.worker].sort().join('/');
        const expected: string[] = [];
        holds.forEach((a, i) => holds.slice(i + 1).forEach((b) => {
          if ((a.mode === 'write' || b.mode === 'write') && a.enter < b.exit && b.enter < a.exit && a.exit > a.enter && b.exit > b.enter) expected.push(key([a, b]));
        }));
        expect(checkReadWrite(holds).writerBeside.map(key).sort()).to.deep.equal(expected.sort());
      }),
      { numRuns: 500 },
    );
  });
});
