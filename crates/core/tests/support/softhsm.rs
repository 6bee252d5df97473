//! SoftHSM2 for cargo tests: one token directory per test process, made before the module is
//! first initialized (SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, which a process does
//! once), by the repository's `scripts/softhsm.sh`. Two tokens: `sv-main` with the keys
//! `kek-a`, `kek-b` and `extractable` (a key that may leave the token), `sv-other` with
//! `kek-a` again (the same label on another token), and `sv-logout` with `kek` (logged out
//! under its vault by one test; PKCS#11 logins are per token for the whole process).

use sharevault_core::kms::pkcs11::{Pkcs11Config, TokenRef};
use std::process::Command;
use std::sync::OnceLock;

pub const PIN: &str = "4711-test";

pub struct SoftHsm {
    pub module: String,
    _dir: tempfile::TempDir,
}

fn script(args: &[&str]) -> String {
    let out =
        Command::new(format!("{}/../../scripts/softhsm.sh", env!("CARGO_MANIFEST_DIR"))).args(args).output().unwrap();
    assert!(out.status.success(), "softhsm.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let conf = script(&["token", d, "sv-main", PIN]);
        for key in ["kek-a", "kek-b"] {
            script(&["key", d, "sv-main", PIN, key]);
        }
        script(&["key", d, "sv-main", PIN, "extractable", "--extractable"]);
        script(&["token", d, "sv-other", PIN]);
        script(&["key", d, "sv-other", PIN, "kek-a"]);
        // For a test that logs the token out under its vault: no other test's sessions share it.
        script(&["token", d, "sv-logout", PIN]);
        script(&["key", d, "sv-logout", PIN, "kek"]);
        // Before any C_Initialize in this process (the tests reach the module only through here).
        std::env::set_var("SOFTHSM2_CONF", conf);
        SoftHsm { module: script(&["module"]), _dir: dir }
    })
}

impl SoftHsm {
    pub fn config(&self, token: &str, key: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token: TokenRef::Label(token.into()),
            key_label: key.into(),
            pin: PIN.into(),
        }
    }
}
