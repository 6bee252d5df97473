// Compiled as an ES module under nodenext (and bundler): the `import` condition's types
// (esm/index.d.mts, esm/dynamic.d.mts) must give the same names as the CommonJS ones.
import { Vault, VaultError, ErrorCode, migrate, type OpenOptions, type WalletMetadata } from 'sharevault'
import * as dynamic from 'sharevault/dynamic'

const options: OpenOptions = { database: ':memory:', environment: 'e', kms: { provider: 'local', key: 'k' }, migrate: false }

export async function useEsm(): Promise<WalletMetadata | undefined> {
  await migrate({ database: options.database })
  const vault = await Vault.open(options)
  try {
    return await vault.getMetadata('0x1')
  } catch (e) {
    if (e instanceof VaultError && e.code === ErrorCode.ErrNotFound) return undefined
    throw e
  } finally {
    await vault.close()
    void dynamic
  }
}
