import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/index.js';
import { ANY_TAG, parseIdempotencyKey, parseIfNoneMatch, parsePrefer, tagsMatch } from '../../src/poll/headers.js';

describe('parsePrefer (RFC 7240)', () => {
  it('reads respond-async and wait, case-insensitively, ignoring parameters and other preferences', () => {
    expect(parsePrefer(undefined)).toEqual({ respondAsync: false, wait: undefined });
    expect(parsePrefer('')).toEqual({ respondAsync: false, wait: undefined });
    expect(parsePrefer('respond-async, wait=10')).toEqual({ respondAsync: true, wait: 10 });
    expect(parsePrefer('Respond-Async,WAIT = 5')).toEqual({ respondAsync: true, wait: 5 });
    expect(parsePrefer('wait="7"; foo=bar')).toEqual({ respondAsync: false, wait: 7 });
    expect(parsePrefer('return=minimal, handling=strict; x="a,b"')).toEqual({ respondAsync: false, wait: undefined });
    expect(parsePrefer('wait=0')).toEqual({ respondAsync: false, wait: 0 });
    expect(parsePrefer('wait=3, wait=9')).toEqual({ respondAsync: false, wait: 3 }); // the first one counts
    expect(parsePrefer('wait=3, wait=oops').wait).toBe(3);
    expect(parsePrefer(`wait=${'9'.repeat(400)}`).wait).toBe(1e9); // huge: clamped by the handler
  });

  it('refuses a wait that is not delta-seconds, and broken quoting', () => {
    for (const bad of ['wait', 'wait=', 'wait=-1', 'wait=+1', 'wait=1.5', 'wait=1e3', 'wait=abc', 'wait="', 'x="open, wait=1', 'wait=0x10']) {
      expect(() => parsePrefer(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it('never throws anything but a typed error, on any input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (header) => {
        try {
          const p = parsePrefer(header);
          expect(p.wait === undefined || (Number.isInteger(p.wait) && p.wait >= 0)).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidArgumentError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseIdempotencyKey', () => {
  it('takes a bare key or a Structured Field string', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
    expect(parseIdempotencyKey(['8e03978e-40d5-43e8-bc93-6894a57f9324'])).toBe('8e03978e-40d5-43e8-bc93-6894a57f9324');
    expect(parseIdempotencyKey(['"abc"'])).toBe('abc');
    expect(parseIdempotencyKey(['"a \\"quoted\\" \\\\ key"'])).toBe('a "quoted" \\ key');
    expect(parseIdempotencyKey(['  spaced  '])).toBe('spaced');
  });

  it('refuses two headers, empty, overlong and non-ASCII keys', () => {
    for (const bad of [['a', 'b'], [''], ['""'], ['k'.repeat(256)], ['"unterminated'], ['"bad \\x escape"'], ['caf\u00e9'], ['tab\there']]) {
      expect(() => parseIdempotencyKey(bad), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
    expect(parseIdempotencyKey(['k'.repeat(255)])).toHaveLength(255);
  });
});

describe('parseIfNoneMatch', () => {
  it('reads our tags, weak or strong, one or many, and *', () => {
    expect(parseIfNoneMatch(undefined)).toBeUndefined();
    expect(parseIfNoneMatch('"12"')).toBe(12);
    expect(parseIfNoneMatch('W/"12"')).toBe(12);
    expect(parseIfNoneMatch('*')).toBe(ANY_TAG);
    expect(parseIfNoneMatch('"1", W/"2" ,"x", "3"')).toEqual([1, 2, 3]);
    expect(parseIfNoneMatch('garbage')).toEqual([]);
    expect(tagsMatch(ANY_TAG, 5)).toBe(true);
    expect(tagsMatch([1, 2], 2)).toBe(true);
    expect(tagsMatch([], 2)).toBe(false);
    expect(tagsMatch(3, 2)).toBe(false);
  });

  it('is bounded on hostile input', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => `"${i}"`).join(',');
    expect((parseIfNoneMatch(many) as number[]).length).toBe(32);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (header) => {
        const tags = parseIfNoneMatch(header);
        expect(tags === ANY_TAG || typeof tags === 'number' || Array.isArray(tags)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('If-None-Match compares entity tags exactly', () => {
  it('"00" is not the tag "0": a tag with a leading zero names no version', () => {
    expect(parseIfNoneMatch('"00"')).toEqual([]);
    expect(parseIfNoneMatch('W/"007", "7"')).toBe(7);
    expect(parseIfNoneMatch('"0"')).toBe(0);
  });
});
