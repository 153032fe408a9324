import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OverflowError } from '../../src/client/index.js';
import { type SseMessage, SseDecoder, SseParser } from '../../src/client/sse-parser.js';

// The client's parser against the spec's traps, and fuzzed against eventsource-parser (the parser
// of the `eventsource` npm client): random streams, cut into random byte chunks (a CR apart from
// its LF, a UTF-8 character in pieces, a BOM in pieces), must give the same events, ids and retries.

interface Parsed {
  events: { type: string; data: string; lastEventId: string }[];
  retries: number[];
  /** The last event id after the stream. */
  lastEventId: string;
}

const LIMITS = { maxLineBytes: 1 << 20, maxEventBytes: 1 << 22 };

function ours(chunks: readonly Uint8Array[]): Parsed {
  const out: Parsed = { events: [], retries: [], lastEventId: '' };
  const parser = new SseParser(
    {
      onEvent: (m: SseMessage) => {
        out.events.push({ ...m });
        out.lastEventId = m.lastEventId;
      },
      onDispatch: (id) => (out.lastEventId = id),
      onRetry: (ms) => out.retries.push(ms),
    },
    LIMITS,
  );
  const decoder = new SseDecoder(parser);
  for (const c of chunks) decoder.feed(c);
  return out;
}

/** eventsource-parser, fed the decoded text in the given pieces; its `id` persisted as a browser does. */
function reference(pieces: readonly string[]): Parsed {
  const out: Parsed = { events: [], retries: [], lastEventId: '' };
  let last = '';
  const parser = createParser({
    onId: (id) => (last = id),
    onEvent: (e) => {
      if (e.id !== undefined) last = e.id;
      out.events.push({ type: e.event ?? 'message', data: e.data, lastEventId: last });
    },
    onRetry: (ms) => out.retries.push(ms),
  });
  for (const p of pieces) parser.feed(p);
  out.lastEventId = last;
  return out;
}

const enc = new TextEncoder();
const decodeAll = (bytes: Uint8Array): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);

/** `bytes` cut at the given offsets. */
function cut(bytes: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const at = [...new Set(offsets.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const o of at) {
    out.push(bytes.subarray(prev, o));
    prev = o;
  }
  out.push(bytes.subarray(prev));
  return out;
}

/** Text cut at the given offsets (may split a surrogate pair: eventsource-parser takes strings). */
function cutText(text: string, offsets: readonly number[]): string[] {
  const at = [...new Set(offsets.map((o) => o % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const o of at) {
    out.push(text.slice(prev, o));
    prev = o;
  }
  out.push(text.slice(prev));
  return out;
}

const eol = fc.constantFrom('\n', '\r', '\r\n');
const valueChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'b', ' ', ':', '0', '7', '\0', '\t', 'é', '€', '😀', '\uFEFF', '\uFFFD') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 2 }) },
);
const value = fc.array(valueChar, { maxLength: 6 }).map((a) => a.join('').replace(/[\r\n]/g, ''));
const field = fc.constantFrom('data', 'event', 'id', 'retry', 'Data', ' data', 'dat', 'datas', 'x', '');
const line = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(field, fc.constantFrom(':', ': ', ':  ', ''), value).map(([f, sep, v]) => (sep === '' ? f : `${f}${sep}${v}`)) },
  { weight: 2, arbitrary: fc.constantFrom('retry: 100', 'retry:02000', 'retry: -1', 'retry: 1.5', 'retry: 1e3', 'retry: 5 ', 'retry', 'id', 'id:', 'data', 'data:', 'event:') },
  { weight: 2, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: value.map((v) => `:${v}`) },
);
/** A stream: lines with random line ends, maybe a BOM (or two) first. */
const stream = fc
  .tuple(fc.constantFrom('', '', '\uFEFF', '\uFEFF\uFEFF'), fc.array(fc.tuple(line, eol), { maxLength: 30 }))
  .map(([bom, lines]) => bom + lines.map(([l, e]) => l + e).join(''));

