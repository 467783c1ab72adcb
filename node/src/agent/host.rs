//! Linux host metrics for the host agent (`consentry agent`): load, CPU, memory and swap from
//! `/proc`, disk and inode usage from `statvfs(3)`, process and zombie counts, logged-in users
//! from utmp, and lines of watched logs that match a pattern since the last report (like
//! Nagios `check_log` or `tail -F`).
//!
//! [`HostCollector::collect`] is blocking and never panics: whatever it cannot read becomes a
//! short sentence in the report and the value stays 0, so one unreadable file never hides the
//! rest. Every read is bounded (the constants below), because a host may hold huge or hostile
//! files and the agent must stay small. Time is not needed: CPU usage and log offsets are
//! measured between successive calls, whatever their spacing.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use consentry_cluster::model::{
    HostReport, LogMatches, MountUsage, REPORT_LINE_BYTES_MAX, REPORT_LOGS_MAX,
    REPORT_LOG_LINES_MAX, REPORT_MOUNTS_MAX,
};
use regex::Regex;

/// Most bytes read from one `/proc` file (`loadavg`, `stat`, `meminfo`, `self/mounts`).
pub const PROC_FILE_BYTES_MAX: u64 = 1 << 20;
/// Most bytes read from one `/proc/<pid>/stat` (the state is within the first hundred).
pub const PID_STAT_BYTES_MAX: u64 = 4 << 10;
/// Most process directories counted (the kernel's `PID_MAX_LIMIT`).
pub const PROCS_MAX: u32 = 1 << 22;
/// Most bytes read from the utmp file.
pub const UTMP_BYTES_MAX: u64 = 1 << 20;
/// Size of one utmp record (glibc on x86_64 and aarch64).
pub const UTMP_RECORD_BYTES: usize = 384;
/// `ut_type` of a logged-in user's record.
pub const UTMP_USER_PROCESS: i16 = 7;
/// Most bytes read from one watched log per collect; older bytes waiting are skipped.
pub const LOG_READ_BYTES_MAX: u64 = 4 << 20;
/// A log's unterminated last line is held back until it ends, unless it is longer than this.
pub const LOG_PARTIAL_LINE_BYTES_MAX: usize = 64 << 10;
/// Filesystem types reported when no mounts are configured: real local filesystems only
/// (no pseudo, memory, overlay, read-only image or remote filesystems).
pub const LOCAL_FS_TYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "exfat", "f2fs", "jfs", "reiserfs",
    "bcachefs", "ntfs3",
];

/// A log file to watch and the regular expression (`regex` crate syntax) its lines must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWatch {
    pub path: PathBuf,
    pub pattern: String,
}

/// Where reading of one watched log resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Never looked at: on first sight, start at the end (old lines are not news).
    Unseen,
    /// Absent at the last collect: when it appears, read it from the start.
    Missing,
    /// This file (device and inode) was read up to `offset`.
    At { dev: u64, ino: u64, offset: u64 },
}

#[derive(Debug)]
struct Tail {
    watch: LogWatch,
    regex: Regex,
    pos: Position,
}

/// Measures the host; keeps what must persist between reports (CPU counters, log offsets).
#[derive(Debug)]
pub struct HostCollector {
    proc_root: PathBuf,
    utmp: PathBuf,
    mounts: Option<Vec<PathBuf>>,
    tails: Vec<Tail>,
    /// The `cpu` line's (total, idle + iowait) at the previous collect (0 before the first).
    cpu_prev: (u64, u64),
}

