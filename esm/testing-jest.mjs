// The ESM entry point of `sharevault/testing/jest`: importing the CommonJS build installs the
// matchers in jest's global `expect` (when there is one), once for both forms.
import cjs from '../dist/testing/jest.js'

export const { sharevaultMatchers } = cjs
