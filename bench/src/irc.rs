//! IRC client for the peer servers, plain and TLS.
