//! HashiCorp Vault / OpenBao Transit: a derived Transit key (`derived: true`) wraps each data key,
//! with the key context (environment and walletId) as the derivation `context`, so Transit itself
//! refuses a data key asked for on behalf of another wallet. New data keys come from
//! `datakey/plaintext`, unwraps are `decrypt`, a move to the key's newer version is `rewrap`
//! (the data key never leaves Transit), a move from another provider is `encrypt`. The version
//! Transit used (`vault:vN:`) is recorded per row; `keyStatus` reports the key's
//! `min_decryption_version` and automatic rotation period.
//!
//! The connection is TLS 1.3 only (rustls, aws-lc-rs), to the system's roots or to the CA file
//! given; plain http is accepted on a loopback address only (a dev server), as for the AWS
//! endpoint and the database. Retries (connection failures, 429, 5xx) are bounded, exponential
//! and jittered (`backon`); every attempt has the configured deadline.
//!
//! A client crate (`vaultrs`) was considered: it builds its own HTTP client, with no way to
//! require TLS 1.3 or to keep its token out of `Debug`, so this speaks the four Transit calls it
//! needs over `reqwest` itself.

use super::{check_transport, GeneratedKey, KeyContext, KeyProvider, ProviderError, ProviderResult, ProviderRotation};
use crate::envelope::KekRef;
use crate::error::{Error, Result};
use crate::secret::{DataKey, SecretBuf};
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const PROVIDER: &str = "transit";
pub const DEFAULT_MOUNT: &str = "transit";
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Key types a data key may be wrapped with (authenticated encryption, 256-bit keys).
const KEY_TYPES: [&str; 2] = ["aes256-gcm96", "chacha20-poly1305"];

/// How the vault authenticates to Transit.
#[derive(Clone)]
pub enum TransitAuth {
    /// A token (`X-Vault-Token`), from the option or `VAULT_TOKEN` / `BAO_TOKEN`.
    Token(Zeroizing<String>),
    /// AppRole login (`auth/<mount>/login`); the token it returns is renewed by logging in again
    /// when its lease runs out or Transit refuses it.
    AppRole { role_id: String, secret_id: Zeroizing<String>, mount: String },
}

impl std::fmt::Debug for TransitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransitAuth::Token(_) => f.write_str("Token(..)"),
            TransitAuth::AppRole { role_id, mount, .. } => {
                write!(f, "AppRole {{ role_id: {role_id}, mount: {mount}, .. }}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct TransitConfig {
    /// `https://vault.example:8200`, or `http://` on a loopback address only.
    pub address: String,
    pub key_name: String,
    /// The Transit mount path (default `transit`).
    pub mount: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    pub auth: TransitAuth,
    /// PEM file of the CA(s) to trust instead of the system's roots (a private CA).
    pub ca_file: Option<String>,
    /// Deadline for one attempt.
    pub timeout: Duration,
    /// Attempts per operation (1 = no retry).
    pub max_attempts: u32,
}

/// A token and when to stop using it.
struct Session {
    token: Zeroizing<String>,
    /// `None`: no expiry known (a static token).
    until: Option<Instant>,
}

pub struct TransitKms {
    http: reqwest::Client,
    config: TransitConfig,
    /// `{address}/v1/{mount}`.
    base: String,
    session: RwLock<Option<Arc<Session>>>,
    kek: KekRef,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for TransitKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransitKms {{ key_id: {}, auth: {:?} }}", self.kek.key_id, self.config.auth)
    }
}

/// What went wrong with one HTTP exchange, before it is given a meaning by the operation.
#[derive(Debug)]
enum Failure {
    /// No answer: connection refused, timeout (retryable).
    Transport(String),
    /// The TLS handshake failed: an untrusted certificate, no TLS 1.3 (not retried: it would
    /// fail the same way).
    Tls(String),
    /// An answer with a status and Transit's `errors`.
    Status(u16, String),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Tls(_) => false,
            Failure::Status(s, _) => *s == 429 || *s >= 500,
        }
    }
}

