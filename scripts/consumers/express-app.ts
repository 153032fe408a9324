// Consumer (a): a chat app on Express, as a new user writes it, with only express,
// @types/express and @types/node next to patchbay. No other peer is installed, so this compiles
// only if these entries' declarations need none of them.
import express from 'express';
import { LongPollHandler, MemoryBackend, PubSubBroker, SseHandler } from 'patchbay';
import { LongPollClient, PollClient } from 'patchbay/client';
import { jsonErrors, longPoll, publish, routes, sse, type UploadHandlerLike } from 'patchbay/express';
import { longPoll as webLongPoll, type FetchHandler } from 'patchbay/web';

const broker = new PubSubBroker({ backend: new MemoryBackend() });
const polls = new LongPollHandler({ broker });
const streams = new SseHandler({ broker });

const app = express();
app.all('/pub/:topic', publish(broker));
app.all('/lp/:topic', longPoll(polls));
app.all('/sse/:topic', sse(streams));
app.use('/api', routes(express.Router(), { longPoll: { handler: polls } }));
app.use(jsonErrors());

const onFetch: (request: Request) => Promise<Response> = webLongPoll(polls);
const notFound: FetchHandler = () => Promise.resolve(new Response(null, { status: 404 }));
const uploads: UploadHandlerLike | undefined = undefined;

const client = new LongPollClient<{ text: string }>({ url: 'http://127.0.0.1:3000/lp/room' });
const jobs = new PollClient({ baseUrl: 'http://127.0.0.1:3000/jobs/' });

export { app, client, jobs, notFound, onFetch, uploads };
