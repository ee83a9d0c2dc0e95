//! The runtime's configuration file (`edgefc.json`) and the function table
//! built from it. Paths in the file are relative to the file itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::observe::ObserveSettings;
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{HEADER_LEN, MAX_FIELDS_LEN};
use crate::runtime::identity::RunAs;
use crate::runtime::mqtt::settings::{
    BrokerSpec, ExposedFunctionEntry, MqttEntry, RemoteFunctionEntry, RemoteSettings, DEFAULT_REMOTE_TIMEOUT,
};
use crate::runtime::router::{Route, RouteSource, RouteTarget, Router, TopicFilter};
use crate::runtime::store::StoreLimits;

pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The longest `timeoutMs`, and the longest a caller's API may ask for.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
pub const DEFAULT_MAX_QUEUED: usize = 10_000;
/// Payload bytes one function's running and waiting invocations may hold.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 32 << 20;
pub const DEFAULT_MAX_TOTAL_QUEUED: usize = 20_000;
pub const DEFAULT_MAX_TOTAL_QUEUED_BYTES: usize = 64 << 20;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// MB; a Node worker takes about 45 MB before it does anything.
pub const DEFAULT_MEMORY_SIZE_MB: u64 = 256;
/// What `ROUTER_FUNCTION_ID` holds: invoking it Async publishes, as upstream.
pub const ROUTER_FUNCTION_ID: &str = "edgefc:router";
/// A name that always reaches the configured `thingFunction`, for callers
/// outside the runtime, which have no `THING_FUNCTION_ID`.
pub const THING_FUNCTION_ALIAS: &str = "edgefc:thing-function";
/// Before a bare `functionName` in an invocation's target: the function of
/// that name in the caller's own service, else the only one of that name.
pub const FUNCTION_NAME_PREFIX: &str = "edgefc:name:";
/// Before `<gatewayId>:<target>` in an invocation's target: that function
/// on that gateway (`invokeFunction`'s `gatewayId`).
pub const GATEWAY_PREFIX: &str = "edgefc:gateway:";
pub const DEFAULT_STATE_DIR: &str = ".edgefc";
/// `gatewayId` where neither the config nor the system names one.
pub const DEFAULT_GATEWAY_ID: &str = "edgefc";
pub const SOCKET_FILE: &str = "edgefc.sock";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// What the observe listener asks for when it is not on a loopback address.
pub const OBSERVE_TOKEN_FILE: &str = "observe.token";

/// Longest path a Unix socket address holds on Linux (`sun_path` less the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    functions: Vec<FunctionEntry>,
    state_dir: Option<PathBuf>,
    max_payload_bytes: Option<usize>,
    max_queued_invocations: Option<usize>,
    max_queued_bytes: Option<usize>,
    max_total_queued_invocations: Option<usize>,
    max_total_queued_bytes: Option<usize>,
    #[serde(default)]
    connections: ConnectionsEntry,
    #[serde(default)]
    log: LogEntry,
    #[serde(default)]
    store: StoreEntry,
    #[serde(default)]
    retry: RetryEntry,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    thing_function: Option<String>,
    credentials: Option<Credentials>,
    /// The default of every function's `runAs`.
    run_as: Option<RunAsEntry>,
    shutdown_grace_ms: Option<u64>,
    gateway_id: Option<String>,
    #[serde(default)]
    mqtt: MqttEntry,
    remote_timeout_ms: Option<u64>,
    #[serde(default)]
    remote_functions: Vec<RemoteFunctionEntry>,
    #[serde(default)]
    exposed_functions: Vec<ExposedFunctionEntry>,
    observe: Option<ObserveEntry>,
}

/// `observe`: where `/metrics` and the status page are served.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObserveEntry {
    listen: Option<String>,
}

/// Where `"observe": {}` listens: loopback, Prometheus' port for exporters like this one.
pub const DEFAULT_OBSERVE_LISTEN: &str = "127.0.0.1:9464";

impl ObserveEntry {
    fn settings(self) -> Result<ObserveSettings> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_OBSERVE_LISTEN);
        let listen = listen.parse().map_err(|_| {
            Error::config(format!(
                "observe.listen \"{listen}\" must be an IP address and port, like \"{DEFAULT_OBSERVE_LISTEN}\""
            ))
        })?;
        Ok(ObserveSettings { listen })
    }
}

