import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Purgatory } from '../../src/index.js';
import { until } from '../helpers.js';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';

let base = '';
let demo: { server: Server; purgatory: Purgatory };

beforeAll(async () => {
  demo = createDemo();
  await new Promise<void>((resolve) => demo.server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(demo.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  demo.server.closeAllConnections();
  await new Promise((resolve) => demo.server.close(resolve));
});

describe('demo server', () => {
  it('serves the page', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('patchbay demo');
  });

  it('a waiting request is answered when its key is woken', async () => {
    const waiting = fetch(`${base}/wait/room?timeoutMs=30000`);
    // Wake only once the request is parked in the purgatory; no sleeping.
    await until(() => demo.purgatory.watcherCount('room') === 1, 'the request to park');
    const wake = await fetch(`${base}/wake/room`, { method: 'POST' });
    expect(await wake.json()).toEqual({ woken: 1 });
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ outcome: 'completed' });
  });

  it('answers a zero timeout at once with expired', async () => {
    const res = await fetch(`${base}/wait/room?timeoutMs=0`);
    expect(await res.json()).toEqual({ outcome: 'expired' });
  });

  it('rejects a bad timeout with a 400 and a JSON body', async () => {
    for (const bad of ['abc', '-1', '1e9', '99999999']) {
      const res = await fetch(`${base}/wait/room?timeoutMs=${bad}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_INVALID_ARGUMENT');
    }
  });

  it('removes a waiter whose client went away', async () => {
    const ac = new AbortController();
    const pending = fetch(`${base}/wait/gone?timeoutMs=30000`, { signal: ac.signal }).catch(() => 'aborted');
    await until(() => demo.purgatory.watcherCount('gone') === 1, 'the request to park');
    ac.abort();
    expect(await pending).toBe('aborted');
    await until(() => demo.purgatory.watcherCount('gone') === 0, 'the waiter to be removed');
    expect(demo.purgatory.stats().cancelled).toBeGreaterThanOrEqual(1);
  });

  it('rejects a malformed key with a 400, without crashing', async () => {
    const res = await fetch(`${base}/wait/%E0%A4%A?timeoutMs=0`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_INVALID_ARGUMENT');
    expect((await fetch(`${base}/wake/%ZZ`, { method: 'POST' })).status).toBe(400);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await fetch(`${base}/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_NOT_FOUND');
  });
});
