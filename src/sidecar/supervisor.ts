/**
 * {@link SidecarSupervisor}: runs a sidecar process beside the app and keeps a
 * {@link SidecarChannel} to it open.
 *
 * The life of one sidecar process: spawn it (with the socket path in `PATCHBAY_SIDECAR_SOCKET`),
 * connect until its socket answers and the handshake is done (`startTimeoutMs`), then ping it
 * every `intervalMs`. A crash, a start that takes too long, or `failureThreshold` pings in a row
 * without a PONG within `timeoutMs` (its event loop is stuck) is a failure: the process is
 * killed if it still runs, and a new one is spawned after an exponential backoff with jitter;
 * the channel reconnects and replays what was not acknowledged. A passed health check (or, with
 * health checks off, a completed handshake) clears the failure count; `maxFailures` failures in
 * a row make the supervisor give up: it says so (`'give-up'`, `onError`, a rejected `start()`),
 * and requests fail with `UnavailableError`.
 *
 * `close()` is the graceful shutdown: the channel drains (up to its `drainTimeoutMs`) and says
 * BYE, the sidecar exits by itself, and one that does not is sent SIGTERM and then SIGKILL.
 *
 * @module
 */
import { spawn as nodeSpawn, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { onAbort, throwIfAborted } from '../core/abort.js';
import { Events } from '../core/events.js';
import { backoffDelay, resolveBackoff, type Backoff, type BackoffOptions } from '../core/backoff.js';
import type { Clock, ClockTimer } from '../core/clock.js';
import { InvalidArgumentError, UnavailableError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import { describe, integerInRange, oneOf, optionalClock, optionalFunction, optionalSignal, optionsObject, positiveNumber } from '../core/validate.js';
import { SidecarChannel, type SidecarChannelOptions, type SidecarChannelStats, type SidecarRequestOptions } from './channel.js';
import { sidecarConnector, type SidecarStream } from './connection.js';
import { SIDECAR_SOCKET_ENV, SIDECAR_SUPERVISED_ENV, SIDECAR_SUPERVISOR_PID_ENV, SIDECAR_TRANSPORT_ENV } from './serve.js';

/** The part of a child process the supervisor uses; `node:child_process`'s `ChildProcess` fits. */
export interface SidecarProcess {
  /** The process id, once spawned. */
  readonly pid?: number | undefined;
  /** The child's stdin (used with the `stdio` transport). */
  readonly stdin?: Writable | null;
  /** The child's stdout (used with the `stdio` transport). */
  readonly stdout?: Readable | null;
  /** Sends a signal. */
  kill(signal?: NodeJS.Signals): boolean;
  /** `'exit'` (code, signal) and `'error'` (a spawn failure). */
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  /** @see SidecarProcess.on */
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Starts a sidecar process; `child_process.spawn` by default. */
export type SidecarSpawn = (command: string, args: readonly string[], options: SpawnOptions) => SidecarProcess;

/** Health checks of a {@link SidecarSupervisor}. */
export interface SidecarHealthCheckOptions {
  /**
   * Time between the end of one check and the start of the next.
   * @defaultValue `5000`
   */
  readonly intervalMs?: number;
  /**
   * How long one ping may wait for its PONG.
   * @defaultValue `1000`
   */
  readonly timeoutMs?: number;
  /**
   * Failed pings in a row that make the sidecar unhealthy (it is then killed and replaced).
   * @defaultValue `3`
   */
  readonly failureThreshold?: number;
}

/**
 * Restart policy of a {@link SidecarSupervisor}: the library's one backoff shape (defaults here:
 * `initialDelayMs` 100, `maxDelayMs` 10000, `factor` 2, `jitter` 0.2) and when to give up.
 */
export interface SidecarRestartOptions extends BackoffOptions {
  /**
   * Failures in a row after which the supervisor gives up.
   * @defaultValue `5`
   */
  readonly maxFailures?: number;
}

/** Options of {@link SidecarSupervisor}. */
export interface SidecarSupervisorOptions {
  /** The program to run, for example `process.execPath`. */
  readonly command: string;
  /** Its arguments, for example `['my-sidecar.js']`. */
  readonly args?: readonly string[];
  /** Extra environment variables (added to this process's environment). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The working directory. */
  readonly cwd?: string;
  /** A name for messages and the default socket file. @defaultValue `'sidecar'` */
  readonly name?: string;
  /**
   * `socket`: the sidecar listens on a Unix socket (`socketPath`); `stdio`: it talks over its
   * stdin and stdout (then its stdout is not for logging).
   * @defaultValue `'socket'`
   */
  readonly transport?: 'socket' | 'stdio';
  /** The Unix socket path. @defaultValue `<name>.sock` in a fresh private temporary directory */
  readonly socketPath?: string;
  /**
   * What becomes of the sidecar's stdout and stderr (stdout is the channel with `stdio`).
   * @defaultValue `'inherit'`
   */
  readonly output?: 'inherit' | 'ignore';
  /** Options of the channel (queue bound, overflow policy, request timeout, handler...). */
  readonly channel?: Omit<SidecarChannelOptions, 'connect' | 'reconnect' | 'clock' | 'random' | 'onError'>;
  /** Health checks, or `false` for none. @defaultValue `{ intervalMs: 5000, timeoutMs: 1000, failureThreshold: 3 }` */
  readonly healthCheck?: SidecarHealthCheckOptions | false;
  /** The restart policy. */
  readonly restart?: SidecarRestartOptions;
  /**
   * From spawn to a completed handshake; longer is a failure.
   * @defaultValue `10000`
   */
  readonly startTimeoutMs?: number;
  /**
   * On close: how long the sidecar may take to exit after BYE before SIGTERM, and after
   * SIGTERM before SIGKILL.
   * @defaultValue `5000`
   */
  readonly stopTimeoutMs?: number;
  /** The clock of every timer (health checks, backoff, deadlines). @defaultValue `realClock` */
  readonly clock?: Clock;
  /** The random source for jitter, in [0, 1). @defaultValue `Math.random` */
  readonly random?: () => number;
  /** Starts the process. @defaultValue `child_process.spawn` */
  readonly spawn?: SidecarSpawn;
  /** Called with every failure (crash, failed start, failed health), the final give-up, and the channel's errors. */
  readonly onError?: (error: unknown) => void;
}

/** Where a supervisor is. */
export type SidecarSupervisorState = 'idle' | 'starting' | 'ready' | 'backoff' | 'stopping' | 'stopped' | 'failed';

/** How a sidecar process ended. */
export interface SidecarExit {
  /** Its pid. */
  readonly pid: number | undefined;
  /** The exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it, if any. */
  readonly signal: NodeJS.Signals | null;
}

/** Options of {@link SidecarSupervisor.start}. */
export interface SidecarStartOptions {
  /** Stops waiting: `start` rejects with the signal's reason (the sidecar goes on starting). */
  readonly signal?: AbortSignal;
}

/** Counters and state of a {@link SidecarSupervisor}. */
export interface SidecarSupervisorStats {
  /** The state. */
  readonly state: SidecarSupervisorState;
  /** The running sidecar's pid. */
  readonly pid: number | undefined;
  /** Processes spawned. */
  readonly spawns: number;
  /** Restarts (spawns after the first). */
  readonly restarts: number;
  /** Failures in a row now. */
  readonly failures: number;
  /** Health checks that failed, in all. */
  readonly healthCheckFailures: number;
  /** How the last sidecar process ended. */
  readonly lastExit: SidecarExit | undefined;
  /** The last health check's round trip, ms. */
  readonly lastPingMs: number | undefined;
  /** The channel's counters. */
  readonly channel: SidecarChannelStats;
}

/** The events of a {@link SidecarSupervisor}. */
export interface SidecarSupervisorEvents {
  /** A process was started. */
  spawn: [pid: number | undefined];
  /** Its channel is connected (handshake done). */
  ready: [pid: number | undefined];
  /** A process ended. */
  exit: [exit: SidecarExit];
  /** A process failed its health checks and is being replaced. */
  unhealthy: [pid: number | undefined, failedChecks: number];
  /** A restart is scheduled after `delayMs`. */
  restart: [failures: number, delayMs: number];
  /** The supervisor gave up after too many failures in a row. */
  'give-up': [error: UnavailableError];
}

interface Running {
  readonly proc: SidecarProcess;
  readonly pid: number | undefined;
  exited: boolean;
  /** A failure of this process has been counted. */
  failed: boolean;
  readonly exitWaiters: (() => void)[];
}

const HEALTH_DEFAULTS = { intervalMs: 5000, timeoutMs: 1000, failureThreshold: 3 } as const;
const RESTART_DEFAULTS: Backoff = { initialDelayMs: 100, maxDelayMs: 10_000, factor: 2, jitter: 0.2 };
const DEFAULT_MAX_FAILURES = 5;
/** Between two connection attempts while a new sidecar starts to listen. */
const CONNECT_RETRY_MS = 20;

/**
 * Spawns a sidecar process, keeps a {@link SidecarChannel} to it, health-checks it, restarts
 * it with backoff after a failure, replays what it had not acknowledged, and gives up after
 * too many failures in a row.
 *
 * @example
 * ```ts
 * const logs = new SidecarSupervisor({ command: process.execPath, args: ['log-shipper.js'] });
 * await logs.start();
 * logs.send('log', { level: 'info', msg: 'hello' });
 * await logs.close(); // drain, BYE, the sidecar exits
 * ```
 */
export class SidecarSupervisor extends Resource {
  readonly #events = new Events<SidecarSupervisorEvents>();
  readonly #channel: SidecarChannel;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #spawn: SidecarSpawn;
  readonly #command: string;
  readonly #args: readonly string[];
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #cwd: string | undefined;
  readonly #name: string;
  readonly #transport: 'socket' | 'stdio';
  readonly #socketPath: string;
  readonly #ownDir: string | undefined;
  readonly #output: 'inherit' | 'ignore';
  readonly #health: Required<SidecarHealthCheckOptions> | undefined;
  readonly #restart: Backoff;
  readonly #maxFailures: number;
  readonly #startTimeoutMs: number;
  readonly #stopTimeoutMs: number;
  readonly #onError: ((error: unknown) => void) | undefined;

  #state: SidecarSupervisorState = 'idle';
  #running: Running | undefined;
  #spawns = 0;
  #failures = 0;
  #healthFailuresInRow = 0;
  #healthCheckFailures = 0;
  #lastExit: SidecarExit | undefined;
  #lastPingMs: number | undefined;
  #restartTimer: ClockTimer | undefined;
  #startTimer: ClockTimer | undefined;
  #connectTimer: ClockTimer | undefined;
  #healthTimer: ClockTimer | undefined;
  #healthAbort: AbortController | undefined;
  #draining = false;
  #stopping = false;
  #startWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  /**
   * @param options - See {@link SidecarSupervisorOptions}.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for an option of the wrong type or range.
   */
  constructor(options: SidecarSupervisorOptions) {
    super();
    const o = optionsObject('options', options) as Partial<SidecarSupervisorOptions>;
    if (typeof o.command !== 'string' || o.command.length === 0) {
      throw new InvalidArgumentError(`Expected \`command\` to be a non-empty string, got ${describe(o.command)}`);
    }
    this.#command = o.command;
    this.#args = o.args ?? [];
    if (!Array.isArray(this.#args) || this.#args.some((a) => typeof a !== 'string')) {
      throw new InvalidArgumentError(`Expected \`args\` to be an array of strings, got ${describe(o.args)}`);
    }
    this.#env = optionsObject('env', o.env);
    this.#cwd = o.cwd;
    this.#name = o.name ?? 'sidecar';
    if (!/^[\w.-]{1,40}$/.test(this.#name)) throw new InvalidArgumentError(`Expected \`name\` to be 1 to 40 of [A-Za-z0-9_.-], got ${describe(o.name)}`);
    this.#transport = oneOf('transport', o.transport, ['socket', 'stdio'], 'socket');
    this.#output = oneOf('output', o.output, ['inherit', 'ignore'], 'inherit');
    this.#clock = optionalClock('clock', o.clock);
    this.#random = optionalFunction('random', o.random) ?? Math.random;
    this.#spawn = optionalFunction('spawn', o.spawn) ?? (nodeSpawn as unknown as SidecarSpawn);
    this.#onError = optionalFunction('onError', o.onError);
    if (o.healthCheck === false) {
      this.#health = undefined;
    } else {
      const h = optionsObject('healthCheck', o.healthCheck);
      this.#health = {
        intervalMs: positiveNumber('healthCheck.intervalMs', h.intervalMs ?? HEALTH_DEFAULTS.intervalMs),
        timeoutMs: positiveNumber('healthCheck.timeoutMs', h.timeoutMs ?? HEALTH_DEFAULTS.timeoutMs),
        failureThreshold: integerInRange('healthCheck.failureThreshold', h.failureThreshold ?? HEALTH_DEFAULTS.failureThreshold, 1, 1000),
      };
    }
    this.#restart = resolveBackoff('restart', o.restart, RESTART_DEFAULTS);
    this.#maxFailures = integerInRange('restart.maxFailures', o.restart?.maxFailures ?? DEFAULT_MAX_FAILURES, 1, 1_000_000);
    this.#startTimeoutMs = positiveNumber('startTimeoutMs', o.startTimeoutMs ?? 10_000);
    this.#stopTimeoutMs = positiveNumber('stopTimeoutMs', o.stopTimeoutMs ?? 5_000);
    if (o.socketPath !== undefined) {
      if (typeof o.socketPath !== 'string' || o.socketPath.length === 0) {
        throw new InvalidArgumentError(`Expected \`socketPath\` to be a non-empty string, got ${describe(o.socketPath)}`);
      }
      this.#socketPath = o.socketPath;
    } else if (this.#transport === 'socket') {
      this.#ownDir = mkdtempSync(join(os.tmpdir(), 'patchbay-'));
      this.#socketPath = join(this.#ownDir, `${this.#name}.sock`);
    } else {
      this.#socketPath = '';
    }
    const channelOptions = optionsObject('channel', o.channel);
    this.#channel = new SidecarChannel({
      ...channelOptions,
      reconnect: false,
      clock: this.#clock,
      random: this.#random,
      onError: (err) => this.#report(err),
    });
    this.#channel.on('connect', () => this.#onConnect());
    this.#channel.on('disconnect', () => this.#onDisconnect());
  }

  /** The channel to the sidecar (it outlives each sidecar process). */
  get channel(): SidecarChannel {
    return this.#channel;
  }

  /** The state; see {@link SidecarSupervisorState}. */
  get supervisorState(): SidecarSupervisorState {
    return this.#state;
  }

  /** The Unix socket path the sidecar listens on (empty with the `stdio` transport). */
  get socketPath(): string {
    return this.#socketPath;
  }

  /** The running sidecar's pid. */
  get pid(): number | undefined {
    return this.#running?.exited === false ? this.#running.pid : undefined;
  }

  /**
   * Subscribes to an event (see {@link SidecarSupervisorEvents}).
   * @returns A function that unsubscribes.
   */
  on<E extends keyof SidecarSupervisorEvents>(event: E, listener: (...args: SidecarSupervisorEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * Spawns the sidecar (the first time) and resolves once its channel is connected.
   * Calling it again waits for the same, or resolves at once when ready.
   *
   * @throws (rejects) {@link UnavailableError} (`PB_ERR_UNAVAILABLE`) when the supervisor gives
   *   up first; {@link ClosedError} (`PB_ERR_CLOSED`) after `close()`; the signal's reason when
   *   `options.signal` aborts first (the sidecar goes on starting).
   */
  start(options?: SidecarStartOptions): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      this.assertOpen('start');
      signal = optionalSignal('signal', optionsObject('options', options).signal);
      throwIfAborted(signal);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#state === 'ready') return Promise.resolve();
    if (this.#state === 'failed') return Promise.reject(new UnavailableError(`The ${this.#name} supervisor gave up`));
    const ready = new Promise<void>((resolve, reject) => {
      if (signal === undefined) {
        this.#startWaiters.push({ resolve, reject });
        return;
      }
      // Only the wait stops on abort: the sidecar goes on starting for the other waiters.
      const waiter = {
        resolve: () => {
          listener[Symbol.dispose]();
          resolve();
        },
        reject: (error: unknown) => {
          listener[Symbol.dispose]();
          reject(error);
        },
      };
      const listener = onAbort(signal, (reason) => {
        const i = this.#startWaiters.indexOf(waiter);
        if (i !== -1) this.#startWaiters.splice(i, 1);
        reject(reason);
      });
      this.#startWaiters.push(waiter);
    });
    if (this.#state === 'idle') this.#spawnOne();
    return ready;
  }

  /** {@link SidecarChannel.send} on the channel. */
  send(type: string, data?: unknown): boolean {
    return this.#channel.send(type, data);
  }

  /** {@link SidecarChannel.request} on the channel. */
  request(type: string, data?: unknown, options?: SidecarRequestOptions): Promise<unknown> {
    return this.#channel.request(type, data, options);
  }

  /** Counters and state; see {@link SidecarSupervisorStats}. */
  stats(): SidecarSupervisorStats {
    return {
      state: this.#state,
      pid: this.pid,
      spawns: this.#spawns,
      restarts: Math.max(0, this.#spawns - 1),
      failures: this.#failures,
      healthCheckFailures: this.#healthCheckFailures,
      lastExit: this.#lastExit,
      lastPingMs: this.#lastPingMs,
      channel: this.#channel.stats(),
    };
  }

  // --- one process ---------------------------------------------------------------------------

  #spawnOne(): void {
    this.#state = 'starting';
    if (this.#transport === 'socket') {
      try {
        unlinkSync(this.#socketPath); // left by a killed predecessor
      } catch {
        // none
      }
    }
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...this.#env,
      [SIDECAR_SUPERVISED_ENV]: '1',
      [SIDECAR_SUPERVISOR_PID_ENV]: String(process.pid),
    };
    if (this.#transport === 'socket') env[SIDECAR_SOCKET_ENV] = this.#socketPath;
    else env[SIDECAR_TRANSPORT_ENV] = 'stdio';
    const out = this.#output;
    let proc: SidecarProcess;
    try {
      proc = this.#spawn(this.#command, this.#args, {
        env,
        ...(this.#cwd === undefined ? {} : { cwd: this.#cwd }),
        stdio: this.#transport === 'stdio' ? ['pipe', 'pipe', out] : ['ignore', out, out],
      });
    } catch (err) {
      this.#failure(undefined, new UnavailableError(`Cannot spawn the ${this.#name} sidecar: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const running: Running = { proc, pid: proc.pid, exited: false, failed: false, exitWaiters: [] };
    this.#running = running;
    this.#spawns++;
    proc.on('error', (err) => {
      // A spawn failure (ENOENT...) comes without an exit event when the process never started.
      if (running.pid === undefined && !running.exited) this.#onExit(running, null, null, err);
      else this.#report(err);
    });
    proc.on('exit', (code, signal) => this.#onExit(running, code, signal));
    this.#events.emit('spawn', running.pid);
    this.#startTimer = this.#clock.setTimer(() => {
      this.#startTimer = undefined;
      if (this.#running === running && !this.#channel.connected) {
        this.#failure(running, new UnavailableError(`The ${this.#name} sidecar did not become ready within ${this.#startTimeoutMs} ms`));
      }
    }, this.#startTimeoutMs);
    if (this.#transport === 'stdio') {
      if (proc.stdout == null || proc.stdin == null) {
        this.#failure(running, new UnavailableError(`The ${this.#name} sidecar has no stdin/stdout pipes`));
        return;
      }
      this.#channel.attach({ readable: proc.stdout, writable: proc.stdin });
    } else {
      this.#tryConnect(running);
    }
  }

  #tryConnect(running: Running): void {
    if (this.#running !== running || running.exited || this.#channel.connected || (this.#channel.closed && this.#channel.state !== 'closing')) return;
    Promise.resolve(sidecarConnector(this.#socketPath)()).then(
      (socket: SidecarStream) => {
        if (this.#running !== running || running.exited || this.#channel.connected || (this.#channel.closed && this.#channel.state !== 'closing')) {
          (socket as { destroy(): void }).destroy();
          return;
        }
        this.#channel.attach(socket);
      },
      () => {
        // Not listening yet: try again shortly (the start timer bounds the attempts).
        this.#connectTimer?.cancel();
        this.#connectTimer = this.#clock.setTimer(() => {
          this.#connectTimer = undefined;
          this.#tryConnect(running);
        }, CONNECT_RETRY_MS);
      },
    );
  }

  #onConnect(): void {
    const running = this.#running;
    this.#startTimer?.cancel();
    this.#startTimer = undefined;
    this.#state = this.#stopping ? 'stopping' : 'ready';
    this.#healthFailuresInRow = 0;
    if (this.#health === undefined) this.#failures = 0;
    this.#events.emit('ready', running?.pid);
    for (const w of this.#startWaiters.splice(0)) w.resolve();
    this.#scheduleHealthCheck();
  }

  #onDisconnect(): void {
    this.#healthTimer?.cancel();
    this.#healthTimer = undefined;
    this.#healthAbort?.abort();
    if (this.#stopping || (this.#draining && this.#channel.queuedMessages === 0)) return;
    const running = this.#running;
    if (running === undefined || running.exited) return; // the exit handler restarts
    // The connection dropped but the process runs: reconnect, bounded by the start timeout.
    this.#state = 'starting';
    this.#startTimer?.cancel();
    this.#startTimer = this.#clock.setTimer(() => {
      this.#startTimer = undefined;
      if (this.#running === running && !this.#channel.connected) {
        this.#failure(running, new UnavailableError(`The ${this.#name} sidecar did not accept a connection again within ${this.#startTimeoutMs} ms`));
      }
    }, this.#startTimeoutMs);
    if (this.#transport === 'socket') this.#tryConnect(running);
  }

  #onExit(running: Running, code: number | null, signal: NodeJS.Signals | null, error?: Error): void {
    if (running.exited) return;
    running.exited = true;
    for (const w of running.exitWaiters.splice(0)) w();
    const exit: SidecarExit = { pid: running.pid, code, signal };
    this.#lastExit = exit;
    this.#events.emit('exit', exit);
    if (this.#running !== running) return;
    this.#connectTimer?.cancel();
    this.#connectTimer = undefined;
    this.#channel.disconnect();
    if (this.#stopping || this.state === 'destroyed') return;
    if (!running.failed) {
      const why = error !== undefined ? `failed to start: ${error.message}` : signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      this.#failure(running, new UnavailableError(`The ${this.#name} sidecar (pid ${running.pid ?? '?'}) ${why}`, error === undefined ? undefined : { cause: error }));
    } else {
      this.#scheduleRestart();
    }
  }

  /** Counts a failure of `running` (once), kills it if it still runs, and restarts or gives up. */
  #failure(running: Running | undefined, error: UnavailableError): void {
    if (running !== undefined) {
      if (running.failed) return;
      running.failed = true;
    }
    this.#failures++;
    this.#startTimer?.cancel();
    this.#startTimer = undefined;
    this.#healthTimer?.cancel();
    this.#healthTimer = undefined;
    this.#report(error);
    if (running !== undefined && !running.exited) {
      running.proc.kill('SIGKILL'); // the exit handler goes on
      return;
    }
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#stopping || this.state === 'destroyed' || this.#restartTimer !== undefined) return;
    if (this.#failures >= this.#maxFailures) {
      this.#giveUp();
      return;
    }
    const delay = backoffDelay(this.#restart, this.#failures, this.#random);
    this.#state = 'backoff';
    this.#events.emit('restart', this.#failures, delay);
    this.#restartTimer = this.#clock.setTimer(() => {
      this.#restartTimer = undefined;
      if (!this.#stopping && this.state !== 'destroyed') this.#spawnOne();
    }, delay);
  }

  #giveUp(): void {
    this.#state = 'failed';
    const last = this.#lastExit;
    const error = new UnavailableError(
      `The ${this.#name} sidecar failed ${this.#failures} times in a row; the supervisor gave up` +
        (last === undefined ? '' : ` (last exit: ${last.signal ?? `code ${last.code}`})`),
    );
    this.#report(error);
    this.#events.emit('give-up', error);
    for (const w of this.#startWaiters.splice(0)) w.reject(error);
    this.#channel.destroy(error);
  }

  // --- health --------------------------------------------------------------------------------

  #scheduleHealthCheck(): void {
    const h = this.#health;
    if (h === undefined || this.#healthTimer !== undefined) return;
    this.#healthTimer = this.#clock.setTimer(() => {
      this.#healthTimer = undefined;
      void this.#check(h);
    }, h.intervalMs);
  }

  async #check(h: Required<SidecarHealthCheckOptions>): Promise<void> {
    const running = this.#running;
    if (running === undefined || running.exited || !this.#channel.connected) return;
    const abort = new AbortController();
    this.#healthAbort = abort;
    try {
      this.#lastPingMs = await this.#channel.ping({ timeoutMs: h.timeoutMs, signal: abort.signal });
      this.#healthFailuresInRow = 0;
      this.#failures = 0;
    } catch (err) {
      if (abort.signal.aborted || this.#running !== running || running.exited) return;
      this.#healthCheckFailures++;
      this.#healthFailuresInRow++;
      if (this.#healthFailuresInRow >= h.failureThreshold) {
        this.#events.emit('unhealthy', running.pid, this.#healthFailuresInRow);
        this.#failure(
          running,
          new UnavailableError(`The ${this.#name} sidecar (pid ${running.pid ?? '?'}) failed ${this.#healthFailuresInRow} health checks in a row`, { cause: err }),
        );
        return;
      }
    } finally {
      if (this.#healthAbort === abort) this.#healthAbort = undefined;
    }
    if (this.#running === running && !running.exited && this.#channel.connected && !this.#stopping) this.#scheduleHealthCheck();
  }

  #report(error: unknown): void {
    if (this.#onError === undefined) return;
    try {
      this.#onError(error);
    } catch {
      // an onError that throws must not break the supervisor
    }
  }

  // --- shutdown ------------------------------------------------------------------------------

  #waitExit(running: Running, ms: number): Promise<boolean> {
    if (running.exited) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = this.#clock.setTimer(() => resolve(running.exited), ms);
      running.exitWaiters.push(() => {
        timer.cancel();
        resolve(true);
      });
    });
  }

  /** Drains the channel, says BYE, waits for the sidecar to exit (SIGTERM, then SIGKILL, if it does not). */
  protected override async onClose(): Promise<void> {
    this.#draining = true;
    await this.#channel.close();
    this.#stopping = true;
    const gaveUp = this.#state === 'failed';
    if (!gaveUp) this.#state = 'stopping';
    this.#cancelTimers();
    for (const w of this.#startWaiters.splice(0)) w.reject(new UnavailableError(`The ${this.#name} supervisor closed before the sidecar was ready`));
    const running = this.#running;
    if (running !== undefined && !running.exited) {
      if (this.#transport === 'stdio') running.proc.stdin?.end();
      if (!(await this.#waitExit(running, this.#stopTimeoutMs))) {
        running.proc.kill('SIGTERM');
        if (!(await this.#waitExit(running, this.#stopTimeoutMs))) {
          running.proc.kill('SIGKILL');
          await this.#waitExit(running, this.#stopTimeoutMs);
        }
      }
    }
    this.#state = gaveUp ? 'failed' : 'stopped';
    this.#removeDir();
    this.#events.removeAllListeners();
  }

  /** Kills the sidecar at once and drops the queue. */
  protected override onDestroy(reason: unknown): void {
    this.#stopping = true;
    this.#cancelTimers();
    const error = reason ?? new UnavailableError(`The ${this.#name} supervisor was destroyed`);
    for (const w of this.#startWaiters.splice(0)) w.reject(error);
    this.#channel.destroy(error);
    const running = this.#running;
    if (running !== undefined && !running.exited) running.proc.kill('SIGKILL');
    if (this.#state !== 'failed') this.#state = 'stopped';
    this.#removeDir();
    this.#events.removeAllListeners();
  }

  #cancelTimers(): void {
    for (const t of [this.#restartTimer, this.#startTimer, this.#connectTimer, this.#healthTimer]) t?.cancel();
    this.#restartTimer = this.#startTimer = this.#connectTimer = this.#healthTimer = undefined;
    this.#healthAbort?.abort();
  }

  #removeDir(): void {
    if (this.#ownDir === undefined) return;
    try {
      rmSync(this.#ownDir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}
