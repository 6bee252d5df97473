//! Properties, not examples: the share encoding round-trips any tree of the shapes it accepts; a
//! sealed record opens only with exactly its key, nonce, ciphertext and binding (any single
//! changed byte or bound fact is ERR_TAMPERED); and the decoders of bytes read from the database
//! (share encoding, unpersisted-state blob) never panic on arbitrary input; and a MAC'd wallet
//! row verifies unchanged, and not after any one of its columns changes.

use proptest::prelude::*;
use sharevault_core::audit::{AuditEntry, AuditRecord, ChainHead};
use sharevault_core::envelope::{self, Binding, KekRef, SealedRecord};
use sharevault_core::error::ErrorCode;
use sharevault_core::integrity::{sealed_digest, IntegrityKey};
use sharevault_core::shares::{self, Encoder, Value};
use sharevault_core::store::{MetadataRow, WalletRow};
use sharevault_core::tamper;
use sharevault_core::unpersisted::Unpersisted;
use sharevault_core::DataKey;
use std::collections::BTreeMap;

/// An owned share tree (what the binding writes with the `Encoder`).
#[derive(Debug, Clone, PartialEq)]
enum Tree {
    Null,
    Undefined,
    Bool(bool),
    Number(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Null),
        Just(Tree::Undefined),
        any::<bool>().prop_map(Tree::Bool),
        any::<f64>().prop_filter("NaN is not equal to itself", |n| !n.is_nan()).prop_map(Tree::Number),
        ".{0,64}".prop_map(Tree::Str),
        proptest::collection::vec(any::<u8>(), 0..96).prop_map(Tree::Bytes),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Tree::Array),
            // Distinct keys, as JS objects have.
            proptest::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..6)
                .prop_map(|m: BTreeMap<String, Tree>| Tree::Object(m.into_iter().collect())),
        ]
    })
}

fn encode(e: &mut Encoder, t: &Tree) {
    match t {
        Tree::Null => e.null().unwrap(),
        Tree::Undefined => e.undefined().unwrap(),
        Tree::Bool(b) => e.boolean(*b).unwrap(),
        Tree::Number(n) => e.number(*n).unwrap(),
        Tree::Str(s) => e.string(s).unwrap(),
        Tree::Bytes(b) => e.bytes(b).unwrap(),
        Tree::Array(items) => {
            e.begin_array(items.len()).unwrap();
            for i in items {
                encode(e, i);
            }
        }
        Tree::Object(fields) => {
            e.begin_object(fields.len()).unwrap();
            for (k, v) in fields {
                e.key(k).unwrap();
                encode(e, v);
            }
        }
    }
}

fn owned(v: &Value<'_>) -> Tree {
    match v {
        Value::Null => Tree::Null,
        Value::Undefined => Tree::Undefined,
        Value::Bool(b) => Tree::Bool(*b),
        Value::Number(n) => Tree::Number(*n),
        Value::Str(s) => Tree::Str(s.to_string()),
        Value::Bytes(b) => Tree::Bytes(b.to_vec()),
        Value::Array(items) => Tree::Array(items.iter().map(owned).collect()),
        Value::Object(fields) => Tree::Object(fields.iter().map(|(k, v)| (k.to_string(), owned(v))).collect()),
    }
}

fn binding(parts: &(String, String, String, String, i64)) -> Binding<'_> {
    Binding {
        environment: &parts.0,
        wallet_id: &parts.1,
        address_key: &parts.2,
        chain_name: &parts.3,
        generation: parts.4,
    }
}

fn facts() -> impl Strategy<Value = (String, String, String, String, i64)> {
    (".{0,16}", ".{0,16}", ".{0,16}", ".{0,8}", any::<i64>())
}

