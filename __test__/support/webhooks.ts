/**
 * Dynamic's delegation webhooks, built exactly as Dynamic's docs describe them, with node:crypto:
 * each secret AES-256-GCM encrypted under a fresh key, that key RSA-OAEP-SHA256 wrapped to the
 * developer's public key, every field base64url; the body signed with HMAC-SHA256 under the
 * webhook secret (hex, in `x-dynamic-signature-256`). The RSA key pair and secrets are generated
 * per run: nothing here is real.
 */
import { constants, createCipheriv, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, randomUUID } from 'node:crypto'
import type { KeyObject } from 'node:crypto'

export interface KeyPair {
  /** PKCS#8 PEM. */
  privatePem: string
  publicKey: KeyObject
}

/**
 * A fresh RSA key pair. PEM out and re-imported: on Node 20, exporting a JWK from a
 * `generateKeyPairSync` key can deadlock with the garbage collector.
 */
export function rsaKeyPair(bits = 2048): KeyPair {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: bits,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  })
  return { privatePem: privateKey, publicKey: createPublicKey(createPrivateKey(privateKey)) }
}

export interface EncryptedField {
  alg: string
  iv: string
  ct: string
  tag: string
  ek: string
  kid?: string
}

/** One `HYBRID-RSA-AES-256` field; `ivBytes` 16 as in Dynamic's sample payload, or 12. */
export function encryptField(publicKey: KeyObject, plaintext: Buffer | string, ivBytes = 16): EncryptedField {
  const key = randomBytes(32)
  const iv = randomBytes(ivBytes)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()])
  const ek = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key)
  return { alg: 'HYBRID-RSA-AES-256', iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: cipher.getAuthTag().toString('base64url'), ek: ek.toString('base64url') }
}

/** A generated delegated key share (the shape of an ECDSA `ServerKeyShare` as JSON). */
export function fakeDelegatedShare(): { pubkey: { pubkey: number[] }; secretShare: string } {
  return { pubkey: { pubkey: [...randomBytes(33)] }, secretShare: randomBytes(96).toString('hex') }
}

export interface CreatedOptions {
  walletId?: string
  userId?: string
  chain?: string
  publicKey?: string
  share?: unknown
  apiKey?: string
  eventId?: string
  timestamp?: string | number
  ivBytes?: number
  /** Use Dynamic's other spelling, `encryptedDelegatedKeyShare`. */
  keyShareSpelling?: boolean
  shareSetId?: string
}

export interface Created {
  body: Record<string, unknown>
  walletId: string
  share: unknown
  apiKey: string
  eventId: string
}

/** A `wallet.delegation.created` event. */
export function createdEvent(publicKey: KeyObject, o: CreatedOptions = {}): Created {
  const walletId = o.walletId ?? randomUUID()
  const userId = o.userId ?? randomUUID()
  const share = o.share ?? fakeDelegatedShare()
  const apiKey = o.apiKey ?? `dyn_wak_${randomBytes(24).toString('base64url')}`
  const eventId = o.eventId ?? randomUUID()
  const shareField = o.keyShareSpelling ? 'encryptedDelegatedKeyShare' : 'encryptedDelegatedShare'
  const body = {
    messageId: randomUUID(),
    eventId,
    eventName: 'wallet.delegation.created',
    timestamp: o.timestamp ?? new Date().toISOString(),
    webhookId: randomUUID(),
    userId,
    environmentId: randomUUID(),
    environmentName: 'sandbox',
    data: {
      chain: o.chain ?? 'EVM',
      walletId,
      publicKey: o.publicKey ?? `0x${randomBytes(20).toString('hex')}`,
      userId,
      ...(o.shareSetId ? { shareSetId: o.shareSetId } : {}),
      [shareField]: encryptField(publicKey, JSON.stringify(share), o.ivBytes ?? 16),
      encryptedWalletApiKey: encryptField(publicKey, apiKey, o.ivBytes ?? 16),
    },
  }
  return { body, walletId, share, apiKey, eventId }
}

/** A `wallet.delegation.revoked` event. */
export function revokedEvent(walletId: string, o: { eventId?: string; chain?: string } = {}): Record<string, unknown> {
  return {
    messageId: randomUUID(),
    eventId: o.eventId ?? randomUUID(),
    eventName: 'wallet.delegation.revoked',
    timestamp: new Date().toISOString(),
    webhookId: randomUUID(),
    userId: randomUUID(),
    environmentId: randomUUID(),
    environmentName: 'sandbox',
    data: { walletId, chain: o.chain ?? 'EVM' },
  }
}

export function sign(raw: Buffer | string, secret: string): string {
  return createHmac('sha256', secret).update(raw).digest('hex')
}

/** The raw body and the headers Dynamic sends with it. */
export function delivery(body: unknown, secret: string): { rawBody: Buffer; headers: Record<string, string> } {
  const rawBody = Buffer.from(JSON.stringify(body))
  return { rawBody, headers: { 'content-type': 'application/json', 'x-dynamic-signature-256': sign(rawBody, secret) } }
}

export function webhookSecret(): string {
  return `whsec_${randomBytes(24).toString('hex')}`
}
