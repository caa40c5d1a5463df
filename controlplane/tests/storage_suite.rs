//! openraft's storage conformance suite, run against the sled store.

use cairn_controlplane::raft::{StorageError, TypeConfig};
use cairn_controlplane::store::log::LogStore;
use cairn_controlplane::store::state_machine::StateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (log, sm) = cairn_controlplane::store::open(dir.path(), 1, 64 << 20)
            .map_err(|e| StorageIOError::write(&std::io::Error::other(format!("{e:#}"))))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("the sled store failed openraft's storage suite: {e}");
    }
}
