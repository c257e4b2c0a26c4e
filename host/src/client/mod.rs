//! `stratbox ctl`: a client of a running host's control API (`/api/v1`),
//! for operators and scripts. It prints each answer as JSON and exits 1
//! with the host's `{"error": ...}` when a request is refused.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

mod table;

/// A request to the host.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Lists the instances, as `/health` shows them.
    List,
    /// Shows one instance.
    Show { name: String },
    /// Starts instance NAME of PLUGIN: a bundled plugin's name, or a
    /// `.wasm` already in the host's plugins folder (see `upload`).
    Add {
        name: String,
        plugin: String,
        /// A parameter, as `key=value`; repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Puts FILE (`NAME.wasm`, or its `NAME.toml`) in the host's plugins
    /// folder: a watched folder starts it, or hot-swaps a running NAME.
    Upload {
        file: PathBuf,
        /// The name it gets in the folder (default: FILE's own).
        #[arg(long = "as")]
        name: Option<String>,
    },
    /// Stops calling an instance; its orders still fill.
    Pause { name: String },
    /// Undoes a pause, or releases a quarantined instance.
    Resume { name: String },
    /// Swaps an instance to the build in FILE, keeping its state.
    Swap { name: String, file: PathBuf },
    /// Removes an instance for good.
    Remove {
        name: String,
        /// What happens to its orders and positions: cancel, leave or flatten.
        #[arg(long, default_value = "cancel")]
        on_remove: String,
    },
    /// Lists each live venue's trading state.
    Venues,
    /// Halts new orders on every live venue, or on VENUE.
    Halt {
        venue: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Lets new orders through again on every live venue, or on VENUE.
    #[command(alias = "trade")]
    ResumeTrading { venue: Option<String> },
    /// The live venue's working orders, all or one instance's.
    Orders {
        #[arg(long)]
        instance: Option<String>,
    },
    /// The live venue's latest fills, newest first.
    Fills {
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The venue's positions and each instance's own.
    Positions,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the host at {url}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the host refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    #[error("`{param}` is not KEY=VALUE")]
    Param { param: String },
    #[error("{path} has no file name to upload it as")]
    Unnamed { path: String },
}

/// A parameter's value as the host's config would read it: an integer, a
/// number, a boolean, or else text.
fn param_value(text: &str) -> serde_json::Value {
    if let Ok(n) = text.parse::<i64>() {
        return n.into();
    }
    if let Ok(x) = text.parse::<f64>()
        && x.is_finite()
    {
        return x.into();
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        _ => text.into(),
    }
}

/// Sends `command` to the host at `url` with `token` and prints the
/// answer, as a table or as the host's JSON.
pub fn ctl(
    url: &str,
    token: Option<&str>,
    command: CtlCommand,
    format: crate::cli::Format,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let url = url.trim_end_matches('/');
    let api = |path: &str| format!("{url}/api/v1{path}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
    let request = match command {
        CtlCommand::List => http.get(api("/instances")),
        CtlCommand::Show { name } => http.get(api(&format!("/instances/{name}"))),
        CtlCommand::Add { name, plugin, params } => {
            let mut values = serde_json::Map::new();
            for param in params {
                let (key, value) = param.split_once('=').ok_or_else(|| ClientError::Param { param: param.clone() })?;
                values.insert(key.trim().to_string(), param_value(value.trim()));
            }
            http.post(api("/instances")).json(&serde_json::json!({ "name": name, "plugin": plugin, "params": values }))
        }
        CtlCommand::Upload { file, name } => {
            let unnamed = || ClientError::Unnamed { path: file.display().to_string() };
            let name = match name {
                Some(name) => name,
                None => file.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(unnamed)?,
            };
            let read = |source| ClientError::Read { path: file.display().to_string(), source };
            let bytes = std::fs::read(&file).map_err(read)?;
            http.put(api(&format!("/plugins/{name}"))).body(bytes)
        }
        CtlCommand::Pause { name } => http.post(api(&format!("/instances/{name}/pause"))),
        CtlCommand::Resume { name } => http.post(api(&format!("/instances/{name}/resume"))),
        CtlCommand::Swap { name, file } => {
            let read = |source| ClientError::Read { path: file.display().to_string(), source };
            let bytes = std::fs::read(&file).map_err(read)?;
            http.post(api(&format!("/instances/{name}/swap"))).body(bytes)
        }
        CtlCommand::Remove { name, on_remove } => {
            http.delete(api(&format!("/instances/{name}"))).query(&[("on_remove", on_remove)])
        }
        CtlCommand::Venues => http.get(api("/venues")),
        CtlCommand::Halt { venue, note } => {
            http.post(api("/halt")).json(&serde_json::json!({ "venue": venue, "note": note }))
        }
        CtlCommand::ResumeTrading { venue } => http.post(api("/resume")).json(&serde_json::json!({ "venue": venue })),
        CtlCommand::Orders { instance } => http.get(api("/orders")).query(&[("instance", instance)]),
        CtlCommand::Fills { instance, limit } => {
            http.get(api("/fills")).query(&[("instance", instance)]).query(&[("limit", limit)])
        }
        CtlCommand::Positions => http.get(api("/positions")),
    };
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ClientError::Runtime)?;
    let (status, body) = runtime.block_on(async {
        let unreachable = |source| ClientError::Unreachable { url: url.to_string(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok::<_, ClientError>((status, body))
    })?;
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no reason given").to_string();
        return Err(ClientError::Refused { status: status.as_u16(), message });
    }
    match format {
        crate::cli::Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&body).unwrap_or_default())?,
        crate::cli::Format::Text => write!(out, "{}", table::render(&body))?,
    }
    Ok(())
}
