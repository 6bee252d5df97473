/**
 * What every `sharevault` command reads: flags first, then the environment. The database URL
 * (it may hold a password) and the KMS settings (they may hold a key or credentials) are read
 * from the environment or a file, so they stay out of the process list, and are never printed.
 */
import { readFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import type { CacheOptions, KmsOptions, OpenOptions, Permission } from '../types'

/** The documented exit codes. */
export const EXIT = {
  ok: 0,
  /** A check failed (`audit verify` found a break), or the operation failed. */
  failed: 1,
  /** A usage or configuration error: nothing was done. */
  usage: 2,
  /** The database or the KMS is unavailable. */
  unavailable: 3,
} as const

/** A usage or configuration error, with what to do (never the value). */
export class UsageError extends Error {}

/** The flags every command that opens a vault takes. */
export const VAULT_FLAGS = {
  database: { type: 'string' },
  environment: { type: 'string' },
  'kms-file': { type: 'string' },
  actor: { type: 'string' },
  'allow-insecure-transport': { type: 'boolean' },
  'allow-tls12': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export const CONFIG_HELP = `configuration (flags win over the environment):
  --database <url>          or SHAREVAULT_DATABASE (keep a password out of the process list: use the variable)
  --environment <name>      or SHAREVAULT_ENVIRONMENT
  --kms-file <path>         or SHAREVAULT_KMS: the vault's kms option as JSON, e.g.
                              {"provider":"aws","keyId":"alias/wallets-prod","region":"eu-west-1"}
                              {"provider":"local","key":"<base64 of 32 bytes>"}   (development only)
  --actor <name>            or SHAREVAULT_ACTOR (default cli:<user>): who the audit log names
  --allow-insecure-transport, --allow-tls12   as the open options of the same names
  --json                    machine output`

/** Credentials in anything that looks like a URL, masked: `postgres://app:***@db/x`. */
export function redact(text: string): string {
  return text.replace(/(\/\/[^:@/\s]*):[^@/\s]*@/g, '$1:***@')
}

type Values = { [K in keyof typeof VAULT_FLAGS]?: (typeof VAULT_FLAGS)[K]['type'] extends 'string' ? string : boolean }

/** A command's parsed flags (its own beside `VAULT_FLAGS`). */
export type CliValues = Values & Record<string, string | boolean | undefined>

function kmsOf(values: Values): KmsOptions {
  const file = values['kms-file']
  let text: string | undefined
  let from: string
  if (file !== undefined) {
    from = `--kms-file ${file}`
    try {
      text = readFileSync(file, 'utf8')
    } catch (e) {
      throw new UsageError(`cannot read ${from}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)
    }
  } else {
    from = 'SHAREVAULT_KMS'
    text = process.env.SHAREVAULT_KMS
  }
  if (text === undefined || text.trim() === '') throw new UsageError('no KMS settings: set SHAREVAULT_KMS or pass --kms-file (see --help)')
  let kms: unknown
  try {
    kms = JSON.parse(text)
  } catch {
    // JSON.parse quotes the text it could not read, which may be a key: not repeated.
    throw new UsageError(`${from} is not JSON (the vault's kms option, as JSON: see --help)`)
  }
  if (kms === null || typeof kms !== 'object' || Array.isArray(kms)) throw new UsageError(`${from} must be a JSON object (the vault's kms option)`)
  return kms as KmsOptions
}

/**
 * The service's data-key cache settings as the operator describes them (`--cache`, or
 * `SHAREVAULT_CACHE`): `off`, or the `cache` open option as JSON; unset is the default cache.
 */
export function cacheOf(values: CliValues): CacheOptions | false {
  const text = (values.cache as string | undefined) ?? process.env.SHAREVAULT_CACHE
  const from = values.cache !== undefined ? '--cache' : 'SHAREVAULT_CACHE'
  if (text === undefined || text.trim() === '') return {}
  if (text.trim() === 'off' || text.trim() === 'false') return false
  let cache: unknown
  try {
    cache = JSON.parse(text)
  } catch {
    throw new UsageError(`${from} is neither off nor JSON (the vault's cache option, e.g. {"maxEntries":5000})`)
  }
  if (cache === false) return false
  if (cache === null || typeof cache !== 'object' || Array.isArray(cache)) throw new UsageError(`${from} must be off or a JSON object (the vault's cache option)`)
  return cache as CacheOptions
}

/**
 * The open options of a command: never runs DDL (`migrate: false`), and only what it needs.
 * No data-key cache unless `cache` is given (a command unwraps each data key once at most).
 */
export function openOptions(values: Values, allow: Permission[], cache: CacheOptions | false = false): OpenOptions {
  const database = values.database ?? process.env.SHAREVAULT_DATABASE
  if (!database) throw new UsageError('no database: set SHAREVAULT_DATABASE or pass --database')
  const environment = values.environment ?? process.env.SHAREVAULT_ENVIRONMENT
  if (!environment) throw new UsageError('no environment: set SHAREVAULT_ENVIRONMENT or pass --environment')
  let user = 'unknown'
  try {
    user = userInfo().username
  } catch {
    // No passwd entry (a container's arbitrary uid).
  }
  return {
    database,
    environment,
    kms: kmsOf(values),
    actor: values.actor ?? process.env.SHAREVAULT_ACTOR ?? `cli:${user}`,
    migrate: false,
    allow,
    cache,
    allowInsecureTransport: values['allow-insecure-transport'] === true,
    allowTls12: values['allow-tls12'] === true,
  }
}
