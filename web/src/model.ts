// The dashboard's state and formatting, free of the DOM so node's test
// runner can check it (web/test/model.test.ts).

/** The categories in enum order, with the names and colours the page uses. */
export const CATEGORIES = [
  { id: 1, key: "electronics", name: "Electronics", color: "#4e79a7" },
  { id: 2, key: "clothing", name: "Clothing", color: "#f28e2b" },
  { id: 3, key: "home", name: "Home", color: "#59a14f" },
  { id: 4, key: "beauty", name: "Beauty", color: "#e15759" },
] as const;

/** The ingest protocols in a fixed order, so bars do not jump around. */
export const PROTOCOLS = [
  "connect+json",
  "connect+proto",
  "grpc",
  "grpc-web",
  "legacy-rest",
  "legacy-grpc",
  "unknown",
] as const;

/** How many seconds of rate history the page keeps and draws. */
export const HISTORY_SECONDS = 120;

/** groupDigits puts thousands separators into a string of digits. */
function groupDigits(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** formatCount formats an exact integer: 1234567 → "1,234,567". */
export function formatCount(n: bigint | number): string {
  const s = BigInt(n).toString();
  return s.startsWith("-") ? "-" + groupDigits(s.slice(1)) : groupDigits(s);
}

/**
 * formatCents formats an exact amount of cents as currency units with two
 * decimals, without floating point: 123456789n → "1,234,567.89".
 */
export function formatCents(cents: bigint | number): string {
  let c = BigInt(cents);
  const sign = c < 0n ? "-" : "";
  if (c < 0n) c = -c;
  const units = c / 100n;
  const frac = (c % 100n).toString().padStart(2, "0");
  return sign + groupDigits(units.toString()) + "." + frac;
}

/** formatAvgCents formats a mean price in cents (a double) as currency units. */
export function formatAvgCents(cents: number): string {
  return formatDecimal(cents / 100, 2);
}

/** formatDecimal formats x with exactly digits decimals and separators. */
export function formatDecimal(x: number, digits: number): string {
  const [int, frac] = Math.abs(x).toFixed(digits).split(".");
  const sign = x < 0 && Number(x.toFixed(digits)) !== 0 ? "-" : "";
  return sign + groupDigits(int) + (frac ? "." + frac : "");
}

/** formatRate formats a per-second value compactly: 1234.5 → "1.23k". */
export function formatRate(x: number): string {
  if (x >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (x >= 1e3) return (x / 1e3).toFixed(2) + "k";
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}

/** RatePointLike is the part of a RatePoint the history needs. */
export interface RatePointLike {
  start?: { seconds: bigint; nanos: number };
  sales: bigint;
  revenueCents: bigint;
}

/** RateSeriesLike is the part of a RateSeries the history needs. */
export interface RateSeriesLike {
  category: number;
  points: RatePointLike[];
}

/**
 * RateHistory keeps per-second sales and revenue per category over the last
 * HISTORY_SECONDS. Every snapshot carries the last minute; merging overwrites
 * those seconds (a second keeps filling while sales with its sold_at arrive),
 * so the history is exact for every second a snapshot covered.
 */
export class RateHistory {
  /** second → [sales, revenue] per category, in CATEGORIES order. */
  private readonly seconds = new Map<number, number[]>();

  /** merge overwrites the seconds the series cover. */
  merge(series: RateSeriesLike[]): void {
    for (const s of series) {
      const idx = CATEGORIES.findIndex((c) => c.id === s.category);
      if (idx < 0) continue;
      for (const p of s.points) {
        const sec = Number(p.start?.seconds ?? 0n);
        let row = this.seconds.get(sec);
        if (!row) {
          row = new Array(CATEGORIES.length * 2).fill(0);
          this.seconds.set(sec, row);
        }
        row[idx * 2] = Number(p.sales);
        row[idx * 2 + 1] = Number(p.revenueCents) / 100;
      }
    }
  }

  /**
   * window returns uPlot's aligned data for the HISTORY_SECONDS ending at
   * the second end: x, then sales per category, then revenue per category.
   * Seconds without data are zero. It also forgets older seconds.
   */
  window(end: number): number[][] {
    const first = end - HISTORY_SECONDS + 1;
    for (const sec of this.seconds.keys()) {
      if (sec < first) this.seconds.delete(sec);
    }
    const n = CATEGORIES.length;
    const out: number[][] = [[]];
    for (let i = 0; i < 2 * n; i++) out.push([]);
    for (let sec = first; sec <= end; sec++) {
      out[0].push(sec);
      const row = this.seconds.get(sec);
      for (let i = 0; i < n; i++) {
        out[1 + i].push(row ? row[i * 2] : 0);
        out[1 + n + i].push(row ? row[i * 2 + 1] : 0);
      }
    }
    return out;
  }
}

/**
 * Throttle runs fn at most once per interval milliseconds, on the trailing
 * edge: however often poke is called, the latest state is drawn, late by at
 * most interval. now and schedule are injectable for tests.
 */
export class Throttle {
  private last = -Infinity;
  private pending = false;

  constructor(
    private readonly interval: number,
    private readonly fn: () => void,
    private readonly now: () => number = () => performance.now(),
    private readonly schedule: (f: () => void, ms: number) => void = (f, ms) => {
      setTimeout(f, ms);
    },
  ) {}

  /** poke asks for a run. */
  poke(): void {
    if (this.pending) return;
    this.pending = true;
    const wait = Math.max(0, this.last + this.interval - this.now());
    this.schedule(() => {
      this.pending = false;
      this.last = this.now();
      this.fn();
    }, wait);
  }
}

/** PriceStrip is one product's price history: its sale times (seconds) and prices. */
export interface PriceStrip {
  name: string;
  times: number[];
  prices: number[];
}

/**
 * priceStrips turns per-product price points into one series per product,
 * sorted by time, with the time span and price range they all share: the
 * page draws each product in its own strip on the same scales, so that
 * products that sell at once at similar prices do not interleave.
 */
export function priceStrips(
  products: { productId: string; points: { soldAt?: { seconds: bigint; nanos: number }; priceCents: bigint }[] }[],
): { strips: PriceStrip[]; t0: number; t1: number; lo: number; hi: number } {
  let t0 = Infinity,
    t1 = -Infinity,
    lo = Infinity,
    hi = -Infinity;
  const strips = products.map((p) => {
    const pts = p.points
      .map((pt) => ({ t: Number(pt.soldAt?.seconds ?? 0n) + (pt.soldAt?.nanos ?? 0) / 1e9, price: Number(pt.priceCents) / 100 }))
      .sort((a, b) => a.t - b.t);
    for (const { t, price } of pts) {
      t0 = Math.min(t0, t);
      t1 = Math.max(t1, t);
      lo = Math.min(lo, price);
      hi = Math.max(hi, price);
    }
    return { name: p.productId, times: pts.map((x) => x.t), prices: pts.map((x) => x.price) };
  });
  if (t0 > t1) [t0, t1, lo, hi] = [0, 1, 0, 1];
  return { strips, t0, t1, lo, hi };
}

/** INGEST_NAMES are the protocols' names on the ingest mix. */
export const INGEST_NAMES: Record<string, string> = {
  "connect+json": "Connect JSON",
  "connect+proto": "Connect proto",
  grpc: "gRPC",
  "grpc-web": "gRPC-Web",
  "legacy-rest": "legacy REST",
  "legacy-grpc": "legacy gRPC",
  unknown: "unknown",
};

/** formatShare is a share of a whole as a percentage, never rounding a non-zero share to 0. */
export function formatShare(part: number, whole: number): string {
  if (whole <= 0 || part <= 0) return "0%";
  const pct = (100 * part) / whole;
  if (pct < 0.1) return "<0.1%";
  return pct.toFixed(pct < 10 ? 1 : 0) + "%";
}
