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

/// An entry of `remoteFunctions`: a function of another gateway, and the
/// broker it is reached through (the first configured when absent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RemoteFunctionEntry {
    service_name: String,
    function_name: String,
    gateway_id: String,
    broker: Option<String>,
    /// Another name local callers may use for it, as a `functionId`.
    function_id: Option<String>,
}

/// An entry of `exposedFunctions`: a function of this gateway that other gateways may invoke.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExposedFunctionEntry {
    service_name: String,
    function_name: String,
}

/// A function on another gateway, as a caller here reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFunction {
    pub service_name: String,
    pub function_name: String,
    pub gateway_id: String,
    /// Index into the config's brokers.
    pub broker: usize,
}

/// Invocations between gateways: who this gateway is, what it may call
/// elsewhere, and what it lets others call here.
#[derive(Debug, Clone, Default)]
pub struct RemoteSettings {
    pub gateway_id: String,
    /// `remoteTimeoutMs`: how long a remote call waits for its answer.
    pub timeout: Duration,
    pub functions: Vec<RemoteFunction>,
    /// The names callers here use for remote functions: their ARN, their
    /// `functionId` if given, and their bare name after `FUNCTION_NAME_PREFIX`.
    names: std::collections::HashMap<String, usize>,
    /// The broker that `remoteFunctions` names for a gateway.
    gateway_brokers: std::collections::HashMap<String, usize>,
    /// `exposedFunctions`: indices of local functions, in the config's function list.
    pub exposed: std::collections::BTreeSet<usize>,
}

pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A topic level edgefc builds from a name: MQTT gives '/', '+' and '#' meanings.
pub(crate) fn check_topic_level(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
        return Err(Error::config(format!("{what} \"{value}\" must be non-empty, without '/', '+', '#'")));
    }
    Ok(())
}

impl RemoteSettings {
    /// `local` finds a local function by ARN; no remote function may share a local one's name.
    pub(crate) fn resolve(
        gateway_id: String,
        timeout: Duration,
        remote: Vec<RemoteFunctionEntry>,
        exposed: Vec<ExposedFunctionEntry>,
        brokers: &[BrokerSpec],
        local: impl Fn(&str) -> Option<usize>,
        name_prefix: &str,
    ) -> Result<RemoteSettings> {
        let mut settings = RemoteSettings { gateway_id, timeout, ..Default::default() };
        for entry in remote {
            let label = format!("remoteFunctions {}/{} on {}", entry.service_name, entry.function_name, entry.gateway_id);
            let in_entry = |message: String| Error::config(format!("{label}: {message}"));
            check_topic_level("serviceName", &entry.service_name)?;
            check_topic_level("functionName", &entry.function_name)?;
            check_topic_level("gatewayId", &entry.gateway_id)?;
            if entry.gateway_id == settings.gateway_id {
                return Err(in_entry("that is this gateway's own id; configure the function here instead".into()));
            }
            let broker = match &entry.broker {
                Some(name) => brokers
                    .iter()
                    .position(|broker| &broker.name == name)
                    .ok_or_else(|| in_entry(format!("broker {name} is not in mqtt.brokers")))?,
                None if brokers.is_empty() => return Err(in_entry("remote functions need a broker in mqtt.brokers".into())),
                None => 0,
            };
            let arn = crate::runtime::config::function_arn(&entry.service_name, &entry.function_name);
            if local(&arn).is_some() {
                return Err(in_entry("a local function has the same serviceName and functionName".into()));
            }
            let index = settings.functions.len();
            let bare = format!("{name_prefix}{}", entry.function_name);
            for name in [Some(arn), entry.function_id.clone(), Some(bare)].into_iter().flatten() {
                if local(&name).is_some() {
                    return Err(in_entry(format!("{name} already names a local function")));
                }
                if let Some(other) = settings.names.insert(name.clone(), index) {
                    if name.starts_with(name_prefix) {
                        // Two remote functions of one name: the bare name is ambiguous, so it names neither.
                        settings.names.insert(name, usize::MAX);
                    } else if other != index {
                        return Err(in_entry(format!("{name} names another remote function too")));
                    }
                }
            }
            settings.gateway_brokers.entry(entry.gateway_id.clone()).or_insert(broker);
            settings.functions.push(RemoteFunction {
                service_name: entry.service_name,
                function_name: entry.function_name,
                gateway_id: entry.gateway_id,
                broker,
            });
        }
        if !exposed.is_empty() && brokers.is_empty() {
            return Err(Error::config("exposedFunctions need a broker in mqtt.brokers"));
        }
        for entry in exposed {
            let arn = crate::runtime::config::function_arn(&entry.service_name, &entry.function_name);
            let index = local(&arn).ok_or_else(|| {
                Error::config(format!(
                    "exposedFunctions {}/{} names no configured function",
                    entry.service_name, entry.function_name
                ))
            })?;
            check_topic_level("serviceName", &entry.service_name)?;
            check_topic_level("functionName", &entry.function_name)?;
            settings.exposed.insert(index);
        }
        Ok(settings)
    }

    /// The remote function a local caller's target names, if any.
    pub fn named(&self, target: &str) -> Option<&RemoteFunction> {
        self.names.get(target).and_then(|&index| self.functions.get(index))
    }

    /// The broker through which gateway `gateway_id` is reached: the one
    /// `remoteFunctions` names for it, else the first configured.
    pub fn broker_for(&self, gateway_id: &str) -> usize {
        self.gateway_brokers.get(gateway_id).copied().unwrap_or(0)
    }
}