#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

#[derive(Deserialize)]
struct KeyInfo {
    #[serde(rename = "type")]
    key_type: String,
    derived: bool,
    latest_version: i64,
    min_decryption_version: i64,
    #[serde(default)]
    auto_rotate_period: i64,
}

#[derive(Deserialize)]
struct Wrapped {
    ciphertext: String,
}

#[derive(Deserialize)]
struct WithPlaintext {
    ciphertext: Option<String>,
    plaintext: String,
}

#[derive(Deserialize)]
struct Login {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    lease_duration: u64,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

/// The version a Transit ciphertext names (`vault:v3:...` is "3").
pub fn ciphertext_version(ciphertext: &str) -> Option<&str> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (v, _) = rest.split_once(':')?;
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then_some(v)
}

/// A TLS 1.3-only client configuration: the CA file's certificates, or the system's roots.
fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(path).and_then(|i| i.collect::<std::result::Result<_, _>>()).map_err(
                    |e| Error::invalid("kms.caFile", format!("cannot read the PEM certificates in {path}: {e}")),
                )?;
            if certs.is_empty() {
                return Err(Error::invalid("kms.caFile", format!("{path} holds no certificate")));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| Error::invalid("kms.caFile", format!("a certificate in {path} is not usable: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as every rustls client does.
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::invalid("kms", format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// rustls's error somewhere in a chain. It arrives inside io::Errors (nested), whose `source()`
/// skips the error they wrap, so those are opened with `get_ref`.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        return tls_error(inner);
    }
    e.source().and_then(tls_error)
}

/// A transport error said plainly: TLS 1.3 refused, a certificate not trusted, or no answer.
fn transport(e: &reqwest::Error) -> Failure {
    if let Some(tls) = tls_error(e) {
        return Failure::Tls(match tls {
            rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
                "the Transit server does not offer TLS 1.3, which sharevault requires on KMS connections".to_string()
            }
            rustls::Error::InvalidCertificate(c) => {
                format!("the Transit server's certificate is not trusted ({c:?}); set kms.caFile to its CA")
            }
            other => format!("TLS with the Transit server failed: {other}"),
        });
    }
    if e.is_timeout() {
        return Failure::Transport("Transit did not answer in time".into());
    }
    // The innermost cause says most (connection refused, a name that does not resolve).
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Failure::Transport(format!("Transit could not be reached: {cause}"))
}

/// Transit's first error message, shortened (it names keys and paths, never key material).
fn first_error(body: &[u8]) -> String {
    let errors = serde_json::from_slice::<Errors>(body).map(|e| e.errors).unwrap_or_default();
    let mut m = errors.into_iter().next().unwrap_or_default();
    m.truncate(200);
    m
}

/// What a failed call means. `unwrapping`: the call opened a ciphertext the seam already checked
/// names this trusted key, so Transit refusing its bytes (400) means they were changed or made for
/// another context, unless Transit says the key or that version of it is withheld (then denied).
fn meaning(key: &str, what: &str, f: Failure, unwrapping: bool) -> ProviderError {
    match f {
        Failure::Transport(m) | Failure::Tls(m) => ProviderError::Unavailable(m),
        Failure::Status(s, m) if s == 429 || s >= 500 => {
            ProviderError::Unavailable(format!("Transit {what} with key {key}: HTTP {s}: {m}"))
        }
        Failure::Status(400, m)
            if unwrapping && !m.contains("key not found") && !m.contains("disallowed by policy") =>
        {
            ProviderError::Rejected(format!("Transit refused the ciphertext: {m}"))
        }
        Failure::Status(s, m) => {
            ProviderError::Denied(format!("Transit refused {what} with key {key} (HTTP {s}): {m}"))
        }
    }
}

impl TransitKms {
    /// Builds the client, authenticates, and reads the key: it must exist, be derived (so the
    /// context binds each data key to its wallet) and be an authenticated-encryption key.
    pub async fn connect(config: TransitConfig, stats: Arc<Stats>) -> Result<TransitKms> {
        check_transport(&config.address, "kms.address")?;
        let name_ok =
            |s: &str| !s.is_empty() && s.len() <= 256 && !s.contains(['/', '?', '#', '%']) && !s.contains("..");
        if !name_ok(&config.key_name) {
            return Err(Error::invalid("kms.keyName", "must be a Transit key name (no '/', '?', '#', '%' or '..')"));
        }
        let mount = config.mount.trim_matches('/');
        if mount.is_empty() || mount.split('/').any(|p| !name_ok(p)) {
            return Err(Error::invalid("kms.mount", "must be a mount path such as 'transit'"));
        }
        if let Some(ns) = &config.namespace {
            if ns.trim_matches('/').split('/').any(|p| !name_ok(p)) {
                return Err(Error::invalid("kms.namespace", "must be a namespace path such as 'team/wallets'"));
            }
        }
        super::check_retries(config.max_attempts, config.timeout)?;
        if let TransitAuth::Token(t) = &config.auth {
            if t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(Error::invalid("kms.token", "must be a Vault token (or set VAULT_TOKEN)"));
            }
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(config.ca_file.as_deref())?)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(3)))
            // A redirect would carry the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::invalid("kms", format!("the HTTP client could not be built: {e}")))?;
        let address = config.address.trim_end_matches('/').to_string();
        let base = format!("{address}/v1/{mount}");
        let origin = url::Url::parse(&address).map(|u| u.origin().ascii_serialization()).unwrap_or(address.clone());
        let ns = config.namespace.as_deref().map(|n| format!("{}/", n.trim_matches('/'))).unwrap_or_default();
        let key_id = format!("{origin}/{ns}{mount}/{}", config.key_name);
        let mut kms = TransitKms {
            http,
            base,
            session: RwLock::new(None),
            kek: KekRef { provider: PROVIDER.to_string(), key_id, key_version: String::new() },
            config,
            stats,
        };
        let info = kms.key_info().await.map_err(|e| match e {
            ProviderError::Rejected(m) => Error::from(ProviderError::Denied(m)),
            other => Error::from(other),
        })?;
        if !info.derived {
            return Err(Error::invalid(
                "kms.keyName",
                "the Transit key is not derived: create it with derived=true, so the context binds each data key to its wallet",
            ));
        }
        if !KEY_TYPES.contains(&info.key_type.as_str()) {
            return Err(Error::invalid(
                "kms.keyName",
                format!("the Transit key is of type {}; it must be one of {}", info.key_type, KEY_TYPES.join(", ")),
            ));
        }
        kms.kek.key_version = info.latest_version.to_string();
        Ok(kms)
    }

    fn session(&self) -> Option<Arc<Session>> {
        let s = self.session.read().unwrap_or_else(PoisonError::into_inner);
        s.as_ref().filter(|s| s.until.is_none_or(|u| Instant::now() < u)).cloned()
    }

    /// The token to send: the configured one, or an AppRole login's while its lease lasts.
    async fn token(&self, renew: bool) -> ProviderResult<Arc<Session>> {
        if !renew {
            if let Some(s) = self.session() {
                return Ok(s);
            }
        }
        let session = match &self.config.auth {
            TransitAuth::Token(t) => Session { token: t.clone(), until: None },
            TransitAuth::AppRole { role_id, secret_id, mount } => {
                let url =
                    format!("{}/v1/auth/{}/login", self.config.address.trim_end_matches('/'), mount.trim_matches('/'));
                let body = Zeroizing::new(
                    serde_json::to_vec(&json!({ "role_id": role_id, "secret_id": secret_id.as_str() }))
                        .unwrap_or_default(),
                );
                let answer = self.send(&url, None, Some(body)).await.map_err(|f| match f {
                    Failure::Transport(m) | Failure::Tls(m) => ProviderError::Unavailable(m),
                    Failure::Status(s, m) if s == 429 || s >= 500 => {
                        ProviderError::Unavailable(format!("AppRole login: HTTP {s}: {m}"))
                    }
                    Failure::Status(s, m) => ProviderError::Denied(format!("AppRole login refused (HTTP {s}): {m}")),
                })?;
                let login: Login = serde_json::from_slice(&answer)
                    .map_err(|_| ProviderError::Denied("the AppRole login answer has no token".into()))?;
                let lease = Duration::from_secs(login.auth.lease_duration);
                // Renewed at four fifths of the lease, so a call never carries a token about to lapse.
                let until = (!lease.is_zero()).then(|| Instant::now() + lease.mul_f64(0.8));
                Session { token: Zeroizing::new(login.auth.client_token), until }
            }
        };
        let session = Arc::new(session);
        *self.session.write().unwrap_or_else(PoisonError::into_inner) = Some(session.clone());
        Ok(session)
    }

    /// One HTTP exchange (GET without a body, POST with one); the answer's body on 2xx.
    async fn send(
        &self,
        url: &str,
        token: Option<&str>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, Failure> {
        let attempt = || async {
            bump(&self.stats.kms_attempts);
            let mut req = match &body {
                Some(b) => self.http.post(url).header("content-type", "application/json").body(b.to_vec()),
                None => self.http.get(url),
            };
            if let Some(t) = token {
                let mut v = reqwest::header::HeaderValue::from_str(t)
                    .map_err(|_| Failure::Status(403, "the token is not a header value".into()))?;
                v.set_sensitive(true);
                req = req.header("X-Vault-Token", v);
            }
            if let Some(ns) = &self.config.namespace {
                req = req.header("X-Vault-Namespace", ns.trim_matches('/'));
            }
            let resp = req.send().await.map_err(|e| transport(&e))?;
            let status = resp.status().as_u16();
            // Sized up front, so growing it leaves no copy of a data key behind (answers are small).
            let size = resp.content_length().map_or(16 * 1024, |n| n.min(1 << 20) as usize);
            let mut out = Zeroizing::new(Vec::with_capacity(size));
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
                out.extend_from_slice(&chunk);
            }
            if (200..300).contains(&status) {
                Ok(out)
            } else {
                Err(Failure::Status(status, first_error(&out)))
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(self.config.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        attempt.retry(backoff).when(Failure::retryable).await
    }

    /// A Transit call on this key (`op` is `keys`, `decrypt`, ...), with a token, logging in again
    /// once when AppRole's token is refused.
    async fn call(
        &self,
        op: &str,
        body: Option<serde_json::Value>,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, Failure> {
        let url = format!("{}/{op}/{}", self.base, self.config.key_name);
        let body = body.map(|b| Zeroizing::new(serde_json::to_vec(&b).unwrap_or_default()));
        let mut renewed = false;
        loop {
            let session = self.token(renewed).await.map_err(|e| match e {
                ProviderError::Unavailable(m) => Failure::Transport(m),
                ProviderError::Denied(m) | ProviderError::Rejected(m) | ProviderError::Invalid(_, m) => {
                    Failure::Status(403, m)
                }
            })?;
            match self.send(&url, Some(&session.token), body.clone()).await {
                Err(Failure::Status(403, _)) if !renewed && matches!(self.config.auth, TransitAuth::AppRole { .. }) => {
                    renewed = true
                }
                other => return other,
            }
        }
    }

    async fn key_info(&self) -> ProviderResult<KeyInfo> {
        bump(&self.stats.kms_describe);
        let body = self.call("keys", None).await.map_err(|f| self.refused("reading the key", f, false))?;
        let info: Answer<KeyInfo> = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Denied("Transit's answer about the key is not what it documents".into()))?;
        Ok(info.data)
    }

    fn refused(&self, what: &str, f: Failure, unwrapping: bool) -> ProviderError {
        meaning(&self.config.key_name, what, f, unwrapping)
    }

    fn context(ctx: &KeyContext) -> String {
        B64.encode(ctx.to_bytes())
    }

    /// This key at the version a ciphertext names.
    fn versioned(&self, ciphertext: &str) -> ProviderResult<KekRef> {
        let v = ciphertext_version(ciphertext).ok_or_else(|| {
            ProviderError::Denied("Transit returned a ciphertext without its vault:vN: prefix".into())
        })?;
        Ok(KekRef { key_version: v.to_string(), ..self.kek.clone() })
    }

    fn take_plaintext(b64: &str) -> ProviderResult<DataKey> {
        let bytes = SecretBuf::from_vec(
            B64.decode(b64)
                .map_err(|_| ProviderError::Denied("Transit returned a data key that is not base64".into()))?,
        );
        DataKey::from_slice(bytes.as_slice())
            .ok_or_else(|| ProviderError::Denied("Transit returned a data key of the wrong length".into()))
    }
}

#[async_trait]
impl KeyProvider for TransitKms {
    fn kek(&self) -> &KekRef {
        &self.kek
    }

    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey> {
        let body = self
            .call("datakey/plaintext", Some(json!({ "context": Self::context(ctx), "bits": 256 })))
            .await
            .map_err(|f| self.refused("making a data key", f, false))?;
        let answer: Answer<WithPlaintext> = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Denied("Transit's data key answer is not what it documents".into()))?;
        let plaintext = Self::take_plaintext(&Zeroizing::new(answer.data.plaintext))?;
        let wrapped = answer
            .data
            .ciphertext
            .ok_or_else(|| ProviderError::Denied("Transit returned no wrapped data key".into()))?;
        Ok(GeneratedKey { plaintext, kek: self.versioned(&wrapped)?, wrapped: wrapped.into_bytes() })
    }

    async fn unwrap(&self, kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        let ciphertext = std::str::from_utf8(wrapped)
            .map_err(|_| ProviderError::Rejected("the wrapped data key is not a Transit ciphertext".into()))?;
        // The row's recorded version and the ciphertext's own must agree (both are the record's).
        if ciphertext_version(ciphertext) != Some(kek.key_version.as_str()) {
            return Err(ProviderError::Rejected(
                "the wrapped data key does not name the key version its record does".into(),
            ));
        }
        let body = self
            .call("decrypt", Some(json!({ "ciphertext": ciphertext, "context": Self::context(ctx) })))
            .await
            .map_err(|f| self.refused("unwrapping a data key", f, true))?;
        let answer: Answer<WithPlaintext> = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Denied("Transit's decrypt answer is not what it documents".into()))?;
        Self::take_plaintext(&Zeroizing::new(answer.data.plaintext))
    }

    async fn wrap(&self, key: &DataKey, ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)> {
        // The request body holds the data key in base64; reqwest and hyper copy it into buffers
        // this process cannot zeroize (as the AWS SDK does). Only a move from another provider
        // comes here; Transit to Transit is `rewrap`.
        let plaintext = Zeroizing::new(B64.encode(key.expose()));
        let body = self
            .call("encrypt", Some(json!({ "plaintext": plaintext.as_str(), "context": Self::context(ctx) })))
            .await
            .map_err(|f| self.refused("wrapping a data key", f, false))?;
        let answer: Answer<Wrapped> = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Denied("Transit's encrypt answer is not what it documents".into()))?;
        Ok((answer.data.ciphertext.clone().into_bytes(), self.versioned(&answer.data.ciphertext)?))
    }

    async fn reencrypt(
        &self,
        from: &KekRef,
        wrapped: &[u8],
        ctx: &KeyContext,
    ) -> Option<ProviderResult<(Vec<u8>, KekRef)>> {
        // `rewrap` moves a ciphertext to the newest version of its own key, inside Transit.
        if !from.same_key(&self.kek) {
            return None;
        }
        let Ok(ciphertext) = std::str::from_utf8(wrapped) else {
            return Some(Err(ProviderError::Rejected("the wrapped data key is not a Transit ciphertext".into())));
        };
        if ciphertext_version(ciphertext) != Some(from.key_version.as_str()) {
            return Some(Err(ProviderError::Rejected(
                "the wrapped data key does not name the key version its record does".into(),
            )));
        }
        let answer = self
            .call("rewrap", Some(json!({ "ciphertext": ciphertext, "context": Self::context(ctx) })))
            .await
            .map_err(|f| self.refused("rewrapping a data key", f, true))
            .and_then(|body| {
                serde_json::from_slice::<Answer<Wrapped>>(&body)
                    .map_err(|_| ProviderError::Denied("Transit's rewrap answer is not what it documents".into()))
            });
        Some(answer.and_then(|a| Ok((a.data.ciphertext.clone().into_bytes(), self.versioned(&a.data.ciphertext)?))))
    }

    async fn rotation_setting(&self) -> ProviderResult<Option<ProviderRotation>> {
        let info = self.key_info().await?;
        Ok(Some(ProviderRotation {
            enabled: info.auto_rotate_period > 0,
            period_days: (info.auto_rotate_period > 0).then_some(info.auto_rotate_period / 86_400),
            next_rotation_ms: None,
            min_decryption_version: Some(info.min_decryption_version.to_string()),
        }))
    }

    fn close(&self) {
        self.session.write().unwrap_or_else(PoisonError::into_inner).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_prefix_only() {
        assert_eq!(ciphertext_version("vault:v1:abc"), Some("1"));
        assert_eq!(ciphertext_version("vault:v12:abc"), Some("12"));
        for bad in ["vault:v:abc", "vault:vx:abc", "vault:v1", "v1:abc", "", "vault:v-1:abc"] {
            assert_eq!(ciphertext_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_shows_no_token_or_secret_id() {
        let auth = TransitAuth::AppRole {
            role_id: "role".into(),
            secret_id: Zeroizing::new("s3cret-id".into()),
            mount: "approle".into(),
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert_eq!(format!("{:?}", TransitAuth::Token(Zeroizing::new("hvs.secret".into()))), "Token(..)");
    }

    #[test]
    fn a_refused_ciphertext_is_rejected_but_a_withheld_key_is_denied_and_an_outage_unavailable() {
        let m = |status: u16, text: &str, unwrapping: bool| {
            meaning("k", "op", Failure::Status(status, text.into()), unwrapping)
        };
        assert!(matches!(m(400, "cipher: message authentication failed", true), ProviderError::Rejected(_)));
        assert!(matches!(m(400, "invalid ciphertext: version is too new", true), ProviderError::Rejected(_)));
        assert!(matches!(m(400, "encryption key not found", true), ProviderError::Denied(_)));
        assert!(matches!(
            m(400, "ciphertext or signature version is disallowed by policy (too old)", true),
            ProviderError::Denied(_)
        ));
        // Nothing was opened (a data key asked for, an encrypt): a 400 is a refusal, not tampering.
        assert!(matches!(m(400, "cipher: message authentication failed", false), ProviderError::Denied(_)));
        for s in [401, 403, 404] {
            assert!(matches!(m(s, "permission denied", true), ProviderError::Denied(_)), "{s}");
        }
        for s in [429, 500, 503] {
            assert!(matches!(m(s, "Vault is sealed", true), ProviderError::Unavailable(_)), "{s}");
        }
        assert!(matches!(
            meaning("k", "op", Failure::Transport("refused".into()), true),
            ProviderError::Unavailable(_)
        ));
    }
}