impl HostCollector {
    /// `proc_root` is normally `/proc` and `utmp` `/var/run/utmp`. `mounts`: `None` reports
    /// every real local filesystem in `<proc_root>/self/mounts` ([`LOCAL_FS_TYPES`]), `Some`
    /// exactly the paths listed (any filesystem type). Fails on an invalid pattern or on more
    /// than [`REPORT_MOUNTS_MAX`] mounts or [`REPORT_LOGS_MAX`] logs.
    pub fn new(
        proc_root: PathBuf,
        utmp: PathBuf,
        mounts: Option<Vec<PathBuf>>,
        logs: Vec<LogWatch>,
    ) -> Result<Self, String> {
        if let Some(list) = mounts.as_ref().filter(|l| l.len() > REPORT_MOUNTS_MAX) {
            return Err(format!(
                "{} mounts are listed; at most {REPORT_MOUNTS_MAX} may be",
                list.len()
            ));
        }
        if logs.len() > REPORT_LOGS_MAX {
            return Err(format!(
                "{} logs are watched; at most {REPORT_LOGS_MAX} may be",
                logs.len()
            ));
        }
        let mut tails = Vec::with_capacity(logs.len());
        for watch in logs {
            let regex = Regex::new(&watch.pattern).map_err(|e| {
                format!(
                    "log {}: pattern {:?} is not a valid regular expression: {e}",
                    watch.path.display(),
                    watch.pattern
                )
            })?;
            tails.push(Tail {
                watch,
                regex,
                pos: Position::Unseen,
            });
        }
        Ok(HostCollector {
            proc_root,
            utmp,
            mounts,
            tails,
            cpu_prev: (0, 0),
        })
    }

    /// Measures everything once. Blocking (statvfs and file reads): run it on a blocking
    /// thread. `run`, `seq`, `at_ms` and `interval_ms` are left 0 for the caller to set.
    pub fn collect(&mut self) -> HostReport {
        let mut r = HostReport::default();
        let mut errors = Vec::new();
        let mut note = |res: Result<(), String>| errors.extend(res.err());
        note(self.load().map(|l| r.load = l));
        note(self.cpu().map(|c| r.cpu_pct = c));
        note(self.memory().map(|m| (r.memory_pct, r.swap_pct) = m));
        note(self.procs().map(|(p, z)| (r.procs, r.zombies) = (p, z)));
        note(self.users().map(|u| r.users = u));
        self.mounts(&mut r.mounts, &mut errors);
        r.errors = errors;
        r.logs = self.tails.iter_mut().map(Tail::poll).collect();
        r
    }

    fn load(&self) -> Result<[f64; 3], String> {
        let path = self.proc_root.join("loadavg");
        let text = read_bounded(&path, PROC_FILE_BYTES_MAX)?;
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        let mut load = [0.0; 3];
        for l in &mut load {
            match fields.next() {
                Some(Ok(v)) => *l = v,
                _ => return Err(format!("{} has no load averages", path.display())),
            }
        }
        Ok(load)
    }

