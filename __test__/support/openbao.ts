import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

const SCRIPT = join(__dirname, '..', '..', 'scripts', 'openbao.sh')

/** A real OpenBao dev server with Transit enabled, on a loopback port (the repository's script). */
export interface OpenBao {
  address: string
  token: string
  pid: number
  /** `bao <args>` against the server, as root; its output. */
  bao(...args: string[]): string
  /** A derived Transit key; its name. */
  createKey(name: string): string
  kill(): void
}

export function startOpenBao(): OpenBao {
  const out = execFileSync(SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  const [pid, address, token] = out.split(' ')
  const bao = (...args: string[]) => execFileSync(SCRIPT, ['bao', address, token, ...args], { encoding: 'utf8' })
  return {
    address,
    token,
    pid: Number(pid),
    bao,
    createKey: (name) => {
      bao('write', '-f', `transit/keys/${name}`, 'derived=true')
      return name
    },
    kill: () => {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // already gone
      }
    },
  }
}
