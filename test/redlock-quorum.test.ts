/**
 * The Redlock arithmetic as pure functions (src/locks/redlock-nodes.ts, src/locks/options.ts): who
 * makes a quorum, when a round is decided, how much of a lease is left. No server.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { driftMs } from '../src/locks/options.js';
import { quorumOf, quorumPttl, roundDecided, validityMs } from '../src/locks/redlock-nodes.js';

describe('Redlock quorum arithmetic', () => {
  describe('quorumOf', () => {
    it('is a strict majority of 1..9 nodes', () => {
      expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map(quorumOf)).to.deep.equal([1, 2, 2, 3, 3, 4, 4, 5, 5]);
    });

    it('makes any two quorums of the same nodes share a node', () => {
      const nodesAndTwoQuorums = fc
        .integer({ min: 1, max: 25 })
        .chain((n) => {
          const all = Array.from({ length: n }, (_, i) => i);
          const q = quorumOf(n);
          const quorum = fc.shuffledSubarray(all, { minLength: q, maxLength: q });
          return fc.tuple(fc.constant(n), quorum, quorum);
        });
      fc.assert(
        fc.property(nodesAndTwoQuorums, ([n, a, b]) => {
          expect(a).to.have.length(quorumOf(n));
          expect(a.some((node) => b.includes(node)), `n=${n} ${a} / ${b}`).to.equal(true);
        }),
      );
    });

    it('is the smallest size for which that holds', () => {
      // One node fewer and two disjoint "quorums" fit in n nodes: two holders at once.
      for (let n = 1; n <= 100; n++) {
        expect(2 * quorumOf(n), `n=${n}`).to.be.greaterThan(n);
        expect(2 * (quorumOf(n) - 1), `n=${n}`).to.be.at.most(n);
      }
    });
  });

  describe('roundDecided', () => {
    /** Every possible tally of a round on n nodes: ayes + nays <= n. */
    function* tallies(n: number): Generator<[number, number]> {
      for (let ayes = 0; ayes <= n; ayes++) for (let nays = 0; ayes + nays <= n; nays++) yield [ayes, nays];
    }

    it('is true exactly when ayes >= Q or nays >= N-Q+1', () => {
      for (let n = 1; n <= 9; n++) {
        const q = quorumOf(n);
        for (const [ayes, nays] of tallies(n)) {
          expect(roundDecided(ayes, nays, n), `n=${n} ayes=${ayes} nays=${nays}`).to.equal(ayes >= q || nays >= n - q + 1);
        }
      }
    });

    it('decides as soon as the outcome is certain, never before, and always once every node answered', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 30 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n }), fc.integer({ min: 0, max: n }))),
          ([n, a, b]) => {
            const ayes = Math.min(a, n);
            const nays = Math.min(b, n - ayes);
            const q = quorumOf(n);
            const open = n - ayes - nays;
            const yesStillPossible = ayes + open >= q;
            const noStillPossible = ayes < q; // some way for the open nodes to leave ayes below Q
            const quorumReached = ayes >= q;
            const quorumOutOfReach = !yesStillPossible;
            // The two outcomes never both hold: no round is both won and lost.
            expect(quorumReached && quorumOutOfReach).to.equal(false);
            // Decided exactly when one of them is certain, whatever the open nodes say.
            expect(roundDecided(ayes, nays, n)).to.equal(quorumReached || quorumOutOfReach);
            expect(roundDecided(ayes, nays, n)).to.equal(!(yesStillPossible && noStillPossible));
            if (open === 0) expect(roundDecided(ayes, nays, n)).to.equal(true);
          },
        ),
      );
    });
  });

  describe('validityMs and driftMs', () => {
    it('driftMs is floor(ttl * driftFactor) + 2, with a default factor of 0.01', () => {
      expect(driftMs(10_000)).to.equal(102);
      expect(driftMs(1000)).to.equal(12);
      expect(driftMs(99)).to.equal(2);
      expect(driftMs(1234, 0.01)).to.equal(14);
      expect(driftMs(1000, 0)).to.equal(2);
      expect(driftMs(1000, 0.05)).to.equal(52);
    });

    it('validityMs is ttl - elapsed - drift', () => {
      expect(validityMs(10_000, 0, 0.01)).to.equal(9898);
      expect(validityMs(10_000, 500, 0.01)).to.equal(9398);
      expect(validityMs(1234, 10, 0.01)).to.equal(1210);
      expect(validityMs(1000, 12.5, 0)).to.equal(985.5);
    });

    it('leaves no validity once acquiring took the lease less its drift', () => {
      expect(validityMs(1000, 988, 0.01)).to.equal(0);
      expect(validityMs(1000, 989, 0.01)).to.be.below(0);
      expect(validityMs(1000, 5000, 0.01)).to.be.below(0);
    });

    it('always keeps at least 2 ms and the drift share back, and shrinks as acquiring takes longer', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 10_000_000 }),
          fc.double({ min: 0, max: 1e6, noNaN: true }),
          fc.double({ min: 0, max: 0.5, noNaN: true }),
          (ttl, elapsed, drift) => {
            const v = validityMs(ttl, elapsed, drift);
            expect(v).to.equal(ttl - elapsed - (Math.floor(ttl * drift) + 2));
            expect(v).to.be.at.most(ttl - elapsed - 2);
            expect(validityMs(ttl, elapsed + 1, drift)).to.be.below(v);
          },
        ),
      );
    });
  });

  describe('quorumPttl', () => {
    it('picks the needed-th shortest PTTL', () => {
      const pttls = [300, 100, 200];
      expect(quorumPttl(pttls, 1, 1000)).to.equal(100);
      expect(quorumPttl(pttls, 2, 1000)).to.equal(200);
      expect(quorumPttl(pttls, 3, 1000)).to.equal(300);
      expect(pttls, 'its input is left as it was').to.deep.equal([300, 100, 200]);
    });

    it('sorts numerically, not as strings', () => {
      expect(quorumPttl([1000, 90, 5], 2, 5000)).to.equal(90);
    });

    it('counts a key without expiry (-1) as the TTL', () => {
      expect(quorumPttl([-1, 100], 1, 1000)).to.equal(100);
      expect(quorumPttl([-1, 100], 2, 1000)).to.equal(1000);
      expect(quorumPttl([-1, 5000], 1, 1000)).to.equal(1000);
    });

    it('takes the longest when fewer keys than needed are known', () => {
      expect(quorumPttl([100, 200], 3, 1000)).to.equal(200);
    });

    it('is 0 when there is no PTTL, or none is needed', () => {
      expect(quorumPttl([], 2, 1000)).to.equal(0);
      expect(quorumPttl([100, 200], 0, 1000)).to.equal(0);
    });

    it('waits until at least `needed` of the keys are gone, and no longer', () => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: -1, max: 100_000 }), { minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 9 }), (pttls, needed) => {
          const ttl = 30_000;
          const effective = pttls.map((p) => (p >= 0 ? p : ttl));
          const wait = quorumPttl(pttls, needed, ttl);
          expect(effective).to.include(wait);
          const goneBy = effective.filter((p) => p <= wait).length;
          expect(goneBy).to.be.at.least(Math.min(needed, effective.length));
          // One ms sooner and fewer than that are gone.
          expect(effective.filter((p) => p <= wait - 1).length).to.be.below(Math.min(needed, effective.length));
        }),
      );
    });
  });
});
