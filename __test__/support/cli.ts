import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

export const CLI = join(__dirname, '..', '..', 'dist', 'cli.js')
const run = promisify(execFile)

export interface Ran {
  code: number
  stdout: string
  stderr: string
}

/** The installed command as an operator runs it: exit code and output. */
export async function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Ran> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const f = e as { code: number; stdout: string; stderr: string }
    return { code: f.code, stdout: f.stdout, stderr: f.stderr }
  }
}
