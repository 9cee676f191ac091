//! The duokv wire format.
//!
//! This crate will hold the binary, length-prefixed protocol that clients and
//! replicas speak. It is a pure library: it knows nothing of sockets.
//!
//! # Layout
//!
//! - [`VERSION`]: the protocol version this crate speaks.
//!
//! # Example
//!
//! ```
//! assert_eq!(duokv_protocol::VERSION, 1);
//! ```

/// The protocol version spoken by this crate, sent in every handshake.
pub const VERSION: u16 = 1;
