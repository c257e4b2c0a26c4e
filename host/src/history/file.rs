//! One symbol's downloaded bars: a CSV that only ever grows at its end.
//!
//! Each window of bars is appended in one write and synced before the
//! manifest records it, so a kill at any point leaves whole rows followed by
//! at most one torn row; opening the file again cuts the torn row off.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::HistoryError;
use crate::bar::{Bar, Millis, format_time};

/// The header every downloaded file starts with; `backtest` reads it as is.
pub(super) const HEADER: &str = "time,open,high,low,close,volume\n";

/// How much of the end of a file to read when looking for its last row.
const TAIL: u64 = 64 * 1024;

pub(super) struct BarFile {
    path: PathBuf,
    file: File,
    /// The open time of the last row, if any.
    last: Option<Millis>,
    /// The open time of the first row, if any.
    first: Option<Millis>,
}

impl BarFile {
    /// Opens `path` for appending, creating it with the header, or
    /// recovering it after a kill: a torn last row is cut off.
    pub(super) fn open(path: &Path) -> Result<Self, HistoryError> {
        let io = |source| HistoryError::Io { path: path.display().to_string(), source };
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            file.write_all(HEADER.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Self { path: path.to_path_buf(), file, last: None, first: None });
        }
        let mut head = vec![0; HEADER.len().min(len as usize)];
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_exact(&mut head).map_err(io)?;
        // A header torn by a kill is still this module's.
        if !HEADER.as_bytes().starts_with(&head) {
            return Err(HistoryError::Foreign { path: path.display().to_string() });
        }
        // Keep whole rows only: everything up to the last newline.
        let from = len.saturating_sub(TAIL);
        let mut tail = Vec::with_capacity((len - from) as usize);
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        file.read_to_end(&mut tail).map_err(io)?;
        let whole = tail.iter().rposition(|&b| b == b'\n').map_or(from, |i| from + i as u64 + 1);
        if whole < HEADER.len() as u64 {
            // Torn inside the header: start again.
            file.set_len(0).map_err(io)?;
            file.write_all(HEADER.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Self { path: path.to_path_buf(), file, last: None, first: None });
        }
        if whole < len {
            tracing::warn!(path = %path.display(), bytes = len - whole, "cutting off a row torn by an earlier stop");
            file.set_len(whole).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let rows = &tail[..(whole - from) as usize];
        let last_row = rows.strip_suffix(b"\n").unwrap_or(rows);
        let last_row = last_row.rsplit(|&b| b == b'\n').next().unwrap_or_default();
        let last = row_time(path, last_row)?;
        let first = match last {
            None => None,
            Some(_) => {
                let mut start = vec![0; (whole as usize).min(HEADER.len() + 256)];
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                file.read_exact(&mut start).map_err(io)?;
                let first_row = start[HEADER.len()..].split(|&b| b == b'\n').next().unwrap_or_default();
                row_time(path, first_row)?
            }
        };
        Ok(Self { path: path.to_path_buf(), file, last, first })
    }

    pub(super) fn last(&self) -> Option<Millis> {
        self.last
    }

    pub(super) fn first(&self) -> Option<Millis> {
        self.first
    }

    /// Appends `bars` (in time order, all after the last row) in one write,
    /// and syncs them to disk before returning.
    pub(super) fn append(&mut self, bars: &[Bar]) -> Result<(), HistoryError> {
        if bars.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(bars.len() * 64);
        for bar in bars {
            text.push_str(&format!(
                "{},{},{},{},{},{}\n",
                format_time(bar.time),
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume
            ));
        }
        let io = |source| HistoryError::Io { path: self.path.display().to_string(), source };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.first = self.first.or(bars.first().map(|b| b.time));
        self.last = bars.last().map(|b| b.time);
        Ok(())
    }
}

/// The time of a row this module wrote; `None` for the header or nothing.
fn row_time(path: &Path, row: &[u8]) -> Result<Option<Millis>, HistoryError> {
    if row.is_empty() || row == HEADER.trim_end().as_bytes() {
        return Ok(None);
    }
    let field = row.split(|&b| b == b',').next().unwrap_or_default();
    let text = std::str::from_utf8(field).unwrap_or_default();
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| HistoryError::Foreign { path: path.display().to_string() })?;
    Ok(Some((time.unix_timestamp_nanos() / 1_000_000) as Millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(minute: i64) -> Bar {
        Bar {
            symbol: "X".into(),
            time: minute * 60_000,
            open: 1.into(),
            high: 2.into(),
            low: 1.into(),
            close: 2.into(),
            volume: 10.into(),
        }
    }

    #[test]
    fn a_torn_row_is_cut_off_and_the_last_whole_row_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("X.csv");
        let mut file = BarFile::open(&path).unwrap();
        assert_eq!((file.first(), file.last()), (None, None));
        file.append(&[bar(0), bar(1), bar(2)]).unwrap();
        drop(file);
        let whole = std::fs::read(&path).unwrap();
        // A kill in the middle of the next write.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"1970-01-01T00:03:00Z,1,2").unwrap();
        let mut file = BarFile::open(&path).unwrap();
        assert_eq!((file.first(), file.last()), (Some(0), Some(2 * 60_000)));
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn row is gone, the rest kept");
        file.append(&[bar(3)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with("1970-01-01T00:03:00Z,1,2,1,2,10\n"), "{text}");
    }

    #[test]
    fn a_file_this_module_did_not_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("X.csv");
        std::fs::write(&path, "Date,Open,High,Low,Close,Volume\n2020-01-01,1,1,1,1,1\n").unwrap();
        assert!(matches!(BarFile::open(&path), Err(HistoryError::Foreign { .. })));
        std::fs::write(&path, format!("{HEADER}yesterday,1,1,1,1,1\n")).unwrap();
        assert!(matches!(BarFile::open(&path), Err(HistoryError::Foreign { .. })));
        // Torn inside the header: begun again.
        std::fs::write(&path, "time,op").unwrap();
        let file = BarFile::open(&path).unwrap();
        assert_eq!(file.last(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }
}