describe('SseParser (spec traps)', () => {
  const parse = (...chunks: string[]): Parsed => ours(chunks.map((c) => enc.encode(c)));

  it('strips one BOM only, even cut in pieces', () => {
    const bom = enc.encode('\uFEFFdata: a\n\n');
    expect(ours([bom.subarray(0, 1), bom.subarray(1, 2), bom.subarray(2)]).events).toEqual([{ type: 'message', data: 'a', lastEventId: '' }]);
    expect(parse('\uFEFF\uFEFFdata: a\n\ndata: b\n\n').events.map((e) => e.data)).toEqual(['b']);
  });

  it('takes CR, LF and CRLF as line ends, and a CRLF cut between chunks as one', () => {
    expect(parse('data: a\r\rdata: b\n\ndata: c\r\n\r\n').events.map((e) => e.data)).toEqual(['a', 'b', 'c']);
    expect(parse('data: a\r', '\ndata: b\r', '\n\r', '\n').events.map((e) => e.data)).toEqual(['a\nb']);
    expect(parse('data: a\r', '\r').events.map((e) => e.data)).toEqual(['a']);
  });

  it('joins data lines, dispatches empty data, and never an event without data', () => {
    expect(parse('data: a\ndata:b\ndata\n\n').events).toEqual([{ type: 'message', data: 'a\nb\n', lastEventId: '' }]);
    expect(parse('data\n\n').events).toEqual([{ type: 'message', data: '', lastEventId: '' }]);
    const p = parse('id: 7\nevent: x\n\n');
    expect(p.events).toEqual([]);
    expect(p.lastEventId).toBe('7');
  });

  it('removes one space after the colon, compares names literally, ignores comments', () => {
    expect(parse('data:  two\nData: no\n data: no\n: comment\n\n').events).toEqual([{ type: 'message', data: ' two', lastEventId: '' }]);
  });

  it('ignores an id with NUL, resets it with an empty id, keeps it across events', () => {
    expect(parse('id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n').events.map((e) => e.lastEventId)).toEqual(['1', '1', '1', '']);
  });

  it('takes retry from ASCII digits alone', () => {
    expect(parse('retry: 02000\nretry: -1\nretry: 1.5\nretry: 5 \nretry: ٣\nretry: 1e3\nretry:7\n').retries).toEqual([2000, 7]);
  });

  it('discards an unterminated last event, and the event type resets after each dispatch', () => {
    expect(parse('event: e\ndata: a\n\ndata: b\n\ndata: c').events).toEqual([
      { type: 'e', data: 'a', lastEventId: '' },
      { type: 'message', data: 'b', lastEventId: '' },
    ]);
  });

  it('throws OverflowError past maxLineBytes, across chunks, and past maxEventBytes', () => {
    const small = new SseParser({ onEvent: () => undefined }, { maxLineBytes: 12, maxEventBytes: 15 });
    small.feed('data: 123456');
    expect(() => small.feed('7\n')).toThrow(OverflowError);
    expect(() => small.feed('data: a\n')).toThrow(OverflowError); // broken until reset
    small.reset();
    small.feed('data: 1234\ndata: 1234\n'); // 9 code units of data
    expect(() => small.feed('data: 123456\n')).toThrow(/maxEventBytes \(15\)/); // 16
  });
});

describe('SseParser fuzzed against eventsource-parser', () => {
  it('gives the same events, last event ids and retries for any stream in any chunks', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 12 }), (text, byteCuts, textCuts) => {
        const bytes = enc.encode(text);
        const decoded = decodeAll(bytes); // lone surrogates became U+FFFD, as for our parser
        const expected = reference(cutText(decoded, textCuts));
        expect(ours(cut(bytes, byteCuts))).toEqual(expected);
        expect(ours([bytes])).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees byte by byte (every CR apart from its LF, every character in pieces)', () => {
    fc.assert(
      fc.property(stream, (text) => {
        const bytes = enc.encode(text);
        const oneByOne = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
        expect(ours(oneByOne)).toEqual(reference([decodeAll(bytes)]));
      }),
      { numRuns: 300 },
    );
  });
});
