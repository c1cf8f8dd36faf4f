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
use openraft::AsyncRuntime;

use super::types::{Canon, PeerNode};
use crate::consensus::shared_core::SharedCore;
use crate::ids::NodeId;
use crate::net::peer::{self, CallError};
use crate::net::transport::{Transport, TransportError};
use crate::net::wire::{Request, Response};

pub struct NetworkFactory<RT: AsyncRuntime> {
    transport: Arc<dyn Transport>,
    core: Arc<SharedCore<RT::Instant>>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT: AsyncRuntime> NetworkFactory<RT> {
    pub fn new(transport: Arc<dyn Transport>, core: Arc<SharedCore<RT::Instant>>) -> Self {
        NetworkFactory {
            transport,
            core,
            _rt: PhantomData,
        }
    }
}

pub struct PeerClient<RT: AsyncRuntime> {
    target: NodeId,
    transport: Arc<dyn Transport>,
    core: Arc<SharedCore<RT::Instant>>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT: AsyncRuntime> RaftNetworkFactory<Canon<RT>> for NetworkFactory<RT> {
    type Network = PeerClient<RT>;

    async fn new_client(&mut self, target: NodeId, _node: &PeerNode) -> PeerClient<RT> {
        PeerClient {
            target,
            transport: self.transport.clone(),
            core: self.core.clone(),
            _rt: PhantomData,
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, PeerNode, RaftError<NodeId, E>>;

fn call_err<E: std::error::Error>(e: CallError) -> RPCError<NodeId, PeerNode, E> {
    match e {
        CallError::Transport(t @ TransportError::Unreachable(_)) => {
            RPCError::Unreachable(Unreachable::new(&t))
        }
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

impl<RT: AsyncRuntime> PeerClient<RT> {
    async fn call<E: std::error::Error>(
        &self,
        req: Request,
        ttl: Duration,
    ) -> Result<Response, RPCError<NodeId, PeerNode, E>> {
        let resp = peer::call(&*self.transport, self.target, &req, ttl)
            .await
            .map_err(call_err)?;
        self.core.heard(self.target);
        Ok(resp)
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, PeerNode, E> {
        call_err(CallError::Unexpected { peer: self.target })
    }
}

impl<RT: AsyncRuntime> RaftNetwork<Canon<RT>> for PeerClient<RT> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Canon<RT>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .call(Request::AppendEntries(rpc.into()), option.hard_ttl())
            .await?
        {
            Response::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Canon<RT>>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(Request::InstallSnapshot(rpc.into()), option.hard_ttl())
            .await?
        {
            Response::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
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
            _ => Err(self.unexpected()),
        }
    }
}
