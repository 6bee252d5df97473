/**
 * Contract fakes of the Dynamic SDK's four wallet clients (1.x stateless API), as SDK-CONTRACT.md
 * describes them where it matters to the code that calls them: realistic share shapes and counts
 * by scheme, and a "server" side that knows each wallet's current share set, scheme and password.
 * They fail where the real SDK fails: trimmed metadata (a documented or an undocumented field
 * missing), no `externalServerKeySharesBackupInfo`, shares a refresh or reshare replaced, a
 * metadata scheme that is not the wallet's, BTC without `addressType`, a wrong password.
 * `updatePassword` returns new backup info; a reshare changes the share count. Signatures are
 * deterministic: the same message gives the same signature, refresh or not (the key is the
 * same). `failNext` makes the next call fail. Everything is generated at run time (no file holds
 * anything that looks like a share).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { backupInfoWithExternal, emptyBackupInfo, fakeShares, SHARE_COUNT, type Chain } from './wallets'
import { SHARES, ShareFingerprints, type ShareSource } from './leaks'
import type { KeyShareBackupInfo, ServerKeyShare, ThresholdSignatureScheme, WalletMetadata } from '../types'

interface ServerWallet {
  chain: Chain
  walletId: string
  scheme: ThresholdSignatureScheme
  addressType?: string
  secrets: Set<string>
  /** The current share set (what a recovery from Dynamic's backup would return). */
  shares: ServerKeyShare[]
  password?: string
  /** The `externalKeyShareId` of the last backup info the server handed out, if any. */
  backupId?: string
  /** What the wallet's signatures are keyed by: its key, which refresh and reshare keep. */
  signingKey: Buffer
}

/** The calls that write Dynamic-side backup state: they refuse backup info older than the last one returned. */
const BACKUP_WRITERS = new Set(['updatePassword', 'storeEncryptedBackupByWallet', 'refreshWalletAccountShares', 'reshare'])

/** Fields the real 1.x metadata carries beyond the typed ones: refresh, reshare and updatePassword need them. */
const UNDOCUMENTED = ['shareSetId', 'shareSetType', 'otherShareSets'] as const

interface Failure {
  method?: string
  error: unknown
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

/** What the fake SDK throws (the real one throws plain `Error`s). */
export class SdkError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SdkError'
  }
}

const RESHARE_PATHS = new Set(['TWO_OF_TWO>TWO_OF_TWO', 'TWO_OF_THREE>TWO_OF_THREE', 'THREE_OF_FIVE>THREE_OF_FIVE', 'TWO_OF_TWO>TWO_OF_THREE', 'TWO_OF_TWO>THREE_OF_FIVE', 'TWO_OF_THREE>THREE_OF_FIVE', 'TWO_OF_THREE>TWO_OF_TWO', 'THREE_OF_FIVE>TWO_OF_THREE'])

function address(chain: Chain, addressType?: string): string {
  const hex = randomBytes(20).toString('hex')
  if (chain === 'EVM') return '0x' + [...hex].map((c, i) => (i % 3 === 0 ? c.toUpperCase() : c)).join('')
  if (chain === 'SVM') return randomBytes(32).toString('base64url').replace(/[-_0OIl]/g, 'x').slice(0, 44)
  if (chain === 'TON') return 'UQ' + randomBytes(34).toString('base64url')
  return (addressType === 'native_segwit' ? 'bc1q' : 'bc1p') + hex.slice(0, 38)
}

/** What every client shares: the server side, and the calls all four have. */
export class FakeWalletClient implements ShareSource {
  /** What the fake "server" saw: call name and whether shares were passed. */
  readonly calls: { method: string; withShares: boolean; backUpToDynamic?: unknown }[] = []
  protected readonly wallets = new Map<string, ServerWallet>()
  /** Every share this client handed out (for `findShares` / `toContainShareOf`). */
  readonly [SHARES] = new ShareFingerprints()
  private readonly failures: Failure[] = []

  constructor(readonly chainName: Chain) {}

