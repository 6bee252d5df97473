//! moto's KMS server for cargo tests, started (and its venv created if missing) by the
//! repository's `scripts/moto.sh`; stopped when dropped.

use sharevault_core::kms::aws::{AwsKmsConfig, StaticCredentials};
use std::process::Command;
use std::time::Duration;

pub struct Moto {
    pid: String,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.pid]).status();
    }
}

fn script() -> String {
    format!("{}/../../scripts/moto.sh", env!("CARGO_MANIFEST_DIR"))
}

pub fn start() -> Moto {
    let out = Command::new(script()).arg("start").output().expect("scripts/moto.sh start");
    assert!(out.status.success(), "moto did not start: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (pid, endpoint) = text.trim().split_once(' ').unwrap();
    Moto { pid: pid.to_string(), endpoint: endpoint.to_string() }
}

impl Moto {
    /// A new symmetric key; its ARN.
    pub fn create_key(&self) -> String {
        let out = Command::new(script()).args(["create-key", &self.endpoint]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn config(&self, key_id: &str) -> AwsKmsConfig {
        AwsKmsConfig {
            key_id: key_id.to_string(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            credentials: Some(StaticCredentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
                session_token: None,
            }),
            timeout: Duration::from_secs(5),
            max_attempts: 2,
        }
    }
}
