//! A TCP relay on loopback whose open connections can go silent: they stop carrying bytes either
//! way and stay open, as a path does when a NAT or a load balancer forgets a connection without
//! resetting it. Only a keepalive notices that; connections made afterwards are relayed again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Stops relaying (and closes every connection) when dropped.
pub struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// One sender per connection opened so far: `true` silences it.
    silencers: Arc<Mutex<Vec<watch::Sender<bool>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays connections made to a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let silencers = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(
            listener,
            target,
            Arc::clone(&accepted),
            Arc::clone(&silencers),
        ));
        Ok(Self {
            addr,
            accepted,
            silencers,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every connection open now carries nothing more, either way, and stays open.
    pub fn silence_open_connections(&self) {
        for silencer in self.silencers.lock().unwrap().iter() {
            let _ = silencer.send(true);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The connections' tasks are in the accept task's `JoinSet`: aborted with it.
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    accepted: Arc<AtomicUsize>,
    silencers: Arc<Mutex<Vec<watch::Sender<bool>>>>,
) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        let (silence, silenced) = watch::channel(false);
        silencers.lock().unwrap().push(silence);
        connections.spawn(relay(client, target, silenced));
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut silenced: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let silent = async { silenced.wait_for(|silent| *silent).await.is_ok() };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        true = silent => {
            // Hold both sockets open, reading and writing nothing, until the relay is dropped.
            std::future::pending::<()>().await;
        }
    }
}