/// `runAs`: `"runtime"`, or `{"uid": …, "gid": …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RunAsEntry {
    Named(String),
    Ids(UserIds),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIds {
    uid: u32,
    gid: u32,
}

impl RunAsEntry {
    fn resolve(entry: Option<RunAsEntry>, default: RunAs) -> Result<RunAs> {
        match entry {
            None => Ok(default),
            Some(RunAsEntry::Named(name)) if name == "runtime" => Ok(RunAs::Runtime),
            Some(RunAsEntry::Ids(UserIds { uid, gid })) if uid != u32::MAX && gid != u32::MAX => Ok(RunAs::Ids { uid, gid }),
            Some(_) => {
                Err(Error::config("runAs must be \"runtime\" or {\"uid\": <number>, \"gid\": <number>} (ids below 4294967295)"))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteEntry {
    source: String,
    topic_filter: String,
    target: String,
    /// 0 (at most once, the default) or 1 (at least once, durable).
    qos: Option<u8>,
}

/// The credentials functions get from `CredentialProviderChain`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default)]
    pub security_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunMode {
    /// Started on the first event, stopped after `idleTimeoutMs` without one.
    #[default]
    OnDemand,
    /// Started with the runtime and kept running; restarted after a crash.
    LongLived,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FunctionEntry {
    service_name: String,
    function_name: String,
    function_id: Option<String>,
    code_dir: PathBuf,
    #[serde(default)]
    flavor: Flavor,
    handler: Option<String>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<usize>,
    max_queued_invocations: Option<usize>,
    max_queued_bytes: Option<usize>,
    #[serde(default)]
    run_mode: RunMode,
    idle_timeout_ms: Option<u64>,
    /// MB, as in Link IoT Edge.
    memory_size: Option<u64>,
    run_as: Option<RunAsEntry>,
    #[serde(default)]
    retry: RetryEntry,
}

impl RouteEntry {
    fn resolve(&self, table: &FunctionTable, brokers: &[BrokerSpec]) -> Result<Route> {
        let source = match self.source.as_str() {
            "any" => RouteSource::Any,
            other => match endpoint_named(table, brokers, other, "route source")? {
                RouteTarget::Function(index) => RouteSource::Function(index),
                RouteTarget::Broker(index) => RouteSource::Broker(index),
            },
        };
        let filter = TopicFilter::parse(&self.topic_filter)
            .map_err(|error| Error::config(format!("route topicFilter: {}", error.message)))?;
        let durable = match self.qos.unwrap_or(0) {
            0 => false,
            1 => true,
            other => return Err(Error::config(format!("route qos must be 0 or 1; got {other}"))),
        };
        let target = endpoint_named(table, brokers, &self.target, "route target")?;
        if let (RouteSource::Broker(_), RouteTarget::Broker(_)) = (source, target) {
            return Err(Error::config(format!(
                "route from {} to {}: messages from a broker go to functions (bridge brokers with the brokers themselves)",
                self.source, self.target
            )));
        }
        Ok(Route { source, filter, target, durable })
    }
}

/// A route's end: `function:<functionId>`, or `mqtt:<broker>` for a configured broker.
fn endpoint_named(table: &FunctionTable, brokers: &[BrokerSpec], reference: &str, what: &str) -> Result<RouteTarget> {
    if let Some(name) = reference.strip_prefix("mqtt:") {
        return brokers
            .iter()
            .position(|broker| broker.name == name)
            .map(RouteTarget::Broker)
            .ok_or_else(|| Error::config(format!("{what} \"{reference}\" names no broker of mqtt.brokers")));
    }
    if !reference.starts_with("function:") {
        return Err(Error::config(format!(
            "{what} \"{reference}\" must look like \"function:<functionId>\" or \"mqtt:<broker>\""
        )));
    }
    function_named(table, reference, what).map(RouteTarget::Function)
}

/// The machine's host name: the default `gatewayId`, so that two gateways
/// left on defaults do not share broker client ids (and sessions).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most the buffer's length.
    let written = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let name = written.then(|| {
        let end = buffer.iter().position(|&byte| byte == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end]).replace(['/', '+', '#'], "-")
    });
    name.filter(|name| !name.is_empty()).unwrap_or_else(|| DEFAULT_GATEWAY_ID.to_string())
}

/// The function a route names as `function:<functionId>`.
fn function_named(table: &FunctionTable, reference: &str, what: &str) -> Result<usize> {
    let id = reference
        .strip_prefix("function:")
        .ok_or_else(|| Error::config(format!("{what} \"{reference}\" must look like \"function:<functionId>\"")))?;
    table.get(id).ok_or_else(|| Error::config(format!("{what} \"{reference}\" names no configured function")))
}

/// Which platform's handler convention a function's code follows; the
/// worker calls it that way. Any caller API reaches any flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Link IoT Edge / Function Compute: `handler(event, context, callback)`.
    #[default]
    Linkedge,
    /// WeChat cloud functions: `main(event, context)`, returning the result.
    Wechat,
    /// 知晓云 cloud functions: `main(event, callback)`.
    Minapp,
    /// Supabase Edge Functions: a Web `Request` in, a `Response` out.
    Supabase,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Linkedge => "linkedge",
            Flavor::Wechat => "wechat",
            Flavor::Minapp => "minapp",
            Flavor::Supabase => "supabase",
        }
    }

