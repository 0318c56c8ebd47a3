// What every view may read, refreshed by the poll in app.js.

const BASE_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

export const state = { stats: undefined, jobTypes: null, health: null };

/** Every status this server knows: the base ones plus any /stats reports (e.g. scheduled, waiting). */
export function knownStatuses() {
  const reported = Object.keys((state.stats && state.stats.by_status) || {});
  const order = ["waiting", "scheduled", ...BASE_STATUSES];
  const known = order.filter((s) => BASE_STATUSES.includes(s) || reported.includes(s));
  return [...new Set([...known, ...reported])];
}
