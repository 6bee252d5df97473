//! `kms: { provider: 'aws', keyId, region?, endpoint?, credentials?, timeoutMs?, maxAttempts? }`.

use crate::options::Obj;
use sharevault_core::kms::aws::{AwsKmsConfig, StaticCredentials, DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT};
use sharevault_core::{KmsConfig, Result};
use std::time::Duration;

pub fn config(o: &Obj) -> Result<KmsConfig> {
    let credentials = match o.object("credentials", "{ accessKeyId, secretAccessKey, sessionToken? }")? {
        None => None,
        Some(c) => Some(StaticCredentials {
            access_key_id: c.required_string("accessKeyId")?,
            secret_access_key: c.required_string("secretAccessKey")?,
            session_token: c.string("sessionToken")?,
        }),
    };
    Ok(KmsConfig::Aws(AwsKmsConfig {
        key_id: o.required_string("keyId")?,
        region: o.string("region")?,
        endpoint: o.string("endpoint")?,
        credentials,
        timeout: o.integer("timeoutMs")?.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        // Out-of-range values are refused by the core, never clamped: saturate, don't wrap.
        max_attempts: o.integer("maxAttempts")?.map_or(DEFAULT_ATTEMPTS, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    }))
}
