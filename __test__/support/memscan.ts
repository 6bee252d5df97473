import { closeSync, openSync, readFileSync, readSync } from 'node:fs'

/**
 * Counts occurrences of `needle` in the writable memory of process `pid`, read through
 * `/proc/<pid>/mem` from this (another) process, so the needle itself is never in the memory that
 * is scanned. Linux only; needs ptrace access to the child (a child of ours, or root).
 */
export function countInMemory(pid: number, needle: Buffer): number {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n')
  const fd = openSync(`/proc/${pid}/mem`, 'r')
  const chunk = Buffer.alloc(16 * 1024 * 1024)
  let found = 0
  try {
    for (const line of maps) {
      const [range, perms, , , , name] = line.split(/\s+/)
      if (!perms.startsWith('rw') || (name ?? '').startsWith('[v')) continue
      const [start, end] = range.split('-').map((h) => parseInt(h, 16))
      // Overlap chunks by the needle's length so a match across a boundary is not missed.
      for (let at = start; at < end; at += chunk.length - needle.length) {
        const len = Math.min(chunk.length, end - at)
        let n: number
        try {
          n = readSync(fd, chunk, 0, len, at)
        } catch {
          break // an unreadable region (guard pages): skip it
        }
        let i = chunk.subarray(0, n).indexOf(needle)
        while (i !== -1) {
          found++
          i = chunk.subarray(0, n).indexOf(needle, i + 1)
        }
        if (at + len >= end) break
      }
    }
  } finally {
    closeSync(fd)
  }
  return found
}
