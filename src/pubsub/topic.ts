/**
 * Topic names and patterns, NATS style: `.`-separated tokens; in patterns `*` stands for exactly
 * one token and `>` (last only) for one or more trailing tokens.
 *
 * Tokens use letters, digits and `_ - ~ : @`. So `__proto__`, `constructor` and `toString` are
 * ordinary topics: all lookups go through `Map`s, never plain objects.
 *
 * @module
 */
import { InvalidArgumentError } from '../core/errors.js';
import { describe } from '../core/validate.js';

/** Longest topic or pattern accepted, in characters. */
export const MAX_TOPIC_LENGTH = 256;
/** Most tokens a topic or pattern may have. */
export const MAX_TOPIC_TOKENS = 32;

const TOKEN = /^[A-Za-z0-9_\-~:@]+$/;

/** Topics starting with this token are reply inboxes: private to one requester. */
export const INBOX_PREFIX = '_INBOX';

function fail(kind: string, value: unknown, why: string): never {
  throw new InvalidArgumentError(`Invalid ${kind} ${describe(value)}: ${why}`);
}

function checkShape(kind: string, value: unknown): string[] {
  if (typeof value !== 'string') fail(kind, value, 'expected a string');
  if (value.length === 0) fail(kind, value, 'it is empty');
  if (value.length > MAX_TOPIC_LENGTH) fail(kind, value, `it is longer than ${MAX_TOPIC_LENGTH} characters`);
  const tokens = value.split('.');
  if (tokens.length > MAX_TOPIC_TOKENS) fail(kind, value, `it has more than ${MAX_TOPIC_TOKENS} tokens`);
  return tokens;
}

/**
 * Checks a topic name (no wildcards) and returns its tokens.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) naming what is wrong.
 */
export function parseTopic(topic: unknown): string[] {
  const tokens = checkShape('topic', topic);
  for (const token of tokens) {
    if (token === '*' || token === '>') fail('topic', topic, 'wildcards (* and >) are for subscribe patterns, not topics');
    if (token.length === 0) fail('topic', topic, 'it has an empty token (a leading, trailing or double ".")');
    if (!TOKEN.test(token)) fail('topic', topic, 'tokens may hold only letters, digits and _ - ~ : @');
  }
  return tokens;
}

/**
 * Checks a subscribe pattern and returns its tokens.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) naming what is wrong.
 */
export function parsePattern(pattern: unknown): string[] {
  const tokens = checkShape('pattern', pattern);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === '*') continue;
    if (token === '>') {
      if (i !== tokens.length - 1) fail('pattern', pattern, '">" may only be the last token');
      continue;
    }
    if (token.length === 0) fail('pattern', pattern, 'it has an empty token (a leading, trailing or double ".")');
    if (!TOKEN.test(token)) fail('pattern', pattern, 'tokens may hold only letters, digits, _ - ~ : @, or be * or >');
  }
  if (tokens[0] === INBOX_PREFIX) fail('pattern', pattern, `topics under ${INBOX_PREFIX} are private reply inboxes`);
  return tokens;
}

/** Whether `pattern` (already valid) has a wildcard. */
export function isWildcard(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('>');
}

/**
 * Whether topic tokens match pattern tokens. The reference matcher: simple and obviously right,
 * used by tests and for single checks; the broker uses {@link TopicIndex}.
 */
export function matchTokens(pattern: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '>') return topic.length > i;
    if (i >= topic.length) return false;
    if (p !== '*' && p !== topic[i]) return false;
  }
  return pattern.length === topic.length;
}

class TrieNode<V> {
  // Allocated on first use: most nodes need only one of these.
  children: Map<string, TrieNode<V>> | null = null;
  star: TrieNode<V> | null = null;
  /** Values whose pattern ends with `>` here. */
  rest: V[] | null = null;
  /** Values whose pattern ends exactly here. */
  exact: V[] | null = null;

  get empty(): boolean {
    return (this.children === null || this.children.size === 0) && this.star === null && this.rest === null && this.exact === null;
  }
}

function addValue<V>(list: V[] | null, value: V): V[] | null {
  if (list === null) return [value];
  if (list.includes(value)) return null;
  list.push(value);
  return list;
}

/** Removes `value`; returns the list, `null` when it became empty, or `undefined` when absent. */
function removeValue<V>(list: V[] | null, value: V): V[] | null | undefined {
  if (list === null) return undefined;
  const i = list.indexOf(value);
  if (i === -1) return undefined;
  if (list.length === 1) return null;
  list.splice(i, 1);
  return list;
}

