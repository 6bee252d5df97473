import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

const SCRIPT = join(__dirname, '..', '..', 'scripts', 'moto.sh')

/** A moto KMS server on a loopback port, started by the repository's script. */
export interface Moto {
  endpoint: string
  pid: number
  createKey(alias?: string): string
  /** SIGSTOP: the server accepts connections but answers nothing (a hung KMS). */
  pause(): void
  resume(): void
  /** SIGKILL: connections are refused. */
  kill(): void
}

export function startMoto(): Moto {
  const out = execFileSync(SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  const [pid, endpoint] = out.split(' ')
  const p = Number(pid)
  return {
    endpoint,
    pid: p,
    createKey: (alias) => execFileSync(SCRIPT, ['create-key', endpoint, ...(alias ? [alias] : [])], { encoding: 'utf8' }).trim(),
    pause: () => process.kill(p, 'SIGSTOP'),
    resume: () => process.kill(p, 'SIGCONT'),
    kill: () => {
      try {
        process.kill(p, 'SIGCONT')
        process.kill(p, 'SIGKILL')
      } catch {
        // already gone
      }
    },
  }
}

export const DUMMY_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' }
