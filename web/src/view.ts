// The page: numbers as text (each with data-testid and, in data-value, the
// exact value they show) and charts drawn by uPlot.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import type { SummarySnapshot, ProductUnits } from "./gen/blackfriday/sales/v1/analytics_service_pb";
import {
  CATEGORIES,
  PROTOCOLS,
  HISTORY_SECONDS,
  RateHistory,
  alignPriceHistory,
  formatAvgCents,
  formatCents,
  formatCount,
  formatDecimal,
  formatRate,
} from "./model";

const CHART_HEIGHT = 180;

/** byTestId finds the element a test id names. */
function byTestId(id: string): HTMLElement {
  const el = document.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`no element ${id}`);
  return el;
}

/** show sets an element's text and exact value, touching the DOM only on change. */
function show(el: HTMLElement, text: string, value: string): void {
  if (el.textContent !== text) el.textContent = text;
  if (el.dataset.value !== value) el.dataset.value = value;
}

function productText(p: ProductUnits | undefined): string {
  return p ? `${p.productId} (${formatCount(p.units)})` : "–";
}

function productValue(p: ProductUnits | undefined): string {
  return p ? `${p.productId}:${p.units}` : "";
}

/** timeAxis is uPlot's time axis (it picks the format from the span), in the page's colours. */
function timeAxis(): uPlot.Axis {
  return { stroke: "#9aa4b2", grid: { stroke: "#252b36" }, ticks: { stroke: "#252b36" } };
}

/** SHORT names the protocols under the ingest bars, where the full names would collide. */
const SHORT: Record<string, string> = {
  "connect+json": "JSON",
  "connect+proto": "proto",
  grpc: "gRPC",
  "grpc-web": "gRPC-Web",
  "legacy-rest": "REST",
  "legacy-grpc": "old gRPC",
  unknown: "?",
};

function valueAxis(fmt: (x: number) => string = formatRate): uPlot.Axis {
  return {
    stroke: "#9aa4b2",
    grid: { stroke: "#252b36" },
    ticks: { stroke: "#252b36" },
    size: 60,
    values: (_u, splits) => splits.map(fmt),
  };
}

function widthOf(el: HTMLElement): number {
  return Math.max(200, el.clientWidth);
}

/** View owns the page's elements and charts. */
export class View {
  private readonly rates = new RateHistory();
  private readonly lag: [number[], number[]] = [[], []];
  private readonly salesChart: uPlot;
  private readonly revenueChart: uPlot;
  private readonly ingestChart: uPlot;
  private readonly lagChart: uPlot;
  private pricesChart: uPlot | null = null;
  private priceNames = "";
  private ingestLabels: string[] = [];
  private readonly resizable: { chart: () => uPlot | null; el: HTMLElement }[] = [];

