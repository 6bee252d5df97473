/**
 * Generated, SDK-shaped wallets (`sharevault/testing`): what `createWalletAccount()` returns, with
 * the share classes, counts and undocumented metadata fields of SDK-CONTRACT.md. Every value is
 * random at run time: nothing here, and no file, holds anything that looks like a real share.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { CreatedWallet, KeyShareBackupInfo, ThresholdSignatureScheme } from '../types'

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** A random base58 string, built flat (as the SDK's strings are), not as a chain of concatenations. */
function base58(n: number): string {
  const bytes = randomBytes(n)
  for (let i = 0; i < n; i++) bytes[i] = B58.charCodeAt(bytes[i] % 58)
  return bytes.toString('latin1')
}

/** Mirrors the SDK's classes, so tests see class instances come back as plain objects. */
export class EcdsaPublicKey {
  constructor(public pubkey: Uint8Array) {}
}
export class EcdsaKeygenResult {
  constructor(public pubkey: EcdsaPublicKey, public secretShare: string) {}
}
export class Ed25519KeygenResult {
  constructor(public pubkey: Uint8Array, public secretShare: string) {}
}
export class BIP340KeygenResult {
  constructor(public pubkey: Uint8Array, public secretShare: string) {}
}

export type Chain = 'EVM' | 'SVM' | 'BTC' | 'TON'

export const SHARE_COUNT: Record<ThresholdSignatureScheme, number> = {
  TWO_OF_TWO: 1,
  TWO_OF_THREE: 2,
  THREE_OF_FIVE: 3,
}

export interface FakeWalletOptions {
  scheme?: ThresholdSignatureScheme
  /** Length of each generated `secretShare` string (default 3000). */
  secretShareLength?: number
  addressType?: 'taproot' | 'native_segwit'
}

export function emptyBackupInfo(): KeyShareBackupInfo {
  return {
    passwordEncrypted: false,
    backups: { dynamic: [], googleDrive: [], iCloud: [], user: [], external: [], delegated: [] },
  }
}

export function backupInfoWithExternal(id: string = randomUUID()): KeyShareBackupInfo {
  const b = emptyBackupInfo()
  b.passwordEncrypted = true
  b.backups.external = [{ location: 'external', externalKeyShareId: id, passwordEncrypted: true }]
  return b
}

function evmAddress(): string {
  const hex = randomBytes(20).toString('hex')
  // Mixed case, as checksummed addresses are.
  return '0x' + [...hex].map((c, i) => (i % 3 === 0 ? c.toUpperCase() : c)).join('')
}

export function fakeShares(chain: Chain, count: number, opts: FakeWalletOptions = {}): CreatedWallet['externalServerKeyShares'] {
  const len = opts.secretShareLength ?? 3000
  const out = []
  for (let i = 0; i < count; i++) {
    const secret = base58(len)
    if (chain === 'SVM' || chain === 'TON') out.push(new Ed25519KeygenResult(new Uint8Array(randomBytes(32)), secret))
    else if (chain === 'BTC' && (opts.addressType ?? 'taproot') === 'taproot') {
      out.push(new BIP340KeygenResult(new Uint8Array(randomBytes(32)), secret))
    } else out.push(new EcdsaKeygenResult(new EcdsaPublicKey(new Uint8Array(randomBytes(64))), secret))
  }
  return out
}

/** A result shaped like `createWalletAccount({ backUpToDynamic: false })`. */
export function fakeCreatedWallet(chain: Chain, opts: FakeWalletOptions = {}): CreatedWallet {
  const scheme = opts.scheme ?? 'TWO_OF_TWO'
  const addressType = opts.addressType ?? 'taproot'
  const accountAddress =
    chain === 'EVM' ? evmAddress() : chain === 'SVM' ? base58(44) : chain === 'TON' ? 'UQ' + randomBytes(34).toString('base64url') : (addressType === 'taproot' ? 'bc1p' : 'bc1q') + base58(38).toLowerCase()
  const walletMetadata: CreatedWallet['walletMetadata'] = {
    walletId: randomUUID(),
    accountAddress,
    chainName: chain,
    thresholdSignatureScheme: scheme,
    derivationPath: chain === 'EVM' ? '{"0":44,"1":60,"2":0,"3":0,"4":0}' : '',
    externalServerKeySharesBackupInfo: emptyBackupInfo(),
    // Undocumented fields the real SDK returns: they must survive a round trip.
    shareSetId: randomUUID(),
    shareSetType: 'external',
    otherShareSets: [{ shareSetId: randomUUID(), createdAt: new Date(0).toISOString() }],
  }
  if (chain === 'BTC') walletMetadata.addressType = addressType
  return {
    walletMetadata,
    externalServerKeyShares: fakeShares(chain, SHARE_COUNT[scheme], opts),
    rawPublicKey: new Uint8Array(randomBytes(33)),
    externalKeySharesWithBackupStatus: [],
  }
}
