//! A room recording session's `manifest.json` and the names of its directory and files.

use std::{
    fs::{self, File},
    io::Write,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use sfu::ParticipantId;

/// `manifest.json`: what a recording session holds, for players and offline tools.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub room: String,
    pub session: String,
    pub started_by: String,
    /// Unix ms.
    pub started: u64,
    pub stopped: Option<u64>,
    pub stop_reason: Option<&'static str>,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    pub participant: ParticipantId,
    pub name: String,
    pub file: String,
    /// 1 for a participant's first file; long recordings go on in more.
    pub part: u32,
    pub video: Option<&'static str>,
    pub audio: Option<&'static str>,
    /// Wall-clock time (sender's clock, Unix ms) of the file's time 0: files of one session
    /// line up by it.
    pub starts_at: Option<u64>,
    pub duration_ms: u64,
    pub width: Option<u16>,
    pub height: Option<u16>,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Video holes not repaired in time (frames dropped until the next keyframe).
    pub video_holes: u64,
    /// Least capture-to-arrival time per track (see `media_out::recording::RecordingSummary`).
    pub audio_transit_ms: Option<i64>,
    pub video_transit_ms: Option<i64>,
    pub finished: bool,
    pub error: Option<String>,
    /// A track not written, and why.
    pub skipped: Option<String>,
}

pub(super) fn write_manifest(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let tmp = dir.join("manifest.json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join("manifest.json"))
}

/// A name as a path component: letters, digits, `-` and `_` kept, the rest `_`, at most 40
/// characters, never empty (no `..`, no `/`, whatever a participant calls itself).
pub fn safe_component(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "_".into()
    } else {
        safe
    }
}

/// `20261128T093000Z-<6 hex>`: sorts by time, unique.
pub(super) fn session_id(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = media_out::clock::civil_from_days(days as i64);
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).expect("the OS random number generator is available");
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

pub(super) use media_out::clock::unix_ms;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(safe_component(".."), "__");
        assert_eq!(safe_component("../../etc/passwd"), "______etc_passwd");
        assert_eq!(safe_component("Zoë & Bob"), "Zo____Bob");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component(&"x".repeat(100)).len(), 40);
        assert_eq!(safe_component("room-1_a"), "room-1_a");
    }

    #[test]
    fn session_ids_sort_by_time() {
        let id = session_id(UNIX_EPOCH + Duration::from_secs(1_795_858_200));
        assert!(id.starts_with("20261128T093000Z-"), "{id}");
        assert_eq!(id.len(), "20261128T093000Z-".len() + 6);
    }
}
