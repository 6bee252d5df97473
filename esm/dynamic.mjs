// The ESM entry point of `sharevault/dynamic`: the CommonJS build, re-exported by name (one copy
// of every class for both forms). scripts/pack-test.js checks the names against the CommonJS ones.
import cjs from '../dist/dynamic.js'

export const { vaulted, delegated, OPERATIONS, UnpersistedSharesError } = cjs
