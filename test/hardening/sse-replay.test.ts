/**
 * Regression (SseHandler): a client resuming with a `Last-Event-ID` whose backlog was larger than
 * `maxBufferedBytes` was cut before its first byte (the replay was held to the live bound, and the
 * default policy is `close`), so an EventSource that fell behind by more than 1 MiB could never
 * catch up. The replay now goes out whole, as on the WebSocket. Found by storms.test.ts.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { afterEach, describe, expect, it } from 'vitest';
import { PubSubBroker, SseHandler } from '../../src/index.js';
import { until } from '../helpers.js';
import { closeServers, serve } from './http.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await closeServers();
});

describe('SSE replay larger than maxBufferedBytes', () => {
  it('goes out whole to the resuming client, and live messages still follow', async () => {
    const broker = new PubSubBroker();
    const sse = new SseHandler({ broker, maxBufferedBytes: 64 * 1024 });
    cleanups.push(async () => {
      await sse.close();
      await broker.close();
    });
    const { base } = await serve((req, res) => void sse.handle(req, res));
    const cursor = (await broker.publish('t', 'seen')).id;
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await broker.publish('t', `${i}:${'x'.repeat(16 * 1024)}`)).id); // 640 KiB: 10x the bound
    const ac = new AbortController();
    const res = await fetch(`${base}/?topic=t`, { headers: { 'last-event-id': cursor }, signal: ac.signal });
    expect(res.status).toBe(200);
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e) });
    const reading = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
      } catch {
        // aborted
      }
    })();
    await until(() => events.length >= ids.length, 'the whole replay');
    ids.push((await broker.publish('t', 'live')).id);
    await until(() => events.length === ids.length, 'the live message after the replay');
    expect(events.map((e) => e.id)).toEqual(ids);
    expect(sse.stats()).toMatchObject({ connections: 1, drops: 0, replayedMessages: 40, eventsSent: 41 });
    ac.abort();
    await reading;
    await until(() => sse.stats().connections === 0 && broker.stats().subscriptions === 0, 'cleanup');
  });
});
