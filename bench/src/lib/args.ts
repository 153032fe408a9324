/**
 * Command-line options of the suites: one loop that walks the arguments, the checks several
 * suites make, and the two option sets that suites share word for word:
 *
 * - the server suites (longpoll, sse, ws): `--runs N`, `--sizes a,b`, `--servers x,y`,
 *   `--no-write`, `--node-flags "..."`;
 * - the child-process suites (broker, sidecar): `--runs N`, `--scale X`, `--no-write`,
 *   `--no-wait`;
 * - the Redis suites (redis, jobs): `--runs N`, `--no-write`, `--quick`.
 *
 * Every error is thrown as an `Error` whose message names the option and what it takes.
 */

/** Handles one option; `value()` takes the argument after it (and throws when there is none). */
export type OptionHandler = (value: () => string) => void;

/**
 * Walks `argv`, calling the handler of each option in turn.
 *
 * @param usage - The options, as the error for an unknown one lists them (`--runs N, --no-write`).
 * @throws Error `unknown option X; options: <usage>`, or `X needs a value`.
 */
export function readOptions(argv: readonly string[], handlers: Readonly<Record<string, OptionHandler>>, usage: string): void {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const handler = Object.hasOwn(handlers, a) ? handlers[a] : undefined;
    if (handler === undefined) throw new Error(`unknown option ${a}; options: ${usage}`);
    handler(() => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    });
  }
}

/** Node flags given as one argument (`"--cpu-prof --cpu-prof-dir=prof"`), split at spaces. */
export const splitFlags = (value: string): string[] => value.split(' ').filter((f) => f !== '');

/**
 * @throws Error `<name> must be an integer from <lo> to <hi>` unless `value` is one.
 */
export function checkInteger(name: string, value: number, lo: number, hi: number): void {
  if (!Number.isInteger(value) || value < lo || value > hi) throw new Error(`${name} must be an integer from ${lo} to ${hi}`);
}

/**
 * @throws Error `unknown server X; known: a, b` for a server not in `known`.
 */
export function checkServers(servers: readonly string[], known: readonly string[]): void {
  for (const s of servers) if (!known.includes(s)) throw new Error(`unknown server ${s}; known: ${known.join(', ')}`);
}

/**
 * `--node-flags` is for profiling: the servers then do more than they are measured for, so it
 * goes only with `--no-write`.
 *
 * @throws Error when there are node flags and the report would be written.
 */
export function checkNodeFlags(nodeFlags: readonly string[], write: boolean): void {
  if (nodeFlags.length > 0 && write) throw new Error('--node-flags is for profiling: use it with --no-write');
}

/** The options of a server suite (longpoll, sse, ws). */
export interface ServerSuiteOptions<S extends string> {
  /** `--runs N`: trials per (server, size), 1..10. @default 3 */
  runs: number;
  /** `--sizes a,b`: clients per trial, each 1..`maxSize` (one process may hold 20,000 open files). */
  sizes: number[];
  /** `--servers x,y`: which servers, in this order. @default every known one */
  servers: S[];
  /** False with `--no-write`: print the report only. @default true */
  write: boolean;
  /** `--node-flags "..."`: extra `node` flags for the Node servers (profiling; needs `--no-write`). */
  nodeFlags: string[];
}

/** What a server suite's options default to, and how its usage line and errors say it. */
export interface ServerSuiteDefaults<S extends string> {
  /** Every server the suite knows, run by default in this order. */
  readonly servers: readonly S[];
  readonly sizes: readonly number[];
  /** The `--sizes` example in the usage line (`1000,10000`). */
  readonly sizesExample: string;
  /** Why a size is at most `maxSize`, in the error (`20,000 open files per process`). */
  readonly sizeLimitReason: string;
  /**
   * The largest size the suite takes (a suite whose servers of several processes hold 19,000
   * clients per process takes more than one process may hold).
   * @default 19_000
   */
  readonly maxSize?: number;
}

/**
 * Parses a server suite's options.
 *
 * @throws Error on an unknown option or server, a missing value, runs outside 1..10, a size
 *   outside 1..`maxSize` (19,000 by default), or `--node-flags` without `--no-write`.
 */
