import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import type { Vault } from '../lib'
import { newKey } from './support/helpers'

// The example service (examples/wallet-service), end to end over HTTP, on its fake path. It uses
// the package as a user does (require('sharevault'), the built dist/), so the test does too: one
// VaultError class on both sides.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Vault: BuiltVault } = require('sharevault') as { Vault: typeof import('../lib').Vault }
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { vaulted } = require('sharevault/dynamic') as typeof import('../lib/dynamic')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createService } = require('../examples/wallet-service/server') as { createService: (evm: unknown, vault: Vault) => Server }
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { FakeEvmWalletClient } = require('../examples/wallet-service/fake-evm-client') as { FakeEvmWalletClient: new () => object }

describe('the example wallet service', () => {
  let vault: Vault
  let server: Server
  let base: string
  beforeAll(async () => {
    vault = await BuiltVault.open({ database: ':memory:', environment: 'example', kms: { provider: 'local', key: newKey() } })
    server = createService(vaulted(new FakeEvmWalletClient(), vault), vault)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    await new Promise((r) => server.close(r))
    await vault.close()
  })

  it('creates a wallet, shows its metadata without a share, and signs with it', async () => {
    const created = await fetch(`${base}/wallets`, { method: 'POST', body: JSON.stringify({ thresholdSignatureScheme: 'TWO_OF_THREE' }) })
    expect(created.status).toBe(201)
    const { accountAddress, walletId } = (await created.json()) as { accountAddress: string; walletId: string }
    expect(accountAddress).toMatch(/^0x[0-9a-f]{40}$/)

    const shown = await fetch(`${base}/wallets/${accountAddress}`)
    expect(shown.status).toBe(200)
    const text = await shown.text()
    expect(JSON.parse(text)).toMatchObject({ walletId, accountAddress, thresholdSignatureScheme: 'TWO_OF_THREE' })
    expect(text).not.toContain('secretShare')

    const signed = await fetch(`${base}/wallets/${accountAddress}/sign`, { method: 'POST', body: JSON.stringify({ message: 'hello' }) })
    expect(signed.status).toBe(200)
    const { signature } = (await signed.json()) as { signature: string }
    expect(signature).toMatch(/^0x[0-9a-f]{64}$/)
    // The same message again gives the same signature: the stored shares are the ones in use.
    const again = (await (await fetch(`${base}/wallets/${accountAddress}/sign`, { method: 'POST', body: JSON.stringify({ message: 'hello' }) })).json()) as { signature: string }
    expect(again.signature).toBe(signature)
    const audit = await vault.auditLog({ address: accountAddress })
    expect(audit.map((r) => r.action)).toEqual(['store', 'hydrate', 'hydrate'])
  })

  it('answers an unknown wallet with 404, bad input with 400, and an unknown route with 404', async () => {
    expect((await fetch(`${base}/wallets/0x${'00'.repeat(20)}`)).status).toBe(404)
    expect((await fetch(`${base}/wallets/0x${'00'.repeat(20)}/sign`, { method: 'POST', body: '{"message":"x"}' })).status).toBe(404)
    expect((await fetch(`${base}/wallets/0xabc/sign`, { method: 'POST', body: 'not json' })).status).toBe(400)
    expect((await fetch(`${base}/wallets/0xabc/sign`, { method: 'POST', body: '{"message":1}' })).status).toBe(400)
    expect((await fetch(`${base}/nothing`)).status).toBe(404)
  })
})
