//! The store's in-memory twin, for unit tests and the fuzzing seam: every
//! record in maps, commits applied at once, failures on demand.

use std::io;
use std::path::PathBuf;

use super::*;

/// A file in a `MemStore`: its record and its chunk file's bytes.
type MemFile = (Vec<u8>, Vec<u8>);

/// Accounts and rooms in memory, for unit tests and the fuzzing seam.
#[derive(Default)]
pub struct MemStore {
    users: std::sync::Mutex<std::collections::HashMap<u64, UserRecord>>,
    accts: std::sync::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
    announcements: std::sync::Mutex<Option<Vec<u8>>>,
    rooms: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    prekeys: std::sync::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
    contacts: std::sync::Mutex<Option<Vec<u8>>>,
    retired: std::sync::Mutex<Option<Vec<u8>>>,
    /// The ticket key file and the ticket journal.
    ticket_keys: std::sync::Mutex<Option<Vec<u8>>>,
    tickets: std::sync::Mutex<Vec<u8>>,
    /// Per file: its record and its chunk file's bytes.
    files: std::sync::Mutex<std::collections::HashMap<u64, MemFile>>,
    /// Tests: the next commits fail while this is non-zero (counting down).
    fail_commits: std::sync::atomic::AtomicU32,
    /// Tests: they fail as an unreachable cluster would (503), not a disk (507).
    fail_unavailable: std::sync::atomic::AtomicBool,
}

