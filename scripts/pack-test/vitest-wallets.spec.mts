// The README's vitest example, run in the fresh project with vitest (ESM): the kit and its
// matchers through vitest's own expect.extend, typed with vitest's Matchers interface.
import { afterEach, beforeEach, expect, test } from 'vitest'
import { vaulted } from 'sharevault/dynamic'
import { openTestVault, FakeEvmWalletClient, sharevaultMatchers, type SharevaultMatchers, type TestVault } from 'sharevault/testing'

expect.extend(sharevaultMatchers)
declare module 'vitest' {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-empty-object-type
  interface Matchers<T = any> extends SharevaultMatchers<T> {}
}

let vault: TestVault
beforeEach(async () => {
  vault = await openTestVault()
})
afterEach(() => vault.close())

test('signs', async () => {
  const sdk = new FakeEvmWalletClient()
  const client = vaulted(sdk, vault)
  const { walletMetadata: { accountAddress } } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
  const signature = await client.signMessage({ accountAddress, message: 'hi' })
  await expect(vault).toHaveAudited({ address: accountAddress, action: 'hydrate', purpose: 'sign' })
  expect(signature).not.toContainShareOf(vault, sdk)
  expect({ leaked: JSON.stringify(await vault.withWallet(accountAddress, (w) => w.externalServerKeyShares.map((s) => s.secretShare))) }).toContainShareOf(vault)
})
