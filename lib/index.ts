export { Vault } from './vault'
export { VaultError } from './errors'
export type { VaultErrorCode } from './errors'
export * from './types'
