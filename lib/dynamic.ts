/**
 * `sharevault/dynamic`: the wrapper around the Dynamic SDK's wallet clients (`vaulted(client,
 * vault)`), so application code never handles a key share. It is not built yet: this entry point
 * exports nothing, so that code written against it fails to compile rather than misbehaving.
 * Until it lands, use `Vault.withWallet`, `Vault.mergeBackupInfo` and `Vault.replaceShares`
 * around the SDK calls, as the README shows.
 */
export {}
