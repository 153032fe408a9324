/**
 * Rigs for the WebSocket tests: a broker, a WsHandler attached to a node:http server on
 * 127.0.0.1 (closed after the test by `perTest`), and clients from the real `ws` package that
 * record every frame they get.
 */
import http, { type Server } from 'node:http';
import WebSocket, { type ClientOptions } from 'ws';
import {
  type BackendRead,
  type Clock,
  type Cursor,
  ManualClock,
  MemoryBackend,
  Message,
  PubSubBroker,
  type PubSubBrokerOptions,
  realClock,
} from '../../src/index.js';
import { WsHandler, type WsHandlerOptions, type WsServerFrame } from '../../src/ws/index.js';
import { perTest, serveRig, until } from '../helpers.js';

export type Frame = WsServerFrame & Record<string, unknown>;

export interface Rig {
  url: string;
  broker: PubSubBroker;
  ws: WsHandler;
  server: Server;
  clients: Client[];
  /** Drives the heartbeat timer (flushes stay real). */
  manual: ManualClock;
}

/**
 * A backend that hands out, in place of every message published with the data `"poison"`, one
 * whose data JSON cannot carry (a BigInt), live and on reads: what a custom backend, or a record
 * written by another version, could deliver although the broker refuses to publish it.
 */
export class PoisonBackend extends MemoryBackend {
  override attach(deliver: (message: Message) => void): void {
    super.attach((m) => deliver(poisoned(m)));
  }

  override async read(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead> {
    const page = await super.read(topics, cursor, limit);
    return { ...page, messages: page.messages.map(poisoned) };
  }
}

function poisoned(m: Message): Message {
  return m.data === 'poison' ? new Message(m.id, m._seq, m.topic, { n: 1n }, m.headers, m._size, m._time) : m;
}

/** A clock whose timers move only when the test says so; deferred flushes stay real. */
export function heartbeatClock(manual: ManualClock): Clock {
  return {
    now: () => manual.now(),
    setTimer: (callback, delayMs, options) => manual.setTimer(callback, delayMs, options),
    defer: (callback) => realClock.defer(callback),
  };
}

export async function rig(options: Partial<WsHandlerOptions> = {}, brokerOptions: PubSubBrokerOptions = {}): Promise<Rig> {
  const manual = new ManualClock();
  const broker = new PubSubBroker(brokerOptions);
  // Most tests subscribe with `pattern`, so the rig opts in; the default (refused) has tests of its own.
  const ws = new WsHandler({ broker, clock: heartbeatClock(manual), allowPatterns: true, ...options });
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { upgrade: 'websocket' }).end();
  });
  ws.attach(server, { path: '/ws' });
  const { port } = await serveRig(server);
  const r: Rig = { url: `ws://127.0.0.1:${port}/ws`, broker, ws, server, clients: [], manual };
  // Closed after the test, last registered first: the clients, the handler, the broker, the server.
  perTest.defer(() => broker.close());
  perTest.defer(() => ws.close());
  perTest.defer(() => {
    for (const c of r.clients) c.socket.terminate();
  });
  return r;
}

/** A real `ws` client that parses and keeps every frame. */
export class Client {
  readonly frames: Frame[] = [];
  readonly raw: string[] = [];
  closed: { code: number; reason: string } | undefined;
  pings = 0;

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data, binary) => {
      const text = (data as Buffer).toString('utf8');
      this.raw.push(binary ? `(binary) ${text}` : text);
      this.frames.push(JSON.parse(text) as Frame);
    });
    socket.on('ping', () => this.pings++);
    socket.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    socket.on('error', () => {});
  }

  static async open(r: Rig, options: ClientOptions = {}, url = r.url, protocols?: string[]): Promise<Client> {
    const socket = new WebSocket(url, protocols, options);
    const c = new Client(socket);
    r.clients.push(c);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
    return c;
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Waits for the first frame (from `from` on) that `match` accepts, and returns it. */
  async next(match: (f: Frame) => boolean, what: string, from = 0): Promise<Frame> {
    let found: Frame | undefined;
    await until(() => {
      found = this.frames.slice(from).find(match);
      return found !== undefined || this.closed !== undefined;
    }, what);
    if (found === undefined) throw new Error(`closed (${JSON.stringify(this.closed)}) while waiting for ${what}`);
    return found;
  }

  /** Sends a frame with a fresh `ref` and waits for the reply carrying it. */
  async request(frame: Record<string, unknown>): Promise<Frame> {
    const ref = `r${++refs}`;
    this.send({ ...frame, ref });
    return this.next((f) => f.ref === ref, `the reply to ${JSON.stringify(frame).slice(0, 80)}`);
  }

  async subscribe(sid: string, target: { pattern: string } | { topics: string[] }, cursor?: string): Promise<Frame> {
    return this.request({ type: 'subscribe', sid, ...target, ...(cursor === undefined ? {} : { cursor }) });
  }

  /** The message frames of `sid` so far. */
  messages(sid: string): Frame[] {
    return this.frames.filter((f) => f.type === 'message' && f.sid === sid);
  }

  async waitClosed(what = 'the close'): Promise<{ code: number; reason: string }> {
    await until(() => this.closed !== undefined, what);
    return this.closed!;
  }
}
let refs = 0;
