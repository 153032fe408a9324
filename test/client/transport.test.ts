import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpStatusError, InvalidArgumentError, ManualClock, ProtocolError, TimeoutError } from '../../src/client/index.js';
import { clientBackoffDelay as backoffDelay, exchange, resolveClientBackoff as resolveBackoff, retryAfterMs, RetryState, sleep } from '../../src/client/transport.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

describe('Retry-After', () => {
  const h = (value: string, date?: string) => new Headers({ 'retry-after': value, ...(date === undefined ? {} : { date }) });
  it('reads delay-seconds and HTTP-dates, and ignores garbage', () => {
    expect(retryAfterMs(new Headers())).toBeUndefined();
    expect(retryAfterMs(h('0'))).toBe(0);
    expect(retryAfterMs(h(' 3 '))).toBe(3000);
    expect(retryAfterMs(h('Wed, 21 Oct 2015 07:28:05 GMT', 'Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(5000);
    expect(retryAfterMs(h('Wed, 21 Oct 2015 07:28:00 GMT', 'Wed, 21 Oct 2015 07:28:05 GMT'))).toBe(0); // in the past
    expect(retryAfterMs(h('Wed, 21 Oct 2015 07:28:10 GMT'), () => Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(10_000);
    for (const garbage of ['-1', '1.5', 'soon', '', '1e3', '0x10']) expect(retryAfterMs(h(garbage)), garbage).toBeUndefined();
    expect(retryAfterMs(h('999999999'))).toBe(3_600_000); // capped at an hour
  });
});

describe('backoff', () => {
  it('stays within [floor, min(max, initial * factor^(n-1))] for any draw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }), // a first delay of 0 is refused (the one BackoffOptions check)
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        fc.integer({ min: 0, max: 10_000 }),
        (initialMs, extra, factor, attempt, r, floor) => {
          const b = resolveBackoff({ initialDelayMs: initialMs, maxDelayMs: initialMs + extra, factor });
          const cap = Math.min(b.maxDelayMs, initialMs * factor ** (attempt - 1));
          const d = backoffDelay(b, attempt, () => r, floor);
          expect(d).toBeGreaterThanOrEqual(floor);
          expect(d).toBeLessThanOrEqual(Math.max(floor, cap));
        },
      ),
    );
  });

  it('treats a broken random source as the cap rather than NaN', () => {
    const b = resolveBackoff({ initialDelayMs: 100, maxDelayMs: 1000 });
    expect(backoffDelay(b, 2, () => Number.NaN)).toBe(200);
    expect(backoffDelay(b, 2, () => 7)).toBe(200);
    expect(backoffDelay(b, 2, () => -3)).toBe(0);
  });

  it('takes the shared BackoffOptions: defaults 250/30000/2 with full jitter, a jitter below 1 keeps a floor, bad fields refused', () => {
    expect(resolveBackoff(undefined)).toEqual({ initialDelayMs: 250, maxDelayMs: 30_000, factor: 2, jitter: 1 });
    const b = resolveBackoff({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.5 });
    expect([backoffDelay(b, 2, () => 0), backoffDelay(b, 2, () => 0.5), backoffDelay(b, 2, () => 1)]).toEqual([100, 150, 200]);
    for (const bad of [{ initialDelayMs: 0 }, { initialDelayMs: 10, maxDelayMs: 5 }, { factor: 0.5 }, { jitter: 2 }, { jitter: -0.1 }]) {
      expect(() => resolveBackoff(bad), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
  });
});

describe('RetryState', () => {
  const backoff = resolveBackoff({ initialDelayMs: 100, maxDelayMs: 1000, factor: 2 });
  const busy = (retryAfterMs?: number) => new HttpStatusError(503, 'busy', undefined, retryAfterMs === undefined ? undefined : { retryAfterMs });

  it('counts failures, grows the jittered delay, floors it at Retry-After, and starts over after a success', () => {
    const retry = new RetryState({ backoff, maxRetries: 10, clock: new ManualClock(), random: () => 1 });
    expect(retry.failed(new TypeError('fetch failed'))).toBe(100);
    expect(retry.failed(new TimeoutError('slow'))).toBe(200);
    expect(retry.failed(busy(5000))).toBe(5000); // Retry-After beats the cap
    expect(retry.failed(busy(1))).toBe(800);
    expect(retry.failures).toBe(4);
    retry.succeeded();
    expect(retry.failures).toBe(0);
    expect(retry.failed(busy())).toBe(100);
    const half = new RetryState({ backoff, maxRetries: 10, clock: new ManualClock(), random: () => 0.5 });
    expect([half.failed(busy()), half.failed(busy()), half.failed(busy())]).toEqual([50, 100, 200]);
  });

  it('throws the error itself when it is not retryable or past maxRetries', () => {
    const retry = new RetryState({ backoff, maxRetries: 2, clock: new ManualClock(), random: () => 0 });
    const refused = new HttpStatusError(404, 'not found');
    expect(() => retry.failed(refused)).toThrow(refused);
    expect(() => retry.failed(new ProtocolError('garbled'))).toThrow(ProtocolError);
    expect(retry.failures).toBe(0); // not counted
    retry.failed(busy());
    retry.failed(busy());
    const third = busy();
    expect(() => retry.failed(third)).toThrow(third);
  });

  it('takes its own idea of retryable, and never backs off less than Retry-After', () => {
    const cut = new Error('cut');
    const retry = new RetryState({ backoff, maxRetries: 5, clock: new ManualClock(), random: () => 1, retryable: (e) => e === cut || e instanceof HttpStatusError });
    expect(retry.failed(cut)).toBe(100);
    expect(retry.failed(busy(5000))).toBe(5000);
    expect(() => retry.failed(new TypeError('fetch failed'))).toThrow(TypeError);
  });

  it('backOff waits on the clock, and rejects with the signal\'s reason leaving no timer', async () => {
    const clock = new ManualClock();
    const retry = new RetryState({ backoff, maxRetries: 1, clock, random: () => 1 });
    let done = false;
    const waiting = retry.backOff(busy(), new AbortController().signal).then(() => (done = true));
    expect(clock.pendingTimers).toBe(1);
    clock.advance(99);
    await Promise.resolve();
    expect(done).toBe(false);
    clock.advance(1);
    await waiting;
    const ac = new AbortController();
    retry.succeeded();
    const aborted = retry.backOff(busy(), ac.signal);
    expect(clock.pendingTimers).toBe(1);
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(clock.pendingTimers).toBe(0);
    const last = busy(); // failure 2 with maxRetries 1: no wait at all
    await expect(retry.backOff(last, new AbortController().signal)).rejects.toBe(last);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('sleep and exchange', () => {
  it('sleep resolves at its time and removes its timer when aborted', async () => {
    const clock = new ManualClock();
    const done = sleep(clock, 50, new AbortController().signal);
    clock.advance(49);
    let settled = false;
    void done.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    clock.advance(1);
    await done;
    const ac = new AbortController();
    const aborted = sleep(clock, 50, ac.signal);
    expect(clock.pendingTimers).toBe(1);
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(clock.pendingTimers).toBe(0);
  });

  it('exchange fails with TimeoutError at its deadline and aborts the fetch', async () => {
    const clock = new ManualClock();
    let fetchSignal: AbortSignal | undefined;
    const hanging = (_input: string | URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        fetchSignal = init?.signal ?? undefined;
        fetchSignal?.addEventListener('abort', () => reject(fetchSignal!.reason));
      });
    const p = exchange(hanging, clock, { method: 'GET', url: new URL('http://127.0.0.1:9/x'), headers: {}, timeoutMs: 100, signal: new AbortController().signal });
    clock.advance(100);
    await expect(p).rejects.toBeInstanceOf(TimeoutError);
    expect(fetchSignal?.aborted).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('patchbay/client is isomorphic', () => {
  it('imports no Node built-in and no package, anywhere in its import graph', () => {
    const seen = new Set<string>();
    const bad: string[] = [];
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const code = readFileSync(file, 'utf8');
      for (const m of code.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) {
        const spec = (m[1] ?? m[2])!;
        if (!spec.startsWith('.')) {
          bad.push(`${file.slice(root.length + 1)} imports ${spec}`);
          continue;
        }
        visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      }
      for (const m of code.matchAll(/\b(?:setImmediate|process\.|Buffer\.|require\()/g)) bad.push(`${file.slice(root.length + 1)} uses ${m[0]}`);
    };
    visit(join(root, 'src', 'client', 'index.ts'));
    expect(seen.size).toBeGreaterThan(4);
    // clock.ts may mention setImmediate behind a typeof check (it falls back to setTimeout in browsers).
    expect(bad.filter((b) => !/core\/clock\.ts uses setImmediate/.test(b))).toEqual([]);
  });

  it('the lint rule fails a node: import in src/client', async () => {
    const eslint = new ESLint({ cwd: root });
    const [result] = await eslint.lintText("import { EventEmitter } from 'node:events';\nexport { EventEmitter };\n", { filePath: 'src/client/x.ts' });
    const messages = (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
    expect(messages.some((m) => /runs in browsers too/.test(m))).toBe(true);
  });
});
