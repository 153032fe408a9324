import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DelayedOperation, Purgatory } from '../../src/index.js';

// On the real clock, only what cannot race is asserted: nothing fires early and everything ends.
// Lateness figures live in `npm run bench -- purgatory`, not here.

class Timed extends DelayedOperation {
  readonly startedAt = performance.now();
  firedAt = -1;
  constructor(
    timeoutMs: number,
    readonly done: () => void,
  ) {
    super(timeoutMs);
  }
  onComplete(): void {
    this.firedAt = performance.now();
    this.done();
  }
}

describe('Purgatory on the real clock', () => {
  for (const tickMs of [1, 10]) {
    it(`never expires early and ends every op (tick ${tickMs} ms)`, async () => {
      const purgatory = new Purgatory({ tickMs });
      const ops: Timed[] = [];
      await new Promise<void>((resolve) => {
        let left = 300;
        for (let i = 0; i < 300; i++) {
          const op = new Timed(1 + ((i * 7919) % 60), () => --left === 0 && resolve());
          ops.push(op);
          purgatory.tryCompleteElseWatch(op, `k${i % 17}`);
        }
      });
      for (const op of ops) {
        expect(op.state).toBe('expired');
        expect(op.firedAt - op.startedAt).toBeGreaterThanOrEqual(op.timeoutMs);
      }
      expect(purgatory.stats()).toMatchObject({ waiting: 0, watched: 0, expired: 300, timerArmed: false });
      await purgatory.close();
    });
  }

  it('completes by key on the real clock before the deadline', async () => {
    const purgatory = new Purgatory();
    let ready = false;
    const outcome = purgatory.wait('k', { timeoutMs: 60_000, tryComplete: () => ready });
    setImmediate(() => {
      ready = true;
      purgatory.checkAndComplete('k');
    });
    await expect(outcome).resolves.toBe('completed');
    expect(purgatory.stats().timerArmed).toBe(false);
    await purgatory.close();
  });

  it('does not keep the process alive while ops wait (the one timer is unref\'d)', () => {
    const script = `
      import { Purgatory } from './src/index.ts';
      const p = new Purgatory();
      p.wait('k', { timeoutMs: 600000 }).then(() => console.log('expired?'));
      console.log('waiting', p.stats().timerArmed);
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(child.error).toBeUndefined();
    expect(child.signal).toBeNull();
    expect(child.stdout.trim()).toBe('waiting true');
    expect(child.status).toBe(0);
  });
});
