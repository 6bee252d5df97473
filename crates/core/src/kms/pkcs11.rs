//! A PKCS#11 token (an HSM, or SoftHSM for tests): a non-extractable AES-256 key on the token wraps
//! each data key with `CKM_AES_GCM`, the key context (environment and walletId) as the associated
//! data, so the token itself refuses a data key moved to another wallet. The data key is made here
//! (the OS's CSPRNG, in locked memory) and wrapped by the token; it never leaves this process
//! otherwise.
//!
//! The module is loaded and `C_Initialize`d once per process (however many vaults use it); each
//! operation takes a session of its own from a pool (a `Session` is `Send`, not `Sync`) and runs
//! on a blocking thread, never on a runtime worker. A session the token dropped (a restart, a
//! removed device) is replaced, logged in again, and the operation tried once more.

use super::{GeneratedKey, KeyContext, KeyProvider, ProviderError, ProviderResult};
use crate::envelope::{random_nonce, KekRef};
use crate::error::{Error, Result};
use crate::secret::{DataKey, SecretBuf};
use crate::stats::{bump, Stats};
use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

pub const PROVIDER: &str = "pkcs11";
/// The environment variable read for the PIN when the option has none.
pub const PIN_VARIABLE: &str = "SHAREVAULT_PKCS11_PIN";
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse (more may be open while more operations run at once).
const IDLE_SESSIONS: usize = 8;

/// Which token: by its label, or by slot id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    Label(String),
    Slot(u64),
}

#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: String,
    pub token: TokenRef,
    /// `CKA_LABEL` of the AES-256 key on the token.
    pub key_label: String,
    /// The user PIN (from the option or `SHAREVAULT_PKCS11_PIN`).
    pub pin: AuthPin,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pkcs11Config {{ module: {}, token: {:?}, key_label: {}, pin: .. }}",
            self.module, self.token, self.key_label
        )
    }
}

/// One initialized context per module path, for the life of the process: a second
/// `C_Initialize` fails (SoftHSM), and `C_Finalize` would pull the token from under every other
/// vault using it.
fn context(module: &str) -> std::result::Result<Pkcs11, ProviderError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<String, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = contexts.get(module) {
        return Ok(c.clone());
    }
    let ctx = Pkcs11::new(module)
        .map_err(|e| ProviderError::Invalid("kms.module", format!("cannot load the PKCS#11 module {module}: {e}")))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ProviderError::Unavailable(format!("the PKCS#11 module did not initialize: {e}"))),
    }
    contexts.insert(module.to_string(), ctx.clone());
    Ok(ctx)
}

/// What a PKCS#11 failure means outside an unwrap: a PIN or a key refused is denied; a device,
/// token or session gone is unavailable.
fn classify(what: &str, e: &CkError) -> ProviderError {
    let rv = match e {
        CkError::Pkcs11(rv, _) => *rv,
        other => return ProviderError::Unavailable(format!("PKCS#11 {what}: {other}")),
    };
    match rv {
        RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinLocked
        | RvError::PinExpired
        | RvError::UserPinNotInitialized
        | RvError::KeyHandleInvalid
        | RvError::KeyFunctionNotPermitted
        | RvError::KeyTypeInconsistent
        | RvError::MechanismInvalid
        | RvError::UserNotLoggedIn => ProviderError::Denied(format!("the token refused {what}: {rv:?}")),
        _ => ProviderError::Unavailable(format!("the token could not {what}: {rv:?}")),
    }
}

/// Whether a failure means the session (or the login) is gone, so a fresh one may succeed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// A failure of the token itself (not of the data it was given).
fn device_failure(e: &CkError) -> bool {
    session_lost(e)
        || matches!(
            e,
            CkError::Pkcs11(
                RvError::DeviceError
                    | RvError::DeviceMemory
                    | RvError::HostMemory
                    | RvError::TokenNotRecognized
                    | RvError::FunctionCanceled
                    | RvError::PinIncorrect
                    | RvError::PinLocked
                    | RvError::KeyHandleInvalid,
                _
            )
        )
        || !matches!(e, CkError::Pkcs11(..))
}

/// A token of a module: (module path, slot id).
type TokenOf = (String, u64);

