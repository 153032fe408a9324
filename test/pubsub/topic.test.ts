import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, matchTokens, parsePattern, parseTopic, patternsOverlap, targetOverlaps, TopicIndex } from '../../src/index.js';

describe('topic and pattern validation', () => {
  it('accepts ordinary names, including __proto__ and constructor', () => {
    expect(parseTopic('chat.lobby')).toEqual(['chat', 'lobby']);
    expect(parseTopic('__proto__')).toEqual(['__proto__']);
    expect(parseTopic('constructor.toString')).toEqual(['constructor', 'toString']);
    expect(parsePattern('a.*.>')).toEqual(['a', '*', '>']);
  });

  it.each([
    ['', /it is empty/],
    ['a..b', /empty token/],
    ['.a', /empty token/],
    ['a.', /empty token/],
    ['a.*', /wildcards/],
    ['a b', /letters, digits/],
    ['a\r\nb', /letters, digits/],
    ['x'.repeat(257), /longer than 256/],
    [Array(33).fill('a').join('.'), /more than 32 tokens/],
  ])('rejects topic %j', (topic, why) => {
    expect(() => parseTopic(topic)).toThrow(InvalidArgumentError);
    expect(() => parseTopic(topic)).toThrow(why);
  });

  it('rejects non-strings with a typed error', () => {
    for (const bad of [undefined, null, 5, {}, ['a']]) expect(() => parseTopic(bad)).toThrow(/expected a string/);
  });

  it.each([
    ['a.>.b', /may only be the last/],
    ['a.**', /letters, digits/],
    ['_INBOX.>', /private reply inboxes/],
    ['', /empty/],
  ])('rejects pattern %j', (pattern, why) => {
    expect(() => parsePattern(pattern)).toThrow(why);
  });
});

describe('matchTokens (the reference matcher)', () => {
  it('follows NATS: * is one token, > is one or more trailing tokens', () => {
    const m = (p: string, t: string): boolean => matchTokens(p.split('.'), t.split('.'));
    expect(m('a.*', 'a.b')).toBe(true);
    expect(m('a.*', 'a.b.c')).toBe(false);
    expect(m('a.*', 'a')).toBe(false);
    expect(m('a.>', 'a.b.c')).toBe(true);
    expect(m('a.>', 'a')).toBe(false);
    expect(m('>', 'x')).toBe(true);
    expect(m('*.b', 'a.b')).toBe(true);
    expect(m('a.b', 'a.b')).toBe(true);
    expect(m('a.b', 'a.c')).toBe(false);
  });
});

const token = fc.constantFrom('a', 'b', 'c', '__proto__', 'x1');
const topicArb = fc.array(token, { minLength: 1, maxLength: 5 });
const patternArb = fc
  .array(fc.oneof(token, fc.constant('*')), { minLength: 1, maxLength: 5 })
  .chain((tokens) => fc.boolean().map((rest) => (rest ? [...tokens.slice(0, -1), '>'] : tokens)));

describe('TopicIndex', () => {
  test.prop([fc.array(patternArb, { maxLength: 40 }), fc.array(topicArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 20 })], { numRuns: 300 })(
    'matches exactly what the naive matcher matches, through adds and removes',
    (patterns, topics, removals) => {
      const index = new TopicIndex<number>(8);
      const live = new Map<number, string[]>();
      patterns.forEach((p, i) => {
        index.add(p, i);
        live.set(i, p);
      });
      const check = (): void => {
        for (const t of topics) {
          const want = [...live].filter(([, p]) => matchTokens(p, t)).map(([i]) => i).sort((a, b) => a - b);
          expect([...index.match(t.join('.'))].sort((a, b) => a - b)).toEqual(want);
        }
        expect(index.size).toBe(live.size);
      };
      check();
      for (const r of removals) {
        if (live.size === 0) break;
        const id = [...live.keys()][r % live.size]!;
        expect(index.remove(live.get(id)!, id)).toBe(true);
        expect(index.remove(live.get(id)!, id)).toBe(false);
        live.delete(id);
        check();
      }
    },
  );

  it('prunes empty branches on removal', () => {
    const index = new TopicIndex<string>();
    index.add(['a', 'b', 'c'], 'x');
    index.add(['a', '*', '>'], 'y');
    index.remove(['a', 'b', 'c'], 'x');
    index.remove(['a', '*', '>'], 'y');
    expect(index.size).toBe(0);
    expect(index.match('a.b.c')).toEqual([]);
  });
});

describe('patternsOverlap and targetOverlaps: can a pattern reach a protected topic?', () => {
  it('catches every wildcard route into admin.>', () => {
    for (const p of ['admin.*', '>', '*.secret', 'admin.>', '*.*', '*.>', 'admin.secret']) expect(patternsOverlap(p, 'admin.>'), p).toBe(true);
    for (const p of ['chat.*', 'admin', '*', 'chat.>', 'x.admin.y']) expect(patternsOverlap(p, 'admin.>'), p).toBe(false);
    expect(targetOverlaps({ topics: ['chat', 'admin.keys'] }, 'admin.>')).toBe(true);
    expect(targetOverlaps({ topics: ['chat', 'admin'] }, 'admin.>')).toBe(false);
    expect(targetOverlaps({ pattern: '*.secret' }, '*.secret')).toBe(true);
  });

  it('property: agrees with matching every topic of a small alphabet', () => {
    const token = fc.constantFrom('a', 'b', '*');
    const pattern = fc
      .tuple(fc.array(token, { minLength: 0, maxLength: 3 }), fc.boolean())
      .filter(([t, tail]) => t.length > 0 || tail)
      .map(([t, tail]) => [...t, ...(tail ? ['>'] : [])].join('.'));
    const topics: string[] = [];
    const grow = (prefix: string[]): void => {
      if (prefix.length > 0) topics.push(prefix.join('.'));
      if (prefix.length < 5) for (const t of ['a', 'b', 'c']) grow([...prefix, t]);
    };
    grow([]);
    fc.assert(
      fc.property(pattern, pattern, (a, b) => {
        const ta = parsePattern(a);
        const tb = parsePattern(b);
        const both = topics.some((t) => matchTokens(ta, t.split('.')) && matchTokens(tb, t.split('.')));
        expect(patternsOverlap(a, b)).toBe(both);
      }),
      { numRuns: 300 },
    );
  });
});
