import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertJsonValue, DEFAULT_MAX_JSON_DEPTH, ErrorCodes, InvalidArgumentError, parseJson, ProtocolError } from '../../src/index.js';

const nested = (depth: number, open = '[', close = ']'): string => open.repeat(depth) + close.repeat(depth);
function deepValue(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

describe('parseJson refuses at the door what could hurt later', () => {
  it('JSON nested 5,000 deep is a ProtocolError, before JSON.parse runs', () => {
    expect(() => parseJson(nested(5000))).toThrow(ProtocolError);
    expect(() => parseJson(nested(5000, '{"a":', '}').replace(/}$/, '1}'))).toThrow(/deeper than 64/);
  });

  it('the default depth is 64, counted from 1, and configurable', () => {
    expect(DEFAULT_MAX_JSON_DEPTH).toBe(64);
    expect(parseJson(nested(64))).toBeDefined();
    expect(() => parseJson(nested(65))).toThrow(ProtocolError);
    expect(parseJson(nested(200), { maxDepth: 200 })).toBeDefined();
    expect(() => parseJson(nested(3), { maxDepth: 2, what: 'A frame' })).toThrow(/^A frame nests deeper than 2/);
  });

  it('brackets inside strings do not count as nesting', () => {
    expect(parseJson(JSON.stringify({ s: '['.repeat(1000) + '"\\' }))).toEqual({ s: '['.repeat(1000) + '"\\' });
  });

  it('a __proto__ key is refused at any depth, escaped or not; as a value it is data', () => {
    for (const text of ['{"__proto__":{"x":1}}', '{"a":[{"b":{"__proto__":1}}]}', '{"\\u005f_proto__":1}', '{"__proto\\u005f\\u005f" : 1}']) {
      expect(() => parseJson(text), text).toThrow(/"__proto__" key/);
    }
    expect(parseJson('{"a":"__proto__","b":["__proto__"]}')).toEqual({ a: '__proto__', b: ['__proto__'] });
    expect(parseJson('{"constructor":1,"prototype":2}')).toEqual({ constructor: 1, prototype: 2 });
  });

  it('invalid JSON is a ProtocolError with code PB_ERR_PROTOCOL', () => {
    for (const text of ['', '{', '{"a":', '"\\', ']]]', '{"a" 1}']) {
      expect(() => parseJson(text)).toThrow(expect.objectContaining({ code: ErrorCodes.PROTOCOL }));
    }
  });

  it('property: on any JSON text, parseJson agrees with JSON.parse or refuses with a ProtocolError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.json({ depthSize: 'large' }), fc.string()), (text) => {
        let expected: unknown;
        let valid = true;
        try {
          expected = JSON.parse(text);
        } catch {
          valid = false;
        }
        try {
          expect(parseJson(text, { maxDepth: 1000 })).toEqual(expected);
          expect(valid).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
          if (valid) expect(text).toContain('__proto__');
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('assertJsonValue refuses data no transport can carry', () => {
  it.each([
    ['a BigInt', 1n, /BigInt/],
    ['a nested BigInt', { a: [1, 2n] }, /data\.a\[1\]` is a BigInt/],
    ['a function', { f: () => 1 }, /function/],
    ['a symbol', [Symbol('x')], /symbol/],
    ['a lone surrogate', '\ud800', /well-formed/],
    ['a nested lone surrogate', { a: 'ok\udfff' }, /well-formed/],
    ['a lone surrogate in a key', { ['\ud800']: 1 }, /key/],
    ['nesting 5,000 deep', deepValue(5000), /deeper than 64/],
    ['an own __proto__ key', JSON.parse('{"__proto__":1}') as unknown, /__proto__/],
  ])('%s', (_name, value, message) => {
    expect(() => assertJsonValue(value)).toThrow(InvalidArgumentError);
    expect(() => assertJsonValue(value)).toThrow(message);
  });

  it('a cycle', () => {
    const a: Record<string, unknown> = { x: 1 };
    a['self'] = { back: a };
    expect(() => assertJsonValue(a)).toThrow(/cycle/);
  });

  it('allows what JSON carries: shared (not cyclic) references, toJSON, undefined members, bytes, 64 deep', () => {
    const shared = { s: 1 };
    for (const v of [null, 0, -1.5, true, 'é😀', [shared, shared], { d: new Date(0) }, { u: undefined }, [undefined], new Uint8Array(3), deepValue(64), NaN]) {
      expect(() => assertJsonValue(v)).not.toThrow();
    }
    expect(() => assertJsonValue(deepValue(65))).toThrow(/deeper than 64/); // as parseJson counts: the outermost is 1
    expect(() => assertJsonValue(deepValue(10), { maxDepth: 5 })).toThrow(/deeper than 5/);
  });

  it('property: whatever passes serializes with JSON.stringify without throwing', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, maxDepth: 8 }), (value) => {
        let ok = true;
        try {
          assertJsonValue(value, { maxDepth: 6 });
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidArgumentError);
          ok = false;
        }
        if (ok && value !== undefined) expect(() => JSON.stringify(value)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});

describe('assertJsonValue counts as JSON does', () => {
  it('a byte array is one level (JSON writes it as an object), so it cannot pass the limit unseen', () => {
    let atLimit: unknown = new Uint8Array(2);
    for (let i = 0; i < 63; i++) atLimit = { a: atLimit };
    expect(() => assertJsonValue(atLimit)).not.toThrow(); // 63 objects + the bytes = 64
    expect(() => assertJsonValue({ a: atLimit })).toThrow(/deeper than 64/);
  });

  it('names where the problem is, and only then builds that path', () => {
    expect(() => assertJsonValue({ list: [1, { deep: [2, 3n] }] })).toThrow('`data.list[1].deep[1]` is a BigInt');
  });
});
