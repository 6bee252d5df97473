import { inspect } from 'node:util'
import { Vault } from '../lib'
import { backupInfoWithExternal, fakeCreatedWallet, fakeShares, EcdsaKeygenResult } from '../lib/testing'
import { backends, cleanup, countWallets, openOn, vaultError } from './support/helpers'


describe.each(backends())('on $name', (backend) => {
  let vault: Vault
  beforeEach(async () => {
    vault = await openOn(backend)
  })
  afterEach(async () => {
    await vault.close()
    cleanup()
  })

  describe('storeWallet and withWallet', () => {
    it('hands back the metadata whole, unknown fields included, and the shares field by field', async () => {
      const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_THREE' })
      const returned = await vault.storeWallet(created)
      expect(returned).toEqual(created.walletMetadata)
      const address = created.walletMetadata.accountAddress
      await vault.withWallet(address, ({ walletMetadata, externalServerKeyShares }) => {
        expect(walletMetadata).toEqual(created.walletMetadata)
        expect(walletMetadata.shareSetId).toBe(created.walletMetadata.shareSetId)
        expect(walletMetadata.otherShareSets).toEqual(created.walletMetadata.otherShareSets)
        expect(walletMetadata.derivationPath).toBe('{"0":44,"1":60,"2":0,"3":0,"4":0}')
        expect(externalServerKeyShares).toHaveLength(2)
        externalServerKeyShares.forEach((share, i) => {
          const original = created.externalServerKeyShares[i] as EcdsaKeygenResult
          expect(share.secretShare).toBe(original.secretShare)
          const pk = (share.pubkey as { pubkey: Uint8Array }).pubkey
          expect(pk).toBeInstanceOf(Uint8Array)
          expect(Buffer.from(pk).equals(Buffer.from(original.pubkey.pubkey))).toBe(true)
          // Class instances come back as plain objects with the same own fields.
          // (Compared by name: the addon's objects come from Node's main realm, not jest's sandbox.)
          expect(share).not.toBeInstanceOf(EcdsaKeygenResult)
          expect(share.constructor.name).toBe('Object')
          expect((share.pubkey as object).constructor.name).toBe('Object')
          expect(Object.keys(share)).toEqual(Object.keys(original))
        })
      }, { purpose: 'sign' })
    })

    it('returns Uint8Array pubkeys for SVM and BTC shares, and Buffer input comes back as Uint8Array', async () => {
      const svm = fakeCreatedWallet('SVM')
      const btc = fakeCreatedWallet('BTC', { addressType: 'taproot', scheme: 'THREE_OF_FIVE' })
      btc.externalServerKeyShares[0] = { pubkey: Buffer.from([1, 2, 3]), secretShare: 'only-a-test-value' }
      await vault.storeWallet(svm)
      await vault.storeWallet(btc)
      await vault.withWallet(svm.walletMetadata.accountAddress, ({ externalServerKeyShares }) => {
        expect(externalServerKeyShares[0].pubkey).toBeInstanceOf(Uint8Array)
        expect(externalServerKeyShares[0].pubkey).toEqual(svm.externalServerKeyShares[0].pubkey)
      })
      await vault.withWallet(btc.walletMetadata.accountAddress, ({ walletMetadata, externalServerKeyShares }) => {
        expect(walletMetadata.addressType).toBe('taproot')
        expect(externalServerKeyShares).toHaveLength(3)
        const pk = externalServerKeyShares[0].pubkey as Uint8Array
        expect(Buffer.isBuffer(pk)).toBe(false)
        expect(Array.from(pk)).toEqual([1, 2, 3])
      })
    })

    it('keeps strings, numbers, booleans, null and undefined fields of a share as they were', async () => {
      const created = fakeCreatedWallet('SVM')
      const share = { pubkey: new Uint8Array([9]), secretShare: 'x', note: 'ünïcödé ✓', n: 1.5, ok: true, none: null, missing: undefined, nested: [1, 'two', { three: 3 }] }
      created.externalServerKeyShares = [share]
      await vault.storeWallet(created)
      await vault.withWallet(created.walletMetadata.accountAddress, ({ externalServerKeyShares }) => {
        expect(externalServerKeyShares[0]).toEqual(share)
        expect('missing' in externalServerKeyShares[0]).toBe(true)
      })
    })

    it('resolves to what the callback returns and rejects with what it throws', async () => {
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      await expect(vault.withWallet(a, async () => 42)).resolves.toBe(42)
      await expect(vault.withWallet(a, () => { throw new Error('sdk failed') })).rejects.toThrow('sdk failed')
    })

    it('hands out fresh objects on every call, so a callback cannot change what the next one sees', async () => {
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      await vault.withWallet(a, (w) => {
        w.externalServerKeyShares[0].secretShare = 'changed'
        w.walletMetadata.walletId = 'changed'
      })
      await vault.withWallet(a, (w) => {
        expect(w.externalServerKeyShares[0].secretShare).toBe(created.externalServerKeyShares[0].secretShare)
        expect(w.walletMetadata.walletId).toBe(created.walletMetadata.walletId)
      })
    })

    it('redacts secretShare in util.inspect and console output while property reads see the value', async () => {
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const secret = created.externalServerKeyShares[0].secretShare
      await vault.withWallet(created.walletMetadata.accountAddress, (w) => {
        const shown = inspect(w, { depth: 10 })
        expect(shown).not.toContain(secret.slice(0, 32))
        expect(shown).toContain('[REDACTED]')
        expect(inspect(w.externalServerKeyShares)).not.toContain(secret.slice(0, 32))
        expect(w.externalServerKeyShares[0].secretShare).toBe(secret)
        expect(Object.keys(w.externalServerKeyShares[0])).toEqual(['pubkey', 'secretShare'])
      })
    })

    it('refuses to store an address that is already stored, whatever its case', async () => {
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const again = fakeCreatedWallet('EVM')
      again.walletMetadata.accountAddress = created.walletMetadata.accountAddress.toUpperCase().replace('0X', '0x')
      expect((await vaultError(vault.storeWallet(again))).code).toBe('ERR_CONFLICT')
      await vault.withWallet(created.walletMetadata.accountAddress, (w) => {
        expect(w.walletMetadata.walletId).toBe(created.walletMetadata.walletId)
        expect(w.externalServerKeyShares[0].secretShare).toBe(created.externalServerKeyShares[0].secretShare)
      })
    })
  })

  describe('lookups', () => {
    it('finds EVM wallets case-insensitively and other chains exactly', async () => {
      const evm = fakeCreatedWallet('EVM')
      const svm = fakeCreatedWallet('SVM')
      await vault.storeWallet(evm)
      await vault.storeWallet(svm)
      const a = evm.walletMetadata.accountAddress
      expect((await vault.getMetadata(a.toLowerCase())).walletId).toBe(evm.walletMetadata.walletId)
      expect((await vault.getMetadata('0x' + a.slice(2).toUpperCase())).walletId).toBe(evm.walletMetadata.walletId)
      expect(await vault.withWallet(a.toLowerCase(), (w) => w.walletMetadata.accountAddress)).toBe(a)
      const s = svm.walletMetadata.accountAddress
      expect((await vault.getMetadata(s)).walletId).toBe(svm.walletMetadata.walletId)
      const other = s === s.toLowerCase() ? s.toUpperCase() : s.toLowerCase()
      expect((await vaultError(vault.getMetadata(other))).code).toBe('ERR_NOT_FOUND')
    })

    it('answers ERR_NOT_FOUND for an unknown address on every call', async () => {
      const a = '0x' + '1'.repeat(40)
      expect((await vaultError(vault.getMetadata(a))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.withWallet(a, () => 1))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.mergeBackupInfo(a, backupInfoWithExternal()))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() }))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.deleteWallet(a))).code).toBe('ERR_NOT_FOUND')
    })

    it('lists wallets by chain, in pages', async () => {
      const evm = [fakeCreatedWallet('EVM'), fakeCreatedWallet('EVM'), fakeCreatedWallet('EVM')]
      const svm = fakeCreatedWallet('SVM')
      for (const w of [...evm, svm]) await vault.storeWallet(w)
      expect(await vault.listWallets()).toHaveLength(4)
      const evmIds = evm.map((w) => w.walletMetadata.walletId).sort()
      expect((await vault.listWallets({ chainName: 'EVM' })).map((m) => m.walletId).sort()).toEqual(evmIds)
      const first = await vault.listWallets({ chainName: 'EVM', limit: 2 })
      expect(first).toHaveLength(2)
      const rest = await vault.listWallets({ chainName: 'EVM', limit: 2, after: first[1].accountAddress })
      expect(rest).toHaveLength(1)
      expect([...first, ...rest].map((m) => m.walletId).sort()).toEqual(evmIds)
      expect(first[0].externalServerKeySharesBackupInfo).toEqual(evm[0].walletMetadata.externalServerKeySharesBackupInfo ?? first[0].externalServerKeySharesBackupInfo)
      expect((await vaultError(vault.listWallets({ limit: 0 }))).code).toBe('ERR_INVALID_INPUT')
      expect((await vaultError(vault.listWallets({ limit: 1001 }))).path).toBe('limit')
    })
  })

  describe('changes', () => {
    it('mergeBackupInfo replaces the backup info and keeps every other field', async () => {
      const created = fakeCreatedWallet('BTC', { addressType: 'native_segwit' })
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      const info = backupInfoWithExternal('ext-1')
      const merged = await vault.mergeBackupInfo(a, info)
      expect(merged).toEqual({ ...created.walletMetadata, externalServerKeySharesBackupInfo: info })
      expect(await vault.getMetadata(a)).toEqual(merged)
      await vault.withWallet(a, (w) => {
        expect(w.externalServerKeyShares[0].secretShare).toBe(created.externalServerKeyShares[0].secretShare)
        expect(w.walletMetadata.addressType).toBe('native_segwit')
      })
    })

    it('replaceShares writes new shares, backup info and scheme together (a reshare 2/2 → 3/5)', async () => {
      const created = fakeCreatedWallet('EVM')
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      const shares = fakeShares('EVM', 3)
      const info = backupInfoWithExternal('after-reshare')
      const meta = await vault.replaceShares(a, { externalServerKeyShares: shares, backupInfo: info, thresholdSignatureScheme: 'THREE_OF_FIVE' })
      expect(meta.thresholdSignatureScheme).toBe('THREE_OF_FIVE')
      expect(meta.externalServerKeySharesBackupInfo).toEqual(info)
      expect(meta.shareSetId).toBe(created.walletMetadata.shareSetId)
      await vault.withWallet(a, (w) => {
        expect(w.walletMetadata).toEqual(meta)
        expect(w.externalServerKeyShares.map((s) => s.secretShare)).toEqual(shares.map((s) => s.secretShare))
      })
    })

    it('replaceShares checks the share count against the scheme the wallet will have', async () => {
      const created = fakeCreatedWallet('EVM', { scheme: 'TWO_OF_THREE' })
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      const e = await vaultError(vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() }))
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe('externalServerKeyShares')
      await vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal(), thresholdSignatureScheme: 'TWO_OF_TWO' })
      expect((await vault.getMetadata(a)).thresholdSignatureScheme).toBe('TWO_OF_TWO')
    })

    it('refuses a reshare path the SDK does not support (3/5 → 2/2) and keeps the wallet as it was', async () => {
      const created = fakeCreatedWallet('EVM', { scheme: 'THREE_OF_FIVE' })
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      const e = await vaultError(vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal(), thresholdSignatureScheme: 'TWO_OF_TWO' }))
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe('thresholdSignatureScheme')
      expect(await vault.getMetadata(a)).toEqual(created.walletMetadata)
      // 3/5 → 2/3 is a supported path.
      await vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 2), backupInfo: backupInfoWithExternal(), thresholdSignatureScheme: 'TWO_OF_THREE' })
    })

    it('deleteWallet removes the wallet; the address can then be stored again', async () => {
      const created = fakeCreatedWallet('SVM')
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      await vault.deleteWallet(a)
      expect((await vaultError(vault.getMetadata(a))).code).toBe('ERR_NOT_FOUND')
      expect((await vaultError(vault.withWallet(a, () => 1))).code).toBe('ERR_NOT_FOUND')
      expect(await vault.listWallets()).toHaveLength(0)
      await vault.storeWallet(created)
      expect((await vault.getMetadata(a)).walletId).toBe(created.walletMetadata.walletId)
    })
  })

  describe('metadata size', () => {
    it('refuses a merge that would grow the metadata past 1 MiB, keeps the wallet as it was, and allows later merges', async () => {
      const created = fakeCreatedWallet('EVM')
      ;(created.walletMetadata as unknown as Record<string, unknown>).padding = 'p'.repeat(700 * 1024)
      await vault.storeWallet(created)
      const a = created.walletMetadata.accountAddress
      const big = { ...backupInfoWithExternal('big'), note: 'n'.repeat(500 * 1024) }
      const e = await vaultError(vault.mergeBackupInfo(a, big as never))
      expect(e.code).toBe('ERR_INVALID_INPUT')
      expect(e.path).toBe('backupInfo')
      expect(await vault.getMetadata(a)).toEqual(created.walletMetadata)
      // The wallet is not bricked: the next merge and refresh go through.
      const info = backupInfoWithExternal('small')
      expect((await vault.mergeBackupInfo(a, info)).externalServerKeySharesBackupInfo).toEqual(info)
      await vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal('refreshed') })
      const e2 = await vaultError(vault.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: big as never }))
      expect([e2.code, e2.path]).toEqual(['ERR_INVALID_INPUT', 'backupInfo'])
      expect(vault.stats().errors).toEqual({ ERR_INVALID_INPUT: 2 })
    })
  })

  describe('stats', () => {
    it('counts the errors of every operation, reads included', async () => {
      const missing = fakeCreatedWallet('EVM').walletMetadata.accountAddress
      await vaultError(vault.getMetadata(missing))
      await vaultError(vault.withWallet(missing, () => 1))
      await vaultError(vault.listWallets({ limit: 0 }))
      await vaultError(vault.auditLog({ limit: 5000 }))
      await vaultError(vault.deleteWallet(missing))
      expect(vault.stats().errors).toEqual({ ERR_NOT_FOUND: 3, ERR_INVALID_INPUT: 2 })
      await vault.close()
      await vaultError(vault.verifyAuditChain())
      expect(vault.stats().errors).toEqual({ ERR_NOT_FOUND: 3, ERR_INVALID_INPUT: 2, ERR_CLOSED: 1 })
    })
  })

  describe('audit', () => {
    it('writes one row per store, hydrate, merge, replace and delete, with actor, purpose and outcome', async () => {
      const v = await openOn(backend, { actor: 'payments-api' })
      const created = fakeCreatedWallet('EVM')
      const a = created.walletMetadata.accountAddress
      await v.storeWallet(created)
      await v.withWallet(a, () => undefined, { purpose: 'sign', actor: 'signer-7' })
      await v.mergeBackupInfo(a, backupInfoWithExternal())
      await v.replaceShares(a, { externalServerKeyShares: fakeShares('EVM', 1), backupInfo: backupInfoWithExternal() })
      await v.deleteWallet(a, { actor: 'ops' })
      await vaultError(v.withWallet(a, () => 1, { purpose: 'backup' }))
      const all = await v.auditLog()
      // The environment's first row: its key registered in the keyring, at the key's own address.
      expect(all[0]).toMatchObject({ action: 'key_registered', actor: 'payments-api', outcome: 'ok' })
      expect(all[0].address).toMatch(/^sharevault:key:local:[0-9a-f]{32}$/)
      const rows = all.slice(1)
      expect(rows.map((r) => [r.action, r.actor, r.purpose, r.outcome])).toEqual([
        ['store', 'payments-api', undefined, 'ok'],
        ['hydrate', 'signer-7', 'sign', 'ok'],
        ['merge_backup_info', 'payments-api', undefined, 'ok'],
        ['replace_shares', 'payments-api', undefined, 'ok'],
        ['delete', 'ops', undefined, 'ok'],
        ['hydrate', 'payments-api', 'backup', 'ERR_NOT_FOUND'],
      ])
      expect(rows.every((r) => r.address === a.toLowerCase() && r.environment === 'test' && r.at instanceof Date)).toBe(true)
      expect(rows[0].walletId).toBe(created.walletMetadata.walletId)
      expect(await v.verifyAuditChain()).toEqual({ rows: 7 })
      await v.close()
    })
  })

  describe('close', () => {
    it('resolves every close() only when the queued writes are durable and the vault is closed', async () => {
      const database = await backend.database()
      const v = await Vault.open({ database, environment: 'test', kms: { provider: 'local', key: Buffer.alloc(32, 7) } })
      const stores = Array.from({ length: 50 }, () => v.storeWallet(fakeCreatedWallet('EVM')).then(() => true, () => false))
      const first = v.close()
      const second = v.close()
      await second
      // The second close resolved: every store the vault acknowledged is on disk, by another handle.
      const acknowledged = (await Promise.all(stores)).filter(Boolean).length
      expect(await countWallets(database)).toBe(acknowledged)
      await first
      expect(acknowledged).toBeGreaterThan(0)
    })

    it('refuses every call after close with ERR_CLOSED', async () => {
      const v = await openOn(backend)
      await v.close()
      const created = fakeCreatedWallet('EVM')
      expect((await vaultError(v.storeWallet(created))).code).toBe('ERR_CLOSED')
      expect((await vaultError(v.getMetadata(created.walletMetadata.accountAddress))).code).toBe('ERR_CLOSED')
      expect((await vaultError(v.withWallet(created.walletMetadata.accountAddress, () => 1))).code).toBe('ERR_CLOSED')
      expect((await vaultError(v.listWallets())).code).toBe('ERR_CLOSED')
      await v.close()
    })
  })
})
