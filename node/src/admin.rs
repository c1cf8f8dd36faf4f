//! The admin interface: membership changes while blocks flow (`canon-node admin`). Its own
//! listener (`admin_address`, loopback by default), up only when `admin_token_file` names a
//! token: every request presents it as `Authorization: Bearer <token>`, compared in constant
//! time. What a change may do is `policy::membership`'s; this only carries requests in and
//! answers out.
//!
//! - `GET /admin/members`: the membership in effect.
//! - `POST /admin/members` with `{"action": "add-learner", "id": "0x..", "address": "host:port"}`,
//!   `{"action": "promote", "id": ..}` or `{"action": "remove", "id": ..}`: the change, made
//!   on the leader (another node answers 421 with the leader's id). A change to ask for again
//!   a little later answers 409: a change still being committed, a learner still catching up,
//!   a voter whose attestations L1 still needs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use canon_engine::consensus::node::membership::MembershipError;
use canon_engine::consensus::status::MembershipStatus;
use canon_engine::policy::membership::{Change, Refusal};
use canon_engine::NodeId;
use openraft::TokioRuntime;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client_auth::ClientToken;
use crate::http_serve::{serve, HttpBounds};

type Node = canon_engine::consensus::node::ConsensusNode<TokioRuntime>;

/// A change an operator asks for, as the admin endpoint takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Add `id` as a learner that listens for p2p at `address` (`host:port`).
    AddLearner { id: NodeId, address: String },
    /// Make learner `id` a voter, once it has caught up.
    Promote { id: NodeId },
    /// Remove voter or learner `id`.
    Remove { id: NodeId },
}

/// What a refused or failed request answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminError {
    pub error: String,
    /// When the node asked does not lead: the one it follows, to ask instead.
    pub leader: Option<NodeId>,
}

struct Admin {
    node: Arc<Node>,
    token: ClientToken,
}

fn refuse(status: StatusCode, error: String, leader: Option<NodeId>) -> Response {
    (status, Json(AdminError { error, leader })).into_response()
}

impl Admin {
    /// `None` when `headers` present the token; else the refusal to answer with.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        (!self.token.admits(presented)).then(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "present the admin token (admin_token_file) as Authorization: Bearer <token>"
                    .into(),
                None,
            )
        })
    }
}

async fn members(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Some(r) = admin.refusal(&headers) {
        return r;
    }
    Json(admin.node.members()).into_response()
}

async fn change(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(request): Json<AdminRequest>,
) -> Response {
    if let Some(r) = admin.refusal(&headers) {
        return r;
    }
    let (change, address) = match &request {
        AdminRequest::AddLearner { id, address } => {
            if address.contains("://") || crate::config::parse_boot_node(address).is_err() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("address {address:?} is not host:port"),
                    None,
                );
            }
            (Change::AddLearner(*id), address.as_str())
        }
        AdminRequest::Promote { id } => (Change::Promote(*id), ""),
        AdminRequest::Remove { id } => (Change::Remove(*id), ""),
    };
    tracing::info!(?request, "membership change asked for");
    match admin.node.change_members(change, address).await {
        Ok(status) => Json::<MembershipStatus>(status).into_response(),
        Err(MembershipError::Refused(Refusal::NotLeader { leader })) => refuse(
            StatusCode::MISDIRECTED_REQUEST,
            Refusal::NotLeader { leader }.to_string(),
            leader,
        ),
        Err(MembershipError::Refused(
            r @ (Refusal::Changing | Refusal::NotCaughtUp { .. } | Refusal::AttestationOwed { .. }),
        )) => refuse(StatusCode::CONFLICT, r.to_string(), None),
        Err(MembershipError::Refused(r)) => {
            refuse(StatusCode::UNPROCESSABLE_ENTITY, r.to_string(), None)
        }
        Err(
            e @ (MembershipError::Raft(_)
            | MembershipError::TimedOut(_)
            | MembershipError::L1Unread { .. }),
        ) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

/// Serves the admin interface of `node` until `stop`.
pub async fn serve_admin(
    listener: TcpListener,
    node: Arc<Node>,
    token: ClientToken,
    bounds: HttpBounds,
    stop: CancellationToken,
) {
    let admin = Arc::new(Admin { node, token });
    let app = Router::new()
        .route("/admin/members", get(members).post(change))
        .with_state(admin);
    serve(listener, app, bounds, stop, "admin").await;
}

/// `canon-node admin`'s side: one request to a node's admin interface.
pub struct AdminClient {
    agent: ureq::Agent,
    url: String,
    token: ClientToken,
}

impl AdminClient {
    /// `url`: the admin interface, `http://host:port`.
    pub fn new(url: &str, token: ClientToken) -> AdminClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        AdminClient {
            agent,
            url: format!("{}/admin/members", url.trim_end_matches('/')),
            token,
        }
    }

    fn bearer(&self) -> String {
        format!("{}{}", crate::client_auth::BEARER, self.token.expose())
    }

    /// The membership in effect, as the node asked sees it.
    pub fn members(&self) -> Result<MembershipStatus, String> {
        let response = self
            .agent
            .get(&self.url)
            .header("Authorization", &self.bearer())
            .call()
            .map_err(|e| format!("{}: {e}", self.url))?;
        Self::answer(&self.url, response)
    }

    /// Asks for `request`; the membership after it, or why not.
    pub fn change(&self, request: &AdminRequest) -> Result<MembershipStatus, String> {
        let response = self
            .agent
            .post(&self.url)
            .header("Authorization", &self.bearer())
            .send_json(request)
            .map_err(|e| format!("{}: {e}", self.url))?;
        Self::answer(&self.url, response)
    }

    fn answer(
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<MembershipStatus, String> {
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| format!("{url}: {e}: {body}"));
        }
        match serde_json::from_str::<AdminError>(&body) {
            Ok(AdminError {
                error,
                leader: Some(l),
            }) => Err(format!("{error}: ask the leader {l}'s admin interface")),
            Ok(AdminError { error, .. }) => Err(format!("{url}: {status}: {error}")),
            Err(_) => Err(format!("{url}: {status}: {body}")),
        }
    }
}
