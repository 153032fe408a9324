/**
 * Request bodies with a byte limit: checked against `Content-Length` before reading, and
 * counted while reading, so an oversized body is refused without being buffered.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { BodyTooLargeError, ProtocolError, UnsupportedMediaTypeError } from '../core/errors.js';
import { type JsonLimits, parseJson } from '../core/json.js';

/** The default body limit: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Reads the whole body, up to `limitBytes`.
 * @throws (rejects) BodyTooLargeError (`PB_ERR_BODY_TOO_LARGE`) past the limit, before or while
 *   reading; ProtocolError (`PB_ERR_PROTOCOL`) when the client aborts mid-body.
 */
export function readBody(req: IncomingMessage, limitBytes = DEFAULT_MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limitBytes) {
      req.resume(); // drain, so the connection can still carry the answer
      reject(new BodyTooLargeError(limitBytes));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error: unknown, body?: Buffer): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (error === undefined) resolve(body!);
      else reject(error);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        chunks.length = 0;
        req.resume();
        finish(new BodyTooLargeError(limitBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined, Buffer.concat(chunks, size));
    const onError = (error: Error): void => finish(new ProtocolError('The request body could not be read', { cause: error }));
    const onClose = (): void => {
      if (!req.complete) finish(new ProtocolError('The client closed the connection before the body was complete'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Turns a body into a value by its `Content-Type`: `text/plain` (or none) as a UTF-8 string,
 * `application/json` (and `+json` types) as the parsed value, through {@link parseJson}: nested at
 * most `limits.maxDepth` deep (64 by default), with no `__proto__` key at any depth.
 * @throws ProtocolError (`PB_ERR_PROTOCOL`) for invalid JSON or UTF-8, JSON nested too deep or
 *   with a `__proto__` key; UnsupportedMediaTypeError (`PB_ERR_UNSUPPORTED_MEDIA_TYPE`) for another type.
 */
export function decodeBody(contentType: string | undefined, body: Buffer, limits?: JsonLimits): unknown {
  const type = (contentType ?? 'text/plain').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json' || type.endsWith('+json')) {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch (cause) {
      throw new ProtocolError('The JSON body is not valid UTF-8', { cause });
    }
    return parseJson(text, { maxDepth: limits?.maxDepth, what: limits?.what ?? 'The body' });
  }
  if (type === 'text/plain' || type === '') {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch (cause) {
      throw new ProtocolError('The text body is not valid UTF-8', { cause });
    }
  }
  throw new UnsupportedMediaTypeError(`Content-Type ${JSON.stringify(type)} is not supported: send text/plain or application/json`);
}
