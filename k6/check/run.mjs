// run.mjs imports one k6 script under node with k6's modules stubbed, as a
// k6 VU would (__ENV from the environment, __VU 1), calls the exported
// functions named on the command line in order, and prints the options and
// every recorded call as JSON: node --import ./hooks-register.mjs run.mjs SCRIPT [FUNC...].
import { pathToFileURL } from 'node:url';
import path from 'node:path';

globalThis.__ENV = { ...process.env };
globalThis.__VU = 1;
globalThis.__calls = [];

const [script, ...funcs] = process.argv.slice(2);
const mod = await import(pathToFileURL(path.resolve(script)).href);
const exported = Object.keys(mod);
for (const f of funcs) {
  if (typeof mod[f] !== 'function') {
    console.log(JSON.stringify({ error: `${path.basename(script)} exports no function ${f}` }));
    process.exit(0);
  }
  mod[f]();
}
console.log(JSON.stringify({ options: mod.options || {}, exported, calls: globalThis.__calls }));
