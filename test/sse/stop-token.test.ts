import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, ManualClock, PubSubBroker, SseHandler, type SseHandlerOptions, SseHub, type SseSink, type SseStream } from '../../src/index.js';
import { perTest, readSse, serveRig, until } from '../helpers.js';

/** A transport that keeps what it is written. */
function sink(): SseSink & { text(): string } {
  const writes: Buffer[] = [];
  return {
    start() {},
    write: (chunk) => void writes.push(chunk),
    buffered: 0,
    end() {},
    destroy() {},
    onClose() {},
    text: () => Buffer.concat(writes).toString('utf8'),
  };
}

const SECRET = 'a-secret-the-workers-share-0123456789';
const DAY_MS = 86_400_000;

/** Closes one stream of `hub` with `{ reconnect: false }` and returns the stop token its client got. */
function mintStopToken(hub: SseHub): string {
  const s = sink();
  const stream = hub.stream(s);
  stream.start();
  stream.close({ reconnect: false });
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (e) => events.push(e) }).feed(s.text());
  const stop = events.find((e) => e.event === 'patchbay-stop');
  if (stop?.id === undefined) throw new Error('no stop event');
  return stop.id;
}

describe('SSE stop tokens shared by processes (stopTokenSecret)', () => {
  it('a token minted by one hub is honored by another hub with the same secret, not by one with another secret', () => {
    const clock = new ManualClock();
    const a = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const b = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const other = new SseHub({ clock, stopTokenSecret: `${SECRET}-rotated`, heartbeatMs: 0 });
    const own = new SseHub({ clock, heartbeatMs: 0 });
    const token = mintStopToken(a);
    expect(token).toMatch(/^stop-[a-z0-9]+$/);
    expect(a.isStopped(token)).toBe(true);
    expect(b.isStopped(token)).toBe(true);
    expect(other.isStopped(token)).toBe(false);
    expect(own.isStopped(token)).toBe(false);
    // Without a secret, a hub honors its own tokens only.
    const ownToken = mintStopToken(own);
    expect(own.isStopped(ownToken)).toBe(true);
    expect(a.isStopped(ownToken)).toBe(false);
  });

  it('a token expires a day after it was minted', () => {
    const clock = new ManualClock();
    const a = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const b = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const token = mintStopToken(a);
    clock.advance(DAY_MS - 1);
    expect(b.isStopped(token)).toBe(true);
    clock.advance(1);
    expect(b.isStopped(token)).toBe(false);
    expect(a.isStopped(token)).toBe(false);
  });

  it('a forged or altered token is not honored', () => {
    const clock = new ManualClock();
    const hub = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const token = mintStopToken(hub);
    const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'.split('');
    fc.assert(
      fc.property(fc.nat({ max: token.length - 1 }), fc.constantFrom(...alphabet), (at, ch) => {
        const altered = token.slice(0, at) + ch + token.slice(at + 1);
        fc.pre(altered !== token);
        expect(hub.isStopped(altered)).toBe(false);
      }),
    );
    // The expiry pushed forward (a token that would live forever) is refused: it is signed.
    const far = `stop-${'zzzzzzzzz'}${token.slice(5 + 9)}`;
    expect(hub.isStopped(far)).toBe(false);
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        expect(hub.isStopped(s)).toBe(false);
      }),
    );
    expect(hub.isStopped(`${token}0`)).toBe(false);
    expect(hub.isStopped(token.slice(0, -1))).toBe(false);
  });

  it('nothing is kept per token: a hundred thousand tokens evict none in the hub', () => {
    const clock = new ManualClock();
    const hub = new SseHub({ clock, stopTokenSecret: SECRET, heartbeatMs: 0 });
    const tokens = new Set<string>();
    for (let i = 0; i < 1000; i++) tokens.add(hub.stopToken());
    expect(tokens.size).toBe(1000); // a random nonce each
    const first = [...tokens][0]!;
    for (let i = 0; i < 100_000; i++) hub.stopToken();
    // The first is still honored (nothing was evicted), until it expires.
    expect(hub.isStopped(first)).toBe(true);
  });

  it('refuses a short or non-string secret without echoing it', () => {
    expect(() => new SseHub({ stopTokenSecret: 'short-secret' })).toThrow(InvalidArgumentError);
    expect(() => new SseHub({ stopTokenSecret: 'short-secret' })).not.toThrow(/short-secret/);
    expect(() => new SseHub({ stopTokenSecret: 42 as unknown as string })).toThrow(/stopTokenSecret/);
  });
});

/** An SseHandler on its own server (a "process"): the streams it serves are kept in `live`. */
async function server(broker: PubSubBroker, options: Partial<SseHandlerOptions> = {}) {
  const sse = new SseHandler({ broker, ...options });
  const live: SseStream[] = [];
  const { url } = await serveRig((req, res) => void sse.handle(req, res, { topics: ['t'] }).then((s) => s && live.push(s)));
  perTest.defer(() => sse.close());
  return { url, live };
}

describe('SseHandler: a stop token from one handler is answered 204 by another with the same stopTokenSecret', () => {
  it('honored by a second handler with the secret; resumed (400: not a cursor) by one without it', async () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    const a = await server(broker, { stopTokenSecret: SECRET });
    const b = await server(broker, { stopTokenSecret: SECRET });
    const stranger = await server(broker);
    const s = await readSse(`${a.url}/sse/t`);
    await until(() => a.live.length === 1, 'the stream on a');
    a.live[0]!.close({ reconnect: false });
    await s.ended;
    const token = s.events.find((e) => e.event === 'patchbay-stop')?.id ?? '';
    expect(token).toMatch(/^stop-/);
    expect((await fetch(`${b.url}/sse/t`, { headers: { 'last-event-id': token } })).status).toBe(204);
    expect((await fetch(`${a.url}/sse/t`, { headers: { 'last-event-id': token } })).status).toBe(204);
    expect((await fetch(`${stranger.url}/sse/t`, { headers: { 'last-event-id': token } })).status).toBe(400);
  });
});
