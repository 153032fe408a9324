import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/index.js';
import { decodeData, decodeHeaders, encodeData, encodeHeaders, parseFeed, seqOfStreamId } from '../../src/redis/codec.js';

describe('Redis codec', () => {
  test.prop([fc.string({ unit: 'binary' })])('keeps any string verbatim', (s) => {
    expect(decodeData(encodeData(s))).toBe(s);
  });

  // Values a broker lets through (no `__proto__` key, at most its maxDataDepth deep): those read back from Redis.
  test.prop([fc.jsonValue({ maxDepth: 20 }).filter((v) => !JSON.stringify(v).includes('"__proto__"'))])('keeps JSON values (as JSON keeps them)', (v) => {
    expect(decodeData(encodeData(v))).toEqual(JSON.parse(JSON.stringify(v)));
  });

  test.prop([fc.uint8Array()])('keeps bytes', (bytes) => {
    expect([...(decodeData(encodeData(bytes)) as Uint8Array)]).toEqual([...bytes]);
  });

  it('refuses values without a JSON form', () => {
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    for (const v of [() => 1, cycle, 1n, Symbol('s')]) expect(() => encodeData(v)).toThrow(/JSON/);
  });

  // A `__proto__` name is refused by design (see the ProtocolError test below): not in the domain here.
  test.prop([fc.dictionary(fc.string().filter((k) => k !== '__proto__'), fc.string())])('keeps headers, as frozen objects without a prototype', (h) => {
    const back = decodeHeaders(encodeHeaders(h))!;
    expect({ ...back }).toEqual(h);
    expect(Object.isFrozen(back)).toBe(true);
    expect(Object.getPrototypeOf(back)).toBe(null);
    expect(decodeHeaders(encodeHeaders(undefined))).toBeUndefined();
  });

  test.prop([fc.stringMatching(/^[0-9a-z]{8}$/), fc.maxSafeNat(), fc.stringMatching(/^[A-Za-z0-9_:.-]{1,40}$/), fc.string({ unit: 'binary' })])(
    'parses feed notifications whose data holds newlines',
    (epoch, seq, topic, data) => {
      const headers = encodeHeaders({ a: 'b\nc' });
      expect(parseFeed(`${epoch}\n${seq}\n${topic}\n${headers}\n${encodeData(data)}`)).toEqual({ epoch, seq, topic, headers, data: encodeData(data) });
    },
  );

  it('ignores malformed notifications', () => {
    for (const p of ['', 'e', 'e\n1', 'e\nx\nt\n\nsd', '\n1\nt\n\nsd', 'E\n1\nt\n\nsd', 'e\n-1\nt\n\nsd', 'e\n1e3\nt\n\nsd', 'e\n1\n\n\nsd', 'e\n99999999999999999\nt\n\nsd']) {
      expect(parseFeed(p)).toBeUndefined();
    }
  });

  it('refuses records read back that another process could have written wrong, with a ProtocolError', () => {
    const bad = ['zx', '', `j${'['.repeat(1001)}${']'.repeat(1001)}`, 'j{"a":{"__proto__":{"polluted":1}}}', 'j{"a":', 'j'];
    for (const d of bad) expect(() => decodeData(d)).toThrow(ProtocolError);
    for (const h of ['[1]', '1', '"x"', 'null', '{"a":1}', '{"a":{"b":"c"}}', '{"__proto__":"x"}', '{']) expect(() => decodeHeaders(h)).toThrow(ProtocolError);
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('reads back JSON as deep as any broker accepts (maxDataDepth up to 1000): the publisher\'s depth policy is not applied again', () => {
    expect(decodeData(`j${'['.repeat(65)}${']'.repeat(65)}`)).toBeInstanceOf(Array);
    expect(decodeData(`j${'['.repeat(1000)}${']'.repeat(1000)}`)).toBeInstanceOf(Array);
    expect(() => decodeData(`j${'['.repeat(1001)}${']'.repeat(1001)}`)).toThrow(/deeper than 1000/);
    expect(() => decodeData(`j${'['.repeat(500)}{"__proto__":{"polluted":1}}${']'.repeat(500)}`)).toThrow(/__proto__/);
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  test.prop([fc.integer({ min: 0, max: 2 ** 53 - 1 })])('maps stream ids back to sequence numbers', (seq) => {
    expect(seqOfStreamId(`${Math.floor(seq / 1024)}-${seq % 1024}`)).toBe(seq);
  });
});
