// Builds the dashboard with esbuild, or runs its unit tests.
//
//   node build.mjs [--out DIR]   bundle into DIR (default: the api's embedded
//                                copy, services/api/internal/web/dist)
//   node build.mjs --test        bundle test/*.test.ts and run node's test runner
//
// The output depends only on the sources and on the versions that
// package-lock.json pins, so `make web-check` can rebuild it and compare.
import * as esbuild from "esbuild";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);

if (args.includes("--test")) {
  const out = mkdtempSync(join(tmpdir(), "bf-web-test-"));
  try {
    const tests = readdirSync(join(here, "test")).filter((f) => f.endsWith(".test.ts"));
    await esbuild.build({
      entryPoints: tests.map((f) => join(here, "test", f)),
      outdir: out,
      outExtension: { ".js": ".mjs" },
      bundle: true,
      platform: "node",
      format: "esm",
      packages: "external",
      logLevel: "warning",
    });
    const files = readdirSync(out).map((f) => join(out, f));
    const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
    process.exitCode = run.status ?? 1;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
} else {
  const i = args.indexOf("--out");
  const out = i >= 0 ? args[i + 1] : join(here, "..", "services", "api", "internal", "web", "dist");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "assets"), { recursive: true });
  await esbuild.build({
    entryPoints: { app: join(here, "src", "main.ts") },
    outdir: join(out, "assets"),
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022"],
    // Licences of the bundled libraries stay with the bundle.
    legalComments: "eof",
    charset: "utf8",
    logLevel: "warning",
  });
  copyFileSync(join(here, "index.html"), join(out, "index.html"));
}
