// The ESM entry point: the CommonJS build, re-exported by name, so that `import` and `require`
// share one copy of the addon and of every class (`instanceof VaultError` holds across both).
// scripts/pack-test.js checks that these names are exactly the CommonJS build's exports.
import cjs from '../dist/index.js'

export const { Vault, VaultError, ErrorCode, migrate, DEFAULT_PERMISSIONS, ALL_PERMISSIONS } = cjs
