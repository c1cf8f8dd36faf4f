//! A small blocking client for a node's status server and JSON-RPC: used by `devnet`, the
//! real-process tests and the load generator.

use std::time::Duration;

use canon_engine::app::ledger::SignedTransaction;
use canon_engine::codec;
use serde_json::{json, Value};

use crate::http::StatusView;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("rpc error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("{0}")]
    Decode(String),
}

impl ClientError {
    /// A JSON-RPC error object (`{"code", "message"}`) as an error.
    pub fn from_rpc(err: &Value) -> ClientError {
        ClientError::Rpc {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }
    }
}

#[derive(Clone)]
pub struct NodeClient {
    agent: ureq::Agent,
    pub rpc_url: String,
    pub status_url: String,
    /// Sent as `Authorization: Bearer <token>` with every JSON-RPC call.
    token: Option<crate::client_auth::ClientToken>,
}

impl NodeClient {
    /// `rpc` and `status` as `host:port`.
    pub fn new(rpc: &str, status: &str, timeout: Duration) -> NodeClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        NodeClient {
            agent,
            rpc_url: format!("http://{rpc}"),
            status_url: format!("http://{status}/status"),
            token: None,
        }
    }

    /// This client presents `token` to nodes that ask for one.
    pub fn with_token(mut self, token: Option<crate::client_auth::ClientToken>) -> NodeClient {
        self.token = token;
        self
    }

    pub fn status(&self) -> Result<StatusView, ClientError> {
        let http = |message: String| ClientError::Http {
            url: self.status_url.clone(),
            message,
        };
        let mut resp = self
            .agent
            .get(&self.status_url)
            .call()
            .map_err(|e| http(e.to_string()))?;
        resp.body_mut()
            .read_json::<StatusView>()
            .map_err(|e| http(e.to_string()))
    }

    /// POSTs `body` to the JSON-RPC endpoint and reads the JSON answer.
    fn post(&self, body: &Value) -> Result<Value, ClientError> {
        let http = |message: String| ClientError::Http {
            url: self.rpc_url.clone(),
            message,
        };
        let mut request = self.agent.post(&self.rpc_url);
        if let Some(t) = &self.token {
            request = request.header(
                "authorization",
                format!("{}{}", crate::client_auth::BEARER, t.expose()),
            );
        }
        let mut resp = request.send_json(body).map_err(|e| http(e.to_string()))?;
        resp.body_mut().read_json().map_err(|e| http(e.to_string()))
    }

    pub fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let mut v =
            self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))?;
        if let Some(err) = v.get("error") {
            return Err(ClientError::from_rpc(err));
        }
        // Taken, not cloned: a batch's answer is thousands of entries.
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    pub fn send_transaction(&self, tx: &SignedTransaction) -> Result<String, ClientError> {
        let bytes = codec::encode(tx).map_err(|e| ClientError::Decode(e.to_string()))?;
        let v = self.call(
            "canon_sendTransaction",
            json!([format!("0x{}", hex::encode(bytes))]),
        )?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode(format!("expected a hash, got {v}")))
    }

    /// `canon_sendTransactions`: one entry per transaction, in order, with its hash or the
    /// error the node gave it.
    pub fn send_transactions(
        &self,
        txs: &[SignedTransaction],
    ) -> Result<Vec<Result<String, ClientError>>, ClientError> {
        let raws = txs
            .iter()
            .map(|tx| {
                codec::encode(tx)
                    .map(|b| format!("0x{}", hex::encode(b)))
                    .map_err(|e| ClientError::Decode(e.to_string()))
            })
            .collect::<Result<Vec<String>, _>>()?;
        let v = self.call("canon_sendTransactions", json!([raws]))?;
        let entries = v
            .as_array()
            .filter(|a| a.len() == txs.len())
            .ok_or_else(|| {
                ClientError::Decode(format!("expected {} entries, got {v}", txs.len()))
            })?;
        Ok(entries
            .iter()
            .map(
                |e| match (e.get("hash").and_then(Value::as_str), e.get("error")) {
                    (Some(h), _) => Ok(h.to_string()),
                    (None, Some(err)) => Err(ClientError::from_rpc(err)),
                    (None, None) => Err(ClientError::Decode(format!("entry without hash: {e}"))),
                },
            )
            .collect())
    }

    /// A JSON-RPC 2.0 batch: every call in one HTTP request, the answers in the order asked
    /// (matched by id), each a result or an error.
    pub fn call_batch(
        &self,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, ClientError>>, ClientError> {
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(id, (method, params))| {
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            })
            .collect();
        let v = self.post(&Value::Array(body))?;
        let answers = v
            .as_array()
            .ok_or_else(|| ClientError::Decode(format!("a batch answer is an array: {v}")))?;
        let mut out: Vec<Option<Result<Value, ClientError>>> =
            (0..calls.len()).map(|_| None).collect();
        for a in answers {
            let id = a.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let entry = match a.get("error") {
                Some(err) => Err(ClientError::from_rpc(err)),
                None => Ok(a.get("result").cloned().unwrap_or(Value::Null)),
            };
            if let Some(slot) = out.get_mut(id) {
                *slot = Some(entry);
            }
        }
        Ok(out
            .into_iter()
            .map(|e| e.unwrap_or(Err(ClientError::Decode("no answer for this call".into()))))
            .collect())
    }

    pub fn block_number(&self) -> Result<u64, ClientError> {
        let v = self.call("canon_blockNumber", json!([]))?;
        v.as_u64()
            .ok_or_else(|| ClientError::Decode(format!("expected a height, got {v}")))
    }

    /// The block JSON at `height`, or `None` above the head.
    pub fn block(&self, height: u64) -> Result<Option<Value>, ClientError> {
        let v = self.call("canon_getBlockByNumber", json!([height]))?;
        Ok(if v.is_null() { None } else { Some(v) })
    }

    /// (balance, next nonce, height read at)
    pub fn account(
        &self,
        address: &alloy_primitives::Address,
    ) -> Result<(u64, u64, u64), ClientError> {
        let v = self.call("canon_getAccount", json!([address]))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| ClientError::Decode(format!("account without {k}: {v}")))
        };
        Ok((field("balance")?, field("nonce")?, field("height")?))
    }
}
