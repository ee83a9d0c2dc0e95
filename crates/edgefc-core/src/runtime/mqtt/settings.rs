//! `mqtt` in `edgefc.json`: the brokers this gateway speaks to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MqttEntry {
    #[serde(default)]
    brokers: BTreeMap<String, BrokerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerEntry {
    url: String,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    protocol: Option<u8>,
    keep_alive_secs: Option<u64>,
    session_expiry_secs: Option<u32>,
    tls: Option<TlsEntry>,
    #[serde(default)]
    outbox: OutboxEntry,
    #[serde(default)]
    reconnect: ReconnectEntry,
    max_inflight: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsEntry {
    ca: std::path::PathBuf,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutboxEntry {
    max_messages: Option<usize>,
    max_bytes: Option<usize>,
    on_full: Option<OnFull>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReconnectEntry {
    base_ms: Option<u64>,
    cap_ms: Option<u64>,
}

/// What a full outbox does with one more QoS 1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnFull {
    /// The oldest message waiting is dropped (logged and counted), as Link
    /// IoT Edge and Greengrass do.
    #[default]
    DropOldest,
    /// The publish fails with `ERR_QUEUE_FULL`.
    RejectNew,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTransport {
    Tcp,
    Tls { ca: Vec<u8>, client_auth: Option<(Vec<u8>, Vec<u8>)> },
}

/// One broker, as the bridge uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub transport: BrokerTransport,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
    pub session_expiry_secs: u32,
    pub max_messages: usize,
    pub max_bytes: usize,
    pub on_full: OnFull,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// QoS 1 messages sent and not yet acknowledged, at most.
    pub max_inflight: u16,
}

pub const DEFAULT_OUTBOX_MESSAGES: usize = 100_000;
pub const DEFAULT_OUTBOX_BYTES: usize = 64 << 20;

impl MqttEntry {
    /// The brokers, in name order; `gateway_id` is the default client id.
    pub(crate) fn brokers(self, base: &Path, gateway_id: &str) -> Result<Vec<BrokerSpec>> {
        self.brokers.into_iter().map(|(name, entry)| entry.resolve(name, base, gateway_id)).collect()
    }
}

impl BrokerEntry {
    fn resolve(self, name: String, base: &Path, gateway_id: &str) -> Result<BrokerSpec> {
        let in_broker = |message: String| Error::config(format!("mqtt.brokers.{name}: {message}"));
        if name.is_empty() || name.contains(['/', ':', '+', '#']) {
            return Err(in_broker("a broker's name is not empty and has no '/', ':', '+' or '#'".into()));
        }
        match self.protocol.unwrap_or(5) {
            5 => {}
            other => return Err(in_broker(format!("protocol {other} is not supported; edgefc speaks MQTT 5"))),
        }
        let (scheme, rest) =
            self.url.split_once("://").ok_or_else(|| in_broker(format!("url {} must look like mqtt://host:port", self.url)))?;
        let (default_port, tls) = match scheme {
            "mqtt" | "tcp" => (1883, false),
            "mqtts" | "ssl" => (8883, true),
            other => return Err(in_broker(format!("url scheme {other} is not mqtt:// or mqtts://"))),
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                (host.to_string(), port.parse::<u16>().map_err(|_| in_broker(format!("port {port} is not a port number")))?)
            }
            None => (authority.to_string(), default_port),
        };
        if host.is_empty() {
            return Err(in_broker(format!("url {} names no host", self.url)));
        }
        let read = |path: &std::path::Path| {
            std::fs::read(base.join(path)).map_err(|error| in_broker(format!("cannot read {}: {error}", path.display())))
        };
        let transport = match (tls, self.tls) {
            (false, None) => BrokerTransport::Tcp,
            (false, Some(_)) => return Err(in_broker("tls needs an mqtts:// url".into())),
            (true, None) => return Err(in_broker("an mqtts:// url needs tls.ca".into())),
            (true, Some(entry)) => {
                let client_auth = match (entry.cert, entry.key) {
                    (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
                    (None, None) => None,
                    _ => return Err(in_broker("tls.cert and tls.key come together".into())),
                };
                BrokerTransport::Tls { ca: read(&entry.ca)?, client_auth }
            }
        };
        let credentials = match (self.username, self.password) {
            (Some(username), password) => Some((username, password.unwrap_or_default())),
            (None, None) => None,
            (None, Some(_)) => return Err(in_broker("a password needs a username".into())),
        };
        let positive = |key: &str, value: Option<u64>, default: u64, max: u64| match value {
            None => Ok(default),
            Some(value) if (1..=max).contains(&value) => Ok(value),
            Some(value) => Err(in_broker(format!("{key} must be between 1 and {max}; got {value}"))),
        };
        let reconnect_base = positive("reconnect.baseMs", self.reconnect.base_ms, 1000, 3_600_000)?;
        let reconnect_cap = positive("reconnect.capMs", self.reconnect.cap_ms, 30_000, 3_600_000)?.max(reconnect_base);
        Ok(BrokerSpec {
            host,
            port,
            transport,
            client_id: self.client_id.unwrap_or_else(|| format!("{gateway_id}-{name}")),
            credentials,
            // rumqttc takes no keep-alive under 5 s.
            keep_alive: Duration::from_secs(match self.keep_alive_secs {
                Some(secs) if !(5..=65_535).contains(&secs) => {
                    return Err(in_broker(format!("keepAliveSecs must be between 5 and 65535; got {secs}")))
                }
                secs => secs.unwrap_or(30),
            }),
            session_expiry_secs: self.session_expiry_secs.unwrap_or(3600),
            max_messages: positive(
                "outbox.maxMessages",
                self.outbox.max_messages.map(|v| v as u64),
                DEFAULT_OUTBOX_MESSAGES as u64,
                100_000_000,
            )? as usize,
            max_bytes: positive(
                "outbox.maxBytes",
                self.outbox.max_bytes.map(|v| v as u64),
                DEFAULT_OUTBOX_BYTES as u64,
                16 << 30,
            )? as usize,
            on_full: self.outbox.on_full.unwrap_or_default(),
            reconnect_base: Duration::from_millis(reconnect_base),
            reconnect_cap: Duration::from_millis(reconnect_cap),
            max_inflight: positive("maxInflight", self.max_inflight.map(u64::from), 100, 65_535)? as u16,
            name,
        })
    }
}
