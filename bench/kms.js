// KMS benchmark: KMS calls and throughput for 10,000 hydrations over 100 wallets against moto's
// KMS (started by scripts/moto.sh), for sharevault with and without its data-key cache, and for
// the AWS Encryption SDK for JavaScript (@aws-crypto/client-node: KMS keyring + caching materials
// manager) against the same emulator in the same run. Writes its table into README.md.
//   npm run bench:kms   |   node --expose-gc bench/kms.js [--wallets N] [--hydrations N] [--no-readme]
const { execFileSync } = require('node:child_process')
const { mkdtempSync, rmSync, readFileSync, writeFileSync } = require('node:fs')
const { tmpdir, cpus } = require('node:os')
const { join } = require('node:path')
const { Vault } = require('../dist')
const { fakeCreatedWallet } = require('../dist/testing')
const { KMS } = require('@aws-sdk/client-kms')
const { buildClient, CommitmentPolicy, KmsKeyringNode, NodeCachingMaterialsManager, getLocalCryptographicMaterialsCache } = require('@aws-crypto/client-node')

const args = process.argv.slice(2)
const arg = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt)
const WALLETS = arg('--wallets', 100)
const HYDRATIONS = arg('--hydrations', 10_000)
const CONCURRENCY = arg('--concurrency', 64)
const SCRIPT = join(__dirname, '..', 'scripts', 'moto.sh')
const CREDS = { accessKeyId: 'testing', secretAccessKey: 'testing' }

async function run(total, concurrency, op) {
  global.gc?.()
  let next = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) await op(next++)
  }))
  return total / (Number(process.hrtime.bigint() - t0) / 1e9)
}

async function main() {
  const [pid, endpoint] = execFileSync(SCRIPT, ['start'], { encoding: 'utf8' }).trim().split(' ')
  try {
    const keyArn = execFileSync(SCRIPT, ['create-key', endpoint], { encoding: 'utf8' }).trim()
    const dir = mkdtempSync(join(tmpdir(), 'sharevault-kms-bench-'))
    const db = join(dir, 'kms.db')
    const wallets = Array.from({ length: WALLETS }, () => fakeCreatedWallet('EVM', { secretShareLength: 3000 }))
    const order = Array.from({ length: HYDRATIONS }, () => wallets[Math.floor(Math.random() * WALLETS)].walletMetadata.accountAddress)
    const kms = (cache) => ({ database: db, environment: 'bench', kms: { provider: 'aws', keyId: keyArn, region: 'us-east-1', endpoint, credentials: CREDS }, cache })
    const rows = []

    const writer = await Vault.open(kms(false))
    for (const w of wallets) await writer.storeWallet(w)
    await writer.close()
    for (const [label, cache] of [['sharevault, cache on', undefined], ['sharevault, cache: false', false]]) {
      const vault = await Vault.open(kms(cache)) // a fresh vault: the cache starts cold
      const ops = await run(HYDRATIONS, CONCURRENCY, (i) => vault.withWallet(order[i], (w) => w.externalServerKeyShares[0].secretShare.length, { purpose: 'sign' }))
      rows.push([label, vault.stats().kmsCalls.decrypt, ops])
      await vault.close()
    }

    // The AWS Encryption SDK: one message per wallet (its own data key, context naming the
    // wallet), decrypted through a caching materials manager with the same bounds as ours.
    let esdkCalls = 0
    const client = new KMS({ region: 'us-east-1', endpoint, credentials: CREDS })
    client.middlewareStack.add((next, ctx) => async (a) => {
      if (ctx.commandName === 'DecryptCommand') esdkCalls++
      return next(a)
    }, { step: 'initialize', name: 'countDecrypts' })
    const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider: () => client })
    const cmm = new NodeCachingMaterialsManager({ backingMaterials: keyring, cache: getLocalCryptographicMaterialsCache(1000), maxAge: 300_000, maxMessagesEncrypted: 1 })
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    const sealed = new Map()
    for (const w of wallets) {
      const ctx = { environment: 'bench', walletId: w.walletMetadata.walletId }
      const { result } = await encrypt(keyring, Buffer.from(JSON.stringify(w.externalServerKeyShares)), { encryptionContext: ctx })
      sealed.set(w.walletMetadata.accountAddress, result)
    }
    esdkCalls = 0
    const esdkOps = await run(HYDRATIONS, CONCURRENCY, async (i) => {
      const { plaintext } = await decrypt(cmm, sealed.get(order[i]))
      JSON.parse(plaintext.toString('utf8'))
    })
    rows.push(['@aws-crypto/client-node, caching CMM', esdkCalls, esdkOps])
    rmSync(dir, { recursive: true, force: true })

    const table = [
      '| implementation | KMS Decrypt calls | hydrations/s |',
      '|---|---:|---:|',
      ...rows.map(([l, calls, ops]) => `| ${l} | ${calls.toLocaleString('en-US')} | ${Math.round(ops).toLocaleString('en-US')} |`),
    ].join('\n')
    const meta = `${HYDRATIONS.toLocaleString('en-US')} hydrations of ${WALLETS} wallets chosen at random, ${CONCURRENCY} in flight, against moto's KMS on loopback (cold cache at start); sharevault also writes an audit row per hydrate, the Encryption SDK run does not. ${cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. Reproduce: \`npm run bench:kms\`.`
    console.log('\n' + table + '\n\n' + meta)
    if (!args.includes('--no-readme')) {
      const readme = join(__dirname, '..', 'README.md')
      const block = `<!-- bench-kms:start -->\n${table}\n\n${meta}\n<!-- bench-kms:end -->`
      writeFileSync(readme, readFileSync(readme, 'utf8').replace(/<!-- bench-kms:start -->[\s\S]*?<!-- bench-kms:end -->|BENCH_KMS_TABLE/, block))
      console.log('README.md table updated')
    }
  } finally {
    execFileSync(SCRIPT, ['stop', pid])
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
