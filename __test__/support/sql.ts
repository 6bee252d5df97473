import { execFileSync } from 'node:child_process'

/**
 * Runs SQL on a database file from a separate process, as an attacker with file access would.
 * (Not in-process: two SQLite libraries in one process break each other's POSIX locks.)
 * `fn` is the body of a function `(db, args) => result` run against a better-sqlite3 handle.
 */
export function sqlInChild<T = unknown>(path: string, fn: string, ...args: unknown[]): T {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1])
    try {
      const out = ((db, args) => { ${fn} })(db, JSON.parse(process.argv[2]))
      process.stdout.write(JSON.stringify(out === undefined ? null : out))
    } catch (e) {
      process.stdout.write(JSON.stringify({ __error: String(e && e.message) }))
    } finally { db.close() }`
  const out = execFileSync(process.execPath, ['-e', script, path, JSON.stringify(args)], { cwd: __dirname, encoding: 'utf8' })
  const parsed = JSON.parse(out)
  if (parsed && typeof parsed === 'object' && '__error' in parsed) throw new Error(parsed.__error)
  return parsed as T
}

/** Runs one statement with positional parameters in a separate process. */
export function tamper(path: string, sql: string, ...params: unknown[]): void {
  sqlInChild(path, `db.prepare(${JSON.stringify(sql)}).run(...args)`, ...params)
}
