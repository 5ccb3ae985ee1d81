// Realistic, seeded sales for the k6 scripts: the same shape as the Go load
// generator's (tooling/loadgen/internal/sales): a category mix, a catalogue
// per category with Zipf-skewed popularity, list prices ending in .99 within
// each category's range, a Black Friday discount on one sale in five, and
// small quantities. The sequence is deterministic for a seed per VU.

// CATEGORIES match blackfriday.sales.v1.Category (and the course's enum).
export const CATEGORIES = [
  { name: 'CATEGORY_ELECTRONICS', legacy: 'Electronica', prefix: 'ELE', weight: 0.25, min: 1999, max: 249999, maxQty: 3 },
  { name: 'CATEGORY_CLOTHING', legacy: 'Ropa', prefix: 'CLO', weight: 0.35, min: 499, max: 19999, maxQty: 6 },
  { name: 'CATEGORY_HOME', legacy: 'Hogar', prefix: 'HOM', weight: 0.2, min: 999, max: 89999, maxQty: 4 },
  { name: 'CATEGORY_BEAUTY', legacy: 'Belleza', prefix: 'BEA', weight: 0.2, min: 299, max: 14999, maxQty: 8 },
];

const PRODUCTS = 200;
const ZIPF_S = 1.07;

// mulberry32 is a small seeded PRNG returning floats in [0, 1).
function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const popularity = (() => {
  const cdf = [];
  let acc = 0;
  for (let k = 0; k < PRODUCTS; k++) {
    acc += 1 / Math.pow(k + 1, ZIPF_S);
    cdf.push(acc);
  }
  return cdf.map((v) => v / acc);
})();

const catalogue = CATEGORIES.map((c, ci) => {
  const rnd = mulberry32(0x5bf03635 + ci);
  const lo = Math.log(c.min);
  const hi = Math.log(c.max);
  const products = [];
  for (let k = 0; k < PRODUCTS; k++) {
    const cents = Math.floor(Math.exp(lo + (hi - lo) * rnd()));
    products.push({ id: `${c.prefix}-${String(k + 1).padStart(4, '0')}`, list: Math.max(Math.floor(cents / 100) * 100 + 99, 99) });
  }
  return products;
});

function pick(cdf, u) {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const categoryCDF = (() => {
  let acc = 0;
  return CATEGORIES.map((c) => (acc += c.weight));
})();

// generator returns a function making the next sale of a seeded sequence:
// { ci, category, productId, priceCents, quantity }.
export function generator(seed) {
  const rnd = mulberry32(seed);
  return function next() {
    const ci = pick(categoryCDF, rnd());
    const c = CATEGORIES[ci];
    const p = catalogue[ci][pick(popularity, rnd())];
    let price = p.list;
    if (rnd() < 0.2) {
      const off = 10 + Math.floor(rnd() * 41);
      price = Math.max(Math.floor((price * (100 - off)) / 100), 1);
    }
    let qty = 1;
    while (qty < c.maxQty && rnd() < 0.4) qty++;
    return { ci, category: c.name, productId: p.id, priceCents: price, quantity: qty };
  };
}

// connectSale is a sale as Connect JSON (and k6's gRPC client) takes it.
export function connectSale(s) {
  return { category: s.category, productId: s.productId, priceCents: String(s.priceCents), quantity: s.quantity };
}

// ventaBody is the course's REST body for a sale.
export function ventaBody(s) {
  const cents = s.priceCents;
  const precio = `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
  return `{"categoria":"${CATEGORIES[s.ci].legacy}","producto_id":"${s.productId}","precio":${precio},"cantidad_vendida":${s.quantity}}`;
}
