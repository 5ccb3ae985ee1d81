import { test } from "node:test";
import assert from "node:assert/strict";

import { RateHistory, Throttle, formatCents, formatCount, formatDecimal, formatShare, priceStrips, HISTORY_SECONDS } from "../src/model";

test("formatCount groups exact integers", () => {
  for (const [n, want] of [
    [0n, "0"],
    [999n, "999"],
    [1000n, "1,000"],
    [1234567n, "1,234,567"],
    [-1234n, "-1,234"],
    [9007199254740993n, "9,007,199,254,740,993"],
  ] as const) {
    assert.equal(formatCount(n), want, `formatCount(${n})`);
  }
});

test("formatCents is exact beyond 2^53 cents", () => {
  for (const [n, want] of [
    [0n, "0.00"],
    [5n, "0.05"],
    [19999n, "199.99"],
    [123456789n, "1,234,567.89"],
    [-101n, "-1.01"],
    [9007199254740993n, "90,071,992,547,409.93"],
  ] as const) {
    assert.equal(formatCents(n), want, `formatCents(${n})`);
  }
});

test("formatDecimal rounds to the digits", () => {
  assert.equal(formatDecimal(7500.25 / 100, 2), "75.00");
  assert.equal(formatDecimal(10 / 3, 2), "3.33");
  assert.equal(formatDecimal(12345.678, 2), "12,345.68");
  assert.equal(formatDecimal(-0.001, 2), "0.00");
});

test("RateHistory merges overlapping windows and fills zeros", () => {
  const h = new RateHistory();
  const pt = (sec: number, sales: number, cents: number) => ({ start: { seconds: BigInt(sec), nanos: 0 }, sales: BigInt(sales), revenueCents: BigInt(cents) });
  h.merge([{ category: 1, points: [pt(100, 1, 250), pt(101, 2, 500)] }]);
  // A later snapshot overwrites a second that kept filling.
  h.merge([{ category: 1, points: [pt(101, 3, 900)] }, { category: 4, points: [pt(101, 1, 100)] }]);
  const w = h.window(101);
  assert.equal(w.length, 9);
  assert.equal(w[0].length, HISTORY_SECONDS);
  assert.equal(w[0].at(-1), 101);
  assert.deepEqual([w[1].at(-2), w[1].at(-1)], [1, 3], "electronics sales");
  assert.deepEqual([w[5].at(-2), w[5].at(-1)], [2.5, 9], "electronics revenue");
  assert.equal(w[4].at(-1), 1, "beauty sales");
  assert.equal(w[2].at(-1), 0, "clothing sales");
  // Seconds older than the window are forgotten.
  const later = h.window(101 + HISTORY_SECONDS);
  assert.ok(later[1].every((v) => v === 0));
});

test("Throttle runs at most once per interval, with the latest state", () => {
  let now = 0;
  const queue: { at: number; f: () => void }[] = [];
  let runs = 0;
  const t = new Throttle(500, () => runs++, () => now, (f, ms) => queue.push({ at: now + ms, f }));
  for (let i = 0; i < 100; i++) t.poke(); // a burst
  assert.equal(queue.length, 1);
  queue.shift()!.f();
  assert.equal(runs, 1);
  now = 100;
  t.poke();
  t.poke();
  assert.equal(queue.length, 1);
  assert.equal(queue[0].at, 500, "waits out the interval");
});

test("priceStrips gives each product its own series on shared scales", () => {
  const ts = (s: number) => ({ seconds: BigInt(s), nanos: 0 });
  const got = priceStrips([
    { productId: "E1", points: [{ soldAt: ts(20), priceCents: 150n }, { soldAt: ts(10), priceCents: 100n }] },
    { productId: "E2", points: [{ soldAt: ts(15), priceCents: 999n }] },
  ]);
  assert.deepEqual(got.strips, [
    { name: "E1", times: [10, 20], prices: [1, 1.5] },
    { name: "E2", times: [15], prices: [9.99] },
  ]);
  assert.deepEqual([got.t0, got.t1, got.lo, got.hi], [10, 20, 1, 9.99]);
  assert.deepEqual(priceStrips([]).strips, []);
});

test("formatShare never shows a non-zero share as 0", () => {
  assert.equal(formatShare(40, 299_690), "<0.1%");
  assert.equal(formatShare(0, 10), "0%");
  assert.equal(formatShare(1, 0), "0%");
  assert.equal(formatShare(1, 8), "13%");
  assert.equal(formatShare(1, 20), "5.0%");
  assert.equal(formatShare(299_650, 299_690), "100%");
});
