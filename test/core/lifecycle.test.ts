import { describe, expect, it } from 'vitest';
import { ClosedError, Resource } from '../../src/index.js';

class Thing extends Resource {
  closes = 0;
  destroys: unknown[] = [];
  release: (() => void) | undefined;
  use(): string {
    this.assertOpen('use');
    return 'ok';
  }
  protected onClose(): Promise<void> {
    this.closes++;
    return new Promise((resolve) => (this.release = resolve));
  }
  protected onDestroy(reason: unknown): void {
    this.destroys.push(reason);
  }
}

describe('Resource lifecycle', () => {
  it('close() is idempotent and concurrent callers share one promise', async () => {
    const t = new Thing();
    expect(t.state).toBe('open');
    const a = t.close();
    const b = t.close();
    expect(a).toBe(b);
    expect(t.closes).toBe(1);
    expect(t.state).toBe('closing');
    expect(t.closed).toBe(true);
    t.release!();
    await a;
    expect(t.state).toBe('closed');
    expect(t.destroyed).toBe(false);
    await t.close();
    expect(t.closes).toBe(1);
  });

  it('methods throw ClosedError after close() and after destroy()', () => {
    const t = new Thing();
    expect(t.use()).toBe('ok');
    void t.close();
    expect(() => t.use()).toThrow(ClosedError);
    expect(() => t.use()).toThrow('Cannot call Thing.use() after close()');
    const d = new Thing();
    d.destroy();
    expect(() => d.use()).toThrow('after destroy()');
  });

  it('destroy() is hard, idempotent, and cuts a pending close short', async () => {
    const t = new Thing();
    const closing = t.close();
    const reason = new Error('boom');
    t.destroy(reason);
    t.destroy(new Error('again'));
    expect(t.destroys).toEqual([reason]);
    expect(t.state).toBe('destroyed');
    expect(t.destroyed).toBe(true);
    t.release!();
    await closing;
    expect(t.state).toBe('destroyed');
  });

  it('close() after destroy() resolves without running onClose', async () => {
    const t = new Thing();
    t.destroy();
    await t.close();
    expect(t.closes).toBe(0);
  });

  it('await using closes at scope end', async () => {
    let ref: Thing | undefined;
    {
      await using t = new Thing();
      ref = t;
      setImmediate(() => t.release?.());
    }
    expect(ref.state).toBe('closed');
  });

  it('a throwing onClose rejects close() and leaves the object closed', async () => {
    class Bad extends Resource {
      protected onClose(): void {
        throw new Error('nope');
      }
      protected onDestroy(): void {}
    }
    const b = new Bad();
    await expect(b.close()).rejects.toThrow('nope');
    expect(b.closed).toBe(true);
  });
});
