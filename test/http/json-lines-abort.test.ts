/**
 * The JSON-lines streams remove the abort listener they add to the caller's signal: a server
 * that passes one long-lived signal (its shutdown signal) to every stream must not collect a
 * listener per request.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { jsonLinesResponse, streamJsonLines } from '../../src/index.js';
import { serveRig } from '../helpers.js';

const abortListeners = (signal: AbortSignal): number => getEventListeners(signal, 'abort').length;

describe('JSON-lines streams and the caller signal', () => {
  it('jsonLinesResponse leaves no listener once the body is read to the end', async () => {
    const shutdown = new AbortController();
    for (let i = 0; i < 20; i++) await jsonLinesResponse([1, 2, 3], { signal: shutdown.signal }).text();
    expect(abortListeners(shutdown.signal)).toBe(0);
  });

  it('jsonLinesResponse leaves no listener once the reader cancels the body', async () => {
    const shutdown = new AbortController();
    const body = jsonLinesResponse(
      (async function* () {
        for (let i = 0; ; i++) yield { i };
      })(),
      { signal: shutdown.signal },
    ).body!;
    const reader = body.getReader();
    await reader.read();
    await reader.cancel();
    expect(abortListeners(shutdown.signal)).toBe(0);
  });

  it('streamJsonLines leaves no listener once it resolves', async () => {
    const shutdown = new AbortController();
    const results: string[] = [];
    const rig = await serveRig((_req, res) => void streamJsonLines(res, [{ a: 1 }], { signal: shutdown.signal }).then((r) => results.push(r.outcome)));
    for (let i = 0; i < 5; i++) expect(await (await fetch(rig.url)).text()).toContain('"a":1');
    expect(results).toEqual(['complete', 'complete', 'complete', 'complete', 'complete']);
    expect(abortListeners(shutdown.signal)).toBe(0);
  });

  it('a signal that already aborted ends the stream at once', async () => {
    // The body errors with the abort before any record: a reader never sees a complete stream.
    await expect(jsonLinesResponse([1, 2, 3], { signal: AbortSignal.abort() }).text()).rejects.toThrow(/abort/i);
  });
});