    fn cpu(&mut self) -> Result<f64, String> {
        let path = self.proc_root.join("stat");
        let text = read_bounded(&path, PROC_FILE_BYTES_MAX)?;
        let counters: Vec<u64> = text
            .lines()
            .map(|l| l.split_whitespace())
            .find_map(|mut f| (f.next() == Some("cpu")).then_some(f))
            .map(|f| f.take(8).map_while(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        if counters.len() < 4 {
            return Err(format!("{} has no cpu line", path.display()));
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user and nice).
        let total: u64 = counters.iter().fold(0, |a, v| a.saturating_add(*v));
        let idle = counters[3].saturating_add(counters.get(4).copied().unwrap_or(0));
        let (prev_total, prev_idle) = std::mem::replace(&mut self.cpu_prev, (total, idle));
        let d_total = total.saturating_sub(prev_total);
        let d_busy = d_total.saturating_sub(idle.saturating_sub(prev_idle));
        Ok(pct(d_busy as f64, d_total as f64))
    }

    fn memory(&self) -> Result<(f64, f64), String> {
        let path = self.proc_root.join("meminfo");
        let text = read_bounded(&path, PROC_FILE_BYTES_MAX)?;
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        let total = field("MemTotal").filter(|t| *t > 0);
        let total = total.ok_or_else(|| format!("{} has no MemTotal", path.display()))?;
        let available = field("MemAvailable").unwrap_or_else(|| {
            let free = ["MemFree", "Buffers", "Cached"].map(|f| field(f).unwrap_or(0));
            free.iter().sum()
        });
        let memory = pct(total.saturating_sub(available) as f64, total as f64);
        let swap_total = field("SwapTotal").unwrap_or(0);
        let swap_used = swap_total.saturating_sub(field("SwapFree").unwrap_or(0));
        Ok((memory, pct(swap_used as f64, swap_total as f64)))
    }

    fn mounts(&self, out: &mut Vec<MountUsage>, errors: &mut Vec<String>) {
        let paths = match &self.mounts {
            Some(list) => list.clone(),
            None => {
                let path = self.proc_root.join("self/mounts");
                let text = match read_bounded(&path, PROC_FILE_BYTES_MAX) {
                    Ok(t) => t,
                    Err(e) => return errors.push(e),
                };
                let mut found = local_mounts(&text);
                if found.len() > REPORT_MOUNTS_MAX {
                    errors.push(format!(
                        "only the first {REPORT_MOUNTS_MAX} of {} local mounts are reported",
                        found.len()
                    ));
                    found.truncate(REPORT_MOUNTS_MAX);
                }
                found
            }
        };
        for path in paths {
            match statvfs(&path) {
                Ok((disk_pct, inode_pct)) => out.push(MountUsage {
                    path: path.display().to_string(),
                    disk_pct,
                    inode_pct,
                }),
                Err(e) => errors.push(format!("cannot statvfs {}: {e}", path.display())),
            }
        }
    }

    fn procs(&self) -> Result<(u32, u32), String> {
        let dir = fs::read_dir(&self.proc_root)
            .map_err(|e| format!("cannot list {}: {e}", self.proc_root.display()))?;
        let (mut procs, mut zombies, mut unreadable) = (0u32, 0u32, 0u32);
        for entry in dir.flatten() {
            let name = entry.file_name();
            if name.is_empty() || !name.as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            if procs == PROCS_MAX {
                return Err(format!("only the first {PROCS_MAX} processes are counted"));
            }
            procs += 1;
            match read_bounded_raw(&entry.path().join("stat"), PID_STAT_BYTES_MAX) {
                Ok(stat) if process_state(&stat) == Some(b'Z') => zombies += 1,
                Ok(_) => {}
                // Gone since the listing: normal.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(_) => unreadable += 1,
            }
        }
        match unreadable {
            0 => Ok((procs, zombies)),
            n => Err(format!(
                "the state of {n} of {procs} processes could not be read"
            )),
        }
    }

    fn users(&self) -> Result<u32, String> {
        let bytes = match read_bounded_raw(&self.utmp, UTMP_BYTES_MAX) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("cannot read {}: {e}", self.utmp.display())),
        };
        let users = bytes
            .chunks_exact(UTMP_RECORD_BYTES)
            .filter(|rec| i16::from_ne_bytes([rec[0], rec[1]]) == UTMP_USER_PROCESS)
            .count();
        Ok(u32::try_from(users).unwrap_or(u32::MAX))
    }
}

impl Tail {
    /// The lines that matched since the last poll.
    fn poll(&mut self) -> LogMatches {
        let mut out = LogMatches {
            path: self.watch.path.display().to_string(),
            pattern: self.watch.pattern.clone(),
            matches: 0,
            lines: Vec::new(),
            error: None,
        };
        if let Err(e) = self.read_new(&mut out) {
            out.error = Some(e);
        }
        out
    }

