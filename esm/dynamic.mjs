// The ESM entry point of `sharevault/dynamic` (see dist/dynamic.js): re-exports the CommonJS build.
import cjs from '../dist/dynamic.js'

export default cjs
