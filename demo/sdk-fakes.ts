/**
 * Fakes of the Dynamic SDK's four wallet clients (1.x stateless API), following SDK-CONTRACT.md:
 * realistic share shapes and counts by scheme, a server side that knows each wallet's current
 * share set and password state, and the failures the real SDK has: signing without
 * `externalServerKeySharesBackupInfo`, with shares a refresh has replaced, BTC without
 * `addressType`; `updatePassword` changes `passwordEncrypted`; reshare changes the share count.
 * Everything is generated at run time (no fixture file holds anything that looks like a share).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { backupInfoWithExternal, emptyBackupInfo, fakeShares, SHARE_COUNT, type Chain } from './fixtures'
import type { KeyShareBackupInfo, ServerKeyShare, ThresholdSignatureScheme, WalletMetadata } from 'sharevault'

interface ServerWallet {
  chain: Chain
  scheme: ThresholdSignatureScheme
  secrets: Set<string>
  password?: string
}

/**
 * The state parameters. As in the 1.x reference, the sign calls take no `accountAddress` (the
 * wallet is the one `walletMetadata` names); where one is passed it must match.
 */
export interface StateArgs {
  accountAddress?: string
  walletMetadata: WalletMetadata
  externalServerKeyShares: ServerKeyShare[]
  password?: string
}

/** The metadata-only calls (verifyPassword and friends): no shares. */
export interface MetadataArgs {
  walletMetadata: WalletMetadata
  password?: string
}

export interface CreateArgs {
  thresholdSignatureScheme: ThresholdSignatureScheme
  password?: string
  backUpToDynamic?: boolean
  addressType?: 'taproot' | 'native_segwit'
}

export class SdkError extends Error {}

const RESHARE_PATHS = new Set(['TWO_OF_TWO>TWO_OF_TWO', 'TWO_OF_THREE>TWO_OF_THREE', 'THREE_OF_FIVE>THREE_OF_FIVE', 'TWO_OF_TWO>TWO_OF_THREE', 'TWO_OF_TWO>THREE_OF_FIVE', 'TWO_OF_THREE>THREE_OF_FIVE', 'TWO_OF_THREE>TWO_OF_TWO', 'THREE_OF_FIVE>TWO_OF_THREE'])

function address(chain: Chain, addressType?: string): string {
  const hex = randomBytes(20).toString('hex')
  if (chain === 'EVM') return '0x' + [...hex].map((c, i) => (i % 3 === 0 ? c.toUpperCase() : c)).join('')
  if (chain === 'SVM') return randomBytes(32).toString('base64url').replace(/[-_0OIl]/g, 'x').slice(0, 44)
  if (chain === 'TON') return 'UQ' + randomBytes(34).toString('base64url')
  return (addressType === 'native_segwit' ? 'bc1q' : 'bc1p') + hex.slice(0, 38)
}

/** What every client shares: the server side, and the calls all four have. */
export class FakeWalletClient {
  /** What the fake "server" saw: call name and whether shares were passed. */
  readonly calls: { method: string; withShares: boolean; backUpToDynamic?: unknown }[] = []
  protected readonly wallets = new Map<string, ServerWallet>()

  constructor(readonly chainName: Chain) {}

  protected record(method: string, args: unknown): void {
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>
    this.calls.push({ method, withShares: 'externalServerKeyShares' in a, backUpToDynamic: a.backUpToDynamic })
  }

  private key(a: string): string {
    return this.chainName === 'EVM' ? a.toLowerCase() : a
  }

  /** The SDK's checks on caller-held state, as SDK-CONTRACT.md section 4 lists them. */
  /** The wallet `walletMetadata` names, with the SDK's checks on it. */
  protected walletOf(method: string, args: MetadataArgs & { accountAddress?: string }): ServerWallet {
    const m = args.walletMetadata
    if (!m || typeof m.accountAddress !== 'string') throw new SdkError(`${method}: walletMetadata is required`)
    if (args.accountAddress !== undefined && this.key(m.accountAddress) !== this.key(args.accountAddress)) throw new SdkError(`${method}: walletMetadata does not match accountAddress`)
    const w = this.wallets.get(this.key(m.accountAddress))
    if (!w) throw new SdkError(`${method}: unknown wallet ${m.accountAddress}`)
    return w
  }

  protected check(method: string, args: StateArgs): ServerWallet {
    this.record(method, args)
    const w = this.walletOf(method, args)
    const m = args.walletMetadata
    if (!m.externalServerKeySharesBackupInfo) throw new SdkError(`${method}: externalServerKeySharesBackupInfo is required with caller-held shares`)
    if (this.chainName === 'BTC' && !m.addressType) throw new SdkError(`${method}: addressType is required for BTC`)
    const shares = args.externalServerKeyShares
    if (!Array.isArray(shares) || shares.length !== SHARE_COUNT[w.scheme]) throw new SdkError(`${method}: expected ${SHARE_COUNT[w.scheme]} shares for ${w.scheme}`)
    for (const s of shares) {
      if (typeof s.secretShare !== 'string' || !w.secrets.has(s.secretShare)) throw new SdkError(`${method}: a share is not current (refreshed or resharing replaced it)`)
    }
    if (w.password !== undefined && args.password !== w.password && method !== 'isPasswordEncrypted' && method !== 'requiresPasswordForOperation') {
      throw new SdkError(`${method}: wrong or missing password`)
    }
    return w
  }

