#!/usr/bin/env node
/**
 * `sharevault migrate`: creates or upgrades the schema of `$SHAREVAULT_DATABASE` (or
 * `--database`; the variable keeps a password out of the process list), for deployments whose
 * application role opens with `migrate: false`.
 */
import { parseArgs } from 'node:util'
import { migrate } from './vault'

const USAGE = `usage:
  sharevault migrate [--database <url>] [--allow-insecure-transport] [--allow-tls12]
      the database is $SHAREVAULT_DATABASE unless --database is given`

/** Credentials in anything that looks like a URL, masked: `postgres://app:***@db/x`. */
function redact(text: string): string {
  return text.replace(/(\/\/[^:@/\s]*):[^@/\s]*@/g, '$1:***@')
}

async function migrateCommand(args: string[]): Promise<void> {
  let parsed
  try {
    parsed = parseArgs({ args, options: { database: { type: 'string' }, 'allow-insecure-transport': { type: 'boolean' }, 'allow-tls12': { type: 'boolean' } } })
  } catch {
    // parseArgs quotes the offending argument, which may be a URL with a password in it.
    console.error(`unexpected argument (the database goes after --database, or in SHAREVAULT_DATABASE)\n${USAGE}`)
    process.exitCode = 2
    return
  }
  const { values } = parsed
  const database = values.database ?? process.env.SHAREVAULT_DATABASE
  if (!database) {
    console.error(`no database: set SHAREVAULT_DATABASE or pass --database\n${USAGE}`)
    process.exitCode = 2
    return
  }
  const m = await migrate({
    database,
    allowInsecureTransport: values['allow-insecure-transport'] === true,
    allowTls12: values['allow-tls12'] === true,
  })
  console.log(m.from === m.to ? `schema already at version ${m.to}; nothing to do` : `schema migrated from version ${m.from} to ${m.to}`)
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2)
  if (cmd === 'migrate') return migrateCommand(rest)
  console.error(USAGE)
  process.exitCode = 2
}

main().catch((e) => {
  const code = (e as { code?: unknown }).code
  console.error(redact(e instanceof Error ? `${e.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${e.message}` : String(e)))
  process.exitCode = 1
})
