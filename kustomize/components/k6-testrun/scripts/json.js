// k6: Connect JSON to blackfriday.sales.v1.SalesService/RecordSale over
// HTTP, at a constant arrival rate (open loop).
//
//   k6 run -e PLAINTEXT=true k6/json.js                # local stack (make run)
//   k6 run -e PLAINTEXT=true -e API_HOST=api.blackfriday.svc:8080 -e RATE=2000 -e DURATION=5m k6/json.js
//   k6 run -e TOKEN="$TOKEN" -e API_HOST=api.blackfriday.example.com k6/json.js   # through the Gateway
//
// Environment: API_HOST (127.0.0.1:8080), PLAINTEXT (https:// unless true,
// then http://), TOKEN (a write token, docs/security.md; sent as
// Authorization: Bearer, none without it), RATE calls/s (500), DURATION
// (30s), VUS pre-allocated (100), MAX_VUS (1000), SEED (1), P99_MS
// threshold (250), MAX_DROPPED (0: iterations k6 may drop for want of a VU).
import http from 'k6/http';
import { check } from 'k6';
import { generator, connectSale } from './lib/sales.js';
import { plaintext, authHeaders } from './lib/target.js';

const BASE_URL = `${plaintext(__ENV.PLAINTEXT) ? 'http' : 'https'}://${__ENV.API_HOST || '127.0.0.1:8080'}`;
const HEADERS = Object.assign({ 'Content-Type': 'application/json' }, authHeaders(__ENV.TOKEN, 'Authorization'));
export const RECORD_SALE_PATH = '/blackfriday.sales.v1.SalesService/RecordSale';

export const options = {
  scenarios: {
    json: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 500),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
      tags: { protocol: 'connect-json' },
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(99)<${Number(__ENV.P99_MS || 250)}`],
    checks: ['rate>0.999'],
    // An open-loop run that ran out of VUs sent less than it claims.
    dropped_iterations: [`count<=${Number(__ENV.MAX_DROPPED || 0)}`],
  },
};

let next;

// recordSaleJSON posts one sale; compare.js runs it as a scenario too.
export function recordSaleJSON() {
  if (!next) next = generator(Number(__ENV.SEED || 1) * 100003 + __VU);
  const res = http.post(`${BASE_URL}${RECORD_SALE_PATH}`, JSON.stringify({ sale: connectSale(next()) }), {
    headers: HEADERS,
    tags: { name: 'RecordSale', protocol: 'connect-json' },
  });
  check(res, {
    'status is 200': (r) => r.status === 200,
    'has a saleId': (r) => r.status === 200 && typeof r.json('saleId') === 'string',
  });
}

export default function () {
  recordSaleJSON();
}