  private newWallet(method: string, args: CreateArgs & { privateKey?: string }) {
    this.record(method, args)
    if (this.chainName === 'BTC' && !args.addressType) throw new SdkError(`${method}: addressType is required for BTC`)
    const scheme = args.thresholdSignatureScheme
    if (!(scheme in SHARE_COUNT)) throw new SdkError(`${method}: unknown scheme ${String(scheme)}`)
    const shares = fakeShares(this.chainName, SHARE_COUNT[scheme], { addressType: args.addressType })
    const accountAddress = address(this.chainName, args.addressType)
    const backupInfo = args.backUpToDynamic === false ? emptyBackupInfo() : backupInfoWithExternal()
    if (args.password) backupInfo.passwordEncrypted = true
    const walletMetadata: WalletMetadata = {
      walletId: randomUUID(),
      accountAddress,
      chainName: this.chainName,
      thresholdSignatureScheme: scheme,
      derivationPath: this.chainName === 'EVM' ? '{"0":44,"1":60,"2":0,"3":0,"4":0}' : '',
      externalServerKeySharesBackupInfo: backupInfo,
      shareSetId: randomUUID(),
      shareSetType: 'external',
      otherShareSets: [],
    }
    if (this.chainName === 'BTC') walletMetadata.addressType = args.addressType
    this.wallets.set(this.key(accountAddress), { chain: this.chainName, scheme, secrets: new Set(shares.map((s) => s.secretShare)), password: args.password })
    return {
      walletMetadata,
      externalServerKeyShares: shares,
      externalKeySharesWithBackupStatus: shares.map((s) => ({ share: s, backedUpToDynamic: args.backUpToDynamic !== false })),
      rawPublicKey: new Uint8Array(randomBytes(33)),
      ...(this.chainName === 'EVM' ? { publicKeyHex: randomBytes(33).toString('hex') } : {}),
    }
  }

  async createWalletAccount(args: CreateArgs) {
    return this.newWallet('createWalletAccount', args)
  }

  async importPrivateKey(args: CreateArgs & { privateKey: string; chainName: string }) {
    if (!args.privateKey) throw new SdkError('importPrivateKey: privateKey is required')
    return this.newWallet('importPrivateKey', args)
  }

  /** A signature that depends on the shares actually passed. */
  protected sign(args: StateArgs, what: string): string {
    const h = createHmac('sha256', args.externalServerKeyShares.map((s) => s.secretShare).join('|'))
    return h.update(what).digest('hex')
  }

  async signMessage(args: StateArgs & { message: string }): Promise<string> {
    this.check('signMessage', args)
    return this.sign(args, `msg:${args.message}`)
  }

  async signTransaction(args: StateArgs & { transaction: unknown }): Promise<string> {
    this.check('signTransaction', args)
    return this.sign(args, `tx:${JSON.stringify(args.transaction)}`)
  }

  async verifyPassword(args: MetadataArgs & { password: string }): Promise<void> {
    this.record('verifyPassword', args)
    if (this.walletOf('verifyPassword', args).password !== (args.password || undefined)) throw new SdkError('verifyPassword: wrong password')
  }

  async isPasswordEncrypted(args: MetadataArgs): Promise<boolean> {
    this.record('isPasswordEncrypted', args)
    return this.walletOf('isPasswordEncrypted', args).password !== undefined
  }

  async requiresPasswordForOperation(args: MetadataArgs & { walletOperation?: string }): Promise<boolean> {
    this.record('requiresPasswordForOperation', args)
    return this.walletOf('requiresPasswordForOperation', args).password !== undefined
  }

  async getWalletExternalServerKeyShareBackupInfo(args: MetadataArgs): Promise<KeyShareBackupInfo> {
    this.record('getWalletExternalServerKeyShareBackupInfo', args)
    this.walletOf('getWalletExternalServerKeyShareBackupInfo', args)
    return args.walletMetadata.externalServerKeySharesBackupInfo as KeyShareBackupInfo
  }

  /** Plaintext shares recovered from Dynamic's backup: the wrapper must refuse this. */
  async getExternalServerKeyShares(args: MetadataArgs): Promise<ServerKeyShare[]> {
    this.record('getExternalServerKeyShares', args)
    return fakeShares(this.chainName, SHARE_COUNT[this.walletOf('getExternalServerKeyShares', args).scheme])
  }