/// Logs `session` in. PKCS#11 logs in the application, not a session: a second login answers
/// "already logged in" whatever PIN it gives, so a vault configured with another PIN would ride
/// on the first one's login. The process keeps the SHA-256 of the PIN each token was logged in
/// with (under one lock with the login itself, so no login can slip between the two) and refuses
/// another; a token logged in by something else in the process, whose PIN it cannot check, too.
///
/// The token logs the application out when its last session closes (a vault closing, the pool
/// dropping a session), which would pull the login from under every other vault between its
/// login and its next call: a session per token is opened first and kept for the process's life.
fn login(ctx: &Pkcs11, session: &Session, module: &str, slot: Slot, pin: &AuthPin) -> std::result::Result<(), CkError> {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    static PINS: OnceLock<Mutex<HashMap<TokenOf, [u8; 32]>>> = OnceLock::new();
    static KEEPERS: OnceLock<Mutex<HashMap<TokenOf, Session>>> = OnceLock::new();
    let digest: [u8; 32] = Sha256::digest(pin.expose_secret().as_bytes()).into();
    let mut pins = PINS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    let token = (module.to_string(), slot.id());
    {
        let mut keepers = KEEPERS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
        if !keepers.contains_key(&token) {
            keepers.insert(token.clone(), ctx.open_ro_session(slot)?);
        }
    }
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {
            pins.insert(token, digest);
            Ok(())
        }
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, f)) => match pins.get(&token) {
            Some(known) if bool::from(known.ct_eq(&digest)) => Ok(()),
            _ => Err(CkError::Pkcs11(RvError::PinIncorrect, f)),
        },
        Err(e) => Err(e),
    }
}

/// Held while a session is opened and logged in, and while a connecting vault checks its key.
static OPENING: Mutex<()> = Mutex::new(());

struct Inner {
    module: String,
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    key_label: String,
    /// Idle sessions, logged in.
    idle: Mutex<Vec<(Session, ObjectHandle)>>,
    stats: Arc<Stats>,
}

pub struct Pkcs11Kms {
    inner: Arc<Inner>,
    kek: KekRef,
}

impl std::fmt::Debug for Pkcs11Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Kms {{ key_id: {} }}", self.kek.key_id)
    }
}

impl Inner {
    /// A new session, logged in, and the key's handle in it (handles are per session). Opening,
    /// logging in and finding the key are rare (a vault's open, a lost session) and serialized in
    /// the process.
    fn open(&self) -> std::result::Result<(Session, ObjectHandle), CkError> {
        let _one_at_a_time = OPENING.lock().unwrap_or_else(PoisonError::into_inner);
        self.open_locked()
    }

    /// [`Inner::open`] with the lock held, tried up to three times while the token answers
    /// CKR_GENERAL_ERROR (SoftHSM 2.6 did, to about one connect in fifteen, while other sessions
    /// of the module were busy; never in serial runs).
    fn open_locked(&self) -> std::result::Result<(Session, ObjectHandle), CkError> {
        let mut tries = 0;
        loop {
            match self.open_once() {
                Err(CkError::Pkcs11(RvError::GeneralError, _)) if tries < 2 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(&self) -> std::result::Result<(Session, ObjectHandle), CkError> {
        let session = self.ctx.open_rw_session(self.slot)?;
        login(&self.ctx, &session, &self.module, self.slot, &self.pin)?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let found = session.find_objects(&template)?;
        match found[..] {
            [key] => Ok((session, key)),
            // Said by the caller (connect) with the label; here only "not one key".
            _ => Err(CkError::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::FindObjects)),
        }
    }

    /// Runs `op` in a session of the pool; a session the token dropped is replaced once.
    fn with_session<T>(
        &self,
        op: impl Fn(&Session, ObjectHandle) -> std::result::Result<T, CkError>,
    ) -> std::result::Result<T, CkError> {
        let mut retried = false;
        loop {
            bump(&self.stats.kms_attempts);
            let taken = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let (session, key) = match taken {
                Some(s) => s,
                None => self.open()?,
            };
            match op(&session, key) {
                Err(e) if session_lost(&e) && !retried => {
                    // Dropped, not returned: a new session (and login) next time round.
                    retried = true;
                }
                result => {
                    let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                    if idle.len() < IDLE_SESSIONS && result.as_ref().map_or_else(|e| !session_lost(e), |_| true) {
                        idle.push((session, key));
                    }
                    return result;
                }
            }
        }
    }
}

fn gcm_encrypt(
    session: &Session,
    key: ObjectHandle,
    aad: &[u8],
    plaintext: &[u8],
) -> std::result::Result<Vec<u8>, CkError> {
    let mut iv = random_nonce();
    let ct = session.encrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, aad, TAG_BITS.into())?), key, plaintext)?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