    /// Each platform's own default: `index.handler`, `index.main`, or (for
    /// Supabase) the module `index` itself, whichever of its forms it uses.
    fn default_handler(self) -> &'static str {
        match self {
            Flavor::Linkedge => "index.handler",
            Flavor::Wechat | Flavor::Minapp => "index.main",
            Flavor::Supabase => "index",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub service_name: String,
    pub function_name: String,
    /// The configured id, or the function's ARN when none is configured.
    pub function_id: String,
    pub code_dir: PathBuf,
    /// File (relative to `code_dir`, without `.js`) and exported name.
    pub handler_file: String,
    /// Empty for a Supabase function whose module itself is the handler.
    pub handler_export: String,
    pub flavor: Flavor,
    pub timeout: Duration,
    /// Whether `timeout` is the function's own `timeoutMs` (else the
    /// default, which a caller's API may replace: see [`FunctionSpec::timeout_for`]).
    pub timeout_configured: bool,
    pub max_concurrency: usize,
    /// Invocations and messages that may wait beyond `max_concurrency`.
    pub max_queued: usize,
    /// Payload bytes the running and waiting invocations may hold together.
    pub max_queued_bytes: usize,
    pub run_mode: RunMode,
    pub idle_timeout: Duration,
    /// The most memory (resident set) the function's worker may use.
    pub memory_limit_bytes: u64,
    /// Which user its workers run as.
    pub run_as: RunAs,
    /// What happens to a failed Async invocation.
    pub retry: RetryPolicy,
}

/// `retry` of a function (or the top level): how often, and how long, a
/// failed Async invocation is tried again before it becomes a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Before the second attempt; each later one waits four times longer, ±20%.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// An invocation accepted longer ago than this is not tried again.
    pub max_event_age: Duration,
}

impl FunctionSpec {
    pub fn arn(&self) -> String {
        function_arn(&self.service_name, &self.function_name)
    }

    pub fn handler(&self) -> String {
        if self.handler_export.is_empty() {
            self.handler_file.clone()
        } else {
            format!("{}.{}", self.handler_file, self.handler_export)
        }
    }

    /// How long one run may take when the caller's API implies
    /// `default_timeout_secs` (0: no opinion): the function's own
    /// `timeoutMs` wins over it, and it over the runtime's default. No
    /// caller gets more than a config could set (`MAX_TIMEOUT_MS`).
    pub fn timeout_for(&self, default_timeout_secs: u16) -> Duration {
        if self.timeout_configured || default_timeout_secs == 0 {
            self.timeout
        } else {
            Duration::from_millis((u64::from(default_timeout_secs) * 1000).min(MAX_TIMEOUT_MS))
        }
    }

    /// The files `require` may load for the handler, in its order.
    pub fn handler_candidates(&self) -> [PathBuf; 2] {
        handler_candidates(&self.code_dir, &self.handler_file)
    }
}

