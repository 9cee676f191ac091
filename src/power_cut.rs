//! A power cut on demand, for tests (the hidden `--test-power-cut-when
//! FILE` flag): once `FILE` exists, the store's next data sync loses what
//! it would have made durable, as a power cut at that instant would, and
//! never returns.
//!
//! It works through the storage crate's fault seam
//! ([`FaultInjector::before_sync`]): before each data sync it notes the
//! segment's length (what that sync makes durable); once armed, it cuts
//! the segment back to the length the previous sync made durable, logs it,
//! and parks the syncing thread for good. The records written since are
//! gone from the file, exactly as the page cache's unsynced pages are after
//! the power goes; the master may already have forwarded them to its slave,
//! which is what the test is about. The process is then killed by the test.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use duokv_storage::FaultInjector;
use log::error;

/// Cuts the power at the first data sync after `trigger` appears.
#[derive(Debug)]
pub(crate) struct PowerCut {
    trigger: PathBuf,
    /// Per segment, the length its last sync made durable.
    synced: Mutex<HashMap<PathBuf, u64>>,
}

impl PowerCut {
    /// A power cut armed by the file `trigger`.
    pub(crate) fn when_exists(trigger: PathBuf) -> PowerCut {
        PowerCut {
            trigger,
            synced: Mutex::new(HashMap::new()),
        }
    }
}

impl FaultInjector for PowerCut {
    fn before_sync(&self, file: &Path) -> io::Result<()> {
        let len = std::fs::metadata(file)?.len();
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if !self.trigger.exists() {
            synced.insert(file.to_path_buf(), len);
            return Ok(());
        }
        // A segment never synced before holds only its header on disk.
        let keep = synced
            .get(file)
            .copied()
            .unwrap_or(duokv_storage::format::SEGMENT_HEADER_LEN as u64);
        OpenOptions::new().write(true).open(file)?.set_len(keep)?;
        error!(
            "TEST POWER CUT: {} cut back from {len} to {keep} bytes, its last synced length; \
             this node's writes now hang until it is killed",
            file.display()
        );
        drop(synced);
        loop {
            std::thread::park();
        }
    }
}
