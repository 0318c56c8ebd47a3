// What every view may read, refreshed by the poll in app.js.

export const state = { stats: undefined, jobTypes: null, health: null };

/** Every status this server knows, in the order of its state machine: /stats counts each
 *  one (zeros included), so the list comes from the server, never copied here. */
export function knownStatuses() {
  return Object.keys((state.stats && state.stats.by_status) || {});
}
