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
  /** Needs the metadata only: no decryption. */
  | 'metadata'
  /** Returns plaintext shares recovered from Dynamic's backup: refused, the SDK is never called. */
  | 'refused'

export interface Operation {
  kind: OperationKind
  /** The audit purpose of the hydrate (`hydrate`, `merge`, `replace`). */
  purpose?: string
}

export const OPERATIONS = {
  createWalletAccount: { kind: 'create' },
  importPrivateKey: { kind: 'create' },
  signMessage: { kind: 'hydrate', purpose: 'sign' },
  signTransaction: { kind: 'hydrate', purpose: 'sign' },
  signTypedData: { kind: 'hydrate', purpose: 'sign' },
  getWalletClient: { kind: 'hydrate', purpose: 'sign' },
  verifyPassword: { kind: 'metadata' },
  isPasswordEncrypted: { kind: 'metadata' },
  requiresPasswordForOperation: { kind: 'metadata' },
  getWalletExternalServerKeyShareBackupInfo: { kind: 'metadata' },
  getExternalServerKeyShares: { kind: 'refused' },
  exportExternalServerKeyShares: { kind: 'refused' },
  // A full-key export: hydrated only by a vault whose allow includes 'hydrate:export'.
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
