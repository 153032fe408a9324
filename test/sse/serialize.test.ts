import { fc, test } from '@fast-check/vitest';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { describe, expect, it } from 'vitest';
import { formatEvent, InvalidArgumentError, serializeComment, serializeEvent, type SseEvent } from '../../src/index.js';

/** Parses bytes with the parser inside the `eventsource` client, fed in the given chunk sizes. */
function parse(bytes: Buffer, cuts: number[] = []): { events: EventSourceMessage[]; retries: number[]; comments: string[] } {
  const events: EventSourceMessage[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e), onRetry: (r) => retries.push(r), onComment: (c) => comments.push(c) });
  const text = bytes.toString('utf8');
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    if (cut <= at || cut >= text.length) continue;
    parser.feed(text.slice(at, cut));
    at = cut;
  }
  parser.feed(text.slice(at));
  return { events, retries, comments };
}

describe('SSE serializer', () => {
  it('writes fields in order, LF only, a space after each colon, a blank line at the end', () => {
    expect(formatEvent({ id: '7', event: 'tick', data: 'a\r\nb\rc\nd', retry: 1500 })).toBe(
      'retry: 1500\nevent: tick\nid: 7\ndata: a\ndata: b\ndata: c\ndata: d\n\n',
    );
    expect(formatEvent({ data: '' })).toBe('data: \n\n');
    expect(formatEvent({ data: ' leading' })).toBe('data:  leading\n\n');
    expect(formatEvent({ data: { n: 1 } })).toBe('data: {"n":1}\n\n');
    expect(formatEvent({ id: 'checkpoint' })).toBe('id: checkpoint\n\n');
    expect(serializeComment('a\nb').toString()).toBe(': a\n: b\n');
    expect(serializeComment().toString()).toBe(':\n');
    expect(serializeEvent({ data: 'x' })[0]).not.toBe(0xef); // no BOM
  });

  it.each<[string, SseEvent, RegExp]>([
    ['CR in event', { event: 'a\rdata: x', data: '1' }, /`event` must not contain CR or LF/],
    ['LF in event', { event: 'a\n', data: '1' }, /`event` must not contain CR or LF/],
    ['LF in id', { id: '1\nevent: spoof', data: '1' }, /`id` must not contain CR or LF/],
    ['CR in id', { id: '1\r', data: '1' }, /`id` must not contain CR or LF/],
    ['NUL in id', { id: 'a\0b', data: '1' }, /`id` must not contain NUL/],
    ['negative retry', { retry: -1, data: '1' }, /retry/],
    ['fractional retry', { retry: 1.5 }, /retry/],
    ['lone surrogate', { data: 'x\uD800y' }, /lone surrogate/],
    ['nothing at all', {}, /at least one/],
    ['a function as data', { data: () => 1 }, /string or a JSON value/],
  ])('refuses %s, writing nothing', (_name, event, why) => {
    expect(() => serializeEvent(event)).toThrow(InvalidArgumentError);
    expect(() => serializeEvent(event)).toThrow(why);
  });

  it('refuses a non-string id or event', () => {
    expect(() => serializeEvent({ id: 5 as unknown as string, data: 'x' })).toThrow(/`id` to be a string/);
    expect(() => serializeEvent({ event: null as unknown as string, data: 'x' })).toThrow(/`event` to be a string/);
  });

  const nasty = fc.oneof(
    fc.string({ unit: 'grapheme' }),
    fc.string({ unit: fc.constantFrom('a', ' ', '\r', '\n', '\r\n', ':', '\0', '\uFEFF', 'é', '😀', '\t', 'data: ', 'id: ') }),
    fc.string({ unit: 'binary' }),
  );

  test.prop([nasty, fc.option(nasty, { nil: undefined }), fc.option(nasty, { nil: undefined }), fc.option(fc.integer({ min: -5, max: 1e7 }), { nil: undefined }), fc.array(fc.nat(), { maxLength: 6 })], {
    numRuns: 400,
  })('any data, event, id and retry round-trips exactly through a real parser, or is refused', (data, event, id, retry, cuts) => {
    const input: SseEvent = { data, ...(event !== undefined ? { event } : {}), ...(id !== undefined ? { id } : {}), ...(retry !== undefined ? { retry } : {}) };
    let bytes: Buffer;
    try {
      bytes = serializeEvent(input);
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidArgumentError);
      // Refused only for a reason the spec gives.
      const bad =
        !data.isWellFormed() ||
        (event !== undefined && (/[\r\n]/.test(event) || !event.isWellFormed())) ||
        (id !== undefined && (/[\r\n\0]/.test(id) || !id.isWellFormed())) ||
        (retry !== undefined && retry < 0);
      expect(bad).toBe(true);
      return;
    }
    const parsed = parse(bytes, cuts);
    expect(parsed.events).toHaveLength(1);
    const e = parsed.events[0]!;
    expect(e.data).toBe(data.replace(/\r\n|\r/g, '\n'));
    // eventsource-parser reports the empty event type as undefined, like a browser's "message".
    expect(e.event ?? '').toBe(event ?? '');
    if (id !== undefined) expect(e.id).toBe(id);
    expect(parsed.retries).toEqual(retry !== undefined ? [retry] : []);
  });

  test.prop([fc.array(fc.record({ data: fc.string(), id: fc.string().filter((s) => !/[\r\n\0]/.test(s)) }), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 })], {
    numRuns: 200,
  })('a sequence of events parses back as the same sequence, however the bytes are cut', (events, cuts) => {
    const bytes = Buffer.concat(events.map((e) => serializeEvent(e)));
    const parsed = parse(bytes, cuts);
    expect(parsed.events.map((e) => [e.id, e.data])).toEqual(events.map((e) => [e.id, e.data.replace(/\r\n|\r/g, '\n')]));
  });

  test.prop([fc.string()])('a comment never dispatches an event', (text) => {
    const parsed = parse(serializeComment(text));
    expect(parsed.events).toEqual([]);
  });
});
