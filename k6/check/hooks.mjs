// Module resolution hooks that give the k6 scripts the stand-ins in stubs/
// for k6's own modules, so that node can run them (check.mjs).
const stubs = {
  k6: 'k6.mjs',
  'k6/http': 'http.mjs',
  'k6/net/grpc': 'grpc.mjs',
};

export async function resolve(specifier, context, next) {
  if (Object.hasOwn(stubs, specifier)) {
    return { url: new URL(`./stubs/${stubs[specifier]}`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