  /**
   * Makes the next call of `method` (or the next call of any method, without one) throw `error`
   * (default: an `SdkError` saying it was injected), before the fake's server changes anything.
   * Queued: two `failNext` fail two calls.
   */
  failNext(method?: string, error?: unknown): this {
    if (method !== undefined && typeof (this as unknown as Record<string, unknown>)[method] !== 'function') {
      throw new TypeError(`failNext: the fake client has no method ${JSON.stringify(method)}`)
    }
    this.failures.push({ method, error: error ?? new SdkError(`${method ?? 'the next call'}: failure injected by failNext()`) })
    return this
  }

  protected record(method: string, args: unknown): void {
    const i = this.failures.findIndex((f) => f.method === undefined || f.method === method)
    if (i >= 0) throw this.failures.splice(i, 1)[0].error
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>
    this.calls.push({ method, withShares: 'externalServerKeyShares' in a, backUpToDynamic: a.backUpToDynamic })
  }

  /** New shares leave the server: remembered as handed out, and become the wallet's current set. */
  protected issue(w: ServerWallet, address: string, shares: ServerKeyShare[]): void {
    w.secrets = new Set(shares.map((s) => s.secretShare))
    w.shares = shares
    this[SHARES].add(address, shares)
  }

  /** New backup info for the wallet (Dynamic-side backup state changed): the latest from now on. */
  protected backupInfo(w: ServerWallet): KeyShareBackupInfo {
    const info = backupInfoWithExternal()
    info.passwordEncrypted = w.password !== undefined
    w.backupId = info.backups.external[0].externalKeyShareId
    return info
  }

  private key(a: string): string {
    return this.chainName === 'EVM' ? a.toLowerCase() : a
  }

  /** The wallet `walletMetadata` names, with the SDK's checks on the metadata. */
  protected walletOf(method: string, args: MetadataArgs & { accountAddress?: string }): ServerWallet {
    const m = args.walletMetadata
    if (!m || typeof m.accountAddress !== 'string') throw new SdkError(`${method}: walletMetadata is required`)
    if (args.accountAddress !== undefined && this.key(m.accountAddress) !== this.key(args.accountAddress)) throw new SdkError(`${method}: walletMetadata does not match accountAddress`)
    const w = this.wallets.get(this.key(m.accountAddress))
    if (!w) throw new SdkError(`${method}: unknown wallet ${m.accountAddress}`)
    if (m.walletId !== w.walletId) throw new SdkError(`${method}: walletMetadata.walletId is not the wallet's`)
    if (m.chainName !== w.chain) throw new SdkError(`${method}: walletMetadata.chainName is not the wallet's`)
    return w
  }

