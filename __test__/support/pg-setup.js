// jest globalSetup: is a PostgreSQL server reachable for the storage suites? The answer goes to
// the test workers through the environment. Without one the PostgreSQL runs are skipped with a
// visible line, except under CI=true, where that is an error: CI never skips them. The one
// exception is an explicit SHAREVAULT_PG_ADMIN_URL=off, for the release workflow's platform
// jobs (macOS, Windows, Alpine) that have no server; .ci/run never sets it.
const { Client } = require('pg')

module.exports = async function () {
  if (process.env.SHAREVAULT_PG_ADMIN_URL === 'off') {
    process.stderr.write('\nSKIPPED: the PostgreSQL runs of the storage suites (SHAREVAULT_PG_ADMIN_URL=off)\n')
    process.env.SHAREVAULT_PG = '0'
    return
  }
  const url = process.env.SHAREVAULT_PG_ADMIN_URL || 'postgres://postgres@127.0.0.1:5432/postgres'
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    process.env.SHAREVAULT_PG_ADMIN_URL = url
    process.env.SHAREVAULT_PG = '1'
    process.env.SHAREVAULT_PG_RUN = String(process.pid)
  } catch (e) {
    if (process.env.CI === 'true') throw new Error(`PostgreSQL is not reachable at ${url.replace(/\/\/[^@]*@/, '//')} and CI=true: ${e.message}`)
    process.stderr.write(`\nSKIPPED: the PostgreSQL runs of the storage suites (no server reachable: ${e.message}); set SHAREVAULT_PG_ADMIN_URL\n`)
    process.env.SHAREVAULT_PG = '0'
  } finally {
    await client.end().catch(() => undefined)
  }
}
