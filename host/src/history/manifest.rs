//! What each downloaded file holds: its venue, bar length, and the range
//! it is complete for. Kept beside the files as `.stratbox-download.json`
//! and replaced whole (written aside, synced, renamed), so it is always
//! one of its versions, never a mix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::HistoryError;
use crate::bar::Millis;

pub(super) const NAME: &str = ".stratbox-download.json";

/// One file's entry: it holds every bar of `venue` at `timeframe` opening
/// in `[from, through)`; nothing before `from` and, after `through`,
/// possibly a window whose record the last run did not get to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub venue: String,
    pub symbol: String,
    pub timeframe: String,
    pub from: Millis,
    pub through: Millis,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    files: BTreeMap<String, Entry>,
}

pub(super) struct Manifest {
    path: PathBuf,
    contents: Contents,
}

impl Manifest {
    /// Reads the manifest in `dir`, or starts an empty one.
    pub(super) fn load(dir: &Path) -> Result<Self, HistoryError> {
        let path = dir.join(NAME);
        let contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| HistoryError::Manifest { path: path.display().to_string(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::default(),
            Err(source) => return Err(HistoryError::Io { path: path.display().to_string(), source }),
        };
        Ok(Self { path, contents })
    }

    pub(super) fn entry(&self, file: &str) -> Option<&Entry> {
        self.contents.files.get(file)
    }

    /// Records `entry` for `file` and writes the manifest through.
    pub(super) fn record(&mut self, file: &str, entry: Entry) -> Result<(), HistoryError> {
        self.contents.files.insert(file.to_string(), entry);
        let io = |source| HistoryError::Io { path: self.path.display().to_string(), source };
        let aside = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.contents).unwrap_or_default();
        let mut out = std::fs::File::create(&aside).map_err(io)?;
        out.write_all(&text).map_err(io)?;
        out.sync_all().map_err(io)?;
        std::fs::rename(&aside, &self.path).map_err(io)?;
        Ok(())
    }
}
