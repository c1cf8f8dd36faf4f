//! External nodes: download canonized blocks from sources, replay them, choose between forks.
pub mod core;
pub mod node;
