// The page: numbers as text (each with data-testid and, in data-value, the
// exact value they show) and charts drawn by uPlot.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import type { SummarySnapshot, ProductUnits } from "./gen/blackfriday/sales/v1/analytics_service_pb";
import {
  CATEGORIES,
  PROTOCOLS,
  HISTORY_SECONDS,
  INGEST_NAMES,
  RateHistory,
  formatAvgCents,
  formatCents,
  formatCount,
  formatDecimal,
  formatRate,
  formatShare,
  priceStrips,
} from "./model";

const CHART_HEIGHT = 180;
/** The height of a product's price chart, its time axis included. */
const MULTIPLE_HEIGHT = 100;
/** PALETTE colours the price charts, one colour per product: Tableau 10, distinct on the dark page. */
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

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
  private readonly lagChart: uPlot;
  private priceCharts: uPlot[] = [];
  private priceNames = "";
  /** priceScale is the span and range every product's chart shares, read by their scales. */
  private priceScale = { t0: 0, t1: 1, lo: 0, hi: 1, pad: 1 };
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
      { chart: () => this.lagChart, el: lagEl },
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

    this.ingest(snap);
  }

  /**
   * ingest shows the protocol mix as one row per protocol: its name, a bar
   * scaled to the busiest protocol and its count and share. Each name has a
   * row of its own, so names never collide however small a share is.
   */
  private ingest(snap: SummarySnapshot): void {
    const mix = byTestId("ingest-mix");
    const value = snap.ingest.map((c) => `${c.protocol}:${c.sales}`).join(",");
    if (mix.dataset.value === value) return;
    mix.dataset.value = value;
    const counts = new Map(snap.ingest.map((c) => [c.protocol, c.sales]));
    const shown = PROTOCOLS.filter((p) => counts.has(p) || p !== "unknown");
    const total = shown.reduce((sum, p) => sum + Number(counts.get(p) ?? 0n), 0);
    const most = Math.max(1, ...shown.map((p) => Number(counts.get(p) ?? 0n)));
    mix.replaceChildren(
      ...shown.map((p) => {
        const n = Number(counts.get(p) ?? 0n);
        const row = document.createElement("div");
        row.className = "mix-row";
        row.dataset.protocol = p;
        const label = document.createElement("span");
        label.className = "mix-label";
        label.dataset.testid = "ingest-label";
        label.title = p;
        label.textContent = INGEST_NAMES[p] ?? p;
        const track = document.createElement("span");
        track.className = "mix-track";
        const bar = document.createElement("span");
        bar.className = "mix-bar" + (n > 0 ? "" : " none");
        // A share too small to see still shows as a sliver: it is not zero.
        bar.style.width = n > 0 ? `max(2px, ${((100 * n) / most).toFixed(2)}%)` : "0";
        track.append(bar);
        const num = document.createElement("span");
        num.className = "mix-num";
        num.textContent = formatCount(counts.get(p) ?? 0n);
        const share = document.createElement("span");
        share.className = "mix-share";
        share.textContent = formatShare(n, total);
        row.append(label, track, num, share);
        return row;
      }),
    );
  }

  /** charts feeds the snapshot to the charts and redraws them: throttled by the caller. */
  drawCharts(snap: SummarySnapshot, serverNow: number): void {
    if (snap.salesRate) this.rates.merge(snap.salesRate.series);
    const end = Math.floor(serverNow);
    const w = this.rates.window(end);
    const n = CATEGORIES.length;
    this.salesChart.setData([w[0], ...w.slice(1, 1 + n)] as uPlot.AlignedData);
    this.revenueChart.setData([w[0], ...w.slice(1 + n)] as uPlot.AlignedData);

    this.lag[0].push(serverNow);
    this.lag[1].push(snap.lag?.known ? Number(snap.lag.records) : NaN);
    while (this.lag[0].length > 0 && this.lag[0][0] < serverNow - HISTORY_SECONDS) {
      this.lag[0].shift();
      this.lag[1].shift();
    }
    this.lagChart.setData([this.lag[0], this.lag[1].map((v) => (Number.isNaN(v) ? null : v))] as uPlot.AlignedData);

    this.prices(snap);
  }

  /**
   * prices draws the electronics price history as small multiples: a chart
   * per product, in its own colour, titled with its name and last price,
   * on the time span and price range all of them share, so levels and
   * timing compare across products without their lines crossing. Prices
   * are steps: a price holds until the product's next sale. The charts are
   * rebuilt when the products change.
   */
  private prices(snap: SummarySnapshot): void {
    const root = document.getElementById("chart-prices")!;
    const { strips, t0, t1, lo, hi } = priceStrips(snap.priceHistory);
    // Room above and below the extremes, whose labels the axis shows.
    const pad = Math.max((hi - lo) * 0.15, 0.01);
    this.priceScale = { t0, t1: t1 > t0 ? t1 : t0 + 1, lo, hi, pad };
    const key = strips.map((s) => s.name).join(",");
    if (key !== this.priceNames) {
      this.priceNames = key;
      for (const c of this.priceCharts) c.destroy();
      this.priceCharts = [];
      root.replaceChildren();
      root.dataset.value = key;
      if (strips.length === 0) {
        root.innerHTML = '<p class="dim small">no electronics sales yet</p>';
        return;
      }
      const plots = strips.map((s, i) => {
        const color = PALETTE[i % PALETTE.length];
        const cell = document.createElement("div");
        cell.className = "multiple";
        cell.dataset.testid = "price-product";
        cell.dataset.product = s.name;
        cell.dataset.color = color;
        const title = document.createElement("div");
        title.className = "multiple-title";
        title.innerHTML = `<span class="swatch" style="background:${color}"></span><span class="multiple-name"></span><span class="multiple-last"></span>`;
        title.querySelector(".multiple-name")!.textContent = s.name;
        const plot = document.createElement("div");
        cell.append(title, plot);
        root.append(cell);
        return { plot, color };
      });
      strips.forEach((s, i) => {
        const { plot, color } = plots[i];
        this.priceCharts.push(
          new uPlot(
            {
              width: Math.max(120, plot.clientWidth),
              height: MULTIPLE_HEIGHT,
              series: [
                {},
                { label: s.name, stroke: color, fill: color + "22", width: 1.5, paths: uPlot.paths.stepped!({ align: 1 }), points: { size: 3, fill: color } },
              ],
              axes: [
                { ...timeAxis(), size: 24, space: 50, font: "10px system-ui, sans-serif" },
                {
                  ...valueAxis(),
                  size: 44,
                  font: "10px system-ui, sans-serif",
                  // The lowest, middle and highest price of them all, to the
                  // precision their spread needs.
                  splits: () => {
                    const { lo, hi } = this.priceScale;
                    return lo === hi ? [lo] : [lo, (lo + hi) / 2, hi];
                  },
                  values: (_u, splits) => {
                    const spread = this.priceScale.hi - this.priceScale.lo;
                    return splits.map((x) => formatDecimal(x, spread >= 20 ? 0 : spread >= 2 ? 1 : 2));
                  },
                },
              ],
              scales: {
                x: { time: true, range: () => [this.priceScale.t0, this.priceScale.t1] },
                y: { range: () => [this.priceScale.lo - this.priceScale.pad, this.priceScale.hi + this.priceScale.pad] },
              },
              legend: { show: false },
              cursor: { show: false },
            },
            [s.times, s.prices],
            plot,
          ),
        );
      });
    } else {
      strips.forEach((s, i) => this.priceCharts[i].setData([s.times, s.prices]));
    }
    root.querySelectorAll<HTMLElement>(".multiple-last").forEach((el, i) => {
      const p = strips[i].prices;
      el.textContent = p.length ? formatDecimal(p[p.length - 1], 2) : "–";
    });
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
    for (const c of this.priceCharts) c.setSize({ width: Math.max(120, c.root.parentElement!.clientWidth), height: MULTIPLE_HEIGHT });
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
  }
}