impl Pkcs11Kms {
    /// Loads the module (once per process), finds the token and logs in, and checks the key: one
    /// AES-256 secret key with that label, that encrypts and decrypts, and that cannot leave the
    /// token (`CKA_EXTRACTABLE` false, `CKA_SENSITIVE` true).
    pub async fn connect(config: Pkcs11Config, stats: Arc<Stats>) -> Result<Pkcs11Kms> {
        if config.key_label.is_empty() || config.key_label.len() > 256 {
            return Err(Error::invalid("kms.keyLabel", "must be the label of the key on the token"));
        }
        tokio::task::spawn_blocking(move || Self::connect_blocking(config, stats))
            .await
            .map_err(|_| Error::internal("the PKCS#11 connect task failed"))?
    }

    fn connect_blocking(config: Pkcs11Config, stats: Arc<Stats>) -> Result<Pkcs11Kms> {
        let ctx = context(&config.module)?;
        let slots = ctx.get_slots_with_token().map_err(|e| Error::from(classify("list its slots", &e)))?;
        let mut chosen = None;
        for slot in slots {
            let found = match &config.token {
                TokenRef::Slot(id) => slot.id() == *id,
                TokenRef::Label(label) => ctx.get_token_info(slot).is_ok_and(|t| t.label() == label),
            };
            if found {
                chosen = Some(slot);
                break;
            }
        }
        let Some(slot) = chosen else {
            let (path, what) = match &config.token {
                TokenRef::Label(l) => ("kms.tokenLabel", format!("no token labelled {l:?} in the module")),
                TokenRef::Slot(s) => ("kms.slot", format!("no slot {s} with a token in the module")),
            };
            return Err(Error::from(ProviderError::Denied(format!("{what} ({path})"))));
        };
        let token_label = ctx.get_token_info(slot).map(|t| t.label().to_string()).unwrap_or_default();
        let inner = Arc::new(Inner {
            module: config.module.clone(),
            ctx,
            slot,
            pin: config.pin,
            key_label: config.key_label.clone(),
            idle: Mutex::new(Vec::new()),
            stats: stats.clone(),
        });
        bump(&stats.kms_describe);
        let opening = OPENING.lock().unwrap_or_else(PoisonError::into_inner);
        const DESCRIBED: [AttributeType; 6] = [
            AttributeType::ValueLen,
            AttributeType::Extractable,
            AttributeType::Sensitive,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Private,
        ];
        // The same transient CKR_GENERAL_ERROR as in `open_locked` reaches the attribute read too.
        let mut tries = 0;
        let (session, key, attrs) = loop {
            let described = inner.open_locked().and_then(|(s, k)| s.get_attributes(k, &DESCRIBED).map(|a| (s, k, a)));
            match described {
                Err(CkError::Pkcs11(RvError::GeneralError, _)) if tries < 2 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(CkError::Pkcs11(RvError::KeyHandleInvalid, _)) => {
                    return Err(Error::from(ProviderError::Denied(format!(
                        "the token {token_label:?} holds no single AES key labelled {:?}",
                        config.key_label
                    ))))
                }
                Err(e) => return Err(Error::from(classify("log in and find the key", &e))),
                Ok(d) => break d,
            }
        };
        let mut ok = (false, false, false, false, false, false);
        for a in attrs {
            match a {
                Attribute::ValueLen(n) => ok.0 = usize::from(n) == 32,
                Attribute::Extractable(b) => ok.1 = !b,
                Attribute::Sensitive(b) => ok.2 = b,
                Attribute::Encrypt(b) => ok.3 = b,
                Attribute::Decrypt(b) => ok.4 = b,
                Attribute::Private(b) => ok.5 = b,
                _ => {}
            }
        }
        drop(opening);
        let refuse = |m: &str| Err(Error::invalid("kms.keyLabel", format!("the key {:?} {m}", config.key_label)));
        if !ok.0 {
            return refuse("is not an AES-256 key");
        }
        if !(ok.1 && ok.2) {
            return refuse(
                "can leave the token (CKA_EXTRACTABLE or not CKA_SENSITIVE): make it non-extractable and sensitive",
            );
        }
        if !ok.5 {
            return refuse("can be used without logging in (not CKA_PRIVATE): make it private");
        }
        if !(ok.3 && ok.4) {
            return refuse("is not allowed to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)");
        }
        let gcm = inner
            .ctx
            .get_mechanism_list(slot)
            .map_err(|e| Error::from(classify("list its mechanisms", &e)))?
            .contains(&MechanismType::AES_GCM);
        if !gcm {
            return Err(Error::invalid(
                "kms.module",
                "the token does not offer CKM_AES_GCM, which sharevault wraps data keys with",
            ));
        }
        inner.idle.lock().unwrap_or_else(PoisonError::into_inner).push((session, key));
        let key_id = format!("token={token_label};object={}", config.key_label);
        Ok(Pkcs11Kms { inner, kek: KekRef { provider: PROVIDER.to_string(), key_id, key_version: "1".to_string() } })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> ProviderResult<T> + Send + 'static,
    ) -> ProviderResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|_| ProviderError::Unavailable("the PKCS#11 task failed".into()))?
    }

    async fn wrap_key(&self, dek: &DataKey, ctx: &KeyContext) -> ProviderResult<Vec<u8>> {
        // Copied into locked, zeroizing memory for the blocking thread.
        let plain = SecretBuf::from_vec(dek.expose().to_vec());
        let aad = ctx.to_bytes();
        self.blocking(move |inner| {
            inner
                .with_session(|s, key| gcm_encrypt(s, key, &aad, plain.as_slice()))
                .map_err(|e| classify("wrap a data key", &e))
        })
        .await
    }
}

