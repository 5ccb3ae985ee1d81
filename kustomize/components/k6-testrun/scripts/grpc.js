// k6: gRPC to blackfriday.sales.v1.SalesService/RecordSale over HTTP/2, at a
// constant arrival rate (open loop), with k6/net/grpc and our proto files
// (or server reflection with -e REFLECT=1).
//
//   make tools                                         # once: third_party/protovalidate
//   k6 run -e PLAINTEXT=true k6/grpc.js                # local stack (make run)
//   k6 run -e PLAINTEXT=true -e GRPC_ADDR=api.blackfriday.svc:8080 -e RATE=2000 -e DURATION=5m k6/grpc.js
//   k6 run -e PLAINTEXT=true -e REFLECT=1 k6/grpc.js   # no proto files needed
//   k6 run -e TOKEN="$TOKEN" -e GRPC_ADDR=grpc.blackfriday.example.com:443 k6/grpc.js   # through the Gateway
//
// Environment: GRPC_ADDR (127.0.0.1:8080), PLAINTEXT (TLS unless true),
// TOKEN (a write token, docs/security.md; sent as authorization metadata,
// none without it), REFLECT (0), RATE calls/s (500), DURATION (30s), VUS
// (100), MAX_VUS (1000), SEED (1), P99_MS (250), MAX_DROPPED (0: iterations
// k6 may drop for want of a VU).
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { generator, connectSale } from './lib/sales.js';
import { plaintext, authHeaders } from './lib/target.js';

const GRPC_ADDR = __ENV.GRPC_ADDR || '127.0.0.1:8080';
const PLAINTEXT = plaintext(__ENV.PLAINTEXT);
const METADATA = authHeaders(__ENV.TOKEN, 'authorization');
const REFLECT = __ENV.REFLECT === '1';
export const RECORD_SALE_METHOD = 'blackfriday.sales.v1.SalesService/RecordSale';

// The proto import roots are relative to this script: our schemas, and
// protovalidate's validate.proto, which `make tools` copies from the Go
// module cache.
const client = new grpc.Client();
if (!REFLECT) {
  client.load(['../proto', '../third_party/protovalidate'], 'blackfriday/sales/v1/sales_service.proto');
}

export const options = {
  scenarios: {
    grpc: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 500),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
      tags: { protocol: 'grpc' },
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  thresholds: {
    grpc_req_duration: [`p(99)<${Number(__ENV.P99_MS || 250)}`],
    checks: ['rate>0.999'],
    // An open-loop run that ran out of VUs sent less than it claims.
    dropped_iterations: [`count<=${Number(__ENV.MAX_DROPPED || 0)}`],
  },
};

let next;
let connected = false;

// recordSaleGRPC sends one sale; compare.js runs it as a scenario too. Each
// VU keeps one HTTP/2 connection, as gRPC clients do, until k6 ends the VU
// (which closes it: teardown runs in a VU of its own, whose client never
// connected, so it cannot close the others').
export function recordSaleGRPC() {
  if (!connected) {
    client.connect(GRPC_ADDR, { plaintext: PLAINTEXT, reflect: REFLECT, timeout: '5s' });
    connected = true;
  }
  if (!next) next = generator(Number(__ENV.SEED || 1) * 100003 + __VU);
  const res = client.invoke(RECORD_SALE_METHOD, { sale: connectSale(next()) }, { metadata: METADATA, tags: { protocol: 'grpc' } });
  check(res, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'has a saleId': (r) => r && r.message && typeof r.message.saleId === 'string',
  });
}

export default function () {
  recordSaleGRPC();
}