/// The ARN the upstream SDK builds from a service and function name.
pub fn function_arn(service_name: &str, function_name: &str) -> String {
    format!("acs:fc:::service:{service_name}:function:{function_name}")
}

#[derive(Debug, Clone)]
pub struct Config {
    pub functions: Vec<FunctionSpec>,
    /// Every name a function answers to, with the thing function's alias.
    pub table: FunctionTable,
    pub state_dir: PathBuf,
    pub max_payload: usize,
    pub router: Router,
    /// This gateway's name among others (`gatewayId`); brokers' default client ids start with it.
    pub gateway_id: String,
    /// `mqtt.brokers`, in name order: what `mqtt:<broker>` route ends index.
    pub brokers: Vec<BrokerSpec>,
    /// `remoteFunctions`, `exposedFunctions` and `remoteTimeoutMs`: invocations between gateways.
    pub remote: RemoteSettings,
    /// Index of the function that serves thing operations.
    pub thing_function: Option<usize>,
    pub credentials: Option<Credentials>,
    pub limits: Limits,
    /// How long calls already taken may run on once the runtime is asked to stop.
    pub shutdown_grace: Duration,
    /// `observe`: the metrics and status page listener, off unless configured.
    pub observe: Option<ObserveSettings>,
}

/// The runtime-wide bounds; each has a config key, a default and a range.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Invocations admitted (running or waiting) across every function.
    pub max_total_queued: usize,
    /// Their payload bytes.
    pub max_total_queued_bytes: usize,
    pub connections: ConnectionLimits,
    pub log: LogLimits,
    pub store: StoreLimits,
}

/// `"connections"` in edgefc.json.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Authenticated connections open at once; more are refused.
    pub max: usize,
    /// Connections that have not said Hello yet; a new one closes the oldest.
    pub max_unauthenticated: usize,
    pub hello_timeout: Duration,
    /// The whole Hello frame, token included.
    pub max_hello_bytes: usize,
    /// Unwritten output past which the runtime stops reading the peer's
    /// requests and drops (or disconnects, per `slow_subscriber`) its messages.
    pub max_output_bytes: usize,
    /// Unwritten output past which a peer that does not read is disconnected.
    pub close_output_bytes: usize,
    /// Unwritten output of every connection together past which a connection
    /// more than 64 KiB behind counts as past `max_output_bytes`, and one past
    /// that as past `close_output_bytes`.
    pub max_total_output_bytes: usize,
    /// Invocations of one connection being answered at once; more are refused.
    pub max_in_flight: usize,
    /// Topic filters one connection may subscribe to.
    pub max_subscriptions: usize,
    pub slow_subscriber: SlowSubscriber,
}

/// What happens to a subscriber whose connection is `max_output_bytes` behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SlowSubscriber {
    /// Its messages are dropped (and counted) until it catches up.
    #[default]
    Drop,
    /// It is disconnected.
    Disconnect,
}

