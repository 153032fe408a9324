/**
 * What a poller or a stream follows: one or more topics, or one pattern. Checked once here for
 * every handler.
 *
 * @module
 */
import { InvalidArgumentError } from '../core/errors.js';
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
