//! Loading a recorded day for [`JsonlReplay`](crate::JsonlReplay).
//!
//! Layout (seed 000): `DATA_DIR/YYYY-MM-DD/TICKER/{classic|state|orderflow}/{category}.jsonl`,
//! one JSON object per line. Each file is read once; its records are `Bytes`
//! slices of that one buffer.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tickwire_model::Hub;

use crate::error::ReplayError;
use crate::{ReplayConfig, replay_key};

/// One group's records, in file order.
#[derive(Debug)]
pub(crate) struct Group {
    /// The replay key, `TICKER/folder/category`.
    pub(crate) key: String,
    pub(crate) hub: Hub,
    pub(crate) ticker: Arc<str>,
    pub(crate) category: &'static str,
    /// Never empty.
    pub(crate) records: Vec<Bytes>,
}

/// A loaded day.
#[derive(Debug)]
pub(crate) struct Dataset {
    /// The date folder's name.
    pub(crate) date: String,
    /// The date folder.
    pub(crate) dir: PathBuf,
    /// Sorted by ticker, folder and category.
    pub(crate) groups: Vec<Group>,
}

/// Whether `s` is a calendar date written `YYYY-MM-DD`.
pub(crate) fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Whether `s` can be a ticker: the characters a group name allows for one,
/// starting with a letter or digit (so hidden folders are not tickers).
pub(crate) fn is_valid_ticker(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The names and paths of the entries of `dir`, sorted by name; entries whose
/// names are not UTF-8 are skipped with a warning.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ReplayError> {
    let io = |source| ReplayError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        match entry.file_name().into_string() {
            Ok(name) => entries.push((name, entry.path())),
            Err(name) => tracing::warn!(dir = %dir.display(), ?name, "skipping a non-UTF-8 name"),
        }
    }
    entries.sort();
    Ok(entries)
}

/// Resolves the configured date to its folder name and path.
pub(crate) fn resolve_date(data_dir: &Path, date: &str) -> Result<(String, PathBuf), ReplayError> {
    if !data_dir.is_dir() {
        return Err(ReplayError::DataDirNotFound {
            path: data_dir.to_owned(),
        });
    }
    if date.is_empty() || date == "latest" {
        let newest = sorted_entries(data_dir)?
            .into_iter()
            .rfind(|(name, path)| is_valid_date(name) && path.is_dir());
        return newest.ok_or_else(|| ReplayError::NoDatedFolder {
            path: data_dir.to_owned(),
        });
    }
    if !is_valid_date(date) {
        return Err(ReplayError::InvalidDate {
            date: date.to_owned(),
        });
    }
    let path = data_dir.join(date);
    if !path.is_dir() {
        return Err(ReplayError::DateNotFound {
            date: date.to_owned(),
            path,
        });
    }
    Ok((date.to_owned(), path))
}

/// Splits a JSONL buffer into records without copying.
///
/// Blank lines are skipped; a line that does not look like a JSON object
/// (first and last non-space bytes `{` and `}`) is skipped with a warning
/// naming `path` and the line number. Full parsing is the pipeline's job.
pub(crate) fn split_records(buf: &Bytes, path: &Path) -> Vec<Bytes> {
    let mut records = Vec::new();
    let mut start = 0;
    for (number, line) in buf.split(|&b| b == b'\n').enumerate() {
        let line_start = start;
        start += line.len() + 1;
        let Some(first) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
            continue;
        };
        let last = line
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .unwrap_or(first);
        if line[first] != b'{' || line[last] != b'}' {
            tracing::warn!(
                file = %path.display(),
                line = number + 1,
                "skipping a line that is not a JSON object"
            );
            continue;
        }
        records.push(buf.slice(line_start + first..line_start + last + 1));
    }
    records
}

