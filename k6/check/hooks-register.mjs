// Registers hooks.mjs before a k6 script is imported (run.mjs).
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
