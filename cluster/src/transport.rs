//! The byte transport under the RPC layer, behind a small trait so the simulator can put
//! turmoil's TCP in place of tokio's.
//!
//! A [`Transport`] connects to and listens on string addresses and yields [`Connection`]s:
//! ordered, reliable byte streams. Everything above — framing ([`crate::frame`]), timeouts,
//! reconnects — is the RPC layer's, written once for every transport.

use std::fmt::Debug;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

/// An ordered, reliable byte stream.
pub trait Connection: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Connection for T {}

/// Accepts incoming connections.
#[async_trait]
pub trait Listener: Send + 'static {
    /// The next connection and its peer's address.
    async fn accept(&mut self) -> io::Result<(Box<dyn Connection>, String)>;

    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<String>;
}

/// Opens connections and listeners.
#[async_trait]
pub trait Transport: Send + Sync + Debug + 'static {
    /// Connects to `addr`. Callers bound this with their own timeout.
    async fn connect(&self, addr: &str) -> io::Result<Box<dyn Connection>>;

    /// Listens on `addr`.
    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>>;
}

/// tokio TCP (`TCP_NODELAY` on every stream).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

struct TcpListener(tokio::net::TcpListener);

#[async_trait]
impl Listener for TcpListener {
    async fn accept(&mut self) -> io::Result<(Box<dyn Connection>, String)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((Box::new(stream), peer.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn connect(&self, addr: &str) -> io::Result<Box<dyn Connection>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }

    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(TcpListener(
            tokio::net::TcpListener::bind(addr).await?,
        )))
    }
}

/// Every timeout of the RPC layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Connecting to a peer.
    pub connect: Duration,
    /// One request/response round trip (Raft RPCs use openraft's own, shorter, deadline when it
    /// gives one).
    pub rpc: Duration,
    /// A server closes a connection on which no request arrives for this long.
    pub idle: Duration,
    /// A client request (a commit, a membership change) gives up after this long, retries
    /// included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            rpc: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(15),
        }
    }
}
