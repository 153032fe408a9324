/**
 * Observability through `node:diagnostics_channel`, named `patchbay:<primitive>:<event>`.
 * Publishing costs a boolean check when nobody subscribes.
 *
 * @module
 * @internal
 */
import diagnosticsChannel from 'node:diagnostics_channel';

/** Returns the channel `patchbay:<primitive>:<event>`. @internal */
export function channel(primitive: string, event: string): diagnosticsChannel.Channel {
  return diagnosticsChannel.channel(`patchbay:${primitive}:${event}`);
}
