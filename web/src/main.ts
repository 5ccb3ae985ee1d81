// The live dashboard: one WatchSummary stream, through Connect's web client,
// drives every number and chart on the page.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";

import { AnalyticsService, type SummarySnapshot } from "./gen/blackfriday/sales/v1/analytics_service_pb";
import { HISTORY_SECONDS, Throttle } from "./model";
import { View } from "./view";
import "./style.css";

/** Charts redraw at most this often (ms); numbers update with every snapshot. */
const CHART_EVERY = 500;
/** A stream silent this long (ms) is presumed dead and reopened. */
const SILENCE = 20_000;
/** How many recent updates window.bfDashboard.updates keeps. */
const KEEP_UPDATES = 2000;

/** Update is when the page showed a snapshot: for latency measurements. */
interface Update {
  /** t is the wall-clock time (ms) the numbers were on the page. */
  t: number;
  version: number;
  sales: string;
}

declare global {
  interface Window {
    /** bfDashboard lets tests see what the page showed, and when. */
    bfDashboard: { updates: Update[]; snapshots: number; heartbeats: number; reconnects: number };
  }
}

const params = new URLSearchParams(location.search);
const useGrpcWeb = params.get("transport") === "grpc-web";
const transport = useGrpcWeb
  ? createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true })
  : createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true });
const client = createClient(AnalyticsService, transport);

const view = new View();
view.transport(useGrpcWeb ? "gRPC-Web" : "Connect");
const stats: Window["bfDashboard"] = { updates: [], snapshots: 0, heartbeats: 0, reconnects: 0 };
window.bfDashboard = stats;

let latest: SummarySnapshot | null = null;
/** skew is the server's clock minus ours, in seconds, from the last message. */
let skew = 0;
const serverNow = () => Date.now() / 1000 + skew;

// Numbers: drawn on the next animation frame after a snapshot, coalesced, so
// the page does at most one DOM pass per frame (and in practice one per
// snapshot: the server sends at most a few a second, whatever the load).
let framePending = false;
function drawNumbers(): void {
  if (framePending) return;
  framePending = true;
  requestAnimationFrame(() => {
    framePending = false;
    if (!latest) return;
    view.numbers(latest);
    stats.updates.push({ t: Date.now(), version: Number(latest.version), sales: String(latest.summary?.sales ?? 0n) });
    if (stats.updates.length > KEEP_UPDATES) stats.updates.splice(0, stats.updates.length - KEEP_UPDATES);
  });
}
// Charts cost more: redrawn at most every CHART_EVERY ms, with the latest data.
const charts = new Throttle(CHART_EVERY, () => {
  if (latest) view.drawCharts(latest, serverNow());
});

/** backfill seeds the rate charts with the history they show. */
async function backfill(signal: AbortSignal): Promise<void> {
  try {
    const rate = await client.getSalesRate({ window: durationFromMs(HISTORY_SECONDS * 1000) }, { signal, timeoutMs: 5000 });
    view.backfill(rate.series);
  } catch {
    // The stream fills the charts anyway.
  }
}

/** watch streams until the stream ends, fails or falls silent. */
async function watch(): Promise<void> {
  const abort = new AbortController();
  let timer = setTimeout(() => abort.abort(), SILENCE);
  const alive = () => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(), SILENCE);
  };
  try {
    void backfill(abort.signal);
    for await (const msg of client.watchSummary({}, { signal: abort.signal })) {
      alive();
      switch (msg.event.case) {
        case "snapshot": {
          const snap = msg.event.value;
          stats.snapshots++;
          if (snap.readAt) skew = timestampMs(snap.readAt) / 1000 - Date.now() / 1000;
          latest = snap;
          view.status("live", "live");
          drawNumbers();
          charts.poke();
          break;
        }
        case "heartbeat": {
          const hb = msg.event.value;
          stats.heartbeats++;
          if (hb.sentAt) skew = timestampMs(hb.sentAt) / 1000 - Date.now() / 1000;
          view.status(hb.stale ? "stale: store unreachable" : "live", hb.stale ? "stale" : "live");
          view.lagTick(serverNow());
          charts.poke();
          break;
        }
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

async function run(): Promise<never> {
  let backoff = 500;
  for (;;) {
    const started = Date.now();
    try {
      await watch();
    } catch (err) {
      console.warn("WatchSummary:", err);
    }
    stats.reconnects++;
    view.status("reconnecting", "down");
    if (Date.now() - started > 10_000) backoff = 500;
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10_000);
  }
}

let resizeTimer: ReturnType<typeof setTimeout> | undefined;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => view.resize(), 150);
});
void run();
