//! Properties, not examples: the share encoding round-trips any tree of the shapes it accepts; a
//! sealed record opens only with exactly its key, nonce, ciphertext and binding (any single
//! changed byte or bound fact is ERR_TAMPERED); and the decoders of bytes read from the database
//! (share encoding, unpersisted-state blob) never panic on arbitrary input.

use proptest::prelude::*;
use sharevault_core::envelope::{self, Binding};
use sharevault_core::error::ErrorCode;
use sharevault_core::shares::{self, Encoder, Value};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

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
