//! The runtime's configuration file (`edgefc.json`) and the function table
//! built from it. Paths in the file are relative to the file itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
pub const DEFAULT_MAX_QUEUED: usize = 10_000;
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
    pub state_dir: PathBuf,
    pub max_payload: usize,
    pub max_queued: usize,
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
        let functions = file
            .functions
            .into_iter()
            .map(|entry| FunctionSpec::from_entry(entry, &base))
            .collect::<Result<Vec<_>>>()?;
        let config = Config {
            functions,
            state_dir,
            max_payload,
            max_queued: file.max_queued_invocations.unwrap_or(DEFAULT_MAX_QUEUED),
        };
        config.check_socket_path()?;
        FunctionTable::build(&config.functions)?;
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
    fn from_entry(entry: FunctionEntry, base: &Path) -> Result<FunctionSpec> {
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
        })
    }
}

/// Finds a function by id or by ARN; both are unique across the table.
#[derive(Debug, Clone)]
pub struct FunctionTable<T> {
    by_name: HashMap<String, T>,
}

impl FunctionTable<usize> {
    /// Maps each function's id and ARN to its index in `functions`.
    pub fn build(functions: &[FunctionSpec]) -> Result<FunctionTable<usize>> {
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
}

impl<T> FunctionTable<T> {
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> FunctionTable<U> {
        FunctionTable { by_name: self.by_name.into_iter().map(|(name, value)| (name, f(value))).collect() }
    }

    pub fn get(&self, target: &str) -> Option<&T> {
        self.by_name.get(target)
    }
}
