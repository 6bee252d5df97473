#!/usr/bin/env node
// Installs what a release would publish into a fresh project outside the repository and uses it
// there, as a new user would: the platform package gets the built binary the way `napi artifacts`
// places it, both packages are packed with `npm pack`, and the tarballs (no links, no `file:` to
// the source tree) are installed with `npm install` into an empty project in the temp directory.
// There: a CommonJS and an ESM script open a vault, store, hydrate and close; a TypeScript file
// that uses every public type compiles under "module": "nodenext" and under "moduleResolution":
// "bundler", and one with a deliberate type error must not; the tarball's file list is printed
// and checked for anything the package does not need. Needs `npm run build` first.
//   node scripts/pack-test.js [--keep]
const { execFileSync, spawnSync } = require('node:child_process')
const { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { dirname, join } = require('node:path')

const root = join(__dirname, '..')
// The vitest the README's example is run with (the last line that supports Node 20).
const VITEST = '4.1.12'
const here = join(__dirname, 'pack-test')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
// napi's target triples and the npm/ directory (and binary suffix) of each.
const DIRS = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu', 'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl', 'aarch64-unknown-linux-musl': 'linux-arm64-musl',
  'x86_64-apple-darwin': 'darwin-x64', 'aarch64-apple-darwin': 'darwin-arm64', 'x86_64-pc-windows-msvc': 'win32-x64-msvc',
}
// The host's, as the generated loader picks it.
const libc = process.platform === 'linux' ? (process.report.getReport().header.glibcVersionRuntime ? '-gnu' : '-musl') : process.platform === 'win32' ? '-msvc' : ''
const PLATFORM = `${process.platform}-${process.arch}${libc}`
const TRIPLE = Object.keys(DIRS).find((t) => DIRS[t] === PLATFORM)
const binary = `sharevault.${PLATFORM}.node`

function run(cmd, args, cwd, opts = {}) {
  // npm and npx are .cmd scripts on Windows, which only a shell runs.
  const shell = process.platform === 'win32' && (cmd === 'npm' || cmd === 'npx' || cmd.endsWith('.cmd'))
  return execFileSync(cmd, args, { cwd, shell, stdio: opts.capture ? 'pipe' : 'inherit', env: { ...process.env, ...opts.env } })?.toString()
}
function fail(msg) {
  console.error(`pack-test: FAILED: ${msg}`)
  process.exit(1)
}

for (const f of [binary, 'index.js', 'index.d.ts', 'dist/index.js', 'THIRD-PARTY']) {
  if (!existsSync(join(root, f))) fail(`${f} is missing: run npm run build first`)
}

// The release layout: every napi target has an npm/ directory at the package's version. (The
// optional dependencies on them are written at publish time by `napi pre-publish`: a package
// that is not published yet cannot be in package-lock.json, and `npm ci` refuses a lock that
// lacks a declared dependency.)
if (pkg.optionalDependencies) fail('package.json declares optionalDependencies: napi pre-publish writes them when publishing')
for (const t of pkg.napi.targets) {
  const dir = DIRS[t]
  if (!dir) fail(`no npm directory name known for target ${t}`)
  const sub = JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8'))
  if (sub.version !== pkg.version) fail(`npm/${dir} is at ${sub.version}, the package at ${pkg.version}`)
}

