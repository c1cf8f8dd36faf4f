//! A replicated key-value store as an application: put, delete and compare-and-set on byte
//! keys, get and range reads of committed state.
//!
//! A transaction is an encoded [`KvTx`]. It carries no signature: a client authenticates to the
//! node it talks to (as with etcd), and the node admits for it. Transactions queue first come,
//! first served. Storage keeps each pair as itself (the key, its value); a query is an encoded
//! [`KvQuery`] and its answer an encoded [`KvAnswer`]; an applied operation answers an encoded
//! [`KvOutcome`].

use super::{Application, Committed, Entry, Rejection, Tx};
use crate::codec;

mod ops;
mod state;

pub use ops::{
    KvAnswer, KvOp, KvOutcome, KvQuery, KvTx, MAX_KEY_BYTES, MAX_RANGE_PAIRS, MAX_VALUE_BYTES,
    RULE_SIZE,
};
pub use state::KvState;

/// The key-value application. It starts empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvApp;

fn encoded<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Rejection> {
    codec::encode(value).map_err(Rejection::encoding)
}

impl Application for KvApp {
    type State = KvState;

    fn kind(&self) -> &'static str {
        "kv"
    }

    fn genesis(&self) -> KvState {
        KvState::default()
    }

    fn verify(&self, tx: &Tx) -> Result<(), Rejection> {
        KvTx::from_tx(tx)?.check_sizes()
    }

    fn execute(&self, state: &mut KvState, tx: &Tx) -> Result<Vec<u8>, Rejection> {
        let kv = KvTx::from_tx(tx)?;
        kv.check_sizes()?;
        let outcome = match kv.op {
            KvOp::Put { key, value } => {
                state.set(&key, Some(value));
                KvOutcome::Put
            }
            KvOp::Delete { key } => KvOutcome::Deleted(state.set(&key, None).is_some()),
            KvOp::CompareAndSet { key, expected, new } => {
                let swapped = state.get(&key) == expected.as_deref();
                if swapped {
                    state.set(&key, new);
                }
                KvOutcome::Swapped(swapped)
            }
        };
        encoded(&outcome)
    }

    fn commit(&self, state: &mut KvState) -> Committed {
        let (state_root, writes) = state.commit();
        Committed { state_root, writes }
    }

    fn query(&self, state: &KvState, query: &[u8]) -> Result<Vec<u8>, Rejection> {
        let query: KvQuery = codec::decode(query).map_err(Rejection::encoding)?;
        let answer = match query {
            KvQuery::Get { key } => KvAnswer::Value(state.get(&key).map(<[u8]>::to_vec)),
            KvQuery::Range { start, end, limit } => {
                let limit = limit.min(MAX_RANGE_PAIRS) as usize;
                let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = state
                    .range(&start, end.as_deref())
                    .take(limit + 1)
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                let more = pairs.len() > limit;
                pairs.truncate(limit);
                KvAnswer::Pairs { pairs, more }
            }
        };
        encoded(&answer)
    }

    fn export(&self, state: &KvState) -> Vec<Entry> {
        state
            .pairs()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn import(&self, entries: Vec<Entry>) -> Result<KvState, Rejection> {
        Ok(KvState::from_pairs(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{App, Write, RULE_ENCODING};
    use super::*;

    fn op(request: u64, op: KvOp) -> Tx {
        KvTx {
            client: 1,
            request,
            op,
        }
        .to_tx()
        .unwrap()
    }

    fn put(request: u64, key: &[u8], value: &[u8]) -> Tx {
        op(
            request,
            KvOp::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
        )
    }

    fn cas(request: u64, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Tx {
        op(
            request,
            KvOp::CompareAndSet {
                key: key.to_vec(),
                expected: expected.map(<[u8]>::to_vec),
                new: new.map(<[u8]>::to_vec),
            },
        )
    }

    fn get(state: &super::super::AppState, key: &[u8]) -> Option<Vec<u8>> {
        let q = KvQuery::Get { key: key.to_vec() }.encode().unwrap();
        match KvAnswer::decode(&state.query(&q).unwrap()).unwrap() {
            KvAnswer::Value(v) => v,
            other => panic!("a get answered {other:?}"),
        }
    }

    fn outcome(bytes: Vec<u8>) -> KvOutcome {
        KvOutcome::decode(&bytes).unwrap()
    }

    /// Each operation's effect and answer, table-driven, on one state in order.
    #[test]
    fn operations_do_what_they_say_and_answer_it() {
        let app = App::new(KvApp);
        let mut s = app.genesis();
        // (operation, its answer, a key, what that key holds after)
        type Row = (Tx, KvOutcome, &'static [u8], Option<&'static [u8]>);
        let table: Vec<Row> = vec![
            (put(1, b"k", b"v1"), KvOutcome::Put, b"k", Some(b"v1")),
            (
                cas(2, b"k", Some(b"v0"), Some(b"x")),
                KvOutcome::Swapped(false),
                b"k",
                Some(b"v1"),
            ),
            (
                cas(3, b"k", Some(b"v1"), Some(b"v2")),
                KvOutcome::Swapped(true),
                b"k",
                Some(b"v2"),
            ),
            (
                cas(4, b"n", None, Some(b"new")),
                KvOutcome::Swapped(true),
                b"n",
                Some(b"new"),
            ),
            (
                cas(5, b"n", None, Some(b"again")),
                KvOutcome::Swapped(false),
                b"n",
                Some(b"new"),
            ),
            (
                cas(6, b"n", Some(b"new"), None),
                KvOutcome::Swapped(true),
                b"n",
                None,
            ),
            (
                op(7, KvOp::Delete { key: b"k".to_vec() }),
                KvOutcome::Deleted(true),
                b"k",
                None,
            ),
            (
                op(8, KvOp::Delete { key: b"k".to_vec() }),
                KvOutcome::Deleted(false),
                b"k",
                None,
            ),
        ];
        for (i, (tx, answer, key, value)) in table.into_iter().enumerate() {
            app.verify(&tx).unwrap();
            assert_eq!(outcome(s.execute(&tx).unwrap()), answer, "row {i}");
            assert_eq!(get(&s, key).as_deref(), value, "row {i}");
        }
    }

    #[test]
    fn ranges_are_ordered_bounded_and_say_when_more_remain() {
        let app = App::new(KvApp);
        let mut s = app.genesis();
        for (i, k) in [b"b", b"d", b"a", b"c"].iter().enumerate() {
            s.execute(&put(i as u64, *k, b"v")).unwrap();
        }
        let range = |start: &[u8], end: Option<&[u8]>, limit| {
            let q = KvQuery::Range {
                start: start.to_vec(),
                end: end.map(<[u8]>::to_vec),
                limit,
            };
            match KvAnswer::decode(&s.query(&q.encode().unwrap()).unwrap()).unwrap() {
                KvAnswer::Pairs { pairs, more } => {
                    (pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), more)
                }
                other => panic!("a range answered {other:?}"),
            }
        };
        let keys = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            range(b"", None, 10),
            (keys(&[b"a", b"b", b"c", b"d"]), false)
        );
        assert_eq!(range(b"b", Some(b"d"), 10), (keys(&[b"b", b"c"]), false));
        assert_eq!(range(b"a", None, 2), (keys(&[b"a", b"b"]), true));
        assert_eq!(range(b"e", None, 2), (keys(&[]), false));
    }

    #[test]
    fn bad_sizes_and_encodings_are_refused_by_name_and_change_nothing() {
        let app = App::new(KvApp);
        let mut s = app.genesis();
        let before = s.root();
        let empty = put(1, b"", b"v");
        let long_key = put(2, &[7; MAX_KEY_BYTES + 1], b"v");
        let long_value = put(3, b"k", &vec![0; MAX_VALUE_BYTES + 1]);
        let long_expected = cas(4, b"k", Some(&vec![0; MAX_VALUE_BYTES + 1]), None);
        for tx in [empty, long_key, long_value, long_expected] {
            assert_eq!(app.verify(&tx).unwrap_err().rule, RULE_SIZE);
            assert_eq!(s.execute(&tx).unwrap_err().rule, RULE_SIZE);
        }
        let mut padded = put(5, b"k", b"v").as_bytes().to_vec();
        padded.push(0);
        assert_eq!(
            app.verify(&Tx::new(padded)).unwrap_err().rule,
            RULE_ENCODING
        );
        assert_eq!(app.lane(&put(6, b"k", b"v")).unwrap(), None);
        assert_eq!(s.root(), before);
        assert!(s.query(b"\xff\xff").is_err());
    }

    #[test]
    fn a_block_commits_its_writes_and_an_export_imports_to_the_same_root() {
        let app = App::new(KvApp);
        let mut s = app.genesis();
        s.execute(&put(1, b"a", b"1")).unwrap();
        s.execute(&put(2, b"b", b"2")).unwrap();
        s.execute(&op(3, KvOp::Delete { key: b"a".to_vec() }))
            .unwrap();
        let committed = s.commit();
        assert_eq!(
            committed.writes,
            vec![Write {
                key: b"b".to_vec(),
                value: Some(b"2".to_vec())
            }]
        );
        assert_ne!(committed.state_root, app.genesis_root());
        assert_eq!(app.import(s.export()).unwrap().root(), committed.state_root);
    }
}
