/**
 * What a poller or a stream follows: one or more topics, or one pattern. Checked once here for
 * every handler.
 *
 * @module
 */
import { ForbiddenError, InvalidArgumentError } from '../core/errors.js';
import { parsePattern, parseTopic } from './topic.js';

/** Topics, or a pattern, as a request names them. */
export interface TopicTarget {
  /** One or more topics. */
  readonly topics?: readonly string[];
  /** A pattern (`*` one token, `>` the rest). */
  readonly pattern?: string;
}

/** A checked {@link TopicTarget}: either `pattern` (with its tokens) or distinct `topics`. @internal */
export type ParsedTarget =
  | { readonly pattern: string; readonly tokens: readonly string[]; readonly topics?: undefined }
  | { readonly topics: readonly string[]; readonly pattern?: undefined; readonly tokens?: undefined };

/**
 * Checks a target: a pattern alone, or 1 to `maxTopics` valid topics (duplicates dropped). @internal
 * @param what - Names the action in messages ("poll", "stream").
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) naming what is wrong.
 */
export function parseTarget(target: TopicTarget, maxTopics: number, what: string): ParsedTarget {
  const topics = target.topics ?? [];
  const pattern = target.pattern;
  if (pattern !== undefined && pattern !== '') {
    if (topics.length > 0) throw new InvalidArgumentError('Give either topics or a pattern, not both');
    return { pattern, tokens: parsePattern(pattern) };
  }
  if (topics.length === 0) throw new InvalidArgumentError(`Expected a topic (or a pattern) to ${what}`);
  const unique = [...new Set(topics)];
  if (unique.length > maxTopics) {
    throw new InvalidArgumentError(
      maxTopics === 1
        ? `Expected one topic (or a pattern) to ${what}, got ${unique.length}; use a pattern for several`
        : `Expected at most ${maxTopics} topics to ${what}, got ${unique.length}`,
    );
  }
  for (const topic of unique) parseTopic(topic);
  return { topics: unique };
}

/**
 * The target a client names in a query string (`topic`, repeatable, or `pattern`), for a handler
 * called without one: secure by default, so only when the app opted in (`queryTarget`), and a
 * pattern only with `allowPatterns`. @internal
 * @param handler - Names the handler in the message ("LongPollHandler").
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) without `queryTarget`; ForbiddenError
 *   (`PB_ERR_FORBIDDEN`) for a pattern without `allowPatterns`.
 */
export function queryTarget(query: URLSearchParams, options: { readonly queryTarget: boolean; readonly allowPatterns: boolean }, handler: string): TopicTarget {
  if (!options.queryTarget) {
    throw new InvalidArgumentError(
      `${handler}.handle() was called without a target: pass one (\`handle(req, res, { topics: [topic] })\`), or set \`queryTarget: true\` to let clients name topics in the query string`,
    );
  }
  const pattern = query.get('pattern') ?? undefined;
  if (pattern !== undefined && pattern !== '' && !options.allowPatterns) {
    throw new ForbiddenError('Patterns from clients are refused here: the app may set `allowPatterns: true` to accept the `pattern` query');
  }
  return { topics: query.getAll('topic'), pattern };
}