  constructor() {
    const catSeries = (): uPlot.Series[] =>
      CATEGORIES.map((c) => ({ label: c.name, stroke: c.color, width: 1.5, points: { show: false } }));
    const rateOpts = (el: HTMLElement, fmt: (x: number) => string): uPlot.Options => ({
      width: widthOf(el),
      height: CHART_HEIGHT,
      series: [{}, ...catSeries()],
      axes: [timeAxis(), valueAxis(fmt)],
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      legend: { live: false },
      cursor: { show: false },
    });
    const salesEl = document.getElementById("chart-sales")!;
    const revenueEl = document.getElementById("chart-revenue")!;
    this.salesChart = new uPlot(rateOpts(salesEl, formatRate), [[]], salesEl);
    this.revenueChart = new uPlot(rateOpts(revenueEl, formatRate), [[]], revenueEl);

    const ingestEl = document.getElementById("chart-ingest")!;
    this.ingestChart = new uPlot(
      {
        width: widthOf(ingestEl),
        height: CHART_HEIGHT,
        series: [{}, { label: "sales", fill: "#4e79a7aa", stroke: "#4e79a7", paths: uPlot.paths.bars!({ size: [0.7, 80] }), points: { show: false } }],
        scales: { x: { time: false, range: (_u, _min, max) => [-0.5, max + 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [
          {
            stroke: "#9aa4b2",
            grid: { show: false },
            ticks: { show: false },
            splits: () => this.ingestLabels.map((_, i) => i),
            values: () => this.ingestLabels.map((p) => SHORT[p] ?? p),
            size: 50,
          },
          { ...valueAxis(), size: 70 },
        ],
        legend: { show: false },
        cursor: { show: false },
      },
      [[]],
      ingestEl,
    );

    const lagEl = document.getElementById("chart-lag")!;
    this.lagChart = new uPlot(
      {
        width: widthOf(lagEl),
        height: CHART_HEIGHT,
        series: [{}, { label: "records behind", stroke: "#edc948", fill: "#edc94833", width: 1.5, points: { show: false } }],
        axes: [timeAxis(), valueAxis()],
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        legend: { show: false },
        cursor: { show: false },
      },
      [[]],
      lagEl,
    );

    this.resizable.push(
      { chart: () => this.salesChart, el: salesEl },
      { chart: () => this.revenueChart, el: revenueEl },
      { chart: () => this.ingestChart, el: ingestEl },
      { chart: () => this.lagChart, el: lagEl },
      { chart: () => this.pricesChart, el: document.getElementById("chart-prices")! },
    );
    this.buildCategoryRows();
    this.buildRankings();
  }

  /** status shows the stream's health. */
  status(text: string, kind: "live" | "stale" | "down"): void {
    const el = byTestId("status");
    if (el.textContent !== text) el.textContent = text;
    el.className = "pill " + kind;
  }

  /** transport names the protocol the page streams over. */
  transport(name: string): void {
    document.getElementById("transport")!.textContent = "via " + name;
  }

  /** backfill seeds the rate charts with history from GetSalesRate. */
  backfill(series: Parameters<RateHistory["merge"]>[0]): void {
    this.rates.merge(series);
  }

  /** numbers renders every number of the snapshot: cheap, done per snapshot. */
  numbers(snap: SummarySnapshot): void {
    const s = snap.summary;
    if (!s) return;
    show(byTestId("version"), String(snap.version), String(snap.version));
    const readAt = snap.readAt ? new Date(Number(snap.readAt.seconds) * 1000 + snap.readAt.nanos / 1e6) : null;
    show(byTestId("read-at"), readAt ? readAt.toLocaleTimeString([], { hour12: false }) : "–", readAt ? readAt.toISOString() : "");
    show(byTestId("total-sales"), formatCount(s.sales), String(s.sales));
    show(byTestId("total-units"), formatCount(s.units), String(s.units));
    show(byTestId("total-revenue"), formatCents(s.revenueCents), String(s.revenueCents));
    show(byTestId("min-price"), formatCents(s.minPriceCents), String(s.minPriceCents));
    show(byTestId("max-price"), formatCents(s.maxPriceCents), String(s.maxPriceCents));
    show(byTestId("dead-letters"), formatCount(s.deadLetters), String(s.deadLetters));
    const lag = snap.lag;
    if (lag?.known) {
      show(byTestId("lag-records"), formatCount(lag.records), String(lag.records));
      const parts = lag.partitions.length;
      show(byTestId("lag-detail"), `records not yet counted, over ${parts} partition${parts === 1 ? "" : "s"}`, "");
    } else {
      show(byTestId("lag-records"), "unknown", "");
      show(byTestId("lag-detail"), "Kafka's offsets could not be read", "");
    }

    for (const c of s.categories) {
      const cat = CATEGORIES.find((x) => x.id === c.category);
      if (!cat) continue;
      const cell = (f: string) => byTestId(`cat-${cat.key}-${f}`);
      show(cell("sales"), formatCount(c.sales), String(c.sales));
      show(cell("units"), formatCount(c.units), String(c.units));
      show(cell("revenue"), formatCents(c.revenueCents), String(c.revenueCents));
      show(cell("avg-price"), formatAvgCents(c.avgPriceCents), String(c.avgPriceCents));
      show(cell("avg-quantity"), formatDecimal(c.avgQuantity, 2), String(c.avgQuantity));
      show(cell("min-price"), formatCents(c.minPriceCents), String(c.minPriceCents));
      show(cell("max-price"), formatCents(c.maxPriceCents), String(c.maxPriceCents));
      show(cell("best"), productText(c.bestSeller), productValue(c.bestSeller));
      show(cell("worst"), productText(c.worstSeller), productValue(c.worstSeller));
    }

    for (const r of snap.rankings) {
      const key = r.category === 0 ? "all" : CATEGORIES.find((x) => x.id === r.category)?.key;
      if (!key) continue;
      for (const [end, list] of [["best", r.best], ["worst", r.worst]] as const) {
        const ol = byTestId(`rank-${key}-${end}`);
        const value = list.map(productValue).join(",");
        if (ol.dataset.value === value) continue;
        ol.dataset.value = value;
        ol.replaceChildren(
          ...list.map((p) => {
            const li = document.createElement("li");
            const id = document.createElement("span");
            id.textContent = p.productId;
            const n = document.createElement("span");
            n.className = "num";
            n.textContent = formatCount(p.units);
            li.append(id, n);
            return li;
          }),
        );
        if (list.length === 0) ol.innerHTML = '<li class="dim">no sales</li>';
      }
    }

    const counts = new Map(snap.ingest.map((c) => [c.protocol, c.sales]));
    const mix = byTestId("ingest-mix");
    const mixValue = snap.ingest.map((c) => `${c.protocol}:${c.sales}`).join(",");
    if (mix.dataset.value !== mixValue) {
      mix.dataset.value = mixValue;
      mix.textContent = PROTOCOLS.filter((p) => counts.has(p) || p !== "unknown")
        .map((p) => `${p} ${formatCount(counts.get(p) ?? 0n)}`)
        .join(" · ");
    }
  }

  /** charts feeds the snapshot to the charts and redraws them: throttled by the caller. */
  drawCharts(snap: SummarySnapshot, serverNow: number): void {
    if (snap.salesRate) this.rates.merge(snap.salesRate.series);
    const end = Math.floor(serverNow);
    const w = this.rates.window(end);
    const n = CATEGORIES.length;
    this.salesChart.setData([w[0], ...w.slice(1, 1 + n)] as uPlot.AlignedData);
    this.revenueChart.setData([w[0], ...w.slice(1 + n)] as uPlot.AlignedData);

    const counts = new Map(snap.ingest.map((c) => [c.protocol, Number(c.sales)]));
    this.ingestLabels = PROTOCOLS.filter((p) => counts.has(p) || p !== "unknown");
    this.ingestChart.setData([this.ingestLabels.map((_, i) => i), this.ingestLabels.map((p) => counts.get(p) ?? 0)]);

    this.lag[0].push(serverNow);
    this.lag[1].push(snap.lag?.known ? Number(snap.lag.records) : NaN);
    while (this.lag[0].length > 0 && this.lag[0][0] < serverNow - HISTORY_SECONDS) {
      this.lag[0].shift();
      this.lag[1].shift();
    }
    this.lagChart.setData([this.lag[0], this.lag[1].map((v) => (Number.isNaN(v) ? null : v))] as uPlot.AlignedData);

    this.prices(snap);
  }

  /** prices draws the electronics price history, rebuilding the chart when the products change. */
  private prices(snap: SummarySnapshot): void {
    const el = document.getElementById("chart-prices")!;
    const { names, data } = alignPriceHistory(snap.priceHistory);
    const key = names.join(",");
    if (!this.pricesChart || key !== this.priceNames) {
      this.pricesChart?.destroy();
      this.priceNames = key;
      const palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
      this.pricesChart = new uPlot(
        {
          width: widthOf(el),
          height: CHART_HEIGHT,
          series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 1.5, spanGaps: true, points: { size: 4 } }))],
          axes: [timeAxis(), valueAxis((x) => formatDecimal(x, 2))],
          scales: { x: { time: true } },
          legend: { live: false },
          cursor: { show: false },
        },
        data as uPlot.AlignedData,
        el,
      );
      return;
    }
    this.pricesChart.setData(data as uPlot.AlignedData);
  }

  /** lagTick extends the lag line on a heartbeat, when nothing changed. */
  lagTick(serverNow: number): void {
    if (this.lag[1].length === 0) return;
    this.lag[0].push(serverNow);
    this.lag[1].push(this.lag[1][this.lag[1].length - 1]);
  }

  /** resize fits the charts to their panels. */
  resize(): void {
    for (const { chart, el } of this.resizable) chart()?.setSize({ width: widthOf(el), height: CHART_HEIGHT });
  }

  private buildCategoryRows(): void {
    const tbody = document.getElementById("category-rows")!;
    const fields = ["sales", "units", "revenue", "avg-price", "avg-quantity", "min-price", "max-price", "best", "worst"];
    for (const c of CATEGORIES) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.innerHTML = `<span class="swatch" style="background:${c.color}"></span>${c.name}`;
      tr.append(th);
      for (const f of fields) {
        const td = document.createElement("td");
        td.dataset.testid = `cat-${c.key}-${f}`;
        td.textContent = "–";
        tr.append(td);
      }
      tbody.append(tr);
    }
  }

  private buildRankings(): void {
    const root = document.getElementById("rankings")!;
    for (const r of [{ key: "all", name: "All products", color: "#d0d6e0" }, ...CATEGORIES]) {
      const div = document.createElement("div");
      div.className = "ranking";
      div.innerHTML =
        `<h3><span class="swatch" style="background:${r.color}"></span>${r.name}</h3>` +
        `<div class="ends"><div><h4>Top</h4><ol data-testid="rank-${r.key}-best"></ol></div>` +
        `<div><h4>Bottom</h4><ol data-testid="rank-${r.key}-worst"></ol></div></div>`;
      root.append(div);
    }
    const mix = document.createElement("p");
    mix.className = "dim small mix";
    mix.dataset.testid = "ingest-mix";
    document.getElementById("chart-ingest")!.after(mix);
  }
}
