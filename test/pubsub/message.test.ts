/**
 * Messages: the id formatted on first read, and the one-pass check and size of published data
 * (`checkedSize`), which must refuse exactly what `assertJsonValue` refuses and size as `sizeOf`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertJsonValue } from '../../src/core/json.js';
import { checkedSize, formatId, Message, sizeOf } from '../../src/pubsub/message.js';

const outcome = (f: () => unknown): unknown => {
  try {
    return { ok: f() };
  } catch (error) {
    return { threw: (error as Error).constructor.name, message: (error as Error).message };
  }
};

/** Values near the fast path's edges: flat objects of every leaf kind, and what must leave it. */
const leaf = fc.oneof(
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }), // lone surrogates too
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt(),
  fc.constant(() => 1),
  fc.constant(Symbol('s')),
  fc.constant(new Uint8Array([1, 2])),
  fc.constant({ toJSON: () => 'x' }),
  fc.constant(new Date(0)),
);
const key = fc.oneof(fc.string({ unit: 'binary', maxLength: 6 }), fc.constant('__proto__'), fc.constant('seq'));
const data = fc.oneof(
  leaf,
  fc.dictionary(key, leaf, { maxKeys: 5 }),
  fc.dictionary(key, fc.oneof(leaf, fc.dictionary(key, leaf, { maxKeys: 2 })), { maxKeys: 3 }),
  fc.array(leaf, { maxLength: 3 }),
);

describe('checkedSize', () => {
  it('refuses exactly what assertJsonValue refuses, with the same error', () => {
    fc.assert(
      fc.property(data, fc.integer({ min: 1, max: 3 }), (value, maxDepth) => {
        const a = outcome(() => assertJsonValue(value, { maxDepth }));
        const b = outcome(() => checkedSize(value, maxDepth));
        if ('threw' in (a as object)) expect(b).toEqual(a);
        else expect(b).not.toHaveProperty('threw');
      }),
    );
  });

  it('sizes data as sizeOf does (JSON bytes of objects), save escapes in flat objects', () => {
    fc.assert(
      fc.property(data, (value) => {
        const size = outcome(() => checkedSize(value, 64)) as { ok?: number };
        if (size.ok === undefined) return;
        const json = typeof value === 'object' && value !== null ? JSON.stringify(value) : undefined;
        if (json !== undefined && /\\/.test(json)) expect(size.ok).toBeLessThanOrEqual(sizeOf(value));
        else expect(size.ok).toBe(sizeOf(value));
      }),
    );
  });

  it('counts a flat object as its JSON length', () => {
    const value = { seq: 123, name: 'héllo', ok: true, none: null, skip: undefined, n: -0.5 };
    expect(checkedSize(value, 1)).toBe(Buffer.byteLength(JSON.stringify(value)));
  });

  it('refuses a __proto__ key and nesting deeper than the limit', () => {
    expect(() => checkedSize(JSON.parse('{"__proto__":1}'), 64)).toThrow(/__proto__/);
    expect(() => checkedSize({ a: { b: 1 } }, 1)).toThrow(/deeper than 1/);
  });
});

describe('Message ids formatted on first read', () => {
  it('formats the id from the epoch and seq, once, and keeps it', () => {
    const m = new Message(undefined, 42, 't', 1, undefined, 8, 0, 'k3x9q');
    expect(m.id).toBe(formatId('k3x9q', 42));
    expect(m.id).toBe(m.id);
    expect(new Message('e-1', 1, 't', 1, undefined, 8, 0).id).toBe('e-1');
  });

  it('writes the same JSON as when the id was a field', () => {
    const m = new Message(undefined, 7, 'room', { a: 1 }, { replyTo: 'x' }, 8, 5, 'abc');
    expect(JSON.parse(JSON.stringify(m))).toEqual({ id: 'abc-7', _seq: 7, topic: 'room', data: { a: 1 }, headers: { replyTo: 'x' }, _size: 8, _time: 5 });
  });
});
