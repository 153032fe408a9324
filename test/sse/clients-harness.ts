/**
 * Two independent EventSource clients behind one small interface, for test/sse/clients.test.ts:
 *
 * - `eventsource`: the npm client (v4), in this process;
 * - `node`: Node's own EventSource (undici's), in a child process started with
 *   `node --experimental-eventsource` (see clients-node-eventsource.mjs), since `undici` is not a
 *   dependency and the flag cannot be given to one vitest worker.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EventSource as NpmEventSource } from 'eventsource';
import { eventually } from '../helpers.js';

/** `EventSource.readyState` values. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSED = 2;

/** One thing a client saw. */
export interface ClientEvent {
  readonly kind: 'open' | 'message' | 'error';
  /** For messages: the event type (`message`, or a custom type such as `gap`). */
  readonly type?: string;
  readonly data?: string;
  readonly lastEventId?: string;
  /** `readyState` when it happened. */
  readonly readyState: number;
}

/** A running EventSource, whichever implementation. */
export interface SseClient {
  readonly name: ClientName;
  /** Everything seen so far, in order. */
  readonly events: ClientEvent[];
  /** Message events only (any type). */
  messages(): ClientEvent[];
  /** The current `readyState`. */
  readyState(): Promise<number>;
  /** Closes the source (and ends the child process). */
  close(): Promise<void>;
}

export type ClientName = 'eventsource' | 'node';

/** Opens a client of `name` on `url`, also listening for the custom event `types`. */
export function openClient(name: ClientName, url: string, types: readonly string[] = []): SseClient {
  return name === 'eventsource' ? openNpm(url, types) : openNode(url, types);
}

function openNpm(url: string, types: readonly string[]): SseClient {
  const events: ClientEvent[] = [];
  const source = new NpmEventSource(url);
  source.onopen = () => events.push({ kind: 'open', readyState: source.readyState });
  source.onerror = () => events.push({ kind: 'error', readyState: source.readyState });
  const onMessage = (e: MessageEvent): void => {
    events.push({ kind: 'message', type: e.type, data: e.data as string, lastEventId: e.lastEventId, readyState: source.readyState });
  };
  source.addEventListener('message', onMessage);
  for (const type of types) source.addEventListener(type, onMessage);
  return {
    name: 'eventsource',
    events,
    messages: () => events.filter((e) => e.kind === 'message'),
    readyState: () => Promise.resolve(source.readyState),
    close: () => {
      source.close();
      return Promise.resolve();
    },
  };
}

const DRIVER = fileURLToPath(new URL('./clients-node-eventsource.mjs', import.meta.url));

function openNode(url: string, types: readonly string[]): SseClient {
  const events: ClientEvent[] = [];
  const states: number[] = [];
  const stderr: string[] = [];
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    ['--experimental-eventsource', '--no-warnings', DRIVER, url, types.join(',')],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const e = JSON.parse(line) as Omit<ClientEvent, 'kind'> & { kind: ClientEvent['kind'] | 'state' | 'closed' | 'fatal'; message?: string };
    if (e.kind === 'state') states.push(e.readyState);
    else if (e.kind === 'fatal') stderr.push(e.message ?? 'fatal');
    else if (e.kind !== 'closed') events.push({ ...e, kind: e.kind });
  });
  const alive = (what: string): void => {
    if (exited) throw new Error(`Node's EventSource child exited while waiting for ${what}: ${stderr.join('')}`);
  };
  return {
    name: 'node',
    events,
    messages: () => events.filter((e) => e.kind === 'message'),
    async readyState() {
      const n = states.length;
      alive('its readyState');
      child.stdin.write('state\n');
      await eventually(() => {
        alive('its readyState');
        return states.length > n;
      }, "the Node EventSource child's readyState");
      return states[n]!;
    },
    async close() {
      if (exited) return;
      child.stdin.end('close\n');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    },
  };
}