/// `"log"` in edgefc.json.
#[derive(Debug, Clone)]
pub struct LogLimits {
    /// A function's output line longer than this is split.
    pub max_line_bytes: usize,
    /// Lines waiting for a slow stdout (or stderr) before new ones are dropped.
    pub max_waiting_lines: usize,
    /// Their bytes.
    pub max_waiting_bytes: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectionsEntry {
    max: Option<usize>,
    max_unauthenticated: Option<usize>,
    hello_timeout_ms: Option<u64>,
    max_hello_bytes: Option<usize>,
    max_output_bytes: Option<usize>,
    close_output_bytes: Option<usize>,
    max_total_output_bytes: Option<usize>,
    max_in_flight: Option<usize>,
    max_subscriptions: Option<usize>,
    #[serde(default)]
    slow_subscriber: SlowSubscriber,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LogEntry {
    max_line_bytes: Option<usize>,
    max_waiting_lines: Option<usize>,
    max_waiting_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoreEntry {
    max_bytes: Option<usize>,
    max_dead_letters: Option<usize>,
    max_dead_letter_bytes: Option<usize>,
    cache_bytes: Option<usize>,
}

impl StoreEntry {
    fn limits(self) -> Result<StoreLimits> {
        let max_bytes = bounded("store.maxBytes", self.max_bytes, 256 * MIB, MIB..=64 * GIB)?;
        Ok(StoreLimits {
            max_bytes,
            max_dead_letters: bounded("store.maxDeadLetters", self.max_dead_letters, 10_000, 1..=10_000_000)?,
            max_dead_letter_bytes: bounded("store.maxDeadLetterBytes", self.max_dead_letter_bytes, 64 * MIB, KIB..=max_bytes)?,
            cache_bytes: bounded("store.cacheBytes", self.cache_bytes, 32 * MIB, MIB..=16 * GIB)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryEntry {
    max_attempts: Option<u32>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    max_event_age_ms: Option<u64>,
}

impl RetryEntry {
    /// This entry's values where it has them, `defaults`' elsewhere.
    fn policy(self, defaults: &RetryPolicy) -> Result<RetryPolicy> {
        let day = 86_400_000;
        Ok(RetryPolicy {
            max_attempts: bounded("retry.maxAttempts", self.max_attempts, defaults.max_attempts, 1..=100)?,
            backoff: bounded_ms("retry.backoffMs", self.backoff_ms, defaults.backoff, 1..=day)?,
            max_backoff: bounded_ms("retry.maxBackoffMs", self.max_backoff_ms, defaults.max_backoff, 1..=day)?,
            max_event_age: bounded_ms("retry.maxEventAgeMs", self.max_event_age_ms, defaults.max_event_age, 1_000..=7 * day)?,
        })
    }
}

/// Lambda's defaults for asynchronous invocations, with shorter delays for an edge box.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(300),
    max_event_age: Duration::from_secs(6 * 3600),
};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// `value` (or `default` when unset) if it lies in `range`; otherwise a
/// one-line error naming `key`.
fn bounded<T>(key: &str, value: Option<T>, default: T, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    let value = value.unwrap_or(default);
    if !range.contains(&value) {
        return Err(Error::config(format!("{key} must be between {} and {}; got {value}", range.start(), range.end())));
    }
    Ok(value)
}

/// A duration in milliseconds, as [`bounded`] checks it.
fn bounded_ms(key: &str, value: Option<u64>, default: Duration, range: std::ops::RangeInclusive<u64>) -> Result<Duration> {
    bounded(key, value, default.as_millis() as u64, range).map(Duration::from_millis)
}

impl ConnectionsEntry {
    /// `max_payload` sizes the close bound: a peer that reads must never be
    /// closed because two large replies happened to be on their way.
    fn limits(self, max_payload: usize) -> Result<ConnectionLimits> {
        let max_output_bytes = bounded("connections.maxOutputBytes", self.max_output_bytes, 4 * MIB, 64 * KIB..=GIB)?;
        let least_close = max_output_bytes + 2 * (max_payload + MAX_FIELDS_LEN + HEADER_LEN);
        Ok(ConnectionLimits {
            max: bounded("connections.max", self.max, 1000, 1..=100_000)?,
            max_unauthenticated: bounded("connections.maxUnauthenticated", self.max_unauthenticated, 64, 1..=10_000)?,
            hello_timeout: Duration::from_millis(bounded(
                "connections.helloTimeoutMs",
                self.hello_timeout_ms,
                3_000,
                1..=60_000,
            )?),
            max_hello_bytes: bounded("connections.maxHelloBytes", self.max_hello_bytes, 4 * KIB, 256..=MIB)?,
            max_output_bytes,
            close_output_bytes: bounded(
                "connections.closeOutputBytes",
                self.close_output_bytes,
                (64 * MIB).max(least_close),
                least_close..=4 * GIB,
            )?,
            max_total_output_bytes: bounded(
                "connections.maxTotalOutputBytes",
                self.max_total_output_bytes,
                128 * MIB,
                MIB..=16 * GIB,
            )?,
            max_in_flight: bounded("connections.maxInFlight", self.max_in_flight, 1024, 1..=65_536)?,
            max_subscriptions: bounded("connections.maxSubscriptions", self.max_subscriptions, 256, 1..=65_536)?,
            slow_subscriber: self.slow_subscriber,
        })
    }
}

impl LogEntry {
    fn limits(self) -> Result<LogLimits> {
        let limits = LogLimits {
            max_line_bytes: bounded("log.maxLineBytes", self.max_line_bytes, 64 * KIB, 256..=16 * MIB)?,
            max_waiting_lines: bounded(
                "log.maxWaitingLines",
                self.max_waiting_lines,
                super::log::MAX_WAITING_LINES,
                16..=1_000_000,
            )?,
            max_waiting_bytes: bounded(
                "log.maxWaitingBytes",
                self.max_waiting_bytes,
                super::log::MAX_WAITING_BYTES,
                64 * KIB..=GIB,
            )?,
        };
        // A line the queue could never hold would always be dropped.
        if limits.max_line_bytes + LINE_PREFIX_ROOM > limits.max_waiting_bytes {
            return Err(Error::config(format!(
                "log.maxWaitingBytes ({}) must exceed log.maxLineBytes ({}) by at least {LINE_PREFIX_ROOM}",
                limits.max_waiting_bytes, limits.max_line_bytes
            )));
        }
        Ok(limits)
    }
}

/// What a logged line may add to a function's output line: its prefix.
const LINE_PREFIX_ROOM: usize = 4 * KIB;

impl Config {
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join(SOCKET_FILE)
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join(ADMIN_TOKEN_FILE)
    }

    pub fn observe_token_path(&self) -> PathBuf {
        self.state_dir.join(OBSERVE_TOKEN_FILE)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::config(format!("cannot read config {}: {error}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|error| Error::config(format!("{}: {}", path.display(), error.message)))
    }

    /// Parses a config whose relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let file: ConfigFile = serde_json::from_str(text).map_err(|error| Error::config(error.to_string()))?;
        let base = std::path::absolute(base).map_err(|error| Error::config(error.to_string()))?;
        let state_dir = base.join(file.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)));
        let max_payload = bounded("maxPayloadBytes", file.max_payload_bytes, DEFAULT_MAX_PAYLOAD, 1..=64 * MIB)?;
        let defaults = FunctionDefaults {
            max_queued: bounded("maxQueuedInvocations", file.max_queued_invocations, DEFAULT_MAX_QUEUED, 0..=1_000_000)?,
            max_queued_bytes: bounded("maxQueuedBytes", file.max_queued_bytes, DEFAULT_MAX_QUEUED_BYTES, KIB..=16 * GIB)?,
            run_as: RunAsEntry::resolve(file.run_as, RunAs::default())?,
            retry: file.retry.policy(&DEFAULT_RETRY)?,
        };
        let limits = Limits {
            max_total_queued: bounded(
                "maxTotalQueuedInvocations",
                file.max_total_queued_invocations,
                DEFAULT_MAX_TOTAL_QUEUED,
                1..=10_000_000,
            )?,
            max_total_queued_bytes: bounded(
                "maxTotalQueuedBytes",
                file.max_total_queued_bytes,
                DEFAULT_MAX_TOTAL_QUEUED_BYTES,
                KIB..=16 * GIB,
            )?,
            connections: file.connections.limits(max_payload)?,
            log: file.log.limits()?,
            store: file.store.limits()?,
        };
        let functions = file
            .functions
            .into_iter()
            .map(|entry| FunctionSpec::from_entry(entry, &base, &defaults))
            .collect::<Result<Vec<_>>>()?;
        let mut table = FunctionTable::build(&functions)?;
        let gateway_id = file.gateway_id.unwrap_or_else(host_name);
        if gateway_id.is_empty() || gateway_id.contains(['/', '+', '#']) {
            return Err(Error::config(format!("gatewayId \"{gateway_id}\" must be non-empty, without '/', '+' or '#'")));
        }
        let brokers = file.mqtt.brokers(&base, &gateway_id)?;
        let remote = RemoteSettings::resolve(
            gateway_id.clone(),
            bounded_ms("remoteTimeoutMs", file.remote_timeout_ms, DEFAULT_REMOTE_TIMEOUT, 1..=MAX_TIMEOUT_MS)?,
            file.remote_functions,
            file.exposed_functions,
            &brokers,
            |name| table.get(name),
            FUNCTION_NAME_PREFIX,
        )?;
        let routes = file.routes.iter().map(|entry| entry.resolve(&table, &brokers)).collect::<Result<Vec<_>>>()?;
        let thing_function = match &file.thing_function {
            Some(id) => {
                let index =
                    table.get(id).ok_or_else(|| Error::config(format!("thingFunction \"{id}\" names no configured function")))?;
                table.alias(THING_FUNCTION_ALIAS, index);
                Some(index)
            }
            None => None,
        };
        let config = Config {
            functions,
            table,
            state_dir,
            max_payload,
            router: Router::new(routes),
            gateway_id,
            brokers,
            remote,
            thing_function,
            credentials: file.credentials,
            limits,
            shutdown_grace: bounded_ms("shutdownGraceMs", file.shutdown_grace_ms, Duration::from_secs(10), 0..=600_000)?,
            observe: file.observe.map(ObserveEntry::settings).transpose()?,
        };
        config.check_socket_path()?;
        Ok(config)
    }

    fn check_socket_path(&self) -> Result<()> {
        let socket = self.socket_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::config(format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; set a shorter \"stateDir\"",
                socket.display()
            )));
        }
        Ok(())
    }
}

/// What a function gets when its entry does not say.
struct FunctionDefaults {
    max_queued: usize,
    max_queued_bytes: usize,
    run_as: RunAs,
    retry: RetryPolicy,
}

impl FunctionSpec {
    fn from_entry(entry: FunctionEntry, base: &Path, defaults: &FunctionDefaults) -> Result<FunctionSpec> {
        let label = format!("function {}/{}", entry.service_name, entry.function_name);
        if entry.service_name.is_empty() || entry.function_name.is_empty() {
            return Err(Error::config("every function needs a non-empty serviceName and functionName"));
        }
        let handler = entry.handler.as_deref().unwrap_or(entry.flavor.default_handler());
        let (handler_file, handler_export) = match handler.rsplit_once('.') {
            Some((file, export)) if !file.is_empty() && !export.is_empty() => (file, export),
            None if entry.flavor == Flavor::Supabase && !handler.is_empty() => (handler, ""),
            _ => {
                let expected =
                    if entry.flavor == Flavor::Supabase { "\"index\" or \"index.fetch\"" } else { "\"index.handler\"" };
                return Err(Error::config(format!("{label}: handler must look like {expected}")));
            }
        };
        let in_function = |error: Error| Error::config(format!("{label}: {}", error.message));
        let max_concurrency =
            bounded("maxConcurrency", entry.max_concurrency, DEFAULT_MAX_CONCURRENCY, 1..=10_000).map_err(in_function)?;
        let timeout_ms = bounded("timeoutMs", entry.timeout_ms, DEFAULT_TIMEOUT_MS, 1..=MAX_TIMEOUT_MS).map_err(in_function)?;
        let idle_timeout_ms =
            bounded("idleTimeoutMs", entry.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS, 1..=86_400_000).map_err(in_function)?;
        let max_queued = bounded("maxQueuedInvocations", entry.max_queued_invocations, defaults.max_queued, 0..=1_000_000)
            .map_err(in_function)?;
        let max_queued_bytes =
            bounded("maxQueuedBytes", entry.max_queued_bytes, defaults.max_queued_bytes, KIB..=16 * GIB).map_err(in_function)?;
        let memory_size_mb =
            bounded("memorySize", entry.memory_size, DEFAULT_MEMORY_SIZE_MB, 32..=65_536).map_err(in_function)?;
        let run_as = RunAsEntry::resolve(entry.run_as, defaults.run_as).map_err(in_function)?;
        let retry = entry.retry.policy(&defaults.retry).map_err(in_function)?;
        let code_dir = base.join(&entry.code_dir);
        if !code_dir.is_dir() {
            return Err(Error::config(format!("{label}: codeDir {} is not a directory", code_dir.display())));
        }
        let code_dir = std::fs::canonicalize(&code_dir)
            .map_err(|error| Error::config(format!("{label}: codeDir {}: {error}", code_dir.display())))?;
        check_handler_inside(&code_dir, handler_file).map_err(in_function)?;
        let function_id = match entry.function_id {
            Some(id) if id.is_empty() => return Err(Error::config(format!("{label}: functionId is empty"))),
            Some(id) => id,
            None => function_arn(&entry.service_name, &entry.function_name),
        };
        Ok(FunctionSpec {
            service_name: entry.service_name,
            function_name: entry.function_name,
            function_id,
            code_dir,
            handler_file: handler_file.to_string(),
            handler_export: handler_export.to_string(),
            flavor: entry.flavor,
            timeout: Duration::from_millis(timeout_ms),
            timeout_configured: entry.timeout_ms.is_some(),
            max_concurrency,
            max_queued,
            max_queued_bytes,
            run_mode: entry.run_mode,
            idle_timeout: Duration::from_millis(idle_timeout_ms),
            memory_limit_bytes: memory_size_mb << 20,
            run_as,
            retry,
        })
    }
}

/// A handler is loaded from inside its function's `codeDir`: its file names
/// no parent or absolute path, and, where it exists already, does not lead
/// out through a symbolic link.
fn check_handler_inside(code_dir: &Path, handler_file: &str) -> Result<()> {
    use std::path::Component;
    let outside = || Error::config(format!("handler file {handler_file} lies outside codeDir {}", code_dir.display()));
    if !Path::new(handler_file).components().all(|part| matches!(part, Component::Normal(_) | Component::CurDir)) {
        return Err(outside());
    }
    for candidate in handler_candidates(code_dir, handler_file) {
        if let Ok(resolved) = std::fs::canonicalize(&candidate) {
            if !resolved.starts_with(code_dir) {
                return Err(outside());
            }
        }
    }
    Ok(())
}

/// What Node would load for `require(<codeDir>/<file>)`, in its order.
fn handler_candidates(code_dir: &Path, handler_file: &str) -> [PathBuf; 2] {
    [code_dir.join(handler_file), code_dir.join(format!("{handler_file}.js"))]
}

/// Finds a function (its index in the config) by id, by ARN, or by an
/// alias; ids and ARNs are unique across the table.
#[derive(Debug, Clone)]
pub struct FunctionTable {
    by_name: HashMap<String, usize>,
    /// `functionName` to the service and index of each function so named.
    by_function_name: HashMap<String, Vec<(String, usize)>>,
}

impl FunctionTable {
    /// Maps each function's id and ARN to its index in `functions`.
    pub fn build(functions: &[FunctionSpec]) -> Result<FunctionTable> {
        let mut by_name = HashMap::new();
        let mut by_function_name: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for (index, spec) in functions.iter().enumerate() {
            by_function_name.entry(spec.function_name.clone()).or_default().push((spec.service_name.clone(), index));
            for name in [spec.function_id.clone(), spec.arn()] {
                match by_name.insert(name.clone(), index) {
                    Some(other) if other != index => {
                        return Err(Error::config(format!("two functions are both named {name}")));
                    }
                    _ => {}
                }
            }
        }
        Ok(FunctionTable { by_name, by_function_name })
    }

