//! The runtime's configuration file (`edgefc.json`) and the function table
//! built from it. Paths in the file are relative to the file itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::router::{Route, RouteSource, Router, TopicFilter};

pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
pub const DEFAULT_MAX_QUEUED: usize = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// What `ROUTER_FUNCTION_ID` holds: invoking it Async publishes, as upstream.
pub const ROUTER_FUNCTION_ID: &str = "edgefc:router";
/// A name that always reaches the configured `thingFunction`, for callers
/// outside the runtime, which have no `THING_FUNCTION_ID`.
pub const THING_FUNCTION_ALIAS: &str = "edgefc:thing-function";
pub const DEFAULT_STATE_DIR: &str = ".edgefc";
pub const SOCKET_FILE: &str = "edgefc.sock";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Longest path a Unix socket address holds on Linux (`sun_path` less the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    functions: Vec<FunctionEntry>,
    state_dir: Option<PathBuf>,
    max_payload_bytes: Option<usize>,
    max_queued_invocations: Option<usize>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    thing_function: Option<String>,
    credentials: Option<Credentials>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteEntry {
    source: String,
    topic_filter: String,
    target: String,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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
    #[serde(default = "default_handler")]
    handler: String,
    timeout_ms: Option<u64>,
    max_concurrency: Option<usize>,
    max_queued_invocations: Option<usize>,
    #[serde(default)]
    run_mode: RunMode,
    idle_timeout_ms: Option<u64>,
}

impl RouteEntry {
    fn resolve(&self, table: &FunctionTable) -> Result<Route> {
        let source = match self.source.as_str() {
            "any" => RouteSource::Any,
            other => RouteSource::Function(function_named(table, other, "route source")?),
        };
        let filter = TopicFilter::parse(&self.topic_filter)
            .map_err(|error| Error::config(format!("route topicFilter: {}", error.message)))?;
        Ok(Route { source, filter, target: function_named(table, &self.target, "route target")? })
    }
}

/// The function a route names as `function:<functionId>`.
fn function_named(table: &FunctionTable, reference: &str, what: &str) -> Result<usize> {
    let id = reference
        .strip_prefix("function:")
        .ok_or_else(|| Error::config(format!("{what} \"{reference}\" must look like \"function:<functionId>\"")))?;
    table.get(id).ok_or_else(|| Error::config(format!("{what} \"{reference}\" names no configured function")))
}

fn default_handler() -> String {
    "index.handler".to_string()
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
    pub handler_export: String,
    pub timeout: Duration,
    pub max_concurrency: usize,
    /// Invocations and messages that may wait beyond `max_concurrency`.
    pub max_queued: usize,
    pub run_mode: RunMode,
    pub idle_timeout: Duration,
}

impl FunctionSpec {
    pub fn arn(&self) -> String {
        function_arn(&self.service_name, &self.function_name)
    }

    pub fn handler(&self) -> String {
        format!("{}.{}", self.handler_file, self.handler_export)
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
    /// Index of the function that serves thing operations.
    pub thing_function: Option<usize>,
    pub credentials: Option<Credentials>,
}

impl Config {
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join(SOCKET_FILE)
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join(ADMIN_TOKEN_FILE)
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
        let max_payload = file.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD);
        if max_payload == 0 || max_payload > u32::MAX as usize / 2 {
            return Err(Error::config("maxPayloadBytes must be between 1 and 2147483647"));
        }
        let max_queued = file.max_queued_invocations.unwrap_or(DEFAULT_MAX_QUEUED);
        let functions = file
            .functions
            .into_iter()
            .map(|entry| FunctionSpec::from_entry(entry, &base, max_queued))
            .collect::<Result<Vec<_>>>()?;
        let mut table = FunctionTable::build(&functions)?;
        let routes = file.routes.iter().map(|entry| entry.resolve(&table)).collect::<Result<Vec<_>>>()?;
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
            thing_function,
            credentials: file.credentials,
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

impl FunctionSpec {
    fn from_entry(entry: FunctionEntry, base: &Path, default_max_queued: usize) -> Result<FunctionSpec> {
        let label = format!("function {}/{}", entry.service_name, entry.function_name);
        if entry.service_name.is_empty() || entry.function_name.is_empty() {
            return Err(Error::config("every function needs a non-empty serviceName and functionName"));
        }
        let (handler_file, handler_export) = entry
            .handler
            .rsplit_once('.')
            .filter(|(file, export)| !file.is_empty() && !export.is_empty())
            .ok_or_else(|| Error::config(format!("{label}: handler must look like \"index.handler\"")))?;
        let max_concurrency = entry.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 {
            return Err(Error::config(format!("{label}: maxConcurrency must be at least 1")));
        }
        let timeout_ms = entry.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(Error::config(format!("{label}: timeoutMs must be at least 1")));
        }
        let code_dir = base.join(&entry.code_dir);
        if !code_dir.is_dir() {
            return Err(Error::config(format!("{label}: codeDir {} is not a directory", code_dir.display())));
        }
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
            timeout: Duration::from_millis(timeout_ms),
            max_concurrency,
            max_queued: entry.max_queued_invocations.unwrap_or(default_max_queued),
            run_mode: entry.run_mode,
            idle_timeout: Duration::from_millis(entry.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS).max(1)),
        })
    }
}

/// Finds a function (its index in the config) by id, by ARN, or by an
/// alias; ids and ARNs are unique across the table.
#[derive(Debug, Clone)]
pub struct FunctionTable {
    by_name: HashMap<String, usize>,
}

impl FunctionTable {
    /// Maps each function's id and ARN to its index in `functions`.
    pub fn build(functions: &[FunctionSpec]) -> Result<FunctionTable> {
        let mut by_name = HashMap::new();
        for (index, spec) in functions.iter().enumerate() {
            for name in [spec.function_id.clone(), spec.arn()] {
                match by_name.insert(name.clone(), index) {
                    Some(other) if other != index => {
                        return Err(Error::config(format!("two functions are both named {name}")));
                    }
                    _ => {}
                }
            }
        }
        Ok(FunctionTable { by_name })
    }

    /// Adds another name for the function at `index`.
    pub fn alias(&mut self, name: &str, index: usize) {
        self.by_name.insert(name.to_string(), index);
    }

    pub fn get(&self, target: &str) -> Option<usize> {
        self.by_name.get(target).copied()
    }
}
