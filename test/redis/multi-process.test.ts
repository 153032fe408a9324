/**
 * Three demo server processes (`node demo/server.js` with PATCHBAY_REDIS_URL) on one
 * redis-server of the test's own: cross-process wake-ups and replay, and the restart fault
 * (redis-server killed by PID mid-stream and started again), counting every message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCursor } from '../../src/index.js';
import { type DemoProcess, startDemos, stopDemo } from './demo-process.js';
import type { EventSourceMessage } from 'eventsource-parser';
import { eventually, readSse } from '../helpers.js';
import { REDIS_BINARY, startRedis, type TestRedis, uniquePrefix } from './redis-server.js';

const HOLD_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(REDIS_BINARY === undefined)('three demo processes on one Redis', () => {
  let redis: TestRedis;
  const demos: DemoProcess[] = [];
  beforeAll(async () => {
    // appendfsync always: every publish Redis acknowledged survives the kill.
    redis = await startRedis({ persist: true });
    const prefix = uniquePrefix('demo');
    demos.push(...(await startDemos(3, redis.url, prefix, { LP_TIMEOUT_MS: String(HOLD_MS) })));
  }, 120_000);
  afterAll(async () => {
    await Promise.all(demos.map(stopDemo));
    await redis?.dispose();
  });

  const publish = async (base: string, topic: string, body: unknown): Promise<Response> =>
    fetch(`${base}/pub/${topic}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('wakes a long poll held by one process with a publish on another, and replays SSE on a third', async () => {
    const [p1, p2, p3] = demos as [DemoProcess, DemoProcess, DemoProcess];
    // Held on P2 (no cursor: the next message), published on P1. The hold is short (1 s): on a
    // busy machine the publish may come after it, so try again then.
    for (let attempt = 0; ; attempt++) {
      const held = fetch(`${p2.base}/lp/wake`);
      for (let t = 0; t < 100; t++) {
        const stats = (await (await fetch(`${p2.base}/stats`)).json()) as { longPoll: { parked: number } };
        if (stats.longPoll.parked > 0) break;
        await sleep(5);
      }
      const id = ((await (await publish(p1.base, 'wake', { attempt })).json()) as { id: string }).id;
      const res = await held;
      if (res.status === 204 && attempt < 5) continue;
      expect(res.status).toBe(200);
      const messages = ((await res.json()) as { messages: { id: string }[] }).messages.map((m) => m.id);
      expect(messages[messages.length - 1]).toBe(id);
      break;
    }
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(((await (await publish(p1.base, 'replay', i)).json()) as { id: string }).id);
    const stream = await readSse(`${p3.base}/sse/replay`, { headers: { 'last-event-id': ids[0]! } });
    const events = stream.events;
    try {
      expect(stream.res.status).toBe(200);
      await eventually(() => events.length === 2, 'the replay on P3');
      const live = ((await (await publish(p2.base, 'replay', 3)).json()) as { id: string }).id;
      await eventually(() => events.length === 3, 'the live event on P3');
      expect(events.map((e) => e.id)).toEqual([ids[1], ids[2], live]);
      expect(events.map((e) => e.data)).toEqual(['1', '2', '3']);
    } finally {
      await stream.close();
    }
  });

  it('counts every message when redis-server is killed and started again mid-stream', async () => {
    const [p1, p2, p3] = demos as [DemoProcess, DemoProcess, DemoProcess];
    const N = 150;
    const topic = 'count';
    const acked: { i: number; id: string }[] = [];
    /** Values whose publish failed with "may or may not": they may show up (once more). */
    const unsure = new Set<number>();
    const statuses: number[] = [];

    // SSE on P2, moving to P1 with Last-Event-ID half way.
    const sse: EventSourceMessage[] = [];
    let sseStop = new AbortController();
    /** Times the server ended a stream (an EventSource would reconnect with Last-Event-ID: so do we). */
    const sseEnds: string[] = [];
    const follow = async (base: string, stop: AbortController, lastEventId?: string): Promise<number> => {
      const stream = await readSse(`${base}/sse/${topic}`, { into: sse, signal: stop.signal, headers: lastEventId ? { 'last-event-id': lastEventId } : {} });
      void stream.ended.then(async () => {
        if (stop.signal.aborted) return;
        sseEnds.push(`${base} after ${sse.length} events`);
        await sleep(100);
        if (!stop.signal.aborted) await follow(base, stop, sse[sse.length - 1]?.id ?? lastEventId).catch(() => undefined);
      });
      return stream.res.status;
    };
    expect(await follow(p2.base, sseStop)).toBe(200);

    // Long polls on P3, from the head, following the cursor.
    const lp: { id: string; data: unknown }[] = [];
    const lpStatuses = new Map<number, number>();
    let lpLongest = 0;
    let lpRunning = true;
    let gapSeen = false;
    const lpLoop = (async () => {
      let cursor = '';
      while (lpRunning) {
        const t0 = Date.now();
        let res: Response;
        try {
          res = await fetch(`${p3.base}/lp/${topic}${cursor ? `?cursor=${cursor}` : ''}`);
        } catch {
          await sleep(50);
          continue;
        }
        lpLongest = Math.max(lpLongest, Date.now() - t0);
        lpStatuses.set(res.status, (lpStatuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) {
          const body = (await res.json()) as { messages: { id: string; data: unknown }[]; cursor: string; gap: boolean };
          gapSeen ||= body.gap;
          lp.push(...body.messages);
          cursor = body.cursor;
        } else if (res.status === 204) {
          cursor = res.headers.get('patchbay-cursor') ?? cursor;
        } else {
          expect(res.status).toBe(503);
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
          await res.arrayBuffer();
          await sleep(100);
        }
      }
    })();
    // The first poll (no cursor: the next message) must be held before message 0 is published.
    await eventually(
      async () => ((await (await fetch(`${p3.base}/stats`)).json()) as { longPoll: { parked: number } }).longPoll.parked > 0,
      'the first long poll to be held on P3',
    );

    let restarted: Promise<void> | undefined;
    for (let i = 0; i < N; i++) {
      if (i === 50) {
        await redis.stop(); // SIGKILL by PID, mid-stream
        restarted = sleep(1500).then(() => redis.start());
      }
      if (i === 100) {
        // The SSE client reconnects to another process with the last id it got.
        sseStop.abort();
        sseStop = new AbortController();
        const last = sse[sse.length - 1]!.id!;
        expect(await follow(p1.base, sseStop, last)).toBe(200);
      }
      for (;;) {
        const res = await publish(p1.base, topic, i);
        statuses.push(res.status);
        if (res.status === 201) {
          acked.push({ i, id: ((await res.json()) as { id: string }).id });
          break;
        }
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('1');
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe('PB_ERR_UNAVAILABLE');
        if (/may or may not/.test(body.error.message)) unsure.add(i);
        await sleep(100);
      }
      await sleep(5);
    }

    await restarted;
    const missing = (got: { id?: string }[]) => {
      const seen = new Set(got.map((e) => e.id));
      return acked.filter((a) => !seen.has(a.id)).map((a) => a.i);
    };
    await eventually(() => missing(sse).length === 0, 'every acknowledged message on the SSE client', { timeoutMs: 30_000 }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}: missing i = ${missing(sse).join(',')}; ${sse.length} events; stream ends: ${sseEnds.join('; ') || 'none'}`);
    });
    await eventually(() => missing(lp).length === 0, 'every acknowledged message on the long-poll client', { timeoutMs: 30_000 }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}: missing i = ${missing(lp).join(',')}; ${lp.length} messages`);
    });
    if (sseEnds.length > 0) console.log(`SSE streams the server ended (the client resumed with Last-Event-ID): ${sseEnds.join('; ')}`);
    lpRunning = false;
    sseStop.abort();
    await lpLoop;

    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0); // the outage was real
    expect(lpStatuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(lpLongest).toBeLessThan(HOLD_MS + 3000); // no poll was left hanging
    expect(gapSeen).toBe(false); // nothing Redis stored was lost

    for (const received of [sse.map((e) => ({ id: e.id!, data: JSON.parse(e.data) as number })), lp]) {
      const seqs = received.map((m) => parseCursor(m.id).seq);
      for (let k = 1; k < seqs.length; k++) expect(seqs[k]).toBeGreaterThan(seqs[k - 1]!); // in order, no duplicate
      const values = received.map((m) => m.data as number);
      expect(new Set(values)).toEqual(new Set([...Array(N).keys()]));
      const extra = values.length - N;
      expect(extra).toBeLessThanOrEqual(unsure.size);
      for (const v of values.filter((v, k) => values.indexOf(v) !== k)) expect(unsure.has(v)).toBe(true);
    }
    expect(sse.map((e) => e.id)).toEqual(lp.map((m) => m.id));
  }, 120_000);
});