const work = mkdtempSync(join(tmpdir(), 'sharevault-pack-'))
try {
  // The release steps on what `npm pack` of the repository holds: the CI build's binary placed
  // by `napi artifacts`, the optional dependencies written by `napi pre-publish` (publishing
  // nothing), then both packages packed. napi refuses a release with any configured target's
  // binary missing; only the host's is built here, so the staged package lists only its target.
  // (The files `npm pack` would take, copied rather than extracted: no tar dependency on Windows.)
  const [listed] = JSON.parse(run('npm', ['pack', '--dry-run', '--json'], root, { capture: true }))
  const stage = join(work, 'package')
  for (const f of listed.files) {
    mkdirSync(dirname(join(stage, f.path)), { recursive: true })
    cpSync(join(root, f.path), join(stage, f.path))
  }
  writeFileSync(join(stage, 'package.json'), JSON.stringify({ ...pkg, napi: { ...pkg.napi, targets: [TRIPLE] } }, null, 2))
  cpSync(join(root, 'npm'), join(stage, 'npm'), { recursive: true })
  const artifacts = join(work, 'artifacts', `bindings-${TRIPLE}`)
  mkdirSync(artifacts, { recursive: true })
  cpSync(join(root, binary), join(artifacts, binary))
  run('npx', ['napi', 'artifacts', '--cwd', stage, '--output-dir', join(work, 'artifacts'), '--npm-dir', 'npm'], root)
  // pre-publish reads the release commit's message (for a GitHub release, not made here).
  run('git', ['init', '-q'], stage)
  run('git', ['-c', 'user.name=pack-test', '-c', 'user.email=pack-test@localhost', 'commit', '-q', '--allow-empty', '-m', `v${pkg.version}`], stage)
  run('npx', ['napi', 'pre-publish', '--cwd', stage, '--npm-dir', 'npm', '-t', 'npm', '--skip-optional-publish'], root)
  const staged = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'))
  const platformPkg = JSON.parse(readFileSync(join(stage, 'npm', PLATFORM, 'package.json'), 'utf8')).name
  if (staged.optionalDependencies?.[platformPkg] !== pkg.version) fail(`napi pre-publish did not declare ${platformPkg}@${pkg.version}: ${JSON.stringify(staged.optionalDependencies)}`)
  const packed = {}
  for (const [name, dir] of [['main', stage], ['platform', join(stage, 'npm', PLATFORM)]]) {
    const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], dir, { capture: true }))
    packed[name] = info
  }

  // What the main tarball holds: printed, and checked.
  const files = packed.main.files.map((f) => f.path).sort()
  console.log(`\n${packed.main.filename}: ${files.length} files, ${(packed.main.size / 1024).toFixed(1)} KiB packed, ${(packed.main.unpackedSize / 1024).toFixed(1)} KiB unpacked`)
  for (const f of packed.main.files.sort((a, b) => a.path.localeCompare(b.path))) console.log(`  ${String(f.size).padStart(8)}  ${f.path}`)
  console.log(`${packed.platform.filename}: ${packed.platform.files.map((f) => f.path).join(', ')}, ${(packed.platform.size / 1048576).toFixed(2)} MiB packed`)
  const needed = ['package.json', 'README.md', 'LICENSE', 'THIRD-PARTY', 'index.js', 'index.d.ts', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'dist/dynamic.js', 'dist/dynamic.d.ts', 'dist/sdk/vaulted.js', 'dist/sdk/operations.js', 'dist/sdk/types.d.ts', 'esm/index.mjs', 'esm/index.d.mts', 'esm/dynamic.mjs', 'esm/dynamic.d.mts', 'dist/testing/index.js', 'dist/testing/index.d.ts', 'dist/testing/fakes.js', 'dist/testing/jest.js', 'dist/testing/jest.d.ts', 'esm/testing.mjs', 'esm/testing.d.mts', 'esm/testing-jest.mjs', 'esm/testing-jest.d.mts']
  for (const f of needed) if (!files.includes(f)) fail(`the tarball lacks ${f}`)
  // The testing kit's jest entry point is meant; any other jest (or fixture) file is not.
  const kitJest = (f) => /^(dist\/testing\/jest\.(js|d\.ts)|esm\/testing-jest\.(mjs|d\.mts))$/.test(f)
  const unwanted = files.filter((f) => !kitJest(f) && (/(^|\/)(__test__|bench|scripts|crates|src|npm|examples|\.ci|\.github)\//.test(f) || /fixture|demo|\.test\.|\.map$|\.node$|\.rs$|^Cargo|tsconfig|jest/.test(f)))
  if (unwanted.length) fail(`the tarball holds files the package does not need: ${unwanted.join(', ')}`)
  if (packed.platform.files.map((f) => f.path).sort().join() !== [binary, 'package.json', 'README.md'].sort().join()) fail('the platform tarball holds unexpected files')

  // A fresh project: installs the tarballs from the registry's point of view.
  const app = join(work, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-test-app', version: '1.0.0', private: true }, null, 2))
  const ts = JSON.parse(readFileSync(join(root, 'node_modules', 'typescript', 'package.json'), 'utf8')).version
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, packed.main.filename), join(work, packed.platform.filename), `typescript@${ts}`, '@types/node@20'], app)
  const installed = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).dependencies
  if (Object.values(installed).some((spec) => spec.includes(root))) fail('the project links to the source tree')
  for (const f of ['consumer.cjs', 'consumer.mjs', 'consumer.ts', 'consumer.mts', 'bad.ts', 'wallets.test.js', 'wallets-types.test.ts', 'vitest-wallets.spec.mts']) cpSync(join(here, f), join(app, f))

  run(process.execPath, ['consumer.cjs'], app)
  run(process.execPath, ['consumer.mjs'], app)

  // The installed command: migrates a fresh SQLite file, then finds it current.
  const bin = join(app, 'node_modules', '.bin', process.platform === 'win32' ? 'sharevault.cmd' : 'sharevault')
  const db = `sqlite://${join(work, 'cli.db')}`
  const first = run(bin, ['migrate', '--database', db], app, { capture: true })
  const second = run(bin, ['migrate'], app, { capture: true, env: { SHAREVAULT_DATABASE: db } })
  const to = /migrated from version 0 to (\d+)/.exec(first)?.[1]
  if (!to || !second.includes(`already at version ${to}`)) fail(`sharevault migrate printed: ${first} / ${second}`)
  console.log('command: sharevault migrate ok')
  // sharevault status and doctor on the database just migrated (as JSON).
  const opsEnv = { ...process.env, SHAREVAULT_DATABASE: db, SHAREVAULT_ENVIRONMENT: 'pack-test', SHAREVAULT_KMS: JSON.stringify({ provider: 'local', key: Buffer.alloc(32, 1).toString('base64') }) }
  /** A command's --json output, parsed, and its exit code. */
  const jsonOf = (command) => {
    const r = spawnSync(bin, [command, '--json'], { cwd: app, encoding: 'utf8', shell: process.platform === 'win32', env: opsEnv })
    try {
      return { code: r.status, out: JSON.parse(r.stdout) }
    } catch {
      fail(`sharevault ${command} printed no JSON (exit ${r.status}): ${r.stderr}`)
    }
  }
  const statusRun = jsonOf('status')
  const statusReport = statusRun.out
  if (statusRun.code !== 0 || statusReport.schemaVersion !== Number(to) || statusReport.wallets !== 0) fail(`sharevault status: ${JSON.stringify(statusReport)}`)
  console.log(`command: sharevault status ok (schema ${statusReport.schemaVersion}, ${statusReport.wallets} wallets)`)
  const doctorRun = jsonOf('doctor')
  const report = doctorRun.out
  const schema = report.findings.find((f) => f.check === 'schema')
  if (schema?.status !== 'ok' || report.findings.find((f) => f.check === 'database file')?.status !== 'ok') fail(`sharevault doctor: ${JSON.stringify(report.findings)}`)
  console.log(`command: sharevault doctor ok (${report.findings.length} findings, exit ${doctorRun.code})`)

  // sharevault/testing as a user's jest suite uses it: jest installed into the fresh project, a
  // user-style test file run there (open handles detected), and its TypeScript form type-checked.
  const jestVersion = (name) => JSON.parse(readFileSync(join(root, 'node_modules', ...name.split('/'), 'package.json'), 'utf8')).version
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `jest@${jestVersion('jest')}`, `@jest/globals@${jestVersion('@jest/globals')}`], app)
  const jestRun = spawnSync(process.execPath, [join(app, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', '--detectOpenHandles', '--rootDir', app, 'wallets.test.js'], { cwd: app, encoding: 'utf8' })
  const jestOut = `${jestRun.stdout}${jestRun.stderr}`
  if (jestRun.status !== 0) fail(`the user-style jest suite failed in the fresh project:\n${jestOut}`)
  if (/open handle|Jest has detected/i.test(jestOut)) fail(`the user-style jest suite left an open handle:\n${jestOut}`)
  const passed = /Tests:\s+(\d+) passed/.exec(jestOut)?.[1]
  if (!passed || Number(passed) < 4) fail(`the user-style jest suite did not run its tests:\n${jestOut}`)
  console.log(`testing kit: the user-style jest suite passed (${passed} tests, no open handle)`)
  writeFileSync(join(app, 'tsconfig.kit.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'] }, files: ['wallets-types.test.ts'] }))
  run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.kit.json'], app)
  console.log('testing kit: the typed matchers compile under @jest/globals')
  // The README's vitest example (ESM), with vitest's own expect.extend, run and type-checked.
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `vitest@${VITEST}`], app)
  const vitestRun = spawnSync(process.execPath, [join(app, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--root', app, 'vitest-wallets.spec.mts'], { cwd: app, encoding: 'utf8', env: { ...process.env, CI: 'true', NO_COLOR: '1' } })
  const vitestOut = `${vitestRun.stdout}${vitestRun.stderr}`
  if (vitestRun.status !== 0 || !/Tests\s+1 passed/.test(vitestOut)) fail(`the vitest example failed in the fresh project:\n${vitestOut}`)
  writeFileSync(join(app, 'tsconfig.vitest.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, files: ['vitest-wallets.spec.mts'] }))
  run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.vitest.json'], app)
  console.log(`testing kit: the README's vitest example passed and type-checks (vitest ${VITEST})`)

  const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc')
  const configs = {
    nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
    bundler: { module: 'esnext', moduleResolution: 'bundler' },
  }
  for (const [name, opts] of Object.entries(configs)) {
    // consumer.ts is CommonJS to nodenext here (the project has no "type": "module"), so the
    // ESM types (esm/*.d.mts) are checked through consumer.mts.
    writeFileSync(join(app, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { ...opts, target: 'es2022', strict: true, noEmit: true, types: ['node'] }, files: ['consumer.ts', 'consumer.mts'] }))
    run(process.execPath, [tsc, '-p', `tsconfig.${name}.json`], app)
    console.log(`typescript (${name}): consumer.ts and consumer.mts compile`)
    writeFileSync(join(app, `tsconfig.${name}.bad.json`), JSON.stringify({ compilerOptions: { ...opts, target: 'es2022', strict: true, noEmit: true, types: ['node'] }, files: ['bad.ts'] }))
    let out = ''
    try {
      run(process.execPath, [tsc, '-p', `tsconfig.${name}.bad.json`], app, { capture: true })
      fail(`bad.ts compiled under ${name}: the types do not catch a misspelt option`)
    } catch (e) {
      out = String(e.stdout)
    }
    if (!/error TS2353|error TS2561/.test(out) || !out.includes('cahce')) fail(`bad.ts failed under ${name}, but not for the misspelt option:\n${out}`)
    console.log(`typescript (${name}): bad.ts is refused (${out.match(/error TS\d+/)[0]})`)
  }

  // consumer.ts uses every exported name of the package: compare with the compiler's own list.
  const check = `
    const ts = require('typescript')
    const program = ts.createProgram(['consumer.ts'], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, types: ['node'] })
    const checker = program.getTypeChecker()
    const file = program.getSourceFile('consumer.ts')
    const decl = file.statements.find((s) => ts.isImportDeclaration(s) && s.moduleSpecifier.text === 'sharevault')
    const mod = checker.getSymbolAtLocation(decl.moduleSpecifier)
    const exported = checker.getExportsOfModule(mod).map((s) => s.name).sort()
    const imported = decl.importClause.namedBindings.elements.map((e) => e.name.text).sort()
    const missing = exported.filter((n) => !imported.includes(n))
    if (missing.length) { console.error('consumer.ts does not use: ' + missing.join(', ')); process.exit(1) }
    console.log('typescript: consumer.ts uses all ' + exported.length + ' exports')`
  run(process.execPath, ['-e', check], app)
  console.log('\npack-test: ok')
} finally {
  if (process.argv.includes('--keep')) console.log(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
}
