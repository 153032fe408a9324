import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, Message, MessageLog } from '../../src/index.js';

const msg = (seq: number, size = 10, time = 0): Message => new Message(`e-${seq.toString(36)}`, seq, 't', seq, undefined, size, time);

describe('MessageLog', () => {
  it('keeps at most maxCount, trimming the oldest, and reports the gap', () => {
    const log = new MessageLog({ maxCount: 3 });
    for (let i = 1; i <= 5; i++) log.append(msg(i * 2), 0);
    expect(log.size).toBe(3);
    const r = log.after(2, 100, 0);
    expect(r.gap).toBe(true);
    expect(r.messages.map((m) => m._seq)).toEqual([6, 8, 10]);
    expect(log.after(6, 100, 0)).toMatchObject({ gap: false });
    expect(log.after(5, 100, 0).gap).toBe(false); // nothing after 5 was trimmed
    expect(log.after(4, 100, 0).gap).toBe(false); // 4 itself was trimmed, but nothing after it
    expect(log.after(3, 100, 0).gap).toBe(true);
  });

  it('keeps at most maxBytes', () => {
    const log = new MessageLog({ maxBytes: 25 });
    log.append(msg(1, 10), 0);
    log.append(msg(2, 10), 0);
    log.append(msg(3, 10), 0);
    expect(log.size).toBe(2);
    expect(log.bytes).toBe(20);
    log.append(msg(4, 100), 0); // larger than the whole bound: not kept, counted as trimmed
    expect(log.size).toBe(2);
    expect(log.after(3, 10, 0)).toMatchObject({ gap: true, messages: [] });
  });

  it('a message dropped on entry stays a gap when an older one is trimmed later', () => {
    // By its own bounds: 2 is too large to keep, then 3 pushes 1 out by count.
    const log = new MessageLog({ maxCount: 1, maxBytes: 10 });
    log.append(msg(1, 5), 0);
    log.append(msg(2, 100), 0);
    log.append(msg(3, 5), 0);
    expect(log.after(1, 10, 0)).toMatchObject({ gap: true, messages: [{ _seq: 3 }] });
    expect(log.trimmedSeq).toBe(2);
    // By a bound across logs (dropOldest).
    const other = new MessageLog({ maxBytes: 10 });
    other.append(msg(1, 5), 0);
    other.append(msg(2, 100), 0);
    other.dropOldest();
    expect(other.after(1, 10, 0)).toMatchObject({ gap: true, messages: [] });
    expect(other.trimmedSeq).toBe(2);
  });

  it('drops messages older than maxAgeMs', () => {
    const log = new MessageLog({ maxAgeMs: 100 });
    log.append(msg(1, 1, 0), 0);
    log.append(msg(2, 1, 50), 50);
    expect(log.after(0, 10, 99).messages.length).toBe(2);
    expect(log.after(0, 10, 100).messages.map((m) => m._seq)).toEqual([2]);
    expect(log.expire(150)).toBe(true);
    expect(log.trimmedSeq).toBe(2);
  });

  it('pages with a limit and says when more follow', () => {
    const log = new MessageLog();
    for (let i = 1; i <= 10; i++) log.append(msg(i), 0);
    const page = log.after(0, 4, 0);
    expect(page.messages.map((m) => m._seq)).toEqual([1, 2, 3, 4]);
    expect(page.more).toBe(true);
    expect(log.after(8, 4, 0)).toMatchObject({ more: false });
  });

  it('stays correct across many trims (compaction)', () => {
    const log = new MessageLog({ maxCount: 10 });
    for (let i = 1; i <= 5000; i++) log.append(msg(i), 0);
    expect(log.after(0, 100, 0).messages.map((m) => m._seq)).toEqual([4991, 4992, 4993, 4994, 4995, 4996, 4997, 4998, 4999, 5000]);
  });

  it('maxCount 0 keeps nothing', () => {
    const log = new MessageLog({ maxCount: 0 });
    log.append(msg(1), 0);
    expect(log.size).toBe(0);
    expect(log.after(0, 10, 0).gap).toBe(true);
  });

  it('dropOldest trims the oldest message as the bounds do, and reads after it report the gap', () => {
    const log = new MessageLog();
    expect(log.dropOldest()).toBeUndefined();
    for (let i = 1; i <= 3; i++) expect(log.append(msg(i), 0)).toBe(true);
    expect(log.oldest?._seq).toBe(1);
    expect(log.dropOldest()?._seq).toBe(1);
    expect(log).toMatchObject({ size: 2, bytes: 20, trimmedSeq: 1 });
    expect(log.oldest?._seq).toBe(2);
    expect(log.after(0, 10, 0)).toMatchObject({ gap: true, messages: [{ _seq: 2 }, { _seq: 3 }] });
    expect(log.after(1, 10, 0).gap).toBe(false);
    log.dropOldest();
    log.dropOldest();
    expect(log).toMatchObject({ size: 0, bytes: 0, trimmedSeq: 3, oldest: undefined });
  });

  it('append says whether the message was kept', () => {
    const log = new MessageLog({ maxBytes: 15 });
    expect(log.append(msg(1, 10), 0)).toBe(true);
    expect(log.append(msg(2, 16), 0)).toBe(false);
  });

  it('validates its limits', () => {
    expect(() => new MessageLog({ maxCount: -1 })).toThrow(InvalidArgumentError);
    expect(() => new MessageLog({ maxAgeMs: 0 })).toThrow(/history.maxAgeMs/);
    expect(() => new MessageLog({ maxBytes: 1.5 })).toThrow(InvalidArgumentError);
  });
});