  async exportExternalServerKeyShares(args: MetadataArgs): Promise<ServerKeyShare[]> {
    this.record('exportExternalServerKeyShares', args)
    return fakeShares(this.chainName, SHARE_COUNT[this.walletOf('exportExternalServerKeyShares', args).scheme])
  }

  async exportKey(args: StateArgs): Promise<{ derivedPrivateKey: string }> {
    this.check('exportKey', args)
    return { derivedPrivateKey: randomBytes(32).toString('hex') }
  }

  async storeEncryptedBackupByWallet(args: StateArgs & { backUpToDynamic?: boolean }): Promise<{ keySharesWithBackupStatus: unknown[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('storeEncryptedBackupByWallet', args)
    const backupInfo = backupInfoWithExternal()
    backupInfo.passwordEncrypted = w.password !== undefined
    return { keySharesWithBackupStatus: args.externalServerKeyShares.map((share) => ({ share, backedUp: true })), backupInfo }
  }

  async updatePassword(args: StateArgs & { existingPassword?: string; newPassword?: string; backUpToDynamic?: boolean }): Promise<{ backupInfo: KeyShareBackupInfo }> {
    const w = this.check('updatePassword', { ...args, password: args.existingPassword })
    w.password = args.newPassword || undefined
    const backupInfo = backupInfoWithExternal()
    backupInfo.passwordEncrypted = w.password !== undefined
    return { backupInfo }
  }

  async refreshWalletAccountShares(args: StateArgs): Promise<{ externalServerKeyShares: ServerKeyShare[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('refreshWalletAccountShares', args)
    const shares = fakeShares(this.chainName, SHARE_COUNT[w.scheme], { addressType: args.walletMetadata.addressType as 'taproot' | 'native_segwit' | undefined })
    // The old shares stop working the moment this returns.
    w.secrets = new Set(shares.map((s) => s.secretShare))
    return { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal() }
  }

  async reshare(args: StateArgs & { oldThresholdSignatureScheme: ThresholdSignatureScheme; newThresholdSignatureScheme: ThresholdSignatureScheme }): Promise<{ externalServerKeyShares: ServerKeyShare[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('reshare', args)
    if (args.oldThresholdSignatureScheme !== w.scheme) throw new SdkError('reshare: oldThresholdSignatureScheme is not the wallet\'s')
    if (!RESHARE_PATHS.has(`${w.scheme}>${args.newThresholdSignatureScheme}`)) throw new SdkError('reshare: not a supported path')
    w.scheme = args.newThresholdSignatureScheme
    const shares = fakeShares(this.chainName, SHARE_COUNT[w.scheme], { addressType: args.walletMetadata.addressType as 'taproot' | 'native_segwit' | undefined })
    w.secrets = new Set(shares.map((s) => s.secretShare))
    return { externalServerKeyShares: shares, backupInfo: backupInfoWithExternal() }
  }

  /** Not managed by the wrapper: passes through (identity only, as the real one). */
  async fetchWalletMetadata(accountAddress: string): Promise<{ accountAddress: string; chainName: Chain }> {
    this.record('fetchWalletMetadata', {})
    return { accountAddress, chainName: this.chainName }
  }
}

export class FakeEvmWalletClient extends FakeWalletClient {
  constructor() {
    super('EVM')
  }

  async signTypedData(args: StateArgs & { typedData: unknown }): Promise<string> {
    this.check('signTypedData', args)
    return this.sign(args, `typed:${JSON.stringify(args.typedData)}`)
  }

  /** Returns a client that signs with the shares it was given (as viem's wallet client would). */
  async getWalletClient(args: StateArgs & { chainId?: number }): Promise<{ account: string; signMessage: (m: { message: string }) => Promise<string> }> {
    this.check('getWalletClient', args)
    const state = { ...args }
    return { account: args.walletMetadata.accountAddress, signMessage: ({ message }) => this.signMessage({ ...state, message }) }
  }

  async exportPrivateKey(args: StateArgs): Promise<{ derivedPrivateKey: string }> {
    this.check('exportPrivateKey', args)
    return { derivedPrivateKey: '0x' + randomBytes(32).toString('hex') }
  }
}

export class FakeSvmWalletClient extends FakeWalletClient {
  constructor() {
    super('SVM')
  }

  /** SVM's export returns the key as a string. */
  async exportPrivateKey(args: StateArgs): Promise<string> {
    this.check('exportPrivateKey', args)
    return randomBytes(64).toString('base64')
  }
}

export class FakeBtcWalletClient extends FakeWalletClient {
  constructor() {
    super('BTC')
  }
}

export class FakeTonWalletClient extends FakeWalletClient {
  constructor() {
    super('TON')
  }
}

export function fakeClients() {
  return { EVM: new FakeEvmWalletClient(), SVM: new FakeSvmWalletClient(), BTC: new FakeBtcWalletClient(), TON: new FakeTonWalletClient() }
}
