//! AWS KMS: each wallet generation's data key comes from `GenerateDataKey` (AES_256) with an
//! encryption context naming the sharevault environment and the walletId; `Decrypt` passes the
//! same context and pins the key id, so KMS itself refuses a data key asked for on behalf of
//! another wallet, and its CloudTrail log names the wallet. Retries (throttling, 5xx, transport
//! errors) are the SDK's standard mode: bounded, exponential, jittered; an overall deadline per
//! operation turns a KMS outage into `ERR_KMS_UNAVAILABLE`.

use super::{GeneratedKey, KeyContext, KeyProvider, ProviderError, ProviderResult, ProviderRotation};
use crate::envelope::KekRef;
use crate::error::{Error, Result};
use crate::secret::{DataKey, SecretBuf};
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kms::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub const PROVIDER: &str = "aws";
pub use super::{MAX_ATTEMPTS, MAX_TIMEOUT};
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Static credentials; without them the standard AWS chain is used (environment, profile, web
/// identity, instance metadata).
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticCredentials { .. }")
    }
}

#[derive(Debug, Clone)]
pub struct AwsKmsConfig {
    /// Key id, key ARN or alias (`alias/…`).
    pub key_id: String,
    pub region: Option<String>,
    /// `https://…`, or `http://` on a loopback address only (an emulator).
    pub endpoint: Option<String>,
    pub credentials: Option<StaticCredentials>,
    /// Deadline for one operation, retries included.
    pub timeout: Duration,
    /// Attempts per operation (1 = no retry).
    pub max_attempts: u32,
}

/// Refuses plain-HTTP endpoints unless they are on a loopback address.
pub fn check_endpoint(endpoint: &str) -> Result<()> {
    super::check_transport(endpoint, "kms.endpoint")
}

/// Sees every HTTP attempt: counts it (so `stats()` shows retries), and refuses to send a request
/// over plain HTTP to anything but a loopback address, whatever set the endpoint (our option, the
/// `AWS_ENDPOINT_URL*` variables, or a profile's `endpoint_url`).
struct Guard {
    stats: Arc<Stats>,
    refused_insecure: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

impl Intercept for Guard {
    fn name(&self) -> &'static str {
        "sharevault-guard"
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        bump(&self.stats.kms_attempts);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let uri = ctx.request().uri().to_string();
        if check_endpoint(&uri).is_err() {
            self.refused_insecure.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err("refusing to send a KMS request over plain HTTP to a non-loopback address".into());
        }
        Ok(())
    }
}

pub struct AwsKms {
    client: aws_sdk_kms::Client,
    kek: KekRef,
}

impl std::fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsKms {{ key: {} }}", self.kek.key_id)
    }
}

fn context_map(ctx: &KeyContext) -> HashMap<String, String> {
    HashMap::from([
        ("sharevault:environment".to_string(), ctx.environment.clone()),
        ("sharevault:walletId".to_string(), ctx.wallet_id.clone()),
    ])
}

/// Says how an SDK call failed: a ciphertext that does not open under this key and context
/// (`InvalidCiphertextException`, `IncorrectKeyException`) is a rejected record, other refusals
/// (access denied, disabled key, bad credentials) are denials and were not retried; everything
/// else (timeouts, throttling that outlasted the retries, transport errors, 5xx) is an outage.
fn classify<E: ProvideErrorMetadata, R>(op: &str, err: &SdkError<E, R>) -> ProviderError {
    const REJECTED: &[&str] = &["InvalidCiphertextException", "IncorrectKeyException"];
    const DENIED: &[&str] = &[
        "AccessDeniedException",
        "DisabledException",
        "KMSInvalidStateException",
        "NotFoundException",
        "InvalidKeyUsageException",
        "InvalidGrantTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ValidationException",
    ];
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown");
            if REJECTED.contains(&code) {
                ProviderError::Rejected(format!("AWS KMS refused {op}: {code}"))
            } else if DENIED.contains(&code) {
                ProviderError::Denied(format!("AWS KMS refused {op}: {code}"))
            } else {
                ProviderError::Unavailable(format!("AWS KMS failed {op}: {code}"))
            }
        }
        SdkError::ConstructionFailure(_) => ProviderError::Denied(format!(
            "the {op} request to AWS KMS could not be built (are credentials configured?)"
        )),
        SdkError::TimeoutError(_) => {
            ProviderError::Unavailable(format!("AWS KMS did not answer {op} before the deadline"))
        }
        _ => ProviderError::Unavailable(format!("AWS KMS could not be reached for {op}")),
    }
}

