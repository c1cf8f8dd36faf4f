//! openraft's network over the transport seam: each RPC is one encoded request and response.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AsyncRuntime, EmptyNode};

use super::Canon;
use crate::codec;
use crate::ids::NodeId;
use crate::shared_elector::SharedElector;
use crate::transport::{Transport, TransportError};
use crate::wire::{Request, Response};

pub struct NetworkFactory<RT: AsyncRuntime> {
    transport: Arc<dyn Transport>,
    contact: Arc<SharedElector<RT::Instant>>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT: AsyncRuntime> NetworkFactory<RT> {
    pub fn new(transport: Arc<dyn Transport>, contact: Arc<SharedElector<RT::Instant>>) -> Self {
        NetworkFactory {
            transport,
            contact,
            _rt: PhantomData,
        }
    }
}

pub struct PeerClient<RT: AsyncRuntime> {
    target: NodeId,
    transport: Arc<dyn Transport>,
    contact: Arc<SharedElector<RT::Instant>>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT: AsyncRuntime> RaftNetworkFactory<Canon<RT>> for NetworkFactory<RT> {
    type Network = PeerClient<RT>;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> PeerClient<RT> {
        PeerClient {
            target,
            transport: self.transport.clone(),
            contact: self.contact.clone(),
            _rt: PhantomData,
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, EmptyNode, RaftError<NodeId, E>>;

fn transport_err<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, EmptyNode, E> {
    match e {
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Protocol(String);

impl<RT: AsyncRuntime> PeerClient<RT> {
    async fn call<E: std::error::Error>(
        &self,
        req: Request<RT>,
        ttl: Duration,
    ) -> Result<Response, RPCError<NodeId, EmptyNode, E>> {
        let bytes = codec::encode(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = self
            .transport
            .request(self.target, bytes, ttl)
            .await
            .map_err(transport_err)?;
        self.contact.heard(self.target);
        codec::decode::<Response>(&resp).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    fn unexpected<E: std::error::Error>(&self, resp: Response) -> RPCError<NodeId, EmptyNode, E> {
        let what = match resp {
            Response::Refused(why) => format!("peer {:?} refused: {why}", self.target),
            _ => format!("peer {:?} answered a different request", self.target),
        };
        RPCError::Network(NetworkError::new(&Protocol(what)))
    }
}

impl<RT: AsyncRuntime> RaftNetwork<Canon<RT>> for PeerClient<RT> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Canon<RT>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            Response::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Canon<RT>>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(Request::InstallSnapshot(rpc), option.hard_ttl())
            .await?
        {
            Response::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }
}
