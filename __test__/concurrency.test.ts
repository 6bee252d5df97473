import type { ServerKeyShare } from '../lib'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares } from '../lib/testing'
import { backends, cleanup, openOn } from './support/helpers'

afterEach(cleanup)

function sharesOfGeneration(g: number, count: number): ServerKeyShare[] {
  return fakeShares('EVM', count).map((s) => ({ ...s, secretShare: `gen${g}-${s.secretShare}` }))
}

function generationOfMetadata(meta: Record<string, unknown>): number {
  const info = meta.externalServerKeySharesBackupInfo as { backups: { external: { externalKeyShareId?: string }[] } }
  const id = info.backups.external[0]?.externalKeyShareId
  return id === undefined ? 0 : Number(id.slice(3))
}

describe.each(backends())('on $name', (backend) => {
  describe('concurrent replaceShares and withWallet', () => {
    it('never hand a reader new metadata with old shares, or the reverse', async () => {
      const vault = await openOn(backend)
      const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_THREE' })
      created.externalServerKeyShares = sharesOfGeneration(0, 2)
      await vault.storeWallet(created)
      const address = created.walletMetadata.accountAddress
      let stop = false
      const seen = new Set<number>()
      let reads = 0
      const reader = async () => {
        while (!stop) {
          await vault.withWallet(address, ({ walletMetadata, externalServerKeyShares }) => {
            const g = generationOfMetadata(walletMetadata)
            for (const s of externalServerKeyShares) expect(s.secretShare.startsWith(`gen${g}-`)).toBe(true)
            seen.add(g)
            reads++
          }, { purpose: 'sign' })
        }
      }
      const readers = Array.from({ length: 16 }, reader)
      for (let g = 1; g <= 40; g++) {
        await vault.replaceShares(address, { externalServerKeyShares: sharesOfGeneration(g, 2), backupInfo: backupInfoWithExternal(`gen${g}`) })
        await new Promise((r) => setImmediate(r))
      }
      stop = true
      await Promise.all(readers)
      expect(reads).toBeGreaterThan(40)
      expect(seen.size).toBeGreaterThan(1)
      await vault.close()
    })

    it('lose no update when many callers replace the same wallet at once', async () => {
      const vault = await openOn(backend)
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const address = created.walletMetadata.accountAddress
      const n = 25
      await Promise.all(
        Array.from({ length: n }, (_, i) =>
          vault.replaceShares(address, { externalServerKeyShares: sharesOfGeneration(i + 1, 1), backupInfo: backupInfoWithExternal(`gen${i + 1}`) }),
        ),
      )
      const replaced = (await vault.auditLog({ address, limit: 1000 })).filter((r) => r.action === 'replace_shares')
      expect(replaced).toHaveLength(n)
      // Whichever write landed last, its metadata and shares belong together.
      await vault.withWallet(address, ({ walletMetadata, externalServerKeyShares }) => {
        expect(externalServerKeyShares[0].secretShare.startsWith(`gen${generationOfMetadata(walletMetadata)}-`)).toBe(true)
      })
      await vault.close()
    })

    it('store thousands of wallets concurrently and hydrate them all back', async () => {
      const vault = await openOn(backend)
      const wallets = Array.from({ length: 2000 }, (_, i) => fakeCreatedWallet(i % 2 ? 'EVM' : 'SVM', { secretShareLength: 200 }))
      await Promise.all(wallets.map((w) => vault.storeWallet(w)))
      const got = await Promise.all(
        wallets.map((w) => vault.withWallet(w.walletMetadata.accountAddress, (h) => h.externalServerKeyShares[0].secretShare)),
      )
      expect(got).toEqual(wallets.map((w) => w.externalServerKeyShares[0].secretShare))
      expect(await vault.verifyAuditChain()).toEqual({ rows: 4001 }) // and the key's registration
      await vault.close()
    })
  })
})
