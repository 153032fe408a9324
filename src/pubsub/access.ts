/**
 * Access to topics: the one shape of every `authorize` hook, and what patterns need to be safe.
 *
 * Every primitive asks the same question the same way: `authorize(target, context)`, where
 * `target` is the topics or the pattern asked for ({@link TopicTarget}) and `context` is who asks
 * (the `node:http` request for the HTTP handlers, the connection's context for WebSocket frames,
 * the `context` option for the broker). The answer is an {@link AccessVerdict}: `true` allows,
 * anything but `true` or a grant object refuses with `PB_ERR_FORBIDDEN`, and a grant
 * ({@link AccessGrant}) allows and says more: who the connection is (`identity`), and which topics
 * a pattern may deliver (`canRead`).
 *
 * ## Patterns
 *
 * A pattern is a set of topics, most of them unknown when it is authorized: `admin.*`, `>` and
 * `*.secret` all reach `admin.secret`. Checking the pattern's text (`pattern !== 'admin.>'`) is
 * therefore never enough. Two safe ways:
 *
 * - refuse any pattern that can reach a protected topic: {@link targetOverlaps} tells whether a
 *   target can match a protected pattern;
 * - allow it with a grant whose `canRead(topic)` is asked for each topic the subscription meets
 *   (once per topic per subscription, cached): a topic it refuses is never delivered, in a replay
 *   or live, and is skipped silently.
 *
 * The HTTP and WebSocket handlers refuse patterns from clients unless the app opts in
 * (`allowPatterns`).
 *
 * @module
 */
import { ForbiddenError, InvalidArgumentError } from '../core/errors.js';
import type { TopicTarget } from './target.js';
import { isWildcard, parsePattern, parseTopic } from './topic.js';

/** More that a hook can say when it allows. */
export interface AccessGrant {
  /**
   * Who the connection is (a user id, say). Kept with the subscription, stream or WebSocket
   * subscription (`Subscription.identity`, `SseStream.identity`, `WsConnection.identity(sid)`).
   */
  readonly identity?: string;
  /**
   * May this subscription read messages of `topic`? Asked once per topic the subscription meets
   * (the answer is cached with the subscription); a message whose topic it refuses is skipped, in
   * replays and live. Must answer synchronously. Give it whenever a pattern could reach topics the
   * caller may not read.
   */
  readonly canRead?: (topic: string) => boolean;
}

/** What an `authorize` hook answers: `true` or a grant allows; anything else refuses (`403`, `PB_ERR_FORBIDDEN`). */
export type AccessVerdict = boolean | AccessGrant;

/**
 * The one shape of every `authorize` hook: asked with the topics or pattern (`target`) and who
 * asks (`context`). May answer with a promise.
 *
 * @typeParam C - What `context` is: `IncomingMessage` for the HTTP handlers, the connection's
 *   context for WebSocket, the `context` option for the broker.
 */
export type Authorize<C = unknown> = (target: TopicTarget, context: C) => AccessVerdict | Promise<AccessVerdict>;

/** A verdict, resolved: who, and the topic check to apply (if any). */
export interface Access {
  /** The grant's `identity`, if it gave one. */
  readonly identity: string | undefined;
  /** The grant's `canRead`, cached per topic; `undefined` when every topic of the target may be read. */
  readonly canRead: ((topic: string) => boolean) | undefined;
}

/** Allowed, with nothing more said. */
export const OPEN_ACCESS: Access = Object.freeze({ identity: undefined, canRead: undefined });

/** How many topics' answers one subscription remembers before it starts afresh. */
const TOPIC_CACHE = 1024;

/**
 * Asks `hook` about `target` for `context`, and turns its answer into an {@link Access}.
 * Without a hook, everything is allowed. @internal
 * @param what - Says what was refused, in the error message ("subscribe to this target").
 * @throws (rejects) ForbiddenError (`PB_ERR_FORBIDDEN`) when the hook refuses; what the hook throws.
 */
export async function authorizeAccess<C>(hook: Authorize<C> | undefined, target: TopicTarget, context: C, what: string): Promise<Access> {
  if (hook === undefined) return OPEN_ACCESS;
  return toAccess(await hook(target, context), what);
}