    /// Adds another name for the function at `index`.
    pub fn alias(&mut self, name: &str, index: usize) {
        self.by_name.insert(name.to_string(), index);
    }

    pub fn get(&self, target: &str) -> Option<usize> {
        self.by_name.get(target).copied()
    }

    /// The function a bare name means to a caller in `own_service` (none
    /// for callers outside the runtime): the one of that `functionName` in
    /// that service, else the only one of that name anywhere, else the one
    /// whose id or ARN it is. Several of that name elsewhere is an error
    /// that says which, as is none.
    pub fn by_function_name(&self, name: &str, own_service: Option<&str>) -> Result<usize> {
        let named = self.by_function_name.get(name).map_or(&[][..], Vec::as_slice);
        if let Some((_, index)) = named.iter().find(|(service, _)| Some(service.as_str()) == own_service) {
            return Ok(*index);
        }
        match named {
            [(_, index)] => Ok(*index),
            [] => self.get(name).ok_or_else(|| Error::new(ErrorCode::FunctionNotFound, format!("no function is named {name}"))),
            several => {
                let services: Vec<String> = several.iter().map(|(service, _)| format!("{service}/{name}")).collect();
                Err(Error::new(
                    ErrorCode::FunctionNotFound,
                    format!(
                        "the function name {name} is ambiguous: it names {}; call it by its functionId or ARN",
                        services.join(" and ")
                    ),
                ))
            }
        }
    }
}
