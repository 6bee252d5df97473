// Must NOT compile: a misspelt option is a type error, which is what the types are for.
import { Vault } from 'sharevault'

export const opened = Vault.open({ database: ':memory:', environment: 'e', kms: { provider: 'local', key: 'k' }, cahce: false })