/**
 * An index from patterns to values that finds every value whose pattern matches a topic in
 * O(tokens x matching branches), not O(patterns). Matches are cached per topic until the index
 * changes, so a steady publish load on hot topics costs one `Map` lookup per publish.
 *
 * @typeParam V - The values stored (subscriptions, say).
 */
export class TopicIndex<V> {
  readonly #root = new TrieNode<V>();
  readonly #cache = new Map<string, readonly V[]>();
  readonly #cacheSize: number;
  #size = 0;

  /** @param cacheSize - Most topics whose matches are cached; 0 disables the cache. */
  constructor(cacheSize = 65_536) {
    this.#cacheSize = cacheSize;
  }

  /** How many (pattern, value) entries are held. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds `value` under `pattern` (tokens from {@link parsePattern}). Add a value under one
   * pattern only: under two that both match a topic, `match` would return it twice.
   */
  add(tokens: readonly string[], value: V): void {
    let node = this.#root;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t === '>') {
        const list = addValue(node.rest, value);
        if (list !== null) {
          node.rest = list;
          this.#changed(1);
        }
        return;
      }
      if (t === '*') node = node.star ??= new TrieNode<V>();
      else {
        const children = (node.children ??= new Map());
        let next = children.get(t);
        if (next === undefined) children.set(t, (next = new TrieNode<V>()));
        node = next;
      }
    }
    const list = addValue(node.exact, value);
    if (list !== null) {
      node.exact = list;
      this.#changed(1);
    }
  }

  /** Removes `value` from under `pattern`, pruning empty branches. Returns whether it was there. */
  remove(tokens: readonly string[], value: V): boolean {
    const path: [TrieNode<V>, string][] = [];
    let node: TrieNode<V> | null | undefined = this.#root;
    let removed = false;
    for (let i = 0; i < tokens.length && node; i++) {
      const t = tokens[i]!;
      if (t === '>') {
        const list = removeValue(node.rest, value);
        if (list !== undefined) {
          node.rest = list;
          removed = true;
        }
        break;
      }
      path.push([node, t]);
      node = t === '*' ? node.star : node.children?.get(t);
      if (node && i === tokens.length - 1) {
        const list = removeValue(node.exact, value);
        if (list !== undefined) {
          node.exact = list;
          removed = true;
        }
      }
    }
    if (!removed) return false;
    this.#changed(-1);
    // Prune: walk back while the child is empty.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, t] = path[i]!;
      const child = t === '*' ? parent.star : parent.children?.get(t);
      if (!child || !child.empty) break;
      if (t === '*') parent.star = null;
      else {
        parent.children!.delete(t);
        if (parent.children!.size === 0) parent.children = null;
      }
    }
    return true;
  }

  #changed(delta: number): void {
    this.#size += delta;
    if (this.#cache.size > 0) this.#cache.clear();
  }

  /** Every value held, each once per pattern it is under, in no particular order. @internal */
  values(): V[] {
    const out: V[] = [];
    const stack: TrieNode<V>[] = [this.#root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.exact !== null) for (const v of node.exact) out.push(v);
      if (node.rest !== null) for (const v of node.rest) out.push(v);
      if (node.star !== null) stack.push(node.star);
      if (node.children !== null) for (const child of node.children.values()) stack.push(child);
    }
    return out;
  }

  /**
   * Every value whose pattern matches `topic` (a valid topic). Each value appears once: a value
   * lives at one node, and a walk reaches each node at most once.
   */
  match(topic: string): readonly V[] {
    const cached = this.#cache.get(topic);
    if (cached !== undefined) return cached;
    const out: V[] = [];
    this.#walk(this.#root, topic.split('.'), 0, out);
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
      this.#cache.set(topic, out);
    }
    return out;
  }

  #walk(node: TrieNode<V>, tokens: readonly string[], i: number, out: V[]): void {
    if (i === tokens.length) {
      if (node.exact !== null) for (const v of node.exact) out.push(v);
      return;
    }
    if (node.rest !== null) for (const v of node.rest) out.push(v);
    const child = node.children?.get(tokens[i]!);
    if (child !== undefined) this.#walk(child, tokens, i + 1, out);
    if (node.star !== null) this.#walk(node.star, tokens, i + 1, out);
  }
}
