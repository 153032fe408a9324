/**
 * The upload ledger against a model: whatever the order of creates, writes, late lengths,
 * removals and clock steps, the bytes it reports are the model's and never pass maxTotalBytes,
 * and it names exactly the uploads whose time is up.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CapacityError } from '../../src/index.js';
import { type Claim, type LedgerEntry, UploadLedger } from '../../src/upload/ledger.js';

interface Model {
  size: number | undefined;
  written: number;
  createdAt: number;
  finishedAt: number | undefined;
}

type Op =
  | { kind: 'admit'; id: number; size: number | undefined }
  | { kind: 'take'; id: number; bytes: number }
  | { kind: 'declare'; id: number; size: number }
  | { kind: 'forget'; id: number }
  | { kind: 'advance'; ms: number };

const id = fc.integer({ min: 0, max: 7 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('admit' as const), id, size: fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }) }),
  fc.record({ kind: fc.constant('take' as const), id, bytes: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('declare' as const), id, size: fc.integer({ min: 0, max: 80 }) }),
  fc.record({ kind: fc.constant('forget' as const), id }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3_000 }) }),
);

describe('UploadLedger', () => {
  it('reports the model’s bytes, never more than maxTotalBytes committed, and exactly the uploads due (property)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), fc.integer({ min: 1, max: 4 }), (ops, maxActive) => {
        const limits = { maxTotalBytes: 100, maxActive, expiryMs: 5_000, completedExpiryMs: 1_000, cleanupIntervalMs: 1_000 };
        let now = 0;
        const ledger = new UploadLedger({ ...limits, now: () => now });
        const model = new Map<string, Model>();
        const committed = (m: Model) => Math.max(m.size ?? 0, m.written);
        const total = () => [...model.values()].reduce((sum, m) => sum + committed(m), 0);
        const finish = (m: Model) => {
          if (m.finishedAt === undefined && m.size !== undefined && m.written >= m.size) m.finishedAt = now;
        };
        for (const o of ops) {
          if (o.kind === 'advance') {
            now += o.ms;
            continue;
          }
          const key = `u${o.id}`;
          const m = model.get(key);
          if (o.kind === 'admit') {
            if (m !== undefined) continue; // ids are unique in the store
            const active = [...model.values()].filter((x) => x.finishedAt === undefined).length;
            const fits = active < maxActive && (o.size === undefined || total() + o.size <= limits.maxTotalBytes);
            if (fits) {
              ledger.admit(key, o.size);
              const entry: Model = { size: o.size, written: 0, createdAt: now, finishedAt: undefined };
              finish(entry); // a zero-length upload is complete at creation
              model.set(key, entry);
            } else expect(() => ledger.admit(key, o.size)).toThrow(CapacityError);
          } else if (o.kind === 'take') {
            if (m === undefined) {
              ledger.take(key, o.bytes); // unknown: passes, books nothing
            } else {
              // tus never writes past a declared length: the store's limiter cuts it first.
              const bytes = m.size === undefined ? o.bytes : Math.min(o.bytes, m.size - m.written);
              const grow = Math.max(m.size ?? 0, m.written + bytes) - committed(m);
              if (total() + grow <= limits.maxTotalBytes) {
                ledger.take(key, bytes);
                ledger.wrote(key, m.written + bytes); // the store confirms what it wrote
                m.written += bytes;
                finish(m);
              } else expect(() => ledger.take(key, bytes)).toThrow(CapacityError);
            }
          } else if (o.kind === 'declare') {
            if (m === undefined || m.size !== undefined || o.size < m.written) continue; // tus refuses these itself
            const grow = Math.max(o.size, m.written) - committed(m);
            if (total() + grow <= limits.maxTotalBytes) {
              ledger.declare(key, o.size);
              m.size = o.size;
            } else expect(() => ledger.declare(key, o.size)).toThrow(CapacityError);
          } else {
            ledger.forget(key);
            model.delete(key);
          }
          const values = [...model.values()];
          expect(ledger.bytesOnDisk).toBe(values.reduce((sum, x) => sum + x.written, 0));
          expect(ledger.bytesOnDisk + ledger.bytesReserved).toBe(total());
          expect(total()).toBeLessThanOrEqual(limits.maxTotalBytes);
          expect(ledger.active).toBe(values.filter((x) => x.finishedAt === undefined).length);
          expect(ledger.finished).toBe(values.filter((x) => x.finishedAt !== undefined).length);
        }
        const due = [...model.entries()]
          .filter(([, x]) => now >= (x.finishedAt === undefined ? x.createdAt + limits.expiryMs : Math.min(x.finishedAt + limits.completedExpiryMs, x.createdAt + limits.expiryMs)))
          .map(([k]) => k)
          .sort();
        expect(ledger.due().sort()).toEqual(due);
      }),
      { numRuns: 300 },
    );
  });

  it('an upload in use is never due nor claimed, a claimed one cannot be held again, and one claim wins (property)', () => {
    type UseOp = { kind: 'hold' | 'release' | 'claim' | 'unclaim' | 'forget'; id: number } | { kind: 'advance'; ms: number };
    const useOp: fc.Arbitrary<UseOp> = fc.oneof(
      fc.record({ kind: fc.constantFrom('hold' as const, 'release' as const, 'claim' as const, 'unclaim' as const, 'forget' as const), id: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3_000 }) }),
    );
    fc.assert(
      fc.property(fc.array(useOp, { maxLength: 60 }), (ops) => {
        let now = 0;
        const ledger = new UploadLedger({ maxTotalBytes: 100, maxActive: 10, expiryMs: 5_000, completedExpiryMs: 1_000, cleanupIntervalMs: 1_000, now: () => now });
        const model = new Map<string, { createdAt: number; holds: LedgerEntry[]; claimed: boolean }>();
        for (let i = 0; i < 4; i++) {
          ledger.admit(`u${i}`, 10);
          model.set(`u${i}`, { createdAt: 0, holds: [], claimed: false });
        }
        for (const o of ops) {
          if (o.kind === 'advance') {
            now += o.ms;
            continue;
          }
          const key = `u${o.id}`;
          const m = model.get(key);
          if (o.kind === 'hold') {
            const entry = ledger.hold(key);
            if (m === undefined || m.claimed) expect(entry).toBeUndefined();
            else {
              expect(entry).toBeDefined();
              m.holds.push(entry!);
            }
          } else if (o.kind === 'release') {
            const entry = m?.holds.pop();
            if (entry !== undefined) ledger.release(entry);
          } else if (o.kind === 'claim') {
            const expected: Claim = m === undefined ? 'unknown' : m.claimed ? 'removing' : m.holds.length > 0 ? 'busy' : 'claimed';
            expect(ledger.claim(key)).toBe(expected);
            if (expected === 'claimed') m!.claimed = true;
          } else if (o.kind === 'unclaim') {
            ledger.unclaim(key);
            if (m !== undefined) m.claimed = false;
          } else {
            ledger.forget(key);
            model.delete(key);
          }
          const due = [...model.entries()]
            .filter(([, x]) => x.holds.length === 0 && !x.claimed && now >= x.createdAt + 5_000)
            .map(([k]) => k)
            .sort();
          expect(ledger.due().sort()).toEqual(due);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a declared length undone (the store failed to record it) gives its reservation back', () => {
    const ledger = new UploadLedger({ maxTotalBytes: 100, maxActive: 10, expiryMs: 1, completedExpiryMs: 1, cleanupIntervalMs: 1, now: () => 0 });
    ledger.admit('a', undefined);
    const undo = ledger.declare('a', 70);
    expect(ledger.bytesReserved).toBe(70);
    expect(() => ledger.admit('b', 40)).toThrow(CapacityError);
    undo();
    expect(ledger.bytesReserved).toBe(0);
    ledger.admit('b', 40);
  });
});
