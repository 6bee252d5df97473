//! A real OpenBao dev server (Transit enabled) for cargo tests, started by the repository's
//! `scripts/openbao.sh` (its venv created if missing); stopped when dropped.

use sharevault_core::kms::transit::{TransitAuth, TransitConfig, DEFAULT_MOUNT};
use std::process::Command;
use std::time::Duration;
use zeroize::Zeroizing;

pub struct OpenBao {
    pid: String,
    pub address: String,
    pub token: String,
    /// The dev server's CA (with `--tls`).
    pub ca: Option<String>,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

fn script() -> String {
    format!("{}/../../scripts/openbao.sh", env!("CARGO_MANIFEST_DIR"))
}

/// A dev server on plain http (loopback), or with `tls` on https with its own CA.
pub fn start(tls: bool) -> OpenBao {
    let mut cmd = Command::new(script());
    cmd.arg("start");
    if tls {
        cmd.arg("--tls");
    }
    let out = cmd.output().expect("scripts/openbao.sh start");
    assert!(out.status.success(), "OpenBao did not start: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [pid, address, token, ca] = parts[..] else { panic!("unexpected answer from openbao.sh: {text}") };
    OpenBao {
        pid: pid.to_string(),
        address: address.to_string(),
        token: token.to_string(),
        ca: (ca != "-").then(|| ca.to_string()),
    }
}

impl OpenBao {
    /// `bao <args>` against this server, as root; its standard output.
    pub fn bao(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(script());
        cmd.args(["bao", &self.address, &self.token]).args(args);
        if let Some(ca) = &self.ca {
            cmd.env("BAO_CACERT", ca);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "bao {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new Transit key (derived, so the context binds each data key); its name.
    pub fn create_key(&self, name: &str) -> String {
        self.bao(&["write", "-f", &format!("transit/keys/{name}"), "derived=true"]);
        name.to_string()
    }

    pub fn config(&self, key_name: &str) -> TransitConfig {
        TransitConfig {
            address: self.address.clone(),
            key_name: key_name.to_string(),
            mount: DEFAULT_MOUNT.to_string(),
            namespace: None,
            auth: TransitAuth::Token(Zeroizing::new(self.token.clone())),
            ca_file: self.ca.clone(),
            timeout: Duration::from_secs(5),
            max_attempts: 2,
        }
    }

    pub fn stop(&self) {
        let _ = Command::new(script()).args(["stop", &self.pid]).status();
    }
}
