// Promises are settled in bounded turns scheduled with `setImmediate` from node:timers: many calls
// in flight all settle, in order of nothing but their own completion, with the event loop turning
// between the turns; and a test's fake timers (which replace the global setImmediate) never hold
// a vault's promises back.
import { randomBytes } from 'node:crypto'
import { Vault } from '../lib'
import { fakeCreatedWallet } from '../lib/testing'

const key = randomBytes(32)
const open = () => Vault.open({ database: ':memory:', environment: 'test', kms: { provider: 'local', key } })

describe('settlement', () => {
  afterEach(() => jest.useRealTimers())

  it('settles many calls in flight in turns of a few, with the event loop turning in between', async () => {
    const vault = await open()
    const wallets = Array.from({ length: 20 }, () => fakeCreatedWallet('EVM'))
    await Promise.all(wallets.map((w) => vault.storeWallet(w)))
    // 'r' for each settled call, 'i' for each turn of a setImmediate loop beside them: the longest
    // run of settlements between two turns of the loop is how long the loop was kept.
    const events: string[] = []
    let looping = true
    const loop = () => {
      events.push('i')
      if (looping) setImmediate(loop)
    }
    setImmediate(loop)
    const addresses = Array.from({ length: 600 }, (_, i) => wallets[i % wallets.length].walletMetadata.accountAddress)
    const got = await Promise.all(
      addresses.map((a) =>
        vault.withWallet(a, (w) => {
          events.push('r')
          return w.walletMetadata.accountAddress
        }, { purpose: 'sign' }),
      ),
    )
    looping = false
    expect(got).toEqual(addresses)
    const longest = Math.max(...events.join('').split('i').map((run) => run.length))
    // Turns of at most 8 (src/settle.rs); everything at once would be hundreds.
    expect(longest).toBeLessThanOrEqual(8)
    await vault.close()
  })

  it('is not held back by fake timers', async () => {
    const vault = await open()
    const w = fakeCreatedWallet('EVM')
    jest.useFakeTimers()
    await vault.storeWallet(w)
    const all = await Promise.all(Array.from({ length: 50 }, () => vault.getMetadata(w.walletMetadata.accountAddress)))
    expect(all).toHaveLength(50)
    const signed = await vault.withWallet(w.walletMetadata.accountAddress, () => 'signed', { purpose: 'sign' })
    expect(signed).toBe('signed')
    jest.useRealTimers()
    await vault.close()
  })
})
