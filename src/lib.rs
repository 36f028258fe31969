#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod codec;
mod error;
mod node;
pub mod proto;

pub use error::{CodecError, Error, Fault, Result};
pub use node::{
    ConnectionState, Event, Events, Node, NodeBuilder, NodeConfig, Peer, PeerStats, Receipt,
};
pub use proto::session::LostReason;
