#!/usr/bin/env node
/**
 * `sharevault <command>`: the operator's command over the binding. Configuration comes from
 * flags and the environment (`lib/cli/config.ts`); exit codes: 0 ok, 1 a check or the operation
 * failed, 2 usage or configuration, 3 the database or KMS unavailable. Nothing it prints holds a
 * password, a key or a token.
 */
import { parseArgs } from 'node:util'
import { VaultError } from './errors'
import { migrate } from './vault'
import { auditVerify, checkpoint, compact, keys, status } from './cli/commands'
import { INTERRUPTED, retireKeyCommand, rotateCommand } from './cli/rotate'
import { auditExport } from './cli/export'
import { doctor } from './cli/doctor'
import { CONFIG_HELP, EXIT, redact, UsageError, VAULT_FLAGS } from './cli/config'

const USAGE = `usage: sharevault <command> [options]

commands:
  migrate [--database <url>] [--allow-insecure-transport] [--allow-tls12]
      create or upgrade the schema (the database is $SHAREVAULT_DATABASE unless --database is given)
  status [--cache <json|off>] [--json]
      the schema version, the wallets per chain, the keyring, rotation due or not, the audit head,
      the data-key cache settings: the service's cache option as --cache or SHAREVAULT_CACHE
      gives it (JSON, e.g. {"maxEntries":5000}, or off), checked by the vault, defaults filled in
  keys [--json]
      the environment's keyring: each key's state, record count, rotation due or not
  rotate [--reencrypt] [--batch <n>] [--concurrency <n>] [--json]
      move every record under the primary key (configure it, with the old key in "previous");
      --reencrypt gives each record a fresh data key too. Ctrl-C stops at a batch boundary;
      running it again resumes
  retire-key <provider>:<keyId>
      stop trusting a key of the keyring (as \`keys\` lists it) once no record needs it
  doctor [--pid <service pid>] [--rotate-after-days <n>] [--json]
      check the deployment (file modes, TLS, the local key, rotation, memory locking, core dumps,
      whether the service process is dumpable, the schema, the audit chain), each finding with
      what to do; exit 1 if any check fails. --pid reads the service process's limits and state
  checkpoint
      the authenticated audit head as JSON, to keep outside the database
  compact [--json]
      reclaim the space deleted and replaced rows left (SQLite VACUUM, PostgreSQL VACUUM), and
      say what that does and does not promise about the freed bytes
  audit verify [--since <checkpoint.json>] [--json]
      check the audit chain (from a checkpoint); exit 1 with the first bad seq and the reason
  audit export --jsonl [--since-seq <n>] [--until <seq or ISO time>] [--out <file>]
      the audit rows as JSON lines, in constant memory, up to a checkpoint taken first, ending
      with a checkpoint line ({checkpoint, rows, firstSeq, lastSeq, lastHash, verified}); exit 1
      if the chain does not verify (the rows are still exported)

${CONFIG_HELP}

exit codes: 0 ok, 1 a check or the operation failed, 2 usage or configuration, 3 database or KMS unavailable,
  ${INTERRUPTED} a rotation stopped by Ctrl-C`

const UNAVAILABLE = new Set(['ERR_DB_UNAVAILABLE', 'ERR_KMS_UNAVAILABLE'])

type Command = (values: Record<string, string | boolean | undefined>, positionals: string[]) => Promise<number>

async function migrateCommand(values: Record<string, string | boolean | undefined>): Promise<number> {
  const database = (values.database as string | undefined) ?? process.env.SHAREVAULT_DATABASE
  if (!database) throw new UsageError('no database: set SHAREVAULT_DATABASE or pass --database')
  const m = await migrate({ database, allowInsecureTransport: values['allow-insecure-transport'] === true, allowTls12: values['allow-tls12'] === true })
  console.log(m.from === m.to ? `schema already at version ${m.to}; nothing to do` : `schema migrated from version ${m.from} to ${m.to}`)
  return EXIT.ok
}

const COMMANDS: Record<string, { options: Record<string, { type: 'string' | 'boolean'; short?: string }>; positionals?: boolean; run: Command }> = {
  migrate: { options: { database: { type: 'string' }, 'allow-insecure-transport': { type: 'boolean' }, 'allow-tls12': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, run: migrateCommand },
  status: { options: { ...VAULT_FLAGS, cache: { type: 'string' } }, run: status as Command },
  keys: { options: VAULT_FLAGS, run: keys as Command },
  checkpoint: { options: VAULT_FLAGS, run: checkpoint as Command },
  compact: { options: VAULT_FLAGS, run: compact as Command },
  rotate: { options: { ...VAULT_FLAGS, reencrypt: { type: 'boolean' }, batch: { type: 'string' }, concurrency: { type: 'string' } }, run: rotateCommand as Command },
  'retire-key': { options: VAULT_FLAGS, positionals: true, run: retireKeyCommand as Command },
  'audit verify': { options: { ...VAULT_FLAGS, since: { type: 'string' } }, run: auditVerify as Command },
  doctor: { options: { ...VAULT_FLAGS, 'rotate-after-days': { type: 'string' }, pid: { type: 'string' } }, run: doctor as Command },
  'audit export': { options: { ...VAULT_FLAGS, jsonl: { type: 'boolean' }, 'since-seq': { type: 'string' }, until: { type: 'string' }, out: { type: 'string' } }, run: auditExport as Command },
}

async function main(argv: string[]): Promise<number> {
  const [first, second] = argv
  const name = first === 'audit' ? `audit ${second ?? ''}`.trim() : first
  const command = name === undefined ? undefined : COMMANDS[name]
  if (!command) {
    // Named back only when it looks like a command word: a mistyped argument may be a key or a URL.
    const shown = name !== undefined && /^[a-z][a-z -]{0,30}$/.test(name) ? ` ${JSON.stringify(name)}` : ''
    console.error(name === undefined || name === '--help' || name === '-h' ? USAGE : `unknown command${shown}\n\n${USAGE}`)
    return name === '--help' || name === '-h' ? EXIT.ok : EXIT.usage
  }
  let values: Record<string, string | boolean | undefined>
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({ args: argv.slice(name.split(' ').length), options: command.options, allowPositionals: command.positionals === true }))
  } catch {
    // parseArgs quotes the offending argument, which may be a URL with a password in it.
    console.error(`unexpected argument for ${name} (the database goes in SHAREVAULT_DATABASE or after --database)\n\n${USAGE}`)
    return EXIT.usage
  }
  if (values.help) {
    console.log(USAGE)
    return EXIT.ok
  }
  return command.run(values, positionals)
}

// A reader that stops reading (`sharevault audit export --jsonl | head`): said in one line, not a stack.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e
  process.stderr.write('sharevault: the output was closed before the command finished\n')
  process.exit(EXIT.failed)
})

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`sharevault: ${redact(e.message)}`)
      process.exitCode = EXIT.usage
      return
    }
    const code = e instanceof VaultError ? e.code : undefined
    console.error(redact(e instanceof Error ? `${e.name}${code ? ` [${code}]` : ''}: ${e.message}` : String(e)))
    process.exitCode = code && UNAVAILABLE.has(code) ? EXIT.unavailable : code === 'ERR_INVALID_INPUT' ? EXIT.usage : EXIT.failed
  },
)