fn take_key(blob: Option<Blob>, what: &str) -> ProviderResult<DataKey> {
    let bytes = SecretBuf::from_vec(blob.map(Blob::into_inner).unwrap_or_default());
    DataKey::from_slice(bytes.as_slice())
        .ok_or_else(|| ProviderError::Denied(format!("AWS KMS returned no usable {what}")))
}

impl AwsKms {
    /// Builds the client and resolves the configured key (an alias or id) to its ARN, which is
    /// what records name and what `Decrypt` is pinned to.
    pub async fn connect(config: AwsKmsConfig, stats: Arc<Stats>) -> Result<AwsKms> {
        if config.key_id.trim().is_empty() {
            return Err(Error::invalid("kms.keyId", "is required"));
        }
        super::check_retries(config.max_attempts, config.timeout)?;
        if let Some(ep) = &config.endpoint {
            check_endpoint(ep)?;
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(2)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(config.timeout)
                    .operation_attempt_timeout(config.timeout / config.max_attempts.max(1))
                    .connect_timeout(config.timeout.min(Duration::from_secs(3)))
                    .build(),
            );
        if let Some(r) = &config.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(ep) = &config.endpoint {
            loader = loader.endpoint_url(ep.clone());
        }
        if let Some(c) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "sharevault-static",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::invalid("kms.region", "is required (or set AWS_REGION)"));
        }
        let refused_insecure = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Guard { stats: stats.clone(), refused_insecure: refused_insecure.clone() };
        let client =
            aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(&sdk).interceptor(guard).build());
        bump(&stats.kms_describe);
        let described = client.describe_key().key_id(&config.key_id).send().await.map_err(|e| {
            if refused_insecure.load(std::sync::atomic::Ordering::SeqCst) {
                Error::invalid(
                    "kms.endpoint",
                    "the configured KMS endpoint (option, AWS_ENDPOINT_URL* or profile) is plain http on a non-loopback address",
                )
            } else {
                classify("DescribeKey", &e).into()
            }
        })?;
        let arn =
            described.key_metadata.as_ref().and_then(|m| m.arn.clone()).ok_or_else(|| {
                Error::from(ProviderError::Denied("AWS KMS did not describe the configured key".into()))
            })?;
        // The key's current material (AWS names it where the key has rotated on demand or had
        // material imported); "1" where AWS does not say.
        let version = described
            .key_metadata
            .as_ref()
            .and_then(|m| m.current_key_material_id())
            .map_or_else(|| "1".to_string(), str::to_string);
        let kek = KekRef { provider: PROVIDER.to_string(), key_id: arn, key_version: version };
        Ok(AwsKms { client, kek })
    }
}

