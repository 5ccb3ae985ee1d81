// check.mjs checks, without k6, what the k6 scripts promise for a deployed
// cluster (make k6-check runs it). Each script runs under node with k6's
// modules stubbed (run.mjs, stubs/), and the recorded calls are checked:
//
//   - TOKEN: a write sends "Authorization: Bearer $TOKEN" (HTTP) or
//     authorization metadata (gRPC), and nothing without a TOKEN;
//   - PLAINTEXT: https:// and TLS unless PLAINTEXT=true;
//   - every arrival-rate scenario has a dropped_iterations threshold that
//     can fail;
//   - a teardown closes only what its own VU opened (k6 runs teardown in a
//     VU of its own, so a client connected by the scenario VUs is not
//     connected there);
//   - the copies in kustomize/components/k6-testrun/scripts, from which the
//     TestRun's ConfigMap is generated, are the scripts of k6/.
//
// node k6/check/check.mjs [K6_DIR [COPIES_DIR]] (defaults: this repository's).
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const k6Dir = path.resolve(process.argv[2] || path.join(here, '..'));
const copies = path.resolve(process.argv[3] || path.join(here, '..', '..', 'kustomize', 'components', 'k6-testrun', 'scripts'));
const TOKEN = 'check-token-0123456789';
const failures = [];
const fail = (msg) => failures.push(msg);

// run imports script (in k6Dir) with env and calls funcs; returns the
// options, exports and recorded calls.
function run(script, env, funcs = []) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['TOKEN', 'PLAINTEXT'].includes(k)));
  const out = execFileSync(process.execPath, ['--import', path.join(here, 'hooks-register.mjs'), path.join(here, 'run.mjs'), path.join(k6Dir, script), ...funcs], {
    env: { ...clean, ...env },
    encoding: 'utf8',
  });
  const r = JSON.parse(out.trim().split('\n').pop());
  if (r.error) throw new Error(r.error);
  return r;
}

const writers = [
  { script: 'json.js', func: 'recordSaleJSON' },
  { script: 'grpc.js', func: 'recordSaleGRPC' },
  { script: 'compare.js', func: 'recordSaleJSON' },
  { script: 'compare.js', func: 'recordSaleGRPC' },
];

// The token and the transport, for every write path.
for (const { script, func } of writers) {
  const where = `${script} ${func}`;
  const withToken = run(script, { TOKEN }, [func]).calls;
  const writes = withToken.filter((c) => c.op === 'http.post' || c.op === 'grpc.invoke');
  if (writes.length === 0) fail(`${where}: made no call`);
  for (const c of writes) {
    const got = c.op === 'http.post' ? c.headers.Authorization : c.metadata.authorization;
    if (got !== `Bearer ${TOKEN}`) fail(`${where}: with TOKEN set, ${c.op} sends authorization ${JSON.stringify(got)}, want "Bearer <TOKEN>"`);
  }
  for (const c of run(script, {}, [func]).calls) {
    const h = c.headers || c.metadata;
    if (h && Object.keys(h).some((k) => k.toLowerCase() === 'authorization')) fail(`${where}: without TOKEN, ${c.op} still sends an authorization`);
  }
  for (const [env, wantPlain] of [[{}, false], [{ PLAINTEXT: 'false' }, false], [{ PLAINTEXT: 'true' }, true]]) {
    for (const c of run(script, env, [func]).calls) {
      const label = `PLAINTEXT=${env.PLAINTEXT ?? '(unset)'}`;
      if (c.op === 'http.post' && c.url.startsWith('https://') === wantPlain) fail(`${where}: ${label} posts to ${c.url}`);
      if (c.op === 'grpc.connect' && c.params.plaintext !== wantPlain) fail(`${where}: ${label} connects with plaintext ${c.params.plaintext}`);
    }
  }
}

// Thresholds and teardowns, for every script.
const scripts = readdirSync(k6Dir).filter((f) => f.endsWith('.js'));
for (const script of scripts) {
  const { options, exported } = run(script, {});
  const thresholds = options.thresholds || {};
  const dropped = (name) => [...(thresholds[`dropped_iterations{scenario:${name}}`] || []), ...(thresholds.dropped_iterations || [])];
  for (const [name, sc] of Object.entries(options.scenarios || {})) {
    if (!/arrival-rate$/.test(sc.executor || '')) continue;
    const ts = dropped(name).map((t) => (typeof t === 'string' ? t : t.threshold));
    if (!ts.some((t) => /^count\s*(<|<=)\s*\d+$/.test(t))) {
      fail(`${script}: arrival-rate scenario ${name} has no dropped_iterations threshold of the form count<=N (has ${JSON.stringify(ts)})`);
    }
  }
  if (exported.includes('teardown')) {
    // k6 runs teardown in a VU of its own, after setup and before any
    // scenario VU would have touched this module instance.
    const closes = run(script, {}, ['teardown']).calls.filter((c) => c.op === 'grpc.close');
    for (const c of closes) {
      if (!c.connected) fail(`${script}: teardown closes a gRPC client that its VU never connected: it closes nothing`);
    }
  }
}

// The TestRun's copies of the scripts.
const tree = (dir) =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js') && !f.startsWith('check')).sort()
    : [];
const want = tree(k6Dir);
const have = tree(copies);
for (const f of new Set([...want, ...have])) {
  if (!want.includes(f)) fail(`${path.relative(process.cwd(), copies)}/${f} is not in k6/`);
  else if (!have.includes(f)) fail(`${path.relative(process.cwd(), copies)}/${f} is missing: copy k6/${f} there`);
  else if (readFileSync(path.join(k6Dir, f), 'utf8') !== readFileSync(path.join(copies, f), 'utf8')) {
    fail(`${path.relative(process.cwd(), copies)}/${f} differs from k6/${f}: copy it again`);
  }
}

if (failures.length) {
  for (const f of failures) console.error(`k6-check: ${f}`);
  process.exit(1);
}
console.log(`k6-check: TOKEN and PLAINTEXT honoured by ${writers.length} write paths, dropped_iterations thresholds and teardowns of ${scripts.length} scripts, ${want.length} TestRun copies identical`);