/** Turns a verdict into an {@link Access}. @internal */
export function toAccess(verdict: unknown, what: string): Access {
  if (verdict === true) return OPEN_ACCESS;
  if (typeof verdict !== 'object' || verdict === null) throw new ForbiddenError(`Not allowed to ${what}`);
  const grant = verdict as AccessGrant;
  const identity = grant.identity;
  if (identity !== undefined && typeof identity !== 'string') {
    throw new InvalidArgumentError('An authorize hook answered with an `identity` that is not a string');
  }
  const canRead = grant.canRead;
  if (canRead !== undefined && typeof canRead !== 'function') {
    throw new InvalidArgumentError('An authorize hook answered with a `canRead` that is not a function');
  }
  return { identity, canRead: canRead === undefined ? undefined : cachedTopicCheck(canRead) };
}

/** Combines two topic checks (either may be absent). @internal */
export function bothTopicChecks(
  a: ((topic: string) => boolean) | undefined,
  b: ((topic: string) => boolean) | undefined,
): ((topic: string) => boolean) | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return (topic) => a(topic) && b(topic);
}

/**
 * Wraps a per-topic check so each topic is asked once (up to 1,024 topics, then afresh). A check
 * that throws counts as a refusal: an error in the app's hook never delivers a topic. @internal
 */
export function cachedTopicCheck(check: (topic: string) => boolean): (topic: string) => boolean {
  let cache = new Map<string, boolean>();
  return (topic) => {
    let ok = cache.get(topic);
    if (ok === undefined) {
      try {
        ok = check(topic) === true;
      } catch {
        ok = false;
      }
      if (cache.size >= TOPIC_CACHE) cache = new Map();
      cache.set(topic, ok);
    }
    return ok;
  };
}

/**
 * Whether some topic matches both patterns (`*` one token, `>` one or more trailing tokens). A
 * topic is a pattern without wildcards, so this also tells whether a pattern matches a topic.
 *
 * @example
 * ```ts
 * patternsOverlap('admin.*', 'admin.>'); // true
 * patternsOverlap('>', 'admin.>'); // true
 * patternsOverlap('*.secret', 'admin.>'); // true: admin.secret
 * patternsOverlap('chat.*', 'admin.>'); // false
 * ```
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when either is not a valid pattern.
 */
export function patternsOverlap(a: string, b: string): boolean {
  return tokensOverlap(parsePattern(a), parsePattern(b), 0, 0);
}

function tokensOverlap(a: readonly string[], b: readonly string[], i: number, j: number): boolean {
  for (;;) {
    const endA = i === a.length;
    const endB = j === b.length;
    if (endA && endB) return true;
    if (a[i] === '>') return !endB; // `>` takes one or more tokens: whatever b has left, or b's own `>`
    if (b[j] === '>') return !endA;
    if (endA || endB) return false;
    if (a[i] !== '*' && b[j] !== '*' && a[i] !== b[j]) return false;
    i++;
    j++;
  }
}

/**
 * Whether a target (topics, or a pattern) can reach a topic that `protectedPattern` matches: the
 * safe test for a hook that keeps a family of topics private.
 *
 * @example
 * ```ts
 * const authorize: Authorize<IncomingMessage> = (target, req) =>
 *   !targetOverlaps(target, 'admin.>') || isAdmin(req);
 * ```
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an invalid topic or pattern.
 */
export function targetOverlaps(target: TopicTarget, protectedPattern: string): boolean {
  const guard = parsePattern(protectedPattern);
  if (target.pattern !== undefined && target.pattern !== '') return tokensOverlap(parsePattern(target.pattern), guard, 0, 0);
  for (const topic of target.topics ?? []) if (tokensOverlap(parseTopic(topic), guard, 0, 0)) return true;
  return false;
}

/**
 * The target a broker call names: a pattern with wildcards, else one topic. @internal
 */
export function targetOf(patternOrTopic: string): TopicTarget {
  return isWildcard(patternOrTopic) ? { pattern: patternOrTopic } : { topics: [patternOrTopic] };
}
