/**
 * `sharevault/testing/jest`: importing it adds the kit's matchers to jest's global `expect`
 * (`toHaveAudited`, `toContainShareOf`) and types them for `@jest/globals` (`expect` from jest's
 * own `expect` package) and for `@types/jest`. With `injectGlobals: false`, call
 * `expect.extend(sharevaultMatchers)` yourself. Nothing here depends on jest at run time.
 */
import type {} from 'expect'
import { sharevaultMatchers, type SharevaultMatchers } from './matchers'

export { sharevaultMatchers }
export type { AuditExpectation, SharevaultMatchers } from './matchers'

const g = globalThis as { expect?: { extend?: (m: object) => void } }
if (typeof g.expect?.extend === 'function') g.expect.extend(sharevaultMatchers)

declare module 'expect' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unused-vars
  interface Matchers<R extends void | Promise<void>, T = unknown> extends SharevaultMatchers<R> {}
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace jest {
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unused-vars
    interface Matchers<R, T = {}> extends SharevaultMatchers<R> {}
  }
}
