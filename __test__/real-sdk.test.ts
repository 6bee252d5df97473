import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

// The real share classes of @dynamic-labs-wallet/node@0.0.198 (EcdsaKeygenResult with an
// EcdsaPublicKey, ExportableEd25519KeygenResult, BIP340KeygenResult) through the vault, and the
// hydrated objects fed to every SDK helper that runs offline on shares, next to the originals:
// they must behave exactly the same. In a child process: the SDK loads only as an ES module.
describe('real SDK share classes through the vault', () => {
  it('come back as data the SDK treats exactly as the originals', () => {
    const child = spawnSync(process.execPath, [join(__dirname, 'support', 'real-sdk-child.mjs')], { encoding: 'utf8', timeout: 120_000 })
    expect({ status: child.status, stderr: child.stderr }).toMatchObject({ status: 0 })
    const results = JSON.parse(child.stdout.trim().split('\n').pop() as string) as Record<string, unknown>[]
    expect(results.map((r) => r.chain)).toEqual(['EVM', 'SVM', 'BTC'])
    for (const r of results) {
      expect(r).toMatchObject({ sameJson: true, sameBackupRoundTrip: true, sameRewrapJson: true, pubkeyIsUint8Array: true, sameSecret: true })
      const n = r.shares as number
      // De-duplication: hydrated and original shares are the same shares, in either order.
      expect(r.dedupLengths).toEqual([n, n, n, n + 1, n + 1])
    }
    expect(results[0]).toMatchObject({ sameCompressed: true, sameUncompressed: true })
    expect(results[1]).toMatchObject({ samePubkeyBytes: true })
    expect(results[2]).toMatchObject({ samePubkeyBytes: true })
  })
})