/// Loads the day selected by `config`.
pub(crate) fn load(config: &ReplayConfig) -> Result<Dataset, ReplayError> {
    let (date, dir) = resolve_date(&config.data_dir, &config.date)?;
    let wanted = |ticker: &str| {
        config
            .tickers
            .as_ref()
            .is_none_or(|t| t.iter().any(|w| w == ticker))
    };
    let mut groups = Vec::new();
    for (ticker, ticker_dir) in sorted_entries(&dir)? {
        if !ticker_dir.is_dir() {
            tracing::warn!(path = %ticker_dir.display(), "skipping a file where a ticker folder was expected");
            continue;
        }
        if !is_valid_ticker(&ticker) {
            tracing::warn!(path = %ticker_dir.display(), "skipping a folder whose name is not a ticker");
            continue;
        }
        if !wanted(&ticker) {
            tracing::debug!(%ticker, "ticker filtered out");
            continue;
        }
        let ticker: Arc<str> = ticker.into();
        for (folder, folder_dir) in sorted_entries(&ticker_dir)? {
            if !folder_dir.is_dir() || !matches!(&*folder, "classic" | "state" | "orderflow") {
                tracing::warn!(path = %folder_dir.display(), "skipping an unknown entry (expected classic, state or orderflow)");
                continue;
            }
            for (file, path) in sorted_entries(&folder_dir)? {
                let found = file
                    .strip_suffix(".jsonl")
                    .filter(|_| path.is_file())
                    .and_then(|category| {
                        let hub = Hub::for_file(&folder, category)?;
                        let category = *hub.categories().iter().find(|&&c| c == category)?;
                        Some((hub, category))
                    });
                let Some((hub, category)) = found else {
                    tracing::warn!(path = %path.display(), "skipping an unknown file (no hub has this category)");
                    continue;
                };
                let buf = Bytes::from(fs::read(&path).map_err(|source| ReplayError::Io {
                    path: path.clone(),
                    source,
                })?);
                let records = split_records(&buf, &path);
                if records.is_empty() {
                    tracing::warn!(path = %path.display(), "skipping a file without records");
                    continue;
                }
                groups.push(Group {
                    key: replay_key(&ticker, hub, category),
                    hub,
                    ticker: ticker.clone(),
                    category,
                    records,
                });
            }
        }
    }
    if let Some(tickers) = &config.tickers {
        for ticker in tickers {
            if !groups.iter().any(|g| &*g.ticker == ticker) {
                tracing::warn!(%ticker, dir = %dir.display(), "no records for a configured ticker");
            }
        }
    }
    if groups.is_empty() {
        return Err(ReplayError::NoRecords { path: dir });
    }
    Ok(Dataset { date, dir, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_validated_against_the_calendar() {
        for ok in ["2025-11-28", "2024-02-29", "2000-02-29", "1999-12-31"] {
            assert!(is_valid_date(ok), "{ok}");
        }
        for bad in [
            "2025-13-01",
            "2025-00-10",
            "2025-11-31",
            "2025-02-29",
            "1900-02-29",
            "2025-1-01",
            "2025/11/28",
            "2025-11-28x",
            "latest",
            "",
            "２０２５-11-28",
        ] {
            assert!(!is_valid_date(bad), "{bad}");
        }
    }

    #[test]
    fn records_are_slices_of_the_buffer() {
        let buf = Bytes::from_static(
            b"{\"a\":1}\r\n\n   \n  {\"b\":2}  \nnot json\n[1,2]\n{\"truncated\":\n{\"c\":3}",
        );
        let records = split_records(&buf, Path::new("x.jsonl"));
        assert_eq!(
            records,
            [
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\":2}"),
                Bytes::from_static(b"{\"c\":3}"),
            ]
        );
        // Zero-copy: every record points into the original buffer.
        let range = buf.as_ptr_range();
        assert!(records.iter().all(|r| range.contains(&r.as_ptr())));
    }

    #[test]
    fn tickers_follow_group_name_rules() {
        assert!(is_valid_ticker("ES_SPX"));
        assert!(is_valid_ticker("BRK.B"));
        assert!(!is_valid_ticker(""));
        assert!(!is_valid_ticker("S P X"));
        assert!(!is_valid_ticker(".git"));
    }
}
