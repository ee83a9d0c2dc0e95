//! The MQTT bridge: routes whose target is `mqtt:<broker>` forward local
//! publishes to that broker, routes whose source is it deliver the broker's
//! messages to functions.
//!
//! - [`settings`]: `mqtt.brokers`, `remoteFunctions` and `exposedFunctions` in `edgefc.json`.
//! - `link`: one broker connection, its outbox and its reconnects.
//! - [`remote`]: invocations between gateways, over MQTT 5 request/response.

mod link;
pub mod remote;
pub mod settings;

use std::sync::Arc;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::router::Router;
use super::store::Store;
use crate::error::Result;
use crate::proto::frame::Payload;
pub use link::LinkStats;
use link::{Deliver, Link};
use remote::{Answer, Remote, RemoteCall, Serve};
pub use remote::{IncomingRequest, RemoteStats};
pub use settings::{BrokerSpec, RemoteSettings};

/// Every broker link of a runtime, by the config's broker index.
pub(super) struct Bridge {
    links: Vec<Arc<Link>>,
    remote: Arc<Remote>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Bridge {
    /// Links for `brokers`, with what the outbox kept from before;
    /// `exposed` names (`serviceName/functionName`) what other gateways may call.
    pub(super) fn new(
        brokers: Vec<BrokerSpec>,
        remote: RemoteSettings,
        exposed: Vec<String>,
        store: &Arc<Store>,
        max_payload: usize,
    ) -> Result<Bridge> {
        if brokers.iter().any(|broker| matches!(broker.transport, settings::BrokerTransport::Tls { .. })) {
            // rustls needs one crypto provider for the process; another part of it may have installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let links: Vec<Arc<Link>> =
            brokers.into_iter().map(|spec| Arc::new(Link::new(spec, store.clone(), max_payload))).collect();
        for entry in store.outbox()? {
            match links.iter().find(|link| link.spec.name == entry.broker) {
                Some(link) => link.restore(entry.seq, entry.size),
                // Kept: it goes once that broker is configured again.
                None => crate::warn!(
                    "mqtt",
                    "the outbox holds message {} for broker {}, which is not configured; it stays in the store",
                    entry.seq,
                    entry.broker
                ),
            }
        }
        Ok(Bridge {
            links,
            remote: Arc::new(Remote::new(remote, exposed)),
            stop: CancellationToken::new(),
            tasks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Connects every broker; `deliver(broker, topic, payload)` takes what
    /// each sends along the routes, `serve` runs other gateways' requests.
    pub(super) fn start<F, Fut, S, SFut>(&self, router: &Router, deliver: F, serve: S)
    where
        F: Fn(usize, String, Payload) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
        S: Fn(IncomingRequest) -> SFut + Send + Sync + 'static,
        SFut: std::future::Future<Output = Result<Answer>> + Send + 'static,
    {
        let serve: Serve = Arc::new(move |request| serve(request).boxed());
        self.remote.set_serve(serve);
        for (index, link) in self.links.iter().enumerate() {
            let deliver = deliver.clone();
            let from_broker: Deliver = Arc::new(move |topic, payload| deliver(index, topic, payload).boxed());
            let subscriptions = router.broker_subscriptions(index);
            let task = tokio::spawn(link.clone().run(subscriptions, from_broker, self.remote.clone(), self.stop.clone()));
            self.tasks.lock().unwrap().push(task);
        }
    }

    /// A QoS 1 message for broker `broker`: durable in its outbox before this returns.
    pub(super) async fn post(&self, broker: usize, topic: String, payload: Payload) -> Result<()> {
        self.links[broker].post(topic, payload).await
    }

    /// A QoS 0 message for broker `broker`.
    pub(super) fn offer(&self, broker: usize, topic: String, payload: Payload) {
        self.links[broker].offer(topic, payload);
    }

    /// Calls a function on another gateway, and waits for its answer.
    pub(super) async fn call(&self, call: RemoteCall) -> Result<Answer> {
        let link = self.links.get(call.broker).cloned().ok_or_else(|| {
            crate::error::Error::new(
                crate::error::ErrorCode::FunctionNotFound,
                format!("gateway {} is reached through a broker, and mqtt.brokers names none", call.gateway_id),
            )
        })?;
        self.remote.call(&link, call).await
    }

    pub(super) fn remote_stats(&self) -> RemoteStats {
        self.remote.stats()
    }

    pub(super) fn name(&self, broker: usize) -> &str {
        &self.links[broker].spec.name
    }

    pub(super) fn stats(&self) -> Vec<LinkStats> {
        self.links.iter().map(|link| link.stats()).collect()
    }

    /// Ends every link and waits until they have: nothing comes from a
    /// broker after this (what is unacknowledged stays in the outbox, and
    /// in the broker's session).
    pub(super) async fn stop(&self) {
        self.stop.cancel();
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Bridge {
    /// A runtime dropped without `stop` takes its links with it.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