#[async_trait]
impl KeyProvider for AwsKms {
    fn kek(&self) -> &KekRef {
        &self.kek
    }

    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.kek.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(ctx)))
            .send()
            .await
            .map_err(|e| classify("GenerateDataKey", &e))?;
        let kek = self.versioned(out.key_material_id());
        // Into a zeroizing buffer first, so no early return leaves the key in a plain Vec.
        let plaintext = take_key(out.plaintext, "data key")?;
        if out.key_id.as_deref() != Some(self.kek.key_id.as_str()) {
            return Err(ProviderError::Denied("AWS KMS answered GenerateDataKey with another key".into()));
        }
        let wrapped = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        if wrapped.is_empty() {
            return Err(ProviderError::Denied("AWS KMS returned no wrapped data key".into()));
        }
        Ok(GeneratedKey { plaintext, wrapped, kek })
    }

    async fn unwrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        let out = self
            .client
            .decrypt()
            .key_id(&kek.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .set_encryption_context(Some(context_map(ctx)))
            .send()
            .await
            .map_err(|e| classify("Decrypt", &e))?;
        let key = take_key(out.plaintext, "data key")?;
        if out.key_id.as_deref() != Some(kek.key_id.as_str()) {
            return Err(ProviderError::Rejected("AWS KMS answered Decrypt with another key".into()));
        }
        Ok(key)
    }

    async fn wrap(&self, key: &DataKey, ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)> {
        // The SDK takes the plaintext as an owned `Blob` and base64-encodes it into the request
        // body, copies it cannot zeroize (as it does with GenerateDataKey's answer). Only a
        // rotation from another provider or region comes here; AWS to AWS is `ReEncrypt`.
        let out = self
            .client
            .encrypt()
            .key_id(&self.kek.key_id)
            .plaintext(Blob::new(key.expose().to_vec()))
            .set_encryption_context(Some(context_map(ctx)))
            .send()
            .await
            .map_err(|e| classify("Encrypt", &e))?;
        if out.key_id.as_deref() != Some(self.kek.key_id.as_str()) {
            return Err(ProviderError::Denied("AWS KMS answered Encrypt with another key".into()));
        }
        let wrapped = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        if wrapped.is_empty() {
            return Err(ProviderError::Denied("AWS KMS returned no wrapped data key".into()));
        }
        Ok((wrapped, self.kek.clone()))
    }

    async fn reencrypt(
        &self,
        from: &KekRef,
        wrapped: &[u8],
        ctx: &KeyContext,
    ) -> Option<ProviderResult<(Vec<u8>, KekRef)>> {
        // ReEncrypt runs in one region, with this client's credentials: a key elsewhere is moved
        // by unwrapping and wrapping instead.
        if from.provider != PROVIDER || arn_region(&from.key_id) != arn_region(&self.kek.key_id) {
            return None;
        }
        let sent = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .source_key_id(&from.key_id)
            .set_source_encryption_context(Some(context_map(ctx)))
            .destination_key_id(&self.kek.key_id)
            .set_destination_encryption_context(Some(context_map(ctx)))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => return Some(Err(classify("ReEncrypt", &e))),
        };
        if out.key_id.as_deref() != Some(self.kek.key_id.as_str()) {
            return Some(Err(ProviderError::Denied("AWS KMS answered ReEncrypt with another key".into())));
        }
        let kek = self.versioned(out.destination_key_material_id());
        let wrapped = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        if wrapped.is_empty() {
            return Some(Err(ProviderError::Denied("AWS KMS returned no re-encrypted data key".into())));
        }
        Some(Ok((wrapped, kek)))
    }

    async fn rotation_setting(&self) -> ProviderResult<Option<ProviderRotation>> {
        let out = self
            .client
            .get_key_rotation_status()
            .key_id(&self.kek.key_id)
            .send()
            .await
            .map_err(|e| classify("GetKeyRotationStatus", &e))?;
        Ok(Some(ProviderRotation {
            enabled: out.key_rotation_enabled(),
            period_days: out.rotation_period_in_days().map(i64::from),
            next_rotation_ms: out.next_rotation_date().and_then(|d| d.to_millis().ok()),
            min_decryption_version: None,
        }))
    }
}

impl AwsKms {
    /// This key at the material AWS says it used (`KeyMaterialId`), or at its current version
    /// where AWS does not say.
    fn versioned(&self, material: Option<&str>) -> KekRef {
        match material {
            Some(m) if !m.is_empty() => KekRef { key_version: m.to_string(), ..self.kek.clone() },
            _ => self.kek.clone(),
        }
    }
}

/// The region of a key ARN (`arn:aws:kms:<region>:<account>:key/<id>`), if it is one.
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) => Some(region),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn kms_codes_map_to_rejected_denied_or_unavailable() {
        use aws_sdk_kms::error::ErrorMetadata;
        use aws_sdk_kms::operation::decrypt::DecryptError;
        let err = |code: &str| {
            SdkError::<DecryptError, ()>::service_error(
                DecryptError::generic(ErrorMetadata::builder().code(code).build()),
                (),
            )
        };
        // A changed blob, or one of another key: the seam reports these as ERR_TAMPERED.
        for code in ["InvalidCiphertextException", "IncorrectKeyException"] {
            assert!(matches!(classify("Decrypt", &err(code)), ProviderError::Rejected(_)), "{code}");
        }
        for code in ["AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException"] {
            assert!(matches!(classify("Decrypt", &err(code)), ProviderError::Denied(_)), "{code}");
        }
        for code in ["ThrottlingException", "KMSInternalException", "DependencyTimeoutException"] {
            assert!(matches!(classify("Decrypt", &err(code)), ProviderError::Unavailable(_)), "{code}");
        }
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        assert!(check_endpoint("https://kms.eu-west-1.amazonaws.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(check_endpoint("http://localhost:4566").is_ok());
        assert!(check_endpoint("http://[::1]:4566").is_ok());
        for bad in ["http://10.0.0.5:4566", "http://kms.example.com", "ftp://127.0.0.1", "not a url"] {
            let e = check_endpoint(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidInput);
            assert_eq!(e.path.as_deref(), Some("kms.endpoint"));
        }
    }
}
