// Type-checked in the fresh project (not run): the kit and its matchers as a TypeScript user of
// @jest/globals writes them.
import { expect, test } from '@jest/globals'
import { vaulted } from 'sharevault/dynamic'
import { openTestVault, FakeEvmWalletClient, findShares, type ShareSighting, type TestVault } from 'sharevault/testing'
import 'sharevault/testing/jest'

test('typed', async () => {
  const vault: TestVault = await openTestVault({ storage: 'file', allow: ['store', 'hydrate:sign', 'audit:read'] })
  const sdk = new FakeEvmWalletClient()
  const client = vaulted(sdk, vault)
  const { walletMetadata } = await client.createWalletAccount({ thresholdSignatureScheme: 'TWO_OF_TWO' })
  await expect(vault).toHaveAudited({ address: walletMetadata.accountAddress, action: 'store' })
  expect(walletMetadata).not.toContainShareOf(vault, sdk)
  const found: ShareSighting[] = findShares(walletMetadata, vault)
  expect(found).toHaveLength(0)
  const end: () => void = vault.failWrites({ code: 'ERR_DB_UNAVAILABLE', times: 1 })
  end()
  await vault.close()
})
