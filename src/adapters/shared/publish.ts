/**
 * Publishing over HTTP in every adapter: each one's `publish` is a {@link PublishHandler} (the
 * origin and `authorize` checked before the body is read), given the framework's request as the
 * `authorize` hook's context.
 *
 * @module
 */
import { PublishHandler, type PublishHandlerOptions } from '../../publish/index.js';
import type { PubSubBroker } from '../../pubsub/index.js';

/**
 * Options every adapter's `publish` takes: those of {@link PublishHandler} but the broker, with
 * the framework's request as the `authorize` hook's context.
 */
export type AdapterPublishOptions<Req> = Omit<PublishHandlerOptions<Req>, 'broker'>;

/**
 * The handler behind an adapter's `publish`, made once.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad option.
 * @internal
 */
export function publishHandler<Req>(broker: PubSubBroker, options: AdapterPublishOptions<Req>): PublishHandler<Req> {
  return new PublishHandler<Req>({ ...options, broker });
}
