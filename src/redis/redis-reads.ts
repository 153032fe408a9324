/**
 * Reads from Redis: the messages after a cursor on the topics a read names, from the streams,
 * merged in sequence order. On one server a read of named topics is one script (`READ_ONE`);
 * a pattern read, and any read on a cluster, first reads the meta hash (the epoch, the head,
 * the mark of topics dropped whole, and the topic index for patterns), then the streams (one
 * script per 256 keys, or per key on a cluster).
 *
 * What comes back is untrusted (another version, a bug, a hand-written `XADD` may have written
 * it): an entry that does not decode keeps its place, so the cursor moves past it, but is not
 * returned, and the read says `gap: true`.
 *
 * The backend answers what it can from its local logs; everything else comes here. It is its
 * own piece because it only reads: it changes nothing in Redis nor in the backend's state, other
 * than through the two hooks it is given.
 *
 * @module
 * @internal
 */
import type { Clock } from '../core/clock.js';
import { type BackendRead, type Cursor, Message, matchTokens } from '../pubsub/index.js';
import { aheadError, formatId, newEpoch } from '../pubsub/message.js';
import { decodeData, decodeHeaders, seqOfStreamId } from './codec.js';
import type { Scripted } from './connection.js';
import type { RedisKeys } from './redis-options.js';

/** A stream entry as XRANGE gives it: the id and the field/value list. */
type StreamEntry = [string, string[]];

/** What a {@link RedisReader} tells its backend. @internal */
export interface ReaderHooks {
  /** A record that does not decode: count it and report it (once per record). */
  badRecord(epoch: string, seq: number, error: unknown): void;
  /** Redis's epoch and head, as a read saw them. */
  see(epoch: string, seq: number): void;
}

/** Reads after a cursor from Redis's streams. @internal */
export class RedisReader {
  readonly #client: Scripted;
  readonly #keys: RedisKeys;
  readonly #cluster: boolean;
  readonly #maxAge: number;
  readonly #clock: Clock;
  readonly #hooks: ReaderHooks;

  constructor(client: Scripted, keys: RedisKeys, settings: { readonly cluster: boolean; readonly maxAge: number; readonly clock: Clock }, hooks: ReaderHooks) {
    this.#client = client;
    this.#keys = keys;
    this.#cluster = settings.cluster;
    this.#maxAge = settings.maxAge;
    this.#clock = settings.clock;
    this.#hooks = hooks;
  }

