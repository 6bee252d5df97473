// A user's own jest test, run in the fresh project against the installed tarballs: a small
// service over the vaulted SDK client, tested with sharevault/testing and its matchers.
const { vaulted, UnpersistedSharesError } = require('sharevault/dynamic')
const { openTestVault, FakeEvmWalletClient, hydrationsOf } = require('sharevault/testing')
require('sharevault/testing/jest')

/** The service under test: what a user writes. */
function walletService(client, log) {
  return {
    async create() {
      const { walletMetadata } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
      log.push(`created ${walletMetadata.accountAddress}`)
      return walletMetadata.accountAddress
    },
    async sign(accountAddress, message) {
      const signature = await client.signMessage({ accountAddress, message })
      log.push(`signed ${message} with ${accountAddress}`)
      return { signature }
    },
    async rotateShares(accountAddress) {
      try {
        await client.refreshWalletAccountShares({ accountAddress })
        return { ok: true }
      } catch (e) {
        if (e instanceof UnpersistedSharesError) return { ok: false, sealed: e.sealed }
        throw e
      }
    },
  }
}

describe('wallet service', () => {
  let vault
  let sdk
  let log
  let service
  beforeEach(async () => {
    vault = await openTestVault()
    sdk = new FakeEvmWalletClient()
    log = []
    service = walletService(vaulted(sdk, vault, { actor: 'svc', persistDeadlineMs: 50 }), log)
  })
  afterEach(() => vault.close())

  test('signs with the stored shares, audited, and no share reaches a result or the log', async () => {
    const address = await service.create()
    const out = await service.sign(address, 'hello')
    expect(out).toEqual(await service.sign(address, 'hello'))
    await expect(vault).toHaveAudited({ address, action: 'hydrate', purpose: 'sign', actor: 'svc', times: 2 })
    expect((await hydrationsOf(vault, { address })).byPurpose).toEqual({ sign: 2 })
    expect(out).not.toContainShareOf(vault, sdk)
    expect(log).not.toContainShareOf(vault, sdk)
  })

  test('keeps new shares sealed when the database refuses them, and recovers them', async () => {
    const address = await service.create()
    const restore = vault.failWrites()
    const r = await service.rotateShares(address)
    restore()
    expect(r.ok).toBe(false)
    expect(r).not.toContainShareOf(vault, sdk)
    await expect(service.sign(address, 'x')).rejects.toThrow(/not current/)
    await vault.recoverSealed(r.sealed)
    await expect(service.sign(address, 'x')).resolves.toHaveProperty('signature')
  })

  test("the SDK failing is the service's error, and nothing changed", async () => {
    const address = await service.create()
    sdk.failNext('refreshWalletAccountShares', new Error('upstream 503'))
    await expect(service.rotateShares(address)).rejects.toThrow('upstream 503')
    await expect(vault).not.toHaveAudited({ address, action: 'replace_shares' })
  })

  test('refuses a production-like environment', async () => {
    await expect(openTestVault({ environment: 'eu-prod' })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' })
  })
})