/// A wallet row with arbitrary columns, MAC'd as the vault writes it.
fn wallet_row() -> impl Strategy<Value = WalletRow> {
    (
        (".{1,16}", ".{1,16}", ".{1,24}", ".{1,24}", ".{1,8}", ".{0,128}"),
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (".{0,8}", ".{0,16}", ".{0,4}"),
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..128),
        ),
    )
        .prop_map(|((env, id, address, key, chain, meta), (generation, version, format, alg), kek, bytes)| {
            WalletRow {
                environment: env,
                wallet_id: id,
                address,
                address_key: key,
                chain_name: chain,
                metadata_json: meta,
                version,
                generation,
                sealed: SealedRecord {
                    format,
                    alg,
                    kek: KekRef { provider: kek.0, key_id: kek.1, key_version: kek.2 },
                    wrapped_dek: bytes.0,
                    nonce: bytes.1,
                    ciphertext: bytes.2,
                    wrapped_at: None,
                    sealed_at: None,
                },
                mac: None,
                sealed_digest: None,
                state: None,
            }
        })
}

/// The environment's authenticated audit row recording `wallet_mac` as a wallet's latest state.
fn state(key: &IntegrityKey, wallet_mac: Vec<u8>) -> AuditRecord {
    let e = AuditEntry {
        at_ms: 1,
        environment: key.environment().to_string(),
        actor: "a".into(),
        action: "store",
        address: "x".into(),
        wallet_id: None,
        purpose: None,
        outcome: "ok".into(),
        wallet_mac: Some(wallet_mac),
    };
    let link = ChainHead::genesis().link(&e);
    AuditRecord {
        seq: link.seq,
        at_ms: e.at_ms,
        environment: e.environment.clone(),
        actor: e.actor.clone(),
        action: e.action.into(),
        address: e.address.clone(),
        wallet_id: None,
        purpose: None,
        outcome: e.outcome.clone(),
        wallet_mac: e.wallet_mac.clone(),
        mac: Some(key.audit_row_tag(link.seq, &link.hash)),
        prev_hash: link.prev_hash,
        hash: link.hash,
    }
}

