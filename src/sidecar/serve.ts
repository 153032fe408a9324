/**
 * The sidecar's end: {@link serveSidecar} listens where the app (or its `SidecarSupervisor`)
 * connects and hands every message to one handler, so a sidecar is a few lines.
 *
 * @module
 */
import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Clock, ClockTimer } from '../core/clock.js';
import { InvalidArgumentError, InvalidStateError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import { describe, integerInRange, optionalClock, optionalFunction, optionsObject } from '../core/validate.js';
import { SidecarChannel, type AcceptingChannelOptions } from './channel.js';
import type { SidecarStream } from './connection.js';
import { HANDSHAKE, sidecarHandshake, type AcceptState } from './handshake.js';
import type { SidecarHandler } from './inbox.js';

/** The environment variable a `SidecarSupervisor` sets to the socket path its sidecar must listen on. */
export const SIDECAR_SOCKET_ENV = 'PATCHBAY_SIDECAR_SOCKET';
/** The environment variable a `SidecarSupervisor` sets (to `1`) in the sidecars it spawns. */
export const SIDECAR_SUPERVISED_ENV = 'PATCHBAY_SIDECAR_SUPERVISED';
/** The environment variable a `SidecarSupervisor` sets (to `stdio`) when the sidecar talks over its stdin and stdout. */
export const SIDECAR_TRANSPORT_ENV = 'PATCHBAY_SIDECAR_TRANSPORT';
/**
 * The environment variable a `SidecarSupervisor` sets to its own process id, so a sidecar whose
 * app died before the sidecar looked at its parent still knows it is orphaned. Internal.
 */
export const SIDECAR_SUPERVISOR_PID_ENV = 'PATCHBAY_SIDECAR_SUPERVISOR_PID';

/** Options of {@link serveSidecar}. */
export interface ServeSidecarOptions {
  /**
   * The Unix socket path to listen on. A stale socket file (no one listening) is removed first;
   * the socket is made with `socketMode`.
   * @defaultValue the `PATCHBAY_SIDECAR_SOCKET` environment variable
   */
  readonly socketPath?: string;
  /** Listen on this TCP port of `host` instead of a Unix socket (0 picks a free one). */
  readonly port?: number;
  /**
   * The host for `port`.
   * @defaultValue `'127.0.0.1'`
   */
  readonly host?: string;
  /**
   * Talk over this process's stdin and stdout (one app, the parent) instead of a socket.
   * @defaultValue `true` when `PATCHBAY_SIDECAR_TRANSPORT` is `stdio`
   */
  readonly stdio?: boolean;
  /**
   * The socket file's permission bits: by default only this user may connect.
   * @defaultValue `0o600`
   */
  readonly socketMode?: number;
  /**
   * The last seq of `session` that this sidecar has durably handled, for a sidecar that
   * persists what it handles: the app then replays only what came after it, so a restart of
   * the sidecar duplicates nothing. Without it, messages in flight during a crash may be
   * handled twice (at least once).
   */
  readonly lastHandled?: (session: string) => number | undefined;
  /** Called once when the server closes, after the last connection; flush what you buffer here. */
  readonly onClose?: () => void | Promise<void>;
  /**
   * Exit the process (code 0) after closing, when the app says BYE or sends SIGTERM, and when
   * the parent process goes away.
   * @defaultValue `true` when `PATCHBAY_SIDECAR_SUPERVISED` is `1` (spawned by a supervisor)
   */
  readonly exitProcess?: boolean;
  /**
   * The largest frame payload taken from the app.
   * @defaultValue `1048576` (1 MiB)
   */
  readonly maxFrameBytes?: number;
  /**
   * The deadline of requests the sidecar sends to the app.
   * @defaultValue `30000`
   */
  readonly requestTimeoutMs?: number;
  /** The clock of the channels. @defaultValue `realClock` */
  readonly clock?: Clock;
  /** Called with errors no caller waits for (a handler that threw on a send, a protocol error). */
  readonly onError?: (error: unknown) => void;
}

/** The TCP address a {@link SidecarServer} listens on. */
export interface SidecarServerAddress {
  /** The host. */
  readonly host: string;
  /** The port. */
  readonly port: number;
}

/** Counters of a {@link SidecarServer}. */
export interface SidecarServerStats {
  /** Connections open now. */
  readonly connections: number;
  /** Connections accepted since the start. */
  readonly accepted: number;
  /** Sends and requests taken (duplicates not counted). */
  readonly received: number;
  /** Duplicates ignored. */
  readonly duplicates: number;
  /** Connections closed for a protocol error. */
  readonly protocolErrors: number;
}

/**
 * A listening sidecar (from {@link serveSidecar}): one accepting {@link SidecarChannel} per
 * connected app.
 */
export class SidecarServer extends Resource {
  readonly #server: net.Server | undefined;
  readonly #socketPath: string | undefined;
  readonly #channels = new Set<SidecarChannel>();
  readonly #onClose: (() => void | Promise<void>) | undefined;
  #accepted = 0;
  #received = 0;
  #duplicates = 0;
  #protocolErrors = 0;
  #cleanup: (() => void)[] = [];

  /** @internal */
  constructor(server: net.Server | undefined, socketPath: string | undefined, onClose: (() => void | Promise<void>) | undefined) {
    super();
    this.#server = server;
    this.#socketPath = socketPath;
    this.#onClose = onClose;
  }

  /** Where it listens: the socket path, `{ host, port }`, or `'stdio'`. */
  get address(): string | SidecarServerAddress {
    if (this.#server === undefined) return 'stdio';
    const a = this.#server.address();
    if (a === null) return this.#socketPath ?? '';
    return typeof a === 'string' ? a : { host: a.address, port: a.port };
  }

  /** The channels of the connected apps. */
  get channels(): ReadonlySet<SidecarChannel> {
    return this.#channels;
  }

  /**
   * Sends a message to every connected app.
   * @returns How many apps it was queued for.
   */
  broadcast(type: string, data?: unknown): number {
    this.assertOpen('broadcast');
    let n = 0;
    for (const c of this.#channels) {
      if (c.closed) continue;
      c.send(type, data);
      n++;
    }
    return n;
  }

  /** Counters; see {@link SidecarServerStats}. */
  stats(): SidecarServerStats {
    let received = this.#received;
    let duplicates = this.#duplicates;
    let protocolErrors = this.#protocolErrors;
    for (const c of this.#channels) {
      const s = c.stats();
      received += s.received;
      duplicates += s.duplicates;
      protocolErrors += s.protocolErrors;
    }
    return { connections: this.#channels.size, accepted: this.#accepted, received, duplicates, protocolErrors };
  }

  /** @internal */
  _adopt(channel: SidecarChannel): void {
    this.#accepted++;
    this.#channels.add(channel);
    channel._onEnd(() => {
      if (!this.#channels.delete(channel)) return;
      const s = channel.stats();
      this.#received += s.received;
      this.#duplicates += s.duplicates;
      this.#protocolErrors += s.protocolErrors;
    });
  }

  /** @internal */
  _onExitHooks(cleanup: () => void): void {
    this.#cleanup.push(cleanup);
  }

  /** Stops listening, says BYE to every app (after writing what is queued), runs `onClose`. */
  protected override async onClose(): Promise<void> {
    // Stop listening first; the server's callback waits for the connections, closed next.
    const stopped = new Promise<void>((resolve) => (this.#server === undefined ? resolve() : this.#server.close(() => resolve())));
    await Promise.all([...this.#channels].map((c) => c.close()));
    await stopped;
    this.#channels.clear();
    this.#unlink();
    for (const f of this.#cleanup.splice(0)) f();
    await this.#onClose?.();
  }

  /** Closes every connection and the listener at once (`onClose` is not called). */
  protected override onDestroy(reason: unknown): void {
    this.#server?.close();
    for (const c of this.#channels) c.destroy(reason);
    this.#channels.clear();
    this.#unlink();
    for (const f of this.#cleanup.splice(0)) f();
  }

  #unlink(): void {
    if (this.#socketPath === undefined) return;
    try {
      unlinkSync(this.#socketPath);
    } catch {
      // already gone
    }
  }
}

/**
 * Serves one already-connected stream as the sidecar end of a channel: answers HELLO, hands
 * messages to `handler`, acknowledges them. {@link serveSidecar} calls it for each connection;
 * call it yourself for a transport of your own.
 *
 * @param stream - The connection to the app.
 * @param handler - Handles the app's sends and requests.
 * @param options - `maxFrameBytes`, `requestTimeoutMs`, `lastHandled`, `clock`, `onError`.
 * @returns The accepting channel: send and request to the app through it; it closes with the stream.
 */
export function acceptSidecarStream(
  stream: SidecarStream,
  handler: SidecarHandler,
  options: Pick<ServeSidecarOptions, 'maxFrameBytes' | 'requestTimeoutMs' | 'lastHandled' | 'clock' | 'onError'> & {
    /** Resume state shared by the connections of one server. @internal */
    readonly sessions?: Map<string, { last: number }>;
  } = {},
): SidecarChannel {
  if (typeof handler !== 'function') throw new InvalidArgumentError(`Expected \`handler\` to be a function, got ${describe(handler)}`);
  const accept: AcceptState = { sessions: options.sessions ?? new Map(), lastHandled: optionalFunction('lastHandled', options.lastHandled) };
  const channelOptions: AcceptingChannelOptions = {
    handler,
    reconnect: false,
    ...(options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes }),
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    clock: optionalClock('clock', options.clock),
    ...(options.onError === undefined ? {} : { onError: options.onError }),
    drainTimeoutMs: 1000,
    [HANDSHAKE]: sidecarHandshake(accept),
  };
  const channel = new SidecarChannel(channelOptions);
  channel.attach(stream);
  return channel;
}

/** How long a sidecar that is told to go may spend closing before it exits anyway. */
const EXIT_DEADLINE_MS = 5000;

/** How often a supervised sidecar checks that its app is still there. */
const ORPHAN_CHECK_MS = 500;

/**
 * Closes gracefully, then exits; exits anyway after EXIT_DEADLINE_MS by `clock` (a stuck close
 * must not leave an orphan; the timer is ref'd so that it fires).
 */
function closeAndExit(server: SidecarServer, clock: Clock): void {
  clock.setTimer(() => process.exit(0), EXIT_DEADLINE_MS, { ref: true });
  void server.close().finally(() => process.exit(0));
}

/** Whether a process with this pid exists (one we may not signal exists too). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes a stale socket file: one nobody listens on. Throws if someone does. */
async function clearStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new InvalidStateError(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new InvalidStateError(`Another process already listens on ${path}`);
  unlinkSync(path);
}

/**
 * Starts a sidecar: listens on a Unix socket (by default the path a `SidecarSupervisor` passes
 * in `PATCHBAY_SIDECAR_SOCKET`), a loopback TCP port, or stdio, and hands every message from
 * the app to `handler`. Answers health-check pings by itself. When spawned by a supervisor it
 * also exits cleanly when the app says BYE, on SIGTERM, and when its parent goes away.
 *
 * @example
 * ```ts
 * // my-sidecar.js: counts what it is sent and answers "count" requests.
 * import { serveSidecar } from 'patchbay';
 * let n = 0;
 * await serveSidecar((message) => {
 *   if (message.kind === 'request' && message.type === 'count') return n;
 *   n++;
 * });
 * ```
 *
 * @param handler - Handles the app's sends and requests (see {@link SidecarHandler}).
 * @param options - See {@link ServeSidecarOptions}.
 * @returns The listening server.
 * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) without a place to listen;
 *   {@link InvalidStateError} (`PB_ERR_INVALID_STATE`) when another process listens on the socket path.
 */
export async function serveSidecar(handler: SidecarHandler, options?: ServeSidecarOptions): Promise<SidecarServer> {
  const o = optionsObject('options', options);
  if (typeof handler !== 'function') throw new InvalidArgumentError(`Expected \`handler\` to be a function, got ${describe(handler)}`);
  const onClose = optionalFunction('onClose', o.onClose);
  const supervised = process.env[SIDECAR_SUPERVISED_ENV] === '1';
  const exitProcess = o.exitProcess ?? supervised;
  const useStdio = o.stdio ?? (o.port === undefined && o.socketPath === undefined && process.env[SIDECAR_TRANSPORT_ENV] === 'stdio');
  const clock = optionalClock('clock', o.clock);
  const sessions = new Map<string, { last: number }>();
  const channelOptions = { ...o, clock, sessions };

  let server: SidecarServer;
  if (useStdio) {
    server = new SidecarServer(undefined, undefined, onClose);
    const channel = acceptSidecarStream({ readable: process.stdin, writable: process.stdout }, handler, channelOptions);
    server._adopt(channel);
    if (exitProcess) {
      channel.on('bye', () => closeAndExit(server, clock));
      process.stdin.once('end', () => closeAndExit(server, clock));
    }
  } else {
    const socketPath = o.port === undefined ? (o.socketPath ?? process.env[SIDECAR_SOCKET_ENV]) : undefined;
    if (o.port === undefined && (typeof socketPath !== 'string' || socketPath.length === 0)) {
      throw new InvalidArgumentError(`serveSidecar needs \`socketPath\`, \`port\` or \`stdio\`, or the ${SIDECAR_SOCKET_ENV} environment variable`);
    }
    if (o.port !== undefined) integerInRange('port', o.port, 0, 65535);
    const mode = integerInRange('socketMode', o.socketMode ?? 0o600, 0, 0o777);
    if (socketPath !== undefined) {
      mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
      await clearStaleSocket(socketPath);
    }
    const net_ = net.createServer({ noDelay: true });
    server = new SidecarServer(net_, socketPath, onClose);
    net_.on('connection', (socket) => {
      if (server.closed) {
        socket.destroy();
        return;
      }
      const channel = acceptSidecarStream(socket, handler, channelOptions);
      server._adopt(channel);
      if (exitProcess) channel.on('bye', () => closeAndExit(server, clock));
    });
    await new Promise<void>((resolve, reject) => {
      net_.once('error', reject);
      const done = (): void => {
        net_.off('error', reject);
        resolve();
      };
      if (socketPath !== undefined) {
        // The mask makes the socket file private from its first moment, not after a chmod.
        const mask = process.umask(0o777 & ~mode);
        try {
          net_.listen(socketPath, done);
        } finally {
          process.umask(mask);
        }
      } else {
        net_.listen(o.port, o.host ?? '127.0.0.1', done);
      }
    });
    net_.on('error', (err) => o.onError?.(err));
  }

  if (exitProcess) {
    const stop = (): void => closeAndExit(server, clock);
    process.once('SIGTERM', stop);
    const parent = process.ppid;
    const supervisorPid = Number(process.env[SIDECAR_SUPERVISOR_PID_ENV]);
    // The parent died without a word: its children are re-parented. Do not outlive it. The
    // parent seen here is not enough: an app killed while this process was still loading (before
    // this line) is gone already and `parent` is then init, so the supervisor's own pid is
    // checked too (it may be a grandparent, when the command is a wrapper such as npx).
    const orphaned = (): boolean => process.ppid !== parent || (Number.isSafeInteger(supervisorPid) && supervisorPid > 0 && !processExists(supervisorPid));
    let watch: ClockTimer | undefined;
    const check = (): void => {
      if (orphaned()) stop();
      else watch = clock.setTimer(check, ORPHAN_CHECK_MS);
    };
    watch = clock.setTimer(check, ORPHAN_CHECK_MS);
    if (orphaned()) queueMicrotask(stop); // after the caller has its server
    server._onExitHooks(() => {
      watch?.cancel();
      process.off('SIGTERM', stop);
    });
  }
  return server;
}