  /**
   * Messages after `cursor` on `topics`, as `Backend.read` answers.
   * @throws InvalidCursorError (`PB_ERR_INVALID_CURSOR`) for a cursor of this epoch past the head.
   */
  async read(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead> {
    const exact = exactTopics(topics);
    const cEpoch = cursor === null ? '' : cursor.epoch;
    const cSeq = cursor === null ? '0' : String(cursor.seq);
    let epoch: string;
    let top: number;
    let gapAll: boolean;
    let after: number;
    let streams: { topic: string; gap: boolean; entries: StreamEntry[] }[] = [];
    if (!this.#cluster && exact !== undefined) {
      const keys = exact.map((t) => this.#keys.stream(t));
      const reply = await this.#client.pbReadOne(2 + keys.length, this.#keys.meta, this.#keys.index, ...keys, newEpoch(), cEpoch, cSeq, limit, this.#maxAge, '', ...exact);
      if (reply[0] === 'ahead') throw aheadError(cursor!);
      epoch = reply[0] as string;
      top = Number(reply[1]);
      gapAll = Number(reply[2]) === 1;
      for (let i = 0; i < exact.length; i++) {
        streams.push({ topic: exact[i]!, gap: Number(reply[3 + 2 * i]) === 1, entries: reply[4 + 2 * i] as unknown as StreamEntry[] });
      }
      after = cursor !== null && cursor.epoch === epoch ? cursor.seq : -1;
    } else {
      const meta = await this.#client.pbReadMeta(2, this.#keys.meta, this.#keys.index, newEpoch(), cEpoch, cSeq, exact === undefined ? '1' : '0');
      epoch = meta[0] as string;
      top = Number(meta[1]);
      const dropped = Number(meta[2]);
      gapAll = false;
      after = -1;
      if (cursor !== null) {
        if (cursor.epoch !== epoch) gapAll = true;
        else if (cursor.seq > top) throw aheadError(cursor);
        else {
          after = cursor.seq;
          if (after < dropped) gapAll = true;
        }
      }
      let names = exact;
      if (names === undefined) {
        const patterns = topics as readonly (readonly string[])[];
        names = (meta[3] as string[]).filter((t) => patterns.some((p) => matchTokens(p, t.split('.'))));
      }
      streams = await this.#readStreams(names, after, top, limit);
    }
    // Merge by seq and keep the `limit` oldest. An entry that does not decode keeps its place
    // (so the cursor moves past it) but is not returned: the read says gap instead.
    let entries: (Message | number)[] = [];
    let more = false;
    let gap = gapAll;
    const now = this.#clock.now();
    for (const s of streams) {
      gap ||= s.gap;
      if (s.entries.length > limit) more = true;
      const n = Math.min(limit, s.entries.length);
      for (let i = 0; i < n; i++) entries.push(this.#fromEntry(epoch, s.topic, s.entries[i]!, now));
    }
    const seqOf = (e: Message | number): number => (typeof e === 'number' ? e : e._seq);
    if (streams.length > 1) entries.sort((a, b) => seqOf(a) - seqOf(b));
    if (entries.length > limit) {
      entries.length = limit;
      more = true;
    }
    const lastEntry = entries[entries.length - 1];
    if (entries.some((e) => typeof e === 'number')) {
      gap = true;
      entries = entries.filter((e) => typeof e !== 'number');
    }
    const messages = entries as Message[];
    this.#hooks.see(epoch, top);
    const next = lastEntry !== undefined ? formatId(epoch, seqOf(lastEntry)) : formatId(epoch, more ? Math.max(after, 0) : top);
    return { messages, gap, more, cursor: next };
  }

  /** Reads streams after `after` up to `last`: one script on one server, one per key on a cluster. */
  async #readStreams(names: readonly string[], after: number, last: number, limit: number): Promise<{ topic: string; gap: boolean; entries: StreamEntry[] }[]> {
    if (names.length === 0) return [];
    const run = async (chunk: readonly string[]): Promise<{ topic: string; gap: boolean; entries: StreamEntry[] }[]> => {
      const keys = chunk.map((t) => this.#keys.stream(t));
      const reply = await this.#client.pbReadStreams(keys.length, ...keys, after, last, limit, this.#maxAge, ...chunk);
      return chunk.map((topic, i) => ({ topic, gap: Number(reply[2 * i]) === 1, entries: reply[2 * i + 1] as unknown as StreamEntry[] }));
    };
    const chunks: string[][] = [];
    const size = this.#cluster ? 1 : 256;
    for (let i = 0; i < names.length; i += size) chunks.push(names.slice(i, i + size));
    return (await Promise.all(chunks.map(run))).flat();
  }

  /** A stream entry as a message, or its sequence number when it does not decode (counted). */
  #fromEntry(epoch: string, topic: string, entry: StreamEntry, now: number): Message | number {
    const seq = seqOfStreamId(entry[0]);
    const fields = entry[1];
    let data = '';
    let headers: string | undefined;
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === 'd') data = fields[i + 1]!;
      else if (fields[i] === 'h') headers = fields[i + 1];
    }
    try {
      return new Message(formatId(epoch, seq), seq, topic, decodeData(data), decodeHeaders(headers), data.length - 1, now);
    } catch (error) {
      this.#hooks.badRecord(epoch, seq, error);
      return seq;
    }
  }
}

/** Exact topic names when `topics` names topics (no wildcard), else `undefined`. */
function exactTopics(topics: string | readonly (readonly string[])[]): string[] | undefined {
  if (typeof topics === 'string') return [topics];
  if (topics.some((p) => p.includes('*') || p.includes('>'))) return undefined;
  return [...new Set(topics.map((p) => p.join('.')))];
}

