// A stand-in for Dynamic's EVM wallet client, so the example service runs without a Dynamic
// account: it creates wallets with generated, random shares (nothing here looks like a real key),
// remembers which shares are current, and signs with an HMAC keyed by the shares it is given, so a
// signature needs the right, current shares. It follows ../../shared/SDK-CONTRACT.md only as far as
// the service uses it; the complete contract fakes are demo/sdk-fakes.ts.
'use strict'
const { createHmac, randomBytes, randomUUID } = require('node:crypto')

class EcdsaPublicKey {
  constructor(pubkey) {
    this.pubkey = pubkey
  }
}

class EcdsaKeygenResult {
  constructor(pubkey, secretShare) {
    this.pubkey = pubkey
    this.secretShare = secretShare
  }
}

const SHARES = { TWO_OF_TWO: 1, TWO_OF_THREE: 2, THREE_OF_FIVE: 3 }

class FakeEvmWalletClient {
  constructor() {
    this.current = new Map()
  }

  async createWalletAccount({ thresholdSignatureScheme, backUpToDynamic }) {
    const count = SHARES[thresholdSignatureScheme]
    if (!count) throw new Error(`unknown thresholdSignatureScheme ${thresholdSignatureScheme}`)
    const shares = Array.from({ length: count }, () => new EcdsaKeygenResult(new EcdsaPublicKey(new Uint8Array(randomBytes(64))), randomBytes(1500).toString('base64')))
    const accountAddress = '0x' + randomBytes(20).toString('hex')
    this.current.set(accountAddress, new Set(shares.map((s) => s.secretShare)))
    const empty = { dynamic: [], googleDrive: [], iCloud: [], user: [], external: [], delegated: [] }
    return {
      walletMetadata: {
        walletId: randomUUID(),
        accountAddress,
        chainName: 'EVM',
        thresholdSignatureScheme,
        derivationPath: '{"0":44,"1":60,"2":0,"3":0,"4":0}',
        externalServerKeySharesBackupInfo: { passwordEncrypted: false, backups: backUpToDynamic ? { ...empty, dynamic: [{ location: 'dynamic' }] } : empty },
        shareSetId: randomUUID(),
      },
      externalServerKeyShares: shares,
      externalKeySharesWithBackupStatus: [],
      rawPublicKey: new Uint8Array(randomBytes(33)),
      publicKeyHex: randomBytes(33).toString('hex'),
    }
  }

  async signMessage({ message, walletMetadata, externalServerKeyShares }) {
    if (!walletMetadata || !walletMetadata.externalServerKeySharesBackupInfo) throw new Error('walletMetadata with externalServerKeySharesBackupInfo is required')
    const current = this.current.get(walletMetadata.accountAddress)
    if (!current || !externalServerKeyShares.every((s) => current.has(s.secretShare))) throw new Error('these key shares are not the wallet\'s current ones')
    return '0x' + createHmac('sha256', externalServerKeyShares.map((s) => s.secretShare).join('|')).update(String(message)).digest('hex')
  }
}

module.exports = { FakeEvmWalletClient }
