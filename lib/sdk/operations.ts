/**
 * Which vault operation each method of the Dynamic SDK's wallet clients (EVM, SVM, BTC, TON; the
 * 1.x stateless API) needs, and the audit purpose it is recorded under. SDK-CONTRACT.md section 4
 * is the source. A method not listed here passes through to the client untouched.
 */

/** How the wrapper handles a method. */
export type OperationKind =
  /** Creates a wallet: the result is stored (both halves) before anything is returned. */
  | 'create'
  /** Needs the wallet's state: hydrated (audited with the purpose), passed in, result returned. */
  | 'hydrate'
  /** As `hydrate`, then the returned `backupInfo` is merged into the stored metadata. */
  | 'merge'
  /** As `hydrate`, then the new shares, backup info (and scheme) replace the stored ones. */
  | 'replace'

export interface Operation {
  kind: OperationKind
  /** The audit purpose of the hydrate (`create` methods hydrate nothing). */
  purpose?: string
}

export const OPERATIONS = {
  createWalletAccount: { kind: 'create' },
  importPrivateKey: { kind: 'create' },
  signMessage: { kind: 'hydrate', purpose: 'sign' },
  signTransaction: { kind: 'hydrate', purpose: 'sign' },
  signTypedData: { kind: 'hydrate', purpose: 'sign' },
  getWalletClient: { kind: 'hydrate', purpose: 'sign' },
  verifyPassword: { kind: 'hydrate', purpose: 'password' },
  isPasswordEncrypted: { kind: 'hydrate', purpose: 'password' },
  requiresPasswordForOperation: { kind: 'hydrate', purpose: 'password' },
  // A full-key export: hydrated only by a vault opened with allow: ['hydrate:export'].
  exportKey: { kind: 'hydrate', purpose: 'export' },
  exportPrivateKey: { kind: 'hydrate', purpose: 'export' },
  storeEncryptedBackupByWallet: { kind: 'merge', purpose: 'backup' },
  updatePassword: { kind: 'merge', purpose: 'password' },
  refreshWalletAccountShares: { kind: 'replace', purpose: 'refresh' },
  reshare: { kind: 'replace', purpose: 'reshare' },
} as const satisfies Record<string, Operation>

export type ManagedMethod = keyof typeof OPERATIONS
export type MethodsOfKind<K extends OperationKind> = {
  [M in ManagedMethod]: (typeof OPERATIONS)[M]['kind'] extends K ? M : never
}[ManagedMethod]
