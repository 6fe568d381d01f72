//! [`SimTransport`]: zcore-cluster's [`Transport`] on turmoil's simulated TCP.
//!
//! Addresses are `host:port` with turmoil host names (`n1:7000`), resolved by turmoil's DNS.
//! turmoil's TCP never retransmits and a connect to a crashed host hangs until the host is
//! bounced, so every caller bounds connects and round trips with its own timeout (the
//! cluster's RPC layer does; the workload clients do too).

use std::io;

use async_trait::async_trait;
use zcore_cluster::transport::{Connection, Listener, Transport};

/// turmoil TCP as the cluster's byte transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimTransport;

struct SimListener(turmoil::net::TcpListener);

#[async_trait]
impl Listener for SimListener {
    async fn accept(&mut self) -> io::Result<(Box<dyn Connection>, String)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((Box::new(stream), peer.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn connect(&self, addr: &str) -> io::Result<Box<dyn Connection>> {
        let stream = turmoil::net::TcpStream::connect(addr).await?;
        Ok(Box::new(stream))
    }

    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(SimListener(
            turmoil::net::TcpListener::bind(addr).await?,
        )))
    }
}
