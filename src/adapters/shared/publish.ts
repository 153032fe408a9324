/**
 * Publishing over HTTP, the contract of the demo's `POST /pub/:topic`, written once for every
 * adapter: the body (`text/plain` as a string, `application/json` as its value, at most
 * `maxBodyBytes`) is published to the topic and answered `201` with `{ "id" }`, the id the
 * publish returned (the same id SSE events and long-poll messages carry).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ForbiddenError, InvalidArgumentError, MethodNotAllowedError } from '../../core/index.js';
import { decodeBody, DEFAULT_MAX_BODY_BYTES, readBody, sendError, sendJson } from '../../http/index.js';
import type { PubSubBroker } from '../../pubsub/index.js';

/** Options every adapter's `publish` takes. */
export interface PublishOptions<Req> {
  /**
   * The largest body, in bytes; a larger one is answered `413` (`PB_ERR_BODY_TOO_LARGE`).
   * @defaultValue 1048576 (1 MiB)
   */
  readonly maxBodyBytes?: number;
  /**
   * May this request publish to this topic? Return `false` to answer `403` (`PB_ERR_FORBIDDEN`).
   * @defaultValue anyone may publish
   */
  readonly authorize?: (req: Req, topic: string) => boolean | Promise<boolean>;
}

/**
 * Serves one publish on `node:http` terms. Never rejects: errors are answered as JSON.
 * @internal
 */
export async function servePublish(
  broker: PubSubBroker,
  req: IncomingMessage,
  res: ServerResponse,
  topic: string | undefined,
  allowed: ((topic: string) => boolean | Promise<boolean>) | undefined,
  maxBodyBytes = DEFAULT_MAX_BODY_BYTES,
): Promise<void> {
  try {
    if (req.method !== 'POST') throw new MethodNotAllowedError(req.method ?? '?', ['POST']);
    if (topic === undefined || topic === '') throw new InvalidArgumentError('Expected a topic in the path');
    const body = await readBody(req, maxBodyBytes);
    const data = decodeBody(headerText(req.headers['content-type']), body);
    if (allowed !== undefined && (await allowed(topic)) !== true) throw new ForbiddenError('Not allowed to publish to this topic');
    const message = await broker.publish(topic, data);
    sendJson(res, 201, { id: message.id });
  } catch (error) {
    sendError(res, error);
  }
}

/** Checks `maxBodyBytes` once, when the adapter is made. @internal */
export function checkMaxBodyBytes(value: number | undefined): number {
  const v = value ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`Expected \`maxBodyBytes\` to be a non-negative integer, got ${String(value)}`);
  return v;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
