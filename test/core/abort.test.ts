import { describe, expect, it } from 'vitest';
import { abortReason, onAbort, throwIfAborted } from '../../src/index.js';

describe('AbortSignal helpers', () => {
  it('throwIfAborted throws the reason, and nothing for a live or missing signal', () => {
    throwIfAborted(undefined);
    const c = new AbortController();
    throwIfAborted(c.signal);
    const reason = new Error('stop');
    c.abort(reason);
    expect(() => throwIfAborted(c.signal)).toThrow(reason);
  });

  it('abortReason gives an AbortError when the reason is missing', () => {
    const signal = { aborted: true, reason: undefined } as unknown as AbortSignal;
    const r = abortReason(signal) as DOMException;
    expect(r.name).toBe('AbortError');
  });

  it('onAbort runs once with the reason and its disposer removes the listener', () => {
    const c = new AbortController();
    const seen: unknown[] = [];
    const d = onAbort(c.signal, (r) => seen.push(r));
    c.abort('why');
    c.abort('again');
    expect(seen).toEqual(['why']);
    d[Symbol.dispose]();

    const c2 = new AbortController();
    const seen2: unknown[] = [];
    const d2 = onAbort(c2.signal, (r) => seen2.push(r));
    d2[Symbol.dispose]();
    c2.abort('late');
    expect(seen2).toEqual([]);
  });
});