/// Changes column `which` of the row (every column the row has) so that it differs.
fn change(r: &mut WalletRow, which: usize) {
    let s = &mut r.sealed;
    match which {
        0 => r.environment.push('x'),
        1 => r.wallet_id.push('x'),
        2 => r.address.push('x'),
        3 => r.address_key.push('x'),
        4 => r.chain_name.push('x'),
        5 => r.metadata_json.push(' '),
        6 => r.version = r.version.wrapping_add(1),
        7 => r.generation = r.generation.wrapping_add(1),
        8 => s.format = s.format.wrapping_add(1),
        9 => s.alg = s.alg.wrapping_add(1),
        10 => s.kek.provider.push('x'),
        11 => s.kek.key_id.push('x'),
        12 => s.kek.key_version.push('x'),
        13 => s.wrapped_dek.push(0),
        14 => s.nonce.push(0),
        15 => s.ciphertext.push(0),
        16 => r.mac.as_mut().unwrap()[0] ^= 1,
        _ => r.sealed_digest.as_mut().unwrap()[31] ^= 0x80,
    }
}
const COLUMNS: usize = 18;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_macd_wallet_row_verifies_only_unchanged(mut row in wallet_row(), which in 0..COLUMNS) {
        let key = IntegrityKey::derive(&DataKey::from_bytes([3u8; 32]), &row.environment);
        let digest = sealed_digest(&row.sealed);
        row.mac = Some(key.row_tag(&tamper::wallet_facts(&row, &digest)));
        row.sealed_digest = Some(digest);
        row.state = Some(state(&key, row.mac.clone().unwrap()));
        prop_assert!(tamper::check_wallet(&key, &row).is_ok());
        // The metadata-only read of the same row checks the same MAC.
        let meta = |r: &WalletRow| MetadataRow {
            address: r.address.clone(),
            address_key: r.address_key.clone(),
            wallet_id: r.wallet_id.clone(),
            chain_name: r.chain_name.clone(),
            environment: r.environment.clone(),
            metadata_json: r.metadata_json.clone(),
            version: r.version,
            generation: r.generation,
            sealed_digest: r.sealed_digest.clone(),
            mac: r.mac.clone(),
            state: r.state.clone(),
        };
        prop_assert!(tamper::check_metadata(&key, &meta(&row)).is_ok());
        let mut changed = row.clone();
        change(&mut changed, which);
        prop_assert_eq!(tamper::check_wallet(&key, &changed).unwrap_err().code, ErrorCode::Tampered);
        // Columns a metadata read returns or checks (all but the sealed record's own).
        if !(8..=15).contains(&which) {
            prop_assert_eq!(tamper::check_metadata(&key, &meta(&changed)).unwrap_err().code, ErrorCode::Tampered);
        }
        // The row as it was, put back over a later write of the wallet, is refused too.
        let mut older = row.clone();
        older.state = Some(state(&key, vec![0u8; 32]));
        prop_assert_eq!(tamper::check_wallet(&key, &older).unwrap_err().code, ErrorCode::Tampered);
        // Its history is believed only from the environment's own authenticated rows: one of
        // another environment, or with its hash recomputed (no key needed), or none, is refused.
        let other = IntegrityKey::derive(&DataKey::from_bytes([3u8; 32]), &format!("{}-other", row.environment));
        let mut forged = row.clone();
        forged.state = Some(state(&other, row.mac.clone().unwrap()));
        prop_assert_eq!(tamper::check_wallet(&key, &forged).unwrap_err().code, ErrorCode::Tampered);
        let mut rehashed = row.clone();
        let s = rehashed.state.as_mut().unwrap();
        s.actor.push('x');
        s.hash = s.computed_hash().to_vec();
        prop_assert_eq!(tamper::check_wallet(&key, &rehashed).unwrap_err().code, ErrorCode::Tampered);
        let mut none = row.clone();
        none.state = None;
        prop_assert_eq!(tamper::check_wallet(&key, &none).unwrap_err().code, ErrorCode::Tampered);
    }

    #[test]
    fn the_share_encoding_round_trips_any_tree(t in tree()) {
        let mut e = Encoder::new();
        encode(&mut e, &t);
        let buf = e.finish();
        let decoded = shares::decode(&buf).unwrap();
        prop_assert_eq!(owned(&decoded), t);
    }

    #[test]
    fn a_sealed_record_opens_only_unchanged(
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        f in facts(),
        other in facts(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let dek = DataKey::generate();
        let (nonce, ct) = envelope::seal(&dek, &binding(&f), &plaintext).unwrap();
        let opened = envelope::open(&dek, &binding(&f), &nonce, &ct).unwrap();
        prop_assert_eq!(opened.as_slice(), &plaintext[..]);
        // Any single flipped bit of the ciphertext (tag included) or the nonce.
        let mut bad = ct.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert_eq!(envelope::open(&dek, &binding(&f), &nonce, &bad).unwrap_err().code, ErrorCode::Tampered);
        let mut bad_nonce = nonce.clone();
        let j = flip.index(bad_nonce.len());
        bad_nonce[j] ^= 1 << bit;
        prop_assert_eq!(envelope::open(&dek, &binding(&f), &bad_nonce, &ct).unwrap_err().code, ErrorCode::Tampered);
        // Any other bound fact, or another key.
        if other != f {
            prop_assert_eq!(envelope::open(&dek, &binding(&other), &nonce, &ct).unwrap_err().code, ErrorCode::Tampered);
        }
        prop_assert_eq!(envelope::open(&DataKey::generate(), &binding(&f), &nonce, &ct).unwrap_err().code, ErrorCode::Tampered);
    }

    #[test]
    fn the_decoders_of_stored_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let buf = sharevault_core::SecretBuf::from_vec(bytes.clone());
        let _ = shares::decode(&buf);
        let _ = Unpersisted::decode(&bytes);
    }
}
