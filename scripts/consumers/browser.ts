// Consumer (d): a browser page's module (lib dom + es2022, no Node types) using patchbay/client.
import { HttpStatusError, LongPollClient, PollClient } from 'patchbay/client';

export async function follow(list: HTMLElement, signal: AbortSignal): Promise<void> {
  const client = new LongPollClient<{ text: string }>({ url: `${location.origin}/lp/room`, signal });
  try {
    for await (const message of client) {
      const item = document.createElement('li');
      item.textContent = message.data.text;
      list.append(item);
    }
  } catch (error) {
    if (!(error instanceof HttpStatusError)) throw error;
  } finally {
    client.close();
  }
}

export const jobs = new PollClient({ baseUrl: `${location.origin}/jobs/` });

/** `using` closes the client at the end of the block (its declarations bring `Symbol.dispose`). */
export function peek(): boolean {
  using client = new LongPollClient({ url: '/lp/room' });
  return client.closed;
}
