//! A process's connection to the runtime as a binding holds it.
//!
//! Requests can be submitted before the connection exists (a client is built
//! at module load, before the runtime is up): they wait, in order, for one
//! connect attempt that sends them all or fails them all. A session whose
//! connection was lost connects again on its next request, so a long-lived
//! caller outlives a restart of the runtime. A serving session is never
//! replaced: its worker must end with it.

use std::sync::{Arc, Mutex, RwLock};

use tokio::runtime::Handle;

use super::{connection_lost, Client, ConnectOptions, Dispatch, Sinks};
use crate::error::Result;
use crate::proto::message::{Message, Request, SyncResult};

/// Requests submitted while no connection is ready, in the order they came;
/// `Some` while one connect attempt is under way for all of them.
type Backlog = Mutex<Option<Vec<(Request, u64)>>>;

pub struct Session {
    options: ConnectOptions,
    sinks: Sinks,
    /// Where connect attempts run: the caller may be a thread outside tokio.
    runtime: Handle,
    connecting: tokio::sync::Mutex<()>,
    /// The connected client, readable without waiting, for the hot path.
    current: RwLock<Option<Arc<Client>>>,
    backlog: Backlog,
    /// The client whose tasks or messages are being read: a later reconnect
    /// must not silently swap it for one without them.
    attached: Mutex<Option<Arc<Client>>>,
}

impl Session {
    pub fn new(options: ConnectOptions, sinks: Sinks, runtime: Handle) -> Arc<Session> {
        Arc::new(Session {
            options,
            sinks,
            runtime,
            connecting: tokio::sync::Mutex::new(()),
            current: RwLock::new(None),
            backlog: Mutex::new(None),
            attached: Mutex::new(None),
        })
    }

    /// The connected client, if it is still open; never waits.
    fn ready(&self) -> Option<Arc<Client>> {
        self.current.read().unwrap().as_ref().filter(|client| !client.is_closed()).cloned()
    }

    /// The connected client, connecting first if need be.
    pub async fn client(&self) -> Result<Arc<Client>> {
        if let Some(client) = self.ready() {
            return Ok(client);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(client) = self.ready() {
            return Ok(client);
        }
        if self.options.serve && self.current.read().unwrap().is_some() {
            return Err(connection_lost());
        }
        let client = Arc::new(Client::connect(&self.options, self.sinks.clone()).await?);
        if let Some(poller) = &self.options.poller {
            poller.watch(client.clone());
        }
        *self.current.write().unwrap() = Some(client.clone());
        Ok(client)
    }

    /// Connects (if need be) and keeps this client for [`next_messages`]
    /// and [`complete`].
    ///
    /// [`next_messages`]: Session::next_messages
    /// [`complete`]: Session::complete
    pub async fn attach(&self) -> Result<Arc<Client>> {
        let client = self.client().await?;
        *self.attached.lock().unwrap() = Some(client.clone());
        Ok(client)
    }

    /// Sends a request whose reply goes to the completion sink with `tag`;
    /// its frame is queued for [`flush`](Session::flush). Returns the
    /// failure found before sending (a limit broken); a failure to connect
    /// goes to the sink.
    pub fn submit(self: &Arc<Self>, request: Request, tag: u64) -> Result<()> {
        let mut backlog = self.backlog.lock().unwrap();
        if backlog.is_none() {
            if let Some(client) = self.ready() {
                drop(backlog);
                return client.submit(request, tag, Dispatch::Queue);
            }
            *backlog = Some(Vec::new());
            self.runtime.spawn(self.clone().send_backlog());
        }
        backlog.as_mut().expect("set above").push((request, tag));
        Ok(())
    }

    /// Connects once for everything submitted meanwhile, then sends it in order.
    async fn send_backlog(self: Arc<Self>) {
        let connected = self.client().await;
        // Held while sending, so that nothing submitted meanwhile overtakes the backlog.
        let mut backlog = self.backlog.lock().unwrap();
        let mut failed = Vec::new();
        for (request, tag) in backlog.take().unwrap_or_default() {
            let sent = match &connected {
                Ok(client) => client.submit(request, tag, Dispatch::Queue),
                Err(error) => Err(error.clone()),
            };
            if let Err(error) = sent {
                failed.push((tag, Err(error)));
            }
        }
        if let Ok(client) = &connected {
            client.flush();
        }
        drop(backlog);
        if let (false, Some(sink)) = (failed.is_empty(), &self.sinks.completions) {
            sink(failed);
        }
    }

    /// Writes every frame queued by `submit` and `complete`.
    pub fn flush(&self) {
        if let Some(client) = self.ready() {
            client.flush();
        }
    }

    /// The messages of the attached client's subscriptions that are ready
    /// (at least one), or `None` once its connection is closed.
    pub async fn next_messages(&self) -> Option<Vec<Message>> {
        let client = self.attached.lock().unwrap().clone()?;
        client.next_messages().await
    }

    /// Messages the attached client dropped because too many were waiting.
    pub fn dropped_messages(&self) -> u64 {
        self.attached.lock().unwrap().as_ref().map_or(0, |client| client.dropped_messages())
    }

    /// Reports a finished task on the attached (serving) client; the frame
    /// is queued for [`flush`](Session::flush).
    pub fn complete(&self, task_id: u64, result: SyncResult) -> Result<()> {
        let client = self.attached.lock().unwrap().clone();
        let client = client.ok_or_else(|| crate::error::Error::runtime_unavailable("this session is not serving tasks"))?;
        client.complete(task_id, result, Dispatch::Queue)
    }
}
