// A PostgreSQL cluster of the fault soak's own (never the shared server): initdb into a temporary
// directory, trust auth on loopback, a free port, fsync on (a restart is a crash: `immediate`
// stop, WAL recovery on start). Run as root, the data directory belongs to the `postgres` user,
// as PostgreSQL requires. The same steps as crates/core/tests/support/pg.rs's TempCluster.
const { execFileSync } = require('node:child_process')
const { mkdtempSync, readdirSync, existsSync, appendFileSync, rmSync, readFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const net = require('node:net')

/** The newest installed server's bin directory, or undefined. */
function serverBin() {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const bins = readdirSync(root).sort((a, b) => Number(a) - Number(b)).map((v) => join(root, v, 'bin'))
  return bins.reverse().find((b) => existsSync(join(b, 'initdb')))
}

const isRoot = () => process.getuid?.() === 0

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/**
 * Starts a cluster: `{ adminUrl, restart(), stop() }`, or undefined when no server is installed.
 * `host`: the address it listens on (default loopback; another one takes connections from
 * anywhere, without TLS: for tests of what a client says about that).
 */
async function startCluster({ host = '127.0.0.1' } = {}) {
  const bin = serverBin()
  if (!bin) return undefined
  const dir = mkdtempSync(join(tmpdir(), 'sv-soak-pg-'))
  const data = join(dir, 'data')
  const log = join(dir, 'server.log')
  const port = await freePort()
  const asOwner = (tool, args) => {
    if (isRoot()) execFileSync('chown', ['-R', 'postgres:postgres', dir])
    const [cmd, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args]
    try {
      execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (e) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : ''
      throw new Error(`${tool} failed: ${e.stderr?.toString() ?? e.message}${tail}`)
    }
  }
  asOwner('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  appendFileSync(join(data, 'postgresql.conf'), `port = ${port}\nlisten_addresses = '${host}'\nunix_socket_directories = '${dir}'\nmax_connections = 200\nssl = off\n`)
  if (host !== '127.0.0.1') appendFileSync(join(data, 'pg_hba.conf'), 'host all all 0.0.0.0/0 trust\n')
  const start = () => asOwner('pg_ctl', ['-D', data, '-l', log, '-w', 'start'])
  start()
  return {
    adminUrl: `postgres://postgres@${host}:${port}/postgres`,
    /** A crash and a restart: every connection cut, the server down until WAL recovery is done. */
    restart() {
      asOwner('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
      start()
    },
    /** Stops the server; its directory is removed unless `keep` (a failed run's post-mortem). */
    stop({ keep = false } = {}) {
      try {
        asOwner('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
      } finally {
        if (!keep) rmSync(dir, { recursive: true, force: true })
      }
      return dir
    },
  }
}

module.exports = { startCluster }