    fn read_new(&mut self, out: &mut LogMatches) -> Result<(), String> {
        let path = &self.watch.path;
        let shown = path.display();
        let opened = fs::metadata(path).and_then(|m| match m.is_file() {
            // Non-blocking, so a FIFO swapped in after the check cannot hang the agent.
            true => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path),
            false => Err(io::Error::other("not a regular file")),
        });
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.pos = Position::Missing;
                return Err(format!("{shown} does not exist"));
            }
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let mut start = match self.pos {
            Position::Unseen => len,
            Position::Missing => 0,
            // Same file, not truncated below where we stopped.
            Position::At {
                dev: d,
                ino: i,
                offset,
            } if (d, i) == (dev, ino) && offset <= len => offset,
            // Rotated (another inode) or truncated: the new contents are all news.
            Position::At { .. } => 0,
        };
        let mut skipped = 0;
        if len - start > LOG_READ_BYTES_MAX {
            skipped = len - LOG_READ_BYTES_MAX - start;
            start = len - LOG_READ_BYTES_MAX;
        }
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(start))
            .and_then(|_| (&mut file).take(len - start).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut consumed = 0;
        if skipped > 0 {
            // Drop the fragment of the line the skip cut, unless the window starts a line.
            let mut before = [0u8];
            let at_line_start =
                file.read_exact_at(&mut before, start - 1).is_ok() && before[0] == b'\n';
            if !at_line_start {
                consumed = buf.iter().position(|b| *b == b'\n').map_or(0, |nl| nl + 1);
            }
            let skipped = skipped + consumed as u64;
            out.error = Some(format!(
                "skipped {skipped} bytes of {shown} (more than {LOG_READ_BYTES_MAX} were waiting)"
            ));
        }
        for line in buf[consumed..].split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") && line.len() <= LOG_PARTIAL_LINE_BYTES_MAX {
                break; // Still being written: read it whole next time.
            }
            consumed += line.len();
            self.check(line, out);
        }
        self.pos = Position::At {
            dev,
            ino,
            offset: start + consumed as u64,
        };
        Ok(())
    }

    fn check(&self, line: &[u8], out: &mut LogMatches) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        if self.regex.is_match(&text) {
            out.matches = out.matches.saturating_add(1);
            if out.lines.len() < REPORT_LOG_LINES_MAX {
                out.lines.push(truncate(&text, REPORT_LINE_BYTES_MAX));
            }
        }
    }
}

/// `part` of `whole` in percent, 0..=100 (0 when `whole` is 0).
fn pct(part: f64, whole: f64) -> f64 {
    match whole > 0.0 {
        true => (part / whole * 100.0).clamp(0.0, 100.0),
        false => 0.0,
    }
}