#[async_trait]
impl KeyProvider for Pkcs11Kms {
    fn kek(&self) -> &KekRef {
        &self.kek
    }

    async fn generate(&self, ctx: &KeyContext) -> ProviderResult<GeneratedKey> {
        let plaintext = DataKey::generate();
        let wrapped = self.wrap_key(&plaintext, ctx).await?;
        Ok(GeneratedKey { plaintext, wrapped, kek: self.kek.clone() })
    }

    async fn unwrap(&self, _kek: &KekRef, wrapped: &[u8], ctx: &KeyContext) -> ProviderResult<DataKey> {
        if wrapped.len() != IV_LEN + 32 + 16 {
            return Err(ProviderError::Rejected("the wrapped data key is malformed".into()));
        }
        let (wrapped, aad) = (wrapped.to_vec(), ctx.to_bytes());
        self.blocking(move |inner| {
            let opened = inner.with_session(|s, key| {
                let mut iv = [0u8; IV_LEN];
                iv.copy_from_slice(&wrapped[..IV_LEN]);
                let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
                s.decrypt(&Mechanism::AesGcm(params), key, &wrapped[IV_LEN..]).map(SecretBuf::from_vec)
            });
            match opened {
                Ok(pt) => DataKey::from_slice(pt.as_slice())
                    .ok_or_else(|| ProviderError::Rejected("the data key has the wrong length".into())),
                // The key is trusted and was found, and the token is there: what it refuses is the
                // ciphertext (SoftHSM says CKR_GENERAL_ERROR for a failed tag, others
                // CKR_ENCRYPTED_DATA_INVALID), so it is judged by that, not by the code.
                Err(e) if !device_failure(&e) => {
                    Err(ProviderError::Rejected("the token could not authenticate the wrapped data key".into()))
                }
                Err(e) => Err(classify("unwrap a data key", &e)),
            }
        })
        .await
    }

    async fn wrap(&self, key: &DataKey, ctx: &KeyContext) -> ProviderResult<(Vec<u8>, KekRef)> {
        Ok((self.wrap_key(key, ctx).await?, self.kek.clone()))
    }

    fn close(&self) {
        // Sessions close when dropped; the context stays initialized for other vaults.
        self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn debug_shows_no_pin() {
        let c = Pkcs11Config {
            module: "/m.so".into(),
            token: TokenRef::Label("t".into()),
            key_label: "k".into(),
            pin: AuthPin::from("123456-secret"),
        };
        assert!(!format!("{c:?}").contains("123456"));
    }

    #[test]
    fn a_refused_pin_is_denied_and_a_lost_device_unavailable() {
        let e = |rv| CkError::Pkcs11(rv, Function::Login);
        assert!(matches!(classify("log in", &e(RvError::PinIncorrect)), ProviderError::Denied(_)));
        assert!(matches!(classify("log in", &e(RvError::PinLocked)), ProviderError::Denied(_)));
        for rv in
            [RvError::DeviceRemoved, RvError::TokenNotPresent, RvError::DeviceError, RvError::SessionHandleInvalid]
        {
            assert!(matches!(classify("wrap", &e(rv)), ProviderError::Unavailable(_)), "{rv:?}");
        }
        assert!(session_lost(&e(RvError::SessionHandleInvalid)) && session_lost(&e(RvError::UserNotLoggedIn)));
        // A failed tag (SoftHSM: CKR_GENERAL_ERROR) is not the device failing.
        assert!(!device_failure(&e(RvError::GeneralError)) && !device_failure(&e(RvError::EncryptedDataInvalid)));
        assert!(device_failure(&e(RvError::DeviceRemoved)));
    }
}
