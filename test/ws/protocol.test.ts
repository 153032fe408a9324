import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PatchbayError } from '../../src/index.js';
import { isRefused, parseClientFrame } from '../../src/ws/protocol.js';

const parse = (text: string | Buffer, binary = false, max = 4096, depth?: number) =>
  parseClientFrame(typeof text === 'string' ? Buffer.from(text) : text, binary, max, depth);

describe('parseClientFrame', () => {
  it('never throws, whatever the bytes: a frame or a refusal with a patchbay error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), fc.json().map((j) => Buffer.from(j))), fc.boolean(), (data, binary) => {
        const result = parseClientFrame(data, binary, 200);
        if (isRefused(result)) expect(result.error).toBeInstanceOf(PatchbayError);
        else expect(['subscribe', 'unsubscribe', 'publish', 'ping']).toContain(result.type);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads every valid frame back as sent', () => {
    const sid = fc.stringMatching(/^[A-Za-z0-9_\-.:~@]{1,64}$/);
    const ref = fc.option(fc.oneof(fc.string({ minLength: 1, maxLength: 128 }).filter((s) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)), fc.integer()), { nil: undefined });
    const frame = fc.oneof(
      fc.record({ type: fc.constant('ping' as const), ref }),
      fc.record({ type: fc.constant('unsubscribe' as const), sid, ref }),
      fc.record({
        type: fc.constant('publish' as const),
        topic: fc.string(),
        data: fc.jsonValue({ maxDepth: 10 }).filter((v) => !JSON.stringify(v).includes('"__proto__"')), // refused: see below
        ref,
      }),
      fc.record({ type: fc.constant('subscribe' as const), sid, pattern: fc.string(), cursor: fc.option(fc.string(), { nil: undefined }), ref }),
      fc.record({ type: fc.constant('subscribe' as const), sid, topics: fc.array(fc.string(), { minLength: 1, maxLength: 4 }), ref }),
    );
    fc.assert(
      fc.property(frame, (f) => {
        const sent = JSON.parse(JSON.stringify(f)) as Record<string, unknown>;
        const got = parse(JSON.stringify(f), false, 1 << 20);
        expect(isRefused(got)).toBe(false);
        expect(JSON.parse(JSON.stringify(got))).toEqual(sent);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses a __proto__ key at any depth of any frame, and nesting past maxDepth, with PB_ERR_PROTOCOL', () => {
    const bury = (value: unknown, path: readonly ('o' | 'a')[]): unknown => path.reduceRight<unknown>((inner, step) => (step === 'a' ? [inner] : { k: inner }), value);
    fc.assert(
      fc.property(fc.array(fc.constantFrom<'o' | 'a'>('o', 'a'), { maxLength: 20 }), fc.jsonValue({ maxDepth: 2 }), (path, leaf) => {
        const data = `{"__proto__":${JSON.stringify(leaf)}}`;
        const buried = JSON.stringify(bury('@', path)).replace('"@"', data);
        const got = parse(`{"type":"publish","topic":"t","data":${buried}}`, false, 1 << 20, 64);
        expect(isRefused(got) && got.error.code).toBe('PB_ERR_PROTOCOL');
      }),
      { numRuns: 300 },
    );
    const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    expect(isRefused(parse(`{"type":"publish","topic":"t","data":${nested(9)}}`, false, 1 << 20, 10))).toBe(false);
    const deep = parse(`{"type":"publish","topic":"t","data":${nested(10)}}`, false, 1 << 20, 10);
    expect(isRefused(deep) && deep.error.code).toBe('PB_ERR_PROTOCOL');
  });

  it('keeps the ref and sid of a refused frame when they are themselves valid', () => {
    const r = parse('{"type":"subscribe","sid":"s1","ref":"r","pattern":1}');
    expect(isRefused(r) && [r.error.code, r.ref, r.sid]).toEqual(['PB_ERR_PROTOCOL', 'r', 's1']);
    const bad = parse('{"type":"subscribe","sid":"bad sid","ref":"\\r\\n","pattern":"p"}');
    expect(isRefused(bad) && [bad.ref, bad.sid]).toEqual([undefined, undefined]);
  });

  it('refuses a frame over the limit before parsing it, and binary frames', () => {
    const big = parse(`{"type":"ping","ref":"${'x'.repeat(100)}"}`, false, 50);
    expect(isRefused(big) && big.error.code).toBe('PB_ERR_BODY_TOO_LARGE');
    const bin = parse('{"type":"ping"}', true);
    expect(isRefused(bin) && bin.error.code).toBe('PB_ERR_PROTOCOL');
  });
});
