/**
 * Type tests for the generic types: the type parameter a user gives (or that is inferred from
 * their code) flows to what they read, and a wrong use does not compile (`@ts-expect-error`).
 * Run by `npm test` through vitest's typecheck mode (vitest.config.ts); nothing here executes.
 */
import { describe, expectTypeOf, it } from 'vitest';
import { type Message, type PollJob, PollHandle, type PollSnapshot, PubSubBroker, type Subscription } from '../../src/index.js';
import { type JobRef, type JobStatus, type LongPollBatch, LongPollClient, type LongPollMessage, PollClient } from '../../src/client/index.js';

interface Order {
  readonly id: number;
  readonly total: number;
}

describe('PollJob<R>', () => {
  it('takes R from the job function, and hands it to snapshot() and done()', () => {
    const jobs = new PollHandle();
    const job = jobs.start(async () => ({ id: 1, total: 2 }) as Order);
    expectTypeOf(job).toEqualTypeOf<PollJob<Order>>();
    expectTypeOf(job.snapshot()).toEqualTypeOf<PollSnapshot<Order>>();
    expectTypeOf(job.snapshot().result).toEqualTypeOf<Order | undefined>();
    expectTypeOf(job.done()).resolves.toEqualTypeOf<PollSnapshot<Order>>();
    // @ts-expect-error: the result is an Order, not a string
    const wrong: string | undefined = job.snapshot().result;
    void wrong;
    // @ts-expect-error: a job of Orders is not a job of strings
    const other: PollJob<string> = job;
    void other;
  });
});

describe('Subscription<T> and PubSubBroker.publish', () => {
  it('publish takes T from the data and resolves with a Message<T>', () => {
    const broker = new PubSubBroker();
    expectTypeOf(broker.publish('orders', { id: 1, total: 2 } as Order)).resolves.toEqualTypeOf<Message<Order>>();
    expectTypeOf(broker.publish<Order>).parameter(1).toEqualTypeOf<Order>();
    // @ts-expect-error: with T given, the data must be one
    void broker.publish<Order>('orders', { id: 'one' });
  });

  it('a Subscription<T> yields Message<T>, whose data is T', async () => {
    const broker = new PubSubBroker();
    const sub = await broker.subscribe<Order>('orders');
    expectTypeOf(sub).toEqualTypeOf<Subscription<Order>>();
    for await (const message of sub) {
      expectTypeOf(message).toEqualTypeOf<Message<Order>>();
      expectTypeOf(message.data).toEqualTypeOf<Order>();
      // @ts-expect-error: data is an Order, not a string
      const text: string = message.data;
      void text;
    }
  });
});

describe('LongPollClient<T>', () => {
  it('yields LongPollMessage<T>, and poll() and batches() carry T', async () => {
    const client = new LongPollClient<Order>({ url: 'http://127.0.0.1/lp/orders' });
    expectTypeOf(client.poll()).resolves.toEqualTypeOf<LongPollBatch<Order>>();
    expectTypeOf(client.poll()).resolves.toHaveProperty('messages').toEqualTypeOf<readonly LongPollMessage<Order>[]>();
    for await (const message of client) {
      expectTypeOf(message).toEqualTypeOf<LongPollMessage<Order>>();
      expectTypeOf(message.data).toEqualTypeOf<Order>();
      // @ts-expect-error: data is an Order
      const n: number = message.data;
      void n;
    }
    for await (const batch of client.batches()) expectTypeOf(batch).toEqualTypeOf<LongPollBatch<Order>>();
    // @ts-expect-error: a client of Orders is not a client of strings
    const other: LongPollClient<string> = client;
    void other;
  });
});

describe('PollClient results', () => {
  it('run, wait and start carry R to the result, the progress callback and the job reference', () => {
    const client = new PollClient({ baseUrl: 'http://127.0.0.1/' });
    expectTypeOf(client.run<Order>('/jobs', { n: 1 })).resolves.toEqualTypeOf<Order>();
    expectTypeOf(client.start<Order>('/jobs')).resolves.toEqualTypeOf<JobRef<Order>>();
    expectTypeOf(client.wait<Order>).parameter(0).toEqualTypeOf<JobRef<Order> | string | URL>();
    void client.run<Order>('/jobs', undefined, {
      onProgress: (status) => expectTypeOf(status).toEqualTypeOf<JobStatus<Order>>(),
    });
    // @ts-expect-error: the result is an Order
    const wrong: Promise<string> = client.run<Order>('/jobs');
    void wrong;
  });
});
