// The ESM entry point of `sharevault/dynamic` (see lib/dynamic.ts): nothing is exported yet, so
// that code written against the wrapper fails rather than misbehaving. Loading the CommonJS build
// keeps one module instance for both forms once it exports something.
import '../dist/dynamic.js'