  /** The SDK's checks on caller-held state (metadata whole, backup info, current shares), SDK-CONTRACT.md sections 2 and 4. */
  protected check(method: string, args: StateArgs): ServerWallet {
    this.record(method, args)
    const w = this.walletOf(method, args)
    const m = args.walletMetadata
    const info = m.externalServerKeySharesBackupInfo as Partial<KeyShareBackupInfo> | undefined
    if (!info) throw new SdkError(`${method}: externalServerKeySharesBackupInfo is required with caller-held shares`)
    if (typeof info.passwordEncrypted !== 'boolean' || info.backups === null || typeof info.backups !== 'object') {
      throw new SdkError(`${method}: externalServerKeySharesBackupInfo is not backup info ({ passwordEncrypted, backups })`)
    }
    for (const f of UNDOCUMENTED) {
      if ((m as Record<string, unknown>)[f] === undefined || (m as Record<string, unknown>)[f] === null) {
        throw new SdkError(`${method}: walletMetadata.${f} is missing (the metadata was trimmed; persist the whole object)`)
      }
    }
    if (m.thresholdSignatureScheme !== w.scheme) throw new SdkError(`${method}: walletMetadata.thresholdSignatureScheme is ${String(m.thresholdSignatureScheme)}, the wallet's is ${w.scheme} (a reshare was not written back)`)
    if (this.chainName === 'BTC' && !m.addressType) throw new SdkError(`${method}: addressType is required for BTC`)
    if (this.chainName === 'BTC' && m.addressType !== w.addressType) throw new SdkError(`${method}: addressType is ${String(m.addressType)}, the wallet's is ${String(w.addressType)}`)
    if (BACKUP_WRITERS.has(method) && w.backupId !== undefined && !(info.backups.external ?? []).some((e) => e.externalKeyShareId === w.backupId)) {
      throw new SdkError(`${method}: the backup info is stale (merge the backupInfo the last backup, password change, refresh or reshare returned)`)
    }
    const shares = args.externalServerKeyShares
    if (!Array.isArray(shares) || shares.length !== SHARE_COUNT[w.scheme]) throw new SdkError(`${method}: expected ${SHARE_COUNT[w.scheme]} shares for ${w.scheme}`)
    const passed = new Set<string>()
    for (const s of shares) {
      if (typeof s?.secretShare !== 'string' || !w.secrets.has(s.secretShare)) throw new SdkError(`${method}: a share is not current (refreshed or resharing replaced it)`)
      passed.add(s.secretShare)
    }
    if (passed.size !== w.secrets.size) throw new SdkError(`${method}: the same share was passed twice (each of the wallet's shares is needed once)`)
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
    const w: ServerWallet = { chain: this.chainName, walletId: walletMetadata.walletId, scheme, addressType: args.addressType, secrets: new Set(), shares: [], password: args.password, signingKey: randomBytes(32) }
    if (args.backUpToDynamic !== false) w.backupId = backupInfo.backups.external[0]?.externalKeyShareId
    this.wallets.set(this.key(accountAddress), w)
    this.issue(w, accountAddress, shares)
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

  /**
   * A deterministic signature by the wallet's key (made only after `check` accepted the shares):
   * the same message gives the same signature, before and after a refresh or reshare (the key is
   * the same), as Ed25519 and RFC 6979 signatures do.
   */
  protected sign(args: StateArgs, what: string): string {
    const w = this.walletOf('sign', args)
    return createHmac('sha256', w.signingKey).update(what).digest('hex')
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
    const w = this.walletOf('verifyPassword', args)
    if (!args.walletMetadata.externalServerKeySharesBackupInfo) throw new SdkError('verifyPassword: externalServerKeySharesBackupInfo is required')
    if (w.password !== (args.password || undefined)) throw new SdkError('verifyPassword: wrong password')
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
    return this.recovered('getExternalServerKeyShares', args)
  }

  async exportExternalServerKeyShares(args: MetadataArgs): Promise<ServerKeyShare[]> {
    this.record('exportExternalServerKeyShares', args)
    return this.recovered('exportExternalServerKeyShares', args)
  }

  /** The current shares, as a recovery from Dynamic's backup returns them (with the password, if the wallet has one). */
  private recovered(method: string, args: MetadataArgs): ServerKeyShare[] {
    const w = this.walletOf(method, args)
    if (w.password !== undefined && args.password !== w.password) throw new SdkError(`${method}: wrong or missing password`)
    return w.shares.map((s) => Object.assign(Object.create(Object.getPrototypeOf(s) as object) as ServerKeyShare, s))
  }

  async exportKey(args: StateArgs): Promise<{ derivedPrivateKey: string }> {
    this.check('exportKey', args)
    return { derivedPrivateKey: randomBytes(32).toString('hex') }
  }

  async storeEncryptedBackupByWallet(args: StateArgs & { backUpToDynamic?: boolean }): Promise<{ keySharesWithBackupStatus: unknown[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('storeEncryptedBackupByWallet', args)
    const backupInfo = this.backupInfo(w)
    return { keySharesWithBackupStatus: args.externalServerKeyShares.map((share) => ({ share, backedUp: true })), backupInfo }
  }

  async updatePassword(args: StateArgs & { existingPassword?: string; newPassword?: string; backUpToDynamic?: boolean }): Promise<{ backupInfo: KeyShareBackupInfo }> {
    const w = this.check('updatePassword', { ...args, password: args.existingPassword })
    w.password = args.newPassword || undefined
    return { backupInfo: this.backupInfo(w) }
  }

  async refreshWalletAccountShares(args: StateArgs): Promise<{ externalServerKeyShares: ServerKeyShare[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('refreshWalletAccountShares', args)
    const shares = fakeShares(this.chainName, SHARE_COUNT[w.scheme], { addressType: args.walletMetadata.addressType as 'taproot' | 'native_segwit' | undefined })
    // The old shares stop working the moment this returns.
    this.issue(w, args.walletMetadata.accountAddress, shares)
    return { externalServerKeyShares: shares, backupInfo: this.backupInfo(w) }
  }

  async reshare(args: StateArgs & { oldThresholdSignatureScheme: ThresholdSignatureScheme; newThresholdSignatureScheme: ThresholdSignatureScheme }): Promise<{ externalServerKeyShares: ServerKeyShare[]; backupInfo: KeyShareBackupInfo }> {
    const w = this.check('reshare', args)
    if (args.oldThresholdSignatureScheme !== w.scheme) throw new SdkError('reshare: oldThresholdSignatureScheme is not the wallet\'s')
    if (!RESHARE_PATHS.has(`${w.scheme}>${args.newThresholdSignatureScheme}`)) throw new SdkError('reshare: not a supported path')
    w.scheme = args.newThresholdSignatureScheme
    const shares = fakeShares(this.chainName, SHARE_COUNT[w.scheme], { addressType: args.walletMetadata.addressType as 'taproot' | 'native_segwit' | undefined })
    this.issue(w, args.walletMetadata.accountAddress, shares)
    return { externalServerKeyShares: shares, backupInfo: this.backupInfo(w) }
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

/** The client a delegated call names (the 0.0.x SDK's `DelegatedWalletClient`, as far as a call needs it). */
export interface FakeDelegatedClient {
  environmentId: string
}

/** The auth block of a delegated call, as the SDK's delegated functions take it. */
export interface DelegatedCallArgs {
  walletId: string
  walletApiKey: string
  keyShare: { secretShare?: unknown }
  chainName: string
  message?: string | Uint8Array
}

/**
 * A contract fake of Dynamic's delegated signing (the SDK's `delegatedSignMessage(client, …)`,
 * `delegatedSignTransaction`, `delegatedSignTypedData`, `revokeDelegation(client, walletId)`).
 * Its "server" knows each delegation it was told of (`delegate`): a call must name a known,
 * unrevoked wallet with its API key and a share with a `secretShare`, or it throws `SdkError`.
 * Signatures are deterministic: HMAC-SHA256 of the message under the share.
 */
export function fakeDelegatedSdk() {
  const client: FakeDelegatedClient = { environmentId: randomUUID() }
  const known = new Map<string, { walletApiKey: string; revoked: boolean }>()
  const check = (c: FakeDelegatedClient, a: DelegatedCallArgs): string => {
    if (c !== client) throw new SdkError('another client')
    const d = known.get(a?.walletId)
    if (!d) throw new SdkError(`no delegation for wallet ${String(a?.walletId)}`)
    if (d.revoked) throw new SdkError(`the delegation of wallet ${a.walletId} was revoked`)
    if (a.walletApiKey !== d.walletApiKey) throw new SdkError('401: wrong wallet API key')
    if (typeof a.keyShare?.secretShare !== 'string' || a.keyShare.secretShare === '') throw new SdkError('the key share has no secretShare')
    if (typeof a.chainName !== 'string') throw new SdkError('chainName is required')
    return a.keyShare.secretShare
  }
  const sign = (secret: string, what: unknown) => createHmac('sha256', secret).update(typeof what === 'string' || what instanceof Uint8Array ? what : JSON.stringify(what)).digest('hex')
  return {
    client,
    /** Tells the fake server of a delegation (what Dynamic knows once a user delegates). */
    delegate(walletId: string, walletApiKey: string): void {
      known.set(walletId, { walletApiKey, revoked: false })
    },
    isRevoked(walletId: string): boolean {
      return known.get(walletId)?.revoked === true
    },
    async delegatedSignMessage(c: FakeDelegatedClient, a: DelegatedCallArgs & { message: string | Uint8Array }): Promise<string> {
      return sign(check(c, a), a.message)
    },
    async delegatedSignTransaction(c: FakeDelegatedClient, a: DelegatedCallArgs & { transaction: unknown }): Promise<string> {
      return sign(check(c, a), a.transaction)
    },
    async delegatedSignTypedData(c: FakeDelegatedClient, a: DelegatedCallArgs & { typedData: unknown }): Promise<string> {
      return sign(check(c, a), a.typedData)
    },
    async revokeDelegation(c: FakeDelegatedClient, walletId: string): Promise<void> {
      if (c !== client) throw new SdkError('another client')
      const d = known.get(walletId)
      if (!d) throw new SdkError(`no delegation for wallet ${walletId}`)
      d.revoked = true
    },
  }
}
