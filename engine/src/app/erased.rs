//! The application as the engine holds it: [`App`] and [`AppState`] erase an [`Application`]'s
//! types, so the chain, consensus, replay and redundancy code is written once, for any
//! application, without a type parameter running through all of it.
//!
//! A state carries a handle to the application that made it, so calling it never needs a
//! downcast that could fail.

use std::any::Any;
use std::sync::Arc;

use alloy_primitives::B256;

use super::{Application, Committed, Entry, Lane, Rejection, Tx};

trait AppObject: Send + Sync {
    fn kind(&self) -> &'static str;
    fn genesis(&self) -> Box<dyn StateObject>;
    fn verify(&self, tx: &Tx) -> Result<(), Rejection>;
    fn lane(&self, tx: &Tx) -> Result<Option<Lane>, Rejection>;
    fn import(&self, entries: Vec<Entry>) -> Result<Box<dyn StateObject>, Rejection>;
    fn as_any(&self) -> &dyn Any;
}

struct Handle<A>(Arc<A>);

impl<A: Application> AppObject for Handle<A> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn genesis(&self) -> Box<dyn StateObject> {
        Box::new(Running {
            app: self.0.clone(),
            state: self.0.genesis(),
        })
    }

    fn verify(&self, tx: &Tx) -> Result<(), Rejection> {
        self.0.verify(tx)
    }

    fn lane(&self, tx: &Tx) -> Result<Option<Lane>, Rejection> {
        self.0.lane(tx)
    }

    fn import(&self, entries: Vec<Entry>) -> Result<Box<dyn StateObject>, Rejection> {
        Ok(Box::new(Running {
            app: self.0.clone(),
            state: self.0.import(entries)?,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        &*self.0
    }
}

/// An application, shared by every part of a node that executes or checks transactions.
#[derive(Clone)]
pub struct App(Arc<dyn AppObject>);

impl App {
    pub fn new<A: Application>(app: A) -> App {
        App(Arc::new(Handle(Arc::new(app))))
    }

    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    pub fn genesis(&self) -> AppState {
        AppState {
            app: self.clone(),
            inner: self.0.genesis(),
        }
    }

    /// The root of the genesis state: what the height-0 header commits to.
    pub fn genesis_root(&self) -> B256 {
        self.genesis().root()
    }

    pub fn verify(&self, tx: &Tx) -> Result<(), Rejection> {
        self.0.verify(tx)
    }

    pub fn lane(&self, tx: &Tx) -> Result<Option<Lane>, Rejection> {
        self.0.lane(tx)
    }

    pub fn import(&self, entries: Vec<Entry>) -> Result<AppState, Rejection> {
        Ok(AppState {
            app: self.clone(),
            inner: self.0.import(entries)?,
        })
    }

    /// The application itself, when the caller knows which one it is (its own RPC, tests).
    pub fn downcast_ref<A: Application>(&self) -> Option<&A> {
        self.0.as_any().downcast_ref::<A>()
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "App({})", self.kind())
    }
}

trait StateObject: Send + Sync {
    fn clone_box(&self) -> Box<dyn StateObject>;
    fn kind(&self) -> &'static str;
    fn next_in_lane(&self, lane: &B256) -> u64;
    fn execute(&mut self, tx: &Tx) -> Result<Vec<u8>, Rejection>;
    fn commit(&mut self) -> Committed;
    fn query(&self, query: &[u8]) -> Result<Vec<u8>, Rejection>;
    fn export(&self) -> Vec<Entry>;
    fn state_any(&self) -> &dyn Any;
}

struct Running<A: Application> {
    app: Arc<A>,
    state: A::State,
}

impl<A: Application> StateObject for Running<A> {
    fn clone_box(&self) -> Box<dyn StateObject> {
        Box::new(Running {
            app: self.app.clone(),
            state: self.state.clone(),
        })
    }

    fn kind(&self) -> &'static str {
        self.app.kind()
    }

    fn next_in_lane(&self, lane: &B256) -> u64 {
        self.app.next_in_lane(&self.state, lane)
    }

    fn execute(&mut self, tx: &Tx) -> Result<Vec<u8>, Rejection> {
        self.app.execute(&mut self.state, tx)
    }

    fn commit(&mut self) -> Committed {
        self.app.commit(&mut self.state)
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, Rejection> {
        self.app.query(&self.state, query)
    }

    fn export(&self) -> Vec<Entry> {
        self.app.export(&self.state)
    }

    fn state_any(&self) -> &dyn Any {
        &self.state
    }
}

/// One application's state: a block's working copy, a node's applied state. Cloning is as
/// cheap as the application made its state's clone.
pub struct AppState {
    app: App,
    inner: Box<dyn StateObject>,
}

impl Clone for AppState {
    fn clone(&self) -> Self {
        AppState {
            app: self.app.clone(),
            inner: self.inner.clone_box(),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppState({})", self.inner.kind())
    }
}

impl AppState {
    /// The application this state belongs to.
    pub fn app(&self) -> &App {
        &self.app
    }

    pub fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    pub fn next_in_lane(&self, lane: &B256) -> u64 {
        self.inner.next_in_lane(lane)
    }

    pub fn execute(&mut self, tx: &Tx) -> Result<Vec<u8>, Rejection> {
        self.inner.execute(tx)
    }

    pub fn commit(&mut self) -> Committed {
        self.inner.commit()
    }

    /// The state root with every pending write folded in, leaving `self` as it is.
    pub fn root(&self) -> B256 {
        self.clone().commit().state_root
    }

    pub fn query(&self, query: &[u8]) -> Result<Vec<u8>, Rejection> {
        self.inner.query(query)
    }

    pub fn export(&self) -> Vec<Entry> {
        self.inner.export()
    }

    /// The application's own state type, when the caller knows which application it is.
    pub fn downcast_ref<S: 'static>(&self) -> Option<&S> {
        self.inner.state_any().downcast_ref::<S>()
    }
}
