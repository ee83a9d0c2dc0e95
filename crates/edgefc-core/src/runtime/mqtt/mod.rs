//! The MQTT bridge: routes whose target is `mqtt:<broker>` forward local
//! publishes to that broker, routes whose source is it deliver the broker's
//! messages to functions.
//!
//! - [`settings`]: `mqtt.brokers` in `edgefc.json`.
//! - `link`: one broker connection, its outbox and its reconnects.

mod link;
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
pub use settings::BrokerSpec;

/// Every broker link of a runtime, by the config's broker index.
pub(super) struct Bridge {
    links: Vec<Arc<Link>>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Bridge {
    /// Links for `brokers`, with what the outbox kept from before.
    pub(super) fn new(brokers: Vec<BrokerSpec>, store: &Arc<Store>, max_payload: usize) -> Result<Bridge> {
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
                None => super::log::warn(format_args!(
                    "the outbox holds message {} for broker {}, which is not configured; it stays in the store",
                    entry.seq, entry.broker
                )),
            }
        }
        Ok(Bridge { links, stop: CancellationToken::new(), tasks: std::sync::Mutex::new(Vec::new()) })
    }

    /// Connects every broker; `deliver(broker, topic, payload)` takes what each sends.
    pub(super) fn start<F, Fut>(&self, router: &Router, deliver: F)
    where
        F: Fn(usize, String, Payload) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        for (index, link) in self.links.iter().enumerate() {
            let deliver = deliver.clone();
            let from_broker: Deliver = Arc::new(move |topic, payload| deliver(index, topic, payload).boxed());
            let task = tokio::spawn(link.clone().run(router.broker_subscriptions(index), from_broker, self.stop.clone()));
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