fn read_bounded_raw(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    read_bounded_raw(path, max)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The state in a `/proc/<pid>/stat` line: the field after the comm's closing parenthesis
/// (the last one: the comm itself may contain spaces and parentheses).
fn process_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    stat[close + 1..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

/// Mount points of real local filesystems in a `/proc/self/mounts` text, first seen first.
fn local_mounts(text: &str) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fs_type) = (f.next()?, f.next()?, f.next()?);
            LOCAL_FS_TYPES
                .contains(&fs_type)
                .then(|| decode_mount_path(point))
        })
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Decodes the octal escapes (`\040` for a space) the kernel writes in mount paths.
fn decode_mount_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |a, c| (a << 3) | (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Disk usage as `df` computes it (used over used plus available to users) and inode usage.
fn statvfs(path: &Path) -> io::Result<(f64, f64)> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("the path contains a NUL byte"))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string and `st` is writable memory the size of a
    // `statvfs`, which the call fills completely when it returns 0.
    let st = unsafe {
        if libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.assume_init()
    };
    let frsize = st.f_frsize as f64;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64 * frsize;
    let avail = st.f_bavail as f64 * frsize;
    let inodes_used = st.f_files.saturating_sub(st.f_ffree) as f64;
    Ok((pct(used, used + avail), pct(inodes_used, st.f_files as f64)))
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fake proc root with load, CPU, memory and three processes, two of them zombies.
    fn fake_proc(dir: &Path) -> PathBuf {
        let proc = dir.join("proc");
        let write = |name: &str, text: &str| {
            let path = proc.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write("loadavg", "0.50 1.25 2.00 3/456 7890\n");
        write("stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n");
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n\
                       SwapTotal: 0 kB\nSwapFree: 0 kB\n";
        write("meminfo", meminfo);
        // The comm ") Z (" would fool a parser that stops at the first ')'.
        write("7/stat", "7 (evil) Z (x) S 1 2 3\n");
        write("9/stat", "9 (defunct) Z 1 2 3\n");
        write("10/stat", "10 (x) S (y) Z 1 2 3\n");
        fs::create_dir_all(proc.join("11")).unwrap(); // vanished: no stat
        fs::create_dir_all(proc.join("self")).unwrap();
        proc
    }

    fn utmp(dir: &Path, types: &[i16], tail: usize) -> PathBuf {
        let mut bytes = Vec::new();
        for t in types {
            let mut rec = vec![0u8; UTMP_RECORD_BYTES];
            rec[..2].copy_from_slice(&t.to_ne_bytes());
            bytes.extend(rec);
        }
        bytes.extend(vec![0u8; tail]);
        let path = dir.join("utmp");
        fs::write(&path, bytes).unwrap();
        path
    }

    fn collector(dir: &Path, mounts: Option<Vec<PathBuf>>, logs: Vec<LogWatch>) -> HostCollector {
        let proc = fake_proc(dir);
        HostCollector::new(proc, dir.join("no-utmp"), mounts, logs).unwrap()
    }

    #[test]
    fn proc_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = collector(dir.path(), Some(vec![dir.path().to_path_buf()]), vec![]);
        c.utmp = utmp(dir.path(), &[7, 8, 7], 100);
        let r = c.collect();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.load, [0.5, 1.25, 2.0]);
        assert_eq!(r.cpu_pct, 20.0); // since boot: 200 busy of 1000
        assert_eq!((r.memory_pct, r.swap_pct), (75.0, 0.0));
        assert_eq!((r.procs, r.zombies, r.users), (4, 2, 2));
        assert_eq!(r.mounts.len(), 1);
        assert_eq!(r.mounts[0].path, dir.path().display().to_string());
        assert!((0.0..=100.0).contains(&r.mounts[0].disk_pct));
        assert!((0.0..=100.0).contains(&r.mounts[0].inode_pct));

        let proc = dir.path().join("proc");
        fs::write(proc.join("stat"), "cpu  150 0 150 1000 100 0 0 0 0 0\n").unwrap();
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 100 kB\n\
                       SwapTotal: 200 kB\nSwapFree: 50 kB\n";
        fs::write(proc.join("meminfo"), meminfo).unwrap();
        let r = c.collect();
        assert_eq!(r.cpu_pct, 25.0); // 100 busy of 400 since the last collect
        assert_eq!((r.memory_pct, r.swap_pct), (75.0, 75.0));
    }

    #[test]
    fn missing_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing");
        let mut c = HostCollector::new(missing.clone(), missing.clone(), None, vec![]).unwrap();
        let r = c.collect();
        assert_eq!((r.load, r.cpu_pct, r.users), ([0.0; 3], 0.0, 0));
        assert_eq!(r.errors.len(), 5, "{:?}", r.errors); // all but users
        assert!(
            r.errors.iter().all(|e| e.contains("nothing")),
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn local_mounts_from_proc_are_decoded_filtered_and_deduped() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("my disk");
        fs::create_dir(&spaced).unwrap();
        let escaped = spaced.display().to_string().replace(' ', "\\040");
        let mounts = format!(
            "proc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\noverlay / overlay rw 0 0\n\
             /dev/sda1 {escaped} ext4 rw 0 0\n/dev/sda1 {escaped} ext4 rw 0 0\n\
             srv:/x /mnt/x nfs4 rw 0 0\n"
        );
        let mut c = collector(dir.path(), None, vec![]);
        fs::write(dir.path().join("proc/self/mounts"), mounts).unwrap();
        let r = c.collect();
        let paths: Vec<_> = r.mounts.iter().map(|m| m.path.clone()).collect();
        assert_eq!(paths, [spaced.display().to_string()]);
    }

    fn watch(path: &Path, pattern: &str) -> LogWatch {
        LogWatch {
            path: path.to_path_buf(),
            pattern: pattern.into(),
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn log_starts_at_end_then_counts_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old error\n");
        let watches = vec![watch(&log, "error"), watch(&log, "^ok$")];
        let mut c = collector(dir.path(), Some(vec![]), watches);
        let r = c.collect();
        assert_eq!((r.logs[0].matches, r.logs[0].error.clone()), (0, None));
        append(&log, "error 1\nok\r\nerror 2\nerror 3 partial");
        let r = c.collect();
        assert_eq!(r.logs[0].lines, ["error 1", "error 2"]);
        assert_eq!((r.logs[0].matches, r.logs[1].matches), (2, 1));
        append(&log, " ends\n");
        let r = c.collect();
        assert_eq!(r.logs[0].lines, ["error 3 partial ends"]);
        assert_eq!(c.collect().logs[0].matches, 0);
    }

    #[test]
    fn log_rotation_truncation_and_late_creation_read_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut c = collector(dir.path(), Some(vec![]), vec![watch(&log, "error")]);
        let r = c.collect();
        assert!(r.logs[0]
            .error
            .as_ref()
            .unwrap()
            .ends_with("does not exist"));
        append(&log, "error a\nerror b\n");
        assert_eq!(c.collect().logs[0].matches, 2); // created since: read from 0
        fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "error c\n");
        assert_eq!(c.collect().logs[0].lines, ["error c"]); // rotated
        fs::write(&log, "error\n").unwrap();
        assert_eq!(c.collect().logs[0].lines, ["error"]); // truncated
    }

    #[test]
    fn log_reads_at_most_the_last_window() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("big.log");
        append(&log, "");
        let mut c = collector(dir.path(), Some(vec![]), vec![watch(&log, "^error")]);
        c.collect();
        let line = format!("error {}\n", "x".repeat(57)); // 64 bytes
        append(&log, &line.repeat(5 * 16384)); // 5 MiB
        let r = c.collect();
        assert_eq!(r.logs[0].matches, 4 * 16384);
        assert!(r.logs[0]
            .error
            .as_ref()
            .unwrap()
            .starts_with("skipped 1048576 bytes"));
        // The window starts 37 bytes into a line: its other 27 bytes are skipped too, and
        // the 101-byte line at the end pushed one more whole line out of the window.
        append(&log, &line.repeat(5 * 16384));
        append(&log, &format!("{}\n", "y".repeat(100)));
        let r = c.collect();
        assert_eq!(r.logs[0].matches, 4 * 16384 - 2);
        assert!(r.logs[0]
            .error
            .as_ref()
            .unwrap()
            .starts_with("skipped 1048704 bytes"));
    }

    #[test]
    fn long_partial_line_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut c = collector(dir.path(), Some(vec![]), vec![watch(&log, "z")]);
        c.collect();
        append(&log, &"z".repeat(LOG_PARTIAL_LINE_BYTES_MAX + 1));
        let r = c.collect();
        assert_eq!(r.logs[0].matches, 1);
        assert_eq!(r.logs[0].lines[0].len(), REPORT_LINE_BYTES_MAX);
    }

    #[test]
    fn sample_lines_are_capped_and_truncated_at_char_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut c = collector(dir.path(), Some(vec![]), vec![watch(&log, "€")]);
        c.collect();
        append(&log, &format!("{}\n", "€".repeat(100)).repeat(7));
        let r = c.collect();
        assert_eq!(r.logs[0].matches, 7);
        assert_eq!(r.logs[0].lines.len(), REPORT_LOG_LINES_MAX);
        assert_eq!(r.logs[0].lines[0], "€".repeat(85)); // 255 bytes
    }

    #[test]
    fn bad_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let new = |logs| HostCollector::new(dir.path().into(), dir.path().into(), None, logs);
        let err = new(vec![watch(Path::new("/var/log/x.log"), "a(b")]).unwrap_err();
        assert!(
            err.contains("/var/log/x.log") && err.contains("a(b"),
            "{err}"
        );
        let many = vec![watch(Path::new("/x"), "x"); REPORT_LOGS_MAX + 1];
        assert!(new(many).is_err());
    }

    #[test]
    fn parsers() {
        assert_eq!(process_state(b"1 (a) b)) R 0"), Some(b'R'));
        assert_eq!(process_state(b"garbage"), None);
        assert_eq!(
            decode_mount_path(r"/a\040b\\c\0"),
            PathBuf::from(r"/a b\\c\0")
        );
        assert_eq!(truncate("aé", 2), "a");
    }
}