export function parseServerSuiteArgs<S extends string>(argv: readonly string[], defaults: ServerSuiteDefaults<S>): ServerSuiteOptions<S> {
  const opts: ServerSuiteOptions<S> = { runs: 3, sizes: [...defaults.sizes], servers: [...defaults.servers], write: true, nodeFlags: [] };
  readOptions(
    argv,
    {
      '--runs': (value) => (opts.runs = Number(value())),
      '--sizes': (value) => (opts.sizes = value().split(',').map(Number)),
      '--servers': (value) => (opts.servers = value().split(',') as S[]),
      '--no-write': () => (opts.write = false),
      '--node-flags': (value) => (opts.nodeFlags = splitFlags(value())),
    },
    `--runs N, --sizes ${defaults.sizesExample}, --servers ${defaults.servers.join(',')}, --no-write, --node-flags "..."`,
  );
  if (!Number.isInteger(opts.runs) || opts.runs < 1 || opts.runs > 10) throw new Error('--runs must be 1..10');
  checkNodeFlags(opts.nodeFlags, opts.write);
  const maxSize = defaults.maxSize ?? 19_000;
  for (const s of opts.sizes) if (!Number.isInteger(s) || s < 1 || s > maxSize) throw new Error(`each size must be 1..${maxSize} (${defaults.sizeLimitReason})`);
  checkServers(opts.servers, defaults.servers);
  return opts;
}

/** The options of a child-process suite (broker, sidecar). */
export interface ChildSuiteOptions {
  /** `--runs N`: runs, 1..20. @default 5 */
  runs: number;
  /** `--scale X`: the workload scaled by X, in (0, 1] (0.1 for a smoke run). @default 1 */
  scale: number;
  /** False with `--no-write`: print the report only. @default true */
  write: boolean;
  /** False with `--no-wait`: do not wait for a quiet machine before each child. @default true */
  waitQuiet: boolean;
}

/**
 * Parses a child-process suite's options.
 *
 * @throws Error on an unknown option, a missing value, runs outside 1..20 or a scale outside (0, 1].
 */
export function parseChildSuiteArgs(argv: readonly string[]): ChildSuiteOptions {
  const opts: ChildSuiteOptions = { runs: 5, scale: 1, write: true, waitQuiet: true };
  readOptions(
    argv,
    {
      '--runs': (value) => (opts.runs = Number(value())),
      '--scale': (value) => (opts.scale = Number(value())),
      '--no-write': () => (opts.write = false),
      '--no-wait': () => (opts.waitQuiet = false),
    },
    '--runs N, --scale X, --no-write, --no-wait',
  );
  if (!Number.isInteger(opts.runs) || opts.runs < 1 || opts.runs > 20) throw new Error('--runs must be 1..20');
  if (!(opts.scale > 0 && opts.scale <= 1)) throw new Error('--scale must be in (0, 1]');
  return opts;
}

/** The options of the Redis suites (redis, jobs). */
export interface QuickSuiteOptions {
  /** `--runs N` (1..10). */
  runs: number;
  /** Not `--no-write`: write the results JSON and the docs section. */
  write: boolean;
  /** `--quick`: a smoke test with small counts (only with `--no-write`). */
  quick: boolean;
}

/**
 * Parses `--runs N` (default 3), `--no-write` and `--quick`.
 * @throws Error on an unknown option, runs outside 1..10, or `--quick` without `--no-write`.
 */
export function parseQuickSuiteArgs(argv: readonly string[]): QuickSuiteOptions {
  const opts: QuickSuiteOptions = { runs: 3, write: true, quick: false };
  readOptions(
    argv,
    {
      '--runs': (value) => (opts.runs = Number(value())),
      '--no-write': () => (opts.write = false),
      '--quick': () => (opts.quick = true),
    },
    '--runs N, --no-write, --quick (a smoke test: small counts, needs --no-write)',
  );
  if (!Number.isInteger(opts.runs) || opts.runs < 1 || opts.runs > 10) throw new Error('--runs must be 1..10');
  if (opts.quick && opts.write) throw new Error('--quick is a smoke test: use it with --no-write');
  return opts;
}