impl MemStore {
    /// The next `n` commits fail (and write nothing), as on a full disk.
    pub fn fail_next_commits(&self, n: u32) {
        self.fail_commits.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `n` commits fail as with the cluster's storage unreachable.
    pub fn fail_next_commits_unavailable(&self, n: u32) {
        self.fail_unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
        self.fail_next_commits(n);
    }

    /// Tests: the bytes of file `id`'s chunk file, if it has one.
    pub fn chunk_bytes(&self, id: u64) -> Option<Vec<u8>> {
        self.files.lock().ok()?.get(&id).map(|(_, c)| c.clone())
    }
}

impl Store for MemStore {
    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.users.lock().map(|m| m.values().copied().collect()).unwrap_or_default())
    }

    fn put_user(&self, rec: &UserRecord) -> Result<(), StoreError> {
        if let Ok(mut m) = self.users.lock() {
            m.insert(rec.uid.get(), *rec);
        }
        Ok(())
    }

    fn load_accts(&self) -> Result<Vec<(u64, Acct)>, StoreError> {
        let m = self.accts.lock().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        Ok(m.iter().filter_map(|b| Acct::decode(b).ok()).collect())
    }

    fn put_acct(&self, uid: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if let Ok(mut m) = self.accts.lock() {
            m.insert(uid, bytes.to_vec());
        }
        Ok(())
    }

    fn load_announcements(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.announcements.lock().ok().and_then(|a| a.clone()))
    }

    fn load_rooms(&self) -> Result<Vec<Room>, StoreError> {
        let m = self.rooms.lock().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        Ok(m.iter().filter_map(|b| Room::decode(b).ok()).collect())
    }

    fn load_queues(&self) -> Result<Vec<QueueFile>, StoreError> {
        Ok(Vec::new())
    }

    fn truncate_queue(&self, _uid: u64, _len: u64) -> Result<(), StoreError> {
        Ok(())
    }

    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.contacts.lock().ok().and_then(|c| c.clone()))
    }

    fn load_retired(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.retired.lock().ok().and_then(|c| c.clone()))
    }

    fn load_ticket_keys(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError> {
        Ok(self.ticket_keys.lock().ok().and_then(|c| c.clone()).map(zeroize::Zeroizing::new))
    }

    fn load_tickets(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tickets.lock().ok().map(|t| t.clone()).filter(|t| !t.is_empty()))
    }

    fn load_prekeys(&self) -> Result<Vec<(u64, Published)>, StoreError> {
        let files = self.prekeys.lock().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        Ok(files.iter().filter_map(|b| Published::decode(b).ok()).collect())
    }

    fn load_files(&self) -> Result<Vec<StoredFile>, StoreError> {
        let files = self.files.lock().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        Ok(files
            .iter()
            .filter_map(|(rec, chunks)| {
                let meta = FileMeta::decode(rec).ok()?;
                let stored = files::valid_chunks(chunks, meta.chunk_count);
                Some(StoredFile { meta, stored })
            })
            .collect())
    }

    fn read_chunks(&self, id: u64, from: u32, count: u32) -> Result<Vec<u8>, StoreError> {
        let missing = || StoreError::Corrupt { path: PathBuf::from(format!("{id:016x}.chunks")), why: "short" };
        let m = self.files.lock().map_err(|_| missing())?;
        let (_, chunks) = m.get(&id).ok_or_else(missing)?;
        let at = from as usize * CHUNK_RECORD;
        chunks.get(at..at + count as usize * CHUNK_RECORD).map(<[u8]>::to_vec).ok_or_else(missing)
    }

    fn commit(&self, writes: &[Change]) -> Result<(), StoreError> {
        let failing = self.fail_commits.load(std::sync::atomic::Ordering::SeqCst);
        if failing > 0 {
            self.fail_commits.store(failing - 1, std::sync::atomic::Ordering::SeqCst);
            if self.fail_unavailable.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable { why: "no NATS connection".to_owned() });
            }
            return Err(StoreError::Io { path: PathBuf::from("memstore"), source: io::Error::other("disk full") });
        }
        if let Ok(mut m) = self.files.lock() {
            for w in writes {
                match w {
                    Change::FileRecord(id, b) => m.entry(*id).or_default().0 = b.clone(),
                    Change::FileChunks { id, first, bytes } => {
                        let chunks = &mut m.entry(*id).or_default().1;
                        let at = *first as usize * CHUNK_RECORD;
                        if chunks.len() < at + bytes.len() {
                            chunks.resize(at + bytes.len(), 0);
                        }
                        chunks[at..at + bytes.len()].copy_from_slice(bytes);
                    }
                    Change::FileDelete(id) => {
                        m.remove(id);
                    }
                    _ => {}
                }
            }
        }
        if let (Ok(mut m), Ok(mut ann)) = (self.accts.lock(), self.announcements.lock()) {
            for w in writes {
                match w {
                    Change::Acct(uid, b) => {
                        m.insert(*uid, b.clone());
                    }
                    Change::UserDelete(uid) => {
                        m.remove(uid);
                    }
                    Change::Announcements(b) => *ann = Some(b.clone()),
                    _ => {}
                }
            }
        }
        if let (Ok(mut m), Ok(mut contacts)) = (self.prekeys.lock(), self.contacts.lock()) {
            for w in writes {
                match w {
                    Change::Prekeys(uid, Some(b)) => {
                        m.insert(*uid, b.clone());
                    }
                    Change::Prekeys(uid, None) => {
                        m.remove(uid);
                    }
                    Change::Contacts(w) => *contacts = Some(w.file.clone()),
                    _ => {}
                }
            }
        }
        if let (Ok(mut keys), Ok(mut journal)) = (self.ticket_keys.lock(), self.tickets.lock()) {
            for w in writes {
                match w {
                    Change::TicketKeys(b) => *keys = Some(b.to_vec()),
                    Change::Tickets(JournalWrite::Append(b)) => journal.extend_from_slice(b),
                    Change::Tickets(JournalWrite::Replace(b)) => *journal = b.clone(),
                    _ => {}
                }
            }
        }
        if let (Ok(mut users), Ok(mut retired)) = (self.users.lock(), self.retired.lock()) {
            for w in writes {
                match w {
                    Change::UserDelete(uid) => {
                        users.remove(uid);
                    }
                    Change::User(rec) => {
                        users.insert(rec.uid.get(), **rec);
                    }
                    Change::Retired(b) => *retired = Some(b.clone()),
                    _ => {}
                }
            }
        }
        if let Ok(mut m) = self.rooms.lock() {
            for w in writes {
                match w {
                    Change::Room(name, Some(w)) => {
                        m.insert(name.clone(), w.file.clone());
                    }
                    Change::Room(name, None) => {
                        m.remove(name);
                    }
                    // Mailboxes live in the core's memory in unit tests.
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
