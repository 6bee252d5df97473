// Child process for the worker-exit tests (a crash here must not take jest down). The main
// thread opens a vault, then starts `rounds` workers one after another. Each worker opens its own
// vault on its own file, stores a wallet, keeps ~20 getMetadata/withWallet calls in flight and
// says "busy"; the main thread then ends it while calls are in flight, in one of three ways:
// `worker.terminate()`, `process.exit()` inside the worker, or `vault.close()` immediately
// followed by `process.exit()` inside the worker. At the end the main thread's vault must still
// store and hydrate, and the child prints "ok <rounds>".
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')
const { randomBytes } = require('node:crypto')
const { join } = require('node:path')
const { Vault } = require('../../dist')
const { fakeCreatedWallet } = require('../../dist/testing')

async function worker() {
  const { path, mode } = workerData
  const vault = await Vault.open({ database: path, environment: 'test', kms: { provider: 'local', key: randomBytes(32) } })
  const created = fakeCreatedWallet('EVM')
  const address = created.walletMetadata.accountAddress
  await vault.storeWallet(created)
  let stop = false
  const loop = async () => {
    while (!stop) {
      await vault.getMetadata(address).catch(() => undefined)
      await vault.withWallet(address, (w) => w.externalServerKeyShares.length, { purpose: 'sign' }).catch(() => undefined)
    }
  }
  for (let i = 0; i < 20; i++) loop()
  // Let some calls finish so the settlement path is warm, then report.
  await vault.getMetadata(address)
  parentPort.postMessage('busy')
  parentPort.on('message', (m) => {
    if (m !== 'end') return
    if (mode === 'exit') process.exit(0)
    if (mode === 'close-exit') {
      vault.close()
      process.exit(0)
    }
  })
}

async function main() {
  const [dir, roundsArg] = process.argv.slice(2)
  const rounds = Number(roundsArg)
  const vault = await Vault.open({ database: join(dir, 'main.db'), environment: 'test', kms: { provider: 'local', key: randomBytes(32) } })
  const modes = ['terminate', 'exit', 'close-exit']
  for (let i = 0; i < rounds; i++) {
    const mode = modes[i % modes.length]
    const w = new Worker(__filename, { workerData: { path: join(dir, `worker-${i}.db`), mode } })
    const exited = new Promise((resolve) => w.once('exit', resolve))
    w.on('error', (e) => process.stderr.write(`worker error: ${e.message}\n`))
    await new Promise((resolve) => w.once('message', resolve))
    // A few more milliseconds of calls in flight on the runtime threads.
    await new Promise((resolve) => setTimeout(resolve, 1 + (i % 7)))
    if (mode === 'terminate') await w.terminate()
    else w.postMessage('end')
    await exited
  }
  const created = fakeCreatedWallet('EVM')
  await vault.storeWallet(created)
  const n = await vault.withWallet(created.walletMetadata.accountAddress, (w) => w.externalServerKeyShares.length)
  await vault.close()
  process.stdout.write(`ok ${rounds} ${n}\n`)
}

if (isMainThread) {
  main().catch((e) => {
    process.stderr.write(`${e.code ?? ''} ${e.message}\n`)
    process.exit(1)
  })
} else {
  worker().catch((e) => {
    process.stderr.write(`worker: ${e.code ?? ''} ${e.message}\n`)
    process.exit(1)
  })
}
