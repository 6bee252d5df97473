// jest globalTeardown: drops every throwaway database this run created (even a crashed suite's).
const { Client } = require('pg')

module.exports = async function () {
  if (process.env.SHAREVAULT_PG !== '1') return
  const client = new Client({ connectionString: process.env.SHAREVAULT_PG_ADMIN_URL })
  await client.connect()
  try {
    const { rows } = await client.query(`SELECT datname FROM pg_database WHERE datname LIKE 'sharevault_jest_${process.env.SHAREVAULT_PG_RUN}_%'`)
    for (const r of rows) {
      try {
        await client.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`)
      } catch (e) {
        process.stderr.write(`could not drop test database ${r.datname}: ${e.message}\n`)
      }
    }
  } finally {
    await client.end()
  }
}
