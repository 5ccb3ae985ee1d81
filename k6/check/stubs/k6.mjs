// Stand-in for k6's 'k6' module under node (check.mjs): check runs each
// predicate, as k6 does, and records the outcome.
export function check(value, predicates) {
  for (const [name, fn] of Object.entries(predicates)) globalThis.__calls.push({ op: 'check', name, ok: !!fn(value) });
  return true;
}
export function sleep() {}
