// k6: Connect JSON and gRPC against the same api, one after the other, as two
// tagged scenarios at the same constant arrival rate, with thresholds per
// scenario and a side-by-side table at the end (handleSummary). The Go load
// generator (`make compare`) measures more (bytes on the wire, CPU per call,
// every protocol, the no-op baseline); this is the same comparison for
// people who have k6.
//
//   make tools                                         # once: third_party/protovalidate
//   k6 run -e PLAINTEXT=true k6/compare.js             # local stack (make run)
//   k6 run -e PLAINTEXT=true -e API_HOST=api.blackfriday.svc:8080 -e GRPC_ADDR=api.blackfriday.svc:8080 -e RATE=2000 k6/compare.js
//
// Environment: as json.js and grpc.js (TOKEN, PLAINTEXT, ...), with
// DURATION per scenario (30s).
import { recordSaleJSON } from './json.js';
import { recordSaleGRPC } from './grpc.js';

export { recordSaleJSON, recordSaleGRPC };

const RATE = Number(__ENV.RATE || 500);
const DURATION = __ENV.DURATION || '30s';
const P99_MS = Number(__ENV.P99_MS || 250);

function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d);
  if (!m) return 30;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}

const scenario = (exec, protocol, startTime) => ({
  executor: 'constant-arrival-rate',
  exec,
  rate: RATE,
  timeUnit: '1s',
  duration: DURATION,
  startTime,
  preAllocatedVUs: Number(__ENV.VUS || 100),
  maxVUs: Number(__ENV.MAX_VUS || 1000),
  tags: { protocol },
});

// The scenarios run one after the other (with a 5 s gap), so they never share
// the machine.
export const options = {
  scenarios: {
    json: scenario('recordSaleJSON', 'connect-json', '0s'),
    grpc: scenario('recordSaleGRPC', 'grpc', `${seconds(DURATION) + 5}s`),
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  thresholds: {
    'http_req_duration{scenario:json}': [`p(99)<${P99_MS}`],
    'grpc_req_duration{scenario:grpc}': [`p(99)<${P99_MS}`],
    'checks{scenario:json}': ['rate>0.999'],
    'checks{scenario:grpc}': ['rate>0.999'],
    // An open-loop run that ran out of VUs sent less than it claims.
    'dropped_iterations{scenario:json}': [`count<=${Number(__ENV.MAX_DROPPED || 0)}`],
    'dropped_iterations{scenario:grpc}': [`count<=${Number(__ENV.MAX_DROPPED || 0)}`],
    // Referenced so that the summary carries these per-scenario figures.
    'iterations{scenario:json}': ['count>=0'],
    'iterations{scenario:grpc}': ['count>=0'],
    'data_sent{scenario:json}': ['count>=0'],
    'data_sent{scenario:grpc}': ['count>=0'],
    'data_received{scenario:json}': ['count>=0'],
    'data_received{scenario:grpc}': ['count>=0'],
  },
};

function metric(data, name) {
  const m = data.metrics[name];
  return m ? m.values : {};
}

function fmt(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  return Number(v).toFixed(digits);
}

// handleSummary prints the side-by-side table the Go report prints:
// throughput, latency percentiles, bytes per call and check pass rate.
export function handleSummary(data) {
  const rows = [
    ['', 'Connect JSON', 'gRPC', 'gRPC ÷ JSON'],
  ];
  const side = (scn, durationMetric) => {
    const it = metric(data, `iterations{scenario:${scn}}`);
    const d = metric(data, `${durationMetric}{scenario:${scn}}`);
    const sent = metric(data, `data_sent{scenario:${scn}}`);
    const recv = metric(data, `data_received{scenario:${scn}}`);
    const checks = metric(data, `checks{scenario:${scn}}`);
    const calls = it.count || 0;
    return {
      rate: calls / seconds(DURATION),
      med: d.med,
      p90: d['p(90)'],
      p99: d['p(99)'],
      p999: d['p(99.9)'],
      sent: calls ? (sent.count || 0) / calls : undefined,
      recv: calls ? (recv.count || 0) / calls : undefined,
      checks: checks.rate,
    };
  };
  const j = side('json', 'http_req_duration');
  const g = side('grpc', 'grpc_req_duration');
  const ratio = (a, b, digits) => (a && b ? fmt(b / a, digits) : '-');
  rows.push(['calls/s', fmt(j.rate, 0), fmt(g.rate, 0), ratio(j.rate, g.rate, 2)]);
  rows.push(['p50 ms', fmt(j.med, 2), fmt(g.med, 2), ratio(j.med, g.med, 2)]);
  rows.push(['p90 ms', fmt(j.p90, 2), fmt(g.p90, 2), ratio(j.p90, g.p90, 2)]);
  rows.push(['p99 ms', fmt(j.p99, 2), fmt(g.p99, 2), ratio(j.p99, g.p99, 2)]);
  rows.push(['p99.9 ms', fmt(j.p999, 2), fmt(g.p999, 2), ratio(j.p999, g.p999, 2)]);
  rows.push(['request B/call', fmt(j.sent, 0), fmt(g.sent, 0), ratio(j.sent, g.sent, 2)]);
  rows.push(['response B/call', fmt(j.recv, 0), fmt(g.recv, 0), ratio(j.recv, g.recv, 2)]);
  rows.push(['checks passed', fmt(j.checks * 100, 2) + '%', fmt(g.checks * 100, 2) + '%', '']);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => '| ' + r.map((v, c) => String(v).padEnd(widths[c])).join(' | ') + ' |';
  const table = [line(rows[0]), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.slice(1).map(line)].join('\n');
  const thresholds = Object.entries(data.metrics)
    .filter(([, m]) => m.thresholds)
    .flatMap(([name, m]) => Object.entries(m.thresholds).map(([t, r]) => `${r.ok ? 'ok  ' : 'FAIL'} ${name} ${t}`))
    .filter((l) => !l.includes('>=0'))
    .join('\n');
  return {
    stdout: `\nJSON vs gRPC at ${RATE} calls/s for ${DURATION} each\n\n${table}\n\nthresholds:\n${thresholds}\n`,
    'k6-compare-summary.json': JSON.stringify(data, null, 2),
  };
}
